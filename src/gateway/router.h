/*
 * router: traffic regulation inside the gateway. It decides which backend of
 * a model group serves an attempt, and whether a request may proceed at all.
 *
 * It owns, per backend id: in-flight count, a peak-EWMA of time to first
 * token, the consecutive-failure streak, outlier ejection (with a growing
 * ejection time and a cap on the share of a group ejected at once), the
 * active-health verdict, Retry-After pauses and slow start (a ramp of both
 * the effective weight and the concurrency limit). Per group it owns the load
 * balancing strategy state and a bounded FIFO admission queue. Gateway-wide it
 * owns the retry budget. It does no I/O: time comes from an injected clock
 * and randomness from the caller (tests drive both), so every decision is
 * reproducible.
 *
 * Threads. One sl_router serves all worker threads. Every call is thread-safe:
 * routing state sits under one router mutex (each operation is O(backends of
 * one group), or O(waiters) for the queue scans, and holds it for
 * microseconds), the retry budget under its own. Wait callbacks
 * (sl_router_wait_fn) are NEVER called with a lock held, but they run on
 * whichever thread made the router call that freed capacity or noticed the
 * deadline: sl_router_release, sl_router_acquire*, sl_router_tick,
 * sl_router_mark_healthy, sl_router_set_groups or sl_router_destroy. A libuv
 * caller must therefore only hand the result to its own loop (uv_async_send)
 * from the callback. A callback may call back into the router.
 *
 * Admission, step by step (what the gateway does):
 *   1. rc = sl_router_acquire_or_wait(r, group, exclude, u, fn, ud, &lease, &ticket)
 *      rc == 0            → lease holds a backend; send the attempt.
 *      rc == SL_EAGAIN    → queued: fn(ud, status, lease) comes exactly once
 *                           (unless sl_router_cancel_wait returns 0 first).
 *      rc == SL_EFULL     → queue full or disabled: answer 503 overloaded with
 *                           Retry-After.
 *   2. fn status 0: the lease is the callee's (copy it; release it even when
 *      the request is gone by then). SL_ETIMEDOUT: queue timeout → 503.
 *      SL_ECANCELED: the group was removed by reconfiguration or the router
 *      destroyed.
 *   3. If the client leaves while queued: sl_router_cancel_wait(r, ticket);
 *      0 → no callback will come; SL_ENOTFOUND → the callback came or is
 *      running, so the request must stay alive until it has the callback
 *      (and then releases the lease it got).
 *   4. Call sl_router_tick every 50-100 ms (one uv_timer on one loop is
 *      enough): capacity also appears with time alone (a slow-start ramp
 *      grows, an ejection or pause ends) and queue timeouts are enforced
 *      there (and lazily, at the head of a group's queue, on every call that
 *      touches the group).
 *   5. sl_router_release(r, &lease, &outcome) exactly once per lease.
 *
 * Load balancing strategies (the group's, else opts.default_strategy). Only
 * eligible backends take part: not ejected, not marked unhealthy, not paused,
 * and in-flight below the (ramped) concurrency limit. The excluded id (the
 * backend that just failed) is a preference: it is skipped unless it is the
 * only eligible backend. ew = effective weight (weight x ramp factor).
 *   weighted          random in proportion to ew, from the draw u.
 *   round-robin       smooth weighted round-robin over ew (equal weights:
 *                     strict rotation in group order).
 *   least-outstanding the lowest (in_flight + 1) / ew; ties broken by u.
 *   latency (default) power of two choices: two distinct eligible backends
 *                     drawn uniformly from u (i = floor(u m), then
 *                     j from the fraction u m - i), the lower
 *                     (cost_ms + 1) x (in_flight + 1) / ew wins (tie: the
 *                     first). cost_ms is the backend's peak-EWMA of time to
 *                     first token, or, with no sample yet, the mean of its
 *                     group's sampled backends (0 when none).
 *
 * Peak-EWMA (tau = opts.ewma_decay_ms). A sample x at time t, with the last
 * update at s: if x >= e then e = x (a slow answer counts at once) else
 * e = e w + x (1 - w), w = exp(-(t - s) / tau). Read at time t, the estimate
 * is e exp(-(t - s) / tau): an idle backend drifts toward 0 and is tried
 * again. Samples come from SL_ROUTER_OK and SL_ROUTER_FAIL_TIMEOUT outcomes
 * with ttft_ms > 0.
 *
 * Slow start. A ramp starts when a backend id joins by reconfiguration (or
 * at the first configuration with opts.slow_start_initial), when an ejection
 * ends (the ramp starts at the ejection's end), and when mark_healthy follows
 * mark_unhealthy or an ejection. With f = clamp(elapsed / window, 0, 1):
 *     factor = floor + (1 - floor) * f^(1/a)
 * where a = 1 for the linear curve and a = opts.slow_start_aggression (> 1:
 * the ramp rises fast at first) for the aggressive curve. Effective weight =
 * weight x factor; concurrency limit = max(1, floor(max_concurrency x factor))
 * (max_concurrency 0 = unlimited, not ramped). E.g. linear, floor 0.1, a
 * backend with max_concurrency 10: 1 at 0 %, 3 at 25 %, 5 at 50 %, 10 at 100 %.
 * When a whole group restarts, the small limits make admission queue or shed
 * the excess while the ramp proceeds.
 *
 * Outcomes and health. SL_ROUTER_OK resets the failure streaks. CONNECT,
 * TIMEOUT and 5XX add one; at opts.eject_consecutive the backend is ejected
 * (and at opts.eject_connect_consecutive CONNECT failures in a row, which a
 * TIMEOUT, 5XX or OK breaks: a dead process is taken out after one refusal)
 * for min(eject_base_ms x level, eject_max_ms), where level is 1 + the
 * previous level less one for each eject_base_ms since the previous ejection
 * ended (so repeat offenders stay out longer, and the penalty heals). An
 * ejection that would leave more than max_ejection_percent of the group
 * ejected is refused (counted in ejections_refused; the streak stays, so the
 * next failure asks again); with the default 50 a group of one backend is
 * never ejected. A backend back from ejection is half-open and probing: its
 * first outcome decides, a failure re-ejects it at once (cap permitting), a
 * success closes the probe. OVERLOADED (the backend's own 429, or a 503 with
 * Retry-After) with retry_after_s > 0 pauses the backend for
 * min(retry_after_s, pause_max_ms) and neither adds to nor resets the streak;
 * without Retry-After the caller reports a 429 as NEUTRAL and a 503 as 5XX.
 * NEUTRAL (the request's own 4xx, a client that left) only ends the lease.
 * Mapping an attempt: transport error or reset → CONNECT; SL_ETIMEDOUT →
 * TIMEOUT; 2xx (a stream that ended with [DONE]) → OK; a 2xx stream cut
 * short → 5XX; 500/502/504 → 5XX; 503 → OVERLOADED with Retry-After, else
 * 5XX; 429 → OVERLOADED with Retry-After, else NEUTRAL; other 4xx → NEUTRAL.
 * Active health checks call mark_unhealthy / mark_healthy: an unhealthy
 * backend is not picked (not subject to max_ejection_percent), and
 * mark_healthy also lifts an outlier ejection; both then ramp.
 *
 * Retry budget. Gateway-wide, over a sliding window (opts.retry_budget_window_ms
 * in ten buckets): a retry is granted while
 *     retries_in_window < ratio x requests_in_window + min_per_s x window_s.
 * Call sl_router_note_request once per client request (not per attempt).
 */
#ifndef SL_GATEWAY_ROUTER_H
#define SL_GATEWAY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_ROUTER_NAME_MAX 256          /* bytes of a group name or backend id, NUL included */
#define SL_ROUTER_MAX_GROUP_BACKENDS 4096
#define SL_ROUTER_MAX_QUEUE 100000      /* hard maximum of queue_max */
#define SL_ROUTER_MAX_MS 1e10           /* hard maximum of every duration option (about 115 days) */

/* Monotonic milliseconds; tests pass a fake clock. */
typedef uint64_t (*sl_clock_fn)(void *ud);

typedef struct sl_router sl_router;

typedef enum {
    SL_ROUTER_STRATEGY_DEFAULT = 0, /* in a group: use opts.default_strategy */
    SL_ROUTER_STRATEGY_LATENCY,
    SL_ROUTER_STRATEGY_WEIGHTED,
    SL_ROUTER_STRATEGY_ROUND_ROBIN,
    SL_ROUTER_STRATEGY_LEAST_OUTSTANDING,
} sl_router_strategy;

typedef enum { SL_ROUTER_RAMP_LINEAR = 0, SL_ROUTER_RAMP_AGGRESSIVE } sl_router_ramp_curve;

typedef struct sl_router_opts {
    sl_router_strategy default_strategy; /* LATENCY */
    int queue_max;                   /* waiters per group, default 100; 0 = no queue (reject at once) */
    double queue_timeout_ms;         /* longest wait in the queue, default 10000 */
    int eject_consecutive;           /* failures in a row that eject, default 5; 0 = never eject */
    int eject_connect_consecutive;   /* CONNECT failures in a row that eject, default 1 (a refused or reset
                                      * connection is unambiguous); 0 = only eject_consecutive counts */
    double eject_base_ms;            /* default 30000 */
    double eject_max_ms;             /* default 300000 */
    int max_ejection_percent;        /* 0..100, default 50 */
    double slow_start_window_ms;     /* default 30000; 0 = no slow start */
    double slow_start_floor;         /* (0, 1], default 0.1 */
    sl_router_ramp_curve slow_start_curve; /* LINEAR */
    double slow_start_aggression;    /* >= 1, used by the aggressive curve, default 2 */
    bool slow_start_initial;         /* ramp the backends of the first configuration too, default false */
    double pause_max_ms;             /* cap on a Retry-After pause, default 60000 */
    double ewma_decay_ms;            /* peak-EWMA time constant tau, default 10000 */
    double retry_budget_ratio;       /* >= 0, default 0.2 */
    double retry_budget_min_per_s;   /* >= 0, default 10 */
    double retry_budget_window_ms;   /* default 10000 */
    uint64_t seed;                   /* PRNG for picks made for queued waiters; 0 = random */
} sl_router_opts;

typedef struct sl_router_backend_conf {
    const char *id;          /* stable id, unique across all groups, < SL_ROUTER_NAME_MAX bytes */
    double weight;           /* > 0 */
    int max_concurrency;     /* >= 0; 0 = unlimited */
    bool no_slow_start;      /* always at full share (an in-process engine that admits by its own limits) */
} sl_router_backend_conf;

typedef struct sl_router_group_conf {
    const char *name;        /* unique, < SL_ROUTER_NAME_MAX bytes */
    sl_router_strategy strategy; /* DEFAULT = opts.default_strategy */
    int queue_max;           /* < 0 = opts.queue_max; 0 = no queue */
    double queue_timeout_ms; /* < 0 = opts.queue_timeout_ms */
    const sl_router_backend_conf *backends;
    size_t n_backends;       /* 1..SL_ROUTER_MAX_GROUP_BACKENDS */
} sl_router_group_conf;

/* A backend handed out for one attempt; in-flight was counted for it. */
typedef struct sl_router_lease {
    const char *backend_id;  /* valid until the lease is released; map to the backend by id */
    size_t index;            /* position in its group's conf when picked */
    double queued_ms;        /* time spent in the admission queue (0 when none) */
    void *priv;              /* router-owned; NULL after release */
} sl_router_lease;

typedef enum {
    SL_ROUTER_OK = 0,          /* a 2xx answer */
    SL_ROUTER_NEUTRAL,         /* says nothing about the backend: 4xx of the request, client left */
    SL_ROUTER_FAIL_CONNECT,    /* could not connect, reset before an answer */
    SL_ROUTER_FAIL_TIMEOUT,    /* any timeout of the attempt */
    SL_ROUTER_FAIL_5XX,        /* a 5xx (a 503 without Retry-After included) */
    SL_ROUTER_OVERLOADED,      /* the backend's 429, or 503 with Retry-After */
} sl_router_outcome_kind;

typedef struct sl_router_outcome {
    sl_router_outcome_kind kind;
    double ttft_ms;          /* time to first token (or to the answer) when > 0 */
    double retry_after_s;    /* OVERLOADED: the Retry-After in seconds; <= 0 = none */
} sl_router_outcome;

/* Called once for a queued waiter; see the header comment for the statuses. */
typedef void (*sl_router_wait_fn)(void *ud, int status, const sl_router_lease *lease);

typedef enum {
    SL_ROUTER_CLOSED = 0,    /* serving normally */
    SL_ROUTER_OPEN,          /* ejected or marked unhealthy: not picked */
    SL_ROUTER_HALF_OPEN,     /* ramping up (slow start) or probing after an ejection */
} sl_router_circuit;

typedef struct sl_router_backend_state {
    char id[SL_ROUTER_NAME_MAX];
    char group[SL_ROUTER_NAME_MAX];
    sl_router_circuit state;
    bool unhealthy;          /* marked by the active checker */
    bool probing;            /* back from ejection, first outcome pending */
    int in_flight;
    int limit_now;           /* ramped concurrency limit; 0 = unlimited */
    double weight, effective_weight, ramp_factor;
    double ewma_ttft_ms;     /* decayed to now; 0 without samples */
    int consecutive_failures;
    uint64_t ejections;      /* times ejected so far */
    int eject_level;         /* multiplier of the last ejection */
    double ejected_ms_left, paused_ms_left;
    uint64_t requests, failures; /* leases released; of those, CONNECT, TIMEOUT or 5XX outcomes */
} sl_router_backend_state;

typedef struct sl_router_group_stats {
    char name[SL_ROUTER_NAME_MAX];
    sl_router_strategy strategy; /* resolved, never DEFAULT */
    int queue_depth, queue_max;
    uint64_t enqueued, granted, rejected_full, timed_out, cancelled;
    double wait_ms_sum, wait_ms_max; /* over granted waiters */
    uint64_t ejections_refused;  /* ejections the max_ejection_percent cap held back */
} sl_router_group_stats;

typedef struct sl_router_budget_stats {
    uint64_t requests_in_window, retries_in_window;
    uint64_t granted, denied;    /* since creation */
} sl_router_budget_stats;

/* Fills o with every default named in sl_router_opts. */
void sl_router_opts_default(sl_router_opts *o);
/* Returns 0, or SL_EINVAL with a message naming the bad field in err (may be NULL). */
int sl_router_opts_validate(const sl_router_opts *o, char *err, size_t errcap);
/* Maps "latency", "weighted", "round-robin", "least-outstanding" (and
 * "simple-shuffle" = weighted); returns 0 or SL_EINVAL. NULL = DEFAULT. */
int sl_router_strategy_parse(const char *s, sl_router_strategy *out);
/* Returns the strategy's config name ("latency", ...; "default"). Static string. */
const char *sl_router_strategy_name(sl_router_strategy s);

/* Creates a router with no groups; clock NULL = sl_now_ms. Free with
 * sl_router_destroy. 0, SL_EINVAL (bad opts, message in err) or SL_ENOMEM. */
int sl_router_create(const sl_router_opts *o, sl_clock_fn clock, void *clock_ud, sl_router **out,
                     char *err, size_t errcap);
/* Cancels every waiter (callbacks with SL_ECANCELED) and frees the router.
 * Every lease must have been released. NULL is a no-op. */
void sl_router_destroy(sl_router *r);

/* Installs a new set of groups (copies everything). Backends keep their
 * runtime state when their id survives (even when it moves group); new ids
 * start in slow start (see above); removed groups' waiters get SL_ECANCELED,
 * surviving groups keep their queue. On error nothing changes: SL_EINVAL or
 * SL_EEXIST (duplicate id or group name) with a message in err, or SL_ENOMEM. */
int sl_router_set_groups(sl_router *r, const sl_router_group_conf *groups, size_t n, char *err,
                         size_t errcap);

/* Picks a backend of group for one attempt (u uniform in [0,1)). Returns 0
 * with *out filled, SL_EAGAIN when none has capacity or others are queued
 * first, SL_ENOTFOUND for an unknown group. */
int sl_router_acquire(sl_router *r, const char *group, const char *exclude_id, double u,
                      sl_router_lease *out);
/* Like sl_router_acquire, but queues the request when nothing has capacity.
 * Returns 0 (*out filled), SL_EAGAIN (queued: *ticket identifies the wait,
 * fn(ud, ...) will come), SL_EFULL (queue full or disabled: reject),
 * SL_ENOTFOUND, SL_EINVAL (fn NULL) or SL_ENOMEM. */
int sl_router_acquire_or_wait(sl_router *r, const char *group, const char *exclude_id, double u,
                              sl_router_wait_fn fn, void *ud, sl_router_lease *out, uint64_t *ticket);
/* Withdraws a queued waiter: 0 (no callback will come) or SL_ENOTFOUND (its
 * callback already ran or is running). O(waiters queued). */
int sl_router_cancel_wait(sl_router *r, uint64_t ticket);
/* Ends a lease with its outcome (NULL = NEUTRAL) and hands freed capacity to
 * waiters. A lease whose priv is NULL is ignored; priv is NULL afterwards. */
void sl_router_release(sl_router *r, sl_router_lease *lease, const sl_router_outcome *outcome);
/* Times out expired waiters and serves waiters that time made room for. */
void sl_router_tick(sl_router *r);

/* Active health verdicts. Return 0 or SL_ENOTFOUND for an unknown id. */
int sl_router_mark_unhealthy(sl_router *r, const char *backend_id);
int sl_router_mark_healthy(sl_router *r, const char *backend_id);

/* Counts one client request into the retry budget. */
void sl_router_note_request(sl_router *r);
/* Returns true (and counts the retry) when the budget allows a retry now. */
bool sl_router_retry_budget_try_acquire(sl_router *r);
/* Fills *out with the retry budget's window and totals. */
void sl_router_retry_budget_stats(sl_router *r, sl_router_budget_stats *out);

/* Copies the state of up to cap backends (group order) into out; *n = how
 * many exist (may exceed cap). Returns 0. */
int sl_router_snapshot(sl_router *r, sl_router_backend_state *out, size_t cap, size_t *n);
/* Copies the stats of up to cap groups into out; *n = how many exist. Returns 0. */
int sl_router_group_stats_get(sl_router *r, sl_router_group_stats *out, size_t cap, size_t *n);
/* Waiters queued in group now (0 for an unknown group). */
int sl_router_queue_depth(sl_router *r, const char *group);

#endif
