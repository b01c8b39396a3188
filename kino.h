/*
 * kino.h -- the Kino engine: a small HTTP/1.1 server core in portable C.
 *
 * The engine owns sockets, parses request heads, queues complete requests
 * and writes responses. It knows nothing about Ruby: the Ruby binding
 * (kino_ruby.c) and plain C programs drive it through this API alone.
 * It is kino.c (I/O threads, server), kino_http.c (the parser),
 * kino_worker.c (the worker side), kino_log.c, kino_control.c and the
 * optional kino_tls.c; they share the private header kino_engine.h,
 * which is never installed nor needed to use this API.
 *
 * Threads. kino_server_start() starts `io_threads` I/O threads that accept
 * connections, read and parse request heads, and hold idle keep-alive
 * connections. A complete request is pushed onto a bounded ready queue.
 * Worker threads (yours) call kino_take() to get one; from then on the
 * worker owns that connection: it reads the request body, writes the
 * response, and hands the connection back with kino_next(). A connection
 * has exactly one owner at a time, so nothing about it is locked.
 *
 * Blocking. Every worker call that may wait comes in two halves: a
 * non-blocking attempt that returns KINO_AGAIN, and kino_wait(), which
 * blocks until the attempt can make progress. kino_waiter_interrupt()
 * wakes a blocked kino_wait() or kino_take() of that waiter from any
 * thread. Bindings that hold a global lock (Ruby's GVL) make the attempt
 * with the lock held and call only kino_wait()/kino_take() without it.
 *
 * Minimal worker:
 *
 *   kino_waiter *w = kino_waiter_new(server, 0);
 *   kino_conn *c;
 *   while ((c = kino_take(server, w, 1)) != NULL) {
 *       do {
 *           const kino_head *h = kino_conn_head(c);
 *           kino_respond_simple(c, w, 200, "text/plain", "hi\n", 3);
 *       } while ((c = kino_next(c, w)) != NULL);
 *   }
 *   kino_waiter_free(w);
 */
#ifndef KINO_H
#define KINO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KINO_VERSION "0.1.0"

/* Limits. Each can be overridden at build time with -DKINO_MAX_...=N. */
#ifndef KINO_MAX_REQUEST_LINE
#define KINO_MAX_REQUEST_LINE 8192   /* longer request line: 414 */
#endif
#ifndef KINO_MAX_HEAD
#define KINO_MAX_HEAD 65536          /* longer request head: 431 */
#endif
#ifndef KINO_MAX_HEADERS
#define KINO_MAX_HEADERS 128         /* more header fields: 431 */
#endif
#ifndef KINO_MAX_CHUNK_EXT
#define KINO_MAX_CHUNK_EXT 4096      /* chunk extensions per chunk line: 400 */
#endif
#ifndef KINO_MAX_TRAILER
#define KINO_MAX_TRAILER 16384       /* chunked trailer section: 400 */
#endif

/* Return codes shared by the parser and the worker calls. */
#define KINO_OK 0
#define KINO_ERROR (-1)      /* failed; see the status or kino_conn_error() */
#define KINO_INCOMPLETE (-2) /* parser: more bytes needed */
#define KINO_AGAIN (-3)      /* worker call: would block, call kino_wait() */

/* ------------------------------------------------------------------ */
/* Request-head parser (usable on its own)                            */
/* ------------------------------------------------------------------ */

/* A span of bytes inside the caller's buffer; never NUL-terminated. */
typedef struct kino_span {
    const char *p;
    size_t n;
} kino_span;

typedef struct kino_header {
    kino_span name;   /* as sent (a token) */
    kino_span value;  /* leading and trailing blanks removed */
} kino_header;

/* Everything the parser learns from one request head. */
typedef struct kino_head {
    kino_span method;
    kino_span target;          /* request-target as sent */
    kino_span path;            /* origin-form path, or "*" (OPTIONS *) */
    kino_span query;           /* after '?', without it; n == 0 when none */
    kino_span host;            /* Host value, or the absolute-form authority */
    int minor;                 /* HTTP/1.<minor>: 0 or 1 */
    size_t nheaders;
    kino_header *headers;      /* caller-supplied array */
    int64_t content_length;    /* -1 when the request has none */
    unsigned chunked : 1;      /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1;   /* connection may be reused after this one */
    unsigned expect_continue : 1;
    unsigned is_head : 1;      /* method is HEAD */
    int status;                /* on KINO_ERROR: status to answer with */
} kino_head;

/*
 * Find the end of a request head in buf[0..len), scanning only bytes not
 * seen before: *scanned carries the position between calls (start at 0).
 * Returns the head length (through the blank line) when complete, 0 when
 * more bytes are needed, KINO_ERROR with *status set (400 for a bare CR
 * or LF, 414 for an overlong request line, 431 for an overlong head).
 */
long kino_head_end(const char *buf, size_t len, size_t *scanned, int *status);

/*
 * Parse a complete head buf[0..len) (as measured by kino_head_end) into
 * *h, storing up to max header spans in hdrs. Validates the grammar and
 * the framing rules of RFC 9112 (Host, Content-Length, Transfer-Encoding,
 * Connection, Expect). Returns KINO_OK, or KINO_ERROR with h->status set.
 * Allocates nothing; spans point into buf.
 */
int kino_parse_head(const char *buf, size_t len, kino_head *h,
                    kino_header *hdrs, size_t max);

/*
 * picohttpparser-style convenience: returns the number of bytes the head
 * used, KINO_INCOMPLETE, or KINO_ERROR (h->status set).
 */
long kino_parse_request(const char *buf, size_t len, kino_head *h,
                        kino_header *hdrs, size_t max);

/* Streaming decoder for chunked request bodies. Zero it to start. */
typedef struct kino_chunked {
    int state;
    uint64_t left;       /* bytes left in the current chunk */
    size_t line;         /* bytes of the current size line or trailer */
    size_t trailer;      /* bytes of trailer section so far */
} kino_chunked;

#define KINO_CHUNK_MORE 1   /* consumed all input, body not finished */
#define KINO_CHUNK_FULL 2   /* output buffer full, body not finished */
#define KINO_CHUNK_DONE 3   /* body complete (trailers discarded) */

/*
 * Decode raw bytes src[0..srclen) into dst[0..dstcap). Sets *used to the
 * raw bytes consumed and *out to the body bytes produced; with dst NULL
 * the body bytes are only counted (to look ahead without copying). A
 * chunk size of 2^63 or more is bad framing. Returns one of
 * KINO_CHUNK_MORE, KINO_CHUNK_FULL, KINO_CHUNK_DONE (*used stops right
 * after the body, so what follows is the next request), or KINO_ERROR
 * for bad framing (size syntax, overflow, terminators, overlong lines).
 */
int kino_chunked_step(kino_chunked *d, const char *src, size_t srclen,
                      size_t *used, char *dst, size_t dstcap, size_t *out);

/* PROXY protocol header (haproxy's proxy-protocol.txt, v1 and v2). */
typedef struct kino_proxy {
    int local;                 /* keep the socket's own addresses: v1
                                  UNKNOWN, v2 LOCAL, v2 UNSPEC or unix */
    char addr[48];             /* source address, text (when !local) */
    int port;                  /* source port (when !local) */
} kino_proxy;

#define KINO_PROXY_MAX 4096    /* longest v2 header taken (with TLVs) */

/*
 * Parse a PROXY protocol header at the start of buf[0..len). Returns its
 * length (> 0) with *out filled, 0 when more bytes are needed (every byte
 * so far fits a header), or KINO_ERROR when it is not a valid header: a
 * v1 line that breaks the grammar or runs past 107 bytes, a v2 header
 * with a bad version, command, family or length, or a v2 header longer
 * than KINO_PROXY_MAX. TLVs are skipped. Allocates nothing.
 */
long kino_proxy_parse(const char *buf, size_t len, kino_proxy *out);

/* ------------------------------------------------------------------ */
/* Server                                                             */
/* ------------------------------------------------------------------ */

typedef struct kino_server kino_server;
typedef struct kino_conn kino_conn;
typedef struct kino_waiter kino_waiter;

/*
 * Listeners. A server accepts on one or more listening sockets: TCP (a
 * host and port), unix (a path; "@name" is a Linux abstract socket), or
 * one already listening that the process inherited (fd >= 0: systemd
 * socket activation, a hot restart). Every I/O thread watches every
 * listener. A unix socket file the server creates is removed when the
 * server is freed, unless kino_server_keep_listeners() was called; a
 * stale file (no process accepts on it) is replaced, a live one refused.
 */
#define KINO_LISTEN_TLS 1     /* connections speak TLS (the TLS layer) */
#define KINO_LISTEN_PROXY 2   /* connections start with a PROXY protocol
                                 header (v1 or v2), required */

#define KINO_TCP 1
#define KINO_UNIX 2

typedef struct kino_listen {
    const char *host;         /* TCP: IPv4/IPv6 literal or host name */
    const char *path;         /* unix: socket path; NULL for TCP. With fd:
                                 the socket's file, which the server then
                                 removes at the end (NULL: not its to) */
    int port;                 /* TCP: 0 = ephemeral */
    int fd;                   /* >= 0: adopt this listening socket instead
                                 of binding (the server then owns it) */
    unsigned flags;           /* KINO_LISTEN_* */
} kino_listen;

/* TLS settings of a listener (kino_tls.c; doc/tls.md). Strings are file
 * paths or PEM text, read once by kino_server_new. */
#define KINO_TLS_VERIFY_NONE 0
#define KINO_TLS_VERIFY_PEER 1   /* require a client certificate signed by ca */

typedef struct kino_tls_options {
    const char *cert;          /* certificate, then its chain (leaf first) */
    const char *key;           /* the certificate's private key */
    const char *ca;            /* CAs of client certificates, or NULL */
    int verify;                /* KINO_TLS_VERIFY_* */
    int min_version;           /* 12 (TLS 1.2; also when 0) or 13 */
    const char *ciphers;       /* OpenSSL cipher list for TLS 1.2, or NULL */
} kino_tls_options;

/* The TLS library this engine runs with ("OpenSSL 3.0.19 ..."), or NULL
 * when it was built without TLS (make TLS=0, or no OpenSSL headers). */
const char *kino_tls_library(void);

typedef struct kino_options {
    const kino_listen *listen; /* nlisten listeners; when nlisten is 0 the
                                  server listens on bind:port (TCP) */
    int nlisten;
    const char *bind;          /* IPv4/IPv6 literal or host name */
    int port;                  /* 0 = ephemeral */
    int io_threads;            /* >= 1 */
    int queue_depth;           /* ready requests waiting for a worker */
    int backlog;               /* listen(2) backlog */
    int max_connections;       /* 0 = 80% of the open-file limit */
    double queue_timeout;      /* s to wait for queue space before 503 */
    double request_timeout;    /* s before the client gets 504; 0 = off */
    double header_timeout;     /* s for a whole request head (408) */
    double keepalive_timeout;  /* s an idle connection is kept */
    double body_timeout;       /* s of no progress while reading a body or
                                  writing a response */
    uint64_t max_body_size;    /* bytes; 0 = unlimited (413 beyond) */
    const kino_tls_options *tls; /* the listener speaks HTTPS; NULL: HTTP.
                                  kino_server_new fails when the build has
                                  no TLS or the settings are wrong */
    int shared_listener;       /* nonzero: other processes accept on the same
                                  listeners (forked after kino_server_new, as
                                  Kino's :cluster workers are): every process
                                  is woken for a connection and takes only
                                  what its idle workers can serve */
    int log_sink;              /* access log: a kino_log.h sink, or 0 (off) */
    int log_format;            /* KINO_LOG_TEXT, _TEXT_COLOR or _JSON */
    uint64_t body_buffer;      /* request-body bytes gathered before a worker
                                  sees the request; 0 = stream every body */
    int lanes;                 /* nonzero: each waiter gets a lane, a short
                                  queue of its own (KINO_LANE_DEPTH) that
                                  the I/O threads fill while it keeps taking
                                  requests; idle waiters steal from others */
    int batch;                 /* requests a waiter takes per visit to the
                                  queue (1 to KINO_BATCH_MAX) */
    int http2;                 /* HTTP/2: ALPN h2 over TLS, the client
                                  preface on cleartext (kino_stream.c) */
} kino_options;

#define KINO_LANE_DEPTH 4      /* requests one lane holds */
#define KINO_BATCH_MAX 64      /* the largest batch */

/* Fill *o with the engine's defaults: the values Kino::Options::DEFAULTS
 * (lib/kino/options.rb) gives the same options; test/options_test.rb
 * holds the two together. */
void kino_options_init(kino_options *o);

/*
 * Create a server, bind and listen (so the port is known), start nothing.
 * On failure returns NULL and writes a message into err.
 */
kino_server *kino_server_new(const kino_options *o, char *err, size_t errlen);

/* Start the I/O threads. Returns KINO_OK or KINO_ERROR (message in err). */
int kino_server_start(kino_server *s, char *err, size_t errlen);

/* The port of the first TCP listener (0 when there is none). */
int kino_server_port(const kino_server *s);

/* What a listener is, as bound: for i from 0 to the count minus one. */
typedef struct kino_listener_info {
    int fd;                    /* the listening socket (-1 once closed) */
    int kind;                  /* KINO_TCP or KINO_UNIX */
    int port;                  /* TCP: the bound port; 0 for unix */
    unsigned flags;            /* KINO_LISTEN_* */
} kino_listener_info;

int kino_server_listener_count(const kino_server *s);
int kino_server_listener(const kino_server *s, int i, kino_listener_info *out);

/*
 * Hand the listening sockets on (hot restart): from now on draining,
 * stopping and freeing the server stop watching the listeners but leave
 * them open, and unix socket files in place, so that a process started
 * with them (see kino_listener_info.fd) accepts what waits in their
 * backlog. The caller clears close-on-exec on the fds it passes.
 */
void kino_server_keep_listeners(kino_server *s);

/* Nonzero once kino_server_stop() has begun: kino_take() returns NULL. */
int kino_server_stopped(kino_server *s);

/*
 * Graceful shutdown, in three calls. kino_server_drain() stops accepting
 * (the listener is closed when it returns; it waits for the I/O threads,
 * at most 2 s), closes idle connections and
 * makes every later response carry "Connection: close". Poll
 * kino_server_outstanding() until it is 0 or your deadline passes; then
 * kino_server_abort() answers what is left (500, or a close when the
 * response had begun). kino_server_stop() ends the I/O threads and makes
 * kino_take() return NULL; it is idempotent. kino_server_free() releases
 * the server once every worker has stopped calling into it.
 */
void kino_server_drain(kino_server *s);
long kino_server_outstanding(kino_server *s);
#define kino_server_pending kino_server_outstanding /* its old name, kept working */
void kino_server_abort(kino_server *s);
void kino_server_stop(kino_server *s);
void kino_server_free(kino_server *s);

#define KINO_WAIT_BUCKETS 12   /* queue-wait histogram: see kino_wait_bucket_ms */

/* What the host's pool of workers says of itself (doc/pool.md): the
 * engine only keeps the last numbers given (kino_server_set_pool), so the
 * control plane can show them without asking the host. */
typedef struct kino_pool_stats {
    uint64_t active_workers; /* workers serving (not in quarantine) */
    uint64_t max_workers;    /* the most the pool may grow to */
    uint64_t quarantined;    /* workers in quarantine now */
    uint64_t quarantines;    /* workers quarantined since the start */
    uint64_t scale_ups;      /* elastic pool: workers added */
    uint64_t scale_downs;    /* ... and taken away */
} kino_pool_stats;

typedef struct kino_stats {
    uint64_t accepted;     /* connections accepted */
    uint64_t connections;  /* connections open now */
    uint64_t served;       /* responses completed by workers */
    uint64_t queued;       /* requests waiting for a worker */
    uint64_t in_flight;    /* requests owned by workers */
    uint64_t rejected;     /* 503 after queue_timeout */
    uint64_t timeouts;     /* 504 after request_timeout */
    uint64_t errors;       /* canned 4xx/5xx answers from the engine */
    uint64_t hijacked;     /* connections taken over with kino_hijack */
    uint64_t queue_wait[KINO_WAIT_BUCKETS]; /* requests by time spent queued */
    uint64_t queue_wait_sum_ms; /* time all of them spent queued */
    uint64_t respawns;     /* workers started again (kino_server_note_respawn) */
    kino_pool_stats pool;  /* the host's (kino_server_set_pool); 0s until set */
} kino_stats;

void kino_server_stats(kino_server *s, kino_stats *out);

/* The host's pool numbers, for kino_server_stats (copied; any thread). */
void kino_server_set_pool(kino_server *s, const kino_pool_stats *p);

/* Count a worker the host started again after it died (for the stats). */
void kino_server_note_respawn(kino_server *s);

/* Upper bound in ms of queue-wait bucket i (1, 2, 5, 10, 25, 50, 100,
 * 250, 500, 1000, 2500), or -1 for the last, unbounded one. */
int64_t kino_wait_bucket_ms(int i);

typedef struct kino_worker_stats {
    int worker;            /* the number given to kino_waiter_new */
    int in_flight;         /* 1 while serving a request */
    uint64_t served;       /* responses completed */
    uint64_t busy_ms;      /* time spent serving */
    int lane;              /* requests waiting in its lane (lanes) */
    uint64_t request_ms;   /* how long the current request has held it
                              (0 when idle): what quarantine looks at */
    int retiring;          /* kino_server_retire named it */
    int quarantined;       /* ... with quarantine set */
} kino_worker_stats;

/* One row per live waiter, at most max of them into out; returns the
 * number of live waiters, which may be more than max (call again with
 * room for that many, as with snprintf). */
int kino_server_workers(kino_server *s, kino_worker_stats *out, int max);

/* The number of live waiters (worker threads past their boot), read
 * without a lock: what /ready asks on every probe. */
int kino_server_waiters(kino_server *s);

/*
 * Retire worker number `worker`: each of its waiters takes no request
 * from now on -- kino_take returns NULL, kino_wait_ready 0, and
 * kino_waiter_retiring is nonzero, at once for an idle one, after its
 * current request for a busy one -- so its thread can leave its loop.
 * Nothing is interrupted or killed. Waiters made later with the same
 * number are not affected. quarantine (nonzero: it was stuck) only marks
 * the rows of kino_server_workers. Returns how many waiters were marked.
 * Any thread. This is how a host quarantines a stuck worker or shrinks
 * its pool (doc/pool.md).
 */
int kino_server_retire(kino_server *s, int worker, int quarantine);

/* ------------------------------------------------------------------ */
/* Workers                                                            */
/* ------------------------------------------------------------------ */

/* One waiter per worker thread; it is how that thread is woken and where
 * its statistics live. worker numbers it in kino_server_workers (several
 * threads of one worker may share a number). */
kino_waiter *kino_waiter_new(kino_server *s, int worker);
void kino_waiter_free(kino_waiter *w); /* before the server is freed */

/*
 * Wake w from kino_take() or kino_wait(), now or at its next wait, which
 * then returns NULL / KINO_ERROR. Safe from any thread. Clear the request
 * with kino_waiter_reset() before the next wait.
 */
void kino_waiter_interrupt(kino_waiter *w);
void kino_waiter_reset(kino_waiter *w);
int kino_waiter_interrupted(kino_waiter *w);

/* Nonzero once kino_server_retire named w's worker: leave the loop. */
int kino_waiter_retiring(kino_waiter *w);

/*
 * Take the next ready request. With block == 0 returns NULL at once when
 * none is queued; with block != 0 waits until one is, the server stops,
 * or the waiter is interrupted (then NULL). With o.batch > 1 one visit
 * to the queue takes up to that many requests: the rest are the
 * waiter's (in flight, answered by kino_server_abort like any other),
 * and the next calls return them without touching the queue.
 */
kino_conn *kino_take(kino_server *s, kino_waiter *w, int block);

/*
 * Wait until a request is queued, the server stops or w is interrupted,
 * without taking it (returns nonzero when one is queued). For bindings
 * whose worker threads share a lock, like Ruby's GVL: wait for work
 * without the lock, take it with kino_take(s, w, 0) once holding the lock.
 * A request is then never stuck with a thread that waits for the lock
 * while a lock holder could serve it.
 */
int kino_wait_ready(kino_server *s, kino_waiter *w);

/* The parsed head of the connection's current request. Its spans stay
 * valid until the first body read or the end of the response. */
const kino_head *kino_conn_head(kino_conn *c);
const char *kino_conn_peer(kino_conn *c);   /* client address, text (from
                                               the PROXY header if any;
                                               127.0.0.1 on unix sockets) */
int kino_conn_peer_port(kino_conn *c);      /* client port (0 on unix) */
int kino_conn_local_port(kino_conn *c);     /* its listener's port */
unsigned kino_conn_flags(kino_conn *c);     /* its listener's KINO_LISTEN_* */
int kino_conn_fd(kino_conn *c);
int kino_conn_tls(kino_conn *c);            /* nonzero over HTTPS */
int kino_conn_http2(kino_conn *c);          /* nonzero for an HTTP/2 stream */
/* The client certificate of an HTTPS connection as PEM (malloc'd, free it;
 * *len bytes), or NULL when the client sent none. */
char *kino_conn_peer_cert(kino_conn *c, size_t *len);
const char *kino_conn_error(kino_conn *c);  /* why the last call failed */
int kino_conn_refused(kino_conn *c);        /* status owed for a refused
                                               request body, or 0 */
#define kino_conn_reject kino_conn_refused  /* its old name, kept working */

#define KINO_WAIT_READ 1
#define KINO_WAIT_WRITE 2

/*
 * Block until c is readable/writable (events), the connection's idle
 * timeout passes, or w is interrupted. Returns KINO_OK to retry, or
 * KINO_ERROR (timeout, interrupt, client gone; see kino_conn_error()).
 */
int kino_wait(kino_conn *c, kino_waiter *w, int events);

/*
 * Read up to n request-body bytes into buf (chunked bodies are decoded).
 * Returns bytes read (> 0), 0 at the end of the body, KINO_AGAIN when no
 * byte is available yet, or KINO_ERROR (malformed chunk, body too large,
 * client gone). Sends "100 Continue" first when the client asked for it.
 */
long kino_body_read(kino_conn *c, kino_waiter *w, char *buf, size_t n);

/* Response writing. The head is built in the waiter's buffer:
 * kino_resp_begin, kino_resp_header per field, kino_resp_end_head. */
#define KINO_BODY_LENGTH 1   /* a Content-Length body of `length` bytes */
#define KINO_BODY_STREAM 2   /* length unknown: chunked, or close-delimited
                                on HTTP/1.0 */
#define KINO_BODY_NONE 3     /* no body (204, 304, HEAD) */
#define KINO_BODY_HIJACK 4   /* no framing at all: the connection is
                                hijacked (kino_hijack) once the head is
                                flushed; the only way to send a 101 */

/* Start a response. Fails (KINO_ERROR) when someone else -- a timeout or
 * a shutdown -- has already answered this request (drop the response),
 * or when the request body was refused (kino_conn_refused() is nonzero:
 * answer with kino_resp_error, which sends that status instead). */
int kino_resp_begin(kino_conn *c, kino_waiter *w, int status);

/* Add one header field. KINO_ERROR when the name is not a token or the
 * value holds CR, LF or NUL; nothing is added then. Content-Length,
 * Transfer-Encoding, Date, Server and Connection given here are noted
 * and replace Kino's own. Content-Length and Transfer-Encoding are
 * dropped on 1xx, 204 and 304 responses (RFC 9110 8.6, RFC 9112 6.1);
 * Connection is kept as given only on a 101. */
int kino_resp_header(kino_conn *c, kino_waiter *w, const char *name,
                     size_t nlen, const char *val, size_t vlen);

/* Finish the head: add Date, Server, framing and Connection fields.
 * body is one of KINO_BODY_*; length is used with KINO_BODY_LENGTH.
 * The server owns framing: KINO_ERROR, with the reason in
 * kino_conn_error(), for a head that would frame the response
 * ambiguously -- a final 1xx (101 only with KINO_BODY_HIJACK, to an
 * HTTP/1.1 request), Transfer-Encoding other than a lone "chunked" or
 * to an HTTP/1.0 client, Transfer-Encoding with Content-Length, framing
 * fields with KINO_BODY_HIJACK. Nothing was sent then: answer with
 * kino_resp_error. */
int kino_resp_end_head(kino_conn *c, kino_waiter *w, int body,
                       uint64_t length);

/* Append body bytes (framed as a chunk when streaming chunked). Bytes
 * from `ref` calls are not copied: they must stay valid and unchanged
 * until the next flush completes. Both may flush. */
int kino_resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n);
int kino_resp_write_ref(kino_conn *c, kino_waiter *w, const char *p,
                        size_t n);

/* Write out what is buffered. KINO_OK when all was sent, KINO_AGAIN
 * when the socket is full (kino_wait for KINO_WAIT_WRITE, then call
 * again), KINO_ERROR when the client is gone. */
int kino_resp_flush(kino_conn *c, kino_waiter *w);

/* End the response (final chunk) and flush. Returns KINO_OK when the
 * response is complete or small enough to be finished by the I/O thread;
 * KINO_AGAIN as for kino_resp_flush. */
int kino_resp_end(kino_conn *c, kino_waiter *w);

/* A trailer field, sent after the body when kino_resp_end finishes it
 * (the Rack 3 body#trailers contract, as gRPC uses it): on an HTTP/2
 * stream a trailing HEADERS frame, on a chunked HTTP/1.1 response the
 * trailer section. Add them after the last body write. A response with
 * no place for trailers (Content-Length or HTTP/1.0 framing) drops them
 * (KINO_OK). KINO_ERROR, nothing added, for a name that is not a token,
 * a value with CR, LF or NUL, or a call before the head or after the
 * end. */
int kino_resp_trailer(kino_conn *c, kino_waiter *w, const char *name, size_t nlen,
                      const char *val, size_t vlen);

/* Bytes of the final response already handed to the kernel (0 means the
 * client has seen none of it, so an error response is still possible). */
uint64_t kino_resp_sent(kino_conn *c);

/* An informational response (103 Early Hints) before the final one:
 * kino_resp_info_begin, kino_resp_header per field, kino_resp_info_end
 * (which flushes: KINO_AGAIN as for kino_resp_flush; on an HTTP/2 stream
 * it hands the head to the I/O thread, a HEADERS frame of its own). On
 * HTTP/1.0, or once a timeout or shutdown answered, begin returns
 * KINO_ERROR and nothing is sent. After a hint, request_timeout no
 * longer applies: the response has begun. */
int kino_resp_info_begin(kino_conn *c, kino_waiter *w, int status);
int kino_resp_info_end(kino_conn *c, kino_waiter *w);

/* Send *left bytes of file fd from *offset as (part of) the body, with
 * sendfile(2) where the kernel has it. Flushes the head first. Updates
 * *offset and *left; KINO_OK when all went out, KINO_AGAIN when the
 * socket is full (kino_wait, then call again), KINO_ERROR when the client
 * is gone or the response is chunked. On Linux the host must ignore
 * SIGPIPE (Ruby does). */
int kino_resp_sendfile(kino_conn *c, kino_waiter *w, int fd, uint64_t *offset,
                       uint64_t *left);

/* Answer with a short canned response (text/plain reason phrase) and
 * close the connection afterwards. When the request body was refused the
 * status is the one owed for that (see kino_conn_refused). Fails when the
 * response has already begun: the connection is then closed. Fails too,
 * changing nothing but closing after it, when the response is already
 * complete (kino_resp_end returned KINO_OK): that response stands. */
int kino_resp_error(kino_conn *c, kino_waiter *w, int status);

/*
 * Take the connection away from the engine (Rack's hijack). On KINO_OK
 * the socket kino_conn_fd(c) is the caller's: the engine has stopped
 * watching it (one epoll_ctl/kevent) and never reads, writes, times out,
 * shuts down or closes it again. *rest and *rest_len give the bytes the
 * engine had already read past what it consumed (the request head, and
 * the body as far as it was read): the first bytes of whatever protocol
 * follows, raw. They stay valid until kino_next; *rest is NULL when
 * there are none. Then call kino_next(c, w), which returns NULL and
 * hands the struct back to its I/O thread to be freed without closing
 * the fd; until then every other engine call on c fails. A hijacked
 * connection no longer counts in stats.connections or max_connections;
 * stats.hijacked counts it.
 * Fails (KINO_ERROR, nothing changed) when a timeout or a shutdown has
 * already answered the request, on an HTTPS connection (the TLS session
 * cannot leave the engine), when the client is gone, or when
 * response bytes are still unsent (flush the head of a partial hijack
 * first, see KINO_BODY_HIJACK).
 */
int kino_hijack(kino_conn *c, kino_waiter *w, const char **rest, size_t *rest_len);

/*
 * Done with the current request. Returns c again when its next pipelined
 * request is already complete in the buffer (serve it at once), else
 * gives the connection back to its I/O thread and returns NULL.
 * After an error, or when the response is not complete, the connection
 * is closed instead.
 */
kino_conn *kino_next(kino_conn *c, kino_waiter *w);

/* Convenience for C programs: a complete response with a fixed body,
 * waiting in this thread when the socket is full. */
int kino_respond_simple(kino_conn *c, kino_waiter *w, int status,
                        const char *content_type, const char *body,
                        size_t len);

/* Reason phrase for a status code ("" when unknown). */
const char *kino_reason(int status);

/* ------------------------------------------------------------------ */
/* Control plane (kino_control.c)                                     */
/* ------------------------------------------------------------------ */

/*
 * A second, tiny HTTP listener for operators, served by its own thread
 * from the engine's counters alone, so it answers while every worker is
 * busy or stuck:
 *
 *   GET /live     200 while the process runs
 *   GET /ready    200 while running and a worker serves (for an engine
 *                 in this process: a waiter exists, i.e. a worker is
 *                 past its boot); 503 while booting or draining
 *   GET /stats    JSON: state, version and Kino::Server#stats' fields
 *   GET /metrics  Prometheus text format 0.0.4
 *
 * With a token, /stats and /metrics need "Authorization: Bearer <token>"
 * (compared in constant time); the probes never do. At most 16
 * connections are served at once, a request head has at most 4 KiB and
 * an exchange at most 5 s; every answer closes its connection.
 */
typedef struct kino_control kino_control;

#define KINO_STATE_BOOTING 0
#define KINO_STATE_RUNNING 1
#define KINO_STATE_DRAINING 2
#define KINO_STATE_STOPPED 3

typedef struct kino_control_options {
    const char *host;          /* TCP: address or host name */
    int port;                  /* TCP: 0 = ephemeral */
    const char *path;          /* unix socket path ("@name": abstract);
                                  used instead of host:port when set */
    const char *token;         /* NULL or "": no token needed */
    const char *mode;          /* for /stats and /metrics: "threaded"... */
    int workers, threads, io_threads;
    int lanes;                 /* lanes on: /stats shows lane_depths */
    int published;             /* 1: the numbers come from
                                  kino_control_publish, not the server */
    int adopt;                 /* 1: serve fd, a listening socket this
                                  process inherited (hot restart), instead
                                  of binding; path names its unix socket
                                  file, removed at free from now on */
    int fd;
} kino_control_options;

/* One worker's row in a published snapshot (the :cluster master adds a
 * row per worker process). served, busy_ms, accepted and respawns are
 * counters: the host keeps them from going down when it replaces the
 * worker of a row. */
#define KINO_ROW_SERVING 0
#define KINO_ROW_BOOTING 1
#define KINO_ROW_UNRESPONSIVE 2     /* counters are its last answer's */
typedef struct kino_control_row {
    int worker;                /* the worker number */
    int pid;                   /* its process */
    int state;                 /* KINO_ROW_* */
    int in_flight;             /* requests it serves now */
    int lane;                  /* requests waiting in its lanes */
    uint64_t served, busy_ms, accepted, connections, respawns;
} kino_control_row;
#define KINO_CONTROL_ROWS 1024      /* most rows a snapshot may have */

/* Bind and listen; start nothing. NULL with a message in err on failure. */
kino_control *kino_control_new(kino_server *s, const kino_control_options *o,
                               char *err, size_t errlen);
int kino_control_start(kino_control *c, char *err, size_t errlen);
int kino_control_port(const kino_control *c);  /* TCP port, or 0 */
/* One of KINO_STATE_*: what /ready and the stats say. Any thread. */
void kino_control_set_state(kino_control *c, int state);
/*
 * A control plane made with `published` shows the numbers its host
 * publishes: totals, the number of workers kept, and nrows rows (at most
 * KINO_CONTROL_ROWS). Copied; any thread. /stats and /metrics ask for a
 * fresh snapshot: the control thread writes one byte per question to
 * kino_control_question_fd, and answers once a snapshot with `answered`
 * >= that question's number arrives (the host counts the bytes it read:
 * that count is the question it answers), or after KINO_CONTROL_WAIT_MS
 * with the last snapshot and its age. KINO_ERROR when nrows is too many.
 */
int kino_control_publish(kino_control *c, const kino_stats *total, int workers,
                         const kino_control_row *rows, int nrows, uint64_t answered);
/* Readable when an answer waits for a snapshot; -1 unless `published`. */
int kino_control_question_fd(const kino_control *c);
/* Hand the listener over to the program this process is about to
 * execute (hot restart, kino_control_options.adopt there): free then
 * stops accepting, answers the connections it accepted (for at most a
 * second), and leaves the listener open and its unix socket file in
 * place. Returns its fd (still close-on-exec: the caller clears that for
 * the exec). */
int kino_control_keep_listener(kino_control *c);
/* Stop the thread, answer what it can of the exchanges in progress,
 * close the listener (removing a unix socket file it made) and free.
 * Call it before the server is freed. */
void kino_control_free(kino_control *c);

#endif /* KINO_H */
