/* The scheduler end to end on small random-weight models: batched output
 * equals each request alone (greedy and seeded), equals the single-sequence
 * engine, prefix hits, preemption under a tiny KV budget, cancellation,
 * errors, embeddings, chat, and a mixed soak. */
#include "engine/sched/sched.h"
#include "model/model_fixture.h"
#include "sluice/engine.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static char g_path[256];

static bool write_model(const fx_config *c)
{
    fx_model fx;
    if (fx_build(&fx, c)) {
        T_FAIL_AT("fx_build");
        return false;
    }
    snprintf(g_path, sizeof g_path, "/tmp/sl_test_sched_%d.gguf", (int)getpid());
    FILE *f = fopen(g_path, "wb");
    bool ok = f && fwrite(fx.bytes, 1, fx.len, f) == fx.len;
    if (f)
        fclose(f);
    fx_free(&fx);
    return ok;
}

/* What one request received. */
typedef struct result {
    char text[4096];
    size_t len;
    int n_text, n_terminal, finish, kind;
    int32_t prompt_tokens, cached_tokens, completion_tokens;
    float emb[64];
    int n_embd;
    bool done, after_terminal;
    bool slow; /* the callback sleeps 2 ms per TEXT (keeps a request running) */
} result;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
/* While set, the scheduler thread waits in any callback: run_all holds
 * it so that every request is queued before the first step's tokens go out,
 * however the OS schedules the submitting thread against the engine's. */
static bool g_hold;

static void on_event(void *user, const sl_sched_event *ev)
{
    result *r = user;
    pthread_mutex_lock(&g_mu);
    while (g_hold)
        pthread_cond_wait(&g_cv, &g_mu);
    if (r->done)
        r->after_terminal = true;
    if (ev->kind == SL_SCHED_EV_TEXT) {
        if (r->len + ev->len < sizeof r->text) {
            memcpy(r->text + r->len, ev->text, ev->len);
            r->len += ev->len;
            r->text[r->len] = 0;
        }
        r->n_text++;
        bool slow = r->slow;
        pthread_mutex_unlock(&g_mu);
        if (slow)
            usleep(2000);
        return;
    } else {
        r->kind = ev->kind;
        r->n_terminal++;
        r->finish = ev->finish;
        r->prompt_tokens = ev->prompt_tokens;
        r->cached_tokens = ev->cached_tokens;
        r->completion_tokens = ev->completion_tokens;
        if (ev->embedding && ev->n_embd <= 64) {
            memcpy(r->emb, ev->embedding, sizeof(float) * ev->n_embd);
            r->n_embd = ev->n_embd;
        }
        r->done = true;
    }
    pthread_mutex_unlock(&g_mu);
}

static bool wait_all(result *r, int n, int seconds)
{
    for (int i = 0; i < seconds * 200; i++) {
        pthread_mutex_lock(&g_mu);
        int done = 0;
        for (int k = 0; k < n; k++)
            done += r[k].done;
        pthread_mutex_unlock(&g_mu);
        if (done == n)
            return true;
        usleep(5000);
    }
    T_FAIL_AT("timed out waiting for %d requests", n);
    return false;
}

static sl_sched *open_sched(int max_seqs, int64_t kv_bytes, int threads, int chunk, int bt)
{
    sl_sched_opts o;
    sl_sched_opts_default(&o);
    o.model_path = g_path;
    o.n_ctx = 96;
    o.max_seqs = max_seqs;
    o.kv_cache_bytes = kv_bytes;
    o.threads = threads;
    o.prefill_chunk = chunk;
    o.block_tokens = bt;
    sl_sched *s = NULL;
    char err[512] = "";
    if (sl_sched_create(&o, &s, err, sizeof err)) {
        T_FAIL_AT("create: %s", err);
        return NULL;
    }
    int st;
    for (int i = 0; i < 2000 && (st = sl_sched_state(s, err, sizeof err)) == SL_EAGAIN; i++)
        usleep(5000);
    if (sl_sched_state(s, err, sizeof err)) {
        T_FAIL_AT("load: %s", err);
        sl_sched_destroy(s);
        return NULL;
    }
    return s;
}

/* Prompt i: distinct words; every fourth shares a long common beginning. */
static void prompt_of(int i, char *out, size_t cap)
{
    static const char *w[] = {"hello", "world", "ab", "cat", "dog", "a b", "xyz", "hi there"};
    if (i % 4 == 0)
        snprintf(out, cap, "hello world hello world hello world hello %s %s", w[i % 8],
                 w[(i / 8) % 8]);
    else
        snprintf(out, cap, "%s %s %s", w[i % 8], w[(i / 3) % 8], w[(i * 5) % 8]);
}

static void req_of(int i, sl_sched_req *r, const char *prompt, bool seeded)
{
    sl_sched_req_default(r);
    r->prompt = prompt;
    r->max_tokens = 6 + i % 7;
    if (seeded) {
        r->temperature = 0.9f;
        r->top_k = 40;
        r->top_p = 0.95f;
        r->seed = 1000 + (uint64_t)i;
        r->has_seed = true;
    } else {
        r->temperature = 0;
    }
}

/* The stats once the engine has published the step that finished the
 * want_done-th request: terminal events fire inside a step, and the step's
 * stats (blocks freed, requests done) are published when it ends. */
static void settled_stats(sl_sched *s, sl_sched_stats *st, long long want_done)
{
    for (int i = 0; i < 2000; i++) {
        sl_sched_stats_get(s, st);
        if ((long long)st->requests_done >= want_done)
            return;
        usleep(5000);
    }
}

/* Runs requests 0..n-1 on s, all submitted at once. */
static void run_all(sl_sched *s, result *res, int n, bool seeded)
{
    char prompts[64][128];
    memset(res, 0, sizeof *res * n);
    pthread_mutex_lock(&g_mu);
    g_hold = true;
    pthread_mutex_unlock(&g_mu);
    for (int i = 0; i < n; i++) {
        prompt_of(i, prompts[i], sizeof prompts[i]);
        sl_sched_req r;
        req_of(i, &r, prompts[i], seeded);
        uint64_t id;
        char err[256];
        if (sl_sched_submit(s, &r, on_event, &res[i], &id, err, sizeof err))
            T_FAIL_AT("submit %d: %s", i, err);
    }
    pthread_mutex_lock(&g_mu);
    g_hold = false;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    wait_all(res, n, 120);
}

/* Each request alone (max_seqs 1) vs 64 at once in one batch. */
static void check_invariance(bool seeded)
{
    enum { N = 64 };
    static result alone[N], batched[N];
    sl_sched *s = open_sched(1, 0, 1, 7, 16);
    if (!s)
        return;
    for (int i = 0; i < N; i++) {
        char p[128];
        prompt_of(i, p, sizeof p);
        sl_sched_req r;
        req_of(i, &r, p, seeded);
        uint64_t id;
        char err[256];
        memset(&alone[i], 0, sizeof alone[i]);
        EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &alone[i], &id, err, sizeof err), 0);
        wait_all(&alone[i], 1, 30);
    }
    sl_sched_destroy(s);
    s = open_sched(N, 0, 2, 32, 4);
    if (!s)
        return;
    run_all(s, batched, N, seeded);
    sl_sched_stats st;
    settled_stats(s, &st, N);
    EXPECT_EQ_INT(st.requests_done, N);
    EXPECT(st.batch_hist[0] + st.batch_hist[1] + st.batch_hist[2] < st.batch_hist[3] +
           st.batch_hist[4] + st.batch_hist[5] + st.batch_hist[6] + st.batch_hist[7] +
           st.batch_hist[8]); /* most steps really batched */
    EXPECT_EQ_INT(st.kv_blocks_used, 0);
    sl_sched_destroy(s);
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        EXPECT_EQ_INT(alone[i].n_terminal, 1);
        EXPECT_EQ_INT(batched[i].n_terminal, 1);
        EXPECT(!batched[i].after_terminal);
        EXPECT_EQ_INT(batched[i].kind, SL_SCHED_EV_DONE);
        EXPECT_EQ_STR(batched[i].text, alone[i].text);
        EXPECT_EQ_INT(batched[i].completion_tokens, alone[i].completion_tokens);
        EXPECT_EQ_INT(batched[i].finish, alone[i].finish);
        EXPECT_EQ_INT(batched[i].prompt_tokens, alone[i].prompt_tokens);
        distinct += i > 0 && strcmp(alone[i].text, alone[i - 1].text) != 0;
    }
    EXPECT(distinct > N / 2); /* the outputs differ: the comparison means something */
}

static void test_greedy_64_equals_alone(void)
{
    check_invariance(false);
}

static void test_seeded_equals_alone(void)
{
    check_invariance(true);
}

typedef struct eng_text {
    char b[4096];
    size_t n;
} eng_text;

static int on_engine_text(void *user, const char *t, size_t n)
{
    eng_text *e = user;
    if (e->n + n < sizeof e->b) {
        memcpy(e->b + e->n, t, n);
        e->n += n;
        e->b[e->n] = 0;
    }
    return 0;
}

/* The scheduler gives what the single-sequence engine (an independent
 * generate loop) gives, several requests at once. */
static void test_matches_engine(void)
{
    sl_engine_params ep;
    sl_engine_params_default(&ep);
    ep.n_threads = 1;
    ep.n_ctx = 96;
    sl_engine *e = NULL;
    char err[256] = "";
    EXPECT_EQ_INT(sl_engine_load(g_path, &ep, &e, err, sizeof err), 0);
    if (!e)
        return;
    sl_sched *s = open_sched(4, 0, 2, 16, 16);
    if (!s) {
        sl_engine_free(e);
        return;
    }
    enum { N = 6 };
    char p[N][128];
    result res[N];
    memset(res, 0, sizeof res);
    for (int i = 0; i < N; i++) {
        prompt_of(i, p[i], sizeof p[i]);
        sl_sched_req r;
        sl_sched_req_default(&r);
        r.prompt = p[i];
        r.temperature = 0;
        r.max_tokens = 20;
        uint64_t id;
        EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &res[i], &id, err, sizeof err), 0);
    }
    wait_all(res, N, 60);
    for (int i = 0; i < N; i++) {
        sl_engine_gen_params gp;
        sl_engine_gen_params_default(&gp);
        gp.temperature = 0;
        gp.max_tokens = 20;
        eng_text et = {.n = 0};
        sl_engine_stats est;
        EXPECT_EQ_INT(sl_engine_generate(e, p[i], &gp, on_engine_text, &et, &est, err, sizeof err), 0);
        EXPECT_EQ_STR(res[i].text, et.b);
        EXPECT_EQ_INT(res[i].completion_tokens, est.gen_tokens);
        EXPECT_EQ_INT(res[i].prompt_tokens, est.prompt_tokens);
        EXPECT_EQ_INT(res[i].finish, (int)est.finish);
    }
    sl_sched_destroy(s);
    sl_engine_free(e);
}

static void submit_one(sl_sched *s, const char *prompt, int max_tokens, result *res, uint64_t *id)
{
    sl_sched_req r;
    sl_sched_req_default(&r);
    r.prompt = prompt;
    r.temperature = 0;
    r.max_tokens = max_tokens;
    char err[256];
    memset(res, 0, sizeof *res);
    if (sl_sched_submit(s, &r, on_event, res, id, err, sizeof err))
        T_FAIL_AT("submit: %s", err);
}

/* The same long prompt twice: the second attaches to the first one's full
 * blocks and still gives the same output. */
static void test_prefix_hits(void)
{
    sl_sched *s = open_sched(4, 0, 1, 8, 4);
    if (!s)
        return;
    const char *p = "hello world hello world cat dog hello world xyz ab ab cat";
    result a, b;
    uint64_t id;
    submit_one(s, p, 10, &a, &id);
    wait_all(&a, 1, 30);
    sl_sched_stats st;
    settled_stats(s, &st, 1);
    EXPECT_EQ_INT(st.prefix_hit_tokens, 0);
    EXPECT(st.kv_blocks_cached > 0);
    EXPECT_EQ_INT(st.kv_blocks_used, 0);
    submit_one(s, p, 10, &b, &id);
    wait_all(&b, 1, 30);
    EXPECT_EQ_STR(b.text, a.text);
    EXPECT_EQ_INT(a.cached_tokens, 0);
    /* all full blocks of the prompt but the one holding its last token */
    EXPECT_EQ_INT(b.cached_tokens, (a.prompt_tokens - 1) / 4 * 4);
    EXPECT(b.cached_tokens >= 8);
    settled_stats(s, &st, 2);
    EXPECT_EQ_INT(st.prefix_hit_tokens, b.cached_tokens);
    EXPECT_EQ_INT(st.prompt_tokens, 2 * a.prompt_tokens);
    sl_sched_destroy(s);
}

/* A KV budget far below what the requests need at once: requests are
 * preempted and recomputed, and every output is still exactly right. */
static void test_preemption(void)
{
    enum { N = 12 };
    static result ref[N], got[N];
    sl_sched *s = open_sched(N, 0, 1, 64, 4);
    if (!s)
        return;
    run_all(s, ref, N, false);
    sl_sched_stats st;
    settled_stats(s, &st, N);
    EXPECT_EQ_INT(st.preemptions, 0);
    sl_sched_destroy(s);
    /* 2 layers x 2 kv heads x 16 dims x K,V x 2 bytes (the f16 cache) = 256
     * bytes per position; 30 blocks of 4 positions: about 3 requests' worth */
    s = open_sched(N, 30 * 4 * 256, 2, 64, 4);
    if (!s)
        return;
    run_all(s, got, N, false);
    settled_stats(s, &st, N);
    EXPECT_EQ_INT(st.kv_blocks_total, 30);
    EXPECT(st.preemptions > 0);
    EXPECT_EQ_INT(st.kv_blocks_used, 0);
    EXPECT_EQ_INT(st.requests_done, N);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ_INT(got[i].n_terminal, 1);
        EXPECT_EQ_STR(got[i].text, ref[i].text);
        EXPECT_EQ_INT(got[i].completion_tokens, ref[i].completion_tokens);
    }
    sl_sched_destroy(s);
}

static void test_cancel(void)
{
    sl_sched *s = open_sched(4, 0, 1, 4, 4);
    if (!s)
        return;
    result r[3];
    memset(r, 0, sizeof r);
    uint64_t id[3];
    /* r[0] is cancelled right after submit, r[1] after its first text (its
     * callback is slow, so it cannot run to the end of the context first) */
    /* the engine waits in r[0]'s first callback until the cancel is in, so
     * that it cannot run r[0] to the end of its context first when the OS
     * does not schedule this thread for a while */
    pthread_mutex_lock(&g_mu);
    g_hold = true;
    pthread_mutex_unlock(&g_mu);
    submit_one(s, "hello world", 0, &r[0], &id[0]); /* until the context is full */
    sl_sched_cancel(s, id[0]);
    pthread_mutex_lock(&g_mu);
    g_hold = false;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    r[1].slow = true;
    sl_sched_req q;
    sl_sched_req_default(&q);
    q.prompt = "cat dog";
    q.temperature = 0;
    char err[256];
    EXPECT_EQ_INT(sl_sched_submit(s, &q, on_event, &r[1], &id[1], err, sizeof err), 0);
    submit_one(s, "ab", 3, &r[2], &id[2]);
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&g_mu);
        int n = r[1].n_text + r[1].n_terminal;
        pthread_mutex_unlock(&g_mu);
        if (n)
            break;
        usleep(1000);
    }
    sl_sched_cancel(s, id[0]);     /* idempotent */
    sl_sched_cancel(s, 987654321); /* unknown */
    sl_sched_cancel(s, id[1]);
    wait_all(r, 3, 30);
    EXPECT_EQ_INT(r[0].finish, 2);
    EXPECT_EQ_INT(r[1].finish, 2);
    EXPECT(r[2].finish != 2);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ_INT(r[i].n_terminal, 1);
    sl_sched_cancel(s, id[2]); /* already finished */
    usleep(20000);
    sl_sched_stats st;
    settled_stats(s, &st, 3);
    EXPECT_EQ_INT(st.kv_blocks_used, 0);
    EXPECT_EQ_INT(st.running, 0);
    EXPECT_EQ_INT(st.requests_done, 3);
    /* destroy with live requests: each gets its terminal event */
    result late[2];
    submit_one(s, "hello", 0, &late[0], &id[0]);
    submit_one(s, "world", 0, &late[1], &id[1]);
    sl_sched_destroy(s);
    EXPECT_EQ_INT(late[0].n_terminal, 1);
    EXPECT_EQ_INT(late[1].n_terminal, 1);
}

static void test_errors(void)
{
    sl_sched *s = open_sched(4, 0, 1, 16, 16);
    if (!s)
        return;
    char big[400], err[256] = "";
    for (int i = 0; i < 399; i++)
        big[i] = "ab "[i % 3];
    big[399] = 0;
    sl_sched_req r;
    sl_sched_req_default(&r);
    r.prompt = big;
    uint64_t id;
    result res;
    EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &res, &id, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "the context holds 96");
    r.prompt = "hello";
    r.top_p = 2.0f;
    EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &res, &id, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "top_p");
    sl_sched_req_default(&r);
    r.kind = SL_SCHED_CHAT;
    sl_sched_msg m = {1, "hi"};
    r.msgs = &m;
    r.n_msgs = 1;
    EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &res, &id, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "chat template");
    sl_sched_destroy(s);

    sl_sched_opts o;
    sl_sched_opts_default(&o);
    o.model_path = "/nonexistent/model.gguf";
    EXPECT_EQ_INT(sl_sched_create(&o, &s, err, sizeof err), 0);
    int st;
    while ((st = sl_sched_state(s, err, sizeof err)) == SL_EAGAIN)
        usleep(2000);
    EXPECT(st < 0);
    EXPECT_CONTAINS(err, "/nonexistent/model.gguf");
    sl_sched_req_default(&r);
    r.prompt = "x";
    EXPECT_EQ_INT(sl_sched_submit(s, &r, on_event, &res, &id, err, sizeof err), SL_ESTATE);
    sl_sched_destroy(s);
}

static void test_embeddings(void)
{
    sl_sched *s = open_sched(4, 0, 2, 5, 4);
    if (!s)
        return;
    const char *p[3] = {"hello world cat dog", "hello world cat dog", "xyz ab"};
    result r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        sl_sched_req q;
        sl_sched_req_default(&q);
        q.kind = SL_SCHED_EMBED;
        q.prompt = p[i];
        uint64_t id;
        char err[256];
        EXPECT_EQ_INT(sl_sched_submit(s, &q, on_event, &r[i], &id, err, sizeof err), 0);
    }
    /* a generation running beside them changes nothing */
    result gen;
    uint64_t gid;
    submit_one(s, "hello", 8, &gen, &gid);
    wait_all(r, 3, 30);
    wait_all(&gen, 1, 30);
    sl_sched_stats st;
    sl_sched_stats_get(s, &st);
    EXPECT_EQ_INT(st.n_embd, 64);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_INT(r[i].n_embd, 64);
        double n2 = 0;
        for (int k = 0; k < r[i].n_embd; k++)
            n2 += (double)r[i].emb[k] * r[i].emb[k];
        EXPECT_NEAR(n2, 1.0, 1e-5);
        EXPECT_EQ_INT(r[i].completion_tokens, 0);
    }
    EXPECT(memcmp(r[0].emb, r[1].emb, sizeof r[0].emb) == 0);
    EXPECT(memcmp(r[0].emb, r[2].emb, sizeof r[0].emb) != 0);
    sl_sched_destroy(s);
}

/* 100 requests of every kind, some cancelled midway, a small KV budget. */
static void test_soak(void)
{
    enum { N = 100 };
    static result r[N];
    static char prompts[N][128];
    memset(r, 0, sizeof r);
    sl_sched *s = open_sched(16, 40 * 4 * 256, 2, 24, 4); /* 40 blocks of 4 f16 positions */
    if (!s)
        return;
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        prompt_of(i, prompts[i], sizeof prompts[i]);
        sl_sched_req q;
        req_of(i, &q, prompts[i], i % 2 == 1);
        if (i % 10 == 3)
            q.kind = SL_SCHED_EMBED;
        if (i % 7 == 0)
            q.stop[0] = "e";
        char err[256];
        EXPECT_EQ_INT(sl_sched_submit(s, &q, on_event, &r[i], &ids[i], err, sizeof err), 0);
        if (i % 9 == 4)
            sl_sched_cancel(s, ids[i]);
    }
    wait_all(r, N, 120);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ_INT(r[i].n_terminal, 1);
        EXPECT(!r[i].after_terminal);
        EXPECT_EQ_INT(r[i].kind, SL_SCHED_EV_DONE);
        if (i % 7 == 0)
            EXPECT(!strchr(r[i].text, 'e'));
    }
    sl_sched_stats st;
    settled_stats(s, &st, N);
    EXPECT_EQ_INT(st.requests_done, N);
    EXPECT_EQ_INT(st.kv_blocks_used, 0);
    EXPECT_EQ_INT(st.running + st.waiting, 0);
    sl_sched_destroy(s);
}

static void test_chat(void)
{
    fx_config c = fx_default("qwen2", SL_KT_F32);
    c.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                      "{% endfor %}<|im_start|>assistant\n";
    if (!write_model(&c))
        return;
    sl_sched *s = open_sched(4, 0, 1, 16, 16);
    if (!s)
        return;
    sl_sched_msg msgs[2] = {{0, "be brief"}, {1, "hello"}};
    sl_sched_req q;
    sl_sched_req_default(&q);
    q.kind = SL_SCHED_CHAT;
    q.msgs = msgs;
    q.n_msgs = 2;
    q.temperature = 0;
    q.max_tokens = 8;
    result a, b;
    memset(&a, 0, sizeof a);
    uint64_t id;
    char err[256];
    EXPECT_EQ_INT(sl_sched_submit(s, &q, on_event, &a, &id, err, sizeof err), 0);
    wait_all(&a, 1, 30);
    /* the same as a completion of the rendered prompt with special tokens */
    sl_engine *e = NULL;
    sl_engine_params ep;
    sl_engine_params_default(&ep);
    ep.n_ctx = 96;
    ep.n_threads = 1;
    sl_engine_load(g_path, &ep, &e, err, sizeof err);
    char *p = NULL;
    sl_engine_message em[2] = {{SL_ENGINE_SYSTEM, "be brief"}, {SL_ENGINE_USER, "hello"}};
    EXPECT_EQ_INT(sl_engine_chat_prompt(e, em, 2, &p, err, sizeof err), 0);
    sl_engine_gen_params gp;
    sl_engine_gen_params_default(&gp);
    gp.temperature = 0;
    gp.max_tokens = 8;
    gp.chat = true;
    eng_text et = {.n = 0};
    sl_engine_stats est;
    EXPECT_EQ_INT(sl_engine_generate(e, p, &gp, on_engine_text, &et, &est, err, sizeof err), 0);
    EXPECT_EQ_STR(a.text, et.b);
    EXPECT_EQ_INT(a.prompt_tokens, est.prompt_tokens);
    sl_engine_free_string(p);
    sl_engine_free(e);
    (void)b;
    sl_sched_destroy(s);
}

int main(void)
{
    fx_config c = fx_default("llama", SL_KT_Q8_0);
    if (!write_model(&c)) {
        T_FAIL_AT("cannot write the model");
        return 1;
    }
    RUN(test_greedy_64_equals_alone);
    RUN(test_seeded_equals_alone);
    RUN(test_matches_engine);
    RUN(test_prefix_hits);
    RUN(test_preemption);
    RUN(test_cancel);
    RUN(test_errors);
    RUN(test_embeddings);
    RUN(test_soak);
    RUN(test_chat);
    unlink(g_path);
    return TEST_REPORT();
}
