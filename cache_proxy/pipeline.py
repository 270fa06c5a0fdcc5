"""The request path: tenant -> key -> cacheable? -> exact -> embed -> search -> verify ->
hit (replay) | miss (single flight -> engine -> store)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.requests import Request
from starlette.responses import Response

from cache_proxy import responses
from cache_proxy.assemble import StreamAssembler, checked_answer
from cache_proxy.body import read_body
from cache_proxy.coalesce import Coalescer, Flight
from cache_proxy.config import ServerSettings
from cache_proxy.embedding import MicroBatcher
from cache_proxy.errors import (
    BadRequest,
    EmbedderFailed,
    InternalError,
    ProxyError,
    UpstreamError,
)
from cache_proxy.explore import Exploration, Explorer, judge_factory
from cache_proxy.keys import CacheKey, build_key
from cache_proxy.metrics import Metrics
from cache_proxy.replay import new_response_id
from cache_proxy.schemas import ChatRequest, CompletionRequest, Endpoint, parse_json_body
from cache_proxy.schemas import validate_request as validate
from cache_proxy.shadow import ShadowChecker, ShadowRequest, wants_shadow
from cache_proxy.store import Answer, CacheBackend, Entry, Lease, NoLease, StoredEntry
from cache_proxy.tenancy import Tenant, TenantDirectory
from cache_proxy.upstream import PATHS, Upstream, iter_sse_chunks, raise_for_upstream_status
from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.decision import Decision, HitDecider
from cache_proxy.verify.policy import OnlineVerifyPolicy

logger = logging.getLogger(__name__)
Vector = npt.NDArray[np.float32]
_INLINE_TOKENISE_CHARS = 2048  # shorter texts tokenise in well under a millisecond
_INLINE_PARSE_BYTES = 65_536  # smaller bodies parse and check in well under a millisecond


@dataclass(frozen=True)
class CacheControl:
    lookup: bool = True
    store: bool = True
    max_age: float | None = None  # serve nothing older; store for at most this long

    @classmethod
    def from_header(cls, value: str | None) -> CacheControl:
        tokens = {t.strip().lower() for t in (value or "").split(",")}
        max_age = _max_age(tokens)
        return cls(
            lookup="no-cache" not in tokens,
            # max-age=0: nothing may be kept, so it must not lead (or share) a storing flight
            store="no-store" not in tokens and max_age != 0,
            max_age=max_age,
        )

    def fresh(self, entry: Entry) -> bool:
        return self.max_age is None or entry.age_s(time.time()) <= self.max_age

    def ttl_s(self, tenant_ttl_s: float | None) -> float | None:
        """A request may shorten the tenant's TTL, never lengthen it."""
        limits = [t for t in (tenant_ttl_s, self.max_age) if t is not None]
        return min(limits) if limits else None


def _max_age(tokens: set[str]) -> float | None:
    """The smallest well-formed max-age; absent or malformed ones are ignored, as HTTP caches
    do (ASCII digits only: '²'.isdigit() is true but no number)."""
    ages = []
    for token in tokens:
        name, _, value = token.partition("=")
        value = value.strip()
        if name.strip() == "max-age" and value.isascii() and value.isdigit():
            ages.append(float(value))
    return min(ages) if ages else None


@dataclass(frozen=True)
class Lookup:
    entry: Entry | None
    match: str = ""
    similarity: float = 0.0
    vector: Vector | None = None
    exploration: Exploration | None = None  # a miss whose fresh answer is to be judged


@dataclass(frozen=True)
class Joined:
    """A subscription to the in-flight engine call for one exact request."""

    key: tuple[str, str, bool]
    flight: Flight
    leader: bool


def _known(vector: Vector | None) -> asyncio.Future[Vector | None]:
    future: asyncio.Future[Vector | None] = asyncio.get_running_loop().create_future()
    future.set_result(vector)
    return future


def _runner_up(candidates: list[Candidate], chosen: Candidate) -> float:
    """The best similarity of another entry (0.0 when there is none)."""
    return max((c.similarity for c in candidates if c is not chosen), default=0.0)


@dataclass(frozen=True)
class Call:
    """One validated request of one tenant."""

    tenant: Tenant
    endpoint: Endpoint
    body: dict[str, Any]
    request: ChatRequest | CompletionRequest
    key: CacheKey
    control: CacheControl

    @property
    def include_usage(self) -> bool:
        options = self.request.stream_options
        return bool(options and options.include_usage)


class Pipeline:
    def __init__(
        self,
        tenants: TenantDirectory,
        store: CacheBackend,
        embedder: MicroBatcher,
        upstream: Upstream,
        metrics: Metrics,
        limits: ServerSettings,
        top_k: int,
        decider: HitDecider,
    ) -> None:
        self.tenants = tenants
        self.store = store
        self.embedder = embedder
        self.upstream = upstream
        self.metrics = metrics
        self.limits = limits  # body size and read time, JSON depth, message count
        self.top_k = top_k
        self.decider = decider
        self.coalescer = Coalescer()
        self.shadow = ShadowChecker(upstream, embedder, metrics)
        self.explorer = Explorer(judge_factory(upstream, embedder.embed), metrics)

    async def aclose(self) -> None:
        """Stops the engine calls in flight, background checks, the embedder and the store."""
        await self.coalescer.aclose()
        await self.shadow.aclose()
        await self.explorer.aclose()
        await self.embedder.close()
        await self.store.aclose()

    def refresh_gauges(self) -> None:
        """Entry and index gauges, read at scrape time (O(partitions), not O(entries))."""
        for name in self.store.tenant_names():
            cache = self.store.tenant(name)
            stats = cache.index_stats()
            self.metrics.entries.labels(name).set(len(cache))
            for kind in ("flat", "ivf"):
                self.metrics.index_vectors.labels(name, kind).set(stats[kind])
            self.metrics.index_bytes.labels(name).set(stats["bytes"])
            self.metrics.index_rebuilding.labels(name).set(stats["rebuilding"])

    async def handle(self, endpoint: Endpoint, request: Request) -> Response:
        started = time.perf_counter()
        tenant_name = "unknown"
        try:
            tenant = self.tenants.resolve(request.headers)
            tenant_name = tenant.name
            call = await self._parse(tenant, endpoint, request)
            response, outcome = await self._answer(call)
        except ProxyError as exc:
            self._count_error(exc)
            response, outcome = responses.error_response(exc), "error"
        except Exception as exc:  # the one catch-all of the request path: our bug, not a 500 page
            logger.error("tenant=%s endpoint=%s internal error: %s", tenant_name, endpoint,
                         type(exc).__name__, exc_info=exc)  # fmt: skip  # the trace, no prompt
            response, outcome = responses.error_response(InternalError()), "error"
        self.metrics.record(tenant_name, outcome, time.perf_counter() - started)
        logger.info(
            "tenant=%s endpoint=%s outcome=%s status=%d ms=%.1f",
            tenant_name,
            endpoint,
            outcome,
            response.status_code,
            1000 * (time.perf_counter() - started),
        )
        return response

    async def _parse(self, tenant: Tenant, endpoint: Endpoint, request: Request) -> Call:
        raw = await read_body(request, self.limits.max_body_bytes, self.limits.body_timeout_s)
        if len(raw) <= _INLINE_PARSE_BYTES:
            body = parse_json_body(raw, self.limits.max_json_depth)
        else:  # decoding and checking a large body is CPU the event loop must not spend
            body = await asyncio.to_thread(parse_json_body, raw, self.limits.max_json_depth)
        messages = body.get("messages")
        if isinstance(messages, list) and len(messages) > self.limits.max_messages:
            raise BadRequest(f"More than {self.limits.max_messages} messages.", "messages")
        parsed = validate(endpoint, body)
        key = build_key(endpoint, body, parsed, tenant.policy)
        control = CacheControl.from_header(request.headers.get("cache-control"))
        return Call(tenant, endpoint, body, parsed, key, control)

    async def _answer(self, call: Call) -> tuple[Response, str]:
        if call.key.bypass_reason is not None:
            return await self._bypass(call), "bypass"
        if not call.control.lookup:
            return await self._miss(call, self._join(call, _known(None)))
        entry = self.store.tenant(call.tenant.name).get_exact(call.key.exact)
        if entry is not None and call.control.fresh(entry):
            return self._serve_hit(call, Lookup(entry, "exact", 1.0)), "hit_exact"
        if not await self._semantic(call):
            return await self._miss(call, self._join(call, _known(None)))
        if call.tenant.policy.speculative_miss:
            return await self._speculate(call)
        found = await self._semantic_lookup(call)
        if found.entry is not None:
            return self._serve_hit(call, found), "hit_semantic"
        return await self._miss(call, self._explore(found, self._join(call, _known(found.vector))))

    def _explore(self, found: Lookup, joined: Joined) -> Joined:
        """An exploration's verdict waits for the answer this miss gets from the engine."""
        if found.exploration is not None:
            self.explorer.explore(found.exploration, joined.flight.result)
        return joined

    async def _speculate(self, call: Call) -> tuple[Response, str]:
        """The engine starts on the request while the semantic lookup runs; a hit aborts it."""
        vector: asyncio.Future[Vector | None] = asyncio.get_running_loop().create_future()
        joined = self._join(call, vector)
        try:
            found = await self._semantic_lookup(call)
        except BaseException:
            vector.set_result(None)  # an identical request that joined the flight still stores
            self._leave(joined)
            raise
        vector.set_result(found.vector)
        if found.entry is None:
            return await self._miss(call, self._explore(found, joined))
        started_by_us = joined.leader and not joined.flight.done
        self._leave(joined)  # the last subscriber leaving cancels the engine request
        if started_by_us:
            self.metrics.speculative_aborts.labels(call.tenant.name).inc()
        return self._serve_hit(call, found), "hit_semantic"

    # ---- lookup -------------------------------------------------------------------------
    async def _semantic_lookup(self, call: Call) -> Lookup:
        cache = self.store.tenant(call.tenant.name)
        vector = await self._embed(call.key.query_text)
        started = time.perf_counter()
        hits = await cache.search(call.key.partition, vector, self.top_k)
        self.metrics.search_seconds.observe(time.perf_counter() - started)
        fresh = {h.entry.entry_id: h.entry for h in hits if call.control.fresh(h.entry)}
        candidates = [
            Candidate(h.entry.entry_id, h.entry.query_text, h.similarity)
            for h in hits
            if h.entry.entry_id in fresh
        ]
        if not candidates:
            return Lookup(None, vector=vector)
        online = call.tenant.policy.verify.online
        if online.enabled:
            return await self._online_lookup(call, candidates, fresh, vector)
        chosen = await self._verify(call, candidates)
        if chosen is None:
            return Lookup(None, vector=vector)
        return Lookup(cache.touch(chosen.entry_id), "semantic", chosen.similarity, vector)

    async def _online_lookup(
        self, call: Call, candidates: list[Candidate], fresh: dict[int, Entry], vector: Vector
    ) -> Lookup:
        """Guards and verifier first (from `floor` up), then the learned boundary decides."""
        config = call.tenant.policy.verify.online
        decision = await self._decide(call, candidates, config.floor)
        chosen = decision.candidate
        if chosen is None:
            return Lookup(None, vector=vector)
        entry = fresh[chosen.entry_id]
        margin = chosen.similarity - _runner_up(candidates, chosen)
        if decision.reason != "identical":
            tenant = call.tenant.name
            action = self.explorer.decide(tenant, config, chosen.similarity, margin, entry.exact)
            if action == "miss":
                return Lookup(None, vector=vector)
            if action == "explore":
                exploration = self._exploration(call, config, chosen, margin, entry)
                return Lookup(None, vector=vector, exploration=exploration)
        touched = self.store.tenant(call.tenant.name).touch(chosen.entry_id)
        return Lookup(touched, "semantic", chosen.similarity, vector)

    def _exploration(
        self, call: Call, config: OnlineVerifyPolicy, chosen: Candidate, margin: float, entry: Entry
    ) -> Exploration:
        return Exploration(
            tenant=call.tenant.name,
            config=config,
            similarity=chosen.similarity,
            margin=margin,
            entry=entry.exact,
            query=call.key.query_text,
            cached_prompt=entry.query_text,
            cached_answer=entry.answer,
            model=call.request.model,
        )

    async def _semantic(self, call: Call) -> bool:
        # A truncated embedding would match prompts that differ only past the cut: exact only.
        if not call.key.semantic:
            return False
        text = call.key.query_text
        if len(text) > self.limits.max_prompt_chars:
            return False
        if len(text) <= _INLINE_TOKENISE_CHARS:
            return self.embedder.fits(text)
        return await asyncio.to_thread(self.embedder.fits, text)  # 1 MB took 1.2 s on the loop

    async def _embed(self, text: str) -> Vector:
        started = time.perf_counter()
        try:
            vector = await self.embedder.embed(text)
        except Exception as exc:  # the model failed, not the request: 503, retry elsewhere
            logger.error("the embedder failed: %s", type(exc).__name__, exc_info=exc)
            raise EmbedderFailed() from exc
        self.metrics.embed_seconds.observe(time.perf_counter() - started)
        return vector

    async def _verify(self, call: Call, candidates: list[Candidate]) -> Candidate | None:
        policy = call.tenant.policy
        target = policy.verify.shadow_target_error
        threshold = self.shadow.threshold(call.tenant.name, policy.threshold, target)
        return (await self._decide(call, candidates, threshold)).candidate

    async def _decide(self, call: Call, candidates: list[Candidate], threshold: float) -> Decision:
        verify = call.tenant.policy.verify
        args = (call.key.query_text, candidates, threshold, verify)
        started = time.perf_counter()
        if verify.verifier.enabled:  # a cross-encoder must not block the event loop
            decision = await asyncio.to_thread(self.decider.decide, *args)
        else:
            decision = self.decider.decide(*args)
        self.metrics.verify_seconds.observe(time.perf_counter() - started)
        if decision.candidate is None and decision.reason != "below_threshold":
            self.metrics.rejected_candidates.labels(call.tenant.name, decision.reason).inc()
        return decision

    def _serve_hit(self, call: Call, found: Lookup) -> Response:
        assert found.entry is not None
        answer = found.entry.answer
        self.store.record_use(call.tenant.name, found.entry)
        if found.match == "semantic":
            self._maybe_shadow(call, found.entry, found.similarity)
        self.metrics.cached_tokens.labels(call.tenant.name).inc(answer.completion_tokens)
        headers = {
            "x-cache": "HIT",
            "x-cache-match": found.match,
            "x-cache-similarity": f"{found.similarity:.4f}",
            "x-cache-entry": found.entry.exact,
        }
        if call.request.stream:
            return responses.sse_answer(answer, call.include_usage, headers)
        return responses.json_answer(answer, headers)

    def _maybe_shadow(self, call: Call, entry: Entry, similarity: float) -> None:
        policy = call.tenant.policy.verify
        if not wants_shadow(policy.shadow_rate, call.request.temperature):
            return
        request = ShadowRequest(
            tenant=call.tenant.name,
            endpoint=call.endpoint,
            body=call.body,
            model=call.request.model,
            query_text=call.key.query_text,
            cached_prompt=entry.query_text,
            similarity=similarity,
            served=entry.answer,
            min_agreement=policy.shadow_min_agreement,
        )
        self.shadow.submit(request)

    # ---- miss ---------------------------------------------------------------------------
    def _join(self, call: Call, vector: Awaitable[Vector | None]) -> Joined:
        """Subscribe to the engine call for this exact request, starting it if none runs."""
        key = (call.tenant.name, call.key.exact, call.control.store)
        generation = self.store.generation(call.tenant.name)

        async def run(flight: Flight) -> None:
            await self._fetch_and_store(call, flight, vector, generation)

        flight, leader = self.coalescer.join(key, run, streaming=call.request.stream)
        return Joined(key, flight, leader)

    def _leave(self, joined: Joined) -> None:
        self.coalescer.leave(joined.key, joined.flight)

    async def _miss(self, call: Call, joined: Joined) -> tuple[Response, str]:
        flight, leader = joined.flight, joined.leader
        headers = {"x-cache": "MISS"} if leader else {"x-cache": "MISS", "x-cache-coalesced": "1"}
        if call.control.store:  # the key a complete answer is stored under
            headers["x-cache-entry"] = call.key.exact
        try:
            await flight.wait_started()
            relay = call.request.stream and flight.streaming and not flight.remote
            answer = None if relay else await flight.result()
        except BaseException:
            self._leave(joined)
            raise
        if answer is not None:
            self._leave(joined)
            outcome = "miss"
            if flight.remote:  # another replica's engine call answered: a hit for this one
                headers.update({"x-cache": "HIT", "x-cache-match": "exact"})
                headers.update({"x-cache-similarity": "1.0000", "x-cache-coalesced": "remote"})
                outcome = "hit_exact"
            if call.request.stream:  # joined a JSON flight: replay its answer as SSE
                return responses.sse_answer(answer, call.include_usage, headers), outcome
            return responses.json_answer(answer, headers), outcome
        response_id = None if leader else new_response_id(call.endpoint)
        relayed = responses.sse_from_flight(
            flight,
            call.include_usage,
            response_id,
            headers,
            on_close=lambda: self._leave(joined),
        )
        return relayed, "miss"

    async def _fetch_and_store(
        self, call: Call, flight: Flight, vector: Awaitable[Vector | None], generation: int
    ) -> None:
        lease = await self._lead_across_replicas(call)
        if lease is None:  # another replica is asking the engine: wait for its stored answer
            remote = await self.store.await_remote(call.tenant.name, call.key.exact)
            served = remote is not None and call.control.fresh(remote)
            self.metrics.remote_coalesced.labels(
                call.tenant.name, "served" if served else "fallback"
            ).inc()
            if remote is not None and served:
                flight.finish(remote.answer, remote=True)
                return
            lease = NoLease()  # it failed or gave up: ask the engine ourselves
        try:
            # The leader's form decides the upstream form: streaming costs the engine and the
            # proxy per-token work that a JSON client would not see anyway.
            if flight.streaming:
                answer = await self._fetch_stream(call, flight)
            else:
                answer = await self._fetch_json(call, flight)
            if answer.complete and call.control.store:
                await self._store(call, answer, await vector, generation)
        finally:
            await lease.release()
        flight.finish(answer)

    async def _lead_across_replicas(self, call: Call) -> Lease | None:
        """Only answers that will be stored can be shared; the others always lead."""
        if not call.control.store:
            return NoLease()
        return await self.store.lead(call.tenant.name, call.key.exact)

    async def _fetch_stream(self, call: Call, flight: Flight) -> Answer:
        body = {**call.body, "stream": True, "stream_options": {"include_usage": True}}
        assembler = StreamAssembler(call.endpoint, call.request.model)
        async with self.upstream.open_stream(PATHS[call.endpoint], body) as response:
            flight.mark_started()
            async for chunk in iter_sse_chunks(response):
                assembler.add(chunk.data)
                flight.publish(chunk)
        return assembler.answer()

    async def _fetch_json(self, call: Call, flight: Flight) -> Answer:
        body = {k: v for k, v in call.body.items() if k != "stream_options"}
        body["stream"] = False
        parsed = await self.upstream.post_json(PATHS[call.endpoint], body)
        flight.mark_started()
        return checked_answer(call.endpoint, call.request.model, parsed)

    async def _store(
        self, call: Call, answer: Answer, vector: Vector | None, generation: int
    ) -> None:
        if vector is None and await self._semantic(call):
            try:
                vector = await self._embed(call.key.query_text)
            except EmbedderFailed:
                return  # the client still gets the engine's answer; it is just not kept
        ttl_s = call.control.ttl_s(call.tenant.policy.ttl_s)
        now, key = time.time(), call.key
        entry = StoredEntry(
            partition=key.partition,
            exact=key.exact,
            query_text=key.query_text,
            answer=answer,
            vector=vector,
            created_at=now,
            expires_at=None if ttl_s is None else now + ttl_s,
        )
        # False when invalidated while the engine was answering (the answer may be stale), or
        # when the shared tier is down: either way the client still gets its answer.
        await self.store.put(call.tenant.name, entry, generation)
        self.metrics.entries.labels(call.tenant.name).set(len(self.store.tenant(call.tenant.name)))

    # ---- bypass -------------------------------------------------------------------------
    async def _bypass(self, call: Call) -> Response:
        headers = {"x-cache": "BYPASS", "x-cache-bypass-reason": call.key.bypass_reason or ""}
        path = PATHS[call.endpoint]
        if not call.request.stream:
            raw = await self.upstream.post_raw(path, call.body)
            raise_for_upstream_status(raw.status_code, raw.body)
            return responses.raw_json(raw.status_code, raw.body, headers)
        closer = contextlib.AsyncExitStack()
        try:
            response = await closer.enter_async_context(self.upstream.open_stream(path, call.body))
        except BaseException:
            await closer.aclose()
            raise
        return responses.raw_stream(response, closer, headers)

    def _count_error(self, exc: ProxyError) -> None:
        if isinstance(exc, UpstreamError):
            self.metrics.upstream_errors.labels(kind=exc.kind).inc()
