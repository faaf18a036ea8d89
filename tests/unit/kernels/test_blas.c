/* OpenBLAS loaded on first use (engine/kernels/blas.h): nothing of it, nor
 * libquadmath, is in the process before the first product; the products are
 * right; printf is on glibc's fast path until then. */
#include "engine/kernels/blas.h"
#include "test.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Whether a mapped file's name contains needle. */
static bool mapped(const char *needle)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void test_loaded_on_first_use(void)
{
    EXPECT(!mapped("libopenblas"));
    EXPECT(!mapped("libquadmath"));
    EXPECT(!mapped("libgfortran"));

    /* C = A (2x3) * B^T, B 2x3: row-major, as the engine calls it */
    const float a[6] = {1, 2, 3, 4, 5, 6};
    const float b[6] = {1, 0, -1, 2, 1, 0};
    float c[4] = {0};
    sl_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2, 2, 3, 1.0f, a, 3, b, 3, 0.0f, c, 2);
    EXPECT_EQ_INT((int)c[0], -2);
    EXPECT_EQ_INT((int)c[1], 4);
    EXPECT_EQ_INT((int)c[2], -2);
    EXPECT_EQ_INT((int)c[3], 13);
    EXPECT(mapped("libopenblas"));

    const double da[4] = {1, 2, 3, 4}, db[4] = {0.5, 0, 0, 2};
    double dc[4] = {0};
    sl_blas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0, da, 2, db, 2, 0.0, dc, 2);
    EXPECT(dc[0] == 0.5 && dc[1] == 4 && dc[2] == 1.5 && dc[3] == 8);

    char err[256] = "";
    EXPECT_EQ_INT(sl_blas_load(err, sizeof err), 0);
    EXPECT_EQ_STR(err, "");
}

int main(void)
{
    RUN(test_loaded_on_first_use);
    return TEST_REPORT();
}
