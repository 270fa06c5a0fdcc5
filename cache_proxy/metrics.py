"""Every Prometheus metric of the proxy, and nowhere else. One registry per app instance."""

from __future__ import annotations

from collections import Counter as Tally
from collections import defaultdict

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

OUTCOMES = ("hit_exact", "hit_semantic", "miss", "bypass", "error")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the scrape size for no use here
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cache_proxy_requests",
            "Requests by tenant and outcome",
            ["tenant", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "cache_proxy_request_seconds",
            "Time to response start, by outcome",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_seconds = Histogram(
            "cache_proxy_embed_seconds",
            "Query embedding time (incl. batching wait)",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.search_seconds = Histogram(
            "cache_proxy_search_seconds", "FAISS search time", buckets=_FAST_BUCKETS, registry=r
        )
        self.verify_seconds = Histogram(
            "cache_proxy_verify_seconds",
            "Guards + verifier time per lookup",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.entries = Gauge("cache_proxy_entries", "Cached entries", ["tenant"], registry=r)
        self.index_vectors = Gauge(
            "cache_proxy_index_vectors",
            "Vectors in this replica's index, by index kind (flat, ivf)",
            ["tenant", "kind"],
            registry=r,
        )
        self.index_bytes = Gauge(
            "cache_proxy_index_bytes", "Bytes held by this replica's index", ["tenant"], registry=r
        )
        self.index_rebuilding = Gauge(
            "cache_proxy_index_rebuilding",
            "Partitions whose index is being (or is due to be) rebuilt beside the live one",
            ["tenant"],
            registry=r,
        )
        self.cached_tokens = Counter(
            "cache_proxy_cached_completion_tokens",
            "Completion tokens served from cache instead of the engine",
            ["tenant"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "cache_proxy_upstream_errors", "Engine failures by kind", ["kind"], registry=r
        )
        self.rejected_candidates = Counter(
            "cache_proxy_rejected_candidates",
            "Candidates above threshold rejected, by reason",
            ["tenant", "reason"],
            registry=r,
        )
        self.shadow_outcomes = Counter(
            "cache_proxy_shadow_checks",
            "Shadow-verified semantic hits by outcome (agreed, suspect, failed, skipped_busy)",
            ["tenant", "outcome"],
            registry=r,
        )
        self.shadow_agreement = Histogram(
            "cache_proxy_shadow_agreement",
            "Cosine between the served cached answer and the engine's fresh answer",
            ["tenant"],
            buckets=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0),
            registry=r,
        )
        self.online_decisions = Counter(
            "cache_proxy_online_decisions",
            "Online-verified candidates by action (serve, explore, miss)",
            ["tenant", "action"],
            registry=r,
        )
        self.online_verdicts = Counter(
            "cache_proxy_online_verdicts",
            "Explorations by judge outcome (correct, wrong, abstained, failed, no_answer, "
            "skipped_busy)",
            ["tenant", "outcome"],
            registry=r,
        )
        self.online_boundary = Gauge(
            "cache_proxy_online_boundary",
            "The similarity at or above which online-verified candidates are served",
            ["tenant"],
            registry=r,
        )
        self.effective_threshold = Gauge(
            "cache_proxy_effective_threshold",
            "Similarity threshold in force, raised from shadow verdicts (shadow_target_error)",
            ["tenant"],
            registry=r,
        )
        self.speculative_aborts = Counter(
            "cache_proxy_speculative_aborts",
            "Engine requests started speculatively and aborted by a semantic hit",
            ["tenant"],
            registry=r,
        )
        self.shared_tier_errors = Counter(
            "cache_proxy_shared_tier_errors",
            "Redis calls that failed or timed out, by operation",
            ["operation"],
            registry=r,
        )
        self.shared_tier_up = Gauge(
            "cache_proxy_shared_tier_up",
            "1 while the shared tier (Redis) answers, 0 while degraded (embedded backend: 1)",
            registry=r,
        )
        self.replication_seconds = Histogram(
            "cache_proxy_replication_seconds",
            "Age of a change-log event (store, removal) when this replica applied it",
            buckets=(*_FAST_BUCKETS, 1, 2.5, 5, 10),
            registry=r,
        )
        self.mirror_rebuilds = Counter(
            "cache_proxy_mirror_rebuilds",
            "Local mirror rebuilds from Redis (start, reconnect), by tenant",
            ["tenant"],
            registry=r,
        )
        self.mirror_resumes = Counter(
            "cache_proxy_mirror_resumes",
            "Outages after which the mirror resumed its change log (no rebuild), by tenant",
            ["tenant"],
            registry=r,
        )
        self.remote_coalesced = Counter(
            "cache_proxy_remote_coalesced",
            "Misses that waited for another replica's engine call: served, or fallback",
            ["tenant", "outcome"],
            registry=r,
        )

        # Plain per-tenant tallies for /admin/stats (Prometheus counters are write-only).
        self.tallies: defaultdict[str, Tally[str]] = defaultdict(Tally)

    def record(self, tenant: str, outcome: str, seconds: float) -> None:
        self.tallies[tenant][outcome] += 1
        self.requests.labels(tenant=tenant, outcome=outcome).inc()
        self.latency.labels(outcome=outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
