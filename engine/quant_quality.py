"""Quality of quantized checkpoints against their 16-bit reference, measured locally.

    .venv-quant/bin/python -m engine.quant_quality --reference build/models/tiny-llama \\
        --models rtn=build/models/tiny-llama-w4a16 gptq=build/models/tiny-llama-gptq \\
        awq=build/models/tiny-llama-awq [--prompts 32] [--new-tokens 32] [--bootstrap 1000] \\
        [--seed 0] [--json]

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
- train KL: the same KL on those training conversations (where the model is confident, so
  rounding errors move its distributions more than on held-out text).
Uncertainty: a seeded bootstrap (--bootstrap resamples, default 1000) resamples conversations
(held-out and training, separately) and prompts with replacement; the 95% percentile interval
of each statistic is printed next to it. The same resamples are used for every model, so the
difference between two methods (KL, train KL, token match) gets a *paired* interval: when it
excludes 0 (marked *), one method is measurably closer to bf16 on this text, not by chance of
which conversations were picked. (It does not cover the randomness of quantization itself,
e.g. another calibration set.)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.calibration import heldout_pairs, shuffled, training_pairs
from engine.tiny_model import SYSTEM_PROMPT, chat_text

REFERENCE_NAME = "bf16"
TRAIN_SAMPLE = 128  # training-corpus conversations scored (in-distribution perplexity)
BOOTSTRAP = 1000  # resamples
CONFIDENCE = 0.95
# Paired differences reported between quantized models (this - other), by metric.
DIFFERENCE_METRICS = ("kl", "train_kl", "token_match")

Interval = tuple[float, float]  # (low, high) percentile bootstrap interval


@dataclass
class Difference:
    """A paired difference of one metric between two models: this row's minus OTHER's."""

    metric: str
    other: str
    value: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


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
    perplexity_change: float = 0.0  # perplexity / the reference's - 1 (held-out text)
    train_kl: float = 0.0  # mean per-token KL(reference || model) on the training sample
    # CONFIDENCE bootstrap intervals (low, high) of the statistics above
    kl_ci: Interval = (0.0, 0.0)
    perplexity_change_ci: Interval = (0.0, 0.0)
    train_perplexity_ci: Interval = (0.0, 0.0)
    train_kl_ci: Interval = (0.0, 0.0)
    token_match_ci: Interval = (0.0, 0.0)
    identical_ci: Interval = (0.0, 0.0)
    # paired differences to the other quantized models (this - other), DIFFERENCE_METRICS
    differences: list[Difference] = field(default_factory=list)


@dataclass
class Units:
    """One model's raw numbers per bootstrap unit (conversation or prompt), so any resample's
    statistics are sums over the resampled units."""

    heldout_nll: NDArray[np.float64]  # summed over each held-out conversation's tokens
    heldout_kl: NDArray[np.float64]
    train_nll: NDArray[np.float64]  # summed over each training conversation's tokens
    train_kl: NDArray[np.float64]
    matches: NDArray[np.float64]  # per prompt: positions equal to the reference's
    identical: NDArray[np.float64]  # per prompt: 1 if the whole continuation is equal


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


def score(model: Any, tokenizer: Any, texts: list[str]) -> tuple[list[float], list[Any]]:
    """Per text: the negative log-likelihood summed over all tokens after the first, and the
    log-probabilities of those positions."""
    import torch

    nll, log_probs = [], []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
            nll.append(-float(logp.gather(1, ids[0, 1:, None]).sum()))
            log_probs.append(logp)
    return nll, log_probs


def kl_sums(reference: list[Any], log_probs: list[Any]) -> list[float]:
    """Per text: KL(reference || model) summed over its positions, nats."""
    return [float((r.exp() * (r - m)).sum()) for r, m in zip(reference, log_probs, strict=True)]


def perplexity(nll: NDArray[np.float64], tokens: NDArray[np.float64]) -> float:
    return math.exp(float(nll.sum() / tokens.sum()))


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


def agreement(
    outputs: list[list[int]], reference: list[list[int]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per prompt: positions whose token equals the reference's, and 1 if all of them do."""
    matches = [sum(a == b for a, b in zip(out, ref, strict=True))
               for out, ref in zip(outputs, reference, strict=True)]  # fmt: skip
    identical = [float(out == ref) for out, ref in zip(outputs, reference, strict=True)]
    return np.array(matches, dtype=np.float64), np.array(identical, dtype=np.float64)


def share(counts: NDArray[np.float64], total: float) -> float:
    """COUNTS summed over TOTAL (1.0 when there is nothing to compare: no prompts)."""
    return float(counts.sum()) / total if total else 1.0


class Bootstrap:
    """Seeded resamples of unit indices, the same for every model (hence paired differences):
    one index matrix per kind of unit (held-out conversations, training ones, prompts)."""

    def __init__(self, resamples: int, seed: int, heldout: int, train: int, prompts: int):
        rng = np.random.default_rng(seed)
        self.heldout = rng.integers(0, heldout, size=(resamples, heldout))
        self.train = rng.integers(0, train, size=(resamples, train))
        self.prompts = rng.integers(0, max(1, prompts), size=(resamples, prompts))

    def statistics(
        self,
        units: Units,
        reference: Units,
        heldout_tokens: NDArray[np.float64],
        train_tokens: NDArray[np.float64],
        new_tokens: int,
    ) -> dict[str, NDArray[np.float64]]:
        """Each metric's value on every resample (share metrics are 1.0 without prompts)."""
        heldout_count = heldout_tokens[self.heldout].sum(axis=1)
        train_count = train_tokens[self.train].sum(axis=1)
        nll_change = (units.heldout_nll - reference.heldout_nll)[self.heldout].sum(axis=1)
        prompt_count = self.prompts.shape[1]
        positions = prompt_count * new_tokens
        ones = np.ones(self.prompts.shape[0])
        matches = units.matches[self.prompts].sum(axis=1)
        identical = units.identical[self.prompts].sum(axis=1)
        return {
            "kl": units.heldout_kl[self.heldout].sum(axis=1) / heldout_count,
            "perplexity_change": np.expm1(nll_change / heldout_count),
            "train_perplexity": np.exp(units.train_nll[self.train].sum(axis=1) / train_count),
            "train_kl": units.train_kl[self.train].sum(axis=1) / train_count,
            "token_match": matches / positions if positions else ones,
            "identical": identical / prompt_count if prompt_count else ones,
        }


def interval(samples: NDArray[np.float64]) -> Interval:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def evaluate(
    reference_dir: Path,
    models: list[tuple[str, Path]],
    prompt_count: int,
    new_tokens: int,
    resamples: int = BOOTSTRAP,
    seed: int = 0,
) -> list[Quality]:
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    texts = [chat_text(q, a) for q, a in heldout_pairs()]
    train_texts = [chat_text(q, a) for q, a in shuffled(training_pairs(), salt=3)[:TRAIN_SAMPLE]]
    prompt_ids = prompts(tokenizer, prompt_count)
    log(f"held-out: {len(texts)} conversations; {len(prompt_ids)} prompts x {new_tokens} tokens")

    def token_counts(batch: list[str]) -> NDArray[np.float64]:
        counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) - 1 for t in batch]
        return np.array(counts, dtype=np.float64)

    heldout_tokens, train_tokens = token_counts(texts), token_counts(train_texts)
    bootstrap = Bootstrap(resamples, seed, len(texts), len(train_texts), len(prompt_ids))

    rows: list[Quality] = []
    units: dict[str, Units] = {}
    samples: dict[str, dict[str, NDArray[np.float64]]] = {}
    ref_weights: dict[str, Any] = {}
    ref_outputs: list[list[int]] = []
    ref_log_probs: list[Any] = []
    ref_train_log_probs: list[Any] = []
    for name, model_dir in [(REFERENCE_NAME, reference_dir), *models]:
        if name in units:
            raise SystemExit(f"model name {name!r} given twice")
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
        matches, identical = agreement(outputs, ref_outputs)
        nll, log_probs = score(model, tokenizer, texts)
        train_nll, train_log_probs = score(model, tokenizer, train_texts)
        if name == REFERENCE_NAME:
            ref_log_probs, ref_train_log_probs = log_probs, train_log_probs
        units[name] = Units(
            heldout_nll=np.array(nll),
            heldout_kl=np.array(kl_sums(ref_log_probs, log_probs)),
            train_nll=np.array(train_nll),
            train_kl=np.array(kl_sums(ref_train_log_probs, train_log_probs)),
            matches=matches,
            identical=identical,
        )
        del log_probs, train_log_probs
        unit, ref = units[name], units[REFERENCE_NAME]
        samples[name] = bootstrap.statistics(unit, ref, heldout_tokens, train_tokens, new_tokens)
        ppl = perplexity(unit.heldout_nll, heldout_tokens)
        rows.append(
            Quality(
                name=name,
                path=str(model_dir),
                weight_mb=weight_mb(model_dir),
                weight_error=error,
                perplexity=ppl,
                kl=float(unit.heldout_kl.sum() / heldout_tokens.sum()),
                train_perplexity=perplexity(unit.train_nll, train_tokens),
                token_match=share(matches, len(prompt_ids) * new_tokens),
                identical=share(identical, len(prompt_ids)),
                seconds=time.monotonic() - started,
                perplexity_change=ppl / perplexity(ref.heldout_nll, heldout_tokens) - 1,
                train_kl=float(unit.train_kl.sum() / train_tokens.sum()),
            )
        )
        set_intervals(rows[-1], samples[name])
        log(f"{name}: done in {rows[-1].seconds:.0f}s")
    add_differences(rows, samples)
    return rows


def set_intervals(row: Quality, samples: dict[str, NDArray[np.float64]]) -> None:
    """ROW's METRIC_ci fields from the bootstrap SAMPLES of each metric."""
    row.kl_ci = interval(samples["kl"])
    row.perplexity_change_ci = interval(samples["perplexity_change"])
    row.train_perplexity_ci = interval(samples["train_perplexity"])
    row.train_kl_ci = interval(samples["train_kl"])
    row.token_match_ci = interval(samples["token_match"])
    row.identical_ci = interval(samples["identical"])


def add_differences(
    rows: list[Quality], samples: dict[str, dict[str, NDArray[np.float64]]]
) -> None:
    """Paired bootstrap differences between every two quantized models (not the reference)."""
    quantized = [row for row in rows if row.name != REFERENCE_NAME]
    for row in quantized:
        for other in quantized:
            if other is row:
                continue
            for metric in DIFFERENCE_METRICS:
                low, high = interval(samples[row.name][metric] - samples[other.name][metric])
                value = float(getattr(row, metric)) - float(getattr(other, metric))
                row.differences.append(Difference(metric, other.name, value, low, high))


def with_interval(value: float, ci: Interval, spec: str) -> str:
    return f"{value:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


INTERVAL_COLUMNS = [  # (title, Quality attribute, format spec, width)
    ("KL nats", "kl", ".4f", 23),
    ("ppl vs bf16", "perplexity_change", "+.2%", 23),
    ("train ppl", "train_perplexity", ".3f", 20),
    ("train KL", "train_kl", ".4f", 23),
    ("token match", "token_match", ".1%", 23),
]
DIFFERENCE_FORMATS = {"kl": ("KL", "+.4f"), "train_kl": ("train KL", "+.4f"),
                      "token_match": ("token match", "+.1%")}  # fmt: skip


def table(rows: list[Quality], resamples: int = BOOTSTRAP, seed: int = 0) -> str:
    """Point estimates; then their bootstrap intervals; then paired differences."""
    name = max(len("model"), *(len(row.name) for row in rows))  # name column width
    header = (
        f"{'model':<{name}} {'weights MB':>10} {'weight err':>10} {'held-out ppl':>12} "
        f"{'ppl vs bf16':>11} {'KL nats':>8} {'train ppl':>9} {'train KL':>8} "
        f"{'token match':>11} {'identical':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.name:<{name}} {row.weight_mb:>10.2f} {row.weight_error:>10.4f} "
            f"{row.perplexity:>12.3f} {row.perplexity_change:>+11.2%} {row.kl:>8.4f} "
            f"{row.train_perplexity:>9.3f} {row.train_kl:>8.4f} "
            f"{row.token_match:>11.1%} {row.identical:>9.1%}"
        )
    percent = f"{CONFIDENCE:.0%}"
    lines += ["", f"{percent} bootstrap intervals ({resamples} resamples of conversations and "
              f"prompts, seed {seed}):"]  # fmt: skip
    header = f"{'model':<{name}}" + "".join(f"  {t:>{w}}" for t, _, _, w in INTERVAL_COLUMNS)
    lines += [header, "-" * len(header)]
    for row in rows:
        cells = [
            f"  {with_interval(getattr(row, attr), getattr(row, attr + '_ci'), spec):>{width}}"
            for _, attr, spec, width in INTERVAL_COLUMNS
        ]
        lines.append(f"{row.name:<{name}}" + "".join(cells))
    seen: set[str] = set()
    differences: list[str] = []
    for row in rows:  # each pair once: a row against the rows above it
        for other in dict.fromkeys(d.other for d in row.differences if d.other in seen):
            cells = []
            for d in row.differences:
                if d.other == other:
                    title, spec = DIFFERENCE_FORMATS[d.metric]
                    mark = "*" if d.significant else " "
                    cells.append(f"{title} {with_interval(d.value, (d.low, d.high), spec)}{mark}")
            pair = f"{row.name} - {other}"
            differences.append(f"{pair:<{2 * name + 3}}  {'  '.join(cells)}".rstrip())
        seen.add(row.name)
    if differences:
        lines += ["", f"paired differences (row - other, {percent} bootstrap interval, "
                  "* = excludes 0; lower KL and higher match are closer to bf16):"]  # fmt: skip
        lines += differences
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
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP,
                        help=f"bootstrap resamples (default {BOOTSTRAP})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON rows, not a table")
    options = parser.parse_args(argv)
    for _, model_dir in [(REFERENCE_NAME, options.reference), *options.models]:
        if not (model_dir / "config.json").is_file():
            parser.error(f"{model_dir} has no config.json")
    if options.bootstrap < 1 or options.prompts < 0 or options.new_tokens < 0:
        parser.error("--bootstrap must be positive, --prompts and --new-tokens not negative")
    rows = evaluate(options.reference, options.models, options.prompts, options.new_tokens,
                    options.bootstrap, options.seed)  # fmt: skip
    if options.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(table(rows, options.bootstrap, options.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
