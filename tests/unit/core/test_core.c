#include "core/core.h"
#include "test.h"

#include <stdint.h>
#include <string.h>

static void test_buf_bounded(void)
{
    sl_buf b;
    sl_buf_init(&b, 8);
    EXPECT_EQ_INT(sl_buf_append_str(&b, "abcd"), 0);
    EXPECT_EQ_INT(sl_buf_append_str(&b, "efgh"), 0);
    EXPECT_EQ_INT(sl_buf_append_str(&b, "i"), SL_ETOOBIG);
    EXPECT_EQ_UINT(b.len, 8);
    EXPECT_EQ_STR(b.data, "abcdefgh");
    sl_buf_consume(&b, 3);
    EXPECT_EQ_STR(b.data, "defgh");
    EXPECT_EQ_INT(sl_buf_appendf(&b, "%d", 123), 0);
    EXPECT_EQ_STR(b.data, "defgh123");
    EXPECT_EQ_INT(sl_buf_appendf(&b, "%d", 4), SL_ETOOBIG);
    /* rollback: rc 0 keeps what was appended; an error cuts back to the mark */
    EXPECT_EQ_INT(sl_buf_rollback(&b, 5, 0), 0);
    EXPECT_EQ_STR(b.data, "defgh123");
    EXPECT_EQ_INT(sl_buf_rollback(&b, 5, SL_ETOOBIG), SL_ETOOBIG);
    EXPECT_EQ_UINT(b.len, 5);
    EXPECT_EQ_STR(b.data, "defgh");
    sl_buf_free(&b);
}

static void test_alloc_counting_and_injection(void)
{
    size_t before = sl_alloc_live_bytes();
    char *p = sl_malloc(100);
    EXPECT(p != NULL);
    EXPECT_EQ_UINT(sl_alloc_live_bytes() - before, 100);
    p = sl_realloc(p, 40);
    EXPECT_EQ_UINT(sl_alloc_live_bytes() - before, 40);
    sl_free(p);
    EXPECT_EQ_UINT(sl_alloc_live_bytes(), before);

    sl_alloc_fail_after(2);
    void *a = sl_malloc(1);
    void *b = sl_malloc(1);
    void *c = sl_malloc(1);
    sl_alloc_fail_after(0);
    EXPECT(a != NULL);
    EXPECT(b == NULL);
    EXPECT(c == NULL);
    sl_free(a);
    EXPECT(sl_calloc(SIZE_MAX / 2, 4) == NULL);
}

/* Huge-page buffers: 2 MiB-aligned, zeroed, writable end to end, counted,
 * subject to injected failures. */
static void test_huge_alloc(void)
{
    size_t before = sl_alloc_live_bytes();
    size_t n = (5u << 20) + 123;
    unsigned char *p = sl_huge_alloc(n);
    EXPECT(p != NULL);
    if (!p)
        return;
    EXPECT_EQ_INT((long long)((uintptr_t)p & ((2u << 20) - 1)), 0);
    EXPECT_EQ_INT(sl_alloc_live_bytes() - before, n);
    EXPECT_EQ_INT(p[0], 0);
    EXPECT_EQ_INT(p[n - 1], 0);
    memset(p, 0xA5, n);
    EXPECT_EQ_INT(p[n / 2], 0xA5);
    sl_huge_free(p, n);
    EXPECT_EQ_INT(sl_alloc_live_bytes(), before);
    EXPECT(sl_huge_alloc(0) == NULL);
    sl_alloc_fail_after(1);
    EXPECT(sl_huge_alloc(4096) == NULL);
    sl_alloc_fail_after(0);
    sl_huge_free(NULL, 10);
}

static void test_arena(void)
{
    sl_arena *a = sl_arena_create(256);
    char *s = sl_arena_strndup(a, "hello", 5);
    EXPECT_EQ_STR(s, "hello");
    void *big = sl_arena_alloc(a, 10000);
    EXPECT(big != NULL);
    EXPECT_EQ_INT((uintptr_t)big % 16, 0);
    char *t = sl_arena_sprintf(a, "%s-%d", "x", 7);
    EXPECT_EQ_STR(t, "x-7");
    EXPECT(sl_arena_used(a) >= 10005);
    /* reset keeps one normal block and hands its memory out again */
    sl_arena_reset(a);
    EXPECT_EQ_UINT(sl_arena_used(a), 0);
    char *u = sl_arena_alloc(a, 16);
    EXPECT(u != NULL);
    EXPECT(u == s); /* the kept block's start, where s came from */
    memset(u, 'x', 16);
    void *big2 = sl_arena_alloc(a, 10000);
    EXPECT(big2 != NULL);
    memset(big2, 0, 10000);
    EXPECT(sl_arena_used(a) >= 10016);
    sl_arena_destroy(a);
    sl_arena *e = sl_arena_create(256);
    sl_arena_reset(e); /* empty: a no-op */
    EXPECT(sl_arena_alloc(e, 300) != NULL);
    sl_arena_reset(e); /* only an oversized block: freed, none kept */
    EXPECT_EQ_UINT(sl_arena_used(e), 0);
    EXPECT(sl_arena_alloc(e, 8) != NULL);
    sl_arena_destroy(e);
}

/* sl_http_tchar against RFC 9110's wording: visible ASCII but the delimiters. */
static void test_http_tchar(void)
{
    int n = 0;
    for (int c = 0; c < 256; c++) {
        bool want = c > 32 && c < 127 && !strchr("\"(),/:;<=>?@[\\]{}", c);
        EXPECT_EQ_INT(sl_http_tchar[c], want);
        n += want;
    }
    EXPECT_EQ_INT(n, 77); /* 62 alphanumerics and 15 symbols */
}

static void test_str(void)
{
    uint64_t v;
    EXPECT_EQ_INT(sl_str_to_u64(SL_STR_LIT("12345"), &v), 0);
    EXPECT_EQ_UINT(v, 12345);
    EXPECT_EQ_INT(sl_str_to_u64(SL_STR_LIT("18446744073709551616"), &v), SL_ERANGE);
    EXPECT_EQ_INT(sl_str_to_u64(SL_STR_LIT("12a"), &v), SL_EPARSE);
    char dec[21];
    static const uint64_t vals[] = {0, 7, 10, 99, 1000, 4294967296ull, UINT64_MAX};
    static const char *const want[] = {"0", "7", "10", "99", "1000", "4294967296", "18446744073709551615"};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        size_t n = sl_u64_to_dec(vals[i], dec);
        dec[n] = 0;
        EXPECT_EQ_STR(dec, want[i]);
    }
    EXPECT_EQ_INT(sl_str_to_u64(SL_STR_LIT(""), &v), SL_EPARSE);
    sl_str t = sl_str_trim(SL_STR_LIT("  hi \r\n"));
    EXPECT(sl_str_eq_c(t, "hi"));
    EXPECT(sl_str_case_eq_c(SL_STR_LIT("Content-Type"), "content-type"));
}

static void test_rand_and_hash(void)
{
    char hex[33];
    sl_rand_hex(hex, 16);
    EXPECT_EQ_UINT(strlen(hex), 32);
    /* every position takes many values (each byte of a draw is used once) */
    {
        unsigned seen[32] = {0};
        char prev[33];
        memcpy(prev, hex, sizeof prev);
        int repeats = 0;
        for (int i = 0; i < 2000; i++) {
            sl_rand_hex(hex, 16);
            repeats += strcmp(hex, prev) == 0;
            memcpy(prev, hex, sizeof prev);
            for (int k = 0; k < 32; k++) {
                const char *d = strchr("0123456789abcdef", hex[k]);
                EXPECT(d && hex[k]);
                if (d && hex[k])
                    seen[k] |= 1u << (d - "0123456789abcdef");
            }
        }
        EXPECT(repeats == 0);
        for (int k = 0; k < 32; k++)
            EXPECT_EQ_UINT(__builtin_popcount(seen[k]), 16);
    }
    EXPECT(sl_hash64("abc", 3, 0) == sl_hash64("abc", 3, 0));
    EXPECT(sl_hash64("abc", 3, 0) != sl_hash64("abd", 3, 0));
    for (int i = 0; i < 1000; i++) {
        double u = sl_rand_unit();
        EXPECT(u >= 0.0 && u < 1.0);
    }
}

/* sl_buf_keep empties a buffer and keeps its memory only up to keep_max */
static void test_buf_keep(void)
{
    sl_buf b;
    sl_buf_init(&b, 1 << 20);
    EXPECT_EQ_INT(sl_buf_append(&b, "hello", 5), 0);
    char *mem = b.data;
    sl_buf_keep(&b, 4096);
    EXPECT_EQ_INT(b.len, 0);
    EXPECT(b.data == mem); /* small: kept */
    EXPECT_EQ_INT(sl_buf_reserve(&b, 100000), 0);
    EXPECT(b.cap > 4096);
    sl_buf_keep(&b, 4096);
    EXPECT_EQ_INT(b.len, 0);
    EXPECT(b.data == NULL && b.cap == 0); /* large: freed */
    EXPECT_EQ_INT(b.max, 1 << 20);        /* the bound stays */
    EXPECT_EQ_INT(sl_buf_append(&b, "x", 1), 0);
    sl_buf_free(&b);
}

/* The coarse clock is on sl_now_ms's time base, never ahead of it, and never
 * goes back. (Its lag is a tick; the bound here is loose so that a preemption
 * between the two reads cannot fail the test.) */
static void test_coarse_clock(void)
{
    uint64_t prev = sl_now_ms_coarse();
    for (int i = 0; i < 1000; i++) {
        uint64_t c = sl_now_ms_coarse(), f = sl_now_ms();
        EXPECT(c >= prev);
        EXPECT(c <= f && f - c < 1000);
        prev = c;
    }
}

int main(void)
{
    RUN(test_buf_bounded);
    RUN(test_alloc_counting_and_injection);
    RUN(test_huge_alloc);
    RUN(test_arena);
    RUN(test_http_tchar);
    RUN(test_str);
    RUN(test_rand_and_hash);
    RUN(test_coarse_clock);
    RUN(test_buf_keep);
    return TEST_REPORT();
}
