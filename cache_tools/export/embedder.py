"""Export a sentence-transformers model (Transformer + mean/CLS pooling) to ONNX, verified.

The export runs once per model (seconds) and needs torch and onnx; serving from it needs only
onnxruntime and tokenizers. An export is accepted only when its vectors match the torch model's
on probe texts, so thresholds calibrated with one backend hold for the other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cache_proxy.embedding.layout import (
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    is_exported,
    read_meta,
)
from cache_proxy.embedding.onnx import OnnxEmbedder
from cache_proxy.store.identity import embedder_digest
from cache_tools.export.traced import export_traced, publish_dir

SUPPORTED_POOLING = ("mean", "cls")
# Far below any threshold step that matters (thresholds are set to 0.01); measured 2e-7 here.
MAX_ABS_DIFFERENCE = 1e-4
PROBE_TEXTS = (
    "How do I reset my password?",
    "What is the capital of France, and why was it chosen?",
    "ok",
    "Ünïcödé, emoji 🚀 and   inner   spaces",
    "word " * 300,  # longer than the 256-token window: truncation must match too
)
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(ValueError):
    pass


def ensure_export(model_path: str, out_dir: Path) -> Path:
    """`out_dir` holding the export of `model_path`'s weights: kept when current, else made."""
    if is_exported(out_dir) and read_meta(out_dir).get("source_digest") == embedder_digest(
        model_path
    ):
        return out_dir
    return export_onnx(model_path, out_dir)


def export_onnx(model_path: str, out_dir: Path) -> Path:
    """Write model.onnx, tokenizer.json and embedder.json to `out_dir` (atomically)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(model_path, device="cpu")
    meta = {**_describe(model, model_path), "source_digest": embedder_digest(model_path)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    staging.chmod(0o755)  # exported at image build, read by the unprivileged serving user
    try:
        _write_onnx(model, staging / MODEL_FILE)
        model.tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _check_matches(model, staging)
        publish_dir(staging, out_dir, is_exported, replace=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _describe(model: Any, model_path: str) -> dict[str, Any]:
    kinds = [type(module).__name__ for module in model]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(
            f"embedding.backend onnx: {model_path} has modules {kinds}; only Transformer + "
            "Pooling (+ Normalize) models export; use embedding.backend: torch"
        )
    pooling = str(model[1].pooling_mode)
    if pooling not in SUPPORTED_POOLING:
        raise ExportError(
            f"embedding.backend onnx: pooling '{pooling}' is not supported "
            f"(only {', '.join(SUPPORTED_POOLING)}); use embedding.backend: torch"
        )
    input_names = list(model.tokenizer.model_input_names)
    return {
        "pooling": pooling,
        "max_seq_length": int(model.max_seq_length),
        "dimension": int(model.get_embedding_dimension()),
        "inputs": [name for name in _INPUT_NAMES if name in input_names],
    }


def _write_onnx(model: Any, path: Path) -> None:
    import torch

    transformer = model[0].auto_model.eval()
    names = [name for name in _INPUT_NAMES if name in model.tokenizer.model_input_names]

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            out = self.transformer(**dict(zip(names, inputs, strict=True)))
            return out.last_hidden_state  # type: ignore[no-any-return]

    sample = model.tokenizer(["a b", "a longer sample"], padding=True, return_tensors="pt")
    axes = {"last_hidden_state": {0: "batch", 1: "tokens"}}
    export_traced(LastHiddenState(), sample, names, axes, path)


def _check_matches(model: Any, directory: Path) -> None:
    expected = model.encode(
        list(PROBE_TEXTS), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    actual = OnnxEmbedder(directory).encode(PROBE_TEXTS)
    difference = float(np.abs(actual - expected).max())
    if difference > MAX_ABS_DIFFERENCE:
        raise ExportError(
            f"embedding.backend onnx: exported vectors differ from the torch model's by "
            f"{difference:.2e} (allowed {MAX_ABS_DIFFERENCE:.0e}); use embedding.backend: torch"
        )
