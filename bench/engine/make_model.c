/* Writes a random-weight llama GGUF for the engine throughput benchmark.
 *
 * Shape (about 252 M parameters): dim 1024, 16 layers, 16 heads of 64, 8 KV
 * heads, feed-forward 2816, vocabulary 32000, context 2048. All matrices,
 * token_embd and output included, are stored in the chosen type, except that
 * a Q4_K model stores output.weight as Q6_K (as Q4_K_M files do); norms are
 * F32. The tokenizer is a byte-level BPE vocabulary of just the 256 byte
 * symbols with no merges, so every prompt byte is one token and the prompt
 * length in tokens is exact; it has no end-of-sequence token, so greedy
 * decoding always runs the full -n. The sampler sees only those 256 ids; the
 * model still computes all 32000 logits.
 *
 * usage: make_model TYPE OUT.gguf    TYPE: f16 | q8_0 | q4_0 | q4_k
 * On success prints to stdout
 *   params=<all weights> decode_bytes=<bytes of every tensor a decode step reads>
 * where decode_bytes is all layer tensors + output_norm + output (the one
 * token_embd row a step reads is left out). */
#include "core/core.h"
#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MM_DIM = 1024, MM_LAYERS = 16, MM_HEADS = 16, MM_KV_HEADS = 8, MM_FF = 2816,
       MM_VOCAB = 32000, MM_CTX = 2048, MM_MAX_TENSORS = 16 * MM_LAYERS + 8 };

typedef struct mm {
    sl_gguf_writer *w;
    void *bufs[MM_MAX_TENSORS];
    int n_bufs;
    uint64_t rng;
    uint64_t params, decode_bytes;
    float *row;
} mm;

static float unif(mm *m) /* [-1, 1) */
{
    uint64_t z = (m->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Adds a rows x cols tensor of type, uniform in [c - scale, c + scale). */
static int tensor(mm *m, const char *name, int type, int rows, int cols, float c, float scale,
                  bool decode_reads)
{
    size_t rb = 0;
    if (sl_kernel_row_bytes(type, cols, &rb) || m->n_bufs == MM_MAX_TENSORS) {
        fprintf(stderr, "make_model: %s: bad type/shape\n", name);
        return -1;
    }
    char *q = sl_malloc(rb * (size_t)rows);
    if (!q) {
        fprintf(stderr, "make_model: out of memory at %s\n", name);
        return -1;
    }
    m->bufs[m->n_bufs++] = q;
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < cols; i++)
            m->row[i] = c + scale * unif(m);
        char *dst = q + (size_t)r * rb;
        if (type == SL_KT_F32)
            memcpy(dst, m->row, rb);
        else if (type == SL_KT_F16)
            sl_kernel_f32_to_fp16_row(m->row, (uint16_t *)dst, (size_t)cols);
        else if (sl_kernel_quantize_row(type, m->row, dst, cols)) {
            fprintf(stderr, "make_model: %s: quantize failed\n", name);
            return -1;
        }
    }
    uint64_t dims[2] = {(uint64_t)cols, (uint64_t)rows};
    int rc = sl_gguf_writer_add_tensor(m->w, name, (sl_ggml_type)type, rows == 1 ? 1 : 2, dims, q,
                                       (uint64_t)rb * (uint64_t)rows);
    if (rc) {
        fprintf(stderr, "make_model: add %s: %s\n", name, sl_strerror(rc));
        return -1;
    }
    m->params += (uint64_t)rows * (uint64_t)cols;
    if (decode_reads)
        m->decode_bytes += (uint64_t)rb * (uint64_t)rows;
    return 0;
}

/* The GPT-2 byte alphabet: printable bytes stand for themselves, the others
 * map to U+0100 onward in byte order. Writes byte b's symbol as UTF-8. */
static void byte_symbol(int b, char out[4])
{
    static int cp[256];
    static bool init;
    if (!init) {
        int next = 256;
        for (int i = 0; i < 256; i++) {
            bool keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174);
            cp[i] = keep ? i : next++;
        }
        init = true;
    }
    int c = cp[b];
    if (c < 0x80) {
        out[0] = (char)c;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        out[2] = 0;
    }
}

static int build(mm *m, int T)
{
    sl_gguf_writer *w = m->w;
    int rc = 0;
    rc |= sl_gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= sl_gguf_writer_add_str(w, "general.name", "sluice-bench-random");
    rc |= sl_gguf_writer_add_u32(w, "llama.context_length", MM_CTX);
    rc |= sl_gguf_writer_add_u32(w, "llama.embedding_length", MM_DIM);
    rc |= sl_gguf_writer_add_u32(w, "llama.block_count", MM_LAYERS);
    rc |= sl_gguf_writer_add_u32(w, "llama.feed_forward_length", MM_FF);
    rc |= sl_gguf_writer_add_u32(w, "llama.attention.head_count", MM_HEADS);
    rc |= sl_gguf_writer_add_u32(w, "llama.attention.head_count_kv", MM_KV_HEADS);
    rc |= sl_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rc |= sl_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    rc |= sl_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    rc |= sl_gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt2");
    char sym[256][4];
    const char *toks[256];
    int32_t types[256];
    for (int b = 0; b < 256; b++) {
        byte_symbol(b, sym[b]);
        toks[b] = sym[b];
        types[b] = 1; /* normal */
    }
    rc |= sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 256);
    rc |= sl_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, 256);
    rc |= sl_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false);
    if (rc) {
        fprintf(stderr, "make_model: writing metadata failed\n");
        return -1;
    }
    const int D = MM_DIM, F = MM_FF, V = MM_VOCAB;
    const int KV = MM_KV_HEADS * (MM_DIM / MM_HEADS);
    /* scales keep activations of order one through the layers */
    const float s_d = 1.7f / 32.0f, s_f = 1.7f / 53.0f;
    if (tensor(m, "token_embd.weight", T, V, D, 0, 1.0f, false))
        return -1;
    for (int l = 0; l < MM_LAYERS; l++) {
        char n[96];
#define NM(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        if (tensor(m, NM("attn_norm.weight"), SL_KT_F32, 1, D, 1.0f, 0.1f, true) ||
            tensor(m, NM("attn_q.weight"), T, D, D, 0, s_d, true) ||
            tensor(m, NM("attn_k.weight"), T, KV, D, 0, s_d, true) ||
            tensor(m, NM("attn_v.weight"), T, KV, D, 0, s_d, true) ||
            tensor(m, NM("attn_output.weight"), T, D, D, 0, s_d, true) ||
            tensor(m, NM("ffn_norm.weight"), SL_KT_F32, 1, D, 1.0f, 0.1f, true) ||
            tensor(m, NM("ffn_gate.weight"), T, F, D, 0, s_d, true) ||
            tensor(m, NM("ffn_up.weight"), T, F, D, 0, s_d, true) ||
            tensor(m, NM("ffn_down.weight"), T, D, F, 0, s_f, true))
            return -1;
#undef NM
    }
    int out_t = T == SL_KT_Q4_K ? SL_KT_Q6_K : T;
    if (tensor(m, "output_norm.weight", SL_KT_F32, 1, D, 1.0f, 0.1f, true) ||
        tensor(m, "output.weight", out_t, V, D, 0, 3 * s_d, true))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_model f16|q8_0|q4_0|q4_k OUT.gguf\n");
        return 2;
    }
    static const struct { const char *name; int type; } types[] = {
        {"f16", SL_KT_F16}, {"q8_0", SL_KT_Q8_0}, {"q4_0", SL_KT_Q4_0}, {"q4_k", SL_KT_Q4_K}};
    int T = -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(argv[1], types[i].name))
            T = types[i].type;
    if (T < 0) {
        fprintf(stderr, "make_model: unknown type '%s' (f16, q8_0, q4_0, q4_k)\n", argv[1]);
        return 2;
    }
    mm m = {.rng = 42};
    m.row = sl_malloc(sizeof(float) * (MM_FF > MM_DIM ? MM_FF : MM_DIM));
    int rc = m.row && !sl_gguf_writer_new(&m.w) ? build(&m, T) : -1;
    if (!rc) {
        char err[512] = "";
        if (sl_gguf_writer_write_file(m.w, argv[2], err, sizeof err)) {
            fprintf(stderr, "make_model: %s: %s\n", argv[2], err);
            rc = -1;
        }
    }
    if (!rc)
        printf("params=%llu decode_bytes=%llu\n", (unsigned long long)m.params,
               (unsigned long long)m.decode_bytes);
    sl_gguf_writer_free(m.w);
    for (int i = 0; i < m.n_bufs; i++)
        sl_free(m.bufs[i]);
    sl_free(m.row);
    return rc ? 1 : 0;
}
