"""Judging served hits against the labels of a pairs file (the definitions every report uses).

A hit serving cached prompt c for query q is *correct* when c == q or the file labels (q, c) a
duplicate (either order, anywhere in the file), *wrong* when the file labels it a non-duplicate,
*unjudged* otherwise; conservative error counts unjudged hits as wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Literal

from cache_tools.evaluation.pairs import Pair

Verdict = Literal["correct", "wrong", "unjudged"]


class LabelBook:
    def __init__(self, pairs: Iterable[Pair]) -> None:
        self.duplicates: dict[str, set[str]] = defaultdict(set)
        self.non_duplicates: dict[str, set[str]] = defaultdict(set)
        for pair in pairs:
            book = self.duplicates if pair.label == 1 else self.non_duplicates
            book[pair.text_a].add(pair.text_b)
            book[pair.text_b].add(pair.text_a)

    def judge(self, query: str, cached: str) -> Verdict:
        if cached == query or cached in self.duplicates.get(query, ()):
            return "correct"
        if cached in self.non_duplicates.get(query, ()):
            return "wrong"
        return "unjudged"

    def answerable(self, query: str, cache: set[str] | frozenset[str]) -> bool:
        """An identical or labelled-duplicate prompt is in the cache."""
        return query in cache or not self.duplicates.get(query, set()).isdisjoint(cache)
