"""What `cache-proxy eval | calibrate | train-verifier` do, given parsed arguments."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import httpx

from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import GuardPolicy, VerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation import calibrate as cal
from cache_tools.evaluation.configfile import tenant_settings
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair, load_pairs, split_pairs
from cache_tools.evaluation.plots import plot_curves
from cache_tools.evaluation.report import server_table, table
from cache_tools.evaluation.server_replay import (
    ServerReplayError,
    ServerTarget,
    replay_through_server,
)
from cache_tools.evaluation.simulate import Summary, simulate
from cache_tools.evaluation.sweep import Outcome, Setting, build_grid, replay, score_grid
from cache_tools.evaluation.training import table_for, train_verifier

log = logging.getLogger(__name__)


def summary_outcome(summary: Summary, setting: Setting) -> Outcome:
    return Outcome(
        setting,
        summary.queries,
        summary.hits,
        summary.correct,
        summary.wrong,
        summary.unjudged,
        summary.answerable,
    )


def setting_of(threshold: float, policy: VerifyPolicy) -> Setting:
    guards = tuple(name for name in cal.ALL_GUARDS if getattr(policy.guards, name))
    verifier = policy.verifier
    if verifier.enabled and verifier.model_path:
        return Setting(threshold, guards, verifier.min_score, verifier.model_path)
    return Setting(threshold, guards)


def ensure_verifier(kind: str, path: Path, pairs: list[Pair], max_minutes: float) -> Path:
    """Trains `kind` into `path` on the train part unless a trained one is already there."""
    if (path / MARKER).is_file():
        log.info("using the %s verifier already trained at %s", kind, path)
        return path
    print(f"training the {kind} verifier into {path} (train part of the pairs file) ...")
    train_verifier(kind, pairs, path, max_minutes=max_minutes)
    return path


def train_command(args: argparse.Namespace) -> int:
    base = args.base_model
    if base is not None and (args.kind != "crossencoder" or not (base / "config.json").is_file()):
        print("--base-model: a model directory (with config.json), for --kind crossencoder only")
        return 2
    pairs = load_pairs(args.pairs)
    info = train_verifier(
        args.kind,
        pairs,
        Path(args.out),
        max_minutes=args.max_minutes,
        max_examples=args.max_examples,
        base_model=str(base) if base else None,
    )
    print(f"trained {args.kind} verifier into {args.out}: {info}")
    return 0


def _eval_pairs(args: argparse.Namespace, pairs: list[Pair]) -> list[Pair]:
    chosen = split_pairs(pairs, args.split)
    return chosen[: args.limit] if args.limit else chosen


def eval_command(args: argparse.Namespace) -> int:
    if args.server:
        return server_eval_command(args)
    if args.policy == "online":
        from cache_tools.evaluation.online_run import online_command

        return online_command(args)
    pairs = load_pairs(args.pairs)
    if args.config:
        threshold, policy = tenant_settings(args.config, args.tenant)
    else:
        threshold, policy = args.threshold, VerifyPolicy()
        if args.cosine_only:
            no_guards = GuardPolicy(numbers=False, negation=False, antonyms=False)
            policy = VerifyPolicy(guards=no_guards)
    subset, book = _eval_pairs(args, pairs), LabelBook(pairs)
    # --limit: embed only the simulated texts; a whole split reuses the whole-file cache that
    # calibrate builds. Labels are always those of the whole file.
    table_ = table_for(subset if args.limit else pairs)
    verifiers = VerifierRegistry()
    decider = HitDecider(verifiers.load)
    summary = simulate(subset, book, table_, decider, threshold, policy, args.top_k)
    setting = setting_of(threshold, policy)
    print(f"cache simulation: {len(subset)} pairs ({args.split}), labels from the whole file")
    print(table([summary_outcome(summary, setting)]))
    print("decisions:", dict(sorted(summary.reasons.items())))
    if args.plot:
        grid, queries, listed = build_grid(subset, book, table_, args.top_k)
        if setting.verifier:
            verifier = verifiers.load(setting.verifier)
            score_grid(grid, queries, listed, verifier, setting.verifier, min(cal.THRESHOLDS))
        curve = [
            replay(grid, Setting(t, setting.guards, setting.min_score, setting.verifier))
            for t in cal.THRESHOLDS
        ]
        plot_curves(
            curve,
            summary_outcome(summary, setting),
            args.plot,
            f"{Path(args.pairs).name} [{args.split}] {_policy_text(setting)}",
        )
        print(f"plot: {args.plot}")
    return 0


def server_eval_command(args: argparse.Namespace) -> int:
    """The simulation through a running proxy; with --config, the in-process one beside it."""
    api_key = args.api_key or os.environ.get("CACHE_PROXY_API_KEY")
    if args.plot:  # a curve needs every threshold: the in-process sweep draws it
        print("eval --server: --plot works without --server (same pairs, --config, --tenant)")
        return 2
    if not api_key:
        print("eval --server needs the tenant's key: --api-key or $CACHE_PROXY_API_KEY")
        return 2
    pairs = load_pairs(args.pairs)
    subset, book = _eval_pairs(args, pairs), LabelBook(pairs)
    target = ServerTarget(args.server, api_key, args.model, concurrency=args.concurrency)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        summary = asyncio.run(replay_through_server(subset, book, target))
    except (ServerReplayError, httpx.HTTPError) as exc:
        print(f"eval --server: {exc}")
        return 2
    print(f"through {args.server}: {len(subset)} pairs ({args.split}), labels from the whole file")
    print(server_table(summary))
    print("answers:", dict(sorted(summary.reasons.items())))
    if args.config:
        threshold, policy = tenant_settings(args.config, args.tenant)
        table_ = table_for(subset if args.limit else pairs)
        decider = HitDecider(VerifierRegistry().load)
        offline = simulate(subset, book, table_, decider, threshold, policy, args.top_k)
        print(f"in process, tenant {args.tenant} of {args.config}:")
        print(table([summary_outcome(offline, setting_of(threshold, policy))]))
    return 0


def _policy_text(setting: Setting) -> str:
    verifier = "no verifier" if setting.verifier is None else f"verifier>={setting.min_score}"
    return f"guards={','.join(setting.guards) or '-'}; {verifier}"
