"""Feature verifier: a small gradient-boosted classifier on cheap pair features.

Features: embedding cosine, word/content/IDF-weighted overlap, the rarest word present on one
side only, lengths and every guard's verdict. Scoring a few candidates takes well under a
millisecond, so it can sit on the hit path where a cross-encoder would be too slow. Training
(scikit-learn) lives in cache_tools; the proxy reads the exported trees (trees.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cache_proxy.verify.artifacts import EXPORT_COMMAND, VerifierLoadError
from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.guards import GUARDS, guard_signals, words
from cache_proxy.verify.trees import TREES_FILE, TreeEnsemble

_STOPWORD_TEXT = """a an the is are was were be been do does did i you he she it we they my your
of to in on for with at by from and or what which how why who when where can could should would
will that this these those there some any me as about if so than then have has had get"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
FEATURE_NAMES = [
    "similarity", "word_jaccard", "content_jaccard", "idf_overlap", "max_idf_only_query",
    "max_idf_only_cached", "words_query", "words_cached", "length_ratio",
    *GUARDS,
]  # fmt: skip
_FIRST_GUARD = FEATURE_NAMES.index(next(iter(GUARDS)))


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
        *(float(signals[name]) for name in FEATURE_NAMES[_FIRST_GUARD:]),
    ]


def feature_matrix(
    rows: Sequence[tuple[str, str, float]], idf: dict[str, float]
) -> npt.NDArray[np.float64]:
    return np.array([pair_features(q, c, s, idf) for q, c, s in rows], dtype=np.float64)


class FeatureVerifier:
    """Scores from an exported tree ensemble (trees.npz) and idf.json; thread-safe (no state)."""

    def __init__(self, path: str | Path) -> None:
        directory = Path(path)
        if not (directory / TREES_FILE).is_file():
            raise VerifierLoadError(
                f"{directory} has no {TREES_FILE} (trained by an older version): "
                f"re-run `{EXPORT_COMMAND} {directory}`"
            )
        self._trees = TreeEnsemble.load(directory)
        self._idf: dict[str, float] = json.loads((directory / "idf.json").read_text())

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return self.score_pairs([(query, c) for c in candidates])

    def score_pairs(self, pairs: Sequence[tuple[str, Candidate]]) -> list[float]:
        if not pairs:
            return []
        rows = [(q, c.text, c.similarity) for q, c in pairs]
        return [float(p) for p in self._trees.probability(feature_matrix(rows, self._idf))]
