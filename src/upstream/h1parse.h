/*
 * h1parse: incremental, bounded HTTP/1.1 response parser (internal to
 * src/upstream; used by the built-in http:// client in h1client.c).
 *
 * Why our own: the only other HTTP/1 parser linked into Sluice is h2o's, and
 * Debian's libh2o ships no header for its response parser, so the client
 * parses responses itself.
 *
 * Shape: a pull parser. The caller hands it the bytes it has; each step
 * consumes some of them and reports one event: the final headers, a run of
 * body bytes (pointing into the caller's buffer), the end of the response,
 * "need more bytes", or "blocked" (body bytes are next but the caller said it
 * cannot take body now, which is how pausing works). 1xx responses are
 * skipped. Body framing: Content-Length, chunked (extensions and trailers
 * allowed and skipped), or read-until-close. The header block (status line
 * included) is copied into a buffer owned by the parser, capped at
 * SL_H1P_MAX_HEADER_BYTES; trailers and chunk-size lines are bounded too.
 * Anything malformed (obs-fold, bad or conflicting Content-Length, both
 * Content-Length and Transfer-Encoding, a coding other than chunked, bad chunk
 * sizes...) is an SL_EUPSTREAM error with a message naming the byte offset.
 */
#ifndef SL_UPSTREAM_H1PARSE_H
#define SL_UPSTREAM_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_H1P_MAX_HEADER_BYTES (64u << 10) /* one header block, status line included */
#define SL_H1P_MAX_HEADERS 128              /* header fields in one block */
#define SL_H1P_MAX_CHUNK_LINE 4096          /* chunk-size line with extensions, bytes */
#define SL_H1P_MAX_TRAILER_BYTES (64u << 10)

typedef enum {
    SL_H1P_NEED_MORE = 0, /* every byte given was consumed; feed more (or call eof) */
    SL_H1P_HEADERS,       /* final (non-1xx) status and headers are complete */
    SL_H1P_BODY,          /* data/len: body bytes, inside the caller's buffer */
    SL_H1P_BLOCKED,       /* body bytes are next but body_ok was false */
    SL_H1P_DONE,          /* the response ended; bytes after it (if any) were not consumed */
} sl_h1p_kind;

typedef struct sl_h1p_event {
    sl_h1p_kind kind;
    int status;               /* HEADERS: 200..999 */
    const char *content_type; /* HEADERS: NUL-terminated, trimmed, or NULL; valid until the next call */
    const char *retry_after;  /* HEADERS: likewise */
    const char *data;         /* BODY */
    size_t len;               /* BODY: > 0 */
} sl_h1p_event;

typedef struct sl_h1p {
    int state;
    bool head;       /* the request was HEAD: the response has no body */
    bool started;    /* at least one response byte was consumed */
    bool keep_alive; /* known once the final headers are parsed */
    bool close_delimited;
    int version_minor; /* 0 or 1, of the final response */
    int status;
    uint64_t offset;    /* response bytes consumed so far (1xx included) */
    uint64_t remaining; /* body bytes left (Content-Length) or in this chunk */
    char *hbuf;         /* header block, chunk-size line or trailer line being read */
    size_t hlen, hcap;
    size_t line_start;  /* offset in hbuf of the current line */
    size_t trailer_bytes;
    char err[160];      /* last: sl_h1p_reset clears only what precedes it */
} sl_h1p;

/* Prepares p for a response to a request; head: the request method was HEAD.
 * Keeps the header buffer of an earlier response. Never fails. */
void sl_h1p_reset(sl_h1p *p, bool head);
/* Frees the parser's buffer (the struct itself is the caller's). */
void sl_h1p_free(sl_h1p *p);
/* Consumes a prefix of buf[0..n) and reports one event in *ev; *used is the
 * number of bytes consumed. Returns 0, SL_ENOMEM, or SL_EUPSTREAM (malformed
 * response; the message is in p->err and every later call fails the same way).
 * After DONE, further calls return DONE without consuming. */
int sl_h1p_step(sl_h1p *p, const char *buf, size_t n, bool body_ok, size_t *used, sl_h1p_event *ev);
/* The peer closed the connection. Returns 0 with *done set when that ends a
 * close-delimited body (or the response had already ended), else SL_EUPSTREAM
 * with p->err saying what was cut short. */
int sl_h1p_eof(sl_h1p *p, bool *done);

#endif
