"""PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cache_proxy.evaluation.sweep import Outcome


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
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(xs, [o.hit_rate for o in curve], label="answered from cache (hit rate)")
    ax.plot(xs, [o.recall for o in curve], label="recall")
    ax.plot(xs, [o.error("judged") for o in curve], label="wrong (judged) / hits")
    ax.plot(xs, [o.error("conservative") for o in curve], label="wrong (conservative) / hits")
    if target is not None:
        ax.axhline(target[0], color="grey", linestyle=":", label=f"target {target[1]} error")
    if chosen is not None:
        x = chosen.setting.threshold
        ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.plot([x], [chosen.hit_rate], "ko", label=f"chosen: threshold {x:.2f}")
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
