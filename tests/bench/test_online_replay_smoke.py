"""bench/online_replay.py on the first pairs of the reworded statements: the proxy's online
tenant explores and judges through HTTP, a static tenant serves, and the counts add up."""

from __future__ import annotations

from bench.online_replay import REWORDED, replay
from cache_proxy.embedding import Embedder
from cache_tools.evaluation.pairs import load_pairs


async def test_the_replay_counts_served_right_and_judged(embedder: Embedder) -> None:
    pairs = load_pairs(REWORDED)[444:504]  # 60 rewordings of 12 topic clusters
    online = await replay("online", {"verify": {"online": {"enabled": True}}}, pairs, 0, embedder)
    assert online.queries == 60 and online.served == 0  # 60 verdicts certify nothing
    assert online.report is not None
    outcomes = online.report["outcomes"]
    assert outcomes.get("correct", 0) > 30  # the rewordings' own statements agree
    static = await replay("static", {"threshold": 0.8}, pairs, 0, embedder)
    assert static.served > 10 and static.right <= static.served and static.report is None
