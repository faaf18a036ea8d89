#include "api/api.h"
#include "core/core.h"
#include "test.h"

#include <stdlib.h>

/* Table bodies use ' for " so that they stay readable; no body needs a literal '. */
static char *dq(const char *s)
{
    char *d = sl_strdup(s);
    for (char *p = d; *p; p++) {
        if (*p == '\'')
            *p = '"';
    }
    return d;
}

#define MSGS "'messages':[{'role':'user','content':'hi'}]"
#define CHAT(extra) "{'model':'m'," MSGS extra "}"
#define COMP(extra) "{'model':'m'" extra "}"
#define EMB(extra) "{'model':'m'" extra "}"

typedef struct {
    sl_api_kind kind;
    const char *body;
    const char *param; /* NULL: JSON null */
    const char *code;
} bad_case;

static const bad_case bad_cases[] = {
    /* body shape */
    {SL_API_CHAT, "", NULL, "invalid_json"},
    {SL_API_CHAT, "{", NULL, "invalid_json"},
    {SL_API_CHAT, "{'model':'m',}", NULL, "invalid_json"},
    {SL_API_CHAT, CHAT("") " trailing", NULL, "invalid_json"},
    {SL_API_CHAT, "[1,2]", NULL, "invalid_type"},
    {SL_API_CHAT, "'just a string'", NULL, "invalid_type"},
    {SL_API_CHAT, "42", NULL, "invalid_type"},
    {SL_API_CHAT, "null", NULL, "invalid_type"},
    /* model */
    {SL_API_CHAT, "{" MSGS "}", "model", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':null," MSGS "}", "model", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':5," MSGS "}", "model", "invalid_type"},
    {SL_API_CHAT, "{'model':''," MSGS "}", "model", "invalid_value"},
    /* messages */
    {SL_API_CHAT, "{'model':'m'}", "messages", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':'hi'}", "messages", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[]}", "messages", "invalid_value"},
    {SL_API_CHAT, "{'model':'m','messages':[5]}", "messages[0]", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a'},{'role':'wizard','content':'b'}]}",
     "messages[1].role", "invalid_value"},
    {SL_API_CHAT, "{'model':'m','messages':[{'content':'a'}]}", "messages[0].role", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':3,'content':'a'}]}", "messages[0].role", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user'}]}", "messages[0].content", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':null}]}", "messages[0].content",
     "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a'},{'role':'assistant','content':null}]}",
     "messages[1].content", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':5}]}", "messages[0].content", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[]}]}", "messages[0].content",
     "invalid_value"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[5]}]}", "messages[0].content[0]",
     "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[{'text':'a'}]}]}",
     "messages[0].content[0].type", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'a'},{'type':'text'}]}]}",
     "messages[0].content[1].text", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':7}]}]}",
     "messages[0].content[0].text", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a'},{'role':'tool','content':'r'}]}",
     "messages[1].tool_call_id", "missing_required_parameter"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'tool','content':'r','tool_call_id':5}]}",
     "messages[0].tool_call_id", "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a','name':5}]}", "messages[0].name",
     "invalid_type"},
    {SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a'},{'role':'assistant','tool_calls':'x'}]}",
     "messages[1].tool_calls", "invalid_type"},
    /* sampling */
    {SL_API_CHAT, CHAT(",'temperature':3"), "temperature", "invalid_value"},
    {SL_API_CHAT, CHAT(",'temperature':-0.1"), "temperature", "invalid_value"},
    {SL_API_CHAT, CHAT(",'temperature':'hot'"), "temperature", "invalid_type"},
    {SL_API_CHAT, CHAT(",'top_p':1.5"), "top_p", "invalid_value"},
    {SL_API_CHAT, CHAT(",'n':0"), "n", "invalid_value"},
    {SL_API_CHAT, CHAT(",'n':1.5"), "n", "invalid_type"},
    {SL_API_CHAT, CHAT(",'n':129"), "n", "invalid_value"},
    {SL_API_CHAT, CHAT(",'max_tokens':0"), "max_tokens", "invalid_value"},
    {SL_API_CHAT, CHAT(",'max_tokens':'many'"), "max_tokens", "invalid_type"},
    {SL_API_CHAT, CHAT(",'max_completion_tokens':-1"), "max_completion_tokens", "invalid_value"},
    {SL_API_CHAT, CHAT(",'presence_penalty':2.5"), "presence_penalty", "invalid_value"},
    {SL_API_CHAT, CHAT(",'frequency_penalty':-3"), "frequency_penalty", "invalid_value"},
    {SL_API_CHAT, CHAT(",'stop':['a','b','c','d','e']"), "stop", "invalid_value"},
    {SL_API_CHAT, CHAT(",'stop':5"), "stop", "invalid_type"},
    {SL_API_CHAT, CHAT(",'stop':['a',1]"), "stop[1]", "invalid_type"},
    {SL_API_CHAT, CHAT(",'seed':'x'"), "seed", "invalid_type"},
    {SL_API_CHAT, CHAT(",'seed':1.5"), "seed", "invalid_type"},
    {SL_API_CHAT, CHAT(",'user':5"), "user", "invalid_type"},
    {SL_API_CHAT, CHAT(",'stream':'yes'"), "stream", "invalid_type"},
    {SL_API_CHAT, CHAT(",'stream_options':{'include_usage':true}"), "stream_options", "invalid_value"},
    {SL_API_CHAT, CHAT(",'stream':false,'stream_options':{'include_usage':true}"), "stream_options",
     "invalid_value"},
    {SL_API_CHAT, CHAT(",'stream':true,'stream_options':{'include_usage':'y'}"), "stream_options.include_usage",
     "invalid_type"},
    {SL_API_CHAT, CHAT(",'stream':true,'stream_options':5"), "stream_options", "invalid_type"},
    {SL_API_CHAT, CHAT(",'logprobs':1"), "logprobs", "invalid_type"},
    {SL_API_CHAT, CHAT(",'logprobs':true,'top_logprobs':21"), "top_logprobs", "invalid_value"},
    {SL_API_CHAT, CHAT(",'logit_bias':{'50256':200}"), "logit_bias", "invalid_value"},
    {SL_API_CHAT, CHAT(",'logit_bias':[1]"), "logit_bias", "invalid_type"},
    /* tools and formats */
    {SL_API_CHAT, CHAT(",'tools':{}"), "tools", "invalid_type"},
    {SL_API_CHAT, CHAT(",'tools':[5]"), "tools[0]", "invalid_type"},
    {SL_API_CHAT, CHAT(",'tools':[{'type':'retrieval'}]"), "tools[0].type", "invalid_value"},
    {SL_API_CHAT, CHAT(",'tools':[{'type':'function'}]"), "tools[0].function", "missing_required_parameter"},
    {SL_API_CHAT, CHAT(",'tools':[{'type':'function','function':{'name':'f'}},{'type':'function','function':{}}]"),
     "tools[1].function.name", "missing_required_parameter"},
    {SL_API_CHAT, CHAT(",'tools':[{'type':'function','function':{'name':'f','parameters':'x'}}]"),
     "tools[0].function.parameters", "invalid_type"},
    {SL_API_CHAT, CHAT(",'tool_choice':'maybe'"), "tool_choice", "invalid_value"},
    {SL_API_CHAT, CHAT(",'tool_choice':5"), "tool_choice", "invalid_type"},
    {SL_API_CHAT, CHAT(",'tool_choice':{'type':'function'}"), "tool_choice.function.name",
     "missing_required_parameter"},
    {SL_API_CHAT, CHAT(",'response_format':'json'"), "response_format", "invalid_type"},
    {SL_API_CHAT, CHAT(",'response_format':{'type':'xml'}"), "response_format.type", "invalid_value"},
    {SL_API_CHAT, CHAT(",'response_format':{}"), "response_format.type", "missing_required_parameter"},
    {SL_API_CHAT, CHAT(",'response_format':{'type':'json_schema'}"), "response_format.json_schema",
     "missing_required_parameter"},
    /* routing smuggling */
    {SL_API_CHAT, CHAT(",'api_base':'http://169.254.169.254/'"), "api_base", "unsupported_parameter"},
    {SL_API_CHAT, CHAT(",'base_url':'http://evil.example/v1'"), "base_url", "unsupported_parameter"},
    {SL_API_CHAT, CHAT(",'api_key':'sk-x'"), "api_key", "unsupported_parameter"},
    {SL_API_CHAT, CHAT(",'api_version':'2024-01-01'"), "api_version", "unsupported_parameter"},
    {SL_API_CHAT, CHAT(",'API-Base':'http://x'"), "API-Base", "unsupported_parameter"},
    {SL_API_CHAT, "{'api_base':'http://x'}", "api_base", "unsupported_parameter"},
    {SL_API_EMBEDDINGS, EMB(",'input':'a','api_key':'k'"), "api_key", "unsupported_parameter"},
    /* completions */
    {SL_API_COMPLETIONS, COMP(""), "prompt", "missing_required_parameter"},
    {SL_API_COMPLETIONS, COMP(",'prompt':5"), "prompt", "invalid_type"},
    {SL_API_COMPLETIONS, COMP(",'prompt':[]"), "prompt", "invalid_value"},
    {SL_API_COMPLETIONS, COMP(",'prompt':['a',1]"), "prompt[1]", "invalid_type"},
    {SL_API_COMPLETIONS, COMP(",'prompt':[[1,2],[3,'x']]"), "prompt[1][1]", "invalid_type"},
    {SL_API_COMPLETIONS, COMP(",'prompt':[1,-2]"), "prompt[1]", "invalid_value"},
    {SL_API_COMPLETIONS, COMP(",'prompt':[[]]"), "prompt[0]", "invalid_value"},
    {SL_API_COMPLETIONS, COMP(",'prompt':[{}]"), "prompt[0]", "invalid_type"},
    {SL_API_COMPLETIONS, COMP(",'prompt':'a','logprobs':6"), "logprobs", "invalid_value"},
    {SL_API_COMPLETIONS, COMP(",'prompt':'a','stream_options':{}"), "stream_options", "invalid_value"},
    {SL_API_COMPLETIONS, COMP(",'prompt':'a','temperature':2.01"), "temperature", "invalid_value"},
    /* embeddings */
    {SL_API_EMBEDDINGS, EMB(""), "input", "missing_required_parameter"},
    {SL_API_EMBEDDINGS, EMB(",'input':''"), "input", "invalid_value"},
    {SL_API_EMBEDDINGS, EMB(",'input':[]"), "input", "invalid_value"},
    {SL_API_EMBEDDINGS, EMB(",'input':['a','']"), "input[1]", "invalid_value"},
    {SL_API_EMBEDDINGS, EMB(",'input':{}"), "input", "invalid_type"},
    {SL_API_EMBEDDINGS, EMB(",'input':[null]"), "input[0]", "invalid_type"},
    {SL_API_EMBEDDINGS, EMB(",'input':'a','encoding_format':'int8'"), "encoding_format", "invalid_value"},
    {SL_API_EMBEDDINGS, EMB(",'input':'a','dimensions':0"), "dimensions", "invalid_value"},
};

static void test_bad_requests(void)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(bad_cases); i++) {
        const bad_case *c = &bad_cases[i];
        char *body = dq(c->body);
        sl_arena *a = sl_arena_create(4096);
        sl_request *r = (sl_request *)1;
        sl_api_error e;
        memset(&e, 0x5a, sizeof e);
        int rc = sl_api_decode_request(c->kind, body, strlen(body), a, &r, &e);
        if (rc != SL_EINVAL && rc != SL_EPARSE)
            T_FAIL_AT("case %zu %s: rc %d", i, body, rc);
        if (r != NULL)
            T_FAIL_AT("case %zu: out not cleared", i);
        if (e.status != 400 || strcmp(e.type, "invalid_request_error") != 0)
            T_FAIL_AT("case %zu %s: status %d type %s", i, body, e.status, e.type);
        if (!e.code || strcmp(e.code, c->code) != 0)
            T_FAIL_AT("case %zu %s: code %s, want %s (%s)", i, body, e.code ? e.code : "(null)", c->code,
                      e.message);
        if ((c->param == NULL) != (e.param == NULL) || (c->param && strcmp(c->param, e.param) != 0))
            T_FAIL_AT("case %zu %s: param %s, want %s (%s)", i, body, e.param ? e.param : "(null)",
                      c->param ? c->param : "(null)", e.message);
        if (strlen(e.message) < 20)
            T_FAIL_AT("case %zu: message too short: %s", i, e.message);
        if ((rc == SL_EPARSE) != (strcmp(c->code, "invalid_json") == 0))
            T_FAIL_AT("case %zu: rc %d for code %s", i, rc, c->code);
        sl_arena_destroy(a);
        sl_free(body);
    }
    EXPECT(SL_ARRAY_LEN(bad_cases) >= 60);
}

static sl_api_error last_err;

static sl_request *decode(sl_api_kind kind, const char *tbody, sl_arena *a)
{
    char *body = dq(tbody);
    sl_request *r = NULL;
    int rc = sl_api_decode_request(kind, body, strlen(body), a, &r, &last_err);
    EXPECT(rc == 0 || r == NULL);
    sl_free(body);
    return r;
}

/* For requests that must decode: says why when one does not. */
static sl_request *decode_ok(sl_api_kind kind, const char *tbody, sl_arena *a)
{
    sl_request *r = decode(kind, tbody, a);
    if (!r)
        fprintf(stderr, "unexpected decode failure: %s (param %s)\n", last_err.message,
                last_err.param ? last_err.param : "null");
    return r;
}

static void test_messages_for_humans(void)
{
    sl_arena *a = sl_arena_create(4096);
    EXPECT(decode(SL_API_CHAT, CHAT(",'temperature':3"), a) == NULL);
    EXPECT_EQ_STR(last_err.message, "'temperature' must be between 0 and 2, got 3.");
    EXPECT(decode(SL_API_CHAT, "{'model':'m','messages':[{'role':'user','content':'a'},{'role':'wizard'}]}", a) ==
           NULL);
    EXPECT_EQ_STR(last_err.message,
                  "'messages[1].role' must be one of system, developer, user, assistant, tool; got 'wizard'.");
    EXPECT(decode(SL_API_CHAT, "{'model':'m',\n 'messages':x}", a) == NULL);
    EXPECT_CONTAINS(last_err.message, "line 2, column 13 (byte 27): invalid token near 'x'");
    EXPECT(decode(SL_API_CHAT, CHAT(",'base_url':'http://x'"), a) == NULL);
    EXPECT_CONTAINS(last_err.message, "cannot be set by clients");
    EXPECT(decode(SL_API_CHAT, CHAT(",'stream_options':{}"), a) == NULL);
    EXPECT_CONTAINS(last_err.message, "only allowed when 'stream' is true");
    sl_arena_destroy(a);
}

static void test_depth_limit(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    /* the top-level object is level 1, so 63 more brackets reach exactly the limit */
    for (int depth = SL_API_MAX_DEPTH - 1; depth <= SL_API_MAX_DEPTH; depth++) {
        sl_buf_reset(&b);
        sl_buf_append_str(&b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"[[[[{{{{\"}],\"x\":");
        for (int i = 0; i < depth; i++)
            sl_buf_append_char(&b, '[');
        for (int i = 0; i < depth; i++)
            sl_buf_append_char(&b, ']');
        sl_buf_append_char(&b, '}');
        sl_request *r = NULL;
        int rc = sl_api_decode_request(SL_API_CHAT, b.data, b.len, a, &r, &last_err);
        if (depth < SL_API_MAX_DEPTH) {
            EXPECT_EQ_INT(rc, 0);
            sl_request_release(r);
        } else {
            EXPECT_EQ_INT(rc, SL_EPARSE);
            EXPECT_EQ_STR(last_err.code, "invalid_json");
            EXPECT_CONTAINS(last_err.message, "nesting deeper than 64 levels");
        }
    }
    /* far deeper than the parser's own recursion limit: refused, no crash */
    sl_buf_reset(&b);
    for (int i = 0; i < 50000; i++)
        sl_buf_append_char(&b, '[');
    sl_request *r = NULL;
    EXPECT_EQ_INT(sl_api_decode_request(SL_API_CHAT, b.data, b.len, a, &r, &last_err), SL_EPARSE);
    sl_buf_free(&b);
    sl_arena_destroy(a);
}

static void test_chat_string_content(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_ok(SL_API_CHAT,
                           "{'model':'gpt-x','messages':[{'role':'system','content':'be brief'},"
                           "{'role':'developer','content':'rules','name':'ops'},{'role':'user','content':'hi'}]}",
                           a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_INT(r->kind, SL_API_CHAT);
    EXPECT_EQ_STR(r->model, "gpt-x");
    EXPECT_EQ_UINT(r->n_messages, 3);
    EXPECT_EQ_INT(r->messages[0].role, SL_ROLE_SYSTEM);
    EXPECT_EQ_STR(r->messages[0].text, "be brief");
    EXPECT(r->messages[0].name == NULL);
    EXPECT_EQ_INT(r->messages[1].role, SL_ROLE_DEVELOPER);
    EXPECT_EQ_STR(r->messages[1].name, "ops");
    EXPECT_EQ_INT(r->messages[2].role, SL_ROLE_USER);
    EXPECT_EQ_STR(r->messages[2].text, "hi");
    EXPECT_EQ_INT(r->n, 1);
    EXPECT(!r->stream && !r->include_usage && !r->has_temperature && !r->has_top_p && !r->has_max_tokens);
    EXPECT(!r->has_seed && !r->logprobs && !r->has_tools && r->n_stop == 0 && r->user == NULL);
    EXPECT(r->response_format_type == NULL);
    /* only whitelisted keys: the fast decoder read it (test_fastreq.c covers it) */
    EXPECT(r->body == NULL && r->raw != NULL);
    sl_request_release(r);
    EXPECT(r->body == NULL);
    sl_arena_destroy(a);
}

static void test_chat_parts_and_tools(void)
{
    sl_arena *a = sl_arena_create(256); /* small blocks: strings span several */
    sl_request *r = decode_ok(
        SL_API_CHAT,
        "{'model':'m','messages':["
        "{'role':'user','content':[{'type':'text','text':'look at'},"
        "{'type':'image_url','image_url':{'url':'data:image/png;base64,AAAA'}},{'type':'text','text':'this'}]},"
        "{'role':'user','content':[{'type':'input_audio','input_audio':{'data':'x','format':'wav'}}]},"
        "{'role':'assistant','content':null,'tool_calls':[{'id':'c1','type':'function',"
        "'function':{'name':'get','arguments':'{}'}}]},"
        "{'role':'tool','tool_call_id':'c1','content':'42'},"
        "{'role':'assistant','tool_calls':[{'id':'c2','type':'function','function':{'name':'get','arguments':'{}'}}]}"
        "],'tools':[{'type':'function','function':{'name':'get','parameters':{'type':'object'}}}],"
        "'tool_choice':{'type':'function','function':{'name':'get'}},"
        "'response_format':{'type':'json_schema','json_schema':{'name':'s','schema':{'type':'object'}}}}",
        a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_UINT(r->n_messages, 5);
    EXPECT_EQ_STR(r->messages[0].text, "look at\nthis");
    EXPECT_EQ_UINT(r->messages[0].n_media_parts, 1);
    EXPECT(r->messages[1].text == NULL);
    EXPECT_EQ_UINT(r->messages[1].n_media_parts, 1);
    EXPECT_EQ_INT(r->messages[2].role, SL_ROLE_ASSISTANT);
    EXPECT(r->messages[2].text == NULL);
    EXPECT_EQ_UINT(r->messages[2].n_tool_calls, 1);
    EXPECT_EQ_INT(r->messages[3].role, SL_ROLE_TOOL);
    EXPECT_EQ_STR(r->messages[3].tool_call_id, "c1");
    EXPECT_EQ_STR(r->messages[3].text, "42");
    EXPECT(r->messages[4].text == NULL);
    EXPECT(r->has_tools);
    EXPECT_EQ_STR(r->response_format_type, "json_schema");

    /* tools pass through to the upstream untouched */
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "up", &b), 0);
    EXPECT_CONTAINS(b.data,
                    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":"
                    "\"object\"}}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}}");
    EXPECT_CONTAINS(b.data, "{\"model\":\"up\",\"messages\":[");
    sl_buf_free(&b);
    sl_request_release(r);
    sl_arena_destroy(a);
}

static void test_chat_sampling_fields(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_ok(SL_API_CHAT,
                           CHAT(",'temperature':0.7,'top_p':0.9,'n':2,'max_tokens':50,'max_completion_tokens':100,"
                                "'stop':'END','seed':-12345678901,'user':'u-1','presence_penalty':-1.5,"
                                "'frequency_penalty':2,'logprobs':true,'top_logprobs':3,'stream':true,"
                                "'stream_options':{'include_usage':true},'logit_bias':{'50256':-100}"),
                           a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT(r->has_temperature);
    EXPECT_NEAR(r->temperature, 0.7, 1e-12);
    EXPECT(r->has_top_p);
    EXPECT_NEAR(r->top_p, 0.9, 1e-12);
    EXPECT_EQ_INT(r->n, 2);
    EXPECT(r->has_max_tokens);
    EXPECT_EQ_INT(r->max_tokens, 100);
    EXPECT_EQ_UINT(r->n_stop, 1);
    EXPECT_EQ_STR(r->stop[0], "END");
    EXPECT(r->has_seed);
    EXPECT_EQ_INT(r->seed, -12345678901LL);
    EXPECT_EQ_STR(r->user, "u-1");
    EXPECT_NEAR(r->presence_penalty, -1.5, 0);
    EXPECT_NEAR(r->frequency_penalty, 2, 0);
    EXPECT(r->logprobs);
    EXPECT_EQ_INT(r->top_logprobs, 3);
    EXPECT(r->stream);
    EXPECT(r->include_usage);
    sl_request_release(r);

    /* nulls mean absent; integral reals are integers; stop arrays */
    r = decode_ok(SL_API_CHAT, CHAT(",'temperature':null,'n':3.0,'stop':['a','b','c','d'],'tools':null,'seed':null"),
               a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT(!r->has_temperature);
    EXPECT(!r->has_seed);
    EXPECT_EQ_INT(r->n, 3);
    EXPECT_EQ_UINT(r->n_stop, 4);
    EXPECT_EQ_STR(r->stop[3], "d");
    sl_request_release(r);
    sl_arena_destroy(a);
}

static void test_upstream_body_passthrough(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_ok(SL_API_CHAT,
                           "{'model':'alias','messages':[{'role':'user','content':'hi'}],"
                           "'x_custom':{'a':[1,2,null]},'temperature':0.5,'metadata':{'k':'v'}}",
                           a);
    EXPECT(r != NULL);
    if (!r)
        return;
    sl_buf b;
    sl_buf_init(&b, 4096);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "gpt-up", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"model\":\"gpt-up\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                          "\"x_custom\":{\"a\":[1,2,null]},\"temperature\":0.5,\"metadata\":{\"k\":\"v\"}}");
    /* the request itself still names the client's model */
    EXPECT_EQ_STR(json_string_value(json_object_get(r->body, "model")), "alias");
    EXPECT_EQ_STR(r->model, "alias");

    /* a buffer too small fails cleanly and leaves out unchanged */
    sl_buf small;
    sl_buf_init(&small, 16);
    sl_buf_append_str(&small, "keep");
    EXPECT_EQ_INT(sl_api_upstream_body(r, "gpt-up", &small), SL_ETOOBIG);
    EXPECT_EQ_UINT(small.len, 4);
    EXPECT_EQ_STR(small.data, "keep");
    sl_buf_free(&small);
    sl_request_release(r);

    /* escapes and numbers come out exactly as jansson writes them */
    sl_buf_reset(&b);
    const char *odd = "{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"q\\\"\\\\/\\b\\f\\n\\r\\t"
                      "\\u0001\\u001f\\u007f\\u00e9\xe2\x82\xac\"}],\"temperature\":1,\"top_p\":1e-7,"
                      "\"x\":[1.5e300,-0.0,2.0,100000000000000000000.0,-9223372036854775808,0.1],\"k\\n\":{}}";
    r = NULL;
    sl_api_error err;
    EXPECT_EQ_INT(sl_api_decode_request(SL_API_CHAT, odd, strlen(odd), a, &r, &err), 0);
    if (!r)
        return;
    EXPECT_EQ_INT(sl_api_upstream_body(r, "m\xc3\xa9", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"model\":\"m\xc3\xa9\",\"messages\":[{\"role\":\"user\",\"content\":\"q\\\"\\\\/\\b\\f\\n"
                          "\\r\\t\\u0001\\u001F\x7f\xc3\xa9\xe2\x82\xac\"}],\"temperature\":1,\"top_p\":1e-7,"
                          "\"x\":[1.5e300,-0.0,2.0,1e20,-9223372036854775808,0.1],\"k\\n\":{}}");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "bad\xff", &b), SL_EINVAL);
    EXPECT_EQ_UINT(b.len, 0);
    sl_request_release(r);

    /* streaming without stream_options: include_usage is forced on upstream */
    sl_buf_reset(&b);
    r = decode_ok(SL_API_CHAT, "{'model':'a','messages':[{'role':'user','content':'hi'}],'stream':true}", a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT(!r->include_usage);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "b", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"model\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true}}");
    sl_request_release(r);

    /* client said include_usage false and sent another option: both kept but usage forced */
    sl_buf_reset(&b);
    r = decode_ok(SL_API_COMPLETIONS,
               "{'model':'a','prompt':'p','stream':true,'stream_options':{'include_usage':false,'other':1}}", a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT(!r->include_usage);
    EXPECT_EQ_INT(sl_api_upstream_body(r, "b", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"model\":\"b\",\"prompt\":\"p\",\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true,\"other\":1}}");
    json_t *so = json_object_get(r->body, "stream_options");
    EXPECT(json_is_false(json_object_get(so, "include_usage")));
    sl_request_release(r);
    sl_buf_free(&b);
    sl_arena_destroy(a);
}

static void test_completions_prompts(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_ok(SL_API_COMPLETIONS, COMP(",'prompt':'once upon','logprobs':2,'echo':true"), a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_UINT(r->n_prompts, 1);
    EXPECT_EQ_STR(r->prompts[0], "once upon");
    EXPECT_EQ_INT(r->n_token_prompts, 0);
    EXPECT(r->logprobs);
    EXPECT_EQ_INT(r->top_logprobs, 2);
    sl_request_release(r);

    r = decode_ok(SL_API_COMPLETIONS, COMP(",'prompt':['a','','c']"), a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_UINT(r->n_prompts, 3);
    EXPECT_EQ_STR(r->prompts[1], "");
    EXPECT_EQ_STR(r->prompts[2], "c");
    sl_request_release(r);

    r = decode_ok(SL_API_COMPLETIONS, COMP(",'prompt':[1,2,3]"), a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_UINT(r->n_prompts, 0);
    EXPECT_EQ_INT(r->n_token_prompts, 1);
    sl_request_release(r);

    r = decode_ok(SL_API_COMPLETIONS, COMP(",'prompt':[[1,2],[3],[4,5,6]]"), a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_INT(r->n_token_prompts, 3);
    sl_request_release(r);
    sl_arena_destroy(a);
}

static void test_embeddings_inputs(void)
{
    sl_arena *a = sl_arena_create(4096);
    sl_request *r = decode_ok(SL_API_EMBEDDINGS, EMB(",'input':['x','yz'],'encoding_format':'base64','dimensions':256"),
                           a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_INT(r->kind, SL_API_EMBEDDINGS);
    EXPECT_EQ_UINT(r->n_inputs, 2);
    EXPECT_EQ_STR(r->inputs[1], "yz");
    EXPECT_EQ_STR(r->encoding_format, "base64");
    EXPECT(r->has_dimensions);
    EXPECT_EQ_INT(r->dimensions, 256);
    sl_request_release(r);

    r = decode_ok(SL_API_EMBEDDINGS, EMB(",'input':[[1,2],[3]]"), a);
    EXPECT(r != NULL);
    if (!r)
        return;
    EXPECT_EQ_UINT(r->n_inputs, 0);
    EXPECT_EQ_INT(r->n_token_inputs, 2);
    sl_request_release(r);

    /* the entry limit counts inputs, not the token ids of a single input */
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    sl_buf_append_str(&b, "{'model':'m','input':[0");
    for (int i = 1; i < 3000; i++)
        sl_buf_appendf(&b, ",%d", i);
    sl_buf_append_str(&b, "]}");
    r = decode_ok(SL_API_EMBEDDINGS, b.data, a);
    EXPECT(r != NULL);
    if (r) {
        EXPECT_EQ_INT(r->n_token_inputs, 1);
        sl_request_release(r);
    }
    sl_buf_reset(&b);
    sl_buf_append_str(&b, "{'model':'m','input':['a'");
    for (int i = 1; i < SL_API_MAX_EMBED_INPUTS + 1; i++)
        sl_buf_append_str(&b, ",'a'");
    sl_buf_append_str(&b, "]}");
    EXPECT(decode(SL_API_EMBEDDINGS, b.data, a) == NULL);
    EXPECT_EQ_STR(last_err.param, "input");
    EXPECT_CONTAINS(last_err.message, "at most 2048 entries, got 2049");
    sl_buf_free(&b);

    /* embeddings ignore sampling fields (they pass through) but never stream usage */
    r = decode_ok(SL_API_EMBEDDINGS, EMB(",'input':'q','temperature':9"), a);
    EXPECT(r != NULL);
    if (r)
        sl_request_release(r);
    sl_arena_destroy(a);
}

/* Every allocation failing in turn gives SL_ENOMEM (a 500) or success, never a crash or leak. */
static void test_decode_alloc_failures(void)
{
    char *body = dq("{'model':'m','messages':[{'role':'user','content':[{'type':'text','text':'a'},"
                    "{'type':'text','text':'b'}]},{'role':'tool','tool_call_id':'t','content':'c'}],'stop':['x','y'],"
                    "'user':'u'}");
    int ok = 0, nomem = 0;
    for (long k = 1; k < 40; k++) {
        sl_arena *a = sl_arena_create(256);
        if (!a)
            break;
        sl_request *r = NULL;
        sl_api_error e;
        sl_alloc_fail_after(k);
        int rc = sl_api_decode_request(SL_API_CHAT, body, strlen(body), a, &r, &e);
        sl_alloc_fail_after(0);
        if (rc == 0) {
            ok++;
            sl_request_release(r);
        } else {
            EXPECT_EQ_INT(rc, SL_ENOMEM);
            EXPECT_EQ_INT(e.status, 500);
            EXPECT(r == NULL);
            nomem++;
        }
        sl_arena_destroy(a);
    }
    EXPECT(ok > 0);
    EXPECT(nomem > 0);
    sl_free(body);
}

static void test_error_body(void)
{
    sl_api_error e;
    sl_buf b;
    sl_buf_init(&b, 4096);
    EXPECT_EQ_INT(sl_api_error_set(&e, 400, "invalid_request_error", "invalid_value", "temperature",
                                   "bad \"%s\"\n\t\\ %d", "t", 3),
                  SL_EINVAL);
    EXPECT_EQ_INT(sl_api_error_body(&e, &b), 0);
    EXPECT_EQ_STR(b.data, "{\"error\":{\"message\":\"bad \\\"t\\\"\\n\\t\\\\ 3\",\"type\":\"invalid_request_error\","
                          "\"param\":\"temperature\",\"code\":\"invalid_value\"}}");

    sl_buf_reset(&b);
    sl_api_error_set(&e, 500, "server_error", NULL, NULL, "x\x01y\xff\xc3\xa9");
    EXPECT_EQ_INT(sl_api_error_body(&e, &b), 0);
    EXPECT_EQ_STR(b.data, "{\"error\":{\"message\":\"x\\u0001y\xEF\xBF\xBD\xc3\xa9\",\"type\":\"server_error\","
                          "\"param\":null,\"code\":null}}");

    /* param survives a copy of the struct */
    sl_api_error copy;
    sl_api_error_set(&e, 400, "invalid_request_error", "invalid_type", "messages[3].content", "m");
    sl_api_error_copy(&copy, &e);
    memset(&e, 0, sizeof e);
    EXPECT(copy.param == copy.param_buf);
    EXPECT_EQ_STR(copy.param, "messages[3].content");

    /* SSE error frame */
    sl_buf_reset(&b);
    sl_api_error_upstream(&copy, "boom");
    EXPECT_EQ_INT(sl_sse_error(&b, &copy), 0);
    EXPECT_EQ_STR(b.data, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,"
                          "\"code\":\"upstream_error\"}}\n\n");
    sl_buf_free(&b);
}

static void test_error_constructors(void)
{
    sl_api_error e;
#define CHECK(call, st, ty, co)                                                                    \
    do {                                                                                           \
        EXPECT_EQ_INT(call, SL_EINVAL);                                                            \
        EXPECT_EQ_INT(e.status, st);                                                               \
        EXPECT_EQ_STR(e.type, ty);                                                                 \
        EXPECT_EQ_STR(e.code, co);                                                                 \
        EXPECT(strlen(e.message) > 10);                                                            \
    } while (0)
    CHECK(sl_api_error_bad_request(&e, "invalid_value", "n", NULL), 400, "invalid_request_error", "invalid_value");
    CHECK(sl_api_error_unauthorized(&e, NULL), 401, "invalid_request_error", "invalid_api_key");
    CHECK(sl_api_error_forbidden(&e, NULL), 403, "permission_error", "permission_denied");
    CHECK(sl_api_error_model_not_found(&e, "gpt-9"), 404, "invalid_request_error", "model_not_found");
    EXPECT_EQ_STR(e.param, "model");
    EXPECT_CONTAINS(e.message, "'gpt-9'");
    CHECK(sl_api_error_not_found(&e, "GET", "/v2/x"), 404, "invalid_request_error", "not_found");
    EXPECT_CONTAINS(e.message, "GET /v2/x");
    CHECK(sl_api_error_method_not_allowed(&e, "PUT", "/v1/models"), 405, "invalid_request_error",
          "method_not_allowed");
    CHECK(sl_api_error_too_large(&e, 1048576), 413, "invalid_request_error", "request_too_large");
    EXPECT_CONTAINS(e.message, "1048576 bytes");
    CHECK(sl_api_error_rate_limited(&e, "slow down %d", 5), 429, "rate_limit_error", "rate_limit_exceeded");
    EXPECT_EQ_STR(e.message, "slow down 5");
    CHECK(sl_api_error_quota(&e, NULL), 429, "insufficient_quota", "insufficient_quota");
    CHECK(sl_api_error_internal(&e, NULL), 500, "server_error", "internal_error");
    CHECK(sl_api_error_upstream(&e, NULL), 502, "server_error", "upstream_error");
    CHECK(sl_api_error_overloaded(&e, NULL), 503, "server_error", "overloaded");
    CHECK(sl_api_error_timeout(&e, NULL), 504, "server_error", "timeout");
    EXPECT(e.param == NULL);
#undef CHECK
}

static void test_sse_framing(void)
{
    sl_buf b;
    sl_buf_init(&b, 1024);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"{\"a\":1}", "data: {\"a\":1}\n\n"},
        {"", "data: \n\n"},
        {"line1\nline2", "data: line1\ndata: line2\n\n"},
        {"a\r\nb\rc\n\nd", "data: a\ndata: b\ndata: c\ndata: \ndata: d\n\n"},
        {"end\n", "data: end\ndata: \n\n"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_buf_reset(&b);
        EXPECT_EQ_INT(sl_sse_data(&b, cases[i].in, strlen(cases[i].in)), 0);
        EXPECT_EQ_UINT(b.len, strlen(cases[i].out));
        EXPECT_EQ_STR(b.data, cases[i].out);
    }
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_sse_done(&b), 0);
    EXPECT_EQ_STR(b.data, "data: [DONE]\n\n");

    /* all or nothing when the bound is hit in the middle */
    sl_buf small;
    sl_buf_init(&small, 20);
    EXPECT_EQ_INT(sl_sse_data(&small, "x", 1), 0);
    EXPECT_EQ_INT(sl_sse_data(&small, "aa\nbb", 5), SL_ETOOBIG);
    EXPECT_EQ_STR(small.data, "data: x\n\n");
    sl_buf_free(&small);
    sl_buf_free(&b);
}

static void test_models(void)
{
    sl_buf b;
    sl_buf_init(&b, 4096);
    sl_api_model ms[] = {{"llama-3-8b", NULL, 1700000000}, {"gpt-\"q\"", "acme", 0}};
    EXPECT_EQ_INT(sl_api_models_list(ms, 2, &b), 0);
    EXPECT_EQ_STR(b.data,
                  "{\"object\":\"list\",\"data\":[{\"id\":\"llama-3-8b\",\"object\":\"model\",\"created\":1700000000,"
                  "\"owned_by\":\"sluice\"},{\"id\":\"gpt-\\\"q\\\"\",\"object\":\"model\",\"created\":0,"
                  "\"owned_by\":\"acme\"}]}");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_api_models_list(NULL, 0, &b), 0);
    EXPECT_EQ_STR(b.data, "{\"object\":\"list\",\"data\":[]}");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_api_model_object(&ms[0], &b), 0);
    EXPECT_EQ_STR(b.data, "{\"id\":\"llama-3-8b\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"sluice\"}");
    /* the result is valid JSON */
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    EXPECT(json_is_object(j));
    json_decref(j);
    sl_buf_free(&b);
}

static void test_inspect_chunk(void)
{
    static const struct {
        const char *data;
        int rc;
        bool content, finish, usage_only, usage_set;
        int64_t p, c, t;
    } cases[] = {
        {"{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}", 0,
         false, false, false, false, 0, 0, 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}", 0, true, false, false,
         false, 0, 0, 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}",
         0, true, false, false, false, 0, 0, 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}", 0, true, false, false, false, 0, 0,
         0},
        {"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", 0, false, true, false, false, 0, 0,
         0},
        {"{\"choices\":[{\"text\":\"x\",\"index\":0,\"finish_reason\":\"length\"}]}", 0, true, true, false, false, 0,
         0, 0},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}", 0, false,
         false, true, true, 5, 7, 12},
        {"{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}", 0, false, false, true, true, 5, 7, 12},
        {"{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
         "\"total_tokens\":2}}",
         0, true, false, false, true, 1, 1, 2},
        {"{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}", 0, true, false, false, false, 0, 0, 0},
        {"{\"choices\":[5,null,{\"delta\":5}]}", 0, false, false, false, false, 0, 0, 0},
        {"[DONE]", SL_EPARSE, false, false, false, false, 0, 0, 0},
        {"[1]", SL_EPARSE, false, false, false, false, 0, 0, 0},
        {"", SL_EPARSE, false, false, false, false, 0, 0, 0},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_usage u = {.known = false, .prompt_tokens = -99};
        bool content = true, finish = true, usage_only = true;
        int rc = sl_api_inspect_chunk(cases[i].data, strlen(cases[i].data), &u, &content, &finish, &usage_only);
        if (rc != cases[i].rc || content != cases[i].content || finish != cases[i].finish ||
            usage_only != cases[i].usage_only || u.known != cases[i].usage_set)
            T_FAIL_AT("chunk %zu: rc %d content %d finish %d usage_only %d known %d", i, rc, content, finish,
                      usage_only, u.known);
        if (cases[i].usage_set) {
            EXPECT_EQ_INT(u.prompt_tokens, cases[i].p);
            EXPECT_EQ_INT(u.completion_tokens, cases[i].c);
            EXPECT_EQ_INT(u.total_tokens, cases[i].t);
        } else {
            EXPECT_EQ_INT(u.prompt_tokens, -99); /* untouched */
        }
    }
    /* NULL out-parameters are allowed */
    EXPECT_EQ_INT(sl_api_inspect_chunk("{}", 2, NULL, NULL, NULL, NULL), 0);
}

static void test_parse_response(void)
{
    const char *chat = "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"up\",\"choices\":[],"
                       "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
                       "\"prompt_tokens_details\":{\"cached_tokens\":16}}}";
    sl_usage u;
    EXPECT_EQ_INT(sl_api_parse_response(chat, strlen(chat), &u), 0);
    EXPECT(u.known);
    EXPECT_EQ_INT(u.prompt_tokens, 19);
    EXPECT_EQ_INT(u.completion_tokens, 10);
    EXPECT_EQ_INT(u.total_tokens, 29);
    EXPECT_EQ_INT(u.cached_tokens, 16);

    const char *emb = "{\"object\":\"list\",\"data\":[],\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
    EXPECT_EQ_INT(sl_api_parse_response(emb, strlen(emb), &u), 0);
    EXPECT(u.known);
    EXPECT_EQ_INT(u.prompt_tokens, 8);
    EXPECT_EQ_INT(u.completion_tokens, 0);
    EXPECT_EQ_INT(u.total_tokens, 8);

    const char *none = "{\"choices\":[]}";
    EXPECT_EQ_INT(sl_api_parse_response(none, strlen(none), &u), 0);
    EXPECT(!u.known);
    const char *badusage = "{\"usage\":{\"prompt_tokens\":\"many\"}}";
    EXPECT_EQ_INT(sl_api_parse_response(badusage, strlen(badusage), &u), 0);
    EXPECT(!u.known);
    EXPECT_EQ_INT(sl_api_parse_response("<html>", 6, &u), SL_EPARSE);
    EXPECT_EQ_INT(sl_api_parse_response("[]", 2, &u), SL_EPARSE);

    sl_buf b;
    sl_buf_init(&b, 1024);
    const char *resp = "{\"id\":\"x\",\"model\":\"gpt-up\",\"choices\":[]}";
    EXPECT_EQ_INT(sl_api_rewrite_model(resp, strlen(resp), "alias", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"id\":\"x\",\"model\":\"alias\",\"choices\":[]}");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_api_rewrite_model("{\"a\": 1}", 8, "alias", &b), 0);
    EXPECT_EQ_STR(b.data, "{\"a\":1}");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_api_rewrite_model("nope", 4, "alias", &b), SL_EPARSE);
    EXPECT_EQ_UINT(b.len, 0);
    sl_buf_free(&b);
}

int main(void)
{
    RUN(test_bad_requests);
    RUN(test_messages_for_humans);
    RUN(test_depth_limit);
    RUN(test_chat_string_content);
    RUN(test_chat_parts_and_tools);
    RUN(test_chat_sampling_fields);
    RUN(test_upstream_body_passthrough);
    RUN(test_completions_prompts);
    RUN(test_embeddings_inputs);
    RUN(test_decode_alloc_failures);
    RUN(test_error_body);
    RUN(test_error_constructors);
    RUN(test_sse_framing);
    RUN(test_models);
    RUN(test_inspect_chunk);
    RUN(test_parse_response);
    return TEST_REPORT();
}
