/* Request decoding and validation, and the body sent upstream.
 *
 * Validation answers the first problem found with a 400 whose param is the
 * JSON path of the offending field ("messages[1].content[0].text") and whose
 * message says what was expected. JSON null for an optional field means
 * "absent", as OpenAI treats it. Fields this file does not know are left in
 * r->body and reach the upstream untouched. */
#include "api/internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MODEL_MAX_LEN SL_API_MODEL_MAX_LEN

typedef struct vctx {
    sl_arena *arena;
    sl_api_error *err;
    sl_api_kind kind;
} vctx;

static int bad(vctx *v, const char *code, const char *param, const char *fmt, ...) SL_PRINTF(4, 5);

static int bad(vctx *v, const char *code, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof v->err->message];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sl_api_error_bad_request(v->err, code, param, "%s", msg);
}

static int oom(vctx *v)
{
    sl_api_error_internal(v->err, "The server ran out of memory while decoding the request. Retry the request.");
    return SL_ENOMEM;
}

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Formats a parameter path into p (PATH_LEN bytes), truncating silently:
 * the error copies at most that much anyway. */
#define PATH_LEN 128
static void pathf(char *p, const char *fmt, ...) SL_PRINTF(2, 3);
static void pathf(char *p, const char *fmt, ...)
{
    /* %s and %zu, the only conversions paths use, by hand: this runs several
     * times per message of every valid request, where vsnprintf cost more
     * than the rest of the validation */
    va_list ap;
    va_start(ap, fmt);
    size_t n = 0;
    const size_t cap = PATH_LEN - 1;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            if (n < cap)
                p[n++] = *f;
        } else if (f[1] == 's') {
            for (const char *s = va_arg(ap, const char *); *s && n < cap; s++)
                p[n++] = *s;
            f++;
        } else if (f[1] == 'z' && f[2] == 'u') {
            size_t x = va_arg(ap, size_t);
            char d[24];
            int k = 0;
            do {
                d[k++] = (char)('0' + x % 10);
                x /= 10;
            } while (x);
            while (k && n < cap)
                p[n++] = d[--k];
            f += 2;
        } else {
            va_end(ap);
            va_start(ap, fmt);
            vsnprintf(p, PATH_LEN, fmt, ap);
            va_end(ap);
            return;
        }
    }
    p[n] = 0;
    va_end(ap);
}

static const char *adup(vctx *v, const json_t *s)
{
    return sl_arena_strndup(v->arena, json_string_value(s), json_string_length(s));
}

/* An optional field: NULL when absent or JSON null. */
static json_t *opt(json_t *o, const char *key)
{
    json_t *j = json_object_get(o, key);
    return j && !json_is_null(j) ? j : NULL;
}

/* ---- scalar fields ---- */

static int opt_number(vctx *v, json_t *o, const char *key, double lo, double hi, bool *has, double *out)
{
    json_t *j = opt(o, key);
    if (!j)
        return 0;
    if (!json_is_number(j))
        return bad(v, "invalid_type", key, "'%s' must be a number between %g and %g, got %s.", key, lo, hi,
                   type_name(j));
    double d = json_number_value(j);
    if (!(d >= lo && d <= hi))
        return bad(v, "invalid_value", key, "'%s' must be between %g and %g, got %g.", key, lo, hi, d);
    if (has)
        *has = true;
    *out = d;
    return 0;
}

/* Integers may arrive as integral reals (1.0) from some client libraries. */
static int opt_int(vctx *v, json_t *o, const char *key, int64_t lo, int64_t hi, bool *has, int64_t *out)
{
    json_t *j = opt(o, key);
    if (!j)
        return 0;
    int64_t x;
    if (json_is_integer(j)) {
        x = (int64_t)json_integer_value(j);
    } else if (json_is_real(j) && floor(json_real_value(j)) == json_real_value(j) &&
               fabs(json_real_value(j)) < 9.0e18) {
        x = (int64_t)json_real_value(j);
    } else {
        return bad(v, "invalid_type", key, "'%s' must be an integer, got %s.", key, type_name(j));
    }
    if (x < lo || x > hi) {
        if (hi == INT64_MAX)
            return bad(v, "invalid_value", key, "'%s' must be at least %lld, got %lld.", key, (long long)lo,
                       (long long)x);
        return bad(v, "invalid_value", key, "'%s' must be between %lld and %lld, got %lld.", key,
                   (long long)lo, (long long)hi, (long long)x);
    }
    if (has)
        *has = true;
    *out = x;
    return 0;
}

static int opt_bool(vctx *v, json_t *o, const char *key, bool *out)
{
    json_t *j = opt(o, key);
    if (!j)
        return 0;
    if (!json_is_boolean(j))
        return bad(v, "invalid_type", key, "'%s' must be a boolean, got %s.", key, type_name(j));
    *out = json_is_true(j);
    return 0;
}

static int opt_string(vctx *v, json_t *o, const char *key, const char **out)
{
    json_t *j = opt(o, key);
    if (!j)
        return 0;
    if (!json_is_string(j))
        return bad(v, "invalid_type", key, "'%s' must be a string, got %s.", key, type_name(j));
    if (out && !(*out = adup(v, j)))
        return oom(v);
    return 0;
}

/* ---- routing fields a client must never set ----
 * Compared case-insensitively with '-' read as '_'. Only names that cannot be
 * a legitimate model parameter are listed. */
static const char *const forbidden_fields[] = {
    "api_base",          "base_url",          "api_key",           "api_version",
    "api_type",          "azure_endpoint",    "azure_deployment",  "azure_ad_token",
    "custom_llm_provider", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "aws_region_name",   "aws_profile_name",  "vertex_project",    "vertex_location",
    "vertex_credentials", "extra_headers",    "upstream_url",      "proxy_url",
};

static bool field_name_eq(const char *key, const char *want)
{
    for (; *key && *want; key++, want++) {
        char c = (char)tolower((unsigned char)*key);
        if (c == '-')
            c = '_';
        if (c != *want)
            return false;
    }
    return *key == 0 && *want == 0;
}

static int check_forbidden(vctx *v, json_t *root)
{
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        for (size_t i = 0; i < SL_ARRAY_LEN(forbidden_fields); i++) {
            if (field_name_eq(key, forbidden_fields[i]))
                return bad(v, "unsupported_parameter", key,
                           "'%.64s' cannot be set by clients: upstream endpoints, credentials and API versions "
                           "are configured by the operator. Remove this field from the request.",
                           key);
        }
    }
    return 0;
}

/* ---- messages ---- */

static const struct {
    const char *name;
    sl_role role;
} role_names[] = {
    {"system", SL_ROLE_SYSTEM}, {"developer", SL_ROLE_DEVELOPER}, {"user", SL_ROLE_USER},
    {"assistant", SL_ROLE_ASSISTANT}, {"tool", SL_ROLE_TOOL},
};

/* Flattens an array of content parts at path: text parts are joined with "\n"
 * into *text (NULL when there are none), other parts are counted. */
static int decode_parts(vctx *v, json_t *parts, const char *path, const char **text, size_t *n_media)
{
    char p[PATH_LEN];
    size_t n = json_array_size(parts);
    if (n == 0)
        return bad(v, "invalid_value", path,
                   "'%s' must be a string or a non-empty array of content parts, got an empty array.", path);
    size_t total = 0, n_text = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *part = json_array_get(parts, i);
        pathf(p, "%s[%zu]", path, i);
        if (!json_is_object(part))
            return bad(v, "invalid_type", p,
                       "'%s' must be a content part object like {\"type\":\"text\",\"text\":\"...\"}, got %s.", p,
                       type_name(part));
        json_t *type = json_object_get(part, "type");
        pathf(p, "%s[%zu].type", path, i);
        if (!type || json_is_null(type))
            return bad(v, "missing_required_parameter", p,
                       "Missing required parameter '%s': each content part needs a type such as \"text\" or "
                       "\"image_url\".",
                       p);
        if (!json_is_string(type))
            return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(type));
        if (strcmp(json_string_value(type), "text") == 0) {
            json_t *t = json_object_get(part, "text");
            pathf(p, "%s[%zu].text", path, i);
            if (!t || json_is_null(t))
                return bad(v, "missing_required_parameter", p,
                           "Missing required parameter '%s': a text part needs a string 'text'.", p);
            if (!json_is_string(t))
                return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(t));
            total += json_string_length(t) + 1;
            n_text++;
        } else if (strcmp(json_string_value(type), "refusal") != 0) {
            (*n_media)++;
        }
    }
    *text = NULL;
    if (n_text == 0)
        return 0;
    char *buf = sl_arena_alloc(v->arena, total);
    if (!buf)
        return oom(v);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *part = json_array_get(parts, i);
        if (strcmp(json_string_value(json_object_get(part, "type")), "text") != 0)
            continue;
        json_t *t = json_object_get(part, "text");
        if (at)
            buf[at++] = '\n';
        memcpy(buf + at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    buf[at] = 0;
    *text = buf;
    return 0;
}

static int decode_tool_calls(vctx *v, json_t *msg, size_t idx, size_t *count)
{
    char p[PATH_LEN];
    json_t *calls = opt(msg, "tool_calls");
    *count = 0;
    if (!calls)
        return 0;
    pathf(p, "messages[%zu].tool_calls", idx);
    if (!json_is_array(calls))
        return bad(v, "invalid_type", p, "'%s' must be an array of tool calls, got %s.", p, type_name(calls));
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *c = json_array_get(calls, i);
        pathf(p, "messages[%zu].tool_calls[%zu]", idx, i);
        if (!json_is_object(c))
            return bad(v, "invalid_type", p,
                       "'%s' must be an object like {\"id\":..,\"type\":\"function\",\"function\":{..}}, got %s.",
                       p, type_name(c));
        json_t *fn = opt(c, "function");
        if (fn) {
            pathf(p, "messages[%zu].tool_calls[%zu].function", idx, i);
            if (!json_is_object(fn))
                return bad(v, "invalid_type", p, "'%s' must be an object with name and arguments, got %s.", p,
                           type_name(fn));
            json_t *name = json_object_get(fn, "name");
            pathf(p, "messages[%zu].tool_calls[%zu].function.name", idx, i);
            if (name && !json_is_string(name))
                return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(name));
        }
    }
    *count = json_array_size(calls);
    return 0;
}

static int decode_message(vctx *v, json_t *msg, size_t idx, sl_api_message *m)
{
    char p[PATH_LEN];
    pathf(p, "messages[%zu]", idx);
    if (!json_is_object(msg))
        return bad(v, "invalid_type", p,
                   "'%s' must be a message object like {\"role\":\"user\",\"content\":\"...\"}, got %s.", p,
                   type_name(msg));

    json_t *role = json_object_get(msg, "role");
    pathf(p, "messages[%zu].role", idx);
    if (!role || json_is_null(role))
        return bad(v, "missing_required_parameter", p,
                   "Missing required parameter '%s': one of system, developer, user, assistant, tool.", p);
    if (!json_is_string(role))
        return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(role));
    size_t r;
    for (r = 0; r < SL_ARRAY_LEN(role_names); r++) {
        if (strcmp(json_string_value(role), role_names[r].name) == 0)
            break;
    }
    if (r == SL_ARRAY_LEN(role_names))
        return bad(v, "invalid_value", p,
                   "'%s' must be one of system, developer, user, assistant, tool; got '%.64s'.", p,
                   json_string_value(role));
    m->role = role_names[r].role;

    json_t *name = opt(msg, "name");
    pathf(p, "messages[%zu].name", idx);
    if (name && !json_is_string(name))
        return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(name));
    if (name && !(m->name = adup(v, name)))
        return oom(v);

    int rc = decode_tool_calls(v, msg, idx, &m->n_tool_calls);
    if (rc)
        return rc;
    json_t *fcall = opt(msg, "function_call");
    pathf(p, "messages[%zu].function_call", idx);
    if (fcall && !json_is_object(fcall))
        return bad(v, "invalid_type", p, "'%s' must be an object with name and arguments, got %s.", p,
                   type_name(fcall));

    if (m->role == SL_ROLE_TOOL) {
        json_t *id = json_object_get(msg, "tool_call_id");
        pathf(p, "messages[%zu].tool_call_id", idx);
        if (!id || json_is_null(id))
            return bad(v, "missing_required_parameter", p,
                       "Missing required parameter '%s': a tool message must name the tool call it answers.", p);
        if (!json_is_string(id))
            return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(id));
        if (!(m->tool_call_id = adup(v, id)))
            return oom(v);
    }

    /* An assistant turn may carry no content when it only calls tools (or
     * only refuses, or only references earlier audio). */
    bool content_optional = m->role == SL_ROLE_ASSISTANT &&
                            (m->n_tool_calls > 0 || fcall || opt(msg, "refusal") || opt(msg, "audio"));
    json_t *content = json_object_get(msg, "content");
    pathf(p, "messages[%zu].content", idx);
    if (!content || json_is_null(content)) {
        if (content_optional)
            return 0;
        if (!content)
            return bad(v, "missing_required_parameter", p,
                       "Missing required parameter '%s': a string or an array of content parts.", p);
        return bad(v, "invalid_type", p,
                   "'%s' must be a string or an array of content parts; null is only allowed for assistant "
                   "messages with tool_calls.",
                   p);
    }
    if (json_is_string(content)) {
        if (!(m->text = adup(v, content)))
            return oom(v);
        return 0;
    }
    if (json_is_array(content))
        return decode_parts(v, content, p, &m->text, &m->n_media_parts);
    return bad(v, "invalid_type", p, "'%s' must be a string or an array of content parts, got %s.", p,
               type_name(content));
}

static int decode_messages(vctx *v, json_t *root, sl_request *r)
{
    json_t *ms = opt(root, "messages");
    if (!ms)
        return bad(v, "missing_required_parameter", "messages",
                   "Missing required parameter 'messages': an array of {\"role\",\"content\"} objects.");
    if (!json_is_array(ms))
        return bad(v, "invalid_type", "messages", "'messages' must be an array of message objects, got %s.",
                   type_name(ms));
    size_t n = json_array_size(ms);
    if (n == 0)
        return bad(v, "invalid_value", "messages", "'messages' must contain at least one message.");
    if (n > SIZE_MAX / sizeof *r->messages)
        return oom(v);
    r->messages = sl_arena_calloc(v->arena, n * sizeof *r->messages);
    if (!r->messages)
        return oom(v);
    r->n_messages = n;
    for (size_t i = 0; i < n; i++) {
        int rc = decode_message(v, json_array_get(ms, i), i, &r->messages[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- prompt / input: a string, strings, token ids, or arrays of token ids ---- */

static int check_tokens(vctx *v, json_t *arr, const char *path)
{
    char p[PATH_LEN];
    if (json_array_size(arr) == 0)
        return bad(v, "invalid_value", path, "'%s' must not be an empty array of token ids.", path);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *t = json_array_get(arr, i);
        pathf(p, "%s[%zu]", path, i);
        if (!json_is_integer(t))
            return bad(v, "invalid_type", p, "'%s' must be an integer token id, got %s.", p, type_name(t));
        if (json_integer_value(t) < 0)
            return bad(v, "invalid_value", p, "'%s' must be a non-negative token id, got %lld.", p,
                       (long long)json_integer_value(t));
    }
    return 0;
}

static int decode_text_or_tokens(vctx *v, json_t *root, const char *key, bool allow_empty_string,
                                 size_t max_items, const char ***strs, size_t *n_strs, int *n_tok)
{
    static const char expect[] = "a string, an array of strings, an array of token ids, or an array of "
                                 "token-id arrays";
    char p[PATH_LEN];
    json_t *j = opt(root, key);
    if (!j)
        return bad(v, "missing_required_parameter", key, "Missing required parameter '%s': %s.", key, expect);
    if (json_is_string(j)) {
        if (!allow_empty_string && json_string_length(j) == 0)
            return bad(v, "invalid_value", key, "'%s' must not be an empty string.", key);
        *strs = sl_arena_alloc(v->arena, sizeof **strs);
        if (!*strs || !((*strs)[0] = adup(v, j)))
            return oom(v);
        *n_strs = 1;
        return 0;
    }
    if (!json_is_array(j))
        return bad(v, "invalid_type", key, "'%s' must be %s, got %s.", key, expect, type_name(j));
    size_t n = json_array_size(j);
    if (n == 0)
        return bad(v, "invalid_value", key, "'%s' must not be an empty array.", key);
    json_t *first = json_array_get(j, 0);
    if (json_is_integer(first)) { /* one prompt given as token ids */
        int rc = check_tokens(v, j, key);
        if (rc)
            return rc;
        *n_tok = 1;
        return 0;
    }
    if (n > max_items)
        return bad(v, "invalid_value", key, "'%s' must have at most %zu entries, got %zu.", key, max_items, n);
    if (json_is_string(first)) {
        *strs = sl_arena_alloc(v->arena, n * sizeof **strs);
        if (!*strs)
            return oom(v);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(j, i);
        pathf(p, "%s[%zu]", key, i);
        if (json_is_string(first)) {
            if (!json_is_string(e))
                return bad(v, "invalid_type", p, "'%s' must be a string like the other entries, got %s.", p,
                           type_name(e));
            if (!allow_empty_string && json_string_length(e) == 0)
                return bad(v, "invalid_value", p, "'%s' must not be an empty string.", p);
            if (!((*strs)[i] = adup(v, e)))
                return oom(v);
        } else if (json_is_array(first)) {
            if (!json_is_array(e))
                return bad(v, "invalid_type", p, "'%s' must be an array of token ids like the other entries, got %s.",
                           p, type_name(e));
            int rc = check_tokens(v, e, p);
            if (rc)
                return rc;
        } else {
            return bad(v, "invalid_type", p, "'%s' must be %s; entry %zu is %s.", key, expect, i, type_name(e));
        }
    }
    if (json_is_string(first))
        *n_strs = n;
    else
        *n_tok = (int)n;
    return 0;
}

/* ---- tools, tool_choice, response_format, logit_bias, stop ---- */

static int decode_tools(vctx *v, json_t *root, sl_request *r)
{
    char p[PATH_LEN];
    json_t *tools = opt(root, "tools");
    if (!tools)
        return 0;
    if (!json_is_array(tools))
        return bad(v, "invalid_type", "tools", "'tools' must be an array of tool objects, got %s.",
                   type_name(tools));
    for (size_t i = 0; i < json_array_size(tools); i++) {
        json_t *t = json_array_get(tools, i);
        pathf(p, "tools[%zu]", i);
        if (!json_is_object(t))
            return bad(v, "invalid_type", p,
                       "'%s' must be an object like {\"type\":\"function\",\"function\":{\"name\":..}}, got %s.",
                       p, type_name(t));
        json_t *type = json_object_get(t, "type");
        pathf(p, "tools[%zu].type", i);
        if (!type || json_is_null(type))
            return bad(v, "missing_required_parameter", p, "Missing required parameter '%s': \"function\".", p);
        if (!json_is_string(type))
            return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(type));
        const char *ts = json_string_value(type);
        if (strcmp(ts, "function") != 0 && strcmp(ts, "custom") != 0)
            return bad(v, "invalid_value", p, "'%s' must be \"function\" or \"custom\", got '%.64s'.", p, ts);
        json_t *fn = json_object_get(t, ts);
        pathf(p, "tools[%zu].%s", i, ts);
        if (!fn || json_is_null(fn))
            return bad(v, "missing_required_parameter", p, "Missing required parameter '%s': an object with a name.",
                       p);
        if (!json_is_object(fn))
            return bad(v, "invalid_type", p, "'%s' must be an object with a name, got %s.", p, type_name(fn));
        json_t *name = json_object_get(fn, "name");
        pathf(p, "tools[%zu].%s.name", i, ts);
        if (!name || json_is_null(name))
            return bad(v, "missing_required_parameter", p, "Missing required parameter '%s': the tool's name.", p);
        if (!json_is_string(name))
            return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(name));
        if (json_string_length(name) == 0)
            return bad(v, "invalid_value", p, "'%s' must not be empty.", p);
        json_t *params = opt(fn, "parameters");
        pathf(p, "tools[%zu].%s.parameters", i, ts);
        if (params && !json_is_object(params))
            return bad(v, "invalid_type", p, "'%s' must be a JSON Schema object, got %s.", p, type_name(params));
    }
    r->has_tools = json_array_size(tools) > 0;
    return 0;
}

static int decode_tool_choice(vctx *v, json_t *root)
{
    json_t *tc = opt(root, "tool_choice");
    if (!tc)
        return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "none") && strcmp(s, "auto") && strcmp(s, "required"))
            return bad(v, "invalid_value", "tool_choice",
                       "'tool_choice' must be \"none\", \"auto\", \"required\" or an object, got '%.64s'.", s);
        return 0;
    }
    if (!json_is_object(tc))
        return bad(v, "invalid_type", "tool_choice",
                   "'tool_choice' must be \"none\", \"auto\", \"required\" or an object, got %s.", type_name(tc));
    json_t *type = json_object_get(tc, "type");
    if (!json_is_string(type))
        return bad(v, "missing_required_parameter", "tool_choice.type",
                   "Missing required parameter 'tool_choice.type': a string such as \"function\".");
    if (strcmp(json_string_value(type), "function") == 0) {
        json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
            return bad(v, "missing_required_parameter", "tool_choice.function.name",
                       "Missing required parameter 'tool_choice.function.name': the function to call.");
    }
    return 0;
}

static int decode_response_format(vctx *v, json_t *root, sl_request *r)
{
    json_t *rf = opt(root, "response_format");
    if (!rf)
        return 0;
    if (!json_is_object(rf))
        return bad(v, "invalid_type", "response_format",
                   "'response_format' must be an object like {\"type\":\"json_object\"}, got %s.", type_name(rf));
    json_t *type = json_object_get(rf, "type");
    if (!type || json_is_null(type))
        return bad(v, "missing_required_parameter", "response_format.type",
                   "Missing required parameter 'response_format.type': text, json_object or json_schema.");
    if (!json_is_string(type))
        return bad(v, "invalid_type", "response_format.type", "'response_format.type' must be a string, got %s.",
                   type_name(type));
    static const char *const types[] = {"text", "json_object", "json_schema"};
    const char *ts = json_string_value(type);
    size_t i;
    for (i = 0; i < SL_ARRAY_LEN(types); i++) {
        if (strcmp(ts, types[i]) == 0)
            break;
    }
    if (i == SL_ARRAY_LEN(types))
        return bad(v, "invalid_value", "response_format.type",
                   "'response_format.type' must be text, json_object or json_schema, got '%.64s'.", ts);
    r->response_format_type = types[i];
    if (i == 2) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return bad(v, "missing_required_parameter", "response_format.json_schema",
                       "Missing required parameter 'response_format.json_schema': an object with a name and a "
                       "schema.");
        json_t *name = json_object_get(js, "name");
        if (!json_is_string(name))
            return bad(v, "missing_required_parameter", "response_format.json_schema.name",
                       "Missing required parameter 'response_format.json_schema.name': a string.");
        json_t *schema = opt(js, "schema");
        if (schema && !json_is_object(schema))
            return bad(v, "invalid_type", "response_format.json_schema.schema",
                       "'response_format.json_schema.schema' must be a JSON Schema object, got %s.",
                       type_name(schema));
    }
    return 0;
}

static int decode_logit_bias(vctx *v, json_t *root)
{
    json_t *lb = opt(root, "logit_bias");
    if (!lb)
        return 0;
    if (!json_is_object(lb))
        return bad(v, "invalid_type", "logit_bias",
                   "'logit_bias' must be an object mapping token ids to biases, got %s.", type_name(lb));
    const char *key;
    json_t *val;
    json_object_foreach(lb, key, val) {
        if (!json_is_number(val) || json_number_value(val) < -100 || json_number_value(val) > 100)
            return bad(v, "invalid_value", "logit_bias",
                       "'logit_bias' values must be numbers between -100 and 100; token '%.32s' has %s.", key,
                       json_is_number(val) ? "a value out of range" : type_name(val));
    }
    return 0;
}

static int decode_stop(vctx *v, json_t *root, sl_request *r)
{
    char p[PATH_LEN];
    json_t *s = opt(root, "stop");
    if (!s)
        return 0;
    if (json_is_string(s)) {
        if (!(r->stop[0] = adup(v, s)))
            return oom(v);
        r->n_stop = 1;
        return 0;
    }
    if (!json_is_array(s))
        return bad(v, "invalid_type", "stop", "'stop' must be a string or an array of at most 4 strings, got %s.",
                   type_name(s));
    size_t n = json_array_size(s);
    if (n > SL_ARRAY_LEN(r->stop))
        return bad(v, "invalid_value", "stop", "'stop' must have at most 4 sequences, got %zu.", n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(s, i);
        pathf(p, "stop[%zu]", i);
        if (!json_is_string(e))
            return bad(v, "invalid_type", p, "'%s' must be a string, got %s.", p, type_name(e));
        if (!(r->stop[i] = adup(v, e)))
            return oom(v);
    }
    r->n_stop = n;
    return 0;
}

/* ---- per kind ---- */

static int decode_generation(vctx *v, json_t *root, sl_request *r)
{
    int rc;
    int64_t x;
    bool has = false;
    if (r->kind == SL_API_CHAT)
        rc = decode_messages(v, root, r);
    else
        rc = decode_text_or_tokens(v, root, "prompt", true, SIZE_MAX, &r->prompts, &r->n_prompts,
                                   &r->n_token_prompts);
    if (rc)
        return rc;
    if ((rc = opt_number(v, root, "temperature", 0, 2, &r->has_temperature, &r->temperature)) ||
        (rc = opt_number(v, root, "top_p", 0, 1, &r->has_top_p, &r->top_p)) ||
        (rc = opt_number(v, root, "presence_penalty", -2, 2, NULL, &r->presence_penalty)) ||
        (rc = opt_number(v, root, "frequency_penalty", -2, 2, NULL, &r->frequency_penalty)))
        return rc;
    x = 1;
    if ((rc = opt_int(v, root, "n", 1, SL_API_MAX_N, NULL, &x)))
        return rc;
    r->n = (int)x;
    if ((rc = opt_int(v, root, "max_tokens", 1, INT64_MAX, &r->has_max_tokens, &r->max_tokens)))
        return rc;
    if (r->kind == SL_API_CHAT &&
        (rc = opt_int(v, root, "max_completion_tokens", 1, INT64_MAX, &r->has_max_tokens, &r->max_tokens)))
        return rc;
    if ((rc = opt_int(v, root, "seed", INT64_MIN, INT64_MAX, &r->has_seed, &r->seed)) ||
        (rc = decode_stop(v, root, r)) || (rc = decode_logit_bias(v, root)) ||
        (rc = opt_bool(v, root, "stream", &r->stream)))
        return rc;

    json_t *so = opt(root, "stream_options");
    if (so) {
        if (!json_is_object(so))
            return bad(v, "invalid_type", "stream_options",
                       "'stream_options' must be an object like {\"include_usage\":true}, got %s.", type_name(so));
        if (!r->stream)
            return bad(v, "invalid_value", "stream_options",
                       "'stream_options' is only allowed when 'stream' is true. Set stream to true or remove "
                       "stream_options.");
        json_t *iu = opt(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return bad(v, "invalid_type", "stream_options.include_usage",
                       "'stream_options.include_usage' must be a boolean, got %s.", type_name(iu));
        r->include_usage = iu && json_is_true(iu);
    }

    if (r->kind == SL_API_CHAT) {
        if ((rc = opt_bool(v, root, "logprobs", &r->logprobs)))
            return rc;
        x = 0;
        if ((rc = opt_int(v, root, "top_logprobs", 0, 20, NULL, &x)))
            return rc;
        r->top_logprobs = (int)x;
        if ((rc = opt_bool(v, root, "parallel_tool_calls", &(bool){false})) || (rc = decode_tools(v, root, r)) ||
            (rc = decode_tool_choice(v, root)) || (rc = decode_response_format(v, root, r)))
            return rc;
        return 0;
    }

    /* completions: logprobs is an integer here, the number of top tokens */
    x = 0;
    if ((rc = opt_int(v, root, "logprobs", 0, 5, &has, &x)))
        return rc;
    r->logprobs = has;
    r->top_logprobs = (int)x;
    x = 1;
    if ((rc = opt_bool(v, root, "echo", &(bool){false})) || (rc = opt_int(v, root, "best_of", 0, 20, NULL, &x)) ||
        (rc = opt_string(v, root, "suffix", NULL)))
        return rc;
    return 0;
}

static int decode_embeddings(vctx *v, json_t *root, sl_request *r)
{
    int rc = decode_text_or_tokens(v, root, "input", false, SL_API_MAX_EMBED_INPUTS, &r->inputs, &r->n_inputs,
                                   &r->n_token_inputs);
    if (rc)
        return rc;
    json_t *ef = opt(root, "encoding_format");
    if (ef) {
        if (!json_is_string(ef))
            return bad(v, "invalid_type", "encoding_format",
                       "'encoding_format' must be \"float\" or \"base64\", got %s.", type_name(ef));
        const char *s = json_string_value(ef);
        if (strcmp(s, "float") == 0)
            r->encoding_format = "float";
        else if (strcmp(s, "base64") == 0)
            r->encoding_format = "base64";
        else
            return bad(v, "invalid_value", "encoding_format",
                       "'encoding_format' must be \"float\" or \"base64\", got '%.64s'.", s);
    }
    return opt_int(v, root, "dimensions", 1, INT64_MAX, &r->has_dimensions, &r->dimensions);
}

static int decode_model(vctx *v, json_t *root, sl_request *r)
{
    json_t *m = opt(root, "model");
    if (!m)
        return bad(v, "missing_required_parameter", "model",
                   "Missing required parameter 'model': the name of the model to use (GET /v1/models lists them).");
    if (!json_is_string(m))
        return bad(v, "invalid_type", "model", "'model' must be a string, got %s.", type_name(m));
    if (json_string_length(m) == 0)
        return bad(v, "invalid_value", "model", "'model' must not be empty.");
    if (json_string_length(m) > MODEL_MAX_LEN)
        return bad(v, "invalid_value", "model", "'model' must be at most %d bytes, got %zu.", MODEL_MAX_LEN,
                   json_string_length(m));
    if (!(r->model = adup(v, m)))
        return oom(v);
    return 0;
}

int sl_api_decode_request(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out,
                          sl_api_error *err)
{
    if (sl_api_decode_fast(kind, body, len, arena, out) == 0)
        return 0;
    return sl_api_decode_full(kind, body, len, arena, out, err);
}

int sl_api_decode_full(sl_api_kind kind, const char *body, size_t len, sl_arena *arena, sl_request **out,
                       sl_api_error *err)
{
    vctx v = {arena, err, kind};
    *out = NULL;
    if (len == 0) {
        sl_api_error_bad_request(err, "invalid_json", NULL,
                                 "The request body is empty. Send a JSON object with Content-Type: "
                                 "application/json.");
        return SL_EPARSE;
    }
    json_t *root;
    char why[256];
    if (sl_api_json_load(body, len, &root, why, sizeof why)) {
        sl_api_error_bad_request(err, "invalid_json", NULL,
                                 "We could not parse the JSON body of your request: %s. Send a valid JSON object.",
                                 why);
        return SL_EPARSE;
    }
    if (!json_is_object(root)) {
        bad(&v, "invalid_type", NULL, "The request body must be a JSON object, got %s.", type_name(root));
        json_decref(root);
        return SL_EINVAL;
    }
    sl_request *r = sl_arena_calloc(arena, sizeof *r);
    if (!r) {
        json_decref(root);
        return oom(&v);
    }
    r->kind = kind;
    r->n = 1;
    int rc = check_forbidden(&v, root);
    if (!rc)
        rc = decode_model(&v, root, r);
    if (!rc)
        rc = opt_string(&v, root, "user", &r->user);
    if (!rc)
        rc = kind == SL_API_EMBEDDINGS ? decode_embeddings(&v, root, r) : decode_generation(&v, root, r);
    if (rc) {
        json_decref(root);
        return rc;
    }
    r->body = root;
    *out = r;
    return 0;
}

void sl_request_release(sl_request *r)
{
    if (!r)
        return;
    json_decref(r->body);
    r->body = NULL;
}

/* ---- upstream body ---- */

/* ---- the upstream body ----
 * Written straight from the decoded tree, byte for byte what jansson's
 * json_dump_callback writes with SL_API_JSON_DUMP_FLAGS (compact, members in
 * insertion order, strings escaped as it escapes them, reals as "%.15g" with
 * its fix-ups), without the shallow copy and the per-value callbacks that
 * cost more than decoding the request. tests/fuzz/api_request.c compares the
 * two on every input. */

static int put(sl_buf *out, const char *p, size_t n) { return sl_buf_append(out, p, n); }

/* A JSON string the way jansson escapes it: \\ \" \b \f \n \r \t, other
 * bytes below 0x20 as \u00XX (upper-case hex), everything else raw (the
 * tree's strings are valid UTF-8 without NUL). */
static int dump_string(sl_buf *out, const char *s, size_t n)
{
    int rc = sl_buf_append_char(out, '"');
    size_t run = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = put(out, s + run, i - run);
        run = i + 1;
        char seq[8];
        const char *t = seq;
        size_t tl = 2;
        switch (c) {
        case '"': t = "\\\""; break;
        case '\\': t = "\\\\"; break;
        case '\b': t = "\\b"; break;
        case '\f': t = "\\f"; break;
        case '\n': t = "\\n"; break;
        case '\r': t = "\\r"; break;
        case '\t': t = "\\t"; break;
        default: {
            static const char hex[] = "0123456789ABCDEF";
            memcpy(seq, "\\u00", 4);
            seq[4] = hex[c >> 4];
            seq[5] = hex[c & 15];
            tl = 6;
            break;
        }
        }
        if (!rc)
            rc = put(out, t, tl);
    }
    if (!rc)
        rc = put(out, s + run, n - run);
    if (!rc)
        rc = sl_buf_append_char(out, '"');
    return rc;
}

static int dump_integer(sl_buf *out, json_int_t v)
{
    char d[24];
    int k = 0;
    unsigned long long x = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        d[k++] = (char)('0' + x % 10);
        x /= 10;
    } while (x);
    if (v < 0)
        d[k++] = '-';
    char r[24];
    for (int i = 0; i < k; i++)
        r[i] = d[k - 1 - i];
    return put(out, r, (size_t)k);
}

/* jansson's real format: "%.15g", ".0" added when neither '.' nor 'e' is in
 * it, and the exponent without '+' or leading zeros. */
static int dump_real(sl_buf *out, double v)
{
    char b[32];
    int n = snprintf(b, sizeof b - 3, "%.15g", v);
    if (n < 0 || (size_t)n >= sizeof b - 3)
        return SL_EINVAL;
    size_t len = (size_t)n;
    if (!memchr(b, '.', len) && !memchr(b, 'e', len)) {
        memcpy(b + len, ".0", 3);
        len += 2;
    }
    char *e = memchr(b, 'e', len);
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - b) + 1);
            len -= (size_t)(end - start);
        }
    }
    return put(out, b, len);
}

static int dump_value(sl_buf *out, const json_t *j);

static int dump_key(sl_buf *out, const char *key, bool first)
{
    int rc = first ? 0 : sl_buf_append_char(out, ',');
    if (!rc)
        rc = dump_string(out, key, strlen(key));
    if (!rc)
        rc = sl_buf_append_char(out, ':');
    return rc;
}

static int dump_value(sl_buf *out, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        int rc = sl_buf_append_char(out, '{');
        bool first = true;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            if (!rc)
                rc = dump_key(out, key, first);
            if (!rc)
                rc = dump_value(out, v);
            first = false;
        }
        return rc ? rc : sl_buf_append_char(out, '}');
    }
    case JSON_ARRAY: {
        int rc = sl_buf_append_char(out, '[');
        for (size_t i = 0; !rc && i < json_array_size(j); i++) {
            if (i)
                rc = sl_buf_append_char(out, ',');
            if (!rc)
                rc = dump_value(out, json_array_get(j, i));
        }
        return rc ? rc : sl_buf_append_char(out, ']');
    }
    case JSON_STRING: return dump_string(out, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return dump_integer(out, json_integer_value(j));
    case JSON_REAL: return dump_real(out, json_real_value(j));
    case JSON_TRUE: return put(out, "true", 4);
    case JSON_FALSE: return put(out, "false", 5);
    case JSON_NULL: return put(out, "null", 4);
    }
    return SL_EINVAL;
}

/* stream_options with include_usage forced true: in its place when the
 * client sent it, else last; a stream_options that is not an object is
 * replaced by {"include_usage":true}. */
static int dump_stream_options(sl_buf *out, const json_t *so)
{
    int rc = sl_buf_append_char(out, '{');
    bool first = true, seen = false;
    if (json_is_object(so)) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)so, key, v) {
            if (!rc)
                rc = dump_key(out, key, first);
            first = false;
            if (!rc && !strcmp(key, "include_usage")) {
                seen = true;
                rc = put(out, "true", 4);
            } else if (!rc) {
                rc = dump_value(out, v);
            }
        }
    }
    if (!rc && !seen)
        rc = dump_key(out, "include_usage", first);
    if (!rc && !seen)
        rc = put(out, "true", 4);
    return rc ? rc : sl_buf_append_char(out, '}');
}

int sl_api_upstream_body(const sl_request *r, const char *upstream_model, sl_buf *out)
{
    /* the check json_string makes, without its allocation: upstream_model must be UTF-8 */
    if (!lex_utf8_valid((const unsigned char *)upstream_model, strlen(upstream_model)))
        return SL_EINVAL;
    if (r->raw)
        return sl_api_upstream_body_fast(r, upstream_model, out);
    bool force_usage = r->stream && r->kind != SL_API_EMBEDDINGS;
    size_t mark = out->len;
    int rc = sl_buf_append_char(out, '{');
    bool first = true, so_done = false, model_done = false;
    const char *key;
    json_t *v;
    json_object_foreach(r->body, key, v) {
        if (!rc)
            rc = dump_key(out, key, first);
        first = false;
        if (rc)
            break;
        if (!strcmp(key, "model")) {
            rc = dump_string(out, upstream_model, strlen(upstream_model));
            model_done = true;
        } else if (force_usage && !strcmp(key, "stream_options")) {
            rc = dump_stream_options(out, v);
            so_done = true;
        } else {
            rc = dump_value(out, v);
        }
    }
    if (!rc && !model_done) { /* decoding requires a model: not reached, kept for the contract */
        rc = dump_key(out, "model", first);
        first = false;
        if (!rc)
            rc = dump_string(out, upstream_model, strlen(upstream_model));
    }
    if (!rc && force_usage && !so_done) {
        rc = dump_key(out, "stream_options", first);
        if (!rc)
            rc = dump_stream_options(out, NULL);
    }
    if (!rc)
        rc = sl_buf_append_char(out, '}');
    if (rc)
        return sl_buf_rollback(out, mark, rc == SL_ENOMEM ? SL_ENOMEM : SL_ETOOBIG);
    return 0;
}
