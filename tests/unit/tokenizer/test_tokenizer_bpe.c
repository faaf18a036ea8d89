/* Byte-level BPE: golden ids for tricky inputs under the three pre-tokenizers,
 * special tokens, errors and round trips. Vocabulary: tok_vocabs.h. */
#include "core/core.h"
#include "engine/tokenizer/tokenizer.h"
#include "test.h"
#include "tok_vocabs.h"

static tv_vocab V;
static sl_tokenizer *GPT2, *LLAMA3, *QWEN2, *GPT2_BOS;

/* Encodes s and compares with the expected ids; prints both on mismatch. */
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

static void check_empty(sl_tokenizer *t, bool add_bos, size_t want_n, int32_t want0)
{
    int32_t *ids = NULL;
    size_t n = 99;
    EXPECT_EQ_INT(sl_tok_encode(t, "", 0, add_bos, true, &ids, &n), 0);
    EXPECT(ids != NULL);
    EXPECT_EQ_UINT(n, want_n);
    if (n > 0 && ids)
        EXPECT_EQ_INT(ids[0], want0);
    sl_free(ids);
}

static void test_create(void)
{
    EXPECT(GPT2 && LLAMA3 && QWEN2 && GPT2_BOS);
    EXPECT_EQ_UINT(sl_tok_n_vocab(GPT2), BPE_N);
    EXPECT_EQ_INT(sl_tok_find(GPT2, "hello", 5), BPE_HELLO);
    EXPECT_EQ_INT(sl_tok_find(GPT2, "nope", 4), -1);
    EXPECT(sl_tok_is_eog(GPT2, BPE_IM_END));
    EXPECT(!sl_tok_is_eog(GPT2, BPE_HELLO));
}

/* "hello": h e l l o. Pair ranks: "h e"=0, "e l"=11, "l l"=1. Lowest first:
 * he l l o -> he ll o ("he l" is no merge) -> hell o (rank 2) -> hello (3).
 * "e l" (rank 11) never applies: lower ranks win over position. */
static void test_merge_by_rank(void)
{
    EXPECT_IDS(GPT2, "hello", false, false, BPE_HELLO);
    /* " hello" is one pre-token "Ġhello": "h e" (0) beats "Ġ h" (4); then as
     * above to Ġ hello, and "Ġ hello" (9) joins them. */
    EXPECT_IDS(GPT2, " hello", false, false, BPE_GHELLO);
    /* "lll": "l l" applies at 0 and at 1 with the same rank; leftmost wins. */
    EXPECT_IDS(GPT2, "lll", false, false, BPE_LL, 'l');
    /* "hel": he (0) first, then "he l" is no merge: [he, l]. */
    EXPECT_IDS(GPT2, "hel", false, false, BPE_HE, 'l');
}

/* Spaces: gpt2 splits "  hello" as " " + " hello" (\s+(?!\S) backs off one
 * space so the last space joins the word). Trailing "  " is one pre-token ĠĠ. */
static void test_spaces(void)
{
    EXPECT_IDS(GPT2, "  hello", false, false, ' ', BPE_GHELLO);
    EXPECT_IDS(GPT2, "hello  hello", false, false, BPE_HELLO, ' ', BPE_GHELLO);
    EXPECT_IDS(GPT2, "hello  ", false, false, BPE_HELLO, BPE_GG);
    EXPECT_IDS(GPT2, "   ", false, false, BPE_GG, ' ');
    /* llama3 is the same on spaces */
    EXPECT_IDS(LLAMA3, "  hello", false, false, ' ', BPE_GHELLO);
}

/* Newlines: gpt2 has no newline rule: "\n\n" before a word splits as
 * "\n" + "\n" (the second by \s+). llama3/qwen2 take \s*[\r\n]+ -> "\n\n",
 * which merges to ĊĊ. */
static void test_newlines(void)
{
    EXPECT_IDS(GPT2, "hello\n\nhello", false, false, BPE_HELLO, '\n', '\n', BPE_HELLO);
    EXPECT_IDS(LLAMA3, "hello\n\nhello", false, false, BPE_HELLO, BPE_CC, BPE_HELLO);
    EXPECT_IDS(QWEN2, "hello\n\nhello", false, false, BPE_HELLO, BPE_CC, BPE_HELLO);
}

/* Digits "1234512":
 * gpt2: one pre-token. Pairs: 12@0 (5), 34 (12), 45 (7), 12@5 (5).
 *   12@0 -> [12,3,4,5,1,2], new "12 3" (6); 12@5 -> [12,3,4,5,12];
 *   "12 3" (6) -> [123,4,5,12]; "4 5" (7) -> [123,45,12]; "3 4" is stale.
 * llama3: \p{N}{1,3} -> "123" "451" "2": [123], [45,1] ("4 5" then nothing), [2].
 * qwen2: one digit per pre-token: every digit is its byte id. */
static void test_digits(void)
{
    EXPECT_IDS(GPT2, "1234512", false, false, BPE_123, BPE_45, BPE_12);
    EXPECT_IDS(LLAMA3, "1234512", false, false, BPE_123, BPE_45, '1', '2');
    EXPECT_IDS(QWEN2, "1234512", false, false, '1', '2', '3', '4', '5', '1', '2');
    /* "12345": gpt2 123+45; llama3 "123" + "45"; qwen2 digits. */
    EXPECT_IDS(GPT2, "12345", false, false, BPE_123, BPE_45);
    EXPECT_IDS(LLAMA3, "12345", false, false, BPE_123, BPE_45);
    EXPECT_IDS(QWEN2, "12345", false, false, '1', '2', '3', '4', '5');
}

/* Contractions: gpt2's are lower case only, so "'S" splits as "'" + "S";
 * llama3/qwen2 match "'S" case-insensitively and merge it ("' S" rank 13). */
static void test_contractions(void)
{
    EXPECT_IDS(GPT2, "it'S", false, false, 'i', 't', '\'', 'S');
    EXPECT_IDS(LLAMA3, "it'S", false, false, 'i', 't', BPE_APOS_S);
    EXPECT_IDS(QWEN2, "it'S", false, false, 'i', 't', BPE_APOS_S);
}

/* llama3 skips merging when a whole pre-token is a token: "abc" has no merge
 * path (only the token), so gpt2 gives its bytes and llama3 the token. */
static void test_ignore_merges(void)
{
    EXPECT_IDS(GPT2, "abc", false, false, 'a', 'b', 'c');
    EXPECT_IDS(LLAMA3, "abc", false, false, BPE_ABC);
    EXPECT_IDS(QWEN2, "abc", false, false, 'a', 'b', 'c');
}

/* Byte-level: U+1F600 is F0 9F 98 80; F0 and 9F map to "ð" and "Ł", merged by
 * "ð Ł" (rank 14); the rest are their byte ids. CJK 你好 = E4 BD A0 E5 A5 BD,
 * one letter pre-token with no merges. */
static void test_emoji_cjk(void)
{
    EXPECT_IDS(GPT2, "\xF0\x9F\x98\x80", false, false, BPE_EMOJI_PRE, 0x98, 0x80);
    EXPECT_IDS(GPT2, "\xE4\xBD\xA0\xE5\xA5\xBD", false, false, 0xE4, 0xBD, 0xA0, 0xE5, 0xA5, 0xBD);
    /* invalid UTF-8 stays lossless: each invalid run is its own pre-token */
    EXPECT_IDS(GPT2, "a\xFF" "b", false, false, 'a', 0xFF, 'b');
}

/* Special tokens. With parse_special, "<|im_start|>" and "<|im_end|>" are
 * single ids; "user", "\n", "hi" have no merges (bytes). Without it the text
 * is plain bytes: nothing in it has a merge ("h i", "u s", "e r"... are none).
 * "<|im_end|>" (10 bytes) is cut before the overlapping "end|>" (5). */
static void test_special(void)
{
    EXPECT_IDS(GPT2, "<|im_start|>user\nhi<|im_end|>", false, true, BPE_IM_START, 'u', 's', 'e', 'r', '\n', 'h',
               'i', BPE_IM_END);
    EXPECT_IDS(GPT2, "<|im_start|>user\nhi<|im_end|>", false, false, '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r',
               't', '|', '>', 'u', 's', 'e', 'r', '\n', 'h', 'i', '<', '|', 'i', 'm', '_', 'e', 'n', 'd', '|', '>');
    EXPECT_IDS(GPT2, "x end|>", false, true, 'x', ' ', BPE_END_SHORT);
    /* user-defined tokens are matched even without parse_special */
    EXPECT_IDS(GPT2, "a<tool>b", false, false, 'a', BPE_TOOL, 'b');
    /* adjacent specials and text between them */
    EXPECT_IDS(GPT2, "<|im_end|><|im_end|>hello<|im_start|>", false, true, BPE_IM_END, BPE_IM_END, BPE_HELLO,
               BPE_IM_START);
}

static void test_bos_and_empty(void)
{
    check_empty(GPT2, true, 0, 0);      /* add_bos_token false in this vocab */
    check_empty(GPT2_BOS, true, 1, BPE_EOT);
    check_empty(GPT2_BOS, false, 0, 0);
    int32_t *ids = NULL;
    size_t n = 7;
    EXPECT_EQ_INT(sl_tok_encode(GPT2_BOS, NULL, 0, true, true, &ids, &n), 0); /* NULL with length 0 */
    EXPECT_EQ_UINT(n, 1);
    sl_free(ids);
    EXPECT(sl_tok_adds_bos(GPT2_BOS));
    EXPECT(!sl_tok_adds_bos(GPT2));
    EXPECT_IDS(GPT2_BOS, "hello", true, false, BPE_EOT, BPE_HELLO);
    EXPECT_IDS(GPT2, "hello", true, false, BPE_HELLO);
}

static void test_errors(void)
{
    const char *toks[] = {"a", "b", "ab"};
    const char *bad_merges[] = {"ab"};
    sl_tok_vocab d = {.kind = SL_TOK_BPE, .pre = "falcon", .n_tokens = 3, .tokens = toks,
                      .bos_id = -1, .eos_id = -1, .eot_id = -1, .unk_id = -1, .pad_id = -1};
    sl_tokenizer *t = NULL;
    char err[256];
    EXPECT_EQ_INT(sl_tok_create(&d, &t, err, sizeof err), SL_EUNSUPPORTED);
    EXPECT(t == NULL);
    EXPECT_CONTAINS(err, "falcon");
    EXPECT_CONTAINS(err, "llama-bpe");
    EXPECT_CONTAINS(err, "qwen2");
    d.pre = "gpt2";
    d.n_merges = 1;
    d.merges = bad_merges;
    EXPECT_EQ_INT(sl_tok_create(&d, &t, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "merge 0");
    d.n_merges = 0;
    d.bos_id = 3;
    EXPECT_EQ_INT(sl_tok_create(&d, &t, err, sizeof err), SL_EINVAL);
    EXPECT_CONTAINS(err, "bos_id 3");
    d.bos_id = -1;
    d.n_tokens = 0;
    EXPECT_EQ_INT(sl_tok_create(&d, &t, err, sizeof err), SL_EINVAL);
    /* a vocabulary without the byte alphabet cannot encode "c" and has no unk */
    d.n_tokens = 3;
    EXPECT_EQ_INT(sl_tok_create(&d, &t, err, sizeof err), 0);
    int32_t *ids = NULL;
    size_t n = 0;
    EXPECT_EQ_INT(sl_tok_encode(t, "abc", 3, false, false, &ids, &n), SL_ENOTFOUND);
    EXPECT(ids == NULL);
    EXPECT_EQ_INT(sl_tok_encode(t, "ab", 2, false, false, &ids, &n), 0);
    EXPECT_EQ_UINT(n, 2); /* no merges given: a, b */
    sl_free(ids);
    sl_tok_destroy(t);
}

static void test_pieces(void)
{
    char buf[32];
    size_t len = 0;
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_GHELLO, buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 6);
    EXPECT(memcmp(buf, " hello", 6) == 0);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_CC, buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 2);
    EXPECT(memcmp(buf, "\n\n", 2) == 0);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_EMOJI_PRE, buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 2);
    EXPECT(memcmp(buf, "\xF0\x9F", 2) == 0);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, 0xAD, buf, sizeof buf, &len), 0); /* soft hyphen byte */
    EXPECT_EQ_UINT(len, 1);
    EXPECT_EQ_INT((uint8_t)buf[0], 0xAD);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_IM_START, buf, sizeof buf, &len), 0);
    EXPECT_EQ_UINT(len, 12);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_IM_START, buf, 4, &len), SL_ETOOBIG);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, BPE_N, buf, sizeof buf, &len), SL_ERANGE);
    EXPECT_EQ_INT(sl_tok_piece(GPT2, -1, buf, sizeof buf, &len), SL_ERANGE);
}

/* Deterministic generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Random valid UTF-8 biased toward the interesting classes. */
static size_t random_utf8(char *out, size_t max_chars)
{
    static const char *frags[] = {" ", "  ", "\n", "\r\n", "\t", "hello", "'s", "'LL", "123", "<|im_end|>", "end|>"};
    size_t at = 0, n = rnd() % max_chars;
    for (size_t i = 0; i < n; i++) {
        unsigned cls = rnd() % 6, cp;
        if (cls == 0) {
            const char *f = frags[rnd() % SL_ARRAY_LEN(frags)];
            memcpy(out + at, f, strlen(f));
            at += strlen(f);
            continue;
        }
        if (cls == 1)
            cp = 0x20 + rnd() % 0x5F;
        else if (cls == 2)
            cp = 0x80 + rnd() % 0x780;
        else if (cls == 3)
            cp = 0x4E00 + rnd() % 0x5000;
        else if (cls == 4)
            cp = 0x1F300 + rnd() % 0x300;
        else
            cp = 1 + rnd() % 0x10FFFF;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 'x';
        char u[8];
        tv_utf8(cp, u);
        memcpy(out + at, u, strlen(u));
        at += strlen(u);
    }
    return at;
}

static void roundtrip_one(sl_tokenizer *t, const char *s, size_t n, bool special, bool valid_utf8)
{
    int32_t *ids = NULL;
    size_t nids = 0;
    int rc = sl_tok_encode(t, s, n, false, special, &ids, &nids);
    EXPECT_EQ_INT(rc, 0);
    if (rc)
        return;
    /* raw pieces concatenate to the input for any bytes */
    char *cat = sl_malloc(n + 1);
    size_t at = 0;
    bool ok = true;
    for (size_t i = 0; i < nids && ok; i++) {
        size_t l = 0;
        ok = sl_tok_piece(t, ids[i], cat + at, n - at, &l) == 0;
        at += l;
    }
    if (!ok || at != n || memcmp(cat, s, n) != 0) {
        T_FAIL_AT("piece round trip failed for %zu bytes", n);
    }
    if (valid_utf8) {
        char *text = NULL;
        size_t tl = 0;
        EXPECT_EQ_INT(sl_tok_decode(t, ids, nids, SL_TOK_DEC_RENDER_SPECIAL, &text, &tl), 0);
        if (!text || tl != n || memcmp(text, s, n) != 0)
            T_FAIL_AT("decode round trip failed for \"%.*s\"", (int)n, s);
        sl_free(text);
    }
    sl_free(cat);
    sl_free(ids);
}

static void test_roundtrip(void)
{
    static const char *fixed[] = {"", "hello world", "  leading", "trailing  ", "a\n\n\nb", "\r\n\r\n",
                                  "12345678901", "it's THEY'RE", "😀🎉 ok", "你好，世界", "x<|im_end|>y",
                                  "tab\there", "\xC2\xA0nbsp\xE3\x80\x80ideo"};
    sl_tokenizer *toks[] = {GPT2, LLAMA3, QWEN2};
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < SL_ARRAY_LEN(fixed); i++) {
            roundtrip_one(toks[k], fixed[i], strlen(fixed[i]), false, true);
            roundtrip_one(toks[k], fixed[i], strlen(fixed[i]), true, true);
        }
        char buf[4096];
        for (int r = 0; r < 300; r++) {
            size_t n = random_utf8(buf, 200);
            roundtrip_one(toks[k], buf, n, r & 1, true);
        }
        /* arbitrary bytes: lossless through pieces (decode would add U+FFFD) */
        for (int r = 0; r < 300; r++) {
            size_t n = rnd() % 64;
            for (size_t i = 0; i < n; i++)
                buf[i] = (char)rnd();
            roundtrip_one(toks[k], buf, n, false, false);
        }
    }
}

/* Every allocation of create and encode fails in turn: each failure is an
 * SL_ENOMEM (or, inside the optional JIT, a silent fallback) and leaks nothing
 * (the ASan build checks leaks). */
static void test_alloc_failures(void)
{
    size_t live = sl_alloc_live_bytes();
    bool created = false;
    tv_quiet = true;
    for (long k = 1; k < 5000 && !created; k++) {
        sl_alloc_fail_after(k);
        sl_tokenizer *t = tv_make_bpe(&V, "llama3", true);
        sl_alloc_fail_after(0);
        if (t) {
            created = true;
            sl_tok_destroy(t);
        }
    }
    tv_quiet = false;
    EXPECT(created);
    EXPECT_EQ_UINT(sl_alloc_live_bytes(), live);
    bool encoded = false;
    const char *s = "<|im_start|>hello  world 12345 \xF0\x9F\x98\x80";
    for (long k = 1; k < 5000 && !encoded; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        sl_alloc_fail_after(k);
        int rc = sl_tok_encode(LLAMA3, s, strlen(s), true, true, &ids, &n);
        sl_alloc_fail_after(0);
        if (rc == 0) {
            encoded = true;
            sl_free(ids);
        } else {
            EXPECT_EQ_INT(rc, SL_ENOMEM);
            EXPECT(ids == NULL);
        }
    }
    EXPECT(encoded);
    EXPECT_EQ_UINT(sl_alloc_live_bytes(), live);
}

int main(void)
{
    tv_build_bpe(&V);
    GPT2 = tv_make_bpe(&V, "gpt2", false);
    LLAMA3 = tv_make_bpe(&V, "llama-bpe", false);
    QWEN2 = tv_make_bpe(&V, "qwen2", false);
    GPT2_BOS = tv_make_bpe(&V, NULL, true);
    RUN(test_create);
    if (GPT2 && LLAMA3 && QWEN2 && GPT2_BOS) {
        RUN(test_merge_by_rank);
        RUN(test_spaces);
        RUN(test_newlines);
        RUN(test_digits);
        RUN(test_contractions);
        RUN(test_ignore_merges);
        RUN(test_emoji_cjk);
        RUN(test_special);
        RUN(test_bos_and_empty);
        RUN(test_pieces);
        RUN(test_roundtrip);
        RUN(test_alloc_failures);
    }
    RUN(test_errors);
    sl_tok_destroy(GPT2);
    sl_tok_destroy(LLAMA3);
    sl_tok_destroy(QWEN2);
    sl_tok_destroy(GPT2_BOS);
    tv_free(&V);
    return TEST_REPORT();
}
