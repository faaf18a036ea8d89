/* Fuzzes the SSE parser. The first two bytes choose the event cap and a split
 * point; the rest is the stream. The stream is parsed whole, in two pieces at
 * the split point and (when short) byte by byte: every way must give the same
 * events, the same result code, and every event must respect the cap. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/upstream.h"

typedef struct summary {
    size_t max_event;
    uint64_t hash;
    long count;
} summary;

static int on_event(void *ud, const sl_sse_event *ev)
{
    summary *s = ud;
    if (!ev->event || !ev->data || !ev->id || ev->data_len > s->max_event)
        abort();
    if (ev->raw) {
        /* raw: "data:" [" "] data, a line end, a blank line; nothing else */
        const char *r = ev->raw, *d = r + 5;
        if (ev->raw_len < 7 || memcmp(r, "data:", 5) != 0)
            abort();
        if (*d == ' ' && (size_t)(ev->data - r) == 6)
            d++;
        if (ev->data != d || memchr(ev->data, '\n', ev->data_len) || memchr(ev->data, '\r', ev->data_len))
            abort();
        size_t tail = ev->raw_len - (size_t)(d - r) - ev->data_len;
        const char *t = d + ev->data_len;
        bool ok = (tail == 2 && !memcmp(t, "\n\n", 2)) || (tail == 2 && !memcmp(t, "\r\r", 2)) ||
                  (tail == 2 && !memcmp(t, "\n\r", 2)) || (tail == 3 && !memcmp(t, "\r\n\n", 3)) ||
                  (tail == 3 && !memcmp(t, "\r\n\r", 3)) || (tail == 3 && !memcmp(t, "\n\r\n", 3)) ||
                  (tail == 3 && !memcmp(t, "\r\r\n", 3)) || (tail == 4 && !memcmp(t, "\r\n\r\n", 4));
        if (!ok)
            abort();
    }
    s->count++;
    s->hash = sl_hash64(ev->event, ev->event_len, s->hash ^ 0x65);
    s->hash = sl_hash64(ev->data, ev->data_len, s->hash ^ 0x64);
    s->hash = sl_hash64(ev->id, ev->id_len, s->hash ^ 0x69);
    return 0;
}

/* Feeds data[0..n) in pieces that end at the given cuts; returns the first
 * non-zero result (the parser stops being fed after it). */
static int parse(const uint8_t *data, size_t n, size_t max_event, const size_t *cuts,
                 size_t ncuts, summary *s)
{
    memset(s, 0, sizeof *s);
    s->max_event = max_event;
    sl_sse_parser *p = NULL;
    if (sl_sse_parser_create(max_event, &p) != 0)
        abort();
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        rc = sl_sse_parser_feed(p, (const char *)data + at, end - at, on_event, s);
        at = end;
        if (sl_sse_parser_pending(p) > 3 * (max_event + 64) + 3)
            abort();
    }
    sl_sse_parser_destroy(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_event = 1 + (size_t)(data[0] % 8) * 37; /* 1 .. 260 bytes */
    const uint8_t *body = data + 2;
    size_t n = size - 2;
    size_t cut = n ? ((size_t)data[1] * 2654435761u) % (n + 1) : 0;

    summary whole, split;
    int rc_whole = parse(body, n, max_event, NULL, 0, &whole);
    int rc_split = parse(body, n, max_event, &cut, 1, &split);
    if (rc_whole != rc_split || whole.count != split.count || whole.hash != split.hash)
        abort();
    if (rc_whole != 0 && rc_whole != SL_ETOOBIG)
        abort();
    if (n <= 4096) {
        size_t *cuts = malloc((n ? n : 1) * sizeof *cuts);
        for (size_t i = 0; i < n; i++)
            cuts[i] = i;
        summary bytes;
        int rc_bytes = parse(body, n, max_event, cuts, n, &bytes);
        free(cuts);
        if (rc_bytes != rc_whole || bytes.count != whole.count || bytes.hash != whole.hash)
            abort();
    }
    return 0;
}
