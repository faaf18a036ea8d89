/* The stop matcher: stop strings with hold-back, end token ids, max_tokens. */
#include "sample.h"

#include <stdio.h>
#include <string.h>

struct sl_stop_matcher {
    char *strings[SL_STOP_MAX_STRINGS];
    size_t lens[SL_STOP_MAX_STRINGS];
    size_t n_strings;
    int32_t end_ids[SL_STOP_MAX_END_IDS];
    size_t n_end_ids;
    int64_t max_tokens;
    int64_t n_tokens;
    /* Text not yet released: a possible stop prefix or a partial UTF-8
     * character, plus (until the next call) what the last call emitted. */
    sl_buf pending;
    size_t emitted; /* bytes at the front of pending handed out last call */
    bool stopped;
};

int sl_stop_create(const sl_stop_spec *spec, sl_stop_matcher **out, char *err, size_t err_size)
{
    *out = NULL;
    if (spec->n_strings > SL_STOP_MAX_STRINGS)
        return sl_errf(err, err_size, SL_ERANGE, "stop has %zu strings; at most %d are allowed",
                        spec->n_strings, SL_STOP_MAX_STRINGS);
    for (size_t i = 0; i < spec->n_strings; i++) {
        const char *s = spec->strings[i];
        size_t len = s ? strlen(s) : 0;
        if (len == 0)
            return sl_errf(err, err_size, SL_EINVAL, "stop[%zu] is empty", i);
        if (len > SL_STOP_MAX_STRING_LEN)
            return sl_errf(err, err_size, SL_ERANGE,
                            "stop[%zu] is %zu bytes long; the limit is %d bytes", i, len,
                            SL_STOP_MAX_STRING_LEN);
    }
    if (spec->n_end_ids > SL_STOP_MAX_END_IDS)
        return sl_errf(err, err_size, SL_ERANGE, "%zu end token ids given; at most %d are allowed",
                        spec->n_end_ids, SL_STOP_MAX_END_IDS);
    if (spec->max_tokens < 0)
        return sl_errf(err, err_size, SL_ERANGE, "max_tokens must be >= 0, got %lld",
                        (long long)spec->max_tokens);

    sl_stop_matcher *m = sl_calloc(1, sizeof *m);
    if (!m)
        return SL_ENOMEM;
    for (size_t i = 0; i < spec->n_strings; i++) {
        m->strings[i] = sl_strdup(spec->strings[i]);
        if (!m->strings[i]) {
            sl_stop_destroy(m);
            return SL_ENOMEM;
        }
        m->lens[i] = strlen(m->strings[i]);
    }
    m->n_strings = spec->n_strings;
    memcpy(m->end_ids, spec->end_ids, spec->n_end_ids * sizeof *m->end_ids);
    m->n_end_ids = spec->n_end_ids;
    m->max_tokens = spec->max_tokens;
    /* Held text is shorter than the longest stop string plus a partial UTF-8
     * character; a call adds at most one piece. */
    sl_buf_init(&m->pending, SL_STOP_MAX_STRING_LEN + 4 + SL_STOP_MAX_PIECE);
    *out = m;
    return 0;
}

void sl_stop_destroy(sl_stop_matcher *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_strings; i++)
        sl_free(m->strings[i]);
    sl_buf_free(&m->pending);
    sl_free(m);
}

sl_finish_reason sl_stop_token(sl_stop_matcher *m, int32_t token)
{
    m->n_tokens++;
    for (size_t i = 0; i < m->n_end_ids; i++)
        if (m->end_ids[i] == token)
            return SL_FINISH_STOP;
    if (m->max_tokens > 0 && m->n_tokens >= m->max_tokens)
        return SL_FINISH_LENGTH;
    return SL_FINISH_NONE;
}

int64_t sl_stop_tokens(const sl_stop_matcher *m) { return m->n_tokens; }

/* Drops what the previous call handed out. */
static void release_emitted(sl_stop_matcher *m)
{
    if (m->emitted) {
        sl_buf_consume(&m->pending, m->emitted);
        m->emitted = 0;
    }
}

/* Returns how many bytes before end belong to an incomplete UTF-8 sequence
 * that ends exactly at end (0 if the text ends on a character boundary). */
static size_t partial_utf8_tail(const unsigned char *p, size_t end)
{
    for (size_t back = 1; back <= 4 && back <= end; back++) {
        unsigned char c = p[end - back];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: keep looking for the lead */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0; /* stray continuation bytes: not ours to repair */
}

int sl_stop_feed(sl_stop_matcher *m, const char *piece, size_t n, sl_stop_out *out)
{
    out->emit = "";
    out->emit_len = 0;
    out->finish = m->stopped ? SL_FINISH_STOP : SL_FINISH_NONE;
    out->stop_index = -1;
    if (m->stopped)
        return 0;
    release_emitted(m);
    if (n > SL_STOP_MAX_PIECE)
        return SL_ETOOBIG;
    int rc = sl_buf_append(&m->pending, piece, n);
    if (rc)
        return rc;
    const char *text = m->pending.data;
    const size_t len = m->pending.len;
    if (len == 0)
        return 0;

    /* The earliest stop string wins; the text before it is released. */
    size_t best_pos = len;
    int best = -1;
    for (size_t i = 0; i < m->n_strings; i++) {
        const char *hit = memmem(text, len, m->strings[i], m->lens[i]);
        if (hit && (size_t)(hit - text) < best_pos) {
            best_pos = (size_t)(hit - text);
            best = (int)i;
        }
    }
    if (best >= 0) {
        m->stopped = true;
        out->emit = text;
        out->emit_len = best_pos;
        out->finish = SL_FINISH_STOP;
        out->stop_index = best;
        return 0;
    }

    /* Hold back the longest suffix that is a proper prefix of a stop string. */
    size_t hold = 0;
    for (size_t i = 0; i < m->n_strings; i++) {
        size_t k = SL_MIN(m->lens[i] - 1, len);
        for (; k > hold; k--)
            if (memcmp(text + len - k, m->strings[i], k) == 0)
                break;
        if (k > hold)
            hold = k;
    }
    size_t emit = len - hold;
    emit -= partial_utf8_tail((const unsigned char *)text, emit);
    out->emit = text;
    out->emit_len = emit;
    m->emitted = emit;
    return 0;
}

int sl_stop_flush(sl_stop_matcher *m, sl_stop_out *out)
{
    out->emit = "";
    out->emit_len = 0;
    out->finish = m->stopped ? SL_FINISH_STOP : SL_FINISH_NONE;
    out->stop_index = -1;
    if (m->stopped)
        return 0;
    release_emitted(m);
    if (m->pending.len) {
        out->emit = m->pending.data;
        out->emit_len = m->pending.len;
        m->emitted = m->pending.len;
    }
    return 0;
}
