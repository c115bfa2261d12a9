"""The simulator's HTTP server: chat, completions, embeddings, streaming, and faults.

Besides the OpenAI routes it has two for drills and tests: ``GET /_sim/requests`` returns the
last requests it received (headers and bodies), and ``PUT /_sim/profile`` swaps the profile.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from ironhold.core.codec import error_json
from ironhold.simulator.profile import Fault, SimulatorProfile

_WORDS = ("the", "gateway", "keeps", "every", "call", "fast", "safe", "and", "seen", "today")


class Simulator:
    def __init__(self, profile: SimulatorProfile | None = None, keep_requests: int = 100):
        self.profile = profile or SimulatorProfile()
        self._rng = random.Random(self.profile.seed)
        self.requests: deque[dict[str, Any]] = deque(maxlen=keep_requests)
        self.served = 0
        #: Requests whose client went away before the end (the gateway cancelled upstream).
        self.disconnects = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/embeddings", self._embedding)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_sim/requests", self._recorded)
        app.router.add_put("/_sim/profile", self._set_profile)
        return app

    # -- routes ---------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _embedding(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        fault = await self._before_first_byte()
        if fault is not None:
            return fault
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        dims = self.profile.embedding_dimensions
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(str(item), dims)}
            for i, item in enumerate(items)
        ]
        tokens = sum(len(str(item).split()) for item in items)
        return _json({"object": "list", "data": data, "model": body.get("model", "sim"),
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _models(self, _: web.Request) -> web.Response:
        return _json({"object": "list", "data": [
            {"id": "simulated", "object": "model", "created": 0, "owned_by": "simulator"}]})

    async def _recorded(self, _: web.Request) -> web.Response:
        return _json({"served": self.served, "disconnects": self.disconnects,
                      "requests": list(self.requests)})

    async def _set_profile(self, request: web.Request) -> web.Response:
        self.profile = SimulatorProfile.model_validate(orjson.loads(await request.read()))
        self._rng = random.Random(self.profile.seed)
        return _json(self.profile.model_dump())

    # -- generation -----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        self.requests.append({"path": request.path,
                              "headers": {str(k): v for k, v in request.headers.items()},
                              "body": body})
        self.served += 1
        return body if isinstance(body, dict) else {}

    def _draw_fault(self, kinds: tuple[str, ...]) -> Fault | None:
        for fault in self.profile.faults:
            if fault.kind in kinds and self._rng.random() < fault.rate:
                return fault
        return None

    async def _before_first_byte(self) -> web.Response | None:
        """Time to first token, then maybe a fault instead of an answer."""
        delay = self.profile.ttft.sample(self._rng)
        if self.profile.slow.rate and self._rng.random() < self.profile.slow.rate:
            delay *= self.profile.slow.factor
        if delay:
            await asyncio.sleep(delay)
        fault = self._draw_fault(("status", "hang", "reset"))
        if fault is None:
            return None
        if fault.kind == "hang":
            await asyncio.sleep(3600)
        if fault.kind == "reset":
            raise ConnectionResetError("simulated connection reset")
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
        return web.Response(
            status=fault.status, headers=headers, content_type="application/json",
            body=error_json(f"simulated {fault.status}", "server_error", "simulated"),
        )

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            return await self._answer(request, chat)
        except (ConnectionResetError, asyncio.CancelledError):
            # Seen when the server runs with handler_cancellation, as `ironhold simulate` does.
            self.disconnects += 1
            raise

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await self._record(request)
        fault = await self._before_first_byte()
        if fault is not None:
            return fault
        window = self.profile.context_window
        if window is not None and _count_prompt(body) > window:
            return web.Response(status=400, content_type="application/json", body=error_json(
                f"This model's maximum context length is {window} tokens.",
                "invalid_request_error", "context_length_exceeded", param="messages"))
        n_tokens = _int(body.get("max_tokens") or body.get("max_completion_tokens"),
                        self.profile.completion_tokens)
        n_tokens = max(1, min(n_tokens, self.profile.completion_tokens))
        words = _reply_words(body, self.profile.reply, n_tokens)
        n_tokens = len(words)
        prompt_tokens = _count_prompt(body)
        created = int(time.time())
        rid = ("chatcmpl-" if chat else "cmpl-") + hashlib.sha1(
            str(self.served).encode()).hexdigest()[:16]
        model = str(body.get("model", "simulated"))
        tools = body.get("tools")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n_tokens,
                 "total_tokens": prompt_tokens + n_tokens}
        if not body.get("stream"):
            await self._token_delays(n_tokens)
            return _json(_whole(chat, rid, created, model, words, tools, usage))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await self._stream(request, response, body, chat, rid, created, model, words, usage)
        return response

    async def _stream(self, request: web.Request, response: web.StreamResponse,
                      body: dict[str, Any], chat: bool, rid: str, created: int, model: str,
                      words: list[str], usage: dict[str, int]) -> None:
        cut = self._draw_fault(("cut",))
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            if cut is not None and i >= cut.after_chunks:
                # End the connection without [DONE]: a mid-stream failure.
                if request.transport is not None:
                    request.transport.close()
                return
            if i:
                await asyncio.sleep(self.profile.token_latency.sample(self._rng))
            text = word if i == 0 else " " + word
            if chat:
                delta: dict[str, Any] = {"content": text}
                if i == 0:
                    delta["role"] = "assistant"
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            else:
                choice = {"index": 0, "text": text, "finish_reason": None}
            await self._send(response, _event({"id": rid, "object": kind, "created": created,
                                               "model": model, "choices": [choice]}))
        final: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            final["delta"] = {}
        else:
            final["text"] = ""
        await self._send(response, _event({"id": rid, "object": kind, "created": created,
                                           "model": model, "choices": [final]}))
        options = body.get("stream_options") or {}
        if (isinstance(options, dict) and options.get("include_usage")
                and self.profile.stream_usage == "when_asked"):
            await self._send(response, _event({"id": rid, "object": kind, "created": created,
                                               "model": model, "choices": [],
                                               "usage": usage}))
        await self._send(response, b"data: [DONE]\n\n")
        await response.write_eof()

    async def _send(self, response: web.StreamResponse, event: bytes) -> None:
        if not self.profile.split_events:
            await response.write(event)
            return
        half = len(event) // 2
        await response.write(event[:half])
        await asyncio.sleep(0.002)
        await response.write(event[half:])

    async def _token_delays(self, n_tokens: int) -> None:
        total = sum(self.profile.token_latency.sample(self._rng) for _ in range(n_tokens - 1))
        if total:
            await asyncio.sleep(total)


def _whole(chat: bool, rid: str, created: int, model: str, words: list[str],
           tools: object, usage: dict[str, int]) -> dict[str, Any]:
    text = " ".join(words)
    if not chat:
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop",
                             "logprobs": None}], "usage": usage}
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        name = (tools[0].get("function") or {}).get("name", "tool")
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_" + rid[-8:], "type": "function",
             "function": {"name": name, "arguments": '{"simulated": true}'}}]}
        finish = "tool_calls"
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}], "usage": usage}


def _reply_words(body: dict[str, Any], reply: str, n_tokens: int) -> list[str]:
    if reply == "lorem":
        return [_WORDS[i % len(_WORDS)] for i in range(n_tokens)]
    if isinstance(body.get("messages"), list):
        texts = [str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict)]
    else:
        texts = [str(body.get("prompt", ""))]
    if reply == "echo_last":
        texts = texts[-1:]
    words = " ".join(texts).split(" ")
    return words[:n_tokens] or ["(empty)"]


def _count_prompt(body: dict[str, Any]) -> int:
    if isinstance(body.get("messages"), list):
        return sum(len(str(m.get("content", "")).split()) + 3
                   for m in body["messages"] if isinstance(m, dict))
    return len(str(body.get("prompt", "")).split())


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic embedding that means something on the surface: the text's character
    trigrams hashed into ``dims`` signed buckets, L2-normalised (a hashing vectoriser). Texts
    that share their wording are near; prose and source code, or two languages, are apart."""
    padded = f"  {text.lower()}  "
    vector = [0.0] * dims
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i:i + 3].encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4]) % dims
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in vector]


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")
