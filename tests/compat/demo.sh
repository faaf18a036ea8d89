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

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

SLUICE_BIN="${SLUICE_BIN:-$root/build/release/sluice}"
TRAIN_BIN="${DEMO_TRAIN_BIN:-$root/build/release/sluice}"
START_TIMEOUT_S="${COMPAT_START_TIMEOUT_S:-60}"
server_asan="${ASAN_OPTIONS:-}"
if [ "${COMPAT_DETECT_LEAKS:-1}" != 1 ]; then
    server_asan="${server_asan:+$server_asan:}detect_leaks=0"
fi
model="$root/data/models/demo.gguf"
evalf="$root/data/models/demo-eval.jsonl"

die() { echo "demo: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later is required)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
[ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN"

# builds the model when it is missing or stale; a no-op otherwise
SLUICE_BIN="$TRAIN_BIN" bash "$root/scripts/demo_model.sh" || die "building the demo model failed"
[ -f "$model" ] && [ -f "$evalf" ] || die "no $model or $evalf after scripts/demo_model.sh"

stamp=node_modules/.compat-lock-stamp
if [ ! -f node_modules/openai/package.json ] || ! cmp -s package-lock.json "$stamp"; then
    echo "demo: installing npm packages (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >/dev/null \
        || die "npm ci failed (is the npm registry reachable?)"
    cp package-lock.json "$stamp"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")"
sluice_pid=""
stopped_rc=0
stop_pid() { # pid: SIGTERM, then SIGKILL after 15 s; sets stopped_rc to its exit status
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    stopped_rc=0
    wait "$pid" 2>/dev/null || stopped_rc=$?
}
cleanup() {
    local rc=$?
    [ -n "$sluice_pid" ] && stop_pid "$sluice_pid"
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

ASAN_OPTIONS="$server_asan" DEMO_SLUICE_KEY="$api_key" "$SLUICE_BIN" serve -c "$tmp/sluice.yaml" --port 0 \
    >"$tmp/sluice.out.log" 2>"$tmp/sluice.err.log" &
sluice_pid=$!
port=""
deadline=$((SECONDS + START_TIMEOUT_S))
while [ "$SECONDS" -lt "$deadline" ]; do
    port="$(grep -o -E 'listening on [^ ]*:[0-9]+' "$tmp/sluice.err.log" 2>/dev/null | head -n1 | grep -o -E '[0-9]+$' || true)"
    [ -n "$port" ] && break
    kill -0 "$sluice_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$port" ]; then
    echo "demo: sluice did not start; its output:" >&2
    cat "$tmp"/*.log >&2 || true
    exit 1
fi

test_rc=0
SLUICE_BASE_URL="http://127.0.0.1:$port/v1" SLUICE_API_KEY="$api_key" DEMO_EVAL="$evalf" \
    node --test "$@" demo.test.mjs || test_rc=$?

stop_pid "$sluice_pid"
sluice_rc=$stopped_rc
sluice_pid=""
if [ "$sluice_rc" != 0 ]; then
    echo "demo: sluice exited with status $sluice_rc; the end of its log:" >&2
    tail -c 4000 "$tmp/sluice.err.log" >&2
    test_rc=1
fi
if [ "$test_rc" != 0 ]; then
    echo "demo: FAILED (sluice log tail follows)" >&2
    tail -n 30 "$tmp/sluice.err.log" >&2 || true
    exit 1
fi
echo "demo: the demo model answered through the OpenAI Node SDK"
