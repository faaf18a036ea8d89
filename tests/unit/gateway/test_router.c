/* Router tests: every one runs on a fake clock with fixed random draws. */
#include "core/core.h"
#include "gateway/router.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

static uint64_t fake_now;
static uint64_t fake_clock(void *ud)
{
    SL_UNUSED(ud);
    return fake_now;
}

/* A local, seeded PRNG so that statistical tests are reproducible. */
static uint64_t t_rng = 0x9E3779B97F4A7C15ULL;
static double t_unit(void)
{
    t_rng ^= t_rng >> 12;
    t_rng ^= t_rng << 25;
    t_rng ^= t_rng >> 27;
    return (double)((t_rng * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

static sl_router *mk(const sl_router_opts *o)
{
    sl_router *r = NULL;
    char err[256] = "";
    int rc = sl_router_create(o, fake_clock, NULL, &r, err, sizeof err);
    EXPECT_EQ_INT(rc, 0);
    return r;
}

/* One group "g" with n backends "a", "b", ... */
static int set_one(sl_router *r, sl_router_strategy st, const double *w, const int *mc, size_t n, int qmax,
                   double qtimeout)
{
    static const char *ids[] = {"a", "b", "c", "d", "e", "f"};
    sl_router_backend_conf bc[6];
    for (size_t i = 0; i < n; i++)
        bc[i] = (sl_router_backend_conf){ids[i], w ? w[i] : 1.0, mc ? mc[i] : 0, false};
    sl_router_group_conf g = {"g", st, qmax, qtimeout, bc, n};
    char err[256] = "";
    return sl_router_set_groups(r, &g, 1, err, sizeof err);
}

static const sl_router_backend_state *state_of(sl_router *r, const char *id, sl_router_backend_state *buf)
{
    sl_router_backend_state all[8];
    size_t n = 0;
    sl_router_snapshot(r, all, 8, &n);
    for (size_t i = 0; i < n && i < 8; i++) {
        if (!strcmp(all[i].id, id)) {
            *buf = all[i];
            return buf;
        }
    }
    return NULL;
}

static const sl_router_outcome OK100 = {SL_ROUTER_OK, 100, 0};
static const sl_router_outcome FAIL = {SL_ROUTER_FAIL_5XX, 0, 0};

/* ---- options and configuration errors ---- */

static void test_opts_and_config_errors(void)
{
    sl_router_opts o;
    sl_router_opts_default(&o);
    char err[256] = "";
    EXPECT_EQ_INT(sl_router_opts_validate(&o, err, sizeof err), 0);
    EXPECT_EQ_INT(o.default_strategy, SL_ROUTER_STRATEGY_LATENCY);
    EXPECT_NEAR(o.slow_start_floor, 0.1, 0);
    EXPECT_NEAR(o.retry_budget_ratio, 0.2, 0);
    o.slow_start_floor = 0;
    EXPECT_EQ_INT(sl_router_opts_validate(&o, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "slow_start_floor");
    sl_router_opts_default(&o);
    o.eject_max_ms = 10;
    EXPECT_EQ_INT(sl_router_opts_validate(&o, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "eject_max_ms");
    sl_router_opts_default(&o);
    o.queue_timeout_ms = 1e300;
    EXPECT_EQ_INT(sl_router_opts_validate(&o, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "queue_timeout_ms");
    o.queue_timeout_ms = NAN;
    EXPECT_EQ_INT(sl_router_opts_validate(&o, err, sizeof err), SL_EINVAL);

    sl_router_strategy st;
    EXPECT_EQ_INT(sl_router_strategy_parse("round-robin", &st), 0);
    EXPECT_EQ_INT(st, SL_ROUTER_STRATEGY_ROUND_ROBIN);
    EXPECT_EQ_INT(sl_router_strategy_parse("least-outstanding", &st), 0);
    EXPECT_EQ_INT(st, SL_ROUTER_STRATEGY_LEAST_OUTSTANDING);
    EXPECT_EQ_INT(sl_router_strategy_parse("fastest", &st), SL_EINVAL);
    EXPECT_EQ_STR(sl_router_strategy_name(SL_ROUTER_STRATEGY_LATENCY), "latency");

    sl_router *r = mk(NULL);
    sl_router_backend_conf dup[2] = {{"x", 1, 0, false}, {"x", 1, 0, false}};
    sl_router_group_conf g = {"g", 0, -1, -1, dup, 2};
    EXPECT_EQ_INT(sl_router_set_groups(r, &g, 1, err, sizeof err), SL_EEXIST);
    EXPECT_CONTAINS(err, "'x' appears twice");
    sl_router_backend_conf bad[1] = {{"y", 0, 0, false}};
    g = (sl_router_group_conf){"g", 0, -1, -1, bad, 1};
    EXPECT_EQ_INT(sl_router_set_groups(r, &g, 1, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "weight");
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), SL_ENOTFOUND);
    sl_router_destroy(r);
}

/* ---- strategies ---- */

static void test_weighted_proportions(void)
{
    sl_router_opts o;
    sl_router_opts_default(&o);
    sl_router *r = mk(&o);
    double w[3] = {1, 2, 7};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_WEIGHTED, w, NULL, 3, -1, -1), 0);
    int counts[3] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        sl_router_lease l;
        if (sl_router_acquire(r, "g", NULL, t_unit(), &l) != 0) {
            EXPECT(0);
            break;
        }
        counts[l.index]++;
        sl_router_release(r, &l, NULL);
    }
    /* binomial sd for p = 0.7 over 20000 draws is 0.0032: 0.015 is > 4 sd */
    EXPECT_NEAR(counts[0] / (double)N, 0.1, 0.015);
    EXPECT_NEAR(counts[1] / (double)N, 0.2, 0.015);
    EXPECT_NEAR(counts[2] / (double)N, 0.7, 0.015);
    /* the draw maps onto cumulative weights: u < 0.1 -> a, u in [0.1, 0.3) -> b */
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.05, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    sl_router_release(r, &l, NULL);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.25, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "b");
    sl_router_release(r, &l, NULL);
    sl_router_destroy(r);
}

static void test_round_robin_order(void)
{
    sl_router *r = mk(NULL);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, NULL, 3, -1, -1), 0);
    char seq[8] = {0};
    for (int i = 0; i < 6; i++) {
        sl_router_lease l;
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.99, &l), 0);
        seq[i] = l.backend_id[0];
        sl_router_release(r, &l, NULL);
    }
    EXPECT_EQ_STR(seq, "abcabc");
    sl_router_destroy(r);
    /* smooth weighted round-robin with weights 5,1,1 interleaves */
    double w[3] = {5, 1, 1};
    r = mk(NULL);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, w, NULL, 3, -1, -1), 0);
    memset(seq, 0, sizeof seq);
    for (int i = 0; i < 7; i++) {
        sl_router_lease l;
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), 0);
        seq[i] = l.backend_id[0];
        sl_router_release(r, &l, NULL);
    }
    EXPECT_EQ_STR(seq, "aabacaa");
    sl_router_destroy(r);
}

static void test_least_outstanding(void)
{
    sl_router *r = mk(NULL);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_LEAST_OUTSTANDING, NULL, NULL, 3, -1, -1), 0);
    sl_router_lease l[5];
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[0]), 0);
    EXPECT_EQ_STR(l[0].backend_id, "a");
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[1]), 0);
    EXPECT_EQ_STR(l[1].backend_id, "b");
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[2]), 0);
    EXPECT_EQ_STR(l[2].backend_id, "c");
    /* all at 1: the draw breaks the tie, 0.99 -> the last of three */
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.99, &l[3]), 0);
    EXPECT_EQ_STR(l[3].backend_id, "c");
    /* a=1, b=1, c=2; a finishes -> a is the least loaded whatever the draw */
    sl_router_release(r, &l[0], &OK100);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.99, &l[4]), 0);
    EXPECT_EQ_STR(l[4].backend_id, "a");
    /* now a=1, b=1, c=2: b with draw 0.99 (tie a,b -> the second) */
    sl_router_lease x;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.99, &x), 0);
    EXPECT_EQ_STR(x.backend_id, "b");
    sl_router_release(r, &x, NULL);
    for (int i = 1; i < 5; i++)
        sl_router_release(r, &l[i], NULL);
    sl_router_destroy(r);
}

static void test_latency_peak_ewma(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL); /* default strategy latency, tau 10 s */
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, NULL, 2, -1, -1), 0);
    sl_router_lease l;
    sl_router_backend_state st;
    /* seed both with 100 ms (exclude steers the pick) */
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0.5, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    sl_router_release(r, &l, &OK100);
    /* b has no sample: it costs the group mean (100), a tie, so the first
     * draw wins: u = 0.3 draws a first (0.8 would draw b first) */
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.3, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    sl_router_release(r, &l, NULL);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.8, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "b");
    sl_router_release(r, &l, NULL);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0.5, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "b");
    sl_router_outcome junk = {SL_ROUTER_OK, INFINITY, 0}; /* ignored as a sample */
    sl_router_release(r, &l, &junk);
    EXPECT(state_of(r, "b", &st));
    EXPECT_NEAR(st.ewma_ttft_ms, 0, 0);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0.5, &l), 0);
    sl_router_release(r, &l, &OK100);

    /* b answers slowly once: its estimate jumps to 2000 at once */
    fake_now = 1000;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0.5, &l), 0);
    sl_router_outcome slow = {SL_ROUTER_OK, 2000, 0};
    sl_router_release(r, &l, &slow);
    EXPECT(state_of(r, "b", &st));
    EXPECT_NEAR(st.ewma_ttft_ms, 2000, 1e-9);
    for (int i = 0; i < 10; i++) {
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, i / 10.0, &l), 0);
        EXPECT_EQ_STR(l.backend_id, "a");
        sl_router_release(r, &l, NULL);
    }
    /* a fast sample one second later pulls it down by 1 - e^-0.1 */
    fake_now = 2000;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0.5, &l), 0);
    sl_router_release(r, &l, &OK100);
    EXPECT(state_of(r, "b", &st));
    EXPECT_NEAR(st.ewma_ttft_ms, 1819.1910942683, 1e-6);
    /* idle estimates decay toward 0: b by e^-1, a (last sample at 0) by e^-1.2 */
    fake_now = 12000;
    EXPECT(state_of(r, "b", &st));
    EXPECT_NEAR(st.ewma_ttft_ms, 669.2430031435, 1e-6);
    EXPECT(state_of(r, "a", &st));
    EXPECT_NEAR(st.ewma_ttft_ms, 30.1194211912, 1e-6);
    /* (cost+1)(in_flight+1): a wins while 31.119 (k+1) <= 670.243, i.e. for
     * k = 0..20 leases held on a; the 22nd pick goes to b */
    sl_router_lease held[22];
    int first_b = -1;
    for (int k = 0; k < 22; k++) {
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.3, &held[k]), 0);
        if (first_b < 0 && !strcmp(held[k].backend_id, "b"))
            first_b = k;
    }
    EXPECT_EQ_INT(first_b, 21);
    for (int k = 0; k < 22; k++)
        sl_router_release(r, &held[k], NULL);
    sl_router_destroy(r);
}

/* ---- capacity and queue ---- */

typedef struct wait_rec {
    int calls;
    int status;
    sl_router_lease lease;
    int order;
} wait_rec;
static int wait_seq;

static void on_wait(void *ud, int status, const sl_router_lease *lease)
{
    wait_rec *w = ud;
    w->calls++;
    w->status = status;
    w->order = ++wait_seq;
    if (lease)
        w->lease = *lease;
}

static void test_concurrency_limit(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL);
    int mc[2] = {2, 1};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    sl_router_lease l[4];
    for (int i = 0; i < 3; i++)
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[i]), 0);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[3]), SL_EAGAIN);
    sl_router_backend_state st;
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.in_flight, 2);
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.in_flight, 1);
    sl_router_release(r, &l[1], NULL); /* l[1] was b */
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l[3]), 0);
    EXPECT_EQ_STR(l[3].backend_id, "b");
    sl_router_release(r, &l[0], NULL);
    sl_router_release(r, &l[2], NULL);
    sl_router_release(r, &l[3], NULL);
    sl_router_release(r, &l[3], NULL); /* a second release is ignored */
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.in_flight, 0);
    sl_router_destroy(r);
}

static void test_queue_fifo_bound_timeout(void)
{
    fake_now = 0;
    wait_seq = 0;
    sl_router *r = mk(NULL);
    int mc[1] = {1};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, mc, 1, 2, 1000), 0);
    sl_router_lease held, tmp;
    uint64_t t1, t2, t3;
    wait_rec w1 = {0}, w2 = {0}, w3 = {0};
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w1, &held, &t1), 0);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w1, &tmp, &t1), SL_EAGAIN);
    fake_now = 10;
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w2, &tmp, &t2), SL_EAGAIN);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w3, &tmp, &t3), SL_EFULL);
    EXPECT_EQ_INT(sl_router_queue_depth(r, "g"), 2);
    EXPECT(t1 != t2);
    EXPECT_EQ_INT(w1.calls + w2.calls + w3.calls, 0);

    /* capacity goes to the head first, with its wait time */
    fake_now = 50;
    sl_router_release(r, &held, &OK100);
    EXPECT_EQ_INT(w1.calls, 1);
    EXPECT_EQ_INT(w1.status, 0);
    EXPECT_EQ_STR(w1.lease.backend_id, "a");
    EXPECT_NEAR(w1.lease.queued_ms, 50, 1e-9);
    EXPECT_EQ_INT(w2.calls, 0);
    /* a newcomer may not overtake the queue */
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &tmp), SL_EAGAIN);
    /* the head's wait was granted, so cancelling it finds nothing */
    EXPECT_EQ_INT(sl_router_cancel_wait(r, t1), SL_ENOTFOUND);

    fake_now = 80;
    sl_router_release(r, &w1.lease, &OK100);
    EXPECT_EQ_INT(w2.calls, 1);
    EXPECT_EQ_INT(w2.status, 0);
    EXPECT_NEAR(w2.lease.queued_ms, 70, 1e-9);
    EXPECT(w1.order < w2.order);

    /* timeout: queued at 100 with 1000 ms; nothing at 1099, SL_ETIMEDOUT at 1100 */
    wait_rec w4 = {0}, w5 = {0};
    uint64_t t4, t5;
    fake_now = 100;
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w4, &tmp, &t4), SL_EAGAIN);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w5, &tmp, &t5), SL_EAGAIN);
    EXPECT_EQ_INT(sl_router_cancel_wait(r, t5), 0);
    EXPECT_EQ_INT(sl_router_cancel_wait(r, t5), SL_ENOTFOUND);
    fake_now = 1099;
    sl_router_tick(r);
    EXPECT_EQ_INT(w4.calls, 0);
    fake_now = 1100;
    sl_router_tick(r);
    EXPECT_EQ_INT(w4.calls, 1);
    EXPECT_EQ_INT(w4.status, SL_ETIMEDOUT);
    EXPECT_EQ_INT(w5.calls, 0);
    EXPECT_EQ_INT(sl_router_queue_depth(r, "g"), 0);

    sl_router_group_stats gs[2];
    size_t n = 0;
    sl_router_group_stats_get(r, gs, 2, &n);
    EXPECT_EQ_UINT(n, 1);
    EXPECT_EQ_INT(gs[0].queue_max, 2);
    EXPECT_EQ_UINT(gs[0].enqueued, 4);
    EXPECT_EQ_UINT(gs[0].granted, 2);
    EXPECT_EQ_UINT(gs[0].rejected_full, 1);
    EXPECT_EQ_UINT(gs[0].timed_out, 1);
    EXPECT_EQ_UINT(gs[0].cancelled, 1);
    EXPECT_NEAR(gs[0].wait_ms_sum, 120, 1e-9);
    EXPECT_NEAR(gs[0].wait_ms_max, 70, 1e-9);
    sl_router_release(r, &w2.lease, NULL);

    /* queue_max 0: no queue, reject at once */
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, mc, 1, 0, 1000), 0);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w1, &held, &t1), 0);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w3, &tmp, &t3), SL_EFULL);
    sl_router_release(r, &held, NULL);
    sl_router_destroy(r);
}

/* ---- slow start ---- */

static void check_ramp(sl_router_ramp_curve curve, const double *factor, const int *limit)
{
    fake_now = 1000;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.slow_start_initial = true;
    o.slow_start_curve = curve;
    sl_router *r = mk(&o);
    double w[1] = {2};
    int mc[1] = {10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, w, mc, 1, -1, -1), 0);
    static const uint64_t at[4] = {0, 7500, 15000, 30000}; /* 0, 25, 50, 100 % of 30 s */
    for (int k = 0; k < 4; k++) {
        fake_now = 1000 + at[k];
        sl_router_backend_state st;
        EXPECT(state_of(r, "a", &st));
        EXPECT_NEAR(st.ramp_factor, factor[k], 1e-9);
        EXPECT_NEAR(st.effective_weight, 2 * factor[k], 1e-9);
        EXPECT_EQ_INT(st.limit_now, limit[k]);
        EXPECT_EQ_INT(st.state, k < 3 ? SL_ROUTER_HALF_OPEN : SL_ROUTER_CLOSED);
        /* and the limit really admits exactly that many */
        sl_router_lease l[10];
        int got = 0;
        while (got < 10 && sl_router_acquire(r, "g", NULL, 0, &l[got]) == 0)
            got++;
        EXPECT_EQ_INT(got, limit[k]);
        for (int i = 0; i < got; i++)
            sl_router_release(r, &l[i], NULL);
    }
    sl_router_destroy(r);
}

static void test_slow_start_curves(void)
{
    /* linear: 0.1 + 0.9 f */
    static const double lin[4] = {0.1, 0.325, 0.55, 1.0};
    static const int lin_lim[4] = {1, 3, 5, 10};
    check_ramp(SL_ROUTER_RAMP_LINEAR, lin, lin_lim);
    /* aggressive, aggression 2: 0.1 + 0.9 sqrt(f) */
    static const double agg[4] = {0.1, 0.55, 0.7363961030678928, 1.0};
    static const int agg_lim[4] = {1, 5, 7, 10};
    check_ramp(SL_ROUTER_RAMP_AGGRESSIVE, agg, agg_lim);
}

static void test_slow_start_whole_group_restart(void)
{
    /* every backend back at once: the floor limits admit 1 each, the rest queues */
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.slow_start_initial = true;
    sl_router *r = mk(&o);
    int mc[2] = {10, 10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_LEAST_OUTSTANDING, NULL, mc, 2, 5, 60000), 0);
    sl_router_lease l[2], tmp;
    wait_rec w[6] = {{0}};
    uint64_t t;
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w[0], &l[0], &t), 0);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w[0], &l[1], &t), 0);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w[i], &tmp, &t), SL_EAGAIN);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w[5], &tmp, &t), SL_EFULL);
    /* at 25 % each admits 3: the ramp alone (tick) lets 4 more in */
    fake_now = 7500;
    sl_router_tick(r);
    int granted = 0;
    for (int i = 0; i < 5; i++)
        granted += w[i].calls == 1 && w[i].status == 0;
    EXPECT_EQ_INT(granted, 4);
    EXPECT_EQ_INT(sl_router_queue_depth(r, "g"), 1);
    sl_router_release(r, &l[0], NULL);
    sl_router_release(r, &l[1], NULL);
    for (int i = 0; i < 5; i++)
        if (w[i].calls)
            sl_router_release(r, &w[i].lease, NULL);
    EXPECT_EQ_INT(sl_router_queue_depth(r, "g"), 0);
    sl_router_destroy(r); /* nothing queued, nothing held */
}

/* ---- ejection ---- */

static void fail_on(sl_router *r, const char *want, const char *other)
{
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", other, 0, &l), 0);
    EXPECT_EQ_STR(l.backend_id, want);
    sl_router_release(r, &l, &FAIL);
}

static void test_ejection(void)
{
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.eject_consecutive = 3;
    o.eject_base_ms = 1000;
    o.eject_max_ms = 2500;
    o.slow_start_window_ms = 10000;
    sl_router *r = mk(&o);
    int mc[2] = {10, 10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    sl_router_backend_state st;

    fail_on(r, "a", "b");
    fail_on(r, "a", "b");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.consecutive_failures, 2);
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    fail_on(r, "a", "b");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_OPEN);
    EXPECT_EQ_UINT(st.ejections, 1);
    EXPECT_NEAR(st.ejected_ms_left, 1000, 1e-9);
    /* not picked, even when the other one is excluded */
    for (int i = 0; i < 4; i++) {
        sl_router_lease l;
        EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &l), 0);
        EXPECT_EQ_STR(l.backend_id, "b");
        sl_router_release(r, &l, NULL);
    }
    /* max_ejection_percent 50: b may not join a in ejection */
    fail_on(r, "b", NULL);
    fail_on(r, "b", NULL);
    fail_on(r, "b", NULL);
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    EXPECT_EQ_INT(st.consecutive_failures, 3);
    sl_router_group_stats gs;
    size_t n;
    sl_router_group_stats_get(r, &gs, 1, &n);
    EXPECT_EQ_UINT(gs.ejections_refused, 1);
    sl_router_lease lb;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &lb), 0);
    sl_router_release(r, &lb, &OK100); /* b recovers */

    /* a returns at 1000: half-open, ramping from the floor (limit 1) */
    fake_now = 1000;
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_HALF_OPEN);
    EXPECT(st.probing);
    EXPECT_EQ_INT(st.limit_now, 1);
    EXPECT_NEAR(st.effective_weight, 0.1, 1e-9);
    /* the probe fails: ejected again at once, level 2 -> 2000 ms */
    fail_on(r, "a", "b");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_OPEN);
    EXPECT_EQ_INT(st.eject_level, 2);
    EXPECT_NEAR(st.ejected_ms_left, 2000, 1e-9);
    /* again at 3000: level 3 -> 3000 ms, capped at 2500 */
    fake_now = 3000;
    fail_on(r, "a", "b");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.eject_level, 3);
    EXPECT_NEAR(st.ejected_ms_left, 2500, 1e-9);
    EXPECT_EQ_UINT(st.ejections, 3);
    /* back at 5500; a success closes the probe; the ramp continues */
    fake_now = 5500;
    sl_router_lease la;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &la), 0);
    EXPECT_EQ_STR(la.backend_id, "a");
    sl_router_release(r, &la, &OK100);
    fake_now = 10500; /* half the 10 s window after the return */
    EXPECT(state_of(r, "a", &st));
    EXPECT(!st.probing);
    EXPECT_EQ_INT(st.state, SL_ROUTER_HALF_OPEN);
    EXPECT_NEAR(st.ramp_factor, 0.55, 1e-9);
    EXPECT_EQ_INT(st.limit_now, 5);
    /* 5 s after the last ejection ended, the level healed from 3 to 0: next is 1 */
    fail_on(r, "a", "b");
    fail_on(r, "a", "b");
    fail_on(r, "a", "b");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.eject_level, 1);
    EXPECT_NEAR(st.ejected_ms_left, 1000, 1e-9);
    sl_router_destroy(r);
}

/* One refused connection ejects (eject_connect_consecutive 1), while 5xx
 * need eject_consecutive in a row; a 5xx between refusals breaks the streak. */
static void test_connect_ejection(void)
{
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.eject_consecutive = 5;
    o.eject_connect_consecutive = 2;
    o.eject_base_ms = 1000;
    o.max_ejection_percent = 100;
    sl_router *r = mk(&o);
    int mc[2] = {10, 10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    static const sl_router_outcome CONN = {SL_ROUTER_FAIL_CONNECT, 0, 0};
    sl_router_backend_state st;
    sl_router_lease l;
    /* connect, 5xx, connect: no two refusals in a row */
    const sl_router_outcome *seq[3] = {&CONN, &FAIL, &CONN};
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &l), 0);
        EXPECT_EQ_STR(l.backend_id, "a");
        sl_router_release(r, &l, seq[i]);
    }
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    EXPECT_EQ_INT(st.consecutive_failures, 3);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &l), 0);
    sl_router_release(r, &l, &CONN);
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_OPEN);
    sl_router_destroy(r);

    /* the default: the first refusal ejects */
    sl_router_opts_default(&o);
    o.max_ejection_percent = 100;
    r = mk(&o);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    sl_router_release(r, &l, &CONN);
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_OPEN);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0, &l), 0);
        EXPECT_EQ_STR(l.backend_id, "b");
        sl_router_release(r, &l, NULL);
    }
    sl_router_destroy(r);
}

/* A backend with no_slow_start takes its full share at once, even after an
 * unhealthy spell; its neighbour without the flag ramps. */
static void test_no_slow_start(void)
{
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.slow_start_window_ms = 10000;
    sl_router *r = mk(&o);
    sl_router_backend_conf bc[2] = {{"a", 1, 10, true}, {"b", 1, 10, false}};
    sl_router_group_conf gc = {"g", SL_ROUTER_STRATEGY_ROUND_ROBIN, -1, -1, bc, 2};
    EXPECT_EQ_INT(sl_router_set_groups(r, &gc, 1, NULL, 0), 0);
    EXPECT_EQ_INT(sl_router_mark_unhealthy(r, "a"), 0);
    EXPECT_EQ_INT(sl_router_mark_unhealthy(r, "b"), 0);
    fake_now = 100;
    EXPECT_EQ_INT(sl_router_mark_healthy(r, "a"), 0);
    EXPECT_EQ_INT(sl_router_mark_healthy(r, "b"), 0);
    sl_router_backend_state st;
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.limit_now, 10);
    EXPECT_NEAR(st.ramp_factor, 1.0, 1e-12);
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.limit_now, 1);
    sl_router_destroy(r);
}

static void test_ejection_level_partial_heal(void)
{
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.eject_consecutive = 1;
    o.eject_base_ms = 1000;
    o.eject_max_ms = 100000;
    o.max_ejection_percent = 100;
    o.slow_start_window_ms = 0;
    sl_router *r = mk(&o);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, NULL, 1, -1, -1), 0);
    sl_router_backend_state st;
    fail_on(r, "a", NULL); /* level 1, until 1000 */
    fake_now = 1000;
    fail_on(r, "a", NULL); /* probe fails: level 2, until 3000 */
    fake_now = 3000;
    fail_on(r, "a", NULL); /* level 3, until 6000 */
    fake_now = 6000;
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), 0);
    sl_router_release(r, &l, &OK100);
    fake_now = 7500; /* 1.5 base times later: healed by one -> 2 + 1 */
    fail_on(r, "a", NULL);
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.eject_level, 3);
    EXPECT_NEAR(st.ejected_ms_left, 3000, 1e-9);
    /* a group of one with the default cap 50 is never ejected */
    sl_router_destroy(r);
    sl_router_opts_default(&o);
    o.eject_consecutive = 1;
    r = mk(&o);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, NULL, 1, -1, -1), 0);
    fail_on(r, "a", NULL);
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    EXPECT_EQ_UINT(st.ejections, 0);
    sl_router_destroy(r);
}

static void test_health_hooks(void)
{
    fake_now = 0;
    sl_router_opts o;
    sl_router_opts_default(&o);
    sl_router *r = mk(&o);
    int mc[2] = {10, 10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    EXPECT_EQ_INT(sl_router_mark_unhealthy(r, "nope"), SL_ENOTFOUND);
    EXPECT_EQ_INT(sl_router_mark_unhealthy(r, "a"), 0);
    EXPECT_EQ_INT(sl_router_mark_unhealthy(r, "b"), 0); /* not subject to the ejection cap */
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), SL_EAGAIN);
    sl_router_backend_state st;
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_OPEN);
    EXPECT(st.unhealthy);
    /* a waiter is served the moment a checker brings one back, at the floor */
    wait_rec w = {0};
    uint64_t t;
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "g", NULL, 0, on_wait, &w, &l, &t), SL_EAGAIN);
    fake_now = 100;
    EXPECT_EQ_INT(sl_router_mark_healthy(r, "a"), 0);
    EXPECT_EQ_INT(w.calls, 1);
    EXPECT_EQ_INT(w.status, 0);
    EXPECT_EQ_STR(w.lease.backend_id, "a");
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_HALF_OPEN);
    EXPECT_EQ_INT(st.limit_now, 1);
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), SL_EAGAIN); /* a's 1 is taken, b is down */
    sl_router_release(r, &w.lease, &OK100);
    sl_router_destroy(r);
}

/* ---- Retry-After ---- */

static void test_retry_after_pause(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_WEIGHTED, NULL, NULL, 2, -1, -1), 0);
    sl_router_lease l;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    sl_router_outcome busy = {SL_ROUTER_OVERLOADED, 0, 2.0};
    sl_router_release(r, &l, &busy);
    sl_router_backend_state st;
    EXPECT(state_of(r, "a", &st));
    EXPECT_NEAR(st.paused_ms_left, 2000, 1e-9);
    EXPECT_EQ_INT(st.consecutive_failures, 0);
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    EXPECT_EQ_UINT(st.failures, 0);
    fake_now = 1999;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "b");
    sl_router_release(r, &l, NULL);
    fake_now = 2000;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0, &l), 0);
    EXPECT_EQ_STR(l.backend_id, "a");
    /* an hour of Retry-After is capped at pause_max_ms (60 s) */
    busy.retry_after_s = 3600;
    sl_router_release(r, &l, &busy);
    EXPECT(state_of(r, "a", &st));
    EXPECT_NEAR(st.paused_ms_left, 60000, 1e-9);
    /* a streak is neither fed nor reset by the pause */
    sl_router_destroy(r);
}

/* ---- retry budget ---- */

static void test_retry_budget(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL); /* 20 % + 10/s over 10 s */
    /* 100 requests per second, each fails once and asks for one retry */
    int per_window[7] = {0};
    int total_late = 0;
    for (uint64_t t = 0; t < 70000; t += 10) {
        fake_now = t;
        sl_router_note_request(r);
        if (sl_router_retry_budget_try_acquire(r)) {
            per_window[t / 10000]++;
            if (t >= 20000)
                total_late++;
        }
    }
    /* the first window may use the 100-retry reserve plus 20 % of its requests */
    EXPECT(per_window[0] <= 300);
    /* steady state: (0.2 x 100 + 10) per second = 300 per 10 s window */
    for (int k = 1; k < 7; k++) {
        EXPECT(per_window[k] <= 300);
        EXPECT(per_window[k] >= 280);
    }
    EXPECT(total_late <= 1500 && total_late >= 1470);
    sl_router_budget_stats bs;
    sl_router_retry_budget_stats(r, &bs);
    EXPECT(bs.requests_in_window >= 900 && bs.requests_in_window <= 1000);
    EXPECT(bs.retries_in_window <= 300);
    EXPECT_EQ_UINT(bs.granted + bs.denied, 7000);
    sl_router_destroy(r);

    /* no traffic: only the minimum, 10/s x 10 s */
    fake_now = 0;
    r = mk(NULL);
    int granted = 0;
    for (int i = 0; i < 500; i++)
        granted += sl_router_retry_budget_try_acquire(r);
    EXPECT_EQ_INT(granted, 100);
    sl_router_destroy(r);
}

/* ---- reconfiguration ---- */

static void test_reconfigure_keeps_state(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL);
    int mc[2] = {10, 10};
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_ROUND_ROBIN, NULL, mc, 2, -1, -1), 0);
    fail_on(r, "a", "b");
    fail_on(r, "a", "b");
    sl_router_lease la, lb;
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "b", 0, &la), 0);
    EXPECT_EQ_STR(la.backend_id, "a");
    EXPECT_EQ_INT(sl_router_acquire(r, "g", "a", 0, &lb), 0);
    EXPECT_EQ_STR(lb.backend_id, "b");
    /* a waiter in a group that goes away is cancelled */
    sl_router_backend_conf ob[1] = {{"o1", 1, 1, false}};
    sl_router_group_conf two[2] = {
        {"g", SL_ROUTER_STRATEGY_ROUND_ROBIN, -1, -1, (sl_router_backend_conf[]){{"a", 1, 10, false}, {"b", 1, 10, false}}, 2},
        {"old", 0, -1, -1, ob, 1}};
    char err[256];
    EXPECT_EQ_INT(sl_router_set_groups(r, two, 2, err, sizeof err), 0);
    sl_router_lease lo, tmp;
    wait_rec wo = {0};
    uint64_t t;
    EXPECT_EQ_INT(sl_router_acquire(r, "old", NULL, 0, &lo), 0);
    EXPECT_EQ_INT(sl_router_acquire_or_wait(r, "old", NULL, 0, on_wait, &wo, &tmp, &t), SL_EAGAIN);

    /* new config: a leaves, b stays (weight 3), c joins */
    fake_now = 1000;
    sl_router_backend_conf nb[2] = {{"b", 3, 10, false}, {"c", 1, 10, false}};
    sl_router_group_conf ng = {"g", SL_ROUTER_STRATEGY_ROUND_ROBIN, -1, -1, nb, 2};
    EXPECT_EQ_INT(sl_router_set_groups(r, &ng, 1, err, sizeof err), 0);
    EXPECT_EQ_INT(wo.calls, 1);
    EXPECT_EQ_INT(wo.status, SL_ECANCELED);
    sl_router_backend_state st;
    EXPECT(!state_of(r, "a", &st));
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.in_flight, 1);
    EXPECT_NEAR(st.weight, 3, 0);
    EXPECT_EQ_INT(st.state, SL_ROUTER_CLOSED);
    EXPECT(state_of(r, "c", &st));
    EXPECT_EQ_INT(st.state, SL_ROUTER_HALF_OPEN); /* joined by reconfiguration: slow start */
    EXPECT_EQ_INT(st.limit_now, 1);
    /* leases of removed backends and groups still release cleanly */
    sl_router_release(r, &la, &FAIL);
    sl_router_release(r, &lo, NULL);
    sl_router_release(r, &lb, NULL);
    EXPECT(state_of(r, "b", &st));
    EXPECT_EQ_INT(st.in_flight, 0);
    EXPECT_EQ_UINT(st.requests, 1);
    /* a comes back as a fresh backend */
    sl_router_backend_conf nb2[3] = {{"a", 1, 10, false}, {"b", 3, 10, false}, {"c", 1, 10, false}};
    ng.backends = nb2;
    ng.n_backends = 3;
    EXPECT_EQ_INT(sl_router_set_groups(r, &ng, 1, err, sizeof err), 0);
    EXPECT(state_of(r, "a", &st));
    EXPECT_EQ_INT(st.consecutive_failures, 0);
    EXPECT_EQ_UINT(st.requests, 0);
    sl_router_destroy(r);
}

static void test_set_groups_out_of_memory(void)
{
    fake_now = 0;
    sl_router *r = mk(NULL);
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, NULL, 2, -1, -1), 0);
    int ok = 0, nomem = 0;
    for (long n = 1; n < 40; n++) {
        sl_alloc_fail_after(n);
        int rc = set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, NULL, 3, -1, -1);
        sl_alloc_fail_after(0);
        if (rc == 0)
            ok++;
        else if (rc == SL_ENOMEM)
            nomem++;
        else
            EXPECT_EQ_INT(rc, SL_ENOMEM);
        /* the router still works either way */
        sl_router_lease l;
        EXPECT_EQ_INT(sl_router_acquire(r, "g", NULL, 0.5, &l), 0);
        sl_router_release(r, &l, NULL);
    }
    EXPECT(nomem > 5);
    EXPECT(ok > 0);
    sl_router_destroy(r);
}

/* ---- threads ---- */

#define T_THREADS 8
#define T_ITERS 4000
static _Atomic int t_in_use[4];
static _Atomic int t_over;
static _Atomic long t_done;

typedef struct tw {
    _Atomic int ready;
    int status;
    sl_router_lease lease;
} tw;

static void on_thread_wait(void *ud, int status, const sl_router_lease *lease)
{
    tw *w = ud;
    w->status = status;
    if (lease)
        w->lease = *lease;
    atomic_store(&w->ready, 1);
}

static void *thread_main(void *arg)
{
    sl_router *r = arg;
    for (int i = 0; i < T_ITERS; i++) {
        sl_router_lease l;
        uint64_t ticket;
        tw w;
        atomic_init(&w.ready, 0);
        int rc = sl_router_acquire_or_wait(r, "g", NULL, sl_rand_unit(), on_thread_wait, &w, &l, &ticket);
        if (rc == SL_EAGAIN) {
            if ((i & 7) == 0 && sl_router_cancel_wait(r, ticket) == 0)
                continue;
            while (!atomic_load(&w.ready))
                sched_yield();
            if (w.status != 0)
                continue;
            l = w.lease;
        } else if (rc != 0) {
            continue;
        }
        size_t idx = (size_t)(l.backend_id[0] - 'a');
        if (atomic_fetch_add(&t_in_use[idx], 1) + 1 > 1)
            atomic_fetch_add(&t_over, 1);
        sched_yield(); /* hold the backend a moment so that others queue */
        atomic_fetch_sub(&t_in_use[idx], 1);
        sl_router_outcome oc = {SL_ROUTER_OK, 1 + (i % 50), 0};
        sl_router_release(r, &l, &oc);
        atomic_fetch_add(&t_done, 1);
        if ((i & 63) == 0)
            sl_router_tick(r);
    }
    return NULL;
}

static void test_threads_smoke(void)
{
    sl_router_opts o;
    sl_router_opts_default(&o);
    o.queue_max = 4;
    sl_router *r = NULL;
    EXPECT_EQ_INT(sl_router_create(&o, NULL, NULL, &r, NULL, 0), 0); /* the real clock */
    int mc[4] = {1, 1, 1, 1}; /* 4 slots for 8 threads: the queue is used */
    EXPECT_EQ_INT(set_one(r, SL_ROUTER_STRATEGY_DEFAULT, NULL, mc, 4, -1, -1), 0);
    pthread_t th[T_THREADS];
    for (int i = 0; i < T_THREADS; i++)
        pthread_create(&th[i], NULL, thread_main, r);
    for (int i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    EXPECT_EQ_INT(atomic_load(&t_over), 0);
    sl_router_backend_state st[4];
    size_t n = 0;
    sl_router_snapshot(r, st, 4, &n);
    EXPECT_EQ_UINT(n, 4);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ_INT(st[i].in_flight, 0);
        total += st[i].requests;
    }
    EXPECT_EQ_UINT(total, (uint64_t)atomic_load(&t_done));
    EXPECT(atomic_load(&t_done) > T_THREADS * T_ITERS / 2);
    EXPECT_EQ_INT(sl_router_queue_depth(r, "g"), 0);
    sl_router_group_stats gs;
    sl_router_group_stats_get(r, &gs, 1, &n);
    EXPECT(gs.enqueued > 0);
    EXPECT_EQ_UINT(gs.enqueued, gs.granted + gs.cancelled + gs.timed_out);
    sl_router_destroy(r);
}

int main(void)
{
    size_t live0 = sl_alloc_live_bytes();
    RUN(test_opts_and_config_errors);
    RUN(test_weighted_proportions);
    RUN(test_round_robin_order);
    RUN(test_least_outstanding);
    RUN(test_latency_peak_ewma);
    RUN(test_concurrency_limit);
    RUN(test_queue_fifo_bound_timeout);
    RUN(test_slow_start_curves);
    RUN(test_slow_start_whole_group_restart);
    RUN(test_ejection);
    RUN(test_ejection_level_partial_heal);
    RUN(test_health_hooks);
    RUN(test_retry_after_pause);
    RUN(test_retry_budget);
    RUN(test_reconfigure_keeps_state);
    RUN(test_set_groups_out_of_memory);
    RUN(test_threads_smoke);
    RUN(test_connect_ejection);
    RUN(test_no_slow_start);
    t_cur_failed = 0;
    EXPECT_EQ_UINT(sl_alloc_live_bytes(), live0); /* every router, lease and waiter freed */
    if (t_cur_failed)
        t_failed++;
    return TEST_REPORT();
}
