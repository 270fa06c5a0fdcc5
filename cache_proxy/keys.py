"""Request -> CacheKey: everything but the last user turn picks the partition (exact match);
the last user turn is the query text (semantic match inside the partition)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cache_proxy.config import TenantSettings
from cache_proxy.schemas import ChatRequest, CompletionRequest, Endpoint

# Fields that change how an answer is delivered, not what it says.
DELIVERY_ONLY_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "priority", "request_id"}
)


@dataclass(frozen=True)
class CacheKey:
    endpoint: Endpoint
    model: str
    partition: str  # digest of everything except the query text
    exact: str  # digest of partition + normalised query text
    query_text: str
    semantic: bool  # False: the query is not plain text, match it exactly only
    bypass_reason: str | None  # None: cacheable


def build_key(
    endpoint: Endpoint,
    body: dict[str, Any],
    request: ChatRequest | CompletionRequest,
    policy: TenantSettings,
) -> CacheKey:
    if isinstance(request, ChatRequest):
        context, query, semantic = _split_chat(body)
    else:
        context, query, semantic = _split_completion(body)
    partition = _digest({"endpoint": endpoint, **context})
    # Only the ends are trimmed: inner whitespace can carry meaning (code, tables, poems).
    normalised = query.replace("\r\n", "\n").strip()
    return CacheKey(
        endpoint=endpoint,
        model=request.model,
        partition=partition,
        exact=_digest({"partition": partition, "query": normalised}),
        query_text=normalised,
        semantic=semantic and bool(normalised),
        bypass_reason=bypass_reason(request, policy),
    )


def bypass_reason(request: ChatRequest | CompletionRequest, policy: TenantSettings) -> str | None:
    """Why this request's answer cannot be reused, or None when it can."""
    if request.n > 1:
        return "n>1"
    if request.logprobs or getattr(request, "top_logprobs", None):
        return "logprobs"
    if isinstance(request, CompletionRequest):
        if request.echo or (request.best_of or 1) > 1:
            return "echo_or_best_of"
        if not isinstance(request.prompt, str):
            return "prompt_not_text"
    limit = policy.max_temperature
    if limit is not None and (request.temperature or 0.0) > limit:
        return "temperature"
    return None


def _split_chat(body: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
    messages = body["messages"]
    last = messages[-1]
    context = _without_delivery(body, "messages")
    context["earlier_turns"] = messages[:-1]
    text = _plain_text(last.get("content"))
    if last.get("role") != "user" or text is None:
        # Not a plain user turn (tool result, prefill, image): exact tier only.
        context["last_turn"] = last
        return context, json.dumps(last, sort_keys=True), False
    context["last_turn_extra"] = {k: v for k, v in last.items() if k != "content"}
    return context, text, True


def _split_completion(body: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
    prompt = body["prompt"]
    context = _without_delivery(body, "prompt")
    if isinstance(prompt, str):
        return context, prompt, True
    return context, json.dumps(prompt), False


def _plain_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" for part in content
    ):
        return "\n".join(str(part.get("text", "")) for part in content)
    return None


def _without_delivery(body: dict[str, Any], query_field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in DELIVERY_ONLY_FIELDS and k != query_field}


def _digest(value: dict[str, Any]) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
