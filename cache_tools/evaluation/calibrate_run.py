"""`cache-proxy calibrate`: pairs file -> a working tenant setup written into the config file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation import calibrate as cal
from cache_tools.evaluation.configfile import write_tenant_settings
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair, Part, load_pairs, split_pairs
from cache_tools.evaluation.plots import plot_curves
from cache_tools.evaluation.report import row, table
from cache_tools.evaluation.runs import ensure_verifier, summary_outcome
from cache_tools.evaluation.simulate import simulate
from cache_tools.evaluation.sweep import Outcome
from cache_tools.evaluation.training import table_for

log = logging.getLogger(__name__)


def _verifier_kinds(choice: str, verifier_dir: Path, tenant: str) -> list[str]:
    if choice == "none":
        return []
    if choice != "auto":
        return [choice]
    # auto: the cheap feature verifier always; the cross-encoder only when already trained.
    trained_ce = (verifier_dir / f"{tenant}-crossencoder" / MARKER).is_file()
    return ["features", "crossencoder"] if trained_ce else ["features"]


def _sweep_all(
    args: argparse.Namespace,
    pairs: list[Pair],
    data: cal.CalibrationData,
    verifiers: VerifierRegistry,
) -> list[Outcome]:
    outcomes = cal.sweep(data, None)
    for kind in _verifier_kinds(args.verifier, Path(args.verifier_dir), args.tenant):
        path = ensure_verifier(
            kind, Path(args.verifier_dir) / f"{args.tenant}-{kind}", pairs, args.max_train_minutes
        )
        key = str(path)
        cal.score_grid(
            data.grid, data.queries, data.listed, verifiers.load(key), key, min(cal.THRESHOLDS)
        )
        outcomes += cal.sweep(data, key)
    return outcomes


def _run_real_path(
    pairs: list[Pair],
    part: Part,
    book: LabelBook,
    args: argparse.Namespace,
    chosen: Outcome,
    verifiers: VerifierRegistry,
) -> Outcome:
    """The chosen setting through the server's HitDecider on one part of the file."""
    policy = cal.policy_for(chosen.setting)
    summary = simulate(
        split_pairs(pairs, part),
        book,
        table_for(pairs),
        HitDecider(verifiers.load),
        chosen.setting.threshold,
        policy,
        args.top_k,
    )
    return summary_outcome(summary, chosen.setting)


def calibrate_command(args: argparse.Namespace) -> int:
    pairs = load_pairs(args.pairs)
    book = LabelBook(pairs)
    data = cal.prepare(pairs, book, table_for(pairs), args.top_k)
    verifiers = VerifierRegistry()
    outcomes = _sweep_all(args, pairs, data, verifiers)
    chosen = cal.choose(outcomes, args.target_error, args.error_kind, args.margin_z)
    if chosen is None:
        print(
            f"no setting reaches {args.error_kind} error <= {args.target_error:.2%} "
            f"with at least {cal.MIN_HITS} hits on the calib part; config left unchanged"
        )
        return 2
    print(f"chosen on the calib part ({args.error_kind} error <= {args.target_error:.2%}):")
    print(table([chosen]))
    confirmed = _run_real_path(pairs, "calib", book, args, chosen, verifiers)
    if (confirmed.hits, confirmed.wrong) != (chosen.hits, chosen.wrong):
        log.warning("decider and sweep disagree on calib: %s vs %s", confirmed, chosen)
    held_out = _run_real_path(pairs, "test", book, args, chosen, verifiers)
    print("held-out check (test part, through HitDecider):")
    print(row(held_out))
    policy = cal.policy_for(chosen.setting)
    existed = write_tenant_settings(args.config, args.tenant, chosen.setting.threshold, policy)
    print(f"wrote tenants.{args.tenant}.threshold/verify into {args.config}")
    if not existed:
        print(f"note: tenant {args.tenant!r} was new: add its api_keys before serving")
    if args.plot:
        curve = cal.curve_for(outcomes, chosen)
        title = f"{Path(args.pairs).name} [calib part] tenant {args.tenant}"
        plot_curves(curve, chosen, args.plot, title, (args.target_error, args.error_kind))
        print(f"plot: {args.plot}")
    return 0
