"""The cross-encoder verifier on ONNX Runtime: the torch model's scores, a fraction of its time.

A trained cross-encoder directory gets an `onnx/` export next to its weights (at the end of
training, or on first load when missing and the directory is writable). The export is kept
only when its scores match the torch model's on probe pairs, so a `min_score` calibrated with
one runtime holds for the other; it records a digest of the weights it came from, so a model
retrained into the same directory never runs a stale export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cache_proxy.embedding.onnx import cpu_session
from cache_proxy.embedding.onnx_export import export_traced, publish_dir
from cache_proxy.verify.decision import Candidate

log = logging.getLogger(__name__)
EXPORT_DIR = "onnx"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "export.json"
MAX_LENGTH = 128  # the torch verifier's max_length: same truncation, same scores
MAX_SCORE_DIFFERENCE = 1e-4
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBE_PAIRS = (
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is 2 + 2?", "What is 2 + 3?"),
    ("ok", "Ünïcödé, emoji 🚀 and   inner   spaces"),
    ("word " * 200, "another " * 150),  # both sides past the window: truncation must match
)


class CrossEncoderExportError(RuntimeError):
    pass


def weights_fingerprint(model_dir: Path) -> str:
    """Digest of the trained model's own files (not the export, not verifier.json)."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != "verifier.json")
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


def export_cross_encoder(model_dir: Path, encoder: Any | None = None) -> Path:
    """Writes `model_dir/onnx` (replacing a stale one) after checking it scores like torch."""
    import torch

    if encoder is None:
        from cache_proxy.verify.crossencoder import load_cross_encoder

        encoder = load_cross_encoder(str(model_dir))
    encoder.model.eval()
    target = model_dir / EXPORT_DIR
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=model_dir))
    staging.chmod(0o755)
    try:
        _write_model(encoder, staging / MODEL_FILE)
        encoder.tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
        meta = {"weights": weights_fingerprint(model_dir), "inputs": _input_names(encoder)}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        with torch.inference_mode():
            _check_scores(encoder, staging)
        if target.exists() and not export_is_current(model_dir):
            shutil.rmtree(target)
        publish_dir(staging, target, lambda _: export_is_current(model_dir))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _input_names(encoder: Any) -> list[str]:
    return [n for n in _INPUTS if n in encoder.tokenizer.model_input_names]


def _write_model(encoder: Any, path: Path) -> None:
    import torch

    model, names = encoder.model, _input_names(encoder)

    class FirstLogit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).logits[:, 0]  # type: ignore[no-any-return]

    sample = encoder.tokenizer(
        ["a b", "longer sample text"], ["c", "d e"], padding=True, return_tensors="pt"
    )
    export_traced(FirstLogit(), sample, names, {"logit": {0: "batch"}}, path)


def _check_scores(encoder: Any, export: Path) -> None:
    import torch

    queries = [q for q, _ in PROBE_PAIRS]
    cached = [c for _, c in PROBE_PAIRS]
    batch = encoder.tokenizer(
        queries, cached, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    expected = torch.sigmoid(encoder.model(**batch).logits[:, 0]).numpy()
    candidates = [Candidate(0, text, 0.0) for text in cached]
    actual = np.array(
        OnnxCrossEncoder(export).score_pairs(list(zip(queries, candidates, strict=True)))
    )
    difference = float(np.abs(actual - expected).max())
    if difference > MAX_SCORE_DIFFERENCE:
        raise CrossEncoderExportError(
            f"ONNX cross-encoder scores differ from torch by {difference:.2e}"
        )


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
