"""`cache-proxy export-embedder`: the ONNX export the proxy serves from (kept when current)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cache_proxy.config import ConfigError, default_settings, load_settings
from cache_proxy.embedding.layout import default_export_dir
from cache_proxy.embedding.loader import packaged_model_path
from cache_tools.export.embedder import ensure_export


def export_embedder_command(args: argparse.Namespace) -> int:
    try:
        embedding = (load_settings(args.config) if args.config else default_settings()).embedding
    except ConfigError as exc:
        print(f"cache-proxy: invalid config: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or embedding.onnx_dir or default_export_dir(embedding.model))
    try:
        directory = ensure_export(embedding.model or packaged_model_path(), out)
    except OSError as exc:
        print(
            f"cache-proxy: cannot write the ONNX export to {out} ({exc}); pass --out or set "
            "embedding.onnx_dir to a writable directory",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:  # an unsupported model, or an export that does not match it
        print(f"cache-proxy: {exc}", file=sys.stderr)
        return 2
    print(directory)
    return 0
