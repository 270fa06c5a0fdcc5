"""Hit-path latency through HTTP vs bare embedding time, measured in one run.

    python -m bench.embed_vs_hit [--engine URL] [--queries 300]

Starts `cache-proxy serve` (uvicorn, real MiniLM, real FAISS). The cache is filled through the
proxy from `--engine` (a running vLLM, e.g. from `make run`) or, without it, from a canned-answer
upstream started here: the hit path under test never reaches the upstream either way.
The three series are interleaved query by query so they see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import yaml
from tqdm import tqdm

from bench.canned_upstream import canned_upstream
from bench.servers import running_proxy
from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.loader import load_embedder

TORCH = EmbeddingSettings(backend="torch")

TOPICS = ["reset a router", "bake bread", "learn Rust", "fix a bike chain", "plant tomatoes",
          "write a cover letter", "tune a guitar", "clean a laptop fan", "brew coffee",
          "train a puppy", "start running", "save for retirement"]  # fmt: skip
SERIES = {"embed": "bare embedding (1 query)", "torch": "  same, torch backend (ref.)",
          "exact": "HTTP exact hit", "semantic": "HTTP semantic hit"}  # fmt: skip


def prompts(n: int) -> list[str]:
    return [f"Question {i}: what is the best way to {TOPICS[i % len(TOPICS)]}?" for i in range(n)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_ms(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return 1000 * (time.perf_counter() - started)


def ask(client: httpx.Client, text: str) -> httpx.Response:
    body = {"model": "tiny", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return response


def expect_hit(client: httpx.Client, text: str, match: str) -> None:
    got = ask(client, text).headers.get("x-cache-match")
    if got != match:
        raise RuntimeError(f"expected a {match} hit, got {got!r}")


def measure(client: httpx.Client, texts: list[str], variants: list[str]) -> dict[str, list[float]]:
    # The proxy's own embedder (default settings: ONNX Runtime), and torch for reference.
    embedder, reference = load_embedder(EmbeddingSettings()), load_embedder(TORCH)
    embedder.encode(["warm-up"])
    reference.encode(["warm-up"])
    series: dict[str, list[float]] = {name: [] for name in SERIES}
    for text, variant in tqdm(list(zip(texts, variants, strict=True)), desc="measuring"):
        series["embed"].append(time_ms(partial(embedder.encode, [variant])))
        series["torch"].append(time_ms(partial(reference.encode, [variant])))
        series["exact"].append(time_ms(partial(expect_hit, client, text, "exact")))
        series["semantic"].append(time_ms(partial(expect_hit, client, variant, "semantic")))
    return series


def report(series: dict[str, list[float]], filled_by: str) -> None:
    embed_p50 = statistics.median(series["embed"])
    print(f"cache filled from: {filled_by}; {len(series['embed'])} queries per series")
    print(f"{'series':<28}{'p50 ms':>10}{'p99 ms':>10}{'p50 / embed p50':>18}")
    for key, name in SERIES.items():
        p50, p99 = statistics.median(series[key]), percentile(series[key], 0.99)
        print(f"{name:<28}{p50:>10.2f}{p99:>10.2f}{p50 / embed_p50:>18.2f}")


def run(engine: str | None, n: int) -> None:
    texts = prompts(n)
    # Same meaning, different bytes: the exact tier misses, the semantic tier must answer.
    variants = [t.replace("?", "??") for t in texts]
    with tempfile.TemporaryDirectory() as tmp, canned_upstream(engine) as (engine_url, label):
        config = {"upstream": {"url": engine_url},
                  "tenants": {"bench": {"api_keys": ["sk-bench"], "threshold": 0.9}}}  # fmt: skip
        config_path = Path(tmp) / "proxy.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = Path(tmp) / "proxy.log"
        try:
            with (
                running_proxy(log_path, ["--config", str(config_path)]) as url,
                httpx.Client(
                    base_url=url, timeout=120, headers={"authorization": "Bearer sk-bench"}
                ) as client,
            ):
                for text in tqdm(texts, desc="filling cache"):
                    ask(client, text)
                series = measure(client, texts, variants)
        except Exception:
            print(log_path.read_text()[-3000:], file=sys.stderr)
            raise
    report(series, label)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", help="a running OpenAI-compatible engine, e.g. vLLM")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    run(args.engine, args.queries)


if __name__ == "__main__":
    main()
