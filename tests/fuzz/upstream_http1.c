/* Fuzzes the built-in client's HTTP/1.1 response parser. The first byte picks
 * the options (bit 0: the request was HEAD; bit 1: the peer closes after the
 * last byte), the second a split point; the rest is the response. It is parsed
 * whole and in two pieces cut at the split point: both ways must agree, every
 * event must stay inside the bytes fed, and nothing may crash or hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "upstream/h1parse.h"

typedef struct summary {
    int rc;
    int headers;
    int status;
    uint64_t hash; /* content type, then the whole body */
    uint64_t body;
    char *bytes; /* body bytes, concatenated */
    int done;
    size_t consumed;
} summary;

static void parse(const uint8_t *data, size_t n, size_t cut, int flags, summary *s)
{
    memset(s, 0, sizeof *s);
    s->bytes = malloc(n + 1);
    sl_h1p p;
    memset(&p, 0, sizeof p);
    sl_h1p_reset(&p, flags & 1);
    size_t bounds[2] = {cut, n};
    size_t at = 0;
    for (int piece = 0; piece < 2 && !s->rc && !s->done; piece++) {
        const char *buf = (const char *)data + at;
        size_t len = bounds[piece] - at, pos = 0;
        /* every step consumes bytes or returns a terminal event */
        for (size_t guard = 0; guard <= len + 4; guard++) {
            sl_h1p_event ev;
            size_t used = 0;
            s->rc = sl_h1p_step(&p, buf + pos, len - pos, true, &used, &ev);
            if (used > len - pos)
                abort();
            pos += used;
            if (s->rc)
                break;
            if (ev.kind == SL_H1P_HEADERS) {
                if (ev.status < 200 || ev.status > 999 || s->headers++)
                    abort();
                s->status = ev.status;
                if (ev.content_type)
                    s->hash = sl_hash64(ev.content_type, strlen(ev.content_type), s->hash ^ 0x63);
            } else if (ev.kind == SL_H1P_BODY) {
                if (ev.len == 0 || ev.data < buf || ev.data + ev.len > buf + len || !s->headers)
                    abort();
                memcpy(s->bytes + s->body, ev.data, ev.len);
                s->body += ev.len;
            } else if (ev.kind == SL_H1P_DONE) {
                s->done = 1;
                break;
            } else if (ev.kind == SL_H1P_NEED_MORE) {
                if (pos != len)
                    abort();
                break;
            } else {
                abort();
            }
            if (guard == len + 4)
                abort(); /* no progress */
        }
        at += pos;
        if (!s->done && !s->rc)
            at = bounds[piece];
    }
    if (!s->rc && !s->done && (flags & 2)) {
        bool done = false;
        s->rc = sl_h1p_eof(&p, &done);
        s->done = done;
    }
    if (s->rc && !p.err[0])
        abort(); /* every error says what was wrong */
    s->consumed = at;
    s->hash = sl_hash64(s->bytes, (size_t)s->body, s->hash ^ 0x62);
    free(s->bytes);
    sl_h1p_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int flags = data[0];
    const uint8_t *resp = data + 2;
    size_t n = size - 2;
    size_t cut = n ? ((size_t)data[1] * 2654435761u) % (n + 1) : 0;
    summary whole, split;
    parse(resp, n, n, flags, &whole);
    parse(resp, n, cut, flags, &split);
    if (whole.rc != split.rc || whole.headers != split.headers || whole.status != split.status ||
        whole.hash != split.hash || whole.body != split.body || whole.done != split.done ||
        (whole.done && whole.consumed != split.consumed))
        abort();
    if (whole.rc != 0 && whole.rc != SL_EUPSTREAM)
        abort();
    return 0;
}
