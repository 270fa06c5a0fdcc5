"""Engine config -> vLLM args: the contract the local runner and the Helm chart share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import (
    EngineConfig,
    EngineConfigError,
    load_engine_config,
    main,
    vllm_args,
    vllm_env,
)
from engine.launch import server_command, server_environment

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "engine" / "configs"
MINIMAL = {"model": "build/models/tiny-llama", "served_model_name": "tiny-llama"}


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_gpu_defaults_give_the_documented_args_in_order() -> None:
    args = vllm_args(EngineConfig.model_validate(MINIMAL))
    assert args == [
        "--model", "build/models/tiny-llama", "--served-model-name", "tiny-llama",
        "--dtype", "auto", "--max-model-len", "2048", "--max-num-seqs", "16",
        "--tensor-parallel-size", "1", "--enable-prefix-caching",
        "--gpu-memory-utilization", "0.9", "--host", "127.0.0.1", "--port", "8000",
    ]  # fmt: skip


def test_cpu_mode_drops_gpu_memory_and_sets_kv_cache_env() -> None:
    config = EngineConfig.model_validate({**MINIMAL, "device": "cpu", "cpu_kvcache_space_gib": 3})
    assert "--gpu-memory-utilization" not in vllm_args(config)
    assert vllm_env(config) == {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "3"}


def test_gpu_mode_sets_no_cpu_kv_cache_env() -> None:
    assert "VLLM_CPU_KVCACHE_SPACE" not in vllm_env(EngineConfig.model_validate(MINIMAL))


def test_optional_args_appear_only_when_set() -> None:
    config = EngineConfig.model_validate({
        **MINIMAL, "quantization": "awq", "max_num_batched_tokens": 4096,
        "enable_prefix_caching": False, "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
    })  # fmt: skip
    args = vllm_args(config)
    assert args[args.index("--quantization") + 1] == "awq"
    assert args[args.index("--max-num-batched-tokens") + 1] == "4096"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.85"
    assert "--enable-prefix-caching" not in args
    assert "--quantization" not in vllm_args(EngineConfig.model_validate(MINIMAL))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quantization", "int3"),
        ("max_model_len", 0),
        ("max_num_seqs", -4),
        ("max_num_batched_tokens", 0),
        ("tensor_parallel_size", 0),
        ("gpu_memory_utilization", 0),
        ("gpu_memory_utilization", 1.2),
        ("cpu_kvcache_space_gib", 0),
        ("port", 70000),
        ("device", "tpu"),
        ("dtype", "int8"),
        ("model", ""),
    ],
)
def test_invalid_values_are_rejected_naming_the_key(
    tmp_path: Path, key: str, value: object
) -> None:
    with pytest.raises(EngineConfigError, match=rf"\b{key}: "):
        load_engine_config(write_config(tmp_path, {**MINIMAL, key: value}))


def test_gpu_memory_utilization_of_one_is_allowed() -> None:
    config = EngineConfig.model_validate({**MINIMAL, "gpu_memory_utilization": 1})
    assert "1.0" in vllm_args(config)


def test_unknown_key_is_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match=r"gpu_mem_util: unknown key"):
        load_engine_config(write_config(tmp_path, {**MINIMAL, "gpu_mem_util": 0.5}))


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError, match=r"served_model_name: Field required"):
        load_engine_config(write_config(tmp_path, {"model": "m"}))


def test_non_mapping_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(EngineConfigError, match="mapping"):
        load_engine_config(path)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_engine_config(path)
    assert vllm_args(config)[:2] == ["--model", config.model]


def test_cpu_configs_serve_the_tiny_model_under_one_name() -> None:
    plain = load_engine_config(CONFIGS / "cpu-tiny.yaml")
    quantized = load_engine_config(CONFIGS / "cpu-tiny-w4a16.yaml")
    assert (plain.device, quantized.device) == ("cpu", "cpu")
    assert plain.model == "build/models/tiny-llama"
    assert quantized.model == "build/models/tiny-llama-w4a16"
    assert plain.served_model_name == quantized.served_model_name == "tiny-llama"
    assert quantized.quantization == "compressed-tensors"


def test_cli_prints_args_json_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    config_file = str(CONFIGS / "cpu-tiny.yaml")
    assert main(["--config", config_file]) == 0
    args_line = capsys.readouterr().out.strip()
    assert args_line.startswith("--model build/models/tiny-llama --served-model-name tiny-llama")
    assert main(["--config", config_file, "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert " ".join(payload["args"]) == args_line
    assert payload["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert main(["--config", config_file, "--format", "env"]) == 0
    assert "VLLM_CPU_KVCACHE_SPACE=1" in capsys.readouterr().out.splitlines()


def test_cli_exits_2_with_the_key_on_stderr(tmp_path: Path) -> None:
    bad = write_config(tmp_path, {**MINIMAL, "max_num_seqs": 0})
    result = subprocess.run(
        [sys.executable, "-m", "engine.config", "--config", str(bad)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "max_num_seqs" in result.stderr
    assert result.stdout == ""


def test_launch_command_runs_the_api_server_module_with_overrides() -> None:
    config = load_engine_config(CONFIGS / "cpu-tiny.yaml").with_overrides(port=8123)
    command = server_command(config, python="/venv/bin/python")
    assert command[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert command[-2:] == ["--port", "8123"]
    env = server_environment(config, base={"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "9"})
    assert env == {"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def test_override_with_invalid_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="port"):
        load_engine_config(CONFIGS / "cpu-tiny.yaml").with_overrides(port=0)


def test_launch_dry_run_prints_the_command_without_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from engine.launch import main as launch_main

    assert launch_main(["--config", str(CONFIGS / "cpu-tiny.yaml"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "VLLM_CPU_KVCACHE_SPACE=1" in printed
    assert "-m vllm.entrypoints.openai.api_server --model build/models/tiny-llama" in printed


def test_launch_rejects_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    from engine.launch import main as launch_main

    bad = write_config(tmp_path, {**MINIMAL, "quantization": "int3"})
    assert launch_main(["--config", str(bad), "--dry-run"]) == 2
