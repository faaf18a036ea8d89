/* Fuzzes the built-in client's HTTP/1.1 response parser. The first byte picks
 * the options (bit 0: the request was HEAD; bit 1: the peer closes after the
 * last byte), the second a split point; the rest is the response. It is parsed
 * whole, in two pieces cut at the split point, and one byte at a time: all
 * three must agree (events, body bytes, bytes consumed, and the error message
 * with its byte offset; a header block fed whole takes the parser's one-copy
 * way, fed in pieces its line-by-line way), every event must stay inside the
 * bytes fed, and nothing may crash or hang. */
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
    char err[160];
} summary;

/* Feeds data[0..n) in pieces: [0, cut) and the rest, or (bytewise) one
 * byte at a time. */
static void parse(const uint8_t *data, size_t n, size_t cut, int flags, bool bytewise, summary *s)
{
    memset(s, 0, sizeof *s);
    s->bytes = malloc(n + 1);
    sl_h1p p;
    memset(&p, 0, sizeof p);
    sl_h1p_reset(&p, flags & 1);
    size_t at = 0; /* bytes fed before this piece */
    for (;;) {
        size_t end = bytewise ? (at < n ? at + 1 : n) : (at < cut ? cut : n);
        const char *buf = (const char *)data + at;
        size_t len = end - at, pos = 0;
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
                if (ev.retry_after)
                    s->hash = sl_hash64(ev.retry_after, strlen(ev.retry_after), s->hash ^ 0x72);
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
        if (s->rc || s->done) {
            at += pos;
            break;
        }
        at = end;
        if (at >= n)
            break;
    }
    if (!s->rc && !s->done && (flags & 2)) {
        bool done = false;
        s->rc = sl_h1p_eof(&p, &done);
        s->done = done;
    }
    if (s->rc && !p.err[0])
        abort(); /* every error says what was wrong */
    memcpy(s->err, p.err, sizeof s->err);
    s->consumed = at;
    s->hash = sl_hash64(s->bytes, (size_t)s->body, s->hash ^ 0x62);
    free(s->bytes);
    sl_h1p_free(&p);
}

static bool agree(const summary *a, const summary *b)
{
    return a->rc == b->rc && a->headers == b->headers && a->status == b->status &&
           a->hash == b->hash && a->body == b->body && a->done == b->done &&
           (!a->done || a->consumed == b->consumed) && strcmp(a->err, b->err) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int flags = data[0];
    const uint8_t *resp = data + 2;
    size_t n = size - 2;
    size_t cut = n ? ((size_t)data[1] * 2654435761u) % (n + 1) : 0;
    summary whole, split, bytewise;
    parse(resp, n, n, flags, false, &whole);
    parse(resp, n, cut, flags, false, &split);
    parse(resp, n, 0, flags, true, &bytewise);
    if (!agree(&whole, &split) || !agree(&whole, &bytewise))
        abort();
    if (whole.rc != 0 && whole.rc != SL_EUPSTREAM)
        abort();
    return 0;
}
