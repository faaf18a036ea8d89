/* AVX2 + FMA + F16C kernels, compiled for that target function by function
 * so the rest of the build stays portable; chosen at run time. Each follows
 * the reduction order that dot_scalar.c spells out (see kernels.h). */
#if defined(__x86_64__)
#include "engine/kernels/kernels_impl.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))

/* ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), as sl_kernel_hsum8. */
TARGET static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

TARGET static inline int32_t hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

TARGET static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

TARGET static inline __m256 load8_f32(const void *w, int64_t i)
{
    return _mm256_loadu_ps((const float *)w + i);
}
TARGET static inline __m256 load8_f16(const void *w, int64_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
TARGET static inline __m256 load8_bf16(const void *w, int64_t i)
{
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
TARGET static inline float load1_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
TARGET static inline float load1_f16(const void *w, int64_t i)
{
    return sl_kernel_fp16_to_f32(((const uint16_t *)w)[i]);
}
TARGET static inline float load1_bf16(const void *w, int64_t i)
{
    return sl_kernel_bf16_to_f32(((const uint16_t *)w)[i]);
}

/* Software prefetch for the float rows, FLOAT_PF_BYTES ahead in the weight
 * stream (rows of a matrix are contiguous, so this runs on into the next
 * row): one prefetch per 32 elements, i.e. per 64-byte line of F16/BF16 (two
 * lines of F32, which is rarely a weight type). Only a memory hint: the
 * arithmetic is untouched. */
#define FLOAT_PF_BYTES 4096
#define PF_FLOAT(w, i)                                                                        \
    _mm_prefetch((const char *)(w) + (size_t)(i) * sizeof(uint16_t) + FLOAT_PF_BYTES,         \
                 _MM_HINT_T0)

#define FLOAT_DOT(name, load8, load1)                                                         \
    TARGET static float name(const void *w, const void *xv, int64_t n)                        \
    {                                                                                         \
        const float *x = xv;                                                                  \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        int64_t nb = n / 32 * 32, i;                                                          \
        for (i = 0; i < nb; i += 32) {                                                        \
            PF_FLOAT(w, i);                                                                   \
            a0 = _mm256_fmadd_ps(load8(w, i), _mm256_loadu_ps(x + i), a0);                    \
            a1 = _mm256_fmadd_ps(load8(w, i + 8), _mm256_loadu_ps(x + i + 8), a1);            \
            a2 = _mm256_fmadd_ps(load8(w, i + 16), _mm256_loadu_ps(x + i + 16), a2);          \
            a3 = _mm256_fmadd_ps(load8(w, i + 24), _mm256_loadu_ps(x + i + 24), a3);          \
        }                                                                                     \
        float tail = 0.0f;                                                                    \
        for (; i < n; i++)                                                                    \
            tail = fmaf(load1(w, i), x[i], tail);                                             \
        return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;     \
    }

FLOAT_DOT(dot_f32, load8_f32, load1_f32)
FLOAT_DOT(dot_f16, load8_f16, load1_f16)
FLOAT_DOT(dot_bf16, load8_bf16, load1_bf16)

/* Signed 8-bit dot in 8 int32 lanes (lane i = elements 4i..4i+3). The sign
 * trick makes w unsigned: |w| <= 128 and |x| <= 127 (activations never hold
 * -128), so each maddubs pair is at most 2*128*127 < 32767 - no saturation. */
TARGET static inline __m256i dot_i8_lanes(__m256i w, __m256i x)
{
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

TARGET static float dot_q8_0(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q8_0 *w = wv, *x = xv;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i p = dot_i8_lanes(_mm256_loadu_si256((const __m256i *)w[b].qs),
                                 _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = fmaf(h2f(w[b].d) * h2f(x[b].d), (float)hsum_i32(p), acc);
    }
    return acc;
}

TARGET static float dot_q4_0(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q4_0 *w = wv;
    const sl_blk_q8_0 *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)w[b].qs);
        /* low nibbles are elements 0..15, high nibbles 16..31 */
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
        q = _mm256_sub_epi8(q, eight);
        __m256i p = dot_i8_lanes(q, _mm256_loadu_si256((const __m256i *)x[b].qs));
        acc = fmaf(h2f(w[b].d) * h2f(x[b].d), (float)hsum_i32(p), acc);
    }
    return acc;
}

TARGET static float dot_q4_K(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q4_K *w = wv;
    const sl_blk_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; b++) {
        int sc[8], m[8];
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) {
            sl_kernel_q4k_scale_min(w[b].scales, j, &sc[j], &m[j]);
            summ += m[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c + 32));
            /* nibble (<= 15) * |y| (<= 128): pairs far below int16 saturation */
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
                                           _mm256_set1_epi16((short)sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
                                           _mm256_set1_epi16((short)sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        int32_t sumi = hsum_i32(isum);
        float dall = x[b].d * h2f(w[b].d);
        float dmin = x[b].d * h2f(w[b].dmin);
        sum = fmaf(dall, (float)sumi, sum);
        sum = fmaf(-dmin, (float)summ, sum);
    }
    return sum;
}

TARGET static float dot_q6_K(const void *wv, const void *xv, int64_t n)
{
    const sl_blk_q6_K *w = wv;
    const sl_blk_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    const __m256i c32 = _mm256_set1_epi8(32);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 256; b++) {
        /* prefetch 12 super-blocks (2.5 KiB) on, 4 lines per 3.3-line block */
        for (int l = 0; l < 4; l++)
            _mm_prefetch((const char *)&w[b + 12] + 64 * l, _MM_HINT_T0);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_and_si256(qh, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
            const int8_t *sc = w[b].scales + 8 * h;
            for (int g = 0; g < 4; g++) {
                __m256i y = _mm256_loadu_si256((const __m256i *)(x[b].qs + 128 * h + 32 * g));
                /* (code - 32) * y as code * y - 32 * y; codes <= 63 keep pairs < 16003 */
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], y),
                                             _mm256_maddubs_epi16(c32, y));
                /* int16 lanes 0..7 are elements 0..15 (scale 2g), 8..15 are 16..31 */
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]),
                                               _mm_set1_epi16(sc[2 * g]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scv));
            }
        }
        float d = x[b].d * h2f(w[b].d);
        sum = fmaf(d, (float)hsum_i32(isum), sum);
    }
    return sum;
}

/* ---- tiles: several weight rows x several tokens per pass ----
 * Each element (r, t) keeps its own accumulator and updates it exactly as the
 * single dot above does, block by block, so tiles are bitwise equal to dots.
 * What the tile shares: activation blocks and their scales are loaded once
 * for all rows, weight blocks are loaded (and for Q4_0 unpacked) once for all
 * tokens. Weight rows are read as SL_TILE_R parallel streams, each with a
 * software prefetch PF_GROUPS groups ahead (prefetching past the matrix end
 * is harmless: prefetches never fault). */
/* Prefetch distance in tile groups: a group of NR rows is contiguous, so the
 * weight stream is sequential and the same offset two groups on is 2 x NR x
 * w_row bytes ahead (about 9 KiB for a 1024-wide Q8_0 row): measured on the
 * bench machine, 1-3 groups beat 0 (+40-50 % from DRAM) and 256 B-2 KiB. */
#define PF_GROUPS 2
#define ALWAYS_INLINE inline __attribute__((always_inline))
/* -O2 does not unroll the constant-bound row/token loops by itself; unrolled,
 * the accumulator arrays become registers instead of stack slots. */
#define UNROLL _Pragma("GCC unroll 8")

/* The NR weight scales of block b as f32 lanes 0..NR-1 (one conversion for
 * all rows; the inserts run on the shuffle port, not the ALU ports). */
TARGET static ALWAYS_INLINE __m128 row_scales(const uint8_t *w, size_t w_row, size_t bb,
                                              int64_t b, const int NR)
{
    __m128i h = _mm_setzero_si128();
    UNROLL
    for (int r = 0; r < NR; r++) {
        uint16_t d;
        memcpy(&d, w + (size_t)r * w_row + (size_t)b * bb, 2);
        switch (r) { /* the lane must be a constant, also at -O0 */
        case 0: h = _mm_insert_epi16(h, d, 0); break;
        case 1: h = _mm_insert_epi16(h, d, 1); break;
        case 2: h = _mm_insert_epi16(h, d, 2); break;
        default: h = _mm_insert_epi16(h, d, 3); break;
        }
    }
    return _mm_cvtph_ps(h);
}

/* Four int32 lane vectors -> their four exact sums (integer adds: any order
 * gives the same value). */
TARGET static ALWAYS_INLINE __m128i hsum4_i32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_hadd_epi32(a, b), cd = _mm256_hadd_epi32(c, d);
    __m256i abcd = _mm256_hadd_epi32(ab, cd);
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

/* Q8_0: per element and block the exact integer dot, then the dot's
 * fma(dw * dx, dot, acc), four rows of one token in one 4-lane vector (lane r
 * = row r: the same fused multiply-add per element as the scalar fmaf). */
TARGET static ALWAYS_INLINE void q8_0_tile(const uint8_t *w, size_t w_row, const uint8_t *x,
                                           size_t x_row, int64_t n, float *out, size_t os,
                                           const int NR, const int NT)
{
    __m128 acc[SL_TILE_T];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i xq[SL_TILE_T];
        __m128 dd[SL_TILE_T]; /* lane r: fp32(w_r.d) * fp32(x_t.d), as the dot rounds it */
        __m128 wd = row_scales(w, w_row, sizeof(sl_blk_q8_0), b, NR);
        UNROLL
        for (int t = 0; t < NT; t++) {
            const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(x + (size_t)t * x_row) + b;
            xq[t] = _mm256_loadu_si256((const __m256i *)xb->qs);
            dd[t] = _mm_mul_ps(wd, _mm_set1_ps(h2f(xb->d)));
        }
        __m256i wq[SL_TILE_R], aw[SL_TILE_R];
        UNROLL
        for (int r = 0; r < SL_TILE_R; r++) {
            if (r < NR) {
                const sl_blk_q8_0 *wb = (const sl_blk_q8_0 *)(w + (size_t)r * w_row) + b;
                _mm_prefetch((const char *)wb + PF_GROUPS * NR * w_row, _MM_HINT_T0);
                wq[r] = _mm256_loadu_si256((const __m256i *)wb->qs);
            } else {
                wq[r] = _mm256_setzero_si256();
            }
            aw[r] = _mm256_sign_epi8(wq[r], wq[r]);
        }
        UNROLL
        for (int t = 0; t < NT; t++) {
            /* as dot_i8_lanes: |w| <= 128, |x| <= 127, no saturation */
            const __m256i ones = _mm256_set1_epi16(1);
            __m256i l[SL_TILE_R];
            UNROLL
            for (int r = 0; r < SL_TILE_R; r++)
                l[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(xq[t], wq[r])),
                                         ones);
            __m128i isum = hsum4_i32(l[0], l[1], l[2], l[3]);
            acc[t] = _mm_fmadd_ps(dd[t], _mm_cvtepi32_ps(isum), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        float o[4];
        _mm_storeu_ps(o, acc[t]);
        UNROLL
        for (int r = 0; r < NR; r++)
            out[(size_t)t * os + (size_t)r] = o[r];
    }
}

/* Q4_0 with unsigned nibbles: block dot = maddubs(q, x) - maddubs(8, x) in
 * int16 pairs (|q * x| pairs <= 3810, 8 * x pairs <= 2032: exact), then madd
 * to int32 lanes and the four rows' lanes reduced together: the exact
 * integers of dot_q4_0, then its fma per block, four rows in one vector. */
TARGET static ALWAYS_INLINE void q4_0_tile(const uint8_t *w, size_t w_row, const uint8_t *x,
                                           size_t x_row, int64_t n, float *out, size_t os,
                                           const int NR, const int NT)
{
    __m128 acc[SL_TILE_T];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i xq[SL_TILE_T], xc[SL_TILE_T];
        __m128 dd[SL_TILE_T];
        __m128 wd = row_scales(w, w_row, sizeof(sl_blk_q4_0), b, NR);
        UNROLL
        for (int t = 0; t < NT; t++) {
            const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(x + (size_t)t * x_row) + b;
            xq[t] = _mm256_loadu_si256((const __m256i *)xb->qs);
            xc[t] = _mm256_maddubs_epi16(eight, xq[t]);
            dd[t] = _mm_mul_ps(wd, _mm_set1_ps(h2f(xb->d)));
        }
        __m256i q[SL_TILE_R];
        UNROLL
        for (int r = 0; r < SL_TILE_R; r++) {
            if (r < NR) {
                const sl_blk_q4_0 *wb = (const sl_blk_q4_0 *)(w + (size_t)r * w_row) + b;
                _mm_prefetch((const char *)wb + PF_GROUPS * NR * w_row, _MM_HINT_T0);
                __m128i raw = _mm_loadu_si128((const __m128i *)wb->qs);
                /* low nibbles are elements 0..15, high nibbles 16..31 */
                q[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            } else {
                q[r] = _mm256_set1_epi8(8); /* a zero row: (8 - 8) * x */
            }
        }
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m256i l[SL_TILE_R];
            UNROLL
            for (int r = 0; r < SL_TILE_R; r++)
                l[r] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q[r], xq[t]), xc[t]),
                                         ones);
            __m128i isum = hsum4_i32(l[0], l[1], l[2], l[3]);
            acc[t] = _mm_fmadd_ps(dd[t], _mm_cvtepi32_ps(isum), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        float o[4];
        _mm_storeu_ps(o, acc[t]);
        UNROLL
        for (int r = 0; r < NR; r++)
            out[(size_t)t * os + (size_t)r] = o[r];
    }
}

/* Q4_K against Q8_K. Per super-block the same exact integers as dot_q4_K
 * (sumi = sum_j sc_j * sum(q * y) and summ = sum_j m_j * (bsums pair j)),
 * then the same two fmaf per element. The 6-bit scales and mins are unpacked
 * with word operations (bytes 0..7: scales, 8..15: mins, as
 * sl_kernel_q4k_scale_min gives them) instead of one at a time; the bsum
 * pairs are summed once per activation block for all rows. */
TARGET static ALWAYS_INLINE __m128i q4k_unpack_scales(const uint8_t *sc12)
{
    uint32_t u[4];
    memcpy(u, sc12, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4); /* mins 4..7 */
    uint32_t m03 = u[1] & k1;                               /* mins 0..3 */
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);         /* scales 4..7 */
    u[2] = m03;
    u[0] &= k1; /* scales 0..3 */
    return _mm_set_epi32((int)u[3], (int)u[2], (int)u[1], (int)u[0]);
}

TARGET static ALWAYS_INLINE void q4_K_tile(const uint8_t *w, size_t w_row, const uint8_t *x,
                                           size_t x_row, int64_t n, float *out, size_t os,
                                           const int NR, const int NT)
{
    float sum[SL_TILE_R][SL_TILE_T];
    UNROLL
    for (int r = 0; r < NR; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            sum[r][t] = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < n / 256; b++) {
        __m128i bs[SL_TILE_T]; /* int16 j: bsums[2j] + bsums[2j + 1] (|.| <= 4064) */
        float xd[SL_TILE_T];
        UNROLL
        for (int t = 0; t < NT; t++) {
            const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
            bs[t] = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)xb->bsums),
                                   _mm_loadu_si128((const __m128i *)(xb->bsums + 8)));
            xd[t] = xb->d;
        }
        __m256i sc16[SL_TILE_R], acc[SL_TILE_R][SL_TILE_T];
        int32_t summ[SL_TILE_R][SL_TILE_T];
        UNROLL
        for (int r = 0; r < NR; r++) {
            const sl_blk_q4_K *wb = (const sl_blk_q4_K *)(w + (size_t)r * w_row) + b;
            _mm_prefetch((const char *)wb + PF_GROUPS * NR * w_row, _MM_HINT_T0);
            _mm_prefetch((const char *)wb + PF_GROUPS * NR * w_row + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)wb + PF_GROUPS * NR * w_row + 128, _MM_HINT_T0);
            __m128i sm = q4k_unpack_scales(wb->scales);
            __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
            sc16[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
            UNROLL
            for (int t = 0; t < NT; t++) {
                __m128i p = _mm_madd_epi16(mins, bs[t]);
                p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(1, 0, 3, 2)));
                p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 3, 0, 1)));
                summ[r][t] = _mm_cvtsi128_si32(p);
                acc[r][t] = _mm256_setzero_si256();
            }
        }
        UNROLL
        for (int c = 0; c < 4; c++) {
            /* int16 k of each 128-bit lane broadcast: the scale of sub-block k */
            const __m256i pat0 = _mm256_set1_epi16((short)(((4 * c + 1) << 8) | (4 * c)));
            const __m256i pat1 = _mm256_set1_epi16((short)(((4 * c + 3) << 8) | (4 * c + 2)));
            __m256i y0[SL_TILE_T], y1[SL_TILE_T];
            UNROLL
            for (int t = 0; t < NT; t++) {
                const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
                y0[t] = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * c));
                y1[t] = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * c + 32));
            }
            UNROLL
            for (int r = 0; r < NR; r++) {
                const sl_blk_q4_K *wb = (const sl_blk_q4_K *)(w + (size_t)r * w_row) + b;
                __m256i q = _mm256_loadu_si256((const __m256i *)(wb->qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                __m256i s0 = _mm256_shuffle_epi8(sc16[r], pat0);
                __m256i s1 = _mm256_shuffle_epi8(sc16[r], pat1);
                UNROLL
                for (int t = 0; t < NT; t++) {
                    /* nibble (<= 15) * |y| (<= 127): pairs far below int16 saturation */
                    __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0[t]), s0);
                    __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1[t]), s1);
                    acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_add_epi32(p0, p1));
                }
            }
        }
        UNROLL
        for (int r = 0; r < NR; r++) {
            const sl_blk_q4_K *wb = (const sl_blk_q4_K *)(w + (size_t)r * w_row) + b;
            float wd = h2f(wb->d), wm = h2f(wb->dmin);
            UNROLL
            for (int t = 0; t < NT; t++) {
                float dall = xd[t] * wd, dmin = xd[t] * wm;
                sum[r][t] = fmaf(dall, (float)hsum_i32(acc[r][t]), sum[r][t]);
                sum[r][t] = fmaf(-dmin, (float)summ[r][t], sum[r][t]);
            }
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++)
        UNROLL
        for (int r = 0; r < NR; r++)
            out[(size_t)t * os + (size_t)r] = sum[r][t];
}

/* One function per (rows, tokens) shape so every loop above has constant
 * bounds and the accumulators live in registers; the public tile picks one. */
#define TILE_SHAPES(kern)                                                                     \
    TARGET static void kern##_1_1(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 1, 1);                                                   \
    }                                                                                         \
    TARGET static void kern##_2_1(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 2, 1);                                                   \
    }                                                                                         \
    TARGET static void kern##_3_1(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 3, 1);                                                   \
    }                                                                                         \
    TARGET static void kern##_4_1(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 4, 1);                                                   \
    }                                                                                         \
    TARGET static void kern##_1_2(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 1, 2);                                                   \
    }                                                                                         \
    TARGET static void kern##_2_2(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 2, 2);                                                   \
    }                                                                                         \
    TARGET static void kern##_3_2(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 3, 2);                                                   \
    }                                                                                         \
    TARGET static void kern##_4_2(const uint8_t *w, size_t wr, const uint8_t *x, size_t xr,   \
                                  int64_t n, float *o, size_t os)                             \
    {                                                                                         \
        kern(w, wr, x, xr, n, o, os, 4, 2);                                                   \
    }                                                                                         \
    static void (*const kern##_shapes[SL_TILE_R][SL_TILE_T])(                                 \
        const uint8_t *, size_t, const uint8_t *, size_t, int64_t, float *, size_t) = {       \
        {kern##_1_1, kern##_1_2},                                                             \
        {kern##_2_1, kern##_2_2},                                                             \
        {kern##_3_1, kern##_3_2},                                                             \
        {kern##_4_1, kern##_4_2}};                                                            \
    static void kern##_any(const void *w, size_t w_row, int nr, const void *x, size_t x_row,  \
                           int nt, int64_t n, float *out, size_t out_stride)                  \
    {                                                                                         \
        kern##_shapes[nr - 1][nt - 1](w, w_row, x, x_row, n, out, out_stride);                \
    }

TILE_SHAPES(q8_0_tile)
TILE_SHAPES(q4_0_tile)
TILE_SHAPES(q4_K_tile)

SL_KERNEL_TILE_FROM_DOT(tile_f32, dot_f32)
SL_KERNEL_TILE_FROM_DOT(tile_f16, dot_f16)
SL_KERNEL_TILE_FROM_DOT(tile_bf16, dot_bf16)
SL_KERNEL_TILE_FROM_DOT(tile_q6_K, dot_q6_K)

/* ---- activation quantizers ----
 * Bitwise equal to sl_kernel_quant_q8_0_ref / _q8_K_ref: the same amax
 * (max of |x|, NaN ignored: max_ps returns its second operand for a NaN
 * first one, as fmaxf skips NaN), the same scalar scale rule, the same
 * products x * id, the same clamp (NaN -> -127) and roundf's rounding (half
 * away from zero), done exactly as trunc(v) + (|v - trunc v| >= 0.5 ? sign : 0);
 * v - trunc(v) is exact for |v| <= 127. */
TARGET static inline __m256i quant8(__m256 v, __m256 id)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 sgnm = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    __m256 s = _mm256_max_ps(_mm256_mul_ps(v, id), _mm256_set1_ps(-127.0f));
    s = _mm256_min_ps(s, _mm256_set1_ps(127.0f));
    __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(s, t), absm), _mm256_set1_ps(0.5f),
                              _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(s, sgnm), _mm256_set1_ps(1.0f));
    return _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

/* 32 int32 (in [-127, 127]) to 32 int8 in element order. */
TARGET static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

TARGET static inline float amax_n(const float *x, int n)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (int l = 0; l < n; l += 8)
        m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + l), absm), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

TARGET static inline float safe_inv_f(float d) { return (d > 0.0f && isfinite(d)) ? 1.0f / d : 0.0f; }

TARGET static void quant_q8_0(const float *x, void *dst, int64_t nb)
{
    sl_blk_q8_0 *b = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        b[i].d = sl_kernel_fp16_up(amax_n(x, 32) / 127.0f);
        __m256 id = _mm256_set1_ps(safe_inv_f(h2f(b[i].d)));
        __m256i q = pack32(quant8(_mm256_loadu_ps(x), id), quant8(_mm256_loadu_ps(x + 8), id),
                           quant8(_mm256_loadu_ps(x + 16), id), quant8(_mm256_loadu_ps(x + 24), id));
        _mm256_storeu_si256((__m256i *)b[i].qs, q);
    }
}

TARGET static void quant_q8_K(const float *x, void *dst, int64_t nb)
{
    sl_blk_q8_K *b = dst;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < nb; i++, x += 256) {
        b[i].d = amax_n(x, 256) / 127.0f;
        float idf = safe_inv_f(b[i].d);
        if (idf == 0.0f)
            b[i].d = 0.0f;
        __m256 id = _mm256_set1_ps(idf);
        for (int g = 0; g < 8; g++) {
            const float *xg = x + 32 * g;
            __m256i q = pack32(quant8(_mm256_loadu_ps(xg), id), quant8(_mm256_loadu_ps(xg + 8), id),
                               quant8(_mm256_loadu_ps(xg + 16), id),
                               quant8(_mm256_loadu_ps(xg + 24), id));
            _mm256_storeu_si256((__m256i *)(b[i].qs + 32 * g), q);
            /* sums of 16: 1 * q in pairs, pairs to quads, quads per 128-bit lane */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            b[i].bsums[2 * g] = (int16_t)_mm256_extract_epi32(s, 0);
            b[i].bsums[2 * g + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
    }
}

TARGET static void fp16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = sl_kernel_fp16_to_f32(src[i]);
}

TARGET static void f32_to_fp16_row(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        dst[i] = sl_kernel_f32_to_fp16(src[i]);
}

/* Attention over one head, with the keys and values stored as f32 or as
 * f16 (the KV cache's two element types). One body for both, through a
 * loader of 8 elements (f16 widened exactly by vcvtph2ps) and a scalar one
 * for the tails, so the two share every lane and every order.
 *
 * scores: four keys at a time, four independent FMA chains hiding the FMA
 * latency; each key keeps the scalar reference's lanes and order.
 * accum: row j of v is read once per 64-element chunk of the head, in order,
 * while the chunk's sums stay in registers (hd <= 64: each value row is read
 * exactly once, sequentially). */
TARGET static inline __m256 ld8_f32(const float *p) { return _mm256_loadu_ps(p); }
TARGET static inline __m256 ld8_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline float ld1_f32(const float *p) { return *p; }
static inline float ld1_f16(const uint16_t *p) { return sl_kernel_fp16_to_f32(*p); }

#define ATTN_KERNELS(SUF, T)                                                                    \
    TARGET static void attn_scores##SUF(float *out, const float *q, const T *k, size_t k_stride, \
                                        int n, int hd, float scale)                             \
    {                                                                                           \
        int h8 = hd & ~7, j = 0;                                                                \
        for (; j + 4 <= n; j += 4) {                                                            \
            const T *k0 = k + (size_t)j * k_stride, *k1 = k0 + k_stride, *k2 = k1 + k_stride,  \
                    *k3 = k2 + k_stride;                                                        \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                         \
            for (int i = 0; i < h8; i += 8) {                                                   \
                __m256 qv = _mm256_loadu_ps(q + i);                                             \
                a0 = _mm256_fmadd_ps(qv, ld8##SUF(k0 + i), a0);                                 \
                a1 = _mm256_fmadd_ps(qv, ld8##SUF(k1 + i), a1);                                 \
                a2 = _mm256_fmadd_ps(qv, ld8##SUF(k2 + i), a2);                                 \
                a3 = _mm256_fmadd_ps(qv, ld8##SUF(k3 + i), a3);                                 \
            }                                                                                   \
            float s0 = hsum8(a0), s1 = hsum8(a1), s2 = hsum8(a2), s3 = hsum8(a3);               \
            for (int i = h8; i < hd; i++) {                                                     \
                s0 = fmaf(q[i], ld1##SUF(k0 + i), s0);                                          \
                s1 = fmaf(q[i], ld1##SUF(k1 + i), s1);                                          \
                s2 = fmaf(q[i], ld1##SUF(k2 + i), s2);                                          \
                s3 = fmaf(q[i], ld1##SUF(k3 + i), s3);                                          \
            }                                                                                   \
            out[j] = s0 * scale;                                                                \
            out[j + 1] = s1 * scale;                                                            \
            out[j + 2] = s2 * scale;                                                            \
            out[j + 3] = s3 * scale;                                                            \
        }                                                                                       \
        for (; j < n; j++) {                                                                    \
            const T *kj = k + (size_t)j * k_stride;                                             \
            __m256 a0 = _mm256_setzero_ps();                                                    \
            for (int i = 0; i < h8; i += 8)                                                     \
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), ld8##SUF(kj + i), a0);             \
            float s0 = hsum8(a0);                                                               \
            for (int i = h8; i < hd; i++)                                                       \
                s0 = fmaf(q[i], ld1##SUF(kj + i), s0);                                          \
            out[j] = s0 * scale;                                                                \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    TARGET static void attn_accum##SUF(float *o, const float *a, const T *v, size_t v_stride,    \
                                       int n, int hd)                                           \
    {                                                                                           \
        int i = 0;                                                                              \
        for (; i + 64 <= hd; i += 64) {                                                         \
            __m256 s[8];                                                                        \
            UNROLL                                                                              \
            for (int k = 0; k < 8; k++)                                                         \
                s[k] = _mm256_loadu_ps(o + i + 8 * k);                                          \
            for (int j = 0; j < n; j++) {                                                       \
                const T *vj = v + (size_t)j * v_stride + i;                                     \
                __m256 aj = _mm256_set1_ps(a[j]);                                               \
                UNROLL                                                                          \
                for (int k = 0; k < 8; k++)                                                     \
                    s[k] = _mm256_fmadd_ps(aj, ld8##SUF(vj + 8 * k), s[k]);                     \
            }                                                                                   \
            UNROLL                                                                              \
            for (int k = 0; k < 8; k++)                                                         \
                _mm256_storeu_ps(o + i + 8 * k, s[k]);                                          \
        }                                                                                       \
        for (; i + 8 <= hd; i += 8) {                                                           \
            __m256 o0 = _mm256_loadu_ps(o + i);                                                 \
            for (int j = 0; j < n; j++)                                                         \
                o0 = _mm256_fmadd_ps(_mm256_set1_ps(a[j]), ld8##SUF(v + (size_t)j * v_stride + i), \
                                     o0);                                                       \
            _mm256_storeu_ps(o + i, o0);                                                        \
        }                                                                                       \
        for (; i < hd; i++) {                                                                   \
            float oi = o[i];                                                                    \
            for (int j = 0; j < n; j++)                                                         \
                oi = fmaf(a[j], ld1##SUF(v + (size_t)j * v_stride + i), oi);                    \
            o[i] = oi;                                                                          \
        }                                                                                       \
    }

ATTN_KERNELS(_f32, float)
ATTN_KERNELS(_f16, uint16_t)

/* sl_kernel_exp_step on 8 lanes, operation for operation. */
TARGET static inline __m256 exp8(__m256 x)
{
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 lo = _mm256_set1_ps(SL_EXP_LO), hi = _mm256_set1_ps(SL_EXP_HI);
    /* as the scalar compares: a NaN lane is left alone (and restored below) */
    x = _mm256_blendv_ps(x, lo, _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    x = _mm256_blendv_ps(x, hi, _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    __m256 rnd = _mm256_set1_ps(SL_EXP_ROUND);
    __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(SL_EXP_LOG2E), rnd), rnd);
    __m256 neg = _mm256_sub_ps(_mm256_setzero_ps(), n);
    __m256 r = _mm256_fmadd_ps(neg, _mm256_set1_ps(SL_EXP_LN2_HI), x);
    r = _mm256_fmadd_ps(neg, _mm256_set1_ps(SL_EXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 720), r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), x, nan);
}

TARGET static void swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++)
        out[i] = gate[i] / (1.0f + sl_kernel_exp_step(-gate[i])) * up[i];
}

TARGET static float exp_sum(float *x, int64_t n, float max)
{
    int64_t i = 0;
    const __m256 m = _mm256_set1_ps(max);
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum8(acc);
    for (; i < n; i++) {
        x[i] = sl_kernel_exp_step(x[i] - max);
        s += x[i];
    }
    return s;
}

const sl_kernel_vtab sl_kernel_vtab_avx2 = {
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
    .tile_q8_0 = q8_0_tile_any,
    .tile_q4_0 = q4_0_tile_any,
    .tile_q4_K = q4_K_tile_any,
    .tile_q6_K = tile_q6_K,
    .quant_q8_0 = quant_q8_0,
    .quant_q8_K = quant_q8_K,
    .fp16_to_f32_row = fp16_to_f32_row,
    .f32_to_fp16_row = f32_to_fp16_row,
    .attn_scores = attn_scores_f32,
    .attn_accum = attn_accum_f32,
    .attn_scores_f16 = attn_scores_f16,
    .attn_accum_f16 = attn_accum_f16,
    .swiglu = swiglu,
    .exp_sum = exp_sum,
};
#endif
