/* Small hand-made vocabularies shared by the tokenizer tests. Every golden id
 * in the tests is derived by hand from the tables below. */
#ifndef TOK_VOCABS_H
#define TOK_VOCABS_H

#include <stdio.h>
#include <string.h>

#include "engine/tokenizer/tokenizer.h"

#define TV_MAX 400

/* Set to silence creation errors (allocation-failure loops). */
static bool tv_quiet __attribute__((unused));

typedef struct tv_vocab {
    char *tok[TV_MAX];
    float score[TV_MAX];
    int32_t type[TV_MAX];
    size_t n;
    const char *merges[64];
    size_t n_merges;
} tv_vocab;

static inline int32_t tv_add(tv_vocab *v, const char *s, float score, int32_t type)
{
    v->tok[v->n] = sl_strdup(s);
    v->score[v->n] = score;
    v->type[v->n] = type;
    return (int32_t)v->n++;
}

static inline void tv_free(tv_vocab *v)
{
    for (size_t i = 0; i < v->n; i++)
        sl_free(v->tok[i]);
    v->n = 0;
}

/* UTF-8 of code point cp into out (NUL-terminated). */
static inline void tv_utf8(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63)), out[3] = 0;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 63));
        out[2] = (char)(0x80 | ((cp >> 6) & 63)), out[3] = (char)(0x80 | (cp & 63)), out[4] = 0;
    }
}

/* ---- byte-level BPE vocabulary ----
 * ids 0..255: the one-character symbol of byte b (so byte b has id b). Bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF are their own code point; the other 68
 * bytes (0x00..0x20, 0x7F..0xA0, 0xAD) are U+0100.. in increasing byte order:
 * ' ' (0x20) is the 33rd of them -> U+0120 "Ġ", '\n' -> U+010A "Ċ",
 * 0x9F -> 33 + (0x9F - 0x7F) = 65th -> U+0141 "Ł".
 * Then the merged tokens below; merge rank = index in the merges list. */
enum {
    BPE_HE = 256,      /* "he"      rank 0: "h e"   */
    BPE_LL = 257,      /* "ll"      rank 1: "l l"   */
    BPE_HELL = 258,    /* "hell"    rank 2: "he ll" */
    BPE_HELLO = 259,   /* "hello"   rank 3: "hell o" */
    BPE_GH = 260,      /* "Ġh"      rank 4: "Ġ h"   */
    BPE_12 = 261,      /* "12"      rank 5: "1 2"   */
    BPE_123 = 262,     /* "123"     rank 6: "12 3"  */
    BPE_45 = 263,      /* "45"      rank 7: "4 5"   */
    BPE_GG = 264,      /* "ĠĠ"      rank 8: "Ġ Ġ"   */
    BPE_GHELLO = 265,  /* "Ġhello"  rank 9: "Ġ hello" */
    BPE_CC = 266,      /* "ĊĊ"      rank 10: "Ċ Ċ"  */
    BPE_IM_START = 267,/* "<|im_start|>" control */
    BPE_IM_END = 268,  /* "<|im_end|>"   control (eos) */
    BPE_EOT = 269,     /* "<|endoftext|>" control (bos) */
    BPE_TOOL = 270,    /* "<tool>" user-defined */
    BPE_EL = 271,      /* "el"      rank 11: "e l"  */
    BPE_34 = 272,      /* "34"      rank 12: "3 4"  */
    BPE_APOS_S = 273,  /* "'S"      rank 13: "' S"  */
    BPE_EMOJI_PRE = 274, /* "ðŁ"    rank 14: "ð Ł" (bytes F0 9F) */
    BPE_END_SHORT = 275, /* "end|>" control (overlaps <|im_end|>) */
    BPE_ABC = 276,     /* "abc"     no merge leads to it */
    BPE_N = 277
};

static inline unsigned tv_byte_cp(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)))
            k++;
    return 256 + k;
}

static inline void tv_build_bpe(tv_vocab *v)
{
    memset(v, 0, sizeof *v);
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        tv_utf8(tv_byte_cp(b), s);
        tv_add(v, s, 0, 1);
    }
    tv_add(v, "he", 0, 1);
    tv_add(v, "ll", 0, 1);
    tv_add(v, "hell", 0, 1);
    tv_add(v, "hello", 0, 1);
    tv_add(v, "\xC4\xA0h", 0, 1);
    tv_add(v, "12", 0, 1);
    tv_add(v, "123", 0, 1);
    tv_add(v, "45", 0, 1);
    tv_add(v, "\xC4\xA0\xC4\xA0", 0, 1);
    tv_add(v, "\xC4\xA0hello", 0, 1);
    tv_add(v, "\xC4\x8A\xC4\x8A", 0, 1);
    tv_add(v, "<|im_start|>", 0, 3);
    tv_add(v, "<|im_end|>", 0, 3);
    tv_add(v, "<|endoftext|>", 0, 3);
    tv_add(v, "<tool>", 0, 4);
    tv_add(v, "el", 0, 1);
    tv_add(v, "34", 0, 1);
    tv_add(v, "'S", 0, 1);
    tv_add(v, "\xC3\xB0\xC5\x81", 0, 1);
    tv_add(v, "end|>", 0, 3);
    tv_add(v, "abc", 0, 1);
    static const char *m[] = {
        "h e", "l l", "he ll", "hell o", "\xC4\xA0 h", "1 2", "12 3", "4 5", "\xC4\xA0 \xC4\xA0",
        "\xC4\xA0 hello", "\xC4\x8A \xC4\x8A", "e l", "3 4", "' S", "\xC3\xB0 \xC5\x81",
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        v->merges[v->n_merges++] = m[i];
}

static inline sl_tokenizer *tv_make_bpe(tv_vocab *v, const char *pre, bool add_bos)
{
    sl_tok_vocab d = {
        .kind = SL_TOK_BPE, .pre = pre, .n_tokens = v->n, .tokens = (const char *const *)v->tok,
        .scores = NULL, .types = v->type, .n_merges = v->n_merges, .merges = v->merges,
        .bos_id = BPE_EOT, .eos_id = BPE_IM_END, .eot_id = -1, .unk_id = -1, .pad_id = -1,
        .add_bos = add_bos, .add_space_prefix = false,
    };
    sl_tokenizer *t = NULL;
    char err[256];
    if (sl_tok_create(&d, &t, err, sizeof err) != 0 && !tv_quiet)
        fprintf(stderr, "tv_make_bpe: %s\n", err);
    return t;
}

/* ---- SPM vocabulary ----
 * 0 "<unk>" (unknown), 1 "<s>" (control, bos), 2 "</s>" (control, eos),
 * 3 + b: "<0xBB>" byte tokens for every byte b, then pieces with scores.
 * A merge is taken where the joined text is a token with the highest score. */
enum {
    SPM_UNK = 0, SPM_BOS = 1, SPM_EOS = 2, SPM_BYTE0 = 3,
    SPM_SPACE = 259, /* "▁"      -1000 */
    SPM_H = 260,     /* "h"      -1000 */
    SPM_E = 261,     /* "e"      -1000 */
    SPM_L = 262,     /* "l"      -1000 */
    SPM_O = 263,     /* "o"      -1000 */
    SPM_HE = 264,    /* "he"     -10 */
    SPM_LL = 265,    /* "ll"     -5 */
    SPM_HELL = 266,  /* "hell"   -4 */
    SPM_HELLO = 267, /* "hello"  -3 */
    SPM_SHELLO = 268,/* "▁hello" -2 */
    SPM_EL = 269,    /* "el"     -20 (loses to "he" and "ll") */
    SPM_NI = 270,    /* "你"     -1000 */
    SPM_SS = 271,    /* "▁▁"     -9 */
    SPM_N = 272
};

static inline void tv_build_spm(tv_vocab *v, bool with_bytes)
{
    memset(v, 0, sizeof *v);
    tv_add(v, "<unk>", 0, 2);
    tv_add(v, "<s>", 0, 3);
    tv_add(v, "</s>", 0, 3);
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        /* a vocabulary without byte fallback gets unused fillers instead */
        tv_add(v, with_bytes ? s : "", 0, with_bytes ? 6 : 5);
    }
    tv_add(v, "\xE2\x96\x81", -1000, 1);
    tv_add(v, "h", -1000, 1);
    tv_add(v, "e", -1000, 1);
    tv_add(v, "l", -1000, 1);
    tv_add(v, "o", -1000, 1);
    tv_add(v, "he", -10, 1);
    tv_add(v, "ll", -5, 1);
    tv_add(v, "hell", -4, 1);
    tv_add(v, "hello", -3, 1);
    tv_add(v, "\xE2\x96\x81hello", -2, 1);
    tv_add(v, "el", -20, 1);
    tv_add(v, "\xE4\xBD\xA0", -1000, 1);
    tv_add(v, "\xE2\x96\x81\xE2\x96\x81", -9, 1);
}

static inline sl_tokenizer *tv_make_spm(tv_vocab *v, bool add_space_prefix)
{
    sl_tok_vocab d = {
        .kind = SL_TOK_SPM, .pre = NULL, .n_tokens = v->n, .tokens = (const char *const *)v->tok,
        .scores = v->score, .types = v->type, .bos_id = SPM_BOS, .eos_id = SPM_EOS, .eot_id = -1,
        .unk_id = SPM_UNK, .pad_id = -1, .add_bos = true, .add_space_prefix = add_space_prefix,
    };
    sl_tokenizer *t = NULL;
    char err[256];
    if (sl_tok_create(&d, &t, err, sizeof err) != 0 && !tv_quiet)
        fprintf(stderr, "tv_make_spm: %s\n", err);
    return t;
}

#endif
