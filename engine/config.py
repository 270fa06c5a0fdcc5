"""Engine config (YAML) -> vLLM OpenAI server arguments: the one source of truth.

The local runner (`make run`), the Docker images and the Helm chart all derive the vLLM
command line from this module, so the order of the arguments is fixed and documented:

    --model M --served-model-name S --dtype D --max-model-len N --max-num-seqs N
    [--max-num-batched-tokens N] --tensor-parallel-size N [--enable-prefix-caching]
    [--gpu-memory-utilization F]      (GPU mode only)
    [--quantization Q]                (when quantization != none)
    --host H --port P

CPU mode (`device: cpu`) omits --gpu-memory-utilization and instead sets the environment
variable VLLM_CPU_KVCACHE_SPACE (GiB of KV cache). `--format env` prints that environment.

CLI: python -m engine.config --config FILE [--format args|json|env]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Quantization = Literal["none", "awq", "gptq", "compressed-tensors"]
Dtype = Literal["auto", "float16", "bfloat16", "float32", "half", "float"]
PositiveInt = Annotated[int, Field(gt=0)]


class EngineConfigError(ValueError):
    """The engine config file is missing, unreadable or invalid (message names the key)."""


class EngineConfig(BaseModel):
    """Schema of engine YAML files (docs/CONTRACTS.md, "Engine config")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(min_length=1)]
    served_model_name: Annotated[str, Field(min_length=1)]
    device: Literal["cpu", "gpu"] = "gpu"
    quantization: Quantization = "none"
    dtype: Dtype = "auto"
    max_model_len: PositiveInt = 2048
    max_num_seqs: PositiveInt = 16
    max_num_batched_tokens: PositiveInt | None = None
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    tensor_parallel_size: PositiveInt = 1
    enable_prefix_caching: bool = True
    cpu_kvcache_space_gib: PositiveInt = 1
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8000

    def with_overrides(self, **changes: Any) -> EngineConfig:
        """A validated copy with some fields replaced (e.g. a free port in tests)."""
        return EngineConfig.model_validate({**self.model_dump(), **changes})


def load_engine_config(path: str | Path) -> EngineConfig:
    """Reads and validates an engine YAML file; raises EngineConfigError naming the bad key."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EngineConfigError(f"{path}: cannot read engine config: {exc}") from exc
    if not isinstance(raw, dict):
        raise EngineConfigError(f"{path}: engine config must be a YAML mapping")
    try:
        return EngineConfig.model_validate(raw)
    except ValidationError as exc:
        raise EngineConfigError(f"{path}: {describe_errors(exc)}") from exc


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, each starting with the dotted key that caused it."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def vllm_args(config: EngineConfig) -> list[str]:
    """The vLLM OpenAI server arguments, in the documented fixed order."""
    args = [
        "--model", config.model,
        "--served-model-name", config.served_model_name,
        "--dtype", config.dtype,
        "--max-model-len", str(config.max_model_len),
        "--max-num-seqs", str(config.max_num_seqs),
    ]  # fmt: skip
    if config.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(config.max_num_batched_tokens)]
    args += ["--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.enable_prefix_caching:
        args.append("--enable-prefix-caching")
    if config.device == "gpu":
        args += ["--gpu-memory-utilization", format_float(config.gpu_memory_utilization)]
    if config.quantization != "none":
        args += ["--quantization", config.quantization]
    args += ["--host", config.host, "--port", str(config.port)]
    return args


def vllm_env(config: EngineConfig) -> dict[str, str]:
    """Environment the engine needs on top of the caller's (sorted, deterministic)."""
    env = {"HF_HUB_OFFLINE": "1"}  # models are local paths; never reach the hub
    if config.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.cpu_kvcache_space_gib)
    return dict(sorted(env.items()))


def format_float(value: float) -> str:
    """`0.9` rather than `0.9000000000000001`; integers keep one decimal (`1.0`)."""
    return repr(round(value, 6))


def render(config: EngineConfig, output_format: str) -> str:
    """Text for the CLI: shell-quoted args, JSON {args, env}, or KEY=VALUE lines."""
    if output_format == "args":
        return shlex.join(vllm_args(config))
    if output_format == "json":
        return json.dumps({"args": vllm_args(config), "env": vllm_env(config)}, indent=2)
    return "\n".join(f"{key}={shlex.quote(value)}" for key, value in vllm_env(config).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.config", description="Print the vLLM args for an engine config."
    )
    parser.add_argument("--config", required=True, help="engine YAML file")
    parser.add_argument("--format", choices=["args", "json", "env"], default="args")
    options = parser.parse_args(argv)
    try:
        config = load_engine_config(options.config)
    except EngineConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(config, options.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
