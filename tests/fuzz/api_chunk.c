/* Fuzzes the readers of upstream bytes: the first byte picks one of streamed
 * chunk inspection, response usage parsing, model rewriting or SSE framing;
 * the rest is the upstream payload. */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    sl_usage u = {0};
    bool content, finish, usage_only;
    sl_buf out;
    sl_buf_init(&out, 1 << 22);
    switch (data[0] % 4) {
    case 0:
        if (sl_api_inspect_chunk(p, len, &u, &content, &finish, &usage_only) == 0 && usage_only &&
            memmem(p, len, "usage", 5) == NULL)
            abort(); /* a usage-only chunk needs a usage key */
        break;
    case 1:
        if (sl_api_parse_response(p, len, &u) == 0 && u.known &&
            (u.prompt_tokens < 0 || u.completion_tokens < 0 || u.total_tokens < 0))
            abort();
        break;
    case 2:
        if (sl_api_rewrite_model(p, len, "client-model", &out) == 0) {
            json_t *j = json_loadb(out.data, out.len, 0, NULL);
            if (!json_is_object(j))
                abort();
            json_decref(j);
        }
        break;
    default:
        if (sl_sse_data(&out, p, len) == 0) {
            /* every line of the frame is a data: field, and it ends with a blank line */
            if (out.len < 8 || memcmp(out.data, "data: ", 6) != 0 || out.data[out.len - 1] != '\n' ||
                out.data[out.len - 2] != '\n')
                abort();
            for (size_t i = 0; i + 1 < out.len - 1; i++) {
                if (out.data[i] == '\r')
                    abort();
                if (out.data[i] == '\n' && memcmp(out.data + i + 1, "data: ", 6) != 0)
                    abort();
            }
        }
        break;
    }
    sl_buf_free(&out);
    return 0;
}
