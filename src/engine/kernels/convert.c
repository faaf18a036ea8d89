/* Exact half <-> f32 and bfloat16 <-> f32 conversions (scalar). */
#include "engine/kernels/kernels_impl.h"

#include <math.h>
#include <string.h>

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sl_kernel_fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {
            /* subnormal man * 2^-24: shift until the implicit bit (0x400) is set */
            int s = 0;
            while (!(man & 0x400)) {
                man <<= 1;
                s++;
            }
            u = sign | ((uint32_t)(113 - s) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (man << 13);
        if (man)
            u |= 0x400000; /* NaN comes out quiet, as the F16C instruction does */
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return bits_f32(u);
}

uint16_t sl_kernel_f32_to_fp16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) /* NaN: quiet, payload truncated */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00);
    if (a >= 0x38800000) { /* normal half: rebias, round to nearest even */
        uint32_t m = a - (112u << 23);
        m += 0xfff + ((m >> 13) & 1);
        return (uint16_t)(sign | (m >> 13));
    }
    /* subnormal or zero: scaling by 2^24 is exact, rint rounds to even; 1024
     * lands on the smallest normal's encoding */
    float scaled = bits_f32(a) * 16777216.0f;
    return (uint16_t)(sign | (uint16_t)rintf(scaled));
}

float sl_kernel_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t sl_kernel_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

void sl_kernel_fp16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    sl_kernel_vtab_get()->fp16_to_f32_row(src, dst, n);
}

void sl_kernel_f32_to_fp16_row(const float *src, uint16_t *dst, size_t n)
{
    sl_kernel_vtab_get()->f32_to_fp16_row(src, dst, n);
}

void sl_kernel_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = sl_kernel_bf16_to_f32(src[i]);
}

void sl_kernel_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = sl_kernel_f32_to_bf16(src[i]);
}
