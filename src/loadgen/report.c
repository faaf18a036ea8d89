/* loadgen pure parts: classification, SSE accounting, percentiles, summary,
 * reports. See loadgen.h. */
#include "loadgen/loadgen.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSE_MAX_LINE (1024 * 1024)

void sl_loadgen_opts_default(sl_loadgen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->endpoint = SL_LOADGEN_CHAT;
    o->concurrency = 8;
    o->max_inflight = 4096;
    o->duration_s = 10;
    o->timeout_s = 60;
}

int sl_loadgen_header_check(const char *h, char *err, size_t err_size)
{
    /* RFC 9110 token characters, for the header name */
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t n = h ? strnlen(h, SL_LOADGEN_MAX_HEADER_LEN + 1) : 0;
    if (n == 0 || n > SL_LOADGEN_MAX_HEADER_LEN) {
        snprintf(err, err_size, "--header must be 1..%d bytes", SL_LOADGEN_MAX_HEADER_LEN);
        return SL_EINVAL;
    }
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)h[i]) || (h[i] && strchr(tchar, h[i]))))
        i++;
    if (i == 0 || i >= n || h[i] != ':') {
        snprintf(err, err_size, "--header '%.64s' must be 'Name: value' (bad name at offset %zu)", h, i);
        return SL_EINVAL;
    }
    for (; i < n; i++) {
        if (h[i] == '\r' || h[i] == '\n') {
            snprintf(err, err_size, "--header '%.64s' contains CR or LF at offset %zu", h, i);
            return SL_EINVAL;
        }
    }
    return 0;
}

static const char *const k_class_names[SL_LOADGEN_CLASS_COUNT] = {
    "ok", "http_4xx", "http_5xx", "connect", "timeout", "stream_error", "transport"};

const char *sl_loadgen_class_name(sl_loadgen_class c)
{
    return (unsigned)c < SL_LOADGEN_CLASS_COUNT ? k_class_names[c] : "unknown";
}

sl_loadgen_class sl_loadgen_classify(int transfer_err, long http_status, bool streaming,
                                     bool stream_done, bool stream_error_event)
{
    if (transfer_err == SL_ETIMEDOUT)
        return SL_LOADGEN_TIMEOUT;
    if (transfer_err == SL_ECANCELED)
        return SL_LOADGEN_CONNECT;
    if (http_status >= 500)
        return SL_LOADGEN_HTTP_5XX;
    if (http_status >= 400)
        return SL_LOADGEN_HTTP_4XX;
    if (streaming && http_status >= 200 && http_status < 300) {
        /* a cut stream is a stream error whether or not the transport noticed */
        if (stream_error_event || !stream_done)
            return SL_LOADGEN_STREAM_ERROR;
    }
    if (transfer_err != 0 || http_status == 0)
        return SL_LOADGEN_TRANSPORT;
    return SL_LOADGEN_OK;
}

/* ---- SSE ---- */

void sl_loadgen_sse_init(sl_loadgen_sse *s)
{
    memset(s, 0, sizeof *s);
    sl_buf_init(&s->line, SSE_MAX_LINE);
    s->usage_tokens = -1;
}

void sl_loadgen_sse_free(sl_loadgen_sse *s)
{
    sl_buf_free(&s->line);
}

/* Does this chunk object carry content (chat delta.content or completion text)? */
static bool chunk_has_content(const json_t *obj)
{
    const json_t *choices = json_object_get(obj, "choices");
    size_t i;
    const json_t *c;
    json_array_foreach(choices, i, c) {
        const json_t *t = json_object_get(json_object_get(c, "delta"), "content");
        if (!t)
            t = json_object_get(c, "text");
        if (json_is_string(t) && json_string_length(t) > 0)
            return true;
    }
    return false;
}

static void sse_line(sl_loadgen_sse *s, const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return; /* blank separators, comments, event:/id: lines */
    p += 5;
    n -= 5;
    while (n > 0 && *p == ' ') {
        p++;
        n--;
    }
    if (n == 6 && !memcmp(p, "[DONE]", 6)) {
        s->done = true;
        return;
    }
    json_t *obj = json_loadb(p, n, 0, NULL);
    if (!json_is_object(obj)) {
        s->error_event = true;
        json_decref(obj);
        return;
    }
    if (json_object_get(obj, "error"))
        s->error_event = true;
    if (chunk_has_content(obj)) {
        if (s->content_chunks == 0)
            s->first_content = true;
        s->content_chunks++;
    }
    const json_t *ct = json_object_get(json_object_get(obj, "usage"), "completion_tokens");
    if (json_is_integer(ct))
        s->usage_tokens = (long)json_integer_value(ct);
    json_decref(obj);
}

int sl_loadgen_sse_feed(sl_loadgen_sse *s, const char *p, size_t n)
{
    s->first_content = false;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (sl_buf_append(&s->line, p, take) < 0) {
            s->error_event = true;
            sl_buf_reset(&s->line);
            return SL_ETOOBIG;
        }
        if (!nl)
            return 0;
        sse_line(s, s->line.data ? s->line.data : "", s->line.len);
        sl_buf_reset(&s->line);
        p += take + 1;
        n -= take + 1;
    }
    return 0;
}

/* ---- percentiles ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sl_loadgen_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return sorted[0];
    /* nearest rank: ceil(p/100 * n), 1-based; computed in a way that is
     * exact for p given as a whole or decimal percent times an integer n */
    double r = p / 100.0 * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void sl_loadgen_dist_compute(double *v, size_t n, sl_loadgen_dist *d)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    if (n == 0)
        return;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    d->min = v[0];
    d->max = v[n - 1];
    d->mean = sum / (double)n;
    d->p50 = sl_loadgen_percentile(v, n, 50);
    d->p90 = sl_loadgen_percentile(v, n, 90);
    d->p99 = sl_loadgen_percentile(v, n, 99);
}

/* ---- stats ---- */

void sl_loadgen_stats_init(sl_loadgen_stats *s)
{
    memset(s, 0, sizeof *s);
}

void sl_loadgen_stats_free(sl_loadgen_stats *s)
{
    sl_free(s->lat_ms);
    sl_free(s->ttft_ms);
    memset(s, 0, sizeof *s);
}

static int push(double **v, size_t *n, size_t *cap, double x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        double *nv = sl_realloc(*v, nc * sizeof(double));
        if (!nv)
            return SL_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int sl_loadgen_stats_record(sl_loadgen_stats *s, sl_loadgen_class c, long http_status,
                            double latency_ms, double ttft_ms, long output_tokens)
{
    s->completed++;
    if ((unsigned)c < SL_LOADGEN_CLASS_COUNT)
        s->by_class[c]++;
    if (c != SL_LOADGEN_OK) {
        if (http_status >= 400 && http_status < 600)
            s->by_status[http_status]++;
        return 0;
    }
    s->ok++;
    if (output_tokens > 0)
        s->output_tokens += output_tokens;
    int rc = push(&s->lat_ms, &s->n_lat, &s->cap_lat, latency_ms);
    if (rc == 0 && ttft_ms >= 0)
        rc = push(&s->ttft_ms, &s->n_ttft, &s->cap_ttft, ttft_ms);
    return rc;
}

void sl_loadgen_summarize(sl_loadgen_stats *s, sl_loadgen_summary *out)
{
    memset(out, 0, sizeof *out);
    out->sent = s->sent;
    out->completed = s->completed;
    out->ok = s->ok;
    out->errors = s->completed - s->ok;
    out->elapsed_s = s->elapsed_s;
    out->output_tokens = s->output_tokens;
    if (s->elapsed_s > 0) {
        out->throughput_rps = (double)s->completed / s->elapsed_s;
        out->tokens_per_s = (double)s->output_tokens / s->elapsed_s;
    }
    sl_loadgen_dist_compute(s->lat_ms, s->n_lat, &out->latency);
    sl_loadgen_dist_compute(s->ttft_ms, s->n_ttft, &out->ttft);
}

/* ---- reports ---- */

static const char *endpoint_name(sl_loadgen_endpoint e)
{
    return e == SL_LOADGEN_CHAT ? "chat" : e == SL_LOADGEN_COMPLETIONS ? "completions" : "embeddings";
}

static void dist_json(sl_buf *b, const char *name, const sl_loadgen_dist *d)
{
    sl_buf_appendf(b, "\"%s\":{\"n\":%zu,\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
                      "\"p99\":%.3f,\"max\":%.3f}",
                   name, d->n, d->min, d->mean, d->p50, d->p90, d->p99, d->max);
}

int sl_loadgen_report_json(const sl_loadgen_opts *o, const sl_loadgen_stats *s,
                           const sl_loadgen_summary *sum, sl_buf *out)
{
    json_t *url = json_string(o->url ? o->url : "");
    char *url_s = json_dumps(url, JSON_ENCODE_ANY);
    json_decref(url);
    if (!url_s)
        return SL_ENOMEM;
    int rc = sl_buf_appendf(out,
                            "{\"url\":%s,\"endpoint\":\"%s\",\"mode\":\"%s\",\"concurrency\":%d,"
                            "\"rps\":%.3f,\"stream\":%s,\"percentile_method\":\"exact\","
                            "\"requests_sent\":%ld,\"requests_completed\":%ld,\"requests_ok\":%ld,"
                            "\"warmup_requests\":%ld,\"errors_total\":%ld,\"duration_s\":%.3f,"
                            "\"throughput_rps\":%.3f,\"output_tokens\":%ld,\"output_tokens_per_s\":%.3f,",
                            url_s, endpoint_name(o->endpoint), o->rps > 0 ? "open" : "closed",
                            o->concurrency, o->rps, o->stream ? "true" : "false", sum->sent,
                            sum->completed, sum->ok, s->warmup_requests, sum->errors, sum->elapsed_s,
                            sum->throughput_rps, sum->output_tokens, sum->tokens_per_s);
    free(url_s); /* jansson's allocator */
    if (rc < 0)
        return rc;
    dist_json(out, "latency_ms", &sum->latency);
    sl_buf_append_char(out, ',');
    dist_json(out, "ttft_ms", &sum->ttft);
    sl_buf_append_str(out, ",\"errors\":{");
    for (int c = 1; c < SL_LOADGEN_CLASS_COUNT; c++)
        sl_buf_appendf(out, "%s\"%s\":%ld", c > 1 ? "," : "", k_class_names[c], s->by_class[c]);
    sl_buf_append_str(out, ",\"status\":{");
    bool first = true;
    for (int st = 0; st < 600; st++) {
        if (!s->by_status[st])
            continue;
        sl_buf_appendf(out, "%s\"%d\":%ld", first ? "" : ",", st, s->by_status[st]);
        first = false;
    }
    return sl_buf_append_str(out, "}}}");
}

int sl_loadgen_report_text(const sl_loadgen_opts *o, const sl_loadgen_stats *s,
                           const sl_loadgen_summary *sum, sl_buf *out)
{
    sl_buf_appendf(out, "target      %s (%s%s)\n", o->url ? o->url : "", endpoint_name(o->endpoint),
                   o->stream ? ", stream" : "");
    if (o->rps > 0)
        sl_buf_appendf(out, "mode        open loop, %.1f req/s (max in flight %d)\n", o->rps, o->max_inflight);
    else
        sl_buf_appendf(out, "mode        closed loop, concurrency %d\n", o->concurrency);
    sl_buf_appendf(out, "requests    %ld sent, %ld completed, %ld ok, %ld errors", sum->sent,
                   sum->completed, sum->ok, sum->errors);
    if (s->warmup_requests)
        sl_buf_appendf(out, " (+%ld in warmup, not counted)", s->warmup_requests);
    sl_buf_appendf(out, "\nduration    %.2f s\nthroughput  %.1f req/s\n", sum->elapsed_s, sum->throughput_rps);
    if (o->stream || sum->output_tokens > 0)
        sl_buf_appendf(out, "tokens      %ld out, %.1f tok/s\n", sum->output_tokens, sum->tokens_per_s);
    sl_buf_appendf(out, "\n%-12s %10s %10s %10s %10s %10s\n", "ms (exact)", "p50", "p90", "p99", "max", "mean");
    const sl_loadgen_dist *d[2] = {&sum->latency, &sum->ttft};
    const char *names[2] = {"latency", "ttft"};
    for (int i = 0; i < 2; i++)
        sl_buf_appendf(out, "%-12s %10.2f %10.2f %10.2f %10.2f %10.2f\n", names[i], d[i]->p50, d[i]->p90,
                       d[i]->p99, d[i]->max, d[i]->mean);
    if (sum->errors > 0) {
        sl_buf_append_str(out, "\nerrors\n");
        for (int c = 1; c < SL_LOADGEN_CLASS_COUNT; c++)
            if (s->by_class[c])
                sl_buf_appendf(out, "  %-14s %ld\n", k_class_names[c], s->by_class[c]);
        for (int st = 0; st < 600; st++)
            if (s->by_status[st])
                sl_buf_appendf(out, "  status %-7d %ld\n", st, s->by_status[st]);
    }
    return 0;
}
