"""Fast sweeps over decision settings: every candidate's signals computed once, then each
(threshold, guards, min_score) setting is replayed with numpy.

The replay mirrors `HitDecider.decide` (identical -> threshold -> guards -> verifier, verifier
picks the best-scoring survivor); calibration re-runs the chosen setting through the real
decider to confirm the numbers match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from cache_proxy.verify.candidate import Candidate, Verifier
from cache_proxy.verify.guards import GUARDS, guard_signals
from cache_tools.evaluation.embeddings import TextTable
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.mining import cache_simulation_sides
from cache_tools.evaluation.pairs import Pair
from cache_tools.evaluation.retrieval import search

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
VERDICT_CODES = {"correct": 0, "wrong": 1, "unjudged": 2}


@dataclass
class CandidateGrid:
    """Queries x top-k signals for the semantic tier, plus exact-tier and answerable counts."""

    sims: Floats  # -inf where no candidate
    verdicts: npt.NDArray[np.int8]
    guards: dict[str, Bools]  # True = that guard rejects the candidate
    scores: dict[str, Floats]  # verifier path -> score per candidate, nan where not scored
    answerable: Bools
    exact_hits: int


@dataclass(frozen=True)
class Setting:
    threshold: float
    guards: tuple[str, ...]
    min_score: float | None = None  # None = no verifier
    verifier: str | None = None  # model path; scores in CandidateGrid.scores[verifier]


@dataclass(frozen=True)
class Outcome:
    setting: Setting
    queries: int
    hits: int
    correct: int
    wrong: int
    unjudged: int
    answerable: int

    def error(self, kind: str) -> float:
        bad = self.wrong + (self.unjudged if kind == "conservative" else 0)
        return bad / max(1, self.hits)

    @property
    def hit_rate(self) -> float:
        return self.hits / max(1, self.queries)

    @property
    def recall(self) -> float:
        return self.correct / max(1, self.answerable)


def build_grid(
    pairs: list[Pair], book: LabelBook, table: TextTable, top_k: int = 4
) -> tuple[CandidateGrid, list[str], list[list[Candidate]]]:
    cache, queries = cache_simulation_sides(pairs)
    in_cache = frozenset(cache)
    semantic = [q for q in queries if q not in in_cache]
    found = search(table, cache, semantic, top_k)
    shape = (len(semantic), top_k)
    sims = np.full(shape, -np.inf)
    verdicts = np.full(shape, VERDICT_CODES["unjudged"], dtype=np.int8)
    guards = {name: np.zeros(shape, dtype=bool) for name in GUARDS}
    listed = []
    for row, query in enumerate(semantic):
        candidates = found.candidates(row)
        listed.append(candidates)
        for col, cand in enumerate(candidates):
            sims[row, col] = cand.similarity
            verdicts[row, col] = VERDICT_CODES[book.judge(query, cand.text)]
            for name, rejects in guard_signals(query, cand.text).items():
                guards[name][row, col] = rejects
    answerable = np.array([book.answerable(q, in_cache) for q in semantic])
    exact = len(queries) - len(semantic)
    grid = CandidateGrid(sims, verdicts, guards, {}, answerable, exact)
    return grid, semantic, listed


def score_grid(
    grid: CandidateGrid,
    queries: Sequence[str],
    listed: Sequence[list[Candidate]],
    verifier: Verifier,
    key: str,
    floor: float,
) -> None:
    """Verifier scores for every candidate at or above `floor` (the lowest threshold swept)."""
    scores = np.full(grid.sims.shape, np.nan)
    todo = [
        (row, col, query, cand)
        for row, query in enumerate(queries)
        for col, cand in enumerate(listed[row])
        if cand.similarity >= floor
    ]
    for start in tqdm(range(0, len(todo), _SCORE_CHUNK), desc="verifier scores", unit="chunk"):
        chunk = todo[start : start + _SCORE_CHUNK]
        values = score_pairs(verifier, [(query, cand) for _, _, query, cand in chunk])
        for (row, col, _, _), value in zip(chunk, values, strict=True):
            scores[row, col] = value
    grid.scores[key] = scores


_SCORE_CHUNK = 256


def score_pairs(verifier: Verifier, pairs: Sequence[tuple[str, Candidate]]) -> list[float]:
    """Many (query, candidate) pairs at once when the verifier can batch across queries."""
    batched = getattr(verifier, "score_pairs", None)
    if batched is not None:
        return list(batched(pairs))
    return [verifier.score(query, [cand])[0] for query, cand in pairs]


def replay(grid: CandidateGrid, setting: Setting) -> Outcome:
    valid = grid.sims >= setting.threshold
    for name in setting.guards:
        valid &= ~grid.guards[name]
    if setting.min_score is None:
        pick = np.argmax(valid, axis=1)  # first survivor = highest similarity
        served = valid.any(axis=1)
    else:
        assert setting.verifier is not None, "a min_score needs a verifier"
        known = np.nan_to_num(grid.scores[setting.verifier], nan=-1.0)
        scores = np.where(valid, known, -1.0)
        pick = np.argmax(scores, axis=1)  # ties -> first (higher similarity), as the decider
        served = scores[np.arange(len(pick)), pick] >= setting.min_score
    verdict = grid.verdicts[np.arange(len(pick)), pick][served]
    counts = np.bincount(verdict, minlength=3)
    queries = len(grid.sims) + grid.exact_hits
    return Outcome(
        setting, queries, int(served.sum()) + grid.exact_hits, int(counts[0]) + grid.exact_hits,
        int(counts[1]), int(counts[2]), int(grid.answerable.sum()) + grid.exact_hits,
    )  # fmt: skip
