/* OpenAI-shaped errors and the JSON string quoting every encoder here uses.
 * Error bodies are written by hand rather than through jansson so that the
 * bytes are exact and a truncated or non-UTF-8 message can never make the
 * encoder fail: bad bytes become U+FFFD. */
#include "api/api.h"

#include <stdio.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one.
 * Rejects overlongs, surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int sl_api_json_quote(sl_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    int rc = sl_buf_append_char(out, '"');
    size_t i = 0;
    while (!rc && i < n) {
        /* copy the longest run that needs no escaping in one append */
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            rc = sl_buf_append(out, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t l = utf8_seq_len(p + i, n - i);
            if (l) {
                rc = sl_buf_append(out, p + i, l);
                i += l;
            } else {
                rc = sl_buf_append(out, "\xEF\xBF\xBD", 3);
                i++;
            }
            continue;
        }
        char esc[7];
        size_t el = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
            break;
        }
        rc = sl_buf_append(out, esc, el);
        i++;
    }
    if (!rc)
        rc = sl_buf_append_char(out, '"');
    return rc;
}

static void error_vset(sl_api_error *e, int status, const char *type, const char *code, const char *param,
                       const char *fmt, va_list ap)
{
    e->status = status;
    e->type = type;
    e->code = code;
    if (param) {
        snprintf(e->param_buf, sizeof e->param_buf, "%s", param);
        e->param = e->param_buf;
    } else {
        e->param_buf[0] = 0;
        e->param = NULL;
    }
    if (fmt)
        vsnprintf(e->message, sizeof e->message, fmt, ap);
    else
        e->message[0] = 0;
}

int sl_api_error_set(sl_api_error *e, int status, const char *type, const char *code, const char *param,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(e, status, type, code, param, fmt, ap);
    va_end(ap);
    return SL_EINVAL;
}

void sl_api_error_copy(sl_api_error *dst, const sl_api_error *src)
{
    if (dst == src)
        return;
    memcpy(dst, src, sizeof *dst);
    dst->param = src->param ? dst->param_buf : NULL;
    if (src->param && src->param != src->param_buf)
        snprintf(dst->param_buf, sizeof dst->param_buf, "%s", src->param);
}

static int append_str_or_null(sl_buf *out, const char *s)
{
    if (!s)
        return sl_buf_append(out, "null", 4);
    return sl_api_json_quote(out, s, strlen(s));
}

int sl_api_error_body(const sl_api_error *e, sl_buf *out)
{
    size_t mark = out->len;
    int rc = sl_buf_append_str(out, "{\"error\":{\"message\":");
    if (!rc)
        rc = sl_api_json_quote(out, e->message, strnlen(e->message, sizeof e->message));
    if (!rc)
        rc = sl_buf_append_str(out, ",\"type\":");
    if (!rc)
        rc = append_str_or_null(out, e->type);
    if (!rc)
        rc = sl_buf_append_str(out, ",\"param\":");
    if (!rc)
        rc = append_str_or_null(out, e->param);
    if (!rc)
        rc = sl_buf_append_str(out, ",\"code\":");
    if (!rc)
        rc = append_str_or_null(out, e->code);
    if (!rc)
        rc = sl_buf_append_str(out, "}}");
    return sl_buf_rollback(out, mark, rc);
}

/* The constructors share one shape: fixed status/type/code, a printf message
 * or, when fmt is NULL, a standard one. */
#define ERROR_CTOR(fn, status, type, code, param, deflt)                                       \
    int fn(sl_api_error *e, const char *fmt, ...)                                              \
    {                                                                                          \
        if (!fmt)                                                                              \
            return sl_api_error_set(e, status, type, code, param, "%s", deflt);                \
        va_list ap;                                                                            \
        va_start(ap, fmt);                                                                     \
        error_vset(e, status, type, code, param, fmt, ap);                                     \
        va_end(ap);                                                                            \
        return SL_EINVAL;                                                                      \
    }

ERROR_CTOR(sl_api_error_unauthorized, 401, "invalid_request_error", "invalid_api_key", NULL,
           "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'.")
ERROR_CTOR(sl_api_error_forbidden, 403, "permission_error", "permission_denied", NULL,
           "This API key is not allowed to perform this request.")
ERROR_CTOR(sl_api_error_rate_limited, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
           "Rate limit reached for this API key. Retry after a short wait.")
ERROR_CTOR(sl_api_error_quota, 429, "insufficient_quota", "insufficient_quota", NULL,
           "The budget for this API key is spent. Ask an administrator to raise it.")
ERROR_CTOR(sl_api_error_internal, 500, "server_error", "internal_error", NULL,
           "The server had an internal error while processing the request. Retry the request.")
ERROR_CTOR(sl_api_error_upstream, 502, "server_error", "upstream_error", NULL,
           "The upstream model server returned an invalid response or failed. Retry the request.")
ERROR_CTOR(sl_api_error_overloaded, 503, "server_error", "overloaded", NULL,
           "The server is overloaded. Retry after the number of seconds in Retry-After.")
ERROR_CTOR(sl_api_error_timeout, 504, "server_error", "timeout",
           NULL, "The upstream model server did not answer in time. Retry the request.")

int sl_api_error_bad_request(sl_api_error *e, const char *code, const char *param, const char *fmt, ...)
{
    if (!fmt)
        return sl_api_error_set(e, 400, "invalid_request_error", code, param, "%s",
                                "The request is invalid.");
    va_list ap;
    va_start(ap, fmt);
    error_vset(e, 400, "invalid_request_error", code, param, fmt, ap);
    va_end(ap);
    return SL_EINVAL;
}

int sl_api_error_model_not_found(sl_api_error *e, const char *model)
{
    return sl_api_error_set(e, 404, "invalid_request_error", "model_not_found", "model",
                            "The model '%.200s' does not exist or you do not have access to it. "
                            "GET /v1/models lists the models available to you.",
                            model ? model : "");
}

int sl_api_error_not_found(sl_api_error *e, const char *method, const char *path)
{
    return sl_api_error_set(e, 404, "invalid_request_error", "not_found", NULL,
                            "Invalid URL (%.16s %.200s). The API serves /v1/chat/completions, "
                            "/v1/completions, /v1/embeddings and /v1/models.",
                            method ? method : "", path ? path : "");
}

int sl_api_error_method_not_allowed(sl_api_error *e, const char *method, const char *path)
{
    return sl_api_error_set(e, 405, "invalid_request_error", "method_not_allowed", NULL,
                            "Method %.16s is not allowed on %.200s.", method ? method : "",
                            path ? path : "");
}

int sl_api_error_too_large(sl_api_error *e, size_t limit_bytes)
{
    return sl_api_error_set(e, 413, "invalid_request_error", "request_too_large", NULL,
                            "The request body is larger than the limit of %zu bytes. Send a smaller request.",
                            limit_bytes);
}
