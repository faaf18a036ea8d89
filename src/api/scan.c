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
#include "api/internal.h"

#include <string.h>

typedef lex_cur scan_cur;

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

/* Passes a number. Integers of up to 18 digits always fit the full
 * parser's 64-bit integers; a real is accepted only when its size is bounded
 * below 1e301 (the full parser refuses reals that overflow a double;
 * underflow is accepted by both). */
static int scan_number(scan_cur *c, val_info *v)
{
    lex_num n;
    if (lex_number(c, &n))
        return UNSUP;
    if (n.real) {
        /* |value| < 10^(int_digits + exp) */
        if ((long)n.int_digits + n.exp > 300)
            return UNSUP;
        v->type = VAL_REAL;
        return 0;
    }
    v->type = VAL_INT;
    return lex_int_value(&n, &v->i);
}

static int scan_value(scan_cur *c, obj_kind okind, bool choices, obj_state *child, val_info *v);

/* The id of a key that matters in an object of kind k (bit index + 1), or 0.
 * Compared by length first, then with memcmp of a constant size, which the
 * compiler inlines: this runs for every key of every streamed chunk. */
static int key_id(obj_kind k, const unsigned char *s, size_t n)
{
#define IS(lit) (n == sizeof lit - 1 && !memcmp(s, lit, sizeof lit - 1))
    switch (k) {
    case OBJ_ROOT: return IS("choices") ? 1 : IS("usage") ? 2 : 0;
    case OBJ_CHOICE: return IS("text") ? 1 : IS("delta") ? 2 : IS("finish_reason") ? 3 : 0;
    case OBJ_DELTA:
        return IS("content")             ? 1
               : IS("refusal")           ? 2
               : IS("reasoning_content") ? 3
               : IS("reasoning")         ? 4
               : IS("tool_calls")        ? 5
               : IS("function_call")     ? 6
                                         : 0;
    case OBJ_USAGE:
        return IS("prompt_tokens")           ? 1
               : IS("completion_tokens")     ? 2
               : IS("total_tokens")          ? 3
               : IS("prompt_tokens_details") ? 4
                                             : 0;
    case OBJ_DETAILS: return IS("cached_tokens") ? 1 : 0;
    default: return 0;
    }
#undef IS
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
    lex_skip_ws(c);
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
        if (lex_string(c, &key, &key_len, &escaped))
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
        lex_skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return UNSUP;
        c->p++;
        lex_skip_ws(c);
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
        lex_skip_ws(c);
        if (c->p >= c->end)
            return UNSUP;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            return UNSUP;
        c->p++;
        lex_skip_ws(c);
    }
}

/* c->p at '['. For the choices array, st collects n_choices, any_content and
 * any_finish over its object elements. */
static int scan_array(scan_cur *c, bool choices, obj_state *st, val_info *v)
{
    c->p++;
    lex_skip_ws(c);
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
        lex_skip_ws(c);
        if (c->p >= c->end)
            return UNSUP;
        if (*c->p == ']') {
            c->p++;
            break;
        }
        if (*c->p != ',')
            return UNSUP;
        c->p++;
        lex_skip_ws(c);
    }
    st->n_choices = n;
    v->nonempty = true;
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
        if (lex_string(c, &raw, &n, &escaped))
            return UNSUP;
        v->type = VAL_STRING;
        v->nonempty = n > 0; /* no escape decodes to nothing (\u0000 is refused) */
        return 0;
    }
    case 't':
        v->type = VAL_LITERAL;
        return lex_literal(c, "true", 4);
    case 'f':
        v->type = VAL_LITERAL;
        return lex_literal(c, "false", 5);
    case 'n':
        v->type = VAL_LITERAL;
        return lex_literal(c, "null", 4);
    default:
        return scan_number(c, v);
    }
}

int sl_api_scan_upstream(const char *data, size_t len, sl_api_scan *out)
{
    memset(out, 0, sizeof *out);
    scan_cur c = {.p = (const unsigned char *)data, .end = (const unsigned char *)data + len, .depth = 0};
    lex_skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return UNSUP;
    obj_state root;
    memset(&root, 0, sizeof root);
    val_info v;
    if (scan_value(&c, OBJ_ROOT, false, &root, &v))
        return UNSUP;
    lex_skip_ws(&c);
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
