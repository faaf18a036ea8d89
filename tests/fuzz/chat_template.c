/* Fuzzes template detection and rendering. The input is first used whole as
 * Jinja source for detection; then it is split on 0x01 into messages whose
 * first byte picks the role, rendered in every family. Rendering must succeed
 * (or report the bounded buffer full) and contain every message's text
 * (llama3, llama2 and gemma trim it, so only the trimmed text is looked for). */
#include "engine/chat/chat.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *src = sl_strndup((const char *)data, size);
    sl_chat_template t;
    int rc = sl_chat_template_detect(src, &t);
    if (rc != 0 && rc != SL_ENOTFOUND)
        abort();
    sl_free(src);

    sl_chat_msg msgs[64];
    size_t n = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && n < SL_ARRAY_LEN(msgs)) {
        const char *sep = memchr(p, 1, (size_t)(end - p));
        size_t len = sep ? (size_t)(sep - p) : (size_t)(end - p);
        if (len > 0) {
            msgs[n].role = (sl_chat_role)((unsigned char)p[0] % 5);
            msgs[n].content = sl_str_make(p + 1, len - 1);
            n++;
        }
        p += len + (sep ? 1 : 0);
    }
    for (int f = 0; f < SL_CHAT_TEMPLATE_COUNT; f++) {
        sl_buf b;
        sl_buf_init(&b, 1 << 20);
        rc = sl_chat_render((sl_chat_template)f, msgs, n, true, NULL, NULL, &b);
        if (rc != 0)
            abort();
        for (size_t i = 0; i < n; i++) {
            sl_str c = sl_str_trim(msgs[i].content);
            if (c.n && !memmem(b.data, b.len, c.p, c.n))
                abort();
        }
        sl_buf_free(&b);
    }
    return 0;
}
