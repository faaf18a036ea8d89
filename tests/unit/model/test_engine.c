/* The embedding API (sluice/engine.h) on random-weight models written to a
 * temporary file: greedy generation equals the model's own greedy decode,
 * stop strings, cancellation, prefix reuse, chat prompts and errors. */
#include "engine/model/model.h"
#include "model_fixture.h"
#include "sluice/engine.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static char g_path[256];

/* Writes the model described by c to g_path. */
static bool write_model(const fx_config *c)
{
    fx_model fx;
    if (fx_build(&fx, c)) {
        T_FAIL_AT("fx_build");
        return false;
    }
    snprintf(g_path, sizeof g_path, "/tmp/sl_test_engine_%d.gguf", (int)getpid());
    FILE *f = fopen(g_path, "wb");
    bool ok = f && fwrite(fx.bytes, 1, fx.len, f) == fx.len;
    if (f)
        fclose(f);
    fx_free(&fx);
    if (!ok)
        T_FAIL_AT("cannot write %s", g_path);
    return ok;
}

typedef struct collect {
    char text[8192];
    size_t len;
    int calls, cancel_after;
} collect;

static int on_text(void *user, const char *t, size_t n)
{
    collect *c = user;
    if (c->len + n < sizeof c->text) {
        memcpy(c->text + c->len, t, n);
        c->len += n;
        c->text[c->len] = 0;
    }
    c->calls++;
    return c->cancel_after && c->calls >= c->cancel_after;
}

static sl_engine *open_engine(int threads)
{
    sl_engine_params ep;
    sl_engine_params_default(&ep);
    ep.n_threads = threads;
    ep.n_ctx = 96;
    ep.n_batch = 5; /* prompts span several batches */
    sl_engine *e = NULL;
    char err[512] = "";
    if (sl_engine_load(g_path, &ep, &e, err, sizeof err))
        T_FAIL_AT("load: %s", err);
    return e;
}

/* The expected greedy text, computed with the model API and the tokenizer
 * directly: encode, forward token by token, argmax over the tokenizer's
 * vocabulary, stop at EOS, decode. */
static void expected_greedy(const char *prompt, int n_tokens, char *out, size_t cap)
{
    sl_gguf *g = NULL;
    sl_model *m = NULL;
    sl_tokenizer *t = NULL;
    char err[256];
    sl_gguf_open(g_path, &g, err, sizeof err);
    sl_model_load(g, &m, err, sizeof err);
    sl_model_tokenizer_load(g, &t, err, sizeof err);
    sl_model_ctx *ctx = NULL;
    sl_model_ctx_create(m, 96, 1, 1, SL_MODEL_KV_DEFAULT, &ctx);
    int32_t *ids = NULL, gen[128];
    size_t n = 0;
    sl_tok_encode(t, prompt, strlen(prompt), true, false, &ids, &n);
    int V = sl_model_get_hparams(m)->n_vocab, nv = (int)sl_tok_n_vocab(t), n_gen = 0;
    float *lg = calloc((size_t)V, sizeof(float));
    for (size_t i = 0; i < n; i++)
        sl_model_forward(ctx, &ids[i], 1, (int)i, lg, false, NULL);
    for (int k = 0; k < n_tokens; k++) {
        int b = 0;
        for (int i = 1; i < nv; i++)
            if (lg[i] > lg[b])
                b = i;
        if (sl_tok_is_eog(t, b))
            break;
        gen[n_gen++] = b;
        sl_model_forward(ctx, &gen[n_gen - 1], 1, (int)n + k, lg, false, NULL);
    }
    char *text = NULL;
    size_t len = 0;
    sl_tok_decode(t, gen, (size_t)n_gen, 0, &text, &len);
    snprintf(out, cap, "%s", text ? text : "");
    sl_free(text);
    sl_free(ids);
    free(lg);
    sl_model_ctx_free(ctx);
    sl_tok_destroy(t);
    sl_model_free(m);
    sl_gguf_close(g);
}

static void greedy_params(sl_engine_gen_params *gp, int n)
{
    sl_engine_gen_params_default(gp);
    gp->temperature = 0;
    gp->max_tokens = n;
}

static void test_greedy_matches_model(void)
{
    fx_config c = fx_default("llama", SL_KT_Q8_0);
    if (!write_model(&c))
        return;
    char want[8192];
    expected_greedy("hello hello", 24, want, sizeof want);
    EXPECT(strlen(want) > 0);
    for (int threads = 1; threads <= 2; threads++) {
        sl_engine *e = open_engine(threads);
        if (!e)
            return;
        EXPECT_EQ_STR(sl_engine_arch(e), "llama");
        EXPECT_EQ_INT(sl_engine_n_ctx(e), 96);
        sl_engine_gen_params gp;
        greedy_params(&gp, 24);
        collect col = {0};
        sl_engine_stats st;
        char err[256] = "";
        EXPECT_EQ_INT(sl_engine_generate(e, "hello hello", &gp, on_text, &col, &st, err, sizeof err), 0);
        EXPECT_EQ_STR(col.text, want);
        EXPECT_EQ_INT(st.prompt_tokens, 3); /* BOS, "▁hello", "▁hello" */
        EXPECT_EQ_INT(st.cached_tokens, 0);
        EXPECT(st.gen_tokens >= 1 && st.gen_tokens <= 24);
        EXPECT(st.finish == SL_ENGINE_FINISH_LENGTH || st.finish == SL_ENGINE_FINISH_STOP);
        EXPECT(st.load_ms > 0);

        /* the same prompt again: all but its last token come from the cache,
         * and the output is the same */
        collect col2 = {0};
        EXPECT_EQ_INT(sl_engine_generate(e, "hello hello", &gp, on_text, &col2, &st, err, sizeof err), 0);
        EXPECT_EQ_INT(st.cached_tokens, 2);
        EXPECT_EQ_STR(col2.text, want);
        sl_engine_free(e);
    }
    unlink(g_path);
}

static void test_stop_and_cancel(void)
{
    fx_config c = fx_default("llama", SL_KT_F32);
    if (!write_model(&c))
        return;
    char want[8192];
    expected_greedy("hello", 40, want, sizeof want);
    sl_engine *e = open_engine(1);
    if (!e)
        return;
    size_t wl = strlen(want);
    EXPECT(wl >= 4);
    if (wl >= 4) {
        /* a stop string taken from the middle of the expected text: the output
         * is the text before its first occurrence */
        char stop[3] = {want[wl / 2], want[wl / 2 + 1], 0};
        const char *at = strstr(want, stop);
        sl_engine_gen_params gp;
        greedy_params(&gp, 40);
        gp.stop[0] = stop;
        collect col = {0};
        sl_engine_stats st;
        char err[256];
        EXPECT_EQ_INT(sl_engine_generate(e, "hello", &gp, on_text, &col, &st, err, sizeof err), 0);
        EXPECT_EQ_UINT(col.len, (size_t)(at - want));
        EXPECT(strncmp(col.text, want, col.len) == 0);
        EXPECT_EQ_INT(st.finish, SL_ENGINE_FINISH_STOP);

        /* the callback stops the generation at its first call */
        greedy_params(&gp, 40);
        collect c2 = {.cancel_after = 1};
        EXPECT_EQ_INT(sl_engine_generate(e, "hello", &gp, on_text, &c2, &st, err, sizeof err), 0);
        EXPECT_EQ_INT(c2.calls, 1);
        EXPECT_EQ_INT(st.finish, SL_ENGINE_FINISH_CANCEL);
    }
    sl_engine_free(e);
    unlink(g_path);
}

static void test_errors(void)
{
    fx_config c = fx_default("llama", SL_KT_F32);
    if (!write_model(&c))
        return;
    sl_engine *e = open_engine(1);
    if (!e)
        return;
    sl_engine_gen_params gp;
    greedy_params(&gp, 4);
    char err[256] = "";
    char big[400];
    for (int i = 0; i < 399; i++)
        big[i] = "ab "[i % 3];
    big[399] = 0;
    EXPECT_EQ_INT(sl_engine_generate(e, big, &gp, NULL, NULL, NULL, err, sizeof err), SL_ETOOBIG);
    EXPECT_CONTAINS(err, "the context holds 96");
    gp.top_p = 2.0f;
    EXPECT(sl_engine_generate(e, "hello", &gp, NULL, NULL, NULL, err, sizeof err) < 0);
    EXPECT_CONTAINS(err, "top_p");
    /* no chat template in this file */
    EXPECT(!sl_engine_has_chat(e));
    char *p = NULL;
    sl_engine_message msg = {SL_ENGINE_USER, "hi"};
    EXPECT_EQ_INT(sl_engine_chat_prompt(e, &msg, 1, &p, err, sizeof err), SL_EUNSUPPORTED);
    sl_engine_free(e);

    c = fx_default("mamba", SL_KT_F32);
    write_model(&c);
    EXPECT(sl_engine_load(g_path, NULL, &e, err, sizeof err) < 0);
    EXPECT(e == NULL);
    EXPECT_CONTAINS(err, "unsupported architecture mamba; supported: llama, qwen2");
    unlink(g_path);
    EXPECT(sl_engine_load(g_path, NULL, &e, err, sizeof err) < 0);
    EXPECT_CONTAINS(err, g_path);
}

static void test_chat_qwen2(void)
{
    fx_config c = fx_default("qwen2", SL_KT_F32);
    c.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                      "{% endfor %}<|im_start|>assistant\n";
    if (!write_model(&c))
        return;
    sl_engine *e = open_engine(2);
    if (!e)
        return;
    EXPECT(sl_engine_has_chat(e));
    sl_engine_message msgs[2] = {{SL_ENGINE_SYSTEM, "be brief"}, {SL_ENGINE_USER, "hello"}};
    char *p = NULL, err[256] = "";
    EXPECT_EQ_INT(sl_engine_chat_prompt(e, msgs, 2, &p, err, sizeof err), 0);
    EXPECT_EQ_STR(p, "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
                     "<|im_start|>assistant\n");
    sl_engine_gen_params gp;
    greedy_params(&gp, 8);
    gp.chat = true;
    sl_engine_stats st;
    collect col = {0};
    EXPECT_EQ_INT(sl_engine_generate(e, p, &gp, on_text, &col, &st, err, sizeof err), 0);
    /* special tokens are parsed: <|im_start|> and <|im_end|> are one token each */
    int32_t *ids = NULL;
    size_t n = 0;
    sl_gguf *g = NULL;
    sl_tokenizer *t = NULL;
    sl_gguf_open(g_path, &g, err, sizeof err);
    sl_model_tokenizer_load(g, &t, err, sizeof err);
    sl_tok_encode(t, p, strlen(p), false, true, &ids, &n);
    EXPECT_EQ_INT(st.prompt_tokens, (int)n);
    EXPECT_EQ_INT(ids[0], BPE_IM_START);
    sl_free(ids);
    sl_tok_destroy(t);
    sl_gguf_close(g);
    sl_engine_free_string(p);
    sl_engine_free(e);
    unlink(g_path);
}

int main(void)
{
    RUN(test_greedy_matches_model);
    RUN(test_stop_and_cancel);
    RUN(test_errors);
    RUN(test_chat_qwen2);
    return TEST_REPORT();
}
