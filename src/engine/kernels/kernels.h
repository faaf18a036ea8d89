/*
 * kernels: the compute kernels of the local CPU engine.
 *
 * Owns the GGUF tensor element types (block layouts identical to GGUF files,
 * bit for bit), half/bfloat conversion, row dequantization and reference
 * quantization, dot products of a weight row against a quantized activation,
 * the engine's matmul, and the small f32 ops a transformer needs (rmsnorm,
 * softmax, silu, rope...). Every kernel has a portable scalar version; an
 * AVX2+FMA+F16C version is picked at run time when the CPU has it.
 *
 * Types are plain int ids (the GGUF/ggml numbering), spelled SL_KT_* here so
 * this header stays independent of the GGUF reader's own enum.
 *
 * Activation formats: a weight of type T is multiplied with an activation row
 * quantized to sl_kernel_vec_type(T): Q8_0 for Q8_0/Q4_0 weights, Q8_K for
 * Q4_K/Q6_K weights, plain f32 for F32/F16/BF16 weights. Activation quants
 * are kept in [-127, 127] (never -128); the AVX2 integer kernels rely on it.
 *
 * Reduction-order contract (batch invariance, portability):
 *   - The integer part of every quantized dot (per block, or per super-block
 *     for the K types) is exact.
 *   - Floats are accumulated in a fixed order that both versions follow: one
 *     fused multiply-add per block for Q8_0/Q4_0 (acc = fma(dw * dx, dot,
 *     acc)), one fused multiply-add per super-block for Q4_K/Q6_K, 32 lanes plus a
 *     sequential tail for F32/F16/BF16, and a fixed horizontal sum. The scalar
 *     reference uses fmaf where the AVX2 version uses FMA, so the two give
 *     BITWISE identical results (tests check this).
 *   - sl_kernel_matmul computes every output element with one such dot, so a
 *     token's result does not depend on n_tok, on the thread count, nor on
 *     how rows are split - except on the opt-in BLAS path (see below).
 */
#ifndef SL_KERNELS_H
#define SL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* GGUF type ids (same numbers as the file format). */
#define SL_KT_F32 0
#define SL_KT_F16 1
#define SL_KT_Q4_0 2
#define SL_KT_Q8_0 8
#define SL_KT_Q4_K 12
#define SL_KT_Q6_K 14
#define SL_KT_Q8_K 15
#define SL_KT_BF16 30

/* Not a GGUF type: Q8_0 weights repacked at load time by sl_kernel_repack
 * into groups of 16 rows so that SIMD lanes are output rows (layout in
 * kernels_impl.h). Same values and same results as the Q8_0 rows. */
#define SL_KT_Q8_0_R16 1008
#define SL_KT_Q4_0_R16 1002 /* the same for Q4_0 */
#define SL_KT_Q4_K_R16 1012 /* the same for Q4_K (activations Q8_K) */
#define SL_KT_Q6_K_R16 1014 /* the same for Q6_K (activations Q8_K) */

/* Block sizes: elements per block and bytes per block. */
#define SL_QK8_0 32
#define SL_QK4_0 32
#define SL_QK_K 256
#define SL_Q8_0_BYTES 34  /* fp16 d, int8 qs[32] */
#define SL_Q4_0_BYTES 18  /* fp16 d, uint8 qs[16]: byte l = elem l (low) | elem l+16 (high) */
#define SL_Q4_K_BYTES 144 /* fp16 d, fp16 dmin, uint8 scales[12], uint8 qs[128] */
#define SL_Q6_K_BYTES 210 /* uint8 ql[128], uint8 qh[64], int8 scales[16], fp16 d */
#define SL_Q8_K_BYTES 292 /* float d, int8 qs[256], int16 bsums[16] */

/* Instruction-set choice for the kernels. AVX512 is AVX2 plus AVX-512 VNNI
 * matmuls for Q8_0, Q4_0, Q4_K and Q6_K (repacked, SL_KT_*_R16) and Q4_K weights
 * in rows (same results). */
typedef enum { SL_KISA_SCALAR = 0, SL_KISA_AVX2 = 1, SL_KISA_AVX512 = 2 } sl_kernel_isa;

/* Returns the ISA the kernels use now: the best the CPU has (AVX2 needs
 * avx2+fma+f16c; AVX512 also avx512f/bw/vl/dq/vnni and the OS saving ZMM
 * state), capped by the environment variable SLUICE_KERNELS ("scalar" or
 * "avx2"). */
sl_kernel_isa sl_kernel_get_isa(void);
/* Forces an ISA (tests, benchmarks; not while kernels run on other threads).
 * Returns 0, or SL_EUNSUPPORTED if the CPU lacks it. */
int sl_kernel_set_isa(sl_kernel_isa isa);

/* ---- half and bfloat ---- */
/* Exact conversions; f32->half/bf16 rounds to nearest even, overflow gives
 * inf, NaN stays NaN (quiet). */
float sl_kernel_fp16_to_f32(uint16_t h);
uint16_t sl_kernel_f32_to_fp16(float f);
float sl_kernel_bf16_to_f32(uint16_t h);
uint16_t sl_kernel_f32_to_bf16(float f);
void sl_kernel_fp16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void sl_kernel_f32_to_fp16_row(const float *src, uint16_t *dst, size_t n);
void sl_kernel_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void sl_kernel_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

/* ---- types ---- */
/* Returns true for the types this module handles. */
bool sl_kernel_type_known(int type);
/* Short name ("q4_K"), or "?" for an unknown type. */
const char *sl_kernel_type_name(int type);
/* Elements per block (1 for float types), 0 for an unknown type. */
size_t sl_kernel_block_elems(int type);
/* Bytes per block, 0 for an unknown type. */
size_t sl_kernel_block_bytes(int type);
/* Bytes of a row of n elements into *out. SL_EUNSUPPORTED for an unknown
 * type, SL_EINVAL when n is not a multiple of the block size or overflows. */
int sl_kernel_row_bytes(int type, int64_t n, size_t *out);
/* The activation type a weight of this type is multiplied with, or -1. */
int sl_kernel_vec_type(int type);

/* ---- rows ----
 * n must be a multiple of the block size (SL_EINVAL otherwise). */
/* Decodes n elements of type into dst. 0, SL_EINVAL or SL_EUNSUPPORTED. */
int sl_kernel_dequantize_row(int type, const void *src, float *dst, int64_t n);
/* Encodes n floats as type (any type here but the f32->f32 copy is allowed).
 * Reference quantizers; error bounds per element, with A = max |x| of the
 * block (super-block for K types) and R = max(x) - min(0, min x):
 *   Q8_0 <= A/254 * 1.002 + E   Q8_K <= A/254 * 1.0001   Q4_0 <= A/8 * 1.002 + E
 *   Q4_K <= R/28 + E            Q6_K <= A/60 + E         F16/BF16: one rounding.
 * E = 2^-18 covers fp16 scales of tiny blocks, which fall into the fp16
 * subnormal range where the scale has only absolute precision 2^-24.
 * Non-finite inputs give an unspecified but valid block. */
int sl_kernel_quantize_row(int type, const float *src, void *dst, int64_t n);

/* ---- dot products ----
 * w: one weight row of type wtype; x: the activation row in
 * sl_kernel_vec_type(wtype) format; n elements. Returns 0 and the dot product
 * in *out, or SL_EINVAL/SL_EUNSUPPORTED. Uses the current ISA. */
int sl_kernel_dot(int wtype, const void *w, const void *x, int64_t n, float *out);

/* ---- matmul ----
 * out[t][r] = dot(W row r, X row t) for t < n_tok, r < rows.
 *   out: f32 [n_tok][rows]; W: wtype, [rows][cols] rows of sl_kernel_row_bytes;
 *   X: f32 [n_tok][cols]. cols must be a multiple of wtype's block size.
 * X rows are converted once to the activation format; output rows are split
 * across the pool (NULL pool: this thread only). Batch invariant (header
 * comment) unless SL_MATMUL_ALLOW_BLAS is passed: then F32/F16/BF16 weights
 * with n_tok >= SL_MATMUL_BLAS_MIN_TOK go through cblas_sgemm, which is
 * faster for prompts but whose summation order depends on the shapes and
 * on the pool's thread count (the rows are split across the pool, one
 * single-threaded sgemm per part).
 * Returns 0, SL_EINVAL, SL_EUNSUPPORTED or SL_ENOMEM (scratch is sl_malloc'd
 * and freed inside). */
#define SL_MATMUL_ALLOW_BLAS 1u
/* Measured with 2048x2048 weights on 2 cores (shared, noisy): sgemm beats the
 * dot path from about 8 tokens for F32 and from 32-64 tokens for F16 (which
 * pays for the tile conversion); 32 is the common choice. */
#define SL_MATMUL_BLAS_MIN_TOK 32
int sl_kernel_matmul(float *out, int wtype, int64_t rows, int64_t cols, const void *w,
                     const float *x, int64_t n_tok, sl_pool *pool, unsigned flags);

/* ---- load-time repacking ----
 * For Q8_0 and Q4_0 weights with rows % 16 == 0, and Q4_K and Q6_K weights
 * with rows % 16 == 0 and cols % 256 == 0, on a CPU with the AVX512 kernels:
 * the SL_KT_Q8_0_R16, SL_KT_Q4_0_R16, SL_KT_Q4_K_R16 or SL_KT_Q6_K_R16 form
 * of W (the Q4_K form is 64 bytes per 16 rows and super-block larger than
 * the rows: the scales stored decoded; the Q6_K form 32: the row scales
 * stored as f32). sl_kernel_matmul
 * on it gives bitwise the results of the original under every ISA (the
 * scalar reference reads the repacked form too).
 * sl_kernel_repack_size gives the repacked form's bytes and type. Returns 0,
 * SL_EUNSUPPORTED when this type/shape/CPU gains nothing from repacking (use
 * W as it is) or SL_EINVAL. sl_kernel_repack_into writes that form into dst
 * (bytes from repack_size; only after it returned 0). sl_kernel_repack does
 * both into an sl_malloc'd *out (caller frees); it also returns SL_ENOMEM. */
int sl_kernel_repack_size(int type, int64_t rows, int64_t cols, size_t *bytes, int *out_type);
void sl_kernel_repack_into(int type, const void *w, int64_t rows, int64_t cols, void *dst);
int sl_kernel_repack(int type, const void *w, int64_t rows, int64_t cols, void **out,
                     int *out_type);

/* Several matmuls of the same input: out_i = W_i x for parts that share
 * cols (Q, K and V of a layer; gate and up). When all parts have the same
 * repacked type (SL_KT_*_R16), x is quantized once and one pool run splits
 * the row groups of all parts; otherwise it is sl_kernel_matmul per part.
 * Same results either way. Returns what sl_kernel_matmul returns. */
typedef struct {
    float *out;   /* [n_tok][rows] */
    int type;     /* weight type */
    int64_t rows;
    const void *w;
} sl_kernel_mm_part;
int sl_kernel_matmul_parts(const sl_kernel_mm_part *parts, int n_parts, int64_t cols,
                           const float *x, int64_t n_tok, sl_pool *pool);

/* ---- attention over one head ----
 * Order contract (both ISAs, bitwise equal): a score is 8 fused
 * multiply-add lanes over the first hd & ~7 dims (lane l takes dims
 * l, l+8, ...), the fixed horizontal sum of sl_kernel_hsum8, then the tail
 * dims by fmaf in order, then one multiply by scale. Every output of
 * attn_accum is one fmaf chain over the n keys in order. Neither depends on
 * how many keys are handled per call block by block, so attention over a
 * paged cache equals attention over a contiguous one. */
/* out[j] = scale * dot(q, k + j * k_stride) for j < n; hd floats each. */
void sl_kernel_attn_scores(float *out, const float *q, const float *k, size_t k_stride, int n,
                           int hd, float scale);
/* o[i] = fmaf(a[j], v[j * v_stride + i], o[i]) for j = 0..n-1 in order, i < hd. */
void sl_kernel_attn_accum(float *o, const float *a, const float *v, size_t v_stride, int n,
                          int hd);
/* The same two over keys and values stored as f16 (the KV cache's compact
 * type): every element is widened exactly to f32 and then goes through the
 * very operations above, so each equals the f32 kernel on the widened rows. */
void sl_kernel_attn_scores_f16(float *out, const float *q, const uint16_t *k, size_t k_stride,
                               int n, int hd, float scale);
void sl_kernel_attn_accum_f16(float *o, const float *a, const uint16_t *v, size_t v_stride, int n,
                              int hd);

/* ---- f32 ops (in place allowed where out == x) ---- */
/* out = x / sqrt(mean(x^2) + eps) * weight (weight may be NULL: no scaling). */
void sl_kernel_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps);
/* x = softmax(x), numerically stable (max subtracted), with
 * sl_kernel_exp_step's exp and a fixed 8-lane order for the sum, so every ISA
 * gives the same bits. n >= 1. */
void sl_kernel_softmax(float *x, int64_t n);
/* out = x * sigmoid(x). */
void sl_kernel_silu(float *out, const float *x, int64_t n);
/* out = silu(gate) * up: the SwiGLU feed-forward gate. */
void sl_kernel_swiglu(float *out, const float *gate, const float *up, int64_t n);
void sl_kernel_mul(float *out, const float *a, const float *b, int64_t n);
void sl_kernel_add(float *out, const float *a, const float *b, int64_t n);
/* out = a * s. */
void sl_kernel_scale(float *out, const float *a, float s, int64_t n);
/* Rotary position embedding applied in place to n_heads heads of head_dim
 * floats each (x: [n_heads][head_dim]), rotating the first rot_dim (even,
 * <= head_dim) dims at position pos with theta_i = pos * freq_base^(-2i/rot_dim).
 * SL_ROPE_ADJACENT pairs (x[2i], x[2i+1]); SL_ROPE_NEOX pairs (x[i], x[i+rot_dim/2]). */
#define SL_ROPE_ADJACENT 0
#define SL_ROPE_NEOX 2
void sl_kernel_rope(float *x, int n_heads, int head_dim, int rot_dim, int64_t pos,
                    float freq_base, int mode);

#endif
