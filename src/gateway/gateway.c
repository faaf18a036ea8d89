/*
 * The gateway: request routing, attempts, retries, fallbacks and streaming.
 *
 * Everything about one request runs on the I/O worker that accepted it. A
 * request (gw_req) lives until three things are over: the HTTP side (answered,
 * or the client went away), the current upstream transfer, and the backoff
 * timer's close. Then it is freed in one place (req_maybe_free).
 */
#include "gateway/gateway.h"

#include "api/api.h"
#include "gateway/policy.h"
#include "upstream/upstream.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_ERROR_BODY (64u << 10)   /* upstream error bodies kept for the client */
#define MAX_SSE_EVENT (8u << 20)     /* one upstream stream event */
#define BACKOFF_CAP_MS 2000.0
#define UNHEALTHY_STREAK 3           /* consecutive transport failures before /readyz counts a backend down */

/* ---- backend runtime state: keyed by id, survives reloads ---- */

typedef struct backend_rt {
    char *id;
    _Atomic int inflight;
    _Atomic int fail_streak; /* consecutive transport failures */
    struct backend_rt *next;
} backend_rt;

typedef struct gw_backend {
    const sl_backend_conf *conf;
    backend_rt *rt;
} gw_backend;

typedef struct gw_group {
    const char *name;
    gw_backend *backends;
    size_t n;
} gw_group;

/* One immutable snapshot: a config and the routing table built from it. */
typedef struct gw_snapshot {
    _Atomic int refs;
    sl_config *cfg;
    gw_group *groups;
    size_t n_groups;
    int64_t created; /* Unix seconds, reported as each model's "created" */
} gw_snapshot;

typedef struct gw_worker {
    sl_gateway *g;
    sl_http_worker *hw;
    sl_upstream_pool *pool;
    sl_metrics_shard *metrics;
} gw_worker;

struct sl_gateway {
    pthread_mutex_t lock; /* guards snap and the backend_rt list */
    gw_snapshot *snap;
    backend_rt *rts;
    sl_metrics *metrics;
    sl_http_handlers handlers;
    _Atomic long inflight;
};

/* ---- snapshots ---- */

static void snap_release(gw_snapshot *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n_groups; i++)
        sl_free(s->groups[i].backends);
    sl_free(s->groups);
    sl_config_release(s->cfg);
    sl_free(s);
}

static gw_snapshot *snap_get(sl_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    gw_snapshot *s = g->snap;
    atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&g->lock);
    return s;
}

/* Finds or creates the runtime state for a backend id; g->lock held. */
static backend_rt *rt_for(sl_gateway *g, const char *id)
{
    for (backend_rt *r = g->rts; r; r = r->next)
        if (!strcmp(r->id, id))
            return r;
    backend_rt *r = sl_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->id = sl_strdup(id);
    if (!r->id) {
        sl_free(r);
        return NULL;
    }
    r->next = g->rts;
    g->rts = r;
    return r;
}

static int snap_build(sl_gateway *g, sl_config *cfg, gw_snapshot **out)
{
    gw_snapshot *s = sl_calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->created = (int64_t)(sl_wall_ms() / 1000);
    s->groups = sl_calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *s->groups);
    if (!s->groups) {
        sl_free(s);
        return SL_ENOMEM;
    }
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < cfg->n_backends && !rc; i++) {
        const sl_backend_conf *b = &cfg->backends[i];
        gw_group *grp = NULL;
        for (size_t j = 0; j < s->n_groups; j++)
            if (!strcmp(s->groups[j].name, b->model_name))
                grp = &s->groups[j];
        if (!grp) {
            grp = &s->groups[s->n_groups++];
            grp->name = b->model_name;
        }
        gw_backend *nb = sl_realloc(grp->backends, (grp->n + 1) * sizeof *nb);
        if (!nb) {
            rc = SL_ENOMEM;
            break;
        }
        grp->backends = nb;
        nb[grp->n].conf = b;
        nb[grp->n].rt = rt_for(g, b->id);
        if (!nb[grp->n].rt)
            rc = SL_ENOMEM;
        grp->n++;
    }
    pthread_mutex_unlock(&g->lock);
    if (rc) {
        s->cfg = NULL; /* the caller keeps its reference on failure */
        for (size_t i = 0; i < s->n_groups; i++)
            sl_free(s->groups[i].backends);
        sl_free(s->groups);
        sl_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static const gw_group *snap_group(const gw_snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->n_groups; i++)
        if (!strcmp(s->groups[i].name, name))
            return &s->groups[i];
    return NULL;
}

/* ---- the per-request state ---- */

typedef struct gw_req {
    sl_gateway *g;
    gw_worker *w;
    sl_http_req *http; /* NULL once answered or gone */
    bool client_gone;
    gw_snapshot *snap;
    sl_arena *arena;
    sl_request *req;
    sl_api_kind kind;
    const char *endpoint; /* "/chat/completions", ... */
    char request_id[72];
    uint64_t t_start, t_first_token, t_last_token;

    /* routing */
    const gw_group *group;
    const char *model;         /* the model the client asked for */
    size_t fallback_pos;       /* next fallback target to try */
    int attempts_in_group;
    int attempts_total;
    gw_backend *backend;       /* current attempt's backend */
    gw_backend *last_failed;   /* avoided on the next pick when there is a choice */
    sl_upstream_xfer *xfer;
    bool xfer_live;
    uv_timer_t timer;
    bool timer_live;           /* initialised and not yet closed */
    bool timer_closing;

    /* the current attempt's response */
    int up_status;
    double up_retry_after;
    int up_err;
    char up_msg[256];
    sl_buf body;               /* non-streamed body or an upstream error body */
    sl_sse_parser *sse;
    bool streaming;            /* the current attempt streams (2xx with stream requested) */
    bool stream_started;       /* the client has our 200 and headers */
    bool got_done;
    bool stream_failed;        /* a malformed or failed stream was ended */
    sl_buf out;                /* scratch for framing */
    sl_usage usage;

    int busy; /* depth of our own callbacks on the stack: freeing waits until it is 0 */

    /* result, for the log */
    int status;
    const char *error_code;
    bool counted_inflight;
} gw_req;

static void attempt_start(gw_req *q);
static void req_maybe_free(gw_req *q);

static double secs_since(uint64_t t0) { return (double)(sl_now_ns() - t0) / 1e9; }

static void log_access(gw_req *q)
{
    sl_config *cfg = q->snap ? q->snap->cfg : NULL;
    if (cfg && !cfg->server.access_log)
        return;
    json_t *o = json_object();
    if (!o)
        return;
    char ts[40];
    sl_format_time_iso(sl_wall_ms(), ts, sizeof ts);
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "request_id", json_string(q->request_id));
    json_object_set_new(o, "endpoint", json_string(q->endpoint ? q->endpoint : ""));
    json_object_set_new(o, "model", q->model ? json_stringn(q->model, strlen(q->model)) : json_null());
    json_object_set_new(o, "backend", q->backend ? json_string(q->backend->conf->id) : json_null());
    json_object_set_new(o, "status", json_integer(q->status));
    json_object_set_new(o, "latency_ms", json_real(round(secs_since(q->t_start) * 1e6) / 1e3));
    json_object_set_new(o, "ttft_ms", q->t_first_token
                                          ? json_real(round((double)(q->t_first_token - q->t_start) / 1e3) / 1e3)
                                          : json_null());
    json_object_set_new(o, "stream", json_boolean(q->req && q->req->stream));
    json_object_set_new(o, "attempts", json_integer(q->attempts_total));
    json_object_set_new(o, "prompt_tokens", q->usage.known ? json_integer(q->usage.prompt_tokens) : json_null());
    json_object_set_new(o, "completion_tokens",
                        q->usage.known ? json_integer(q->usage.completion_tokens) : json_null());
    json_object_set_new(o, "error", q->error_code ? json_string(q->error_code) : json_null());
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line) {
        size_t n = strlen(line);
        fwrite(line, 1, n, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(line); /* jansson's allocator */
    }
    json_decref(o);
}

/* Records the outcome once the client has its answer. */
static void finish_metrics(gw_req *q)
{
    char st[16];
    snprintf(st, sizeof st, "%d", q->status);
    const char *model = q->group ? q->model : "";
    sl_metrics_add(q->w->metrics, SL_M_REQUESTS, model, q->backend ? q->backend->conf->id : "", st, 1);
    sl_metrics_observe(q->w->metrics, SL_M_DURATION, model, NULL, NULL, secs_since(q->t_start));
    if (q->usage.known) {
        sl_metrics_add(q->w->metrics, SL_M_TOKENS, model, "prompt", NULL, (double)q->usage.prompt_tokens);
        sl_metrics_add(q->w->metrics, SL_M_TOKENS, model, "completion", NULL, (double)q->usage.completion_tokens);
    }
    log_access(q);
}

static void common_headers(gw_req *q, sl_http_header *h, size_t *n)
{
    h[(*n)++] = (sl_http_header){"x-request-id", q->request_id};
}

/* Answers with a JSON body and finishes the HTTP side. */
static void respond_json(gw_req *q, int status, const char *body, size_t len, const sl_http_header *extra,
                         size_t n_extra)
{
    if (!q->http)
        return;
    sl_http_header h[8];
    size_t n = 0;
    common_headers(q, h, &n);
    for (size_t i = 0; i < n_extra && n < 8; i++)
        h[n++] = extra[i];
    q->status = status;
    sl_http_respond(q->http, status, "application/json", h, n, body, len);
    q->http = NULL;
    finish_metrics(q);
}

static void respond_error(gw_req *q, const sl_api_error *e, double retry_after_s)
{
    sl_buf b;
    sl_buf_init(&b, 64 << 10);
    if (sl_api_error_body(e, &b) != 0)
        sl_buf_append_str(&b, "{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,"
                              "\"code\":null}}");
    q->error_code = e->code;
    char ra[32];
    sl_http_header extra[1];
    size_t ne = 0;
    if (retry_after_s >= 0) {
        snprintf(ra, sizeof ra, "%.0f", retry_after_s < 1 ? 1.0 : retry_after_s);
        extra[ne++] = (sl_http_header){"retry-after", ra};
    }
    respond_json(q, e->status, b.data ? b.data : "", b.len, extra, ne);
    sl_buf_free(&b);
}

/* ---- streaming to the client ---- */

static void on_client_drain(void *ud)
{
    gw_req *q = ud;
    if (q->xfer_live)
        sl_upstream_resume(q->xfer);
}

static void stream_begin(gw_req *q)
{
    if (q->stream_started || !q->http)
        return;
    q->stream_started = true;
    q->status = 200;
    sl_http_header h[2];
    size_t n = 0;
    common_headers(q, h, &n);
    sl_http_req_on_drain(q->http, on_client_drain, q);
    sl_http_stream_begin(q->http, 200, "text/event-stream", h, n);
}

/* Writes framed bytes to the client; pauses the upstream when the client is slow. */
static void stream_write(gw_req *q, const sl_buf *b)
{
    if (!q->http || !b->len)
        return;
    int rc = sl_http_stream_write(q->http, b->data, b->len);
    if (rc == SL_EAGAIN && q->xfer_live)
        sl_upstream_pause(q->xfer);
}

/* Ends the client stream; with an error, an SSE error event goes first. */
static void stream_end(gw_req *q, const sl_api_error *e)
{
    if (!q->http)
        return;
    if (e) {
        sl_buf_reset(&q->out);
        sl_sse_error(&q->out, e);
        stream_write(q, &q->out);
        q->error_code = e->code;
    }
    sl_http_stream_end(q->http, true);
    q->http = NULL;
    finish_metrics(q);
}

/* ---- upstream callbacks ---- */

static void on_up_headers(void *ud, int status, const char *content_type, double retry_after_s)
{
    gw_req *q = ud;
    q->up_status = status;
    q->up_retry_after = retry_after_s;
    q->streaming = q->req->stream && status >= 200 && status < 300;
    (void)content_type;
}

static int on_sse_event(void *ud, const sl_sse_event *ev)
{
    gw_req *q = ud;
    if (!q->http)
        return 1;
    if (ev->data_len == 6 && !memcmp(ev->data, "[DONE]", 6)) {
        q->got_done = true;
        stream_begin(q);
        sl_buf_reset(&q->out);
        sl_sse_done(&q->out);
        stream_write(q, &q->out);
        return 0;
    }
    if (ev->data_len == 0)
        return 0;
    bool has_content = false, finish = false, usage_only = false;
    sl_usage u = q->usage;
    if (sl_api_inspect_chunk(ev->data, ev->data_len, &u, &has_content, &finish, &usage_only) != 0 ||
        (ev->event_len == 5 && !memcmp(ev->event, "error", 5))) {
        /* an upstream error event, or bytes that are not a chunk: end the stream cleanly */
        sl_api_error e;
        sl_api_error_upstream(&e, "upstream sent %s in its event stream",
                              ev->event_len == 5 ? "an error event" : "a malformed chunk (not a JSON object)");
        q->stream_failed = true;
        if (!q->stream_started && !q->http)
            return 1;
        stream_begin(q);
        stream_end(q, &e);
        return 1;
    }
    q->usage = u;
    if (usage_only && !q->req->include_usage)
        return 0; /* we asked for usage for our own accounting; the client did not */
    stream_begin(q);
    if (has_content) {
        uint64_t now = sl_now_ns();
        if (!q->t_first_token) {
            q->t_first_token = now;
            sl_metrics_observe(q->w->metrics, SL_M_TTFT, q->model, NULL, NULL, (double)(now - q->t_start) / 1e9);
        } else {
            sl_metrics_observe(q->w->metrics, SL_M_ITL, q->model, NULL, NULL, (double)(now - q->t_last_token) / 1e9);
        }
        q->t_last_token = now;
    }
    sl_buf_reset(&q->out);
    if (sl_sse_data(&q->out, ev->data, ev->data_len) == 0)
        stream_write(q, &q->out);
    return 0;
}

static void cancel_xfer(gw_req *q, const char *outcome)
{
    if (!q->xfer_live)
        return;
    sl_upstream_cancel(q->xfer);
    q->xfer_live = false;
    q->xfer = NULL;
    atomic_fetch_sub(&q->backend->rt->inflight, 1);
    sl_metrics_add(q->w->metrics, SL_M_ATTEMPTS, q->backend->conf->id, outcome, NULL, 1);
}

static int on_up_body(void *ud, const char *p, size_t n)
{
    gw_req *q = ud;
    if (q->streaming) {
        if (q->stream_failed || !q->http)
            return 0;
        q->busy++;
        int rc = sl_sse_parser_feed(q->sse, p, n, on_sse_event, q);
        if (rc == SL_ETOOBIG && !q->stream_failed) {
            sl_api_error e;
            sl_api_error_upstream(&e, "upstream stream event exceeds %u bytes", MAX_SSE_EVENT);
            q->stream_failed = true;
            stream_begin(q);
            stream_end(q, &e);
        }
        q->busy--;
        if (q->stream_failed || !q->http) {
            /* the client's answer is over: stop reading this upstream */
            cancel_xfer(q, "error");
            req_maybe_free(q);
        }
        return 0;
    }
    /* error bodies are capped; a 2xx body is capped by the upstream layer */
    if (sl_buf_append(&q->body, p, n) == SL_ETOOBIG && q->up_status >= 300)
        return 0;
    return 0;
}

static const char *timeout_name(const char *msg) { return msg && *msg ? msg : "timeout"; }

/* The attempt's answer goes to the client as it is (2xx non-stream, or a final error). */
static void relay_response(gw_req *q)
{
    if (q->up_status >= 200 && q->up_status < 300) {
        sl_usage u;
        memset(&u, 0, sizeof u);
        if (sl_api_parse_response(q->body.data ? q->body.data : "", q->body.len, &u) != 0) {
            sl_api_error e;
            sl_api_error_upstream(&e, "upstream %s returned a body that is not a JSON object",
                                  q->backend->conf->id);
            respond_error(q, &e, -1);
            return;
        }
        q->usage = u;
        respond_json(q, q->up_status, q->body.data ? q->body.data : "", q->body.len, NULL, 0);
        return;
    }
    /* an upstream error: pass OpenAI-shaped 4xx bodies on; wrap everything else */
    json_t *j = NULL;
    bool shaped = false;
    if (q->body.len && sl_api_json_load(q->body.data, q->body.len, &j, NULL, 0) == 0) {
        json_t *err = json_is_object(j) ? json_object_get(j, "error") : NULL;
        shaped = err && json_is_object(err) && json_is_string(json_object_get(err, "message"));
    }
    if (shaped && q->up_status >= 400 && q->up_status < 500 && q->up_status != 429) {
        respond_json(q, q->up_status, q->body.data, q->body.len, NULL, 0);
        q->error_code = "upstream_client_error";
    } else if (q->up_status == 429) {
        sl_api_error e;
        sl_api_error_rate_limited(&e, "upstream %s is rate limiting (429); retry later", q->backend->conf->id);
        respond_error(q, &e, q->up_retry_after >= 0 ? q->up_retry_after : 1);
    } else {
        const char *um = NULL;
        if (shaped)
            um = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        sl_api_error e;
        sl_api_error_upstream(&e, "upstream %s answered HTTP %d%s%s", q->backend->conf->id, q->up_status,
                              um ? ": " : "", um ? um : "");
        respond_error(q, &e, -1);
    }
    json_decref(j);
}

static void respond_transport_error(gw_req *q)
{
    sl_api_error e;
    if (q->up_err == SL_ETIMEDOUT) {
        sl_api_error_timeout(&e, "upstream %s timed out (%s)", q->backend->conf->id, timeout_name(q->up_msg));
    } else if (q->up_err == SL_ETOOBIG) {
        sl_api_error_upstream(&e, "upstream %s response is too large", q->backend->conf->id);
    } else {
        sl_api_error_upstream(&e, "upstream %s failed: %s", q->backend->conf->id,
                              q->up_msg[0] ? q->up_msg : sl_strerror(q->up_err));
    }
    if (q->stream_started)
        stream_end(q, &e);
    else
        respond_error(q, &e, -1);
}

static void on_up_done_inner(gw_req *q, int err, const char *msg);

static void on_backoff_done(uv_timer_t *t)
{
    gw_req *q = t->data;
    if (!q->http) {
        req_maybe_free(q);
        return;
    }
    attempt_start(q);
}

static bool fallback_left(gw_req *q)
{
    const sl_fallback_conf *fb = sl_config_find_fallback(q->snap->cfg, q->model);
    return fb && q->fallback_pos < fb->n_targets;
}

/* Moves to the next fallback group that exists; false when none is left. */
static bool next_fallback(gw_req *q)
{
    const sl_fallback_conf *fb = sl_config_find_fallback(q->snap->cfg, q->model);
    while (fb && q->fallback_pos < fb->n_targets) {
        const gw_group *grp = snap_group(q->snap, fb->targets[q->fallback_pos++]);
        if (grp && grp->n) {
            sl_metrics_add(q->w->metrics, SL_M_FALLBACKS, q->model, grp->name, NULL, 1);
            q->group = grp;
            q->attempts_in_group = 0;
            q->last_failed = NULL;
            return true;
        }
    }
    return false;
}

static void schedule_retry(gw_req *q)
{
    double ms = sl_policy_backoff_ms(q->snap->cfg->router.retry_backoff_ms, q->attempts_in_group,
                                     sl_rand_unit(), BACKOFF_CAP_MS);
    sl_metrics_add(q->w->metrics, SL_M_RETRIES, q->model, NULL, NULL, 1);
    if (!q->timer_live) {
        uv_timer_init(sl_http_worker_loop(q->w->hw), &q->timer);
        q->timer.data = q;
        q->timer_live = true;
    }
    uv_timer_start(&q->timer, on_backoff_done, (uint64_t)ms, 0);
}

static void on_up_done(void *ud, int err, const char *msg)
{
    gw_req *q = ud;
    q->busy++;
    on_up_done_inner(q, err, msg);
    q->busy--;
    req_maybe_free(q);
}

static void on_up_done_inner(gw_req *q, int err, const char *msg)
{
    q->xfer_live = false;
    q->xfer = NULL;
    q->up_err = err;
    snprintf(q->up_msg, sizeof q->up_msg, "%s", msg ? msg : "");
    atomic_fetch_sub(&q->backend->rt->inflight, 1);

    if (!q->http) { /* answered already (a failed stream) or the client left */
        req_maybe_free(q);
        return;
    }
    /* a 2xx stream that ended without [DONE] was cut */
    if (err == 0 && q->streaming && !q->got_done) {
        err = q->up_err = SL_EUPSTREAM;
        snprintf(q->up_msg, sizeof q->up_msg, "the event stream ended without [DONE]");
    }
    sl_attempt_class c = sl_policy_classify(err, q->up_status);
    const char *outcome = c == SL_ATTEMPT_OK ? "ok" : err == SL_ETIMEDOUT ? "timeout" : err ? "error" : "http_error";
    sl_metrics_add(q->w->metrics, SL_M_ATTEMPTS, q->backend->conf->id, outcome, NULL, 1);
    if (err != 0 && err != SL_ETOOBIG)
        atomic_fetch_add(&q->backend->rt->fail_streak, 1);
    else
        atomic_store(&q->backend->rt->fail_streak, 0);

    if (c == SL_ATTEMPT_OK) {
        if (q->streaming)
            stream_end(q, NULL);
        else
            relay_response(q);
        req_maybe_free(q);
        return;
    }
    q->last_failed = q->backend;
    sl_next_step next = sl_policy_next(c, q->stream_started, q->attempts_in_group,
                                       q->snap->cfg->router.num_retries, fallback_left(q));
    if (next == SL_NEXT_RETRY) {
        schedule_retry(q);
        return;
    }
    if (next == SL_NEXT_FALLBACK && next_fallback(q)) {
        attempt_start(q);
        return;
    }
    if (err)
        respond_transport_error(q);
    else if (q->stream_started)
        stream_end(q, NULL);
    else
        relay_response(q);
    req_maybe_free(q);
}

/* ---- attempts ---- */

static gw_backend *pick_backend(gw_req *q)
{
    const gw_group *grp = q->group;
    size_t n = grp->n;
    double wbuf[32];
    bool okbuf[32];
    double *w = n <= 32 ? wbuf : sl_arena_alloc(q->arena, n * sizeof *w);
    bool *ok = n <= 32 ? okbuf : sl_arena_alloc(q->arena, n * sizeof *ok);
    if (!w || !ok)
        return NULL;
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_backend *b = &grp->backends[i];
        w[i] = b->conf->weight;
        int cap = b->conf->max_concurrency;
        ok[i] = cap <= 0 || atomic_load(&b->rt->inflight) < cap;
        n_ok += ok[i];
    }
    /* after a failure, prefer another backend when there is one */
    if (q->last_failed && n_ok > 1) {
        for (size_t i = 0; i < n; i++)
            if (&grp->backends[i] == q->last_failed)
                ok[i] = false;
    }
    int i = sl_policy_pick_weighted(w, ok, n, sl_rand_unit());
    return i < 0 ? NULL : &grp->backends[i];
}

static void attempt_start(gw_req *q)
{
    for (;;) {
        gw_backend *b = pick_backend(q);
        if (!b) {
            /* every backend of the group is at its concurrency limit */
            if (next_fallback(q))
                continue;
            sl_metrics_add(q->w->metrics, SL_M_REJECTED, "backends_busy", NULL, NULL, 1);
            sl_api_error e;
            sl_api_error_overloaded(&e, "every backend of model '%s' is at its concurrency limit; retry later",
                                    q->model);
            respond_error(q, &e, 1);
            req_maybe_free(q);
            return;
        }
        const sl_backend_conf *bc = b->conf;
        if (bc->provider != SL_PROVIDER_OPENAI) {
            sl_api_error e;
            sl_api_error_internal(&e, "backend %s uses provider 'local', which this build does not serve yet",
                                  bc->id);
            respond_error(q, &e, -1);
            req_maybe_free(q);
            return;
        }
        q->backend = b;
        q->attempts_in_group++;
        q->attempts_total++;
        q->up_status = 0;
        q->up_retry_after = -1;
        q->up_err = 0;
        q->up_msg[0] = 0;
        q->streaming = false;
        q->got_done = false;
        q->stream_failed = false;
        sl_buf_reset(&q->body);
        q->body.max = q->req->stream ? MAX_ERROR_BODY : SL_UPSTREAM_DEFAULT_MAX_RESPONSE;
        if (q->sse) {
            sl_sse_parser_destroy(q->sse);
            q->sse = NULL;
        }
        if (q->req->stream && sl_sse_parser_create(MAX_SSE_EVENT, &q->sse) != 0) {
            sl_api_error e;
            sl_api_error_internal(&e, "out of memory");
            respond_error(q, &e, -1);
            req_maybe_free(q);
            return;
        }

        sl_buf ub;
        sl_buf_init(&ub, 64u << 20);
        char *url = sl_arena_sprintf(q->arena, "%s%s", bc->api_base, q->endpoint);
        int rc = url ? sl_api_upstream_body(q->req, bc->model, &ub) : SL_ENOMEM;
        sl_upstream_header hdr[1] = {{"X-Request-Id", q->request_id}};
        double first_byte = bc->first_byte_timeout_s > 0 ? bc->first_byte_timeout_s : bc->timeout_s;
        sl_upstream_req ur = {
            .url = url,
            .method = "POST",
            .api_key = bc->api_key,
            .body = ub.data,
            .body_len = ub.len,
            .headers = hdr,
            .n_headers = 1,
            .stream = q->req->stream,
            .connect_timeout_ms = (uint32_t)(bc->connect_timeout_s * 1000),
            .first_byte_timeout_ms = (uint32_t)(first_byte * 1000),
            .idle_timeout_ms = (uint32_t)((q->req->stream ? bc->stream_timeout_s : bc->timeout_s) * 1000),
            .total_timeout_ms = (uint32_t)(bc->timeout_s * 1000),
        };
        sl_upstream_cb cb = {.ud = q, .on_headers = on_up_headers, .on_body = on_up_body, .on_done = on_up_done};
        atomic_fetch_add(&b->rt->inflight, 1);
        if (rc == 0)
            rc = sl_upstream_start(q->w->pool, &ur, &cb, &q->xfer);
        sl_buf_free(&ub);
        if (rc != 0) {
            atomic_fetch_sub(&b->rt->inflight, 1);
            sl_api_error e;
            sl_api_error_internal(&e, "could not start the upstream request to %s: %s", bc->id, sl_strerror(rc));
            respond_error(q, &e, -1);
            req_maybe_free(q);
            return;
        }
        q->xfer_live = true;
        return;
    }
}

/* ---- lifetime ---- */

static void on_timer_closed(uv_handle_t *h)
{
    gw_req *q = h->data;
    q->timer_live = false;
    q->timer_closing = false;
    req_maybe_free(q);
}

static void req_maybe_free(gw_req *q)
{
    if (q->http || q->xfer_live || q->timer_closing || q->busy)
        return;
    if (q->timer_live) {
        uv_timer_stop(&q->timer);
        q->timer_closing = true;
        uv_close((uv_handle_t *)&q->timer, on_timer_closed);
        return;
    }
    if (q->counted_inflight)
        atomic_fetch_sub(&q->g->inflight, 1);
    sl_sse_parser_destroy(q->sse);
    sl_buf_free(&q->body);
    sl_buf_free(&q->out);
    sl_request_release(q->req);
    snap_release(q->snap);
    sl_arena_destroy(q->arena);
    sl_free(q);
}

static void on_client_gone(void *ud)
{
    gw_req *q = ud;
    q->http = NULL;
    q->client_gone = true;
    if (!q->status)
        q->status = 499;
    q->error_code = "client_closed";
    cancel_xfer(q, "cancelled");
    finish_metrics(q);
    req_maybe_free(q);
}

/* ---- request entry ---- */

static bool key_ok(const sl_config *cfg, sl_str auth)
{
    if (!cfg->server.n_api_keys)
        return true;
    if (!sl_str_starts_with(auth, "Bearer "))
        return false;
    sl_str k = sl_str_trim(sl_str_make(auth.p + 7, auth.n - 7));
    bool ok = false;
    for (size_t i = 0; i < cfg->server.n_api_keys; i++) {
        const char *want = cfg->server.api_keys[i];
        size_t wn = strlen(want);
        /* compare in time independent of where the first difference is */
        unsigned diff = (unsigned)(wn ^ k.n);
        for (size_t j = 0; j < wn; j++)
            diff |= (unsigned char)want[j] ^ (unsigned char)(j < k.n ? k.p[j] : 0);
        ok |= diff == 0;
    }
    return ok;
}

static void set_request_id(gw_req *q, sl_http_req *r)
{
    bool found;
    sl_str id = sl_http_req_header(r, "x-request-id", &found);
    bool valid = found && id.n > 0 && id.n < sizeof q->request_id;
    for (size_t i = 0; valid && i < id.n; i++)
        valid = id.p[i] > 0x20 && id.p[i] < 0x7f && id.p[i] != '"' && id.p[i] != '\\';
    if (valid) {
        memcpy(q->request_id, id.p, id.n);
        q->request_id[id.n] = 0;
    } else {
        sl_rand_hex(q->request_id, 16);
    }
}

static void handle_proxy(gw_req *q, sl_api_kind kind)
{
    sl_gateway *g = q->g;
    sl_api_error e;
    bool found;
    if (!key_ok(q->snap->cfg, sl_http_req_header(q->http, "authorization", &found))) {
        sl_metrics_add(q->w->metrics, SL_M_REJECTED, "auth", NULL, NULL, 1);
        sl_api_error_unauthorized(&e, "missing or invalid API key: send 'Authorization: Bearer <key>'");
        respond_error(q, &e, -1);
        return;
    }
    long now_inflight = atomic_fetch_add(&g->inflight, 1) + 1;
    q->counted_inflight = true;
    if (now_inflight > q->snap->cfg->server.max_inflight) {
        sl_metrics_add(q->w->metrics, SL_M_REJECTED, "gateway_inflight", NULL, NULL, 1);
        sl_api_error_overloaded(&e, "the gateway is at its in-flight limit (%d); retry later",
                                q->snap->cfg->server.max_inflight);
        respond_error(q, &e, 1);
        return;
    }
    sl_str body = sl_http_req_body(q->http);
    if (sl_api_decode_request(kind, body.p, body.n, q->arena, &q->req, &e) != 0) {
        respond_error(q, &e, -1);
        return;
    }
    q->model = q->req->model;
    q->group = snap_group(q->snap, q->req->model);
    if (!q->group) {
        sl_api_error_model_not_found(&e, q->req->model);
        respond_error(q, &e, -1);
        q->model = NULL;
        return;
    }
    if (kind == SL_API_EMBEDDINGS && q->req->stream) {
        sl_api_error_bad_request(&e, "invalid_value", "stream", "embeddings cannot be streamed");
        respond_error(q, &e, -1);
        return;
    }
    sl_buf_init(&q->body, SL_UPSTREAM_DEFAULT_MAX_RESPONSE);
    sl_buf_init(&q->out, MAX_SSE_EVENT + 1024);
    sl_http_req_on_gone(q->http, on_client_gone, q);
    attempt_start(q);
}

static void handle_models(gw_req *q, sl_str path)
{
    const gw_snapshot *s = q->snap;
    sl_buf b;
    sl_buf_init(&b, 16u << 20);
    sl_api_model *ms = sl_arena_calloc(q->arena, (s->n_groups ? s->n_groups : 1) * sizeof *ms);
    for (size_t i = 0; ms && i < s->n_groups; i++)
        ms[i] = (sl_api_model){.id = s->groups[i].name, .owned_by = "sluice", .created = s->created};
    if (path.n == strlen("/v1/models")) {
        sl_api_models_list(ms, ms ? s->n_groups : 0, &b);
        respond_json(q, 200, b.data, b.len, NULL, 0);
    } else {
        sl_str id = sl_str_make(path.p + 11, path.n - 11);
        const sl_api_model *hit = NULL;
        for (size_t i = 0; ms && i < s->n_groups; i++)
            if (sl_str_eq_c(id, ms[i].id))
                hit = &ms[i];
        if (hit) {
            sl_api_model_object(hit, &b);
            respond_json(q, 200, b.data, b.len, NULL, 0);
        } else {
            sl_api_error e;
            char *name = sl_arena_strndup(q->arena, id.p, id.n);
            sl_api_error_model_not_found(&e, name ? name : "");
            respond_error(q, &e, -1);
        }
    }
    sl_buf_free(&b);
}

static bool snap_ready(const gw_snapshot *s)
{
    for (size_t i = 0; i < s->n_groups; i++)
        for (size_t j = 0; j < s->groups[i].n; j++)
            if (atomic_load(&s->groups[i].backends[j].rt->fail_streak) < UNHEALTHY_STREAK)
                return true;
    return false;
}

static void on_request(void *ud, sl_http_req *r)
{
    sl_gateway *g = ud;
    gw_worker *w = sl_http_worker_data(sl_http_req_worker(r));
    gw_req *q = sl_calloc(1, sizeof *q);
    sl_arena *arena = q ? sl_arena_create(16384) : NULL;
    if (!arena) {
        sl_free(q);
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":\"internal_error\"}}";
        sl_http_respond(r, 500, "application/json", NULL, 0, oom, sizeof oom - 1);
        return;
    }
    q->g = g;
    q->w = w;
    q->http = r;
    q->arena = arena;
    q->busy = 1; /* released at the end of on_request */
    q->t_start = sl_now_ns();
    q->snap = snap_get(g);
    set_request_id(q, r);

    sl_str m = sl_http_req_method(r);
    sl_str path = sl_http_req_path(r);
    bool get = sl_str_eq_c(m, "GET") || sl_str_eq_c(m, "HEAD");
    bool post = sl_str_eq_c(m, "POST");
    sl_api_error e;
    char *mstr = sl_arena_strndup(arena, m.p, m.n);
    char *pstr = sl_arena_strndup(arena, path.p, path.n);
    q->endpoint = pstr;

    static const struct {
        const char *path;
        sl_api_kind kind;
        const char *endpoint;
    } proxied[] = {
        {"/v1/chat/completions", SL_API_CHAT, "/chat/completions"},
        {"/v1/completions", SL_API_COMPLETIONS, "/completions"},
        {"/v1/embeddings", SL_API_EMBEDDINGS, "/embeddings"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(proxied); i++) {
        if (!sl_str_eq_c(path, proxied[i].path))
            continue;
        if (!post) {
            sl_api_error_method_not_allowed(&e, mstr, pstr);
            sl_http_header allow = {"allow", "POST"};
            sl_buf b;
            sl_buf_init(&b, 4096);
            sl_api_error_body(&e, &b);
            q->error_code = e.code;
            respond_json(q, 405, b.data, b.len, &allow, 1);
            sl_buf_free(&b);
            q->busy--;
            req_maybe_free(q);
            return;
        }
        q->kind = proxied[i].kind;
        q->endpoint = proxied[i].endpoint;
        handle_proxy(q, proxied[i].kind);
        q->busy--;
        req_maybe_free(q);
        return;
    }

    bool known = true;
    if (get && sl_str_eq_c(path, "/healthz")) {
        static const char ok[] = "{\"status\":\"ok\"}";
        respond_json(q, 200, ok, sizeof ok - 1, NULL, 0);
    } else if (get && sl_str_eq_c(path, "/readyz")) {
        if (snap_ready(q->snap)) {
            static const char ok[] = "{\"status\":\"ready\"}";
            respond_json(q, 200, ok, sizeof ok - 1, NULL, 0);
        } else {
            sl_api_error_overloaded(&e, "not ready: no backend is configured and healthy");
            respond_error(q, &e, 1);
        }
    } else if (get && sl_str_eq_c(path, "/metrics")) {
        sl_buf b;
        sl_buf_init(&b, 64u << 20);
        int rc = sl_metrics_render(g->metrics, &b);
        if (rc == 0) {
            sl_http_header h[1];
            size_t n = 0;
            common_headers(q, h, &n);
            q->status = 200;
            sl_http_respond(q->http, 200, "text/plain; version=0.0.4", h, n, b.data ? b.data : "", b.len);
            q->http = NULL;
        } else {
            sl_api_error_internal(&e, "metrics: %s", sl_strerror(rc));
            respond_error(q, &e, -1);
        }
        sl_buf_free(&b);
    } else if (get && (sl_str_eq_c(path, "/v1/models") || sl_str_starts_with(path, "/v1/models/"))) {
        bool found;
        if (key_ok(q->snap->cfg, sl_http_req_header(r, "authorization", &found))) {
            handle_models(q, path);
        } else {
            sl_api_error_unauthorized(&e, "missing or invalid API key: send 'Authorization: Bearer <key>'");
            respond_error(q, &e, -1);
        }
    } else {
        known = sl_str_eq_c(path, "/healthz") || sl_str_eq_c(path, "/readyz") || sl_str_eq_c(path, "/metrics") ||
                sl_str_eq_c(path, "/v1/models") || sl_str_starts_with(path, "/v1/models/");
        if (known) {
            sl_api_error_method_not_allowed(&e, mstr, pstr);
            sl_http_header allow = {"allow", "GET"};
            sl_buf b;
            sl_buf_init(&b, 4096);
            sl_api_error_body(&e, &b);
            q->error_code = e.code;
            respond_json(q, 405, b.data, b.len, &allow, 1);
            sl_buf_free(&b);
        } else {
            sl_api_error_not_found(&e, mstr, pstr);
            respond_error(q, &e, -1);
        }
    }
    q->busy--;
    req_maybe_free(q);
}

static void render_error(void *ud, int status, const char *message, sl_buf *out)
{
    (void)ud;
    sl_api_error e;
    if (status == 413)
        sl_api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL, "%s", message);
    else if (status >= 500)
        sl_api_error_internal(&e, "%s", message);
    else
        sl_api_error_set(&e, status, "invalid_request_error", "invalid_request", NULL, "%s", message);
    sl_api_error_body(&e, out);
}

/* ---- workers ---- */

static int on_worker_start(void *ud, sl_http_worker *hw)
{
    sl_gateway *g = ud;
    gw_worker *w = sl_calloc(1, sizeof *w);
    if (!w)
        return SL_ENOMEM;
    w->g = g;
    w->hw = hw;
    w->metrics = sl_metrics_shard_new(g->metrics);
    int rc = sl_upstream_pool_create(sl_http_worker_loop(hw), NULL, &w->pool);
    if (rc || !w->metrics) {
        sl_free(w);
        return rc ? rc : SL_ENOMEM;
    }
    sl_http_worker_set_data(hw, w);
    return 0;
}

static void on_worker_stop(void *ud, sl_http_worker *hw)
{
    (void)ud;
    gw_worker *w = sl_http_worker_data(hw);
    if (!w)
        return;
    sl_upstream_pool_destroy(w->pool);
    sl_free(w);
    sl_http_worker_set_data(hw, NULL);
}

/* ---- public ---- */

static double gauge_inflight(void *ud) { return (double)sl_gateway_inflight(ud); }

int sl_gateway_create(sl_config *cfg, sl_metrics *metrics, sl_gateway **out)
{
    sl_gateway *g = sl_calloc(1, sizeof *g);
    if (!g)
        return SL_ENOMEM;
    pthread_mutex_init(&g->lock, NULL);
    g->metrics = metrics;
    int rc = sl_upstream_global_init();
    if (rc == 0)
        rc = snap_build(g, cfg, &g->snap);
    if (rc) {
        pthread_mutex_destroy(&g->lock);
        sl_free(g);
        return rc;
    }
    g->handlers = (sl_http_handlers){
        .ud = g, .on_worker_start = on_worker_start, .on_worker_stop = on_worker_stop, .on_request = on_request,
        .render_error = render_error};
    sl_metrics_gauge_fn(metrics, "sluice_requests_in_flight", "Proxied requests in flight.", gauge_inflight, g);
    *out = g;
    return 0;
}

void sl_gateway_destroy(sl_gateway *g)
{
    if (!g)
        return;
    snap_release(g->snap);
    backend_rt *r = g->rts;
    while (r) {
        backend_rt *n = r->next;
        sl_free(r->id);
        sl_free(r);
        r = n;
    }
    pthread_mutex_destroy(&g->lock);
    sl_free(g);
}

int sl_gateway_reload(sl_gateway *g, sl_config *cfg)
{
    gw_snapshot *s;
    int rc = snap_build(g, cfg, &s);
    if (rc)
        return rc;
    pthread_mutex_lock(&g->lock);
    gw_snapshot *old = g->snap;
    g->snap = s;
    pthread_mutex_unlock(&g->lock);
    snap_release(old);
    return 0;
}

const sl_http_handlers *sl_gateway_handlers(sl_gateway *g) { return &g->handlers; }
long sl_gateway_inflight(const sl_gateway *g) { return atomic_load(&g->inflight); }

sl_config *sl_gateway_config(sl_gateway *g)
{
    gw_snapshot *s = snap_get(g);
    sl_config *c = sl_config_retain(s->cfg);
    snap_release(s);
    return c;
}
