/* Separates the decode matmul's compute cost from its memory cost: one
 * thread, one token (n_tok = 1, as in decode), 1024 x 1024 weight matrices.
 *   hot:  the same matrix again and again (about 0.6-2 MiB, cache-resident)
 *   cold: a different matrix each call, cycling over 384 of them (hundreds of
 *         MiB, far beyond the caches), so weights stream from DRAM.
 * Prints weight GB/s (bytes of weight rows read / time) for each. If hot is
 * not much faster than cold, the kernel is bound by its instructions, not by
 * memory.
 *
 * usage: matmul_hot [calls (default 3000)] */
#include "core/core.h"
#include "engine/kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MH_N 1024
#define MH_COLD 384

static uint64_t rng = 7;
static float unif(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double run(int type, const uint8_t *w, size_t mat_bytes, int n_mats, int calls,
                  const float *x, float *y)
{
    uint64_t t0 = sl_now_ns();
    for (int i = 0; i < calls; i++)
        if (sl_kernel_matmul(y, type, MH_N, MH_N, w + (size_t)(i % n_mats) * mat_bytes, x, 1,
                             NULL, 0))
            return -1;
    double s = (double)(sl_now_ns() - t0) / 1e9;
    return (double)mat_bytes * calls / s / 1e9;
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 3000;
    if (calls < 1 || calls > 1000000) {
        fprintf(stderr, "matmul_hot: calls must be 1..1000000\n");
        return 2;
    }
    static const struct { const char *name; int type; } types[] = {
        {"F16", SL_KT_F16}, {"Q8_0", SL_KT_Q8_0}, {"Q4_0", SL_KT_Q4_0}, {"Q4_K", SL_KT_Q4_K}};
    float *row = sl_malloc(sizeof(float) * MH_N), *x = sl_malloc(sizeof(float) * MH_N),
          *y = sl_malloc(sizeof(float) * MH_N);
    if (!row || !x || !y)
        return 1;
    for (int i = 0; i < MH_N; i++)
        x[i] = unif();
    int rc = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0] && !rc; k++) {
        int T = types[k].type;
        size_t rb = 0;
        sl_kernel_row_bytes(T, MH_N, &rb);
        size_t mat = rb * MH_N;
        uint8_t *w = sl_malloc(mat * MH_COLD);
        if (!w) {
            fprintf(stderr, "matmul_hot: out of memory\n");
            rc = 1;
            break;
        }
        /* quantize one matrix and copy it: contents do not change the timing */
        for (int r = 0; r < MH_N; r++) {
            for (int i = 0; i < MH_N; i++)
                row[i] = unif();
            if (T == SL_KT_F16)
                sl_kernel_f32_to_fp16_row(row, (uint16_t *)(w + (size_t)r * rb), MH_N);
            else
                sl_kernel_quantize_row(T, row, w + (size_t)r * rb, MH_N);
        }
        for (int m = 1; m < MH_COLD; m++)
            memcpy(w + (size_t)m * mat, w, mat);
        run(T, w, mat, 1, calls / 10 + 1, x, y); /* warm-up */
        double hot = run(T, w, mat, 1, calls, x, y);
        double cold = run(T, w, mat, MH_COLD, calls, x, y);
        if (hot < 0 || cold < 0)
            rc = 1;
        else
            printf("matmul1 %s matrix_KiB=%zu hot_GB/s=%.2f cold_GB/s=%.2f hot_Gweights/s=%.2f "
                   "cold_Gweights/s=%.2f\n",
                   types[k].name, mat / 1024, hot, cold, hot * 1e9 / ((double)rb / MH_N) / 1e9,
                   cold * 1e9 / ((double)rb / MH_N) / 1e9);
        sl_free(w);
    }
    sl_free(row);
    sl_free(x);
    sl_free(y);
    return rc;
}
