/*
 * http: Sluice's HTTP server. h2o (libuv flavour) with N worker threads, each
 * running its own uv loop and h2o context and listening on the same port with
 * SO_REUSEPORT. It owns listeners, connection limits, request-read timeouts,
 * the body limit, response streaming with backpressure, and graceful drain.
 *
 * It knows nothing of LLMs: the layer above registers handlers (function
 * pointers) and gets one sl_http_req per request, on the worker thread that
 * accepted it. Everything about a request happens on that thread.
 *
 * Lifetime of a request: it is valid from on_request until the handler
 * finishes it (sl_http_respond, or sl_http_stream_end), or until the gone
 * callback fires (the client went away first). After either, the pointer must
 * not be used.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include "core/core.h"

#include <uv.h>

typedef struct sl_http_server sl_http_server;
typedef struct sl_http_worker sl_http_worker;
typedef struct sl_http_req sl_http_req;

typedef struct sl_http_opts {
    const char *host;          /* listen address, e.g. "127.0.0.1" or "0.0.0.0" */
    int port;                  /* 0 = ephemeral (see sl_http_server_port) */
    int workers;               /* >= 1 */
    size_t max_body_bytes;     /* larger request bodies get 413 */
    int max_connections;       /* across all workers; beyond it new connections are closed at once */
    uint32_t req_timeout_ms;   /* reading a request (headers, body) and keep-alive idle: slowloris bound */
} sl_http_opts;

typedef struct sl_http_handlers {
    void *ud;
    /* On each worker thread before it accepts anything; may set worker data. Nonzero aborts start. */
    int (*on_worker_start)(void *ud, sl_http_worker *w);
    /* On each worker thread after its last request is gone, before its loop closes. */
    void (*on_worker_stop)(void *ud, sl_http_worker *w);
    /* A complete request (body read). The handler must finish it, now or later, on this thread. */
    void (*on_request)(void *ud, sl_http_req *r);
    /* Renders the body of an error the server itself produces (413 body too large,
     * 400 malformed HTTP, ...) so that every error has the upper layer's shape.
     * Writes a JSON body to out. May be NULL (then the server's plain text stays). */
    void (*render_error)(void *ud, int status, const char *message, sl_buf *out);
} sl_http_handlers;

/* Binds, starts the workers and returns once all listen; *out owns the threads. */
int sl_http_server_start(const sl_http_opts *o, const sl_http_handlers *h, sl_http_server **out, char *err,
                         size_t errlen);
/* The port actually bound (useful with port 0). */
int sl_http_server_port(const sl_http_server *s);
/* Stops accepting and closes idle connections; in-flight requests go on. Thread-safe. */
void sl_http_server_drain(sl_http_server *s);
/* Requests in flight across all workers right now. Thread-safe. */
long sl_http_server_inflight(const sl_http_server *s);
/* Open connections across all workers right now. Thread-safe. */
long sl_http_server_connections(const sl_http_server *s);
/* Stops every worker loop (after drain, or at the drain deadline), joins the threads and frees the server. */
void sl_http_server_stop(sl_http_server *s);

/* Worker accessors (worker thread only, except index). */
uv_loop_t *sl_http_worker_loop(sl_http_worker *w);
int sl_http_worker_index(const sl_http_worker *w);
void *sl_http_worker_data(sl_http_worker *w);
void sl_http_worker_set_data(sl_http_worker *w, void *data);

/* Request accessors; slices stay valid while the request is. */
sl_http_worker *sl_http_req_worker(sl_http_req *r);
sl_str sl_http_req_method(const sl_http_req *r);
sl_str sl_http_req_path(const sl_http_req *r);   /* without the query string */
sl_str sl_http_req_query(const sl_http_req *r);  /* after '?', may be empty */
sl_str sl_http_req_body(const sl_http_req *r);
/* Returns the first header with this lowercase name; found=false when absent. */
sl_str sl_http_req_header(const sl_http_req *r, const char *lname, bool *found);

/* Called when the client goes away before the handler finished the request. */
void sl_http_req_on_gone(sl_http_req *r, void (*cb)(void *ud), void *ud);

typedef struct sl_http_header {
    const char *name;
    const char *value;
} sl_http_header;

/* Sends a whole response and finishes the request. body is copied. */
void sl_http_respond(sl_http_req *r, int status, const char *content_type, const sl_http_header *hdrs,
                     size_t n_hdrs, const char *body, size_t len);

/* Starts a streamed (chunked) response. The status and headers are sent
 * with the first sl_http_stream_write (or sl_http_stream_end), in the same
 * write as those bytes. */
void sl_http_stream_begin(sl_http_req *r, int status, const char *content_type, const sl_http_header *hdrs,
                          size_t n_hdrs);
/* Queues bytes (copied). Returns 0, or SL_EAGAIN when the unsent backlog is past the
 * high-water mark: the bytes were taken, but the producer should pause until the
 * drain callback fires. */
int sl_http_stream_write(sl_http_req *r, const char *p, size_t n);
/* While held, sl_http_stream_write only queues (unless the backlog passes
 * the high-water mark); releasing (hold false) sends everything queued in one
 * write. A caller that produces several pieces at
 * once (one upstream read) holds around them. sl_http_stream_end sends
 * regardless. */
void sl_http_stream_hold(sl_http_req *r, bool hold);
/* Called when a backlog that returned SL_EAGAIN has been written out. */
void sl_http_req_on_drain(sl_http_req *r, void (*cb)(void *ud), void *ud);
/* Finishes the stream: ok=true ends it cleanly after the queued bytes; ok=false
 * closes the connection abruptly (the client sees a truncated response). */
void sl_http_stream_end(sl_http_req *r, bool ok);

/* The standard reason phrase of an HTTP status ("Service Unavailable"). */
const char *sl_http_reason(int status);

/* Bytes queued but not yet handed to the socket (for tests and metrics). */
size_t sl_http_stream_backlog(const sl_http_req *r);

#endif
