"""Calibration: the decision setting with the most hits whose error stays within a target.

Sweeps threshold x guard set x (no verifier | verifier min_score) on the "calib" part of a pairs
file (pairs.py), never on the "train" part a verifier learned from; the chosen setting is then
re-run through the real HitDecider on "calib" (must match the sweep) and on "test" (held-out
check of the error the setting actually delivers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.guards import GUARDS
from cache_proxy.verify.policy import GuardPolicy, VerifierPolicy, VerifyPolicy
from cache_tools.evaluation.embeddings import TextTable
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair, split_pairs
from cache_tools.evaluation.sweep import CandidateGrid, Outcome, Setting, build_grid, replay
from cache_tools.evaluation.sweep import score_grid as score_grid

log = logging.getLogger(__name__)
ALL_GUARDS = tuple(GUARDS)  # in order: the guard sets swept are its prefixes
GUARD_SETS: list[tuple[str, ...]] = [ALL_GUARDS[:n] for n in range(len(ALL_GUARDS) + 1)]
THRESHOLDS = [*np.round(np.arange(0.75, 0.99, 0.01), 3).tolist(), 0.99, 0.995, 0.999]
MIN_SCORES = [*np.round(np.arange(0.05, 0.951, 0.05), 3).tolist(), 0.97, 0.98, 0.99, 0.995]
MIN_HITS = 30  # fewer hits than this make an error estimate too noisy to calibrate on
# Measured on the QQP dev file (calib -> test): z=0 overshot the target by >0.5pp in 15 of 30
# (verifier, target) cases, z=0.5 in 9, z=1.0 in 2 but gave up more hits.
DEFAULT_MARGIN_Z = 0.5


@dataclass
class CalibrationData:
    """The calib part's candidate grid, reused for every verifier and setting."""

    grid: CandidateGrid
    queries: list[str]
    listed: list[list[Candidate]]


def prepare(pairs: list[Pair], book: LabelBook, table: TextTable, top_k: int) -> CalibrationData:
    grid, queries, listed = build_grid(split_pairs(pairs, "calib"), book, table, top_k)
    return CalibrationData(grid, queries, listed)


def sweep(data: CalibrationData, verifier: str | None) -> list[Outcome]:
    scores: Sequence[float | None] = [None] if verifier is None else MIN_SCORES
    return [
        replay(data.grid, Setting(t, guards, m, verifier))
        for t in THRESHOLDS
        for guards in GUARD_SETS
        for m in scores
    ]


def error_bound(outcome: Outcome, kind: str, margin_z: float) -> float:
    """Error plus `margin_z` standard errors: picking the best of many noisy settings favours
    lucky ones, so a bare estimate lands above target on held-out data more often than not."""
    hits = max(1, outcome.hits)
    error = outcome.error(kind)
    return error + margin_z * math.sqrt(max(error * (1 - error), 1 / hits) / hits)


def choose(
    outcomes: Sequence[Outcome], target: float, kind: str, margin_z: float = DEFAULT_MARGIN_Z
) -> Outcome | None:
    """Most hits within the target; ties go to the stricter (higher) threshold and score."""
    feasible = [
        o for o in outcomes if o.hits >= MIN_HITS and error_bound(o, kind, margin_z) <= target
    ]
    if not feasible:
        return None
    return max(
        feasible,
        key=lambda o: (o.hits, o.setting.threshold, o.setting.min_score or 0.0),
    )


def curve_for(outcomes: Sequence[Outcome], chosen: Outcome) -> list[Outcome]:
    """The chosen guards/verifier/min_score across every threshold (what the plot draws)."""
    same = chosen.setting
    return [
        o
        for o in outcomes
        if (o.setting.guards, o.setting.min_score, o.setting.verifier)
        == (same.guards, same.min_score, same.verifier)
    ]


def policy_for(setting: Setting) -> VerifyPolicy:
    guards = GuardPolicy(**{name: name in setting.guards for name in ALL_GUARDS})
    if setting.verifier is None or setting.min_score is None:
        return VerifyPolicy(guards=guards, verifier=VerifierPolicy(enabled=False))
    verifier = VerifierPolicy(
        enabled=True, model_path=str(Path(setting.verifier).resolve()), min_score=setting.min_score
    )
    return VerifyPolicy(guards=guards, verifier=verifier)
