"""Labelled pairs files (JSON lines, optionally gzipped) and their deterministic split.

Split rule (documented in cache_proxy/verify/README.md): each pair goes to a part by
``sha256(min(a, b) + "\\x1f" + max(a, b))`` modulo 100 — buckets 0-49 "train" (verifier
training), 50-74 "calib" (threshold/min_score calibration), 75-99 "test" (reported numbers).
The rule depends only on the pair's texts, so any copy or order of a file splits the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Part = Literal["train", "calib", "test", "all"]
PART_BUCKETS: dict[str, range] = {
    "train": range(0, 50),
    "calib": range(50, 75),
    "test": range(75, 100),
    "all": range(0, 100),
}


@dataclass(frozen=True)
class Pair:
    text_a: str
    text_b: str
    label: int


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from handle


def load_pairs(path: str | Path) -> list[Pair]:
    """Reads every pair; lines missing a field are skipped rather than guessed."""
    pairs = []
    for line in _open_text(Path(path)):
        if not line.strip():
            continue
        row = json.loads(line)
        if {"text_a", "text_b", "label"} <= row.keys():
            pairs.append(Pair(str(row["text_a"]), str(row["text_b"]), int(row["label"])))
    return pairs


def pair_bucket(pair: Pair) -> int:
    low, high = sorted((pair.text_a, pair.text_b))
    digest = hashlib.sha256(f"{low}\x1f{high}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_pairs(pairs: Iterable[Pair], part: Part) -> list[Pair]:
    buckets = PART_BUCKETS[part]
    return [p for p in pairs if pair_bucket(p) in buckets]


def file_digest(path: str | Path) -> str:
    """Content hash used to key on-disk caches (embeddings) of a pairs file."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]
