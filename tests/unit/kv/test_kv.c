/* The paged KV cache: block allocation, refcounts, the free list, the prefix
 * index and LRU eviction of cached blocks. */
#include "engine/kv/kv.h"
#include "test.h"

static void test_alloc_free_refcount(void)
{
    sl_kv *kv = NULL;
    /* 2 layers x 8 floats x 4 positions x K and V = 128 floats = 512 bytes per block */
    EXPECT_EQ_INT(sl_kv_create(2, 8, 4, 4, 3 * 512 + 100, &kv), 0);
    if (!kv)
        return;
    EXPECT_EQ_INT(sl_kv_n_blocks(kv), 3);
    EXPECT_EQ_UINT(sl_kv_block_bytes(kv), 512);
    int b[4];
    for (int i = 0; i < 3; i++)
        EXPECT_EQ_INT(sl_kv_alloc(kv, &b[i]), 0);
    EXPECT(b[0] != b[1] && b[1] != b[2] && b[0] != b[2]);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &b[3]), SL_EFULL);
    sl_kv_stats st;
    sl_kv_stats_get(kv, &st);
    EXPECT_EQ_INT(st.used, 3);
    EXPECT_EQ_INT(st.free, 0);
    sl_kv_ref(kv, b[1]);
    EXPECT_EQ_INT(sl_kv_refcount(kv, b[1]), 2);
    sl_kv_unref(kv, b[1]);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &b[3]), SL_EFULL); /* still referenced once */
    sl_kv_unref(kv, b[1]);
    EXPECT_EQ_INT(sl_kv_refcount(kv, b[1]), 0);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &b[3]), 0);
    EXPECT_EQ_INT(b[3], b[1]); /* the freed block comes back */
    for (int i = 0; i < 3; i++)
        sl_kv_unref(kv, b[i == 1 ? 3 : i]);
    sl_kv_stats_get(kv, &st);
    EXPECT_EQ_INT(st.used, 0);
    EXPECT_EQ_INT(st.free, 3);
    /* the layout: blocks are contiguous, V follows K within a layer */
    void *kb, *vb;
    size_t bs, ls;
    sl_kv_layout(kv, &kb, &vb, &bs, &ls);
    EXPECT_EQ_UINT(bs, 128);
    EXPECT_EQ_UINT(ls, 64);
    EXPECT_EQ_INT((int)((char *)vb - (char *)kb), 32 * 4);
    sl_kv_destroy(kv);

    /* f16 elements: the same layout in elements, half the bytes per block */
    EXPECT_EQ_INT(sl_kv_create(2, 8, 2, 4, 3 * 256 + 100, &kv), 0);
    if (kv) {
        EXPECT_EQ_INT(sl_kv_n_blocks(kv), 3);
        EXPECT_EQ_UINT(sl_kv_block_bytes(kv), 256);
        sl_kv_layout(kv, &kb, &vb, &bs, &ls);
        EXPECT_EQ_UINT(bs, 128);
        EXPECT_EQ_UINT(ls, 64);
        EXPECT_EQ_INT((int)((char *)vb - (char *)kb), 32 * 2);
        sl_kv_destroy(kv);
    }

    EXPECT_EQ_INT(sl_kv_create(2, 8, 4, 4, 500, &kv), SL_EINVAL); /* below one block */
    EXPECT_EQ_INT(sl_kv_create(0, 8, 4, 4, 1 << 20, &kv), SL_EINVAL);
    EXPECT_EQ_INT(sl_kv_create(2, 8, 3, 4, 1 << 20, &kv), SL_EINVAL); /* no 3-byte type */
}

static void test_prefix_index_and_lru(void)
{
    sl_kv *kv = NULL;
    EXPECT_EQ_INT(sl_kv_create(1, 4, 4, 2, 4 * 64, &kv), 0); /* 4 blocks of 64 bytes */
    if (!kv)
        return;
    EXPECT_EQ_INT(sl_kv_n_blocks(kv), 4);
    int32_t t1[2] = {5, 6}, t2[2] = {7, 8}, t3[2] = {9, 9};
    uint64_t h1 = sl_kv_chain_hash(0, t1, 2), h2 = sl_kv_chain_hash(h1, t2, 2);
    uint64_t h3 = sl_kv_chain_hash(0, t3, 2);
    /* the hash depends on the parent: the same tokens after another block differ */
    EXPECT(sl_kv_chain_hash(h3, t2, 2) != h2);
    int a, b, c;
    sl_kv_alloc(kv, &a);
    sl_kv_alloc(kv, &b);
    sl_kv_alloc(kv, &c);
    EXPECT(sl_kv_publish(kv, a, h1, 0, t1));
    EXPECT(sl_kv_publish(kv, b, h2, h1, t2));
    EXPECT(!sl_kv_publish(kv, c, h1, 0, t1)); /* an equal block is already indexed */
    EXPECT_EQ_INT(sl_kv_lookup(kv, h1, 0, t1), a);
    EXPECT_EQ_INT(sl_kv_refcount(kv, a), 2);
    EXPECT_EQ_INT(sl_kv_lookup(kv, h2, 0, t2), -1);   /* wrong parent */
    EXPECT_EQ_INT(sl_kv_lookup(kv, h1, 0, t2), -1);   /* wrong tokens */
    sl_kv_unref(kv, a);
    sl_kv_unref(kv, a); /* a: cached (released first) */
    sl_kv_unref(kv, b); /* b: cached (released second) */
    sl_kv_unref(kv, c); /* c: not indexed, free */
    sl_kv_stats st;
    sl_kv_stats_get(kv, &st);
    EXPECT_EQ_INT(st.used, 0);
    EXPECT_EQ_INT(st.cached, 2);
    EXPECT_EQ_INT(st.free, 2);
    /* a cached block is still found and leaves the LRU list while used */
    EXPECT_EQ_INT(sl_kv_lookup(kv, h1, 0, t1), a);
    sl_kv_stats_get(kv, &st);
    EXPECT_EQ_INT(st.cached, 1);
    sl_kv_unref(kv, a); /* now a is the most recently released: b is oldest */
    int x[4];
    EXPECT_EQ_INT(sl_kv_alloc(kv, &x[0]), 0);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &x[1]), 0);
    EXPECT(x[0] != a && x[0] != b && x[1] != a && x[1] != b); /* free blocks first */
    EXPECT_EQ_INT(sl_kv_alloc(kv, &x[2]), 0);
    EXPECT_EQ_INT(x[2], b); /* LRU: b goes before a */
    EXPECT_EQ_INT(sl_kv_lookup(kv, h2, h1, t2), -1); /* evicted from the index */
    EXPECT_EQ_INT(sl_kv_lookup(kv, h1, 0, t1), a);
    sl_kv_unref(kv, a);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &x[3]), 0);
    EXPECT_EQ_INT(x[3], a);
    EXPECT_EQ_INT(sl_kv_alloc(kv, &c), SL_EFULL);
    sl_kv_stats_get(kv, &st);
    EXPECT_EQ_INT(st.used, 4);
    EXPECT_EQ_INT(st.evictions, 2);
    sl_kv_destroy(kv);
}

int main(void)
{
    RUN(test_alloc_free_refcount);
    RUN(test_prefix_index_and_lru);
    return TEST_REPORT();
}
