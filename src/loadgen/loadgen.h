/*
 * loadgen: a load generator for any OpenAI-compatible endpoint, behind
 * `sluice bench`.
 *
 * It drives Sluice's own HTTP client (upstream/) on one libuv loop in the
 * calling thread, with keep-alive connection reuse, in one of two modes:
 * closed loop (C requests always in flight) or open loop (a fixed arrival
 * rate; latency is measured from each request's scheduled send time so that a
 * slow server cannot hide queueing: coordinated omission is avoided and no
 * scheduled request is ever skipped). The cost of one request does not grow
 * with the number in flight. The process must ignore SIGPIPE (upstream.h).
 *
 * It owns the samples of one run and their summary. Percentiles are exact:
 * every sample is recorded and sorted (nearest-rank), no histogram.
 * The pure pieces (SSE accounting, error classes, percentiles, summary and
 * both report formats) are public so that unit tests can check them.
 */
#ifndef SL_LOADGEN_H
#define SL_LOADGEN_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SL_LOADGEN_CHAT = 0,
    SL_LOADGEN_COMPLETIONS,
    SL_LOADGEN_EMBEDDINGS,
} sl_loadgen_endpoint;

typedef struct sl_loadgen_opts {
    const char *url;          /* base URL: http://host:port, with or without /v1 */
    const char *model;        /* NULL = "default" */
    const char *api_key;      /* NULL = no Authorization header */
    sl_loadgen_endpoint endpoint;
    int concurrency;          /* closed loop: requests in flight */
    double rps;               /* > 0 selects the open loop at this rate */
    int max_inflight;         /* open loop cap on requests in flight */
    double duration_s;        /* measured run time (after warmup); used when requests == 0 */
    long requests;            /* > 0: send exactly this many (after warmup) */
    double warmup_s;          /* requests scheduled in the first warmup_s are not counted */
    bool stream;
    int max_tokens;           /* <= 0: not sent */
    const char *prompt;       /* NULL = a short default */
    const char *body_extra;   /* JSON object merged into each body, or NULL */
    double timeout_s;         /* per request */
    bool progress;            /* progress bar on stderr */
    const char *const *headers; /* (n_headers) extra request headers "Name: value", or NULL */
    int n_headers;
} sl_loadgen_opts;

#define SL_LOADGEN_MAX_HEADERS 32
#define SL_LOADGEN_MAX_HEADER_LEN 4096

/* Checks one extra header line "Name: value": a non-empty token name, a
 * colon, no CR/LF/NUL, at most SL_LOADGEN_MAX_HEADER_LEN bytes. Returns 0, or
 * SL_EINVAL with the reason in err. */
int sl_loadgen_header_check(const char *h, char *err, size_t err_size);

/* Sets the documented defaults. */
void sl_loadgen_opts_default(sl_loadgen_opts *o);

/* ---- outcome of one request ---- */
typedef enum {
    SL_LOADGEN_OK = 0,
    SL_LOADGEN_HTTP_4XX,
    SL_LOADGEN_HTTP_5XX,
    SL_LOADGEN_CONNECT,
    SL_LOADGEN_TIMEOUT,
    SL_LOADGEN_STREAM_ERROR, /* an SSE error event, or a stream without [DONE] */
    SL_LOADGEN_TRANSPORT,    /* any other transfer failure (reset, bad framing) */
    SL_LOADGEN_CLASS_COUNT
} sl_loadgen_class;

/* Returns the class of a finished transfer. transfer_err: 0 ok, or one of
 * SL_ETIMEDOUT / SL_ECANCELED (connect failed) / SL_EIO (other transport
 * failure); http_status: 0 when no response; streaming: whether the request
 * asked for SSE; stream_done: [DONE] seen; stream_error_event: an error event. */
sl_loadgen_class sl_loadgen_classify(int transfer_err, long http_status, bool streaming,
                                     bool stream_done, bool stream_error_event);
/* Returns the stable name of a class ("ok", "http_4xx", ...). */
const char *sl_loadgen_class_name(sl_loadgen_class c);

/* ---- incremental SSE accounting for one streamed response ---- */
typedef struct sl_loadgen_sse {
    sl_buf line;           /* partial line, bounded */
    long content_chunks;   /* events that carried non-empty content/text */
    long usage_tokens;     /* usage.completion_tokens when present, else -1 */
    bool done;             /* saw data: [DONE] */
    bool error_event;      /* saw an event with an "error" member, or a bad line */
    bool first_content;    /* content_chunks went from 0 to 1 during the last feed */
} sl_loadgen_sse;

void sl_loadgen_sse_init(sl_loadgen_sse *s);
void sl_loadgen_sse_free(sl_loadgen_sse *s);
/* Feeds response bytes. Returns 0, or SL_ETOOBIG when a line exceeds 1 MiB
 * (the state then records an error event). */
int sl_loadgen_sse_feed(sl_loadgen_sse *s, const char *p, size_t n);

/* ---- samples and summary ---- */
typedef struct sl_loadgen_dist {
    double min, mean, p50, p90, p99, max; /* ms; all 0 when there are no samples */
    size_t n;
} sl_loadgen_dist;

/* Exact nearest-rank percentile of sorted[0..n): the smallest value with at
 * least p% of samples <= it. p in [0, 100]; returns 0 when n == 0. */
double sl_loadgen_percentile(const double *sorted, size_t n, double p);
/* Sorts v[0..n) in place and fills d. */
void sl_loadgen_dist_compute(double *v, size_t n, sl_loadgen_dist *d);

/* Counters and samples of a run (only requests outside the warmup). */
typedef struct sl_loadgen_stats {
    long sent, completed, ok;
    long warmup_requests;
    long by_class[SL_LOADGEN_CLASS_COUNT];
    long by_status[600];          /* error responses by HTTP status */
    long output_tokens;
    double *lat_ms;               /* (n_lat) end-to-end latency of ok requests */
    double *ttft_ms;              /* (n_ttft) time to first content, ok requests */
    size_t n_lat, n_ttft, cap_lat, cap_ttft;
    double elapsed_s;             /* measured window: warmup end to the last completion */
} sl_loadgen_stats;

void sl_loadgen_stats_init(sl_loadgen_stats *s);
void sl_loadgen_stats_free(sl_loadgen_stats *s);
/* Records one finished request. ttft_ms < 0: none. Returns 0 or SL_ENOMEM. */
int sl_loadgen_stats_record(sl_loadgen_stats *s, sl_loadgen_class c, long http_status,
                            double latency_ms, double ttft_ms, long output_tokens);

/* Summary derived from stats. */
typedef struct sl_loadgen_summary {
    long sent, completed, ok, errors;
    double elapsed_s;
    double throughput_rps;        /* completed / elapsed */
    double tokens_per_s;          /* output_tokens / elapsed */
    long output_tokens;
    sl_loadgen_dist latency, ttft;
} sl_loadgen_summary;

/* Computes the summary (sorts the sample arrays in place). */
void sl_loadgen_summarize(sl_loadgen_stats *s, sl_loadgen_summary *out);

/* Appends the report as one JSON object (no newline) to out. */
int sl_loadgen_report_json(const sl_loadgen_opts *o, const sl_loadgen_stats *s,
                           const sl_loadgen_summary *sum, sl_buf *out);
/* Appends the human-readable report table to out. */
int sl_loadgen_report_text(const sl_loadgen_opts *o, const sl_loadgen_stats *s,
                           const sl_loadgen_summary *sum, sl_buf *out);

/* Runs the load described by o and fills stats (init'd by the caller, freed
 * by the caller). Returns 0, or SL_EINVAL with a message in err (>= 256
 * bytes) for bad options, or SL_ENOMEM. */
int sl_loadgen_run(const sl_loadgen_opts *o, sl_loadgen_stats *stats, char *err, size_t err_size);

#endif
