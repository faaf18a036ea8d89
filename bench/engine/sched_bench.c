/* Aggregate decode throughput of the serving scheduler at 1, 4, 16 and 64
 * concurrent streams.
 *
 * usage: sched_bench MODEL.gguf [THREADS] [TOKENS_PER_STREAM] [PROMPT_TOKENS]
 *
 * For each concurrency c, c greedy requests with distinct short prompts are
 * submitted at once to a scheduler with max_seqs = c; the table shows the
 * generated tokens, the wall time from the first submit to the last DONE, the
 * aggregate tokens/s over that time, and the decode-only rate (generated
 * tokens over the time of the steps that held decode tokens only). A model
 * whose tokenizer has no end token (bench/engine/make_model.c) always runs the
 * full token count. */
#include "engine/sched/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench_req {
    int done;
    int32_t tokens;
    int err;
} bench_req;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done;

static void on_event(void *user, const sl_sched_event *ev)
{
    bench_req *r = user;
    if (ev->kind == SL_SCHED_EV_TEXT)
        return;
    pthread_mutex_lock(&mu);
    r->done = 1;
    r->tokens = ev->completion_tokens;
    r->err = ev->kind == SL_SCHED_EV_ERROR ? ev->err : 0;
    n_done++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sched_bench MODEL.gguf [THREADS] [TOKENS_PER_STREAM] "
                        "[PROMPT_TOKENS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    int n_gen = argc > 3 ? atoi(argv[3]) : 32;
    int n_prompt = argc > 4 ? atoi(argv[4]) : 16;
    if (n_gen < 1 || n_prompt < 1 || n_prompt > 1000) {
        fprintf(stderr, "sched_bench: bad TOKENS_PER_STREAM or PROMPT_TOKENS\n");
        return 2;
    }
    static const int conc[] = {1, 4, 16, 64};
    printf("model %s, threads %d, %d tokens per stream, prompts of ~%d bytes\n", argv[1],
           threads > 0 ? threads : sl_cpu_count(), n_gen, n_prompt);
    printf("%8s %10s %9s %12s %14s %10s\n", "streams", "tokens", "wall_s", "agg_tok/s",
           "decode_tok/s", "prefill_ms");
    for (size_t ci = 0; ci < SL_ARRAY_LEN(conc); ci++) {
        int c = conc[ci];
        sl_sched_opts o;
        sl_sched_opts_default(&o);
        o.model_path = argv[1];
        o.max_seqs = c;
        o.threads = threads;
        o.n_ctx = n_prompt + n_gen + 16;
        sl_sched *s = NULL;
        char err[512] = "";
        if (sl_sched_create(&o, &s, err, sizeof err)) {
            fprintf(stderr, "sched_bench: %s\n", err);
            return 1;
        }
        int st;
        while ((st = sl_sched_state(s, err, sizeof err)) == SL_EAGAIN)
            usleep(10000);
        if (st) {
            fprintf(stderr, "sched_bench: %s\n", err);
            sl_sched_destroy(s);
            return 1;
        }
        bench_req *reqs = calloc((size_t)c, sizeof *reqs);
        char **prompts = calloc((size_t)c, sizeof *prompts);
        n_done = 0;
        uint64_t t0 = sl_now_ns();
        for (int i = 0; i < c; i++) {
            prompts[i] = calloc((size_t)n_prompt + 1, 1);
            for (int k = 0; k < n_prompt; k++)
                prompts[i][k] = (char)('a' + (i * 7 + k * 3) % 26);
            sl_sched_req r;
            sl_sched_req_default(&r);
            r.prompt = prompts[i];
            r.temperature = 0;
            r.max_tokens = n_gen;
            uint64_t id;
            if (sl_sched_submit(s, &r, on_event, &reqs[i], &id, err, sizeof err)) {
                fprintf(stderr, "sched_bench: submit: %s\n", err);
                return 1;
            }
        }
        pthread_mutex_lock(&mu);
        while (n_done < c)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        double wall = (double)(sl_now_ns() - t0) / 1e9;
        int64_t tokens = 0;
        for (int i = 0; i < c; i++) {
            tokens += reqs[i].tokens;
            if (reqs[i].err)
                fprintf(stderr, "sched_bench: request %d failed: %s\n", i,
                        sl_strerror(reqs[i].err));
        }
        sl_sched_stats ss;
        sl_sched_stats_get(s, &ss);
        double dec = ss.decode_ms > 0 ? (double)ss.decode_tokens / (ss.decode_ms / 1000.0) : 0;
        printf("%8d %10lld %9.2f %12.1f %14.1f %10.1f\n", c, (long long)tokens, wall,
               (double)tokens / wall, dec, ss.prefill_ms);
        fflush(stdout);
        sl_sched_destroy(s);
        for (int i = 0; i < c; i++)
            free(prompts[i]);
        free(prompts);
        free(reqs);
    }
    return 0;
}
