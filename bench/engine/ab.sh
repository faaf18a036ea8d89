#!/usr/bin/env bash
# A/B decode benchmark for a noisy shared machine: two sluice binaries (e.g.
# the build before and after a kernel change) run alternately on the same
# run.sh models, with a triad before every pair, so both see the same load.
#
#   OLD=/path/to/old/sluice bash bench/engine/ab.sh     (from the repository root)
#
# Env: OLD (required), NEW (default build/release/sluice), BUILD (default
#      build/release, for the triad), OUT (default bench/engine/out: the
#      models run.sh made), REPS (default 3), TYPES, THREADS as in run.sh.
# Prints, per type and thread count, the best decode tok/s of each binary over
# REPS alternating runs, and % of the decode bound, where the bound is the
# BEST 2-thread triad of this run / weight bytes per token (best-of on both
# sides: the least disturbed figures).
set -euo pipefail
: "${OLD:?set OLD to the sluice binary to compare against}"
NEW=${NEW:-build/release/sluice}
BUILD=${BUILD:-build/release}
OUT=${OUT:-bench/engine/out}
REPS=${REPS:-3}
TYPES=${TYPES:-f16 q8_0 q4_0 q4_k}
THREADS=${THREADS:-1 2}
RES=$OUT/ab.txt
: > "$RES"
for t in $TYPES; do
    [ -s "$OUT/$t.gguf" ] && [ -s "$OUT/$t.info" ] || {
        echo "no $OUT/$t.gguf: run bench/engine/run.sh first" >&2; exit 1; }
    echo "model $t $(cat "$OUT/$t.info")" >> "$RES"
done
PROMPT=$(printf 'The quick brown fox jumps over the lazy dog. %.0s' 1 2 3 | cut -c1-128)
for r in $(seq "$REPS"); do
    for t in $TYPES; do
        for th in $THREADS; do
            "$BUILD/bench_engine_triad" 128 5 2 | sed 's/^/run /' >> "$RES"
            for side in old new; do
                bin=$OLD; [ "$side" = new ] && bin=$NEW
                "$bin" run "$OUT/$t.gguf" -p "$PROMPT" -n 64 --temp 0 --threads "$th" \
                    > /dev/null 2> "$OUT/ab.err"
                tg=$(sed -n 's/^eval time.*tokens (.*ms per token, *\([0-9.]*\) tokens per second)/\1/p' "$OUT/ab.err")
                echo "ab $side $t $th gen_tps=$tg" >> "$RES"
                echo "ab rep=$r $side $t threads=$th decode ${tg} tok/s" >&2
            done
        done
    done
done
python3 - "$RES" <<'PY'
import sys
models, triad, ab = {}, {1: [], 2: []}, {}
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split('=', 1) for x in f if '=' in x)
    if f[0] == 'model':
        models[f[1]] = kv
    elif f[0] == 'run':
        triad[int(kv['threads'])].append(float(kv['GB/s']))
    elif f[0] == 'ab':
        ab.setdefault((f[2], int(f[3])), {}).setdefault(f[1], []).append(float(kv['gen_tps']))
bw1, bw2 = max(triad[1]), max(triad[2])
print(f"triad best of run: 1 thread {bw1:.2f} GB/s, 2 threads {bw2:.2f} GB/s\n")
print("| type | threads | old decode tok/s | new decode tok/s | speed-up | old % of bound | new % of bound | new effective GB/s | new % of same-thread triad |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (t, th), v in ab.items():
    db = int(models[t]['decode_bytes'])
    o, n = max(v['old']), max(v['new'])
    bound = bw2 * 1e9 / db
    eff = n * db / 1e9
    same = bw1 if th == 1 else bw2
    print(f"| {t.upper()} | {th} | {o:.2f} | {n:.2f} | {n/o:.2f}x | {100*o/bound:.0f} % | "
          f"{100*n/bound:.0f} % | {eff:.2f} | {100*eff/same:.0f} % |")
PY
