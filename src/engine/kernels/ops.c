/* Element-wise and normalization ops on f32 rows. Scalar code written with
 * fixed 8-lane partial sums so the compiler can vectorize it while the
 * summation order (and so the result) stays the same on every machine. */
#include "engine/kernels/kernels_impl.h"

#include <math.h>

void sl_kernel_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l] * x[i + l];
    float ss = sl_kernel_hsum8(acc);
    for (; i < n; i++)
        ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)(n > 0 ? n : 1) + eps);
    for (i = 0; i < n; i++)
        out[i] = weight ? x[i] * inv * weight[i] : x[i] * inv;
}

void sl_kernel_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    /* fmaxf's result (a NaN loses to a number) without its libm call, which
     * showed as 3 % of a long prefill */
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max || max != max)
            max = x[i];
    /* the kernels' exp, vectorised, with a fixed lane order for the sum:
     * the same bits under every ISA */
    float inv = 1.0f / sl_kernel_vtab_get()->exp_sum(x, n, max);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void sl_kernel_silu(float *out, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] / (1.0f + expf(-x[i]));
}

void sl_kernel_swiglu(float *out, const float *gate, const float *up, int64_t n)
{
    sl_kernel_vtab_get()->swiglu(out, gate, up, n);
}

void sl_kernel_mul(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

void sl_kernel_add(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void sl_kernel_scale(float *out, const float *a, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * s;
}

void sl_kernel_rope(float *x, int n_heads, int head_dim, int rot_dim, int64_t pos,
                    float freq_base, int mode)
{
    int half = rot_dim / 2;
    for (int i = 0; i < half; i++) {
        /* angle in double: pos can be large and the float error would grow with it */
        double theta = (double)pos * pow((double)freq_base, -2.0 * i / rot_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        int i0 = mode == SL_ROPE_NEOX ? i : 2 * i;
        int i1 = mode == SL_ROPE_NEOX ? i + half : 2 * i + 1;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}
