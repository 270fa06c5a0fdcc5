"""A stored Answer -> OpenAI JSON or OpenAI SSE chunks, whichever the client asked for."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cache_proxy.schemas import Endpoint
from cache_proxy.store.entry import Answer

DONE_LINE = b"data: [DONE]\n\n"
_WORD_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")
_WORDS_PER_CHUNK = 4
_OBJECTS = {
    ("chat", False): "chat.completion",
    ("chat", True): "chat.completion.chunk",
    ("completion", False): "text_completion",
    ("completion", True): "text_completion",
}


def new_response_id(endpoint: Endpoint) -> str:
    prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


def sse_line(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def answer_json(answer: Answer, response_id: str | None = None) -> dict[str, Any]:
    if answer.endpoint == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": answer.content}
        if answer.tool_calls:
            message["tool_calls"] = list(answer.tool_calls)
        choice: dict[str, Any] = {"index": 0, "message": message}
    else:
        choice = {"index": 0, "text": answer.content}
    choice.update(logprobs=None, finish_reason=answer.finish_reason)
    body = _envelope(answer, stream=False, response_id=response_id)
    body.update(choices=[choice], usage=answer.usage)
    return body


def answer_sse_chunks(answer: Answer, include_usage: bool) -> Iterator[dict[str, Any]]:
    """Role delta, content deltas, finish_reason, optional usage: one id for the whole stream."""
    response_id = new_response_id(answer.endpoint)
    if answer.endpoint == "chat":
        yield _chunk(answer, response_id, {"delta": {"role": "assistant", "content": ""}})
    for piece in content_pieces(answer.content):
        yield _chunk(answer, response_id, _content_choice(answer.endpoint, piece))
    if answer.tool_calls:
        calls = [{"index": i, **call} for i, call in enumerate(answer.tool_calls)]
        yield _chunk(answer, response_id, {"delta": {"tool_calls": calls}})
    finish = _content_choice(answer.endpoint, "")
    yield _chunk(answer, response_id, {**finish, "finish_reason": answer.finish_reason})
    if include_usage and answer.usage is not None:
        usage_chunk = _envelope(answer, stream=True, response_id=response_id)
        usage_chunk.update(choices=[], usage=answer.usage)
        yield usage_chunk


def content_pieces(content: str) -> list[str]:
    words = _WORD_BOUNDARY.split(content) if content else []
    return [
        "".join(words[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(words), _WORDS_PER_CHUNK)
    ]


def _content_choice(endpoint: Endpoint, piece: str) -> dict[str, Any]:
    return {"delta": {"content": piece}} if endpoint == "chat" else {"text": piece}


def _chunk(answer: Answer, response_id: str, choice: dict[str, Any]) -> dict[str, Any]:
    body = _envelope(answer, stream=True, response_id=response_id)
    body["choices"] = [{"index": 0, "logprobs": None, "finish_reason": None, **choice}]
    return body


def _envelope(answer: Answer, stream: bool, response_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": response_id or new_response_id(answer.endpoint),
        "object": _OBJECTS[(answer.endpoint, stream)],
        "created": int(time.time()),
        "model": answer.model,
    }
    if answer.system_fingerprint:
        body["system_fingerprint"] = answer.system_fingerprint
    return body
