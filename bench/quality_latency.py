"""Added hit latency of guards and verifiers, as a ratio to bare query embedding, in one run.

    .venv/bin/python -m bench.quality_latency [--pairs FILE] [--queries 200]
        [--features build/verifiers/qqp-features] [--crossencoder build/verifiers/qqp-crossencoder]

Per query: embed it alone with the serving embedder (ONNX Runtime by default; what the proxy does
on a miss of the exact tier), then time HitDecider.decide on its top-4 candidates with (a)
threshold only, (b) guards, (c) guards + feature verifier, (d) guards + cross-encoder as served
(its ONNX export), (e) the same cross-encoder on torch. Medians and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.loader import load_embedder
from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.candidate import Candidate, Verifier
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import GuardPolicy, VerifierPolicy, VerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation.pairs import load_pairs
from cache_tools.verifiers.crossencoder import CrossEncoderVerifier

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/qqp_pairs_dev.jsonl.gz"
NO_GUARDS = GuardPolicy(numbers=False, negation=False, antonyms=False)


def _timed(fn: Callable[[], object], repeats: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) * 1000 / repeats


def _workload(pairs_path: Path, queries: int) -> list[tuple[str, list[Candidate]]]:
    pairs = load_pairs(pairs_path)[: queries * 4]
    work = []
    for i in range(queries):
        group = pairs[i * 4 : i * 4 + 4]
        # Worst case for the verifier: every one of the top-4 is above threshold.
        cands = [Candidate(j, p.text_a, 0.95 - j * 0.01) for j, p in enumerate(group)]
        work.append((group[0].text_b, cands))
    return work


@functools.cache  # HitDecider asks its loader on every decision; load once, like the server
def _torch_cross_encoder(path: str) -> Verifier:
    return CrossEncoderVerifier(path)


def _policies(args: argparse.Namespace) -> dict[str, tuple[VerifyPolicy, HitDecider]]:
    served = HitDecider(VerifierRegistry().load)
    policies = {
        "threshold only": (VerifyPolicy(guards=NO_GUARDS), served),
        "guards (defaults)": (VerifyPolicy(), served),
    }
    for name, path in (("features", args.features), ("cross-encoder", args.crossencoder)):
        if path and (Path(path) / MARKER).is_file():
            verifier = VerifierPolicy(enabled=True, model_path=path, min_score=0.0)
            policies[f"guards + {name} verifier"] = (VerifyPolicy(verifier=verifier), served)
            if name == "cross-encoder":
                on_torch = HitDecider(_torch_cross_encoder)
                policies["guards + cross-encoder on torch"] = (
                    VerifyPolicy(verifier=verifier),
                    on_torch,
                )
    return policies


def _summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=Path, default=SHARED)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--features", default="build/verifiers/qqp-features")
    parser.add_argument("--crossencoder", default="build/verifiers/qqp-crossencoder")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = load_embedder(EmbeddingSettings())
    work = _workload(args.pairs, args.queries)
    policies = _policies(args)
    for policy, decider in policies.values():  # load verifiers and warm up outside the timing
        decider.decide(work[0][0], work[0][1], 0.5, policy)
    embed_ms = [_timed(partial(embedder.encode, [q])) for q, _ in work]
    base, base95 = _summary(embed_ms)
    print(f"{len(work)} queries, 4 candidates each, all above threshold (worst case)")
    print(f"{'step':<40} {'median ms':>10} {'p95 ms':>8} {'x embed (median)':>17}")
    print(f"{'embed query (served MiniLM)':<40} {base:>10.3f} {base95:>8.3f} {1.0:>17.3f}")
    for name, (policy, decider) in policies.items():
        times = [_timed(partial(decider.decide, q, c, 0.5, policy)) for q, c in work]
        median, p95 = _summary(times)
        print(f"{'decide: ' + name:<40} {median:>10.3f} {p95:>8.3f} {median / base:>17.3f}")


if __name__ == "__main__":
    main()
