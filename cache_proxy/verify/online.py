"""Hits verified online: a serve boundary learned from judged explorations, within an error bound.

A candidate (the nearest cached entry at similarity s) is served, explored or missed:
- **served** when s is at or above the tenant's learned boundary and above every similarity at
  which this entry was judged wrong (an entry's own wrong verdicts raise its boundary);
- **explored** when it is below that but at or above `floor`: the request goes to the engine
  (the client gets the fresh answer, as on a miss) and a judge compares the fresh answer with
  the cached one; the verdict is recorded for the entry and for the tenant. A share
  `audit_rate` of would-be-served hits is explored too, so the served region keeps being
  measured (without it, a boundary once lowered would never see its own mistakes);
- **missed** below `floor`.

The boundary is the lowest similarity s* of a grid such that, among the verdicts at or above s*,
there are at least `min_verdicts` and the one-sided Wilson upper bound (at `confidence`, 95% by
default) of the wrong share is at most `max_error`. It rests on one assumption: the error
rate does not rise with similarity (true on average for sentence embeddings; per entry it need
not be, which is why an entry's own wrong verdicts override the tenant boundary). Served hits
above the boundary then have a wrong rate at most `max_error` with that confidence *on
the traffic the verdicts came from*, a stationarity assumption: the audits keep re-measuring.
Until enough verdicts exist nothing is certified (the boundary reads 1.0): only identical
prompts are served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cache_proxy.verify.bounds import one_sided_z, wilson_upper

Action = Literal["serve", "explore", "miss"]
GRID_STEP = 0.005
MAX_ENTRY_VERDICTS = 16  # the most recent ones per entry (memory stays O(entries))


@dataclass(frozen=True)
class OnlineSettings:
    max_error: float = 0.01
    floor: float = 0.6
    min_verdicts: int = 30
    audit_rate: float = 0.05
    confidence: float = 0.95  # of the one-sided bound: 0.95 needs 268 clean verdicts for 1%


@dataclass(slots=True)
class EntryEvidence:
    """One entry's judged candidates: (similarity, correct), newest last."""

    verdicts: list[tuple[float, bool]] = field(default_factory=list)

    def record(self, similarity: float, correct: bool) -> None:
        self.verdicts.append((similarity, correct))
        del self.verdicts[:-MAX_ENTRY_VERDICTS]

    def highest_wrong(self) -> float:
        return max((s for s, ok in self.verdicts if not ok), default=-1.0)

    def allows(self, similarity: float) -> bool:
        """Clear of this entry's wrong verdicts: a grid step above the highest of them."""
        return similarity >= self.highest_wrong() + GRID_STEP


class TenantBoundary:
    """Verdict counts per bin of similarity (or score), and the serve boundary they support."""

    def __init__(self, settings: OnlineSettings) -> None:
        self.settings = settings
        self._bins = round(1.0 / GRID_STEP) + 1
        self._correct = [0] * self._bins
        self._wrong = [0] * self._bins
        self._lowest_bin = self._bins  # the bin the boundary is at (past the top: none yet)

    @property
    def boundary(self) -> float:
        """1.0 while nothing is certified (and then nothing semantic is served)."""
        return min(1.0, round(self._lowest_bin * GRID_STEP, 6))

    def admits(self, value: float) -> bool:
        """At or above the boundary, compared by bin (a value in the boundary's own bin is
        admitted even when the float product bin * step rounds above it)."""
        return self._bin(value) >= self._lowest_bin

    def record(self, value: float, correct: bool) -> None:
        self.add(value, correct)
        self.refresh()

    def add(self, value: float, correct: bool) -> None:
        """Count a verdict at `value` (a similarity, or a score in [0, 1]); `refresh` after."""
        index = self._bin(value)
        (self._correct if correct else self._wrong)[index] += 1

    def add_all(self, values: Sequence[float], correct: Sequence[bool]) -> None:
        """`add` of many at once (one pass in numpy: a refit's thread holds the GIL less)."""
        bins = np.minimum(
            self._bins - 1, np.maximum(0, (np.asarray(values) / GRID_STEP + 1e-9).astype(int))
        )
        right = np.asarray(correct, dtype=bool)
        for counts, chosen in ((self._correct, right), (self._wrong, ~right)):
            added = np.bincount(bins[chosen], minlength=self._bins).tolist()
            counts[:] = [a + b for a, b in zip(counts, added, strict=True)]

    def forget(self, value: float, correct: bool) -> None:
        """Uncount a verdict that left the window (`add` of the same value before)."""
        counts = self._correct if correct else self._wrong
        index = self._bin(value)
        counts[index] = max(0, counts[index] - 1)

    def reconfigure(self, settings: OnlineSettings) -> None:
        """New bound or minimum: the same counts, another boundary (O(bins))."""
        if settings != self.settings:
            self.settings = settings
            self.refresh()

    @property
    def verdicts(self) -> int:
        return sum(self._correct) + sum(self._wrong)

    def refresh(self) -> None:
        self._lowest_bin = self._lowest_safe()

    def _bin(self, similarity: float) -> int:
        return min(self._bins - 1, max(0, int(similarity / GRID_STEP + 1e-9)))

    def _lowest_safe(self) -> int:
        """Scan from the top: the lowest bin *with verdicts* whose tail (it and above) passes
        the bound; similarities below the lowest verdict are unknown, never served."""
        settings, z = self.settings, one_sided_z(self.settings.confidence)
        wrong = total = 0
        lowest = self._bins
        for index in range(self._bins - 1, -1, -1):
            here = self._correct[index] + self._wrong[index]
            wrong += self._wrong[index]
            total += here
            if here == 0 or total < settings.min_verdicts:
                continue
            bound = wilson_upper(wrong, total, z)
            if bound <= settings.max_error:
                lowest = index
        return lowest


class OnlinePolicy:
    """serve / explore / miss for one tenant; `record` feeds it a judged exploration."""

    def __init__(self, settings: OnlineSettings | None = None) -> None:
        self.settings = settings or OnlineSettings()
        self.tenant = TenantBoundary(self.settings)

    def decide(self, similarity: float, entry: EntryEvidence, audit_draw: float) -> Action:
        """`audit_draw`: a uniform [0, 1) number (the caller's seeded RNG)."""
        if self.tenant.admits(similarity) and entry.allows(similarity):
            return "explore" if audit_draw < self.settings.audit_rate else "serve"
        if similarity >= self.settings.floor:
            return "explore"
        return "miss"

    def record(self, similarity: float, correct: bool, entry: EntryEvidence) -> None:
        entry.record(similarity, correct)
        self.tenant.record(similarity, correct)
