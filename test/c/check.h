/*
 * check.h -- the smallest test harness: CHECK records a failure with its
 * location and goes on; run.c prints "N passed, N failed" at the end.
 */
#ifndef KINO_CHECK_H
#define KINO_CHECK_H

#include <stdio.h>

static int checks_passed, checks_failed;

#define CHECK(cond) CHECKF(cond, "%s", #cond)

#define CHECKF(cond, ...)                                        \
    do {                                                         \
        if (cond) {                                              \
            checks_passed++;                                     \
        } else {                                                 \
            checks_failed++;                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)

#endif
