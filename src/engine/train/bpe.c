/* engine/train: learns a byte-level BPE vocabulary from a corpus.
 *
 * The text is cut at the special tokens, split into pre-tokens by the GPT-2
 * pattern (the one the engine's tokenizer applies for pre = "default"), and
 * the distinct pre-tokens are counted. Each starts as its bytes (token ids
 * 0..255 are the bytes, spelled in the GPT-2 byte-to-unicode alphabet); each
 * round merges the most frequent adjacent pair everywhere (ties: the lowest
 * left id, then the lowest right id), so the merge list's order is its rank
 * and the engine's rank-ordered merging reproduces the training splits. */
#include "engine/train/train.h"
#include "engine/tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char PAT_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                               "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* ---- a counting map from byte strings (distinct pre-tokens) ---- */
typedef struct word {
    int32_t *sym;   /* current symbols */
    int n_sym;
    uint64_t count;
} word;

typedef struct wmap {
    char **keys;
    size_t *lens;
    int64_t *idx;   /* slot -> word index, -1 empty */
    size_t mask;
    word *words;
    size_t n_words, cap_words;
} wmap;

static int wmap_grow(wmap *m)
{
    size_t cap = m->mask ? (m->mask + 1) * 2 : 4096;
    int64_t *idx = sl_malloc(cap * sizeof *idx);
    if (!idx)
        return SL_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        idx[i] = -1;
    for (size_t w = 0; w < m->n_words; w++) {
        size_t h = sl_hash64(m->keys[w], m->lens[w], 7) & (cap - 1);
        while (idx[h] >= 0)
            h = (h + 1) & (cap - 1);
        idx[h] = (int64_t)w;
    }
    sl_free(m->idx);
    m->idx = idx;
    m->mask = cap - 1;
    return 0;
}

static int wmap_add(wmap *m, const char *s, size_t n)
{
    if ((m->n_words + 1) * 2 > m->mask + 1 && wmap_grow(m))
        return SL_ENOMEM;
    size_t h = sl_hash64(s, n, 7) & m->mask;
    while (m->idx[h] >= 0) {
        size_t w = (size_t)m->idx[h];
        if (m->lens[w] == n && !memcmp(m->keys[w], s, n)) {
            m->words[w].count++;
            return 0;
        }
        h = (h + 1) & m->mask;
    }
    if (m->n_words == m->cap_words) {
        size_t nc = m->cap_words ? m->cap_words * 2 : 4096;
        char **k = sl_realloc(m->keys, nc * sizeof *k);
        if (!k)
            return SL_ENOMEM;
        m->keys = k;
        size_t *l = sl_realloc(m->lens, nc * sizeof *l);
        if (!l)
            return SL_ENOMEM;
        m->lens = l;
        word *wd = sl_realloc(m->words, nc * sizeof *wd);
        if (!wd)
            return SL_ENOMEM;
        m->words = wd;
        m->cap_words = nc;
    }
    size_t w = m->n_words;
    m->keys[w] = sl_malloc(n + 1);
    m->words[w].sym = sl_malloc((n ? n : 1) * sizeof(int32_t));
    if (!m->keys[w] || !m->words[w].sym) {
        sl_free(m->keys[w]);
        sl_free(m->words[w].sym);
        return SL_ENOMEM;
    }
    memcpy(m->keys[w], s, n);
    m->lens[w] = n;
    for (size_t i = 0; i < n; i++)
        m->words[w].sym[i] = (uint8_t)s[i];
    m->words[w].n_sym = (int)n;
    m->words[w].count = 1;
    m->idx[h] = (int64_t)w;
    m->n_words++;
    return 0;
}

static void wmap_free(wmap *m)
{
    for (size_t w = 0; w < m->n_words; w++) {
        sl_free(m->keys[w]);
        sl_free(m->words[w].sym);
    }
    sl_free(m->keys);
    sl_free(m->lens);
    sl_free(m->idx);
    sl_free(m->words);
}

/* ---- pair counts: open addressing on (left << 32 | right) ---- */
typedef struct pmap {
    uint64_t *key; /* UINT64_MAX: empty */
    uint64_t *cnt;
    size_t mask, n;
} pmap;

static int pmap_reset(pmap *p, size_t want)
{
    size_t cap = 1024;
    while (cap < want * 2)
        cap <<= 1;
    if (cap != p->mask + 1 || !p->key) {
        sl_free(p->key);
        sl_free(p->cnt);
        p->key = sl_malloc(cap * sizeof *p->key);
        p->cnt = sl_malloc(cap * sizeof *p->cnt);
        if (!p->key || !p->cnt)
            return SL_ENOMEM;
        p->mask = cap - 1;
    }
    memset(p->key, 0xff, (p->mask + 1) * sizeof *p->key);
    p->n = 0;
    return 0;
}

static void pmap_add(pmap *p, uint64_t k, uint64_t c)
{
    size_t h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & p->mask;
    while (p->key[h] != UINT64_MAX && p->key[h] != k)
        h = (h + 1) & p->mask;
    if (p->key[h] == UINT64_MAX) {
        p->key[h] = k;
        p->cnt[h] = 0;
        p->n++;
    }
    p->cnt[h] += c;
}

/* ---- byte alphabet ---- */
static void byte_cps(uint32_t cp[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        cp[b] = self ? (uint32_t)b : next++;
    }
}

static int put_utf8(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    o[0] = (char)(0xC0 | (c >> 6));
    o[1] = (char)(0x80 | (c & 0x3F));
    return 2; /* the alphabet stays below U+0800 */
}

void sl_train_vocab_free(sl_train_vocab *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n_tokens && v->tokens; i++)
        sl_free(v->tokens[i]);
    for (int i = 0; i < v->n_merges && v->merges; i++)
        sl_free(v->merges[i]);
    sl_free(v->tokens);
    sl_free(v->types);
    sl_free(v->merges);
    memset(v, 0, sizeof *v);
}

/* Splits text[0..len) (no specials inside) into pre-tokens and counts them. */
static int count_pretokens(pcre2_code *re, pcre2_match_data *md, const char *p, size_t n, wmap *m)
{
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)p, n, off, 0, md, NULL);
        size_t s, e;
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            s = ov[0], e = ov[1];
        } else {
            s = e = n; /* the rest cannot match (invalid UTF-8): one piece */
        }
        if (s > off && wmap_add(m, p + off, s - off))
            return SL_ENOMEM;
        if (e == s) {
            if (s >= n)
                break;
            e = s + 1;
        }
        if (wmap_add(m, p + s, e - s))
            return SL_ENOMEM;
        off = e;
    }
    return 0;
}

int sl_train_bpe(const char *text, size_t len, int n_vocab, sl_train_vocab *v, char *err,
                 size_t errlen)
{
    memset(v, 0, sizeof *v);
    if (n_vocab < 259 + 1 || n_vocab > SL_TRAIN_MAX_VOCAB) {
        snprintf(err, errlen, "tokenizer: vocabulary size %d out of range 260..%d", n_vocab,
                 SL_TRAIN_MAX_VOCAB);
        return SL_EINVAL;
    }
    int rc = SL_ENOMEM, ecode;
    PCRE2_SIZE eoff;
    wmap m = {0};
    pmap pm = {0};
    pcre2_match_data *md = NULL;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)PAT_GPT2, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff,
                                   NULL);
    if (!re) {
        snprintf(err, errlen, "tokenizer: pattern did not compile (%d)", ecode);
        return SL_EINVAL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        goto out;

    /* pre-tokens of the text between special tokens */
    static const char *const specials[3] = {SL_TRAIN_TOK_ENDOFTEXT, SL_TRAIN_TOK_IM_START,
                                            SL_TRAIN_TOK_IM_END};
    size_t at = 0;
    while (at < len) {
        size_t next = len, skip = 0;
        const char *lt = memchr(text + at, '<', len - at);
        while (lt) {
            size_t o = (size_t)(lt - text);
            for (int s = 0; s < 3 && !skip; s++) {
                size_t sl = strlen(specials[s]);
                if (o + sl <= len && !memcmp(lt, specials[s], sl))
                    skip = sl;
            }
            if (skip) {
                next = o;
                break;
            }
            lt = o + 1 < len ? memchr(text + o + 1, '<', len - o - 1) : NULL;
        }
        if ((rc = count_pretokens(re, md, text + at, next - at, &m)))
            goto out;
        rc = SL_ENOMEM;
        at = next + skip;
    }

    /* tokens: bytes, then one per merge, then the specials */
    int max_merges = n_vocab - 259;
    v->tokens = sl_calloc((size_t)n_vocab, sizeof *v->tokens);
    v->types = sl_calloc((size_t)n_vocab, sizeof *v->types);
    v->merges = sl_calloc((size_t)max_merges + 1, sizeof *v->merges);
    if (!v->tokens || !v->types || !v->merges)
        goto out;
    uint32_t cps[256];
    byte_cps(cps);
    for (int b = 0; b < 256; b++) {
        char buf[4];
        int n = put_utf8(cps[b], buf);
        if (!(v->tokens[b] = sl_strndup(buf, (size_t)n)))
            goto out;
        v->types[b] = SL_TOK_TYPE_NORMAL;
        v->n_tokens = b + 1;
    }
    size_t total_sym = 0;
    for (size_t w = 0; w < m.n_words; w++)
        total_sym += (size_t)m.words[w].n_sym;
    for (int k = 0; k < max_merges; k++) {
        if (pmap_reset(&pm, total_sym + 1))
            goto out;
        for (size_t w = 0; w < m.n_words; w++) {
            const word *wd = &m.words[w];
            for (int i = 0; i + 1 < wd->n_sym; i++)
                pmap_add(&pm, (uint64_t)(uint32_t)wd->sym[i] << 32 | (uint32_t)wd->sym[i + 1],
                         wd->count);
        }
        uint64_t best = UINT64_MAX, best_n = 0;
        for (size_t h = 0; h <= pm.mask; h++)
            if (pm.key[h] != UINT64_MAX &&
                (pm.cnt[h] > best_n || (pm.cnt[h] == best_n && pm.key[h] < best)))
                best = pm.key[h], best_n = pm.cnt[h];
        if (best_n < 2)
            break; /* nothing worth merging: a smaller vocabulary */
        int32_t a = (int32_t)(best >> 32), b = (int32_t)(best & 0xffffffffu), id = v->n_tokens;
        size_t la = strlen(v->tokens[a]), lb = strlen(v->tokens[b]);
        char *tok = sl_malloc(la + lb + 1), *mg = sl_malloc(la + lb + 2);
        if (!tok || !mg) {
            sl_free(tok);
            sl_free(mg);
            goto out;
        }
        memcpy(tok, v->tokens[a], la);
        memcpy(tok + la, v->tokens[b], lb + 1);
        memcpy(mg, v->tokens[a], la);
        mg[la] = ' ';
        memcpy(mg + la + 1, v->tokens[b], lb + 1);
        v->tokens[id] = tok;
        v->types[id] = SL_TOK_TYPE_NORMAL;
        v->n_tokens++;
        v->merges[v->n_merges++] = mg;
        for (size_t w = 0; w < m.n_words; w++) {
            word *wd = &m.words[w];
            int o = 0;
            for (int i = 0; i < wd->n_sym; i++) {
                if (i + 1 < wd->n_sym && wd->sym[i] == a && wd->sym[i + 1] == b) {
                    wd->sym[o++] = id;
                    i++;
                } else {
                    wd->sym[o++] = wd->sym[i];
                }
            }
            total_sym -= (size_t)(wd->n_sym - o);
            wd->n_sym = o;
        }
    }
    for (int s = 0; s < 3; s++) {
        if (!(v->tokens[v->n_tokens] = sl_strdup(specials[s])))
            goto out;
        v->types[v->n_tokens] = SL_TOK_TYPE_CONTROL;
        v->n_tokens++;
    }
    v->bos_id = v->n_tokens - 3;
    v->eos_id = v->n_tokens - 1;
    v->eot_id = v->n_tokens - 1;
    rc = 0;
out:
    if (rc) {
        if (rc == SL_ENOMEM)
            snprintf(err, errlen, "tokenizer: out of memory");
        sl_train_vocab_free(v);
    }
    sl_free(pm.key);
    sl_free(pm.cnt);
    wmap_free(&m);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}
