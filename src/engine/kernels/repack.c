/* Load-time weight repacking (SL_KT_Q8_0_R16, SL_KT_Q4_0_R16) and the
 * matmul over it.
 *
 * Why: the Q8_0 and Q4_0 dots are, per block, one exact integer dot and one
 * fused multiply-add. In the file's row-major layout a SIMD register holds 32
 * elements of ONE row, so every block's integer sum must be reduced across
 * lanes before its multiply-add. Repacked so that the 16 lanes of a 512-bit
 * register are 16 rows, a block costs 8 vpdpbusd per token for 16 rows and
 * one multiply-add per row lane, with no reduction: several times fewer
 * instructions for a batch of tokens, and decode that is bound by memory,
 * not instructions. The numbers are the Q8_0 dot's exactly. */
#include "engine/kernels/kernels_impl.h"

#include <math.h>
#include <string.h>

#define R16 16

int sl_kernel_repack(int type, const void *w, int64_t rows, int64_t cols, void **out,
                     int *out_type)
{
    *out = NULL;
    if ((type != SL_KT_Q8_0 && type != SL_KT_Q4_0) || rows <= 0 || rows % R16 || cols <= 0 ||
        cols % 32 || sl_kernel_get_isa() != SL_KISA_AVX512)
        return SL_EUNSUPPORTED;
    bool q4 = type == SL_KT_Q4_0;
    size_t gb = q4 ? sizeof(sl_blk_q4_0_r16) : sizeof(sl_blk_q8_0_r16);
    int64_t nb = cols / 32, groups = rows / R16;
    if ((uint64_t)groups > SIZE_MAX / gb / (uint64_t)nb)
        return SL_EINVAL;
    uint8_t *dst = sl_malloc((size_t)(groups * nb) * gb);
    if (!dst)
        return SL_ENOMEM;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < nb; b++) {
            if (q4) {
                sl_blk_q4_0_r16 *o = (sl_blk_q4_0_r16 *)dst + g * nb + b;
                for (int r = 0; r < R16; r++) {
                    const sl_blk_q4_0 *blk = (const sl_blk_q4_0 *)w + (g * R16 + r) * nb + b;
                    o->d[r] = blk->d;
                    for (int q = 0; q < 4; q++)
                        memcpy(o->p[q][r], blk->qs + 4 * q, 4);
                }
            } else {
                sl_blk_q8_0_r16 *o = (sl_blk_q8_0_r16 *)dst + g * nb + b;
                for (int r = 0; r < R16; r++) {
                    const sl_blk_q8_0 *blk = (const sl_blk_q8_0 *)w + (g * R16 + r) * nb + b;
                    o->d[r] = blk->d;
                    for (int q = 0; q < 8; q++)
                        for (int k = 0; k < 4; k++)
                            o->q[q][r][k] = (uint8_t)blk->qs[4 * q + k] ^ 0x80u;
                }
            }
        }
    *out = dst;
    *out_type = q4 ? SL_KT_Q4_0_R16 : SL_KT_Q8_0_R16;
    return 0;
}

typedef struct {
    float *out;
    const uint8_t *w;   /* groups of nb blocks of gb bytes */
    size_t gb;
    int type;
    const uint8_t *xa; /* Q8_0 activation rows */
    size_t xa_row;
    const int32_t *csum; /* [n_tok][nb]: -128 (Q8_0) or -8 (Q4_0) * sum of the block's codes */
    const float *xd;     /* [n_tok][nb]: each block's scale */
    int64_t rows, nb, n_tok;
    bool wide;
} r16_ctx;

/* Weight k of row r in block gb of a group (the value, not the stored byte). */
static int r16_weight(const void *gb, bool q4, int r, int k)
{
    if (!q4)
        return (int8_t)(((const sl_blk_q8_0_r16 *)gb)->q[k / 4][r][k % 4] ^ 0x80u);
    uint8_t byte = ((const sl_blk_q4_0_r16 *)gb)->p[(k % 16) / 4][r][k % 4];
    return (k < 16 ? byte & 0xF : byte >> 4) - 8;
}

/* The reference: the same per-row, per-block steps as the Q8_0/Q4_0 dot. */
static void r16_group_scalar(const uint8_t *g, size_t gbytes, bool q4, int64_t nb,
                             const uint8_t *x, size_t x_row, int nt, float *out, size_t os)
{
    for (int t = 0; t < nt; t++) {
        const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(x + (size_t)t * x_row);
        for (int r = 0; r < R16; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *gb = g + (size_t)b * gbytes;
                int32_t p = 0;
                for (int k = 0; k < 32; k++)
                    p += r16_weight(gb, q4, r, k) * xb[b].qs[k];
                uint16_t dh;
                memcpy(&dh, gb + 2 * (size_t)r, 2); /* d[16] opens both layouts */
                float d = sl_kernel_fp16_to_f32(dh) * sl_kernel_fp16_to_f32(xb[b].d);
                acc = fmaf(d, (float)p, acc);
            }
            out[(size_t)t * os + (size_t)r] = acc;
        }
    }
}

/* Task idx of n: a contiguous range of 16-row groups, each against every
 * token in tiles of 8 while the group's blocks stay in cache. */
static void r16_task(void *vctx, int idx, int n)
{
    r16_ctx *c = vctx;
    int64_t groups = c->rows / R16;
    for (int64_t g = groups * idx / n; g < groups * (idx + 1) / n; g++) {
        const uint8_t *wg = c->w + (size_t)(g * c->nb) * c->gb;
        for (int64_t t = 0; t < c->n_tok; t += 8) {
            int nt = (int)SL_MIN((int64_t)8, c->n_tok - t);
            float *o = c->out + t * c->rows + g * R16;
            const uint8_t *x = c->xa + (size_t)t * c->xa_row;
#if defined(__x86_64__)
            if (c->wide) {
                sl_kernel_r16_group_vnni(c->type, wg, c->nb, x, c->xa_row, c->csum + t * c->nb,
                                         c->xd + t * c->nb, nt, o, (size_t)c->rows);
                continue;
            }
#endif
            r16_group_scalar(wg, c->gb, c->type == SL_KT_Q4_0_R16, c->nb, x, c->xa_row, nt, o,
                             (size_t)c->rows);
        }
    }
}

int sl_kernel_matmul_r16(float *out, int type, int64_t rows, int64_t cols, const void *w,
                         const float *x, int64_t n_tok, sl_pool *pool)
{
    if (rows % R16 || cols % 32 || rows > INT32_MAX || cols > INT32_MAX || n_tok > INT32_MAX)
        return SL_EINVAL;
    bool q4 = type == SL_KT_Q4_0_R16;
    r16_ctx c = {.out = out, .w = w, .rows = rows, .nb = cols / 32, .n_tok = n_tok, .type = type,
                 .gb = q4 ? sizeof(sl_blk_q4_0_r16) : sizeof(sl_blk_q8_0_r16),
                 .wide = sl_kernel_get_isa() == SL_KISA_AVX512};
    c.xa_row = (size_t)c.nb * sizeof(sl_blk_q8_0);
    if ((uint64_t)n_tok > SIZE_MAX / (c.xa_row + (size_t)c.nb * 8))
        return SL_EINVAL;
    uint8_t *xa = sl_malloc((size_t)n_tok * c.xa_row);
    int32_t *csum = sl_malloc((size_t)(n_tok * c.nb) * sizeof(int32_t));
    float *xd = sl_malloc((size_t)(n_tok * c.nb) * sizeof(float));
    if (!xa || !csum || !xd) {
        sl_free(xa);
        sl_free(csum);
        sl_free(xd);
        return SL_ENOMEM;
    }
    for (int64_t t = 0; t < n_tok; t++) {
        sl_kernel_quantize_row(SL_KT_Q8_0, x + t * cols, xa + (size_t)t * c.xa_row, cols);
        const sl_blk_q8_0 *xb = (const sl_blk_q8_0 *)(xa + (size_t)t * c.xa_row);
        for (int64_t b = 0; b < c.nb; b++) {
            int32_t s = 0;
            for (int k = 0; k < 32; k++)
                s += xb[b].qs[k];
            csum[t * c.nb + b] = (q4 ? -8 : -128) * s;
            xd[t * c.nb + b] = sl_kernel_fp16_to_f32(xb[b].d);
        }
    }
    c.xa = xa;
    c.csum = csum;
    c.xd = xd;
    int tasks = (int)SL_MIN(rows / R16, (int64_t)sl_pool_threads(pool) * 4);
    sl_pool_run(pool, r16_task, &c, tasks);
    sl_free(xa);
    sl_free(csum);
    sl_free(xd);
    return 0;
}
