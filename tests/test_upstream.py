"""The engine client over real sockets: each way the engine can fail maps to one proxy error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cache_proxy.config import UpstreamSettings
from cache_proxy.errors import UpstreamBadGateway, UpstreamTimeout, UpstreamUnreachable
from cache_proxy.upstream import Upstream, iter_sse_chunks
from tests.support.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def hang_up_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"
    )
    await writer.drain()
    writer.close()


async def hang_up_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b'15\r\ndata: {"choices": []}\n\n\r\n'
    )
    await writer.drain()
    writer.close()


async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nnot-a-chunk-size\r\n")
    await writer.drain()
    await asyncio.sleep(1)
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(30)


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[str], Upstream]]:
    made: list[Upstream] = []

    def make(url: str) -> Upstream:
        made.append(Upstream(UpstreamSettings(url=url, read_timeout_s=0.5, connect_timeout_s=0.5)))
        return made[-1]

    yield make
    for upstream in made:
        await upstream.aclose()


async def test_engine_hanging_up_mid_answer_is_a_bad_gateway(
    client_for: Callable[[str], Upstream],
) -> None:
    async with serve(hang_up_mid_body) as url:
        with pytest.raises(UpstreamBadGateway):
            await client_for(url).post_json("/v1/chat/completions", BODY)


async def test_engine_hanging_up_mid_stream_is_a_bad_gateway(
    client_for: Callable[[str], Upstream],
) -> None:
    async with serve(hang_up_mid_stream) as url:
        with pytest.raises(UpstreamBadGateway):
            async with client_for(url).open_stream("/v1/chat/completions", BODY) as response:
                async for _ in iter_sse_chunks(response):
                    pass


async def test_invalid_http_from_the_engine_is_a_bad_gateway(
    client_for: Callable[[str], Upstream],
) -> None:
    async with serve(answer_garbage) as url:
        with pytest.raises(UpstreamBadGateway):
            await client_for(url).post_json("/v1/chat/completions", BODY)


async def test_silent_engine_is_a_timeout(client_for: Callable[[str], Upstream]) -> None:
    async with serve(never_answer) as url:
        with pytest.raises(UpstreamTimeout):
            await client_for(url).post_json("/v1/chat/completions", BODY)


async def test_nothing_listening_is_unreachable(client_for: Callable[[str], Upstream]) -> None:
    with pytest.raises(UpstreamUnreachable):
        await client_for(f"http://127.0.0.1:{free_port()}").post_json("/v1/chat/completions", BODY)
