/* Bump allocator in a chain of blocks. Oversized requests get a block of their
 * own so that one big allocation does not waste the rest of a normal block. */
#include "core.h"

#include <stdio.h>
#include <string.h>

typedef struct block {
    struct block *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
} block;

struct sl_arena {
    block *head;
    size_t block_size;
    size_t total;
};

sl_arena *sl_arena_create(size_t block_size)
{
    sl_arena *a = sl_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->block_size = block_size < 256 ? 256 : block_size;
    return a;
}

void sl_arena_destroy(sl_arena *a)
{
    if (!a)
        return;
    block *b = a->head;
    while (b) {
        block *n = b->next;
        sl_free(b);
        b = n;
    }
    sl_free(a);
}

void sl_arena_reset(sl_arena *a)
{
    block *keep = NULL, *b = a->head;
    while (b) {
        block *n = b->next;
        if (!keep && b->cap == a->block_size)
            keep = b;
        else
            sl_free(b);
        b = n;
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->total = 0;
}

void *sl_arena_alloc(sl_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    block *b = a->head;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > a->block_size ? need : a->block_size;
        if (cap > SIZE_MAX - sizeof(block))
            return NULL;
        block *nb = sl_malloc(sizeof(block) + cap);
        if (!nb)
            return NULL;
        nb->cap = cap;
        nb->used = 0;
        if (b && need > a->block_size) {
            /* keep the partly used head block current: link the big one behind it */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total += n;
    return p;
}

void *sl_arena_calloc(sl_arena *a, size_t n)
{
    void *p = sl_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *sl_arena_strndup(sl_arena *a, const char *s, size_t n)
{
    char *d = sl_arena_alloc(a, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *sl_arena_sprintf(sl_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *d = NULL;
    if (n >= 0) {
        d = sl_arena_alloc(a, (size_t)n + 1);
        if (d)
            vsnprintf(d, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return d;
}

size_t sl_arena_used(const sl_arena *a) { return a->total; }
