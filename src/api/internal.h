/*
 * api internals: what the files of src/api share and nothing outside it (or
 * its tests) may use.
 *
 * 1. Strict JSON lexing for the allocation-free scanners (scan.c for upstream
 *    bodies, fastreq.c for client requests). Each helper accepts only text
 *    that jansson (the full parser) accepts with the same meaning, and returns
 *    SL_EUNSUPPORTED (the sentinel-bounded ones: NULL) for anything else, including text that is valid JSON but
 *    that the scanners leave to the full parser (\u0000, unpaired surrogate
 *    escapes, exponents of 5+ digits). A scanner answers only when every
 *    helper it called succeeded.
 * 2. The two request decoders behind sl_api_decode_request, callable alone so
 *    that tests can hold the fast one to the full one.
 */
#ifndef SL_API_INTERNAL_H
#define SL_API_INTERNAL_H

#include "api/api.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Longest model name accepted; routing keys are short, and the name lands in
 * logs and metrics labels. */
#define SL_API_MODEL_MAX_LEN 256

/* ---- lexing ---- */

typedef struct lex_cur {
    const unsigned char *p, *end;
    int depth; /* open objects and arrays, for callers that track it */
} lex_cur;

/* Four hex digits at p (the caller checked that they are there). */
static inline int lex_hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        unsigned d;
        if (h >= '0' && h <= '9')
            d = h - '0';
        else if (h >= 'a' && h <= 'f')
            d = h - 'a' + 10;
        else if (h >= 'A' && h <= 'F')
            d = h - 'A' + 10;
        else
            return SL_EUNSUPPORTED;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (2..4 bytes, no overlongs,
 * no surrogates, at most U+10FFFF), or 0 when it is not one. */
static inline size_t lex_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char b = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Whether s[0..n) is well-formed UTF-8 (lex_utf8_seq's rules; any ASCII byte
 * but NUL): what json_string accepts for a NUL-terminated string. */
static inline bool lex_utf8_valid(const unsigned char *s, size_t n)
{
    const unsigned char *p = s, *end = s + n;
    while (p < end) {
        if (*p < 0x80) {
            if (!*p)
                return false;
            p++;
            continue;
        }
        size_t k = lex_utf8_seq(p, end);
        if (!k)
            return false;
        p += k;
    }
    return true;
}

/* Bytes that may appear raw inside a string without a closer look: printable
 * ASCII except '"' and '\\'. */
static const bool lex_plain_byte[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5B] = 1, [0x5D ... 0x7F] = 1,
};

/* The first byte at or after p that is not plain (a control byte, '"', '\\'
 * or a byte >= 0x80), or end. Sixteen bytes at a time where SSE2 is there
 * (every x86-64), then eight: the hot loop of both scanners. */
static inline const unsigned char *lex_skip_plain(const unsigned char *p, const unsigned char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* signed compare: bytes >= 0x80 are negative, so below 0x20 too */
        __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                   _mm_cmplt_epi8(x, space));
        unsigned m = (unsigned)_mm_movemask_epi8(bad);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
        /* the high bit of a byte of t is set when the byte is < 0x20, '"', '\\'
         * or >= 0x80, or when a borrow from such a byte below it reaches it;
         * so the lowest set bit marks the first byte that is not plain */
        uint64_t t = ((x - ones * 0x20) | (q - ones) | (bs - ones) | x) & highs;
        if (t)
            return p + (__builtin_ctzll(t) >> 3);
        p += 8;
    }
#endif
    while (p < end && lex_plain_byte[*p])
        p++;
    return p;
}

/* Passes a string (c->p at its opening quote). *raw and *raw_len: the bytes
 * between the quotes; *escaped tells whether a backslash occurs in them.
 * Refuses raw control bytes, invalid UTF-8, unknown escapes, \u0000 and
 * unpaired surrogate escapes; so every accepted string decodes (see
 * lex_decode) to valid UTF-8 without NUL, as jansson decodes it, and is empty
 * exactly when raw_len is 0. */
static inline __attribute__((always_inline)) int lex_string(lex_cur *c, const unsigned char **raw, size_t *raw_len, bool *escaped)
{
    const unsigned char *p = c->p + 1, *end = c->end;
    bool esc = false;
    *raw = p;
    for (;;) {
        p = lex_skip_plain(p, end);
        if (p >= end)
            return SL_EUNSUPPORTED;
        unsigned char b = *p;
        if (b == '"')
            break;
        if (b < 0x20)
            return SL_EUNSUPPORTED;
        if (b < 0x80 && b != '\\') {
            p++;
            continue;
        }
        if (b >= 0x80) {
            size_t n = lex_utf8_seq(p, end);
            if (!n)
                return SL_EUNSUPPORTED;
            p += n;
            continue;
        }
        esc = true;
        if (end - p < 2)
            return SL_EUNSUPPORTED;
        unsigned char e = p[1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            p += 2;
            continue;
        }
        if (e != 'u' || end - p < 6)
            return SL_EUNSUPPORTED;
        unsigned v;
        if (lex_hex4(p + 2, &v))
            return SL_EUNSUPPORTED;
        p += 6;
        if (v == 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return SL_EUNSUPPORTED; /* NUL, or a low surrogate without its high half */
        if (v >= 0xD800 && v <= 0xDBFF) {
            unsigned lo;
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || lex_hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return SL_EUNSUPPORTED;
            p += 6;
        }
    }
    *raw_len = (size_t)(p - *raw);
    *escaped = esc;
    c->p = p + 1;
    return 0;
}

/* Decodes n raw bytes that lex_string accepted into dst (room for n bytes:
 * no escape decodes to more bytes than it takes), the way jansson decodes
 * them. Returns the decoded length. */
static inline size_t lex_decode(const unsigned char *raw, size_t n, char *dst)
{
    const unsigned char *p = raw, *end = raw + n;
    char *d = dst;
    while (p < end) {
        const unsigned char *q = p;
        while (q < end && *q != '\\')
            q++;
        memcpy(d, p, (size_t)(q - p));
        d += q - p;
        if (q == end)
            break;
        unsigned char e = q[1];
        p = q + 2;
        switch (e) {
        case 'b': *d++ = '\b'; continue;
        case 'f': *d++ = '\f'; continue;
        case 'n': *d++ = '\n'; continue;
        case 'r': *d++ = '\r'; continue;
        case 't': *d++ = '\t'; continue;
        case 'u': break;
        default: *d++ = (char)e; continue; /* '"', '\\', '/' */
        }
        unsigned v = 0, lo = 0xDC00;
        lex_hex4(p, &v);
        p += 4;
        if (v >= 0xD800 && v <= 0xDBFF) { /* lex_string saw the low half follow */
            lex_hex4(p + 2, &lo);
            p += 6;
            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (v < 0x80) {
            *d++ = (char)v;
        } else if (v < 0x800) {
            *d++ = (char)(0xC0 | v >> 6);
            *d++ = (char)(0x80 | (v & 0x3F));
        } else if (v < 0x10000) {
            *d++ = (char)(0xE0 | v >> 12);
            *d++ = (char)(0x80 | (v >> 6 & 0x3F));
            *d++ = (char)(0x80 | (v & 0x3F));
        } else {
            *d++ = (char)(0xF0 | v >> 18);
            *d++ = (char)(0x80 | (v >> 12 & 0x3F));
            *d++ = (char)(0x80 | (v >> 6 & 0x3F));
            *d++ = (char)(0x80 | (v & 0x3F));
        }
    }
    return (size_t)(d - dst);
}

static inline bool lex_is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* ---- sentinel-bounded lexing (scan.c and fastreq.c) ----
 * Both scanners accept only '{' ... '}' with whitespace around. They find
 * that last '}' first (lex_sentinel) and pass a pointer to it as `end` to
 * everything else: loops over whitespace, digits and punctuation then need no
 * bounds check, since '}' is none of them and stops them at end at the
 * latest. Strings keep their bound (a '}' is an ordinary byte inside one). */

static inline bool lex_is_ws(unsigned char b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }

/* Past the whitespace at p (stops at the sentinel at the latest). */
static inline const unsigned char *lex_sskip_ws(const unsigned char *p)
{
    while (lex_is_ws(*p))
        p++;
    return p;
}

/* Trims the whitespace around s[0..len); when what is left is '{' ... '}',
 * *start is its '{' and the sentinel, its '}', is returned; else NULL. */
static inline const unsigned char *lex_sentinel(const char *s, size_t len, const unsigned char **start)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end && lex_is_ws(*p))
        p++;
    while (end > p && lex_is_ws(end[-1]))
        end--;
    if (end - p < 2 || *p != '{' || end[-1] != '}')
        return NULL;
    *start = p;
    return end - 1;
}

/* Past the sign and the integer digits of a number at p (JSON's grammar: "0",
 * or a non-zero digit and any more), or NULL when no digit is there. *neg:
 * the sign; *x: the digits' value (it wraps past 19 digits, which callers
 * refuse by counting them: *digits is where they start). */
static inline __attribute__((always_inline)) const unsigned char *
lex_sint_head(const unsigned char *p, bool *neg, uint64_t *x, const unsigned char **digits)
{
    *neg = *p == '-';
    p += *neg;
    *digits = p;
    uint64_t v = 0;
    if (*p == '0') {
        p++;
    } else if (lex_is_digit(*p)) {
        do
            v = v * 10 + (uint64_t)(*p++ - '0');
        while (lex_is_digit(*p));
    } else {
        return NULL;
    }
    *x = v;
    return p;
}

/* Past a fraction ".digits" at p, or p itself when none is there; NULL for
 * a '.' without a digit after it. */
static inline const unsigned char *lex_sfrac(const unsigned char *p)
{
    if (*p != '.')
        return p;
    p++;
    if (!lex_is_digit(*p))
        return NULL;
    do
        p++;
    while (lex_is_digit(*p));
    return p;
}

/* Past an exponent "e[+-]digits" at p (either case), or p itself when none is
 * there, with its value in *exp (0 when none). Exponents of 5 or more digits,
 * or none, give NULL: the scanners could not bound the value. */
static inline const unsigned char *lex_sexp(const unsigned char *p, long *exp)
{
    *exp = 0;
    if (*p != 'e' && *p != 'E')
        return p;
    p++;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    const unsigned char *e0 = p;
    long v = 0;
    while (lex_is_digit(*p)) {
        if (p - e0 >= 4)
            return NULL;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p == e0)
        return NULL;
    *exp = neg ? -v : v;
    return p;
}

/* Whitespace is rare: test for it with one comparison. */
#define LEX_WS(p)                                                                                               \
    do {                                                                                                        \
        if (*(p) <= ' ')                                                                                        \
            (p) = lex_sskip_ws(p);                                                                              \
    } while (0)

/* Moves p to the byte c across any whitespace, or returns NULL from the
 * function it is used in when another byte is there. Where c is expected,
 * the first comparison settles compact JSON. */
#define LEX_AT(p, c)                                                                                            \
    do {                                                                                                        \
        if (*(p) != (c)) {                                                                                      \
            (p) = lex_sskip_ws(p);                                                                              \
            if (*(p) != (c))                                                                                    \
                return NULL;                                                                                    \
        }                                                                                                       \
    } while (0)

/* ---- the two request decoders ----
 * sl_api_decode_request tries the fast one, then the full one. */

/* The fast decoder (fastreq.c): 0 and *out (arena-allocated, body NULL, raw
 * set) only when sl_api_decode_full would accept the bytes and fill the same
 * fields; otherwise SL_EUNSUPPORTED, *out NULL, and err untouched (it never
 * reports errors). On a decline the arena may hold some of its strings. */
int sl_api_decode_fast(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out);
/* The full decoder (request.c): jansson's tree and the validator, with every
 * error message. Same contract as sl_api_decode_request. */
int sl_api_decode_full(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out,
                       sl_api_error *err);
/* sl_api_upstream_body for a request with raw set (fastreq.c); upstream_model
 * already checked to be UTF-8. */
int sl_api_upstream_body_fast(const sl_request *r, const char *upstream_model, sl_buf *out);

#endif
