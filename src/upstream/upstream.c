/* libcurl multi driven by a libuv loop.
 *
 * Wiring: CURLMOPT_SOCKETFUNCTION opens one uv_poll per socket libcurl wants
 * watched; CURLMOPT_TIMERFUNCTION arms the pool's curl_timer. Both end in
 * curl_multi_socket_action(), always through pool_action(), which counts the
 * nesting depth in `in_curl` and, once libcurl has returned, runs pool_settle().
 *
 * Re-entrancy: on_headers/on_body run inside libcurl's header/write callbacks,
 * where libcurl forbids curl_multi_remove_handle, curl_multi_add_handle and
 * unpausing. Those three operations therefore go through the pool's work
 * queue (xfer->queued) when in_curl > 0, and pool_settle() applies them after
 * draining curl_multi_info_read(). Resumes are always queued and applied from
 * the loop (kick timer), so no callback ever fires inside sl_upstream_resume.
 *
 * Connection ownership: `conns[fd]` records every socket libcurl opened through
 * our open-socket callback and which transfer used it last (set at open and on
 * every socket-callback for that transfer). libcurl reports the close through
 * our close-socket callback. When an incomplete transfer is aborted we
 * shutdown() its socket before removing the handle, so even if libcurl kept the
 * connection it can never carry another request: its liveness check sees EOF
 * and discards it. libcurl 7.88 also closes a connection removed mid-response
 * ("premature"), so this is belt and braces, and the tests check the result.
 *
 * Lifetimes: each transfer owns a uv_timer, so its memory is freed in that
 * timer's close callback; the pool counts open handles and frees itself when
 * the last one closes after sl_upstream_pool_destroy. */
#include "upstream/upstream_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define XFER_MSG_MAX SL_UPSTREAM_XFER_MSG_MAX
#define HEADER_LINE_MAX SL_UPSTREAM_HEADER_LINE_MAX
/* Easy handles kept for reuse per pool: a reset handle keeps its buffers, so a
 * transfer does not pay for libcurl's per-handle set-up and tear-down. */
#define SPARE_EASY_MAX 256

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    sl_upstream_pool *pool;
    struct sock_ctx *prev, *next; /* pool->socks: watchers not yet closing */
} sock_ctx;

typedef struct conn_slot {
    bool open;               /* libcurl opened this fd and has not closed it */
    sl_upstream_xfer *owner; /* transfer that used the connection last, or NULL */
} conn_slot;

struct sl_upstream_xfer {
    int impl; /* SL_UPSTREAM_IMPL_CURL; must stay first (see upstream_int.h) */
    sl_upstream_pool *pool;
    CURL *easy;
    struct curl_slist *hdrs;
    sl_upstream_cb cb;
    uv_timer_t timer;                 /* our first-byte / idle / total deadlines */
    sl_upstream_xfer *prev, *next;    /* pool->xfers: every transfer not yet released */
    sl_upstream_xfer *wprev, *wnext;  /* pool work queue while queued */
    curl_socket_t fd;                 /* socket this transfer used last, or CURL_SOCKET_BAD */
    bool queued;                      /* in the work queue */
    bool in_multi;                    /* added to the multi handle */
    bool add_pending;                 /* started from inside libcurl; add when it returns */
    bool resume_pending;
    bool cancelled;                   /* the caller gave the handle up; no callbacks */
    bool finishing;                   /* on_done is being delivered */
    bool headers_done;
    bool curl_paused;                 /* libcurl holds data because we returned PAUSE */
    bool stream;
    int fail_err;                     /* our own reason to fail (SL_ETOOBIG) or 0 */
    size_t received;                  /* body bytes delivered, for the size cap */
    sl_up_deadlines dl;               /* first-byte, idle and total deadlines */
    char msg[XFER_MSG_MAX];
    char errbuf[CURL_ERROR_SIZE];
};

struct sl_upstream_pool {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer; /* libcurl's own timeout (CURLMOPT_TIMERFUNCTION) */
    uv_timer_t kick;       /* runs pool_settle from the loop (queued resumes) */
    size_t max_response;
    int in_curl;           /* depth of calls into libcurl */
    bool settling;
    bool destroying;
    int open_handles;      /* libuv handles whose close callback has not run */
    sl_upstream_xfer *xfers;
    sl_upstream_xfer *work_head, *work_tail;
    sock_ctx *socks;
    CURL *spare[SPARE_EASY_MAX]; /* reset easy handles for the next transfers */
    int n_spare;
    conn_slot *conns;      /* indexed by fd */
    size_t n_conns;
    uint64_t sockets_opened, sockets_closed;
    sl_h1_pool *h1;        /* built-in client for http://, NULL when curl_for_http */
};

/* ---- global init ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : SL_EUPSTREAM;
}

int sl_upstream_global_init(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_init_rc;
}

/* ---- pool handle bookkeeping ---- */

static void pool_handle_closed(sl_upstream_pool *p)
{
    if (--p->open_handles == 0 && p->destroying) {
        sl_h1_pool_free(p->h1);
        sl_free(p->conns);
        sl_free(p);
    }
}

void sl_upstream_handle_opened(sl_upstream_pool *p) { p->open_handles++; }

void sl_upstream_handle_closed(sl_upstream_pool *p) { pool_handle_closed(p); }

static void on_pool_timer_closed(uv_handle_t *h) { pool_handle_closed(h->data); }

static void on_sock_closed(uv_handle_t *h)
{
    sock_ctx *c = h->data;
    sl_upstream_pool *p = c->pool;
    sl_free(c);
    pool_handle_closed(p);
}

static void on_xfer_timer_closed(uv_handle_t *h)
{
    sl_upstream_xfer *x = h->data;
    sl_upstream_pool *p = x->pool;
    sl_free(x);
    pool_handle_closed(p);
}

static void sock_close(sock_ctx *c)
{
    sl_upstream_pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->socks = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, on_sock_closed);
}

/* ---- connection slots ---- */

static conn_slot *conn_get(sl_upstream_pool *p, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= p->n_conns)
        return NULL;
    return &p->conns[fd];
}

static void conn_set_owner(sl_upstream_pool *p, curl_socket_t fd, sl_upstream_xfer *x)
{
    conn_slot *s = conn_get(p, fd);
    if (s && s->open) {
        s->owner = x;
        x->fd = fd;
    }
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    sl_upstream_xfer *x = clientp;
    sl_upstream_pool *p = x->pool;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    if ((size_t)fd >= p->n_conns) {
        size_t n = p->n_conns ? p->n_conns : 64;
        while (n <= (size_t)fd)
            n *= 2;
        conn_slot *c = sl_realloc(p->conns, n * sizeof *c);
        if (!c) {
            close(fd);
            return CURL_SOCKET_BAD;
        }
        memset(c + p->n_conns, 0, (n - p->n_conns) * sizeof *c);
        p->conns = c;
        p->n_conns = n;
    }
    p->conns[fd].open = true;
    p->sockets_opened++;
    conn_set_owner(p, fd, x);
    return fd;
}

/* clientp is the pool: libcurl keeps the close callback of the transfer that
 * opened the connection, which may be long gone when the connection closes. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    sl_upstream_pool *p = clientp;
    conn_slot *s = conn_get(p, fd);
    if (s) {
        if (s->owner && s->owner->fd == fd)
            s->owner->fd = CURL_SOCKET_BAD;
        s->open = false;
        s->owner = NULL;
    }
    p->sockets_closed++;
    return close(fd);
}

/* ---- work queue ---- */

static void work_push(sl_upstream_pool *p, sl_upstream_xfer *x)
{
    if (x->queued)
        return;
    x->queued = true;
    x->wnext = NULL;
    x->wprev = p->work_tail;
    if (p->work_tail)
        p->work_tail->wnext = x;
    else
        p->work_head = x;
    p->work_tail = x;
}

static void work_unlink(sl_upstream_pool *p, sl_upstream_xfer *x)
{
    if (!x->queued)
        return;
    if (x->wprev)
        x->wprev->wnext = x->wnext;
    else
        p->work_head = x->wnext;
    if (x->wnext)
        x->wnext->wprev = x->wprev;
    else
        p->work_tail = x->wprev;
    x->queued = false;
    x->wprev = x->wnext = NULL;
}

/* ---- easy handles ---- */

/* A reset spare handle, or a new one; NULL when out of memory. */
static CURL *easy_get(sl_upstream_pool *p)
{
    if (p->n_spare > 0)
        return p->spare[--p->n_spare];
    return curl_easy_init();
}

/* Keeps e for a later transfer, its options back to libcurl's defaults (no
 * header list, callback or pointer of the last transfer survives), or frees
 * it. e must be out of the multi handle. */
static void easy_put(sl_upstream_pool *p, CURL *e)
{
    if (!e)
        return;
    if (p->destroying || p->n_spare >= SPARE_EASY_MAX) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    p->spare[p->n_spare++] = e;
}

/* ---- transfer teardown ---- */

/* Frees everything of x except its memory, which goes with its timer. x must
 * already be out of the multi handle. */
static void xfer_release(sl_upstream_xfer *x)
{
    sl_upstream_pool *p = x->pool;
    work_unlink(p, x);
    conn_slot *s = conn_get(p, x->fd);
    if (s && s->owner == x)
        s->owner = NULL;
    if (x->prev)
        x->prev->next = x->next;
    else
        p->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    easy_put(p, x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    uv_timer_stop(&x->timer);
    uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
}

/* Takes an unfinished transfer out of the multi handle. Its connection is shut
 * down first so that it can never go back into the reuse cache. */
static void xfer_abort(sl_upstream_xfer *x)
{
    sl_upstream_pool *p = x->pool;
    if (!x->in_multi)
        return;
    conn_slot *s = conn_get(p, x->fd);
    if (s && s->open && s->owner == x)
        shutdown(x->fd, SHUT_RDWR);
    p->in_curl++;
    curl_multi_remove_handle(p->multi, x->easy);
    p->in_curl--;
    x->in_multi = false;
}

/* Ends a transfer with on_done(err, msg) from outside libcurl, then frees it. */
static void xfer_finish(sl_upstream_xfer *x, int err, const char *msg)
{
    x->finishing = true;
    uv_timer_stop(&x->timer);
    if (x->cb.on_done)
        x->cb.on_done(x->cb.ud, err, msg);
    xfer_release(x);
}

static void pool_settle(sl_upstream_pool *p);

static void pool_action(sl_upstream_pool *p, curl_socket_t fd, int flags)
{
    int running = 0;
    p->in_curl++;
    curl_multi_socket_action(p->multi, fd, flags, &running);
    p->in_curl--;
    pool_settle(p);
}

/* ---- deadlines ---- */

uint64_t sl_up_deadline_due(const sl_up_deadlines *d)
{
    uint64_t due = UINT64_MAX;
    if (d->total_ms)
        due = d->start_ms + d->total_ms;
    if (d->connecting && d->connect_ms)
        due = SL_MIN(due, d->connect_start_ms + d->connect_ms);
    if (!d->paused) {
        if (!d->body_started && d->first_byte_ms)
            due = SL_MIN(due, d->activity_ms + d->first_byte_ms);
        if (d->body_started && d->idle_ms)
            due = SL_MIN(due, d->activity_ms + d->idle_ms);
    }
    return due;
}

bool sl_up_deadline_passed(const sl_up_deadlines *d, uint64_t now, char *msg, size_t cap)
{
    if (d->total_ms && now >= d->start_ms + d->total_ms)
        snprintf(msg, cap, "upstream total timeout after %u ms", d->total_ms);
    else if (d->connecting && d->connect_ms && now >= d->connect_start_ms + d->connect_ms)
        snprintf(msg, cap, "upstream connect timeout after %u ms", d->connect_ms);
    else if (!d->paused && !d->body_started && d->first_byte_ms &&
             now >= d->activity_ms + d->first_byte_ms)
        snprintf(msg, cap, "upstream first-byte timeout after %u ms", d->first_byte_ms);
    else if (!d->paused && d->body_started && d->idle_ms && now >= d->activity_ms + d->idle_ms)
        snprintf(msg, cap, "upstream idle timeout: no body bytes for %u ms", d->idle_ms);
    else
        return false;
    return true;
}

static void on_xfer_timer(uv_timer_t *t);

static void xfer_arm(sl_upstream_xfer *x)
{
    uint64_t due = sl_up_deadline_due(&x->dl);
    if (due == UINT64_MAX) {
        uv_timer_stop(&x->timer);
        return;
    }
    uint64_t now = uv_now(x->pool->loop);
    uv_timer_start(&x->timer, on_xfer_timer, due > now ? due - now : 0, 0);
}

/* Deadlines only move later between arms (body bytes, pauses), except the
 * switch from first-byte to idle, which re-arms; so a fire may be early and
 * then simply re-arms for the real deadline. */
static void on_xfer_timer(uv_timer_t *t)
{
    sl_upstream_xfer *x = t->data;
    if (x->cancelled || x->finishing)
        return;
    if (!sl_up_deadline_passed(&x->dl, uv_now(x->pool->loop), x->msg, sizeof x->msg)) {
        xfer_arm(x);
        return;
    }
    sl_upstream_pool *p = x->pool;
    xfer_abort(x);
    xfer_finish(x, SL_ETIMEDOUT, x->msg);
    pool_settle(p);
}

/* ---- libcurl per-transfer callbacks (run inside libcurl) ---- */

double sl_upstream_parse_retry_after(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    uint64_t secs;
    if (sl_str_to_u64(sl_str_make(v, n), &secs) == 0)
        return secs > 1000000000u ? 1e9 : (double)secs;
    char tmp[128];
    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, v, n);
    tmp[n] = 0;
    time_t when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1)
        return -1;
    double d = difftime(when, time(NULL));
    return d > 0 ? d : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    sl_upstream_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->cancelled)
        return 0; /* aborts the transfer; libcurl closes the connection */
    if (x->headers_done)
        return n; /* trailers */
    if (n == 0 || (ptr[0] != '\r' && ptr[0] != '\n'))
        return n;
    /* A blank line ends a header block; 1xx blocks are followed by another. */
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 100 && code < 200)
        return n;
    x->headers_done = true;
    char *ct = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    double retry = -1;
    struct curl_header *h = NULL;
    if (curl_easy_header(x->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h &&
        h->value)
        retry = sl_upstream_parse_retry_after(h->value);
    if (x->cb.on_headers)
        x->cb.on_headers(x->cb.ud, (int)code, ct, retry);
    return x->cancelled ? 0 : n;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    sl_upstream_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->cancelled || x->fail_err)
        return 0;
    if (x->dl.paused) {
        /* libcurl keeps these bytes and hands them over again after unpause. */
        x->curl_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (n == 0)
        return 0;
    sl_upstream_pool *p = x->pool;
    if (!x->stream && n > p->max_response - x->received) {
        x->fail_err = SL_ETOOBIG;
        snprintf(x->msg, sizeof x->msg, "upstream response body exceeds %zu bytes",
                 p->max_response);
        return 0;
    }
    x->received += n;
    x->dl.activity_ms = uv_now(p->loop);
    if (!x->dl.body_started) {
        x->dl.body_started = true;
        xfer_arm(x); /* from the first-byte deadline to the idle one */
    }
    if (x->cb.on_body && x->cb.on_body(x->cb.ud, ptr, n) == SL_EAGAIN && !x->cancelled)
        x->dl.paused = true;
    return x->cancelled ? 0 : n;
}

/* ---- libcurl multi callbacks ---- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *c = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    pool_action(c->pool, c->fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    sl_upstream_pool *p = userp;
    sock_ctx *c = socketp;
    if (p->destroying)
        return 0;
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(p->multi, fd, NULL);
            sock_close(c);
        }
        return 0;
    }
    sl_upstream_xfer *x = NULL;
    if (easy && curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x) == CURLE_OK && x)
        conn_set_owner(p, fd, x);
    if (!c) {
        c = sl_calloc(1, sizeof *c);
        if (!c)
            return -1;
        if (uv_poll_init_socket(p->loop, &c->poll, fd) != 0) {
            sl_free(c);
            return -1;
        }
        c->fd = fd;
        c->pool = p;
        c->poll.data = c;
        c->next = p->socks;
        if (p->socks)
            p->socks->prev = c;
        p->socks = c;
        p->open_handles++;
        curl_multi_assign(p->multi, fd, c);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (events)
        uv_poll_start(&c->poll, events, on_poll);
    else
        uv_poll_stop(&c->poll);
    return 0;
}

static void on_curl_timeout(uv_timer_t *t) { pool_action(t->data, CURL_SOCKET_TIMEOUT, 0); }

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    sl_upstream_pool *p = userp;
    if (p->destroying)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&p->curl_timer);
    else /* 0 too goes through the loop: libcurl must not be re-entered from here */
        uv_timer_start(&p->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- completion ---- */

static int map_curl_error(sl_upstream_xfer *x, CURLcode rc, char *msg, size_t cap)
{
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: /* only the connect timeout is libcurl's */
        snprintf(msg, cap, "upstream connect timeout after %u ms", x->dl.connect_ms);
        return SL_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(msg, cap, SL_UPSTREAM_MSG_RESOLVE ": %.200s", detail);
        return SL_EUPSTREAM;
    case CURLE_COULDNT_CONNECT:
        snprintf(msg, cap, SL_UPSTREAM_MSG_CONNECT ": %.200s", detail);
        return SL_EUPSTREAM;
    case CURLE_OUT_OF_MEMORY:
        snprintf(msg, cap, "out of memory in upstream transfer");
        return SL_ENOMEM;
    default:
        snprintf(msg, cap, "upstream transfer failed: %.200s", detail);
        return SL_EUPSTREAM;
    }
}

static void xfer_completed(sl_upstream_xfer *x, CURLcode rc)
{
    sl_upstream_pool *p = x->pool;
    p->in_curl++;
    curl_multi_remove_handle(p->multi, x->easy);
    p->in_curl--;
    x->in_multi = false;
    if (x->cancelled) {
        /* Cancelled after libcurl finished it (cleanly, or aborted by our
         * callbacks returning 0, in which case libcurl closed the connection). */
        xfer_release(x);
        return;
    }
    int err = 0;
    const char *msg = "ok";
    if (x->fail_err) {
        err = x->fail_err;
        msg = x->msg;
    } else if (rc != CURLE_OK) {
        err = map_curl_error(x, rc, x->msg, sizeof x->msg);
        msg = x->msg;
    }
    xfer_finish(x, err, msg);
}

static void xfer_do_add(sl_upstream_xfer *x)
{
    sl_upstream_pool *p = x->pool;
    x->add_pending = false;
    p->in_curl++;
    CURLMcode mc = curl_multi_add_handle(p->multi, x->easy);
    p->in_curl--;
    if (mc != CURLM_OK) {
        snprintf(x->msg, sizeof x->msg, "cannot add upstream transfer: %s", curl_multi_strerror(mc));
        xfer_finish(x, SL_EUPSTREAM, x->msg);
        return;
    }
    x->in_multi = true;
}

static void xfer_do_resume(sl_upstream_xfer *x)
{
    sl_upstream_pool *p = x->pool;
    x->resume_pending = false;
    if (x->dl.paused || !x->curl_paused || !x->in_multi)
        return;
    x->curl_paused = false;
    p->in_curl++;
    CURLcode rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    p->in_curl--;
    /* Held bytes may have been delivered just now; a failure there (size cap,
     * cancel from on_body) left the transfer mid-response: end it here. */
    if (rc != CURLE_OK && !x->cancelled && !x->finishing) {
        int err = x->fail_err;
        if (!err) {
            err = SL_EUPSTREAM;
            snprintf(x->msg, sizeof x->msg, "upstream resume failed: %s", curl_easy_strerror(rc));
        }
        xfer_abort(x);
        xfer_finish(x, err, x->msg);
    }
}

/* Applies what libcurl could not take from inside its callbacks and delivers
 * completions. Runs only at depth 0 and never nests; loops until quiet because
 * each step may make more work (an on_done starting a transfer, a resume that
 * completes one). */
static void pool_settle(sl_upstream_pool *p)
{
    if (p->in_curl > 0 || p->settling || p->destroying)
        return;
    p->settling = true;
    for (;;) {
        int left = 0;
        CURLMsg *m = curl_multi_info_read(p->multi, &left);
        if (m) {
            if (m->msg == CURLMSG_DONE) {
                sl_upstream_xfer *x = NULL;
                CURLcode rc = m->data.result; /* m dies with remove_handle */
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                if (x)
                    xfer_completed(x, rc);
            }
            continue;
        }
        sl_upstream_xfer *x = p->work_head;
        if (!x)
            break;
        work_unlink(p, x);
        if (x->cancelled) {
            xfer_abort(x);
            xfer_release(x);
        } else if (x->add_pending) {
            xfer_do_add(x);
        } else if (x->resume_pending) {
            xfer_do_resume(x);
        }
        if (p->destroying)
            break;
    }
    p->settling = false;
}

static void on_kick(uv_timer_t *t) { pool_settle(t->data); }

/* ---- pool ---- */

int sl_upstream_pool_create(uv_loop_t *loop, const sl_upstream_limits *lim, sl_upstream_pool **out)
{
    if (!loop || !out)
        return SL_EINVAL;
    int rc = sl_upstream_global_init();
    if (rc)
        return rc;
    sl_upstream_pool *p = sl_calloc(1, sizeof *p);
    if (!p)
        return SL_ENOMEM;
    p->loop = loop;
    p->max_response = lim && lim->max_response_bytes ? lim->max_response_bytes
                                                     : SL_UPSTREAM_DEFAULT_MAX_RESPONSE;
    p->multi = curl_multi_init();
    if (!p->multi) {
        sl_free(p);
        return SL_ENOMEM;
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS,
                      (long)(lim && lim->max_idle_connections > 0 ? lim->max_idle_connections
                                                                  : SL_UPSTREAM_DEFAULT_MAX_IDLE));
    if (lim && lim->max_host_connections > 0)
        curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)lim->max_host_connections);
    if (lim && lim->max_total_connections > 0)
        curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)lim->max_total_connections);
    const char *env = getenv("SLUICE_UPSTREAM_CURL_HTTP");
    bool curl_for_http = (lim && lim->curl_for_http) || (env && strcmp(env, "1") == 0);
    /* Fails (out of memory) before it opens any handle. */
    if (!curl_for_http && sl_h1_pool_create(p, loop, lim, p->max_response, &p->h1) != 0) {
        curl_multi_cleanup(p->multi);
        sl_free(p);
        return SL_ENOMEM;
    }
    uv_timer_init(loop, &p->curl_timer);
    uv_timer_init(loop, &p->kick);
    p->curl_timer.data = p;
    p->kick.data = p;
    p->open_handles += 2;
    *out = p;
    return 0;
}

void sl_upstream_pool_destroy(sl_upstream_pool *p)
{
    if (!p)
        return;
    if (p->h1)
        sl_h1_pool_destroy(p->h1);
    /* Transfers first, while the socket callback still closes watchers. */
    while (p->xfers) {
        sl_upstream_xfer *x = p->xfers;
        x->cancelled = true;
        memset(&x->cb, 0, sizeof x->cb);
        xfer_abort(x);
        xfer_release(x);
    }
    p->destroying = true;
    while (p->n_spare > 0)
        curl_easy_cleanup(p->spare[--p->n_spare]);
    while (p->socks) {
        curl_multi_assign(p->multi, p->socks->fd, NULL);
        sock_close(p->socks);
    }
    /* Closes the cached connections; our socket and timer callbacks now
     * ignore it, and our close-socket callback still needs p->conns. */
    curl_multi_cleanup(p->multi);
    p->multi = NULL;
    uv_timer_stop(&p->curl_timer);
    uv_timer_stop(&p->kick);
    uv_close((uv_handle_t *)&p->curl_timer, on_pool_timer_closed);
    uv_close((uv_handle_t *)&p->kick, on_pool_timer_closed);
}

void sl_upstream_pool_stats(const sl_upstream_pool *p, uint64_t *sockets_opened,
                            uint64_t *sockets_closed)
{
    uint64_t h1_opened = 0, h1_closed = 0;
    if (p->h1)
        sl_h1_pool_stats(p->h1, &h1_opened, &h1_closed);
    if (sockets_opened)
        *sockets_opened = p->sockets_opened + h1_opened;
    if (sockets_closed)
        *sockets_closed = p->sockets_closed + h1_closed;
}

/* ---- transfers ---- */

/* "name: value" into line (HEADER_LINE_MAX bytes); false when it does not fit. */
static bool header_line(char *line, const char *name, const char *value)
{
    size_t nn = strlen(name), vn = strlen(value);
    if (nn + 2 + vn >= HEADER_LINE_MAX)
        return false;
    memcpy(line, name, nn);
    memcpy(line + nn, ": ", 2);
    memcpy(line + nn + 2, value, vn + 1);
    return true;
}

static int add_header(struct curl_slist **l, const char *name, const char *value)
{
    char line[HEADER_LINE_MAX];
    if (!header_line(line, name, value))
        return SL_EINVAL;
    struct curl_slist *nl = curl_slist_append(*l, line);
    if (!nl)
        return SL_ENOMEM;
    *l = nl;
    return 0;
}

/* Whether url starts with "http://" in any case; cheaper than strncasecmp,
 * which pays for locale set-up on every call. */
static bool is_http_url(const char *url)
{
    /* A mismatch (the terminating NUL included) stops the && chain before
     * any byte past it is read. */
    return (url[0] | 0x20) == 'h' && (url[1] | 0x20) == 't' && (url[2] | 0x20) == 't' &&
           (url[3] | 0x20) == 'p' && url[4] == ':' && url[5] == '/' && url[6] == '/';
}

/* The checks every request passes before either client sends it; the
 * built-in client makes the same ones (same helpers, same SL_EINVAL) on its
 * own path. */
static int validate_req(const sl_upstream_req *r, bool http)
{
    if (!http && strncasecmp(r->url, "https://", 8) != 0)
        return SL_EINVAL;
    if (sl_up_field_len(r->url) == SIZE_MAX || !sl_up_method_len(r->method))
        return SL_EINVAL;
    if (r->api_key && sl_up_field_len(r->api_key) == SIZE_MAX)
        return SL_EINVAL;
    for (size_t i = 0; i < r->n_headers; i++) {
        const sl_upstream_header *h = &r->headers[i];
        if (!h->name || !h->value || !sl_up_token_len(h->name) ||
            sl_up_field_len(h->value) == SIZE_MAX)
            return SL_EINVAL;
    }
    return 0;
}

static int build_headers(sl_upstream_xfer *x, const sl_upstream_req *r)
{
    bool have_ct = false, have_accept = false;
    int rc = 0;
    for (size_t i = 0; i < r->n_headers && !rc; i++) {
        have_ct |= strcasecmp(r->headers[i].name, "Content-Type") == 0;
        have_accept |= strcasecmp(r->headers[i].name, "Accept") == 0;
        rc = add_header(&x->hdrs, r->headers[i].name, r->headers[i].value);
    }
    if (!rc && r->api_key) {
        /* Built on the stack and wiped: the key must not linger in freed memory
         * of ours (libcurl's copy lives in the slist until the transfer ends). */
        char line[HEADER_LINE_MAX];
        static const char pre[] = "Authorization: Bearer ";
        size_t kn = strlen(r->api_key);
        if (sizeof pre - 1 + kn >= sizeof line) {
            rc = SL_EINVAL;
        } else {
            memcpy(line, pre, sizeof pre - 1);
            memcpy(line + sizeof pre - 1, r->api_key, kn + 1);
            struct curl_slist *nl = curl_slist_append(x->hdrs, line);
            rc = nl ? 0 : SL_ENOMEM;
            if (nl)
                x->hdrs = nl;
        }
        memset(line, 0, SL_MIN(sizeof line, sizeof pre + kn)); /* what was written */
    }
    if (!rc && !have_ct && r->body_len)
        rc = add_header(&x->hdrs, "Content-Type", "application/json");
    if (!rc && !have_accept)
        rc = add_header(&x->hdrs, "Accept", r->stream ? "text/event-stream" : "application/json");
    /* No "Expect: 100-continue" round trip for large bodies. */
    if (!rc) {
        struct curl_slist *nl = curl_slist_append(x->hdrs, "Expect:");
        rc = nl ? 0 : SL_ENOMEM;
        if (nl)
            x->hdrs = nl;
    }
    return rc;
}

static int setup_easy(sl_upstream_xfer *x, const sl_upstream_req *r)
{
    CURL *e = x->easy;
    CURLcode c = CURLE_OK;
#define SETOPT(opt, val)                                                                       \
    do {                                                                                       \
        if (c == CURLE_OK)                                                                     \
            c = curl_easy_setopt(e, opt, val);                                                 \
    } while (0)
    SETOPT(CURLOPT_PRIVATE, (void *)x);
    SETOPT(CURLOPT_URL, r->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_TCP_NODELAY, 1L);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_NOPROGRESS, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, (void *)x);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, (void *)x);
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, (void *)x);
    SETOPT(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)x->pool);
    SETOPT(CURLOPT_HTTPHEADER, x->hdrs);
    if (r->connect_timeout_ms)
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)r->connect_timeout_ms);
    if (strcmp(r->method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(r->method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, r->method);
        if (strcmp(r->method, "POST") == 0 || r->body_len) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
            SETOPT(CURLOPT_COPYPOSTFIELDS, r->body_len ? r->body : "");
        }
    }
#undef SETOPT
    if (c == CURLE_OUT_OF_MEMORY)
        return SL_ENOMEM;
    return c == CURLE_OK ? 0 : SL_EUPSTREAM;
}

bool sl_upstream_msg_no_connection(const char *msg)
{
    return msg && (!strncmp(msg, SL_UPSTREAM_MSG_CONNECT, sizeof SL_UPSTREAM_MSG_CONNECT - 1) ||
                   !strncmp(msg, SL_UPSTREAM_MSG_RESOLVE, sizeof SL_UPSTREAM_MSG_RESOLVE - 1));
}

int sl_upstream_start(sl_upstream_pool *p, const sl_upstream_req *req, const sl_upstream_cb *cb,
                      sl_upstream_xfer **out)
{
    if (!p || !req || !cb)
        return SL_EINVAL;
    if (p->destroying)
        return SL_ESTATE;
    if (!req->url || !req->method || (req->body_len && !req->body))
        return SL_EINVAL;
    int rc;
    bool http = is_http_url(req->url);
    if (p->h1 && http) {
        /* The built-in client checks what it sends itself (a URL it has
         * cached was checked when cached) and refuses what validate_req
         * refuses, with the same SL_EINVAL. */
        rc = sl_h1_start(p->h1, req, cb, out);
        if (rc != 1)
            return rc;
        /* 1: a URL form the built-in client leaves to libcurl */
    }
    rc = validate_req(req, http);
    if (rc)
        return rc;
    sl_upstream_xfer *x = sl_calloc(1, sizeof *x);
    if (!x)
        return SL_ENOMEM;
    x->impl = SL_UPSTREAM_IMPL_CURL;
    x->pool = p;
    x->cb = *cb;
    x->fd = CURL_SOCKET_BAD;
    x->stream = req->stream;
    x->dl.connect_ms = req->connect_timeout_ms;
    x->dl.first_byte_ms = req->first_byte_timeout_ms;
    x->dl.idle_ms = req->idle_timeout_ms;
    x->dl.total_ms = req->total_timeout_ms;
    x->easy = easy_get(p);
    rc = x->easy ? build_headers(x, req) : SL_ENOMEM;
    if (!rc)
        rc = setup_easy(x, req);
    if (rc) {
        easy_put(p, x->easy);
        curl_slist_free_all(x->hdrs);
        sl_free(x);
        return rc;
    }
    uv_timer_init(p->loop, &x->timer);
    x->timer.data = x;
    p->open_handles++;
    x->next = p->xfers;
    if (p->xfers)
        p->xfers->prev = x;
    p->xfers = x;
    uv_update_time(p->loop);
    x->dl.start_ms = x->dl.activity_ms = uv_now(p->loop);

    if (p->in_curl > 0) {
        /* Inside a libcurl callback: add once libcurl has returned. */
        x->add_pending = true;
        work_push(p, x);
    } else {
        p->in_curl++;
        CURLMcode mc = curl_multi_add_handle(p->multi, x->easy);
        p->in_curl--;
        if (mc != CURLM_OK) {
            x->cancelled = true;
            xfer_release(x);
            return mc == CURLM_OUT_OF_MEMORY ? SL_ENOMEM : SL_EUPSTREAM;
        }
        x->in_multi = true;
    }
    xfer_arm(x);
    if (out)
        *out = x;
    return 0;
}

void sl_upstream_pause(sl_upstream_xfer *x)
{
    if (x && sl_upstream_impl_of(x) == SL_UPSTREAM_IMPL_H1) {
        sl_h1_pause(x);
        return;
    }
    if (!x || x->cancelled || x->finishing)
        return;
    x->dl.paused = true; /* the next write callback returns CURL_WRITEFUNC_PAUSE */
}

void sl_upstream_resume(sl_upstream_xfer *x)
{
    if (x && sl_upstream_impl_of(x) == SL_UPSTREAM_IMPL_H1) {
        sl_h1_resume(x);
        return;
    }
    if (!x || x->cancelled || x->finishing || !x->dl.paused)
        return;
    sl_upstream_pool *p = x->pool;
    x->dl.paused = false;
    x->dl.activity_ms = uv_now(p->loop); /* the idle gap restarts: the pause was ours */
    xfer_arm(x);
    if (x->curl_paused) {
        x->resume_pending = true;
        work_push(p, x);
        if (p->in_curl == 0 && !p->settling)
            uv_timer_start(&p->kick, on_kick, 0, 0);
    }
}

void sl_upstream_cancel(sl_upstream_xfer *x)
{
    if (x && sl_upstream_impl_of(x) == SL_UPSTREAM_IMPL_H1) {
        sl_h1_cancel(x);
        return;
    }
    if (!x || x->cancelled || x->finishing)
        return;
    sl_upstream_pool *p = x->pool;
    x->cancelled = true;
    memset(&x->cb, 0, sizeof x->cb); /* nothing reaches the caller any more */
    uv_timer_stop(&x->timer);
    if (p->in_curl > 0 || p->settling) {
        /* libcurl is on the stack (or settle is walking the queue): tear down
         * when it returns. Our header/write callbacks return 0 meanwhile. */
        work_push(p, x);
        return;
    }
    xfer_abort(x);
    xfer_release(x);
}
