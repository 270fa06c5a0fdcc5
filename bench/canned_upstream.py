"""Fills the cache when no engine URL is given: answers every prompt with a fixed sentence.

Only the fill requests reach it; the hit path being measured never calls the upstream.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "A canned answer used only to fill the cache for this benchmark."


async def _chat(request: Request) -> Response:
    body = await request.json()
    usage = {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}
    if not body.get("stream"):
        message = {"role": "assistant", "content": ANSWER}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            {
                "id": "canned",
                "object": "chat.completion",
                "model": body["model"],
                "created": int(time.time()),
                "choices": [choice],
                "usage": usage,
            }
        )

    async def events() -> AsyncIterator[bytes]:
        base = {
            "id": "canned",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        for choice in (
            {"delta": {"role": "assistant", "content": ANSWER}},
            {"delta": {}, "finish_reason": "stop"},
        ):
            chunk = {**base, "choices": [{"index": 0, "finish_reason": None, **choice}]}
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _health(request: Request) -> Response:
    return Response(status_code=200)


@contextmanager
def canned_upstream(engine_url: str | None) -> Iterator[tuple[str, str]]:
    """Yields (url, label): the given engine, or a canned upstream started on loopback."""
    if engine_url:
        yield engine_url, f"engine at {engine_url}"
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = Starlette(
        routes=[Route("/v1/chat/completions", _chat, methods=["POST"]), Route("/health", _health)]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", "canned-answer upstream (fill only)"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
