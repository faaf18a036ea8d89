/* Unit tests for loadgen's pure parts: percentiles, summary math, error
 * classes, SSE accounting and the JSON report. */
#include "loadgen/loadgen.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

static void test_percentile_nearest_rank(void)
{
    /* 1..100: the p-th percentile by nearest rank is exactly p */
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i + 1;
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 50), 50, 0);
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 90), 90, 0);
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 99), 99, 0);
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 100), 100, 0);
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 0), 1, 0);
    EXPECT_NEAR(sl_loadgen_percentile(v, 100, 99.9), 100, 0);
    /* small n: ceil(0.5*5)=3rd, ceil(0.9*5)=5th, ceil(0.2*5)=1st */
    double w[5] = {10, 20, 30, 40, 50};
    EXPECT_NEAR(sl_loadgen_percentile(w, 5, 50), 30, 0);
    EXPECT_NEAR(sl_loadgen_percentile(w, 5, 90), 50, 0);
    EXPECT_NEAR(sl_loadgen_percentile(w, 5, 20), 10, 0);
    EXPECT_NEAR(sl_loadgen_percentile(w, 5, 21), 20, 0);
    /* one sample and none */
    double one = 7.5;
    EXPECT_NEAR(sl_loadgen_percentile(&one, 1, 99), 7.5, 0);
    EXPECT_NEAR(sl_loadgen_percentile(NULL, 0, 50), 0, 0);
}

static void test_dist_sorts_and_summarizes(void)
{
    double v[] = {5, 1, 4, 2, 3, 100, 6, 7, 8, 9};
    sl_loadgen_dist d;
    sl_loadgen_dist_compute(v, 10, &d);
    EXPECT_EQ_UINT(d.n, 10);
    EXPECT_NEAR(d.min, 1, 0);
    EXPECT_NEAR(d.max, 100, 0);
    EXPECT_NEAR(d.mean, 14.5, 1e-12);
    EXPECT_NEAR(d.p50, 5, 0);
    EXPECT_NEAR(d.p90, 9, 0);
    EXPECT_NEAR(d.p99, 100, 0);
    sl_loadgen_dist_compute(NULL, 0, &d);
    EXPECT_EQ_UINT(d.n, 0);
    EXPECT_NEAR(d.p99, 0, 0);
}

static void test_classify(void)
{
    EXPECT_EQ_INT(sl_loadgen_classify(0, 200, false, false, false), SL_LOADGEN_OK);
    EXPECT_EQ_INT(sl_loadgen_classify(0, 200, true, true, false), SL_LOADGEN_OK);
    EXPECT_EQ_INT(sl_loadgen_classify(0, 200, true, false, false), SL_LOADGEN_STREAM_ERROR);
    EXPECT_EQ_INT(sl_loadgen_classify(SL_EIO, 200, true, false, false), SL_LOADGEN_STREAM_ERROR);
    EXPECT_EQ_INT(sl_loadgen_classify(0, 200, true, true, true), SL_LOADGEN_STREAM_ERROR);
    EXPECT_EQ_INT(sl_loadgen_classify(0, 429, true, false, false), SL_LOADGEN_HTTP_4XX);
    EXPECT_EQ_INT(sl_loadgen_classify(0, 503, false, false, false), SL_LOADGEN_HTTP_5XX);
    EXPECT_EQ_INT(sl_loadgen_classify(SL_ECANCELED, 0, false, false, false), SL_LOADGEN_CONNECT);
    EXPECT_EQ_INT(sl_loadgen_classify(SL_ETIMEDOUT, 200, true, false, false), SL_LOADGEN_TIMEOUT);
    EXPECT_EQ_INT(sl_loadgen_classify(SL_EIO, 0, false, false, false), SL_LOADGEN_TRANSPORT);
    EXPECT_EQ_STR(sl_loadgen_class_name(SL_LOADGEN_STREAM_ERROR), "stream_error");
    EXPECT_EQ_STR(sl_loadgen_class_name(SL_LOADGEN_HTTP_5XX), "http_5xx");
}

static void test_sse_accounting(void)
{
    sl_loadgen_sse s;
    sl_loadgen_sse_init(&s);
    const char *stream =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\r\n\r\n"
        ": a comment\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n"
        "data: [DONE]\n\n";
    /* feed in awkward 7-byte pieces: lines split across feeds */
    size_t n = strlen(stream);
    int firsts = 0;
    for (size_t i = 0; i < n; i += 7) {
        EXPECT_EQ_INT(sl_loadgen_sse_feed(&s, stream + i, SL_MIN(7, n - i)), 0);
        firsts += s.first_content;
    }
    EXPECT_EQ_INT(s.content_chunks, 2);
    EXPECT_EQ_INT(firsts, 1);
    EXPECT_EQ_INT(s.usage_tokens, 5);
    EXPECT(s.done);
    EXPECT(!s.error_event);
    sl_loadgen_sse_free(&s);

    /* completions text, an error event, no [DONE] */
    sl_loadgen_sse_init(&s);
    const char *bad = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n";
    EXPECT_EQ_INT(sl_loadgen_sse_feed(&s, bad, strlen(bad)), 0);
    EXPECT_EQ_INT(s.content_chunks, 1);
    EXPECT_EQ_INT(s.usage_tokens, -1);
    EXPECT(s.error_event);
    EXPECT(!s.done);
    sl_loadgen_sse_free(&s);

    /* garbage data line is an error event */
    sl_loadgen_sse_init(&s);
    EXPECT_EQ_INT(sl_loadgen_sse_feed(&s, "data: {nope\n", 12), 0);
    EXPECT(s.error_event);
    sl_loadgen_sse_free(&s);
}

static void test_stats_and_summary(void)
{
    sl_loadgen_stats st;
    sl_loadgen_stats_init(&st);
    st.sent = 6;
    for (int i = 1; i <= 4; i++)
        EXPECT_EQ_INT(sl_loadgen_stats_record(&st, SL_LOADGEN_OK, 200, 10.0 * i, 1.0 * i, 8), 0);
    EXPECT_EQ_INT(sl_loadgen_stats_record(&st, SL_LOADGEN_HTTP_5XX, 503, 1, -1, -1), 0);
    EXPECT_EQ_INT(sl_loadgen_stats_record(&st, SL_LOADGEN_CONNECT, 0, 1, -1, -1), 0);
    st.elapsed_s = 2.0;
    sl_loadgen_summary sum;
    sl_loadgen_summarize(&st, &sum);
    EXPECT_EQ_INT(sum.completed, 6);
    EXPECT_EQ_INT(sum.ok, 4);
    EXPECT_EQ_INT(sum.errors, 2);
    EXPECT_NEAR(sum.throughput_rps, 3.0, 1e-12);
    EXPECT_EQ_INT(sum.output_tokens, 32);
    EXPECT_NEAR(sum.tokens_per_s, 16.0, 1e-12);
    EXPECT_NEAR(sum.latency.p50, 20, 0);   /* errors are not latency samples */
    EXPECT_NEAR(sum.latency.max, 40, 0);
    EXPECT_NEAR(sum.latency.mean, 25, 1e-12);
    EXPECT_NEAR(sum.ttft.p99, 4, 0);
    EXPECT_EQ_INT(st.by_status[503], 1);

    sl_loadgen_opts o;
    sl_loadgen_opts_default(&o);
    o.url = "http://x:1";
    o.stream = true;
    sl_buf b;
    sl_buf_init(&b, 65536);
    EXPECT_EQ_INT(sl_loadgen_report_json(&o, &st, &sum, &b), 0);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    EXPECT(j != NULL);
    EXPECT_EQ_INT(json_integer_value(json_object_get(j, "requests_sent")), 6);
    EXPECT_EQ_INT(json_integer_value(json_object_get(j, "errors_total")), 2);
    EXPECT_EQ_STR(json_string_value(json_object_get(j, "mode")), "closed");
    json_t *errs = json_object_get(j, "errors");
    EXPECT_EQ_INT(json_integer_value(json_object_get(errs, "http_5xx")), 1);
    EXPECT_EQ_INT(json_integer_value(json_object_get(errs, "connect")), 1);
    EXPECT_EQ_INT(json_integer_value(json_object_get(json_object_get(errs, "status"), "503")), 1);
    EXPECT_NEAR(json_real_value(json_object_get(json_object_get(j, "latency_ms"), "p90")), 40, 1e-9);
    EXPECT_NEAR(json_number_value(json_object_get(j, "throughput_rps")), 3.0, 1e-9);
    json_decref(j);

    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_loadgen_report_text(&o, &st, &sum, &b), 0);
    EXPECT_CONTAINS(b.data, "closed loop, concurrency 8");
    EXPECT_CONTAINS(b.data, "http_5xx");
    EXPECT_CONTAINS(b.data, "status 503");
    sl_buf_free(&b);
    sl_loadgen_stats_free(&st);
}

static void test_run_rejects_bad_options(void)
{
    sl_loadgen_opts o;
    sl_loadgen_opts_default(&o);
    sl_loadgen_stats st;
    sl_loadgen_stats_init(&st);
    char err[256] = "";
    o.url = "ftp://x";
    EXPECT_EQ_INT(sl_loadgen_run(&o, &st, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "--url");
    o.url = "http://127.0.0.1:1";
    o.body_extra = "[1]";
    o.requests = 1;
    EXPECT_EQ_INT(sl_loadgen_run(&o, &st, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "--body-extra");
    EXPECT_EQ_INT(st.sent, 0);
    sl_loadgen_stats_free(&st);
}

static void test_header_check(void)
{
    char err[256];
    EXPECT_EQ_INT(sl_loadgen_header_check("x-portkey-provider: openai", err, sizeof err), 0);
    EXPECT_EQ_INT(sl_loadgen_header_check("X-Empty:", err, sizeof err), 0);
    err[0] = 0;
    EXPECT_EQ_INT(sl_loadgen_header_check("no colon here", err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "offset 2");
    EXPECT_EQ_INT(sl_loadgen_header_check(": value", err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "offset 0");
    EXPECT_EQ_INT(sl_loadgen_header_check("X-A: b\r\nX-Injected: 1", err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "CR or LF at offset 6");
    EXPECT_EQ_INT(sl_loadgen_header_check("", err, sizeof err), SL_EINVAL);
    EXPECT_EQ_INT(sl_loadgen_header_check(NULL, err, sizeof err), SL_EINVAL);
    static char big[SL_LOADGEN_MAX_HEADER_LEN + 8];
    memset(big, 'a', sizeof big - 1);
    big[1] = ':';
    EXPECT_EQ_INT(sl_loadgen_header_check(big, err, sizeof err), SL_EINVAL);
    big[SL_LOADGEN_MAX_HEADER_LEN] = 0;
    EXPECT_EQ_INT(sl_loadgen_header_check(big, err, sizeof err), 0);
}

/* One-shot HTTP server: keeps the head of the first request it gets and
 * answers a fixed chat completion. */
typedef struct one_shot {
    int lfd;
    char req[8192];
    size_t len;
} one_shot;

static void *one_shot_main(void *arg)
{
    one_shot *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    while (s->len < sizeof s->req - 1) {
        ssize_t n = read(fd, s->req + s->len, sizeof s->req - 1 - s->len);
        if (n <= 0)
            break;
        s->len += (size_t)n;
        s->req[s->len] = 0;
        const char *eoh = strstr(s->req, "\r\n\r\n");
        const char *cl = strstr(s->req, "Content-Length: ");
        if (!cl)
            cl = strstr(s->req, "content-length: ");
        if (eoh && cl && s->len >= (size_t)(eoh + 4 - s->req) + (size_t)atol(cl + 16))
            break;
    }
    static const char body[] = "{\"choices\":[],\"usage\":{\"completion_tokens\":3}}";
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    if (write(fd, resp, (size_t)n) < 0)
        s->len = 0;
    close(fd);
    return NULL;
}

static void test_run_sends_extra_headers(void)
{
    one_shot s = {.lfd = socket(AF_INET, SOCK_STREAM, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    EXPECT_EQ_INT(bind(s.lfd, (struct sockaddr *)&a, sizeof a), 0);
    EXPECT_EQ_INT(listen(s.lfd, 4), 0);
    EXPECT_EQ_INT(getsockname(s.lfd, (struct sockaddr *)&a, &al), 0);
    pthread_t th;
    EXPECT_EQ_INT(pthread_create(&th, NULL, one_shot_main, &s), 0);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    const char *hdrs[] = {"x-portkey-provider: openai", "X-Trace: abc 123"};
    sl_loadgen_opts o;
    sl_loadgen_opts_default(&o);
    o.url = url;
    o.requests = 1;
    o.concurrency = 1;
    o.timeout_s = 10;
    o.headers = hdrs;
    o.n_headers = 2;
    sl_loadgen_stats st;
    sl_loadgen_stats_init(&st);
    char err[256] = "";
    EXPECT_EQ_INT(sl_loadgen_run(&o, &st, err, sizeof err), 0);
    pthread_join(th, NULL);
    close(s.lfd);
    EXPECT_EQ_INT(st.ok, 1);
    EXPECT_EQ_INT(st.output_tokens, 3);
    EXPECT_CONTAINS(s.req, "POST /v1/chat/completions HTTP/1.1\r\n");
    EXPECT_CONTAINS(s.req, "\r\nx-portkey-provider: openai\r\n");
    EXPECT_CONTAINS(s.req, "\r\nX-Trace: abc 123\r\n");
    sl_loadgen_stats_free(&st);

    /* a bad header is refused before anything is sent */
    const char *bad[] = {"X-Ok: 1", "X-Bad: a\nb"};
    o.headers = bad;
    sl_loadgen_stats_init(&st);
    EXPECT_EQ_INT(sl_loadgen_run(&o, &st, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "CR or LF");
    EXPECT_EQ_INT(st.sent, 0);
    sl_loadgen_stats_free(&st);
}

int main(void)
{
    RUN(test_percentile_nearest_rank);
    RUN(test_dist_sorts_and_summarizes);
    RUN(test_classify);
    RUN(test_sse_accounting);
    RUN(test_stats_and_summary);
    RUN(test_run_rejects_bad_options);
    RUN(test_header_check);
    signal(SIGPIPE, SIG_IGN); /* as src/main.c does: see upstream.h */
    RUN(test_run_sends_extra_headers);
    return TEST_REPORT();
}
