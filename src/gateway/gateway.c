/*
 * The gateway: request routing, attempts, retries, fallbacks and streaming.
 *
 * Everything about one request runs on the I/O worker that accepted it. A
 * request (gw_req) lives until four things are over: the HTTP side (answered,
 * or the client went away), its wait in the router's admission queue, the
 * current upstream transfer, and the backoff timer's close. Then it is freed
 * in one place (req_maybe_free).
 *
 * Traffic regulation is the router's (router.h): every attempt holds a lease
 * from it, released exactly once with what the attempt said about the
 * backend. A request that finds no capacity waits in its group's queue; the
 * router's grant arrives on any thread and is handed to the request's own
 * worker through that worker's wake list and uv_async. One regulator thread
 * ticks the router (ramps, ejection ends, queue timeouts) and runs the
 * active health checks.
 */
#include "gateway/gateway.h"

#include "api/api.h"
#include "engine/sched/sched.h"
#include "gateway/policy.h"
#include "gateway/router.h"
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_ERROR_BODY (64u << 10)   /* upstream error bodies kept for the client */
#define MAX_SSE_EVENT (8u << 20)     /* one upstream stream event */
#define BACKOFF_CAP_MS 2000.0
#define TICK_MS 50                   /* the regulator's period: ramps, ejection ends, queue timeouts */
#define HC_UNHEALTHY_AFTER 2         /* failed health checks in a row that take a backend out */
#define HC_MAX_BACKENDS 4096

/* A local engine (provider: local), keyed by backend id; it outlives the
 * snapshots that use it and is freed with the gateway. */
typedef struct gw_local {
    char *id;
    char *model_path;
    int ctx_size, max_seqs, kv_cache_mb, threads, prefill_chunk;
    char *chat_template;
    const char *kv_cache_type; /* a static name from the config, or NULL */
    int max_seqs_eff;   /* max_seqs as the engine resolves it */
    sl_sched *sched;
    bool reported;      /* the regulator has seen its load end (under g->lock) */
    bool failed;
    struct gw_local *next;
} gw_local;

typedef struct gw_backend {
    const sl_backend_conf *conf;
    gw_local *local;    /* provider local: its engine */
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

typedef struct gw_req gw_req;

typedef struct gw_worker {
    struct gw_worker *next_all; /* g->workers: freed with the gateway, after the engines */
    sl_gateway *g;
    sl_http_worker *hw;
    sl_upstream_pool *pool;
    sl_metrics_shard *metrics;
    uv_async_t wake;         /* router grants for this worker's queued requests */
    pthread_mutex_t wake_lock;
    gw_req *wake_head;       /* requests whose wait ended, under wake_lock */
    bool closing;            /* under wake_lock: the worker is stopping */
    gw_req *spare;           /* finished requests kept with their arena (req_new, req_free) */
    int n_spare;
    sl_buf scratch;          /* the upstream request body, built per attempt */
    struct series_cache *series; /* metric series handles by config pointers (series_of) */
} gw_worker;

/* The per-worker upstream body buffer (gw_worker.scratch) is kept up to this capacity. */
#define SCRATCH_KEEP_BYTES (256u << 10)

/* What the active health checker knows of one backend. */
typedef struct hc_state {
    char id[SL_ROUTER_NAME_MAX];
    int fails;               /* failed checks in a row */
    bool down;               /* marked unhealthy by us */
} hc_state;

struct sl_gateway {
    pthread_mutex_t lock; /* guards snap */
    gw_snapshot *snap;
    sl_router *router;
    sl_metrics *metrics;
    sl_http_handlers handlers;
    _Atomic long inflight;

    /* the regulator thread */
    pthread_t reg_thread;
    bool reg_started;
    _Atomic bool reg_stop;
    gw_local *locals;        /* under lock */
    gw_worker *workers;      /* under lock */
    CURLM *hc_multi;
    struct hc_probe *hc_live; /* checks in flight */
    hc_state *hc;
    size_t n_hc;
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

/* ---- metric series by config pointers ----
 * The labels of most per-request metrics are names from the config snapshot:
 * the group the client named, a backend id, a status. A worker keeps the
 * series handles it has looked up, keyed by those pointers, so that a request
 * costs no label hashing or string compares. The cache holds a reference to
 * the snapshot its keys point into, so that no pointer is reused for another
 * name while it is cached; a request on another snapshot empties it. */
#define SERIES_CACHE 64 /* direct-mapped entries per worker */

typedef enum { SK_REQUESTS, SK_DURATION, SK_TOK_PROMPT, SK_TOK_COMPLETION, SK_ATTEMPTS } series_kind;

typedef struct series_ent {
    const void *a, *b; /* group / backend, per kind; NULL for an empty label */
    int kind, n;       /* n: the status, or the attempt outcome's index */
    sl_metrics_series *s;
} series_ent;

typedef struct series_cache {
    gw_snapshot *snap; /* held */
    series_ent ent[SERIES_CACHE];
} series_cache;

static void series_cache_free(series_cache *c)
{
    if (!c)
        return;
    snap_release(c->snap);
    sl_free(c);
}

/* The series for (kind, a, b, n), looked up with labels l1..l3 (which must be
 * the names a, b and n stand for) on a miss. NULL when out of memory. */
static sl_metrics_series *series_of(gw_worker *w, gw_snapshot *snap, series_kind kind, const void *a,
                                    const void *b, int n, const char *l1, const char *l2, const char *l3)
{
    series_cache *c = w->series;
    if (!c && !(c = w->series = sl_calloc(1, sizeof *c)))
        return NULL;
    if (c->snap != snap) {
        snap_release(c->snap);
        atomic_fetch_add(&snap->refs, 1);
        c->snap = snap;
        memset(c->ent, 0, sizeof c->ent);
    }
    uint64_t h = ((uintptr_t)a * 0x9E3779B97F4A7C15ull) ^ ((uintptr_t)b * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)(unsigned)n << 8) ^ (uint64_t)kind;
    series_ent *e = &c->ent[(h ^ h >> 29) % SERIES_CACHE];
    if (e->s && e->kind == (int)kind && e->a == a && e->b == b && e->n == n)
        return e->s;
    static const sl_metric_id ids[] = {SL_M_REQUESTS, SL_M_DURATION, SL_M_TOKENS, SL_M_TOKENS, SL_M_ATTEMPTS};
    sl_metrics_series *s = sl_metrics_series_get(w->metrics, ids[kind], l1, l2, l3);
    if (s)
        *e = (series_ent){.a = a, .b = b, .kind = (int)kind, .n = n, .s = s};
    return s;
}

static void snap_free_tables(gw_snapshot *s)
{
    for (size_t i = 0; i < s->n_groups; i++)
        sl_free(s->groups[i].backends);
    sl_free(s->groups);
    sl_free(s);
}

static bool same_str(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

/* Finds the engine for a local backend, or starts one (the model loads in
 * the background). A backend whose id stays but whose settings change gets a
 * new engine; the old one is freed with the gateway. g->lock held. */
static gw_local *local_for(sl_gateway *g, const sl_backend_conf *b)
{
    for (gw_local *l = g->locals; l; l = l->next)
        if (!strcmp(l->id, b->id) && !strcmp(l->model_path, b->model) && l->ctx_size == b->ctx_size &&
            l->max_seqs == b->max_seqs && l->kv_cache_mb == b->kv_cache_mb && l->threads == b->threads &&
            l->prefill_chunk == b->prefill_chunk && same_str(l->chat_template, b->chat_template) &&
            same_str(l->kv_cache_type, b->kv_cache_type))
            return l;
    gw_local *l = sl_calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->id = sl_strdup(b->id);
    l->model_path = sl_strdup(b->model);
    l->chat_template = b->chat_template ? sl_strdup(b->chat_template) : NULL;
    l->ctx_size = b->ctx_size;
    l->max_seqs = b->max_seqs;
    l->kv_cache_mb = b->kv_cache_mb;
    l->threads = b->threads;
    l->prefill_chunk = b->prefill_chunk;
    l->kv_cache_type = b->kv_cache_type;
    sl_sched_opts o;
    sl_sched_opts_default(&o);
    o.model_path = l->model_path;
    o.n_ctx = b->ctx_size;
    o.max_seqs = b->max_seqs;
    o.kv_cache_bytes = (int64_t)b->kv_cache_mb << 20;
    o.threads = b->threads;
    o.prefill_chunk = b->prefill_chunk;
    o.chat_template = l->chat_template;
    o.kv_type = l->kv_cache_type;
    l->max_seqs_eff = b->max_seqs > 0 ? b->max_seqs : 16; /* the engine's default */
    char err[512];
    if (!l->id || !l->model_path || (b->chat_template && !l->chat_template) ||
        sl_sched_create(&o, &l->sched, err, sizeof err) != 0) {
        sl_free(l->id);
        sl_free(l->model_path);
        sl_free(l->chat_template);
        sl_free(l);
        return NULL;
    }
    sl_info("local model %s: loading %s", b->id, b->model);
    l->next = g->locals;
    g->locals = l;
    return l;
}

static int snap_build(sl_gateway *g, sl_config *cfg, gw_snapshot **out)
{
    gw_snapshot *s = sl_calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    atomic_init(&s->refs, 1);
    s->created = (int64_t)(sl_wall_ms() / 1000);
    s->groups = sl_calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *s->groups);
    if (!s->groups) {
        sl_free(s);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_backends; i++) {
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
            snap_free_tables(s);
            return SL_ENOMEM;
        }
        grp->backends = nb;
        nb[grp->n].conf = b;
        nb[grp->n].local = NULL;
        if (b->provider == SL_PROVIDER_LOCAL) {
            pthread_mutex_lock(&g->lock);
            nb[grp->n].local = local_for(g, b);
            pthread_mutex_unlock(&g->lock);
            if (!nb[grp->n].local) {
                snap_free_tables(s);
                return SL_ENOMEM;
            }
        }
        grp->n++;
    }
    s->cfg = cfg;
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

/* ---- router configuration from the config ---- */

static void router_opts_from(const sl_config *cfg, sl_router_opts *o)
{
    const sl_router_conf *rc = &cfg->router;
    sl_router_opts_default(o);
    sl_router_strategy_parse(rc->routing_strategy, &o->default_strategy);
    if (o->default_strategy == SL_ROUTER_STRATEGY_DEFAULT)
        o->default_strategy = SL_ROUTER_STRATEGY_LATENCY;
    o->queue_max = rc->queue_max;
    o->queue_timeout_ms = rc->queue_timeout_s * 1000;
    o->eject_consecutive = rc->eject_consecutive;
    o->eject_base_ms = rc->eject_base_s * 1000;
    o->eject_max_ms = rc->eject_max_s * 1000;
    o->max_ejection_percent = rc->max_ejection_percent;
    o->slow_start_window_ms = rc->slow_start_window_s * 1000;
    o->slow_start_floor = rc->slow_start_floor;
    o->slow_start_curve = rc->slow_start_curve && !strcmp(rc->slow_start_curve, "aggressive")
                              ? SL_ROUTER_RAMP_AGGRESSIVE
                              : SL_ROUTER_RAMP_LINEAR;
    o->slow_start_aggression = rc->slow_start_aggression;
    o->slow_start_initial = rc->slow_start_on_start;
    o->pause_max_ms = rc->retry_after_max_s * 1000;
    o->ewma_decay_ms = rc->latency_decay_s * 1000;
    o->retry_budget_ratio = rc->retry_budget_ratio;
    o->retry_budget_min_per_s = rc->retry_budget_min_per_s;
    o->retry_budget_window_ms = rc->retry_budget_window_s * 1000;
}

/* Local engines still loading are out of the router until the regulator
 * sees them ready (then mark_healthy: they take traffic at once). */
static void locals_hold_loading(sl_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    for (gw_local *l = g->locals; l; l = l->next)
        if (!l->reported)
            sl_router_mark_unhealthy(g->router, l->id);
    pthread_mutex_unlock(&g->lock);
}

/* Called by the regulator: notices engines that finished loading. */
static void locals_poll(sl_gateway *g)
{
    pthread_mutex_lock(&g->lock);
    for (gw_local *l = g->locals; l; l = l->next) {
        if (l->reported)
            continue;
        char err[512];
        int st = sl_sched_state(l->sched, err, sizeof err);
        if (st == SL_EAGAIN)
            continue;
        l->reported = true;
        if (st == 0) {
            sl_info("local model %s: ready", l->id);
            sl_router_mark_healthy(g->router, l->id);
        } else {
            l->failed = true;
            sl_error("local model %s: %s", l->id, err);
        }
    }
    pthread_mutex_unlock(&g->lock);
}

/* Returns the id of a local engine still loading, or NULL. */
static const char *locals_loading(sl_gateway *g, char *buf, size_t cap)
{
    const char *hit = NULL;
    pthread_mutex_lock(&g->lock);
    for (gw_local *l = g->locals; l && !hit; l = l->next)
        if (!l->reported) {
            snprintf(buf, cap, "%s", l->id);
            hit = buf;
        }
    pthread_mutex_unlock(&g->lock);
    return hit;
}

/* Installs the snapshot's groups into the router. */
static int router_install(sl_router *r, const gw_snapshot *s)
{
    const sl_config *cfg = s->cfg;
    sl_router_group_conf *gc = sl_calloc(s->n_groups ? s->n_groups : 1, sizeof *gc);
    sl_router_backend_conf *bc = sl_calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *bc);
    if (!gc || !bc) {
        sl_free(gc);
        sl_free(bc);
        return SL_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->n_groups; i++) {
        const gw_group *grp = &s->groups[i];
        gc[i] = (sl_router_group_conf){.name = grp->name, .queue_max = -1, .queue_timeout_ms = -1,
                                       .backends = &bc[k], .n_backends = grp->n};
        for (size_t j = 0; j < cfg->router.n_group_confs; j++) {
            const sl_group_conf *o = &cfg->router.groups[j];
            if (strcmp(o->model, grp->name))
                continue;
            sl_router_strategy_parse(o->routing_strategy, &gc[i].strategy);
            gc[i].queue_max = o->queue_max;
            gc[i].queue_timeout_ms = o->queue_timeout_s < 0 ? -1 : o->queue_timeout_s * 1000;
        }
        for (size_t j = 0; j < grp->n; j++, k++) {
            const sl_backend_conf *b = grp->backends[j].conf;
            bc[k] = (sl_router_backend_conf){.id = b->id, .weight = b->weight, .max_concurrency = b->max_concurrency};
            const gw_local *l = grp->backends[j].local;
            if (l) {
                /* the engine runs max_seqs sequences at once; the router's
                 * queue holds the rest, with its timeout and shedding */
                if (bc[k].max_concurrency <= 0)
                    bc[k].max_concurrency = l->max_seqs_eff;
                bc[k].no_slow_start = true;
            }
        }
    }
    char err[256];
    int rc = sl_router_set_groups(r, gc, s->n_groups, err, sizeof err);
    if (rc)
        sl_error("router: %s", err);
    sl_free(gc);
    sl_free(bc);
    return rc;
}

/* ---- the per-request state ---- */

typedef struct gw_req {
    sl_gateway *g;
    gw_worker *w;
    struct gw_req *spare_next; /* w->spare */
    sl_http_req *http; /* NULL once answered or gone */
    bool client_gone;
    gw_snapshot *snap;
    sl_arena *arena;
    sl_request *req;
    sl_api_kind kind;
    const char *endpoint; /* "/chat/completions", ... */
    char request_id[72];
    uint64_t t_start, t_first_token, t_last_token;
    sl_metrics_series *itl; /* this request's inter-token latency series, looked up once */

    /* routing */
    const gw_group *group;
    const gw_group *group0;    /* the group the client named: the model label (series_of) */
    const char *model;         /* the model the client asked for */
    size_t fallback_pos;       /* next fallback target to try */
    int attempts_in_group;
    int attempts_total;
    gw_backend *backend;       /* current attempt's backend */
    gw_backend *last_failed;   /* avoided on the next pick when there is a choice */
    sl_router_lease lease;     /* the current attempt's; priv NULL when none is held */
    bool waiting;              /* queued in the router: its grant is still to come */
    uint64_t ticket;           /* the wait, for sl_router_cancel_wait */
    int wait_status;           /* set with the grant, under the worker's wake_lock */
    sl_router_lease wait_lease;
    gw_req *wake_next;
    uint64_t t_attempt;        /* when the current attempt started (ns) */
    uint64_t t_attempt_first;  /* its first content token (streams), or its end */
    sl_upstream_xfer *xfer;
    bool xfer_live;
    struct gw_localx *lx;      /* the current local-engine attempt, or NULL */
    bool local_live;           /* terminal events of lx still to come */
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

/* Ends the current attempt's lease, telling the router what the attempt said. */
static void lease_end(gw_req *q, sl_router_outcome_kind kind, double retry_after_s)
{
    if (!q->lease.priv)
        return;
    double ttft = 0;
    if (kind == SL_ROUTER_OK || kind == SL_ROUTER_FAIL_TIMEOUT) {
        uint64_t t = q->t_attempt_first ? q->t_attempt_first : sl_now_ns();
        ttft = (double)(t - q->t_attempt) / 1e6;
    }
    sl_router_outcome oc = {.kind = kind, .ttft_ms = ttft, .retry_after_s = retry_after_s};
    sl_router_release(q->g->router, &q->lease, &oc);
}

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
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
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
/* One attempt on q->backend ended with outcome, a string literal: the
 * literal's address is a safe cache key, as it is never reused. */
static void count_attempt(gw_req *q, const char *outcome)
{
    gw_worker *w = q->w;
    sl_metrics_add_series(w->metrics, series_of(w, q->snap, SK_ATTEMPTS, q->backend, outcome, 0,
                                                q->backend->conf->id, outcome, NULL), 1);
}

/* The request's counters. Called before the last bytes of the answer go
 * out: a client that has its answer and then reads /metrics finds itself
 * counted. */
static void count_request(gw_req *q)
{
    char st[16]; /* the status in decimal, without printf's cost on every request */
    int status = q->status;
    if (status >= 0 && status < 1000) {
        int k = 0;
        if (status >= 100)
            st[k++] = (char)('0' + status / 100);
        if (status >= 10)
            st[k++] = (char)('0' + status / 10 % 10);
        st[k++] = (char)('0' + status % 10);
        st[k] = 0;
    } else {
        snprintf(st, sizeof st, "%d", status);
    }
    const char *model = q->group ? q->model : "";
    const char *be = q->backend ? q->backend->conf->id : "";
    sl_metrics_shard *m = q->w->metrics;
    if (q->group0 && q->group && status >= 0 && status < 1000) {
        /* every label is a name in q->snap (q->model is group0's name): cached handles */
        gw_worker *w = q->w;
        const void *g0 = q->group0;
        sl_metrics_update u[4];
        size_t n = 0;
        u[n++] = (sl_metrics_update){series_of(w, q->snap, SK_REQUESTS, g0, q->backend, status, model, be, st), 1,
                                     false};
        u[n++] = (sl_metrics_update){series_of(w, q->snap, SK_DURATION, g0, NULL, 0, model, NULL, NULL),
                                     secs_since(q->t_start), true};
        if (q->usage.known) {
            u[n++] = (sl_metrics_update){series_of(w, q->snap, SK_TOK_PROMPT, g0, NULL, 0, model, "prompt", NULL),
                                         (double)q->usage.prompt_tokens, false};
            u[n++] = (sl_metrics_update){
                series_of(w, q->snap, SK_TOK_COMPLETION, g0, NULL, 0, model, "completion", NULL),
                (double)q->usage.completion_tokens, false};
        }
        sl_metrics_apply(m, u, n);
    } else {
        sl_metrics_add(m, SL_M_REQUESTS, model, be, st, 1);
        sl_metrics_observe(m, SL_M_DURATION, model, NULL, NULL, secs_since(q->t_start));
        if (q->usage.known) {
            sl_metrics_add(m, SL_M_TOKENS, model, "prompt", NULL, (double)q->usage.prompt_tokens);
            sl_metrics_add(m, SL_M_TOKENS, model, "completion", NULL, (double)q->usage.completion_tokens);
        }
    }
}

static void finish_metrics(gw_req *q)
{
    count_request(q);
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
    count_request(q);
    sl_http_respond(q->http, status, "application/json", h, n, body, len);
    q->http = NULL;
    log_access(q);
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
static void stream_write_bytes(gw_req *q, const char *p, size_t n)
{
    if (!q->http || !n)
        return;
    int rc = sl_http_stream_write(q->http, p, n);
    if (rc == SL_EAGAIN && q->xfer_live)
        sl_upstream_pause(q->xfer);
}

static void stream_write(gw_req *q, const sl_buf *b) { stream_write_bytes(q, b->data, b->len); }

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
    count_request(q);
    sl_http_stream_end(q->http, true);
    q->http = NULL;
    log_access(q);
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
        if (!q->t_attempt_first)
            q->t_attempt_first = now;
        if (!q->t_first_token) {
            q->t_first_token = now;
            sl_metrics_observe(q->w->metrics, SL_M_TTFT, q->model, NULL, NULL, (double)(now - q->t_start) / 1e9);
        } else {
            if (!q->itl)
                q->itl = sl_metrics_series_get(q->w->metrics, SL_M_ITL, q->model, NULL, NULL);
            sl_metrics_observe_series(q->w->metrics, q->itl, (double)(now - q->t_last_token) / 1e9);
        }
        q->t_last_token = now;
    }
    if (ev->raw && ev->raw_len == ev->data_len + 8 && !memcmp(ev->raw, "data: ", 6) &&
        !memcmp(ev->raw + ev->raw_len - 2, "\n\n", 2)) {
        /* the upstream framed it as sl_sse_data would: send its bytes */
        stream_write_bytes(q, ev->raw, ev->raw_len);
        return 0;
    }
    sl_buf_reset(&q->out);
    if (sl_sse_data(&q->out, ev->data, ev->data_len) == 0)
        stream_write(q, &q->out);
    return 0;
}

/* Stops the current transfer; kind is what it said about the backend
 * (NEUTRAL when the client left, 5XX when the backend sent a bad stream). */
static void cancel_xfer(gw_req *q, const char *outcome, sl_router_outcome_kind kind)
{
    if (!q->xfer_live)
        return;
    sl_upstream_cancel(q->xfer);
    q->xfer_live = false;
    q->xfer = NULL;
    lease_end(q, kind, -1);
    count_attempt(q, outcome);
}

static int on_up_body(void *ud, const char *p, size_t n)
{
    gw_req *q = ud;
    if (q->streaming) {
        if (q->stream_failed || !q->http)
            return 0;
        q->busy++;
        sl_http_stream_hold(q->http, true); /* the events of this read go out in one write */
        int rc = sl_sse_parser_feed(q->sse, p, n, on_sse_event, q);
        if (rc == SL_ETOOBIG && !q->stream_failed) {
            sl_api_error e;
            sl_api_error_upstream(&e, "upstream stream event exceeds %u bytes", MAX_SSE_EVENT);
            q->stream_failed = true;
            stream_begin(q);
            stream_end(q, &e);
        }
        /* After [DONE] only the end of the response can follow (on_up_done):
         * the last bytes wait for it, so that they and the end go out in one
         * write. */
        if (q->http && !q->got_done)
            sl_http_stream_hold(q->http, false);
        q->busy--;
        if (q->stream_failed || !q->http) {
            /* the client's answer is over: stop reading this upstream */
            cancel_xfer(q, "error", q->client_gone ? SL_ROUTER_NEUTRAL : SL_ROUTER_FAIL_5XX);
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

/* Answers with what the last attempt got (no attempt follows). */
static void respond_last_failure(gw_req *q)
{
    if (q->up_err)
        respond_transport_error(q);
    else if (q->stream_started)
        stream_end(q, NULL);
    else
        relay_response(q);
}

static void on_backoff_done(uv_timer_t *t)
{
    gw_req *q = t->data;
    if (q->http) {
        q->busy++;
        attempt_start(q);
        q->busy--;
    }
    req_maybe_free(q);
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
    size_t ml = msg ? strnlen(msg, sizeof q->up_msg - 1) : 0;
    memcpy(q->up_msg, msg ? msg : "", ml);
    q->up_msg[ml] = 0;

    /* a 2xx stream that ended without [DONE] was cut */
    if (err == 0 && q->streaming && !q->got_done) {
        err = q->up_err = SL_EUPSTREAM;
        snprintf(q->up_msg, sizeof q->up_msg, "the event stream ended without [DONE]");
    }
    sl_router_outcome_kind kind =
        q->client_gone ? SL_ROUTER_NEUTRAL : sl_policy_outcome(err, q->up_status, q->up_retry_after);
    sl_attempt_class c = sl_policy_classify(err, q->up_status);
    if (q->http && c == SL_ATTEMPT_OK) {
        /* The attempt is counted before the answer goes out (a client that
         * has its answer finds it in /metrics); the router's release waits
         * until after, and is told the same time to answer. */
        if (!q->t_attempt_first)
            q->t_attempt_first = sl_now_ns();
        count_attempt(q, "ok");
        if (q->streaming)
            stream_end(q, NULL);
        else
            relay_response(q);
        lease_end(q, kind, q->up_retry_after);
        return;
    }
    lease_end(q, kind, q->up_retry_after);
    if (!q->http) { /* answered already (a failed stream) or the client left */
        req_maybe_free(q);
        return;
    }
    const char *outcome = err == SL_ETIMEDOUT ? "timeout" : err ? "error" : "http_error";
    count_attempt(q, outcome);
    q->last_failed = q->backend;
    sl_next_step next = sl_policy_next(c, q->stream_started, q->attempts_in_group,
                                       q->snap->cfg->router.num_retries, fallback_left(q));
    /* every further attempt after a failure spends the gateway's retry budget */
    if (next != SL_NEXT_RESPOND && !sl_router_retry_budget_try_acquire(q->g->router)) {
        next = SL_NEXT_RESPOND;
    }
    if (next == SL_NEXT_RETRY) {
        schedule_retry(q);
        return;
    }
    if (next == SL_NEXT_FALLBACK && next_fallback(q)) {
        attempt_start(q);
        return;
    }
    respond_last_failure(q);
    req_maybe_free(q);
}

/* ---- the local engine (provider: local) ---- */

/* One local attempt: the engine's events land here on the engine thread and
 * the worker takes them (local_drain). Everything below lk is under it. */
typedef struct gw_localx {
    pthread_mutex_t lk;
    sl_sched *sched;
    sl_buf pending;           /* text not yet taken by the worker */
    bool queued;              /* on the worker's wake list */
    int n_total, n_done;      /* submitted requests (embeddings: one per input) and terminal events */
    uint64_t *ids;
    struct gw_embed_slot *slots;
    int err;                  /* the first ERROR event's code */
    char msg[256];
    int finish;               /* 0 stop, 1 length, 2 cancel */
    int32_t prompt, cached, completion;
    float **emb;              /* embeddings: one vector per input, sl_malloc'ed */
    int n_embd;
    /* worker-side only */
    bool sent_role;           /* chat stream: the first chunk (role) went out */
    bool finished;            /* the terminal answer went out */
} gw_localx;

typedef struct gw_embed_slot {
    gw_req *q;
    int index;
} gw_embed_slot;

static void localx_free(gw_localx *lx)
{
    if (!lx)
        return;
    for (int i = 0; lx->emb && i < lx->n_total; i++)
        sl_free(lx->emb[i]);
    sl_free(lx->emb);
    sl_free(lx->ids);
    sl_free(lx->slots);
    sl_buf_free(&lx->pending);
    pthread_mutex_destroy(&lx->lk);
    sl_free(lx);
}

/* Queues q on its worker's wake list (lx->lk held). */
static void local_notify(gw_req *q)
{
    gw_localx *lx = q->lx;
    if (lx->queued)
        return;
    gw_worker *w = q->w;
    pthread_mutex_lock(&w->wake_lock);
    if (!w->closing) {
        lx->queued = true;
        q->wake_next = w->wake_head;
        w->wake_head = q;
        uv_async_send(&w->wake);
    }
    pthread_mutex_unlock(&w->wake_lock);
}

static void local_event_into(gw_req *q, int index, const sl_sched_event *ev)
{
    gw_localx *lx = q->lx;
    pthread_mutex_lock(&lx->lk);
    switch (ev->kind) {
    case SL_SCHED_EV_TEXT:
        if (sl_buf_append(&lx->pending, ev->text, ev->len) != 0 && !lx->err) {
            lx->err = SL_ETOOBIG;
            snprintf(lx->msg, sizeof lx->msg, "the generated text exceeds the gateway's buffer");
        }
        break;
    case SL_SCHED_EV_DONE:
        lx->n_done++;
        lx->finish = ev->finish;
        lx->prompt += ev->prompt_tokens;
        lx->cached += ev->cached_tokens;
        lx->completion += ev->completion_tokens;
        if (ev->embedding && lx->emb && index >= 0 && index < lx->n_total) {
            lx->emb[index] = sl_malloc((size_t)ev->n_embd * sizeof(float));
            if (lx->emb[index]) {
                memcpy(lx->emb[index], ev->embedding, (size_t)ev->n_embd * sizeof(float));
                lx->n_embd = ev->n_embd;
            }
        }
        break;
    case SL_SCHED_EV_ERROR:
        lx->n_done++;
        if (!lx->err) {
            lx->err = ev->err ? ev->err : SL_ESTATE;
            snprintf(lx->msg, sizeof lx->msg, "%s", ev->message ? ev->message : sl_strerror(lx->err));
        }
        break;
    }
    local_notify(q);
    pthread_mutex_unlock(&lx->lk);
}

static void on_local_event(void *user, const sl_sched_event *ev) { local_event_into(user, -1, ev); }

static void on_local_embed_event(void *user, const sl_sched_event *ev)
{
    gw_embed_slot *slot = user;
    local_event_into(slot->q, slot->index, ev);
}

static void local_cancel(gw_req *q)
{
    gw_localx *lx = q->lx;
    if (!lx || !q->local_live)
        return;
    for (int i = 0; i < lx->n_total; i++)
        sl_sched_cancel(lx->sched, lx->ids[i]);
}

static const char *finish_name(int f) { return f == 1 ? "length" : "stop"; }

/* Appends the usage object of a local answer to o. */
static void put_usage(json_t *o, const gw_localx *lx, bool embeddings)
{
    json_t *u = embeddings ? json_pack("{s:i, s:i}", "prompt_tokens", lx->prompt, "total_tokens", lx->prompt)
                           : json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", lx->prompt, "completion_tokens",
                                       lx->completion, "total_tokens", lx->prompt + lx->completion,
                                       "prompt_tokens_details", "cached_tokens", lx->cached);
    if (u)
        json_object_set_new(o, "usage", u);
}

/* Writes one SSE data event holding o (consumed). */
static void stream_json(gw_req *q, json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!t)
        return;
    sl_buf_reset(&q->out);
    if (sl_sse_data(&q->out, t, strlen(t)) == 0)
        stream_write(q, &q->out);
    free(t); /* jansson's allocator */
}

/* A streamed chunk: chat deltas or completion text. text NULL = only finish. */
static json_t *local_chunk(gw_req *q, const char *text, size_t len, const char *finish, bool role)
{
    bool chat = q->kind == SL_API_CHAT;
    json_t *choice;
    if (chat) {
        json_t *delta = json_object();
        if (role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (text)
            json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:o}", "index", 0, "delta", delta, "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", 0, "text", text ? text : "", text ? len : 0,
                           "logprobs", "finish_reason", finish ? json_string(finish) : json_null());
    }
    char id[96];
    snprintf(id, sizeof id, "%s-%s", chat ? "chatcmpl" : "cmpl", q->request_id);
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                     chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)(sl_wall_ms() / 1000), "model", q->model, "choices", choice);
}

/* The whole non-streamed answer. */
static json_t *local_answer(gw_req *q, const gw_localx *lx, const char *text, size_t len)
{
    bool chat = q->kind == SL_API_CHAT;
    json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:s%}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                                      "content", text, len, "logprobs", "finish_reason", finish_name(lx->finish))
                          : json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", text, len, "logprobs",
                                      "finish_reason", finish_name(lx->finish));
    char id[96];
    snprintf(id, sizeof id, "%s-%s", chat ? "chatcmpl" : "cmpl", q->request_id);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", chat ? "chat.completion" : "text_completion",
                          "created", (json_int_t)(sl_wall_ms() / 1000), "model", q->model, "choices", choice);
    if (o)
        put_usage(o, lx, false);
    return o;
}

/* A vector as OpenAI's encoding_format "base64" sends it: the standard
 * base64 (with padding) of its float32 values, little-endian. NULL on OOM. */
static json_t *embedding_base64(const float *v, int n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = (size_t)n * 4, olen = (nb + 2) / 3 * 4;
    uint8_t *raw = sl_malloc(nb ? nb : 1);
    char *out = sl_malloc(olen + 1);
    json_t *s = NULL;
    if (raw && out) {
        for (int k = 0; k < n; k++) {
            uint32_t u;
            memcpy(&u, &v[k], 4);
            for (int j = 0; j < 4; j++)
                raw[(size_t)k * 4 + (size_t)j] = (uint8_t)(u >> (8 * j));
        }
        size_t o = 0;
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t w = (uint32_t)raw[i] << 16 | (i + 1 < nb ? (uint32_t)raw[i + 1] << 8 : 0) |
                         (i + 2 < nb ? raw[i + 2] : 0);
            out[o++] = abc[w >> 18 & 63];
            out[o++] = abc[w >> 12 & 63];
            out[o++] = i + 1 < nb ? abc[w >> 6 & 63] : '=';
            out[o++] = i + 2 < nb ? abc[w & 63] : '=';
        }
        s = json_stringn(out, o);
    }
    sl_free(raw);
    sl_free(out);
    return s;
}

static json_t *local_embeddings(gw_req *q, const gw_localx *lx)
{
    bool b64 = q->req->encoding_format && !strcmp(q->req->encoding_format, "base64");
    json_t *data = json_array();
    for (int i = 0; data && i < lx->n_total; i++) {
        json_t *v = b64 && lx->emb[i] ? embedding_base64(lx->emb[i], lx->n_embd) : json_array();
        for (int k = 0; !b64 && v && lx->emb[i] && k < lx->n_embd; k++)
            json_array_append_new(v, json_real(lx->emb[i][k]));
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding", v));
    }
    json_t *o = json_pack("{s:s, s:o, s:s}", "object", "list", "data", data, "model", q->model);
    if (o)
        put_usage(o, lx, true);
    return o;
}

static void respond_json_obj(gw_req *q, json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!t) {
        sl_api_error e;
        sl_api_error_internal(&e, "out of memory");
        respond_error(q, &e, -1);
        return;
    }
    respond_json(q, 200, t, strlen(t), NULL, 0);
    free(t); /* jansson's allocator */
}

static void local_error_to(sl_api_error *e, const gw_localx *lx, const char *id)
{
    if (lx->err == SL_EINVAL)
        sl_api_error_bad_request(e, "invalid_request", NULL, "%s", lx->msg);
    else
        sl_api_error_internal(e, "local model %s: %s", id, lx->msg);
}

/* Takes what the engine sent for q (on q's worker) and answers with it. */
static void local_drain(gw_req *q)
{
    gw_localx *lx = q->lx;
    if (!lx)
        return;
    pthread_mutex_lock(&lx->lk);
    lx->queued = false;
    sl_buf text = lx->pending;
    sl_buf_init(&lx->pending, text.max);
    bool terminal = lx->n_done == lx->n_total;
    pthread_mutex_unlock(&lx->lk);
    if (terminal && q->local_live) {
        q->local_live = false;
        q->usage = (sl_usage){.known = true, .prompt_tokens = lx->prompt, .completion_tokens = lx->completion,
                              .total_tokens = lx->prompt + lx->completion, .cached_tokens = lx->cached};
        lease_end(q, lx->err && lx->err != SL_EINVAL ? SL_ROUTER_FAIL_5XX : SL_ROUTER_OK, -1);
        count_attempt(q, lx->err ? "error" : lx->finish == 2 ? "cancelled" : "ok");
    }
    if (!q->http || lx->finished) {
        sl_buf_free(&text);
        return;
    }
    if (q->kind == SL_API_EMBEDDINGS) {
        if (terminal) {
            lx->finished = true;
            sl_api_error e;
            if (lx->err) {
                local_error_to(&e, lx, q->backend->conf->id);
                respond_error(q, &e, -1);
            } else {
                respond_json_obj(q, local_embeddings(q, lx));
            }
        }
        sl_buf_free(&text);
        return;
    }
    if (q->req->stream) {
        if (text.len || (terminal && !lx->err)) {
            stream_begin(q);
            if (q->kind == SL_API_CHAT && !lx->sent_role) {
                lx->sent_role = true;
                stream_json(q, local_chunk(q, "", 0, NULL, true));
            }
        }
        if (text.len) {
            uint64_t now = sl_now_ns();
            if (!q->t_first_token) {
                q->t_first_token = now;
                sl_metrics_observe(q->w->metrics, SL_M_TTFT, q->model, NULL, NULL, (double)(now - q->t_start) / 1e9);
            } else {
                if (!q->itl)
                    q->itl = sl_metrics_series_get(q->w->metrics, SL_M_ITL, q->model, NULL, NULL);
                sl_metrics_observe_series(q->w->metrics, q->itl, (double)(now - q->t_last_token) / 1e9);
            }
            q->t_last_token = now;
            stream_json(q, local_chunk(q, text.data, text.len, NULL, false));
        }
        if (terminal) {
            lx->finished = true;
            if (lx->err) {
                sl_api_error e;
                local_error_to(&e, lx, q->backend->conf->id);
                if (q->stream_started)
                    stream_end(q, &e);
                else
                    respond_error(q, &e, -1);
            } else {
                stream_json(q, local_chunk(q, NULL, 0, finish_name(lx->finish), false));
                if (q->req->include_usage) {
                    json_t *u = local_chunk(q, NULL, 0, NULL, false);
                    if (u) {
                        json_object_set_new(u, "choices", json_array());
                        put_usage(u, lx, false);
                    }
                    stream_json(q, u);
                }
                sl_buf_reset(&q->out);
                sl_sse_done(&q->out);
                stream_write(q, &q->out);
                stream_end(q, NULL);
            }
        }
        sl_buf_free(&text);
        return;
    }
    if (text.len)
        sl_buf_append(&q->body, text.data, text.len);
    sl_buf_free(&text);
    if (terminal) {
        lx->finished = true;
        if (lx->err) {
            sl_api_error e;
            local_error_to(&e, lx, q->backend->conf->id);
            respond_error(q, &e, -1);
        } else {
            if (!q->t_first_token)
                q->t_first_token = sl_now_ns();
            respond_json_obj(q, local_answer(q, lx, q->body.data ? q->body.data : "", q->body.len));
        }
    }
}

/* Reads an optional number extension (top_k, min_p, repetition_penalty)
 * that OpenAI's API lacks and local servers accept. */
static bool ext_number(const sl_request *r, const char *key, double lo, double hi, double *out)
{
    json_t *v = r->body ? json_object_get(r->body, key) : NULL;
    if (!v || json_is_null(v))
        return false;
    if (!json_is_number(v))
        return false;
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return false;
    *out = x;
    return true;
}

/* What the local engine cannot do yet, said plainly (400). NULL when fine. */
static const char *local_unsupported(const sl_request *r, const char **param)
{
    *param = NULL;
    if (r->n > 1)
        return *param = "n", "n > 1 is not supported by local models";
    if (r->has_tools)
        return *param = "tools", "tools are not supported by local models";
    if (r->logprobs)
        return *param = "logprobs", "logprobs are not available from local models";
    if (r->response_format_type && strcmp(r->response_format_type, "text"))
        return *param = "response_format", "structured output (response_format) is not supported by local models";
    if (r->n_token_prompts || r->n_token_inputs)
        return *param = r->kind == SL_API_EMBEDDINGS ? "input" : "prompt",
               "token-array prompts are not supported by local models; send text";
    if (r->kind == SL_API_COMPLETIONS && r->n_prompts != 1)
        return *param = "prompt", "local models take exactly one prompt string per request";
    for (size_t i = 0; i < r->n_messages; i++)
        if (r->messages[i].n_media_parts)
            return *param = "messages", "local models take text only (no images, audio or files)";
    if (r->kind == SL_API_EMBEDDINGS && r->has_dimensions)
        return *param = "dimensions", "local models cannot shorten embeddings (dimensions)";
    return NULL;
}

/* Starts a local attempt on b (the lease is q->lease). */
static void local_send(gw_req *q, gw_backend *b)
{
    sl_api_error e;
    const char *param, *why = local_unsupported(q->req, &param);
    if (why) {
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        sl_api_error_bad_request(&e, "unsupported_parameter", param, "%s (model '%s')", why, q->model);
        respond_error(q, &e, -1);
        return;
    }
    sl_sched *sched = b->local->sched;
    char err[512];
    int st = sl_sched_state(sched, err, sizeof err);
    if (st != 0) {
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        if (st == SL_EAGAIN) {
            sl_api_error_overloaded(&e, "local model %s is still loading; retry shortly", b->conf->id);
            respond_error(q, &e, 2);
        } else {
            sl_api_error_internal(&e, "local model %s failed to load: %s", b->conf->id, err);
            respond_error(q, &e, -1);
        }
        return;
    }
    gw_localx *lx = sl_calloc(1, sizeof *lx);
    int n = q->kind == SL_API_EMBEDDINGS ? (int)q->req->n_inputs : 1;
    if (lx) {
        pthread_mutex_init(&lx->lk, NULL);
        sl_buf_init(&lx->pending, 64u << 20);
        lx->ids = sl_calloc((size_t)(n ? n : 1), sizeof *lx->ids);
        if (q->kind == SL_API_EMBEDDINGS) {
            lx->emb = sl_calloc((size_t)(n ? n : 1), sizeof *lx->emb);
            lx->slots = sl_calloc((size_t)(n ? n : 1), sizeof *lx->slots);
        }
    }
    if (!lx || !lx->ids || (q->kind == SL_API_EMBEDDINGS && (!lx->emb || !lx->slots))) {
        localx_free(lx);
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        sl_api_error_internal(&e, "out of memory");
        respond_error(q, &e, -1);
        return;
    }
    lx->sched = sched;
    localx_free(q->lx);
    q->lx = lx;
    q->attempts_in_group++;
    q->attempts_total++;
    q->t_attempt = sl_now_ns();
    q->t_attempt_first = 0;
    sl_buf_reset(&q->body);
    q->body.max = 64u << 20;

    sl_sched_req r;
    sl_sched_req_default(&r);
    const sl_request *in = q->req;
    sl_sched_msg *msgs = NULL;
    if (q->kind == SL_API_CHAT) {
        msgs = sl_arena_calloc(q->arena, (in->n_messages ? in->n_messages : 1) * sizeof *msgs);
        for (size_t i = 0; msgs && i < in->n_messages; i++) {
            sl_role role = in->messages[i].role;
            msgs[i].role = role == SL_ROLE_SYSTEM || role == SL_ROLE_DEVELOPER ? 0 : role == SL_ROLE_ASSISTANT ? 2 : 1;
            msgs[i].content = in->messages[i].text ? in->messages[i].text : "";
        }
        r.kind = SL_SCHED_CHAT;
        r.msgs = msgs;
        r.n_msgs = in->n_messages;
    } else if (q->kind == SL_API_COMPLETIONS) {
        r.kind = SL_SCHED_COMPLETE;
        r.prompt = in->prompts[0];
    } else {
        r.kind = SL_SCHED_EMBED;
    }
    if (in->has_temperature)
        r.temperature = (float)in->temperature;
    if (in->has_top_p)
        r.top_p = (float)in->top_p;
    r.presence_penalty = (float)in->presence_penalty;
    r.frequency_penalty = (float)in->frequency_penalty;
    double x;
    if (ext_number(in, "top_k", 0, 1e6, &x))
        r.top_k = (int)x;
    if (ext_number(in, "min_p", 0, 1, &x))
        r.min_p = (float)x;
    if (ext_number(in, "repetition_penalty", 0.01, 10, &x))
        r.repetition_penalty = (float)x;
    if (in->has_seed) {
        r.seed = (uint64_t)in->seed;
        r.has_seed = true;
    }
    if (in->has_max_tokens)
        r.max_tokens = in->max_tokens > INT32_MAX ? INT32_MAX : (int)in->max_tokens;
    for (size_t i = 0; i < in->n_stop && i < SL_SCHED_MAX_STOP; i++)
        r.stop[i] = in->stop[i];

    lx->n_total = n;
    q->local_live = true;
    int rc = 0;
    int submitted = 0;
    for (int i = 0; i < n; i++) {
        sl_sched_fn fn = on_local_event;
        void *ud = q;
        if (q->kind == SL_API_EMBEDDINGS) {
            lx->slots[i] = (gw_embed_slot){.q = q, .index = i};
            r.prompt = in->inputs[i];
            fn = on_local_embed_event;
            ud = &lx->slots[i];
        }
        rc = (q->kind == SL_API_CHAT && !msgs) ? SL_ENOMEM : sl_sched_submit(sched, &r, fn, ud, &lx->ids[i], err, sizeof err);
        if (rc)
            break;
        submitted++;
    }
    if (rc == 0)
        return;
    /* the ones submitted still send their terminal events; the rest never will */
    for (int i = 0; i < submitted; i++)
        sl_sched_cancel(sched, lx->ids[i]);
    pthread_mutex_lock(&lx->lk);
    lx->n_total = submitted;
    bool all_done = lx->n_done == submitted;
    pthread_mutex_unlock(&lx->lk);
    if (all_done)
        q->local_live = false;
    lease_end(q, SL_ROUTER_NEUTRAL, -1);
    lx->finished = true;
    if (rc == SL_EINVAL)
        sl_api_error_bad_request(&e, "invalid_request", q->kind == SL_API_CHAT ? "messages" : q->kind == SL_API_EMBEDDINGS ? "input" : "prompt", "%s", err);
    else if (rc == SL_EAGAIN)
        sl_api_error_overloaded(&e, "local model %s is still loading; retry shortly", b->conf->id);
    else
        sl_api_error_internal(&e, "local model %s: %s", b->conf->id, rc == SL_ENOMEM ? "out of memory" : err);
    respond_error(q, &e, rc == SL_EAGAIN ? 2 : -1);
}

/* ---- attempts ---- */

/* Sheds the request: 503 overloaded with Retry-After, counted by reason. */
static void respond_overloaded(gw_req *q, const char *reason, const char *msg)
{
    sl_metrics_add(q->w->metrics, SL_M_REJECTED, reason, NULL, NULL, 1);
    sl_api_error e;
    sl_api_error_overloaded(&e, "%s", msg);
    respond_error(q, &e, 1);
}

/* Finds the leased backend in the request's snapshot. A lease for a backend
 * that a reload added after the request started is not in it: NULL. */
static gw_backend *lease_backend(gw_req *q, const sl_router_lease *l)
{
    const gw_group *grp = q->group;
    if (l->index < grp->n && !strcmp(grp->backends[l->index].conf->id, l->backend_id))
        return &grp->backends[l->index];
    for (size_t i = 0; i < grp->n; i++)
        if (!strcmp(grp->backends[i].conf->id, l->backend_id))
            return &grp->backends[i];
    return NULL;
}

/* Sends one attempt on a leased backend (the lease is q->lease). */
static void attempt_send(gw_req *q)
{
    gw_backend *b = lease_backend(q, &q->lease);
    if (!b) {
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        sl_api_error e;
        sl_api_error_overloaded(&e, "the configuration of model '%s' changed during the request; retry", q->model);
        respond_error(q, &e, 1);
        return;
    }
    const sl_backend_conf *bc = b->conf;
    q->backend = b;
    if (b->local) {
        if (q->attempts_in_group > 0)
            sl_metrics_add(q->w->metrics, SL_M_RETRIES, q->model, NULL, NULL, 1);
        local_send(q, b);
        return;
    }
    if (q->attempts_in_group > 0)
        sl_metrics_add(q->w->metrics, SL_M_RETRIES, q->model, NULL, NULL, 1);
    q->attempts_in_group++;
    q->attempts_total++;
    q->up_status = 0;
    q->up_retry_after = -1;
    q->up_err = 0;
    q->up_msg[0] = 0;
    q->streaming = false;
    q->got_done = false;
    q->stream_failed = false;
    q->t_attempt = sl_now_ns();
    q->t_attempt_first = 0;
    sl_buf_reset(&q->body);
    q->body.max = q->req->stream ? MAX_ERROR_BODY : SL_UPSTREAM_DEFAULT_MAX_RESPONSE;
    if (q->sse)
        sl_sse_parser_reset(q->sse); /* a retry starts a new stream; a spare's parser is kept */
    else if (q->req->stream && sl_sse_parser_create(MAX_SSE_EVENT, &q->sse) != 0) {
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        sl_api_error e;
        sl_api_error_internal(&e, "out of memory");
        respond_error(q, &e, -1);
        return;
    }

    sl_buf *ub = &q->w->scratch; /* copied by sl_upstream_start */
    sl_buf_reset(ub);
    ub->max = 64u << 20;
    size_t base_len = strlen(bc->api_base), ep_len = strlen(q->endpoint);
    char *url = sl_arena_alloc(q->arena, base_len + ep_len + 1);
    if (url) {
        memcpy(url, bc->api_base, base_len);
        memcpy(url + base_len, q->endpoint, ep_len + 1);
    }
    int rc = url ? sl_api_upstream_body(q->req, bc->model, ub) : SL_ENOMEM;
    sl_upstream_header hdr[1] = {{"X-Request-Id", q->request_id}};
    double first_byte = bc->first_byte_timeout_s > 0 ? bc->first_byte_timeout_s : bc->timeout_s;
    sl_upstream_req ur = {
        .url = url,
        .method = "POST",
        .api_key = bc->api_key,
        .body = ub->data,
        .body_len = ub->len,
        .headers = hdr,
        .n_headers = 1,
        .stream = q->req->stream,
        .connect_timeout_ms = (uint32_t)(bc->connect_timeout_s * 1000),
        .first_byte_timeout_ms = (uint32_t)(first_byte * 1000),
        .idle_timeout_ms = (uint32_t)((q->req->stream ? bc->stream_timeout_s : bc->timeout_s) * 1000),
        .total_timeout_ms = (uint32_t)(bc->timeout_s * 1000),
    };
    sl_upstream_cb cb = {.ud = q, .on_headers = on_up_headers, .on_body = on_up_body, .on_done = on_up_done};
    if (rc == 0)
        rc = sl_upstream_start(q->w->pool, &ur, &cb, &q->xfer);
    if (ub->cap > SCRATCH_KEEP_BYTES)
        sl_buf_free(ub);
    if (rc != 0) {
        lease_end(q, SL_ROUTER_NEUTRAL, -1);
        sl_api_error e;
        sl_api_error_internal(&e, "could not start the upstream request to %s: %s", bc->id, sl_strerror(rc));
        respond_error(q, &e, -1);
        return;
    }
    q->xfer_live = true;
}

/* The router ended a wait: runs on whichever thread freed capacity (or
 * noticed the timeout); hands the result to the request's worker. */
static void on_wait_done(void *ud, int status, const sl_router_lease *lease)
{
    gw_req *q = ud;
    gw_worker *w = q->w;
    pthread_mutex_lock(&w->wake_lock);
    q->wait_status = status;
    if (status == 0)
        q->wait_lease = *lease;
    bool closing = w->closing;
    if (!closing) {
        q->wake_next = w->wake_head;
        w->wake_head = q;
        uv_async_send(&w->wake);
    }
    pthread_mutex_unlock(&w->wake_lock);
    if (closing && status == 0) {
        /* the worker is gone: give the capacity back; the request dies with the worker */
        sl_router_lease l = *lease;
        sl_router_release(q->g->router, &l, NULL);
    }
}

/* A wait ended for q, on its worker. */
static void wait_finished(gw_req *q)
{
    q->waiting = false;
    int status = q->wait_status;
    if (status == 0) {
        q->lease = q->wait_lease;
        if (!q->http) { /* the client left while the grant was on its way */
            lease_end(q, SL_ROUTER_NEUTRAL, -1);
            return;
        }
        sl_metrics_observe(q->w->metrics, SL_M_QUEUE_WAIT, q->model, NULL, NULL, q->lease.queued_ms / 1000.0);
        attempt_send(q);
        return;
    }
    if (!q->http)
        return;
    if (status == SL_ETIMEDOUT && next_fallback(q)) {
        attempt_start(q);
        return;
    }
    char msg[SL_ROUTER_NAME_MAX + 160];
    if (status == SL_ETIMEDOUT) {
        snprintf(msg, sizeof msg, "no backend of model '%s' had capacity within the queue timeout; retry later",
                 q->model);
        respond_overloaded(q, "queue_timeout", msg);
    } else {
        snprintf(msg, sizeof msg, "model '%s' was reconfigured while the request waited; retry", q->model);
        respond_overloaded(q, "reconfigured", msg);
    }
}

static void on_wake(uv_async_t *a)
{
    gw_worker *w = a->data;
    pthread_mutex_lock(&w->wake_lock);
    gw_req *list = w->wake_head;
    w->wake_head = NULL;
    pthread_mutex_unlock(&w->wake_lock);
    while (list) {
        gw_req *q = list;
        list = q->wake_next;
        q->busy++;
        if (q->waiting)
            wait_finished(q);
        else
            local_drain(q);
        q->busy--;
        req_maybe_free(q);
    }
}

/* Asks the router for a backend of q->group: sends at once, queues, or sheds. */
static void attempt_start(gw_req *q)
{
    for (;;) {
        const char *exclude = q->last_failed ? q->last_failed->conf->id : NULL;
        uint64_t ticket = 0;
        int rc;
        if (q->attempts_in_group > 0) {
            /* a retry does not queue: when no backend has room now (the failed
             * one paused itself with Retry-After, say), the client gets the
             * last attempt's answer */
            rc = sl_router_acquire(q->g->router, q->group->name, exclude, sl_rand_unit(), &q->lease);
            if (rc == SL_EAGAIN) {
                respond_last_failure(q);
                return;
            }
        } else {
            rc = sl_router_acquire_or_wait(q->g->router, q->group->name, exclude, sl_rand_unit(), on_wait_done, q,
                                           &q->lease, &ticket);
        }
        if (rc == 0) {
            attempt_send(q);
            return;
        }
        if (rc == SL_EAGAIN) {
            q->waiting = true;
            q->ticket = ticket;
            return;
        }
        if (rc == SL_EFULL && next_fallback(q))
            continue;
        char msg[SL_ROUTER_NAME_MAX + 160];
        if (rc == SL_EFULL) {
            snprintf(msg, sizeof msg, "every backend of model '%s' is at capacity and its queue is full; retry later",
                     q->model);
            respond_overloaded(q, "queue_full", msg);
        } else {
            snprintf(msg, sizeof msg, "model '%s' cannot be routed right now (%s); retry", q->model, sl_strerror(rc));
            respond_overloaded(q, "unroutable", msg);
        }
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

/* Finished requests kept per worker for reuse, each with its arena, so that
 * a request allocates neither its struct nor its first arena block. */
#define MAX_SPARE_REQS 256
#define SPARE_BUF_MAX (64u << 10) /* a spare keeps body and out buffers up to this capacity */

/* A zeroed request, with an arena: a spare, or new. NULL when out of memory. */
static gw_req *req_new(gw_worker *w)
{
    gw_req *q = w->spare;
    if (q) {
        w->spare = q->spare_next;
        w->n_spare--;
        sl_arena *a = q->arena;
        sl_buf body = q->body, out = q->out;
        sl_sse_parser *sse = q->sse;
        memset(q, 0, sizeof *q);
        q->arena = a;
        q->body = body;
        q->out = out;
        q->sse = sse;
        return q;
    }
    q = sl_calloc(1, sizeof *q);
    if (q && !(q->arena = sl_arena_create(16384))) {
        sl_free(q);
        q = NULL;
    }
    return q;
}

/* Frees what a request owns for good (not kept by a spare). */
static void req_destroy(gw_req *q)
{
    sl_sse_parser_destroy(q->sse);
    sl_buf_free(&q->body);
    sl_buf_free(&q->out);
    sl_arena_destroy(q->arena);
    sl_free(q);
}

static void req_free(gw_worker *w, gw_req *q)
{
    if (w->n_spare < MAX_SPARE_REQS) {
        sl_arena_reset(q->arena);
        sl_buf_keep(&q->body, SPARE_BUF_MAX);
        sl_buf_keep(&q->out, SPARE_BUF_MAX);
        q->spare_next = w->spare;
        w->spare = q;
        w->n_spare++;
        return;
    }
    req_destroy(q);
}

static void req_maybe_free(gw_req *q)
{
    if (q->http || q->xfer_live || q->timer_closing || q->busy || q->waiting || q->local_live)
        return;
    if (q->timer_live) {
        uv_timer_stop(&q->timer);
        q->timer_closing = true;
        uv_close((uv_handle_t *)&q->timer, on_timer_closed);
        return;
    }
    if (q->counted_inflight)
        atomic_fetch_sub(&q->g->inflight, 1);
    localx_free(q->lx);
    sl_request_release(q->req);
    snap_release(q->snap);
    req_free(q->w, q);
}

static void on_client_gone(void *ud)
{
    gw_req *q = ud;
    q->http = NULL;
    q->client_gone = true;
    if (!q->status)
        q->status = 499;
    q->error_code = "client_closed";
    if (q->waiting && sl_router_cancel_wait(q->g->router, q->ticket) == 0)
        q->waiting = false; /* else the grant is on its way: wait_finished gives it back */
    cancel_xfer(q, "cancelled", SL_ROUTER_NEUTRAL);
    local_cancel(q);
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
    q->group = q->group0 = snap_group(q->snap, q->req->model);
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
    /* a spare's buffers are kept (empty); a new request's are still unallocated */
    q->body.max = SL_UPSTREAM_DEFAULT_MAX_RESPONSE;
    q->out.max = MAX_SSE_EVENT + 1024;
    sl_http_req_on_gone(q->http, on_client_gone, q);
    sl_router_note_request(g->router);
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

/* Ready when some backend can be picked: not ejected and not marked down. */
static bool gateway_ready(sl_gateway *g)
{
    size_t n = 0;
    sl_router_snapshot(g->router, NULL, 0, &n);
    if (n == 0)
        return false;
    sl_router_backend_state *st = sl_malloc(n * sizeof *st);
    if (!st)
        return false;
    size_t got = 0;
    sl_router_snapshot(g->router, st, n, &got);
    bool ready = false;
    for (size_t i = 0; i < got && i < n && !ready; i++)
        ready = st[i].state != SL_ROUTER_OPEN;
    sl_free(st);
    return ready;
}

static const char *circuit_name(sl_router_circuit c)
{
    return c == SL_ROUTER_OPEN ? "open" : c == SL_ROUTER_HALF_OPEN ? "half_open" : "closed";
}

/* GET /admin/backends: the router's view of every backend, as JSON. */
static void handle_admin_backends(gw_req *q)
{
    sl_router *r = q->g->router;
    size_t n = 0;
    sl_router_snapshot(r, NULL, 0, &n);
    sl_router_backend_state *st = sl_calloc(n ? n : 1, sizeof *st);
    size_t ng = 0;
    sl_router_group_stats_get(r, NULL, 0, &ng);
    sl_router_group_stats *gs = sl_calloc(ng ? ng : 1, sizeof *gs);
    json_t *o = json_object(), *arr = json_array(), *garr = json_array();
    if (!st || !gs || !o || !arr || !garr) {
        sl_free(st);
        sl_free(gs);
        json_decref(o);
        json_decref(arr);
        json_decref(garr);
        sl_api_error e;
        sl_api_error_internal(&e, "out of memory");
        respond_error(q, &e, -1);
        return;
    }
    size_t got;
    sl_router_snapshot(r, st, n, &got);
    n = got < n ? got : n; /* a reload in between may change the count */
    sl_router_group_stats_get(r, gs, ng, &got);
    ng = got < ng ? got : ng;
    for (size_t i = 0; i < n; i++) {
        const sl_router_backend_state *b = &st[i];
        json_t *e = json_pack("{s:s, s:s, s:s, s:b, s:b, s:i, s:i, s:f, s:f, s:f, s:f, s:i, s:I, s:i, s:f, s:f, s:I, s:I}",
                              "id", b->id, "model", b->group, "state", circuit_name(b->state), "unhealthy",
                              b->unhealthy, "probing", b->probing, "in_flight", b->in_flight, "limit_now",
                              b->limit_now, "weight", b->weight, "weight_now", b->effective_weight, "ramp",
                              b->ramp_factor, "ewma_ttft_ms", b->ewma_ttft_ms, "consecutive_failures",
                              b->consecutive_failures, "ejections", (json_int_t)b->ejections, "eject_level",
                              b->eject_level, "ejected_ms_left", b->ejected_ms_left, "paused_ms_left",
                              b->paused_ms_left, "requests", (json_int_t)b->requests, "failures",
                              (json_int_t)b->failures);
        if (e)
            json_array_append_new(arr, e);
    }
    for (size_t i = 0; i < ng; i++) {
        const sl_router_group_stats *x = &gs[i];
        json_t *e = json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}", "model", x->name,
                              "strategy", sl_router_strategy_name(x->strategy), "queue_depth", x->queue_depth,
                              "queue_max", x->queue_max, "enqueued", (json_int_t)x->enqueued, "granted",
                              (json_int_t)x->granted, "rejected_full", (json_int_t)x->rejected_full, "timed_out",
                              (json_int_t)x->timed_out, "cancelled", (json_int_t)x->cancelled, "wait_ms_sum",
                              x->wait_ms_sum, "wait_ms_max", x->wait_ms_max, "ejections_refused",
                              (json_int_t)x->ejections_refused);
        if (e)
            json_array_append_new(garr, e);
    }
    sl_router_budget_stats bs;
    sl_router_retry_budget_stats(r, &bs);
    json_object_set_new(o, "backends", arr);
    json_object_set_new(o, "groups", garr);
    json_object_set_new(o, "retry_budget",
                        json_pack("{s:I, s:I, s:I, s:I}", "requests_in_window", (json_int_t)bs.requests_in_window,
                                  "retries_in_window", (json_int_t)bs.retries_in_window, "granted",
                                  (json_int_t)bs.granted, "denied", (json_int_t)bs.denied));
    json_object_set_new(o, "in_flight", json_integer(sl_gateway_inflight(q->g)));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    sl_free(st);
    sl_free(gs);
    if (!text) {
        sl_api_error e;
        sl_api_error_internal(&e, "out of memory");
        respond_error(q, &e, -1);
        return;
    }
    respond_json(q, 200, text, strlen(text), NULL, 0);
    free(text); /* jansson's allocator */
}

static void on_request(void *ud, sl_http_req *r)
{
    sl_gateway *g = ud;
    gw_worker *w = sl_http_worker_data(sl_http_req_worker(r));
    gw_req *q = req_new(w);
    sl_arena *arena = q ? q->arena : NULL;
    if (!arena) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                  "\"param\":null,\"code\":\"internal_error\"}}";
        sl_http_respond(r, 500, "application/json", NULL, 0, oom, sizeof oom - 1);
        return;
    }
    q->g = g;
    q->w = w;
    q->http = r;
    q->busy = 1; /* released at the end of on_request */
    q->t_start = sl_now_ns();
    q->snap = snap_get(g);
    set_request_id(q, r);

    sl_str m = sl_http_req_method(r);
    sl_str path = sl_http_req_path(r);
    bool get = sl_str_eq_c(m, "GET") || sl_str_eq_c(m, "HEAD");
    bool post = sl_str_eq_c(m, "POST");
    sl_api_error e;

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
            q->endpoint = sl_arena_strndup(arena, path.p, path.n);
            sl_api_error_method_not_allowed(&e, sl_arena_strndup(arena, m.p, m.n), q->endpoint);
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

    /* only the paths proxied above are hot: copies for the log and errors here */
    char *mstr = sl_arena_strndup(arena, m.p, m.n);
    char *pstr = sl_arena_strndup(arena, path.p, path.n);
    q->endpoint = pstr;
    bool known = true;
    if (get && sl_str_eq_c(path, "/healthz")) {
        static const char ok[] = "{\"status\":\"ok\"}";
        respond_json(q, 200, ok, sizeof ok - 1, NULL, 0);
    } else if (get && sl_str_eq_c(path, "/readyz")) {
        char lid[SL_ROUTER_NAME_MAX];
        if (locals_loading(g, lid, sizeof lid)) {
            sl_api_error_overloaded(&e, "not ready: local model %s is loading", lid);
            respond_error(q, &e, 1);
        } else if (gateway_ready(g)) {
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
    } else if (get && sl_str_eq_c(path, "/admin/backends")) {
        bool found;
        if (key_ok(q->snap->cfg, sl_http_req_header(r, "authorization", &found))) {
            handle_admin_backends(q);
        } else {
            sl_api_error_unauthorized(&e, "missing or invalid API key: send 'Authorization: Bearer <key>'");
            respond_error(q, &e, -1);
        }
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
                sl_str_eq_c(path, "/admin/backends") ||
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
    if (rc == 0 && w->metrics)
        rc = uv_async_init(sl_http_worker_loop(hw), &w->wake, on_wake) ? SL_EIO : 0;
    if (rc || !w->metrics) {
        sl_upstream_pool_destroy(w->pool);
        sl_free(w);
        return rc ? rc : SL_ENOMEM;
    }
    w->wake.data = w;
    pthread_mutex_init(&w->wake_lock, NULL);
    sl_http_worker_set_data(hw, w);
    pthread_mutex_lock(&g->lock);
    w->next_all = g->workers;
    g->workers = w;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* The worker struct itself stays until the gateway goes: an engine may still
 * deliver an event for one of its requests (then dropped: w->closing). */
static void on_wake_closed(uv_handle_t *h) { (void)h; }

static void on_worker_stop(void *ud, sl_http_worker *hw)
{
    (void)ud;
    gw_worker *w = sl_http_worker_data(hw);
    if (!w)
        return;
    /* grants already on the list are handled; later ones are given back by on_wait_done */
    pthread_mutex_lock(&w->wake_lock);
    w->closing = true;
    pthread_mutex_unlock(&w->wake_lock);
    on_wake(&w->wake);
    sl_upstream_pool_destroy(w->pool);
    w->pool = NULL;
    sl_http_worker_set_data(hw, NULL);
    uv_close((uv_handle_t *)&w->wake, on_wake_closed);
}

/* ---- the regulator thread: router ticks and active health checks ---- */

typedef struct hc_probe {
    struct hc_probe *next;  /* g->hc_live */
    CURL *easy;
    sl_gateway *g;
    size_t slot; /* index into g->hc */
    struct curl_slist *headers;
    char url[2048];
} hc_probe;

static size_t hc_discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static hc_state *hc_slot(sl_gateway *g, const char *id, size_t *slot)
{
    for (size_t i = 0; i < g->n_hc; i++)
        if (!strcmp(g->hc[i].id, id)) {
            *slot = i;
            return &g->hc[i];
        }
    if (g->n_hc >= HC_MAX_BACKENDS)
        return NULL;
    hc_state *n = sl_realloc(g->hc, (g->n_hc + 1) * sizeof *n);
    if (!n)
        return NULL;
    g->hc = n;
    memset(&n[g->n_hc], 0, sizeof *n);
    snprintf(n[g->n_hc].id, sizeof n[g->n_hc].id, "%s", id);
    *slot = g->n_hc;
    return &g->hc[g->n_hc++];
}

/* Starts one GET per openai backend; returns how many started. */
static int hc_start_round(sl_gateway *g)
{
    gw_snapshot *s = snap_get(g);
    const sl_router_conf *rc = &s->cfg->router;
    int started = 0;
    for (size_t i = 0; rc->health_check_path && i < s->n_groups; i++) {
        for (size_t j = 0; j < s->groups[i].n; j++) {
            const sl_backend_conf *b = s->groups[i].backends[j].conf;
            size_t slot;
            if (b->provider != SL_PROVIDER_OPENAI || !hc_slot(g, b->id, &slot))
                continue;
            hc_probe *p = sl_calloc(1, sizeof *p);
            CURL *e = p ? curl_easy_init() : NULL;
            if (!e) {
                sl_free(p);
                continue;
            }
            p->g = g;
            p->slot = slot;
            snprintf(p->url, sizeof p->url, "%s%s", b->api_base, rc->health_check_path);
            curl_easy_setopt(e, CURLOPT_URL, p->url);
            curl_easy_setopt(e, CURLOPT_PRIVATE, p);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_PROXY, "");
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(rc->health_check_timeout_s * 1000));
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(rc->health_check_timeout_s * 1000));
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hc_discard);
            curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
            if (b->api_key) {
                char auth[1024];
                snprintf(auth, sizeof auth, "Authorization: Bearer %s", b->api_key);
                p->headers = curl_slist_append(NULL, auth);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers);
            }
            p->easy = e;
            p->next = g->hc_live;
            g->hc_live = p;
            curl_multi_add_handle(g->hc_multi, e);
            started++;
        }
    }
    snap_release(s);
    return started;
}


/* Ends one check: unlinks, removes from the multi handle, frees. */
static void hc_probe_free(sl_gateway *g, hc_probe *p)
{
    for (hc_probe **pp = &g->hc_live; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    curl_multi_remove_handle(g->hc_multi, p->easy);
    curl_easy_cleanup(p->easy);
    curl_slist_free_all(p->headers);
    sl_free(p);
}

/* Collects finished health checks and turns verdicts into router calls. */
static void hc_collect(sl_gateway *g)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g->hc_multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        hc_probe *p = NULL;
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&p);
        if (!p)
            continue;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        bool ok = m->data.result == CURLE_OK && status >= 200 && status < 300;
        if (p->slot < g->n_hc) {
            hc_state *h = &g->hc[p->slot];
            if (ok) {
                h->fails = 0;
                if (h->down) {
                    h->down = false;
                    sl_info("health check: %s answers again; ramping it up", h->id);
                    sl_router_mark_healthy(g->router, h->id);
                }
            } else if (++h->fails >= HC_UNHEALTHY_AFTER && !h->down) {
                h->down = true;
                sl_warn("health check: %s failed %d checks in a row (%s); taking it out", h->id, h->fails,
                        m->data.result != CURLE_OK ? curl_easy_strerror(m->data.result) : "HTTP status not 2xx");
                sl_router_mark_unhealthy(g->router, h->id);
            }
        }
        hc_probe_free(g, p);
    }
}

static void *regulator_main(void *arg)
{
    sl_gateway *g = arg;
    uint64_t next_round = 0;
    int running = 0;
    while (!atomic_load(&g->reg_stop)) {
        locals_poll(g);
        sl_router_tick(g->router);
        gw_snapshot *s = snap_get(g);
        bool checks = s->cfg->router.health_check_path != NULL;
        uint64_t interval = (uint64_t)(s->cfg->router.health_check_interval_s * 1000);
        snap_release(s);
        uint64_t now = sl_now_ms();
        if (checks && running == 0 && now >= next_round) {
            hc_start_round(g);
            next_round = now + interval;
        }
        /* waits up to one tick, or until a check's socket has news */
        curl_multi_poll(g->hc_multi, NULL, 0, TICK_MS, NULL);
        curl_multi_perform(g->hc_multi, &running);
        hc_collect(g);
    }
    return NULL;
}

/* ---- metrics ---- */

static int put_family(sl_buf *out, const char *name, const char *type, const char *help)
{
    return sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int put_sample(sl_buf *out, const char *name, const char *l1, const char *v1, const char *l2, const char *v2,
                      double v)
{
    int rc = sl_buf_appendf(out, "%s{%s=\"", name, l1);
    if (!rc)
        rc = sl_metrics_put_label_value(out, v1);
    if (!rc && l2) {
        rc = sl_buf_appendf(out, "\",%s=\"", l2);
        if (!rc)
            rc = sl_metrics_put_label_value(out, v2);
    }
    if (!rc)
        rc = sl_buf_appendf(out, "\"} %.17g\n", v);
    return rc;
}

/* The router's gauges and counters, read at scrape time. */
static int render_router(void *ud, sl_buf *out)
{
    sl_gateway *g = ud;
    size_t n = 0, ng = 0, got;
    sl_router_snapshot(g->router, NULL, 0, &n);
    sl_router_group_stats_get(g->router, NULL, 0, &ng);
    sl_router_backend_state *st = sl_calloc(n ? n : 1, sizeof *st);
    sl_router_group_stats *gs = sl_calloc(ng ? ng : 1, sizeof *gs);
    if (!st || !gs) {
        sl_free(st);
        sl_free(gs);
        return SL_ENOMEM;
    }
    sl_router_snapshot(g->router, st, n, &got);
    n = got < n ? got : n;
    sl_router_group_stats_get(g->router, gs, ng, &got);
    ng = got < ng ? got : ng;
    int rc = put_family(out, "sluice_queue_depth", "gauge", "Requests waiting in a model group's admission queue.");
    for (size_t i = 0; i < ng && !rc; i++)
        rc = put_sample(out, "sluice_queue_depth", "model", gs[i].name, NULL, NULL, gs[i].queue_depth);
    if (!rc)
        rc = put_family(out, "sluice_queue_requests_total", "counter",
                        "Requests that entered an admission queue, by how the wait ended.");
    for (size_t i = 0; i < ng && !rc; i++) {
        static const char *const how[] = {"enqueued", "granted", "timed_out", "cancelled", "rejected_full"};
        uint64_t v[] = {gs[i].enqueued, gs[i].granted, gs[i].timed_out, gs[i].cancelled, gs[i].rejected_full};
        for (size_t k = 0; k < SL_ARRAY_LEN(how) && !rc; k++)
            rc = put_sample(out, "sluice_queue_requests_total", "model", gs[i].name, "result", how[k], (double)v[k]);
    }
    if (!rc)
        rc = put_family(out, "sluice_backend_state", "gauge",
                        "Circuit state of each backend (1 for the current state): closed, open (ejected or "
                        "unhealthy), half_open (ramping up or probing).");
    for (size_t i = 0; i < n && !rc; i++) {
        static const sl_router_circuit all[] = {SL_ROUTER_CLOSED, SL_ROUTER_OPEN, SL_ROUTER_HALF_OPEN};
        for (size_t k = 0; k < 3 && !rc; k++)
            rc = put_sample(out, "sluice_backend_state", "backend", st[i].id, "state", circuit_name(all[k]),
                            st[i].state == all[k]);
    }
    struct {
        const char *name, *type, *help;
    } fam[] = {
        {"sluice_backend_in_flight", "gauge", "Attempts in flight per backend."},
        {"sluice_backend_concurrency_limit", "gauge", "Concurrency limit now, after the slow-start ramp (0 = none)."},
        {"sluice_backend_weight", "gauge", "Effective weight now (configured weight x ramp)."},
        {"sluice_backend_ttft_ewma_seconds", "gauge", "Peak-EWMA of time to first token, decayed to now."},
        {"sluice_backend_ejections_total", "counter", "Outlier ejections per backend."},
    };
    for (size_t f = 0; f < SL_ARRAY_LEN(fam) && !rc; f++) {
        rc = put_family(out, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n && !rc; i++) {
            double v = f == 0   ? st[i].in_flight
                       : f == 1 ? st[i].limit_now
                       : f == 2 ? st[i].effective_weight
                       : f == 3 ? st[i].ewma_ttft_ms / 1000
                                : (double)st[i].ejections;
            rc = put_sample(out, fam[f].name, "backend", st[i].id, NULL, NULL, v);
        }
    }
    sl_router_budget_stats bs;
    sl_router_retry_budget_stats(g->router, &bs);
    if (!rc)
        rc = put_family(out, "sluice_retry_budget_total", "counter",
                        "Retries the gateway-wide retry budget granted and denied.");
    if (!rc)
        rc = put_sample(out, "sluice_retry_budget_total", "result", "granted", NULL, NULL, (double)bs.granted);
    if (!rc)
        rc = put_sample(out, "sluice_retry_budget_total", "result", "denied", NULL, NULL, (double)bs.denied);
    sl_free(st);
    sl_free(gs);
    return rc;
}

/* The local engines' gauges and counters (names in the style of vLLM's). */
static int render_locals(void *ud, sl_buf *out)
{
    sl_gateway *g = ud;
    enum { MAXL = 64 };
    char ids[MAXL][SL_ROUTER_NAME_MAX];
    sl_sched_stats st[MAXL];
    int n = 0;
    pthread_mutex_lock(&g->lock);
    for (gw_local *l = g->locals; l && n < MAXL; l = l->next) {
        if (l->failed || sl_sched_state(l->sched, NULL, 0) != 0)
            continue;
        snprintf(ids[n], sizeof ids[n], "%s", l->id);
        sl_sched_stats_get(l->sched, &st[n]);
        n++;
    }
    pthread_mutex_unlock(&g->lock);
    if (n == 0)
        return 0;
    struct {
        const char *name, *type, *help;
    } fam[] = {
        {"sluice_engine_running_sequences", "gauge", "Sequences in the running batch of a local model."},
        {"sluice_engine_waiting_sequences", "gauge", "Sequences waiting for admission to the batch."},
        {"sluice_engine_prompt_tokens_total", "counter", "Prompt tokens of admitted requests."},
        {"sluice_engine_prefix_cache_hit_tokens_total", "counter", "Prompt tokens served from cached KV blocks."},
        {"sluice_engine_prefix_cache_hit_rate", "gauge", "Share of prompt tokens served from the prefix cache."},
        {"sluice_engine_prefill_tokens_total", "counter", "Tokens computed in prefill (and recomputation)."},
        {"sluice_engine_decode_tokens_total", "counter", "Tokens computed in decode steps."},
        {"sluice_engine_prefill_seconds_total", "counter", "Time of steps holding prefill tokens."},
        {"sluice_engine_decode_seconds_total", "counter", "Time of decode-only steps."},
        {"sluice_engine_preemptions_total", "counter", "Sequences preempted when KV blocks ran out."},
        {"sluice_engine_requests_total", "counter", "Requests the engine finished."},
    };
    int rc = 0;
    for (size_t f = 0; f < SL_ARRAY_LEN(fam) && !rc; f++) {
        rc = put_family(out, fam[f].name, fam[f].type, fam[f].help);
        for (int i = 0; i < n && !rc; i++) {
            const sl_sched_stats *x = &st[i];
            double v[] = {x->running, x->waiting, (double)x->prompt_tokens, (double)x->prefix_hit_tokens,
                          x->prompt_tokens ? (double)x->prefix_hit_tokens / (double)x->prompt_tokens : 0,
                          (double)x->prefill_tokens, (double)x->decode_tokens, x->prefill_ms / 1000,
                          x->decode_ms / 1000, (double)x->preemptions, (double)x->requests_done};
            rc = put_sample(out, fam[f].name, "backend", ids[i], NULL, NULL, v[f]);
        }
    }
    if (!rc)
        rc = put_family(out, "sluice_engine_kv_blocks", "gauge",
                        "KV cache blocks: used by sequences, cached (free, holding a reusable prefix), free.");
    for (int i = 0; i < n && !rc; i++) {
        const sl_sched_stats *x = &st[i];
        int free_blocks = x->kv_blocks_total - x->kv_blocks_used - x->kv_blocks_cached;
        rc = put_sample(out, "sluice_engine_kv_blocks", "backend", ids[i], "state", "used", x->kv_blocks_used);
        if (!rc)
            rc = put_sample(out, "sluice_engine_kv_blocks", "backend", ids[i], "state", "cached", x->kv_blocks_cached);
        if (!rc)
            rc = put_sample(out, "sluice_engine_kv_blocks", "backend", ids[i], "state", "free",
                            free_blocks > 0 ? free_blocks : 0);
    }
    if (!rc)
        rc = put_family(out, "sluice_engine_batch_tokens", "histogram", "Tokens per engine step (batch size).");
    for (int i = 0; i < n && !rc; i++) {
        static const char *const le[9] = {"1", "2", "4", "8", "16", "32", "64", "128", "+Inf"};
        int64_t cum = 0;
        for (int k = 0; k < 9 && !rc; k++) {
            cum += st[i].batch_hist[k];
            rc = sl_buf_appendf(out, "sluice_engine_batch_tokens_bucket{backend=\"");
            if (!rc)
                rc = sl_metrics_put_label_value(out, ids[i]);
            if (!rc)
                rc = sl_buf_appendf(out, "\",le=\"%s\"} %lld\n", le[k], (long long)cum);
        }
        if (!rc)
            rc = put_sample(out, "sluice_engine_batch_tokens_sum", "backend", ids[i], NULL, NULL,
                            (double)(st[i].prefill_tokens + st[i].decode_tokens));
        if (!rc)
            rc = put_sample(out, "sluice_engine_batch_tokens_count", "backend", ids[i], NULL, NULL, (double)cum);
    }
    return rc;
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
    sl_router_opts o;
    router_opts_from(cfg, &o);
    char err[256];
    int rc = sl_upstream_global_init();
    if (rc == 0 && (rc = sl_router_create(&o, NULL, NULL, &g->router, err, sizeof err)) != 0)
        sl_error("%s", err);
    if (rc == 0)
        rc = snap_build(g, cfg, &g->snap);
    if (rc == 0 && (rc = router_install(g->router, g->snap)) != 0) {
        g->snap->cfg = NULL; /* the caller keeps its reference on failure */
        snap_free_tables(g->snap);
        g->snap = NULL;
    }
    if (rc == 0)
        locals_hold_loading(g);
    if (rc == 0)
        rc = (g->hc_multi = curl_multi_init()) ? 0 : SL_ENOMEM;
    if (rc == 0)
        rc = pthread_create(&g->reg_thread, NULL, regulator_main, g) ? SL_ENOMEM : 0;
    if (rc) {
        if (g->snap) {
            g->snap->cfg = NULL;
            snap_free_tables(g->snap);
        }
        if (g->hc_multi)
            curl_multi_cleanup(g->hc_multi);
        sl_router_destroy(g->router);
        pthread_mutex_destroy(&g->lock);
        sl_free(g);
        return rc;
    }
    g->reg_started = true;
    g->handlers = (sl_http_handlers){
        .ud = g, .on_worker_start = on_worker_start, .on_worker_stop = on_worker_stop, .on_request = on_request,
        .render_error = render_error};
    sl_metrics_gauge_fn(metrics, "sluice_requests_in_flight", "Proxied requests in flight.", gauge_inflight, g);
    sl_metrics_section_fn(metrics, render_router, g);
    sl_metrics_section_fn(metrics, render_locals, g);
    *out = g;
    return 0;
}

void sl_gateway_destroy(sl_gateway *g)
{
    if (!g)
        return;
    if (g->reg_started) {
        atomic_store(&g->reg_stop, true);
        curl_multi_wakeup(g->hc_multi);
        pthread_join(g->reg_thread, NULL);
    }
    /* health checks still running are abandoned */
    while (g->hc_live)
        hc_probe_free(g, g->hc_live);
    /* engines first: their last events go to workers that must still exist */
    for (gw_local *l = g->locals, *n; l; l = n) {
        n = l->next;
        sl_sched_destroy(l->sched);
        sl_free(l->id);
        sl_free(l->model_path);
        sl_free(l->chat_template);
        sl_free(l);
    }
    for (gw_worker *w = g->workers, *n; w; w = n) {
        n = w->next_all;
        while (w->spare) {
            gw_req *q = w->spare;
            w->spare = q->spare_next;
            req_destroy(q);
        }
        sl_buf_free(&w->scratch);
        series_cache_free(w->series);
        pthread_mutex_destroy(&w->wake_lock);
        sl_free(w);
    }
    curl_multi_cleanup(g->hc_multi);
    sl_free(g->hc);
    sl_router_destroy(g->router);
    snap_release(g->snap);
    pthread_mutex_destroy(&g->lock);
    sl_free(g);
}

int sl_gateway_reload(sl_gateway *g, sl_config *cfg)
{
    gw_snapshot *s;
    int rc = snap_build(g, cfg, &s);
    if (rc)
        return rc;
    if ((rc = router_install(g->router, s)) != 0) {
        s->cfg = NULL;
        snap_free_tables(s);
        return rc;
    }
    locals_hold_loading(g);
    sl_router_opts now, next;
    router_opts_from(g->snap->cfg, &now);
    router_opts_from(cfg, &next);
    now.default_strategy = next.default_strategy; /* not compared: see below */
    if (memcmp(&now, &next, sizeof now))
        sl_warn("reload: router_settings for queues, ejection, slow start, retry budget and latency take effect "
                "at the next restart; model groups, weights, limits and per-group settings apply now");
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
