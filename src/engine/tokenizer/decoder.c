/* Streaming detokenizer: token pieces in, complete UTF-8 out.
 *
 * A multi-byte character may be split across tokens (byte tokens, or BPE
 * tokens that end inside a character), so the tail of the output that could
 * still become a valid character is held back (at most 3 bytes) until the
 * next token completes or breaks it. Invalid input is replaced by U+FFFD once
 * per maximal subpart (the longest prefix of a valid sequence), the
 * replacement practice the Unicode standard recommends. */
#include "engine/tokenizer/tok_internal.h"

#include <string.h>

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

void sl_tok_decoder_init(sl_tok_decoder *d, const sl_tokenizer *t, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->flags = flags;
}

/* The allowed range of the second byte of a sequence led by c, and the
 * sequence length; 0 when c cannot start a sequence. Later bytes are 80..BF. */
static size_t lead_info(uint8_t c, uint8_t *lo, uint8_t *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0; /* no overlong forms */
        if (c == 0xED)
            *hi = 0x9F; /* no surrogates */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        if (c == 0xF4)
            *hi = 0x8F; /* nothing above U+10FFFF */
        return 4;
    }
    return 0;
}

/* Validates the held-back bytes followed by p[0..n), appending complete
 * characters and replacements to out and holding back an incomplete tail. */
static int emit_utf8(sl_tok_decoder *d, const char *p, size_t n, sl_buf *out)
{
    uint8_t hold[4];
    size_t nh = d->n_pending;
    memcpy(hold, d->pending, nh);
    size_t total = nh + n;
#define AT(k) ((k) < nh ? hold[(k)] : (uint8_t)p[(k) - nh])
    size_t i = 0;
    int rc;
    d->n_pending = 0;
    while (i < total) {
        uint8_t c = AT(i);
        if (c < 0x80) {
            /* copy the ASCII run in one append when it lies inside p */
            size_t j = i + 1;
            while (j < total && AT(j) < 0x80)
                j++;
            for (size_t k = i; k < j && k < nh; k++)
                if ((rc = sl_buf_append_char(out, (char)AT(k))))
                    return rc;
            size_t from = SL_MAX(i, nh);
            if (j > from && (rc = sl_buf_append(out, p + (from - nh), j - from)))
                return rc;
            i = j;
            continue;
        }
        uint8_t lo, hi;
        size_t len = lead_info(c, &lo, &hi);
        if (len == 0) {
            if ((rc = sl_buf_append(out, REPLACEMENT, 3)))
                return rc;
            i++;
            continue;
        }
        size_t k = 1;
        bool incomplete = false;
        while (k < len) {
            if (i + k >= total) {
                incomplete = true;
                break;
            }
            uint8_t x = AT(i + k);
            if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF))
                break;
            k++;
        }
        if (incomplete) {
            for (size_t m = 0; m < k; m++)
                d->pending[m] = AT(i + m);
            d->n_pending = k;
            break;
        }
        if (k == len) {
            char ch[4];
            for (size_t m = 0; m < len; m++)
                ch[m] = (char)AT(i + m);
            if ((rc = sl_buf_append(out, ch, len)))
                return rc;
        } else if ((rc = sl_buf_append(out, REPLACEMENT, 3))) {
            return rc;
        }
        i += k;
    }
#undef AT
    return 0;
}

int sl_tok_decoder_feed(sl_tok_decoder *d, int32_t id, sl_buf *out)
{
    const sl_tokenizer *t = d->tok;
    if (id < 0 || (size_t)id >= t->n_vocab)
        return SL_ERANGE;
    const char *p = t->piece_blob + t->piece_off[id];
    size_t n = t->piece_len[id];
    uint8_t ty = t->types[id];
    bool render = d->flags & SL_TOK_DEC_RENDER_SPECIAL;
    if (!render && (ty == SL_TOK_TYPE_CONTROL || ty == SL_TOK_TYPE_UNUSED)) {
        n = 0;
    } else if (!render && ty == SL_TOK_TYPE_UNKNOWN) {
        /* SPM shows an unknown piece as U+2585 (a visible block); BPE drops it */
        p = "\xE2\x96\x85";
        n = t->kind == SL_TOK_SPM ? 3 : 0;
    }
    if (id != t->bos_id) {
        if ((d->flags & SL_TOK_DEC_STRIP_SPACE) && !d->seen_text && n > 0 && p[0] == ' ')
            p++, n--;
        d->seen_text = true;
    }
    /* on failure, leave out and the decoder as they were */
    sl_tok_decoder saved = *d;
    size_t len0 = out->len;
    int rc = emit_utf8(d, p, n, out);
    if (rc) {
        *d = saved;
        out->len = len0;
        if (out->data)
            out->data[len0] = '\0';
    }
    return rc;
}

int sl_tok_decoder_flush(sl_tok_decoder *d, sl_buf *out)
{
    if (d->n_pending == 0)
        return 0;
    int rc = sl_buf_append(out, REPLACEMENT, 3);
    if (rc == 0)
        d->n_pending = 0;
    return rc;
}

int sl_tok_decode(const sl_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    sl_tok_decoder d;
    sl_tok_decoder_init(&d, t, flags);
    sl_buf b;
    sl_buf_init(&b, SIZE_MAX / 2);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = sl_tok_decoder_feed(&d, ids[i], &b);
    if (rc == 0)
        rc = sl_tok_decoder_flush(&d, &b);
    if (rc == 0 && !b.data)
        rc = sl_buf_reserve(&b, 1);
    if (rc) {
        sl_buf_free(&b);
        return rc;
    }
    b.data[b.len] = '\0';
    *text = sl_buf_take(&b, len);
    return 0;
}
