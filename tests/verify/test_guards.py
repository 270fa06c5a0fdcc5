from __future__ import annotations

import pytest

from cache_proxy.verify.guards import failed_guard, guard_signals
from cache_proxy.verify.policy import GuardPolicy

ALL_ON = GuardPolicy(numbers=True, negation=True, antonyms=True, entities=True, question_word=True)


@pytest.mark.parametrize(
    ("query", "cached", "guard"),
    [
        ("What are your resolutions for 2017?", "What are your resolutions for 2016?", "numbers"),
        ("How do I lose 5 kg in a month?", "How do I lose 10 kg in a month?", "numbers"),
        ("How can I earn two incomes?", "How can I earn 3 incomes?", "numbers"),
        ("Why is the sky blue?", "Why is the sky not blue?", "negation"),
        ("Why doesn't my phone charge?", "Why does my phone charge?", "negation"),
        ("Which is the best phone under $300?", "Which is the worst phone under $300?", "antonyms"),
        ("Should I buy bitcoin now?", "Should I sell bitcoin now?", "antonyms"),
        ("What are good gifts to bring to Nepal?", "What are good gifts to bring to Spain?",
         "entities"),
        ("What are people's gripes with YouTube?", "What are people's gripes with school?",
         "entities"),
        ("How do I learn Python?", "Why do I learn Python?", "question_word"),
    ],
)  # fmt: skip
def test_meaning_flips_are_rejected(query: str, cached: str, guard: str) -> None:
    assert guard_signals(query, cached)[guard] is True
    assert failed_guard(query, cached, ALL_ON) is not None
    only_this = GuardPolicy(**{name: name == guard for name in guard_signals(query, cached)})
    assert failed_guard(query, cached, only_this) == guard


@pytest.mark.parametrize(
    ("query", "cached"),
    [
        ("How do I improve my communication skills?", "How can I improve my communication skills?"),
        ("Who will win the 2016 election?", "Who do you think wins the 2016 election?"),
        ("Why doesn't Apple have a booth at CES?", "Why does not Apple have a booth at CES?"),
        ("What is the best way to learn French?", "What's the best way to learn French?"),
        ("How come Apple does not promote at CES?", "How come Apple doesn't promote at CES?"),
        ("Which are the best hotels in Goa?", "What are the best hotels to stay in Goa?"),
        ("How do I lose weight in two weeks?", "How can I lose weight in 2 weeks?"),
    ],
)  # fmt: skip
def test_paraphrases_pass_every_guard(query: str, cached: str) -> None:
    assert failed_guard(query, cached, ALL_ON) is None, guard_signals(query, cached)


def test_switched_off_guard_does_not_reject() -> None:
    policy = GuardPolicy(numbers=False)
    assert failed_guard("Top 10 films of 2016?", "Top 10 films of 2017?", policy) is None
    assert (
        failed_guard("Top 10 films of 2016?", "Top 10 films of 2017?", GuardPolicy()) == "numbers"
    )


def test_guard_policy_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        GuardPolicy.model_validate({"numbers": True, "typo": True})
