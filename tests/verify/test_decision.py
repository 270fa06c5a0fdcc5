"""Decision order: identical -> threshold -> guards -> verifier; verifier only when needed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cache_proxy.verify.candidate import Candidate, Verifier
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import GuardPolicy, VerifierPolicy, VerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry

QUERY = "How do I learn Python quickly?"
CLOSE = Candidate(1, "What is the fastest way to learn Python?", 0.93)
OTHER = Candidate(2, "How do I learn Java quickly?", 0.91)
NUMBER_FLIP = Candidate(3, "How do I learn Python quickly in 2 weeks?", 0.96)


class RecordingVerifier:
    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.seen: list[list[str]] = []

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        self.seen.append([c.text for c in candidates])
        return [self.scores[c.text] for c in candidates]


def decider_with(verifier: Verifier) -> tuple[HitDecider, list[str]]:
    loads: list[str] = []

    def load(path: str) -> Verifier:
        loads.append(path)
        return verifier

    return HitDecider(load), loads


def verified(min_score: float = 0.5, accept_above: float | None = None) -> VerifyPolicy:
    return VerifyPolicy(
        verifier=VerifierPolicy(
            enabled=True, model_path="/models/v", min_score=min_score, accept_above=accept_above
        )
    )


def test_no_arg_constructor_and_threshold_only() -> None:
    decision = HitDecider(VerifierRegistry().load).decide(
        QUERY, [OTHER, CLOSE], 0.92, VerifyPolicy()
    )
    assert decision.candidate == CLOSE and decision.reason == "accepted"
    assert HitDecider(VerifierRegistry().load).decide(
        QUERY, [OTHER, CLOSE], 0.95, VerifyPolicy()
    ).reason == ("below_threshold")


def test_identical_text_skips_guards_and_verifier() -> None:
    verifier = RecordingVerifier({})
    decider, loads = decider_with(verifier)
    same = Candidate(9, QUERY, 0.2)
    decision = decider.decide(QUERY, [CLOSE, same], 0.99, verified())
    assert decision.candidate == same and decision.reason == "identical"
    assert loads == [] and verifier.seen == []


def test_guard_rejection_happens_before_the_verifier() -> None:
    verifier = RecordingVerifier({CLOSE.text: 0.9})
    decider, _ = decider_with(verifier)
    only_flip = decider.decide(QUERY, [NUMBER_FLIP], 0.9, verified())
    assert only_flip.candidate is None and only_flip.reason == "guard:numbers"
    assert verifier.seen == []
    decision = decider.decide(QUERY, [NUMBER_FLIP, CLOSE], 0.9, verified())
    assert decision.candidate == CLOSE and verifier.seen == [[CLOSE.text]]


def test_verifier_picks_best_score_and_can_reject() -> None:
    verifier = RecordingVerifier({CLOSE.text: 0.7, OTHER.text: 0.2})
    decider, loads = decider_with(verifier)
    guards_off = GuardPolicy(numbers=False, negation=False, antonyms=False)
    policy = verified(min_score=0.5).model_copy(update={"guards": guards_off})
    decision = decider.decide(QUERY, [OTHER, CLOSE], 0.9, policy)
    assert decision.candidate == CLOSE and decision.reason == "verified"
    assert decision.verifier_score == pytest.approx(0.7)
    strict = verified(min_score=0.8).model_copy(update={"guards": guards_off})
    rejected = decider.decide(QUERY, [OTHER, CLOSE], 0.9, strict)
    assert rejected.candidate is None and rejected.reason == "verifier_rejected"
    assert loads == ["/models/v", "/models/v"]


def test_sure_similarity_bound_skips_the_verifier() -> None:
    verifier = RecordingVerifier({CLOSE.text: 0.0})
    decider, loads = decider_with(verifier)
    decision = decider.decide(QUERY, [CLOSE], 0.9, verified(accept_above=0.93))
    assert decision.reason == "accepted_sure" and loads == []


def test_broken_verifier_fails_closed() -> None:
    def broken(path: str) -> Verifier:
        raise FileNotFoundError(path)

    decision = HitDecider(broken).decide(QUERY, [CLOSE], 0.9, verified())
    assert decision.candidate is None and decision.reason == "verifier_unavailable"


def test_the_registry_reports_a_missing_model_as_a_miss() -> None:
    policy = VerifyPolicy(verifier=VerifierPolicy(enabled=True, model_path="/nonexistent/v"))
    decision = HitDecider(VerifierRegistry().load).decide(QUERY, [CLOSE], 0.9, policy)
    assert decision.reason == "verifier_unavailable"
