/* Incremental HTTP/1.1 response parser: see h1parse.h.
 *
 * States: HEAD gathers the header block in hbuf until its empty line (a line
 * ends at LF; CRLF and bare LF are both accepted), then parses the whole block
 * at once, so no field ever straddles two feeds. When a block starts a feed
 * (the usual case: the whole head arrives in one read), head_try copies the
 * feed's first bytes once and parses them straight, the parse itself finding
 * the block's end; otherwise, or when that block is cut short or malformed,
 * head_take gathers the block (its end found with memchr, each feed's part
 * copied with one memcpy) and parse_block runs on it. Chunk-size lines are
 * parsed in place when the whole line is in the feed, else gathered in hbuf;
 * trailer lines always go through hbuf. Body bytes are never copied: BODY
 * events point into the caller's buffer.
 *
 * Split invariance: however the bytes are cut into feeds, the events (body
 * bytes concatenated), errors and error messages are the same. That is why
 * every limit error names the start of the line that crossed the limit, not
 * the start of the piece being appended. */
#include "upstream/h1parse.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

enum {
    ST_HEAD = 0,
    ST_HEAD_TRY, /* only inside head_try: a failure there is not final */
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
/* Zero bytes kept after the NUL that ends a header block in hbuf, so that the
 * block scans below may read whole 8-byte words and known names (up to 18
 * bytes with the ':') without a bounds check. */
#define HBUF_PAD 24
/* Bytes of a feed head_try copies and parses in one go; blocks that are
 * longer or do not fit in the feed go the slow way (head_take). Large enough
 * for the heads of common LLM APIs (about 1 KiB), small enough that copying
 * it from a feed holding a large body too costs little. */
#define HEAD_TRY_BYTES 2048

void sl_h1p_reset(sl_h1p *p, bool head)
{
    char *keep = p->hbuf;
    size_t cap = p->hcap;
    /* everything before err is cleared; err only needs to be an empty string */
    memset(p, 0, offsetof(sl_h1p, err));
    p->err[0] = 0;
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
    if (p->state == ST_HEAD_TRY)
        return SL_EUPSTREAM; /* head_try falls back: the message would be dropped */
    snprintf(p->err, sizeof p->err, "malformed upstream response at byte %llu: %s",
             (unsigned long long)at, what);
    p->state = ST_ERROR;
    return SL_EUPSTREAM;
}

/* Appends src[0..n) to hbuf; cap is the limit for hlen, past which it fails
 * with `what` at response offset `at`. Keeps room for a NUL and HBUF_PAD
 * bytes after hlen. */
static int hbuf_append(sl_h1p *p, const char *src, size_t n, size_t cap, uint64_t at,
                       const char *what)
{
    if (n > cap - p->hlen)
        return fail(p, at, what);
    if (p->hlen + n + 1 + HBUF_PAD > p->hcap) {
        size_t c = p->hcap ? p->hcap : 1024;
        while (c < p->hlen + n + 1 + HBUF_PAD)
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

static inline uint64_t load8(const char *s)
{
    uint64_t v;
    memcpy(&v, s, sizeof v);
    return v;
}

/* The 8 bytes at s are lit's first 8, ignoring case on letters only. The
 * literals are lowercase letters, '-' and ':'; of these only letters have bit
 * 6 set, so fold is 0x20 on letter bytes and 0 elsewhere: a letter matches
 * either case, '-' and ':' match only themselves. */
static inline bool word_is(const char *s, const char *lit)
{
    uint64_t l = load8(lit);
    uint64_t fold = (l & 0x4040404040404040u) >> 1;
    return (load8(s) | fold) == l;
}

/* s starts with lit[0..n) (8 <= n), as word_is, the last word overlapping.
 * Inlined with a constant n it is 2 or 3 compares. */
static inline bool starts_with(const char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i + 8 < n; i += 8)
        if (!word_is(s + i, lit + i))
            return false;
    return word_is(s + n - 8, lit + n - 8);
}

/* The header fields the parser reads. */
enum { F_OTHER, F_CONNECTION, F_RETRY_AFTER, F_CONTENT_TYPE, F_CONTENT_LENGTH, F_TRANSFER_ENCODING };

/* Which field the header line at s (in hbuf, padded) names, recognised by its
 * first letter and then its whole name with the ':' in any letter case; a
 * match is therefore also a valid name, with *name_len set. Anything else is
 * F_OTHER, and its name still has to be checked. */
static int known_field(const char *s, size_t *name_len)
{
    switch (s[0] | 0x20) {
    case 'c':
        if (starts_with(s, "content-type:", 13)) {
            *name_len = 12;
            return F_CONTENT_TYPE;
        }
        if (starts_with(s, "content-length:", 15)) {
            *name_len = 14;
            return F_CONTENT_LENGTH;
        }
        if (starts_with(s, "connection:", 11)) {
            *name_len = 10;
            return F_CONNECTION;
        }
        break;
    case 'r':
        if (starts_with(s, "retry-after:", 12)) {
            *name_len = 11;
            return F_RETRY_AFTER;
        }
        break;
    case 't':
        if (starts_with(s, "transfer-encoding:", 18)) {
            *name_len = 17;
            return F_TRANSFER_ENCODING;
        }
        break;
    default:
        break;
    }
    return F_OTHER;
}

/* The first byte at or after s that may not appear in a header value or
 * reason phrase: a control byte other than HTAB, or DEL. On a good line that
 * is its CR or LF. Little-endian machines test 8 bytes at a time; the block
 * in hbuf ends with a NUL (a stopping byte) followed by HBUF_PAD bytes, so
 * every word read lies inside the allocation. */
static inline const char *value_end(const char *s)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    for (;;) {
        uint64_t x = load8(s);
        uint64_t d = x ^ (0x7f * ones);
        /* high bit of byte i set if byte i < 0x20 (lo) or == 0x7f (del). A
         * borrow can only flag bytes above a truly flagged one, so the lowest
         * flag is exact; HTAB is flagged too and stepped over. */
        uint64_t lo = (x - 0x20 * ones) & ~x & high;
        uint64_t del = (d - ones) & ~d & high;
        uint64_t m = lo | del;
        if (!m) {
            s += 8;
            continue;
        }
        s += __builtin_ctzll(m) / 8;
        if (*s != '\t')
            return s;
        s++;
    }
#else
    /* visible ASCII, SP, HTAB and obs-text */
    static const bool value_ok[256] = {
        ['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
    };
    while (value_ok[(unsigned char)*s])
        s++;
    return s;
#endif
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
    if (n == 5 && sl_http_token_ieq(t, "close", 5))
        c->close = true;
    else if (n == 10 && sl_http_token_ieq(t, "keep-alive", 10))
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
    c->chunked_last = n == 7 && sl_http_token_ieq(t, "chunked", 7);
}

/* Parses the header block at hbuf (hlen bytes there, then a NUL and
 * HBUF_PAD zero bytes); base is the response offset of hbuf[0]. The block ends
 * at the first empty line after the status line; *blen is set to its length
 * (with that line). Bytes after it are not looked at, except as bytes that do
 * not match (known_field). Outside head_try the whole of hbuf is the block.
 * On a final response fills ev and sets up body framing.
 * Each byte is looked at about once: a field the parser reads is recognised
 * whole by known_field; any other name is scanned for tchars up to its ':';
 * a value is scanned for allowed bytes up to its line end. CR, LF and NUL
 * stop both scans, so they stay inside the line, or (in head_try) stop at the
 * NUL after the bytes copied, which is never a good line end: the parse then
 * fails and head_try falls back. */
static int parse_block(sl_h1p *p, size_t hlen, uint64_t base, sl_h1p_event *ev, bool *final,
                       size_t *blen)
{
    char *b = p->hbuf;
    /* status line: HTTP/1.x SP 3DIGIT [SP reason]. Its end le is usually the
     * first byte value_end stops at, searched from the reason phrase when the
     * 12 bytes before it have the right shape (then none is a control byte);
     * if it stops at another control byte, the line end is found by LF and
     * the bytes are checked one by one below. b[0..12) may be read: the
     * block holds at least two LFs, and in head_try the padding follows. */
    bool shaped = memcmp(b, "HTTP/1.", 7) == 0 && (b[7] == '0' || b[7] == '1') && b[8] == ' ' &&
                  b[9] >= '0' && b[9] <= '9' && b[10] >= '0' && b[10] <= '9' && b[11] >= '0' &&
                  b[11] <= '9';
    char *le = (char *)value_end(shaped ? b + 12 : b), *line;
    bool clean = true; /* no control byte before le */
    if (*le == '\n') {
        line = le + 1;
    } else if (*le == '\r' && le[1] == '\n') {
        line = le + 2;
    } else {
        char *nl = memchr(b, '\n', hlen);
        if (!nl) /* only in head_try: the status line is not all there */
            return fail(p, base, "bad status line (want HTTP/1.0 or HTTP/1.1)");
        le = nl > b && nl[-1] == '\r' ? nl - 1 : nl;
        line = nl + 1;
        clean = false;
    }
    size_t ll = (size_t)(le - b);
    if (!shaped) {
        if (ll < 12 || memcmp(b, "HTTP/1.", 7) != 0 || (b[7] != '0' && b[7] != '1') || b[8] != ' ')
            return fail(p, base, "bad status line (want HTTP/1.0 or HTTP/1.1)");
        for (int i = 9; i < 12; i++)
            if (b[i] < '0' || b[i] > '9')
                return fail(p, base + (uint64_t)i, "bad status code");
    }
    int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (status < 100 || (ll > 12 && b[12] != ' '))
        return fail(p, base + 9, "bad status code");
    for (size_t i = 12; !clean && i < ll; i++) {
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
    for (;;) {
        uint64_t at = base + (uint64_t)(line - b);
        if (line[0] == '\n' || (line[0] == '\r' && line[1] == '\n')) {
            *blen = (size_t)(line - b) + (line[0] == '\r' ? 2 : 1);
            break; /* the empty line ending the block */
        }
        if (*line == ' ' || *line == '\t')
            return fail(p, at, "obsolete line folding in header");
        if (++nfields > SL_H1P_MAX_HEADERS)
            return fail(p, at, "too many header fields");
        size_t name_len = 0;
        int field = known_field(line, &name_len);
        if (field == F_OTHER) {
            /* name: tchars up to ':' (CR, LF and NUL are not tchars) */
            char *colon = line;
            while (sl_http_tchar[(unsigned char)*colon])
                colon++;
            if (*colon != ':' || colon == line) {
                if (*colon == ':' || *colon == '\n' || (*colon == '\r' && colon[1] == '\n'))
                    return fail(p, at, "header line without a name and ':'");
                return fail(p, base + (uint64_t)(colon - b), "bad header name");
            }
            name_len = (size_t)(colon - line);
        }
        char *v = line + name_len + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *lend = (char *)value_end(v); /* the CR of CRLF or a bare LF, if the line is good */
        if (*lend != '\n' && !(*lend == '\r' && lend[1] == '\n'))
            return fail(p, base + (uint64_t)(lend - b), "control byte in header value");
        char *next = lend + (*lend == '\r' ? 2 : 1);
        char *ve = lend;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        *ve = 0; /* ve <= lend: the value is now a C string */
        switch (field) {
        case F_CONNECTION:
            for_tokens(v, conn_token, &conn);
            break;
        case F_RETRY_AFTER:
            if (!retry)
                retry = v;
            break;
        case F_CONTENT_TYPE:
            if (!ctype)
                ctype = v;
            break;
        case F_CONTENT_LENGTH: {
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
            break;
        }
        case F_TRANSFER_ENCODING:
            have_te = true;
            for_tokens(v, te_token, &te);
            break;
        default:
            break;
        }
        line = next;
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

/* "1a2b[ ;ext...]" in s[0..len), the line without its line end (in hbuf or
 * in the caller's buffer); at: the line's response offset. */
static int parse_chunk_size(sl_h1p *p, const char *s, size_t len, uint64_t at)
{
    const char *e = s + len;
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

/* 1 + the value of each hex digit; 0 for any other byte. */
static const uint8_t hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
    ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16,
};

/* The usual chunk-size line, 1 to 15 hex digits and CRLF or LF (no
 * extension, no blanks), read straight from s[0..n): returns its length with
 * the line end and sets *size, or returns 0 when the line is anything else or
 * is not all in s[0..n); then the general way (memchr, parse_chunk_size) runs
 * and words any error. 15 hex digits cannot pass MAX_CHUNK_SIZE (2^60). */
static size_t chunk_line_plain(const char *s, size_t n, uint64_t *size)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && i < 15; i++) {
        unsigned d = hex1[(unsigned char)s[i]];
        if (!d)
            break;
        v = v * 16 + (d - 1);
    }
    if (i == 0 || i == n)
        return 0;
    if (s[i] == '\n') {
        *size = v;
        return i + 1;
    }
    if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
        *size = v;
        return i + 2;
    }
    return 0;
}

/* Reads bytes up to and including the next LF into hbuf, which holds only
 * the current line (bounded by cap; too long fails at the line's start).
 * Returns 0 with *line_done, or an error. *pos advances over what it took. */
static int take_line(sl_h1p *p, const char *buf, size_t n, size_t *pos, size_t cap,
                     const char *too_long, bool *line_done)
{
    const char *s = buf + *pos;
    size_t avail = n - *pos;
    const char *nl = memchr(s, '\n', avail);
    size_t take = nl ? (size_t)(nl - s) + 1 : avail;
    int rc = hbuf_append(p, s, take, cap, p->offset - p->hlen, too_long);
    if (rc)
        return rc;
    *pos += take;
    p->offset += take;
    *line_done = nl != NULL;
    return 0;
}

/* ST_HEAD: takes the bytes of buf[0..n) up to and including the empty line
 * that ends the header block (*complete) or, if it is not there yet, all of
 * them, into hbuf with one copy; *took says how many. Lines are found with
 * memchr; hbuf[line_start..hlen) is the unfinished line of earlier feeds.
 * Fails, before taking anything, where the block would pass
 * SL_H1P_MAX_HEADER_BYTES (naming the start of the line that crosses it) or
 * when it starts with an empty line. */
static int head_take(sl_h1p *p, const char *buf, size_t n, size_t *took, bool *complete)
{
    const uint64_t base = p->offset - p->hlen; /* response offset of hbuf[0] */
    size_t ls = p->line_start;                 /* block offset of the current line */
    size_t q = 0;                              /* feed offset where its LF is looked for */
    size_t take = n;
    *took = 0;
    *complete = false;
    for (;;) {
        const char *nl = memchr(buf + q, '\n', n - q);
        size_t end = nl ? (size_t)(nl - buf) + 1 : n; /* feed bytes through this line */
        if (end > SL_H1P_MAX_HEADER_BYTES - p->hlen)
            return fail(p, base + ls, "response header block too large");
        if (!nl)
            break;
        size_t next = p->hlen + end; /* block offset after this line's LF */
        size_t ll = next - ls;       /* line length with its LF */
        if (ll <= 2) {
            /* the line's first byte: in hbuf if the line began in an earlier feed */
            char first = ls < p->hlen ? p->hbuf[ls] : buf[ls - p->hlen];
            if (ll == 1 || first == '\r') {
                if (ls == 0)
                    return fail(p, base, "empty status line");
                take = end;
                *complete = true;
                break;
            }
        }
        ls = next;
        q = end;
    }
    int rc = hbuf_append(p, buf, take, SL_H1P_MAX_HEADER_BYTES, base + ls,
                         "response header block too large");
    if (rc)
        return rc;
    p->line_start = ls;
    p->offset += take;
    *took = take;
    return 0;
}

/* The fast way through a header block that starts at buf[0] (hlen == 0):
 * copies up to HEAD_TRY_BYTES of the feed to hbuf (one memcpy), pads it, and
 * parses that as a block, so the block is read once instead of twice (once
 * for its end, once to parse it). If the parse finds the block's empty line
 * without an error, the result is what head_take + parse_block would give:
 * parse_block looks at no byte after the block, and HEAD_TRY_BYTES is below
 * the cap. Returns 0 (*took: the block's bytes, now consumed), SL_ENOMEM, or 1
 * when the block is not all there or is malformed: then nothing was consumed,
 * the parser is as before, and the slow way runs (and words any error). */
static int head_try(sl_h1p *p, const char *buf, size_t n, sl_h1p_event *ev, bool *final,
                    size_t *took)
{
    size_t k = n < HEAD_TRY_BYTES ? n : HEAD_TRY_BYTES;
    int rc = hbuf_append(p, buf, k, SL_H1P_MAX_HEADER_BYTES, p->offset, "");
    if (rc)
        return rc;
    memset(p->hbuf + k, 0, 1 + HBUF_PAD);
    p->state = ST_HEAD_TRY; /* fail() only returns the code */
    size_t blen = 0;
    rc = parse_block(p, k, p->offset, ev, final, &blen);
    p->hlen = 0;
    if (p->state == ST_HEAD_TRY)
        p->state = ST_HEAD; /* failed, or a 1xx block: the next block starts */
    if (rc)
        return 1;
    p->offset += blen;
    *took = blen;
    return 0;
}

/* After a chunk's last data byte: consumes its CR LF (or bare LF) as far as
 * those bytes are in s[0..n), so that the BODY event ending a chunk also takes
 * the framing after it (one step per chunk, not two). Any other byte is left
 * for the next step, which reports it at the same offset as before. Returns
 * the bytes consumed. */
static size_t chunk_crlf(sl_h1p *p, const char *s, size_t n)
{
    size_t k = 0;
    if (k < n && s[k] == '\r') {
        k++;
        p->state = ST_CHUNK_LF;
    }
    if (k < n && s[k] == '\n') {
        k++;
        p->state = ST_CHUNK_SIZE;
        p->hlen = 0;
    }
    p->offset += k;
    return k;
}

/* sl_h1p_step with at least one byte given. Not inlined, so that the calls
 * with none stay cheap. */
__attribute__((noinline)) static int step_bytes(sl_h1p *p, const char *buf, size_t n, bool body_ok, size_t *used,
                      sl_h1p_event *ev)
{
    size_t pos = 0;
    int rc = 0;
    if (p->state != ST_DONE)
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
                if (p->remaining == 0 && p->state == ST_BODY_LEN) {
                    p->state = ST_DONE;
                } else if (p->remaining == 0) {
                    p->state = ST_CHUNK_CR;
                    pos += chunk_crlf(p, buf + pos, n - pos);
                }
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
        if (p->state == ST_HEAD && p->hlen == 0) {
            size_t took = 0;
            bool final = false;
            rc = head_try(p, buf + pos, n - pos, ev, &final, &took);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                pos += took;
                if (final) {
                    *used = pos;
                    return 0;
                }
                continue;
            }
        }
        if (p->state == ST_HEAD) {
            size_t took = 0;
            bool complete = false;
            rc = head_take(p, buf + pos, n - pos, &took, &complete);
            if (rc)
                return rc;
            pos += took;
            if (!complete)
                continue; /* pos == n */
            memset(p->hbuf + p->hlen, 0, 1 + HBUF_PAD); /* NUL, then the padding */
            bool final = false;
            size_t blen = 0;
            rc = parse_block(p, p->hlen, p->offset - p->hlen, ev, &final, &blen);
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
            uint64_t at = p->offset - p->hlen; /* the line's start */
            const char *s = buf + pos;
            size_t avail = n - pos;
            const char *nl = NULL;
            size_t plain = 0;
            /* A whole line in this feed (the usual case) is parsed in place:
             * a plain one in one pass, any other after memchr found its end.
             * That search is bounded by the cap, so a line found fits it. */
            if (p->hlen == 0 && (plain = chunk_line_plain(s, avail, &p->remaining)) > 0) {
                pos += plain;
                p->offset += plain;
            } else if (p->hlen == 0 &&
                       (nl = memchr(s, '\n',
                                    avail < SL_H1P_MAX_CHUNK_LINE ? avail : SL_H1P_MAX_CHUNK_LINE))) {
                size_t len = (size_t)(nl - s);
                if (len > 0 && s[len - 1] == '\r')
                    len--;
                rc = parse_chunk_size(p, s, len, at);
                if (rc)
                    return rc;
                pos += (size_t)(nl - s) + 1;
                p->offset += (uint64_t)(nl - s) + 1;
            } else {
                rc = take_line(p, buf, n, &pos, SL_H1P_MAX_CHUNK_LINE, "chunk-size line too long",
                               &line_done);
                if (rc)
                    return rc;
                if (!line_done)
                    continue;
                p->hlen--; /* drop LF */
                if (p->hlen > 0 && p->hbuf[p->hlen - 1] == '\r')
                    p->hlen--;
                rc = parse_chunk_size(p, p->hbuf, p->hlen, at);
                if (rc)
                    return rc;
                p->hlen = 0;
            }
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

int sl_h1p_step(sl_h1p *p, const char *buf, size_t n, bool body_ok, size_t *used, sl_h1p_event *ev)
{
    ev->kind = SL_H1P_NEED_MORE;
    *used = 0;
    if (p->state == ST_ERROR)
        return SL_EUPSTREAM;
    /* No bytes: nothing can happen but the end already reached (a body state
     * with nothing to take is NEED_MORE, not BLOCKED). Callers make this call
     * after every read, so it is kept short. */
    if (n == 0) {
        if (p->state == ST_DONE)
            ev->kind = SL_H1P_DONE;
        return 0;
    }
    return step_bytes(p, buf, n, body_ok, used, ev);
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
