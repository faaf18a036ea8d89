/* Private to kernels/: GGUF block structs and the per-ISA function table.
 * Block structs mirror the file layout exactly (sizes asserted below); row
 * pointers must be 2-byte aligned (4 for F32 and Q8_K), which GGUF's 32-byte
 * tensor alignment and sl_malloc both give. */
#ifndef SL_KERNELS_IMPL_H
#define SL_KERNELS_IMPL_H

#include "engine/kernels/kernels.h"

#include <math.h>
#include <string.h>

typedef struct {
    uint16_t d;     /* fp16 scale */
    int8_t qs[32];  /* value = qs[i] * d */
} sl_blk_q8_0;

typedef struct {
    uint16_t d;     /* fp16 scale */
    uint8_t qs[16]; /* elem l: qs[l] & 15, elem l+16: qs[l] >> 4; value = (q - 8) * d */
} sl_blk_q4_0;

typedef struct {
    uint16_t d;         /* fp16 scale of the 6-bit sub-block scales */
    uint16_t dmin;      /* fp16 scale of the 6-bit sub-block mins */
    uint8_t scales[12]; /* 8 (scale, min) pairs of 6 bits, packed (see quant.c) */
    uint8_t qs[128];    /* 64-elem chunk c: byte 32c+l = elem 64c+l (low) | 64c+32+l (high) */
} sl_blk_q4_K;

typedef struct {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* one per 16 elements */
    uint16_t d;        /* fp16 super-block scale; value = d * scales[e/16] * (q - 32) */
} sl_blk_q6_K;

typedef struct {
    float d;           /* value = qs[i] * d */
    int8_t qs[256];    /* in [-127, 127] */
    int16_t bsums[16]; /* sum of qs over each 16 elements */
} sl_blk_q8_K;

_Static_assert(sizeof(sl_blk_q8_0) == SL_Q8_0_BYTES, "q8_0 layout");
_Static_assert(sizeof(sl_blk_q4_0) == SL_Q4_0_BYTES, "q4_0 layout");
_Static_assert(sizeof(sl_blk_q4_K) == SL_Q4_K_BYTES, "q4_K layout");
_Static_assert(sizeof(sl_blk_q6_K) == SL_Q6_K_BYTES, "q6_K layout");
_Static_assert(sizeof(sl_blk_q8_K) == SL_Q8_K_BYTES, "q8_K layout");

/* SL_KT_Q8_0_R16: a group of 16 rows is, block after block, the 16 rows'
 * fp16 scales, then for each 4-element quad q of the block the 4 bytes of
 * every row: q[quad][row][4], stored as w + 128 (w ^ 0x80, unsigned) so that
 * vpdpbusd can take them as its unsigned operand. Groups follow each other;
 * a group is cols / 32 of these blocks. */
typedef struct {
    uint16_t d[16];
    uint8_t q[8][16][4];
} sl_blk_q8_0_r16;
_Static_assert(sizeof(sl_blk_q8_0_r16) == 544, "q8_0_r16 layout");

/* SL_KT_Q4_0_R16: per block the 16 rows' fp16 scales, then for each quad q
 * < 4 the 4 bytes qs[4q..4q+3] of every row: p[q][row][4], as in the file
 * (low nibble = element 4q+k, high nibble = element 16+4q+k). Same size as
 * 16 Q4_0 blocks. */
typedef struct {
    uint16_t d[16];
    uint8_t p[4][16][4];
} sl_blk_q4_0_r16;
_Static_assert(sizeof(sl_blk_q4_0_r16) == 288, "q4_0_r16 layout");

/* SL_KT_Q4_K_R16: per super-block of a 16-row group (cols / 256 of them per
 * group, groups one after the other):
 *   d[row], dmin[row]  the rows' fp16 super-block scales;
 *   sc[j][row]         the 6-bit scale of sub-block j (0..7), decoded;
 *   m[i][row][2]       the 6-bit mins of sub-blocks 2i and 2i + 1, decoded
 *                      (one 32-bit lane per row once widened to int16, for
 *                      vpdpwssd against the bsum pair of a token);
 *   p[k][q][row][4]    the bytes qs[32k + 4q .. 32k + 4q + 3] of every row,
 *                      as in the file: low nibble = element 64k + 4q + i
 *                      (sub-block 2k), high nibble = element 64k + 32 + 4q + i
 *                      (sub-block 2k + 1). One 64-byte load gives quad q of
 *                      a sub-block pair for all 16 rows.
 * 2368 bytes: 37 cache lines, each field starting on a line boundary; 64
 * more than the 16 Q4_K blocks (the scales decoded: 256 bytes, not 192). */
typedef struct {
    uint16_t d[16];
    uint16_t dmin[16];
    uint8_t sc[8][16];
    uint8_t m[4][16][2];
    uint8_t p[4][8][16][4];
} sl_blk_q4_K_r16;
_Static_assert(sizeof(sl_blk_q4_K_r16) == 2368, "q4_K_r16 layout");

/* SL_KT_Q6_K_R16: per super-block of a 16-row group (cols / 256 of them per
 * group, groups one after the other):
 *   d[row]             the rows' fp16 super-block scales decoded to f32
 *                      (exact), so the header is one cache line;
 *   sc[i][row]         the int8 scale of elements 16i..16i+15, as in the file;
 *   ql[h][j][q][row][4] the bytes ql[64h + 32j + 4q .. + 3] of every row, as
 *                      in the file: low nibble = low 4 bits of element
 *                      128h + 32j + 4q + k, high nibble = those of element
 *                      128h + 32j + 64 + 4q + k (j = 0, 1);
 *   qh[h][q][row][4]   the bytes qh[32h + 4q .. + 3] of every row: bits 2g,
 *                      2g + 1 = the high 2 bits of element 128h + 32g + 4q + k.
 * One 64-byte load gives a quad of 4 elements' bits for all 16 rows; the
 * codes (0..63) are rebuilt in registers. 3392 bytes: 53 cache lines, every
 * field on a line boundary; 32 more than the 16 Q6_K blocks (the f32 d). */
typedef struct {
    float d[16];
    int8_t sc[16][16];
    uint8_t ql[2][2][8][16][4];
    uint8_t qh[2][8][16][4];
} sl_blk_q6_K_r16;
_Static_assert(sizeof(sl_blk_q6_K_r16) == 3392, "q6_K_r16 layout");

/* Dot of one weight row (w) with one activation row (x), n elements, n a
 * multiple of the block size. */
typedef float (*sl_kernel_dot_fn)(const void *w, const void *x, int64_t n);

/* A tile of dots: out[t * out_stride + r] = dot(w + r * w_row, x + t * x_row, n)
 * for r < nr (1..SL_TILE_R) and t < nt (1..SL_TILE_T). Every element is
 * BITWISE equal to the single dot of the same ISA: a tile only shares the
 * loads and the decoding of weight and activation blocks between elements,
 * each element keeps its own accumulators in the dot's order. */
#define SL_TILE_R 4
#define SL_TILE_T 2
typedef void (*sl_kernel_tile_fn)(const void *w, size_t w_row, int nr, const void *x,
                                  size_t x_row, int nt, int64_t n, float *out,
                                  size_t out_stride);

typedef struct {
    sl_kernel_dot_fn dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q4_K, dot_q6_K;
    sl_kernel_tile_fn tile_f32, tile_f16, tile_bf16, tile_q8_0, tile_q4_0, tile_q4_K, tile_q6_K;
    /* activation quantizers (nb blocks), bitwise equal across ISAs */
    void (*quant_q8_0)(const float *x, void *dst, int64_t nb);
    void (*quant_q8_K)(const float *x, void *dst, int64_t nb);
    void (*fp16_to_f32_row)(const uint16_t *src, float *dst, size_t n);
    void (*f32_to_fp16_row)(const float *src, uint16_t *dst, size_t n);
    /* out = silu(gate) * up with sl_kernel_exp_step's exp (kernels.h) */
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t n);
    /* softmax's middle pass: x[i] = exp(x[i] - max) with sl_kernel_exp_step's
     * exp; returns their sum, added in 8 lanes (element i to lane i % 8 for
     * the whole groups of 8, in order), the lanes by sl_kernel_hsum8, then
     * the tail in order */
    float (*exp_sum)(float *x, int64_t n, float max);
    /* attention over one head (kernels.h: sl_kernel_attn_scores/_accum) */
    void (*attn_scores)(float *out, const float *q, const float *k, size_t k_stride, int n,
                        int hd, float scale);
    void (*attn_accum)(float *o, const float *a, const float *v, size_t v_stride, int n, int hd);
    /* the same over f16 keys and values (widened exactly, same orders) */
    void (*attn_scores_f16)(float *out, const float *q, const uint16_t *k, size_t k_stride, int n,
                            int hd, float scale);
    void (*attn_accum_f16)(float *o, const float *a, const uint16_t *v, size_t v_stride, int n,
                           int hd);
} sl_kernel_vtab;

extern const sl_kernel_vtab sl_kernel_vtab_scalar;
#if defined(__x86_64__)
extern const sl_kernel_vtab sl_kernel_vtab_avx2;
#endif
/* Reference activation quantizers (quant.c), and the scale rule they share
 * with the AVX2 ones: the fp16 encoding of d >= 0 that decodes to >= d. */
void sl_kernel_quant_q8_0_ref(const float *x, void *dst, int64_t nb);
void sl_kernel_quant_q8_K_ref(const float *x, void *dst, int64_t nb);
uint16_t sl_kernel_fp16_up(float d);

#if defined(__x86_64__)
/* dot_vnni.c: out[t][r] for Q4_K weights against n_tok >= 1 activation rows
 * already quantized to Q8_K (xa), with AVX-512 VNNI; bitwise equal to the
 * dots. 0, SL_EINVAL, SL_EUNSUPPORTED (another type) or SL_ENOMEM. */
int sl_kernel_matmul_vnni(float *out, int wtype, int64_t rows, int64_t cols, const void *w,
                          size_t w_row, const uint8_t *xa, size_t xa_row, int64_t n_tok,
                          sl_pool *pool);
/* dot_vnni.c: out[t * os + r] for t < nt (1..8), r < 16: one 16-row group
 * of SL_KT_Q4_K_R16 weights (g, nb super-blocks) against Q8_K activation
 * rows x (x_row apart), with bsp[(t * nb + b) * 4 + i] = the int16 pair
 * (bsums[4i] + bsums[4i + 1], bsums[4i + 2] + bsums[4i + 3]) of token t's
 * super-block b (low half first) and xd[t * nb + b] = its scale d. */
void sl_kernel_r16k_group_vnni(const void *g, int64_t nb, const uint8_t *x, size_t x_row,
                               const int32_t *bsp, const float *xd, int nt, float *out,
                               size_t os);
/* dot_vnni.c: out[t * os + r] for t < nt (1..8), r < 16: one 16-row group
 * of SL_KT_Q6_K_R16 weights (g, nb super-blocks) against Q8_K activation
 * rows x (x_row apart), with cs[(t * nb + b) * 16 + i] = -32 * bsums[i] of
 * token t's super-block b (the codes' offset) and xd[t * nb + b] = its d. */
void sl_kernel_r16q6_group_vnni(const void *g, int64_t nb, const uint8_t *x, size_t x_row,
                                const int32_t *cs, const float *xd, int nt, float *out,
                                size_t os);
/* dot_vnni.c: out[t * os + r] for t < nt (1..8), r < 16: one 16-row group
 * of SL_KT_Q8_0_R16 or SL_KT_Q4_0_R16 weights (g, nb blocks) against Q8_0
 * activation rows x (x_row apart), with csum[t * nb + b] = -128 (Q8_0) or
 * -8 (Q4_0) times the sum of block b's codes and xd[t * nb + b] = its fp16
 * scale as f32. */
void sl_kernel_r16_group_vnni(int type, const void *g, int64_t nb, const uint8_t *x,
                              size_t x_row, const int32_t *csum, const float *xd, int nt,
                              float *out, size_t os);
#endif
/* True when the current ISA is SL_KISA_AVX512. */
bool sl_kernel_wide(void);

/* repack.c: sl_kernel_matmul for SL_KT_Q8_0_R16 / SL_KT_Q4_0_R16 /
 * SL_KT_Q4_K_R16 / SL_KT_Q6_K_R16 weights. */
int sl_kernel_matmul_r16(float *out, int type, int64_t rows, int64_t cols, const void *w,
                         const float *x, int64_t n_tok, sl_pool *pool);

/* The table of the current ISA. */
const sl_kernel_vtab *sl_kernel_vtab_get(void);
/* The dot kernel of the current ISA for a weight type, or NULL. */
sl_kernel_dot_fn sl_kernel_dot_for(const sl_kernel_vtab *vt, int wtype);
/* The tile kernel of the current ISA for a weight type, or NULL. */
sl_kernel_tile_fn sl_kernel_tile_for(const sl_kernel_vtab *vt, int wtype);

/* A tile made of single dots, for types without a dedicated tile kernel. */
#define SL_KERNEL_TILE_FROM_DOT(tile_name, dot_name)                                        \
    static void tile_name(const void *w, size_t w_row, int nr, const void *x, size_t x_row, \
                          int nt, int64_t n, float *out, size_t out_stride)                 \
    {                                                                                       \
        for (int t = 0; t < nt; t++)                                                        \
            for (int r = 0; r < nr; r++)                                                    \
                out[(size_t)t * out_stride + (size_t)r] =                                   \
                    dot_name((const uint8_t *)w + (size_t)r * w_row,                        \
                             (const uint8_t *)x + (size_t)t * x_row, n);                    \
    }

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K block. */
static inline void sl_kernel_q4k_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* exp(x) for the SwiGLU gate, in an order both ISAs follow (fmaf here, FMA
 * there), so the two are bitwise equal: x clamped to [-87.3, 88.3] (a NaN
 * stays NaN), n = round(x / ln 2) by the 1.5 * 2^23 trick, r = x - n ln 2 in
 * two fused steps (ln 2 split in a high part exact in float and the rest),
 * exp(r) by its degree-6 Taylor polynomial (|r| <= 0.347: truncation below
 * 1.2e-7 relative), times 2^n built in the exponent bits. Within 2 ulp of
 * expf over the range. */
#define SL_EXP_LO (-87.3f)
#define SL_EXP_HI 88.3f
#define SL_EXP_LOG2E 1.44269504f
#define SL_EXP_LN2_HI 0.693145752f
#define SL_EXP_LN2_LO 1.42860677e-6f
#define SL_EXP_ROUND 12582912.0f /* 1.5 * 2^23 */
static inline float sl_kernel_exp_step(float x)
{
    if (x != x)
        return x;
    x = x < SL_EXP_LO ? SL_EXP_LO : x;
    x = x > SL_EXP_HI ? SL_EXP_HI : x;
    float n = fmaf(x, SL_EXP_LOG2E, SL_EXP_ROUND) - SL_EXP_ROUND;
    float r = fmaf(-n, SL_EXP_LN2_HI, x);
    r = fmaf(-n, SL_EXP_LN2_LO, r);
    float p = fmaf(1.0f / 720, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* Fixed horizontal sum of 8 lanes; the AVX2 hsum does the same adds. */
static inline float sl_kernel_hsum8(const float a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

#endif
