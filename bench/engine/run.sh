#!/usr/bin/env bash
# Engine prefill/decode throughput against measured memory bandwidth.
#
#   bash bench/engine/run.sh            (from the repository root)
#
# Env: BUILD (default build/release), OUT (default bench/engine/out),
#      REPS (default 3), TYPES (default "f16 q8_0 q4_0 q4_k"), THREADS ("1 2"),
#      KV (the KV cache type passed as --kv-type: f16 or f32; default: sluice's, f16).
# Builds the random-weight models once (make_model), runs the triad and
# matmul_hot REPS times, then `sluice run MODEL -p <128-token prompt> -n 64
# --temp 0 --threads T` REPS times per type and thread count, and prints
# Markdown tables of medians. Decode bound = triad GB/s (2 threads, median of
# the best-of-10 figures) / bytes a decode step reads (make_model's
# decode_bytes). The paired column divides each decode run by the bound from
# a triad run made just before it, and gives the median of those ratios.
set -euo pipefail
BUILD=${BUILD:-build/release}
OUT=${OUT:-bench/engine/out}
REPS=${REPS:-3}
TYPES=${TYPES:-f16 q8_0 q4_0 q4_k}
THREADS=${THREADS:-1 2}
KV=${KV:-}
SLUICE=$BUILD/sluice
[ -x "$SLUICE" ] && [ -x "$BUILD/bench_engine_make_model" ] || {
    echo "build first: make release JOBS=1" >&2; exit 1; }
mkdir -p "$OUT"
RES=$OUT/results.txt
: > "$RES"

for t in $TYPES; do
    if [ ! -s "$OUT/$t.gguf" ] || [ ! -s "$OUT/$t.info" ]; then
        "$BUILD/bench_engine_make_model" "$t" "$OUT/$t.gguf" > "$OUT/$t.info"
    fi
    echo "model $t $(cat "$OUT/$t.info") file_bytes=$(stat -c %s "$OUT/$t.gguf")" >> "$RES"
done

for r in $(seq "$REPS"); do
    "$BUILD/bench_engine_triad" 128 10 2 | sed 's/^/run /' >> "$RES"
    "$BUILD/bench_engine_matmul_hot" 3000 >> "$RES"
done

# 128 bytes = 128 tokens with the byte-level vocabulary make_model writes
PROMPT=$(printf 'The quick brown fox jumps over the lazy dog. %.0s' 1 2 3 | cut -c1-128)
for t in $TYPES; do
    for th in $THREADS; do
        for r in $(seq "$REPS"); do
            # the triad right before each decode run: the pair shares the
            # machine's state, and the paired ratio cancels slow phases
            tri=$("$BUILD/bench_engine_triad" 128 10 2 | sed -n 's/^triad threads=2 .*GB\/s=\([0-9.]*\)$/\1/p')
            "$SLUICE" run "$OUT/$t.gguf" -p "$PROMPT" -n 64 --temp 0 --threads "$th" \
                ${KV:+--kv-type "$KV"} > /dev/null 2> "$OUT/last.err"
            pp=$(sed -n 's/^prompt eval time.*tokens (.*ms per token, *\([0-9.]*\) tokens per second)/\1/p' "$OUT/last.err")
            pn=$(sed -n 's/^prompt eval time.*\/ *\([0-9]*\) tokens.*/\1/p' "$OUT/last.err")
            tg=$(sed -n 's/^eval time.*tokens (.*ms per token, *\([0-9.]*\) tokens per second)/\1/p' "$OUT/last.err")
            gn=$(sed -n 's/^eval time.*\/ *\([0-9]*\) tokens.*/\1/p' "$OUT/last.err")
            echo "gen $t $th $r prompt_tokens=$pn prompt_tps=$pp gen_tokens=$gn gen_tps=$tg triad2=$tri" >> "$RES"
            echo "gen $t threads=$th rep=$r prompt=$pn tok ${pp} tok/s, decode=$gn tok ${tg} tok/s" >&2
        done
    done
done

python3 - "$RES" <<'PY'
import re, statistics, sys
models, triad, gen, mm = {}, {1: [], 2: []}, {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    kv = dict(x.split('=', 1) for x in f if '=' in x)
    if f[0] == 'model':
        models[f[1]] = kv
    elif f[0] == 'run':
        triad[int(kv['threads'])].append(float(kv['GB/s']))
    elif f[0] == 'matmul1':
        mm.setdefault(f[1], []).append((float(kv['hot_GB/s']), float(kv['cold_GB/s'])))
    elif f[0] == 'gen':
        gen.setdefault((f[1], int(f[2])), []).append((float(kv['prompt_tps']), float(kv['gen_tps']),
                                                      float(kv['triad2'])))
bw = {k: statistics.median(v) for k, v in triad.items() if v}
print(f"triad (best of 10, median of {len(triad[2])} runs): "
      f"1 thread {bw[1]:.2f} GB/s, 2 threads {bw[2]:.2f} GB/s (bytes = 3 arrays x 8 B x n)\n")
print("| type | weights read / token (MB) | threads | prefill tok/s | decode tok/s | decode bound tok/s | decode % of bound | paired % of bound (range) | effective GB/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (t, th), v in gen.items():
    db = int(models[t]['decode_bytes'])
    pp = statistics.median(x[0] for x in v)
    tg = statistics.median(x[1] for x in v)
    bound = bw[2] * 1e9 / db
    # each decode run against the 2-thread triad run just before it
    paired = sorted(100 * x[1] * db / (x[2] * 1e9) for x in v)
    print(f"| {t.upper()} | {db/1e6:.1f} | {th} | {pp:.1f} | {tg:.2f} | {bound:.1f} | "
          f"{100*tg/bound:.0f} % | {statistics.median(paired):.0f} % ({paired[0]:.0f}-{paired[-1]:.0f}) | "
          f"{tg*db/1e9:.2f} |")
print("\nsingle-thread 1024x1024 matmul, one token (matmul_hot, median of runs), weight GB/s:\n")
print("| type | cache-hot GB/s | DRAM-cold GB/s |")
print("|---|---:|---:|")
for t, v in mm.items():
    print(f"| {t} | {statistics.median(x[0] for x in v):.2f} | {statistics.median(x[1] for x in v):.2f} |")
PY
