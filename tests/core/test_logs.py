from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest

from ironhold.telemetry import logs
from ironhold.telemetry.logs import JsonFormatter, LineSink, access_line


def test_json_lines_carry_extra_fields_and_tracebacks() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("ironhold.x", logging.INFO, __file__, 1, "request", None, None)
    record.request_id = "abc"
    line = orjson.loads(formatter.format(record))
    assert line["msg"] == "request" and line["request_id"] == "abc" and line["level"] == "info"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("ironhold.x", logging.ERROR, __file__, 1, "unhandled", None,
                                   sys.exc_info())
    line = orjson.loads(formatter.format(failed))
    assert line["error"] == "ValueError: boom"
    assert "Traceback" in line["traceback"] and "raise ValueError" in line["traceback"]


class _Stream(io.StringIO):
    """Counts writes: the sink must batch lines into one write per loop turn."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_are_written_once_per_loop_turn_in_order() -> None:
    stream = _Stream()
    sink = LineSink(stream)
    for i in range(5):
        sink.write(f"line {i}")
    assert stream.getvalue() == ""  # not before the loop's next turn
    await asyncio.sleep(0)
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(5)]
    assert stream.writes == 1
    sink.write("outside")  # the next turn's batch, which a worker thread's line joins
    await asyncio.to_thread(sink.write, "from a worker thread")
    await asyncio.sleep(0)
    assert stream.getvalue().splitlines()[5:] == ["outside", "from a worker thread"]


def test_a_line_written_where_no_loop_runs_goes_out_at_once() -> None:
    stream = _Stream()
    LineSink(stream).write("now")
    assert stream.getvalue() == "now\n"


async def test_the_access_line_is_the_formatters_json_without_a_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Stream()
    formatter = JsonFormatter()
    monkeypatch.setattr(logs, "_json_sink", (LineSink(stream), formatter))
    access = logging.getLogger("ironhold.access")
    access.setLevel(logging.INFO)
    try:
        fields = {"request_id": "abc", "status": 200, "deployment": None, "latency_ms": 1.5}
        access_line(fields)
        await asyncio.sleep(0)
        direct = orjson.loads(stream.getvalue())
        record = logging.LogRecord("ironhold.access", logging.INFO, __file__, 1, "request", None,
                                   None)
        record.__dict__.update(fields)
        through_logging = orjson.loads(formatter.format(record))
        assert direct.pop("ts").endswith("Z") and through_logging.pop("ts").endswith("Z")
        assert direct == through_logging
        assert list(direct) == list(through_logging)  # the same field order too
        access.setLevel(logging.WARNING)  # above info: no access line
        access_line(fields)
        await asyncio.sleep(0)
        assert len(stream.getvalue().splitlines()) == 1
    finally:
        access.setLevel(logging.NOTSET)
