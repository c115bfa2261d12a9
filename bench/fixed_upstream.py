"""A fixed-response OpenAI-compatible upstream for benchmarks, as cheap per request as Python
allows (a bare asyncio protocol on uvloop), so the gateway is what gets measured.

Usage: python bench/fixed_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

BODY = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
        b'"model":"bench","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"ok"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + BODY)
#: A request with "stream": true gets eight content events, a finish, the usage and [DONE].
_CHUNK = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
          b'"model":"bench","choices":[{"index":0,"delta":{"content":"word "},'
          b'"finish_reason":null}]}\n\n')
STREAM = (_CHUNK * 8
          + b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
          b'"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
          b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
          b'"model":"bench","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":8,'
          b'"total_tokens":13}}\n\ndata: [DONE]\n\n')
STREAM_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
                   + str(len(STREAM)).encode() + b"\r\nConnection: keep-alive\r\n\r\n"
                   + STREAM)


class FixedResponse(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker)
                length = int(head[marker + 15: line_end if line_end > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            streamed = b'"stream":true' in self.buffer[end + 4:total]
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            self.transport.write(STREAM_RESPONSE if streamed else RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedResponse, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
