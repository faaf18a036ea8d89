/* loadgen engine: one curl multi handle driven from one thread. See loadgen.h.
 *
 * Each in-flight request owns one easy handle from a free pool; easy handles
 * are reused so that the multi handle's connection cache keeps connections
 * alive between requests. */
#include "loadgen/loadgen.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_BODY_KEEP (4 * 1024 * 1024) /* non-streamed response bytes kept for usage */

typedef struct xfer {
    CURL *easy;
    struct xfer *next_free;
    uint64_t t_sched_ns;   /* latency origin: scheduled time (open) or send time (closed) */
    bool warmup;
    bool streamed;         /* response is parsed as SSE */
    bool got_first;        /* first content seen */
    uint64_t t_first_ns;
    sl_loadgen_sse sse;
    sl_buf body;           /* non-streamed response, bounded */
} xfer;

typedef struct run {
    const sl_loadgen_opts *o;
    sl_loadgen_stats *st;
    CURLM *multi;
    struct curl_slist *headers;
    char *url;
    char *req_body;
    size_t req_len;
    xfer *pool;            /* (npool) */
    int npool;
    xfer *free_list;
    int inflight;
    uint64_t t0_ns;        /* run start */
    uint64_t t_measure_ns; /* warmup end */
    uint64_t t_last_done_ns;
    long started;          /* all requests started, warmup included */
} run;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (n == 0)
        return 0;
    if (x->streamed) {
        /* streamed: count events; TTFT is the first content chunk */
        sl_loadgen_sse_feed(&x->sse, p, n);
        if (x->sse.first_content && !x->got_first) {
            x->got_first = true;
            x->t_first_ns = sl_now_ns();
        }
        return n;
    }
    if (!x->got_first) {
        x->got_first = true;
        x->t_first_ns = sl_now_ns();
    }
    if (x->body.len + n <= x->body.max)
        sl_buf_append(&x->body, p, n);
    return n;
}

static int build_request(run *r, char *err, size_t err_size)
{
    const sl_loadgen_opts *o = r->o;
    const char *prompt = o->prompt ? o->prompt : "Write a short poem about the sea.";
    json_t *b = json_object();
    json_object_set_new(b, "model", json_string(o->model ? o->model : "default"));
    const char *path;
    if (o->endpoint == SL_LOADGEN_CHAT) {
        path = "/chat/completions";
        json_object_set_new(b, "messages", json_pack("[{s:s,s:s}]", "role", "user", "content", prompt));
    } else if (o->endpoint == SL_LOADGEN_COMPLETIONS) {
        path = "/completions";
        json_object_set_new(b, "prompt", json_string(prompt));
    } else {
        path = "/embeddings";
        json_object_set_new(b, "input", json_string(prompt));
    }
    if (o->stream && o->endpoint != SL_LOADGEN_EMBEDDINGS)
        json_object_set_new(b, "stream", json_true());
    if (o->max_tokens > 0 && o->endpoint != SL_LOADGEN_EMBEDDINGS)
        json_object_set_new(b, "max_tokens", json_integer(o->max_tokens));
    if (o->body_extra) {
        json_error_t je;
        json_t *extra = json_loads(o->body_extra, 0, &je);
        if (!json_is_object(extra)) {
            snprintf(err, err_size, "--body-extra must be a JSON object (line %d column %d: %s)",
                     je.line, je.column, extra ? "not an object" : je.text);
            json_decref(extra);
            json_decref(b);
            return SL_EINVAL;
        }
        json_object_update(b, extra);
        json_decref(extra);
    }
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!s)
        return SL_ENOMEM;
    r->req_body = sl_strdup(s);
    free(s); /* jansson's allocator */
    if (!r->req_body)
        return SL_ENOMEM;
    r->req_len = strlen(r->req_body);

    /* base URL: strip a trailing "/" and an optional "/v1", then add /v1/<path> */
    size_t ul = strlen(o->url);
    while (ul > 0 && o->url[ul - 1] == '/')
        ul--;
    if (ul >= 3 && !memcmp(o->url + ul - 3, "/v1", 3))
        ul -= 3;
    size_t need = ul + 4 + strlen(path) + 1;
    r->url = sl_malloc(need);
    if (!r->url)
        return SL_ENOMEM;
    snprintf(r->url, need, "%.*s/v1%s", (int)ul, o->url, path);

    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (o->api_key) {
        char h[1024];
        snprintf(h, sizeof h, "Authorization: Bearer %s", o->api_key);
        r->headers = curl_slist_append(r->headers, h);
    }
    for (int i = 0; i < o->n_headers; i++)
        r->headers = curl_slist_append(r->headers, o->headers[i]);
    return 0;
}

static void start_one(run *r, uint64_t sched_ns)
{
    xfer *x = r->free_list;
    r->free_list = x->next_free;
    x->next_free = NULL;
    x->t_sched_ns = sched_ns;
    x->warmup = sched_ns < r->t_measure_ns;
    x->got_first = false;
    x->streamed = r->o->stream && r->o->endpoint != SL_LOADGEN_EMBEDDINGS;
    sl_loadgen_sse_free(&x->sse);
    sl_loadgen_sse_init(&x->sse);
    sl_buf_reset(&x->body);
    if (!x->warmup)
        r->st->sent++;
    r->started++;
    r->inflight++;
    curl_multi_add_handle(r->multi, x->easy);
}

static int transfer_err_of(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK: return 0;
    case CURLE_OPERATION_TIMEDOUT: return SL_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return SL_ECANCELED;
    default: return SL_EIO;
    }
}

/* Usage tokens from a non-streamed JSON body, or -1. */
static long body_tokens(const sl_buf *b)
{
    if (b->len == 0)
        return -1;
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    long t = -1;
    const json_t *ct = json_object_get(json_object_get(j, "usage"), "completion_tokens");
    if (json_is_integer(ct))
        t = (long)json_integer_value(ct);
    json_decref(j);
    return t;
}

static void finish_one(run *r, xfer *x, CURLcode cc)
{
    uint64_t now = sl_now_ns();
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(r->multi, x->easy);
    r->inflight--;
    bool streamed = x->streamed;
    sl_loadgen_class c = sl_loadgen_classify(transfer_err_of(cc), status, streamed, x->sse.done,
                                             x->sse.error_event);
    if (x->warmup) {
        r->st->warmup_requests++;
    } else {
        long tokens;
        if (streamed)
            tokens = x->sse.usage_tokens >= 0 ? x->sse.usage_tokens : x->sse.content_chunks;
        else
            tokens = body_tokens(&x->body);
        double lat = (double)(now - x->t_sched_ns) / 1e6;
        double ttft = x->got_first ? (double)(x->t_first_ns - x->t_sched_ns) / 1e6 : -1;
        sl_loadgen_stats_record(r->st, c, status, lat, ttft, tokens);
        r->t_last_done_ns = now;
    }
    x->next_free = r->free_list;
    r->free_list = x;
}

static void drain_done(run *r)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        finish_one(r, x, m->data.result);
    }
}

/* Has every request that this run will send been started? Open loop: the
 * next scheduled time is past the end (never judged by the clock alone, so a
 * request scheduled before the end is sent even when it starts late). */
static bool issuing_done(const run *r, long k, uint64_t now, uint64_t end_ns, double period_ns)
{
    const sl_loadgen_opts *o = r->o;
    if (o->requests > 0 && r->st->sent >= o->requests)
        return true;
    if (o->rps > 0) {
        uint64_t sched = r->t0_ns + (uint64_t)((double)k * period_ns);
        return sched >= end_ns;
    }
    return now >= end_ns;
}

static void progress(run *r, uint64_t now, uint64_t end_ns, bool final)
{
    const sl_loadgen_opts *o = r->o;
    double frac;
    if (o->requests > 0)
        frac = (double)r->st->completed / (double)o->requests;
    else
        frac = end_ns > r->t0_ns ? (double)(now - r->t0_ns) / (double)(end_ns - r->t0_ns) : 1;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    double el = now > r->t_measure_ns ? (double)(now - r->t_measure_ns) / 1e9 : 0;
    fprintf(stderr, "\r[%s] %3.0f%%  %ld done  %.1f req/s  %ld errors  %d in flight%s", bar, frac * 100,
            r->st->completed, el > 0 ? (double)r->st->completed / el : 0.0,
            r->st->completed - r->st->ok, r->inflight, final ? "\n" : "   ");
    fflush(stderr);
}

int sl_loadgen_run(const sl_loadgen_opts *o, sl_loadgen_stats *st, char *err, size_t err_size)
{
    if (!o->url || strncmp(o->url, "http", 4) != 0) {
        snprintf(err, err_size, "--url must be an http:// or https:// URL");
        return SL_EINVAL;
    }
    if (o->rps <= 0 && (o->concurrency < 1 || o->concurrency > 100000)) {
        snprintf(err, err_size, "--concurrency must be in [1, 100000]");
        return SL_EINVAL;
    }
    if (o->rps > 0 && (o->max_inflight < 1 || o->max_inflight > 100000)) {
        snprintf(err, err_size, "--max-inflight must be in [1, 100000]");
        return SL_EINVAL;
    }
    if (o->requests <= 0 && !(o->duration_s > 0)) {
        snprintf(err, err_size, "--duration must be > 0 (or give --requests)");
        return SL_EINVAL;
    }
    if (!(o->timeout_s > 0) || o->warmup_s < 0) {
        snprintf(err, err_size, "--timeout must be > 0 and --warmup >= 0");
        return SL_EINVAL;
    }
    if (o->n_headers < 0 || o->n_headers > SL_LOADGEN_MAX_HEADERS || (o->n_headers > 0 && !o->headers)) {
        snprintf(err, err_size, "--header may be given at most %d times", SL_LOADGEN_MAX_HEADERS);
        return SL_EINVAL;
    }
    for (int i = 0; i < o->n_headers; i++)
        if (sl_loadgen_header_check(o->headers[i], err, err_size) < 0)
            return SL_EINVAL;
    run r = {.o = o, .st = st};
    int rc = build_request(&r, err, err_size);
    if (rc < 0)
        goto out;
    r.npool = o->rps > 0 ? o->max_inflight : o->concurrency;
    r.pool = sl_calloc((size_t)r.npool, sizeof(xfer));
    r.multi = curl_multi_init();
    if (!r.pool || !r.multi) {
        rc = SL_ENOMEM;
        goto out;
    }
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, (long)r.npool);
    for (int i = 0; i < r.npool; i++) {
        xfer *x = &r.pool[i];
        x->easy = curl_easy_init();
        if (!x->easy) {
            rc = SL_ENOMEM;
            goto out;
        }
        sl_buf_init(&x->body, MAX_BODY_KEEP);
        curl_easy_setopt(x->easy, CURLOPT_URL, r.url);
        curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, r.req_body);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)r.req_len);
        curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, r.headers);
        curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)(o->timeout_s * 1000));
        curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
        x->next_free = r.free_list;
        r.free_list = x;
    }

    r.t0_ns = sl_now_ns();
    r.t_measure_ns = r.t0_ns + (uint64_t)(o->warmup_s * 1e9);
    uint64_t end_ns = o->requests > 0 ? UINT64_MAX : r.t_measure_ns + (uint64_t)(o->duration_s * 1e9);
    uint64_t next_progress = r.t0_ns;
    double period_ns = o->rps > 0 ? 1e9 / o->rps : 0;
    long k = 0; /* open loop: index of the next scheduled request */

    for (;;) {
        uint64_t now = sl_now_ns();
        if (o->rps > 0) {
            /* every scheduled request is sent, late when at the in-flight cap */
            while (r.free_list && !issuing_done(&r, k, now, end_ns, period_ns)) {
                uint64_t sched = r.t0_ns + (uint64_t)((double)k * period_ns);
                if (sched > now)
                    break;
                start_one(&r, sched);
                k++;
            }
        } else {
            while (r.free_list && !issuing_done(&r, k, now, end_ns, period_ns))
                start_one(&r, now);
        }
        if (r.inflight == 0 && issuing_done(&r, k, now, end_ns, period_ns))
            break;
        int running = 0;
        curl_multi_perform(r.multi, &running);
        drain_done(&r);
        /* wait for I/O, the next scheduled send, or the next progress tick */
        long wait_ms = 100;
        now = sl_now_ns();
        if (o->rps > 0 && r.free_list) {
            uint64_t sched = r.t0_ns + (uint64_t)((double)k * period_ns);
            wait_ms = sched > now ? (long)((sched - now) / 1000000) : 0;
            if (wait_ms > 100)
                wait_ms = 100;
        } else if (o->rps <= 0 && r.free_list && !issuing_done(&r, k, now, end_ns, period_ns)) {
            wait_ms = 0; /* a slot just freed up */
        }
        int nfds = 0;
        curl_multi_poll(r.multi, NULL, 0, (int)wait_ms, &nfds);
        if (o->progress && now >= next_progress) {
            progress(&r, now, end_ns == UINT64_MAX ? r.t0_ns : end_ns, false);
            next_progress = now + 250000000ull;
        }
        curl_multi_perform(r.multi, &running);
        drain_done(&r);
    }
    uint64_t fin = r.t_last_done_ns ? r.t_last_done_ns : sl_now_ns();
    st->elapsed_s = fin > r.t_measure_ns ? (double)(fin - r.t_measure_ns) / 1e9 : 0;
    if (o->progress)
        progress(&r, sl_now_ns(), end_ns == UINT64_MAX ? r.t0_ns : end_ns, true);
    rc = 0;
out:
    if (r.pool) {
        for (int i = 0; i < r.npool; i++) {
            if (r.pool[i].easy) {
                if (r.multi)
                    curl_multi_remove_handle(r.multi, r.pool[i].easy);
                curl_easy_cleanup(r.pool[i].easy);
            }
            sl_loadgen_sse_free(&r.pool[i].sse);
            sl_buf_free(&r.pool[i].body);
        }
        sl_free(r.pool);
    }
    if (r.multi)
        curl_multi_cleanup(r.multi);
    curl_slist_free_all(r.headers);
    sl_free(r.url);
    sl_free(r.req_body);
    return rc;
}
