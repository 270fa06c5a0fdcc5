"""The ONNX embedder's file layout, owned by the runtime: exporters write it, the proxy reads it.

An export directory holds model.onnx, tokenizer.json and embedder.json (pooling, window,
dimension, inputs and the digest of the source model's weights, which names the cache space).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "embedder.json"
# The export of the packaged all-MiniLM-L6-v2 (embedding.model unset); the package is pinned.
PACKAGED_EXPORT = "packaged-all-MiniLM-L6-v2-0.1.0"
EXPORT_COMMAND = "cache-proxy export-embedder"


class ExportMissing(RuntimeError):
    """No (current) ONNX export where the config says: a start-up error naming the fix."""


def cache_base() -> Path:
    return Path(
        os.environ.get("CACHE_PROXY_CACHE_DIR")
        or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                        "cache-proxy")
    )  # fmt: skip


def default_export_dir(model_path: str | None) -> Path:
    """Where the export lives unless embedding.onnx_dir names one; keyed by the model's files,
    so a changed model never finds a stale export."""
    name = model_fingerprint(model_path) if model_path else PACKAGED_EXPORT
    return cache_base() / "onnx" / name


def model_fingerprint(model_path: str) -> str:
    """A digest of the model's file names, sizes and mtimes (cheap; no file is read)."""
    digest = hashlib.sha256()
    root = Path(model_path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def is_exported(directory: Path) -> bool:
    return all((directory / name).is_file() for name in (MODEL_FILE, TOKENIZER_FILE, META_FILE))


def read_meta(directory: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((directory / META_FILE).read_text())
    return meta


def export_dir_for(model_path: str | None, onnx_dir: str | None) -> Path:
    """The export the proxy serves from; ExportMissing (naming the command) when absent."""
    directory = Path(onnx_dir) if onnx_dir else default_export_dir(model_path)
    if not is_exported(directory):
        raise ExportMissing(
            f"no ONNX export of the embedder at {directory}: make it with `{EXPORT_COMMAND}` "
            "(given the proxy's --config; it needs pip install 'vllm-semantic-cache[export]'), "
            "or set embedding.backend: torch"
        )
    if "source_digest" not in read_meta(directory):
        raise ExportMissing(
            f"{directory / META_FILE} comes from an older exporter (no source_digest): "
            f"re-run `{EXPORT_COMMAND}`"
        )
    return directory
