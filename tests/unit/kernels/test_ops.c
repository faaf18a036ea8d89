/* f32 ops against values computed by hand (or with libm in double). */
#include <math.h>
#include <string.h>

#include "engine/kernels/kernels.h"
#include "test.h"

static void test_rmsnorm(void)
{
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f}, out[4];
    sl_kernel_rmsnorm(out, x, w, 4, 0.0f);
    double inv = 1.0 / sqrt(7.5); /* mean of squares = 30 / 4 */
    EXPECT_NEAR(out[0], 1 * inv, 1e-6);
    EXPECT_NEAR(out[2], 6 * inv, 1e-6);
    EXPECT_NEAR(out[3], 2 * inv, 1e-6);
    /* in place, no weight, a length with a tail past the 8 lanes, eps used */
    float y[11];
    for (int i = 0; i < 11; i++)
        y[i] = 2.0f;
    sl_kernel_rmsnorm(y, y, NULL, 11, 12.0f);
    EXPECT_NEAR(y[10], 2.0 / 4.0, 1e-6); /* sqrt(4 + 12) = 4 */
}

static void test_softmax(void)
{
    float x[3] = {1, 2, 3};
    sl_kernel_softmax(x, 3);
    EXPECT_NEAR(x[0], 0.0900305732, 1e-7);
    EXPECT_NEAR(x[1], 0.2447284711, 1e-7);
    EXPECT_NEAR(x[2], 0.6652409558, 1e-7);
    float big[2] = {1000.0f, 1000.0f}; /* exp(1000) would overflow without the max shift */
    sl_kernel_softmax(big, 2);
    EXPECT_NEAR(big[0], 0.5, 0);
    float one[1] = {-3.0f};
    sl_kernel_softmax(one, 1);
    EXPECT_NEAR(one[0], 1.0, 0);
}

static void test_silu_swiglu_elementwise(void)
{
    float x[3] = {1, -2, 0}, out[3];
    sl_kernel_silu(out, x, 3);
    EXPECT_NEAR(out[0], 0.7310585786, 1e-6);
    EXPECT_NEAR(out[1], -0.2384058440, 1e-6);
    EXPECT_NEAR(out[2], 0.0, 0);
    float up[3] = {2, 1, 5};
    sl_kernel_swiglu(out, x, up, 3);
    EXPECT_NEAR(out[0], 1.4621171573, 1e-6);
    EXPECT_NEAR(out[2], 0.0, 0);
    sl_kernel_mul(out, x, up, 3);
    EXPECT_NEAR(out[1], -2.0, 0);
    sl_kernel_add(out, x, up, 3);
    EXPECT_NEAR(out[0], 3.0, 0);
    sl_kernel_scale(out, up, 0.5f, 3);
    EXPECT_NEAR(out[2], 2.5, 0);
}

static void test_rope_adjacent_and_neox(void)
{
    /* head_dim 4, pos 3, base 10000: theta_0 = 3, theta_1 = 3 * 10000^-0.5 = 0.03 */
    float a[8] = {1, 0, 0, 1, 1, 0, 0, 1}; /* two heads, rotated alike */
    sl_kernel_rope(a, 2, 4, 4, 3, 10000.0f, SL_ROPE_ADJACENT);
    EXPECT_NEAR(a[0], cos(3.0), 1e-6);
    EXPECT_NEAR(a[1], sin(3.0), 1e-6);
    EXPECT_NEAR(a[2], -sin(0.03), 1e-6);
    EXPECT_NEAR(a[3], cos(0.03), 1e-6);
    EXPECT_NEAR(a[5], sin(3.0), 1e-6);
    float b[4] = {1, 0, 0, 1}; /* NeoX pairs (0, 2) and (1, 3) */
    sl_kernel_rope(b, 1, 4, 4, 3, 10000.0f, SL_ROPE_NEOX);
    EXPECT_NEAR(b[0], cos(3.0), 1e-6);
    EXPECT_NEAR(b[2], sin(3.0), 1e-6);
    EXPECT_NEAR(b[1], -sin(0.03), 1e-6);
    EXPECT_NEAR(b[3], cos(0.03), 1e-6);
    /* partial rotation leaves dims past rot_dim alone; position 0 is identity */
    float c[6] = {1, 2, 3, 4, 5, 6};
    sl_kernel_rope(c, 1, 6, 4, 7, 10000.0f, SL_ROPE_NEOX);
    EXPECT_NEAR(c[4], 5.0, 0);
    EXPECT_NEAR(c[5], 6.0, 0);
    EXPECT_NEAR(c[0] * c[0] + c[2] * c[2], 1 + 9, 1e-5); /* a rotation keeps the norm */
    float d[4] = {1, 2, 3, 4};
    sl_kernel_rope(d, 1, 4, 4, 0, 10000.0f, SL_ROPE_ADJACENT);
    EXPECT_NEAR(d[1], 2.0, 0);
    EXPECT_NEAR(d[3], 4.0, 0);
}

/* Attention kernels: against a double reference, and the two ISAs bitwise
 * equal, for head sizes with and without a tail, key counts around the
 * 4-key groups, a padded key stride, and split calls equal to one call. */
static uint32_t rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void attn_run(sl_kernel_isa isa, const float *q, const float *k, size_t stride, int n,
                     int hd, float *scores, float *o)
{
    EXPECT_EQ_INT(sl_kernel_set_isa(isa), 0);
    sl_kernel_attn_scores(scores, q, k, stride, n, hd, 0.125f);
    for (int i = 0; i < hd; i++)
        o[i] = 0.5f;
    sl_kernel_attn_accum(o, scores, k, stride, n, hd);
}

/* The f16 kernels over rows rounded to f16 must equal the f32 kernels over
 * the same rounded rows widened back, bitwise, on every ISA, whole and split
 * in two calls (as over two cache blocks). */
static void attn_f16_check(const float *q, const float *k, size_t stride, int n, int hd)
{
    uint16_t kh[31 * 133];
    float kw[31 * 133], s1[31], s2[31], o1[128], o2[128];
    sl_kernel_isa isa0 = sl_kernel_get_isa();
    for (size_t i = 0; i < (size_t)n * stride; i++) {
        kh[i] = sl_kernel_f32_to_fp16(k[i]);
        kw[i] = sl_kernel_fp16_to_f32(kh[i]);
    }
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
    attn_run(SL_KISA_SCALAR, q, kw, stride, n, hd, s1, o1);
    static const sl_kernel_isa isas[] = {SL_KISA_SCALAR, SL_KISA_AVX2, SL_KISA_AVX512};
    for (size_t a = 0; a < sizeof isas / sizeof isas[0]; a++) {
        if (sl_kernel_set_isa(isas[a]) != 0)
            continue;
        int cut = n / 2;
        for (int i = 0; i < hd; i++)
            o2[i] = 0.5f;
        sl_kernel_attn_scores_f16(s2, q, kh, stride, cut, hd, 0.125f);
        sl_kernel_attn_scores_f16(s2 + cut, q, kh + (size_t)cut * stride, stride, n - cut, hd,
                                  0.125f);
        sl_kernel_attn_accum_f16(o2, s1, kh, stride, cut, hd);
        sl_kernel_attn_accum_f16(o2, s1 + cut, kh + (size_t)cut * stride, stride, n - cut, hd);
        EXPECT_EQ_INT(memcmp(s1, s2, sizeof(float) * (size_t)n), 0);
        EXPECT_EQ_INT(memcmp(o1, o2, sizeof(float) * (size_t)hd), 0);
    }
    sl_kernel_set_isa(isa0);
}

static void test_attention_kernels(void)
{
    static const int hds[] = {1, 3, 8, 13, 16, 24, 64, 72, 128};
    static const int ns[] = {1, 2, 3, 4, 5, 7, 8, 9, 31};
    sl_kernel_isa isa0 = sl_kernel_get_isa();
    for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            int hd = hds[a], n = ns[b];
            size_t stride = (size_t)hd + 5;
            float q[128], k[31 * 133], s1[31], s2[31], o1[128], o2[128];
            for (int i = 0; i < hd; i++)
                q[i] = frand();
            for (size_t i = 0; i < (size_t)n * stride; i++)
                k[i] = frand();
            attn_run(SL_KISA_SCALAR, q, k, stride, n, hd, s1, o1);
            for (int j = 0; j < n; j++) {
                double ref = 0;
                for (int i = 0; i < hd; i++)
                    ref += (double)q[i] * k[(size_t)j * stride + i];
                EXPECT_NEAR(s1[j], ref * 0.125, 1e-5);
            }
            for (int i = 0; i < hd; i++) {
                double ref = 0.5;
                for (int j = 0; j < n; j++)
                    ref += (double)s1[j] * k[(size_t)j * stride + i];
                EXPECT_NEAR(o1[i], ref, 1e-5);
            }
            if (sl_kernel_set_isa(SL_KISA_AVX2) == 0) {
                attn_run(SL_KISA_AVX2, q, k, stride, n, hd, s2, o2);
                EXPECT_EQ_INT(memcmp(s1, s2, sizeof(float) * (size_t)n), 0);
                EXPECT_EQ_INT(memcmp(o1, o2, sizeof(float) * (size_t)hd), 0);
            }
            /* keys split in two calls (as over two cache blocks) */
            int cut = n / 2;
            for (int i = 0; i < hd; i++)
                o2[i] = 0.5f;
            sl_kernel_attn_scores(s2, q, k, stride, cut, hd, 0.125f);
            sl_kernel_attn_scores(s2 + cut, q, k + (size_t)cut * stride, stride, n - cut, hd, 0.125f);
            sl_kernel_attn_accum(o2, s2, k, stride, cut, hd);
            sl_kernel_attn_accum(o2, s2 + cut, k + (size_t)cut * stride, stride, n - cut, hd);
            EXPECT_EQ_INT(memcmp(s1, s2, sizeof(float) * (size_t)n), 0);
            EXPECT_EQ_INT(memcmp(o1, o2, sizeof(float) * (size_t)hd), 0);
            attn_f16_check(q, k, stride, n, hd);
        }
    sl_kernel_set_isa(isa0);
}

/* SwiGLU with the kernels' exp: scalar == AVX2 bitwise (finite, huge,
 * infinite and NaN gates, every tail length), and within 4e-7 relative (or
 * 1e-30 absolute) of silu computed with double-precision exp. */
static void test_swiglu_exp(void)
{
    enum { N = 4099 };
    static float g[N], u[N], o1[N], o2[N];
    for (int i = 0; i < N; i++) {
        g[i] = frand() * (i % 7 == 0 ? 120.0f : i % 3 == 0 ? 12.0f : 3.0f);
        u[i] = frand();
    }
    g[0] = 88.4f;
    g[1] = -88.4f;
    g[2] = INFINITY;
    g[3] = -INFINITY;
    g[4] = NAN;
    g[5] = 1e-40f;
    g[6] = -0.0f;
    sl_kernel_isa isa0 = sl_kernel_get_isa();
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
    sl_kernel_swiglu(o1, g, u, N);
    int bad = 0;
    for (int i = 7; i < N; i++) {
        double ref = (double)g[i] / (1.0 + exp(-(double)g[i])) * (double)u[i];
        if (fabs(o1[i] - ref) > 4e-7 * fabs(ref) + 1e-30)
            bad++;
    }
    EXPECT_EQ_INT(bad, 0);
    EXPECT(isnan(o1[4]));
    EXPECT_NEAR(o1[0], 88.4 * u[0], 1e-5 * fabs(88.4 * u[0]));
    if (sl_kernel_set_isa(SL_KISA_AVX2) == 0)
        for (int n = N - 9; n <= N; n++) {
            sl_kernel_swiglu(o2, g, u, n);
            int diff = 0;
            for (int i = 0; i < n; i++)
                if (memcmp(&o1[i], &o2[i], 4) != 0 && !(isnan(o1[i]) && isnan(o2[i])))
                    diff++;
            EXPECT_EQ_INT(diff, 0);
        }
    sl_kernel_set_isa(isa0);
}

/* Softmax with the kernels' exp: within 1e-6 relative of a double softmax,
 * and the scalar and AVX2 versions give the same bits for every length
 * around the 8-lane groups. */
static void test_softmax_exp(void)
{
    enum { N = 300 };
    static float x[N], a[N], b[N];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (i % 5 == 0 ? 40.0f : 6.0f);
    sl_kernel_isa isa0 = sl_kernel_get_isa();
    for (int n = 1; n <= N; n += (n < 40 ? 1 : 37)) {
        memcpy(a, x, sizeof(float) * (size_t)n);
        EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
        sl_kernel_softmax(a, n);
        double mx = x[0], sum = 0;
        for (int i = 1; i < n; i++)
            mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < n; i++)
            sum += exp((double)x[i] - mx);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            double ref = exp((double)x[i] - mx) / sum;
            if (fabs(a[i] - ref) > 1e-6 * ref + 1e-37)
                bad++;
        }
        EXPECT_EQ_INT(bad, 0);
        if (sl_kernel_set_isa(SL_KISA_AVX2) == 0) {
            memcpy(b, x, sizeof(float) * (size_t)n);
            sl_kernel_softmax(b, n);
            EXPECT_EQ_INT(memcmp(a, b, sizeof(float) * (size_t)n), 0);
        }
    }
    sl_kernel_set_isa(isa0);
}

int main(void)
{
    RUN(test_rmsnorm);
    RUN(test_softmax);
    RUN(test_softmax_exp);
    RUN(test_silu_swiglu_elementwise);
    RUN(test_rope_adjacent_and_neox);
    RUN(test_attention_kernels);
    RUN(test_swiglu_exp);
    return TEST_REPORT();
}
