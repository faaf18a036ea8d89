/* engine/train: the float model the trainer runs (parameters, gradients,
 * activations) and its initialisation. */
#include "engine/train/train.h"

#include <stdio.h>

#define R float
#define OP(name) tr_##name##_f
#define OPLINK static
#define GEMM sl_blas_sgemm
#include "ops_impl.inc"

struct sl_train_model {
    tr_core_f core;
    sl_pool *pool;
    float *params; /* [n_params] */
    float *grads;  /* [n_params] */
};

int sl_train_hparams_check(const sl_train_hparams *hp, char *err, size_t errlen)
{
    const char *why = NULL;
    if (hp->dim < 2 || hp->dim > 8192)
        why = "dim must be in 2..8192";
    else if (hp->n_layer < 1 || hp->n_layer > 64)
        why = "layers must be in 1..64";
    else if (hp->n_head < 1 || hp->dim % hp->n_head || (hp->dim / hp->n_head) % 2)
        why = "heads must divide dim into an even head size";
    else if (hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv)
        why = "kv-heads must divide heads";
    else if (hp->n_ff < 1 || hp->n_ff > 65536)
        why = "ff must be in 1..65536";
    else if (hp->n_vocab < 2 || hp->n_vocab > SL_TRAIN_MAX_VOCAB)
        why = "vocab out of range";
    else if (hp->n_ctx < 1 || hp->n_ctx > 4096)
        why = "seq must be in 1..4096";
    else if (!(hp->norm_eps > 0) || !(hp->rope_base > 1))
        why = "norm eps must be > 0 and rope base > 1";
    if (why) {
        if (errlen)
            snprintf(err, errlen, "model shape: %s", why);
        return SL_EINVAL;
    }
    return 0;
}

size_t sl_train_n_params(const sl_train_hparams *hp)
{
    size_t D = (size_t)hp->dim, F = (size_t)hp->n_ff,
           KV = (size_t)hp->n_head_kv * (size_t)(hp->dim / hp->n_head);
    size_t per = 2 * D + 2 * D * D + 2 * KV * D + 3 * F * D;
    return (size_t)hp->n_vocab * D + per * (size_t)hp->n_layer + D;
}

int sl_train_model_create(const sl_train_hparams *hp, int batch, sl_pool *pool,
                          sl_train_model **out)
{
    if (sl_train_hparams_check(hp, NULL, 0) || batch < 1)
        return SL_EINVAL;
    sl_train_model *m = sl_calloc(1, sizeof *m);
    if (!m)
        return SL_ENOMEM;
    size_t np = sl_train_n_params(hp);
    m->pool = pool;
    m->params = sl_calloc(np, sizeof(float));
    m->grads = sl_calloc(np, sizeof(float));
    if (!m->params || !m->grads || tr_core_init_f(&m->core, hp, batch, m->params, m->grads)) {
        sl_train_model_free(m);
        return SL_ENOMEM;
    }
    *out = m;
    return 0;
}

void sl_train_model_free(sl_train_model *m)
{
    if (!m)
        return;
    tr_core_free_f(&m->core);
    sl_free(m->params);
    sl_free(m->grads);
    sl_free(m);
}

/* splitmix64: a seeded stream for initialisation only. */
static uint64_t init_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double init_gauss(uint64_t *s)
{
    double u1 = ((init_next(s) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double u2 = (init_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_gauss(float *p, size_t n, double std, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(std * init_gauss(s));
}

static void fill_ones(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = 1.0f;
}

void sl_train_model_init(sl_train_model *m, uint64_t seed)
{
    tr_core_f *c = &m->core;
    const sl_train_hparams *hp = &c->hp;
    size_t D = (size_t)hp->dim, F = (size_t)hp->n_ff, KV = (size_t)c->kvw;
    double std = 0.02, proj = 0.02 / sqrt(2.0 * hp->n_layer);
    uint64_t s = seed ^ 0x5EEDull;
    float *P = m->params;
    fill_gauss(P + c->emb, (size_t)hp->n_vocab * D, std, &s);
    for (int l = 0; l < hp->n_layer; l++) {
        const tr_lay_f *L = &c->L[l];
        fill_ones(P + L->attn_norm, D);
        fill_gauss(P + L->wq, D * D, std, &s);
        fill_gauss(P + L->wk, KV * D, std, &s);
        fill_gauss(P + L->wv, KV * D, std, &s);
        fill_gauss(P + L->wo, D * D, proj, &s);
        fill_ones(P + L->ffn_norm, D);
        fill_gauss(P + L->wg, F * D, std, &s);
        fill_gauss(P + L->wu, F * D, std, &s);
        fill_gauss(P + L->wd, D * F, proj, &s);
    }
    fill_ones(P + c->out_norm, D);
}

float *sl_train_model_params(sl_train_model *m)
{
    return m->params;
}

float *sl_train_model_grads(sl_train_model *m)
{
    return m->grads;
}

const sl_train_hparams *sl_train_model_hparams(const sl_train_model *m)
{
    return &m->core.hp;
}

int sl_train_model_run(sl_train_model *m, const int32_t *tokens, int nb, bool grads,
                       double *loss)
{
    return tr_core_run_f(&m->core, tokens, NULL, nb, grads, loss, m->pool);
}

int sl_train_model_run_masked(sl_train_model *m, const int32_t *tokens, const uint8_t *mask,
                              int nb, bool grads, double *loss)
{
    return tr_core_run_f(&m->core, tokens, mask, nb, grads, loss, m->pool);
}

const float *sl_train_model_logits(const sl_train_model *m)
{
    return m->core.logits;
}

/* ---- AdamW ---- */

void sl_train_optim_default(sl_train_optim *o, int total_steps)
{
    o->lr = 3e-3f;
    o->min_lr = o->lr / 10;
    o->warmup = total_steps / 20;
    o->total_steps = total_steps;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->adam_eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->clip = 1.0f;
}

float sl_train_lr(const sl_train_optim *o, int step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    int span = o->total_steps - o->warmup;
    if (span <= 0)
        return o->lr;
    double f = (double)(step - o->warmup) / span;
    if (f > 1)
        f = 1;
    return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1 + cos(3.141592653589793 * f)));
}

typedef struct adam_job {
    float *p, *g, *m1, *m2;
    size_t n;
    float lr, b1, b2, eps, wd, gscale, bc1, bc2;
    const tr_core_f *c;
    double *part_sq;
} adam_job;

/* Whether parameter i is a norm weight (no weight decay). */
static bool is_norm(const tr_core_f *c, size_t i)
{
    size_t D = (size_t)c->hp.dim;
    if (i >= c->out_norm)
        return true;
    for (int l = 0; l < c->hp.n_layer; l++) {
        const tr_lay_f *L = &c->L[l];
        if ((i >= L->attn_norm && i < L->attn_norm + D) || (i >= L->ffn_norm && i < L->ffn_norm + D))
            return true;
    }
    return false;
}

static void adam_sq_part(void *ctx, int part, int n_parts)
{
    adam_job *j = ctx;
    size_t lo = j->n * (size_t)part / (size_t)n_parts, hi = j->n * (size_t)(part + 1) / (size_t)n_parts;
    double s = 0;
    for (size_t i = lo; i < hi; i++)
        s += (double)j->g[i] * j->g[i];
    j->part_sq[part] = s;
}

static void adam_part(void *ctx, int part, int n_parts)
{
    adam_job *j = ctx;
    size_t lo = j->n * (size_t)part / (size_t)n_parts, hi = j->n * (size_t)(part + 1) / (size_t)n_parts;
    size_t i = lo;
    while (i < hi) {
        /* runs of equal decay flag: norms are short ranges of D */
        bool norm = is_norm(j->c, i);
        size_t end = i + 1;
        while (end < hi && end % (size_t)j->c->hp.dim != 0)
            end++;
        float wd = norm ? 0.0f : j->wd;
        for (; i < end; i++) {
            float g = j->g[i] * j->gscale;
            j->m1[i] = j->b1 * j->m1[i] + (1 - j->b1) * g;
            j->m2[i] = j->b2 * j->m2[i] + (1 - j->b2) * g * g;
            float mh = j->m1[i] / j->bc1, vh = j->m2[i] / j->bc2;
            j->p[i] -= j->lr * (mh / (sqrtf(vh) + j->eps) + wd * j->p[i]);
        }
    }
}

void sl_train_adamw(sl_train_model *m, float *m1, float *m2, const sl_train_optim *o, int step,
                    double *gnorm)
{
    enum { MAX_PARTS = 256 };
    double part_sq[MAX_PARTS];
    int parts = SL_MIN(sl_pool_threads(m->pool), MAX_PARTS);
    adam_job j = {.p = m->params, .g = m->grads, .m1 = m1, .m2 = m2, .n = m->core.n_params,
                  .lr = sl_train_lr(o, step), .b1 = o->beta1, .b2 = o->beta2, .eps = o->adam_eps,
                  .wd = o->weight_decay, .c = &m->core, .part_sq = part_sq};
    sl_pool_run(m->pool, adam_sq_part, &j, parts);
    double sq = 0;
    for (int p = 0; p < parts; p++)
        sq += part_sq[p];
    double norm = sqrt(sq);
    if (gnorm)
        *gnorm = norm;
    j.gscale = o->clip > 0 && norm > o->clip ? (float)(o->clip / norm) : 1.0f;
    j.bc1 = (float)(1 - pow(o->beta1, step + 1));
    j.bc2 = (float)(1 - pow(o->beta2, step + 1));
    sl_pool_run(m->pool, adam_part, &j, parts);
}
