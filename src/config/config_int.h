/*
 * config internals shared by the files of src/config/ (not for other folders).
 *
 * Loading has two stages. config_yaml.c turns YAML text into a small tree of
 * cfg_node (living in a scratch arena) carrying 1-based line:col for every
 * node, with hard limits on depth and node count. config_load.c walks that
 * tree against the schema and builds the snapshot in the snapshot's arena.
 */
#ifndef SL_CONFIG_INT_H
#define SL_CONFIG_INT_H

#include "config/config.h"
#include "core/core.h"

typedef enum { CFG_SCALAR = 0, CFG_MAP, CFG_SEQ } cfg_kind;

typedef struct cfg_node {
    cfg_kind kind;
    int line, col;              /* 1-based */
    const char *text;           /* scalars: NUL-terminated text ("" for an empty value) */
    size_t len;                 /* scalars: bytes of text (may hold a NUL if has_nul) */
    bool plain;                 /* plain (unquoted) scalar: only these can be null/bool */
    bool has_nul;               /* the scalar holds a NUL byte (from an escape) */
    struct cfg_node *key;       /* for a mapping's value: its key node */
    struct cfg_node *first, *last, *next;   /* children: mapping values (with ->key) or sequence items */
    size_t count;               /* number of children */
} cfg_node;

/* Parses src into a tree allocated from a; *root is NULL for an empty stream.
 * Returns 0, SL_EPARSE (syntax or limits; errors added to d) or SL_ENOMEM. */
int sl_config_yaml_parse(sl_arena *a, const char *src, size_t len, cfg_node **root, sl_config_diags *d);

/* Appends a diag (message formatted, truncated to fit). Returns false when
 * the list is full (SL_CONFIG_MAX_DIAGS) or out of memory. */
bool sl_config_diag_addf(sl_config_diags *d, bool is_error, int line, int col, const char *fmt, ...)
    SL_PRINTF(5, 6);

/* The snapshot with its private parts; pub is first so the two convert. */
typedef struct cfg_impl {
    sl_config pub;
    _Atomic long refs;
    sl_arena *arena;            /* every string and array of pub */
} cfg_impl;

/* Returns a new snapshot holding all defaults, no backends, refs = 1; NULL on OOM. */
cfg_impl *sl_config_new_impl(const char *path);

/* Whether a scalar is YAML null: plain "", "~", "null", "Null", "NULL". */
bool sl_config_node_is_null(const cfg_node *n);

#endif
