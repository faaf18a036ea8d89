/* Load-time weight repacking (SL_KT_Q8_0_R16, SL_KT_Q4_0_R16,
 * SL_KT_Q4_K_R16, SL_KT_Q6_K_R16) and the matmul over it.
 *
 * Why: the Q8_0 and Q4_0 dots are, per block, one exact integer dot and one
 * fused multiply-add. In the file's row-major layout a SIMD register holds 32
 * elements of ONE row, so every block's integer sum must be reduced across
 * lanes before its multiply-add. Repacked so that the 16 lanes of a 512-bit
 * register are 16 rows, a block costs 8 vpdpbusd per token for 16 rows and
 * one multiply-add per row lane, with no reduction: several times fewer
 * instructions for a batch of tokens, and decode that is bound by memory,
 * not instructions. The numbers are the Q8_0 dot's exactly. Q4_K is the same
 * per super-block: 8 sub-block dots per row lane, their scaled sum and the
 * mins against the activation's block sums, then the dot's two fused
 * multiply-adds. Q6_K: per super-block the 16 half-group dots (codes 0..63
 * as vpdpbusd's unsigned operand, the -32 offset taken out as -32 times the
 * activation's 16-element block sums), each times its int8 scale, then the
 * dot's one fused multiply-add. */
#include "engine/kernels/kernels_impl.h"

#include <math.h>
#include <string.h>

#define R16 16

/* Elements per block and bytes per repacked block of an R16 type. */
static int64_t r16_block_elems(int rtype)
{
    return rtype == SL_KT_Q4_K_R16 || rtype == SL_KT_Q6_K_R16 ? 256 : 32;
}

static size_t r16_block_bytes(int rtype)
{
    return rtype == SL_KT_Q4_K_R16   ? sizeof(sl_blk_q4_K_r16)
           : rtype == SL_KT_Q6_K_R16 ? sizeof(sl_blk_q6_K_r16)
           : rtype == SL_KT_Q4_0_R16 ? sizeof(sl_blk_q4_0_r16)
                                     : sizeof(sl_blk_q8_0_r16);
}

int sl_kernel_repack_size(int type, int64_t rows, int64_t cols, size_t *bytes, int *out_type)
{
    int rt = type == SL_KT_Q8_0   ? SL_KT_Q8_0_R16
             : type == SL_KT_Q4_0 ? SL_KT_Q4_0_R16
             : type == SL_KT_Q4_K ? SL_KT_Q4_K_R16
             : type == SL_KT_Q6_K ? SL_KT_Q6_K_R16
                                  : -1;
    if (rt < 0 || rows <= 0 || rows % R16 || cols <= 0 || cols % r16_block_elems(rt) ||
        sl_kernel_get_isa() != SL_KISA_AVX512)
        return SL_EUNSUPPORTED;
    size_t gb = r16_block_bytes(rt);
    int64_t nb = cols / r16_block_elems(rt), groups = rows / R16;
    if ((uint64_t)groups > SIZE_MAX / gb / (uint64_t)nb)
        return SL_EINVAL;
    *bytes = (size_t)(groups * nb) * gb;
    *out_type = rt;
    return 0;
}

/* One (group, super-block) of Q4_K: blk[r] is row r's block. */
static void repack_q4_K(sl_blk_q4_K_r16 *o, const sl_blk_q4_K *const blk[R16])
{
    for (int r = 0; r < R16; r++) {
        o->d[r] = blk[r]->d;
        o->dmin[r] = blk[r]->dmin;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            sl_kernel_q4k_scale_min(blk[r]->scales, j, &sc, &m);
            o->sc[j][r] = (uint8_t)sc;
            o->m[j / 2][r][j % 2] = (uint8_t)m;
        }
        for (int k = 0; k < 4; k++)
            for (int q = 0; q < 8; q++)
                memcpy(o->p[k][q][r], blk[r]->qs + 32 * k + 4 * q, 4);
    }
}

/* One (group, super-block) of Q6_K: blk[r] is row r's block. */
static void repack_q6_K(sl_blk_q6_K_r16 *o, const sl_blk_q6_K *const blk[R16])
{
    for (int r = 0; r < R16; r++) {
        o->d[r] = sl_kernel_fp16_to_f32(blk[r]->d);
        for (int i = 0; i < 16; i++)
            o->sc[i][r] = blk[r]->scales[i];
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 8; q++) {
                memcpy(o->ql[h][0][q][r], blk[r]->ql + 64 * h + 4 * q, 4);
                memcpy(o->ql[h][1][q][r], blk[r]->ql + 64 * h + 32 + 4 * q, 4);
                memcpy(o->qh[h][q][r], blk[r]->qh + 32 * h + 4 * q, 4);
            }
    }
}

void sl_kernel_repack_into(int type, const void *w, int64_t rows, int64_t cols, void *dst)
{
    bool q4 = type == SL_KT_Q4_0;
    if (type == SL_KT_Q6_K) {
        int64_t nbk = cols / 256;
        for (int64_t g = 0; g < rows / R16; g++)
            for (int64_t b = 0; b < nbk; b++) {
                const sl_blk_q6_K *blk[R16];
                for (int r = 0; r < R16; r++)
                    blk[r] = (const sl_blk_q6_K *)w + (g * R16 + r) * nbk + b;
                repack_q6_K((sl_blk_q6_K_r16 *)dst + g * nbk + b, blk);
            }
        return;
    }
    if (type == SL_KT_Q4_K) {
        int64_t nbk = cols / 256;
        for (int64_t g = 0; g < rows / R16; g++)
            for (int64_t b = 0; b < nbk; b++) {
                const sl_blk_q4_K *blk[R16];
                for (int r = 0; r < R16; r++)
                    blk[r] = (const sl_blk_q4_K *)w + (g * R16 + r) * nbk + b;
                repack_q4_K((sl_blk_q4_K_r16 *)dst + g * nbk + b, blk);
            }
        return;
    }
    int64_t nb = cols / 32, groups = rows / R16;
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
}

int sl_kernel_repack(int type, const void *w, int64_t rows, int64_t cols, void **out,
                     int *out_type)
{
    *out = NULL;
    size_t bytes;
    int rc = sl_kernel_repack_size(type, rows, cols, &bytes, out_type);
    if (rc)
        return rc;
    void *dst = sl_malloc(bytes);
    if (!dst)
        return SL_ENOMEM;
    sl_kernel_repack_into(type, w, rows, cols, dst);
    *out = dst;
    return 0;
}

#define R16_MAX_PARTS 4

typedef struct {
    const float *x;
    int64_t cols;
    /* parts: outputs [n_tok][rows], weights in groups of nb blocks of gb bytes */
    float *out[R16_MAX_PARTS];
    const uint8_t *w[R16_MAX_PARTS];
    int64_t rows[R16_MAX_PARTS];
    int64_t gstart[R16_MAX_PARTS + 1]; /* first group of each part in the joint numbering */
    int n_parts;
    size_t gb;
    int type;
    uint8_t *xa;    /* Q8_0 (Q8_K for Q4_K) activation rows */
    size_t xa_row;
    /* [n_tok][nb][cw]: -128 (Q8_0) or -8 (Q4_0) * sum of the block's codes
     * (cw 1); for Q4_K (cw 4) the 4 int16 pairs of sub-block sums; for Q6_K
     * (cw 16) -32 * the 16 bsums */
    int32_t *csum;
    int cw;
    float *xd;      /* [n_tok][nb]: each block's scale */
    int64_t nb, n_tok;
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

/* The Q4_K reference on the repacked form: per row and super-block the
 * exact sumi and summ of dot_q4_K, then its two fused multiply-adds. */
static void r16k_group_scalar(const sl_blk_q4_K_r16 *g, int64_t nb, const uint8_t *x,
                              size_t x_row, int nt, float *out, size_t os)
{
    for (int t = 0; t < nt; t++) {
        const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row);
        for (int r = 0; r < R16; r++) {
            float sum = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const sl_blk_q4_K_r16 *gb = g + b;
                int32_t sumi = 0, summ = 0;
                for (int j = 0; j < 8; j++) {
                    int32_t s = 0;
                    for (int l = 0; l < 32; l++) {
                        uint8_t byte = gb->p[j / 2][l / 4][r][l % 4];
                        s += (j & 1 ? byte >> 4 : byte & 0xF) * xb[b].qs[32 * j + l];
                    }
                    sumi += gb->sc[j][r] * s;
                    summ += gb->m[j / 2][r][j % 2] * (xb[b].bsums[2 * j] + xb[b].bsums[2 * j + 1]);
                }
                float dall = xb[b].d * sl_kernel_fp16_to_f32(gb->d[r]);
                float dmin = xb[b].d * sl_kernel_fp16_to_f32(gb->dmin[r]);
                sum = fmaf(dall, (float)sumi, sum);
                sum = fmaf(-dmin, (float)summ, sum);
            }
            out[(size_t)t * os + (size_t)r] = sum;
        }
    }
}

/* The Q6_K reference on the repacked form: per row and super-block the
 * codes rebuilt from the stored ql/qh bytes, dot_q6_K's half-group sums,
 * scaled sumi and its one fused multiply-add (x.d * d as that dot does). */
static void r16q6_group_scalar(const sl_blk_q6_K_r16 *g, int64_t nb, const uint8_t *x,
                               size_t x_row, int nt, float *out, size_t os)
{
    for (int t = 0; t < nt; t++) {
        const sl_blk_q8_K *xb = (const sl_blk_q8_K *)(x + (size_t)t * x_row);
        for (int r = 0; r < R16; r++) {
            float sum = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const sl_blk_q6_K_r16 *gb = g + b;
                int32_t sumi = 0;
                for (int h = 0; h < 2; h++)
                    for (int gr = 0; gr < 4; gr++) {
                        int32_t s0 = 0, s1 = 0;
                        for (int l = 0; l < 32; l++) {
                            uint8_t lo = gb->ql[h][gr & 1][l / 4][r][l % 4];
                            uint8_t hi = gb->qh[h][l / 4][r][l % 4];
                            int code = (gr < 2 ? lo & 0xF : lo >> 4) | ((hi >> (2 * gr)) & 3) << 4;
                            int p = (code - 32) * xb[b].qs[128 * h + 32 * gr + l];
                            if (l < 16)
                                s0 += p;
                            else
                                s1 += p;
                        }
                        sumi += gb->sc[8 * h + 2 * gr][r] * s0 + gb->sc[8 * h + 2 * gr + 1][r] * s1;
                    }
                float d = xb[b].d * gb->d[r];
                sum = fmaf(d, (float)sumi, sum);
            }
            out[(size_t)t * os + (size_t)r] = sum;
        }
    }
}

/* Tokens idx, idx + n, ...: quantized once for every part, with the block
 * sums and scales the kernels start from. */
static void r16_prep_task(void *vctx, int idx, int n)
{
    r16_ctx *c = vctx;
    if (c->type == SL_KT_Q6_K_R16) {
        for (int64_t t = idx; t < c->n_tok; t += n) {
            sl_blk_q8_K *xb = (sl_blk_q8_K *)(c->xa + (size_t)t * c->xa_row);
            sl_kernel_quantize_row(SL_KT_Q8_K, c->x + t * c->cols, xb, c->cols);
            for (int64_t b = 0; b < c->nb; b++) {
                for (int i = 0; i < 16; i++)
                    c->csum[(t * c->nb + b) * 16 + i] = -32 * (int32_t)xb[b].bsums[i];
                c->xd[t * c->nb + b] = xb[b].d;
            }
        }
        return;
    }
    if (c->type == SL_KT_Q4_K_R16) {
        for (int64_t t = idx; t < c->n_tok; t += n) {
            sl_blk_q8_K *xb = (sl_blk_q8_K *)(c->xa + (size_t)t * c->xa_row);
            sl_kernel_quantize_row(SL_KT_Q8_K, c->x + t * c->cols, xb, c->cols);
            for (int64_t b = 0; b < c->nb; b++) {
                for (int i = 0; i < 4; i++) {
                    /* |bsums| <= 16 * 127: a pair's sum fits int16 */
                    int16_t lo = (int16_t)(xb[b].bsums[4 * i] + xb[b].bsums[4 * i + 1]);
                    int16_t hi = (int16_t)(xb[b].bsums[4 * i + 2] + xb[b].bsums[4 * i + 3]);
                    c->csum[(t * c->nb + b) * 4 + i] =
                        (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
                }
                c->xd[t * c->nb + b] = xb[b].d;
            }
        }
        return;
    }
    int32_t k = c->type == SL_KT_Q4_0_R16 ? -8 : -128;
    for (int64_t t = idx; t < c->n_tok; t += n) {
        sl_blk_q8_0 *xb = (sl_blk_q8_0 *)(c->xa + (size_t)t * c->xa_row);
        sl_kernel_quantize_row(SL_KT_Q8_0, c->x + t * c->cols, xb, c->cols);
        for (int64_t b = 0; b < c->nb; b++) {
            int32_t s = 0;
            for (int i = 0; i < 32; i++)
                s += xb[b].qs[i];
            c->csum[t * c->nb + b] = k * s;
            c->xd[t * c->nb + b] = sl_kernel_fp16_to_f32(xb[b].d);
        }
    }
}

/* Task idx of n: a contiguous range of the parts' 16-row groups (numbered
 * one part after the other), each against every token in tiles of 8 while
 * the group's blocks stay in cache. */
static void r16_task(void *vctx, int idx, int n)
{
    r16_ctx *c = vctx;
    int64_t all = c->gstart[c->n_parts];
    int64_t g0 = all * idx / n, g1 = all * (idx + 1) / n;
    int p = 0;
    for (int64_t gj = g0; gj < g1; gj++) {
        while (gj >= c->gstart[p + 1])
            p++;
        int64_t g = gj - c->gstart[p];
        const uint8_t *wg = c->w[p] + (size_t)(g * c->nb) * c->gb;
        for (int64_t t = 0; t < c->n_tok; t += 8) {
            int nt = (int)SL_MIN((int64_t)8, c->n_tok - t);
            float *o = c->out[p] + t * c->rows[p] + g * R16;
            const uint8_t *x = c->xa + (size_t)t * c->xa_row;
            if (c->type == SL_KT_Q6_K_R16) {
#if defined(__x86_64__)
                if (c->wide) {
                    sl_kernel_r16q6_group_vnni(wg, c->nb, x, c->xa_row, c->csum + t * c->nb * 16,
                                               c->xd + t * c->nb, nt, o, (size_t)c->rows[p]);
                    continue;
                }
#endif
                r16q6_group_scalar((const sl_blk_q6_K_r16 *)wg, c->nb, x, c->xa_row, nt, o,
                                   (size_t)c->rows[p]);
                continue;
            }
            if (c->type == SL_KT_Q4_K_R16) {
#if defined(__x86_64__)
                if (c->wide) {
                    sl_kernel_r16k_group_vnni(wg, c->nb, x, c->xa_row, c->csum + t * c->nb * 4,
                                              c->xd + t * c->nb, nt, o, (size_t)c->rows[p]);
                    continue;
                }
#endif
                r16k_group_scalar((const sl_blk_q4_K_r16 *)wg, c->nb, x, c->xa_row, nt, o,
                                  (size_t)c->rows[p]);
                continue;
            }
#if defined(__x86_64__)
            if (c->wide) {
                sl_kernel_r16_group_vnni(c->type, wg, c->nb, x, c->xa_row, c->csum + t * c->nb,
                                         c->xd + t * c->nb, nt, o, (size_t)c->rows[p]);
                continue;
            }
#endif
            r16_group_scalar(wg, c->gb, c->type == SL_KT_Q4_0_R16, c->nb, x, c->xa_row, nt, o,
                             (size_t)c->rows[p]);
        }
    }
}

/* The parts (1..R16_MAX_PARTS, one type) against the same n_tok x cols input. */
static int r16_run(const sl_kernel_mm_part *parts, int n_parts, int64_t cols, const float *x,
                   int64_t n_tok, sl_pool *pool)
{
    int type = parts[0].type;
    bool k = type == SL_KT_Q4_K_R16 || type == SL_KT_Q6_K_R16; /* Q8_K activations */
    if (cols % r16_block_elems(type) || cols > INT32_MAX || n_tok > INT32_MAX ||
        n_parts > R16_MAX_PARTS)
        return SL_EINVAL;
    r16_ctx c = {.x = x, .cols = cols, .n_parts = n_parts, .type = type,
                 .nb = cols / r16_block_elems(type), .n_tok = n_tok,
                 .cw = type == SL_KT_Q6_K_R16 ? 16 : k ? 4 : 1,
                 .wide = sl_kernel_get_isa() == SL_KISA_AVX512, .gb = r16_block_bytes(type)};
    for (int p = 0; p < n_parts; p++) {
        if (parts[p].type != type || parts[p].rows < 0 || parts[p].rows % R16 ||
            parts[p].rows > INT32_MAX || !parts[p].out || !parts[p].w)
            return SL_EINVAL;
        c.out[p] = parts[p].out;
        c.w[p] = parts[p].w;
        c.rows[p] = parts[p].rows;
        c.gstart[p + 1] = c.gstart[p] + parts[p].rows / R16;
    }
    if (c.gstart[n_parts] == 0 || n_tok == 0)
        return 0;
    c.xa_row = (size_t)c.nb * (k ? sizeof(sl_blk_q8_K) : sizeof(sl_blk_q8_0));
    if ((uint64_t)n_tok > SIZE_MAX / (c.xa_row + (size_t)c.nb * (4 * (size_t)c.cw + 4)))
        return SL_EINVAL;
    c.xa = sl_malloc((size_t)n_tok * c.xa_row);
    c.csum = sl_malloc((size_t)(n_tok * c.nb * c.cw) * sizeof(int32_t));
    c.xd = sl_malloc((size_t)(n_tok * c.nb) * sizeof(float));
    int rc = 0;
    if (c.xa && c.csum && c.xd) {
        sl_pool_run(pool, r16_prep_task, &c, (int)SL_MIN(n_tok, (int64_t)sl_pool_threads(pool)));
        int tasks = (int)SL_MIN(c.gstart[n_parts], (int64_t)sl_pool_threads(pool) * 4);
        sl_pool_run(pool, r16_task, &c, tasks);
    } else {
        rc = SL_ENOMEM;
    }
    sl_free(c.xa);
    sl_free(c.csum);
    sl_free(c.xd);
    return rc;
}

int sl_kernel_matmul_r16(float *out, int type, int64_t rows, int64_t cols, const void *w,
                         const float *x, int64_t n_tok, sl_pool *pool)
{
    sl_kernel_mm_part part = {out, type, rows, w};
    return r16_run(&part, 1, cols, x, n_tok, pool);
}

int sl_kernel_matmul_parts(const sl_kernel_mm_part *parts, int n_parts, int64_t cols,
                           const float *x, int64_t n_tok, sl_pool *pool)
{
    bool fuse = n_parts >= 1 && n_parts <= R16_MAX_PARTS &&
                (parts[0].type == SL_KT_Q8_0_R16 || parts[0].type == SL_KT_Q4_0_R16 ||
                 parts[0].type == SL_KT_Q4_K_R16 || parts[0].type == SL_KT_Q6_K_R16);
    for (int p = 1; fuse && p < n_parts; p++)
        fuse = parts[p].type == parts[0].type;
    if (fuse)
        return r16_run(parts, n_parts, cols, x, n_tok, pool);
    for (int p = 0; p < n_parts; p++) {
        int rc = sl_kernel_matmul(parts[p].out, parts[p].type, parts[p].rows, cols, parts[p].w, x,
                                  n_tok, pool, 0);
        if (rc)
            return rc;
    }
    return 0;
}
