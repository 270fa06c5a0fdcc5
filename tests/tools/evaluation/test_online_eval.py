"""eval --policy online: the stream replay learns a boundary from judged explorations only."""

from __future__ import annotations

from collections.abc import Sequence

from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.online import OnlineSettings
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.online_eval import Stream, oracle_static, run_online, verifier_scorer
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
