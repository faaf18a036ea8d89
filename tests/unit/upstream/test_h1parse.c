/* The HTTP/1.1 response parser of the built-in client. Every case is fed
 * whole, one byte at a time and in every two-piece split (when short); each
 * way must give the same result (the event sequence with body runs merged,
 * and the error message with its byte offset), which is then checked against
 * the expected status, headers, body, keep-alive and leftover bytes (or
 * error). Fed whole, a header block goes the parser's one-copy way; cut, it
 * goes line by line, so the comparisons check one way against the other. */
#include "test.h"
#include "upstream/h1parse.h"

#include <stdlib.h>

#include "core/core.h"

typedef struct result {
    int rc; /* 0 or the error */
    int n_headers;
    int status;
    char ctype[128], retry[64];
    char *body;
    size_t body_len;
    bool done, keep_alive;
    size_t leftover; /* bytes after the end of the response */
    char err[160];
    /* the events in order: "H<status>" per HEADERS, "B" per run of BODY
     * events, "D" for DONE, "E" for an error */
    char trace[64];
    size_t trace_len;
} result;

static void trace_add(result *r, const char *t)
{
    size_t n = strlen(t);
    if (r->trace_len + n < sizeof r->trace) {
        memcpy(r->trace + r->trace_len, t, n + 1);
        r->trace_len += n;
    }
}

static void result_free(result *r) { free(r->body); }

/* Feeds resp[0..n) cut at cuts[0..ncuts); eof: the peer closes after the last byte. */
static void run_pieces(const char *resp, size_t n, const size_t *cuts, size_t ncuts, bool head,
                       bool eof, result *r)
{
    memset(r, 0, sizeof *r);
    r->body = malloc(n + 1);
    sl_h1p p = {0};
    sl_h1p_reset(&p, head);
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && !r->done && !r->rc; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        size_t pos = 0, len = end - at;
        for (;;) {
            sl_h1p_event ev;
            size_t used = 0;
            r->rc = sl_h1p_step(&p, resp + at + pos, len - pos, true, &used, &ev);
            pos += used;
            if (r->rc) {
                trace_add(r, "E");
                break;
            }
            if (ev.kind == SL_H1P_HEADERS) {
                char t[16];
                snprintf(t, sizeof t, "H%d", ev.status);
                trace_add(r, t);
                r->n_headers++;
                r->status = ev.status;
                snprintf(r->ctype, sizeof r->ctype, "%s", ev.content_type ? ev.content_type : "-");
                snprintf(r->retry, sizeof r->retry, "%s", ev.retry_after ? ev.retry_after : "-");
            } else if (ev.kind == SL_H1P_BODY) {
                if (ev.len == 0 || ev.data < resp + at || ev.data + ev.len > resp + end)
                    abort(); /* body must point into the piece fed */
                memcpy(r->body + r->body_len, ev.data, ev.len);
                r->body_len += ev.len;
                if (r->trace_len == 0 || r->trace[r->trace_len - 1] != 'B')
                    trace_add(r, "B");
            } else if (ev.kind == SL_H1P_DONE) {
                trace_add(r, "D");
                r->done = true;
                r->leftover = n - (at + pos);
                break;
            } else if (ev.kind == SL_H1P_NEED_MORE) {
                if (pos != len)
                    abort();
                break;
            } else {
                abort(); /* BLOCKED with body_ok */
            }
        }
        at = end;
    }
    if (!r->done && !r->rc && eof) {
        r->rc = sl_h1p_eof(&p, &r->done);
        trace_add(r, r->rc ? "E" : "D");
    }
    r->body[r->body_len] = 0;
    r->keep_alive = p.keep_alive;
    snprintf(r->err, sizeof r->err, "%s", p.err);
    sl_h1p_free(&p);
}

static bool same(const result *a, const result *b)
{
    return a->rc == b->rc && a->n_headers == b->n_headers && a->status == b->status &&
           strcmp(a->ctype, b->ctype) == 0 && strcmp(a->retry, b->retry) == 0 &&
           a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0 &&
           a->done == b->done && a->keep_alive == b->keep_alive && a->leftover == b->leftover &&
           strcmp(a->err, b->err) == 0 && strcmp(a->trace, b->trace) == 0;
}

/* Parses resp every way; *out is the whole-feed result (free with result_free). */
static void parse_all(const char *resp, size_t n, bool head, bool eof, result *out)
{
    run_pieces(resp, n, NULL, 0, head, eof, out);
    size_t *cuts = malloc((n ? n : 1) * sizeof *cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i;
    result r;
    run_pieces(resp, n, cuts, n, head, eof, &r); /* 1 byte at a time */
    if (!same(out, &r))
        T_FAIL_AT("byte-at-a-time differs for \"%.40s\": rc %d/%d body %zu/%zu trace %s/%s err "
                  "\"%s\"/\"%s\"",
                  resp, out->rc, r.rc, out->body_len, r.body_len, out->trace, r.trace, out->err,
                  r.err);
    result_free(&r);
    for (size_t c = 1; n <= 2048 && c < n; c++) {
        run_pieces(resp, n, &c, 1, head, eof, &r);
        if (!same(out, &r))
            T_FAIL_AT("split at %zu differs for \"%.40s\": rc %d/%d trace %s/%s err \"%s\"/\"%s\"",
                      c, resp, out->rc, r.rc, out->trace, r.trace, out->err, r.err);
        result_free(&r);
    }
    free(cuts);
}

static void expect_response(const char *resp, bool head, bool eof, int status, const char *ctype,
                            const char *body, bool keep_alive, size_t leftover)
{
    result r;
    parse_all(resp, strlen(resp), head, eof, &r);
    EXPECT_EQ_INT(r.rc, 0);
    if (r.rc)
        fprintf(stderr, "  error: %s\n", r.err);
    EXPECT_EQ_INT(r.n_headers, 1);
    EXPECT_EQ_INT(r.status, status);
    EXPECT_EQ_STR(r.ctype, ctype);
    EXPECT_EQ_STR(r.body, body);
    EXPECT(r.done);
    EXPECT_EQ_INT(r.keep_alive, keep_alive);
    EXPECT_EQ_UINT(r.leftover, leftover);
    result_free(&r);
}

static void expect_error(const char *resp, size_t n, bool eof, const char *msg_part)
{
    result r;
    parse_all(resp, n, false, eof, &r);
    EXPECT_EQ_INT(r.rc, SL_EUPSTREAM);
    EXPECT(!r.done);
    EXPECT_CONTAINS(r.err, msg_part);
    result_free(&r);
}

#define ERR(resp, msg) expect_error((resp), strlen(resp), false, (msg))

static void test_content_length(void)
{
    expect_response("HTTP/1.1 200 OK\r\nContent-Type:  application/json \r\nContent-Length: 5\r\n\r\nhello",
                    false, false, 200, "application/json", "hello", true, 0);
    /* the same length twice is fine; no reason phrase is fine */
    expect_response("HTTP/1.1 201\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok", false, false,
                    201, "-", "ok", true, 0);
    /* bytes after the response are left alone */
    expect_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", false, false, 200, "-", "ok",
                    true, 4);
    expect_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, 200, "-", "", true, 0);
    /* bare LF line ends */
    expect_response("HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", false, false, 200, "-", "abc", true, 0);
}

static void test_retry_after_value(void)
{
    result r;
    const char *s = "HTTP/1.1 429 Slow Down\r\nRetry-After:   17  \r\nContent-Length: 0\r\n\r\n";
    parse_all(s, strlen(s), false, false, &r);
    EXPECT_EQ_INT(r.rc, 0);
    EXPECT_EQ_INT(r.status, 429);
    EXPECT_EQ_STR(r.retry, "17");
    result_free(&r);
}

static void test_chunked(void)
{
    expect_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
                    "5;a=b;c=\"d e\"\r\nhello\r\n6 ;x\r\n world\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                    "0;fin\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
                    false, false, 200, "text/event-stream", "hello worldabcdefghijklmnopqrstuvwxyz",
                    true, 0);
    expect_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\nNEXT", false, false,
                    200, "-", "", true, 4);
    expect_response("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nab\n0\n\n", false, false, 200,
                    "-", "ab", true, 0);
}

static void test_interim_responses_skipped(void)
{
    expect_response("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                    false, false, 200, "-", "hi", true, 0);
}

static void test_close_delimited_and_versions(void)
{
    expect_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", false, true, 200,
                    "text/plain", "until close", false, 0);
    /* without the close it is not done */
    result r;
    const char *s = "HTTP/1.1 200 OK\r\n\r\nabc";
    parse_all(s, strlen(s), false, false, &r);
    EXPECT_EQ_INT(r.rc, 0);
    EXPECT(!r.done);
    EXPECT_EQ_STR(r.body, "abc");
    result_free(&r);
    expect_response("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", false, false, 200, "-", "old",
                    false, 0);
    expect_response("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nka", false,
                    false, 200, "-", "ka", true, 0);
    expect_response("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
                    false, false, 200, "-", "ok", false, 0);
    expect_response("HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok", false,
                    false, 200, "-", "ok", true, 0);
}

static void test_no_body_responses(void)
{
    expect_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, false, 200, "-", "", true, 0);
    expect_response("HTTP/1.1 204 No Content\r\n\r\nX", false, false, 204, "-", "", true, 1);
    expect_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", false, false, 304, "-",
                    "", true, 0);
}

static void test_framing_errors(void)
{
    ERR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "conflicting Content-Length");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "invalid Content-Length");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", "invalid Content-Length");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "empty Content-Length");
    ERR("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "Content-Length too large");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "unsupported Transfer-Encoding");
}

static void test_header_errors(void)
{
    ERR("HTTP/1.1 200 OK\r\nX-A: one\r\n  folded\r\nContent-Length: 0\r\n\r\n", "obsolete line folding");
    ERR("HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", "without a name");
    ERR("HTTP/1.1 200 OK\r\n: value\r\n\r\n", "without a name");
    ERR("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad header name");
    ERR("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", "control byte");
    ERR("HTTP/2 200 OK\r\n\r\n", "bad status line");
    ERR("ICY 200 OK\r\n\r\n", "bad status line");
    ERR("HTTP/1.1 20 OK\r\n\r\n", "bad status code");
    ERR("HTTP/1.1 2000 OK\r\n\r\n", "bad status code");
    ERR("HTTP/1.1 099 Low\r\n\r\n", "bad status code");
    ERR("\r\nHTTP/1.1 200 OK\r\n\r\n", "empty status line");
    ERR("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "101");
    const char nul[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n";
    expect_error(nul, sizeof nul - 1, false, "control byte");
}

static void test_chunk_errors(void)
{
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n", "bad chunk size");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "bad chunk size");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", "chunk size too large");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", "not followed by CRLF");
    ERR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n", "bad chunk extension");
}

/* Builds "HTTP/1.1 200 OK\r\n" + fields + tail into a malloc'ed string. */
static char *big_response(int fields, size_t value_len, const char *tail)
{
    size_t cap = 64 + (size_t)fields * (value_len + 32) + strlen(tail);
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < fields; i++) {
        n += (size_t)snprintf(s + n, cap - n, "X-F%d: ", i);
        memset(s + n, 'v', value_len);
        n += value_len;
        n += (size_t)snprintf(s + n, cap - n, "\r\n");
    }
    snprintf(s + n, cap - n, "%s", tail);
    return s;
}

static void test_limits(void)
{
    /* header block: just under the cap parses, just over fails */
    char *s = big_response(63, 1000, "Content-Length: 0\r\n\r\n");
    result r;
    parse_all(s, strlen(s), false, false, &r);
    EXPECT_EQ_INT(r.rc, 0);
    EXPECT(r.done);
    result_free(&r);
    free(s);
    s = big_response(66, 1000, "Content-Length: 0\r\n\r\n");
    EXPECT(strlen(s) > SL_H1P_MAX_HEADER_BYTES);
    expect_error(s, strlen(s), false, "header block too large");
    free(s);
    s = big_response(SL_H1P_MAX_HEADERS, 1, "\r\n");
    parse_all(s, strlen(s), false, true, &r);
    EXPECT_EQ_INT(r.rc, 0);
    result_free(&r);
    free(s);
    s = big_response(SL_H1P_MAX_HEADERS + 1, 1, "\r\n");
    expect_error(s, strlen(s), false, "too many header fields");
    free(s);
    /* chunk-size line with a long extension */
    size_t n = 100 + SL_H1P_MAX_CHUNK_LINE;
    s = malloc(n + 64);
    int k = snprintf(s, n, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(s + k, 'e', SL_H1P_MAX_CHUNK_LINE);
    strcpy(s + k + SL_H1P_MAX_CHUNK_LINE, "\r\na\r\n0\r\n\r\n");
    expect_error(s, strlen(s), false, "chunk-size line too long");
    free(s);
    /* trailers */
    n = 200 + SL_H1P_MAX_TRAILER_BYTES;
    s = malloc(n);
    k = snprintf(s, n, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; (size_t)k < SL_H1P_MAX_TRAILER_BYTES + 60; i++)
        k += snprintf(s + k, n - (size_t)k, "X-T%d: tttttttttttttttttttttttttt\r\n", i);
    strcpy(s + k, "\r\n");
    expect_error(s, strlen(s), false, "trailers too large");
    free(s);
}

/* Parses s every way and checks the values a response's head yields. */
static void expect_head(const char *s, int status, const char *ctype, const char *retry,
                        const char *body, bool keep_alive)
{
    result r;
    parse_all(s, strlen(s), false, false, &r);
    EXPECT_EQ_INT(r.rc, 0);
    if (r.rc)
        fprintf(stderr, "  error: %s\n", r.err);
    EXPECT_EQ_STR(r.trace, body[0] ? "H200BD" : "H200D");
    EXPECT_EQ_INT(r.status, status);
    EXPECT_EQ_STR(r.ctype, ctype);
    EXPECT_EQ_STR(r.retry, retry);
    EXPECT_EQ_STR(r.body, body);
    EXPECT_EQ_INT(r.keep_alive, keep_alive);
    result_free(&r);
}

/* A head like a real LLM API's: many fields, the ones the parser reads in odd
 * case and among near misses, long values, HTAB and obs-text in values. */
static void test_realistic_head(void)
{
    expect_head("HTTP/1.1 200 OK\r\n"
                "date: Sat, 21 Nov 2026 13:00:00 GMT\r\n"
                "Content-Typo: no/thing\r\n"
                "CONTENT-TYPE:\tapplication/json; charset=utf-8 \t\r\n"
                "transfer-ENCODING: Chunked\r\n"
                "connection: KEEP-ALIVE\r\n"
                "openai-organization: org-abcdefghijklmnopqrstuvwxyz\r\n"
                "openai-processing-ms: 1234\r\n"
                "x-request-id: req_0123456789abcdef0123456789abcdef\r\n"
                "RETRY-AFTER: 3\r\n"
                "server: caf\xc3\xa9\tb\r\n"
                "x-empty:\r\n"
                "content-type: second/ignored\r\n"
                "retry-after: 99\r\n"
                "\r\n"
                "7\r\n{\"a\":1}\r\n0\r\n\r\n",
                200, "application/json; charset=utf-8", "3", "{\"a\":1}", true);
}

/* Each field the parser reads is recognised in any letter case; names that
 * are near misses are other fields; and bytes that a blind | 0x20 would fold
 * onto '-' (CR) or ':' (0x1a) do not make a known name. */
static void test_field_names_any_case(void)
{
    expect_head("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 3\r\nCONTENT-type: a/b\r\n\r\nxyz", 200, "a/b", "-",
                "xyz", true);
    expect_head("HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: cHuNkEd\r\n\r\n1\r\nq\r\n0\r\n\r\n", 200, "-",
                "-", "q", true);
    expect_head("HTTP/1.1 200 OK\r\ncOnNeCtIoN: CLOSE\r\nContent-Length: 1\r\n\r\nz", 200, "-", "-",
                "z", false);
    expect_head("HTTP/1.1 200 OK\r\nCONNECTION: Keep-Alive, cLoSe\r\nContent-Length: 1\r\n\r\nz", 200,
                "-", "-", "z", false);
    expect_head("HTTP/1.1 200 OK\r\nrEtRy-AfTeR: 9\r\nContent-Length: 0\r\n\r\n", 200, "-", "9", "",
                true);
    /* near misses carry no framing: the body runs to the close */
    const char *miss[] = {"Content-Lengthy", "Content_Length", "X-Content-Length", "Content-Lengt",
                          "ContentXLength", "Transfer-Encodin", "Transfer-Encodings", "Connectio"};
    for (size_t i = 0; i < sizeof miss / sizeof *miss; i++) {
        char s[128];
        snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\n%s: 3\r\nContent-Typ: x/y\r\n\r\nabcdef", miss[i]);
        expect_response(s, false, true, 200, "-", "abcdef", false, 0);
    }
    result r;
    const char *cr = "HTTP/1.1 200 OK\r\nContent\rLength: 3\r\n\r\nabc";
    parse_all(cr, strlen(cr), false, false, &r);
    EXPECT_EQ_INT(r.rc, SL_EUPSTREAM);
    EXPECT_CONTAINS(r.err, "at byte 24: bad header name");
    result_free(&r);
    const char *sub = "HTTP/1.1 200 OK\r\nContent-Length\x1a 3\r\n\r\nabc";
    parse_all(sub, strlen(sub), false, false, &r);
    EXPECT_EQ_INT(r.rc, SL_EUPSTREAM);
    EXPECT_CONTAINS(r.err, "at byte 31: bad header name");
    result_free(&r);
    const char *te = "HTTP/1.1 200 OK\r\nTransfer\rEncoding: chunked\r\n\r\n0\r\n\r\n";
    parse_all(te, strlen(te), false, false, &r);
    EXPECT_CONTAINS(r.err, "at byte 25: bad header name");
    result_free(&r);
}

/* Line ends of bare LF, alone or mixed with CRLF, in heads and 1xx blocks;
 * a CR that is not followed by LF ends nothing. */
static void test_bare_lf_heads(void)
{
    expect_head("HTTP/1.1 200 OK\nContent-Type: t/p \t\nContent-Length: 2\n\nhi", 200, "t/p", "-", "hi",
                true);
    expect_head("HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nhi", 200, "-", "-", "hi", true);
    expect_head("HTTP/1.1 200 OK\nContent-Length: 2\r\n\nhi", 200, "-", "-", "hi", true);
    expect_head("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nRetry-After: 1\nContent-Length: 1\n\nx", 200,
                "-", "1", "x", true);
    expect_head("HTTP/1.1 200\nContent-Length: 0\n\n", 200, "-", "-", "", true);
    result r;
    const char *lone = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\rx\r\n\r\nz";
    parse_all(lone, strlen(lone), false, false, &r);
    EXPECT_CONTAINS(r.err, "at byte 36: bad header name");
    result_free(&r);
    const char *ctl = "HTTP/1.1 200 OK\nX-A: a\r\r\n\n";
    parse_all(ctl, strlen(ctl), false, false, &r);
    EXPECT_CONTAINS(r.err, "at byte 22: control byte in header value");
    result_free(&r);
    const char *reason = "HTTP/1.1 200 O\x01K\nContent-Length: 0\n\n";
    parse_all(reason, strlen(reason), false, false, &r);
    EXPECT_CONTAINS(r.err, "at byte 14: control byte in status line");
    result_free(&r);
    ERR("\nHTTP/1.1 200 OK\n\n", "at byte 0: empty status line");
}

/* Chunk-size lines with extensions, odd hex, bare LF, every split; errors
 * name the line's start (or the stray byte) whichever way the bytes come. */
static void test_chunk_lines(void)
{
    expect_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "00A;name=\"va;l\"\r\n0123456789\r\n"
                "b\t;x\r\nhello world\r\n"
                "1;a=b;c=d\n!\n"
                "0000;last\r\nTrailer-A: 1\r\n\r\n",
                200, "-", "-", "0123456789hello world!", true);
    const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"; /* 47 bytes */
    char s[256];
    snprintf(s, sizeof s, "%s5\r\nhello\r\nzz\r\n", h);
    ERR(s, "at byte 57: bad chunk size");
    snprintf(s, sizeof s, "%s3\r\nabc\rx", h);
    ERR(s, "at byte 54: chunk data not followed by CRLF");
    snprintf(s, sizeof s, "%s3\r\nabcx", h);
    ERR(s, "at byte 53: chunk data not followed by CRLF");
    snprintf(s, sizeof s, "%s3;a\rb\r\nabc\r\n", h);
    ERR(s, "at byte 47: bad chunk extension");
    /* chunk sizes with many digits: 15 fit, 16 may pass 2^60 */
    snprintf(s, sizeof s, "%s0000000000000001\r\nx\r\n0\r\n\r\n", h);
    expect_response(s, false, false, 200, "-", "x", true, 0);
    snprintf(s, sizeof s, "%s1000000000000001\r\nx\r\n", h);
    ERR(s, "at byte 47: chunk size too large");
    snprintf(s, sizeof s, "%sFFFFFFFFFFFFFFF\r\nabc", h);
    expect_error(s, strlen(s), true, "truncated after 67 bytes");
    /* a chunk-size line of exactly SL_H1P_MAX_CHUNK_LINE bytes (CRLF
     * included) passes; one byte more fails at the line's start */
    for (int extra = 0; extra < 2; extra++) {
        size_t ext = SL_H1P_MAX_CHUNK_LINE - 4 + (size_t)extra; /* "1;" + ext + "\r\n" */
        char *c = malloc(ext + 128);
        int k = snprintf(c, ext + 128, "%s5\r\nhello\r\n1;", h);
        memset(c + k, 'e', ext);
        strcpy(c + k + ext, "\r\n!\r\n0\r\n\r\n");
        if (extra == 0) {
            expect_response(c, false, false, 200, "-", "hello!", true, 0);
        } else {
            expect_error(c, strlen(c), false, "at byte 57: chunk-size line too long");
        }
        free(c);
    }
}

/* Header blocks around the size the parser copies whole from one feed, and
 * at the cap: exactly SL_H1P_MAX_HEADER_BYTES passes, one more byte fails,
 * naming the start of the line that crosses the cap. */
static void test_block_sizes(void)
{
    for (size_t total = 2040; total <= 2056; total++) {
        size_t vlen = total - 17 - 5 - 21; /* status line, "X: " CRLF, CL line and the empty one */
        char *s = malloc(total + 8);
        int k = snprintf(s, total + 8, "HTTP/1.1 200 OK\r\nX: ");
        memset(s + k, 'v', vlen);
        strcpy(s + k + vlen, "\r\nContent-Length: 2\r\n\r\nok");
        EXPECT_EQ_UINT(strlen(s), total + 2);
        expect_response(s, false, false, 200, "-", "ok", true, 0);
        free(s);
    }
    for (int extra = 0; extra < 2; extra++) {
        size_t total = SL_H1P_MAX_HEADER_BYTES + (size_t)extra;
        size_t vlen = total - 17 - 5 - 21;
        char *s = malloc(total + 8);
        int k = snprintf(s, total + 8, "HTTP/1.1 200 OK\r\nX: ");
        memset(s + k, 'v', vlen);
        strcpy(s + k + vlen, "\r\nContent-Length: 2\r\n\r\nok");
        if (extra == 0) {
            expect_response(s, false, false, 200, "-", "ok", true, 0);
        } else {
            char want[64];
            snprintf(want, sizeof want, "at byte %zu: response header block too large", total - 2);
            expect_error(s, strlen(s), false, want);
        }
        free(s);
    }
}

static void test_eof(void)
{
    expect_error("", 0, true, "before sending a response");
    expect_error("HTTP/1.1 200 OK\r\nContent-Le", 27, true, "inside the response headers");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 42, true, "truncated");
    const char *c = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    expect_error(c, strlen(c), true, "truncated");
}

/* body_ok false: framing is consumed, body is not, and the end of the
 * response is still reported. */
static void test_blocked(void)
{
    const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    size_t n = strlen(s), pos = 0, used = 0;
    sl_h1p p = {0};
    sl_h1p_reset(&p, false);
    sl_h1p_event ev;
    EXPECT_EQ_INT(sl_h1p_step(&p, s, n, false, &used, &ev), 0);
    EXPECT_EQ_INT(ev.kind, SL_H1P_HEADERS);
    pos += used;
    EXPECT_EQ_INT(sl_h1p_step(&p, s + pos, n - pos, false, &used, &ev), 0);
    EXPECT_EQ_INT(ev.kind, SL_H1P_BLOCKED);
    EXPECT_EQ_UINT(used, 3); /* "3\r\n" */
    pos += used;
    EXPECT_EQ_INT(sl_h1p_step(&p, s + pos, n - pos, true, &used, &ev), 0);
    EXPECT_EQ_INT(ev.kind, SL_H1P_BODY);
    EXPECT_EQ_UINT(ev.len, 3);
    EXPECT(memcmp(ev.data, "abc", 3) == 0);
    pos += used;
    EXPECT_EQ_INT(sl_h1p_step(&p, s + pos, n - pos, false, &used, &ev), 0);
    EXPECT_EQ_INT(ev.kind, SL_H1P_DONE);
    EXPECT_EQ_UINT(pos + used, n);
    /* errors are sticky */
    sl_h1p_reset(&p, false);
    EXPECT_EQ_INT(sl_h1p_step(&p, "XTTP/1.1 200\r\n\r\n", 16, true, &used, &ev), SL_EUPSTREAM);
    EXPECT_EQ_INT(sl_h1p_step(&p, "HTTP/1.1 200 OK\r\n\r\n", 19, true, &used, &ev), SL_EUPSTREAM);
    sl_h1p_free(&p);
}

int main(void)
{
    RUN(test_content_length);
    RUN(test_retry_after_value);
    RUN(test_chunked);
    RUN(test_interim_responses_skipped);
    RUN(test_close_delimited_and_versions);
    RUN(test_no_body_responses);
    RUN(test_framing_errors);
    RUN(test_header_errors);
    RUN(test_chunk_errors);
    RUN(test_limits);
    RUN(test_eof);
    RUN(test_blocked);
    RUN(test_realistic_head);
    RUN(test_field_names_any_case);
    RUN(test_bare_lf_heads);
    RUN(test_chunk_lines);
    RUN(test_block_sizes);
    return TEST_REPORT();
}
