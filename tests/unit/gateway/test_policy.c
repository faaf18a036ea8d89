#include "core/core.h"
#include "gateway/policy.h"
#include "test.h"

static void test_classify(void)
{
    EXPECT_EQ_INT(sl_policy_classify(0, 200), SL_ATTEMPT_OK);
    EXPECT_EQ_INT(sl_policy_classify(0, 204), SL_ATTEMPT_OK);
    EXPECT_EQ_INT(sl_policy_classify(0, 500), SL_ATTEMPT_RETRYABLE);
    EXPECT_EQ_INT(sl_policy_classify(0, 503), SL_ATTEMPT_RETRYABLE);
    EXPECT_EQ_INT(sl_policy_classify(0, 429), SL_ATTEMPT_RETRYABLE);
    EXPECT_EQ_INT(sl_policy_classify(0, 400), SL_ATTEMPT_FINAL);
    EXPECT_EQ_INT(sl_policy_classify(0, 404), SL_ATTEMPT_FINAL);
    EXPECT_EQ_INT(sl_policy_classify(SL_EUPSTREAM, 0), SL_ATTEMPT_RETRYABLE);
    EXPECT_EQ_INT(sl_policy_classify(SL_ETIMEDOUT, 0), SL_ATTEMPT_RETRYABLE);
    EXPECT_EQ_INT(sl_policy_classify(SL_ETOOBIG, 200), SL_ATTEMPT_FINAL);
}

static void test_outcome(void)
{
    EXPECT_EQ_INT(sl_policy_outcome(0, 200, -1), SL_ROUTER_OK);
    EXPECT_EQ_INT(sl_policy_outcome(SL_ETIMEDOUT, 0, -1), SL_ROUTER_FAIL_TIMEOUT);
    EXPECT_EQ_INT(sl_policy_outcome(SL_ETIMEDOUT, 200, -1), SL_ROUTER_FAIL_TIMEOUT);
    EXPECT_EQ_INT(sl_policy_outcome(SL_EUPSTREAM, 0, -1), SL_ROUTER_FAIL_CONNECT);
    EXPECT_EQ_INT(sl_policy_outcome(SL_EUPSTREAM, 200, -1), SL_ROUTER_FAIL_5XX);
    EXPECT_EQ_INT(sl_policy_outcome(SL_ETOOBIG, 200, -1), SL_ROUTER_NEUTRAL);
    EXPECT_EQ_INT(sl_policy_outcome(0, 500, -1), SL_ROUTER_FAIL_5XX);
    EXPECT_EQ_INT(sl_policy_outcome(0, 502, 3), SL_ROUTER_FAIL_5XX);
    EXPECT_EQ_INT(sl_policy_outcome(0, 503, -1), SL_ROUTER_FAIL_5XX);
    EXPECT_EQ_INT(sl_policy_outcome(0, 503, 2), SL_ROUTER_OVERLOADED);
    EXPECT_EQ_INT(sl_policy_outcome(0, 429, 2), SL_ROUTER_OVERLOADED);
    EXPECT_EQ_INT(sl_policy_outcome(0, 429, -1), SL_ROUTER_NEUTRAL);
    EXPECT_EQ_INT(sl_policy_outcome(0, 400, -1), SL_ROUTER_NEUTRAL);
    EXPECT_EQ_INT(sl_policy_outcome(0, 404, 5), SL_ROUTER_NEUTRAL);
}

static void test_next_step(void)
{
    /* retry while attempts < 1 + retries, never after bytes reached the client */
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, false, 1, 2, false), SL_NEXT_RETRY);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, false, 2, 2, false), SL_NEXT_RETRY);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, false, 3, 2, false), SL_NEXT_RESPOND);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, false, 3, 2, true), SL_NEXT_FALLBACK);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, true, 1, 2, true), SL_NEXT_RESPOND);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_RETRYABLE, false, 1, 0, true), SL_NEXT_FALLBACK);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_FINAL, false, 1, 2, true), SL_NEXT_RESPOND);
    EXPECT_EQ_INT(sl_policy_next(SL_ATTEMPT_OK, false, 1, 2, true), SL_NEXT_RESPOND);
}

static void test_backoff(void)
{
    EXPECT_NEAR(sl_policy_backoff_ms(50, 1, 0.0, 2000), 25, 1e-9);
    EXPECT_NEAR(sl_policy_backoff_ms(50, 1, 0.5, 2000), 50, 1e-9);
    EXPECT_NEAR(sl_policy_backoff_ms(50, 2, 0.5, 2000), 100, 1e-9);
    EXPECT_NEAR(sl_policy_backoff_ms(50, 3, 0.999, 2000), 50 * 4 * 1.499, 1e-9);
    EXPECT_NEAR(sl_policy_backoff_ms(50, 10, 0.5, 2000), 2000, 1e-9);
    EXPECT_NEAR(sl_policy_backoff_ms(50, 1000, 0.5, 2000), 2000, 1e-9);
}

static void test_pick_weighted(void)
{
    double w[3] = {1, 2, 1};
    bool ok[3] = {true, true, true};
    /* cumulative [0,1) [1,3) [3,4) over total 4 */
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.0), 0);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.249), 0);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.25), 1);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.74), 1);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.75), 2);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.9999999), 2);
    ok[1] = false; /* now [0,1) [1,2) over total 2 */
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.49), 0);
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.5), 2);
    ok[0] = ok[2] = false;
    EXPECT_EQ_INT(sl_policy_pick_weighted(w, ok, 3, 0.5), -1);
    double z[2] = {0, 0};
    bool all[2] = {true, true};
    EXPECT_EQ_INT(sl_policy_pick_weighted(z, all, 2, 0.5), -1);
    /* frequencies follow the weights: 40000 draws, 6-sigma bound on a binomial */
    double w2[2] = {1, 3};
    int hits = 0;
    for (int i = 0; i < 40000; i++)
        hits += sl_policy_pick_weighted(w2, all, 2, sl_rand_unit()) == 1;
    /* p = 0.75, sd = sqrt(40000*0.75*0.25) ~ 86.6 */
    EXPECT(hits > 30000 - 520 && hits < 30000 + 520);
}

int main(void)
{
    RUN(test_classify);
    RUN(test_outcome);
    RUN(test_next_step);
    RUN(test_backoff);
    RUN(test_pick_weighted);
    return TEST_REPORT();
}
