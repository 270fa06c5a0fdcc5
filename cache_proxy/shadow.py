"""Shadow verification: a sample of semantic hits is re-asked of the engine, off the hit path.

The client is served from the cache as usual. In the background the same request goes to the
engine; the fresh answer and the served one are embedded with the cache's own model and their
cosine ("agreement") is compared with the tenant's bound. The result is a live estimate of the
wrong-hit rate per tenant, from real traffic, with the suspect pairs kept for the admin API
(prompts only there, never in logs) as labelled material for the next calibration.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cache_proxy.assemble import answer_from_json
from cache_proxy.embedding import MicroBatcher
from cache_proxy.metrics import Metrics
from cache_proxy.schemas import Endpoint
from cache_proxy.store import Answer, Verdict, VerdictLog
from cache_proxy.upstream import PATHS, Upstream
from cache_proxy.verify.bounds import wilson_lower
from cache_proxy.verify.judges import answer_agreement

logger = logging.getLogger(__name__)
# The engine's spare capacity is for real traffic: beyond this many checks at once, skip.
MAX_IN_FLIGHT = 4
SUSPECTS_KEPT = 100  # per tenant
VERDICTS_KEPT = 2000  # per tenant: the window adaptive thresholds are computed over
MIN_VERDICTS = 30  # fewer verdicts at a similarity level say too little to act on
SHARED_REFRESH_S = 5.0  # how often a replica reads the tenant's verdicts of every replica
_Z95 = 1.96


def tightened_threshold(verdicts: Sequence[Verdict], configured: float, target: float) -> float:
    """The tenant's threshold, raised when shadow verdicts show its error above `target`.

    Raised only on evidence (the 95% lower bound of the suspect rate above the target, at
    MIN_VERDICTS or more), to the lowest similarity whose hits were within the target; 1.0
    (identical text only) when no level was. Never lowered below `configured`.
    """
    served = sorted((s, bad) for s, bad in verdicts if s >= configured)
    suspects = sum(bad for _, bad in served)
    if len(served) < MIN_VERDICTS or _wilson_lower(suspects, len(served)) <= target:
        return configured
    for start, (similarity, _) in enumerate(served):
        kept = len(served) - start
        if kept < MIN_VERDICTS:
            break
        if suspects / kept <= target:
            return similarity
        suspects -= served[start][1]
    return 1.0


def _wilson_lower(failures: int, total: int) -> float:
    return wilson_lower(failures, total, _Z95)


@dataclass(frozen=True)
class ShadowRequest:
    tenant: str
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    query_text: str
    cached_prompt: str
    similarity: float
    served: Answer
    min_agreement: float


@dataclass(frozen=True)
class Suspect:
    query: str
    cached_prompt: str
    similarity: float
    agreement: float
    at: float


def wants_shadow(rate: float, temperature: float | None) -> bool:
    """Sampled at `rate`, and only for greedy requests: sampled answers differ anyway."""
    return rate > 0.0 and temperature == 0.0 and random.random() < rate


class ShadowChecker:
    def __init__(self, upstream: Upstream, embedder: MicroBatcher, metrics: Metrics) -> None:
        self._upstream = upstream
        self._embedder = embedder
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._suspects: dict[str, deque[Suspect]] = {}
        self._tallies: dict[str, Counter[str]] = {}
        self._verdicts: dict[str, deque[Verdict]] = {}
        self._thresholds: dict[tuple[str, float, float], float] = {}
        self._shared: VerdictLog | None = None
        self._background: set[asyncio.Task[None]] = set()

    def share_through(self, log: VerdictLog, tenants: Callable[[], Sequence[str]]) -> None:
        """Verdicts go to `log` too, and every SHARED_REFRESH_S the tenant's window becomes
        the verdicts of all replicas: the bound is judged on the deployment's traffic."""
        self._shared = log
        self._spawn(self._refresh_forever(tenants))

    async def refresh_shared(self, tenants: Sequence[str]) -> None:
        if self._shared is None:
            return
        for tenant in tenants:
            verdicts = await self._shared.recent_verdicts(tenant, VERDICTS_KEPT)
            if verdicts is not None:  # oldest first, like the local window
                self._verdicts[tenant] = deque(reversed(verdicts), maxlen=VERDICTS_KEPT)
                self._forget_thresholds(tenant)

    async def _refresh_forever(self, tenants: Callable[[], Sequence[str]]) -> None:
        while True:
            await asyncio.sleep(SHARED_REFRESH_S)
            await self.refresh_shared(tenants())

    def _spawn(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def submit(self, request: ShadowRequest) -> bool:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._count(request.tenant, "skipped_busy")
            return False
        task = asyncio.get_running_loop().create_task(self._check(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def threshold(self, tenant: str, configured: float, target: float | None) -> float:
        """The threshold to apply now: `configured`, or raised by shadow verdicts (see above)."""
        if target is None:
            return configured
        key = (tenant, configured, target)
        if key not in self._thresholds:  # recomputed only after a new verdict
            verdicts = self._verdicts.get(tenant, ())
            self._thresholds[key] = tightened_threshold(verdicts, configured, target)
            self._metrics.effective_threshold.labels(tenant).set(self._thresholds[key])
        return self._thresholds[key]

    def record(self, tenant: str, similarity: float, suspect: bool) -> None:
        self._verdicts.setdefault(tenant, deque(maxlen=VERDICTS_KEPT)).append((similarity, suspect))
        self._forget_thresholds(tenant)
        if self._shared is not None:
            self._spawn(self._shared.add_verdict(tenant, (similarity, suspect), VERDICTS_KEPT))

    def _forget_thresholds(self, tenant: str) -> None:
        for key in [k for k in self._thresholds if k[0] == tenant]:
            del self._thresholds[key]

    def report(self, tenant: str) -> dict[str, Any]:
        """Counts by outcome, the suspect rate among verdicts, and the kept suspect pairs."""
        tally = self._tallies.get(tenant, Counter())
        verdicts = tally["agreed"] + tally["suspect"]
        return {
            "outcomes": dict(tally),
            "suspect_rate": tally["suspect"] / verdicts if verdicts else None,
            "suspects": [asdict(s) for s in self._suspects.get(tenant, ())],
        }

    def _count(self, tenant: str, outcome: str) -> None:
        self._tallies.setdefault(tenant, Counter())[outcome] += 1
        self._metrics.shadow_outcomes.labels(tenant, outcome).inc()

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, request: ShadowRequest) -> None:
        try:
            fresh = await self._ask_engine(request)
            agreement = await self._agreement(request.served.content, fresh.content)
        except (
            Exception
        ) as exc:  # engine or embedder failed: no verdict; never the client's problem
            logger.debug("shadow check failed: %s", type(exc).__name__)
            self._count(request.tenant, "failed")
            return
        self._metrics.shadow_agreement.labels(request.tenant).observe(agreement)
        self.record(request.tenant, request.similarity, agreement < request.min_agreement)
        if agreement >= request.min_agreement:
            self._count(request.tenant, "agreed")
            return
        self._count(request.tenant, "suspect")
        kept = self._suspects.setdefault(request.tenant, deque(maxlen=SUSPECTS_KEPT))
        kept.append(
            Suspect(
                request.query_text,
                request.cached_prompt,
                round(request.similarity, 4),
                round(agreement, 4),
                time.time(),
            )
        )

    async def _ask_engine(self, request: ShadowRequest) -> Answer:
        body = {k: v for k, v in request.body.items() if k != "stream_options"}
        body["stream"] = False
        parsed = await self._upstream.post_json(PATHS[request.endpoint], body)
        return answer_from_json(request.endpoint, request.model, parsed)

    async def _agreement(self, served: str, fresh: str) -> float:
        return await answer_agreement(self._embedder.embed, served, fresh)
