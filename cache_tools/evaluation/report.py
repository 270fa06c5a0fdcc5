"""Plain-text tables of simulation outcomes (same columns everywhere)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cache_tools.evaluation.simulate import Summary
from cache_tools.evaluation.sweep import Outcome, Setting

HEADER = (
    f"{'threshold':>9} {'guards':<34} {'verifier':<22} {'answered':>9} {'wrong(j)':>9} "
    f"{'wrong(c)':>9} {'recall':>7} {'hits':>6} {'queries':>7}"
)


def describe_guards(setting: Setting) -> str:
    return ",".join(setting.guards) or "-"


def describe_verifier(setting: Setting) -> str:
    if setting.verifier is None or setting.min_score is None:
        return "-"
    return f"{Path(setting.verifier).name}>={setting.min_score:.2f}"


def row(outcome: Outcome) -> str:
    s = outcome.setting
    return (
        f"{s.threshold:>9.3f} {describe_guards(s):<34} {describe_verifier(s):<22} "
        f"{outcome.hit_rate:>9.1%} "
        f"{outcome.error('judged'):>9.2%} {outcome.error('conservative'):>9.2%} "
        f"{outcome.recall:>7.1%} {outcome.hits:>6} {outcome.queries:>7}"
    )


def table(outcomes: Iterable[Outcome]) -> str:
    return "\n".join([HEADER, *(row(o) for o in outcomes)])


def server_table(summary: Summary) -> str:
    """Same rate columns for a run whose setting is the server's (not known to this process)."""
    rates = summary.rates()
    header = (
        f"{'answered':>9} {'wrong(j)':>9} {'wrong(c)':>9} {'recall':>7} {'hits':>6} {'queries':>7}"
    )
    line = (
        f"{rates['answered']:>9.1%} {rates['wrong_judged']:>9.2%} "
        f"{rates['wrong_conservative']:>9.2%} {rates['recall']:>7.1%} "
        f"{summary.hits:>6} {summary.queries:>7}"
    )
    return f"{header}\n{line}"
