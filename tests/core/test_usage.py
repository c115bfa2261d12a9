"""``StreamUsage``: what a stream used, from the usage event or counted from the events, with
the usage event taken out when the client did not ask for it."""

from __future__ import annotations

import orjson

from ironhold.core.codec import SseDecoder, encode_event
from ironhold.core.events import Chunk
from ironhold.core.exchange import Exchange, Operation, Usage
from ironhold.core.usage import StreamUsage


def _exchange() -> Exchange:
    return Exchange(request_id="r", operation=Operation.CHAT, model="m", stream=True,
                    body={"messages": [{"role": "user", "content": "x" * 40}]})


def _event(doc: object, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + orjson.dumps(doc) + sep


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def _relay(usage: StreamUsage, stream: bytes, size: int) -> bytes:
    """Decode ``stream`` in pieces of ``size`` bytes and pass on what ``usage`` keeps."""
    decoder = SseDecoder()
    events = [e for i in range(0, len(stream), size) for e in decoder.feed(stream[i:i + size])]
    events += decoder.finish()
    return b"".join(encode_event(e) for e in events
                    if not isinstance(e, Chunk) or usage.keep(e))


USAGE = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}


def test_the_usage_event_is_taken_out_when_the_client_did_not_ask() -> None:
    for sep in (b"\n\n", b"\r\n\r\n"):
        stream = b"".join([_event(_delta("a"), sep), _event(_delta(" b"), sep),
                           _event(USAGE, sep), b"data: [DONE]" + sep])
        for size in (1, 7, 64, len(stream)):
            exchange = _exchange()
            usage = StreamUsage(exchange, hide_usage=True)
            out = _relay(usage, stream, size)
            usage.finish()
            assert b'"usage"' not in out and out.count(b"data: ") == 3
            assert exchange.usage == Usage(12, 3)
            shown = StreamUsage(_exchange(), hide_usage=False)
            assert _relay(shown, stream, size) == stream.replace(b"\r\n", b"\n")


def test_a_stream_without_usage_is_counted_from_its_events() -> None:
    exchange = _exchange()
    usage = StreamUsage(exchange, hide_usage=True)
    text = b"".join(_event(_delta("word ")) for _ in range(10))
    _relay(usage, text + _event(_delta("x" * 200)), 64)
    usage.finish()
    assert exchange.usage is not None
    assert exchange.usage.prompt_tokens >= 10  # the admission estimate of the prompt
    assert exchange.usage.completion_tokens == (10 * 5 + 200 + 3) // 4  # characters / 4


def test_reported_numbers_out_of_range_are_not_believed() -> None:
    exchange = _exchange()
    usage = StreamUsage(exchange, hide_usage=False)
    usage.keep(Chunk({"choices": [], "usage": {"prompt_tokens": 2**63, "completion_tokens": 1}}))
    usage.finish()
    assert exchange.usage is not None and exchange.usage.prompt_tokens < 2**31


def test_finish_settles_once() -> None:
    exchange = _exchange()
    usage = StreamUsage(exchange, hide_usage=False)
    usage.keep(Chunk(USAGE))
    usage.finish()
    exchange.usage = Usage(1, 1)  # whatever a later stage does, a second finish changes nothing
    usage.finish()
    assert exchange.usage == Usage(1, 1)
