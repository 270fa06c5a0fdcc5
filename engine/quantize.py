"""W4A16 weight-only quantization of a local HF checkpoint with llmcompressor.

    .venv-quant/bin/python -m engine.quantize --model build/models/tiny-llama \
        --out build/models/tiny-llama-w4a16

Every Linear layer except lm_head gets 4-bit integer weights (group size 128, symmetric,
round-to-nearest: weight-only schemes need no calibration data); activations stay 16-bit.
The output is a compressed-tensors checkpoint that vLLM detects from config.json (on CPU it
runs with CPUWNA16LinearKernel; on GPU with Marlin/Machete kernels).
Runs in .venv-quant (deploy/install-quant-venv.sh): llmcompressor pins its own transformers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

SCHEME = "W4A16"
IGNORED_LAYERS = ["lm_head"]  # the output projection is small and quality-sensitive
TOKENIZER_FILE_PREFIXES = ("tokenizer", "special_tokens_map", "chat_template", "vocab", "merges")


def log(message: str) -> None:
    print(f"[quantize] {message}", flush=True)


def checkpoint_bytes(model_dir: Path) -> int:
    """Size of the weight files (what a pod downloads and maps into memory)."""
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))


def load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")


def quantize(model: Any) -> None:
    """Applies the W4A16 recipe in place (llmcompressor's one-shot entry point)."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    recipe = QuantizationModifier(targets="Linear", scheme=SCHEME, ignore=IGNORED_LAYERS)
    oneshot(model=model, recipe=recipe)


def save(model: Any, model_dir: Path, out: Path) -> None:
    """Saves packed int4 weights; staging dir + rename so a partial result is never served."""
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, save_compressed=True)
    copy_tokenizer_files(model_dir, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def copy_tokenizer_files(model_dir: Path, out: Path) -> None:
    """Tokenizer and chat template copied byte for byte: re-saving them through another
    transformers version could change the files (e.g. where the chat template lives)."""
    for path in model_dir.iterdir():
        if path.is_file() and path.name.startswith(TOKENIZER_FILE_PREFIXES):
            shutil.copy2(path, out / path.name)


def run(model_dir: Path, out: Path) -> None:
    started = time.monotonic()
    log(f"loading {model_dir}")
    model = load(model_dir)
    log(f"quantizing Linear layers to {SCHEME} (ignoring {', '.join(IGNORED_LAYERS)})")
    quantize(model)
    save(model, model_dir, out)
    before, after = checkpoint_bytes(model_dir), checkpoint_bytes(out)
    log(f"weights {before / 1e6:.2f} MB -> {after / 1e6:.2f} MB ({after / before:.0%})")
    log(f"wrote {out} in {time.monotonic() - started:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.quantize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, help="input HF model directory")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    options = parser.parse_args(argv)
    if not (options.model / "config.json").is_file():
        parser.error(f"{options.model} has no config.json")
    run(options.model, options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
