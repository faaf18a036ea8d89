/*
 * Read parking for libuv streams (see uvpark.c): uv_read_stop and
 * uv_read_start on TCP streams cost no system call when a stream is restarted
 * before anything arrives on it.
 */
#ifndef SL_HTTP_UVPARK_H
#define SL_HTTP_UVPARK_H

#include <stdint.h>
#include <uv.h>

typedef struct {
    uint64_t parked;  /* stops that parked the stream */
    uint64_t resumed; /* starts that unparked it */
    uint64_t woken;   /* parked streams that saw an event and were stopped for real */
} sl_uvpark_stats;

/* Finds libuv's own functions (the program stops with a message if they are
 * missing). Linking a caller of this pulls the interposing definitions into
 * the program; the http server calls it when it starts. */
void sl_uvpark_init(void);

/* This thread's counters. */
void sl_uvpark_stats_get(sl_uvpark_stats *out);

#endif
