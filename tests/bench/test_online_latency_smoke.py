"""bench/online_latency.py at a small size: it fills a tenant, fits, and prints the ratio."""

from __future__ import annotations

import sys

import pytest

from bench import online_latency


async def test_the_benchmark_prints_the_ratio(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online_latency, "VERDICTS_KEPT", 1000)
    monkeypatch.setattr(online_latency, "ENTRIES_KEPT", 1000)
    monkeypatch.setattr(sys, "argv", ["online_latency", "--queries", "20"])
    await online_latency.main()
    out = capsys.readouterr().out
    assert "scorer fitted: True" in out and "x embedding" in out
