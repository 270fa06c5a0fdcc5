"""The online policy on a learned score instead of raw similarity.

Cosine alone cannot separate many near-duplicates that differ in meaning (a year, a negation,
a name), so the boundary of online.py is put on a score: a logistic regression over the
feature verifier's pair features (similarity, word/IDF overlap, the rarest unmatched word,
lengths, every guard's verdict), fitted on the tenant's own judged explorations. No offline
labels, so it learns whatever the traffic at hand looks like.

Honest scores for the bound: the boundary table is rebuilt from *out-of-fold* scores (two
folds by verdict index; each verdict scored by the model fitted without it), so the error
estimated above the boundary is not the in-sample error of the model that set it. Until both
verdict classes are seen, the score is the similarity itself.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cache_proxy.verify.online import (
    Action,
    EntryEvidence,
    OnlineSettings,
    TenantBoundary,
)

Matrix = npt.NDArray[np.float64]
REFIT_EVERY = 200  # verdicts between refits (each refit is a few ms for thousands of rows)
L2 = 1.0
IRLS_STEPS = 12


class LogisticScorer:
    """P(correct | features), ridge-regularised, fitted by iteratively reweighted least squares."""

    def __init__(self) -> None:
        self._weights: Matrix | None = None
        self._mean = np.zeros(1)
        self._scale = np.ones(1)

    @property
    def fitted(self) -> bool:
        return self._weights is not None

    def fit(self, rows: Matrix, labels: npt.NDArray[np.float64]) -> None:
        self._mean = rows.mean(axis=0)
        self._scale = np.where(rows.std(axis=0) > 1e-9, rows.std(axis=0), 1.0)
        design = self._design(rows)
        weights = np.zeros(design.shape[1])
        penalty = L2 * np.eye(design.shape[1])
        penalty[0, 0] = 0.0  # no shrinkage of the intercept
        for _ in range(IRLS_STEPS):
            p = _sigmoid(design @ weights)
            gradient = design.T @ (labels - p) - penalty @ weights
            hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
            weights = weights + np.linalg.solve(hessian, gradient)
        self._weights = weights

    def score(self, rows: Matrix) -> npt.NDArray[np.float64]:
        if self._weights is None:
            return np.asarray(rows[:, 0], dtype=np.float64)  # the similarity column
        return _sigmoid(self._design(rows) @ self._weights)

    def _design(self, rows: Matrix) -> Matrix:
        standard = (rows - self._mean) / self._scale
        return np.hstack([np.ones((len(rows), 1)), standard])


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))
    return result


class ScoredOnlinePolicy:
    """online.OnlinePolicy with the tenant boundary on the learned score."""

    def __init__(self, settings: OnlineSettings | None = None) -> None:
        self.settings = settings or OnlineSettings()
        self.tenant = TenantBoundary(self.settings)
        self.scorer = LogisticScorer()
        self._rows: list[list[float]] = []
        self._labels: list[float] = []

    def score(self, features: list[float]) -> float:
        return float(self.scorer.score(np.asarray([features], dtype=np.float64))[0])

    def decide(self, similarity: float, score: float, entry: EntryEvidence, draw: float) -> Action:
        if similarity < self.settings.floor:
            return "miss"
        if self.tenant.admits(score) and entry.allows(similarity):
            return "explore" if draw < self.settings.audit_rate else "serve"
        return "explore"

    def record(
        self, features: list[float], similarity: float, correct: bool, entry: EntryEvidence
    ) -> None:
        entry.record(similarity, correct)
        self._rows.append(features)
        self._labels.append(float(correct))
        if len(self._labels) % REFIT_EVERY == 0 and 0 < sum(self._labels) < len(self._labels):
            self._refit()
        else:
            self.tenant.record(self.score(features), correct)

    def _refit(self) -> None:
        rows = np.asarray(self._rows, dtype=np.float64)
        labels = np.asarray(self._labels, dtype=np.float64)
        self.scorer, out_of_fold = fit_scorer(rows, labels)
        self.tenant = boundary_from(out_of_fold, labels, self.settings)


def fit_scorer(rows: Matrix, labels: npt.NDArray[np.float64]) -> tuple[LogisticScorer, Matrix]:
    """The scorer fitted on every verdict, and each verdict's out-of-fold score (two folds by
    index: scored by the model fitted without it). Pure: the proxy runs it in a thread."""
    scorer = LogisticScorer()
    scorer.fit(rows, labels)
    out_of_fold = np.empty(len(labels))
    folds = np.arange(len(labels)) % 2
    for fold in (0, 1):
        train, held = folds != fold, folds == fold
        if 0 < labels[train].sum() < train.sum():
            model = LogisticScorer()
            model.fit(rows[train], labels[train])
            out_of_fold[held] = model.score(rows[held])
        else:
            out_of_fold[held] = scorer.score(rows[held])
    return scorer, out_of_fold


def boundary_from(
    scores: Matrix, labels: npt.NDArray[np.float64], settings: OnlineSettings
) -> TenantBoundary:
    boundary = TenantBoundary(settings)
    boundary.add_all(scores.tolist(), (labels > 0.5).tolist())
    boundary.refresh()
    return boundary
