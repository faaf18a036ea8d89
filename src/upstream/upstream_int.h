/*
 * Internals shared by the two transfer implementations of src/upstream:
 * upstream.c (the public entry points and the libcurl path, used for https://
 * and, when asked, for http://) and h1client.c (the built-in HTTP/1.1 client
 * on the pool's libuv loop, used for http://). Not for use outside
 * src/upstream and its tests.
 *
 * Both transfer structs begin with an int naming their implementation, so the
 * public pause/resume/cancel can dispatch on an sl_upstream_xfer pointer.
 */
#ifndef SL_UPSTREAM_INT_H
#define SL_UPSTREAM_INT_H

#include <string.h>

#include "upstream/upstream.h"

#define SL_UPSTREAM_IMPL_CURL 1
#define SL_UPSTREAM_IMPL_H1 2
#define SL_UPSTREAM_HEADER_LINE_MAX 8192 /* longest extra header line we send, bytes */
#define SL_UPSTREAM_XFER_MSG_MAX 256

/* ---- request field checks, shared by both clients so that both refuse the
 * same requests with SL_EINVAL. Each returns the field's length, found in the
 * same pass as the check, so that the built-in client measures each field once. */

/* Length of s when it holds no CR or LF (URL, api key, header value: text that
 * would otherwise end a header line early), else SIZE_MAX. strcspn finds the
 * end and any CR/LF in one vectorised pass. */
static inline size_t sl_up_field_len(const char *s)
{
    size_t n = strcspn(s, "\r\n");
    return s[n] ? SIZE_MAX : n;
}

/* Length of a header name made only of token characters (RFC 9110), else 0. */
static inline size_t sl_up_token_len(const char *s)
{
    const char *p = s;
    while (sl_http_tchar[(unsigned char)*p])
        p++;
    return *p ? 0 : (size_t)(p - s); /* stopped early: a non-token byte */
}

/* Length of a method of 1 to 16 upper-case letters, else 0. */
static inline size_t sl_up_method_len(const char *m)
{
    size_t n = 0;
    while (n <= 16 && m[n] >= 'A' && m[n] <= 'Z')
        n++;
    return m[n] || n > 16 ? 0 : n;
}

/* Which implementation runs x: reads the leading int of either struct. */
static inline int sl_upstream_impl_of(const sl_upstream_xfer *x)
{
    return *(const int *)(const void *)x;
}

/* Parses Retry-After: delta seconds or an HTTP date; returns seconds from now
 * (>= 0) or -1 when absent or malformed. */
double sl_upstream_parse_retry_after(const char *v);

/* One transfer's deadlines, in ms of the loop's clock (uv_now), with the
 * state they depend on; both clients keep one and arm one timer from it.
 * First-byte and idle deadlines are suspended while paused; the connect
 * deadline runs only while connecting (the built-in client's; libcurl keeps
 * its own connect timeout); the total deadline always runs. */
typedef struct sl_up_deadlines {
    uint64_t start_ms;         /* uv_now at start */
    uint64_t activity_ms;      /* start, resume or last body byte: base of first-byte/idle */
    uint64_t connect_start_ms; /* when the current connect began */
    uint32_t first_byte_ms, idle_ms, total_ms, connect_ms; /* 0 = none */
    bool paused;               /* the caller asked for no more on_body */
    bool body_started, connecting;
} sl_up_deadlines;

/* The earliest running deadline, or UINT64_MAX when none runs. */
uint64_t sl_up_deadline_due(const sl_up_deadlines *d);
/* Whether a running deadline has passed at now; if so writes which one to
 * msg (cap bytes) and returns true. An early timer fire returns false. */
bool sl_up_deadline_passed(const sl_up_deadlines *d, uint64_t now, char *msg, size_t cap);

/* The owning pool counts libuv handles (and requests) whose callbacks have not
 * run yet; its memory, the h1 pool's included, goes when the count reaches 0
 * after destroy. */
void sl_upstream_handle_opened(sl_upstream_pool *p);
void sl_upstream_handle_closed(sl_upstream_pool *p);

/* ---- built-in HTTP/1.1 client (h1client.c) ---- */
typedef struct sl_h1_pool sl_h1_pool;

/* Creates the h1 half of owner. Returns 0 or SL_ENOMEM; freed by sl_h1_pool_free. */
int sl_h1_pool_create(sl_upstream_pool *owner, uv_loop_t *loop, const sl_upstream_limits *lim,
                      size_t max_response, sl_h1_pool **out);
/* Cancels every transfer (no callback fires) and starts closing every
 * connection and handle; the memory stays until sl_h1_pool_free. */
void sl_h1_pool_destroy(sl_h1_pool *hp);
/* Frees hp's memory; called by the owner once every handle has closed. */
void sl_h1_pool_free(sl_h1_pool *hp);
/* Sockets opened and closed by the h1 client over the pool's life. */
void sl_h1_pool_stats(const sl_h1_pool *hp, uint64_t *opened, uint64_t *closed);
/* Starts a transfer of an already validated request. Returns 0, 1 when the
 * URL is one the h1 client does not take (user info, odd host syntax: the
 * caller then uses libcurl), SL_EINVAL or SL_ENOMEM. */
int sl_h1_start(sl_h1_pool *hp, const sl_upstream_req *req, const sl_upstream_cb *cb,
                sl_upstream_xfer **out);
void sl_h1_pause(sl_upstream_xfer *x);
void sl_h1_resume(sl_upstream_xfer *x);
void sl_h1_cancel(sl_upstream_xfer *x);

#endif
