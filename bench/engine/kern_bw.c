/* Decode-kernel bandwidth against a triad measured in the same process, for
 * a noisy shared machine: every round runs the triad and each kernel variant
 * back to back, and the best round of each is kept, so slow phases caused by
 * other work hit all figures alike.
 *
 * Per type (F16, Q8_0, Q4_0, Q4_K, Q6_K), over MH_COLD copies of a 1024 x 1024
 * weight matrix (hundreds of MiB, so weights stream from DRAM, as in decode):
 *   dot1:   one sl_kernel_dot per weight row (the pre-tile way: one row at a
 *           time), one token;
 *   mm1:    sl_kernel_matmul, one token (decode);
 *   mm16:   sl_kernel_matmul, 16 tokens (a batched step of 16 streams);
 * all with `threads` threads (a pool; 1 = the calling thread only). Prints
 * weight GB/s (weight bytes / time, counted in the type's row bytes even for
 * Q4_K_R16 and Q6_K_R16, whose matrices are 64 / 2304 and 32 / 3360 larger; for mm16 also token-rows x weights / s as
 * "x16 GB/s equivalent") and the ratio to the triad GB/s (3 x 8 B per element,
 * STREAM counting) of the same thread count.
 *
 * usage: kern_bw [rounds (default 5)] [threads (default 1)] */
#include "core/core.h"
#include "engine/kernels/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KB_N 1024
#define KB_COLD 256
#define KB_TRIAD_N (16u << 20) /* doubles per triad array: 128 MiB */

static uint64_t rng = 11;
static float unif(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double *ta, *tb, *tc;

static void triad_task(void *ctx, int idx, int n)
{
    (void)ctx;
    size_t i0 = (size_t)KB_TRIAD_N * (size_t)idx / (size_t)n;
    size_t i1 = (size_t)KB_TRIAD_N * (size_t)(idx + 1) / (size_t)n;
    for (size_t i = i0; i < i1; i++)
        ta[i] = tb[i] + 3.0 * tc[i];
}

static double triad_gbs(sl_pool *pool)
{
    uint64_t t0 = sl_now_ns();
    sl_pool_run(pool, triad_task, NULL, sl_pool_threads(pool));
    double s = (double)(sl_now_ns() - t0) / 1e9;
    return 3.0 * 8.0 * KB_TRIAD_N / s / 1e9;
}

typedef struct {
    int type;
    const uint8_t *w;
    size_t rb, stride;
    const void *xa;
    float *y;
    int mat;
} dot_ctx;

static void dot_task(void *vctx, int idx, int n)
{
    dot_ctx *c = vctx;
    int r0 = KB_N * idx / n, r1 = KB_N * (idx + 1) / n;
    const uint8_t *w = c->w + (size_t)c->mat * c->stride;
    for (int r = r0; r < r1; r++)
        sl_kernel_dot(c->type, w + (size_t)r * c->rb, c->xa, KB_N, &c->y[r]);
}

/* Weight GB/s of `calls` products over the cold matrices. mode 0: dot per
 * row (activation quantized once per call, as matmul does); else matmul with
 * `ntok` tokens. */
static double run(int mode, int type, const uint8_t *w, size_t rb, size_t stride, int calls,
                  const float *x, int ntok, float *y, void *xa, sl_pool *pool)
{
    int vt = sl_kernel_vec_type(type);
    uint64_t t0 = sl_now_ns();
    for (int i = 0; i < calls; i++) {
        int m = i % KB_COLD;
        if (mode == 0) {
            if (vt != SL_KT_F32)
                sl_kernel_quantize_row(vt, x, xa, KB_N);
            dot_ctx c = {type, w, rb, stride, vt == SL_KT_F32 ? (const void *)x : xa, y, m};
            sl_pool_run(pool, dot_task, &c, sl_pool_threads(pool) * 4);
        } else if (sl_kernel_matmul(y, type, KB_N, KB_N, w + (size_t)m * stride, x, ntok,
                                    pool, 0)) {
            return -1;
        }
    }
    double s = (double)(sl_now_ns() - t0) / 1e9;
    return (double)rb * KB_N * calls / s / 1e9;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (rounds < 1 || rounds > 1000 || threads < 1 || threads > 64) {
        fprintf(stderr, "kern_bw: usage: kern_bw [rounds 1..1000] [threads 1..64]\n");
        return 2;
    }
    sl_pool *pool = NULL;
    if (threads > 1 && sl_pool_create(threads, &pool)) {
        fprintf(stderr, "kern_bw: cannot create the pool\n");
        return 1;
    }
    ta = sl_huge_alloc(sizeof(double) * KB_TRIAD_N);
    tb = sl_huge_alloc(sizeof(double) * KB_TRIAD_N);
    tc = sl_huge_alloc(sizeof(double) * KB_TRIAD_N);
    float *row = sl_malloc(sizeof(float) * KB_N), *x = sl_malloc(sizeof(float) * KB_N * 16),
          *y = sl_malloc(sizeof(float) * KB_N * 16);
    void *xa = sl_malloc(2 * 292 * KB_N / 256 + 34 * KB_N / 32);
    if (!ta || !tb || !tc || !row || !x || !y || !xa)
        return 1;
    for (size_t i = 0; i < KB_TRIAD_N; i++) {
        ta[i] = 0.0;
        tb[i] = 1.0;
        tc[i] = 2.0;
    }
    for (int i = 0; i < KB_N * 16; i++)
        x[i] = unif();
    /* "R16": the same matrices repacked in 16-row groups (sl_kernel_repack,
     * as the model does at load), same bytes per matrix; skipped where the
     * CPU does not repack. */
    static const struct { const char *name; int type; bool r16; } types[] = {
        {"F16", SL_KT_F16, false}, {"Q8_0", SL_KT_Q8_0, false}, {"Q4_0", SL_KT_Q4_0, false},
        {"Q4_K", SL_KT_Q4_K, false}, {"Q8_0_R16", SL_KT_Q8_0, true}, {"Q4_0_R16", SL_KT_Q4_0, true},
        {"Q4_K_R16", SL_KT_Q4_K, true}, {"Q6_K", SL_KT_Q6_K, false},
        {"Q6_K_R16", SL_KT_Q6_K, true}};
    enum { NT = 9 };
    uint8_t *w[NT];
    size_t rb[NT], mats[NT];
    int mtype[NT];
    for (int k = 0; k < NT; k++) {
        int T = types[k].type;
        mtype[k] = T;
        sl_kernel_row_bytes(T, KB_N, &rb[k]);
        size_t mat = rb[k] * KB_N, rbytes = 0;
        int rt = 0;
        if (types[k].r16 && sl_kernel_repack_size(T, KB_N, KB_N, &rbytes, &rt) == 0)
            mat = SL_MAX(mat, rbytes);
        mats[k] = mat;
        w[k] = sl_huge_alloc(mat * KB_COLD); /* as the engine keeps repacked weights */
        if (!w[k]) {
            fprintf(stderr, "kern_bw: out of memory\n");
            return 1;
        }
        for (int r = 0; r < KB_N; r++) {
            for (int i = 0; i < KB_N; i++)
                row[i] = unif();
            if (T == SL_KT_F16)
                sl_kernel_f32_to_fp16_row(row, (uint16_t *)(w[k] + (size_t)r * rb[k]), KB_N);
            else
                sl_kernel_quantize_row(T, row, w[k] + (size_t)r * rb[k], KB_N);
        }
        if (types[k].r16) {
            void *rp = NULL;
            if (sl_kernel_repack(T, w[k], KB_N, KB_N, &rp, &mtype[k]) == 0) {
                memcpy(w[k], rp, rbytes);
                sl_free(rp);
            } else {
                mtype[k] = -1;
            }
        }
        for (int m = 1; m < KB_COLD; m++)
            memcpy(w[k] + (size_t)m * mat, w[k], mat);
    }
    double best_triad = 0, best[NT][3] = {{0}};
    for (int rd = 0; rd < rounds; rd++) {
        double tr = triad_gbs(pool);
        best_triad = SL_MAX(best_triad, tr);
        for (int k = 0; k < NT; k++) {
            if (mtype[k] < 0)
                continue;
            int calls = KB_COLD * 2;
            double v0 = types[k].r16 ? 0
                                     : run(0, mtype[k], w[k], rb[k], mats[k], calls, x, 1, y, xa,
                                           pool);
            double v1 = run(1, mtype[k], w[k], rb[k], mats[k], calls, x, 1, y, xa, pool);
            double v16 = run(1, mtype[k], w[k], rb[k], mats[k], calls / 8, x, 16, y, xa, pool);
            best[k][0] = SL_MAX(best[k][0], v0);
            best[k][1] = SL_MAX(best[k][1], v1);
            best[k][2] = SL_MAX(best[k][2], v16);
        }
    }
    printf("kern_bw threads=%d rounds=%d triad_GB/s=%.2f\n", threads, rounds, best_triad);
    for (int k = 0; k < NT; k++)
        if (mtype[k] >= 0)
            printf("kern %s threads=%d dot1_GB/s=%.2f (%.0f%%) mm1_GB/s=%.2f (%.0f%%) "
               "mm16_GB/s=%.2f (x16 equivalent %.1f GB/s, %.1fx mm1 per token-row)\n",
               types[k].name, threads, best[k][0], 100 * best[k][0] / best_triad, best[k][1],
               100 * best[k][1] / best_triad, best[k][2], 16 * best[k][2],
               16 * best[k][2] / best[k][1]);
    for (int k = 0; k < NT; k++)
        sl_huge_free(w[k], mats[k] * KB_COLD);
    sl_huge_free(ta, sizeof(double) * KB_TRIAD_N);
    sl_huge_free(tb, sizeof(double) * KB_TRIAD_N);
    sl_huge_free(tc, sizeof(double) * KB_TRIAD_N);
    sl_free(row);
    sl_free(x);
    sl_free(y);
    sl_free(xa);
    sl_pool_destroy(pool);
    return 0;
}
