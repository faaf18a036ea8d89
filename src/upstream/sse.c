/* Incremental text/event-stream parser (WHATWG HTML, "Server-sent events",
 * section "Interpreting an event stream"), bounded by max_event_bytes.
 *
 * Lines that lie whole inside one fed buffer are parsed in place; only a line
 * split across feeds is copied into `line`. Data lines are copied into `data`
 * (joined with '\n') because an event is dispatched only at its blank line,
 * except in the usual case of a streamed chunk: one "data:" line followed by
 * the blank line, both in the buffer fed. That event is dispatched in place,
 * with its raw bytes (see sl_sse_event.raw). */
#include "upstream/upstream.h"

#include <string.h>

/* A line holds a field name, a colon, a space and a value of at most
 * max_event_bytes; the slack covers the longest field name we care about and
 * lets a "data: <max bytes>" line through so the data cap reports the error. */
#define SSE_LINE_SLACK 64
/* sl_sse_parser_reset keeps buffers up to this capacity */
#define SSE_KEEP_BYTES (64u << 10)

struct sl_sse_parser {
    size_t max_event;  /* cap on one event's joined data, bytes */
    sl_buf line;       /* a partial line carried between feeds */
    sl_buf data;       /* data lines of the current event, each followed by '\n' */
    sl_buf event;      /* event type of the current event */
    sl_buf id;         /* last event id; persists across events */
    int bom_pos;       /* bytes of the UTF-8 BOM matched so far (0..3) */
    bool bom_done;     /* past the point where a BOM may appear */
    bool skip_lf;      /* the previous feed ended in CR: a leading LF ends nothing */
    int err;           /* sticky SL_ETOOBIG */
};

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

int sl_sse_parser_create(size_t max_event_bytes, sl_sse_parser **out)
{
    if (!out || max_event_bytes == 0 || max_event_bytes > SIZE_MAX / 2)
        return SL_EINVAL;
    sl_sse_parser *p = sl_calloc(1, sizeof *p);
    if (!p)
        return SL_ENOMEM;
    p->max_event = max_event_bytes;
    sl_buf_init(&p->line, max_event_bytes + SSE_LINE_SLACK);
    sl_buf_init(&p->data, max_event_bytes + 1); /* + the trailing '\n' */
    sl_buf_init(&p->event, max_event_bytes + SSE_LINE_SLACK);
    sl_buf_init(&p->id, max_event_bytes + SSE_LINE_SLACK);
    *out = p;
    return 0;
}

void sl_sse_parser_destroy(sl_sse_parser *p)
{
    if (!p)
        return;
    sl_buf_free(&p->line);
    sl_buf_free(&p->data);
    sl_buf_free(&p->event);
    sl_buf_free(&p->id);
    sl_free(p);
}

void sl_sse_parser_reset(sl_sse_parser *p)
{
    sl_buf_keep(&p->line, SSE_KEEP_BYTES);
    sl_buf_keep(&p->data, SSE_KEEP_BYTES);
    sl_buf_keep(&p->event, SSE_KEEP_BYTES);
    sl_buf_keep(&p->id, SSE_KEEP_BYTES);
    p->bom_pos = 0;
    p->bom_done = false;
    p->skip_lf = false;
    p->err = 0;
}

size_t sl_sse_parser_pending(const sl_sse_parser *p) { return p->line.len + p->data.len + p->event.len; }

static const char *buf_ptr(const sl_buf *b) { return b->len ? b->data : ""; }

static int sse_dispatch(sl_sse_parser *p, int (*on_event)(void *, const sl_sse_event *), void *ud)
{
    if (p->data.len == 0) {
        /* No data lines: the spec drops the event and its type. */
        sl_buf_reset(&p->event);
        return 0;
    }
    sl_sse_event ev = {
        .event = buf_ptr(&p->event),
        .event_len = p->event.len,
        .data = p->data.data,
        .data_len = p->data.len - 1, /* without the last '\n' */
        .id = buf_ptr(&p->id),
        .id_len = p->id.len,
    };
    int rc = on_event ? on_event(ud, &ev) : 0;
    sl_buf_reset(&p->data);
    sl_buf_reset(&p->event);
    return rc;
}

static bool field_is(const char *f, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(f, name, n) == 0;
}

/* Returns 0 or SL_ETOOBIG; what on_event returned goes to *user_rc. */
static int sse_line(sl_sse_parser *p, const char *l, size_t n,
                    int (*on_event)(void *, const sl_sse_event *), void *ud, int *user_rc)
{
    if (n == 0) {
        *user_rc = sse_dispatch(p, on_event, ud);
        return 0;
    }
    if (l[0] == ':')
        return 0; /* comment */
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = (size_t)(l + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (field_is(l, flen, "data")) {
        /* data.max is max_event + 1, so this fails exactly when the joined data
         * (without its final '\n') would pass max_event bytes. */
        if (sl_buf_reserve(&p->data, vlen + 1) != 0)
            return SL_ETOOBIG;
        sl_buf_append(&p->data, v, vlen);
        sl_buf_append_char(&p->data, '\n');
    } else if (field_is(l, flen, "event")) {
        sl_buf_reset(&p->event);
        if (sl_buf_append(&p->event, v, vlen) != 0)
            return SL_ETOOBIG;
    } else if (field_is(l, flen, "id")) {
        if (!memchr(v, '\0', vlen)) { /* the spec ignores ids containing NUL */
            sl_buf_reset(&p->id);
            if (sl_buf_append(&p->id, v, vlen) != 0)
                return SL_ETOOBIG;
        }
    }
    /* "retry" and unknown fields are ignored. */
    return 0;
}

/* Index of the first CR or LF in b[0..n), or n. */
static size_t find_eol(const char *b, size_t n)
{
    /* two memchr passes beat one byte loop: lines are a few hundred bytes */
    const char *lf = memchr(b, '\n', n);
    size_t lim = lf ? (size_t)(lf - b) : n;
    const char *cr = memchr(b, '\r', lim);
    return cr ? (size_t)(cr - b) : lim;
}

int sl_sse_parser_feed(sl_sse_parser *p, const char *buf, size_t n,
                       int (*on_event)(void *ud, const sl_sse_event *ev), void *ud)
{
    if (p->err)
        return p->err;
    size_t i = 0;
    while (!p->bom_done && i < n) {
        if ((unsigned char)buf[i] == sse_bom[p->bom_pos]) {
            i++;
            if (++p->bom_pos == 3)
                p->bom_done = true;
            continue;
        }
        /* Not a BOM after all: the bytes matched so far are line content. */
        p->bom_done = true;
        if (sl_buf_append(&p->line, sse_bom, (size_t)p->bom_pos) != 0)
            return p->err = SL_ETOOBIG;
    }
    while (i < n) {
        if (p->skip_lf) {
            p->skip_lf = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t len = find_eol(buf + i, n - i);
        size_t eol = i + len;
        if (eol == n) {
            if (sl_buf_append(&p->line, buf + i, len) != 0)
                return p->err = SL_ETOOBIG;
            return 0;
        }
        const char *l = buf + i;
        if (p->line.len > 0) {
            if (sl_buf_append(&p->line, buf + i, len) != 0)
                return p->err = SL_ETOOBIG;
            l = p->line.data;
            len = p->line.len;
        } else if (len > p->line.max) {
            return p->err = SL_ETOOBIG;
        }
        size_t next = eol + 1;
        if (buf[eol] == '\r') {
            if (next < n && buf[next] == '\n')
                next++;
            else if (next == n)
                p->skip_lf = true;
        }
        if (l != p->line.data && p->data.len == 0 && len >= 5 && !memcmp(l, "data:", 5) && next < n &&
            (buf[next] == '\n' || buf[next] == '\r')) {
            /* one data line and the blank line: dispatch in place */
            size_t after = next + 1;
            bool skip = false;
            if (buf[next] == '\r') {
                if (after < n && buf[after] == '\n')
                    after++;
                else if (after == n)
                    skip = true;
            }
            const char *v = l + 5;
            size_t vlen = len - 5;
            if (vlen > 0 && v[0] == ' ') {
                v++;
                vlen--;
            }
            if (vlen > p->max_event)
                return p->err = SL_ETOOBIG;
            sl_sse_event ev = {
                .event = buf_ptr(&p->event),
                .event_len = p->event.len,
                .data = v,
                .data_len = vlen,
                .id = buf_ptr(&p->id),
                .id_len = p->id.len,
                .raw = l,
                .raw_len = after - i,
            };
            int user_rc = on_event ? on_event(ud, &ev) : 0;
            sl_buf_reset(&p->event);
            p->skip_lf = skip;
            if (user_rc != 0)
                return user_rc;
            i = after;
            continue;
        }
        int user_rc = 0;
        int rc = sse_line(p, l, len, on_event, ud, &user_rc);
        sl_buf_reset(&p->line);
        if (rc != 0)
            return p->err = rc;
        if (user_rc != 0)
            return user_rc;
        i = next;
    }
    return 0;
}
