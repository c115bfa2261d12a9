"""The OpenAI codec's stream half: events decode the same however the bytes were split, odd
framing is understood or passed on, and nothing is buffered without bound."""

from __future__ import annotations

import orjson
import pytest

from ironhold.core.codec import SseDecoder, decode_event, encode_event, error_event
from ironhold.core.errors import BadGatewayError, GuardBlockedError, UpstreamError
from ironhold.core.events import Chunk, Done, Event, StreamError, Verbatim

CHUNK = {"id": "c", "choices": [{"index": 0, "delta": {"content": "héllo ✓"}}]}
USAGE = {"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}}
STREAM = (b"data: " + orjson.dumps(CHUNK) + b"\n\n: keep-alive\n\n"
          + b"data: " + orjson.dumps(USAGE) + b"\n\ndata: [DONE]\n\n")


def decode(data: bytes, cuts: list[int]) -> list[Event]:
    decoder = SseDecoder()
    events: list[Event] = []
    at = 0
    for cut in [*cuts, len(data)]:
        events += decoder.feed(data[at:cut])
        at = cut
    return events + decoder.finish()


def test_a_stream_split_at_every_byte_decodes_the_same() -> None:
    whole = decode(STREAM, [])
    assert [type(e) for e in whole] == [Chunk, Verbatim, Chunk, Done]
    assert isinstance(whole[2], Chunk) and whole[2].doc == USAGE
    for cut in range(1, len(STREAM)):
        assert decode(STREAM, [cut]) == whole, cut
    assert decode(STREAM, list(range(1, len(STREAM)))) == whole  # one byte per read
    # Unchanged events go out as they came.
    assert b"".join(encode_event(e) for e in whole) == STREAM


def test_crlf_framing_multi_line_data_and_a_missing_last_blank_line() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert [type(e) for e in decode(crlf, [5, 77])] == [Chunk, Verbatim, Chunk, Done]
    multi = b'data: {"a":\ndata: 1}\n\n'
    [event] = decode(multi, [3])
    assert isinstance(event, Chunk) and event.doc == {"a": 1}
    assert decode(b"data: [DONE]", []) == [Done()]


def test_an_error_event_is_decoded_and_passed_on_as_sent() -> None:
    raw = orjson.dumps({"error": {"message": "model crashed", "type": "server_error"}})
    event = decode_event(b"data: " + raw)
    assert isinstance(event, StreamError) and isinstance(event.error, UpstreamError)
    assert event.error.message == "model crashed"
    assert encode_event(event) == b"data: " + raw + b"\n\n"


def test_what_is_not_openai_json_is_passed_on_verbatim() -> None:
    for raw in (b"data: not json", b"data: [1, 2]", b"event: ping\ndata: {}", b"id: 3"):
        event = decode_event(raw)
        assert event == Verbatim(raw) and encode_event(event) == raw + b"\n\n"


def test_an_endless_event_ends_the_stream_instead_of_filling_memory() -> None:
    decoder = SseDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(BadGatewayError):
        decoder.feed(b"x" * 200)


def test_a_changed_chunk_is_encoded_from_its_document() -> None:
    [event] = decode(b"data: " + orjson.dumps(CHUNK) + b"\n\n", [])
    assert isinstance(event, Chunk)
    event.doc["choices"][0]["delta"]["content"] = "[REDACTED]"
    assert b"h\xc3\xa9llo" in encode_event(event)  # the upstream's bytes until told
    event.changed()
    assert orjson.loads(encode_event(event)[6:]) == event.doc


def test_the_gateways_own_error_event_has_openais_shape() -> None:
    exc = GuardBlockedError("Response blocked", category="secrets", owasp="LLM02")
    data = encode_event(StreamError(exc))
    assert data == error_event(exc) and data.endswith(b"\n\n")
    assert orjson.loads(data[6:]) == {"error": {
        "message": "Response blocked", "type": "invalid_request_error", "param": None,
        "code": "guard_blocked"}}
