"""Exporting a trained cross-encoder to ONNX (`<dir>/onnx/`), checked against torch's scores."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.crossencoder_onnx import (
    EXPORT_DIR,
    MAX_LENGTH,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxCrossEncoder,
    export_is_current,
    weights_fingerprint,
)
from cache_tools.export.traced import export_traced, publish_dir
from cache_tools.verifiers.cross_model import load_cross_encoder

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
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


def export_cross_encoder(model_dir: Path, encoder: Any | None = None) -> Path:
    """Writes `model_dir/onnx` (replacing a stale one) after checking it scores like torch."""
    import torch

    if encoder is None:
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
