/* Reading upstream responses and streamed chunks, rewriting their model name,
 * and the /v1/models shapes. Upstream bytes are outside input like any other:
 * every malformed shape is tolerated or reported, never trusted. */
#include "api/api.h"

#include <stdio.h>
#include <string.h>

/* Returns the byte offset where nesting first exceeds SL_API_MAX_DEPTH, or
 * len when it never does. Brackets inside strings do not count. */
static size_t depth_scan(const char *p, size_t len)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > SL_API_MAX_DEPTH)
                return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return len;
}

int sl_api_json_load(const char *data, size_t len, json_t **out, char *why, size_t why_size)
{
    *out = NULL;
    size_t deep = depth_scan(data, len);
    if (deep < len) {
        if (why)
            snprintf(why, why_size, "byte %zu: nesting deeper than %d levels", deep, SL_API_MAX_DEPTH);
        return SL_EPARSE;
    }
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_DECODE_ANY, &je);
    if (!root) {
        if (why)
            snprintf(why, why_size, "line %d, column %d (byte %d): %s", je.line, je.column, je.position,
                     je.text);
        return SL_EPARSE;
    }
    *out = root;
    return 0;
}

static json_t *load_object(const char *data, size_t len)
{
    json_t *j;
    if (sl_api_json_load(data, len, &j, NULL, 0))
        return NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool read_count(json_t *o, const char *key, int64_t *out)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_integer(j))
        return false;
    json_int_t x = json_integer_value(j);
    *out = x < 0 ? 0 : (int64_t)x;
    return true;
}

/* Writes *usage only when u is a usage object with at least one count. */
static void read_usage(json_t *u, sl_usage *usage)
{
    if (!json_is_object(u) || !usage)
        return;
    sl_usage x = {0};
    bool any = read_count(u, "prompt_tokens", &x.prompt_tokens);
    any |= read_count(u, "completion_tokens", &x.completion_tokens);
    bool has_total = read_count(u, "total_tokens", &x.total_tokens);
    if (!any && !has_total)
        return;
    if (!has_total)
        x.total_tokens = x.prompt_tokens + x.completion_tokens;
    read_count(json_object_get(u, "prompt_tokens_details"), "cached_tokens", &x.cached_tokens);
    x.known = true;
    *usage = x;
}

int sl_api_parse_response(const char *body, size_t len, sl_usage *usage)
{
    if (usage)
        memset(usage, 0, sizeof *usage);
    sl_api_scan sc;
    if (sl_api_scan_upstream(body, len, &sc) == 0) {
        if (usage)
            *usage = sc.usage;
        return 0;
    }
    json_t *root = load_object(body, len);
    if (!root)
        return SL_EPARSE;
    read_usage(json_object_get(root, "usage"), usage);
    json_decref(root);
    return 0;
}

static int dump_to_buf(const char *p, size_t n, void *data)
{
    return sl_buf_append(data, p, n) ? -1 : 0;
}

int sl_api_rewrite_model(const char *data, size_t len, const char *client_model, sl_buf *out)
{
    json_t *root = load_object(data, len);
    if (!root)
        return SL_EPARSE;
    int rc = 0;
    if (json_object_get(root, "model")) {
        json_t *m = json_string(client_model);
        if (!m || json_object_set_new(root, "model", m)) {
            rc = m ? SL_ENOMEM : SL_EINVAL;
            goto done;
        }
    }
    size_t mark = out->len;
    if (json_dump_callback(root, dump_to_buf, out, SL_API_JSON_DUMP_FLAGS))
        rc = sl_buf_rollback(out, mark, SL_ETOOBIG);
done:
    json_decref(root);
    return rc;
}

static bool nonempty_string(json_t *j) { return json_is_string(j) && json_string_length(j) > 0; }

static bool choice_has_content(json_t *choice)
{
    if (nonempty_string(json_object_get(choice, "text")))
        return true;
    json_t *d = json_object_get(choice, "delta");
    if (!json_is_object(d))
        return false;
    static const char *const text_keys[] = {"content", "refusal", "reasoning_content", "reasoning"};
    for (size_t i = 0; i < SL_ARRAY_LEN(text_keys); i++) {
        if (nonempty_string(json_object_get(d, text_keys[i])))
            return true;
    }
    json_t *tc = json_object_get(d, "tool_calls");
    return (json_is_array(tc) && json_array_size(tc) > 0) || json_is_object(json_object_get(d, "function_call"));
}

int sl_api_inspect_chunk(const char *data, size_t len, sl_usage *usage, bool *has_content, bool *finish,
                         bool *is_usage_only)
{
    bool content = false, fin = false, usage_only = false;
    sl_api_scan sc;
    if (sl_api_scan_upstream(data, len, &sc) == 0) {
        if (usage && sc.usage.known)
            *usage = sc.usage;
        if (has_content)
            *has_content = sc.has_content;
        if (finish)
            *finish = sc.finish;
        if (is_usage_only)
            *is_usage_only = sc.usage_only;
        return 0;
    }
    json_t *root = load_object(data, len);
    if (!root) {
        if (has_content)
            *has_content = false;
        if (finish)
            *finish = false;
        if (is_usage_only)
            *is_usage_only = false;
        return SL_EPARSE;
    }
    json_t *choices = json_object_get(root, "choices");
    size_t n = json_is_array(choices) ? json_array_size(choices) : 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(choices, i);
        if (!json_is_object(c))
            continue;
        content = content || choice_has_content(c);
        fin = fin || json_is_string(json_object_get(c, "finish_reason"));
    }
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        read_usage(u, usage);
        usage_only = n == 0;
    }
    if (has_content)
        *has_content = content;
    if (finish)
        *finish = fin;
    if (is_usage_only)
        *is_usage_only = usage_only;
    json_decref(root);
    return 0;
}

/* ---- /v1/models ---- */

static int model_object(const sl_api_model *m, sl_buf *out)
{
    const char *owner = m->owned_by ? m->owned_by : "sluice";
    const char *id = m->id ? m->id : "";
    int rc = sl_buf_append_str(out, "{\"id\":");
    if (!rc)
        rc = sl_api_json_quote(out, id, strlen(id));
    if (!rc)
        rc = sl_buf_appendf(out, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":", (long long)m->created);
    if (!rc)
        rc = sl_api_json_quote(out, owner, strlen(owner));
    if (!rc)
        rc = sl_buf_append_char(out, '}');
    return rc;
}


int sl_api_model_object(const sl_api_model *m, sl_buf *out)
{
    size_t mark = out->len;
    return sl_buf_rollback(out, mark, model_object(m, out));
}

int sl_api_models_list(const sl_api_model *models, size_t n, sl_buf *out)
{
    size_t mark = out->len;
    int rc = sl_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = sl_buf_append_char(out, ',');
        if (!rc)
            rc = model_object(&models[i], out);
    }
    if (!rc)
        rc = sl_buf_append_str(out, "]}");
    return sl_buf_rollback(out, mark, rc);
}
