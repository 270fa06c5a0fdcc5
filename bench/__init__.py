"""Benchmarks (`make bench`). Each reads the embedder export where `make` puts it."""

import os
from pathlib import Path

# The same place as the Makefile's CACHE_PROXY_CACHE_DIR, so `python -m bench.X` run by hand
# (and the proxies it starts) find the export `make embedder` made.
os.environ.setdefault(
    "CACHE_PROXY_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "build" / "cache-proxy")
)
