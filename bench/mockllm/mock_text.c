/* mockllm pure helpers; see mock_text.h. */
#include "mock_text.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- per-request options ---- */

static int opt_int(const json_t *mock, const char *key, int lo, int hi, int *out, char *err,
                   size_t err_size)
{
    const json_t *v = json_object_get(mock, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, err_size, "mock.%s must be an integer in [%d, %d]", key, lo, hi);
        return SL_EINVAL;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

int sl_mock_opts_apply(sl_mock_opts *o, const json_t *mock, char *err, size_t err_size)
{
    if (!mock || !json_is_object(mock))
        return 0;
    int rc = 0;
    if ((rc = opt_int(mock, "ttft_ms", 0, 3600 * 1000, &o->ttft_ms, err, err_size)) < 0)
        return rc;
    if ((rc = opt_int(mock, "tokens", 0, 1000000, &o->tokens, err, err_size)) < 0)
        return rc;
    if ((rc = opt_int(mock, "status", 100, 599, &o->status, err, err_size)) < 0)
        return rc;
    if ((rc = opt_int(mock, "cut_after", 0, 1000000, &o->cut_after, err, err_size)) < 0)
        return rc;
    if ((rc = opt_int(mock, "retry_after", 0, 86400, &o->retry_after, err, err_size)) < 0)
        return rc;
    const json_t *tps = json_object_get(mock, "tps");
    if (tps) {
        if (!json_is_number(tps) || json_number_value(tps) < 0 || json_number_value(tps) > 1e9) {
            snprintf(err, err_size, "mock.tps must be a number in [0, 1e9]");
            return SL_EINVAL;
        }
        o->tps = json_number_value(tps);
    }
    const json_t *hang = json_object_get(mock, "hang");
    if (hang) {
        if (!json_is_boolean(hang)) {
            snprintf(err, err_size, "mock.hang must be a boolean");
            return SL_EINVAL;
        }
        o->hang = json_is_true(hang);
    }
    return 0;
}

/* ---- words and reply text ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

size_t sl_mock_count_words(const char *text, size_t len)
{
    size_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        bool sp = is_space(text[i]);
        if (!sp && !in_word)
            n++;
        in_word = !sp;
    }
    return n;
}

int sl_mock_words_split(const char *text, size_t len, size_t max_words, sl_mock_words *out)
{
    out->w = NULL;
    out->n = 0;
    size_t total = SL_MIN(sl_mock_count_words(text, len), max_words);
    if (total == 0)
        return 0;
    out->w = sl_calloc(total, sizeof(sl_str));
    if (!out->w)
        return SL_ENOMEM;
    size_t i = 0;
    while (i < len && out->n < total) {
        while (i < len && is_space(text[i]))
            i++;
        size_t start = i;
        while (i < len && !is_space(text[i]))
            i++;
        if (i > start)
            out->w[out->n++] = sl_str_make(text + start, i - start);
    }
    return 0;
}

void sl_mock_words_free(sl_mock_words *w)
{
    sl_free(w->w);
    w->w = NULL;
    w->n = 0;
}

sl_str sl_mock_token(const sl_mock_words *w, size_t i)
{
    if (!w || w->n == 0)
        return SL_STR_LIT("mock");
    return w->w[i % w->n];
}

int sl_mock_reply_text(const sl_mock_words *w, size_t ntokens, sl_buf *b)
{
    for (size_t i = 0; i < ntokens; i++) {
        int rc;
        if (i > 0 && (rc = sl_buf_append_char(b, ' ')) < 0)
            return rc;
        sl_str t = sl_mock_token(w, i);
        if ((rc = sl_buf_append(b, t.p, t.n)) < 0)
            return rc;
    }
    return 0;
}

int sl_mock_json_escape(sl_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        int rc = sl_buf_append(b, s + run, i - run);
        if (rc < 0)
            return rc;
        char esc[7] = {'\\', 0};
        size_t elen = 2;
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
            elen = 6;
        }
        if ((rc = sl_buf_append(b, esc, elen)) < 0)
            return rc;
        run = i + 1;
    }
    return sl_buf_append(b, s + run, n - run);
}

/* Appends the text of a message content (string, or array of parts whose
 * "text" members are strings) to b, parts separated by a space. */
static int content_text(const json_t *content, sl_buf *b)
{
    if (json_is_string(content))
        return sl_buf_append(b, json_string_value(content), json_string_length(content));
    if (!json_is_array(content))
        return 0;
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const json_t *t = json_object_get(part, "text");
        if (!json_is_string(t))
            continue;
        int rc;
        if (b->len > 0 && (rc = sl_buf_append_char(b, ' ')) < 0)
            return rc;
        if ((rc = sl_buf_append(b, json_string_value(t), json_string_length(t))) < 0)
            return rc;
    }
    return 0;
}

int sl_mock_extract_prompt(const json_t *messages, const json_t *prompt, sl_buf *last_user,
                           size_t *prompt_words, char *err, size_t err_size)
{
    *prompt_words = 0;
    sl_buf_reset(last_user);
    sl_buf tmp;
    sl_buf_init(&tmp, last_user->max);
    int rc = 0;
    if (messages) {
        if (!json_is_array(messages)) {
            snprintf(err, err_size, "'messages' must be an array");
            rc = SL_EINVAL;
            goto out;
        }
        size_t i;
        const json_t *m;
        json_array_foreach(messages, i, m) {
            if (!json_is_object(m)) {
                snprintf(err, err_size, "messages[%zu] must be an object", i);
                rc = SL_EINVAL;
                goto out;
            }
            sl_buf_reset(&tmp);
            if ((rc = content_text(json_object_get(m, "content"), &tmp)) < 0) {
                snprintf(err, err_size, "messages[%zu].content is too large", i);
                goto out;
            }
            *prompt_words += sl_mock_count_words(tmp.data ? tmp.data : "", tmp.len);
            const json_t *role = json_object_get(m, "role");
            if (json_is_string(role) && !strcmp(json_string_value(role), "user")) {
                sl_buf_reset(last_user);
                if ((rc = sl_buf_append(last_user, tmp.data ? tmp.data : "", tmp.len)) < 0)
                    goto out;
            }
        }
    } else if (json_is_string(prompt)) {
        rc = sl_buf_append(last_user, json_string_value(prompt), json_string_length(prompt));
        *prompt_words = sl_mock_count_words(json_string_value(prompt), json_string_length(prompt));
    } else if (json_is_array(prompt)) {
        size_t i;
        const json_t *p;
        json_array_foreach(prompt, i, p) {
            if (json_is_string(p)) {
                if (last_user->len > 0 && (rc = sl_buf_append_char(last_user, ' ')) < 0)
                    goto out;
                if ((rc = sl_buf_append(last_user, json_string_value(p), json_string_length(p))) < 0)
                    goto out;
                *prompt_words += sl_mock_count_words(json_string_value(p), json_string_length(p));
            } else if (json_is_integer(p)) {
                *prompt_words += 1; /* a token array: one word per token id */
            }
        }
    } else if (prompt) {
        snprintf(err, err_size, "'prompt' must be a string or an array");
        rc = SL_EINVAL;
    } else {
        snprintf(err, err_size, "missing required field '%s'", "prompt");
        rc = SL_EINVAL;
    }
    if (rc == SL_ETOOBIG || rc == SL_ENOMEM)
        snprintf(err, err_size, "prompt is too large");
out:
    sl_buf_free(&tmp);
    return rc;
}

/* ---- embeddings ---- */

void sl_mock_embedding(const void *p, size_t n, int dim, float *v)
{
    double norm = 0;
    for (int j = 0; j < dim; j++) {
        uint64_t h = sl_hash64(p, n, (uint64_t)j * 0x9e3779b97f4a7c15ull + 1);
        /* top 53 bits → [0, 1) → [-1, 1) */
        double x = (double)(h >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
        v[j] = (float)x;
        norm += x * x;
    }
    if (norm <= 0) {
        v[0] = 1.0f; /* astronomically unlikely, but keep the unit norm promise */
        for (int j = 1; j < dim; j++)
            v[j] = 0;
        return;
    }
    double inv = 1.0 / sqrt(norm);
    for (int j = 0; j < dim; j++)
        v[j] = (float)(v[j] * inv);
}

int sl_mock_base64(sl_buf *b, const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    int rc = sl_buf_reserve(b, (n + 2) / 3 * 4 + 1);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            x |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            x |= s[i + 2];
        char q[4] = {tab[(x >> 18) & 63], tab[(x >> 12) & 63], i + 1 < n ? tab[(x >> 6) & 63] : '=',
                     i + 2 < n ? tab[x & 63] : '='};
        if ((rc = sl_buf_append(b, q, 4)) < 0)
            return rc;
    }
    return 0;
}

/* ---- HTTP/1.1 request head ---- */

static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Does the comma-separated header value contain token tok (case-insensitive)? */
static bool value_has_token(sl_str v, const char *tok)
{
    size_t i = 0;
    while (i < v.n) {
        size_t start = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        if (sl_str_case_eq_c(sl_str_trim(sl_str_make(v.p + start, i - start)), tok))
            return true;
        i++;
    }
    return false;
}

int sl_mock_http_parse(const char *buf, size_t len, size_t max_head, sl_mock_http_req *out)
{
    memset(out, 0, sizeof *out);
    out->content_length = -1;
    /* find the end of the head: CRLFCRLF */
    const char *end = NULL;
    size_t scan = SL_MIN(len, max_head);
    for (size_t i = 3; i < scan; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    }
    if (!end)
        return len >= max_head ? SL_ETOOBIG : 0;

    /* request line: METHOD SP target SP HTTP/1.x CRLF */
    const char *p = buf;
    const char *q = p;
    while (q < end && is_tchar(*q))
        q++;
    if (q == p || *q != ' ')
        return SL_EPARSE;
    out->method = sl_str_make(p, (size_t)(q - p));
    p = ++q;
    while (q < end && *q != ' ' && *q != '\r' && (unsigned char)*q > 0x20)
        q++;
    if (q == p || *q != ' ')
        return SL_EPARSE;
    const char *qs = memchr(p, '?', (size_t)(q - p));
    out->path = sl_str_make(p, (size_t)((qs ? qs : q) - p));
    p = ++q;
    if (end - p < 10 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != '\r' || p[9] != '\n')
        return SL_EPARSE;
    out->minor_version = p[7] - '0';
    out->keep_alive = out->minor_version == 1;
    p += 10;

    bool saw_close = false, saw_keep = false;
    while (p < end - 2) {
        const char *name = p;
        while (p < end && is_tchar(*p))
            p++;
        if (p == name || *p != ':')
            return SL_EPARSE;
        sl_str hname = sl_str_make(name, (size_t)(p - name));
        p++;
        const char *val = p;
        while (p < end && *p != '\r') {
            if (*p == '\n' || *p == '\0')
                return SL_EPARSE;
            p++;
        }
        if (p + 1 >= end || p[1] != '\n')
            return SL_EPARSE;
        sl_str hval = sl_str_trim(sl_str_make(val, (size_t)(p - val)));
        p += 2;
        if (sl_str_case_eq_c(hname, "content-length")) {
            uint64_t cl;
            if (sl_str_to_u64(hval, &cl) < 0 || cl > INT64_MAX)
                return SL_EPARSE;
            if (out->content_length >= 0 && (uint64_t)out->content_length != cl)
                return SL_EPARSE; /* conflicting lengths: request smuggling guard */
            out->content_length = (int64_t)cl;
        } else if (sl_str_case_eq_c(hname, "transfer-encoding")) {
            if (value_has_token(hval, "chunked"))
                out->chunked = true;
            else
                return SL_EPARSE; /* we implement no other coding */
        } else if (sl_str_case_eq_c(hname, "connection")) {
            if (value_has_token(hval, "close"))
                saw_close = true;
            if (value_has_token(hval, "keep-alive"))
                saw_keep = true;
        } else if (sl_str_case_eq_c(hname, "expect")) {
            if (sl_str_case_eq_c(hval, "100-continue"))
                out->expect_continue = true;
        }
    }
    if (out->chunked && out->content_length >= 0)
        return SL_EPARSE;
    if (saw_close)
        out->keep_alive = false;
    else if (saw_keep)
        out->keep_alive = true;
    return (int)(end - buf);
}

int sl_mock_chunked_decode(const char *p, size_t n, sl_buf *out, size_t *consumed)
{
    sl_buf_reset(out);
    size_t i = 0;
    for (;;) {
        /* chunk-size [; ext] CRLF */
        uint64_t size = 0;
        size_t digits = 0;
        while (i < n && isxdigit((unsigned char)p[i])) {
            if (size > (UINT64_MAX >> 8))
                return SL_EPARSE;
            char c = p[i];
            size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            i++;
            digits++;
        }
        if (i == n)
            return 0;
        if (digits == 0)
            return SL_EPARSE;
        while (i < n && p[i] != '\r' && p[i] != '\n')
            i++; /* chunk extensions are ignored */
        if (i + 2 > n)
            return 0;
        if (p[i] != '\r' || p[i + 1] != '\n')
            return SL_EPARSE;
        i += 2;
        if (size == 0)
            break;
        if (size > out->max || out->len + size > out->max)
            return SL_ETOOBIG;
        if (n - i < size + 2)
            return 0;
        int rc = sl_buf_append(out, p + i, (size_t)size);
        if (rc < 0)
            return rc;
        i += (size_t)size;
        if (p[i] != '\r' || p[i + 1] != '\n')
            return SL_EPARSE;
        i += 2;
    }
    /* trailer fields, then an empty line */
    for (;;) {
        size_t start = i;
        while (i < n && p[i] != '\n')
            i++;
        if (i == n)
            return 0;
        if (i == start || p[i - 1] != '\r')
            return SL_EPARSE;
        i++;
        if (i - start == 2) {
            *consumed = i;
            return 1;
        }
        if (i - start > 8192)
            return SL_EPARSE;
    }
}
