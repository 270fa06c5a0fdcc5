"""Cache simulation through the server's decision path: index side A, ask each side B once.

Exact tier (identical prompt cached) -> FAISS top-k -> HitDecider (threshold, guards, verifier),
every served hit judged with `LabelBook` (see labels.py for the definitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import VerifyPolicy
from cache_tools.evaluation.embeddings import TextTable
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.mining import cache_simulation_sides
from cache_tools.evaluation.pairs import Pair
from cache_tools.evaluation.retrieval import search


@dataclass
class Summary:
    """Counts of one simulation; rates follow the shared definitions."""

    queries: int = 0
    answerable: int = 0
    correct: int = 0
    wrong: int = 0
    unjudged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def hits(self) -> int:
        return self.correct + self.wrong + self.unjudged

    def rates(self) -> dict[str, float]:
        hits = max(1, self.hits)
        return {
            "answered": self.hits / max(1, self.queries),
            "wrong_judged": self.wrong / hits,
            "wrong_conservative": (self.wrong + self.unjudged) / hits,
            "recall": self.correct / max(1, self.answerable),
        }

    def add(self, verdict: str | None, answerable: bool, reason: str) -> None:
        self.queries += 1
        self.answerable += answerable
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if verdict is not None:
            setattr(self, verdict, getattr(self, verdict) + 1)


def simulate(
    pairs: list[Pair],
    book: LabelBook,
    table: TextTable,
    decider: HitDecider,
    threshold: float,
    policy: VerifyPolicy,
    top_k: int = 4,
) -> Summary:
    cache, queries = cache_simulation_sides(pairs)
    in_cache = frozenset(cache)
    summary = Summary()
    semantic = [q for q in queries if q not in in_cache]
    for query in queries:
        if query in in_cache:  # exact tier: same prompt, served without embedding
            summary.add("correct", True, "exact")
    found = search(table, cache, semantic, top_k)
    for row, query in enumerate(tqdm(semantic, desc="decide", unit="query", mininterval=5)):
        decision = decider.decide(query, found.candidates(row), threshold, policy)
        verdict = None if decision.candidate is None else book.judge(query, decision.candidate.text)
        summary.add(verdict, book.answerable(query, in_cache), decision.reason)
    return summary
