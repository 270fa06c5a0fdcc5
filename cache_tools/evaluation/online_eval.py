"""`cache-proxy eval --policy online`: the online policy on a stream, labels as the judge.

The cache holds every distinct text_a of the part (as in `simulate`); the distinct text_b are
asked once each, in a seeded order (no new entries are stored: the same cache as `simulate`).
Identical prompts are served by the exact tier. For the rest the nearest cached prompt is the
candidate, and `OnlinePolicy` serves, explores or misses it. An exploration is one judge call
and the file's label is the verdict: "correct" when identical or labelled a duplicate, "wrong"
when labelled a non-duplicate; an unlabelled pair is "wrong" for the conservative judge and no
verdict for the labelled one. Served hits are scored with the shared definitions (labels.py).

Beside it, the oracle: the best single threshold for the same bound chosen with the stream's
own labels (which the policy never sees), on the same candidates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cache_proxy.verify.candidate import Candidate, Verifier
from cache_proxy.verify.features import pair_features
from cache_proxy.verify.guards import failed_guard
from cache_proxy.verify.online import Action, EntryEvidence, OnlinePolicy, OnlineSettings
from cache_proxy.verify.online_score import ScoredOnlinePolicy
from cache_proxy.verify.policy import GuardPolicy
from cache_tools.evaluation.embeddings import TextTable
from cache_tools.evaluation.labels import LabelBook, Verdict
from cache_tools.evaluation.mining import cache_simulation_sides
from cache_tools.evaluation.pairs import Pair
from cache_tools.evaluation.retrieval import search

THRESHOLDS = np.round(np.arange(0.70, 1.0001, 0.0025), 4)


@dataclass
class StreamResult:
    """Counts over one stream; rates follow the shared definitions."""

    name: str
    queries: int = 0
    answerable: int = 0
    exact: int = 0
    correct: int = 0
    wrong: int = 0
    unjudged: int = 0
    judge_calls: int = 0
    explored_correct: int = 0
    boundary: float = 1.0
    trace: list[float] = field(default_factory=list)  # the boundary after every 1,000 queries

    @property
    def served(self) -> int:
        return self.exact + self.correct + self.wrong + self.unjudged

    def rates(self) -> dict[str, float]:
        served = max(1, self.served)
        return {
            "served": self.served / max(1, self.queries),
            "wrong_judged": self.wrong / served,
            "wrong_conservative": (self.wrong + self.unjudged) / served,
            "recall": (self.exact + self.correct) / max(1, self.answerable),
        }

    def count(self, verdict: Verdict) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)


@dataclass(frozen=True)
class Stream:
    """The queries in order, each with its best candidate (entry row, text, similarity)."""

    queries: list[str]
    exact: list[bool]
    answerable: list[bool]
    entries: list[int]
    texts: list[str]
    similarities: list[float]
    runner_up: list[float]  # the second candidate's similarity (0.0 when there is none)
    guarded: list[bool]  # the default guards reject the candidate: a plain miss, as served

    def margin(self, row: int) -> float:
        return self.similarities[row] - self.runner_up[row]


SHAPES = ("pairs", "paraphrases")


def stream_sides(pairs: list[Pair], shape: str) -> tuple[list[str], list[str]]:
    """pairs: the cache holds every text_a, every text_b is asked (as `simulate`).
    paraphrases: every statement is cached (text_a, and the text_b of non-duplicate pairs:
    close distractors) and only the labelled rewordings are asked, each once."""
    if shape == "pairs":
        return cache_simulation_sides(pairs)
    cache = sorted({p.text_a for p in pairs} | {p.text_b for p in pairs if p.label == 0})
    return cache, sorted({p.text_b for p in pairs if p.label == 1} - set(cache))


def build_stream(
    pairs: list[Pair],
    book: LabelBook,
    table: TextTable,
    seed: int,
    shape: str = "pairs",
    cache_pairs: list[Pair] | None = None,
) -> Stream:
    """The queries of `pairs` against the cache of `cache_pairs` (default: the same pairs)."""
    _, queries = stream_sides(pairs, shape)
    cache, _ = stream_sides(cache_pairs if cache_pairs is not None else pairs, shape)
    random.Random(seed).shuffle(queries)
    in_cache = frozenset(cache)
    found = search(table, cache, queries, 2)
    entries, texts, sims, runner_up = [], [], [], []
    for row in range(len(queries)):
        best = found.candidates(row)
        entries.append(best[0].entry_id if best else -1)
        texts.append(best[0].text if best else "")
        sims.append(best[0].similarity if best else -1.0)
        runner_up.append(best[1].similarity if len(best) > 1 else 0.0)
    guards = GuardPolicy()
    guarded = [failed_guard(q, t, guards) is not None for q, t in zip(queries, texts, strict=True)]
    return Stream(
        queries=queries,
        exact=[q in in_cache for q in queries],
        answerable=[book.answerable(q, in_cache) for q in queries],
        entries=entries,
        texts=texts,
        similarities=sims,
        runner_up=runner_up,
        guarded=guarded,
    )


class _CosinePolicy:
    """OnlinePolicy behind the replay's interface: the boundary on the similarity."""

    name = "online"

    def __init__(self, settings: OnlineSettings) -> None:
        self.policy = OnlinePolicy(settings)

    def boundary(self) -> float:
        return self.policy.tenant.boundary

    def step(
        self, stream: Stream, row: int, entry: EntryEvidence, draw: float
    ) -> tuple[Action, Callable[[bool], None]]:
        similarity = stream.similarities[row]

        def record(correct: bool) -> None:
            self.policy.record(similarity, correct, entry)

        return self.policy.decide(similarity, entry, draw), record


# (query, cached prompt, similarity, margin to the runner-up candidate) -> features
Features = Callable[[str, str, float, float], list[float]]


class _LearnedPolicy:
    """ScoredOnlinePolicy behind the same interface: the boundary on a score learned from
    `features` of each candidate (the pair features, or a trained verifier's score)."""

    def __init__(self, settings: OnlineSettings, features: Features, name: str) -> None:
        self.policy = ScoredOnlinePolicy(settings)
        self.features = features
        self.name = name

    def boundary(self) -> float:
        return self.policy.tenant.boundary

    def step(
        self, stream: Stream, row: int, entry: EntryEvidence, draw: float
    ) -> tuple[Action, Callable[[bool], None]]:
        similarity = stream.similarities[row]
        if similarity < self.policy.settings.floor:  # no features needed for a plain miss
            return "miss", lambda correct: None
        query, cached = stream.queries[row], stream.texts[row]
        features = self.features(query, cached, similarity, stream.margin(row))

        def record(correct: bool) -> None:
            self.policy.record(features, similarity, correct, entry)

        score = self.policy.score(features)
        return self.policy.decide(similarity, score, entry, draw), record


def margin_scorer() -> Features:
    """The similarity and how far the runner-up candidate is behind: what the proxy uses."""
    return lambda query, cached, similarity, margin: [similarity, margin]


def pair_feature_scorer(idf: dict[str, float]) -> Features:
    def features(query: str, cached: str, similarity: float, margin: float) -> list[float]:
        return [*pair_features(query, cached, similarity, idf), margin]

    return features


def verifier_scorer(verifier: Verifier) -> Features:
    """A trained verifier as the prior: its score, the similarity and the margin."""

    def features(query: str, cached: str, similarity: float, margin: float) -> list[float]:
        [score] = verifier.score(query, [Candidate(0, cached, similarity)])
        return [similarity, score, margin]

    return features


def run_online(
    stream: Stream,
    book: LabelBook,
    settings: OnlineSettings,
    seed: int,
    judge: str,
    features: Features | None = None,
    name: str = "online, learned score",
    warm: Stream | None = None,
) -> StreamResult:
    """The stream through the policy (on a score learned from `features` when given). `judge`:
    conservative (an unlabelled pair is a wrong verdict) or labelled (the judge abstains on
    unlabelled pairs: the call is counted, nothing is learned). With `warm`, the policy first
    learns on that stream (another part, another cache) and only `stream` is reported: the
    served-hit error on traffic the policy never saw before."""
    policy = (
        _CosinePolicy(settings) if features is None else _LearnedPolicy(settings, features, name)
    )
    draws = random.Random(seed)
    if warm is not None:
        _replay(warm, book, policy, draws, judge, StreamResult(policy.name))
    result = StreamResult(policy.name)
    _replay(stream, book, policy, draws, judge, result)
    result.boundary = policy.boundary()
    return result


def _replay(
    stream: Stream,
    book: LabelBook,
    policy: _CosinePolicy | _LearnedPolicy,
    draws: random.Random,
    judge: str,
    result: StreamResult,
) -> None:
    evidence: dict[int, EntryEvidence] = {}  # per stream: each stream has its own cache
    for i, query in enumerate(stream.queries):
        result.queries += 1
        result.answerable += stream.answerable[i]
        if i % 1000 == 999:
            result.trace.append(policy.boundary())
        if stream.exact[i] or stream.entries[i] < 0:
            result.exact += stream.exact[i]
            continue
        if stream.guarded[i]:  # rejected before the policy (the proxy's order): a plain miss
            continue
        entry = evidence.setdefault(stream.entries[i], EntryEvidence())
        action, record = policy.step(stream, i, entry, draws.random())
        verdict = book.judge(query, stream.texts[i])
        if action == "serve":
            result.count(verdict)
        elif action == "explore":
            result.judge_calls += 1
            result.explored_correct += verdict == "correct"
            if verdict != "unjudged" or judge == "conservative":
                record(verdict == "correct")


def oracle_static(stream: Stream, book: LabelBook, max_error: float, kind: str) -> StreamResult:
    """The best single threshold for `max_error` (kind: judged | conservative) on this stream,
    after the same guards (a stronger baseline than raw cosine)."""
    verdicts = [
        None
        if stream.exact[i] or stream.entries[i] < 0 or stream.guarded[i]
        else book.judge(q, stream.texts[i])
        for i, q in enumerate(stream.queries)
    ]
    best = StreamResult("oracle static")
    for threshold in THRESHOLDS:
        candidate = StreamResult(f"oracle static {threshold:.4f}", boundary=float(threshold))
        for i, verdict in enumerate(verdicts):
            candidate.queries += 1
            candidate.answerable += stream.answerable[i]
            if stream.exact[i]:
                candidate.exact += 1
            elif verdict is not None and stream.similarities[i] >= threshold:
                candidate.count(verdict)
        rates = candidate.rates()
        error = rates["wrong_judged"] if kind == "judged" else rates["wrong_conservative"]
        if error <= max_error and rates["recall"] > best.rates()["recall"]:
            best = candidate
    return best
