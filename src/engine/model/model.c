/* engine/model: loading llama/qwen2 weights from a GGUF mapping and the
 * forward pass over one sequence. See model.h. */
#include "engine/model/model.h"

#include "engine/kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A weight matrix in the mapping: rows of `cols` elements of `type`, each
 * row_bytes long. GGUF dims are [cols, rows] (innermost first). */
typedef struct sl_weight {
    const void *data;
    int type;
    int64_t rows, cols;
    size_t row_bytes;
} sl_weight;

typedef struct sl_layer {
    const float *attn_norm; /* (dim) */
    sl_weight wq;           /* (n_head * head_dim rows, dim cols) */
    sl_weight wk;           /* (n_head_kv * head_dim, dim) */
    sl_weight wv;           /* (n_head_kv * head_dim, dim) */
    const float *bq;        /* (n_head * head_dim) qwen2 only, else NULL */
    const float *bk;        /* (n_head_kv * head_dim) qwen2 only */
    const float *bv;        /* (n_head_kv * head_dim) qwen2 only */
    sl_weight wo;           /* (dim, n_head * head_dim) */
    const float *ffn_norm;  /* (dim) */
    sl_weight w_gate;       /* (n_ff, dim) */
    sl_weight w_up;         /* (n_ff, dim) */
    sl_weight w_down;       /* (dim, n_ff) */
} sl_layer;

struct sl_model {
    sl_model_hparams hp;
    sl_weight tok_embd;       /* (n_vocab, dim): row t is token t's embedding */
    sl_layer *layers;         /* (n_layer) */
    const float *output_norm; /* (dim) */
    sl_weight output;         /* (n_vocab, dim); a copy of tok_embd when tied */
    const float *rope_freqs;  /* (rot_dim / 2) frequency divisors, or NULL */
    double *inv_freq;         /* (rot_dim / 2) base^(-2i/rot_dim) / rope_freqs[i] */
    /* the load-time repacked weights, one after the other (sl_huge_alloc);
     * repacked sl_weight.data point into it */
    uint8_t *repacked;
    size_t repacked_bytes;
};

struct sl_model_ctx {
    const sl_model *m;
    int n_ctx, max_batch, max_threads;
    int q_dim, kv_dim;
    void *key_cache;    /* (n_layer, n_ctx, kv_dim) of kv_type; NULL in a batch context */
    void *value_cache;  /* (n_layer, n_ctx, kv_dim) of kv_type; NULL in a batch context */
    int kv_type;        /* SL_KT_F16 or SL_KT_F32 (own cache only) */
    float *x;           /* (max_batch, dim) the residual stream */
    float *xb;          /* (max_batch, dim) normed input of a block */
    float *xb2;         /* (max_batch, dim) output of a block */
    float *q;           /* (max_batch, q_dim) */
    float *k;           /* (max_batch, kv_dim) new keys before they go to the cache */
    float *v;           /* (max_batch, kv_dim) new values */
    float *att;         /* (max_batch, q_dim) attention output, heads side by side */
    float *hb;          /* (max_batch, n_ff) gate, then swiglu(gate, up) */
    float *hb2;         /* (max_batch, n_ff) up */
    float *scores;      /* (max_threads, n_ctx) one attention row per worker */
    float *rope_cos;    /* (max_batch, rot_dim / 2) */
    float *rope_sin;    /* (max_batch, rot_dim / 2) */
    int *tok_seq;       /* (max_batch) which sequence of the batch token t is */
    int *tok_pos;       /* (max_batch) its position in that sequence */
};

const char *sl_model_arch_name(sl_model_arch a)
{
    return a == SL_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* ---- hyperparameters ---- */

/* Reads <arch>.<name> as a positive int <= max; def < 0 means required. */
static int get_hp_int(const sl_gguf *g, const char *arch, const char *name, long def, long max,
                      int *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    uint64_t v;
    int rc = sl_gguf_get_u64(g, key, &v);
    if (rc == SL_ENOTFOUND) {
        if (def < 0)
            return sl_errf(err, errlen, SL_EINVAL, "missing metadata key %s", key);
        *out = (int)def;
        return 0;
    }
    if (rc)
        return sl_errf(err, errlen, SL_EINVAL, "metadata key %s: expected a non-negative integer",
                    key);
    if (v == 0 || v > (uint64_t)max)
        return sl_errf(err, errlen, SL_EINVAL, "metadata key %s = %llu: expected 1..%ld", key,
                    (unsigned long long)v, max);
    *out = (int)v;
    return 0;
}

/* Reads <arch>.<name> as a finite float > 0, or def when absent. */
static int get_hp_float(const sl_gguf *g, const char *arch, const char *name, float def,
                        float *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    float v;
    int rc = sl_gguf_get_f32(g, key, &v);
    if (rc == SL_ENOTFOUND) {
        *out = def;
        return 0;
    }
    if (rc || !isfinite(v) || v <= 0)
        return sl_errf(err, errlen, SL_EINVAL, "metadata key %s: expected a positive finite number",
                    key);
    *out = v;
    return 0;
}

static int read_hparams(const sl_gguf *g, sl_model_hparams *hp, char *err, size_t errlen)
{
    sl_str archs;
    if (sl_gguf_get_str(g, "general.architecture", &archs))
        return sl_errf(err, errlen, SL_EINVAL,
                    "missing metadata key general.architecture (a string); supported: llama, qwen2");
    char arch[64];
    if (sl_str_eq_c(archs, "llama")) {
        hp->arch = SL_ARCH_LLAMA;
    } else if (sl_str_eq_c(archs, "qwen2")) {
        hp->arch = SL_ARCH_QWEN2;
    } else {
        int n = (int)SL_MIN(archs.n, 60);
        char shown[64];
        for (int i = 0; i < n; i++) {
            unsigned char c = (unsigned char)archs.p[i];
            shown[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        shown[n] = 0;
        return sl_errf(err, errlen, SL_EUNSUPPORTED,
                    "unsupported architecture %s; supported: llama, qwen2", shown);
    }
    snprintf(arch, sizeof arch, "%s", sl_model_arch_name(hp->arch));
    int rc;
    if ((rc = get_hp_int(g, arch, "context_length", 2048, SL_MODEL_MAX_CTX, &hp->n_ctx_train, err,
                         errlen)) ||
        (rc = get_hp_int(g, arch, "embedding_length", -1, SL_MODEL_MAX_DIM, &hp->dim, err,
                         errlen)) ||
        (rc = get_hp_int(g, arch, "block_count", -1, SL_MODEL_MAX_LAYERS, &hp->n_layer, err,
                         errlen)) ||
        (rc = get_hp_int(g, arch, "feed_forward_length", -1, 16 * SL_MODEL_MAX_DIM, &hp->n_ff,
                         err, errlen)) ||
        (rc = get_hp_int(g, arch, "attention.head_count", -1, SL_MODEL_MAX_HEADS, &hp->n_head,
                         err, errlen)) ||
        (rc = get_hp_int(g, arch, "attention.head_count_kv", hp->n_head, SL_MODEL_MAX_HEADS,
                         &hp->n_head_kv, err, errlen)))
        return rc;
    if (hp->n_head % hp->n_head_kv)
        return sl_errf(err, errlen, SL_EINVAL,
                    "%s.attention.head_count (%d) is not a multiple of head_count_kv (%d)", arch,
                    hp->n_head, hp->n_head_kv);
    long def_hd = hp->dim % hp->n_head ? -1 : hp->dim / hp->n_head;
    if ((rc = get_hp_int(g, arch, "attention.key_length", def_hd, SL_MODEL_MAX_DIM, &hp->head_dim,
                         err, errlen)))
        return rc;
    int vlen;
    if ((rc = get_hp_int(g, arch, "attention.value_length", hp->head_dim, SL_MODEL_MAX_DIM, &vlen,
                         err, errlen)))
        return rc;
    if (vlen != hp->head_dim)
        return sl_errf(err, errlen, SL_EUNSUPPORTED,
                    "%s.attention.value_length (%d) differs from key_length (%d)", arch, vlen,
                    hp->head_dim);
    if ((rc = get_hp_int(g, arch, "rope.dimension_count", hp->head_dim, SL_MODEL_MAX_DIM,
                         &hp->rot_dim, err, errlen)))
        return rc;
    if (hp->rot_dim % 2 || hp->rot_dim > hp->head_dim)
        return sl_errf(err, errlen, SL_EINVAL,
                    "%s.rope.dimension_count (%d) must be even and at most the head size (%d)",
                    arch, hp->rot_dim, hp->head_dim);
    if ((rc = get_hp_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err,
                           errlen)) ||
        (rc = get_hp_float(g, arch, "rope.freq_base", 10000.0f, &hp->rope_base, err, errlen)))
        return rc;
    /* rope scaling: none, linear (positions divided by the factor); the
     * llama3 kind comes as the rope_freqs.weight tensor instead */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    sl_str st;
    float factor = 1.0f;
    bool linear = false;
    if (!sl_gguf_get_str(g, key, &st)) {
        if (sl_str_eq_c(st, "linear"))
            linear = true;
        else if (!sl_str_eq_c(st, "none") && !sl_str_eq_c(st, "llama3"))
            return sl_errf(err, errlen, SL_EUNSUPPORTED,
                        "%s = \"%.*s\" is not supported; supported: none, linear", key,
                        (int)SL_MIN(st.n, 40), st.p);
    }
    if (linear &&
        (rc = get_hp_float(g, arch, "rope.scaling.factor", 1.0f, &factor, err, errlen)))
        return rc;
    snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
    if (!linear && sl_gguf_find_key(g, key) >= 0 &&
        (rc = get_hp_float(g, arch, "rope.scale_linear", 1.0f, &factor, err, errlen)))
        return rc;
    hp->rope_pos_scale = 1.0f / factor;
    hp->rope_neox = hp->arch == SL_ARCH_QWEN2;
    hp->has_qkv_bias = hp->arch == SL_ARCH_QWEN2;
    return 0;
}

/* ---- tensors ---- */

/* Finds name and checks its type is one the kernels handle and its shape is
 * exactly dims (n_dims of them, innermost first). */
static int get_tensor(const sl_gguf *g, const char *name, uint32_t n_dims, const int64_t *dims,
                      bool f32_only, const sl_gguf_tensor **out, char *err, size_t errlen)
{
    const sl_gguf_tensor *t = sl_gguf_find_tensor(g, name);
    if (!t)
        return sl_errf(err, errlen, SL_EINVAL, "missing tensor %s", name);
    char want[96], got[96];
    int wn = 0, gn = 0;
    for (uint32_t i = 0; i < n_dims; i++)
        wn += snprintf(want + wn, sizeof want - (size_t)wn, "%s%lld", i ? ", " : "",
                       (long long)dims[i]);
    for (uint32_t i = 0; i < t->n_dims; i++)
        gn += snprintf(got + gn, sizeof got - (size_t)gn, "%s%llu", i ? ", " : "",
                       (unsigned long long)t->dims[i]);
    bool ok = t->n_dims == n_dims;
    for (uint32_t i = 0; ok && i < n_dims; i++)
        ok = t->dims[i] == (uint64_t)dims[i];
    if (!ok)
        return sl_errf(err, errlen, SL_EINVAL, "tensor %s has shape [%s], expected [%s]", name, got,
                    want);
    if (f32_only ? t->type != SL_GGML_F32 : !sl_kernel_type_known((int)t->type))
        return sl_errf(err, errlen, SL_EUNSUPPORTED,
                    "tensor %s has type %s; supported: %s", name, sl_ggml_type_name(t->type),
                    f32_only ? "F32" : "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K");
    size_t rb;
    if (sl_kernel_row_bytes((int)t->type, (int64_t)t->dims[0], &rb))
        return sl_errf(err, errlen, SL_EINVAL,
                    "tensor %s: row length %llu is not a multiple of the %s block size", name,
                    (unsigned long long)t->dims[0], sl_ggml_type_name(t->type));
    /* float pointers and the kernels' half loads need natural alignment */
    if ((uintptr_t)t->data % 4)
        return sl_errf(err, errlen, SL_EINVAL, "tensor %s: data is not 4-byte aligned", name);
    *out = t;
    return 0;
}

static int get_weight(const sl_gguf *g, const char *name, int64_t rows, int64_t cols,
                      sl_weight *w, char *err, size_t errlen)
{
    const sl_gguf_tensor *t;
    int64_t dims[2] = {cols, rows};
    int rc = get_tensor(g, name, 2, dims, false, &t, err, errlen);
    if (rc)
        return rc;
    w->data = t->data;
    w->type = (int)t->type;
    w->rows = rows;
    w->cols = cols;
    sl_kernel_row_bytes(w->type, cols, &w->row_bytes);
    return 0;
}

static int get_vec(const sl_gguf *g, const char *name, int64_t n, const float **v, char *err,
                   size_t errlen)
{
    const sl_gguf_tensor *t;
    int rc = get_tensor(g, name, 1, &n, true, &t, err, errlen);
    if (!rc)
        *v = (const float *)t->data;
    return rc;
}

/* Repacks the matmul weights into the kernels' faster layout where they have
 * one for the type and shape on this CPU (same results; see
 * sl_kernel_repack_size). All of them share one huge-page buffer: decode
 * streams them end to end every token. The mapping stays the source of truth
 * for row lookups (tok_embd). */
static int repack_weights(sl_model *m, char *err, size_t errlen)
{
    enum { PER_LAYER = 7 };
    size_t n_w = (size_t)m->hp.n_layer * PER_LAYER + 1;
    static const char *const names[PER_LAYER] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                 "ffn_gate", "ffn_up", "ffn_down"};
    for (int pass = 0; pass < 2; pass++) {
        size_t at = 0;
        for (size_t i = 0; i < n_w; i++) {
            sl_weight *w;
            if (i + 1 == n_w) {
                w = &m->output;
            } else {
                sl_layer *L = &m->layers[i / PER_LAYER];
                sl_weight *ws[PER_LAYER] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                            &L->w_gate, &L->w_up, &L->w_down};
                w = ws[i % PER_LAYER];
            }
            size_t bytes;
            int type;
            int rc = sl_kernel_repack_size(w->type, w->rows, w->cols, &bytes, &type);
            if (rc == SL_EUNSUPPORTED)
                continue;
            if (rc)
                return sl_errf(err, errlen, rc, "%s: cannot repack for the kernels (bad shape)",
                               i + 1 == n_w ? "output" : names[i % PER_LAYER]);
            bytes = (bytes + 63) & ~(size_t)63; /* each weight starts on a cache line */
            if (pass == 1) {
                sl_kernel_repack_into(w->type, w->data, w->rows, w->cols, m->repacked + at);
                w->data = m->repacked + at;
                w->type = type;
            }
            at += bytes;
        }
        if (pass == 0) {
            if (at == 0)
                return 0;
            m->repacked = sl_huge_alloc(at);
            if (!m->repacked)
                return sl_errf(err, errlen, SL_ENOMEM,
                               "out of memory repacking the weights (%zu bytes)", at);
            m->repacked_bytes = at;
        }
    }
    return 0;
}

int sl_model_load(const sl_gguf *g, sl_model **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    sl_model *m = sl_calloc(1, sizeof *m);
    if (!m)
        return SL_ENOMEM;
    sl_model_hparams *hp = &m->hp;
    int rc = read_hparams(g, hp, err, errlen);
    if (rc)
        goto fail;

    /* the vocabulary size comes from the embedding; keys must agree */
    const sl_gguf_tensor *te = sl_gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        rc = sl_errf(err, errlen, SL_EINVAL, "missing tensor token_embd.weight");
        goto fail;
    }
    if (te->n_dims != 2 || te->dims[1] == 0 || te->dims[1] > SL_MODEL_MAX_VOCAB) {
        rc = sl_errf(err, errlen, SL_EINVAL,
                  "tensor token_embd.weight: expected 2 dims [%d, n_vocab] with n_vocab in 1..%d",
                  hp->dim, SL_MODEL_MAX_VOCAB);
        goto fail;
    }
    hp->n_vocab = (int)te->dims[1];
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", sl_model_arch_name(hp->arch));
    uint64_t vs;
    if (!sl_gguf_get_u64(g, key, &vs) && vs != (uint64_t)hp->n_vocab) {
        rc = sl_errf(err, errlen, SL_EINVAL, "%s = %llu but token_embd.weight has %d rows", key,
                  (unsigned long long)vs, hp->n_vocab);
        goto fail;
    }
    sl_gguf_arr toks;
    if (!sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) && toks.count > (uint64_t)hp->n_vocab) {
        rc = sl_errf(err, errlen, SL_EINVAL,
                  "tokenizer.ggml.tokens has %llu tokens but token_embd.weight only %d rows",
                  (unsigned long long)toks.count, hp->n_vocab);
        goto fail;
    }

    const int64_t dim = hp->dim, q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim, n_ff = hp->n_ff;
    if ((rc = get_weight(g, "token_embd.weight", hp->n_vocab, dim, &m->tok_embd, err, errlen)))
        goto fail;
    m->layers = sl_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = SL_ENOMEM;
        goto fail;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        sl_layer *L = &m->layers[l];
        char nm[96];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        if ((rc = get_vec(g, NAME("attn_norm.weight"), dim, &L->attn_norm, err, errlen)) ||
            (rc = get_weight(g, NAME("attn_q.weight"), q_dim, dim, &L->wq, err, errlen)) ||
            (rc = get_weight(g, NAME("attn_k.weight"), kv_dim, dim, &L->wk, err, errlen)) ||
            (rc = get_weight(g, NAME("attn_v.weight"), kv_dim, dim, &L->wv, err, errlen)) ||
            (rc = get_weight(g, NAME("attn_output.weight"), dim, q_dim, &L->wo, err, errlen)) ||
            (rc = get_vec(g, NAME("ffn_norm.weight"), dim, &L->ffn_norm, err, errlen)) ||
            (rc = get_weight(g, NAME("ffn_gate.weight"), n_ff, dim, &L->w_gate, err, errlen)) ||
            (rc = get_weight(g, NAME("ffn_up.weight"), n_ff, dim, &L->w_up, err, errlen)) ||
            (rc = get_weight(g, NAME("ffn_down.weight"), dim, n_ff, &L->w_down, err, errlen)))
            goto fail;
        if (hp->has_qkv_bias &&
            ((rc = get_vec(g, NAME("attn_q.bias"), q_dim, &L->bq, err, errlen)) ||
             (rc = get_vec(g, NAME("attn_k.bias"), kv_dim, &L->bk, err, errlen)) ||
             (rc = get_vec(g, NAME("attn_v.bias"), kv_dim, &L->bv, err, errlen))))
            goto fail;
#undef NAME
    }
    if ((rc = get_vec(g, "output_norm.weight", dim, &m->output_norm, err, errlen)))
        goto fail;
    if (sl_gguf_find_tensor(g, "output.weight")) {
        if ((rc = get_weight(g, "output.weight", hp->n_vocab, dim, &m->output, err, errlen)))
            goto fail;
    } else {
        m->output = m->tok_embd;
        hp->tied_output = true;
    }
    int half = hp->rot_dim / 2;
    if (sl_gguf_find_tensor(g, "rope_freqs.weight")) {
        if ((rc = get_vec(g, "rope_freqs.weight", half, &m->rope_freqs, err, errlen)))
            goto fail;
        for (int i = 0; i < half; i++)
            if (!isfinite(m->rope_freqs[i]) || m->rope_freqs[i] <= 0) {
                rc = sl_errf(err, errlen, SL_EINVAL,
                          "tensor rope_freqs.weight: element %d is not a positive number", i);
                goto fail;
            }
        hp->has_rope_freqs = true;
    }
    m->inv_freq = sl_malloc(sizeof(double) * (size_t)SL_MAX(half, 1));
    if (!m->inv_freq) {
        rc = SL_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < half; i++) {
        m->inv_freq[i] = pow((double)hp->rope_base, -2.0 * i / hp->rot_dim);
        if (m->rope_freqs)
            m->inv_freq[i] /= m->rope_freqs[i];
    }
    if ((rc = repack_weights(m, err, errlen)))
        goto fail;
    *out = m;
    return 0;
fail:
    sl_model_free(m);
    return rc;
}

void sl_model_free(sl_model *m)
{
    if (!m)
        return;
    sl_huge_free(m->repacked, m->repacked_bytes);
    sl_free(m->layers);
    sl_free(m->inv_freq);
    sl_free(m);
}

const sl_model_hparams *sl_model_get_hparams(const sl_model *m)
{
    return &m->hp;
}

/* ---- context ---- */

static float *alloc_f32(size_t a, size_t b, bool *oom)
{
    if (b && a > SIZE_MAX / sizeof(float) / b) {
        *oom = true;
        return NULL;
    }
    size_t n = a * b;
    float *p = sl_calloc(n ? n : 1, sizeof(float));
    if (!p)
        *oom = true;
    return p;
}

int sl_model_kv_type_parse(const char *name)
{
    if (name && strcmp(name, "f16") == 0)
        return SL_KT_F16;
    if (name && strcmp(name, "f32") == 0)
        return SL_KT_F32;
    return -1;
}

static int ctx_create(const sl_model *m, int n_ctx, int max_batch, int max_threads,
                      bool own_cache, int kv_type, sl_model_ctx **out)
{
    *out = NULL;
    const sl_model_hparams *hp = &m->hp;
    if (own_cache && kv_type != SL_KT_F16 && kv_type != SL_KT_F32)
        return SL_EINVAL;
    if (n_ctx < 1 || n_ctx > SL_MODEL_MAX_CTX || max_batch < 1 ||
        (own_cache && max_batch > n_ctx) || max_batch > SL_MODEL_MAX_CTX || max_threads < 1 ||
        max_threads > 1024)
        return SL_EINVAL;
    sl_model_ctx *c = sl_calloc(1, sizeof *c);
    if (!c)
        return SL_ENOMEM;
    c->m = m;
    c->n_ctx = n_ctx;
    c->max_batch = max_batch;
    c->max_threads = max_threads;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    size_t B = (size_t)max_batch, half = (size_t)hp->rot_dim / 2;
    size_t cache = (size_t)hp->n_layer * (size_t)n_ctx;
    bool oom = false;
    if (own_cache) {
        /* f16 elements: half as many floats' worth of bytes */
        size_t per = kv_type == SL_KT_F16 ? ((size_t)c->kv_dim + 1) / 2 : (size_t)c->kv_dim;
        c->kv_type = kv_type;
        c->key_cache = alloc_f32(cache, per, &oom);
        c->value_cache = alloc_f32(cache, per, &oom);
    }
    c->x = alloc_f32(B, (size_t)hp->dim, &oom);
    c->xb = alloc_f32(B, (size_t)hp->dim, &oom);
    c->xb2 = alloc_f32(B, (size_t)hp->dim, &oom);
    c->q = alloc_f32(B, (size_t)c->q_dim, &oom);
    c->k = alloc_f32(B, (size_t)c->kv_dim, &oom);
    c->v = alloc_f32(B, (size_t)c->kv_dim, &oom);
    c->att = alloc_f32(B, (size_t)c->q_dim, &oom);
    c->hb = alloc_f32(B, (size_t)hp->n_ff, &oom);
    c->hb2 = alloc_f32(B, (size_t)hp->n_ff, &oom);
    c->scores = alloc_f32((size_t)max_threads, (size_t)n_ctx, &oom);
    c->rope_cos = alloc_f32(B, half, &oom);
    c->rope_sin = alloc_f32(B, half, &oom);
    c->tok_seq = sl_calloc(B, sizeof(int));
    c->tok_pos = sl_calloc(B, sizeof(int));
    if (oom || !c->tok_seq || !c->tok_pos) {
        sl_model_ctx_free(c);
        return SL_ENOMEM;
    }
    *out = c;
    return 0;
}

int sl_model_ctx_create(const sl_model *m, int n_ctx, int max_batch, int max_threads, int kv_type,
                        sl_model_ctx **out)
{
    return ctx_create(m, n_ctx, max_batch, max_threads, true, kv_type, out);
}

int sl_model_batch_ctx_create(const sl_model *m, int n_ctx, int max_batch, int max_threads,
                              sl_model_ctx **out)
{
    return ctx_create(m, n_ctx, max_batch, max_threads, false, 0, out);
}

void sl_model_ctx_free(sl_model_ctx *c)
{
    if (!c)
        return;
    sl_free(c->key_cache);
    sl_free(c->value_cache);
    sl_free(c->x);
    sl_free(c->xb);
    sl_free(c->xb2);
    sl_free(c->q);
    sl_free(c->k);
    sl_free(c->v);
    sl_free(c->att);
    sl_free(c->hb);
    sl_free(c->hb2);
    sl_free(c->scores);
    sl_free(c->rope_cos);
    sl_free(c->rope_sin);
    sl_free(c->tok_seq);
    sl_free(c->tok_pos);
    sl_free(c);
}

int sl_model_ctx_n_ctx(const sl_model_ctx *c)
{
    return c->n_ctx;
}

int sl_model_ctx_max_batch(const sl_model_ctx *c)
{
    return c->max_batch;
}

/* ---- forward ---- */

/* Rotates n_heads heads of x (head_dim apart) by the angles of one token:
 * pairs (2i, 2i+1) for llama, whose converter permuted Q/K rows so that
 * adjacent pairs match the reference rotation; (i, i + rot_dim/2) for qwen2. */
static void rope_apply(float *x, int n_heads, int head_dim, int rot_dim, bool neox,
                       const float *cosv, const float *sinv)
{
    int half = rot_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            float a = v[i0], b = v[i1];
            v[i0] = a * cosv[i] - b * sinv[i];
            v[i1] = a * sinv[i] + b * cosv[i];
        }
    }
}

/* KV head h of (block b, layer l) in a cache view (keys with base kbase,
 * values with base vbase): the block's block_tokens rows of head_dim
 * elements, one after the other. Head-major, so attention streams one head's
 * keys and values contiguously instead of picking head_dim elements out of
 * every row. */
static inline void *kv_head(void *base, const sl_model_kv_view *kv, int32_t block, int layer,
                            int h, int head_dim)
{
    size_t el = kv->type == SL_KT_F16 ? 2 : 4;
    return (char *)base + el * ((size_t)block * kv->block_stride +
                                (size_t)layer * kv->layer_stride +
                                (size_t)h * (size_t)kv->block_tokens * (size_t)head_dim);
}

/* Writes hd values of row r into a cache head span, rounding to f16 there. */
static inline void kv_put(void *head, const sl_model_kv_view *kv, int r, int hd, const float *x)
{
    if (kv->type == SL_KT_F16)
        sl_kernel_f32_to_fp16_row(x, (uint16_t *)head + (size_t)r * (size_t)hd, (size_t)hd);
    else
        memcpy((float *)head + (size_t)r * (size_t)hd, x, sizeof(float) * (size_t)hd);
}

typedef struct attn_job {
    sl_model_ctx *c;
    const sl_model_kv_view *kv;
    const sl_model_seq *seqs;
    int layer, n, n_parts;
} attn_job;

/* Causal attention for the (token, KV head) pairs idx, idx + n_parts, ...,
 * each with all the query heads of its group in turn, so that a KV head's
 * keys and values come from DRAM once per token and from cache for the rest
 * of the group. Each (token, query head) is computed alone with a fixed
 * order (scores over positions 0..pos in order, then the weighted sum of
 * values in order), so its result depends neither on the batch, nor on the
 * block size, nor on which worker runs it. */
static void attn_part(void *ctx, int idx, int n_parts)
{
    attn_job *j = ctx;
    sl_model_ctx *c = j->c;
    const sl_model_kv_view *kv = j->kv;
    const sl_model_hparams *hp = &c->m->hp;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv, bt = kv->block_tokens;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool f16 = kv->type == SL_KT_F16;
    float *sc = c->scores + (size_t)idx * c->n_ctx;
    int total = j->n * hp->n_head_kv;
    for (int w = idx; w < total; w += n_parts) {
        int t = w / hp->n_head_kv, kvh = w % hp->n_head_kv;
        const int32_t *table = j->seqs[c->tok_seq[t]].blocks;
        int n_pos = c->tok_pos[t] + 1; /* causal: positions 0..pos */
        for (int h = kvh * group; h < (kvh + 1) * group; h++) {
            const float *q = c->q + (size_t)t * c->q_dim + (size_t)h * hd;
            for (int p0 = 0, bi = 0; p0 < n_pos; p0 += bt, bi++) {
                const void *kb = kv_head(kv->kbase, kv, table[bi], j->layer, kvh, hd);
                if (f16)
                    sl_kernel_attn_scores_f16(sc + p0, q, kb, (size_t)hd, SL_MIN(bt, n_pos - p0),
                                              hd, scale);
                else
                    sl_kernel_attn_scores(sc + p0, q, kb, (size_t)hd, SL_MIN(bt, n_pos - p0), hd,
                                          scale);
            }
            sl_kernel_softmax(sc, n_pos);
            float *o = c->att + (size_t)t * c->q_dim + (size_t)h * hd;
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int p0 = 0, bi = 0; p0 < n_pos; p0 += bt, bi++) {
                const void *vb = kv_head(kv->vbase, kv, table[bi], j->layer, kvh, hd);
                if (f16)
                    sl_kernel_attn_accum_f16(o, sc + p0, vb, (size_t)hd, SL_MIN(bt, n_pos - p0),
                                             hd);
                else
                    sl_kernel_attn_accum(o, sc + p0, vb, (size_t)hd, SL_MIN(bt, n_pos - p0), hd);
            }
        }
    }
}

static int matmul(float *out, const sl_weight *w, const float *x, int n, sl_pool *pool)
{
    return sl_kernel_matmul(out, w->type, w->rows, w->cols, w->data, x, n, pool, 0);
}

static void add_bias(float *x, const float *b, int n, int64_t width)
{
    if (!b)
        return;
    for (int t = 0; t < n; t++)
        sl_kernel_add(x + (size_t)t * width, x + (size_t)t * width, b, width);
}

int sl_model_forward_batch(sl_model_ctx *c, const sl_model_kv_view *kv, const sl_model_seq *seqs,
                           int n_seqs, float *logits, sl_pool *pool)
{
    const sl_model *m = c->m;
    const sl_model_hparams *hp = &m->hp;
    if (n_seqs < 1 || sl_pool_threads(pool) > c->max_threads || kv->block_tokens < 1 ||
        (kv->type != SL_KT_F16 && kv->type != SL_KT_F32))
        return SL_EINVAL;
    /* lay the batch out token by token: sequence s owns rows [start, start + n) */
    int n = 0;
    for (int s = 0; s < n_seqs; s++) {
        const sl_model_seq *q = &seqs[s];
        if (q->n < 1 || q->pos < 0 || q->pos > c->n_ctx - q->n || q->n_logits < 0 ||
            q->n_logits > q->n || q->n > c->max_batch - n || !q->blocks)
            return SL_EINVAL;
        for (int t = 0; t < q->n; t++) {
            if (q->tokens[t] < 0 || q->tokens[t] >= hp->n_vocab)
                return SL_ERANGE;
            c->tok_seq[n] = s;
            c->tok_pos[n] = q->pos + t;
            n++;
        }
    }
    const int dim = hp->dim, half = hp->rot_dim / 2, bt = kv->block_tokens;
    int rc;

    /* embeddings: x[t] = token_embd row of token t */
    for (int t = 0, s = 0; s < n_seqs; s++)
        for (int i = 0; i < seqs[s].n; i++, t++) {
            const char *row = (const char *)m->tok_embd.data +
                              (size_t)seqs[s].tokens[i] * m->tok_embd.row_bytes;
            sl_kernel_dequantize_row(m->tok_embd.type, row, c->x + (size_t)t * dim, dim);
        }
    /* rotation angles per token, in double (positions can be large) */
    for (int t = 0; t < n; t++) {
        double p = (double)c->tok_pos[t] * hp->rope_pos_scale;
        for (int i = 0; i < half; i++) {
            double theta = p * m->inv_freq[i];
            c->rope_cos[(size_t)t * half + i] = (float)cos(theta);
            c->rope_sin[(size_t)t * half + i] = (float)sin(theta);
        }
    }
    int n_parts = SL_MIN(sl_pool_threads(pool), n * hp->n_head_kv);

    /* ---- the hot loop: every layer, every token of the batch; each weight
     * matrix is read once per layer for all the batch's tokens ---- */
    for (int l = 0; l < hp->n_layer; l++) {
        const sl_layer *L = &m->layers[l];

        /* attention block */
        for (int t = 0; t < n; t++)
            sl_kernel_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->attn_norm, dim,
                              hp->norm_eps);
        const sl_kernel_mm_part qkv[3] = {{c->q, L->wq.type, L->wq.rows, L->wq.data},
                                          {c->k, L->wk.type, L->wk.rows, L->wk.data},
                                          {c->v, L->wv.type, L->wv.rows, L->wv.data}};
        if ((rc = sl_kernel_matmul_parts(qkv, 3, dim, c->xb, n, pool)))
            return rc;
        add_bias(c->q, L->bq, n, c->q_dim);
        add_bias(c->k, L->bk, n, c->kv_dim);
        add_bias(c->v, L->bv, n, c->kv_dim);
        for (int t = 0; t < n; t++) {
            const float *cs = c->rope_cos + (size_t)t * half, *sn = c->rope_sin + (size_t)t * half;
            float *kt = c->k + (size_t)t * c->kv_dim;
            rope_apply(c->q + (size_t)t * c->q_dim, hp->n_head, hp->head_dim, hp->rot_dim,
                       hp->rope_neox, cs, sn);
            rope_apply(kt, hp->n_head_kv, hp->head_dim, hp->rot_dim, hp->rope_neox, cs, sn);
            /* the new key and value go to their cache rows before any token
             * of the batch attends */
            const int32_t *table = seqs[c->tok_seq[t]].blocks;
            int p = c->tok_pos[t], hd = hp->head_dim;
            for (int h = 0; h < hp->n_head_kv; h++) {
                kv_put(kv_head(kv->kbase, kv, table[p / bt], l, h, hd), kv, p % bt, hd,
                       kt + (size_t)h * hd);
                kv_put(kv_head(kv->vbase, kv, table[p / bt], l, h, hd), kv, p % bt, hd,
                       c->v + (size_t)t * c->kv_dim + (size_t)h * hd);
            }
        }
        attn_job job = {c, kv, seqs, l, n, n_parts};
        sl_pool_run(pool, attn_part, &job, n_parts);
        if ((rc = matmul(c->xb2, &L->wo, c->att, n, pool)))
            return rc;
        sl_kernel_add(c->x, c->x, c->xb2, (int64_t)n * dim);

        /* feed-forward block: down(silu(gate(x)) * up(x)) */
        for (int t = 0; t < n; t++)
            sl_kernel_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, L->ffn_norm, dim,
                              hp->norm_eps);
        const sl_kernel_mm_part gate_up[2] = {
            {c->hb, L->w_gate.type, L->w_gate.rows, L->w_gate.data},
            {c->hb2, L->w_up.type, L->w_up.rows, L->w_up.data}};
        if ((rc = sl_kernel_matmul_parts(gate_up, 2, dim, c->xb, n, pool)))
            return rc;
        sl_kernel_swiglu(c->hb, c->hb, c->hb2, (int64_t)n * hp->n_ff);
        if ((rc = matmul(c->xb2, &L->w_down, c->hb, n, pool)))
            return rc;
        sl_kernel_add(c->x, c->x, c->xb2, (int64_t)n * dim);
    }

    /* final norm: hidden states where asked, then the classifier over the
     * rows that need logits (each sequence's last n_logits tokens, in order) */
    int rows = 0;
    for (int t = 0, s = 0; s < n_seqs; s++) {
        const sl_model_seq *q = &seqs[s];
        for (int i = 0; i < q->n; i++, t++) {
            if (q->hidden)
                sl_kernel_rmsnorm(q->hidden + (size_t)i * dim, c->x + (size_t)t * dim,
                                  m->output_norm, dim, hp->norm_eps);
            if (i >= q->n - q->n_logits)
                sl_kernel_rmsnorm(c->xb + (size_t)rows++ * dim, c->x + (size_t)t * dim,
                                  m->output_norm, dim, hp->norm_eps);
        }
    }
    if (!rows)
        return 0;
    return matmul(logits, &m->output, c->xb, rows, pool);
}

int sl_model_forward(sl_model_ctx *c, const int32_t *tokens, int n, int pos, float *logits,
                     bool all_logits, sl_pool *pool)
{
    if (!c->key_cache || n < 1 || n > c->max_batch || pos < 0 || pos > c->n_ctx - n)
        return SL_EINVAL;
    /* the contiguous cache is one block of n_ctx positions */
    sl_model_kv_view kv = {c->key_cache, c->value_cache, 0,
                           (size_t)c->n_ctx * (size_t)c->kv_dim, c->n_ctx, c->kv_type};
    static const int32_t table[1] = {0};
    sl_model_seq seq = {tokens, n, pos, table, all_logits ? n : 1, NULL};
    return sl_model_forward_batch(c, &kv, &seq, 1, logits, pool);
}
