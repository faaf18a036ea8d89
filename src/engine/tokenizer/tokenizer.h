/*
 * engine/tokenizer: text <-> token ids for the local engine.
 *
 * A tokenizer is built from a model's vocabulary as GGUF stores it (the
 * tokenizer.ggml.* keys), handed over as plain arrays so that this subsystem
 * does not depend on the GGUF reader. Two families are supported:
 *
 *   SL_TOK_SPM  (tokenizer.ggml.model = "llama"): SentencePiece-style. Spaces
 *               become U+2581, adjacent pieces are merged greedily by vocab
 *               score, and characters the vocab lacks fall back to <0xNN> byte
 *               tokens (or the unknown token).
 *   SL_TOK_BPE  (tokenizer.ggml.model = "gpt2"): byte-level BPE. A pre-tokenizer
 *               regex (chosen by tokenizer.ggml.pre) splits the text, each
 *               piece's bytes are mapped to the printable byte alphabet, and
 *               pairs are merged by rank (their index in the merge list).
 *
 * Special tokens (control, user-defined and unknown types) are found in the
 * raw text before the algorithms above run, longest first: user-defined ones
 * always, control and unknown ones only when the caller asks (parse_special).
 *
 * SPM puts one space (U+2581) before the text at the start and after every
 * special token when add_space_prefix is set; decoding with
 * SL_TOK_DEC_STRIP_SPACE removes the one at the start again (so text without
 * special tokens round-trips), while the ones after special tokens stay.
 * Invalid UTF-8 input is kept lossless: SPM ends a character at the first
 * byte that is not a continuation byte and falls back to byte tokens; BPE
 * makes each run of bytes the pre-tokenizer cannot match (only invalid UTF-8)
 * a pre-token of its own instead of substituting U+FFFD.
 *
 * The tokenizer owns copies of everything it needs and is immutable after
 * creation, so one instance may be shared by any number of threads.
 * Decoding is per token (sl_tok_piece) or streaming (sl_tok_decoder), which
 * emits only complete UTF-8 and replaces invalid sequences with U+FFFD.
 */
#ifndef SL_ENGINE_TOKENIZER_H
#define SL_ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef enum {
    SL_TOK_SPM, /* tokenizer.ggml.model = "llama" */
    SL_TOK_BPE, /* tokenizer.ggml.model = "gpt2" */
} sl_tok_kind;

/* tokenizer.ggml.token_type values */
enum {
    SL_TOK_TYPE_UNDEFINED = 0,
    SL_TOK_TYPE_NORMAL = 1,
    SL_TOK_TYPE_UNKNOWN = 2,
    SL_TOK_TYPE_CONTROL = 3,
    SL_TOK_TYPE_USER_DEFINED = 4,
    SL_TOK_TYPE_UNUSED = 5,
    SL_TOK_TYPE_BYTE = 6,
};

/* A vocabulary as stored in GGUF metadata. Nothing here is kept after
 * sl_tok_create returns; the arrays may be freed by the caller. */
typedef struct sl_tok_vocab {
    sl_tok_kind kind;
    /* tokenizer.ggml.pre for BPE: "default"/"gpt2", "llama-bpe"/"llama3"/
     * "smaug-bpe", "qwen2". NULL means "default". Ignored for SPM. */
    const char *pre;
    size_t n_tokens;
    const char *const *tokens;  /* [n_tokens] tokenizer.ggml.tokens */
    const float *scores;        /* [n_tokens] tokenizer.ggml.scores; may be NULL (all 0) */
    const int32_t *types;       /* [n_tokens] tokenizer.ggml.token_type; may be NULL (all normal) */
    size_t n_merges;
    const char *const *merges;  /* [n_merges] tokenizer.ggml.merges, "left right" (BPE) */
    int32_t bos_id, eos_id, eot_id, unk_id, pad_id; /* -1 when absent */
    bool add_bos;               /* tokenizer.ggml.add_bos_token */
    bool add_space_prefix;      /* tokenizer.ggml.add_space_prefix (SPM; usually true) */
} sl_tok_vocab;

typedef struct sl_tokenizer sl_tokenizer;

/* Largest text sl_tok_encode accepts, in bytes (SL_ETOOBIG beyond). */
#define SL_TOK_MAX_TEXT ((size_t)64 << 20)

/* Builds a tokenizer from v (copied). Returns 0 and *out (free with
 * sl_tok_destroy), or SL_EINVAL/SL_EUNSUPPORTED/SL_ENOMEM with a message in err. */
int sl_tok_create(const sl_tok_vocab *v, sl_tokenizer **out, char *err, size_t errlen);
/* Frees the tokenizer. NULL is a no-op. */
void sl_tok_destroy(sl_tokenizer *t);

/* Tokenizes text[0..len). BOS is prepended when add_bos is true AND the
 * vocabulary asks for it (add_bos_token with a valid bos_id), as models expect.
 * parse_special: control/unknown tokens written in the text become their ids.
 * Returns 0 with *ids (caller frees with sl_free; non-NULL even when *n is 0),
 * SL_ETOOBIG over SL_TOK_MAX_TEXT, SL_ENOTFOUND when a character cannot be
 * represented (no byte token and no unknown token), or SL_ENOMEM. */
int sl_tok_encode(const sl_tokenizer *t, const char *text, size_t len, bool add_bos,
                  bool parse_special, int32_t **ids, size_t *n);

/* Writes the raw bytes of token id (spaces restored, byte tokens as their
 * byte, control tokens as their text) into out[0..cap) and sets *len to the
 * full piece length. Returns 0, SL_ERANGE for a bad id, or SL_ETOOBIG when
 * cap < *len (nothing written). The bytes need not be valid UTF-8 alone. */
int sl_tok_piece(const sl_tokenizer *t, int32_t id, char *out, size_t cap, size_t *len);

/* Returns the id of the token whose text is exactly s[0..n), or -1. */
int32_t sl_tok_find(const sl_tokenizer *t, const char *s, size_t n);
/* Returns the vocabulary size. */
size_t sl_tok_n_vocab(const sl_tokenizer *t);
/* Returns the family of the tokenizer. */
sl_tok_kind sl_tok_get_kind(const sl_tokenizer *t);
/* Return the special ids (-1 when absent). */
int32_t sl_tok_bos(const sl_tokenizer *t);
int32_t sl_tok_eos(const sl_tokenizer *t);
int32_t sl_tok_eot(const sl_tokenizer *t);
/* Returns true when sl_tok_encode(add_bos = true) prepends BOS for this vocabulary. */
bool sl_tok_adds_bos(const sl_tokenizer *t);
/* Returns true when id ends generation (eos or eot). */
bool sl_tok_is_eog(const sl_tokenizer *t, int32_t id);
/* Returns the token's type (SL_TOK_TYPE_*), or -1 for a bad id. */
int sl_tok_type(const sl_tokenizer *t, int32_t id);

/* ---- streaming detokenizer ----
 * Feed ids one at a time; each call appends only complete UTF-8 to out and
 * holds back the start of a multi-byte sequence until it completes (at most 3
 * bytes). Invalid bytes become U+FFFD (one per maximal invalid subpart). */
enum {
    /* Drop one leading space from the first decoded token that is not BOS
     * (undoes the SPM space prefix when decoding a whole encoded prompt). */
    SL_TOK_DEC_STRIP_SPACE = 1u << 0,
    /* Emit control tokens as their text; by default they produce nothing. */
    SL_TOK_DEC_RENDER_SPECIAL = 1u << 1,
};

typedef struct sl_tok_decoder {
    const sl_tokenizer *tok;
    unsigned flags;
    bool seen_text;        /* a non-BOS token has been fed */
    uint8_t pending[4];    /* incomplete UTF-8 sequence held back */
    size_t n_pending;
} sl_tok_decoder;

/* Prepares d for a new stream over t with SL_TOK_DEC_* flags. Owns nothing. */
void sl_tok_decoder_init(sl_tok_decoder *d, const sl_tokenizer *t, unsigned flags);
/* Decodes id and appends the completed UTF-8 to out. Returns 0, SL_ERANGE for
 * a bad id (nothing appended), or SL_ETOOBIG when out is full. */
int sl_tok_decoder_feed(sl_tok_decoder *d, int32_t id, sl_buf *out);
/* Appends U+FFFD for any held-back incomplete sequence and resets the hold. */
int sl_tok_decoder_flush(sl_tok_decoder *d, sl_buf *out);

/* Decodes a whole id sequence into a new NUL-terminated string (free with
 * sl_free) using a decoder with flags, then flushes. Returns 0 or SL_E*. */
int sl_tok_decode(const sl_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                  char **text, size_t *len);

#endif
