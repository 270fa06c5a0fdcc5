"""bench/scale.py end to end at tiny sizes (one flat, one IVF partition), GPTCache included:
every semantic query must hit through the real proxy and through GPTCache, and the table
carries every section."""

from __future__ import annotations

import pytest

from bench import scale
from bench.scale_store import measure_store
from cache_proxy.config import IndexSettings


async def test_the_store_part_rebuilds_to_ivf_and_inserts_at_capacity() -> None:
    result = await measure_store(3000, 500, IndexSettings(ivf_min_entries=2000))
    assert result.kind == "ivf" and result.rebuild_s > 0
    assert result.insert_loop_us > 0 and result.insert_applied_us >= result.insert_loop_us


@pytest.mark.e2e
@pytest.mark.slow
def test_the_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    scale.run(sizes=[300, 1500], queries=12, inserts=300, gpt_sizes=[300], ivf_min_entries=1000)
    out = capsys.readouterr().out
    for section in ("== 1.", "== 2.", "== 3./4.", "== 4./5.", "== 6."):
        assert section in out
    assert "gptcache 0.1.44" in out and "x hits/s" in out
    assert "     1,500    ivf" in out  # the larger one served its hits from an IVF index
