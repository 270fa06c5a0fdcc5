"""A scripted OpenAI-compatible upstream for fault injection (the real engine is in tests/e2e).

The last user turn steers it: `[[500]]`, `[[503]]`, `[[400]]` answer with that status,
`[[cut]]` ends the stream before [DONE] (a JSON answer: half its body), `[[nofinish]]` omits
finish_reason,
`[[midstream-error]]` sends an error event, `[[slow:S]]` waits S seconds per chunk,
`[[reply:WORD]]` answers WORD alone (anywhere in the prompt: a judge's prompt quotes it),
`[[echo]]` answers the prompt itself, markers removed (no call number: answers to
paraphrases then differ only in their words).
Every completion call is counted, so tests can prove the engine was (not) called, and the end
of every stream is recorded, so a test can wait for one to be over and see how it ended.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_SLOW = re.compile(r"\[\[slow:([0-9.]+)\]\]")
_REPLY = re.compile(r"\[\[reply:(\w+)\]\]")


class ScriptedUpstream:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.last_body: dict[str, Any] = {}
        self.last_headers: dict[str, str] = {}
        # (prompt, how it ended) per stream once over: "done" (up to [DONE]), "cut" (the
        # scripted [[cut]]) or "abandoned" (the client went away before the end)
        self.streams_ended: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completion, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    @property
    def completions_called(self) -> int:
        return self.calls["chat"] + self.calls["completion"]

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        body = await self._record("chat", request)
        prompt = str(body["messages"][-1].get("content"))
        return await self._respond("chat", body, prompt)

    async def _completion(self, request: Request) -> Response:
        body = await self._record("completion", request)
        return await self._respond("completion", body, str(body["prompt"]))

    async def _record(self, endpoint: str, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.calls[endpoint] += 1
        self.last_body = body
        self.last_headers = dict(request.headers)
        return body

    async def _respond(self, endpoint: str, body: dict[str, Any], prompt: str) -> Response:
        for status in (500, 503, 400):
            if f"[[{status}]]" in prompt:
                error = {"message": f"scripted {status}", "type": "BadRequestError", "code": status}
                return JSONResponse({"error": error, "object": "error"}, status_code=status)
        reply = _REPLY.search(prompt)
        text = reply.group(1) if reply else f"Answer {self.completions_called}: {prompt}"
        if "[[echo]]" in prompt:
            text = prompt.replace("[[echo]]", "").strip()
        if body.get("stream"):
            return StreamingResponse(
                self._stream(endpoint, body, prompt, text), media_type="text/event-stream"
            )
        slow = _SLOW.search(prompt)
        await asyncio.sleep(float(slow.group(1)) * len(text.split()) if slow else 0.0)
        payload = self._json(endpoint, body, text)
        if "[[nofinish]]" in prompt:
            payload["choices"][0]["finish_reason"] = None
        if "[[cut]]" in prompt:  # the connection drops mid-body
            raw = json.dumps(payload).encode()
            return Response(raw[: len(raw) // 2], media_type="application/json")
        return JSONResponse(payload)

    def _json(self, endpoint: str, body: dict[str, Any], text: str) -> dict[str, Any]:
        n = int(body.get("n", 1))
        if endpoint == "chat":
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
        else:
            choices = [{"index": i, "text": text, "finish_reason": "stop"} for i in range(n)]
        return {
            "id": "up-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": _usage(text),
        }

    async def _stream(
        self, endpoint: str, body: dict[str, Any], prompt: str, text: str
    ) -> AsyncIterator[bytes]:
        ended = "abandoned"
        try:
            slow = _SLOW.search(prompt)
            delay = float(slow.group(1)) if slow else 0.0
            words = [w + " " for w in text.split(" ")]
            words[-1] = words[-1].rstrip()
            if endpoint == "chat":
                yield _sse(_chunk(endpoint, body, {"delta": {"role": "assistant", "content": ""}}))
            for i, word in enumerate(words):
                await asyncio.sleep(delay)
                if "[[cut]]" in prompt and i == len(words) // 2:
                    ended = "cut"
                    return
                if "[[midstream-error]]" in prompt and i == len(words) // 2:
                    yield _sse({"error": {"message": "scripted mid-stream failure", "code": 500}})
                    ended = "done"
                    yield b"data: [DONE]\n\n"
                    return
                piece = {"delta": {"content": word}} if endpoint == "chat" else {"text": word}
                yield _sse(_chunk(endpoint, body, piece))
            finish = None if "[[nofinish]]" in prompt else "stop"
            last: dict[str, Any] = {"delta": {}} if endpoint == "chat" else {"text": ""}
            yield _sse(_chunk(endpoint, body, {**last, "finish_reason": finish}))
            if (body.get("stream_options") or {}).get("include_usage"):
                yield _sse({**_chunk(endpoint, body, None), "choices": [], "usage": _usage(text)})
            ended = "done"
            yield b"data: [DONE]\n\n"
        finally:
            self.streams_ended.append((prompt, ended))


def _chunk(endpoint: str, body: dict[str, Any], choice: dict[str, Any] | None) -> dict[str, Any]:
    obj = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
    chunk: dict[str, Any] = {
        "id": "up-stream",
        "object": obj,
        "created": int(time.time()),
        "model": body["model"],
    }
    chunk["choices"] = (
        [] if choice is None else [{"index": 0, "logprobs": None, "finish_reason": None, **choice}]
    )
    return chunk


def _usage(text: str) -> dict[str, int]:
    completion = len(text.split())
    return {"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
