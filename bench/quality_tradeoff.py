"""Answer-quality trade-off on held-out pairs: calibrate on "calib", report on "test".

    .venv/bin/python -m bench.quality_tradeoff [--pairs FILE] [--verifier-dir build/verifiers]
        [--tenant qqp] [--plot build/quality_tradeoff.png]

For each verifier option (none; feature classifier; cross-encoder, when trained) and each error
target, the setting calibrate would choose on the calib part, and what it delivers on the test
part (hit rate, wrong judged/conservative, recall). Also the recall-vs-error frontier on test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation import calibrate as cal
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import load_pairs, split_pairs
from cache_tools.evaluation.report import HEADER, row
from cache_tools.evaluation.sweep import Outcome, build_grid, replay
from cache_tools.evaluation.training import table_for

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/qqp_pairs_dev.jsonl.gz"
TARGETS = [("judged", 0.01), ("judged", 0.02), ("judged", 0.05), ("conservative", 0.05),
           ("conservative", 0.10), ("conservative", 0.20)]  # fmt: skip


def _prepared(
    args: argparse.Namespace,
) -> tuple[cal.CalibrationData, cal.CalibrationData, list[str]]:
    pairs = load_pairs(args.pairs)
    book, table = LabelBook(pairs), table_for(pairs)
    calib = cal.prepare(pairs, book, table, 4)
    test_grid, queries, listed = build_grid(split_pairs(pairs, "test"), book, table, 4)
    test = cal.CalibrationData(test_grid, queries, listed)
    verifiers, registry = [], VerifierRegistry()
    for kind in ("features", "crossencoder"):
        path = Path(args.verifier_dir) / f"{args.tenant}-{kind}"
        if (path / MARKER).is_file():
            verifier = registry.load(str(path))
            for data in (calib, test):
                cal.score_grid(data.grid, data.queries, data.listed, verifier, str(path), 0.75)
            verifiers.append(str(path))
    return calib, test, verifiers


def _frontier(outcomes: list[Outcome], kind: str) -> list[tuple[float, float]]:
    """Best recall reachable on test at each error level (an upper bound: picked on test)."""
    points = sorted((o.error(kind), o.recall) for o in outcomes if o.hits >= cal.MIN_HITS)
    best, frontier = -1.0, []
    for error, recall in points:
        if recall > best:
            best = recall
            frontier.append((error, recall))
    return frontier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=Path, default=SHARED)
    parser.add_argument("--verifier-dir", default="build/verifiers")
    parser.add_argument("--tenant", default="qqp")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    calib, test, verifiers = _prepared(args)
    curves = {}
    for verifier in [None, *verifiers]:
        name = "cosine + guards" if verifier is None else Path(verifier).name
        on_calib, on_test = cal.sweep(calib, verifier), cal.sweep(test, verifier)
        curves[name] = on_test
        print(f"\n== {name}: chosen on calib, measured on test ==")
        print(f"{'target':>20} | {HEADER}")
        for kind, target in TARGETS:
            chosen = cal.choose(on_calib, target, kind)
            text = (
                "no feasible setting" if chosen is None else row(replay(test.grid, chosen.setting))
            )
            print(f"{kind + ' <= ' + format(target, '.0%'):>20} | {text}")
    for kind in ("judged", "conservative"):
        print(f"\nfrontier on test ({kind} error -> best recall), upper bound:")
        for name, outcomes in curves.items():
            points = _frontier(outcomes, kind)
            sample = [p for p in points if p[0] <= 0.25][:: max(1, len(points) // 12)]
            print(f"  {name:<22}", " ".join(f"{e:.1%}:{r:.1%}" for e, r in sample))
    if args.plot:
        _plot(curves, args.plot)


def _plot(curves: dict[str, list[Outcome]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, kind in zip(axes, ("judged", "conservative"), strict=True):
        for name, outcomes in curves.items():
            points = _frontier(outcomes, kind)
            ax.plot([e for e, _ in points], [r for _, r in points], label=name)
        ax.set_xlabel(f"wrong ({kind}) / served hits")
        ax.set_ylabel("recall")
        ax.set_xlim(0, 0.25)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("test part: best recall at each error level", fontsize=10)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
