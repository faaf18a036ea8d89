/* loadgen engine: Sluice's own upstream client (upstream/) on one libuv loop
 * in the calling thread. See loadgen.h.
 *
 * Why not a curl multi handle driven by curl_multi_perform: that costs time
 * in proportion to the transfers in flight and the connections cached for the
 * host, on every loop turn. An open loop that falls a little behind then has
 * more in flight, so each turn gets slower, so it falls further behind: the
 * generator, not the server, collapsed at 20,000 requests/s. Here the cost of
 * one request does not depend on how many others are in flight.
 *
 * Open-loop sends are timed by a timerfd armed at the next scheduled send in
 * nanoseconds (libuv's timers count milliseconds; a 1 ms step would add up
 * to 1 ms to every latency, which is measured from the scheduled time). */
#include "loadgen/loadgen.h"
#include "upstream/upstream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#define MAX_BODY_KEEP (4 * 1024 * 1024)      /* non-streamed response bytes kept for usage */
#define MAX_RESPONSE ((size_t)1 << 40)        /* no practical cap on a non-streamed body */
#define PROGRESS_MS 250

struct run;

typedef struct xfer {
    struct run *r;
    struct xfer *next_free;
    uint64_t t_sched_ns;   /* latency origin: scheduled time (open) or send time (closed) */
    long status;           /* HTTP status, 0 before the response headers */
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
    uv_loop_t loop;
    sl_upstream_pool *pool;
    char *url;
    char *req_body;
    size_t req_len;
    sl_upstream_header hdr[SL_LOADGEN_MAX_HEADERS];
    char *hdr_mem;         /* names and values of hdr, copied from the options */
    size_t n_hdr;
    xfer *slots;           /* (nslots) */
    int nslots;
    xfer *free_list;
    int inflight;
    uint64_t t0_ns;        /* run start */
    uint64_t t_measure_ns; /* warmup end */
    uint64_t end_ns;       /* issuing stops here (UINT64_MAX with --requests) */
    uint64_t t_last_done_ns;
    double period_ns;      /* open loop: time between scheduled sends */
    long k;                /* open loop: index of the next scheduled request */
    int tfd;               /* open loop: timerfd for the next send, or -1 */
    bool tfd_armed;
    bool tpoll_open, progress_open;
    uv_poll_t tpoll;
    uv_timer_t progress;
    int fatal;             /* an error that ends the run (bad URL) */
    char *err;
    size_t err_size;
} run;

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

    /* extra headers, checked by the caller: "Name: value" -> name, value
     * (the value without the blanks after the colon). The pool adds
     * Content-Type: application/json unless one is given. */
    size_t total = 0;
    for (int i = 0; i < o->n_headers; i++)
        total += strlen(o->headers[i]) + 1;
    r->hdr_mem = sl_malloc(total + 1);
    if (!r->hdr_mem)
        return SL_ENOMEM;
    char *m = r->hdr_mem;
    for (int i = 0; i < o->n_headers; i++) {
        size_t n = strlen(o->headers[i]);
        memcpy(m, o->headers[i], n + 1);
        char *colon = strchr(m, ':');
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        r->hdr[r->n_hdr++] = (sl_upstream_header){.name = m, .value = v};
        m += n + 1;
    }
    return 0;
}

static int transfer_err_of(int err, const char *msg)
{
    if (err == 0)
        return 0;
    if (err == SL_ETIMEDOUT)
        return SL_ETIMEDOUT;
    if (sl_upstream_msg_no_connection(msg))
        return SL_ECANCELED;
    return SL_EIO;
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

/* Records the outcome of x and puts its slot back. */
static void finish_one(run *r, xfer *x, int transfer_err)
{
    uint64_t now = sl_now_ns();
    r->inflight--;
    bool streamed = x->streamed;
    sl_loadgen_class c = sl_loadgen_classify(transfer_err, x->status, streamed, x->sse.done,
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
        sl_loadgen_stats_record(r->st, c, x->status, lat, ttft, tokens);
        r->t_last_done_ns = now;
    }
    x->next_free = r->free_list;
    r->free_list = x;
}

static void on_headers(void *ud, int status, const char *content_type, double retry_after_s)
{
    xfer *x = ud;
    x->status = status;
}

static int on_body(void *ud, const char *p, size_t n)
{
    xfer *x = ud;
    if (n == 0)
        return 0;
    if (x->streamed) {
        /* streamed: count events; TTFT is the first content chunk */
        sl_loadgen_sse_feed(&x->sse, p, n);
        if (x->sse.first_content && !x->got_first) {
            x->got_first = true;
            x->t_first_ns = sl_now_ns();
        }
        return 0;
    }
    if (!x->got_first) {
        x->got_first = true;
        x->t_first_ns = sl_now_ns();
    }
    if (x->body.len + n <= x->body.max)
        sl_buf_append(&x->body, p, n);
    return 0;
}

static void issue(run *r);

static void on_done(void *ud, int err, const char *msg)
{
    xfer *x = ud;
    run *r = x->r;
    finish_one(r, x, transfer_err_of(err, msg));
    issue(r);
}

static const sl_upstream_cb k_cb = {.on_headers = on_headers, .on_body = on_body, .on_done = on_done};

/* Starts one request whose latency counts from sched_ns. Returns false when
 * the run must stop (r->fatal is set). */
static bool start_one(run *r, uint64_t sched_ns)
{
    const sl_loadgen_opts *o = r->o;
    xfer *x = r->free_list;
    r->free_list = x->next_free;
    x->next_free = NULL;
    x->t_sched_ns = sched_ns;
    x->status = 0;
    x->warmup = sched_ns < r->t_measure_ns;
    x->got_first = false;
    x->streamed = o->stream && o->endpoint != SL_LOADGEN_EMBEDDINGS;
    sl_loadgen_sse_free(&x->sse);
    sl_loadgen_sse_init(&x->sse);
    sl_buf_reset(&x->body);
    if (!x->warmup)
        r->st->sent++;
    r->inflight++;
    double t_ms = o->timeout_s * 1000;
    uint32_t timeout_ms = t_ms >= 4e9 ? 4000000000u : (uint32_t)t_ms;
    if (timeout_ms == 0)
        timeout_ms = 1;
    sl_upstream_req req = {
        .url = r->url,
        .method = "POST",
        .api_key = o->api_key,
        .body = r->req_body,
        .body_len = r->req_len,
        .headers = r->hdr,
        .n_headers = r->n_hdr,
        .stream = x->streamed,
        .connect_timeout_ms = timeout_ms,
        .total_timeout_ms = timeout_ms,
    };
    sl_upstream_cb cb = k_cb;
    cb.ud = x;
    int rc = sl_upstream_start(r->pool, &req, &cb, NULL);
    if (rc == 0)
        return true;
    if (rc == SL_EINVAL) {
        snprintf(r->err, r->err_size, "--url '%.200s' cannot be used: %s", o->url, sl_strerror(rc));
        r->fatal = SL_EINVAL;
        uv_stop(&r->loop);
        return false;
    }
    finish_one(r, x, SL_EIO); /* out of memory or the pool refused: a failed request */
    return true;
}

/* Has every request that this run will send been started? Open loop: the
 * next scheduled time is past the end (never judged by the clock alone, so a
 * request scheduled before the end is sent even when it starts late). */
static bool issuing_done(const run *r, uint64_t now)
{
    const sl_loadgen_opts *o = r->o;
    if (o->requests > 0 && r->st->sent >= o->requests)
        return true;
    if (o->rps > 0)
        return r->t0_ns + (uint64_t)((double)r->k * r->period_ns) >= r->end_ns;
    return now >= r->end_ns;
}

static void arm_timer(run *r, uint64_t at_ns)
{
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(at_ns / 1000000000u),
                                          .tv_nsec = (long)(at_ns % 1000000000u)}};
    timerfd_settime(r->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    r->tfd_armed = true;
}

/* Sends what is due (open loop) or fills the free slots (closed loop), arms
 * the timer for the next scheduled send, and stops the loop once everything
 * sent has finished. */
static void issue(run *r)
{
    if (r->fatal)
        return;
    const sl_loadgen_opts *o = r->o;
    uint64_t now = sl_now_ns();
    if (o->rps > 0) {
        /* every scheduled request is sent, late when at the in-flight cap */
        while (r->free_list && !issuing_done(r, now)) {
            uint64_t sched = r->t0_ns + (uint64_t)((double)r->k * r->period_ns);
            if (sched > now) {
                now = sl_now_ns();
                if (sched > now) {
                    if (!r->tfd_armed)
                        arm_timer(r, sched);
                    break;
                }
            }
            r->k++;
            if (!start_one(r, sched))
                return;
        }
    } else {
        while (r->free_list && !issuing_done(r, now))
            if (!start_one(r, now))
                return;
    }
    if (r->inflight == 0 && issuing_done(r, now))
        uv_stop(&r->loop);
}

static void on_tfd(uv_poll_t *h, int status, int events)
{
    run *r = h->data;
    uint64_t ticks;
    if (read(r->tfd, &ticks, sizeof ticks) < 0) {
        /* EAGAIN: nothing due yet; the timer stays armed */
    }
    r->tfd_armed = false;
    issue(r);
}

static void progress(run *r, uint64_t now, bool final)
{
    const sl_loadgen_opts *o = r->o;
    uint64_t end_ns = r->end_ns == UINT64_MAX ? r->t0_ns : r->end_ns;
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

static void on_progress(uv_timer_t *t)
{
    run *r = t->data;
    if (r->o->progress)
        progress(r, sl_now_ns(), false);
    /* the closed loop's end is judged by the clock: a run whose requests all
     * hang until the timeout still ends on time once they finish */
    issue(r);
}

static int check_opts(const sl_loadgen_opts *o, char *err, size_t err_size)
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
    return 0;
}

int sl_loadgen_run(const sl_loadgen_opts *o, sl_loadgen_stats *st, char *err, size_t err_size)
{
    int rc = check_opts(o, err, err_size);
    if (rc < 0)
        return rc;
    run r = {.o = o, .st = st, .tfd = -1, .err = err, .err_size = err_size};
    bool loop_open = false;
    int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    rc = build_request(&r, err, err_size);
    if (rc < 0)
        goto out;
    r.nslots = o->rps > 0 ? o->max_inflight : o->concurrency;
    r.slots = sl_calloc((size_t)r.nslots, sizeof(xfer));
    if (!r.slots || uv_loop_init(&r.loop) != 0) {
        rc = SL_ENOMEM;
        goto out;
    }
    loop_open = true;
    sl_upstream_limits lim = {.max_host_connections = r.nslots,
                              .max_total_connections = r.nslots,
                              .max_idle_connections = r.nslots,
                              .max_response_bytes = MAX_RESPONSE};
    rc = sl_upstream_pool_create(&r.loop, &lim, &r.pool);
    if (rc < 0) {
        snprintf(err, err_size, "cannot create the HTTP client: %s", sl_strerror(rc));
        goto out;
    }
    for (int i = 0; i < r.nslots; i++) {
        xfer *x = &r.slots[i];
        x->r = &r;
        sl_buf_init(&x->body, MAX_BODY_KEEP);
        x->next_free = r.free_list;
        r.free_list = x;
    }
    if (o->rps > 0) {
        r.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (r.tfd < 0 || uv_poll_init(&r.loop, &r.tpoll, r.tfd) != 0) {
            snprintf(err, err_size, "cannot create a timer: %s", strerror(errno));
            rc = SL_EIO;
            goto out;
        }
        r.tpoll_open = true;
        r.tpoll.data = &r;
        uv_poll_start(&r.tpoll, UV_READABLE, on_tfd);
        /* wake at the scheduled time, not up to 50 us after it (the default slack) */
        prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    }
    uv_timer_init(&r.loop, &r.progress);
    r.progress_open = true;
    r.progress.data = &r;
    uv_timer_start(&r.progress, on_progress, PROGRESS_MS, PROGRESS_MS);

    r.t0_ns = sl_now_ns();
    r.t_measure_ns = r.t0_ns + (uint64_t)(o->warmup_s * 1e9);
    r.end_ns = o->requests > 0 ? UINT64_MAX : r.t_measure_ns + (uint64_t)(o->duration_s * 1e9);
    r.period_ns = o->rps > 0 ? 1e9 / o->rps : 0;
    if (o->progress)
        progress(&r, r.t0_ns, false);
    issue(&r);
    if (!r.fatal && !(r.inflight == 0 && issuing_done(&r, sl_now_ns())))
        uv_run(&r.loop, UV_RUN_DEFAULT);
    if (r.fatal) {
        rc = r.fatal;
        goto out;
    }
    uint64_t fin = r.t_last_done_ns ? r.t_last_done_ns : sl_now_ns();
    st->elapsed_s = fin > r.t_measure_ns ? (double)(fin - r.t_measure_ns) / 1e9 : 0;
    if (o->progress)
        progress(&r, sl_now_ns(), true);
    rc = 0;
out:
    if (loop_open) {
        sl_upstream_pool_destroy(r.pool); /* cancels what is left: no callback fires */
        if (r.tpoll_open)
            uv_close((uv_handle_t *)&r.tpoll, NULL);
        if (r.progress_open)
            uv_close((uv_handle_t *)&r.progress, NULL);
        /* a uv_stop left over from before uv_run ends the first call at once */
        while (uv_run(&r.loop, UV_RUN_DEFAULT) != 0) {
        }
        uv_loop_close(&r.loop);
    }
    if (r.tfd >= 0)
        close(r.tfd);
    if (old_slack > 0)
        prctl(PR_SET_TIMERSLACK, (unsigned long)old_slack, 0, 0, 0);
    if (r.slots) {
        for (int i = 0; i < r.nslots; i++) {
            sl_loadgen_sse_free(&r.slots[i].sse);
            sl_buf_free(&r.slots[i].body);
        }
        sl_free(r.slots);
    }
    sl_free(r.url);
    sl_free(r.req_body);
    sl_free(r.hdr_mem);
    return rc;
}
