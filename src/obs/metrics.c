#include "obs/obs.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MAX_SERIES_PER_SHARD 4096
#define MAX_LABEL_BYTES 200
#define MAX_GAUGES 32
#define N_BUCKETS 16

typedef enum { KIND_COUNTER, KIND_HISTOGRAM } family_kind;

typedef struct family {
    const char *name;
    const char *help;
    family_kind kind;
    const char *labels[3];
} family;

static const family families[SL_M__COUNT] = {
    [SL_M_REQUESTS] = {"sluice_requests_total", "Requests answered, by model, backend and HTTP status.",
                       KIND_COUNTER, {"model", "backend", "status"}},
    [SL_M_DURATION] = {"sluice_request_duration_seconds", "End-to-end request latency.", KIND_HISTOGRAM,
                       {"model", NULL, NULL}},
    [SL_M_TTFT] = {"sluice_time_to_first_token_seconds", "Time from request to the first streamed token.",
                   KIND_HISTOGRAM, {"model", NULL, NULL}},
    [SL_M_ITL] = {"sluice_inter_token_latency_seconds", "Time between streamed tokens.", KIND_HISTOGRAM,
                  {"model", NULL, NULL}},
    [SL_M_ATTEMPTS] = {"sluice_upstream_attempts_total", "Upstream attempts by backend and outcome.",
                       KIND_COUNTER, {"backend", "outcome", NULL}},
    [SL_M_RETRIES] = {"sluice_upstream_retries_total", "Retries of upstream attempts, by model.", KIND_COUNTER,
                      {"model", NULL, NULL}},
    [SL_M_FALLBACKS] = {"sluice_fallbacks_total", "Requests sent to a fallback model group.", KIND_COUNTER,
                        {"model", "to", NULL}},
    [SL_M_TOKENS] = {"sluice_tokens_total", "Tokens reported in upstream usage.", KIND_COUNTER,
                     {"model", "kind", NULL}},
    [SL_M_REJECTED] = {"sluice_rejected_total", "Requests refused before routing, by reason.", KIND_COUNTER,
                       {"reason", NULL, NULL}},
    [SL_M_QUEUE_WAIT] = {"sluice_queue_wait_seconds", "Time admitted requests waited in the admission queue.",
                         KIND_HISTOGRAM, {"model", NULL, NULL}},
};

/* Upper bounds in seconds; chosen to cover fast proxies (ms) and slow generations (minutes). */
static const double buckets[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,      2.5,   5,    10,    30,    60,  300};

typedef struct series {
    sl_metric_id id;
    char *labels[3];
    double value; /* counter value, or histogram sum */
    uint64_t count;
    uint64_t bucket[N_BUCKETS]; /* non-cumulative */
    struct series *next;
} series;

struct sl_metrics_shard {
    pthread_mutex_t lock;
    series **tab;
    size_t cap, n;
    sl_metrics_shard *next;
};

typedef struct gauge {
    char name[96];
    char help[160];
    double (*fn)(void *);
    void *ud;
} gauge;

struct sl_metrics {
    pthread_mutex_t lock;
    sl_metrics_shard *shards;
    gauge gauges[MAX_GAUGES];
    int n_gauges;
    struct {
        int (*fn)(void *, sl_buf *);
        void *ud;
    } sections[MAX_GAUGES];
    int n_sections;
};

sl_metrics *sl_metrics_create(void)
{
    sl_metrics *m = sl_calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void free_series(series *s)
{
    for (int i = 0; i < 3; i++)
        sl_free(s->labels[i]);
    sl_free(s);
}

void sl_metrics_destroy(sl_metrics *m)
{
    if (!m)
        return;
    sl_metrics_shard *sh = m->shards;
    while (sh) {
        sl_metrics_shard *n = sh->next;
        for (size_t i = 0; i < sh->cap; i++) {
            series *s = sh->tab[i];
            while (s) {
                series *x = s->next;
                free_series(s);
                s = x;
            }
        }
        sl_free(sh->tab);
        pthread_mutex_destroy(&sh->lock);
        sl_free(sh);
        sh = n;
    }
    pthread_mutex_destroy(&m->lock);
    sl_free(m);
}

sl_metrics_shard *sl_metrics_shard_new(sl_metrics *m)
{
    sl_metrics_shard *s = sl_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 256;
    s->tab = sl_calloc(s->cap, sizeof *s->tab);
    if (!s->tab) {
        sl_free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_lock(&m->lock);
    s->next = m->shards;
    m->shards = s;
    pthread_mutex_unlock(&m->lock);
    return s;
}

static uint64_t key_hash(sl_metric_id id, const char *const l[3])
{
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 3; i++)
        h = sl_hash64(l[i], strlen(l[i]), h + (uint64_t)i);
    return h;
}

static bool same_key(const series *s, sl_metric_id id, const char *const l[3])
{
    return s->id == id && !strcmp(s->labels[0], l[0]) && !strcmp(s->labels[1], l[1]) &&
           !strcmp(s->labels[2], l[2]);
}

/* Finds or creates a series; the shard lock is held. */
static series *lookup(sl_metrics_shard *sh, sl_metric_id id, const char *l1, const char *l2, const char *l3)
{
    const char *l[3] = {l1 ? l1 : "", l2 ? l2 : "", l3 ? l3 : ""};
    char trunc[3][MAX_LABEL_BYTES + 1];
    for (int i = 0; i < 3; i++) {
        if (strlen(l[i]) > MAX_LABEL_BYTES) {
            memcpy(trunc[i], l[i], MAX_LABEL_BYTES);
            trunc[i][MAX_LABEL_BYTES] = 0;
            l[i] = trunc[i];
        }
    }
    if (sh->n >= MAX_SERIES_PER_SHARD) {
        /* fold new label sets into one overflow series per family */
        static const char *const other[3] = {"other", "other", "other"};
        uint64_t h = key_hash(id, l) & (sh->cap - 1);
        for (series *s = sh->tab[h]; s; s = s->next)
            if (same_key(s, id, l))
                return s;
        for (int i = 0; i < 3; i++)
            l[i] = other[i];
    }
    size_t h = key_hash(id, l) & (sh->cap - 1);
    for (series *s = sh->tab[h]; s; s = s->next)
        if (same_key(s, id, l))
            return s;
    series *s = sl_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->id = id;
    for (int i = 0; i < 3; i++) {
        s->labels[i] = sl_strdup(l[i]);
        if (!s->labels[i]) {
            free_series(s);
            return NULL;
        }
    }
    s->next = sh->tab[h];
    sh->tab[h] = s;
    sh->n++;
    return s;
}

void sl_metrics_add(sl_metrics_shard *sh, sl_metric_id id, const char *l1, const char *l2, const char *l3, double v)
{
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    series *s = lookup(sh, id, l1, l2, l3);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&sh->lock);
}

/* Adds one observation to s; shard lock held. */
static void observe_locked(series *s, double v)
{
    s->value += v;
    s->count++;
    for (int i = 0; i < N_BUCKETS; i++)
        if (v <= buckets[i]) {
            s->bucket[i]++;
            break;
        }
}

void sl_metrics_observe(sl_metrics_shard *sh, sl_metric_id id, const char *l1, const char *l2, const char *l3,
                        double v)
{
    if (!sh || !(v >= 0))
        return;
    pthread_mutex_lock(&sh->lock);
    series *s = lookup(sh, id, l1, l2, l3);
    if (s)
        observe_locked(s, v);
    pthread_mutex_unlock(&sh->lock);
}

/* A handle is the series node itself: nodes are allocated one by one and
 * freed only with the registry, so the pointer stays valid. */
sl_metrics_series *sl_metrics_series_get(sl_metrics_shard *sh, sl_metric_id id, const char *l1,
                                         const char *l2, const char *l3)
{
    if (!sh)
        return NULL;
    pthread_mutex_lock(&sh->lock);
    series *s = lookup(sh, id, l1, l2, l3);
    pthread_mutex_unlock(&sh->lock);
    return (sl_metrics_series *)s;
}

void sl_metrics_observe_series(sl_metrics_shard *sh, sl_metrics_series *ser, double v)
{
    sl_metrics_apply(sh, &(sl_metrics_update){ser, v, true}, 1);
}

void sl_metrics_add_series(sl_metrics_shard *sh, sl_metrics_series *ser, double v)
{
    sl_metrics_apply(sh, &(sl_metrics_update){ser, v, false}, 1);
}

void sl_metrics_apply(sl_metrics_shard *sh, const sl_metrics_update *u, size_t n)
{
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < n; i++) {
        series *s = (series *)u[i].series;
        if (!s)
            continue;
        if (!u[i].observe)
            s->value += u[i].v;
        else if (u[i].v >= 0)
            observe_locked(s, u[i].v);
    }
    pthread_mutex_unlock(&sh->lock);
}

int sl_metrics_gauge_fn(sl_metrics *m, const char *name, const char *help, double (*fn)(void *), void *ud)
{
    pthread_mutex_lock(&m->lock);
    if (m->n_gauges >= MAX_GAUGES) {
        pthread_mutex_unlock(&m->lock);
        return SL_EFULL;
    }
    gauge *g = &m->gauges[m->n_gauges++];
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->help, sizeof g->help, "%s", help);
    g->fn = fn;
    g->ud = ud;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int sl_metrics_section_fn(sl_metrics *m, int (*fn)(void *ud, sl_buf *out), void *ud)
{
    pthread_mutex_lock(&m->lock);
    if (m->n_sections >= MAX_GAUGES) {
        pthread_mutex_unlock(&m->lock);
        return SL_EFULL;
    }
    m->sections[m->n_sections].fn = fn;
    m->sections[m->n_sections].ud = ud;
    m->n_sections++;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* ---- scrape: merge all shards into one table, then print ---- */

typedef struct merged {
    series **tab;
    size_t cap;
} merged;

static int merge_one(merged *mg, const series *s)
{
    const char *l[3] = {s->labels[0], s->labels[1], s->labels[2]};
    size_t h = key_hash(s->id, l) & (mg->cap - 1);
    series *t;
    for (t = mg->tab[h]; t; t = t->next)
        if (same_key(t, s->id, l))
            break;
    if (!t) {
        t = sl_calloc(1, sizeof *t);
        if (!t)
            return SL_ENOMEM;
        t->id = s->id;
        for (int i = 0; i < 3; i++)
            t->labels[i] = sl_strdup(s->labels[i]);
        if (!t->labels[0] || !t->labels[1] || !t->labels[2]) {
            free_series(t);
            return SL_ENOMEM;
        }
        t->next = mg->tab[h];
        mg->tab[h] = t;
    }
    t->value += s->value;
    t->count += s->count;
    for (int i = 0; i < N_BUCKETS; i++)
        t->bucket[i] += s->bucket[i];
    return 0;
}

static void merged_free(merged *mg)
{
    for (size_t i = 0; i < mg->cap; i++) {
        series *s = mg->tab[i];
        while (s) {
            series *n = s->next;
            free_series(s);
            s = n;
        }
    }
    sl_free(mg->tab);
}

static int merge_all(sl_metrics *m, merged *mg)
{
    mg->cap = 1024;
    mg->tab = sl_calloc(mg->cap, sizeof *mg->tab);
    if (!mg->tab)
        return SL_ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (sl_metrics_shard *sh = m->shards; sh && !rc; sh = sh->next) {
        pthread_mutex_lock(&sh->lock);
        for (size_t i = 0; i < sh->cap && !rc; i++)
            for (series *s = sh->tab[i]; s && !rc; s = s->next)
                rc = merge_one(mg, s);
        pthread_mutex_unlock(&sh->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int put_escaped(sl_buf *out, const char *v)
{
    int rc = 0;
    for (const char *p = v; *p && !rc; p++) {
        if (*p == '\\')
            rc = sl_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            rc = sl_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            rc = sl_buf_append(out, "\\n", 2);
        else
            rc = sl_buf_append_char(out, *p);
    }
    return rc;
}

int sl_metrics_put_label_value(sl_buf *out, const char *v) { return put_escaped(out, v ? v : ""); }

static int put_labels(sl_buf *out, const family *f, const series *s, const char *le)
{
    int rc = 0, first = 1;
    for (int i = 0; i < 3 && !rc; i++) {
        if (!f->labels[i])
            continue;
        rc = sl_buf_appendf(out, "%s%s=\"", first ? "{" : ",", f->labels[i]);
        if (!rc)
            rc = put_escaped(out, s->labels[i]);
        if (!rc)
            rc = sl_buf_append_char(out, '"');
        first = 0;
    }
    if (!rc && le)
        rc = sl_buf_appendf(out, "%sle=\"%s\"", first ? "{" : ",", le);
    if (!rc && (!first || le))
        rc = sl_buf_append_char(out, '}');
    return rc;
}

static void fmt_double(char *b, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(b, n, "%.0f", v);
    else
        snprintf(b, n, "%.9g", v);
}

int sl_metrics_render(sl_metrics *m, sl_buf *out)
{
    merged mg;
    int rc = merge_all(m, &mg);
    for (int id = 0; id < SL_M__COUNT && !rc; id++) {
        const family *f = &families[id];
        rc = sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                            f->kind == KIND_COUNTER ? "counter" : "histogram");
        for (size_t i = 0; i < mg.cap && !rc; i++) {
            for (series *s = mg.tab[i]; s && !rc; s = s->next) {
                if ((int)s->id != id)
                    continue;
                char num[64];
                if (f->kind == KIND_COUNTER) {
                    rc = sl_buf_append_str(out, f->name);
                    if (!rc)
                        rc = put_labels(out, f, s, NULL);
                    fmt_double(num, sizeof num, s->value);
                    if (!rc)
                        rc = sl_buf_appendf(out, " %s\n", num);
                    continue;
                }
                uint64_t cum = 0;
                for (int b = 0; b <= N_BUCKETS && !rc; b++) {
                    char le[32];
                    if (b < N_BUCKETS) {
                        cum += s->bucket[b];
                        snprintf(le, sizeof le, "%g", buckets[b]);
                    } else {
                        cum = s->count;
                        snprintf(le, sizeof le, "+Inf");
                    }
                    rc = sl_buf_appendf(out, "%s_bucket", f->name);
                    if (!rc)
                        rc = put_labels(out, f, s, le);
                    if (!rc)
                        rc = sl_buf_appendf(out, " %llu\n", (unsigned long long)cum);
                }
                fmt_double(num, sizeof num, s->value);
                if (!rc)
                    rc = sl_buf_appendf(out, "%s_sum", f->name);
                if (!rc)
                    rc = put_labels(out, f, s, NULL);
                if (!rc)
                    rc = sl_buf_appendf(out, " %s\n%s_count", num, f->name);
                if (!rc)
                    rc = put_labels(out, f, s, NULL);
                if (!rc)
                    rc = sl_buf_appendf(out, " %llu\n", (unsigned long long)s->count);
            }
        }
    }
    if (!rc) {
        pthread_mutex_lock(&m->lock);
        int ng = m->n_gauges;
        gauge g[MAX_GAUGES];
        memcpy(g, m->gauges, sizeof(gauge) * (size_t)ng);
        pthread_mutex_unlock(&m->lock);
        for (int i = 0; i < ng && !rc; i++) {
            char num[64];
            fmt_double(num, sizeof num, g[i].fn(g[i].ud));
            rc = sl_buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", g[i].name, g[i].help, g[i].name,
                                g[i].name, num);
        }
    }
    if (!rc) {
        pthread_mutex_lock(&m->lock);
        int ns = m->n_sections;
        pthread_mutex_unlock(&m->lock);
        for (int i = 0; i < ns && !rc; i++)
            rc = m->sections[i].fn(m->sections[i].ud, out);
    }
    if (mg.tab)
        merged_free(&mg);
    return rc;
}

double sl_metrics_sum(sl_metrics *m, sl_metric_id id, const char *l1)
{
    double total = 0;
    pthread_mutex_lock(&m->lock);
    for (sl_metrics_shard *sh = m->shards; sh; sh = sh->next) {
        pthread_mutex_lock(&sh->lock);
        for (size_t i = 0; i < sh->cap; i++)
            for (series *s = sh->tab[i]; s; s = s->next)
                if (s->id == id && (!l1 || !strcmp(s->labels[0], l1)))
                    total += families[id].kind == KIND_COUNTER ? s->value : (double)s->count;
        pthread_mutex_unlock(&sh->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return total;
}
