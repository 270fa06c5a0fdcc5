"""GPTCache side by side: the same hit workload through PyPI `gptcache` (0.1.44) as a library,
with the same ONNX MiniLM as its `embedding_func`, its FAISS vector store and its SQLite
scalar store, filled with the same entries (real prompts and vectors plus synthetic ones).

GPTCache is not a dependency of the proxy: `make bench` installs it (pip extra `bench`).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.redis_bulk import synthetic_entries
from cache_proxy.embedding.base import Embedder
from cache_proxy.store.snapshot import Record

THRESHOLD = 0.9  # the bench tenant's cosine threshold


@dataclass(frozen=True)
class GptCacheResult:
    size: int
    hit_p50_ms: float
    hits_per_s: float  # 32 client threads
    version: str


def measure_gptcache(
    tmp: Path, embedder: Embedder, real: list[Record], size: int, queries: int
) -> GptCacheResult:
    import gptcache  # imported here: only this part of the bench needs it

    cache = _filled_cache(tmp, embedder, real, size)
    texts = [r[1].query_text.replace("?", "??") for r in real][:queries]
    single = [_timed_hit(cache, t) for t in tqdm(texts, desc="gptcache latency", mininterval=5)]
    rate = _rate(cache, texts, threads=32, total=max(200, len(texts)))
    cache.data_manager.close()  # while `tmp` exists: its atexit hook would write there later
    cache.data_manager = SimpleNamespace(close=lambda: None)
    return GptCacheResult(size, statistics.median(single), rate, gptcache.__version__)


def _filled_cache(tmp: Path, embedder: Embedder, real: list[Record], size: int) -> Any:
    from gptcache import Cache, Config
    from gptcache.manager import CacheBase, VectorBase, get_data_manager
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    manager = get_data_manager(
        # timeout: 32 threads updating last_access hit SQLite's 5 s lock wait otherwise
        CacheBase("sqlite", sql_url=f"sqlite:///{tmp / 'gptcache.db'}?timeout=120"),
        VectorBase("faiss", dimension=384, index_path=str(tmp / "gptcache.faiss")),
        max_size=2 * size,  # its default (1,000) would evict most of them
    )
    filler = synthetic_entries(max(0, size - len(real)), 384, seed=size)
    entries = [*filler, *(e for _, e in real)]  # real ones most recent, as in the proxy
    for first in tqdm(range(0, len(entries), 5000), desc=f"gptcache fill {size:,}"):
        chunk = entries[first : first + 5000]
        manager.import_data(
            [e.query_text for e in chunk],
            [e.answer.content for e in chunk],
            [np.asarray(e.vector, dtype=np.float32) for e in chunk],
            [None] * len(chunk),
        )
    cache = Cache()
    # L2 on unit vectors: distance = 2 - 2·cos, so cos >= 0.9 is distance <= 0.2 (of max 4).
    cache.init(
        pre_embedding_func=get_prompt,
        embedding_func=lambda text, **_: embedder.encode([text])[0],
        data_manager=manager,
        similarity_evaluation=SearchDistanceEvaluation(max_distance=4.0),
        config=Config(similarity_threshold=1 - (2 - 2 * THRESHOLD) / 4.0),
    )
    return cache


def _hit(cache: Any, text: str) -> None:
    from gptcache.adapter.api import get

    if get(text, cache_obj=cache) is None:
        raise RuntimeError("GPTCache missed a query the proxy hits")


def _timed_hit(cache: Any, text: str) -> float:
    started = time.perf_counter()
    _hit(cache, text)
    return 1000 * (time.perf_counter() - started)


def _rate(cache: Any, texts: Sequence[str], threads: int, total: int) -> float:
    counter, lock = [0], threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if counter[0] >= total:
                    return
                text = texts[counter[0] % len(texts)]
                counter[0] += 1
            _hit(cache, text)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return total / (time.perf_counter() - started)
