"""The Redis key layout: everything of one tenant under `<prefix>{<tenant>}:`.

    <prefix>{<tenant>}:log                   change log (Stream): put / del / inv events
    <prefix>{<tenant>}:epoch                 bumped by every invalidation or flush
    <prefix>{<tenant>}:spaces                cache spaces (embedder x engine identity) in use
    <prefix>{<tenant>}:s:<space>:e:<exact>   one entry (hash: meta, vec, model)
    <prefix>{<tenant>}:s:<space>:lru         entry keys by last use (sorted set)
    <prefix>{<tenant>}:s:<space>:exp         entry keys by expiry (sorted set)
    <prefix>{<tenant>}:s:<space>:lease:<exact>   cross-replica single flight
    <prefix>{<tenant>}:s:<space>:shadow      shadow verdicts shared by replicas (list)
    <prefix>{<tenant>}:s:<space>:online      online verdicts of explorations (Stream, capped)

Beside them, `<prefix>space:<space>` holds what a space id stands for (embedder digest and
dimension, engine revision, quantization, chat template digest), JSON, for operators.

The braces are a Redis Cluster hash tag: a tenant's keys share one slot, so each change is
one atomic script. No key of one tenant is reachable from another tenant's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TenantKeys:
    prefix: str
    tenant: str
    space: str

    @property
    def base(self) -> str:
        return f"{self.prefix}{{{self.tenant}}}:"

    @property
    def log(self) -> str:
        return self.base + "log"

    @property
    def epoch(self) -> str:
        return self.base + "epoch"

    @property
    def spaces(self) -> str:
        return self.base + "spaces"

    @property
    def space_base(self) -> str:
        return f"{self.base}s:{self.space}:"

    @property
    def entry_prefix(self) -> str:
        return self.space_base + "e:"

    @property
    def shadow(self) -> str:
        return self.space_base + "shadow"

    @property
    def online(self) -> str:
        return self.space_base + "online"

    @property
    def lru(self) -> str:
        return self.space_base + "lru"

    @property
    def expiries(self) -> str:
        return self.space_base + "exp"

    def entry(self, exact: str) -> str:
        return self.entry_prefix + exact

    def lease(self, exact: str) -> str:
        return self.space_base + "lease:" + exact


def stream_position(event_id: str | bytes) -> tuple[int, int]:
    """A stream id ('1700000000000-3') as a comparable (milliseconds, sequence) pair."""
    text = event_id.decode() if isinstance(event_id, bytes) else event_id
    millis, _, sequence = text.partition("-")
    return int(millis), int(sequence or 0)
