/* Fuzz driver for the GGUF reader: any bytes must open cleanly or fail with a
 * message, and everything a successful open offers must be readable. */
#include "engine/gguf/gguf.h"

#include <stdint.h>
#include <string.h>

static uint64_t sink;

static void walk_arr(sl_gguf_arr a)
{
    for (uint64_t i = 0; i < a.count; i++) {
        sl_str s;
        uint64_t u;
        int64_t v;
        double f;
        bool b;
        sl_gguf_arr sub;
        if (!sl_gguf_arr_get_str(a, i, &s) && s.n)
            sink += (uint8_t)s.p[s.n - 1];
        if (!sl_gguf_arr_get_u64(a, i, &u))
            sink += u;
        if (!sl_gguf_arr_get_i64(a, i, &v))
            sink += (uint64_t)v;
        if (!sl_gguf_arr_get_f64(a, i, &f))
            sink += f > 0;
        if (!sl_gguf_arr_get_bool(a, i, &b))
            sink += b;
        if (!sl_gguf_arr_get_arr(a, i, &sub))
            walk_arr(sub);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_gguf *g = NULL;
    char err[256];
    if (sl_gguf_open_memory(data, size, &g, err, sizeof err) != 0) {
        if (!err[0])
            __builtin_trap(); /* every failure must explain itself */
        return 0;
    }
    for (size_t i = 0; i < sl_gguf_n_kv(g); i++) {
        sl_str k = sl_gguf_kv_key(g, i);
        char key[SL_GGUF_MAX_KEY_LEN + 1];
        memcpy(key, k.p, k.n);
        key[k.n] = 0;
        if (sl_gguf_find_key(g, key) != (long)i)
            __builtin_trap(); /* keys are unique, so lookup finds this one */
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f;
        bool b;
        sl_str s;
        sl_gguf_arr a;
        if (!sl_gguf_get_u32(g, key, &u32))
            sink += u32;
        if (!sl_gguf_get_i32(g, key, &i32))
            sink += (uint64_t)i32;
        if (!sl_gguf_get_u64(g, key, &u64))
            sink += u64;
        if (!sl_gguf_get_f32(g, key, &f))
            sink += f > 0;
        if (!sl_gguf_get_bool(g, key, &b))
            sink += b;
        if (!sl_gguf_get_str(g, key, &s) && s.n)
            sink += (uint8_t)s.p[0];
        if (!sl_gguf_get_arr(g, key, &a)) {
            const uint8_t *d = sl_gguf_arr_data(a);
            if (d && a.count)
                sink += d[0];
            walk_arr(a);
        }
    }
    for (size_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        char name[SL_GGUF_MAX_TENSOR_NAME + 1];
        memcpy(name, t->name.p, t->name.n);
        name[t->name.n] = 0;
        if (sl_gguf_find_tensor(g, name) != t)
            __builtin_trap();
        const uint8_t *d = t->data;
        sink += d[0] + d[t->n_bytes - 1]; /* n_bytes >= 1: dims are nonzero */
    }
    sl_gguf_close(g);
    return 0;
}
