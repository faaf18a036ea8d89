/*
 * obs: metrics and the access log.
 *
 * Metrics: a fixed set of families (below), each with up to three labels.
 * Every I/O worker records into its own shard, under the shard's own lock
 * (so recording is uncontended); a scrape merges all shards into Prometheus
 * text format. Gauges are read from callbacks at scrape time. The number of
 * series per shard is capped so that label values from outside cannot grow
 * memory without bound; past the cap a series folds into label "other".
 */
#ifndef SL_OBS_H
#define SL_OBS_H

#include "core/core.h"

typedef enum {
    SL_M_REQUESTS = 0,     /* counter  sluice_requests_total{model,backend,status} */
    SL_M_DURATION,         /* histogram sluice_request_duration_seconds{model} */
    SL_M_TTFT,             /* histogram sluice_time_to_first_token_seconds{model} */
    SL_M_ITL,              /* histogram sluice_inter_token_latency_seconds{model} */
    SL_M_ATTEMPTS,         /* counter  sluice_upstream_attempts_total{backend,outcome} */
    SL_M_RETRIES,          /* counter  sluice_upstream_retries_total{model} */
    SL_M_FALLBACKS,        /* counter  sluice_fallbacks_total{model,to} */
    SL_M_TOKENS,           /* counter  sluice_tokens_total{model,kind} kind=prompt|completion */
    SL_M_REJECTED,         /* counter  sluice_rejected_total{reason} */
    SL_M_QUEUE_WAIT,       /* histogram sluice_queue_wait_seconds{model}: admitted requests' time in the queue */
    SL_M__COUNT
} sl_metric_id;

typedef struct sl_metrics sl_metrics;
typedef struct sl_metrics_shard sl_metrics_shard;

/* Returns a new registry or NULL. */
sl_metrics *sl_metrics_create(void);
/* Frees the registry and all its shards. */
void sl_metrics_destroy(sl_metrics *m);
/* Returns a new shard owned by the registry (freed with it), or NULL. */
sl_metrics_shard *sl_metrics_shard_new(sl_metrics *m);
/* Adds v to a counter. Label values may be NULL (treated as ""). */
void sl_metrics_add(sl_metrics_shard *s, sl_metric_id id, const char *l1, const char *l2, const char *l3, double v);
/* Records one observation into a histogram. */
void sl_metrics_observe(sl_metrics_shard *s, sl_metric_id id, const char *l1, const char *l2, const char *l3,
                        double v);
/* One label set of one family in one shard: a handle that skips the label
 * lookup of sl_metrics_observe on hot paths (the inter-token latency is
 * observed once per streamed chunk). Valid as long as the registry. */
typedef struct sl_metrics_series sl_metrics_series;
/* Returns the series of (id, labels) in shard s, created when new (the
 * same fold into "other" past the cap as sl_metrics_observe), or NULL when
 * out of memory. */
sl_metrics_series *sl_metrics_series_get(sl_metrics_shard *s, sl_metric_id id, const char *l1,
                                         const char *l2, const char *l3);
/* Records one histogram observation into a series of shard s (from
 * sl_metrics_series_get on the same shard). NULL ser is a no-op. */
void sl_metrics_observe_series(sl_metrics_shard *s, sl_metrics_series *ser, double v);
/* Adds v to a counter series of shard s (from sl_metrics_series_get on the
 * same shard). NULL ser is a no-op. */
void sl_metrics_add_series(sl_metrics_shard *s, sl_metrics_series *ser, double v);
/* One update of a batch: a counter add, or a histogram observation when
 * observe is set. */
typedef struct sl_metrics_update {
    sl_metrics_series *series; /* from sl_metrics_series_get on the same shard; NULL: skipped */
    double v;
    bool observe;
} sl_metrics_update;
/* Applies n updates to shard s under one lock (the per-request counters
 * take one lock round trip instead of one each). */
void sl_metrics_apply(sl_metrics_shard *s, const sl_metrics_update *u, size_t n);
/* Registers a gauge read at scrape time: name must be a valid metric name; fn is called from the scraping thread. */
int sl_metrics_gauge_fn(sl_metrics *m, const char *name, const char *help, double (*fn)(void *ud), void *ud);
/* Registers a section written at scrape time after the gauges: fn appends
 * complete metric families (HELP, TYPE, samples) to out and returns 0 or an
 * SL_E* code. fn runs on the scraping thread. Returns 0 or SL_EFULL. */
int sl_metrics_section_fn(sl_metrics *m, int (*fn)(void *ud, sl_buf *out), void *ud);
/* Appends v escaped for a label value (backslash, quote, newline). Returns 0 or SL_ETOOBIG. */
int sl_metrics_put_label_value(sl_buf *out, const char *v);
/* Renders every family in Prometheus text exposition format 0.0.4. */
int sl_metrics_render(sl_metrics *m, sl_buf *out);
/* Sum of a counter over all shards and label sets whose first label equals l1 (NULL = any); for tests. */
double sl_metrics_sum(sl_metrics *m, sl_metric_id id, const char *l1);

#endif
