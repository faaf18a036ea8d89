#!/usr/bin/env bash
# Builds data/models/demo.gguf, the tiny demo model Sluice trains for itself
# (`make run` serves it as sluice-demo), when it is missing or was built with
# another configuration; otherwise does nothing. Interrupted builds resume
# from their checkpoint.
#
# Demo configuration: 20-product catalogue corpus (2 MB, seed 1; 16 training
# phrasings per attribute, 5 held out in demo-eval.jsonl); llama with dim 128,
# 4 layers, 4 heads, ff 384, BPE vocabulary 1024, context 64; 400 steps of 24
# sequences (614k tokens), each starting at a conversation, loss on the
# assistant's answers only; lr 3e-3, F32. Two compute threads on any machine:
# the same seed and thread count give the same model, bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SLUICE_BIN:-build/release/sluice}
DIR=data/models
OUT=$DIR/demo.gguf
CORPUS_ARGS=(--seed 1 --size-mb 2 --products 20)
TRAIN_ARGS=(--name sluice-demo --dim 128 --layers 4 --heads 4 --ff 384 --vocab 1024 --seq 64
            --batch 24 --steps 400 --lr 3e-3 --seed 1 --threads 2 --mask-assistant --doc-start)
# What the model in $DIR was built from: the configuration, and the generator's
# version (bump it when src/engine/train/corpus.c changes what it writes).
CONF="corpus v2 ${CORPUS_ARGS[*]}; train ${TRAIN_ARGS[*]}"
STAMP=$DIR/demo.conf
if [ -f "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CONF" ]; then
    exit 0
fi
mkdir -p "$DIR"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$CONF" ]; then
    # another configuration's model, corpus or checkpoint: start over
    rm -f "$OUT" "$DIR/demo.ckpt" "$DIR/demo-corpus.txt" "$DIR/demo-eval.jsonl"
    printf '%s\n' "$CONF" >"$STAMP"
fi
[ -x "$BIN" ] || { echo "demo_model.sh: $BIN not found (make release)" >&2; exit 1; }
echo "Training the demo model into $OUT (a few minutes on 2 cores; done once)..." >&2
"$BIN" train --make-corpus --out "$DIR/demo-corpus.txt" --make-eval "$DIR/demo-eval.jsonl" \
    "${CORPUS_ARGS[@]}"
"$BIN" train --corpus "$DIR/demo-corpus.txt" --out "$OUT.tmp" "${TRAIN_ARGS[@]}" \
    --eval-every 50 --ckpt "$DIR/demo.ckpt" --ckpt-every 50 --resume
mv "$OUT.tmp" "$OUT"
rm -f "$DIR/demo.ckpt"
