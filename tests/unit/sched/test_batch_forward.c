/* sl_model_forward_batch: logits bitwise equal to the single-sequence
 * forward, whatever the other sequences of the batch, the prefill chunking,
 * the block size and placement, and the thread count. */
#include "engine/model/model.h"
#include "model/model_fixture.h"
#include "test.h"

#define NSEQ 3
#define LEN 21

typedef struct paged {
    int bt, n_blocks;
    void *k, *v;
    sl_model_kv_view view;
} paged;

/* A cache of n_blocks blocks of bt positions of kv_type elements in two
 * separate arrays. */
static void paged_init(paged *p, const sl_model_hparams *hp, int bt, int n_blocks, int kv_type)
{
    int kv_dim = hp->n_head_kv * hp->head_dim;
    size_t layer = (size_t)bt * kv_dim, block = layer * hp->n_layer;
    size_t el = kv_type == SL_KT_F16 ? 2 : 4;
    p->bt = bt;
    p->n_blocks = n_blocks;
    p->k = calloc(block * n_blocks, el);
    p->v = calloc(block * n_blocks, el);
    p->view = (sl_model_kv_view){p->k, p->v, block, layer, bt, kv_type};
}

static void paged_free(paged *p)
{
    free(p->k);
    free(p->v);
}

/* Reference: each sequence alone, one token at a time, logits of every
 * position. */
static void reference(const sl_model *m, int32_t toks[NSEQ][LEN], float *ref, int V, int kv_type)
{
    for (int s = 0; s < NSEQ; s++) {
        sl_model_ctx *c = NULL;
        sl_model_ctx_create(m, 64, 1, 1, kv_type, &c);
        for (int t = 0; t < LEN; t++)
            sl_model_forward(c, &toks[s][t], 1, t, ref + ((size_t)s * LEN + t) * V, false, NULL);
        sl_model_ctx_free(c);
    }
}

/* Runs the sequences through the batch path with the given chunk sizes
 * (cycled per sequence, each sequence starting at a different offset), block
 * size bt, scattered block ids, and compares every position's logits. */
static int run_batched(const sl_model *m, int32_t toks[NSEQ][LEN], const float *ref, int V,
                       int kv_type, int bt, const int *chunks, int n_chunks, sl_pool *pool)
{
    const sl_model_hparams *hp = sl_model_get_hparams(m);
    int per_seq = (LEN + bt - 1) / bt, total = per_seq * NSEQ;
    paged p;
    paged_init(&p, hp, bt, total, kv_type);
    int32_t table[NSEQ][LEN];
    /* interleave and reverse the block ids so no sequence is contiguous */
    for (int s = 0; s < NSEQ; s++)
        for (int b = 0; b < per_seq; b++)
            table[s][b] = total - 1 - (b * NSEQ + s);
    sl_model_ctx *c = NULL;
    EXPECT_EQ_INT(sl_model_batch_ctx_create(m, 64, 64, 4, &c), 0);
    int done[NSEQ] = {0}, k[NSEQ] = {0, 1, 2}, mismatches = 0;
    float *lg = calloc((size_t)NSEQ * LEN * V, sizeof(float));
    for (;;) {
        sl_model_seq seqs[NSEQ];
        int idx[NSEQ], n = 0;
        for (int s = 0; s < NSEQ; s++) {
            if (done[s] == LEN)
                continue;
            int take = SL_MIN(chunks[k[s]++ % n_chunks], LEN - done[s]);
            seqs[n] = (sl_model_seq){&toks[s][done[s]], take, done[s], table[s], take, NULL};
            idx[n++] = s;
        }
        if (!n)
            break;
        EXPECT_EQ_INT(sl_model_forward_batch(c, &p.view, seqs, n, lg, pool), 0);
        int row = 0;
        for (int i = 0; i < n; i++) {
            int s = idx[i];
            for (int t = 0; t < seqs[i].n; t++, row++)
                if (memcmp(lg + (size_t)row * V, ref + ((size_t)s * LEN + done[s] + t) * V,
                           sizeof(float) * V))
                    mismatches++;
            done[s] += seqs[i].n;
        }
    }
    free(lg);
    sl_model_ctx_free(c);
    paged_free(&p);
    return mismatches;
}

static void check_arch(const char *arch, int wtype, int kv_type)
{
    fx_config cfg = fx_default(arch, wtype);
    fx_model fx;
    if (fx_build(&fx, &cfg)) {
        T_FAIL_AT("fx_build");
        return;
    }
    sl_gguf *g = NULL;
    sl_model *m = NULL;
    char err[256];
    EXPECT_EQ_INT(sl_gguf_open_memory(fx.bytes, fx.len, &g, err, sizeof err), 0);
    EXPECT_EQ_INT(sl_model_load(g, &m, err, sizeof err), 0);
    if (!m) {
        sl_gguf_close(g);
        fx_free(&fx);
        return;
    }
    int V = sl_model_get_hparams(m)->n_vocab;
    int32_t toks[NSEQ][LEN];
    for (int s = 0; s < NSEQ; s++)
        for (int t = 0; t < LEN; t++)
            toks[s][t] = (int32_t)((s * 37 + t * 11 + (t * t) % 7) % V);
    toks[1][0] = toks[0][0]; /* a shared first token */
    float *ref = calloc((size_t)NSEQ * LEN * V, sizeof(float));
    reference(m, toks, ref, V, kv_type);
    sl_pool *pool = NULL;
    sl_pool_create(3, &pool);
    static const int one[] = {1}, mixed[] = {5, 1, 3, 8}, big[] = {LEN};
    EXPECT_EQ_INT(run_batched(m, toks, ref, V, kv_type, 16, one, 1, NULL), 0);
    EXPECT_EQ_INT(run_batched(m, toks, ref, V, kv_type, 4, mixed, 4, pool), 0);
    EXPECT_EQ_INT(run_batched(m, toks, ref, V, kv_type, 3, big, 1, pool), 0);
    EXPECT_EQ_INT(run_batched(m, toks, ref, V, kv_type, 1, mixed, 4, NULL), 0);
    /* the single-sequence path with a whole prompt at once agrees too */
    sl_model_ctx *c = NULL;
    sl_model_ctx_create(m, 64, LEN, 3, kv_type, &c);
    float *all = calloc((size_t)LEN * V, sizeof(float));
    EXPECT_EQ_INT(sl_model_forward(c, toks[2], LEN, 0, all, true, pool), 0);
    EXPECT(memcmp(all, ref + (size_t)2 * LEN * V, sizeof(float) * LEN * V) == 0);
    /* a sanity check that the comparison can fail: another sequence differs */
    EXPECT(memcmp(all, ref, sizeof(float) * V * LEN) != 0);
    free(all);
    sl_model_ctx_free(c);
    sl_pool_destroy(pool);
    free(ref);
    sl_model_free(m);
    sl_gguf_close(g);
    fx_free(&fx);
}

static void test_llama_q8(void)
{
    check_arch("llama", SL_KT_Q8_0, SL_KT_F16);
    check_arch("llama", SL_KT_Q8_0, SL_KT_F32);
}

static void test_qwen2_f32(void)
{
    check_arch("qwen2", SL_KT_F32, SL_KT_F32);
    check_arch("qwen2", SL_KT_F32, SL_KT_F16);
}

static void test_bad_input(void)
{
    fx_config cfg = fx_default("llama", SL_KT_F32);
    fx_model fx;
    fx_build(&fx, &cfg);
    sl_gguf *g = NULL;
    sl_model *m = NULL;
    char err[256];
    sl_gguf_open_memory(fx.bytes, fx.len, &g, err, sizeof err);
    sl_model_load(g, &m, err, sizeof err);
    paged p;
    paged_init(&p, sl_model_get_hparams(m), 4, 4, SL_KT_F32);
    sl_model_ctx *c = NULL;
    sl_model_batch_ctx_create(m, 16, 8, 1, &c);
    int32_t table[4] = {0, 1, 2, 3}, toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float lg[300 * 2];
    sl_model_seq s = {toks, 9, 0, table, 1, NULL}; /* over max_batch */
    EXPECT_EQ_INT(sl_model_forward_batch(c, &p.view, &s, 1, lg, NULL), SL_EINVAL);
    s = (sl_model_seq){toks, 2, 15, table, 1, NULL}; /* past n_ctx */
    EXPECT_EQ_INT(sl_model_forward_batch(c, &p.view, &s, 1, lg, NULL), SL_EINVAL);
    int32_t bad = 300;
    s = (sl_model_seq){&bad, 1, 0, table, 1, NULL};
    EXPECT_EQ_INT(sl_model_forward_batch(c, &p.view, &s, 1, lg, NULL), SL_ERANGE);
    /* a view of an element type the engine does not store */
    s = (sl_model_seq){toks, 1, 0, table, 1, NULL};
    p.view.type = SL_KT_Q8_0;
    EXPECT_EQ_INT(sl_model_forward_batch(c, &p.view, &s, 1, lg, NULL), SL_EINVAL);
    p.view.type = SL_KT_F32;
    /* a batch context has no cache of its own */
    EXPECT_EQ_INT(sl_model_forward(c, toks, 1, 0, lg, false, NULL), SL_EINVAL);
    sl_model_ctx_free(c);
    paged_free(&p);
    sl_model_free(m);
    sl_gguf_close(g);
    fx_free(&fx);
}

int main(void)
{
    RUN(test_llama_q8);
    RUN(test_qwen2_f32);
    RUN(test_bad_input);
    return TEST_REPORT();
}
