/* engine/kv: block allocator, refcounts, LRU of cached blocks and the prefix
 * index. See kv.h. */
#include "engine/kv/kv.h"

#include <assert.h>
#include <string.h>

/* Block states: a block is in exactly one of: the free list (ref 0, not
 * indexed), the LRU list (ref 0, indexed), or in use (ref > 0, indexed or
 * not). */
typedef struct kv_block {
    int ref;
    bool indexed;
    uint64_t hash, parent;
    int prev, next;   /* LRU links (cached blocks), -1 at the ends */
    int chain;        /* next block in the same index bucket, -1 at the end */
} kv_block;

struct sl_kv {
    int n_layer, kv_dim, bt, n_blocks;
    size_t elem_bytes;  /* 4 (f32) or 2 (f16) */
    size_t block_elems, layer_stride; /* in elements */
    unsigned char *data; /* (n_blocks, n_layer, 2, bt, kv_dim) elements */
    kv_block *blocks;   /* (n_blocks) */
    int32_t *tokens;    /* (n_blocks, bt) tokens of indexed blocks */
    int *free_stack;    /* (n_blocks) */
    int n_free;
    int lru_head, lru_tail; /* oldest first */
    int n_cached, n_used;
    int *buckets;       /* (n_buckets) first block of each chain, -1 empty */
    size_t n_buckets;   /* power of two */
    int64_t evictions;
};

int sl_kv_create(int n_layer, int kv_dim, int elem_bytes, int block_tokens, int64_t budget_bytes,
                 sl_kv **out)
{
    *out = NULL;
    if (n_layer < 1 || kv_dim < 1 || block_tokens < 1 || block_tokens > SL_KV_MAX_BLOCK_TOKENS ||
        budget_bytes < 1 || (elem_bytes != 2 && elem_bytes != 4))
        return SL_EINVAL;
    size_t layer_stride = (size_t)block_tokens * (size_t)kv_dim;
    size_t block_elems = layer_stride * 2 * (size_t)n_layer;
    size_t block_bytes = block_elems * (size_t)elem_bytes;
    int64_t nb = budget_bytes / (int64_t)block_bytes;
    if (nb < 1)
        return SL_EINVAL;
    if (nb > (1 << 24))
        nb = 1 << 24;
    sl_kv *kv = sl_calloc(1, sizeof *kv);
    if (!kv)
        return SL_ENOMEM;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->bt = block_tokens;
    kv->n_blocks = (int)nb;
    kv->layer_stride = layer_stride;
    kv->block_elems = block_elems;
    kv->elem_bytes = (size_t)elem_bytes;
    kv->n_buckets = 16;
    while (kv->n_buckets < (size_t)nb * 2)
        kv->n_buckets *= 2;
    kv->data = sl_calloc((size_t)nb, block_bytes);
    kv->blocks = sl_calloc((size_t)nb, sizeof *kv->blocks);
    kv->tokens = sl_calloc((size_t)nb * (size_t)block_tokens, sizeof(int32_t));
    kv->free_stack = sl_malloc((size_t)nb * sizeof(int));
    kv->buckets = sl_malloc(kv->n_buckets * sizeof(int));
    if (!kv->data || !kv->blocks || !kv->tokens || !kv->free_stack || !kv->buckets) {
        sl_kv_destroy(kv);
        return SL_ENOMEM;
    }
    /* the stack pops block 0 first */
    for (int i = 0; i < kv->n_blocks; i++)
        kv->free_stack[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    for (size_t i = 0; i < kv->n_buckets; i++)
        kv->buckets[i] = -1;
    kv->lru_head = kv->lru_tail = -1;
    *out = kv;
    return 0;
}

void sl_kv_destroy(sl_kv *kv)
{
    if (!kv)
        return;
    sl_free(kv->data);
    sl_free(kv->blocks);
    sl_free(kv->tokens);
    sl_free(kv->free_stack);
    sl_free(kv->buckets);
    sl_free(kv);
}

int sl_kv_block_tokens(const sl_kv *kv)
{
    return kv->bt;
}

int sl_kv_n_blocks(const sl_kv *kv)
{
    return kv->n_blocks;
}

size_t sl_kv_block_bytes(const sl_kv *kv)
{
    return kv->block_elems * kv->elem_bytes;
}

void sl_kv_layout(sl_kv *kv, void **kbase, void **vbase, size_t *block_stride,
                  size_t *layer_stride)
{
    /* within a block, layer l's keys start at 2 * l * layer_stride and its
     * values one layer_stride later: expressed as two bases and a stride of
     * 2 * layer_stride per layer */
    *kbase = kv->data;
    *vbase = kv->data + kv->layer_stride * kv->elem_bytes;
    *block_stride = kv->block_elems;
    *layer_stride = 2 * kv->layer_stride;
}

static void lru_remove(sl_kv *kv, int b)
{
    kv_block *k = &kv->blocks[b];
    if (k->prev >= 0)
        kv->blocks[k->prev].next = k->next;
    else
        kv->lru_head = k->next;
    if (k->next >= 0)
        kv->blocks[k->next].prev = k->prev;
    else
        kv->lru_tail = k->prev;
    k->prev = k->next = -1;
    kv->n_cached--;
}

static void lru_append(sl_kv *kv, int b)
{
    kv_block *k = &kv->blocks[b];
    k->prev = kv->lru_tail;
    k->next = -1;
    if (kv->lru_tail >= 0)
        kv->blocks[kv->lru_tail].next = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

static size_t bucket_of(const sl_kv *kv, uint64_t h)
{
    return (size_t)(h ^ (h >> 29)) & (kv->n_buckets - 1);
}

static void index_remove(sl_kv *kv, int b)
{
    kv_block *k = &kv->blocks[b];
    int *link = &kv->buckets[bucket_of(kv, k->hash)];
    while (*link >= 0 && *link != b)
        link = &kv->blocks[*link].chain;
    assert(*link == b);
    *link = k->chain;
    k->chain = -1;
    k->indexed = false;
}

int sl_kv_alloc(sl_kv *kv, int *block)
{
    int b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        lru_remove(kv, b);
        index_remove(kv, b);
        kv->evictions++;
    } else {
        return SL_EFULL;
    }
    kv_block *k = &kv->blocks[b];
    k->ref = 1;
    k->indexed = false;
    k->prev = k->next = k->chain = -1;
    kv->n_used++;
    *block = b;
    return 0;
}

void sl_kv_ref(sl_kv *kv, int block)
{
    kv_block *k = &kv->blocks[block];
    if (k->ref == 0) {
        assert(k->indexed);
        lru_remove(kv, block);
        kv->n_used++;
    }
    k->ref++;
}

void sl_kv_unref(sl_kv *kv, int block)
{
    kv_block *k = &kv->blocks[block];
    assert(k->ref > 0);
    if (--k->ref > 0)
        return;
    kv->n_used--;
    if (k->indexed)
        lru_append(kv, block);
    else
        kv->free_stack[kv->n_free++] = block;
}

int sl_kv_refcount(const sl_kv *kv, int block)
{
    return kv->blocks[block].ref;
}

uint64_t sl_kv_chain_hash(uint64_t parent, const int32_t *tokens, int n)
{
    /* the parent hash seeds the hash of the tokens: equal hashes mean (with
     * 64-bit confidence) equal prefixes up to and including this block */
    return sl_hash64(tokens, sizeof(int32_t) * (size_t)n, parent ^ 0x9E3779B97F4A7C15ull);
}

static int index_find(const sl_kv *kv, uint64_t h, uint64_t parent, const int32_t *tokens)
{
    for (int b = kv->buckets[bucket_of(kv, h)]; b >= 0; b = kv->blocks[b].chain) {
        const kv_block *k = &kv->blocks[b];
        if (k->hash == h && k->parent == parent &&
            !memcmp(kv->tokens + (size_t)b * kv->bt, tokens, sizeof(int32_t) * (size_t)kv->bt))
            return b;
    }
    return -1;
}

int sl_kv_lookup(sl_kv *kv, uint64_t h, uint64_t parent, const int32_t *tokens)
{
    int b = index_find(kv, h, parent, tokens);
    if (b >= 0)
        sl_kv_ref(kv, b);
    return b;
}

bool sl_kv_publish(sl_kv *kv, int block, uint64_t h, uint64_t parent, const int32_t *tokens)
{
    kv_block *k = &kv->blocks[block];
    assert(k->ref > 0);
    if (k->indexed || index_find(kv, h, parent, tokens) >= 0)
        return false;
    k->hash = h;
    k->parent = parent;
    k->indexed = true;
    memcpy(kv->tokens + (size_t)block * kv->bt, tokens, sizeof(int32_t) * (size_t)kv->bt);
    size_t bk = bucket_of(kv, h);
    k->chain = kv->buckets[bk];
    kv->buckets[bk] = block;
    return true;
}

void sl_kv_stats_get(const sl_kv *kv, sl_kv_stats *st)
{
    st->total = kv->n_blocks;
    st->used = kv->n_used;
    st->cached = kv->n_cached;
    st->free = kv->n_free;
    st->evictions = kv->evictions;
}
