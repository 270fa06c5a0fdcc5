"""Build the configured embedder: ONNX Runtime (default; exported on first use) or torch."""

from __future__ import annotations

import logging
from pathlib import Path

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.onnx_export import default_export_dir, export_onnx, is_exported
from cache_proxy.embedding.sentence import SentenceTransformerEmbedder, packaged_model_path

log = logging.getLogger(__name__)


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    path = settings.model or packaged_model_path()
    if settings.model and not Path(path).exists():
        raise FileNotFoundError(f"embedding.model: no model at {path}")
    if settings.backend == "torch":
        return SentenceTransformerEmbedder(path, settings.threads)
    from cache_proxy.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(ensure_onnx_export(path, settings.onnx_dir), settings.threads)


def ensure_onnx_export(model_path: str, onnx_dir: str | None) -> Path:
    directory = Path(onnx_dir) if onnx_dir else default_export_dir(model_path)
    if not is_exported(directory):
        log.info("exporting the embedder to ONNX once: %s", directory)
        try:
            export_onnx(model_path, directory)
        except OSError as exc:
            raise OSError(
                f"embedding.onnx_dir: cannot write the ONNX export to {directory} ({exc}); "
                "set embedding.onnx_dir to a writable directory or pre-export it with "
                "`cache-proxy export-embedder`"
            ) from exc
    return directory
