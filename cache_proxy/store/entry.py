from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cache_proxy.schemas import Endpoint

# A complete answer may be reused; "abort", "error" or a missing reason may not.
COMPLETE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})


@dataclass(frozen=True, slots=True)  # slots: no per-instance dict (memory, GC scans)
class Answer:
    """One complete choice, independent of the form (JSON or SSE) it arrived in."""

    endpoint: Endpoint
    model: str
    content: str
    finish_reason: str | None
    usage: dict[str, int] | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    system_fingerprint: str | None = None

    @property
    def complete(self) -> bool:
        return self.finish_reason in COMPLETE_FINISH_REASONS

    @property
    def completion_tokens(self) -> int:
        return int((self.usage or {}).get("completion_tokens", 0))


# The Python objects of one entry beyond its text: Entry, Answer, usage dict, string headers,
# map and LRU slots. Measured with tracemalloc on a chat entry: 725 B (tests/store check it).
ENTRY_OVERHEAD_BYTES = 730


def entry_bytes(query_text: str, exact: str, answer: Answer, vector_bytes: int) -> int:
    """An estimate of what an entry costs a replica (text counted as bytes of UTF-8 or less)."""
    tools = sum(len(str(call)) for call in answer.tool_calls)
    text = len(query_text) + len(exact) + len(answer.content) + tools
    return ENTRY_OVERHEAD_BYTES + text + vector_bytes


@dataclass(slots=True)
class Entry:
    entry_id: int
    partition: str
    exact: str
    query_text: str
    answer: Answer
    vector: npt.NDArray[np.float32] | None  # None in a mirror: its index holds the vector
    created_at: float
    expires_at: float | None = None  # None: no expiry
    hits: int = field(default=0)
    indexed: bool = field(default=False)  # its vector is in its partition's index
    size_bytes: int = field(default=0)  # what it holds in memory, estimated (entry_bytes)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def age_s(self, now: float) -> float:
        return now - self.created_at
