"""Per-tenant hit-verification policy (part of each tenant's config entry)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GuardPolicy(BaseModel):
    """Cheap lexical checks (cache_proxy/verify/guards.py); each one can be switched off."""

    model_config = ConfigDict(extra="forbid")

    numbers: bool = True  # "2016" vs "2017", "two" vs "3"
    negation: bool = True  # "not", "never", "doesn't" on one side only
    antonyms: bool = True  # best/worst, buy/sell, before/after ... swapped
    entities: bool = False  # a capitalised name missing from the other prompt (Nepal vs Spain)
    question_word: bool = False  # what/how/why/who/when/where differ


class VerifierPolicy(BaseModel):
    """Optional learned verifier that re-scores (query, cached prompt) pairs.

    `model_path` is a directory written by `cache-proxy train-verifier` (or `calibrate`); its
    `verifier.json` says which kind it is (cross-encoder or feature classifier).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    model_path: str | None = None
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    # Similarity at or above which the candidate is served without running the verifier.
    accept_above: float | None = Field(default=None, ge=0.0, le=1.0)


class OnlineVerifyPolicy(BaseModel):
    """Hits verified online (cache_proxy/explore.py, verify/online.py): the serve boundary is
    learned from judged explorations instead of being the static `threshold`.

    A candidate (after guards and verifier) at or above the learned boundary is served; below
    it but at or above `floor` it is *explored*: the client gets the engine's fresh answer (a
    miss) and a judge compares it with the cached answer off the hit path. The boundary is the
    lowest similarity whose judged tail has an upper bound (at `confidence`) of wrong verdicts
    at most `max_error`; until enough verdicts support one, only identical prompts are served.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    max_error: float = Field(default=0.01, gt=0.0, lt=0.5)
    floor: float = Field(default=0.6, ge=0.0, le=1.0)  # below: a plain miss, never explored
    min_verdicts: int = Field(default=30, ge=1)
    audit_rate: float = Field(default=0.05, ge=0.0, le=1.0)  # share of would-be hits explored
    # Of the bound: with no wrong verdict, 1% needs 268 clean ones at 0.95, 163 at 0.9.
    confidence: float = Field(default=0.95, ge=0.8, le=0.999)
    # answer_agreement: the two answers' embedding cosine >= min_agreement (no engine call);
    # llm: the engine itself is asked whether the cached answer answers the new prompt.
    judge: Literal["answer_agreement", "llm"] = "answer_agreement"
    min_agreement: float = Field(default=0.9, ge=0.0, le=1.0)


class VerifyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    guards: GuardPolicy = GuardPolicy()
    verifier: VerifierPolicy = VerifierPolicy()
    # Shadow verification (cache_proxy/shadow.py): this fraction of semantic hits of
    # temperature-0 requests is also asked of the engine in the background; the two answers are
    # embedded and compared, and a hit whose answers agree below `shadow_min_agreement` counts
    # as suspect (cache_proxy_shadow_*_total, GET /admin/shadow). The client still gets the hit.
    shadow_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    shadow_min_agreement: float = Field(default=0.8, ge=0.0, le=1.0)
    # Set: the proxy raises this tenant's threshold by itself when shadow verdicts show more
    # suspect hits than this among those served (never below `threshold`; cache_proxy/shadow.py).
    shadow_target_error: float | None = Field(default=None, gt=0.0, lt=1.0)
    online: OnlineVerifyPolicy = OnlineVerifyPolicy()
