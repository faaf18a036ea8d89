/* Fuzzes request decoding through jansson's tree (sl_api_decode_full: the
 * fast decoder is held to it by api_request_fast.c). The first byte picks the
 * kind (mod 3), the rest is the body. A request that decodes must also build an upstream body that is
 * itself a JSON object carrying the replaced model, byte for byte what
 * jansson's own serialiser writes for the same change (the reference below),
 * and its error body when it does not decode must be valid JSON. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int to_buf(const char *p, size_t n, void *ud) { return sl_buf_append(ud, p, n) ? -1 : 0; }

/* The upstream body as a shallow copy with model and stream_options replaced,
 * dumped by jansson. */
static void reference_body(const sl_request *r, const char *model, sl_buf *out)
{
    json_t *copy = json_copy(r->body);
    json_object_set_new(copy, "model", json_string(model));
    if (r->stream && r->kind != SL_API_EMBEDDINGS) {
        json_t *so = json_object_get(r->body, "stream_options");
        json_t *nso = json_is_object(so) ? json_copy(so) : json_object();
        json_object_set_new(nso, "include_usage", json_true());
        json_object_set_new(copy, "stream_options", nso);
    }
    if (json_dump_callback(copy, to_buf, out, SL_API_JSON_DUMP_FLAGS))
        abort();
    json_decref(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    sl_api_kind kind = (sl_api_kind)(data[0] % 3);
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    sl_arena *arena = sl_arena_create(4096);
    if (!arena)
        return 0;
    sl_request *r = NULL;
    sl_api_error err;
    sl_buf out;
    sl_buf_init(&out, 1 << 22);
    int rc = sl_api_decode_full(kind, body, len, arena, &r, &err);
    if (rc == 0) {
        if (!r || !r->model || !json_is_object(r->body))
            abort();
        if (kind == SL_API_CHAT && r->n_messages == 0)
            abort();
        if (sl_api_upstream_body(r, "upstream-model", &out) == 0) {
            json_t *j = json_loadb(out.data, out.len, 0, NULL);
            if (!json_is_object(j) || strcmp(json_string_value(json_object_get(j, "model")), "upstream-model") != 0)
                abort();
            if (r->stream && kind != SL_API_EMBEDDINGS &&
                !json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")))
                abort();
            json_decref(j);
            sl_buf ref;
            sl_buf_init(&ref, 1 << 23);
            reference_body(r, "upstream-model", &ref);
            if (ref.len != out.len || memcmp(ref.data, out.data, out.len) != 0)
                abort();
            sl_buf_free(&ref);
        }
        sl_request_release(r);
    } else {
        if (r != NULL || err.status < 400)
            abort();
        if (sl_api_error_body(&err, &out) == 0) {
            json_t *j = json_loadb(out.data, out.len, 0, NULL);
            if (!json_is_object(json_object_get(j, "error")))
                abort();
            json_decref(j);
        }
    }
    sl_buf_free(&out);
    sl_arena_destroy(arena);
    return 0;
}
