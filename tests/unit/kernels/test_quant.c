/* Dequantization against hand-computed golden values, and quantize ->
 * dequantize error bounds (the bounds stated in kernels.h). */
#include "engine/kernels/kernels.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static void test_types(void)
{
    size_t b;
    EXPECT_EQ_INT(sl_kernel_row_bytes(SL_KT_Q4_K, 512, &b), 0);
    EXPECT_EQ_UINT(b, 288);
    EXPECT_EQ_INT(sl_kernel_row_bytes(SL_KT_Q8_0, 64, &b), 0);
    EXPECT_EQ_UINT(b, 68);
    EXPECT_EQ_INT(sl_kernel_row_bytes(SL_KT_Q6_K, 256, &b), 0);
    EXPECT_EQ_UINT(b, 210);
    EXPECT_EQ_INT(sl_kernel_row_bytes(SL_KT_F16, 7, &b), 0);
    EXPECT_EQ_UINT(b, 14);
    EXPECT_EQ_INT(sl_kernel_row_bytes(SL_KT_Q4_0, 33, &b), SL_EINVAL);
    EXPECT_EQ_INT(sl_kernel_row_bytes(3, 32, &b), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_vec_type(SL_KT_Q4_0), SL_KT_Q8_0);
    EXPECT_EQ_INT(sl_kernel_vec_type(SL_KT_Q6_K), SL_KT_Q8_K);
    EXPECT_EQ_INT(sl_kernel_vec_type(SL_KT_BF16), SL_KT_F32);
    EXPECT_EQ_STR(sl_kernel_type_name(SL_KT_Q4_K), "q4_K");
    float y[32];
    uint8_t blk[64] = {0};
    EXPECT_EQ_INT(sl_kernel_dequantize_row(SL_KT_Q8_0, blk, y, 31), SL_EINVAL);
    EXPECT_EQ_INT(sl_kernel_dequantize_row(99, blk, y, 32), SL_EUNSUPPORTED);
}

static void test_dequant_q8_0_q4_0_golden(void)
{
    uint8_t q8[34];
    q8[0] = 0x00; /* d = 0x3800 = 0.5, little endian */
    q8[1] = 0x38;
    for (int l = 0; l < 32; l++)
        q8[2 + l] = (uint8_t)(int8_t)(l - 16);
    q8[2] = 0x80; /* -128 */
    float y[32];
    EXPECT_EQ_INT(sl_kernel_dequantize_row(SL_KT_Q8_0, q8, y, 32), 0);
    EXPECT_NEAR(y[0], -64.0, 0);
    EXPECT_NEAR(y[1], -7.5, 0);
    EXPECT_NEAR(y[16], 0.0, 0);
    EXPECT_NEAR(y[31], 7.5, 0);

    uint8_t q4[18];
    q4[0] = 0x00; /* d = 0x4000 = 2.0 */
    q4[1] = 0x40;
    for (int l = 0; l < 16; l++)
        q4[2 + l] = (uint8_t)(l | ((15 - l) << 4));
    EXPECT_EQ_INT(sl_kernel_dequantize_row(SL_KT_Q4_0, q4, y, 32), 0);
    EXPECT_NEAR(y[0], -16.0, 0);  /* (0 - 8) * 2 */
    EXPECT_NEAR(y[15], 14.0, 0);  /* (15 - 8) * 2 */
    EXPECT_NEAR(y[16], 14.0, 0);  /* high nibble of byte 0 = 15 */
    EXPECT_NEAR(y[31], -16.0, 0); /* high nibble of byte 15 = 0 */
    EXPECT_NEAR(y[9], 2.0, 0);
}

static void test_dequant_q4_K_golden(void)
{
    /* d = 1.0, dmin = 0.5, scales {1,2,3,4,40,50,60,63}, mins
     * {5,6,7,8,17,33,48,63}, packed by hand into the 12 scale bytes. */
    uint8_t b[144];
    b[0] = 0x00, b[1] = 0x3c, b[2] = 0x00, b[3] = 0x38;
    const uint8_t sc[12] = {0x81, 0xC2, 0xC3, 0xC4, 0x45, 0x86, 0xC7, 0xC8, 0x18, 0x12, 0x0C, 0xFF};
    memcpy(b + 4, sc, 12);
    memset(b + 16, 0x93, 128); /* low nibble 3 (even sub-blocks), high 9 (odd) */
    b[16] = 0xF0;              /* element 0 -> 0, element 32 -> 15 */
    float y[256];
    EXPECT_EQ_INT(sl_kernel_dequantize_row(SL_KT_Q4_K, b, y, 256), 0);
    /* y = d * sc_j * q - dmin * m_j for sub-block j = e / 32 */
    const float want[8] = {0.5f, 15.0f, 5.5f, 32.0f, 111.5f, 433.5f, 156.0f, 535.5f};
    for (int j = 0; j < 8; j++)
        EXPECT_NEAR(y[32 * j + 5], want[j], 0);
    EXPECT_NEAR(y[0], -2.5, 0);
    EXPECT_NEAR(y[32], 27.0, 0);
    EXPECT_NEAR(y[255], 535.5, 0);
}

static void test_dequant_q6_K_golden(void)
{
    uint8_t b[210];
    memset(b, 0, sizeof b);
    for (int s = 0; s < 16; s++)
        b[192 + s] = (uint8_t)(int8_t)(s - 8);
    b[208] = 0x00; /* d = 0x3400 = 0.25 */
    b[209] = 0x34;
    b[0] = 0xA5;       /* ql[0]: elem 0 low 5, elem 64 low 10 */
    b[128] = 0xD2;     /* qh[0]: elem 0 hi 2, elem 32 hi 0, elem 64 hi 1, elem 96 hi 3 */
    b[64 + 16] = 0x0F; /* ql[80]: elem 144 low 15 */
    b[128 + 48] = 0x03; /* qh[48]: elem 144 hi 3 */
    float y[256];
    EXPECT_EQ_INT(sl_kernel_dequantize_row(SL_KT_Q6_K, b, y, 256), 0);
    EXPECT_NEAR(y[0], -10.0, 0);  /* code 37 -> 5, scale -8 */
    EXPECT_NEAR(y[32], 48.0, 0);  /* code 0 -> -32, scale -6 */
    EXPECT_NEAR(y[64], 6.0, 0);   /* code 26 -> -6, scale -4 */
    EXPECT_NEAR(y[96], -8.0, 0);  /* code 48 -> 16, scale -2 */
    EXPECT_NEAR(y[144], 7.75, 0); /* code 63 -> 31, scale 1 */
    EXPECT_NEAR(y[1], 64.0, 0);   /* code 0, scale -8: -8 * (0 - 8) */
    EXPECT_NEAR(y[255], -56.0, 0); /* scale 7 */
}

/* Fills n floats with a mix of shapes: gaussian-ish, offset (all positive or
 * all negative), an outlier, zeros, tiny values. */
static void fill(float *x, int n, int shape)
{
    for (int i = 0; i < n; i++) {
        float g = (frand() + frand() + frand()) * 0.6f;
        switch (shape % 6) {
        case 0: x[i] = g; break;
        case 1: x[i] = 3.0f + fabsf(g) * 2; break;
        case 2: x[i] = -5.0f + g; break;
        case 3: x[i] = (i % 97 == 3) ? 40.0f : g * 0.1f; break;
        case 4: x[i] = (i / 64) % 2 ? 0.0f : g * 1e-3f; break;
        default: x[i] = g * 1000.0f; break;
        }
    }
}

static double check_bound(int type, const float *x, int n, int shape)
{
    size_t bytes;
    EXPECT_EQ_INT(sl_kernel_row_bytes(type, n, &bytes), 0);
    uint8_t *q = malloc(bytes);
    float *y = malloc(sizeof(float) * (size_t)n);
    EXPECT_EQ_INT(sl_kernel_quantize_row(type, x, q, n), 0);
    EXPECT_EQ_INT(sl_kernel_dequantize_row(type, q, y, n), 0);
    int blk = (int)sl_kernel_block_elems(type);
    double worst = 0; /* error / bound, max over elements */
    for (int b = 0; b < n / blk; b++) {
        const float *xb = x + b * blk;
        double amax = 0, mx = -INFINITY, mn = 0;
        for (int l = 0; l < blk; l++) {
            amax = fmax(amax, fabs(xb[l]));
            mx = fmax(mx, xb[l]);
            mn = fmin(mn, xb[l]);
        }
        double bound;
        switch (type) {
        case SL_KT_Q8_0: bound = amax / 254 * 1.002; break;
        case SL_KT_Q8_K: bound = amax / 254 * 1.0001; break;
        case SL_KT_Q4_0: bound = amax / 8 * 1.002; break;
        case SL_KT_Q4_K: bound = (mx - mn) / 28; break;
        default: bound = amax / 60; break;
        }
        if (type != SL_KT_Q8_K)
            bound += ldexp(1.0, -18); /* fp16 scales of tiny blocks: see kernels.h */
        bound += 1e-30;
        for (int l = 0; l < blk; l++) {
            double e = fabs((double)xb[l] - y[b * blk + l]) / bound;
            if (e > worst)
                worst = e;
        }
    }
    if (worst > 1.0)
        T_FAIL_AT("type %s shape %d: error %.3f x bound", sl_kernel_type_name(type), shape, worst);
    free(q);
    free(y);
    return worst;
}

static void test_quant_roundtrip_bounds(void)
{
    const int types[] = {SL_KT_Q8_0, SL_KT_Q4_0, SL_KT_Q4_K, SL_KT_Q6_K, SL_KT_Q8_K};
    float x[1024];
    for (size_t t = 0; t < SL_ARRAY_LEN(types); t++) {
        double worst = 0;
        for (int shape = 0; shape < 12; shape++) {
            fill(x, 1024, shape);
            worst = fmax(worst, check_bound(types[t], x, 1024, shape));
        }
        /* a bound that is never approached would not test much */
        EXPECT(worst > 0.2);
    }
    /* an all-zero row decodes to zeros exactly */
    memset(x, 0, sizeof x);
    for (size_t t = 0; t < SL_ARRAY_LEN(types); t++) {
        uint8_t q[1200];
        float y[1024];
        EXPECT_EQ_INT(sl_kernel_quantize_row(types[t], x, q, 256), 0);
        EXPECT_EQ_INT(sl_kernel_dequantize_row(types[t], q, y, 256), 0);
        for (int i = 0; i < 256; i++)
            EXPECT_NEAR(y[i], 0.0, 0);
    }
}

static void test_quant_q8_K_bsums_and_range(void)
{
    float x[512];
    fill(x, 512, 0);
    x[7] = -1000.0f; /* the extreme maps to -127, never -128 */
    uint8_t q[2 * 292];
    EXPECT_EQ_INT(sl_kernel_quantize_row(SL_KT_Q8_K, x, q, 512), 0);
    for (int b = 0; b < 2; b++) {
        const int8_t *qs = (const int8_t *)(q + 292 * b + 4);
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                sum += qs[16 * s + l];
                EXPECT(qs[16 * s + l] >= -127);
            }
            int16_t bs;
            memcpy(&bs, q + 292 * b + 260 + 2 * s, 2);
            EXPECT_EQ_INT(bs, sum);
        }
    }
    EXPECT_EQ_INT(((const int8_t *)q)[4 + 7], -127);
}

static void test_quant_nonfinite_no_crash(void)
{
    float x[256];
    fill(x, 256, 0);
    x[3] = NAN;
    x[9] = INFINITY;
    uint8_t q[300];
    float y[256];
    const int types[] = {SL_KT_Q8_0, SL_KT_Q4_0, SL_KT_Q4_K, SL_KT_Q6_K, SL_KT_Q8_K};
    for (size_t t = 0; t < SL_ARRAY_LEN(types); t++) {
        EXPECT_EQ_INT(sl_kernel_quantize_row(types[t], x, q, 256), 0);
        EXPECT_EQ_INT(sl_kernel_dequantize_row(types[t], q, y, 256), 0);
    }
}

/* The activation quantizers (Q8_0, Q8_K) give identical bytes on every ISA:
 * random shapes, exact halves (roundf rounds them away from zero), values
 * just around halves, zeros, NaN and infinities. Tie golden: a block whose
 * max is 127 has scale exactly 1, so x = k + 0.5 must give k + 1. */
static void test_quant_act_isa_equal(void)
{
    enum { N = 2048 };
    float *x = malloc(sizeof(float) * N);
    uint8_t *qs = malloc(2 * N), *qa = malloc(2 * N);
    bool avx2 = sl_kernel_set_isa(SL_KISA_AVX2) == 0;
    const int types[] = {SL_KT_Q8_0, SL_KT_Q8_K};
    int compared = 0;
    for (int shape = 0; shape < 9; shape++) {
        if (shape < 6) {
            fill(x, N, shape);
        } else {
            for (int i = 0; i < N; i++) {
                float h = (float)((i % 255) - 127) + 0.5f; /* -126.5 .. 127.5 */
                x[i] = shape == 6 ? h : shape == 7 ? nextafterf(h, 0.0f) : nextafterf(h, 1000.0f);
            }
            for (int i = 0; i < N; i += 32)
                x[i] = 127.0f; /* scale exactly 1 */
        }
        if (shape == 5) {
            x[40] = NAN;
            x[300] = INFINITY;
            x[301] = -INFINITY;
            x[700] = -NAN;
        }
        for (size_t t = 0; t < SL_ARRAY_LEN(types); t++) {
            size_t bytes;
            EXPECT_EQ_INT(sl_kernel_row_bytes(types[t], N, &bytes), 0);
            EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
            EXPECT_EQ_INT(sl_kernel_quantize_row(types[t], x, qs, N), 0);
            if (shape == 6 && types[t] == SL_KT_Q8_0) {
                const int8_t *q = (const int8_t *)qs;
                EXPECT_EQ_INT(q[2 + 1], -126); /* -125.5 */
                EXPECT_EQ_INT(q[2 + 2], -125); /* -124.5 */
                EXPECT_EQ_INT(q[2 + 31], -96); /* -95.5 */
                EXPECT_EQ_INT(q[34 + 2 + 1], -94); /* i = 33: -93.5 */
                EXPECT_EQ_INT(q[34 * 4 + 2 + 1], 3);    /* i = 129: 2.5 */
                EXPECT_EQ_INT(q[34 * 6 + 2 + 8], 74);   /* i = 200: 73.5 */
                EXPECT_EQ_INT(q[34 * 8 + 2 + 1], -125); /* i = 257: -124.5 */
            }
            if (avx2) {
                EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX2), 0);
                EXPECT_EQ_INT(sl_kernel_quantize_row(types[t], x, qa, N), 0);
                if (memcmp(qs, qa, bytes) != 0)
                    T_FAIL_AT("%s shape %d: AVX2 quantizer differs from the scalar one",
                              sl_kernel_type_name(types[t]), shape);
                compared++;
            }
        }
    }
    EXPECT(!avx2 || compared == 18);
    free(x);
    free(qs);
    free(qa);
}

int main(void)
{
    RUN(test_types);
    RUN(test_dequant_q8_0_q4_0_golden);
    RUN(test_dequant_q4_K_golden);
    RUN(test_dequant_q6_K_golden);
    RUN(test_quant_roundtrip_bounds);
    RUN(test_quant_q8_K_bsums_and_range);
    RUN(test_quant_nonfinite_no_crash);
    RUN(test_quant_act_isa_equal);
    return TEST_REPORT();
}
