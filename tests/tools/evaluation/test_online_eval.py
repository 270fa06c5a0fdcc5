"""eval --policy online: the stream replay learns a boundary from judged explorations only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.online import OnlineSettings
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.online_eval import (
    Stream,
    margin_scorer,
    oracle_static,
    run_online,
    stream_sides,
    verifier_scorer,
)
from cache_tools.evaluation.pairs import Pair


def _stream(similar: int, unrelated: int) -> tuple[Stream, LabelBook]:
    """`similar` paraphrases at 0.97 (labelled duplicates), then `unrelated` labelled
    non-duplicates at 0.90."""
    queries = [f"q{i}" for i in range(similar + unrelated)]
    texts = [f"c{i}" for i in range(similar + unrelated)]
    labels = [1] * similar + [0] * unrelated
    book = LabelBook([Pair(c, q, y) for q, c, y in zip(queries, texts, labels, strict=True)])
    stream = Stream(
        queries=queries,
        exact=[False] * len(queries),
        answerable=[y == 1 for y in labels],
        entries=list(range(len(queries))),
        texts=texts,
        similarities=[0.97] * similar + [0.90] * unrelated,
        runner_up=[0.5] * (similar + unrelated),
        guarded=[False] * (similar + unrelated),
    )
    return stream, book


def test_the_policy_explores_until_the_bound_is_certified_then_serves() -> None:
    stream, book = _stream(similar=1000, unrelated=200)
    result = run_online(stream, book, OnlineSettings(audit_rate=0.0), seed=0, judge="labelled")
    rates = result.rates()
    assert result.wrong == 0 and result.unjudged == 0  # the 0.90 non-duplicates never served
    assert 250 < result.judge_calls < 600  # ~300 clean verdicts certify 1%, then it serves
    assert result.correct == 1000 - (result.judge_calls - 200)
    assert abs(result.boundary - 0.97) < 0.006  # the bin the verdicts are in
    assert 0.4 < rates["recall"] < 0.75


def test_the_oracle_picks_the_best_threshold_with_the_labels() -> None:
    stream, book = _stream(similar=100, unrelated=100)
    oracle = oracle_static(stream, book, 0.01, "judged")
    assert oracle.correct == 100 and oracle.wrong == 0
    assert 0.90 < oracle.boundary <= 0.97


class _LengthVerifier:
    """A stand-in scorer: long cached texts are 'the same question' (tests the adapter only)."""

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return [min(1.0, len(c.text) / 10) for c in candidates]


def test_a_verifier_prior_feeds_its_score_with_the_similarity() -> None:
    features = verifier_scorer(_LengthVerifier())
    assert features("q", "a" * 5, 0.93, 0.1) == [0.93, 0.5, 0.1]
    stream, book = _stream(similar=600, unrelated=0)
    result = run_online(
        stream, book, OnlineSettings(audit_rate=0.0), 0, "labelled", features, "prior"
    )
    assert result.name == "prior" and result.judge_calls > 0 and result.wrong == 0


def test_a_policy_that_learned_on_earlier_traffic_serves_the_new_part_at_once() -> None:
    warm, book = _stream(similar=1000, unrelated=200)
    later, later_book = _stream(similar=250, unrelated=0)
    settings = OnlineSettings(audit_rate=0.0)
    cold = run_online(later, later_book, settings, seed=0, judge="labelled")
    learned = run_online(later, book, settings, seed=0, judge="labelled", warm=warm)
    assert cold.correct == 0 and cold.judge_calls == 250  # 250 verdicts: not yet certified
    assert learned.correct == 250 and learned.judge_calls == 0  # only `later` is reported


def test_guarded_candidates_are_plain_misses_never_judged() -> None:
    stream, book = _stream(similar=1000, unrelated=200)
    guarded = dataclasses.replace(stream, guarded=[False] * 1000 + [True] * 200)
    result = run_online(guarded, book, OnlineSettings(audit_rate=0.0), 0, "conservative")
    assert result.wrong == 0 and result.judge_calls == result.explored_correct


def test_the_margin_score_separates_what_similarity_cannot() -> None:
    """All at 0.95, one in four wrong: the right ones far ahead of their runner-up, the wrong
    ones with a runner-up close behind."""
    wrong = [i % 4 == 3 for i in range(1200)]
    queries, texts = [f"q{i}" for i in range(1200)], [f"c{i}" for i in range(1200)]
    book = LabelBook(
        [Pair(c, q, 0 if w else 1) for q, c, w in zip(queries, texts, wrong, strict=True)]
    )
    stream = Stream(
        queries=queries,
        exact=[False] * 1200,
        answerable=[not w for w in wrong],
        entries=list(range(1200)),
        texts=texts,
        similarities=[0.95] * 1200,
        runner_up=[0.945 if w else 0.80 for w in wrong],
        guarded=[False] * 1200,
    )
    settings = OnlineSettings(audit_rate=0.0)
    cosine = run_online(stream, book, settings, seed=0, judge="labelled")
    margin = run_online(stream, book, settings, 0, "labelled", margin_scorer(), "margin")
    assert cosine.correct == 0  # one similarity for both: nothing certifiable
    assert margin.wrong == 0 and margin.correct > 300


def test_the_paraphrase_stream_caches_every_statement_and_asks_the_rewordings() -> None:
    pairs = [Pair("a", "a reworded", 1), Pair("b", "not b", 0), Pair("c", "c reworded", 1)]
    cache, queries = stream_sides(pairs, "paraphrases")
    assert cache == ["a", "b", "c", "not b"] and queries == ["a reworded", "c reworded"]
    assert stream_sides(pairs, "pairs") == (["a", "b", "c"], ["a reworded", "c reworded", "not b"])
