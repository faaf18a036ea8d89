/* The ggml tensor type table: ids and block layouts as the GGUF format defines
 * them. QK_K (256) is the super-block length of the k-quants and i-quants; the
 * byte counts are the packed block structs (fp16 scales are 2 bytes). */
#include "engine/gguf/gguf.h"

#define QK_K 256u

static const sl_ggml_type_traits type_table[SL_GGML_TYPE_LIMIT] = {
    [SL_GGML_F32] = {"F32", 1, 4},
    [SL_GGML_F16] = {"F16", 1, 2},
    [SL_GGML_Q4_0] = {"Q4_0", 32, 2 + 16},
    [SL_GGML_Q4_1] = {"Q4_1", 32, 2 + 2 + 16},
    [SL_GGML_Q5_0] = {"Q5_0", 32, 2 + 4 + 16},
    [SL_GGML_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16},
    [SL_GGML_Q8_0] = {"Q8_0", 32, 2 + 32},
    [SL_GGML_Q8_1] = {"Q8_1", 32, 4 + 4 + 32},
    [SL_GGML_Q2_K] = {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4},
    [SL_GGML_Q3_K] = {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12},
    [SL_GGML_Q4_K] = {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12},
    [SL_GGML_Q5_K] = {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12},
    [SL_GGML_Q6_K] = {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16},
    [SL_GGML_Q8_K] = {"Q8_K", QK_K, 4 + QK_K + QK_K / 8},
    [SL_GGML_IQ2_XXS] = {"IQ2_XXS", QK_K, 2 + QK_K / 4},
    [SL_GGML_IQ2_XS] = {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32},
    [SL_GGML_IQ3_XXS] = {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8},
    [SL_GGML_IQ1_S] = {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16},
    [SL_GGML_IQ4_NL] = {"IQ4_NL", 32, 2 + 16},
    [SL_GGML_IQ3_S] = {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},
    [SL_GGML_IQ2_S] = {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16},
    [SL_GGML_IQ4_XS] = {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64},
    [SL_GGML_I8] = {"I8", 1, 1},
    [SL_GGML_I16] = {"I16", 1, 2},
    [SL_GGML_I32] = {"I32", 1, 4},
    [SL_GGML_I64] = {"I64", 1, 8},
    [SL_GGML_F64] = {"F64", 1, 8},
    [SL_GGML_IQ1_M] = {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},
    [SL_GGML_BF16] = {"BF16", 1, 2},
    [SL_GGML_TQ1_0] = {"TQ1_0", QK_K, 2 + 4 * 13},
    [SL_GGML_TQ2_0] = {"TQ2_0", QK_K, 2 + 64},
    [SL_GGML_MXFP4] = {"MXFP4", 32, 1 + 16},
};

const sl_ggml_type_traits *sl_ggml_type_info(uint32_t type)
{
    if (type >= SL_GGML_TYPE_LIMIT || !type_table[type].name)
        return NULL;
    return &type_table[type];
}

const char *sl_ggml_type_name(uint32_t type)
{
    const sl_ggml_type_traits *t = sl_ggml_type_info(type);
    return t ? t->name : "?";
}

int sl_ggml_nbytes(uint32_t type, uint64_t n_elements, uint64_t *out)
{
    const sl_ggml_type_traits *t = sl_ggml_type_info(type);
    if (!t)
        return SL_EUNSUPPORTED;
    if (n_elements % t->block_size)
        return SL_EINVAL;
    uint64_t blocks = n_elements / t->block_size;
    if (blocks > UINT64_MAX / t->type_size)
        return SL_ERANGE;
    *out = blocks * t->type_size;
    return 0;
}

const char *sl_gguf_type_name(uint32_t type)
{
    static const char *const names[SL_GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return type < SL_GGUF_TYPE_COUNT ? names[type] : "?";
}
