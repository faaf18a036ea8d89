/* Writes the seed corpus for the GGUF fuzz driver into a directory, using the
 * project's own writer. Not part of the build; run once when the seeds change:
 *   cc -std=gnu11 -Isrc tests/fuzz/gen/gguf_seeds.c build/release/libsluice_lib.a \
 *      $(pkg-config --libs libxxhash) -lm -o /tmp/gguf_seeds && /tmp/gguf_seeds tests/fuzz/corpus/gguf */
#include "engine/gguf/gguf.h"

#include <stdio.h>
#include <string.h>

static const char *dir;

static void save(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fclose(f);
    printf("%s %zu bytes\n", name, n);
}

static void finish(sl_gguf_writer *w, const char *name, void (*patch)(uint8_t *, size_t *))
{
    void *buf;
    size_t len;
    if (sl_gguf_writer_write_mem(w, &buf, &len)) {
        fprintf(stderr, "%s: write failed\n", name);
        return;
    }
    if (patch)
        patch(buf, &len);
    save(name, buf, len);
    sl_free(buf);
    sl_gguf_writer_free(w);
}

static void to_v2(uint8_t *b, size_t *n) { (void)n; b[4] = 2; }
static void to_v1(uint8_t *b, size_t *n) { (void)n; b[4] = 1; }
static void cut(uint8_t *b, size_t *n) { (void)b; *n = *n * 2 / 3; }

static void scalars(sl_gguf_writer *w)
{
    sl_gguf_writer_add_u8(w, "s.u8", 200);
    sl_gguf_writer_add_i8(w, "s.i8", -3);
    sl_gguf_writer_add_u16(w, "s.u16", 60000);
    sl_gguf_writer_add_i16(w, "s.i16", -300);
    sl_gguf_writer_add_u32(w, "s.u32", 70000);
    sl_gguf_writer_add_i32(w, "s.i32", -70000);
    sl_gguf_writer_add_u64(w, "s.u64", 1ull << 40);
    sl_gguf_writer_add_i64(w, "s.i64", -(1ll << 40));
    sl_gguf_writer_add_f32(w, "s.f32", 1.5f);
    sl_gguf_writer_add_f64(w, "s.f64", 1e-9);
    sl_gguf_writer_add_bool(w, "s.bool", true);
    sl_gguf_writer_add_str(w, "s.str", "hello");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    sl_gguf_writer *w;

    sl_gguf_writer_new(&w);
    finish(w, "empty.gguf", NULL);

    sl_gguf_writer_new(&w);
    scalars(w);
    finish(w, "scalars.gguf", NULL);

    sl_gguf_writer_new(&w);
    scalars(w);
    finish(w, "scalars_v2.gguf", to_v2);

    sl_gguf_writer_new(&w);
    {
        const char *toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81the", "a", "b", "ab", ""};
        float scores[8] = {0, 0, 0, -1, -2, -3, -4, -5};
        int32_t types[8] = {2, 3, 3, 1, 1, 1, 1, 1};
        const char *merges[] = {"a b", "\xe2\x96\x81 t"};
        sl_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        sl_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
        sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 8);
        sl_gguf_writer_add_arr(w, "tokenizer.ggml.scores", SL_GGUF_FLOAT32, scores, 8);
        sl_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, types, 8);
        sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", merges, 2);
        sl_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
        sl_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
        sl_gguf_writer_add_str(w, "tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}");
    }
    finish(w, "tokenizer.gguf", NULL);

    sl_gguf_writer_new(&w);
    {
        int32_t v = 5;
        uint8_t t = 1;
        sl_gguf_writer_begin_arr(w, "nested", SL_GGUF_ARRAY);
        sl_gguf_writer_begin_sub_arr(w, SL_GGUF_ARRAY);
        sl_gguf_writer_begin_sub_arr(w, SL_GGUF_INT32);
        sl_gguf_writer_push_num(w, &v);
        sl_gguf_writer_push_num(w, &v);
        sl_gguf_writer_end_arr(w);
        sl_gguf_writer_begin_sub_arr(w, SL_GGUF_STRING);
        sl_gguf_writer_push_str(w, "x", 1);
        sl_gguf_writer_end_arr(w);
        sl_gguf_writer_end_arr(w);
        sl_gguf_writer_begin_sub_arr(w, SL_GGUF_BOOL);
        sl_gguf_writer_push_num(w, &t);
        sl_gguf_writer_end_arr(w);
        sl_gguf_writer_end_arr(w);
    }
    finish(w, "nested.gguf", NULL);

    /* a miniature llama: metadata the CLI reads plus tensors of several types */
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    for (int variant = 0; variant < 3; variant++) {
        sl_gguf_writer_new(&w);
        if (variant == 1)
            sl_gguf_writer_set_alignment(w, 64);
        if (variant == 2)
            sl_gguf_writer_set_alignment(w, 8);
        sl_gguf_writer_add_str(w, "general.architecture", "llama");
        sl_gguf_writer_add_str(w, "general.name", "seed");
        sl_gguf_writer_add_u32(w, "llama.context_length", 128);
        sl_gguf_writer_add_u32(w, "llama.embedding_length", 32);
        sl_gguf_writer_add_u32(w, "llama.block_count", 1);
        sl_gguf_writer_add_u32(w, "llama.attention.head_count", 4);
        sl_gguf_writer_add_u32(w, "llama.attention.head_count_kv", 2);
        sl_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
        sl_gguf_writer_add_tensor(w, "token_embd.weight", SL_GGML_F16, 2, (uint64_t[]){32, 8}, data, 512);
        sl_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", SL_GGML_F32, 1, (uint64_t[]){32}, data, 128);
        sl_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", SL_GGML_Q8_0, 2, (uint64_t[]){32, 32}, data, 32 * 34);
        sl_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", SL_GGML_Q4_0, 2, (uint64_t[]){32, 16}, data, 16 * 18);
        sl_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", SL_GGML_Q4_K, 2, (uint64_t[]){256, 2}, data, 2 * 144);
        sl_gguf_writer_add_tensor(w, "output.weight", SL_GGML_Q6_K, 1, (uint64_t[]){256}, data, 210);
        sl_gguf_writer_add_tensor(w, "output_norm.weight", SL_GGML_BF16, 1, (uint64_t[]){32}, data, 64);
        const char *names[] = {"model.gguf", "model_align64.gguf", "model_align8.gguf"};
        finish(w, names[variant], NULL);
    }

    /* two invalid seeds so the fuzzer starts near the error paths too */
    sl_gguf_writer_new(&w);
    scalars(w);
    finish(w, "v1_rejected.gguf", to_v1);
    sl_gguf_writer_new(&w);
    scalars(w);
    sl_gguf_writer_add_tensor(w, "x", SL_GGML_F32, 1, (uint64_t[]){8}, data, 32);
    finish(w, "truncated.gguf", cut);
    return 0;
}
