"""httpx client to the engine: pooling, timeouts, SSE parsing, error translation at the boundary."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from cache_proxy.config import UpstreamSettings
from cache_proxy.errors import (
    UpstreamBadGateway,
    UpstreamClientError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamTimeout,
    UpstreamUnreachable,
)

PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


@contextlib.contextmanager
def map_httpx_errors() -> Iterator[None]:
    """The one place transport failures become proxy errors."""
    try:
        yield
    except httpx.TransportError as exc:
        raise _translate(exc) from exc
    except aiohttp.ClientError as exc:  # what httpx-aiohttp passes through (e.g. a bad HTTP reply)
        raise UpstreamBadGateway(
            f"The engine's reply was not valid HTTP ({type(exc).__name__})."
        ) from exc


def _translate(exc: httpx.TransportError) -> UpstreamError:
    # httpx-aiohttp reports every aiohttp connection error as a connect *timeout*, including
    # "connection refused" and a server that hung up mid-answer: look at the cause.
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
        if isinstance(cause, aiohttp.ClientConnectorError):
            return UpstreamUnreachable("The engine is unreachable.")
        return UpstreamBadGateway("The engine closed the connection.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"The engine did not answer in time ({type(exc).__name__}).")
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return UpstreamUnreachable("The engine is unreachable.")
    return UpstreamBadGateway(f"The engine connection failed ({type(exc).__name__}).")


@dataclass(frozen=True)
class SseChunk:
    """One parsed stream event, with its original bytes for pass-through."""

    data: dict[str, Any]
    line: bytes


@dataclass(frozen=True)
class RawResponse:
    status_code: int
    body: bytes


class Upstream:
    def __init__(
        self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
    ):
        timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        headers = {"content-type": "application/json"}
        api_key = settings.resolved_api_key()
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if transport is None:
            # aiohttp's connection pool under httpx's API: half the proxy's CPU per forwarded
            # request measured here (httpcore scans every pooled socket on each request).
            transport = AiohttpTransport(limits=limits)
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            timeout=timeout,
            limits=limits,
            headers=headers,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str, timeout_s: float | None = None) -> RawResponse:
        with map_httpx_errors():
            kwargs: dict[str, Any] = {"timeout": timeout_s} if timeout_s else {}
            response = await self._client.get(path, **kwargs)
        return RawResponse(response.status_code, response.content)

    async def post_raw(self, path: str, body: dict[str, Any]) -> RawResponse:
        with map_httpx_errors():
            response = await self._client.post(path, json=body)
        return RawResponse(response.status_code, response.content)

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = await self.post_raw(path, body)
        raise_for_upstream_status(raw.status_code, raw.body)
        try:
            parsed = json.loads(raw.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UpstreamBadGateway("The engine answered with invalid JSON.") from exc
        if not isinstance(parsed, dict):
            raise UpstreamBadGateway("The engine answered with JSON that is not an object.")
        return parsed

    @contextlib.asynccontextmanager
    async def open_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """A streaming response whose status was checked: 2xx only."""
        with map_httpx_errors():
            request = self._client.build_request("POST", path, json=body)
            response = await self._client.send(request, stream=True)
        try:
            if response.status_code >= 300:
                with map_httpx_errors():
                    content = await response.aread()
                raise_for_upstream_status(response.status_code, content)
            yield response
        finally:
            await response.aclose()


async def iter_sse_chunks(response: httpx.Response) -> AsyncIterator[SseChunk]:
    """Parsed SSE chunks; raises if the stream errors or ends before `data: [DONE]`."""
    finished = False
    with map_httpx_errors():
        async for line in response.aiter_lines():
            payload = _sse_payload(line)
            if payload is None:
                continue
            if payload == "[DONE]":
                finished = True
                break
            yield SseChunk(_parse_chunk(payload), f"data: {payload}\n\n".encode())
    if not finished:
        raise UpstreamBadGateway("The engine's stream ended before it was complete.")


def raise_for_upstream_status(status: int, content: bytes) -> None:
    if status < 400:
        return
    if status in (429, 503):
        raise UpstreamOverloaded(f"The engine is overloaded (HTTP {status}); retry later.")
    if status == 504:
        raise UpstreamTimeout("The engine timed out (HTTP 504).")
    if status >= 500:
        raise UpstreamBadGateway(f"The engine failed (HTTP {status}).")
    raise UpstreamClientError(status, _json_or_message(content, status))


def _json_or_message(content: bytes, status: int) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {
        "error": {
            "message": f"The engine rejected the request (HTTP {status}).",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def _sse_payload(line: str) -> str | None:
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def _parse_chunk(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise UpstreamBadGateway("The engine sent an invalid stream chunk.") from exc
    if not isinstance(chunk, dict):
        raise UpstreamBadGateway("The engine sent a stream chunk that is not an object.")
    if "error" in chunk:
        raise UpstreamError("The engine reported an error mid-stream.")
    return chunk
