/* GGUF v3 writer.
 *
 * Metadata is serialized as it is added into one growing buffer (arrays get a
 * count placeholder that end_arr patches), so that writing is a straight copy:
 * header, metadata, tensor descriptions, padding to the alignment, then each
 * tensor's bytes padded to the alignment. Tensor data is borrowed, not copied,
 * because `sluice train` exports weights that can be gigabytes. */
#include "engine/gguf/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct w_tensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t dims[SL_GGUF_MAX_DIMS];
    const void *data;
    uint64_t n_bytes;
    uint64_t offset; /* within the data section, a multiple of the alignment */
} w_tensor;

typedef struct open_arr {
    size_t count_pos; /* where the element count sits in the metadata buffer */
    uint32_t elem_type;
    uint64_t count;
} open_arr;

struct sl_gguf_writer {
    sl_buf kv;
    char **keys; /* for duplicate detection, in order */
    size_t n_keys, cap_keys;
    w_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    uint64_t data_size; /* end of the last tensor within the data section */
    open_arr stack[SL_GGUF_MAX_ARRAY_DEPTH];
    int depth;
};

/* A point to roll the writer back to when a call fails halfway. */
typedef struct mark {
    size_t kv_len;
    size_t n_keys;
} mark;

static mark mark_now(const sl_gguf_writer *w) { return (mark){w->kv.len, w->n_keys}; }

static void rollback(sl_gguf_writer *w, mark m)
{
    w->kv.len = m.kv_len;
    while (w->n_keys > m.n_keys)
        sl_free(w->keys[--w->n_keys]);
    w->depth = 0;
}

static void put_le(uint8_t *b, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static int app_u32(sl_gguf_writer *w, uint32_t v)
{
    uint8_t b[4];
    put_le(b, v, 4);
    return sl_buf_append(&w->kv, b, 4);
}

static int app_u64(sl_gguf_writer *w, uint64_t v)
{
    uint8_t b[8];
    put_le(b, v, 8);
    return sl_buf_append(&w->kv, b, 8);
}

static int app_str(sl_gguf_writer *w, const char *s, size_t n)
{
    int rc = app_u64(w, n);
    return rc ? rc : sl_buf_append(&w->kv, s, n);
}

static size_t value_size(uint32_t type)
{
    switch (type) {
    case SL_GGUF_UINT8: case SL_GGUF_INT8: case SL_GGUF_BOOL: return 1;
    case SL_GGUF_UINT16: case SL_GGUF_INT16: return 2;
    case SL_GGUF_UINT32: case SL_GGUF_INT32: case SL_GGUF_FLOAT32: return 4;
    case SL_GGUF_UINT64: case SL_GGUF_INT64: case SL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Appends one host value of a numeric/bool type, little-endian. */
static int app_num(sl_gguf_writer *w, uint32_t type, const void *v)
{
    size_t n = value_size(type);
    uint64_t bits = 0;
    if (type == SL_GGUF_BOOL && *(const uint8_t *)v > 1)
        return SL_EINVAL;
    switch (n) {
    case 1: bits = *(const uint8_t *)v; break;
    case 2: { uint16_t x; memcpy(&x, v, 2); bits = x; break; }
    case 4: { uint32_t x; memcpy(&x, v, 4); bits = x; break; }
    case 8: memcpy(&bits, v, 8); break;
    default: return SL_EINVAL;
    }
    uint8_t b[8];
    put_le(b, bits, n);
    return sl_buf_append(&w->kv, b, n);
}

int sl_gguf_writer_new(sl_gguf_writer **out)
{
    sl_gguf_writer *w = sl_calloc(1, sizeof *w);
    if (!w)
        return SL_ENOMEM;
    sl_buf_init(&w->kv, SIZE_MAX / 4);
    w->alignment = SL_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return 0;
}

void sl_gguf_writer_free(sl_gguf_writer *w)
{
    if (!w)
        return;
    sl_buf_free(&w->kv);
    for (size_t i = 0; i < w->n_keys; i++)
        sl_free(w->keys[i]);
    sl_free(w->keys);
    for (size_t i = 0; i < w->n_tensors; i++)
        sl_free(w->tensors[i].name);
    sl_free(w->tensors);
    sl_free(w);
}

/* Checks and records a new key, and appends it with its value type. */
static int begin_key(sl_gguf_writer *w, const char *key, uint32_t type, bool internal)
{
    if (!key || w->depth)
        return w->depth ? SL_ESTATE : SL_EINVAL;
    size_t n = strlen(key);
    if (n == 0 || n > SL_GGUF_MAX_KEY_LEN)
        return SL_EINVAL;
    if (!internal && strcmp(key, "general.alignment") == 0)
        return SL_EINVAL; /* goes through sl_gguf_writer_set_alignment */
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0)
            return SL_EEXIST;
    if (w->n_keys == w->cap_keys) {
        size_t cap = w->cap_keys ? w->cap_keys * 2 : 16;
        char **nk = sl_realloc(w->keys, cap * sizeof(char *));
        if (!nk)
            return SL_ENOMEM;
        w->keys = nk;
        w->cap_keys = cap;
    }
    char *copy = sl_strdup(key);
    if (!copy)
        return SL_ENOMEM;
    mark m = mark_now(w);
    w->keys[w->n_keys++] = copy;
    int rc = app_str(w, key, n);
    if (!rc)
        rc = app_u32(w, type);
    if (rc)
        rollback(w, m);
    return rc;
}

static int add_num(sl_gguf_writer *w, const char *key, uint32_t type, const void *v, bool internal)
{
    mark m = mark_now(w);
    int rc = begin_key(w, key, type, internal);
    if (!rc && (rc = app_num(w, type, v)))
        rollback(w, m);
    return rc;
}

int sl_gguf_writer_set_alignment(sl_gguf_writer *w, uint32_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)))
        return SL_EINVAL;
    if (w->n_tensors)
        return SL_ESTATE;
    int rc = add_num(w, "general.alignment", SL_GGUF_UINT32, &alignment, true);
    if (!rc)
        w->alignment = alignment;
    return rc;
}

int sl_gguf_writer_add_u8(sl_gguf_writer *w, const char *key, uint8_t v) { return add_num(w, key, SL_GGUF_UINT8, &v, false); }
int sl_gguf_writer_add_i8(sl_gguf_writer *w, const char *key, int8_t v) { return add_num(w, key, SL_GGUF_INT8, &v, false); }
int sl_gguf_writer_add_u16(sl_gguf_writer *w, const char *key, uint16_t v) { return add_num(w, key, SL_GGUF_UINT16, &v, false); }
int sl_gguf_writer_add_i16(sl_gguf_writer *w, const char *key, int16_t v) { return add_num(w, key, SL_GGUF_INT16, &v, false); }
int sl_gguf_writer_add_u32(sl_gguf_writer *w, const char *key, uint32_t v) { return add_num(w, key, SL_GGUF_UINT32, &v, false); }
int sl_gguf_writer_add_i32(sl_gguf_writer *w, const char *key, int32_t v) { return add_num(w, key, SL_GGUF_INT32, &v, false); }
int sl_gguf_writer_add_u64(sl_gguf_writer *w, const char *key, uint64_t v) { return add_num(w, key, SL_GGUF_UINT64, &v, false); }
int sl_gguf_writer_add_i64(sl_gguf_writer *w, const char *key, int64_t v) { return add_num(w, key, SL_GGUF_INT64, &v, false); }
int sl_gguf_writer_add_f32(sl_gguf_writer *w, const char *key, float v) { return add_num(w, key, SL_GGUF_FLOAT32, &v, false); }
int sl_gguf_writer_add_f64(sl_gguf_writer *w, const char *key, double v) { return add_num(w, key, SL_GGUF_FLOAT64, &v, false); }

int sl_gguf_writer_add_bool(sl_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return add_num(w, key, SL_GGUF_BOOL, &b, false);
}

int sl_gguf_writer_add_strn(sl_gguf_writer *w, const char *key, const char *s, size_t n)
{
    if (!s && n)
        return SL_EINVAL;
    mark m = mark_now(w);
    int rc = begin_key(w, key, SL_GGUF_STRING, false);
    if (!rc && (rc = app_str(w, s ? s : "", n)))
        rollback(w, m);
    return rc;
}

int sl_gguf_writer_add_str(sl_gguf_writer *w, const char *key, const char *s)
{
    return s ? sl_gguf_writer_add_strn(w, key, s, strlen(s)) : SL_EINVAL;
}

/* ---- arrays ---- */

static int open_array(sl_gguf_writer *w, uint32_t elem_type)
{
    if (elem_type >= SL_GGUF_TYPE_COUNT)
        return SL_EINVAL;
    if (w->depth >= SL_GGUF_MAX_ARRAY_DEPTH)
        return SL_ETOOBIG;
    int rc = app_u32(w, elem_type);
    if (rc)
        return rc;
    size_t count_pos = w->kv.len;
    if ((rc = app_u64(w, 0)))
        return rc;
    w->stack[w->depth++] = (open_arr){count_pos, elem_type, 0};
    return 0;
}

int sl_gguf_writer_begin_arr(sl_gguf_writer *w, const char *key, sl_gguf_type elem_type)
{
    if ((uint32_t)elem_type >= SL_GGUF_TYPE_COUNT)
        return SL_EINVAL;
    mark m = mark_now(w);
    int rc = begin_key(w, key, SL_GGUF_ARRAY, false);
    if (!rc && (rc = open_array(w, elem_type)))
        rollback(w, m);
    return rc;
}

int sl_gguf_writer_begin_sub_arr(sl_gguf_writer *w, sl_gguf_type elem_type)
{
    if (!w->depth || w->stack[w->depth - 1].elem_type != SL_GGUF_ARRAY)
        return SL_ESTATE;
    size_t len = w->kv.len;
    open_arr *parent = &w->stack[w->depth - 1];
    int rc = open_array(w, elem_type);
    if (rc) {
        w->kv.len = len;
        return rc;
    }
    parent->count++;
    return 0;
}

int sl_gguf_writer_push_num(sl_gguf_writer *w, const void *v)
{
    if (!w->depth || !value_size(w->stack[w->depth - 1].elem_type))
        return SL_ESTATE;
    open_arr *a = &w->stack[w->depth - 1];
    int rc = app_num(w, a->elem_type, v);
    if (!rc)
        a->count++;
    return rc;
}

int sl_gguf_writer_push_str(sl_gguf_writer *w, const char *s, size_t n)
{
    if (!w->depth || w->stack[w->depth - 1].elem_type != SL_GGUF_STRING)
        return SL_ESTATE;
    if (!s && n)
        return SL_EINVAL;
    size_t len = w->kv.len;
    int rc = app_str(w, s ? s : "", n);
    if (rc) {
        w->kv.len = len;
        return rc;
    }
    w->stack[w->depth - 1].count++;
    return 0;
}

int sl_gguf_writer_end_arr(sl_gguf_writer *w)
{
    if (!w->depth)
        return SL_ESTATE;
    open_arr *a = &w->stack[--w->depth];
    put_le((uint8_t *)w->kv.data + a->count_pos, a->count, 8);
    return 0;
}

int sl_gguf_writer_add_arr(sl_gguf_writer *w, const char *key, sl_gguf_type elem_type,
                           const void *elems, uint64_t count)
{
    size_t sz = value_size(elem_type);
    if (!sz || (!elems && count))
        return SL_EINVAL;
    mark m = mark_now(w);
    int rc = sl_gguf_writer_begin_arr(w, key, elem_type);
    for (uint64_t i = 0; !rc && i < count; i++)
        rc = sl_gguf_writer_push_num(w, (const uint8_t *)elems + i * sz);
    if (!rc)
        rc = sl_gguf_writer_end_arr(w);
    if (rc)
        rollback(w, m);
    return rc;
}

int sl_gguf_writer_add_str_arr(sl_gguf_writer *w, const char *key, const char *const *strs,
                               uint64_t count)
{
    if (!strs && count)
        return SL_EINVAL;
    mark m = mark_now(w);
    int rc = sl_gguf_writer_begin_arr(w, key, SL_GGUF_STRING);
    for (uint64_t i = 0; !rc && i < count; i++)
        rc = strs[i] ? sl_gguf_writer_push_str(w, strs[i], strlen(strs[i])) : SL_EINVAL;
    if (!rc)
        rc = sl_gguf_writer_end_arr(w);
    if (rc)
        rollback(w, m);
    return rc;
}

/* ---- tensors ---- */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

int sl_gguf_writer_add_tensor(sl_gguf_writer *w, const char *name, sl_ggml_type type,
                              uint32_t n_dims, const uint64_t *dims, const void *data,
                              uint64_t n_bytes)
{
    if (w->depth)
        return SL_ESTATE;
    if (!name || !dims || (!data && n_bytes))
        return SL_EINVAL;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > SL_GGUF_MAX_TENSOR_NAME || n_dims < 1 || n_dims > SL_GGUF_MAX_DIMS)
        return SL_EINVAL;
    const sl_ggml_type_traits *tt = sl_ggml_type_info((uint32_t)type);
    if (!tt)
        return SL_EUNSUPPORTED;
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (dims[d] == 0)
            return SL_EINVAL;
        if (dims[d] > (uint64_t)INT64_MAX / n)
            return SL_ERANGE;
        n *= dims[d];
    }
    if (dims[0] % tt->block_size)
        return SL_EINVAL;
    uint64_t want;
    int rc = sl_ggml_nbytes((uint32_t)type, n, &want);
    if (rc)
        return rc;
    if (want != n_bytes)
        return SL_EINVAL;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return SL_EEXIST;
    uint64_t offset = align_up(w->data_size, w->alignment);
    if (offset < w->data_size || n_bytes > UINT64_MAX / 2 - offset)
        return SL_ERANGE;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        w_tensor *nt = sl_realloc(w->tensors, cap * sizeof(w_tensor));
        if (!nt)
            return SL_ENOMEM;
        w->tensors = nt;
        w->cap_tensors = cap;
    }
    w_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = sl_strdup(name)))
        return SL_ENOMEM;
    t->type = (uint32_t)type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++)
        t->dims[d] = dims[d];
    t->data = data;
    t->n_bytes = n_bytes;
    t->offset = offset;
    w->data_size = offset + n_bytes;
    w->n_tensors++;
    return 0;
}

/* ---- output ---- */

typedef int (*emit_fn)(void *ctx, const void *p, size_t n);

static int emit_zeros(emit_fn emit, void *ctx, uint64_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        int rc = emit(ctx, zeros, k);
        if (rc)
            return rc;
        n -= k;
    }
    return 0;
}

static uint64_t infos_size(const sl_gguf_writer *w)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8ull * w->tensors[i].n_dims + 4 + 8;
    return n;
}

/* Total file size: header, metadata, tensor infos, padding, padded data. */
static uint64_t total_size(const sl_gguf_writer *w)
{
    uint64_t head = 24 + w->kv.len + infos_size(w);
    if (!w->n_tensors)
        return head;
    return align_up(head, w->alignment) + align_up(w->data_size, w->alignment);
}

static int serialize(const sl_gguf_writer *w, emit_fn emit, void *ctx)
{
    if (w->depth)
        return SL_ESTATE;
    uint8_t b[24];
    memcpy(b, "GGUF", 4);
    put_le(b + 4, 3, 4);
    put_le(b + 8, w->n_tensors, 8);
    put_le(b + 16, w->n_keys, 8);
    int rc = emit(ctx, b, 24);
    if (!rc && w->kv.len)
        rc = emit(ctx, w->kv.data, w->kv.len);
    for (size_t i = 0; !rc && i < w->n_tensors; i++) {
        const w_tensor *t = &w->tensors[i];
        size_t nlen = strlen(t->name);
        put_le(b, nlen, 8);
        if ((rc = emit(ctx, b, 8)) || (rc = emit(ctx, t->name, nlen)))
            break;
        put_le(b, t->n_dims, 4);
        if ((rc = emit(ctx, b, 4)))
            break;
        for (uint32_t d = 0; !rc && d < t->n_dims; d++) {
            put_le(b, t->dims[d], 8);
            rc = emit(ctx, b, 8);
        }
        put_le(b, t->type, 4);
        put_le(b + 4, t->offset, 8);
        if (!rc)
            rc = emit(ctx, b, 12);
    }
    if (rc || !w->n_tensors)
        return rc;
    uint64_t head = 24 + w->kv.len + infos_size(w);
    if ((rc = emit_zeros(emit, ctx, align_up(head, w->alignment) - head)))
        return rc;
    uint64_t at = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const w_tensor *t = &w->tensors[i];
        if ((rc = emit_zeros(emit, ctx, t->offset - at)))
            return rc;
        if (t->n_bytes && (rc = emit(ctx, t->data, (size_t)t->n_bytes)))
            return rc;
        at = t->offset + t->n_bytes;
    }
    return emit_zeros(emit, ctx, align_up(at, w->alignment) - at);
}

typedef struct mem_sink {
    uint8_t *p;
    size_t len, cap;
} mem_sink;

static int emit_mem(void *ctx, const void *p, size_t n)
{
    mem_sink *s = ctx;
    if (n > s->cap - s->len)
        return SL_ERANGE; /* total_size and serialize disagree: a bug */
    memcpy(s->p + s->len, p, n);
    s->len += n;
    return 0;
}

int sl_gguf_writer_write_mem(const sl_gguf_writer *w, void **out, size_t *len)
{
    if (w->depth)
        return SL_ESTATE;
    uint64_t total = total_size(w);
    if (total > SIZE_MAX)
        return SL_ETOOBIG;
    mem_sink s = {sl_malloc((size_t)total), 0, (size_t)total};
    if (!s.p)
        return SL_ENOMEM;
    int rc = serialize(w, emit_mem, &s);
    if (rc) {
        sl_free(s.p);
        return rc;
    }
    *out = s.p;
    *len = s.len;
    return 0;
}

static int emit_file(void *ctx, const void *p, size_t n)
{
    return fwrite(p, 1, n, (FILE *)ctx) == n ? 0 : SL_EIO;
}

int sl_gguf_writer_write_file(const sl_gguf_writer *w, const char *path, char *err, size_t errlen)
{
    if (w->depth) {
        if (err && errlen)
            snprintf(err, errlen, "an array is still open");
        return SL_ESTATE;
    }
    size_t plen = strlen(path);
    char *tmp = sl_malloc(plen + 5);
    if (!tmp)
        return SL_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        if (err && errlen)
            snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        sl_free(tmp);
        return SL_EIO;
    }
    int rc = serialize(w, emit_file, f);
    if (!rc && fflush(f) != 0)
        rc = SL_EIO;
    if (!rc && fsync(fileno(f)) != 0)
        rc = SL_EIO;
    int saved = errno;
    if (fclose(f) != 0 && !rc) {
        rc = SL_EIO;
        saved = errno;
    }
    if (!rc && rename(tmp, path) != 0) {
        rc = SL_EIO;
        saved = errno;
    }
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
        unlink(tmp);
    }
    sl_free(tmp);
    return rc;
}
