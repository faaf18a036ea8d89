/* Loss masking: the assistant mask marks exactly the answers' tokens and
 * their closing im_end in a hand-built token stream, and a masked run's loss
 * is the mean cross-entropy of the counted targets only (computed here from
 * the model's logits), blind to the targets that do not count. */
#include "engine/train/train.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

/* ids of the hand-built vocabulary */
enum { USER = 6, ASSIST = 7, NL = 8, IM_START = 10, IM_END = 11, EOT = 12 };

static void test_assistant_mask(void)
{
    const int32_t hdr[2] = {ASSIST, NL};
    /* user turn, assistant turn, newline, end-of-text, an assistant turn with
     * no im_end cut by a user turn, then an unclosed assistant turn */
    const int32_t ids[] = {IM_START, USER, NL, 1, 2, IM_END, NL,               /* 0..6 */
                           IM_START, ASSIST, NL, 3, 4, IM_END, NL, EOT,       /* 7..14 */
                           IM_START, ASSIST, NL, 5, IM_START, USER, NL, 1,    /* 15..22 */
                           IM_START, ASSIST, 2, IM_START, ASSIST, NL, 9, 9};  /* 23..30 */
    const uint8_t want[] = {0, 0, 0, 0, 0, 0, 0,
                            0, 0, 0, 1, 1, 1, 0, 0,
                            0, 0, 0, 1, 0, 0, 0, 0,
                            0, 0, 0, 0, 0, 0, 1, 1};
    enum { N = sizeof ids / sizeof ids[0] };
    _Static_assert(sizeof want == N, "one mask byte per id");
    uint8_t mask[N];
    memset(mask, 7, sizeof mask);
    sl_train_assistant_mask(ids, N, IM_START, IM_END, hdr, 2, mask);
    for (int i = 0; i < N; i++)
        if (mask[i] != want[i]) {
            fprintf(stderr, "mask[%d] = %d, want %d\n", i, mask[i], want[i]);
            EXPECT(!"assistant mask differs");
        }
    /* a header cut by the end of the stream opens nothing */
    sl_train_assistant_mask(ids, 9, IM_START, IM_END, hdr, 2, mask);
    EXPECT_EQ_INT(mask[7] + mask[8], 0);
}

static double row_xent(const float *l, int v, int target)
{
    double mx = l[0], s = 0;
    for (int c = 1; c < v; c++)
        mx = fmax(mx, l[c]);
    for (int c = 0; c < v; c++)
        s += exp(l[c] - mx);
    return mx + log(s) - l[target];
}

static void test_masked_loss(void)
{
    const sl_train_hparams hp = {.dim = 8, .n_layer = 1, .n_head = 2, .n_head_kv = 2,
                                 .n_ff = 12, .n_vocab = 13, .n_ctx = 6, .norm_eps = 1e-5f,
                                 .rope_base = 10000};
    enum { T = 6, V = 13 };
    /* two rows of T + 1 tokens: a user question, then the assistant's answer */
    int32_t toks[2 * (T + 1)] = {IM_START, USER, 1, IM_END, IM_START, ASSIST, 3,
                                 USER, 2, IM_END, IM_START, ASSIST, 4, 5};
    /* mask[b][t + 1]: does target toks[b][t + 1] count */
    const uint8_t mask[2 * (T + 1)] = {0, 0, 0, 0, 0, 0, 1,
                                       0, 0, 0, 0, 0, 1, 1};
    sl_train_model *m = NULL;
    EXPECT_EQ_INT(sl_train_model_create(&hp, 2, NULL, &m), 0);
    sl_train_model_init(m, 3);
    size_t np = sl_train_n_params(&hp);
    double masked = 0, all = 0;
    EXPECT_EQ_INT(sl_train_model_run_masked(m, toks, mask, 2, false, &masked), 0);
    /* counted: row 0 position 5 (target 3), row 1 positions 4 and 5 (4, 5) */
    const float *lg = sl_train_model_logits(m);
    double want = (row_xent(lg + (0 * T + 5) * V, V, 3) + row_xent(lg + (1 * T + 4) * V, V, 4) +
                   row_xent(lg + (1 * T + 5) * V, V, 5)) / 3;
    double want_all = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < T; t++)
            want_all += row_xent(lg + (b * T + t) * V, V, toks[b * (T + 1) + t + 1]);
    want_all /= 2 * T;
    EXPECT_NEAR(masked, want, 1e-6);
    EXPECT(masked > 1.0); /* near log(13) for a fresh model */
    EXPECT_EQ_INT(sl_train_model_run(m, toks, 2, false, &all), 0);
    EXPECT_NEAR(all, want_all, 1e-6);
    EXPECT(fabs(all - masked) > 1e-4);

    /* a target that does not count changes neither the loss nor the
     * gradients: the last token of row 0 is only a target (never an input);
     * with its mask byte cleared, two different values give bitwise the
     * same loss and gradients */
    uint8_t m2[2 * (T + 1)];
    memcpy(m2, mask, sizeof m2);
    m2[0 * (T + 1) + 6] = 0;
    double *g1 = calloc(np, sizeof(double)), l1 = 0, l2 = 0;
    toks[0 * (T + 1) + 6] = 9;
    EXPECT_EQ_INT(sl_train_model_run_masked(m, toks, m2, 2, true, &l1), 0);
    const float *g = sl_train_model_grads(m);
    double gmax = 0;
    for (size_t i = 0; i < np; i++)
        g1[i] = g[i], gmax = fmax(gmax, fabs(g[i]));
    EXPECT(gmax > 1e-4);
    toks[0 * (T + 1) + 6] = 2;
    EXPECT_EQ_INT(sl_train_model_run_masked(m, toks, m2, 2, true, &l2), 0);
    EXPECT(l1 == l2);
    size_t diff = 0;
    for (size_t i = 0; i < np; i++)
        diff += g1[i] != g[i];
    EXPECT_EQ_UINT(diff, 0);
    /* whereas with every target counting, that change does matter */
    double l4 = 0, l5 = 0;
    EXPECT_EQ_INT(sl_train_model_run(m, toks, 2, false, &l4), 0);
    toks[0 * (T + 1) + 6] = 9;
    EXPECT_EQ_INT(sl_train_model_run(m, toks, 2, false, &l5), 0);
    EXPECT(l4 != l5);

    /* nothing counts: loss 0 and no gradient */
    const uint8_t none[2 * (T + 1)] = {0};
    double l0 = -1;
    EXPECT_EQ_INT(sl_train_model_run_masked(m, toks, none, 2, true, &l0), 0);
    EXPECT(l0 == 0);
    gmax = 0;
    for (size_t i = 0; i < np; i++)
        gmax = fmax(gmax, fabs(g[i]));
    EXPECT(gmax == 0);
    sl_train_model_free(m);
    free(g1);
}

int main(void)
{
    RUN(test_assistant_mask);
    RUN(test_masked_loss);
    return TEST_REPORT();
}
