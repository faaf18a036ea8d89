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
# (apt-get install valgrind) and build/release/sluice for the load. MARK names
# a function the gateway calls once per request (default sl_http_respond;
# for nginx MARK=ngx_http_create_request).
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
    # bench exits 0 even when its requests fail: ready means one answered ok
    if "$sluice" bench --url "http://127.0.0.1:$port" --model mock --requests 1 --timeout 5 2>&1 | grep -q " 1 ok,"; then
        break
    fi
done
bench() { "$sluice" bench --url "http://127.0.0.1:$port" --model mock --concurrency 1 --max-tokens 16 "$@"; }
bench --requests 500 --quiet > /dev/null
# callgrind takes a command only while the program runs, not while it sleeps
# in epoll_wait: each command is sent in the background and the next request
# wakes the gateway to take it. So the zero lands in the first counted
# request and the dump in a spare one after the last; the figure is divided
# by the calls of $MARK (once per request) that the dump counted, not by n.
callgrind_control -z "$vp" > /dev/null 2>&1 &
cp=$!
out=$(bench --requests "$n" 2>&1)
wait "$cp" || true
if ! grep -q " $n ok, 0 errors" <<< "$out"; then
    echo "not every counted request was answered ok; no figure:" >&2
    grep requests <<< "$out" >&2
    exit 1
fi
callgrind_control -d "$vp" > /dev/null 2>&1 &
cp=$!
for _ in $(seq 30); do
    bench --requests 1 --quiet > /dev/null 2>&1 || true
    if ! kill -0 "$cp" 2> /dev/null; then break; fi
    sleep 1
done
wait "$cp" || true
kill -TERM "$vp"
sleep 3
f=$(ls /tmp/instr."$name".*.1 | head -1)
python3 - "$f" "$name" "${MARK:-sl_http_respond}" "$n" << 'PY'
import re, sys
path, name, mark, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
names, calls, cur, events, summary = {}, 0, None, [], []
for line in open(path):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        cur = names.get(m.group(2)) if m.group(1) else None
    elif line.startswith("calls=") and cur == mark:
        calls += int(line.split("=")[1].split()[0])
    elif line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("summary:"):
        summary = [int(x) for x in line.split()[1:]]
# a late zero costs requests at the start, a late dump adds wake requests:
# either way the count of mark is the divisor, off by at most one request
if calls < n // 2 or calls > n + 30:
    sys.exit(f"the dump counted {calls} calls of {mark} for {n} requests: no figure")
print(f"{name} per request ({calls} counted):", " ".join(f"{e} {v / calls:.1f}" for e, v in list(zip(events, summary))[:6]))
PY
