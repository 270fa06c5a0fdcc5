"""`cache-proxy serve` (the serving core) and the offline commands of cache_tools."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cache_proxy.config import ConfigError, Settings, default_settings, load_settings
from cache_tools.commands import add_commands as add_tool_commands


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
    add_tool_commands(commands)
    return parser


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


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is None:
        return default_settings(args.upstream or "http://127.0.0.1:8000")
    if args.upstream:
        raise ConfigError("--upstream is only for running without --config (set upstream.url)")
    return load_settings(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
