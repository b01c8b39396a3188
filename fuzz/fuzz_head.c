/*
 * fuzz_head.c -- libFuzzer harness for the request-head parser.
 *
 * What it checks, and why:
 *
 *   1. Split versus whole. A server never sees a request head in one
 *      piece on demand: TCP hands it over in arbitrary segments, and
 *      kino_head_end() resumes with a persistent `scanned`. The harness
 *      parses the message once whole (kino_parse_request) and once fed
 *      as growing prefixes, the way the I/O thread does (kino_head_end
 *      on each prefix, then kino_parse_head on the complete head), and
 *      aborts unless both give the same verdict: the same head length, or
 *      "incomplete" both, or the same error status. For a valid head the
 *      method, target, path, query and host spans (as offsets), every
 *      header span, nheaders, content_length, chunked, keep_alive,
 *      expect_continue and is_head must agree too.
 *
 *   2. Invariants of every accepted head, checked independently of the
 *      parser: the head ends with CRLF CRLF and holds no bare CR or LF;
 *      the method and every header name are non-empty tokens; no value
 *      holds CR, LF or NUL or keeps leading/trailing blanks; the path
 *      starts with '/' or is "*"; content_length is -1 without a
 *      Content-Length field and otherwise equals its digits (recomputed
 *      here); chunked excludes Content-Length and needs HTTP/1.1;
 *      HTTP/1.1 carries exactly one Host; head length <= KINO_MAX_HEAD,
 *      nheaders <= KINO_MAX_HEADERS; every span lies inside the buffer.
 *      On error the status is one the parser documents.
 *
 * Every call gets an exact-size heap copy of its bytes, so AddressSanitizer
 * reports any read past the length the parser was given.
 *
 * Input layout: byte 0 holds the number of cut codes K in its low 4 bits
 * and, in bit 4, "dribble": after the cuts, feed one byte at a time. The
 * next K bytes are cut codes (see segment_length); the rest is the
 * message. Without enough bytes for the codes the whole input is the
 * message.
 */
#define FUZZ_NAME "fuzz_head"
#include "fuzz.h"

/* Dribbling one byte per call copies the prefix each time: bound it. */
#define DRIBBLE_MAX 2048

typedef struct verdict {
    long n;          /* head length (> 0), 0 when incomplete, or KINO_ERROR */
    int status;      /* on KINO_ERROR */
    const char *buf; /* the buffer the spans point into */
    kino_head h;
    kino_header hdrs[KINO_MAX_HEADERS];
} verdict;

static verdict whole_v, split_v; /* large: keep them off the stack */

/* ------------------------------------------------------------------ */
/* Small independent helpers (RFC 9110 5.6.2 token)                    */
/* ------------------------------------------------------------------ */

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(kino_span s) {
    if (s.n == 0) return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!is_tchar((unsigned char)s.p[i])) return 0;
    return 1;
}

static int lower(int c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int name_is(kino_span s, const char *lit) {
    size_t n = strlen(lit);
    if (s.n != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != lit[i]) return 0;
    return 1;
}

/* Cut codes: 0..191 mean segments of 1..192 bytes (heads are small, so
 * every interesting cut is reachable); 192..255 jump 1..64 KiB, to reach
 * the request-line (8 KiB) and head (64 KiB) limits. */
static size_t segment_length(uint8_t code) {
    return code < 192 ? (size_t)code + 1 : (size_t)(code - 191) * 1024;
}

/* ------------------------------------------------------------------ */
/* The two ways of parsing                                             */
/* ------------------------------------------------------------------ */

static void parse_whole(const uint8_t *msg, size_t len, verdict *v) {
    char *buf = copy_of(msg, len);
    memset(v, 0, sizeof *v);
    v->buf = buf;
    v->n = kino_parse_request(buf, len, &v->h, v->hdrs, KINO_MAX_HEADERS);
    if (v->n == KINO_INCOMPLETE) v->n = 0;
    if (v->n == KINO_ERROR) v->status = v->h.status;
}

/* One kino_head_end call on an exact copy of the first `len` bytes. */
static long head_end_prefix(const uint8_t *msg, size_t len, size_t *scanned, int *status) {
    char *buf = copy_of(msg, len);
    size_t before = *scanned;
    long n = kino_head_end(buf, len, scanned, status);
    free(buf);
    if (n == 0 && (*scanned < before || *scanned > len)) fail("scanned moved backwards or past len");
    return n;
}

static void parse_split(const uint8_t *msg, size_t len, const uint8_t *cuts, size_t ncuts,
                        int dribble, verdict *v) {
    size_t scanned = 0, pos = 0, k = 0;
    int status = 0;
    long n = 0;
    memset(v, 0, sizeof *v);
    while (n == 0) {
        if (k < ncuts) pos += segment_length(cuts[k++]);
        else if (dribble && len <= DRIBBLE_MAX) pos += 1;
        else pos = len;
        if (pos > len) pos = len;
        n = head_end_prefix(msg, pos, &scanned, &status);
        if (pos == len) break;
    }
    if (n < 0) {
        v->n = KINO_ERROR;
        v->status = status;
        return;
    }
    if (n == 0) return; /* incomplete */
    if ((size_t)n > pos) fail("head_end: head longer than the bytes given");
    /* The server parses the head in place; an exact copy catches reads
     * beyond the head length. */
    char *head = copy_of(msg, (size_t)n);
    v->buf = head;
    v->n = n;
    if (kino_parse_head(head, (size_t)n, &v->h, v->hdrs, KINO_MAX_HEADERS) != KINO_OK) {
        v->n = KINO_ERROR;
        v->status = v->h.status;
    }
}

/* ------------------------------------------------------------------ */
/* Differential check                                                  */
/* ------------------------------------------------------------------ */

static int inside(kino_span s, const char *buf, size_t n) {
    if (s.n == 0 && s.p == NULL) return 1;
    return s.p >= buf && s.p <= buf + n && s.n <= (size_t)(buf + n - s.p);
}

/* Spans of the two verdicts are equal when they sit at the same offset
 * of their buffers, or -- for a span outside both (the absolute-form
 * path "/") -- when they hold the same bytes. */
static int same_span(kino_span a, const verdict *va, kino_span b, const verdict *vb) {
    int ia = inside(a, va->buf, (size_t)va->n), ib = inside(b, vb->buf, (size_t)vb->n);
    if (a.n != b.n || ia != ib) return 0;
    if (a.n == 0) return 1;
    if (ia) return a.p - va->buf == b.p - vb->buf;
    return memcmp(a.p, b.p, a.n) == 0;
}

static void compare(const verdict *a, const verdict *b) {
    if (a->n != b->n) {
        fprintf(stderr, "whole: %ld (status %d), split: %ld (status %d)\n", a->n, a->status,
                b->n, b->status);
        fail("whole and split parses disagree on the verdict");
    }
    if (a->n == KINO_ERROR) {
        if (a->status != b->status) {
            fprintf(stderr, "whole status %d, split status %d\n", a->status, b->status);
            fail("whole and split parses disagree on the error status");
        }
        return;
    }
    if (a->n == 0) return;
    const kino_head *x = &a->h, *y = &b->h;
    if (!same_span(x->method, a, y->method, b)) fail("method differs");
    if (!same_span(x->target, a, y->target, b)) fail("target differs");
    if (!same_span(x->path, a, y->path, b)) fail("path differs");
    if (!same_span(x->query, a, y->query, b)) fail("query differs");
    if (!same_span(x->host, a, y->host, b)) fail("host differs");
    if (x->nheaders != y->nheaders) fail("nheaders differs");
    for (size_t i = 0; i < x->nheaders; i++) {
        if (!same_span(x->headers[i].name, a, y->headers[i].name, b)) fail("header name differs");
        if (!same_span(x->headers[i].value, a, y->headers[i].value, b))
            fail("header value differs");
    }
    if (x->minor != y->minor) fail("minor differs");
    if (x->content_length != y->content_length) fail("content_length differs");
    if (x->chunked != y->chunked) fail("chunked differs");
    if (x->keep_alive != y->keep_alive) fail("keep_alive differs");
    if (x->expect_continue != y->expect_continue) fail("expect_continue differs");
    if (x->is_head != y->is_head) fail("is_head differs");
}

/* ------------------------------------------------------------------ */
/* Invariants of an accepted head                                      */
/* ------------------------------------------------------------------ */

/* The head is CRLF-delimited lines ending in an empty line. */
static void check_lines(const char *buf, size_t n) {
    if (n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0) fail("head does not end in CRLF CRLF");
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\r' && (i + 1 == n || buf[i + 1] != '\n')) fail("bare CR in an accepted head");
        if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r')) fail("bare LF in an accepted head");
    }
}

/* Content-Length = 1*DIGIT, or a list of equal values (RFC 9110 8.6).
 * Returns the value, or -2 for anything else. */
static int64_t length_value(kino_span v, int64_t prev) {
    size_t i = 0;
    int64_t val = -1;
    for (;;) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
        size_t d = i;
        int64_t x = 0;
        while (i < v.n && v.p[i] >= '0' && v.p[i] <= '9') {
            if (x > (INT64_MAX - 9) / 10) return -2;
            x = x * 10 + (v.p[i++] - '0');
        }
        if (i == d || (val >= 0 && x != val) || (prev >= 0 && x != prev)) return -2;
        val = x;
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t')) i++;
        if (i == v.n) return val;
        if (v.p[i++] != ',') return -2;
    }
}

/* Is the last coding of a Transfer-Encoding value "chunked"? Empty list
 * elements are allowed (RFC 9110 5.6.1), so trailing commas are skipped. */
static int ends_with_chunked(kino_span v) {
    size_t e = v.n;
    while (e > 0 && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t' || v.p[e - 1] == ',')) e--;
    size_t b = e;
    while (b > 0 && v.p[b - 1] != ',' && v.p[b - 1] != ' ' && v.p[b - 1] != '\t') b--;
    kino_span last = {v.p + b, e - b};
    return name_is(last, "chunked");
}

static void check_headers(const verdict *v) {
    const kino_head *h = &v->h;
    int64_t cl = -1;
    int hosts = 0, te_chunked = 0, cl_seen = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        kino_span name = h->headers[i].name, val = h->headers[i].value;
        if (!is_token(name)) fail("header name is not a token");
        if (!inside(name, v->buf, (size_t)v->n) || !inside(val, v->buf, (size_t)v->n))
            fail("header span outside the buffer");
        if (val.n && (memchr(val.p, '\r', val.n) || memchr(val.p, '\n', val.n) ||
                      memchr(val.p, '\0', val.n)))
            fail("header value holds CR, LF or NUL");
        if (val.n && (val.p[0] == ' ' || val.p[0] == '\t' || val.p[val.n - 1] == ' ' ||
                      val.p[val.n - 1] == '\t'))
            fail("header value keeps leading or trailing blanks");
        if (name_is(name, "content-length")) {
            cl_seen = 1;
            cl = length_value(val, cl);
            if (cl < 0) fail("accepted a malformed or conflicting Content-Length");
        }
        if (name_is(name, "host")) hosts++;
        if (name_is(name, "transfer-encoding")) te_chunked = ends_with_chunked(val);
    }
    if (h->content_length != (cl_seen ? cl : -1)) fail("content_length does not match the field");
    if (h->chunked && (cl_seen || !te_chunked || h->minor != 1))
        fail("chunked with Content-Length, without a final chunked, or on HTTP/1.0");
    if (hosts > 1 || (h->minor == 1 && hosts != 1))
        fail("accepted several Host fields, or HTTP/1.1 without one");
}

static void check_accepted(const verdict *v) {
    const kino_head *h = &v->h;
    size_t n = (size_t)v->n;
    if (n > KINO_MAX_HEAD) fail("head longer than KINO_MAX_HEAD");
    if (h->nheaders > KINO_MAX_HEADERS) fail("more than KINO_MAX_HEADERS headers");
    if (h->headers != v->hdrs) fail("headers array is not the caller's");
    if (h->minor != 0 && h->minor != 1) fail("minor is neither 0 nor 1");
    check_lines(v->buf, n);
    if (!is_token(h->method)) fail("method is not a token");
    if (!inside(h->method, v->buf, n) || !inside(h->target, v->buf, n) ||
        !inside(h->query, v->buf, n) || !inside(h->host, v->buf, n))
        fail("span outside the buffer");
    if (h->path.n == 0) fail("empty path");
    if (h->path.p[0] != '/' && !(h->path.n == 1 && h->path.p[0] == '*'))
        fail("path neither starts with '/' nor is \"*\"");
    /* The one span allowed outside the buffer: absolute-form without a
     * path ("http://h" or "http://h?q") gets a static "/" (as kino_http.c and
     * test/c/test_parser.c expect). */
    if (!inside(h->path, v->buf, n) && !(h->path.n == 1 && h->target.n && h->target.p[0] != '/'))
        fail("path outside the buffer");
    if (h->is_head != (h->method.n == 4 && memcmp(h->method.p, "HEAD", 4) == 0))
        fail("is_head does not match the method");
    check_headers(v);
}

static void check_rejected(const verdict *v) {
    switch (v->status) {
    case 400: case 414: case 431: case 501: case 505:
        return;
    default:
        fprintf(stderr, "status %d\n", v->status);
        fail("error with an undocumented status");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *cuts = data, *msg = data;
    size_t ncuts = 0, len = size;
    int dribble = 0;
    if (size > 0 && (size_t)(data[0] & 15) + 1 <= size) {
        ncuts = data[0] & 15;
        dribble = (data[0] & 16) != 0;
        cuts = data + 1;
        msg = data + 1 + ncuts;
        len = size - 1 - ncuts;
    }
    parse_whole(msg, len, &whole_v);
    parse_split(msg, len, cuts, ncuts, dribble, &split_v);
    compare(&whole_v, &split_v);
    if (whole_v.n > 0) {
        check_accepted(&whole_v);
        check_accepted(&split_v);
    } else if (whole_v.n == KINO_ERROR) {
        check_rejected(&whole_v);
    }
    free((void *)whole_v.buf);
    free((void *)split_v.buf);
    return 0;
}
