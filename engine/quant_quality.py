"""Quality of quantized checkpoints against their 16-bit reference, measured locally.

    .venv-quant/bin/python -m engine.quant_quality --reference build/models/tiny-llama \\
        --models rtn=build/models/tiny-llama-w4a16 gptq=build/models/tiny-llama-gptq \\
        awq=build/models/tiny-llama-awq [--prompts 32] [--new-tokens 32] [--json]

For the reference (row "bf16") and each NAME=DIR it reports:
- weight size: bytes of the *.safetensors files (MB);
- weight error: ||W_q - W_ref|| / ||W_ref|| over all quantized Linear weights (0 for bf16);
- perplexity on held-out text: every conversation of engine/calibration.heldout_pairs()
  (torch modules in calibration.HELDOUT_MODULES: neither the training corpus nor the
  calibration text), scored on all tokens after the first;
- greedy agreement with the reference on a fixed prompt set: the first --prompts held-out
  questions (seeded order) as chat prompts, --new-tokens greedy tokens each (not stopped at
  <|im_end|>, so every position is compared): the share of positions whose token equals the
  reference's, and the share of prompts whose whole continuation is identical;
- KL: mean per-token KL(reference || model) on the held-out text (more sensitive than
  perplexity, which can move either way by chance);
- train ppl: perplexity on TRAIN_SAMPLE seeded training-corpus conversations (in distribution:
  the tiny model is good there, so degradation shows more than on held-out text).
- weight error is not comparable for awq: AWQ rescales weights (and the norms before them),
  so its weights differ from the reference's by more than the rounding.
Compressed-tensors checkpoints are loaded with transformers, dequantized at load time
(CompressedTensorsConfig(dequantize=True)); all models then run in float32 on CPU, so the
only difference from the reference is the weights. Runs in .venv-quant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.calibration import heldout_pairs, shuffled, training_pairs
from engine.tiny_model import SYSTEM_PROMPT, chat_text

REFERENCE_NAME = "bf16"
TRAIN_SAMPLE = 128  # training-corpus conversations scored (in-distribution perplexity)


@dataclass
class Quality:
    name: str
    path: str
    weight_mb: float
    weight_error: float
    perplexity: float
    kl: float  # mean per-token KL(reference || model) on the held-out text, nats
    train_perplexity: float  # on TRAIN_SAMPLE conversations of the training corpus
    token_match: float  # share of generated positions equal to the reference's
    identical: float  # share of prompts whose whole continuation equals the reference's
    seconds: float


def log(message: str) -> None:
    print(f"[quant_quality] {message}", file=sys.stderr, flush=True)


def weight_mb(model_dir: Path) -> float:
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors")) / 1e6


def is_compressed(model_dir: Path) -> bool:
    config = json.loads((model_dir / "config.json").read_text())
    return "quantization_config" in config


def group_size(model_dir: Path) -> int:
    """The (first) weight group size in a compressed-tensors config.json."""
    config = json.loads((model_dir / "config.json").read_text())["quantization_config"]
    return int(next(iter(config["config_groups"].values()))["weights"]["group_size"])


def load(model_dir: Path) -> Any:
    """A float32 eval-mode model; compressed-tensors weights dequantized while loading."""
    import torch
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    kwargs: dict[str, Any] = {}
    if is_compressed(model_dir):
        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
    return model.eval()


def linear_weights(model: Any) -> dict[str, Any]:
    """Weights of the Linear layers W4A16 quantizes (every decoder Linear, not lm_head)."""
    import torch

    return {
        name: module.weight.detach()
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    }


def weight_error(model: Any, reference: dict[str, Any]) -> float:
    weights = linear_weights(model)
    assert weights.keys() == reference.keys(), "models differ in their Linear layers"
    diff = sum(float((weights[k] - reference[k]).float().pow(2).sum()) for k in weights)
    norm = sum(float(reference[k].float().pow(2).sum()) for k in weights)
    return math.sqrt(diff / norm)


def max_levels_per_group(model: Any, group_size: int) -> int:
    """Most distinct values in any group of GROUP_SIZE input channels of any quantized weight:
    <= 16 for 4-bit weights, far more for 16-bit ones."""
    most = 0
    for weight in linear_weights(model).values():
        groups = weight.reshape(weight.shape[0], -1, group_size)
        for row in groups.reshape(-1, group_size)[:: max(1, groups.shape[0] // 8)]:
            most = max(most, int(row.unique().numel()))
    return most


def score(model: Any, tokenizer: Any, texts: list[str]) -> tuple[float, list[Any]]:
    """Perplexity over TEXTS (all tokens after the first) and the log-probabilities."""
    import torch

    total_nll, total_tokens, log_probs = 0.0, 0, []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
            total_nll -= float(logp.gather(1, ids[0, 1:, None]).sum())
            total_tokens += ids.shape[1] - 1
            log_probs.append(logp)
    return math.exp(total_nll / total_tokens), log_probs


def mean_kl(reference: list[Any], log_probs: list[Any]) -> float:
    """Mean per-token KL(reference || model), nats."""
    total = sum(float((r.exp() * (r - m)).sum()) for r, m in zip(reference, log_probs, strict=True))
    return float(total) / sum(int(r.shape[0]) for r in reference)


def prompts(tokenizer: Any, count: int) -> list[list[int]]:
    questions = [q for q, _ in shuffled(heldout_pairs(), salt=2)[:count]]
    return [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        for q in questions
    ]


def greedy(model: Any, prompt: list[int], new_tokens: int) -> list[int]:
    """NEW_TOKENS argmax tokens (no stop token, so all continuations have the same length)."""
    import torch

    out: list[int] = []
    with torch.no_grad():
        result = model(input_ids=torch.tensor([prompt]), use_cache=True)
        for _ in range(new_tokens):
            token = int(result.logits[0, -1].argmax())
            out.append(token)
            result = model(
                input_ids=torch.tensor([[token]]),
                past_key_values=result.past_key_values,
                use_cache=True,
            )
    return out


def agreement(outputs: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    positions = sum(len(r) for r in reference)
    matches = sum(a == b for out, ref in zip(outputs, reference, strict=True)
                  for a, b in zip(out, ref, strict=True))  # fmt: skip
    identical = sum(out == ref for out, ref in zip(outputs, reference, strict=True))
    return matches / positions, identical / len(reference)


def evaluate(
    reference_dir: Path, models: list[tuple[str, Path]], prompt_count: int, new_tokens: int
) -> list[Quality]:
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    texts = [chat_text(q, a) for q, a in heldout_pairs()]
    train_texts = [chat_text(q, a) for q, a in shuffled(training_pairs(), salt=3)[:TRAIN_SAMPLE]]
    prompt_ids = prompts(tokenizer, prompt_count)
    log(f"held-out: {len(texts)} conversations; {len(prompt_ids)} prompts x {new_tokens} tokens")

    rows: list[Quality] = []
    ref_weights: dict[str, Any] = {}
    ref_outputs: list[list[int]] = []
    ref_log_probs: list[Any] = []
    for name, model_dir in [(REFERENCE_NAME, reference_dir), *models]:
        started = time.monotonic()
        model = load(model_dir)
        if name == REFERENCE_NAME:
            ref_weights = {k: v.clone() for k, v in linear_weights(model).items()}
        error = weight_error(model, ref_weights)
        if name != REFERENCE_NAME:
            size = group_size(model_dir)
            levels = max_levels_per_group(model, size)
            log(f"{name}: at most {levels} distinct weight values per group of {size}")
            if error == 0.0 or levels > 16:
                raise SystemExit(f"{name}: {model_dir} did not load as 4-bit weights")
        outputs = [greedy(model, p, new_tokens) for p in prompt_ids]
        if name == REFERENCE_NAME:
            ref_outputs = outputs
        match, identical = agreement(outputs, ref_outputs) if outputs else (1.0, 1.0)
        ppl, log_probs = score(model, tokenizer, texts)
        if name == REFERENCE_NAME:
            ref_log_probs = log_probs
        rows.append(
            Quality(
                name=name,
                path=str(model_dir),
                weight_mb=weight_mb(model_dir),
                weight_error=error,
                perplexity=ppl,
                kl=mean_kl(ref_log_probs, log_probs),
                train_perplexity=score(model, tokenizer, train_texts)[0],
                token_match=match,
                identical=identical,
                seconds=time.monotonic() - started,
            )
        )
        log(f"{name}: done in {rows[-1].seconds:.0f}s")
    return rows


def table(rows: list[Quality]) -> str:
    header = (
        f"{'model':<6} {'weights MB':>10} {'weight err':>10} {'held-out ppl':>12} "
        f"{'ppl vs bf16':>11} {'KL nats':>8} {'train ppl':>9} {'token match':>11} "
        f"{'identical':>9}"
    )
    lines = [header, "-" * len(header)]
    base = rows[0].perplexity
    for row in rows:
        lines.append(
            f"{row.name:<6} {row.weight_mb:>10.2f} {row.weight_error:>10.4f} "
            f"{row.perplexity:>12.3f} {row.perplexity / base - 1:>+11.2%} {row.kl:>8.4f} "
            f"{row.train_perplexity:>9.3f} "
            f"{row.token_match:>11.1%} {row.identical:>9.1%}"
        )
    return "\n".join(lines)


def parse_model(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.quant_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reference", required=True, type=Path, help="16-bit HF model dir")
    parser.add_argument("--models", nargs="*", default=[], type=parse_model,
                        metavar="NAME=DIR", help="quantized checkpoints to compare")  # fmt: skip
    parser.add_argument("--prompts", type=int, default=32, help="greedy prompts (default 32)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens each (default 32)")
    parser.add_argument("--json", action="store_true", help="print JSON rows, not a table")
    options = parser.parse_args(argv)
    for _, model_dir in [(REFERENCE_NAME, options.reference), *options.models]:
        if not (model_dir / "config.json").is_file():
            parser.error(f"{model_dir} has no config.json")
    rows = evaluate(options.reference, options.models, options.prompts, options.new_tokens)
    print(json.dumps([asdict(r) for r in rows], indent=2) if options.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
