/* Minimal typed test asserts: each failure prints both values and the place.
 * A test file defines static void test_x(void) functions and a main that does
 *     RUN(test_x); ... return TEST_REPORT();
 * and prints the closing line "N passed, N failed". */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;

#define T_FAIL_AT(...)                                                                         \
    do {                                                                                       \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                       \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                   \
        t_cur_failed = 1;                                                                      \
    } while (0)

#define EXPECT(c)                                                                              \
    do {                                                                                       \
        if (!(c))                                                                              \
            T_FAIL_AT("expected %s", #c);                                                      \
    } while (0)

#define EXPECT_EQ_INT(a, b)                                                                    \
    do {                                                                                       \
        long long _a = (long long)(a), _b = (long long)(b);                                    \
        if (_a != _b)                                                                          \
            T_FAIL_AT("expected %s == %s, got %lld vs %lld", #a, #b, _a, _b);                  \
    } while (0)

#define EXPECT_EQ_UINT(a, b)                                                                   \
    do {                                                                                       \
        unsigned long long _a = (unsigned long long)(a), _b = (unsigned long long)(b);         \
        if (_a != _b)                                                                          \
            T_FAIL_AT("expected %s == %s, got %llu vs %llu", #a, #b, _a, _b);                  \
    } while (0)

#define EXPECT_EQ_STR(a, b)                                                                    \
    do {                                                                                       \
        const char *_a = (a), *_b = (b);                                                       \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                 \
            T_FAIL_AT("expected %s == %s, got \"%s\" vs \"%s\"", #a, #b, _a ? _a : "(null)",   \
                      _b ? _b : "(null)");                                                     \
    } while (0)

#define EXPECT_CONTAINS(hay, needle)                                                           \
    do {                                                                                       \
        const char *_h = (hay), *_n = (needle);                                                \
        if (!_h || !strstr(_h, _n))                                                            \
            T_FAIL_AT("expected \"%s\" to contain \"%s\"", _h ? _h : "(null)", _n);            \
    } while (0)

#define EXPECT_NEAR(a, b, tol)                                                                 \
    do {                                                                                       \
        double _a = (double)(a), _b = (double)(b), _t = (double)(tol);                         \
        if (!(fabs(_a - _b) <= _t))                                                            \
            T_FAIL_AT("expected %s ~= %s (tol %g), got %.9g vs %.9g", #a, #b, _t, _a, _b);     \
    } while (0)

#define RUN(fn)                                                                                \
    do {                                                                                       \
        t_cur_failed = 0;                                                                      \
        fn();                                                                                  \
        if (t_cur_failed) {                                                                    \
            t_failed++;                                                                        \
            fprintf(stderr, "FAIL %s\n", #fn);                                                 \
        } else {                                                                               \
            t_passed++;                                                                        \
        }                                                                                      \
    } while (0)

#define TEST_REPORT() (printf("%d passed, %d failed\n", t_passed, t_failed), t_failed ? 1 : 0)

#endif
