/* Fork-join thread pool. One job at a time: the caller publishes (fn, ctx, n)
 * and bumps the generation word; workers claim indices from an atomic counter
 * and count themselves out through `pending`. The caller returns only when
 * every worker has counted out, so no worker can still be inside an old job
 * when the next one is published. Waiting is spin-then-futex on both sides;
 * `sleepers` and `caller_sleeping` let the fast path skip the wake syscalls. */
#include "core.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Pause iterations before sleeping: a few hundred microseconds, enough to
 * bridge the gap between consecutive matmuls of one forward pass. */
#define POOL_SPIN 2048

struct sl_pool {
    int nthreads; /* counting the caller */
    pthread_t *threads;
    pthread_mutex_t run_lock;
    _Atomic uint32_t gen;     /* futex word workers sleep on */
    _Atomic uint32_t pending; /* workers not yet done with the current job */
    _Atomic int sleepers;     /* workers in (or about to enter) futex_wait */
    _Atomic int caller_sleeping;
    _Atomic int next;         /* next index to claim */
    _Atomic int stop;
    void (*fn)(void *ctx, int idx, int n);
    void *ctx;
    int n;
};

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int count)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void do_work(sl_pool *p)
{
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            break;
        p->fn(p->ctx, i, p->n);
    }
}

static void *worker_main(void *arg)
{
    sl_pool *p = arg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (spins < POOL_SPIN) {
                cpu_relax();
                spins++;
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = g;
        if (atomic_load(&p->stop))
            break;
        do_work(p);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping))
            futex_wake(&p->pending, 1);
    }
    return NULL;
}

int sl_pool_create(int nthreads, sl_pool **out)
{
    *out = NULL;
    if (nthreads <= 0)
        nthreads = sl_cpu_count();
    sl_pool *p = sl_calloc(1, sizeof *p);
    if (!p)
        return SL_ENOMEM;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->run_lock, NULL);
    if (nthreads > 1) {
        p->threads = sl_calloc((size_t)nthreads - 1, sizeof(pthread_t));
        if (!p->threads) {
            pthread_mutex_destroy(&p->run_lock);
            sl_free(p);
            return SL_ENOMEM;
        }
        for (int i = 0; i < nthreads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
                p->nthreads = i + 1; /* destroy joins only what started */
                sl_pool_destroy(p);
                return SL_EIO;
            }
        }
    }
    *out = p;
    return 0;
}

void sl_pool_destroy(sl_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->run_lock);
    atomic_store(&p->stop, 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    futex_wake(&p->gen, p->nthreads);
    pthread_mutex_unlock(&p->run_lock);
    for (int i = 0; i < p->nthreads - 1; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->run_lock);
    sl_free(p->threads);
    sl_free(p);
}

int sl_pool_threads(const sl_pool *p) { return p ? p->nthreads : 1; }

void sl_pool_run(sl_pool *p, void (*fn)(void *ctx, int idx, int n), void *ctx, int n)
{
    if (n <= 0)
        return;
    if (!p || p->nthreads == 1 || n == 1) {
        for (int i = 0; i < n; i++)
            fn(ctx, i, n);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store(&p->pending, (uint32_t)(p->nthreads - 1));
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers load */
    if (atomic_load(&p->sleepers) > 0)
        futex_wake(&p->gen, p->nthreads);
    do_work(p);
    uint32_t v;
    int spins = 0;
    while ((v = atomic_load(&p->pending)) != 0) {
        if (spins < POOL_SPIN) {
            cpu_relax();
            spins++;
            continue;
        }
        atomic_store(&p->caller_sleeping, 1);
        futex_wait(&p->pending, v);
        atomic_store(&p->caller_sleeping, 0);
    }
    pthread_mutex_unlock(&p->run_lock);
}
