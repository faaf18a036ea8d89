/* Fuzz driver for engine/tokenizer. Builds the small test vocabularies once,
 * then encodes the input as text with every tokenizer kind and checks what
 * must hold for any bytes:
 *   - BPE (all three pre-tokenizers): the raw pieces concatenate back to the
 *     input exactly (byte-level BPE is lossless; specials keep their text);
 *   - SPM without space prefix: the same, except that U+2581 in the input
 *     comes back as a space;
 *   - the streaming decoder only ever emits valid UTF-8, and for valid UTF-8
 *     input it reproduces the BPE input exactly.
 * Input byte 0 picks the options (bit 0 parse_special, bit 1 add_bos). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/tokenizer/tok_vocabs.h"
#include "core/core.h"
#include "engine/tokenizer/tokenizer.h"

/* Fails loudly: libFuzzer and the replay runner both treat abort as a finding. */
#define FAIL(what)                                                                              \
    do {                                                                                        \
        fprintf(stderr, "tokenizer fuzz: %s (line %d)\n", what, __LINE__);                      \
        abort();                                                                                \
    } while (0)

static tv_vocab VB, VS;
static sl_tokenizer *TOKS[5]; /* gpt2, llama3, qwen2, spm, spm without prefix */

static void setup(void)
{
    tv_build_bpe(&VB);
    tv_build_spm(&VS, true);
    TOKS[0] = tv_make_bpe(&VB, "gpt2", true);
    TOKS[1] = tv_make_bpe(&VB, "llama3", false);
    TOKS[2] = tv_make_bpe(&VB, "qwen2", false);
    TOKS[3] = tv_make_spm(&VS, true);
    TOKS[4] = tv_make_spm(&VS, false);
    for (int i = 0; i < 5; i++)
        if (!TOKS[i])
            FAIL("vocabulary creation failed");
}

static bool valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                                                               : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (len == 0 || i + len > n)
            return false;
        uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            v = (v << 6) | (p[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static void check(int which, const uint8_t *text, size_t n, bool special, bool add_bos)
{
    sl_tokenizer *t = TOKS[which];
    int32_t *ids = NULL;
    size_t nids = 0;
    if (sl_tok_encode(t, (const char *)text, n, add_bos, special, &ids, &nids) != 0)
        FAIL("encode failed"); /* every vocabulary here can encode any bytes */

    /* pieces, skipping a leading BOS */
    size_t first = (add_bos && sl_tok_adds_bos(t)) ? 1 : 0;
    if (first && (nids == 0 || ids[0] != sl_tok_bos(t)))
        FAIL("BOS missing");
    char *cat = sl_malloc(n + 16);
    size_t at = 0;
    for (size_t i = first; i < nids; i++) {
        size_t l = 0;
        if (sl_tok_piece(t, ids[i], cat + at, n + 16 - at, &l) != 0)
            FAIL("pieces are longer than the input");
        at += l;
    }
    if (which <= 2 && (at != n || memcmp(cat, text, n) != 0))
        FAIL("BPE pieces do not concatenate to the input");
    if (which == 4) {
        /* expected: the input with each U+2581 turned into ' ' */
        size_t k = 0, j = 0;
        bool same = true;
        while (k < n && same) {
            if (k + 3 <= n && memcmp(text + k, "\xE2\x96\x81", 3) == 0) {
                same = j < at && cat[j] == ' ';
                k += 3;
            } else {
                same = j < at && cat[j] == (char)text[k];
                k++;
            }
            j++;
        }
        if (!same || j != at)
            FAIL("SPM pieces do not concatenate to the input");
    }
    sl_free(cat);

    /* streaming decode through a small bounded buffer, drained as it goes */
    sl_tok_decoder d;
    sl_tok_decoder_init(&d, t, SL_TOK_DEC_RENDER_SPECIAL);
    sl_buf out, all;
    sl_buf_init(&out, 64);
    sl_buf_init(&all, 4 * n + 64);
    for (size_t i = first; i < nids; i++) {
        int rc = sl_tok_decoder_feed(&d, ids[i], &out);
        if (rc == SL_ETOOBIG) {
            /* a piece larger than the buffer: drain and retry into all */
            rc = sl_tok_decoder_feed(&d, ids[i], &all);
        }
        if (rc != 0 || sl_buf_append(&all, out.data ? out.data : "", out.len) != 0)
            FAIL("decoder feed failed");
        sl_buf_reset(&out);
    }
    if (sl_tok_decoder_flush(&d, &all) != 0)
        FAIL("decoder flush failed");
    if (!valid_utf8((const uint8_t *)all.data, all.len))
        FAIL("decoder emitted invalid UTF-8");
    if (which <= 2 && valid_utf8(text, n) && (all.len != n || (n && memcmp(all.data, text, n) != 0)))
        FAIL("BPE decode differs from valid UTF-8 input");
    sl_buf_free(&out);
    sl_buf_free(&all);
    sl_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!TOKS[0])
        setup();
    if (size == 0)
        return 0;
    bool special = data[0] & 1, add_bos = data[0] & 2;
    for (int which = 0; which < 5; which++)
        check(which, data + 1, size - 1, special, add_bos);
    return 0;
}
