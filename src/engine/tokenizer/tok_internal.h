/* Private to engine/tokenizer: the tokenizer's layout, shared by the encoder
 * (tokenizer.c) and the streaming decoder (decoder.c). */
#ifndef SL_TOK_INTERNAL_H
#define SL_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/tokenizer/tokenizer.h"

/* Open-addressing map from a byte string to an int32. Keys point into memory
 * the tokenizer owns; a NULL key marks an empty slot. */
typedef struct tok_map_slot {
    const char *key;
    uint32_t klen;
    int32_t val;
} tok_map_slot;

typedef struct tok_map {
    tok_map_slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two */
} tok_map;

typedef enum { TOK_PRE_GPT2, TOK_PRE_LLAMA3, TOK_PRE_QWEN2 } tok_pre;

struct sl_tokenizer {
    sl_tok_kind kind;
    tok_pre pre;
    size_t n_vocab;

    /* token i's text is text_blob[text_off[i] .. text_off[i] + text_len[i]) */
    char *text_blob;
    size_t *text_off;
    uint32_t *text_len;
    /* token i's decoded bytes, same layout */
    char *piece_blob;
    size_t *piece_off;
    uint32_t *piece_len;

    float *scores;  /* [n_vocab] */
    uint8_t *types; /* [n_vocab] SL_TOK_TYPE_* */

    tok_map vocab;  /* token text -> id (the last id wins for duplicates) */
    tok_map merges; /* "left right" -> rank (BPE) */
    char *merge_blob;

    /* SPM: the <0xNN> token of each byte (or the single-byte token), -1 if none.
     * BPE: the token of each byte's one-character symbol, -1 if none. */
    int32_t byte_tok[256];
    uint32_t byte_cp[256]; /* BPE: the byte alphabet's code point of each byte */

    /* control, user-defined and unknown tokens, longest text first */
    int32_t *special;
    size_t n_special;

    int32_t bos_id, eos_id, eot_id, unk_id, pad_id;
    bool add_bos, add_space_prefix;
    bool ignore_merges; /* BPE: a pre-token that is itself a token skips merging */

    pcre2_code *re; /* BPE pre-tokenizer */
    pcre2_general_context *gctx;
};

#endif
