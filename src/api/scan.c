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
 * tests/fuzz/api_scan.c checks this contract against the tree readers. */
#include "api/api.h"

#include <string.h>

typedef struct scan_cur {
    const unsigned char *p, *end;
    int depth;
} scan_cur;

/* Which object a member belongs to: decides which keys matter. */
typedef enum { OBJ_SKIP, OBJ_ROOT, OBJ_CHOICE, OBJ_DELTA, OBJ_USAGE, OBJ_DETAILS } obj_kind;

typedef enum { VAL_STRING, VAL_INT, VAL_REAL, VAL_OBJECT, VAL_ARRAY, VAL_LITERAL } val_type;

/* What the caller of scan_value learns about the value it just passed. */
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

#define UNSUP SL_EUNSUPPORTED

static inline void skip_ws(scan_cur *c)
{
    /* compact JSON has none: one comparison settles the usual case */
    while (c->p < c->end && *c->p <= ' ' &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
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
            return UNSUP;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (2..4 bytes, no overlongs,
 * no surrogates, at most U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
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

/* Bytes that may appear raw inside a string without a closer look: printable
 * ASCII except '"' and '\\'. */
static const bool plain_byte[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5B] = 1, [0x5D ... 0x7F] = 1,
};

/* The first byte at or after p that is not plain (a control byte, '"', '\\'
 * or a byte >= 0x80), or end. Eight bytes at a time: the hot loop of the
 * relay's chunk scan. */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
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
    while (p < end && plain_byte[*p])
        p++;
    return p;
}

/* Passes a string (c->p at its opening quote). *raw and *raw_len: the bytes
 * between the quotes; *escaped tells whether a backslash occurs in them. */
static int scan_string(scan_cur *c, const unsigned char **raw, size_t *raw_len, bool *escaped)
{
    const unsigned char *p = c->p + 1, *end = c->end;
    bool esc = false;
    *raw = p;
    for (;;) {
        p = skip_plain(p, end);
        if (p >= end)
            return UNSUP;
        unsigned char b = *p;
        if (b == '"')
            break;
        if (b < 0x20)
            return UNSUP;
        if (b < 0x80 && b != '\\') {
            p++;
            continue;
        }
        if (b >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (!n)
                return UNSUP;
            p += n;
            continue;
        }
        esc = true;
        if (end - p < 2)
            return UNSUP;
        unsigned char e = p[1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            p += 2;
            continue;
        }
        if (e != 'u' || end - p < 6)
            return UNSUP;
        unsigned v;
        if (hex4(p + 2, &v))
            return UNSUP;
        p += 6;
        if (v == 0 || (v >= 0xDC00 && v <= 0xDFFF))
            return UNSUP; /* NUL, or a low surrogate without its high half */
        if (v >= 0xD800 && v <= 0xDBFF) {
            unsigned lo;
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return UNSUP;
            p += 6;
        }
    }
    *raw_len = (size_t)(p - *raw);
    *escaped = esc;
    c->p = p + 1;
    return 0;
}

static bool is_digit(unsigned char b) { return b >= '0' && b <= '9'; }

/* Passes a number, by JSON's grammar. Integers of up to 18 digits always fit
 * the full parser's 64-bit integers; a real is accepted only when its size
 * is bounded below 1e301 (the full parser refuses reals that overflow a
 * double; underflow is accepted by both). */
static int scan_number(scan_cur *c, val_info *v)
{
    const unsigned char *p = c->p, *end = c->end;
    bool neg = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    const unsigned char *int_start = p;
    if (p >= end || !is_digit(*p))
        return UNSUP;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p))
            p++;
    }
    size_t int_digits = (size_t)(p - int_start);
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        if (p >= end || !is_digit(*p))
            return UNSUP;
        while (p < end && is_digit(*p))
            p++;
    }
    long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        const unsigned char *e0 = p;
        while (p < end && is_digit(*p)) {
            if (p - e0 >= 4)
                return UNSUP; /* 5+ exponent digits: not bounded here */
            exp = exp * 10 + (*p - '0');
            p++;
        }
        if (p == e0)
            return UNSUP;
        if (eneg)
            exp = -exp;
    }
    if (real) {
        /* |value| < 10^(int_digits + exp) */
        if ((long)int_digits + exp > 300)
            return UNSUP;
        v->type = VAL_REAL;
    } else {
        if (int_digits > 18)
            return UNSUP;
        int64_t x = 0;
        for (const unsigned char *q = int_start; q < p; q++)
            x = x * 10 + (*q - '0');
        v->type = VAL_INT;
        v->i = neg ? -x : x;
    }
    c->p = p;
    return 0;
}

static int scan_value(scan_cur *c, obj_kind okind, bool choices, obj_state *child, val_info *v);

/* The id of a key that matters in an object of kind k (bit index + 1), or 0. */
typedef struct scan_key {
    const char *name;
    size_t len;
} scan_key;
#define KEY(s) {s, sizeof s - 1}

static int key_id(obj_kind k, const unsigned char *s, size_t n)
{
    static const scan_key root[] = {KEY("choices"), KEY("usage")};
    static const scan_key choice[] = {KEY("text"), KEY("delta"), KEY("finish_reason")};
    static const scan_key delta[] = {KEY("content"),   KEY("refusal"),    KEY("reasoning_content"),
                                     KEY("reasoning"), KEY("tool_calls"), KEY("function_call")};
    static const scan_key usage[] = {KEY("prompt_tokens"), KEY("completion_tokens"), KEY("total_tokens"),
                                     KEY("prompt_tokens_details")};
    static const scan_key details[] = {KEY("cached_tokens")};
    const scan_key *keys;
    size_t nk;
    switch (k) {
    case OBJ_ROOT: keys = root; nk = SL_ARRAY_LEN(root); break;
    case OBJ_CHOICE: keys = choice; nk = SL_ARRAY_LEN(choice); break;
    case OBJ_DELTA: keys = delta; nk = SL_ARRAY_LEN(delta); break;
    case OBJ_USAGE: keys = usage; nk = SL_ARRAY_LEN(usage); break;
    case OBJ_DETAILS: keys = details; nk = SL_ARRAY_LEN(details); break;
    default: return 0;
    }
    for (size_t i = 0; i < nk; i++)
        if (keys[i].len == n && !memcmp(keys[i].name, s, n))
            return (int)i + 1;
    return 0;
}

/* Folds one member value (already scanned into v, and child when it was an
 * object or the choices array) into the state of its object. */
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

/* The kind of object a member's value is, when it is one, and whether an
 * array value is the choices array. */
static obj_kind child_kind(obj_kind k, int id, bool *choices)
{
    *choices = k == OBJ_ROOT && id == 1;
    if (k == OBJ_ROOT && id == 2)
        return OBJ_USAGE;
    if (k == OBJ_CHOICE && id == 2)
        return OBJ_DELTA;
    if (k == OBJ_USAGE && id == 4)
        return OBJ_DETAILS;
    return OBJ_SKIP;
}

/* c->p at '{'. */
static int scan_object(scan_cur *c, obj_kind k, obj_state *st)
{
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        if (c->p >= c->end || *c->p != '"')
            return UNSUP;
        const unsigned char *key;
        size_t key_len;
        bool escaped;
        if (scan_string(c, &key, &key_len, &escaped))
            return UNSUP;
        int id = 0;
        if (k != OBJ_SKIP) {
            if (escaped)
                return UNSUP; /* it might decode to a key that matters */
            id = key_id(k, key, key_len);
            if (id) {
                if (st->seen & (1u << id))
                    return UNSUP; /* the full parser keeps the last; we do not track that */
                st->seen |= 1u << id;
            }
        }
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return UNSUP;
        c->p++;
        skip_ws(c);
        bool choices;
        obj_kind ck = id ? child_kind(k, id, &choices) : OBJ_SKIP;
        if (!id)
            choices = false;
        obj_state child; /* read only for keys that matter */
        if (id)
            memset(&child, 0, sizeof child);
        val_info v;
        if (scan_value(c, ck, choices, &child, &v))
            return UNSUP;
        if (id)
            apply_member(k, id, &v, &child, st);
        skip_ws(c);
        if (c->p >= c->end)
            return UNSUP;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            return UNSUP;
        c->p++;
        skip_ws(c);
    }
}

/* c->p at '['. For the choices array, st collects n_choices, any_content and
 * any_finish over its object elements. */
static int scan_array(scan_cur *c, bool choices, obj_state *st, val_info *v)
{
    c->p++;
    skip_ws(c);
    size_t n = 0;
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        v->nonempty = false;
        return 0;
    }
    for (;;) {
        obj_state el; /* read only for the choices array */
        if (choices)
            memset(&el, 0, sizeof el);
        val_info ev;
        if (scan_value(c, choices ? OBJ_CHOICE : OBJ_SKIP, false, &el, &ev))
            return UNSUP;
        n++;
        if (choices && ev.type == VAL_OBJECT) {
            st->any_content = st->any_content || el.content;
            st->any_finish = st->any_finish || el.finish;
        }
        skip_ws(c);
        if (c->p >= c->end)
            return UNSUP;
        if (*c->p == ']') {
            c->p++;
            break;
        }
        if (*c->p != ',')
            return UNSUP;
        c->p++;
        skip_ws(c);
    }
    st->n_choices = n;
    v->nonempty = true;
    return 0;
}

static int scan_literal(scan_cur *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n))
        return UNSUP;
    c->p += n;
    return 0;
}

/* Passes one value at c->p (whitespace before it already skipped). An object
 * is scanned as kind okind into child; an array as the choices array when
 * choices is set. */
static int scan_value(scan_cur *c, obj_kind okind, bool choices, obj_state *child, val_info *v)
{
    memset(v, 0, sizeof *v);
    if (c->p >= c->end)
        return UNSUP;
    unsigned char b = *c->p;
    int rc;
    switch (b) {
    case '{':
    case '[':
        if (++c->depth > SL_API_MAX_DEPTH)
            return UNSUP;
        if (b == '{') {
            v->type = VAL_OBJECT;
            rc = scan_object(c, okind, child);
        } else {
            v->type = VAL_ARRAY;
            rc = scan_array(c, choices, child, v);
        }
        c->depth--;
        return rc;
    case '"': {
        const unsigned char *raw;
        size_t n;
        bool escaped;
        if (scan_string(c, &raw, &n, &escaped))
            return UNSUP;
        v->type = VAL_STRING;
        v->nonempty = n > 0; /* no escape decodes to nothing (\u0000 is refused) */
        return 0;
    }
    case 't':
        v->type = VAL_LITERAL;
        return scan_literal(c, "true");
    case 'f':
        v->type = VAL_LITERAL;
        return scan_literal(c, "false");
    case 'n':
        v->type = VAL_LITERAL;
        return scan_literal(c, "null");
    default:
        return scan_number(c, v);
    }
}

int sl_api_scan_upstream(const char *data, size_t len, sl_api_scan *out)
{
    memset(out, 0, sizeof *out);
    scan_cur c = {.p = (const unsigned char *)data, .end = (const unsigned char *)data + len, .depth = 0};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return UNSUP;
    obj_state root;
    memset(&root, 0, sizeof root);
    val_info v;
    if (scan_value(&c, OBJ_ROOT, false, &root, &v))
        return UNSUP;
    skip_ws(&c);
    if (c.p != c.end)
        return UNSUP;
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
