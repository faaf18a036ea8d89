#!/usr/bin/env bash
# End-to-end test of the demo model: the official OpenAI Node SDK asks
# `sluice serve` held-out catalogue questions about data/models/demo.gguf
# (served as sluice-demo by the local engine) and checks the answers' facts.
#
# Builds the demo model first when it is missing or stale (scripts/
# demo_model.sh, with the release binary: training under a sanitizer would
# take hours), then
# starts sluice on a free port, runs demo.test.mjs with Node's test runner and
# always stops sluice. Exits non-zero on any failure, including sluice exiting
# non-zero on SIGTERM (a sanitizer report).
#
# Environment: SLUICE_BIN (the server, default build/release/sluice),
# DEMO_TRAIN_BIN (the trainer, default build/release/sluice),
# COMPAT_START_TIMEOUT_S, COMPAT_DETECT_LEAKS (as in run.sh).
set -euo pipefail

tag=demo
START_TIMEOUT_S="${COMPAT_START_TIMEOUT_S:-60}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLUICE_BIN="${SLUICE_BIN:-$root/build/release/sluice}"
TRAIN_BIN="${DEMO_TRAIN_BIN:-$root/build/release/sluice}"
model="$root/data/models/demo.gguf"
evalf="$root/data/models/demo-eval.jsonl"

compat_require_node
[ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN"
compat_demo_model "$TRAIN_BIN"
compat_npm_install
compat_tmpdir sluice-demo

api_key="sk-demo-$$-$RANDOM"
cat >"$tmp/sluice.yaml" <<YAML
model_list:
  - model_name: sluice-demo
    params:
      provider: local
      model: $model
      max_seqs: 4
      threads: 2
server:
  workers: 1
  api_keys: [os.environ/DEMO_SLUICE_KEY]
YAML

compat_start_sluice DEMO_SLUICE_KEY="$api_key"

test_rc=0
SLUICE_BASE_URL="http://127.0.0.1:$sluice_port/v1" SLUICE_API_KEY="$api_key" DEMO_EVAL="$evalf" \
    node --test "$@" demo.test.mjs || test_rc=$?

compat_finish "$test_rc" "the demo model answered through the OpenAI Node SDK"
