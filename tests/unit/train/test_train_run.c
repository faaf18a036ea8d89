/* The training loop: the same seed and thread count give the same loss curve
 * and the same file; a run stopped after a checkpoint and resumed ends
 * bitwise where the uninterrupted run ends; the corpus is deterministic and
 * its held-out questions never appear in it. */
#include "engine/train/train.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

enum { STEPS = 12 };

static char dir[] = "/tmp/sl_train_run_XXXXXX";
static char corpus_path[256];

typedef struct curve {
    double loss[STEPS + 1];
    int n;
} curve;

static void on_step(void *user, const sl_train_progress *p)
{
    curve *c = user;
    if (!p->phase && p->step <= STEPS)
        c->loss[p->step] = p->loss, c->n++;
}

static void opts(sl_train_opts *o, const char *out, const char *ckpt)
{
    sl_train_opts_default(o);
    o->corpus_path = corpus_path;
    o->out_path = out;
    o->hp = (sl_train_hparams){.dim = 32, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 48,
                               .n_vocab = 300, .n_ctx = 24, .norm_eps = 1e-5f,
                               .rope_base = 10000.0f};
    o->batch = 4;
    o->steps = STEPS;
    o->threads = 2;
    o->seed = 5;
    o->eval_every = 4;
    o->ckpt_path = ckpt;
    o->ckpt_every = 3;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

static bool same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb && na > 0 && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void test_corpus(void)
{
    sl_train_corpus_opts co;
    sl_train_corpus_default(&co);
    co.size_bytes = 60000;
    co.n_products = 10;
    sl_buf a, b, e;
    sl_buf_init(&a, 1 << 20);
    sl_buf_init(&b, 1 << 20);
    sl_buf_init(&e, 1 << 20);
    EXPECT_EQ_INT(sl_train_make_corpus(&co, &a), 0);
    EXPECT_EQ_INT(sl_train_make_corpus(&co, &b), 0);
    EXPECT(a.len >= 60000 && a.len == b.len && !memcmp(a.data, b.data, a.len));
    EXPECT_CONTAINS(a.data, "<|im_start|>assistant\nThe ");
    EXPECT_EQ_INT(sl_train_make_eval(&co, &e), 0);
    /* 4 questions per product; each held-out question's wording is absent
     * from the corpus, and its expected fact is present */
    int lines = 0;
    for (char *l = e.data; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        lines++;
        char q[256], x[128];
        if (sscanf(l, "{\"question\": \"%255[^\"]\", \"expect\": \"%127[^\"]\"}", q, x) == 2) {
            EXPECT(strstr(a.data, q) == NULL);
            EXPECT(strstr(a.data, x) != NULL);
        } else {
            EXPECT(!"eval line does not parse");
        }
    }
    EXPECT_EQ_INT(lines, 40);
    co.seed = 2;
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_train_make_corpus(&co, &b), 0);
    EXPECT(a.len != b.len || memcmp(a.data, b.data, a.len) != 0);
    sl_buf_free(&a);
    sl_buf_free(&b);
    sl_buf_free(&e);
}

static void test_determinism_and_resume(void)
{
    char out1[300], out2[300], out3[300], ck2[300], ck3[300], err[512];
    snprintf(out1, sizeof out1, "%s/a.gguf", dir);
    snprintf(out2, sizeof out2, "%s/b.gguf", dir);
    snprintf(out3, sizeof out3, "%s/c.gguf", dir);
    snprintf(ck2, sizeof ck2, "%s/b.ckpt", dir);
    snprintf(ck3, sizeof ck3, "%s/c.ckpt", dir);
    sl_train_opts o;
    curve c1 = {0}, c2 = {0}, c3 = {0}, c3b = {0};
    double l1 = 0, l2 = 0, l3 = 0;

    opts(&o, out1, NULL);
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c1, &l1, err, sizeof err), 0);
    EXPECT_EQ_INT(c1.n, STEPS);
    EXPECT(c1.loss[STEPS] < c1.loss[1]); /* it learns */
    EXPECT(c1.loss[1] > 4.0 && c1.loss[1] < 7.0); /* ~ln(300) at the start */

    /* the same again, with checkpoints: identical curve and file */
    opts(&o, out2, ck2);
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c2, &l2, err, sizeof err), 0);
    EXPECT_EQ_INT(c2.n, STEPS);
    EXPECT(!memcmp(c1.loss, c2.loss, sizeof c1.loss));
    EXPECT(l1 == l2);
    EXPECT(same_file(out1, out2));

    /* stopped after step 7 (last checkpoint at 6 plus the stop's own), resumed */
    opts(&o, out3, ck3);
    o.stop_after = 7;
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c3, &l3, err, sizeof err), 0);
    EXPECT_EQ_INT(c3.n, 7);
    EXPECT(access(out3, F_OK) != 0); /* no model before the end */
    o.stop_after = 0;
    o.resume = true;
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c3b, &l3, err, sizeof err), 0);
    EXPECT_EQ_INT(c3b.n, STEPS - 7);
    for (int s = 8; s <= STEPS; s++)
        EXPECT(c3b.loss[s] == c1.loss[s]);
    EXPECT(l3 == l1);
    EXPECT(same_file(out1, out3));

    /* a checkpoint from other settings is refused with a message */
    opts(&o, out3, ck3);
    o.resume = true;
    o.seed = 6;
    EXPECT_EQ_INT(sl_train_run(&o, NULL, NULL, NULL, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "other settings");
    /* a damaged one too */
    FILE *f = fopen(ck3, "r+b");
    fseek(f, 200, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    o.seed = 5;
    EXPECT_EQ_INT(sl_train_run(&o, NULL, NULL, NULL, err, sizeof err), SL_ECORRUPT);
    unlink(out1), unlink(out2), unlink(out3), unlink(ck2), unlink(ck3);
}

/* Masked training at document starts: repeatable, it learns, its loss
 * differs from the unmasked run's, and a checkpoint of an unmasked run is
 * refused when resuming a masked one. */
static void test_masked_run(void)
{
    char out1[300], out2[300], ck[300], err[512];
    snprintf(out1, sizeof out1, "%s/m1.gguf", dir);
    snprintf(out2, sizeof out2, "%s/m2.gguf", dir);
    snprintf(ck, sizeof ck, "%s/m.ckpt", dir);
    sl_train_opts o;
    curve c1 = {0}, c2 = {0}, cu = {0};
    double l1 = 0, l2 = 0, lu = 0;
    opts(&o, out1, NULL);
    o.mask_assistant = o.doc_start = true;
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c1, &l1, err, sizeof err), 0);
    EXPECT_EQ_INT(c1.n, STEPS);
    EXPECT(c1.loss[STEPS] < c1.loss[1]);
    opts(&o, out2, NULL);
    o.mask_assistant = o.doc_start = true;
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &c2, &l2, err, sizeof err), 0);
    EXPECT(!memcmp(c1.loss, c2.loss, sizeof c1.loss));
    EXPECT(same_file(out1, out2));
    opts(&o, out2, ck);
    o.stop_after = 3;
    EXPECT_EQ_INT(sl_train_run(&o, on_step, &cu, &lu, err, sizeof err), 0);
    EXPECT(cu.loss[1] != c1.loss[1]);
    o.stop_after = 0;
    o.resume = true;
    o.mask_assistant = true;
    EXPECT_EQ_INT(sl_train_run(&o, NULL, NULL, NULL, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "other settings");
    unlink(out1), unlink(out2), unlink(ck);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    snprintf(corpus_path, sizeof corpus_path, "%s/corpus.txt", dir);
    sl_train_corpus_opts co;
    sl_train_corpus_default(&co);
    co.size_bytes = 40000;
    co.n_products = 8;
    sl_buf b;
    sl_buf_init(&b, 1 << 20);
    sl_train_make_corpus(&co, &b);
    FILE *f = fopen(corpus_path, "wb");
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    sl_buf_free(&b);
    RUN(test_corpus);
    RUN(test_determinism_and_resume);
    RUN(test_masked_run);
    unlink(corpus_path);
    rmdir(dir);
    return TEST_REPORT();
}
