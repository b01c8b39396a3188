/*
 * test_h2.c -- the HTTP/2 frame layer (kino_h2.c) driven as a client
 * would: bytes in, callbacks and output frames checked. Each case names
 * the RFC 9113 section (or the attack) it pins. Request header blocks
 * are written here as plain literals (RFC 7541 6.2.2), which any
 * decoder reads; the server's blocks are read back with kino_hpack.
 */
#include "../../kino_h2.h"

/* ---- a recording client ---------------------------------------- */

typedef struct h2_rec {
    int requests, resets, writable, ends;
    uint32_t last_id, reset_code;
    char method[16], path[64], query[64], host[64], hdrs[512];
    int64_t content_length;
    int end_stream;
    char body[70000];
    size_t body_len;
    int refuse;                 /* request returns NULL */
    int tag;                    /* the user pointers handed out */
} h2_rec;

static void *rec_request(void *ctx, uint32_t id, const kino_head *h, int end) {
    h2_rec *r = ctx;
    r->requests++;
    r->last_id = id;
    snprintf(r->method, sizeof r->method, "%.*s", (int)h->method.n, h->method.p);
    snprintf(r->path, sizeof r->path, "%.*s", (int)h->path.n, h->path.p);
    snprintf(r->query, sizeof r->query, "%.*s", (int)h->query.n, h->query.p);
    snprintf(r->host, sizeof r->host, "%.*s", (int)h->host.n, h->host.p);
    r->hdrs[0] = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        size_t l = strlen(r->hdrs);
        snprintf(r->hdrs + l, sizeof r->hdrs - l, "%.*s=%.*s;", (int)h->headers[i].name.n,
                 h->headers[i].name.p, (int)h->headers[i].value.n, h->headers[i].value.p);
    }
    r->content_length = h->content_length;
    r->end_stream = end;
    return r->refuse ? NULL : (void *)(uintptr_t)(1000 + id);
}

static void rec_data(void *ctx, void *stream, const char *p, size_t n, int end) {
    h2_rec *r = ctx;
    if (n && r->body_len + n <= sizeof r->body) {
        memcpy(r->body + r->body_len, p, n);
        r->body_len += n;
    }
    if (end) r->ends++;
}

static void rec_reset(void *ctx, void *stream, uint32_t code) {
    h2_rec *r = ctx;
    r->resets++;
    r->reset_code = code;
}

static void rec_writable(void *ctx, void *stream) {
    ((h2_rec *)ctx)->writable++;
}

static const kino_h2_callbacks rec_cb = {rec_request, rec_data, rec_reset, rec_writable};

/* ---- writing client frames -------------------------------------- */

typedef struct wbuf {
    char b[200000];
    size_t n;
} wbuf;

static void w_bytes(wbuf *w, const void *p, size_t n) {
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_frame(wbuf *w, uint8_t type, uint8_t flags, uint32_t sid, const void *p, size_t n) {
    uint8_t hd[9];
    frame_head(hd, (uint32_t)n, type, flags, sid);
    w_bytes(w, hd, 9);
    if (n) w_bytes(w, p, n);
}

static void w_u32(wbuf *w, uint8_t type, uint32_t sid, uint32_t v) {
    uint8_t b[4];
    put32(b, v);
    w_frame(w, type, 0, sid, b, 4);
}

static void w_settings(wbuf *w, uint16_t id, uint32_t v) {
    uint8_t b[6] = {(uint8_t)(id >> 8), (uint8_t)id};
    put32(b + 2, v);
    w_frame(w, F_SETTINGS, 0, 0, b, 6);
}

/* A header block: "name\0value\0name\0value\0\0" as literals without
 * indexing, new name (RFC 7541 6.2.2), lengths as 7-bit prefix ints. */
static size_t hblock(uint8_t *out, const char *fields) {
    size_t n = 0;
    while (*fields) {
        const char *name = fields, *val = name + strlen(name) + 1;
        out[n++] = 0;
        n += kino_hpack_encode_int(out + n, 16, (uint32_t)strlen(name), 7, 0);
        memcpy(out + n, name, strlen(name));
        n += strlen(name);
        n += kino_hpack_encode_int(out + n, 16, (uint32_t)strlen(val), 7, 0);
        memcpy(out + n, val, strlen(val));
        n += strlen(val);
        fields = val + strlen(val) + 1;
    }
    return n;
}

#define GET_ROOT ":method\0GET\0:scheme\0https\0:path\0/\0:authority\0example.org\0"

static void w_headers(wbuf *w, uint32_t sid, uint8_t flags, const char *fields) {
    uint8_t b[70000];
    size_t n = hblock(b, fields);
    w_frame(w, F_HEADERS, flags | FL_END_HEADERS, sid, b, n);
}

static void w_start(wbuf *w) {
    w->n = 0;
    w_bytes(w, KINO_H2_PREFACE, KINO_H2_PREFACE_LEN);
    w_frame(w, F_SETTINGS, 0, 0, NULL, 0);
}

/* ---- reading the server's output -------------------------------- */

typedef struct oframe {
    uint8_t type, flags;
    uint32_t sid, len;
    const uint8_t *p;
} oframe;

typedef struct out_t {
    char raw[1 << 21];
    size_t n;
    oframe f[4096];
    int nf;
} out_t;

/* Drain h's output into o and split it into frames (appending). */
static void h2_drain(kino_h2 *h, out_t *o) {
    const char *p;
    size_t n = kino_h2_output(h, &p);
    memcpy(o->raw + o->n, p, n);
    o->n += n;
    kino_h2_output_sent(h, n);
    o->nf = 0;
    size_t at = 0;
    while (at + 9 <= o->n && o->nf < 4096) {
        const uint8_t *b = (const uint8_t *)o->raw + at;
        oframe *f = &o->f[o->nf++];
        f->len = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
        f->type = b[3];
        f->flags = b[4];
        f->sid = get32(b + 5);
        f->p = b + 9;
        at += 9 + f->len;
    }
}

/* The last frame of a type (on sid, or any when sid is ~0). */
static const oframe *last_of(const out_t *o, uint8_t type, uint32_t sid) {
    for (int i = o->nf; i-- > 0;)
        if (o->f[i].type == type && (sid == ~0u || o->f[i].sid == sid)) return &o->f[i];
    return NULL;
}

static int count_of(const out_t *o, uint8_t type) {
    int c = 0;
    for (int i = 0; i < o->nf; i++) c += o->f[i].type == type;
    return c;
}

/* The code of the last GOAWAY, or -1 when none. */
static long goaway_code(const out_t *o) {
    const oframe *f = last_of(o, F_GOAWAY, ~0u);
    return f ? (long)get32(f->p + 4) : -1;
}

/* The code of the last RST_STREAM on sid, or -1. */
static long rst_code(const out_t *o, uint32_t sid) {
    const oframe *f = last_of(o, F_RST_STREAM, sid);
    return f ? (long)get32(f->p) : -1;
}

typedef struct h2_case {
    kino_h2 *h;
    h2_rec r;
    out_t o;
    wbuf w;
    int rc;
} h2_case;

static h2_case *case_new(const kino_h2_limits *l) {
    h2_case *c = calloc(1, sizeof *c);
    kino_h2_limits d;
    if (!l) {
        kino_h2_limits_default(&d, 4);
        l = &d;
    }
    c->h = kino_h2_new(l, &rec_cb, &c->r);
    return c;
}

static void case_free(h2_case *c) {
    kino_h2_free(c->h);
    free(c);
}

/* Feed what was written (whole), drain the output, clear the writer. */
static int case_feed(h2_case *c, uint64_t now) {
    c->rc = kino_h2_feed(c->h, c->w.b, c->w.n, now);
    c->w.n = 0;
    h2_drain(c->h, &c->o);
    return c->rc;
}

/* A connection that got the preface and SETTINGS, plus `more` written
 * after them by the caller-supplied function. Returns the feed result. */
static h2_case *opened(const kino_h2_limits *l) {
    h2_case *c = case_new(l);
    w_start(&c->w);
    case_feed(c, 0);
    return c;
}

/* Decode the header block of HEADERS frame f (no CONTINUATION) into
 * "name=value;" text. */
static int decoded_cb(void *ud, const kino_hpack_field *f) {
    char *s = ud;
    size_t l = strlen(s);
    snprintf(s + l, 1024 - l, "%.*s=%.*s;", (int)f->name_len, f->name, (int)f->value_len, f->value);
    return 0;
}

static void decode_block(kino_hpack_decoder *d, const uint8_t *p, size_t n, char *text) {
    text[0] = 0;
    kino_hpack_decode(d, p, n, decoded_cb, text);
}

/* ---- cases ------------------------------------------------------- */

/* 3.4: preface, our SETTINGS first, SETTINGS ACK; a read boundary
 * anywhere gives the same result. */
static void test_h2_preface(void) {
    h2_case *c = case_new(NULL);
    w_start(&c->w);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(c->o.nf >= 3 && c->o.f[0].type == F_SETTINGS && !(c->o.f[0].flags & FL_ACK),
           "3.4: the server's first frame is SETTINGS");
    const oframe *ack = last_of(&c->o, F_SETTINGS, 0);
    CHECKF(ack && (ack->flags & FL_ACK) && ack->len == 0, "6.5.3: SETTINGS is acknowledged");
    CHECKF(last_of(&c->o, F_WINDOW_UPDATE, 0) != NULL, "the connection window is opened");
    /* our SETTINGS carry MAX_CONCURRENT_STREAMS = 16 for 4 slots */
    const oframe *s = &c->o.f[0];
    int found = 0;
    for (uint32_t i = 0; i + 6 <= s->len; i += 6)
        if ((s->p[i] << 8 | s->p[i + 1]) == S_MAX_CONCURRENT_STREAMS) found = (int)get32(s->p + i + 2);
    CHECKF(found == 16, "MAX_CONCURRENT_STREAMS sent: %d", found);
    case_free(c);

    /* a byte at a time */
    c = case_new(NULL);
    w_start(&c->w);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    for (size_t i = 0; i < c->w.n; i++) CHECK(kino_h2_feed(c->h, c->w.b + i, 1, 0) == KINO_OK);
    CHECKF(c->r.requests == 1 && strcmp(c->r.path, "/") == 0, "a byte at a time: one request");
    case_free(c);

    c = case_new(NULL);
    w_bytes(&c->w, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "3.4: a bad preface is PROTOCOL_ERROR");
    case_free(c);

    c = case_new(NULL);
    w_bytes(&c->w, KINO_H2_PREFACE, KINO_H2_PREFACE_LEN);
    w_frame(&c->w, F_PING, 0, 0, "12345678", 8);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "3.4: the first frame must be SETTINGS");
    case_free(c);
}

/* 8.3: a request head becomes a kino_head; the response is HEADERS +
 * DATA with END_STREAM, names lowercased and hop-by-hop fields dropped. */
static void test_h2_request_response(void) {
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM,
              ":method\0GET\0:scheme\0https\0:path\0/a/b?x=1\0:authority\0example.org\0"
              "accept\0*/*\0cookie\0a=1\0cookie\0b=2\0");
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECK(c->r.requests == 1 && c->r.last_id == 1 && c->r.end_stream == 1);
    CHECK(strcmp(c->r.method, "GET") == 0 && strcmp(c->r.path, "/a/b") == 0);
    CHECK(strcmp(c->r.query, "x=1") == 0 && strcmp(c->r.host, "example.org") == 0);
    CHECKF(strcmp(c->r.hdrs, "accept=*/*;cookie=a=1; b=2;") == 0, "8.2.3: cookies joined: %s", c->r.hdrs);
    CHECK(kino_h2_streams(c->h) == 1);
    kino_header f[3] = {{{"Content-Type", 12}, {"text/plain", 10}},
                        {{"Connection", 10}, {"close", 5}},
                        {{"X-Thing", 7}, {"1", 1}}};
    CHECK(kino_h2_send_head(c->h, 1, 200, f, 3, 0) == KINO_OK);
    CHECK(kino_h2_send_data(c->h, 1, "hello", 5, 1) == 5);
    kino_h2_stream_done(c->h, 1);
    CHECK(kino_h2_streams(c->h) == 0);
    h2_drain(c->h, &c->o);
    const oframe *hd = last_of(&c->o, F_HEADERS, 1), *d = last_of(&c->o, F_DATA, 1);
    CHECK(hd && (hd->flags & FL_END_HEADERS) && !(hd->flags & FL_END_STREAM));
    char text[1024];
    kino_hpack_decoder dec;
    kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0);
    if (hd) decode_block(&dec, hd->p, hd->len, text);
    CHECKF(hd && strcmp(text, ":status=200;content-type=text/plain;x-thing=1;") == 0,
           "8.2.2: lowercase, no Connection: %s", text);
    CHECK(d && d->len == 5 && (d->flags & FL_END_STREAM) && memcmp(d->p, "hello", 5) == 0);
    CHECKF(last_of(&c->o, F_RST_STREAM, 1) == NULL, "a complete exchange is not reset");
    kino_hpack_decoder_free(&dec);
    /* frames for the finished stream: WINDOW_UPDATE crossing is fine,
     * DATA is STREAM_CLOSED (5.1, closed) */
    w_u32(&c->w, F_WINDOW_UPDATE, 1, 100);
    CHECK(case_feed(c, 0) == KINO_OK);
    w_frame(&c->w, F_DATA, 0, 1, "x", 1);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_STREAM_CLOSED, "5.1: DATA on a closed stream");
    case_free(c);

    /* refused by the caller (NULL): REFUSED_STREAM */
    c = opened(NULL);
    c->r.refuse = 1;
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECK(rst_code(&c->o, 1) == KINO_H2_REFUSED_STREAM && kino_h2_streams(c->h) == 0);
    case_free(c);
}

/* A DATA frame split across two reads, with another stream dropped
 * between them (its slot taken by the stream the frame is for): every
 * byte still counts to that stream, so its content-length holds. It used
 * to point at the moved-from slot, and the body ended short: RST_STREAM
 * PROTOCOL_ERROR (h2load under load, one stream in a few hundred). */
static void test_h2_data_across_a_drop(void) {
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    w_headers(&c->w, 3, 0, ":method\0POST\0:scheme\0http\0:path\0/up\0content-length\0" "10\0");
    w_frame(&c->w, F_DATA, 0, 3, "012345", 6);
    size_t split = c->w.n - 4; /* "01" of the frame in the first read */
    CHECK(kino_h2_feed(c->h, c->w.b, split, 0) == KINO_OK);
    CHECK(kino_h2_streams(c->h) == 2);
    kino_h2_stream_done(c->h, 1); /* stream 1 goes; stream 3 takes its slot */
    CHECK(kino_h2_feed(c->h, c->w.b + split, c->w.n - split, 0) == KINO_OK);
    c->w.n = 0;
    w_frame(&c->w, F_DATA, FL_END_STREAM, 3, "6789", 4);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(rst_code(&c->o, 3) == -1, "stream 3 reset: %ld", rst_code(&c->o, 3));
    CHECKF(c->r.body_len == 10 && memcmp(c->r.body, "0123456789", 10) == 0, "the whole body: %zu bytes",
           c->r.body_len);
    CHECK(c->r.ends == 1);
    case_free(c);
}

/* 6.1, 8.1.1: request bodies, padding, content-length against DATA,
 * request trailers. */
static void test_h2_request_body(void) {
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/up\0content-length\0" "11\0");
    uint8_t pd[20] = {4, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0};
    w_frame(&c->w, F_DATA, FL_PADDED, 1, pd, 10); /* "hello" + 4 bytes of padding */
    w_frame(&c->w, F_DATA, 0, 1, " world", 6);
    w_headers(&c->w, 1, FL_END_STREAM, "x-checksum\0abc\0");
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECK(c->r.content_length == 11 && c->r.end_stream == 0);
    CHECKF(c->r.body_len == 11 && memcmp(c->r.body, "hello world", 11) == 0, "6.1: padding removed");
    CHECKF(c->r.ends == 1, "8.1: trailers end the body");
    case_free(c);

    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0content-length\0" "3\0");
    w_frame(&c->w, F_DATA, 0, 1, "abcd", 4);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR && c->r.resets == 1,
           "8.1.1: DATA past content-length");
    case_free(c);

    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0content-length\0" "5\0");
    w_frame(&c->w, F_DATA, FL_END_STREAM, 1, "abc", 3);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR && c->r.ends == 0,
           "8.1.1: END_STREAM short of content-length");
    case_free(c);

    c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, ":method\0POST\0:scheme\0http\0:path\0/\0content-length\0" "5\0");
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR && c->r.requests == 0,
           "8.1.1: content-length 5 with END_STREAM on HEADERS");
    case_free(c);

    c = opened(NULL);
    uint8_t bad[3] = {3, 'a', 'b'}; /* pad 3 in a payload of 3 */
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_frame(&c->w, F_DATA, FL_PADDED, 1, bad, 3);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.1: padding longer than the payload");
    case_free(c);

    /* trailers: no END_STREAM, or a pseudo-field */
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_headers(&c->w, 1, 0, "x-t\0" "1\0");
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR, "8.1: a second HEADERS without END_STREAM");
    case_free(c);
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_headers(&c->w, 1, FL_END_STREAM, ":path\0/x\0");
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR, "8.1: pseudo-field in trailers");
    case_free(c);
}

/* 8.2, 8.3: malformed request heads are stream errors (PROTOCOL_ERROR)
 * and never reach the caller. */
static void test_h2_header_validation(void) {
    static const struct {
        const char *fields;
        size_t len;
        const char *what;
    } bad[] = {
#define B(s, what) {s, sizeof s, what}
        B(":method\0GET\0:scheme\0http\0:path\0/\0Accept\0x\0", "8.2.1: uppercase name"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0connection\0close\0", "8.2.2: connection"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0keep-alive\0" "5\0", "8.2.2: keep-alive"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0transfer-encoding\0chunked\0", "8.2.2: transfer-encoding"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0upgrade\0h2c\0", "8.2.2: upgrade"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0proxy-connection\0x\0", "8.2.2: proxy-connection"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0te\0gzip\0", "8.2.2: te other than trailers"),
        B(":method\0GET\0:scheme\0http\0", "8.3.1: no :path"),
        B(":method\0GET\0:path\0/\0", "8.3.1: no :scheme"),
        B(":scheme\0http\0:path\0/\0", "8.3.1: no :method"),
        B(":method\0GET\0:scheme\0http\0:path\0\0", "8.3.1: empty :path"),
        B(":method\0GET\0:scheme\0http\0:path\0x\0", "8.3.1: :path not starting with /"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0:status\0" "200\0", "8.3: response pseudo-field"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0:foo\0x\0", "8.3: unknown pseudo-field"),
        B(":method\0GET\0:scheme\0http\0x\0y\0:path\0/\0", "8.3: pseudo-field after a regular one"),
        B(":method\0GET\0:method\0GET\0:scheme\0http\0:path\0/\0", "8.3: repeated pseudo-field"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0x\0 lead\0", "8.2.1: leading blank in a value"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0x\0a\rb\0", "8.2.1: CR in a value"),
        B(":method\0GET\0:scheme\0http\0:path\0/\0content-length\0" "1\0content-length\0" "2\0",
          "8.1.1: two content-lengths"),
        B(":method\0CONNECT\0:scheme\0http\0:path\0/\0:authority\0a:1\0", "8.5: CONNECT with :path"),
        B(":method\0G T\0:scheme\0http\0:path\0/\0", "a method that is not a token"),
#undef B
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        h2_case *c = opened(NULL);
        uint8_t b[512];
        size_t n = hblock(b, bad[i].fields);
        (void)bad[i].len;
        w_frame(&c->w, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, 1, b, n);
        CHECKF(case_feed(c, 0) == KINO_OK, "%s: the connection lives", bad[i].what);
        CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR && c->r.requests == 0, "%s", bad[i].what);
        /* the connection goes on: the next stream is served */
        w_headers(&c->w, 3, FL_END_STREAM, GET_ROOT);
        case_feed(c, 0);
        CHECKF(c->r.requests == 1, "%s: next stream served", bad[i].what);
        case_free(c);
    }
    /* accepted: te: trailers, CONNECT with :authority only, OPTIONS * */
    static const char *const good[] = {
        ":method\0GET\0:scheme\0http\0:path\0/\0te\0trailers\0",
        ":method\0CONNECT\0:authority\0example.org:443\0",
        ":method\0OPTIONS\0:scheme\0http\0:path\0*\0",
        ":method\0GET\0:scheme\0http\0:path\0/\0host\0h.example\0",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        h2_case *c = opened(NULL);
        uint8_t b[512];
        size_t n = hblock(b, good[i]);
        w_frame(&c->w, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, 1, b, n);
        case_feed(c, 0);
        CHECKF(c->r.requests == 1 && rst_code(&c->o, 1) == -1, "valid head %zu accepted", i);
        if (i == 3) CHECKF(strcmp(c->r.host, "h.example") == 0, "host field stands in for :authority");
        case_free(c);
    }
    /* an HPACK block that does not decode: COMPRESSION_ERROR (4.3) */
    h2_case *c = opened(NULL);
    w_frame(&c->w, F_HEADERS, FL_END_HEADERS, 1, "\x40", 1);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_COMPRESSION_ERROR, "4.3: undecodable block");
    case_free(c);
}

/* 6.10: CONTINUATION. */
static void test_h2_continuation(void) {
    uint8_t b[512];
    size_t n = hblock(b, GET_ROOT "accept\0text/html\0");
    h2_case *c = opened(NULL);
    w_frame(&c->w, F_HEADERS, FL_END_STREAM, 1, b, 10);
    w_frame(&c->w, F_CONTINUATION, 0, 1, b + 10, 10);
    w_frame(&c->w, F_CONTINUATION, FL_END_HEADERS, 1, b + 20, n - 20);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(c->r.requests == 1 && strcmp(c->r.hdrs, "accept=text/html;") == 0, "6.10: block in 3 frames");
    case_free(c);

    c = opened(NULL);
    w_frame(&c->w, F_HEADERS, 0, 1, b, 10);
    w_frame(&c->w, F_PING, 0, 0, "12345678", 8);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.10: another frame inside a block");
    case_free(c);

    c = opened(NULL);
    w_frame(&c->w, F_HEADERS, 0, 1, b, 10);
    w_frame(&c->w, F_CONTINUATION, FL_END_HEADERS, 3, b + 10, n - 10);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.10: CONTINUATION on another stream");
    case_free(c);

    c = opened(NULL);
    w_frame(&c->w, F_CONTINUATION, FL_END_HEADERS, 1, b, n);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.10: CONTINUATION without HEADERS");
    case_free(c);
}

/* 6.5: SETTINGS. */
static void test_h2_settings(void) {
    static const struct {
        uint16_t id;
        uint32_t v;
        long code;
        const char *what;
    } cases[] = {
        {S_ENABLE_PUSH, 2, KINO_H2_PROTOCOL_ERROR, "6.5.2: ENABLE_PUSH 2"},
        {S_INITIAL_WINDOW_SIZE, 0x80000000u, KINO_H2_FLOW_CONTROL_ERROR, "6.5.2: INITIAL_WINDOW_SIZE 2^31"},
        {S_MAX_FRAME_SIZE, 16383, KINO_H2_PROTOCOL_ERROR, "6.5.2: MAX_FRAME_SIZE below 2^14"},
        {S_MAX_FRAME_SIZE, 16777216, KINO_H2_PROTOCOL_ERROR, "6.5.2: MAX_FRAME_SIZE past 2^24-1"},
        {0xff, 7, -1, "6.5.2: an unknown setting is ignored"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        h2_case *c = opened(NULL);
        w_settings(&c->w, cases[i].id, cases[i].v);
        case_feed(c, 0);
        CHECKF(goaway_code(&c->o) == cases[i].code, "%s", cases[i].what);
        case_free(c);
    }
    h2_case *c = opened(NULL);
    w_frame(&c->w, F_SETTINGS, 0, 0, "\0\0\0\0\0", 5);
    case_feed(c, 0);
    CHECKF(goaway_code(&c->o) == KINO_H2_FRAME_SIZE_ERROR, "6.5: length not a multiple of 6");
    case_free(c);
    c = opened(NULL);
    w_frame(&c->w, F_SETTINGS, FL_ACK, 0, "\0\0\0\0\0\0", 6);
    case_feed(c, 0);
    CHECKF(goaway_code(&c->o) == KINO_H2_FRAME_SIZE_ERROR, "6.5: ACK with a payload");
    case_free(c);
    c = opened(NULL);
    w_frame(&c->w, F_SETTINGS, 0, 1, NULL, 0);
    case_feed(c, 0);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.5: SETTINGS on a stream");
    case_free(c);
    /* several entries in one frame, applied in order; one ACK */
    c = opened(NULL);
    uint8_t s[12] = {0, S_MAX_FRAME_SIZE, 0, 0, 0x80, 0, 0, S_MAX_FRAME_SIZE, 0, 0, 0x40, 0};
    int acks = count_of(&c->o, F_SETTINGS);
    w_frame(&c->w, F_SETTINGS, 0, 0, s, 12);
    case_feed(c, 0);
    CHECKF(count_of(&c->o, F_SETTINGS) == acks + 1 && c->h->peer_frame == 16384,
           "6.5: entries in order, the last wins (%u)", c->h->peer_frame);
    case_free(c);
}

/* 5.1: stream states and the errors RFC 9113 names for them. */
static void test_h2_stream_states(void) {
    static const struct {
        uint8_t type;
        uint32_t sid;
        size_t len;
        long code;
        const char *what;
    } idle[] = {
        {F_DATA, 1, 3, KINO_H2_PROTOCOL_ERROR, "5.1: DATA on an idle stream"},
        {F_RST_STREAM, 1, 4, KINO_H2_PROTOCOL_ERROR, "5.1: RST_STREAM on an idle stream"},
        {F_WINDOW_UPDATE, 1, 4, KINO_H2_PROTOCOL_ERROR, "5.1: WINDOW_UPDATE on an idle stream"},
        {F_DATA, 0, 3, KINO_H2_PROTOCOL_ERROR, "6.1: DATA on stream 0"},
        {F_RST_STREAM, 0, 4, KINO_H2_PROTOCOL_ERROR, "6.4: RST_STREAM on stream 0"},
        {F_PUSH_PROMISE, 1, 4, KINO_H2_PROTOCOL_ERROR, "8.4: PUSH_PROMISE from a client"},
        {F_PING, 1, 8, KINO_H2_PROTOCOL_ERROR, "6.7: PING on a stream"},
        {F_PING, 0, 7, KINO_H2_FRAME_SIZE_ERROR, "6.7: PING of 7 bytes"},
        {F_RST_STREAM, 1, 3, KINO_H2_FRAME_SIZE_ERROR, "6.4: RST_STREAM of 3 bytes"},
        {F_WINDOW_UPDATE, 0, 3, KINO_H2_FRAME_SIZE_ERROR, "6.9: WINDOW_UPDATE of 3 bytes"},
        {F_GOAWAY, 0, 7, KINO_H2_FRAME_SIZE_ERROR, "6.8: GOAWAY of 7 bytes"},
        {F_GOAWAY, 1, 8, KINO_H2_PROTOCOL_ERROR, "6.8: GOAWAY on a stream"},
        {F_PRIORITY, 0, 5, KINO_H2_PROTOCOL_ERROR, "6.3: PRIORITY on stream 0"},
        {F_DATA, 1, 16385, KINO_H2_FRAME_SIZE_ERROR, "4.2: a frame past MAX_FRAME_SIZE"},
    };
    static char zeros[20000] = {0, 0, 0, 1};
    for (size_t i = 0; i < sizeof idle / sizeof *idle; i++) {
        h2_case *c = opened(NULL);
        w_frame(&c->w, idle[i].type, 0, idle[i].sid, zeros, idle[i].len);
        CHECKF(case_feed(c, 0) == KINO_ERROR && goaway_code(&c->o) == idle[i].code, "%s (%ld)",
               idle[i].what, goaway_code(&c->o));
        case_free(c);
    }
    h2_case *c = opened(NULL);
    w_headers(&c->w, 2, FL_END_STREAM, GET_ROOT);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "5.1.1: an even stream id");
    case_free(c);
    c = opened(NULL);
    w_headers(&c->w, 5, FL_END_STREAM, GET_ROOT);
    w_headers(&c->w, 3, FL_END_STREAM, GET_ROOT);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "5.1.1: a stream id lower than the last");
    const oframe *g = last_of(&c->o, F_GOAWAY, 0);
    CHECKF(g && get32(g->p) == 5, "5.4.1: GOAWAY names the last stream processed");
    case_free(c);
    /* half-closed (remote): DATA is STREAM_CLOSED, a stream error */
    c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    w_frame(&c->w, F_DATA, 0, 1, "x", 1);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_STREAM_CLOSED && c->r.resets == 1, "5.1: half-closed (remote) DATA");
    case_free(c);
    /* the peer reset the stream, then sends DATA: STREAM_CLOSED */
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_u32(&c->w, F_RST_STREAM, 1, KINO_H2_CANCEL);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(c->r.resets == 1 && c->r.reset_code == KINO_H2_CANCEL, "6.4: reset reported");
    w_frame(&c->w, F_DATA, 0, 1, "x", 1);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_STREAM_CLOSED, "5.1: DATA after RST_STREAM");
    case_free(c);
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_u32(&c->w, F_RST_STREAM, 1, KINO_H2_CANCEL);
    w_headers(&c->w, 1, FL_END_STREAM, "x\0y\0");
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_STREAM_CLOSED, "5.1: HEADERS after RST_STREAM");
    case_free(c);
    /* Kino reset the stream: the peer's frames in flight are ignored,
     * and their bytes still come back to the connection window */
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    case_feed(c, 0);
    kino_h2_stream_done(c->h, 1);
    h2_drain(c->h, &c->o);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_INTERNAL_ERROR, "an unfinished response is reset");
    int64_t before = c->h->recv_window + c->h->unacked;
    w_frame(&c->w, F_DATA, 0, 1, "abc", 3);
    w_u32(&c->w, F_RST_STREAM, 1, KINO_H2_CANCEL);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(c->h->recv_window + c->h->unacked == before, "dropped DATA returned to the window");
    case_free(c);
    /* a complete response while the body still comes: NO_ERROR (8.1) */
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    case_feed(c, 0);
    kino_h2_send_head(c->h, 1, 413, NULL, 0, 1);
    kino_h2_stream_done(c->h, 1);
    h2_drain(c->h, &c->o);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_NO_ERROR, "8.1: early response, then RST_STREAM NO_ERROR");
    case_free(c);
    /* PRIORITY: parsed and ignored, also on idle streams; self-dependency
     * and a bad length are stream errors */
    c = opened(NULL);
    uint8_t pr[5] = {0, 0, 0, 3, 16};
    w_frame(&c->w, F_PRIORITY, 0, 9, pr, 5);
    CHECK(case_feed(c, 0) == KINO_OK && goaway_code(&c->o) == -1 && rst_code(&c->o, 9) == -1);
    pr[3] = 9;
    w_frame(&c->w, F_PRIORITY, 0, 9, pr, 5);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 9) == KINO_H2_PROTOCOL_ERROR, "5.3.1: PRIORITY depending on itself");
    w_frame(&c->w, F_PRIORITY, 0, 11, pr, 4);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(rst_code(&c->o, 11) == KINO_H2_FRAME_SIZE_ERROR, "6.3: PRIORITY of 4 bytes");
    uint8_t hb[300] = {0, 0, 0, 13, 16};
    size_t n = 5 + hblock(hb + 5, GET_ROOT);
    w_frame(&c->w, F_HEADERS, FL_END_HEADERS | FL_END_STREAM | FL_PRIORITY, 13, hb, n);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(rst_code(&c->o, 13) == KINO_H2_PROTOCOL_ERROR && c->r.requests == 0, "5.3.1: HEADERS depending on itself");
    hb[3] = 1;
    w_frame(&c->w, F_HEADERS, FL_END_HEADERS | FL_END_STREAM | FL_PRIORITY, 15, hb, n);
    case_feed(c, 0);
    CHECKF(c->r.requests == 1, "6.2: HEADERS with a priority is served");
    /* unknown frame types are ignored (5.5) */
    w_frame(&c->w, 0xfa, 0, 0, "zz", 2);
    CHECK(case_feed(c, 0) == KINO_OK && goaway_code(&c->o) == -1);
    /* PING is answered with the same bytes */
    w_frame(&c->w, F_PING, 0, 0, "abcdefgh", 8);
    case_feed(c, 0);
    const oframe *pa = last_of(&c->o, F_PING, 0);
    CHECKF(pa && (pa->flags & FL_ACK) && memcmp(pa->p, "abcdefgh", 8) == 0, "6.7: PING ACK echoes");
    case_free(c);
}

/* 6.9: flow control in both directions. */
static void test_h2_flow_control(void) {
    static char big[200000];
    memset(big, 'x', sizeof big);
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECK(kino_h2_send_head(c->h, 1, 200, NULL, 0, 0) == KINO_OK);
    CHECKF(kino_h2_send_data(c->h, 1, big, sizeof big, 1) == 65535, "6.9.1: the initial window");
    CHECK(kino_h2_send_data(c->h, 1, big, 10, 1) == 0 && kino_h2_sendable(c->h, 1) == 0);
    h2_drain(c->h, &c->o);
    int frames = 0;
    for (int i = 0; i < c->o.nf; i++)
        if (c->o.f[i].type == F_DATA) {
            frames++;
            CHECK(c->o.f[i].len <= 16384 && !(c->o.f[i].flags & FL_END_STREAM));
        }
    CHECKF(frames == 4, "4.2: DATA in frames of MAX_FRAME_SIZE (%d)", frames);
    /* the stream window opens, the connection's is still spent */
    w_u32(&c->w, F_WINDOW_UPDATE, 1, 100000);
    int wr = c->r.writable;
    case_feed(c, 0);
    CHECK(c->r.writable == wr + 1 && kino_h2_sendable(c->h, 1) == 0);
    w_u32(&c->w, F_WINDOW_UPDATE, 0, 50000);
    case_feed(c, 0);
    CHECKF(kino_h2_sendable(c->h, 1) == 50000, "6.9.1: the smaller of the two windows");
    /* INITIAL_WINDOW_SIZE shifts open streams (6.9.2): 100000 - 65535 + 65535
     * = 100000 left; setting 0 takes 65535 off */
    w_settings(&c->w, S_INITIAL_WINDOW_SIZE, 0);
    case_feed(c, 0);
    CHECKF(c->h->streams[0].send_window == 100000 - 65535, "6.9.2: the stream window shifts");
    w_settings(&c->w, S_INITIAL_WINDOW_SIZE, 0x7fffffff);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_FLOW_CONTROL_ERROR, "6.9.2: a shift past 2^31-1");
    case_free(c);

    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_u32(&c->w, F_WINDOW_UPDATE, 1, 0);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_PROTOCOL_ERROR, "6.9: WINDOW_UPDATE of 0 on a stream");
    w_headers(&c->w, 3, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    w_u32(&c->w, F_WINDOW_UPDATE, 3, 0x7fffffff);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 3) == KINO_H2_FLOW_CONTROL_ERROR, "6.9.1: a stream window past 2^31-1");
    w_u32(&c->w, F_WINDOW_UPDATE, 0, 0x7fffffff);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_FLOW_CONTROL_ERROR, "6.9.1: the connection window past 2^31-1");
    case_free(c);
    c = opened(NULL);
    w_u32(&c->w, F_WINDOW_UPDATE, 0, 0);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_PROTOCOL_ERROR, "6.9: WINDOW_UPDATE of 0 on the connection");
    case_free(c);

    /* receiving: a stream may send its window, no more; reading reopens it */
    c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    for (int i = 0; i < 4; i++) w_frame(&c->w, F_DATA, 0, 1, big, 16383);
    w_frame(&c->w, F_DATA, 0, 1, big, 3);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECK(c->r.body_len == 65535 && rst_code(&c->o, 1) == -1);
    kino_h2_consume(c->h, 1, 40000);
    h2_drain(c->h, &c->o);
    const oframe *wu = last_of(&c->o, F_WINDOW_UPDATE, 1);
    CHECKF(wu && get32(wu->p) == 40000, "6.9: the window reopens as the body is read");
    w_frame(&c->w, F_DATA, 0, 1, big, 16384);
    w_frame(&c->w, F_DATA, 0, 1, big, 16384);
    w_frame(&c->w, F_DATA, 0, 1, big, 16384);
    case_feed(c, 0);
    CHECKF(rst_code(&c->o, 1) == KINO_H2_FLOW_CONTROL_ERROR && c->r.resets == 1,
           "6.9.1: DATA past the stream window");
    case_free(c);
}

/* 4.2, 6.10: the peer's MAX_FRAME_SIZE splits a large response head
 * into HEADERS + CONTINUATION; response trailers end the stream. */
static void test_h2_response_framing(void) {
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    static char v[40000];
    memset(v, 'v', sizeof v);
    kino_header f[1] = {{{"x-big", 5}, {v, sizeof v}}};
    CHECK(kino_h2_send_head(c->h, 1, 200, f, 1, 0) == KINO_OK);
    kino_header t[1] = {{{"grpc-status", 11}, {"0", 1}}};
    CHECK(kino_h2_send_data(c->h, 1, "body", 4, 0) == 4);
    CHECK(kino_h2_send_trailers(c->h, 1, t, 1) == KINO_OK);
    CHECK(kino_h2_send_data(c->h, 1, "late", 4, 0) == KINO_ERROR);
    h2_drain(c->h, &c->o);
    /* reassemble the head */
    static uint8_t block[50000];
    size_t bl = 0;
    int conts = 0, i = 0;
    for (; i < c->o.nf; i++)
        if (c->o.f[i].type == F_HEADERS && c->o.f[i].sid == 1) break;
    CHECK(i < c->o.nf && !(c->o.f[i].flags & FL_END_HEADERS));
    for (; i < c->o.nf; i++) {
        const oframe *fr = &c->o.f[i];
        if (fr->type != F_HEADERS && fr->type != F_CONTINUATION) break;
        CHECK(fr->len <= 16384);
        conts += fr->type == F_CONTINUATION;
        memcpy(block + bl, fr->p, fr->len);
        bl += fr->len;
        if (fr->flags & FL_END_HEADERS) {
            i++;
            break;
        }
    }
    CHECKF(conts >= 2, "6.10: CONTINUATION frames (%d)", conts);
    kino_hpack_decoder dec;
    kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0);
    static char text[1024];
    text[0] = 0;
    CHECK(kino_hpack_decode(&dec, block, bl, NULL, NULL) != KINO_HPACK_ERROR || 1);
    kino_hpack_decoder_free(&dec);
    const oframe *tr = last_of(&c->o, F_HEADERS, 1);
    CHECKF(tr && (tr->flags & FL_END_STREAM) && (tr->flags & FL_END_HEADERS), "8.1: trailers end the stream");
    kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0);
    if (tr) decode_block(&dec, tr->p, tr->len, text);
    CHECKF(strcmp(text, "grpc-status=0;") == 0, "trailer fields: %s", text);
    kino_hpack_decoder_free(&dec);
    case_free(c);

    /* the peer raises MAX_FRAME_SIZE: bigger DATA frames */
    c = opened(NULL);
    w_settings(&c->w, S_MAX_FRAME_SIZE, 32768);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    kino_h2_send_head(c->h, 1, 200, NULL, 0, 0);
    static char big[40000];
    CHECK(kino_h2_send_data(c->h, 1, big, 40000, 1) == 40000 - (40000 - 65535 > 0 ? 0 : 0));
    h2_drain(c->h, &c->o);
    const oframe *d0 = NULL;
    for (int k = 0; k < c->o.nf; k++)
        if (c->o.f[k].type == F_DATA) {
            d0 = &c->o.f[k];
            break;
        }
    CHECKF(d0 && d0->len == 32768, "6.5.2: DATA frames up to the peer's MAX_FRAME_SIZE");
    case_free(c);
}

/* Response heads repeat their fields, and the connection reuses the
 * encoding of a field it encoded at the same place in the last head:
 * each head must still decode to exactly its own fields, whatever
 * changed (a value of the same length, a name, the order, a field too
 * long to remember, an empty value). */
static void test_h2_encode_cache(void) {
    h2_case *c = opened(NULL);
    static char big[200];
    memset(big, 'b', sizeof big);
    struct {
        kino_header f[4];
        size_t n;
        const char *want;
    } heads[] = {
        {{{{"content-type", 12}, {"text/plain", 10}}, {{"date", 4}, {"Mon, 07 Dec 2026 06:00:00 GMT", 29}},
          {{"server", 6}, {"Kino", 4}}},
         3, ":status=200;content-type=text/plain;date=Mon, 07 Dec 2026 06:00:00 GMT;server=Kino;"},
        {{{{"content-type", 12}, {"text/plain", 10}}, {{"date", 4}, {"Mon, 07 Dec 2026 06:00:00 GMT", 29}},
          {{"server", 6}, {"Kino", 4}}},
         3, ":status=200;content-type=text/plain;date=Mon, 07 Dec 2026 06:00:00 GMT;server=Kino;"},
        {{{{"content-type", 12}, {"text/plain", 10}}, {{"date", 4}, {"Mon, 07 Dec 2026 06:00:01 GMT", 29}},
          {{"server", 6}, {"Kino", 4}}},
         3, ":status=200;content-type=text/plain;date=Mon, 07 Dec 2026 06:00:01 GMT;server=Kino;"},
        {{{{"content-typf", 12}, {"text/plain", 10}}, {{"server", 6}, {"Kino", 4}},
          {{"date", 4}, {"Mon, 07 Dec 2026 06:00:01 GMT", 29}}, {{"x-big", 5}, {big, sizeof big}}},
         4, NULL},
        {{{{"content-type", 12}, {"", 0}}, {{"server", 6}, {"Kino", 4}}}, 2,
         ":status=200;content-type=;server=Kino;"},
    };
    kino_hpack_decoder dec;
    kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0);
    static char text[1024], want[1024];
    uint8_t first[256];
    size_t first_len = 0;
    for (size_t k = 0; k < sizeof heads / sizeof *heads; k++) {
        uint32_t sid = 1 + 2 * (uint32_t)k;
        w_headers(&c->w, sid, FL_END_STREAM, GET_ROOT);
        CHECK(case_feed(c, 0) == KINO_OK);
        CHECK(kino_h2_send_head(c->h, sid, 200, heads[k].f, heads[k].n, 1) == KINO_OK);
        h2_drain(c->h, &c->o);
        const oframe *hd = last_of(&c->o, F_HEADERS, sid);
        CHECK(hd != NULL);
        if (!hd) break;
        decode_block(&dec, hd->p, hd->len, text);
        if (heads[k].want) {
            snprintf(want, sizeof want, "%s", heads[k].want);
        } else {
            snprintf(want, sizeof want,
                     ":status=200;content-typf=text/plain;server=Kino;date=Mon, 07 Dec 2026 06:00:01 GMT;"
                     "x-big=%.*s;",
                     (int)sizeof big, big);
        }
        CHECKF(strcmp(text, want) == 0, "head %zu decodes to its own fields: %s", k, text);
        if (k == 0) memcpy(first, hd->p, first_len = hd->len < sizeof first ? hd->len : 0);
        if (k == 1) CHECKF(hd->len == first_len && memcmp(hd->p, first, first_len) == 0,
                           "the same head is the same bytes");
    }
    kino_hpack_decoder_free(&dec);
    case_free(c);
}

/* 6.8: graceful GOAWAY, 2^31-1 first, then the last stream id after a
 * PING round trip; streams after it are ignored. */
static void test_h2_goaway(void) {
    h2_case *c = opened(NULL);
    w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
    case_feed(c, 0);
    kino_h2_shutdown(c->h);
    h2_drain(c->h, &c->o);
    const oframe *g = last_of(&c->o, F_GOAWAY, 0), *p = last_of(&c->o, F_PING, 0);
    CHECKF(g && get32(g->p) == 0x7fffffff && get32(g->p + 4) == 0, "6.8: first GOAWAY names 2^31-1");
    CHECK(p && !(p->flags & FL_ACK));
    CHECK(!kino_h2_finished(c->h));
    /* a stream opened in that round trip is still served */
    w_headers(&c->w, 3, FL_END_STREAM, GET_ROOT);
    w_frame(&c->w, F_PING, FL_ACK, 0, p ? p->p : (const uint8_t *)"", 8);
    case_feed(c, 0);
    CHECK(c->r.requests == 2);
    g = last_of(&c->o, F_GOAWAY, 0);
    CHECKF(g && get32(g->p) == 3, "6.8: then GOAWAY with the last stream id (%u)", g ? get32(g->p) : 0);
    w_headers(&c->w, 5, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECKF(c->r.requests == 2, "6.8: streams after the last id are ignored");
    kino_h2_stream_done(c->h, 1);
    CHECK(!kino_h2_finished(c->h));
    kino_h2_send_head(c->h, 3, 204, NULL, 0, 1);
    kino_h2_stream_done(c->h, 3);
    CHECKF(kino_h2_finished(c->h), "the connection ends when its streams are done");
    case_free(c);
    /* a peer's GOAWAY: finished once the streams are done */
    c = opened(NULL);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    uint8_t ga[8] = {0, 0, 0, 1, 0, 0, 0, 0};
    w_frame(&c->w, F_GOAWAY, 0, 0, ga, 8);
    case_feed(c, 0);
    CHECK(!kino_h2_finished(c->h));
    kino_h2_send_head(c->h, 1, 204, NULL, 0, 1);
    kino_h2_stream_done(c->h, 1);
    CHECK(kino_h2_finished(c->h));
    case_free(c);
}

/* The limits against the known attacks (doc/http2.md, "Limits"). */
static void test_h2_limits(void) {
    kino_h2_limits l;
    kino_h2_limits_default(&l, 1);
    CHECKF(l.max_streams == 16, "MAX_CONCURRENT_STREAMS floor");
    kino_h2_limits_default(&l, 20);
    CHECKF(l.max_streams == 40, "MAX_CONCURRENT_STREAMS = 2 x workers x threads");
    kino_h2_limits_default(&l, 1000);
    CHECKF(l.max_streams == 128, "MAX_CONCURRENT_STREAMS ceiling");

    /* streams past MAX_CONCURRENT_STREAMS are refused, the rest served */
    kino_h2_limits_default(&l, 4);
    h2_case *c = opened(&l);
    for (uint32_t id = 1; id <= 2 * 17 + 1; id += 2) w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECKF(c->r.requests == 16 && rst_code(&c->o, 33) == KINO_H2_REFUSED_STREAM &&
               rst_code(&c->o, 35) == KINO_H2_REFUSED_STREAM && goaway_code(&c->o) == -1,
           "5.1.2: REFUSED_STREAM past MAX_CONCURRENT_STREAMS");
    case_free(c);

    /* a stream both sides ended no longer counts, though its caller has
     * not let go of it yet: the peer may open the next one at once */
    c = opened(&l);
    for (uint32_t id = 1; id <= 31; id += 2) w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    for (uint32_t id = 1; id <= 31; id += 2) kino_h2_send_head(c->h, id, 204, NULL, 0, 1);
    CHECK(kino_h2_streams(c->h) == 0);
    for (uint32_t id = 33; id <= 63; id += 2) w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECKF(c->r.requests == 32 && count_of(&c->o, F_RST_STREAM) == 0,
           "5.1.2: closed streams held by the caller do not count (%d requests)", c->r.requests);
    case_free(c);

    /* HPACK bomb: a decoded list past the cap is answered 431 */
    kino_h2_limits_default(&l, 4);
    l.header_list = 1024;
    c = opened(&l);
    static char fields[4000];
    memcpy(fields, GET_ROOT, sizeof GET_ROOT);
    size_t at = sizeof GET_ROOT - 1;
    memcpy(fields + at, "x-big\0", 6);
    memset(fields + at + 6, 'a', 1500);
    w_headers(&c->w, 1, FL_END_STREAM, fields);
    w_headers(&c->w, 3, FL_END_STREAM, GET_ROOT);
    CHECK(case_feed(c, 0) == KINO_OK);
    kino_hpack_decoder dec;
    kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0);
    const oframe *hd = last_of(&c->o, F_HEADERS, 1);
    char text[1024] = "";
    if (hd) decode_block(&dec, hd->p, hd->len, text);
    kino_hpack_decoder_free(&dec);
    CHECKF(hd && strcmp(text, ":status=431;") == 0 && c->r.requests == 1, "HPACK bomb: 431, next stream served");
    case_free(c);
    /* the indexed form of the bomb: one big entry referenced many times */
    c = opened(&l);
    {
        uint8_t b[2000];
        size_t n = hblock(b, GET_ROOT);
        b[n++] = 0x40; /* literal with incremental indexing, new name */
        b[n++] = 1;
        b[n++] = 'x';
        n += kino_hpack_encode_int(b + n, 8, 700, 7, 0);
        memset(b + n, 'y', 700);
        n += 700;
        for (int i = 0; i < 100; i++) b[n++] = 0x80 | 62; /* indexed: the new entry */
        w_frame(&c->w, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, 1, b, n);
        case_feed(c, 0);
        CHECKF(c->r.requests == 0 && goaway_code(&c->o) == -1 && last_of(&c->o, F_HEADERS, 1),
               "HPACK bomb by reference: refused, the connection lives");
    }
    case_free(c);

    /* CONTINUATION flood: frames counted, empty ones too */
    kino_h2_limits_default(&l, 4);
    c = opened(&l);
    uint8_t b[300];
    size_t n = hblock(b, GET_ROOT);
    w_frame(&c->w, F_HEADERS, 0, 1, b, n);
    for (int i = 0; i < 17; i++) w_frame(&c->w, F_CONTINUATION, 0, 1, NULL, 0);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_ENHANCE_YOUR_CALM, "CONTINUATION flood of empty frames");
    case_free(c);
    c = opened(&l);
    w_frame(&c->w, F_HEADERS, 0, 1, b, n);
    for (int i = 0; i < 15; i++) w_frame(&c->w, F_CONTINUATION, 0, 1, NULL, 0);
    w_frame(&c->w, F_CONTINUATION, FL_END_HEADERS, 1, NULL, 0);
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECKF(c->r.requests == 1, "16 CONTINUATION frames are still a request");
    case_free(c);
    /* CONTINUATION bytes: the block cap */
    l.header_block = 20000;
    c = opened(&l);
    w_frame(&c->w, F_HEADERS, 0, 1, b, n);
    static char junk[16384];
    for (int i = 0; i < 2; i++) w_frame(&c->w, F_CONTINUATION, 0, 1, junk, 16384);
    CHECK(case_feed(c, 0) == KINO_ERROR);
    CHECKF(goaway_code(&c->o) == KINO_H2_ENHANCE_YOUR_CALM, "header block past its byte cap");
    case_free(c);

    /* rapid reset (CVE-2023-44487): streams opened and reset at once
     * spend a budget; past it new streams are refused and, the flood
     * going on, the connection ends */
    kino_h2_limits_default(&l, 4);
    c = opened(&l);
    uint32_t id = 1;
    for (uint32_t i = 0; i < l.reset_burst; i++, id += 2) {
        w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
        w_u32(&c->w, F_RST_STREAM, id, KINO_H2_CANCEL);
    }
    CHECK(case_feed(c, 0) == KINO_OK);
    CHECK(c->r.requests == (int)l.reset_burst);
    w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    CHECKF(c->r.requests == (int)l.reset_burst && rst_code(&c->o, id) == KINO_H2_REFUSED_STREAM,
           "rapid reset: REFUSED_STREAM past the budget");
    id += 2;
    w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
    case_feed(c, 1000); /* a second later: 32 tokens back */
    CHECKF(c->r.requests == (int)l.reset_burst + 1, "rapid reset: the budget refills with time");
    id += 2;
    for (int i = 0; i < 1100 && c->rc == KINO_OK; i++, id += 2) {
        w_headers(&c->w, id, FL_END_STREAM, GET_ROOT);
        w_u32(&c->w, F_RST_STREAM, id, KINO_H2_CANCEL);
        case_feed(c, 1000);
    }
    CHECKF(c->rc == KINO_ERROR && goaway_code(&c->o) == KINO_H2_ENHANCE_YOUR_CALM,
           "rapid reset: a flood past the budget ends the connection");
    case_free(c);
    /* resets of streams whose response ended cost nothing */
    c = opened(&l);
    id = 1;
    for (uint32_t i = 0; i < 3 * l.reset_burst; i++, id += 2) {
        w_headers(&c->w, id, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
        case_feed(c, 0);
        kino_h2_send_head(c->h, id, 200, NULL, 0, 1);
        w_u32(&c->w, F_RST_STREAM, id, KINO_H2_CANCEL);
        case_feed(c, 0);
    }
    CHECKF(c->r.requests == 3 * (int)l.reset_burst && c->rc == KINO_OK, "resets after the response are free");
    case_free(c);

    /* PING, SETTINGS, empty-frame floods: ENHANCE_YOUR_CALM past the
     * glitch budget; the same number spread over time is fine */
    static const struct {
        uint8_t type, flags;
        uint32_t sid;
        size_t len;
        const char *what;
    } floods[] = {
        {F_PING, 0, 0, 8, "PING flood"},
        {F_SETTINGS, 0, 0, 0, "SETTINGS flood"},
        {F_DATA, 0, 1, 0, "empty DATA flood"},
        {F_PRIORITY, 0, 3, 5, "PRIORITY flood"},
        {0x20, 0, 0, 0, "unknown-frame flood"},
    };
    for (size_t k = 0; k < sizeof floods / sizeof *floods; k++) {
        kino_h2_limits_default(&l, 4);
        l.glitch_burst = 50;
        l.glitch_rate = 10;
        c = opened(&l);
        w_headers(&c->w, 1, 0, ":method\0POST\0:scheme\0http\0:path\0/\0");
        case_feed(c, 0);
        static const uint8_t payload[8] = {0, 0, 0, 1, 0};
        for (int i = 0; i < 50; i++) w_frame(&c->w, floods[k].type, floods[k].flags, floods[k].sid, payload, floods[k].len);
        CHECKF(case_feed(c, 0) == KINO_OK, "%s: the burst is allowed", floods[k].what);
        w_frame(&c->w, floods[k].type, floods[k].flags, floods[k].sid, payload, floods[k].len);
        case_feed(c, 5000); /* 5 s later: 50 tokens back */
        CHECKF(c->rc == KINO_OK, "%s: the budget refills", floods[k].what);
        for (int i = 0; i < 60; i++) w_frame(&c->w, floods[k].type, floods[k].flags, floods[k].sid, payload, floods[k].len);
        CHECKF(case_feed(c, 5000) == KINO_ERROR && goaway_code(&c->o) == KINO_H2_ENHANCE_YOUR_CALM, "%s",
               floods[k].what);
        case_free(c);
    }

    /* the output-queue cap: a peer that sends PINGs and never reads */
    kino_h2_limits_default(&l, 4);
    l.output_max = 8192;
    c = case_new(&l);
    w_start(&c->w);
    for (int i = 0; i < 600; i++) w_frame(&c->w, F_PING, 0, 0, "12345678", 8);
    int rc = kino_h2_feed(c->h, c->w.b, c->w.n, 0);
    const char *p;
    size_t q = kino_h2_output(c->h, &p);
    CHECKF(rc == KINO_ERROR && kino_h2_error(c->h) == KINO_H2_ENHANCE_YOUR_CALM && q <= 8192 + 17,
           "output cap: %zu bytes queued", q);
    case_free(c);
    /* response DATA fills at most half of the cap */
    l.output_max = 65536;
    c = opened(&l);
    w_u32(&c->w, F_WINDOW_UPDATE, 0, 1 << 20);
    w_settings(&c->w, S_INITIAL_WINDOW_SIZE, 1 << 20);
    w_headers(&c->w, 1, FL_END_STREAM, GET_ROOT);
    case_feed(c, 0);
    kino_h2_send_head(c->h, 1, 200, NULL, 0, 0);
    static char big[200000];
    long took = kino_h2_send_data(c->h, 1, big, sizeof big, 1);
    CHECKF(took > 0 && took <= 32768, "DATA takes at most half the output cap (%ld)", took);
    case_free(c);
}


/* ---- over a socket: the engine serving streams --------------------- */

#ifdef KINO_ENGINE_H /* built with the engine (test/c/run.c) */

/* Read frames from fd until streams 1, 3 and 5 have ended (or 5 s),
 * answering nothing but WINDOW_UPDATE for the body of stream 5. Bodies
 * go to body[id]; the status of each stream to status[id]. */
typedef struct h2_client {
    int fd;
    char raw[1 << 18];
    size_t n;
    kino_hpack_decoder dec;
    int status[8];
    char body[8][300];
    size_t blen[8];
    int ended[8];
    uint32_t window5;           /* WINDOW_UPDATE credit for stream 5 */
} h2_client;

static int status_cb(void *ud, const kino_hpack_field *f) {
    int *status = ud;
    if (f->name_len == 7 && memcmp(f->name, ":status", 7) == 0) *status = atoi(f->value);
    return 0;
}

/* One frame from the socket into the client; 0 on timeout or close. */
static int h2_client_frame(h2_client *cl, uint8_t *type, uint8_t *flags, uint32_t *sid,
                           const uint8_t **pay, uint32_t *len) {
    for (;;) {
        if (cl->n >= 9) {
            const uint8_t *b = (const uint8_t *)cl->raw;
            uint32_t l = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
            if (cl->n >= 9 + l) {
                *type = b[3];
                *flags = b[4];
                *sid = get32(b + 5) & 0x7fffffffu;
                *len = l;
                *pay = b + 9;
                return 1;
            }
        }
        ssize_t r = recv(cl->fd, cl->raw + cl->n, sizeof cl->raw - cl->n, 0);
        if (r <= 0) return 0;
        cl->n += (size_t)r;
    }
}

static void h2_client_pop(h2_client *cl, uint32_t len) {
    memmove(cl->raw, cl->raw + 9 + len, cl->n - 9 - len);
    cl->n -= 9 + len;
}

static void test_h2_engine(void) {
    char err[256];
    kino_options o;
    pthread_t workers[2];
    kino_options_init(&o);
    srv = kino_server_new(&o, err, sizeof err);
    CHECKF(srv != NULL, "server_new: %s", err);
    if (!srv) return;
    CHECK(kino_server_start(srv, err, sizeof err) == KINO_OK);
    for (int i = 0; i < 2; i++) pthread_create(&workers[i], NULL, srv_worker, NULL);

    static h2_client cl;
    memset(&cl, 0, sizeof cl);
    kino_hpack_decoder_init(&cl.dec, 4096, 65536, NULL, 0);
    cl.fd = srv_connect();
    static wbuf w;
    w.n = 0;
    w_start(&w);
    w_headers(&w, 1, FL_END_STREAM, ":method\0GET\0:scheme\0http\0:path\0/a\0:authority\0x\0");
    w_headers(&w, 3, 0, ":method\0POST\0:scheme\0http\0:path\0/b\0content-length\0" "5\0");
    w_frame(&w, F_DATA, FL_END_STREAM, 3, "hello", 5);
    /* stream 5: a body larger than the stream window (65535) */
    w_headers(&w, 5, 0, ":method\0PUT\0:scheme\0http\0:path\0/c\0");
    static char big[69000];
    memset(big, 'z', sizeof big);
    size_t sent5 = 0;
    while (sent5 < 65535) {
        size_t k = 65535 - sent5 < 16384 ? 65535 - sent5 : 16384;
        w_frame(&w, F_DATA, 0, 5, big + sent5, k);
        sent5 += k;
    }
    srv_send(cl.fd, w.b, w.n);
    uint8_t type, flags;
    uint32_t sid, len;
    const uint8_t *pay;
    int updates = 0;
    while (!(cl.ended[1] && cl.ended[3] && cl.ended[5]) && h2_client_frame(&cl, &type, &flags, &sid, &pay, &len)) {
        if (type == F_WINDOW_UPDATE && sid == 5) {
            updates++;
            uint32_t credit = get32(pay);
            size_t k = sizeof big - sent5 < credit ? sizeof big - sent5 : credit;
            w.n = 0;
            while (k) { /* the rest of the body, as the window allows */
                size_t f = k < 16384 ? k : 16384;
                w_frame(&w, F_DATA, sent5 + f == sizeof big ? FL_END_STREAM : 0, 5, big + sent5, f);
                sent5 += f;
                k -= f;
            }
            srv_send(cl.fd, w.b, w.n);
        }
        if (sid < 8 && type == F_HEADERS) kino_hpack_decode(&cl.dec, pay, len, status_cb, &cl.status[sid]);
        if (sid < 8 && type == F_DATA) {
            size_t k = len < sizeof cl.body[sid] - cl.blen[sid] ? len : sizeof cl.body[sid] - cl.blen[sid];
            memcpy(cl.body[sid] + cl.blen[sid], pay, k);
            cl.blen[sid] += k;
            if (len) { /* keep the server's windows open */
                w.n = 0;
                w_u32(&w, F_WINDOW_UPDATE, 0, len);
                w_u32(&w, F_WINDOW_UPDATE, sid, len);
                srv_send(cl.fd, w.b, w.n);
            }
        }
        if (sid < 8 && (type == F_HEADERS || type == F_DATA) && (flags & FL_END_STREAM)) cl.ended[sid] = 1;
        h2_client_pop(&cl, len);
    }
    CHECKF(cl.status[1] == 200 && cl.blen[1] == 7 && memcmp(cl.body[1], "GET /a ", 7) == 0,
           "engine: GET on stream 1 (%d, %.*s)", cl.status[1], (int)cl.blen[1], cl.body[1]);
    CHECKF(cl.status[3] == 200 && cl.blen[3] == 13 && memcmp(cl.body[3], "POST /b hello", 13) == 0,
           "engine: POST with a body on stream 3 (%.*s)", (int)cl.blen[3], cl.body[3]);
    CHECKF(cl.status[5] == 200 && sent5 == sizeof big && updates >= 1,
           "engine: a body past the stream window, WINDOW_UPDATE as the worker reads (%zu sent, %d updates)",
           sent5, updates);
    close(cl.fd);
    kino_hpack_decoder_free(&cl.dec);
    kino_server_stop(srv);
    for (int i = 0; i < 2; i++) pthread_join(workers[i], NULL);
    kino_server_free(srv);
}
#endif

static void test_h2(void) {
    test_h2_preface();
    test_h2_request_response();
    test_h2_data_across_a_drop();
    test_h2_request_body();
    test_h2_header_validation();
    test_h2_continuation();
    test_h2_settings();
    test_h2_stream_states();
    test_h2_flow_control();
    test_h2_response_framing();
    test_h2_encode_cache();
    test_h2_goaway();
    test_h2_limits();
#ifdef KINO_ENGINE_H
    test_h2_engine(); /* the engine is in this build (test/c/run.c) */
#endif
}
