#!/usr/bin/env bash
# Installs what bench/peers/run.py needs beyond scripts/deps.sh: Debian's nginx
# and Portkey's gateway from npm (exact version pinned in package-lock.json,
# installed into bench/peers/node_modules, which git ignores).
# Idempotent: when both are present it only checks. Not part of `make check`.
set -euo pipefail
cd "$(dirname "$0")"

if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "install ok installed"; then
  echo "peers deps: installing nginx" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # the package's own service is not used: run.py starts nginx with its own config
  $SUDO apt-get install -y -qq --no-install-recommends nginx ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends nginx; }
fi

if [ ! -d node_modules/@portkey-ai/gateway ]; then
  echo "peers deps: npm ci (Portkey gateway)" >&2
  npm ci --no-audit --no-fund
fi
