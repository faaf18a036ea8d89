#include "core.h"

#include <string.h>
#include <strings.h>

sl_str sl_str_c(const char *s) { return (sl_str){s, s ? strlen(s) : 0}; }

bool sl_str_eq(sl_str a, sl_str b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

bool sl_str_case_eq_c(sl_str a, const char *s)
{
    size_t n = strlen(s);
    return a.n == n && (n == 0 || strncasecmp(a.p, s, n) == 0);
}

bool sl_str_starts_with(sl_str a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.n >= n && memcmp(a.p, prefix, n) == 0;
}

sl_str sl_str_trim(sl_str a)
{
    while (a.n && (a.p[0] == ' ' || a.p[0] == '\t' || a.p[0] == '\r' || a.p[0] == '\n')) {
        a.p++;
        a.n--;
    }
    while (a.n && (a.p[a.n - 1] == ' ' || a.p[a.n - 1] == '\t' || a.p[a.n - 1] == '\r' ||
                   a.p[a.n - 1] == '\n'))
        a.n--;
    return a;
}

size_t sl_u64_to_dec(uint64_t v, char out[20])
{
    /* two digits per division, written from the end (Content-Length goes
     * out on every upstream request) */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    size_t n = 1;
    for (uint64_t p = 10; n < 20 && v >= p; p *= 10) /* p wraps only as the loop ends */
        n++;
    char *q = out + n;
    while (v >= 100) {
        size_t d = (size_t)(v % 100) * 2;
        v /= 100;
        *--q = pairs[d + 1];
        *--q = pairs[d];
    }
    if (v >= 10) {
        *--q = pairs[v * 2 + 1];
        *--q = pairs[v * 2];
    } else {
        *--q = (char)('0' + v);
    }
    return n;
}

int sl_str_to_u64(sl_str a, uint64_t *out)
{
    if (a.n == 0)
        return SL_EPARSE;
    uint64_t v = 0;
    for (size_t i = 0; i < a.n; i++) {
        char c = a.p[i];
        if (c < '0' || c > '9')
            return SL_EPARSE;
        unsigned d = (unsigned)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return SL_ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

const bool sl_http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};
