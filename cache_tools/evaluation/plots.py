"""PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cache_tools.evaluation.sweep import Outcome


def plot_curves(
    curve: Sequence[Outcome],
    chosen: Outcome | None,
    out: str | Path,
    title: str,
    target: tuple[float, str] | None = None,
) -> None:
    """Hit rate, judged/conservative error and recall vs threshold; the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [o.setting.threshold for o in curve]
    fig, (rates, errors) = plt.subplots(1, 2, figsize=(11, 4.5))
    rates.plot(xs, [o.hit_rate for o in curve], label="answered from cache (hit rate)")
    rates.plot(xs, [o.recall for o in curve], label="recall")
    rates.set_ylim(0, 1)
    errors.plot(xs, [o.error("judged") for o in curve], label="wrong (judged) / hits")
    errors.plot(xs, [o.error("conservative") for o in curve], label="wrong (conservative) / hits")
    if target is not None:
        errors.axhline(target[0], color="grey", linestyle=":", label=f"target ({target[1]})")
    kind = target[1] if target else "judged"
    _finish(rates, chosen, chosen.hit_rate if chosen else None)
    _finish(errors, chosen, chosen.error(kind) if chosen else None)
    rates.set_ylabel("share of queries / of answerable queries")
    errors.set_ylabel("share of served hits")
    fig.suptitle(title, fontsize=10)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _finish(ax: Any, chosen: Outcome | None, value: float | None) -> None:
    """Marks the chosen threshold (vertical line and point) and labels the axes."""
    if chosen is not None and value is not None:
        x = chosen.setting.threshold
        ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.plot([x], [value], "ko", label=f"chosen: threshold {x:.3f}")
    ax.set_xlabel("cosine similarity threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
