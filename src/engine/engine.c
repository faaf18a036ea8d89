/* The embedding API (include/sluice/engine.h): one model, its tokenizer and
 * chat template, one sequence's context, and the generate loop that ties the
 * model, the sampler and the stop matcher together. */
#include "sluice/engine.h"

#include "engine/chat/chat.h"
#include "engine/gguf/gguf.h"
#include "engine/model/model.h"
#include "engine/sample/sample.h"
#include "engine/tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

#define ENGINE_MAX_PIECE 256        /* bytes of one token's text */
#define ENGINE_MAX_THREADS 256

struct sl_engine {
    sl_gguf *g;
    sl_model *m;
    sl_model_ctx *ctx;
    sl_tokenizer *tok;
    sl_pool *pool;          /* NULL with one thread */
    int n_ctx, n_batch, n_vocab, n_tok_vocab;
    bool has_chat;
    sl_chat_template tmpl;
    char bos_text[64], eos_text[64];
    int32_t end_ids[SL_STOP_MAX_END_IDS];
    size_t n_end;
    int32_t *history;       /* (n_ctx) the tokens whose keys/values are in ctx */
    int n_history;
    float *logits;          /* (n_vocab) of the last computed token */
    double load_ms;
};

void sl_engine_params_default(sl_engine_params *p)
{
    memset(p, 0, sizeof *p);
}

void sl_engine_gen_params_default(sl_engine_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repetition_penalty = 1.0f;
    p->max_tokens = 256;
}

static void add_end_id(sl_engine *e, int32_t id)
{
    if (id < 0 || e->n_end >= SL_STOP_MAX_END_IDS)
        return;
    for (size_t i = 0; i < e->n_end; i++)
        if (e->end_ids[i] == id)
            return;
    e->end_ids[e->n_end++] = id;
}

/* Copies token id's text into out (cut to fit), or "" when absent. */
static void token_text(const sl_tokenizer *t, int32_t id, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    if (id >= 0 && !sl_tok_piece(t, id, out, cap - 1, &len))
        out[len] = 0;
    else
        out[0] = 0;
}

static int setup_chat(sl_engine *e)
{
    sl_str src;
    if (sl_gguf_get_str(e->g, "tokenizer.chat_template", &src))
        return 0;
    char *s = sl_strndup(src.p, src.n);
    if (!s)
        return SL_ENOMEM;
    e->has_chat = sl_chat_template_detect(s, &e->tmpl) == 0;
    sl_free(s);
    return 0;
}

int sl_engine_load(const char *path, const sl_engine_params *p, sl_engine **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    uint64_t t0 = sl_now_ns();
    sl_engine_params def;
    if (!p) {
        sl_engine_params_default(&def);
        p = &def;
    }
    sl_engine *e = sl_calloc(1, sizeof *e);
    if (!e)
        return SL_ENOMEM;
    char msg[512] = "";
    int rc = sl_gguf_open(path, &e->g, msg, sizeof msg);
    if (rc) {
        sl_errf(err, errlen, rc, "%s: %s", path, msg[0] ? msg : sl_strerror(rc));
        goto fail;
    }
    if ((rc = sl_model_load(e->g, &e->m, msg, sizeof msg)) ||
        (rc = sl_model_tokenizer_load(e->g, &e->tok, msg, sizeof msg))) {
        sl_errf(err, errlen, rc, "%s: %s", path, msg[0] ? msg : sl_strerror(rc));
        goto fail;
    }
    const sl_model_hparams *hp = sl_model_get_hparams(e->m);
    e->n_vocab = hp->n_vocab;
    e->n_tok_vocab = (int)sl_tok_n_vocab(e->tok);
    e->n_ctx = p->n_ctx > 0 ? SL_MIN(p->n_ctx, SL_MODEL_MAX_CTX) : SL_MIN(4096, hp->n_ctx_train);
    e->n_batch = SL_MIN(p->n_batch > 0 ? p->n_batch : 64, e->n_ctx);
    int threads = p->n_threads > 0 ? SL_MIN(p->n_threads, ENGINE_MAX_THREADS) : sl_cpu_count();
    if (threads > 1 && (rc = sl_pool_create(threads, &e->pool))) {
        sl_errf(err, errlen, rc, "cannot start %d threads: %s", threads, sl_strerror(rc));
        goto fail;
    }
    int kv_type = p->kv_type ? sl_model_kv_type_parse(p->kv_type) : SL_MODEL_KV_DEFAULT;
    if (kv_type < 0) {
        rc = sl_errf(err, errlen, SL_EINVAL, "unknown KV cache type '%s' (expected f16 or f32)",
                     p->kv_type);
        goto fail;
    }
    rc = sl_model_ctx_create(e->m, e->n_ctx, e->n_batch, threads, kv_type, &e->ctx);
    e->history = sl_malloc(sizeof(int32_t) * (size_t)e->n_ctx);
    e->logits = sl_malloc(sizeof(float) * (size_t)e->n_vocab);
    if (rc || !e->history || !e->logits) {
        sl_errf(err, errlen, rc ? rc : SL_ENOMEM,
              "cannot allocate a context of %d positions: %s", e->n_ctx,
              sl_strerror(rc ? rc : SL_ENOMEM));
        rc = rc ? rc : SL_ENOMEM;
        goto fail;
    }
    if ((rc = setup_chat(e)))
        goto fail;
    token_text(e->tok, sl_tok_bos(e->tok), e->bos_text, sizeof e->bos_text);
    token_text(e->tok, sl_tok_eos(e->tok), e->eos_text, sizeof e->eos_text);
    /* generation ends at EOS, EOT and the end-of-turn markers of the chat
     * families, when the vocabulary has them as control tokens */
    add_end_id(e, sl_tok_eos(e->tok));
    add_end_id(e, sl_tok_eot(e->tok));
    static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>"};
    for (size_t i = 0; i < SL_ARRAY_LEN(turn_ends); i++) {
        int32_t id = sl_tok_find(e->tok, turn_ends[i], strlen(turn_ends[i]));
        if (id >= 0 && sl_tok_type(e->tok, id) == SL_TOK_TYPE_CONTROL)
            add_end_id(e, id);
    }
    e->load_ms = (double)(sl_now_ns() - t0) / 1e6;
    *out = e;
    return 0;
fail:
    sl_engine_free(e);
    return rc;
}

void sl_engine_free(sl_engine *e)
{
    if (!e)
        return;
    sl_model_ctx_free(e->ctx);
    sl_pool_destroy(e->pool);
    sl_tok_destroy(e->tok);
    sl_model_free(e->m);
    sl_gguf_close(e->g);
    sl_free(e->history);
    sl_free(e->logits);
    sl_free(e);
}

const char *sl_engine_arch(const sl_engine *e)
{
    return sl_model_arch_name(sl_model_get_hparams(e->m)->arch);
}

int sl_engine_n_ctx(const sl_engine *e)
{
    return e->n_ctx;
}

int sl_engine_n_vocab(const sl_engine *e)
{
    return e->n_vocab;
}

double sl_engine_load_ms(const sl_engine *e)
{
    return e->load_ms;
}

bool sl_engine_has_chat(const sl_engine *e)
{
    return e->has_chat;
}

int sl_engine_chat_prompt(const sl_engine *e, const sl_engine_message *msgs, size_t n,
                          char **prompt, char *err, size_t errlen)
{
    *prompt = NULL;
    if (!e->has_chat)
        return sl_errf(err, errlen, SL_EUNSUPPORTED,
                     "the model has no chat template the engine recognises (%s)",
                     sl_chat_template_help());
    sl_chat_msg *cm = sl_calloc(n ? n : 1, sizeof *cm);
    if (!cm)
        return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cm[i].role = msgs[i].role == SL_ENGINE_SYSTEM ? SL_CHAT_ROLE_SYSTEM
                     : msgs[i].role == SL_ENGINE_USER ? SL_CHAT_ROLE_USER
                                                      : SL_CHAT_ROLE_ASSISTANT;
        cm[i].content = sl_str_c(msgs[i].content ? msgs[i].content : "");
    }
    sl_buf b;
    sl_buf_init(&b, SL_TOK_MAX_TEXT);
    int rc = sl_chat_render(e->tmpl, cm, n, true, e->bos_text[0] ? e->bos_text : NULL,
                            e->eos_text[0] ? e->eos_text : NULL, &b);
    sl_free(cm);
    if (rc) {
        sl_buf_free(&b);
        return sl_errf(err, errlen, rc, "rendering the chat prompt: %s", sl_strerror(rc));
    }
    size_t len;
    *prompt = b.len ? sl_buf_take(&b, &len) : sl_strdup("");
    sl_buf_free(&b);
    return *prompt ? 0 : SL_ENOMEM;
}

void sl_engine_free_string(char *s)
{
    sl_free(s);
}

/* Hands emitted text to the caller; returns true when it asks to stop. */
static bool emit(sl_engine_text_fn fn, void *user, const sl_stop_out *o)
{
    return fn && o->emit_len && fn(user, o->emit, o->emit_len) != 0;
}

int sl_engine_generate(sl_engine *e, const char *prompt, const sl_engine_gen_params *p,
                       sl_engine_text_fn on_text, void *user, sl_engine_stats *stats, char *err,
                       size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    sl_sample_params sp;
    sl_sample_params_default(&sp);
    sp.temperature = p->temperature;
    sp.top_k = p->top_k;
    sp.top_p = p->top_p;
    sp.min_p = p->min_p;
    sp.repetition_penalty = p->repetition_penalty;
    sp.seed = p->seed;
    sp.has_seed = p->has_seed;
    char msg[256] = "";
    int rc = sl_sample_params_check(&sp, msg, sizeof msg);
    if (rc)
        return sl_errf(err, errlen, rc, "%s", msg);
    sl_stop_spec spec;
    memset(&spec, 0, sizeof spec);
    for (int i = 0; i < SL_ENGINE_MAX_STOP; i++)
        if (p->stop[i] && p->stop[i][0])
            spec.strings[spec.n_strings++] = p->stop[i];
    memcpy(spec.end_ids, e->end_ids, sizeof(int32_t) * e->n_end);
    spec.n_end_ids = e->n_end;
    spec.max_tokens = p->max_tokens > 0 ? p->max_tokens : 0;

    /* chat prompts carry their special tokens as text, and BOS as the
     * template family decides (see chat.h) */
    bool add_bos = p->chat ? !sl_chat_template_has_bos(e->tmpl) : true;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = sl_tok_encode(e->tok, prompt, strlen(prompt), add_bos, p->chat, &ids, &n_ids);
    if (rc)
        return sl_errf(err, errlen, rc, "tokenizing the prompt: %s", sl_strerror(rc));
    sl_sampler *smp = NULL;
    sl_stop_matcher *stop = NULL;
    sl_buf text;
    sl_buf_init(&text, 4 * ENGINE_MAX_PIECE);
    if (n_ids == 0) {
        rc = sl_errf(err, errlen, SL_EINVAL, "the prompt is empty and the model adds no BOS token");
        goto done;
    }
    if (n_ids >= (size_t)e->n_ctx) {
        rc = sl_errf(err, errlen, SL_ETOOBIG,
                   "the prompt is %zu tokens; the context holds %d (raise the context size)",
                   n_ids, e->n_ctx);
        goto done;
    }
    if ((rc = sl_sampler_create(&sp, e->n_tok_vocab, &smp)) ||
        (rc = sl_stop_create(&spec, &stop, msg, sizeof msg))) {
        sl_errf(err, errlen, rc, "%s", msg[0] ? msg : sl_strerror(rc));
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] >= e->n_tok_vocab) {
            rc = sl_errf(err, errlen, SL_ERANGE, "prompt token %d is outside the vocabulary", ids[i]);
            goto done;
        }
    if ((rc = sl_sampler_accept_prompt(smp, ids, n_ids)))
        goto done;

    /* reuse the cached prefix; the last prompt token is always recomputed
     * because its logits are needed */
    int n = (int)n_ids, reuse = 0;
    while (reuse < e->n_history && reuse < n - 1 && e->history[reuse] == ids[reuse])
        reuse++;
    uint64_t t0 = sl_now_ns();
    e->n_history = reuse;
    for (int at = reuse; at < n; at += e->n_batch) {
        int chunk = SL_MIN(e->n_batch, n - at);
        if ((rc = sl_model_forward(e->ctx, ids + at, chunk, at, e->logits, false, e->pool))) {
            sl_errf(err, errlen, rc, "forward pass: %s", sl_strerror(rc));
            goto done;
        }
        memcpy(e->history + at, ids + at, sizeof(int32_t) * (size_t)chunk);
        e->n_history = at + chunk;
    }
    uint64_t t1 = sl_now_ns();

    sl_tok_decoder dec;
    sl_tok_decoder_init(&dec, e->tok, 0);
    sl_engine_finish finish = SL_ENGINE_FINISH_LENGTH;
    int32_t n_gen = 0;
    sl_stop_out so;
    for (;;) {
        sl_sample_result r;
        if ((rc = sl_sampler_sample(smp, e->logits, &r))) {
            sl_errf(err, errlen, rc, "sampling: %s", sl_strerror(rc));
            goto done;
        }
        n_gen++;
        sl_finish_reason fr = sl_stop_token(stop, r.token);
        if (fr == SL_FINISH_STOP) {
            finish = SL_ENGINE_FINISH_STOP;
            break;
        }
        sl_buf_reset(&text);
        if ((rc = sl_tok_decoder_feed(&dec, r.token, &text)) ||
            (rc = sl_stop_feed(stop, text.data ? text.data : "", text.len, &so))) {
            sl_errf(err, errlen, rc, "decoding token %d: %s", r.token, sl_strerror(rc));
            goto done;
        }
        if (emit(on_text, user, &so)) {
            finish = SL_ENGINE_FINISH_CANCEL;
            goto finished;
        }
        if (so.finish == SL_FINISH_STOP) {
            finish = SL_ENGINE_FINISH_STOP;
            goto finished;
        }
        if (fr == SL_FINISH_LENGTH || e->n_history >= e->n_ctx)
            break;
        if ((rc = sl_model_forward(e->ctx, &r.token, 1, e->n_history, e->logits, false,
                                   e->pool))) {
            sl_errf(err, errlen, rc, "forward pass: %s", sl_strerror(rc));
            goto done;
        }
        e->history[e->n_history++] = r.token;
    }
    /* the end: text held back (incomplete UTF-8, a possible stop prefix) */
    sl_buf_reset(&text);
    if ((rc = sl_tok_decoder_flush(&dec, &text)) ||
        (rc = sl_stop_feed(stop, text.data ? text.data : "", text.len, &so)))
        goto done;
    if (emit(on_text, user, &so)) {
        finish = SL_ENGINE_FINISH_CANCEL;
        goto finished;
    }
    if (so.finish != SL_FINISH_STOP) {
        sl_stop_flush(stop, &so);
        if (emit(on_text, user, &so))
            finish = SL_ENGINE_FINISH_CANCEL;
    }
finished:
    if (stats) {
        uint64_t t2 = sl_now_ns();
        stats->load_ms = e->load_ms;
        stats->prompt_tokens = n;
        stats->cached_tokens = reuse;
        stats->prompt_ms = (double)(t1 - t0) / 1e6;
        stats->gen_tokens = n_gen;
        stats->gen_ms = (double)(t2 - t1) / 1e6;
        stats->finish = finish;
    }
    rc = 0;
done:
    sl_buf_free(&text);
    sl_stop_destroy(stop);
    sl_sampler_destroy(smp);
    sl_free(ids);
    return rc;
}
