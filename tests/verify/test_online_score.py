"""The learned score: it separates what cosine cannot, and its boundary rests on held-out
(out-of-fold) scores."""

from __future__ import annotations

import numpy as np

from cache_proxy.verify.online import EntryEvidence, OnlineSettings
from cache_proxy.verify.online_score import LogisticScorer, ScoredOnlinePolicy

NO_AUDIT = 0.99


def test_logistic_scorer_learns_a_separating_feature() -> None:
    rng = np.random.default_rng(0)
    flag = rng.integers(0, 2, 2000).astype(float)  # e.g. "the numbers differ"
    rows = np.column_stack([0.95 + 0.04 * rng.random(2000), flag])
    labels = 1.0 - flag
    scorer = LogisticScorer()
    assert not scorer.fitted and np.allclose(scorer.score(rows), rows[:, 0])  # cosine at first
    scorer.fit(rows, labels)
    scores = scorer.score(rows)
    assert scores[labels == 1].min() > 0.9 > 0.1 > scores[labels == 0].max()


def test_the_learned_boundary_serves_the_good_pairs_cosine_cannot_tell_apart() -> None:
    policy = ScoredOnlinePolicy(OnlineSettings(min_verdicts=30, audit_rate=0.0))
    rng = np.random.default_rng(1)
    for _ in range(1200):  # same similarity band; only the second feature tells them apart
        differs = bool(rng.integers(0, 2))
        similarity = 0.95 + 0.04 * rng.random()
        policy.record([similarity, float(differs)], similarity, not differs, EntryEvidence())
    assert policy.scorer.fitted and policy.tenant.boundary < 1.0
    good, bad = [0.97, 0.0], [0.97, 1.0]
    assert policy.decide(0.97, policy.score(good), EntryEvidence(), NO_AUDIT) == "serve"
    assert policy.decide(0.97, policy.score(bad), EntryEvidence(), NO_AUDIT) == "explore"
    assert policy.decide(0.50, policy.score(good), EntryEvidence(), NO_AUDIT) == "miss"
