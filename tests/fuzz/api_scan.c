/* Differential fuzzing of the upstream scanner (src/api/scan.c) against a
 * reference written here over jansson's tree: whenever the scanner answers,
 * the full parser must accept the same bytes and give the same results; and
 * sl_api_inspect_chunk / sl_api_parse_response (scanner first, tree parser as
 * fallback) must always agree with the reference, return code included. */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool count(json_t *o, const char *key, int64_t *out)
{
    json_t *j = json_object_get(o, key);
    if (!json_is_integer(j))
        return false;
    *out = json_integer_value(j) < 0 ? 0 : json_integer_value(j);
    return true;
}

static bool str_nonempty(json_t *o, const char *key)
{
    json_t *j = json_object_get(o, key);
    return json_is_string(j) && json_string_length(j) > 0;
}

/* The reference: 0 and *out, or SL_EPARSE. */
static int reference(const char *p, size_t len, sl_api_scan *out)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    if (sl_api_json_load(p, len, &root, NULL, 0))
        return SL_EPARSE;
    if (!json_is_object(root)) {
        json_decref(root);
        return SL_EPARSE;
    }
    json_t *ch = json_object_get(root, "choices");
    size_t n = json_is_array(ch) ? json_array_size(ch) : 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(ch, i);
        if (!json_is_object(c))
            continue;
        if (json_is_string(json_object_get(c, "finish_reason")))
            out->finish = true;
        json_t *d = json_object_get(c, "delta");
        json_t *tc = json_is_object(d) ? json_object_get(d, "tool_calls") : NULL;
        if (str_nonempty(c, "text") ||
            (json_is_object(d) && (str_nonempty(d, "content") || str_nonempty(d, "refusal") ||
                                   str_nonempty(d, "reasoning_content") || str_nonempty(d, "reasoning") ||
                                   (json_is_array(tc) && json_array_size(tc) > 0) ||
                                   json_is_object(json_object_get(d, "function_call")))))
            out->has_content = true;
    }
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        out->usage_only = n == 0;
        sl_usage x = {0};
        bool any = count(u, "prompt_tokens", &x.prompt_tokens);
        any |= count(u, "completion_tokens", &x.completion_tokens);
        bool total = count(u, "total_tokens", &x.total_tokens);
        if (any || total) {
            if (!total)
                x.total_tokens = x.prompt_tokens + x.completion_tokens;
            count(json_object_get(u, "prompt_tokens_details"), "cached_tokens", &x.cached_tokens);
            x.known = true;
            out->usage = x;
        }
    }
    json_decref(root);
    return 0;
}

static bool same_usage(const sl_usage *a, const sl_usage *b)
{
    if (a->known != b->known)
        return false;
    return !a->known || (a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
                         a->total_tokens == b->total_tokens && a->cached_tokens == b->cached_tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    sl_api_scan ref, sc;
    int ref_rc = reference(p, size, &ref);
    int rc = sl_api_scan_upstream(p, size, &sc);
    if (rc != 0 && rc != SL_EUNSUPPORTED)
        abort();
    if (rc == 0 && (ref_rc != 0 || sc.has_content != ref.has_content || sc.finish != ref.finish ||
                    sc.usage_only != ref.usage_only || !same_usage(&sc.usage, &ref.usage)))
        abort();

    /* the public readers, fast path or not */
    sl_usage u = {.known = false, .prompt_tokens = -7};
    bool content = true, finish = true, usage_only = true;
    rc = sl_api_inspect_chunk(p, size, &u, &content, &finish, &usage_only);
    if (rc != ref_rc)
        abort();
    if (rc == 0) {
        if (content != ref.has_content || finish != ref.finish || usage_only != ref.usage_only)
            abort();
        if (ref.usage.known ? !same_usage(&u, &ref.usage) : (u.known || u.prompt_tokens != -7))
            abort();
    }
    sl_usage r;
    rc = sl_api_parse_response(p, size, &r);
    if (rc != ref_rc || (rc == 0 && !same_usage(&r, &ref.usage)))
        abort();
    return 0;
}
