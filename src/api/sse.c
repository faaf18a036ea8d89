/* Server-Sent Events framing for the client side. A payload is split at every
 * line break the SSE grammar knows (\r\n, \n, \r) into one "data:" field per
 * line, so that a client's parser, which joins data fields with "\n",
 * reconstructs it; the event ends with a blank line. */
#include "api/api.h"

#include <string.h>


int sl_sse_data(sl_buf *out, const char *data, size_t len)
{
    size_t mark = out->len;
    size_t start = 0;
    int rc = 0;
    for (;;) {
        const char *lf = memchr(data + start, '\n', len - start);
        size_t end = lf ? (size_t)(lf - data) : len;
        const char *cr = memchr(data + start, '\r', end - start);
        if (cr)
            end = (size_t)(cr - data);
        rc = sl_buf_append(out, "data: ", 6);
        if (!rc)
            rc = sl_buf_append(out, data + start, end - start);
        if (!rc)
            rc = sl_buf_append_char(out, '\n');
        if (rc || end == len)
            break;
        start = end + (data[end] == '\r' && end + 1 < len && data[end + 1] == '\n' ? 2 : 1);
    }
    if (!rc)
        rc = sl_buf_append_char(out, '\n');
    return sl_buf_rollback(out, mark, rc);
}

int sl_sse_done(sl_buf *out) { return sl_buf_append_str(out, "data: [DONE]\n\n"); }

int sl_sse_error(sl_buf *out, const sl_api_error *e)
{
    size_t mark = out->len;
    int rc = sl_buf_append(out, "data: ", 6);
    if (!rc)
        rc = sl_api_error_body(e, out);
    if (!rc)
        rc = sl_buf_append(out, "\n\n", 2);
    return sl_buf_rollback(out, mark, rc);
}
