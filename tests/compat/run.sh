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

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

SLUICE_BIN="${SLUICE_BIN:-$root/build/release/sluice}"
MOCKLLM_BIN="${MOCKLLM_BIN:-$root/build/release/mockllm}"
# Processes are slow to start under ASan: allow generous start-up time.
START_TIMEOUT_S="${COMPAT_START_TIMEOUT_S:-30}"
# In sanitizer builds LeakSanitizer checks the servers at exit (with the
# suppressions from LSAN_OPTIONS); COMPAT_DETECT_LEAKS=0 turns that off when
# only SDK compatibility is of interest. Every other sanitizer error still
# makes sluice exit non-zero and fails the test.
# (A later flag in ASAN_OPTIONS overrides an earlier one.)
server_asan="${ASAN_OPTIONS:-}"
if [ "${COMPAT_DETECT_LEAKS:-1}" != 1 ]; then
    server_asan="${server_asan:+$server_asan:}detect_leaks=0"
fi
EMBED_DIM=12

die() { echo "compat: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later is required)"
command -v npm >/dev/null 2>&1 || die "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || die "Node.js $(node --version) is too old (18 or later is required)"
[ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN"
[ -x "$MOCKLLM_BIN" ] || die "mockllm binary not found: $MOCKLLM_BIN"

# Install the pinned SDK when node_modules is missing or was installed from
# another lock file (the stamp is a copy of the lock file it came from).
stamp=node_modules/.compat-lock-stamp
if [ ! -f node_modules/openai/package.json ] || ! cmp -s package-lock.json "$stamp"; then
    echo "compat: installing npm packages (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >/dev/null \
        || die "npm ci failed (is the npm registry reachable?)"
    cp package-lock.json "$stamp"
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sluice-compat.XXXXXX")"
mock_pid=""
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
    [ -n "$mock_pid" ] && stop_pid "$mock_pid"
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_port() { # file regex pid name: prints the port once the file has it
    local file="$1" re="$2" pid="$3" name="$4" deadline=$((SECONDS + START_TIMEOUT_S)) port
    while [ "$SECONDS" -lt "$deadline" ]; do
        port="$(grep -o -E "$re" "$file" 2>/dev/null | head -n1 | grep -o -E '[0-9]+$' || true)"
        if [ -n "$port" ]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "compat: $name did not start; its output:" >&2
    cat "$tmp"/*.log >&2 || true
    return 1
}

ASAN_OPTIONS="$server_asan" "$MOCKLLM_BIN" --port 0 --embedding-dim "$EMBED_DIM" >"$tmp/mock.out.log" 2>"$tmp/mock.err.log" &
mock_pid=$!
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

ASAN_OPTIONS="$server_asan" COMPAT_SLUICE_KEY="$api_key" "$SLUICE_BIN" serve -c "$tmp/sluice.yaml" --port 0 \
    >"$tmp/sluice.out.log" 2>"$tmp/sluice.err.log" &
sluice_pid=$!
sluice_port="$(wait_for_port "$tmp/sluice.err.log" 'listening on [^ ]*:[0-9]+' "$sluice_pid" sluice)"

test_rc=0
SLUICE_BASE_URL="http://127.0.0.1:$sluice_port/v1" \
SLUICE_API_KEY="$api_key" \
MOCK_EMBED_DIM="$EMBED_DIM" \
    node --test "$@" compat.test.mjs || test_rc=$?

# sluice must shut down cleanly: a sanitizer report makes its exit non-zero
stop_pid "$sluice_pid"
sluice_rc=$stopped_rc
sluice_pid=""
if [ "$sluice_rc" != 0 ]; then
    echo "compat: sluice exited with status $sluice_rc; the end of its log:" >&2
    tail -c 4000 "$tmp/sluice.err.log" >&2
    test_rc=1
fi
if [ "$test_rc" != 0 ]; then
    echo "compat: FAILED (sluice log tail follows)" >&2
    tail -n 30 "$tmp/sluice.err.log" >&2 || true
    exit 1
fi
echo "compat: all OpenAI Node SDK tests passed"
