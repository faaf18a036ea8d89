/* Counted allocator. Each block carries a 16-byte header holding its size so
 * that live bytes can be tracked exactly; 16 keeps malloc's alignment. */
#include "core.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static _Atomic size_t live_bytes;
static _Atomic long fail_countdown; /* 0 = off; N = the Nth next call fails */

static bool should_fail(void)
{
    long c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (SL_LIKELY(c == 0))
        return false;
    if (c == 1)
        return true; /* stays at 1: every later allocation fails too */
    atomic_fetch_sub(&fail_countdown, 1);
    return false;
}

void sl_alloc_fail_after(long n) { atomic_store(&fail_countdown, n < 0 ? 0 : n); }
size_t sl_alloc_live_bytes(void) { return atomic_load(&live_bytes); }

void *sl_malloc(size_t n)
{
    if (should_fail() || n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = malloc(n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    atomic_fetch_add_explicit(&live_bytes, n, memory_order_relaxed);
    return p + HDR;
}

void *sl_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = sl_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *sl_realloc(void *ptr, size_t n)
{
    if (!ptr)
        return sl_malloc(n);
    if (should_fail() || n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *base = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    unsigned char *p = realloc(base, n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    if (n >= old)
        atomic_fetch_add_explicit(&live_bytes, n - old, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&live_bytes, old - n, memory_order_relaxed);
    return p + HDR;
}

void sl_free(void *ptr)
{
    if (!ptr)
        return;
    unsigned char *base = (unsigned char *)ptr - HDR;
    size_t n;
    memcpy(&n, base, sizeof n);
    atomic_fetch_sub_explicit(&live_bytes, n, memory_order_relaxed);
    free(base);
}

char *sl_strdup(const char *s)
{
    return s ? sl_strndup(s, strlen(s)) : NULL;
}

char *sl_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = sl_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *sl_huge_alloc(size_t n)
{
    if (should_fail() || n == 0 || n > SIZE_MAX - 2 * HUGE_PAGE)
        return NULL;
    size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    /* map one huge page more and trim both ends to an aligned start */
    uint8_t *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    if (raw + HUGE_PAGE > p)
        munmap(p + len, (size_t)(raw + HUGE_PAGE - p));
    /* advice only: without transparent huge pages the memory still works */
    madvise(p, len, MADV_HUGEPAGE);
    atomic_fetch_add_explicit(&live_bytes, n, memory_order_relaxed);
    return p;
}

void sl_huge_free(void *p, size_t n)
{
    if (!p)
        return;
    size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    atomic_fetch_sub_explicit(&live_bytes, n, memory_order_relaxed);
    munmap(p, len);
}
