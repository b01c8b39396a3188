/*
 * kino_h2.c -- HTTP/2 framing for one connection, without I/O (RFC 9113).
 * kino_h2.h describes the API; doc/http2.md the design and the limits.
 * This file reads top to bottom:
 *
 *    1. constants     frame types, flags, settings, defaults
 *    2. structures    the connection, its streams, its parser state
 *    3. budgets       token buckets for resets and "glitches"
 *    4. output        the output buffer and frame writers
 *    5. streams       the stream table, windows, stream errors
 *    6. headers       collecting decoded fields, validating a request
 *                     head (RFC 9113 8.2, 8.3), building a kino_head
 *    7. frames        what each complete frame (or payload piece) does
 *    8. parser        the byte-level state machine behind kino_h2_feed
 *    9. responses     HEADERS, DATA, trailers, windows, reset, done
 *   10. connection    create, free, shutdown, state queries
 *
 * Ownership: one thread owns a kino_h2; no locks, no clocks (the caller
 * passes a coarse time to kino_h2_feed for the budgets).
 */
#include "kino_h2.h"
#include "kino_hpack.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* 1. constants                                                       */
/* ------------------------------------------------------------------ */

#define F_DATA 0x0
#define F_HEADERS 0x1
#define F_PRIORITY 0x2
#define F_RST_STREAM 0x3
#define F_SETTINGS 0x4
#define F_PUSH_PROMISE 0x5
#define F_PING 0x6
#define F_GOAWAY 0x7
#define F_WINDOW_UPDATE 0x8
#define F_CONTINUATION 0x9

#define FL_END_STREAM 0x1
#define FL_ACK 0x1
#define FL_END_HEADERS 0x4
#define FL_PADDED 0x8
#define FL_PRIORITY 0x20

#define S_HEADER_TABLE_SIZE 0x1
#define S_ENABLE_PUSH 0x2
#define S_MAX_CONCURRENT_STREAMS 0x3
#define S_INITIAL_WINDOW_SIZE 0x4
#define S_MAX_FRAME_SIZE 0x5
#define S_MAX_HEADER_LIST_SIZE 0x6

#define WINDOW_MAX 0x7fffffffL      /* 2^31-1: largest flow-control window */
#define DEFAULT_WINDOW 65535
#define FRAME_MIN 16384             /* MAX_FRAME_SIZE: default and floor */
#define FRAME_MAX 16777215          /* and ceiling (2^24-1) */
#define RECENT 32                   /* recently closed stream ids */
#define RECENT_RESET 0x80000000u    /* tag: Kino reset it, so frames the
                                       peer had in flight are ignored */
#define SHUTDOWN_PING "kino-bye"    /* the PING of a graceful shutdown */

/* ------------------------------------------------------------------ */
/* 2. structures                                                      */
/* ------------------------------------------------------------------ */

typedef struct h2_stream {
    uint32_t id;
    unsigned remote_closed : 1;  /* the peer sent END_STREAM */
    unsigned local_closed : 1;   /* Kino sent END_STREAM */
    unsigned head_sent : 1;      /* the response head went out */
    unsigned counted : 1;        /* open or half closed: counted in nopen */
    int64_t send_window;         /* may go below 0 after SETTINGS */
    int64_t recv_window;         /* what the peer may still send */
    uint32_t unacked;            /* bytes read, not yet given back */
    int64_t content_length;      /* -1: none */
    uint64_t received;           /* DATA bytes so far */
    void *user;
} h2_stream;

typedef struct h2_budget {
    int64_t milli;               /* tokens x 1000 */
    uint64_t last_ms;
    uint32_t burst, rate;
} h2_budget;

/* Parser states. */
enum { P_PREFACE, P_HEAD, P_FIXED, P_BODY, P_PAD, P_DEAD };

/* One field a connection encoded at one position of a response head,
 * with its encoding: the encoder is a pure function of the field, so the
 * same field at the same place next time takes these bytes. */
#define ENC_CACHE 8           /* positions remembered */
#define ENC_CACHE_FIELD 96    /* name + value bytes of a field remembered */
typedef struct {
    uint16_t nlen, vlen, elen;
    char field[ENC_CACHE_FIELD];        /* name, then value */
    uint8_t enc[ENC_CACHE_FIELD + 8];   /* at most the bound of such a field */
} enc_entry;

struct kino_h2 {
    kino_h2_limits lim;
    kino_h2_callbacks cb;
    void *ctx;
    uint64_t now;

    /* parser */
    int state;
    size_t got;                  /* bytes of the preface / head / fixed */
    uint8_t head[9];
    uint32_t flen, fsid;         /* current frame: length, stream */
    uint8_t ftype, fflags;
    uint32_t left;               /* payload bytes left (padding excluded) */
    uint32_t pad;                /* padding bytes after them */
    uint8_t fixed[8];            /* fixed prefix of the payload */
    size_t want;                 /* its length */
    int seen_settings;           /* the first frame was SETTINGS */
    h2_stream *cur;              /* DATA: the stream, or NULL: drop */
    uint32_t dropped;            /* DATA bytes of this frame not delivered */

    /* header block being assembled (HEADERS + CONTINUATION) */
    uint8_t *block;
    size_t block_len, block_cap;
    uint32_t block_sid;          /* 0: none expected */
    int block_end_stream;
    int block_selfdep;           /* HEADERS made the stream depend on itself */
    uint32_t block_frames;       /* CONTINUATIONs so far */

    /* decoded fields of the current block */
    char *fields;
    size_t fields_len;
    kino_header hdrs[KINO_MAX_HEADERS];
    size_t nhdrs;
    int fields_over;             /* more than fit: 431 */
    int field_bad;               /* first malformation seen, or 0 */
    kino_span pseudo[4];         /* :method :scheme :authority :path */
    unsigned pseudo_seen;
    int regular_seen;
    int64_t content_length;
    size_t cookie_first;         /* index+1 of the first cookie field */

    kino_hpack_decoder dec;
    kino_hpack_encoder enc;
    enc_entry enc_cache[ENC_CACHE]; /* fields of recent response heads */

    /* streams */
    h2_stream *streams;
    int nstreams, cap;           /* in the table, and its room */
    int nopen;                   /* open or half closed (RFC 9113 5.1.2):
                                  what MAX_CONCURRENT_STREAMS limits */
    uint32_t last_id;            /* highest stream id the peer opened */
    uint32_t recent[RECENT];     /* id, | RECENT_RESET when Kino reset it */
    unsigned recent_next;

    /* peer settings */
    uint32_t peer_frame;         /* its MAX_FRAME_SIZE */
    int64_t peer_window;         /* its INITIAL_WINDOW_SIZE */

    /* connection flow control */
    int64_t send_window;
    int64_t recv_window;
    uint32_t recv_target;        /* the window Kino keeps open */
    uint32_t unacked;

    h2_budget resets, glitches;

    /* output */
    char *out;
    size_t out_off, out_len, out_cap;

    /* end */
    int shutdown;                /* 1: first GOAWAY sent, 2: final */
    uint32_t goaway_id;          /* the final GOAWAY's last stream id */
    int peer_goaway;
    uint32_t error;
    const char *why;
};

/* ------------------------------------------------------------------ */
/* 3. budgets                                                         */
/* ------------------------------------------------------------------ */

static void budget_init(h2_budget *b, uint32_t burst, uint32_t rate) {
    b->burst = burst;
    b->rate = rate;
    b->milli = (int64_t)burst * 1000;
    b->last_ms = 0;
}

/* Refill by the time passed; nonzero while a token is left. */
static int budget_left(h2_budget *b, uint64_t now) {
    if (now > b->last_ms) {
        b->milli += (int64_t)(now - b->last_ms) * b->rate;
        if (b->milli > (int64_t)b->burst * 1000) b->milli = (int64_t)b->burst * 1000;
    }
    b->last_ms = now;
    return b->milli >= 1000;
}

/* Spend one token, refilled at `rate` per second up to `burst`. Returns
 * 0 when there was none (the budget is exhausted; nothing is spent). */
static int budget_take(h2_budget *b, uint64_t now) {
    if (!budget_left(b, now)) return 0;
    b->milli -= 1000;
    return 1;
}

/* ------------------------------------------------------------------ */
/* 4. output                                                          */
/* ------------------------------------------------------------------ */

static void conn_error(kino_h2 *h, uint32_t code, const char *why);

/* Make room for n more output bytes: compact, then double, never past
 * output_max. Returns 0 and ends the connection (the peer does not read
 * what it asks for) when the cap would be passed. */
static int out_room(kino_h2 *h, size_t n) {
    if (h->out_len + n <= h->out_cap - h->out_off) return 1;
    if (h->out_off) {
        memmove(h->out, h->out + h->out_off, h->out_len);
        h->out_off = 0;
        if (h->out_len + n <= h->out_cap) return 1;
    }
    /* past the cap only the final GOAWAY may go (the state is P_DEAD) */
    size_t max = h->lim.output_max + (h->state == P_DEAD ? 17 : 0);
    if (h->out_len + n > max) {
        if (!h->error) conn_error(h, KINO_H2_ENHANCE_YOUR_CALM, "output queue over its cap");
        return 0;
    }
    size_t cap = h->out_cap ? h->out_cap : 4096;
    while (cap < h->out_len + n) cap *= 2;
    if (cap > max) cap = max;
    char *p = realloc(h->out, cap);
    if (!p) {
        if (!h->error) conn_error(h, KINO_H2_INTERNAL_ERROR, "out of memory");
        return 0;
    }
    h->out = p;
    h->out_cap = cap;
    return 1;
}

static char *out_tail(kino_h2 *h) {
    return h->out + h->out_off + h->out_len;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void frame_head(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid) {
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    put32(p + 5, sid & 0x7fffffffu);
}

/* Queue one frame with its payload. Returns 0 when the output is full
 * (the connection has then ended). */
static int out_frame(kino_h2 *h, uint8_t type, uint8_t flags, uint32_t sid, const void *pay,
                     size_t len) {
    if (!out_room(h, 9 + len)) return 0;
    uint8_t *p = (uint8_t *)out_tail(h);
    frame_head(p, (uint32_t)len, type, flags, sid);
    if (len) memcpy(p + 9, pay, len);
    h->out_len += 9 + len;
    return 1;
}

static int out_u32(kino_h2 *h, uint8_t type, uint32_t sid, uint32_t v) {
    uint8_t b[4];
    put32(b, v);
    return out_frame(h, type, 0, sid, b, 4);
}

static void out_goaway(kino_h2 *h, uint32_t last, uint32_t code) {
    uint8_t b[8];
    put32(b, last & 0x7fffffffu);
    put32(b + 4, code);
    out_frame(h, F_GOAWAY, 0, 0, b, 8);
}

/* A connection error: GOAWAY with the last stream id the peer opened
 * (those up to it may have been processed) and the parser stops for
 * good. The first error wins. */
static void conn_error(kino_h2 *h, uint32_t code, const char *why) {
    if (h->state == P_DEAD) return;
    h->state = P_DEAD;
    h->error = code ? code : KINO_H2_INTERNAL_ERROR;
    h->why = why;
    out_goaway(h, h->last_id, code); /* out_room lets it pass the cap */
}

size_t kino_h2_output(kino_h2 *h, const char **p) {
    *p = h->out + h->out_off;
    return h->out_len;
}

void kino_h2_output_sent(kino_h2 *h, size_t n) {
    if (n > h->out_len) n = h->out_len;
    h->out_off += n;
    h->out_len -= n;
    if (!h->out_len) h->out_off = 0;
}

/* ------------------------------------------------------------------ */
/* 5. streams                                                         */
/* ------------------------------------------------------------------ */

static h2_stream *stream_find(kino_h2 *h, uint32_t id) {
    for (int i = 0; i < h->nstreams; i++)
        if (h->streams[i].id == id) return &h->streams[i];
    return NULL;
}

/* Both sides sent END_STREAM: the stream no longer counts against
 * MAX_CONCURRENT_STREAMS, though its slot stays until the caller is
 * done with it (the peer may open the next stream at once). */
static void stream_check_closed(kino_h2 *h, h2_stream *s) {
    if (s->counted && s->remote_closed && s->local_closed) {
        s->counted = 0;
        h->nopen--;
    }
}

/* Remove a stream from the table (swap with the last). The h2_stream
 * pointer is invalid afterwards. */
static void stream_drop(kino_h2 *h, h2_stream *s) {
    if (s->counted) h->nopen--;
    h2_stream *last = &h->streams[h->nstreams - 1];
    /* h->cur (the stream of a DATA frame still arriving) outlives one
     * kino_h2_feed: a stream dropped between two reads must not leave it
     * naming another stream's slot, or that frame's bytes would be
     * counted to the stream moved there (a body then ended short of its
     * content-length and was reset, PROTOCOL_ERROR). */
    if (h->cur == s) h->cur = NULL; /* the rest of its frame is dropped */
    if (s != last) {
        *s = *last;
        if (h->cur == last) h->cur = s;
    }
    h->nstreams--;
}

/* Remember a closed stream: `tag` RECENT_RESET when Kino reset it. */
static void recent_add(kino_h2 *h, uint32_t id, uint32_t tag) {
    h->recent[h->recent_next++ % RECENT] = id | tag;
}

/* How stream id (<= last_id, not in the table) was closed lately:
 * RECENT_RESET (by Kino), 1 (by both sides or the peer's reset), or 0
 * (long ago, or never opened). */
static uint32_t recent_find(const kino_h2 *h, uint32_t id) {
    for (int i = 0; i < RECENT; i++)
        if ((h->recent[i] & ~RECENT_RESET) == id) return h->recent[i] & RECENT_RESET ? RECENT_RESET : 1;
    return 0;
}

/* Send RST_STREAM for id and remember it, so frames the peer had in
 * flight are ignored rather than taken for protocol errors. */
static void rst(kino_h2 *h, uint32_t id, uint32_t code) {
    out_u32(h, F_RST_STREAM, id, code);
    recent_add(h, id, RECENT_RESET);
}

/* A stream error on a stream in the table: RST_STREAM, tell the caller,
 * forget the stream. */
static void stream_error(kino_h2 *h, h2_stream *s, uint32_t code) {
    void *user = s->user;
    rst(h, s->id, code);
    stream_drop(h, s);
    if (user && h->cb.reset) h->cb.reset(h->ctx, user, code);
}

/* Count a frame that costs without serving anything. Ends the connection
 * (ENHANCE_YOUR_CALM) once the budget is spent; returns 0 then. */
static int glitch(kino_h2 *h, const char *why) {
    if (budget_take(&h->glitches, h->now)) return 1;
    conn_error(h, KINO_H2_ENHANCE_YOUR_CALM, why);
    return 0;
}

/* Give back n received bytes of the connection window (and, with s, of
 * the stream's), sending WINDOW_UPDATE once half a window is owed. */
static void window_return(kino_h2 *h, h2_stream *s, size_t n) {
    h->unacked += (uint32_t)n;
    if (h->unacked >= h->recv_target / 2) {
        if (out_u32(h, F_WINDOW_UPDATE, 0, h->unacked)) {
            h->recv_window += h->unacked;
            h->unacked = 0;
        }
    }
    if (!s || s->remote_closed) return;
    s->unacked += (uint32_t)n;
    if (s->unacked >= h->lim.stream_window / 2) {
        if (out_u32(h, F_WINDOW_UPDATE, s->id, s->unacked)) {
            s->recv_window += s->unacked;
            s->unacked = 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* 6. headers                                                         */
/* ------------------------------------------------------------------ */

/* Names with their lengths, compared without a strlen per field. */
typedef struct {
    const char *s;
    size_t n;
} name_len;
#define NAME(s) {s, sizeof s - 1}

static const name_len pseudo_names[4] = {NAME(":method"), NAME(":scheme"), NAME(":authority"),
                                         NAME(":path")};

/* Fields a request must not carry in HTTP/2 (RFC 9113 8.2.2). */
static int connection_specific(const char *n, size_t len) {
    static const name_len bad[] = {NAME("connection"), NAME("proxy-connection"), NAME("keep-alive"),
                                   NAME("transfer-encoding"), NAME("upgrade")};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (bad[i].n == len && memcmp(bad[i].s, n, len) == 0) return 1;
    return 0;
}

/* A token character, lowercase only (RFC 9113 8.2.1); '-' first, the
 * one most names hold. */
static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || c == '-') return 1;
    if (c >= '0' && c <= '9') return 1;
    return c && strchr("!#$%&'*+.^_`|~", c) != NULL;
}

/* A value is malformed with NUL, CR or LF, or with leading or trailing
 * blanks (RFC 9113 8.2.1). */
static int value_ok(const char *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == 0 || v[i] == '\r' || v[i] == '\n') return 0;
    if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')) return 0;
    return 1;
}

static int64_t h2_length(const char *v, size_t n) {
    if (!n || n > 18) return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

static void fields_reset(kino_h2 *h) {
    h->fields_len = 0;
    h->nhdrs = 0;
    h->fields_over = 0;
    h->field_bad = 0;
    h->pseudo_seen = 0;
    h->regular_seen = 0;
    h->content_length = -1;
    h->cookie_first = 0;
    memset(h->pseudo, 0, sizeof h->pseudo);
}

/* Copy n bytes into the field buffer (sized for the decoded list cap,
 * which bounds what arrives). Returns NULL when it is full. */
static char *fields_copy(kino_h2 *h, const char *p, size_t n) {
    if (h->fields_len + n > h->lim.header_list) return NULL;
    char *d = h->fields + h->fields_len;
    if (n) memcpy(d, p, n);
    h->fields_len += n;
    return d;
}

/* kino_hpack_field_cb: check one decoded field against RFC 9113 8.2 and
 * 8.3 and keep it. A malformation is recorded (the block is still
 * decoded to its end, for the table) and the stream refused later.
 * h->field_bad: 1 malformed. Trailers (h->block_sid names an open
 * stream) allow no pseudo-field. */
static int on_field(void *ud, const kino_hpack_field *f) {
    kino_h2 *h = ud;
    const char *n = f->name;
    size_t nl = f->name_len;
    if (!nl) {
        h->field_bad = 1;
        return 1;
    }
    if (!value_ok(f->value, f->value_len)) {
        h->field_bad = 1;
        return 1;
    }
    if (n[0] == ':') {
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (pseudo_names[i].n == nl && memcmp(pseudo_names[i].s, n, nl) == 0) k = i;
        /* unknown, after a regular field, repeated: all malformed */
        if (k < 0 || h->regular_seen || (h->pseudo_seen & (1u << k))) {
            h->field_bad = 1;
            return 1;
        }
        h->pseudo_seen |= 1u << k;
        char *v = fields_copy(h, f->value, f->value_len);
        if (!v) {
            h->fields_over = 1;
            return 1;
        }
        h->pseudo[k].p = v;
        h->pseudo[k].n = f->value_len;
        return 0;
    }
    h->regular_seen = 1;
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar((unsigned char)n[i])) { /* uppercase, controls, separators */
            h->field_bad = 1;
            return 1;
        }
    if (connection_specific(n, nl)) {
        h->field_bad = 1;
        return 1;
    }
    if (nl == 2 && memcmp(n, "te", 2) == 0 &&
        !(f->value_len == 8 && memcmp(f->value, "trailers", 8) == 0)) {
        h->field_bad = 1;
        return 1;
    }
    if (nl == 14 && memcmp(n, "content-length", 14) == 0) {
        int64_t cl = h2_length(f->value, f->value_len);
        if (cl < 0 || (h->content_length >= 0 && h->content_length != cl)) {
            h->field_bad = 1;
            return 1;
        }
        h->content_length = cl;
    }
    if (h->nhdrs == KINO_MAX_HEADERS) {
        h->fields_over = 1;
        return 1;
    }
    /* cookie fields may be split (RFC 9113 8.2.3): join them with "; "
     * into the first one, which is possible while it is the last value
     * in the buffer, as it is unless other fields came between */
    int cookie = nl == 6 && memcmp(n, "cookie", 6) == 0;
    if (cookie && h->cookie_first) {
        kino_header *c = &h->hdrs[h->cookie_first - 1];
        if (c->value.p + c->value.n == h->fields + h->fields_len) {
            if (!fields_copy(h, "; ", 2) || !fields_copy(h, f->value, f->value_len)) {
                h->fields_over = 1;
                return 1;
            }
            c->value.n += 2 + f->value_len;
            return 0;
        }
    }
    char *nm = fields_copy(h, n, nl);
    char *v = nm ? fields_copy(h, f->value, f->value_len) : NULL;
    if (!v) {
        h->fields_over = 1;
        return 1;
    }
    kino_header *d = &h->hdrs[h->nhdrs++];
    d->name.p = nm;
    d->name.n = nl;
    d->value.p = v;
    d->value.n = f->value_len;
    if (cookie && !h->cookie_first) h->cookie_first = h->nhdrs;
    return 0;
}

/* Build the kino_head of a request from the collected fields, checking
 * the pseudo-fields (RFC 9113 8.3.1): :method, :scheme and a non-empty
 * :path, except CONNECT, which has :method and :authority only. Returns
 * 0 when the head is malformed. */
static int build_head(kino_h2 *h, kino_head *out) {
    kino_span m = h->pseudo[0], sch = h->pseudo[1], auth = h->pseudo[2], path = h->pseudo[3];
    memset(out, 0, sizeof *out);
    if (!(h->pseudo_seen & 1)) return 0;
    for (size_t i = 0; i < m.n; i++)
        if (!is_tchar((unsigned char)m.p[i]) && !(m.p[i] >= 'A' && m.p[i] <= 'Z')) return 0;
    if (!m.n) return 0;
    int connect = m.n == 7 && memcmp(m.p, "CONNECT", 7) == 0;
    if (connect) {
        if ((h->pseudo_seen & (2 | 8)) || !(h->pseudo_seen & 4) || !auth.n) return 0;
    } else {
        if (!(h->pseudo_seen & 2) || !(h->pseudo_seen & 8) || !path.n || !sch.n) return 0;
        int options = m.n == 7 && memcmp(m.p, "OPTIONS", 7) == 0;
        if (path.p[0] != '/' && !(options && path.n == 1 && path.p[0] == '*')) return 0;
        for (size_t i = 0; i < path.n; i++)
            if ((unsigned char)path.p[i] <= ' ' || path.p[i] == 0x7f) return 0;
    }
    out->method = m;
    out->target = path;
    out->path = path;
    for (size_t i = 0; i < path.n; i++)
        if (path.p[i] == '?') {
            out->path.n = i;
            out->query.p = path.p + i + 1;
            out->query.n = path.n - i - 1;
            break;
        }
    out->host = auth;
    if (!auth.n)
        for (size_t i = 0; i < h->nhdrs; i++)
            if (h->hdrs[i].name.n == 4 && memcmp(h->hdrs[i].name.p, "host", 4) == 0) {
                out->host = h->hdrs[i].value;
                break;
            }
    out->minor = 1;
    out->nheaders = h->nhdrs;
    out->headers = h->hdrs;
    out->content_length = h->content_length;
    out->keep_alive = 1;
    out->is_head = m.n == 4 && memcmp(m.p, "HEAD", 4) == 0;
    return 1;
}

/* ------------------------------------------------------------------ */
/* 7. frames                                                          */
/* ------------------------------------------------------------------ */

/* Queue a canned response (431 for an oversized head) on a stream the
 * caller never sees, then close it. */
static void h2_canned(kino_h2 *h, uint32_t id, int status, int peer_done) {
    uint8_t b[KINO_HPACK_BEGIN_MAX + 8];
    size_t n = kino_hpack_encoder_begin(&h->enc, b, sizeof b);
    n += kino_hpack_encode_status(b + n, sizeof b - n, status);
    out_frame(h, F_HEADERS, FL_END_HEADERS | FL_END_STREAM, id, b, n);
    if (!peer_done) rst(h, id, KINO_H2_NO_ERROR);
    else recent_add(h, id, 0);
}

/* A complete header block for h->block_sid: decode it (always, to keep
 * the HPACK table in step), then open a stream, end one with trailers,
 * or refuse. */
static void block_done(kino_h2 *h) {
    uint32_t id = h->block_sid;
    int end = h->block_end_stream;
    h->block_sid = 0;
    h2_stream *s = stream_find(h, id);
    fields_reset(h);
    static const uint8_t none[1];
    int rc = kino_hpack_decode(&h->dec, h->block ? h->block : none, h->block_len, on_field, h);
    h->block_len = 0;
    if (rc == KINO_HPACK_ERROR) {
        conn_error(h, KINO_H2_COMPRESSION_ERROR, h->dec.error ? h->dec.error : "HPACK");
        return;
    }
    if (s) { /* trailers: END_STREAM required, no pseudo-field */
        if (s->remote_closed) {
            stream_error(h, s, KINO_H2_STREAM_CLOSED);
            return;
        }
        if (!end || h->pseudo_seen || h->field_bad || h->block_selfdep || rc == KINO_HPACK_TOO_LARGE) {
            stream_error(h, s, KINO_H2_PROTOCOL_ERROR);
            return;
        }
        if (s->content_length >= 0 && (uint64_t)s->content_length != s->received) {
            stream_error(h, s, KINO_H2_PROTOCOL_ERROR);
            return;
        }
        s->remote_closed = 1;
        stream_check_closed(h, s);
        if (h->cb.data) h->cb.data(h->ctx, s->user, NULL, 0, 1);
        return;
    }
    if (id <= h->last_id) { /* not idle (5.1.1): closed, or skipped */
        uint32_t how = recent_find(h, id);
        if (how == 1) conn_error(h, KINO_H2_STREAM_CLOSED, "HEADERS on a closed stream");
        else if (!how) conn_error(h, KINO_H2_PROTOCOL_ERROR, "HEADERS on a lower stream id");
        return;
    }
    h->last_id = id;
    if (h->shutdown == 2 && id > h->goaway_id) return; /* after GOAWAY: ignored */
    if (h->field_bad || h->block_selfdep) {
        rst(h, id, KINO_H2_PROTOCOL_ERROR);
        glitch(h, "malformed requests");
        return;
    }
    if ((uint32_t)h->nopen >= h->lim.max_streams || h->nstreams == h->cap) {
        rst(h, id, KINO_H2_REFUSED_STREAM);
        glitch(h, "streams past MAX_CONCURRENT_STREAMS");
        return;
    }
    if (!budget_left(&h->resets, h->now)) {
        /* rapid reset: the peer cancelled too many streams lately */
        rst(h, id, KINO_H2_REFUSED_STREAM);
        glitch(h, "streams refused after rapid resets");
        return;
    }
    if (rc == KINO_HPACK_TOO_LARGE || h->fields_over) {
        h2_canned(h, id, 431, end);
        return;
    }
    kino_head head;
    if (!build_head(h, &head) || (end && head.content_length > 0)) {
        rst(h, id, KINO_H2_PROTOCOL_ERROR);
        glitch(h, "malformed requests");
        return;
    }
    s = &h->streams[h->nstreams++];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->send_window = h->peer_window;
    s->recv_window = h->lim.stream_window;
    s->content_length = head.content_length;
    s->remote_closed = end ? 1 : 0;
    s->counted = 1;
    h->nopen++;
    void *user = h->cb.request ? h->cb.request(h->ctx, id, &head, end) : NULL;
    s = stream_find(h, id); /* the callback may have queued output only */
    if (!s) return;
    if (!user) {
        stream_drop(h, s);
        rst(h, id, KINO_H2_REFUSED_STREAM);
        return;
    }
    s->user = user;
}

/* Append a header-block fragment, within the caps. */
static int block_add(kino_h2 *h, const uint8_t *p, size_t n) {
    if (h->block_len + n > h->lim.header_block) {
        conn_error(h, KINO_H2_ENHANCE_YOUR_CALM, "header block over its cap");
        return 0;
    }
    if (h->block_len + n > h->block_cap) {
        size_t cap = h->block_cap ? h->block_cap : 1024;
        while (cap < h->block_len + n) cap *= 2;
        if (cap > h->lim.header_block) cap = h->lim.header_block;
        uint8_t *b = realloc(h->block, cap);
        if (!b) {
            conn_error(h, KINO_H2_INTERNAL_ERROR, "out of memory");
            return 0;
        }
        h->block = b;
        h->block_cap = cap;
    }
    memcpy(h->block + h->block_len, p, n);
    h->block_len += n;
    return 1;
}

/* One SETTINGS entry from the peer (RFC 9113 6.5.2). */
static void setting(kino_h2 *h, uint16_t id, uint32_t v) {
    switch (id) {
    case S_HEADER_TABLE_SIZE:
        kino_hpack_encoder_set_peer_table_size(&h->enc, v);
        break;
    case S_ENABLE_PUSH:
        if (v > 1) conn_error(h, KINO_H2_PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1");
        break;
    case S_INITIAL_WINDOW_SIZE: {
        if (v > WINDOW_MAX) {
            conn_error(h, KINO_H2_FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1");
            return;
        }
        int64_t delta = (int64_t)v - h->peer_window; /* shifts open streams (6.9.2) */
        h->peer_window = v;
        for (int i = 0; i < h->nstreams; i++) {
            h->streams[i].send_window += delta;
            if (h->streams[i].send_window > WINDOW_MAX) {
                conn_error(h, KINO_H2_FLOW_CONTROL_ERROR, "a stream window passed 2^31-1");
                return;
            }
        }
        if (delta > 0 && h->cb.writable) h->cb.writable(h->ctx, NULL);
        break;
    }
    case S_MAX_FRAME_SIZE:
        if (v < FRAME_MIN || v > FRAME_MAX) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
            return;
        }
        h->peer_frame = v;
        break;
    default: /* MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE: advisory
                for a server; unknown settings are ignored */
        break;
    }
}

static void on_window_update(kino_h2 *h) {
    uint32_t inc = get32(h->fixed) & 0x7fffffffu;
    if (h->fsid == 0) {
        if (!inc) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
            return;
        }
        if (h->send_window + inc > WINDOW_MAX) {
            conn_error(h, KINO_H2_FLOW_CONTROL_ERROR, "connection window over 2^31-1");
            return;
        }
        h->send_window += inc;
        if (h->cb.writable) h->cb.writable(h->ctx, NULL);
        return;
    }
    h2_stream *s = stream_find(h, h->fsid);
    if (!s) {
        if (h->fsid > h->last_id) conn_error(h, KINO_H2_PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
        return; /* closed: may cross our END_STREAM or RST_STREAM */
    }
    if (!inc) {
        stream_error(h, s, KINO_H2_PROTOCOL_ERROR);
        return;
    }
    if (s->send_window + inc > WINDOW_MAX) {
        stream_error(h, s, KINO_H2_FLOW_CONTROL_ERROR);
        return;
    }
    s->send_window += inc;
    if (h->cb.writable) h->cb.writable(h->ctx, s->user);
}

static void on_rst_stream(kino_h2 *h) {
    uint32_t code = get32(h->fixed);
    h2_stream *s = stream_find(h, h->fsid);
    if (!s) {
        if (h->fsid > h->last_id) conn_error(h, KINO_H2_PROTOCOL_ERROR, "RST_STREAM on an idle stream");
        return;
    }
    /* a stream cancelled before its response ended: the rapid-reset
     * budget pays for it */
    if (!s->local_closed) budget_take(&h->resets, h->now);
    void *user = s->user;
    recent_add(h, s->id, 0);
    stream_drop(h, s);
    if (user && h->cb.reset) h->cb.reset(h->ctx, user, code);
}

static void on_ping(kino_h2 *h) {
    if (h->fflags & FL_ACK) {
        if (h->shutdown == 1 && memcmp(h->fixed, SHUTDOWN_PING, 8) == 0) kino_h2_shutdown(h);
        return;
    }
    if (!glitch(h, "PING flood")) return;
    out_frame(h, F_PING, FL_ACK, 0, h->fixed, 8);
}

static void on_goaway(kino_h2 *h) {
    h->peer_goaway = 1;
}

static void on_priority(kino_h2 *h) {
    uint32_t dep = get32(h->fixed) & 0x7fffffffu;
    if (!glitch(h, "PRIORITY flood")) return;
    if (dep == h->fsid) { /* 5.3.1: a stream cannot depend on itself */
        h2_stream *s = stream_find(h, h->fsid);
        if (s) stream_error(h, s, KINO_H2_PROTOCOL_ERROR);
        else rst(h, h->fsid, KINO_H2_PROTOCOL_ERROR);
    }
}

/* The header rules of the control frames (RFC 9113 6.3-6.9), one row
 * per type: the stream id it must carry, its length rule, and the size
 * of its fixed part (the part h->fixed receives: the whole payload, a
 * SETTINGS entry at a time, or the first 8 bytes of a GOAWAY). */
enum { ON_ZERO, ON_STREAM, ON_ANY };           /* the stream id it needs */
enum { LEN_EXACT, LEN_AT_LEAST, LEN_ENTRIES }; /* its length: size, at
                                                  least size, or entries
                                                  of size (none in an ACK) */
typedef struct {
    uint8_t stream, length, size;
    const char *where, *size_why; /* the connection error's reasons */
} control_rule;

static const control_rule controls[] = {
    [F_PRIORITY] = {ON_STREAM, LEN_EXACT, 5, "PRIORITY on stream 0", "PRIORITY length not 5"},
    [F_RST_STREAM] = {ON_STREAM, LEN_EXACT, 4, "RST_STREAM on stream 0", "RST_STREAM length not 4"},
    [F_SETTINGS] = {ON_ZERO, LEN_ENTRIES, 6, "SETTINGS on a stream", "SETTINGS length"},
    [F_PING] = {ON_ZERO, LEN_EXACT, 8, "PING on a stream", "PING length not 8"},
    [F_GOAWAY] = {ON_ZERO, LEN_AT_LEAST, 8, "GOAWAY on a stream", "GOAWAY shorter than 8"},
    [F_WINDOW_UPDATE] = {ON_ANY, LEN_EXACT, 4, NULL, "WINDOW_UPDATE length not 4"},
};
#define NCONTROL (sizeof controls / sizeof *controls)

/* Check a control frame's header against its row (the rows with a size
 * are the control frames; `where` is unused for ON_ANY). A wrong stream
 * id is a connection error (PROTOCOL_ERROR), and so is a wrong length
 * (FRAME_SIZE_ERROR), except for PRIORITY, where it is a stream error
 * (6.3) and the payload is skipped. Returns 0 on a connection error. */
static int control_begin(kino_h2 *h, const control_rule *r) {
    uint32_t len = h->flen, sid = h->fsid;
    if (r->stream == ON_ZERO ? sid != 0 : r->stream == ON_STREAM && sid == 0) {
        conn_error(h, KINO_H2_PROTOCOL_ERROR, r->where);
        return 0;
    }
    int fits = r->length == LEN_EXACT      ? len == r->size
               : r->length == LEN_AT_LEAST ? len >= r->size
               : (h->fflags & FL_ACK)      ? len == 0
                                           : len % r->size == 0;
    if (fits) {
        h->want = len ? r->size : 0;
    } else if (h->ftype != F_PRIORITY) {
        conn_error(h, KINO_H2_FRAME_SIZE_ERROR, r->size_why);
        return 0;
    } else {
        if (!glitch(h, "PRIORITY flood")) return 0;
        h2_stream *s = stream_find(h, sid);
        if (s) stream_error(h, s, KINO_H2_FRAME_SIZE_ERROR);
        else rst(h, sid, KINO_H2_FRAME_SIZE_ERROR);
    }
    h->left = len;
    return 1;
}

/* The frame header is complete: check it against the connection state
 * and set up the payload's parts (a control frame by its row of
 * controls[]). Returns 0 on a connection error. */
static int frame_begin(kino_h2 *h) {
    const uint8_t *b = h->head;
    h->flen = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
    h->ftype = b[3];
    h->fflags = b[4];
    h->fsid = get32(b + 5) & 0x7fffffffu;
    h->want = 0;
    h->pad = 0;
    h->cur = NULL;
    h->dropped = 0;
    uint32_t len = h->flen, sid = h->fsid;
    uint8_t t = h->ftype;
    if (len > FRAME_MIN) { /* our MAX_FRAME_SIZE is the default */
        conn_error(h, KINO_H2_FRAME_SIZE_ERROR, "frame over MAX_FRAME_SIZE");
        return 0;
    }
    if (!h->seen_settings) {
        if (t != F_SETTINGS || (h->fflags & FL_ACK)) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "first frame is not SETTINGS");
            return 0;
        }
        h->seen_settings = 1;
    } else if (t == F_SETTINGS && !(h->fflags & FL_ACK) && !glitch(h, "SETTINGS flood")) {
        return 0;
    }
    if (h->block_sid && (t != F_CONTINUATION || sid != h->block_sid)) {
        conn_error(h, KINO_H2_PROTOCOL_ERROR, "a header block was interrupted");
        return 0;
    }
    if (t < NCONTROL && controls[t].size) return control_begin(h, &controls[t]);
    switch (t) {
    case F_DATA: {
        if (!sid) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "DATA on stream 0");
            return 0;
        }
        if (h->fflags & FL_PADDED) h->want = 1;
        if (len > h->recv_window) {
            conn_error(h, KINO_H2_FLOW_CONTROL_ERROR, "DATA past the connection window");
            return 0;
        }
        h->recv_window -= len;
        h2_stream *s = stream_find(h, sid);
        if (!s) {
            if (sid > h->last_id) {
                conn_error(h, KINO_H2_PROTOCOL_ERROR, "DATA on an idle stream");
                return 0;
            }
            if (recent_find(h, sid) != RECENT_RESET) {
                conn_error(h, KINO_H2_STREAM_CLOSED, "DATA on a closed stream");
                return 0;
            }
            break; /* in flight when Kino reset it: dropped, window returned */
        }
        if (s->remote_closed) {
            stream_error(h, s, KINO_H2_STREAM_CLOSED);
            break;
        }
        if (len > s->recv_window) {
            stream_error(h, s, KINO_H2_FLOW_CONTROL_ERROR);
            break;
        }
        s->recv_window -= len;
        if (len == 0 && !(h->fflags & FL_END_STREAM) && !glitch(h, "empty DATA frames")) return 0;
        h->cur = s;
        break;
    }
    case F_HEADERS:
        if (!sid || !(sid & 1)) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "HEADERS on an even stream id");
            return 0;
        }
        h->want = (h->fflags & FL_PADDED ? 1 : 0) + (h->fflags & FL_PRIORITY ? 5 : 0);
        h->block_sid = sid;
        h->block_end_stream = h->fflags & FL_END_STREAM;
        h->block_selfdep = 0;
        h->block_frames = 0;
        h->block_len = 0;
        if (len == h->want && !glitch(h, "empty HEADERS frames")) return 0;
        break;
    case F_PUSH_PROMISE:
        conn_error(h, KINO_H2_PROTOCOL_ERROR, "PUSH_PROMISE from a client");
        return 0;
    case F_CONTINUATION:
        if (!h->block_sid) {
            conn_error(h, KINO_H2_PROTOCOL_ERROR, "CONTINUATION without HEADERS");
            return 0;
        }
        if (++h->block_frames > h->lim.continuations) {
            conn_error(h, KINO_H2_ENHANCE_YOUR_CALM, "CONTINUATION flood");
            return 0;
        }
        break;
    default: /* unknown types are ignored (5.5), but cost */
        if (!glitch(h, "unknown frames")) return 0;
        break;
    }
    if (h->want > len) {
        conn_error(h, KINO_H2_FRAME_SIZE_ERROR, "frame shorter than its fixed fields");
        return 0;
    }
    h->left = len;
    return 1;
}

/* The fixed prefix of the payload (or one SETTINGS entry) is in
 * h->fixed. Returns 0 on a connection error. */
static int fixed_done(kino_h2 *h) {
    size_t k = 0;
    switch (h->ftype) {
    case F_DATA:
    case F_HEADERS:
        if (h->fflags & FL_PADDED) {
            h->pad = h->fixed[k++];
            if (h->pad > h->left) { /* 6.1, 6.2: padding fills the payload */
                conn_error(h, KINO_H2_PROTOCOL_ERROR, "padding as long as the frame");
                return 0;
            }
            h->left -= h->pad;
        }
        if (h->ftype == F_HEADERS && (h->fflags & FL_PRIORITY)) {
            uint32_t dep = get32(h->fixed + k) & 0x7fffffffu;
            /* 5.3.1: a stream error, but the block must still be
             * decoded; the stream is refused when it completes */
            if (dep == h->fsid) h->block_selfdep = 1;
        }
        break;
    case F_PRIORITY: on_priority(h); break;
    case F_RST_STREAM: on_rst_stream(h); break;
    case F_SETTINGS:
        setting(h, (uint16_t)(h->fixed[0] << 8 | h->fixed[1]), get32(h->fixed + 2));
        if (h->left) h->want = 6; /* next entry */
        break;
    case F_PING: on_ping(h); break;
    case F_GOAWAY: on_goaway(h); break;
    case F_WINDOW_UPDATE: on_window_update(h); break;
    }
    return h->state != P_DEAD;
}

/* The payload's data part starts (its length, padding excluded, is
 * known now). A DATA frame that would carry the body past its
 * content-length is refused whole, before a byte of it is delivered. */
static void body_start(kino_h2 *h) {
    h2_stream *s = h->cur;
    if (h->ftype != F_DATA || !s) return;
    if (s->content_length >= 0 && s->received + h->left > (uint64_t)s->content_length) {
        h->cur = NULL;
        stream_error(h, s, KINO_H2_PROTOCOL_ERROR); /* 8.1.1 */
    }
}

/* Payload bytes after the fixed prefix. */
static void body(kino_h2 *h, const char *p, size_t n) {
    switch (h->ftype) {
    case F_DATA: {
        h2_stream *s = h->cur;
        if (!s) { /* returned to the window once, at the frame's end */
            h->dropped += (uint32_t)n;
            return;
        }
        s->received += n;
        if (h->cb.data && n) {
            uint32_t id = s->id;
            h->cb.data(h->ctx, s->user, p, n, 0);
            h->cur = stream_find(h, id);
        }
        return;
    }
    case F_HEADERS:
    case F_CONTINUATION: block_add(h, (const uint8_t *)p, n); return;
    default: return; /* GOAWAY debug data, unknown frames */
    }
}

/* The frame is complete (padding included). */
static void frame_end(kino_h2 *h) {
    switch (h->ftype) {
    case F_DATA: {
        uint32_t pad = h->pad + (h->fflags & FL_PADDED ? 1 : 0);
        h2_stream *s = h->cur;
        /* padding and dropped bytes go back at once, per frame, so the
         * WINDOW_UPDATEs do not depend on how the frame was read */
        if (pad) window_return(h, s, pad);
        if (h->dropped) window_return(h, NULL, h->dropped);
        if (!s || !(h->fflags & FL_END_STREAM)) return;
        if (s->content_length >= 0 && (uint64_t)s->content_length != s->received) {
            stream_error(h, s, KINO_H2_PROTOCOL_ERROR);
            return;
        }
        s->remote_closed = 1;
        stream_check_closed(h, s);
        if (h->cb.data) h->cb.data(h->ctx, s->user, NULL, 0, 1);
        return;
    }
    case F_HEADERS:
    case F_CONTINUATION:
        if (h->ftype == F_CONTINUATION && h->flen == 0 && !glitch(h, "empty CONTINUATION frames")) return;
        if (!(h->fflags & FL_END_HEADERS)) return;
        block_done(h);
        return;
    case F_SETTINGS:
        if (!(h->fflags & FL_ACK)) out_frame(h, F_SETTINGS, FL_ACK, 0, NULL, 0);
        return;
    default: return;
    }
}

/* ------------------------------------------------------------------ */
/* 8. parser                                                          */
/* ------------------------------------------------------------------ */

int kino_h2_feed(kino_h2 *h, const char *p, size_t n, uint64_t now_ms) {
    h->now = now_ms;
    const char *end = p + n;
    while (h->state != P_DEAD) {
        size_t avail = (size_t)(end - p);
        switch (h->state) {
        case P_PREFACE: {
            size_t k = KINO_H2_PREFACE_LEN - h->got;
            if (k > avail) k = avail;
            if (memcmp(p, &KINO_H2_PREFACE[h->got], k) != 0) {
                conn_error(h, KINO_H2_PROTOCOL_ERROR, "not the HTTP/2 client preface");
                break;
            }
            h->got += k;
            p += k;
            if (h->got < KINO_H2_PREFACE_LEN) return KINO_OK;
            h->got = 0;
            h->state = P_HEAD;
            continue;
        }
        case P_HEAD: {
            if (!avail) return KINO_OK;
            size_t k = 9 - h->got;
            if (k > avail) k = avail;
            memcpy(h->head + h->got, p, k);
            h->got += k;
            p += k;
            if (h->got < 9) return KINO_OK;
            h->got = 0;
            if (!frame_begin(h)) break;
            h->state = h->want ? P_FIXED : P_BODY;
            if (!h->want) body_start(h);
            continue;
        }
        case P_FIXED: {
            if (!avail) return KINO_OK;
            size_t k = h->want - h->got;
            if (k > avail) k = avail;
            memcpy(h->fixed + h->got, p, k);
            h->got += k;
            p += k;
            if (h->got < h->want) return KINO_OK;
            h->got = 0;
            h->left -= (uint32_t)h->want;
            if (!fixed_done(h)) break;
            if (h->ftype == F_SETTINGS && h->left) continue; /* next entry */
            h->state = P_BODY;
            body_start(h);
            continue;
        }
        case P_BODY: {
            if (h->left) {
                if (!avail) return KINO_OK;
                size_t k = h->left < avail ? h->left : avail;
                h->left -= (uint32_t)k;
                body(h, p, k);
                p += k;
                if (h->left) return h->state == P_DEAD ? KINO_ERROR : KINO_OK;
                if (h->state == P_DEAD) break;
            }
            h->state = P_PAD;
            continue;
        }
        case P_PAD: {
            if (h->pad) {
                if (!avail) return KINO_OK;
                size_t k = h->pad - h->got < avail ? h->pad - h->got : avail;
                h->got += k;
                p += k;
                if (h->got < h->pad) return KINO_OK;
                h->got = 0;
            }
            frame_end(h);
            if (h->state != P_DEAD) h->state = P_HEAD;
            continue;
        }
        }
    }
    return KINO_ERROR;
}

/* ------------------------------------------------------------------ */
/* 9. responses                                                       */
/* ------------------------------------------------------------------ */

/* Response fields HTTP/2 forbids (RFC 9113 8.2.2), any case. */
static int forbidden_response_field(const char *n, size_t len) {
    char low[24];
    if (len >= sizeof low) return 0;
    for (size_t i = 0; i < len; i++) low[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i]);
    return connection_specific(low, len);
}

/* Encode a header block (status, or 0 for trailers, then the fields)
 * into the output as HEADERS + CONTINUATION frames of at most the peer's
 * MAX_FRAME_SIZE. The block is encoded in place after room for the
 * first frame head, then split: each later piece moves up 9 bytes for
 * its own head. */
/* Encode field f, the i-th of a head, into out (cap bytes): from the
 * connection's cache when the last head had the same field at that
 * place. Response heads repeat (server and content-type always, date
 * for a whole second, content-length for a given endpoint), and Huffman
 * coding them anew was most of the cost of a head; the stateless
 * encoder stays (doc/http2.md, "The encoder's choices"). Returns the
 * bytes written, 0 when they do not fit. */
static size_t encode_field(kino_h2 *h, size_t i, uint8_t *out, size_t cap, const kino_header *f) {
    size_t nl = f->name.n, vl = f->value.n;
    enc_entry *e = i < ENC_CACHE && nl + vl <= ENC_CACHE_FIELD ? &h->enc_cache[i] : NULL;
    if (e && e->elen && e->nlen == nl && e->vlen == vl && e->elen <= cap &&
        (!nl || memcmp(e->field, f->name.p, nl) == 0) && (!vl || memcmp(e->field + nl, f->value.p, vl) == 0)) {
        memcpy(out, e->enc, e->elen);
        return e->elen;
    }
    size_t k = kino_hpack_encode_field(out, cap, f->name.p, nl, f->value.p, vl, 0);
    if (e && k && k <= sizeof e->enc) {
        e->nlen = (uint16_t)nl;
        e->vlen = (uint16_t)vl;
        e->elen = (uint16_t)k;
        if (nl) memcpy(e->field, f->name.p, nl);
        if (vl) memcpy(e->field + nl, f->value.p, vl);
        memcpy(e->enc, out, k);
    }
    return k;
}

static int send_block(kino_h2 *h, uint32_t id, int status, const kino_header *f, size_t n,
                      int end) {
    size_t bound = KINO_HPACK_BEGIN_MAX + 8;
    for (size_t i = 0; i < n; i++) bound += kino_hpack_field_bound(f[i].name.n, f[i].value.n);
    size_t frames = bound / h->peer_frame + 1;
    if (!out_room(h, bound + 9 * frames)) return KINO_ERROR;
    uint8_t *base = (uint8_t *)out_tail(h);
    uint8_t *b = base + 9;
    size_t len = kino_hpack_encoder_begin(&h->enc, b, bound);
    if (status) {
        size_t k = kino_hpack_encode_status(b + len, bound - len, status);
        if (!k) return KINO_ERROR;
        len += k;
    }
    for (size_t i = 0; i < n; i++) {
        if (forbidden_response_field(f[i].name.p, f[i].name.n)) continue;
        len += encode_field(h, i, b + len, bound - len, &f[i]);
    }
    /* split from the end so each move is done once */
    size_t pieces = len ? (len + h->peer_frame - 1) / h->peer_frame : 1;
    for (size_t i = pieces; i-- > 1;) {
        size_t at = i * h->peer_frame;
        size_t plen = len - at < h->peer_frame ? len - at : h->peer_frame;
        uint8_t *dst = b + at + 9 * i;
        memmove(dst, b + at, plen);
        frame_head(dst - 9, (uint32_t)plen, F_CONTINUATION, i == pieces - 1 ? FL_END_HEADERS : 0, id);
    }
    size_t first = len < h->peer_frame ? len : h->peer_frame;
    frame_head(base, (uint32_t)first, F_HEADERS,
               (uint8_t)((pieces == 1 ? FL_END_HEADERS : 0) | (end ? FL_END_STREAM : 0)), id);
    h->out_len += 9 * pieces + len;
    return KINO_OK;
}

static h2_stream *sending(kino_h2 *h, uint32_t id) {
    h2_stream *s = h->state == P_DEAD ? NULL : stream_find(h, id);
    return s && !s->local_closed ? s : NULL;
}

int kino_h2_send_head(kino_h2 *h, uint32_t id, int status, const kino_header *f, size_t n,
                      int end) {
    h2_stream *s = sending(h, id);
    if (!s || s->head_sent || status < 100 || status > 999 || (status < 200 && end)) return KINO_ERROR;
    if (send_block(h, id, status, f, n, end) != KINO_OK) return KINO_ERROR;
    if (status >= 200) s->head_sent = 1; /* 1xx: a final head follows */
    if (end) {
        s->local_closed = 1;
        stream_check_closed(h, s);
    }
    return KINO_OK;
}

int kino_h2_send_trailers(kino_h2 *h, uint32_t id, const kino_header *f, size_t n) {
    h2_stream *s = sending(h, id);
    if (!s || !s->head_sent) return KINO_ERROR;
    if (send_block(h, id, 0, f, n, 1) != KINO_OK) return KINO_ERROR;
    s->local_closed = 1;
    stream_check_closed(h, s);
    return KINO_OK;
}

size_t kino_h2_sendable(kino_h2 *h, uint32_t id) {
    h2_stream *s = sending(h, id);
    if (!s || !s->head_sent) return 0;
    int64_t w = s->send_window < h->send_window ? s->send_window : h->send_window;
    size_t half = h->lim.output_max / 2;
    size_t room = h->out_len < half ? half - h->out_len : 0;
    size_t frames = room / (h->peer_frame + 9) + 1;
    room = room > frames * 9 ? room - frames * 9 : 0;
    if (w <= 0) return 0;
    return (uint64_t)w < room ? (size_t)w : room;
}

long kino_h2_send_data(kino_h2 *h, uint32_t id, const char *p, size_t n, int end) {
    h2_stream *s = sending(h, id);
    if (!s || !s->head_sent) return KINO_ERROR;
    size_t take = kino_h2_sendable(h, id);
    if (take > n) take = n;
    size_t done = 0;
    while (done < take) {
        size_t k = take - done < h->peer_frame ? take - done : h->peer_frame;
        int last = done + k == n && end;
        if (!out_frame(h, F_DATA, last ? FL_END_STREAM : 0, id, p + done, k)) return KINO_ERROR;
        done += k;
    }
    s->send_window -= (int64_t)take;
    h->send_window -= (int64_t)take;
    if (end && take == n) {
        if (n == 0 && !out_frame(h, F_DATA, FL_END_STREAM, id, NULL, 0)) return KINO_ERROR;
        s->local_closed = 1;
        stream_check_closed(h, s);
    }
    return (long)take;
}

void kino_h2_consume(kino_h2 *h, uint32_t id, size_t n) {
    if (h->state == P_DEAD || !n) return;
    h2_stream *s = stream_find(h, id);
    window_return(h, s, n);
}

void kino_h2_reset(kino_h2 *h, uint32_t id, uint32_t code) {
    h2_stream *s = stream_find(h, id);
    if (!s) return;
    rst(h, id, code);
    stream_drop(h, s);
}

void kino_h2_stream_done(kino_h2 *h, uint32_t id) {
    h2_stream *s = stream_find(h, id);
    if (!s) return;
    if (!s->local_closed) rst(h, id, KINO_H2_INTERNAL_ERROR);
    else if (!s->remote_closed) rst(h, id, KINO_H2_NO_ERROR);
    else recent_add(h, id, 0);
    stream_drop(h, s);
}

/* ------------------------------------------------------------------ */
/* 10. connection                                                     */
/* ------------------------------------------------------------------ */

void kino_h2_limits_default(kino_h2_limits *l, int slots) {
    long m = 2L * (slots > 0 ? slots : 1);
    if (m < 16) m = 16;
    if (m > 128) m = 128;
    l->max_streams = (uint32_t)m;
    l->stream_window = DEFAULT_WINDOW;
    l->header_list = KINO_MAX_HEAD;
    l->header_block = KINO_MAX_HEAD;
    l->continuations = 16;
    l->reset_burst = 2 * l->max_streams;
    l->reset_rate = 32;
    l->glitch_burst = 1000;
    l->glitch_rate = 100;
    l->output_max = 1 << 20;
}

kino_h2 *kino_h2_new(const kino_h2_limits *l, const kino_h2_callbacks *cb, void *ctx) {
    kino_h2 *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->lim = *l;
    if (h->lim.max_streams < 1) h->lim.max_streams = 1;
    /* below the default a peer could overrun it before our SETTINGS ACK */
    if (h->lim.stream_window < DEFAULT_WINDOW || h->lim.stream_window > WINDOW_MAX)
        h->lim.stream_window = DEFAULT_WINDOW;
    if (h->lim.header_list < KINO_HPACK_ENTRY_OVERHEAD) h->lim.header_list = KINO_HPACK_ENTRY_OVERHEAD;
    if (h->lim.output_max < 4096) h->lim.output_max = 4096;
    h->cb = *cb;
    h->ctx = ctx;
    /* twice the streams allowed: a closed stream keeps its slot until the
     * caller is done with it, while the peer opens the next */
    h->cap = (int)h->lim.max_streams * 2;
    h->streams = calloc((size_t)h->cap, sizeof *h->streams);
    h->fields = malloc(h->lim.header_list);
    if (!h->streams || !h->fields ||
        kino_hpack_decoder_init(&h->dec, KINO_HPACK_TABLE_SIZE, h->lim.header_list, NULL, 0) != 0) {
        free(h->streams);
        free(h->fields);
        free(h);
        return NULL;
    }
    kino_hpack_encoder_init(&h->enc);
    h->peer_frame = FRAME_MIN;
    h->peer_window = DEFAULT_WINDOW;
    h->send_window = DEFAULT_WINDOW;
    h->recv_window = DEFAULT_WINDOW;
    uint64_t target = (uint64_t)h->lim.stream_window * h->lim.max_streams;
    if (target < DEFAULT_WINDOW) target = DEFAULT_WINDOW;
    if (target > WINDOW_MAX) target = WINDOW_MAX;
    h->recv_target = (uint32_t)target;
    budget_init(&h->resets, h->lim.reset_burst, h->lim.reset_rate);
    budget_init(&h->glitches, h->lim.glitch_burst, h->lim.glitch_rate);
    /* our SETTINGS: streams, stream window, header list; push off */
    uint8_t s[24];
    size_t k = 0;
    uint16_t ids[4] = {S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_HEADER_LIST_SIZE,
                       S_ENABLE_PUSH};
    uint32_t vals[4] = {h->lim.max_streams, h->lim.stream_window, h->lim.header_list, 0};
    for (int i = 0; i < 4; i++) {
        s[k] = (uint8_t)(ids[i] >> 8);
        s[k + 1] = (uint8_t)ids[i];
        put32(s + k + 2, vals[i]);
        k += 6;
    }
    out_frame(h, F_SETTINGS, 0, 0, s, k);
    if (h->recv_target > DEFAULT_WINDOW) {
        out_u32(h, F_WINDOW_UPDATE, 0, h->recv_target - DEFAULT_WINDOW);
        h->recv_window = h->recv_target;
    }
    h->state = P_PREFACE;
    return h;
}

void kino_h2_free(kino_h2 *h) {
    if (!h) return;
    kino_hpack_decoder_free(&h->dec);
    free(h->streams);
    free(h->fields);
    free(h->block);
    free(h->out);
    free(h);
}

void kino_h2_shutdown(kino_h2 *h) {
    if (h->state == P_DEAD || h->shutdown == 2) return;
    if (h->shutdown == 0) {
        out_goaway(h, 0x7fffffffu, KINO_H2_NO_ERROR);
        out_frame(h, F_PING, 0, 0, SHUTDOWN_PING, 8);
        h->shutdown = 1;
        return;
    }
    h->goaway_id = h->last_id;
    out_goaway(h, h->last_id, KINO_H2_NO_ERROR);
    h->shutdown = 2;
}

int kino_h2_shutdown_phase(const kino_h2 *h) {
    return h->shutdown;
}

int kino_h2_finished(const kino_h2 *h) {
    if (h->state == P_DEAD) return 1;
    return (h->shutdown == 2 || h->peer_goaway) && h->nstreams == 0;
}

int kino_h2_streams(const kino_h2 *h) {
    return h->nopen;
}

uint32_t kino_h2_error(const kino_h2 *h) {
    return h->state == P_DEAD ? h->error : 0;
}

const char *kino_h2_why(const kino_h2 *h) {
    return h->why ? h->why : "";
}

const char *kino_h2_code_name(uint32_t code) {
    static const char *const names[] = {
        "NO_ERROR",       "PROTOCOL_ERROR",    "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT", "STREAM_CLOSED",   "FRAME_SIZE_ERROR", "REFUSED_STREAM",
        "CANCEL",         "COMPRESSION_ERROR", "CONNECT_ERROR",  "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};
    return code < sizeof names / sizeof *names ? names[code] : "UNKNOWN";
}
