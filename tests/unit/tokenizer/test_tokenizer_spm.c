/* SPM ("llama") tokenizer: golden ids derived by hand from the vocabulary in
 * tok_vocabs.h, space-prefix handling, byte and unk fallback, special tokens,
 * and decode round trips. Byte b's token is SPM_BYTE0 + b. */
#include "core/core.h"
#include "engine/tokenizer/tokenizer.h"
#include "test.h"
#include "tok_vocabs.h"

#define B(x) (SPM_BYTE0 + (x))

static tv_vocab V, VU;
static sl_tokenizer *SPM, *SPM_NOPFX, *SPM_UNKV;

#define EXPECT_IDS(tok, s, add_bos, special, ...)                                               \
    do {                                                                                        \
        const int32_t _want[] = {__VA_ARGS__};                                                  \
        check_ids(tok, s, sizeof(s) - 1, add_bos, special, _want, SL_ARRAY_LEN(_want), __LINE__); \
    } while (0)

static void check_ids(sl_tokenizer *t, const char *s, size_t n, bool add_bos, bool special, const int32_t *want,
                      size_t nwant, int line)
{
    int32_t *ids = NULL;
    size_t nids = 0;
    int rc = sl_tok_encode(t, s, n, add_bos, special, &ids, &nids);
    bool same = rc == 0 && nids == nwant && (nwant == 0 || memcmp(ids, want, nwant * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "line %d: encode(\"%s\") rc=%d got [", line, s, rc);
        for (size_t i = 0; i < nids; i++)
            fprintf(stderr, "%s%d", i ? "," : "", ids[i]);
        fprintf(stderr, "] want [");
        for (size_t i = 0; i < nwant; i++)
            fprintf(stderr, "%s%d", i ? "," : "", want[i]);
        fprintf(stderr, "]\n");
        t_cur_failed = 1;
    }
    sl_free(ids);
}

static void expect_decode(sl_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, const char *want, int line)
{
    char *text = NULL;
    size_t len = 0;
    int rc = sl_tok_decode(t, ids, n, flags, &text, &len);
    if (rc != 0 || !text || len != strlen(want) || memcmp(text, want, len) != 0) {
        fprintf(stderr, "line %d: decode rc=%d got \"%s\" want \"%s\"\n", line, rc, text ? text : "(null)", want);
        t_cur_failed = 1;
    }
    sl_free(text);
}

/* "hello" becomes "▁hello": symbols ▁ h e l l o. Pairs that are tokens:
 * he (-10), el (-20), ll (-5). Highest score first: ll -> ▁ h e ll o; then he
 * -> ▁ he ll o; "hell" (-4) -> ▁ hell o; "hello" (-3); "▁hello" (-2).
 * "el" (-20) never wins: score beats position. */
static void test_merge_by_score(void)
{
    EXPECT_IDS(SPM, "hello", false, false, SPM_SHELLO);
    EXPECT_IDS(SPM, "hello", true, false, SPM_BOS, SPM_SHELLO);
    /* no space prefix: h e l l o -> hello, never "▁hello" */
    EXPECT_IDS(SPM_NOPFX, "hello", false, false, SPM_HELLO);
    /* "▁lll": ll at 1 and at 2 tie at -5; the leftmost merges, leaving l */
    EXPECT_IDS(SPM, "lll", false, false, SPM_SPACE, SPM_LL, SPM_L);
    /* "▁hel": he (-10) beats el (-20); "▁he" and "hel" are not tokens */
    EXPECT_IDS(SPM, "hel", false, false, SPM_SPACE, SPM_HE, SPM_L);
}

/* "hello  hello" -> "▁hello▁▁hello". Order: ll, ll (-5, left first), ▁▁ at
 * 6-7 (-9), he, he (-10), hell, hell, hello, hello; then "▁hello" (-2) for the
 * first word only: the second "hello" follows "▁▁" ("▁▁hello" is no token). */
static void test_spaces(void)
{
    EXPECT_IDS(SPM, "hello  hello", false, false, SPM_SHELLO, SPM_SS, SPM_HELLO);
    /* " hello" -> "▁▁hello": ▁▁ (-9) merges before "hello" exists */
    EXPECT_IDS(SPM, " hello", false, false, SPM_SS, SPM_HELLO);
    /* only ' ' is escaped: tab and newline go to byte tokens */
    EXPECT_IDS(SPM, "hello\nhello", false, false, SPM_SHELLO, B('\n'), SPM_HELLO);
    EXPECT_IDS(SPM, "\t", false, false, SPM_SPACE, B('\t'));
}

/* Characters missing from the vocabulary fall back to one byte token per
 * UTF-8 byte: é = C3 A9, 😀 = F0 9F 98 80, 好 = E5 A5 BD; 你 is a token. */
static void test_byte_fallback(void)
{
    EXPECT_IDS(SPM, "\xC3\xA9", false, false, SPM_SPACE, B(0xC3), B(0xA9));
    EXPECT_IDS(SPM, "\xF0\x9F\x98\x80", false, false, SPM_SPACE, B(0xF0), B(0x9F), B(0x98), B(0x80));
    EXPECT_IDS(SPM, "\xE4\xBD\xA0\xE5\xA5\xBD", false, false, SPM_SPACE, SPM_NI, B(0xE5), B(0xA5), B(0xBD));
    EXPECT_IDS(SPM, "12", false, false, SPM_SPACE, B('1'), B('2'));
    /* a lone continuation byte and a truncated sequence stay lossless */
    EXPECT_IDS(SPM_NOPFX, "\x80h\xE4\xBD", false, false, B(0x80), SPM_H, B(0xE4), B(0xBD));
    /* without byte tokens, an unknown character is one <unk> */
    EXPECT_IDS(SPM_UNKV, "\xC3\xA9", false, false, SPM_SPACE, SPM_UNK);
    EXPECT_IDS(SPM_UNKV, "hello", false, false, SPM_SHELLO);
}

/* With parse_special, "<s>" is its id and the text after it gets a space
 * prefix again ("▁hello"); "▁hi" = ▁ h i (i only as a byte). Without it,
 * "<s>" is bytes and "hello" follows '>' without a "▁". */
static void test_special(void)
{
    EXPECT_IDS(SPM, "hi<s>hello", false, true, SPM_SPACE, SPM_H, B('i'), SPM_BOS, SPM_SHELLO);
    EXPECT_IDS(SPM, "hi<s>hello", false, false, SPM_SPACE, SPM_H, B('i'), B('<'), B('s'), B('>'), SPM_HELLO);
    EXPECT_IDS(SPM, "</s>", true, true, SPM_BOS, SPM_EOS);
    /* "<unk>" is an unknown-type token: only with parse_special */
    EXPECT_IDS(SPM, "<unk>", false, true, SPM_UNK);
}

static void test_empty(void)
{
    int32_t *ids = NULL;
    size_t n = 9;
    EXPECT_EQ_INT(sl_tok_encode(SPM, "", 0, false, false, &ids, &n), 0);
    EXPECT_EQ_UINT(n, 0);
    sl_free(ids);
    EXPECT_EQ_INT(sl_tok_encode(SPM, "", 0, true, false, &ids, &n), 0);
    EXPECT_EQ_UINT(n, 1);
    if (n == 1)
        EXPECT_EQ_INT(ids[0], SPM_BOS);
    sl_free(ids);
}

static void test_decode(void)
{
    const int32_t a[] = {SPM_BOS, SPM_SHELLO, SPM_SS, SPM_HELLO};
    expect_decode(SPM, a, 4, SL_TOK_DEC_STRIP_SPACE, "hello  hello", __LINE__);
    expect_decode(SPM, a, 4, 0, " hello  hello", __LINE__);
    expect_decode(SPM, a, 4, SL_TOK_DEC_STRIP_SPACE | SL_TOK_DEC_RENDER_SPECIAL, "<s>hello  hello", __LINE__);
    /* only the first text token loses its space */
    const int32_t b[] = {SPM_SS, SPM_HELLO, SPM_SHELLO};
    expect_decode(SPM, b, 3, SL_TOK_DEC_STRIP_SPACE, " hello hello", __LINE__);
    /* byte tokens join into UTF-8; unk shows as U+2585 unless rendered */
    const int32_t c[] = {SPM_SPACE, B(0xC3), B(0xA9), SPM_UNK, SPM_EOS};
    expect_decode(SPM, c, 5, SL_TOK_DEC_STRIP_SPACE, "\xC3\xA9\xE2\x96\x85", __LINE__);
    expect_decode(SPM, c, 5, SL_TOK_DEC_RENDER_SPECIAL, " \xC3\xA9<unk></s>", __LINE__);
    char buf[16];
    size_t len = 0;
    EXPECT_EQ_INT(sl_tok_piece(SPM, B(0x0A), buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 1);
    EXPECT_EQ_INT(buf[0], '\n');
    EXPECT_EQ_INT(sl_tok_piece(SPM, SPM_SS, buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 2);
    EXPECT(memcmp(buf, "  ", 2) == 0);
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Random valid UTF-8 without U+2581 (SPM's space marker decodes to a space,
 * so text containing it cannot round-trip) and without "<" (no specials). */
static size_t random_utf8(char *out, size_t max_chars)
{
    static const char *frags[] = {" ", "  ", "\n", "hello", "lll", "\xE4\xBD\xA0"};
    size_t at = 0, n = rnd() % max_chars;
    for (size_t i = 0; i < n; i++) {
        unsigned cls = rnd() % 5, cp;
        if (cls == 0) {
            const char *f = frags[rnd() % SL_ARRAY_LEN(frags)];
            memcpy(out + at, f, strlen(f));
            at += strlen(f);
            continue;
        }
        cp = cls == 1 ? 0x20 + rnd() % 0x5F : cls == 2 ? 0x80 + rnd() % 0x780 : cls == 3 ? 0x1F300 + rnd() % 0x300
                                                                                       : 1 + rnd() % 0x10FFFF;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581 || cp == '<')
            cp = 'x';
        char u[8];
        tv_utf8(cp, u);
        memcpy(out + at, u, strlen(u));
        at += strlen(u);
    }
    return at;
}

static void roundtrip(sl_tokenizer *t, const char *s, size_t n, unsigned flags)
{
    int32_t *ids = NULL;
    size_t nids = 0;
    EXPECT_EQ_INT(sl_tok_encode(t, s, n, true, false, &ids, &nids), 0);
    char *text = NULL;
    size_t len = 0;
    EXPECT_EQ_INT(sl_tok_decode(t, ids, nids, flags, &text, &len), 0);
    if (!text || len != n || memcmp(text, s, n) != 0)
        T_FAIL_AT("round trip of \"%.*s\" gave \"%s\"", (int)n, s, text ? text : "(null)");
    sl_free(text);
    sl_free(ids);
}

static void test_roundtrip(void)
{
    static const char *fixed[] = {"", " ", "  x", "hello world", "a\n\nb ", "\xF0\x9F\x98\x80!", "\xE4\xBD\xA0\xE5\xA5\xBD"};
    for (size_t i = 0; i < SL_ARRAY_LEN(fixed); i++) {
        roundtrip(SPM, fixed[i], strlen(fixed[i]), SL_TOK_DEC_STRIP_SPACE);
        roundtrip(SPM_NOPFX, fixed[i], strlen(fixed[i]), 0);
    }
    char buf[4096];
    for (int r = 0; r < 400; r++) {
        size_t n = random_utf8(buf, 150);
        roundtrip(SPM, buf, n, SL_TOK_DEC_STRIP_SPACE);
        roundtrip(SPM_NOPFX, buf, n, 0);
    }
    /* arbitrary bytes: the pieces concatenate back to the input */
    for (int r = 0; r < 300; r++) {
        size_t n = rnd() % 64;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)rnd();
        int32_t *ids = NULL;
        size_t nids = 0;
        EXPECT_EQ_INT(sl_tok_encode(SPM_NOPFX, buf, n, false, false, &ids, &nids), 0);
        char cat[256];
        size_t at = 0, l = 0;
        for (size_t i = 0; i < nids; i++) {
            EXPECT_EQ_INT(sl_tok_piece(SPM_NOPFX, ids[i], cat + at, sizeof cat - at, &l), 0);
            at += l;
        }
        /* ' ' was escaped to U+2581 and comes back as ' ' */
        if (at != n || memcmp(cat, buf, n) != 0)
            T_FAIL_AT("byte round trip failed (%zu bytes)", n);
        sl_free(ids);
    }
}

int main(void)
{
    tv_build_spm(&V, true);
    tv_build_spm(&VU, false);
    SPM = tv_make_spm(&V, true);
    SPM_NOPFX = tv_make_spm(&V, false);
    SPM_UNKV = tv_make_spm(&VU, true);
    if (!SPM || !SPM_NOPFX || !SPM_UNKV) {
        fprintf(stderr, "vocabulary creation failed\n");
        return 1;
    }
    RUN(test_merge_by_score);
    RUN(test_spaces);
    RUN(test_byte_fallback);
    RUN(test_special);
    RUN(test_empty);
    RUN(test_decode);
    RUN(test_roundtrip);
    sl_tok_destroy(SPM);
    sl_tok_destroy(SPM_NOPFX);
    sl_tok_destroy(SPM_UNKV);
    tv_free(&V);
    tv_free(&VU);
    return TEST_REPORT();
}
