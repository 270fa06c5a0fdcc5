"""`cache-proxy serve|calibrate|eval|...`"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cache_proxy.config import ConfigError, Settings, default_settings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result: int = args.func(args)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cache-proxy", description=__doc__)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the caching proxy")
    serve.add_argument("--config", type=Path, help="YAML config; without it: local dev defaults")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--upstream", help="engine URL when running without --config")
    serve.set_defaults(func=serve_command)
    export = commands.add_parser(
        "export-embedder", help="export the embedder to ONNX ahead of time (e.g. in an image)"
    )
    export.add_argument("--config", type=Path, help="take embedding.model/onnx_dir from here")
    export.add_argument("--out", type=Path, help="directory (default: embedding.onnx_dir or cache)")
    export.set_defaults(func=export_embedder_command)
    _add_verify_commands(commands)
    return parser


def _add_verify_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    try:
        from cache_proxy.verify.commands import add_commands
    except ImportError:
        return
    add_commands(commands)


def serve_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"cache-proxy: invalid config: {exc}", file=sys.stderr)
        return 2
    from cache_proxy.app import create_app
    from cache_proxy.serving import serve

    if settings.open_access:
        logging.getLogger("cache_proxy").warning(
            "no --config: one 'default' tenant accepts ANY API key (local development only)"
        )
    app = create_app(settings, config_path=args.config)
    serve(app, args.host, args.port, args.log_level, settings.server)
    return 0


def export_embedder_command(args: argparse.Namespace) -> int:
    from cache_proxy.embedding.loader import ensure_onnx_export
    from cache_proxy.embedding.sentence import packaged_model_path

    try:
        embedding = (load_settings(args.config) if args.config else default_settings()).embedding
    except ConfigError as exc:
        print(f"cache-proxy: invalid config: {exc}", file=sys.stderr)
        return 2
    onnx_dir = str(args.out) if args.out else embedding.onnx_dir
    try:
        directory = ensure_onnx_export(embedding.model or packaged_model_path(), onnx_dir)
    except (OSError, ValueError) as exc:  # unwritable directory, unsupported or mismatching model
        print(f"cache-proxy: {exc}", file=sys.stderr)
        return 2
    print(directory)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is None:
        return default_settings(args.upstream or "http://127.0.0.1:8000")
    if args.upstream:
        raise ConfigError("--upstream is only for running without --config (set upstream.url)")
    return load_settings(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
