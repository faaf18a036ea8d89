/* `sluice train`: makes the synthetic corpus and its held-out questions, and
 * trains a small llama model on a corpus into a GGUF file (engine/train). */
#include "cli/cli.h"
#include "core/core.h"
#include "engine/train/train.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice train --corpus FILE --out MODEL.gguf [options]\n"
            "       sluice train --make-corpus --out FILE [--seed N] [--size-mb M | --size-kb K]\n"
            "                    [--products N]\n"
            "       sluice train --make-eval FILE [--seed N] [--products N]\n\n"
            "Trains a small llama-architecture chat model on the CPU (byte-level BPE learned\n"
            "from the corpus, ChatML template) and writes it as GGUF for `sluice run`/`serve`.\n\n"
            "  --dim N          embedding width (default 128)\n"
            "  --layers N       transformer blocks (default 4)\n"
            "  --heads N        attention heads (default 4)\n"
            "  --kv-heads N     key/value heads, divides heads (default: heads)\n"
            "  --ff N           feed-forward width (default 384)\n"
            "  --vocab N        BPE vocabulary size, 512..65536 (default 1024)\n"
            "  --seq N          sequence length = context of the model (default 128)\n"
            "  --batch N        sequences per step (default 16)\n"
            "  --steps N        optimizer steps (default 600)\n"
            "  --lr X           peak learning rate (default 3e-3; warm-up then cosine)\n"
            "  --seed N         seed of the initialisation and the data order (default 1)\n"
            "  --threads N      compute threads (default: all CPUs)\n"
            "  --f16            store matrices as F16 (default F32)\n"
            "  --name TEXT      general.name (default sluice-demo)\n"
            "  --eval-every N   steps between validation losses (default 100)\n"
            "  --ckpt FILE      checkpoint file (written every --ckpt-every steps)\n"
            "  --ckpt-every N   default 100\n"
            "  --resume         continue from --ckpt when it exists\n"
            "  --mask-assistant loss only on the assistant's answers (default: every token)\n"
            "  --doc-start      sequences start at a document start (default: anywhere)\n\n"
            "The same seed and thread count give the same model, bit for bit.\n");
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "sluice train: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static void fmt_dur(double s, char *out, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
}

typedef struct prog {
    bool tty;
    int every;
} prog;

static void on_progress(void *user, const sl_train_progress *p)
{
    prog *g = user;
    if (p->phase) {
        fprintf(stderr, "%s%s...\n", g->tty ? "\r\033[K" : "", p->phase);
        return;
    }
    char eta[32], val[32] = "";
    fmt_dur(p->eta_s, eta, sizeof eta);
    if (p->val_loss >= 0)
        snprintf(val, sizeof val, " val %.3f", p->val_loss);
    int width = 20, fill = (int)((double)p->step / p->steps * width);
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    if (g->tty) {
        fprintf(stderr, "\r\033[K[%s] step %d/%d loss %.3f%s lr %.2e %.0f tok/s ETA %s", bar,
                p->step, p->steps, p->loss, val, p->lr, p->tokens_per_s, eta);
        if (p->step == p->steps)
            fputc('\n', stderr);
    } else if (p->val_now || p->step % g->every == 0 || p->step == p->steps) {
        fprintf(stderr, "step %d/%d loss %.3f%s lr %.2e %.0f tok/s ETA %s\n", p->step, p->steps,
                p->loss, val, p->lr, p->tokens_per_s, eta);
    }
    fflush(stderr);
}

static int write_buf(const char *path, const sl_buf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f)) {
        fprintf(stderr, "sluice train: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

int sl_cmd_train(int argc, char **argv)
{
    sl_train_opts o;
    sl_train_opts_default(&o);
    sl_train_corpus_opts co;
    sl_train_corpus_default(&co);
    bool make_corpus = false, kv_set = false;
    const char *make_eval = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
#define INTOPT(flag, lo, hi, dst)                                                                  \
    if (!strcmp(a, flag)) {                                                                        \
        if (parse_long(flag, v, lo, hi, &x))                                                       \
            return 2;                                                                              \
        dst = (int)x;                                                                              \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        INTOPT("--dim", 2, 8192, o.hp.dim)
        INTOPT("--layers", 1, 64, o.hp.n_layer)
        INTOPT("--heads", 1, 1024, o.hp.n_head)
        INTOPT("--ff", 1, 65536, o.hp.n_ff)
        INTOPT("--vocab", SL_TRAIN_MIN_VOCAB, SL_TRAIN_MAX_VOCAB, o.hp.n_vocab)
        INTOPT("--seq", 2, 4096, o.hp.n_ctx)
        INTOPT("--batch", 1, 4096, o.batch)
        INTOPT("--steps", 1, 100000000, o.steps)
        INTOPT("--threads", 0, 1024, o.threads)
        INTOPT("--ckpt-every", 1, 100000000, o.ckpt_every)
        INTOPT("--eval-every", 0, 100000000, o.eval_every)
        INTOPT("--products", 1, 64, co.n_products)
        if (!strcmp(a, "--size-kb")) {
            if (parse_long(a, v, 1, 512 << 10, &x))
                return 2;
            co.size_bytes = (size_t)x << 10;
            i++;
        } else if (!strcmp(a, "--size-mb")) {
            if (parse_long(a, v, 1, 512, &x))
                return 2;
            co.size_bytes = (size_t)x << 20;
            i++;
        } else if (!strcmp(a, "--kv-heads")) {
            if (parse_long(a, v, 1, 1024, &x))
                return 2;
            o.hp.n_head_kv = (int)x;
            kv_set = true;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (parse_long(a, v, 0, LONG_MAX, &x))
                return 2;
            o.seed = co.seed = (uint64_t)x;
            i++;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o.lr = v ? strtof(v, &end) : 0;
            if (!v || *end || !(o.lr > 0) || o.lr > 1) {
                fprintf(stderr, "sluice train: --lr expects a number in (0, 1]\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--corpus") && v) {
            o.corpus_path = v, i++;
        } else if (!strcmp(a, "--out") && v) {
            o.out_path = v, i++;
        } else if (!strcmp(a, "--ckpt") && v) {
            o.ckpt_path = v, i++;
        } else if (!strcmp(a, "--name") && v) {
            o.name = v, i++;
        } else if (!strcmp(a, "--make-eval") && v) {
            make_eval = v, i++;
        } else if (!strcmp(a, "--make-corpus")) {
            make_corpus = true;
        } else if (!strcmp(a, "--resume")) {
            o.resume = true;
        } else if (!strcmp(a, "--mask-assistant")) {
            o.mask_assistant = true;
        } else if (!strcmp(a, "--doc-start")) {
            o.doc_start = true;
        } else if (!strcmp(a, "--f16")) {
            o.f16 = true;
        } else {
            fprintf(stderr, "sluice train: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef INTOPT
    }
    if (!kv_set)
        o.hp.n_head_kv = o.hp.n_head;

    if (make_corpus || make_eval) {
        sl_buf b;
        int rc = 0;
        if (make_corpus) {
            if (!o.out_path) {
                fprintf(stderr, "sluice train: --make-corpus needs --out FILE\n");
                return 2;
            }
            sl_buf_init(&b, co.size_bytes + (1 << 20));
            rc = sl_train_make_corpus(&co, &b);
            if (!rc)
                rc = write_buf(o.out_path, &b) ? SL_EIO : 0;
            else
                fprintf(stderr, "sluice train: making the corpus: %s\n", sl_strerror(rc));
            if (!rc)
                fprintf(stderr, "wrote %s (%zu bytes, %d products, seed %llu)\n", o.out_path,
                        b.len, co.n_products, (unsigned long long)co.seed);
            sl_buf_free(&b);
        }
        if (!rc && make_eval) {
            sl_buf_init(&b, 1 << 20);
            rc = sl_train_make_eval(&co, &b);
            if (!rc)
                rc = write_buf(make_eval, &b) ? SL_EIO : 0;
            else
                fprintf(stderr, "sluice train: making the questions: %s\n", sl_strerror(rc));
            sl_buf_free(&b);
        }
        return rc ? 1 : 0;
    }
    if (!o.corpus_path || !o.out_path) {
        usage(stderr);
        return 2;
    }
    prog g = {.tty = isatty(2), .every = o.steps >= 20 ? o.steps / 20 : 1};
    char err[512];
    double loss = 0;
    uint64_t t0 = sl_now_ms();
    int rc = sl_train_run(&o, on_progress, &g, &loss, err, sizeof err);
    if (rc) {
        fprintf(stderr, "\nsluice train: %s\n", err);
        return 1;
    }
    fprintf(stderr, "wrote %s (final loss %.4f, %.1f s)\n", o.out_path, loss,
            (double)(sl_now_ms() - t0) / 1000.0);
    return 0;
}
