/* Type table, row dequantization and the reference quantizers.
 *
 * The quantizers aim for sound layouts with stated error bounds rather than
 * the best possible quality: every scale is chosen so that the block's range
 * is covered without clipping (fp16 scales are rounded UP, sub-block scales
 * use ceil), so the error of an element is at most half a quantization step.
 * Float-to-int conversions clamp in float first, so NaN or huge inputs give a
 * valid block instead of undefined behaviour. */
#include "engine/kernels/kernels_impl.h"

#include <math.h>
#include <string.h>

typedef struct {
    int type;
    const char *name;
    size_t elems, bytes;
    int vec_type;
} type_info;

static const type_info TYPES[] = {
    {SL_KT_F32, "f32", 1, 4, SL_KT_F32},
    {SL_KT_F16, "f16", 1, 2, SL_KT_F32},
    {SL_KT_Q4_0, "q4_0", SL_QK4_0, SL_Q4_0_BYTES, SL_KT_Q8_0},
    {SL_KT_Q8_0, "q8_0", SL_QK8_0, SL_Q8_0_BYTES, SL_KT_Q8_0},
    {SL_KT_Q4_K, "q4_K", SL_QK_K, SL_Q4_K_BYTES, SL_KT_Q8_K},
    {SL_KT_Q6_K, "q6_K", SL_QK_K, SL_Q6_K_BYTES, SL_KT_Q8_K},
    {SL_KT_Q8_K, "q8_K", SL_QK_K, SL_Q8_K_BYTES, -1},
    {SL_KT_BF16, "bf16", 1, 2, SL_KT_F32},
};

static const type_info *info(int type)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(TYPES); i++)
        if (TYPES[i].type == type)
            return &TYPES[i];
    return NULL;
}

bool sl_kernel_type_known(int type) { return info(type) != NULL; }

const char *sl_kernel_type_name(int type)
{
    const type_info *t = info(type);
    return t ? t->name : "?";
}

size_t sl_kernel_block_elems(int type)
{
    const type_info *t = info(type);
    return t ? t->elems : 0;
}

size_t sl_kernel_block_bytes(int type)
{
    const type_info *t = info(type);
    return t ? t->bytes : 0;
}

int sl_kernel_vec_type(int type)
{
    const type_info *t = info(type);
    return t ? t->vec_type : -1;
}

int sl_kernel_row_bytes(int type, int64_t n, size_t *out)
{
    const type_info *t = info(type);
    if (!t)
        return SL_EUNSUPPORTED;
    if (n < 0 || (uint64_t)n % t->elems != 0)
        return SL_EINVAL;
    uint64_t blocks = (uint64_t)n / t->elems;
    if (blocks > SIZE_MAX / t->bytes)
        return SL_EINVAL;
    *out = (size_t)(blocks * t->bytes);
    return 0;
}

static inline float h2f(uint16_t h) { return sl_kernel_fp16_to_f32(h); }

/* ---- dequantize ---- */

static void deq_q8_0(const sl_blk_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int l = 0; l < 32; l++)
            y[l] = (float)b[i].qs[l] * d;
    }
}

static void deq_q4_0(const sl_blk_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int l = 0; l < 16; l++) {
            y[l] = (float)((b[i].qs[l] & 0xF) - 8) * d;
            y[l + 16] = (float)((b[i].qs[l] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_K(const sl_blk_q4_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int c = 0; c < 4; c++, q += 32) {
            int sc, m;
            sl_kernel_q4k_scale_min(b[i].scales, 2 * c, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            sl_kernel_q4k_scale_min(b[i].scales, 2 * c + 1, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Element e (0..255) of a Q6_K block as an unsigned 6-bit code (0..63). */
static inline int q6k_code(const sl_blk_q6_K *b, int e)
{
    int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
    uint8_t lo = b->ql[h * 64 + l + (g & 1) * 32];
    int low4 = g < 2 ? (lo & 0xF) : (lo >> 4);
    int high2 = (b->qh[h * 32 + l] >> (2 * g)) & 3;
    return low4 | (high2 << 4);
}

static void deq_q6_K(const sl_blk_q6_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = h2f(b[i].d);
        for (int e = 0; e < 256; e++)
            *y++ = d * (float)b[i].scales[e / 16] * (float)(q6k_code(&b[i], e) - 32);
    }
}

static void deq_q8_K(const sl_blk_q8_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 256)
        for (int l = 0; l < 256; l++)
            y[l] = (float)b[i].qs[l] * b[i].d;
}

int sl_kernel_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    size_t bytes;
    int rc = sl_kernel_row_bytes(type, n, &bytes);
    if (rc)
        return rc;
    int64_t nb = n / (int64_t)sl_kernel_block_elems(type);
    switch (type) {
    case SL_KT_F32: memmove(dst, src, bytes); break;
    case SL_KT_F16: sl_kernel_fp16_to_f32_row(src, dst, (size_t)n); break;
    case SL_KT_BF16: sl_kernel_bf16_to_f32_row(src, dst, (size_t)n); break;
    case SL_KT_Q8_0: deq_q8_0(src, dst, nb); break;
    case SL_KT_Q4_0: deq_q4_0(src, dst, nb); break;
    case SL_KT_Q4_K: deq_q4_K(src, dst, nb); break;
    case SL_KT_Q6_K: deq_q6_K(src, dst, nb); break;
    case SL_KT_Q8_K: deq_q8_K(src, dst, nb); break;
    default: return SL_EUNSUPPORTED;
    }
    return 0;
}

/* ---- quantize ---- */

/* fp16 encoding of a scale d >= 0 that decodes to a value >= d, so a range
 * sized for d is still covered after the scale is stored. */
uint16_t sl_kernel_fp16_up(float d)
{
    uint16_t h = sl_kernel_f32_to_fp16(d);
    if (h < 0x7c00 && h2f(h) < d)
        h++;
    return h;
}

/* round(v) clamped to [lo, hi]; NaN gives lo. */
static inline int round_clamp(float v, float lo, float hi)
{
    v = fmaxf(v, lo);
    v = fminf(v, hi);
    return (int)roundf(v);
}

static inline float safe_inv(float d) { return (d > 0.0f && isfinite(d)) ? 1.0f / d : 0.0f; }

void sl_kernel_quant_q8_0_ref(const float *x, void *dst, int64_t nb)
{
    sl_blk_q8_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int l = 0; l < 32; l++)
            amax = fmaxf(amax, fabsf(x[l]));
        b[i].d = sl_kernel_fp16_up(amax / 127.0f);
        float id = safe_inv(h2f(b[i].d));
        for (int l = 0; l < 32; l++)
            b[i].qs[l] = (int8_t)round_clamp(x[l] * id, -127.0f, 127.0f);
    }
}

static void quant_q4_0(const float *x, sl_blk_q4_0 *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        /* The element of largest magnitude maps to code 0 (q - 8 = -8), as
         * GGUF writers do; the opposite side clips at +7 (error <= |d|). */
        float amax = 0.0f, max = 0.0f;
        for (int l = 0; l < 32; l++) {
            if (fabsf(x[l]) > amax) {
                amax = fabsf(x[l]);
                max = x[l];
            }
        }
        uint16_t h = sl_kernel_fp16_up(amax / 8.0f);
        if (max > 0.0f)
            h |= 0x8000; /* d = max / -8 */
        b[i].d = h;
        float d = h2f(h);
        float id = (d != 0.0f && isfinite(d)) ? 1.0f / d : 0.0f;
        for (int l = 0; l < 16; l++) {
            int q0 = round_clamp(x[l] * id, -8.0f, 7.0f) + 8;
            int q1 = round_clamp(x[l + 16] * id, -8.0f, 7.0f) + 8;
            b[i].qs[l] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void quant_q4_K(const float *x, sl_blk_q4_K *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float mins[8], maxs[8], maxm = 0.0f;
        for (int j = 0; j < 8; j++) {
            float mn = 0.0f, mx = -INFINITY;
            for (int l = 0; l < 32; l++) {
                mn = fminf(mn, x[32 * j + l]);
                mx = fmaxf(mx, x[32 * j + l]);
            }
            mins[j] = -mn; /* >= 0: the offset subtracted on decode */
            maxs[j] = mx;
            maxm = fmaxf(maxm, mins[j]);
        }
        /* mins first (rounded up), then scales sized for max + quantized min */
        b[i].dmin = sl_kernel_fp16_up(maxm / 63.0f);
        float dmin = h2f(b[i].dmin);
        float idmin = safe_inv(dmin);
        int mq[8], sq[8];
        float scale[8], maxs_all = 0.0f;
        for (int j = 0; j < 8; j++) {
            mq[j] = round_clamp(ceilf(mins[j] * idmin), 0.0f, 63.0f);
            scale[j] = fmaxf(0.0f, (maxs[j] + dmin * (float)mq[j]) / 15.0f);
            maxs_all = fmaxf(maxs_all, scale[j]);
        }
        b[i].d = sl_kernel_fp16_up(maxs_all / 63.0f);
        float d = h2f(b[i].d);
        float id = safe_inv(d);
        for (int j = 0; j < 8; j++)
            sq[j] = round_clamp(ceilf(scale[j] * id), 0.0f, 63.0f);
        memset(b[i].scales, 0, 12);
        for (int j = 0; j < 4; j++) {
            b[i].scales[j] = (uint8_t)((sq[j] & 63) | ((sq[j + 4] >> 4) << 6));
            b[i].scales[j + 4] = (uint8_t)((mq[j] & 63) | ((mq[j + 4] >> 4) << 6));
            b[i].scales[j + 8] = (uint8_t)((sq[j + 4] & 0xF) | ((mq[j + 4] & 0xF) << 4));
        }
        uint8_t codes[256];
        for (int j = 0; j < 8; j++) {
            float s = d * (float)sq[j], m = dmin * (float)mq[j];
            float is = safe_inv(s);
            for (int l = 0; l < 32; l++)
                codes[32 * j + l] = (uint8_t)round_clamp((x[32 * j + l] + m) * is, 0.0f, 15.0f);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(codes[64 * c + l] | (codes[64 * c + 32 + l] << 4));
    }
}

static void quant_q6_K(const float *x, sl_blk_q6_K *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], maxs = 0.0f;
        for (int s = 0; s < 16; s++) {
            float amax = 0.0f;
            for (int l = 0; l < 16; l++)
                amax = fmaxf(amax, fabsf(x[16 * s + l]));
            scale[s] = amax / 31.0f; /* codes -31..31 cover the sub-block */
            maxs = fmaxf(maxs, scale[s]);
        }
        b[i].d = sl_kernel_fp16_up(maxs / 127.0f);
        float d = h2f(b[i].d);
        float id = safe_inv(d);
        uint8_t codes[256];
        for (int s = 0; s < 16; s++) {
            int sc = round_clamp(ceilf(scale[s] * id), 0.0f, 127.0f);
            b[i].scales[s] = (int8_t)sc;
            float is = safe_inv(d * (float)sc);
            for (int l = 0; l < 16; l++)
                codes[16 * s + l] = (uint8_t)(round_clamp(x[16 * s + l] * is, -32.0f, 31.0f) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *c = codes + 128 * h;
            for (int l = 0; l < 32; l++) {
                int c1 = c[l], c2 = c[l + 32], c3 = c[l + 64], c4 = c[l + 96];
                b[i].ql[64 * h + l] = (uint8_t)((c1 & 0xF) | ((c3 & 0xF) << 4));
                b[i].ql[64 * h + l + 32] = (uint8_t)((c2 & 0xF) | ((c4 & 0xF) << 4));
                b[i].qh[32 * h + l] =
                    (uint8_t)((c1 >> 4) | ((c2 >> 4) << 2) | ((c3 >> 4) << 4) | ((c4 >> 4) << 6));
            }
        }
    }
}

void sl_kernel_quant_q8_K_ref(const float *x, void *dst, int64_t nb)
{
    sl_blk_q8_K *b = dst;
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float amax = 0.0f;
        for (int l = 0; l < 256; l++)
            amax = fmaxf(amax, fabsf(x[l]));
        b[i].d = amax / 127.0f;
        float id = safe_inv(b[i].d);
        if (id == 0.0f)
            b[i].d = 0.0f;
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                int q = round_clamp(x[16 * s + l] * id, -127.0f, 127.0f);
                b[i].qs[16 * s + l] = (int8_t)q;
                sum += q;
            }
            b[i].bsums[s] = (int16_t)sum;
        }
    }
}

int sl_kernel_quantize_row(int type, const float *src, void *dst, int64_t n)
{
    size_t bytes;
    int rc = sl_kernel_row_bytes(type, n, &bytes);
    if (rc)
        return rc;
    int64_t nb = n / (int64_t)sl_kernel_block_elems(type);
    switch (type) {
    case SL_KT_F32: memmove(dst, src, bytes); break;
    case SL_KT_F16: sl_kernel_f32_to_fp16_row(src, dst, (size_t)n); break;
    case SL_KT_BF16: sl_kernel_f32_to_bf16_row(src, dst, (size_t)n); break;
    /* the activation formats: the ISA's quantizer (identical output) */
    case SL_KT_Q8_0: sl_kernel_vtab_get()->quant_q8_0(src, dst, nb); break;
    case SL_KT_Q4_0: quant_q4_0(src, dst, nb); break;
    case SL_KT_Q4_K: quant_q4_K(src, dst, nb); break;
    case SL_KT_Q6_K: quant_q6_K(src, dst, nb); break;
    case SL_KT_Q8_K: sl_kernel_vtab_get()->quant_q8_K(src, dst, nb); break;
    default: return SL_EUNSUPPORTED;
    }
    return 0;
}
