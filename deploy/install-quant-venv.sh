#!/usr/bin/env bash
# Creates the quantization virtualenv (llmcompressor): bash deploy/install-quant-venv.sh VENV
# Kept apart from the engine venv: llmcompressor pins its own transformers/compressed-tensors.
set -euo pipefail
VENV="${1:?usage: $0 VENV}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
LLMCOMPRESSOR_VERSION="${LLMCOMPRESSOR_VERSION:-0.14.0.1}"

step() { printf '[install-quant-venv] %s (%ss)\n' "$1" "$SECONDS"; }

step "creating $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip

# torch first and pinned (CPU wheel); unpinned, llmcompressor's resolution pulls CUDA builds.
step "installing torch==$TORCH_VERSION (CPU)"
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"

step "installing llmcompressor==$LLMCOMPRESSOR_VERSION"
"$VENV/bin/pip" install -q "llmcompressor==$LLMCOMPRESSOR_VERSION" "torch==$TORCH_VERSION"
# Same reason as in the engine venv: mismatched vision/audio builds break `import transformers`.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true

step "checking imports"
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import torch
from llmcompressor import oneshot  # noqa: F401
from llmcompressor.modifiers.quantization import QuantizationModifier  # noqa: F401

print("llmcompressor", md.version("llmcompressor"), "compressed-tensors",
      md.version("compressed-tensors"), "transformers", md.version("transformers"),
      "torch", torch.__version__)
PY
step "done"
