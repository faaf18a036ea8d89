/* Unit tests for mockllm's pure helpers (bench/mockllm/mock_text.c). The
 * source is compiled into this test directly because mockllm is not part of
 * sluice_lib. */
#include "../../../bench/mockllm/mock_text.c"

#include "test.h"

static void test_words_and_tokens(void)
{
    const char *t = "  hello\tworld \n";
    EXPECT_EQ_UINT(sl_mock_count_words(t, strlen(t)), 2);
    EXPECT_EQ_UINT(sl_mock_count_words("", 0), 0);
    EXPECT_EQ_UINT(sl_mock_count_words("   ", 3), 0);
    sl_mock_words w;
    EXPECT_EQ_INT(sl_mock_words_split(t, strlen(t), 100, &w), 0);
    EXPECT_EQ_UINT(w.n, 2);
    sl_buf b;
    sl_buf_init(&b, 1024);
    EXPECT_EQ_INT(sl_mock_reply_text(&w, 5, &b), 0);
    EXPECT_EQ_STR(b.data, "hello world hello world hello");
    sl_str tok = sl_mock_token(&w, 3);
    EXPECT(sl_str_eq_c(tok, "world"));
    sl_mock_words_free(&w);

    /* no words: every token is "mock" */
    EXPECT_EQ_INT(sl_mock_words_split("  ", 2, 100, &w), 0);
    EXPECT_EQ_UINT(w.n, 0);
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_reply_text(&w, 3, &b), 0);
    EXPECT_EQ_STR(b.data, "mock mock mock");
    sl_mock_words_free(&w);

    /* max_words bounds the split */
    EXPECT_EQ_INT(sl_mock_words_split("a b c d", 7, 2, &w), 0);
    EXPECT_EQ_UINT(w.n, 2);
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_reply_text(&w, 3, &b), 0);
    EXPECT_EQ_STR(b.data, "a b a");
    sl_mock_words_free(&w);

    /* zero tokens: empty text */
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_reply_text(NULL, 0, &b), 0);
    EXPECT_EQ_UINT(b.len, 0);
    sl_buf_free(&b);
}

static void test_json_escape(void)
{
    sl_buf b;
    sl_buf_init(&b, 1024);
    const char in[] = "a\"b\\c\nd\x01" "e\t";
    EXPECT_EQ_INT(sl_mock_json_escape(&b, in, sizeof in - 1), 0);
    EXPECT_EQ_STR(b.data, "a\\\"b\\\\c\\nd\\u0001e\\t");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_json_escape(&b, "plain \xc3\xa9", 8), 0);
    EXPECT_EQ_STR(b.data, "plain \xc3\xa9"); /* UTF-8 passes through */
    sl_buf_free(&b);

    sl_buf small;
    sl_buf_init(&small, 4);
    EXPECT_EQ_INT(sl_mock_json_escape(&small, "abcdef", 6), SL_ETOOBIG);
    sl_buf_free(&small);
}

static void test_opts_apply(void)
{
    sl_mock_opts o = {.ttft_ms = 0, .tps = 0, .tokens = 16, .status = -1, .hang = false,
                      .cut_after = -1, .retry_after = -1};
    char err[256] = "";
    json_t *m = json_loads("{\"ttft_ms\":25,\"tps\":12.5,\"tokens\":3,\"status\":503,\"hang\":true,"
                           "\"cut_after\":2,\"retry_after\":7,\"unknown\":1}", 0, NULL);
    EXPECT(m != NULL);
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, m, err, sizeof err), 0);
    EXPECT_EQ_INT(o.ttft_ms, 25);
    EXPECT_NEAR(o.tps, 12.5, 1e-12);
    EXPECT_EQ_INT(o.tokens, 3);
    EXPECT_EQ_INT(o.status, 503);
    EXPECT(o.hang);
    EXPECT_EQ_INT(o.cut_after, 2);
    EXPECT_EQ_INT(o.retry_after, 7);
    json_decref(m);

    /* absent keys change nothing; NULL is a no-op */
    sl_mock_opts before = o;
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, NULL, err, sizeof err), 0);
    EXPECT_EQ_INT(o.tokens, before.tokens);

    m = json_loads("{\"tokens\":\"many\"}", 0, NULL);
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, m, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "mock.tokens");
    json_decref(m);
    m = json_loads("{\"status\":99}", 0, NULL);
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, m, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "mock.status");
    json_decref(m);
    m = json_loads("{\"hang\":1}", 0, NULL);
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, m, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "mock.hang");
    json_decref(m);
    m = json_loads("{\"tps\":-1}", 0, NULL);
    EXPECT_EQ_INT(sl_mock_opts_apply(&o, m, err, sizeof err), SL_EINVAL);
    json_decref(m);
}

static void test_extract_prompt(void)
{
    char err[256] = "";
    sl_buf last;
    sl_buf_init(&last, 4096);
    size_t pw = 0;
    json_t *msgs = json_loads(
        "[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":\"first question\"},"
        "{\"role\":\"assistant\",\"content\":\"an answer here\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},{\"type\":\"text\",\"text\":\"world\"}]}]",
        0, NULL);
    EXPECT(msgs != NULL);
    EXPECT_EQ_INT(sl_mock_extract_prompt(msgs, NULL, &last, &pw, err, sizeof err), 0);
    EXPECT_EQ_STR(last.data, "hello world");
    EXPECT_EQ_UINT(pw, 2 + 2 + 3 + 2);
    json_decref(msgs);

    json_t *p = json_string("one two three");
    EXPECT_EQ_INT(sl_mock_extract_prompt(NULL, p, &last, &pw, err, sizeof err), 0);
    EXPECT_EQ_STR(last.data, "one two three");
    EXPECT_EQ_UINT(pw, 3);
    json_decref(p);

    p = json_loads("[\"a b\", \"c\"]", 0, NULL);
    EXPECT_EQ_INT(sl_mock_extract_prompt(NULL, p, &last, &pw, err, sizeof err), 0);
    EXPECT_EQ_STR(last.data, "a b c");
    EXPECT_EQ_UINT(pw, 3);
    json_decref(p);

    p = json_integer(5);
    EXPECT_EQ_INT(sl_mock_extract_prompt(NULL, p, &last, &pw, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "prompt");
    json_decref(p);
    EXPECT_EQ_INT(sl_mock_extract_prompt(NULL, NULL, &last, &pw, err, sizeof err), SL_EINVAL);

    msgs = json_loads("[1]", 0, NULL);
    EXPECT_EQ_INT(sl_mock_extract_prompt(msgs, NULL, &last, &pw, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "messages[0]");
    json_decref(msgs);
    sl_buf_free(&last);
}

static void test_embedding(void)
{
    float a[16], b[16], c[16];
    sl_mock_embedding("hello", 5, 16, a);
    sl_mock_embedding("hello", 5, 16, b);
    sl_mock_embedding("hellp", 5, 16, c);
    double na = 0, diff = 0;
    for (int i = 0; i < 16; i++) {
        na += (double)a[i] * a[i];
        EXPECT(a[i] == b[i]);
        diff += fabs((double)a[i] - c[i]);
    }
    EXPECT_NEAR(na, 1.0, 1e-5);
    EXPECT(diff > 0.1);
    float one[1];
    sl_mock_embedding("x", 1, 1, one);
    EXPECT_NEAR(fabs(one[0]), 1.0, 1e-6);
}

static void test_base64(void)
{
    sl_buf b;
    sl_buf_init(&b, 1024);
    EXPECT_EQ_INT(sl_mock_base64(&b, "foobar", 6), 0);
    EXPECT_EQ_STR(b.data, "Zm9vYmFy");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_base64(&b, "fo", 2), 0);
    EXPECT_EQ_STR(b.data, "Zm8=");
    sl_buf_reset(&b);
    EXPECT_EQ_INT(sl_mock_base64(&b, "f", 1), 0);
    EXPECT_EQ_STR(b.data, "Zg==");
    sl_buf_free(&b);
}

static void test_http_parse(void)
{
    sl_mock_http_req r;
    const char *req = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\n"
                      "Content-Length: 12\r\nExpect: 100-continue\r\n\r\nBODY";
    int hl = sl_mock_http_parse(req, strlen(req), 65536, &r);
    EXPECT_EQ_INT(hl, (int)strlen(req) - 4);
    EXPECT(sl_str_eq_c(r.method, "POST"));
    EXPECT(sl_str_eq_c(r.path, "/v1/chat/completions"));
    EXPECT_EQ_INT(r.content_length, 12);
    EXPECT(r.keep_alive);
    EXPECT(r.expect_continue);
    EXPECT(!r.chunked);

    /* incomplete head */
    EXPECT_EQ_INT(sl_mock_http_parse(req, 20, 65536, &r), 0);
    /* head over the limit */
    EXPECT_EQ_INT(sl_mock_http_parse(req, 30, 30, &r), SL_ETOOBIG);

    const char *h10 = "GET /health HTTP/1.0\r\n\r\n";
    EXPECT_EQ_INT(sl_mock_http_parse(h10, strlen(h10), 65536, &r), (int)strlen(h10));
    EXPECT(!r.keep_alive);
    EXPECT_EQ_INT(r.content_length, -1);
    const char *h10ka = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    EXPECT(sl_mock_http_parse(h10ka, strlen(h10ka), 65536, &r) > 0);
    EXPECT(r.keep_alive);
    const char *close = "GET / HTTP/1.1\r\nconnection: close\r\n\r\n";
    EXPECT(sl_mock_http_parse(close, strlen(close), 65536, &r) > 0);
    EXPECT(!r.keep_alive);
    const char *ch = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    EXPECT(sl_mock_http_parse(ch, strlen(ch), 65536, &r) > 0);
    EXPECT(r.chunked);

    const char *bad[] = {
        "GET /x HTTP/2.0\r\n\r\n",
        "GET  /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1\r\nNo colon here\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int rc = sl_mock_http_parse(bad[i], strlen(bad[i]), 65536, &r);
        if (rc != SL_EPARSE)
            T_FAIL_AT("bad[%zu]: expected SL_EPARSE, got %d", i, rc);
    }
}

static void test_chunked(void)
{
    sl_buf out;
    sl_buf_init(&out, 1024);
    size_t used = 0;
    const char *body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    EXPECT_EQ_INT(sl_mock_chunked_decode(body, strlen(body), &out, &used), 1);
    EXPECT_EQ_STR(out.data, "Wikipedia");
    EXPECT_EQ_UINT(used, strlen(body) - 4);
    /* every proper prefix is incomplete, never an error */
    for (size_t n = 0; n < strlen(body) - 4; n++) {
        int rc = sl_mock_chunked_decode(body, n, &out, &used);
        if (rc != 0)
            T_FAIL_AT("prefix %zu: expected 0, got %d", n, rc);
    }
    EXPECT_EQ_INT(sl_mock_chunked_decode("zz\r\n", 4, &out, &used), SL_EPARSE);
    EXPECT_EQ_INT(sl_mock_chunked_decode("3\r\nabcX\r\n", 9, &out, &used), SL_EPARSE);
    sl_buf tiny;
    sl_buf_init(&tiny, 3);
    EXPECT_EQ_INT(sl_mock_chunked_decode("4\r\nWiki\r\n0\r\n\r\n", 15, &tiny, &used), SL_ETOOBIG);
    sl_buf_free(&tiny);
    sl_buf_free(&out);
}

int main(void)
{
    RUN(test_words_and_tokens);
    RUN(test_json_escape);
    RUN(test_opts_apply);
    RUN(test_extract_prompt);
    RUN(test_embedding);
    RUN(test_base64);
    RUN(test_http_parse);
    RUN(test_chunked);
    return TEST_REPORT();
}
