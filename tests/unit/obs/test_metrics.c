#include "obs/obs.h"
#include "test.h"

#include <pthread.h>

static double gauge_val(void *ud) { return *(double *)ud; }

static void test_render_counters_and_histograms(void)
{
    sl_metrics *m = sl_metrics_create();
    sl_metrics_shard *a = sl_metrics_shard_new(m);
    sl_metrics_shard *b = sl_metrics_shard_new(m);
    sl_metrics_add(a, SL_M_REQUESTS, "gpt", "gpt#0", "200", 1);
    sl_metrics_add(b, SL_M_REQUESTS, "gpt", "gpt#0", "200", 2);
    sl_metrics_add(b, SL_M_REQUESTS, "gp\"t", "x", "500", 1);
    sl_metrics_observe(a, SL_M_DURATION, "gpt", NULL, NULL, 0.003);
    sl_metrics_observe(b, SL_M_DURATION, "gpt", NULL, NULL, 2.0);
    double g = 7;
    EXPECT_EQ_INT(sl_metrics_gauge_fn(m, "sluice_requests_in_flight", "In flight.", gauge_val, &g), 0);
    sl_buf out;
    sl_buf_init(&out, 1 << 20);
    EXPECT_EQ_INT(sl_metrics_render(m, &out), 0);
    EXPECT_CONTAINS(out.data, "sluice_requests_total{model=\"gpt\",backend=\"gpt#0\",status=\"200\"} 3\n");
    EXPECT_CONTAINS(out.data, "sluice_requests_total{model=\"gp\\\"t\",backend=\"x\",status=\"500\"} 1\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_bucket{model=\"gpt\",le=\"0.0025\"} 0\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_bucket{model=\"gpt\",le=\"0.005\"} 1\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_bucket{model=\"gpt\",le=\"2.5\"} 2\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_bucket{model=\"gpt\",le=\"+Inf\"} 2\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_count{model=\"gpt\"} 2\n");
    EXPECT_CONTAINS(out.data, "sluice_request_duration_seconds_sum{model=\"gpt\"} 2.003\n");
    EXPECT_CONTAINS(out.data, "# TYPE sluice_requests_in_flight gauge\nsluice_requests_in_flight 7\n");
    EXPECT_NEAR(sl_metrics_sum(m, SL_M_REQUESTS, "gpt"), 3, 0);
    sl_buf_free(&out);
    sl_metrics_destroy(m);
}

static void test_series_cap(void)
{
    sl_metrics *m = sl_metrics_create();
    sl_metrics_shard *a = sl_metrics_shard_new(m);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "m%d", i);
        sl_metrics_add(a, SL_M_REQUESTS, name, "b", "200", 1);
    }
    /* every increment is kept: the overflow folds into "other" */
    EXPECT_NEAR(sl_metrics_sum(m, SL_M_REQUESTS, NULL), 5000, 0);
    EXPECT(sl_metrics_sum(m, SL_M_REQUESTS, "other") > 0);
    sl_metrics_destroy(m);
}

/* A series handle records into the same series as the label lookup does,
 * and keeps working after other series are created (and past the cap). */
static void test_series_handle(void)
{
    sl_metrics *m = sl_metrics_create();
    sl_metrics_shard *a = sl_metrics_shard_new(m);
    sl_metrics_series *h = sl_metrics_series_get(a, SL_M_ITL, "gpt", NULL, NULL);
    EXPECT(h != NULL);
    EXPECT(sl_metrics_series_get(a, SL_M_ITL, "gpt", NULL, NULL) == h);
    EXPECT(sl_metrics_series_get(a, SL_M_ITL, "other-model", NULL, NULL) != h);
    sl_metrics_observe_series(a, h, 0.004);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "m%d", i);
        sl_metrics_add(a, SL_M_REQUESTS, name, "b", "200", 1);
    }
    sl_metrics_observe(a, SL_M_ITL, "gpt", NULL, NULL, 0.2);
    sl_metrics_observe_series(a, h, 3.0);
    sl_metrics_observe_series(a, h, -1.0); /* ignored, as by sl_metrics_observe */
    sl_metrics_observe_series(a, NULL, 1.0); /* no-op */
    sl_buf out;
    sl_buf_init(&out, 4 << 20);
    EXPECT_EQ_INT(sl_metrics_render(m, &out), 0);
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_count{model=\"gpt\"} 3\n");
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_sum{model=\"gpt\"} 3.204\n");
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_bucket{model=\"gpt\",le=\"0.005\"} 1\n");
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_bucket{model=\"gpt\",le=\"0.25\"} 2\n");
    sl_buf_free(&out);
    sl_metrics_destroy(m);
}

/* A batch applies each update to its own series, as the one-at-a-time calls
 * would: adds to counters, observations to histograms, NULL and negative
 * observations skipped. */
static void test_apply_batch(void)
{
    sl_metrics *m = sl_metrics_create();
    sl_metrics_shard *a = sl_metrics_shard_new(m);
    sl_metrics_series *req = sl_metrics_series_get(a, SL_M_REQUESTS, "gpt", "b1", "200");
    sl_metrics_series *tok = sl_metrics_series_get(a, SL_M_TOKENS, "gpt", "prompt", NULL);
    sl_metrics_series *itl = sl_metrics_series_get(a, SL_M_ITL, "gpt", NULL, NULL);
    sl_metrics_update u[] = {
        {req, 1, false}, {itl, 0.004, true}, {tok, 7, false}, {NULL, 5, false},
        {itl, -1.0, true}, {req, 2, false},  {itl, 0.2, true},
    };
    sl_metrics_apply(a, u, SL_ARRAY_LEN(u));
    sl_metrics_apply(a, u, 1);
    sl_metrics_apply(NULL, u, 1); /* no shard: a no-op */
    EXPECT_NEAR(sl_metrics_sum(m, SL_M_REQUESTS, "gpt"), 4, 0);
    EXPECT_NEAR(sl_metrics_sum(m, SL_M_TOKENS, "gpt"), 7, 0);
    sl_buf out;
    sl_buf_init(&out, 4 << 20);
    EXPECT_EQ_INT(sl_metrics_render(m, &out), 0);
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_count{model=\"gpt\"} 2\n");
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_sum{model=\"gpt\"} 0.204\n");
    EXPECT_CONTAINS(out.data, "sluice_inter_token_latency_seconds_bucket{model=\"gpt\",le=\"0.005\"} 1\n");
    sl_buf_free(&out);
    sl_metrics_destroy(m);
}

typedef struct {
    sl_metrics *m;
} targ;

static void *hammer(void *p)
{
    targ *t = p;
    sl_metrics_shard *s = sl_metrics_shard_new(t->m);
    for (int i = 0; i < 20000; i++)
        sl_metrics_add(s, SL_M_RETRIES, "m", NULL, NULL, 1);
    return NULL;
}

static void test_threads_merge(void)
{
    targ t = {sl_metrics_create()};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, &t);
    sl_buf out;
    sl_buf_init(&out, 1 << 20);
    sl_metrics_render(t.m, &out); /* concurrent scrape must be safe */
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    EXPECT_NEAR(sl_metrics_sum(t.m, SL_M_RETRIES, "m"), 80000, 0);
    sl_buf_free(&out);
    sl_metrics_destroy(t.m);
}

int main(void)
{
    RUN(test_render_counters_and_histograms);
    RUN(test_series_cap);
    RUN(test_series_handle);
    RUN(test_apply_batch);
    RUN(test_threads_merge);
    return TEST_REPORT();
}
