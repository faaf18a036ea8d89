/* STREAM-style triad a[i] = b[i] + s * c[i] over double arrays, run with 1
 * and 2 threads (pthreads, each thread owning one contiguous slice that it
 * also first-touched), best of N runs. Reported bandwidth counts the bytes the
 * kernel names: 3 arrays x 8 bytes x n elements per run (two reads, one
 * write), as STREAM does; the hardware moves a little more because each
 * written line is first read (write-allocate), so this is a conservative,
 * comparable figure.
 *
 * usage: triad [MiB_per_array (default 128)] [runs (default 10)] [max_threads (default 2)]
 * prints one line per thread count: "triad threads=T GB/s=X" (GB = 1e9 bytes). */
#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRIAD_MAX_THREADS 16

typedef struct slice {
    double *a, *b, *c;
    size_t lo, hi;
    double s;
    int mode; /* 0: first-touch init, 1: triad */
} slice;

static void *work(void *p)
{
    slice *z = p;
    double *restrict a = z->a, *restrict b = z->b, *restrict c = z->c;
    if (z->mode == 0) {
        for (size_t i = z->lo; i < z->hi; i++) {
            a[i] = 0.0;
            b[i] = 1.0 + (double)(i & 7);
            c[i] = 2.0;
        }
    } else {
        const double s = z->s;
        for (size_t i = z->lo; i < z->hi; i++)
            a[i] = b[i] + s * c[i];
    }
    return NULL;
}

/* Runs mode over [0, n) on nt threads (the calling thread takes slice 0). */
static int run(double *a, double *b, double *c, size_t n, int nt, int mode)
{
    pthread_t th[TRIAD_MAX_THREADS];
    slice sl[TRIAD_MAX_THREADS];
    for (int t = 0; t < nt; t++) {
        sl[t] = (slice){a, b, c, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt,
                        3.0, mode};
        if (t > 0 && pthread_create(&th[t], NULL, work, &sl[t]) != 0) {
            fprintf(stderr, "triad: pthread_create failed\n");
            for (int u = 1; u < t; u++)
                pthread_join(th[u], NULL);
            return -1;
        }
    }
    work(&sl[0]);
    for (int t = 1; t < nt; t++)
        pthread_join(th[t], NULL);
    return 0;
}

static long arg(int argc, char **argv, int i, long def, long lo, long hi)
{
    if (argc <= i)
        return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "triad: argument %d must be an integer in %ld..%ld\n", i, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long mib = arg(argc, argv, 1, 128, 16, 4096);
    long runs = arg(argc, argv, 2, 10, 1, 1000);
    long maxt = arg(argc, argv, 3, 2, 1, TRIAD_MAX_THREADS);
    size_t n = (size_t)mib * 1024 * 1024 / sizeof(double);
    int rc = 0;
    for (int nt = 1; nt <= maxt && !rc; nt++) {
        /* fresh arrays per thread count so that first touch matches the slices */
        /* huge pages, as the engine keeps its repacked weights */
        double *a = sl_huge_alloc(n * sizeof(double)), *b = sl_huge_alloc(n * sizeof(double)),
               *c = sl_huge_alloc(n * sizeof(double));
        if (!a || !b || !c) {
            fprintf(stderr, "triad: cannot allocate 3 x %ld MiB\n", mib);
            rc = 1;
        } else if (run(a, b, c, n, nt, 0)) {
            rc = 1;
        } else {
            double best = 1e30;
            for (long r = 0; r < runs && !rc; r++) {
                uint64_t t0 = sl_now_ns();
                rc = run(a, b, c, n, nt, 1) ? 1 : 0;
                double sec = (double)(sl_now_ns() - t0) / 1e9;
                if (sec < best)
                    best = sec;
            }
            /* keep the result observable so the stores cannot be dropped */
            volatile double sink = a[n / 2];
            (void)sink;
            double bytes = 3.0 * sizeof(double) * (double)n;
            if (!rc)
                printf("triad threads=%d array_MiB=%ld runs=%ld best_s=%.6f GB/s=%.2f\n", nt, mib,
                       runs, best, bytes / best / 1e9);
        }
        sl_huge_free(a, n * sizeof(double));
        sl_huge_free(b, n * sizeof(double));
        sl_huge_free(c, n * sizeof(double));
    }
    return rc;
}
