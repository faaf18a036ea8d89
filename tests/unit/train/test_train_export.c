/* The BPE trainer round-trips text through the engine's tokenizer, and a
 * trained model written as GGUF loads in the engine with logits equal to the
 * trainer's forward pass. */
#include "engine/model/model.h"
#include "engine/train/train.h"
#include "sluice/engine.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static const char sample[] =
    "<|im_start|>user\nHow much does the Aurora Kettle cost?<|im_end|>\n"
    "<|im_start|>assistant\nThe Aurora Kettle costs $49.<|im_end|>\n"
    "<|im_start|>user\nWhat colours does the Aurora Kettle come in?<|im_end|>\n"
    "<|im_start|>assistant\nThe Aurora Kettle comes in red, blue and silver.<|im_end|>\n"
    "<|endoftext|>Once upon a time, a small fox found a kettle. The fox was happy.\n"
    "The kettle costs forty-nine dollars, and the fox kept it for years.\n";

static char *repeat_sample(size_t *len)
{
    size_t n = strlen(sample), k = 20;
    char *t = malloc(n * k + 1);
    for (size_t i = 0; i < k; i++)
        memcpy(t + i * n, sample, n);
    t[n * k] = 0;
    *len = n * k;
    return t;
}

static sl_tokenizer *make_tok(const sl_train_vocab *v)
{
    sl_tok_vocab tv = {.kind = SL_TOK_BPE, .pre = "default", .n_tokens = (size_t)v->n_tokens,
                       .tokens = (const char *const *)v->tokens, .types = v->types,
                       .n_merges = (size_t)v->n_merges, .merges = (const char *const *)v->merges,
                       .bos_id = v->bos_id, .eos_id = v->eos_id, .eot_id = v->eot_id,
                       .unk_id = -1, .pad_id = -1};
    sl_tokenizer *t = NULL;
    char err[256];
    if (sl_tok_create(&tv, &t, err, sizeof err))
        fprintf(stderr, "sl_tok_create: %s\n", err);
    return t;
}

static void test_bpe_roundtrip(void)
{
    size_t len;
    char *text = repeat_sample(&len);
    sl_train_vocab v;
    char err[256];
    EXPECT_EQ_INT(sl_train_bpe(text, len, 320, &v, err, sizeof err), 0);
    EXPECT_EQ_INT(v.n_tokens, 320);
    EXPECT_EQ_INT(v.n_merges, 320 - 259);
    EXPECT_EQ_STR(v.tokens[v.n_tokens - 1], "<|im_end|>");
    EXPECT_EQ_STR(v.tokens[' '], "\xc4\xa0"); /* space is U+0120 in the byte alphabet */
    /* the most frequent pair of this text is merged first: " t" + ... so the
     * first merge joins two byte tokens */
    EXPECT(strchr(v.merges[0], ' ') != NULL);
    sl_tokenizer *t = make_tok(&v);
    EXPECT(t != NULL);
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        EXPECT_EQ_INT(sl_tok_encode(t, sample, strlen(sample), false, true, &ids, &n), 0);
        EXPECT(n > 0 && n < strlen(sample) / 2); /* merges compress the text */
        EXPECT_EQ_INT(ids[0], v.n_tokens - 2); /* <|im_start|> is one token */
        char *back = NULL;
        size_t bl = 0;
        EXPECT_EQ_INT(sl_tok_decode(t, ids, n, SL_TOK_DEC_RENDER_SPECIAL, &back, &bl), 0);
        EXPECT_EQ_STR(back, sample);
        sl_free(back);
        sl_free(ids);
        /* text never seen (digits, other words, UTF-8) still round-trips via bytes */
        const char *novel = "Zebra 12345 \xc3\xa9t\xc3\xa9 \xe2\x82\xac!";
        EXPECT_EQ_INT(sl_tok_encode(t, novel, strlen(novel), false, false, &ids, &n), 0);
        EXPECT_EQ_INT(sl_tok_decode(t, ids, n, 0, &back, &bl), 0);
        EXPECT_EQ_STR(back, novel);
        sl_free(back);
        sl_free(ids);
        sl_tok_destroy(t);
    }
    /* deterministic */
    sl_train_vocab v2;
    EXPECT_EQ_INT(sl_train_bpe(text, len, 320, &v2, err, sizeof err), 0);
    for (int i = 0; i < v.n_merges && i < v2.n_merges; i++)
        EXPECT_EQ_STR(v.merges[i], v2.merges[i]);
    sl_train_vocab_free(&v2);
    sl_train_vocab_free(&v);
    free(text);
}

static void test_export_loads_with_same_logits(void)
{
    size_t len;
    char *text = repeat_sample(&len);
    sl_train_vocab v;
    char err[512];
    EXPECT_EQ_INT(sl_train_bpe(text, len, 300, &v, err, sizeof err), 0);
    sl_train_hparams hp = {.dim = 32, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 48,
                           .n_vocab = v.n_tokens, .n_ctx = 16, .norm_eps = 1e-5f,
                           .rope_base = 10000};
    sl_train_model *m = NULL;
    EXPECT_EQ_INT(sl_train_model_create(&hp, 1, NULL, &m), 0);
    sl_train_model_init(m, 7);
    /* larger weights than the init, so logits spread and errors would show */
    float *p = sl_train_model_params(m);
    for (size_t i = 0; i < sl_train_n_params(&hp); i++)
        if (p[i] != 1.0f)
            p[i] *= 15;
    int32_t toks[17];
    for (int i = 0; i < 17; i++)
        toks[i] = (i * 37 + 5) % v.n_tokens;
    double loss;
    EXPECT_EQ_INT(sl_train_model_run(m, toks, 1, false, &loss), 0);
    const float *mine = sl_train_model_logits(m);

    char path[] = "/tmp/sl_train_export_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (int f16 = 0; f16 <= 1; f16++) {
        EXPECT_EQ_INT(sl_train_export(m, &v, "tiny-test", f16, path, err, sizeof err), 0);
        sl_gguf *g = NULL;
        EXPECT_EQ_INT(sl_gguf_open(path, &g, err, sizeof err), 0);
        sl_model *mod = NULL;
        sl_model_ctx *ctx = NULL;
        if (g && sl_model_load(g, &mod, err, sizeof err))
            fprintf(stderr, "sl_model_load: %s\n", err);
        EXPECT(mod != NULL);
        if (mod) {
            EXPECT(sl_model_get_hparams(mod)->tied_output);
            EXPECT(!sl_model_get_hparams(mod)->rope_neox);
            EXPECT_EQ_INT(sl_model_ctx_create(mod, 16, 16, 1, SL_KT_F32, &ctx), 0);
            float *lg = malloc(sizeof(float) * 16 * (size_t)hp.n_vocab);
            EXPECT_EQ_INT(sl_model_forward(ctx, toks, 16, 0, lg, true, NULL), 0);
            double worst = 0, spread = 0;
            for (size_t i = 0; i < 16 * (size_t)hp.n_vocab; i++) {
                worst = fmax(worst, fabs(lg[i] - mine[i]));
                spread = fmax(spread, fabs(mine[i]));
            }
            EXPECT(spread > 1.0);
            /* F32: float rounding only; F16: the weights' rounding too */
            if (worst > (f16 ? 0.05 : 1e-3) * spread)
                fprintf(stderr, "f16=%d worst %g spread %g\n", f16, worst, spread);
            EXPECT(worst <= (f16 ? 0.05 : 1e-3) * spread);
            free(lg);
            sl_model_ctx_free(ctx);
            sl_model_free(mod);
        }
        sl_gguf_close(g);
    }
    /* the public engine loads it as a chat model */
    sl_engine_params ep;
    sl_engine_params_default(&ep);
    ep.n_threads = 1;
    sl_engine *e = NULL;
    EXPECT_EQ_INT(sl_engine_load(path, &ep, &e, err, sizeof err), 0);
    if (e) {
        EXPECT(sl_engine_has_chat(e));
        EXPECT_EQ_INT(sl_engine_n_vocab(e), hp.n_vocab);
        sl_engine_message msg = {SL_ENGINE_USER, "Hi"};
        char *prompt = NULL;
        EXPECT_EQ_INT(sl_engine_chat_prompt(e, &msg, 1, &prompt, err, sizeof err), 0);
        EXPECT_EQ_STR(prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        sl_engine_free_string(prompt);
        sl_engine_free(e);
    }
    unlink(path);
    sl_train_model_free(m);
    sl_train_vocab_free(&v);
    free(text);
}

int main(void)
{
    RUN(test_bpe_roundtrip);
    RUN(test_export_loads_with_same_logits);
    return TEST_REPORT();
}
