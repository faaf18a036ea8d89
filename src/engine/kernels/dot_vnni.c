/* AVX-512 VNNI kernels, bit for bit the numbers of the dots (kernels.h):
 *
 * - Q8_0, Q4_0, Q4_K and Q6_K repacked in 16-row groups (SL_KT_*_R16, repack.c): lanes
 *   are rows, one exact int32 block dot per row and token (vpdpbusd against
 *   the token's 4-byte activation quads broadcast), then the dot's
 *   fma(dw * dx, dot, acc) per block (for Q4_K, per super-block the sub-block
 *   dots and dot_q4_K's two multiply-adds: r16k_group); 8 tokens share each
 *   weight load.
 * - Q4_K for two or more tokens (batched decode steps, prefill chunks): one
 *   512-bit register holds the lanes of two tokens (tokens 2p and 2p+1 of a
 *   pair in its low and high halves) against one weight row, so a tile of
 *   4 rows x 4 pairs (8 tokens) keeps 16 accumulators in registers; the
 *   activations are repacked once per matmul.
 * Integer ranges: |x| <= 127, so a Q8_0 block dot is at most 32 * 255 * 128
 * and a Q4_0 one 32 * 15 * 127 (+ 8 * 32 * 127): far inside int32, and
 * vpdpbusd (not the saturating form) wraps nothing. */
#if defined(__x86_64__)
#include "engine/kernels/kernels_impl.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

/* Rows and token pairs of one register tile. */
#define VR 4
#define VP 4

/* Q4_K against Q8_K, tokens paired. Per pair and super-block the
 * activations are repacked as 8 groups of 32 + 32 bytes (group g of token
 * 2p, then of 2p + 1), the bsum pairs (bsums[2j] + bsums[2j + 1], j < 8) of
 * both tokens and both scales. The exact integers of dot_q4_K: sumi =
 * sum_j sc_j * sum(q * y) (maddubs pairs, then vpdpwssd against the
 * sub-block scale: the madd + add of the AVX2 tile in one instruction) and
 * summ = sum_j m_j * bsum pair j, then the same two fmaf per element. */
typedef struct {
    int8_t q[8][64];
    int16_t bs[16]; /* token 2p: 0..7, token 2p + 1: 8..15 */
    float d[2];
} vnni_kblk;

TARGET static void repack_k(vnni_kblk *out, const uint8_t *xa, size_t xa_row, int64_t n_tok,
                            int64_t nb, int64_t p0, int64_t p1)
{
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *ra = xa + (size_t)(2 * p) * xa_row;
        const uint8_t *rc = xa + (size_t)SL_MIN(2 * p + 1, n_tok - 1) * xa_row;
        for (int64_t b = 0; b < nb; b++) {
            vnni_kblk *o = out + p * nb + b;
            const sl_blk_q8_K *a = (const sl_blk_q8_K *)ra + b, *c = (const sl_blk_q8_K *)rc + b;
            for (int g = 0; g < 8; g++) {
                memcpy(o->q[g], a->qs + 32 * g, 32);
                memcpy(o->q[g] + 32, c->qs + 32 * g, 32);
            }
            for (int j = 0; j < 8; j++) {
                o->bs[j] = (int16_t)(a->bsums[2 * j] + a->bsums[2 * j + 1]);
                o->bs[8 + j] = (int16_t)(c->bsums[2 * j] + c->bsums[2 * j + 1]);
            }
            o->d[0] = a->d;
            o->d[1] = c->d;
        }
    }
}

TARGET static ALWAYS_INLINE __m128i q4k_scales(const uint8_t *sc12)
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

TARGET static ALWAYS_INLINE int32_t hsum_i32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

TARGET static ALWAYS_INLINE void tile_k(const uint8_t *w, size_t w_row, int nr, const void *xv,
                                        int64_t nb, int nt, float *out, size_t os, const int NP)
{
    const vnni_kblk *x = xv;
    float sum[VR][2 * VP];
    const uint8_t *wr[VR];
    UNROLL
    for (int r = 0; r < VR; r++) {
        wr[r] = w + (size_t)SL_MIN(r, nr - 1) * w_row;
        UNROLL
        for (int t = 0; t < 2 * NP; t++)
            sum[r][t] = 0.0f;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        __m512i sc[VR], acc[VR][VP];
        __m256i mins[VR];
        UNROLL
        for (int r = 0; r < VR; r++) {
            const sl_blk_q4_K *wb = (const sl_blk_q4_K *)wr[r] + b;
            const char *pf = (const char *)wb + 2 * VR * w_row;
            _mm_prefetch(pf, _MM_HINT_T0);
            _mm_prefetch(pf + 64, _MM_HINT_T0);
            _mm_prefetch(pf + 128, _MM_HINT_T0);
            __m128i sm = q4k_scales(wb->scales);
            mins[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)));
            sc[r] = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sm));
            UNROLL
            for (int p = 0; p < NP; p++)
                acc[r][p] = _mm512_setzero_si512();
        }
        UNROLL
        for (int c = 0; c < 4; c++) {
            /* int16 k of each 128-bit lane broadcast: the scale of sub-block k */
            const __m512i pat0 = _mm512_set1_epi16((short)(((4 * c + 1) << 8) | (4 * c)));
            const __m512i pat1 = _mm512_set1_epi16((short)(((4 * c + 3) << 8) | (4 * c + 2)));
            UNROLL
            for (int r = 0; r < VR; r++) {
                const sl_blk_q4_K *wb = (const sl_blk_q4_K *)wr[r] + b;
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wb->qs + 32 * c)));
                __m512i lo = _mm512_and_si512(q, m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                __m512i s0 = _mm512_shuffle_epi8(sc[r], pat0);
                __m512i s1 = _mm512_shuffle_epi8(sc[r], pat1);
                UNROLL
                for (int p = 0; p < NP; p++) {
                    const vnni_kblk *xb = x + p * nb + b;
                    /* nibble (<= 15) * |y| (<= 127): pairs far below int16 saturation */
                    __m512i p0 = _mm512_maddubs_epi16(lo, _mm512_loadu_si512(xb->q[2 * c]));
                    __m512i p1 = _mm512_maddubs_epi16(hi, _mm512_loadu_si512(xb->q[2 * c + 1]));
                    acc[r][p] = _mm512_dpwssd_epi32(acc[r][p], p0, s0);
                    acc[r][p] = _mm512_dpwssd_epi32(acc[r][p], p1, s1);
                }
            }
        }
        UNROLL
        for (int r = 0; r < VR; r++) {
            const sl_blk_q4_K *wb = (const sl_blk_q4_K *)wr[r] + b;
            float wd = _cvtsh_ss(wb->d), wm = _cvtsh_ss(wb->dmin);
            UNROLL
            for (int p = 0; p < NP; p++) {
                const vnni_kblk *xb = x + p * nb + b;
                /* int32 lanes 0-3: token 2p's min products, 4-7: token 2p + 1's */
                __m256i mp = _mm256_madd_epi16(mins[r], _mm256_loadu_si256((const __m256i *)xb->bs));
                mp = _mm256_add_epi32(mp, _mm256_shuffle_epi32(mp, _MM_SHUFFLE(1, 0, 3, 2)));
                mp = _mm256_add_epi32(mp, _mm256_shuffle_epi32(mp, _MM_SHUFFLE(2, 3, 0, 1)));
                int32_t summ0 = _mm256_extract_epi32(mp, 0), summ1 = _mm256_extract_epi32(mp, 4);
                int32_t sumi0 = hsum_i32x8(_mm512_castsi512_si256(acc[r][p]));
                int32_t sumi1 = hsum_i32x8(_mm512_extracti64x4_epi64(acc[r][p], 1));
                float dall0 = xb->d[0] * wd, dmin0 = xb->d[0] * wm;
                float dall1 = xb->d[1] * wd, dmin1 = xb->d[1] * wm;
                sum[r][2 * p] = fmaf(dall0, (float)sumi0, sum[r][2 * p]);
                sum[r][2 * p] = fmaf(-dmin0, (float)summ0, sum[r][2 * p]);
                sum[r][2 * p + 1] = fmaf(dall1, (float)sumi1, sum[r][2 * p + 1]);
                sum[r][2 * p + 1] = fmaf(-dmin1, (float)summ1, sum[r][2 * p + 1]);
            }
        }
    }
    UNROLL
    for (int t = 0; t < 2 * NP; t++) {
        if (t >= nt)
            break;
        UNROLL
        for (int r = 0; r < VR; r++)
            if (r < nr)
                out[(size_t)t * os + (size_t)r] = sum[r][t];
    }
}

#define TILE_SHAPES(name, body)                                                                \
    TARGET static void name##_1(const uint8_t *w, size_t wr, int nr, const void *x,            \
                                int64_t nb, int nt, float *o, size_t os)                       \
    {                                                                                          \
        body(w, wr, nr, x, nb, nt, o, os, 1);                                                  \
    }                                                                                          \
    TARGET static void name##_2(const uint8_t *w, size_t wr, int nr, const void *x,            \
                                int64_t nb, int nt, float *o, size_t os)                       \
    {                                                                                          \
        body(w, wr, nr, x, nb, nt, o, os, 2);                                                  \
    }                                                                                          \
    TARGET static void name##_3(const uint8_t *w, size_t wr, int nr, const void *x,            \
                                int64_t nb, int nt, float *o, size_t os)                       \
    {                                                                                          \
        body(w, wr, nr, x, nb, nt, o, os, 3);                                                  \
    }                                                                                          \
    TARGET static void name##_4(const uint8_t *w, size_t wr, int nr, const void *x,            \
                                int64_t nb, int nt, float *o, size_t os)                       \
    {                                                                                          \
        body(w, wr, nr, x, nb, nt, o, os, 4);                                                  \
    }

TILE_SHAPES(tile_qk, tile_k)

typedef void (*tile_fn)(const uint8_t *w, size_t wr, int nr, const void *x, int64_t nb, int nt,
                        float *o, size_t os);
static const tile_fn tiles_qk[VP] = {tile_qk_1, tile_qk_2, tile_qk_3, tile_qk_4};

typedef struct {
    float *out;
    const uint8_t *w, *xa;
    size_t w_row, xa_row;
    int64_t rows, n_tok, nb, pairs;
    vnni_kblk *xp; /* repacked activations: pairs x nb super-blocks */
} vnni_ctx;

static void repack_task(void *vctx, int idx, int n)
{
    vnni_ctx *c = vctx;
    int64_t p0 = c->pairs * idx / n, p1 = c->pairs * (idx + 1) / n;
    repack_k(c->xp, c->xa, c->xa_row, c->n_tok, c->nb, p0, p1);
}

/* Contiguous ranges of whole 4-row groups per task, as the other matmul
 * paths split: the split never changes a result. */
static void tile_task(void *vctx, int idx, int n)
{
    vnni_ctx *c = vctx;
    int64_t groups = (c->rows + VR - 1) / VR;
    int64_t r0 = groups * idx / n * VR, r1 = SL_MIN(c->rows, groups * (idx + 1) / n * VR);
    const tile_fn *fns = tiles_qk;
    for (int64_t r = r0; r < r1; r += VR) {
        int nr = (int)SL_MIN((int64_t)VR, r1 - r);
        const uint8_t *wr = c->w + (size_t)r * c->w_row;
        for (int64_t p = 0; p < c->pairs; p += VP) {
            int np = (int)SL_MIN((int64_t)VP, c->pairs - p);
            int nt = (int)SL_MIN((int64_t)(2 * np), c->n_tok - 2 * p);
            fns[np - 1](wr, c->w_row, nr, c->xp + p * c->nb, c->nb, nt,
                        c->out + 2 * p * c->rows + r, (size_t)c->rows);
        }
    }
}

/* ---- Q8_0 repacked in 16-row groups (SL_KT_Q8_0_R16) ----
 * Lanes are the group's 16 rows: per block and token, 8 vpdpbusd of the
 * group's 8 quad registers (unsigned w + 128) against the token's 4-byte
 * activation quads broadcast (signed), starting from -128 * sum(x): the
 * exact block dot of every row at once. Then fma(dw * dx, dot, acc) per row
 * lane, which is the Q8_0 dot's own per-block step. */
#ifndef R16_PF
#define R16_PF 8
#endif
TARGET static ALWAYS_INLINE void r16_group(const sl_blk_q8_0_r16 *g, int64_t nb, const uint8_t *x,
                                           size_t x_row, const int32_t *csum, const float *xd,
                                           float *out, size_t os, const int NT)
{
    __m512 acc[8];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const sl_blk_q8_0_r16 *gb = g + b;
        /* one sequential stream per thread: software prefetch R16_PF blocks
         * ahead (all 9 lines of a block), or a lone stream falls short of
         * the core's share of memory bandwidth */
        UNROLL
        for (int l = 0; l < 9; l++)
            _mm_prefetch((const char *)(gb + R16_PF) + 64 * l, _MM_HINT_T0);
        __m512i dot[8];
        UNROLL
        for (int t = 0; t < NT; t++)
            dot[t] = _mm512_set1_epi32(csum[t * nb + b]);
        /* quad-major: consecutive vpdpbusd go to different tokens' sums, so
         * they do not wait on each other */
        UNROLL
        for (int q = 0; q < 8; q++) {
            __m512i wq = _mm512_loadu_si512(gb->q[q]);
            UNROLL
            for (int t = 0; t < NT; t++) {
                const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(x + (size_t)t * x_row) + b;
                int32_t quad;
                memcpy(&quad, xb->qs + 4 * q, 4);
                dot[t] = _mm512_dpbusd_epi32(dot[t], wq, _mm512_set1_epi32(quad));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb->d));
        UNROLL
        for (int t = 0; t < NT; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xd[t * nb + b])),
                                     _mm512_cvtepi32_ps(dot[t]), acc[t]);
    }
    UNROLL
    for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(out + (size_t)t * os, acc[t]);
}

/* Q4_0 in 16-row groups: the 4 packed quad registers give the low nibbles
 * (elements 4q..4q+3) and the high ones (16+4q..16+4q+3) as unsigned bytes
 * 0..15; the accumulator starts at -8 * sum(x), the nibbles' offset. */
TARGET static ALWAYS_INLINE void r16q4_group(const sl_blk_q4_0_r16 *g, int64_t nb,
                                             const uint8_t *x, size_t x_row, const int32_t *csum,
                                             const float *xd, float *out, size_t os, const int NT)
{
    __m512 acc[8];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        const sl_blk_q4_0_r16 *gb = g + b;
        UNROLL
        for (int l = 0; l < 5; l++)
            _mm_prefetch((const char *)(gb + R16_PF) + 64 * l, _MM_HINT_T0);
        __m512i lo[4], hi[4], dot[8];
        UNROLL
        for (int q = 0; q < 4; q++) {
            __m512i p = _mm512_loadu_si512(gb->p[q]);
            lo[q] = _mm512_and_si512(p, m4);
            hi[q] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
        }
        UNROLL
        for (int t = 0; t < NT; t++)
            dot[t] = _mm512_set1_epi32(csum[t * nb + b]);
        UNROLL
        for (int q = 0; q < 4; q++) {
            UNROLL
            for (int t = 0; t < NT; t++) {
                const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(x + (size_t)t * x_row) + b;
                int32_t q0, q1;
                memcpy(&q0, xb->qs + 4 * q, 4);
                memcpy(&q1, xb->qs + 16 + 4 * q, 4);
                dot[t] = _mm512_dpbusd_epi32(dot[t], lo[q], _mm512_set1_epi32(q0));
                dot[t] = _mm512_dpbusd_epi32(dot[t], hi[q], _mm512_set1_epi32(q1));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb->d));
        UNROLL
        for (int t = 0; t < NT; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xd[t * nb + b])),
                                     _mm512_cvtepi32_ps(dot[t]), acc[t]);
    }
    UNROLL
    for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(out + (size_t)t * os, acc[t]);
}

/* Q4_K in 16-row groups (SL_KT_Q4_K_R16): per super-block and token, sub-block
 * j's 8 quad registers (the low or high nibbles of pair j / 2, unsigned 0..15)
 * against the token's quads of sub-block j broadcast give s_j for the 16 row
 * lanes; sumi += sc_j * s_j (the row lanes' scales widened from bytes);
 * summ = sum_j m_j * bsum_j by 4 vpdpwssd of the rows' int16 min pairs
 * against the token's int16 bsum pairs; then dot_q4_K's two fused
 * multiply-adds per row lane. Ranges: |s_j| <= 32 * 15 * 127,
 * |sumi| <= 8 * 63 * 32 * 15 * 127 and |summ| <= 8 * 63 * 32 * 127: int32,
 * exact in any order. */
#ifndef R16K_PF
#define R16K_PF 2 /* super-blocks ahead (2368 bytes each) */
#endif
#ifndef R16K_PAIRED
#define R16K_PAIRED 2
#endif
TARGET static ALWAYS_INLINE void r16k_group(const sl_blk_q4_K_r16 *g, int64_t nb,
                                            const uint8_t *x, size_t x_row, const int32_t *bsp,
                                            const float *xd, float *out, size_t os, const int NT)
{
    __m512 acc[8];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        const sl_blk_q4_K_r16 *gb = g + b;
        const char *pf = (const char *)(gb + R16K_PF);
        __m512i sumi[8], s[8];
        if (NT <= R16K_PAIRED) {
            /* few tokens: both nibbles of a pair from one load (registers
             * for 2 * NT sub-block sums) */
            UNROLL
            for (int k = 0; k < 4; k++) {
                UNROLL
                for (int l = 0; l < 10; l++)
                    if (10 * k + l < 37)
                        _mm_prefetch(pf + 64 * (10 * k + l), _MM_HINT_T0);
                __m512i s1[8];
                UNROLL
                for (int t = 0; t < NT; t++)
                    s[t] = s1[t] = _mm512_setzero_si512();
                UNROLL
                for (int q = 0; q < 8; q++) {
                    __m512i p = _mm512_loadu_si512(gb->p[k][q]);
                    __m512i lo = _mm512_and_si512(p, m4);
                    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
                    UNROLL
                    for (int t = 0; t < NT; t++) {
                        const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
                        int32_t q0, q1;
                        memcpy(&q0, xb->qs + 64 * k + 4 * q, 4);
                        memcpy(&q1, xb->qs + 64 * k + 32 + 4 * q, 4);
                        s[t] = _mm512_dpbusd_epi32(s[t], lo, _mm512_set1_epi32(q0));
                        s1[t] = _mm512_dpbusd_epi32(s1[t], hi, _mm512_set1_epi32(q1));
                    }
                }
                __m512i sc0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)gb->sc[2 * k]));
                __m512i sc1 =
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)gb->sc[2 * k + 1]));
                UNROLL
                for (int t = 0; t < NT; t++) {
                    __m512i v = _mm512_add_epi32(_mm512_mullo_epi32(sc0, s[t]),
                                                 _mm512_mullo_epi32(sc1, s1[t]));
                    sumi[t] = k ? _mm512_add_epi32(sumi[t], v) : v;
                }
            }
        } else
        UNROLL
        for (int j = 0; j < 8; j++) {
            /* the next super-block's 37 lines, spread over the sub-blocks */
            UNROLL
            for (int l = 0; l < 5; l++)
                if (5 * j + l < 37)
                    _mm_prefetch(pf + 64 * (5 * j + l), _MM_HINT_T0);
            UNROLL
            for (int t = 0; t < NT; t++)
                s[t] = _mm512_setzero_si512();
            UNROLL
            for (int q = 0; q < 8; q++) {
                __m512i p = _mm512_loadu_si512(gb->p[j / 2][q]);
                __m512i w = j & 1 ? _mm512_and_si512(_mm512_srli_epi16(p, 4), m4)
                                  : _mm512_and_si512(p, m4);
                UNROLL
                for (int t = 0; t < NT; t++) {
                    const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
                    int32_t quad;
                    memcpy(&quad, xb->qs + 32 * j + 4 * q, 4);
                    s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(quad));
                }
            }
            __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)gb->sc[j]));
            UNROLL
            for (int t = 0; t < NT; t++)
                sumi[t] = j ? _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sc, s[t]))
                            : _mm512_mullo_epi32(sc, s[t]);
        }
        __m512i mn[4];
        UNROLL
        for (int i = 0; i < 4; i++)
            mn[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)gb->m[i]));
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb->d));
        __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb->dmin));
        UNROLL
        for (int t = 0; t < NT; t++) {
            const int32_t *bp = bsp + ((size_t)t * (size_t)nb + (size_t)b) * 4;
            __m512i summ = _mm512_setzero_si512();
            UNROLL
            for (int i = 0; i < 4; i++)
                summ = _mm512_dpwssd_epi32(summ, mn[i], _mm512_set1_epi32(bp[i]));
            __m512 xdv = _mm512_set1_ps(xd[t * nb + b]);
            /* dall = x.d * d, dmin = x.d * dmin; sum = fma(dall, sumi, sum),
             * then fma(-dmin, summ, sum): fnmadd is -(a * b) + c, the same
             * single rounding */
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(xdv, dw), _mm512_cvtepi32_ps(sumi[t]), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(xdv, dm), _mm512_cvtepi32_ps(summ), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(out + (size_t)t * os, acc[t]);
}

/* Q6_K in 16-row groups (SL_KT_Q6_K_R16): per super-block, half h and
 * 32-element group g, the codes of quad q for the 16 row lanes are rebuilt
 * from one ql and one qh load, (ql nibble) | (2 qh bits) << 4 = 0..63, the
 * unsigned operand of vpdpbusd against the token's quad broadcast. Each
 * 16-element half of a group starts from -32 * its bsum (the codes' offset),
 * so after 4 quads it is dot_q6_K's s0 or s1 exactly; sumi += its int8 scale
 * (sign-extended per row lane) times it; then the dot's one fused
 * multiply-add per row lane. Ranges: |half| <= 16 * 63 * 127 + 32 * 16 * 127
 * and |sumi| <= 16 * 128 * 32 * 16 * 127: int32, exact in any order. */
#ifndef R16Q6_PF
#define R16Q6_PF 2 /* super-blocks ahead (3392 bytes each) */
#endif
#ifndef R16Q6_SHARED
#define R16Q6_SHARED 2
#endif
TARGET static ALWAYS_INLINE void r16q6_group(const sl_blk_q6_K_r16 *g, int64_t nb,
                                             const uint8_t *x, size_t x_row, const int32_t *cs,
                                             const float *xd, float *out, size_t os,
                                             const int NT)
{
    __m512 acc[8];
    UNROLL
    for (int t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++) {
        const sl_blk_q6_K_r16 *gb = g + b;
        const char *pf = (const char *)(gb + R16Q6_PF);
        __m512i sumi[8];
        UNROLL
        for (int t = 0; t < NT; t++)
            sumi[t] = _mm512_setzero_si512();
        if (NT <= R16Q6_SHARED) {
            /* few tokens: the 4 groups of a half from one ql pair and one
             * qh load (registers for 4 * NT half sums) */
            UNROLL
            for (int h = 0; h < 2; h++) {
                UNROLL
                for (int half = 0; half < 2; half++) {
                    UNROLL
                    for (int l = 0; l < 14; l++)
                        if (14 * (2 * h + half) + l < 53)
                            _mm_prefetch(pf + 64 * (14 * (2 * h + half) + l), _MM_HINT_T0);
                    __m512i s[4][2];
                    UNROLL
                    for (int gr = 0; gr < 4; gr++) {
                        UNROLL
                        for (int t = 0; t < NT; t++)
                            s[gr][t] = _mm512_set1_epi32(
                                cs[((size_t)t * (size_t)nb + (size_t)b) * 16 + 8 * h + 2 * gr + half]);
                    }
                    UNROLL
                    for (int qq = 0; qq < 4; qq++) {
                        int q = 4 * half + qq;
                        __m512i l0 = _mm512_loadu_si512(gb->ql[h][0][q]);
                        __m512i l1 = _mm512_loadu_si512(gb->ql[h][1][q]);
                        __m512i hb = _mm512_loadu_si512(gb->qh[h][q]);
                        __m512i code[4];
                        code[0] = _mm512_ternarylogic_epi32(
                            l0, m4, _mm512_and_si512(_mm512_slli_epi16(hb, 4), m30), 0xEA);
                        code[1] = _mm512_ternarylogic_epi32(
                            l1, m4, _mm512_and_si512(_mm512_slli_epi16(hb, 2), m30), 0xEA);
                        code[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l0, 4), m4,
                                                            _mm512_and_si512(hb, m30), 0xEA);
                        code[3] = _mm512_ternarylogic_epi32(
                            _mm512_srli_epi16(l1, 4), m4,
                            _mm512_and_si512(_mm512_srli_epi16(hb, 2), m30), 0xEA);
                        UNROLL
                        for (int gr = 0; gr < 4; gr++) {
                            UNROLL
                            for (int t = 0; t < NT; t++) {
                                const sl_blk_q8_K *xb =
                                    (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
                                int32_t quad;
                                memcpy(&quad, xb->qs + 128 * h + 32 * gr + 4 * q, 4);
                                s[gr][t] = _mm512_dpbusd_epi32(s[gr][t], code[gr],
                                                               _mm512_set1_epi32(quad));
                            }
                        }
                    }
                    UNROLL
                    for (int gr = 0; gr < 4; gr++) {
                        __m512i sc = _mm512_cvtepi8_epi32(
                            _mm_loadu_si128((const __m128i *)gb->sc[8 * h + 2 * gr + half]));
                        UNROLL
                        for (int t = 0; t < NT; t++)
                            sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sc, s[gr][t]));
                    }
                }
            }
        } else
        UNROLL
        for (int h = 0; h < 2; h++) {
            UNROLL
            for (int gr = 0; gr < 4; gr++) {
                /* the next super-blocks' 53 lines, 7 per group */
                UNROLL
                for (int l = 0; l < 7; l++)
                    if (7 * (4 * h + gr) + l < 53)
                        _mm_prefetch(pf + 64 * (7 * (4 * h + gr) + l), _MM_HINT_T0);
                UNROLL
                for (int half = 0; half < 2; half++) {
                    int i = 8 * h + 2 * gr + half; /* scale and bsum index */
                    __m512i s[8];
                    UNROLL
                    for (int t = 0; t < NT; t++)
                        s[t] = _mm512_set1_epi32(cs[((size_t)t * (size_t)nb + (size_t)b) * 16 + i]);
                    UNROLL
                    for (int qq = 0; qq < 4; qq++) {
                        int q = 4 * half + qq;
                        __m512i lo = _mm512_loadu_si512(gb->ql[h][gr & 1][q]);
                        __m512i hi = _mm512_loadu_si512(gb->qh[h][q]);
                        if (gr >= 2)
                            lo = _mm512_srli_epi16(lo, 4);
                        /* bits 2gr, 2gr + 1 of each byte to bits 4, 5 (the
                         * 16-bit shifts move no bit into bits 4, 5 of the
                         * other byte) */
                        if (gr == 0)
                            hi = _mm512_slli_epi16(hi, 4);
                        else if (gr == 1)
                            hi = _mm512_slli_epi16(hi, 2);
                        else if (gr == 3)
                            hi = _mm512_srli_epi16(hi, 2);
                        hi = _mm512_and_si512(hi, m30);
                        /* (lo & 0x0F) | hi: imm 0xEA = (A & B) | C with A = lo, B = m4, C = hi */
                        __m512i code = _mm512_ternarylogic_epi32(lo, m4, hi, 0xEA);
                        UNROLL
                        for (int t = 0; t < NT; t++) {
                            const sl_blk_q8_K *xb =
                                (const sl_blk_q8_K *)(x + (size_t)t * x_row) + b;
                            int32_t quad;
                            memcpy(&quad, xb->qs + 128 * h + 32 * gr + 4 * q, 4);
                            s[t] = _mm512_dpbusd_epi32(s[t], code, _mm512_set1_epi32(quad));
                        }
                    }
                    __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)gb->sc[i]));
                    UNROLL
                    for (int t = 0; t < NT; t++)
                        sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(sc, s[t]));
                }
            }
        }
        __m512 dw = _mm512_loadu_ps(gb->d);
        UNROLL
        for (int t = 0; t < NT; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(xd[t * nb + b]), dw),
                                     _mm512_cvtepi32_ps(sumi[t]), acc[t]);
    }
    UNROLL
    for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(out + (size_t)t * os, acc[t]);
}

#define R16_SHAPE(NT)                                                                          \
    TARGET static void r16_group_##NT(const void *g, int64_t nb, const uint8_t *x,             \
                                      size_t x_row, const int32_t *csum, const float *xd,       \
                                      float *out, size_t os)                                    \
    {                                                                                          \
        r16_group(g, nb, x, x_row, csum, xd, out, os, NT);                                     \
    }                                                                                          \
    TARGET static void r16q4_group_##NT(const void *g, int64_t nb, const uint8_t *x,           \
                                        size_t x_row, const int32_t *csum, const float *xd,     \
                                        float *out, size_t os)                                  \
    {                                                                                          \
        r16q4_group(g, nb, x, x_row, csum, xd, out, os, NT);                                   \
    }                                                                                          \
    TARGET static void r16k_group_##NT(const void *g, int64_t nb, const uint8_t *x,            \
                                       size_t x_row, const int32_t *bsp, const float *xd,      \
                                       float *out, size_t os)                                  \
    {                                                                                          \
        r16k_group(g, nb, x, x_row, bsp, xd, out, os, NT);                                     \
    }                                                                                          \
    TARGET static void r16q6_group_##NT(const void *g, int64_t nb, const uint8_t *x,           \
                                        size_t x_row, const int32_t *cs, const float *xd,       \
                                        float *out, size_t os)                                  \
    {                                                                                          \
        r16q6_group(g, nb, x, x_row, cs, xd, out, os, NT);                                     \
    }
R16_SHAPE(1)
R16_SHAPE(2)
R16_SHAPE(3)
R16_SHAPE(4)
R16_SHAPE(5)
R16_SHAPE(6)
R16_SHAPE(7)
R16_SHAPE(8)

typedef void (*r16_fn)(const void *, int64_t, const uint8_t *, size_t, const int32_t *,
                       const float *, float *, size_t);

void sl_kernel_r16_group_vnni(int type, const void *g, int64_t nb, const uint8_t *x,
                              size_t x_row, const int32_t *csum, const float *xd, int nt,
                              float *out, size_t os)
{
    static const r16_fn q8[8] = {r16_group_1, r16_group_2, r16_group_3, r16_group_4,
                                 r16_group_5, r16_group_6, r16_group_7, r16_group_8};
    static const r16_fn q4[8] = {r16q4_group_1, r16q4_group_2, r16q4_group_3, r16q4_group_4,
                                 r16q4_group_5, r16q4_group_6, r16q4_group_7, r16q4_group_8};
    (type == SL_KT_Q4_0_R16 ? q4 : q8)[nt - 1](g, nb, x, x_row, csum, xd, out, os);
}

void sl_kernel_r16k_group_vnni(const void *g, int64_t nb, const uint8_t *x, size_t x_row,
                               const int32_t *bsp, const float *xd, int nt, float *out,
                               size_t os)
{
    static const r16_fn k[8] = {r16k_group_1, r16k_group_2, r16k_group_3, r16k_group_4,
                                r16k_group_5, r16k_group_6, r16k_group_7, r16k_group_8};
    k[nt - 1](g, nb, x, x_row, bsp, xd, out, os);
}

void sl_kernel_r16q6_group_vnni(const void *g, int64_t nb, const uint8_t *x, size_t x_row,
                                const int32_t *cs, const float *xd, int nt, float *out,
                                size_t os)
{
    static const r16_fn k[8] = {r16q6_group_1, r16q6_group_2, r16q6_group_3, r16q6_group_4,
                                r16q6_group_5, r16q6_group_6, r16q6_group_7, r16q6_group_8};
    k[nt - 1](g, nb, x, x_row, cs, xd, out, os);
}

int sl_kernel_matmul_vnni(float *out, int wtype, int64_t rows, int64_t cols, const void *w,
                          size_t w_row, const uint8_t *xa, size_t xa_row, int64_t n_tok,
                          sl_pool *pool)
{
    if (wtype != SL_KT_Q4_K)
        return SL_EUNSUPPORTED;
    vnni_ctx c = {.out = out, .w = w, .xa = xa, .w_row = w_row, .xa_row = xa_row, .rows = rows,
                  .n_tok = n_tok, .nb = cols / 256, .pairs = (n_tok + 1) / 2};
    if ((uint64_t)c.pairs * (uint64_t)c.nb > SIZE_MAX / sizeof(vnni_kblk))
        return SL_EINVAL;
    c.xp = sl_malloc((size_t)(c.pairs * c.nb) * sizeof(vnni_kblk));
    if (!c.xp)
        return SL_ENOMEM;
    sl_pool_run(pool, repack_task, &c, (int)SL_MIN(c.pairs, (int64_t)sl_pool_threads(pool)));
    int tasks = (int)SL_MIN((rows + VR - 1) / VR, (int64_t)sl_pool_threads(pool) * 4);
    sl_pool_run(pool, tile_task, &c, tasks);
    sl_free(c.xp);
    return 0;
}
#endif
