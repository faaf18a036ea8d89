/* engine/model: builds a model's tokenizer from its tokenizer.ggml.* keys. */
#include "engine/model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Copies a string array into NUL-terminated strings (*out, count entries). */
static int copy_strs(sl_gguf_arr a, const char *key, char ***out, char *err, size_t errlen)
{
    if (a.type != SL_GGUF_STRING)
        return sl_errf(err, errlen, SL_EINVAL, "%s: expected an array of strings", key);
    char **s = sl_calloc(a.count ? a.count : 1, sizeof *s);
    if (!s)
        return SL_ENOMEM;
    for (uint64_t i = 0; i < a.count; i++) {
        sl_str v;
        sl_gguf_arr_get_str(a, i, &v);
        s[i] = sl_strndup(v.p, v.n);
        if (!s[i]) {
            for (uint64_t j = 0; j < i; j++)
                sl_free(s[j]);
            sl_free(s);
            return SL_ENOMEM;
        }
    }
    *out = s;
    return 0;
}

static void free_strs(char **s, uint64_t n)
{
    if (!s)
        return;
    for (uint64_t i = 0; i < n; i++)
        sl_free(s[i]);
    sl_free(s);
}

/* Reads an optional token id key: -1 when absent. */
static int get_id(const sl_gguf *g, const char *key, size_t n_tokens, int32_t *out, char *err,
                  size_t errlen)
{
    uint64_t v;
    int rc = sl_gguf_get_u64(g, key, &v);
    if (rc == SL_ENOTFOUND) {
        *out = -1;
        return 0;
    }
    if (rc || v >= n_tokens)
        return sl_errf(err, errlen, SL_EINVAL, "%s: expected a token id below %zu", key, n_tokens);
    *out = (int32_t)v;
    return 0;
}

int sl_model_tokenizer_load(const sl_gguf *g, sl_tokenizer **out, char *err, size_t errlen)
{
    *out = NULL;
    sl_tok_vocab v;
    memset(&v, 0, sizeof v);
    sl_str model;
    if (sl_gguf_get_str(g, "tokenizer.ggml.model", &model))
        return sl_errf(err, errlen, SL_EINVAL, "missing metadata key tokenizer.ggml.model");
    if (sl_str_eq_c(model, "llama"))
        v.kind = SL_TOK_SPM;
    else if (sl_str_eq_c(model, "gpt2"))
        v.kind = SL_TOK_BPE;
    else
        return sl_errf(err, errlen, SL_EUNSUPPORTED,
                     "tokenizer.ggml.model \"%.*s\" is not supported; supported: llama, gpt2",
                     (int)SL_MIN(model.n, 40), model.p);
    sl_gguf_arr toks, arr;
    if (sl_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks))
        return sl_errf(err, errlen, SL_EINVAL, "missing metadata key tokenizer.ggml.tokens");
    if (toks.count == 0 || toks.count > SL_MODEL_MAX_VOCAB)
        return sl_errf(err, errlen, SL_EINVAL, "tokenizer.ggml.tokens: expected 1..%d tokens",
                     SL_MODEL_MAX_VOCAB);
    v.n_tokens = (size_t)toks.count;

    char **tokens = NULL, **merges = NULL, *pre = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint64_t n_merges = 0;
    int rc = copy_strs(toks, "tokenizer.ggml.tokens", &tokens, err, errlen);
    if (rc)
        return rc;
    if (!sl_gguf_get_arr(g, "tokenizer.ggml.scores", &arr)) {
        if (arr.count != toks.count) {
            rc = sl_errf(err, errlen, SL_EINVAL,
                       "tokenizer.ggml.scores has %llu entries, expected %llu",
                       (unsigned long long)arr.count, (unsigned long long)toks.count);
            goto done;
        }
        scores = sl_malloc(sizeof *scores * v.n_tokens);
        if (!scores) {
            rc = SL_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < v.n_tokens; i++) {
            double d;
            if (sl_gguf_arr_get_f64(arr, i, &d)) {
                rc = sl_errf(err, errlen, SL_EINVAL, "tokenizer.ggml.scores[%zu]: not a number", i);
                goto done;
            }
            scores[i] = (float)d;
        }
    }
    if (!sl_gguf_get_arr(g, "tokenizer.ggml.token_type", &arr)) {
        if (arr.count != toks.count) {
            rc = sl_errf(err, errlen, SL_EINVAL,
                       "tokenizer.ggml.token_type has %llu entries, expected %llu",
                       (unsigned long long)arr.count, (unsigned long long)toks.count);
            goto done;
        }
        types = sl_malloc(sizeof *types * v.n_tokens);
        if (!types) {
            rc = SL_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < v.n_tokens; i++) {
            int64_t d;
            if (sl_gguf_arr_get_i64(arr, i, &d) || d < 0 || d > 6) {
                rc = sl_errf(err, errlen, SL_EINVAL,
                           "tokenizer.ggml.token_type[%zu]: expected an integer 0..6", i);
                goto done;
            }
            types[i] = (int32_t)d;
        }
    }
    if (!sl_gguf_get_arr(g, "tokenizer.ggml.merges", &arr)) {
        if ((rc = copy_strs(arr, "tokenizer.ggml.merges", &merges, err, errlen)))
            goto done;
        n_merges = arr.count;
    }
    sl_str s;
    if (!sl_gguf_get_str(g, "tokenizer.ggml.pre", &s) && !(pre = sl_strndup(s.p, s.n))) {
        rc = SL_ENOMEM;
        goto done;
    }
    if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", v.n_tokens, &v.bos_id, err, errlen)) ||
        (rc = get_id(g, "tokenizer.ggml.eos_token_id", v.n_tokens, &v.eos_id, err, errlen)) ||
        (rc = get_id(g, "tokenizer.ggml.eot_token_id", v.n_tokens, &v.eot_id, err, errlen)) ||
        (rc = get_id(g, "tokenizer.ggml.unknown_token_id", v.n_tokens, &v.unk_id, err, errlen)) ||
        (rc = get_id(g, "tokenizer.ggml.padding_token_id", v.n_tokens, &v.pad_id, err, errlen)))
        goto done;
    /* defaults as the reference runtime has them: SPM adds BOS and a space
     * prefix unless told otherwise; byte-level BPE adds neither */
    v.add_bos = v.kind == SL_TOK_SPM;
    v.add_space_prefix = v.kind == SL_TOK_SPM;
    bool b;
    if (!sl_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b))
        v.add_bos = b;
    if (!sl_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b))
        v.add_space_prefix = b;
    v.pre = pre;
    v.tokens = (const char *const *)tokens;
    v.scores = scores;
    v.types = types;
    v.merges = (const char *const *)merges;
    v.n_merges = (size_t)n_merges;
    rc = sl_tok_create(&v, out, err, errlen);
done:
    free_strs(tokens, toks.count);
    free_strs(merges, n_merges);
    sl_free(scores);
    sl_free(types);
    sl_free(pre);
    return rc;
}
