/*
 * OpenBLAS, loaded on first use instead of linked.
 *
 * Linking OpenBLAS brings libgfortran and libquadmath into every process, and
 * libquadmath registers printf hooks when it loads. With any hook registered,
 * glibc sends every printf-family call of the process down its slow
 * positional path: h2o's response heads and chunk sizes, and all of ours. A
 * `sluice serve` in front of remote upstreams never multiplies matrices, so it
 * now never loads any of them (nor OpenBLAS's thread).
 *
 * The first call loads libopenblas.so.0 and sets it to one thread: the engine's
 * and the trainer's pools split every product by rows and call OpenBLAS on
 * their own threads. Left to itself OpenBLAS keeps a second set of threads
 * whose idle spinning takes CPU from the pool on small machines (decode was
 * 4-5 % slower).
 *
 * Thread-safe. If the library cannot be loaded, the process stops with a
 * message naming it (it is a dependency: scripts/deps.sh installs it).
 */
#ifndef SL_ENGINE_BLAS_H
#define SL_ENGINE_BLAS_H

#include <cblas.h> /* types and constants only: nothing here links to OpenBLAS */

/* Loads OpenBLAS now. Returns 0, or SL_EUNSUPPORTED with dlerror's text in
 * err. Idempotent; the later calls return the first result. */
int sl_blas_load(char *err, size_t err_size);

/* cblas_sgemm and cblas_dgemm, with the same arguments. */
void sl_blas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                   float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void sl_blas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                   double alpha, const double *a, int lda, const double *b, int ldb, double beta, double *c,
                   int ldc);

#endif
