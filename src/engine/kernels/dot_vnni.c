/* AVX-512 VNNI kernels, bit for bit the numbers of the dots (kernels.h):
 *
 * - Q8_0 repacked in 16-row groups (SL_KT_Q8_0_R16, repack.c): lanes are
 *   rows, one exact int32 block dot per row and token, then the dot's
 *   fma(dw * dx, dot, acc) per block.
 * - Q4_0 and Q4_K for two or more tokens (batched decode steps, prefill
 *   chunks): one 512-bit register holds the 8 int32 lanes of two tokens
 *   (tokens 2p and 2p+1 of a pair in its low and high halves) against one
 *   weight row, so a tile of 4 rows x 4 pairs (8 tokens) keeps 16
 *   accumulators in registers. The activations are repacked once per matmul.
 *   Q4_0 keeps the contract's 8 lanes (lane i = the exact integer sum over
 *   elements 4i..4i+3, then acc = fma(fp32(d_w) * fp32(d_x), lane, acc));
 *   the nibbles (0..15) are vpdpbusd's unsigned side, the signed activation
 *   bytes the other, and -8 * sum(x) per lane (the nibbles' offset) is
 *   precomputed per token and block. vpdpbusd gives the same exact lane sums
 *   as the AVX2 maddubs + madd pair.
 * - Q4_0, one token (decode): two weight rows per register.
 * Integer ranges: |x| <= 127, so a Q8_0 block dot is at most 32 * 255 * 128
 * and a Q4_0 lane at most 4 * 15 * 127 (+ 4 * 8 * 127): far inside int32,
 * and vpdpbusd (not the saturating form) wraps nothing. */
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

/* Per pair and block, 64 bytes of activation bytes, 16 f32 scales and (Q4_0)
 * 16 int32 corrections: one cache line each. */
typedef struct {
    uint8_t q[64];
    float d[16];
    int32_t c[16];
} vnni_xblk;

TARGET static ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Token tok of the pair block: its 32 activation bytes and scale. */
static const sl_blk_q8_0 *xblk(const uint8_t *xa, size_t xa_row, int64_t tok, int64_t b)
{
    return (const sl_blk_q8_0 *)(xa + (size_t)tok * xa_row) + b;
}

/* Repacks Q8_0 activation rows (n_tok of them, nb blocks each) into pairs:
 * out[p * nb + b], with the -8 * sum(x) lane corrections for Q4_0. An odd
 * last token is paired with itself (the duplicate results are not stored). */
TARGET static void repack(vnni_xblk *out, const uint8_t *xa, size_t xa_row, int64_t n_tok,
                          int64_t nb, int64_t p0, int64_t p1)
{
    const __m512i eights = _mm512_set1_epi8(8);
    for (int64_t p = p0; p < p1; p++) {
        int64_t t0 = 2 * p, t1 = SL_MIN(2 * p + 1, n_tok - 1);
        for (int64_t b = 0; b < nb; b++) {
            vnni_xblk *o = out + p * nb + b;
            const sl_blk_q8_0 *a = xblk(xa, xa_row, t0, b), *c = xblk(xa, xa_row, t1, b);
            __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
            __m256i qc = _mm256_loadu_si256((const __m256i *)c->qs);
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qc, 1);
            _mm512_storeu_si512(o->q, q);
            __m512 d = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(_cvtsh_ss(a->d))),
                                          _mm256_set1_ps(_cvtsh_ss(c->d)), 1);
            _mm512_storeu_ps(o->d, d);
            __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, q);
            _mm512_storeu_si512(o->c, _mm512_sub_epi32(_mm512_setzero_si512(), s));
        }
    }
}

/* The Q4_0 weight block b of row w as its 32 nibbles (0..15) in element
 * order, in both halves, with its fp16 scale. */
TARGET static ALWAYS_INLINE __m512i wload(const uint8_t *w, int64_t b, float *d)
{
    const sl_blk_q4_0 *wb = (const sl_blk_q4_0 *)w + b;
    *d = _cvtsh_ss(wb->d);
    __m128i raw = _mm_loadu_si128((const __m128i *)wb->qs);
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
                                 _mm256_set1_epi8(0x0F));
    return _mm512_broadcast_i64x4(q);
}

/* out[t * os + r] for rows w (NR of them, a clamped copy of the last real
 * row fills a short group) and NP pairs of x; nt real tokens (2NP or 2NP-1). */
TARGET static ALWAYS_INLINE void tile(const uint8_t *w, size_t w_row, int nr, const void *xv,
                                      int64_t nb, int nt, float *out, size_t os, const int NP)
{
    const vnni_xblk *x = xv;
    __m512 acc[VR][VP];
    const uint8_t *wr[VR];
    UNROLL
    for (int r = 0; r < VR; r++) {
        wr[r] = w + (size_t)SL_MIN(r, nr - 1) * w_row;
        UNROLL
        for (int p = 0; p < NP; p++)
            acc[r][p] = _mm512_setzero_ps();
    }
    const size_t wb_bytes = sizeof(sl_blk_q4_0);
    for (int64_t b = 0; b < nb; b++) {
        __m512i xq[VP], xc[VP];
        __m512 xd[VP];
        UNROLL
        for (int p = 0; p < NP; p++) {
            const vnni_xblk *xb = x + p * nb + b;
            xq[p] = _mm512_loadu_si512(xb->q);
            xd[p] = _mm512_loadu_ps(xb->d);
            xc[p] = _mm512_loadu_si512(xb->c);
        }
        UNROLL
        for (int r = 0; r < VR; r++) {
            _mm_prefetch((const char *)(wr[r] + (size_t)(b + 8) * wb_bytes), _MM_HINT_T0);
            float dw;
            __m512i wq = wload(wr[r], b, &dw);
            __m512 dwv = _mm512_set1_ps(dw);
            UNROLL
            for (int p = 0; p < NP; p++) {
                __m512i lanes = _mm512_dpbusd_epi32(xc[p], wq, xq[p]);
                acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(dwv, xd[p]), _mm512_cvtepi32_ps(lanes),
                                            acc[r][p]);
            }
        }
    }
    UNROLL
    for (int p = 0; p < NP; p++)
        UNROLL
        for (int r = 0; r < VR; r++) {
            if (r >= nr)
                break;
            out[(size_t)(2 * p) * os + (size_t)r] = hsum8(_mm512_castps512_ps256(acc[r][p]));
            if (2 * p + 1 < nt)
                out[(size_t)(2 * p + 1) * os + (size_t)r] =
                    hsum8(_mm512_extractf32x8_ps(acc[r][p], 1));
        }
}

/* Q4_K against Q8_K, tokens paired as above. Per pair and super-block the
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

TILE_SHAPES(tile_q4, tile)
TILE_SHAPES(tile_qk, tile_k)

typedef void (*tile_fn)(const uint8_t *w, size_t wr, int nr, const void *x, int64_t nb, int nt,
                        float *o, size_t os);
static const tile_fn tiles_q4[VP] = {tile_q4_1, tile_q4_2, tile_q4_3, tile_q4_4};
static const tile_fn tiles_qk[VP] = {tile_qk_1, tile_qk_2, tile_qk_3, tile_qk_4};

typedef struct {
    float *out;
    const uint8_t *w, *xa;
    size_t w_row, xa_row;
    int64_t rows, n_tok, nb, pairs;
    uint8_t *xp;   /* repacked activations: pairs x nb blocks of xp_blk bytes */
    size_t xp_blk;
    int wtype;
} vnni_ctx;

static void repack_task(void *vctx, int idx, int n)
{
    vnni_ctx *c = vctx;
    int64_t p0 = c->pairs * idx / n, p1 = c->pairs * (idx + 1) / n;
    if (c->wtype == SL_KT_Q4_K)
        repack_k((vnni_kblk *)c->xp, c->xa, c->xa_row, c->n_tok, c->nb, p0, p1);
    else
        repack((vnni_xblk *)c->xp, c->xa, c->xa_row, c->n_tok, c->nb, p0, p1);
}

/* Contiguous ranges of whole 4-row groups per task, as the other matmul
 * paths split: the split never changes a result. */
static void tile_task(void *vctx, int idx, int n)
{
    vnni_ctx *c = vctx;
    int64_t groups = (c->rows + VR - 1) / VR;
    int64_t r0 = groups * idx / n * VR, r1 = SL_MIN(c->rows, groups * (idx + 1) / n * VR);
    const tile_fn *fns = c->wtype == SL_KT_Q4_K ? tiles_qk : tiles_q4;
    for (int64_t r = r0; r < r1; r += VR) {
        int nr = (int)SL_MIN((int64_t)VR, r1 - r);
        const uint8_t *wr = c->w + (size_t)r * c->w_row;
        for (int64_t p = 0; p < c->pairs; p += VP) {
            int np = (int)SL_MIN((int64_t)VP, c->pairs - p);
            int nt = (int)SL_MIN((int64_t)(2 * np), c->n_tok - 2 * p);
            fns[np - 1](wr, c->w_row, nr, c->xp + (size_t)(p * c->nb) * c->xp_blk, c->nb, nt,
                        c->out + 2 * p * c->rows + r, (size_t)c->rows);
        }
    }
}

/* ---- Q4_0, one token (decode): two weight rows per register ----
 * Lanes 0-7 of a register hold row r, lanes 8-15 row r + 1, against the one
 * activation block broadcast to both halves; -8 * sum(x) per lane is shared
 * by every row of the block. */

/* Rows r and r + 1 of block b as one register of 32 + 32 nibbles. */
TARGET static ALWAYS_INLINE __m512i w2load(const uint8_t *w0, const uint8_t *w1, int64_t b)
{
    const sl_blk_q4_0 *a = (const sl_blk_q4_0 *)w0 + b, *c = (const sl_blk_q4_0 *)w1 + b;
    __m256i raw = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)c->qs),
                                   _mm_loadu_si128((const __m128i *)a->qs));
    /* 128-bit lanes: raw0, raw1, raw0 >> 4, raw1 >> 4 -> raw0, raw0 >> 4, raw1, raw1 >> 4 */
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(raw), _mm256_srli_epi16(raw, 4), 1);
    v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

TARGET static ALWAYS_INLINE void tile1(const uint8_t *w, size_t w_row, int nr, const uint8_t *x,
                                       int64_t n, float *out)
{
    const uint8_t *wr[VR];
    UNROLL
    for (int r = 0; r < VR; r++)
        wr[r] = w + (size_t)SL_MIN(r, nr - 1) * w_row;
    const size_t bb = sizeof(sl_blk_q4_0);
    const __m512i off = _mm512_set1_epi8(8);
    const __m512i lo = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i hi = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = _mm512_setzero_ps();
    const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)x;
    for (int64_t b = 0; b < n / 32; b++) {
        UNROLL
        for (int r = 0; r < VR; r++)
            _mm_prefetch((const char *)(wr[r] + (size_t)b * bb + 2 * VR * w_row), _MM_HINT_T0);
        __m512i x2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb[b].qs));
        __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, x2));
        /* the 4 rows' fp16 scales in one conversion, times the activation's */
        __m128i h = _mm_setzero_si128();
        uint16_t d;
        memcpy(&d, wr[0] + (size_t)b * bb, 2);
        h = _mm_insert_epi16(h, d, 0);
        memcpy(&d, wr[1] + (size_t)b * bb, 2);
        h = _mm_insert_epi16(h, d, 1);
        memcpy(&d, wr[2] + (size_t)b * bb, 2);
        h = _mm_insert_epi16(h, d, 2);
        memcpy(&d, wr[3] + (size_t)b * bb, 2);
        h = _mm_insert_epi16(h, d, 3);
        __m512 dd = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(_cvtsh_ss(xb[b].d))));
        __m512i l01 = _mm512_dpbusd_epi32(corr, w2load(wr[0], wr[1], b), x2);
        __m512i l23 = _mm512_dpbusd_epi32(corr, w2load(wr[2], wr[3], b), x2);
        acc01 = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo, dd), _mm512_cvtepi32_ps(l01), acc01);
        acc23 = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi, dd), _mm512_cvtepi32_ps(l23), acc23);
    }
    float o[VR] = {hsum8(_mm512_castps512_ps256(acc01)), hsum8(_mm512_extractf32x8_ps(acc01, 1)),
                   hsum8(_mm512_castps512_ps256(acc23)), hsum8(_mm512_extractf32x8_ps(acc23, 1))};
    for (int r = 0; r < nr; r++)
        out[r] = o[r];
}

/* Tiles of the sl_kernel_tile_fn shape, one token at a time. */
TARGET static void tile1_q4_0(const void *w, size_t w_row, int nr, const void *x, size_t x_row,
                              int nt, int64_t n, float *out, size_t out_stride)
{
    for (int t = 0; t < nt; t++)
        tile1(w, w_row, nr, (const uint8_t *)x + (size_t)t * x_row, n, out + (size_t)t * out_stride);
}

sl_kernel_tile_fn sl_kernel_vnni_tile(int wtype)
{
    return wtype == SL_KT_Q4_0 ? tile1_q4_0 : NULL;
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

#define R16_SHAPE(NT)                                                                          \
    TARGET static void r16_group_##NT(const sl_blk_q8_0_r16 *g, int64_t nb, const uint8_t *x,  \
                                      size_t x_row, const int32_t *csum, const float *xd,       \
                                      float *out, size_t os)                                    \
    {                                                                                          \
        r16_group(g, nb, x, x_row, csum, xd, out, os, NT);                                     \
    }
R16_SHAPE(1)
R16_SHAPE(2)
R16_SHAPE(3)
R16_SHAPE(4)
R16_SHAPE(5)
R16_SHAPE(6)
R16_SHAPE(7)
R16_SHAPE(8)

void sl_kernel_r16_group_vnni(const sl_blk_q8_0_r16 *g, int64_t nb, const uint8_t *x,
                              size_t x_row, const int32_t *csum, const float *xd, int nt,
                              float *out, size_t os)
{
    static void (*const shapes[8])(const sl_blk_q8_0_r16 *, int64_t, const uint8_t *, size_t,
                                   const int32_t *, const float *, float *, size_t) = {
        r16_group_1, r16_group_2, r16_group_3, r16_group_4,
        r16_group_5, r16_group_6, r16_group_7, r16_group_8};
    shapes[nt - 1](g, nb, x, x_row, csum, xd, out, os);
}

int sl_kernel_matmul_vnni(float *out, int wtype, int64_t rows, int64_t cols, const void *w,
                          size_t w_row, const uint8_t *xa, size_t xa_row, int64_t n_tok,
                          sl_pool *pool)
{
    bool k = wtype == SL_KT_Q4_K;
    vnni_ctx c = {.out = out, .w = w, .xa = xa, .w_row = w_row, .xa_row = xa_row, .rows = rows,
                  .n_tok = n_tok, .nb = cols / (k ? 256 : 32), .pairs = (n_tok + 1) / 2,
                  .xp_blk = k ? sizeof(vnni_kblk) : sizeof(vnni_xblk), .wtype = wtype};
    if ((uint64_t)c.pairs * (uint64_t)c.nb > SIZE_MAX / c.xp_blk)
        return SL_EINVAL;
    c.xp = sl_malloc((size_t)(c.pairs * c.nb) * c.xp_blk);
    if (!c.xp)
        return SL_ENOMEM;
    sl_pool_run(pool, repack_task, &c, (int)SL_MIN(c.pairs, (int64_t)sl_pool_threads(pool)));
    int tasks = (int)SL_MIN((rows + VR - 1) / VR, (int64_t)sl_pool_threads(pool) * 4);
    sl_pool_run(pool, tile_task, &c, tasks);
    sl_free(c.xp);
    return 0;
}
#endif
