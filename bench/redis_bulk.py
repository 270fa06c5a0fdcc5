"""Bench-only bulk load of a tenant's entries into Redis, through the backend's own PUT script.

`RedisBackend.put` runs the PUT script once per entry and then waits for its follower to apply
the event: right for the request path, far too slow to load 100k entries. Here the same
script (cache_proxy.store.redis_scripts.PUT) runs pipelined, a batch per round trip, with
the arguments `RedisBackend.put` passes: the result is the key layout, change log, LRU order
and entry bound a real replica would have written. tests/bench/test_shared_cache_smoke.py
checks that against `RedisBackend.put`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import redis

from cache_proxy.store import redis_scripts
from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.entry import Answer
from cache_proxy.store.redis_keys import TenantKeys

_VOCABULARY = """
the a to of and in is it you that for on with as your this be can by or from router bread
Rust chain tomatoes letter guitar fan coffee puppy running money first then after before
check make sure press hold until light turns again water flour yeast salt oven minutes hours
cargo crate borrow lifetime trait gear derailleur oil rust pliers link soil sun seedlings
stake prune weeks resume skills role company tuning peg string fret ear tone dust screws vent
beans grind ratio temperature filter treat leash praise routine pace shoes budget index fund
employer match compound interest tax account
"""
WORDS = tuple(_VOCABULARY.split())
TOPICS = ("reset a home router", "bake sourdough bread", "learn Rust ownership",
          "fix a slipping bike chain", "plant tomatoes on a balcony", "write a cover letter",
          "tune a guitar by ear", "clean a noisy laptop fan", "brew pour-over coffee",
          "train a puppy to walk on a leash", "start running at forty",
          "save for retirement on a small salary")  # fmt: skip
SITUATIONS = ("in a small flat", "with no tools at hand", "on a tight budget",
              "for the first time", "before the weekend", "as a complete beginner")  # fmt: skip


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_entries(
    count: int, dimension: int, seed: int = 0, start: int = 0, partition: str | None = None
) -> Iterator[StoredEntry]:
    """Entries shaped like real ones: sha256 keys, ~80-char prompts, ~300-byte answers,
    random unit vectors, one partition (one model, no system prompt), no expiry."""
    rng = np.random.default_rng(seed)
    partition, now = partition or digest("bench-partition"), time.time()
    usage = {"prompt_tokens": 24, "completion_tokens": 70, "total_tokens": 94}
    for i in range(start, start + count):
        topic, situation = TOPICS[i % len(TOPICS)], SITUATIONS[(i // 12) % len(SITUATIONS)]
        prompt = f"Question {i}: how do I {topic} {situation}, and what should I avoid?"
        words = rng.choice(WORDS, size=64)
        content = " ".join(words)[:299].capitalize() + "."
        vector = rng.standard_normal(dimension).astype(np.float32)
        vector /= np.linalg.norm(vector)
        yield StoredEntry(
            partition=partition,
            exact=digest(f"{partition}:{prompt}"),
            query_text=prompt,
            answer=Answer("chat", "tiny", content, "stop", usage),
            vector=vector,
            created_at=now,
            expires_at=None,
        )


def bulk_put(
    client: redis.Redis,
    keys: TenantKeys,
    entries: Iterable[StoredEntry],
    max_entries: int,
    log_max_len: int,
    batch: int = 500,
) -> Iterator[int]:
    """Runs PUT for every entry, `batch` per round trip; yields the count stored per batch.
    Raises RuntimeError when the script refused one (an invalidation bumped the epoch)."""
    script = client.register_script(redis_scripts.PUT)
    epoch = int(client.get(keys.epoch) or 0)
    pending = 0
    pipe = client.pipeline(transaction=False)
    for entry in entries:
        script_keys, args = redis_scripts.put_call(keys, entry, max_entries, log_max_len, epoch)
        script(keys=script_keys, args=args, client=pipe)
        pending += 1
        if pending == batch:
            yield _execute(pipe)
            pending = 0
    if pending:
        yield _execute(pipe)


def _execute(pipe: Any) -> int:
    replies = pipe.execute()
    refused = sum(1 for reply in replies if int(reply[0]) != 1)
    if refused:
        raise RuntimeError(f"the PUT script refused {refused} entries (epoch changed)")
    return len(replies)
