"""``StreamUsage``: what a stream used, from the usage event or counted from the events, with
the usage event taken out when the client did not ask for it."""

from __future__ import annotations

import orjson

from ironhold.core.exchange import Exchange, Operation, Usage
from ironhold.core.usage import StreamUsage


def _exchange() -> Exchange:
    return Exchange(request_id="r", operation=Operation.CHAT, model="m", stream=True,
                    body={"messages": [{"role": "user", "content": "x" * 40}]})


def _event(doc: object, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + orjson.dumps(doc) + sep


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


def test_the_usage_event_is_taken_out_when_the_client_did_not_ask() -> None:
    for sep in (b"\n\n", b"\r\n\r\n"):
        stream = b"".join([_event(_delta("a"), sep), _event(_delta(" b"), sep),
                           _event(USAGE, sep), b"data: [DONE]" + sep])
        for size in (1, 7, 64, len(stream)):
            exchange = _exchange()
            usage = StreamUsage(exchange, hide_usage=True)
            out = b"".join(usage.feed(stream[i:i + size]) for i in range(0, len(stream), size))
            out += usage.flush()
            usage.finish()
            assert b'"usage"' not in out and out.count(b"data: ") == 3
            assert exchange.usage == Usage(12, 3)
            shown = StreamUsage(_exchange(), hide_usage=False)
            assert shown.feed(stream) + shown.flush() == stream


def test_a_stream_without_usage_is_counted_from_its_events() -> None:
    exchange = _exchange()
    usage = StreamUsage(exchange, hide_usage=True)
    text = "".join(_event(_delta("word ")).decode() for _ in range(10)).encode()
    usage.feed(text + _event(_delta("x" * 200)))
    usage.finish()
    assert exchange.usage is not None
    assert exchange.usage.prompt_tokens >= 10  # the admission estimate of the prompt
    assert exchange.usage.completion_tokens == (10 * 5 + 200 + 3) // 4  # characters / 4


def test_reported_numbers_out_of_range_are_not_believed() -> None:
    exchange = _exchange()
    usage = StreamUsage(exchange, hide_usage=False)
    usage.feed(_event({"choices": [], "usage": {"prompt_tokens": 2**63,
                                                "completion_tokens": 1}}))
    usage.finish()
    assert exchange.usage is not None and exchange.usage.prompt_tokens < 2**31


def test_an_endless_event_is_passed_on_not_buffered_whole() -> None:
    usage = StreamUsage(_exchange(), hide_usage=True)
    passed = b""
    for _ in range(40):
        passed += usage.feed(b"data: " + b"y" * 65_536)
    assert len(passed) > 1_000_000
