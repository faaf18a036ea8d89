/* The schema: walks the cfg_node tree, checks every key and value, and builds
 * the snapshot. Every problem becomes a diag with the offending node's
 * line:col; walking goes on after an error so that one run reports them all.
 *
 * Secrets: values under api_key / api_keys are never echoed; any other value
 * echoed in a message goes through describe(), which withholds strings that
 * look like credentials; and a final pass scrubs every known secret (literal
 * keys and resolved environment values) from every message. */
#include "config/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Paths in messages ("model_list[3].params.weight") and messages themselves
 * are cut to fit their buffers on purpose: a truncated path still points the
 * user at line:col, which is exact. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define PATH_CAP 160
#define MAX_FALLBACK_RULES 1024
#define MAX_FALLBACK_TARGETS 64
#define MAX_API_KEYS 1024
#define MAX_DURATION_S 86400.0

typedef struct vctx {
    sl_config_diags *d;
    cfg_impl *ci;
    sl_arena *a;            /* the snapshot's arena */
    size_t errors;
    bool oom;
    /* every secret value seen, scrubbed from all messages at the end */
    const char **secrets;
    size_t n_secrets, cap_secrets;
} vctx;

/* ---- messages ---- */

static void vreport(vctx *v, bool is_error, const cfg_node *at, const char *path, const char *fmt, va_list ap)
{
    char msg[448];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (is_error)
        v->errors++;
    if (path && *path)
        sl_config_diag_addf(v->d, is_error, at ? at->line : 0, at ? at->col : 0, "%s: %s", path, msg);
    else
        sl_config_diag_addf(v->d, is_error, at ? at->line : 0, at ? at->col : 0, "%s", msg);
}

static void err(vctx *v, const cfg_node *at, const char *path, const char *fmt, ...) SL_PRINTF(4, 5);
static void err(vctx *v, const cfg_node *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(v, true, at, path, fmt, ap);
    va_end(ap);
}

static void warn(vctx *v, const cfg_node *at, const char *path, const char *fmt, ...) SL_PRINTF(4, 5);
static void warn(vctx *v, const cfg_node *at, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(v, false, at, path, fmt, ap);
    va_end(ap);
}

/* Heuristic for strings that must not be echoed even outside api_key fields
 * (a key pasted into the wrong field): well-known token prefixes, or a long
 * run of token characters mixing letters and digits. */
static bool looks_secret(const char *s, size_t n)
{
    static const char *const prefixes[] = {"sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghs_",
                                           "github_pat_", "xox", "AKIA", "eyJ", "hf_", "glpat-",
                                           "Bearer ", "Basic "};
    for (size_t i = 0; i < SL_ARRAY_LEN(prefixes); i++) {
        size_t pl = strlen(prefixes[i]);
        if (n >= pl + 4 && !strncmp(s, prefixes[i], pl))
            return true;
    }
    if (n < 20 || memmem(s, n, "://", 3) || s[0] == '/' || s[0] == '.')
        return false;
    bool letters = false, digits = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalpha(c))
            letters = true;
        else if (isdigit(c))
            digits = true;
        else if (!strchr("-_.=+/", c))
            return false;
    }
    return letters && digits;
}

/* Writes a short description of a node for "got ..." in messages. */
static void describe(const cfg_node *n, bool secret, char *out, size_t cap)
{
    if (!n) {
        snprintf(out, cap, "nothing");
    } else if (n->kind == CFG_MAP) {
        snprintf(out, cap, "a mapping");
    } else if (n->kind == CFG_SEQ) {
        snprintf(out, cap, "a sequence");
    } else if (sl_config_node_is_null(n)) {
        snprintf(out, cap, "an empty value");
    } else if (secret) {
        snprintf(out, cap, "a value that is not shown because it is a secret");
    } else if (looks_secret(n->text, n->len)) {
        snprintf(out, cap, "a value that looks like a secret (not shown)");
    } else {
        /* quoted, truncated, and with control bytes made visible */
        size_t o = 0, lim = 48;
        if (cap < 8)
            return;
        out[o++] = '"';
        for (size_t i = 0; i < n->len && o + 5 < cap; i++) {
            if (i == lim) {
                memcpy(out + o, "...", 3);
                o += 3;
                break;
            }
            unsigned char c = (unsigned char)n->text[i];
            out[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
        }
        out[o++] = '"';
        out[o] = '\0';
    }
}

/* Writes a key's text for a message (keys are echoed, but never credentials). */
static void describe_key(const cfg_node *k, char *out, size_t cap)
{
    describe(k, false, out, cap);
}

/* Case-insensitive edit distance (Levenshtein plus adjacent swaps, the
 * "optimal string alignment" variant), capped: names are short. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t prev2[64], prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev2[j] = prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            /* a swap of two neighbours ("idel" for "idle") counts as one edit */
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        memcpy(prev2, prev, (lb + 1) * sizeof prev[0]);
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* Returns the candidate closest to word if close enough to be a likely typo. */
static const char *suggest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1, wl = strlen(word);
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    size_t limit = wl <= 4 ? 1 : wl <= 8 ? 2 : 3;
    return best && best_d <= limit ? best : NULL;
}

/* ---- value readers: each reports its own error and returns false ---- */

static char *dup_text(vctx *v, const cfg_node *n)
{
    char *s = sl_arena_strndup(v->a, n->text, n->len);
    if (!s)
        v->oom = true;
    return s;
}

static bool is_scalar_value(const cfg_node *n)
{
    return n && n->kind == CFG_SCALAR && !sl_config_node_is_null(n) && !n->has_nul;
}

static bool get_str(vctx *v, const cfg_node *n, const char *path, const char *what, const char **out)
{
    if (!is_scalar_value(n) || n->len == 0) {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path, "expected %s, got %s", what, got);
        return false;
    }
    *out = dup_text(v, n);
    return *out != NULL;
}

static bool parse_long(const char *s, long long *out)
{
    errno = 0;
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return false;
    long long x = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = x;
    return true;
}

static bool get_int(vctx *v, const cfg_node *n, const char *path, long long lo, long long hi, int *out)
{
    long long x;
    if (!is_scalar_value(n) || !parse_long(n->text, &x) || x < lo || x > hi) {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path, "expected an integer from %lld to %lld, got %s", lo, hi, got);
        return false;
    }
    *out = (int)x;
    return true;
}

/* Plain decimal numbers only: no hex, inf or nan sneaking in through strtod. */
static bool parse_number(const char *s, double *out)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789.eE+-", *p))
            return false;
    errno = 0;
    char *end;
    double x = strtod(s, &end);
    if (errno || *end || !isfinite(x))
        return false;
    *out = x;
    return true;
}

static bool get_double(vctx *v, const cfg_node *n, const char *path, double lo, bool lo_open, double hi,
                       double *out)
{
    double x;
    if (!is_scalar_value(n) || !parse_number(n->text, &x) || (lo_open ? x <= lo : x < lo) || x > hi) {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path, "expected a number %s %.15g and at most %.15g, got %s", lo_open ? "greater than" : "from",
            lo, hi, got);
        return false;
    }
    *out = x;
    return true;
}

static bool get_duration(vctx *v, const cfg_node *n, const char *path, bool allow_zero, double *out)
{
    double x;
    if (!is_scalar_value(n) || sl_config_parse_duration(n->text, &x) != 0 || (!allow_zero && x <= 0) ||
        x > MAX_DURATION_S) {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path,
            "expected a duration %s 0 and at most 24h (seconds, or a string like \"30s\", \"500ms\", "
            "\"2m\"), got %s",
            allow_zero ? "from" : "greater than", got);
        return false;
    }
    *out = x;
    return true;
}

static bool get_size(vctx *v, const cfg_node *n, const char *path, uint64_t lo, uint64_t hi, size_t *out)
{
    uint64_t x;
    if (!is_scalar_value(n) || sl_config_parse_size(n->text, &x) != 0 || x < lo || x > hi) {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path,
            "expected a size from %llu to %llu bytes (a number, or a string like \"512KiB\", \"8MiB\"), got %s",
            (unsigned long long)lo, (unsigned long long)hi, got);
        return false;
    }
    *out = (size_t)x;
    return true;
}

static bool get_bool(vctx *v, const cfg_node *n, const char *path, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; is_scalar_value(n) && i < 3; i++) {
        if (!strcasecmp(n->text, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcasecmp(n->text, no[i])) {
            *out = false;
            return true;
        }
    }
    char got[96];
    describe(n, false, got, sizeof got);
    err(v, n, path, "expected true or false, got %s", got);
    return false;
}

typedef struct enum_name { const char *name, *canonical; } enum_name;

static bool get_enum(vctx *v, const cfg_node *n, const char *path, const enum_name *names, size_t count,
                     const char **out)
{
    for (size_t i = 0; is_scalar_value(n) && i < count; i++) {
        if (!strcmp(n->text, names[i].name)) {
            *out = names[i].canonical;
            return true;
        }
    }
    char got[96], list[256];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; i < count && o < sizeof list; i++)
        if (!strcmp(names[i].name, names[i].canonical))
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", names[i].name);
    describe(n, false, got, sizeof got);
    const char *cands[16];
    size_t nc = 0;
    for (size_t i = 0; i < count && nc < 16; i++)
        cands[nc++] = names[i].name;
    const char *s = is_scalar_value(n) ? suggest(n->text, cands, nc) : NULL;
    if (s)
        err(v, n, path, "expected one of %s, got %s; did you mean \"%s\"?", list, got, s);
    else
        err(v, n, path, "expected one of %s, got %s", list, got);
    return false;
}

static void remember_secret(vctx *v, const char *s)
{
    if (v->n_secrets == v->cap_secrets) {
        size_t cap = v->cap_secrets ? v->cap_secrets * 2 : 8;
        const char **p = sl_realloc(v->secrets, cap * sizeof *p);
        if (!p) {
            v->oom = true;
            return;
        }
        v->secrets = p;
        v->cap_secrets = cap;
    }
    v->secrets[v->n_secrets++] = s;
}

#define ENV_PREFIX "os.environ/"

/* Resolves an api key: "os.environ/NAME" reads the environment, anything
 * else is a literal (allowed, with a warning). Never echoes the value. */
static bool get_secret(vctx *v, const cfg_node *n, const char *path, const char **value, const char **source)
{
    /* a literal (anything but an env reference) is itself the secret */
    if (n && n->kind == CFG_SCALAR && !n->has_nul && !sl_config_node_is_null(n) && n->len > 0 &&
        strncmp(n->text, ENV_PREFIX, strlen(ENV_PREFIX)))
        remember_secret(v, n->text);
    if (!is_scalar_value(n) || n->len == 0) {
        char got[96];
        describe(n, true, got, sizeof got);
        err(v, n, path, "expected a key (os.environ/NAME or a literal string), got %s", got);
        return false;
    }
    size_t pl = strlen(ENV_PREFIX);
    if (n->len >= pl && !strncmp(n->text, ENV_PREFIX, pl)) {
        const char *name = n->text + pl;
        bool ok = *name && (isalpha((unsigned char)*name) || *name == '_') && strlen(name) <= 128;
        for (const char *p = name; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || *p == '_';
        if (!ok) {
            err(v, n, path, "expected os.environ/NAME where NAME is an environment variable name "
                            "(letters, digits and _)");
            return false;
        }
        const char *val = getenv(name);
        if (!val) {
            err(v, n, path, "environment variable %s is not set (referenced as " ENV_PREFIX "%s)", name, name);
            return false;
        }
        if (!*val) {
            err(v, n, path, "environment variable %s is empty (referenced as " ENV_PREFIX "%s)", name, name);
            return false;
        }
        *value = sl_arena_strndup(v->a, val, strlen(val));
        *source = sl_arena_strndup(v->a, n->text, n->len);
        if (!*value || !*source) {
            v->oom = true;
            return false;
        }
        remember_secret(v, *value);
        return true;
    }
    warn(v, n, path, "a literal key is written in the config file; prefer os.environ/NAME so that the file "
                     "holds no secrets");
    *value = dup_text(v, n);
    *source = "literal";
    return *value != NULL;
}

/* http:// or https:// with a non-empty host and a valid port if any.
 * Returns a copy without trailing slashes, or NULL after reporting. */
static const char *get_url(vctx *v, const cfg_node *n, const char *path)
{
    char got[96];
    describe(n, false, got, sizeof got);
    const char *expect = "expected an http:// or https:// URL with a host, such as http://127.0.0.1:8081/v1";
    if (!is_scalar_value(n)) {
        err(v, n, path, "%s, got %s", expect, got);
        return NULL;
    }
    const char *s = n->text;
    for (size_t i = 0; i < n->len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            err(v, n, path, "%s, got %s (it contains a space or control character)", expect, got);
            return NULL;
        }
    }
    const char *host;
    if (!strncasecmp(s, "http://", 7))
        host = s + 7;
    else if (!strncasecmp(s, "https://", 8))
        host = s + 8;
    else {
        err(v, n, path, "%s, got %s", expect, got);
        return NULL;
    }
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(end - host));
    if (at) {
        /* user:password@ would put a credential where it gets logged */
        err(v, n, path, "credentials in the URL are not allowed; use api_key");
        return NULL;
    }
    const char *port = NULL;
    const char *host_end = end;
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (!rb || rb == host + 1) {
            err(v, n, path, "%s, got %s (bad [IPv6] host)", expect, got);
            return NULL;
        }
        host_end = rb + 1;
        if (host_end < end) {
            if (*host_end != ':') {
                err(v, n, path, "%s, got %s", expect, got);
                return NULL;
            }
            port = host_end + 1;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        if (colon) {
            host_end = colon;
            port = colon + 1;
        }
    }
    if (host_end == host) {
        err(v, n, path, "%s, got %s (the host is missing)", expect, got);
        return NULL;
    }
    if (port) {
        long pv = 0;
        const char *p = port;
        for (; p < end && isdigit((unsigned char)*p) && pv <= 65535; p++)
            pv = pv * 10 + (*p - '0');
        if (p == port || p != end || pv < 1 || pv > 65535) {
            err(v, n, path, "%s, got %s (the port must be 1 to 65535)", expect, got);
            return NULL;
        }
    }
    size_t len = n->len;
    while (len > 0 && s[len - 1] == '/' && s + len - 1 >= end)
        len--;
    char *out = sl_arena_strndup(v->a, s, len);
    if (!out)
        v->oom = true;
    return out;
}

/* ---- keys ---- */

typedef struct keydef {
    const char *name;
    int id;                 /* aliases share an id */
} keydef;

/* Checks a mapping entry's key against a section's keys. Returns the key's
 * id, or -1 after reporting (not a string, unknown, or given twice). */
static int match_key(vctx *v, const cfg_node *val, const char *section, const keydef *keys, size_t n,
                     const cfg_node **seen)
{
    const cfg_node *k = val->key;
    char kd[96];
    if (!is_scalar_value(k)) {
        describe(k, false, kd, sizeof kd);
        err(v, k ? k : val, section, "keys must be plain strings, got %s", kd);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(k->text, keys[i].name))
            continue;
        int id = keys[i].id;
        if (seen[id]) {
            err(v, k, section, "\"%s\" is set more than once (also at line %d); keep one", keys[i].name,
                seen[id]->line);
            return -1;
        }
        seen[id] = k;
        return id;
    }
    describe_key(k, kd, sizeof kd);
    const char *cands[32];
    size_t nc = 0;
    for (size_t i = 0; i < n && nc < 32; i++)
        cands[nc++] = keys[i].name;
    const char *s = suggest(k->text, cands, nc);
    if (s) {
        err(v, k, section, "unknown key %s; did you mean \"%s\"?", kd, s);
    } else {
        char list[320];
        size_t o = 0;
        list[0] = '\0';
        for (size_t i = 0; i < n && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", keys[i].name);
        err(v, k, section, "unknown key %s (expected one of: %s)", kd, list);
    }
    return -1;
}

static bool expect_map(vctx *v, const cfg_node *n, const char *path, const char *what)
{
    if (n && n->kind == CFG_MAP)
        return true;
    char got[96];
    describe(n, false, got, sizeof got);
    err(v, n, path, "expected %s, got %s", what, got);
    return false;
}

/* ---- model_list ---- */

enum {
    P_PROVIDER, P_API_BASE, P_API_KEY, P_MODEL, P_WEIGHT, P_MAX_CONC, P_TIMEOUT, P_STREAM_TIMEOUT,
    P_CONNECT_TIMEOUT, P_FIRST_BYTE_TIMEOUT, P_CTX_SIZE, P_MAX_SEQS, P_KV_CACHE_MB, P_THREADS,
    P_PREFILL_CHUNK, P_CHAT_TEMPLATE, P_KV_CACHE_TYPE, P_COUNT
};

static const keydef param_keys[] = {
    {"provider", P_PROVIDER},
    {"api_base", P_API_BASE},
    {"api_key", P_API_KEY},
    {"model", P_MODEL},
    {"weight", P_WEIGHT},
    {"max_concurrency", P_MAX_CONC},
    {"max_parallel_requests", P_MAX_CONC},
    {"timeout", P_TIMEOUT},
    {"stream_timeout", P_STREAM_TIMEOUT},
    {"connect_timeout", P_CONNECT_TIMEOUT},
    {"first_byte_timeout", P_FIRST_BYTE_TIMEOUT},
    {"ctx_size", P_CTX_SIZE},
    {"max_seqs", P_MAX_SEQS},
    {"kv_cache_mb", P_KV_CACHE_MB},
    {"threads", P_THREADS},
    {"prefill_chunk", P_PREFILL_CHUNK},
    {"chat_template", P_CHAT_TEMPLATE},
    {"kv_cache_type", P_KV_CACHE_TYPE},
};

static void parse_params(vctx *v, const cfg_node *params, const char *epath, sl_backend_conf *b)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s.params", epath);
    if (!expect_map(v, params, path, "a mapping of backend settings (provider, api_base, model, ...)"))
        return;
    const cfg_node *seen[P_COUNT] = {0};
    bool provider_bad = false;   /* then provider-specific checks would only add noise */
    for (const cfg_node *val = params->first; val; val = val->next) {
        int id = match_key(v, val, path, param_keys, SL_ARRAY_LEN(param_keys), seen);
        if (id < 0 || sl_config_node_is_null(val))
            continue;
        char fp[PATH_CAP + 32];
        snprintf(fp, sizeof fp, "%s.%s", path, val->key->text);
        switch (id) {
        case P_PROVIDER: {
            static const enum_name names[] = {{"openai", "openai"}, {"local", "local"}};
            const char *p;
            if (get_enum(v, val, fp, names, SL_ARRAY_LEN(names), &p))
                b->provider = !strcmp(p, "local") ? SL_PROVIDER_LOCAL : SL_PROVIDER_OPENAI;
            else
                provider_bad = true;
            break;
        }
        case P_API_BASE: b->api_base = get_url(v, val, fp); break;
        case P_API_KEY: get_secret(v, val, fp, &b->api_key, &b->api_key_source); break;
        case P_MODEL: get_str(v, val, fp, "a model id or GGUF path", &b->model); break;
        case P_WEIGHT: get_double(v, val, fp, 0, true, 1e6, &b->weight); break;
        case P_MAX_CONC: get_int(v, val, fp, 0, 1000000, &b->max_concurrency); break;
        case P_TIMEOUT: get_duration(v, val, fp, false, &b->timeout_s); break;
        case P_STREAM_TIMEOUT: get_duration(v, val, fp, false, &b->stream_timeout_s); break;
        case P_CONNECT_TIMEOUT: get_duration(v, val, fp, false, &b->connect_timeout_s); break;
        case P_FIRST_BYTE_TIMEOUT: get_duration(v, val, fp, false, &b->first_byte_timeout_s); break;
        case P_CTX_SIZE: get_int(v, val, fp, 0, 1 << 24, &b->ctx_size); break;
        case P_MAX_SEQS: get_int(v, val, fp, 0, 4096, &b->max_seqs); break;
        case P_KV_CACHE_MB: get_int(v, val, fp, 0, 1 << 22, &b->kv_cache_mb); break;
        case P_THREADS: get_int(v, val, fp, 0, 1024, &b->threads); break;
        case P_PREFILL_CHUNK: get_int(v, val, fp, 0, 1 << 20, &b->prefill_chunk); break;
        case P_CHAT_TEMPLATE: get_str(v, val, fp, "a chat template string", &b->chat_template); break;
        case P_KV_CACHE_TYPE: {
            static const enum_name names[] = {{"f16", "f16"}, {"f32", "f32"}};
            get_enum(v, val, fp, names, SL_ARRAY_LEN(names), &b->kv_cache_type);
            break;
        }
        default: break;
        }
    }
    /* LiteLLM spells an OpenAI-compatible upstream as model: openai/<id> */
    if (b->model && b->provider == SL_PROVIDER_OPENAI && !strncmp(b->model, "openai/", 7)) {
        b->model += 7;
        if (!*b->model)
            err(v, seen[P_MODEL], path, "model \"openai/\" names no model; expected openai/<model id>");
    }
    if (provider_bad) {
        /* nothing more to say until the provider is fixed */
    } else if (b->provider == SL_PROVIDER_OPENAI) {
        if (!seen[P_API_BASE])
            err(v, params, path, "provider openai needs api_base (the upstream's base URL, e.g. "
                                 "http://127.0.0.1:8081/v1)");
        if (!seen[P_MODEL])
            err(v, params, path, "provider openai needs model (the upstream's model id)");
        static const int local_only[] = {P_CTX_SIZE, P_MAX_SEQS, P_KV_CACHE_MB, P_THREADS, P_PREFILL_CHUNK,
                                         P_CHAT_TEMPLATE, P_KV_CACHE_TYPE};
        for (size_t i = 0; i < SL_ARRAY_LEN(local_only); i++)
            if (seen[local_only[i]])
                warn(v, seen[local_only[i]], path, "\"%s\" only applies to provider local; ignored",
                     seen[local_only[i]]->text);
    } else {
        if (!seen[P_MODEL])
            err(v, params, path, "provider local needs model (the path of a GGUF file)");
        if (seen[P_API_BASE])
            warn(v, seen[P_API_BASE], path, "\"api_base\" does not apply to provider local; ignored");
        if (seen[P_API_KEY])
            warn(v, seen[P_API_KEY], path, "\"api_key\" does not apply to provider local; ignored");
    }
    if (!seen[P_FIRST_BYTE_TIMEOUT])
        b->first_byte_timeout_s = b->timeout_s;
    else if (b->first_byte_timeout_s > b->timeout_s)
        warn(v, seen[P_FIRST_BYTE_TIMEOUT], path,
             "first_byte_timeout (%gs) is longer than timeout (%gs); the total timeout ends the attempt first",
             b->first_byte_timeout_s, b->timeout_s);
}

enum { E_MODEL_NAME, E_PARAMS, E_ID, E_MODEL_INFO, E_COUNT };
static const keydef entry_keys[] = {
    {"model_name", E_MODEL_NAME},
    {"params", E_PARAMS},
    {"litellm_params", E_PARAMS},
    {"id", E_ID},
    {"model_info", E_MODEL_INFO},
};

static bool valid_name(const char *s)
{
    if (strlen(s) > 256)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Returns true when the entry produced a backend (errors may still exist). */
static bool parse_entry(vctx *v, const cfg_node *e, size_t idx, sl_backend_conf *b)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "model_list[%zu]", idx);
    if (!expect_map(v, e, path, "a mapping with model_name and params"))
        return false;
    b->provider = SL_PROVIDER_OPENAI;
    b->weight = 1;
    b->timeout_s = 600;
    b->stream_timeout_s = 60;
    b->connect_timeout_s = 5;
    b->first_byte_timeout_s = 600;
    b->line = e->line;
    b->col = e->col;
    const cfg_node *seen[E_COUNT] = {0};
    const cfg_node *params = NULL;
    for (const cfg_node *val = e->first; val; val = val->next) {
        int id = match_key(v, val, path, entry_keys, SL_ARRAY_LEN(entry_keys), seen);
        if (id < 0)
            continue;
        char fp[PATH_CAP + 32];
        snprintf(fp, sizeof fp, "%s.%s", path, val->key->text);
        switch (id) {
        case E_MODEL_NAME:
            if (get_str(v, val, fp, "a model name (the name clients send)", &b->model_name) &&
                !valid_name(b->model_name)) {
                err(v, val, fp, "expected a model name of at most 256 characters without control characters");
                b->model_name = NULL;
            }
            break;
        case E_PARAMS: params = val; break;
        case E_ID:
            if (!sl_config_node_is_null(val))
                get_str(v, val, fp, "a backend id string", &b->id);
            break;
        case E_MODEL_INFO:
            /* LiteLLM's free-form metadata: we read only its id */
            if (sl_config_node_is_null(val))
                break;
            if (!expect_map(v, val, fp, "a mapping"))
                break;
            for (const cfg_node *mi = val->first; mi; mi = mi->next) {
                if (is_scalar_value(mi->key) && !strcmp(mi->key->text, "id") && !sl_config_node_is_null(mi)) {
                    char ip[PATH_CAP + 40];
                    snprintf(ip, sizeof ip, "%s.id", fp);
                    if (seen[E_ID])
                        err(v, mi->key, ip, "the id is also given as %s.id; keep one", path);
                    else
                        get_str(v, mi, ip, "a backend id string", &b->id);
                }
            }
            break;
        default: break;
        }
    }
    if (!seen[E_MODEL_NAME])
        err(v, e, path, "missing required key model_name (the name clients send)");
    if (!params || sl_config_node_is_null(params))
        err(v, params ? params : e, path, "missing required key params (provider, api_base, model, ...)");
    else
        parse_params(v, params, path, b);
    return true;
}

static void parse_model_list(vctx *v, const cfg_node *list)
{
    sl_config *c = &v->ci->pub;
    if (sl_config_node_is_null(list))
        return;
    if (list->kind != CFG_SEQ) {
        char got[96];
        describe(list, false, got, sizeof got);
        err(v, list, "model_list", "expected a sequence of models (- model_name: ...), got %s", got);
        return;
    }
    size_t n = list->count;
    if (n > SL_CONFIG_MAX_BACKENDS) {
        err(v, list, "model_list", "has %zu entries; the limit is %d", n, SL_CONFIG_MAX_BACKENDS);
        n = SL_CONFIG_MAX_BACKENDS;
    }
    c->backends = sl_arena_calloc(v->a, (n ? n : 1) * sizeof *c->backends);
    if (!c->backends) {
        v->oom = true;
        return;
    }
    size_t i = 0;
    for (const cfg_node *e = list->first; e && i < n; e = e->next, i++)
        if (parse_entry(v, e, i, &c->backends[c->n_backends]))
            c->n_backends++;

    /* ids: "<model_name>#<index within its group>", unless given; unique */
    for (size_t k = 0; k < c->n_backends; k++) {
        sl_backend_conf *b = &c->backends[k];
        if (!b->model_name)
            continue;
        if (!b->id) {
            size_t gi = 0;
            for (size_t j = 0; j < k; j++)
                gi += c->backends[j].model_name && !strcmp(c->backends[j].model_name, b->model_name);
            b->id = sl_arena_sprintf(v->a, "%s#%zu", b->model_name, gi);
            if (!b->id) {
                v->oom = true;
                return;
            }
        }
    }
    for (size_t k = 0; k < c->n_backends; k++) {
        const sl_backend_conf *b = &c->backends[k];
        bool first = true;
        for (size_t j = 0; b->model_name && j < k; j++)
            first = first && !(c->backends[j].model_name && !strcmp(c->backends[j].model_name, b->model_name));
        c->n_groups += b->model_name && first;
        for (size_t j = 0; b->id && j < k; j++) {
            if (c->backends[j].id && !strcmp(c->backends[j].id, b->id)) {
                cfg_node at = {.line = b->line, .col = b->col};
                char p[PATH_CAP];
                snprintf(p, sizeof p, "model_list[%zu]", k);
                err(v, &at, p, "backend id is the same as model_list[%zu]'s (line %d); ids must be unique", j,
                    c->backends[j].line);
                break;
            }
        }
    }
}

static bool model_exists(const sl_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_backends; i++)
        if (c->backends[i].model_name && !strcmp(c->backends[i].model_name, name))
            return true;
    return false;
}

/* Reports a fallback name that matches no model_name, with the closest one. */
static void unknown_model(vctx *v, const cfg_node *n, const char *path, const char *role)
{
    const sl_config *c = &v->ci->pub;
    char got[96];
    describe(n, false, got, sizeof got);
    const char *cands[64];
    size_t nc = 0;
    for (size_t i = 0; i < c->n_backends && nc < 64; i++)
        if (c->backends[i].model_name)
            cands[nc++] = c->backends[i].model_name;
    const char *s = suggest(n->text, cands, nc);
    if (s && !looks_secret(s, strlen(s)))
        err(v, n, path, "%s %s is not a model_name in model_list; did you mean \"%s\"?", role, got, s);
    else
        err(v, n, path, "%s %s is not a model_name in model_list", role, got);
}

static void add_fallback_rule(vctx *v, const cfg_node *rule, const char *path)
{
    sl_router_conf *r = &v->ci->pub.router;
    const cfg_node *k = rule->key;
    char got[96];
    if (!is_scalar_value(k)) {
        describe(k, false, got, sizeof got);
        err(v, k ? k : rule, path, "expected a model_name as the key of a fallback rule, got %s", got);
        return;
    }
    bool ok = true;
    if (!model_exists(&v->ci->pub, k->text)) {
        unknown_model(v, k, path, "fallback source");
        ok = false;
    }
    for (size_t i = 0; i < r->n_fallbacks; i++) {
        if (!strcmp(r->fallbacks[i].model, k->text)) {
            describe(k, false, got, sizeof got);
            err(v, k, path, "fallbacks for %s are given more than once; merge them into one list", got);
            return;
        }
    }
    /* targets: a sequence of names, or one name */
    const cfg_node *single = NULL;
    size_t nt;
    if (rule->kind == CFG_SEQ) {
        nt = rule->count;
    } else if (is_scalar_value(rule)) {
        single = rule;
        nt = 1;
    } else {
        describe(rule, false, got, sizeof got);
        err(v, rule, path, "expected a list of model_names to fall back to, got %s", got);
        return;
    }
    if (nt == 0) {
        err(v, rule, path, "the fallback list is empty; list at least one model_name");
        return;
    }
    if (nt > MAX_FALLBACK_TARGETS) {
        err(v, rule, path, "has %zu fallback targets; the limit is %d", nt, MAX_FALLBACK_TARGETS);
        return;
    }
    const char **targets = sl_arena_calloc(v->a, nt * sizeof *targets);
    if (!targets) {
        v->oom = true;
        return;
    }
    size_t i = 0;
    for (const cfg_node *t = single ? single : rule->first; t && i < nt; t = single ? NULL : t->next) {
        if (!is_scalar_value(t)) {
            describe(t, false, got, sizeof got);
            err(v, t, path, "expected a model_name as a fallback target, got %s", got);
            ok = false;
            continue;
        }
        if (!model_exists(&v->ci->pub, t->text)) {
            unknown_model(v, t, path, "fallback target");
            ok = false;
            continue;
        }
        if (!strcmp(t->text, k->text)) {
            describe(t, false, got, sizeof got);
            err(v, t, path, "%s falls back to itself; retries already cover that (num_retries)", got);
            ok = false;
            continue;
        }
        targets[i++] = dup_text(v, t);
    }
    if (!ok)
        return;
    if (r->n_fallbacks >= MAX_FALLBACK_RULES) {
        err(v, rule, path, "more than %d fallback rules", MAX_FALLBACK_RULES);
        return;
    }
    sl_fallback_conf *fb = &r->fallbacks[r->n_fallbacks++];
    fb->model = dup_text(v, k);
    fb->targets = targets;
    fb->n_targets = i;
}

static void parse_fallbacks(vctx *v, const cfg_node *n, const char *path)
{
    sl_router_conf *r = &v->ci->pub.router;
    r->fallbacks = sl_arena_calloc(v->a, MAX_FALLBACK_RULES * sizeof *r->fallbacks);
    if (!r->fallbacks) {
        v->oom = true;
        return;
    }
    if (n->kind == CFG_MAP) {
        for (const cfg_node *rule = n->first; rule; rule = rule->next)
            add_fallback_rule(v, rule, path);
    } else if (n->kind == CFG_SEQ) {
        /* LiteLLM's form: a list of one-key mappings */
        size_t i = 0;
        for (const cfg_node *item = n->first; item; item = item->next, i++) {
            char ip[PATH_CAP + 24];
            snprintf(ip, sizeof ip, "%s[%zu]", path, i);
            if (!expect_map(v, item, ip, "a mapping such as {gpt-4o: [gpt-4o-mini]}"))
                continue;
            for (const cfg_node *rule = item->first; rule; rule = rule->next)
                add_fallback_rule(v, rule, ip);
        }
    } else {
        char got[96];
        describe(n, false, got, sizeof got);
        err(v, n, path, "expected a mapping {model: [fallbacks]} or a list of them, got %s", got);
    }
}

/* ---- router_settings ---- */

/* LiteLLM's strategy names map onto ours */
static const enum_name strategy_names[] = {
    {"latency", "latency"},
    {"weighted", "weighted"},
    {"round-robin", "round-robin"},
    {"least-outstanding", "least-outstanding"},
    {"latency-based-routing", "latency"},
    {"simple-shuffle", "weighted"},
    {"least-busy", "least-outstanding"},
};

enum {
    R_STRATEGY, R_RETRIES, R_BACKOFF, R_FALLBACKS, R_QUEUE, R_EJECTION, R_SLOW_START, R_BUDGET, R_HEALTH,
    R_RETRY_AFTER_MAX, R_LATENCY_DECAY, R_GROUPS, R_ALLOWED_FAILS, R_COOLDOWN, R_COUNT
};
static const keydef router_keys[] = {
    {"routing_strategy", R_STRATEGY},
    {"num_retries", R_RETRIES},
    {"retry_backoff_ms", R_BACKOFF},
    {"fallbacks", R_FALLBACKS},
    {"queue", R_QUEUE},
    {"outlier_ejection", R_EJECTION},
    {"slow_start", R_SLOW_START},
    {"retry_budget", R_BUDGET},
    {"health_check", R_HEALTH},
    {"retry_after_max", R_RETRY_AFTER_MAX},
    {"latency_decay", R_LATENCY_DECAY},
    {"groups", R_GROUPS},
    {"allowed_fails", R_ALLOWED_FAILS},
    {"cooldown_time", R_COOLDOWN},
};

/* The keys of router_settings' nested mappings, one id space for all. */
enum {
    K_MAX, K_TIMEOUT, K_CONSECUTIVE, K_BASE, K_MAX_TIME, K_MAX_PERCENT, K_WINDOW, K_FLOOR, K_CURVE,
    K_AGGRESSION, K_ON_START, K_RATIO, K_MIN_PER_S, K_PATH, K_INTERVAL, K_STRATEGY, K_QUEUE_MAX,
    K_QUEUE_TIMEOUT, K_COUNT
};
static const keydef queue_keys[] = {{"max", K_MAX}, {"timeout", K_TIMEOUT}};
static const keydef ejection_keys[] = {
    {"consecutive_failures", K_CONSECUTIVE}, {"base_time", K_BASE}, {"max_time", K_MAX_TIME},
    {"max_percent", K_MAX_PERCENT}};
static const keydef slow_start_keys[] = {
    {"window", K_WINDOW}, {"floor", K_FLOOR}, {"curve", K_CURVE}, {"aggression", K_AGGRESSION},
    {"on_start", K_ON_START}};
static const keydef budget_keys[] = {{"ratio", K_RATIO}, {"min_per_second", K_MIN_PER_S}, {"window", K_WINDOW}};
static const keydef health_keys[] = {{"path", K_PATH}, {"interval", K_INTERVAL}, {"timeout", K_TIMEOUT}};
static const keydef group_keys[] = {
    {"routing_strategy", K_STRATEGY}, {"queue_max", K_QUEUE_MAX}, {"queue_timeout", K_QUEUE_TIMEOUT}};

typedef void (*sub_value_fn)(vctx *v, int id, const cfg_node *val, const char *path, void *dst);

/* Walks a nested mapping of router_settings, handing each known key to fn. */
static void parse_sub(vctx *v, const cfg_node *n, const char *path, const char *what, const keydef *keys,
                      size_t nkeys, sub_value_fn fn, void *dst)
{
    if (!expect_map(v, n, path, what))
        return;
    const cfg_node *seen[K_COUNT] = {0};
    for (const cfg_node *val = n->first; val; val = val->next) {
        int id = match_key(v, val, path, keys, nkeys, seen);
        if (id < 0 || sl_config_node_is_null(val))
            continue;
        char fp[PATH_CAP + 64];
        snprintf(fp, sizeof fp, "%s.%s", path, val->key->text);
        fn(v, id, val, fp, dst);
    }
}

static void router_sub_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_router_conf *r = dst;
    static const enum_name curves[] = {{"linear", "linear"}, {"aggressive", "aggressive"}};
    switch (id) {
    case K_MAX: get_int(v, val, fp, 0, 100000, &r->queue_max); break;
    case K_CONSECUTIVE: get_int(v, val, fp, 0, 1000, &r->eject_consecutive); break;
    case K_BASE: get_duration(v, val, fp, false, &r->eject_base_s); break;
    case K_MAX_TIME: get_duration(v, val, fp, false, &r->eject_max_s); break;
    case K_MAX_PERCENT: get_int(v, val, fp, 0, 100, &r->max_ejection_percent); break;
    case K_FLOOR: get_double(v, val, fp, 0, true, 1, &r->slow_start_floor); break;
    case K_CURVE: get_enum(v, val, fp, curves, SL_ARRAY_LEN(curves), &r->slow_start_curve); break;
    case K_AGGRESSION: get_double(v, val, fp, 1, false, 100, &r->slow_start_aggression); break;
    case K_ON_START: get_bool(v, val, fp, &r->slow_start_on_start); break;
    case K_RATIO: get_double(v, val, fp, 0, false, 100, &r->retry_budget_ratio); break;
    case K_MIN_PER_S: get_double(v, val, fp, 0, false, 1e6, &r->retry_budget_min_per_s); break;
    case K_PATH:
        if (!is_scalar_value(val) || val->text[0] != '/' || strpbrk(val->text, " \t\r\n?#")) {
            char got[96];
            describe(val, false, got, sizeof got);
            err(v, val, fp, "expected a path starting with '/' (appended to each backend's api_base), got %s", got);
        } else {
            r->health_check_path = dup_text(v, val);
        }
        break;
    case K_INTERVAL: get_duration(v, val, fp, false, &r->health_check_interval_s); break;
    default: break;
    }
}

/* K_TIMEOUT and K_WINDOW mean different fields per section: one wrapper each. */
static void queue_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_router_conf *r = dst;
    if (id == K_TIMEOUT)
        get_duration(v, val, fp, false, &r->queue_timeout_s);
    else
        router_sub_value(v, id, val, fp, dst);
}

static void slow_start_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_router_conf *r = dst;
    if (id == K_WINDOW)
        get_duration(v, val, fp, true, &r->slow_start_window_s);
    else
        router_sub_value(v, id, val, fp, dst);
}

static void budget_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_router_conf *r = dst;
    if (id == K_WINDOW)
        get_duration(v, val, fp, false, &r->retry_budget_window_s);
    else
        router_sub_value(v, id, val, fp, dst);
}

static void health_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_router_conf *r = dst;
    if (id == K_TIMEOUT)
        get_duration(v, val, fp, false, &r->health_check_timeout_s);
    else
        router_sub_value(v, id, val, fp, dst);
}

static void group_value(vctx *v, int id, const cfg_node *val, const char *fp, void *dst)
{
    sl_group_conf *gc = dst;
    switch (id) {
    case K_STRATEGY:
        get_enum(v, val, fp, strategy_names, SL_ARRAY_LEN(strategy_names), &gc->routing_strategy);
        break;
    case K_QUEUE_MAX: get_int(v, val, fp, 0, 100000, &gc->queue_max); break;
    case K_QUEUE_TIMEOUT: get_duration(v, val, fp, false, &gc->queue_timeout_s); break;
    default: break;
    }
}

static void parse_groups(vctx *v, const cfg_node *n, const char *path)
{
    sl_router_conf *r = &v->ci->pub.router;
    if (!expect_map(v, n, path, "a mapping {model_name: {routing_strategy, queue_max, queue_timeout}}"))
        return;
    r->groups = sl_arena_calloc(v->a, (n->count ? n->count : 1) * sizeof *r->groups);
    if (!r->groups) {
        v->oom = true;
        return;
    }
    for (const cfg_node *e = n->first; e; e = e->next) {
        if (!is_scalar_value(e->key))
            continue;
        char gp[PATH_CAP + 64];
        snprintf(gp, sizeof gp, "%s.%s", path, e->key->text);
        if (!model_exists(&v->ci->pub, e->key->text)) {
            unknown_model(v, e->key, gp, "a group setting");
            continue;
        }
        for (size_t i = 0; i < r->n_group_confs; i++)
            if (!strcmp(r->groups[i].model, e->key->text)) {
                err(v, e->key, gp, "the group is configured twice; keep one");
                break;
            }
        sl_group_conf *gc = &r->groups[r->n_group_confs];
        *gc = (sl_group_conf){.model = dup_text(v, e->key), .queue_max = -1, .queue_timeout_s = -1};
        parse_sub(v, e, gp, "a mapping (routing_strategy, queue_max, queue_timeout)", group_keys,
                  SL_ARRAY_LEN(group_keys), group_value, gc);
        r->n_group_confs++;
    }
}

static void parse_router(vctx *v, const cfg_node *n)
{
    const char *sec = "router_settings";
    sl_router_conf *r = &v->ci->pub.router;
    if (sl_config_node_is_null(n) || !expect_map(v, n, sec, "a mapping (routing_strategy, num_retries, ...)"))
        return;
    const cfg_node *seen[R_COUNT] = {0};
    for (const cfg_node *val = n->first; val; val = val->next) {
        int id = match_key(v, val, sec, router_keys, SL_ARRAY_LEN(router_keys), seen);
        if (id < 0 || sl_config_node_is_null(val))
            continue;
        char fp[PATH_CAP];
        snprintf(fp, sizeof fp, "%s.%s", sec, val->key->text);
        switch (id) {
        case R_STRATEGY:
            get_enum(v, val, fp, strategy_names, SL_ARRAY_LEN(strategy_names), &r->routing_strategy);
            break;
        case R_RETRIES: get_int(v, val, fp, 0, 10, &r->num_retries); break;
        case R_BACKOFF: get_double(v, val, fp, 0, false, 60000, &r->retry_backoff_ms); break;
        case R_FALLBACKS: parse_fallbacks(v, val, fp); break;
        case R_QUEUE:
            parse_sub(v, val, fp, "a mapping {max, timeout}", queue_keys, SL_ARRAY_LEN(queue_keys), queue_value, r);
            break;
        case R_EJECTION:
            parse_sub(v, val, fp, "a mapping {consecutive_failures, base_time, max_time, max_percent}",
                      ejection_keys, SL_ARRAY_LEN(ejection_keys), router_sub_value, r);
            break;
        case R_SLOW_START:
            parse_sub(v, val, fp, "a mapping {window, floor, curve, aggression, on_start}", slow_start_keys,
                      SL_ARRAY_LEN(slow_start_keys), slow_start_value, r);
            break;
        case R_BUDGET:
            parse_sub(v, val, fp, "a mapping {ratio, min_per_second, window}", budget_keys,
                      SL_ARRAY_LEN(budget_keys), budget_value, r);
            break;
        case R_HEALTH:
            parse_sub(v, val, fp, "a mapping {path, interval, timeout}", health_keys, SL_ARRAY_LEN(health_keys),
                      health_value, r);
            break;
        case R_RETRY_AFTER_MAX: get_duration(v, val, fp, false, &r->retry_after_max_s); break;
        case R_LATENCY_DECAY: get_duration(v, val, fp, false, &r->latency_decay_s); break;
        case R_GROUPS: parse_groups(v, val, fp); break;
        case R_ALLOWED_FAILS: get_int(v, val, fp, 0, 1000, &r->eject_consecutive); break;
        case R_COOLDOWN: get_duration(v, val, fp, false, &r->eject_base_s); break;
        default: break;
        }
    }
    if (seen[R_ALLOWED_FAILS] && seen[R_EJECTION])
        warn(v, seen[R_ALLOWED_FAILS], sec, "allowed_fails and outlier_ejection are both given; the later one wins");
    if (r->eject_max_s < r->eject_base_s)
        err(v, seen[R_EJECTION] ? seen[R_EJECTION] : n, sec,
            "outlier_ejection.max_time (%gs) is shorter than base_time (%gs)", r->eject_max_s, r->eject_base_s);
}

/* ---- server ---- */

enum {
    S_LISTEN, S_HOST, S_PORT, S_WORKERS, S_MAX_BODY, S_MAX_CONN, S_TIMEOUTS, S_HEADER_T, S_BODY_T, S_IDLE_T,
    S_DRAIN_T, S_MAX_INFLIGHT, S_API_KEYS, S_LOG_LEVEL, S_ACCESS_LOG, S_COUNT
};
static const keydef server_keys[] = {
    {"listen", S_LISTEN},
    {"host", S_HOST},
    {"port", S_PORT},
    {"workers", S_WORKERS},
    {"max_body_bytes", S_MAX_BODY},
    {"max_connections", S_MAX_CONN},
    {"timeouts", S_TIMEOUTS},
    {"header_timeout", S_HEADER_T},
    {"body_timeout", S_BODY_T},
    {"idle_timeout", S_IDLE_T},
    {"drain_timeout", S_DRAIN_T},
    {"max_inflight", S_MAX_INFLIGHT},
    {"api_keys", S_API_KEYS},
    {"log_level", S_LOG_LEVEL},
    {"access_log", S_ACCESS_LOG},
};
static const keydef timeout_keys[] = {
    {"header", S_HEADER_T},
    {"body", S_BODY_T},
    {"idle", S_IDLE_T},
    {"drain", S_DRAIN_T},
};

static bool valid_host(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && !strchr(".-_:", c))
            return false;
    }
    return true;
}

static void parse_listen(vctx *v, const cfg_node *n, const char *path, sl_server_conf *s)
{
    const char *expect = "expected host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)";
    char got[96];
    describe(n, false, got, sizeof got);
    if (!is_scalar_value(n)) {
        err(v, n, path, "%s, got %s", expect, got);
        return;
    }
    const char *t = n->text, *port;
    const char *h = t;
    size_t hl;
    long long pv;
    if (parse_long(t, &pv)) {   /* a bare port number */
        port = t;
        hl = 0;
        h = NULL;
    } else if (t[0] == '[') {
        const char *rb = strchr(t, ']');
        if (!rb || rb[1] != ':') {
            err(v, n, path, "%s, got %s", expect, got);
            return;
        }
        h = t + 1;
        hl = (size_t)(rb - h);
        port = rb + 2;
    } else {
        const char *colon = strrchr(t, ':');
        if (!colon) {
            err(v, n, path, "%s, got %s (no port)", expect, got);
            return;
        }
        hl = (size_t)(colon - t);
        port = colon + 1;
    }
    if (!parse_long(port, &pv) || pv < 0 || pv > 65535) {
        err(v, n, path, "%s, got %s (the port must be 0 to 65535)", expect, got);
        return;
    }
    if (h && hl > 0 && !valid_host(h, hl)) {
        err(v, n, path, "%s, got %s (bad host)", expect, got);
        return;
    }
    s->port = (int)pv;
    if (h) {
        s->host = hl ? sl_arena_strndup(v->a, h, hl) : "0.0.0.0";
        if (!s->host)
            v->oom = true;
    }
}

static void parse_api_keys(vctx *v, const cfg_node *n, const char *path, sl_server_conf *s)
{
    if (n->kind != CFG_SEQ) {
        char got[96];
        describe(n, true, got, sizeof got);
        err(v, n, path, "expected a list of keys ([os.environ/NAME, ...]), got %s", got);
        return;
    }
    if (n->count > MAX_API_KEYS) {
        err(v, n, path, "has %zu keys; the limit is %d (use the key store for more)", n->count, MAX_API_KEYS);
        return;
    }
    s->api_keys = sl_arena_calloc(v->a, (n->count ? n->count : 1) * sizeof *s->api_keys);
    s->api_key_sources = sl_arena_calloc(v->a, (n->count ? n->count : 1) * sizeof *s->api_key_sources);
    if (!s->api_keys || !s->api_key_sources) {
        v->oom = true;
        return;
    }
    size_t i = 0;
    for (const cfg_node *k = n->first; k; k = k->next, i++) {
        char kp[PATH_CAP + 24];
        snprintf(kp, sizeof kp, "%s[%zu]", path, i);
        const char *val, *src;
        if (get_secret(v, k, kp, &val, &src)) {
            s->api_keys[s->n_api_keys] = val;
            s->api_key_sources[s->n_api_keys++] = src;
        }
    }
}

static void server_value(vctx *v, int id, const cfg_node *val, const char *fp, sl_server_conf *s)
{
    switch (id) {
    case S_LISTEN: parse_listen(v, val, fp, s); break;
    case S_HOST:
        if (!is_scalar_value(val) || !valid_host(val->text, val->len)) {
            char got[96];
            describe(val, false, got, sizeof got);
            err(v, val, fp, "expected a host name or IP address such as 127.0.0.1, got %s", got);
        } else {
            s->host = dup_text(v, val);
        }
        break;
    case S_PORT: get_int(v, val, fp, 0, 65535, &s->port); break;
    case S_WORKERS: get_int(v, val, fp, 0, 1024, &s->workers); break;
    case S_MAX_BODY: get_size(v, val, fp, 1024, 1ull << 30, &s->max_body_bytes); break;
    case S_MAX_CONN: get_int(v, val, fp, 1, 1000000, &s->max_connections); break;
    case S_HEADER_T: get_duration(v, val, fp, false, &s->header_timeout_s); break;
    case S_BODY_T: get_duration(v, val, fp, false, &s->body_timeout_s); break;
    case S_IDLE_T: get_duration(v, val, fp, false, &s->idle_timeout_s); break;
    case S_DRAIN_T: get_duration(v, val, fp, true, &s->drain_timeout_s); break;
    case S_MAX_INFLIGHT: get_int(v, val, fp, 1, 1000000, &s->max_inflight); break;
    case S_API_KEYS: parse_api_keys(v, val, fp, s); break;
    case S_LOG_LEVEL: {
        static const enum_name names[] = {
            {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}, {"warning", "warn"},
        };
        get_enum(v, val, fp, names, SL_ARRAY_LEN(names), &s->log_level);
        break;
    }
    case S_ACCESS_LOG: get_bool(v, val, fp, &s->access_log); break;
    default: break;
    }
}

static void parse_server(vctx *v, const cfg_node *n)
{
    const char *sec = "server";
    sl_server_conf *s = &v->ci->pub.server;
    if (sl_config_node_is_null(n) || !expect_map(v, n, sec, "a mapping (listen, workers, timeouts, ...)"))
        return;
    const cfg_node *seen[S_COUNT] = {0};
    for (const cfg_node *val = n->first; val; val = val->next) {
        int id = match_key(v, val, sec, server_keys, SL_ARRAY_LEN(server_keys), seen);
        if (id < 0 || sl_config_node_is_null(val))
            continue;
        char fp[PATH_CAP];
        snprintf(fp, sizeof fp, "%s.%s", sec, val->key->text);
        if (id != S_TIMEOUTS) {
            server_value(v, id, val, fp, s);
            continue;
        }
        if (!expect_map(v, val, fp, "a mapping {header, body, idle, drain} of durations"))
            continue;
        /* nested keys share the seen slots of the flat *_timeout keys, so
         * giving both timeouts.idle and idle_timeout is reported */
        for (const cfg_node *t = val->first; t; t = t->next) {
            int tid = match_key(v, t, fp, timeout_keys, SL_ARRAY_LEN(timeout_keys), seen);
            if (tid < 0 || sl_config_node_is_null(t))
                continue;
            char tp[PATH_CAP + 16];
            snprintf(tp, sizeof tp, "%s.%s", fp, t->key->text);
            server_value(v, tid, t, tp, s);
        }
    }
    if (seen[S_LISTEN] && (seen[S_HOST] || seen[S_PORT]))
        err(v, seen[S_HOST] ? seen[S_HOST] : seen[S_PORT], sec,
            "both listen and host/port are given; use one of them");
}

/* ---- root ---- */

static void parse_root(vctx *v, const cfg_node *root)
{
    const char *what = "a mapping with the sections model_list, router_settings and server";
    if (!root || sl_config_node_is_null(root)) {
        err(v, NULL, NULL, "the file is empty; expected %s", what);
        return;
    }
    if (root->kind != CFG_MAP) {
        char got[96];
        describe(root, false, got, sizeof got);
        err(v, root, NULL, "the top level must be %s, got %s", what, got);
        return;
    }
    static const char *const known[] = {"model_list", "router_settings", "server"};
    const cfg_node *sections[3] = {0};
    for (const cfg_node *val = root->first; val; val = val->next) {
        const cfg_node *k = val->key;
        char kd[96];
        if (!is_scalar_value(k)) {
            describe(k, false, kd, sizeof kd);
            err(v, k ? k : val, NULL, "top-level keys must be plain strings, got %s", kd);
            continue;
        }
        size_t i = 0;
        while (i < 3 && strcmp(k->text, known[i]))
            i++;
        if (i < 3) {
            if (sections[i])
                err(v, k, known[i], "section is given more than once (also at line %d)", sections[i]->key->line);
            else
                sections[i] = val;
            continue;
        }
        describe_key(k, kd, sizeof kd);
        const char *s = suggest(k->text, known, 3);
        if (s)
            warn(v, k, NULL, "unknown top-level section %s is ignored; did you mean \"%s\"?", kd, s);
        else
            warn(v, k, NULL, "top-level section %s is not used by Sluice; ignored", kd);
    }
    /* model_list first: fallbacks refer to its names, wherever they sit in the file */
    if (sections[0])
        parse_model_list(v, sections[0]);
    else
        warn(v, NULL, NULL, "no model_list: the gateway will serve no models");
    if (sections[1])
        parse_router(v, sections[1]);
    if (sections[2])
        parse_server(v, sections[2]);
}

/* ---- finishing diags ---- */

static void scrub(char *msg, size_t cap, const char *secret)
{
    static const char mask[] = "<redacted>";
    size_t sl = strlen(secret), ml = sizeof mask - 1;
    if (sl < 3)
        return;
    char *p;
    while ((p = strstr(msg, secret)) != NULL) {
        size_t tail = strlen(p + sl);
        size_t used = (size_t)(p - msg);
        if (used + ml + tail + 1 > cap)
            tail = cap - 1 - used - ml;
        memmove(p + ml, p + sl, tail);
        memcpy(p, mask, ml);
        p[ml + tail] = '\0';
    }
}

static int pos_cmp(const sl_config_diag *a, const sl_config_diag *b)
{
    /* placeless diags go last */
    long la = a->line ? a->line : 0x7fffffff, lb = b->line ? b->line : 0x7fffffff;
    if (la != lb)
        return la < lb ? -1 : 1;
    return a->col < b->col ? -1 : a->col > b->col;
}

static void finish_diags(sl_config_diags *d, size_t start, const char *const *secrets, size_t n_secrets)
{
    for (size_t i = start; i < d->n; i++)
        for (size_t s = 0; s < n_secrets; s++)
            scrub(d->items[i].message, sizeof d->items[i].message, secrets[s]);
    /* stable insertion sort; at most SL_CONFIG_MAX_DIAGS items. The last
     * "too many problems" note stays last because it has no place. */
    for (size_t i = start + 1; i < d->n; i++) {
        sl_config_diag tmp = d->items[i];
        size_t j = i;
        while (j > start && pos_cmp(&d->items[j - 1], &tmp) > 0) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = tmp;
    }
}

/* ---- entry points ---- */

/* Returns the offset of the first byte that is not part of well-formed UTF-8
 * (no overlongs, surrogates or code points past U+10FFFF), or len. Checked
 * before libfyaml sees the text: a config is UTF-8 text, and some malformed
 * sequences (inside a % directive) make libfyaml 0.7 loop forever. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0;          /* overlong */
            else if (c == 0xED)
                hi = 0x9F;          /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90;          /* overlong */
            else if (c == 0xF4)
                hi = 0x8F;          /* past U+10FFFF */
        } else {
            return i;
        }
        if (i + n >= len)           /* truncated at the end */
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

/* 1-based line and column (in bytes) of offset off in s. */
static void line_col(const char *s, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

int sl_config_load_string(const char *yaml, size_t len, const char *name, sl_config **out, sl_config_diags *diags)
{
    *out = NULL;
    sl_config_diags local = {0};
    sl_config_diags *d = diags ? diags : &local;
    size_t start = d->n;
    int rc = 0;
    if (!name)
        name = "<string>";
    if (len > SL_CONFIG_MAX_FILE_BYTES) {
        sl_config_diag_addf(d, true, 0, 0, "the file is %zu bytes; a config may be at most %u bytes", len,
                            SL_CONFIG_MAX_FILE_BYTES);
        rc = SL_EINVAL;
        goto done;
    }
    const char *nul = yaml ? memchr(yaml, '\0', len) : NULL;
    if (nul) {
        sl_config_diag_addf(d, true, 0, 0, "the file contains a NUL byte at offset %zu; a config is text",
                            (size_t)(nul - yaml));
        rc = SL_EPARSE;
        goto done;
    }
    size_t bad = yaml ? utf8_invalid_at((const unsigned char *)yaml, len) : len;
    if (bad < len) {
        int l, col;
        line_col(yaml, bad, &l, &col);
        sl_config_diag_addf(d, true, l, col, "the file is not valid UTF-8 (byte 0x%02X at offset %zu); a config is "
                            "UTF-8 text", (unsigned char)yaml[bad], bad);
        rc = SL_EPARSE;
        goto done;
    }
    sl_arena *scratch = sl_arena_create(16384);
    if (!scratch) {
        rc = SL_ENOMEM;
        goto done;
    }
    cfg_node *root = NULL;
    rc = sl_config_yaml_parse(scratch, yaml ? yaml : "", yaml ? len : 0, &root, d);
    if (rc == 0) {
        vctx v = {.d = d};
        v.ci = sl_config_new_impl(name);
        if (!v.ci) {
            rc = SL_ENOMEM;
        } else {
            v.a = v.ci->arena;
            parse_root(&v, root);
            finish_diags(d, start, v.secrets, v.n_secrets);
            if (v.oom)
                rc = SL_ENOMEM;
            else if (v.errors)
                rc = SL_EINVAL;
            if (rc == 0)
                *out = &v.ci->pub;
            else
                sl_config_release(&v.ci->pub);
        }
        sl_free(v.secrets);
    }
    sl_arena_destroy(scratch);
done:
    /* syntax errors come before any secret is known; sort them anyway */
    finish_diags(d, start, NULL, 0);
    sl_config_diags_free(&local);
    return rc;
}

int sl_config_load_file(const char *path, sl_config **out, sl_config_diags *diags)
{
    *out = NULL;
    sl_config_diags local = {0};
    sl_config_diags *d = diags ? diags : &local;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sl_config_diag_addf(d, true, 0, 0, "cannot open the config file: %s", strerror(errno));
        sl_config_diags_free(&local);
        return SL_EIO;
    }
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        sl_config_diag_addf(d, true, 0, 0, "cannot read the config file: not a regular file");
        rc = SL_EIO;
        goto out;
    }
    if (st.st_size > (off_t)SL_CONFIG_MAX_FILE_BYTES) {
        sl_config_diag_addf(d, true, 0, 0, "the file is %lld bytes; a config may be at most %u bytes",
                            (long long)st.st_size, SL_CONFIG_MAX_FILE_BYTES);
        rc = SL_EINVAL;
        goto out;
    }
    /* read to EOF with a hard cap: the file may grow between fstat and read */
    size_t cap = SL_CONFIG_MAX_FILE_BYTES + 1, len = 0;
    buf = sl_malloc((size_t)st.st_size + 1);
    size_t have = (size_t)st.st_size + 1;
    while (buf) {
        if (len == have) {
            if (have >= cap)
                break;
            size_t nh = SL_MIN(have * 2, cap);
            char *nb = sl_realloc(buf, nh);
            if (!nb) {
                sl_free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            have = nh;
        }
        ssize_t r = read(fd, buf + len, have - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sl_config_diag_addf(d, true, 0, 0, "cannot read the config file: %s", strerror(errno));
            rc = SL_EIO;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (!buf) {
        rc = SL_ENOMEM;
        goto out;
    }
    rc = sl_config_load_string(buf, len, path, out, d);
out:
    close(fd);
    sl_free(buf);
    sl_config_diags_free(&local);
    return rc;
}
