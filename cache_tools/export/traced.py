"""Helpers every exporter shares: a traced torch.onnx export and an atomic publish."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def export_traced(
    module: Any, sample: Any, names: list[str], outputs: dict[str, dict[int, str]], path: Path
) -> None:
    """torch.onnx export of a wrapper taking `names` in order (dynamic batch/token axes) and
    returning the one output named in `outputs`, with that output's dynamic axes."""
    import torch

    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "tokens"} for name in names}
    axes.update(outputs)
    # The tracer warns about shape-dependent Python branches in the model code; every export is
    # checked against the torch model's outputs (incl. a truncated input) before it is used.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),  # export restores this mode on the wrapped model: it must be eval
            tuple(sample[name] for name in names),
            str(path),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT
        )


def publish_dir(
    staging: Path, out_dir: Path, complete: Callable[[Path], bool], replace: bool = False
) -> None:
    """Atomic rename of a finished export into place. Losing a race to an equal export is fine;
    with `replace`, an existing (stale) directory is moved aside first and then removed."""
    if replace and out_dir.exists():
        retired = out_dir.with_name(f".retired-{out_dir.name}-{staging.name}")
        out_dir.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        staging.rename(out_dir)
    except OSError:
        if not complete(out_dir):
            raise
        shutil.rmtree(staging)  # another process won the race with an equivalent export
