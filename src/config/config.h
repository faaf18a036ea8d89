/*
 * config: turns a YAML file into one typed, validated, immutable snapshot.
 *
 * It owns the schema (model_list, router_settings, server; shaped like
 * LiteLLM's so that its users feel at home), every default value, the
 * resolution of `os.environ/VAR` secrets, and the diagnostics a user sees
 * ("file:line:col: error: message", all of them, not just the first).
 * A snapshot (sl_config) never changes after load: readers on any thread keep
 * a reference for as long as they use it, and a reload (SIGHUP) swaps a new
 * snapshot into an sl_config_holder. Secret values (api keys) live only in
 * the snapshot's fields: no message, log line or diagnostic ever holds one.
 *
 * Limits: files up to SL_CONFIG_MAX_FILE_BYTES, YAML nesting up to
 * SL_CONFIG_MAX_DEPTH levels, SL_CONFIG_MAX_BACKENDS model_list entries.
 * YAML anchors are ignored and aliases (*name) are rejected.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_CONFIG_MAX_FILE_BYTES (4u << 20)
#define SL_CONFIG_MAX_DEPTH 32
#define SL_CONFIG_MAX_NODES 100000
#define SL_CONFIG_MAX_BACKENDS 4096
#define SL_CONFIG_MAX_DIAGS 100

typedef enum { SL_PROVIDER_OPENAI = 0, SL_PROVIDER_LOCAL = 1 } sl_provider;

typedef struct sl_backend_conf {
    const char *model_name;      /* the name clients send; entries sharing it form a load-balanced group */
    sl_provider provider;
    const char *api_base;        /* openai: base URL incl. /v1, e.g. "http://127.0.0.1:8081/v1"; no trailing slash kept */
    const char *api_key;         /* resolved secret or NULL; NEVER printed anywhere */
    const char *api_key_source;  /* "os.environ/NAME", "literal" or NULL: safe to print */
    const char *model;           /* upstream model id (openai) or GGUF path (local) */
    double weight;               /* > 0, default 1 */
    int max_concurrency;         /* >= 0, 0 = unlimited (default 0) */
    double timeout_s;            /* total per attempt, default 600 */
    double stream_timeout_s;     /* max idle gap between stream chunks, default 60 */
    double connect_timeout_s;    /* default 5 */
    double first_byte_timeout_s; /* default = timeout_s */
    /* provider: local (stored and validated; the engine uses them later) */
    int ctx_size, max_seqs, kv_cache_mb, threads, prefill_chunk;   /* 0 = engine default */
    const char *chat_template;   /* NULL = from the GGUF */
    const char *kv_cache_type;   /* "f16" or "f32"; NULL = the engine's default (f16) */
    const char *id;              /* stable backend id: "<model_name>#<index within group>" unless `id:` given */
    int line, col;               /* where the entry starts in the file */
} sl_backend_conf;

typedef struct sl_fallback_conf {
    const char *model;           /* the model_name whose failures fall back */
    const char **targets;        /* model_names to try in order */
    size_t n_targets;
} sl_fallback_conf;

/* router_settings.groups.<model_name>: per-group overrides. */
typedef struct sl_group_conf {
    const char *model;             /* the model_name it applies to */
    const char *routing_strategy;  /* NULL = router_settings.routing_strategy */
    int queue_max;                 /* -1 = router_settings.queue.max */
    double queue_timeout_s;        /* < 0 = router_settings.queue.timeout */
} sl_group_conf;

typedef struct sl_router_conf {
    const char *routing_strategy;  /* "latency" (default), "weighted", "round-robin", "least-outstanding" */
    int num_retries;               /* default 2 */
    double retry_backoff_ms;       /* base for jittered backoff, default 50 */
    sl_fallback_conf *fallbacks; size_t n_fallbacks;
    /* admission queue per model group: queue.max (default 100; 0 = reject at once), queue.timeout (10 s) */
    int queue_max;
    double queue_timeout_s;
    /* outlier_ejection: consecutive_failures (5; 0 = never; LiteLLM: allowed_fails), base_time (30 s;
     * LiteLLM: cooldown_time), max_time (300 s), max_percent (50) */
    int eject_consecutive;
    double eject_base_s, eject_max_s;
    int max_ejection_percent;
    /* slow_start: window (30 s; 0 = off), floor (0.1), curve ("linear" | "aggressive"), aggression (2),
     * on_start (false: the first configuration's backends start at full share) */
    double slow_start_window_s, slow_start_floor, slow_start_aggression;
    const char *slow_start_curve;
    bool slow_start_on_start;
    double retry_after_max_s;      /* longest pause a backend's Retry-After may impose, default 60 */
    double latency_decay_s;        /* peak-EWMA time constant of the latency strategy, default 10 */
    /* retry_budget: ratio (0.2 of live requests), min_per_second (10), window (10 s) */
    double retry_budget_ratio, retry_budget_min_per_s, retry_budget_window_s;
    /* health_check: path (appended to each openai backend's api_base; NULL = no active checks),
     * interval (5 s), timeout (2 s) */
    const char *health_check_path;
    double health_check_interval_s, health_check_timeout_s;
    sl_group_conf *groups; size_t n_group_confs;
} sl_router_conf;

typedef struct sl_server_conf {
    const char *host;              /* default "127.0.0.1" */
    int port;                      /* default 8080; 0 = ephemeral */
    int workers;                   /* default 0 = number of cores */
    size_t max_body_bytes;         /* default 8 MiB */
    int max_connections;           /* default 4096 */
    double header_timeout_s;       /* default 10 */
    double body_timeout_s;         /* default 30 */
    double idle_timeout_s;         /* keep-alive idle, default 60 */
    double drain_timeout_s;        /* graceful shutdown, default 30 */
    int max_inflight;              /* gateway-wide cap, default 1024 */
    const char *log_level;         /* "debug", "info" (default), "warn" or "error" */
    bool access_log;               /* default true */
    const char **api_keys; size_t n_api_keys;   /* `server.api_keys: [..]` (values may be os.environ/VAR); empty = no auth */
    const char **api_key_sources;  /* n_api_keys entries, "os.environ/NAME" or "literal": safe to print */
} sl_server_conf;

typedef struct sl_config {
    const char *path;              /* file name (or the name given to load_string); "" for defaults */
    sl_server_conf server;
    sl_router_conf router;
    sl_backend_conf *backends; size_t n_backends;   /* in file order */
    size_t n_groups;               /* distinct model_names among backends */
    /* private (refcount, arena) lives in a wrapper inside config.c */
} sl_config;

typedef struct sl_config_diag {  /* one error or warning */
    int line, col;               /* 1-based; 0 when not tied to a place */
    bool is_error;
    char message[512];           /* says what is wrong and what is expected, e.g. "router_settings.num_retries: expected an integer >= 0, got \"abc\"" */
} sl_config_diag;
typedef struct sl_config_diags { sl_config_diag *items; size_t n, cap; } sl_config_diags;

/* Frees the items of d and zeroes it (d itself is the caller's). */
void sl_config_diags_free(sl_config_diags *d);
/* Returns how many of d's items are errors (not warnings). */
size_t sl_config_diags_errors(const sl_config_diags *d);
/* Formats one diag as "file:line:col: error: message" into out (always NUL-terminated). */
void sl_config_diag_format(const char *file, const sl_config_diag *d, char *out, size_t cap);

/* Loads and validates; on success *out holds one reference (release with
 * sl_config_release). On failure returns SL_EPARSE (YAML syntax), SL_EINVAL
 * (schema), SL_EIO (unreadable file) or SL_ENOMEM, *out is NULL, and diags
 * (may be NULL) holds every error found. Warnings may be present on success.
 * Diags are appended to what diags already holds, sorted by position. */
int sl_config_load_file(const char *path, sl_config **out, sl_config_diags *diags);
int sl_config_load_string(const char *yaml, size_t len, const char *name, sl_config **out, sl_config_diags *diags);
/* Returns c with one more reference; thread-safe (atomic refcount). */
sl_config *sl_config_retain(sl_config *c);
/* Drops one reference; frees the snapshot at zero. NULL is a no-op. */
void sl_config_release(sl_config *c);
/* Returns a config with defaults and no backends (for tests and `serve` without a file); release it. */
int sl_config_default(sl_config **out);

/* Returns the first fallback rule for model_name, or NULL; valid while c is held. */
const sl_fallback_conf *sl_config_find_fallback(const sl_config *c, const char *model_name);

/* Parses "30s", "500ms", "2m", "1h", "1.5" (seconds) into seconds >= 0.
 * Returns 0, or SL_EPARSE for anything else (no unit, junk, negative, NaN). */
int sl_config_parse_duration(const char *s, double *seconds_out);
/* Parses "8388608", "512KiB", "8MiB", "1GiB", "64KB", "8MB", "1GB", "100B"
 * into bytes. Returns 0, SL_EPARSE for junk or SL_ERANGE when over 2^53. */
int sl_config_parse_size(const char *s, uint64_t *bytes_out);

/* The atomically swappable current snapshot used on SIGHUP reload. */
typedef struct sl_config_holder sl_config_holder;
/* Creates a holder that takes the reference to initial; free with _destroy. */
int sl_config_holder_create(sl_config *initial, sl_config_holder **out);
/* Returns a new reference to the current snapshot; the caller releases it. */
sl_config *sl_config_holder_get(sl_config_holder *h);
/* Installs next (takes the reference); the old snapshot is freed when its last user releases it. */
void sl_config_holder_swap(sl_config_holder *h, sl_config *next);
/* Drops the holder's reference and frees the holder. NULL is a no-op. */
void sl_config_holder_destroy(sl_config_holder *h);

#endif
