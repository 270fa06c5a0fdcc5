"""Plain-text tables of simulation outcomes (same columns everywhere)."""

from __future__ import annotations

from collections.abc import Iterable

from cache_proxy.evaluation.sweep import Outcome, Setting

HEADER = (
    f"{'threshold':>9} {'guards':<34} {'min_score':>9} {'answered':>9} {'wrong(j)':>9} "
    f"{'wrong(c)':>9} {'recall':>7} {'hits':>6} {'queries':>7}"
)


def describe_guards(setting: Setting) -> str:
    return ",".join(setting.guards) or "-"


def row(outcome: Outcome) -> str:
    s = outcome.setting
    score = "-" if s.min_score is None else f"{s.min_score:.2f}"
    return (
        f"{s.threshold:>9.3f} {describe_guards(s):<34} {score:>9} {outcome.hit_rate:>9.1%} "
        f"{outcome.error('judged'):>9.2%} {outcome.error('conservative'):>9.2%} "
        f"{outcome.recall:>7.1%} {outcome.hits:>6} {outcome.queries:>7}"
    )


def table(outcomes: Iterable[Outcome]) -> str:
    return "\n".join([HEADER, *(row(o) for o in outcomes)])
