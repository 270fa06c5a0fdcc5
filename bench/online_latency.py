"""Added hit-path latency of the online policy, as a ratio to bare query embedding, in one run.

    .venv/bin/python -m bench.online_latency [--queries 500]

Per query: embed it alone with the serving embedder (ONNX Runtime; what the proxy does on an
exact-tier miss), then time what `verify.online` adds to a lookup: the runner-up margin over
the top-4 candidates and `Explorer.decide` (learned score, boundary, per-entry evidence) for a
tenant whose window is full (20,000 verdicts, scorer fitted, 20,000 entries with evidence).
The refit itself is timed too: it runs in a thread every 200 verdicts, never on the path.
Medians and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.loader import load_embedder
from cache_proxy.explore import (
    ENTRIES_KEPT,
    VERDICTS_KEPT,
    Explorer,
    fit_window,
    online_settings,
)
from cache_proxy.metrics import Metrics
from cache_proxy.pipeline import _runner_up
from cache_proxy.store import OnlineVerdict
from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.judges import Judge
from cache_proxy.verify.policy import OnlineVerifyPolicy

QUERY = "How do I reset the password of my home router to the factory default?"


async def _full_explorer(config: OnlineVerifyPolicy, draws: random.Random) -> Explorer:
    """A tenant with a full window: the first refit runs (in its thread) once filled."""
    explorer = Explorer(_no_judge, Metrics(), seed=1)
    for i in range(max(VERDICTS_KEPT, ENTRIES_KEPT)):
        similarity, margin = 0.8 + 0.2 * draws.random(), 0.1 * draws.random()
        right = draws.random() < 0.5 + 4 * margin
        explorer.record("bench", OnlineVerdict(similarity, right, f"entry-{i}", margin), config)
    await explorer.wait_idle()
    return explorer


def _no_judge(config: OnlineVerifyPolicy) -> Judge:
    raise AssertionError("nothing is judged in this benchmark")


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):.4f} ms, p95 {p95:.4f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    draws = random.Random(0)
    config = OnlineVerifyPolicy(enabled=True)
    embedder = load_embedder(EmbeddingSettings())
    embedder.encode(["warm-up"])
    explorer = await _full_explorer(config, draws)
    window, fits = explorer.window("bench"), []
    for _ in range(5):
        started = time.perf_counter()
        fit_window(window, online_settings(config))
        fits.append((time.perf_counter() - started) * 1000)
    fit_ms = statistics.median(fits)
    embed, online = [], []
    for i in range(args.queries):
        text = f"{QUERY} ({i})"
        started = time.perf_counter()
        embedder.encode([text])
        embed.append((time.perf_counter() - started) * 1000)
        candidates = [Candidate(j, "cached", 0.95 - 0.02 * j) for j in range(4)]
        started = time.perf_counter()
        margin = candidates[0].similarity - _runner_up(candidates, candidates[0])
        explorer.decide("bench", config, candidates[0].similarity, margin, f"entry-{i}")
        online.append((time.perf_counter() - started) * 1000)
    ratio = statistics.median(online) / statistics.median(embed)
    report = explorer.report("bench", config)
    print(f"{args.queries} queries; window {report['verdicts_in_window']} verdicts, "
          f"scorer fitted: {report['scorer_fitted']}")  # fmt: skip
    print(f"query embedding (ONNX, one query):  {_ms(embed)}")
    print(f"online policy (margin + decide):    {_ms(online)}  -> {ratio:.4f}x embedding")
    print(f"refit on the window, boundary included (a thread, every 200): median of 5 "
          f"{fit_ms:.1f} ms")  # fmt: skip
    await explorer.aclose()


if __name__ == "__main__":
    asyncio.run(main())
