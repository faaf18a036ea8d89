/* The sampler: penalties, truncation, temperature and the seeded draw. See
 * sample.h for the order of operations and the logprob convention. */
#include "sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One candidate token during a sampling step. */
typedef struct cand {
    int32_t id;
    float logit; /* after penalties (and temperature, from step 4 on) */
    float p;     /* probability, from step 5 on */
} cand;

/* token id -> count, open addressing with linear probing. Slots are never
 * deleted: a count that drops to 0 stays as a slot with count 0. The number of
 * slots is bounded by the distinct tokens seen, at most the vocabulary. */
typedef struct tokmap {
    int32_t *keys; /* -1 = empty */
    int32_t *vals;
    size_t cap;    /* power of two, or 0 */
    size_t used;
} tokmap;

struct sl_sampler {
    sl_sample_params p;
    int32_t n_vocab;
    uint64_t rng[4];      /* xoshiro256** state */
    cand *cand;           /* n_vocab scratch candidates */
    float *pen;           /* n_vocab penalised logits, kept only for logprobs */
    int32_t *window;      /* ring of the last penalty_last_n tokens */
    size_t window_len;    /* tokens in the ring, <= penalty_last_n */
    size_t window_head;   /* next slot to write */
    tokmap window_counts; /* occurrences inside the ring */
    tokmap gen_counts;    /* occurrences among generated tokens */
};

/* ---- PRNG ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

static double rng_unit(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* ---- token count map ---- */

static int tokmap_grow(tokmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    int32_t *keys = sl_malloc(cap * sizeof *keys);
    int32_t *vals = sl_malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        sl_free(keys);
        sl_free(vals);
        return SL_ENOMEM;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] < 0)
            continue;
        size_t j = (uint32_t)m->keys[i] * 2654435761u & (cap - 1);
        while (keys[j] >= 0)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    sl_free(m->keys);
    sl_free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

/* Adds delta to the count of tok. Returns 0 or SL_ENOMEM. */
static int tokmap_add(tokmap *m, int32_t tok, int32_t delta)
{
    if ((m->used + 1) * 2 > m->cap) {
        int rc = tokmap_grow(m);
        if (rc)
            return rc;
    }
    size_t j = (uint32_t)tok * 2654435761u & (m->cap - 1);
    while (m->keys[j] >= 0 && m->keys[j] != tok)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] < 0) {
        m->keys[j] = tok;
        m->vals[j] = 0;
        m->used++;
    }
    m->vals[j] += delta;
    return 0;
}

static void tokmap_free(tokmap *m)
{
    sl_free(m->keys);
    sl_free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- parameters ---- */

void sl_sample_params_default(sl_sample_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
    p->penalty_last_n = 64;
}

static int range_err(char *err, size_t err_size, const char *field, const char *range, double v)
{
    if (err && err_size)
        snprintf(err, err_size, "sampling parameter %s must be %s, got %g", field, range, v);
    return SL_ERANGE;
}

int sl_sample_params_check(const sl_sample_params *p, char *err, size_t err_size)
{
    /* Written so that NaN fails every check. */
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return range_err(err, err_size, "temperature", "in [0, 100]", p->temperature);
    if (p->top_k < 0)
        return range_err(err, err_size, "top_k", ">= 0", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return range_err(err, err_size, "top_p", "in (0, 1]", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return range_err(err, err_size, "min_p", "in [0, 1]", p->min_p);
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 10.0f))
        return range_err(err, err_size, "repetition_penalty", "in (0, 10]", p->repetition_penalty);
    if (p->penalty_last_n < 0 || p->penalty_last_n > SL_SAMPLE_MAX_PENALTY_LAST_N)
        return range_err(err, err_size, "penalty_last_n", "in [0, 65536]", p->penalty_last_n);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return range_err(err, err_size, "presence_penalty", "in [-2, 2]", p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return range_err(err, err_size, "frequency_penalty", "in [-2, 2]", p->frequency_penalty);
    if (p->n_logprobs < 0 || p->n_logprobs > SL_SAMPLE_MAX_LOGPROBS)
        return range_err(err, err_size, "top_logprobs", "in [0, 20]", p->n_logprobs);
    return 0;
}

/* ---- lifecycle and history ---- */

int sl_sampler_create(const sl_sample_params *p, int32_t n_vocab, sl_sampler **out)
{
    *out = NULL;
    if (sl_sample_params_check(p, NULL, 0) || n_vocab <= 0 || n_vocab > SL_SAMPLE_MAX_VOCAB)
        return SL_ERANGE;
    sl_sampler *s = sl_calloc(1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = sl_malloc((size_t)n_vocab * sizeof *s->cand);
    if (p->logprobs || p->n_logprobs > 0)
        s->pen = sl_malloc((size_t)n_vocab * sizeof *s->pen);
    if (p->penalty_last_n > 0 && p->repetition_penalty != 1.0f)
        s->window = sl_malloc((size_t)p->penalty_last_n * sizeof *s->window);
    if (!s->cand || ((p->logprobs || p->n_logprobs > 0) && !s->pen) ||
        (p->penalty_last_n > 0 && p->repetition_penalty != 1.0f && !s->window)) {
        sl_sampler_destroy(s);
        return SL_ENOMEM;
    }
    uint64_t x = p->has_seed ? p->seed : sl_rand_u64();
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return 0;
}

void sl_sampler_destroy(sl_sampler *s)
{
    if (!s)
        return;
    sl_free(s->cand);
    sl_free(s->pen);
    sl_free(s->window);
    tokmap_free(&s->window_counts);
    tokmap_free(&s->gen_counts);
    sl_free(s);
}

/* Pushes tok into the repetition ring, evicting the oldest when full. */
static int window_push(sl_sampler *s, int32_t tok)
{
    if (!s->window)
        return 0;
    size_t n = (size_t)s->p.penalty_last_n;
    int rc = tokmap_add(&s->window_counts, tok, 1);
    if (rc)
        return rc;
    if (s->window_len == n) {
        /* The evicted token is already in the map: adding -1 never allocates. */
        (void)tokmap_add(&s->window_counts, s->window[s->window_head], -1);
    } else {
        s->window_len++;
    }
    s->window[s->window_head] = tok;
    s->window_head = (s->window_head + 1) % n;
    return 0;
}

int sl_sampler_accept_prompt(sl_sampler *s, const int32_t *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->n_vocab)
            return SL_EINVAL;
    /* Only the last penalty_last_n tokens can matter. */
    size_t keep = s->window ? (size_t)s->p.penalty_last_n : 0;
    for (size_t i = n > keep ? n - keep : 0; i < n; i++) {
        int rc = window_push(s, tokens[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int sl_sampler_accept(sl_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return SL_EINVAL;
    int rc = window_push(s, token);
    if (rc)
        return rc;
    if (s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f)
        rc = tokmap_add(&s->gen_counts, token, 1);
    return rc;
}

/* ---- the pipeline ---- */

/* Total order: higher logit first, then lower id. */
static inline bool better(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *x, const void *y)
{
    const cand *a = x, *b = y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static inline void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges a[0..n) so that a[0..k) holds the k best candidates (in no
 * particular order). Quickselect with a median-of-three pivot: O(n) expected;
 * keys are distinct under better(), so equal logits cannot degrade it. */
static void select_top(cand *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 16) {
        size_t mid = lo + (hi - lo) / 2;
        if (better(&a[mid], &a[lo]))
            swap_cand(&a[mid], &a[lo]);
        if (better(&a[hi - 1], &a[lo]))
            swap_cand(&a[hi - 1], &a[lo]);
        if (better(&a[hi - 1], &a[mid]))
            swap_cand(&a[hi - 1], &a[mid]);
        /* a[lo] >= a[mid] >= a[hi-1]; the median goes to hi-1 as the pivot. */
        swap_cand(&a[mid], &a[hi - 1]);
        const cand pivot = a[hi - 1];
        size_t store = lo;
        for (size_t i = lo; i < hi - 1; i++)
            if (better(&a[i], &pivot))
                swap_cand(&a[i], &a[store++]);
        swap_cand(&a[store], &a[hi - 1]);
        /* [lo, store) better than the pivot, (store, hi) worse. */
        if (store == k || store + 1 == k)
            return;
        if (k < store)
            hi = store;
        else
            lo = store + 1;
    }
    for (size_t i = lo + 1; i < hi; i++) {
        cand c = a[i];
        size_t j = i;
        while (j > lo && better(&c, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = c;
    }
}

/* Heap-based alternative to select_top for small k: a min-heap (worst at the
 * root) of the k best seen so far. On logits in no particular order almost
 * every candidate fails the one comparison with the root, a branch the CPU
 * predicts well, which makes this several times faster than quickselect for
 * the usual top_k of 20..100 over a 150k vocabulary. */
static void heap_sift(cand *h, size_t k, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(&h[w], &h[l]))
            w = l;
        if (r < k && better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        swap_cand(&h[i], &h[w]);
        i = w;
    }
}

static void heap_top(cand *a, size_t n, size_t k)
{
    for (size_t i = k / 2; i-- > 0;)
        heap_sift(a, k, i);
    for (size_t i = k; i < n; i++) {
        if (better(&a[i], &a[0])) {
            swap_cand(&a[i], &a[0]); /* the dropped one stays in a[k..n) */
            heap_sift(a, k, 0);
        }
    }
}

/* Keeps in c[0..n) the k best candidates. */
static void keep_top(cand *c, size_t n, size_t k)
{
    if (k <= 512)
        heap_top(c, n, k);
    else
        select_top(c, n, k);
}

/* top_p on c[0..n) whose p sum to 1 and are ordered like their logits.
 * Chunked: select and sort the best 64, then the next 128, ... until the kept
 * mass reaches top_p, so only about what is kept gets sorted. Leaves the kept
 * tokens first, best first, and returns how many there are. */
static size_t top_p_chunked(cand *c, size_t n, double top_p, double cum)
{
    size_t start = 0, chunk = 64;
    while (start < n) {
        size_t end = n - start > chunk ? start + chunk : n;
        if (end < n)
            keep_top(c + start, n - start, end - start);
        qsort(c + start, end - start, sizeof *c, cmp_cand);
        for (size_t i = start; i < end; i++) {
            cum += c[i].p;
            if (cum >= top_p)
                return i + 1;
        }
        start = end;
        chunk *= 2;
    }
    return n;
}

/* top_p for large n with a flat distribution, where the kept set is big:
 * bucket the candidates by logit (128 equal-width buckets between the
 * minimum and maximum finite logit), find the bucket where the mass from
 * the top crosses top_p, keep every better bucket whole (unsorted; the draw
 * does not need order) and cut only inside the crossing bucket. Buckets are
 * a monotone function of the logit, so the set equals that of a full sort.
 * Returns the number kept, moved to the front of c. */
#define TOP_P_BUCKETS 128
static inline int bucket_of(float maxl, float scale, float logit)
{
    int b = (int)((maxl - logit) * scale);
    return b < TOP_P_BUCKETS ? b : TOP_P_BUCKETS - 1;
}

static size_t top_p_bucketed(cand *c, size_t n, double top_p, float maxl)
{
    float minl = maxl;
    for (size_t i = 0; i < n; i++)
        if (c[i].p > 0.0f && c[i].logit < minl)
            minl = c[i].logit;
    if (!(maxl - minl > 0.0f))
        return top_p_chunked(c, n, top_p, 0.0);
    const float scale = (float)(TOP_P_BUCKETS - 1) / (maxl - minl);
    double mass[TOP_P_BUCKETS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (c[i].p <= 0.0f)
            continue;
        mass[bucket_of(maxl, scale, c[i].logit)] += c[i].p;
    }
    double cum = 0.0;
    int cross = TOP_P_BUCKETS - 1;
    for (int b = 0; b < TOP_P_BUCKETS; b++) {
        if (cum + mass[b] >= top_p) {
            cross = b;
            break;
        }
        cum += mass[b];
    }
    /* Partition: better buckets first, then the crossing bucket. */
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (c[i].p > 0.0f && bucket_of(maxl, scale, c[i].logit) < cross)
            swap_cand(&c[i], &c[w++]);
    size_t whole = w;
    for (size_t i = w; i < n; i++)
        if (c[i].p > 0.0f && bucket_of(maxl, scale, c[i].logit) == cross)
            swap_cand(&c[i], &c[w++]);
    return whole + top_p_chunked(c + whole, w - whole, top_p, cum);
}

/* Applies the penalties to s->cand[0..V), which is in id order. */
static void apply_penalties(sl_sampler *s)
{
    cand *c = s->cand;
    const float rp = s->p.repetition_penalty;
    if (s->window && s->window_counts.cap) {
        const tokmap *m = &s->window_counts;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] < 0 || m->vals[i] <= 0)
                continue;
            float *l = &c[m->keys[i]].logit;
            *l = *l > 0.0f ? *l / rp : *l * rp;
        }
    }
    const float pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    if ((pres != 0.0f || freq != 0.0f) && s->gen_counts.cap) {
        const tokmap *m = &s->gen_counts;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->keys[i] < 0 || m->vals[i] <= 0)
                continue;
            c[m->keys[i]].logit -= pres + freq * (float)m->vals[i];
        }
    }
}

/* Steps 1-8 of sample.h. Leaves the survivors in s->cand[0..*n_out) with
 * normalised p, or the greedy choice in *greedy (and *n_out = 0). */
static int run_pipeline(sl_sampler *s, const float *logits, int32_t *greedy, size_t *n_out)
{
    const size_t V = (size_t)s->n_vocab;
    cand *c = s->cand;
    bool any_finite = false;
    for (size_t i = 0; i < V; i++) {
        float l = logits[i];
        if (isnan(l))
            l = -INFINITY;
        else if (l > 1e30f)
            l = 1e30f; /* +inf would make softmax inf - inf; 1e30 stays finite after /T */
        any_finite |= isfinite(l);
        c[i].id = (int32_t)i;
        c[i].logit = l;
    }
    if (!any_finite)
        return SL_ERANGE;
    apply_penalties(s);
    if (s->pen)
        for (size_t i = 0; i < V; i++)
            s->pen[i] = c[i].logit;

    if (s->p.temperature == 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < V; i++)
            if (c[i].logit > c[best].logit) /* strict: ties keep the lower id */
                best = i;
        *greedy = (int32_t)best;
        *n_out = 0;
        return 0;
    }

    size_t n = V;
    bool sorted = false;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        keep_top(c, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
    }

    const float inv_t = 1.0f / s->p.temperature;
    float maxl = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        c[i].logit *= inv_t;
        if (c[i].logit > maxl)
            maxl = c[i].logit;
    }
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        /* Below e^-40 relative to the best token a probability is lost in
         * float rounding of the sum anyway (150k * 4e-18 << 2^-24); skipping
         * expf there saves most of its cost on real logits. */
        float d = c[i].logit - maxl;
        c[i].p = d > -40.0f ? expf(d) : 0.0f;
        sum += c[i].p;
    }
    const float inv_sum = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++)
        c[i].p *= inv_sum;

    if (s->p.top_p < 1.0f) {
        if (n > 4096) {
            n = top_p_bucketed(c, n, s->p.top_p, maxl);
        } else {
            n = top_p_chunked(c, n, s->p.top_p, 0.0);
            sorted = true;
        }
    }

    if (s->p.min_p > 0.0f) {
        float pmax = 0.0f;
        if (sorted) {
            pmax = c[0].p;
        } else {
            for (size_t i = 0; i < n; i++)
                if (c[i].p > pmax)
                    pmax = c[i].p;
        }
        const float floor_p = s->p.min_p * pmax;
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].p >= floor_p)
                c[w++] = c[i];
        n = w; /* never 0: the maximum itself passes */
    }

    sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += c[i].p;
    const float renorm = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++)
        c[i].p *= renorm;
    *n_out = n;
    return 0;
}

/* Fills the logprob fields of out from s->pen (the penalised logits). */
static void fill_logprobs(const sl_sampler *s, sl_sample_result *out)
{
    const size_t V = (size_t)s->n_vocab;
    const float *pen = s->pen;
    float maxl = -INFINITY;
    for (size_t i = 0; i < V; i++)
        if (pen[i] > maxl)
            maxl = pen[i];
    double sum = 0.0;
    for (size_t i = 0; i < V; i++) {
        /* Terms below e^-40 cannot move log_z by more than 150k * 4e-18. */
        double d = (double)pen[i] - maxl;
        if (d > -40.0)
            sum += exp(d);
    }
    const double log_z = maxl + log(sum);
    out->logprob = (float)((double)pen[out->token] - log_z);

    /* The n best by a bounded insertion into top[], scanning ids upwards: a
     * later token only displaces an entry with a strictly lower logit, so ties
     * keep the lower id first. */
    const int32_t want = s->p.n_logprobs;
    int32_t have = 0;
    for (size_t i = 0; i < V && want > 0; i++) {
        float l = pen[i];
        if (have == want && !(l > out->top[have - 1].logprob))
            continue;
        int32_t j = have < want ? have++ : want - 1;
        while (j > 0 && l > out->top[j - 1].logprob) {
            out->top[j] = out->top[j - 1];
            j--;
        }
        out->top[j].id = (int32_t)i;
        out->top[j].logprob = l;
    }
    for (int32_t j = 0; j < have; j++)
        out->top[j].logprob = (float)((double)out->top[j].logprob - log_z);
    out->n_top = have;
}

int sl_sampler_sample(sl_sampler *s, const float *logits, sl_sample_result *out)
{
    out->logprob = 0.0f;
    out->n_top = 0;
    int32_t tok = 0;
    size_t n = 0;
    int rc = run_pipeline(s, logits, &tok, &n);
    if (rc)
        return rc;
    if (n > 0) {
        /* Walk the cumulative distribution; rounding can leave u just above
         * the total, so the last token with p > 0 is the fallback. */
        const double u = rng_unit(s->rng);
        double cum = 0.0;
        tok = -1;
        int32_t last = s->cand[0].id;
        for (size_t i = 0; i < n; i++) {
            if (s->cand[i].p <= 0.0f)
                continue;
            last = s->cand[i].id;
            cum += s->cand[i].p;
            if (u < cum) {
                tok = last;
                break;
            }
        }
        if (tok < 0)
            tok = last;
    }
    out->token = tok;
    if (s->pen)
        fill_logprobs(s, out);
    return sl_sampler_accept(s, tok);
}

int sl_sampler_dist(sl_sampler *s, const float *logits, int32_t *ids, float *probs, size_t cap,
                    size_t *n_out)
{
    int32_t tok = 0;
    size_t n = 0;
    int rc = run_pipeline(s, logits, &tok, &n);
    if (rc)
        return rc;
    if (n == 0) {
        if (cap > 0) {
            ids[0] = tok;
            probs[0] = 1.0f;
        }
        *n_out = 1;
        return 0;
    }
    /* Probabilities order like logits (which now include the temperature). */
    qsort(s->cand, n, sizeof *s->cand, cmp_cand);
    for (size_t i = 0; i < n && i < cap; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = s->cand[i].p;
    }
    *n_out = n;
    return 0;
}
