"""`cache-proxy eval --policy online`: the report of online_eval.py, next to the oracle."""

from __future__ import annotations

import argparse

from cache_proxy.verify.features import idf_table
from cache_proxy.verify.online import OnlineSettings
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.online_eval import (
    Features,
    StreamResult,
    build_stream,
    margin_scorer,
    oracle_static,
    pair_feature_scorer,
    run_online,
    verifier_scorer,
)
from cache_tools.evaluation.pairs import Pair, load_pairs, split_pairs
from cache_tools.evaluation.training import table_for


def online_command(args: argparse.Namespace) -> int:
    if args.scorer == "verifier" and not args.verifier:
        print("eval --scorer verifier needs --verifier DIR (a trained verifier)")
        return 2
    if not 0.8 <= args.confidence <= 0.999:
        print("eval --confidence: from 0.8 to 0.999 (as verify.online.confidence)")
        return 2
    pairs = load_pairs(args.pairs)
    book, table = LabelBook(pairs), table_for(pairs)  # labels and vectors of the whole file
    part = split_pairs(pairs, args.split)
    part = part[: args.limit] if args.limit else part
    settings = OnlineSettings(
        max_error=args.max_error,
        floor=args.floor,
        min_verdicts=args.min_verdicts,
        audit_rate=args.audit_rate,
        confidence=args.confidence,
    )
    warm, cache_pairs = None, None
    if args.warm_split:  # one cache (both parts' entries); the policy learns on the warm queries
        warmup = split_pairs(pairs, args.warm_split)
        cache_pairs = warmup + part
        warm = build_stream(warmup, book, table, args.seed, args.stream, cache_pairs)
    stream = build_stream(part, book, table, args.seed, args.stream, cache_pairs)
    features, name = _scorer(args, part)
    online = run_online(stream, book, settings, args.seed, args.judge, features, name, warm)
    rows = [online] + [oracle_static(stream, book, args.max_error, kind) for kind in KINDS]
    learned_on = f", after learning on {len(warm.queries)} ({args.warm_split})" if warm else ""
    print(
        f"online policy on {len(stream.queries)} queries ({args.split}{learned_on}), bound "
        f"{args.max_error} (confidence {args.confidence:g}), {args.judge} judge, "
        f"{args.scorer} boundary:"
    )
    print(_table(rows))
    trace = ", ".join(f"{b:.3f}" for b in online.trace)
    print(f"online boundary after every 1,000 queries: {trace or '-'}")
    return 0


KINDS = ("judged", "conservative")


def _scorer(args: argparse.Namespace, part: list[Pair]) -> tuple[Features | None, str]:
    if args.scorer == "margin":
        return margin_scorer(), "online, similarity+margin"
    if args.scorer == "learned":
        idf = idf_table(p.text_a for p in part)  # the texts the cache holds
        return pair_feature_scorer(idf), "online, learned score"
    if args.scorer == "verifier":
        return verifier_scorer(VerifierRegistry().load(args.verifier)), "online, verifier prior"
    return None, "online"


def _table(rows: list[StreamResult]) -> str:
    header = f"{'policy':<28}{'served':>8}{'wrong (j)':>11}{'wrong (c)':>11}{'recall':>9}"
    header += f"{'judge calls':>13}{'boundary':>10}"
    lines = [header, "-" * len(header)]
    for kind, row in zip(("", *KINDS), rows, strict=True):
        rates = row.rates()
        name = f"{row.name} ({kind})" if kind else row.name
        lines.append(
            f"{name[:28]:<28}{rates['served']:>8.2%}{rates['wrong_judged']:>11.2%}"
            f"{rates['wrong_conservative']:>11.2%}{rates['recall']:>9.2%}"
            f"{row.judge_calls:>13}{row.boundary:>10.4f}"
        )
    return "\n".join(lines)
