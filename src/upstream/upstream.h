/*
 * upstream: Sluice's client for remote OpenAI-compatible backends.
 *
 * For https:// it owns one libcurl multi handle per I/O worker (http:// goes
 * to the built-in client below), driven by that worker's libuv loop (one uv_poll per socket that libcurl watches, one uv_timer for
 * libcurl's timeouts, one uv_timer per transfer for our own first-byte, idle
 * and total deadlines), the keep-alive connection cache that comes with the
 * multi handle, and an incremental, bounded text/event-stream parser.
 *
 * Threading: a pool belongs to the thread that runs its loop. Every function
 * taking a pool or a transfer must be called on that thread; pools are never
 * shared. The SSE parser is a plain value with no thread affinity.
 *
 * http:// transfers run on a built-in HTTP/1.1 client on the same loop instead
 * of libcurl (h1client.c, with its own response parser h1parse.c): one
 * uv_tcp_t per connection, idle keep-alive connections kept reading so that a
 * peer close is seen at once, and one request buffer per transfer. https://
 * (and http:// when curl_for_http is set) stays on libcurl. Both honour every
 * rule below.
 *
 * The built-in client writes with write(2), so the process must ignore SIGPIPE
 * (src/main.c does) or a peer that closed mid-request would kill it.
 *
 * Transfers speak HTTP/1.1 only, to http:// and https:// URLs only, ignore
 * proxy environment variables and never follow redirects. A connection whose
 * response was not read to its end (cancel, timeout, size cap, error) is
 * closed and never goes back to the reuse cache, so bytes meant for one
 * request can never be read as the answer to another.
 *
 * Callbacks and re-entrancy: on_headers and on_body run inside libcurl (or
 * inside the built-in client's read callback, with the same rules). From
 * them the caller may call sl_upstream_pause, sl_upstream_resume,
 * sl_upstream_cancel (on any transfer of the pool) and sl_upstream_start; the
 * pool defers whatever libcurl forbids there until libcurl has returned.
 * on_done runs outside libcurl, after the transfer has left the multi handle;
 * anything may be called from it except sl_upstream_pool_destroy. Never call
 * sl_upstream_pool_destroy from inside any upstream callback.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

typedef struct sl_upstream_pool sl_upstream_pool;
typedef struct sl_upstream_xfer sl_upstream_xfer;

#define SL_UPSTREAM_DEFAULT_MAX_RESPONSE ((size_t)32 << 20) /* bytes */
/* Idle connections a pool keeps by default. libcurl's own default (4 per
 * transfer in flight) empties the cache whenever concurrency dips, and every
 * request after the dip pays a new TCP connection. */
#define SL_UPSTREAM_DEFAULT_MAX_IDLE 1024

typedef struct sl_upstream_limits {
    int max_host_connections;  /* per pool, per host; 0 = libcurl default (unlimited) */
    int max_total_connections; /* per pool; 0 = unlimited */
    int max_idle_connections;  /* per pool: idle keep-alive connections kept for reuse;
                                  0 = SL_UPSTREAM_DEFAULT_MAX_IDLE */
    size_t max_response_bytes; /* non-streamed body cap; 0 = SL_UPSTREAM_DEFAULT_MAX_RESPONSE.
                                  Exceeding it fails the transfer with SL_ETOOBIG. */
    bool curl_for_http;        /* run http:// transfers on libcurl too, not on the built-in
                                  client (for tests and comparisons). The environment variable
                                  SLUICE_UPSTREAM_CURL_HTTP=1, read at pool creation, does the
                                  same for every pool. */
} sl_upstream_limits;

/* Initialises libcurl's global state once per process (thread-safe, idempotent).
 * Returns 0 or SL_EUPSTREAM. Called by sl_upstream_pool_create; calling it from
 * main before starting worker threads is recommended. */
int sl_upstream_global_init(void);

/* Creates a pool bound to loop, called on the loop's thread. lim may be NULL
 * (all defaults). Returns 0 or SL_ENOMEM/SL_EUPSTREAM; *out is freed by
 * sl_upstream_pool_destroy. */
int sl_upstream_pool_create(uv_loop_t *loop, const sl_upstream_limits *lim, sl_upstream_pool **out);

/* Cancels every transfer (no callback fires), closes every cached connection
 * and starts closing the pool's libuv handles. The pool's memory is freed by
 * the last close callback, so the loop must run afterwards until those close
 * callbacks have run: e.g. uv_run(loop, UV_RUN_DEFAULT) (returns once nothing
 * else is active) or uv_run(loop, UV_RUN_NOWAIT) repeated until uv_loop_close()
 * stops returning UV_EBUSY. The pool pointer is invalid once this returns.
 * Must not be called from inside an upstream callback. NULL is a no-op. */
void sl_upstream_pool_destroy(sl_upstream_pool *p);

typedef struct sl_upstream_header {
    const char *name;
    const char *value;
} sl_upstream_header;

typedef struct sl_upstream_req {
    const char *url;    /* full URL, e.g. api_base + "/chat/completions"; http:// or https:// */
    const char *method; /* "POST" or "GET" (any other upper-case token is sent as is) */
    const char *api_key; /* sent as "Authorization: Bearer <key>" when non-NULL; never logged */
    const char *body;    /* copied by start; may be NULL when body_len is 0 */
    size_t body_len;
    const sl_upstream_header *headers; /* extra headers (e.g. X-Request-Id), copied */
    size_t n_headers;
    bool stream;                    /* caller expects text/event-stream (no body size cap) */
    uint32_t connect_timeout_ms;    /* 0 = libcurl's default (300 s) */
    uint32_t first_byte_timeout_ms; /* from start until the first response BODY byte; 0 = none */
    uint32_t idle_timeout_ms;       /* max gap between body bytes once the body started; 0 = none */
    uint32_t total_timeout_ms;      /* whole transfer; 0 = none */
} sl_upstream_req;

/* Timeouts and pause: first-byte and idle deadlines are suspended while the
 * transfer is paused (pausing is our choice, not the upstream's fault); on
 * resume the idle gap is measured afresh from the resume. The total deadline
 * always runs. A POST without a Content-Type among the extra headers is sent as
 * "Content-Type: application/json". */

typedef struct sl_upstream_cb {
    void *ud;
    /* Final (non-1xx) response status and headers are complete. retry_after_s is
     * the parsed Retry-After (delta seconds or HTTP date, relative to now, >= 0)
     * or -1. content_type may be NULL; valid only during the call. */
    void (*on_headers)(void *ud, int status, const char *content_type, double retry_after_s);
    /* Body bytes as they arrive (decoded from chunked framing; the built-in
     * client passes all the body bytes of one read in one call). Return 0 to
     * continue, or SL_EAGAIN to pause (backpressure): no more on_body, and no
     * on_done, until sl_upstream_resume(). The bytes passed are consumed
     * either way. Any other return value is treated as 0. */
    int (*on_body)(void *ud, const char *p, size_t n);
    /* Exactly once at the end, unless cancelled: err 0 on success (any HTTP
     * status), else SL_ETIMEDOUT (which timeout is in msg), SL_EUPSTREAM
     * (refused, reset, truncated body, DNS, TLS...), SL_ETOOBIG or SL_ENOMEM.
     * msg is short human text, never containing the api key. The transfer
     * handle is freed right after on_done returns. */
    void (*on_done)(void *ud, int err, const char *msg);
} sl_upstream_cb;

/* on_done's msg starts with one of these when no connection could be made,
 * so the request was never sent: the host name did not resolve, or every
 * address refused or could not be reached. (A connect timeout is
 * SL_ETIMEDOUT.) */
#define SL_UPSTREAM_MSG_RESOLVE "cannot resolve upstream host"
#define SL_UPSTREAM_MSG_CONNECT "cannot connect to upstream"
/* Whether msg, as given to on_done, says that no connection could be made.
 * NULL gives false. */
bool sl_upstream_msg_no_connection(const char *msg);

/* Starts a transfer; *out (optional) identifies it until on_done returns or it
 * is cancelled. Returns 0, SL_EINVAL (bad URL, method or header text), SL_ENOMEM
 * or SL_EUPSTREAM. If it returns an error, no callback is ever called. */
int sl_upstream_start(sl_upstream_pool *p, const sl_upstream_req *req, const sl_upstream_cb *cb,
                      sl_upstream_xfer **out);
/* Stops delivering body (the client is slow). The upstream socket is read at
 * most one more libcurl buffer (16 KiB) before libcurl holds the data. on_done
 * may still fire while paused when the response ends with no body bytes left
 * to deliver. */
void sl_upstream_pause(sl_upstream_xfer *x);
/* Delivers body again. Held bytes are delivered from the loop shortly after,
 * never before this returns, so it is safe from any callback. */
void sl_upstream_resume(sl_upstream_xfer *x);
/* Aborts the transfer: no callback fires after this returns and the handle is
 * invalid. If the response was not complete the connection is closed, never
 * returned to the reuse cache. Safe from inside the xfer's own callbacks
 * (then the libcurl teardown is deferred until libcurl returns); a no-op when
 * called from this transfer's own on_done. */
void sl_upstream_cancel(sl_upstream_xfer *x);

/* Counters for tests and metrics: sockets libcurl opened and closed over the
 * pool's life (each opened socket is one TCP connection attempt). */
void sl_upstream_pool_stats(const sl_upstream_pool *p, uint64_t *sockets_opened,
                            uint64_t *sockets_closed);

/* ---- incremental SSE (text/event-stream) parser, bounded ---- */
typedef struct sl_sse_parser sl_sse_parser;
/* One dispatched event. Pointers are valid only during on_event; they are never
 * NULL (empty fields are ""). event is the "event:" field of this event, data
 * the "data:" lines joined with '\n', id the last "id:" seen on the stream (the
 * SSE last-event-id, which persists across events). */
typedef struct sl_sse_event {
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
    const char *id;
    size_t id_len;
    /* The event's data line through the blank line that ended the event, as
     * they arrived ("data: x\n\n", line ends as sent), when the data came
     * from that one line and both lines lay in the buffer just fed; else NULL.
     * Lets a relay forward the bytes instead of framing them again. */
    const char *raw;
    size_t raw_len;
} sl_sse_event;

/* Creates a parser. max_event_bytes caps one event's accumulated data and any
 * single line (SL_ETOOBIG when exceeded). Returns 0 or SL_EINVAL/SL_ENOMEM;
 * free with sl_sse_parser_destroy. */
int sl_sse_parser_create(size_t max_event_bytes, sl_sse_parser **out);
/* Frees the parser. NULL is a no-op. */
void sl_sse_parser_destroy(sl_sse_parser *p);
/* Returns the parser to its state after create, for a new stream: no pending
 * line or event, no last event id, no sticky error. Keeps its buffers unless
 * they have grown past 64 KiB. */
void sl_sse_parser_reset(sl_sse_parser *p);
/* Feeds bytes; calls on_event for each complete event (data lines joined with
 * \n per the spec; comments ":..." ignored; CRLF, CR and LF line ends; a UTF-8
 * BOM at the very start ignored). Returns 0, SL_ETOOBIG (sticky: every later
 * feed returns it too), or the first non-zero value returned by on_event, which
 * stops parsing: the bytes of buf after that event's blank line are dropped,
 * and the parser stays usable for later feeds. */
int sl_sse_parser_feed(sl_sse_parser *p, const char *buf, size_t n,
                       int (*on_event)(void *ud, const sl_sse_event *ev), void *ud);
/* Number of bytes currently held for an unfinished line and event. */
size_t sl_sse_parser_pending(const sl_sse_parser *p);

#endif
