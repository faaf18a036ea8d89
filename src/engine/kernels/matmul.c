/* ISA selection, the single-dot entry point and the engine matmul. */
#include "engine/kernels/kernels_impl.h"

#include "engine/kernels/blas.h"
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic(const sl_kernel_vtab *) current_vt;
static atomic_bool wide_on; /* SL_KISA_AVX512: the VNNI matmuls on top of AVX2 */
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static bool cpu_has_avx2(void)
{
#if defined(__x86_64__)
    /* F16C via cpuid (leaf 1, ECX bit 29): not every compiler knows "f16c"
     * as a __builtin_cpu_supports name. avx2 implies the OS saves YMM state. */
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)))
        return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static bool cpu_has_vnni(void)
{
#if defined(__x86_64__)
    /* XCR0 bits 1, 2 and 5-7: the OS saves SSE, AVX and the AVX-512 state
     * (opmask, upper ZMM halves, ZMM16-31). OSXSAVE is leaf 1 ECX bit 27. */
    unsigned a, b, c, d;
    if (!cpu_has_avx2() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6u) != 0xE6u)
        return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

static void isa_init(void)
{
    const sl_kernel_vtab *vt = &sl_kernel_vtab_scalar;
    bool wide = false;
#if defined(__x86_64__)
    const char *env = getenv("SLUICE_KERNELS");
    if (cpu_has_avx2() && !(env && strcmp(env, "scalar") == 0)) {
        vt = &sl_kernel_vtab_avx2;
        wide = cpu_has_vnni() && !(env && strcmp(env, "avx2") == 0);
    }
#endif
    atomic_store(&current_vt, vt);
    atomic_store(&wide_on, wide);
}

bool sl_kernel_wide(void)
{
    sl_kernel_vtab_get();
    return atomic_load_explicit(&wide_on, memory_order_relaxed);
}

const sl_kernel_vtab *sl_kernel_vtab_get(void)
{
    pthread_once(&isa_once, isa_init);
    return atomic_load_explicit(&current_vt, memory_order_relaxed);
}

sl_kernel_isa sl_kernel_get_isa(void)
{
    if (sl_kernel_vtab_get() == &sl_kernel_vtab_scalar)
        return SL_KISA_SCALAR;
    return sl_kernel_wide() ? SL_KISA_AVX512 : SL_KISA_AVX2;
}

int sl_kernel_set_isa(sl_kernel_isa isa)
{
    pthread_once(&isa_once, isa_init);
    if (isa == SL_KISA_SCALAR) {
        atomic_store(&current_vt, &sl_kernel_vtab_scalar);
        atomic_store(&wide_on, false);
        return 0;
    }
#if defined(__x86_64__)
    if ((isa == SL_KISA_AVX2 && cpu_has_avx2()) || (isa == SL_KISA_AVX512 && cpu_has_vnni())) {
        atomic_store(&current_vt, &sl_kernel_vtab_avx2);
        atomic_store(&wide_on, isa == SL_KISA_AVX512);
        return 0;
    }
#endif
    return SL_EUNSUPPORTED;
}

sl_kernel_dot_fn sl_kernel_dot_for(const sl_kernel_vtab *vt, int wtype)
{
    switch (wtype) {
    case SL_KT_F32: return vt->dot_f32;
    case SL_KT_F16: return vt->dot_f16;
    case SL_KT_BF16: return vt->dot_bf16;
    case SL_KT_Q8_0: return vt->dot_q8_0;
    case SL_KT_Q4_0: return vt->dot_q4_0;
    case SL_KT_Q4_K: return vt->dot_q4_K;
    case SL_KT_Q6_K: return vt->dot_q6_K;
    default: return NULL;
    }
}

sl_kernel_tile_fn sl_kernel_tile_for(const sl_kernel_vtab *vt, int wtype)
{
    switch (wtype) {
    case SL_KT_F32: return vt->tile_f32;
    case SL_KT_F16: return vt->tile_f16;
    case SL_KT_BF16: return vt->tile_bf16;
    case SL_KT_Q8_0: return vt->tile_q8_0;
    case SL_KT_Q4_0: return vt->tile_q4_0;
    case SL_KT_Q4_K: return vt->tile_q4_K;
    case SL_KT_Q6_K: return vt->tile_q6_K;
    default: return NULL;
    }
}

int sl_kernel_dot(int wtype, const void *w, const void *x, int64_t n, float *out)
{
    sl_kernel_dot_fn fn = sl_kernel_dot_for(sl_kernel_vtab_get(), wtype);
    if (!fn)
        return SL_EUNSUPPORTED;
    size_t bytes;
    int rc = sl_kernel_row_bytes(wtype, n, &bytes);
    if (rc)
        return rc;
    if (!w || !x || !out)
        return SL_EINVAL;
    *out = fn(w, x, n);
    return 0;
}

void sl_kernel_attn_scores(float *out, const float *q, const float *k, size_t k_stride, int n,
                           int hd, float scale)
{
    sl_kernel_vtab_get()->attn_scores(out, q, k, k_stride, n, hd, scale);
}

void sl_kernel_attn_accum(float *o, const float *a, const float *v, size_t v_stride, int n,
                          int hd)
{
    sl_kernel_vtab_get()->attn_accum(o, a, v, v_stride, n, hd);
}

void sl_kernel_attn_scores_f16(float *out, const float *q, const uint16_t *k, size_t k_stride,
                               int n, int hd, float scale)
{
    sl_kernel_vtab_get()->attn_scores_f16(out, q, k, k_stride, n, hd, scale);
}

void sl_kernel_attn_accum_f16(float *o, const float *a, const uint16_t *v, size_t v_stride, int n,
                              int hd)
{
    sl_kernel_vtab_get()->attn_accum_f16(o, a, v, v_stride, n, hd);
}

/* ---- matmul ---- */

typedef struct {
    float *out;
    const uint8_t *w;
    const uint8_t *xa; /* activations in the vec type, n_tok rows of xa_row bytes */
    const float *x;    /* f32 input (for quantizing) */
    size_t w_row, xa_row;
    int64_t rows, cols, n_tok;
    int vec_type;
    sl_kernel_tile_fn kern; /* the tile kernel of wtype */
    /* BLAS path: a tile of weight rows converted to f32 */
    float *tile;
    int64_t tile_r0, tile_rows;
    int wtype;
} mm_ctx;

static void quantize_task(void *vctx, int idx, int n)
{
    mm_ctx *c = vctx;
    for (int64_t t = idx; t < c->n_tok; t += n)
        sl_kernel_quantize_row(c->vec_type, c->x + t * c->cols, (uint8_t *)c->xa + t * c->xa_row,
                               c->cols);
}

/* Output rows of task idx of n: a contiguous range of whole SL_TILE_R-row
 * groups (the last group of the matrix may be short), for every token. A
 * group of weight rows (a few KiB) stays in cache while it meets every token
 * in SL_TILE_T-token tiles; each output element is one dot whatever the tile
 * shape (tiles equal dots bitwise), so neither the split, nor the thread
 * count, nor n_tok changes any result. This is the hot loop of the engine. */
static void dot_task(void *vctx, int idx, int n)
{
    mm_ctx *c = vctx;
    int64_t groups = (c->rows + SL_TILE_R - 1) / SL_TILE_R;
    int64_t r0 = groups * idx / n * SL_TILE_R;
    int64_t r1 = SL_MIN(c->rows, groups * (idx + 1) / n * SL_TILE_R);
    for (int64_t r = r0; r < r1; r += SL_TILE_R) {
        int nr = (int)SL_MIN((int64_t)SL_TILE_R, r1 - r);
        const uint8_t *wr = c->w + (size_t)r * c->w_row;
        for (int64_t t = 0; t < c->n_tok; t += SL_TILE_T) {
            int nt = (int)SL_MIN((int64_t)SL_TILE_T, c->n_tok - t);
            c->kern(wr, c->w_row, nr, c->xa + (size_t)t * c->xa_row, c->xa_row, nt, c->cols,
                    c->out + t * c->rows + r, (size_t)c->rows);
        }
    }
}

/* Rows [r0, r1) of the current tile, task idx of n: converted to f32 (when
 * the weights are not f32 already) and multiplied by one single-threaded
 * sgemm on this pool thread. OpenBLAS runs on the calling thread
 * (blas.c sets it to one thread), so the pool is the only set of threads. */
static void blas_task(void *vctx, int idx, int n)
{
    mm_ctx *c = vctx;
    int64_t r0 = c->tile_rows * idx / n, r1 = c->tile_rows * (idx + 1) / n;
    if (r1 <= r0)
        return;
    const float *wt;
    if (c->wtype == SL_KT_F32) {
        wt = (const float *)(c->w + (size_t)(c->tile_r0 + r0) * c->w_row);
    } else {
        for (int64_t r = r0; r < r1; r++)
            sl_kernel_dequantize_row(c->wtype, c->w + (size_t)(c->tile_r0 + r) * c->w_row,
                                     c->tile + r * c->cols, c->cols);
        wt = c->tile + r0 * c->cols;
    }
    const int M = (int)c->n_tok, K = (int)c->cols;
    sl_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, (int)(r1 - r0), K, 1.0f, c->x, K, wt,
                K, 0.0f, c->out + c->tile_r0 + r0, (int)c->rows);
}

/* Weight rows converted per tile: about 4 MiB of f32. */
#define BLAS_TILE_FLOATS (1 << 20)

static int matmul_blas(mm_ctx *c, sl_pool *pool)
{
    int tasks = sl_pool_threads(pool);
    if (c->wtype == SL_KT_F32) {
        c->tile_r0 = 0;
        c->tile_rows = c->rows;
        sl_pool_run(pool, blas_task, c, (int)SL_MIN(c->rows, (int64_t)tasks));
        return 0;
    }
    int64_t tr = SL_MAX((int64_t)1, BLAS_TILE_FLOATS / c->cols);
    tr = SL_MIN(tr, c->rows);
    c->tile = sl_malloc((size_t)(tr * c->cols) * sizeof(float));
    if (!c->tile)
        return SL_ENOMEM;
    for (int64_t r0 = 0; r0 < c->rows; r0 += tr) {
        c->tile_r0 = r0;
        c->tile_rows = SL_MIN(tr, c->rows - r0);
        sl_pool_run(pool, blas_task, c, (int)SL_MIN(c->tile_rows, (int64_t)tasks));
    }
    sl_free(c->tile);
    c->tile = NULL;
    return 0;
}

int sl_kernel_matmul(float *out, int wtype, int64_t rows, int64_t cols, const void *w,
                     const float *x, int64_t n_tok, sl_pool *pool, unsigned flags)
{
    if (rows < 0 || cols < 0 || n_tok < 0 || (rows && n_tok && (!out || !w || !x)))
        return SL_EINVAL;
    if (wtype == SL_KT_Q8_0_R16 || wtype == SL_KT_Q4_0_R16 || wtype == SL_KT_Q4_K_R16 ||
        wtype == SL_KT_Q6_K_R16)
        return rows == 0 || n_tok == 0 ? 0
                                       : sl_kernel_matmul_r16(out, wtype, rows, cols, w, x, n_tok, pool);
    mm_ctx c = {.out = out, .w = w, .x = x, .rows = rows, .cols = cols, .n_tok = n_tok,
                .wtype = wtype};
    const sl_kernel_vtab *vt = sl_kernel_vtab_get();
    c.kern = sl_kernel_tile_for(vt, wtype);
    if (!c.kern)
        return SL_EUNSUPPORTED;
    int rc = sl_kernel_row_bytes(wtype, cols, &c.w_row);
    if (rc)
        return rc;
    if (rows == 0 || n_tok == 0)
        return 0;
    if (rows > INT32_MAX || cols > INT32_MAX || n_tok > INT32_MAX)
        return SL_EINVAL;

    bool is_float = wtype == SL_KT_F32 || wtype == SL_KT_F16 || wtype == SL_KT_BF16;
    if ((flags & SL_MATMUL_ALLOW_BLAS) && is_float && n_tok >= SL_MATMUL_BLAS_MIN_TOK)
        return matmul_blas(&c, pool);

    c.vec_type = sl_kernel_vec_type(wtype);
    uint8_t *scratch = NULL;
    if (c.vec_type == SL_KT_F32) {
        c.xa = (const uint8_t *)x;
        c.xa_row = (size_t)cols * sizeof(float);
    } else {
        rc = sl_kernel_row_bytes(c.vec_type, cols, &c.xa_row);
        if (rc)
            return rc;
        if ((uint64_t)n_tok > SIZE_MAX / (c.xa_row ? c.xa_row : 1))
            return SL_EINVAL;
        scratch = sl_malloc((size_t)n_tok * c.xa_row);
        if (!scratch)
            return SL_ENOMEM;
        c.xa = scratch;
        sl_pool_run(pool, quantize_task, &c, (int)SL_MIN(n_tok, (int64_t)sl_pool_threads(pool)));
#if defined(__x86_64__)
        /* One token is memory-bound and the AVX2 tiles prefetch for it; the
         * VNNI tiles pay off from two tokens on. Same results either way. */
        if (n_tok >= 2 && wtype == SL_KT_Q4_K && sl_kernel_wide()) {
            rc = sl_kernel_matmul_vnni(out, wtype, rows, cols, w, c.w_row, c.xa, c.xa_row, n_tok,
                                       pool);
            sl_free(scratch);
            return rc;
        }
#endif
    }
    /* A few tasks per thread balance uneven progress; the split never changes
     * a result (each element is one dot). */
    int tasks = (int)SL_MIN((rows + SL_TILE_R - 1) / SL_TILE_R, (int64_t)sl_pool_threads(pool) * 4);
    sl_pool_run(pool, dot_task, &c, tasks);
    sl_free(scratch);
    return 0;
}
