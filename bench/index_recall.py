"""Recall of the IVF index vs exact search, on real embeddings (QQP dev questions).

    python -m bench.index_recall [--pairs ../shared/data/qqp_pairs_dev.jsonl.gz]
                                 [--nprobe 8,16,32,64] [--queries 5000]

The index holds every question that is not a query (all text_a, and text_b never asked);
the queries are the text_b questions. For each query the exact (flat) top-1 is the truth.
`recall@1` counts queries whose IVF top-1 scores as high as the exact top-1 (a tie with an
identical vector counts); `hit recall` restricts that to queries whose exact top-1 is at or
above a cosine threshold: those are the hits the cache would serve, the ones it must not
lose. Embeddings are the proxy's model, cached under build/cache.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import faiss
import numpy as np

from cache_proxy.store.vector_index import FlatVectors, Found, IvfVectors
from cache_tools.evaluation.embeddings import embed_texts_cached

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "qqp_pairs_dev.jsonl.gz"
THRESHOLDS = (0.8, 0.9)


def load(pairs_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(index vectors, query vectors) of the pairs file's distinct questions."""
    with gzip.open(pairs_path, "rt") as handle:
        pairs = [json.loads(line) for line in handle]
    texts = sorted({p["text_a"] for p in pairs} | {p["text_b"] for p in pairs})
    vectors = embed_texts_cached(texts)
    row = {t: i for i, t in enumerate(texts)}
    queries = sorted({row[p["text_b"]] for p in pairs})
    asked = set(queries)
    base = [i for i in range(len(texts)) if i not in asked]
    return vectors[base], vectors[queries]


def agreement(approx: list[Found], exact: list[Found], floor: float | None) -> tuple[float, int]:
    kept = [(a, e) for a, e in zip(approx, exact, strict=True) if floor is None or e[0][1] >= floor]
    good = sum(bool(a) and a[0][1] >= e[0][1] - 1e-6 for a, e in kept)
    return good / max(1, len(kept)), len(kept)


def run(pairs_path: Path, nprobes: list[int], count: int) -> None:
    base, queries = load(pairs_path)
    queries = queries[np.random.default_rng(0).permutation(len(queries))[:count]]
    ids = np.arange(len(base), dtype=np.int64)
    flat = FlatVectors(base.shape[1])
    flat.add(ids, base)
    exact = flat.search(queries, 1)
    started = time.perf_counter()
    ivf = IvfVectors.build(ids, base, nprobes[0])
    built = time.perf_counter() - started
    index = ivf._index  # the knob under test: nprobe of the same trained index
    print(f"{len(base):,} indexed questions, {len(queries):,} queries; IVF nlist "
          f"{index.nlist}, built in {built:.1f} s (1 thread)")  # fmt: skip
    header = "".join(f"{'hit recall >=' + str(t):>18}" for t in THRESHOLDS)
    print(f"{'nprobe':>7}{'recall@1':>10}{header}{'ms/query':>10}")
    for nprobe in nprobes:
        index.nprobe = nprobe
        started = time.perf_counter()
        approx = [ivf.search(queries[i : i + 1], 1)[0] for i in range(len(queries))]
        per_query = 1000 * (time.perf_counter() - started) / len(queries)
        overall, _ = agreement(approx, exact, None)
        hits = "".join(
            f"{r:>12.4f} (n={n:,})"[-18:].rjust(18)
            for r, n in (agreement(approx, exact, t) for t in THRESHOLDS)
        )
        print(f"{nprobe:>7}{overall:>10.4f}{hits}{per_query:>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--nprobe", default="8,16,32,64")
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    run(args.pairs, [int(v) for v in args.nprobe.split(",")], args.queries)


if __name__ == "__main__":
    main()
