/* Built-in HTTP/1.1 client for http:// upstreams, on the pool's libuv loop.
 *
 * Why not libcurl here: per transfer libcurl pays easy-handle set-up, URL
 * parsing, header formatting and matching, and two poll() calls to check a
 * cached connection is alive before reusing it. Here an idle keep-alive
 * connection keeps uv_read_start active, so a peer close or stray bytes close
 * it the moment they arrive and reuse needs no check at all; a request is one
 * buffer sent with uv_try_write.
 *
 * Objects: a host is one (name, port); it keeps a LIFO list of idle
 * connections and counts its open ones. A connection (conn) is resolving,
 * connecting, active (owned by one transfer) or idle, and closing once
 * conn_close ran. A transfer (xfer) waits in the pool's FIFO queue while no
 * connection slot is free (max_host_connections, max_total_connections).
 *
 * Callbacks fire only from the loop: read, write, connect and resolve
 * callbacks, the transfer's deadline timer, and the pool's kick timer, which
 * delivers body bytes held during a pause after a resume and failures found
 * synchronously inside sl_upstream_start, resume, cancel or a connection
 * hand-over (where the caller must not see a callback).
 *
 * Lifetimes: a transfer's memory goes with its timer's close callback; a
 * connection's with its last reference (its TCP handle, an address lookup in
 * flight). Every such handle or request is counted in the owning pool, whose
 * memory (this h1 pool included) goes when the count reaches zero after
 * destroy. After any user callback the code only reads flags of the transfer
 * (still allocated until the loop runs close callbacks) before returning. */
#include <assert.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "upstream/h1parse.h"
#include "upstream/upstream_int.h"

#define READ_BUF_BYTES 16384 /* one read; also what a paused transfer may hold */
#define MAX_ADDRS 8          /* resolved addresses tried in order */
#define DEFAULT_CONNECT_MS 300000
#define MAX_HOST_NAME 255

typedef struct h1_conn h1_conn;
typedef struct h1_xfer h1_xfer;

typedef struct h1_host {
    struct h1_host *next;
    char name[MAX_HOST_NAME + 1]; /* without IPv6 brackets */
    uint16_t port;
    bool numeric; /* addr holds the address: no lookup */
    struct sockaddr_storage addr;
    int n_conns;   /* open connections (any state but closing) */
    h1_conn *idle; /* most recently used first */
} h1_host;

/* Target cache. Every request to a backend has the same URL, so the pool
 * keeps the last few distinct URLs it parsed, each with its host and the
 * request text that the URL alone decides: " <path> HTTP/1.1\r\n" and the
 * Host line. A request whose URL equals a cached one byte for byte skips the
 * parse, the host lookup and the port formatting. An entry is made only from
 * a URL that parse_url accepted (no byte <= 32 or >= 127, so no CR or LF), so
 * a hit is exactly as checked as a fresh parse. Entries never hold the api
 * key (it goes into each transfer's own buffer), nor user info (parse_url
 * refuses it); they are still wiped before being freed, as a URL's query may
 * carry a token. */
#define URL_CACHE_SLOTS 8

typedef struct url_entry {
    char *text;        /* URL and its NUL, then target, then Host line; NULL: empty slot */
    size_t url_len;    /* 0 for an empty slot */
    size_t target_len; /* " /path HTTP/1.1\r\n" */
    size_t host_len;   /* "Host: authority[:port]\r\n" */
    h1_host *host;     /* hosts live as long as the pool */
} url_entry;

enum { C_RESOLVING, C_CONNECTING, C_ACTIVE, C_IDLE, C_CLOSING };

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    uv_write_t wreq;
    sl_h1_pool *hp;
    h1_host *host;
    h1_xfer *x;                   /* the transfer on it, when resolving/connecting/active */
    h1_conn *iprev, *inext;       /* host idle list */
    h1_conn *pprev, *pnext;       /* pool list of conns not closing */
    int state;
    int refs;                     /* tcp handle and lookup in flight */
    bool tcp_open, resolving, reading, writing;
    bool reused;                  /* carried a complete response before the current request */
    struct sockaddr_storage addrs[MAX_ADDRS];
    int n_addrs, next_addr;
};

struct h1_xfer {
    int impl; /* SL_UPSTREAM_IMPL_H1; must stay first */
    sl_h1_pool *hp;
    h1_host *host;
    h1_conn *conn;
    sl_upstream_cb cb;
    h1_xfer *prev, *next;         /* pool list of live transfers (of spares: next) */
    h1_xfer *wprev, *wnext;       /* wait queue */
    h1_xfer *kprev, *knext;       /* kick list */
    bool waiting, kicked;
    char *req;                    /* the whole request, kept for the one retry; wiped at release */
    size_t req_len, req_cap;
    char *held;                   /* undelivered bytes of the last read, held during a pause */
    size_t held_off, held_len;
    bool stream, head;
    bool cancelled, finishing;
    bool blocked;                 /* reading stopped: body is held until resume */
    bool done_held;               /* the response ended while paused: on_done waits for resume */
    bool retried;                 /* the stale-connection retry was used */
    int pending_err;              /* failure to deliver from the kick timer */
    size_t received;
    sl_up_deadlines dl;           /* connect, first-byte, idle and total deadlines */
    /* A spare transfer is cleared up to here (xfer_clear); what follows is
     * kept: its timer (an open handle); the parser, with its header buffer,
     * which conn_begin resets before anything reads it; and msg, which is
     * always written before it is read. */
    uv_timer_t timer;             /* deadlines */
    sl_h1p parser;
    char msg[SL_UPSTREAM_XFER_MSG_MAX];
};

struct sl_h1_pool {
    sl_upstream_pool *owner;
    uv_loop_t *loop;
    uv_timer_t kick;
    size_t max_response;
    int max_host, max_total, max_idle;
    int n_conns, n_idle;
    bool destroying, dispatching, dispatch_again;
    h1_host *hosts;
    h1_conn *conns;
    h1_xfer *xfers;
    h1_xfer *wait_head, *wait_tail;
    h1_xfer *kick_head, *kick_tail;
    h1_xfer *spare;               /* released transfers kept for reuse */
    int n_spare;
    url_entry urls[URL_CACHE_SLOTS]; /* target cache */
    int url_next;                 /* slot the next new URL takes */
    uint64_t sockets_opened, sockets_closed;
    char rbuf[READ_BUF_BYTES]; /* every read lands here and is handled before the next */
};

static void conn_close(h1_conn *c, bool dispatch);
static void conn_open(h1_xfer *x, const struct sockaddr_storage *addrs, int n_addrs);
static void conn_begin(h1_conn *c);
static void xfer_arm(h1_xfer *x);
static void xfer_feed(h1_xfer *x, char *buf, size_t n, bool from_held);
static void pool_dispatch(sl_h1_pool *hp);

/* ---- lists ---- */

static void wait_unlink(sl_h1_pool *hp, h1_xfer *x)
{
    if (!x->waiting)
        return;
    if (x->wprev)
        x->wprev->wnext = x->wnext;
    else
        hp->wait_head = x->wnext;
    if (x->wnext)
        x->wnext->wprev = x->wprev;
    else
        hp->wait_tail = x->wprev;
    x->wprev = x->wnext = NULL;
    x->waiting = false;
}

static void wait_push(sl_h1_pool *hp, h1_xfer *x)
{
    x->waiting = true;
    x->wnext = NULL;
    x->wprev = hp->wait_tail;
    if (hp->wait_tail)
        hp->wait_tail->wnext = x;
    else
        hp->wait_head = x;
    hp->wait_tail = x;
}

static void kick_unlink(sl_h1_pool *hp, h1_xfer *x)
{
    if (!x->kicked)
        return;
    if (x->kprev)
        x->kprev->knext = x->knext;
    else
        hp->kick_head = x->knext;
    if (x->knext)
        x->knext->kprev = x->kprev;
    else
        hp->kick_tail = x->kprev;
    x->kprev = x->knext = NULL;
    x->kicked = false;
}

static void on_kick(uv_timer_t *t);

static void kick_push(sl_h1_pool *hp, h1_xfer *x)
{
    if (x->kicked)
        return;
    x->kicked = true;
    x->knext = NULL;
    x->kprev = hp->kick_tail;
    if (hp->kick_tail)
        hp->kick_tail->knext = x;
    else
        hp->kick_head = x;
    hp->kick_tail = x;
    uv_timer_start(&hp->kick, on_kick, 0, 0);
}

static void idle_unlink(h1_conn *c)
{
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        c->host->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    c->iprev = c->inext = NULL;
    c->hp->n_idle--;
}

/* ---- connections ---- */

static void conn_unref(h1_conn *c)
{
    sl_upstream_pool *owner = c->hp->owner;
    if (--c->refs == 0)
        sl_free(c);
    sl_upstream_handle_closed(owner); /* may free the pools: last thing */
}

static void on_tcp_closed(uv_handle_t *h) { conn_unref(h->data); }

/* Closes c for good: it leaves every list and its slot is free at once. The
 * transfer on it (if any) is detached, not finished. dispatch: hand the freed
 * slot to a waiting transfer now. Safe from anywhere; fires no callback. */
static void conn_close(h1_conn *c, bool dispatch)
{
    if (c->state == C_CLOSING)
        return;
    sl_h1_pool *hp = c->hp;
    if (c->state == C_IDLE)
        idle_unlink(c);
    if (c->x && c->x->conn == c)
        c->x->conn = NULL;
    c->x = NULL;
    c->state = C_CLOSING;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        hp->conns = c->pnext;
    if (c->pnext)
        c->pnext->pprev = c->pprev;
    c->host->n_conns--;
    hp->n_conns--;
    if (c->tcp_open) {
        hp->sockets_closed++;
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    }
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* its callback still runs and drops the ref */
    if (c->refs == 0)
        sl_free(c);
    if (dispatch)
        pool_dispatch(hp);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    h1_conn *c = h->data;
    *buf = uv_buf_init(c->hp->rbuf, sizeof c->hp->rbuf);
}

static void conn_read_start(h1_conn *c);

/* The response of x ended: its connection goes idle when nothing else can be
 * on it, else it closes; then on_done. */
static void xfer_finish(h1_xfer *x, int err, const char *msg);

static void conn_release(h1_conn *c, bool reusable)
{
    sl_h1_pool *hp = c->hp;
    if (c->x && c->x->conn == c)
        c->x->conn = NULL;
    c->x = NULL;
    if (!reusable || c->writing || hp->destroying || hp->n_idle >= hp->max_idle) {
        conn_close(c, true);
        return;
    }
    c->state = C_IDLE;
    c->reused = true;
    c->iprev = NULL;
    c->inext = c->host->idle;
    if (c->inext)
        c->inext->iprev = c;
    c->host->idle = c;
    hp->n_idle++;
    conn_read_start(c); /* a close or stray bytes now close it at once */
    /* Like libcurl's cache, idle connections do not keep the loop running. */
    uv_unref((uv_handle_t *)&c->tcp);
    pool_dispatch(hp);
}

/* Ends x with err; its connection (if any) is closed first. From the loop only. */
static void xfer_fail(h1_xfer *x, int err, const char *msg)
{
    if (x->conn)
        conn_close(x->conn, true);
    xfer_finish(x, err, msg);
}

/* A reused connection failed before any byte of the response: servers close
 * idle keep-alive connections whenever they like, and the close may cross our
 * request on the wire. Nothing of the response reached the caller, so the
 * request goes once more on a fresh connection. Returns false when that is not
 * allowed (fresh connection, bytes seen, already retried). */
static bool xfer_retry_stale(h1_xfer *x)
{
    h1_conn *c = x->conn;
    if (!c || !c->reused || x->retried || x->parser.started)
        return false;
    x->retried = true;
    h1_host *h = x->host;
    /* The slot passes straight to the new connection: no waiter takes it. */
    conn_close(c, false);
    conn_open(x, h->numeric ? &h->addr : NULL, h->numeric ? 1 : 0);
    return true;
}

static void xfer_defer_fail(h1_xfer *x, int err, const char *msg)
{
    if (x->conn)
        conn_close(x->conn, true);
    x->pending_err = err;
    if (msg != x->msg)
        snprintf(x->msg, sizeof x->msg, "%s", msg);
    kick_push(x->hp, x);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    h1_conn *c = s->data;
    if (nread == 0 || c->state == C_CLOSING)
        return;
    if (c->state != C_ACTIVE) {
        /* Idle: the peer closed or sent bytes nobody asked for. */
        conn_close(c, true);
        return;
    }
    h1_xfer *x = c->x;
    if (nread > 0) {
        xfer_feed(x, buf->base, (size_t)nread, false);
        return;
    }
    if ((nread == UV_EOF || nread == UV_ECONNRESET || nread == UV_EPIPE) && xfer_retry_stale(x))
        return;
    if (nread == UV_EOF) {
        bool done = false;
        int rc = sl_h1p_eof(&x->parser, &done);
        if (rc == 0 && done) {
            conn_close(c, true);
            xfer_finish(x, 0, "ok");
        } else {
            xfer_fail(x, SL_EUPSTREAM, x->parser.err);
        }
        return;
    }
    snprintf(x->msg, sizeof x->msg, "upstream connection failed: %s", uv_strerror((int)nread));
    xfer_fail(x, SL_EUPSTREAM, x->msg);
}

static void conn_read_start(h1_conn *c)
{
    if (c->reading)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = true;
}

static void conn_read_stop(h1_conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_write(uv_write_t *w, int status)
{
    h1_conn *c = w->data;
    c->writing = false;
    if (c->state == C_CLOSING || status == 0)
        return;
    h1_xfer *x = c->x;
    if (!x || c->state != C_ACTIVE)
        return;
    if (xfer_retry_stale(x))
        return;
    snprintf(x->msg, sizeof x->msg, "cannot send request to upstream: %s", uv_strerror(status));
    xfer_fail(x, SL_EUPSTREAM, x->msg);
}

/* Sends x's request on the active connection c and reads the answer. May run
 * inside user calls: failures are deferred to the kick timer. */
static void conn_begin(h1_conn *c)
{
    h1_xfer *x = c->x;
    sl_h1p_reset(&x->parser, x->head);
    conn_read_start(c);
    uv_buf_t b = uv_buf_init(x->req, (unsigned)x->req_len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)x->req_len)
        return;
    if (r >= 0 || r == UV_EAGAIN) {
        size_t done = r > 0 ? (size_t)r : 0;
        b = uv_buf_init(x->req + done, (unsigned)(x->req_len - done));
        c->wreq.data = c;
        r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (r == 0) {
            c->writing = true;
            return;
        }
    }
    if (xfer_retry_stale(x))
        return;
    snprintf(x->msg, sizeof x->msg, "cannot send request to upstream: %s", uv_strerror(r));
    xfer_defer_fail(x, SL_EUPSTREAM, x->msg);
}

static void on_connect(uv_connect_t *req, int status)
{
    h1_conn *c = req->data;
    if (c->state == C_CLOSING)
        return;
    h1_xfer *x = c->x;
    if (status < 0) {
        if (c->next_addr < c->n_addrs) {
            /* Next address of the lookup (e.g. ::1 refused, 127.0.0.1 next). */
            struct sockaddr_storage rest[MAX_ADDRS];
            int n = c->n_addrs - c->next_addr;
            memcpy(rest, c->addrs + c->next_addr, (size_t)n * sizeof rest[0]);
            conn_close(c, false);
            conn_open(x, rest, n);
            return;
        }
        snprintf(x->msg, sizeof x->msg, SL_UPSTREAM_MSG_CONNECT " %.120s:%u: %s", x->host->name,
                 x->host->port, uv_strerror(status));
        xfer_fail(x, SL_EUPSTREAM, x->msg);
        return;
    }
    c->state = C_ACTIVE;
    x->dl.connecting = false;
    xfer_arm(x);
    conn_begin(c);
}

/* Opens a TCP connection to the next address of c. */
static void conn_connect(h1_conn *c)
{
    sl_h1_pool *hp = c->hp;
    h1_xfer *x = c->x;
    const struct sockaddr *a = (const struct sockaddr *)&c->addrs[c->next_addr++];
    int rc = uv_tcp_init_ex(hp->loop, &c->tcp, a->sa_family);
    if (rc == 0) {
        c->tcp.data = c;
        c->tcp_open = true;
        c->refs++;
        sl_upstream_handle_opened(hp->owner);
        hp->sockets_opened++;
        uv_tcp_nodelay(&c->tcp, 1);
        uv_tcp_keepalive(&c->tcp, 1, 60);
        c->creq.data = c;
        c->state = C_CONNECTING;
        rc = uv_tcp_connect(&c->creq, &c->tcp, a, on_connect);
    }
    if (rc) {
        snprintf(x->msg, sizeof x->msg, SL_UPSTREAM_MSG_CONNECT " %.120s:%u: %s", x->host->name,
                 x->host->port, uv_strerror(rc));
        xfer_defer_fail(x, SL_EUPSTREAM, x->msg);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    h1_conn *c = req->data;
    c->resolving = false;
    if (c->state != C_CLOSING) {
        h1_xfer *x = c->x;
        for (struct addrinfo *ai = res; ai && c->n_addrs < MAX_ADDRS; ai = ai->ai_next)
            if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                ai->ai_addrlen <= sizeof c->addrs[0])
                memcpy(&c->addrs[c->n_addrs++], ai->ai_addr, ai->ai_addrlen);
        if (status == 0 && c->n_addrs > 0) {
            conn_connect(c);
        } else {
            snprintf(x->msg, sizeof x->msg, SL_UPSTREAM_MSG_RESOLVE " %.120s: %s", x->host->name,
                     status ? uv_strerror(status) : "no address");
            xfer_fail(x, SL_EUPSTREAM, x->msg);
        }
    }
    uv_freeaddrinfo(res);
    conn_unref(c);
}

/* A new connection for x (taking a slot the caller checked): to addrs, or
 * to the host's name through an asynchronous lookup when n_addrs is 0. */
static void conn_open(h1_xfer *x, const struct sockaddr_storage *addrs, int n_addrs)
{
    sl_h1_pool *hp = x->hp;
    h1_host *h = x->host;
    h1_conn *c = sl_calloc(1, sizeof *c);
    if (!c) {
        xfer_defer_fail(x, SL_ENOMEM, "out of memory opening an upstream connection");
        return;
    }
    c->hp = hp;
    c->host = h;
    c->x = x;
    x->conn = c;
    c->pnext = hp->conns;
    if (hp->conns)
        hp->conns->pprev = c;
    hp->conns = c;
    h->n_conns++;
    hp->n_conns++;
    x->dl.connecting = true;
    x->dl.connect_start_ms = uv_now(hp->loop);
    xfer_arm(x);
    if (n_addrs > 0) {
        memcpy(c->addrs, addrs, (size_t)n_addrs * sizeof addrs[0]);
        c->n_addrs = n_addrs;
        conn_connect(c);
        return;
    }
    c->state = C_RESOLVING;
    c->gai.data = c;
    char port[8];
    snprintf(port, sizeof port, "%u", h->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP};
    int rc = uv_getaddrinfo(hp->loop, &c->gai, on_resolved, h->name, port, &hints);
    if (rc) {
        snprintf(x->msg, sizeof x->msg, SL_UPSTREAM_MSG_RESOLVE " %.120s: %s", h->name,
                 uv_strerror(rc));
        xfer_defer_fail(x, SL_EUPSTREAM, x->msg);
        return;
    }
    c->resolving = true;
    c->refs++;
    sl_upstream_handle_opened(hp->owner);
}

/* ---- slots ---- */

static bool can_open(const sl_h1_pool *hp, const h1_host *h)
{
    return (hp->max_host <= 0 || h->n_conns < hp->max_host) &&
           (hp->max_total <= 0 || hp->n_conns < hp->max_total);
}

/* Gives x a connection: an idle one of its host, a new one, or a new one in
 * place of another host's idle one when only the total limit is in the way.
 * Returns false when x must wait. */
static bool xfer_acquire(h1_xfer *x)
{
    sl_h1_pool *hp = x->hp;
    h1_host *h = x->host;
    if (h->idle) {
        h1_conn *c = h->idle;
        idle_unlink(c);
        uv_ref((uv_handle_t *)&c->tcp);
        c->state = C_ACTIVE;
        c->x = x;
        x->conn = c;
        conn_begin(c);
        return true;
    }
    if (!can_open(hp, h) && (hp->max_host <= 0 || h->n_conns < hp->max_host)) {
        for (h1_host *o = hp->hosts; o; o = o->next) {
            if (o->idle) {
                conn_close(o->idle, false);
                break;
            }
        }
    }
    if (!can_open(hp, h))
        return false;
    conn_open(x, h->numeric ? &h->addr : NULL, h->numeric ? 1 : 0);
    return true;
}

/* Starts waiting transfers, first come first served, while slots allow. A
 * waiter that cannot go does not stop one for another host that can. */
static void pool_dispatch(sl_h1_pool *hp)
{
    if (hp->destroying)
        return;
    if (hp->dispatching) {
        hp->dispatch_again = true;
        return;
    }
    hp->dispatching = true;
    do {
        hp->dispatch_again = false;
        /* acquire fires no callback and nested dispatches only set
         * dispatch_again, so the list changes only here. */
        h1_xfer *next;
        for (h1_xfer *x = hp->wait_head; x; x = next) {
            next = x->wnext;
            if (xfer_acquire(x))
                wait_unlink(hp, x);
        }
    } while (hp->dispatch_again);
    hp->dispatching = false;
}

/* ---- transfers ---- */

static void on_xfer_timer_closed(uv_handle_t *h)
{
    h1_xfer *x = h->data;
    sl_upstream_pool *owner = x->hp->owner;
    sl_free(x);
    sl_upstream_handle_closed(owner);
}

/* Frees x's buffers; its memory goes when its timer has closed. */
static void xfer_close(h1_xfer *x)
{
    sl_free(x->req);
    x->req = NULL;
    sl_h1p_free(&x->parser);
    uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
}

/* Up to this many released transfers are kept, with their timer and
 * buffers, so that a request costs no allocation here. */
#define MAX_SPARE_XFERS 64

/* Zeroes a spare transfer for reuse, keeping its request buffer and what
 * follows the timer. */
static void xfer_clear(h1_xfer *x)
{
    char *req = x->req;
    size_t req_cap = x->req_cap;
    memset(x, 0, offsetof(h1_xfer, timer));
    x->req = req;
    x->req_cap = req_cap;
}

/* Frees everything of x but its memory, which goes with its timer, or keeps
 * it as a spare. x has no connection any more. */
static void xfer_release(h1_xfer *x)
{
    sl_h1_pool *hp = x->hp;
    wait_unlink(hp, x);
    kick_unlink(hp, x);
    if (x->prev)
        x->prev->next = x->next;
    else
        hp->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->req)
        memset(x->req, 0, x->req_len); /* it may hold the api key */
    sl_free(x->held);
    x->held = NULL;
    uv_timer_stop(&x->timer);
    if (!hp->destroying && hp->n_spare < MAX_SPARE_XFERS) {
        x->next = hp->spare;
        hp->spare = x;
        hp->n_spare++;
        return;
    }
    xfer_close(x);
}

static void xfer_finish(h1_xfer *x, int err, const char *msg)
{
    x->finishing = true;
    uv_timer_stop(&x->timer);
    wait_unlink(x->hp, x);
    kick_unlink(x->hp, x);
    if (x->cb.on_done)
        x->cb.on_done(x->cb.ud, err, msg);
    xfer_release(x);
}

static void xfer_arm_cb(uv_timer_t *t);

static void xfer_arm(h1_xfer *x)
{
    uint64_t due = sl_up_deadline_due(&x->dl);
    if (due == UINT64_MAX) {
        uv_timer_stop(&x->timer);
        return;
    }
    uint64_t now = uv_now(x->hp->loop);
    /* A timer already set to fire no later stays: the early fire re-arms. */
    if (uv_is_active((uv_handle_t *)&x->timer) && now + uv_timer_get_due_in(&x->timer) <= due)
        return;
    uv_timer_start(&x->timer, xfer_arm_cb, due > now ? due - now : 0, 0);
}

/* A fire may come before the deadline (xfer_arm leaves an earlier timer set
 * when deadlines move later): then it just re-arms. */
static void xfer_arm_cb(uv_timer_t *t)
{
    h1_xfer *x = t->data;
    if (x->cancelled || x->finishing)
        return;
    if (!sl_up_deadline_passed(&x->dl, uv_now(x->hp->loop), x->msg, sizeof x->msg)) {
        xfer_arm(x);
        return;
    }
    xfer_fail(x, SL_ETIMEDOUT, x->msg);
}

/* Keeps buf[0..n) (the unparsed rest of a read, or of the held bytes) until
 * resume, and stops reading meanwhile. */
static int xfer_hold(h1_xfer *x, const char *buf, size_t n, bool from_held)
{
    if (from_held) {
        x->held_off = (size_t)(buf - x->held);
    } else {
        char *h = sl_malloc(n);
        if (!h)
            return SL_ENOMEM;
        memcpy(h, buf, n);
        sl_free(x->held);
        x->held = h;
        x->held_off = 0;
        x->held_len = n;
    }
    x->blocked = true;
    if (x->conn)
        conn_read_stop(x->conn);
    return 0;
}

/* Hands n body bytes at p to the caller; false when x ended (cancelled or
 * finishing) during the call. */
static bool xfer_deliver(h1_xfer *x, const char *p, size_t n)
{
    if (x->cb.on_body && x->cb.on_body(x->cb.ud, p, n) == SL_EAGAIN && !x->cancelled && !x->finishing) {
        x->dl.paused = true;
        xfer_arm(x);
    }
    return !x->cancelled && !x->finishing;
}

/* Parses and delivers buf[0..n) of x's response. from_held: buf is x->held
 * (from the kick timer after a resume).
 *
 * The body pieces of one read (one per chunk of a chunked response) are moved
 * together in buf, over the chunk framing already parsed, and handed over in
 * one on_body call when the read is used up, so that a caller relaying a
 * stream writes once per read, not once per chunk. */
static void xfer_feed(h1_xfer *x, char *buf, size_t n, bool from_held)
{
    sl_h1_pool *hp = x->hp;
    size_t pos = 0;
    char *acc = NULL; /* this read's body bytes so far: acc[0..acc_len) */
    size_t acc_len = 0;
    for (;;) {
        sl_h1p_event ev;
        size_t used = 0;
        int rc = sl_h1p_step(&x->parser, buf + pos, n - pos, !x->dl.paused, &used, &ev);
        pos += used;
        if (rc) {
            if (acc_len && !xfer_deliver(x, acc, acc_len))
                return;
            xfer_fail(x, rc == SL_ENOMEM ? SL_ENOMEM : SL_EUPSTREAM,
                      rc == SL_ENOMEM ? "out of memory reading upstream response" : x->parser.err);
            return;
        }
        switch (ev.kind) {
        case SL_H1P_NEED_MORE:
            if (acc_len && !xfer_deliver(x, acc, acc_len))
                return;
            if (from_held) {
                sl_free(x->held);
                x->held = NULL;
                x->held_off = x->held_len = 0;
            }
            return;
        case SL_H1P_HEADERS: {
            double retry = ev.retry_after ? sl_upstream_parse_retry_after(ev.retry_after) : -1;
            if (x->cb.on_headers)
                x->cb.on_headers(x->cb.ud, ev.status, ev.content_type, retry);
            if (x->cancelled || x->finishing)
                return;
            break;
        }
        case SL_H1P_BODY:
            if (!x->stream && ev.len > hp->max_response - x->received) {
                snprintf(x->msg, sizeof x->msg, "upstream response body exceeds %zu bytes",
                         hp->max_response);
                xfer_fail(x, SL_ETOOBIG, x->msg);
                return;
            }
            x->received += ev.len;
            x->dl.activity_ms = uv_now(hp->loop);
            if (!x->dl.body_started) {
                x->dl.body_started = true;
                xfer_arm(x); /* from the first-byte deadline to the idle one */
            } /* else the idle deadline moved later: the timer re-arms when it fires */
            /* ev.data lies in buf[pos - used, pos), after acc's end */
            if (!acc)
                acc = buf + (ev.data - buf);
            else if (ev.data != acc + acc_len)
                memmove(acc + acc_len, ev.data, ev.len);
            acc_len += ev.len;
            break;
        case SL_H1P_BLOCKED:
            /* only while paused, which changes only in xfer_deliver: acc is empty */
            if (xfer_hold(x, buf + pos, n - pos, from_held))
                xfer_fail(x, SL_ENOMEM, "out of memory holding upstream bytes");
            return;
        case SL_H1P_DONE: {
            if (acc_len && !xfer_deliver(x, acc, acc_len))
                return;
            /* Reusable only when nothing followed the response in this read
             * (nor in the held bytes): those bytes belong to no request. */
            h1_conn *c = x->conn;
            bool reusable = x->parser.keep_alive && pos == n;
            if (from_held) {
                sl_free(x->held);
                x->held = NULL;
                x->held_off = x->held_len = 0;
            }
            if (c)
                conn_release(c, reusable);
            if (x->dl.paused) {
                /* paused by the last delivery: the end, too, waits for resume */
                x->done_held = true;
                x->blocked = true;
                return;
            }
            xfer_finish(x, 0, "ok");
            return;
        }
        }
    }
}

static void on_kick(uv_timer_t *t)
{
    sl_h1_pool *hp = t->data;
    while (hp->kick_head && !hp->destroying) {
        h1_xfer *x = hp->kick_head;
        kick_unlink(hp, x);
        if (x->cancelled || x->finishing)
            continue;
        if (x->pending_err) {
            xfer_fail(x, x->pending_err, x->msg);
            continue;
        }
        if (x->dl.paused || !x->blocked)
            continue;
        x->blocked = false;
        if (x->done_held) {
            xfer_finish(x, 0, "ok");
            continue;
        }
        if (x->held && x->held_off < x->held_len)
            xfer_feed(x, x->held + x->held_off, x->held_len - x->held_off, true);
        else if (x->held) {
            sl_free(x->held);
            x->held = NULL;
            x->held_off = x->held_len = 0;
        }
        if (x->cancelled || x->finishing || x->blocked)
            continue;
        if (x->conn)
            conn_read_start(x->conn);
    }
}

/* ---- request ---- */

typedef struct url_parts {
    const char *host; /* inside the URL, without brackets */
    size_t host_len;
    bool bracketed; /* [IPv6 literal] */
    const char *authority; /* host as written (brackets kept), for Host */
    size_t authority_len;
    uint16_t port;
    const char *path; /* from the first '/' or '?', up to '#' */
    size_t path_len;
} url_parts;

/* Splits an http:// URL; false for anything unusual (the caller then leaves
 * the URL to libcurl, which knows more syntax). Refuses every byte <= 32 or
 * >= 127, CR and LF included: the target cache relies on it. */
static bool parse_url(const char *url, url_parts *u)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    for (const char *s = url; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127)
            return false;
    const char *a = url + 7;
    const char *ae = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(ae - a)))
        return false;
    const char *pe; /* end of host as written */
    if (*a == '[') {
        const char *rb = memchr(a, ']', (size_t)(ae - a));
        if (!rb)
            return false;
        u->host = a + 1;
        u->host_len = (size_t)(rb - a - 1);
        u->bracketed = true;
        pe = rb + 1;
    } else {
        pe = a;
        while (pe < ae && *pe != ':')
            pe++;
        u->host = a;
        u->host_len = (size_t)(pe - a);
        for (const char *s = a; s < pe; s++)
            if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                  (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_'))
                return false;
    }
    if (u->host_len == 0 || u->host_len > MAX_HOST_NAME)
        return false;
    u->authority = a;
    u->authority_len = (size_t)(pe - a);
    u->port = 80;
    if (pe < ae) {
        if (*pe != ':' || pe + 1 == ae || ae - pe > 6)
            return false;
        unsigned port = 0;
        for (const char *s = pe + 1; s < ae; s++) {
            if (*s < '0' || *s > '9')
                return false;
            port = port * 10 + (unsigned)(*s - '0');
        }
        if (port == 0 || port > 65535)
            return false;
        u->port = (uint16_t)port;
    }
    u->path = ae;
    u->path_len = strcspn(ae, "#");
    return true;
}

static h1_host *host_get(sl_h1_pool *hp, const url_parts *u, bool *bad)
{
    *bad = false;
    for (h1_host *h = hp->hosts; h; h = h->next)
        if (h->port == u->port && strlen(h->name) == u->host_len &&
            memcmp(h->name, u->host, u->host_len) == 0)
            return h;
    h1_host *h = sl_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    memcpy(h->name, u->host, u->host_len);
    h->port = u->port;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&h->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&h->addr;
    if (!u->bracketed && uv_ip4_addr(h->name, u->port, a4) == 0 &&
        strspn(h->name, "0123456789.") == u->host_len) {
        h->numeric = true;
    } else if (u->bracketed) {
        if (uv_ip6_addr(h->name, u->port, a6) != 0) {
            sl_free(h);
            *bad = true;
            return NULL;
        }
        h->numeric = true;
    }
    h->next = hp->hosts;
    hp->hosts = h;
    return h;
}

/* ---- target cache (see url_entry) ---- */

static size_t url_entry_bytes(const url_entry *e)
{
    return e->url_len + 1 + e->target_len + e->host_len;
}

/* Empties slot e; its text is wiped first (see url_entry). */
static void url_entry_clear(url_entry *e)
{
    if (e->text) {
        explicit_bzero(e->text, url_entry_bytes(e));
        sl_free(e->text);
    }
    memset(e, 0, sizeof *e);
}

/* The entry whose URL is url[0..len) byte for byte, or NULL. Empty slots have
 * url_len 0 and never match: a URL that reaches here is at least "http://". */
static url_entry *url_find(sl_h1_pool *hp, const char *url, size_t len)
{
    for (int i = 0; i < URL_CACHE_SLOTS; i++) {
        url_entry *e = &hp->urls[i];
        if (e->url_len == len && memcmp(e->text, url, len) == 0)
            return e;
    }
    return NULL;
}

/* Caches url (parsed into u) in the next slot round-robin, evicting what was
 * there. Returns 0 with *out set, 1 when the host is one the built-in client
 * leaves to libcurl (a bad IPv6 literal), or SL_ENOMEM. */
static int url_add(sl_h1_pool *hp, const char *url, size_t url_len, const url_parts *u,
                   url_entry **out)
{
    bool bad = false;
    h1_host *h = host_get(hp, u, &bad);
    if (!h)
        return bad ? 1 : SL_ENOMEM;
    static const char version[] = " HTTP/1.1\r\n", host_hdr[] = "Host: ";
    bool slash = u->path_len == 0 || u->path[0] != '/'; /* "?q" and "" get a leading '/' */
    char port[1 + 20]; /* ":" and sl_u64_to_dec's room */
    size_t port_len = 0;
    if (u->port != 80) {
        port[0] = ':';
        port_len = 1 + sl_u64_to_dec(u->port, port + 1);
    }
    size_t target_len = 1 + slash + u->path_len + sizeof version - 1;
    size_t host_len = sizeof host_hdr - 1 + u->authority_len + port_len + 2;
    char *t = sl_malloc(url_len + 1 + target_len + host_len);
    if (!t)
        return SL_ENOMEM;
    url_entry *e = &hp->urls[hp->url_next];
    hp->url_next = (hp->url_next + 1) % URL_CACHE_SLOTS;
    url_entry_clear(e);
    e->text = t;
    e->url_len = url_len;
    e->target_len = target_len;
    e->host_len = host_len;
    e->host = h;
    memcpy(t, url, url_len + 1);
    t += url_len + 1;
    *t++ = ' ';
    if (slash)
        *t++ = '/';
    memcpy(t, u->path, u->path_len);
    t += u->path_len;
    memcpy(t, version, sizeof version - 1);
    t += sizeof version - 1;
    memcpy(t, host_hdr, sizeof host_hdr - 1);
    t += sizeof host_hdr - 1;
    memcpy(t, u->authority, u->authority_len);
    t += u->authority_len;
    memcpy(t, port, port_len);
    t += port_len;
    memcpy(t, "\r\n", 2);
    *out = e;
    return 0;
}

/* ---- request text ---- */

/* An extra header that changes what we add ourselves. */
enum { HDR_OTHER, HDR_HOST, HDR_ACCEPT, HDR_CONTENT_TYPE, HDR_FRAMING };

/* Which of the headers we care about the token name[0..len) is; the length
 * picks the one candidate, so most names cost no comparison at all. */
static int header_kind(const char *name, size_t len)
{
    switch (len) {
    case 4: return sl_http_token_ieq(name, "host", 4) ? HDR_HOST : HDR_OTHER;
    case 6: return sl_http_token_ieq(name, "accept", 6) ? HDR_ACCEPT : HDR_OTHER;
    case 12: return sl_http_token_ieq(name, "content-type", 12) ? HDR_CONTENT_TYPE : HDR_OTHER;
    case 14: return sl_http_token_ieq(name, "content-length", 14) ? HDR_FRAMING : HDR_OTHER;
    case 17: return sl_http_token_ieq(name, "transfer-encoding", 17) ? HDR_FRAMING : HDR_OTHER;
    default: return HDR_OTHER;
    }
}

/* One extra header, checked and measured. */
typedef struct hdr_meta {
    size_t name_len, value_len;
    int kind;
} hdr_meta;

/* Checks h as validate_req does (token name, no CR/LF in the value) and as
 * the libcurl path limits a line; returns 0 or SL_EINVAL. */
static int header_measure(const sl_upstream_header *h, hdr_meta *m)
{
    if (!h->name || !h->value)
        return SL_EINVAL;
    m->name_len = sl_up_token_len(h->name);
    m->value_len = sl_up_field_len(h->value);
    if (!m->name_len || m->value_len == SIZE_MAX ||
        m->name_len + 2 + m->value_len >= SL_UPSTREAM_HEADER_LINE_MAX)
        return SL_EINVAL;
    m->kind = header_kind(h->name, m->name_len);
    return 0;
}

/* Extra headers whose measures are kept between checking and writing; any
 * beyond are measured again when written (the gateway sends one). */
#define MEASURED_HEADERS 8

/* What checking a request found, for writing it. */
typedef struct req_plan {
    size_t method_len, key_len;
    bool body, have_ct, have_accept, have_host;
    size_t need; /* upper bound of the request's bytes */
    hdr_meta hdr[MEASURED_HEADERS];
} req_plan;

static const char auth_hdr[] = "Authorization: Bearer ";

/* Checks everything of r that reaches the wire, the URL aside (parse_url's
 * or the cache's job): the refusals of validate_req plus the line limits of
 * the libcurl path, all SL_EINVAL. Allocates nothing, so a refused request
 * costs nothing and gets SL_EINVAL even when memory is short. */
static int plan_request(const sl_upstream_req *r, req_plan *pl)
{
    pl->method_len = sl_up_method_len(r->method);
    if (!pl->method_len)
        return SL_EINVAL;
    pl->key_len = 0;
    if (r->api_key) {
        pl->key_len = sl_up_field_len(r->api_key);
        if (pl->key_len == SIZE_MAX || sizeof auth_hdr - 1 + pl->key_len >= SL_UPSTREAM_HEADER_LINE_MAX)
            return SL_EINVAL;
    }
    const char *m = r->method;
    bool get = pl->method_len == 3 && memcmp(m, "GET", 3) == 0;
    bool post = pl->method_len == 4 && memcmp(m, "POST", 4) == 0;
    pl->body = !get && (post || r->body_len);
    pl->have_ct = pl->have_accept = pl->have_host = false;
    size_t need = pl->method_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        hdr_meta hm;
        int rc = header_measure(&r->headers[i], &hm);
        if (rc)
            return rc;
        pl->have_ct |= hm.kind == HDR_CONTENT_TYPE;
        pl->have_accept |= hm.kind == HDR_ACCEPT;
        pl->have_host |= hm.kind == HDR_HOST;
        need += hm.name_len + hm.value_len + 4;
        if (i < MEASURED_HEADERS)
            pl->hdr[i] = hm;
    }
    if (r->api_key)
        need += sizeof auth_hdr - 1 + pl->key_len + 2;
    /* content-type, accept, length (20 digits at most) and the blank line */
    need += sizeof "Content-Type: application/json\r\n" + sizeof "Accept: text/event-stream\r\n" +
            sizeof "Content-Length: \r\n" + 20 + 2 + r->body_len;
    pl->need = need;
    return 0;
}

/* Writes the whole request into x->req (grown as needed): method, the cached
 * target and Host line, extra headers, the api key, our own headers, body.
 * Returns 0 or SL_ENOMEM. x->req is wiped at release (it may hold the key). */
static int write_request(h1_xfer *x, const sl_upstream_req *r, const url_entry *e, const req_plan *pl)
{
    size_t need = pl->need + e->target_len + e->host_len;
    if (need > x->req_cap) {
        /* The old buffer holds nothing: it was wiped when its transfer was released. */
        char *nb = sl_realloc(x->req, need);
        if (!nb)
            return SL_ENOMEM;
        x->req = nb;
        x->req_cap = need;
    }
    char *b = x->req;
    size_t n = 0;
#define PUT(p, len)                                                                            \
    do {                                                                                       \
        memcpy(b + n, (p), (len));                                                             \
        n += (len);                                                                            \
    } while (0)
#define PUT_LIT(s) PUT((s), sizeof(s) - 1)
    PUT(r->method, pl->method_len);
    /* target and Host line lie one after the other in the entry */
    PUT(e->text + e->url_len + 1, e->target_len + (pl->have_host ? 0 : e->host_len));
    for (size_t i = 0; i < r->n_headers; i++) {
        const sl_upstream_header *h = &r->headers[i];
        hdr_meta hm;
        if (i < MEASURED_HEADERS)
            hm = pl->hdr[i];
        else if (header_measure(h, &hm) != 0) /* passed plan_request: cannot fail */
            assert(!"header changed between check and write");
        if (hm.kind == HDR_FRAMING)
            continue; /* we frame the body ourselves */
        PUT(h->name, hm.name_len);
        PUT_LIT(": ");
        PUT(h->value, hm.value_len);
        PUT_LIT("\r\n");
    }
    if (r->api_key) {
        PUT_LIT(auth_hdr);
        PUT(r->api_key, pl->key_len);
        PUT_LIT("\r\n");
    }
    if (pl->body && !pl->have_ct)
        PUT_LIT("Content-Type: application/json\r\n");
    if (!pl->have_accept) {
        if (r->stream)
            PUT_LIT("Accept: text/event-stream\r\n");
        else
            PUT_LIT("Accept: application/json\r\n");
    }
    if (pl->body) {
        PUT_LIT("Content-Length: ");
        n += sl_u64_to_dec(r->body_len, b + n);
        PUT_LIT("\r\n");
    }
    PUT_LIT("\r\n");
    if (pl->body && r->body_len)
        PUT(r->body, r->body_len);
#undef PUT
#undef PUT_LIT
    assert(n <= need);
    x->req_len = n;
    return 0;
}

int sl_h1_start(sl_h1_pool *hp, const sl_upstream_req *req, const sl_upstream_cb *cb,
                sl_upstream_xfer **out)
{
    /* The URL: one cached earlier (checked then), or parsed and checked now. */
    size_t url_len = strlen(req->url);
    url_entry *e = url_find(hp, req->url, url_len);
    url_parts u = {0};
    if (!e && !parse_url(req->url, &u))
        return 1;
    req_plan pl;
    int rc = plan_request(req, &pl);
    if (rc)
        return rc;
    if (!e) {
        rc = url_add(hp, req->url, url_len, &u, &e);
        if (rc)
            return rc;
    }
    h1_xfer *x = hp->spare;
    if (x) {
        hp->spare = x->next;
        hp->n_spare--;
        xfer_clear(x);
    } else {
        x = sl_calloc(1, sizeof *x);
        if (!x)
            return SL_ENOMEM;
        x->hp = hp;
        uv_timer_init(hp->loop, &x->timer);
        x->timer.data = x;
        sl_upstream_handle_opened(hp->owner);
    }
    rc = write_request(x, req, e, &pl);
    if (rc) {
        x->hp = hp;
        x->next = hp->spare; /* back to the spares, timer and all */
        hp->spare = x;
        hp->n_spare++;
        return rc;
    }
    x->impl = SL_UPSTREAM_IMPL_H1;
    x->hp = hp;
    x->host = e->host;
    x->cb = *cb;
    x->stream = req->stream;
    x->head = pl.method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    x->dl.connect_ms = req->connect_timeout_ms ? req->connect_timeout_ms : DEFAULT_CONNECT_MS;
    x->dl.first_byte_ms = req->first_byte_timeout_ms;
    x->dl.idle_ms = req->idle_timeout_ms;
    x->dl.total_ms = req->total_timeout_ms;
    /* The parser is reset by conn_begin, before its first use. */
    x->next = hp->xfers;
    if (hp->xfers)
        hp->xfers->prev = x;
    hp->xfers = x;
    uv_update_time(hp->loop);
    x->dl.start_ms = x->dl.activity_ms = uv_now(hp->loop);
    xfer_arm(x);
    /* First come first served: x goes behind every waiter, and goes now if
     * none of them holds it up. */
    if (!hp->wait_head) {
        if (!xfer_acquire(x))
            wait_push(hp, x);
    } else {
        wait_push(hp, x);
        pool_dispatch(hp);
    }
    if (out)
        *out = (sl_upstream_xfer *)(void *)x;
    return 0;
}

void sl_h1_pause(sl_upstream_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)(void *)ux;
    if (x->cancelled || x->finishing || x->dl.paused)
        return;
    x->dl.paused = true; /* the next body bytes are held and reading stops */
    xfer_arm(x);
}

void sl_h1_resume(sl_upstream_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)(void *)ux;
    if (x->cancelled || x->finishing || !x->dl.paused)
        return;
    x->dl.paused = false;
    x->dl.activity_ms = uv_now(x->hp->loop); /* the idle gap restarts: the pause was ours */
    xfer_arm(x);
    if (x->blocked)
        kick_push(x->hp, x); /* held bytes go out from the loop, not from here */
}

void sl_h1_cancel(sl_upstream_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)(void *)ux;
    if (x->cancelled || x->finishing)
        return;
    x->cancelled = true;
    memset(&x->cb, 0, sizeof x->cb);
    if (x->conn)
        conn_close(x->conn, true); /* mid-response: never reused */
    xfer_release(x);
}

/* ---- pool ---- */

static void on_kick_closed(uv_handle_t *h)
{
    sl_h1_pool *hp = h->data;
    sl_upstream_handle_closed(hp->owner);
}

int sl_h1_pool_create(sl_upstream_pool *owner, uv_loop_t *loop, const sl_upstream_limits *lim,
                      size_t max_response, sl_h1_pool **out)
{
    sl_h1_pool *hp = sl_calloc(1, sizeof *hp);
    if (!hp)
        return SL_ENOMEM;
    hp->owner = owner;
    hp->loop = loop;
    hp->max_response = max_response;
    hp->max_host = lim ? lim->max_host_connections : 0;
    hp->max_total = lim ? lim->max_total_connections : 0;
    hp->max_idle = lim && lim->max_idle_connections > 0 ? lim->max_idle_connections
                                                         : SL_UPSTREAM_DEFAULT_MAX_IDLE;
    uv_timer_init(loop, &hp->kick);
    hp->kick.data = hp;
    sl_upstream_handle_opened(owner);
    *out = hp;
    return 0;
}

void sl_h1_pool_destroy(sl_h1_pool *hp)
{
    while (hp->xfers) {
        h1_xfer *x = hp->xfers;
        x->cancelled = true;
        memset(&x->cb, 0, sizeof x->cb);
        if (x->conn)
            conn_close(x->conn, false);
        xfer_release(x);
    }
    hp->destroying = true;
    while (hp->spare) {
        h1_xfer *x = hp->spare;
        hp->spare = x->next;
        xfer_close(x);
    }
    hp->n_spare = 0;
    while (hp->conns)
        conn_close(hp->conns, false);
    uv_timer_stop(&hp->kick);
    uv_close((uv_handle_t *)&hp->kick, on_kick_closed);
}

void sl_h1_pool_free(sl_h1_pool *hp)
{
    if (!hp)
        return;
    for (int i = 0; i < URL_CACHE_SLOTS; i++)
        url_entry_clear(&hp->urls[i]);
    while (hp->hosts) {
        h1_host *h = hp->hosts;
        hp->hosts = h->next;
        sl_free(h);
    }
    sl_free(hp);
}

void sl_h1_pool_stats(const sl_h1_pool *hp, uint64_t *opened, uint64_t *closed)
{
    *opened = hp->sockets_opened;
    *closed = hp->sockets_closed;
}
