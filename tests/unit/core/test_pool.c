#include "core/core.h"
#include "test.h"

#include <stdatomic.h>
#include <time.h>

typedef struct {
    _Atomic int hits[1000];
    _Atomic int calls;
    int expect_n;
    _Atomic int bad_n;
} count_ctx;

static void count_fn(void *vctx, int idx, int n)
{
    count_ctx *c = vctx;
    if (n != c->expect_n)
        atomic_fetch_add(&c->bad_n, 1);
    atomic_fetch_add(&c->hits[idx], 1);
    atomic_fetch_add(&c->calls, 1);
}

static int check_run(sl_pool *p, int n)
{
    static count_ctx c;
    memset(&c, 0, sizeof c);
    c.expect_n = n;
    sl_pool_run(p, count_fn, &c, n);
    int bad = atomic_load(&c.bad_n) != 0 || atomic_load(&c.calls) != (n > 0 ? n : 0);
    for (int i = 0; i < n; i++)
        bad |= atomic_load(&c.hits[i]) != 1;
    return bad;
}

static void test_pool_each_index_once(void)
{
    int threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < SL_ARRAY_LEN(threads); t++) {
        sl_pool *p = NULL;
        EXPECT_EQ_INT(sl_pool_create(threads[t], &p), 0);
        EXPECT_EQ_INT(sl_pool_threads(p), threads[t]);
        int failures = 0;
        for (int r = 0; r < 300; r++)
            failures += check_run(p, (r * 37) % 1000);
        EXPECT_EQ_INT(failures, 0);
        sl_pool_destroy(p);
    }
}

static void test_pool_after_sleep(void)
{
    /* workers go to the futex after spinning; a later run must wake them */
    sl_pool *p = NULL;
    EXPECT_EQ_INT(sl_pool_create(4, &p), 0);
    for (int r = 0; r < 5; r++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        EXPECT_EQ_INT(check_run(p, 64), 0);
    }
    sl_pool_destroy(p);
}

static void test_pool_null_and_default(void)
{
    EXPECT_EQ_INT(check_run(NULL, 17), 0); /* NULL pool runs inline */
    EXPECT_EQ_INT(check_run(NULL, 0), 0);
    sl_pool *p = NULL;
    EXPECT_EQ_INT(sl_pool_create(0, &p), 0);
    EXPECT_EQ_INT(sl_pool_threads(p), sl_cpu_count());
    EXPECT_EQ_INT(check_run(p, 0), 0);
    EXPECT_EQ_INT(check_run(p, 1), 0);
    sl_pool_destroy(p);
    sl_pool_destroy(NULL);
}

typedef struct {
    double *out;
} sum_ctx;

static void sum_fn(void *vctx, int idx, int n)
{
    sum_ctx *c = vctx;
    double s = 0;
    for (int i = 0; i <= idx; i++)
        s += i;
    c->out[idx] = s;
    (void)n;
}

static void test_pool_results_visible(void)
{
    sl_pool *p = NULL;
    EXPECT_EQ_INT(sl_pool_create(3, &p), 0);
    double out[200];
    sum_ctx c = {out};
    for (int r = 0; r < 50; r++) {
        memset(out, 0, sizeof out);
        sl_pool_run(p, sum_fn, &c, 200);
        for (int i = 0; i < 200; i++)
            if (out[i] != (double)i * (i + 1) / 2) {
                T_FAIL_AT("run %d idx %d: %g", r, i, out[i]);
                r = 50;
                break;
            }
    }
    sl_pool_destroy(p);
}

int main(void)
{
    RUN(test_pool_each_index_once);
    RUN(test_pool_after_sleep);
    RUN(test_pool_null_and_default);
    RUN(test_pool_results_visible);
    return TEST_REPORT();
}
