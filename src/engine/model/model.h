/*
 * engine/model: the transformer architectures of the local engine.
 *
 * sl_model is a decoder-only transformer (llama or qwen2) whose weights live
 * in a GGUF file's mapping: loading reads the hyperparameters from the
 * metadata, checks every tensor's presence, type and shape against them, and
 * carves the mapping into weight pointers (nothing is copied). A model is
 * immutable after loading and may be shared by any number of contexts.
 *
 * sl_model_ctx made by sl_model_ctx_create is the state of ONE sequence: its
 * key/value cache (f16 or f32, contiguous, n_ctx positions) and the activation
 * buffers, all allocated once at creation for a maximum batch.
 * sl_model_forward runs a batch of tokens at positions [pos, pos + n) and
 * writes logits. A context made by sl_model_batch_ctx_create has activation
 * buffers only and serves sl_model_forward_batch, which runs many sequences
 * over a paged cache in one pass (see "serving" below).
 *
 * Numerics: every weight product goes through sl_kernel_matmul on its
 * batch-invariant path, and attention computes each (token, head) on its own
 * with a fixed summation order, so a token's logits are bitwise the same
 * whatever the batch split and the thread count.
 *
 * This header also builds the other things a model file carries: its
 * tokenizer (tokenizer.ggml.*) and its chat template family.
 */
#ifndef SL_ENGINE_MODEL_H
#define SL_ENGINE_MODEL_H

#include "core/core.h"
#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/tokenizer.h"

typedef enum { SL_ARCH_LLAMA = 0, SL_ARCH_QWEN2 = 1 } sl_model_arch;

/* Hard limits on hyperparameters read from files (sizes must stay sane). */
#define SL_MODEL_MAX_LAYERS 1024
#define SL_MODEL_MAX_DIM 65536
#define SL_MODEL_MAX_HEADS 1024
#define SL_MODEL_MAX_VOCAB (1 << 24)
#define SL_MODEL_MAX_CTX (1 << 20)

typedef struct sl_model_hparams {
    sl_model_arch arch;
    int n_vocab;
    int n_ctx_train;   /* context the model was trained for */
    int dim;           /* embedding length */
    int n_layer;
    int n_ff;          /* feed-forward hidden size */
    int n_head;
    int n_head_kv;     /* divides n_head (grouped-query attention) */
    int head_dim;      /* attention.key_length, default dim / n_head */
    int rot_dim;       /* rope.dimension_count, default head_dim */
    float norm_eps;    /* attention.layer_norm_rms_epsilon */
    float rope_base;   /* rope.freq_base, default 10000 */
    float rope_pos_scale; /* positions are multiplied by this (1 / linear factor) */
    bool rope_neox;    /* rotate halves (qwen2) instead of adjacent pairs (llama) */
    bool has_rope_freqs; /* per-dimension frequency divisors (rope_freqs.weight) */
    bool has_qkv_bias;
    bool tied_output;  /* output.weight absent: logits use token_embd.weight */
} sl_model_hparams;

typedef struct sl_model sl_model;
typedef struct sl_model_ctx sl_model_ctx;

/* Builds a model over g, which must outlive it (weights point into g). Returns
 * 0 and *out (free with sl_model_free), or SL_EUNSUPPORTED (architecture or
 * tensor type), SL_EINVAL/SL_ECORRUPT (missing/bad keys or tensors),
 * SL_ENOMEM, with a message naming the key or tensor in err. */
int sl_model_load(const sl_gguf *g, sl_model **out, char *err, size_t errlen);
/* Frees the model (not the GGUF handle). NULL is a no-op. */
void sl_model_free(sl_model *m);
/* Returns the model's hyperparameters (owned by the model). */
const sl_model_hparams *sl_model_get_hparams(const sl_model *m);
/* Returns the architecture's name ("llama", "qwen2"). Static string. */
const char *sl_model_arch_name(sl_model_arch a);

/* Creates the state of one sequence of up to n_ctx positions, taking batches
 * of up to max_batch tokens, run on up to max_threads threads, with its keys
 * and values stored as kv_type (SL_MODEL_KV_DEFAULT, SL_KT_F16 or SL_KT_F32;
 * see sl_model_kv_view). Returns 0 and *out (free with sl_model_ctx_free),
 * SL_EINVAL or SL_ENOMEM. */
int sl_model_ctx_create(const sl_model *m, int n_ctx, int max_batch, int max_threads, int kv_type,
                        sl_model_ctx **out);
/* Frees the context. NULL is a no-op. */
void sl_model_ctx_free(sl_model_ctx *c);
/* Returns the context's n_ctx. */
int sl_model_ctx_n_ctx(const sl_model_ctx *c);
/* Returns the context's max_batch. */
int sl_model_ctx_max_batch(const sl_model_ctx *c);

/* Runs tokens[0..n) at positions [pos, pos + n) of the context's sequence,
 * appending their keys and values to the cache (positions >= pos that were
 * there before are overwritten: this is how a caller rewinds). Writes the
 * logits of the last token to logits[0..n_vocab), or with all_logits those of
 * every token to logits[n][n_vocab]. pool may be NULL (this thread only) and
 * must have at most max_threads threads. Returns 0, SL_EINVAL (n outside
 * 1..max_batch, pos + n > n_ctx, too many threads), SL_ERANGE (a token id
 * outside the vocabulary) or SL_ENOMEM. */
int sl_model_forward(sl_model_ctx *c, const int32_t *tokens, int n, int pos, float *logits,
                     bool all_logits, sl_pool *pool);

/* ---- serving: many sequences over a paged cache ----
 *
 * sl_model_forward_batch runs one step for several sequences at once: the
 * tokens of all of them (prefill chunks and single decode tokens mixed) go
 * through every weight matrix together, and each token attends over its own
 * sequence's keys and values, which live in fixed-size blocks named by the
 * sequence's block table (engine/kv owns the blocks; this module only reads
 * and writes rows through the view below). sl_model_forward is the same code
 * with the context's contiguous cache seen as one block of n_ctx positions.
 *
 * Batch invariance (a sequence's logits are bitwise the same whatever other
 * sequences share the step, however its prompt was chunked, whatever the
 * block size and the thread count):
 *   - every weight product is sl_kernel_matmul on its batch-invariant path
 *     (never the BLAS path): each output element is one dot with a fixed
 *     reduction order, independent of n_tok and of the row split;
 *   - rmsnorm, rope, bias, swiglu and the residual adds work row by row;
 *   - attention computes each (token, head) pair alone: scores over positions
 *     0..pos in order, a softmax over that row, then the weighted sum of the
 *     values in position order; the block layout changes only where a row is
 *     read, never the order of the arithmetic;
 *   - a token's key and value are written to the cache before attention, and
 *     are bitwise the same whichever step computed them, so reusing cached
 *     blocks (a shared prefix, an earlier chunk) changes nothing. */
typedef struct sl_model_kv_view {
    void *kbase, *vbase;   /* keys of (block b, layer l, KV head h, row r) at kbase + */
    size_t block_stride;   /*   b * block_stride + l * layer_stride + (h * block_tokens + r) *
                              head_dim (elements of type); values the same from vbase */
    size_t layer_stride;
    int block_tokens;      /* positions per block */
    int type;              /* SL_KT_F16 or SL_KT_F32 */
} sl_model_kv_view;

/* The element type of the key/value cache. f16 halves the bytes attention
 * streams per decoded token and the memory per cached position, as
 * llama.cpp's default cache does. A key or value is computed in f32 and
 * rounded to nearest f16 once, when it is written; every reader then sees
 * the same rounded value, so batch invariance and prefix reuse hold exactly
 * as with f32 (the rounding depends on the value only). f32 keeps the
 * engine within f32 rounding of a double-precision reference. */
#define SL_MODEL_KV_DEFAULT SL_KT_F16
/* Returns the type named "f16" or "f32", or -1. */
int sl_model_kv_type_parse(const char *name);

typedef struct sl_model_seq {
    const int32_t *tokens; /* n tokens at positions [pos, pos + n) */
    int n, pos;
    const int32_t *blocks; /* block table covering positions [0, pos + n) */
    int n_logits;          /* logits wanted for the last n_logits tokens (0..n) */
    float *hidden;         /* NULL, or [n][dim]: the final-normed hidden states */
} sl_model_seq;

/* Creates activation buffers for batches of up to max_batch tokens in total
 * over sequences of up to n_ctx positions, without a cache of its own (use
 * with sl_model_forward_batch only). Returns 0 and *out (free with
 * sl_model_ctx_free), SL_EINVAL or SL_ENOMEM. */
int sl_model_batch_ctx_create(const sl_model *m, int n_ctx, int max_batch, int max_threads,
                              sl_model_ctx **out);
/* Runs seqs[0..n_seqs) as one batch (see above), writing the keys and values
 * of their new positions through kv and the logits of the rows they ask for
 * to logits[rows][n_vocab], rows in sequence order. Returns 0, SL_EINVAL (a
 * sequence outside 1..max_batch tokens in total, pos + n > n_ctx, too many
 * threads), SL_ERANGE (a token outside the vocabulary) or SL_ENOMEM. */
int sl_model_forward_batch(sl_model_ctx *c, const sl_model_kv_view *kv, const sl_model_seq *seqs,
                           int n_seqs, float *logits, sl_pool *pool);

/* Builds the tokenizer described by g's tokenizer.ggml.* keys. Returns 0 and
 * *out (free with sl_tok_destroy), or SL_E* with a message in err. */
int sl_model_tokenizer_load(const sl_gguf *g, sl_tokenizer **out, char *err, size_t errlen);

#endif
