/*
 * kino_stream.c -- HTTP/2 in the engine: a connection that speaks h2 on
 * its I/O thread, and each of its streams as a request that workers
 * serve through the same API as an HTTP/1.1 request (kino.h). The frame
 * layer itself, without I/O, is kino_h2.c; doc/http2.md has the design.
 * This file reads top to bottom:
 *
 *    1. structures    the connection's HTTP/2 side, a stream
 *    2. streams       making, finishing and freeing a stream
 *    3. I/O thread    start, read and feed, the frame layer's callbacks,
 *                     framing queued responses, writing, timers, closing
 *    4. workers       the worker API on a stream: body, wait, response
 *
 * Ownership. The I/O thread owns the connection for its whole life: the
 * socket (and TLS), the frame layer and HPACK. A stream's request object
 * is a kino_conn (c->st set) that goes through the ready queue like any
 * request; the worker that takes it never touches the socket. What the
 * two sides share -- the request body bytes not yet read, the response
 * bytes not yet framed, the flags saying who is done -- lives in the
 * kino_stream under its connection's mutex, held for a copy at a time.
 * A worker with news (response bytes, body bytes read, the end) puts the
 * stream on its I/O thread's hand-back stack, as kino_release does for a
 * connection, at most once until the thread has looked at it; a worker
 * that must wait is woken through its waiter's wake fd.
 *
 * Timers. Under request_timeout a stream's request object sits on its
 * I/O thread's t_streams list (by c->tlink, an I/O-thread field) from
 * the moment it is queued until the I/O thread has nothing more to frame
 * for it; the I/O thread alone arms and disarms it, and always disarms
 * it before the stream can be freed (stream_disarm).
 *
 * Freeing. A stream is freed when both sides are done with it: the
 * worker (kino_next) and the I/O thread (response framed, or the stream
 * or connection gone). The connection's shared part (kino_h2conn) lives
 * until its last stream is freed, so a worker may still look at it after
 * the socket closed.
 */
#include "kino_engine.h"
#include "kino_h2.h"

/* ------------------------------------------------------------------ */
/* 1. structures                                                      */
/* ------------------------------------------------------------------ */

#define STREAM_OUT_MAX (256 * 1024) /* response bytes a stream queues
                                       before its worker waits */
#define STREAM_NOTE_READ 16384      /* body bytes read before the I/O
                                       thread is told (WINDOW_UPDATE) */
#define STREAM_ROOM 1024            /* head bytes a stream holds at least,
                                       so a recycled one usually fits */
#define STREAM_SPARES 16            /* finished streams a connection keeps */
#define SPARE_BUF_MAX 4096          /* a kept stream's buffers up to this */

enum { T_HEADER, T_HELD, T_IDLE }; /* the connection's timer list */

struct kino_h2conn {
    kino_h2 *h;              /* frame layer (I/O thread; NULL once closed) */
    kino_conn *c;            /* the connection (I/O thread) */
    kino_io *io;
    klist link;              /* io->h2conns (I/O thread) */
    klist flink;             /* io->h2flush while a write is due (I/O thread) */
    klist streams;           /* streams not yet freed (under mu) */
    klist spares;            /* finished streams kept for reuse (under mu) */
    int nspares;             /* under mu */
    pthread_mutex_t mu;      /* guards the streams' shared fields */
    int refs;                /* under mu: streams not freed, + 1 while open */
    int closed;              /* under mu: the connection is gone */
    int served;              /* I/O thread: a stream was opened */
    int timer;               /* I/O thread: T_HEADER, T_HELD or T_IDLE */
    int want_out;            /* I/O thread: output waits for EV_OUT */
    int tls;
    char *peer_cert;         /* the client certificate (PEM), read once
                                after the handshake; immutable after */
    size_t peer_cert_len;
};

struct kino_stream {
    kino_conn req;           /* the request object (c->st == this); a copy
                                of its head follows the struct (room bytes) */
    kino_conn *c;            /* &req */
    size_t room;
    kino_h2conn *hc;
    uint32_t id;
    klist link;              /* hc->streams, or hc->spares */
    /* shared, under hc->mu */
    char *in;                /* request body bytes not yet read */
    size_t in_off, in_len, in_cap;
    size_t consumed;         /* read and not yet given back */
    char *out;               /* response body bytes not yet framed */
    size_t out_off, out_len, out_cap;
    char *fields;            /* response head: records of u16 name length,
                                u32 value length, name, value */
    size_t fields_len, fields_cap;
    int nfields, status;
    char *trailers;          /* trailer records, the same way (worker-owned
                                until out_end publishes them) */
    size_t trailers_len, trailers_cap;
    int ntrailers;
    char *hints;             /* informational heads not yet framed: per
                                head u16 status, u16 count, u32 bytes, then
                                its field records */
    size_t hints_len, hints_cap;
    kino_waiter *waiter;     /* a worker waiting in kino_wait */
    uint32_t gone_code;
    unsigned in_end : 1;     /* the body is complete */
    unsigned gone : 1;       /* reset, or the connection is gone */
    unsigned head_ready : 1; /* the worker finished the head */
    unsigned out_end : 1;    /* ... and the body */
    unsigned abort : 1;      /* ... and wants the stream reset */
    unsigned worker_done : 1;/* kino_next: the worker let go */
    unsigned notified : 1;   /* on the I/O thread's hand-back stack */
    unsigned head_sent : 1;  /* I/O thread: HEADERS went out */
    unsigned end_sent : 1;   /* I/O thread: END_STREAM went out */
    unsigned io_done : 1;    /* I/O thread: nothing more to frame */
    /* the worker's own (no lock; bytes, not bits beside shared ones) */
    unsigned char seen_date, seen_server, seen_length;
};

/* ------------------------------------------------------------------ */
/* 2. streams                                                         */
/* ------------------------------------------------------------------ */

/* Grow *buf to hold need bytes; 0 when out of memory. */
static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return 0;
    *buf = b;
    *cap = c;
    return 1;
}

static void stream_release(kino_stream *st) {
    free(st->in);
    free(st->out);
    free(st->fields);
    free(st->trailers);
    free(st->hints);
    free(st);
}

/* Drop a buffer larger than a kept stream may hold. */
static void trim(char **buf, size_t *cap) {
    if (*cap <= SPARE_BUF_MAX) return;
    free(*buf);
    *buf = NULL;
    *cap = 0;
}

/* A stream is finished on both sides; with hc->mu held. It is kept on
 * the connection's spares for its next stream (request object, head
 * room and buffers: no allocation per stream once a connection is warm)
 * unless the connection is closed or has STREAM_SPARES already: a busy
 * connection's bursts reuse them, and an idle one holds at most that
 * many (each about 3 KiB with buffers up to SPARE_BUF_MAX; the frame
 * layer's own buffers are 64 KiB per connection). Frees the connection's
 * shared part too when it was the last reference (*last set: the caller
 * unlocks, then frees hc). Per connection rather than per I/O thread
 * because a stream may be finished on a worker (its connection gone),
 * and hc->mu is held here anyway. */
static void stream_free(kino_stream *st, int *last) {
    kino_h2conn *hc = st->hc;
    klist_remove(&st->link);
    *last = --hc->refs == 0;
    if (hc->closed || hc->nspares >= STREAM_SPARES) {
        stream_release(st);
        return;
    }
    trim(&st->in, &st->in_cap);
    trim(&st->out, &st->out_cap);
    trim(&st->fields, &st->fields_cap);
    trim(&st->trailers, &st->trailers_cap);
    trim(&st->hints, &st->hints_cap);
    klist_push(&hc->spares, &st->link);
    hc->nspares++;
}

/* Free the connection's spare streams (it is gone). */
static void spares_free(kino_h2conn *hc) {
    while (hc->nspares > 0) {
        kino_stream *st = KLIST_ENTRY(hc->spares.next, kino_stream, link);
        klist_remove(&st->link);
        stream_release(st);
        hc->nspares--;
    }
}

static void hc_free(kino_h2conn *hc) {
    spares_free(hc);
    pthread_mutex_destroy(&hc->mu);
    free(hc->peer_cert);
    free(hc);
}

/* Wake the worker waiting on st, if one is; with hc->mu held. */
static void stream_wake(kino_stream *st) {
    if (st->waiter) {
        wakefd_signal(st->waiter->wake);
        st->waiter = NULL;
    }
}

/* Put the stream on its I/O thread's hand-back stack (it is known
 * there by c->st) and wake the thread. Call after setting st->notified
 * under hc->mu, when it was clear: the stream cannot be freed until the
 * thread has popped it. */
static void stream_push(kino_stream *st) {
    kino_conn *c = st->c;
    kino_io *io = c->io;
    kino_conn *top = atomic_load(&io->returns);
    do c->rnext = top;
    while (!atomic_compare_exchange_weak(&io->returns, &top, c));
    wake_io(io);
}

/* Take the stream off the request_timeout list (I/O thread; a no-op
 * when it is not on it). Done wherever the I/O thread marks a stream
 * io_done, and for every stream when the connection closes, so no freed
 * stream is ever on the list. */
static void stream_disarm(kino_stream *st) { klist_remove(&st->c->tlink); }

/* A stream for a request head (I/O thread): a spare of the connection
 * when one has room for the head, else a new one; its request object
 * holds a copy of the head, since the frame layer's spans die when its
 * callback returns. Every field but the kept buffers starts at zero, as
 * from calloc. NULL when out of memory. */
static kino_stream *stream_new(kino_h2conn *hc, const kino_head *h) {
    size_t strings = h->method.n + h->target.n + h->host.n;
    for (size_t i = 0; i < h->nheaders; i++) strings += h->headers[i].name.n + h->headers[i].value.n;
    size_t need = h->nheaders * sizeof(kino_header) + strings + 1;
    kino_stream *st = NULL;
    pthread_mutex_lock(&hc->mu);
    if (!klist_empty(&hc->spares)) {
        st = KLIST_ENTRY(hc->spares.next, kino_stream, link);
        klist_remove(&st->link);
        hc->nspares--;
    }
    pthread_mutex_unlock(&hc->mu);
    if (st && st->room < need) {
        stream_release(st);
        st = NULL;
    }
    if (st) {
        kino_stream keep = *st; /* the buffers and the room stay */
        memset(st, 0, sizeof *st);
        st->room = keep.room;
#define KEEP(b) (st->b = keep.b, st->b##_cap = keep.b##_cap)
        KEEP(in), KEEP(out), KEEP(fields), KEEP(trailers), KEEP(hints);
#undef KEEP
    } else {
        size_t room = need > STREAM_ROOM ? need : STREAM_ROOM;
        if (!(st = calloc(1, sizeof *st + room))) return NULL;
        st->room = room;
    }
    kino_conn *c = st->c = &st->req;
    kino_header *hdrs = (kino_header *)(st + 1);
    char *p = (char *)(hdrs + h->nheaders);
#define COPY(dst, src) \
    do { \
        if ((src).n) memcpy(p, (src).p, (src).n); /* an empty span may be NULL */ \
        (dst).p = p; \
        (dst).n = (src).n; \
        p += (src).n; \
    } while (0)
    c->head = *h;
    COPY(c->head.method, h->method);
    COPY(c->head.target, h->target);
    COPY(c->head.host, h->host);
    c->head.path.p = c->head.target.p;
    c->head.query.p = h->query.n ? c->head.target.p + (h->query.p - h->target.p) : NULL;
    for (size_t i = 0; i < h->nheaders; i++) {
        COPY(hdrs[i].name, h->headers[i].name);
        COPY(hdrs[i].value, h->headers[i].value);
    }
#undef COPY
    c->head.headers = hdrs;
    kino_conn *pc = hc->c;
    klist_init(&c->qlink);
    klist_init(&c->tlink);
    c->io = hc->io;
    c->ls = pc->ls;
    c->fd = -1;
    c->peer_port = pc->peer_port;
    memcpy(c->peer, pc->peer, sizeof c->peer);
    return st;
}

/* ------------------------------------------------------------------ */
/* 3. I/O thread                                                      */
/* ------------------------------------------------------------------ */

static int hc_flush(kino_io *io, kino_h2conn *hc);
static void hc_close(kino_io *io, kino_h2conn *hc);

/* Parse n field records at p into f (or a heap array when more than
 * fit; *heap then set). NULL when out of memory. */
static kino_header *records(const char *p, int n, kino_header *f, int room, int *heap) {
    kino_header *fv = f;
    *heap = 0;
    if (n > room) {
        if (!(fv = malloc((size_t)n * sizeof *fv))) return NULL;
        *heap = 1;
    }
    for (int i = 0; i < n; i++) {
        uint16_t nl;
        uint32_t vl;
        memcpy(&nl, p, 2);
        memcpy(&vl, p + 2, 4);
        fv[i].name = (kino_span){p + 6, nl};
        fv[i].value = (kino_span){p + 6 + nl, vl};
        p += 6 + nl + vl;
    }
    return fv;
}

/* Frame what a stream has queued, as far as the windows allow, and
 * finish it when both sides are done; with hc->mu held. Returns 1 when
 * the stream was freed (and *last as stream_free says). */
static int stream_pump(kino_h2conn *hc, kino_stream *st, int *last) {
    kino_h2 *h = hc->h;
    *last = 0;
    if (st->consumed && h) {
        kino_h2_consume(h, st->id, st->consumed);
        st->consumed = 0;
    }
    if (!st->io_done && (st->gone || !h)) st->io_done = 1;
    kino_header f[32];
    int heap;
    if (st->hints_len) { /* 103 Early Hints, each its own HEADERS frame */
        const char *p = st->hints, *e = st->hints + st->hints_len;
        while (!st->io_done && !st->head_sent && p < e) {
            uint16_t status, n;
            uint32_t len;
            memcpy(&status, p, 2);
            memcpy(&n, p + 2, 2);
            memcpy(&len, p + 4, 4);
            kino_header *fv = records(p + 8, n, f, 32, &heap);
            if (!fv || kino_h2_send_head(h, st->id, status, fv, n, 0) != KINO_OK) {
                st->io_done = 1;
                kino_h2_reset(h, st->id, KINO_H2_INTERNAL_ERROR);
            }
            if (heap) free(fv);
            p += 8 + len;
        }
        st->hints_len = 0;
    }
    if (!st->io_done && st->head_ready && !st->head_sent) {
        kino_header *fv = records(st->fields, st->nfields, f, 32, &heap);
        int end = st->out_end && !st->abort && st->out_len == st->out_off && !st->ntrailers;
        if (!fv || kino_h2_send_head(h, st->id, st->status, fv, (size_t)st->nfields, end) != KINO_OK) {
            st->io_done = 1;
            kino_h2_reset(h, st->id, KINO_H2_INTERNAL_ERROR);
        } else {
            st->head_sent = 1;
            st->end_sent = (unsigned)end;
        }
        if (heap) free(fv);
    }
    if (!st->io_done && st->head_sent && !st->end_sent) {
        size_t queued = st->out_len - st->out_off;
        int end = st->out_end && !st->abort && !st->ntrailers;
        long k = queued || end ? kino_h2_send_data(h, st->id, st->out + st->out_off, queued, end) : 0;
        if (k < 0) {
            st->io_done = 1;
        } else {
            st->out_off += (size_t)k;
            if (st->out_off == st->out_len) st->out_off = st->out_len = 0;
            if (end && (size_t)k == queued) st->end_sent = 1;
            if ((size_t)k && queued >= STREAM_OUT_MAX && st->out_len - st->out_off < STREAM_OUT_MAX)
                stream_wake(st); /* room again for a waiting worker */
            if (st->out_end && !st->abort && st->ntrailers && st->out_len == st->out_off) {
                /* the body is out: trailers end the stream (Rack 3 trailers) */
                kino_header *fv = records(st->trailers, st->ntrailers, f, 32, &heap);
                if (fv && kino_h2_send_trailers(h, st->id, fv, (size_t)st->ntrailers) == KINO_OK) st->end_sent = 1;
                else st->abort = 1;
                if (heap) free(fv);
            }
        }
    }
    if (st->abort && !st->io_done) {
        if (!st->head_sent) { /* nobody answered: 500, as over HTTP/1.1 */
            static const kino_header ct = {{"content-type", 12}, {"text/plain", 10}};
            kino_h2_send_head(h, st->id, 500, &ct, 1, 0);
            kino_h2_send_data(h, st->id, "Internal Server Error\n", 22, 1);
        } else {
            kino_h2_reset(h, st->id, KINO_H2_INTERNAL_ERROR);
        }
        st->io_done = 1;
    }
    if (st->end_sent) st->io_done = 1;
    if (st->io_done) stream_disarm(st);
    if (st->io_done && st->worker_done && !st->notified) {
        if (h) {
            kino_h2_stream_done(h, st->id);
            if (st->in_len > st->in_off) kino_h2_consume(h, st->id, st->in_len - st->in_off);
        }
        stream_free(st, last);
        return 1;
    }
    return 0;
}

/* Pump every stream of the connection (a window opened, the output
 * drained); with hc->mu held. */
static void pump_all(kino_h2conn *hc) {
    klist *head = &hc->streams;
    for (klist *n = head->next, *next; n != head; n = next) {
        next = n->next;
        int last;
        stream_pump(hc, KLIST_ENTRY(n, kino_stream, link), &last);
    }
}

/* The frame layer's callbacks (inside kino_h2_feed, I/O thread). */

static void *on_request(void *ctx, uint32_t id, const kino_head *h, int end) {
    kino_h2conn *hc = ctx;
    kino_server *s = hc->io->s;
    if (atomic_load(&s->draining)) return NULL;
    kino_stream *st = stream_new(hc, h);
    if (!st) return NULL;
    kino_conn *c = st->c;
    c->st = st;
    st->hc = hc;
    st->id = id;
    st->in_end = (unsigned)end;
    c->body = end ? B_NONE : B_LENGTH; /* read through the stream */
    if (!end && c->head.content_length < 0) c->head.chunked = 1; /* length unknown */
    if (s->o.max_body_size && h->content_length > 0 && (uint64_t)h->content_length > s->o.max_body_size)
        c->refused = 413;
    if (s->o.log_sink) c->t_start = kino_now_us();
    c->final = 0;
    atomic_store_explicit(&c->answer, ANS_OPEN, memory_order_relaxed);
    pthread_mutex_lock(&hc->mu);
    klist_push(&hc->streams, &st->link);
    hc->refs++;
    pthread_mutex_unlock(&hc->mu);
    hc->served = 1;
    atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed);
    c->queued_at = hc->io->now;
    c->state = C_AWAY;
    if (s->request_ms) { /* as for HTTP/1.1: from the moment it is queued */
        c->deadline = hc->io->now + s->request_ms;
        klist_push(&hc->io->t_streams, &c->tlink);
    }
    if (kino_ready_push(s, c) != 0) { /* queue full or stopped: refused */
        atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->rejected, 1, memory_order_relaxed);
        stream_disarm(st);
        pthread_mutex_lock(&hc->mu);
        int last;
        stream_free(st, &last);
        pthread_mutex_unlock(&hc->mu);
        return NULL;
    }
    return st;
}

static void on_data(void *ctx, void *stream, const char *p, size_t n, int end) {
    kino_h2conn *hc = ctx;
    kino_stream *st = stream;
    pthread_mutex_lock(&hc->mu);
    if (n) {
        if (st->in_off == st->in_len) st->in_off = st->in_len = 0;
        if (st->in_off && st->in_len + n > st->in_cap) {
            memmove(st->in, st->in + st->in_off, st->in_len - st->in_off);
            st->in_len -= st->in_off;
            st->in_off = 0;
        }
        if (grow(&st->in, &st->in_cap, st->in_len + n)) {
            memcpy(st->in + st->in_len, p, n);
            st->in_len += n;
        } else {
            st->gone = 1;
            kino_h2_reset(hc->h, st->id, KINO_H2_INTERNAL_ERROR);
        }
    }
    if (end) st->in_end = 1;
    stream_wake(st);
    pthread_mutex_unlock(&hc->mu);
}

static void on_reset(void *ctx, void *stream, uint32_t code) {
    kino_h2conn *hc = ctx;
    kino_stream *st = stream;
    pthread_mutex_lock(&hc->mu);
    st->gone = 1;
    st->gone_code = code;
    st->io_done = 1;
    stream_disarm(st);
    stream_wake(st);
    int last = 0;
    if (st->worker_done && !st->notified) {
        if (st->in_len > st->in_off) kino_h2_consume(hc->h, st->id, st->in_len - st->in_off);
        stream_free(st, &last);
    }
    pthread_mutex_unlock(&hc->mu);
}

static void on_writable(void *ctx, void *stream) {
    kino_h2conn *hc = ctx;
    pthread_mutex_lock(&hc->mu);
    if (stream) {
        int last;
        stream_pump(hc, stream, &last);
    } else {
        pump_all(hc);
    }
    pthread_mutex_unlock(&hc->mu);
}

static const kino_h2_callbacks callbacks = {on_request, on_data, on_reset, on_writable};

/* Set the connection's timer: header_timeout (from accept) until its
 * first stream, then none while a stream is open, keepalive_timeout
 * from the moment none is. Moves only on a change, so a busy connection
 * costs no list work per request. */
static void hc_timer(kino_io *io, kino_h2conn *hc) {
    kino_conn *c = hc->c;
    int want = kino_h2_streams(hc->h) > 0 ? T_HELD : hc->served ? T_IDLE : T_HEADER;
    if (want == hc->timer) return;
    hc->timer = want;
    klist_remove(&c->tlink);
    if (want == T_HELD) {
        klist_push(&io->t_held, &c->tlink);
    } else {
        int64_t ms = io->s->keepalive_ms;
        c->deadline = ms > 0 ? io->now + ms : INT64_MAX;
        klist_push(&io->t_idle, &c->tlink);
    }
}

int kino_h2conn_start(kino_io *io, kino_conn *c) {
    kino_server *s = io->s;
    kino_h2conn *hc = calloc(1, sizeof *hc);
    if (!hc) return -1;
    kino_h2_limits l;
    kino_h2_limits_default(&l, atomic_load(&s->nwaiters));
    hc->h = kino_h2_new(&l, &callbacks, hc);
    if (!hc->h) {
        free(hc);
        return -1;
    }
    pthread_mutex_init(&hc->mu, NULL);
    klist_init(&hc->streams);
    klist_init(&hc->spares);
    klist_init(&hc->flink);
    klist_push(&io->h2conns, &hc->link);
    hc->c = c;
    hc->io = io;
    hc->refs = 1;
    hc->tls = conn_tls(c);
#ifdef KINO_TLS
    /* read here, on the thread that owns the TLS session, for every
     * stream's SSL_CLIENT_CERT: workers never touch the session */
    if (c->tls) hc->peer_cert = kino_tls_peer_cert(c->tls, &hc->peer_cert_len);
#endif
    c->h2 = hc;
    c->state = C_H2;
    /* bytes already read (the sniffed preface, or more) are the frame
     * layer's first input */
    if (c->buf && c->len > c->off) {
        int r = kino_h2_feed(hc->h, c->buf->data + c->off, c->len - c->off, (uint64_t)io->now);
        c->off = c->len = 0;
        if (r != KINO_OK) {
            if (hc_flush(io, hc)) hc_close(io, hc);
            return 0;
        }
    }
    if (hc_flush(io, hc)) kino_h2conn_event(io, c, EV_IN);
    return 0;
}

/* Write the frame layer's output; on a full socket wait for EV_OUT.
 * Closes the connection when it is finished (both sides said GOAWAY
 * and no stream is left, or a connection error) or broken: returns 0
 * then, and neither hc nor its connection may be touched again. */
static int hc_flush(kino_io *io, kino_h2conn *hc) {
    kino_conn *c = hc->c;
    const char *p;
    size_t n;
    int drained = 0;
    while ((n = kino_h2_output(hc->h, &p)) > 0) {
        ssize_t w = conn_send(c, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                hc->want_out = 1;
                return 1;
            }
            hc_close(io, hc);
            return 0;
        }
        kino_h2_output_sent(hc->h, (size_t)w);
        drained = 1;
    }
    hc->want_out = 0;
    /* draining: once no stream is left the final GOAWAY need not wait
     * for the PING's round trip */
    if (atomic_load(&io->s->draining) && kino_h2_streams(hc->h) == 0 && kino_h2_shutdown_phase(hc->h) < 2) {
        kino_h2_shutdown(hc->h);
        kino_h2_shutdown(hc->h);
        return hc_flush(io, hc);
    }
    if (kino_h2_finished(hc->h)) {
        hc_close(io, hc);
        return 0;
    }
    if (drained) { /* room in the output: streams held back may go on */
        pthread_mutex_lock(&hc->mu);
        pump_all(hc);
        pthread_mutex_unlock(&hc->mu);
        if (kino_h2_output(hc->h, &p) > 0) return hc_flush(io, hc);
    }
    hc_timer(io, hc);
    return 1;
}

/* The connection ends: every stream is gone for its worker; the socket
 * closes (after a linger when the frame layer owes the peer a GOAWAY
 * it could not write). */
static void hc_close(kino_io *io, kino_h2conn *hc) {
    kino_conn *c = hc->c;
    if (!c) return;
    c->h2 = NULL;
    hc->c = NULL;
    klist_remove(&hc->link);
    klist_remove(&hc->flink);
    pthread_mutex_lock(&hc->mu);
    kino_h2 *h = hc->h;
    hc->h = NULL;
    hc->closed = 1;
    klist *head = &hc->streams;
    for (klist *n = head->next, *next; n != head; n = next) {
        next = n->next;
        kino_stream *st = KLIST_ENTRY(n, kino_stream, link);
        st->gone = 1;
        st->io_done = 1;
        stream_disarm(st);
        stream_wake(st);
        int last;
        if (st->worker_done && !st->notified) stream_free(st, &last);
    }
    int last = --hc->refs == 0;
    pthread_mutex_unlock(&hc->mu);
    kino_h2_free(h);
    if (last) hc_free(hc);
    if (io) kino_conn_destroy(io->s, io, c);
}

void kino_h2conn_event(kino_io *io, kino_conn *c, int mask) {
    kino_h2conn *hc = c->h2;
    if ((mask & EV_OUT) && hc->want_out && !hc_flush(io, hc)) return;
    if (!(mask & (EV_IN | EV_HUP)) && !(conn_wants(c, 0) & KINO_WAIT_WRITE)) return;
    if (!c->buf && !(c->buf = kino_buf_get(io))) {
        hc_close(io, hc);
        return;
    }
    for (;;) {
        size_t room = c->buf->cap;
        ssize_t n = conn_recv(c, c->buf->data, room);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            hc_close(io, hc);
            return;
        }
        if (n == 0) { /* the peer closed */
            hc_close(io, hc);
            return;
        }
        int r = kino_h2_feed(hc->h, c->buf->data, (size_t)n, (uint64_t)io->now);
        if (r != KINO_OK) { /* the GOAWAY is queued: out with it, then close */
            if (hc_flush(io, hc)) hc_close(io, hc);
            return;
        }
        if (!conn_more(c, n, room)) break;
    }
    kino_buf_put(io, c->buf);
    c->buf = NULL;
    hc_flush(io, hc);
}

/* A stream came back from its worker with news -- or from
 * kino_server_abort (next NEXT_ABORT), unserved: answered 500. Its
 * frames are queued now; the connection is written once for all the
 * streams of the batch, by kino_h2conn_flush_returned after io_returns
 * has handed back every one (a burst of 10 responses is one send). */
void kino_h2conn_returned(kino_io *io, kino_conn *c) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    pthread_mutex_lock(&hc->mu);
    st->notified = 0;
    if (c->next == NEXT_ABORT) {
        st->worker_done = 1;
        st->abort = 1;
    }
    int last = 0, freed;
    if (hc->closed) {
        freed = st->worker_done;
        if (freed) stream_free(st, &last);
    } else {
        freed = stream_pump(hc, st, &last);
    }
    pthread_mutex_unlock(&hc->mu);
    if (last) hc_free(hc);
    else if (!hc->closed && hc->c && klist_empty(&hc->flink)) klist_push(&io->h2flush, &hc->flink);
}

/* Write every connection that streams were handed back to in this batch
 * (I/O thread, after io_returns). hc_flush may close one: hc_close takes
 * it off the list first, and a connection is listed only while open. */
void kino_h2conn_flush_returned(kino_io *io) {
    while (!klist_empty(&io->h2flush)) {
        kino_h2conn *hc = KLIST_ENTRY(io->h2flush.next, kino_h2conn, flink);
        klist_remove(&hc->flink);
        hc_flush(io, hc);
    }
}

/* A stream's request that no worker will serve (the server stops with
 * it queued or handed back): done from the worker's side. Freed now when
 * its connection is gone, else when the connection closes. */
void kino_h2conn_dropped(kino_conn *c) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    int last = 0;
    pthread_mutex_lock(&hc->mu);
    st->notified = 0;
    st->worker_done = 1;
    if (!c->r_done) st->abort = 1;
    if (hc->closed) stream_free(st, &last);
    pthread_mutex_unlock(&hc->mu);
    if (last) hc_free(hc);
}

void kino_h2conn_destroyed(kino_conn *c) {
    if (c->h2) hc_close(NULL, c->h2);
}

void kino_h2conn_drain(kino_io *io) {
    klist *head = &io->h2conns;
    for (klist *n = head->next, *next; n != head; n = next) {
        next = n->next;
        kino_h2conn *hc = KLIST_ENTRY(n, kino_h2conn, link);
        kino_h2_shutdown(hc->h);
        hc_flush(io, hc);
    }
}

static int st_field(kino_stream *st, const char *name, size_t nlen, const char *val, size_t vlen);

/* request_timeout expired for c's stream (I/O thread; c is already off
 * t_streams). As over HTTP/1.1 the answer is the server's only while
 * the app has not begun its own: the compare-and-swap on c->answer
 * decides, so a worker that begins later fails its kino_resp_begin, and
 * a response under way is never cut. The 504 is queued like a worker's
 * response -- head fields, body bytes, out_end -- and framed by
 * stream_pump as the windows allow; the worker-owned buffers are the
 * I/O thread's to fill here because the worker can no longer claim the
 * answer. The stream and the connection go on; a request body still
 * arriving is declined (RST_STREAM NO_ERROR) once the worker lets go.
 * Returns 1 when the timeout answered the stream, 0 when the app had. */
int kino_h2conn_timeout(kino_io *io, kino_conn *c) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    int open = ANS_OPEN;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_TIMEOUT)) return 0;
    atomic_fetch_add_explicit(&io->s->timeouts, 1, memory_order_relaxed);
    const char *reason = kino_reason(504);
    size_t n = strlen(reason);
    char num[24], date[DATE_WORDS * 8];
    int k = snprintf(num, sizeof num, "%zu", n + 1);
    date_copy(date); /* "Date: <value>\r\n" */
    pthread_mutex_lock(&hc->mu);
    int last = 0, ok = 0;
    if (!st->io_done && hc->h) {
        st->fields_len = 0;
        st->nfields = 0;
        st->out_off = st->out_len = 0;
        ok = !st_field(st, "content-type", 12, "text/plain", 10) &&
             !st_field(st, "content-length", 14, num, (size_t)k) &&
             !st_field(st, "date", 4, date + 6, DATE_LINE_LEN - 8) &&
             !st_field(st, "server", 6, "Kino", 4) && grow(&st->out, &st->out_cap, n + 1);
        if (ok) {
            memcpy(st->out, reason, n);
            st->out[n] = '\n';
            st->out_len = n + 1;
        }
        st->status = 504;
        st->head_ready = 1;
        st->out_end = 1;
        st->abort = (unsigned)!ok; /* out of memory: a 500 without a body, or a reset */
        stream_wake(st); /* a worker waiting for body bytes: its next call fails */
        stream_pump(hc, st, &last);
    }
    pthread_mutex_unlock(&hc->mu);
    if (hc->c) hc_flush(io, hc);
    return 1;
}

/* ------------------------------------------------------------------ */
/* 4. workers                                                         */
/* ------------------------------------------------------------------ */

int kino_stream_tls(kino_conn *c) { return c->st->hc->tls; }

/* The connection's client certificate, as kino_conn_peer_cert gives it
 * over HTTP/1.1: a copy the caller frees (NULL when there is none). */
char *kino_stream_peer_cert(kino_conn *c, size_t *len) {
    kino_h2conn *hc = c->st->hc;
    char *pem = hc->peer_cert ? malloc(hc->peer_cert_len + 1) : NULL;
    *len = 0;
    if (!pem) return NULL;
    memcpy(pem, hc->peer_cert, hc->peer_cert_len + 1);
    *len = hc->peer_cert_len;
    return pem;
}

static int st_fail(kino_conn *c, const char *why) {
    c->error = why;
    c->broken = 1;
    return KINO_ERROR;
}

/* Tell the I/O thread about st (once until it looks); with hc->mu held.
 * Returns nonzero when the caller must push after unlocking. */
static int st_note(kino_stream *st) {
    if (st->notified || st->hc->closed) return 0;
    st->notified = 1;
    return 1;
}

int kino_stream_wait(kino_conn *c, kino_waiter *w, int events) {
    struct pollfd p = {.fd = w->wake[0], .events = POLLIN};
    int64_t ms = c->io->s->body_ms;
    for (;;) {
        if (atomic_load(&w->interrupted)) {
            c->error = "interrupted";
            return KINO_ERROR;
        }
        int n = poll(&p, 1, ms > 0 ? (int)(ms > INT_MAX ? INT_MAX : ms) : -1);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            if (events == KINO_WAIT_READ) {
                c->error = "request body timed out";
                c->refused = 408;
                return KINO_ERROR;
            }
            return st_fail(c, "timed out writing to the client");
        }
        if (n < 0) return st_fail(c, strerror(errno));
        wakefd_drain(w->wake);
        return KINO_OK;
    }
}

long kino_stream_body_read(kino_conn *c, kino_waiter *w, char *buf, size_t n) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    if (c->broken || c->refused) return KINO_ERROR;
    if (c->body == B_NONE || c->body == B_DONE || n == 0) return 0;
    if (atomic_load(&c->answer) == ANS_TIMEOUT) /* the 504 went out: as a shut socket */
        return st_fail(c, "request already answered (request_timeout)");
    pthread_mutex_lock(&hc->mu);
    size_t have = st->in_len - st->in_off;
    long r;
    int push = 0;
    if (have) {
        size_t k = have < n ? have : n;
        memcpy(buf, st->in + st->in_off, k);
        st->in_off += k;
        st->consumed += k;
        c->body_total += k;
        if (st->consumed >= STREAM_NOTE_READ || st->in_off == st->in_len) push = st_note(st);
        uint64_t max = c->io->s->o.max_body_size;
        if (max && c->body_total > max) {
            c->error = "request body larger than max_body_size";
            c->refused = 413;
            r = KINO_ERROR;
        } else {
            r = (long)k;
        }
    } else if (st->in_end) {
        c->body = B_DONE;
        r = 0;
    } else if (st->gone) {
        c->broken = 1;
        c->error = "client reset the stream during the request body";
        r = KINO_ERROR;
    } else {
        st->waiter = w;
        r = KINO_AGAIN;
    }
    pthread_mutex_unlock(&hc->mu);
    if (push) stream_push(st);
    return r;
}

int kino_stream_resp_begin(kino_conn *c, kino_waiter *w, int status) {
    kino_stream *st = c->st;
    int open = ANS_OPEN;
    if (c->refused) return KINO_ERROR;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && !(open == ANS_APP && c->hinted))
        return st_fail(c, "request already answered (timeout or shutdown)");
    if (c->final) return st_fail(c, "response already started");
    if (status < 100 || status > 999) status = 500;
    c->status = status;
    c->final = 1;
    st->fields_len = 0;
    st->nfields = 0;
    st->seen_date = st->seen_server = st->seen_length = 0;
    c->r_length = 0;
    st->trailers_len = 0;
    st->ntrailers = 0;
    return KINO_OK;
}

/* Append one field record (u16 name length, u32 value length, name,
 * value) to a list the worker is building. */
static int record_add(char **buf, size_t *len, size_t *cap, int *count, const char *name,
                      size_t nlen, const char *val, size_t vlen) {
    if (nlen > 0xffff || vlen > 0xffffffffu) return KINO_ERROR;
    if (!grow(buf, cap, *len + 6 + nlen + vlen)) return KINO_ERROR;
    uint16_t nl = (uint16_t)nlen;
    uint32_t vl = (uint32_t)vlen;
    char *p = *buf + *len;
    memcpy(p, &nl, 2);
    memcpy(p + 2, &vl, 4);
    if (nlen) memcpy(p + 6, name, nlen);
    if (vlen) memcpy(p + 6 + nlen, val, vlen);
    *len += 6 + nlen + vlen;
    (*count)++;
    return KINO_OK;
}

/* A field of the head being built (worker-owned until end_head
 * publishes it). */
static int st_field(kino_stream *st, const char *name, size_t nlen, const char *val, size_t vlen) {
    return record_add(&st->fields, &st->fields_len, &st->fields_cap, &st->nfields, name, nlen, val, vlen);
}

/* Names and values a field may have (as kino_resp_header checks). */
static int field_ok(const char *name, size_t nlen, const char *val, size_t vlen) {
    if (nlen == 0) return 0;
    for (size_t i = 0; i < nlen; i++)
        if (!IS_TCHAR(name[i])) return 0;
    for (size_t i = 0; i < vlen; i++)
        if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0') return 0;
    return 1;
}

int kino_stream_resp_trailer(kino_conn *c, kino_waiter *w, const char *name, size_t nlen,
                             const char *val, size_t vlen) {
    kino_stream *st = c->st;
    if (!c->final || c->r_done || !field_ok(name, nlen, val, vlen)) return KINO_ERROR;
    return record_add(&st->trailers, &st->trailers_len, &st->trailers_cap, &st->ntrailers, name,
                      nlen, val, vlen);
}

static int st_bodiless(int st) { return st < 200 || st == 204 || st == 304; }

/* An informational head (103 Early Hints) on a stream: built in the
 * head's field buffer (the final head has not begun), then published as
 * a block of st->hints that the I/O thread frames as HEADERS without
 * END_STREAM before the final head. As over HTTP/1.1 the first one
 * claims the answer, so request_timeout no longer applies. */
int kino_stream_info_begin(kino_conn *c, kino_waiter *w, int status) {
    kino_stream *st = c->st;
    int open = ANS_OPEN;
    if (c->final || c->broken || c->refused || status < 100 || status > 199) return KINO_ERROR;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && !(open == ANS_APP && c->hinted))
        return KINO_ERROR; /* a timeout answered, or the final response began */
    c->hinted = 1;
    c->status = status; /* for kino_resp_header's rules */
    st->fields_len = 0;
    st->nfields = 0;
    st->seen_date = st->seen_server = st->seen_length = 0;
    return KINO_OK;
}

int kino_stream_info_end(kino_conn *c, kino_waiter *w) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    if (c->final || !c->hinted || st->nfields > 0xffff || st->fields_len > 0xffffffffu) return KINO_ERROR;
    uint16_t status = (uint16_t)c->status, n = (uint16_t)st->nfields;
    uint32_t len = (uint32_t)st->fields_len;
    pthread_mutex_lock(&hc->mu);
    int r = KINO_OK, push = 0;
    if (st->gone) {
        r = st_fail(c, "client reset the stream");
    } else if (!grow(&st->hints, &st->hints_cap, st->hints_len + 8 + len)) {
        r = st_fail(c, "out of memory");
    } else {
        char *p = st->hints + st->hints_len;
        memcpy(p, &status, 2);
        memcpy(p + 2, &n, 2);
        memcpy(p + 4, &len, 4);
        if (len) memcpy(p + 8, st->fields, len);
        st->hints_len += 8 + len;
        push = st_note(st); /* hints are worth sending at once */
    }
    pthread_mutex_unlock(&hc->mu);
    st->fields_len = 0;
    st->nfields = 0;
    if (push) stream_push(st);
    return r;
}

int kino_stream_resp_header(kino_conn *c, kino_waiter *w, const char *name, size_t nlen,
                            const char *val, size_t vlen) {
    kino_stream *st = c->st;
    kino_span n = {name, nlen};
    if (!field_ok(name, nlen, val, vlen)) return KINO_ERROR;
    if (span_is(n, "date")) st->seen_date = 1;
    else if (span_is(n, "server")) st->seen_server = 1;
    else if (span_is(n, "content-length")) {
        int64_t len = -1;
        if (st_bodiless(c->status)) return KINO_OK;
        if (parse_length((kino_span){val, vlen}, &len) < 0) return KINO_ERROR;
        st->seen_length = 1;
        c->r_length = (uint64_t)len;
    } else if (span_is(n, "transfer-encoding") || span_is(n, "connection") ||
               span_is(n, "keep-alive") || span_is(n, "upgrade") || span_is(n, "proxy-connection")) {
        return KINO_OK; /* HTTP/2 frames its own body (RFC 9113 8.2.2) */
    }
    return st_field(st, name, nlen, val, vlen);
}

int kino_stream_resp_end_head(kino_conn *c, kino_waiter *w, int body, uint64_t length) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    int status = c->status;
    if (body == KINO_BODY_HIJACK) {
        c->error = "an HTTP/2 stream cannot be hijacked";
        return KINO_ERROR;
    }
    if (status < 200) {
        c->error = "a 1xx status is informational, not a final response (use rack.early_hints for 103)";
        return KINO_ERROR;
    }
    int bodiless = c->head.is_head || st_bodiless(status);
    char num[24];
    if (st->seen_length) {
        c->framing = R_LENGTH;
    } else if (body == KINO_BODY_LENGTH) {
        c->framing = R_LENGTH;
        c->r_length = length;
        if (!st_bodiless(status) && (!c->head.is_head || length > 0)) {
            int k = snprintf(num, sizeof num, "%llu", (unsigned long long)length);
            if (st_field(st, "content-length", 14, num, (size_t)k)) return KINO_ERROR;
        }
    } else {
        c->framing = R_CHUNKED; /* DATA frames until END_STREAM */
    }
    c->r_left = c->r_length;
    if (bodiless) c->framing = R_NOBODY;
    if (!st->seen_date) {
        char date[DATE_WORDS * 8];
        date_copy(date); /* "Date: <value>\r\n" */
        if (st_field(st, "date", 4, date + 6, DATE_LINE_LEN - 8)) return KINO_ERROR;
    }
    if (!st->seen_server && st_field(st, "server", 6, "Kino", 4)) return KINO_ERROR;
    /* published even to a stream already gone: the head is no I/O, and
     * the next write or flush says the client left (as over HTTP/1.1) */
    pthread_mutex_lock(&hc->mu);
    st->status = status;
    st->head_ready = 1;
    pthread_mutex_unlock(&hc->mu);
    return KINO_OK;
}

int kino_stream_resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    if (c->broken) return KINO_ERROR;
    if (c->framing == R_NOBODY || n == 0) return KINO_OK;
    if (c->framing == R_LENGTH) {
        if (n > c->r_left) return st_fail(c, "response body longer than its Content-Length");
        c->r_left -= n;
    }
    pthread_mutex_lock(&hc->mu);
    int r = KINO_OK, push = 0;
    if (st->gone) {
        r = st_fail(c, "client reset the stream");
    } else {
        if (st->out_off && st->out_len + n > st->out_cap) {
            memmove(st->out, st->out + st->out_off, st->out_len - st->out_off);
            st->out_len -= st->out_off;
            st->out_off = 0;
        }
        if (!grow(&st->out, &st->out_cap, st->out_len + n)) {
            r = st_fail(c, "out of memory");
        } else {
            memcpy(st->out + st->out_len, p, n);
            st->out_len += n;
            c->sent += n;
            /* a lot queued: let the I/O thread start on it */
            if (st->out_len - st->out_off >= 65536) push = st_note(st);
        }
    }
    pthread_mutex_unlock(&hc->mu);
    if (push) stream_push(st);
    return r;
}

int kino_stream_resp_flush(kino_conn *c, kino_waiter *w) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    if (c->broken) return KINO_ERROR;
    pthread_mutex_lock(&hc->mu);
    int r = KINO_OK, push = 0;
    if (st->gone) {
        r = st_fail(c, "client reset the stream");
    } else {
        if (st->out_len - st->out_off >= STREAM_OUT_MAX) {
            st->waiter = w;
            r = KINO_AGAIN;
        }
        if (st->head_ready) push = st_note(st);
    }
    pthread_mutex_unlock(&hc->mu);
    if (push) stream_push(st);
    return r;
}

int kino_stream_resp_end(kino_conn *c, kino_waiter *w) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    if (c->broken) return KINO_ERROR;
    if (c->r_done) return KINO_OK;
    pthread_mutex_lock(&hc->mu);
    int r = KINO_OK, push = 0;
    if (st->gone) {
        r = st_fail(c, "client reset the stream");
    } else {
        st->out_end = 1;
        if (c->framing == R_LENGTH && c->r_left > 0) {
            st->abort = 1; /* the client must not take a short body for whole */
            c->error = "response body shorter than its Content-Length";
        }
        c->r_done = 1;
        push = st_note(st);
    }
    pthread_mutex_unlock(&hc->mu);
    if (push) stream_push(st);
    return r;
}

int kino_stream_resp_sendfile(kino_conn *c, kino_waiter *w, int fd, uint64_t *offset,
                              uint64_t *left) {
    char buf[16384];
    while (*left > 0) {
        int r = kino_stream_resp_flush(c, w);
        if (r != KINO_OK) return r;
        size_t want = *left < sizeof buf ? (size_t)*left : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)*offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return st_fail(c, strerror(errno));
        if (n == 0) return st_fail(c, "file shorter than expected");
        if (kino_stream_resp_write(c, w, buf, (size_t)n) != KINO_OK) return KINO_ERROR;
        *offset += (uint64_t)n;
        *left -= (uint64_t)n;
    }
    return KINO_OK;
}

int kino_stream_resp_error(kino_conn *c, kino_waiter *w, int status) {
    kino_stream *st = c->st;
    int open = ANS_OPEN;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && open != ANS_APP)
        return KINO_ERROR;
    if (c->r_done) {
        c->error = "response already complete";
        return KINO_ERROR;
    }
    if (c->refused) status = c->refused;
    if (c->final && (st->head_ready || c->broken)) {
        pthread_mutex_lock(&st->hc->mu);
        st->abort = 1;
        pthread_mutex_unlock(&st->hc->mu);
        return st_fail(c, "response already started");
    }
    const char *reason = kino_reason(status);
    c->final = 0;
    atomic_store(&c->answer, ANS_OPEN);
    c->refused = 0;
    if (kino_stream_resp_begin(c, w, status) != KINO_OK ||
        kino_stream_resp_header(c, w, "content-type", 12, "text/plain", 10) != KINO_OK ||
        kino_stream_resp_end_head(c, w, KINO_BODY_LENGTH, strlen(reason) + 1) != KINO_OK ||
        kino_stream_resp_write(c, w, reason, strlen(reason)) != KINO_OK ||
        kino_stream_resp_write(c, w, "\n", 1) != KINO_OK)
        return KINO_ERROR;
    atomic_fetch_add_explicit(&c->io->s->errors, 1, memory_order_relaxed);
    return kino_stream_resp_end(c, w);
}

kino_conn *kino_stream_next(kino_conn *c, kino_waiter *w) {
    kino_stream *st = c->st;
    kino_h2conn *hc = st->hc;
    kino_server *s = c->io->s;
    int served = c->r_done && !c->broken;
    if (s->o.log_sink) kino_access_taken(c, w);
    waiter_end(w, served);
    if (served) atomic_fetch_add_explicit(&s->served, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    pthread_mutex_lock(&hc->mu);
    st->worker_done = 1;
    if (!c->r_done) st->abort = 1; /* nobody answered, or it broke: 500 or a reset */
    int push = 0, last = 0;
    if (hc->closed) {
        if (!st->notified) stream_free(st, &last);
    } else {
        push = st_note(st);
    }
    pthread_mutex_unlock(&hc->mu);
    if (last) hc_free(hc);
    if (push) stream_push(st);
    atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
    return NULL;
}
