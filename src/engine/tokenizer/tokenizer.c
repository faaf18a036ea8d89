/* Tokenizer construction and encoding (SPM and byte-level BPE).
 *
 * Encoding runs in three stages:
 *   1. special-token partition: the raw text is cut into fragments that are
 *      either plain text or one special token id (longest specials first);
 *   2. per text fragment, either the SPM merge (whole fragment, by score) or
 *      the BPE pre-tokenizer regex followed by the rank merge per pre-token;
 *   3. final symbols are looked up in the vocabulary, with byte fallback.
 * Both merges share one bigram priority queue: smallest key first, ties to
 * the leftmost pair (key = -score for SPM, rank for BPE). */
#include "engine/tokenizer/tok_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- utf-8 */

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one well-formed UTF-8 sequence at p[0..n); returns its length, or 0
 * when the bytes there are not a valid sequence. */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* SPM splits text into characters by the lead byte (as SentencePiece front
 * ends do): stray continuation bytes count as one-byte characters. A sequence
 * also ends early at the end of the text or at a byte that is not a
 * continuation byte, so that invalid UTF-8 never swallows a following
 * character (such as an escaped space); byte fallback then keeps any invalid
 * input lossless. */
static size_t spm_char_len(const uint8_t *p, size_t n)
{
    static const uint8_t by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t want = SL_MIN((size_t)by_high_nibble[p[0] >> 4], n), len = 1;
    while (len < want && (p[len] & 0xC0) == 0x80)
        len++;
    return len;
}

/* The byte-level BPE alphabet: printable ASCII and most of Latin-1 stand for
 * themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen)
 * take code points 256.. in byte order, so every byte is a visible character. */
static void bpe_byte_cps(uint32_t cp[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        cp[b] = self ? (uint32_t)b : next++;
    }
}

/* ------------------------------------------------------------ string map */

static uint64_t map_hash(const char *s, size_t n)
{
    return sl_hash64(s, n, 0x736c746bu);
}

static int map_init(tok_map *m, size_t n_keys)
{
    size_t cap = 16;
    while (cap < n_keys * 2)
        cap <<= 1;
    m->slots = sl_calloc(cap, sizeof *m->slots);
    if (!m->slots)
        return SL_ENOMEM;
    m->mask = cap - 1;
    return 0;
}

static void map_free(tok_map *m)
{
    sl_free(m->slots);
    m->slots = NULL;
}

/* Sets key -> val, replacing an existing value. The map never fills: it was
 * sized for at least twice the number of keys. */
static void map_put(tok_map *m, const char *key, uint32_t klen, int32_t val)
{
    size_t i = (size_t)map_hash(key, klen) & m->mask;
    while (m->slots[i].key) {
        if (m->slots[i].klen == klen && memcmp(m->slots[i].key, key, klen) == 0) {
            m->slots[i].val = val;
            return;
        }
        i = (i + 1) & m->mask;
    }
    m->slots[i] = (tok_map_slot){key, klen, val};
}

static int32_t map_get(const tok_map *m, const char *key, size_t klen)
{
    if (!m->slots || klen > UINT32_MAX)
        return -1;
    size_t i = (size_t)map_hash(key, klen) & m->mask;
    while (m->slots[i].key) {
        if (m->slots[i].klen == klen && memcmp(m->slots[i].key, key, klen) == 0)
            return m->slots[i].val;
        i = (i + 1) & m->mask;
    }
    return -1;
}

/* ------------------------------------------------------------- creation */

static void *pcre_alloc(PCRE2_SIZE n, void *ud)
{
    SL_UNUSED(ud);
    return sl_malloc(n);
}

static void pcre_free(void *p, void *ud)
{
    SL_UNUSED(ud);
    sl_free(p);
}

/* The pre-tokenizer patterns. Whitespace is spelled out as the Unicode
 * White_Space set rather than \s so that the split does not depend on how the
 * regex library defines \s. The contractions of the Llama-3 style patterns are
 * ASCII case-insensitive only (no Unicode case folding of 's' etc.). */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define CONTRACTIONS_CI "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"

static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char PAT_LLAMA3[] =
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char PAT_QWEN2[] =
    CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
    "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static int parse_pre(const char *pre, tok_pre *out)
{
    static const struct {
        const char *name;
        tok_pre pre;
    } names[] = {
        {"default", TOK_PRE_GPT2},    {"gpt2", TOK_PRE_GPT2},       {"llama-bpe", TOK_PRE_LLAMA3},
        {"llama3", TOK_PRE_LLAMA3},   {"smaug-bpe", TOK_PRE_LLAMA3}, {"qwen2", TOK_PRE_QWEN2},
    };
    if (!pre) {
        *out = TOK_PRE_GPT2;
        return 0;
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        if (strcmp(pre, names[i].name) == 0) {
            *out = names[i].pre;
            return 0;
        }
    }
    return SL_EUNSUPPORTED;
}

static int compile_regex(sl_tokenizer *t, char *err, size_t errlen)
{
    const char *pat = t->pre == TOK_PRE_LLAMA3 ? PAT_LLAMA3 : t->pre == TOK_PRE_QWEN2 ? PAT_QWEN2 : PAT_GPT2;
    t->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
    if (!t->gctx)
        return SL_ENOMEM;
    pcre2_compile_context *cctx = pcre2_compile_context_create(t->gctx);
    if (!cctx)
        return SL_ENOMEM;
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    t->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff, cctx);
    pcre2_compile_context_free(cctx);
    if (!t->re) {
        char msg[128];
        pcre2_get_error_message(ecode, (PCRE2_UCHAR *)msg, sizeof msg);
        snprintf(err, errlen, "tokenizer: pre-tokenizer regex failed to compile at %zu: %s", (size_t)eoff,
                 msg);
        return SL_EINVAL;
    }
    /* JIT is an optimisation only: the interpreter gives the same matches. */
    if (pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) != 0)
        sl_debug("tokenizer: PCRE2 JIT unavailable, using the interpreter");
    return 0;
}

/* SPM byte tokens are spelled "<0xNN>" with two upper-case hex digits. */
static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Fills piece_* with the bytes each token stands for. An SPM normal token
 * turns U+2581 into spaces; a byte token is its byte; a BPE normal token maps
 * each character of the byte alphabet back to its byte (characters outside
 * the alphabet are kept as they are). Control, user-defined, unknown and
 * unused tokens are their text. */
static int build_pieces(sl_tokenizer *t)
{
    size_t total = t->text_off[t->n_vocab]; /* pieces are never longer than texts */
    t->piece_blob = sl_malloc(total + 1);
    t->piece_off = sl_malloc((t->n_vocab + 1) * sizeof *t->piece_off);
    t->piece_len = sl_malloc(t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_blob || !t->piece_off || !t->piece_len)
        return SL_ENOMEM;
    int32_t rev[324];
    uint32_t cps[256];
    bpe_byte_cps(cps);
    for (int i = 0; i < 324; i++)
        rev[i] = -1;
    for (int b = 0; b < 256; b++)
        rev[cps[b]] = b;

    size_t at = 0;
    for (size_t i = 0; i < t->n_vocab; i++) {
        const char *s = t->text_blob + t->text_off[i];
        size_t n = t->text_len[i];
        char *o = t->piece_blob + at;
        size_t on = 0;
        uint8_t ty = t->types[i];
        bool plain = ty == SL_TOK_TYPE_NORMAL || ty == SL_TOK_TYPE_UNDEFINED || ty == SL_TOK_TYPE_BYTE;
        int byte = t->kind == SL_TOK_SPM && ty == SL_TOK_TYPE_BYTE ? parse_byte_token(s, n) : -1;
        if (byte >= 0) {
            o[on++] = (char)byte;
        } else if (!plain) {
            memcpy(o, s, n);
            on = n;
        } else if (t->kind == SL_TOK_SPM) {
            for (size_t k = 0; k < n;) {
                if (k + 3 <= n && memcmp(s + k, "\xE2\x96\x81", 3) == 0) {
                    o[on++] = ' ';
                    k += 3;
                } else {
                    o[on++] = s[k++];
                }
            }
        } else {
            for (size_t k = 0; k < n;) {
                uint32_t cp;
                size_t l = utf8_next((const uint8_t *)s + k, n - k, &cp);
                if (l == 0) {
                    o[on++] = s[k++];
                } else if (cp < 324 && rev[cp] >= 0) {
                    o[on++] = (char)rev[cp];
                    k += l;
                } else {
                    memcpy(o + on, s + k, l);
                    on += l;
                    k += l;
                }
            }
        }
        t->piece_off[i] = at;
        t->piece_len[i] = (uint32_t)on;
        at += on;
    }
    t->piece_off[t->n_vocab] = at;
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ud)
{
    const sl_tokenizer *t = ud;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->text_len[x] != t->text_len[y])
        return t->text_len[x] > t->text_len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int check_id(const char *what, int32_t id, size_t n, char *err, size_t errlen)
{
    if (id < -1 || (id >= 0 && (size_t)id >= n)) {
        snprintf(err, errlen, "tokenizer: %s %d is outside the vocabulary [0, %zu)", what, id, n);
        return SL_EINVAL;
    }
    return 0;
}

int sl_tok_create(const sl_tok_vocab *v, sl_tokenizer **out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0)
        err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    *out = NULL;
    if (!v || v->n_tokens == 0 || !v->tokens) {
        snprintf(err, errlen, "tokenizer: the vocabulary is empty (tokenizer.ggml.tokens)");
        return SL_EINVAL;
    }
    if (v->kind != SL_TOK_SPM && v->kind != SL_TOK_BPE) {
        snprintf(err, errlen, "tokenizer: unknown tokenizer kind %d", (int)v->kind);
        return SL_EINVAL;
    }
    if (v->n_tokens > INT32_MAX || v->n_merges > INT32_MAX) {
        snprintf(err, errlen, "tokenizer: too many tokens (%zu) or merges (%zu)", v->n_tokens, v->n_merges);
        return SL_EINVAL;
    }
    if (v->n_merges > 0 && !v->merges) {
        snprintf(err, errlen, "tokenizer: %zu merges declared but none given", v->n_merges);
        return SL_EINVAL;
    }
    tok_pre pre = TOK_PRE_GPT2;
    if (v->kind == SL_TOK_BPE && parse_pre(v->pre, &pre) != 0) {
        snprintf(err, errlen,
                 "tokenizer: unsupported pre-tokenizer tokenizer.ggml.pre = \"%s\"; supported: "
                 "default, gpt2, llama-bpe, llama3, smaug-bpe, qwen2",
                 v->pre);
        return SL_EUNSUPPORTED;
    }
    int rc;
    if ((rc = check_id("bos_id", v->bos_id, v->n_tokens, err, errlen)) ||
        (rc = check_id("eos_id", v->eos_id, v->n_tokens, err, errlen)) ||
        (rc = check_id("eot_id", v->eot_id, v->n_tokens, err, errlen)) ||
        (rc = check_id("unk_id", v->unk_id, v->n_tokens, err, errlen)) ||
        (rc = check_id("pad_id", v->pad_id, v->n_tokens, err, errlen)))
        return rc;

    sl_tokenizer *t = sl_calloc(1, sizeof *t);
    if (!t)
        return SL_ENOMEM;
    t->kind = v->kind;
    t->pre = pre;
    t->n_vocab = v->n_tokens;
    t->bos_id = v->bos_id, t->eos_id = v->eos_id, t->eot_id = v->eot_id;
    t->unk_id = v->unk_id, t->pad_id = v->pad_id;
    t->add_bos = v->add_bos && v->bos_id >= 0;
    t->add_space_prefix = v->add_space_prefix;
    t->ignore_merges = v->kind == SL_TOK_BPE && pre == TOK_PRE_LLAMA3;
    rc = SL_ENOMEM;

    /* token texts */
    size_t total = 0;
    for (size_t i = 0; i < v->n_tokens; i++) {
        if (!v->tokens[i]) {
            snprintf(err, errlen, "tokenizer: token %zu has no text", i);
            rc = SL_EINVAL;
            goto fail;
        }
        size_t l = strlen(v->tokens[i]);
        if (l > UINT32_MAX) {
            snprintf(err, errlen, "tokenizer: token %zu is too long", i);
            rc = SL_EINVAL;
            goto fail;
        }
        total += l;
    }
    t->text_blob = sl_malloc(total + 1);
    t->text_off = sl_malloc((v->n_tokens + 1) * sizeof *t->text_off);
    t->text_len = sl_malloc(v->n_tokens * sizeof *t->text_len);
    t->scores = sl_calloc(v->n_tokens, sizeof *t->scores);
    t->types = sl_malloc(v->n_tokens);
    if (!t->text_blob || !t->text_off || !t->text_len || !t->scores || !t->types)
        goto fail;
    size_t at = 0;
    for (size_t i = 0; i < v->n_tokens; i++) {
        size_t l = strlen(v->tokens[i]);
        memcpy(t->text_blob + at, v->tokens[i], l);
        t->text_off[i] = at;
        t->text_len[i] = (uint32_t)l;
        at += l;
        /* a NaN score (corrupt file) would break the merge order: rank it last */
        if (v->scores)
            t->scores[i] = isnan(v->scores[i]) ? -INFINITY : v->scores[i];
        int32_t ty = v->types ? v->types[i] : SL_TOK_TYPE_NORMAL;
        if (ty < SL_TOK_TYPE_UNDEFINED || ty > SL_TOK_TYPE_BYTE)
            ty = SL_TOK_TYPE_NORMAL;
        /* Without a type array, SPM byte tokens are recognised by spelling. */
        if (!v->types && v->kind == SL_TOK_SPM && parse_byte_token(v->tokens[i], l) >= 0)
            ty = SL_TOK_TYPE_BYTE;
        t->types[i] = (uint8_t)ty;
    }
    t->text_off[v->n_tokens] = at;

    if (map_init(&t->vocab, v->n_tokens) != 0)
        goto fail;
    for (size_t i = 0; i < v->n_tokens; i++)
        map_put(&t->vocab, t->text_blob + t->text_off[i], t->text_len[i], (int32_t)i);

    /* merges: each "left right" string is kept whole as the key; the split is
     * at the first space after the first byte (a left part is never empty) */
    if (v->kind == SL_TOK_BPE && v->n_merges > 0) {
        size_t mtotal = 0;
        for (size_t i = 0; i < v->n_merges; i++) {
            const char *m = v->merges[i];
            const char *sp = m && m[0] ? strchr(m + 1, ' ') : NULL;
            if (!sp) {
                snprintf(err, errlen, "tokenizer: merge %zu (\"%s\") is not of the form \"left right\"", i,
                         m ? m : "(null)");
                rc = SL_EINVAL;
                goto fail;
            }
            mtotal += strlen(m);
        }
        t->merge_blob = sl_malloc(mtotal + 1);
        if (!t->merge_blob || map_init(&t->merges, v->n_merges) != 0)
            goto fail;
        size_t mat = 0;
        for (size_t i = 0; i < v->n_merges; i++) {
            size_t l = strlen(v->merges[i]);
            memcpy(t->merge_blob + mat, v->merges[i], l);
            /* the lowest rank of a duplicated merge wins */
            if (map_get(&t->merges, t->merge_blob + mat, l) < 0)
                map_put(&t->merges, t->merge_blob + mat, (uint32_t)l, (int32_t)i);
            mat += l;
        }
    }

    /* byte fallback table */
    uint32_t *cps = t->byte_cp;
    bpe_byte_cps(cps);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id = -1;
        if (v->kind == SL_TOK_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = map_get(&t->vocab, buf, 6);
            if (id < 0) {
                buf[0] = (char)b;
                id = map_get(&t->vocab, buf, 1);
            }
        } else {
            id = map_get(&t->vocab, buf, utf8_put(cps[b], buf));
        }
        t->byte_tok[b] = id;
    }

    if (build_pieces(t) != 0)
        goto fail;

    /* special tokens */
    t->special = sl_malloc(v->n_tokens * sizeof *t->special);
    if (!t->special)
        goto fail;
    for (size_t i = 0; i < v->n_tokens; i++) {
        uint8_t ty = t->types[i];
        if ((ty == SL_TOK_TYPE_CONTROL || ty == SL_TOK_TYPE_USER_DEFINED || ty == SL_TOK_TYPE_UNKNOWN) &&
            t->text_len[i] > 0)
            t->special[t->n_special++] = (int32_t)i;
    }
    qsort_r(t->special, t->n_special, sizeof *t->special, cmp_special, t);

    if (v->kind == SL_TOK_BPE && (rc = compile_regex(t, err, errlen)) != 0)
        goto fail;
    *out = t;
    return 0;

fail:
    if (rc == SL_ENOMEM && !err[0])
        snprintf(err, errlen, "tokenizer: out of memory building a vocabulary of %zu tokens", v->n_tokens);
    sl_tok_destroy(t);
    return rc;
}

void sl_tok_destroy(sl_tokenizer *t)
{
    if (!t)
        return;
    if (t->re)
        pcre2_code_free(t->re);
    if (t->gctx)
        pcre2_general_context_free(t->gctx);
    map_free(&t->vocab);
    map_free(&t->merges);
    sl_free(t->merge_blob);
    sl_free(t->text_blob);
    sl_free(t->text_off);
    sl_free(t->text_len);
    sl_free(t->piece_blob);
    sl_free(t->piece_off);
    sl_free(t->piece_len);
    sl_free(t->scores);
    sl_free(t->types);
    sl_free(t->special);
    sl_free(t);
}

/* ------------------------------------------------------------- encoding */

typedef struct idvec {
    int32_t *v;
    size_t n, cap;
} idvec;

static int idvec_push(idvec *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *nv = sl_realloc(o->v, cap * sizeof *nv);
        if (!nv)
            return SL_ENOMEM;
        o->v = nv, o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

/* A symbol is a run text[off .. off+n) of the word being merged; n == 0 once
 * it has been merged into its left neighbour. */
typedef struct sym {
    size_t off;
    size_t n;
    int32_t prev, next;
} sym;

typedef struct bigram {
    double key; /* smaller merges first: -score (SPM) or rank (BPE) */
    int32_t left, right;
    size_t size; /* bytes of left+right when queued; stale if it differs */
} bigram;

/* Scratch reused across the words of one encode call. */
typedef struct session {
    const sl_tokenizer *t;
    sym *syms;
    size_t n_syms, cap_syms;
    bigram *heap;
    size_t n_heap, cap_heap;
    char *buf; /* BPE: the word in the byte alphabet; SPM: the escaped fragment */
    size_t n_buf, cap_buf;
    char *key; /* BPE merge lookup key "left right" */
    size_t cap_key;
} session;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *np = sl_realloc(*p, c * elem);
    if (!np)
        return SL_ENOMEM;
    *p = np, *cap = c;
    return 0;
}

static bool bigram_before(const bigram *a, const bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(session *s, bigram b)
{
    if (grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof *s->heap))
        return SL_ENOMEM;
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
    return 0;
}

static bigram heap_pop(session *s)
{
    bigram top = s->heap[0];
    bigram last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!bigram_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) if it may merge: for SPM when the joined text
 * is a token (key -score), for BPE when "left right" is a merge (key rank). */
static int try_bigram(session *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const sym *l = &s->syms[left], *r = &s->syms[right];
    double key;
    if (s->t->kind == SL_TOK_SPM) {
        int32_t id = map_get(&s->t->vocab, s->buf + l->off, l->n + r->n);
        if (id < 0)
            return 0;
        key = -(double)s->t->scores[id];
    } else {
        size_t kn = l->n + 1 + r->n;
        if (grow((void **)&s->key, &s->cap_key, kn, 1))
            return SL_ENOMEM;
        memcpy(s->key, s->buf + l->off, l->n);
        s->key[l->n] = ' ';
        memcpy(s->key + l->n + 1, s->buf + r->off, r->n);
        int32_t rank = map_get(&s->t->merges, s->key, kn);
        if (rank < 0)
            return 0;
        key = (double)rank;
    }
    return heap_push(s, (bigram){key, left, right, l->n + r->n});
}

/* Merges the symbols of s->buf until no queued pair applies. */
static int merge_symbols(session *s)
{
    s->n_heap = 0;
    for (size_t i = 1; i < s->n_syms; i++) {
        if (try_bigram(s, (int32_t)i - 1, (int32_t)i))
            return SL_ENOMEM;
    }
    while (s->n_heap > 0) {
        bigram b = heap_pop(s);
        sym *l = &s->syms[b.left], *r = &s->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* one side changed since this pair was queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->syms[r->next].prev = b.left;
        if (try_bigram(s, l->prev, b.left) || try_bigram(s, b.left, l->next))
            return SL_ENOMEM;
    }
    return 0;
}

static int push_unk(session *s, idvec *o)
{
    if (s->t->unk_id < 0)
        return SL_ENOTFOUND;
    return idvec_push(o, s->t->unk_id);
}

/* Emits the surviving symbols: whole tokens where the vocabulary has them,
 * otherwise SPM falls back to one byte token per byte (or unk for the whole
 * character), BPE to one token per byte-alphabet character (or unk). */
static int emit_symbols(session *s, idvec *o)
{
    const sl_tokenizer *t = s->t;
    for (int32_t i = s->n_syms ? 0 : -1; i >= 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        const char *p = s->buf + y->off;
        int32_t id = map_get(&t->vocab, p, y->n);
        int rc = 0;
        if (id >= 0) {
            rc = idvec_push(o, id);
        } else if (t->kind == SL_TOK_SPM) {
            bool all = true;
            for (size_t k = 0; k < y->n; k++)
                all = all && t->byte_tok[(uint8_t)p[k]] >= 0;
            for (size_t k = 0; all && k < y->n && rc == 0; k++)
                rc = idvec_push(o, t->byte_tok[(uint8_t)p[k]]);
            if (!all)
                rc = push_unk(s, o);
        } else {
            for (size_t k = 0; k < y->n && rc == 0;) {
                uint32_t cp;
                size_t l = utf8_next((const uint8_t *)p + k, y->n - k, &cp);
                l = l ? l : 1; /* the alphabet is valid UTF-8; be safe anyway */
                int32_t c = map_get(&t->vocab, p + k, l);
                rc = c >= 0 ? idvec_push(o, c) : push_unk(s, o);
                k += l;
            }
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Splits s->buf[0..n_buf) into symbols of at least one byte each, one per
 * character (SPM) or per byte-alphabet character (BPE, widths given). */
static int make_symbols(session *s, const uint8_t *widths)
{
    if (grow((void **)&s->syms, &s->cap_syms, s->n_buf, sizeof *s->syms))
        return SL_ENOMEM;
    s->n_syms = 0;
    for (size_t off = 0, k = 0; off < s->n_buf; k++) {
        size_t n = widths ? widths[k] : spm_char_len((const uint8_t *)s->buf + off, s->n_buf - off);
        int32_t i = (int32_t)s->n_syms++;
        s->syms[i] = (sym){off, n, i - 1, -1};
        if (i > 0)
            s->syms[i - 1].next = i;
        off += n;
    }
    return 0;
}

/* SPM: one text fragment, spaces escaped, optionally with a leading space. */
static int encode_spm_fragment(session *s, const char *p, size_t n, bool space_prefix, idvec *o)
{
    size_t spaces = space_prefix;
    for (size_t i = 0; i < n; i++)
        spaces += p[i] == ' ';
    if (grow((void **)&s->buf, &s->cap_buf, n + 2 * spaces + 1, 1))
        return SL_ENOMEM;
    size_t at = 0;
    if (space_prefix) {
        memcpy(s->buf, "\xE2\x96\x81", 3);
        at = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(s->buf + at, "\xE2\x96\x81", 3);
            at += 3;
        } else {
            s->buf[at++] = p[i];
        }
    }
    s->n_buf = at;
    int rc = make_symbols(s, NULL);
    if (rc == 0)
        rc = merge_symbols(s);
    if (rc == 0)
        rc = emit_symbols(s, o);
    return rc;
}

/* BPE: one pre-token's bytes, mapped into the byte alphabet and merged. */
static int encode_bpe_word(session *s, const uint8_t *p, size_t n, uint8_t *widths, idvec *o)
{
    if (grow((void **)&s->buf, &s->cap_buf, 2 * n + 1, 1))
        return SL_ENOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        widths[i] = (uint8_t)utf8_put(s->t->byte_cp[p[i]], s->buf + at);
        at += widths[i];
    }
    s->n_buf = at;
    if (s->t->ignore_merges) {
        int32_t id = map_get(&s->t->vocab, s->buf, at);
        if (id >= 0)
            return idvec_push(o, id);
    }
    int rc = make_symbols(s, widths);
    if (rc == 0)
        rc = merge_symbols(s);
    if (rc == 0)
        rc = emit_symbols(s, o);
    return rc;
}

static int encode_bpe_fragment(session *s, pcre2_match_data *md, const char *p, size_t n, idvec *o)
{
    uint8_t *widths = sl_malloc(n + 1);
    if (!widths)
        return SL_ENOMEM;
    int rc = 0;
    size_t off = 0;
    while (off < n && rc == 0) {
        int m = pcre2_match(s->t->re, (PCRE2_SPTR)p, n, off, 0, md, NULL);
        size_t start = n, end = n;
        if (m >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            start = ov[0], end = ov[1];
        } else if (m != PCRE2_ERROR_NOMATCH) {
            rc = SL_EINVAL; /* a resource limit of the regex engine */
            break;
        }
        /* Bytes the pattern cannot match are invalid UTF-8; each such run is
         * its own pre-token, so byte-level encoding stays lossless. */
        if (start > off)
            rc = encode_bpe_word(s, (const uint8_t *)p + off, start - off, widths, o);
        if (rc == 0 && end > start)
            rc = encode_bpe_word(s, (const uint8_t *)p + start, end - start, widths, o);
        off = end > start ? end : SL_MAX(start + 1, off + 1);
    }
    sl_free(widths);
    return rc;
}

/* A fragment of the input: plain text p[off..off+len) or one token id. */
typedef struct frag {
    int32_t id; /* -1 for text */
    size_t off, len;
} frag;

/* Cuts text fragments at every occurrence of each enabled special token, in
 * the order of t->special (longest first), so a longer special wins over a
 * shorter one that overlaps it. */
static int partition(const sl_tokenizer *t, const char *p, size_t n, bool parse_special, frag **out,
                     size_t *n_out)
{
    size_t cap = 8, nf = 0;
    frag *f = sl_malloc(cap * sizeof *f);
    if (!f)
        return SL_ENOMEM;
    if (n > 0)
        f[nf++] = (frag){-1, 0, n};
    for (size_t si = 0; si < t->n_special && n > 0; si++) {
        int32_t id = t->special[si];
        uint8_t ty = t->types[id];
        if (!parse_special && (ty == SL_TOK_TYPE_CONTROL || ty == SL_TOK_TYPE_UNKNOWN))
            continue;
        const char *tx = t->text_blob + t->text_off[id];
        size_t tl = t->text_len[id];
        if (!memmem(p, n, tx, tl))
            continue;
        for (size_t fi = 0; fi < nf; fi++) {
            if (f[fi].id >= 0)
                continue;
            const char *hit = memmem(p + f[fi].off, f[fi].len, tx, tl);
            if (!hit)
                continue;
            /* replace f[fi] by: text before, the token, text after (the
             * remainder is examined again on the next iteration) */
            size_t start = f[fi].off, end = f[fi].off + f[fi].len, at = (size_t)(hit - p);
            if (nf + 2 > cap) {
                cap *= 2;
                frag *nfr = sl_realloc(f, cap * sizeof *f);
                if (!nfr) {
                    sl_free(f);
                    return SL_ENOMEM;
                }
                f = nfr;
            }
            frag parts[3];
            size_t np = 0;
            if (at > start)
                parts[np++] = (frag){-1, start, at - start};
            parts[np++] = (frag){id, at, tl};
            if (at + tl < end)
                parts[np++] = (frag){-1, at + tl, end - at - tl};
            memmove(f + fi + np, f + fi + 1, (nf - fi - 1) * sizeof *f);
            memcpy(f + fi, parts, np * sizeof *f);
            nf += np - 1;
            fi += (at > start) ? 1 : 0; /* now at the token; the loop steps past it */
        }
    }
    *out = f;
    *n_out = nf;
    return 0;
}

int sl_tok_encode(const sl_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                  int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (len > SL_TOK_MAX_TEXT)
        return SL_ETOOBIG;
    if (len > 0 && !text)
        return SL_EINVAL;
    idvec o = {0};
    session s = {.t = t};
    frag *f = NULL;
    size_t nf = 0;
    pcre2_match_data *md = NULL;
    int rc = partition(t, text, len, parse_special, &f, &nf);
    if (rc)
        goto done;
    if (t->kind == SL_TOK_BPE) {
        md = pcre2_match_data_create_from_pattern(t->re, t->gctx);
        if (!md) {
            rc = SL_ENOMEM;
            goto done;
        }
    }
    if (add_bos && t->add_bos && (rc = idvec_push(&o, t->bos_id)))
        goto done;
    /* SPM puts a space before the text at the start and after each special
     * token, as SentencePiece would when the text were encoded alone. */
    bool prev_special = true;
    for (size_t i = 0; i < nf && rc == 0; i++) {
        if (f[i].id >= 0) {
            rc = idvec_push(&o, f[i].id);
            prev_special = true;
        } else if (t->kind == SL_TOK_SPM) {
            rc = encode_spm_fragment(&s, text + f[i].off, f[i].len, t->add_space_prefix && prev_special, &o);
            prev_special = false;
        } else {
            rc = encode_bpe_fragment(&s, md, text + f[i].off, f[i].len, &o);
        }
    }
done:
    if (md)
        pcre2_match_data_free(md);
    sl_free(f);
    sl_free(s.syms);
    sl_free(s.heap);
    sl_free(s.buf);
    sl_free(s.key);
    if (rc == 0 && !o.v)
        o.v = sl_malloc(0);
    if (rc == 0 && !o.v)
        rc = SL_ENOMEM;
    if (rc) {
        sl_free(o.v);
        return rc;
    }
    *ids = o.v;
    *n = o.n;
    return 0;
}

/* ------------------------------------------------------------- lookups */

int sl_tok_piece(const sl_tokenizer *t, int32_t id, char *out, size_t cap, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_vocab)
        return SL_ERANGE;
    size_t l = t->piece_len[id];
    *len = l;
    if (l > cap)
        return SL_ETOOBIG;
    if (l > 0)
        memcpy(out, t->piece_blob + t->piece_off[id], l);
    return 0;
}

int32_t sl_tok_find(const sl_tokenizer *t, const char *s, size_t n)
{
    return map_get(&t->vocab, s, n);
}

size_t sl_tok_n_vocab(const sl_tokenizer *t) { return t->n_vocab; }
sl_tok_kind sl_tok_get_kind(const sl_tokenizer *t) { return t->kind; }
int32_t sl_tok_bos(const sl_tokenizer *t) { return t->bos_id; }
int32_t sl_tok_eos(const sl_tokenizer *t) { return t->eos_id; }
int32_t sl_tok_eot(const sl_tokenizer *t) { return t->eot_id; }

bool sl_tok_adds_bos(const sl_tokenizer *t) { return t->add_bos; }

bool sl_tok_is_eog(const sl_tokenizer *t, int32_t id)
{
    return id >= 0 && (id == t->eos_id || id == t->eot_id);
}

int sl_tok_type(const sl_tokenizer *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->n_vocab)
        return -1;
    return t->types[id];
}
