/* YAML text -> cfg_node tree, driven by libfyaml's event parser.
 *
 * We build our own small tree rather than use libfyaml's document API because
 * we need a line:col for every node (collections included), hard limits on
 * depth and node count that hold before memory is spent, and full control of
 * diagnostics: libfyaml's own messages are collected, never printed. */
#include "config/config_int.h"

#include <libfyaml.h>
#include <stdio.h>
#include <string.h>

typedef struct frame {
    cfg_node *coll;         /* the open mapping or sequence */
    cfg_node *pending_key;  /* mappings: a key waiting for its value */
} frame;

typedef struct builder {
    sl_arena *a;
    const char *src;        /* the whole input, for single-quoted scalars */
    size_t src_len;
    sl_config_diags *d;
    frame stack[SL_CONFIG_MAX_DEPTH];
    int depth;
    cfg_node *root;
    size_t nodes;
    int docs;
    bool failed;            /* a limit or structural error: stop and report */
    bool bad;               /* an error that lets parsing go on (to find more) but fails the load */
    bool oom;
} builder;

/* libfyaml insists on an output target even while collecting; drop it all. */
static void discard_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag, (void)user, (void)buf, (void)len;
}

static cfg_node *new_node(builder *b, cfg_kind kind, const struct fy_mark *m)
{
    if (b->nodes >= SL_CONFIG_MAX_NODES) {
        sl_config_diag_addf(b->d, true, m ? m->line + 1 : 0, m ? m->column + 1 : 0,
                            "the file has more than %d YAML nodes; a Sluice config is far smaller",
                            SL_CONFIG_MAX_NODES);
        b->failed = true;
        return NULL;
    }
    cfg_node *n = sl_arena_calloc(b->a, sizeof *n);
    if (!n) {
        b->oom = b->failed = true;
        return NULL;
    }
    b->nodes++;
    n->kind = kind;
    /* libfyaml marks are 0-based; ours are 1-based like every editor */
    n->line = m ? m->line + 1 : 0;
    n->col = m ? m->column + 1 : 0;
    n->text = "";
    return n;
}

static void append_child(cfg_node *parent, cfg_node *n)
{
    if (parent->last)
        parent->last->next = n;
    else
        parent->first = n;
    parent->last = n;
    parent->count++;
}

/* Places a finished (or just opened) node under the open collection. */
static void attach(builder *b, cfg_node *n)
{
    if (b->depth == 0) {
        if (!b->root)
            b->root = n;
        return;
    }
    frame *f = &b->stack[b->depth - 1];
    if (f->coll->kind == CFG_SEQ) {
        append_child(f->coll, n);
    } else if (!f->pending_key) {
        f->pending_key = n;
    } else {
        n->key = f->pending_key;
        f->pending_key = NULL;
        append_child(f->coll, n);
    }
}

static void open_collection(builder *b, cfg_kind kind, const struct fy_mark *m)
{
    if (b->depth >= SL_CONFIG_MAX_DEPTH) {
        sl_config_diag_addf(b->d, true, m ? m->line + 1 : 0, m ? m->column + 1 : 0,
                            "YAML nesting is deeper than %d levels", SL_CONFIG_MAX_DEPTH);
        b->failed = true;
        return;
    }
    cfg_node *n = new_node(b, kind, m);
    if (!n)
        return;
    attach(b, n);
    b->stack[b->depth].coll = n;
    b->stack[b->depth].pending_key = NULL;
    b->depth++;
}

static void close_collection(builder *b)
{
    if (b->depth <= 0)
        return;
    frame *f = &b->stack[b->depth - 1];
    if (f->pending_key) {
        /* a key with no value event cannot happen in a well-formed stream;
         * keep the tree consistent anyway by giving it a null value */
        cfg_node *v = sl_arena_calloc(b->a, sizeof *v);
        if (v) {
            v->kind = CFG_SCALAR;
            v->plain = true;
            v->text = "";
            v->line = f->pending_key->line;
            v->col = f->pending_key->col;
            v->key = f->pending_key;
            append_child(f->coll, v);
        }
        f->pending_key = NULL;
    }
    b->depth--;
}

/* Unfolds a single-quoted scalar from the source text, starting just after
 * its opening quote: '' is one quote, a line break folds to a space, n empty
 * lines to n newlines, and whitespace around breaks is dropped (YAML 1.2
 * 7.3.2). We do this ourselves because libfyaml 0.7 leaks the buffer it
 * builds for such scalars when they hold many '' escapes. Returns the
 * arena copy, or NULL when the source does not look as expected (the caller
 * then falls back to libfyaml's text). */
static char *unfold_single_quoted(builder *b, size_t start, size_t *len_out)
{
    const char *s = b->src;
    size_t n = b->src_len;
    if (start == 0 || start > n || s[start - 1] != '\'')
        return NULL;
    /* the result is never longer than the raw text */
    size_t end = start;
    while (end < n && !(s[end] == '\'' && (end + 1 >= n || s[end + 1] != '\'')))
        end += s[end] == '\'' ? 2 : 1;
    if (end >= n)
        return NULL;
    char *out = sl_arena_alloc(b->a, end - start + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = start;
    while (i < end) {
        char c = s[i];
        if (c == '\'') {
            out[o++] = '\'';
            i += 2;
        } else if (c == '\n' || c == '\r') {
            while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
                o--;
            size_t breaks = 0;
            while (i < end && (s[i] == '\n' || s[i] == '\r')) {
                i += (s[i] == '\r' && i + 1 < end && s[i + 1] == '\n') ? 2 : 1;
                breaks++;
                while (i < end && (s[i] == ' ' || s[i] == '\t'))
                    i++;
            }
            if (breaks == 1)
                out[o++] = ' ';
            else
                for (size_t k = 1; k < breaks; k++)
                    out[o++] = '\n';
        } else {
            out[o++] = c;
            i++;
        }
    }
    out[o] = '\0';
    *len_out = o;
    return out;
}

static void add_scalar(builder *b, struct fy_event *e)
{
    cfg_node *n = new_node(b, CFG_SCALAR, fy_event_start_mark(e));
    if (!n)
        return;
    struct fy_token *tok = e->scalar.value;
    size_t len = 0;
    enum fy_scalar_style style = tok ? fy_token_scalar_style(tok) : FYSS_PLAIN;
    const char *t = NULL;
    if (style == FYSS_SINGLE_QUOTED) {
        const struct fy_mark *m = fy_token_start_mark(tok);
        char *u = m ? unfold_single_quoted(b, m->input_pos, &len) : NULL;
        if (u) {
            n->text = u;
            n->len = len;
            n->plain = false;
            if (n->col > 1)
                n->col--;
            attach(b, n);
            return;
        }
    }
    t = tok ? fy_token_get_text(tok, &len) : NULL;
    n->plain = style == FYSS_PLAIN;
    /* a quoted scalar's mark sits after its opening quote; point at the quote */
    if ((style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED) && n->col > 1)
        n->col--;
    if (t && len) {
        char *copy = sl_arena_strndup(b->a, t, len);
        if (!copy) {
            b->oom = b->failed = true;
            return;
        }
        n->text = copy;
        n->len = len;
        n->has_nul = memchr(t, '\0', len) != NULL;
    }
    attach(b, n);
}

static void add_alias(builder *b, struct fy_event *e)
{
    const struct fy_mark *m = fy_event_start_mark(e);
    /* the alias token's mark sits after the '*'; point at the '*' */
    sl_config_diag_addf(b->d, true, m ? m->line + 1 : 0, m ? (m->column > 0 ? m->column : 1) : 0,
                        "YAML aliases (*name) are not supported in a Sluice config; write the value out");
    b->bad = true;
    /* keep the tree shaped as the file is, with a null where the alias was */
    cfg_node *n = new_node(b, CFG_SCALAR, m);
    if (n) {
        n->plain = true;
        attach(b, n);
    }
}

static void handle_event(builder *b, struct fy_event *e)
{
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++b->docs > 1) {
            const struct fy_mark *m = fy_event_start_mark(e);
            /* document start marks are often absent; the last root line is close enough */
            sl_config_diag_addf(b->d, true, m ? m->line + 1 : 0, m ? m->column + 1 : 0,
                                "the file holds more than one YAML document (---); a config is one document");
            b->failed = true;
        }
        break;
    case FYET_MAPPING_START:
        open_collection(b, CFG_MAP, fy_event_start_mark(e));
        break;
    case FYET_SEQUENCE_START:
        open_collection(b, CFG_SEQ, fy_event_start_mark(e));
        break;
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        close_collection(b);
        break;
    case FYET_SCALAR:
        add_scalar(b, e);
        break;
    case FYET_ALIAS:
        add_alias(b, e);
        break;
    default:
        break;
    }
}

int sl_config_yaml_parse(sl_arena *a, const char *src, size_t len, cfg_node **root, sl_config_diags *d)
{
    *root = NULL;
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = discard_output;
    dcfg.level = FYET_ERROR;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag)
        return SL_ENOMEM;
    fy_diag_set_collect_errors(diag, true);

    struct fy_parse_cfg pcfg;
    memset(&pcfg, 0, sizeof pcfg);
    pcfg.flags = FYPCF_QUIET;
    pcfg.diag = diag;
    struct fy_parser *p = fy_parser_create(&pcfg);
    if (!p) {
        fy_diag_destroy(diag);
        return SL_ENOMEM;
    }
    builder b = {.a = a, .d = d, .src = src, .src_len = len};
    int rc = 0;
    if (fy_parser_set_string(p, src, len) != 0) {
        rc = SL_ENOMEM;
        goto out;
    }
    struct fy_event *e;
    while (!b.failed && (e = fy_parser_parse(p)) != NULL) {
        handle_event(&b, e);
        fy_parser_event_free(p, e);
    }
    if (!b.failed && fy_parser_get_stream_error(p)) {
        void *it = NULL;
        struct fy_diag_error *de;
        int found = 0;
        while ((de = fy_diag_errors_iterate(diag, &it)) != NULL) {
            if (de->type < FYET_ERROR)
                continue;
            sl_config_diag_addf(d, true, de->line > 0 ? de->line : 0, de->column > 0 ? de->column : 0,
                                "YAML syntax error: %s", de->msg ? de->msg : "malformed input");
            found++;
        }
        if (!found)
            sl_config_diag_addf(d, true, 0, 0, "YAML syntax error");
        b.failed = true;
    }
    if (b.oom)
        rc = SL_ENOMEM;
    else if (b.failed || b.bad)
        rc = SL_EPARSE;
    else
        *root = b.root;
out:
    fy_parser_destroy(p);
    fy_diag_destroy(diag);
    return rc;
}

bool sl_config_node_is_null(const cfg_node *n)
{
    if (!n || n->kind != CFG_SCALAR || !n->plain)
        return false;
    const char *t = n->text;
    return n->len == 0 || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
           !strcmp(t, "NULL");
}
