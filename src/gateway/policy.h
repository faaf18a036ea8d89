/*
 * Pure routing and retry decisions of the gateway, kept apart from the I/O so
 * that unit tests drive them directly (no clock, no sockets, no randomness:
 * callers pass the random draw).
 */
#ifndef SL_GATEWAY_POLICY_H
#define SL_GATEWAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/router.h"

typedef enum {
    SL_ATTEMPT_OK = 0,    /* 2xx: the answer goes to the client */
    SL_ATTEMPT_RETRYABLE, /* connect error, timeout, reset, 429, 5xx: another attempt may succeed */
    SL_ATTEMPT_FINAL,     /* other 4xx: the upstream judged the request itself; pass it on */
} sl_attempt_class;

typedef enum {
    SL_NEXT_RESPOND = 0, /* answer the client with what we have */
    SL_NEXT_RETRY,       /* another attempt in the same group */
    SL_NEXT_FALLBACK,    /* the next fallback group */
} sl_next_step;

/* Classifies one finished attempt: err is the transport error (0 = a response came), status its HTTP status. */
sl_attempt_class sl_policy_classify(int err, int status);

/* Decides what follows an attempt. bytes_sent: the client already has bytes of
 * this answer (then nothing may be retried). attempts: attempts made in the
 * current group so far (>= 1). */
sl_next_step sl_policy_next(sl_attempt_class c, bool bytes_sent, int attempts, int num_retries,
                            bool fallback_left);

/* Maps a finished attempt to what it says about its backend (router.h):
 * err the transport error (0 = a response came; SL_EUPSTREAM for a 2xx
 * stream cut short), status the HTTP status, retry_after_s the backend's
 * Retry-After (< 0 = none). */
sl_router_outcome_kind sl_policy_outcome(int err, int status, double retry_after_s);

/* Jittered exponential backoff before retry number `retry` (1-based):
 * base * 2^(retry-1) * (0.5 + u) with u in [0,1), capped at cap_ms. */
double sl_policy_backoff_ms(double base_ms, int retry, double u, double cap_ms);

/* Weighted random choice among eligible entries, with u in [0,1).
 * Returns the index, or -1 when no entry is eligible with a positive weight. */
int sl_policy_pick_weighted(const double *weights, const bool *eligible, size_t n, double u);

#endif
