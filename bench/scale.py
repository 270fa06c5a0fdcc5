"""Scale: one table from one run, at 10k, 100k and 1M entries in one tenant.

    python -m bench.scale [--sizes 10000,100000,1000000] [--queries 200]
                          [--inserts 20000] [--gptcache-sizes 10000,100000]

1. bare single-query embedding vs HTTP semantic-hit latency (p50/p99) through the real proxy;
2. semantic-hit throughput at concurrency 1/8/32 vs the embedder's batched throughput;
3. insert cost at capacity (each insert evicts), excluding embedding: on the event loop, and
   until the index thread has applied it;
4. event-loop lag (p99/max of a 20 Hz probe) while an index rebuild runs and while inserts
   evict, in-process; and /healthz over HTTP while the proxy loads and rebuilds;
5. memory per entry (proxy RSS over the seeded baseline) and the index's own bytes;
6. GPTCache (library, same MiniLM and FAISS, same entries) hits/s and p50 vs ours.
Entries beyond the real prompts are synthetic (random unit vectors, realistic sizes) and
reach the proxy through its snapshot loader: the bench-only bulk path (bench/scale_http.py).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

from bench.canned_upstream import canned_upstream
from bench.embed_vs_hit import prompts
from bench.gptcache_side import GptCacheResult, measure_gptcache
from bench.scale_http import HttpResult, measure_http, seed_real_entries
from bench.scale_store import StoreResult, measure_store
from cache_proxy.config import EmbeddingSettings, IndexSettings
from cache_proxy.embedding.loader import load_embedder


def run(
    sizes: list[int],
    queries: int,
    inserts: int,
    gpt_sizes: list[int],
    ivf_min_entries: int = IndexSettings().ivf_min_entries,
) -> None:
    settings = IndexSettings(ivf_min_entries=ivf_min_entries)
    # Each part prints its table as soon as it is measured: a failure later loses nothing.
    report_store([asyncio.run(measure_store(n, inserts, settings)) for n in sizes])
    with tempfile.TemporaryDirectory() as tmp, canned_upstream(None) as (upstream, _):
        space, real = seed_real_entries(Path(tmp), upstream, prompts(queries))
        http = [
            measure_http(Path(tmp), upstream, space, real, n, queries, ivf_min_entries)
            for n in sizes
        ]
        report_http(http)
        embedder = load_embedder(EmbeddingSettings())
        gpt = [measure_gptcache(Path(tmp), embedder, real, n, queries) for n in gpt_sizes]
    report_gptcache(gpt, http)


def report_http(http: list[HttpResult]) -> None:
    _report_latency(http)
    _report_throughput(http)
    _report_loading(http)


def _report_latency(http: list[HttpResult]) -> None:
    print("\n== 1. latency: bare embedding vs HTTP semantic hit (ms) ==")
    print(f"{'entries':>10}{'index':>7}{'embed p50':>11}{'p99':>8}{'hit p50':>9}{'p99':>8}"
          f"{'p50 ratio':>11}{'exact hit p50':>15}{'p99':>8}")  # fmt: skip
    for h in http:
        print(
            f"{h.size:>10,}{h.index_kind:>7}{h.embed_ms[0]:>11.2f}{h.embed_ms[1]:>8.2f}"
            f"{h.hit_ms[0]:>9.2f}{h.hit_ms[1]:>8.2f}{h.hit_ms[0] / h.embed_ms[0]:>10.2f}x"
            f"{h.exact_ms[0]:>15.2f}{h.exact_ms[1]:>8.2f}"
        )


def _report_throughput(http: list[HttpResult]) -> None:
    client = "hey (Go)" if shutil.which("hey") else "httpx (Python, in the bench process)"
    print(f"\n== 2. semantic hits/s by concurrency vs the embedder's batched texts/s; "
          f"load from {client} ==")  # fmt: skip
    print(f"{'entries':>10}" + "".join(f"{'c=' + str(c):>9}" for c in (1, 8, 32))
          + f"{'embed/s':>9}{'c=32 ratio':>12}")  # fmt: skip
    for h in http:
        rates = "".join(f"{h.hits_per_s[c]:>9.1f}" for c in (1, 8, 32))
        ratio = h.hits_per_s[32] / h.embed_batched_per_s
        print(f"{h.size:>10,}{rates}{h.embed_batched_per_s:>9.1f}{ratio:>11.2f}x")


def _report_loading(http: list[HttpResult]) -> None:
    print("\n== 4./5. the proxy loading N entries: /healthz lag, memory ==")
    print(f"{'entries':>10}{'load+index s':>14}{'healthz p99/max ms':>20}{'RSS MB':>9}"
          f"{'KB/entry':>10}")  # fmt: skip
    base = http[0]
    for h in http:
        per_entry = (h.rss_mb - base.rss_mb) * 1024 / (h.size - base.size) if h is not base else 0
        print(f"{h.size:>10,}{h.load_s:>14.1f}{_pair(h.load_lag_ms):>20}{h.rss_mb:>9.0f}"
              f"{per_entry:>10.2f}")  # fmt: skip


def report_store(store: list[StoreResult]) -> None:
    print("\n== 3./4. inserts at capacity (each evicts) and event-loop lag, in-process ==")
    print(f"{'entries':>10}{'index':>7}{'loop us':>9}{'applied us':>12}{'rebuild s':>11}"
          f"{'lag rebuild p99/max ms':>24}{'lag inserts p99/max ms':>24}")  # fmt: skip
    for s in store:
        print(
            f"{s.size:>10,}{s.kind:>7}{s.insert_loop_us:>9.1f}{s.insert_applied_us:>12.1f}"
            f"{s.rebuild_s:>11.1f}{_pair(s.rebuild_lag_ms):>24}{_pair(s.insert_lag_ms):>24}"
        )


def report_gptcache(gpt: list[GptCacheResult], http: list[HttpResult]) -> None:
    print("\n== 6. GPTCache side by side (same MiniLM, FAISS, entries) ==")
    ours = {h.size: h for h in http}
    for g in gpt:
        mine = ours.get(g.size)
        line = (
            f"{g.size:>10,} gptcache {g.version}: "
            f"p50 {g.hit_p50_ms:.2f} ms, {g.hits_per_s:.1f} hits/s"
        )
        if mine is not None:
            line += (f"; ours p50 {mine.hit_ms[0]:.2f} ms, {mine.hits_per_s[32]:.1f} hits/s"
                     f" = {mine.hits_per_s[32] / g.hits_per_s:.2f}x hits/s,"
                     f" {g.hit_p50_ms / mine.hit_ms[0]:.2f}x lower p50")  # fmt: skip
        print(line)


def _pair(values: tuple[float, float]) -> str:
    return f"{values[0]:.1f} / {values[1]:.1f}"


def _sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--inserts", type=int, default=20_000)
    parser.add_argument("--gptcache-sizes", type=_sizes, default=[10_000, 100_000])
    parser.add_argument("--ivf-min-entries", type=int, default=IndexSettings().ivf_min_entries)
    args = parser.parse_args()
    run(args.sizes, args.queries, args.inserts, args.gptcache_sizes, args.ivf_min_entries)


if __name__ == "__main__":
    main()
