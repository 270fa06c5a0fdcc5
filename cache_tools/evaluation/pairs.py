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


# Field names of the common pair formats: ours first, then QQP (GLUE), then MRPC/PAWS/SNLI.
FIELD_NAMES = (
    ("text_a", "text_b", "label"),
    ("question1", "question2", "is_duplicate"),
    ("sentence1", "sentence2", "label"),
)


class PairsFileError(ValueError):
    """A pairs file that yields no pairs, or a line that is not JSON: said, never guessed."""


def load_pairs(path: str | Path) -> list[Pair]:
    """Reads every pair. A row in none of FIELD_NAMES' shapes, or with a label that is not
    0/1, is skipped; a file where every row is skipped is an error that names the fields."""
    pairs, skipped = [], 0
    for number, line in enumerate(_open_text(Path(path)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairsFileError(f"{path}: line {number} is not JSON ({exc.msg})") from exc
        pair = _pair_of(row) if isinstance(row, dict) else None
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if not pairs:
        shapes = " or ".join("/".join(names) for names in FIELD_NAMES)
        raise PairsFileError(
            f"{path}: no labelled pairs ({skipped} rows skipped); each line needs {shapes}"
            " with a 0/1 label"
        )
    return pairs


def _pair_of(row: dict[str, object]) -> Pair | None:
    for first, second, label_field in FIELD_NAMES:
        if {first, second, label_field} <= row.keys():
            label = _binary(row[label_field])
            return None if label is None else Pair(str(row[first]), str(row[second]), label)
    return None


def _binary(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value)
    return None


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
