/* An independent reference forward pass in double precision, one token at a
 * time, written from the math (not from the engine's code):
 *
 *   x = E[token]
 *   per layer:  h = rmsnorm(x) * g_attn
 *               q = Wq h + bq, k = Wk h + bk, v = Wv h + bv
 *               rotate q, k per head by angle pos * base^(-2i/d_rot) / f_i
 *               (pairs (2i, 2i+1) for llama; (i, i + d_rot/2) for qwen2)
 *               a_h = sum_p softmax_p(q_h . k_p / sqrt(d_head)) v_p   (p <= pos;
 *               query head h reads kv head h / (n_head / n_head_kv))
 *               x += Wo a
 *               h = rmsnorm(x) * g_ffn
 *               x += Wd (silu(Wg h) * (Wu h))
 *   logits = Wout (rmsnorm(x) * g_out)
 *
 * With act_type >= 0, every vector that enters a weight product is first
 * rounded to float and through that activation format (quantize, then
 * dequantize with the kernels' row functions), which is what the engine does
 * for quantized weights. The products themselves stay exact in double.
 * With kv_f16, every key (after rotation) and value is rounded to float and
 * then to the nearest f16 before it is stored, as the engine's f16 cache
 * stores them; attention then reads those rounded values. */
#ifndef REF_FORWARD_H
#define REF_FORWARD_H

#include "model_fixture.h"

typedef struct ref_state {
    const fx_model *m;
    int act_type;  /* -1: exact activations */
    bool kv_f16;   /* keys and values rounded through f16 (set after ref_init) */
    double *kc, *vc; /* [n_layer][n_ctx][kv_dim] */
    int pos;
} ref_state;

static inline void ref_init(ref_state *s, const fx_model *m, int act_type)
{
    s->m = m;
    s->act_type = act_type;
    s->kv_f16 = false;
    size_t n = (size_t)m->c.n_layer * m->c.n_ctx * m->kv_dim;
    s->kc = calloc(n, sizeof(double));
    s->vc = calloc(n, sizeof(double));
    s->pos = 0;
}

static inline void ref_free(ref_state *s)
{
    free(s->kc);
    free(s->vc);
}

static inline void ref_rmsnorm(double *out, const double *x, const double *g, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * r * g[i];
}

/* Rounds x through the activation format, as the engine feeds weights. */
static inline void ref_act(const ref_state *s, double *x, int n)
{
    if (s->act_type < 0 || s->act_type == SL_KT_F32) {
        if (s->act_type == SL_KT_F32)
            for (int i = 0; i < n; i++)
                x[i] = (float)x[i];
        return;
    }
    float *f = malloc(sizeof(float) * (size_t)n);
    size_t rb = 0;
    sl_kernel_row_bytes(s->act_type, n, &rb);
    void *q = malloc(rb);
    for (int i = 0; i < n; i++)
        f[i] = (float)x[i];
    sl_kernel_quantize_row(s->act_type, f, q, n);
    sl_kernel_dequantize_row(s->act_type, q, f, n);
    for (int i = 0; i < n; i++)
        x[i] = f[i];
    free(q);
    free(f);
}

/* out[r] = W[r] . x for rows x cols W. */
static inline void ref_matvec(double *out, const double *w, const double *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < cols; i++)
            s += w[(size_t)r * cols + i] * x[i];
        out[r] = s;
    }
}

static inline void ref_rotate(const fx_model *m, double *v, int n_heads, int pos)
{
    int hd = m->head_dim, half = hd / 2;
    bool neox = !strcmp(m->c.arch, "qwen2");
    double p = m->c.rope_linear > 0 ? pos / (double)m->c.rope_linear : pos;
    for (int h = 0; h < n_heads; h++) {
        double *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            double theta = p * pow((double)m->c.rope_base, -2.0 * i / hd);
            if (m->rope_freqs)
                theta /= m->rope_freqs[i];
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            double x0 = x[a], x1 = x[b];
            x[a] = x0 * cos(theta) - x1 * sin(theta);
            x[b] = x0 * sin(theta) + x1 * cos(theta);
        }
    }
}

/* Runs one token at position s->pos and writes n_vocab logits. */
static inline void ref_step(ref_state *s, int token, double *logits)
{
    const fx_model *m = s->m;
    const fx_config *c = &m->c;
    int D = c->dim, F = c->n_ff, hd = m->head_dim, pos = s->pos;
    double *x = calloc((size_t)D, sizeof(double)), *h = calloc((size_t)D, sizeof(double));
    double *q = calloc((size_t)m->q_dim, sizeof(double)), *att = calloc((size_t)m->q_dim, sizeof(double));
    double *o = calloc((size_t)D, sizeof(double)), *g = calloc((size_t)F, sizeof(double));
    double *u = calloc((size_t)F, sizeof(double)), *sc = calloc((size_t)pos + 1, sizeof(double));
    memcpy(x, m->emb + (size_t)token * D, sizeof(double) * (size_t)D);
    for (int l = 0; l < c->n_layer; l++) {
        const fx_layer *L = &m->L[l];
        double *k = s->kc + ((size_t)l * c->n_ctx + pos) * m->kv_dim;
        double *v = s->vc + ((size_t)l * c->n_ctx + pos) * m->kv_dim;
        ref_rmsnorm(h, x, L->attn_norm, D, c->eps);
        ref_act(s, h, D);
        ref_matvec(q, L->wq, h, m->q_dim, D);
        ref_matvec(k, L->wk, h, m->kv_dim, D);
        ref_matvec(v, L->wv, h, m->kv_dim, D);
        if (L->bq) {
            for (int i = 0; i < m->q_dim; i++)
                q[i] += L->bq[i];
            for (int i = 0; i < m->kv_dim; i++)
                k[i] += L->bk[i], v[i] += L->bv[i];
        }
        ref_rotate(m, q, c->n_head, pos);
        ref_rotate(m, k, c->n_head_kv, pos);
        for (int i = 0; s->kv_f16 && i < m->kv_dim; i++) {
            k[i] = sl_kernel_fp16_to_f32(sl_kernel_f32_to_fp16((float)k[i]));
            v[i] = sl_kernel_fp16_to_f32(sl_kernel_f32_to_fp16((float)v[i]));
        }
        for (int hh = 0; hh < c->n_head; hh++) {
            int kvh = hh / (c->n_head / c->n_head_kv);
            const double *qh = q + (size_t)hh * hd;
            double mx = -INFINITY, sum = 0;
            for (int p = 0; p <= pos; p++) {
                const double *kp = s->kc + ((size_t)l * c->n_ctx + p) * m->kv_dim + (size_t)kvh * hd;
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += qh[i] * kp[i];
                sc[p] = d / sqrt((double)hd);
                if (sc[p] > mx)
                    mx = sc[p];
            }
            for (int p = 0; p <= pos; p++)
                sum += (sc[p] = exp(sc[p] - mx));
            double *ah = att + (size_t)hh * hd;
            for (int i = 0; i < hd; i++)
                ah[i] = 0;
            for (int p = 0; p <= pos; p++) {
                const double *vp = s->vc + ((size_t)l * c->n_ctx + p) * m->kv_dim + (size_t)kvh * hd;
                for (int i = 0; i < hd; i++)
                    ah[i] += sc[p] / sum * vp[i];
            }
        }
        ref_act(s, att, m->q_dim);
        ref_matvec(o, L->wo, att, D, m->q_dim);
        for (int i = 0; i < D; i++)
            x[i] += o[i];
        ref_rmsnorm(h, x, L->ffn_norm, D, c->eps);
        ref_act(s, h, D);
        ref_matvec(g, L->wg, h, F, D);
        ref_matvec(u, L->wu, h, F, D);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_act(s, g, F);
        ref_matvec(o, L->wd, g, D, F);
        for (int i = 0; i < D; i++)
            x[i] += o[i];
    }
    ref_rmsnorm(h, x, m->out_norm, D, c->eps);
    ref_act(s, h, D);
    ref_matvec(logits, m->out, h, c->n_vocab, D);
    s->pos++;
    free(x), free(h), free(q), free(att), free(o), free(g), free(u), free(sc);
}

#endif
