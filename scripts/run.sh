#!/usr/bin/env bash
# `make run`: serve the default config (config/sluice.yaml) on 127.0.0.1:8080.
#
# The default model, `sluice-demo`, is trained here on first use
# (scripts/demo_model.sh: a few minutes on 2 cores, with progress shown,
# then cached in data/models/). `sluice serve` then runs in the foreground;
# Ctrl-C stops it (in-flight requests are drained first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLUICE_BUILD:-$root/build/release}
config=${SLUICE_CONFIG:-$root/config/sluice.yaml}
cd "$root"

SLUICE_BIN="$bin/sluice" bash scripts/demo_model.sh

# a question the demo model was not trained on, from its held-out set
q=$(sed -n 's/.*"question": *"\([^"]*\)".*/\1/p' data/models/demo-eval.jsonl 2>/dev/null | head -1)
q=${q:-What does the catalogue have?}
echo "sluice: serving $config (model 'sluice-demo', trained here: see README)" >&2
echo "sluice: try: curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\" >&2
echo "          -d '{\"model\":\"sluice-demo\",\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}'" >&2
exec "$bin/sluice" serve -c "$config" "$@"
