"""The cache simulation through a running proxy: fill it with side A, ask side B, judge hits.

Same sides and definitions as `simulate` (labels.py), but every decision is the server's own:
tenancy, exact tier, embedding, FAISS, guards, verifier and the tenant's live config. Fill
requests send `Cache-Control: no-cache`, so every text_a is stored even when a similar one is
already cached (the simulation's cache holds them all); questions send `no-store`, so a missed
question does not become an entry for the next. A hit names the entry that answered
(`X-Cache-Entry`), which maps back to the text that filled it. The tenant's cache should start
empty: a hit on an entry this run did not fill is counted as unjudged (`foreign`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
from tqdm import tqdm

from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.mining import cache_simulation_sides
from cache_tools.evaluation.pairs import Pair
from cache_tools.evaluation.simulate import Summary

T = TypeVar("T")
R = TypeVar("R")


class ServerReplayError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerTarget:
    url: str
    api_key: str
    model: str | None = None  # None: the first model the engine lists
    max_tokens: int = 1  # answers are not judged, only which prompt answered
    concurrency: int = 8
    timeout_s: float = 300.0


@dataclass(frozen=True)
class Asked:
    """What the proxy said about one question."""

    cache: str  # HIT or MISS
    match: str  # exact | semantic | "" on a miss
    entry: str | None


async def replay_through_server(
    pairs: list[Pair],
    book: LabelBook,
    target: ServerTarget,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Summary:
    cache, queries = cache_simulation_sides(pairs)
    headers = {"authorization": f"Bearer {target.api_key}"}
    async with httpx.AsyncClient(
        base_url=target.url, headers=headers, timeout=target.timeout_s, transport=transport
    ) as client:
        model = target.model or await _first_model(client)
        filled = await _fill(client, model, cache, target)
        asked = await _bounded(
            queries, target.concurrency, lambda q: _ask(client, model, q, target), "ask"
        )
    return judge_answers(queries, asked, filled, frozenset(cache), book)


def judge_answers(
    queries: Sequence[str],
    asked: Sequence[Asked],
    filled: dict[str, str],
    in_cache: frozenset[str],
    book: LabelBook,
) -> Summary:
    summary = Summary()
    for query, answer in zip(queries, asked, strict=True):
        answerable = book.answerable(query, in_cache)
        if answer.cache != "HIT":
            summary.add(None, answerable, "miss")
            continue
        cached = filled.get(answer.entry or "")
        if cached is None:
            summary.add("unjudged", answerable, "foreign")
            continue
        summary.add(book.judge(query, cached), answerable, f"hit_{answer.match}")
    return summary


async def _fill(
    client: httpx.AsyncClient, model: str, texts: list[str], target: ServerTarget
) -> dict[str, str]:
    async def one(text: str) -> tuple[str, str]:
        response = await _chat(client, model, text, target.max_tokens, "no-cache")
        entry = response.headers.get("x-cache-entry")
        if entry is None:
            raise ServerReplayError("the proxy names no X-Cache-Entry on a stored miss")
        return entry, text

    return dict(await _bounded(texts, target.concurrency, one, "fill"))


async def _ask(client: httpx.AsyncClient, model: str, text: str, target: ServerTarget) -> Asked:
    response = await _chat(client, model, text, target.max_tokens, "no-store")
    found = response.headers
    return Asked(
        found.get("x-cache", ""), found.get("x-cache-match", ""), found.get("x-cache-entry")
    )


async def _chat(
    client: httpx.AsyncClient, model: str, text: str, max_tokens: int, cache_control: str
) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"cache-control": cache_control}
    )
    if response.status_code != 200:
        raise ServerReplayError(f"proxy answered {response.status_code}: {response.text[:300]}")
    return response


async def _first_model(client: httpx.AsyncClient) -> str:
    response = await client.get("/v1/models")
    if response.status_code != 200:
        raise ServerReplayError(f"GET /v1/models: {response.status_code} {response.text[:300]}")
    models = response.json().get("data") or []
    if not models:
        raise ServerReplayError("the engine lists no model; pass --model")
    return str(models[0]["id"])


async def _bounded(
    items: Sequence[T], concurrency: int, work: Callable[[T], Awaitable[R]], desc: str
) -> list[R]:
    """`work` on every item, at most `concurrency` at once, results in item order."""
    semaphore = asyncio.Semaphore(concurrency)
    progress = tqdm(total=len(items), desc=desc, unit="request", mininterval=5)

    async def guarded(item: T) -> R:
        async with semaphore:
            result = await work(item)
        progress.update()
        return result

    try:
        return list(await asyncio.gather(*(guarded(item) for item in items)))
    finally:
        progress.close()
