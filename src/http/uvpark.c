/*
 * Read parking: uv_read_stop and uv_read_start on TCP streams without the two
 * epoll_ctl calls libuv 1.44 spends on each stop/start pair.
 *
 * h2o 2.2 stops reading a client connection when a request is complete and
 * starts again when the response is written, once per request. libuv keeps
 * the descriptor in its epoll set after uv_read_stop but forgets it did, so
 * the next uv_read_start issues EPOLL_CTL_ADD, which fails with EEXIST, and
 * then EPOLL_CTL_MOD: two system calls per request that change nothing.
 *
 * This file defines uv_read_stop and uv_read_start in the executable, which
 * the dynamic linker binds ahead of libuv's own for h2o and for libuv itself
 * (ELF symbol interposition; the real functions are found with
 * dlsym(RTLD_NEXT)). A stop on a reading TCP stream parks it instead: the
 * stream stays registered for reads, and its callbacks are swapped for two of
 * ours. A start on a parked stream swaps the caller's callbacks back in. Both
 * are a few stores. If bytes, a hangup or an error arrive while the stream is
 * parked, libuv asks our allocation callback for a buffer before it reads;
 * it gets none, which libuv documents as "the user won't handle this read"
 * (UV_ENOBUFS to the read callback, nothing read), and our read callback then
 * stops the stream for real. So the owner's callbacks never run while it
 * believes the stream stopped, no byte is read or lost, and the descriptor is
 * level-triggered, so nothing that arrived is missed after the next start.
 *
 * Streams being closed, and streams of other types, go straight to libuv.
 * While a stream is parked libuv still counts it as active (a reading handle
 * keeps the loop alive); everything in this program that ends a loop closes
 * its handles first.
 */
#include "http/uvpark.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*read_start_fn)(uv_stream_t *, uv_alloc_cb, uv_read_cb);
typedef int (*read_stop_fn)(uv_stream_t *);

static read_start_fn real_start;
static read_stop_fn real_stop;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;
static _Thread_local sl_uvpark_stats stats;

static void resolve(void)
{
    real_start = (read_start_fn)dlsym(RTLD_NEXT, "uv_read_start");
    real_stop = (read_stop_fn)dlsym(RTLD_NEXT, "uv_read_stop");
    if (!real_start || !real_stop) {
        fputs("sluice: libuv's uv_read_start/uv_read_stop not found\n", stderr);
        abort();
    }
}

void sl_uvpark_init(void) { pthread_once(&resolved, resolve); }

static int stop_for_real(uv_stream_t *s)
{
    pthread_once(&resolved, resolve);
    return real_stop(s);
}

void sl_uvpark_stats_get(sl_uvpark_stats *out) { *out = stats; }

static void parked_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
}

static void parked_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)nread; /* UV_ENOBUFS: libuv read nothing */
    (void)buf;
    stats.woken++;
    stop_for_real(s);
}

static bool is_parked(const uv_stream_t *s) { return s->read_cb == parked_read; }

int uv_read_stop(uv_stream_t *s)
{
    if (uv_is_closing((const uv_handle_t *)s) || s->type != UV_TCP || s->read_cb == NULL)
        return stop_for_real(s); /* libuv's close path stops a parked stream here */
    if (!is_parked(s)) {
        s->alloc_cb = parked_alloc;
        s->read_cb = parked_read;
        stats.parked++;
    }
    return 0;
}

int uv_read_start(uv_stream_t *s, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    if (is_parked(s) && alloc_cb && read_cb && !uv_is_closing((const uv_handle_t *)s)) {
        s->alloc_cb = alloc_cb;
        s->read_cb = read_cb;
        stats.resumed++;
        return 0;
    }
    pthread_once(&resolved, resolve);
    return real_start(s, alloc_cb, read_cb);
}
