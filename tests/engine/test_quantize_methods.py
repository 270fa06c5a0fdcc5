"""engine/quantize.py --method gptq|awq and engine/quant_quality.py: local calibration text that
is disjoint from the training corpus and from the held-out text, and a GPTQ checkpoint whose
held-out perplexity stays close to the 16-bit model's. Runs in the quant venv (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.process import REPO

pytestmark = pytest.mark.engine

QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"
BUILT_MODEL = REPO / "build" / "models" / "tiny-llama"
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Measured on the tiny model (64 samples x 256 tokens, group 128): held-out perplexity bf16
# 134.9, gptq 134.1 (-0.6%), rtn 134.3, awq 132.9. The bound leaves room for the smaller
# calibration set used here and for a retrained tiny model, and still catches a broken
# checkpoint (random or unscaled int4 weights give perplexities in the thousands).
MAX_PERPLEXITY_RATIO = 1.25

DISJOINTNESS = """
import json
from engine import calibration as c
train, calib, held = c.training_pairs(), c.calibration_pairs(), c.heldout_pairs()
def overlap(a, b):
    return {"questions": len({q for q, _ in a} & {q for q, _ in b}),
            "answers": len({x for _, x in a} & {x for _, x in b})}
print(json.dumps({"sizes": [len(train), len(calib), len(held)],
                  "calib_train": overlap(calib, train), "held_train": overlap(held, train),
                  "held_calib": overlap(held, calib),
                  "modules": [c.CALIBRATION_MODULES, c.HELDOUT_MODULES]}))
"""


def require_quant_venv_and_model() -> None:
    if not QUANT_PYTHON.exists():
        pytest.skip(f"{QUANT_PYTHON} missing: run `make quant` (deploy/install-quant-venv.sh)")
    if not (BUILT_MODEL / "config.json").exists():
        pytest.skip(f"{BUILT_MODEL} missing: run `make model`")


def run_in_quant_venv(*args: str, timeout_s: float = 300) -> str:
    result = subprocess.run(
        [str(QUANT_PYTHON), "-W", "ignore::UserWarning", *args],
        capture_output=True, text=True, cwd=REPO, env=OFFLINE, timeout=timeout_s, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_calibration_text_is_disjoint_from_training_and_held_out_text() -> None:
    require_quant_venv_and_model()
    facts: dict[str, Any] = json.loads(run_in_quant_venv("-c", DISJOINTNESS))
    train, calib, held = facts["sizes"]
    assert train > 500 and calib >= 100 and held >= 64  # enough text for 64 samples / 32 prompts
    zero = {"questions": 0, "answers": 0}
    assert facts["calib_train"] == zero
    assert facts["held_train"] == zero
    assert facts["held_calib"] == zero
    calibration_modules, heldout_modules = facts["modules"]
    assert not set(calibration_modules) & set(heldout_modules)


@pytest.mark.slow
def test_gptq_writes_a_w4a16_checkpoint_close_to_bf16(tmp_path: Path) -> None:
    require_quant_venv_and_model()
    out = tmp_path / "tiny-llama-gptq"
    run_in_quant_venv(
        "-m", "engine.quantize", "--model", str(BUILT_MODEL), "--out", str(out),
        "--method", "gptq", "--group-size", "64",
        "--calibration-samples", "16", "--calibration-seq-len", "128",
    )  # fmt: skip
    assert not out.with_name(out.name + ".tmp").exists()  # staged, then renamed
    config = json.loads((out / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors"
    assert quant["format"] == "pack-quantized"
    assert quant["ignore"] == ["lm_head"]
    [group] = quant["config_groups"].values()
    weights = group["weights"]
    assert (weights["num_bits"], weights["type"], weights["strategy"]) == (4, "int", "group")
    assert weights["group_size"] == 64 and weights["symmetric"] is True
    assert group["input_activations"] is None  # A16: activations are not quantized
    assert (out / "tokenizer.json").read_bytes() == (BUILT_MODEL / "tokenizer.json").read_bytes()

    quality = run_in_quant_venv(
        "-m", "engine.quant_quality", "--reference", str(BUILT_MODEL),
        "--models", f"gptq={out}", "--prompts", "0", "--json",
    )  # fmt: skip
    rows = json.loads(quality)
    bf16, gptq = rows
    assert gptq["weight_mb"] < 0.8 * bf16["weight_mb"]
    assert 0 < gptq["weight_error"] < 0.5  # really 4-bit weights, and not garbage
    assert bf16["perplexity"] > 1 and gptq["perplexity"] > 1
    assert gptq["perplexity"] < MAX_PERPLEXITY_RATIO * bf16["perplexity"]
    assert gptq["train_perplexity"] < MAX_PERPLEXITY_RATIO * bf16["train_perplexity"]


def test_the_default_method_is_measurably_closer_to_bf16_than_rtn() -> None:
    """The default of engine/quantize.py is chosen by measurement: on the checkpoints `make
    quant` built, its KL to bf16 is below round-to-nearest's and the paired bootstrap interval
    of the difference excludes 0 (measured on the tiny model: -0.0038 [-0.0046, -0.0030])."""
    require_quant_venv_and_model()
    from engine.quantize import DEFAULT_METHOD

    built = {"rtn": "tiny-llama-w4a16", DEFAULT_METHOD: f"tiny-llama-{DEFAULT_METHOD}"}
    paths = {name: BUILT_MODEL.parent / directory for name, directory in built.items()}
    if not all((path / "config.json").exists() for path in paths.values()):
        pytest.skip("quantized checkpoints missing: run `make quant`")
    models = [f"{name}={path}" for name, path in paths.items()]
    command = ["-m", "engine.quant_quality", "--reference", str(BUILT_MODEL), "--prompts", "0"]
    rows = json.loads(run_in_quant_venv(*command, "--json", "--models", *models))
    default = next(row for row in rows if row["name"] == DEFAULT_METHOD)
    [versus_rtn] = [
        d for d in default["differences"] if d["metric"] == "kl" and d["other"] == "rtn"
    ]
    assert versus_rtn["value"] < 0 and versus_rtn["high"] < 0, versus_rtn
