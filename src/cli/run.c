/* `sluice run FILE -p PROMPT ...`: generates text with the local engine and
 * streams it to stdout; `--chat` applies the model's chat template, for one
 * turn with -p or as an interactive loop over stdin lines without it. */
#include "cli/cli.h"
#include "core/core.h"
#include "sluice/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX_LINE 65536
#define RUN_MAX_TURNS 512

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice run FILE [-p PROMPT] [options]\n\n"
            "Generates text from a GGUF model (llama, qwen2) and streams it to stdout.\n\n"
            "  -p, --prompt TEXT    the prompt (required without --chat)\n"
            "  -n, --n-predict N    tokens to generate (default 256; 0 = until the context is full)\n"
            "  --temp T             temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K            default 40 (0 = off)\n"
            "  --top-p P            default 0.95 (1 = off)\n"
            "  --min-p P            default 0.05 (0 = off)\n"
            "  --seed S             random seed (default: random)\n"
            "  --threads N          compute threads (default: all CPUs)\n"
            "  -c, --ctx-size N     context positions (default: min(4096, the model's))\n"
            "  --kv-type T          key/value cache elements: f16 (default) or f32\n"
            "  --chat               apply the chat template; without -p, read turns from stdin\n"
            "  -s, --system TEXT    system message (with --chat)\n"
            "  --stop TEXT          stop string (up to 4)\n\n"
            "Timings go to stderr at the end.\n");
}

static int parse_int(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "sluice run: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_float(const char *opt, const char *v, float *out)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "sluice run: %s expects a number, got '%s'\n", opt, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int write_text(void *user, const char *text, size_t len)
{
    SL_UNUSED(user);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Collects the reply of a chat turn as well as streaming it. */
typedef struct reply {
    sl_buf buf;
} reply;

static int write_and_keep(void *user, const char *text, size_t len)
{
    reply *r = user;
    write_text(NULL, text, len);
    return sl_buf_append(&r->buf, text, len) ? 1 : 0;
}

static void print_timings(const sl_engine_stats *st)
{
    double pm = st->prompt_ms, gm = st->gen_ms;
    int pn = st->prompt_tokens - st->cached_tokens;
    fprintf(stderr, "\n");
    fprintf(stderr, "load time = %10.2f ms\n", st->load_ms);
    fprintf(stderr, "prompt eval time = %10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            pm, pn, pn ? pm / pn : 0.0, pm > 0 ? pn * 1000.0 / pm : 0.0);
    fprintf(stderr, "eval time = %10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            gm, st->gen_tokens, st->gen_tokens ? gm / st->gen_tokens : 0.0,
            gm > 0 ? st->gen_tokens * 1000.0 / gm : 0.0);
}

/* Interactive chat: each stdin line is a user turn; the conversation so far
 * is rendered again each turn and the engine reuses its cached prefix. */
static int chat_loop(sl_engine *e, const char *system, const sl_engine_gen_params *gp)
{
    sl_engine_message msgs[RUN_MAX_TURNS];
    char *owned[RUN_MAX_TURNS];
    size_t n = 0, n_owned = 0;
    int status = 0;
    if (system)
        msgs[n++] = (sl_engine_message){SL_ENGINE_SYSTEM, system};
    char *line = sl_malloc(RUN_MAX_LINE);
    if (!line)
        return 1;
    for (;;) {
        fprintf(stderr, "> ");
        if (!fgets(line, RUN_MAX_LINE, stdin))
            break;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0])
            continue;
        if (n + 2 > RUN_MAX_TURNS) {
            fprintf(stderr, "sluice run: the conversation reached %d messages\n", RUN_MAX_TURNS);
            break;
        }
        char *user = sl_strdup(line);
        if (!user) {
            status = 1;
            break;
        }
        owned[n_owned++] = user;
        msgs[n++] = (sl_engine_message){SL_ENGINE_USER, user};
        char *prompt = NULL, err[512] = "";
        if (sl_engine_chat_prompt(e, msgs, n, &prompt, err, sizeof err)) {
            fprintf(stderr, "sluice run: %s\n", err);
            status = 1;
            break;
        }
        reply r;
        sl_buf_init(&r.buf, (size_t)1 << 24);
        sl_engine_stats st;
        int rc = sl_engine_generate(e, prompt, gp, write_and_keep, &r, &st, err, sizeof err);
        sl_engine_free_string(prompt);
        if (rc) {
            sl_buf_free(&r.buf);
            fprintf(stderr, "\nsluice run: %s\n", err);
            status = 1;
            break;
        }
        print_timings(&st);
        char *text = r.buf.len ? sl_buf_take(&r.buf, NULL) : sl_strdup("");
        sl_buf_free(&r.buf);
        if (!text) {
            status = 1;
            break;
        }
        owned[n_owned++] = text;
        msgs[n++] = (sl_engine_message){SL_ENGINE_ASSISTANT, text};
    }
    for (size_t i = 0; i < n_owned; i++)
        sl_free(owned[i]);
    sl_free(line);
    return status;
}

int sl_cmd_run(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL, *system = NULL;
    bool chat = false;
    sl_engine_params ep;
    sl_engine_params_default(&ep);
    sl_engine_gen_params gp;
    sl_engine_gen_params_default(&gp);
    int n_stop = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--chat")) {
            chat = true;
            continue;
        }
        if (a[0] != '-') {
            if (path) {
                fprintf(stderr, "sluice run: unexpected argument '%s'\n", a);
                return 2;
            }
            path = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sluice run: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long x;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
            system = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (parse_int(a, v, 0, 1 << 20, &x))
                return 2;
            gp.max_tokens = (int32_t)x;
        } else if (!strcmp(a, "--temp")) {
            if (parse_float(a, v, &gp.temperature))
                return 2;
        } else if (!strcmp(a, "--top-k")) {
            if (parse_int(a, v, 0, 1 << 24, &x))
                return 2;
            gp.top_k = (int32_t)x;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(a, v, &gp.top_p))
                return 2;
        } else if (!strcmp(a, "--min-p")) {
            if (parse_float(a, v, &gp.min_p))
                return 2;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            gp.seed = strtoull(v, &end, 10);
            if (errno || end == v || *end) {
                fprintf(stderr, "sluice run: --seed expects an unsigned integer, got '%s'\n", v);
                return 2;
            }
            gp.has_seed = true;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (parse_int(a, v, 1, 256, &x))
                return 2;
            ep.n_threads = (int)x;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (parse_int(a, v, 1, 1 << 20, &x))
                return 2;
            ep.n_ctx = (int)x;
        } else if (!strcmp(a, "--kv-type")) {
            if (strcmp(v, "f16") != 0 && strcmp(v, "f32") != 0) {
                fprintf(stderr, "sluice run: --kv-type expects f16 or f32, got '%s'\n", v);
                return 2;
            }
            ep.kv_type = v;
        } else if (!strcmp(a, "--stop")) {
            if (n_stop >= SL_ENGINE_MAX_STOP) {
                fprintf(stderr, "sluice run: at most %d --stop strings\n", SL_ENGINE_MAX_STOP);
                return 2;
            }
            gp.stop[n_stop++] = v;
        } else {
            fprintf(stderr, "sluice run: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path || (!prompt && !chat)) {
        usage(stderr);
        return 2;
    }
    sl_engine *e = NULL;
    char err[1024] = "";
    if (sl_engine_load(path, &ep, &e, err, sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        return 1;
    }
    int status = 0;
    if (chat && !sl_engine_has_chat(e)) {
        fprintf(stderr, "sluice run: %s has no chat template that sluice recognises\n", path);
        status = 1;
    } else if (chat && !prompt) {
        status = chat_loop(e, system, &gp);
    } else {
        char *rendered = NULL;
        if (chat) {
            sl_engine_message msgs[2];
            size_t n = 0;
            if (system)
                msgs[n++] = (sl_engine_message){SL_ENGINE_SYSTEM, system};
            msgs[n++] = (sl_engine_message){SL_ENGINE_USER, prompt};
            if (sl_engine_chat_prompt(e, msgs, n, &rendered, err, sizeof err)) {
                fprintf(stderr, "sluice run: %s\n", err);
                sl_engine_free(e);
                return 1;
            }
            gp.chat = true;
        } else {
            /* the prompt is printed as llama.cpp does, then the continuation */
            write_text(NULL, prompt, strlen(prompt));
        }
        sl_engine_stats st;
        if (sl_engine_generate(e, rendered ? rendered : prompt, &gp, write_text, NULL, &st, err,
                               sizeof err)) {
            fprintf(stderr, "\nsluice run: %s\n", err);
            status = 1;
        } else {
            fputc('\n', stdout);
            print_timings(&st);
        }
        sl_engine_free_string(rendered);
    }
    sl_engine_free(e);
    return status;
}
