"""The Redis shared tier, measured in one run: replication delay between two replicas, the
hit path against the embedded backend, the mirror rebuild, and memory per entry.

    python -m bench.shared_cache [--queries 300] [--rebuild-entries 100000]

Starts a real redis-server (tests/support/redis_server.py: AOF, fsync on every write), a
canned-answer upstream, and three `cache-proxy serve` processes (real MiniLM, real FAISS):
A and B with cache.backend redis on one key prefix, C with cache.backend embedded.

1. For each of --queries distinct prompts: store through A (a MISS), then poll B with the
   same prompt under `Cache-Control: no-store` until it answers HIT with A's entry. A MISS on
   B stores nothing, so B's HIT can only come from A's entry through Redis.
2. C is filled with the same prompts; exact and semantic (paraphrase) hits then go to B
   (redis) and C (embedded) query by query, in alternating order, so both see the same load.
3. The proxies are stopped; --rebuild-entries synthetic entries are loaded into Redis by the
   backend's own PUT script, pipelined (bench/redis_bulk.py), and a fresh RedisBackend in
   this process rebuilds its mirror from them (ChangeLogFollower.rebuild).
4. Memory per entry: Redis `used_memory` around the load, and this process's RSS around the
   rebuild (then Python's share of it by tracemalloc, in a second rebuild).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from tqdm import tqdm

from bench.canned_upstream import canned_upstream
from bench.redis_bulk import bulk_put, synthetic_entries
from bench.servers import running_proxy
from cache_proxy.config import CacheSettings, RedisSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store.backend import SharedUnavailable
from cache_proxy.store.identity import CacheSpace
from cache_proxy.store.redis_backend import RedisBackend
from tests.support.redis_server import RedisServer

PREFIX = "bench:"
TENANT, REBUILD_TENANT, DIMENSION = "bench", "rebuild", 384
AUTH = {"authorization": "Bearer sk-bench"}
NO_STORE = {"cache-control": "no-store"}
POLL_S = 0.001  # between two polls of B
POLL_DEADLINE_S = 5.0  # per prompt: B must hit by then
TOPICS = ["reset a router", "bake bread", "learn Rust", "fix a bike chain", "plant tomatoes",
          "write a cover letter", "tune a guitar", "clean a laptop fan", "brew coffee",
          "train a puppy", "start running", "save for retirement"]  # fmt: skip


def prompts(n: int) -> list[str]:
    """As bench/embed_vs_hit.py: distinct texts; the paraphrase of each adds one '?'."""
    return [f"Question {i}: what is the best way to {TOPICS[i % len(TOPICS)]}?" for i in range(n)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ask(client: httpx.Client, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "tiny", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    response.raise_for_status()
    return response


def timed_hit(client: httpx.Client, text: str, match: str) -> float:
    started = time.perf_counter()
    got = ask(client, text).headers.get("x-cache-match")
    elapsed = 1000 * (time.perf_counter() - started)
    if got != match:
        raise RuntimeError(f"expected a {match} hit, got {got!r}")
    return elapsed


# ---- the servers ----------------------------------------------------------------------------
def proxy_config(upstream: str, backend: str, redis_url: str, max_entries: int) -> dict[str, Any]:
    cache: dict[str, Any] = {"backend": backend, "max_entries": max_entries}
    if backend == "redis":
        cache["redis"] = {"url": redis_url, "key_prefix": PREFIX}
    tenants = {TENANT: {"api_keys": ["sk-bench"], "threshold": 0.9}}
    return {"upstream": {"url": upstream}, "cache": cache, "tenants": tenants}


@dataclass
class Proxies:
    a: httpx.Client  # redis: stores
    b: httpx.Client  # redis: the other replica
    c: httpx.Client  # embedded
    logs: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def running_proxies(tmp: Path, redis_url: str, max_entries: int) -> Iterator[Proxies]:
    with contextlib.ExitStack() as stack:
        upstream, _ = stack.enter_context(canned_upstream(None))
        clients, logs = [], []
        for name, backend in (("a", "redis"), ("b", "redis"), ("c", "embedded")):
            config_path, log_path = tmp / f"{name}.yaml", tmp / f"{name}.log"
            config = proxy_config(upstream, backend, redis_url, max_entries)
            config_path.write_text(yaml.safe_dump(config))
            logs.append(log_path)
            print(f"starting proxy {name} (cache.backend {backend})...", file=sys.stderr)
            try:
                url = stack.enter_context(running_proxy(log_path, ["--config", str(config_path)]))
            except Exception:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise
            clients.append(
                stack.enter_context(httpx.Client(base_url=url, timeout=60, headers=AUTH))
            )
        yield Proxies(a=clients[0], b=clients[1], c=clients[2], logs=logs)


# ---- 1. replication delay ----------------------------------------------------------------------
@dataclass
class Replication:
    delays_ms: list[float] = field(default_factory=list)  # A's response end -> B's HIT end
    polls: list[int] = field(default_factory=list)
    hit_rtt_ms: list[float] = field(default_factory=list)  # the HIT poll's own round trip
    # B's own histogram of event age when its follower applied it (bucket upper bounds, s).
    lag_p50_s: float = 0.0
    lag_p99_s: float = 0.0


def replicate(proxies: Proxies, texts: list[str]) -> Replication:
    result = Replication()
    for text in tqdm(texts, desc="1/3 store on A, poll B"):
        stored = ask(proxies.a, text)
        stored_at = time.perf_counter()  # the body is read: A's response has ended
        if stored.headers.get("x-cache") != "MISS" or "x-cache-entry" not in stored.headers:
            raise RuntimeError(f"A did not store {text!r}: {dict(stored.headers)}")
        entry, polls = stored.headers["x-cache-entry"], 0
        while True:
            sent = time.perf_counter()
            polled = ask(proxies.b, text, NO_STORE)
            done, polls = time.perf_counter(), polls + 1
            # A semantic HIT on another prompt's entry does not count: only A's entry.
            if (
                polled.headers.get("x-cache") == "HIT"
                and polled.headers.get("x-cache-entry") == entry
            ):
                break
            if done - stored_at > POLL_DEADLINE_S:
                raise RuntimeError(f"B did not hit A's entry within {POLL_DEADLINE_S}s")
            time.sleep(POLL_S)
        result.delays_ms.append(1000 * (done - stored_at))
        result.polls.append(polls)
        result.hit_rtt_ms.append(1000 * (done - sent))
    result.lag_p50_s, result.lag_p99_s = follower_lag(proxies.b, len(texts))
    return result


def follower_lag(client: httpx.Client, events: int) -> tuple[float, float]:
    """p50 and p99 (bucket upper bounds) of cache_proxy_replication_seconds on one replica."""
    buckets: list[tuple[float, float]] = []
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("cache_proxy_replication_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0
    if total < events:
        raise RuntimeError(f"B's follower applied {total:.0f} events, expected {events}")

    def quantile(q: float) -> float:
        return next(bound for bound, count in buckets if count >= q * total)

    return quantile(0.5), quantile(0.99)


# ---- 2. hit path: redis vs embedded ---------------------------------------------------------
def hit_path(proxies: Proxies, texts: list[str]) -> dict[str, list[float]]:
    # Same meaning, different bytes: the exact tier misses, the semantic tier must answer.
    variants = [t.replace("?", "??") for t in texts]
    for text in tqdm(texts, desc="2/3 fill embedded"):
        ask(proxies.c, text)
    targets = {"redis": proxies.b, "embedded": proxies.c}
    for text, variant in list(zip(texts, variants, strict=True))[:20]:  # warm-up, not counted
        for client in targets.values():
            timed_hit(client, text, "exact")
            timed_hit(client, variant, "semantic")
    series: dict[str, list[float]] = {
        f"{kind} {backend}": [] for kind in ("exact", "semantic") for backend in targets
    }
    pairs = list(zip(texts, variants, strict=True))
    for i, (text, variant) in enumerate(tqdm(pairs, desc="2/3 hits redis vs embedded")):
        order = list(targets.items()) if i % 2 == 0 else list(targets.items())[::-1]
        for backend, client in order:
            series[f"exact {backend}"].append(timed_hit(client, text, "exact"))
        for backend, client in order:
            series[f"semantic {backend}"].append(timed_hit(client, variant, "semantic"))
    return series


# ---- 3./4. bulk load, rebuild, memory -----------------------------------------------------------
@dataclass
class Rebuild:
    entries: int
    load_s: float
    payload_bytes: float  # meta + vec + model of one entry, as stored
    redis_used_delta: int
    entry_key_bytes: int
    lru_bytes: int
    log_bytes: int
    rebuild_s: float
    resume_s: float  # the same mirror after an outage, its log continuous: no rebuild
    timeout_s: float  # cache.redis.timeout_s of the timed rebuild
    rss_delta: int
    traced_delta: int
    traced_peak: int


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settle() -> None:
    """Frees what can be freed, and gives glibc's free pages back, before reading RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_and_rebuild(server: RedisServer, n: int) -> Rebuild:
    client = redis.Redis.from_url(server.url, socket_timeout=60)
    space = CacheSpace("bench-synthetic-vectors", DIMENSION)
    settings = CacheSettings(
        backend="redis",
        max_entries=n,
        redis=RedisSettings(url=server.url, key_prefix=PREFIX),
    )
    keys = RedisBackend(settings, space, Metrics()).keys(REBUILD_TENANT)
    first = next(synthetic_entries(1, DIMENSION))
    fields = first.to_fields()
    payload = len(fields["meta"]) + len(fields["vec"]) + len(first.answer.model)

    client.config_set("auto-aof-rewrite-percentage", 0)  # no fork mid-measurement
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    with tqdm(total=n, desc="3/3 load Redis (PUT script)", unit="entry") as bar:
        entries = synthetic_entries(n, DIMENSION)
        for stored in bulk_put(client, keys, entries, n, settings.redis.log_max_len):
            bar.update(stored)
    load_s = time.perf_counter() - started
    used_delta = int(client.info("memory")["used_memory"]) - before
    if client.zcard(keys.lru) != n:
        raise RuntimeError(f"Redis holds {client.zcard(keys.lru)} entries, not {n}")
    entry_key_bytes = int(client.memory_usage(keys.entry(first.exact)) or 0)
    lru_bytes = int(client.memory_usage(keys.lru, samples=0) or 0)
    log_bytes = int(client.memory_usage(keys.log, samples=0) or 0)
    client.close()

    # One reply (MULTI/EXEC with ZRANGE of every member) must be read within
    # cache.redis.timeout_s, the client's socket timeout, whatever deadline the rebuild sets.
    patient = CacheSettings(
        backend="redis",
        max_entries=n,
        redis=RedisSettings(url=server.url, key_prefix=PREFIX, timeout_s=30),
    )
    print("3/3 rebuilding the mirror (timed)...", file=sys.stderr)
    settle()
    rss_before, timeout_s = rss_bytes(), settings.redis.timeout_s
    try:
        rebuild_s, resume_s, backend = asyncio.run(_rebuild(settings, space, n))
    except SharedUnavailable:
        print(
            f"3/3 the rebuild failed with cache.redis.timeout_s {timeout_s:g}; "
            "timing it again with 30 s",
            file=sys.stderr,
        )
        settle()
        rss_before, timeout_s = rss_bytes(), patient.redis.timeout_s
        rebuild_s, resume_s, backend = asyncio.run(_rebuild(patient, space, n))
    settle()
    rss_delta = rss_bytes() - rss_before
    del backend
    settle()

    print("3/3 rebuilding again under tracemalloc (Python's share)...", file=sys.stderr)
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    _, _, backend = asyncio.run(_rebuild(patient, space, n))  # tracemalloc slows the parsing
    gc.collect()
    traced_after, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del backend
    return Rebuild(
        entries=n,
        load_s=load_s,
        payload_bytes=payload,
        redis_used_delta=used_delta,
        entry_key_bytes=entry_key_bytes,
        lru_bytes=lru_bytes,
        log_bytes=log_bytes,
        rebuild_s=rebuild_s,
        resume_s=resume_s,
        timeout_s=timeout_s,
        rss_delta=rss_delta,
        traced_delta=traced_after - traced_before,
        traced_peak=traced_peak - traced_before,
    )


async def _rebuild(settings: CacheSettings, space: CacheSpace, n: int) -> tuple[float, float, Any]:
    """A fresh replica's rebuild of the tenant, then what an outage after it costs when the
    log kept its place; returns (rebuild seconds, resume seconds, the mirror it built)."""
    backend = RedisBackend(settings, space, Metrics())
    backend.set_tenants([REBUILD_TENANT])
    running = False
    try:
        started = time.perf_counter()
        count = await backend.follower.rebuild(REBUILD_TENANT)
        elapsed = time.perf_counter() - started
        if count != n:
            raise RuntimeError(f"the mirror holds {count} entries, not {n}")
        started = time.perf_counter()
        if not await backend.follower.resume_or_rebuild(REBUILD_TENANT):
            raise RuntimeError("the log lost its place: the mirror would be rebuilt")
        resume_s = time.perf_counter() - started
        await backend.start()  # the tenant is no longer stale: the follower only follows
        running = True
    finally:
        if running:
            await backend.aclose()
        else:  # RedisBackend.aclose before start raises ValueError (asyncio.wait of no tasks)
            await backend._tier.aclose()
    return elapsed, resume_s, backend.mirror


# ---- the table --------------------------------------------------------------------------------
def report(
    n: int, version: str, rep: Replication, hits: dict[str, list[float]], rb: Rebuild
) -> None:
    def row(name: str, p50: str, p99: str = "", last: str = "", note: str = "") -> None:
        print(f"{name:<44}{p50:>11}{p99:>11}{last:>11}  {note}".rstrip())

    def ms(samples: list[float]) -> tuple[str, str, str]:
        return (
            f"{statistics.median(samples):.2f}",
            f"{percentile(samples, 0.99):.2f}",
            f"{max(samples):.2f}",
        )

    first_poll = sum(1 for p in rep.polls if p == 1) / len(rep.polls)
    print(
        f"\nshared cache tier: redis-server {version}, 3 proxies + Redis on this machine; "
        f"{n} queries per series, {rb.entries} entries rebuilt"
    )
    row("measure", "p50", "p99", "max", "")
    row("-" * 44, "-" * 10, "-" * 10, "-" * 10, "-" * 30)
    row(
        "replication A -> B: to B's HIT (ms)",
        *ms(rep.delays_ms),
        f"polls p50 {statistics.median(rep.polls):.0f}, max {max(rep.polls)}; "
        f"HIT on 1st poll {first_poll:.0%}",
    )
    row(
        "  the HIT poll's own round trip (ms)",
        *ms(rep.hit_rtt_ms),
        "a HIT at zero delay costs this",
    )
    row(
        "  B follower: event age when applied (ms)",
        f"<= {1000 * rep.lag_p50_s:g}",
        f"<= {1000 * rep.lag_p99_s:g}",
        "",
        "B's cache_proxy_replication_seconds buckets",
    )
    for kind in ("exact", "semantic"):
        redis_s, embedded_s = hits[f"{kind} redis"], hits[f"{kind} embedded"]
        row(f"{kind} hit, redis backend (ms)", *ms(redis_s))
        row(f"{kind} hit, embedded backend (ms)", *ms(embedded_s))
        p50 = statistics.median(redis_s) / statistics.median(embedded_s)
        p99 = percentile(redis_s, 0.99) / percentile(embedded_s, 0.99)
        verdict = "ok" if max(p50, p99) <= 1.1 else "OVER"
        row(
            f"  {kind}: redis / embedded",
            f"{p50:.2f}x",
            f"{p99:.2f}x",
            "",
            f"target <= 1.10x: {verdict}",
        )
    per = rb.entries
    row("-" * 44, "-" * 10, "-" * 10, "-" * 10, "-" * 30)
    row("measure", "value", "", "", "")
    row(
        f"bulk load into Redis ({per} entries)",
        f"{rb.load_s:.1f} s",
        "",
        "",
        f"{per / rb.load_s:,.0f} entries/s, pipelined PUT script",
    )
    row(
        f"mirror rebuild ({per} entries)",
        f"{rb.rebuild_s:.2f} s",
        "",
        "",
        f"{per / rb.rebuild_s:,.0f} entries/s; cache.redis.timeout_s {rb.timeout_s:g}",
    )
    row(
        "mirror after an outage, log kept",
        f"{rb.resume_s * 1000:.2f} ms",
        "",
        "",
        f"resumed, not rebuilt: {rb.rebuild_s / rb.resume_s:,.0f}x less than the rebuild",
    )
    row(
        "Redis memory / entry (used_memory delta)",
        f"{rb.redis_used_delta / per:,.0f} B",
        "",
        "",
        f"payload {rb.payload_bytes:,.0f} B (meta JSON + 384-d vec + model)",
    )
    row("  one entry hash (MEMORY USAGE)", f"{rb.entry_key_bytes:,} B")
    row("  lru sorted set / entry", f"{rb.lru_bytes / per:,.0f} B")
    row(
        "  change log stream / entry",
        f"{rb.log_bytes / per:,.0f} B",
        "",
        "",
        "one put event per entry (log_max_len 100000)",
    )
    row("mirror memory / entry (RSS delta)", f"{rb.rss_delta / per:,.0f} B")
    row(
        "  Python objects (tracemalloc)",
        f"{rb.traced_delta / per:,.0f} B",
        "",
        "",
        f"peak during rebuild {rb.traced_peak / per:,.0f} B/entry",
    )
    row(
        "  rest: FAISS + untraced (RSS - traced)",
        f"{(rb.rss_delta - rb.traced_delta) / per:,.0f} B",
        "",
        "",
        f"FAISS flat: {DIMENSION}*4 + 8 (id) = {DIMENSION * 4 + 8:,} B + id map",
    )
    print(HOW_MEASURED)


HOW_MEASURED = """
how measured:
  replication: A answers a MISS after its PUT script ran and its own follower applied the
    event; B is then polled (1 ms apart) with the same prompt under Cache-Control: no-store
    (B's MISSes store nothing) until it answers HIT naming A's entry (X-Cache-Entry). Delay =
    A's response end -> B's HIT response end, each poll a full HTTP request. B's follower
    histogram gives the event age at apply; stream ids have 1 ms resolution (over-estimate).
  hit path: B (redis) and C (embedded) hold the same prompts; per query an exact hit (same
    text) and a semantic hit (text + '?') go to both, the order alternating per query,
    after 20 warm-up queries. Client-side HTTP round trips, keep-alive connections.
  rebuild: synthetic entries (sha256 keys, ~80-char prompts, ~300-byte answers, random unit
    vectors, one partition, no TTL) loaded by the backend's own PUT script, pipelined 500
    per round trip (bench/redis_bulk.py); then ChangeLogFollower.rebuild of a fresh
    RedisBackend in this process (1000 bodies per round trip, decode, FAISS flat index).
  memory: Redis INFO used_memory before/after the load (auto AOF rewrite off); the mirror by
    this process's RSS before/after the rebuild (gc + malloc_trim first); Python's share by
    tracemalloc over a second rebuild (FAISS allocates outside tracemalloc's view; that
    rebuild runs with cache.redis.timeout_s 30, since tracemalloc slows reply parsing).
  Redis: tests/support/redis_server.py (appendonly yes, appendfsync always), loopback.
"""


def run(n: int, rebuild_entries: int) -> None:
    texts = prompts(n)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis").start()
        try:
            version = str(server.client().info("server")["redis_version"])
            proxies_dir = tmp / "proxies"
            proxies_dir.mkdir()
            with running_proxies(proxies_dir, server.url, max(10_000, 2 * n)) as proxies:
                try:
                    replication = replicate(proxies, texts)
                    hits = hit_path(proxies, texts)
                except Exception:
                    for log in proxies.logs:
                        print(f"--- {log.name}\n{log.read_text()[-2000:]}", file=sys.stderr)
                    raise
            print("proxies stopped", file=sys.stderr)
            rebuild = load_and_rebuild(server, rebuild_entries)
        finally:
            server.stop()
    report(n, version, replication, hits, rebuild)


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: every server is stopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rebuild-entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.queries < 1 or args.rebuild_entries < 1:
        parser.error("--queries and --rebuild-entries must be at least 1")
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        run(args.queries, args.rebuild_entries)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
