/* GGUF reader: maps a file, validates all of it once, and indexes it.
 *
 * Validation happens in one forward pass over the header, the metadata and the
 * tensor descriptions. Every count read from the file is checked against the
 * bytes that remain before anything is allocated for it, so allocations are
 * bounded by a small multiple of the file size whatever the file claims. After
 * sl_gguf_open succeeds, the accessors read only bytes the pass already checked.
 *
 * Array values are indexed so that element i is found in O(1): fixed-size
 * elements by arithmetic, strings through a table of their offsets, nested
 * arrays through a node table where the children of a node are contiguous. */
#include "engine/gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The smallest encodings, used to bound counts before allocating for them. */
#define MIN_KV_BYTES (8 + 1 + 4 + 1)              /* key len, 1-byte key, type, 1-byte value */
#define MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8) /* name len, name, n_dims, 1 dim, type, offset */
#define MIN_STRING_BYTES 8                         /* the length prefix */
#define MIN_ARRAY_BYTES 12                         /* element type and count */

typedef struct arr_node {
    uint32_t elem_type;
    uint64_t count;
    uint64_t data_off; /* file offset of the first element */
    size_t first;      /* STRING: first index in str_offs; ARRAY: first child in nodes */
} arr_node;

typedef struct kv_entry {
    sl_str key; /* first member: the name index reads it at offset 0 */
    uint32_t type;
    uint64_t val_off; /* file offset of the value */
    size_t node;      /* ARRAY only: the array's node */
} kv_entry;

/* Open-addressing table of indexes (stored +1, 0 = empty) keyed by a name. */
typedef struct name_index {
    size_t *slots;
    size_t mask;
} name_index;

struct sl_gguf {
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;

    kv_entry *kvs;
    size_t n_kv;
    sl_gguf_tensor *tensors;
    size_t n_tensors;

    arr_node *nodes;
    size_t n_nodes, cap_nodes;
    uint64_t *str_offs; /* file offset of each indexed string's length prefix */
    size_t n_strs, cap_strs;

    name_index kv_ix;
    name_index tensor_ix;
};

typedef struct parser {
    sl_gguf *g;
    size_t pos;
    char *err;
    size_t errlen;
} parser;

/* ---- little helpers ---- */

static uint16_t le16(const uint8_t *b) { return (uint16_t)(b[0] | (b[1] << 8)); }

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static uint64_t le64(const uint8_t *b) { return (uint64_t)le32(b) | ((uint64_t)le32(b + 4) << 32); }

static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case SL_GGUF_UINT8: case SL_GGUF_INT8: case SL_GGUF_BOOL: return 1;
    case SL_GGUF_UINT16: case SL_GGUF_INT16: return 2;
    case SL_GGUF_UINT32: case SL_GGUF_INT32: case SL_GGUF_FLOAT32: return 4;
    case SL_GGUF_UINT64: case SL_GGUF_INT64: case SL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Writes a printable, bounded copy of a name from the file into buf. */
static const char *show(sl_str s, char *buf, size_t bufsz)
{
    size_t n = SL_MIN(s.n, bufsz - 4), j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        buf[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s.n > n) {
        buf[j++] = '.';
        buf[j++] = '.';
        buf[j++] = '.';
    }
    buf[j] = 0;
    return buf;
}

static int fail(parser *p, int code, uint64_t off, const char *fmt, ...) SL_PRINTF(4, 5);
static int fail(parser *p, int code, uint64_t off, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "offset %llu: ", (unsigned long long)off);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

static size_t left(const parser *p) { return p->g->size - p->pos; }

static int need(parser *p, size_t n, const char *what)
{
    if (left(p) < n)
        return fail(p, SL_EPARSE, p->pos, "truncated: %s needs %zu bytes but the %zu-byte file has %zu left",
                    what, n, p->g->size, left(p));
    return 0;
}

static int rd_u32(parser *p, const char *what, uint32_t *v)
{
    int rc = need(p, 4, what);
    if (rc)
        return rc;
    *v = le32(p->g->base + p->pos);
    p->pos += 4;
    return 0;
}

static int rd_u64(parser *p, const char *what, uint64_t *v)
{
    int rc = need(p, 8, what);
    if (rc)
        return rc;
    *v = le64(p->g->base + p->pos);
    p->pos += 8;
    return 0;
}

static int rd_string(parser *p, const char *what, uint64_t max_len, sl_str *out)
{
    size_t at = p->pos;
    uint64_t len;
    int rc = rd_u64(p, what, &len);
    if (rc)
        return rc;
    if (len > max_len)
        return fail(p, SL_EPARSE, at, "%s is %llu bytes, over the %llu-byte limit", what,
                    (unsigned long long)len, (unsigned long long)max_len);
    if (len > left(p))
        return fail(p, SL_EPARSE, at, "truncated: %s is %llu bytes but the file has %zu left", what,
                    (unsigned long long)len, left(p));
    out->p = (const char *)p->g->base + p->pos;
    out->n = (size_t)len;
    p->pos += (size_t)len;
    return 0;
}

/* ---- name index ---- */

static int index_init(name_index *ix, size_t n)
{
    size_t cap = 4;
    while (cap < n * 2)
        cap <<= 1;
    ix->slots = sl_calloc(cap, sizeof(size_t));
    ix->mask = cap - 1;
    return ix->slots ? 0 : SL_ENOMEM;
}

/* Names live at the start of each element of arr (stride bytes apart). Returns
 * the slot holding name, or the empty slot where it would go. */
static size_t index_slot(const name_index *ix, const void *arr, size_t stride, const char *s, size_t n)
{
    size_t h = (size_t)sl_hash64(s, n, 0x9e3779b97f4a7c15ull) & ix->mask;
    for (;;) {
        size_t v = ix->slots[h];
        if (!v)
            return h;
        const sl_str *name = (const sl_str *)(const void *)((const char *)arr + (v - 1) * stride);
        if (name->n == n && memcmp(name->p, s, n) == 0)
            return h;
        h = (h + 1) & ix->mask;
    }
}

static long index_find(const name_index *ix, const void *arr, size_t stride, const char *s, size_t n)
{
    if (!ix->slots)
        return -1;
    size_t v = ix->slots[index_slot(ix, arr, stride, s, n)];
    return v ? (long)(v - 1) : -1;
}

/* ---- array index tables ---- */

static int reserve_nodes(parser *p, size_t count, size_t *first)
{
    sl_gguf *g = p->g;
    if (count > SIZE_MAX / sizeof(arr_node) / 2 - g->n_nodes)
        return fail(p, SL_ENOMEM, p->pos, "too many nested arrays to index");
    size_t need_n = g->n_nodes + count;
    if (need_n > g->cap_nodes) {
        size_t cap = g->cap_nodes ? g->cap_nodes : 16;
        while (cap < need_n)
            cap *= 2;
        arr_node *nn = sl_realloc(g->nodes, cap * sizeof(arr_node));
        if (!nn)
            return fail(p, SL_ENOMEM, p->pos, "out of memory indexing arrays");
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    *first = g->n_nodes;
    g->n_nodes = need_n;
    return 0;
}

static int reserve_strs(parser *p, size_t count, size_t *first)
{
    sl_gguf *g = p->g;
    if (count > SIZE_MAX / sizeof(uint64_t) / 2 - g->n_strs)
        return fail(p, SL_ENOMEM, p->pos, "too many array strings to index");
    size_t need_n = g->n_strs + count;
    if (need_n > g->cap_strs) {
        size_t cap = g->cap_strs ? g->cap_strs : 64;
        while (cap < need_n)
            cap *= 2;
        uint64_t *ns = sl_realloc(g->str_offs, cap * sizeof(uint64_t));
        if (!ns)
            return fail(p, SL_ENOMEM, p->pos, "out of memory indexing array strings");
        g->str_offs = ns;
        g->cap_strs = cap;
    }
    *first = g->n_strs;
    g->n_strs = need_n;
    return 0;
}

/* ---- values ---- */

static int check_bools(parser *p, const uint8_t *b, uint64_t n, const char *key)
{
    for (uint64_t i = 0; i < n; i++)
        if (b[i] > 1)
            return fail(p, SL_EPARSE, (uint64_t)(b + i - p->g->base),
                        "key '%s': bool value %u is neither 0 nor 1", key, b[i]);
    return 0;
}

/* Parses an array (element type, count, elements) at p->pos into nodes[node]. */
static int parse_array(parser *p, size_t node, int depth, const char *key)
{
    size_t at = p->pos;
    if (depth > SL_GGUF_MAX_ARRAY_DEPTH)
        return fail(p, SL_EPARSE, at, "key '%s': arrays nested deeper than %d levels", key,
                    SL_GGUF_MAX_ARRAY_DEPTH);
    uint32_t et;
    uint64_t count;
    int rc = rd_u32(p, "array element type", &et);
    if (rc)
        return rc;
    if (et >= SL_GGUF_TYPE_COUNT)
        return fail(p, SL_EPARSE, at, "key '%s': unknown array element type %u", key, et);
    if ((rc = rd_u64(p, "array length", &count)))
        return rc;
    size_t min = et == SL_GGUF_STRING ? MIN_STRING_BYTES
               : et == SL_GGUF_ARRAY  ? MIN_ARRAY_BYTES
                                      : scalar_size(et);
    if (count > left(p) / min)
        return fail(p, SL_EPARSE, at + 4,
                    "key '%s': array of %llu %s elements cannot fit in the %zu bytes left", key,
                    (unsigned long long)count, sl_gguf_type_name(et), left(p));
    sl_gguf *g = p->g;
    g->nodes[node] = (arr_node){et, count, p->pos, 0};
    if (et == SL_GGUF_STRING) {
        size_t first = 0;
        if ((rc = reserve_strs(p, (size_t)count, &first)))
            return rc;
        g->nodes[node].first = first;
        for (uint64_t i = 0; i < count; i++) {
            sl_str s;
            g->str_offs[first + i] = p->pos;
            if ((rc = rd_string(p, "array string", UINT64_MAX, &s)))
                return rc;
        }
    } else if (et == SL_GGUF_ARRAY) {
        size_t first = 0;
        if ((rc = reserve_nodes(p, (size_t)count, &first)))
            return rc;
        g->nodes[node].first = first;
        for (uint64_t i = 0; i < count; i++)
            if ((rc = parse_array(p, first + i, depth + 1, key)))
                return rc;
    } else {
        if (et == SL_GGUF_BOOL && (rc = check_bools(p, g->base + p->pos, count, key)))
            return rc;
        p->pos += (size_t)(count * min); /* fits: count <= left / min */
    }
    return 0;
}

static int parse_kv(parser *p, size_t i)
{
    sl_gguf *g = p->g;
    kv_entry *kv = &g->kvs[i];
    size_t at = p->pos;
    char shown[80];
    int rc = rd_string(p, "metadata key", SL_GGUF_MAX_KEY_LEN, &kv->key);
    if (rc)
        return rc;
    if (kv->key.n == 0)
        return fail(p, SL_EPARSE, at, "metadata key %zu is empty", i);
    if (memchr(kv->key.p, 0, kv->key.n))
        return fail(p, SL_EPARSE, at, "metadata key '%s' contains a NUL byte",
                    show(kv->key, shown, sizeof shown));
    show(kv->key, shown, sizeof shown);
    size_t slot = index_slot(&g->kv_ix, g->kvs, sizeof(kv_entry), kv->key.p, kv->key.n);
    if (g->kv_ix.slots[slot])
        return fail(p, SL_ECORRUPT, at, "duplicate metadata key '%s'", shown);
    size_t type_at = p->pos;
    if ((rc = rd_u32(p, "metadata value type", &kv->type)))
        return rc;
    if (kv->type >= SL_GGUF_TYPE_COUNT)
        return fail(p, SL_EPARSE, type_at, "key '%s': unknown value type %u", shown, kv->type);
    kv->val_off = p->pos;
    if (kv->type == SL_GGUF_ARRAY) {
        if ((rc = reserve_nodes(p, 1, &kv->node)))
            return rc;
        if ((rc = parse_array(p, kv->node, 1, shown)))
            return rc;
    } else if (kv->type == SL_GGUF_STRING) {
        sl_str s;
        if ((rc = rd_string(p, "string value", UINT64_MAX, &s)))
            return rc;
    } else {
        size_t n = scalar_size(kv->type);
        if ((rc = need(p, n, "metadata value")))
            return rc;
        if (kv->type == SL_GGUF_BOOL && (rc = check_bools(p, g->base + p->pos, 1, shown)))
            return rc;
        p->pos += n;
    }
    g->kv_ix.slots[slot] = i + 1;
    return 0;
}

/* ---- numbers ---- */

enum { NUM_U, NUM_I, NUM_F };
typedef struct num {
    int kind;
    uint64_t u;
    int64_t i;
    double f;
} num;

/* Loads a numeric value of the given type at b; SL_EINVAL for non-numbers. */
static int load_num(const uint8_t *b, uint32_t type, num *out)
{
    out->kind = NUM_U;
    switch (type) {
    case SL_GGUF_UINT8: out->u = b[0]; return 0;
    case SL_GGUF_UINT16: out->u = le16(b); return 0;
    case SL_GGUF_UINT32: out->u = le32(b); return 0;
    case SL_GGUF_UINT64: out->u = le64(b); return 0;
    default: break;
    }
    out->kind = NUM_I;
    switch (type) {
    case SL_GGUF_INT8: out->i = (int8_t)b[0]; return 0;
    case SL_GGUF_INT16: out->i = (int16_t)le16(b); return 0;
    case SL_GGUF_INT32: out->i = (int32_t)le32(b); return 0;
    case SL_GGUF_INT64: out->i = (int64_t)le64(b); return 0;
    default: break;
    }
    out->kind = NUM_F;
    if (type == SL_GGUF_FLOAT32) {
        uint32_t bits = le32(b);
        float f;
        memcpy(&f, &bits, 4);
        out->f = f;
        return 0;
    }
    if (type == SL_GGUF_FLOAT64) {
        uint64_t bits = le64(b);
        memcpy(&out->f, &bits, 8);
        return 0;
    }
    return SL_EINVAL;
}

static int num_u64(const num *n, uint64_t *out)
{
    if (n->kind == NUM_F)
        return SL_EINVAL;
    if (n->kind == NUM_I && n->i < 0)
        return SL_ERANGE;
    *out = n->kind == NUM_U ? n->u : (uint64_t)n->i;
    return 0;
}

static int num_i64(const num *n, int64_t *out)
{
    if (n->kind == NUM_F)
        return SL_EINVAL;
    if (n->kind == NUM_U && n->u > (uint64_t)INT64_MAX)
        return SL_ERANGE;
    *out = n->kind == NUM_I ? n->i : (int64_t)n->u;
    return 0;
}

static double num_f64(const num *n)
{
    return n->kind == NUM_F ? n->f : n->kind == NUM_U ? (double)n->u : (double)n->i;
}

/* ---- open ---- */

static int parse_tensors(parser *p, uint64_t *info_offs)
{
    sl_gguf *g = p->g;
    char shown[80];
    int rc;
    for (size_t i = 0; i < g->n_tensors; i++) {
        sl_gguf_tensor *t = &g->tensors[i];
        size_t at = p->pos;
        info_offs[i] = at;
        if ((rc = rd_string(p, "tensor name", SL_GGUF_MAX_TENSOR_NAME, &t->name)))
            return rc;
        if (t->name.n == 0)
            return fail(p, SL_EPARSE, at, "tensor %zu has an empty name", i);
        if (memchr(t->name.p, 0, t->name.n))
            return fail(p, SL_EPARSE, at, "tensor name '%s' contains a NUL byte",
                        show(t->name, shown, sizeof shown));
        show(t->name, shown, sizeof shown);
        size_t slot = index_slot(&g->tensor_ix, g->tensors, sizeof(sl_gguf_tensor), t->name.p, t->name.n);
        if (g->tensor_ix.slots[slot])
            return fail(p, SL_ECORRUPT, at, "duplicate tensor name '%s'", shown);
        size_t nd_at = p->pos;
        if ((rc = rd_u32(p, "tensor n_dims", &t->n_dims)))
            return rc;
        if (t->n_dims < 1 || t->n_dims > SL_GGUF_MAX_DIMS)
            return fail(p, SL_EPARSE, nd_at, "tensor '%s' has %u dimensions (must be 1..%d)", shown,
                        t->n_dims, SL_GGUF_MAX_DIMS);
        uint64_t n = 1;
        for (uint32_t d = 0; d < SL_GGUF_MAX_DIMS; d++)
            t->dims[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            size_t d_at = p->pos;
            if ((rc = rd_u64(p, "tensor dimension", &t->dims[d])))
                return rc;
            if (t->dims[d] == 0)
                return fail(p, SL_EPARSE, d_at, "tensor '%s' dimension %u is zero", shown, d);
            if (t->dims[d] > (uint64_t)INT64_MAX / n)
                return fail(p, SL_EPARSE, d_at,
                            "tensor '%s' dimension %u (%llu) overflows the element count", shown, d,
                            (unsigned long long)t->dims[d]);
            n *= t->dims[d];
        }
        t->n_elements = n;
        size_t type_at = p->pos;
        uint32_t type;
        if ((rc = rd_u32(p, "tensor type", &type)))
            return rc;
        const sl_ggml_type_traits *tt = sl_ggml_type_info(type);
        if (!tt)
            return fail(p, SL_EUNSUPPORTED, type_at, "tensor '%s' has unknown ggml type %u", shown, type);
        t->type = (sl_ggml_type)type;
        /* Blocks never straddle rows, so the row length must be whole blocks. */
        if (t->dims[0] % tt->block_size)
            return fail(p, SL_EPARSE, type_at,
                        "tensor '%s': row length %llu is not a multiple of the %s block size %u", shown,
                        (unsigned long long)t->dims[0], tt->name, tt->block_size);
        if ((rc = sl_ggml_nbytes(type, n, &t->n_bytes)))
            return fail(p, SL_EPARSE, type_at, "tensor '%s': byte size overflows", shown);
        size_t off_at = p->pos;
        if ((rc = rd_u64(p, "tensor offset", &t->offset)))
            return rc;
        if (t->offset % g->alignment)
            return fail(p, SL_ECORRUPT, off_at, "tensor '%s' offset %llu is not a multiple of the alignment %u",
                        shown, (unsigned long long)t->offset, g->alignment);
        g->tensor_ix.slots[slot] = i + 1;
    }
    return 0;
}

static int read_alignment(parser *p)
{
    sl_gguf *g = p->g;
    g->alignment = SL_GGUF_DEFAULT_ALIGNMENT;
    long i = index_find(&g->kv_ix, g->kvs, sizeof(kv_entry), "general.alignment", 17);
    if (i < 0)
        return 0;
    const kv_entry *kv = &g->kvs[i];
    num n;
    uint64_t v;
    if (load_num(g->base + kv->val_off, kv->type, &n) || n.kind == NUM_F)
        return fail(p, SL_EPARSE, kv->val_off, "general.alignment has type %s, expected an integer",
                    sl_gguf_type_name(kv->type));
    if (num_u64(&n, &v) || v == 0 || v > UINT32_MAX || (v & (v - 1)))
        return fail(p, SL_EPARSE, kv->val_off, "general.alignment is %lld: must be a nonzero power of two",
                    n.kind == NUM_I ? (long long)n.i : (long long)n.u);
    g->alignment = (uint32_t)v;
    return 0;
}

static int parse(parser *p)
{
    sl_gguf *g = p->g;
    int rc;
    if ((rc = need(p, 4, "magic")))
        return rc;
    if (memcmp(g->base, "GGUF", 4) != 0)
        return fail(p, SL_EPARSE, 0, "bad magic %02x %02x %02x %02x: not a GGUF file (expected \"GGUF\")",
                    g->base[0], g->base[1], g->base[2], g->base[3]);
    p->pos = 4;
    if ((rc = rd_u32(p, "version", &g->version)))
        return rc;
    if (g->version == 1)
        return fail(p, SL_EUNSUPPORTED, 4,
                    "GGUF version 1 (32-bit counts) is not supported; convert the model again with a current converter");
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw >= 1 && sw <= 3)
            return fail(p, SL_EUNSUPPORTED, 4, "big-endian GGUF files are not supported");
        return fail(p, SL_EUNSUPPORTED, 4, "unsupported GGUF version %u (supported: 2 and 3)", g->version);
    }
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(p, "tensor count", &n_tensors)))
        return rc;
    if ((rc = rd_u64(p, "metadata count", &n_kv)))
        return rc;
    if (n_kv > left(p) / MIN_KV_BYTES)
        return fail(p, SL_EPARSE, 16, "metadata count %llu cannot fit in the %zu bytes left",
                    (unsigned long long)n_kv, left(p));
    if (n_tensors > left(p) / MIN_TENSOR_INFO_BYTES)
        return fail(p, SL_EPARSE, 8, "tensor count %llu cannot fit in the %zu bytes left",
                    (unsigned long long)n_tensors, left(p));
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    g->kvs = sl_calloc(g->n_kv ? g->n_kv : 1, sizeof(kv_entry));
    g->tensors = sl_calloc(g->n_tensors ? g->n_tensors : 1, sizeof(sl_gguf_tensor));
    if (!g->kvs || !g->tensors || index_init(&g->kv_ix, g->n_kv) || index_init(&g->tensor_ix, g->n_tensors))
        return fail(p, SL_ENOMEM, p->pos, "out of memory for %zu keys and %zu tensors", g->n_kv, g->n_tensors);

    for (size_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(p, i)))
            return rc;
    if ((rc = read_alignment(p)))
        return rc;

    uint64_t *info_offs = sl_malloc((g->n_tensors ? g->n_tensors : 1) * sizeof(uint64_t));
    if (!info_offs)
        return fail(p, SL_ENOMEM, p->pos, "out of memory for %zu tensors", g->n_tensors);
    rc = parse_tensors(p, info_offs);

    if (!rc) {
        /* pos <= size, so adding alignment - 1 cannot wrap a 64-bit offset. */
        uint64_t a = g->alignment;
        g->data_off = ((uint64_t)p->pos + a - 1) / a * a;
        if (g->n_tensors && g->data_off > g->size)
            rc = fail(p, SL_ECORRUPT, p->pos,
                      "tensor data section would start at %llu, past the end of the %zu-byte file",
                      (unsigned long long)g->data_off, g->size);
    }
    for (size_t i = 0; !rc && i < g->n_tensors; i++) {
        sl_gguf_tensor *t = &g->tensors[i];
        uint64_t room = g->size - g->data_off;
        if (t->offset > room || t->n_bytes > room - t->offset) {
            char shown[80];
            rc = fail(p, SL_ECORRUPT, info_offs[i],
                      "tensor '%s' data [%llu, +%llu bytes) lies outside the file (data section has %llu bytes)",
                      show(t->name, shown, sizeof shown), (unsigned long long)t->offset,
                      (unsigned long long)t->n_bytes, (unsigned long long)room);
            break;
        }
        t->data = g->base + g->data_off + t->offset;
    }
    sl_free(info_offs);
    return rc;
}

void sl_gguf_close(sl_gguf *g)
{
    if (!g)
        return;
    if (g->mapped)
        munmap((void *)g->base, g->size);
    sl_free(g->kvs);
    sl_free(g->tensors);
    sl_free(g->nodes);
    sl_free(g->str_offs);
    sl_free(g->kv_ix.slots);
    sl_free(g->tensor_ix.slots);
    sl_free(g);
}

static int open_bytes(const void *data, size_t size, bool mapped, sl_gguf **out, char *err, size_t errlen)
{
    *out = NULL;
    sl_gguf *g = sl_calloc(1, sizeof *g);
    if (!g) {
        if (mapped)
            munmap((void *)data, size);
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    g->base = data;
    g->size = size;
    g->mapped = mapped;
    parser p = {g, 0, err, errlen};
    int rc = parse(&p);
    if (rc) {
        sl_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int sl_gguf_open_memory(const void *data, size_t size, sl_gguf **out, char *err, size_t errlen)
{
    if (!data && size)
        return SL_EINVAL;
    return open_bytes(data ? data : "", size, false, out, err, errlen);
}

int sl_gguf_open(const char *path, sl_gguf **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return errno == ENOENT ? SL_ENOTFOUND : SL_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err && errlen)
            snprintf(err, errlen, "not a regular file");
        close(fd);
        return SL_EIO;
    }
    if (st.st_size == 0) {
        close(fd);
        /* An empty file fails parsing with the usual truncation message. */
        return open_bytes("", 0, false, out, err, errlen);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        if (err && errlen)
            snprintf(err, errlen, "file too large to map");
        return SL_ETOOBIG;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (m == MAP_FAILED) {
        if (err && errlen)
            snprintf(err, errlen, "cannot map: %s", strerror(saved));
        return SL_EIO;
    }
    return open_bytes(m, (size_t)st.st_size, true, out, err, errlen);
}

/* ---- accessors ---- */

uint32_t sl_gguf_version(const sl_gguf *g) { return g->version; }
uint64_t sl_gguf_file_size(const sl_gguf *g) { return g->size; }
uint32_t sl_gguf_alignment(const sl_gguf *g) { return g->alignment; }
uint64_t sl_gguf_data_offset(const sl_gguf *g) { return g->data_off; }
size_t sl_gguf_n_kv(const sl_gguf *g) { return g->n_kv; }
size_t sl_gguf_n_tensors(const sl_gguf *g) { return g->n_tensors; }

sl_str sl_gguf_kv_key(const sl_gguf *g, size_t i)
{
    return i < g->n_kv ? g->kvs[i].key : sl_str_make("", 0);
}

sl_gguf_type sl_gguf_kv_type(const sl_gguf *g, size_t i)
{
    return i < g->n_kv ? (sl_gguf_type)g->kvs[i].type : SL_GGUF_TYPE_COUNT;
}

long sl_gguf_find_key(const sl_gguf *g, const char *key)
{
    return index_find(&g->kv_ix, g->kvs, sizeof(kv_entry), key, strlen(key));
}

static const kv_entry *find_kv(const sl_gguf *g, const char *key)
{
    long i = sl_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kvs[i];
}

int sl_gguf_get_type(const sl_gguf *g, const char *key, sl_gguf_type *out)
{
    const kv_entry *kv = find_kv(g, key);
    if (!kv)
        return SL_ENOTFOUND;
    *out = (sl_gguf_type)kv->type;
    return 0;
}

static int get_num(const sl_gguf *g, const char *key, num *n)
{
    const kv_entry *kv = find_kv(g, key);
    if (!kv)
        return SL_ENOTFOUND;
    return load_num(g->base + kv->val_off, kv->type, n);
}

int sl_gguf_get_u64(const sl_gguf *g, const char *key, uint64_t *out)
{
    num n;
    int rc = get_num(g, key, &n);
    return rc ? rc : num_u64(&n, out);
}

int sl_gguf_get_i64(const sl_gguf *g, const char *key, int64_t *out)
{
    num n;
    int rc = get_num(g, key, &n);
    return rc ? rc : num_i64(&n, out);
}

int sl_gguf_get_u32(const sl_gguf *g, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = sl_gguf_get_u64(g, key, &v);
    if (rc)
        return rc;
    if (v > UINT32_MAX)
        return SL_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

int sl_gguf_get_i32(const sl_gguf *g, const char *key, int32_t *out)
{
    int64_t v;
    int rc = sl_gguf_get_i64(g, key, &v);
    if (rc)
        return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return SL_ERANGE;
    *out = (int32_t)v;
    return 0;
}

int sl_gguf_get_f64(const sl_gguf *g, const char *key, double *out)
{
    num n;
    int rc = get_num(g, key, &n);
    if (rc)
        return rc;
    *out = num_f64(&n);
    return 0;
}

int sl_gguf_get_f32(const sl_gguf *g, const char *key, float *out)
{
    double d;
    int rc = sl_gguf_get_f64(g, key, &d);
    if (!rc)
        *out = (float)d;
    return rc;
}

int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out)
{
    const kv_entry *kv = find_kv(g, key);
    if (!kv)
        return SL_ENOTFOUND;
    if (kv->type != SL_GGUF_BOOL)
        return SL_EINVAL;
    *out = g->base[kv->val_off] != 0;
    return 0;
}

static sl_str str_at(const sl_gguf *g, uint64_t off)
{
    return sl_str_make((const char *)g->base + off + 8, (size_t)le64(g->base + off));
}

int sl_gguf_get_str(const sl_gguf *g, const char *key, sl_str *out)
{
    const kv_entry *kv = find_kv(g, key);
    if (!kv)
        return SL_ENOTFOUND;
    if (kv->type != SL_GGUF_STRING)
        return SL_EINVAL;
    *out = str_at(g, kv->val_off);
    return 0;
}

static sl_gguf_arr arr_view(const sl_gguf *g, size_t node)
{
    const arr_node *an = &g->nodes[node];
    return (sl_gguf_arr){(sl_gguf_type)an->elem_type, an->count, g, node};
}

int sl_gguf_get_arr(const sl_gguf *g, const char *key, sl_gguf_arr *out)
{
    const kv_entry *kv = find_kv(g, key);
    if (!kv)
        return SL_ENOTFOUND;
    if (kv->type != SL_GGUF_ARRAY)
        return SL_EINVAL;
    *out = arr_view(g, kv->node);
    return 0;
}

static int arr_num(sl_gguf_arr a, uint64_t i, num *n)
{
    if (!a.g_)
        return SL_EINVAL;
    if (i >= a.count)
        return SL_ERANGE;
    const arr_node *an = &a.g_->nodes[a.node_];
    size_t sz = scalar_size(an->elem_type);
    if (!sz || an->elem_type == SL_GGUF_BOOL)
        return SL_EINVAL;
    return load_num(a.g_->base + an->data_off + i * sz, an->elem_type, n);
}

int sl_gguf_arr_get_u64(sl_gguf_arr a, uint64_t i, uint64_t *out)
{
    num n;
    int rc = arr_num(a, i, &n);
    return rc ? rc : num_u64(&n, out);
}

int sl_gguf_arr_get_i64(sl_gguf_arr a, uint64_t i, int64_t *out)
{
    num n;
    int rc = arr_num(a, i, &n);
    return rc ? rc : num_i64(&n, out);
}

int sl_gguf_arr_get_f64(sl_gguf_arr a, uint64_t i, double *out)
{
    num n;
    int rc = arr_num(a, i, &n);
    if (!rc)
        *out = num_f64(&n);
    return rc;
}

int sl_gguf_arr_get_bool(sl_gguf_arr a, uint64_t i, bool *out)
{
    if (!a.g_ || a.type != SL_GGUF_BOOL)
        return SL_EINVAL;
    if (i >= a.count)
        return SL_ERANGE;
    *out = a.g_->base[a.g_->nodes[a.node_].data_off + i] != 0;
    return 0;
}

int sl_gguf_arr_get_str(sl_gguf_arr a, uint64_t i, sl_str *out)
{
    if (!a.g_ || a.type != SL_GGUF_STRING)
        return SL_EINVAL;
    if (i >= a.count)
        return SL_ERANGE;
    const sl_gguf *g = a.g_;
    *out = str_at(g, g->str_offs[g->nodes[a.node_].first + i]);
    return 0;
}

int sl_gguf_arr_get_arr(sl_gguf_arr a, uint64_t i, sl_gguf_arr *out)
{
    if (!a.g_ || a.type != SL_GGUF_ARRAY)
        return SL_EINVAL;
    if (i >= a.count)
        return SL_ERANGE;
    *out = arr_view(a.g_, a.g_->nodes[a.node_].first + i);
    return 0;
}

const void *sl_gguf_arr_data(sl_gguf_arr a)
{
    if (!a.g_ || !scalar_size(a.type))
        return NULL;
    return a.g_->base + a.g_->nodes[a.node_].data_off;
}

const sl_gguf_tensor *sl_gguf_tensor_at(const sl_gguf *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const sl_gguf_tensor *sl_gguf_find_tensor(const sl_gguf *g, const char *name)
{
    long i = index_find(&g->tensor_ix, g->tensors, sizeof(sl_gguf_tensor), name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}
