/* engine/train: writes a trained model as a GGUF file the engine serves:
 * llama architecture, output tied to the embedding (no output.weight), the
 * learned gpt2 tokenizer and a ChatML chat template. */
#include "engine/train/train.h"
#include "engine/gguf/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

static const char chatml_template[] =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const char *sl_train_chat_template(void)
{
    return chatml_template;
}

typedef struct exporter {
    sl_gguf_writer *w;
    bool f16;
    void *bufs[1024]; /* converted tensors, alive until the file is written */
    int n_bufs;
    int rc;
} exporter;

/* Adds a rows x cols tensor (rows == 1: a vector, kept F32). */
static void add_tensor(exporter *x, const char *name, const float *p, int rows, int cols)
{
    if (x->rc)
        return;
    uint64_t dims[2] = {(uint64_t)cols, (uint64_t)rows};
    uint32_t nd = rows == 1 ? 1 : 2;
    size_t n = (size_t)rows * (size_t)cols;
    if (!x->f16 || rows == 1) {
        x->rc = sl_gguf_writer_add_tensor(x->w, name, SL_GGML_F32, nd, dims, p, n * 4);
        return;
    }
    if (x->n_bufs == (int)SL_ARRAY_LEN(x->bufs)) {
        x->rc = SL_ETOOBIG;
        return;
    }
    uint16_t *h = sl_malloc(n * sizeof *h);
    if (!h) {
        x->rc = SL_ENOMEM;
        return;
    }
    x->bufs[x->n_bufs++] = h;
    for (size_t i = 0; i < n; i++)
        h[i] = sl_kernel_f32_to_fp16(p[i]);
    x->rc = sl_gguf_writer_add_tensor(x->w, name, SL_GGML_F16, nd, dims, h, n * 2);
}

int sl_train_export(const sl_train_model *m, const sl_train_vocab *v, const char *name, bool f16,
                    const char *path, char *err, size_t errlen)
{
    const sl_train_hparams *hp = sl_train_model_hparams(m);
    if (v->n_tokens != hp->n_vocab) {
        snprintf(err, errlen, "export: vocabulary has %d tokens, the model %d", v->n_tokens,
                 hp->n_vocab);
        return SL_EINVAL;
    }
    if (hp->n_layer > 100) {
        snprintf(err, errlen, "export: at most 100 layers");
        return SL_EINVAL;
    }
    exporter x = {.f16 = f16};
    if (sl_gguf_writer_new(&x.w)) {
        snprintf(err, errlen, "export: out of memory");
        return SL_ENOMEM;
    }
    sl_gguf_writer *w = x.w;
    int rc = 0;
    const int hd = hp->dim / hp->n_head, D = hp->dim, F = hp->n_ff,
              KV = hp->n_head_kv * hd;
#define CHK(e)                                                                                     \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = (e);                                                                              \
    } while (0)
    CHK(sl_gguf_writer_add_str(w, "general.architecture", "llama"));
    CHK(sl_gguf_writer_add_str(w, "general.name", name ? name : "sluice-trained"));
    CHK(sl_gguf_writer_add_u32(w, "general.file_type", f16 ? 1 : 0));
    CHK(sl_gguf_writer_add_u32(w, "llama.context_length", (uint32_t)hp->n_ctx));
    CHK(sl_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)D));
    CHK(sl_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)hp->n_layer));
    CHK(sl_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)F));
    CHK(sl_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)hp->n_head));
    CHK(sl_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)hp->n_head_kv));
    CHK(sl_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", hp->norm_eps));
    CHK(sl_gguf_writer_add_f32(w, "llama.rope.freq_base", hp->rope_base));
    CHK(sl_gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)hd));
    CHK(sl_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)hp->n_vocab));
    CHK(sl_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
    CHK(sl_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default"));
    CHK(sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens,
                                   (uint64_t)v->n_tokens));
    CHK(sl_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", SL_GGUF_INT32, v->types,
                               (uint64_t)v->n_tokens));
    CHK(sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.merges", (const char *const *)v->merges,
                                   (uint64_t)v->n_merges));
    CHK(sl_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos_id));
    CHK(sl_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos_id));
    CHK(sl_gguf_writer_add_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)v->eot_id));
    CHK(sl_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->bos_id));
    CHK(sl_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false));
    CHK(sl_gguf_writer_add_str(w, "tokenizer.chat_template", chatml_template));
#undef CHK
    if (rc) {
        snprintf(err, errlen, "export: metadata: %s", sl_strerror(rc));
        goto out;
    }

    /* tensors, in the trainer's parameter order */
    const float *P = sl_train_model_params((sl_train_model *)m);
    size_t at = 0;
    char nm[64];
    add_tensor(&x, "token_embd.weight", P, hp->n_vocab, D);
    at += (size_t)hp->n_vocab * D;
    for (int l = 0; l < hp->n_layer; l++) {
        static const struct {
            const char *name;
            int rows_kind, cols_kind; /* 0: 1, 1: D, 2: KV, 3: F */
        } t[] = {
            {"attn_norm.weight", 0, 1}, {"attn_q.weight", 1, 1},     {"attn_k.weight", 2, 1},
            {"attn_v.weight", 2, 1},    {"attn_output.weight", 1, 1}, {"ffn_norm.weight", 0, 1},
            {"ffn_gate.weight", 3, 1},  {"ffn_up.weight", 3, 1},     {"ffn_down.weight", 1, 3},
        };
        const int size[4] = {1, D, KV, F};
        for (size_t i = 0; i < SL_ARRAY_LEN(t); i++) {
            int rows = size[t[i].rows_kind], cols = size[t[i].cols_kind];
            snprintf(nm, sizeof nm, "blk.%d.%s", l, t[i].name);
            add_tensor(&x, nm, P + at, rows, cols);
            at += (size_t)rows * cols;
        }
    }
    add_tensor(&x, "output_norm.weight", P + at, 1, D);
    at += (size_t)D;
    if (x.rc) {
        rc = x.rc;
        snprintf(err, errlen, "export: tensors: %s", sl_strerror(rc));
        goto out;
    }
    if (at != sl_train_n_params(hp)) {
        rc = SL_ECORRUPT;
        snprintf(err, errlen, "export: layout mismatch (%zu of %zu parameters)", at,
                 sl_train_n_params(hp));
        goto out;
    }
    rc = sl_gguf_writer_write_file(w, path, err, errlen);
out:
    for (int i = 0; i < x.n_bufs; i++)
        sl_free(x.bufs[i]);
    sl_gguf_writer_free(w);
    return rc;
}
