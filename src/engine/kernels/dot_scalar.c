/* Scalar reference kernels. They follow the reduction order of the AVX2
 * kernels step for step (see kernels.h), using fmaf where AVX2 uses FMA, so
 * both ISAs give bitwise identical results. Keep the two files in sync. */
#include "engine/kernels/kernels_impl.h"

#include <math.h>

/* Float rows: 4 x 8 lane accumulators over 32-element chunks, lanes combined
 * as (a0 + a1) + (a2 + a3), hsum8, then the tail (n % 32) summed in order. */
#define FLOAT_DOT(name, load)                                                                 \
    static float name(const void *wv, const void *xv, int64_t n)                              \
    {                                                                                         \
        const float *x = xv;                                                                  \
        float acc[4][8] = {{0}};                                                              \
        int64_t nb = n / 32 * 32, i;                                                          \
        for (i = 0; i < nb; i += 32)                                                          \
            for (int k = 0; k < 4; k++)                                                       \
                for (int l = 0; l < 8; l++)                                                   \
                    acc[k][l] = fmaf(load(wv, i + 8 * k + l), x[i + 8 * k + l], acc[k][l]);   \
        float tail = 0.0f;                                                                    \
        for (; i < n; i++)                                                                    \
            tail = fmaf(load(wv, i), x[i], tail);                                             \
        float v[8];                                                                           \
        for (int l = 0; l < 8; l++)                                                           \
            v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);                         \
        return sl_kernel_hsum8(v) + tail;                                                     \
    }

static inline float load_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
static inline float load_f16(const void *w, int64_t i)
{
    return sl_kernel_fp16_to_f32(((const uint16_t *)w)[i]);
}
static inline float load_bf16(const void *w, int64_t i)
{
    return sl_kernel_bf16_to_f32(((const uint16_t *)w)[i]);
}

FLOAT_DOT(dot_f32, load_f32)
FLOAT_DOT(dot_f16, load_f16)
FLOAT_DOT(dot_bf16, load_bf16)

/* Q8_0 against Q8_0: per block the exact integer dot of its 32 elements,
 * accumulated as acc = fma(dw * dx, dot, acc) block after block. */
static float dot_q8_0(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q8_0 *w = wv, *x = xv;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        float d = sl_kernel_fp16_to_f32(w[b].d) * sl_kernel_fp16_to_f32(x[b].d);
        int32_t p = 0;
        for (int k = 0; k < 32; k++)
            p += w[b].qs[k] * x[b].qs[k];
        acc = fmaf(d, (float)p, acc);
    }
    return acc;
}

/* Q4_0 against Q8_0: as Q8_0, one exact integer dot per block and one
 * fused multiply-add. */
static float dot_q4_0(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q4_0 *w = wv;
    const sl_blk_q8_0 *x = xv;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        float d = sl_kernel_fp16_to_f32(w[b].d) * sl_kernel_fp16_to_f32(x[b].d);
        int32_t p = 0;
        for (int l = 0; l < 16; l++)
            p += ((w[b].qs[l] & 0xF) - 8) * x[b].qs[l] + ((w[b].qs[l] >> 4) - 8) * x[b].qs[l + 16];
        acc = fmaf(d, (float)p, acc);
    }
    return acc;
}

/* K types against Q8_K: per super-block the exact integer sums, then
 * sum = fma(d * dx, sumi, sum) (and for Q4_K, sum = fma(-dmin * dx, summ, sum)). */
static float dot_q4_K(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q4_K *w = wv;
    const sl_blk_q8_K *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            sl_kernel_q4k_scale_min(w[b].scales, j, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            const int8_t *y = x[b].qs + 32 * j;
            int32_t s = 0;
            for (int l = 0; l < 32; l++)
                s += (j & 1 ? q[l] >> 4 : q[l] & 0xF) * y[l];
            sumi += sc * s;
            summ += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        float dall = x[b].d * sl_kernel_fp16_to_f32(w[b].d);
        float dmin = x[b].d * sl_kernel_fp16_to_f32(w[b].dmin);
        sum = fmaf(dall, (float)sumi, sum);
        sum = fmaf(-dmin, (float)summ, sum);
    }
    return sum;
}

static float dot_q6_K(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q6_K *w = wv;
    const sl_blk_q8_K *x = xv;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; b++) {
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *y = x[b].qs + 128 * h;
            const int8_t *sc = w[b].scales + 8 * h;
            for (int g = 0; g < 4; g++) {
                int32_t s0 = 0, s1 = 0; /* elements l < 16 and l >= 16 of the group */
                for (int l = 0; l < 32; l++) {
                    uint8_t lo = ql[l + (g & 1) * 32];
                    int code = (g < 2 ? (lo & 0xF) : (lo >> 4)) | (((qh[l] >> (2 * g)) & 3) << 4);
                    int p = (code - 32) * y[32 * g + l];
                    if (l < 16)
                        s0 += p;
                    else
                        s1 += p;
                }
                sumi += sc[2 * g] * s0 + sc[2 * g + 1] * s1;
            }
        }
        float d = x[b].d * sl_kernel_fp16_to_f32(w[b].d);
        sum = fmaf(d, (float)sumi, sum);
    }
    return sum;
}

/* The scalar tiles are single dots: the reference the AVX2 tiles must equal. */
SL_KERNEL_TILE_FROM_DOT(tile_f32, dot_f32)
SL_KERNEL_TILE_FROM_DOT(tile_f16, dot_f16)
SL_KERNEL_TILE_FROM_DOT(tile_bf16, dot_bf16)
SL_KERNEL_TILE_FROM_DOT(tile_q8_0, dot_q8_0)
SL_KERNEL_TILE_FROM_DOT(tile_q4_0, dot_q4_0)
SL_KERNEL_TILE_FROM_DOT(tile_q4_K, dot_q4_K)
SL_KERNEL_TILE_FROM_DOT(tile_q6_K, dot_q6_K)

static void fp16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = sl_kernel_fp16_to_f32(src[i]);
}

static void f32_to_fp16_row(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = sl_kernel_f32_to_fp16(src[i]);
}

/* Attention over one head; keys and values as f32 or f16 (widened exactly),
 * one body for both so that they share every order (kernels.h). */
static inline float ld_f32(const float *p) { return *p; }
static inline float ld_f16(const uint16_t *p) { return sl_kernel_fp16_to_f32(*p); }

#define ATTN_KERNELS(SUF, T)                                                                    \
    static void attn_scores##SUF(float *out, const float *q, const T *k, size_t k_stride, int n, \
                                 int hd, float scale)                                           \
    {                                                                                           \
        int h8 = hd & ~7;                                                                       \
        for (int j = 0; j < n; j++) {                                                           \
            const T *kj = k + (size_t)j * k_stride;                                             \
            float lane[8] = {0};                                                                \
            for (int i = 0; i < h8; i += 8)                                                     \
                for (int l = 0; l < 8; l++)                                                     \
                    lane[l] = fmaf(q[i + l], ld##SUF(kj + i + l), lane[l]);                     \
            float s = sl_kernel_hsum8(lane);                                                    \
            for (int i = h8; i < hd; i++)                                                       \
                s = fmaf(q[i], ld##SUF(kj + i), s);                                             \
            out[j] = s * scale;                                                                 \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void attn_accum##SUF(float *o, const float *a, const T *v, size_t v_stride, int n,    \
                                int hd)                                                         \
    {                                                                                           \
        for (int j = 0; j < n; j++)                                                             \
            for (int i = 0; i < hd; i++)                                                        \
                o[i] = fmaf(a[j], ld##SUF(v + (size_t)j * v_stride + i), o[i]);                 \
    }

ATTN_KERNELS(_f32, float)
ATTN_KERNELS(_f16, uint16_t)

static float exp_sum(float *x, int64_t n, float max)
{
    float lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            x[i + l] = sl_kernel_exp_step(x[i + l] - max);
            lane[l] += x[i + l];
        }
    float s = sl_kernel_hsum8(lane);
    for (; i < n; i++) {
        x[i] = sl_kernel_exp_step(x[i] - max);
        s += x[i];
    }
    return s;
}

static void swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = gate[i] / (1.0f + sl_kernel_exp_step(-gate[i])) * up[i];
}

const sl_kernel_vtab sl_kernel_vtab_scalar = {
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .dot_bf16 = dot_bf16,
    .dot_q8_0 = dot_q8_0,
    .dot_q4_0 = dot_q4_0,
    .dot_q4_K = dot_q4_K,
    .dot_q6_K = dot_q6_K,
    .tile_f32 = tile_f32,
    .tile_f16 = tile_f16,
    .tile_bf16 = tile_bf16,
    .tile_q8_0 = tile_q8_0,
    .tile_q4_0 = tile_q4_0,
    .tile_q4_K = tile_q4_K,
    .tile_q6_K = tile_q6_K,
    .quant_q8_0 = sl_kernel_quant_q8_0_ref,
    .quant_q8_K = sl_kernel_quant_q8_K_ref,
    .fp16_to_f32_row = fp16_to_f32_row,
    .f32_to_fp16_row = f32_to_fp16_row,
    .attn_scores = attn_scores_f32,
    .attn_accum = attn_accum_f32,
    .attn_scores_f16 = attn_scores_f16,
    .attn_accum_f16 = attn_accum_f16,
    .swiglu = swiglu,
    .exp_sum = exp_sum,
};
