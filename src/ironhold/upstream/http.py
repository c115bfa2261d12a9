"""The OpenAI-compatible HTTP transport, on aiohttp's pooled keep-alive client.

aiohttp was chosen over httpx by measurement: see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncGenerator, Mapping

import aiohttp

from ironhold.core.errors import BadGatewayError, UpstreamTimeoutError, UpstreamUnavailableError
from ironhold.core.ids import is_uuid
from ironhold.upstream.transport import Deadlines, UpstreamRequest


class HttpResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError as exc:
            raise UpstreamTimeoutError("the model server did not finish in time") from exc
        except aiohttp.ClientError as exc:
            raise BadGatewayError(f"the model server broke off its response: {_why(exc)}") from exc
        finally:
            self._response.release()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeoutError("the model server stalled mid-stream") from exc
        except aiohttp.ClientError as exc:
            raise BadGatewayError(f"the model server broke off the stream: {_why(exc)}") from exc

    def close(self) -> None:
        # close(), not release(): a half-read body must not go back into the pool.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpTransport:
    """Sends requests to one deployment's base URL over a pool of keep-alive connections."""

    def __init__(self, base_url: str, api_key: str | None = None, max_connections: int = 256,
                 uuid_request_ids_only: bool = False):
        self._base_url = base_url.rstrip("/")
        # llama-cpp-python's server answers 400 to an X-Request-ID that is not a UUID.
        self._uuid_ids_only = uuid_request_ids_only
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def send(self, request: UpstreamRequest) -> HttpResponse:
        session = self._open()
        timeout = _client_timeout(request.deadlines, request.stream)
        headers = {"Content-Type": "application/json", **request.headers, **self._auth}
        if self._uuid_ids_only and not is_uuid(headers.get("X-Request-Id", "")):
            headers.pop("X-Request-Id", None)
        try:
            response = await session.post(
                self._base_url + request.path,
                data=request.body,
                headers=headers,
                timeout=timeout,
            )
        except TimeoutError as exc:
            raise UpstreamTimeoutError("the model server did not answer in time") from exc
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            raise UpstreamUnavailableError(
                f"cannot reach the model server: {_why(exc)}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise BadGatewayError(f"the model server failed: {_why(exc)}") from exc
        return HttpResponse(response)

    async def check(self, path: str, within: float) -> bool:
        session = self._open()
        try:
            async with session.get(self._base_url + path, headers=self._auth,
                                   timeout=aiohttp.ClientTimeout(total=within)) as response:
                await response.read()
                return 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            # Let the connector's transports finish closing before the loop goes away.
            await asyncio.sleep(0)


@functools.lru_cache(maxsize=1024)
def _client_timeout(deadlines: Deadlines, stream: bool) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=deadlines.total,
        sock_connect=deadlines.connect,
        # Between chunks of a stream, a stall longer than the first-token deadline is a hang.
        sock_read=deadlines.first_token if stream else None,
    )


def _why(exc: BaseException) -> str:
    """What went wrong, for the client's error message: the kind of failure and the OS's reason
    (``Connection refused``), never the deployment's address, port or URL (internal topology),
    nor the request (it may carry a key). The router's log line names the deployment."""
    reason = getattr(exc, "os_error", None) or exc
    # Not ``strerror``: asyncio writes the address into it ("Connect call failed (...)").
    code = reason.errno if isinstance(reason, OSError) else None
    return f"{type(exc).__name__}: {os.strerror(code)}" if code else type(exc).__name__
