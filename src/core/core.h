/*
 * core: the base layer every other Sluice subsystem stands on.
 *
 * It owns error codes, the counted allocator (with fault injection for tests),
 * per-request arenas, bounded dynamic buffers, string slices, logging, clocks,
 * hashing and a small fast PRNG. It includes no other Sluice header.
 *
 * Conventions (see shared/ARCHITECTURE.md): fallible functions return int, 0 or
 * a negative SL_E* code; results come back through out-parameters.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SL_UNUSED(x) ((void)(x))

#if defined(__GNUC__)
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SL_PRINTF(f, a)
#define SL_LIKELY(x) (x)
#define SL_UNLIKELY(x) (x)
#endif

/* ---- error codes: append only ---- */
enum {
    SL_OK = 0,
    SL_ENOMEM = -1,      /* allocation failed */
    SL_EINVAL = -2,      /* invalid argument or input */
    SL_EIO = -3,         /* I/O error (errno has details) */
    SL_ERANGE = -4,      /* value out of range */
    SL_ETOOBIG = -5,     /* a bounded buffer or limit would be exceeded */
    SL_ENOTFOUND = -6,   /* no such thing */
    SL_ETIMEDOUT = -7,   /* a deadline passed */
    SL_EPARSE = -8,      /* malformed input */
    SL_EUNSUPPORTED = -9,/* valid but not supported */
    SL_ECANCELED = -10,  /* cancelled by the caller or the peer */
    SL_EAGAIN = -11,     /* try again later */
    SL_EUPSTREAM = -12,  /* an upstream failed */
    SL_EFULL = -13,      /* a queue or pool is full */
    SL_ECORRUPT = -14,   /* a file or message is internally inconsistent */
    SL_EEXIST = -15,     /* already exists */
    SL_ESTATE = -16,     /* operation not valid in the current state */
};

/* Returns a static string describing an SL_E* code. */
const char *sl_strerror(int code);
/* Formats a message into err (errlen bytes, may be NULL/0) and returns rc:
 * `return sl_errf(err, errlen, SL_EINVAL, "tensor %s: ...", name);`. */
int sl_errf(char *err, size_t errlen, int rc, const char *fmt, ...) SL_PRINTF(4, 5);

/* ---- counted allocator ----
 * All Sluice allocations go through these so that bytes can be counted and
 * failures injected. sl_malloc(0) returns a valid unique pointer. */
void *sl_malloc(size_t n);
void *sl_calloc(size_t count, size_t size); /* NULL on overflow */
void *sl_realloc(void *p, size_t n);
void sl_free(void *p);
char *sl_strdup(const char *s);             /* NULL in, NULL out */
char *sl_strndup(const char *s, size_t n);  /* always NUL-terminated */
/* Bytes currently allocated through the sl_malloc family (all threads). */
size_t sl_alloc_live_bytes(void);
/* n bytes of zeroed anonymous memory, 2 MiB-aligned and advised for huge
 * pages, for large buffers that are streamed end to end (repacked weights):
 * on 4 KiB pages their reads stall on page walks. Counted like sl_malloc,
 * subject to injected failures. Returns NULL on failure; free with
 * sl_huge_free(p, n), the same n. */
void *sl_huge_alloc(size_t n);
void sl_huge_free(void *p, size_t n);
/* Test hook: the Nth allocation from now (1 = next) and every later one fail
 * until reset with 0. Not thread-safe in intent; for single-threaded tests. */
void sl_alloc_fail_after(long n);

/* ---- arena: one per request; everything it hands out dies with it ---- */
typedef struct sl_arena sl_arena;
/* Returns a new arena whose blocks hold at least block_size bytes, or NULL. */
sl_arena *sl_arena_create(size_t block_size);
/* Frees every block of the arena and the arena itself. NULL is a no-op. */
void sl_arena_destroy(sl_arena *a);
/* Frees everything the arena handed out, keeping one block of the block size
 * for what comes next: a recycled arena costs no allocation. */
void sl_arena_reset(sl_arena *a);
/* Returns 16-byte aligned memory owned by the arena, or NULL. */
void *sl_arena_alloc(sl_arena *a, size_t n);
void *sl_arena_calloc(sl_arena *a, size_t n);
char *sl_arena_strndup(sl_arena *a, const char *s, size_t n);
char *sl_arena_sprintf(sl_arena *a, const char *fmt, ...) SL_PRINTF(2, 3);
/* Bytes handed out so far (for limits and metrics). */
size_t sl_arena_used(const sl_arena *a);

/* ---- bounded dynamic buffer ----
 * Grows on demand up to max bytes; an append past max fails with SL_ETOOBIG
 * and leaves the buffer unchanged. data is always NUL-terminated when len>0. */
typedef struct sl_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} sl_buf;

void sl_buf_init(sl_buf *b, size_t max);
void sl_buf_free(sl_buf *b);
void sl_buf_reset(sl_buf *b);              /* len = 0, keeps memory */
/* len = 0; keeps the memory for reuse unless its capacity passed keep_max,
 * which frees it (a buffer that once held something large does not pin it). */
void sl_buf_keep(sl_buf *b, size_t keep_max);
/* For all-or-nothing appenders: when rc is not 0, cuts b back to its first
 * mark bytes (keeping memory). Returns rc. */
int sl_buf_rollback(sl_buf *b, size_t mark, int rc);
int sl_buf_reserve(sl_buf *b, size_t extra);
int sl_buf_append(sl_buf *b, const void *p, size_t n);
int sl_buf_append_str(sl_buf *b, const char *s);
int sl_buf_append_char(sl_buf *b, char c);
int sl_buf_appendf(sl_buf *b, const char *fmt, ...) SL_PRINTF(2, 3);
int sl_buf_vappendf(sl_buf *b, const char *fmt, va_list ap);
/* Removes the first n bytes (n <= len). */
void sl_buf_consume(sl_buf *b, size_t n);
/* Hands the data to the caller (free with sl_free) and resets the buffer. */
char *sl_buf_take(sl_buf *b, size_t *len_out);

/* ---- string slices ---- */
typedef struct sl_str {
    const char *p;
    size_t n;
} sl_str;

#define SL_STR_LIT(s) ((sl_str){(s), sizeof(s) - 1})
static inline sl_str sl_str_make(const char *p, size_t n) { return (sl_str){p, n}; }
sl_str sl_str_c(const char *s);
bool sl_str_eq(sl_str a, sl_str b);
/* Inline: with a literal s the length folds and the compare is a few
 * instructions (routing compares the path and method on every request). */
static inline bool sl_str_eq_c(sl_str a, const char *s)
{
    size_t n = strlen(s);
    return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0);
}
bool sl_str_case_eq_c(sl_str a, const char *s);
bool sl_str_starts_with(sl_str a, const char *prefix);
sl_str sl_str_trim(sl_str a);
/* Parses a whole slice as a non-negative decimal; SL_EPARSE/SL_ERANGE. */
int sl_str_to_u64(sl_str a, uint64_t *out);
/* Writes v in decimal (no sign, no NUL) to out, which has room for 20
 * digits; returns the number of digits. For hot paths that would otherwise
 * call snprintf for one number. */
size_t sl_u64_to_dec(uint64_t v, char out[20]);
/* The bytes of an HTTP token (RFC 9110 tchar), such as a header name. */
extern const bool sl_http_tchar[256];
/* Whether s[0..n) equals lower[0..n) ignoring ASCII case, where lower is
 * lower-case letters and '-' and s holds no CR (an HTTP token, or bytes
 * already checked to hold no control byte). c | 0x20 maps exactly a letter's
 * two cases onto its lower case, and only '-' and CR onto '-'. */
static inline bool sl_http_token_ieq(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((char)(s[i] | 0x20) != lower[i])
            return false;
    return true;
}

/* ---- logging (stderr, one line per call) ---- */
typedef enum { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level;
void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
void sl_log(sl_log_level lvl, const char *fmt, ...) SL_PRINTF(2, 3);
#define sl_debug(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define sl_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
/* Writes one raw line (a '\n' is added) to the log stream under its lock. */
void sl_log_raw_line(const char *line, size_t n);

/* ---- time ---- */
uint64_t sl_now_ns(void);   /* monotonic */
uint64_t sl_now_ms(void);   /* monotonic */
/* Milliseconds on the same time base as sl_now_ms, read from the kernel's
 * coarse clock: a few ns per read instead of tens, but it advances in steps
 * of the kernel tick (1-10 ms) and lags sl_now_ms by up to one step. For
 * deadlines and decays measured in tens of milliseconds or more. */
uint64_t sl_now_ms_coarse(void);
uint64_t sl_wall_ms(void);  /* Unix epoch milliseconds */
/* Writes an RFC 3339 UTC timestamp with milliseconds into out (>= 32 bytes). */
void sl_format_time_iso(uint64_t wall_ms, char *out, size_t out_size);

/* ---- hashing and randomness ---- */
uint64_t sl_hash64(const void *p, size_t n, uint64_t seed);   /* xxh3 */
/* Per-thread xoshiro256** seeded from the OS on first use in each thread. */
uint64_t sl_rand_u64(void);
double sl_rand_unit(void);  /* uniform in [0, 1) */
/* Fills out with 2*n lowercase hex chars of random bytes plus NUL (out >= 2n+1). */
void sl_rand_hex(char *out, size_t n);

/* ---- misc ---- */
/* Number of online CPUs, at least 1. */
int sl_cpu_count(void);

/* ---- thread pool: fork-join workers for compute kernels ----
 * sl_pool_run hands idx 0..n-1 to the pool's threads (the calling thread
 * takes part) and returns once every call has finished. Idle workers spin
 * briefly, then sleep on a futex, so back-to-back runs (one per matmul) cost
 * microseconds. Runs from different threads on one pool are serialized. */
typedef struct sl_pool sl_pool;
/* Creates a pool of nthreads threads counting the caller (<= 0 means
 * sl_cpu_count()); *out is freed with sl_pool_destroy. 0 or SL_ENOMEM/SL_EIO. */
int sl_pool_create(int nthreads, sl_pool **out);
/* Stops and joins the workers and frees the pool. NULL is a no-op. */
void sl_pool_destroy(sl_pool *p);
/* Threads the pool runs on, counting the caller (1 for a NULL pool). */
int sl_pool_threads(const sl_pool *p);
/* Calls fn(ctx, idx, n) once for each idx in 0..n-1, spread over the threads;
 * returns when all are done. A NULL pool runs them inline in order. */
void sl_pool_run(sl_pool *p, void (*fn)(void *ctx, int idx, int n), void *ctx, int n);

#endif
