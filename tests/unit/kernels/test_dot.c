/* Dot kernels and matmul: AVX2 equals scalar bitwise, both match a double
 * reference within a stated bound, and matmul results do not depend on the
 * thread count or on n_tok. */
#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x243f6a8885a308d3ULL;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float frand(void) { return (float)((next_u64() >> 40) / 8388608.0 - 1.0); }

static const int WTYPES[] = {SL_KT_F32, SL_KT_F16, SL_KT_BF16, SL_KT_Q8_0,
                             SL_KT_Q4_0, SL_KT_Q4_K, SL_KT_Q6_K};

static bool have_avx2;
static int max_isa;

static size_t row_bytes(int type, int64_t n)
{
    size_t b = 0;
    EXPECT_EQ_INT(sl_kernel_row_bytes(type, n, &b), 0);
    return b;
}

static void set_half(uint8_t *p, float v)
{
    uint16_t h = sl_kernel_f32_to_fp16(v);
    memcpy(p, &h, 2);
}

/* A weight row: quantized from random floats, or (raw) random bytes with
 * sane fp16 scales, which reaches codes a quantizer never writes (-128). */
static void make_weight(int type, uint8_t *w, int64_t n, bool raw)
{
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand() * 2.0f;
    EXPECT_EQ_INT(sl_kernel_quantize_row(type, x, w, n), 0);
    free(x);
    if (!raw)
        return;
    size_t bytes = row_bytes(type, n), bb = sl_kernel_block_bytes(type);
    if (type == SL_KT_F32 || type == SL_KT_F16 || type == SL_KT_BF16)
        return;
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)next_u64();
    for (size_t b = 0; b < bytes / bb; b++) {
        uint8_t *blk = w + b * bb;
        switch (type) {
        case SL_KT_Q8_0:
        case SL_KT_Q4_0: set_half(blk, frand() * 0.1f); break;
        case SL_KT_Q4_K:
            set_half(blk, frand() * 0.01f);
            set_half(blk + 2, frand() * 0.01f);
            break;
        case SL_KT_Q6_K: set_half(blk + 208, frand() * 0.01f); break;
        default: break;
        }
    }
}

/* The activation in the weight's vec format; xf gets the decoded floats. */
static void *make_act(int wtype, int64_t n, float *xf)
{
    int vt = sl_kernel_vec_type(wtype);
    for (int64_t i = 0; i < n; i++)
        xf[i] = frand() * 3.0f;
    void *xa = malloc(row_bytes(vt, n));
    EXPECT_EQ_INT(sl_kernel_quantize_row(vt, xf, xa, n), 0);
    EXPECT_EQ_INT(sl_kernel_dequantize_row(vt, xa, xf, n), 0);
    return xa;
}

static float dot_isa(sl_kernel_isa isa, int type, const void *w, const void *x, int64_t n)
{
    float r = NAN;
    EXPECT_EQ_INT(sl_kernel_set_isa(isa), 0);
    EXPECT_EQ_INT(sl_kernel_dot(type, w, x, n, &r), 0);
    return r;
}

static void test_dot_isa_equal_and_accurate(void)
{
    const int64_t n32[] = {32, 64, 96, 160, 256, 416};
    const int64_t nk[] = {256, 512, 768, 1280};
    const int64_t nf[] = {1, 7, 31, 32, 33, 64, 100, 257, 1024};
    int checked = 0;
    for (size_t t = 0; t < SL_ARRAY_LEN(WTYPES); t++) {
        int type = WTYPES[t];
        size_t be = sl_kernel_block_elems(type);
        const int64_t *ns = be == 1 ? nf : be == 32 ? n32 : nk;
        size_t nn = be == 1 ? SL_ARRAY_LEN(nf) : be == 32 ? SL_ARRAY_LEN(n32) : SL_ARRAY_LEN(nk);
        for (size_t k = 0; k < nn; k++) {
            for (int raw = 0; raw < 2; raw++) {
                int64_t n = ns[k];
                uint8_t *w = malloc(row_bytes(type, n));
                float *wf = malloc(sizeof(float) * (size_t)n), *xf = malloc(sizeof(float) * (size_t)n);
                make_weight(type, w, n, raw);
                void *xa = make_act(type, n, xf);
                EXPECT_EQ_INT(sl_kernel_dequantize_row(type, w, wf, n), 0);
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    ref += (double)wf[i] * xf[i];
                    mag += fabs((double)wf[i] * xf[i]);
                }
                float s = dot_isa(SL_KISA_SCALAR, type, w, xa, n);
                /* float accumulation bound: 1e-5 of sum |w x| (n <= 1280) */
                if (!(fabs(s - ref) <= 1e-5 * mag + 1e-6))
                    T_FAIL_AT("%s n=%lld raw=%d: scalar %.9g ref %.9g", sl_kernel_type_name(type),
                              (long long)n, raw, s, ref);
                if (have_avx2) {
                    float v = dot_isa(SL_KISA_AVX2, type, w, xa, n);
                    if (memcmp(&s, &v, 4) != 0)
                        T_FAIL_AT("%s n=%lld raw=%d: scalar %.9g != avx2 %.9g",
                                  sl_kernel_type_name(type), (long long)n, raw, s, v);
                }
                checked++;
                free(w);
                free(wf);
                free(xf);
                free(xa);
            }
        }
    }
    EXPECT(checked > 50);
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
    float r;
    EXPECT_EQ_INT(sl_kernel_dot(SL_KT_Q8_K, "", "", 256, &r), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_dot(SL_KT_Q4_0, "", "", 48, &r), SL_EINVAL);
}

static void test_dot_q8_0_golden(void)
{
    /* w: d = 0.5, q = 1..32; x: d = 0.25, q = 2 -> 0.125 * 2 * 528 = 132 */
    uint8_t w[34], x[34];
    set_half(w, 0.5f);
    set_half(x, 0.25f);
    for (int l = 0; l < 32; l++) {
        w[2 + l] = (uint8_t)(l + 1);
        x[2 + l] = 2;
    }
    for (int isa = 0; isa <= (have_avx2 ? 1 : 0); isa++)
        EXPECT_NEAR(dot_isa((sl_kernel_isa)isa, SL_KT_Q8_0, w, x, 32), 132.0, 0);
    /* -128 weights against 127 activations: no saturation on either path */
    memset(w + 2, 0x80, 32);
    memset(x + 2, 127, 32);
    for (int isa = 0; isa <= (have_avx2 ? 1 : 0); isa++)
        EXPECT_NEAR(dot_isa((sl_kernel_isa)isa, SL_KT_Q8_0, w, x, 32), 0.125 * -128 * 127 * 32, 0);
}

typedef struct {
    int type;
    int64_t rows, cols;
    uint8_t *w;
    float *x;
    int n_tok;
} mm_case;

static void test_matmul_invariance(void)
{
    const int64_t rows = 37, cols = 512, max_tok = 7;
    sl_pool *pools[4] = {NULL};
    const int nthreads[4] = {1, 2, 3, 5};
    for (int i = 0; i < 4; i++)
        EXPECT_EQ_INT(sl_pool_create(nthreads[i], &pools[i]), 0);
    for (size_t t = 0; t < SL_ARRAY_LEN(WTYPES); t++) {
        int type = WTYPES[t], vt = sl_kernel_vec_type(type);
        size_t wr = row_bytes(type, cols), xr = row_bytes(vt, cols);
        uint8_t *w = malloc(wr * rows);
        for (int64_t r = 0; r < rows; r++)
            make_weight(type, w + wr * r, cols, r % 3 == 0);
        float *x = malloc(sizeof(float) * cols * max_tok);
        for (int64_t i = 0; i < cols * max_tok; i++)
            x[i] = frand();
        float *ref = malloc(sizeof(float) * rows * max_tok), *out = malloc(sizeof(float) * rows * max_tok);
        uint8_t *xa = malloc(xr);
        for (int isa = 0; isa <= max_isa; isa++) {
            EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
            /* reference: one dot per element, the activation quantized here */
            for (int64_t tk = 0; tk < max_tok; tk++) {
                EXPECT_EQ_INT(sl_kernel_quantize_row(vt, x + tk * cols, xa, cols), 0);
                for (int64_t r = 0; r < rows; r++)
                    EXPECT_EQ_INT(sl_kernel_dot(type, w + wr * r, xa, cols, &ref[tk * rows + r]), 0);
            }
            int mismatches = 0;
            for (int p = 0; p < 5; p++) {
                sl_pool *pool = p < 4 ? pools[p] : NULL;
                for (int64_t nt = 1; nt <= max_tok; nt++) {
                    /* tokens [max_tok - nt, max_tok): a token's row shifts position */
                    int64_t t0 = max_tok - nt;
                    memset(out, 0xff, sizeof(float) * rows * nt);
                    EXPECT_EQ_INT(sl_kernel_matmul(out, type, rows, cols, w, x + t0 * cols, nt, pool, 0), 0);
                    if (memcmp(out, ref + t0 * rows, sizeof(float) * rows * nt) != 0)
                        mismatches++;
                }
            }
            if (mismatches)
                T_FAIL_AT("%s isa %d: %d matmul runs differ from per-element dots",
                          sl_kernel_type_name(type), isa, mismatches);
        }
        /* the ISAs agree on matmul too */
        if (have_avx2) {
            float *o2 = malloc(sizeof(float) * rows * max_tok);
            sl_kernel_set_isa(SL_KISA_SCALAR);
            EXPECT_EQ_INT(sl_kernel_matmul(out, type, rows, cols, w, x, max_tok, pools[2], 0), 0);
            sl_kernel_set_isa(SL_KISA_AVX2);
            EXPECT_EQ_INT(sl_kernel_matmul(o2, type, rows, cols, w, x, max_tok, pools[1], 0), 0);
            EXPECT(memcmp(out, o2, sizeof(float) * rows * max_tok) == 0);
            free(o2);
        }
        free(w);
        free(x);
        free(ref);
        free(out);
        free(xa);
    }
    for (int i = 0; i < 4; i++)
        sl_pool_destroy(pools[i]);
}

static void test_matmul_blas_path(void)
{
    const int64_t rows = 70, cols = 96, nt = 40;
    const int types[] = {SL_KT_F32, SL_KT_F16, SL_KT_BF16};
    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(2, &pool), 0);
    for (size_t t = 0; t < SL_ARRAY_LEN(types); t++) {
        size_t wr = row_bytes(types[t], cols);
        uint8_t *w = malloc(wr * rows);
        for (int64_t r = 0; r < rows; r++)
            make_weight(types[t], w + wr * r, cols, false);
        float *x = malloc(sizeof(float) * cols * nt);
        for (int64_t i = 0; i < cols * nt; i++)
            x[i] = frand();
        float *a = malloc(sizeof(float) * rows * nt), *b = malloc(sizeof(float) * rows * nt);
        EXPECT_EQ_INT(sl_kernel_matmul(a, types[t], rows, cols, w, x, nt, pool, 0), 0);
        EXPECT_EQ_INT(sl_kernel_matmul(b, types[t], rows, cols, w, x, nt, pool, SL_MATMUL_ALLOW_BLAS), 0);
        double worst = 0;
        for (int64_t i = 0; i < rows * nt; i++)
            worst = fmax(worst, fabs((double)a[i] - b[i]));
        EXPECT(worst < 1e-4);
        free(w);
        free(x);
        free(a);
        free(b);
    }
    sl_pool_destroy(pool);
}

/* Every tile shape (1..SL_TILE_R rows x 1..SL_TILE_T tokens) of every ISA
 * equals the single dots of that ISA bitwise, for short and long rows (tails
 * of the block loop), raw weights (codes -128) and a padded output stride;
 * output slots outside the tile stay untouched. */
static void test_tile_equals_dots(void)
{
    const int64_t n32[] = {32, 96, 1024, 2816};
    const int64_t nk[] = {256, 768, 2816};
    const int64_t nf[] = {1, 33, 100, 1024};
    enum { OS = SL_TILE_R + 3 };
    int checked = 0;
    for (size_t ti = 0; ti < SL_ARRAY_LEN(WTYPES); ti++) {
        int type = WTYPES[ti], vt = sl_kernel_vec_type(type);
        size_t be = sl_kernel_block_elems(type);
        const int64_t *ns = be == 1 ? nf : be == 32 ? n32 : nk;
        size_t nn = be == 1 ? SL_ARRAY_LEN(nf) : be == 32 ? SL_ARRAY_LEN(n32) : SL_ARRAY_LEN(nk);
        for (size_t k = 0; k < nn; k++) {
            int64_t n = ns[k];
            size_t wr = row_bytes(type, n), xr = row_bytes(vt, n);
            uint8_t *w = malloc(wr * SL_TILE_R), *xa = malloc(xr * SL_TILE_T);
            float *xf = malloc(sizeof(float) * (size_t)n);
            for (int r = 0; r < SL_TILE_R; r++)
                make_weight(type, w + wr * r, n, r % 2 == 1);
            for (int t = 0; t < SL_TILE_T; t++) {
                void *a = make_act(type, n, xf);
                memcpy(xa + xr * t, a, xr);
                free(a);
            }
            for (int isa = 0; isa <= (have_avx2 ? 1 : 0); isa++) {
                EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
                sl_kernel_tile_fn tile = sl_kernel_tile_for(sl_kernel_vtab_get(), type);
                EXPECT(tile != NULL);
                float ref[SL_TILE_T][SL_TILE_R];
                for (int t = 0; t < SL_TILE_T; t++)
                    for (int r = 0; r < SL_TILE_R; r++)
                        EXPECT_EQ_INT(sl_kernel_dot(type, w + wr * r, xa + xr * t, n, &ref[t][r]), 0);
                for (int nr = 1; nr <= SL_TILE_R; nr++)
                    for (int nt = 1; nt <= SL_TILE_T; nt++) {
                        float out[SL_TILE_T * OS];
                        memset(out, 0xA5, sizeof out);
                        tile(w, wr, nr, xa, xr, nt, n, out, OS);
                        for (int t = 0; t < SL_TILE_T; t++)
                            for (int r = 0; r < OS; r++) {
                                uint32_t got;
                                memcpy(&got, &out[t * OS + r], 4);
                                if (t < nt && r < nr) {
                                    if (memcmp(&out[t * OS + r], &ref[t][r], 4) != 0)
                                        T_FAIL_AT("%s isa %d n=%lld tile %dx%d (%d,%d): %.9g != dot %.9g",
                                                  sl_kernel_type_name(type), isa, (long long)n, nr,
                                                  nt, r, t, out[t * OS + r], ref[t][r]);
                                } else if (got != 0xA5A5A5A5u) {
                                    T_FAIL_AT("%s tile %dx%d wrote outside at (%d,%d)",
                                              sl_kernel_type_name(type), nr, nt, r, t);
                                }
                                checked++;
                            }
                    }
            }
            free(w);
            free(xa);
            free(xf);
        }
    }
    EXPECT(checked > 1000);
}

/* A decode-sized and a batch-sized matmul (rows not a multiple of the tile,
 * 1 and 16 tokens) equal per-element dots bitwise on both ISAs, and the ISAs
 * agree. */
static void test_matmul_batch_sizes(void)
{
    const int64_t rows = 4 * 9 + 3, cols = 1024;
    const int ntoks[] = {1, 2, 3, 7, 9, 16};
    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &pool), 0);
    for (size_t ti = 0; ti < SL_ARRAY_LEN(WTYPES); ti++) {
        int type = WTYPES[ti], vt = sl_kernel_vec_type(type);
        size_t wr = row_bytes(type, cols), xr = row_bytes(vt, cols);
        uint8_t *w = malloc(wr * rows), *xa = malloc(xr);
        float *x = malloc(sizeof(float) * cols * 16), *ref = malloc(sizeof(float) * rows * 16);
        float *out = malloc(sizeof(float) * rows * 16), *first = malloc(sizeof(float) * rows * 16);
        for (int64_t r = 0; r < rows; r++)
            make_weight(type, w + wr * r, cols, r % 5 == 0);
        for (int64_t i = 0; i < cols * 16; i++)
            x[i] = frand();
        for (int isa = 0; isa <= max_isa; isa++) {
            EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
            for (int64_t t = 0; t < 16; t++) {
                EXPECT_EQ_INT(sl_kernel_quantize_row(vt, x + t * cols, xa, cols), 0);
                for (int64_t r = 0; r < rows; r++)
                    EXPECT_EQ_INT(sl_kernel_dot(type, w + wr * r, vt == SL_KT_F32 ? (void *)(x + t * cols) : xa, cols,
                                                &ref[t * rows + r]), 0);
            }
            if (isa == 0)
                memcpy(first, ref, sizeof(float) * rows * 16);
            else
                EXPECT(memcmp(first, ref, sizeof(float) * rows * 16) == 0);
            for (size_t k = 0; k < SL_ARRAY_LEN(ntoks); k++)
                for (int p = 0; p < 2; p++) {
                    EXPECT_EQ_INT(sl_kernel_matmul(out, type, rows, cols, w, x, ntoks[k],
                                                   p ? pool : NULL, 0), 0);
                    if (memcmp(out, ref, sizeof(float) * rows * (size_t)ntoks[k]) != 0)
                        T_FAIL_AT("%s isa %d n_tok %d pool %d: matmul differs from dots",
                                  sl_kernel_type_name(type), isa, ntoks[k], p);
                }
        }
        free(w);
        free(xa);
        free(x);
        free(ref);
        free(out);
        free(first);
    }
    sl_pool_destroy(pool);
}

/* Q8_0 and Q4_0 repacked in 16-row groups give bitwise the row layout's results, under
 * every ISA (the scalar reference reads the repacked form too), for 1-16
 * tokens, several widths, raw weights with -128 codes, with and without a
 * pool. Repacking is refused where it does not apply. */
static void test_matmul_r16(void)
{
    void *rp = NULL;
    int rt = -1;
    uint8_t wz[34 * 3] = {0};
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q8_0, wz, 3, 32, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_F16, wz, 16, 32, &rp, &rt), SL_EUNSUPPORTED);
    if (max_isa < 2) {
        printf("no AVX-512 VNNI: repacking is not used on this CPU\n");
        return;
    }
    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &pool), 0);
    const int64_t shapes[][2] = {{16, 32}, {48, 96}, {32, 1024}};
    const int ntoks[] = {1, 2, 7, 9, 16};
    for (size_t si = 0; si < 2 * SL_ARRAY_LEN(shapes); si++) {
        int type = si % 2 ? SL_KT_Q4_0 : SL_KT_Q8_0;
        int64_t rows = shapes[si / 2][0], cols = shapes[si / 2][1];
        size_t wr = row_bytes(type, cols);
        uint8_t *w = malloc(wr * (size_t)rows);
        for (int64_t r = 0; r < rows; r++)
            make_weight(type, w + wr * (size_t)r, cols, r % 3 == 0);
        float *x = malloc(sizeof(float) * (size_t)(cols * 16));
        for (int64_t i = 0; i < cols * 16; i++)
            x[i] = frand();
        float *ref = malloc(sizeof(float) * (size_t)(rows * 16)), *out = malloc(sizeof(float) * (size_t)(rows * 16));
        EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
        EXPECT_EQ_INT(sl_kernel_repack(type, w, rows, cols, &rp, &rt), 0);
        EXPECT_EQ_INT(rt, type == SL_KT_Q4_0 ? SL_KT_Q4_0_R16 : SL_KT_Q8_0_R16);
        for (int isa = 0; isa <= max_isa; isa++)
            for (size_t k = 0; k < SL_ARRAY_LEN(ntoks); k++)
                for (int pl = 0; pl < 2; pl++) {
                    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
                    EXPECT_EQ_INT(sl_kernel_matmul(ref, type, rows, cols, w, x, ntoks[k], NULL, 0), 0);
                    EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
                    memset(out, 0xff, sizeof(float) * (size_t)(rows * 16));
                    EXPECT_EQ_INT(sl_kernel_matmul(out, rt, rows, cols, rp, x, ntoks[k], pl ? pool : NULL, 0), 0);
                    if (memcmp(out, ref, sizeof(float) * (size_t)(rows * ntoks[k])) != 0)
                        T_FAIL_AT("%s r16 %lldx%lld isa %d n_tok %d pool %d: differs from the rows",
                                  sl_kernel_type_name(type), (long long)rows, (long long)cols, isa,
                                  ntoks[k], pl);
                }
        sl_free(rp);
        free(w);
        free(x);
        free(ref);
        free(out);
    }
    sl_kernel_set_isa((sl_kernel_isa)max_isa);
    sl_pool_destroy(pool);
}

/* Fused parts (one quantization, one pool run over the groups of all parts)
 * equal separate matmuls bitwise: repacked Q8_0, Q4_0, Q4_K and Q6_K parts, mixes
 * of types (which fall back to one matmul per part), every ISA, 1-9 tokens. */
static void test_matmul_parts(void)
{
    if (max_isa < 2)
        return; /* nothing is repacked on this CPU: parts are plain matmuls */
    const int64_t cols = 512, rows[3] = {32, 16, 48};
    const int mixes[][3] = {{SL_KT_Q8_0, SL_KT_Q8_0, SL_KT_Q8_0},
                            {SL_KT_Q4_0, SL_KT_Q4_0, SL_KT_Q4_0},
                            {SL_KT_Q4_K, SL_KT_Q4_K, SL_KT_Q4_K},
                            {SL_KT_Q6_K, SL_KT_Q6_K, SL_KT_Q6_K},
                            {SL_KT_Q8_0, SL_KT_Q4_0, SL_KT_Q8_0},
                            {SL_KT_Q4_K, SL_KT_Q4_0, SL_KT_Q4_K},
                            {SL_KT_Q6_K, SL_KT_Q4_K, SL_KT_Q6_K}};
    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &pool), 0);
    float *x = malloc(sizeof(float) * (size_t)(cols * 9));
    for (int64_t i = 0; i < cols * 9; i++)
        x[i] = frand();
    for (size_t m = 0; m < SL_ARRAY_LEN(mixes); m++) {
        void *rp[3];
        float *sep[3], *fused[3];
        sl_kernel_mm_part parts[3];
        EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
        for (int p = 0; p < 3; p++) {
            size_t wr = row_bytes(mixes[m][p], cols);
            uint8_t *w = malloc(wr * (size_t)rows[p]);
            for (int64_t r = 0; r < rows[p]; r++)
                make_weight(mixes[m][p], w + wr * (size_t)r, cols, r % 4 == 1);
            int rt = 0;
            EXPECT_EQ_INT(sl_kernel_repack(mixes[m][p], w, rows[p], cols, &rp[p], &rt), 0);
            free(w);
            sep[p] = malloc(sizeof(float) * (size_t)(rows[p] * 9));
            fused[p] = malloc(sizeof(float) * (size_t)(rows[p] * 9));
            parts[p] = (sl_kernel_mm_part){fused[p], rt, rows[p], rp[p]};
        }
        for (int isa = 0; isa <= max_isa; isa++)
            for (int nt = 1; nt <= 9; nt += 4)
                for (int pl = 0; pl < 2; pl++) {
                    EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
                    for (int p = 0; p < 3; p++) {
                        EXPECT_EQ_INT(sl_kernel_matmul(sep[p], parts[p].type, rows[p], cols, rp[p],
                                                       x, nt, pl ? pool : NULL, 0), 0);
                        memset(fused[p], 0xff, sizeof(float) * (size_t)(rows[p] * 9));
                    }
                    EXPECT_EQ_INT(sl_kernel_matmul_parts(parts, 3, cols, x, nt, pl ? pool : NULL), 0);
                    for (int p = 0; p < 3; p++)
                        if (memcmp(sep[p], fused[p], sizeof(float) * (size_t)(rows[p] * nt)))
                            T_FAIL_AT("mix %zu isa %d n_tok %d pool %d part %d: fused differs", m,
                                      isa, nt, pl, p);
                }
        for (int p = 0; p < 3; p++) {
            sl_free(rp[p]);
            free(sep[p]);
            free(fused[p]);
        }
    }
    free(x);
    sl_kernel_set_isa((sl_kernel_isa)max_isa);
    sl_pool_destroy(pool);
}

/* A Q4_K row of random super-blocks whose 6-bit scales and mins are drawn
 * from {0, 63, random} (the packed form's extremes, every high-bit path of
 * the unpacking), with random nibbles and sane fp16 d and dmin. */
static void make_q4k_extreme(uint8_t *w, int64_t n)
{
    for (int64_t b = 0; b < n / 256; b++) {
        uint8_t *blk = w + b * SL_Q4_K_BYTES;
        set_half(blk, frand() * 0.02f);
        set_half(blk + 2, frand() * 0.02f);
        uint8_t *sc = blk + 4, *qs = blk + 16;
        memset(sc, 0, 12);
        for (int j = 0; j < 8; j++) {
            int v[2];
            for (int k = 0; k < 2; k++) {
                int pick = (int)(next_u64() % 3);
                v[k] = pick == 0 ? 0 : pick == 1 ? 63 : (int)(next_u64() % 64);
            }
            /* inverse of sl_kernel_q4k_scale_min: v[0] the scale, v[1] the min */
            if (j < 4) {
                sc[j] = (uint8_t)(sc[j] | v[0]);
                sc[j + 4] = (uint8_t)(sc[j + 4] | v[1]);
            } else {
                sc[j + 4] = (uint8_t)((v[0] & 0xF) | (v[1] & 0xF) << 4);
                sc[j - 4] = (uint8_t)(sc[j - 4] | (v[0] >> 4) << 6);
                sc[j] = (uint8_t)(sc[j] | (v[1] >> 4) << 6);
            }
        }
        for (int i = 0; i < 128; i++)
            qs[i] = (uint8_t)next_u64();
    }
}

/* The n_tok values the K-quant R16 tests run. */
static const int r16k_ntoks[] = {1, 2, 3, 7, 8, 9, 16};

/* rp (type rt, the repacked form of the type-typed w) against the row
 * layout's scalar matmul, bitwise, under every ISA, for every n_tok of
 * r16k_ntoks, with and without pool; nothing may be written past the n_tok
 * output rows. ref and out hold rows x 16 floats. Returns the comparisons made. */
static int compare_r16_rows(int type, const char *name, int64_t rows, int64_t cols,
                            const uint8_t *w, const void *rp, int rt, const float *x, float *ref,
                            float *out, sl_pool *pool)
{
    const int *ntoks = r16k_ntoks;
    int compared = 0;
    for (int isa = 0; isa <= max_isa; isa++)
        for (size_t k = 0; k < SL_ARRAY_LEN(r16k_ntoks); k++)
            for (int pl = 0; pl < 2; pl++) {
                EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_SCALAR), 0);
                EXPECT_EQ_INT(sl_kernel_matmul(ref, type, rows, cols, w, x, ntoks[k],
                                               NULL, 0), 0);
                EXPECT_EQ_INT(sl_kernel_set_isa((sl_kernel_isa)isa), 0);
                memset(out, 0xff, sizeof(float) * (size_t)(rows * 16));
                EXPECT_EQ_INT(sl_kernel_matmul(out, rt, rows, cols, rp, x, ntoks[k],
                                               pl ? pool : NULL, 0), 0);
                if (memcmp(out, ref, sizeof(float) * (size_t)(rows * ntoks[k])) != 0)
                    T_FAIL_AT("%s r16 %lldx%lld isa %d n_tok %d pool %d: differs from the rows",
                              name, (long long)rows, (long long)cols, isa, ntoks[k], pl);
                /* nothing written past the n_tok output rows */
                if (ntoks[k] < 16) {
                    uint32_t past;
                    memcpy(&past, out + rows * ntoks[k], 4);
                    EXPECT_EQ_INT((long long)past, 0xffffffffLL);
                }
                compared++;
            }
    return compared;
}

/* Q4_K repacked in 16-row groups equals the row layout's matmul bitwise
 * under every ISA (the row matmul's reference is the scalar ISA), for
 * 1-16 tokens (tiles of 8 and their remainders), widths 256..2048, quantized,
 * raw and extreme super-blocks, with and without a pool. The repacked
 * scales and mins are checked against an independent decoding. Repacking is
 * refused where it does not apply. */
static void test_matmul_r16_q4k(void)
{
    void *rp = NULL;
    int rt = -1;
    static uint8_t wz[SL_Q4_K_BYTES * 32];
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, wz, 15, 256, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, wz, 16, 128, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, wz, 16, 384, &rp, &rt), SL_EUNSUPPORTED);
    if (max_isa < 2) {
        EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, wz, 16, 256, &rp, &rt), SL_EUNSUPPORTED);
        return;
    }
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX2), 0);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, wz, 16, 256, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
    size_t bytes = 0;
    EXPECT_EQ_INT(sl_kernel_repack_size(SL_KT_Q4_K, 32, 512, &bytes, &rt), 0);
    EXPECT_EQ_INT((long long)bytes, 2 * 2 * 2368);
    EXPECT_EQ_INT(rt, SL_KT_Q4_K_R16);

    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &pool), 0);
    const int64_t shapes[][2] = {{16, 256}, {48, 512}, {32, 2048}, {16, 1280}};
    int compared = 0;
    for (size_t si = 0; si < SL_ARRAY_LEN(shapes); si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        size_t wr = row_bytes(SL_KT_Q4_K, cols);
        uint8_t *w = malloc(wr * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) {
            if (r % 3 == 2)
                make_q4k_extreme(w + wr * (size_t)r, cols);
            else
                make_weight(SL_KT_Q4_K, w + wr * (size_t)r, cols, r % 3 == 0);
        }
        float *x = malloc(sizeof(float) * (size_t)(cols * 16));
        for (int64_t i = 0; i < cols * 16; i++)
            x[i] = frand() * (i % 97 == 0 ? 50.0f : 1.0f);
        float *ref = malloc(sizeof(float) * (size_t)(rows * 16));
        float *out = malloc(sizeof(float) * (size_t)(rows * 16));
        EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
        EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q4_K, w, rows, cols, &rp, &rt), 0);
        EXPECT_EQ_INT(rt, SL_KT_Q4_K_R16);
        /* the decoded scales and mins of row 5 (or 2), super-block 0, by the
         * 6-bit packing spelled out independently of the kernels' helper */
        {
            int r = rows > 5 ? 5 : 2;
            const uint8_t *q = w + wr * (size_t)r + 4;
            const sl_blk_q4_K_r16 *g = rp;
            for (int j = 0; j < 8; j++) {
                int sc = j < 4 ? q[j] % 64 : (q[j + 4] % 16) + (q[j - 4] / 64) * 16;
                int m = j < 4 ? q[j + 4] % 64 : (q[j + 4] / 16) + (q[j] / 64) * 16;
                EXPECT_EQ_INT(g->sc[j][r], sc);
                EXPECT_EQ_INT(g->m[j / 2][r][j % 2], m);
            }
        }
        compared += compare_r16_rows(SL_KT_Q4_K, "q4_K", rows, cols, w, rp, rt, x, ref, out, pool);
        sl_free(rp);
        free(w);
        free(x);
        free(ref);
        free(out);
    }
    EXPECT_EQ_INT(compared, (int)SL_ARRAY_LEN(shapes) * (max_isa + 1) * (int)SL_ARRAY_LEN(r16k_ntoks) * 2);
    sl_kernel_set_isa((sl_kernel_isa)max_isa);
    sl_pool_destroy(pool);
}

/* A Q6_K row of random super-blocks: scales drawn from {-128, 127, random},
 * codes random, or all 0 or all 63 in some super-blocks (ql/qh all zero or
 * all ones), sane fp16 d. */
static void make_q6k_extreme(uint8_t *w, int64_t n)
{
    for (int64_t b = 0; b < n / 256; b++) {
        uint8_t *blk = w + b * SL_Q6_K_BYTES;
        int kind = (int)(next_u64() % 4);
        for (int i = 0; i < 192; i++)
            blk[i] = kind == 0 ? 0 : kind == 1 ? 0xFF : (uint8_t)next_u64();
        for (int i = 0; i < 16; i++) {
            int pick = (int)(next_u64() % 3);
            int v = pick == 0 ? -128 : pick == 1 ? 127 : (int)(next_u64() % 256) - 128;
            blk[192 + i] = (uint8_t)(int8_t)v;
        }
        set_half(blk + 208, frand() * 0.01f);
    }
}

/* Element e's 6-bit code of a Q6_K block, spelled out from the file format
 * (ql low nibbles for elements 0-31 and 64-95 of each 128, high nibbles for
 * 32-63 and 96-127 alternating per 32; qh 2 bits per element). */
static int q6k_file_code(const uint8_t *blk, int e)
{
    int h = e / 128, g = (e % 128) / 32, l = e % 32;
    int lo = blk[64 * h + 32 * (g % 2) + l];
    lo = g < 2 ? lo % 16 : lo / 16;
    return lo + 16 * ((blk[128 + 32 * h + l] >> (2 * g)) % 4);
}

/* Q6_K repacked in 16-row groups equals the row layout's matmul bitwise
 * under every ISA (the row matmul's reference is the scalar ISA), for
 * 1-16 tokens, widths 256..2048, quantized, raw and extreme super-blocks,
 * with and without a pool. The repacked fields are checked against the file
 * bytes decoded independently. Repacking is refused where it does not
 * apply. */
static void test_matmul_r16_q6k(void)
{
    void *rp = NULL;
    int rt = -1;
    static uint8_t wz[SL_Q6_K_BYTES * 32];
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 15, 256, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 16, 128, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 16, 320, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 0, 256, &rp, &rt), SL_EUNSUPPORTED);
    if (max_isa < 2) {
        EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 16, 256, &rp, &rt), SL_EUNSUPPORTED);
        return;
    }
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX2), 0);
    EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, wz, 16, 256, &rp, &rt), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
    size_t bytes = 0;
    EXPECT_EQ_INT(sl_kernel_repack_size(SL_KT_Q6_K, 48, 512, &bytes, &rt), 0);
    EXPECT_EQ_INT((long long)bytes, 3 * 2 * 3392);
    EXPECT_EQ_INT(rt, SL_KT_Q6_K_R16);

    sl_pool *pool = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &pool), 0);
    const int64_t shapes[][2] = {{16, 256}, {48, 512}, {32, 2048}, {16, 1280}};
    int compared = 0;
    for (size_t si = 0; si < SL_ARRAY_LEN(shapes); si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        size_t wr = row_bytes(SL_KT_Q6_K, cols);
        uint8_t *w = malloc(wr * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) {
            if (r % 3 == 2)
                make_q6k_extreme(w + wr * (size_t)r, cols);
            else
                make_weight(SL_KT_Q6_K, w + wr * (size_t)r, cols, r % 3 == 0);
        }
        float *x = malloc(sizeof(float) * (size_t)(cols * 16));
        for (int64_t i = 0; i < cols * 16; i++)
            x[i] = frand() * (i % 97 == 0 ? 50.0f : 1.0f);
        float *ref = malloc(sizeof(float) * (size_t)(rows * 16));
        float *out = malloc(sizeof(float) * (size_t)(rows * 16));
        EXPECT_EQ_INT(sl_kernel_set_isa(SL_KISA_AVX512), 0);
        EXPECT_EQ_INT(sl_kernel_repack(SL_KT_Q6_K, w, rows, cols, &rp, &rt), 0);
        EXPECT_EQ_INT(rt, SL_KT_Q6_K_R16);
        /* the repacked d, scales and codes of every row of the last group's
         * last super-block against the file bytes */
        {
            int64_t nbk = cols / 256;
            const sl_blk_q6_K_r16 *gb = (const sl_blk_q6_K_r16 *)rp + (rows / 16) * nbk - 1;
            for (int r = 0; r < 16; r++) {
                const uint8_t *blk = w + wr * (size_t)(rows - 16 + r) + (size_t)(nbk - 1) * SL_Q6_K_BYTES;
                uint16_t dh;
                memcpy(&dh, blk + 208, 2);
                EXPECT(gb->d[r] == sl_kernel_fp16_to_f32(dh));
                for (int i = 0; i < 16; i++)
                    EXPECT_EQ_INT(gb->sc[i][r], (int8_t)blk[192 + i]);
                for (int e = 0; e < 256; e += 5) {
                    int h = e / 128, g = (e % 128) / 32, l = e % 32;
                    int lo = gb->ql[h][g % 2][l / 4][r][l % 4];
                    int code = (g < 2 ? lo % 16 : lo / 16) + 16 * ((gb->qh[h][l / 4][r][l % 4] >> (2 * g)) % 4);
                    EXPECT_EQ_INT(code, q6k_file_code(blk, e));
                }
            }
        }
        compared += compare_r16_rows(SL_KT_Q6_K, "q6_K", rows, cols, w, rp, rt, x, ref, out, pool);
        sl_free(rp);
        free(w);
        free(x);
        free(ref);
        free(out);
    }
    EXPECT_EQ_INT(compared, (int)SL_ARRAY_LEN(shapes) * (max_isa + 1) * (int)SL_ARRAY_LEN(r16k_ntoks) * 2);
    sl_kernel_set_isa((sl_kernel_isa)max_isa);
    sl_pool_destroy(pool);
}

static void test_matmul_errors(void)
{
    float out[4], x[64] = {0};
    uint8_t w[256] = {0};
    EXPECT_EQ_INT(sl_kernel_matmul(out, SL_KT_Q8_0, 1, 48, w, x, 1, NULL, 0), SL_EINVAL);
    EXPECT_EQ_INT(sl_kernel_matmul(out, SL_KT_Q8_K, 1, 256, w, x, 1, NULL, 0), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_matmul(out, 77, 1, 32, w, x, 1, NULL, 0), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_kernel_matmul(NULL, SL_KT_F32, 1, 32, w, x, 1, NULL, 0), SL_EINVAL);
    EXPECT_EQ_INT(sl_kernel_matmul(out, SL_KT_F32, 0, 32, w, x, 1, NULL, 0), 0);
}

int main(void)
{
    have_avx2 = sl_kernel_set_isa(SL_KISA_AVX2) == 0;
    max_isa = sl_kernel_set_isa(SL_KISA_AVX512) == 0 ? 2 : have_avx2 ? 1 : 0;
    printf("kernels: testing ISAs up to %d\n", max_isa);
    if (!have_avx2)
        fprintf(stderr, "no AVX2 on this CPU: checking the scalar kernels only\n");
    RUN(test_dot_isa_equal_and_accurate);
    RUN(test_dot_q8_0_golden);
    RUN(test_matmul_invariance);
    RUN(test_matmul_blas_path);
    RUN(test_tile_equals_dots);
    RUN(test_matmul_batch_sizes);
    RUN(test_matmul_r16);
    RUN(test_matmul_r16_q4k);
    RUN(test_matmul_r16_q6k);
    RUN(test_matmul_parts);
    RUN(test_matmul_errors);
    return TEST_REPORT();
}
