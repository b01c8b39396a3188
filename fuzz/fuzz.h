/*
 * fuzz.h -- what every harness shares. Define FUZZ_NAME (the harness's
 * name, for messages) before including it.
 */
#ifndef KINO_FUZZ_H
#define KINO_FUZZ_H

#include "kino.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property broke: say which, and abort so libFuzzer keeps the input. */
static void fail(const char *what) {
    fprintf(stderr, FUZZ_NAME ": %s\n", what);
    abort();
}

/* An exact-size heap copy of p[0..n), so AddressSanitizer reports any
 * read past n. */
static char *copy_of(const uint8_t *p, size_t n) {
    char *c = malloc(n ? n : 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    return c;
}

#endif
