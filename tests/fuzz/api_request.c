/* Fuzzes request decoding. The first byte picks the kind (mod 3), the rest is
 * the body. A request that decodes must also build an upstream body that is
 * itself a JSON object carrying the replaced model, and its error body when it
 * does not decode must be valid JSON. */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    int rc = sl_api_decode_request(kind, body, len, arena, &r, &err);
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
