/*
 * fuzz_pipeline.c -- libFuzzer harness for pipelined requests.
 *
 * What it checks, and why: a keep-alive connection is a byte stream of
 * requests, each a head and a body framed by Content-Length or chunked
 * coding. If any step miscounts, the next "request" starts in the middle
 * of a body -- the root of request smuggling. The harness walks the input
 * the way a connection does: parse a head at the current offset
 * (kino_parse_request), skip its body (Content-Length bytes, or decode
 * it with kino_chunked_step), and go on until an error or an incomplete
 * request. It aborts unless the byte accounting holds:
 *
 *   - every step (head or body) consumes > 0 bytes, except an empty body;
 *   - no step claims more bytes than remain, so the sum of consumed bytes
 *     never exceeds the input and offsets only grow;
 *   - a head's length is where kino_head_end says it ends, and that head
 *     ends with CRLF CRLF;
 *   - the decoded chunked body is never longer than the raw bytes used.
 *
 * Each parse gets an exact-size heap copy of the rest of the stream, so
 * AddressSanitizer reports any read past it.
 */
#define FUZZ_NAME "fuzz_pipeline"
#include "fuzz.h"

#define OUT_ROOM 256 /* decode chunked bodies through a small buffer */

static kino_header hdrs[KINO_MAX_HEADERS];

/* Parse the head at the start of rest[0..n). Returns its length, or 0
 * when the stream ends here (error or incomplete). */
static size_t take_head(const uint8_t *rest, size_t n, kino_head *h) {
    char *buf = copy_of(rest, n);
    long r = kino_parse_request(buf, n, h, hdrs, KINO_MAX_HEADERS);
    size_t scanned = 0;
    int status = 0;
    long end = kino_head_end(buf, n, &scanned, &status);
    free(buf);
    if (r == KINO_ERROR || r == KINO_INCOMPLETE) return 0;
    if (r <= 0) fail("kino_parse_request returned an unknown value");
    if ((size_t)r > n) fail("head longer than the bytes left");
    if (r != end) fail("head length differs from kino_head_end");
    if (r < 4 || memcmp(rest + r - 4, "\r\n\r\n", 4) != 0) fail("head does not end in CRLF CRLF");
    return (size_t)r;
}

/* Decode a chunked body at rest[0..n). Returns the raw bytes it used,
 * or 0 when the stream ends inside it or it is malformed. */
static size_t take_chunked(const uint8_t *rest, size_t n) {
    kino_chunked d = {0};
    char out[OUT_ROOM];
    size_t pos = 0, decoded = 0;
    if (n == 0) return 0; /* the stream ends right after the head */
    char *buf = copy_of(rest, n);
    for (;;) {
        size_t used = 0, got = 0;
        int st = kino_chunked_step(&d, buf + pos, n - pos, &used, out, sizeof out, &got);
        if (used > n - pos) fail("chunked step used more bytes than given");
        if (got > sizeof out) fail("chunked step produced more than the room given");
        if (used == 0 && got == 0 && st != KINO_CHUNK_DONE && st != KINO_ERROR)
            fail("chunked step made no progress");
        pos += used;
        decoded += got;
        if (decoded > pos) fail("decoded more bytes than the raw bytes used");
        if (st == KINO_ERROR) break;
        if (st == KINO_CHUNK_DONE) {
            free(buf);
            if (pos == 0) fail("chunked body of zero bytes");
            return pos;
        }
        if (st == KINO_CHUNK_MORE) {
            if (pos != n) fail("MORE without consuming all input");
            break;
        }
    }
    free(buf);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    kino_head h;
    while (off < size) {
        size_t before = off;
        size_t n = take_head(data + off, size - off, &h);
        if (n == 0) break;
        off += n;
        if (h.chunked) {
            if (h.content_length != -1) fail("chunked and Content-Length together");
            size_t b = take_chunked(data + off, size - off);
            if (b == 0) break;
            off += b;
        } else if (h.content_length > 0) {
            if ((uint64_t)h.content_length > size - off) break; /* body incomplete */
            off += (size_t)h.content_length;
        } else if (h.content_length < -1) {
            fail("negative Content-Length");
        }
        if (off <= before || off > size) fail("byte accounting: offset did not grow within the input");
    }
    if (off > size) fail("consumed more bytes than the input holds");
    return 0;
}
