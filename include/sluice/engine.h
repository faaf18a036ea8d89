/*
 * sluice/engine.h: Sluice's local inference engine as a library.
 *
 * The engine loads a GGUF model (architectures llama and qwen2; weights F32,
 * F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), its tokenizer and its chat template,
 * and generates text on the CPU. It needs none of the server.
 *
 * A whole program:
 *
 *     #include <sluice/engine.h>
 *     #include <stdio.h>
 *
 *     static int on_text(void *user, const char *text, size_t len)
 *     {
 *         fwrite(text, 1, len, stdout);   // streamed as it is generated
 *         return 0;                       // nonzero stops the generation
 *     }
 *
 *     int main(void)
 *     {
 *         sl_engine *e;
 *         char err[512];
 *         sl_engine_params ep;
 *         sl_engine_params_default(&ep);    // threads = CPUs, context = 4096
 *         if (sl_engine_load("model.gguf", &ep, &e, err, sizeof err)) {
 *             fprintf(stderr, "%s\n", err);
 *             return 1;
 *         }
 *         sl_engine_gen_params gp;
 *         sl_engine_gen_params_default(&gp); // temperature 0.8, top_p 0.95, ...
 *         gp.max_tokens = 64;
 *         sl_engine_stats st;
 *         if (sl_engine_generate(e, "Once upon a time", &gp, on_text, NULL, &st, err,
 *                                sizeof err))
 *             fprintf(stderr, "%s\n", err);
 *         printf("\n%d tokens at %.1f tokens/s\n", st.gen_tokens,
 *                st.gen_tokens / (st.gen_ms / 1000.0));
 *         sl_engine_free(e);
 *     }
 *
 * For chat models, render the conversation with sl_engine_chat_prompt and
 * generate from it with gp.chat = true (special tokens in the text are then
 * parsed, and BOS follows the template). An engine holds ONE sequence: the
 * tokens of the previous generate stay in its cache, and a prompt that starts
 * with them (the next turn of the same chat) is not computed again.
 *
 * Threads: one engine is used by one thread at a time. Errors: every
 * fallible call returns 0 or a negative code and writes a message into err.
 * Types are opaque; structs with fields are filled by their _default call
 * first, so fields added later get neutral values.
 */
#ifndef SLUICE_ENGINE_H
#define SLUICE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_engine sl_engine;

typedef struct sl_engine_params {
    int n_threads; /* compute threads, counting the caller; <= 0: all CPUs */
    int n_ctx;     /* positions of the sequence; <= 0: min(4096, the model's) */
    int n_batch;   /* prompt tokens per forward pass; <= 0: 64 */
    const char *kv_type; /* key/value cache elements: "f16" or "f32"; NULL: "f16" */
} sl_engine_params;

/* Fills p with the defaults (all zero: automatic). */
void sl_engine_params_default(sl_engine_params *p);

/* Loads the GGUF model at path. Returns 0 and *out (free with
 * sl_engine_free), or a negative code with a message in err. */
int sl_engine_load(const char *path, const sl_engine_params *p, sl_engine **out, char *err,
                   size_t errlen);
/* Frees the engine and unmaps the model. NULL is a no-op. */
void sl_engine_free(sl_engine *e);

/* Model facts. */
const char *sl_engine_arch(const sl_engine *e); /* "llama", "qwen2"; owned by e */
int sl_engine_n_ctx(const sl_engine *e);
int sl_engine_n_vocab(const sl_engine *e);
double sl_engine_load_ms(const sl_engine *e); /* time sl_engine_load took */

/* ---- chat ---- */
typedef enum { SL_ENGINE_SYSTEM = 0, SL_ENGINE_USER = 1, SL_ENGINE_ASSISTANT = 2 } sl_engine_role;

typedef struct sl_engine_message {
    sl_engine_role role;
    const char *content; /* NUL-terminated */
} sl_engine_message;

/* Returns true when the model carries a chat template the engine recognises. */
bool sl_engine_has_chat(const sl_engine *e);
/* Renders msgs[0..n) with the model's chat template, ending with the opening
 * of the assistant's turn. Returns 0 and *prompt (free with
 * sl_engine_free_string), or a negative code with a message in err. */
int sl_engine_chat_prompt(const sl_engine *e, const sl_engine_message *msgs, size_t n,
                          char **prompt, char *err, size_t errlen);
/* Frees a string the engine returned. */
void sl_engine_free_string(char *s);

/* ---- generation ---- */
#define SL_ENGINE_MAX_STOP 4

typedef struct sl_engine_gen_params {
    float temperature;        /* 0 = greedy */
    int32_t top_k;            /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
    bool has_seed;            /* false: a random seed */
    int32_t max_tokens;       /* <= 0: until the context is full */
    const char *stop[SL_ENGINE_MAX_STOP]; /* stop strings (not emitted); NULL = unused */
    bool chat;                /* the prompt came from sl_engine_chat_prompt */
} sl_engine_gen_params;

/* Fills p with temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no
 * penalty, random seed, max_tokens 256, no stop strings, chat false. */
void sl_engine_gen_params_default(sl_engine_gen_params *p);

/* Receives generated text as it becomes final (complete UTF-8, never part of
 * a stop string). Return 0 to go on, nonzero to stop. */
typedef int (*sl_engine_text_fn)(void *user, const char *text, size_t len);

typedef enum {
    SL_ENGINE_FINISH_STOP = 0,   /* end-of-generation token or stop string */
    SL_ENGINE_FINISH_LENGTH = 1, /* max_tokens or the context is full */
    SL_ENGINE_FINISH_CANCEL = 2, /* the callback returned nonzero */
} sl_engine_finish;

typedef struct sl_engine_stats {
    double load_ms;
    int32_t prompt_tokens;  /* tokens of the prompt */
    int32_t cached_tokens;  /* of those, reused from the previous generate */
    double prompt_ms;       /* time to compute the rest of the prompt */
    int32_t gen_tokens;     /* tokens sampled */
    double gen_ms;          /* time from the first sampled token to the end */
    sl_engine_finish finish;
} sl_engine_stats;

/* Generates a continuation of prompt, calling on_text (may be NULL) with the
 * text as it comes. stats (may be NULL) is filled on success. Returns 0, or a
 * negative code with a message in err (a prompt longer than the context, bad
 * sampling parameters...); on error on_text may have been called already. */
int sl_engine_generate(sl_engine *e, const char *prompt, const sl_engine_gen_params *p,
                       sl_engine_text_fn on_text, void *user, sl_engine_stats *stats, char *err,
                       size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
