"""The online policy: the boundary moves only on judged evidence and keeps the bound."""

from __future__ import annotations

import pytest

from cache_proxy.verify.bounds import Z_ONE_SIDED_95, one_sided_z, wilson_lower, wilson_upper
from cache_proxy.verify.online import EntryEvidence, OnlinePolicy, OnlineSettings, TenantBoundary

NO_AUDIT = 0.99  # an audit draw above every audit_rate used here


def test_wilson_bounds() -> None:
    assert wilson_upper(0, 0, Z_ONE_SIDED_95) == 1.0
    assert wilson_upper(0, 300, Z_ONE_SIDED_95) == pytest.approx(0.0089, abs=2e-4)
    assert wilson_upper(0, 100, Z_ONE_SIDED_95) > 0.01  # 100 clean verdicts cannot show 1%
    assert wilson_lower(5, 100, 1.96) < 0.05 < wilson_upper(5, 100, 1.96)


def test_a_lower_confidence_certifies_the_same_clean_tail_sooner() -> None:
    assert one_sided_z(0.95) == pytest.approx(Z_ONE_SIDED_95, abs=1e-4)
    boundary = TenantBoundary(OnlineSettings(max_error=0.01))
    boundary.add_all([0.9] * 200, [True] * 200)  # 200 clean: under 268, over 163
    boundary.refresh()
    assert boundary.boundary == 1.0  # not at 95%
    boundary.reconfigure(OnlineSettings(max_error=0.01, confidence=0.9))
    assert boundary.boundary == pytest.approx(0.9)
    boundary.add(0.9, False)  # one wrong in 201: over 1% even at 90%
    boundary.refresh()
    assert boundary.boundary == 1.0


def test_only_identical_prompts_are_served_before_any_evidence() -> None:
    policy = OnlinePolicy(OnlineSettings(floor=0.8))
    entry = EntryEvidence()
    assert policy.tenant.boundary == 1.0
    assert policy.decide(0.99, entry, NO_AUDIT) == "explore"
    assert policy.decide(0.79, entry, NO_AUDIT) == "miss"


def test_clean_evidence_lowers_the_boundary_and_a_wrong_tail_keeps_it_up() -> None:
    policy = OnlinePolicy(OnlineSettings(max_error=0.01, min_verdicts=30))
    for i in range(300):  # 300 correct verdicts at 0.95-0.99: a Wilson bound under 1%
        policy.record(0.95 + (i % 5) * 0.01, True, EntryEvidence())
    assert policy.tenant.boundary == pytest.approx(0.95)
    for _ in range(20):  # wrong verdicts at 0.90 must not let the boundary reach them
        policy.record(0.90, False, EntryEvidence())
    assert policy.tenant.boundary == pytest.approx(0.95)
    assert policy.decide(0.96, EntryEvidence(), NO_AUDIT) == "serve"
    assert policy.decide(0.92, EntryEvidence(), NO_AUDIT) == "explore"


def test_an_entrys_own_wrong_verdict_raises_its_boundary() -> None:
    policy = OnlinePolicy(OnlineSettings(min_verdicts=30))
    for _ in range(1000):
        policy.record(0.97, True, EntryEvidence())
    tricky = EntryEvidence()
    policy.record(0.975, False, tricky)
    assert policy.decide(0.976, EntryEvidence(), NO_AUDIT) == "serve"
    assert policy.decide(0.976, tricky, NO_AUDIT) == "explore"
    assert policy.decide(0.985, tricky, NO_AUDIT) == "serve"


def test_audits_explore_a_share_of_would_be_hits() -> None:
    policy = OnlinePolicy(OnlineSettings(audit_rate=0.1))
    for _ in range(400):
        policy.record(0.97, True, EntryEvidence())
    assert policy.decide(0.98, EntryEvidence(), 0.05) == "explore"
    assert policy.decide(0.98, EntryEvidence(), 0.5) == "serve"


def test_entry_evidence_is_bounded() -> None:
    entry = EntryEvidence()
    for i in range(100):
        entry.record(0.5 + i / 1000, i == 0)
    assert len(entry.verdicts) == 16 and entry.verdicts[-1] == (0.599, False)


def test_counting_many_at_once_is_counting_each() -> None:
    values = [0.0, 0.005, 0.95, 0.9500000001, 0.999, 1.0, 1.2, -0.1]
    correct = [True, False, True, True, False, True, True, False]
    one_by_one, at_once = (TenantBoundary(OnlineSettings(min_verdicts=1)) for _ in range(2))
    for value, right in zip(values, correct, strict=True):
        one_by_one.add(value, right)
    at_once.add_all(values, correct)
    assert at_once._correct == one_by_one._correct and at_once._wrong == one_by_one._wrong
