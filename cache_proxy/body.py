"""Reading a request body: at most `limit` bytes, within `timeout_s`, never more."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from cache_proxy.errors import PayloadTooLarge, RequestTimeout


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body; 413 past `limit` (checked on the declared length first, then as it
    arrives), 408 when the client does not send what it declared in time."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s.") from exc
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds {limit} bytes.")
