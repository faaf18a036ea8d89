#!/usr/bin/env bash
# Runs each libFuzzer driver in BUILD_DIR for SECONDS, from a scratch copy of its
# corpus (the corpus in git is never modified by a run). Fails on any crash.
set -euo pipefail
build=${1:-build/fuzz}
secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
n=0
for drv in "$build"/fuzz_*; do
  [ -x "$drv" ] || continue
  name=$(basename "$drv"); name=${name#fuzz_}
  work=$(mktemp -d)
  cp -r "$root/tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  if ! "$drv" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=0 "$work" >"$work.log" 2>&1; then
    tail -40 "$work.log"
    echo "fuzz: $name FAILED (crash input saved in $(pwd))"
    rm -rf "$work"
    exit 1
  fi
  grep -E '^(#[0-9]+ *DONE|Done)' "$work.log" | tail -1 || true
  rm -rf "$work" "$work.log"
  n=$((n+1))
done
echo "fuzz: $n drivers ran clean"
