"""CLI wiring for `cache-proxy calibrate | eval | train-verifier` (called from cache_proxy.cli).

Heavy imports (torch, faiss, sklearn) happen only when a command runs, not at parser build.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_VERIFIER_DIR = "build/verifiers"


def _calibrate(args: argparse.Namespace) -> int:
    from cache_proxy.evaluation.calibrate_run import calibrate_command

    return calibrate_command(args)


def _eval(args: argparse.Namespace) -> int:
    from cache_proxy.evaluation.runs import eval_command

    return eval_command(args)


def _train(args: argparse.Namespace) -> int:
    from cache_proxy.evaluation.runs import train_command

    return train_command(args)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _add_calibrate(commands)
    _add_eval(commands)
    _add_train(commands)


def _add_calibrate(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "calibrate",
        help="pick threshold/guards/verifier for a tenant from labelled pairs; write the config",
    )
    parser.add_argument("--config", type=Path, required=True, help="proxy YAML to update")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--pairs", type=Path, required=True, help="JSON lines (.gz ok)")
    parser.add_argument("--target-error", type=float, default=0.01)
    parser.add_argument(
        "--error-kind",
        choices=["conservative", "judged"],
        default="conservative",
        help="conservative: unjudged hits count as wrong (default); judged: only labelled ones",
    )
    parser.add_argument(
        "--verifier",
        choices=["auto", "none", "features", "crossencoder"],
        default="auto",
        help="auto: sweep no-verifier and the feature verifier (and a trained cross-encoder)",
    )
    parser.add_argument(
        "--verifier-dir",
        default=DEFAULT_VERIFIER_DIR,
        help="verifiers live in DIR/<tenant>-<kind>; trained there if missing",
    )
    parser.add_argument(
        "--margin-z", type=float, default=0.5,
        help="choose by error + Z standard errors (guards against lucky settings); 0 = bare",
    )  # fmt: skip
    parser.add_argument("--max-train-minutes", type=float, default=40.0)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--plot", type=Path, help="PNG: hit and error rates vs threshold")
    parser.set_defaults(func=_calibrate)


def _add_eval(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("eval", help="cache simulation on labelled pairs")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument(
        "--split",
        choices=["all", "train", "calib", "test"],
        default="all",
        help="part of the file (hash split, cache_proxy/verify/README.md); default all",
    )
    parser.add_argument("--limit", type=int, help="first N pairs of that part")
    parser.add_argument("--config", type=Path, help="take threshold/verify from this config")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--threshold", type=float, default=0.95, help="without --config")
    parser.add_argument(
        "--cosine-only", action="store_true", help="without --config: guards off (baseline)"
    )
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--plot", type=Path)
    server = parser.add_argument_group("through a running proxy (instead of in process)")
    server.add_argument("--server", help="proxy URL, e.g. http://127.0.0.1:8080")
    server.add_argument(
        "--api-key",
        help="the tenant's key (default: $CACHE_PROXY_API_KEY); its cache should be empty",
    )
    server.add_argument("--model", help="model name to send (default: the first /v1/models)")
    server.add_argument("--concurrency", type=int, default=8)
    parser.set_defaults(func=_eval)


def _add_train(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("train-verifier", help="train a verifier on the train part")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--kind", choices=["features", "crossencoder"], default="features")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--max-examples", type=int, default=50_000)
    parser.add_argument(
        "--base-model",
        type=Path,
        help="crossencoder: local model directory to fine-tune (default: packaged MiniLM)",
    )
    parser.set_defaults(func=_train)
