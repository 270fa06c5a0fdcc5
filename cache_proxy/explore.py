"""Hits verified online, in the proxy: the policy of verify/online.py fed by judged explorations.

On the hit path (`decide`) the work is a few dictionary lookups and comparisons: the boundary
is kept up to date by the verdicts, not computed per request. An exploration is a miss for the
client (the engine's fresh answer); once that answer is complete, a judge (verify/judges.py)
compares it with the cached answer in a background task, at most MAX_JUDGES_IN_FLIGHT at once
(beyond that the verdict is skipped, never the request delayed), and the verdict updates the
tenant's counts and the entry's own evidence.

State per tenant: the counts of the last VERDICTS_KEPT verdicts by similarity (a window, so
the boundary follows drifting traffic) and the evidence of up to ENTRIES_KEPT entries, keyed by
the entry's exact key (stable across replicas and restarts). With the Redis backend every
verdict is also written to the tenant's capped stream, and each replica reads the others' (and,
after a restart, its own earlier ones) every SHARED_REFRESH_S: the boundary is learned from
the whole deployment's traffic and survives restarts. The embedded backend keeps them beside
its snapshot, when it has one, for the same reason.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cache_proxy.metrics import Metrics
from cache_proxy.store import Answer, ExplorationLog, OnlineVerdict
from cache_proxy.store.backend import ONLINE_VERDICTS_KEPT
from cache_proxy.upstream import PATHS, Upstream
from cache_proxy.verify.judges import AnswerAgreementJudge, Embed, Judge, JudgeCase, LLMJudge
from cache_proxy.verify.online import Action, EntryEvidence, OnlineSettings, TenantBoundary
from cache_proxy.verify.online_score import LogisticScorer, boundary_from, fit_scorer
from cache_proxy.verify.policy import OnlineVerifyPolicy

logger = logging.getLogger(__name__)
VERDICTS_KEPT = ONLINE_VERDICTS_KEPT
ENTRIES_KEPT = 20_000
MAX_JUDGES_IN_FLIGHT = 4  # the engine's spare capacity is for real traffic
SHARED_REFRESH_S = 2.0
REFIT_EVERY = 200  # verdicts between refits of the learned score
JudgeFor = Callable[[OnlineVerifyPolicy], Judge]


def judge_factory(upstream: Upstream, embed: Embed) -> JudgeFor:
    """The tenant's judge: the LLM judge asks the engine (chat endpoint) through `upstream`,
    answer agreement embeds with the cache's own model."""

    def judge_for(config: OnlineVerifyPolicy) -> Judge:
        if config.judge == "llm":
            return LLMJudge(lambda body: upstream.post_json(PATHS["chat"], body))
        return AnswerAgreementJudge(embed, config.min_agreement)

    return judge_for


def online_settings(config: OnlineVerifyPolicy) -> OnlineSettings:
    return OnlineSettings(
        max_error=config.max_error,
        floor=config.floor,
        min_verdicts=config.min_verdicts,
        audit_rate=config.audit_rate,
        confidence=config.confidence,
    )


@dataclass(frozen=True)
class Exploration:
    """A candidate sent to the engine instead of served; judged once the fresh answer is in."""

    tenant: str
    config: OnlineVerifyPolicy
    similarity: float
    margin: float  # to the runner-up candidate
    entry: str  # the cached entry's exact key
    query: str
    cached_prompt: str
    cached_answer: Answer
    model: str


@dataclass(slots=True)
class _Judged:
    seq: int
    verdict: OnlineVerdict
    score: float  # what it was counted at in the boundary (to uncount it exactly)


@dataclass(frozen=True)
class Fit:
    """A refit's result, computed in a thread from a copy of the window."""

    scorer: LogisticScorer
    scores: dict[int, float]  # out-of-fold score per verdict (by sequence number)
    boundary: TenantBoundary  # counted from those scores
    last_seq: int


def fit_window(window: list[_Judged], settings: OnlineSettings) -> Fit:
    """The scorer fitted on the window, and the boundary of its out-of-fold scores (O(window):
    runs in a thread, never on the event loop)."""
    rows = np.array([[j.verdict.similarity, j.verdict.margin] for j in window])
    labels = np.array([float(j.verdict.correct) for j in window])
    scorer, out_of_fold = fit_scorer(rows, labels)
    scores = dict(zip([j.seq for j in window], out_of_fold.tolist(), strict=True))
    boundary = boundary_from(out_of_fold, labels, settings)
    return Fit(scorer, scores, boundary, window[-1].seq)


class TenantEvidence:
    """One tenant's verdict window, learned score, boundary and per-entry evidence.

    The boundary is on a score: P(right | similarity, margin to the runner-up candidate), a
    logistic regression refitted every REFIT_EVERY verdicts (in a thread, `fit_window`), with
    the boundary rebuilt from out-of-fold scores. Before the first fit the score is the
    similarity itself. A margin says how much nearer the chosen entry is than the next one: a
    query between two cached prompts is ambiguous even at a high similarity.
    """

    def __init__(self, settings: OnlineSettings) -> None:
        self.settings = settings
        self.scorer = LogisticScorer()
        self.tenant = TenantBoundary(settings)
        self._window: deque[_Judged] = deque()
        self._right = 0  # right verdicts in the window
        self._fitted: dict[int, float] = {}  # the last fit's scores (what the boundary counts)
        self._left_during_fit: list[_Judged] = []
        self._entries: OrderedDict[str, EntryEvidence] = OrderedDict()
        self._seq = itertools.count()
        self.since_fit = 0
        self.fitting = False

    @property
    def boundary(self) -> float:
        return self.tenant.boundary

    @property
    def verdicts(self) -> int:
        return len(self._window)

    def reconfigure(self, settings: OnlineSettings) -> None:
        self.settings = settings
        self.tenant.reconfigure(settings)

    def score(self, similarity: float, margin: float) -> float:
        if not self.scorer.fitted:
            return similarity
        return float(self.scorer.score(np.array([[similarity, margin]]))[0])

    def decide(self, similarity: float, margin: float, entry: str, draw: float) -> Action:
        if similarity < self.settings.floor:
            return "miss"
        evidence = self._entries.get(entry) or _NO_EVIDENCE
        if self.tenant.admits(self.score(similarity, margin)) and evidence.allows(similarity):
            return "explore" if draw < self.settings.audit_rate else "serve"
        return "explore"

    def record(self, verdict: OnlineVerdict, refresh: bool = True) -> None:
        """Counts a verdict (O(1), and O(bins) to refresh the boundary; a batch refreshes
        once at its end)."""
        judged = _Judged(next(self._seq), verdict, self.score(verdict.similarity, verdict.margin))
        self._window.append(judged)
        self._right += verdict.correct
        if len(self._window) > VERDICTS_KEPT:
            self._forget(self._window.popleft())
        self.tenant.add(judged.score, verdict.correct)
        if refresh:
            self.tenant.refresh()
        self.since_fit += 1
        evidence = self._entries.setdefault(verdict.entry, EntryEvidence())
        self._entries.move_to_end(verdict.entry)
        evidence.record(verdict.similarity, verdict.correct)
        if len(self._entries) > ENTRIES_KEPT:
            self._entries.popitem(last=False)

    def _forget(self, old: _Judged) -> None:
        self._right -= old.verdict.correct
        self.tenant.forget(self._fitted.get(old.seq, old.score), old.verdict.correct)
        if self.fitting:  # the fit in flight counted it: uncount it there too on install
            self._left_during_fit.append(old)

    def refit_due(self) -> bool:
        if self.fitting or self.since_fit < REFIT_EVERY:
            return False
        return 0 < self._right < len(self._window)

    def window(self) -> list[_Judged]:
        """A copy (C speed) for `fit_window` in a thread."""
        return list(self._window)

    def install(self, fit: Fit) -> None:
        """The fit's scorer and boundary; verdicts that came during the fit are added with
        the new scorer's score, and those that left the window meanwhile are uncounted."""
        self.scorer, self._fitted, self.tenant = fit.scorer, fit.scores, fit.boundary
        self.tenant.reconfigure(self.settings)  # a reload may have come during the fit
        for old in self._left_during_fit:
            if old.seq in fit.scores:
                self.tenant.forget(fit.scores[old.seq], old.verdict.correct)
        self._left_during_fit.clear()
        self.since_fit = 0
        for judged in reversed(self._window):  # the newest: few, the fit took milliseconds
            if judged.seq <= fit.last_seq:
                break
            judged.score = self.score(judged.verdict.similarity, judged.verdict.margin)
            self.tenant.add(judged.score, judged.verdict.correct)
            self.since_fit += 1
        self.tenant.refresh()


_NO_EVIDENCE = EntryEvidence()  # read only: `decide` never records into it


class Explorer:
    def __init__(self, judge_for: JudgeFor, metrics: Metrics, seed: int | None = None) -> None:
        self._judge_for = judge_for
        self._metrics = metrics
        self._draws = random.Random(seed)
        self._tenants: dict[str, TenantEvidence] = {}
        self._tallies: dict[str, Counter[str]] = {}
        self._judging = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._shared: ExplorationLog | None = None
        self._positions: dict[str, str] = {}

    # ---- the hit path ------------------------------------------------------------------------
    def decide(
        self, tenant: str, config: OnlineVerifyPolicy, similarity: float, margin: float, entry: str
    ) -> Action:
        state = self._state(tenant, online_settings(config))
        action = state.decide(similarity, margin, entry, self._draws.random())
        self._metrics.online_decisions.labels(tenant, action).inc()
        return action

    def _state(self, tenant: str, settings: OnlineSettings) -> TenantEvidence:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = TenantEvidence(settings)
        elif state.settings != settings:  # a config reload: same counts, new bound
            state.reconfigure(settings)
        return state

    # ---- off the hit path -----------------------------------------------------------------
    def explore(self, exploration: Exploration, fresh: Callable[[], Awaitable[Answer]]) -> None:
        """Judges `exploration` once `fresh()` (the engine's answer to the client) is in."""
        self._spawn(self._judge(exploration, fresh))

    async def _judge(
        self, exploration: Exploration, fresh: Callable[[], Awaitable[Answer]]
    ) -> None:
        tenant = exploration.tenant
        try:
            answer = await fresh()
        except Exception:  # the engine failed or every client left: nothing to compare
            self._count(tenant, "no_answer")
            return
        if not answer.complete:
            self._count(tenant, "no_answer")
            return
        if self._judging >= MAX_JUDGES_IN_FLIGHT:
            self._count(tenant, "skipped_busy")
            return
        self._judging += 1
        try:
            verdict = await self._judge_for(exploration.config).judge(_case(exploration, answer))
        except Exception as exc:  # a judge's failure is no verdict, never the client's problem
            logger.debug("online judge failed: %s", type(exc).__name__)
            self._count(tenant, "failed")
            return
        finally:
            self._judging -= 1
        if verdict is None:
            self._count(tenant, "abstained")
            return
        self._count(tenant, "correct" if verdict else "wrong")
        judged = OnlineVerdict(
            exploration.similarity, verdict, exploration.entry, exploration.margin
        )
        await self.add_verdict(tenant, judged, exploration.config)

    async def add_verdict(
        self, tenant: str, verdict: OnlineVerdict, config: OnlineVerifyPolicy
    ) -> None:
        """A verdict of this replica: counted here, and written for the others."""
        self.record(tenant, verdict, config)
        if self._shared is not None:
            await self._shared.add_online_verdict(tenant, verdict)

    def record(self, tenant: str, verdict: OnlineVerdict, config: OnlineVerifyPolicy) -> None:
        self.record_many(tenant, [verdict], config)

    def record_many(
        self, tenant: str, verdicts: Sequence[OnlineVerdict], config: OnlineVerifyPolicy
    ) -> None:
        """Counts them, refreshes the boundary once, and starts a refit when one is due."""
        state = self._state(tenant, online_settings(config))
        for verdict in verdicts:
            state.record(verdict, refresh=False)
        state.tenant.refresh()
        self._metrics.online_boundary.labels(tenant).set(state.boundary)
        if state.refit_due():
            state.fitting = True
            self._spawn(self._refit(tenant, state))

    async def _refit(self, tenant: str, state: TenantEvidence) -> None:
        try:
            fit = await asyncio.to_thread(fit_window, state.window(), state.settings)
            state.install(fit)
            self._metrics.online_boundary.labels(tenant).set(state.boundary)
        finally:
            state.fitting = False

    # ---- shared through Redis ------------------------------------------------------------
    def share_through(
        self, log: ExplorationLog, tenants: Callable[[], Sequence[tuple[str, OnlineVerifyPolicy]]]
    ) -> None:
        """`tenants`: the online-enabled tenants and their config, read at every refresh."""
        self._shared = log
        self._spawn(self._follow_forever(tenants), _FOLLOWER)

    async def follow_shared(self, tenants: Sequence[tuple[str, OnlineVerifyPolicy]]) -> None:
        """Reads every verdict the other replicas wrote since the last call (all kept, first)."""
        if self._shared is None:
            return
        for tenant, config in tenants:
            while True:
                read = await self._shared.online_verdicts_after(
                    tenant, self._positions.get(tenant, "")
                )
                if read is None or read[1] == self._positions.get(tenant, ""):
                    break
                verdicts, self._positions[tenant] = read
                self.record_many(tenant, verdicts, config)  # up to ONLINE_READ_BATCH at once

    async def _follow_forever(
        self, tenants: Callable[[], Sequence[tuple[str, OnlineVerifyPolicy]]]
    ) -> None:
        while True:
            try:
                await self.follow_shared(tenants())
            except Exception as exc:  # keep following; the next round reads on from here
                logger.warning("reading shared online verdicts failed: %s", type(exc).__name__)
            await asyncio.sleep(SHARED_REFRESH_S)

    def window(self, tenant: str) -> list[_Judged]:
        return self._tenants[tenant].window()

    # ---- reports and lifecycle ------------------------------------------------------------
    def report(self, tenant: str, config: OnlineVerifyPolicy) -> dict[str, Any]:
        state = self._tenants.get(tenant)
        return {
            "enabled": config.enabled,
            "max_error": config.max_error,
            "confidence": config.confidence,
            "judge": config.judge,
            "boundary": state.boundary if state is not None else 1.0,
            "verdicts_in_window": state.verdicts if state is not None else 0,
            "scorer_fitted": state is not None and state.scorer.fitted,
            "outcomes": dict(self._tallies.get(tenant, Counter())),
        }

    def _count(self, tenant: str, outcome: str) -> None:
        self._tallies.setdefault(tenant, Counter())[outcome] += 1
        self._metrics.online_verdicts.labels(tenant, outcome).inc()

    def _spawn(self, job: Any, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(job, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Until every judgement in flight is done (tests; the follower keeps running)."""
        while judging := [t for t in self._tasks if t.get_name() != _FOLLOWER]:
            await asyncio.gather(*judging, return_exceptions=True)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_FOLLOWER = "online-follower"


def _case(exploration: Exploration, fresh: Answer) -> JudgeCase:
    return JudgeCase(
        query=exploration.query,
        cached_prompt=exploration.cached_prompt,
        cached_answer=exploration.cached_answer.content,
        fresh_answer=fresh.content,
        model=exploration.model,
    )
