# Shared shell parts of the compat tests (run.sh, demo.sh, local.sh): sourced,
# never run. The caller sets `tag` (the prefix of its messages) and
# `START_TIMEOUT_S` first, and runs under `set -euo pipefail`.
#
# Defines: here, root (and cds to here), server_asan, tmp (after
# compat_tmpdir), and the functions below. Processes started with
# compat_track are stopped (newest first) and tmp is removed on exit.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

# In sanitizer builds LeakSanitizer checks the servers at exit (with the
# suppressions from LSAN_OPTIONS); COMPAT_DETECT_LEAKS=0 turns that off when
# only SDK compatibility is of interest. Every other sanitizer error still
# makes sluice exit non-zero and fails the test.
# (A later flag in ASAN_OPTIONS overrides an earlier one.)
server_asan="${ASAN_OPTIONS:-}"
if [ "${COMPAT_DETECT_LEAKS:-1}" != 1 ]; then
    server_asan="${server_asan:+$server_asan:}detect_leaks=0"
fi

die() { echo "$tag: $*" >&2; exit 1; }

# Needs node (18 or later) and npm.
compat_require_node() {
    command -v node >/dev/null 2>&1 || die "node is not installed (Node.js 18 or later is required)"
    command -v npm >/dev/null 2>&1 || die "npm is not installed"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 18 ] || die "Node.js $(node --version) is too old (18 or later is required)"
}

# Installs the pinned SDK when node_modules is missing or was installed from
# another lock file (the stamp is a copy of the lock file it came from).
compat_npm_install() {
    local stamp=node_modules/.compat-lock-stamp
    if [ ! -f node_modules/openai/package.json ] || ! cmp -s package-lock.json "$stamp"; then
        echo "$tag: installing npm packages (npm ci)" >&2
        npm ci --no-audit --no-fund --loglevel=error >/dev/null \
            || die "npm ci failed (is the npm registry reachable?)"
        cp package-lock.json "$stamp"
    fi
}

# Builds data/models/demo.gguf (and demo-eval.jsonl) with scripts/demo_model.sh
# when missing or stale, a no-op otherwise; trainer: $1 (a sluice binary).
compat_demo_model() {
    SLUICE_BIN="$1" bash "$root/scripts/demo_model.sh" || die "building the demo model failed"
    [ -f "$root/data/models/demo.gguf" ] && [ -f "$root/data/models/demo-eval.jsonl" ] \
        || die "no $root/data/models/demo.gguf or demo-eval.jsonl after scripts/demo_model.sh"
}

compat_pids=()
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

# Remembers a started process, to be stopped on exit unless compat_untrack'ed.
compat_track() { compat_pids+=("$1"); }
compat_untrack() {
    local keep=() p
    for p in "${compat_pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    compat_pids=("${keep[@]+"${keep[@]}"}")
}

tmp=""
compat_cleanup() {
    local rc=$? i
    for ((i = ${#compat_pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${compat_pids[$i]}"
    done
    [ -n "$tmp" ] && rm -rf "$tmp"
    exit "$rc"
}

# Creates tmp (prefix $1) and sets the traps that clean up.
compat_tmpdir() {
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    trap compat_cleanup EXIT
    trap 'exit 130' INT TERM
}

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
    echo "$tag: $name did not start; its output:" >&2
    cat "$tmp"/*.log >&2 || true
    return 1
}

# Starts `sluice serve -c $tmp/sluice.yaml` on a free port with the
# environment assignments given as arguments; sets sluice_pid, sluice_port.
compat_start_sluice() {
    env ASAN_OPTIONS="$server_asan" "$@" "$SLUICE_BIN" serve -c "$tmp/sluice.yaml" --port 0 \
        >"$tmp/sluice.out.log" 2>"$tmp/sluice.err.log" &
    sluice_pid=$!
    compat_track "$sluice_pid"
    sluice_port="$(wait_for_port "$tmp/sluice.err.log" 'listening on [^ ]*:[0-9]+' "$sluice_pid" sluice)"
}

# Stops sluice, which must exit cleanly (a sanitizer report makes its exit
# non-zero), and exits: 0 with message $2 when $1 (the tests' status) is 0.
compat_finish() {
    local test_rc="$1" msg="$2"
    stop_pid "$sluice_pid"
    compat_untrack "$sluice_pid"
    if [ "$stopped_rc" != 0 ]; then
        echo "$tag: sluice exited with status $stopped_rc; the end of its log:" >&2
        tail -c 4000 "$tmp/sluice.err.log" >&2
        test_rc=1
    fi
    if [ "$test_rc" != 0 ]; then
        echo "$tag: FAILED (sluice log tail follows)" >&2
        tail -n 30 "$tmp/sluice.err.log" >&2 || true
        exit 1
    fi
    echo "$tag: $msg"
}
