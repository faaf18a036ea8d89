/* The upstream scanner (src/api/scan.c): exact results on well-formed
 * bodies and chunks, SL_EUNSUPPORTED on everything it leaves to the full
 * parser, and the public readers' answers on those (the fallback). */
#include "api/api.h"
#include "test.h"

#include <stdlib.h>
#include <time.h>

#define SCAN(s, out) sl_api_scan_upstream((s), strlen(s), (out))

static void test_chunks(void)
{
    static const struct {
        const char *data;
        bool content, finish, usage_only, known;
        int64_t p, c, t, cached;
    } cases[] = {
        {"{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
         "\"finish_reason\":null}]}",
         false, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}", true, false, false,
         false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"content\":\"\\n\"}}]}", true, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"refusal\":\"no\"}}]}", true, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"reasoning\":\"r\"}}]}", true, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}", false, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}", true,
         false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"function_call\":{}}}]}", true, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"delta\":{\"function_call\":null,\"content\":null}}]}", false, false, false, false, 0, 0,
         0, 0},
        {"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", false, true, false, false, 0, 0, 0,
         0},
        {"{\"choices\":[{\"text\":\"x\",\"finish_reason\":\"\"}]}", true, true, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"text\":\"\",\"delta\":{\"content\":\"y\"}}]}", true, false, false, false, 0, 0, 0, 0},
        /* a content key outside delta, or delta outside a choice, is not content */
        {"{\"content\":\"x\",\"delta\":{\"content\":\"x\"},\"choices\":[{\"message\":{\"content\":\"x\"}}]}", false,
         false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[5,null,[{\"text\":\"x\"}],{\"delta\":5}]}", false, false, false, false, 0, 0, 0, 0},
        {"{\"choices\":{\"text\":\"x\"},\"usage\":{}}", false, false, true, false, 0, 0, 0, 0},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}", false,
         false, true, true, 5, 7, 12, 0},
        {"{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}", false, false, true, true, 5, 7, 12, 0},
        {"{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":1,\"total_tokens\":9,"
         "\"prompt_tokens_details\":{\"cached_tokens\":-4}}}",
         true, false, false, true, 1, 0, 9, 0},
        {"{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.0,\"prompt_tokens_details\":{\"cached_tokens\":3}}}",
         false, false, true, true, 0, 0, 0, 3},
        {"{\"usage\":{\"prompt_tokens\":\"5\",\"total_tokens\":null}}", false, false, true, false, 0, 0, 0, 0},
        {"{\"usage\":{\"prompt_tokens\":999999999999999999}}", false, false, true, true, 999999999999999999, 0,
         999999999999999999, 0},
        {" \t\r\n{ \"choices\" : [ { \"delta\" : { \"content\" : \"caf\xc3\xa9 \xf0\x9f\x98\x80\" } } ] } \n", true,
         false, false, false, 0, 0, 0, 0},
        {"{\"choices\":[{\"text\":\"\\ud83d\\ude00\",\"logprobs\":[-0.5,1e-9,-0,3E+2,true,false]}]}", true, false,
         false, false, 0, 0, 0, 0},
        /* escaped keys are fine where no key matters */
        {"{\"choices\":[{\"index\":0,\"logprobs\":{\"t\\u0065xt\":\"x\"}}]}", false, false, false, false,
         0, 0, 0, 0},
        {"{}", false, false, false, false, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_api_scan s;
        int rc = SCAN(cases[i].data, &s);
        if (rc != 0 || s.has_content != cases[i].content || s.finish != cases[i].finish ||
            s.usage_only != cases[i].usage_only || s.usage.known != cases[i].known) {
            T_FAIL_AT("case %zu: rc %d content %d finish %d usage_only %d known %d", i, rc, s.has_content, s.finish,
                      s.usage_only, s.usage.known);
            continue;
        }
        EXPECT_EQ_INT(s.usage.prompt_tokens, cases[i].p);
        EXPECT_EQ_INT(s.usage.completion_tokens, cases[i].c);
        EXPECT_EQ_INT(s.usage.total_tokens, cases[i].t);
        EXPECT_EQ_INT(s.usage.cached_tokens, cases[i].cached);
    }
}

/* {"a":[[...[1]...]]} with `arrays` arrays; returns its length. */
static size_t nested(char *out, int arrays)
{
    size_t n = 0;
    memcpy(out, "{\"a\":", 5);
    n = 5;
    for (int i = 0; i < arrays; i++)
        out[n++] = '[';
    out[n++] = '1';
    for (int i = 0; i < arrays; i++)
        out[n++] = ']';
    out[n++] = '}';
    return n;
}

static void test_left_to_the_parser(void)
{
    static const char *const cases[] = {
        "", "   ", "[]", "\"x\"", "5", "null", "[DONE]", "<html>",
        "{", "{\"a\"", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{'a':1}", "{a:1}",
        "{\"a\":1}x", "{\"a\":1}{}", "{\"a\":[1,]}", "{\"a\":[1 2]}",
        "{\"a\":01}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":0x10}",
        "{\"a\":1e400}", "{\"a\":1e99999}", "{\"a\":1234567890123456789}", "{\"a\":NaN}", "{\"a\":tru}",
        "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud83d\"}", "{\"a\":\"\\ude00\"}", "{\"a\":\"\\ud83d\\u0041\"}",
        "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"unterminated}",
        "{\"a\":\"\xc3\x28\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xe2\x82\"}", "\xef\xbb\xbf{}",
        /* well-formed, but left to the parser: keys that matter repeated or escaped */
        "{\"usage\":{\"total_tokens\":1},\"usage\":{\"total_tokens\":2}}",
        "{\"choices\":[{\"text\":\"\",\"text\":\"x\"}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"\"}}]}",
        "{\"us\\u0061ge\":{\"total_tokens\":1}}",
        "{\"cho\\u0069ces\":5,\"choices\":[{\"text\":\"a\"}]}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_api_scan s;
        int rc = SCAN(cases[i], &s);
        if (rc != SL_EUNSUPPORTED)
            T_FAIL_AT("case %zu (%s): rc %d, want SL_EUNSUPPORTED", i, cases[i], rc);
    }
    /* nesting: 64 levels (the root object and 63 arrays) are scanned, 65 are not */
    char deep[200];
    size_t n = nested(deep, 63);
    sl_api_scan s;
    EXPECT_EQ_INT(sl_api_scan_upstream(deep, n, &s), 0);
    n = nested(deep, 64);
    EXPECT_EQ_INT(sl_api_scan_upstream(deep, n, &s), SL_EUNSUPPORTED);
    sl_usage u;
    EXPECT_EQ_INT(sl_api_parse_response(deep, n, &u), SL_EPARSE);
}

/* What the public readers answer where the scanner stepped aside. */
static void test_fallback(void)
{
    sl_usage u = {0};
    bool content = false, finish = false, usage_only = false;
    /* repeated keys: the last one wins, as in the full parser */
    const char *dup = "{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"choices\":[],"
                      "\"usage\":{\"prompt_tokens\":1,\"prompt_tokens\":2,\"completion_tokens\":3}}";
    EXPECT_EQ_INT(sl_api_inspect_chunk(dup, strlen(dup), &u, &content, &finish, &usage_only), 0);
    EXPECT(!content);
    EXPECT(usage_only);
    EXPECT(u.known);
    EXPECT_EQ_INT(u.prompt_tokens, 2);
    EXPECT_EQ_INT(u.total_tokens, 5);
    const char *esc = "{\"us\\u0061ge\":{\"total_tokens\":4}}";
    EXPECT_EQ_INT(sl_api_parse_response(esc, strlen(esc), &u), 0);
    EXPECT(u.known);
    EXPECT_EQ_INT(u.total_tokens, 4);
    const char *esc2 = "{\"cho\\u0069ces\":5,\"choices\":[{\"text\":\"a\"}]}";
    EXPECT_EQ_INT(sl_api_inspect_chunk(esc2, strlen(esc2), &u, &content, &finish, &usage_only), 0);
    EXPECT(content);
    const char *big = "{\"usage\":{\"prompt_tokens\":1234567890123456789}}";
    EXPECT_EQ_INT(sl_api_parse_response(big, strlen(big), &u), 0);
    EXPECT_EQ_INT(u.prompt_tokens, 1234567890123456789LL);
    /* malformed stays malformed */
    EXPECT_EQ_INT(sl_api_inspect_chunk("{\"a\":01}", 8, &u, &content, &finish, &usage_only), SL_EPARSE);
    EXPECT_EQ_INT(sl_api_parse_response("{\"a\":\"\\u0000\"}", 13, &u), SL_EPARSE);
    EXPECT_EQ_INT(sl_api_parse_response("{\"a\":1e400}", 11, &u), SL_EPARSE);
}

/* Scans a heap copy of exactly n bytes of s (no NUL after them), so that
 * ASan reports any read past the end. */
static int scan_exact(const char *s, size_t n, sl_api_scan *out)
{
    char *b = sl_malloc(n ? n : 1);
    if (!b)
        return SL_ENOMEM;
    memcpy(b, s, n);
    int rc = sl_api_scan_upstream(b, n, out);
    sl_free(b);
    return rc;
}

/* A chunk that touches every path: keys that matter at every level, an
 * ignored object holding nested arrays, literals, a real and escapes, and
 * usage with cached tokens. */
static const char rich[] =
    "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\",\"tool_calls\":[]},"
    "\"logprobs\":{\"a\\\"b\":[1,-2.5e3,true,null,{\"b\":\"c\\u00e9\\n\"},[[false]]]},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":2}}}";

static bool rich_result(const sl_api_scan *s)
{
    return s->has_content && s->finish && !s->usage_only && s->usage.known && s->usage.prompt_tokens == 3 &&
           s->usage.completion_tokens == 4 && s->usage.total_tokens == 7 && s->usage.cached_tokens == 2;
}

/* Whitespace (each of JSON's four, and runs of them) before and after every
 * structural byte gives the compact text's results; a form feed or vertical
 * tab there (not JSON whitespace) is refused. */
static void test_whitespace_everywhere(void)
{
    sl_api_scan s;
    size_t n = strlen(rich);
    EXPECT_EQ_INT(scan_exact(rich, n, &s), 0);
    EXPECT(rich_result(&s));
    static const char *const ws[] = {" ", "\t", "\n", "\r", " \r\n\t "};
    char buf[sizeof rich + 8];
    bool in_str = false; /* whether position i (before rich[i]) is inside a string */
    size_t sites = 0;
    for (size_t i = 0; i <= n; i++) {
        /* outside strings, a site between tokens is next to a structural byte or a quote */
        bool site = !in_str && (i == 0 || i == n || strchr("{}[],:\"", rich[i - 1]) || strchr("{}[],:\"", rich[i]));
        if (site) {
            sites++;
            for (size_t w = 0; w < SL_ARRAY_LEN(ws); w++) {
                size_t k = strlen(ws[w]);
                memcpy(buf, rich, i);
                memcpy(buf + i, ws[w], k);
                memcpy(buf + i + k, rich + i, n - i);
                sl_api_scan t;
                int rc = scan_exact(buf, n + k, &t);
                if (rc != 0 || !rich_result(&t))
                    T_FAIL_AT("whitespace %zu at %zu: rc %d", w, i, rc);
            }
            static const char bad[] = {'\f', '\v'};
            for (size_t b = 0; b < sizeof bad; b++) {
                memcpy(buf, rich, i);
                buf[i] = bad[b];
                memcpy(buf + i + 1, rich + i, n - i);
                sl_api_scan t;
                int rc = scan_exact(buf, n + 1, &t);
                if (rc != SL_EUNSUPPORTED)
                    T_FAIL_AT("byte 0x%02x at %zu: rc %d, want SL_EUNSUPPORTED", bad[b], i, rc);
            }
        }
        if (i < n && rich[i] == '"' && (i == 0 || rich[i - 1] != '\\'))
            in_str = !in_str;
    }
    EXPECT_EQ_INT(sites, 81); /* the gaps between rich's 80 tokens, and both ends */
}

/* Every proper prefix of an accepted text is refused, whatever byte it ends
 * on (inside a number, a literal, whitespace, a key, a string, just after a
 * key or a colon); and no scan reads past the end (ASan, exact buffers). */
static void test_every_prefix(void)
{
    static const char *const texts[] = {
        rich,
        " { \"choices\" : [ { \"text\" : \"a\" , \"finish_reason\" : null } ] , \"usage\" : { \"total_tokens\" : 12345678901 } } ",
        "{\"a\":12345678,\"b\":-0.5E-7,\"c\":true,\"d\":false,\"e\":null,\"f\":\"0123456789abcdef\\u00e9\"}",
    };
    for (size_t t = 0; t < SL_ARRAY_LEN(texts); t++) {
        size_t n = strlen(texts[t]);
        while (n > 0 && texts[t][n - 1] == ' ')
            n--; /* trailing whitespace: a prefix ending in it is still the whole text */
        sl_api_scan s;
        EXPECT_EQ_INT(scan_exact(texts[t], n, &s), 0);
        for (size_t k = 0; k < n; k++) {
            int rc = scan_exact(texts[t], k, &s);
            if (rc != SL_EUNSUPPORTED)
                T_FAIL_AT("text %zu cut at %zu: rc %d", t, k, rc);
        }
    }
}

/* Edges of the fast paths: numbers and literals against the closing brace,
 * strings longer than 16 bytes whose first special byte is past the first
 * 16, strings close to the end, '}' inside strings, nested containers that
 * close where only the root may. */
static void test_fast_path_edges(void)
{
    static const struct {
        const char *data;
        int rc;
        bool content;
    } cases[] = {
        {"{\"a\":1}", 0, false},
        {"{\"a\":0}", 0, false},
        {"{\"a\":-0}", 0, false},
        {"{\"a\":1e5}", 0, false},
        {"{\"a\":12345678}", 0, false},
        {"{\"a\":123456789012345678}", 0, false},  /* 18 digits */
        {"{\"a\":1234567890123456789}", SL_EUNSUPPORTED, false}, /* 19 */
        {"{\"a\":12345678x}", SL_EUNSUPPORTED, false},
        {"{\"a\":1.5e299}", 0, false},
        {"{\"a\":1.5e300}", SL_EUNSUPPORTED, false}, /* below 1e301 is all it can bound */
        {"{\"a\":1e-9999}", 0, false},
        {"{\"a\":1e-10000}", SL_EUNSUPPORTED, false},
        {"{\"a\":1E+}", SL_EUNSUPPORTED, false},
        {"{\"a\":1.e1}", SL_EUNSUPPORTED, false},
        {"{\"a\":-}", SL_EUNSUPPORTED, false},
        {"{\"a\":true}", 0, false},
        {"{\"a\":null}", 0, false},
        {"{\"a\":false}", 0, false},
        {"{\"a\":nul}", SL_EUNSUPPORTED, false},
        {"{\"a\":fals}", SL_EUNSUPPORTED, false},
        {"{\"a\":}", SL_EUNSUPPORTED, false},
        {"{\"a\"}", SL_EUNSUPPORTED, false},
        {"{\"a\":1,}", SL_EUNSUPPORTED, false},
        {"{\"a\":\"}\"}", 0, false},
        {"{\"a\":\"}", SL_EUNSUPPORTED, false},
        {"{\"a\":\"x}\"", SL_EUNSUPPORTED, false},
        {"{\"a\":{\"b\":1}", SL_EUNSUPPORTED, false},
        {"{\"a\":{}", SL_EUNSUPPORTED, false},
        {"{\"choices\":[{\"delta\":{}}]", SL_EUNSUPPORTED, false},
        {"{\"choices\":[{\"delta\":{\"content\":\"x\"}}", SL_EUNSUPPORTED, false},
        {"{\"usage\":{\"total_tokens\":1}", SL_EUNSUPPORTED, false},
        {"{\"a\":1}}", SL_EUNSUPPORTED, false},
        {"{\"a\":1} }", SL_EUNSUPPORTED, false},
        {"{\"a\":[1]", SL_EUNSUPPORTED, false},
        {"{}}", SL_EUNSUPPORTED, false},
        {"}", SL_EUNSUPPORTED, false},
        {"{", SL_EUNSUPPORTED, false},
        /* long strings: the special byte past the first 16 */
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdefg\\n\"}}]}", 0, true},
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdefg\\q\"}}]}", SL_EUNSUPPORTED, false},
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdefg\xc3\xa9\"}}]}", 0, true},
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdefg\xc3\"}}]}", SL_EUNSUPPORTED, false},
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdefg\x01\"}}]}", SL_EUNSUPPORTED, false},
        {"{\"choices\":[{\"delta\":{\"content\":\"0123456789abcdef0123456789abcdef0\x7f\"}}]}", 0, true},
        {"{\"a\":\"\x7f\"}", 0, false},
        {"{\"a\":\"\x1f\"}", SL_EUNSUPPORTED, false},
        /* ignored objects and arrays: escaped keys, nested arrays, every kind of value */
        {"{\"x\":{\"k\\\"ey\":[\"a\\u00e9\",[1,[2,{\"y\":\"\\n\"}]],-1.5e3,true,false,null,{}]},"
         "\"choices\":[{\"delta\":{\"content\":\"z\"}}]}",
         0, true},
        {"{\"x\":{\"k\":[\"a\",[1,[2,{\"y\":\"\\u0000\"}]]]},\"choices\":[{\"delta\":{\"content\":\"z\"}}]}",
         SL_EUNSUPPORTED, false},
        {"{\"x\":{\"k\":[1,[2,{\"y\" \"n\"}]]}}", SL_EUNSUPPORTED, false},
        {"{\"x\":{\"k\":[1,[2,{\"y\":1,}]]}}", SL_EUNSUPPORTED, false},
        {"{\"x\":{\"k\":[1,[2,]]}}", SL_EUNSUPPORTED, false},
        {"{\"x\":{\"k\":[1,[2]}}}", SL_EUNSUPPORTED, false},
        /* delta keys read alongside ignored nested values */
        {"{\"choices\":[{\"delta\":{\"x\":[{\"content\":\"a\"}],\"tool_calls\":[ ]}}]}", 0, false},
        {"{\"choices\":[{\"delta\":{\"tool_calls\":[ {} ]}}]}", 0, true},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_api_scan s;
        int rc = scan_exact(cases[i].data, strlen(cases[i].data), &s);
        if (rc != cases[i].rc || (rc == 0 && s.has_content != cases[i].content))
            T_FAIL_AT("case %zu (%s): rc %d content %d, want rc %d content %d", i, cases[i].data, rc,
                      rc == 0 && s.has_content, cases[i].rc, cases[i].content);
    }
    /* nesting of objects, as of arrays: 64 levels are scanned, 65 are not */
    char deep[400];
    for (int levels = 64; levels <= 65; levels++) {
        size_t n = 0;
        for (int i = 0; i < levels; i++) {
            memcpy(deep + n, i ? "\"a\":{" : "{", i ? 5 : 1);
            n += i ? 5 : 1;
        }
        memset(deep + n, '}', (size_t)levels);
        n += (size_t)levels;
        sl_api_scan s;
        EXPECT_EQ_INT(scan_exact(deep, n, &s), levels == 64 ? 0 : SL_EUNSUPPORTED);
    }
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Time per scan of mockllm's streamed chunk and of its whole answer, printed
 * (not asserted: the machine is shared). SL_SCAN_ITERS sets the loop count. */
static void test_timing(void)
{
    static const char *const texts[] = {
        "{\"id\":\"chatcmpl-mock-0-7353\",\"object\":\"chat.completion.chunk\",\"created\":1795250500,"
        "\"model\":\"mock\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hi\"},\"logprobs\":null,"
        "\"finish_reason\":null}]}",
        "{\"id\":\"chatcmpl-mock-0-178833\",\"object\":\"chat.completion\",\"created\":1795246909,\"model\":"
        "\"mock\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi hi hi hi hi "
        "hi hi hi hi hi hi hi hi hi hi hi\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":"
        "{\"prompt_tokens\":1,\"completion_tokens\":16,\"total_tokens\":17}}",
    };
    const int iters = getenv("SL_SCAN_ITERS") ? atoi(getenv("SL_SCAN_ITERS")) : 2000;
    for (size_t k = 0; k < 2; k++) {
        size_t len = strlen(texts[k]);
        double best = 1e30;
        for (int round = 0; round < 5; round++) {
            double t0 = now_ns();
            int bad = 0;
            for (int i = 0; i < iters; i++) {
                sl_api_scan sc;
                bad += sl_api_scan_upstream(texts[k], len, &sc) != 0 || (k ? !sc.usage.known : !sc.has_content);
            }
            EXPECT_EQ_INT(bad, 0);
            double per = (now_ns() - t0) / iters;
            if (per < best)
                best = per;
        }
        printf("# scan of %s (%zu bytes): %.0f ns (best of 5 rounds x %d)\n", k ? "an answer" : "a chunk", len,
               best, iters);
    }
}

int main(void)
{
    RUN(test_chunks);
    RUN(test_left_to_the_parser);
    RUN(test_fallback);
    RUN(test_whitespace_everywhere);
    RUN(test_every_prefix);
    RUN(test_fast_path_edges);
    RUN(test_timing);
    return TEST_REPORT();
}
