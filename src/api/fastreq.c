/* The fast request decoder: common OpenAI requests read in one pass over the
 * bytes, without a JSON tree, and their upstream body spliced from the
 * client's own bytes.
 *
 * Contract with the full decoder (sl_api_decode_full in request.c): when
 * sl_api_decode_fast returns 0, the full decoder would accept the same bytes
 * and fill the same sl_request fields (body and raw aside), and the upstream
 * body spliced here holds the same JSON value as the one it re-serialises.
 * Otherwise it returns SL_EUNSUPPORTED and the caller runs the full decoder,
 * which then decides and words every error. So this file never reports an
 * error: it accepts or declines.
 *
 * It accepts only a whitelist, declining everything else:
 *   - strict RFC 8259 JSON (the lexing of internal.h: no \u0000, no unpaired
 *     surrogate escape, valid UTF-8, integers of at most 18 digits, reals of
 *     at most 15 significant digits that strtod reads without overflow),
 *     whose root is an object;
 *   - top-level keys from the kind's list below, none repeated, none escaped;
 *   - chat messages: objects holding role, content (a string), name and
 *     tool_call_id only, none repeated, none escaped;
 *   - values of the types and ranges request.c accepts for the key, JSON
 *     null where request.c reads null as absent;
 *   - stream_options: null, or an object whose only key is include_usage
 *     (a boolean or null). For a stream the upstream body replaces that
 *     whole value with {"include_usage":true} (so null, {} and false all
 *     become true, as the full path's re-serialisation makes them), while
 *     r->include_usage keeps what the client sent.
 * Nesting is at most 3 (root, messages, a message), well under
 * SL_API_MAX_DEPTH: no value of unbounded shape is ever walked.
 *
 * Repeated keys are declined so that the raw bytes mean one thing: an
 * upstream whose parser kept the first of two "model" keys would otherwise
 * read a value that was never validated.
 *
 * How it stays cheap (the way scan.c does):
 *
 * - The sentinel. A text that can be accepted is '{' ... '}' with only
 *   whitespace around, so sl_api_decode_fast first finds that last '}' and
 *   every function below gets a pointer to it as f->end. Each takes a p <= end
 *   and returns NULL (decline) or a p' <= end, so *p is always readable
 *   without a bounds check. Loops over whitespace and digits need none: '}'
 *   is neither, so they stop at end at the latest; literals are compared byte
 *   by byte, and a mismatch at the '}' stops them too. Strings keep their
 *   bound (a '}' is an ordinary byte inside one): a string that reaches end
 *   is refused, so a valid one closes before it. Arrays close with ']',
 *   never at end; a nested object that closes at end is refused (only the
 *   root may), which keeps p' <= end.
 * - Whitespace is skipped only where the byte at p is <= ' ' (LEX_WS and
 *   LEX_AT): compact JSON has none, and one comparison settles that.
 * - Keys are matched by length, then memcmp of a constant size; roles too.
 *   Neither is copied.
 * - Strings that the request keeps are copied while they are scanned,
 *   sixteen bytes at a time, into one pool allocated with the request (see
 *   Memory); a string with an escape or a byte >= 0x80 goes on from where
 *   the fast loop stopped, through lex_string and lex_decode.
 *
 * Memory: the request, room for 4 messages and the string pool come from one
 * arena allocation of about the body's size; more messages and arrays of
 * strings take their own; the body is copied there once accepted. A decline
 * leaves those behind, freed with the arena. The pool needs no more than the
 * body's length: a string of raw length n decodes to at most n bytes, plus
 * its NUL, where the body spent n + 2 on it with its quotes; so the pool's
 * fill stays below the offset in the body of the string being read, and the
 * sixteen-byte stores of the fast loop, which copy bytes of the body that lie
 * before end, land below pool + (end - body). */
#include "api/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the whitelist ----
 * Invariant: only keys that request.c itself validates into sl_request
 * fields belong here. A fast-decoded request has no body, so anything read
 * from the body by name elsewhere (the gateway's ext_number reads top_k,
 * min_p, repetition_penalty for local models) must stay off this list:
 * requests carrying such keys then take the full path and keep their body.
 * Forbidden routing keys (request.c, check_forbidden) are never listed, so
 * they always reach the full path and its 400. */
typedef enum {
    K_MODEL,
    K_MESSAGES,
    K_PROMPT,
    K_INPUT,
    K_STREAM,
    K_STREAM_OPTIONS,
    K_TEMPERATURE,
    K_TOP_P,
    K_N,
    K_MAX_TOKENS,
    K_MAX_COMPLETION_TOKENS,
    K_SEED,
    K_STOP,
    K_USER,
    K_PRESENCE_PENALTY,
    K_FREQUENCY_PENALTY,
    K_ENCODING_FORMAT,
    K_DIMENSIONS,
    K_COUNT
} root_key;

#define BIT(k) (1u << (k))
/* Keys shared by chat and completions. completions leaves
 * max_completion_tokens unread in request.c (any value passes upstream), so
 * it is not listed for completions: its value would need a general walk. */
#define GEN_KEYS                                                                                              \
    (BIT(K_MODEL) | BIT(K_STREAM) | BIT(K_STREAM_OPTIONS) | BIT(K_TEMPERATURE) | BIT(K_TOP_P) | BIT(K_N) |    \
     BIT(K_MAX_TOKENS) | BIT(K_SEED) | BIT(K_STOP) | BIT(K_USER) | BIT(K_PRESENCE_PENALTY) |                \
     BIT(K_FREQUENCY_PENALTY))

static const uint32_t allowed_keys[] = {
    [SL_API_CHAT] = GEN_KEYS | BIT(K_MESSAGES) | BIT(K_MAX_COMPLETION_TOKENS),
    [SL_API_COMPLETIONS] = GEN_KEYS | BIT(K_PROMPT),
    [SL_API_EMBEDDINGS] = BIT(K_MODEL) | BIT(K_INPUT) | BIT(K_ENCODING_FORMAT) | BIT(K_DIMENSIONS) | BIT(K_USER),
};

/* Message keys, bits in a message's seen mask. */
enum { M_ROLE, M_CONTENT, M_NAME, M_TOOL_CALL_ID };

#define IS(s, lit) (!memcmp((s), lit, sizeof lit - 1))

/* The root key s[0..n), or -1. */
static int root_key_id(const unsigned char *s, size_t n)
{
    switch (n) {
    case 1: return s[0] == 'n' ? K_N : -1;
    case 4: return IS(s, "stop") ? K_STOP : IS(s, "user") ? K_USER : IS(s, "seed") ? K_SEED : -1;
    case 5: return IS(s, "model") ? K_MODEL : IS(s, "input") ? K_INPUT : IS(s, "top_p") ? K_TOP_P : -1;
    case 6: return IS(s, "stream") ? K_STREAM : IS(s, "prompt") ? K_PROMPT : -1;
    case 8: return IS(s, "messages") ? K_MESSAGES : -1;
    case 10: return IS(s, "max_tokens") ? K_MAX_TOKENS : IS(s, "dimensions") ? K_DIMENSIONS : -1;
    case 11: return IS(s, "temperature") ? K_TEMPERATURE : -1;
    case 14: return IS(s, "stream_options") ? K_STREAM_OPTIONS : -1;
    case 15: return IS(s, "encoding_format") ? K_ENCODING_FORMAT : -1;
    case 16: return IS(s, "presence_penalty") ? K_PRESENCE_PENALTY : -1;
    case 17: return IS(s, "frequency_penalty") ? K_FREQUENCY_PENALTY : -1;
    case 21: return IS(s, "max_completion_tokens") ? K_MAX_COMPLETION_TOKENS : -1;
    default: return -1;
    }
}

static int msg_key_id(const unsigned char *s, size_t n)
{
    switch (n) {
    case 4: return IS(s, "role") ? M_ROLE : IS(s, "name") ? M_NAME : -1;
    case 7: return IS(s, "content") ? M_CONTENT : -1;
    case 12: return IS(s, "tool_call_id") ? M_TOOL_CALL_ID : -1;
    default: return -1;
    }
}

/* request.c's role_names, case-sensitive. */
static int role_id(const unsigned char *s, size_t n, sl_role *out)
{
    switch (n) {
    case 4:
        if (IS(s, "user"))
            *out = SL_ROLE_USER;
        else if (IS(s, "tool"))
            *out = SL_ROLE_TOOL;
        else
            return -1;
        return 0;
    case 6:
        if (!IS(s, "system"))
            return -1;
        *out = SL_ROLE_SYSTEM;
        return 0;
    case 9:
        if (IS(s, "assistant"))
            *out = SL_ROLE_ASSISTANT;
        else if (IS(s, "developer"))
            *out = SL_ROLE_DEVELOPER;
        else
            return -1;
        return 0;
    default: return -1;
    }
}
#undef IS

/* ---- the state of one decode ---- */

typedef const unsigned char *ptr;

typedef struct fdec {
    ptr base, end;      /* the body; end: the sentinel, the root's closing '}' */
    char *pool;         /* where the next decoded string goes (see Memory above) */
    sl_arena *arena;
    sl_request *r;
    size_t msg_cap;     /* room at r->messages */
    bool so_object;     /* stream_options is an object (not null) */
    bool has_mt, has_mct;
    int64_t mt, mct;    /* max_tokens, max_completion_tokens */
} fdec;

/* After a member or element: past ',' (0), or at the closing byte close
 * (1; p left on it), or -1. */
#define NEXT(p, close)                                                                                          \
    ({                                                                                                          \
        int next_;                                                                                              \
        if (*(p) != ',')                                                                                        \
            LEX_WS(p);                                                                                          \
        if (*(p) == ',') {                                                                                      \
            (p)++;                                                                                              \
            next_ = 0;                                                                                          \
        } else {                                                                                                \
            next_ = *(p) == (close) ? 1 : -1;                                                                   \
        }                                                                                                       \
        next_;                                                                                                  \
    })

/* Past the literal word (n bytes, without '}') at p: byte by byte, so that a
 * mismatch at the sentinel stops it before anything past end is read. */
static inline ptr literal_end(ptr p, const char *word, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)word[i])
            return NULL;
    return p + n;
}

/* lex_string from q, the first byte of a string's contents that the fast
 * loops below have not settled (all before it are plain): *raw_rest, *n_rest
 * and *escaped describe q up to the closing quote. */
static __attribute__((noinline)) ptr string_rest(ptr q, ptr end, const unsigned char **raw_rest, size_t *n_rest,
                                                 bool *escaped)
{
    /* lex_string passes the byte at c.p as the opening quote without
     * looking at it: q - 1 is a plain byte or the quote itself */
    lex_cur c = {.p = q - 1, .end = end, .depth = 0};
    if (lex_string(&c, raw_rest, n_rest, escaped))
        return NULL;
    return c.p;
}

/* The sixteen bytes at q: the mask of those that are not plain (a control
 * byte, '"', '\\' or a byte >= 0x80). */
#if defined(__SSE2__)
static inline unsigned stop_mask(__m128i x)
{
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    /* signed compare: bytes >= 0x80 are negative, so below 0x20 too */
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                _mm_cmplt_epi8(x, space));
    return (unsigned)_mm_movemask_epi8(stop);
}
#endif

/* Past the key or other string at p (its opening quote) that is only looked
 * at, not kept: its raw bytes in *raw, *n; *escaped whether it holds an
 * escape. The closing quote is before end. lo: the body's first byte. */
static inline __attribute__((always_inline)) ptr string_end(ptr p, ptr lo, ptr end, const unsigned char **raw,
                                                            size_t *n, bool *escaped)
{
    ptr s = p + 1, q = s;
#if defined(__SSE2__)
    while (end - q >= 16) {
        unsigned m = stop_mask(_mm_loadu_si128((const __m128i *)(const void *)q));
        if (m) {
            q += __builtin_ctz(m);
            if (*q != '"')
                goto slow;
            goto done;
        }
        q += 16;
    }
    /* fewer than 16 bytes from q to end: the 16 that end at end (the
     * sentinel included), the ones before q shifted out */
    if (end - lo >= 15) {
        ptr t = end - 15;
        unsigned m = stop_mask(_mm_loadu_si128((const __m128i *)(const void *)t)) >> (q - t);
        if (!m)
            return NULL; /* no closing quote before end */
        q += __builtin_ctz(m);
        if (*q == '"')
            goto done;
    }
slow:;
#else
    (void)lo;
#endif
    {
        /* the slow path's own out-variables: only their addresses escape, so
         * the caller's stay in registers */
        const unsigned char *rest;
        size_t n_rest;
        bool esc;
        ptr after = string_rest(q, end, &rest, &n_rest, &esc);
        if (!after)
            return NULL;
        *raw = s;
        *n = (size_t)(rest - s) + n_rest;
        *escaped = esc;
        return after;
    }
#if defined(__SSE2__)
done:
    *raw = s;
    *n = (size_t)(q - s);
    *escaped = false;
    return q + 1;
#endif
}

/* The rest of string_copy, from q (all bytes from s, the first of the
 * contents, up to q are plain and already at d). */
static __attribute__((noinline)) ptr string_copy_slow(fdec *f, ptr s, ptr q, char *d, const char **out,
                                                      size_t *out_len)
{
    const unsigned char *rest;
    size_t n_rest;
    bool escaped;
    ptr after = string_rest(q, f->end, &rest, &n_rest, &escaped);
    if (!after)
        return NULL;
    size_t done = (size_t)(rest - s), n;
    if (escaped) {
        n = done + lex_decode(rest, n_rest, d + done);
    } else {
        memcpy(d + done, rest, n_rest);
        n = done + n_rest;
    }
    d[n] = 0;
    *out = d;
    *out_len = n;
    f->pool = d + n + 1;
    return after;
}

/* The string value at p (at its opening quote, else NULL), decoded into the
 * pool, NUL-terminated: *out, *out_len. Plain bytes are stored sixteen at a
 * time as they are scanned (see Memory at the top for why the pool holds
 * what this writes past the string). */
static inline __attribute__((always_inline)) ptr string_copy(fdec *f, ptr p, const char **out, size_t *out_len)
{
    if (*p != '"')
        return NULL;
    char *d = f->pool;
    ptr s = p + 1, q = s, end = f->end;
#if defined(__SSE2__)
    while (end - q >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
        _mm_storeu_si128((__m128i *)(void *)(d + (q - s)), x);
        unsigned m = stop_mask(x);
        if (m) {
            q += __builtin_ctz(m);
            if (*q != '"')
                return string_copy_slow(f, s, q, d, out, out_len);
            goto done;
        }
        q += 16;
    }
    /* fewer than 16 bytes from q to end: the 16 that end at end (the
     * sentinel included), the ones before q shifted out. s..q is in the
     * pool; when the string began before those 16, they are stored after it
     * (contiguous: q >= t), else what the string holds is copied alone. */
    if (end - f->base >= 15) {
        ptr t = end - 15, stored = q;
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)t);
        unsigned m = stop_mask(x) >> (q - t);
        if (!m)
            return NULL; /* no closing quote before end */
        q += __builtin_ctz(m);
        if (t >= s) {
            _mm_storeu_si128((__m128i *)(void *)(d + (t - s)), x);
            stored = q;
        }
        if (*q != '"')
            return string_copy_slow(f, s, stored, d, out, out_len);
        if (stored != q)
            memcpy(d + (stored - s), stored, (size_t)(q - stored));
        goto done;
    }
#endif
    return string_copy_slow(f, s, q, d, out, out_len);
#if defined(__SSE2__)
done:;
    size_t n = (size_t)(q - s);
    d[n] = 0;
    *out = d;
    *out_len = n;
    f->pool = d + n + 1;
    return q + 1;
#endif
}

/* A string value kept by the request; its length unused. */
static inline __attribute__((always_inline)) ptr string_value(fdec *f, ptr p, const char **out)
{
    size_t n;
    return string_copy(f, p, out, &n);
}

/* An optional string: NULL for JSON null. */
static ptr opt_string(fdec *f, ptr p, const char **out)
{
    if (*p == 'n') {
        *out = NULL;
        return literal_end(p, "null", 4);
    }
    return string_value(f, p, out);
}

/* The rest of a real from its '.' or 'e'/'E' at p, start at its first byte:
 * JSON's grammar with lex_sexp's limit (exponents of at most 4 digits), as
 * request.c's tree holds it, read with strtod (in the C locale Sluice runs
 * in; a locale whose decimal point is not '.' makes strtod stop early, a
 * decline). */
static __attribute__((noinline)) ptr real_end(ptr start, ptr p, double *d)
{
    p = lex_sfrac(p);
    if (!p)
        return NULL;
    ptr mant_end = p;
    if (*p != 'e' && *p != 'E' && mant_end - start <= 16) {
        /* the usual real ("0.7"): at most 15 digits, so the digits as an
         * integer m < 2^53 and 10^k are exact doubles, and m / 10^k is the
         * correctly rounded quotient, the value strtod reads */
        static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
                                       1e14, 1e15};
        uint64_t m = 0;
        int k = 0;
        bool frac = false;
        for (ptr q = start + (*start == '-'); q < mant_end; q++) {
            if (*q == '.') {
                frac = true;
                continue;
            }
            m = m * 10 + (uint64_t)(*q - '0');
            k += frac;
        }
        double v = (double)m / pow10[k];
        *d = *start == '-' ? -v : v;
        return p;
    }
    long exp; /* strtod reads it again below */
    p = lex_sexp(p, &exp);
    if (!p)
        return NULL;
    /* The full path sends reals upstream with 15 significant digits
     * (SL_API_JSON_DUMP_FLAGS); a real of at most 15 digits reads back as the
     * same double from either text, one with more would not. */
    int sig = 0;
    bool lead = true;
    for (ptr q = start; q < mant_end; q++) {
        if (!lex_is_digit(*q) || (lead && *q == '0'))
            continue;
        lead = false;
        sig++;
    }
    if (sig > 15)
        return NULL;
    char tmp[64];
    size_t len = (size_t)(p - start);
    if (len >= sizeof tmp)
        return NULL;
    memcpy(tmp, start, len);
    tmp[len] = 0;
    char *tend;
    errno = 0;
    double v = strtod(tmp, &tend);
    if (tend != tmp + len || (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)))
        return NULL; /* overflow, which the full parser refuses; it keeps underflow, as here */
    *d = v;
    return p;
}

/* Past the number at p (sentinel: no bounds checks), as request.c's tree
 * holds it: an integer token of at most 18 digits (*is_int, *i; always
 * inside the full parser's 64-bit range, longer ones declined) or a real
 * (*d). */
static inline __attribute__((always_inline)) ptr number_end(ptr p, bool *is_int, int64_t *i, double *d)
{
    ptr start = p;
    bool neg;
    uint64_t x;
    ptr digits;
    p = lex_sint_head(p, &neg, &x, &digits);
    if (!p)
        return NULL;
    if (*p == '.' || *p == 'e' || *p == 'E') {
        *is_int = false;
        return real_end(start, p, d);
    }
    if (p - digits > 18)
        return NULL;
    *is_int = true;
    *i = neg ? -(int64_t)x : (int64_t)x;
    *d = (double)*i;
    return p;
}

/* request.c's opt_number: a number in [lo, hi], or null (absent). */
static ptr opt_number(ptr p, double lo, double hi, bool *has, double *out)
{
    if (*p == 'n')
        return literal_end(p, "null", 4);
    bool is_int;
    int64_t i;
    double d;
    p = number_end(p, &is_int, &i, &d);
    if (!p || !(d >= lo && d <= hi))
        return NULL;
    if (has)
        *has = true;
    *out = d;
    return p;
}

/* request.c's opt_int: an integer, or an integral real below 9e18 in
 * magnitude, in [lo, hi]; or null (absent). */
static inline __attribute__((always_inline)) ptr opt_int(ptr p, int64_t lo, int64_t hi, bool *has, int64_t *out)
{
    if (*p == 'n')
        return literal_end(p, "null", 4);
    bool is_int;
    int64_t x;
    double d;
    p = number_end(p, &is_int, &x, &d);
    if (!p)
        return NULL;
    if (!is_int) {
        if (!(floor(d) == d && fabs(d) < 9.0e18))
            return NULL;
        x = (int64_t)d;
    }
    if (x < lo || x > hi)
        return NULL;
    if (has)
        *has = true;
    *out = x;
    return p;
}

/* A boolean; null leaves *out as it is (absent). */
static ptr opt_bool(ptr p, bool *out)
{
    switch (*p) {
    case 't': *out = true; return literal_end(p, "true", 4);
    case 'f': *out = false; return literal_end(p, "false", 5);
    case 'n': return literal_end(p, "null", 4);
    default: return NULL;
    }
}

/* Appends s to an arena array that doubles as it fills. */
static int push_string(fdec *f, const char ***arr, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        const char **grown = sl_arena_alloc(f->arena, ncap * sizeof *grown);
        if (!grown)
            return SL_ENOMEM;
        if (*n)
            memcpy(grown, *arr, *n * sizeof *grown);
        *arr = grown;
        *cap = ncap;
    }
    (*arr)[(*n)++] = s;
    return 0;
}

/* request.c's decode_text_or_tokens for strings only: a string, or a
 * non-empty array of strings (token-id prompts are left to it). Required:
 * null declines. */
static ptr read_texts(fdec *f, ptr p, bool allow_empty, size_t max_items, const char ***out, size_t *n_out)
{
    const char *s;
    size_t len, n = 0, cap = 0;
    const char **arr = NULL;
    if (*p == '"') {
        p = string_copy(f, p, &s, &len);
        if (!p || (!allow_empty && len == 0) || push_string(f, &arr, &n, &cap, s))
            return NULL;
    } else {
        if (*p != '[')
            return NULL;
        p++;
        LEX_WS(p);
        if (*p == ']')
            return NULL; /* empty: an error */
        for (;;) {
            p = string_copy(f, p, &s, &len);
            if (!p || (!allow_empty && len == 0) || push_string(f, &arr, &n, &cap, s))
                return NULL;
            int nx = NEXT(p, ']');
            if (nx < 0)
                return NULL;
            if (nx)
                break;
            LEX_WS(p);
        }
        if (n > max_items)
            return NULL;
        p++; /* the ']', never end */
    }
    *out = arr;
    *n_out = n;
    return p;
}

/* stop: null, a string, or an array of at most 4 strings (empty allowed). */
static ptr read_stop(fdec *f, ptr p)
{
    sl_request *r = f->r;
    if (*p == 'n')
        return literal_end(p, "null", 4);
    if (*p == '"') {
        r->n_stop = 1;
        return string_value(f, p, &r->stop[0]);
    }
    if (*p != '[')
        return NULL;
    p++;
    LEX_WS(p);
    if (*p == ']')
        return p + 1;
    for (;;) {
        if (r->n_stop == SL_ARRAY_LEN(r->stop))
            return NULL;
        p = string_value(f, p, &r->stop[r->n_stop]);
        if (!p)
            return NULL;
        r->n_stop++;
        int nx = NEXT(p, ']');
        if (nx < 0)
            return NULL;
        if (nx)
            return p + 1;
        LEX_WS(p);
    }
}

/* stream_options: null, or an object whose only key is include_usage. Its
 * byte span is kept: the upstream body replaces it. */
static ptr read_stream_options(fdec *f, ptr p)
{
    sl_request *r = f->r;
    ptr start = p;
    if (*p == 'n') {
        p = literal_end(p, "null", 4);
    } else {
        if (*p != '{')
            return NULL;
        f->so_object = true;
        p++;
        LEX_WS(p);
        if (*p != '}') {
            const unsigned char *key;
            size_t klen;
            bool escaped;
            if (*p != '"')
                return NULL;
            p = string_end(p, f->base, f->end, &key, &klen, &escaped);
            if (!p || escaped || klen != 13 || memcmp(key, "include_usage", 13))
                return NULL;
            LEX_AT(p, ':');
            p++;
            LEX_WS(p);
            p = opt_bool(p, &r->include_usage);
            if (!p)
                return NULL;
            LEX_WS(p);
            if (*p != '}')
                return NULL; /* another key, repeated or not */
        }
        if (p == f->end)
            return NULL; /* only the root closes at end */
        p++;
    }
    if (!p)
        return NULL;
    r->raw_so_off = (size_t)(start - f->base);
    r->raw_so_len = (size_t)(p - start);
    return p;
}

/* One chat message object at p. */
static ptr read_message(fdec *f, ptr p, sl_api_message *m)
{
    unsigned seen = 0;
    const char *tool_call_id = NULL;
    if (*p != '{')
        return NULL;
    p++;
    LEX_WS(p);
    for (;;) {
        const unsigned char *key;
        size_t klen;
        bool escaped;
        LEX_AT(p, '"');
        p = string_end(p, f->base, f->end, &key, &klen, &escaped);
        if (!p || escaped)
            return NULL; /* an escaped key could decode to any name: not worth decoding */
        int id = msg_key_id(key, klen);
        if (id < 0 || (seen & BIT(id)))
            return NULL;
        seen |= BIT(id);
        LEX_AT(p, ':');
        p++;
        LEX_WS(p);
        switch (id) {
        case M_ROLE: {
            const unsigned char *raw;
            size_t n;
            if (*p != '"')
                return NULL;
            p = string_end(p, f->base, f->end, &raw, &n, &escaped);
            if (!p)
                return NULL;
            if (escaped) { /* decoded into the pool's free space, not kept */
                n = lex_decode(raw, n, f->pool);
                raw = (const unsigned char *)f->pool;
            }
            if (role_id(raw, n, &m->role))
                return NULL;
            break;
        }
        case M_CONTENT: p = string_value(f, p, &m->text); break;
        case M_NAME: p = opt_string(f, p, &m->name); break;
        default: p = opt_string(f, p, &tool_call_id); break;
        }
        if (!p)
            return NULL;
        int nx = NEXT(p, '}');
        if (nx < 0)
            return NULL;
        if (nx)
            break;
    }
    if (p == f->end)
        return NULL; /* only the root closes at end */
    if (!(seen & BIT(M_ROLE)) || !(seen & BIT(M_CONTENT)))
        return NULL;
    /* request.c reads tool_call_id only for tool messages, where it is required */
    if (m->role == SL_ROLE_TOOL) {
        if (!tool_call_id)
            return NULL;
        m->tool_call_id = tool_call_id;
    }
    return p + 1;
}

static ptr read_messages(fdec *f, ptr p)
{
    sl_request *r = f->r;
    if (*p != '[')
        return NULL;
    p++;
    LEX_WS(p);
    if (*p == ']')
        return NULL; /* empty: an error */
    for (;;) {
        if (r->n_messages == f->msg_cap) {
            size_t ncap = f->msg_cap * 2;
            sl_api_message *grown = sl_arena_alloc(f->arena, ncap * sizeof *grown);
            if (!grown)
                return NULL; /* the full decoder reports running out of memory */
            memcpy(grown, r->messages, f->msg_cap * sizeof *grown);
            r->messages = grown;
            f->msg_cap = ncap;
        }
        sl_api_message *m = &r->messages[r->n_messages++];
        memset(m, 0, sizeof *m);
        p = read_message(f, p, m);
        if (!p)
            return NULL;
        int nx = NEXT(p, ']');
        if (nx < 0)
            return NULL;
        if (nx)
            return p + 1;
        LEX_WS(p);
    }
}

static ptr read_member(fdec *f, ptr p, root_key k)
{
    sl_request *r = f->r;
    switch (k) {
    case K_MODEL: {
        ptr start = p;
        size_t len;
        p = string_copy(f, p, &r->model, &len);
        if (!p || len == 0 || len > SL_API_MODEL_MAX_LEN)
            return NULL;
        r->raw_model_off = (size_t)(start - f->base);
        r->raw_model_len = (size_t)(p - start);
        return p;
    }
    case K_MESSAGES: return read_messages(f, p);
    case K_PROMPT: return read_texts(f, p, true, SIZE_MAX, &r->prompts, &r->n_prompts);
    case K_INPUT: return read_texts(f, p, false, SL_API_MAX_EMBED_INPUTS, &r->inputs, &r->n_inputs);
    case K_STREAM: return opt_bool(p, &r->stream);
    case K_STREAM_OPTIONS: return read_stream_options(f, p);
    case K_TEMPERATURE: return opt_number(p, 0, 2, &r->has_temperature, &r->temperature);
    case K_TOP_P: return opt_number(p, 0, 1, &r->has_top_p, &r->top_p);
    case K_PRESENCE_PENALTY: return opt_number(p, -2, 2, NULL, &r->presence_penalty);
    case K_FREQUENCY_PENALTY: return opt_number(p, -2, 2, NULL, &r->frequency_penalty);
    case K_N: {
        int64_t x = 1;
        p = opt_int(p, 1, SL_API_MAX_N, NULL, &x);
        r->n = (int)x;
        return p;
    }
    case K_MAX_TOKENS: return opt_int(p, 1, INT64_MAX, &f->has_mt, &f->mt);
    case K_MAX_COMPLETION_TOKENS: return opt_int(p, 1, INT64_MAX, &f->has_mct, &f->mct);
    case K_SEED: return opt_int(p, INT64_MIN, INT64_MAX, &r->has_seed, &r->seed);
    case K_STOP: return read_stop(f, p);
    case K_USER: return opt_string(f, p, &r->user);
    case K_ENCODING_FORMAT: {
        const char *s;
        if (*p == 'n')
            return literal_end(p, "null", 4);
        p = string_value(f, p, &s);
        if (!p)
            return NULL;
        if (!strcmp(s, "float"))
            r->encoding_format = "float";
        else if (!strcmp(s, "base64"))
            r->encoding_format = "base64";
        else
            return NULL;
        return p;
    }
    case K_DIMENSIONS: return opt_int(p, 1, INT64_MAX, &r->has_dimensions, &r->dimensions);
    case K_COUNT: break;
    }
    return NULL;
}

/* The root object's members, from p just past its '{'. Returns end (where
 * the root closes) or NULL; *seen: the keys met. */
static ptr read_root(fdec *f, ptr p, uint32_t allowed, uint32_t *seen_out)
{
    uint32_t seen = 0;
    LEX_WS(p);
    for (;;) {
        const unsigned char *key;
        size_t klen;
        bool escaped;
        LEX_AT(p, '"');
        p = string_end(p, f->base, f->end, &key, &klen, &escaped);
        if (!p || escaped)
            return NULL; /* an escaped key could decode to any name: not worth decoding */
        int k = root_key_id(key, klen);
        if (k < 0 || !(allowed & BIT(k)) || (seen & BIT(k)))
            return NULL;
        seen |= BIT(k);
        LEX_AT(p, ':');
        p++;
        LEX_WS(p);
        p = read_member(f, p, (root_key)k);
        if (!p)
            return NULL;
        int nx = NEXT(p, '}');
        if (nx < 0)
            return NULL;
        if (nx)
            break;
    }
    *seen_out = seen;
    return p;
}

/* memset(r, 0, sizeof *r) as 16-byte stores: the compiler's own choice for
 * this size, rep stos, costs about twice the instructions. */
static inline void zero_request(sl_request *r)
{
#if defined(__SSE2__)
    char *b = (char *)r;
    size_t i = 0;
#pragma GCC unroll 32
    for (; i + 16 <= sizeof *r; i += 16)
        _mm_storeu_si128((__m128i *)(void *)(b + i), _mm_setzero_si128());
    if (i < sizeof *r)
        memset(b + i, 0, sizeof *r - i);
#else
    memset(r, 0, sizeof *r);
#endif
}

/* room for this many messages comes with the request */
#define MSG_INLINE 4

int sl_api_decode_fast(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out)
{
    *out = NULL;
    if (len == 0 || (unsigned)kind >= SL_ARRAY_LEN(allowed_keys))
        return SL_EUNSUPPORTED; /* body may be NULL when empty */
    ptr base = (ptr)body, p, end = lex_sentinel(body, len, &p); /* see the top of this file */
    if (!end)
        return SL_EUNSUPPORTED;

    /* the request, its first messages and the string pool (Memory, above) */
    const size_t req_size = (sizeof(sl_request) + 15) & ~(size_t)15;
    const size_t head = req_size + MSG_INLINE * sizeof(sl_api_message);
    if (len > SIZE_MAX - head)
        return SL_EUNSUPPORTED;
    char *block = sl_arena_alloc(arena, head + len);
    if (!block)
        return SL_EUNSUPPORTED; /* the full decoder reports running out of memory */
    sl_request *r = (sl_request *)(void *)block;
    zero_request(r);
    r->kind = kind;
    r->n = 1;
    r->messages = (sl_api_message *)(void *)(block + req_size);
    fdec f = {.base = base, .end = end, .pool = block + head, .arena = arena, .r = r, .msg_cap = MSG_INLINE};

    uint32_t seen = 0;
    p = read_root(&f, p + 1, allowed_keys[kind], &seen);
    if (p != end)
        return SL_EUNSUPPORTED; /* declined, or a '}' before the last one: more after the root */
    r->raw_close_off = (size_t)(end - base);

    /* what request.c requires or cross-checks */
    const uint32_t required = BIT(K_MODEL) | (kind == SL_API_CHAT          ? BIT(K_MESSAGES)
                                              : kind == SL_API_COMPLETIONS ? BIT(K_PROMPT)
                                                                           : BIT(K_INPUT));
    if ((seen & required) != required)
        return SL_EUNSUPPORTED;
    if (f.so_object && !r->stream)
        return SL_EUNSUPPORTED; /* stream_options without stream: a 400 */
    if (f.has_mt) {
        r->has_max_tokens = true;
        r->max_tokens = f.mt;
    }
    if (f.has_mct) { /* max_completion_tokens wins */
        r->has_max_tokens = true;
        r->max_tokens = f.mct;
    }
    if (!r->n_messages)
        r->messages = NULL;

    char *raw = sl_arena_alloc(arena, len + 1);
    if (!raw)
        return SL_EUNSUPPORTED;
    memcpy(raw, body, len);
    raw[len] = 0;
    r->raw = raw;
    r->raw_len = len;
    *out = r;
    return 0;
}

/* ---- the upstream body ---- */

/* The length of the NUL-terminated s; *plain: whether it needs no escaping
 * inside a JSON string (printable ASCII without '"' and '\\', what model
 * names are). */
static size_t text_len(const char *s, bool *plain)
{
    bool ok = true;
    size_t n = 0;
    for (; s[n]; n++)
        ok &= lex_plain_byte[(unsigned char)s[n]];
    *plain = ok;
    return n;
}

int sl_api_upstream_body_fast(const sl_request *r, const char *upstream_model, sl_buf *out)
{
    static const char so_value[] = "{\"include_usage\":true}";
    static const char so_member[] = ",\"stream_options\":{\"include_usage\":true}";
    /* at most two splices, applied in byte order: the model value, and for
     * streams the stream_options value (or an insertion before the closing
     * brace; the root holds model, so a comma always belongs there) */
    struct splice {
        size_t off, len;
        const char *text; /* NULL: the quoted upstream model */
        size_t text_len;
    } sp[2] = {{r->raw_model_off, r->raw_model_len, NULL, 0}};
    size_t n_sp = 1;
    if (r->stream && r->kind != SL_API_EMBEDDINGS) {
        if (r->raw_so_len)
            sp[n_sp++] = (struct splice){r->raw_so_off, r->raw_so_len, so_value, sizeof so_value - 1};
        else
            sp[n_sp++] = (struct splice){r->raw_close_off, 0, so_member, sizeof so_member - 1};
        if (sp[1].off < sp[0].off) {
            struct splice t = sp[0];
            sp[0] = sp[1];
            sp[1] = t;
        }
    }
    bool plain;
    size_t mark = out->len, at = 0, model_len = text_len(upstream_model, &plain);
    int rc = 0;
    if (plain) {
        /* the usual model name: its quoted form is known, so the whole body
         * is sized, reserved once and copied in place */
        size_t total = r->raw_len + model_len + 2;
        for (size_t i = 0; i < n_sp; i++)
            total += (sp[i].text ? sp[i].text_len : 0) - sp[i].len;
        rc = sl_buf_reserve(out, total);
        if (rc)
            return rc == SL_ENOMEM ? SL_ENOMEM : SL_ETOOBIG;
        char *d = out->data + out->len;
        for (size_t i = 0; i < n_sp; i++) {
            memcpy(d, r->raw + at, sp[i].off - at);
            d += sp[i].off - at;
            if (sp[i].text) {
                memcpy(d, sp[i].text, sp[i].text_len);
                d += sp[i].text_len;
            } else {
                *d++ = '"';
                memcpy(d, upstream_model, model_len);
                d += model_len;
                *d++ = '"';
            }
            at = sp[i].off + sp[i].len;
        }
        memcpy(d, r->raw + at, r->raw_len - at);
        d += r->raw_len - at;
        *d = 0;
        out->len = (size_t)(d - out->data);
        return 0;
    }
    for (size_t i = 0; !rc && i < n_sp; i++) {
        rc = sl_buf_append(out, r->raw + at, sp[i].off - at);
        if (!rc)
            rc = sp[i].text ? sl_buf_append(out, sp[i].text, sp[i].text_len)
                            : sl_api_json_quote(out, upstream_model, model_len);
        at = sp[i].off + sp[i].len;
    }
    if (!rc)
        rc = sl_buf_append(out, r->raw + at, r->raw_len - at);
    if (rc)
        return sl_buf_rollback(out, mark, rc == SL_ENOMEM ? SL_ENOMEM : SL_ETOOBIG);
    return 0;
}
