/*
 * api: the OpenAI wire format, as pure functions over bytes and structs.
 *
 * It decodes and validates client requests for /v1/chat/completions,
 * /v1/completions and /v1/embeddings into a typed sl_request; builds the body
 * sent upstream; reads usage out of upstream responses and streamed chunks;
 * frames Server-Sent Events for the client; and writes errors and /v1/models
 * answers in OpenAI's exact shapes. It does no I/O, starts no threads and knows
 * nothing of HTTP servers or upstreams, so every entry point can be fuzzed.
 *
 * Security: a request body can never choose where or how Sluice talks to an
 * upstream. Any top-level field that names upstream routing or credentials
 * (api_base, base_url, api_key, api_version, api_type, and provider
 * credentials and endpoints; see the list in request.c) is rejected
 * with 400 "unsupported_parameter", compared case-insensitively. This closes
 * the server-side request forgery class of bug where a proxy forwarded a
 * client-supplied base URL (and the operator's key) to an attacker's host.
 *
 * Limits: JSON nesting deeper than SL_API_MAX_DEPTH is refused before the
 * parser sees it (the parser's own limit is 2048 and recursive). Body size is
 * the HTTP layer's job.
 *
 * The upstream sees exactly the values validated here. Requests are decoded
 * one of two ways. Common requests (only whitelisted keys with plain values,
 * see fastreq.c) are read by a strict single-pass scanner without building a
 * tree; their upstream body is the client's own bytes with only the model
 * value replaced (and stream_options set for streams). That scanner declines
 * any repeated key, so no upstream parser, whichever duplicate it would keep,
 * can read a value other than the one validated. Everything else goes
 * through jansson's tree: duplicate keys are accepted there, the last wins,
 * and the upstream body is re-serialised from the decoded tree.
 *
 * JSON trees are jansson's (json_t) and use jansson's allocator.
 */
#ifndef SL_API_H
#define SL_API_H

#include "core/core.h"

#include <jansson.h>

/* Deepest object/array nesting accepted in any JSON this layer parses. */
#define SL_API_MAX_DEPTH 64
/* Most choices a client may ask for with n. */
#define SL_API_MAX_N 128
/* Most entries in an embeddings input array (OpenAI's limit). */
#define SL_API_MAX_EMBED_INPUTS 2048

typedef enum { SL_API_CHAT = 0, SL_API_COMPLETIONS, SL_API_EMBEDDINGS } sl_api_kind;

/* ---- errors ----
 * status, type, code and param follow OpenAI's error object:
 *   400 invalid_request_error  (invalid_json, invalid_type, invalid_value,
 *                               missing_required_parameter, unsupported_parameter)
 *   401 invalid_request_error  invalid_api_key (what OpenAI sends)
 *   403 permission_error       permission_denied
 *   404 invalid_request_error  model_not_found (unknown model) / not_found (unknown path)
 *   405 invalid_request_error  method_not_allowed
 *   413 invalid_request_error  request_too_large
 *   429 rate_limit_error       rate_limit_exceeded
 *   429 insufficient_quota     insufficient_quota (budget spent)
 *   500 server_error           internal_error
 *   502 server_error           upstream_error
 *   503 server_error           overloaded (the HTTP layer adds Retry-After)
 *   504 server_error           timeout
 * type and code must be string literals (or otherwise outlive the error);
 * param is copied into param_buf, so param points into the struct itself:
 * copy an sl_api_error with sl_api_error_copy, never by assignment. */
typedef struct sl_api_error {
    int status;          /* HTTP status */
    const char *type;    /* OpenAI error type */
    const char *code;    /* NULL → JSON null */
    const char *param;   /* offending parameter path like "messages[1].role"; NULL → JSON null */
    char message[512];   /* what is wrong and what is expected */
    char param_buf[128]; /* storage for param */
} sl_api_error;

/* Fills e (param is copied, message is printf-style and truncated to fit). Returns SL_EINVAL. */
int sl_api_error_set(sl_api_error *e, int status, const char *type, const char *code, const char *param,
                     const char *fmt, ...) SL_PRINTF(6, 7);
/* Copies src into dst, fixing up the self-pointer of param. */
void sl_api_error_copy(sl_api_error *dst, const sl_api_error *src);
/* Appends {"error":{"message":..,"type":..,"param":..,"code":..}} to out (compact, that key order).
 * Returns 0 or SL_ETOOBIG/SL_ENOMEM with out unchanged. */
int sl_api_error_body(const sl_api_error *e, sl_buf *out);

/* Convenience constructors; each fills e and returns SL_EINVAL. fmt NULL gives a standard message. */
int sl_api_error_bad_request(sl_api_error *e, const char *code, const char *param, const char *fmt, ...)
    SL_PRINTF(4, 5);                                                        /* 400 */
int sl_api_error_unauthorized(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);  /* 401 */
int sl_api_error_forbidden(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);     /* 403 */
int sl_api_error_model_not_found(sl_api_error *e, const char *model);                  /* 404, param "model" */
int sl_api_error_not_found(sl_api_error *e, const char *method, const char *path);     /* 404 */
int sl_api_error_method_not_allowed(sl_api_error *e, const char *method, const char *path); /* 405 */
int sl_api_error_too_large(sl_api_error *e, size_t limit_bytes);                       /* 413 */
int sl_api_error_rate_limited(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);  /* 429 */
int sl_api_error_quota(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);         /* 429 quota */
int sl_api_error_internal(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);      /* 500 */
int sl_api_error_upstream(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);      /* 502 */
int sl_api_error_overloaded(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);    /* 503 */
int sl_api_error_timeout(sl_api_error *e, const char *fmt, ...) SL_PRINTF(2, 3);       /* 504 */

/* ---- requests ---- */
typedef enum { SL_ROLE_SYSTEM, SL_ROLE_DEVELOPER, SL_ROLE_USER, SL_ROLE_ASSISTANT, SL_ROLE_TOOL } sl_role;

typedef struct sl_api_message {
    sl_role role;
    /* content flattened: the string content, or the "text" of every text part
     * joined with "\n"; NULL if there is none (assistant with only tool_calls,
     * or only non-text parts) */
    const char *text;
    const char *name;         /* NULL when absent */
    const char *tool_call_id; /* tool messages only; NULL otherwise */
    size_t n_tool_calls;      /* assistant tool_calls entries */
    size_t n_media_parts;     /* content parts that are not text (image_url, input_audio, file, ...) */
} sl_api_message;

typedef struct sl_request {
    sl_api_kind kind;
    const char *model;
    bool stream;
    bool include_usage; /* stream_options.include_usage as the client sent it */
    /* chat */
    sl_api_message *messages;
    size_t n_messages;
    /* completions: the string prompts; token-array prompts are counted, kept opaque in body */
    const char **prompts;
    size_t n_prompts;
    int n_token_prompts;
    /* embeddings: the string inputs; token-array inputs are counted, kept opaque in body */
    const char **inputs;
    size_t n_inputs;
    int n_token_inputs;
    const char *encoding_format; /* "float" or "base64"; NULL when absent */
    bool has_dimensions;
    int64_t dimensions;
    /* sampling; has_* false when absent or null */
    bool has_temperature;
    double temperature; /* 0..2 */
    bool has_top_p;
    double top_p;       /* 0..1 */
    int n;              /* default 1, 1..SL_API_MAX_N */
    bool has_max_tokens;
    int64_t max_tokens; /* max_tokens or max_completion_tokens (the latter wins), >= 1 */
    const char *stop[4];
    size_t n_stop;
    bool has_seed;
    int64_t seed;
    const char *user;
    double presence_penalty, frequency_penalty; /* -2..2, default 0 */
    bool logprobs;      /* chat: logprobs; completions: logprobs given (0..5) */
    int top_logprobs;   /* chat: 0..20; completions: the logprobs integer */
    bool has_tools;     /* tools present and non-empty */
    const char *response_format_type; /* "text", "json_object", "json_schema"; NULL when absent */
    /* The whole decoded request object, one reference owned by the request.
     * tools, tool_choice, response_format, logit_bias and every unknown field
     * live only here and are passed upstream untouched. NULL when the fast
     * decoder read the request (raw is set then): such a request holds no
     * field beyond the ones above, so readers of extension keys (top_k, ...)
     * find none, rightly. */
    json_t *body;
    /* Set by the fast decoder instead of body, NULL otherwise: the client's
     * bytes, copied into the arena (they live as long as the request), strict
     * JSON with no repeated key, every member validated above. The offsets
     * are byte offsets into raw and let sl_api_upstream_body splice it. */
    const char *raw;
    size_t raw_len;
    size_t raw_model_off, raw_model_len; /* the model value, quotes included */
    size_t raw_so_off, raw_so_len;       /* the stream_options value; raw_so_len 0 when absent */
    size_t raw_close_off;                /* the root object's closing '}' */
} sl_request;

/* Decodes and validates an OpenAI request body of the given kind. On success
 * *out is allocated in arena (strings too) and holds either a json reference
 * (body) that sl_request_release drops or, when the fast decoder read it, an
 * arena copy of the bytes (raw). On failure returns SL_EPARSE (not JSON) or
 * SL_EINVAL (invalid request), *out is NULL and err says why (status 400,
 * param names the field, e.g. "messages[2].content", "temperature", "stop"). */
int sl_api_decode_request(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out,
                          sl_api_error *err);
/* Drops the json reference if any; arena memory dies with the arena. NULL is a no-op. */
void sl_request_release(sl_request *r);

/* Appends the body to send upstream to out: the client's body with "model"
 * replaced by upstream_model and, for streaming chat/completions,
 * stream_options.include_usage forced true so that the gateway can count
 * tokens (r->include_usage remembers what the client asked; drop usage-only
 * chunks when it is false). From the tree it is re-serialised compactly; from
 * raw it is the client's bytes with the model value and the stream_options
 * value replaced ({"include_usage":true}; inserted before the closing brace
 * when absent). r is not modified. Returns 0, SL_ETOOBIG,
 * SL_ENOMEM, or SL_EINVAL when upstream_model is not UTF-8 (out unchanged on failure). */
int sl_api_upstream_body(const sl_request *r, const char *upstream_model, sl_buf *out);

/* ---- responses ---- */
typedef struct sl_usage {
    bool known;
    int64_t prompt_tokens, completion_tokens, total_tokens, cached_tokens;
} sl_usage;

/* Parses a non-streaming upstream response body: checks that it is a JSON
 * object and fills *usage (known false when it carries no usage; a missing
 * total is the sum). Returns 0 or SL_EPARSE. */
int sl_api_parse_response(const char *body, size_t len, sl_usage *usage);
/* Appends data to out with its top-level "model" replaced by client_model
 * (left as is when absent). Works for whole responses and streamed chunks.
 * Returns 0, SL_EPARSE (not a JSON object), SL_EINVAL (client_model not UTF-8),
 * SL_ETOOBIG or SL_ENOMEM; out is unchanged on failure. */
int sl_api_rewrite_model(const char *data, size_t len, const char *client_model, sl_buf *out);
/* Inspects one streamed chunk's data payload (the JSON after "data: "; the
 * caller handles "[DONE]"). Every out-parameter may be NULL. *usage is written
 * only when the chunk carries usage, so one sl_usage can span a stream; the
 * bools are always written: *has_content when any choice carries non-empty
 * delta content/refusal/reasoning, tool_calls, function_call, or completion
 * text; *finish when a finish_reason is set; *is_usage_only when choices is
 * empty or absent and usage is present. Returns 0 or SL_EPARSE (not a JSON object). */
int sl_api_inspect_chunk(const char *data, size_t len, sl_usage *usage, bool *has_content, bool *finish,
                         bool *is_usage_only);

/* What the gateway reads from an upstream body or streamed chunk: the fields
 * of sl_api_inspect_chunk's out-parameters, and usage (known false when the
 * text carries no usage object with a count). */
typedef struct sl_api_scan {
    bool has_content, finish, usage_only;
    sl_usage usage;
} sl_api_scan;

/* The allocation-free fast path behind sl_api_parse_response and
 * sl_api_inspect_chunk (scan.c): validates data as one JSON object and fills
 * *out. Returns 0 only when the full JSON parser would accept the text and
 * give the same results; SL_EUNSUPPORTED for anything it does not handle
 * exactly (malformed JSON included), after which the caller must use the
 * full parser. */
int sl_api_scan_upstream(const char *data, size_t len, sl_api_scan *out);

/* ---- Server-Sent Events, client side ----
 * Each appends to out all or nothing: 0, or SL_ETOOBIG/SL_ENOMEM with out unchanged. */
/* "data: <data>\n\n"; a payload with line breaks (\n, \r\n, \r) becomes one data: line per line. */
int sl_sse_data(sl_buf *out, const char *data, size_t len);
/* "data: [DONE]\n\n" */
int sl_sse_done(sl_buf *out);
/* An error delivered mid-stream: "data: {"error":{...}}\n\n", the shape OpenAI's SDKs raise on. */
int sl_sse_error(sl_buf *out, const sl_api_error *e);

/* ---- /v1/models ---- */
typedef struct sl_api_model {
    const char *id;
    const char *owned_by; /* NULL → "sluice" */
    int64_t created;      /* Unix seconds */
} sl_api_model;
/* Appends {"object":"list","data":[{"id":..,"object":"model","created":..,"owned_by":..},..]}. */
int sl_api_models_list(const sl_api_model *models, size_t n, sl_buf *out);
/* Appends one {"id":..,"object":"model","created":..,"owned_by":..}. */
int sl_api_model_object(const sl_api_model *m, sl_buf *out);

/* ---- helpers shared with other encoders ---- */
/* Flags for every JSON this layer re-serialises: compact, and reals printed
 * with 15 significant digits, the most a double always round-trips through
 * decimal, so a client's 0.2 goes upstream as 0.2 rather than
 * 0.20000000000000001 (float32 embeddings, needing 9, are kept exactly). */
#define SL_API_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))
/* Appends s (n bytes) as a quoted JSON string; invalid UTF-8 becomes U+FFFD.
 * Returns 0 or SL_ETOOBIG/SL_ENOMEM (out may hold a partial string then). */
int sl_api_json_quote(sl_buf *out, const char *s, size_t n);
/* Parses data as JSON (any top-level value), refusing nesting deeper than
 * SL_API_MAX_DEPTH before the parser runs. Returns 0 and a new reference in
 * *out (caller json_decref's it), or SL_EPARSE with why (if not NULL) saying
 * what and where: "line L, column C (byte B): <reason>". */
int sl_api_json_load(const char *data, size_t len, json_t **out, char *why, size_t why_size);

#endif
