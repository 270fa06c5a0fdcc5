"""W4A16 weight-only quantization of a local HF checkpoint with llmcompressor.

    .venv-quant/bin/python -m engine.quantize --model build/models/tiny-llama \
        --out build/models/tiny-llama-gptq [--method gptq|awq|rtn] [--group-size 128] \
        [--calibration-samples 64] [--calibration-seq-len 256]

Every Linear layer except lm_head gets 4-bit integer weights (symmetric, one scale per group
of --group-size input channels); activations stay 16-bit. Methods:
- rtn: round-to-nearest, no calibration data (llmcompressor QuantizationModifier);
- gptq (default): GPTQModifier, rounds column by column and corrects the remaining columns
  using the Hessian of the layer inputs seen on calibration data. The default by measurement
  (bench.engine_quant, README "Quantization"): the lowest KL to bf16 of the three on both local
  model shapes, measurably (paired bootstrap intervals exclude 0);
- awq: AWQModifier (scales salient input channels, found from calibration activations, using
  llmcompressor's Llama mappings) followed by the same W4A16 QuantizationModifier.
Calibration text is local (engine/calibration.py): chat-formatted docstring Q/A pairs from
torch modules the tiny model was not trained on, packed into samples of --calibration-seq-len
tokens.
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
METHODS = ("rtn", "gptq", "awq")
DEFAULT_METHOD = "gptq"  # measured best (closest to bf16) of METHODS; see the module docstring
DEFAULT_GROUP_SIZE = 128  # the W4A16 preset's group size
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


def scheme_kwargs(group_size: int) -> dict[str, Any]:
    """The W4A16 preset by name (so the default rtn recipe is exactly the original one), or
    the same scheme with another group size as an explicit config group."""
    common: dict[str, Any] = {"ignore": IGNORED_LAYERS}
    if group_size == DEFAULT_GROUP_SIZE:
        return {**common, "targets": "Linear", "scheme": SCHEME}
    from compressed_tensors.quantization import preset_name_to_scheme

    scheme = preset_name_to_scheme(SCHEME, ["Linear"])
    assert scheme.weights is not None
    scheme.weights = scheme.weights.model_copy(update={"group_size": group_size})
    return {**common, "config_groups": {"group_0": scheme}}


def skip_pinning_without_accelerator() -> None:
    """llmcompressor 0.14.0.1's AWQ pins its cached activations (IntermediatesCache.pin_memory)
    before every smoothing grid search, unconditionally; on a CPU-only torch pin_memory()
    raises "Cannot access accelerator device when none is available". Pinning only speeds up
    host-to-device copies, so without an accelerator it is skipped."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        return

    def no_pinning(self: Any, batch_index: int, input_names: list[str] | None = None) -> None:
        del self, batch_index, input_names

    IntermediatesCache.pin_memory = no_pinning


def recipe(method: str, group_size: int) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    kwargs = scheme_kwargs(group_size)
    if method == "rtn":
        return [QuantizationModifier(**kwargs)]
    if method == "gptq":
        return [GPTQModifier(**kwargs)]
    if method == "awq":
        from llmcompressor.modifiers.transform.awq import AWQModifier

        skip_pinning_without_accelerator()

        # mappings=None: inferred from the architecture (LlamaForCausalLM -> default_mappings:
        # input_layernorm -> q/k/v, v -> o, post_attention_layernorm -> gate/up, up -> down)
        return [AWQModifier(), QuantizationModifier(**kwargs)]
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def quantize(
    model: Any,
    method: str = "rtn",
    group_size: int = DEFAULT_GROUP_SIZE,
    calibration: Any = None,
    samples: int = 64,
    seq_len: int = 256,
) -> None:
    """Applies the W4A16 recipe in place (llmcompressor's one-shot entry point). CALIBRATION:
    a pre-tokenized datasets.Dataset, needed by gptq and awq (rtn ignores it)."""
    from llmcompressor import oneshot

    if method == "rtn":
        oneshot(model=model, recipe=recipe(method, group_size))
        return
    if calibration is None:
        raise ValueError(f"--method {method} needs calibration data")
    oneshot(
        model=model,
        recipe=recipe(method, group_size),
        dataset=calibration,
        num_calibration_samples=samples,
        max_seq_length=seq_len,
        shuffle_calibration_samples=False,  # the seeded order from engine/calibration.py
    )


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


def run(
    model_dir: Path,
    out: Path,
    method: str = "rtn",
    group_size: int = DEFAULT_GROUP_SIZE,
    samples: int = 64,
    seq_len: int = 256,
) -> None:
    started = time.monotonic()
    log(f"loading {model_dir}")
    model = load(model_dir)
    calibration = None
    if method != "rtn":
        from transformers import AutoTokenizer

        from engine.calibration import calibration_dataset

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        calibration = calibration_dataset(tokenizer, samples, seq_len)
        tokens = sum(len(ids) for ids in calibration["input_ids"])
        log(f"calibration: {len(calibration)} samples, {tokens} tokens (engine/calibration.py)")
    log(
        f"quantizing Linear layers to {SCHEME} with {method}, group size {group_size} "
        f"(ignoring {', '.join(IGNORED_LAYERS)})"
    )
    quantize(model, method, group_size, calibration, samples, seq_len)
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
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="default: gptq")
    parser.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_GROUP_SIZE,
        help=f"input channels per weight scale (default {DEFAULT_GROUP_SIZE})",
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=64,
        help="gptq/awq: calibration samples (default 64)",
    )
    parser.add_argument(
        "--calibration-seq-len",
        type=int,
        default=256,
        help="gptq/awq: tokens per calibration sample (default 256)",
    )
    options = parser.parse_args(argv)
    if not (options.model / "config.json").is_file():
        parser.error(f"{options.model} has no config.json")
    if options.group_size <= 0 or options.calibration_samples <= 0:
        parser.error("--group-size and --calibration-samples must be positive")
    run(options.model, options.out, options.method, options.group_size,
        options.calibration_samples, options.calibration_seq_len)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
