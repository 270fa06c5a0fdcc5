"""Per-tenant hit-verification policy (part of each tenant's config entry)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GuardPolicy(BaseModel):
    """Cheap lexical checks; each one can be switched off per tenant."""

    model_config = ConfigDict(extra="forbid")

    numbers: bool = True
    negation: bool = True


class VerifierPolicy(BaseModel):
    """Optional cross-encoder that re-scores (query, cached prompt) pairs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    model_path: str | None = None
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)


class VerifyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    guards: GuardPolicy = GuardPolicy()
    verifier: VerifierPolicy = VerifierPolicy()
