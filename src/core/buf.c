#include "core.h"

#include <stdio.h>
#include <string.h>

void sl_buf_init(sl_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sl_buf_free(sl_buf *b)
{
    sl_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void sl_buf_reset(sl_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void sl_buf_keep(sl_buf *b, size_t keep_max)
{
    if (b->cap > keep_max)
        sl_buf_free(b);
    sl_buf_reset(b);
}

int sl_buf_rollback(sl_buf *b, size_t mark, int rc)
{
    if (rc && mark <= b->len) {
        b->len = mark;
        if (b->data)
            b->data[mark] = 0;
    }
    return rc;
}

int sl_buf_reserve(sl_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return SL_ETOOBIG;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *d = sl_realloc(b->data, cap);
    if (!d)
        return SL_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int sl_buf_append(sl_buf *b, const void *p, size_t n)
{
    int rc = sl_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int sl_buf_append_str(sl_buf *b, const char *s) { return sl_buf_append(b, s, strlen(s)); }
int sl_buf_append_char(sl_buf *b, char c) { return sl_buf_append(b, &c, 1); }

int sl_buf_vappendf(sl_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return SL_EINVAL;
    int rc = sl_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sl_buf_appendf(sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sl_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void sl_buf_consume(sl_buf *b, size_t n)
{
    if (n >= b->len) {
        sl_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

char *sl_buf_take(sl_buf *b, size_t *len_out)
{
    char *d = b->data;
    if (len_out)
        *len_out = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
