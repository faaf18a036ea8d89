#!/usr/bin/env bash
# Peer benchmark: installs nginx and Portkey's gateway if missing
# (bench/peers/deps.sh), then runs bench/peers/run.py with the given options.
# Needs a release build (make release). See bench/README.md, "Peers".
set -euo pipefail
cd "$(dirname "$0")/../.."
bash bench/peers/deps.sh
exec python3 bench/peers/run.py "$@"
