"""The OpenAI codec: the one place that knows the wire format below the HTTP edge.

- ``requests``: request validation against the OpenAI schema (a 400 naming the field);
- ``errors``: the error body, the error event, and each domain error's status and ``type``;
- ``sse``: the incremental server-sent-event decoder and the encoder;
- ``usage``: token usage as model servers report it.

Nothing else builds an error body or parses server-sent events.
"""

from ironhold.core.codec.errors import error_body, error_event, error_json, status_of
from ironhold.core.codec.requests import MAX_CHOICES, MAX_COMPLETION_TOKENS, check_request
from ironhold.core.codec.sse import MAX_EVENT_BYTES, SseDecoder, decode_event, encode_event
from ironhold.core.codec.usage import MAX_REPORTED_TOKENS, usage_in

__all__ = ["MAX_CHOICES", "MAX_COMPLETION_TOKENS", "MAX_EVENT_BYTES", "MAX_REPORTED_TOKENS",
           "SseDecoder", "check_request", "decode_event", "encode_event", "error_body",
           "error_event", "error_json", "status_of", "usage_in"]
