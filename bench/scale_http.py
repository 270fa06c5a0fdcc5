"""HTTP part of bench.scale: the real proxy, loaded with N entries from a snapshot.

The snapshot is the bench-only bulk path: real entries (prompts stored through the proxy,
with their real vectors and partition) plus synthetic ones in the same partition (random unit
vectors; bench/redis_bulk.synthetic_entries), written with the proxy's own snapshot writer.
The hit path measured is the real one: HTTP, auth, parse, ONNX MiniLM, the index thread's
search, the decision and the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from tqdm import tqdm

from bench.embed_vs_hit import percentile
from bench.lag import HealthzProbe, lag_summary
from bench.redis_bulk import synthetic_entries
from bench.servers import free_port, running_proxy_process
from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.loader import load_embedder
from cache_proxy.store.snapshot import Record, read_snapshot, write_snapshot

TENANT, KEY = "bench", "sk-bench"
CONCURRENCY = (1, 8, 32)


@dataclass(frozen=True)
class HttpResult:
    size: int
    embed_ms: tuple[float, float]  # bare single-query embedding p50, p99
    hit_ms: tuple[float, float]  # HTTP semantic hit p50, p99
    exact_ms: tuple[float, float]  # HTTP exact hit p50, p99 (no embedding: the HTTP floor)
    hits_per_s: dict[int, float]  # by concurrency
    embed_batched_per_s: float
    load_s: float
    load_lag_ms: tuple[float, float]  # /healthz p99, max while loading and rebuilding
    rss_mb: float
    index_kind: str


def variant(text: str) -> str:
    return text.replace("?", "??")  # same meaning, other bytes: the exact tier misses


def ask_body(text: str) -> dict[str, object]:
    return {"model": "tiny", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}


def proxy_config(
    tmp: Path, upstream: str, snapshot: Path, max_entries: int, ivf_min_entries: int = 20_000
) -> Path:
    config = {
        "upstream": {"url": upstream},
        "tenants": {TENANT: {"api_keys": [KEY], "threshold": 0.9}},
        "cache": {"max_entries": max_entries, "snapshot_path": str(snapshot),
                  "snapshot_interval_s": 10**6, "ivf_min_entries": ivf_min_entries},
    }  # fmt: skip
    path = tmp / f"proxy-{max_entries}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def seed_real_entries(tmp: Path, upstream: str, texts: list[str]) -> tuple[str, list[Record]]:
    """Stores `texts` through the proxy (misses), returns (space id, their snapshot records)."""
    snapshot = tmp / "seed.snapshot"
    config = proxy_config(tmp, upstream, snapshot, 10_000)
    with (
        running_proxy_process(tmp / "seed.log", ["--config", str(config)]) as (url, _),
        httpx.Client(base_url=url, timeout=120, headers={"authorization": f"Bearer {KEY}"}) as c,
    ):
        for text in tqdm(texts, desc="storing real entries", mininterval=5):
            c.post("/v1/chat/completions", json=ask_body(text)).raise_for_status()
    space = yaml.safe_load(snapshot.open("rb").readline())["space"]
    return space, read_snapshot(snapshot, space, 384)


def write_scaled_snapshot(path: Path, space: str, real: list[Record], size: int) -> None:
    partition = real[0][1].partition
    synthetic = synthetic_entries(max(0, size - len(real)), 384, seed=size, partition=partition)
    records = itertools.chain(((TENANT, e) for e in synthetic), real)  # real ones most recent
    write_snapshot(path, space, tqdm(records, total=size, desc=f"snapshot {size:,}", mininterval=5))


@contextmanager
def loaded_proxy(
    tmp: Path, upstream: str, space: str, real: list[Record], size: int, ivf_min_entries: int
) -> Iterator[tuple[str, float, tuple[float, float], float, str]]:
    """The proxy with `size` entries, its index settled. Yields (url, load s, /healthz lag
    while loading and rebuilding, RSS MB, index kind)."""
    snapshot = tmp / f"scale-{size}.snapshot"
    write_scaled_snapshot(snapshot, space, real, size)
    config = proxy_config(tmp, upstream, snapshot, size, ivf_min_entries)
    port = free_port()
    started = time.perf_counter()
    with HealthzProbe(f"http://127.0.0.1:{port}/healthz") as probe:
        log, serve = tmp / f"scale-{size}.log", ["--config", str(config)]
        with running_proxy_process(log, serve, port=port, ready_timeout_s=1800) as (url, proc):
            kind = wait_index_settled(url, size)
            load_s, lag = time.perf_counter() - started, lag_summary(probe.take())
            snapshot.unlink()  # the proxy writes its own at shutdown; the disk is not infinite
            yield url, load_s, lag, rss_mb(proc.pid), kind


def wait_index_settled(url: str, size: int, timeout_s: float = 1800) -> str:
    """Waits until every entry is indexed and no rebuild runs; returns the index kind."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        values = {k: _gauge(text, k) for k in ("flat", "ivf", "rebuilding")}
        if values["flat"] + values["ivf"] >= size and not values["rebuilding"]:
            return "ivf" if values["ivf"] else "flat"
        time.sleep(0.5)
    raise RuntimeError(f"the index did not settle within {timeout_s:.0f}s")


def _gauge(metrics_text: str, which: str) -> int:
    prefix = (
        f'cache_proxy_index_rebuilding{{tenant="{TENANT}"}}'
        if which == "rebuilding"
        else f'cache_proxy_index_vectors{{kind="{which}",tenant="{TENANT}"}}'
    )
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return int(float(line.split()[-1]))
    return 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def latencies(
    url: str, texts: list[str], embedder: Embedder
) -> tuple[list[float], list[float], list[float]]:
    """Bare embedding and HTTP semantic hit, interleaved query by query (same machine load)."""
    embed, hit, exact = [], [], []
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for text in tqdm(texts, desc="latency", mininterval=5):
            started = time.perf_counter()
            embedder.encode([variant(text)])
            embed.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()  # the HTTP floor: an exact hit embeds nothing
            client.post("/v1/chat/completions", json=ask_body(text)).raise_for_status()
            exact.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=ask_body(variant(text)))
            hit.append(1000 * (time.perf_counter() - started))
            if response.headers.get("x-cache-match") != "semantic":
                raise RuntimeError(f"expected a semantic hit, got {response.status_code} "
                                   f"{response.headers.get('x-cache-match')!r}")  # fmt: skip
    return embed, hit, exact


async def hits_per_second(url: str, texts: list[str], concurrency: int, total: int) -> float:
    """Semantic hits/s with `concurrency` clients; any other outcome fails the run."""
    queue = itertools.cycle([variant(t) for t in texts])
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers, limits=limits) as c:
        remaining = [total]

        async def client() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                r = await c.post("/v1/chat/completions", json=ask_body(next(queue)))
                if r.headers.get("x-cache-match") != "semantic":
                    raise RuntimeError(f"expected a semantic hit, got {r.status_code}")

        await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up round
        remaining[0] = total
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


def hey_rate(url: str, text: str, concurrency: int, total: int, tmp: Path) -> float:
    """Semantic hits/s with `hey` (Go) as the load generator: a Python client would take a
    good part of the two cores from the proxy. Every response must be a semantic hit (the
    proxy's own counter says so); hey sends one body, so the 32 texts of a batch are alike."""
    body = tmp / "hey-body.json"
    body.write_text(json.dumps(ask_body(variant(text))))
    before = _semantic_hits(url)
    command = ["hey", "-n", str(total), "-c", str(concurrency), "-m", "POST",
               "-T", "application/json", "-H", f"Authorization: Bearer {KEY}",
               "-D", str(body), f"{url}/v1/chat/completions"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    served = _semantic_hits(url) - before
    if served != total:
        raise RuntimeError(f"hey: {served} of {total} requests were semantic hits")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"hey printed no rate: {out[-500:]}")
    return float(match.group(1))


def _semantic_hits(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    prefix = f'cache_proxy_requests_total{{outcome="hit_semantic",tenant="{TENANT}"}}'
    return sum(
        int(float(line.split()[-1])) for line in text.splitlines() if line.startswith(prefix)
    )


def batched_embed_rate(embedder: Embedder, texts: list[str], seconds: float = 3.0) -> float:
    """Texts/s of the embedder at batch 32 (the proxy's max_batch_size), proxy idle."""
    batch = [variant(t) for t in (texts * 32)[:32]]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embedder.encode(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def _rate(url: str, texts: list[str], concurrency: int, tmp: Path) -> float:
    total = concurrency * max(20, 300 // concurrency)  # hey sends n // c per client
    if shutil.which("hey"):
        hey_rate(url, texts[0], concurrency, concurrency, tmp)  # warm-up
        return hey_rate(url, texts[0], concurrency, total, tmp)
    return asyncio.run(hits_per_second(url, texts, concurrency, total))


def measure_http(
    tmp: Path,
    upstream: str,
    space: str,
    real: list[Record],
    size: int,
    queries: int,
    ivf_min_entries: int,
) -> HttpResult:
    texts = [r[1].query_text for r in real][:queries]
    embedder = load_embedder(EmbeddingSettings())  # the proxy's default: ONNX Runtime
    embedder.encode(["warm-up"])
    proxy = loaded_proxy(tmp, upstream, space, real, size, ivf_min_entries)
    with proxy as (url, load_s, lag, rss, kind):
        embed, hit, exact = latencies(url, texts, embedder)
        rates = {c: _rate(url, texts, c, tmp) for c in CONCURRENCY}
        rate = batched_embed_rate(embedder, texts)
    return HttpResult(
        size,
        (statistics.median(embed), percentile(embed, 0.99)),
        (statistics.median(hit), percentile(hit, 0.99)),
        (statistics.median(exact), percentile(exact, 0.99)),
        rates,
        rate,
        load_s,
        lag,
        rss,
        kind,
    )
