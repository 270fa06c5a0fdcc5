"""A bounded soak: steady open-loop load on `cache-proxy serve` while the cache is full and
evicting, watching latency drift, errors, the proxy's memory and its open file descriptors.

    python -m bench.soak [--duration 180] [--rate 20] [--window 30] [--max-entries 500]
                         [--workers 8] [--seed 0] [--out FILE.json]

    python -m bench.soak --duration 1800 --out soak-30min.json   # the 30-minute variant

Starts a scripted upstream (tests/support/scripted_upstream.py, in a thread) and one
`cache-proxy serve` process (uvicorn, real MiniLM, real FAISS, cache.backend embedded,
cache.max_entries --max-entries per tenant, admin.token set), started here rather than by
bench/servers.py's running_proxy so that its pid is known: RSS is VmRSS from
/proc/<pid>/status, open fds are the entries of /proc/<pid>/fd.

1. Prefill (not timed): each tenant gets max_entries minus ~5 s worth of the run's misses, so
   the cache reaches max_entries in the first seconds of the timed run, under the mixed load.
2. The timed run: --rate requests/s for --duration s, open loop (request i is due at
   t0 + i/rate whatever came before; a pool of --workers async httpx clients takes them in
   order; latency counts from the due time, so a queue in front of a slow proxy shows up).
   Mix: 50% repeats of a recent prompt of the same tenant (exact hits), 20% paraphrases of
   one (semantic hits), 30% new prompts (misses that store and, the cache being full, evict);
   20% of requests stream. Two tenants, half the traffic each. Every 10 s an admin call:
   odd slots GET /admin/stats, even slots POST /admin/invalidate {"tenant": "beta"} (beta's
   repeats miss and refill it), every 12th slot (every 2 min) POST /admin/flush instead.
   Tenant alpha thus stays full and evicting between flushes.
3. Per window of --window s (by due time): requests, p50/p99/max latency of the successful
   ones, errors (a 5xx, any other non-2xx, a transport error, a 200 whose body is not a
   complete answer), hit ratio, and RSS/fds sampled at the window's end. RSS at start (proxy
   ready, before any request), when every tenant first reached max_entries ("full"), and at
   the end (load stopped, clients closed, 7 s for idle keep-alive connections to close);
   "flat memory once full" is the growth full -> end. Requests still running DRAIN_S after
   the last one was due count as errors.

Everything started here is stopped at the end, on an error, Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from tqdm import tqdm

from bench.servers import running_proxy_process
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.servers import serve_in_thread

TENANTS = {"alpha": "sk-soak-alpha", "beta": "sk-soak-beta"}
INVALIDATED = "beta"  # the tenant /admin/invalidate empties
ADMIN_TOKEN = "soak-admin-token"
MODEL = "soak"
THRESHOLD = 0.92  # paraphrases below score >= 0.987 against their original (MiniLM)
MIX = (("repeat", 0.5), ("paraphrase", 0.2), ("new", 0.3))
STREAM_SHARE = 0.2
ADMIN_EVERY_S = 10.0
FLUSH_EVERY = 12  # admin slots: one flush every 2 minutes
SAMPLE_EVERY_S = 1.0
PREFILL_LEAD_S = 5.0  # the timed run's misses fill the last ~5 s worth of the cache
REQUEST_TIMEOUT_S = 30.0
DRAIN_S = 60.0
# Past the upstream pool's keep-alive expiry (httpx default 5 s; uvicorn's, upstream side, 5 s):
# idle proxy->upstream connections are closed by then, so fds at the end count what leaked.
SETTLE_S = 7.0

ACTIONS = ["repair", "paint", "insure", "photograph", "clean", "sell", "rent", "store", "ship",
           "measure", "assemble", "recycle", "decorate", "heat", "cool", "waterproof",
           "inspect", "upgrade", "label", "polish"]  # fmt: skip
OBJECTS = ["bicycle", "piano", "greenhouse", "kayak", "laptop", "sofa", "aquarium", "telescope",
           "canoe", "violin", "chimney", "trampoline", "printer", "beehive", "sailboat",
           "fireplace", "drone", "wardrobe", "tent", "lawnmower"]  # fmt: skip
PLACES = ["in Oslo", "on a farm", "in a small flat", "near the coast", "in the mountains",
          "at a school", "in a garage", "during winter", "on a budget", "in a hospital",
          "for a wedding", "in the desert"]  # fmt: skip
WHO = ["a beginner", "my grandmother", "a student", "a restaurant", "a startup", "a museum",
       "a teenager", "a nurse"]  # fmt: skip
# Same meaning, other bytes: the exact tier misses, the semantic tier answers.
PARAPHRASES = (
    lambda t: t.replace("?", "??"),
    lambda t: "Quick question: " + t,
    lambda t: "Please answer briefly. " + t,
)


# ---- the workload ---------------------------------------------------------------------------
@dataclass
class Job:
    index: int
    due: float  # time.monotonic() at which it is due
    window: int
    tenant: str
    kind: str  # repeat, paraphrase, new
    stream: bool
    text: str


class Workload:
    """Decides each request when it is due; repeats and paraphrases draw on prompts of the
    same tenant whose first request has completed, among the newest max_entries/2 of them
    (still cached unless the tenant was invalidated or the cache flushed)."""

    def __init__(self, seed: int, max_entries: int) -> None:
        self.rng = random.Random(seed)
        self.pool = max(1, max_entries // 2)
        self.history: dict[str, list[str]] = {t: [] for t in TENANTS}
        self.counter = 0

    def new_prompt(self) -> str:
        self.counter += 1
        r = self.rng
        return (
            f"How should {r.choice(WHO)} {r.choice(ACTIONS)} a {r.choice(OBJECTS)} "
            f"{r.choice(PLACES)}? (case {self.counter})"  # the numbers guard keeps them apart
        )

    def job(self, index: int, due: float, window: int) -> Job:
        r = self.rng
        tenant = r.choice(list(TENANTS))
        kind = r.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        recent = self.history[tenant][-self.pool :]
        if not recent:
            kind = "new"
        if kind == "new":
            text = self.new_prompt()
        elif kind == "repeat":
            text = r.choice(recent)
        else:
            text = r.choice(PARAPHRASES)(r.choice(recent))
        return Job(index, due, window, tenant, kind, r.random() < STREAM_SHARE, text)

    def stored(self, job: Job) -> None:
        if job.kind == "new":
            self.history[job.tenant].append(job.text)


@dataclass
class Outcome:
    window: int
    kind: str
    stream: bool
    latency_ms: float
    status: int | None  # None: transport error
    cache: str | None  # x-cache header: HIT, MISS, BYPASS
    match: str | None  # x-cache-match: exact, semantic
    error: str | None  # 5xx, 4xx, transport, bad_body, unfinished


def body_of(text: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 32,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    }
    if stream:
        body["stream"] = True
    return body


def complete(content: bytes, stream: bool) -> bool:
    """A whole answer: SSE ending in [DONE], or JSON with a message."""
    if stream:
        return content.rstrip().endswith(b"data: [DONE]")
    try:
        message = json.loads(content)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    return isinstance(message, str) and bool(message)


async def send(clients: dict[str, httpx.AsyncClient], job: Job) -> Outcome:
    client = clients[job.tenant]
    status = cache = match = error = None
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body_of(job.text, job.stream)
        ) as response:
            content = await response.aread()
        status = response.status_code
        cache, match = response.headers.get("x-cache"), response.headers.get("x-cache-match")
        if status >= 500:
            error = "5xx"
        elif status >= 300:
            error = "4xx" if status >= 400 else "3xx"
        elif not complete(content, job.stream):
            error = "bad_body"
    except httpx.HTTPError as exc:  # a decoding error is no transport error, still an error
        kind = "transport" if isinstance(exc, httpx.TransportError) else "client"
        error = f"{kind}:{type(exc).__name__}"
    latency_ms = 1000 * (time.monotonic() - job.due)
    return Outcome(job.window, job.kind, job.stream, latency_ms, status, cache, match, error)


# ---- the proxy process and what /proc says about it ------------------------------------------
@contextlib.contextmanager
def proxy_process(config: dict[str, Any], tmp: Path) -> Iterator[tuple[str, int, Path]]:
    """`cache-proxy serve --config` in its own process group; yields (url, pid, log path)."""
    config_path, log_path = tmp / "proxy.yaml", tmp / "proxy.log"
    config_path.write_text(yaml.safe_dump(config))
    with running_proxy_process(log_path, ["--config", str(config_path)]) as (url, process):
        yield url, process.pid, log_path


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def entries_from_metrics(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        if line.startswith('cache_proxy_entries{tenant="'):
            tenant = line.split('"', 2)[1]
            found[tenant] = int(float(line.rsplit(" ", 1)[1]))
    return found


@dataclass
class Sample:
    t: float  # s since the timed run started
    rss: int
    fds: int
    entries: dict[str, int]


@dataclass
class Watch:
    pid: int
    max_entries: int
    samples: list[Sample] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)
    full_at_s: float | None = None
    rss_full: int | None = None

    async def sample(self, client: httpx.AsyncClient, t0: float) -> None:
        try:
            entries = entries_from_metrics((await client.get("/metrics")).text)
        except httpx.TransportError:
            entries = {}
        now = time.monotonic() - t0
        sample = Sample(now, rss_bytes(self.pid), open_fds(self.pid), entries)
        self.samples.append(sample)
        self.reached |= {t for t, n in entries.items() if n >= self.max_entries}
        if self.full_at_s is None and self.reached >= set(TENANTS):
            self.full_at_s, self.rss_full = now, sample.rss

    async def run(self, client: httpx.AsyncClient, t0: float) -> None:
        while True:
            await self.sample(client, t0)
            await asyncio.sleep(SAMPLE_EVERY_S)


@dataclass
class AdminCall:
    t: float
    action: str
    status: int | None
    error: str | None
    answer: Any


async def admin_loop(client: httpx.AsyncClient, t0: float, calls: list[AdminCall]) -> None:
    slot = 0
    while True:
        slot += 1
        await asyncio.sleep(max(0.0, t0 + slot * ADMIN_EVERY_S - time.monotonic()))
        if slot % FLUSH_EVERY == 0:
            action, request = "flush", client.post("/admin/flush")
        elif slot % 2:
            action, request = "stats", client.get("/admin/stats")
        else:
            action = f"invalidate {INVALIDATED}"
            request = client.post("/admin/invalidate", json={"tenant": INVALIDATED})
        status = error = answer = None
        try:
            response = await request
            status = response.status_code
            if status >= 300:
                error = "5xx" if status >= 500 else "4xx"
            elif action != "stats":
                answer = response.json()
        except httpx.TransportError as exc:
            error = f"transport:{type(exc).__name__}"
        calls.append(AdminCall(time.monotonic() - t0, action, status, error, answer))


# ---- the run --------------------------------------------------------------------------------
@dataclass
class Plan:
    duration_s: float
    rate: float
    window_s: float
    max_entries: int
    workers: int
    seed: int

    @property
    def requests(self) -> int:
        return int(self.duration_s * self.rate)

    @property
    def windows(self) -> int:
        return math.ceil(self.duration_s / self.window_s)


def proxy_config(upstream: str, max_entries: int) -> dict[str, Any]:
    tenants = {name: {"api_keys": [key], "threshold": THRESHOLD} for name, key in TENANTS.items()}
    return {
        "upstream": {"url": upstream},
        "cache": {"backend": "embedded", "max_entries": max_entries},
        "admin": {"token": ADMIN_TOKEN},
        "tenants": tenants,
    }


def tenant_clients(url: str, workers: int) -> dict[str, httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    return {
        tenant: httpx.AsyncClient(
            base_url=url,
            timeout=REQUEST_TIMEOUT_S,
            limits=limits,
            headers={"authorization": f"Bearer {key}"},
        )
        for tenant, key in TENANTS.items()
    }


async def prefill(clients: dict[str, httpx.AsyncClient], workload: Workload, plan: Plan) -> None:
    misses_per_tenant_s = plan.rate * dict(MIX)["new"] / len(TENANTS)
    per_tenant = max(0, plan.max_entries - math.ceil(PREFILL_LEAD_S * misses_per_tenant_s))
    jobs = asyncio.Queue[Job]()
    for _ in range(per_tenant):
        for tenant in TENANTS:
            jobs.put_nowait(Job(0, 0.0, 0, tenant, "new", False, workload.new_prompt()))
    bar = tqdm(total=jobs.qsize(), desc="prefill", unit="req", file=sys.stderr, mininterval=1.0)

    async def worker() -> None:
        while not jobs.empty():
            job = jobs.get_nowait()
            job.due = time.monotonic()
            outcome = await send(clients, job)
            if outcome.error or outcome.cache != "MISS":
                raise RuntimeError(f"prefill: {job.text!r} got {outcome}")
            workload.stored(job)
            bar.update()

    try:
        await asyncio.gather(*(worker() for _ in range(plan.workers)))
    finally:
        bar.close()


@dataclass
class Measured:
    outcomes: list[Outcome]
    watch: Watch
    calls: list[AdminCall]
    final_stats: dict[str, Any]  # GET /admin/stats after the load
    rss_fds: tuple[int, int, int, int]  # RSS start, fds start, RSS end, fds end


async def timed_run(url: str, pid: int, plan: Plan) -> Measured:
    watch = Watch(pid, plan.max_entries)
    rss_start, fds_start = rss_bytes(pid), open_fds(pid)
    workload = Workload(plan.seed, plan.max_entries)
    outcomes: list[Outcome] = []
    calls: list[AdminCall] = []
    admin_headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    clients = tenant_clients(url, plan.workers)
    async with contextlib.AsyncExitStack() as stack:
        for client in clients.values():
            await stack.enter_async_context(client)
        admin = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, headers=admin_headers)
        )
        await prefill(clients, workload, plan)

        jobs = asyncio.Queue[Job | None]()
        bar = tqdm(total=plan.requests, desc="soak", unit="req", file=sys.stderr, mininterval=1.0)
        t0 = time.monotonic()

        async def dispatch() -> None:
            for i in range(plan.requests):
                due = t0 + i / plan.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                window = min(int(i / plan.rate / plan.window_s), plan.windows - 1)
                jobs.put_nowait(workload.job(i, due, window))
            for _ in range(plan.workers):
                jobs.put_nowait(None)

        errors = 0

        async def worker() -> None:
            nonlocal errors
            while (job := await jobs.get()) is not None:
                outcome = await send(clients, job)
                if outcome.error is None and outcome.cache == "MISS":
                    workload.stored(job)
                outcomes.append(outcome)
                if outcome.error:
                    errors += 1
                    bar.set_postfix(errors=errors, refresh=False)
                bar.update()

        background = [
            asyncio.create_task(watch.run(admin, t0)),
            asyncio.create_task(admin_loop(admin, t0, calls)),
        ]
        load = [asyncio.create_task(dispatch())]
        load += [asyncio.create_task(worker()) for _ in range(plan.workers)]
        try:
            await asyncio.wait(load, timeout=plan.duration_s + DRAIN_S)
            for task in load:
                if task.done() and task.exception():
                    raise task.exception()  # type: ignore[misc]
            unfinished = plan.requests - len(outcomes)
            outcomes += [
                Outcome(plan.windows - 1, "?", False, math.nan, None, None, None, "unfinished")
            ] * unfinished
        finally:
            bar.close()
            for task in (*load, *background):
                task.cancel()
            await asyncio.gather(*load, *background, return_exceptions=True)
        await watch.sample(admin, t0)  # the state the load left
        final_stats = (await admin.get("/admin/stats")).json()
    await asyncio.sleep(SETTLE_S)  # every client connection is closed; upstream ones expire
    rss_fds = (rss_start, fds_start, rss_bytes(pid), open_fds(pid))
    return Measured(outcomes, watch, calls, final_stats, rss_fds)


# ---- the report -----------------------------------------------------------------------------
def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def mib(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def window_rows(plan: Plan, outcomes: list[Outcome], watch: Watch) -> list[dict[str, Any]]:
    rows = []
    for w in range(plan.windows):
        mine = [o for o in outcomes if o.window == w]
        ok = [o for o in mine if o.error is None]
        lat = [o.latency_ms for o in ok]
        start, end = w * plan.window_s, min((w + 1) * plan.window_s, plan.duration_s)
        last = [s for s in watch.samples if s.t <= end] or watch.samples[:1]
        rows.append(
            {
                "window": f"{start:.0f}-{end:.0f}s",
                "requests": len(mine),
                "streamed": sum(1 for o in mine if o.stream),
                "p50_ms": round(percentile(lat, 0.5), 2),
                "p99_ms": round(percentile(lat, 0.99), 2),
                "max_ms": round(max(lat, default=math.nan), 2),
                "errors": len(mine) - len(ok),
                "status_5xx": sum(1 for o in mine if o.error == "5xx"),
                "hit_ratio": round(sum(1 for o in ok if o.cache == "HIT") / len(ok), 3)
                if ok
                else 0.0,
                "exact_hits": sum(1 for o in ok if o.match == "exact"),
                "semantic_hits": sum(1 for o in ok if o.match == "semantic"),
                "rss_mib": mib(last[-1].rss) if last else None,
                "fds": last[-1].fds if last else None,
                "entries": dict(last[-1].entries) if last else {},
            }
        )
    return rows


def summarise(plan: Plan, measured: Measured, upstream_calls: int) -> dict[str, Any]:
    outcomes, watch, calls = measured.outcomes, measured.watch, measured.calls
    rss_start, fds_start, rss_end, fds_end = measured.rss_fds
    windows = window_rows(plan, outcomes, watch)
    errors = Counter(o.error for o in outcomes if o.error)
    admin_errors = Counter(c.error for c in calls if c.error)
    ok = [o for o in outcomes if o.error is None]
    by_kind = {}
    for kind, _ in MIX:
        mine = [o for o in ok if o.kind == kind]
        matches = Counter(o.match or (o.cache or "?").lower() for o in mine)
        by_kind[kind] = {"requests": len(mine), **dict(matches)}
    first, last = windows[0]["p99_ms"], windows[-1]["p99_ms"]
    growth = None
    if watch.rss_full:
        growth = round(100 * (rss_end - watch.rss_full) / watch.rss_full, 2)
    tenants = measured.final_stats.get("tenants", {})
    summary = {
        "requests": len(outcomes),
        "errors": sum(errors.values()),
        "status_5xx": errors.get("5xx", 0) + admin_errors.get("5xx", 0),
        "transport_errors": sum(
            n for e, n in (errors + admin_errors).items() if e.startswith("transport")
        ),
        "error_kinds": dict(errors),
        "admin_calls": Counter(c.action for c in calls),
        "admin_errors": dict(admin_errors),
        "hit_ratio": round(sum(1 for o in ok if o.cache == "HIT") / len(ok), 3) if ok else 0.0,
        "by_kind": by_kind,
        "p99_first_ms": first,
        "p99_last_ms": last,
        "p99_drift_ms": round(last - first, 2),
        "p99_drift_ratio": round(last / first, 3) if first else None,
        "rss_start_mib": mib(rss_start),
        "rss_full_mib": mib(watch.rss_full),
        "rss_end_mib": mib(rss_end),
        "rss_peak_mib": mib(max([s.rss for s in watch.samples] + [rss_end])),
        "rss_growth_full_to_end_pct": growth,
        "full_at_s": None if watch.full_at_s is None else round(watch.full_at_s, 1),
        "fds_start": fds_start,
        "fds_end": fds_end,
        "entries_end": {t: s["entries"] for t, s in tenants.items()},
        "evictions": {t: s["evictions"] for t, s in tenants.items()},
        "upstream_calls": upstream_calls,
    }
    return {
        "plan": asdict(plan) | {"requests": plan.requests, "threshold": THRESHOLD},
        "windows": windows,
        "summary": summary,
        "admin": [asdict(c) for c in calls],
        "samples": [asdict(s) for s in watch.samples],
    }


def print_report(report: dict[str, Any]) -> None:
    plan, s = report["plan"], report["summary"]
    print(
        f"\nsoak: {plan['duration_s']:g} s at {plan['rate']:g} req/s open loop, "
        f"{plan['workers']} client tasks, 2 tenants, max_entries {plan['max_entries']} per "
        f"tenant, threshold {plan['threshold']}, scripted upstream, embedded backend"
    )
    head = ("window", "reqs", "stream", "p50 ms", "p99 ms", "max ms", "errors", "5xx", "hit",
            "exact", "sem", "entries a/b", "RSS MiB", "fds")  # fmt: skip
    widths = (11, 6, 7, 8, 8, 8, 7, 5, 6, 6, 5, 12, 9, 5)
    print("".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for row in report["windows"]:
        cells = (row["window"], row["requests"], row["streamed"], f"{row['p50_ms']:.1f}",
                 f"{row['p99_ms']:.1f}", f"{row['max_ms']:.1f}", row["errors"],
                 row["status_5xx"], f"{row['hit_ratio']:.2f}", row["exact_hits"],
                 row["semantic_hits"], "/".join(str(row["entries"].get(t, 0)) for t in TENANTS),
                 row["rss_mib"], row["fds"])  # fmt: skip
        print("".join(f"{c!s:>{w}}" for c, w in zip(cells, widths, strict=True)))
    kinds = ", ".join(
        f"{k} {v['requests']} ({', '.join(f'{m} {n}' for m, n in v.items() if m != 'requests')})"
        for k, v in s["by_kind"].items()
    )
    admin = ", ".join(f"{a} {n}" for a, n in s["admin_calls"].items())
    lines = [
        ("requests", f"{s['requests']} ({kinds})"),
        ("errors", f"{s['errors']} {s['error_kinds'] or ''}; admin errors {s['admin_errors']}"),
        ("5xx / transport errors", f"{s['status_5xx']} / {s['transport_errors']}"),
        ("hit ratio", f"{s['hit_ratio']:.3f}; upstream calls {s['upstream_calls']}"),
        ("admin calls", admin or "none"),
        (
            "p99 first -> last window",
            f"{s['p99_first_ms']:.1f} -> {s['p99_last_ms']:.1f} ms "
            f"(drift {s['p99_drift_ms']:+.1f} ms, x{s['p99_drift_ratio']})",
        ),
        (
            "RSS start / full / end",
            f"{s['rss_start_mib']} / {s['rss_full_mib']} / {s['rss_end_mib']} MiB "
            f"(peak {s['rss_peak_mib']}; full at {s['full_at_s']} s; "
            f"full -> end {s['rss_growth_full_to_end_pct']}%)",
        ),
        ("open fds start / end", f"{s['fds_start']} / {s['fds_end']}"),
        ("entries at end / evictions", f"{s['entries_end']} / {s['evictions']}"),
    ]
    print()
    for name, value in lines:
        print(f"{name:<28}{value}")


def run(plan: Plan) -> dict[str, Any]:
    upstream = ScriptedUpstream()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_in_thread(upstream.app) as upstream_url,
    ):
        print("starting cache-proxy serve...", file=sys.stderr)
        config = proxy_config(upstream_url, plan.max_entries)
        with proxy_process(config, Path(tmp)) as (url, pid, log_path):
            try:
                measured = asyncio.run(timed_run(url, pid, plan))
            except Exception:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise
    return summarise(plan, measured, upstream.completions_called)


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: every server is stopped


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the soak, prints the table (and writes --out); returns the report as a dict."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of timed load")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per table row")
    parser.add_argument("--max-entries", type=int, default=500, help="cache.max_entries")
    parser.add_argument("--workers", type=int, default=8, help="client tasks sending requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if min(args.duration, args.rate, args.window) <= 0 or min(args.max_entries, args.workers) < 1:
        parser.error("--duration, --rate, --window must be > 0; --max-entries, --workers >= 1")
    plan = Plan(args.duration, args.rate, args.window, args.max_entries, args.workers, args.seed)
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        report = run(plan)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
