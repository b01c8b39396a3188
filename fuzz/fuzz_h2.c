/*
 * fuzz_h2.c -- libFuzzer harness for the HTTP/2 frame layer (kino_h2.c)
 * and, through it, the HPACK decoder (kino_hpack.c).
 *
 * The input is what a client sends after the connection preface (the
 * harness writes the preface, so every input reaches the frame parser).
 * A toy application answers each request at once from inside the
 * callback: a head, a body of a few bytes, on some streams trailers.
 *
 * What it checks, and why:
 *
 *   1. Read boundaries do not matter. The I/O thread feeds whatever a
 *      read returned, so the input fed whole and fed in pieces (cut where
 *      the input's first byte says: every 1..16 bytes) must give the same
 *      verdict, the same callbacks in the same order, and byte-identical
 *      output.
 *
 *   2. What comes out is HTTP/2. The output parses as frames of at most
 *      the default MAX_FRAME_SIZE (nothing here raises it... unless the
 *      peer did: then at most 2^24-1), of known types; at most one GOAWAY
 *      follows a connection error and nothing follows it; the queue never
 *      passes its cap (plus the final GOAWAY).
 *
 *   3. The limits hold: never more open streams than MAX_CONCURRENT_
 *      STREAMS; once feed fails it keeps failing; every request head the
 *      application sees has a method and a path that starts with '/'
 *      (or '*' for OPTIONS, or none for CONNECT).
 */
#define FUZZ_NAME "fuzz_h2"
#include "fuzz.h"
#include "kino_h2.h"

typedef struct run {
    kino_h2 *h;
    uint64_t trace;      /* FNV-1a over the callbacks */
    char *out;           /* all output, in order */
    size_t out_len, out_cap;
    int streams_seen;
} run;

static void mix(run *r, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) r->trace = (r->trace ^ b[i]) * 1099511628211ull;
}

static void collect(run *r) {
    const char *p;
    size_t n = kino_h2_output(r->h, &p);
    if (r->out_len + n > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 65536;
        while (cap < r->out_len + n) cap *= 2;
        r->out = realloc(r->out, cap);
        if (!r->out) abort();
        r->out_cap = cap;
    }
    if (n) memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    kino_h2_output_sent(r->h, n);
}

static void *on_request(void *ctx, uint32_t id, const kino_head *h, int end) {
    run *r = ctx;
    if (!h->method.n) fail("a request without a method");
    int connect = h->method.n == 7 && memcmp(h->method.p, "CONNECT", 7) == 0;
    if (!connect && (!h->target.n || (h->target.p[0] != '/' && h->target.p[0] != '*')))
        fail("a request path that does not start with / or *");
    mix(r, "Q", 1);
    mix(r, &id, sizeof id);
    mix(r, h->method.p, h->method.n);
    mix(r, h->target.p, h->target.n);
    for (size_t i = 0; i < h->nheaders; i++) {
        const kino_header *f = &h->headers[i];
        for (size_t k = 0; k < f->name.n; k++)
            if (f->name.p[k] >= 'A' && f->name.p[k] <= 'Z') fail("an uppercase field name got through");
        mix(r, f->name.p, f->name.n);
        mix(r, f->value.p, f->value.n);
    }
    r->streams_seen++;
    /* answer at once: from inside the callback, as the API allows */
    kino_header f[2] = {{{"content-type", 12}, {"text/plain", 10}}, {{"x-id", 4}, {"1", 1}}};
    if (kino_h2_send_head(r->h, id, 200, f, 2, 0) != KINO_OK) return (void *)1;
    kino_h2_send_data(r->h, id, "hello", 5, id % 4 != 1);
    if (id % 4 == 1) kino_h2_send_trailers(r->h, id, f + 1, 1);
    return (void *)(uintptr_t)id;
}

/* Body bytes are mixed without a tag per call: how a frame's payload
 * was cut must not change the trace. */
static void on_data(void *ctx, void *stream, const char *p, size_t n, int end) {
    run *r = ctx;
    mix(r, p, n);
    if (end) mix(r, "E", 1);
}

static void on_reset(void *ctx, void *stream, uint32_t code) {
    run *r = ctx;
    mix(r, "R", 1);
    mix(r, &code, sizeof code);
}

static void on_writable(void *ctx, void *stream) {
    mix(ctx, "W", 1);
}

static const kino_h2_callbacks cbs = {on_request, on_data, on_reset, on_writable};

/* Feed data[0..size) in pieces of `step` bytes (0: whole). Returns the
 * last feed result. The clock stands still: the budgets never refill,
 * so both ways of feeding meet the same limits. */
static int drive(run *r, const kino_h2_limits *l, const uint8_t *data, size_t size, size_t step) {
    memset(r, 0, sizeof *r);
    r->trace = 14695981039346656037ull;
    r->h = kino_h2_new(l, &cbs, r);
    if (!r->h) abort();
    int rc = kino_h2_feed(r->h, KINO_H2_PREFACE, KINO_H2_PREFACE_LEN, 0);
    collect(r);
    size_t at = 0;
    int failed = 0;
    while (at < size) {
        size_t n = step && size - at > step ? step : size - at;
        char *piece = copy_of(data + at, n);
        rc = kino_h2_feed(r->h, piece, n, 0);
        free(piece);
        if (failed && rc != KINO_ERROR) fail("a failed connection accepted more input");
        if (rc == KINO_ERROR) failed = 1;
        if (kino_h2_streams(r->h) > (int)l->max_streams) fail("more streams than MAX_CONCURRENT_STREAMS");
        const char *p;
        if (kino_h2_output(r->h, &p) > l->output_max + 17) fail("output past its cap");
        collect(r);
        at += n;
    }
    mix(r, &rc, sizeof rc);
    return rc;
}

/* Every output byte is a frame; after a GOAWAY with an error nothing else. */
static void check_output(const run *r) {
    size_t at = 0;
    int error_goaway = 0;
    while (at < r->out_len) {
        if (r->out_len - at < 9) fail("output ends inside a frame head");
        const uint8_t *b = (const uint8_t *)r->out + at;
        uint32_t len = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
        if (b[3] > 0x9) fail("an unknown frame type in the output");
        if (b[3] == 0x5) fail("PUSH_PROMISE in the output");
        if (error_goaway) fail("a frame after an error GOAWAY");
        if (r->out_len - at - 9 < len) fail("output ends inside a frame");
        if (b[3] == 0x7) {
            if (len != 8) fail("GOAWAY of the wrong length");
            uint32_t code = (uint32_t)b[13] << 24 | (uint32_t)b[14] << 16 | (uint32_t)b[15] << 8 | b[16];
            if (code != 0) error_goaway = 1;
        }
        at += 9 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    kino_h2_limits l;
    kino_h2_limits_default(&l, 2);
    l.glitch_burst = 200; /* reachable by fuzzer-sized inputs */
    l.reset_burst = 8;
    l.output_max = 1 << 16;
    size_t step = 1 + data[0] % 16;
    run whole, pieces;
    int a = drive(&whole, &l, data + 1, size - 1, 0);
    int b = drive(&pieces, &l, data + 1, size - 1, step);
    if (a != b) fail("fed whole and in pieces: different verdicts");
    if (whole.trace != pieces.trace) fail("fed whole and in pieces: different callbacks");
    if (whole.out_len != pieces.out_len || memcmp(whole.out, pieces.out, whole.out_len) != 0)
        fail("fed whole and in pieces: different output");
    check_output(&whole);
    kino_h2_free(whole.h);
    kino_h2_free(pieces.h);
    free(whole.out);
    free(pieces.out);
    return 0;
}
