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
 *     tool_call_id only, none repeated;
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
 * Memory: decoded strings go to the arena as they are read, and the bytes
 * are copied there once accepted; a decline may leave some strings behind
 * (at most about the body's size), freed with the arena. */
#include "api/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define UNSUP SL_EUNSUPPORTED

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

typedef struct key_name {
    const char *name;
    size_t len;
} key_name;
#define KEY(s) {s, sizeof s - 1}

static const key_name root_keys[K_COUNT] = {
    [K_MODEL] = KEY("model"),
    [K_MESSAGES] = KEY("messages"),
    [K_PROMPT] = KEY("prompt"),
    [K_INPUT] = KEY("input"),
    [K_STREAM] = KEY("stream"),
    [K_STREAM_OPTIONS] = KEY("stream_options"),
    [K_TEMPERATURE] = KEY("temperature"),
    [K_TOP_P] = KEY("top_p"),
    [K_N] = KEY("n"),
    [K_MAX_TOKENS] = KEY("max_tokens"),
    [K_MAX_COMPLETION_TOKENS] = KEY("max_completion_tokens"),
    [K_SEED] = KEY("seed"),
    [K_STOP] = KEY("stop"),
    [K_USER] = KEY("user"),
    [K_PRESENCE_PENALTY] = KEY("presence_penalty"),
    [K_FREQUENCY_PENALTY] = KEY("frequency_penalty"),
    [K_ENCODING_FORMAT] = KEY("encoding_format"),
    [K_DIMENSIONS] = KEY("dimensions"),
};

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
enum { M_ROLE, M_CONTENT, M_NAME, M_TOOL_CALL_ID, M_COUNT };
static const key_name msg_keys[M_COUNT] = {
    [M_ROLE] = KEY("role"),
    [M_CONTENT] = KEY("content"),
    [M_NAME] = KEY("name"),
    [M_TOOL_CALL_ID] = KEY("tool_call_id"),
};

/* Same names and order as request.c's role_names. */
static const struct {
    key_name name;
    sl_role role;
} roles[] = {
    {KEY("system"), SL_ROLE_SYSTEM},       {KEY("developer"), SL_ROLE_DEVELOPER}, {KEY("user"), SL_ROLE_USER},
    {KEY("assistant"), SL_ROLE_ASSISTANT}, {KEY("tool"), SL_ROLE_TOOL},
};

static int key_lookup(const key_name *keys, size_t n, const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i].len == len && !memcmp(keys[i].name, s, len))
            return (int)i;
    return -1;
}

/* ---- the state of one decode ---- */

typedef struct fdec {
    lex_cur c;
    const unsigned char *base;
    sl_arena *arena;
    sl_request *r;
    bool so_object;     /* stream_options is an object (not null) */
    bool has_mt, has_mct;
    int64_t mt, mct;    /* max_tokens, max_completion_tokens */
} fdec;

/* Passes "key" and ':' at c->p, returning the unescaped key bytes. */
static int read_key(fdec *f, const unsigned char **key, size_t *len)
{
    bool escaped;
    if (f->c.p >= f->c.end || *f->c.p != '"' || lex_string(&f->c, key, len, &escaped) || escaped)
        return UNSUP; /* an escaped key could decode to any name: not worth decoding */
    lex_skip_ws(&f->c);
    if (f->c.p >= f->c.end || *f->c.p != ':')
        return UNSUP;
    f->c.p++;
    lex_skip_ws(&f->c);
    return 0;
}

/* After a member: ',' (then whitespace; returns 0, *done false) or the
 * object's or array's closing byte (*done true). */
static int next_member(fdec *f, unsigned char close, bool *done)
{
    lex_skip_ws(&f->c);
    if (f->c.p >= f->c.end)
        return UNSUP;
    if (*f->c.p == close) {
        f->c.p++;
        *done = true;
        return 0;
    }
    if (*f->c.p != ',')
        return UNSUP;
    f->c.p++;
    lex_skip_ws(&f->c);
    *done = false;
    return 0;
}

/* Opens an object or array at c->p; *empty when it closes at once. */
static int open_container(fdec *f, unsigned char open, bool *empty)
{
    if (f->c.p >= f->c.end || *f->c.p != open)
        return UNSUP;
    f->c.p++;
    lex_skip_ws(&f->c);
    *empty = f->c.p < f->c.end && *f->c.p == (open == '{' ? '}' : ']');
    if (*empty)
        f->c.p++;
    return 0;
}

/* Passes JSON null at c->p if there is one. */
static int take_null(fdec *f, bool *is_null)
{
    *is_null = f->c.p < f->c.end && *f->c.p == 'n';
    return *is_null ? lex_literal(&f->c, "null", 4) : 0;
}

/* A string value, decoded into the arena (NUL-terminated). */
static int read_string(fdec *f, const char **out, size_t *out_len)
{
    const unsigned char *raw;
    size_t n;
    bool escaped;
    if (f->c.p >= f->c.end || *f->c.p != '"' || lex_string(&f->c, &raw, &n, &escaped))
        return UNSUP;
    char *s = sl_arena_alloc(f->arena, n + 1);
    if (!s)
        return UNSUP; /* the full decoder reports running out of memory */
    size_t len = n;
    if (escaped)
        len = lex_decode(raw, n, s);
    else
        memcpy(s, raw, n);
    s[len] = 0;
    *out = s;
    if (out_len)
        *out_len = len;
    return 0;
}

/* An optional string: NULL for JSON null. */
static int read_opt_string(fdec *f, const char **out)
{
    bool is_null;
    if (take_null(f, &is_null))
        return UNSUP;
    if (is_null) {
        *out = NULL;
        return 0;
    }
    return read_string(f, out, NULL);
}

/* A number as request.c's tree holds it: an integer token (*is_int) or a
 * real, which jansson reads with strtod (in the C locale Sluice runs in; a
 * locale whose decimal point is not '.' makes strtod stop early, a decline). */
static int read_number(fdec *f, bool *is_int, int64_t *i, double *d)
{
    lex_num n;
    if (lex_number(&f->c, &n))
        return UNSUP;
    if (!n.real) {
        if (lex_int_value(&n, i))
            return UNSUP;
        *is_int = true;
        *d = (double)*i;
        return 0;
    }
    /* The full path sends reals upstream with 15 significant digits
     * (SL_API_JSON_DUMP_FLAGS); a real of at most 15 digits reads back as the
     * same double from either text, one with more would not. */
    int sig = 0;
    bool lead = true;
    for (const unsigned char *q = n.start; q < n.end && *q != 'e' && *q != 'E'; q++) {
        if (!lex_is_digit(*q) || (lead && *q == '0'))
            continue;
        lead = false;
        sig++;
    }
    if (sig > 15)
        return UNSUP;
    char tmp[64];
    size_t len = (size_t)(n.end - n.start);
    if (len >= sizeof tmp)
        return UNSUP;
    memcpy(tmp, n.start, len);
    tmp[len] = 0;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + len || (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)))
        return UNSUP; /* overflow, which the full parser refuses; it keeps underflow, as here */
    *is_int = false;
    *d = v;
    return 0;
}

/* request.c's opt_number: a number in [lo, hi], or null (absent). */
static int read_opt_number(fdec *f, double lo, double hi, bool *has, double *out)
{
    bool is_null, is_int;
    int64_t i;
    double d;
    if (take_null(f, &is_null))
        return UNSUP;
    if (is_null)
        return 0;
    if (read_number(f, &is_int, &i, &d) || !(d >= lo && d <= hi))
        return UNSUP;
    if (has)
        *has = true;
    *out = d;
    return 0;
}

/* request.c's opt_int: an integer, or an integral real below 9e18 in
 * magnitude, in [lo, hi]; or null (absent). */
static int read_opt_int(fdec *f, int64_t lo, int64_t hi, bool *has, int64_t *out)
{
    bool is_null, is_int;
    int64_t x;
    double d;
    if (take_null(f, &is_null))
        return UNSUP;
    if (is_null)
        return 0;
    if (read_number(f, &is_int, &x, &d))
        return UNSUP;
    if (!is_int) {
        if (!(floor(d) == d && fabs(d) < 9.0e18))
            return UNSUP;
        x = (int64_t)d;
    }
    if (x < lo || x > hi)
        return UNSUP;
    if (has)
        *has = true;
    *out = x;
    return 0;
}

/* A boolean; null leaves *out as it is (absent). */
static int read_opt_bool(fdec *f, bool *out)
{
    if (f->c.p >= f->c.end)
        return UNSUP;
    switch (*f->c.p) {
    case 't': *out = true; return lex_literal(&f->c, "true", 4);
    case 'f': *out = false; return lex_literal(&f->c, "false", 5);
    case 'n': return lex_literal(&f->c, "null", 4);
    default: return UNSUP;
    }
}

/* Appends s to an arena array that doubles as it fills. */
static int push_string(fdec *f, const char ***arr, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        const char **grown = sl_arena_alloc(f->arena, ncap * sizeof *grown);
        if (!grown)
            return UNSUP;
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
static int read_texts(fdec *f, bool allow_empty, size_t max_items, const char ***out, size_t *n_out)
{
    const char *s;
    size_t len, n = 0, cap = 0;
    const char **arr = NULL;
    if (f->c.p < f->c.end && *f->c.p == '"') {
        if (read_string(f, &s, &len) || (!allow_empty && len == 0) || push_string(f, &arr, &n, &cap, s))
            return UNSUP;
    } else {
        bool done;
        if (open_container(f, '[', &done) || done)
            return UNSUP; /* not an array, or empty: an error */
        while (!done) {
            if (read_string(f, &s, &len) || (!allow_empty && len == 0) || push_string(f, &arr, &n, &cap, s) ||
                next_member(f, ']', &done))
                return UNSUP;
        }
        if (n > max_items)
            return UNSUP;
    }
    *out = arr;
    *n_out = n;
    return 0;
}

/* stop: null, a string, or an array of at most 4 strings (empty allowed). */
static int read_stop(fdec *f)
{
    sl_request *r = f->r;
    bool is_null, done;
    if (take_null(f, &is_null))
        return UNSUP;
    if (is_null)
        return 0;
    if (f->c.p < f->c.end && *f->c.p == '"') {
        r->n_stop = 1;
        return read_string(f, &r->stop[0], NULL);
    }
    if (open_container(f, '[', &done))
        return UNSUP;
    while (!done) {
        if (r->n_stop == SL_ARRAY_LEN(r->stop) || read_string(f, &r->stop[r->n_stop], NULL))
            return UNSUP;
        r->n_stop++;
        if (next_member(f, ']', &done))
            return UNSUP;
    }
    return 0;
}

/* stream_options: null, or an object whose only key is include_usage. Its
 * byte span is kept: the upstream body replaces it. */
static int read_stream_options(fdec *f)
{
    sl_request *r = f->r;
    const unsigned char *start = f->c.p;
    bool is_null, done;
    if (take_null(f, &is_null))
        return UNSUP;
    if (!is_null) {
        if (open_container(f, '{', &done))
            return UNSUP;
        f->so_object = true;
        if (!done) {
            const unsigned char *key;
            size_t klen;
            if (read_key(f, &key, &klen) || klen != 13 || memcmp(key, "include_usage", 13) ||
                read_opt_bool(f, &r->include_usage) || next_member(f, '}', &done) || !done)
                return UNSUP; /* another key, repeated or not */
        }
    }
    r->raw_so_off = (size_t)(start - f->base);
    r->raw_so_len = (size_t)(f->c.p - start);
    return 0;
}

/* One chat message object. */
static int read_message(fdec *f, sl_api_message *m)
{
    unsigned seen = 0;
    bool done;
    const char *tool_call_id = NULL;
    if (open_container(f, '{', &done) || done)
        return UNSUP;
    while (!done) {
        const unsigned char *key;
        size_t klen;
        if (read_key(f, &key, &klen))
            return UNSUP;
        int id = key_lookup(msg_keys, M_COUNT, key, klen);
        if (id < 0 || (seen & BIT(id)))
            return UNSUP;
        seen |= BIT(id);
        int rc = 0;
        switch (id) {
        case M_ROLE: {
            const char *s;
            size_t len, i;
            rc = read_string(f, &s, &len);
            for (i = 0; !rc && i < SL_ARRAY_LEN(roles); i++)
                if (roles[i].name.len == len && !memcmp(roles[i].name.name, s, len))
                    break;
            if (rc || i == SL_ARRAY_LEN(roles))
                return UNSUP;
            m->role = roles[i].role;
            break;
        }
        case M_CONTENT: rc = read_string(f, &m->text, NULL); break;
        case M_NAME: rc = read_opt_string(f, &m->name); break;
        default: rc = read_opt_string(f, &tool_call_id); break;
        }
        if (rc || next_member(f, '}', &done))
            return UNSUP;
    }
    if (!(seen & BIT(M_ROLE)) || !(seen & BIT(M_CONTENT)))
        return UNSUP;
    /* request.c reads tool_call_id only for tool messages, where it is required */
    if (m->role == SL_ROLE_TOOL) {
        if (!tool_call_id)
            return UNSUP;
        m->tool_call_id = tool_call_id;
    }
    return 0;
}

static int read_messages(fdec *f)
{
    sl_request *r = f->r;
    bool done;
    size_t cap = 0;
    if (open_container(f, '[', &done) || done)
        return UNSUP;
    while (!done) {
        if (r->n_messages == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            sl_api_message *grown = sl_arena_alloc(f->arena, ncap * sizeof *grown);
            if (!grown)
                return UNSUP;
            if (cap)
                memcpy(grown, r->messages, cap * sizeof *grown);
            r->messages = grown;
            cap = ncap;
        }
        sl_api_message *m = &r->messages[r->n_messages++];
        memset(m, 0, sizeof *m);
        if (read_message(f, m) || next_member(f, ']', &done))
            return UNSUP;
    }
    return 0;
}

static int read_member(fdec *f, root_key k)
{
    sl_request *r = f->r;
    switch (k) {
    case K_MODEL: {
        const unsigned char *start = f->c.p;
        size_t len;
        if (read_string(f, &r->model, &len) || len == 0 || len > SL_API_MODEL_MAX_LEN)
            return UNSUP;
        r->raw_model_off = (size_t)(start - f->base);
        r->raw_model_len = (size_t)(f->c.p - start);
        return 0;
    }
    case K_MESSAGES: return read_messages(f);
    case K_PROMPT: return read_texts(f, true, SIZE_MAX, &r->prompts, &r->n_prompts);
    case K_INPUT: return read_texts(f, false, SL_API_MAX_EMBED_INPUTS, &r->inputs, &r->n_inputs);
    case K_STREAM: return read_opt_bool(f, &r->stream);
    case K_STREAM_OPTIONS: return read_stream_options(f);
    case K_TEMPERATURE: return read_opt_number(f, 0, 2, &r->has_temperature, &r->temperature);
    case K_TOP_P: return read_opt_number(f, 0, 1, &r->has_top_p, &r->top_p);
    case K_PRESENCE_PENALTY: return read_opt_number(f, -2, 2, NULL, &r->presence_penalty);
    case K_FREQUENCY_PENALTY: return read_opt_number(f, -2, 2, NULL, &r->frequency_penalty);
    case K_N: {
        int64_t x = 1;
        if (read_opt_int(f, 1, SL_API_MAX_N, NULL, &x))
            return UNSUP;
        r->n = (int)x;
        return 0;
    }
    case K_MAX_TOKENS: return read_opt_int(f, 1, INT64_MAX, &f->has_mt, &f->mt);
    case K_MAX_COMPLETION_TOKENS: return read_opt_int(f, 1, INT64_MAX, &f->has_mct, &f->mct);
    case K_SEED: return read_opt_int(f, INT64_MIN, INT64_MAX, &r->has_seed, &r->seed);
    case K_STOP: return read_stop(f);
    case K_USER: return read_opt_string(f, &r->user);
    case K_ENCODING_FORMAT: {
        const char *s;
        bool is_null;
        if (take_null(f, &is_null))
            return UNSUP;
        if (is_null)
            return 0;
        if (read_string(f, &s, NULL))
            return UNSUP;
        if (!strcmp(s, "float"))
            r->encoding_format = "float";
        else if (!strcmp(s, "base64"))
            r->encoding_format = "base64";
        else
            return UNSUP;
        return 0;
    }
    case K_DIMENSIONS: return read_opt_int(f, 1, INT64_MAX, &r->has_dimensions, &r->dimensions);
    case K_COUNT: break;
    }
    return UNSUP;
}

int sl_api_decode_fast(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out)
{
    *out = NULL;
    if (len == 0 || (unsigned)kind >= SL_ARRAY_LEN(allowed_keys))
        return UNSUP; /* body may be NULL when empty */
    sl_request *r = sl_arena_calloc(arena, sizeof *r);
    if (!r)
        return UNSUP;
    r->kind = kind;
    r->n = 1;
    fdec f = {.c = {.p = (const unsigned char *)body, .end = (const unsigned char *)body + len},
              .base = (const unsigned char *)body,
              .arena = arena,
              .r = r};
    lex_skip_ws(&f.c);
    bool done;
    if (open_container(&f, '{', &done) || done)
        return UNSUP;
    uint32_t seen = 0;
    const uint32_t allowed = allowed_keys[kind];
    while (!done) {
        const unsigned char *key;
        size_t klen;
        if (read_key(&f, &key, &klen))
            return UNSUP;
        int k = key_lookup(root_keys, K_COUNT, key, klen);
        if (k < 0 || !(allowed & BIT(k)) || (seen & BIT(k)))
            return UNSUP;
        seen |= BIT(k);
        if (read_member(&f, (root_key)k) || next_member(&f, '}', &done))
            return UNSUP;
    }
    r->raw_close_off = (size_t)(f.c.p - 1 - f.base); /* next_member passed the '}' last */
    lex_skip_ws(&f.c);
    if (f.c.p != f.c.end)
        return UNSUP;

    /* what request.c requires or cross-checks */
    const uint32_t required = BIT(K_MODEL) | (kind == SL_API_CHAT          ? BIT(K_MESSAGES)
                                              : kind == SL_API_COMPLETIONS ? BIT(K_PROMPT)
                                                                           : BIT(K_INPUT));
    if ((seen & required) != required)
        return UNSUP;
    if (f.so_object && !r->stream)
        return UNSUP; /* stream_options without stream: a 400 */
    if (f.has_mt) {
        r->has_max_tokens = true;
        r->max_tokens = f.mt;
    }
    if (f.has_mct) { /* max_completion_tokens wins */
        r->has_max_tokens = true;
        r->max_tokens = f.mct;
    }

    char *raw = sl_arena_alloc(arena, len + 1);
    if (!raw)
        return UNSUP;
    memcpy(raw, body, len);
    raw[len] = 0;
    r->raw = raw;
    r->raw_len = len;
    *out = r;
    return 0;
}

/* ---- the upstream body ---- */

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
    size_t mark = out->len, at = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < n_sp; i++) {
        rc = sl_buf_append(out, r->raw + at, sp[i].off - at);
        if (!rc)
            rc = sp[i].text ? sl_buf_append(out, sp[i].text, sp[i].text_len)
                            : sl_api_json_quote(out, upstream_model, strlen(upstream_model));
        at = sp[i].off + sp[i].len;
    }
    if (!rc)
        rc = sl_buf_append(out, r->raw + at, r->raw_len - at);
    if (rc)
        return sl_buf_rollback(out, mark, rc == SL_ENOMEM ? SL_ENOMEM : SL_ETOOBIG);
    return 0;
}
