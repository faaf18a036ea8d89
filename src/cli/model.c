/* `sluice model info FILE`: validates a GGUF file and prints what it holds. */
#include "cli/cli.h"
#include "engine/gguf/gguf.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice model info FILE\n\n"
                 "Validates a GGUF model file and prints its architecture, size,\n"
                 "tensor types and tokenizer facts. Exits 1 if the file is invalid.\n");
}

/* Prints "label: value" for an integer key, or nothing when absent. */
static void print_u64(const sl_gguf *g, const char *label, const char *key)
{
    uint64_t v;
    int64_t s;
    if (!sl_gguf_get_u64(g, key, &v))
        printf("%-18s %llu\n", label, (unsigned long long)v);
    else if (!sl_gguf_get_i64(g, key, &s))
        printf("%-18s %lld\n", label, (long long)s);
}

/* Prints a string key, non-printable bytes as '?', cut at max bytes. */
static void print_str(const char *label, sl_str s, size_t max)
{
    printf("%-18s ", label);
    size_t n = SL_MIN(s.n, max);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        putchar(c == '\n' ? ' ' : (c >= 0x20 && c != 0x7f) ? c : '?');
    }
    printf("%s\n", s.n > max ? "..." : "");
}

static void print_key_str(const sl_gguf *g, const char *label, const char *key)
{
    sl_str s;
    if (!sl_gguf_get_str(g, key, &s))
        print_str(label, s, 200);
}

static void human_bytes(uint64_t n, char *out, size_t outsz)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024 && u + 1 < SL_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, outsz, "%llu B", (unsigned long long)n);
    else
        snprintf(out, outsz, "%.2f %s", v, units[u]);
}

static int info(const char *path)
{
    sl_gguf *g = NULL;
    char err[512] = "";
    int rc = sl_gguf_open(path, &g, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sluice: %s: %s\n", path, err[0] ? err : sl_strerror(rc));
        return 1;
    }
    char hb[64];
    printf("%-18s %s\n", "file:", path);
    human_bytes(sl_gguf_file_size(g), hb, sizeof hb);
    printf("%-18s %s (%llu bytes)\n", "file size:", hb, (unsigned long long)sl_gguf_file_size(g));
    printf("%-18s %u\n", "gguf version:", sl_gguf_version(g));
    printf("%-18s %u\n", "alignment:", sl_gguf_alignment(g));
    printf("%-18s %zu\n", "metadata keys:", sl_gguf_n_kv(g));

    sl_str arch = {"", 0};
    char archbuf[128] = "";
    if (!sl_gguf_get_str(g, "general.architecture", &arch)) {
        print_str("architecture:", arch, 100);
        snprintf(archbuf, sizeof archbuf, "%.*s", (int)SL_MIN(arch.n, 100), arch.p);
    } else {
        printf("%-18s (missing general.architecture)\n", "architecture:");
    }
    print_key_str(g, "name:", "general.name");

    /* Parameters and per-type totals. */
    uint64_t params = 0, tensor_bytes = 0;
    uint64_t count[SL_GGML_TYPE_LIMIT] = {0}, bytes[SL_GGML_TYPE_LIMIT] = {0};
    for (size_t i = 0; i < sl_gguf_n_tensors(g); i++) {
        const sl_gguf_tensor *t = sl_gguf_tensor_at(g, i);
        params += t->n_elements;
        tensor_bytes += t->n_bytes;
        count[t->type]++;
        bytes[t->type] += t->n_bytes;
    }
    double scaled = (double)params;
    const char *unit = "";
    if (params >= 1000000000ull) {
        scaled /= 1e9;
        unit = "B";
    } else if (params >= 1000000ull) {
        scaled /= 1e6;
        unit = "M";
    } else if (params >= 1000ull) {
        scaled /= 1e3;
        unit = "K";
    }
    printf("%-18s %llu (%.2f%s)\n", "parameters:", (unsigned long long)params, scaled, unit);
    human_bytes(tensor_bytes, hb, sizeof hb);
    printf("%-18s %zu, %s\n", "tensors:", sl_gguf_n_tensors(g), hb);
    for (uint32_t ty = 0; ty < SL_GGML_TYPE_LIMIT; ty++) {
        if (!count[ty])
            continue;
        human_bytes(bytes[ty], hb, sizeof hb);
        printf("  %-16s %llu tensors, %s\n", sl_ggml_type_name(ty), (unsigned long long)count[ty], hb);
    }

    if (archbuf[0]) {
        static const struct { const char *label, *suffix; } arch_keys[] = {
            {"context length:", "context_length"},
            {"embedding length:", "embedding_length"},
            {"layers:", "block_count"},
            {"heads:", "attention.head_count"},
            {"kv heads:", "attention.head_count_kv"},
        };
        char key[256];
        for (size_t i = 0; i < SL_ARRAY_LEN(arch_keys); i++) {
            snprintf(key, sizeof key, "%s.%s", archbuf, arch_keys[i].suffix);
            print_u64(g, arch_keys[i].label, key);
        }
        snprintf(key, sizeof key, "%s.rope.freq_base", archbuf);
        double base;
        if (!sl_gguf_get_f64(g, key, &base))
            printf("%-18s %g\n", "rope freq base:", base);
    }

    print_key_str(g, "tokenizer:", "tokenizer.ggml.model");
    print_key_str(g, "tokenizer pre:", "tokenizer.ggml.pre");
    sl_gguf_arr toks;
    if (!sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks))
        printf("%-18s %llu\n", "vocabulary size:", (unsigned long long)toks.count);
    print_u64(g, "bos token id:", "tokenizer.ggml.bos_token_id");
    print_u64(g, "eos token id:", "tokenizer.ggml.eos_token_id");
    sl_str tmpl;
    if (!sl_gguf_get_str(g, "tokenizer.chat_template", &tmpl))
        print_str("chat template:", tmpl, 80);
    else
        printf("%-18s none\n", "chat template:");
    sl_gguf_close(g);
    return 0;
}

int sl_cmd_model(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "info"))
        return info(argv[2]);
    usage(stderr);
    return 2;
}
