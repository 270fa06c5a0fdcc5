from __future__ import annotations

import asyncio

import numpy as np

from cache_proxy.embedding import MicroBatcher
from cache_proxy.embedding.base import Embedder
from tests.support.embedders import CountingEmbedder


async def test_concurrent_texts_share_batches_and_keep_their_rows(
    embedder: Embedder,
) -> None:
    counting = CountingEmbedder(embedder)
    batcher = MicroBatcher(counting, max_batch_size=16)  # no extra wait: natural batching
    texts = [f"question number {i} about topic {i % 3}" for i in range(12)]
    vectors = await asyncio.gather(*[batcher.embed(t) for t in texts])
    await batcher.close()
    assert len(counting.batches) < len(texts)
    expected = embedder.encode(texts)
    for got, want in zip(vectors, expected, strict=True):
        assert np.allclose(got, want, atol=1e-4)
    assert np.allclose(np.linalg.norm(np.stack(vectors), axis=1), 1.0, atol=1e-4)


async def test_embedding_does_not_block_the_event_loop(
    embedder: Embedder,
) -> None:
    batcher = MicroBatcher(embedder, max_batch_size=64, max_wait_ms=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*[batcher.embed("a fairly long sentence " * 20) for _ in range(64)])
    task.cancel()
    await batcher.close()
    assert ticks > 5
