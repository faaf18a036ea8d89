/* Fuzz driver for model loading: any GGUF bytes must load as a llama/qwen2
 * model or fail with a message; a model that loads (and is small) must run a
 * forward pass, and the tokenizer built from the same file must not crash. */
#include "engine/model/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_gguf *g = NULL;
    char err[512];
    if (sl_gguf_open_memory(data, size, &g, err, sizeof err) != 0)
        return 0;
    sl_model *m = NULL;
    err[0] = 0;
    if (sl_model_load(g, &m, err, sizeof err) != 0) {
        if (!err[0])
            __builtin_trap(); /* every failure must explain itself */
        sl_gguf_close(g);
        return 0;
    }
    const sl_model_hparams *hp = sl_model_get_hparams(m);
    /* the weights are validated against the file size, so a model that loads
     * is at most as big as the input; the cache and activations are not, so
     * only small ones run */
    double work = (double)hp->n_layer * (hp->dim + hp->n_ff) * (hp->n_head + hp->n_head_kv) *
                  hp->head_dim;
    if (work < 4e6 && hp->n_vocab <= 4096) {
        sl_model_ctx *ctx = NULL;
        if (sl_model_ctx_create(m, 4, 2, 1, SL_MODEL_KV_DEFAULT, &ctx) == 0) {
            float *logits = malloc(sizeof(float) * 2 * (size_t)hp->n_vocab);
            int32_t tok[3] = {0, (int32_t)(size % (size_t)hp->n_vocab), hp->n_vocab};
            if (logits) {
                if (sl_model_forward(ctx, tok, 2, 0, logits, true, NULL) != 0)
                    __builtin_trap();
                if (sl_model_forward(ctx, tok + 2, 1, 2, logits, false, NULL) != SL_ERANGE)
                    __builtin_trap();
            }
            free(logits);
            sl_model_ctx_free(ctx);
        }
    }
    sl_tokenizer *t = NULL;
    err[0] = 0;
    if (sl_model_tokenizer_load(g, &t, err, sizeof err) != 0 && !err[0])
        __builtin_trap();
    sl_tok_destroy(t);
    sl_model_free(m);
    sl_gguf_close(g);
    return 0;
}
