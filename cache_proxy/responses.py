"""Starlette responses for each way an answer reaches a client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from cache_proxy.coalesce import Flight
from cache_proxy.errors import ProxyError
from cache_proxy.replay import DONE_LINE, answer_json, answer_sse_chunks, sse_line
from cache_proxy.store.entry import Answer
from cache_proxy.upstream import SseChunk

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def error_response(error: ProxyError) -> JSONResponse:
    return JSONResponse(error.to_openai_body(), status_code=error.status_code)


def json_answer(answer: Answer, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(answer_json(answer), headers=headers)


def sse_answer(answer: Answer, include_usage: bool, headers: dict[str, str]) -> StreamingResponse:
    def lines() -> Iterator[bytes]:
        for chunk in answer_sse_chunks(answer, include_usage):
            yield sse_line(chunk)
        yield DONE_LINE

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )


def sse_from_flight(
    flight: Flight,
    include_usage: bool,
    response_id: str | None,
    headers: dict[str, str],
    on_close: Callable[[], None],
) -> StreamingResponse:
    """Relays the shared upstream stream to one client as it arrives."""

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in flight.iter_chunks():
                line = _shape_chunk(chunk, include_usage, response_id)
                if line is not None:
                    yield line
            yield DONE_LINE
        except ProxyError as exc:
            # Headers are gone already: the error travels as an SSE event, like OpenAI's.
            yield sse_line(exc.to_openai_body())
        finally:
            on_close()

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )


def raw_stream(
    response: httpx.Response, closer: contextlib.AsyncExitStack, headers: dict[str, str]
) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for part in response.aiter_raw():
                yield part
        except httpx.TransportError:
            return  # the engine went away mid-stream; the client sees the stream end
        finally:
            await closer.aclose()

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )


def raw_json(status_code: int, content: bytes, headers: dict[str, str]) -> Response:
    return Response(
        content, status_code=status_code, media_type="application/json", headers=headers
    )


def _shape_chunk(chunk: SseChunk, include_usage: bool, response_id: str | None) -> bytes | None:
    data = chunk.data
    # Usage is always requested upstream (to store it); hide it from clients that did not ask.
    if not include_usage and not data.get("choices"):
        return None
    if response_id is None and (include_usage or "usage" not in data):
        return chunk.line  # the engine's own bytes, untouched
    shaped = {k: v for k, v in data.items() if include_usage or k != "usage"}
    if response_id is not None:
        shaped["id"] = response_id
    return sse_line(shaped)
