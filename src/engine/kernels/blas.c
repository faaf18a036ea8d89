/* OpenBLAS, loaded on first use (see blas.h). */
#include "engine/kernels/blas.h"
#include "core/core.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static typeof(cblas_sgemm) *g_sgemm;
static typeof(cblas_dgemm) *g_dgemm;
static char g_err[256];

static void load(void)
{
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(g_err, sizeof g_err, "cannot load OpenBLAS: %s", e ? e : "libopenblas.so.0 not found");
        return;
    }
    typeof(cblas_sgemm) *s = (typeof(cblas_sgemm) *)dlsym(h, "cblas_sgemm");
    typeof(cblas_dgemm) *d = (typeof(cblas_dgemm) *)dlsym(h, "cblas_dgemm");
    void (*threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    if (!s || !d) {
        snprintf(g_err, sizeof g_err, "libopenblas.so.0 has no cblas_sgemm or cblas_dgemm");
        return;
    }
    if (threads)
        threads(1);
    g_sgemm = s;
    g_dgemm = d;
}

int sl_blas_load(char *err, size_t err_size)
{
    pthread_once(&g_once, load);
    if (g_sgemm)
        return 0;
    if (err && err_size)
        snprintf(err, err_size, "%s", g_err);
    return SL_EUNSUPPORTED;
}

/* A product was asked for and there is no library to compute it: stopping
 * beats a wrong answer, and the message names what is missing. */
static void need_blas(void)
{
    char err[256];
    if (sl_blas_load(err, sizeof err) != 0) {
        fprintf(stderr, "sluice: %s (install it with scripts/deps.sh)\n", err);
        abort();
    }
}

void sl_blas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                   float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    need_blas();
    g_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sl_blas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                   double alpha, const double *a, int lda, const double *b, int ldb, double beta, double *c,
                   int ldc)
{
    need_blas();
    g_dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
