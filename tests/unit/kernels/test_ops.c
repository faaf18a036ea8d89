/* f32 ops against values computed by hand (or with libm in double). */
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

int main(void)
{
    RUN(test_rmsnorm);
    RUN(test_softmax);
    RUN(test_silu_swiglu_elementwise);
    RUN(test_rope_adjacent_and_neox);
    return TEST_REPORT();
}
