/* Streaming detokenizer: complete UTF-8 only, hold-back across tokens,
 * U+FFFD for invalid input (one per maximal subpart), specials, errors. */
#include "core/core.h"
#include "engine/tokenizer/tokenizer.h"
#include "test.h"
#include "tok_vocabs.h"

#define B(x) (SPM_BYTE0 + (x))
#define FFFD "\xEF\xBF\xBD"

static tv_vocab VS, VB;
static sl_tokenizer *SPM, *BPE;

/* Feeds one id and checks exactly what this call appended. */
static void feed_expect(sl_tok_decoder *d, sl_buf *b, int32_t id, const char *want, int line)
{
    size_t before = b->len;
    int rc = sl_tok_decoder_feed(d, id, b);
    size_t got = b->len - before;
    if (rc != 0 || got != strlen(want) || (got && memcmp(b->data + before, want, got) != 0)) {
        fprintf(stderr, "line %d: feed(%d) rc=%d appended %zu bytes \"%.*s\", want \"%s\"\n", line, id, rc, got,
                (int)got, b->data ? b->data + before : "", want);
        t_cur_failed = 1;
    }
}
#define FEED(d, b, id, want) feed_expect(d, b, id, want, __LINE__)

static void test_emoji_split_bytes(void)
{
    sl_tok_decoder d;
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_tok_decoder_init(&d, SPM, 0);
    /* U+1F600 = F0 9F 98 80, one byte token each: nothing until the last */
    FEED(&d, &b, B(0xF0), "");
    FEED(&d, &b, B(0x9F), "");
    FEED(&d, &b, B(0x98), "");
    EXPECT_EQ_UINT(d.n_pending, 3);
    FEED(&d, &b, B(0x80), "\xF0\x9F\x98\x80");
    EXPECT_EQ_UINT(d.n_pending, 0);
    EXPECT_EQ_INT(sl_tok_decoder_flush(&d, &b), 0);
    EXPECT_EQ_UINT(b.len, 4);
    /* a held-back tail followed by ASCII in the same piece */
    FEED(&d, &b, B(0xC3), "");
    FEED(&d, &b, SPM_SHELLO, FFFD " hello");
    sl_buf_free(&b);
}

static void test_emoji_split_bpe(void)
{
    sl_tok_decoder d;
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_tok_decoder_init(&d, BPE, 0);
    /* "ðŁ" decodes to F0 9F: two bytes held; then 98; then 80 completes */
    FEED(&d, &b, BPE_HELLO, "hello");
    FEED(&d, &b, BPE_EMOJI_PRE, "");
    FEED(&d, &b, 0x98, "");
    FEED(&d, &b, 0x80, "\xF0\x9F\x98\x80");
    /* CJK 你 = E4 BD A0 split 1 + 2 */
    FEED(&d, &b, 0xE4, "");
    FEED(&d, &b, 0xBD, "");
    FEED(&d, &b, 0xA0, "\xE4\xBD\xA0");
    EXPECT_EQ_STR(b.data, "hello\xF0\x9F\x98\x80\xE4\xBD\xA0");
    sl_buf_free(&b);
}

static void test_invalid(void)
{
    sl_tok_decoder d;
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_tok_decoder_init(&d, SPM, 0);
    /* FF can never start a sequence */
    FEED(&d, &b, B(0xFF), FFFD);
    /* C3 then 'A': C3 is replaced once 'A' shows it is cut short */
    FEED(&d, &b, B(0xC3), "");
    FEED(&d, &b, B('A'), FFFD "A");
    /* E0 80: E0 needs A0..BF next -> FFFD for E0, then 80 alone -> FFFD */
    FEED(&d, &b, B(0xE0), "");
    FEED(&d, &b, B(0x80), FFFD FFFD);
    /* ED A0 80 is a surrogate: ED (needs 80..9F), A0, 80 -> three FFFD */
    FEED(&d, &b, B(0xED), "");
    FEED(&d, &b, B(0xA0), FFFD FFFD);
    FEED(&d, &b, B(0x80), FFFD);
    /* F0 9F 98 then 'A': the maximal subpart F0 9F 98 is one FFFD */
    FEED(&d, &b, B(0xF0), "");
    FEED(&d, &b, B(0x9F), "");
    FEED(&d, &b, B(0x98), "");
    FEED(&d, &b, B('A'), FFFD "A");
    /* overlong C0 80 and F5 (beyond U+10FFFF) */
    FEED(&d, &b, B(0xC0), FFFD);
    FEED(&d, &b, B(0x80), FFFD);
    FEED(&d, &b, B(0xF5), FFFD);
    /* F4 90: above U+10FFFF */
    FEED(&d, &b, B(0xF4), "");
    FEED(&d, &b, B(0x90), FFFD FFFD);
    /* flush turns a held-back tail into one FFFD */
    FEED(&d, &b, B(0xE4), "");
    FEED(&d, &b, B(0xBD), "");
    size_t before = b.len;
    EXPECT_EQ_INT(sl_tok_decoder_flush(&d, &b), 0);
    EXPECT_EQ_UINT(b.len - before, 3);
    EXPECT(memcmp(b.data + before, FFFD, 3) == 0);
    EXPECT_EQ_INT(sl_tok_decoder_flush(&d, &b), 0);
    EXPECT_EQ_UINT(b.len - before, 3);
    sl_buf_free(&b);
}

static void test_specials_and_errors(void)
{
    sl_tok_decoder d;
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_tok_decoder_init(&d, BPE, 0);
    FEED(&d, &b, BPE_IM_END, "");
    FEED(&d, &b, BPE_TOOL, "<tool>"); /* user-defined tokens are text */
    sl_tok_decoder_init(&d, BPE, SL_TOK_DEC_RENDER_SPECIAL);
    FEED(&d, &b, BPE_EMOJI_PRE, "");
    FEED(&d, &b, BPE_IM_END, FFFD "<|im_end|>");
    EXPECT_EQ_INT(sl_tok_decoder_feed(&d, BPE_N, &b), SL_ERANGE);
    EXPECT_EQ_INT(sl_tok_decoder_feed(&d, -5, &b), SL_ERANGE);
    sl_buf_free(&b);

    /* a full output buffer leaves both the buffer and the decoder unchanged */
    sl_buf_init(&b, 6);
    sl_tok_decoder_init(&d, BPE, 0);
    FEED(&d, &b, BPE_HELLO, "hello");
    FEED(&d, &b, BPE_EMOJI_PRE, "");
    EXPECT_EQ_INT(sl_tok_decoder_feed(&d, BPE_GHELLO, &b), SL_ETOOBIG);
    EXPECT_EQ_UINT(b.len, 5);
    EXPECT_EQ_UINT(d.n_pending, 2);
    sl_buf_reset(&b);
    FEED(&d, &b, 0x98, "");
    FEED(&d, &b, 0x80, "\xF0\x9F\x98\x80");
    sl_buf_free(&b);
}

/* Decoding a byte-token stream token by token gives the same text as the
 * whole-sequence decode, and equals the input for valid UTF-8. */
static void test_stream_equals_whole(void)
{
    const char *s = "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE4\xBD\xA0\xE5\xA5\xBD hello";
    int32_t *ids = NULL;
    size_t n = 0;
    EXPECT_EQ_INT(sl_tok_encode(SPM, s, strlen(s), true, false, &ids, &n), 0);
    sl_tok_decoder d;
    sl_buf b;
    sl_buf_init(&b, 1024);
    sl_tok_decoder_init(&d, SPM, SL_TOK_DEC_STRIP_SPACE);
    for (size_t i = 0; i < n; i++) {
        size_t before = b.len;
        EXPECT_EQ_INT(sl_tok_decoder_feed(&d, ids[i], &b), 0);
        /* every emitted chunk must be a whole-characters prefix */
        for (size_t k = before; k < b.len; k++)
            EXPECT(k + 1 < b.len || ((uint8_t)b.data[k] & 0xC0) != 0xC0);
    }
    EXPECT_EQ_INT(sl_tok_decoder_flush(&d, &b), 0);
    EXPECT_EQ_STR(b.data, s);
    sl_buf_free(&b);
    sl_free(ids);
}

int main(void)
{
    tv_build_spm(&VS, true);
    tv_build_bpe(&VB);
    SPM = tv_make_spm(&VS, true);
    BPE = tv_make_bpe(&VB, "gpt2", false);
    if (!SPM || !BPE)
        return 1;
    RUN(test_emoji_split_bytes);
    RUN(test_emoji_split_bpe);
    RUN(test_invalid);
    RUN(test_specials_and_errors);
    RUN(test_stream_equals_whole);
    sl_tok_destroy(SPM);
    sl_tok_destroy(BPE);
    tv_free(&VS);
    tv_free(&VB);
    return TEST_REPORT();
}
