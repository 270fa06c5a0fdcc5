"""Judges: was the cached answer right for the new prompt? One protocol, two kinds.

An exploration (cache_proxy/explore.py) has both answers: the cached one, and the engine's
fresh answer to the new prompt, which the client got. A judge returns True (the cached answer
would have been right), False (wrong) or None (no verdict: the judge failed or could not tell;
nothing is learned). Judges run off the hit path, in the explorer's bounded background tasks.

- `AnswerAgreementJudge`: the two answers embedded with the cache's own model; cosine at or
  above `min_agreement` is "right". Costs two embeddings, no engine call. Embeddings are
  blind to answers that say the same words about different things (a number, a negation, an
  antonym), so the default guards run on the two answers first: one that fires is "wrong".
- `LLMJudge`: the engine is asked, greedily and briefly, whether the cached answer answers the
  new prompt, with the fresh answer as the reference. On a real instruction-tuned model this
  is the strong judge; on the tiny CPU test model its answer is noise, and it only shows the
  plumbing. An answer that is neither yes nor no is no verdict.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from cache_proxy.verify.guards import failed_guard
from cache_proxy.verify.policy import GuardPolicy

Vector = npt.NDArray[np.float32]
Embed = Callable[[str], Awaitable[Vector]]
AskEngine = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
JUDGE_MAX_TOKENS = 3
_ANSWER_CHARS = 2000  # of each answer shown to the LLM judge: bounded prompt, bounded cost
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
ANSWER_GUARDS = GuardPolicy()  # numbers, negation, antonyms (the prompts' defaults)


@dataclass(frozen=True)
class JudgeCase:
    query: str  # the new prompt (its last user turn)
    cached_prompt: str
    cached_answer: str
    fresh_answer: str
    model: str  # the model the request named: the LLM judge asks the same one


class Judge(Protocol):
    kind: str

    async def judge(self, case: JudgeCase) -> bool | None: ...


async def answer_agreement(embed: Embed, first: str, second: str) -> float:
    """Cosine of two answers' embeddings (1.0 when they are the same text): also what shadow
    verification (cache_proxy/shadow.py) measures."""
    if first.strip() == second.strip():
        return 1.0
    one, other = await asyncio.gather(embed(first), embed(second))
    return float(np.dot(one, other))


class AnswerAgreementJudge:
    kind = "answer_agreement"

    def __init__(self, embed: Embed, min_agreement: float, guards: GuardPolicy = ANSWER_GUARDS):
        self._embed = embed
        self.min_agreement = min_agreement
        self.guards = guards

    async def judge(self, case: JudgeCase) -> bool | None:
        cached, fresh = case.cached_answer.strip(), case.fresh_answer.strip()
        if cached == fresh:
            return True
        # O(answer length): off the event loop (answers can be long)
        if await asyncio.to_thread(failed_guard, fresh, cached, self.guards) is not None:
            return False
        return await answer_agreement(self._embed, cached, fresh) >= self.min_agreement


def judge_prompt(case: JudgeCase) -> str:
    return (
        "You check a cache of answers. Decide whether the cached answer is a correct and "
        "complete answer to the question. The reference answer was written for this exact "
        "question.\n\n"
        f"Question: {case.query}\n\n"
        f"Cached answer: {case.cached_answer[:_ANSWER_CHARS]}\n\n"
        f"Reference answer: {case.fresh_answer[:_ANSWER_CHARS]}\n\n"
        "Does the cached answer answer the question? Reply with one word: yes or no."
    )


def parse_verdict(text: str) -> bool | None:
    found = _YES_NO.match(text)
    return None if found is None else found.group(1).lower() == "yes"


class LLMJudge:
    kind = "llm"

    def __init__(self, ask_engine: AskEngine) -> None:
        self._ask = ask_engine

    async def judge(self, case: JudgeCase) -> bool | None:
        body = {
            "model": case.model,
            "messages": [{"role": "user", "content": judge_prompt(case)}],
            "temperature": 0.0,
            "max_tokens": JUDGE_MAX_TOKENS,
            "stream": False,
        }
        answer = await self._ask(body)
        return parse_verdict(_first_message(answer))


def _first_message(answer: dict[str, Any]) -> str:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
