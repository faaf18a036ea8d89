/* Sampler and stop matcher. Expected values are worked out by hand in the
 * comments next to them (softmax of small vectors). */
#include "core/core.h"
#include "engine/sample/sample.h"
#include "test.h"

/* A deterministic stream for building test inputs, independent of the code
 * under test. */
static uint64_t lcg_state = 12345;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 33);
}

static sl_sampler *make(const sl_sample_params *p, int32_t V)
{
    sl_sampler *s = NULL;
    int rc = sl_sampler_create(p, V, &s);
    if (rc)
        T_FAIL_AT("sl_sampler_create: %s", sl_strerror(rc));
    return s;
}

static int32_t sample1(sl_sampler *s, const float *logits)
{
    sl_sample_result r;
    int rc = sl_sampler_sample(s, logits, &r);
    if (rc)
        T_FAIL_AT("sl_sampler_sample: %s", sl_strerror(rc));
    return r.token;
}

/* Checks that the surviving set is exactly ids[] with probs[] (in order). */
static void expect_dist(sl_sampler *s, const float *logits, size_t n, const int32_t *ids,
                        const double *probs, int line)
{
    int32_t got_ids[64];
    float got_p[64];
    size_t got_n = 0;
    int rc = sl_sampler_dist(s, logits, got_ids, got_p, 64, &got_n);
    if (rc || got_n != n) {
        T_FAIL_AT("line %d: rc %d, %zu survivors, expected %zu", line, rc, got_n, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (got_ids[i] != ids[i] || fabs(got_p[i] - probs[i]) > 1e-5)
            T_FAIL_AT("line %d: survivor %zu is id %d p %.6f, expected id %d p %.6f", line, i,
                      got_ids[i], got_p[i], ids[i], probs[i]);
    }
}

static void test_greedy_argmax_lowest_id_on_ties(void)
{
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.temperature = 0.0f;
    sl_sampler *s = make(&p, 5);
    const float l1[5] = {1.0f, 3.0f, 3.0f, 2.0f, -1.0f};
    EXPECT_EQ_INT(sample1(s, l1), 1);
    const float l2[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.5f};
    EXPECT_EQ_INT(sample1(s, l2), 4);
    const float l3[5] = {NAN, -INFINITY, 7.0f, 7.0f, NAN};
    EXPECT_EQ_INT(sample1(s, l3), 2);
    /* +inf is clamped, so it wins, also at a temperature > 0 */
    const float inf[5] = {0.0f, INFINITY, 1.0f, 2.0f, 3.0f};
    EXPECT_EQ_INT(sample1(s, inf), 1);
    sl_sample_params pt;
    sl_sample_params_default(&pt);
    pt.temperature = 0.5f;
    sl_sampler *st = make(&pt, 5);
    EXPECT_EQ_INT(sample1(st, inf), 1);
    sl_sampler_destroy(st);
    const float bad[5] = {NAN, -INFINITY, NAN, -INFINITY, NAN};
    sl_sample_result r;
    EXPECT_EQ_INT(sl_sampler_sample(s, bad, &r), SL_ERANGE);
    sl_sampler_destroy(s);
}

static void test_top_k_1_equals_greedy(void)
{
    enum { V = 5000 };
    static float logits[V];
    sl_sample_params pg, pk;
    sl_sample_params_default(&pg);
    pg.temperature = 0.0f;
    sl_sample_params_default(&pk);
    pk.temperature = 1.5f;
    pk.top_k = 1;
    sl_sampler *g = make(&pg, V), *k = make(&pk, V);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < V; i++)
            logits[i] = (float)(lcg() % 1000) / 100.0f; /* many ties */
        EXPECT_EQ_INT(sample1(k, logits), sample1(g, logits));
    }
    sl_sampler_destroy(g);
    sl_sampler_destroy(k);
}

static void test_seeded_determinism(void)
{
    enum { V = 1000, N = 64 };
    static float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)(lcg() % 300) / 100.0f;
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.has_seed = true;
    p.seed = 42;
    sl_sampler *a = make(&p, V), *b = make(&p, V);
    p.seed = 43;
    sl_sampler *c = make(&p, V);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < N; i++) {
        int32_t ta = sample1(a, logits);
        (void)sl_rand_u64(); /* other randomness in the process must not matter */
        int32_t tb = sample1(b, logits);
        int32_t tc = sample1(c, logits);
        same_ab += ta == tb;
        same_ac += ta == tc;
    }
    EXPECT_EQ_INT(same_ab, N);
    /* 1000 tokens with a flat-ish distribution: a few chance matches at most. */
    EXPECT(same_ac < N / 2);
    sl_sampler_destroy(a);
    sl_sampler_destroy(b);
    sl_sampler_destroy(c);
}

/* probs {0.05, 0.4, 0.25, 0.2, 0.1} as logits */
static void five_logits(float *l)
{
    const double pr[5] = {0.05, 0.4, 0.25, 0.2, 0.1};
    for (int i = 0; i < 5; i++)
        l[i] = (float)log(pr[i]);
}

static void test_top_k_set(void)
{
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.top_k = 3;
    sl_sampler *s = make(&p, 5);
    /* top 3 of {1,4,2,3,0.5} are ids 1,3,2 with logits 4,3,2:
     * e^0 : e^-1 : e^-2 = 1 : 0.367879 : 0.135335, sum 1.503214 */
    const float l[5] = {1.0f, 4.0f, 2.0f, 3.0f, 0.5f};
    expect_dist(s, l, 3, (const int32_t[]){1, 3, 2}, (const double[]){0.665241, 0.244728, 0.090031},
                __LINE__);
    sl_sampler_destroy(s);

    /* Ties at the boundary keep the lower ids. */
    p.top_k = 2;
    s = make(&p, 5);
    const float t[5] = {0.0f, 1.0f, 0.0f, 1.0f, 1.0f};
    expect_dist(s, t, 2, (const int32_t[]){1, 3}, (const double[]){0.5, 0.5}, __LINE__);
    sl_sampler_destroy(s);
}

static void test_top_p_set(void)
{
    float l[5];
    five_logits(l);
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.top_p = 0.7f; /* 0.4, 0.65, 0.85 >= 0.7: keep ids 1,2,3, renormalised by 0.85 */
    sl_sampler *s = make(&p, 5);
    expect_dist(s, l, 3, (const int32_t[]){1, 2, 3}, (const double[]){0.470588, 0.294118, 0.235294},
                __LINE__);
    sl_sampler_destroy(s);

    p.top_p = 0.3f; /* the most likely token alone already has 0.4 */
    s = make(&p, 5);
    expect_dist(s, l, 1, (const int32_t[]){1}, (const double[]){1.0}, __LINE__);
    sl_sampler_destroy(s);

    /* Temperature comes before top_p: T=0.5 squares the probabilities,
     * 0.0025 0.16 0.0625 0.04 0.01 (sum 0.275) -> 0.0091 0.5818 0.2273 0.1455
     * 0.0364; top_p 0.85 keeps 1,2,3 (0.5818, 0.8091, 0.9545), renormalised
     * by 0.2625/0.275. */
    p.top_p = 0.85f;
    p.temperature = 0.5f;
    s = make(&p, 5);
    expect_dist(s, l, 3, (const int32_t[]){1, 2, 3}, (const double[]){0.609524, 0.238095, 0.152381},
                __LINE__);
    sl_sampler_destroy(s);
}

/* top_p over a vocabulary large enough to need several selection chunks. */
static void test_top_p_large_vocab(void)
{
    enum { V = 9000 }; /* above the size where bucketed top_p takes over */
    static float logits[V];
    static int32_t ids[V];
    static float probs[V];
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.top_p = 0.25f;

    /* 8192 equal logits: each p = 2^-13 exactly, so exactly 2048 survive,
     * and ties make them ids 0..2047, each renormalised to 2^-11. */
    sl_sampler *s = make(&p, 8192);
    for (int i = 0; i < 8192; i++)
        logits[i] = 0.5f;
    size_t n = 0;
    EXPECT_EQ_INT(sl_sampler_dist(s, logits, ids, probs, V, &n), 0);
    EXPECT_EQ_UINT(n, 2048);
    bool ok = true;
    for (size_t i = 0; i < n && i < 2048; i++)
        ok &= ids[i] == (int32_t)i && fabsf(probs[i] - 1.0f / 2048) < 1e-9f;
    EXPECT(ok);
    sl_sampler_destroy(s);

    /* Distinct logits in shuffled positions: id j has rank (7j mod V), logit
     * -0.01*rank. Reference: walk the ranks in order with double sums. */
    p.top_p = 0.9f;
    s = make(&p, V);
    for (int j = 0; j < V; j++)
        logits[j] = -0.01f * (float)((7 * j) % V);
    double z = 0.0;
    for (int r = 0; r < V; r++)
        z += exp(-0.01f * (float)r);
    double cum = 0.0;
    size_t want = 0;
    while (cum < 0.9)
        cum += exp(-0.01f * (float)want++) / z;
    EXPECT_EQ_INT(sl_sampler_dist(s, logits, ids, probs, V, &n), 0);
    EXPECT_EQ_UINT(n, want);
    ok = true;
    for (size_t i = 0; i < n && i < want; i++)
        ok &= (size_t)((7 * ids[i]) % V) == i; /* most likely first: rank i */
    EXPECT(ok);
    sl_sampler_destroy(s);
}

static void test_min_p_set(void)
{
    float l[5];
    five_logits(l);
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.min_p = 0.55f; /* floor 0.55*0.4 = 0.22: keep 0.4 and 0.25, sum 0.65 */
    sl_sampler *s = make(&p, 5);
    expect_dist(s, l, 2, (const int32_t[]){1, 2}, (const double[]){0.615385, 0.384615}, __LINE__);
    sl_sampler_destroy(s);

    p.min_p = 0.3f; /* floor 0.12: keep 0.4 0.25 0.2, sum 0.85 */
    s = make(&p, 5);
    expect_dist(s, l, 3, (const int32_t[]){1, 2, 3}, (const double[]){0.470588, 0.294118, 0.235294},
                __LINE__);
    sl_sampler_destroy(s);

    /* top_k 4 -> {0.4 .25 .2 .1}/0.95 = {0.421 0.263 0.211 0.105}; top_p 0.6:
     * 0.421, 0.684 -> ids {1, 2}; min_p 0.9: floor 0.9*0.421 = 0.379 drops
     * id 2 (0.263), so only id 1 is left. Without min_p: {1, 2} renormalised. */
    p.top_k = 4;
    p.top_p = 0.6f;
    p.min_p = 0.9f;
    s = make(&p, 5);
    expect_dist(s, l, 1, (const int32_t[]){1}, (const double[]){1.0}, __LINE__);
    sl_sampler_destroy(s);
    p.min_p = 0.0f;
    s = make(&p, 5);
    expect_dist(s, l, 2, (const int32_t[]){1, 2}, (const double[]){0.615385, 0.384615}, __LINE__);
    sl_sampler_destroy(s);
}

/* Frequencies of 3 tokens at temperature 0.5: p_i proportional to
 * {0.2, 0.3, 0.5}^2 = {0.04, 0.09, 0.25}/0.38 = {0.105263, 0.236842, 0.657895}.
 * Each count is Binomial(N, p_i); 6 standard deviations, sqrt(N p (1-p)), is
 * at most 6*150 = 900 at N = 100000, and a false failure has probability
 * about 2e-9 per count. */
static void test_temperature_frequencies(void)
{
    enum { N = 100000 };
    const float l[3] = {logf(0.2f), logf(0.3f), logf(0.5f)};
    const double expect[3] = {0.04 / 0.38, 0.09 / 0.38, 0.25 / 0.38};
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.temperature = 0.5f;
    p.has_seed = true;
    p.seed = 7;
    p.penalty_last_n = 0;
    sl_sampler *s = make(&p, 3);
    long count[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        int32_t t = sample1(s, l);
        if (t >= 0 && t < 3)
            count[t]++;
    }
    for (int i = 0; i < 3; i++) {
        double mean = N * expect[i], sd = sqrt(N * expect[i] * (1 - expect[i]));
        if (fabs((double)count[i] - mean) > 6 * sd)
            T_FAIL_AT("token %d drawn %ld times, expected %.0f +- %.0f", i, count[i], mean, 6 * sd);
    }
    sl_sampler_destroy(s);
}

/* Logits {2, -1, 0.5, 3, -2}; prompt 3 1 4 0 then generated 1 1; window of 3
 * holds 0 1 1 (3 and 4 fell out). repetition 2: id0 2 -> 1, id1 -1 -> -2.
 * presence 0.5 + frequency 0.25*2 on id1: -2 -> -3. Result {1,-3,0.5,3,-2},
 * logZ = ln(e^1 + e^-3 + e^0.5 + e^3 + e^-2) = 3.204276. */
static void test_penalties(void)
{
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 3;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.logprobs = true;
    p.n_logprobs = 5;
    sl_sampler *s = make(&p, 5);
    const int32_t prompt[4] = {3, 1, 4, 0};
    EXPECT_EQ_INT(sl_sampler_accept_prompt(s, prompt, 4), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 5), SL_EINVAL);
    const float l[5] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
    sl_sample_result r;
    EXPECT_EQ_INT(sl_sampler_sample(s, l, &r), 0);
    EXPECT_EQ_INT(r.token, 3);
    EXPECT_NEAR(r.logprob, -0.204276, 1e-5);
    EXPECT_EQ_INT(r.n_top, 5);
    const int32_t ids[5] = {3, 0, 2, 4, 1};
    const double lp[5] = {-0.204276, -2.204276, -2.704276, -5.204276, -6.204276};
    for (int i = 0; i < 5 && i < r.n_top; i++) {
        EXPECT_EQ_INT(r.top[i].id, ids[i]);
        EXPECT_NEAR(r.top[i].logprob, lp[i], 1e-5);
    }
    sl_sampler_destroy(s);

    /* Without the window (3 and 4 not yet pushed out) id3 would be halved:
     * a window of 6 holds 3 1 4 0 1 1, so id3 3 -> 1.5 and id4 -2 -> -4;
     * argmax is then id 3 (1.5) over id0 (1.0). */
    p.penalty_last_n = 6;
    p.logprobs = false;
    p.n_logprobs = 0;
    s = make(&p, 5);
    EXPECT_EQ_INT(sl_sampler_accept_prompt(s, prompt, 4), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    int32_t got[8];
    float pr[8];
    size_t n = 0;
    /* temperature 0 reports the greedy pick alone */
    EXPECT_EQ_INT(sl_sampler_dist(s, l, got, pr, 8, &n), 0);
    EXPECT_EQ_UINT(n, 1);
    EXPECT_EQ_INT(got[0], 3);
    sl_sampler_destroy(s);

    /* Same window at temperature 1: penalised logits {1, -3, 0.5, 1.5, -4};
     * softmax: e^1 2.718282, e^-3 0.049787, e^0.5 1.648721, e^1.5 4.481689,
     * e^-4 0.018316, sum 8.916795. */
    p.temperature = 1.0f;
    s = make(&p, 5);
    EXPECT_EQ_INT(sl_sampler_accept_prompt(s, prompt, 4), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    EXPECT_EQ_INT(sl_sampler_accept(s, 1), 0);
    expect_dist(s, l, 5, (const int32_t[]){3, 0, 2, 1, 4},
                (const double[]){4.481689 / 8.916795, 2.718282 / 8.916795, 1.648721 / 8.916795,
                                 0.049787 / 8.916795, 0.018316 / 8.916795},
                __LINE__);
    sl_sampler_destroy(s);
}

/* Logits {1, 2, 3}: logZ = 3 + ln(1 + e^-1 + e^-2) = 3.407606. */
static void test_logprobs(void)
{
    sl_sample_params p;
    sl_sample_params_default(&p);
    p.top_k = 1; /* truncation must not change the reported logprob */
    p.logprobs = true;
    p.n_logprobs = 2;
    sl_sampler *s = make(&p, 3);
    const float l[3] = {1.0f, 2.0f, 3.0f};
    sl_sample_result r;
    EXPECT_EQ_INT(sl_sampler_sample(s, l, &r), 0);
    EXPECT_EQ_INT(r.token, 2);
    EXPECT_NEAR(r.logprob, -0.407606, 1e-5);
    EXPECT_EQ_INT(r.n_top, 2);
    EXPECT_EQ_INT(r.top[0].id, 2);
    EXPECT_NEAR(r.top[0].logprob, -0.407606, 1e-5);
    EXPECT_EQ_INT(r.top[1].id, 1);
    EXPECT_NEAR(r.top[1].logprob, -1.407606, 1e-5);
    sl_sampler_destroy(s);

    /* Equal logits: ln(1/4) each, ties listed by id. */
    p.top_k = 0;
    p.n_logprobs = 3;
    s = make(&p, 4);
    const float e[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    EXPECT_EQ_INT(sl_sampler_sample(s, e, &r), 0);
    EXPECT_NEAR(r.logprob, -1.386294, 1e-5);
    EXPECT_EQ_INT(r.n_top, 3);
    for (int i = 0; i < 3 && i < r.n_top; i++) {
        EXPECT_EQ_INT(r.top[i].id, i);
        EXPECT_NEAR(r.top[i].logprob, -1.386294, 1e-5);
    }
    sl_sampler_destroy(s);
}

static void test_params_check(void)
{
    sl_sample_params p;
    char err[160];
    sl_sample_params_default(&p);
    EXPECT_EQ_INT(sl_sample_params_check(&p, err, sizeof err), 0);
    p.top_p = 1.5f;
    EXPECT_EQ_INT(sl_sample_params_check(&p, err, sizeof err), SL_ERANGE);
    EXPECT_CONTAINS(err, "top_p must be in (0, 1], got 1.5");
    sl_sample_params_default(&p);
    p.temperature = NAN;
    EXPECT_EQ_INT(sl_sample_params_check(&p, err, sizeof err), SL_ERANGE);
    EXPECT_CONTAINS(err, "temperature");
    sl_sample_params_default(&p);
    p.n_logprobs = 21;
    EXPECT_EQ_INT(sl_sample_params_check(&p, err, sizeof err), SL_ERANGE);
    sl_sampler *s = NULL;
    EXPECT_EQ_INT(sl_sampler_create(&p, 10, &s), SL_ERANGE);
    EXPECT(s == NULL);
}

/* ---- stop matcher ---- */

static sl_stop_matcher *make_stop(const char *a, const char *b, const char *c)
{
    sl_stop_spec spec = {0};
    const char *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (all[i])
            spec.strings[spec.n_strings++] = all[i];
    sl_stop_matcher *m = NULL;
    char err[128];
    int rc = sl_stop_create(&spec, &m, err, sizeof err);
    if (rc)
        T_FAIL_AT("sl_stop_create: %s", err);
    return m;
}

/* Feeds piece and checks what comes out. */
static void feed_expect(sl_stop_matcher *m, const char *piece, const char *emit, sl_finish_reason fin,
                        int idx, int line)
{
    sl_stop_out o;
    int rc = sl_stop_feed(m, piece, strlen(piece), &o);
    if (rc || o.emit_len != strlen(emit) || memcmp(o.emit, emit, o.emit_len) != 0 ||
        o.finish != fin || o.stop_index != idx)
        T_FAIL_AT("line %d: feed \"%s\": rc %d emit \"%.*s\" finish %d idx %d; expected \"%s\" %d %d",
                  line, piece, rc, (int)o.emit_len, o.emit, (int)o.finish, o.stop_index, emit,
                  (int)fin, idx);
}

static void test_stop_split_across_pieces(void)
{
    sl_stop_matcher *m = make_stop("STOP", NULL, NULL);
    feed_expect(m, "Hello ST", "Hello ", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "O", "", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "P and more", "", SL_FINISH_STOP, 0, __LINE__);
    feed_expect(m, "later", "", SL_FINISH_STOP, -1, __LINE__);
    sl_stop_destroy(m);

    /* Text before the stop in the same piece comes out with the stop. */
    m = make_stop("</answer>", NULL, NULL);
    feed_expect(m, "42 <", "42 ", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "/ans", "", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "wer> tail", "", SL_FINISH_STOP, 0, __LINE__);
    sl_stop_destroy(m);
}

static void test_stop_prefix_then_mismatch(void)
{
    sl_stop_matcher *m = make_stop("STOP", NULL, NULL);
    feed_expect(m, "ab S", "ab ", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "To", "STo", SL_FINISH_NONE, -1, __LINE__);
    /* A mismatch that itself starts a new prefix keeps only that part. */
    feed_expect(m, "STS", "ST", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "TOP!", "", SL_FINISH_STOP, 0, __LINE__);
    sl_stop_destroy(m);

    /* End of generation releases what was held. */
    m = make_stop("STOP", NULL, NULL);
    feed_expect(m, "x ST", "x ", SL_FINISH_NONE, -1, __LINE__);
    sl_stop_out o;
    EXPECT_EQ_INT(sl_stop_flush(m, &o), 0);
    EXPECT_EQ_UINT(o.emit_len, 2);
    EXPECT(o.emit_len == 2 && memcmp(o.emit, "ST", 2) == 0);
    EXPECT_EQ_INT(o.finish, SL_FINISH_NONE);
    sl_stop_destroy(m);
}

static void test_stop_multiple(void)
{
    sl_stop_matcher *m = make_stop("\n\n", "END", "###");
    feed_expect(m, "abc#", "abc", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "#E", "##", SL_FINISH_NONE, -1, __LINE__);
    /* END at 0 and \n\n at 3: the earliest wins */
    feed_expect(m, "ND\n\nx", "", SL_FINISH_STOP, 1, __LINE__);
    sl_stop_destroy(m);

    m = make_stop("\n\n", "END", "###");
    feed_expect(m, "a\n\nEND", "a", SL_FINISH_STOP, 0, __LINE__);
    sl_stop_destroy(m);
}

static void test_stop_at_start(void)
{
    sl_stop_matcher *m = make_stop("<|im_end|>", NULL, NULL);
    feed_expect(m, "<|im_end|>", "", SL_FINISH_STOP, 0, __LINE__);
    sl_stop_destroy(m);
    m = make_stop("<|im_end|>", NULL, NULL);
    feed_expect(m, "<|im", "", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "_end|>", "", SL_FINISH_STOP, 0, __LINE__);
    sl_stop_destroy(m);
}

static void test_stop_utf8_holdback(void)
{
    sl_stop_matcher *m = make_stop("zz", NULL, NULL);
    feed_expect(m, "caf\xc3", "caf", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "\xa9!", "\xc3\xa9!", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "\xe2\x82", "", SL_FINISH_NONE, -1, __LINE__);
    feed_expect(m, "\xac", "\xe2\x82\xac", SL_FINISH_NONE, -1, __LINE__);
    sl_stop_destroy(m);
}

/* Property: over random text cut into random pieces, everything emitted
 * equals the text before the first stop (or all of it after a flush). */
static void test_stop_random_pieces(void)
{
    static const char *stops[2] = {"abcab", "cc"};
    for (int round = 0; round < 300; round++) {
        char text[200];
        size_t len = 20 + lcg() % 150;
        for (size_t i = 0; i < len; i++)
            text[i] = "abc"[lcg() % 3];
        text[len] = 0;
        size_t cut = len;
        for (int k = 0; k < 2; k++) {
            const char *h = strstr(text, stops[k]);
            if (h && (size_t)(h - text) < cut)
                cut = (size_t)(h - text);
        }
        sl_stop_matcher *m = make_stop(stops[0], stops[1], NULL);
        char got[256];
        size_t got_len = 0, pos = 0;
        sl_stop_out o = {0};
        while (pos < len && o.finish == SL_FINISH_NONE) {
            size_t n = 1 + lcg() % 4; /* SL_MIN would call lcg twice */
            if (n > len - pos)
                n = len - pos;
            if (sl_stop_feed(m, text + pos, n, &o))
                break;
            memcpy(got + got_len, o.emit, o.emit_len);
            got_len += o.emit_len;
            pos += n;
        }
        if (o.finish == SL_FINISH_NONE) {
            sl_stop_flush(m, &o);
            memcpy(got + got_len, o.emit, o.emit_len);
            got_len += o.emit_len;
        }
        if (got_len != cut || memcmp(got, text, cut) != 0) {
            T_FAIL_AT("round %d: text \"%s\": emitted %zu bytes, expected %zu", round, text, got_len,
                      cut);
            sl_stop_destroy(m);
            return;
        }
        sl_stop_destroy(m);
    }
}

static void test_stop_tokens_and_limits(void)
{
    sl_stop_spec spec = {0};
    spec.end_ids[0] = 2;
    spec.end_ids[1] = 7;
    spec.n_end_ids = 2;
    spec.max_tokens = 3;
    sl_stop_matcher *m = NULL;
    EXPECT_EQ_INT(sl_stop_create(&spec, &m, NULL, 0), 0);
    EXPECT_EQ_INT(sl_stop_token(m, 5), SL_FINISH_NONE);
    EXPECT_EQ_INT(sl_stop_token(m, 7), SL_FINISH_STOP);
    sl_stop_destroy(m);
    EXPECT_EQ_INT(sl_stop_create(&spec, &m, NULL, 0), 0);
    EXPECT_EQ_INT(sl_stop_token(m, 1), SL_FINISH_NONE);
    EXPECT_EQ_INT(sl_stop_token(m, 1), SL_FINISH_NONE);
    EXPECT_EQ_INT(sl_stop_token(m, 1), SL_FINISH_LENGTH);
    EXPECT_EQ_INT(sl_stop_tokens(m), 3);
    sl_stop_destroy(m);

    char err[128];
    sl_stop_spec bad = {0};
    bad.strings[0] = "x";
    bad.strings[1] = "";
    bad.n_strings = 2;
    EXPECT_EQ_INT(sl_stop_create(&bad, &m, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "stop[1] is empty");
    bad.n_strings = 5;
    EXPECT_EQ_INT(sl_stop_create(&bad, &m, err, sizeof err), SL_ERANGE);
    EXPECT_CONTAINS(err, "at most 4");
    EXPECT(m == NULL);
}

int main(void)
{
    RUN(test_greedy_argmax_lowest_id_on_ties);
    RUN(test_top_k_1_equals_greedy);
    RUN(test_seeded_determinism);
    RUN(test_top_k_set);
    RUN(test_top_p_set);
    RUN(test_top_p_large_vocab);
    RUN(test_min_p_set);
    RUN(test_temperature_frequencies);
    RUN(test_penalties);
    RUN(test_logprobs);
    RUN(test_params_check);
    RUN(test_stop_split_across_pieces);
    RUN(test_stop_prefix_then_mismatch);
    RUN(test_stop_multiple);
    RUN(test_stop_at_start);
    RUN(test_stop_utf8_holdback);
    RUN(test_stop_random_pieces);
    RUN(test_stop_tokens_and_limits);
    return TEST_REPORT();
}
