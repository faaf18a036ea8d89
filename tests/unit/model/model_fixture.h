/* Builds small random-weight llama/qwen2 GGUF models in memory with the C
 * writer, and keeps the weights (as the file holds them, dequantized) in
 * double precision for the reference forward pass. */
#ifndef MODEL_FIXTURE_H
#define MODEL_FIXTURE_H

#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "tokenizer/tok_vocabs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_MAX_LAYERS 4
#define FX_MAX_BUFS 256

typedef struct fx_config {
    const char *arch;  /* "llama", "qwen2", or anything for error tests */
    int dim, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int wtype;         /* SL_KT_* of the matrices (norms and biases stay F32) */
    float eps, rope_base;
    bool tied;         /* no output.weight */
    bool rope_freqs;   /* add a rope_freqs.weight tensor (llama3-style scaling) */
    float rope_linear; /* > 0: rope.scaling.type linear with this factor */
    uint64_t seed;
    const char *skip_tensor;  /* leave this tensor out */
    const char *bad_shape;    /* write this tensor with one extra row */
    bool with_tokenizer;
    const char *chat_template;
} fx_config;

typedef struct fx_layer {
    double *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *ffn_norm, *wg, *wu, *wd;
} fx_layer;

typedef struct fx_model {
    fx_config c;
    int head_dim, q_dim, kv_dim;
    double *emb;         /* [n_vocab][dim] */
    fx_layer L[FX_MAX_LAYERS];
    double *out_norm;    /* [dim] */
    double *out;         /* [n_vocab][dim] (== emb when tied) */
    double *rope_freqs;  /* [head_dim/2] or NULL */
    void *bytes;         /* the GGUF file */
    size_t len;
    void *bufs[FX_MAX_BUFS];
    int n_bufs;
} fx_model;

static inline fx_config fx_default(const char *arch, int wtype)
{
    bool k = wtype == SL_KT_Q4_K || wtype == SL_KT_Q6_K;
    fx_config c = {
        .arch = arch, .dim = k ? 256 : 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
        .n_ff = k ? 256 : 96, .n_vocab = 300, .n_ctx = 128, .wtype = wtype, .eps = 1e-5f,
        .rope_base = 10000.0f, .seed = 1234, .with_tokenizer = true,
    };
    return c;
}

static uint64_t fx_rng;
static inline double fx_unif(void) /* [-1, 1) */
{
    uint64_t z = (fx_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static inline void *fx_keep(fx_model *m, void *p)
{
    if (m->n_bufs < FX_MAX_BUFS)
        m->bufs[m->n_bufs++] = p;
    return p;
}

/* Adds a rows x cols matrix (uniform in [-scale, scale), or 1 + that when
 * around_one) of type to the writer and returns it as the file holds it. */
static inline double *fx_tensor(fx_model *m, sl_gguf_writer *w, const char *name, int type,
                                int rows, int cols, double scale, bool around_one)
{
    size_t n = (size_t)rows * (size_t)cols;
    float *f = fx_keep(m, calloc(n, sizeof(float)));
    for (size_t i = 0; i < n; i++)
        f[i] = (float)((around_one ? 1.0 : 0.0) + scale * fx_unif());
    size_t rb = 0;
    sl_kernel_row_bytes(type, cols, &rb);
    char *q = fx_keep(m, calloc((size_t)rows + 1, rb));
    float *back = calloc(n, sizeof(float));
    for (int r = 0; r < rows; r++) {
        if (type == SL_KT_F32)
            memcpy(q + (size_t)r * rb, f + (size_t)r * cols, rb);
        else
            sl_kernel_quantize_row(type, f + (size_t)r * cols, q + (size_t)r * rb, cols);
        sl_kernel_dequantize_row(type, q + (size_t)r * rb, back + (size_t)r * cols, cols);
    }
    double *d = fx_keep(m, calloc(n, sizeof(double)));
    for (size_t i = 0; i < n; i++)
        d[i] = back[i];
    free(back);
    if (!(m->c.skip_tensor && !strcmp(m->c.skip_tensor, name))) {
        bool bad = m->c.bad_shape && !strcmp(m->c.bad_shape, name);
        uint64_t dims[2] = {(uint64_t)cols, (uint64_t)rows + (bad ? 1 : 0)};
        uint32_t nd = rows == 1 ? 1 : 2;
        if (rows == 1 && bad)
            nd = 2;
        int rc = sl_gguf_writer_add_tensor(w, name, (sl_ggml_type)type, nd, dims, q,
                                           (uint64_t)rb * dims[1]);
        if (rc)
            fprintf(stderr, "fx_tensor %s: %d\n", name, rc);
    }
    return d;
}

static inline void fx_free(fx_model *m)
{
    for (int i = 0; i < m->n_bufs; i++)
        free(m->bufs[i]);
    sl_free(m->bytes);
    memset(m, 0, sizeof *m);
}

static inline void fx_add_tokenizer(sl_gguf_writer *w, bool spm, const char *tmpl)
{
    tv_vocab v;
    if (spm)
        tv_build_spm(&v, true);
    else
        tv_build_bpe(&v);
    sl_gguf_writer_add_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm)
        sl_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2");
    sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, v.n);
    if (spm)
        sl_gguf_writer_add_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, v.score, v.n);
    sl_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, v.type, v.n);
    if (!spm)
        sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", v.merges, v.n_merges);
    sl_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", spm ? SPM_BOS : BPE_EOT);
    sl_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", spm ? SPM_EOS : BPE_IM_END);
    if (spm)
        sl_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", SPM_UNK);
    sl_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", spm);
    if (tmpl)
        sl_gguf_writer_add_str(w, "tokenizer.chat_template", tmpl);
    tv_free(&v);
}

/* Builds the model described by c into m (m->bytes is the GGUF file). */
static inline int fx_build(fx_model *m, const fx_config *c)
{
    memset(m, 0, sizeof *m);
    m->c = *c;
    fx_rng = c->seed;
    m->head_dim = c->dim / c->n_head;
    m->q_dim = c->n_head * m->head_dim;
    m->kv_dim = c->n_head_kv * m->head_dim;
    sl_gguf_writer *w = NULL;
    if (sl_gguf_writer_new(&w))
        return -1;
    char k[128];
    const char *a = c->arch;
    sl_gguf_writer_add_str(w, "general.architecture", a);
#define KEY(s) (snprintf(k, sizeof k, "%s." s, a), k)
    sl_gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    sl_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)c->dim);
    sl_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)c->n_layer);
    sl_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->n_ff);
    sl_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_head);
    sl_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    sl_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->eps);
    sl_gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_base);
    if (c->rope_linear > 0) {
        sl_gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear");
        sl_gguf_writer_add_f32(w, KEY("rope.scaling.factor"), c->rope_linear);
    }
#undef KEY
    bool spm = strcmp(a, "qwen2") != 0;
    if (c->with_tokenizer)
        fx_add_tokenizer(w, spm, c->chat_template);

    int D = c->dim, F = c->n_ff, V = c->n_vocab, T = c->wtype;
    double s_in = sqrt(3.0 / D), s_ff = sqrt(3.0 / F), s_q = sqrt(3.0 / m->q_dim);
    m->emb = fx_tensor(m, w, "token_embd.weight", T, V, D, 1.0, false);
    for (int l = 0; l < c->n_layer; l++) {
        fx_layer *L = &m->L[l];
        char n[96];
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        L->attn_norm = fx_tensor(m, w, NM("attn_norm.weight"), SL_KT_F32, 1, D, 0.25, true);
        L->wq = fx_tensor(m, w, NM("attn_q.weight"), T, m->q_dim, D, 2 * s_in, false);
        L->wk = fx_tensor(m, w, NM("attn_k.weight"), T, m->kv_dim, D, 2 * s_in, false);
        L->wv = fx_tensor(m, w, NM("attn_v.weight"), T, m->kv_dim, D, s_in, false);
        if (!strcmp(a, "qwen2")) {
            L->bq = fx_tensor(m, w, NM("attn_q.bias"), SL_KT_F32, 1, m->q_dim, 0.5, false);
            L->bk = fx_tensor(m, w, NM("attn_k.bias"), SL_KT_F32, 1, m->kv_dim, 0.5, false);
            L->bv = fx_tensor(m, w, NM("attn_v.bias"), SL_KT_F32, 1, m->kv_dim, 0.5, false);
        }
        L->wo = fx_tensor(m, w, NM("attn_output.weight"), T, D, m->q_dim, s_q, false);
        L->ffn_norm = fx_tensor(m, w, NM("ffn_norm.weight"), SL_KT_F32, 1, D, 0.25, true);
        L->wg = fx_tensor(m, w, NM("ffn_gate.weight"), T, F, D, 2 * s_in, false);
        L->wu = fx_tensor(m, w, NM("ffn_up.weight"), T, F, D, s_in, false);
        L->wd = fx_tensor(m, w, NM("ffn_down.weight"), T, D, F, s_ff, false);
#undef NM
    }
    m->out_norm = fx_tensor(m, w, "output_norm.weight", SL_KT_F32, 1, D, 0.25, true);
    /* the classifier gets a larger scale so that logits spread over a few units */
    m->out = c->tied ? m->emb : fx_tensor(m, w, "output.weight", T, V, D, 3 * s_in, false);
    if (c->rope_freqs) {
        int half = m->head_dim / 2;
        m->rope_freqs = fx_tensor(m, w, "rope_freqs.weight", SL_KT_F32, 1, half, 0.0, true);
        /* llama3-style divisors: 1 for high frequencies, growing to 8 */
        for (int i = 0; i < half; i++)
            m->rope_freqs[i] = 1.0 + 7.0 * i / (half - 1);
        float *f = (float *)m->bufs[m->n_bufs - 2]; /* the bytes the writer holds */
        for (int i = 0; i < half; i++)
            f[i] = (float)m->rope_freqs[i];
    }
    int rc = sl_gguf_writer_write_mem(w, &m->bytes, &m->len);
    sl_gguf_writer_free(w);
    return rc;
}

#endif
