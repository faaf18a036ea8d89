/*
 * engine/train: trains small llama-architecture models on the CPU and writes
 * them as GGUF files the engine serves (`sluice train`).
 *
 * It owns four things:
 *   - the model's forward and backward passes (token embedding, RMSNorm, RoPE
 *     in the engine's llama pair layout, causal multi-head attention with
 *     optional grouped KV heads, SwiGLU, output tied to the embedding) and the
 *     cross-entropy loss, with matrix products in OpenBLAS and the rest spread
 *     over a core thread pool in fixed partitions (so a run is bitwise
 *     repeatable for a given seed and thread count);
 *   - AdamW with decoupled weight decay, linear warm-up then cosine decay,
 *     and global gradient-norm clipping;
 *   - a byte-level BPE tokenizer learned from the corpus, written as a
 *     `gpt2` tokenizer (pre-tokenizer `default`) with ChatML special tokens;
 *   - the training loop: data loader, held-out validation, checkpoints
 *     (temp file, fsync, rename) that resume bitwise, and the final GGUF;
 *   plus the generator of the synthetic chat corpus (a product catalogue's
 *   support assistant, and short stories) and its held-out question set.
 *
 * The building blocks (sl_train_op_*) are also compiled in double precision
 * from the same source, for the gradient checks in tests/unit/train.
 */
#ifndef SL_ENGINE_TRAIN_H
#define SL_ENGINE_TRAIN_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- model shape ---- */
typedef struct sl_train_hparams {
    int dim;       /* embedding width; n_head * head_dim */
    int n_layer;
    int n_head;
    int n_head_kv; /* divides n_head */
    int n_ff;      /* SwiGLU hidden width */
    int n_vocab;
    int n_ctx;     /* positions trained (the sequence length) */
    float norm_eps;
    float rope_base;
} sl_train_hparams;

/* Returns 0 when hp describes a model the trainer can build, else SL_EINVAL
 * with the reason in err. */
int sl_train_hparams_check(const sl_train_hparams *hp, char *err, size_t errlen);
/* Returns the number of parameters (floats) of the model. */
size_t sl_train_n_params(const sl_train_hparams *hp);

/* ---- the float model: parameters, gradients, activations ----
 * Parameters are one flat array in this order (row-major, rows = outputs):
 * token_embd [V][D]; per layer attn_norm [D], wq [D][D], wk [KV][D], wv
 * [KV][D], wo [D][D], ffn_norm [D], w_gate [F][D], w_up [F][D], w_down [D][F];
 * output_norm [D]. */
typedef struct sl_train_model sl_train_model;

/* Creates a model for batches of `batch` sequences of hp->n_ctx tokens; pool
 * (may be NULL) is borrowed and must outlive the model. Parameters start at
 * zero (see sl_train_model_init). Returns 0 and *out (free with
 * sl_train_model_free), SL_EINVAL or SL_ENOMEM. */
int sl_train_model_create(const sl_train_hparams *hp, int batch, sl_pool *pool,
                          sl_train_model **out);
/* Frees the model. NULL is a no-op. */
void sl_train_model_free(sl_train_model *m);
/* Fills the parameters: norms 1, matrices normal(0, 0.02), the output
 * projections of each block scaled by 1/sqrt(2 n_layer). Deterministic in seed. */
void sl_train_model_init(sl_train_model *m, uint64_t seed);
/* Return the parameter and gradient arrays (sl_train_n_params floats, owned by m). */
float *sl_train_model_params(sl_train_model *m);
float *sl_train_model_grads(sl_train_model *m);
const sl_train_hparams *sl_train_model_hparams(const sl_train_model *m);

/* Runs the forward pass over tokens [nb][n_ctx + 1] (inputs are the first
 * n_ctx of each row, targets the last n_ctx), nb <= batch, and stores the mean
 * cross-entropy in *loss. With grads, also runs the backward pass and
 * overwrites the gradients. Returns 0, SL_EINVAL or SL_ERANGE (a token id out
 * of the vocabulary). */
int sl_train_model_run(sl_train_model *m, const int32_t *tokens, int nb, bool grads,
                       double *loss);
/* As sl_train_model_run, but only the targets whose mask byte is non-zero
 * count: mask is laid out like tokens [nb][n_ctx + 1], and mask[b][t + 1]
 * says whether target tokens[b][t + 1] counts (column 0 is ignored). The
 * loss is the mean over the counted targets (0 when none counts); the others
 * contribute no gradient. mask NULL: all count. Returns as sl_train_model_run. */
int sl_train_model_run_masked(sl_train_model *m, const int32_t *tokens, const uint8_t *mask,
                              int nb, bool grads, double *loss);
/* Returns the logits [nb * n_ctx][n_vocab] of the last forward-only run
 * (owned by m; overwritten by the next run; garbage after a run with grads). */
const float *sl_train_model_logits(const sl_train_model *m);

/* Double-precision reference of the whole model: loss and gradients
 * (grads may be NULL) for params laid out as above, over tokens [nb][n_ctx+1].
 * Returns 0, SL_EINVAL or SL_ENOMEM. */
int sl_train_ref_loss(const sl_train_hparams *hp, const double *params, const int32_t *tokens,
                      int nb, double *loss, double *grads);
/* The same with a loss mask laid out as in sl_train_model_run_masked. */
int sl_train_ref_loss_masked(const sl_train_hparams *hp, const double *params,
                             const int32_t *tokens, const uint8_t *mask, int nb, double *loss,
                             double *grads);

/* Marks the assistant's answers in a token stream: sets mask[i] = 1 for the
 * tokens of every assistant message's content and its closing im_end (what
 * the model must learn to say), 0 elsewhere (system and user turns, the
 * role headers, text outside messages). An assistant message starts at
 * im_start followed by the ids of hdr[0..n_hdr) ("assistant\n"). */
void sl_train_assistant_mask(const int32_t *ids, size_t n, int32_t im_start, int32_t im_end,
                             const int32_t *hdr, size_t n_hdr, uint8_t *mask);

/* ---- building blocks in double precision (tests) ----
 * Backward functions ADD into the gradients of their inputs. Shapes: n rows
 * (tokens) of width d; attention works on nb sequences of t tokens. */
void sl_train_op_embed_fwd_d(double *x, const double *emb, const int32_t *tok, int n, int d);
void sl_train_op_embed_bwd_d(double *demb, const double *dx, const int32_t *tok, int n, int d);
void sl_train_op_rmsnorm_fwd_d(double *y, double *rstd, const double *x, const double *w, int n,
                               int d, double eps, sl_pool *pool);
void sl_train_op_rmsnorm_bwd_d(double *dx, double *dw, const double *dy, const double *x,
                               const double *w, const double *rstd, int n, int d, sl_pool *pool);
/* Rotates pairs (2i, 2i+1) of each head of rows x[n][n_heads*hd] at position
 * (row % t) by the table cs/sn [t][hd/2]; inverse rotates back (backward). */
void sl_train_op_rope_d(double *x, int n, int t, int n_heads, int hd, const double *cs,
                        const double *sn, bool inverse);
/* Fills cs/sn [t][hd/2] with cos/sin(pos * base^(-2i/hd)). */
void sl_train_op_rope_table_d(double *cs, double *sn, int t, int hd, double base);
void sl_train_op_attn_fwd_d(double *out, double *probs, const double *q, const double *k,
                            const double *v, int nb, int t, int n_head, int n_head_kv, int hd,
                            sl_pool *pool);
void sl_train_op_attn_bwd_d(double *dq, double *dk, double *dv, const double *dout,
                            const double *q, const double *k, const double *v,
                            const double *probs, int nb, int t, int n_head, int n_head_kv,
                            int hd, sl_pool *pool);
void sl_train_op_swiglu_fwd_d(double *h, const double *g, const double *u, size_t n);
void sl_train_op_swiglu_bwd_d(double *dg, double *du, const double *dh, const double *g,
                              const double *u, size_t n);
/* y[n][out] = x[n][in] * w[out][in]^T */
void sl_train_op_matmul_fwd_d(double *y, const double *x, const double *w, int n, int in, int out,
                              sl_pool *pool);
void sl_train_op_matmul_bwd_d(double *dx, double *dw, const double *dy, const double *x,
                              const double *w, int n, int in, int out, sl_pool *pool);
/* Returns the mean cross-entropy of logits[n][v] against targets; with
 * dlogits, writes (not adds) its gradient there. */
double sl_train_op_xent_d(double *dlogits, const double *logits, const int32_t *targets, int n,
                          int v);

/* ---- optimizer ---- */
typedef struct sl_train_optim {
    float lr;          /* peak learning rate */
    float min_lr;      /* end of the cosine */
    int warmup;        /* steps of linear warm-up */
    int total_steps;
    float beta1, beta2, adam_eps;
    float weight_decay; /* decoupled; matrices only, not norms */
    float clip;        /* global gradient norm limit; <= 0: off */
} sl_train_optim;

/* Fills o with lr 3e-3, min_lr lr/10, warmup 5% of total_steps, betas
 * 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1. */
void sl_train_optim_default(sl_train_optim *o, int total_steps);
/* Returns the learning rate of step (0-based). */
float sl_train_lr(const sl_train_optim *o, int step);
/* One AdamW step (step is 0-based) over the model's parameters with the
 * moments m1, m2 (n_params each). Clips first; stores the gradient norm
 * before clipping in *gnorm (may be NULL). */
void sl_train_adamw(sl_train_model *m, float *m1, float *m2, const sl_train_optim *o, int step,
                    double *gnorm);

/* ---- tokenizer training ---- */
#define SL_TRAIN_MIN_VOCAB 512
#define SL_TRAIN_MAX_VOCAB 65536
/* The special tokens, always the last three ids, in this order. */
#define SL_TRAIN_TOK_ENDOFTEXT "<|endoftext|>"
#define SL_TRAIN_TOK_IM_START "<|im_start|>"
#define SL_TRAIN_TOK_IM_END "<|im_end|>"

typedef struct sl_train_vocab {
    int n_tokens;   /* 256 byte tokens, the merges' tokens, then 3 specials */
    char **tokens;  /* byte-level text (GPT-2 byte-to-unicode alphabet) */
    int32_t *types; /* SL_TOK_TYPE_* */
    int n_merges;
    char **merges;  /* "left right", in rank order */
    int32_t bos_id, eos_id, eot_id;
} sl_train_vocab;

/* Learns a byte-level BPE vocabulary of n_vocab tokens (specials included)
 * from text (split at special tokens, then by the GPT-2 pre-tokenizer).
 * Deterministic. Returns 0 and fills v (free with sl_train_vocab_free), or
 * SL_EINVAL/SL_ENOMEM with a message in err. */
int sl_train_bpe(const char *text, size_t len, int n_vocab, sl_train_vocab *v, char *err,
                 size_t errlen);
/* Frees what v holds. */
void sl_train_vocab_free(sl_train_vocab *v);

/* ---- GGUF output ---- */
/* Writes the model as GGUF (llama architecture; matrices F32 or F16, norms
 * F32; tied output) with vocabulary v, the ChatML template and general.name.
 * Returns 0 or SL_E* with a message in err. */
int sl_train_export(const sl_train_model *m, const sl_train_vocab *v, const char *name, bool f16,
                    const char *path, char *err, size_t errlen);
/* The chat template written into models (ChatML). Static string. */
const char *sl_train_chat_template(void);

/* ---- corpus ---- */
typedef struct sl_train_corpus_opts {
    uint64_t seed;
    size_t size_bytes;  /* approximate size of the corpus */
    int n_products;     /* catalogue size (1..64) */
} sl_train_corpus_opts;

/* Fills o with seed 1, 3 MB, 24 products. */
void sl_train_corpus_default(sl_train_corpus_opts *o);
/* Generates the ChatML corpus into out (its max must allow size_bytes).
 * Returns 0 or SL_ENOMEM/SL_ETOOBIG/SL_EINVAL. */
int sl_train_make_corpus(const sl_train_corpus_opts *o, sl_buf *out);
/* Generates the held-out questions (phrasings the corpus never uses) as JSON
 * lines {"question": ..., "expect": ...} into out. Returns 0 or SL_E*. */
int sl_train_make_eval(const sl_train_corpus_opts *o, sl_buf *out);

/* ---- the training loop ---- */
typedef struct sl_train_opts {
    const char *corpus_path;
    const char *out_path;
    const char *name;        /* general.name */
    sl_train_hparams hp;     /* n_vocab is the BPE vocabulary size */
    int batch;
    int steps;
    float lr;
    uint64_t seed;
    int threads;
    bool f16;
    const char *ckpt_path;   /* NULL: no checkpoints */
    int ckpt_every;          /* steps between checkpoints */
    bool resume;             /* continue from ckpt_path when it exists */
    int eval_every;          /* steps between validation losses; <= 0: only at the end */
    int stop_after;          /* > 0: return after this step (tests); no GGUF */
    bool mask_assistant;     /* loss only on assistant answers (sl_train_assistant_mask) */
    bool doc_start;          /* windows start at a document (after an end-of-text) */
} sl_train_opts;

typedef struct sl_train_progress {
    int step, steps;         /* step just finished (1-based) */
    double loss;             /* training loss of that step */
    double val_loss;         /* latest validation loss; < 0 before the first */
    double lr;
    double tokens_per_s;     /* since the start (or the resume) */
    double eta_s;
    bool val_now;            /* val_loss was computed at this step */
    const char *phase;       /* non-NULL for a phase message ("tokenizer", ...) */
} sl_train_progress;

typedef void (*sl_train_progress_fn)(void *user, const sl_train_progress *p);

/* Fills o with the demo configuration's defaults (dim 128, 4 layers, 4
 * heads, ff 384, vocab 1024, n_ctx 128, batch 16, 600 steps, lr 3e-3). */
void sl_train_opts_default(sl_train_opts *o);
/* Runs training as o says, calling progress (may be NULL) after each step.
 * Stores the final training loss in *final_loss (may be NULL). Returns 0 or
 * SL_E* with a message in err. */
int sl_train_run(const sl_train_opts *o, sl_train_progress_fn progress, void *user,
                 double *final_loss, char *err, size_t errlen);

#endif
