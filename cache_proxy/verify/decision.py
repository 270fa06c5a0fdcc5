"""The one decision path, shared by the server, `cache-proxy eval` and `calibrate`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cache_proxy.verify.policy import VerifyPolicy


@dataclass(frozen=True)
class Candidate:
    """A cached prompt retrieved by vector search."""

    entry_id: int
    text: str
    similarity: float


@dataclass(frozen=True)
class Decision:
    candidate: Candidate | None
    reason: str
    verifier_score: float | None = None


class HitDecider:
    """Picks the best candidate that passes threshold, guards and verifier, or none."""

    def decide(
        self,
        query: str,
        candidates: Sequence[Candidate],
        threshold: float,
        policy: VerifyPolicy,
    ) -> Decision:
        above = [c for c in candidates if c.similarity >= threshold]
        if not above:
            return Decision(None, "below_threshold")
        best = max(above, key=lambda c: c.similarity)
        return Decision(best, "accepted")
