#include "gateway/policy.h"

#include "core/core.h"

#include <math.h>

sl_attempt_class sl_policy_classify(int err, int status)
{
    if (err == SL_ETOOBIG)
        return SL_ATTEMPT_FINAL; /* another backend would send the same oversized answer */
    if (err != 0)
        return SL_ATTEMPT_RETRYABLE;
    if (status >= 200 && status < 300)
        return SL_ATTEMPT_OK;
    if (status == 429 || status == 408 || status >= 500)
        return SL_ATTEMPT_RETRYABLE;
    return SL_ATTEMPT_FINAL;
}

sl_router_outcome_kind sl_policy_outcome(int err, int status, double retry_after_s)
{
    if (err == SL_ETIMEDOUT)
        return SL_ROUTER_FAIL_TIMEOUT;
    if (err == SL_ETOOBIG)
        return SL_ROUTER_NEUTRAL; /* the answer was too large for us, not a fault of the backend */
    if (err == SL_EUPSTREAM && status >= 200 && status < 300)
        return SL_ROUTER_FAIL_5XX; /* a stream cut short, or bytes that are not a stream */
    if (err != 0)
        return SL_ROUTER_FAIL_CONNECT;
    if (status >= 200 && status < 300)
        return SL_ROUTER_OK;
    if (status == 429)
        return retry_after_s > 0 ? SL_ROUTER_OVERLOADED : SL_ROUTER_NEUTRAL;
    if (status == 503)
        return retry_after_s > 0 ? SL_ROUTER_OVERLOADED : SL_ROUTER_FAIL_5XX;
    if (status >= 500)
        return SL_ROUTER_FAIL_5XX;
    return SL_ROUTER_NEUTRAL;
}

sl_next_step sl_policy_next(sl_attempt_class c, bool bytes_sent, int attempts, int num_retries,
                            bool fallback_left)
{
    if (c != SL_ATTEMPT_RETRYABLE || bytes_sent)
        return SL_NEXT_RESPOND;
    if (attempts < 1 + num_retries)
        return SL_NEXT_RETRY;
    return fallback_left ? SL_NEXT_FALLBACK : SL_NEXT_RESPOND;
}

double sl_policy_backoff_ms(double base_ms, int retry, double u, double cap_ms)
{
    if (retry < 1)
        retry = 1;
    if (retry > 30)
        retry = 30;
    double d = base_ms * ldexp(1.0, retry - 1) * (0.5 + u);
    return d > cap_ms ? cap_ms : d;
}

int sl_policy_pick_weighted(const double *weights, const bool *eligible, size_t n, double u)
{
    double total = 0;
    for (size_t i = 0; i < n; i++)
        if (eligible[i] && weights[i] > 0)
            total += weights[i];
    if (total <= 0)
        return -1;
    double x = u * total;
    int last = -1;
    for (size_t i = 0; i < n; i++) {
        if (!eligible[i] || weights[i] <= 0)
            continue;
        last = (int)i;
        if (x < weights[i])
            return (int)i;
        x -= weights[i];
    }
    return last; /* rounding left x at the very top */
}
