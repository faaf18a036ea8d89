/* engine/sched: continuous batching over a paged KV cache. See sched.h.
 *
 * Locking: s->mu guards the hand-over state (incoming queue, cancel ids,
 * load state, closing flag, the stats snapshot). Everything else (waiting
 * queue, running set, the KV cache, samplers) belongs to the engine thread
 * alone. */
#include "engine/sched/sched.h"

#include "engine/chat/chat.h"
#include "engine/gguf/gguf.h"
#include "engine/kv/kv.h"
#include "engine/model/model.h"
#include "engine/sample/sample.h"
#include "engine/tokenizer/tokenizer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define SCHED_MAX_THREADS 256
#define SCHED_MAX_SEQS 1024
#define SCHED_MAX_CHUNK 65536
#define SCHED_MAX_CANCELS 65536  /* pending cancel ids kept between steps */
#define SCHED_DEFAULT_KV_MAX ((int64_t)2 << 30)
#define SCHED_MAX_PIECE 256      /* bytes of one token's text */

typedef struct seq {
    struct seq *next;          /* incoming / waiting queue link */
    uint64_t id;
    sl_sched_fn fn;
    void *user;
    sl_sched_kind kind;
    int32_t *toks;             /* (cap) prompt, then generated tokens */
    int n_prompt, n_toks, cap;
    int n_computed;            /* positions whose keys/values are in blocks */
    int32_t *blocks;           /* (cap / bt + 1) block table */
    uint64_t *hashes;          /* chain hash of each full block in the table */
    int n_blocks, n_hashed;
    sl_sampler *smp;
    sl_stop_matcher *stop;
    sl_tok_decoder dec;
    int32_t n_gen, cached_tokens;
    bool admitted_once, cancel;
    double *emb;               /* (n_embd) EMBED: running sum of hidden states */
} seq;

struct sl_sched {
    sl_sched_opts o;
    char *model_path, *tmpl_name;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    int state;                 /* 0 ready, SL_EAGAIN loading, < 0 failed */
    char load_err[512];
    bool closing;
    seq *in_head, *in_tail;
    uint64_t *cancels;
    size_t n_cancels, cap_cancels;
    uint64_t next_id;
    sl_sched_stats st;
    /* set once by the engine thread before state becomes 0, then read-only */
    sl_gguf *g;
    sl_model *m;
    sl_tokenizer *tok;
    sl_kv *kv;
    sl_model_ctx *ctx;
    sl_pool *pool;
    sl_model_kv_view view;
    int n_ctx, ctx_eff, n_vocab, n_tok_vocab, n_embd, bt, max_batch;
    int kv_type;               /* SL_KT_F16 or SL_KT_F32, fixed at creation */
    bool has_chat;
    sl_chat_template tmpl;
    char bos_text[64], eos_text[64];
    int32_t end_ids[SL_STOP_MAX_END_IDS];
    size_t n_end;
    /* engine thread only */
    seq *wait_head, *wait_tail;
    int n_waiting;
    seq **running;             /* (max_seqs) in admission order */
    int n_running;
    float *logits;             /* (max_seqs, n_vocab) */
    float *hidden;             /* (max_batch, n_embd) EMBED rows of a step */
    sl_model_seq *step;        /* (max_seqs) */
    seq **step_seq;            /* (max_seqs) */
    sl_sched_stats counters;   /* cumulative fields only */
};

void sl_sched_opts_default(sl_sched_opts *o)
{
    memset(o, 0, sizeof *o);
}

void sl_sched_req_default(sl_sched_req *r)
{
    memset(r, 0, sizeof *r);
    r->kind = SL_SCHED_COMPLETE;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repetition_penalty = 1.0f;
}

/* ---- loading (engine thread) ---- */

static void token_text(const sl_tokenizer *t, int32_t id, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    if (id >= 0 && !sl_tok_piece(t, id, out, cap - 1, &len))
        out[len] = 0;
    else
        out[0] = 0;
}

static void add_end_id(sl_sched *s, int32_t id)
{
    if (id < 0 || s->n_end >= SL_STOP_MAX_END_IDS)
        return;
    for (size_t i = 0; i < s->n_end; i++)
        if (s->end_ids[i] == id)
            return;
    s->end_ids[s->n_end++] = id;
}

static int load(sl_sched *s, char *err, size_t errlen)
{
    char msg[400] = "";
    const char *path = s->model_path;
    int rc = sl_gguf_open(path, &s->g, msg, sizeof msg);
    if (rc || (rc = sl_model_load(s->g, &s->m, msg, sizeof msg)) ||
        (rc = sl_model_tokenizer_load(s->g, &s->tok, msg, sizeof msg)))
        return sl_errf(err, errlen, rc, "%s: %s", path, msg[0] ? msg : sl_strerror(rc));
    const sl_model_hparams *hp = sl_model_get_hparams(s->m);
    s->n_vocab = hp->n_vocab;
    s->n_embd = hp->dim;
    s->n_tok_vocab = (int)sl_tok_n_vocab(s->tok);
    s->n_ctx = s->o.n_ctx > 0 ? SL_MIN(s->o.n_ctx, SL_MODEL_MAX_CTX) : SL_MIN(4096, hp->n_ctx_train);
    int max_seqs = s->o.max_seqs > 0 ? SL_MIN(s->o.max_seqs, SCHED_MAX_SEQS) : 16;
    int chunk = s->o.prefill_chunk > 0 ? SL_MIN(s->o.prefill_chunk, SCHED_MAX_CHUNK) : 64;
    s->bt = s->o.block_tokens > 0 ? SL_MIN(s->o.block_tokens, SL_KV_MAX_BLOCK_TOKENS)
                                  : SL_KV_DEFAULT_BLOCK_TOKENS;
    s->o.max_seqs = max_seqs;
    s->o.prefill_chunk = chunk;
    int threads = s->o.threads > 0 ? SL_MIN(s->o.threads, SCHED_MAX_THREADS) : sl_cpu_count();
    int kv_dim = hp->n_head_kv * hp->head_dim;
    int el = s->kv_type == SL_KT_F16 ? 2 : 4;
    int64_t per_token = (int64_t)2 * hp->n_layer * kv_dim * el;
    int64_t budget = s->o.kv_cache_bytes;
    if (budget <= 0) {
        budget = per_token * s->n_ctx * max_seqs;
        budget = SL_MIN(budget, SCHED_DEFAULT_KV_MAX);
        budget = SL_MAX(budget, per_token * (s->n_ctx + s->bt));
    }
    if ((rc = sl_kv_create(hp->n_layer, kv_dim, el, s->bt, budget, &s->kv)))
        return sl_errf(err, errlen, rc,
                     "cannot create a KV cache of %lld bytes (one block of %d positions takes "
                     "%lld bytes): %s",
                     (long long)budget, s->bt, (long long)(per_token * s->bt), sl_strerror(rc));
    /* a sequence can never hold more positions than the whole cache */
    s->ctx_eff = (int)SL_MIN((int64_t)s->n_ctx, (int64_t)sl_kv_n_blocks(s->kv) * s->bt);
    s->max_batch = max_seqs + chunk;
    if (threads > 1 && (rc = sl_pool_create(threads, &s->pool)))
        return sl_errf(err, errlen, rc, "cannot start %d threads: %s", threads, sl_strerror(rc));
    if ((rc = sl_model_batch_ctx_create(s->m, s->ctx_eff, s->max_batch, threads, &s->ctx)))
        return sl_errf(err, errlen, rc, "cannot allocate the activations: %s", sl_strerror(rc));
    s->running = sl_calloc((size_t)max_seqs, sizeof *s->running);
    s->logits = sl_malloc(sizeof(float) * (size_t)max_seqs * (size_t)s->n_vocab);
    s->hidden = sl_malloc(sizeof(float) * (size_t)s->max_batch * (size_t)s->n_embd);
    s->step = sl_calloc((size_t)max_seqs, sizeof *s->step);
    s->step_seq = sl_calloc((size_t)max_seqs, sizeof *s->step_seq);
    if (!s->running || !s->logits || !s->hidden || !s->step || !s->step_seq)
        return sl_errf(err, errlen, SL_ENOMEM, "out of memory");
    if (s->tmpl_name) {
        if (sl_chat_template_by_name(s->tmpl_name, &s->tmpl))
            return sl_errf(err, errlen, SL_EINVAL, "chat template \"%s\": %s", s->tmpl_name,
                         sl_chat_template_help());
        s->has_chat = true;
    } else {
        sl_str src;
        if (!sl_gguf_get_str(s->g, "tokenizer.chat_template", &src)) {
            char *j = sl_strndup(src.p, src.n);
            if (!j)
                return SL_ENOMEM;
            s->has_chat = sl_chat_template_detect(j, &s->tmpl) == 0;
            sl_free(j);
        }
    }
    token_text(s->tok, sl_tok_bos(s->tok), s->bos_text, sizeof s->bos_text);
    token_text(s->tok, sl_tok_eos(s->tok), s->eos_text, sizeof s->eos_text);
    add_end_id(s, sl_tok_eos(s->tok));
    add_end_id(s, sl_tok_eot(s->tok));
    static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|end|>",
                                            "<end_of_turn>", "<|endoftext|>"};
    for (size_t i = 0; i < SL_ARRAY_LEN(turn_ends); i++) {
        int32_t id = sl_tok_find(s->tok, turn_ends[i], strlen(turn_ends[i]));
        if (id >= 0 && sl_tok_type(s->tok, id) == SL_TOK_TYPE_CONTROL)
            add_end_id(s, id);
    }
    return 0;
}

/* ---- requests ---- */

static void seq_free(seq *q)
{
    if (!q)
        return;
    sl_free(q->toks);
    sl_free(q->blocks);
    sl_free(q->hashes);
    sl_sampler_destroy(q->smp);
    sl_stop_destroy(q->stop);
    sl_free(q->emb);
    sl_free(q);
}

static int render_chat(sl_sched *s, const sl_sched_req *r, char **out, char *err, size_t errlen)
{
    if (!s->has_chat)
        return sl_errf(err, errlen, SL_EINVAL,
                     "the model has no chat template the engine recognises (%s)",
                     sl_chat_template_help());
    if (!r->msgs && r->n_msgs)
        return sl_errf(err, errlen, SL_EINVAL, "messages: missing");
    sl_chat_msg *cm = sl_calloc(r->n_msgs ? r->n_msgs : 1, sizeof *cm);
    if (!cm)
        return SL_ENOMEM;
    for (size_t i = 0; i < r->n_msgs; i++) {
        int role = r->msgs[i].role;
        if (role < 0 || role > 2) {
            sl_free(cm);
            return sl_errf(err, errlen, SL_EINVAL, "messages[%zu].role: %d is not 0, 1 or 2", i,
                         role);
        }
        cm[i].role = role == 0 ? SL_CHAT_ROLE_SYSTEM
                     : role == 1 ? SL_CHAT_ROLE_USER
                                 : SL_CHAT_ROLE_ASSISTANT;
        cm[i].content = sl_str_c(r->msgs[i].content ? r->msgs[i].content : "");
    }
    sl_buf b;
    sl_buf_init(&b, SL_TOK_MAX_TEXT);
    int rc = sl_chat_render(s->tmpl, cm, r->n_msgs, true, s->bos_text[0] ? s->bos_text : NULL,
                            s->eos_text[0] ? s->eos_text : NULL, &b);
    sl_free(cm);
    if (rc) {
        sl_buf_free(&b);
        return sl_errf(err, errlen, rc == SL_ETOOBIG ? SL_EINVAL : rc,
                     "rendering the chat prompt: %s", sl_strerror(rc));
    }
    size_t len;
    *out = b.len ? sl_buf_take(&b, &len) : sl_strdup("");
    sl_buf_free(&b);
    return *out ? 0 : SL_ENOMEM;
}

/* Builds a request's state from r on the caller's thread (the tokenizer and
 * model facts are immutable once loaded). */
static int seq_build(sl_sched *s, const sl_sched_req *r, seq **out, char *err, size_t errlen)
{
    *out = NULL;
    if (r->kind != SL_SCHED_COMPLETE && r->kind != SL_SCHED_CHAT && r->kind != SL_SCHED_EMBED)
        return sl_errf(err, errlen, SL_EINVAL, "unknown request kind %d", (int)r->kind);
    char *chat = NULL;
    const char *text = r->prompt;
    int rc;
    if (r->kind == SL_SCHED_CHAT) {
        if ((rc = render_chat(s, r, &chat, err, errlen)))
            return rc;
        text = chat;
    } else if (!text) {
        return sl_errf(err, errlen, SL_EINVAL, "prompt: missing");
    }
    bool is_chat = r->kind == SL_SCHED_CHAT;
    bool add_bos = is_chat ? !sl_chat_template_has_bos(s->tmpl) : true;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = sl_tok_encode(s->tok, text, strlen(text), add_bos, is_chat, &ids, &n_ids);
    sl_free(chat);
    if (rc)
        return sl_errf(err, errlen, rc == SL_ENOMEM ? rc : SL_EINVAL,
                     "tokenizing the prompt: %s", sl_strerror(rc));
    seq *q = NULL;
    bool embed = r->kind == SL_SCHED_EMBED;
    /* a generation needs room for at least one computed position after the
     * prompt's; an embedding needs only the prompt's */
    size_t limit = embed ? (size_t)s->ctx_eff : (size_t)s->ctx_eff - 1;
    if (n_ids == 0) {
        rc = sl_errf(err, errlen, SL_EINVAL, "the prompt is empty and the model adds no BOS token");
        goto fail;
    }
    if (n_ids > limit) {
        rc = sl_errf(err, errlen, SL_EINVAL,
                   "the prompt is %zu tokens; the context holds %d%s (shorten the prompt or "
                   "raise the context size)",
                   n_ids, s->ctx_eff, embed ? "" : " including at least one generated token");
        goto fail;
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= s->n_tok_vocab) {
            rc = sl_errf(err, errlen, SL_EINVAL, "prompt token %d is outside the vocabulary",
                       ids[i]);
            goto fail;
        }
    q = sl_calloc(1, sizeof *q);
    if (!q) {
        rc = SL_ENOMEM;
        goto fail;
    }
    q->kind = r->kind;
    q->cap = s->ctx_eff;
    q->toks = sl_malloc(sizeof(int32_t) * (size_t)q->cap);
    int max_blocks = q->cap / s->bt + 1;
    q->blocks = sl_malloc(sizeof(int32_t) * (size_t)max_blocks);
    q->hashes = sl_malloc(sizeof(uint64_t) * (size_t)max_blocks);
    if (!q->toks || !q->blocks || !q->hashes) {
        rc = SL_ENOMEM;
        goto fail;
    }
    memcpy(q->toks, ids, sizeof(int32_t) * n_ids);
    q->n_prompt = q->n_toks = (int)n_ids;
    sl_free(ids);
    ids = NULL;
    if (embed) {
        q->emb = sl_calloc((size_t)s->n_embd, sizeof(double));
        if (!q->emb) {
            rc = SL_ENOMEM;
            goto fail;
        }
        *out = q;
        return 0;
    }
    sl_sample_params sp;
    sl_sample_params_default(&sp);
    sp.temperature = r->temperature;
    sp.top_k = r->top_k;
    sp.top_p = r->top_p;
    sp.min_p = r->min_p;
    sp.repetition_penalty = r->repetition_penalty;
    sp.presence_penalty = r->presence_penalty;
    sp.frequency_penalty = r->frequency_penalty;
    sp.seed = r->seed;
    sp.has_seed = r->has_seed;
    char msg[256] = "";
    if ((rc = sl_sample_params_check(&sp, msg, sizeof msg))) {
        rc = sl_errf(err, errlen, SL_EINVAL, "%s", msg);
        goto fail;
    }
    sl_stop_spec spec;
    memset(&spec, 0, sizeof spec);
    for (int i = 0; i < SL_SCHED_MAX_STOP; i++)
        if (r->stop[i] && r->stop[i][0])
            spec.strings[spec.n_strings++] = r->stop[i];
    memcpy(spec.end_ids, s->end_ids, sizeof(int32_t) * s->n_end);
    spec.n_end_ids = s->n_end;
    spec.max_tokens = r->max_tokens > 0 ? r->max_tokens : 0;
    if ((rc = sl_sampler_create(&sp, s->n_tok_vocab, &q->smp)) ||
        (rc = sl_stop_create(&spec, &q->stop, msg, sizeof msg))) {
        rc = sl_errf(err, errlen, rc == SL_ENOMEM ? rc : SL_EINVAL, "%s",
                   msg[0] ? msg : sl_strerror(rc));
        goto fail;
    }
    if ((rc = sl_sampler_accept_prompt(q->smp, q->toks, (size_t)q->n_prompt)))
        goto fail;
    sl_tok_decoder_init(&q->dec, s->tok, 0);
    *out = q;
    return 0;
fail:
    sl_free(ids);
    seq_free(q);
    return rc;
}

int sl_sched_submit(sl_sched *s, const sl_sched_req *r, sl_sched_fn fn, void *user, uint64_t *id,
                    char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!fn)
        return sl_errf(err, errlen, SL_EINVAL, "no event callback");
    pthread_mutex_lock(&s->mu);
    int state = s->state;
    bool closing = s->closing;
    pthread_mutex_unlock(&s->mu);
    if (closing)
        return sl_errf(err, errlen, SL_ESTATE, "the engine is shutting down");
    if (state == SL_EAGAIN)
        return sl_errf(err, errlen, SL_EAGAIN, "the model is still loading");
    if (state < 0)
        return sl_errf(err, errlen, SL_ESTATE, "the model failed to load: %s", s->load_err);
    seq *q;
    int rc = seq_build(s, r, &q, err, errlen);
    if (rc)
        return rc;
    q->fn = fn;
    q->user = user;
    pthread_mutex_lock(&s->mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->mu);
        seq_free(q);
        return sl_errf(err, errlen, SL_ESTATE, "the engine is shutting down");
    }
    q->id = ++s->next_id;
    if (s->in_tail)
        s->in_tail->next = q;
    else
        s->in_head = q;
    s->in_tail = q;
    *id = q->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sl_sched_cancel(sl_sched *s, uint64_t id)
{
    pthread_mutex_lock(&s->mu);
    if (s->n_cancels == s->cap_cancels && s->cap_cancels < SCHED_MAX_CANCELS) {
        size_t cap = s->cap_cancels ? s->cap_cancels * 2 : 16;
        uint64_t *p = sl_realloc(s->cancels, cap * sizeof *p);
        if (p) {
            s->cancels = p;
            s->cap_cancels = cap;
        }
    }
    /* past the bound (a flood of cancels between two steps) later ids are
     * dropped; a real request's id is among the first ones in practice */
    if (s->n_cancels < s->cap_cancels) {
        s->cancels[s->n_cancels++] = id;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- engine thread ---- */

static void release_blocks(sl_sched *s, seq *q)
{
    for (int i = 0; i < q->n_blocks; i++)
        sl_kv_unref(s->kv, q->blocks[i]);
    q->n_blocks = q->n_hashed = 0;
    q->n_computed = 0;
}

/* Terminal DONE, then the request is gone. */
static void finish(sl_sched *s, seq *q, int fin, const float *emb)
{
    sl_sched_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = SL_SCHED_EV_DONE;
    ev.finish = fin;
    ev.prompt_tokens = q->n_prompt;
    ev.cached_tokens = q->cached_tokens;
    ev.completion_tokens = q->n_gen;
    ev.embedding = emb;
    ev.n_embd = emb ? s->n_embd : 0;
    q->fn(q->user, &ev);
    release_blocks(s, q);
    s->counters.requests_done++;
    seq_free(q);
}

static void fail_seq(sl_sched *s, seq *q, int rc, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, sl_strerror(rc));
    sl_sched_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = SL_SCHED_EV_ERROR;
    ev.err = rc;
    ev.message = msg;
    ev.prompt_tokens = q->n_prompt;
    ev.completion_tokens = q->n_gen;
    q->fn(q->user, &ev);
    release_blocks(s, q);
    s->counters.requests_done++;
    seq_free(q);
}

static void emit_text(seq *q, const sl_stop_out *o)
{
    if (!o->emit_len)
        return;
    sl_sched_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = SL_SCHED_EV_TEXT;
    ev.text = o->emit;
    ev.len = o->emit_len;
    q->fn(q->user, &ev);
}

static void push_wait_front(sl_sched *s, seq *q)
{
    q->next = s->wait_head;
    s->wait_head = q;
    if (!s->wait_tail)
        s->wait_tail = q;
    s->n_waiting++;
}

static seq *pop_wait(sl_sched *s)
{
    seq *q = s->wait_head;
    if (q) {
        s->wait_head = q->next;
        if (!s->wait_head)
            s->wait_tail = NULL;
        q->next = NULL;
        s->n_waiting--;
    }
    return q;
}

/* Attaches q to the published blocks of its longest cached prefix, keeping
 * at least its last token to compute (its logits are needed). Embeddings
 * attach nothing: they need the hidden state of every token. */
static void attach_prefix(sl_sched *s, seq *q)
{
    if (q->kind == SL_SCHED_EMBED)
        return;
    uint64_t parent = 0;
    while ((q->n_blocks + 1) * s->bt <= q->n_toks - 1) {
        const int32_t *t = q->toks + (size_t)q->n_blocks * s->bt;
        uint64_t h = sl_kv_chain_hash(parent, t, s->bt);
        int b = sl_kv_lookup(s->kv, h, parent, t);
        if (b < 0)
            break;
        q->hashes[q->n_blocks] = h;
        q->blocks[q->n_blocks++] = b;
        parent = h;
    }
    q->n_hashed = q->n_blocks;
    q->n_computed = q->n_blocks * s->bt;
}

static int blocks_for(const sl_sched *s, int positions)
{
    return (positions + s->bt - 1) / s->bt;
}

static void admit(sl_sched *s)
{
    while (s->n_running < s->o.max_seqs && s->wait_head) {
        seq *q = s->wait_head;
        attach_prefix(s, q);
        sl_kv_stats ks;
        sl_kv_stats_get(s->kv, &ks);
        int need = blocks_for(s, q->n_toks) - q->n_blocks;
        if (s->n_running > 0 && need > ks.free + ks.cached) {
            release_blocks(s, q); /* the attached blocks go back to the cache */
            break;
        }
        pop_wait(s);
        if (!q->admitted_once) {
            q->admitted_once = true;
            q->cached_tokens = q->n_computed;
            s->counters.prompt_tokens += q->n_prompt;
            s->counters.prefix_hit_tokens += q->n_computed;
        }
        s->running[s->n_running++] = q;
    }
}

/* Sends the newest running request back to the head of the queue. */
static void preempt_newest(sl_sched *s)
{
    seq *v = s->running[--s->n_running];
    release_blocks(s, v);
    push_wait_front(s, v);
    s->counters.preemptions++;
}

/* Samples the next token of q from logits and streams its text. Returns true
 * when q is finished (and freed). */
static bool advance(sl_sched *s, seq *q, const float *logits)
{
    sl_sample_result r;
    int rc = sl_sampler_sample(q->smp, logits, &r);
    if (rc) {
        fail_seq(s, q, rc, "sampling");
        return true;
    }
    q->n_gen++;
    sl_finish_reason fr = sl_stop_token(q->stop, r.token);
    sl_stop_out so;
    char piece[SCHED_MAX_PIECE * 4];
    sl_buf text;
    sl_buf_init(&text, sizeof piece);
    int fin = 1;
    if (fr != SL_FINISH_STOP) {
        if ((rc = sl_tok_decoder_feed(&q->dec, r.token, &text)) ||
            (rc = sl_stop_feed(q->stop, text.data ? text.data : "", text.len, &so))) {
            sl_buf_free(&text);
            fail_seq(s, q, rc, "decoding a token");
            return true;
        }
        emit_text(q, &so);
        if (so.finish == SL_FINISH_STOP) {
            sl_buf_free(&text);
            finish(s, q, 0, NULL);
            return true;
        }
        if (fr != SL_FINISH_LENGTH && q->n_computed < s->ctx_eff) {
            sl_buf_free(&text);
            q->toks[q->n_toks++] = r.token;
            return false;
        }
    } else {
        fin = 0;
    }
    /* the end: text held back (incomplete UTF-8, a possible stop prefix) */
    sl_buf_reset(&text);
    if (!sl_tok_decoder_flush(&q->dec, &text) &&
        !sl_stop_feed(q->stop, text.data ? text.data : "", text.len, &so)) {
        emit_text(q, &so);
        if (so.finish != SL_FINISH_STOP) {
            sl_stop_flush(q->stop, &so);
            emit_text(q, &so);
        } else {
            fin = 0;
        }
    }
    sl_buf_free(&text);
    finish(s, q, fin, NULL);
    return true;
}

/* Delivers an embedding: mean of the hidden states, L2-normalised. */
static void finish_embed(sl_sched *s, seq *q)
{
    float *e = sl_malloc(sizeof(float) * (size_t)s->n_embd);
    if (!e) {
        fail_seq(s, q, SL_ENOMEM, "embedding");
        return;
    }
    double norm = 0;
    for (int i = 0; i < s->n_embd; i++) {
        double v = q->emb[i] / q->n_toks;
        norm += v * v;
    }
    norm = sqrt(norm);
    for (int i = 0; i < s->n_embd; i++)
        e[i] = (float)(norm > 0 ? q->emb[i] / q->n_toks / norm : 0.0);
    finish(s, q, 0, e);
    sl_free(e);
}

static int hist_bin(int n)
{
    int b = 0;
    while (b < 8 && n > (1 << b))
        b++;
    return b;
}

/* One step: schedule, run, sample. Returns false when nothing ran. */
static bool step(sl_sched *s)
{
    int n_step = 0, n_tok = 0, n_prefill = 0, n_decode = 0;
    int budget = s->o.prefill_chunk;
    size_t hidden_at = 0;
    for (int i = 0; i < s->n_running; i++) {
        seq *q = s->running[i];
        int remaining = q->n_toks - q->n_computed;
        int take = remaining == 1 ? 1 : SL_MIN(remaining, budget);
        if (take <= 0)
            continue;
        /* blocks for positions up to n_computed + take */
        bool self_out = false;
        while (q->n_blocks < blocks_for(s, q->n_computed + take)) {
            int b;
            if (!sl_kv_alloc(s->kv, &b)) {
                q->blocks[q->n_blocks++] = b;
                continue;
            }
            /* no block left: the newest running request gives its blocks
             * back (it is at or after i, so not yet in this step) */
            if (s->running[s->n_running - 1] == q)
                self_out = true;
            preempt_newest(s);
            if (self_out)
                break;
        }
        if (self_out)
            break;
        if (remaining > 1)
            budget -= take;
        bool last = q->n_computed + take == q->n_toks;
        bool embed = q->kind == SL_SCHED_EMBED;
        sl_model_seq *m = &s->step[n_step];
        m->tokens = q->toks + q->n_computed;
        m->n = take;
        m->pos = q->n_computed;
        m->blocks = q->blocks;
        m->n_logits = last && !embed ? 1 : 0;
        m->hidden = embed ? s->hidden + hidden_at : NULL;
        if (embed)
            hidden_at += (size_t)take * (size_t)s->n_embd;
        s->step_seq[n_step++] = q;
        n_tok += take;
        if (remaining == 1 && !embed)
            n_decode++;
        else
            n_prefill += take;
    }
    if (!n_step)
        return false;
    uint64_t t0 = sl_now_ns();
    int rc = sl_model_forward_batch(s->ctx, &s->view, s->step, n_step, s->logits, s->pool);
    double ms = (double)(sl_now_ns() - t0) / 1e6;
    if (n_prefill)
        s->counters.prefill_ms += ms;
    else
        s->counters.decode_ms += ms;
    s->counters.prefill_tokens += n_prefill;
    s->counters.decode_tokens += n_decode;
    s->counters.batch_hist[hist_bin(n_tok)]++;

    /* the running set keeps its order; finished requests leave it */
    int row = 0;
    hidden_at = 0;
    for (int k = 0; k < n_step; k++) {
        seq *q = s->step_seq[k];
        const sl_model_seq *m = &s->step[k];
        bool done = false;
        if (rc) {
            fail_seq(s, q, rc, "forward pass");
            done = true;
        } else {
            q->n_computed += m->n;
            /* publish the blocks this step filled */
            while ((q->n_hashed + 1) * s->bt <= q->n_computed) {
                uint64_t parent = q->n_hashed ? q->hashes[q->n_hashed - 1] : 0;
                const int32_t *t = q->toks + (size_t)q->n_hashed * s->bt;
                uint64_t h = sl_kv_chain_hash(parent, t, s->bt);
                sl_kv_publish(s->kv, q->blocks[q->n_hashed], h, parent, t);
                q->hashes[q->n_hashed++] = h;
            }
            if (m->hidden) {
                /* summed in position order whatever the chunking */
                for (int t = 0; t < m->n; t++)
                    for (int i = 0; i < s->n_embd; i++)
                        q->emb[i] += m->hidden[(size_t)t * s->n_embd + i];
                if (q->n_computed == q->n_toks) {
                    finish_embed(s, q);
                    done = true;
                }
            } else if (m->n_logits) {
                done = advance(s, q, s->logits + (size_t)row * s->n_vocab);
                row++;
            }
        }
        if (done) {
            for (int i = 0; i < s->n_running; i++)
                if (s->running[i] == q) {
                    memmove(&s->running[i], &s->running[i + 1],
                            sizeof(seq *) * (size_t)(s->n_running - i - 1));
                    s->n_running--;
                    break;
                }
        }
    }
    return true;
}

/* Marks the requests named in ids, then retires every marked one. */
static void apply_cancels(sl_sched *s, const uint64_t *ids, size_t n)
{
    if (!n)
        return;
    for (size_t k = 0; k < n; k++) {
        for (int i = 0; i < s->n_running; i++)
            if (s->running[i]->id == ids[k])
                s->running[i]->cancel = true;
        for (seq *q = s->wait_head; q; q = q->next)
            if (q->id == ids[k])
                q->cancel = true;
    }
    for (int i = 0; i < s->n_running;) {
        seq *q = s->running[i];
        if (q->cancel) {
            memmove(&s->running[i], &s->running[i + 1],
                    sizeof(seq *) * (size_t)(s->n_running - i - 1));
            s->n_running--;
            finish(s, q, 2, NULL);
        } else {
            i++;
        }
    }
    seq **link = &s->wait_head;
    s->wait_tail = NULL;
    while (*link) {
        seq *q = *link;
        if (q->cancel) {
            *link = q->next;
            s->n_waiting--;
            finish(s, q, 2, NULL);
        } else {
            s->wait_tail = q;
            link = &q->next;
        }
    }
}

static void publish_stats(sl_sched *s)
{
    sl_kv_stats ks;
    sl_kv_stats_get(s->kv, &ks);
    pthread_mutex_lock(&s->mu);
    sl_sched_stats *st = &s->st;
    *st = s->counters;
    st->running = s->n_running;
    st->waiting = s->n_waiting;
    for (seq *q = s->in_head; q; q = q->next)
        st->waiting++;
    st->kv_blocks_total = ks.total;
    st->kv_blocks_used = ks.used;
    st->kv_blocks_cached = ks.cached;
    st->n_ctx = s->ctx_eff;
    st->n_embd = s->n_embd;
    pthread_mutex_unlock(&s->mu);
}

static void *engine_main(void *arg)
{
    sl_sched *s = arg;
    char err[512] = "";
    int rc = load(s, err, sizeof err);
    if (!rc) {
        void *kb, *vb;
        size_t bs, ls;
        sl_kv_layout(s->kv, &kb, &vb, &bs, &ls);
        s->view = (sl_model_kv_view){kb, vb, bs, ls, s->bt, s->kv_type};
    }
    pthread_mutex_lock(&s->mu);
    s->state = rc ? rc : 0;
    if (rc)
        snprintf(s->load_err, sizeof s->load_err, "%s", err[0] ? err : sl_strerror(rc));
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc)
        return NULL;
    publish_stats(s);
    uint64_t *cancels = NULL;
    size_t cap_cancels = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->closing && !s->in_head && !s->n_cancels && !s->n_running && !s->n_waiting)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->closing) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* new requests join the queue's tail in arrival order */
        if (s->in_head) {
            if (s->wait_tail)
                s->wait_tail->next = s->in_head;
            else
                s->wait_head = s->in_head;
            s->wait_tail = s->in_tail;
            for (seq *q = s->in_head; q; q = q->next)
                s->n_waiting++;
            s->in_head = s->in_tail = NULL;
        }
        /* swap the cancel list out so that cancel() never waits for a step */
        uint64_t *ids = s->cancels;
        size_t n_ids = s->n_cancels, cap = s->cap_cancels;
        s->cancels = cancels;
        s->cap_cancels = cap_cancels;
        s->n_cancels = 0;
        cancels = ids;
        cap_cancels = cap;
        pthread_mutex_unlock(&s->mu);

        apply_cancels(s, cancels, n_ids);
        admit(s);
        step(s);
        publish_stats(s);
    }
    sl_free(cancels);
    /* shutting down: every live request gets its terminal event */
    while (s->n_running)
        finish(s, s->running[--s->n_running], 2, NULL);
    seq *q;
    while ((q = pop_wait(s)))
        finish(s, q, 2, NULL);
    pthread_mutex_lock(&s->mu);
    seq *in = s->in_head;
    s->in_head = s->in_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (in) {
        seq *next = in->next;
        finish(s, in, 2, NULL);
        in = next;
    }
    publish_stats(s);
    return NULL;
}

int sl_sched_create(const sl_sched_opts *o, sl_sched **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!o || !o->model_path || !o->model_path[0])
        return sl_errf(err, errlen, SL_EINVAL, "model_path: missing");
    int kv_type = o->kv_type ? sl_model_kv_type_parse(o->kv_type) : SL_MODEL_KV_DEFAULT;
    if (kv_type < 0)
        return sl_errf(err, errlen, SL_EINVAL, "kv_type: unknown KV cache type '%s' (expected f16 "
                       "or f32)", o->kv_type);
    sl_sched *s = sl_calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->o = *o;
    s->o.kv_type = NULL; /* the caller's string need not outlive this call */
    s->kv_type = kv_type;
    s->model_path = sl_strdup(o->model_path);
    s->tmpl_name = o->chat_template ? sl_strdup(o->chat_template) : NULL;
    if (!s->model_path || (o->chat_template && !s->tmpl_name)) {
        sl_free(s->model_path);
        sl_free(s->tmpl_name);
        sl_free(s);
        return SL_ENOMEM;
    }
    s->o.model_path = s->model_path;
    s->o.chat_template = s->tmpl_name;
    s->state = SL_EAGAIN;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, engine_main, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        sl_free(s->model_path);
        sl_free(s->tmpl_name);
        sl_free(s);
        return sl_errf(err, errlen, SL_EIO, "cannot start the engine thread");
    }
    *out = s;
    return 0;
}

int sl_sched_state(sl_sched *s, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->mu);
    int st = s->state;
    if (st < 0 && st != SL_EAGAIN && err && errlen)
        snprintf(err, errlen, "%s", s->load_err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

void sl_sched_destroy(sl_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sl_free(s->cancels);
    sl_free(s->running);
    sl_free(s->logits);
    sl_free(s->hidden);
    sl_free(s->step);
    sl_free(s->step_seq);
    sl_model_ctx_free(s->ctx);
    sl_pool_destroy(s->pool);
    sl_kv_destroy(s->kv);
    sl_tok_destroy(s->tok);
    sl_model_free(s->m);
    sl_gguf_close(s->g);
    sl_free(s->model_path);
    sl_free(s->tmpl_name);
    sl_free(s);
}

void sl_sched_stats_get(sl_sched *s, sl_sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
}
