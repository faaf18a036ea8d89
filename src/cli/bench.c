/* `sluice bench`: load-test an OpenAI-compatible endpoint (see loadgen/). */
#include "cli/cli.h"
#include "loadgen/loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice bench --url URL [options]\n"
            "  --url URL              base URL of an OpenAI-compatible server (http://host:port[/v1])\n"
            "  --model M              model name sent in each request (default \"default\")\n"
            "  --api-key K            sent as Authorization: Bearer K\n"
            "  --endpoint E           chat | completions | embeddings (default chat)\n"
            "  --concurrency C        closed loop with C requests in flight (default 8)\n"
            "  --rps R                open loop at R requests/s; latency counts from the scheduled time\n"
            "  --max-inflight N       open loop cap on requests in flight (default 4096)\n"
            "  --duration S           measured seconds (default 10)\n"
            "  --requests N           send exactly N requests instead of a duration\n"
            "  --warmup S             seconds at the start excluded from the results (default 0)\n"
            "  --stream               request SSE streaming; TTFT is the first content chunk\n"
            "  --max-tokens N         max_tokens in each request\n"
            "  --prompt TEXT          prompt or user message\n"
            "  --body-extra JSON      object merged into each request body\n"
            "  --header 'K: V'        extra request header (repeatable, at most 32)\n"
            "  --timeout S            per-request timeout in seconds (default 60)\n"
            "  --json                 print one JSON object with all results\n"
            "  --quiet                no progress bar\n"
            "Percentiles are exact (every sample is kept and sorted).\n");
}

static int num_arg(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sluice bench: %s must be a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int sl_cmd_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", 1, 0, 'u'},         {"model", 1, 0, 'm'},      {"api-key", 1, 0, 'k'},
        {"endpoint", 1, 0, 'e'},    {"concurrency", 1, 0, 'c'}, {"rps", 1, 0, 'r'},
        {"max-inflight", 1, 0, 'I'}, {"duration", 1, 0, 'd'},  {"requests", 1, 0, 'n'},
        {"warmup", 1, 0, 'w'},      {"stream", 0, 0, 's'},     {"max-tokens", 1, 0, 'x'},
        {"prompt", 1, 0, 'p'},      {"body-extra", 1, 0, 'b'}, {"timeout", 1, 0, 't'},
        {"header", 1, 0, 'H'},      {"json", 0, 0, 'j'},        {"quiet", 0, 0, 'q'},      {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    sl_loadgen_opts o;
    sl_loadgen_opts_default(&o);
    bool json_out = false, quiet = false;
    const char *headers[SL_LOADGEN_MAX_HEADERS];
    int n_headers = 0;
    int ch;
    double v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case 'u': o.url = optarg; break;
        case 'm': o.model = optarg; break;
        case 'k': o.api_key = optarg; break;
        case 'e':
            if (!strcmp(optarg, "chat"))
                o.endpoint = SL_LOADGEN_CHAT;
            else if (!strcmp(optarg, "completions"))
                o.endpoint = SL_LOADGEN_COMPLETIONS;
            else if (!strcmp(optarg, "embeddings"))
                o.endpoint = SL_LOADGEN_EMBEDDINGS;
            else {
                fprintf(stderr, "sluice bench: --endpoint must be chat, completions or embeddings, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c': if (!(rc = num_arg("--concurrency", optarg, 1, 100000, &v))) o.concurrency = (int)v; break;
        case 'r': rc = num_arg("--rps", optarg, 0.001, 1e7, &o.rps); break;
        case 'I': if (!(rc = num_arg("--max-inflight", optarg, 1, 100000, &v))) o.max_inflight = (int)v; break;
        case 'd': rc = num_arg("--duration", optarg, 0.001, 1e7, &o.duration_s); break;
        case 'n': if (!(rc = num_arg("--requests", optarg, 1, 1e12, &v))) o.requests = (long)v; break;
        case 'w': rc = num_arg("--warmup", optarg, 0, 1e7, &o.warmup_s); break;
        case 's': o.stream = true; break;
        case 'x': if (!(rc = num_arg("--max-tokens", optarg, 1, 1e9, &v))) o.max_tokens = (int)v; break;
        case 'p': o.prompt = optarg; break;
        case 'b': o.body_extra = optarg; break;
        case 't': rc = num_arg("--timeout", optarg, 0.001, 1e6, &o.timeout_s); break;
        case 'H':
            if (n_headers == SL_LOADGEN_MAX_HEADERS) {
                fprintf(stderr, "sluice bench: --header may be given at most %d times\n", SL_LOADGEN_MAX_HEADERS);
                return 2;
            }
            headers[n_headers++] = optarg;
            break;
        case 'j': json_out = true; break;
        case 'q': quiet = true; break;
        case 'h': bench_usage(stdout); return 0;
        default: bench_usage(stderr); return 2;
        }
        if (rc < 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "sluice bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o.url) {
        fprintf(stderr, "sluice bench: --url is required\n");
        bench_usage(stderr);
        return 2;
    }
    o.headers = headers;
    o.n_headers = n_headers;
    o.progress = !quiet && isatty(STDERR_FILENO);

    sl_loadgen_stats st;
    sl_loadgen_stats_init(&st);
    char err[512] = "";
    int rc = sl_loadgen_run(&o, &st, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sluice bench: %s\n", err[0] ? err : sl_strerror(rc));
        sl_loadgen_stats_free(&st);
        return rc == SL_EINVAL ? 2 : 1;
    }
    sl_loadgen_summary sum;
    sl_loadgen_summarize(&st, &sum);
    sl_buf out;
    sl_buf_init(&out, 1024 * 1024);
    if (json_out) {
        sl_loadgen_report_json(&o, &st, &sum, &out);
        sl_buf_append_char(&out, '\n');
    } else {
        sl_loadgen_report_text(&o, &st, &sum, &out);
    }
    fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
    sl_buf_free(&out);
    sl_loadgen_stats_free(&st);
    return 0;
}
