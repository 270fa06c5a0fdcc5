"""Real verifiers, tiny training runs: both kinds train, save, load once per path, score 0..1."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cache_proxy.embedding.sentence import packaged_model_path
from cache_proxy.verify.crossencoder import train_cross_encoder
from cache_proxy.verify.decision import Candidate, HitDecider
from cache_proxy.verify.features import train_feature_verifier
from cache_proxy.verify.policy import VerifierPolicy, VerifyPolicy
from cache_proxy.verify.verifier import VerifierLoadError, load_verifier, verifier_kind

SAME = [
    ("How do I learn Python?", "What is the best way to learn Python?"),
    ("How can I lose weight fast?", "What is the fastest way to lose weight?"),
    ("Why is the sky blue?", "What makes the sky blue?"),
    ("How do I get a US visa?", "How can I obtain a visa for the US?"),
]
DIFFERENT = [
    ("How do I learn Python?", "How do I learn French?"),
    ("How can I lose weight fast?", "How can I gain weight fast?"),
    ("Why is the sky blue?", "Why is the sea salty?"),
    ("How do I get a US visa?", "How do I get a Canadian passport?"),
]
EXAMPLES = [(a, b, 1) for a, b in SAME] + [(a, b, 0) for a, b in DIFFERENT]


def _scores_in_unit_interval(path: Path) -> None:
    verifier = load_verifier(str(path))
    assert load_verifier(str(path)) is verifier  # loaded once per path
    cands = [Candidate(i, b, 0.9) for i, (_, b) in enumerate(SAME + DIFFERENT)]
    with ThreadPoolExecutor(4) as pool:  # thread-safe scoring
        results = list(pool.map(lambda _: verifier.score(SAME[0][0], cands), range(8)))
    assert all(r == pytest.approx(results[0], abs=1e-5) for r in results)
    assert all(0.0 <= s <= 1.0 for s in results[0]) and len(results[0]) == len(cands)


def test_tiny_cross_encoder_training_saves_a_loadable_verifier(tmp_path: Path) -> None:
    info = train_cross_encoder(EXAMPLES * 2, tmp_path / "ce", packaged_model_path(), batch_size=8)
    assert info["kind"] == "crossencoder" and info["steps"] == 2
    assert verifier_kind(tmp_path / "ce") == "crossencoder"
    _scores_in_unit_interval(tmp_path / "ce")


def test_feature_verifier_learns_and_runs_in_the_decider(tmp_path: Path) -> None:
    rows = [(a, b, 0.9) for a, b, _ in EXAMPLES * 5]
    labels = [y for _, _, y in EXAMPLES * 5]
    train_feature_verifier(rows, labels, [t for a, b, _ in EXAMPLES for t in (a, b)], tmp_path)
    _scores_in_unit_interval(tmp_path)
    policy = VerifyPolicy(verifier=VerifierPolicy(enabled=True, model_path=str(tmp_path)))
    decision = HitDecider().decide(
        "How do I learn Python?", [Candidate(1, "How do I learn French?", 0.9)], 0.8, policy
    )
    assert decision.verifier_score is not None


def test_directory_without_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VerifierLoadError, match=r"verifier\.json"):
        verifier_kind(tmp_path)
