#!/usr/bin/env bash
# Builds data/models/demo.gguf, the tiny demo model Sluice trains for itself
# (`make run` serves it as sluice-demo), when it is missing; otherwise does
# nothing. Interrupted builds resume from their checkpoint.
#
# Demo configuration: 20-product catalogue corpus (3 MB, seed 1); llama with
# dim 128, 4 layers, 4 heads, ff 384, BPE vocabulary 1024, context 96;
# 400 steps of 16 sequences (614k tokens), lr 3e-3, F32.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SLUICE_BIN:-build/release/sluice}
DIR=data/models
OUT=$DIR/demo.gguf
[ -f "$OUT" ] && exit 0
mkdir -p "$DIR"
echo "Training the demo model into $OUT (a few minutes on 2 cores; done once)..." >&2
"$BIN" train --make-corpus --out "$DIR/demo-corpus.txt" --make-eval "$DIR/demo-eval.jsonl" \
    --seed 1 --size-mb 3 --products 20
"$BIN" train --corpus "$DIR/demo-corpus.txt" --out "$OUT" --name sluice-demo \
    --dim 128 --layers 4 --heads 4 --ff 384 --vocab 1024 --seq 96 \
    --batch 16 --steps 400 --lr 3e-3 --seed 1 --eval-every 50 \
    --ckpt "$DIR/demo.ckpt" --ckpt-every 50 --resume
rm -f "$DIR/demo.ckpt"
