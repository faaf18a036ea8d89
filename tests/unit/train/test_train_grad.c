/* Gradient checks: every backward op of the trainer (compiled in double from
 * the same source as the float trainer) against central finite differences,
 * then the whole tiny model, then the float model against the double one. */
#include "engine/train/train.h"
#include "test.h"

#include <stdlib.h>

static uint64_t rng = 42;
static double unif(void) /* [-1, 1) */
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double *rnd(size_t n, double scale)
{
    double *p = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++)
        p[i] = scale * unif();
    return p;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Compares analytic grad[i] with (f(x+h) - f(x-h)) / 2h for every element of
 * x; f is evaluated by the callback. Returns the worst relative error. */
typedef double (*loss_fn)(void *ctx);
static double check(double *x, const double *grad, size_t n, loss_fn f, void *ctx)
{
    const double h = 1e-5;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = f(ctx);
        x[i] = keep - h;
        double lm = f(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2 * h);
        double err = fabs(num - grad[i]) / fmax(1e-3, fabs(num) + fabs(grad[i]));
        if (err > worst)
            worst = err;
    }
    return worst;
}

/* ---- rmsnorm ---- */
enum { RN = 3, RD = 7 };
typedef struct {
    double *x, *w, *c;
} rn_ctx;

static double rn_loss(void *p)
{
    rn_ctx *k = p;
    double y[RN * RD], r[RN];
    sl_train_op_rmsnorm_fwd_d(y, r, k->x, k->w, RN, RD, 1e-5, NULL);
    return dot(y, k->c, RN * RD);
}

static void test_rmsnorm(void)
{
    rn_ctx k = {rnd(RN * RD, 1), rnd(RD, 1), rnd(RN * RD, 1)};
    double y[RN * RD], r[RN], dx[RN * RD] = {0}, dw[RD] = {0};
    sl_train_op_rmsnorm_fwd_d(y, r, k.x, k.w, RN, RD, 1e-5, NULL);
    /* golden: row 0 by hand */
    double ss = 0;
    for (int i = 0; i < RD; i++)
        ss += k.x[i] * k.x[i];
    EXPECT_NEAR(y[3], k.x[3] / sqrt(ss / RD + 1e-5) * k.w[3], 1e-12);
    sl_train_op_rmsnorm_bwd_d(dx, dw, k.c, k.x, k.w, r, RN, RD, NULL);
    EXPECT(check(k.x, dx, RN * RD, rn_loss, &k) < 1e-7);
    EXPECT(check(k.w, dw, RD, rn_loss, &k) < 1e-7);
    free(k.x), free(k.w), free(k.c);
}

/* ---- embedding ---- */
static void test_embed(void)
{
    int32_t tok[4] = {2, 0, 2, 1};
    double *emb = rnd(3 * 5, 1), *c = rnd(4 * 5, 1), x[20], demb[15] = {0};
    sl_train_op_embed_fwd_d(x, emb, tok, 4, 5);
    EXPECT_NEAR(x[5 * 2 + 3], emb[2 * 5 + 3], 0);
    sl_train_op_embed_bwd_d(demb, c, tok, 4, 5);
    /* loss = sum c . x is linear in emb: d/d emb[2][j] = c[0][j] + c[2][j] */
    for (int j = 0; j < 5; j++) {
        EXPECT_NEAR(demb[2 * 5 + j], c[j] + c[10 + j], 1e-15);
        EXPECT_NEAR(demb[0 * 5 + j], c[5 + j], 1e-15);
    }
    free(emb), free(c);
}

/* ---- rope ---- */
enum { PT = 4, PH = 2, PD = 6 };
typedef struct {
    double *x, *c, cs[PT * PD / 2], sn[PT * PD / 2];
} rope_ctx;

static double rope_loss(void *p)
{
    rope_ctx *k = p;
    double y[2 * PT * PH * PD];
    memcpy(y, k->x, sizeof y);
    sl_train_op_rope_d(y, 2 * PT, PT, PH, PD, k->cs, k->sn, false);
    return dot(y, k->c, 2 * PT * PH * PD);
}

static void test_rope(void)
{
    rope_ctx k;
    k.x = rnd(2 * PT * PH * PD, 1);
    k.c = rnd(2 * PT * PH * PD, 1);
    sl_train_op_rope_table_d(k.cs, k.sn, PT, PD, 10000.0);
    /* position 1, pair 1: angle 1 * 10000^(-2/6) */
    EXPECT_NEAR(k.cs[1 * 3 + 1], cos(pow(10000.0, -2.0 / 6)), 1e-15);
    double y[2 * PT * PH * PD];
    memcpy(y, k.x, sizeof y);
    sl_train_op_rope_d(y, 2 * PT, PT, PH, PD, k.cs, k.sn, false);
    /* row 5 = position 1 of sequence 1, head 1, pair 0 (elements 0, 1) */
    const double *in = k.x + (5 * PH + 1) * PD, *out = y + (5 * PH + 1) * PD;
    EXPECT_NEAR(out[0], in[0] * cos(1.0) - in[1] * sin(1.0), 1e-14);
    EXPECT_NEAR(out[1], in[0] * sin(1.0) + in[1] * cos(1.0), 1e-14);
    double g[2 * PT * PH * PD];
    memcpy(g, k.c, sizeof g);
    sl_train_op_rope_d(g, 2 * PT, PT, PH, PD, k.cs, k.sn, true);
    EXPECT(check(k.x, g, 2 * PT * PH * PD, rope_loss, &k) < 1e-8);
    free(k.x), free(k.c);
}

/* ---- attention (GQA: 4 query heads over 2 kv heads) ---- */
enum { AB = 2, AT = 5, AH = 4, AK = 2, AD = 4 };
typedef struct {
    double *q, *k, *v, *c;
} at_ctx;

static double at_loss(void *p)
{
    at_ctx *a = p;
    static double out[AB * AT * AH * AD], probs[AB * AH * AT * AT];
    sl_train_op_attn_fwd_d(out, probs, a->q, a->k, a->v, AB, AT, AH, AK, AD, NULL);
    return dot(out, a->c, AB * AT * AH * AD);
}

static void test_attention(void)
{
    at_ctx a = {rnd(AB * AT * AH * AD, 1), rnd(AB * AT * AK * AD, 1), rnd(AB * AT * AK * AD, 1),
                rnd(AB * AT * AH * AD, 1)};
    static double out[AB * AT * AH * AD], probs[AB * AH * AT * AT];
    sl_train_op_attn_fwd_d(out, probs, a.q, a.k, a.v, AB, AT, AH, AK, AD, NULL);
    /* first token attends only to itself: out = v of its kv head */
    for (int e = 0; e < AD; e++)
        EXPECT_NEAR(out[3 * AD + e], a.v[1 * AD + e], 1e-15); /* head 3 -> kv head 1 */
    double *dq = calloc(AB * AT * AH * AD, sizeof(double));
    double *dk = calloc(AB * AT * AK * AD, sizeof(double));
    double *dv = calloc(AB * AT * AK * AD, sizeof(double));
    sl_pool *pool = NULL;
    sl_pool_create(2, &pool);
    sl_train_op_attn_bwd_d(dq, dk, dv, a.c, a.q, a.k, a.v, probs, AB, AT, AH, AK, AD, pool);
    sl_pool_destroy(pool);
    EXPECT(check(a.q, dq, AB * AT * AH * AD, at_loss, &a) < 1e-7);
    EXPECT(check(a.k, dk, AB * AT * AK * AD, at_loss, &a) < 1e-7);
    EXPECT(check(a.v, dv, AB * AT * AK * AD, at_loss, &a) < 1e-7);
    free(a.q), free(a.k), free(a.v), free(a.c), free(dq), free(dk), free(dv);
}

/* ---- swiglu ---- */
typedef struct {
    double *g, *u, *c;
} sw_ctx;

static double sw_loss(void *p)
{
    sw_ctx *k = p;
    double h[20];
    sl_train_op_swiglu_fwd_d(h, k->g, k->u, 20);
    return dot(h, k->c, 20);
}

static void test_swiglu(void)
{
    sw_ctx k = {rnd(20, 3), rnd(20, 1), rnd(20, 1)};
    double h[20], dg[20] = {0}, du[20] = {0};
    sl_train_op_swiglu_fwd_d(h, k.g, k.u, 20);
    EXPECT_NEAR(h[7], k.g[7] / (1 + exp(-k.g[7])) * k.u[7], 1e-15);
    sl_train_op_swiglu_bwd_d(dg, du, k.c, k.g, k.u, 20);
    EXPECT(check(k.g, dg, 20, sw_loss, &k) < 1e-8);
    EXPECT(check(k.u, du, 20, sw_loss, &k) < 1e-8);
    free(k.g), free(k.u), free(k.c);
}

/* ---- matmul ---- */
enum { MN = 5, MI = 6, MO = 4 };
typedef struct {
    double *x, *w, *c;
} mm_ctx;

static double mm_loss(void *p)
{
    mm_ctx *k = p;
    double y[MN * MO];
    sl_train_op_matmul_fwd_d(y, k->x, k->w, MN, MI, MO, NULL);
    return dot(y, k->c, MN * MO);
}

static void test_matmul(void)
{
    mm_ctx k = {rnd(MN * MI, 1), rnd(MO * MI, 1), rnd(MN * MO, 1)};
    double y[MN * MO], dx[MN * MI] = {0}, dw[MO * MI] = {0};
    sl_pool *pool = NULL;
    sl_pool_create(2, &pool);
    sl_train_op_matmul_fwd_d(y, k.x, k.w, MN, MI, MO, pool);
    EXPECT_NEAR(y[2 * MO + 3], dot(k.x + 2 * MI, k.w + 3 * MI, MI), 1e-14);
    sl_train_op_matmul_bwd_d(dx, dw, k.c, k.x, k.w, MN, MI, MO, pool);
    sl_pool_destroy(pool);
    EXPECT(check(k.x, dx, MN * MI, mm_loss, &k) < 1e-8);
    EXPECT(check(k.w, dw, MO * MI, mm_loss, &k) < 1e-8);
    free(k.x), free(k.w), free(k.c);
}

/* ---- cross-entropy ---- */
typedef struct {
    double *l;
    int32_t tg[3];
} xe_ctx;

static double xe_loss(void *p)
{
    xe_ctx *k = p;
    return sl_train_op_xent_d(NULL, k->l, k->tg, 3, 5);
}

static void test_xent(void)
{
    xe_ctx k = {rnd(15, 2), {4, 0, 2}};
    double d[15];
    double loss = sl_train_op_xent_d(d, k.l, k.tg, 3, 5);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int c = 0; c < 5; c++)
            s += exp(k.l[i * 5 + c]);
        want += log(s) - k.l[i * 5 + k.tg[i]];
    }
    EXPECT_NEAR(loss, want / 3, 1e-14);
    EXPECT(check(k.l, d, 15, xe_loss, &k) < 1e-8);
    free(k.l);
}

/* ---- the whole tiny model ---- */
static sl_train_hparams tiny(void)
{
    sl_train_hparams hp = {.dim = 8, .n_layer = 2, .n_head = 2, .n_head_kv = 1, .n_ff = 12,
                           .n_vocab = 11, .n_ctx = 5, .norm_eps = 1e-5f, .rope_base = 10000};
    return hp;
}

static const int32_t toks[2 * 6] = {1, 5, 3, 9, 10, 0, 4, 4, 7, 2, 8, 6};

typedef struct {
    sl_train_hparams hp;
    double *p;
} model_ctx;

static double model_loss(void *ctx)
{
    model_ctx *k = ctx;
    double loss = 0;
    sl_train_ref_loss(&k->hp, k->p, toks, 2, &loss, NULL);
    return loss;
}

static void test_whole_model(void)
{
    model_ctx k = {tiny(), NULL};
    size_t np = sl_train_n_params(&k.hp);
    EXPECT_EQ_UINT(np, 11 * 8 + 2 * (8 + 64 + 32 + 32 + 64 + 8 + 3 * 96) + 8);
    k.p = rnd(np, 0.5);
    double *g = calloc(np, sizeof(double)), loss = 0;
    EXPECT_EQ_INT(sl_train_ref_loss(&k.hp, k.p, toks, 2, &loss, g), 0);
    EXPECT(loss > 0.5 && loss < 10);
    double worst = check(k.p, g, np, model_loss, &k);
    if (worst >= 1e-6)
        fprintf(stderr, "whole model worst relative error %g\n", worst);
    EXPECT(worst < 1e-6);

    /* the float trainer (same code, float, 2 threads) agrees with the reference */
    sl_pool *pool = NULL;
    sl_pool_create(2, &pool);
    sl_train_model *m = NULL;
    EXPECT_EQ_INT(sl_train_model_create(&k.hp, 2, pool, &m), 0);
    float *fp = sl_train_model_params(m);
    for (size_t i = 0; i < np; i++)
        fp[i] = (float)k.p[i];
    double floss = 0;
    EXPECT_EQ_INT(sl_train_model_run(m, toks, 2, true, &floss), 0);
    EXPECT_NEAR(floss, loss, 1e-5);
    const float *fg = sl_train_model_grads(m);
    double gmax = 0, dmax = 0;
    for (size_t i = 0; i < np; i++) {
        gmax = fmax(gmax, fabs(g[i]));
        dmax = fmax(dmax, fabs(fg[i] - g[i]));
    }
    EXPECT(gmax > 1e-3);
    EXPECT(dmax < 1e-4 * gmax + 1e-6);
    sl_train_model_free(m);
    sl_pool_destroy(pool);
    free(k.p), free(g);
}

/* The masked loss: only targets with mask 1 count. Its gradient passes the
 * finite-difference check, and the float model gives the same loss and
 * gradients. */
static const uint8_t mask_rows[2 * 6] = {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1};

static double model_loss_masked(void *ctx)
{
    model_ctx *k = ctx;
    double loss = 0;
    sl_train_ref_loss_masked(&k->hp, k->p, toks, mask_rows, 2, &loss, NULL);
    return loss;
}

static void test_whole_model_masked(void)
{
    model_ctx k = {tiny(), NULL};
    size_t np = sl_train_n_params(&k.hp);
    k.p = rnd(np, 0.5);
    double *g = calloc(np, sizeof(double)), loss = 0, full = 0;
    EXPECT_EQ_INT(sl_train_ref_loss_masked(&k.hp, k.p, toks, mask_rows, 2, &loss, g), 0);
    EXPECT_EQ_INT(sl_train_ref_loss(&k.hp, k.p, toks, 2, &full, NULL), 0);
    EXPECT(loss > 0.5 && fabs(loss - full) > 1e-6);
    double worst = check(k.p, g, np, model_loss_masked, &k);
    EXPECT(worst < 1e-6);

    sl_pool *pool = NULL;
    sl_pool_create(2, &pool);
    sl_train_model *m = NULL;
    EXPECT_EQ_INT(sl_train_model_create(&k.hp, 2, pool, &m), 0);
    float *fp = sl_train_model_params(m);
    for (size_t i = 0; i < np; i++)
        fp[i] = (float)k.p[i];
    double floss = 0;
    EXPECT_EQ_INT(sl_train_model_run_masked(m, toks, mask_rows, 2, true, &floss), 0);
    EXPECT_NEAR(floss, loss, 1e-5);
    const float *fg = sl_train_model_grads(m);
    double gmax = 0, dmax = 0;
    for (size_t i = 0; i < np; i++) {
        gmax = fmax(gmax, fabs(g[i]));
        dmax = fmax(dmax, fabs(fg[i] - g[i]));
    }
    EXPECT(gmax > 1e-3);
    EXPECT(dmax < 1e-4 * gmax + 1e-6);
    sl_train_model_free(m);
    sl_pool_destroy(pool);
    free(k.p), free(g);
}

int main(void)
{
    RUN(test_embed);
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_swiglu);
    RUN(test_matmul);
    RUN(test_xent);
    RUN(test_whole_model);
    RUN(test_whole_model_masked);
    return TEST_REPORT();
}
