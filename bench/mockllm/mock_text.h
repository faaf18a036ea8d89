/*
 * mockllm pure helpers: everything the fake upstream computes that does not
 * touch a socket, so that unit tests can check it without a server.
 *
 * It owns the per-request option merge (flags overridden by the request's
 * "mock" object), the deterministic reply text (words of the last user
 * message repeated cyclically), prompt token counting, embedding vectors,
 * JSON string escaping, and a minimal HTTP/1.1 request-head parser plus a
 * chunked body decoder. Nothing here allocates except where noted.
 */
#ifndef SL_MOCK_TEXT_H
#define SL_MOCK_TEXT_H

#include "core/core.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Behaviour of one request. -1 in an integer field means "not set / off". */
typedef struct sl_mock_opts {
    int ttft_ms;       /* delay before the first token, ms */
    double tps;        /* tokens per second; 0 = as fast as possible */
    int tokens;        /* completion length in tokens */
    int status;        /* -1, or an HTTP error status to answer with */
    bool hang;         /* never answer */
    int cut_after;     /* -1, or close the stream after this many token chunks */
    int retry_after;   /* -1, or seconds for a Retry-After header on errors */
} sl_mock_opts;

/* Overrides fields of *o with the keys of the request's "mock" object (may be
 * NULL or not an object: no change). Returns 0, or SL_EINVAL with a message in
 * err (>= 128 bytes) when a key has the wrong type or range. */
int sl_mock_opts_apply(sl_mock_opts *o, const json_t *mock, char *err, size_t err_size);

/* Whitespace-separated words of a text, as slices into it. */
typedef struct sl_mock_words {
    sl_str *w;    /* (n) owned, free with sl_mock_words_free */
    size_t n;
} sl_mock_words;

/* Splits text into words (at most max_words kept). Returns 0 or SL_ENOMEM. */
int sl_mock_words_split(const char *text, size_t len, size_t max_words, sl_mock_words *out);
void sl_mock_words_free(sl_mock_words *w);
/* Returns the number of whitespace-separated words in text. */
size_t sl_mock_count_words(const char *text, size_t len);

/* Returns token i of the reply: word (i mod n), or "mock" when there are none. */
sl_str sl_mock_token(const sl_mock_words *w, size_t i);

/* Appends the reply text of ntokens tokens (space before each but the first)
 * to b. Returns 0 or SL_ETOOBIG/SL_ENOMEM. */
int sl_mock_reply_text(const sl_mock_words *w, size_t ntokens, sl_buf *b);

/* Appends s JSON-escaped (no surrounding quotes) to b. Returns 0 or an error. */
int sl_mock_json_escape(sl_buf *b, const char *s, size_t n);

/* For a chat request: the text of the last message with role "user" (string
 * content, or the text parts of array content, joined by spaces) appended to
 * last_user, and the word count of all message contents in *prompt_words.
 * For a completion request pass messages = NULL and prompt = the "prompt"
 * value (string or array of strings). Returns 0 or SL_EINVAL (err filled). */
int sl_mock_extract_prompt(const json_t *messages, const json_t *prompt, sl_buf *last_user,
                           size_t *prompt_words, char *err, size_t err_size);

/* Fills v (dim floats) with a deterministic unit-norm vector derived from a
 * hash of the bytes p[0..n). dim >= 1. */
void sl_mock_embedding(const void *p, size_t n, int dim, float *v);

/* Appends the standard base64 encoding of p[0..n) to b. */
int sl_mock_base64(sl_buf *b, const void *p, size_t n);

/* ---- HTTP/1.1 request head ---- */
typedef struct sl_mock_http_req {
    sl_str method;
    sl_str path;            /* target without the query string */
    int minor_version;      /* 0 or 1 */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* after this request, per version and Connection */
    bool expect_continue;   /* Expect: 100-continue */
} sl_mock_http_req;

/* Parses the request head at the start of buf. Returns the head length
 * (through the blank line) when complete, 0 when more bytes are needed, or
 * SL_EPARSE (malformed) / SL_ETOOBIG (head longer than max_head). */
int sl_mock_http_parse(const char *buf, size_t len, size_t max_head, sl_mock_http_req *out);

/* Decodes a chunked body from p[0..n) into out (bounded by its max). Returns
 * 1 and sets *consumed (bytes through the final CRLF) when the body is
 * complete, 0 when more bytes are needed, SL_EPARSE on malformed framing, or
 * SL_ETOOBIG. out is reset first. Trailers are skipped. */
int sl_mock_chunked_decode(const char *p, size_t n, sl_buf *out, size_t *consumed);

#endif
