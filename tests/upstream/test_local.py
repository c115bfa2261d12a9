from __future__ import annotations

from ironhold.upstream.local import restart_delay


def test_restart_backoff_doubles_while_crash_looping_and_resets_when_stable() -> None:
    delays = []
    delay = None
    for _ in range(7):
        delay = restart_delay(delay, uptime=0.5)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restart_delay(30.0, uptime=120.0) == 1.0  # it had been up for a while
