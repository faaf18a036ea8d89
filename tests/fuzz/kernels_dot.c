/* Fuzzes the kernels with arbitrary weight bytes, as a GGUF file could hold:
 * byte 0 picks the weight type, the rest are its blocks. Dequantization must
 * not crash, and the scalar and AVX2 dots must agree bitwise (or both be NaN)
 * on any bytes, including inf/NaN scales and codes a quantizer never writes.
 * Where the CPU has AVX-512 VNNI, the matmul (one token, and two tokens,
 * which take the VNNI paths) and Q8_0, Q4_0, Q4_K and Q6_K repacked in 16-row
 * groups must give the same bits too: the row 16 times, and 16 rows that are
 * the row's blocks rotated (row r starts at block r), against the dots of
 * those rotations. */
#include "engine/kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int TYPES[] = {SL_KT_F32, SL_KT_F16, SL_KT_BF16, SL_KT_Q8_0,
                            SL_KT_Q4_0, SL_KT_Q4_K, SL_KT_Q6_K};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int type = TYPES[data[0] % (sizeof TYPES / sizeof TYPES[0])];
    size_t be = sl_kernel_block_elems(type), bb = sl_kernel_block_bytes(type);
    size_t nb = (size - 1) / bb;
    if (nb > 4096 / be)
        nb = 4096 / be;
    int64_t n = (int64_t)(nb * be);
    if (n == 0)
        return 0;
    /* copy so the kernels see an aligned row */
    void *w = sl_malloc(nb * bb);
    float *wf = sl_malloc(sizeof(float) * (size_t)n), *xf = sl_malloc(sizeof(float) * (size_t)n);
    int vt = sl_kernel_vec_type(type);
    size_t xb = 0;
    sl_kernel_row_bytes(vt, n, &xb);
    void *xa = sl_malloc(xb);
    if (!w || !wf || !xf || !xa)
        goto out;
    memcpy(w, data + 1, nb * bb);
    if (sl_kernel_dequantize_row(type, w, wf, n) != 0)
        abort();
    uint32_t s = (uint32_t)size * 2654435761u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        xf[i] = (float)(int32_t)s / 2147483648.0f;
    }
    if (sl_kernel_quantize_row(vt, xf, xa, n) != 0)
        abort();
    float r0 = 0, r1 = 0;
    sl_kernel_set_isa(SL_KISA_SCALAR);
    if (sl_kernel_dot(type, w, xa, n, &r0) != 0)
        abort();
    if (sl_kernel_set_isa(SL_KISA_AVX2) == 0) {
        if (sl_kernel_dot(type, w, xa, n, &r1) != 0)
            abort();
        if (memcmp(&r0, &r1, 4) != 0 && !(isnan(r0) && isnan(r1)))
            abort();
    }
    if (sl_kernel_set_isa(SL_KISA_AVX512) == 0) {
        float x2[2 * 4096], o[2];
        memcpy(x2, xf, sizeof(float) * (size_t)n);
        memcpy(x2 + n, xf, sizeof(float) * (size_t)n);
        for (int nt = 1; nt <= 2; nt++) {
            if (sl_kernel_matmul(o, type, 1, n, w, x2, nt, NULL, 0) != 0)
                abort();
            for (int t = 0; t < nt; t++)
                if (memcmp(&r0, &o[t], 4) != 0 && !(isnan(r0) && isnan(o[t])))
                    abort();
        }
        /* repacked in 16-row groups: every lane equals its row's scalar dot,
         * for one and two tokens */
        void *rp = NULL;
        int rt = 0;
        bool r16 = type == SL_KT_Q8_0 || type == SL_KT_Q4_0 || type == SL_KT_Q4_K ||
                   type == SL_KT_Q6_K;
        uint8_t *w16 = r16 ? sl_malloc(16 * nb * bb) : NULL;
        for (int rot = 0; w16 && rot < 2; rot++) {
            float ref[16];
            for (int r = 0; r < 16; r++) {
                uint8_t *dst = w16 + (size_t)r * nb * bb;
                size_t sh = rot ? (size_t)r % nb : 0;
                memcpy(dst, (const uint8_t *)w + sh * bb, (nb - sh) * bb);
                memcpy(dst + (nb - sh) * bb, w, sh * bb);
                sl_kernel_set_isa(SL_KISA_SCALAR);
                if (sl_kernel_dot(type, dst, xa, n, &ref[r]) != 0)
                    abort();
            }
            sl_kernel_set_isa(SL_KISA_AVX512);
            if (sl_kernel_repack(type, w16, 16, n, &rp, &rt) != 0)
                abort();
            float o16[32];
            for (int isa = SL_KISA_SCALAR; isa <= SL_KISA_AVX512; isa++) {
                if (sl_kernel_set_isa((sl_kernel_isa)isa) != 0)
                    continue;
                if (sl_kernel_matmul(o16, rt, 16, n, rp, x2, 2, NULL, 0) != 0)
                    abort();
                for (int i = 0; i < 32; i++)
                    if (memcmp(&ref[i % 16], &o16[i], 4) != 0 &&
                        !(isnan(ref[i % 16]) && isnan(o16[i])))
                        abort();
            }
            sl_free(rp);
            rp = NULL;
        }
        sl_free(w16);
    }
out:
    sl_free(w);
    sl_free(wf);
    sl_free(xf);
    sl_free(xa);
    return 0;
}
