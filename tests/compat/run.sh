#!/usr/bin/env bash
# Compatibility test: the official OpenAI Node SDK (npm package `openai`)
# against `sluice serve` in front of mockllm.
#
# Starts mockllm and sluice on free ports, runs compat.test.mjs with Node's
# built-in test runner and always stops both processes. Exits non-zero on any
# failure, including sluice exiting non-zero on SIGTERM (a sanitizer report).
#
# Environment: SLUICE_BIN, MOCKLLM_BIN (default: build/release/...),
# COMPAT_START_TIMEOUT_S, COMPAT_DETECT_LEAKS (see below). Extra arguments go
# to `node --test`, e.g. --test-name-pattern=errors.
set -euo pipefail

tag=compat
# Processes are slow to start under ASan: allow generous start-up time.
START_TIMEOUT_S="${COMPAT_START_TIMEOUT_S:-30}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLUICE_BIN="${SLUICE_BIN:-$root/build/release/sluice}"
MOCKLLM_BIN="${MOCKLLM_BIN:-$root/build/release/mockllm}"
EMBED_DIM=12

compat_require_node
[ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN"
[ -x "$MOCKLLM_BIN" ] || die "mockllm binary not found: $MOCKLLM_BIN"
compat_npm_install
compat_tmpdir sluice-compat

ASAN_OPTIONS="$server_asan" "$MOCKLLM_BIN" --port 0 --embedding-dim "$EMBED_DIM" >"$tmp/mock.out.log" 2>"$tmp/mock.err.log" &
mock_pid=$!
compat_track "$mock_pid"
mock_port="$(wait_for_port "$tmp/mock.out.log" 'listening on [0-9]+' "$mock_pid" mockllm)"

api_key="sk-compat-$$-$RANDOM"
cat >"$tmp/sluice.yaml" <<EOF
model_list:
  - model_name: mock-model
    params:
      provider: openai
      api_base: http://127.0.0.1:$mock_port/v1
      model: mock-model
  - model_name: mock-small
    params:
      provider: openai
      api_base: http://127.0.0.1:$mock_port/v1
      model: mock-model
router_settings:
  num_retries: 1
  retry_backoff_ms: 1
server:
  workers: 2
  api_keys: [os.environ/COMPAT_SLUICE_KEY]
EOF

compat_start_sluice COMPAT_SLUICE_KEY="$api_key"

test_rc=0
SLUICE_BASE_URL="http://127.0.0.1:$sluice_port/v1" \
SLUICE_API_KEY="$api_key" \
MOCK_EMBED_DIM="$EMBED_DIM" \
    node --test "$@" compat.test.mjs || test_rc=$?

compat_finish "$test_rc" "all OpenAI Node SDK tests passed"
