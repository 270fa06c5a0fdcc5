"""Feature verifier: a small gradient-boosted classifier on cheap pair features.

Features: embedding cosine, word/content/IDF-weighted overlap, the rarest word present on one
side only, lengths and every guard's verdict. Scoring a few candidates takes well under a
millisecond, so it can sit on the hit path where a cross-encoder would be too slow.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cache_proxy.verify.decision import Candidate
from cache_proxy.verify.guards import guard_signals, words

MARKER = "verifier.json"
_STOPWORD_TEXT = """a an the is are was were be been do does did i you he she it we they my your
of to in on for with at by from and or what which how why who when where can could should would
will that this these those there some any me as about if so than then have has had get"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
FEATURE_NAMES = [
    "similarity", "word_jaccard", "content_jaccard", "idf_overlap", "max_idf_only_query",
    "max_idf_only_cached", "words_query", "words_cached", "length_ratio",
    "numbers", "negation", "antonyms", "entities", "question_word",
]  # fmt: skip


def idf_table(texts: Iterable[str]) -> dict[str, float]:
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        counts.update(set(words(text)))
        total += 1
    return {w: math.log((1 + total) / (1 + n)) + 1 for w, n in counts.items() if n > 1}


def pair_features(query: str, cached: str, similarity: float, idf: dict[str, float]) -> list[float]:
    wq, wc = set(words(query)), set(words(cached))
    cq, cc = wq - _STOPWORDS, wc - _STOPWORDS
    unseen = max(idf.values(), default=1.0)  # a word seen once or never: as rare as the rarest

    def weight(word: str) -> float:
        return idf.get(word, unseen)

    shared = sum(weight(w) for w in wq & wc)
    union = sum(weight(w) for w in wq | wc) or 1.0
    signals = guard_signals(query, cached)
    return [
        similarity,
        len(wq & wc) / max(1, len(wq | wc)),
        len(cq & cc) / max(1, len(cq | cc)),
        shared / union,
        max((weight(w) for w in cq - cc), default=0.0),
        max((weight(w) for w in cc - cq), default=0.0),
        float(len(wq)),
        float(len(wc)),
        min(len(wq), len(wc)) / max(1, len(wq), len(wc)),
        *(float(signals[name]) for name in FEATURE_NAMES[9:]),
    ]


def feature_matrix(
    rows: Sequence[tuple[str, str, float]], idf: dict[str, float]
) -> npt.NDArray[np.float64]:
    return np.array([pair_features(q, c, s, idf) for q, c, s in rows], dtype=np.float64)


def train_feature_verifier(
    rows: Sequence[tuple[str, str, float]],
    labels: Sequence[int],
    idf_texts: Iterable[str],
    out_dir: str | Path,
) -> dict[str, Any]:
    import joblib
    from sklearn.ensemble import HistGradientBoostingClassifier

    idf = idf_table(idf_texts)
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
    model.fit(feature_matrix(rows, idf), np.asarray(labels))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    (out / "idf.json").write_text(json.dumps(idf))
    info = {"kind": "features", "examples": len(labels), "features": FEATURE_NAMES}
    (out / MARKER).write_text(json.dumps(info, indent=2))
    return info


class FeatureVerifier:
    """Loads model.joblib (a trusted file, like model weights) and idf.json from a directory."""

    def __init__(self, path: str | Path) -> None:
        import joblib

        self._model = joblib.load(Path(path) / "model.joblib")
        self._idf: dict[str, float] = json.loads((Path(path) / "idf.json").read_text())
        self._lock = threading.Lock()

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return self.score_pairs([(query, c) for c in candidates])

    def score_pairs(self, pairs: Sequence[tuple[str, Candidate]]) -> list[float]:
        if not pairs:
            return []
        rows = [(q, c.text, c.similarity) for q, c in pairs]
        features = feature_matrix(rows, self._idf)
        with self._lock:  # sklearn predict is not documented as thread-safe
            probabilities = self._model.predict_proba(features)[:, 1]
        return [float(p) for p in probabilities]
