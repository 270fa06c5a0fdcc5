"""Upstream SSE chunks -> one Answer, whatever form the client asked for."""

from __future__ import annotations

from typing import Any

from cache_proxy.errors import UpstreamBadGateway
from cache_proxy.schemas import Endpoint
from cache_proxy.store.entry import Answer


class StreamAssembler:
    def __init__(self, endpoint: Endpoint, model: str) -> None:
        self._endpoint = endpoint
        self._model = model
        self._parts: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, int] | None = None
        self._fingerprint: str | None = None
        self._extra_choices = False

    def add(self, chunk: dict[str, Any]) -> None:
        self._model = str(chunk.get("model") or self._model)
        self._fingerprint = chunk.get("system_fingerprint") or self._fingerprint
        if isinstance(chunk.get("usage"), dict):
            self._usage = {k: int(v) for k, v in chunk["usage"].items() if isinstance(v, int)}
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                self._extra_choices = True
                continue
            self._add_choice(choice)

    def answer(self) -> Answer:
        """What arrived; `complete` is False when it must not be stored."""
        return Answer(
            endpoint=self._endpoint,
            model=self._model,
            content="".join(self._parts),
            finish_reason=None if self._extra_choices else self._finish_reason,
            usage=self._usage,
            tool_calls=tuple(self._tool_calls[i] for i in sorted(self._tool_calls)),
            system_fingerprint=self._fingerprint,
        )

    def _add_choice(self, choice: dict[str, Any]) -> None:
        if self._endpoint == "chat":
            delta = choice.get("delta") or {}
            self._parts.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                self._merge_tool_call(call)
        else:
            self._parts.append(choice.get("text") or "")
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])

    def _merge_tool_call(self, call: dict[str, Any]) -> None:
        # Tool-call deltas carry the id and name once, then argument fragments.
        slot = self._tool_calls.setdefault(
            int(call.get("index", 0)),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        slot["id"] = call.get("id") or slot["id"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""


def checked_answer(endpoint: Endpoint, model: str, body: dict[str, Any]) -> Answer:
    """The engine's non-streamed answer to a one-choice request, or 502: an answer without
    its choice, its text (or tool calls) or its finish_reason is the engine's fault."""
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise UpstreamBadGateway("The engine's answer has no choice.")
    choice = choices[0]
    if not isinstance(choice.get("finish_reason"), str):
        raise UpstreamBadGateway("The engine's answer has no finish_reason.")
    carrier = choice.get("message") if endpoint == "chat" else choice
    text_field = "content" if endpoint == "chat" else "text"
    if not isinstance(carrier, dict) or not (
        isinstance(carrier.get(text_field), str) or carrier.get("tool_calls")
    ):
        raise UpstreamBadGateway("The engine's answer has no content.")
    return answer_from_json(endpoint, model, body)


def answer_from_json(endpoint: Endpoint, model: str, body: dict[str, Any]) -> Answer:
    """A non-streamed engine response -> Answer (incomplete unless exactly one finished choice)."""
    choices = body.get("choices") or []
    if len(choices) != 1 or not isinstance(choices[0], dict):
        return Answer(endpoint, str(body.get("model") or model), "", None)
    choice = choices[0]
    if endpoint == "chat":
        message = choice.get("message") or {}
        content, tool_calls = message.get("content") or "", message.get("tool_calls") or []
    else:
        content, tool_calls = choice.get("text") or "", []
    usage = body.get("usage")
    return Answer(
        endpoint=endpoint,
        model=str(body.get("model") or model),
        content=str(content),
        finish_reason=choice.get("finish_reason"),
        usage={k: v for k, v in usage.items() if isinstance(v, int)}
        if isinstance(usage, dict)
        else None,
        tool_calls=tuple(tool_calls),
        system_fingerprint=body.get("system_fingerprint"),
    )
