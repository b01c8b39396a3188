/*
 * kino_worker.c -- the worker side of the Kino engine: what a worker
 * thread calls on a request it took from the ready queue (kino_take, in
 * kino.c). kino.h gives the contract of each call. It reads top to bottom:
 *
 *    1. request body     reads, Expect: 100-continue, rate limits, skipping
 *    2. response writer  status, headers, framing, body, flush, hand-off,
 *                        the pipelining carry (doc/dispatch.md)
 *    3. hand-back        hijack, giving the connection back (kino_next)
 *
 * The I/O thread owns a connection whenever a worker does not; the
 * structures and the helpers both sides use are in kino_engine.h.
 */
#include "kino_engine.h"

/* ================================================================== */
/* 1. Request body                                                    */
/* ================================================================== */

int kino_conn_tls(kino_conn *c) { return c->st ? kino_stream_tls(c) : conn_tls(c); }
int kino_conn_http2(kino_conn *c) { return c->st != NULL; }

char *kino_conn_peer_cert(kino_conn *c, size_t *len) {
    if (c->st) return kino_stream_peer_cert(c, len);
#ifdef KINO_TLS
    if (c->tls) return kino_tls_peer_cert(c->tls, len);
#endif
    (void)c;
    *len = 0;
    return NULL;
}

const kino_head *kino_conn_head(kino_conn *c) { return &c->head; }
const char *kino_conn_peer(kino_conn *c) { return c->peer; }
int kino_conn_peer_port(kino_conn *c) { return c->peer_port; }
int kino_conn_local_port(kino_conn *c) { return c->ls->port; }
unsigned kino_conn_flags(kino_conn *c) { return c->ls->flags; }
int kino_conn_fd(kino_conn *c) { return c->fd; }
const char *kino_conn_error(kino_conn *c) { return c->error ? c->error : "no error"; }
int kino_conn_refused(kino_conn *c) { return c->refused; }
uint64_t kino_resp_sent(kino_conn *c) { return c->sent; }

static int conn_fail(kino_conn *c, const char *why) {
    c->error = why;
    c->broken = 1;
    return KINO_ERROR;
}

/* The request body is refused: the socket still works, but the response
 * must be `status`, and the connection closes after it. */
static int body_fail(kino_conn *c, int status, const char *why) {
    c->error = why;
    c->refused = status;
    return KINO_ERROR;
}

/* How much longer a worker may wait for body bytes. A body it streams
 * (one too large for the I/O thread to gather) must bring at least
 * KINO_BODY_RATE bytes/s in every window of KINO_BODY_WINDOW_MS spent
 * waiting for it -- time the app spends elsewhere does not count, and
 * bytes sent early buy no credit for a stall later -- so a client that
 * trickles a large body cannot hold a worker for long. */
static int64_t body_patience(kino_conn *c) {
    if (c->body_total - c->win_bytes >= (uint64_t)KINO_BODY_RATE * KINO_BODY_WINDOW_MS / 1000) {
        c->win_at = c->body_waited; /* this window did its share: a new one */
        c->win_bytes = c->body_total;
    }
    return c->win_at + KINO_BODY_WINDOW_MS - c->body_waited;
}

int kino_wait(kino_conn *c, kino_waiter *w, int events) {
    if (c->st) return kino_stream_wait(c, w, events);
    events = conn_wants(c, events);
    struct pollfd p[2] = {
        {.fd = c->fd, .events = (short)((events & KINO_WAIT_READ ? POLLIN : 0) |
                                        (events & KINO_WAIT_WRITE ? POLLOUT : 0))},
        {.fd = w->wake[0], .events = POLLIN},
    };
    int body = events == KINO_WAIT_READ;
    for (;;) {
        int64_t ms = c->io->s->body_ms, patience = body ? body_patience(c) : INT64_MAX;
        if (atomic_load(&w->interrupted)) {
            c->error = "interrupted";
            return KINO_ERROR;
        }
        if (patience <= 0) return body_fail(c, 408, "request body arriving too slowly");
        if (patience < ms || ms <= 0) ms = patience == INT64_MAX ? ms : patience;
        int64_t start = body ? mono_ms() : 0;
        int n = poll(p, 2, ms > 0 ? (int)(ms > INT_MAX ? INT_MAX : ms) : -1);
        if (body) c->body_waited += mono_ms() - start;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            if (body) return body_fail(c, 408, "request body timed out");
            return conn_fail(c, "timed out writing to the client");
        }
        if (n < 0) return conn_fail(c, strerror(errno));
        if (p[1].revents) {
            wakefd_drain(w->wake);
            continue;
        }
        return KINO_OK;
    }
}

/* Send `100 Continue` before the first body read, if the client asked. */
int kino_send_continue(kino_conn *c) {
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n = conn_send(c, msg, sizeof msg - 1);
    if (n == (ssize_t)sizeof msg - 1) {
        c->continue_sent = 1;
        return KINO_OK;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return KINO_AGAIN;
    return conn_fail(c, "client gone");
}

/* Receive more raw body bytes into the connection buffer (chunked). */
static long body_fill(kino_conn *c) {
    kino_buf *b = c->buf;
    if (c->bpos == c->len) c->bpos = c->len = c->off = 0; /* all consumed */
    if (c->len == b->cap) {
        memmove(b->data, b->data + c->bpos, c->len - c->bpos);
        c->len -= c->bpos;
        c->off = c->bpos = 0;
    }
    ssize_t n = conn_recv(c, b->data + c->len, b->cap - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        return n;
    }
    if (n == 0) return conn_fail(c, "client closed during the request body");
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return KINO_AGAIN;
    return conn_fail(c, strerror(errno));
}

long kino_body_read(kino_conn *c, kino_waiter *w, char *buf, size_t n) {
    if (c->st) return kino_stream_body_read(c, w, buf, n);
    (void)w;
    if (c->broken || c->refused) return KINO_ERROR;
    if (c->body == B_NONE || c->body == B_DONE || n == 0) return 0;
    if (c->head.expect_continue && !c->continue_sent) {
        int r = kino_send_continue(c);
        if (r != KINO_OK) return r;
    }
    c->head_len = 0; /* head spans are void from here on */
    if (c->body == B_LENGTH) {
        size_t want = n < c->body_left ? n : (size_t)c->body_left;
        size_t have = c->len - c->bpos;
        ssize_t got;
        if (have) {
            got = (ssize_t)(have < want ? have : want);
            memcpy(buf, c->buf->data + c->bpos, (size_t)got);
            c->bpos += (size_t)got;
        } else {
            got = conn_recv(c, buf, want);
            if (got == 0) return conn_fail(c, "client closed during the request body");
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return KINO_AGAIN;
                return conn_fail(c, strerror(errno));
            }
            if (conn_more(c, got, want)) c->maybe_more = 1;
        }
        c->body_left -= (uint64_t)got;
        c->body_total += (uint64_t)got;
        if (!c->body_left) c->body = B_DONE;
        return got;
    }
    for (;;) { /* chunked */
        size_t used = 0, out = 0;
        int r = KINO_CHUNK_MORE;
        if (c->bpos < c->len) {
            r = kino_chunked_step(&c->chunk, c->buf->data + c->bpos, c->len - c->bpos, &used, buf,
                                  n, &out);
            c->bpos += used;
        }
        if (r == KINO_ERROR) return body_fail(c, 400, "malformed chunked request body");
        c->body_total += out;
        /* a chunk announced in full counts too: no waiting for 64 MiB that
         * could never be accepted */
        uint64_t max = c->io->s->o.max_body_size;
        if (max && c->chunk.state == CH_DATA && c->body_total + c->chunk.left > max)
            return body_fail(c, 413, "request body larger than max_body_size");
        if (r == KINO_CHUNK_DONE) c->body = B_DONE;
        if (out || r == KINO_CHUNK_DONE) return (long)out;
        long f = body_fill(c);
        if (f < 0) return f;
        c->maybe_more = 1;
    }
}

/* Skip the unread rest of the request body without waiting, so the
 * connection can serve the next request. Returns 1 when nothing is left. */
static int body_skip(kino_conn *c, kino_waiter *w) {
    size_t skipped = 0;
    if (c->body == B_NONE || c->body == B_DONE) return 1;
    if (c->broken || c->refused || (c->head.expect_continue && !c->continue_sent)) return 0;
    if (c->body == B_LENGTH && c->len - c->bpos >= c->body_left) {
        c->bpos += (size_t)c->body_left;
        c->body_total += c->body_left;
        c->body_left = 0;
        c->body = B_DONE;
        return 1;
    }
    while (skipped <= KINO_DRAIN_MAX) {
        long n = kino_body_read(c, w, w->scratch, sizeof w->scratch);
        if (n == 0) return 1;
        if (n < 0) return 0;
        skipped += (size_t)n;
    }
    return 0;
}

/* Can what is left of the request body be skipped at the end of the
 * response without waiting? True when it is read, or (Content-Length)
 * already all in the buffer. Consumes nothing: a streaming body may
 * still read it. */
static int body_skippable(kino_conn *c, kino_waiter *w) {
    if (c->body == B_NONE || c->body == B_DONE) return 1;
    if (c->broken || c->refused || (c->head.expect_continue && !c->continue_sent)) return 0;
    if (c->body == B_LENGTH) /* gathered bodies are skipped in place, whatever their size */
        return c->len - c->bpos >= c->body_left;
    kino_chunked d = c->chunk; /* a copy: decode ahead without consuming */
    size_t pos = c->bpos, total = 0;
    while (pos < c->len && total <= KINO_DRAIN_MAX) {
        size_t used = 0, out = 0;
        int r = kino_chunked_step(&d, c->buf->data + pos, c->len - pos, &used, w->scratch,
                                  sizeof w->scratch, &out);
        pos += used;
        total += out;
        if (r == KINO_CHUNK_DONE) return total <= KINO_DRAIN_MAX;
        if (r == KINO_ERROR || r == KINO_CHUNK_MORE) return 0;
    }
    return 0;
}

/* ================================================================== */
/* 2. Response writer                                                 */
/* ================================================================== */

/* Decimal (base 10) or hex (base 16) digits of v into buf, which needs
 * 20 bytes; returns the count. The hot path's snprintf replacement. */
static size_t format_u64(char *buf, uint64_t v, unsigned base) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

/* Append bytes to the waiter's response buffer as a copied segment. */
static int out_put(kino_waiter *w, const char *p, size_t n) {
    if (w->out_len + n > w->out_cap) {
        size_t cap = w->out_cap ? w->out_cap : 4096;
        while (cap < w->out_len + n) cap *= 2;
        char *o = realloc(w->out, cap);
        if (!o) return KINO_ERROR;
        w->out = o;
        w->out_cap = cap;
    }
    memcpy(w->out + w->out_len, p, n);
    if (w->nseg > 0 && !w->segs[w->nseg - 1].ref &&
        w->segs[w->nseg - 1].off + w->segs[w->nseg - 1].len == w->out_len) {
        w->segs[w->nseg - 1].len += n; /* extend the last copied segment */
    } else {
        if (w->nseg == KINO_SEGS) return KINO_ERROR;
        w->segs[w->nseg++] = (seg){NULL, w->out_len, n};
    }
    w->out_len += n;
    w->unsent += n;
    return KINO_OK;
}

static int out_str(kino_waiter *w, const char *s) { return out_put(w, s, strlen(s)); }

/* The cached "Date: ...\r\n" line (kino.c section 2). */
static int out_date(kino_waiter *w) {
    char date[DATE_WORDS * 8];
    date_copy(date);
    return out_put(w, date, DATE_LINE_LEN);
}

/* "HTTP/1.1 <status> <reason>\r\n" */
static int out_status(kino_waiter *w, int status) {
    char line[64] = "HTTP/1.1 ";
    size_t n = 9 + format_u64(line + 9, (uint64_t)status, 10);
    const char *reason = kino_reason(status);
    size_t r = strlen(reason);
    line[n++] = ' ';
    if (r > sizeof line - n - 2) r = sizeof line - n - 2;
    memcpy(line + n, reason, r);
    n += r;
    line[n++] = '\r';
    line[n++] = '\n';
    return out_put(w, line, n);
}

/* Append caller memory by reference (copied when segments run out). */
static int out_ref(kino_waiter *w, const char *p, size_t n) {
    if (w->nseg >= KINO_SEGS - 2) return out_put(w, p, n);
    w->segs[w->nseg++] = (seg){p, 0, n};
    w->unsent += n;
    return KINO_OK;
}

/* Empty the response writer, but for the carry: held-back responses stay
 * first in line, as one copied segment at the start of w->out. */
static void out_reset(kino_waiter *w) {
    w->out_len = w->unsent = w->carry;
    w->nseg = w->carry ? 1 : 0;
    if (w->carry) w->segs[0] = (seg){NULL, 0, w->carry};
    w->seg_i = 0;
    w->seg_off = 0;
}

/* Pipelining: may the complete response in w stay unsent, to go out with
 * the next one in a single send? Only when the next request has (at
 * least begun to) arrive already, so the wait is this worker's own next
 * request; when the bytes are all copies (none refers to the app's
 * memory) and few; and when nobody else may answer on this connection
 * meanwhile (no request_timeout, no drain). kino_next sends what is held
 * once no complete request follows. */
static int out_carry(kino_conn *c, kino_waiter *w) {
    kino_server *s = c->io->s;
    if (c->r_close || c->len <= c->bpos || s->request_ms || atomic_load(&s->draining) ||
        w->nseg != 1 || w->segs[0].ref || w->seg_i || w->seg_off || w->unsent > KINO_CARRY_MAX ||
        (c->body != B_NONE && c->body != B_DONE))
        return 0;
    w->carry = w->unsent;
    return 1;
}

static const char *seg_ptr(kino_waiter *w, const seg *g) {
    return g->ref ? g->ref : w->out + g->off;
}

/* The waiter's gathering buffer for TLS writes, made on first use. */
static char *tls_gather(kino_conn *c, kino_waiter *w) {
    if (conn_tls(c) && !w->tls_buf) w->tls_buf = malloc(KINO_TLS_GATHER);
    return w->tls_buf;
}

int kino_resp_flush(kino_conn *c, kino_waiter *w) {
    if (c->st) return kino_stream_resp_flush(c, w);
    if (c->broken) return KINO_ERROR;
    char *gather = tls_gather(c, w);
    if (conn_tls(c) && !gather) return conn_fail(c, "out of memory");
    while (w->unsent) {
        struct iovec iov[KINO_SEGS];
        int n = 0;
        for (int i = w->seg_i; i < w->nseg; i++, n++) {
            size_t skip = i == w->seg_i ? w->seg_off : 0;
            iov[n].iov_base = (char *)seg_ptr(w, &w->segs[i]) + skip;
            iov[n].iov_len = w->segs[i].len - skip;
        }
        ssize_t sent = conn_sendv(c, iov, n, gather);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return KINO_AGAIN;
            return conn_fail(c, "client gone");
        }
        size_t held = (size_t)sent < w->carry ? (size_t)sent : w->carry;
        w->carry -= held; /* earlier responses go first */
        c->sent += (uint64_t)sent - held;
        w->unsent -= (size_t)sent;
        while (sent > 0) { /* advance over what went out */
            size_t left = w->segs[w->seg_i].len - w->seg_off;
            if ((size_t)sent >= left) {
                sent -= (ssize_t)left;
                w->seg_i++;
                w->seg_off = 0;
            } else {
                w->seg_off += (size_t)sent;
                sent = 0;
            }
        }
    }
    out_reset(w);
    return KINO_OK;
}

/* Move unsent segments into c->out for the I/O thread to finish. */
static int handoff(kino_conn *c, kino_waiter *w) {
    char *o = malloc(w->unsent);
    size_t at = 0;
    if (!o) return KINO_ERROR;
    for (int i = w->seg_i; i < w->nseg; i++) {
        size_t skip = i == w->seg_i ? w->seg_off : 0;
        memcpy(o + at, seg_ptr(w, &w->segs[i]) + skip, w->segs[i].len - skip);
        at += w->segs[i].len - skip;
    }
    c->out = o;
    c->out_len = at;
    c->out_off = 0;
    atomic_fetch_add_explicit(&c->io->s->handed, at, memory_order_relaxed);
    w->carry = 0;
    out_reset(w);
    return KINO_OK;
}

/* May the I/O thread take n more unsent bytes off a worker? Always up
 * to KINO_HANDOFF_MAX; more while all the bytes handed off stay within
 * KINO_HANDOFF_BUDGET (checked, then added: a few responses may pass it
 * at once). So a response whose bytes are all known -- an Array body --
 * never holds a worker for a client that reads slowly or not at all. */
static int handoff_fits(kino_server *s, size_t n) {
    return n <= KINO_HANDOFF_MAX ||
           atomic_load_explicit(&s->handed, memory_order_relaxed) + n <= KINO_HANDOFF_BUDGET;
}

int kino_resp_begin(kino_conn *c, kino_waiter *w, int status) {
    if (c->st) return kino_stream_resp_begin(c, w, status);
    int open = ANS_OPEN;
    if (c->refused) return KINO_ERROR; /* answer with kino_resp_error */
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && !(open == ANS_APP && c->hinted))
        return conn_fail(c, "request already answered (timeout or shutdown)");
    if (status < 100 || status > 999) status = 500;
    c->status = status;
    c->final = 1;
    c->sent = 0; /* counts the final response only, not early hints */
    c->seen_date = c->seen_server = c->seen_length = c->seen_te = 0;
    c->r_close = 0;
    c->r_length = 0;
    out_reset(w);
    return out_status(w, status);
}

/* Statuses whose responses never have content (RFC 9110 6.4.1). */
static int status_bodiless(int st) { return st < 200 || st == 204 || st == 304; }

int kino_resp_header(kino_conn *c, kino_waiter *w, const char *name, size_t nlen, const char *val,
                     size_t vlen) {
    if (c->st) return kino_stream_resp_header(c, w, name, nlen, val, vlen);
    kino_span n = {name, nlen};
    if (nlen == 0) return KINO_ERROR;
    for (size_t i = 0; i < nlen; i++)
        if (!IS_TCHAR(name[i])) return KINO_ERROR;
    for (size_t i = 0; i < vlen; i++)
        if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0') return KINO_ERROR;
    switch (nlen) {
    case 4:
        if (span_is(n, "date")) c->seen_date = 1;
        break;
    case 6:
        if (span_is(n, "server")) c->seen_server = 1;
        break;
    case 10:
        if (span_is(n, "connection") && c->status != 101) { /* Kino writes its own */
            if (has_token((kino_span){val, vlen}, "close")) c->r_close = 1;
            return KINO_OK;
        }
        break;
    case 14:
        if (span_is(n, "content-length")) {
            int64_t len = -1;
            /* never on 1xx/204/304 (RFC 9110 8.6): dropped */
            if (status_bodiless(c->status)) return KINO_OK;
            if (parse_length((kino_span){val, vlen}, &len) < 0) return KINO_ERROR;
            c->seen_length = 1;
            c->r_length = (uint64_t)len;
        }
        break;
    case 17:
        if (span_is(n, "transfer-encoding")) {
            /* never on 1xx/204/304 (RFC 9112 6.1): dropped */
            if (status_bodiless(c->status)) return KINO_OK;
            c->seen_te = span_is((kino_span){val, vlen}, "chunked") ? 1 : 2;
        }
        break;
    }
    if (out_put(w, name, nlen) || out_put(w, ": ", 2) || out_put(w, val, vlen) ||
        out_put(w, "\r\n", 2))
        return KINO_ERROR;
    return KINO_OK;
}

/* The framing rules the app cannot break (the server owns framing): a
 * final 1xx only as 101 on a hijacked HTTP/1.1 connection, no body
 * framing on a hijacked one, Transfer-Encoding only as a lone "chunked"
 * to an HTTP/1.1 client, never with Content-Length. NULL when the head
 * may go out, else why not. */
static const char *framing_error(kino_conn *c, int body) {
    int st = c->status;
    if (body == KINO_BODY_HIJACK) {
        if (conn_tls(c)) return "an HTTPS connection cannot be hijacked (its TLS session stays in Kino)";
        if (st < 200 && st != 101) return "a hijacked response cannot have a 1xx status other than 101";
        if (st == 101 && c->head.minor == 0) return "101 Switching Protocols answers an HTTP/1.0 request";
        if (c->seen_length || c->seen_te) return "a hijacked response cannot set content-length or transfer-encoding";
        return NULL;
    }
    if (st == 101) return "status 101 without a hijack or a callable body (nothing would speak the new protocol)";
    if (st < 200) return "a 1xx status is informational, not a final response (use rack.early_hints for 103)";
    if (c->seen_te == 2) return "transfer-encoding other than \"chunked\" (did you mean content-encoding?)";
    if (c->seen_te && c->seen_length) return "both content-length and transfer-encoding (RFC 9112 6.2)";
    if (c->seen_te && c->head.minor == 0) return "transfer-encoding in a response to an HTTP/1.0 request";
    return NULL;
}

int kino_resp_end_head(kino_conn *c, kino_waiter *w, int body, uint64_t length) {
    if (c->st) return kino_stream_resp_end_head(c, w, body, length);
    kino_server *s = c->io->s;
    int st = c->status;
    int bodiless = c->head.is_head || status_bodiless(st);
    char line[64];
    const char *why = framing_error(c, body);

    if (why) { /* nothing was sent: kino_resp_error can still answer */
        c->error = why;
        return KINO_ERROR;
    }
    if (body == KINO_BODY_HIJACK) {
        /* no framing: the bytes after the head belong to whoever takes
         * the socket, which is never reused for HTTP */
        c->framing = R_RAW;
        c->r_close = 1;
        if (!c->seen_date && out_date(w)) return KINO_ERROR;
        if (!c->seen_server && out_str(w, "Server: Kino\r\n")) return KINO_ERROR;
        /* 101 carries the app's own Connection: upgrade */
        if (st != 101 && out_str(w, "Connection: close\r\n")) return KINO_ERROR;
        return out_put(w, "\r\n", 2);
    }
    if (c->seen_length) {
        c->framing = R_LENGTH;
    } else if (c->seen_te) {
        c->framing = R_RAW; /* the app frames its own body */
        if (c->head.minor == 0) c->r_close = 1;
    } else if (body == KINO_BODY_STREAM && !bodiless) {
        c->framing = c->head.minor == 1 ? R_CHUNKED : R_RAW;
        if (c->head.minor == 0) c->r_close = 1;
    } else {
        c->framing = R_LENGTH;
        c->r_length = body == KINO_BODY_LENGTH ? length : 0;
        if (!status_bodiless(st) && (!c->head.is_head || c->r_length > 0)) {
            size_t n = 16 + format_u64(line + 16, c->r_length, 10);
            memcpy(line, "Content-Length: ", 16);
            line[n++] = '\r';
            line[n++] = '\n';
            if (out_put(w, line, n)) return KINO_ERROR;
        }
    }
    c->r_left = c->r_length;
    if (bodiless) c->framing = R_NOBODY;
    if (c->framing == R_CHUNKED && out_str(w, "Transfer-Encoding: chunked\r\n")) return KINO_ERROR;
    /* an unread request body is skipped at the end of the response, not
     * here (a streaming body may still read it); if it may not all be
     * here by then, the connection closes after this response */
    if (!c->head.keep_alive || atomic_load(&s->draining) || !body_skippable(c, w)) c->r_close = 1;
    if (!c->seen_date && out_date(w)) return KINO_ERROR;
    if (!c->seen_server && out_str(w, "Server: Kino\r\n")) return KINO_ERROR;
    if (c->r_close) {
        if (out_str(w, "Connection: close\r\n")) return KINO_ERROR;
    } else if (c->head.minor == 0 && out_str(w, "Connection: keep-alive\r\n")) {
        return KINO_ERROR;
    }
    return out_put(w, "\r\n", 2);
}

/* Account body bytes against the framing; returns 0 to send them, 1 to
 * drop them silently (no body allowed), or KINO_ERROR. */
static int body_bytes(kino_conn *c, size_t n) {
    if (c->broken) return KINO_ERROR;
    if (c->framing == R_NOBODY) return 1;
    if (c->framing == R_LENGTH) {
        if (n > c->r_left) {
            c->r_close = 1;
            return conn_fail(c, "response body longer than its Content-Length");
        }
        c->r_left -= n;
    }
    return 0;
}

static int chunk_head(kino_waiter *w, size_t n) {
    char line[24];
    size_t k = format_u64(line, n, 16);
    line[k++] = '\r';
    line[k++] = '\n';
    return out_put(w, line, k);
}

/* Flush when a lot is buffered, without waiting. */
static int maybe_flush(kino_conn *c, kino_waiter *w) {
    if (w->unsent < 65536 && w->nseg < KINO_SEGS - 4) return KINO_OK;
    int r = kino_resp_flush(c, w);
    return r == KINO_AGAIN ? KINO_OK : r;
}

/* Body bytes p[0..n), in a chunk when the response is chunked: copied
 * into the output (ref == 0), or referenced where they are until the
 * next flush (ref == 1, for large bodies the caller keeps alive). */
static int resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n, int ref) {
    if (c->trailing) return KINO_ERROR; /* no body after the trailers */
    int r = body_bytes(c, n);
    if (r) return r < 0 ? r : KINO_OK;
    if (n == 0) return KINO_OK;
    int chunked = c->framing == R_CHUNKED;
    if (chunked && chunk_head(w, n)) return KINO_ERROR;
    if (ref ? out_ref(w, p, n) : out_put(w, p, n)) return KINO_ERROR;
    if (chunked && out_put(w, "\r\n", 2)) return KINO_ERROR;
    return maybe_flush(c, w);
}

int kino_resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n) {
    if (c->st) return kino_stream_resp_write(c, w, p, n);
    return resp_write(c, w, p, n, 0);
}

int kino_resp_write_ref(kino_conn *c, kino_waiter *w, const char *p, size_t n) {
    if (c->st) return kino_stream_resp_write(c, w, p, n);
    return resp_write(c, w, p, n, 1);
}

int kino_resp_end(kino_conn *c, kino_waiter *w) {
    if (c->st) return kino_stream_resp_end(c, w);
    if (c->broken) return KINO_ERROR;
    if (!c->r_done) {
        if (c->framing == R_CHUNKED && out_str(w, c->trailing ? "\r\n" : "0\r\n\r\n")) return KINO_ERROR;
        if (c->framing == R_LENGTH && c->r_left > 0) {
            c->r_close = 1; /* the client will see a short body and a close */
            c->error = "response body shorter than its Content-Length";
        }
        if (c->framing == R_RAW) c->r_close |= c->head.minor == 0 || !c->seen_te;
        /* skip what the app left of the request body; end_head promised
         * keep-alive only when that was possible (else close after it) */
        if (!c->r_close && !body_skip(c, w)) c->r_close = 1;
        c->r_done = 1;
        if (out_carry(c, w)) return KINO_OK;
    }
    int r = kino_resp_flush(c, w);
    if (r == KINO_AGAIN && handoff_fits(c->io->s, w->unsent)) return handoff(c, w);
    return r;
}

int kino_resp_trailer(kino_conn *c, kino_waiter *w, const char *name, size_t nlen, const char *val,
                      size_t vlen) {
    if (c->st) return kino_stream_resp_trailer(c, w, name, nlen, val, vlen);
    if (!c->final || c->r_done || c->broken || nlen == 0) return KINO_ERROR;
    for (size_t i = 0; i < nlen; i++)
        if (!IS_TCHAR(name[i])) return KINO_ERROR;
    for (size_t i = 0; i < vlen; i++)
        if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0') return KINO_ERROR;
    if (c->framing != R_CHUNKED) return KINO_OK; /* no place for it: dropped */
    /* the last chunk, then the fields (RFC 9112 7.1.2); kino_resp_end
     * ends the section */
    if (!c->trailing && out_str(w, "0\r\n")) return KINO_ERROR;
    c->trailing = 1;
    if (out_put(w, name, nlen) || out_put(w, ": ", 2) || out_put(w, val, vlen) || out_put(w, "\r\n", 2))
        return KINO_ERROR;
    return KINO_OK;
}

int kino_resp_info_begin(kino_conn *c, kino_waiter *w, int status) {
    if (c->st) return kino_stream_info_begin(c, w, status);
    int open = ANS_OPEN;
    if (c->head.minor == 0 || c->final || c->broken || c->refused || status < 100 || status > 199)
        return KINO_ERROR;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && !(open == ANS_APP && c->hinted))
        return KINO_ERROR; /* a timeout answered, or the final response began */
    c->hinted = 1;
    c->status = status; /* for kino_resp_header's rules */
    out_reset(w);
    return out_status(w, status);
}

int kino_resp_info_end(kino_conn *c, kino_waiter *w) {
    if (c->st) return kino_stream_info_end(c, w);
    if (out_put(w, "\r\n", 2)) return KINO_ERROR;
    return kino_resp_flush(c, w);
}

int kino_resp_sendfile(kino_conn *c, kino_waiter *w, int fd, uint64_t *offset, uint64_t *left) {
    if (c->st) return kino_stream_resp_sendfile(c, w, fd, offset, left);
    int r = kino_resp_flush(c, w); /* the head first */
    if (r != KINO_OK) return r;
    if (c->framing == R_NOBODY) {
        *left = 0;
        return KINO_OK;
    }
    if (c->framing == R_CHUNKED) return conn_fail(c, "sendfile needs a Content-Length response");
    char *buf = tls_gather(c, w); /* TLS without kTLS: read + write */
    if (conn_tls(c) && !buf) return conn_fail(c, "out of memory");
    if (c->framing == R_LENGTH) {
        if (*left > c->r_left) return conn_fail(c, "response body longer than its Content-Length");
    }
    while (*left > 0) {
        size_t n = *left > (1u << 30) ? (1u << 30) : (size_t)*left;
        uint64_t before = *offset;
        ssize_t sent = conn_sendfile(c, fd, offset, n, buf);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return KINO_AGAIN;
            return conn_fail(c, "client gone");
        }
        if (sent == 0) return conn_fail(c, "file shorter than expected");
        *left -= *offset - before;
        c->sent += *offset - before;
        if (c->framing == R_LENGTH) c->r_left -= *offset - before;
    }
    return KINO_OK;
}

int kino_resp_error(kino_conn *c, kino_waiter *w, int status) {
    if (c->st) return kino_stream_resp_error(c, w, status);
    char msg[512];
    int open = ANS_OPEN;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && open != ANS_APP)
        return KINO_ERROR; /* answered by a timeout or shutdown, or hijacked */
    if (c->r_done) { /* complete, maybe handed off in c->out: it stands */
        c->r_close = 1;
        c->error = "response already complete";
        return KINO_ERROR;
    }
    if ((c->final && c->sent > 0) || c->broken) return conn_fail(c, "response already started");
    if (c->refused) status = c->refused;
    out_reset(w);
    c->framing = R_RAW;
    c->r_close = 1;
    c->r_done = 1;
    c->final = 1;
    c->sent = 0;
    c->status = status;
    if (out_put(w, msg, kino_canned(msg, sizeof msg, status))) return KINO_ERROR;
    atomic_fetch_add_explicit(&c->io->s->errors, 1, memory_order_relaxed);
    int r = kino_resp_flush(c, w);
    return r == KINO_AGAIN ? handoff(c, w) : r;
}

/* ================================================================== */
/* 3. Hand-back                                                       */
/* ================================================================== */

int kino_hijack(kino_conn *c, kino_waiter *w, const char **rest, size_t *rest_len) {
    if (c->st) {
        c->error = "cannot hijack: an HTTP/2 stream shares its connection with other streams";
        return KINO_ERROR;
    }
    int cur = atomic_load(&c->answer);
    if (conn_tls(c)) {
        c->error = "cannot hijack: an HTTPS connection's TLS session stays in Kino";
        return KINO_ERROR;
    }
    if (w->carry && w->unsent == w->carry && kino_resp_flush(c, w) == KINO_OK) w->carry = 0;
    if (c->broken || w->unsent || c->out) {
        c->error = "cannot hijack: the client is gone or response bytes are unsent";
        return KINO_ERROR;
    }
    /* from ANS_OPEN, or ANS_APP after hints or a head written for a
     * partial hijack; a timeout or shutdown that answered first wins */
    if ((cur != ANS_OPEN && cur != ANS_APP) ||
        !atomic_compare_exchange_strong(&c->answer, &cur, ANS_HIJACK)) {
        c->error = "cannot hijack: the request was already answered (timeout or shutdown)";
        return KINO_ERROR;
    }
    /* the I/O thread must see no more readiness for this fd once the app
     * has it (the fd number may be reused after the app closes it); an
     * event it already took finds the connection away (C_AWAY) and only
     * notes it. The struct is freed when kino_next hands it back. */
    poller_unwatch(&c->io->p, c->fd);
    atomic_fetch_add_explicit(&c->io->s->hijacked, 1, memory_order_relaxed);
    c->broken = 1; /* every later engine read or write on it fails */
    c->error = "connection hijacked";
    *rest = c->buf && c->len > c->bpos ? c->buf->data + c->bpos : NULL;
    *rest_len = *rest ? c->len - c->bpos : 0;
    return KINO_OK;
}

/* Give the connection back to its I/O thread. The I/O thread is woken
 * only when the connection needs it now: output to finish, a close,
 * bytes already buffered or waiting in the socket, a shutdown. An idle
 * keep-alive connection is picked up at the thread's next wake-up
 * (new data anywhere, or the Date tick within a second): no syscall per
 * request. If data for it arrived while the worker held it, the I/O
 * thread counted that in io->missed_away before its next pass over the
 * hand-back stack; the push and the load of that count are sequentially
 * consistent, so either that pass sees the connection or this load sees
 * the count and wakes the thread. */
void kino_release(kino_conn *c, int next) {
    kino_io *io = c->io;
    kino_server *s = io->s;
    /* over TLS, OpenSSL may hold bytes that no readiness event announces */
    int urgent = next != NEXT_KEEP || c->out || c->len > c->off || c->maybe_more ||
                 (conn_tls(c) && conn_more(c, 0, 1));
    c->next = (unsigned char)next;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    if (atomic_load(&s->io_gone)) { /* nobody to hand it to: close it here */
        pthread_mutex_lock(&s->gone_mu);
        kino_conn_destroy(s, NULL, c);
        pthread_mutex_unlock(&s->gone_mu);
        return;
    }
    kino_conn *top = atomic_load(&io->returns);
    do c->rnext = top;
    while (!atomic_compare_exchange_weak(&io->returns, &top, c));
    /* c may be gone from here on: only io and s are read */
    if (urgent || atomic_load(&io->missed_away) || atomic_load(&s->draining)) wake_io(io);
}

/* Send the responses out_carry held back, before c goes back to its I/O
 * thread: now, or by that thread when the socket is full (handoff). */
static void carry_send(kino_conn *c, kino_waiter *w) {
    if (!w->carry) return;
    if (kino_resp_flush(c, w) == KINO_AGAIN && handoff(c, w) != KINO_OK) conn_fail(c, "out of memory");
    w->carry = 0;
    out_reset(w);
}

/* Give c back to its I/O thread, held-back responses sent first. */
static kino_conn *next_release(kino_conn *c, kino_waiter *w, int next) {
    carry_send(c, w);
    if (next == NEXT_KEEP && c->broken) next = NEXT_CLOSE;
    kino_release(c, next);
    atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
    return NULL;
}

kino_conn *kino_next(kino_conn *c, kino_waiter *w) {
    if (c->st) return kino_stream_next(c, w);
    kino_server *s = c->io->s;
    int served = c->r_done && !c->broken;
    if (s->o.log_sink) kino_access_taken(c, w); /* every request a worker took, hijacked ones too */
    if (atomic_load_explicit(&c->answer, memory_order_relaxed) == ANS_HIJACK) {
        out_reset(w);
        waiter_end(w, 0);
        kino_release(c, NEXT_HIJACKED);
        atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
        return NULL;
    }
    out_reset(w); /* but for the carry */
    waiter_end(w, served);
    if (served) atomic_fetch_add_explicit(&s->served, 1, memory_order_relaxed);
    if (!c->r_done && !c->broken) /* nobody answered: 500, then close */
        return next_release(c, w, NEXT_ABORT);
    if (c->broken || c->r_close || (c->body != B_DONE && c->body != B_NONE))
        return next_release(c, w, NEXT_CLOSE);
    /* the current request is consumed: the next one starts at bpos */
    c->off = c->bpos;
    c->scanned = 0;
    c->head_len = 0;
    if (!c->out && !s->request_ms && c->len > c->off && !atomic_load(&s->draining) &&
        kino_conn_prepare(s, c) == 1 &&
        (c->body == B_NONE || (c->body == B_LENGTH && c->len - c->bpos >= c->body_left))) {
        if (s->o.log_sink) kino_access_capture(w, c);
        return c; /* pipelined, body and all: serve it now, in order */
    }
    return next_release(c, w, NEXT_KEEP);
}

int kino_respond_simple(kino_conn *c, kino_waiter *w, int status, const char *content_type,
                        const char *body, size_t len) {
    int r = kino_resp_begin(c, w, status);
    if (r == KINO_OK && content_type)
        r = kino_resp_header(c, w, "Content-Type", 12, content_type, strlen(content_type));
    if (r == KINO_OK) r = kino_resp_end_head(c, w, KINO_BODY_LENGTH, len);
    if (r == KINO_OK) r = kino_resp_write(c, w, body, len);
    if (r == KINO_OK) r = kino_resp_end(c, w);
    while (r == KINO_AGAIN) {
        if (kino_wait(c, w, KINO_WAIT_WRITE) != KINO_OK) return KINO_ERROR;
        r = kino_resp_flush(c, w);
    }
    return r;
}

const char *kino_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}
