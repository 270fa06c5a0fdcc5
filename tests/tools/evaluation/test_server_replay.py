"""`cache-proxy eval --server`: the cache simulation through a real proxy app, judged alike."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import httpx
import pytest

from cache_proxy.cli import main
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import VerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair, load_pairs
from cache_tools.evaluation.server_replay import (
    Asked,
    ServerTarget,
    judge_answers,
    replay_through_server,
)
from cache_tools.evaluation.simulate import simulate
from cache_tools.evaluation.training import table_for
from tests.conftest import ProxyFactory
from tests.tools.test_commands import SAMPLE

ONE_TENANT = {
    "upstream": {"url": "http://engine.test"},
    "tenants": {"acme": {"api_keys": ["sk-acme-1"], "threshold": 0.85}},
}


def test_judging_server_answers() -> None:
    book = LabelBook([Pair("how to cook rice", "how do I cook rice", 1), Pair("a?", "b?", 0)])
    filled = {"e1": "how to cook rice", "e2": "a?"}
    queries = ["how do I cook rice", "b?", "c?", "a?", "d?"]
    asked = [
        Asked("HIT", "semantic", "e1"),
        Asked("HIT", "semantic", "e2"),
        Asked("HIT", "semantic", "not-filled-by-this-run"),
        Asked("HIT", "exact", "e2"),
        Asked("MISS", "", None),
    ]
    summary = judge_answers(queries, asked, filled, frozenset(filled.values()), book)
    assert (summary.correct, summary.wrong, summary.unjudged, summary.queries) == (2, 1, 1, 5)
    assert summary.reasons == {"hit_semantic": 2, "foreign": 1, "hit_exact": 1, "miss": 1}
    assert summary.answerable == 2  # the rice question and the identical "a?"


async def test_through_the_proxy_equals_the_in_process_simulation(
    tmp_path: Path, proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_PROXY_EVAL_CACHE", str(tmp_path / "cache"))
    with gzip.open(SAMPLE, "rt") as source:
        (tmp_path / "pairs.jsonl").write_text("".join(itertools.islice(source, 300)))
    pairs = load_pairs(tmp_path / "pairs.jsonl")
    book = LabelBook(pairs)
    async with proxy_factory(ONE_TENANT) as proxy:
        target = ServerTarget("http://proxy.test", "sk-acme-1", model="tiny")
        transport = httpx.ASGITransport(app=proxy.app)
        served = await replay_through_server(pairs, book, target, transport=transport)
    decider = HitDecider(VerifierRegistry().load)
    offline = simulate(pairs, book, table_for(pairs), decider, 0.85, VerifyPolicy())
    assert served.correct > 5 and served.wrong + served.unjudged > 5  # hits of every kind
    counts = ("queries", "answerable", "correct", "wrong", "unjudged")
    assert {c: getattr(served, c) for c in counts} == {c: getattr(offline, c) for c in counts}


@pytest.fixture
def one_pair(tmp_path: Path) -> str:
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"text_a": "a", "text_b": "b", "label": 0}\n')
    return str(pairs)


def test_server_eval_needs_a_key(
    one_pair: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CACHE_PROXY_API_KEY", raising=False)
    assert main(["eval", "--pairs", one_pair, "--server", "http://127.0.0.1:9"]) == 2
    assert "--api-key" in capsys.readouterr().out


def test_server_eval_unreachable_is_a_clean_error(
    one_pair: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--pairs", one_pair, "--server", "http://127.0.0.1:9", "--api-key", "k"]
    assert main([*args, "--model", "m"]) == 2
    assert "eval --server" in capsys.readouterr().out


def test_server_eval_has_no_plot(one_pair: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "--pairs", one_pair, "--server", "http://127.0.0.1:9", "--api-key", "k"]
    assert main([*args, "--plot", "x.png"]) == 2
    assert "--plot works without --server" in capsys.readouterr().out
