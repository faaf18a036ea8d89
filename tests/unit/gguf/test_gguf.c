/* GGUF reader and writer: layout against hand-built bytes, round trips of every
 * metadata type and tensor, one crafted file per validation error, truncation
 * at every offset, bit flips, allocation failures, and writer misuse. */
#include "engine/gguf/gguf.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- raw byte builder for crafted (often invalid) files ---- */
typedef struct rb {
    uint8_t b[8192];
    size_t n;
} rb;

static void rb_bytes(rb *r, const void *p, size_t n)
{
    memcpy(r->b + r->n, p, n);
    r->n += n;
}
static void rb_le(rb *r, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r->b[r->n++] = (uint8_t)(v >> (8 * i));
}
static void rb_u8(rb *r, uint8_t v) { rb_le(r, v, 1); }
static void rb_u32(rb *r, uint32_t v) { rb_le(r, v, 4); }
static void rb_u64(rb *r, uint64_t v) { rb_le(r, v, 8); }
static void rb_str(rb *r, const char *s)
{
    rb_u64(r, strlen(s));
    rb_bytes(r, s, strlen(s));
}
static void rb_hdr(rb *r, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    r->n = 0;
    rb_bytes(r, "GGUF", 4);
    rb_u32(r, version);
    rb_u64(r, n_tensors);
    rb_u64(r, n_kv);
}
static void rb_kv_u32(rb *r, const char *key, uint32_t v)
{
    rb_str(r, key);
    rb_u32(r, SL_GGUF_UINT32);
    rb_u32(r, v);
}
/* A tensor info with n_dims dims taken from d. */
static void rb_tensor(rb *r, const char *name, uint32_t n_dims, const uint64_t *d, uint32_t type,
                      uint64_t offset)
{
    rb_str(r, name);
    rb_u32(r, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        rb_u64(r, d[i]);
    rb_u32(r, type);
    rb_u64(r, offset);
}
static void rb_zeros(rb *r, size_t n)
{
    memset(r->b + r->n, 0, n);
    r->n += n;
}
static void rb_pad(rb *r, size_t align)
{
    while (r->n % align)
        r->b[r->n++] = 0;
}

/* Opens an exact-size heap copy (so ASan sees any overread). */
static int open_copy(const void *data, size_t n, char *err, size_t errlen, sl_gguf **out)
{
    void *copy = malloc(n ? n : 1);
    memcpy(copy, data, n);
    int rc = sl_gguf_open_memory(copy, n, out, err, errlen);
    if (rc == 0) {
        /* Callers that keep the handle need the bytes; this helper is only used
         * to check an outcome, so close right away. */
        sl_gguf_close(*out);
        *out = NULL;
    }
    free(copy);
    return rc;
}

static char last_err[512];

static int try_open(const rb *r)
{
    sl_gguf *g = NULL;
    last_err[0] = 0;
    return open_copy(r->b, r->n, last_err, sizeof last_err, &g);
}

#define EXPECT_FAIL(r, code, substr)                                                               \
    do {                                                                                           \
        EXPECT_EQ_INT(try_open(r), code);                                                          \
        EXPECT_CONTAINS(last_err, substr);                                                         \
    } while (0)

/* Reads every value, element and tensor byte a handle offers; returns a checksum
 * so the compiler keeps the reads. */
static uint64_t walk_arr(sl_gguf_arr a)
{
    uint64_t h = a.count;
    for (uint64_t i = 0; i < a.count; i++) {
        sl_str s;
        uint64_t u;
        int64_t v;
        double f;
        bool b;
        sl_gguf_arr sub;
        if (!sl_gguf_arr_get_str(a, i, &s))
            h += s.n + (s.n ? (uint8_t)s.p[s.n - 1] : 0);
        if (!sl_gguf_arr_get_u64(a, i, &u))
            h += u;
        if (!sl_gguf_arr_get_i64(a, i, &v))
            h += (uint64_t)v;
        if (!sl_gguf_arr_get_f64(a, i, &f))
            h += f == f ? 1 : 2;
        if (!sl_gguf_arr_get_bool(a, i, &b))
            h += b;
        if (!sl_gguf_arr_get_arr(a, i, &sub))
            h += walk_arr(sub);
    }
    return h;
}

static uint64_t walk(const sl_gguf *g)
{
    uint64_t h = 0;
    for (size_t i = 0; i < sl_gguf_n_kv(g); i++) {
        sl_str k = sl_gguf_kv_key(g, i);
        char key[SL_GGUF_MAX_KEY_LEN + 1];
        memcpy(key, k.p, k.n);
        key[k.n] = 0;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f;
        bool b;
        sl_str s;
        sl_gguf_arr a;
        h += sl_gguf_find_key(g, key) == (long)i;
        if (!sl_gguf_get_u32(g, key, &u32))
            h += u32;
        if (!sl_gguf_get_i32(g, key, &i32))
            h += (uint64_t)i32;
        if (!sl_gguf_get_u64(g, key, &u64))
            h += u64;
        if (!sl_gguf_get_f32(g, key, &f))
            h += f == f;
        if (!sl_gguf_get_bool(g, key, &b))
            h += b;
        if (!sl_gguf_get_str(g, key, &s))
            h += s.n + (s.n ? (uint8_t)s.p[0] : 0);
        if (!sl_gguf_get_arr(g, key, &a)) {
            h += walk_arr(a);
            const uint8_t *d = sl_gguf_arr_data(a);
            if (d && a.count)
                h += d[0];
        }
    }
    for (size_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        char name[SL_GGUF_MAX_TENSOR_NAME + 1];
        memcpy(name, t->name.p, t->name.n);
        name[t->name.n] = 0;
        h += sl_gguf_find_tensor(g, name) == t;
        const uint8_t *d = t->data;
        if (t->n_bytes)
            h += d[0] + d[t->n_bytes - 1];
    }
    return h;
}

/* ---- type table ---- */

static void test_type_table(void)
{
    struct { uint32_t id; const char *name; uint32_t bs, ts; } want[] = {
        {0, "F32", 1, 4},       {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},  {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},  {9, "Q8_1", 32, 40},
        {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
        {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18}, {21, "IQ3_S", 256, 110},
        {22, "IQ2_S", 256, 82}, {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},    {25, "I16", 1, 2},
        {26, "I32", 1, 4},      {27, "I64", 1, 8},     {28, "F64", 1, 8},    {29, "IQ1_M", 256, 56},
        {30, "BF16", 1, 2},     {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66}, {39, "MXFP4", 32, 17},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        const sl_ggml_type_traits *t = sl_ggml_type_info(want[i].id);
        EXPECT(t != NULL);
        if (!t)
            continue;
        EXPECT_EQ_STR(t->name, want[i].name);
        EXPECT_EQ_UINT(t->block_size, want[i].bs);
        EXPECT_EQ_UINT(t->type_size, want[i].ts);
    }
    uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, UINT32_MAX};
    for (size_t i = 0; i < SL_ARRAY_LEN(unknown); i++) {
        EXPECT(sl_ggml_type_info(unknown[i]) == NULL);
        EXPECT_EQ_STR(sl_ggml_type_name(unknown[i]), "?");
    }
    EXPECT_EQ_INT(SL_GGML_Q4_K, 12);
    EXPECT_EQ_INT(SL_GGML_Q6_K, 14);
    EXPECT_EQ_INT(SL_GGML_BF16, 30);
    uint64_t nb = 0;
    EXPECT_EQ_INT(sl_ggml_nbytes(SL_GGML_Q4_K, 512, &nb), 0);
    EXPECT_EQ_UINT(nb, 288);
    EXPECT_EQ_INT(sl_ggml_nbytes(SL_GGML_Q8_0, 33, &nb), SL_EINVAL);
    EXPECT_EQ_INT(sl_ggml_nbytes(4, 32, &nb), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_ggml_nbytes(SL_GGML_F64, UINT64_MAX / 4, &nb), SL_ERANGE);
    EXPECT_EQ_STR(sl_gguf_type_name(SL_GGUF_FLOAT64), "float64");
    EXPECT_EQ_STR(sl_gguf_type_name(13), "?");
}

/* ---- writer layout against hand-built bytes ---- */

static void test_writer_golden_bytes(void)
{
    sl_gguf_writer *w;
    EXPECT_EQ_INT(sl_gguf_writer_new(&w), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_u32(w, "a", 7), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_str(w, "s", "hi"), 0);
    float f[2] = {1.0f, -2.0f};
    uint64_t dims[2] = {2, 1};
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 2, dims, f, sizeof f), 0);
    void *buf = NULL;
    size_t len = 0;
    EXPECT_EQ_INT(sl_gguf_writer_write_mem(w, &buf, &len), 0);

    rb r;
    rb_hdr(&r, 3, 1, 2);
    rb_kv_u32(&r, "a", 7);
    rb_str(&r, "s");
    rb_u32(&r, SL_GGUF_STRING);
    rb_str(&r, "hi");
    rb_tensor(&r, "t", 2, dims, SL_GGML_F32, 0);
    rb_pad(&r, 32);
    rb_u32(&r, 0x3f800000u); /* 1.0f */
    rb_u32(&r, 0xc0000000u); /* -2.0f */
    rb_pad(&r, 32);
    EXPECT_EQ_UINT(len, r.n);
    EXPECT(buf && len == r.n && memcmp(buf, r.b, r.n) == 0);
    sl_free(buf);
    sl_gguf_writer_free(w);
}

/* ---- round trip ---- */

static void *build_rich(size_t *len)
{
    sl_gguf_writer *w;
    if (sl_gguf_writer_new(&w))
        return NULL;
    int rc = 0;
    rc |= sl_gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= sl_gguf_writer_set_alignment(w, 64);
    rc |= sl_gguf_writer_add_u8(w, "v.u8", 250);
    rc |= sl_gguf_writer_add_i8(w, "v.i8", -100);
    rc |= sl_gguf_writer_add_u16(w, "v.u16", 65000);
    rc |= sl_gguf_writer_add_i16(w, "v.i16", -30000);
    rc |= sl_gguf_writer_add_u32(w, "v.u32", 4000000000u);
    rc |= sl_gguf_writer_add_i32(w, "v.i32", -2000000000);
    rc |= sl_gguf_writer_add_u64(w, "v.u64", 0xfedcba9876543210ull);
    rc |= sl_gguf_writer_add_i64(w, "v.i64", -5000000000ll);
    rc |= sl_gguf_writer_add_f32(w, "v.f32", 0.15625f);
    rc |= sl_gguf_writer_add_f64(w, "v.f64", -1.0e300);
    rc |= sl_gguf_writer_add_bool(w, "v.bool", true);
    rc |= sl_gguf_writer_add_str(w, "v.str", "héllo");
    rc |= sl_gguf_writer_add_strn(w, "v.empty", "", 0);
    const char *toks[] = {"<s>", "", "▁the", "a b"};
    rc |= sl_gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, 4);
    float scores[3] = {-1.5f, 0.0f, 2.25f};
    rc |= sl_gguf_writer_add_arr(w, "a.f32", SL_GGUF_FLOAT32, scores, 3);
    int32_t ids[3] = {-7, 0, 123456};
    rc |= sl_gguf_writer_add_arr(w, "a.i32", SL_GGUF_INT32, ids, 3);
    uint8_t flags[3] = {1, 0, 1};
    rc |= sl_gguf_writer_add_arr(w, "a.bool", SL_GGUF_BOOL, flags, 3);
    uint64_t big[2] = {UINT64_MAX, 1};
    rc |= sl_gguf_writer_add_arr(w, "a.u64", SL_GGUF_UINT64, big, 2);
    rc |= sl_gguf_writer_add_arr(w, "a.empty", SL_GGUF_INT16, NULL, 0);
    /* [[1,2],[],[3]] of int32 */
    rc |= sl_gguf_writer_begin_arr(w, "a.nested", SL_GGUF_ARRAY);
    int32_t v1 = 1, v2 = 2, v3 = 3;
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_INT32);
    rc |= sl_gguf_writer_push_num(w, &v1);
    rc |= sl_gguf_writer_push_num(w, &v2);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_INT32);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_INT32);
    rc |= sl_gguf_writer_push_num(w, &v3);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_end_arr(w);
    /* [[["x","yz"]]] of strings, three levels */
    rc |= sl_gguf_writer_begin_arr(w, "a.deep", SL_GGUF_ARRAY);
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_ARRAY);
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_STRING);
    rc |= sl_gguf_writer_push_str(w, "x", 1);
    rc |= sl_gguf_writer_push_str(w, "yz", 2);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_end_arr(w);

    static float t32[4 * 3];
    static uint16_t t16[8];
    static uint8_t tq4[2 * 18], tq8[34], tk[144], tb[6];
    for (size_t i = 0; i < SL_ARRAY_LEN(t32); i++)
        t32[i] = (float)i * 0.5f;
    for (size_t i = 0; i < SL_ARRAY_LEN(t16); i++)
        t16[i] = (uint16_t)(0x3c00 + i);
    for (size_t i = 0; i < sizeof tq4; i++)
        tq4[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof tq8; i++)
        tq8[i] = (uint8_t)(255 - i);
    for (size_t i = 0; i < sizeof tk; i++)
        tk[i] = (uint8_t)(i ^ 0x5a);
    for (size_t i = 0; i < sizeof tb; i++)
        tb[i] = (uint8_t)(i + 100);
    rc |= sl_gguf_writer_add_tensor(w, "tok.weight", SL_GGML_F32, 2, (uint64_t[]){4, 3}, t32, sizeof t32);
    rc |= sl_gguf_writer_add_tensor(w, "norm", SL_GGML_F16, 1, (uint64_t[]){8}, t16, sizeof t16);
    rc |= sl_gguf_writer_add_tensor(w, "q4", SL_GGML_Q4_0, 2, (uint64_t[]){32, 2}, tq4, sizeof tq4);
    rc |= sl_gguf_writer_add_tensor(w, "q8", SL_GGML_Q8_0, 4, (uint64_t[]){32, 1, 1, 1}, tq8, sizeof tq8);
    rc |= sl_gguf_writer_add_tensor(w, "k4", SL_GGML_Q4_K, 1, (uint64_t[]){256}, tk, sizeof tk);
    rc |= sl_gguf_writer_add_tensor(w, "bf", SL_GGML_BF16, 3, (uint64_t[]){1, 3, 1}, tb, sizeof tb);
    void *buf = NULL;
    if (!rc)
        rc = sl_gguf_writer_write_mem(w, &buf, len);
    sl_gguf_writer_free(w);
    return rc ? NULL : buf;
}

static void test_roundtrip(void)
{
    size_t len = 0;
    void *buf = build_rich(&len);
    EXPECT(buf != NULL);
    if (!buf)
        return;
    sl_gguf *g = NULL;
    char err[256] = "";
    EXPECT_EQ_INT(sl_gguf_open_memory(buf, len, &g, err, sizeof err), 0);
    if (!g) {
        fprintf(stderr, "open: %s\n", err);
        sl_free(buf);
        return;
    }
    EXPECT_EQ_UINT(sl_gguf_version(g), 3);
    EXPECT_EQ_UINT(sl_gguf_alignment(g), 64);
    EXPECT_EQ_UINT(sl_gguf_file_size(g), len);
    EXPECT_EQ_UINT(sl_gguf_data_offset(g) % 64, 0);

    /* keys in file order */
    const char *order[] = {"general.architecture", "general.alignment", "v.u8", "v.i8", "v.u16", "v.i16",
                           "v.u32", "v.i32", "v.u64", "v.i64", "v.f32", "v.f64", "v.bool", "v.str",
                           "v.empty", "tokenizer.ggml.tokens", "a.f32", "a.i32", "a.bool", "a.u64",
                           "a.empty", "a.nested", "a.deep"};
    EXPECT_EQ_UINT(sl_gguf_n_kv(g), SL_ARRAY_LEN(order));
    for (size_t i = 0; i < SL_ARRAY_LEN(order) && i < sl_gguf_n_kv(g); i++) {
        EXPECT(sl_str_eq_c(sl_gguf_kv_key(g, i), order[i]));
        EXPECT_EQ_INT(sl_gguf_find_key(g, order[i]), (long)i);
    }
    EXPECT_EQ_INT(sl_gguf_find_key(g, "nope"), -1);
    EXPECT_EQ_INT(sl_gguf_kv_type(g, 2), SL_GGUF_UINT8);
    EXPECT_EQ_INT(sl_gguf_kv_type(g, 1), SL_GGUF_UINT32);

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    sl_str s;
    sl_gguf_type ty;
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.u8", &u32), 0);
    EXPECT_EQ_UINT(u32, 250);
    EXPECT_EQ_INT(sl_gguf_get_i32(g, "v.i8", &i32), 0);
    EXPECT_EQ_INT(i32, -100);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.u16", &u32), 0);
    EXPECT_EQ_UINT(u32, 65000);
    EXPECT_EQ_INT(sl_gguf_get_i32(g, "v.i16", &i32), 0);
    EXPECT_EQ_INT(i32, -30000);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.u32", &u32), 0);
    EXPECT_EQ_UINT(u32, 4000000000u);
    EXPECT_EQ_INT(sl_gguf_get_i32(g, "v.i32", &i32), 0);
    EXPECT_EQ_INT(i32, -2000000000);
    EXPECT_EQ_INT(sl_gguf_get_u64(g, "v.u64", &u64), 0);
    EXPECT_EQ_UINT(u64, 0xfedcba9876543210ull);
    EXPECT_EQ_INT(sl_gguf_get_i64(g, "v.i64", &i64), 0);
    EXPECT_EQ_INT(i64, -5000000000ll);
    EXPECT_EQ_INT(sl_gguf_get_f32(g, "v.f32", &f32), 0);
    EXPECT_EQ_INT(f32 == 0.15625f, 1);
    EXPECT_EQ_INT(sl_gguf_get_f64(g, "v.f64", &f64), 0);
    EXPECT_EQ_INT(f64 == -1.0e300, 1);
    EXPECT_EQ_INT(sl_gguf_get_bool(g, "v.bool", &b), 0);
    EXPECT_EQ_INT(b, 1);
    EXPECT_EQ_INT(sl_gguf_get_str(g, "v.str", &s), 0);
    EXPECT(sl_str_eq_c(s, "héllo"));
    EXPECT_EQ_INT(sl_gguf_get_str(g, "v.empty", &s), 0);
    EXPECT_EQ_UINT(s.n, 0);
    EXPECT_EQ_INT(sl_gguf_get_str(g, "general.architecture", &s), 0);
    EXPECT(sl_str_eq_c(s, "llama"));
    EXPECT_EQ_INT(sl_gguf_get_type(g, "v.f64", &ty), 0);
    EXPECT_EQ_INT(ty, SL_GGUF_FLOAT64);

    /* conversions and their refusals */
    EXPECT_EQ_INT(sl_gguf_get_i32(g, "v.u32", &i32), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.i8", &u32), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.u64", &u32), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_get_i64(g, "v.u64", &i64), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_get_u64(g, "v.u8", &u64), 0);
    EXPECT_EQ_UINT(u64, 250);
    EXPECT_EQ_INT(sl_gguf_get_i64(g, "v.i32", &i64), 0);
    EXPECT_EQ_INT(i64, -2000000000);
    EXPECT_EQ_INT(sl_gguf_get_f32(g, "v.i16", &f32), 0);
    EXPECT_EQ_INT(f32 == -30000.0f, 1);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.f32", &u32), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "v.bool", &u32), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_bool(g, "v.u8", &b), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_str(g, "v.u8", &s), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_f32(g, "v.str", &f32), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_u32(g, "missing", &u32), SL_ENOTFOUND);
    EXPECT_EQ_INT(sl_gguf_get_type(g, "missing", &ty), SL_ENOTFOUND);
    sl_gguf_arr a, sub, sub2;
    EXPECT_EQ_INT(sl_gguf_get_arr(g, "v.str", &a), SL_EINVAL);

    /* arrays */
    EXPECT_EQ_INT(sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &a), 0);
    EXPECT_EQ_INT(a.type, SL_GGUF_STRING);
    EXPECT_EQ_UINT(a.count, 4);
    const char *toks[] = {"<s>", "", "▁the", "a b"};
    for (uint64_t i = 0; i < 4; i++) {
        EXPECT_EQ_INT(sl_gguf_arr_get_str(a, i, &s), 0);
        EXPECT(sl_str_eq_c(s, toks[i]));
    }
    EXPECT_EQ_INT(sl_gguf_arr_get_str(a, 4, &s), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_arr_get_u64(a, 0, &u64), SL_EINVAL);
    EXPECT(sl_gguf_arr_data(a) == NULL);

    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.f32", &a), 0);
    EXPECT_EQ_INT(a.type, SL_GGUF_FLOAT32);
    EXPECT_EQ_UINT(a.count, 3);
    EXPECT_EQ_INT(sl_gguf_arr_get_f64(a, 0, &f64), 0);
    EXPECT_EQ_INT(f64 == -1.5, 1);
    EXPECT_EQ_INT(sl_gguf_arr_get_f64(a, 2, &f64), 0);
    EXPECT_EQ_INT(f64 == 2.25, 1);
    float fs[3];
    memcpy(fs, sl_gguf_arr_data(a), sizeof fs);
    EXPECT_EQ_INT(fs[0] == -1.5f && fs[1] == 0.0f && fs[2] == 2.25f, 1);

    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.i32", &a), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(a, 0, &i64), 0);
    EXPECT_EQ_INT(i64, -7);
    EXPECT_EQ_INT(sl_gguf_arr_get_u64(a, 0, &u64), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(a, 2, &i64), 0);
    EXPECT_EQ_INT(i64, 123456);
    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.bool", &a), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_bool(a, 0, &b), 0);
    EXPECT_EQ_INT(b, 1);
    EXPECT_EQ_INT(sl_gguf_arr_get_bool(a, 1, &b), 0);
    EXPECT_EQ_INT(b, 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_u64(a, 0, &u64), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.u64", &a), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_u64(a, 0, &u64), 0);
    EXPECT_EQ_UINT(u64, UINT64_MAX);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(a, 0, &i64), SL_ERANGE);
    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.empty", &a), 0);
    EXPECT_EQ_INT(a.type, SL_GGUF_INT16);
    EXPECT_EQ_UINT(a.count, 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(a, 0, &i64), SL_ERANGE);

    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.nested", &a), 0);
    EXPECT_EQ_INT(a.type, SL_GGUF_ARRAY);
    EXPECT_EQ_UINT(a.count, 3);
    uint64_t lens[3] = {2, 0, 1};
    for (uint64_t i = 0; i < 3; i++) {
        EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, i, &sub), 0);
        EXPECT_EQ_INT(sub.type, SL_GGUF_INT32);
        EXPECT_EQ_UINT(sub.count, lens[i]);
    }
    EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, 0, &sub), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(sub, 1, &i64), 0);
    EXPECT_EQ_INT(i64, 2);
    EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, 2, &sub), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_i64(sub, 0, &i64), 0);
    EXPECT_EQ_INT(i64, 3);
    EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, 3, &sub), SL_ERANGE);

    EXPECT_EQ_INT(sl_gguf_get_arr(g, "a.deep", &a), 0);
    EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, 0, &sub), 0);
    EXPECT_EQ_INT(sub.type, SL_GGUF_ARRAY);
    EXPECT_EQ_INT(sl_gguf_arr_get_arr(sub, 0, &sub2), 0);
    EXPECT_EQ_INT(sub2.type, SL_GGUF_STRING);
    EXPECT_EQ_UINT(sub2.count, 2);
    EXPECT_EQ_INT(sl_gguf_arr_get_str(sub2, 1, &s), 0);
    EXPECT(sl_str_eq_c(s, "yz"));

    /* tensors */
    EXPECT_EQ_UINT(sl_gguf_n_tensors(g), 6);
    const sl_gguf_tensor *t = sl_gguf_find_tensor(g, "tok.weight");
    EXPECT(t != NULL);
    if (t) {
        EXPECT_EQ_INT(t->type, SL_GGML_F32);
        EXPECT_EQ_UINT(t->n_dims, 2);
        EXPECT_EQ_UINT(t->dims[0], 4);
        EXPECT_EQ_UINT(t->dims[1], 3);
        EXPECT_EQ_UINT(t->dims[2], 1);
        EXPECT_EQ_UINT(t->n_elements, 12);
        EXPECT_EQ_UINT(t->n_bytes, 48);
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * 11, 4);
        EXPECT_EQ_INT(v == 5.5f, 1);
    }
    struct { const char *name; sl_ggml_type type; uint64_t n, bytes; uint8_t first, last; } tw[] = {
        {"norm", SL_GGML_F16, 8, 16, 0x00, 0x3c},
        {"q4", SL_GGML_Q4_0, 64, 36, 1, (uint8_t)(35 * 7 + 1)},
        {"q8", SL_GGML_Q8_0, 32, 34, 255, 255 - 33},
        {"k4", SL_GGML_Q4_K, 256, 144, 0x5a, 143 ^ 0x5a},
        {"bf", SL_GGML_BF16, 3, 6, 100, 105},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(tw); i++) {
        t = sl_gguf_find_tensor(g, tw[i].name);
        EXPECT(t != NULL);
        if (!t)
            continue;
        EXPECT(t == sl_gguf_tensor_at(g, i + 1));
        EXPECT_EQ_INT(t->type, tw[i].type);
        EXPECT_EQ_UINT(t->n_elements, tw[i].n);
        EXPECT_EQ_UINT(t->n_bytes, tw[i].bytes);
        EXPECT_EQ_UINT(t->offset % 64, 0);
        EXPECT_EQ_UINT(((const uint8_t *)t->data - (const uint8_t *)buf) % 64, 0);
        EXPECT_EQ_UINT(((const uint8_t *)t->data)[0], tw[i].first);
        EXPECT_EQ_UINT(((const uint8_t *)t->data)[t->n_bytes - 1], tw[i].last);
    }
    EXPECT(sl_gguf_find_tensor(g, "nope") == NULL);
    EXPECT(sl_gguf_tensor_at(g, 6) == NULL);
    sl_gguf_close(g);
    sl_free(buf);
}

/* ---- crafted invalid files ---- */

static void test_bad_header(void)
{
    rb r;
    rb_hdr(&r, 3, 0, 0);
    EXPECT_EQ_INT(try_open(&r), 0);
    r.b[0] = 'X';
    EXPECT_FAIL(&r, SL_EPARSE, "bad magic");
    EXPECT_CONTAINS(last_err, "offset 0:");
    rb_hdr(&r, 1, 0, 0);
    EXPECT_FAIL(&r, SL_EUNSUPPORTED, "version 1");
    EXPECT_CONTAINS(last_err, "offset 4:");
    rb_hdr(&r, 4, 0, 0);
    EXPECT_FAIL(&r, SL_EUNSUPPORTED, "unsupported GGUF version 4");
    rb_hdr(&r, 0x03000000u, 0, 0);
    EXPECT_FAIL(&r, SL_EUNSUPPORTED, "big-endian");
    rb_hdr(&r, 2, 0, 0);
    EXPECT_EQ_INT(try_open(&r), 0); /* v2 has the same layout as v3 */
    r.n = 0;
    EXPECT_FAIL(&r, SL_EPARSE, "truncated");
    rb_hdr(&r, 3, 0, 0);
    r.n = 20;
    EXPECT_FAIL(&r, SL_EPARSE, "metadata count");
}

static void test_huge_counts(void)
{
    rb r;
    rb_hdr(&r, 3, 0, 1ull << 60);
    EXPECT_FAIL(&r, SL_EPARSE, "metadata count 1152921504606846976 cannot fit");
    rb_hdr(&r, 3, UINT64_MAX, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "tensor count");
    /* a key length far past the end */
    rb_hdr(&r, 3, 0, 1);
    rb_u64(&r, 1ull << 40);
    rb_bytes(&r, "abcdefgh", 8);
    EXPECT_FAIL(&r, SL_EPARSE, "metadata key is 1099511627776 bytes, over the 65535-byte limit");
    /* a string value longer than the file */
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_STRING);
    rb_u64(&r, 1000);
    rb_bytes(&r, "abc", 3);
    EXPECT_FAIL(&r, SL_EPARSE, "string value is 1000 bytes");
    /* an array count that cannot fit */
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_ARRAY);
    rb_u32(&r, SL_GGUF_UINT64);
    rb_u64(&r, 1ull << 62);
    rb_u64(&r, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "array of 4611686018427387904 uint64 elements cannot fit");
    EXPECT_CONTAINS(last_err, "offset 41:");
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_ARRAY);
    rb_u32(&r, SL_GGUF_STRING);
    rb_u64(&r, 2);
    rb_str(&r, "a");
    rb_u64(&r, 50);
    EXPECT_FAIL(&r, SL_EPARSE, "array string is 50 bytes");
}

static void test_bad_values(void)
{
    rb r;
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, 13);
    rb_u32(&r, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "key 'k': unknown value type 13");
    EXPECT_CONTAINS(last_err, "offset 33:");
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_ARRAY);
    rb_u32(&r, 99);
    rb_u64(&r, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "unknown array element type 99");
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_BOOL);
    rb_u8(&r, 2);
    EXPECT_FAIL(&r, SL_EPARSE, "neither 0 nor 1");
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_ARRAY);
    rb_u32(&r, SL_GGUF_BOOL);
    rb_u64(&r, 3);
    rb_u8(&r, 0);
    rb_u8(&r, 1);
    rb_u8(&r, 7);
    EXPECT_FAIL(&r, SL_EPARSE, "bool value 7");
    EXPECT_CONTAINS(last_err, "offset 51:");
    rb_hdr(&r, 3, 0, 2);
    rb_kv_u32(&r, "dup", 1);
    rb_kv_u32(&r, "dup", 2);
    EXPECT_FAIL(&r, SL_ECORRUPT, "duplicate metadata key 'dup'");
    rb_hdr(&r, 3, 0, 1);
    rb_kv_u32(&r, "", 1);
    EXPECT_FAIL(&r, SL_EPARSE, "empty");
    rb_hdr(&r, 3, 0, 1);
    rb_u64(&r, 3);
    rb_bytes(&r, "a\0b", 3);
    rb_u32(&r, SL_GGUF_UINT8);
    rb_u8(&r, 1);
    EXPECT_FAIL(&r, SL_EPARSE, "NUL");
    /* a scalar cut short */
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "k");
    rb_u32(&r, SL_GGUF_UINT64);
    rb_u32(&r, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "truncated: metadata value needs 8 bytes");
}

/* An array nested depth levels deep under one key, innermost holding one uint8. */
static void rb_nested(rb *r, int depth)
{
    rb_hdr(r, 3, 0, 1);
    rb_str(r, "n");
    rb_u32(r, SL_GGUF_ARRAY);
    for (int d = 1; d < depth; d++) {
        rb_u32(r, SL_GGUF_ARRAY);
        rb_u64(r, 1);
    }
    rb_u32(r, SL_GGUF_UINT8);
    rb_u64(r, 1);
    rb_u8(r, 42);
}

static void test_nesting_depth(void)
{
    rb r;
    rb_nested(&r, SL_GGUF_MAX_ARRAY_DEPTH);
    EXPECT_EQ_INT(try_open(&r), 0);
    /* and it reads back all the way down */
    sl_gguf *g = NULL;
    EXPECT_EQ_INT(sl_gguf_open_memory(r.b, r.n, &g, NULL, 0), 0);
    if (g) {
        sl_gguf_arr a;
        EXPECT_EQ_INT(sl_gguf_get_arr(g, "n", &a), 0);
        for (int d = 1; d < SL_GGUF_MAX_ARRAY_DEPTH; d++)
            EXPECT_EQ_INT(sl_gguf_arr_get_arr(a, 0, &a), 0);
        uint64_t v = 0;
        EXPECT_EQ_INT(sl_gguf_arr_get_u64(a, 0, &v), 0);
        EXPECT_EQ_UINT(v, 42);
        sl_gguf_close(g);
    }
    rb_nested(&r, SL_GGUF_MAX_ARRAY_DEPTH + 1);
    EXPECT_FAIL(&r, SL_EPARSE, "nested deeper than 8");
}

static void test_bad_alignment(void)
{
    uint64_t d[1] = {8};
    uint32_t bad[] = {0, 3, 48};
    rb r;
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        rb_hdr(&r, 3, 0, 1);
        rb_kv_u32(&r, "general.alignment", bad[i]);
        EXPECT_FAIL(&r, SL_EPARSE, "general.alignment is");
        EXPECT_CONTAINS(last_err, "power of two");
    }
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "general.alignment");
    rb_u32(&r, SL_GGUF_FLOAT32);
    rb_u32(&r, 0x42000000u);
    EXPECT_FAIL(&r, SL_EPARSE, "general.alignment has type float32");
    rb_hdr(&r, 3, 0, 1);
    rb_str(&r, "general.alignment");
    rb_u32(&r, SL_GGUF_INT32);
    rb_u32(&r, (uint32_t)-16);
    EXPECT_FAIL(&r, SL_EPARSE, "general.alignment is -16");
    /* alignment 16 is honoured: offset 16 is fine, offset 8 is not */
    rb_hdr(&r, 3, 2, 1);
    rb_kv_u32(&r, "general.alignment", 16);
    rb_tensor(&r, "a", 1, d, SL_GGML_I8, 0);
    rb_tensor(&r, "b", 1, d, SL_GGML_I8, 16);
    rb_pad(&r, 16);
    rb_zeros(&r, 24);
    EXPECT_EQ_INT(try_open(&r), 0);
    rb_hdr(&r, 3, 1, 1);
    rb_kv_u32(&r, "general.alignment", 16);
    rb_tensor(&r, "a", 1, d, SL_GGML_I8, 8);
    rb_pad(&r, 16);
    rb_zeros(&r, 32);
    EXPECT_FAIL(&r, SL_ECORRUPT, "tensor 'a' offset 8 is not a multiple of the alignment 16");
}

static void test_bad_tensors(void)
{
    rb r;
    uint64_t d1[1] = {32}, d4[4] = {32, 1, 1, 1}, d5[5] = {1, 1, 1, 1, 1};
    /* a valid one first, so every failure below is the one change */
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, 0);
    rb_pad(&r, 32);
    rb_zeros(&r, 128);
    EXPECT_EQ_INT(try_open(&r), 0);
    r.n -= 1;
    EXPECT_FAIL(&r, SL_ECORRUPT, "tensor 'w' data [0, +128 bytes) lies outside the file");
    EXPECT_CONTAINS(last_err, "offset 24:");

    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 4, d4, SL_GGML_Q8_0, 0);
    rb_pad(&r, 32);
    rb_zeros(&r, 34);
    EXPECT_EQ_INT(try_open(&r), 0);

    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 0, d1, SL_GGML_F32, 0);
    rb_zeros(&r, 16);
    EXPECT_FAIL(&r, SL_EPARSE, "tensor 'w' has 0 dimensions");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 5, d5, SL_GGML_F32, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "has 5 dimensions");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 2, (uint64_t[]){4, 0}, SL_GGML_F32, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "tensor 'w' dimension 1 is zero");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 3, (uint64_t[]){1ull << 31, 1ull << 31, 2}, SL_GGML_I8, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "dimension 2 (2) overflows");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, (uint64_t[]){UINT64_MAX}, SL_GGML_I8, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "overflows");
    /* in range as elements, but the bytes overflow */
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, (uint64_t[]){1ull << 62}, SL_GGML_F64, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "byte size overflows");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, 4, 0);
    EXPECT_FAIL(&r, SL_EUNSUPPORTED, "tensor 'w' has unknown ggml type 4");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, 0xdeadbeefu, 0);
    EXPECT_FAIL(&r, SL_EUNSUPPORTED, "unknown ggml type 3735928559");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 2, (uint64_t[]){16, 2}, SL_GGML_Q4_0, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "row length 16 is not a multiple of the Q4_0 block size 32");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, 4);
    EXPECT_FAIL(&r, SL_ECORRUPT, "offset 4 is not a multiple of the alignment 32");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, 1ull << 63);
    rb_pad(&r, 32);
    EXPECT_FAIL(&r, SL_ECORRUPT, "lies outside the file");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, UINT64_MAX - 31);
    rb_pad(&r, 32);
    rb_zeros(&r, 128);
    EXPECT_FAIL(&r, SL_ECORRUPT, "lies outside the file");
    /* the infos end but the padded data section would start past the end */
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "w", 1, (uint64_t[]){1}, SL_GGML_I8, 0);
    EXPECT_FAIL(&r, SL_ECORRUPT, "data section would start at 64");
    rb_hdr(&r, 3, 2, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, 0);
    rb_tensor(&r, "w", 1, d1, SL_GGML_F32, 128);
    EXPECT_FAIL(&r, SL_ECORRUPT, "duplicate tensor name 'w'");
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, "", 1, d1, SL_GGML_F32, 0);
    rb_zeros(&r, 16);
    EXPECT_FAIL(&r, SL_EPARSE, "empty name");
    char longname[SL_GGUF_MAX_TENSOR_NAME + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    rb_hdr(&r, 3, 1, 0);
    rb_tensor(&r, longname, 1, d1, SL_GGML_F32, 0);
    EXPECT_FAIL(&r, SL_EPARSE, "tensor name is 65 bytes, over the 64-byte limit");
}

/* ---- whole-file robustness ---- */

/* A small valid file with metadata of several kinds and two tensors. */
static void *build_small(size_t *len)
{
    sl_gguf_writer *w;
    if (sl_gguf_writer_new(&w))
        return NULL;
    int rc = 0;
    rc |= sl_gguf_writer_add_str(w, "general.architecture", "llama");
    rc |= sl_gguf_writer_add_u32(w, "llama.block_count", 2);
    rc |= sl_gguf_writer_add_bool(w, "b", false);
    rc |= sl_gguf_writer_add_f64(w, "f", 2.5);
    const char *toks[] = {"a", "bc"};
    rc |= sl_gguf_writer_add_str_arr(w, "tokens", toks, 2);
    rc |= sl_gguf_writer_begin_arr(w, "nest", SL_GGUF_ARRAY);
    rc |= sl_gguf_writer_begin_sub_arr(w, SL_GGUF_BOOL);
    uint8_t one = 1;
    rc |= sl_gguf_writer_push_num(w, &one);
    rc |= sl_gguf_writer_end_arr(w);
    rc |= sl_gguf_writer_end_arr(w);
    static uint8_t d1[34], d2[8];
    memset(d1, 0x11, sizeof d1);
    memset(d2, 0x22, sizeof d2);
    rc |= sl_gguf_writer_add_tensor(w, "q", SL_GGML_Q8_0, 1, (uint64_t[]){32}, d1, sizeof d1);
    rc |= sl_gguf_writer_add_tensor(w, "f", SL_GGML_F16, 2, (uint64_t[]){2, 2}, d2, sizeof d2);
    void *buf = NULL;
    if (!rc)
        rc = sl_gguf_writer_write_mem(w, &buf, len);
    sl_gguf_writer_free(w);
    return rc ? NULL : buf;
}

static void test_truncation_every_offset(void)
{
    size_t len = 0;
    uint8_t *buf = build_small(&len);
    EXPECT(buf != NULL);
    if (!buf)
        return;
    sl_gguf *g = NULL;
    EXPECT_EQ_INT(sl_gguf_open_memory(buf, len, &g, NULL, 0), 0);
    /* the shortest valid prefix ends with the last tensor's bytes */
    size_t need_len = 0;
    if (g) {
        for (size_t i = 0; i < sl_gguf_n_tensors(g); i++) {
            const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
            size_t end = (size_t)(sl_gguf_data_offset(g) + t->offset + t->n_bytes);
            need_len = SL_MAX(need_len, end);
        }
        sl_gguf_close(g);
    }
    EXPECT(need_len > 0 && need_len <= len);
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        char err[256] = "";
        int rc = open_copy(buf, n, err, sizeof err, &g);
        if (n < need_len && (rc == 0 || err[0] == 0))
            bad++;
        if (n >= need_len && rc != 0)
            bad++;
    }
    EXPECT_EQ_INT(bad, 0);
    sl_free(buf);
}

static void test_bit_flips(void)
{
    size_t len = 0;
    uint8_t *buf = build_small(&len);
    EXPECT(buf != NULL);
    if (!buf)
        return;
    uint8_t *copy = malloc(len);
    int opened = 0, failed = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 10; bit++) {
            memcpy(copy, buf, len);
            if (bit < 8)
                copy[i] ^= (uint8_t)(1u << bit);
            else
                copy[i] = bit == 8 ? 0x00 : 0xff;
            sl_gguf *g = NULL;
            char err[256] = "";
            int rc = sl_gguf_open_memory(copy, len, &g, err, sizeof err);
            if (rc == 0) {
                opened++;
                (void)walk(g);
                sl_gguf_close(g);
            } else {
                failed++;
                if (!err[0])
                    T_FAIL_AT("error without a message at byte %zu", i);
            }
        }
    }
    /* both outcomes happen: flips in tensor data are harmless, in structure not */
    EXPECT(opened > 0);
    EXPECT(failed > 0);
    free(copy);
    sl_free(buf);
}

static void test_alloc_failures(void)
{
    size_t len = 0;
    uint8_t *buf = build_rich(&len);
    EXPECT(buf != NULL);
    if (!buf)
        return;
    size_t base = sl_alloc_live_bytes();
    int succeeded = 0;
    for (long n = 1; n < 200 && !succeeded; n++) {
        sl_gguf *g = NULL;
        char err[256] = "";
        sl_alloc_fail_after(n);
        int rc = sl_gguf_open_memory(buf, len, &g, err, sizeof err);
        sl_alloc_fail_after(0);
        if (rc == 0) {
            succeeded = 1;
            EXPECT(walk(g) > 0);
            sl_gguf_close(g);
        } else {
            EXPECT_EQ_INT(rc, SL_ENOMEM);
        }
        EXPECT_EQ_UINT(sl_alloc_live_bytes(), base);
    }
    EXPECT(succeeded);
    sl_free(buf);
}

/* ---- files on disk ---- */

static void test_open_file(void)
{
    char dir[] = "/tmp/sl_gguf_test_XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    sl_gguf_writer *w;
    EXPECT_EQ_INT(sl_gguf_writer_new(&w), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_str(w, "general.name", "tiny"), 0);
    float v[32] = {0};
    v[31] = 3.0f;
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "x", SL_GGML_F32, 1, (uint64_t[]){32}, v, sizeof v), 0);
    char err[256] = "";
    EXPECT_EQ_INT(sl_gguf_writer_write_file(w, path, err, sizeof err), 0);
    sl_gguf_writer_free(w);

    sl_gguf *g = NULL;
    EXPECT_EQ_INT(sl_gguf_open(path, &g, err, sizeof err), 0);
    if (g) {
        sl_str s;
        EXPECT_EQ_INT(sl_gguf_get_str(g, "general.name", &s), 0);
        EXPECT(sl_str_eq_c(s, "tiny"));
        const sl_gguf_tensor *t = sl_gguf_find_tensor(g, "x");
        EXPECT(t != NULL);
        if (t) {
            float last;
            memcpy(&last, (const uint8_t *)t->data + 124, 4);
            EXPECT_EQ_INT(last == 3.0f, 1);
            /* the mapping is page aligned, so file alignment is pointer alignment */
            EXPECT_EQ_UINT((uintptr_t)t->data % 32, 0);
        }
        sl_gguf_close(g);
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(access(tmp, F_OK) != 0);

    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.gguf", dir);
    EXPECT_EQ_INT(sl_gguf_open(missing, &g, err, sizeof err), SL_ENOTFOUND);
    EXPECT_CONTAINS(err, "cannot open");
    EXPECT(g == NULL);
    EXPECT_EQ_INT(sl_gguf_open(dir, &g, err, sizeof err), SL_EIO);
    EXPECT_CONTAINS(err, "not a regular file");
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty.gguf", dir);
    FILE *f = fopen(empty, "wb");
    if (f)
        fclose(f);
    EXPECT_EQ_INT(sl_gguf_open(empty, &g, err, sizeof err), SL_EPARSE);
    EXPECT_CONTAINS(err, "truncated");
    unlink(empty);
    unlink(path);
    rmdir(dir);
}

/* ---- writer misuse ---- */

static void test_writer_misuse(void)
{
    sl_gguf_writer *w;
    EXPECT_EQ_INT(sl_gguf_writer_new(&w), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_u32(w, "k", 1), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_u32(w, "k", 2), SL_EEXIST);
    EXPECT_EQ_INT(sl_gguf_writer_add_u32(w, "", 2), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_u32(w, "general.alignment", 64), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_set_alignment(w, 48), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_set_alignment(w, 0), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_push_num(w, &(int){1}), SL_ESTATE);
    EXPECT_EQ_INT(sl_gguf_writer_end_arr(w), SL_ESTATE);
    EXPECT_EQ_INT(sl_gguf_writer_begin_sub_arr(w, SL_GGUF_INT32), SL_ESTATE);
    uint8_t bad_bool = 2;
    EXPECT_EQ_INT(sl_gguf_writer_add_arr(w, "bb", SL_GGUF_BOOL, &bad_bool, 1), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_arr(w, "bb", SL_GGUF_STRING, "x", 1), SL_EINVAL);
    /* the failed arrays left no key behind */
    EXPECT_EQ_INT(sl_gguf_writer_add_u8(w, "bb", 1), 0);

    EXPECT_EQ_INT(sl_gguf_writer_begin_arr(w, "open", SL_GGUF_STRING), 0);
    EXPECT_EQ_INT(sl_gguf_writer_push_num(w, &(int){1}), SL_ESTATE);
    EXPECT_EQ_INT(sl_gguf_writer_add_u8(w, "other", 1), SL_ESTATE);
    void *buf = NULL;
    size_t len = 0;
    EXPECT_EQ_INT(sl_gguf_writer_write_mem(w, &buf, &len), SL_ESTATE);
    EXPECT_EQ_INT(sl_gguf_writer_push_str(w, "ok", 2), 0);
    EXPECT_EQ_INT(sl_gguf_writer_end_arr(w), 0);

    float f[32] = {0};
    uint64_t d[2] = {32, 1};
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 2, d, f, 64), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", (sl_ggml_type)5, 2, d, f, 128), SL_EUNSUPPORTED);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_Q4_0, 2, (uint64_t[]){16, 2}, f, 36), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 0, d, f, 128), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 2, (uint64_t[]){0, 1}, f, 0), SL_EINVAL);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 2, d, f, 128), 0);
    EXPECT_EQ_INT(sl_gguf_writer_add_tensor(w, "t", SL_GGML_F32, 2, d, f, 128), SL_EEXIST);
    EXPECT_EQ_INT(sl_gguf_writer_set_alignment(w, 64), SL_ESTATE);

    EXPECT_EQ_INT(sl_gguf_writer_write_mem(w, &buf, &len), 0);
    sl_gguf *g = NULL;
    EXPECT_EQ_INT(sl_gguf_open_memory(buf, len, &g, NULL, 0), 0);
    if (g) {
        EXPECT_EQ_UINT(sl_gguf_n_kv(g), 3);
        EXPECT_EQ_UINT(sl_gguf_n_tensors(g), 1);
        sl_gguf_arr a;
        sl_str s;
        EXPECT_EQ_INT(sl_gguf_get_arr(g, "open", &a), 0);
        EXPECT_EQ_UINT(a.count, 1);
        EXPECT_EQ_INT(sl_gguf_arr_get_str(a, 0, &s), 0);
        EXPECT(sl_str_eq_c(s, "ok"));
        sl_gguf_close(g);
    }
    sl_free(buf);
    sl_gguf_writer_free(w);

    /* an empty writer makes a valid empty file */
    EXPECT_EQ_INT(sl_gguf_writer_new(&w), 0);
    EXPECT_EQ_INT(sl_gguf_writer_write_mem(w, &buf, &len), 0);
    EXPECT_EQ_UINT(len, 24);
    EXPECT_EQ_INT(sl_gguf_open_memory(buf, len, &g, NULL, 0), 0);
    sl_gguf_close(g);
    sl_free(buf);
    sl_gguf_writer_free(w);
}

int main(void)
{
    RUN(test_type_table);
    RUN(test_writer_golden_bytes);
    RUN(test_roundtrip);
    RUN(test_bad_header);
    RUN(test_huge_counts);
    RUN(test_bad_values);
    RUN(test_nesting_depth);
    RUN(test_bad_alignment);
    RUN(test_bad_tensors);
    RUN(test_truncation_every_offset);
    RUN(test_bit_flips);
    RUN(test_alloc_failures);
    RUN(test_open_file);
    RUN(test_writer_misuse);
    return TEST_REPORT();
}
