"""Training the feature verifier: scikit-learn's gradient boosting, exported as plain trees."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.features import FEATURE_NAMES, feature_matrix, idf_table
from cache_proxy.verify.trees import TREES_FILE, TreeEnsemble

MAX_CHECK_ROWS = 5_000
MAX_PROBABILITY_DIFFERENCE = 1e-9


def train_feature_verifier(
    rows: Sequence[tuple[str, str, float]],
    labels: Sequence[int],
    idf_texts: Iterable[str],
    out_dir: str | Path,
) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    idf = idf_table(idf_texts)
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    features = feature_matrix(rows, idf)
    model.fit(features, np.asarray(labels))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checked_trees(model, features).save(out)
    (out / "idf.json").write_text(json.dumps(idf))
    info = {"kind": "features", "examples": len(labels), "features": FEATURE_NAMES}
    (out / MARKER).write_text(json.dumps(info, indent=2))
    return info


def checked_trees(model: Any, sample: npt.NDArray[np.float64]) -> TreeEnsemble:
    """The exported trees, kept only when they score `sample` like scikit-learn does."""
    trees = exported_trees(model)
    expected = model.predict_proba(sample[:MAX_CHECK_ROWS])[:, 1]
    difference = float(np.abs(trees.probability(sample[:MAX_CHECK_ROWS]) - expected).max())
    if difference > MAX_PROBABILITY_DIFFERENCE:
        raise ValueError(f"exported trees score {difference:.1e} away from scikit-learn's")
    return trees


def export_joblib_verifier(directory: Path) -> Path:
    """A features verifier trained before trees.npz existed: its pickle, exported as trees."""
    if (directory / TREES_FILE).is_file():
        return directory / TREES_FILE  # trained with the export already
    import joblib

    model = joblib.load(directory / "model.joblib")  # a trusted file, like model weights
    probe = np.random.default_rng(0).uniform(0.0, 30.0, (256, len(FEATURE_NAMES)))
    checked_trees(model, probe).save(directory)
    return directory / TREES_FILE


def exported_trees(model: Any) -> TreeEnsemble:
    """A fitted binary HistGradientBoostingClassifier's trees as one array table."""
    if getattr(model, "is_categorical_", None) is not None or model.n_trees_per_iteration_ != 1:
        raise ValueError("only binary classifiers on numeric features export")
    trees = [predictors[0].nodes for predictors in model._predictors]
    offsets = np.cumsum([0, *(len(nodes) for nodes in trees[:-1])])
    nodes: Any = np.concatenate(trees)  # a structured array (scikit-learn's node record)
    shift = np.repeat(offsets, [len(t) for t in trees])
    return TreeEnsemble(
        feature=nodes["feature_idx"].astype(np.int64),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=nodes["left"].astype(np.int64) + shift,
        right=nodes["right"].astype(np.int64) + shift,
        is_leaf=nodes["is_leaf"].astype(bool),
        value=nodes["value"].astype(np.float64),
        roots=offsets.astype(np.int64),
        baseline=float(np.ravel(model._baseline_prediction)[0]),
        depth=int(nodes["depth"].max()),
    )
