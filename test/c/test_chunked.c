/*
 * test_chunked.c -- the chunked request-body decoder: valid bodies give
 * the same output whole, byte by byte and into a one-byte buffer; bad
 * framing is an error; decoding stops exactly at the end of the body.
 */

/* Decode src feeding `step` input bytes and offering `room` output bytes
 * at a time. Returns the final status; *out receives the body, *used the
 * raw bytes consumed. */
static int decode(const char *src, size_t len, size_t step, size_t room, char *out, size_t *outlen,
                  size_t *used) {
    kino_chunked d;
    size_t in = 0, o = 0;
    int r = KINO_CHUNK_MORE;
    memset(&d, 0, sizeof d);
    while (in < len) {
        size_t avail = len - in < step ? len - in : step, u = 0, produced = 0;
        r = kino_chunked_step(&d, src + in, avail, &u, out + o, room, &produced);
        in += u;
        o += produced;
        if (r == KINO_ERROR || r == KINO_CHUNK_DONE) break;
        if (r == KINO_CHUNK_MORE && u < avail) break; /* must consume all it was given */
    }
    *outlen = o;
    *used = in;
    return r;
}

static const struct {
    const char *raw, *body;
    size_t tail; /* bytes after the body that must not be consumed */
} chunked_valid[] = {
    {"5\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0},
    {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0},
    {"a\r\n0123456789\r\n00\r\n\r\n", "0123456789", 0},
    {"0005\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", 0},
    {"5 ;name\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"5\t;x=\"quoted\"\r\nhello\r\n0\r\n\r\n", "hello", 0},
    {"5\r\nhello\r\n0\r\nX-Trailer: yes\r\nContent-Length: 99\r\n\r\n", "hello", 0},
    {"0\r\n\r\n", "", 0},
    {"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "abc", 16},
};

static const char *const chunked_invalid[] = {
    "x\r\nhello\r\n0\r\n\r\n",
    "\r\nhello\r\n0\r\n\r\n",
    "5\r\nhelloX\r\n0\r\n\r\n",
    "5\nhello\r\n0\r\n\r\n",
    "5\r\nhello\n0\r\n\r\n",
    "-5\r\nhello\r\n0\r\n\r\n",
    "+5\r\nhello\r\n0\r\n\r\n",
    "0x5\r\nhello\r\n0\r\n\r\n",
    "5 \r\nhello\r\n0\r\n\r\n",
    " 5\r\nhello\r\n0\r\n\r\n",
    "5_0\r\nhello\r\n0\r\n\r\n",
    "fffffffffffffffff\r\n",
    "10000000000000000\r\n",
    "5;a\x01\r\nhello\r\n0\r\n\r\n",
    "5\r\nhello\r\n0\r\n\r\r",
    "5\r\nhello\r\n0\r\nX: y\n\r\n",
    "5\r\rhello\r\n0\r\n\r\n",
};

static void test_chunked(void) {
    char out[256];
    size_t outlen, used;
    for (size_t i = 0; i < sizeof chunked_valid / sizeof *chunked_valid; i++) {
        const char *raw = chunked_valid[i].raw;
        size_t len = strlen(raw);
        size_t steps[] = {len, 1, 3};
        size_t rooms[] = {sizeof out, 1, 4};
        for (size_t s = 0; s < 3; s++)
            for (size_t r = 0; r < 3; r++) {
                int st = decode(raw, len, steps[s], rooms[r], out, &outlen, &used);
                CHECKF(st == KINO_CHUNK_DONE && outlen == strlen(chunked_valid[i].body) &&
                           memcmp(out, chunked_valid[i].body, outlen) == 0 &&
                           used == len - chunked_valid[i].tail,
                       "chunked case %zu (step %zu, room %zu): status %d, %zu bytes, used %zu", i,
                       steps[s], rooms[r], st, outlen, used);
            }
    }
    for (size_t i = 0; i < sizeof chunked_invalid / sizeof *chunked_invalid; i++) {
        const char *raw = chunked_invalid[i];
        int st = decode(raw, strlen(raw), strlen(raw), sizeof out, out, &outlen, &used);
        int st1 = decode(raw, strlen(raw), 1, 1, out, &outlen, &used);
        CHECKF(st == KINO_ERROR && st1 == KINO_ERROR, "invalid chunked case %zu accepted (%d, %d)", i,
               st, st1);
    }

    /* a long extension is cut off at KINO_MAX_CHUNK_EXT */
    static char big[KINO_MAX_CHUNK_EXT + 64];
    memset(big, 'e', sizeof big);
    memcpy(big, "5;", 2);
    CHECK(decode(big, sizeof big, sizeof big, sizeof out, out, &outlen, &used) == KINO_ERROR);

    /* an endless trailer section too */
    static char trailer[KINO_MAX_TRAILER + 64];
    memset(trailer, 't', sizeof trailer);
    memcpy(trailer, "0\r\nX: ", 6);
    CHECK(decode(trailer, sizeof trailer, sizeof trailer, sizeof out, out, &outlen, &used) == KINO_ERROR);

    /* an incomplete body asks for more and keeps what it decoded */
    CHECK(decode("5\r\nhel", 6, 6, sizeof out, out, &outlen, &used) == KINO_CHUNK_MORE && outlen == 3);

    /* decoding in place (dst == src) is allowed */
    char inplace[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    kino_chunked d;
    size_t u = 0, o = 0;
    memset(&d, 0, sizeof d);
    CHECK(kino_chunked_step(&d, inplace, strlen(inplace), &u, inplace, sizeof inplace, &o) ==
              KINO_CHUNK_DONE &&
          o == 5 && memcmp(inplace, "abcde", 5) == 0);

    /* chunk sizes stop at 2^63 - 1: past that the framing is bad, not a
     * size to wait for */
    CHECK(decode("7fffffffffffffff\r\nab", 20, 20, sizeof out, out, &outlen, &used) ==
              KINO_CHUNK_MORE && outlen == 2);
    CHECK(decode("8000000000000000\r\n", 18, 18, sizeof out, out, &outlen, &used) == KINO_ERROR);
    CHECK(decode("fffffffffffffff0\r\n", 18, 1, 1, out, &outlen, &used) == KINO_ERROR);

    /* with no output buffer the body is counted, not copied */
    memset(&d, 0, sizeof d);
    u = o = 0;
    const char *two = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
    CHECK(kino_chunked_step(&d, two, strlen(two), &u, NULL, (size_t)-1, &o) == KINO_CHUNK_DONE &&
          o == 5 && u == strlen(two) - 4);
}
