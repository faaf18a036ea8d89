#include "engine/kernels/kernels.h"
#include "test.h"

#include <stdint.h>

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Independent reference: value of a half from its fields with ldexp. */
static float ref_half(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0)
        v = ldexp(m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp(1024 + m, e - 25);
    return (float)(sign ? -v : v);
}

static void test_fp16_to_f32_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = sl_kernel_fp16_to_f32((uint16_t)h), want = ref_half((uint16_t)h);
        if (isnan(want)) {
            if (!isnan(got) || signbit(got) != signbit(want) ||
                ((fbits(got) >> 13) & 0x3ff) != ((h & 0x3ff) | 0x200))
                bad++;
        } else if (fbits(got) != fbits(want)) {
            if (bad++ < 5)
                T_FAIL_AT("half %04x: got %g want %g", h, got, want);
        }
    }
    EXPECT_EQ_INT(bad, 0);
}

static void test_f32_to_fp16_rounding_exhaustive(void)
{
    /* every finite half round-trips; midpoints between neighbours go to the
     * even code, and the float just above/below a midpoint to the nearer one */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hh = (uint16_t)h;
        if (((h >> 10) & 31) == 31)
            continue;
        if (sl_kernel_f32_to_fp16(ref_half(hh)) != hh)
            bad++;
        if ((h & 0x7fff) == 0x7bff)
            continue; /* next code up is inf; checked separately */
        float a = ref_half(hh), b = ref_half((uint16_t)(h + 1));
        float mid = (a + b) / 2; /* exact in float */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : hh;
        if (sl_kernel_f32_to_fp16(mid) != even)
            bad++;
        if (sl_kernel_f32_to_fp16(nextafterf(mid, a)) != hh)
            bad++;
        if (sl_kernel_f32_to_fp16(nextafterf(mid, b)) != (uint16_t)(h + 1))
            bad++;
    }
    EXPECT_EQ_INT(bad, 0);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(65504.0f), 0x7bff);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(65519.996f), 0x7bff);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(65520.0f), 0x7c00);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(-1e10f), 0xfc00);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(INFINITY), 0x7c00);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(1e-10f), 0x0000); /* below half the smallest subnormal */
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(-0.0f), 0x8000);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(1.0f), 0x3c00);
    EXPECT_EQ_UINT(sl_kernel_f32_to_fp16(-2.5f), 0xc100);
    uint16_t n = sl_kernel_f32_to_fp16(NAN);
    EXPECT(((n >> 10) & 31) == 31 && (n & 0x3ff) != 0);
}

static void test_fp16_rows_match_across_isa(void)
{
    static uint16_t all[65536], back_s[65536], back_v[65536];
    static float fs[65536], fv[65536];
    for (uint32_t h = 0; h < 65536; h++)
        all[h] = (uint16_t)h;
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
    sl_kernel_fp16_to_f32_row(all, fs, 65536);
    sl_kernel_f32_to_fp16_row(fs, back_s, 65536);
    if (sl_kernel_set_isa(SL_KISA_AVX2) != 0) {
        fprintf(stderr, "no AVX2 on this CPU: scalar only\n");
        return;
    }
    /* odd length so the vector body and the scalar tail both run */
    sl_kernel_fp16_to_f32_row(all, fv, 65533);
    sl_kernel_fp16_to_f32_row(all + 65533, fv + 65533, 3);
    sl_kernel_f32_to_fp16_row(fv, back_v, 65535);
    sl_kernel_f32_to_fp16_row(fv + 65535, back_v + 65535, 1);
    EXPECT(memcmp(fs, fv, sizeof fs) == 0);
    EXPECT(memcmp(back_s, back_v, sizeof back_s) == 0);
    /* and every non-NaN half round-trips through the rows */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (!isnan(fs[h]) && back_v[h] != h)
            bad++;
    EXPECT_EQ_INT(bad, 0);
    /* f32 -> half with random floats, both ISAs */
    static float r[4099];
    static uint16_t hs[4099], hv[4099];
    uint64_t s = 12345;
    for (int i = 0; i < 4099; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t u = (uint32_t)(s >> 32);
        memcpy(&r[i], &u, 4);
    }
    sl_kernel_f32_to_fp16_row(r, hv, 4099);
    sl_kernel_set_isa(SL_KISA_SCALAR);
    sl_kernel_f32_to_fp16_row(r, hs, 4099);
    EXPECT(memcmp(hs, hv, sizeof hs) == 0);
}

static void test_bf16(void)
{
    EXPECT_EQ_UINT(sl_kernel_f32_to_bf16(1.0f), 0x3f80);
    float f;
    uint32_t u = 0x3f808000; /* halfway between 0x3f80 and 0x3f81: to even */
    memcpy(&f, &u, 4);
    EXPECT_EQ_UINT(sl_kernel_f32_to_bf16(f), 0x3f80);
    u = 0x3f818000; /* halfway between 0x3f81 and 0x3f82: to even */
    memcpy(&f, &u, 4);
    EXPECT_EQ_UINT(sl_kernel_f32_to_bf16(f), 0x3f82);
    u = 0x3f808001; /* just above halfway */
    memcpy(&f, &u, 4);
    EXPECT_EQ_UINT(sl_kernel_f32_to_bf16(f), 0x3f81);
    u = 0x7f7fffff; /* FLT_MAX rounds to inf */
    memcpy(&f, &u, 4);
    EXPECT_EQ_UINT(sl_kernel_f32_to_bf16(f), 0x7f80);
    EXPECT(isnan(sl_kernel_bf16_to_f32(sl_kernel_f32_to_bf16(NAN))));
    EXPECT_EQ_UINT(fbits(sl_kernel_bf16_to_f32(0xc0a0)), 0xc0a00000); /* -5.0 */
    EXPECT_NEAR(sl_kernel_bf16_to_f32(0xc0a0), -5.0, 0);
}

int main(void)
{
    RUN(test_fp16_to_f32_exhaustive);
    RUN(test_f32_to_fp16_rounding_exhaustive);
    RUN(test_fp16_rows_match_across_isa);
    RUN(test_bf16);
    return TEST_REPORT();
}
