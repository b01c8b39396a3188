/*
 * fuzz_chunked.c -- libFuzzer harness for the chunked body decoder.
 *
 * What it checks, and why:
 *
 *   1. Whole versus pieces. The server feeds kino_chunked_step() whatever
 *      recv() returned, into whatever room the application's read buffer
 *      has. The harness decodes the input once in a single call and once
 *      in fuzzer-chosen pieces with fuzzer-chosen output buffer sizes
 *      (down to 1 byte), and aborts unless both give the same status,
 *      the same decoded bytes and the same count of raw bytes used.
 *
 *   2. The API contract of every call: used <= bytes given, out <= room,
 *      MORE means all input was consumed, FULL means the output buffer is
 *      full, and each call makes progress (bytes used or produced, or a
 *      final status), so a caller looping on it can never spin.
 *
 *   3. A reference decoder written here from RFC 9112 section 7.1, strict
 *      grammar (chunk-ext and trailer field-lines included), with Kino's
 *      documented limits (a chunk size must fit in 64 bits; a chunk line
 *      holds at most KINO_MAX_CHUNK_EXT bytes besides the byte that ends
 *      the size; trailer lines hold at most KINO_MAX_TRAILER bytes in all).
 *      Kino and the reference must agree on accept / reject / incomplete;
 *      on accept the decoded length must equal the sum of the chunk sizes,
 *      and the bytes used and the decoded bytes must be the same.
 *
 *      Kino is knowingly more lenient in two places (doc/fuzzing.md):
 *      it skips chunk extensions as any run of field-value bytes after
 *      ";" and trailer lines as any run of field-value bytes, without
 *      checking their grammar. When the strict reference rejects and Kino
 *      does not, the reference is run again in a lenient mode that models
 *      just those two rules; Kino must agree with that. Set
 *      FUZZ_CHUNKED_STRICT=1 in the environment to abort on these cases too.
 *
 * Input layout: byte 0 holds the number K (low 4 bits) of plan bytes that
 * follow; the rest is the chunked body. Plan byte i (used cyclically) sets
 * the size of the next input piece (low nibble, see piece_size) and of the
 * output buffer of the next call (high nibble, see out_size). Without
 * plan bytes the body comes in one piece and is decoded into 1-byte
 * output buffers.
 */
#define FUZZ_NAME "fuzz_chunked"
#include "fuzz.h"

enum { V_MORE, V_DONE, V_BAD }; /* incomplete, complete, rejected */

typedef struct result {
    int verdict;
    size_t used; /* raw bytes consumed */
    size_t out;  /* decoded bytes in data */
    char *data;
} result;

static int strict_only; /* FUZZ_CHUNKED_STRICT=1 */
static int lenient_noted;

static const char *verdict_name(int v) {
    return v == V_DONE ? "done" : v == V_BAD ? "rejected" : "incomplete";
}

/* ------------------------------------------------------------------ */
/* Kino, in one call and in pieces                                     */
/* ------------------------------------------------------------------ */

static int verdict_of(int st) {
    if (st == KINO_CHUNK_DONE) return V_DONE;
    if (st == KINO_ERROR) return V_BAD;
    return V_MORE;
}

/* One call on exact-size copies, with the per-call contract checked. */
static int step(kino_chunked *d, const uint8_t *src, size_t n, char *dst, size_t cap,
                size_t *used, size_t *out) {
    char *s = copy_of(src, n);
    char *o = malloc(cap);
    if (!o) abort();
    *used = *out = (size_t)-1;
    int st = kino_chunked_step(d, s, n, used, o, cap, out);
    if (st != KINO_CHUNK_MORE && st != KINO_CHUNK_FULL && st != KINO_CHUNK_DONE &&
        st != KINO_ERROR)
        fail("unknown status");
    if (*used > n) fail("used more bytes than given");
    if (*out > cap) fail("produced more bytes than the room given");
    if (st == KINO_CHUNK_MORE && *used != n) fail("MORE without consuming all input");
    if (st == KINO_CHUNK_FULL && *out != cap) fail("FULL with room left");
    if (st == KINO_ERROR && *used >= n) fail("ERROR does not point at a byte given");
    if (*used == 0 && *out == 0 && st != KINO_CHUNK_DONE && st != KINO_ERROR)
        fail("no progress");
    memcpy(dst, o, *out);
    free(o);
    free(s);
    return st;
}

static void kino_whole(const uint8_t *in, size_t len, result *r) {
    kino_chunked d = {0};
    size_t used = 0, out = 0;
    int st = KINO_CHUNK_MORE;
    if (len > 0) st = step(&d, in, len, r->data, len, &used, &out);
    if (st == KINO_CHUNK_FULL) fail("FULL although the output could hold the whole input");
    r->verdict = verdict_of(st);
    r->used = used;
    r->out = out;
}

/* Piece sizes 1..4096 and "the rest"; output sizes 1..8192 and "enough". */
static size_t piece_size(unsigned code, size_t rest) {
    static const size_t sizes[15] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 32, 64, 128, 512, 4096};
    return code < 15 && sizes[code] < rest ? sizes[code] : rest;
}

static size_t out_size(unsigned code, size_t len) {
    static const size_t sizes[15] = {1, 2, 3, 4, 5, 7, 8, 13, 16, 32, 64, 100, 256, 1024, 8192};
    return code < 15 ? sizes[code] : (len ? len : 1);
}

static void kino_pieces(const uint8_t *in, size_t len, const uint8_t *plan, size_t nplan,
                        result *r) {
    static const uint8_t default_plan = 0x0f; /* one piece, 1-byte output */
    kino_chunked d = {0};
    size_t pos = 0, avail = 0, k = 0;
    int st = KINO_CHUNK_MORE;
    char *dst = malloc(len + 8192);
    if (!dst) abort();
    if (nplan == 0) {
        plan = &default_plan;
        nplan = 1;
    }
    r->out = 0;
    for (;;) {
        uint8_t p = plan[k++ % nplan];
        size_t used, out;
        if (st == KINO_CHUNK_MORE) { /* all given input consumed: give more */
            if (avail == len) break;
            avail += piece_size(p & 15, len - avail);
        }
        st = step(&d, in + pos, avail - pos, dst, out_size(p >> 4, len), &used, &out);
        if (r->out + out > len) fail("decoded more bytes than the input holds");
        memcpy(r->data + r->out, dst, out);
        r->out += out;
        pos += used;
        if (st == KINO_CHUNK_DONE || st == KINO_ERROR) break;
    }
    free(dst);
    r->verdict = verdict_of(st);
    r->used = pos;
}

/* ------------------------------------------------------------------ */
/* Reference decoder (RFC 9112 7.1)                                    */
/*                                                                     */
/*   chunked-body = *chunk last-chunk trailer-section CRLF             */
/*   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF      */
/*   last-chunk   = 1*("0") [ chunk-ext ] CRLF                         */
/*   chunk-ext    = *( BWS ";" BWS chunk-ext-name                      */
/*                     [ BWS "=" BWS chunk-ext-val ] )                 */
/*   chunk-ext-name = token; chunk-ext-val = token / quoted-string     */
/*   trailer-section = *( field-line CRLF )                            */
/*   field-line   = field-name ":" OWS field-value OWS                 */
/*                                                                     */
/* A recursive-descent reader over the whole input. Every choice is    */
/* made on the next byte, so running out of bytes (R_SHORT) means      */
/* "incomplete" exactly when no byte so far was wrong.                 */
/* ------------------------------------------------------------------ */

enum { R_OK, R_SHORT, R_BAD };

typedef struct ref {
    const uint8_t *p;
    size_t len, pos;
    int lenient;       /* model Kino's two leniencies (see the top) */
    int in_size_line;  /* count bytes against KINO_MAX_CHUNK_EXT */
    size_t line_start, digits;
    int in_trailer;    /* count bytes against KINO_MAX_TRAILER */
    size_t trailer;
    size_t out;
    char *data;
} ref;

static int is_tchar(int c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c > 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_vchar(int c) {
    return c >= 0x21 && c <= 0x7e;
}

static int is_ws(int c) {
    return c == ' ' || c == '\t';
}

/* field-vchar, SP or HTAB: a byte a field value may hold */
static int is_value(int c) {
    return is_vchar(c) || c >= 0x80 || is_ws(c);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int peek(const ref *r) {
    return r->pos < r->len ? r->p[r->pos] : -1;
}

/* Consume one byte, counting it against the limit of its line. */
static int take(ref *r) {
    r->pos++;
    if (r->in_size_line) {
        size_t n = r->pos - r->line_start;
        if (n > r->digits) n--; /* the byte that ends the size is free */
        if (n > KINO_MAX_CHUNK_EXT) return R_BAD;
    }
    if (r->in_trailer && ++r->trailer > KINO_MAX_TRAILER) return R_BAD;
    return R_OK;
}

static int expect_byte(ref *r, int want) {
    int c = peek(r);
    if (c < 0) return R_SHORT;
    if (c != want) return R_BAD;
    return take(r);
}

static int crlf(ref *r) {
    int st = expect_byte(r, '\r');
    return st != R_OK ? st : expect_byte(r, '\n');
}

/* *( SP / HTAB ); *seen tells whether there was any. */
static int skip_ws(ref *r, int *seen) {
    *seen = 0;
    while (is_ws(peek(r))) {
        *seen = 1;
        if (take(r) != R_OK) return R_BAD;
    }
    return peek(r) < 0 ? R_SHORT : R_OK;
}

static int token(ref *r) {
    int c = peek(r);
    if (c < 0) return R_SHORT;
    if (!is_tchar(c)) return R_BAD;
    while (is_tchar(peek(r)))
        if (take(r) != R_OK) return R_BAD;
    return peek(r) < 0 ? R_SHORT : R_OK;
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 5.6.4) */
static int quoted_string(ref *r) {
    int st = expect_byte(r, '"');
    if (st != R_OK) return st;
    for (;;) {
        int c = peek(r);
        if (c < 0) return R_SHORT;
        if (c == '"') return take(r);
        if (c == '\\') {
            if (take(r) != R_OK) return R_BAD;
            c = peek(r);
            if (c < 0) return R_SHORT;
            if (!is_value(c)) return R_BAD;
        } else if (!(is_ws(c) || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
                     (c >= 0x5d && c <= 0x7e) || c >= 0x80)) {
            return R_BAD;
        }
        if (take(r) != R_OK) return R_BAD;
    }
}

/* Strict chunk-ext, up to (not including) the CR. */
static int ext_strict(ref *r) {
    for (;;) {
        int ws, st, c;
        if ((st = skip_ws(r, &ws)) != R_OK) return st;
        c = peek(r);
        if (c == '\r' && !ws) return R_OK; /* BWS only comes before ";" */
        if (c != ';') return R_BAD;
        if (take(r) != R_OK) return R_BAD;
        if ((st = skip_ws(r, &ws)) != R_OK) return st;
        if ((st = token(r)) != R_OK) return st; /* chunk-ext-name */
        if ((st = skip_ws(r, &ws)) != R_OK) return st;
        if (peek(r) != '=') {
            if (peek(r) == '\r' && ws) return R_BAD;
            continue;
        }
        if (take(r) != R_OK) return R_BAD;
        if ((st = skip_ws(r, &ws)) != R_OK) return st;
        st = peek(r) == '"' ? quoted_string(r) : token(r); /* chunk-ext-val */
        if (st != R_OK) return st;
        if (peek(r) < 0) return R_SHORT;
    }
}

/* Kino's rule: [ *WSP ";" *field-value-byte ], up to the CR. */
static int ext_lenient(ref *r) {
    int ws, st = skip_ws(r, &ws);
    if (st != R_OK) return st;
    if (peek(r) == '\r' && !ws) return R_OK;
    if (peek(r) != ';') return R_BAD;
    if (take(r) != R_OK) return R_BAD;
    while (is_value(peek(r)))
        if (take(r) != R_OK) return R_BAD;
    if (peek(r) < 0) return R_SHORT;
    return peek(r) == '\r' ? R_OK : R_BAD;
}

/* chunk-size [ chunk-ext ] CRLF */
static int size_line(ref *r, uint64_t *size) {
    uint64_t v = 0;
    int st, h;
    r->line_start = r->pos;
    r->digits = 0;
    r->in_size_line = 1;
    while ((h = hexval(peek(r))) >= 0) {
        if (v > ((uint64_t)INT64_MAX - (uint64_t)h) / 16) return R_BAD; /* 2^63 or more */
        v = v * 16 + (uint64_t)h;
        r->digits++;
        if (take(r) != R_OK) return R_BAD;
    }
    if (peek(r) < 0) return R_SHORT;
    if (r->digits == 0) return R_BAD;
    st = r->lenient ? ext_lenient(r) : ext_strict(r);
    if (st != R_OK) return st;
    r->in_size_line = 0;
    *size = v;
    return crlf(r);
}

/* chunk-data CRLF; the data is copied out, as far as it goes. */
static int chunk_data(ref *r, uint64_t size) {
    size_t have = r->len - r->pos;
    size_t n = size < have ? (size_t)size : have;
    memcpy(r->data + r->out, r->p + r->pos, n);
    r->out += n;
    r->pos += n;
    if (n < size) return R_SHORT;
    return crlf(r);
}

/* One trailer line, up to the CR: strict field-line, or (lenient) any
 * run of field-value bytes. */
static int trailer_line(ref *r) {
    int st;
    if (!r->lenient) {
        if ((st = token(r)) != R_OK) return st; /* field-name */
        if ((st = expect_byte(r, ':')) != R_OK) return st;
    }
    while (is_value(peek(r)))
        if (take(r) != R_OK) return R_BAD;
    if (peek(r) < 0) return R_SHORT;
    return peek(r) == '\r' ? R_OK : R_BAD;
}

/* trailer-section CRLF */
static int trailer_section(ref *r) {
    for (;;) {
        int st, c = peek(r);
        if (c < 0) return R_SHORT;
        if (c == '\r') return crlf(r);
        r->in_trailer = 1;
        st = trailer_line(r);
        r->in_trailer = 0;
        if (st != R_OK) return st;
        if ((st = crlf(r)) != R_OK) return st;
    }
}

static int chunked_body(ref *r) {
    for (;;) {
        uint64_t size = 0;
        int st = size_line(r, &size);
        if (st != R_OK) return st;
        if (size == 0) return trailer_section(r); /* last-chunk */
        if ((st = chunk_data(r, size)) != R_OK) return st;
    }
}

static void reference(const uint8_t *in, size_t len, int lenient, result *res) {
    ref r;
    memset(&r, 0, sizeof r);
    r.p = in;
    r.len = len;
    r.lenient = lenient;
    r.data = res->data;
    int st = chunked_body(&r);
    res->verdict = st == R_OK ? V_DONE : st == R_BAD ? V_BAD : V_MORE;
    res->used = r.pos;
    res->out = r.out;
}

/* ------------------------------------------------------------------ */
/* Comparisons                                                         */
/* ------------------------------------------------------------------ */

static void same_decoding(const result *a, const result *b, const char *what) {
    if (a->out != b->out || memcmp(a->data, b->data, a->out) != 0) {
        fprintf(stderr, "%s: decoded %zu vs %zu bytes\n", what, a->out, b->out);
        fail("decoded bytes differ");
    }
}

static void compare_kino(const result *whole, const result *pieces) {
    if (whole->verdict != pieces->verdict) {
        fprintf(stderr, "whole: %s, pieces: %s\n", verdict_name(whole->verdict),
                verdict_name(pieces->verdict));
        fail("whole and pieces disagree on the status");
    }
    if (whole->used != pieces->used) {
        fprintf(stderr, "whole used %zu, pieces used %zu\n", whole->used, pieces->used);
        fail("whole and pieces disagree on the bytes used");
    }
    same_decoding(whole, pieces, "whole vs pieces");
}

static void compare_reference(const result *kino, const result *want, const char *what) {
    if (kino->verdict != want->verdict) {
        fprintf(stderr, "kino: %s, %s reference: %s\n", verdict_name(kino->verdict), what,
                verdict_name(want->verdict));
        fail("Kino and the reference decoder disagree on accept/reject");
    }
    if (kino->verdict == V_BAD) return; /* they may stop at different bytes */
    if (kino->verdict == V_DONE && kino->used != want->used) {
        fprintf(stderr, "kino used %zu, %s reference used %zu\n", kino->used, what, want->used);
        fail("body ends at a different byte than the reference says");
    }
    same_decoding(kino, want, what);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *e = getenv("FUZZ_CHUNKED_STRICT");
    strict_only = e && *e == '1';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *plan = data, *in = data;
    size_t nplan = 0, len = size;
    if (size > 0 && (size_t)(data[0] & 15) + 1 <= size) {
        nplan = data[0] & 15;
        plan = data + 1;
        in = data + 1 + nplan;
        len = size - 1 - nplan;
    }
    result whole, pieces, strict, lenient;
    whole.data = malloc(len + 1);
    pieces.data = malloc(len + 1);
    strict.data = malloc(len + 1);
    lenient.data = malloc(len + 1);
    if (!whole.data || !pieces.data || !strict.data || !lenient.data) abort();

    kino_whole(in, len, &whole);
    kino_pieces(in, len, plan, nplan, &pieces);
    compare_kino(&whole, &pieces);

    reference(in, len, 0, &strict);
    if (strict.verdict == V_BAD && whole.verdict != V_BAD && !strict_only) {
        /* Kino accepts what the strict grammar rejects: only the two
         * documented leniencies may explain it. */
        reference(in, len, 1, &lenient);
        if (!lenient_noted) {
            lenient_noted = 1;
            fprintf(stderr, "fuzz_chunked: note: Kino accepts a chunk-ext or trailer line "
                            "that RFC 9112 rejects (known, see doc/fuzzing.md)\n");
        }
        compare_reference(&whole, &lenient, "lenient");
    } else {
        compare_reference(&whole, &strict, "strict");
    }

    free(whole.data);
    free(pieces.data);
    free(strict.data);
    free(lenient.data);
    return 0;
}
