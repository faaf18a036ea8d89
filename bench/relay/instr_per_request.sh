#!/bin/bash
# Instructions (and simulated cache misses) a gateway executes per request, in
# user space, counted by valgrind's callgrind: a figure this noisy machine
# cannot blur, for comparing builds or gateways on the same request path.
#
#   bash bench/relay/instr_per_request.sh NAME PORT [REQUESTS] -- COMMAND...
#   e.g. bash bench/relay/instr_per_request.sh sluice 27702 -- build/release/sluice serve --config s.yaml
#        bash bench/relay/instr_per_request.sh nginx 27713 -- nginx -c ng.conf -p DIR  (master_process off;
#        daemon off; in its config)
#
# The gateway must listen on PORT and route model "mock" to a running mockllm.
# It runs under callgrind (about 50x slower); 500 requests at concurrency 1
# warm it up, the counters are zeroed, REQUESTS more (default 2000) are
# counted, then it is stopped. Prints per request: Ir (instructions), Dr/Dw
# (data reads/writes), I1mr/D1mr/D1mw (simulated L1 misses), and keeps the
# profile as /tmp/instr.NAME.* for callgrind_annotate. Needs valgrind
# (apt-get install valgrind) and build/release/sluice for the load.
set -eu
name=$1; port=$2; shift 2
n=2000
if [ "$1" != "--" ]; then n=$1; shift; fi
shift
sluice=${SLUICE_BIN:-build/release/sluice}
command -v callgrind_control > /dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
rm -f /tmp/instr."$name".*
setsid valgrind --tool=callgrind --cache-sim=yes --callgrind-out-file=/tmp/instr."$name".%p "$@" \
    > /tmp/instr."$name".log 2>&1 < /dev/null &
vp=$!
trap 'kill -9 $vp 2> /dev/null || true' EXIT
for _ in $(seq 120); do
    sleep 1
    if "$sluice" bench --url "http://127.0.0.1:$port" --model mock --requests 1 --timeout 5 --quiet > /dev/null 2>&1; then
        break
    fi
done
"$sluice" bench --url "http://127.0.0.1:$port" --model mock --concurrency 1 --requests 500 --max-tokens 16 --quiet > /dev/null
callgrind_control -z "$vp" > /dev/null 2>&1
"$sluice" bench --url "http://127.0.0.1:$port" --model mock --concurrency 1 --requests "$n" --max-tokens 16 --quiet > /dev/null
callgrind_control -d "$vp" > /dev/null 2>&1
sleep 2
kill -TERM "$vp"
sleep 3
f=$(ls /tmp/instr."$name".*.1 | head -1)
awk -v n="$n" -v name="$name" '/^events:/ { for (i = 2; i <= NF; i++) ev[i] = $i }
    /^summary:/ { printf "%s per request:", name; for (i = 2; i <= 7; i++) printf " %s %.1f", ev[i], $i / n; printf "\n" }' "$f"
