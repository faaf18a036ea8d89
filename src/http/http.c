/*
 * The HTTP server on h2o 2.2 (libuv flavour).
 *
 * Threads: the caller's thread binds every listening socket up front (so that
 * bind errors come back from sl_http_server_start), then N worker threads each
 * open one of them in their own uv loop. All sockets share the port through
 * SO_REUSEPORT, so the kernel spreads connections across workers.
 *
 * h2o 2.2 reads the whole request body before calling a handler and stops
 * reading the socket while a request is in progress, so a client that goes away
 * while we wait on an upstream is only noticed when we write. For requests with
 * no response started yet, a per-worker timer peeks at each such connection
 * (recv MSG_PEEK) once a second and treats an orderly close or a reset as "gone".
 * A client that half-closes its sending side after the request is treated as
 * gone too; HTTP clients do not do that in practice.
 */
#include "http/http.h"

#define H2O_USE_LIBUV 1
#include <h2o.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STREAM_HIGH_WATER (256 * 1024) /* unsent bytes before the producer is told to pause */
#define STREAM_MAX_BACKLOG (8u << 20)  /* hard cap on one response's queued bytes */
#define LIVENESS_INTERVAL_MS 1000

typedef struct conn_entry conn_entry;

struct sl_http_worker {
    h2o_context_t ctx; /* first: req->conn->ctx points here */
    h2o_accept_ctx_t accept_ctx;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_timer_t liveness;
    int listen_fd;
    int index;
    bool listening;
    _Atomic int stop_requested;
    void *data;
    sl_http_server *server;
    pthread_t thread;
    int start_rc;
    /* conns by h2o_conn_t pointer: open addressing, power-of-two capacity */
    conn_entry **conn_tab;
    size_t conn_cap, conn_count;
    sl_http_req *waiting; /* requests with no response started, for the liveness sweep */
};

struct sl_http_server {
    sl_http_opts opts;
    sl_http_handlers handlers;
    h2o_globalconf_t globalconf;
    h2o_hostconf_t *hostconf;
    sl_http_worker *workers;
    int n_workers;
    int port;
    _Atomic long connections;
    _Atomic long inflight;
    _Atomic int draining;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
};

struct conn_entry {
    uv_tcp_t tcp;
    sl_http_worker *worker;
    h2o_conn_t *h2o_conn;
    int active;  /* requests of this connection not yet disposed */
    bool kicked; /* shut down at teardown because it sat idle */
};

enum req_state { REQ_ACTIVE, REQ_STREAMING, REQ_FINISHED, REQ_GONE };

struct sl_http_req {
    h2o_req_t *req;
    sl_http_worker *worker;
    enum req_state state;
    int fd; /* the connection's socket, for the liveness sweep; -1 if unknown */
    conn_entry *conn;
    h2o_generator_t gen;
    sl_buf pending;  /* queued, not yet handed to h2o */
    sl_buf inflight; /* handed to h2o, waiting for proceed */
    bool sending;    /* h2o_send in progress: wait for proceed */
    bool held;       /* sl_http_stream_hold: writes queue without a send */
    bool end_queued;
    bool abort_queued; /* abrupt end requested while h2o was still writing */
    bool paused_producer;
    void (*gone_cb)(void *);
    void *gone_ud;
    void (*drain_cb)(void *);
    void *drain_ud;
    sl_http_req *wait_prev, *wait_next;
};

static _Thread_local sl_http_worker *tls_worker;

/* ---- connection table ---- */

static size_t ptr_slot(const void *p, size_t cap) { return (size_t)(sl_hash64(&p, sizeof p, 0) & (cap - 1)); }

static int conn_tab_put(sl_http_worker *w, conn_entry *e)
{
    if ((w->conn_count + 1) * 2 > w->conn_cap) {
        size_t ncap = w->conn_cap ? w->conn_cap * 2 : 64;
        conn_entry **nt = sl_calloc(ncap, sizeof *nt);
        if (!nt)
            return SL_ENOMEM;
        for (size_t i = 0; i < w->conn_cap; i++) {
            conn_entry *x = w->conn_tab[i];
            if (!x)
                continue;
            size_t j = ptr_slot(x->h2o_conn, ncap);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = x;
        }
        sl_free(w->conn_tab);
        w->conn_tab = nt;
        w->conn_cap = ncap;
    }
    size_t j = ptr_slot(e->h2o_conn, w->conn_cap);
    while (w->conn_tab[j])
        j = (j + 1) & (w->conn_cap - 1);
    w->conn_tab[j] = e;
    w->conn_count++;
    return 0;
}

static conn_entry *conn_tab_get(sl_http_worker *w, const h2o_conn_t *c)
{
    if (!w->conn_cap)
        return NULL;
    size_t j = ptr_slot(c, w->conn_cap);
    while (w->conn_tab[j]) {
        if (w->conn_tab[j]->h2o_conn == c)
            return w->conn_tab[j];
        j = (j + 1) & (w->conn_cap - 1);
    }
    return NULL;
}

static void conn_tab_del(sl_http_worker *w, conn_entry *e)
{
    if (!w->conn_cap)
        return;
    size_t j = ptr_slot(e->h2o_conn, w->conn_cap);
    while (w->conn_tab[j] && w->conn_tab[j] != e)
        j = (j + 1) & (w->conn_cap - 1);
    if (!w->conn_tab[j])
        return;
    w->conn_tab[j] = NULL;
    w->conn_count--;
    /* re-insert the rest of the cluster (linear probing deletion) */
    size_t k = (j + 1) & (w->conn_cap - 1);
    while (w->conn_tab[k]) {
        conn_entry *x = w->conn_tab[k];
        w->conn_tab[k] = NULL;
        size_t m = ptr_slot(x->h2o_conn, w->conn_cap);
        while (w->conn_tab[m])
            m = (m + 1) & (w->conn_cap - 1);
        w->conn_tab[m] = x;
        k = (k + 1) & (w->conn_cap - 1);
    }
}

/* ---- requests ---- */

static void waiting_add(sl_http_req *r)
{
    sl_http_worker *w = r->worker;
    r->wait_prev = NULL;
    r->wait_next = w->waiting;
    if (w->waiting)
        w->waiting->wait_prev = r;
    w->waiting = r;
}

static void waiting_del(sl_http_req *r)
{
    sl_http_worker *w = r->worker;
    if (r->wait_prev)
        r->wait_prev->wait_next = r->wait_next;
    else if (w->waiting == r)
        w->waiting = r->wait_next;
    if (r->wait_next)
        r->wait_next->wait_prev = r->wait_prev;
    r->wait_prev = r->wait_next = NULL;
}

/* Called by h2o when the request's memory pool is cleared: after the response
 * completed, or when the connection died first. */
static void req_dispose(void *p)
{
    sl_http_req *r = p;
    sl_http_worker *w = r->worker;
    enum req_state was = r->state;
    if (was == REQ_ACTIVE)
        waiting_del(r);
    r->state = REQ_GONE;
    if ((was == REQ_ACTIVE || was == REQ_STREAMING) && r->gone_cb)
        r->gone_cb(r->gone_ud);
    sl_buf_free(&r->pending);
    sl_buf_free(&r->inflight);
    if (r->conn)
        r->conn->active--; /* h2o disposes a request before it closes its connection */
    atomic_fetch_sub(&w->server->inflight, 1);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    sl_http_worker *w = (sl_http_worker *)req->conn->ctx;
    sl_http_req *r = h2o_mem_alloc_shared(&req->pool, sizeof *r, req_dispose);
    memset(r, 0, sizeof *r);
    r->req = req;
    r->worker = w;
    r->state = REQ_ACTIVE;
    r->fd = -1;
    conn_entry *ce = conn_tab_get(w, req->conn);
    if (ce) {
        r->conn = ce;
        ce->active++;
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&ce->tcp, &fd) == 0)
            r->fd = fd;
    }
    sl_buf_init(&r->pending, STREAM_MAX_BACKLOG);
    sl_buf_init(&r->inflight, STREAM_MAX_BACKLOG);
    atomic_fetch_add(&w->server->inflight, 1);
    waiting_add(r);
    if (atomic_load(&w->server->draining))
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONNECTION, NULL, H2O_STRLIT("close"));
    w->server->handlers.on_request(w->server->handlers.ud, r);
    return 0;
}

sl_http_worker *sl_http_req_worker(sl_http_req *r) { return r->worker; }
sl_str sl_http_req_method(const sl_http_req *r) { return sl_str_make(r->req->method.base, r->req->method.len); }

sl_str sl_http_req_path(const sl_http_req *r)
{
    const h2o_req_t *q = r->req;
    size_t n = q->query_at != SIZE_MAX ? q->query_at : q->path.len;
    return sl_str_make(q->path.base, n);
}

sl_str sl_http_req_query(const sl_http_req *r)
{
    const h2o_req_t *q = r->req;
    if (q->query_at == SIZE_MAX)
        return sl_str_make("", 0);
    return sl_str_make(q->path.base + q->query_at + 1, q->path.len - q->query_at - 1);
}

sl_str sl_http_req_body(const sl_http_req *r)
{
    const h2o_req_t *q = r->req;
    if (!q->entity.base)
        return sl_str_make("", 0);
    return sl_str_make(q->entity.base, q->entity.len);
}

sl_str sl_http_req_header(const sl_http_req *r, const char *lname, bool *found)
{
    ssize_t i = h2o_find_header_by_str(&r->req->headers, lname, strlen(lname), -1);
    if (i < 0) {
        if (found)
            *found = false;
        return sl_str_make("", 0);
    }
    if (found)
        *found = true;
    const h2o_header_t *h = r->req->headers.entries + i;
    return sl_str_make(h->value.base, h->value.len);
}

void sl_http_req_on_gone(sl_http_req *r, void (*cb)(void *), void *ud)
{
    r->gone_cb = cb;
    r->gone_ud = ud;
}

void sl_http_req_on_drain(sl_http_req *r, void (*cb)(void *), void *ud)
{
    r->drain_cb = cb;
    r->drain_ud = ud;
}

const char *sl_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void set_headers(sl_http_req *r, int status, const char *content_type, const sl_http_header *hdrs,
                        size_t n)
{
    h2o_req_t *q = r->req;
    q->res.status = status;
    q->res.reason = sl_http_reason(status);
    if (content_type)
        h2o_add_header(&q->pool, &q->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    for (size_t i = 0; i < n; i++) {
        h2o_iovec_t v = h2o_strdup(&q->pool, hdrs[i].value, SIZE_MAX);
        h2o_iovec_t k = h2o_strdup(&q->pool, hdrs[i].name, SIZE_MAX);
        h2o_add_header_by_str(&q->pool, &q->res.headers, k.base, k.len, 1, NULL, v.base, v.len);
    }
}

void sl_http_respond(sl_http_req *r, int status, const char *content_type, const sl_http_header *hdrs,
                     size_t n_hdrs, const char *body, size_t len)
{
    if (r->state != REQ_ACTIVE)
        return;
    waiting_del(r);
    r->state = REQ_FINISHED;
    set_headers(r, status, content_type, hdrs, n_hdrs);
    r->req->res.content_length = len; /* a length, not chunked framing */
    h2o_send_inline(r->req, body, len);
}

static void stream_flush(sl_http_req *r);

static void gen_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    sl_http_req *r = H2O_STRUCT_FROM_MEMBER(sl_http_req, gen, g);
    r->sending = false;
    sl_buf_reset(&r->inflight);
    if (r->abort_queued) {
        h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    stream_flush(r);
}

static void gen_stop(h2o_generator_t *g, h2o_req_t *req)
{
    /* the connection is going away; req_dispose follows and reports it */
    (void)g;
    (void)req;
}

/* Hands queued bytes to h2o if it is ready for more. */
static void stream_flush(sl_http_req *r)
{
    if (r->sending || r->state == REQ_GONE || r->abort_queued)
        return;
    if (r->pending.len == 0 && !r->end_queued)
        return;
    sl_buf t = r->inflight;
    r->inflight = r->pending;
    r->pending = t;
    sl_buf_reset(&r->pending);
    h2o_iovec_t v = h2o_iovec_init(r->inflight.data ? r->inflight.data : "", r->inflight.len);
    bool final = r->end_queued;
    if (!final)
        r->sending = true;
    if (r->paused_producer && r->drain_cb) {
        r->paused_producer = false;
        r->drain_cb(r->drain_ud);
        if (r->state == REQ_GONE)
            return;
    }
    if (final)
        r->state = REQ_FINISHED;
    h2o_send(r->req, &v, 1, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

void sl_http_stream_begin(sl_http_req *r, int status, const char *content_type, const sl_http_header *hdrs,
                          size_t n_hdrs)
{
    if (r->state != REQ_ACTIVE)
        return;
    waiting_del(r);
    r->state = REQ_STREAMING;
    set_headers(r, status, content_type, hdrs, n_hdrs);
    h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    r->gen.proceed = gen_proceed;
    r->gen.stop = gen_stop;
    /* The headers go out with the first bytes written (or the end), in one
     * write: sending them alone would hold the first chunk back until h2o's
     * proceed, a whole loop iteration later, which under load is most of the
     * gateway's added time to first token. */
    h2o_start_response(r->req, &r->gen);
}

int sl_http_stream_write(sl_http_req *r, const char *p, size_t n)
{
    if (r->state != REQ_STREAMING || r->end_queued)
        return SL_ESTATE;
    int rc = sl_buf_append(&r->pending, p, n);
    if (rc)
        return rc;
    /* held: no send, unless the producer is about to be told to pause (then
     * a send must be under way for the drain callback to come) */
    if (!r->held || r->pending.len + r->inflight.len > STREAM_HIGH_WATER)
        stream_flush(r);
    if (r->state == REQ_STREAMING && r->pending.len + r->inflight.len > STREAM_HIGH_WATER) {
        r->paused_producer = true;
        return SL_EAGAIN;
    }
    return 0;
}

void sl_http_stream_hold(sl_http_req *r, bool hold)
{
    r->held = hold;
    if (!hold && r->state == REQ_STREAMING)
        stream_flush(r);
}

void sl_http_stream_end(sl_http_req *r, bool ok)
{
    if (r->state != REQ_STREAMING || r->end_queued)
        return;
    if (!ok) {
        /* the client must see a truncated response, so the connection is closed */
        r->state = REQ_FINISHED;
        r->req->http1_is_persistent = 0;
        if (r->sending)
            r->abort_queued = true; /* h2o allows no h2o_send before proceed */
        else
            h2o_send(r->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    r->end_queued = true;
    stream_flush(r);
}

size_t sl_http_stream_backlog(const sl_http_req *r) { return r->pending.len + r->inflight.len; }

/* ---- errors h2o answers by itself ----
 * h2o answers some requests without calling our handler (a body over the
 * limit, malformed HTTP) with a plain-text body. This output filter swaps
 * that body for the upper layer's rendering. Our own responses always carry
 * x-request-id, which is how the filter tells them apart. */

typedef struct err_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} err_ostream;

static void err_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n, h2o_send_state_t st)
{
    (void)bufs;
    (void)n;
    err_ostream *e = (err_ostream *)self;
    if (h2o_send_state_is_in_progress(st)) {
        h2o_ostream_send_next(self, req, NULL, 0, st);
        return;
    }
    h2o_ostream_send_next(self, req, &e->body, 1, st);
}

static void err_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    sl_http_server *s = ((sl_http_worker *)req->conn->ctx)->server;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SERVER, NULL, H2O_STRLIT("sluice"));
    if (req->res.status >= 400 && s->handlers.render_error &&
        h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1) < 0) {
        char msg[160];
        int st = req->res.status;
        if (st == 413)
            snprintf(msg, sizeof msg, "request body is larger than the limit of %zu bytes",
                     s->opts.max_body_bytes);
        else
            snprintf(msg, sizeof msg, "the HTTP request could not be processed: %s",
                     req->res.reason ? req->res.reason : "error");
        sl_buf b;
        sl_buf_init(&b, 8192);
        s->handlers.render_error(s->handlers.ud, st, msg, &b);
        if (b.len) {
            err_ostream *e = (err_ostream *)h2o_add_ostream(req, sizeof *e, slot);
            e->super.do_send = err_do_send;
            e->body = h2o_strdup(&req->pool, b.data, b.len);
            req->res.content_length = b.len;
            ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
            if (ct >= 0)
                req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/json"));
            else
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                               H2O_STRLIT("application/json"));
            slot = &e->super.next;
        }
        sl_buf_free(&b);
    }
    h2o_setup_next_ostream(req, slot);
}

/* ---- the liveness sweep ---- */

static void liveness_tick(uv_timer_t *t)
{
    sl_http_worker *w = t->data;
    sl_http_req *r = w->waiting;
    while (r) {
        sl_http_req *next = r->wait_next;
        if (r->fd >= 0) {
            char c;
            ssize_t n = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                /* the peer closed: report it, then let h2o tear the request down */
                waiting_del(r);
                void (*cb)(void *) = r->gone_cb;
                void *ud = r->gone_ud;
                r->gone_cb = NULL;
                r->state = REQ_FINISHED;
                if (cb)
                    cb(ud);
                r->req->http1_is_persistent = 0;
                r->req->res.status = 499;
                r->req->res.reason = "Client Closed Request";
                h2o_send_inline(r->req, "", 0);
            }
        }
        r = next;
    }
}

/* ---- accepting ---- */

static void on_conn_close(uv_handle_t *h)
{
    conn_entry *ce = (conn_entry *)h;
    sl_http_worker *w = ce->worker;
    conn_tab_del(w, ce);
    atomic_fetch_sub(&w->server->connections, 1);
    sl_free(ce);
}

static void on_refused_close(uv_handle_t *h) { sl_free(h); }

static void on_accept(uv_stream_t *listener, int status)
{
    sl_http_worker *w = listener->data;
    if (status != 0)
        return;
    long n = atomic_fetch_add(&w->server->connections, 1);
    if (n >= w->server->opts.max_connections || atomic_load(&w->stop_requested)) {
        atomic_fetch_sub(&w->server->connections, 1);
        uv_tcp_t *t = sl_malloc(sizeof *t);
        if (!t)
            return;
        uv_tcp_init(&w->loop, t);
        if (uv_accept(listener, (uv_stream_t *)t) == 0)
            uv_tcp_nodelay(t, 1);
        uv_close((uv_handle_t *)t, on_refused_close);
        return;
    }
    conn_entry *ce = sl_calloc(1, sizeof *ce);
    if (!ce) {
        atomic_fetch_sub(&w->server->connections, 1);
        return;
    }
    ce->worker = w;
    uv_tcp_init(&w->loop, &ce->tcp);
    if (uv_accept(listener, (uv_stream_t *)&ce->tcp) != 0) {
        ce->h2o_conn = NULL;
        uv_close((uv_handle_t *)&ce->tcp, on_conn_close);
        return;
    }
    uv_tcp_nodelay(&ce->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&ce->tcp, on_conn_close);
    h2o_accept(&w->accept_ctx, sock);
    ce->h2o_conn = sock->data; /* h2o's HTTP/1 accept sets it to the connection synchronously */
    if (ce->h2o_conn && conn_tab_put(w, ce) != 0)
        ce->h2o_conn = NULL;
}

/* ---- worker threads ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_wake(uv_async_t *a)
{
    sl_http_worker *w = a->data;
    if (atomic_load(&w->server->draining) && w->listening) {
        w->listening = false;
        uv_close((uv_handle_t *)&w->listener, NULL);
        h2o_context_request_shutdown(&w->ctx);
    }
    if (atomic_load(&w->stop_requested))
        uv_stop(&w->loop);
}

static void *worker_main(void *arg)
{
    sl_http_worker *w = arg;
    sl_http_server *s = w->server;
    tls_worker = w;
    int rc = uv_loop_init(&w->loop);
    if (rc == 0) {
        h2o_context_init(&w->ctx, &w->loop, &s->globalconf);
        w->accept_ctx.ctx = &w->ctx;
        w->accept_ctx.hosts = s->globalconf.hosts;
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->liveness);
        w->liveness.data = w;
        uv_timer_start(&w->liveness, liveness_tick, LIVENESS_INTERVAL_MS, LIVENESS_INTERVAL_MS);
        uv_tcp_init(&w->loop, &w->listener);
        w->listener.data = w;
        rc = uv_tcp_open(&w->listener, w->listen_fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&w->listener, 1024, on_accept);
        if (rc == 0 && s->handlers.on_worker_start)
            rc = s->handlers.on_worker_start(s->handlers.ud, w) ? -1 : 0;
        w->listening = rc == 0;
    }
    pthread_mutex_lock(&s->lock);
    w->start_rc = rc;
    s->started++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        return NULL;

    uv_run(&w->loop, UV_RUN_DEFAULT);

    /* Tear down in order: stop accepting, close idle connections, let the upper
     * layer release its per-worker state, give connections a moment to close,
     * then dispose h2o's context (which closes its own timers) and finish. */
    if (w->listening) {
        w->listening = false;
        uv_close((uv_handle_t *)&w->listener, NULL);
    }
    h2o_context_request_shutdown(&w->ctx);
    if (s->handlers.on_worker_stop)
        s->handlers.on_worker_stop(s->handlers.ud, w);
    uv_timer_stop(&w->liveness);
    uv_close((uv_handle_t *)&w->liveness, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    /* h2o 2.2 leaves idle keep-alive connections open until their timeout;
     * shutting their sockets makes h2o see EOF and close them its own way */
    uint64_t until = sl_now_ms() + 1000;
    while (w->conn_count > 0 && sl_now_ms() < until) {
        for (size_t i = 0; i < w->conn_cap; i++) {
            conn_entry *ce = w->conn_tab[i];
            uv_os_fd_t fd;
            if (ce && !ce->active && !ce->kicked && uv_fileno((uv_handle_t *)&ce->tcp, &fd) == 0) {
                ce->kicked = true;
                shutdown(fd, SHUT_RDWR);
            }
        }
        uv_run(&w->loop, UV_RUN_NOWAIT);
        if (w->conn_count > 0)
            uv_sleep(5);
    }
    /* h2o 2.2 links a graceful-shutdown entry on request_shutdown even without
     * HTTP/2 connections; its dispose asserts that every timeout is empty */
    if (h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&w->ctx);
    for (int i = 0; i < 100 && uv_loop_alive(&w->loop); i++)
        uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    sl_free(w->conn_tab);
    return NULL;
}

static int bind_socket(const char *host, int port, int *fd_out, int *port_out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof *a6;
    } else {
        snprintf(err, errlen, "listen address '%s' is not an IPv4 or IPv6 address", host);
        return SL_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return SL_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        snprintf(err, errlen, "bind %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return SL_EIO;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    getsockname(fd, (struct sockaddr *)&got, &gl);
    *port_out = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                               : ((struct sockaddr_in6 *)&got)->sin6_port);
    *fd_out = fd;
    return 0;
}

int sl_http_server_start(const sl_http_opts *o, const sl_http_handlers *h, sl_http_server **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    if (o->workers < 1 || o->workers > 256) {
        snprintf(err, errlen, "workers must be between 1 and 256");
        return SL_EINVAL;
    }
    sl_http_server *s = sl_calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->opts = *o;
    s->handlers = *h;
    s->n_workers = o->workers;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->workers = sl_calloc((size_t)o->workers, sizeof *s->workers);
    if (!s->workers) {
        sl_free(s);
        return SL_ENOMEM;
    }

    h2o_config_init(&s->globalconf);
    s->globalconf.max_request_entity_size = o->max_body_bytes;
    s->globalconf.http1.req_timeout = o->req_timeout_ms;
    /* no server_name: h2o would print it with sprintf into every response
     * head; err_setup adds the same header as a plain one instead */
    s->globalconf.server_name = h2o_iovec_init(NULL, 0);
    s->hostconf = h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(s->hostconf, "/", 0);
    h2o_handler_t *hd = h2o_create_handler(pc, sizeof *hd);
    hd->on_req = on_req;
    h2o_filter_t *f = h2o_create_filter(pc, sizeof *f);
    f->on_setup_ostream = err_setup;
    f = h2o_create_filter(&s->hostconf->fallback_path, sizeof *f);
    f->on_setup_ostream = err_setup;

    int port = o->port;
    int rc = 0;
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i].listen_fd = -1;
        int got_port;
        rc = bind_socket(o->host, port, &s->workers[i].listen_fd, &got_port, err, errlen);
        if (rc)
            break;
        port = got_port; /* with port 0, the rest join the port the first one got */
    }
    s->port = port;
    if (rc == 0) {
        for (int i = 0; i < s->n_workers; i++) {
            if (listen(s->workers[i].listen_fd, 1024) != 0) {
                snprintf(err, errlen, "listen: %s", strerror(errno));
                rc = SL_EIO;
                break;
            }
        }
    }
    if (rc) {
        for (int i = 0; i < s->n_workers; i++)
            if (s->workers[i].listen_fd >= 0)
                close(s->workers[i].listen_fd);
        h2o_config_dispose(&s->globalconf);
        sl_free(s->workers);
        sl_free(s);
        return rc;
    }
    int launched = 0;
    for (int i = 0; i < s->n_workers; i++) {
        sl_http_worker *w = &s->workers[i];
        w->index = i;
        w->server = s;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start worker thread %d", i);
            rc = SL_EIO;
            break;
        }
        launched++;
    }
    pthread_mutex_lock(&s->lock);
    while (s->started < launched)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < launched && rc == 0; i++)
        if (s->workers[i].start_rc != 0) {
            snprintf(err, errlen, "worker %d failed to start: %s", i, uv_strerror(s->workers[i].start_rc));
            rc = SL_EIO;
        }
    if (rc) {
        s->n_workers = launched;
        sl_http_server_stop(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sl_http_server_port(const sl_http_server *s) { return s->port; }
long sl_http_server_inflight(const sl_http_server *s) { return atomic_load(&s->inflight); }
long sl_http_server_connections(const sl_http_server *s) { return atomic_load(&s->connections); }

void sl_http_server_drain(sl_http_server *s)
{
    atomic_store(&s->draining, 1);
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].start_rc == 0)
            uv_async_send(&s->workers[i].wake);
}

void sl_http_server_stop(sl_http_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_workers; i++) {
        sl_http_worker *w = &s->workers[i];
        if (w->start_rc == 0) {
            atomic_store(&w->stop_requested, 1);
            atomic_store(&s->draining, 1);
            uv_async_send(&w->wake);
        }
    }
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i].thread, NULL);
    h2o_config_dispose(&s->globalconf);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    sl_free(s->workers);
    sl_free(s);
}

uv_loop_t *sl_http_worker_loop(sl_http_worker *w) { return &w->loop; }
int sl_http_worker_index(const sl_http_worker *w) { return w->index; }
void *sl_http_worker_data(sl_http_worker *w) { return w->data; }
void sl_http_worker_set_data(sl_http_worker *w, void *data) { w->data = data; }
