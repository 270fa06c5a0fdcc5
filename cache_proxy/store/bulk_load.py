"""Bulk loads (a snapshot at start, a mirror rebuilt from Redis) without GC stalls.

Loading a million entries creates millions of long-lived objects. Python's cyclic collector
runs a full pass every time a quarter more long-lived objects appeared, and each pass scans
every one of them with the GIL held: measured 89 ms for 200k entries, and /healthz waited
1.1 s while a million loaded. Entries hold no reference cycles (refcounting frees them), so
the load runs with the collector paused, and its objects are then frozen: later passes skip
them, and refcounting still frees an entry when it is evicted. Freeing happens on the worker
thread; the heap it leaves is handed back to the OS (glibc's malloc_trim).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_loads = 0  # loads under way (two tenants may rebuild at once)
_switch_interval = sys.getswitchinterval()


# While a worker thread loads, the event loop waits for the GIL up to one switch interval
# each time it needs it; a shorter one keeps /healthz answering (the load gets a bit slower).
_LOADING_SWITCH_INTERVAL_S = 0.001


@contextmanager
def bulk_load() -> Iterator[None]:
    global _loads, _switch_interval
    with _lock:
        if _loads == 0:
            _switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(_LOADING_SWITCH_INTERVAL_S)
        _loads += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            if _loads == 0:
                gc.freeze()  # what was loaded is never scanned again
                gc.enable()
                sys.setswitchinterval(_switch_interval)
        release_free_memory()


def release_free_memory() -> None:
    """Gives freed heap pages back to the OS where glibc can (a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
