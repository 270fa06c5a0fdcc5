"""Training a verifier from a pairs file: the "train" part of the split only (pairs.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from cache_proxy.verify.artifacts import VERIFIER_KINDS
from cache_tools.evaluation.embeddings import TextTable, default_model_path
from cache_tools.evaluation.mining import RetrievedQuery, cross_encoder_examples, mine_retrieved
from cache_tools.evaluation.pairs import Pair, split_pairs

log = logging.getLogger(__name__)
# Candidates below this similarity are never served at any threshold calibrate sweeps.
MIN_TRAIN_SIMILARITY = 0.6


def table_for(pairs: list[Pair]) -> TextTable:
    """Embeddings of every text in the file (cached on disk under build/cache/)."""
    return TextTable.build([t for p in pairs for t in (p.text_a, p.text_b)])


def _feature_rows(
    pairs: list[Pair], mined: list[RetrievedQuery], table: TextTable
) -> tuple[list[tuple[str, str, float]], list[int]]:
    rows: dict[tuple[str, str], tuple[float, int]] = {}
    for item in mined:
        for cand, label in zip(item.candidates, item.labels, strict=True):
            if cand.similarity >= MIN_TRAIN_SIMILARITY:
                rows[(item.query, cand.text)] = (cand.similarity, label)
    sims = (table.of([p.text_b for p in pairs]) * table.of([p.text_a for p in pairs])).sum(axis=1)
    for pair, sim in zip(pairs, sims, strict=True):
        rows.setdefault((pair.text_b, pair.text_a), (float(sim), pair.label))
    listed = [(q, c, s) for (q, c), (s, _) in rows.items()]
    return listed, [label for _, label in rows.values()]


def train_verifier(
    kind: str,
    pairs: list[Pair],
    out_dir: str | Path,
    max_minutes: float = 40.0,
    max_examples: int = 50_000,
    base_model: str | None = None,
) -> dict[str, Any]:
    """Mines hard negatives from retrieval on the train part, then trains `kind` into out_dir.

    `base_model` (cross-encoder only): a local model directory to fine-tune instead of the
    packaged all-MiniLM-L6-v2, e.g. a stronger encoder or a cross-encoder already trained.
    """
    if kind not in VERIFIER_KINDS:
        raise ValueError(f"verifier kind must be one of {VERIFIER_KINDS}, not {kind!r}")
    train = split_pairs(pairs, "train")
    started = time.monotonic()
    mined = mine_retrieved(train, table_for(pairs))
    if kind == "features":
        from cache_tools.verifiers.features import train_feature_verifier

        rows, labels = _feature_rows(train, mined, table_for(pairs))
        texts = [t for p in train for t in (p.text_a, p.text_b)]
        info = train_feature_verifier(rows, labels, texts, out_dir)
    else:
        from cache_tools.verifiers.crossencoder import train_cross_encoder

        examples = cross_encoder_examples(train, mined, MIN_TRAIN_SIMILARITY, max_examples)
        log.info(
            "cross-encoder: %d examples, %d positive", len(examples), sum(e[2] for e in examples)
        )
        start_from = base_model or default_model_path()
        info = train_cross_encoder(examples, out_dir, start_from, max_minutes=max_minutes)
    info["total_seconds"] = round(time.monotonic() - started, 1)
    log.info("trained %s verifier into %s: %s", kind, out_dir, info)
    return info
