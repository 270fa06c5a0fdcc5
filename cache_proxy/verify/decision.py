"""The one decision path, shared by the server, `cache-proxy eval` and `calibrate`.

Order, cheapest first: identical text -> similarity threshold -> lexical guards -> verifier.
The verifier only runs on candidates that survived the first three and only when the best of
them is below the policy's `accept_above` bound, so most misses never reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cache_proxy.verify.candidate import Candidate, VerifierLoader
from cache_proxy.verify.guards import failed_guard
from cache_proxy.verify.policy import VerifierPolicy, VerifyPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """`reason` is one of: identical, accepted, accepted_sure, verified, below_threshold,
    guard:<name>, verifier_rejected, verifier_unavailable."""

    candidate: Candidate | None
    reason: str
    verifier_score: float | None = None


class HitDecider:
    """Picks the best candidate that passes threshold, guards and verifier, or none.

    `load_verifier` maps a model path to its verifier (the app's VerifierRegistry: loaded once
    per path, thread-safe), so one decider serves every tenant; `decide` is blocking and meant
    for a worker thread.
    """

    def __init__(self, load_verifier: VerifierLoader) -> None:
        self._load_verifier = load_verifier

    def decide(
        self,
        query: str,
        candidates: Sequence[Candidate],
        threshold: float,
        policy: VerifyPolicy,
    ) -> Decision:
        ranked = sorted(candidates, key=lambda c: c.similarity, reverse=True)
        for candidate in ranked:
            if candidate.text == query:
                return Decision(candidate, "identical")
        above = [c for c in ranked if c.similarity >= threshold]
        if not above:
            return Decision(None, "below_threshold")
        passed: list[Candidate] = []
        first_rejection = ""
        for candidate in above:
            rejected_by = failed_guard(query, candidate.text, policy.guards)
            if rejected_by is None:
                passed.append(candidate)
            first_rejection = first_rejection or (rejected_by or "")
        if not passed:
            return Decision(None, f"guard:{first_rejection}")
        return self._verify(query, passed, policy.verifier)

    def _verify(self, query: str, passed: list[Candidate], policy: VerifierPolicy) -> Decision:
        if not policy.enabled or not policy.model_path:
            return Decision(passed[0], "accepted")
        if policy.accept_above is not None and passed[0].similarity >= policy.accept_above:
            return Decision(passed[0], "accepted_sure")
        try:
            scores = self._load_verifier(policy.model_path).score(query, passed)
        except Exception:  # fail closed: a broken verifier must not serve unverified hits
            log.exception("verifier at %s failed; treating as a miss", policy.model_path)
            return Decision(None, "verifier_unavailable")
        best = max(range(len(passed)), key=lambda i: scores[i])
        if scores[best] < policy.min_score:
            return Decision(None, "verifier_rejected", verifier_score=scores[best])
        return Decision(passed[best], "verified", verifier_score=scores[best])
