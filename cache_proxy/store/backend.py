"""The store the pipeline talks to: reads from a local mirror, writes through the backend.

    CacheBackend (Protocol)
    ├── EmbeddedBackend   entries in this process; optional snapshot file (store/embedded.py)
    └── RedisBackend      entries and a change log in Redis, followed into the local
                          mirror by every replica (store/redis_backend.py)

Reads (`tenant(name)`: exact map, FAISS search) never leave the process. Writes return
after the local mirror shows them, so a replica always hits on what it just stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.entry import Entry
from cache_proxy.store.tenant_cache import TenantCache


class SharedUnavailable(Exception):
    """The shared tier did not answer; what could be done locally was done."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"the shared tier did not answer ({operation})")
        self.operation = operation


Verdict = tuple[float, bool]  # (similarity of a served hit, judged suspect)


class VerdictLog(Protocol):
    """Shadow verdicts of every replica of a tenant, so the adaptive threshold sees them all."""

    async def add_verdict(self, tenant: str, verdict: Verdict, keep: int) -> None: ...

    async def recent_verdicts(self, tenant: str, keep: int) -> list[Verdict] | None:
        """Newest first; None when the shared tier did not answer."""
        ...


ONLINE_VERDICTS_KEPT = 20_000  # per tenant: the window the online boundary is learned over


@dataclass(frozen=True, slots=True)
class OnlineVerdict:
    """One judged exploration: the candidate's similarity, the verdict, the entry's exact key,
    and how far the runner-up candidate was behind."""

    similarity: float
    correct: bool
    entry: str
    margin: float = 1.0  # similarity minus the runner-up candidate's


class ExplorationLog(Protocol):
    """Online verdicts of every replica of a tenant (cache_proxy/explore.py), kept with the
    entries so they survive restarts and every replica learns from all of them."""

    async def add_online_verdict(self, tenant: str, verdict: OnlineVerdict) -> None: ...

    async def online_verdicts_after(
        self, tenant: str, position: str
    ) -> tuple[list[OnlineVerdict], str] | None:
        """Verdicts after `position` ("" for all kept) written by other replicas (or by this
        one before a restart), and the position to read on from; None when the shared tier
        did not answer."""
        ...


class Lease(Protocol):
    """A claim on one in-flight miss across replicas (cross-replica coalescing)."""

    async def release(self) -> None: ...


class CacheBackend(Protocol):
    kind: str

    def tenant(self, name: str) -> TenantCache:
        """The local (mirror) cache of one tenant: every read goes here."""
        ...

    def tenant_names(self) -> list[str]: ...

    def generation(self, tenant: str) -> int:
        """Changes on every invalidation: a store begun before one must not land after."""
        ...

    def set_tenants(self, names: Sequence[str]) -> None:
        """The configured tenants (a reload may add or drop some)."""
        ...

    async def put(self, tenant: str, entry: StoredEntry, generation: int) -> bool:
        """Stores an answer; False when an invalidation came between or the tier refused."""
        ...

    async def invalidate(self, tenant: str | None = None, model: str | None = None) -> int:
        """Removes the entries of one or all tenants (of `model` when given), on every
        replica; raises SharedUnavailable when only the local mirror could be cleared."""
        ...

    async def remove_entry(self, tenant: str, exact: str) -> int: ...

    def record_use(self, tenant: str, entry: Entry) -> None:
        """A hit on `entry` (LRU order)."""
        ...

    async def lead(self, tenant: str, exact: str) -> Lease | None:
        """A lease when this replica should call the engine for this miss (None: another
        replica is already calling it). Backends without replicas always lead."""
        ...

    async def await_remote(self, tenant: str, exact: str) -> Entry | None:
        """The entry another replica's call stores, or None when it gave up or failed."""
        ...

    def exploration_log(self) -> ExplorationLog | None:
        """Where online verdicts are shared; None for the embedded backend (this process)."""
        ...

    def verdict_log(self) -> VerdictLog | None:
        """Where shadow verdicts are shared across replicas (None: this process only)."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


class NoLease:
    """The lease of a backend without replicas: nothing to release."""

    async def release(self) -> None:
        return None
