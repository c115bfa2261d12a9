from __future__ import annotations

import time
import uuid

from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.core.ids import accept_request_id, is_uuid, new_request_id
from ironhold.core.pipeline import Handler, build_pipeline


async def test_stages_run_in_order_around_the_terminal() -> None:
    seen: list[str] = []

    def stage(name: str):  # type: ignore[no-untyped-def]
        async def run(exchange: Exchange, next_: Handler) -> Reply:
            seen.append(f"{name}>")
            reply = await next_(exchange)
            seen.append(f"<{name}")
            reply.headers[name] = "1"
            return reply
        return run

    async def terminal(exchange: Exchange) -> Reply:
        seen.append("terminal")
        return Reply(body=b"{}")

    handler = build_pipeline([stage("a"), stage("b")], terminal)
    reply = await handler(Exchange("r", Operation.CHAT, "m", {}, False))
    assert seen == ["a>", "b>", "terminal", "<b", "<a"]
    assert reply.headers == {"b": "1", "a": "1"}


def test_request_ids() -> None:
    assert is_uuid(new_request_id()) and new_request_id() != new_request_id()
    # Version 7: they sort by the time they were made (the audit log's index grows at its
    # right edge), even many within one millisecond, and carry that time.
    before = time.time()
    made = [new_request_id() for _ in range(5000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    first = uuid.UUID(made[0])
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert abs(int(first.hex[:12], 16) / 1000 - before) < 1
    assert accept_request_id("trace-123:abc") == "trace-123:abc"
    for bad in ["", None, "has space", "x" * 200, "-leading-dash", "new\nline"]:
        assert is_uuid(accept_request_id(bad))
