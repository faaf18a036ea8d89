/*
 * gguf: reads and writes GGUF model files (versions 2 and 3, little-endian).
 *
 * A GGUF file is a header ("GGUF", version, tensor count, metadata count), a
 * list of typed key/value metadata, a list of tensor descriptions (name, shape,
 * ggml type, offset), then the tensor data section starting at the first
 * multiple of `general.alignment` (default 32) after the descriptions.
 *
 * The reader maps the file read-only and validates every byte it will ever
 * look at before sl_gguf_open returns: after a successful open, every accessor
 * below is bounds-safe without further checks. Strings and tensor data are
 * handed out as pointers into the mapping; they live as long as the handle.
 * The reader owns the mapping and a small index (keys, array elements, tensor
 * table); nothing is copied from the file. A handle never changes after open,
 * so any number of threads may read it at once. A file truncated by someone
 * else while it is mapped cannot be guarded against (the kernel raises SIGBUS).
 *
 * The writer builds a GGUF v3 file in memory or on disk (tests, `sluice train`).
 *
 * The ggml tensor type table (ids, block sizes, bytes per block) lives here too;
 * the ids are the file format's and are shared with the kernels.
 */
#ifndef SL_ENGINE_GGUF_H
#define SL_ENGINE_GGUF_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

/* ---- ggml tensor types: the file format's ids (append only, gaps kept) ---- */
typedef enum sl_ggml_type {
    SL_GGML_F32 = 0,
    SL_GGML_F16 = 1,
    SL_GGML_Q4_0 = 2,
    SL_GGML_Q4_1 = 3,
    /* 4 and 5 (Q4_2, Q4_3) were removed from the format */
    SL_GGML_Q5_0 = 6,
    SL_GGML_Q5_1 = 7,
    SL_GGML_Q8_0 = 8,
    SL_GGML_Q8_1 = 9,
    SL_GGML_Q2_K = 10,
    SL_GGML_Q3_K = 11,
    SL_GGML_Q4_K = 12,
    SL_GGML_Q5_K = 13,
    SL_GGML_Q6_K = 14,
    SL_GGML_Q8_K = 15,
    SL_GGML_IQ2_XXS = 16,
    SL_GGML_IQ2_XS = 17,
    SL_GGML_IQ3_XXS = 18,
    SL_GGML_IQ1_S = 19,
    SL_GGML_IQ4_NL = 20,
    SL_GGML_IQ3_S = 21,
    SL_GGML_IQ2_S = 22,
    SL_GGML_IQ4_XS = 23,
    SL_GGML_I8 = 24,
    SL_GGML_I16 = 25,
    SL_GGML_I32 = 26,
    SL_GGML_I64 = 27,
    SL_GGML_F64 = 28,
    SL_GGML_IQ1_M = 29,
    SL_GGML_BF16 = 30,
    /* 31..33 (repacked Q4_0 variants) were removed from files */
    SL_GGML_TQ1_0 = 34,
    SL_GGML_TQ2_0 = 35,
    /* 36..38 (repacked IQ4_NL variants) never appear in files */
    SL_GGML_MXFP4 = 39,
    SL_GGML_TYPE_LIMIT = 40, /* one past the highest id this table knows */
} sl_ggml_type;

/* Layout of one ggml type: block_size elements are stored in type_size bytes. */
typedef struct sl_ggml_type_traits {
    const char *name;     /* "F32", "Q4_K", ... */
    uint32_t block_size;  /* elements per block (1 for plain types) */
    uint32_t type_size;   /* bytes per block */
} sl_ggml_type_traits;

/* Returns the static layout of a type id, or NULL when the id is unknown. */
const sl_ggml_type_traits *sl_ggml_type_info(uint32_t type);
/* Returns the type's name, or "?" when unknown. Static string. */
const char *sl_ggml_type_name(uint32_t type);
/* Stores in *out the bytes of n_elements of type: SL_EUNSUPPORTED for an
 * unknown type, SL_EINVAL when n_elements is not a multiple of the block size,
 * SL_ERANGE on overflow. */
int sl_ggml_nbytes(uint32_t type, uint64_t n_elements, uint64_t *out);

/* ---- metadata value types (the file format's ids) ---- */
typedef enum sl_gguf_type {
    SL_GGUF_UINT8 = 0,
    SL_GGUF_INT8 = 1,
    SL_GGUF_UINT16 = 2,
    SL_GGUF_INT16 = 3,
    SL_GGUF_UINT32 = 4,
    SL_GGUF_INT32 = 5,
    SL_GGUF_FLOAT32 = 6,
    SL_GGUF_BOOL = 7,
    SL_GGUF_STRING = 8,
    SL_GGUF_ARRAY = 9,
    SL_GGUF_UINT64 = 10,
    SL_GGUF_INT64 = 11,
    SL_GGUF_FLOAT64 = 12,
    SL_GGUF_TYPE_COUNT = 13,
} sl_gguf_type;

/* Returns "uint8" ... "float64", or "?" for an unknown id. Static string. */
const char *sl_gguf_type_name(uint32_t type);

/* Hard limits of the reader (and writer). */
#define SL_GGUF_DEFAULT_ALIGNMENT 32u
#define SL_GGUF_MAX_DIMS 4
#define SL_GGUF_MAX_ARRAY_DEPTH 8        /* an array directly under a key is depth 1 */
#define SL_GGUF_MAX_KEY_LEN 65535u       /* spec: keys are at most 2^16-1 bytes */
#define SL_GGUF_MAX_TENSOR_NAME 64u      /* spec: tensor names are at most 64 bytes */

/* ---- reader ---- */
typedef struct sl_gguf sl_gguf;

/* One tensor as described by the file. All pointers point into the handle. */
typedef struct sl_gguf_tensor {
    sl_str name;                     /* not NUL-terminated */
    sl_ggml_type type;
    uint32_t n_dims;                 /* 1..4 */
    uint64_t dims[SL_GGUF_MAX_DIMS]; /* dims[0] is the innermost (row) length; unused = 1 */
    uint64_t n_elements;             /* product of dims */
    uint64_t n_bytes;                /* size of the data in the file */
    uint64_t offset;                 /* from the start of the data section */
    const void *data;                /* into the mapping; aligned to the file's alignment
                                      * relative to the file start */
} sl_gguf_tensor;

/* A view of an array value. Valid as long as the handle it came from. */
typedef struct sl_gguf_arr {
    sl_gguf_type type;  /* element type; SL_GGUF_ARRAY for nested arrays */
    uint64_t count;     /* number of elements */
    const sl_gguf *g_;  /* private */
    size_t node_;       /* private */
} sl_gguf_arr;

/* Maps and validates the file at path. On success *out is a handle the caller
 * frees with sl_gguf_close. On failure returns a negative SL_E* code and writes a
 * message naming what was wrong and the byte offset into err (if errlen > 0). */
int sl_gguf_open(const char *path, sl_gguf **out, char *err, size_t errlen);
/* Like sl_gguf_open over bytes the caller owns; they must outlive the handle. */
int sl_gguf_open_memory(const void *data, size_t size, sl_gguf **out, char *err, size_t errlen);
/* Unmaps and frees the handle. NULL is a no-op. */
void sl_gguf_close(sl_gguf *g);

/* File facts. */
uint32_t sl_gguf_version(const sl_gguf *g);
uint64_t sl_gguf_file_size(const sl_gguf *g);
uint32_t sl_gguf_alignment(const sl_gguf *g);
uint64_t sl_gguf_data_offset(const sl_gguf *g); /* start of the tensor data section */

/* ---- metadata: keys keep file order; index i is in [0, sl_gguf_n_kv) ---- */
size_t sl_gguf_n_kv(const sl_gguf *g);
/* Returns the key at index i (not NUL-terminated, points into the handle). */
sl_str sl_gguf_kv_key(const sl_gguf *g, size_t i);
/* Returns the value type of the key at index i. */
sl_gguf_type sl_gguf_kv_type(const sl_gguf *g, size_t i);
/* Returns the index of key, or -1 when absent. */
long sl_gguf_find_key(const sl_gguf *g, const char *key);
/* Stores the type of key in *out; SL_ENOTFOUND when absent. */
int sl_gguf_get_type(const sl_gguf *g, const char *key, sl_gguf_type *out);

/* Typed getters. Each returns 0, SL_ENOTFOUND (no such key), SL_EINVAL (the
 * value's type does not convert) or SL_ERANGE (an integer that does not fit).
 * Integer getters accept every integer type whose value fits; the float getters
 * accept float32, float64 and integers. bool accepts only bool. */
int sl_gguf_get_u32(const sl_gguf *g, const char *key, uint32_t *out);
int sl_gguf_get_i32(const sl_gguf *g, const char *key, int32_t *out);
int sl_gguf_get_u64(const sl_gguf *g, const char *key, uint64_t *out);
int sl_gguf_get_i64(const sl_gguf *g, const char *key, int64_t *out);
int sl_gguf_get_f32(const sl_gguf *g, const char *key, float *out);
int sl_gguf_get_f64(const sl_gguf *g, const char *key, double *out);
int sl_gguf_get_bool(const sl_gguf *g, const char *key, bool *out);
/* *out points into the handle and is not NUL-terminated. */
int sl_gguf_get_str(const sl_gguf *g, const char *key, sl_str *out);
/* Stores a view of the array value of key; SL_EINVAL when it is not an array. */
int sl_gguf_get_arr(const sl_gguf *g, const char *key, sl_gguf_arr *out);

/* Array element access; i must be < a.count (else SL_ERANGE). The getters
 * convert like the key getters; SL_EINVAL when the element type does not. */
int sl_gguf_arr_get_str(sl_gguf_arr a, uint64_t i, sl_str *out);
int sl_gguf_arr_get_u64(sl_gguf_arr a, uint64_t i, uint64_t *out);
int sl_gguf_arr_get_i64(sl_gguf_arr a, uint64_t i, int64_t *out);
int sl_gguf_arr_get_f64(sl_gguf_arr a, uint64_t i, double *out);
int sl_gguf_arr_get_bool(sl_gguf_arr a, uint64_t i, bool *out);
int sl_gguf_arr_get_arr(sl_gguf_arr a, uint64_t i, sl_gguf_arr *out);
/* Returns the packed little-endian elements of a numeric or bool array (count
 * times the element size), or NULL for string and nested arrays. The pointer
 * points into the handle and may be unaligned: copy with memcpy. */
const void *sl_gguf_arr_data(sl_gguf_arr a);

/* ---- tensors: index i is in [0, sl_gguf_n_tensors), in file order ---- */
size_t sl_gguf_n_tensors(const sl_gguf *g);
/* Returns tensor i (owned by the handle), or NULL when out of range. */
const sl_gguf_tensor *sl_gguf_tensor_at(const sl_gguf *g, size_t i);
/* Returns the tensor named name (owned by the handle), or NULL. */
const sl_gguf_tensor *sl_gguf_find_tensor(const sl_gguf *g, const char *name);

/* ---- writer: builds a GGUF v3 file ----
 * Keys and tensors are written in the order they are added. Adding validates
 * (duplicate keys/names, lengths, shapes, sizes) and returns SL_E* on misuse;
 * after a failed call the writer is unchanged and still usable. */
typedef struct sl_gguf_writer sl_gguf_writer;

/* Stores a new empty writer in *out (free with sl_gguf_writer_free). */
int sl_gguf_writer_new(sl_gguf_writer **out);
/* Frees the writer. NULL is a no-op. */
void sl_gguf_writer_free(sl_gguf_writer *w);

/* Sets the data alignment (a power of two) and adds the uint32 key
 * `general.alignment`. Must come before the first tensor. */
int sl_gguf_writer_set_alignment(sl_gguf_writer *w, uint32_t alignment);

/* Scalar values. */
int sl_gguf_writer_add_u8(sl_gguf_writer *w, const char *key, uint8_t v);
int sl_gguf_writer_add_i8(sl_gguf_writer *w, const char *key, int8_t v);
int sl_gguf_writer_add_u16(sl_gguf_writer *w, const char *key, uint16_t v);
int sl_gguf_writer_add_i16(sl_gguf_writer *w, const char *key, int16_t v);
int sl_gguf_writer_add_u32(sl_gguf_writer *w, const char *key, uint32_t v);
int sl_gguf_writer_add_i32(sl_gguf_writer *w, const char *key, int32_t v);
int sl_gguf_writer_add_u64(sl_gguf_writer *w, const char *key, uint64_t v);
int sl_gguf_writer_add_i64(sl_gguf_writer *w, const char *key, int64_t v);
int sl_gguf_writer_add_f32(sl_gguf_writer *w, const char *key, float v);
int sl_gguf_writer_add_f64(sl_gguf_writer *w, const char *key, double v);
int sl_gguf_writer_add_bool(sl_gguf_writer *w, const char *key, bool v);
int sl_gguf_writer_add_str(sl_gguf_writer *w, const char *key, const char *s);
int sl_gguf_writer_add_strn(sl_gguf_writer *w, const char *key, const char *s, size_t n);

/* Whole arrays in one call: elems are count packed host values of elem_type
 * (bool as one byte 0/1); strs are count NUL-terminated strings. */
int sl_gguf_writer_add_arr(sl_gguf_writer *w, const char *key, sl_gguf_type elem_type,
                           const void *elems, uint64_t count);
int sl_gguf_writer_add_str_arr(sl_gguf_writer *w, const char *key, const char *const *strs,
                               uint64_t count);

/* Arrays element by element, nested arrays included:
 *   begin_arr(w, key, SL_GGUF_ARRAY)      an array of arrays under key
 *     begin_sub_arr(w, SL_GGUF_INT32)     its first element, an int32 array
 *       push_num(w, &v) ...
 *     end_arr(w)
 *   end_arr(w)
 * No other key or tensor may be added while an array is open. */
int sl_gguf_writer_begin_arr(sl_gguf_writer *w, const char *key, sl_gguf_type elem_type);
int sl_gguf_writer_begin_sub_arr(sl_gguf_writer *w, sl_gguf_type elem_type);
/* Appends one element of the open array's numeric/bool type from *v (host value). */
int sl_gguf_writer_push_num(sl_gguf_writer *w, const void *v);
int sl_gguf_writer_push_str(sl_gguf_writer *w, const char *s, size_t n);
int sl_gguf_writer_end_arr(sl_gguf_writer *w);

/* Adds a tensor. dims[0] is the innermost length; data must hold exactly the
 * type's size for these dims (n_bytes) and is borrowed: it must stay valid
 * until the last write call. */
int sl_gguf_writer_add_tensor(sl_gguf_writer *w, const char *name, sl_ggml_type type,
                              uint32_t n_dims, const uint64_t *dims, const void *data,
                              uint64_t n_bytes);

/* Serializes to a new buffer in *out (free with sl_free), its length in *len. */
int sl_gguf_writer_write_mem(const sl_gguf_writer *w, void **out, size_t *len);
/* Writes the file to path (through path.tmp and a rename). On failure returns
 * SL_E* and a message in err. */
int sl_gguf_writer_write_file(const sl_gguf_writer *w, const char *path, char *err,
                              size_t errlen);

#endif
