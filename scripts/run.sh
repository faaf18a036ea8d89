#!/usr/bin/env bash
# `make run`: serve the default config (config/sluice.yaml) on 127.0.0.1:8080.
#
# Until the local engine serves models, the default model group `mock-model`
# points at bench/mockllm, an OpenAI-compatible fake upstream that echoes the
# last user message. This script starts it on 127.0.0.1:8081 (a realistic
# 30 ms to first token and 100 tokens/s), then runs `sluice serve` in the
# foreground. Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLUICE_BUILD:-$root/build/release}
config=${SLUICE_CONFIG:-$root/config/sluice.yaml}
mock_port=${MOCKLLM_PORT:-8081}

"$bin/mockllm" --port "$mock_port" --ttft-ms 30 --tps 100 --tokens 32 >/dev/null &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$mock_port") 2>/dev/null; then break; fi
  sleep 0.1
done

echo "sluice: serving $config (model 'mock-model' -> bench/mockllm on :$mock_port)" >&2
echo "sluice: try: curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\" >&2
echo "          -d '{\"model\":\"mock-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'" >&2
"$bin/sluice" serve -c "$config" "$@" &
sl_pid=$!
trap 'kill "$sl_pid" 2>/dev/null || true; wait "$sl_pid" 2>/dev/null || true; kill "$mock_pid" 2>/dev/null || true' EXIT INT TERM
wait "$sl_pid"
