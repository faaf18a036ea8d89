/*
 * The router: backend choice, admission queue, outlier ejection, slow start
 * and the retry budget. See router.h for the behaviour; this file keeps the
 * invariants:
 *
 *   - r->mu guards every group, backend and waiter; r->budget_mu guards the
 *     retry budget. Nothing else is shared.
 *   - A backend (rbk) is referenced by the group that lists it (one ref) and
 *     by each lease (one ref each). It is freed when refs reach 0, so a lease
 *     stays valid across a reconfiguration that removed its backend.
 *   - A waiter is in exactly one group's queue, or on a local "fire" list
 *     between being removed under the lock and its callback after the
 *     unlock; the router frees it right after the callback returns.
 *   - The queue is served strictly in order: while a group has waiters, a
 *     fresh acquire gets SL_EAGAIN, and capacity goes to the head first.
 */
#include "gateway/router.h"

#include "core/core.h"
#include "gateway/policy.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUDGET_BUCKETS 10

typedef struct rgroup rgroup;

typedef struct rbk {
    char *id;
    int refs;
    rgroup *group;           /* NULL once reconfiguration removed it */
    size_t index;            /* position in group */
    double weight;
    int max_conc;            /* 0 = unlimited */
    int inflight;
    double ewma;             /* ms, peak-EWMA of TTFT at ewma_at */
    uint64_t ewma_at;
    bool has_ewma;
    int streak;              /* consecutive failures */
    int connect_streak;      /* consecutive CONNECT failures */
    bool no_ramp;            /* conf.no_slow_start */
    uint64_t ejections;
    int eject_level;
    uint64_t ejected_until;  /* ms; ejected while now < ejected_until */
    bool probing;
    bool unhealthy;
    uint64_t paused_until;
    bool ramping;
    uint64_t ramp_start;
    double rr_current;       /* smooth weighted round-robin accumulator */
    uint64_t requests, failures;
} rbk;

typedef struct rwaiter {
    uint64_t ticket;
    sl_router_wait_fn fn;
    void *ud;
    char *exclude;
    uint64_t enq_at, deadline;
    int status;
    sl_router_lease lease;
    struct rwaiter *prev, *next;
} rwaiter;

struct rgroup {
    char *name;
    sl_router_strategy strategy; /* resolved */
    int queue_max;
    double queue_timeout_ms;
    rbk **bks;
    size_t n;
    double *w;               /* scratch, n entries, under r->mu */
    bool *ok;
    size_t *cand;
    rwaiter *qhead, *qtail;
    int depth;
    uint64_t enqueued, granted, rejected_full, timed_out, cancelled, ejections_refused;
    double wait_ms_sum, wait_ms_max;
};

typedef struct budget_bucket {
    uint64_t epoch;          /* now / bucket_ms of the bucket's interval */
    uint64_t requests, retries;
} budget_bucket;

struct sl_router {
    pthread_mutex_t mu;
    sl_router_opts o;
    sl_clock_fn clock;
    void *clock_ud;
    rgroup **groups;
    size_t n_groups;
    bool configured;         /* set_groups succeeded once */
    uint64_t next_ticket;
    uint64_t rng;

    pthread_mutex_t budget_mu;
    budget_bucket buckets[BUDGET_BUCKETS];
    uint64_t budget_granted, budget_denied;
};

/* ---- small helpers ---- */

static void set_err(char *err, size_t cap, const char *fmt, ...) SL_PRINTF(3, 4);
static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Three reads per request: the coarse clock costs a few ns where the fine
 * one costs tens. Its tick-sized steps (1-10 ms) are small next to what the
 * router times: queue waits, ejections, ramps and decays of seconds. */
static uint64_t default_clock(void *ud)
{
    SL_UNUSED(ud);
    return sl_now_ms_coarse();
}

static uint64_t now_ms(sl_router *r) { return r->clock(r->clock_ud); }

/* xorshift64*: the draws for picks made on behalf of queued waiters. */
static double rng_unit(sl_router *r)
{
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

static double clamp_unit(double u)
{
    if (!(u >= 0))
        return 0;
    if (u >= 1)
        return nextafter(1.0, 0.0);
    return u;
}

/* ---- options ---- */

void sl_router_opts_default(sl_router_opts *o)
{
    memset(o, 0, sizeof *o);
    o->default_strategy = SL_ROUTER_STRATEGY_LATENCY;
    o->queue_max = 100;
    o->queue_timeout_ms = 10000;
    o->eject_consecutive = 5;
    o->eject_connect_consecutive = 1;
    o->eject_base_ms = 30000;
    o->eject_max_ms = 300000;
    o->max_ejection_percent = 50;
    o->slow_start_window_ms = 30000;
    o->slow_start_floor = 0.1;
    o->slow_start_curve = SL_ROUTER_RAMP_LINEAR;
    o->slow_start_aggression = 2;
    o->slow_start_initial = false;
    o->pause_max_ms = 60000;
    o->ewma_decay_ms = 10000;
    o->retry_budget_ratio = 0.2;
    o->retry_budget_min_per_s = 10;
    o->retry_budget_window_ms = 10000;
    o->seed = 0;
}

int sl_router_opts_validate(const sl_router_opts *o, char *err, size_t errcap)
{
    if (o->default_strategy < SL_ROUTER_STRATEGY_LATENCY || o->default_strategy > SL_ROUTER_STRATEGY_LEAST_OUTSTANDING) {
        set_err(err, errcap, "router: default_strategy: expected latency, weighted, round-robin or least-outstanding");
        return SL_EINVAL;
    }
    if (o->queue_max < 0 || o->queue_max > SL_ROUTER_MAX_QUEUE) {
        set_err(err, errcap, "router: queue_max: expected 0..%d, got %d", SL_ROUTER_MAX_QUEUE, o->queue_max);
        return SL_EINVAL;
    }
    /* durations are capped so that now + duration never overflows a uint64 of ms */
    const double ms_max = SL_ROUTER_MAX_MS, big = 1e12;
    struct { const char *name; double v, lo, hi; } nums[] = {
        {"queue_timeout_ms", o->queue_timeout_ms, 0, ms_max},
        {"eject_base_ms", o->eject_base_ms, 1, ms_max},
        {"eject_max_ms", o->eject_max_ms, 1, ms_max},
        {"slow_start_window_ms", o->slow_start_window_ms, 0, ms_max},
        {"slow_start_aggression", o->slow_start_aggression, 1, 1000},
        {"pause_max_ms", o->pause_max_ms, 0, ms_max},
        {"ewma_decay_ms", o->ewma_decay_ms, 1, ms_max},
        {"retry_budget_ratio", o->retry_budget_ratio, 0, big},
        {"retry_budget_min_per_s", o->retry_budget_min_per_s, 0, big},
        {"retry_budget_window_ms", o->retry_budget_window_ms, BUDGET_BUCKETS, ms_max},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(nums); i++) {
        if (!(isfinite(nums[i].v) && nums[i].v >= nums[i].lo && nums[i].v <= nums[i].hi)) {
            set_err(err, errcap, "router: %s: expected a number in [%g, %g], got %g", nums[i].name, nums[i].lo,
                    nums[i].hi, nums[i].v);
            return SL_EINVAL;
        }
    }
    if (o->eject_connect_consecutive < 0) {
        set_err(err, errcap, "router: eject_connect_consecutive: expected >= 0 (0 = off), got %d",
                o->eject_connect_consecutive);
        return SL_EINVAL;
    }
    if (o->eject_consecutive < 0) {
        set_err(err, errcap, "router: eject_consecutive: expected >= 0 (0 = never eject), got %d", o->eject_consecutive);
        return SL_EINVAL;
    }
    if (o->eject_max_ms < o->eject_base_ms) {
        set_err(err, errcap, "router: eject_max_ms (%g) must be >= eject_base_ms (%g)", o->eject_max_ms,
                o->eject_base_ms);
        return SL_EINVAL;
    }
    if (o->max_ejection_percent < 0 || o->max_ejection_percent > 100) {
        set_err(err, errcap, "router: max_ejection_percent: expected 0..100, got %d", o->max_ejection_percent);
        return SL_EINVAL;
    }
    if (!(o->slow_start_floor > 0 && o->slow_start_floor <= 1)) {
        set_err(err, errcap, "router: slow_start_floor: expected a fraction in (0, 1], got %g", o->slow_start_floor);
        return SL_EINVAL;
    }
    if (o->slow_start_curve != SL_ROUTER_RAMP_LINEAR && o->slow_start_curve != SL_ROUTER_RAMP_AGGRESSIVE) {
        set_err(err, errcap, "router: slow_start_curve: expected linear or aggressive");
        return SL_EINVAL;
    }
    return 0;
}

int sl_router_strategy_parse(const char *s, sl_router_strategy *out)
{
    if (!s) {
        *out = SL_ROUTER_STRATEGY_DEFAULT;
        return 0;
    }
    static const struct { const char *name; sl_router_strategy v; } names[] = {
        {"latency", SL_ROUTER_STRATEGY_LATENCY},
        {"weighted", SL_ROUTER_STRATEGY_WEIGHTED},
        {"simple-shuffle", SL_ROUTER_STRATEGY_WEIGHTED},
        {"round-robin", SL_ROUTER_STRATEGY_ROUND_ROBIN},
        {"least-outstanding", SL_ROUTER_STRATEGY_LEAST_OUTSTANDING},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        if (!strcmp(s, names[i].name)) {
            *out = names[i].v;
            return 0;
        }
    }
    return SL_EINVAL;
}

const char *sl_router_strategy_name(sl_router_strategy s)
{
    switch (s) {
    case SL_ROUTER_STRATEGY_LATENCY: return "latency";
    case SL_ROUTER_STRATEGY_WEIGHTED: return "weighted";
    case SL_ROUTER_STRATEGY_ROUND_ROBIN: return "round-robin";
    case SL_ROUTER_STRATEGY_LEAST_OUTSTANDING: return "least-outstanding";
    default: return "default";
    }
}

/* ---- per-backend state as of now ---- */

static double ramp_factor(const sl_router *r, const rbk *b, uint64_t now)
{
    const sl_router_opts *o = &r->o;
    if (!b->ramping || o->slow_start_window_ms <= 0 || b->no_ramp)
        return 1.0;
    double elapsed = now > b->ramp_start ? (double)(now - b->ramp_start) : 0.0;
    double f = elapsed / o->slow_start_window_ms;
    if (f >= 1)
        return 1.0;
    double a = o->slow_start_curve == SL_ROUTER_RAMP_AGGRESSIVE ? o->slow_start_aggression : 1.0;
    double shaped = a == 1.0 ? f : pow(f, 1.0 / a);
    return o->slow_start_floor + (1.0 - o->slow_start_floor) * shaped;
}

static int limit_now(const rbk *b, double factor)
{
    if (b->max_conc <= 0)
        return 0;
    /* the epsilon keeps 10 x 0.1 at 1 despite binary rounding */
    int lim = (int)floor((double)b->max_conc * factor + 1e-9);
    return lim < 1 ? 1 : lim;
}

static double ewma_now(const sl_router *r, const rbk *b, uint64_t now)
{
    if (!b->has_ewma)
        return 0;
    double dt = now > b->ewma_at ? (double)(now - b->ewma_at) : 0.0;
    return b->ewma * exp(-dt / r->o.ewma_decay_ms);
}

static void ewma_sample(const sl_router *r, rbk *b, double x, uint64_t now)
{
    if (!b->has_ewma || x >= b->ewma) {
        b->ewma = x;
    } else {
        double dt = now > b->ewma_at ? (double)(now - b->ewma_at) : 0.0;
        double w = exp(-dt / r->o.ewma_decay_ms);
        b->ewma = b->ewma * w + x * (1.0 - w);
    }
    b->has_ewma = true;
    b->ewma_at = now;
}

static bool is_ejected(const rbk *b, uint64_t now) { return now < b->ejected_until; }

static bool eligible(const sl_router *r, const rbk *b, uint64_t now, double *eff_w)
{
    double f = ramp_factor(r, b, now);
    *eff_w = b->weight * f;
    if (b->unhealthy || is_ejected(b, now) || now < b->paused_until)
        return false;
    int lim = limit_now(b, f);
    return lim == 0 || b->inflight < lim;
}

/* ---- picking ---- */

static int pick_latency(sl_router *r, rgroup *g, size_t m, double u, uint64_t now)
{
    double sum = 0;
    int n_sampled = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (g->bks[i]->has_ewma) {
            sum += ewma_now(r, g->bks[i], now);
            n_sampled++;
        }
    }
    double fallback_cost = n_sampled ? sum / n_sampled : 0;
    if (m == 1)
        return (int)g->cand[0];
    double x = u * (double)m;
    size_t a = (size_t)x;
    if (a >= m)
        a = m - 1;
    double u2 = x - (double)a;
    size_t b = (size_t)(u2 * (double)(m - 1));
    if (b >= m - 1)
        b = m - 2;
    if (b >= a)
        b++;
    size_t ia = g->cand[a], ib = g->cand[b];
    double score[2];
    size_t pair[2] = {ia, ib};
    for (int k = 0; k < 2; k++) {
        const rbk *bk = g->bks[pair[k]];
        double cost = bk->has_ewma ? ewma_now(r, bk, now) : fallback_cost;
        score[k] = (cost + 1.0) * (double)(bk->inflight + 1) / g->w[pair[k]];
    }
    return (int)(score[1] < score[0] ? ib : ia);
}

static int pick_least(rgroup *g, size_t m, double u)
{
    double best = INFINITY;
    size_t n_tied = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = g->cand[k];
        double load = (double)(g->bks[i]->inflight + 1) / g->w[i];
        if (load < best - 1e-12) {
            best = load;
            n_tied = 0;
        }
        if (fabs(load - best) <= 1e-12)
            g->cand[n_tied++] = i; /* compacts the tied ones to the front; k >= n_tied always */
    }
    size_t t = (size_t)(u * (double)n_tied);
    if (t >= n_tied)
        t = n_tied - 1;
    return (int)g->cand[t];
}

static int pick_round_robin(rgroup *g, size_t m)
{
    double total = 0;
    int best = -1;
    for (size_t k = 0; k < m; k++) {
        size_t i = g->cand[k];
        rbk *b = g->bks[i];
        b->rr_current += g->w[i];
        total += g->w[i];
        if (best < 0 || b->rr_current > g->bks[best]->rr_current)
            best = (int)i;
    }
    g->bks[best]->rr_current -= total;
    return best;
}

/* Chooses a backend index of g for one attempt, or -1. r->mu held. */
static int pick(sl_router *r, rgroup *g, const char *exclude, double u, uint64_t now)
{
    size_t n_ok = 0;
    for (size_t i = 0; i < g->n; i++) {
        g->ok[i] = eligible(r, g->bks[i], now, &g->w[i]) && g->w[i] > 0;
        n_ok += g->ok[i];
    }
    if (!n_ok)
        return -1;
    if (exclude && n_ok > 1) {
        for (size_t i = 0; i < g->n; i++) {
            if (g->ok[i] && !strcmp(g->bks[i]->id, exclude)) {
                g->ok[i] = false;
                n_ok--;
            }
        }
    }
    u = clamp_unit(u);
    size_t m = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->ok[i])
            g->cand[m++] = i;
    switch (g->strategy) {
    case SL_ROUTER_STRATEGY_WEIGHTED: return sl_policy_pick_weighted(g->w, g->ok, g->n, u);
    case SL_ROUTER_STRATEGY_ROUND_ROBIN: return pick_round_robin(g, m);
    case SL_ROUTER_STRATEGY_LEAST_OUTSTANDING: return pick_least(g, m, u);
    case SL_ROUTER_STRATEGY_LATENCY:
    default: return pick_latency(r, g, m, u, now);
    }
}

static void grant(rgroup *g, size_t i, double queued_ms, sl_router_lease *out)
{
    rbk *b = g->bks[i];
    b->inflight++;
    b->refs++;
    out->backend_id = b->id;
    out->index = i;
    out->queued_ms = queued_ms;
    out->priv = b;
}

/* ---- queue ---- */

static void q_unlink(rgroup *g, rwaiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        g->qhead = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        g->qtail = w->prev;
    w->prev = w->next = NULL;
    g->depth--;
}

static void q_push(rgroup *g, rwaiter *w)
{
    w->prev = g->qtail;
    w->next = NULL;
    if (g->qtail)
        g->qtail->next = w;
    else
        g->qhead = w;
    g->qtail = w;
    g->depth++;
}

/* A singly linked list (through next) of waiters whose callbacks are due. */
typedef struct fire_list {
    rwaiter *head, *tail;
} fire_list;

static void fire_add(fire_list *fl, rwaiter *w, int status)
{
    w->status = status;
    w->next = NULL;
    if (fl->tail)
        fl->tail->next = w;
    else
        fl->head = w;
    fl->tail = w;
}

static void waiter_free(rwaiter *w)
{
    sl_free(w->exclude);
    sl_free(w);
}

/* Runs the callbacks; r->mu must NOT be held. */
static void fire_all(fire_list *fl)
{
    rwaiter *w = fl->head;
    while (w) {
        rwaiter *next = w->next;
        w->fn(w->ud, w->status, w->status == 0 ? &w->lease : NULL);
        waiter_free(w);
        w = next;
    }
    fl->head = fl->tail = NULL;
}

/* Times out expired waiters, then hands capacity to the head while there is
 * some. r->mu held. */
static void service_group(sl_router *r, rgroup *g, uint64_t now, fire_list *fl)
{
    for (rwaiter *w = g->qhead; w;) {
        rwaiter *next = w->next;
        if (now >= w->deadline) {
            q_unlink(g, w);
            g->timed_out++;
            fire_add(fl, w, SL_ETIMEDOUT);
        }
        w = next;
    }
    while (g->qhead) {
        rwaiter *w = g->qhead;
        int i = pick(r, g, w->exclude, rng_unit(r), now);
        if (i < 0)
            break;
        q_unlink(g, w);
        double waited = (double)(now - w->enq_at);
        grant(g, (size_t)i, waited, &w->lease);
        g->granted++;
        g->wait_ms_sum += waited;
        if (waited > g->wait_ms_max)
            g->wait_ms_max = waited;
        fire_add(fl, w, 0);
    }
}

static rgroup *find_group(sl_router *r, const char *name)
{
    for (size_t i = 0; i < r->n_groups; i++)
        if (!strcmp(r->groups[i]->name, name))
            return r->groups[i];
    return NULL;
}

/* ---- lifetime ---- */

int sl_router_create(const sl_router_opts *o, sl_clock_fn clock, void *clock_ud, sl_router **out, char *err,
                     size_t errcap)
{
    *out = NULL;
    sl_router_opts def;
    if (!o) {
        sl_router_opts_default(&def);
        o = &def;
    }
    int rc = sl_router_opts_validate(o, err, errcap);
    if (rc)
        return rc;
    sl_router *r = sl_calloc(1, sizeof *r);
    if (!r)
        return SL_ENOMEM;
    r->o = *o;
    r->clock = clock ? clock : default_clock;
    r->clock_ud = clock_ud;
    r->next_ticket = 1;
    r->rng = o->seed ? o->seed : (sl_rand_u64() | 1);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->budget_mu, NULL);
    for (size_t i = 0; i < BUDGET_BUCKETS; i++)
        r->buckets[i].epoch = UINT64_MAX;
    *out = r;
    return 0;
}

static void bk_unref(rbk *b)
{
    if (--b->refs > 0)
        return;
    sl_free(b->id);
    sl_free(b);
}

static void group_free(rgroup *g)
{
    if (!g)
        return;
    sl_free(g->name);
    sl_free(g->bks);
    sl_free(g->w);
    sl_free(g->ok);
    sl_free(g->cand);
    sl_free(g);
}

void sl_router_destroy(sl_router *r)
{
    if (!r)
        return;
    fire_list fl = {0};
    pthread_mutex_lock(&r->mu);
    for (size_t gi = 0; gi < r->n_groups; gi++) {
        rgroup *g = r->groups[gi];
        while (g->qhead) {
            rwaiter *w = g->qhead;
            q_unlink(g, w);
            fire_add(&fl, w, SL_ECANCELED);
        }
    }
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
    for (size_t gi = 0; gi < r->n_groups; gi++) {
        rgroup *g = r->groups[gi];
        for (size_t i = 0; i < g->n; i++) {
            g->bks[i]->group = NULL;
            bk_unref(g->bks[i]);
        }
        group_free(g);
    }
    sl_free(r->groups);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->budget_mu);
    sl_free(r);
}

/* ---- configuration ---- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_bk_ptr(const void *a, const void *b)
{
    return strcmp((*(rbk *const *)a)->id, (*(rbk *const *)b)->id);
}

static int validate_groups(const sl_router_group_conf *gs, size_t n, size_t *total_out, char *err, size_t errcap)
{
    size_t total = 0;
    for (size_t gi = 0; gi < n; gi++) {
        const sl_router_group_conf *g = &gs[gi];
        if (!g->name || !g->name[0] || strlen(g->name) >= SL_ROUTER_NAME_MAX) {
            set_err(err, errcap, "router: group %zu: name must be 1..%d bytes", gi, SL_ROUTER_NAME_MAX - 1);
            return SL_EINVAL;
        }
        if (g->strategy < SL_ROUTER_STRATEGY_DEFAULT || g->strategy > SL_ROUTER_STRATEGY_LEAST_OUTSTANDING) {
            set_err(err, errcap, "router: group '%s': unknown strategy %d", g->name, (int)g->strategy);
            return SL_EINVAL;
        }
        if (g->queue_max > SL_ROUTER_MAX_QUEUE) {
            set_err(err, errcap, "router: group '%s': queue_max %d exceeds %d", g->name, g->queue_max,
                    SL_ROUTER_MAX_QUEUE);
            return SL_EINVAL;
        }
        if (!(g->queue_timeout_ms <= SL_ROUTER_MAX_MS)) { /* NaN fails too; < 0 means the default */
            set_err(err, errcap, "router: group '%s': queue_timeout_ms must be at most %g", g->name,
                    (double)SL_ROUTER_MAX_MS);
            return SL_EINVAL;
        }
        if (g->n_backends < 1 || g->n_backends > SL_ROUTER_MAX_GROUP_BACKENDS || !g->backends) {
            set_err(err, errcap, "router: group '%s': expected 1..%d backends, got %zu", g->name,
                    SL_ROUTER_MAX_GROUP_BACKENDS, g->n_backends);
            return SL_EINVAL;
        }
        for (size_t i = 0; i < g->n_backends; i++) {
            const sl_router_backend_conf *b = &g->backends[i];
            if (!b->id || !b->id[0] || strlen(b->id) >= SL_ROUTER_NAME_MAX) {
                set_err(err, errcap, "router: group '%s' backend %zu: id must be 1..%d bytes", g->name, i,
                        SL_ROUTER_NAME_MAX - 1);
                return SL_EINVAL;
            }
            if (!(isfinite(b->weight) && b->weight > 0)) {
                set_err(err, errcap, "router: backend '%s': weight must be a finite number > 0, got %g", b->id,
                        b->weight);
                return SL_EINVAL;
            }
            if (b->max_concurrency < 0) {
                set_err(err, errcap, "router: backend '%s': max_concurrency must be >= 0 (0 = unlimited), got %d",
                        b->id, b->max_concurrency);
                return SL_EINVAL;
            }
        }
        total += g->n_backends;
    }
    *total_out = total;
    return 0;
}

static int check_unique(const char **names, size_t n, const char *what, char *err, size_t errcap)
{
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(names[i - 1], names[i])) {
            set_err(err, errcap, "router: %s '%s' appears twice", what, names[i]);
            return SL_EEXIST;
        }
    }
    return 0;
}

int sl_router_set_groups(sl_router *r, const sl_router_group_conf *gs, size_t n, char *err, size_t errcap)
{
    size_t total = 0;
    int rc = validate_groups(gs, n, &total, err, errcap);
    if (rc)
        return rc;
    const char **names = sl_calloc(total + n + 1, sizeof *names);
    rgroup **ng = sl_calloc(n + 1, sizeof *ng);
    rbk **fresh = sl_calloc(total + 1, sizeof *fresh); /* new rbk per conf slot, used if the id is new */
    if (!names || !ng || !fresh) {
        rc = SL_ENOMEM;
        goto fail;
    }
    size_t k = 0;
    for (size_t gi = 0; gi < n; gi++)
        for (size_t i = 0; i < gs[gi].n_backends; i++)
            names[k++] = gs[gi].backends[i].id;
    rc = check_unique(names, total, "backend id", err, errcap);
    if (rc)
        goto fail;
    for (size_t gi = 0; gi < n; gi++)
        names[gi] = gs[gi].name;
    rc = check_unique(names, n, "group", err, errcap);
    if (rc)
        goto fail;

    /* allocate everything that can fail before touching live state */
    k = 0;
    for (size_t gi = 0; gi < n; gi++) {
        const sl_router_group_conf *gc = &gs[gi];
        rgroup *g = sl_calloc(1, sizeof *g);
        ng[gi] = g;
        if (!g) {
            rc = SL_ENOMEM;
            goto fail;
        }
        g->name = sl_strdup(gc->name);
        g->bks = sl_calloc(gc->n_backends, sizeof *g->bks);
        g->w = sl_calloc(gc->n_backends, sizeof *g->w);
        g->ok = sl_calloc(gc->n_backends, sizeof *g->ok);
        g->cand = sl_calloc(gc->n_backends, sizeof *g->cand);
        if (!g->name || !g->bks || !g->w || !g->ok || !g->cand) {
            rc = SL_ENOMEM;
            goto fail;
        }
        g->n = gc->n_backends;
        g->strategy = gc->strategy == SL_ROUTER_STRATEGY_DEFAULT ? r->o.default_strategy : gc->strategy;
        g->queue_max = gc->queue_max < 0 ? r->o.queue_max : gc->queue_max;
        g->queue_timeout_ms = gc->queue_timeout_ms < 0 ? r->o.queue_timeout_ms : gc->queue_timeout_ms;
        for (size_t i = 0; i < gc->n_backends; i++, k++) {
            fresh[k] = sl_calloc(1, sizeof *fresh[k]);
            if (!fresh[k] || !(fresh[k]->id = sl_strdup(gc->backends[i].id))) {
                rc = SL_ENOMEM;
                goto fail;
            }
        }
    }

    fire_list fl = {0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = now_ms(r);
    /* index of the live backends by id */
    size_t n_old = 0;
    for (size_t gi = 0; gi < r->n_groups; gi++)
        n_old += r->groups[gi]->n;
    rbk **old = sl_calloc(n_old + 1, sizeof *old);
    if (!old) {
        pthread_mutex_unlock(&r->mu);
        rc = SL_ENOMEM;
        goto fail;
    }
    n_old = 0;
    for (size_t gi = 0; gi < r->n_groups; gi++)
        for (size_t i = 0; i < r->groups[gi]->n; i++)
            old[n_old++] = r->groups[gi]->bks[i];
    qsort(old, n_old, sizeof *old, cmp_bk_ptr);
    /* mark old ones as unclaimed; claimed ones get their new group below */
    for (size_t i = 0; i < n_old; i++)
        old[i]->group = NULL;

    bool ramp_new = r->configured || r->o.slow_start_initial;
    k = 0;
    for (size_t gi = 0; gi < n; gi++) {
        rgroup *g = ng[gi];
        const sl_router_group_conf *gc = &gs[gi];
        for (size_t i = 0; i < g->n; i++, k++) {
            const sl_router_backend_conf *bc = &gc->backends[i];
            rbk key = {.id = (char *)bc->id};
            rbk *keyp = &key;
            rbk **hit = n_old ? bsearch(&keyp, old, n_old, sizeof *old, cmp_bk_ptr) : NULL;
            rbk *b;
            if (hit) {
                b = *hit; /* keeps the group's reference it already had */
                sl_free(fresh[k]->id);
                sl_free(fresh[k]);
                fresh[k] = NULL;
            } else {
                b = fresh[k];
                fresh[k] = NULL;
                b->refs = 1;
                b->ramping = ramp_new;
                b->ramp_start = now;
            }
            b->group = g;
            b->index = i;
            b->weight = bc->weight;
            b->max_conc = bc->max_concurrency;
            b->no_ramp = bc->no_slow_start;
            g->bks[i] = b;
        }
        /* a surviving group keeps its queue and counters */
        rgroup *og = find_group(r, g->name);
        if (og) {
            g->qhead = og->qhead;
            g->qtail = og->qtail;
            g->depth = og->depth;
            og->qhead = og->qtail = NULL;
            og->depth = 0;
            g->enqueued = og->enqueued;
            g->granted = og->granted;
            g->rejected_full = og->rejected_full;
            g->timed_out = og->timed_out;
            g->cancelled = og->cancelled;
            g->ejections_refused = og->ejections_refused;
            g->wait_ms_sum = og->wait_ms_sum;
            g->wait_ms_max = og->wait_ms_max;
        }
    }
    /* what was not claimed leaves: drop the old groups' references */
    for (size_t i = 0; i < n_old; i++)
        if (!old[i]->group)
            bk_unref(old[i]);
    sl_free(old);
    for (size_t gi = 0; gi < r->n_groups; gi++) {
        rgroup *og = r->groups[gi];
        while (og->qhead) {
            rwaiter *w = og->qhead;
            q_unlink(og, w);
            og->cancelled++;
            fire_add(&fl, w, SL_ECANCELED);
        }
        group_free(og);
    }
    sl_free(r->groups);
    r->groups = ng;
    r->n_groups = n;
    r->configured = true;
    for (size_t gi = 0; gi < n; gi++)
        service_group(r, ng[gi], now, &fl);
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
    sl_free(names);
    sl_free(fresh);
    return 0;

fail:
    if (ng)
        for (size_t gi = 0; gi < n; gi++)
            group_free(ng[gi]);
    if (fresh)
        for (size_t i = 0; i < total; i++)
            if (fresh[i]) {
                sl_free(fresh[i]->id);
                sl_free(fresh[i]);
            }
    sl_free(ng);
    sl_free(fresh);
    sl_free(names);
    return rc;
}

/* ---- acquire / wait / release ---- */

int sl_router_acquire(sl_router *r, const char *group, const char *exclude_id, double u, sl_router_lease *out)
{
    fire_list fl = {0};
    int rc = SL_EAGAIN;
    pthread_mutex_lock(&r->mu);
    rgroup *g = find_group(r, group);
    if (!g) {
        rc = SL_ENOTFOUND;
    } else {
        uint64_t now = now_ms(r);
        service_group(r, g, now, &fl);
        /* service_group stops only when nothing can be picked, so a waiter
         * left at the head means no capacity; checked anyway to keep FIFO
         * order independent of that reasoning */
        if (!g->qhead) {
            int i = pick(r, g, exclude_id, u, now);
            if (i >= 0) {
                grant(g, (size_t)i, 0, out);
                rc = 0;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
    return rc;
}

int sl_router_acquire_or_wait(sl_router *r, const char *group, const char *exclude_id, double u,
                              sl_router_wait_fn fn, void *ud, sl_router_lease *out, uint64_t *ticket)
{
    *ticket = 0;
    if (!fn)
        return SL_EINVAL;
    rwaiter *w = NULL; /* allocated only when the request must wait */
    fire_list fl = {0};
    int rc;
    pthread_mutex_lock(&r->mu);
    rgroup *g = find_group(r, group);
    if (!g) {
        rc = SL_ENOTFOUND;
    } else {
        uint64_t now = now_ms(r);
        service_group(r, g, now, &fl);
        int i = g->qhead ? -1 : pick(r, g, exclude_id, u, now);
        if (i >= 0) {
            grant(g, (size_t)i, 0, out);
            rc = 0;
        } else if (g->depth >= g->queue_max) {
            g->rejected_full++;
            rc = SL_EFULL;
        } else if (!(w = sl_calloc(1, sizeof *w)) || (exclude_id && !(w->exclude = sl_strdup(exclude_id)))) {
            rc = SL_ENOMEM;
        } else {
            w->fn = fn;
            w->ud = ud;
            w->ticket = r->next_ticket++;
            w->enq_at = now;
            w->deadline = now + (uint64_t)ceil(g->queue_timeout_ms);
            q_push(g, w);
            g->enqueued++;
            *ticket = w->ticket;
            w = NULL;
            rc = SL_EAGAIN;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (w)
        waiter_free(w);
    fire_all(&fl);
    return rc;
}

int sl_router_cancel_wait(sl_router *r, uint64_t ticket)
{
    rwaiter *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (size_t gi = 0; gi < r->n_groups && !found; gi++) {
        rgroup *g = r->groups[gi];
        for (rwaiter *w = g->qhead; w; w = w->next) {
            if (w->ticket == ticket) {
                q_unlink(g, w);
                g->cancelled++;
                found = w;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!found)
        return SL_ENOTFOUND;
    waiter_free(found);
    return 0;
}

/* Ejects b unless the group's cap forbids it. r->mu held. */
static void try_eject(sl_router *r, rbk *b, uint64_t now)
{
    rgroup *g = b->group;
    if (!g)
        return;
    size_t ejected = 0;
    for (size_t i = 0; i < g->n; i++)
        ejected += is_ejected(g->bks[i], now);
    if ((ejected + 1) * 100 > (size_t)r->o.max_ejection_percent * g->n) {
        g->ejections_refused++;
        return;
    }
    int level = 1;
    if (b->ejections > 0) {
        /* the level heals by one per eject_base_ms since the last ejection ended */
        uint64_t since = now > b->ejected_until ? now - b->ejected_until : 0;
        double healed = floor((double)since / r->o.eject_base_ms);
        double prev = (double)b->eject_level - healed;
        level = (prev > 0 ? (int)prev : 0) + 1;
    }
    double dur = r->o.eject_base_ms * level;
    if (dur > r->o.eject_max_ms)
        dur = r->o.eject_max_ms;
    b->eject_level = level;
    b->ejections++;
    b->ejected_until = now + (uint64_t)dur;
    b->streak = 0;
    b->connect_streak = 0;
    b->probing = true;
    b->ramping = true;
    b->ramp_start = b->ejected_until;
}

static void apply_outcome(sl_router *r, rbk *b, const sl_router_outcome *oc, uint64_t now)
{
    b->requests++;
    sl_router_outcome_kind kind = oc ? oc->kind : SL_ROUTER_NEUTRAL;
    switch (kind) {
    case SL_ROUTER_OK:
        b->streak = 0;
        b->connect_streak = 0;
        b->probing = false;
        if (oc->ttft_ms > 0 && isfinite(oc->ttft_ms))
            ewma_sample(r, b, oc->ttft_ms, now);
        break;
    case SL_ROUTER_FAIL_CONNECT:
    case SL_ROUTER_FAIL_TIMEOUT:
    case SL_ROUTER_FAIL_5XX:
        b->failures++;
        b->streak++;
        b->connect_streak = kind == SL_ROUTER_FAIL_CONNECT ? b->connect_streak + 1 : 0;
        if (kind == SL_ROUTER_FAIL_TIMEOUT && oc->ttft_ms > 0 && isfinite(oc->ttft_ms))
            ewma_sample(r, b, oc->ttft_ms, now);
        if (is_ejected(b, now))
            break; /* an attempt that started before the ejection */
        if (b->probing || (r->o.eject_consecutive > 0 && b->streak >= r->o.eject_consecutive) ||
            (r->o.eject_connect_consecutive > 0 && b->connect_streak >= r->o.eject_connect_consecutive))
            try_eject(r, b, now);
        break;
    case SL_ROUTER_OVERLOADED:
        if (oc->retry_after_s > 0) {
            double ms = oc->retry_after_s * 1000.0;
            if (ms > r->o.pause_max_ms)
                ms = r->o.pause_max_ms;
            uint64_t until = now + (uint64_t)ceil(ms);
            if (until > b->paused_until)
                b->paused_until = until;
        }
        break;
    case SL_ROUTER_NEUTRAL:
    default:
        break;
    }
}

void sl_router_release(sl_router *r, sl_router_lease *lease, const sl_router_outcome *outcome)
{
    rbk *b = lease->priv;
    if (!b)
        return;
    lease->priv = NULL;
    lease->backend_id = NULL;
    fire_list fl = {0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = now_ms(r);
    b->inflight--;
    apply_outcome(r, b, outcome, now);
    rgroup *g = b->group;
    bk_unref(b);
    if (g)
        service_group(r, g, now, &fl);
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
}

void sl_router_tick(sl_router *r)
{
    fire_list fl = {0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = now_ms(r);
    for (size_t gi = 0; gi < r->n_groups; gi++)
        service_group(r, r->groups[gi], now, &fl);
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
}

/* ---- health hooks ---- */

static rbk *find_bk(sl_router *r, const char *id)
{
    for (size_t gi = 0; gi < r->n_groups; gi++)
        for (size_t i = 0; i < r->groups[gi]->n; i++)
            if (!strcmp(r->groups[gi]->bks[i]->id, id))
                return r->groups[gi]->bks[i];
    return NULL;
}

int sl_router_mark_unhealthy(sl_router *r, const char *backend_id)
{
    pthread_mutex_lock(&r->mu);
    rbk *b = find_bk(r, backend_id);
    if (b)
        b->unhealthy = true;
    pthread_mutex_unlock(&r->mu);
    return b ? 0 : SL_ENOTFOUND;
}

int sl_router_mark_healthy(sl_router *r, const char *backend_id)
{
    fire_list fl = {0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = now_ms(r);
    rbk *b = find_bk(r, backend_id);
    if (b && (b->unhealthy || is_ejected(b, now))) {
        b->unhealthy = false;
        if (is_ejected(b, now))
            b->ejected_until = now;
        b->probing = false;
        b->streak = 0;
        b->connect_streak = 0;
        b->ramping = true;
        b->ramp_start = now;
        service_group(r, b->group, now, &fl);
    }
    pthread_mutex_unlock(&r->mu);
    fire_all(&fl);
    return b ? 0 : SL_ENOTFOUND;
}

/* ---- retry budget ---- */

static uint64_t bucket_ms(const sl_router *r)
{
    uint64_t ms = (uint64_t)(r->o.retry_budget_window_ms / BUDGET_BUCKETS);
    return ms ? ms : 1;
}

/* The current bucket, reset when it held an older interval. budget_mu held. */
static budget_bucket *budget_cur(sl_router *r, uint64_t now)
{
    uint64_t epoch = now / bucket_ms(r);
    budget_bucket *b = &r->buckets[epoch % BUDGET_BUCKETS];
    if (b->epoch != epoch) {
        b->epoch = epoch;
        b->requests = b->retries = 0;
    }
    return b;
}

static void budget_sums(sl_router *r, uint64_t now, uint64_t *req, uint64_t *ret)
{
    uint64_t epoch = now / bucket_ms(r);
    *req = *ret = 0;
    for (size_t i = 0; i < BUDGET_BUCKETS; i++) {
        const budget_bucket *b = &r->buckets[i];
        if (b->epoch != UINT64_MAX && b->epoch <= epoch && b->epoch + BUDGET_BUCKETS > epoch) {
            *req += b->requests;
            *ret += b->retries;
        }
    }
}

void sl_router_note_request(sl_router *r)
{
    uint64_t now = now_ms(r);
    pthread_mutex_lock(&r->budget_mu);
    budget_cur(r, now)->requests++;
    pthread_mutex_unlock(&r->budget_mu);
}

bool sl_router_retry_budget_try_acquire(sl_router *r)
{
    uint64_t now = now_ms(r);
    pthread_mutex_lock(&r->budget_mu);
    budget_bucket *cur = budget_cur(r, now);
    uint64_t req, ret;
    budget_sums(r, now, &req, &ret);
    double allowance =
        r->o.retry_budget_ratio * (double)req + r->o.retry_budget_min_per_s * r->o.retry_budget_window_ms / 1000.0;
    bool ok = (double)(ret + 1) <= allowance + 1e-9;
    if (ok) {
        cur->retries++;
        r->budget_granted++;
    } else {
        r->budget_denied++;
    }
    pthread_mutex_unlock(&r->budget_mu);
    return ok;
}

void sl_router_retry_budget_stats(sl_router *r, sl_router_budget_stats *out)
{
    uint64_t now = now_ms(r);
    pthread_mutex_lock(&r->budget_mu);
    budget_sums(r, now, &out->requests_in_window, &out->retries_in_window);
    out->granted = r->budget_granted;
    out->denied = r->budget_denied;
    pthread_mutex_unlock(&r->budget_mu);
}

/* ---- observation ---- */

int sl_router_snapshot(sl_router *r, sl_router_backend_state *out, size_t cap, size_t *n)
{
    size_t k = 0;
    pthread_mutex_lock(&r->mu);
    uint64_t now = now_ms(r);
    for (size_t gi = 0; gi < r->n_groups; gi++) {
        rgroup *g = r->groups[gi];
        for (size_t i = 0; i < g->n; i++, k++) {
            if (k >= cap)
                continue;
            const rbk *b = g->bks[i];
            sl_router_backend_state *s = &out[k];
            memset(s, 0, sizeof *s);
            snprintf(s->id, sizeof s->id, "%s", b->id);
            snprintf(s->group, sizeof s->group, "%s", g->name);
            double f = ramp_factor(r, b, now);
            s->unhealthy = b->unhealthy;
            s->probing = b->probing;
            if (b->unhealthy || is_ejected(b, now))
                s->state = SL_ROUTER_OPEN;
            else if (b->probing || f < 1.0)
                s->state = SL_ROUTER_HALF_OPEN;
            else
                s->state = SL_ROUTER_CLOSED;
            s->in_flight = b->inflight;
            s->limit_now = limit_now(b, f);
            s->weight = b->weight;
            s->ramp_factor = f;
            s->effective_weight = b->weight * f;
            s->ewma_ttft_ms = ewma_now(r, b, now);
            s->consecutive_failures = b->streak;
            s->ejections = b->ejections;
            s->eject_level = b->eject_level;
            s->ejected_ms_left = is_ejected(b, now) ? (double)(b->ejected_until - now) : 0;
            s->paused_ms_left = now < b->paused_until ? (double)(b->paused_until - now) : 0;
            s->requests = b->requests;
            s->failures = b->failures;
        }
    }
    pthread_mutex_unlock(&r->mu);
    *n = k;
    return 0;
}

int sl_router_group_stats_get(sl_router *r, sl_router_group_stats *out, size_t cap, size_t *n)
{
    pthread_mutex_lock(&r->mu);
    for (size_t gi = 0; gi < r->n_groups && gi < cap; gi++) {
        const rgroup *g = r->groups[gi];
        sl_router_group_stats *s = &out[gi];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", g->name);
        s->strategy = g->strategy;
        s->queue_depth = g->depth;
        s->queue_max = g->queue_max;
        s->enqueued = g->enqueued;
        s->granted = g->granted;
        s->rejected_full = g->rejected_full;
        s->timed_out = g->timed_out;
        s->cancelled = g->cancelled;
        s->wait_ms_sum = g->wait_ms_sum;
        s->wait_ms_max = g->wait_ms_max;
        s->ejections_refused = g->ejections_refused;
    }
    *n = r->n_groups;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int sl_router_queue_depth(sl_router *r, const char *group)
{
    pthread_mutex_lock(&r->mu);
    rgroup *g = find_group(r, group);
    int d = g ? g->depth : 0;
    pthread_mutex_unlock(&r->mu);
    return d;
}
