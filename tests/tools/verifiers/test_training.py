"""Real verifiers, tiny training runs: both kinds train, save, load once per path, score 0..1."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.cli import main
from cache_proxy.embedding.loader import packaged_model_path
from cache_proxy.verify.artifacts import VerifierLoadError, verifier_kind
from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.features import FEATURE_NAMES
from cache_proxy.verify.policy import VerifierPolicy, VerifyPolicy
from cache_proxy.verify.trees import TREES_FILE
from cache_proxy.verify.verifier import VerifierRegistry

pytest.importorskip("sklearn")  # the [train] extra
from cache_tools.verifiers.crossencoder import train_cross_encoder
from cache_tools.verifiers.features import exported_trees, train_feature_verifier

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
    registry = VerifierRegistry()
    verifier = registry.load(str(path))
    assert registry.load(str(path)) is verifier  # loaded once per path
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
    decision = HitDecider(VerifierRegistry().load).decide(
        "How do I learn Python?", [Candidate(1, "How do I learn French?", 0.9)], 0.8, policy
    )
    assert decision.verifier_score is not None


def test_directory_without_marker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VerifierLoadError, match=r"verifier\.json"):
        verifier_kind(tmp_path)


def _fitted(rng: np.random.Generator) -> tuple[object, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    features = rng.random((2_000, len(FEATURE_NAMES)))
    features[::7, 3] = np.nan  # missing values follow the side each split learned
    noise = 0.3 * rng.standard_normal(len(features))
    labels = (features[:, 0] + np.nan_to_num(features[:, 3]) + noise > 1).astype(int)
    model = HistGradientBoostingClassifier(max_iter=120, random_state=0).fit(features, labels)
    return model, features


def test_exported_trees_score_exactly_like_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    model, _ = _fitted(rng)
    queries = rng.random((500, len(FEATURE_NAMES))) * 1.4 - 0.2  # past the training range too
    queries[::5, 3] = np.nan
    expected = model.predict_proba(queries)[:, 1]  # type: ignore[attr-defined]
    assert np.abs(exported_trees(model).probability(queries) - expected).max() < 1e-12


def test_a_pickled_verifier_is_exported_by_export_verifier(tmp_path: Path) -> None:
    import joblib

    rows = [(a, b, 0.9) for a, b, _ in EXAMPLES * 5]
    train_feature_verifier(rows, [y for _, _, y in EXAMPLES * 5], [], tmp_path)
    (tmp_path / TREES_FILE).unlink()  # what an older version left: the pickle only
    model, _ = _fitted(np.random.default_rng(3))
    joblib.dump(model, tmp_path / "model.joblib")
    with pytest.raises(VerifierLoadError, match=f"cache-proxy export-verifier {tmp_path}"):
        VerifierRegistry().load(str(tmp_path))
    assert main(["export-verifier", str(tmp_path)]) == 0
    _scores_in_unit_interval(tmp_path)
