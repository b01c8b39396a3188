/*
 * fuzz_proxy.c -- libFuzzer harness for the PROXY protocol header parser.
 *
 * What it checks, and why:
 *
 *   1. Read boundaries do not matter. The I/O thread calls
 *      kino_proxy_parse() on whatever has arrived so far, so the verdict on
 *      a prefix must agree with the verdict on the whole input: while a
 *      header is incomplete every prefix says 0 (more bytes); once a prefix
 *      holds a complete header, every longer input gives the same length
 *      and the same address; once a prefix is refused, every longer input
 *      is refused too.
 *
 *   2. What a success reports is sane: a length within the input and
 *      within KINO_PROXY_MAX (or 107 bytes for a text header), and, unless
 *      the header says to keep the socket's addresses, an address that
 *      inet_pton reads back and a port from 0 to 65535.
 *
 * Every call gets an exact-size heap copy, so AddressSanitizer reports a
 * read past the bytes given.
 */
#define FUZZ_NAME "fuzz_proxy"
#include "fuzz.h"

#include <arpa/inet.h>

static long parse_copy(const uint8_t *data, size_t n, kino_proxy *out) {
    char *copy = copy_of(data, n);
    long r = kino_proxy_parse(copy, n, out);
    free(copy);
    return r;
}

static void check_success(const uint8_t *data, size_t size, long r, const kino_proxy *px) {
    unsigned char bin[16];
    if ((size_t)r > size || r > KINO_PROXY_MAX) fail("header longer than the input or the limit");
    if (data[0] == 'P' && r > 107) fail("text header longer than 107 bytes");
    if (px->local) return;
    if (memchr(px->addr, 0, sizeof px->addr) == NULL) fail("address not terminated");
    if (inet_pton(AF_INET, px->addr, bin) != 1 && inet_pton(AF_INET6, px->addr, bin) != 1)
        fail("address does not read back");
    if (px->port < 0 || px->port > 65535) fail("port out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kino_proxy whole, part;
    long r = parse_copy(data, size, &whole);
    if (r > 0) check_success(data, size, r, &whole);
    /* every prefix (the first 512 one by one, then every 61st) */
    int refused = 0;
    for (size_t k = 0; k < size; k += k < 512 ? 1 : 61) {
        long p = parse_copy(data, k, &part);
        if (refused && p != KINO_ERROR) fail("a refused prefix became acceptable");
        if (p == KINO_ERROR) {
            refused = 1;
            if (r != KINO_ERROR) fail("a prefix was refused but the whole input was not");
        } else if (p == 0) {
            if (r > 0 && (size_t)r <= k) fail("complete header reported incomplete");
        } else {
            if (p != r) fail("a prefix and the whole input disagree on the length");
            if (part.local != whole.local || (!part.local && (part.port != whole.port ||
                                                               strcmp(part.addr, whole.addr) != 0)))
                fail("a prefix and the whole input disagree on the address");
        }
    }
    return 0;
}
