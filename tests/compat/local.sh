#!/usr/bin/env bash
# Compatibility test with only local models: the official OpenAI Node SDK
# against `sluice serve` serving the demo model (data/models/demo.gguf,
# provider: local) through Sluice's own engine; no upstream server at all.
#
# Builds the demo model first when it is missing or stale (scripts/
# demo_model.sh, with the release binary, as demo.sh does), starts sluice on a
# free port, runs local.test.mjs with Node's test runner and always stops
# sluice. Exits non-zero on any failure, including sluice exiting non-zero on
# SIGTERM (a sanitizer report).
#
# Environment: SLUICE_BIN (the server, default build/release/sluice),
# DEMO_TRAIN_BIN (the trainer, default build/release/sluice),
# COMPAT_START_TIMEOUT_S, COMPAT_DETECT_LEAKS (as in run.sh),
# COMPAT_REQUEST_TIMEOUT_S (the SDK's per-request timeout, default 120).
# Extra arguments go to `node --test`.
set -euo pipefail

tag=local
START_TIMEOUT_S="${COMPAT_START_TIMEOUT_S:-60}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLUICE_BIN="${SLUICE_BIN:-$root/build/release/sluice}"
TRAIN_BIN="${DEMO_TRAIN_BIN:-$root/build/release/sluice}"
model="$root/data/models/demo.gguf"

compat_require_node
[ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN"
compat_demo_model "$TRAIN_BIN"
compat_npm_install
compat_tmpdir sluice-local

# ctx_size 1024 (the model was trained on 64): room for the long generation
# that the aborted-stream test cuts short. Two workers: requests of one
# client land on either, so the engine's events cross threads.
api_key="sk-local-$$-$RANDOM"
cat >"$tmp/sluice.yaml" <<YAML
model_list:
  - model_name: sluice-demo
    params:
      provider: local
      model: $model
      ctx_size: 1024
      max_seqs: 4
      threads: 2
server:
  workers: 2
  api_keys: [os.environ/LOCAL_SLUICE_KEY]
YAML

compat_start_sluice LOCAL_SLUICE_KEY="$api_key"

test_rc=0
SLUICE_BASE_URL="http://127.0.0.1:$sluice_port/v1" SLUICE_API_KEY="$api_key" \
LOCAL_MODEL=sluice-demo LOCAL_REQUEST_TIMEOUT_S="${COMPAT_REQUEST_TIMEOUT_S:-120}" \
    node --test "$@" local.test.mjs || test_rc=$?

compat_finish "$test_rc" "all OpenAI Node SDK tests passed against the local model"
