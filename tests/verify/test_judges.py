"""Judges: answer agreement with the real embedder, and the LLM judge's prompt and parsing."""

from __future__ import annotations

from typing import Any

import pytest

from cache_proxy.embedding import Embedder, MicroBatcher
from cache_proxy.verify.judges import (
    AnswerAgreementJudge,
    JudgeCase,
    LLMJudge,
    judge_prompt,
    parse_verdict,
)
from cache_proxy.verify.policy import GuardPolicy

CASE = JudgeCase(
    query="How can I reset the password of my router?",
    cached_prompt="How do I reset my router password?",
    cached_answer="Hold the reset button on the back of the router for ten seconds.",
    fresh_answer="Press and hold the router's reset button for about ten seconds.",
    model="tiny",
)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("yes", True), ("Yes.", True), (" NO", False), ("no, it does not", False),
     ("maybe", None), ("", None), ("yesterday", None), ("The answer is yes", None)],
)  # fmt: skip
def test_only_a_leading_yes_or_no_is_a_verdict(text: str, verdict: bool | None) -> None:
    assert parse_verdict(text) is verdict


async def test_answers_that_say_the_same_agree_and_others_do_not(embedder: Embedder) -> None:
    batcher = MicroBatcher(embedder)
    judge = AnswerAgreementJudge(batcher.embed, min_agreement=0.7)
    assert await judge.judge(CASE) is True
    other = JudgeCase(CASE.query, CASE.cached_prompt, "Paris is the capital of France.",
                      CASE.fresh_answer, "tiny")  # fmt: skip
    assert await judge.judge(other) is False
    await batcher.close()


async def test_answers_one_number_apart_are_wrong_though_their_embeddings_agree(
    embedder: Embedder,
) -> None:
    batcher = MicroBatcher(embedder)
    apart = JudgeCase(CASE.query, CASE.cached_prompt, "Hold the reset button for 10 seconds.",
                      "Hold the reset button for 30 seconds.", "tiny")  # fmt: skip
    unguarded = GuardPolicy(numbers=False, negation=False, antonyms=False)
    assert await AnswerAgreementJudge(batcher.embed, 0.9, unguarded).judge(apart) is True
    assert await AnswerAgreementJudge(batcher.embed, 0.9).judge(apart) is False
    await batcher.close()


async def test_identical_answers_agree_without_embedding() -> None:
    async def never(text: str) -> Any:
        raise AssertionError("identical answers need no embedding")

    same = JudgeCase("q", "p", " the answer ", "the answer", "tiny")
    assert await AnswerAgreementJudge(never, 0.99).judge(same) is True


def test_the_llm_judge_prompt_bounds_the_answers_it_quotes() -> None:
    long = JudgeCase("q?", "p?", "a" * 10_000, "b" * 10_000, "tiny")
    prompt = judge_prompt(long)
    assert "Question: q?" in prompt and len(prompt) < 5_000


async def test_the_llm_judge_reads_the_engine_s_first_choice() -> None:
    asked: list[dict[str, Any]] = []

    def engine(reply: Any) -> Any:
        async def ask(body: dict[str, Any]) -> dict[str, Any]:
            asked.append(body)
            return {"choices": [{"message": {"content": reply}}]}

        return ask

    assert await LLMJudge(engine("Yes")).judge(CASE) is True
    assert await LLMJudge(engine("no")).judge(CASE) is False
    assert await LLMJudge(engine(None)).judge(CASE) is None
    assert asked[0]["temperature"] == 0.0 and asked[0]["max_tokens"] == 3

    async def malformed(body: dict[str, Any]) -> dict[str, Any]:
        return {"choices": []}

    assert await LLMJudge(malformed).judge(CASE) is None
