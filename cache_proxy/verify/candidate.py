"""What every part of verification passes around: a retrieved candidate and a scorer of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Candidate:
    """A cached prompt retrieved by vector search."""

    entry_id: int
    text: str
    similarity: float


class Verifier(Protocol):
    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        """Probability-like score in [0, 1] per candidate that it asks the same as `query`."""
        ...


VerifierLoader = Callable[[str], Verifier]
