"""`cache-proxy export-verifier DIR`: the serving export of a trained verifier."""

from __future__ import annotations

import argparse
import sys

from cache_proxy.verify.artifacts import VerifierLoadError, verifier_kind
from cache_tools.verifiers.crossencoder_export import CrossEncoderExportError, export_cross_encoder
from cache_tools.verifiers.features import export_joblib_verifier


def export_verifier_command(args: argparse.Namespace) -> int:
    try:
        if verifier_kind(args.directory) == "features":
            written = export_joblib_verifier(args.directory)
        else:
            written = export_cross_encoder(args.directory)
    except (OSError, ValueError, VerifierLoadError, CrossEncoderExportError) as exc:
        print(f"cache-proxy export-verifier: {exc}", file=sys.stderr)
        return 2
    print(written)
    return 0
