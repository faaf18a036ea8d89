/* A strict single-pass scanner for upstream response bodies and streamed
 * chunks. It validates the whole JSON text and reads only what the gateway
 * needs (usage counts; whether choices carry content or a finish_reason),
 * without building a tree or allocating: the relay's hot path, where a full
 * parse per chunk cost more than everything else the gateway does.
 *
 * Contract with the full parser (sl_api_json_load + the tree readers in
 * response.c): when this returns 0, the text is one that the full parser
 * accepts, and the results are the ones the tree readers would give. It is
 * allowed to be stricter: anything it does not handle exactly (malformed
 * JSON, a root that is not an object, nesting deeper than SL_API_MAX_DEPTH,
 * \u0000 or an unpaired surrogate escape, an escaped key in an object whose
 * keys matter, a repeated key that matters, an integer of more than 18
 * digits, a real whose size it cannot bound) makes it return
 * SL_EUNSUPPORTED, and the caller asks the full parser, which then decides.
 * tests/fuzz/api_scan.c checks this contract against the tree readers.
 *
 * How it stays cheap (about 6 instructions a byte on a compact answer):
 *
 * - The sentinel. A text that can be accepted is '{' ... '}' with only
 *   whitespace around, so sl_api_scan_upstream first finds that last '}'
 *   and passes a pointer to it as `end` to everything below. Every function
 *   here takes a p with p <= end and returns NULL or a p' <= end (the root
 *   object alone returns end + 1), so *p is always readable without a bounds
 *   check. Loops over whitespace and digits need none either: '}' is neither,
 *   so they stop at end at the latest. Strings keep their bound (a '}' is an
 *   ordinary byte inside one): lex_string refuses a string that reaches end,
 *   so a valid one closes before it. A nested container that closes at end
 *   is refused (only the root may), which keeps p' <= end.
 * - Whitespace is skipped only where the byte at p is <= ' ' (LEX_WS):
 *   compact JSON has none, and one comparison settles that.
 * - Values under keys that do not matter, and everything inside objects
 *   whose keys do not matter, are passed by skip_value / skip_container,
 *   which validate exactly as the rest does but record nothing. Only the few
 *   members that matter go through scan_member, val_info and obj_state. */
#include "api/internal.h"

#include <string.h>

/* Which object a member belongs to: decides which keys matter. */
typedef enum { OBJ_SKIP, OBJ_ROOT, OBJ_CHOICE, OBJ_DELTA, OBJ_USAGE, OBJ_DETAILS } obj_kind;

typedef enum { VAL_STRING, VAL_INT, VAL_REAL, VAL_OBJECT, VAL_ARRAY, VAL_LITERAL } val_type;

/* What scan_member learns about the value of a key that matters. */
typedef struct val_info {
    val_type type;
    bool nonempty; /* strings: decodes to at least one byte; arrays: at least one element */
    int64_t i;     /* VAL_INT: its value */
} val_info;

/* Per-object results, filled while the object's members are scanned. */
typedef struct usage_state {
    bool has_prompt, has_completion, has_total, has_cached;
    int64_t prompt, completion, total, cached;
} usage_state;

typedef struct obj_state {
    unsigned seen; /* bit per key that matters: a repeat is refused */
    /* OBJ_ROOT */
    bool choices_array, usage_object;
    size_t n_choices;
    bool any_content, any_finish;
    /* OBJ_CHOICE / OBJ_DELTA */
    bool content, finish;
    /* OBJ_USAGE / OBJ_DETAILS */
    usage_state u;
} obj_state;

typedef const unsigned char *ptr;

/* lex_string behind a call: strings with escapes, bytes >= 0x80 or close to
 * the end of the text, the uncommon ones. */
static __attribute__((noinline)) ptr string_slow(ptr p, ptr end, const unsigned char **raw, size_t *n,
                                                 bool *escaped)
{
    lex_cur c = {.p = p, .end = end, .depth = 0};
    if (lex_string(&c, raw, n, escaped))
        return NULL;
    return c.p;
}

/* Past the string at p (at its opening quote), by lex_string's rules; its
 * raw bytes in *raw, *n, *escaped. The closing quote is before end. The
 * usual string (printable ASCII, no escape) is settled here, sixteen bytes
 * at a time: the first byte that is not plain must be its closing quote. */
static inline __attribute__((always_inline)) ptr string_end(ptr p, ptr end, const unsigned char **raw, size_t *n,
                                                            bool *escaped)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    ptr q = p + 1;
    while (end - q >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
        /* signed compare: bytes >= 0x80 are negative, so below 0x20 too */
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                    _mm_cmplt_epi8(x, space));
        unsigned m = (unsigned)_mm_movemask_epi8(stop);
        if (m) {
            q += __builtin_ctz(m);
            if (*q != '"')
                break;
            *raw = p + 1;
            *n = (size_t)(q - (p + 1));
            *escaped = false;
            return q + 1;
        }
        q += 16;
    }
#endif
    /* the slow path's own out-variables: only their addresses escape, so the
     * caller's stay in registers */
    const unsigned char *slow_raw;
    size_t slow_n;
    bool slow_escaped;
    p = string_slow(p, end, &slow_raw, &slow_n, &slow_escaped);
    if (!p)
        return NULL;
    *raw = slow_raw;
    *n = slow_n;
    *escaped = slow_escaped;
    return p;
}

/* The rest of a number from its '.' or 'e'/'E' at p: JSON's grammar, with
 * lex_sexp's limit on exponents (4 digits). A real is accepted only when
 * its size is bounded below 1e301 (the full parser refuses reals that
 * overflow a double; underflow is accepted by both). */
static ptr real_end(ptr p, size_t int_digits)
{
    long exp;
    p = lex_sfrac(p);
    if (!p || !(p = lex_sexp(p, &exp)))
        return NULL;
    /* |value| < 10^(int_digits + exp) */
    if ((long)int_digits + exp > 300)
        return NULL;
    return p;
}

/* Past the number at p (sentinel: no bounds checks). *is_int tells whether it
 * is an integer, then of at most 18 digits (always inside the full parser's
 * 64-bit range; longer ones are refused) with its value in *val. */
static inline __attribute__((always_inline)) ptr number_end(ptr p, int64_t *val, bool *is_int)
{
    bool neg;
    uint64_t x;
    ptr digits;
    p = lex_sint_head(p, &neg, &x, &digits);
    if (!p)
        return NULL;
    size_t int_digits = (size_t)(p - digits);
    if (*p == '.' || *p == 'e' || *p == 'E') {
        *is_int = false;
        return real_end(p, int_digits);
    }
    if (int_digits > 18)
        return NULL;
    *is_int = true;
    *val = neg ? -(int64_t)x : (int64_t)x;
    return p;
}

/* Past the literal word (n bytes) at p. It must end before end. */
static inline ptr literal_end(ptr p, ptr end, const char *word, size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, word, n))
        return NULL;
    return p + n;
}

static ptr skip_container(ptr p, ptr end, int depth);

/* Past one value at p (whitespace before it already skipped), validated and
 * otherwise ignored; depth: that of the container holding it. */
static inline __attribute__((always_inline)) ptr skip_value(ptr p, ptr end, int depth)
{
    const unsigned char *raw;
    size_t n;
    bool escaped, is_int;
    int64_t x;
    switch (*p) {
    case '"': return string_end(p, end, &raw, &n, &escaped);
    case '{':
    case '[': return skip_container(p, end, depth + 1);
    case 't': return literal_end(p, end, "true", 4);
    case 'f': return literal_end(p, end, "false", 5);
    case 'n': return literal_end(p, end, "null", 4);
    default: return number_end(p, &x, &is_int);
    }
}

/* Past the object or array at p (at its '{' or '['), whose depth is depth
 * (the root object's is 1); keys of any spelling, nothing recorded. Never
 * the root, so it may not close at end. */
static ptr skip_container(ptr p, ptr end, int depth)
{
    if (depth > SL_API_MAX_DEPTH)
        return NULL;
    bool object = *p == '{';
    unsigned char close = object ? '}' : ']';
    p++;
    LEX_WS(p);
    if (*p == close)
        return p == end ? NULL : p + 1;
    for (;;) {
        if (object) {
            const unsigned char *raw;
            size_t n;
            bool escaped;
            LEX_AT(p, '"');
            p = string_end(p, end, &raw, &n, &escaped);
            if (!p)
                return NULL;
            LEX_AT(p, ':');
            p++;
        }
        LEX_WS(p);
        p = skip_value(p, end, depth);
        if (!p)
            return NULL;
        if (*p != ',') {
            LEX_WS(p);
            if (*p == close)
                return p == end ? NULL : p + 1;
            if (*p != ',')
                return NULL;
        }
        p++;
    }
}

/* The id of a key that matters in an object of kind k (bit index + 1), or 0.
 * Compared by length first, then with memcmp of a constant size, which the
 * compiler inlines: this runs for every key of the objects that matter. */
static int key_id(obj_kind k, const unsigned char *s, size_t n)
{
#define IS(lit) (!memcmp(s, lit, sizeof lit - 1))
    switch (k) {
    case OBJ_ROOT:
        switch (n) {
        case 7: return IS("choices") ? 1 : 0;
        case 5: return IS("usage") ? 2 : 0;
        default: return 0;
        }
    case OBJ_CHOICE:
        switch (n) {
        case 4: return IS("text") ? 1 : 0;
        case 5: return IS("delta") ? 2 : 0;
        case 13: return IS("finish_reason") ? 3 : 0;
        default: return 0;
        }
    case OBJ_DELTA:
        switch (n) {
        case 7: return IS("content") ? 1 : IS("refusal") ? 2 : 0;
        case 17: return IS("reasoning_content") ? 3 : 0;
        case 9: return IS("reasoning") ? 4 : 0;
        case 10: return IS("tool_calls") ? 5 : 0;
        case 13: return IS("function_call") ? 6 : 0;
        default: return 0;
        }
    case OBJ_USAGE:
        switch (n) {
        case 13: return IS("prompt_tokens") ? 1 : 0;
        case 17: return IS("completion_tokens") ? 2 : 0;
        case 12: return IS("total_tokens") ? 3 : 0;
        case 21: return IS("prompt_tokens_details") ? 4 : 0;
        default: return 0;
        }
    case OBJ_DETAILS: return n == 13 && IS("cached_tokens") ? 1 : 0;
    default: return 0;
    }
#undef IS
}

/* Folds one member value (already scanned into v, and child when it was an
 * object of a kind that matters or the choices array) into the state of its
 * object. */
static void apply_member(obj_kind k, int id, const val_info *v, const obj_state *child, obj_state *st)
{
    bool nonempty_str = v->type == VAL_STRING && v->nonempty;
    switch (k) {
    case OBJ_ROOT:
        if (id == 1 && v->type == VAL_ARRAY) {
            st->choices_array = true;
            st->n_choices = child->n_choices;
            st->any_content = child->any_content;
            st->any_finish = child->any_finish;
        } else if (id == 2 && v->type == VAL_OBJECT) {
            st->usage_object = true;
            st->u = child->u;
        }
        break;
    case OBJ_CHOICE:
        if (id == 1)
            st->content = st->content || nonempty_str;
        else if (id == 2 && v->type == VAL_OBJECT)
            st->content = st->content || child->content;
        else if (id == 3)
            st->finish = v->type == VAL_STRING;
        break;
    case OBJ_DELTA:
        if (id <= 4)
            st->content = st->content || nonempty_str;
        else if (id == 5)
            st->content = st->content || (v->type == VAL_ARRAY && v->nonempty);
        else
            st->content = st->content || v->type == VAL_OBJECT;
        break;
    case OBJ_USAGE:
        if (id == 4) {
            if (v->type == VAL_OBJECT && child->u.has_cached) {
                st->u.has_cached = true;
                st->u.cached = child->u.cached;
            }
        } else if (v->type == VAL_INT) {
            int64_t x = v->i < 0 ? 0 : v->i;
            if (id == 1) {
                st->u.has_prompt = true;
                st->u.prompt = x;
            } else if (id == 2) {
                st->u.has_completion = true;
                st->u.completion = x;
            } else {
                st->u.has_total = true;
                st->u.total = x;
            }
        }
        break;
    case OBJ_DETAILS:
        if (v->type == VAL_INT) {
            st->u.has_cached = true;
            st->u.cached = v->i < 0 ? 0 : v->i;
        }
        break;
    default:
        break;
    }
}

/* The kind of object the value of key id in an object of kind k is read as
 * (OBJ_SKIP: it is only validated). */
static obj_kind child_kind(obj_kind k, int id)
{
    if (k == OBJ_ROOT && id == 2)
        return OBJ_USAGE;
    if (k == OBJ_CHOICE && id == 2)
        return OBJ_DELTA;
    if (k == OBJ_USAGE && id == 4)
        return OBJ_DETAILS;
    return OBJ_SKIP;
}

static ptr scan_object(ptr p, ptr end, int depth, obj_kind k, obj_state *st);

/* Past the choices array at p (at its '['; depth its own), collecting
 * n_choices, any_content and any_finish over its object elements into st
 * (zeroed by the caller). */
static ptr scan_choices(ptr p, ptr end, int depth, obj_state *st)
{
    p++;
    LEX_WS(p);
    if (*p == ']')
        return p + 1; /* not end: *end is '}' */
    size_t n = 0;
    for (;;) {
        LEX_WS(p);
        if (*p == '{') {
            obj_state el;
            memset(&el, 0, sizeof el);
            p = scan_object(p, end, depth + 1, OBJ_CHOICE, &el);
            if (!p)
                return NULL;
            st->any_content = st->any_content || el.content;
            st->any_finish = st->any_finish || el.finish;
        } else {
            p = skip_value(p, end, depth);
            if (!p)
                return NULL;
        }
        n++;
        if (*p != ',') {
            LEX_WS(p);
            if (*p == ']')
                break;
            if (*p != ',')
                return NULL;
        }
        p++;
    }
    st->n_choices = n;
    return p + 1;
}

/* Past the value at p of key id (one that matters) in an object of kind k
 * and depth depth, folding it into st. */
static ptr scan_member(ptr p, ptr end, int depth, obj_kind k, int id, obj_state *st)
{
    val_info v = {.type = VAL_LITERAL, .nonempty = false, .i = 0};
    obj_state child; /* read by apply_member only where it was zeroed and filled below */
    switch (*p) {
    case '{': {
        v.type = VAL_OBJECT;
        obj_kind ck = child_kind(k, id);
        if (ck == OBJ_SKIP) {
            p = skip_container(p, end, depth + 1);
        } else {
            memset(&child, 0, sizeof child);
            p = scan_object(p, end, depth + 1, ck, &child);
        }
        break;
    }
    case '[':
        v.type = VAL_ARRAY;
        if (k == OBJ_ROOT && id == 1) {
            memset(&child, 0, sizeof child);
            p = scan_choices(p, end, depth + 1, &child);
        } else {
            ptr first = p + 1; /* < end: *p is '[' */
            LEX_WS(first);
            v.nonempty = *first != ']';
            p = skip_container(p, end, depth + 1);
        }
        break;
    case '"': {
        const unsigned char *raw;
        size_t n;
        bool escaped;
        v.type = VAL_STRING;
        p = string_end(p, end, &raw, &n, &escaped);
        v.nonempty = n > 0; /* no escape decodes to nothing (\u0000 is refused) */
        break;
    }
    case 't': p = literal_end(p, end, "true", 4); break;
    case 'f': p = literal_end(p, end, "false", 5); break;
    case 'n': p = literal_end(p, end, "null", 4); break;
    default: {
        bool is_int = false;
        p = number_end(p, &v.i, &is_int);
        v.type = is_int ? VAL_INT : VAL_REAL;
        break;
    }
    }
    if (!p)
        return NULL;
    apply_member(k, id, &v, &child, st);
    return p;
}

/* Past the object at p (at its '{'; depth its own) of kind k (not OBJ_SKIP),
 * folding its members into st (zeroed by the caller). The root (depth 1)
 * must close at end, and returns end + 1. */
static ptr scan_object(ptr p, ptr end, int depth, obj_kind k, obj_state *st)
{
    p++;
    LEX_WS(p);
    if (*p != '}') {
        for (;;) {
            const unsigned char *key;
            size_t key_len;
            bool escaped;
            LEX_AT(p, '"');
            p = string_end(p, end, &key, &key_len, &escaped);
            if (!p || escaped)
                return NULL; /* an escaped key might decode to one that matters */
            int id = key_id(k, key, key_len);
            if (id) {
                if (st->seen & (1u << id))
                    return NULL; /* the full parser keeps the last; we do not track that */
                st->seen |= 1u << id;
            }
            LEX_AT(p, ':');
            p++;
            LEX_WS(p);
            p = id ? scan_member(p, end, depth, k, id, st) : skip_value(p, end, depth);
            if (!p)
                return NULL;
            if (*p != ',') {
                LEX_WS(p);
                if (*p == '}')
                    break;
                if (*p != ',')
                    return NULL;
            }
            p++;
        }
    }
    if ((p == end) != (depth == 1))
        return NULL;
    return p + 1;
}

int sl_api_scan_upstream(const char *data, size_t len, sl_api_scan *out)
{
    memset(out, 0, sizeof *out);
    ptr p, end = lex_sentinel(data, len, &p); /* see the top of this file */
    if (!end)
        return SL_EUNSUPPORTED;
    obj_state root;
    memset(&root, 0, sizeof root);
    if (!scan_object(p, end, 1, OBJ_ROOT, &root))
        return SL_EUNSUPPORTED;
    size_t n = root.choices_array ? root.n_choices : 0;
    out->has_content = root.any_content;
    out->finish = root.any_finish;
    if (root.usage_object) {
        out->usage_only = n == 0;
        const usage_state *u = &root.u;
        if (u->has_prompt || u->has_completion || u->has_total) {
            out->usage.known = true;
            out->usage.prompt_tokens = u->has_prompt ? u->prompt : 0;
            out->usage.completion_tokens = u->has_completion ? u->completion : 0;
            out->usage.total_tokens = u->has_total ? u->total : out->usage.prompt_tokens + out->usage.completion_tokens;
            out->usage.cached_tokens = u->has_cached ? u->cached : 0;
        }
    }
    return 0;
}
