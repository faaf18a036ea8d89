/* Fuzzes the stop matcher. Input: byte 0 picks the number of stop strings
 * (0..4); the rest is split on 0x01 into that many stop strings followed by the
 * generated pieces. Checks the matcher's promise: everything emitted, in order,
 * equals the text before the first stop string (or all of it after a flush). */
#include "engine/sample/sample.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    size_t want_stops = data[0] % 5;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;

    char *stops[SL_STOP_MAX_STRINGS] = {0};
    sl_stop_spec spec = {0};
    while (spec.n_strings < want_stops && p < end) {
        const char *sep = memchr(p, 1, (size_t)(end - p));
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        /* Stop strings are C strings: cut at a NUL, skip empty ones. */
        char *s = sl_strndup(p, n);
        p += n + (sep ? 1 : 0);
        if (!s || !s[0] || strlen(s) > SL_STOP_MAX_STRING_LEN) {
            sl_free(s);
            continue;
        }
        stops[spec.n_strings] = s;
        spec.strings[spec.n_strings++] = s;
    }
    sl_stop_matcher *m = NULL;
    if (sl_stop_create(&spec, &m, NULL, 0) != 0)
        abort();

    /* The whole generated text, and what the matcher lets through. */
    char *text = sl_malloc(size + 1), *got = sl_malloc(size + 1);
    size_t text_len = 0, got_len = 0;
    sl_stop_out o = {0};
    while (p < end) {
        const char *sep = memchr(p, 1, (size_t)(end - p));
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        memcpy(text + text_len, p, n);
        text_len += n;
        if (sl_stop_feed(m, p, n, &o) != 0)
            abort();
        memcpy(got + got_len, o.emit, o.emit_len);
        got_len += o.emit_len;
        p += n + (sep ? 1 : 0);
        if (o.finish == SL_FINISH_STOP)
            break;
    }
    if (o.finish != SL_FINISH_STOP) {
        sl_stop_flush(m, &o);
        memcpy(got + got_len, o.emit, o.emit_len);
        got_len += o.emit_len;
    }
    size_t cut = text_len;
    for (size_t i = 0; i < spec.n_strings; i++) {
        const char *h = memmem(text, text_len, stops[i], strlen(stops[i]));
        if (h && (size_t)(h - text) < cut)
            cut = (size_t)(h - text);
    }
    if (o.finish == SL_FINISH_STOP ? got_len != cut : got_len != text_len)
        abort();
    if (memcmp(got, text, got_len) != 0)
        abort();

    sl_free(text);
    sl_free(got);
    sl_stop_destroy(m);
    for (size_t i = 0; i < spec.n_strings; i++)
        sl_free(stops[i]);
    return 0;
}
