/* Writes the seed corpus for the model_load fuzz driver: tiny llama and qwen2
 * models at several weight types, built with the unit tests' fixture. Not part
 * of the build; run once when the seeds change:
 *   cc -std=gnu11 -Isrc -Itests/unit -Itests/unit/model tests/fuzz/gen/model_seeds.c \
 *      build/release/libsluice_lib.a $(pkg-config --libs libxxhash) -lpthread -lm \
 *      -o /tmp/model_seeds && /tmp/model_seeds tests/fuzz/corpus/model_load */
#include "model_fixture.h"

static void seed(const char *dir, const char *name, fx_config c)
{
    fx_model m;
    if (fx_build(&m, &c)) {
        fprintf(stderr, "%s: build failed\n", name);
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(m.bytes, 1, m.len, f);
        fclose(f);
        printf("%s %zu bytes\n", name, m.len);
    }
    fx_free(&m);
}

static fx_config tiny(const char *arch, int type)
{
    fx_config c = fx_default(arch, type);
    c.dim = 32, c.n_layer = 1, c.n_head = 2, c.n_head_kv = 1, c.n_ff = 32, c.n_vocab = 24;
    c.with_tokenizer = false;
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    seed(argv[1], "llama_f32.gguf", tiny("llama", SL_KT_F32));
    seed(argv[1], "llama_q8_0.gguf", tiny("llama", SL_KT_Q8_0));
    seed(argv[1], "llama_q4_0.gguf", tiny("llama", SL_KT_Q4_0));
    seed(argv[1], "qwen2_f16.gguf", tiny("qwen2", SL_KT_F16));
    seed(argv[1], "qwen2_bf16.gguf", tiny("qwen2", SL_KT_BF16));
    fx_config c = tiny("llama", SL_KT_F32);
    c.tied = true, c.rope_freqs = true, c.rope_linear = 2;
    seed(argv[1], "llama_tied_rope.gguf", c);
    c = tiny("llama", SL_KT_F32);
    c.skip_tensor = "blk.0.ffn_down.weight";
    seed(argv[1], "missing_tensor.gguf", c);
    c = tiny("qwen2", SL_KT_F32);
    c.bad_shape = "blk.0.attn_v.bias";
    seed(argv[1], "bad_shape.gguf", c);
    c = tiny("gpt9", SL_KT_F32);
    seed(argv[1], "bad_arch.gguf", c);
    c = fx_default("qwen2", SL_KT_F32);
    c.dim = 32, c.n_layer = 1, c.n_head = 2, c.n_head_kv = 2, c.n_ff = 32;
    c.tied = true;
    seed(argv[1], "qwen2_tokenizer.gguf", c);
    return 0;
}
