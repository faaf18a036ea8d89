/* Differential fuzzing of the fast request decoder (src/api/fastreq.c)
 * against the full one (jansson's tree and the validator in request.c). The
 * whole input is the body, decoded as each of the three kinds. Whenever the
 * fast decoder accepts, the full one must accept too, with the same typed
 * fields (strings by content, arrays element by element), and the two
 * upstream bodies, for two upstream models and with stream as sent and
 * flipped, must parse into equal JSON values. sl_api_decode_request must
 * always answer what the full decoder answers, error included. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

static bool strs_eq(const char *const *a, const char *const *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void same_fields(const sl_request *f, const sl_request *s)
{
    check(f->body == NULL && f->raw != NULL && s->raw == NULL && json_is_object(s->body));
    check(f->kind == s->kind && str_eq(f->model, s->model) && f->stream == s->stream &&
          f->include_usage == s->include_usage);
    check(f->n_messages == s->n_messages);
    for (size_t i = 0; i < f->n_messages; i++) {
        const sl_api_message *a = &f->messages[i], *b = &s->messages[i];
        check(a->role == b->role && str_eq(a->text, b->text) && str_eq(a->name, b->name) &&
              str_eq(a->tool_call_id, b->tool_call_id) && a->n_tool_calls == b->n_tool_calls &&
              a->n_media_parts == b->n_media_parts);
    }
    check(f->n_prompts == s->n_prompts && strs_eq(f->prompts, s->prompts, f->n_prompts) &&
          f->n_token_prompts == s->n_token_prompts);
    check(f->n_inputs == s->n_inputs && strs_eq(f->inputs, s->inputs, f->n_inputs) &&
          f->n_token_inputs == s->n_token_inputs);
    check(str_eq(f->encoding_format, s->encoding_format) && f->has_dimensions == s->has_dimensions &&
          f->dimensions == s->dimensions);
    check(f->has_temperature == s->has_temperature && f->temperature == s->temperature &&
          f->has_top_p == s->has_top_p && f->top_p == s->top_p && f->n == s->n);
    check(f->has_max_tokens == s->has_max_tokens && f->max_tokens == s->max_tokens);
    check(f->n_stop == s->n_stop && strs_eq(f->stop, s->stop, f->n_stop));
    check(f->has_seed == s->has_seed && f->seed == s->seed && str_eq(f->user, s->user));
    check(f->presence_penalty == s->presence_penalty && f->frequency_penalty == s->frequency_penalty);
    check(f->logprobs == s->logprobs && f->top_logprobs == s->top_logprobs && f->has_tools == s->has_tools &&
          str_eq(f->response_format_type, s->response_format_type));
}

static json_t *upstream(const sl_request *r, const char *model)
{
    sl_buf out;
    sl_buf_init(&out, 1 << 23);
    check(sl_api_upstream_body(r, model, &out) == 0);
    json_t *j = json_loadb(out.data, out.len, JSON_REJECT_DUPLICATES, NULL);
    check(json_is_object(j));
    sl_buf_free(&out);
    return j;
}

static void same_upstream(const sl_request *f, const sl_request *s)
{
    static const char *const models[] = {"upstream-model", "q\"uo\\te \xc3\xa9\n"};
    for (int flip = 0; flip < 2; flip++) {
        sl_request a = *f, b = *s;
        if (flip) {
            a.stream = !a.stream;
            b.stream = !b.stream;
        }
        for (size_t m = 0; m < 2; m++) {
            json_t *x = upstream(&a, models[m]), *y = upstream(&b, models[m]);
            check(json_equal(x, y));
            check(str_eq(json_string_value(json_object_get(x, "model")), models[m]));
            json_decref(x);
            json_decref(y);
        }
    }
}

static void same_error(int rc_a, const sl_api_error *a, int rc_b, const sl_api_error *b)
{
    check(rc_a == rc_b);
    if (rc_a == 0)
        return;
    check(a->status == b->status && str_eq(a->type, b->type) && str_eq(a->code, b->code) &&
          str_eq(a->param, b->param) && strcmp(a->message, b->message) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    for (int k = 0; k < 3; k++) {
        sl_api_kind kind = (sl_api_kind)k;
        sl_arena *arena = sl_arena_create(4096);
        if (!arena)
            return 0;
        sl_request *fast = NULL, *full = NULL, *pub = NULL;
        sl_api_error e_full, e_pub;
        int rc_fast = sl_api_decode_fast(kind, body, size, arena, &fast);
        int rc_full = sl_api_decode_full(kind, body, size, arena, &full, &e_full);
        int rc_pub = sl_api_decode_request(kind, body, size, arena, &pub, &e_pub);
        check(rc_fast == 0 || rc_fast == SL_EUNSUPPORTED);
        check((rc_fast == 0) == (fast != NULL));
        same_error(rc_pub, &e_pub, rc_full, &e_full);
        if (rc_fast == 0) {
            check(rc_full == 0);
            same_fields(fast, full);
            same_upstream(fast, full);
            check(pub && pub->raw != NULL);
            same_fields(pub, full);
        } else if (rc_pub == 0) {
            check(pub->raw == NULL && pub->body != NULL);
        }
        sl_request_release(fast);
        sl_request_release(full);
        sl_request_release(pub);
        sl_arena_destroy(arena);
    }
    return 0;
}
