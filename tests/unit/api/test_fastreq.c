/* The fast request decoder (src/api/fastreq.c): the requests it must accept
 * (every field, and the upstream body byte for byte), the ones it must leave
 * to the full decoder (each edge of the whitelist), and for every case that
 * sl_api_decode_request answers exactly what the full decoder alone answers. */
#include "api/internal.h"
#include "core/core.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

/* Table bodies use ' for " so that they stay readable; none needs a literal '. */
static char *dq(const char *s)
{
    char *d = sl_strdup(s);
    for (char *p = d; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    return d;
}

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* Field by field, strings by content; body and raw excepted. */
static bool same_fields(const sl_request *f, const sl_request *s)
{
    if (f->kind != s->kind || !str_eq(f->model, s->model) || f->stream != s->stream ||
        f->include_usage != s->include_usage || f->n_messages != s->n_messages || f->n_prompts != s->n_prompts ||
        f->n_inputs != s->n_inputs || f->n_token_prompts != s->n_token_prompts ||
        f->n_token_inputs != s->n_token_inputs || f->n_stop != s->n_stop)
        return false;
    for (size_t i = 0; i < f->n_messages; i++) {
        const sl_api_message *a = &f->messages[i], *b = &s->messages[i];
        if (a->role != b->role || !str_eq(a->text, b->text) || !str_eq(a->name, b->name) ||
            !str_eq(a->tool_call_id, b->tool_call_id) || a->n_tool_calls != b->n_tool_calls ||
            a->n_media_parts != b->n_media_parts)
            return false;
    }
    for (size_t i = 0; i < f->n_prompts; i++)
        if (!str_eq(f->prompts[i], s->prompts[i]))
            return false;
    for (size_t i = 0; i < f->n_inputs; i++)
        if (!str_eq(f->inputs[i], s->inputs[i]))
            return false;
    for (size_t i = 0; i < f->n_stop; i++)
        if (!str_eq(f->stop[i], s->stop[i]))
            return false;
    return str_eq(f->encoding_format, s->encoding_format) && f->has_dimensions == s->has_dimensions &&
           f->dimensions == s->dimensions && f->has_temperature == s->has_temperature &&
           f->temperature == s->temperature && f->has_top_p == s->has_top_p && f->top_p == s->top_p &&
           f->n == s->n && f->has_max_tokens == s->has_max_tokens && f->max_tokens == s->max_tokens &&
           f->has_seed == s->has_seed && f->seed == s->seed && str_eq(f->user, s->user) &&
           f->presence_penalty == s->presence_penalty && f->frequency_penalty == s->frequency_penalty &&
           f->logprobs == s->logprobs && f->top_logprobs == s->top_logprobs && f->has_tools == s->has_tools &&
           str_eq(f->response_format_type, s->response_format_type);
}

/* Both upstream bodies (stream as sent and flipped) parse to equal values. */
static bool same_upstream(const sl_request *f, const sl_request *s)
{
    bool ok = true;
    for (int flip = 0; flip < 2 && ok; flip++) {
        sl_request a = *f, b = *s;
        a.stream ^= flip;
        b.stream ^= flip;
        sl_buf x, y;
        sl_buf_init(&x, 1 << 20);
        sl_buf_init(&y, 1 << 20);
        ok = sl_api_upstream_body(&a, "up/model", &x) == 0 && sl_api_upstream_body(&b, "up/model", &y) == 0;
        json_t *jx = ok ? json_loadb(x.data, x.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
        json_t *jy = ok ? json_loadb(y.data, y.len, 0, NULL) : NULL;
        ok = ok && jx && jy && json_equal(jx, jy);
        json_decref(jx);
        json_decref(jy);
        sl_buf_free(&x);
        sl_buf_free(&y);
    }
    return ok;
}

/* Decodes the len bytes at text every way: fast alone, full alone, public.
 * Checks that the fast one accepts exactly when want_fast is 1, declines
 * when it is 0 (-1: either), that the public answer is the full one's
 * (return code, fields, error), and when the fast one accepts that it agrees
 * with the full one. The decoders read an exact-size heap copy with no NUL
 * after it, so that ASan sees any read past the end. Returns the fast
 * request (in a) or NULL. */
static sl_request *decode_bytes(sl_api_kind kind, const char *text, size_t len, int want_fast, sl_arena *a)
{
    char *body = sl_malloc(len ? len : 1);
    memcpy(body, text, len);
    sl_request *fast = NULL, *full = NULL, *pub = NULL;
    sl_api_error e_full, e_pub;
    int rc_fast = sl_api_decode_fast(kind, body, len, a, &fast);
    int rc_full = sl_api_decode_full(kind, body, len, a, &full, &e_full);
    int rc_pub = sl_api_decode_request(kind, body, len, a, &pub, &e_pub);
    if (want_fast >= 0 && (rc_fast == 0) != (want_fast == 1))
        T_FAIL_AT("%.*s: fast decoder %s, expected it to %s", (int)len, body, rc_fast == 0 ? "accepted" : "declined",
                  want_fast ? "accept" : "decline");
    if (rc_fast != 0 && rc_fast != SL_EUNSUPPORTED)
        T_FAIL_AT("%.*s: fast decoder returned %d", (int)len, body, rc_fast);
    if (rc_pub != rc_full) {
        T_FAIL_AT("%.*s: public %d, full %d", (int)len, body, rc_pub, rc_full);
    } else if (rc_pub != 0) {
        EXPECT_EQ_INT(e_pub.status, e_full.status);
        EXPECT_EQ_STR(e_pub.message, e_full.message);
        EXPECT(str_eq(e_pub.param, e_full.param) && str_eq(e_pub.code, e_full.code));
    } else if (!same_fields(pub, full)) {
        T_FAIL_AT("%.*s: public and full decoders disagree", (int)len, body);
    }
    if (rc_fast == 0) {
        if (rc_full != 0)
            T_FAIL_AT("%.*s: fast accepted, full refused: %s", (int)len, body, e_full.message);
        else if (!same_fields(fast, full))
            T_FAIL_AT("%.*s: fast and full fields differ", (int)len, body);
        else if (!same_upstream(fast, full))
            T_FAIL_AT("%.*s: fast and full upstream bodies differ", (int)len, body);
        EXPECT(fast->body == NULL && fast->raw != NULL && pub->raw != NULL);
    }
    sl_request_release(full);
    sl_request_release(pub);
    sl_free(body);
    return rc_fast == 0 ? fast : NULL;
}

/* decode_bytes of body (' for ") with want_fast as a bool. */
static sl_request *decode_all(sl_api_kind kind, const char *text, bool want_fast, sl_arena *a)
{
    char *body = dq(text);
    sl_request *r = decode_bytes(kind, body, strlen(body), want_fast ? 1 : 0, a);
    sl_free(body);
    return r;
}

static void expect_upstream(const sl_request *r, const char *model, const char *want)
{
    sl_buf out;
    sl_buf_init(&out, 1 << 20);
    int rc = sl_api_upstream_body(r, model, &out);
    EXPECT_EQ_INT(rc, 0);
    char *w = dq(want);
    EXPECT_EQ_STR(out.data ? out.data : "", w);
    sl_free(w);
    sl_buf_free(&out);
}

#define LOADGEN_MSGS "'messages':[{'role':'user','content':'Write a short poem about the sea.'}]"

/* The bodies `sluice bench` sends (src/loadgen/run.c). */
static void test_loadgen_bodies(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_all(SL_API_CHAT, "{'model':'default'," LOADGEN_MSGS ",'max_tokens':64}", true, a);
    if (r) {
        EXPECT_EQ_INT(r->kind, SL_API_CHAT);
        EXPECT_EQ_STR(r->model, "default");
        EXPECT_EQ_UINT(r->n_messages, 1);
        EXPECT_EQ_INT(r->messages[0].role, SL_ROLE_USER);
        EXPECT_EQ_STR(r->messages[0].text, "Write a short poem about the sea.");
        EXPECT(r->messages[0].name == NULL && r->messages[0].tool_call_id == NULL);
        EXPECT(r->has_max_tokens);
        EXPECT_EQ_INT(r->max_tokens, 64);
        EXPECT(!r->stream && !r->include_usage && !r->has_temperature && !r->has_top_p && !r->has_seed);
        EXPECT(r->n == 1 && r->n_stop == 0 && r->user == NULL && r->presence_penalty == 0);
        expect_upstream(r, "llama-3-8b", "{'model':'llama-3-8b'," LOADGEN_MSGS ",'max_tokens':64}");
        sl_request_release(r);
        EXPECT(r->body == NULL);
    }
    r = decode_all(SL_API_CHAT, "{'model':'default'," LOADGEN_MSGS ",'stream':true,'max_tokens':64}", true, a);
    if (r) {
        EXPECT(r->stream && !r->include_usage);
        expect_upstream(r, "llama-3-8b",
                        "{'model':'llama-3-8b'," LOADGEN_MSGS
                        ",'stream':true,'max_tokens':64,'stream_options':{'include_usage':true}}");
    }
    r = decode_all(SL_API_COMPLETIONS, "{'model':'default','prompt':'Write','stream':true,'max_tokens':64}", true, a);
    if (r) {
        EXPECT_EQ_UINT(r->n_prompts, 1);
        EXPECT_EQ_STR(r->prompts[0], "Write");
        expect_upstream(r, "u",
                        "{'model':'u','prompt':'Write','stream':true,'max_tokens':64,"
                        "'stream_options':{'include_usage':true}}");
    }
    r = decode_all(SL_API_EMBEDDINGS, "{'model':'default','input':'Write'}", true, a);
    if (r) {
        EXPECT_EQ_UINT(r->n_inputs, 1);
        EXPECT_EQ_STR(r->inputs[0], "Write");
        EXPECT(!r->stream && r->encoding_format == NULL && !r->has_dimensions);
        expect_upstream(r, "u", "{'model':'u','input':'Write'}");
    }
    sl_arena_destroy(a);
}

static void test_chat_every_key(void)
{
    sl_arena *a = sl_arena_create(256); /* small blocks: the message array grows across several */
    sl_request *r = decode_all(
        SL_API_CHAT,
        "{'model':'gpt-x','messages':[{'role':'system','content':'be brief','name':'sys'},"
        "{'role':'developer','content':'rules','tool_call_id':'ignored'},{'role':'user','content':'hi','name':null},"
        "{'role':'assistant','content':''},{'tool_call_id':'call_1','content':'42','role':'tool'},"
        "{'role':'user','content':'again'}],"
        "'stream':true,'stream_options':{'include_usage':false},'temperature':0.7,'top_p':1,'n':2,"
        "'max_tokens':100,'max_completion_tokens':50,'seed':-12345,'stop':['a','b'],'user':'alice',"
        "'presence_penalty':-0.5,'frequency_penalty':2}",
        true, a);
    if (!r) {
        sl_arena_destroy(a);
        return;
    }
    EXPECT_EQ_STR(r->model, "gpt-x");
    EXPECT_EQ_UINT(r->n_messages, 6);
    static const sl_role roles[] = {SL_ROLE_SYSTEM, SL_ROLE_DEVELOPER, SL_ROLE_USER,
                                    SL_ROLE_ASSISTANT, SL_ROLE_TOOL, SL_ROLE_USER};
    static const char *const texts[] = {"be brief", "rules", "hi", "", "42", "again"};
    for (size_t i = 0; i < 6 && i < r->n_messages; i++) {
        EXPECT_EQ_INT(r->messages[i].role, roles[i]);
        EXPECT_EQ_STR(r->messages[i].text, texts[i]);
        EXPECT(r->messages[i].n_tool_calls == 0 && r->messages[i].n_media_parts == 0);
    }
    EXPECT_EQ_STR(r->messages[0].name, "sys");
    EXPECT(r->messages[1].tool_call_id == NULL); /* read for tool messages only */
    EXPECT(r->messages[2].name == NULL);
    EXPECT_EQ_STR(r->messages[4].tool_call_id, "call_1");
    EXPECT(r->stream && !r->include_usage);
    EXPECT(r->has_temperature && r->temperature == 0.7);
    EXPECT(r->has_top_p && r->top_p == 1.0);
    EXPECT_EQ_INT(r->n, 2);
    EXPECT(r->has_max_tokens);
    EXPECT_EQ_INT(r->max_tokens, 50); /* max_completion_tokens wins */
    EXPECT(r->has_seed);
    EXPECT_EQ_INT(r->seed, -12345);
    EXPECT_EQ_UINT(r->n_stop, 2);
    EXPECT_EQ_STR(r->stop[0], "a");
    EXPECT_EQ_STR(r->stop[1], "b");
    EXPECT_EQ_STR(r->user, "alice");
    EXPECT(r->presence_penalty == -0.5 && r->frequency_penalty == 2.0);
    EXPECT(!r->logprobs && r->top_logprobs == 0 && !r->has_tools && r->response_format_type == NULL);
    sl_buf out;
    sl_buf_init(&out, 4096);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "m", &out), 0);
    EXPECT_CONTAINS(out.data, "\"stream_options\":{\"include_usage\":true},\"temperature\":0.7,");
    EXPECT(strncmp(out.data, "{\"model\":\"m\",\"messages\":", 24) == 0);
    sl_buf_free(&out);
    sl_arena_destroy(a);
}

static void test_completions_embeddings_every_key(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_all(SL_API_COMPLETIONS,
                               "{'model':'m','prompt':['one','','three'],'stream':false,'stream_options':null,"
                               "'temperature':2,'top_p':0.0,'n':null,'max_tokens':7,'seed':0,'stop':'x',"
                               "'user':null,'presence_penalty':0,'frequency_penalty':-2.0}",
                               true, a);
    if (r) {
        EXPECT_EQ_UINT(r->n_prompts, 3);
        EXPECT_EQ_STR(r->prompts[0], "one");
        EXPECT_EQ_STR(r->prompts[1], "");
        EXPECT_EQ_STR(r->prompts[2], "three");
        EXPECT(!r->stream && !r->include_usage && r->n == 1 && r->user == NULL);
        EXPECT(r->has_temperature && r->temperature == 2.0 && r->has_top_p && r->top_p == 0.0);
        EXPECT(r->has_max_tokens && r->max_tokens == 7 && r->has_seed && r->seed == 0);
        EXPECT(r->n_stop == 1 && str_eq(r->stop[0], "x") && r->frequency_penalty == -2.0);
        /* not streaming: stream_options (null) stays as sent */
        expect_upstream(r, "u",
                        "{'model':'u','prompt':['one','','three'],'stream':false,'stream_options':null,"
                        "'temperature':2,'top_p':0.0,'n':null,'max_tokens':7,'seed':0,'stop':'x',"
                        "'user':null,'presence_penalty':0,'frequency_penalty':-2.0}");
    }
    r = decode_all(SL_API_EMBEDDINGS,
                   "{'model':'e','input':['a','b\\u00e9'],'encoding_format':'base64','dimensions':256,'user':'bob'}",
                   true, a);
    if (r) {
        EXPECT_EQ_UINT(r->n_inputs, 2);
        EXPECT_EQ_STR(r->inputs[1], "b\xc3\xa9");
        EXPECT_EQ_STR(r->encoding_format, "base64");
        EXPECT(r->has_dimensions && r->dimensions == 256);
        EXPECT_EQ_STR(r->user, "bob");
        expect_upstream(r, "u",
                        "{'model':'u','input':['a','b\\u00e9'],'encoding_format':'base64','dimensions':256,"
                        "'user':'bob'}");
    }
    sl_arena_destroy(a);
}

/* Escapes decoded as jansson decodes them; the upstream gets the client's
 * bytes (whitespace and escapes) with only the model value replaced. */
static void test_escapes_and_whitespace(void)
{
    sl_arena *a = sl_arena_create(4096);
    const char *body = " {\n 'model' : 'm\\u00e9\\/x',\r\n\t'messages' : [ { 'content' : "
                       "'q\\'b\\\\s\\/n\\nt\\tr\\rb\\bf\\f \\ud83d\\ude00 \\u20AC caf\xc3\xa9', 'role' : 'user' } ] } \n";
    /* dq turns the \\' above into \", a quote escape */
    sl_request *r = decode_all(SL_API_CHAT, body, true, a);
    if (r) {
        EXPECT_EQ_STR(r->model, "m\xc3\xa9/x");
        EXPECT_EQ_STR(r->messages[0].text, "q\"b\\s/n\nt\tr\rb\bf\f \xf0\x9f\x98\x80 \xe2\x82\xac caf\xc3\xa9");
        sl_buf out;
        sl_buf_init(&out, 4096);
        EXPECT_EQ_INT(sl_api_upstream_body(r, "\xc3\xa9\"", &out), 0);
        char *want = dq(body);
        /* the model value replaced by the quoted upstream model, nothing else touched */
        const char *at = strstr(want, "\"m\\u00e9\\/x\"");
        EXPECT(at != NULL);
        if (at && out.data) {
            size_t pre = (size_t)(at - want);
            EXPECT(strncmp(out.data, want, pre) == 0);
            EXPECT(strncmp(out.data + pre, "\"\xc3\xa9\\\"\"", 6) == 0);
            EXPECT_EQ_STR(out.data + pre + 6, at + strlen("\"m\\u00e9\\/x\""));
        }
        sl_free(want);
        /* streaming: stream_options inserted before the closing brace, trailing whitespace kept */
        sl_request s = *r;
        s.stream = true;
        sl_buf_reset(&out);
        EXPECT_EQ_INT(sl_api_upstream_body(&s, "u", &out), 0);
        const char *tail = ",\"stream_options\":{\"include_usage\":true}} \n";
        EXPECT(out.len > strlen(tail) && strcmp(out.data + out.len - strlen(tail), tail) == 0);
        sl_buf_free(&out);
        sl_request_release(r);
    }
    sl_arena_destroy(a);
}

static void test_stream_options(void)
{
    sl_arena *a = sl_arena_create(4096);
    static const struct {
        const char *so;
        bool include_usage;
    } cases[] = {
        {"null", false},
        {"{}", false},
        {"{'include_usage':null}", false},
        {"{'include_usage':false}", false},
        {"{ 'include_usage' : true }", true},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        char body[256], want[256];
        snprintf(body, sizeof body, "{'stream_options':%s,'model':'m','stream':true,'prompt':'p'}", cases[i].so);
        sl_request *r = decode_all(SL_API_COMPLETIONS, body, true, a);
        if (!r)
            continue;
        EXPECT(r->stream);
        EXPECT_EQ_INT(r->include_usage, cases[i].include_usage);
        snprintf(want, sizeof want,
                 "{'stream_options':{'include_usage':true},'model':'u','stream':true,'prompt':'p'}");
        expect_upstream(r, "u", want);
    }
    sl_arena_destroy(a);
}

/* Integral reals where request.c takes integers, and where it takes numbers. */
static void test_numbers(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_all(SL_API_CHAT,
                               "{'model':'m','messages':[{'role':'user','content':'x'}],'max_tokens':16.0,"
                               "'n':2.0,'seed':-1e3,'temperature':1E0,'top_p':5e-1,'presence_penalty':-0}",
                               true, a);
    if (r) {
        EXPECT_EQ_INT(r->max_tokens, 16);
        EXPECT_EQ_INT(r->n, 2);
        EXPECT_EQ_INT(r->seed, -1000);
        EXPECT(r->temperature == 1.0 && r->top_p == 0.5 && r->presence_penalty == 0.0);
    }
    /* decimals of 1..15 digits (the fast decoder computes those without
     * strtod): the same double as the full decoder's, field by field */
    uint64_t seed = 12345;
    for (int i = 0; i < 3000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        /* [-]D.F...: one integer digit (0 or 1) and 1..14 fraction digits */
        int frac = 1 + (int)(seed >> 59) % 14;
        char num[32], body[160];
        uint64_t x = seed >> 8;
        size_t n = 0;
        if (i & 1)
            num[n++] = '-';
        num[n++] = (char)('0' + (int)(x & 1));
        x >>= 1;
        num[n++] = '.';
        for (int d = 0; d < frac; d++) {
            num[n++] = (char)('0' + (int)(x % 10));
            x /= 10;
        }
        int bl = snprintf(body, sizeof body,
                      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                      "\"presence_penalty\":%.*s}",
                      (int)n, num);
        sl_request *q = decode_bytes(SL_API_CHAT, body, (size_t)bl, 1, a);
        if (q) {
            char tmp[32];
            memcpy(tmp, num, n);
            tmp[n] = 0;
            EXPECT(q->presence_penalty == strtod(tmp, NULL));
        }
    }
    r = decode_all(SL_API_EMBEDDINGS, "{'model':'m','input':'x','dimensions':999999999999999999}", true, a);
    if (r)
        EXPECT_EQ_INT(r->dimensions, 999999999999999999LL);
    sl_arena_destroy(a);
}

#define MSG "'messages':[{'role':'user','content':'x'}]"
#define CHAT(extra) "{'model':'m'," MSG extra "}"

/* Each edge of the whitelist: the fast decoder declines and the public
 * answer is the full decoder's (accepted or refused). */
static void test_declines(void)
{
    static const struct {
        sl_api_kind kind;
        const char *body;
    } cases[] = {
        /* not JSON, or not an object */
        {SL_API_CHAT, ""},
        {SL_API_CHAT, "{"},
        {SL_API_CHAT, "{}"},
        {SL_API_CHAT, "[]"},
        {SL_API_CHAT, CHAT(",")},
        {SL_API_CHAT, CHAT("") " x"},
        {SL_API_CHAT, "{'model':'m' " MSG "}"},
        {SL_API_CHAT, "{'model' 'm'," MSG "}"},
        {SL_API_CHAT, "\xef\xbb\xbf" CHAT("")},
        /* unknown keys: extensions, forbidden, other kinds' keys, escaped names */
        {SL_API_CHAT, CHAT(",'top_k':40")},
        {SL_API_CHAT, CHAT(",'tools':[]")},
        {SL_API_CHAT, CHAT(",'logprobs':false")},
        {SL_API_CHAT, CHAT(",'api_base':'http://evil'")},
        {SL_API_CHAT, CHAT(",'API-KEY':'k'")},
        {SL_API_CHAT, CHAT(",'prompt':'p'")},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':'p','max_completion_tokens':5}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':'p','echo':true}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'p','stream':false}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'p','max_tokens':3}"},
        {SL_API_CHAT, "{'mod\\u0065l':'m'," MSG "}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'r\\u006fle':'user','content':'x'}]}"},
        /* duplicates */
        {SL_API_CHAT, CHAT(",'model':'other'")},
        {SL_API_CHAT, CHAT(",'stream':false,'stream':true")},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x','content':'y'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','role':'system','content':'x'}]}"},
        {SL_API_CHAT, CHAT(",'stream':true,'stream_options':{'include_usage':true,'include_usage':false}")},
        {SL_API_CHAT, CHAT(",'stream':true,'stream_options':{'include_usage':true,'other':1}")},
        /* messages beyond plain strings */
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'x'}]}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'assistant','content':null}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'assistant','content':'','tool_calls':[]}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x','extra':1}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'tool','content':'x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'tool','content':'x','tool_call_id':null}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'tool','content':'x','tool_call_id':5}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'wizard','content':'x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'User','content':'x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'us\\u0065rs','content':'x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x'}}"},
        {SL_API_CHAT, "{'model':'m','stream':true,'stream_options':{}}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x'}]} }"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x'}],'user':'}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'content':'x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[]}"},
        {SL_API_CHAT, "{'model':'m','messages':[5]}"},
        {SL_API_CHAT, "{'model':'m','messages':null}"},
        {SL_API_CHAT, "{'model':'m'}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'x','name':5}]}"},
        /* escapes and bytes it does not decode */
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a\\u0000b'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\\ud83d x'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\\ude00'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\\x41'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\\u12G4'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\xc3\x28'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\xed\xa0\x80'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\xc0\xaf'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'tab\there'}]}"},
        /* model */
        {SL_API_CHAT, "{'model':''," MSG "}"},
        {SL_API_CHAT, "{'model':null," MSG "}"},
        {SL_API_CHAT, "{'model':5," MSG "}"},
        {SL_API_CHAT, "{" MSG "}"},
        /* numbers out of range, of the wrong type, or beyond what it reads */
        {SL_API_CHAT, CHAT(",'temperature':2.5")},
        {SL_API_CHAT, CHAT(",'temperature':-0.1")},
        {SL_API_CHAT, CHAT(",'temperature':'1'")},
        {SL_API_CHAT, CHAT(",'top_p':1.0000001")},
        {SL_API_CHAT, CHAT(",'presence_penalty':3")},
        {SL_API_CHAT, CHAT(",'n':0")},
        {SL_API_CHAT, CHAT(",'n':129")},
        {SL_API_CHAT, CHAT(",'n':1.5")},
        {SL_API_CHAT, CHAT(",'max_tokens':0")},
        {SL_API_CHAT, CHAT(",'max_tokens':true")},
        {SL_API_CHAT, CHAT(",'max_completion_tokens':-1")},
        {SL_API_CHAT, CHAT(",'seed':1e19")},
        {SL_API_CHAT, CHAT(",'seed':9223372036854775807")},
        {SL_API_CHAT, CHAT(",'seed':1e99999")},
        {SL_API_CHAT, CHAT(",'temperature':1e400")},
        /* more than 15 significant digits: the full path's upstream body rounds them */
        {SL_API_CHAT, CHAT(",'temperature':0.30000000000000004")},
        {SL_API_CHAT, CHAT(",'top_p':1.0000000000000000")},
        {SL_API_CHAT, CHAT(",'temperature':01")},
        {SL_API_CHAT, CHAT(",'temperature':1.")},
        {SL_API_CHAT, CHAT(",'temperature':.5")},
        {SL_API_CHAT, CHAT(",'temperature':+1")},
        {SL_API_CHAT, CHAT(",'temperature':NaN")},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'x','dimensions':0}"},
        /* stop, stream, stream_options */
        {SL_API_CHAT, CHAT(",'stop':['a','b','c','d','e']")},
        {SL_API_CHAT, CHAT(",'stop':[1]")},
        {SL_API_CHAT, CHAT(",'stop':5")},
        {SL_API_CHAT, CHAT(",'stream':'yes'")},
        {SL_API_CHAT, CHAT(",'stream':tru")},
        {SL_API_CHAT, CHAT(",'stream_options':{'include_usage':true}")},
        {SL_API_CHAT, CHAT(",'stream':false,'stream_options':{}")},
        {SL_API_CHAT, CHAT(",'stream':true,'stream_options':{'include_usage':1}")},
        {SL_API_CHAT, CHAT(",'stream':true,'stream_options':[]")},
        /* prompt and input */
        {SL_API_COMPLETIONS, "{'model':'m','prompt':[1,2,3]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':[[1],[2]]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':[]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':['a',1]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':null}"},
        {SL_API_COMPLETIONS, "{'model':'m'}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':''}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':['a','']}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'x','encoding_format':'hex'}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'x','encoding_format':5}"},
    };
    sl_arena *a = sl_arena_create(4096);
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        decode_all(cases[i].kind, cases[i].body, false, a);
    sl_arena_destroy(a);
}

/* Accepted at the edges of each range and shape (fields compared with the
 * full decoder inside decode_all). */
static void test_accepts(void)
{
    static const struct {
        sl_api_kind kind;
        const char *body;
    } cases[] = {
        {SL_API_CHAT, CHAT(",'temperature':0,'top_p':1,'presence_penalty':-2,'frequency_penalty':2.0")},
        {SL_API_CHAT, CHAT(",'temperature':null,'top_p':null,'n':null,'max_tokens':null,'seed':null")},
        {SL_API_CHAT, CHAT(",'n':128,'max_tokens':1,'seed':-999999999999999999")},
        {SL_API_CHAT, CHAT(",'max_tokens':5,'max_completion_tokens':null")},
        {SL_API_CHAT, CHAT(",'max_completion_tokens':9")},
        {SL_API_CHAT, CHAT(",'stop':[]")},
        {SL_API_CHAT, CHAT(",'stop':null,'user':'','stream':null,'stream_options':null")},
        {SL_API_CHAT, CHAT(",'stop':['a','b','c','d']")},
        {SL_API_CHAT, CHAT(",'stream':false")},
        {SL_API_CHAT, CHAT(",'stream':true,'stream_options':{'include_usage':true}")},
        {SL_API_CHAT, CHAT(",'temperature':1e-400")},
        {SL_API_CHAT, CHAT(",'temperature':0.123456789012345,'top_p':0.000000000000000000001,'seed':-0.0")},
        {SL_API_CHAT, CHAT(",'temperature':4.94065645841247e-324,'frequency_penalty':1.99999999999999")},
        {SL_API_CHAT, "{'messages':[{'content':'x','role':'user'}],'model':'m'}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'assistant','content':'','name':'bot'}]}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'\\u0041\\u00e9\\u20ac\\uD83D\\uDE00'}]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':''}"},
        {SL_API_CHAT, "{'model':'m','messages':[{'role':'us\\u0065r','content':'x'},{'role':'\\u0074ool','content':'x','tool_call_id':'i'}]}"},
        {SL_API_COMPLETIONS, "{'model':'m','prompt':['a'],'stream':true}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'x','encoding_format':'float','dimensions':null,'user':null}"},
        {SL_API_EMBEDDINGS, "{'model':'m','input':'x','encoding_format':null}"},
    };
    sl_arena *a = sl_arena_create(4096);
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++)
        decode_all(cases[i].kind, cases[i].body, true, a);
    /* a model of exactly the longest length, and one byte longer */
    char body[512];
    snprintf(body, sizeof body, "{'model':'%0*d'," MSG "}", SL_API_MODEL_MAX_LEN, 7);
    decode_all(SL_API_CHAT, body, true, a);
    snprintf(body, sizeof body, "{'model':'%0*d'," MSG "}", SL_API_MODEL_MAX_LEN + 1, 7);
    decode_all(SL_API_CHAT, body, false, a);
    sl_arena_destroy(a);
}

/* Nesting past SL_API_MAX_DEPTH: refused by the full decoder, declined here. */
static void test_deep(void)
{
    sl_arena *a = sl_arena_create(4096);
    char body[512];
    size_t n = (size_t)snprintf(body, sizeof body, "{'model':'m'," MSG ",'stop':");
    for (int i = 0; i < SL_API_MAX_DEPTH + 2; i++)
        body[n++] = '[';
    for (int i = 0; i < SL_API_MAX_DEPTH + 2; i++)
        body[n++] = ']';
    memcpy(body + n, "}", 2);
    decode_all(SL_API_CHAT, body, false, a);
    sl_arena_destroy(a);
}

/* Failure of the upstream body leaves out unchanged; a model that is not
 * UTF-8 is refused as on the full path. */
static void test_upstream_failures(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_all(SL_API_CHAT, CHAT(",'stream':true"), true, a);
    if (r) {
        sl_buf out;
        sl_buf_init(&out, 40);
        sl_buf_append(&out, "kept", 4);
        EXPECT_EQ_INT(sl_api_upstream_body(r, "u", &out), SL_ETOOBIG);
        EXPECT_EQ_UINT(out.len, 4);
        EXPECT_EQ_STR(out.data, "kept");
        EXPECT_EQ_INT(sl_api_upstream_body(r, "bad\xff", &out), SL_EINVAL);
        EXPECT_EQ_UINT(out.len, 4);
        sl_buf_free(&out);
    }
    sl_arena_destroy(a);
}

/* Valid bodies the tests below cut, pad and vary (' for "). */
static const struct {
    sl_api_kind kind;
    const char *body;
} valid_bodies[] = {
    {SL_API_CHAT, "{'model':'mock','messages':[{'role':'user','content':'Write a short poem about the sea.'}],"
                  "'max_tokens':16}"},
    {SL_API_CHAT,
     "{'model':'mock','messages':[{'role':'system','content':'You are a helpful assistant who answers briefly.'},"
     "{'role':'user','content':'Write a short poem about the sea.'},{'role':'assistant','content':'Waves fold "
     "in silver light,\\nsalt wind hums at night.'},{'role':'user','content':'Now one about the mountains, "
     "please.'},{'role':'tool','content':'42','tool_call_id':'c1','name':null}],'stream':true,"
     "'stream_options':{'include_usage':false},'temperature':0.7,'top_p':1e-1,'n':2,'seed':-7,"
     "'stop':['\\u00e9',''],'user':'u','presence_penalty':null,'max_completion_tokens':9}"},
    {SL_API_COMPLETIONS, "{'model':'m','prompt':['one','caf\xc3\xa9'],'stream':false,'stop':'x','max_tokens':7}"},
    {SL_API_EMBEDDINGS, "{'model':'e','input':['a','b'],'encoding_format':'float','dimensions':8,'user':null}"},
};

/* Input ending anywhere: every prefix of each valid body is declined, or
 * accepted with the full decoder's answer; the whole body is accepted. Each
 * prefix is an exact-size heap copy (decode_bytes), so ASan sees a read past
 * its end. */
static void test_every_prefix(void)
{
    sl_arena *a = sl_arena_create(64); /* small blocks: the request's block is exact-size too */
    for (size_t b = 0; b < SL_ARRAY_LEN(valid_bodies); b++) {
        char *body = dq(valid_bodies[b].body);
        size_t len = strlen(body);
        size_t accepted = 0;
        for (size_t n = 0; n < len; n++)
            accepted += decode_bytes(valid_bodies[b].kind, body, n, -1, a) != NULL;
        /* a proper prefix of an object is never a whole one */
        EXPECT_EQ_UINT(accepted, 0);
        decode_bytes(valid_bodies[b].kind, body, len, 1, a);
        sl_free(body);
    }
    sl_arena_destroy(a);
}

/* Whitespace of each kind (and runs of all four) at every gap between
 * tokens, leading and trailing included: accepted with the same fields. A
 * byte that is not JSON whitespace there (\f, \v, NUL, 0xA0) is declined. */
static void test_whitespace_every_gap(void)
{
    static const char *const ws[] = {" ", "\t", "\n", "\r", " \t\n\r"};
    static const char *const not_ws[] = {"\f", "\v", "\0", "\xc2\xa0"};
    sl_arena *a = sl_arena_create(64);
    int gaps = 0;
    for (size_t b = 0; b < SL_ARRAY_LEN(valid_bodies); b++) {
        char *body = dq(valid_bodies[b].body);
        size_t len = strlen(body);
        char *v = sl_malloc(len + 8);
        bool in_str = false, esc = false;
        for (size_t i = 0; i <= len; i++) {
            /* i is a gap when it is outside strings and next to a structural
             * byte or a string's quote (never inside a number or literal) */
            bool gap = !in_str && (i == 0 || i == len || strchr("{}[]:,\"", body[i - 1]) ||
                                   strchr("{}[]:,\"", body[i]));
            if (gap) {
                gaps++;
                for (int k = 0; k < 2; k++) {
                    size_t nk = k ? SL_ARRAY_LEN(not_ws) : SL_ARRAY_LEN(ws);
                    for (size_t w = 0; w < nk; w++) {
                        const char *ins = k ? not_ws[w] : ws[w];
                        size_t il = k && w == 2 ? 1 : strlen(ins);
                        memcpy(v, body, i);
                        memcpy(v + i, ins, il);
                        memcpy(v + i + il, body + i, len - i);
                        sl_request *r = decode_bytes(valid_bodies[b].kind, v, len + il, k ? 0 : 1, a);
                        if (r && !k && b == 0) /* fields held against the full decoder already; one spot check */
                            EXPECT_EQ_STR(r->messages[0].text, "Write a short poem about the sea.");
                    }
                }
            }
            if (i < len) {
                if (in_str && esc)
                    esc = false;
                else if (in_str && body[i] == '\\')
                    esc = true;
                else if (body[i] == '"')
                    in_str = !in_str;
            }
        }
        sl_free(v);
        sl_free(body);
    }
    EXPECT(gaps > 150);
    sl_arena_destroy(a);
}

/* Strings longer than 16 bytes (the fast loops' stride) with an escape, a
 * UTF-8 sequence or a bad byte at every offset up to 40, both mid-body
 * (content) and within the last 16 bytes of the body (user, the tail load):
 * decoded exactly, or declined for bytes the full decoder refuses. */
static void test_long_strings_every_offset(void)
{
    static const struct {
        const char *raw;     /* as written in the JSON string */
        const char *decoded; /* NULL: the full decoder refuses it */
    } specials[] = {
        {"\\n", "\n"},
        {"\\\"", "\""},
        {"\\u00e9", "\xc3\xa9"},
        {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},
        {"\xc3\xa9", "\xc3\xa9"},
        {"\xe2\x82\xac", "\xe2\x82\xac"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\x7f", "\x7f"},
        {"}", "}"},
        {"\xc3\x28", NULL},
        {"\xed\xa0\x80", NULL},
        {"\x01", NULL},
        {"\t", NULL},
        {"\\x", NULL},
        {"\\u0000", NULL},
        {"\\ud83d", NULL},
    };
    sl_arena *a = sl_arena_create(64);
    char body[256], want[128], str[128];
    int checked = 0;
    for (size_t sp = 0; sp < SL_ARRAY_LEN(specials); sp++) {
        for (int at = 0; at <= 40; at++) {
            for (int after = 0; after <= 17; after += 17) {
                /* at 'a's, the special, after 'b's */
                int n = 0;
                n += snprintf(str + n, sizeof str - (size_t)n, "%.*s", at, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
                n += snprintf(str + n, sizeof str - (size_t)n, "%s", specials[sp].raw);
                snprintf(str + n, sizeof str - (size_t)n, "%.*s", after, "bbbbbbbbbbbbbbbbbb");
                const char *dec = specials[sp].decoded;
                if (dec)
                    snprintf(want, sizeof want, "%.*s%s%.*s", at, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                             dec, after, "bbbbbbbbbbbbbbbbbb");
                for (int where = 0; where < 2; where++) {
                    int bl = where ? snprintf(body, sizeof body,
                                              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                              "\"user\":\"%s\"}",
                                              str)
                                   : snprintf(body, sizeof body,
                                              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                                              str);
                    sl_request *r = decode_bytes(SL_API_CHAT, body, (size_t)bl, dec ? 1 : 0, a);
                    if (r && dec)
                        EXPECT_EQ_STR(where ? r->user : r->messages[0].text, want);
                    checked++;
                }
            }
        }
    }
    EXPECT_EQ_INT(checked, (int)SL_ARRAY_LEN(specials) * 41 * 2 * 2);
    sl_arena_destroy(a);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Decode + upstream body of the `sluice bench` request, fast vs full,
 * printed (not asserted: the machine is shared). Rounds alternate. */
static void test_timing(void)
{
    static const char *const bodies[] = {
        "{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"Write a short poem about the "
        "sea.\"}],\"max_tokens\":64}",
        "{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"Write a short poem about the "
        "sea.\"}],\"stream\":true,\"max_tokens\":64}",
    };
    const int iters = getenv("SL_FASTREQ_ITERS") ? atoi(getenv("SL_FASTREQ_ITERS")) : 2000;
    sl_buf out;
    sl_buf_init(&out, 1 << 16);
    for (size_t b = 0; b < 2; b++) {
        double best[2] = {1e30, 1e30};
        size_t len = strlen(bodies[b]);
        for (int round = 0; round < 10; round++) {
            for (int way = 0; way < 2; way++) {
                double t0 = now_ns();
                for (int i = 0; i < iters; i++) {
                    sl_arena *a = sl_arena_create(4096);
                    sl_request *r = NULL;
                    sl_api_error e;
                    int rc = way ? sl_api_decode_full(SL_API_CHAT, bodies[b], len, a, &r, &e)
                                 : sl_api_decode_request(SL_API_CHAT, bodies[b], len, a, &r, &e);
                    sl_buf_reset(&out);
                    if (rc || sl_api_upstream_body(r, "llama-3-8b", &out))
                        T_FAIL_AT("timing body %zu failed", b);
                    sl_request_release(r);
                    sl_arena_destroy(a);
                }
                double per = (now_ns() - t0) / iters;
                if (per < best[way])
                    best[way] = per;
            }
        }
        printf("# decode+upstream_body, %s: fast %.0f ns, full %.0f ns (best of 10 rounds x %d)\n",
               b ? "stream" : "no stream", best[0], best[1], iters);
    }
    sl_buf_free(&out);
}

/* lex_utf8_valid says yes exactly where json_string does: every 1- and 2-byte
 * string, and 3- and 4-byte ones around the edges (overlongs, surrogates,
 * U+10FFFF), each also after an ASCII byte. */
static void test_utf8_valid_matches_json_string(void)
{
    static const unsigned char firsts[] = {0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
                                           0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
    static const unsigned char conts[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    int checked = 0, bad = 0;
    unsigned char s[8];
    for (int pre = 0; pre < 2; pre++) {
        for (size_t a = 0; a < sizeof firsts; a++) {
            for (int len = 1; len <= 4; len++) {
                size_t nb = len == 1 ? 1 : sizeof conts;
                for (size_t b = 0; b < nb; b++)
                    for (size_t c = 0; c < (len >= 3 ? sizeof conts : 1); c++)
                        for (size_t d = 0; d < (len == 4 ? sizeof conts : 1); d++) {
                            size_t n = 0;
                            if (pre)
                                s[n++] = 'x';
                            s[n++] = firsts[a];
                            if (len >= 2)
                                s[n++] = conts[b];
                            if (len >= 3)
                                s[n++] = conts[c];
                            if (len >= 4)
                                s[n++] = conts[d];
                            s[n] = 0;
                            /* json_string reads up to the first NUL */
                            size_t sl = strlen((const char *)s);
                            json_t *j = sl == n ? json_string((const char *)s) : NULL;
                            bool want = j != NULL;
                            json_decref(j);
                            if (lex_utf8_valid(s, n) != want)
                                bad++;
                            checked++;
                        }
            }
        }
    }
    EXPECT(checked > 10000);
    EXPECT_EQ_INT(bad, 0);
}

int main(void)
{
    RUN(test_utf8_valid_matches_json_string);
    RUN(test_loadgen_bodies);
    RUN(test_chat_every_key);
    RUN(test_completions_embeddings_every_key);
    RUN(test_escapes_and_whitespace);
    RUN(test_stream_options);
    RUN(test_numbers);
    RUN(test_declines);
    RUN(test_accepts);
    RUN(test_deep);
    RUN(test_upstream_failures);
    RUN(test_every_prefix);
    RUN(test_whitespace_every_gap);
    RUN(test_long_strings_every_offset);
    RUN(test_timing);
    return TEST_REPORT();
}
