/*
 * engine/sched: the serving core of the local engine. Continuous batching of
 * many requests over one model, a paged KV cache with prefix reuse, and
 * batch-invariant results.
 *
 * A sl_sched owns a model (loaded on its own engine thread, so create returns
 * at once), its tokenizer and chat template, a paged KV cache (engine/kv), a
 * compute pool, and every live request. Callers on any thread submit
 * requests; the engine thread runs steps:
 *
 *   1. take new requests (FIFO) and cancellations, at the step boundary only;
 *   2. admit waiting requests up to max_seqs while KV blocks allow, attaching
 *      each to the cached blocks of its longest published prompt prefix;
 *   3. schedule every running decode (1 token each) plus prefill chunks of up
 *      to prefill_chunk tokens in total, oldest request first, so that a long
 *      prompt never stalls the running streams;
 *   4. when a fresh KV block is needed and none is left, preempt the newest
 *      running request: its blocks are released (full ones stay cached) and it
 *      goes back to the head of the queue, to be recomputed later from its
 *      prompt plus the tokens it has generated so far (nothing is emitted
 *      twice: its sampler, stop matcher and decoder keep their state);
 *   5. run one sl_model_forward_batch over all scheduled tokens, then sample
 *      each request that got logits with its own sampler (own seeded RNG),
 *      stream its text and retire the finished ones.
 *
 * Results are batch invariant (see engine/model/model.h): a request's tokens
 * are the same whatever else runs, however its prompt is chunked, whether its
 * prefix came from the cache, whether it was preempted, and whatever the
 * thread count; with a seed, sampled output is reproducible too.
 *
 * Events go to the request's callback on the engine thread: TEXT any number
 * of times, then exactly one terminal DONE or ERROR, then nothing. The
 * callback must copy what it needs and return quickly, and must never call
 * sl_sched_* itself.
 */
#ifndef SL_ENGINE_SCHED_H
#define SL_ENGINE_SCHED_H

#include "core/core.h"

typedef struct sl_sched sl_sched;

typedef struct sl_sched_opts {
    const char *model_path;
    int n_ctx;              /* positions per sequence; <= 0: min(4096, the model's) */
    int max_seqs;           /* sequences running at once; <= 0: 16 */
    int64_t kv_cache_bytes; /* the KV budget; <= 0: max_seqs * n_ctx positions, at most 2 GiB */
    int threads;            /* compute threads counting the engine thread; <= 0: all CPUs */
    int prefill_chunk;      /* prompt tokens per step over all sequences; <= 0: 64 */
    const char *chat_template; /* family name (engine/chat); NULL: detected from the model */
    int block_tokens;       /* positions per KV block; <= 0: 16 */
    const char *kv_type;    /* KV cache elements: "f16" or "f32"; NULL: "f16" */
} sl_sched_opts;

/* Fills o with the defaults (all automatic). */
void sl_sched_opts_default(sl_sched_opts *o);

/* Starts a scheduler (o is copied) whose engine thread then loads the model.
 * Returns 0 and *out at once (free with sl_sched_destroy), SL_EINVAL (no
 * model path, an unknown kv_type) or SL_ENOMEM / SL_EIO (no thread), with a
 * message in err. */
int sl_sched_create(const sl_sched_opts *o, sl_sched **out, char *err, size_t errlen);
/* Returns 0 when ready, SL_EAGAIN while loading, or the load's negative code
 * with its message in err. */
int sl_sched_state(sl_sched *s, char *err, size_t errlen);
/* Delivers the terminal event of every live request (DONE, finish 2), joins
 * the engine thread and frees everything. NULL is a no-op. */
void sl_sched_destroy(sl_sched *s);

typedef enum { SL_SCHED_COMPLETE, SL_SCHED_CHAT, SL_SCHED_EMBED } sl_sched_kind;

typedef struct sl_sched_msg {
    int role;            /* 0 system, 1 user, 2 assistant */
    const char *content;
} sl_sched_msg;

#define SL_SCHED_MAX_STOP 4

typedef struct sl_sched_req {
    sl_sched_kind kind;
    const char *prompt;          /* COMPLETE and EMBED */
    const sl_sched_msg *msgs;    /* CHAT */
    size_t n_msgs;
    float temperature, top_p, min_p, presence_penalty, frequency_penalty, repetition_penalty;
    int top_k;
    uint64_t seed;
    bool has_seed;
    int max_tokens;              /* <= 0: until the context is full */
    const char *stop[SL_SCHED_MAX_STOP];
} sl_sched_req; /* everything is copied by submit */

/* Fills r: COMPLETE, temperature 1, top_p 1, every other filter and penalty
 * off, random seed, no max_tokens, no stop strings. */
void sl_sched_req_default(sl_sched_req *r);

typedef enum { SL_SCHED_EV_TEXT, SL_SCHED_EV_DONE, SL_SCHED_EV_ERROR } sl_sched_ev_kind;

typedef struct sl_sched_event {
    sl_sched_ev_kind kind;
    const char *text;  /* TEXT: valid during the call */
    size_t len;
    int finish;        /* DONE: 0 stop, 1 length, 2 cancel */
    int32_t prompt_tokens, cached_tokens, completion_tokens;
    const float *embedding; /* DONE of EMBED: mean-pooled, L2-normalised final hidden state */
    int n_embd;
    int err;           /* ERROR: negative code */
    const char *message;
} sl_sched_event;

typedef void (*sl_sched_fn)(void *user, const sl_sched_event *ev);

/* Validates and queues a request. Returns 0 and *id (then exactly one
 * terminal event follows), or a negative code with a message in err and no
 * event: SL_EAGAIN (still loading), SL_ESTATE (load failed or shutting down),
 * SL_EINVAL (prompt empty or longer than the context, bad parameters, chat
 * without a template), SL_ENOMEM. */
int sl_sched_submit(sl_sched *s, const sl_sched_req *r, sl_sched_fn fn, void *user, uint64_t *id,
                    char *err, size_t errlen);
/* Asks to cancel request id (thread-safe, idempotent; unknown ids are
 * ignored). Its blocks are freed at the next step boundary and its terminal
 * DONE has finish 2. */
void sl_sched_cancel(sl_sched *s, uint64_t id);

typedef struct sl_sched_stats {
    int running, waiting;
    int kv_blocks_total, kv_blocks_used, kv_blocks_cached;
    int64_t prompt_tokens;     /* prompt tokens of admitted requests */
    int64_t prefix_hit_tokens; /* of those, taken from cached blocks */
    int64_t prefill_tokens;    /* tokens computed without sampling after them, and recomputes */
    int64_t decode_tokens;     /* tokens computed one per request and step */
    int64_t preemptions, requests_done;
    double prefill_ms;         /* time of steps holding prefill tokens */
    double decode_ms;          /* time of steps with decode tokens only */
    int64_t batch_hist[9];     /* step sizes <=1,2,4,8,16,32,64,128,>128 tokens */
    int n_ctx, n_embd;
} sl_sched_stats;

/* Fills *st with a snapshot (as of the last step boundary). */
void sl_sched_stats_get(sl_sched *s, sl_sched_stats *st);

#endif
