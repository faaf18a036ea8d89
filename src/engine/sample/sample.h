/*
 * sample: turns one row of logits into the next token, and decides when a
 * generation ends.
 *
 * A sl_sampler belongs to one sequence. It owns that sequence's PRNG state,
 * its penalty history and its scratch arrays (sized for the vocabulary once,
 * at creation), so sampling allocates nothing per token (bar the amortised
 * growth of its penalty counters) and the same seed with the same logits gives
 * the same tokens whatever else runs in the process.
 *
 * The order of operations is fixed:
 *
 *   1. penalties: repetition (multiplicative, over the last penalty_last_n
 *      tokens of prompt + output: positive logits are divided by the penalty,
 *      negative ones multiplied), then presence/frequency (additive, OpenAI
 *      semantics, over the tokens generated so far:
 *      logit -= presence * (count > 0) + frequency * count)
 *   2. if temperature == 0: argmax (ties go to the lowest token id), done
 *   3. top_k (a bounded heap for k <= 512, quickselect above; no full sort)
 *   4. logits /= temperature
 *   5. softmax
 *   6. top_p: keep the smallest most-likely prefix whose mass reaches top_p
 *      (selected and sorted in growing chunks; above 4096 candidates, first
 *      bucketed by logit so that only the bucket where the mass crosses
 *      top_p is sorted)
 *   7. min_p: drop tokens with p < min_p * p_max
 *   8. renormalise and draw with the sequence's PRNG
 *
 * Ties between equal logits are always broken towards the lower token id, so
 * every truncation set is well defined.
 *
 * Logprobs are the log-softmax of the logits after step 1 (penalties) and
 * before any truncation or temperature. That is the model's own distribution
 * (as OpenAI reports it), adjusted only by penalties the caller asked for, and
 * it keeps the chosen token's logprob finite even when top_k/top_p would have
 * given the other tokens probability zero.
 *
 * The PRNG is xoshiro256** with its 256-bit state filled by splitmix64 from
 * the 64-bit seed; without a seed, the seed comes from core's OS-seeded
 * generator. A draw uses the top 53 bits of one output as a double in [0, 1).
 *
 * The stop matcher (sl_stop_*) holds back generated text that may be the start
 * of a stop string, cuts the text at the first stop string, and also counts
 * tokens against max_tokens and end-of-generation token ids.
 */
#ifndef SL_SAMPLE_H
#define SL_SAMPLE_H

#include "core/core.h"

#define SL_SAMPLE_MAX_LOGPROBS 20          /* OpenAI's top_logprobs limit */
#define SL_SAMPLE_MAX_PENALTY_LAST_N 65536 /* repetition window, tokens */
#define SL_SAMPLE_MAX_VOCAB (1 << 24)

typedef struct sl_sample_params {
    float temperature;        /* >= 0; 0 = greedy */
    int32_t top_k;            /* >= 0; 0 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    float repetition_penalty; /* > 0; 1 = off */
    int32_t penalty_last_n;   /* window of repetition_penalty, tokens; 0 = off */
    float presence_penalty;   /* [-2, 2]; 0 = off */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    uint64_t seed;            /* used only when has_seed */
    bool has_seed;
    bool logprobs;            /* report the chosen token's logprob */
    int32_t n_logprobs;       /* 0..20: also report this many most likely tokens */
} sl_sample_params;

/* Fills p with the neutral settings: temperature 1, every filter and penalty
 * off, penalty_last_n 64, no seed, no logprobs. */
void sl_sample_params_default(sl_sample_params *p);

/* Returns 0 if every field is in range, else SL_ERANGE with a message naming
 * the field, the allowed range and the value in err (err may be NULL). */
int sl_sample_params_check(const sl_sample_params *p, char *err, size_t err_size);

typedef struct sl_token_logprob {
    int32_t id;
    float logprob;
} sl_token_logprob;

typedef struct sl_sample_result {
    int32_t token;
    float logprob; /* of token; 0 unless params.logprobs */
    int32_t n_top; /* entries in top, most likely first (ties: lower id first) */
    sl_token_logprob top[SL_SAMPLE_MAX_LOGPROBS];
} sl_sample_result;

typedef struct sl_sampler sl_sampler;

/* Creates a sampler for a vocabulary of n_vocab tokens (p is copied and must
 * pass sl_sample_params_check). Returns 0 and *out (free with
 * sl_sampler_destroy), SL_ERANGE or SL_ENOMEM. */
int sl_sampler_create(const sl_sample_params *p, int32_t n_vocab, sl_sampler **out);

/* Frees the sampler; NULL is a no-op. */
void sl_sampler_destroy(sl_sampler *s);

/* Adds prompt tokens to the repetition window (they do not count for
 * presence/frequency, which cover generated tokens only). Returns 0 or
 * SL_EINVAL for a token id outside the vocabulary (nothing is added). */
int sl_sampler_accept_prompt(sl_sampler *s, const int32_t *tokens, size_t n);

/* Records a generated token that was not drawn by sl_sampler_sample (forced or
 * replayed output). Returns 0, SL_EINVAL for a bad id, or SL_ENOMEM. */
int sl_sampler_accept(sl_sampler *s, int32_t token);

/* Samples the next token from logits (n_vocab floats, not modified), records
 * it as generated (as sl_sampler_accept does) and fills *out. NaN logits count
 * as -inf. Returns 0, SL_ERANGE if no logit is finite, or SL_ENOMEM. */
int sl_sampler_sample(sl_sampler *s, const float *logits, sl_sample_result *out);

/* Diagnostic: runs steps 1-8 but draws nothing and records nothing. Writes up
 * to cap surviving tokens and their final probabilities, most likely first
 * (ties: lower id first), to ids/probs and their total count to *n_out.
 * Sorts the survivors: O(V log V) without truncation; not for the hot path.
 * Returns 0 or SL_ERANGE as sl_sampler_sample. */
int sl_sampler_dist(sl_sampler *s, const float *logits, int32_t *ids, float *probs, size_t cap,
                    size_t *n_out);

/* ---- ending a generation ---- */

#define SL_STOP_MAX_STRINGS 4      /* OpenAI's limit on "stop" */
#define SL_STOP_MAX_STRING_LEN 512 /* bytes per stop string */
#define SL_STOP_MAX_END_IDS 16
#define SL_STOP_MAX_PIECE 65536    /* bytes fed in one call */

typedef enum {
    SL_FINISH_NONE = 0, /* keep generating */
    SL_FINISH_STOP,     /* a stop string or an end token id */
    SL_FINISH_LENGTH,   /* max_tokens reached */
} sl_finish_reason;

typedef struct sl_stop_spec {
    const char *strings[SL_STOP_MAX_STRINGS]; /* non-empty, NUL-terminated */
    size_t n_strings;
    int32_t end_ids[SL_STOP_MAX_END_IDS];     /* EOS, EOT, <|im_end|>, ... */
    size_t n_end_ids;
    int64_t max_tokens;                       /* 0 = no limit */
} sl_stop_spec;

typedef struct sl_stop_matcher sl_stop_matcher;

/* What a call to sl_stop_feed or sl_stop_flush produced. emit points into the
 * matcher and stays valid until the next call on it. */
typedef struct sl_stop_out {
    const char *emit;        /* text that is safe to send now */
    size_t emit_len;
    sl_finish_reason finish; /* SL_FINISH_STOP: emit is all the text before the stop */
    int stop_index;          /* which stop string hit; -1 if none (or an end id) */
} sl_stop_out;

/* Creates a matcher for spec (strings are copied). Returns 0 and *out (free
 * with sl_stop_destroy), SL_EINVAL/SL_ERANGE with a message in err (err may be
 * NULL), or SL_ENOMEM. */
int sl_stop_create(const sl_stop_spec *spec, sl_stop_matcher **out, char *err, size_t err_size);

/* Frees the matcher; NULL is a no-op. */
void sl_stop_destroy(sl_stop_matcher *m);

/* Counts one generated token. Returns SL_FINISH_STOP if it is an end id (its
 * text must not be fed), SL_FINISH_LENGTH if it reaches max_tokens (its text
 * should still be fed, then flushed), else SL_FINISH_NONE. */
sl_finish_reason sl_stop_token(sl_stop_matcher *m, int32_t token);

/* Feeds the text of the next generated piece. Text that may be the start of a
 * stop string, or an incomplete UTF-8 sequence at the end, is held back. On a
 * stop string, out->finish is SL_FINISH_STOP and emit is the rest of the text
 * before it; later feeds emit nothing. Returns 0, or SL_ETOOBIG for a piece
 * over SL_STOP_MAX_PIECE, or SL_ENOMEM. */
int sl_stop_feed(sl_stop_matcher *m, const char *piece, size_t n, sl_stop_out *out);

/* At the end of a generation (end id or max_tokens): emits whatever is still
 * held back. Returns 0. */
int sl_stop_flush(sl_stop_matcher *m, sl_stop_out *out);

/* Tokens counted so far by sl_stop_token. */
int64_t sl_stop_tokens(const sl_stop_matcher *m);

#endif
