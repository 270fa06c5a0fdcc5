"""Training data for verifiers, mined from the cache's own retrieval on labelled pairs.

Labelled pairs alone teach a verifier "duplicate vs the non-duplicate Quora paired it with";
in the cache it must also reject the *nearest neighbours* retrieval brings up. So every
query side B is searched against a cache of side A, and each retrieved candidate becomes an
example: 1 when identical or a labelled duplicate, 0 otherwise (labelled non-duplicate or
unlabelled neighbour — the conservative reading of "not known to be the same question").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cache_proxy.verify.candidate import Candidate
from cache_tools.evaluation.embeddings import TextTable
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair
from cache_tools.evaluation.retrieval import search


@dataclass
class RetrievedQuery:
    """One query with its retrieved candidates (best first) and a 0/1 label per candidate."""

    query: str
    candidates: list[Candidate]
    labels: list[int]


def cache_simulation_sides(pairs: list[Pair]) -> tuple[list[str], list[str]]:
    """Cache = every distinct text_a; queries = every distinct text_b (each asked once)."""
    cache = sorted({p.text_a for p in pairs})
    queries = sorted({p.text_b for p in pairs})
    return cache, queries


def mine_retrieved(pairs: list[Pair], table: TextTable, top_k: int = 4) -> list[RetrievedQuery]:
    """Semantic-tier candidates for every query that the exact tier would not answer."""
    book = LabelBook(pairs)
    cache, queries = cache_simulation_sides(pairs)
    in_cache = set(cache)
    asked = [q for q in queries if q not in in_cache]
    found = search(table, cache, asked, top_k)
    mined = []
    for row, query in enumerate(asked):
        candidates = found.candidates(row)
        labels = [int(book.judge(query, c.text) == "correct") for c in candidates]
        mined.append(RetrievedQuery(query, candidates, labels))
    return mined


def cross_encoder_examples(
    pairs: list[Pair],
    mined: list[RetrievedQuery],
    min_similarity: float,
    max_examples: int,
    seed: int = 0,
) -> list[tuple[str, str, int]]:
    """Labelled pairs plus retrieved hard negatives at or above `min_similarity`."""
    examples = {(p.text_b, p.text_a): p.label for p in pairs}
    for item in mined:
        for candidate, label in zip(item.candidates, item.labels, strict=True):
            if candidate.similarity >= min_similarity:
                examples.setdefault((item.query, candidate.text), label)
    listed = [(a, b, y) for (a, b), y in examples.items()]
    random.Random(seed).shuffle(listed)
    return listed[:max_examples]
