"""The cross-encoder verifier on ONNX Runtime: the torch model's scores, a fraction of its time.

A trained cross-encoder directory gets an `onnx/` export next to its weights at the end of
training (or with `cache-proxy export-verifier DIR`); the proxy only reads it. The export is
kept only when its scores match the torch model's on probe pairs, so a `min_score` calibrated
with one runtime holds for the other; it records a digest of the weights it came from, so a
model retrained into the same directory never runs a stale export.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cache_proxy.embedding.onnx import cpu_session
from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.candidate import Candidate

EXPORT_DIR = "onnx"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "export.json"
MAX_LENGTH = 128  # the torch verifier's max_length: same truncation, same scores


def weights_fingerprint(model_dir: Path) -> str:
    """Digest of the trained model's own files (not the export, not the marker)."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != MARKER)
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def export_is_current(model_dir: Path) -> bool:
    export = model_dir / EXPORT_DIR
    if not all((export / n).is_file() for n in (MODEL_FILE, TOKENIZER_FILE, META_FILE)):
        return False
    meta = json.loads((export / META_FILE).read_text())
    return bool(meta.get("weights") == weights_fingerprint(model_dir))


class OnnxCrossEncoder:
    """Scores (query, cached prompt) pairs from an `onnx/` export; thread-safe."""

    def __init__(self, export: str | Path, threads: int = 1) -> None:
        from tokenizers import Tokenizer

        export = Path(export)
        self._inputs: list[str] = json.loads((export / META_FILE).read_text())["inputs"]
        self._tokenizer = Tokenizer.from_file(str(export / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(MAX_LENGTH, strategy="longest_first")
        self._tokenizer.enable_padding()
        self._session = cpu_session(export / MODEL_FILE, threads)
        self._lock = threading.Lock()  # tokenizer state is not shared across threads

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return self.score_pairs([(query, c) for c in candidates])

    def score_pairs(self, pairs: Sequence[tuple[str, Candidate]]) -> list[float]:
        if not pairs:
            return []
        with self._lock:
            encodings = self._tokenizer.encode_batch([(q, c.text) for q, c in pairs])
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        logits = self._session.run(None, {name: feeds[name] for name in self._inputs})[0]
        return [1.0 / (1.0 + math.exp(-float(x))) for x in logits]
