/* Incremental HTTP/1.1 response parser: see h1parse.h.
 *
 * States: HEAD copies the header block into hbuf line by line (a line ends at
 * LF; CRLF and bare LF are both accepted) until an empty line, then parses
 * the whole block at once, so no field ever straddles two feeds. Chunk-size
 * lines and trailer lines go through hbuf the same way, each bounded. Body
 * bytes are never copied: BODY events point into the caller's buffer. */
#include "upstream/h1parse.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

enum {
    ST_HEAD = 0,
    ST_BODY_LEN,   /* remaining = Content-Length bytes left */
    ST_BODY_CLOSE, /* until the peer closes */
    ST_CHUNK_SIZE, /* reading a chunk-size line into hbuf */
    ST_CHUNK_DATA, /* remaining = bytes left in this chunk */
    ST_CHUNK_CR,   /* after chunk data: CR LF (or LF) */
    ST_CHUNK_LF,
    ST_TRAILER, /* trailer lines until an empty one */
    ST_DONE,
    ST_ERROR,
};

#define MAX_CONTENT_LENGTH ((uint64_t)1 << 62)
#define MAX_CHUNK_SIZE ((uint64_t)1 << 60)

void sl_h1p_reset(sl_h1p *p, bool head)
{
    char *keep = p->hbuf;
    size_t cap = p->hcap;
    memset(p, 0, offsetof(sl_h1p, err)); /* err is written before it is read */
    p->err[0] = '\0';
    p->hbuf = keep;
    p->hcap = cap;
    p->head = head;
    p->state = ST_HEAD;
}

void sl_h1p_free(sl_h1p *p)
{
    sl_free(p->hbuf);
    p->hbuf = NULL;
    p->hcap = p->hlen = 0;
}

static int fail(sl_h1p *p, uint64_t at, const char *what)
{
    snprintf(p->err, sizeof p->err, "malformed upstream response at byte %llu: %s",
             (unsigned long long)at, what);
    p->state = ST_ERROR;
    return SL_EUPSTREAM;
}

/* Appends src[0..n) to hbuf; cap is the limit for hlen. */
static int hbuf_append(sl_h1p *p, const char *src, size_t n, size_t cap, const char *what)
{
    if (n > cap - p->hlen)
        return fail(p, p->offset, what);
    if (p->hlen + n + 1 > p->hcap) {
        size_t c = p->hcap ? p->hcap : 1024;
        while (c < p->hlen + n + 1)
            c *= 2;
        char *nb = sl_realloc(p->hbuf, c);
        if (!nb)
            return SL_ENOMEM;
        p->hbuf = nb;
        p->hcap = c;
    }
    memcpy(p->hbuf + p->hlen, src, n);
    p->hlen += n;
    return 0;
}


static bool ieq(const char *a, size_t an, const char *b)
{
    return strlen(b) == an && strncasecmp(a, b, an) == 0;
}

/* Calls fn(tok, len) for each comma-separated element of v, trimmed. */
static void for_tokens(const char *v, void (*fn)(void *, const char *, size_t), void *ud)
{
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *s = v;
        while (*v && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s)
            fn(ud, s, (size_t)(e - s));
    }
}

typedef struct conn_tokens {
    bool close, keep_alive;
} conn_tokens;

static void conn_token(void *ud, const char *t, size_t n)
{
    conn_tokens *c = ud;
    if (ieq(t, n, "close"))
        c->close = true;
    else if (ieq(t, n, "keep-alive"))
        c->keep_alive = true;
}

typedef struct te_tokens {
    int count;
    bool chunked_last;
} te_tokens;

static void te_token(void *ud, const char *t, size_t n)
{
    te_tokens *c = ud;
    c->count++;
    c->chunked_last = ieq(t, n, "chunked");
}

/* Parses the complete header block hbuf[0..hlen) (ending with its empty
 * line). On a final response fills ev and sets up body framing. */
static int parse_block(sl_h1p *p, sl_h1p_event *ev, bool *final)
{
    uint64_t base = p->offset - p->hlen; /* response offset of hbuf[0] */
    char *b = p->hbuf;
    char *end = b + p->hlen;
    char *nl = memchr(b, '\n', p->hlen);
    /* status line: HTTP/1.x SP 3DIGIT [SP reason] */
    char *le = nl > b && nl[-1] == '\r' ? nl - 1 : nl;
    size_t ll = (size_t)(le - b);
    if (ll < 12 || memcmp(b, "HTTP/1.", 7) != 0 || (b[7] != '0' && b[7] != '1') || b[8] != ' ')
        return fail(p, base, "bad status line (want HTTP/1.0 or HTTP/1.1)");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (b[i] < '0' || b[i] > '9')
            return fail(p, base + (uint64_t)i, "bad status code");
        status = status * 10 + (b[i] - '0');
    }
    if (status < 100 || (ll > 12 && b[12] != ' '))
        return fail(p, base + 9, "bad status code");
    for (size_t i = 12; i < ll; i++) {
        unsigned char c = (unsigned char)b[i];
        if ((c < 32 && c != '\t') || c == 127)
            return fail(p, base + i, "control byte in status line");
    }
    bool have_cl = false, have_te = false;
    uint64_t cl = 0;
    conn_tokens conn = {0};
    te_tokens te = {0};
    const char *ctype = NULL, *retry = NULL;
    int nfields = 0;
    char *line = nl + 1;
    while (line < end) {
        char *lnl = memchr(line, '\n', (size_t)(end - line));
        char *lend = lnl > line && lnl[-1] == '\r' ? lnl - 1 : lnl;
        uint64_t at = base + (uint64_t)(line - b);
        if (lend == line)
            break; /* the empty line ending the block */
        if (*line == ' ' || *line == '\t')
            return fail(p, at, "obsolete line folding in header");
        if (++nfields > SL_H1P_MAX_HEADERS)
            return fail(p, at, "too many header fields");
        char *colon = line;
        while (colon < lend && *colon != ':') {
            if (!sl_http_tchar[(unsigned char)*colon])
                return fail(p, base + (uint64_t)(colon - b), "bad header name");
            colon++;
        }
        if (colon == lend || colon == line)
            return fail(p, at, "header line without a name and ':'");
        size_t name_len = (size_t)(colon - line);
        char *v = colon + 1;
        while (v < lend && (*v == ' ' || *v == '\t'))
            v++;
        char *ve = lend;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *c = v; c < ve; c++) {
            unsigned char u = (unsigned char)*c;
            if ((u < 32 && u != '\t') || u == 127)
                return fail(p, base + (uint64_t)(c - b), "control byte in header value");
        }
        *ve = 0; /* ve <= lend < lnl: the value is now a C string */
        if (ieq(line, name_len, "content-length")) {
            uint64_t n = 0;
            if (v == ve)
                return fail(p, at, "empty Content-Length");
            for (char *c = v; c < ve; c++) {
                if (*c < '0' || *c > '9')
                    return fail(p, at, "invalid Content-Length");
                n = n * 10 + (uint64_t)(*c - '0');
                if (n > MAX_CONTENT_LENGTH)
                    return fail(p, at, "Content-Length too large");
            }
            if (have_cl && n != cl)
                return fail(p, at, "conflicting Content-Length headers");
            have_cl = true;
            cl = n;
        } else if (ieq(line, name_len, "transfer-encoding")) {
            have_te = true;
            for_tokens(v, te_token, &te);
        } else if (ieq(line, name_len, "connection")) {
            for_tokens(v, conn_token, &conn);
        } else if (ieq(line, name_len, "content-type")) {
            if (!ctype)
                ctype = v;
        } else if (ieq(line, name_len, "retry-after")) {
            if (!retry)
                retry = v;
        }
        line = lnl + 1;
    }
    if (status < 200) {
        if (status == 101)
            return fail(p, base, "unexpected 101 Switching Protocols");
        *final = false; /* 100 Continue, 103 Early Hints...: the real one follows */
        return 0;
    }
    *final = true;
    p->status = status;
    p->version_minor = b[7] - '0';
    p->keep_alive = p->version_minor == 1 ? !conn.close : conn.keep_alive && !conn.close;
    if (have_te && have_cl)
        return fail(p, base, "both Content-Length and Transfer-Encoding");
    if (have_te && (te.count != 1 || !te.chunked_last))
        return fail(p, base, "unsupported Transfer-Encoding (only chunked)");
    if (p->head || status == 204 || status == 304) {
        p->state = ST_DONE;
    } else if (have_te) {
        p->state = ST_CHUNK_SIZE;
    } else if (have_cl) {
        p->remaining = cl;
        p->state = cl ? ST_BODY_LEN : ST_DONE;
    } else {
        p->state = ST_BODY_CLOSE;
        p->close_delimited = true;
        p->keep_alive = false;
    }
    memset(ev, 0, sizeof *ev);
    ev->kind = SL_H1P_HEADERS;
    ev->status = status;
    ev->content_type = ctype;
    ev->retry_after = retry;
    return 0;
}

/* "1a2b[ ;ext...]" in hbuf[0..hlen) without its line end. */
static int parse_chunk_size(sl_h1p *p, uint64_t at)
{
    const char *s = p->hbuf, *e = p->hbuf + p->hlen;
    uint64_t n = 0;
    int digits = 0;
    for (; s < e; s++, digits++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'f')
            d = (*s | 0x20) - 'a' + 10;
        else
            break;
        n = n * 16 + (uint64_t)d;
        if (n > MAX_CHUNK_SIZE)
            return fail(p, at, "chunk size too large");
    }
    if (digits == 0)
        return fail(p, at, "bad chunk size");
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    if (s < e && *s != ';')
        return fail(p, at, "bad chunk size");
    for (; s < e; s++)
        if (*s == '\r' || *s == 0)
            return fail(p, at, "bad chunk extension");
    p->remaining = n;
    return 0;
}

/* Reads bytes up to and including the next LF into hbuf (bounded by cap).
 * Returns 0 with *line_done, or an error. *pos advances over what it took. */
static int take_line(sl_h1p *p, const char *buf, size_t n, size_t *pos, size_t cap,
                     const char *too_long, bool *line_done)
{
    const char *s = buf + *pos;
    size_t avail = n - *pos;
    const char *nl = memchr(s, '\n', avail);
    size_t take = nl ? (size_t)(nl - s) + 1 : avail;
    int rc = hbuf_append(p, s, take, cap, too_long);
    if (rc)
        return rc;
    *pos += take;
    p->offset += take;
    *line_done = nl != NULL;
    return 0;
}

int sl_h1p_step(sl_h1p *p, const char *buf, size_t n, bool body_ok, size_t *used, sl_h1p_event *ev)
{
    size_t pos = 0;
    int rc = 0;
    ev->kind = SL_H1P_NEED_MORE;
    *used = 0;
    if (p->state == ST_ERROR)
        return SL_EUPSTREAM;
    if (n > 0 && p->state != ST_DONE)
        p->started = true;
    while (p->state != ST_DONE) {
        if (p->state == ST_BODY_LEN || p->state == ST_CHUNK_DATA || p->state == ST_BODY_CLOSE) {
            if (pos == n)
                break;
            if (!body_ok) {
                ev->kind = SL_H1P_BLOCKED;
                break;
            }
            size_t take = n - pos;
            if (p->state != ST_BODY_CLOSE && take > p->remaining)
                take = (size_t)p->remaining;
            ev->kind = SL_H1P_BODY;
            ev->data = buf + pos;
            ev->len = take;
            pos += take;
            p->offset += take;
            if (p->state != ST_BODY_CLOSE) {
                p->remaining -= take;
                if (p->remaining == 0)
                    p->state = p->state == ST_BODY_LEN ? ST_DONE : ST_CHUNK_CR;
            }
            *used = pos;
            return 0;
        }
        if (pos == n)
            break;
        if (p->state == ST_CHUNK_CR || p->state == ST_CHUNK_LF) {
            char c = buf[pos];
            if (c == '\r' && p->state == ST_CHUNK_CR) {
                p->state = ST_CHUNK_LF;
            } else if (c == '\n') {
                p->state = ST_CHUNK_SIZE;
                p->hlen = 0;
            } else {
                return fail(p, p->offset, "chunk data not followed by CRLF");
            }
            pos++;
            p->offset++;
            continue;
        }
        bool line_done = false;
        if (p->state == ST_HEAD) {
            rc = take_line(p, buf, n, &pos, SL_H1P_MAX_HEADER_BYTES,
                           "response header block too large", &line_done);
            if (rc)
                return rc;
            if (!line_done)
                continue;
            size_t ll = p->hlen - p->line_start; /* with its LF */
            bool empty = ll == 1 || (ll == 2 && p->hbuf[p->line_start] == '\r');
            if (!empty || p->line_start == 0) {
                if (p->line_start == 0 && empty)
                    return fail(p, p->offset - ll, "empty status line");
                p->line_start = p->hlen;
                continue;
            }
            p->hbuf[p->hlen] = 0;
            bool final = false;
            rc = parse_block(p, ev, &final);
            if (rc)
                return rc;
            p->hlen = p->line_start = 0;
            if (final) {
                *used = pos;
                return 0;
            }
            continue;
        }
        if (p->state == ST_CHUNK_SIZE) {
            uint64_t at = p->offset - p->hlen;
            rc = take_line(p, buf, n, &pos, SL_H1P_MAX_CHUNK_LINE, "chunk-size line too long",
                           &line_done);
            if (rc)
                return rc;
            if (!line_done)
                continue;
            p->hlen--; /* drop LF */
            if (p->hlen > 0 && p->hbuf[p->hlen - 1] == '\r')
                p->hlen--;
            rc = parse_chunk_size(p, at);
            if (rc)
                return rc;
            p->hlen = 0;
            p->state = p->remaining ? ST_CHUNK_DATA : ST_TRAILER;
            continue;
        }
        if (p->state == ST_TRAILER) {
            /* hlen counts the current line; trailer_bytes the finished ones. */
            rc = take_line(p, buf, n, &pos, SL_H1P_MAX_TRAILER_BYTES - p->trailer_bytes,
                           "trailers too large", &line_done);
            if (rc)
                return rc;
            if (!line_done)
                continue;
            bool empty = p->hlen == 1 || (p->hlen == 2 && p->hbuf[0] == '\r');
            p->trailer_bytes += p->hlen;
            p->hlen = 0;
            if (empty)
                p->state = ST_DONE;
            continue;
        }
    }
    if (p->state == ST_DONE && ev->kind == SL_H1P_NEED_MORE)
        ev->kind = SL_H1P_DONE;
    *used = pos;
    return 0;
}

int sl_h1p_eof(sl_h1p *p, bool *done)
{
    *done = false;
    switch (p->state) {
    case ST_DONE:
        *done = true;
        return 0;
    case ST_BODY_CLOSE:
        p->state = ST_DONE;
        *done = true;
        return 0;
    case ST_ERROR:
        return SL_EUPSTREAM;
    case ST_HEAD:
        snprintf(p->err, sizeof p->err, "%s",
                 p->started ? "upstream closed the connection inside the response headers"
                            : "upstream closed the connection before sending a response");
        break;
    default:
        snprintf(p->err, sizeof p->err,
                 "upstream closed the connection before the end of the response body "
                 "(truncated after %llu bytes)",
                 (unsigned long long)p->offset);
        break;
    }
    p->state = ST_ERROR;
    return SL_EUPSTREAM;
}
