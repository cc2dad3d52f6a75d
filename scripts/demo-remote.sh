#!/usr/bin/env bash
# Makes the demo that `make run` reconciles: a bare Git remote seeded from sample-repo/, and
# the secrets the sample tasks read. Idempotent: an existing demo remote (with your pushes) is
# kept; delete the folder to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
demo="${1:-.demo}"
remote="$demo/remote.git"
mkdir -p "$demo"

if [ ! -d "$remote" ]; then
  git init --quiet --bare --initial-branch=main "$remote"
  seed="$(mktemp -d)"
  trap 'rm -rf "$seed"' EXIT
  cp -R sample-repo/. "$seed/"
  # The sample's $schema modelines point at ../schemas/; the demo carries its own copy.
  mkdir -p "$seed/schemas" && cp schemas/*.json "$seed/schemas/" 2>/dev/null || true
  git -C "$seed" init --quiet --initial-branch=main
  git -C "$seed" add -A
  git -C "$seed" -c user.name="Demo" -c user.email="demo@example.invalid" \
    commit --quiet -m "Sample declarations"
  git -C "$seed" push --quiet "$(cd "$remote" && pwd)" main
  echo "demo remote: $remote (clone it with: git clone $remote demo)"
fi

# Local secrets: <secrets-dir>/<secret>/<key>, as the sample tasks' secretEnv expects.
secrets="$demo/secrets"
if [ ! -f "$secrets/report-creds/token" ]; then
  mkdir -p "$secrets/report-creds"
  umask 077
  head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$secrets/report-creds/token"
fi
