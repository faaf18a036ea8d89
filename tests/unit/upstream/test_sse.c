/* SSE parser: every split of the input gives the same events; line ends,
 * multi-line data, comments, fields, the cap, BOM and stop-on-callback. */
#include "test.h"
#include "upstream/upstream.h"

/* Each event is rendered as "<event>|<data>|<id>\n" into one string. */
typedef struct {
    sl_buf out;
    int count;
    int stop_at; /* return 7 from the stop_at-th event (1-based), 0 = never */
} collect;

static int on_ev(void *ud, const sl_sse_event *ev)
{
    collect *c = ud;
    c->count++;
    sl_buf_append(&c->out, ev->event, ev->event_len);
    sl_buf_append_char(&c->out, '|');
    sl_buf_append(&c->out, ev->data, ev->data_len);
    sl_buf_append_char(&c->out, '|');
    sl_buf_append(&c->out, ev->id, ev->id_len);
    sl_buf_append_char(&c->out, '\n');
    return c->stop_at && c->count == c->stop_at ? 7 : 0;
}

/* Parses s fed in pieces at the cut points cuts[0..ncuts) (ascending). */
static int parse_cut(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max,
                     collect *c)
{
    sl_sse_parser *p = NULL;
    if (sl_sse_parser_create(max, &p) != 0)
        return -100;
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i <= ncuts && !rc; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        rc = sl_sse_parser_feed(p, s + at, end - at, on_ev, c);
        at = end;
    }
    sl_sse_parser_destroy(p);
    return rc;
}

static const char *parse_all(const char *s, size_t max, collect *c)
{
    sl_buf_init(&c->out, 1 << 20);
    c->count = 0;
    int rc = parse_cut(s, strlen(s), NULL, 0, max, c);
    EXPECT_EQ_INT(rc, 0);
    return c->out.len ? c->out.data : "";
}

/* Whole, every two-piece split and byte by byte must all agree with want. */
static void check_all_splits(const char *s, const char *want, int want_count)
{
    size_t n = strlen(s);
    collect c = {0};
    EXPECT_EQ_STR(parse_all(s, 4096, &c), want);
    EXPECT_EQ_INT(c.count, want_count);
    sl_buf_free(&c.out);
    for (size_t cut = 0; cut <= n; cut++) {
        collect d = {0};
        sl_buf_init(&d.out, 1 << 20);
        EXPECT_EQ_INT(parse_cut(s, n, &cut, 1, 4096, &d), 0);
        if (strcmp(d.out.len ? d.out.data : "", want) != 0) {
            T_FAIL_AT("split at %zu of \"%s\" gave \"%s\"", cut, s, d.out.len ? d.out.data : "");
            sl_buf_free(&d.out);
            return;
        }
        sl_buf_free(&d.out);
    }
    size_t *cuts = sl_malloc(n * sizeof *cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i;
    collect e = {0};
    sl_buf_init(&e.out, 1 << 20);
    EXPECT_EQ_INT(parse_cut(s, n, cuts, n, 4096, &e), 0);
    EXPECT_EQ_STR(e.out.len ? e.out.data : "", want);
    sl_buf_free(&e.out);
    sl_free(cuts);
}

static void test_basic_openai_stream(void)
{
    check_all_splits("data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n",
                     "|{\"a\":1}|\n|{\"b\":2}|\n|[DONE]|\n", 3);
}

static void test_line_endings(void)
{
    check_all_splits("data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n", "|a|\n|b|\n|c|\n|d|\n", 4);
    /* CR then LF in the next feed is one line end, not two (no empty event). */
    check_all_splits("data: x\r\ndata: y\r\n\r\n", "|x\ny|\n", 1);
}

static void test_multiline_data(void)
{
    check_all_splits("data: one\ndata: two\ndata:three\ndata:  four\n\n", "|one\ntwo\nthree\n four|\n", 1);
    /* "data" with no colon is an empty data line. */
    check_all_splits("data\ndata\n\n", "|\n|\n", 1);
    check_all_splits("data\n\n", "||\n", 1);
}

static void test_comments_and_unknown(void)
{
    check_all_splits(": keep-alive\n\n:ping\ndata: x\nretry: 100\nfoo: bar\n\n", "|x|\n", 1);
}

static void test_event_and_id(void)
{
    check_all_splits("event: delta\nid: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
                     "delta|a|7\n|b|7\n|c|\n", 3);
    /* An event with no data lines is dropped together with its type. */
    check_all_splits("event: lonely\n\ndata: z\n\n", "|z|\n", 1);
    /* An unfinished event at the end of input is not dispatched. */
    check_all_splits("data: done\n\ndata: partial\n", "|done|\n", 1);
}

static void test_bom(void)
{
    check_all_splits("\xEF\xBB\xBF" "data: bom\n\n", "|bom|\n", 1);
    /* Only at the very start: a second BOM makes an unknown field. */
    check_all_splits("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\ndata: y\n\n", "|y|\n", 1);
    /* A partial BOM is content ("\xEF\xBB" + "data" is not "data"). */
    check_all_splits("\xEF\xBB" "data: x\n\ndata: y\n\n", "|y|\n", 1);
}

static void test_cap(void)
{
    collect c = {0};
    sl_buf_init(&c.out, 1 << 20);
    /* Exactly 10 bytes of joined data is fine ("12345\n1234" is 10). */
    const char *ok = "data: 12345\ndata: 1234\n\n";
    EXPECT_EQ_INT(parse_cut(ok, strlen(ok), NULL, 0, 10, &c), 0);
    EXPECT_EQ_INT(c.count, 1);
    sl_sse_parser *p = NULL;
    EXPECT_EQ_INT(sl_sse_parser_create(10, &p), 0);
    const char *big = "data: 12345\ndata: 12345\n\n"; /* 11 bytes */
    EXPECT_EQ_INT(sl_sse_parser_feed(p, big, strlen(big), on_ev, &c), SL_ETOOBIG);
    /* Sticky. */
    EXPECT_EQ_INT(sl_sse_parser_feed(p, "data: a\n\n", 9, on_ev, &c), SL_ETOOBIG);
    EXPECT_EQ_INT(c.count, 1);
    sl_sse_parser_destroy(p);
    /* An endless line without a line end is capped too, fed in small pieces. */
    EXPECT_EQ_INT(sl_sse_parser_create(10, &p), 0);
    int rc = 0;
    for (int i = 0; i < 100 && !rc; i++)
        rc = sl_sse_parser_feed(p, "xxxxxxxx", 8, on_ev, &c);
    EXPECT_EQ_INT(rc, SL_ETOOBIG);
    EXPECT(sl_sse_parser_pending(p) <= 10 + 64);
    sl_sse_parser_destroy(p);
    sl_buf_free(&c.out);
    EXPECT_EQ_INT(sl_sse_parser_create(0, &p), SL_EINVAL);
}

static void test_stop(void)
{
    collect c = {0};
    sl_buf_init(&c.out, 1 << 20);
    c.stop_at = 2;
    sl_sse_parser *p = NULL;
    EXPECT_EQ_INT(sl_sse_parser_create(100, &p), 0);
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    EXPECT_EQ_INT(sl_sse_parser_feed(p, s, strlen(s), on_ev, &c), 7);
    EXPECT_EQ_INT(c.count, 2);
    /* Still usable afterwards. */
    c.stop_at = 0;
    EXPECT_EQ_INT(sl_sse_parser_feed(p, "data: 4\n\n", 9, on_ev, &c), 0);
    EXPECT_EQ_STR(c.out.data, "|1|\n|2|\n|4|\n");
    sl_sse_parser_destroy(p);
    sl_buf_free(&c.out);
}

/* Raw spans: each event's raw bytes (or "-" when none) joined by '|'. */
static int on_raw(void *ud, const sl_sse_event *ev)
{
    sl_buf *b = ud;
    if (ev->raw)
        sl_buf_append(b, ev->raw, ev->raw_len);
    else
        sl_buf_append_char(b, '-');
    sl_buf_append_char(b, '|');
    return 0;
}

static const char *raws(sl_buf *b, const char *s, size_t max)
{
    sl_sse_parser *p = NULL;
    EXPECT_EQ_INT(sl_sse_parser_create(max, &p), 0);
    sl_buf_reset(b);
    EXPECT_EQ_INT(sl_sse_parser_feed(p, s, strlen(s), on_raw, b), 0);
    sl_sse_parser_destroy(p);
    return b->len ? b->data : "";
}

static void test_raw(void)
{
    sl_buf b;
    sl_buf_init(&b, 1 << 16);
    /* one data line and the blank line: raw, line ends as sent */
    EXPECT_EQ_STR(raws(&b, "data: {\"a\":1}\n\ndata:x\r\n\r\n", 64),
                  "data: {\"a\":1}\n\n|data:x\r\n\r\n|");
    /* two data lines, an event field before the data, a comment between: no raw
     * for the first two; a comment before the data line leaves it out of raw */
    EXPECT_EQ_STR(raws(&b, "data: a\ndata: b\n\nevent: e\ndata: c\n\n: hi\ndata: d\n\n", 64),
                  "-|data: c\n\n|data: d\n\n|");
    /* the event type of an in-place event is still given */
    collect c = {0};
    EXPECT_EQ_STR(parse_all("event: e\ndata: c\n\n", 64, &c), "e|c|\n");
    sl_buf_free(&c.out);
    /* the cap holds in place too */
    sl_sse_parser *p = NULL;
    EXPECT_EQ_INT(sl_sse_parser_create(3, &p), 0);
    EXPECT_EQ_INT(sl_sse_parser_feed(p, "data: abc\n\n", 11, on_raw, &b), 0);
    EXPECT_EQ_INT(sl_sse_parser_feed(p, "data: abcd\n\n", 12, on_raw, &b), SL_ETOOBIG);
    sl_sse_parser_destroy(p);
    sl_buf_free(&b);
}

/* reset: a new stream, with no partial line, event, id or sticky error */
static int feed_str(sl_sse_parser *p, const char *s, collect *c)
{
    return sl_sse_parser_feed(p, s, strlen(s), on_ev, c);
}

static void test_reset(void)
{
    collect c = {0};
    sl_buf_init(&c.out, 1 << 16);
    sl_sse_parser *p = NULL;
    EXPECT_EQ_INT(sl_sse_parser_create(8, &p), 0);
    EXPECT_EQ_INT(feed_str(p, "id: 7\ndata: a\ndata: b", &c), 0);
    EXPECT(sl_sse_parser_pending(p) > 0);
    sl_sse_parser_reset(p);
    EXPECT_EQ_INT(sl_sse_parser_pending(p), 0);
    EXPECT_EQ_INT(feed_str(p, "\ndata: c\n\n", &c), 0);
    EXPECT_EQ_INT(feed_str(p, "data: 123456789\n\n", &c), SL_ETOOBIG);
    EXPECT_EQ_INT(feed_str(p, "data: d\n\n", &c), SL_ETOOBIG); /* sticky */
    sl_sse_parser_reset(p);
    EXPECT_EQ_INT(feed_str(p, "\xEF\xBB\xBF" "data: e\n\n", &c), 0); /* a BOM again */
    EXPECT_EQ_STR(c.out.data, "|c|\n|e|\n");
    sl_sse_parser_destroy(p);
    sl_buf_free(&c.out);
}

int main(void)
{
    RUN(test_basic_openai_stream);
    RUN(test_line_endings);
    RUN(test_multiline_data);
    RUN(test_comments_and_unknown);
    RUN(test_event_and_id);
    RUN(test_bom);
    RUN(test_cap);
    RUN(test_stop);
    RUN(test_raw);
    RUN(test_reset);
    return TEST_REPORT();
}
