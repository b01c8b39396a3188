/*
 * kino_h2.h -- HTTP/2 framing (RFC 9113) for one connection, without I/O.
 *
 * A kino_h2 is the protocol state of one HTTP/2 connection, server side:
 * the frame parser, stream states, flow control in both directions,
 * SETTINGS, PING, RST_STREAM, GOAWAY, the header-block assembly around
 * HPACK (kino_hpack.h) and the limits against the known floods. It does
 * no I/O and reads no clock:
 *
 *   - kino_h2_feed() takes the bytes the peer sent, in pieces of any size,
 *     and reports what they mean through callbacks (a request's head, its
 *     body bytes, a reset, a peer GOAWAY, a send window that opened);
 *   - every frame Kino owes the peer (SETTINGS ACK, PING ACK,
 *     WINDOW_UPDATE, RST_STREAM, GOAWAY, and the responses the caller
 *     submits) is appended to one output buffer per connection, read
 *     with kino_h2_output() and released with kino_h2_output_sent().
 *
 * Nothing is allocated per frame: a connection allocates its stream
 * table, header-block buffer and decoded-field buffer once, and its
 * output buffer grows by doubling up to a cap.
 *
 * Errors. A connection error (RFC 9113 5.4.1) queues GOAWAY with the last
 * stream id and the code; kino_h2_feed() then returns KINO_ERROR and
 * keeps doing so: flush the output and close. A stream error (5.4.2)
 * queues RST_STREAM and, for a stream the caller knows, calls `reset`.
 *
 * Threads. A kino_h2 has one owner (in Kino, the I/O thread of its
 * connection); nothing in it is locked.
 */
#ifndef KINO_H2_H
#define KINO_H2_H

#include "kino.h"

#include <stddef.h>
#include <stdint.h>

#define KINO_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define KINO_H2_PREFACE_LEN 24

/* Error codes (RFC 9113 section 7). */
#define KINO_H2_NO_ERROR 0x0
#define KINO_H2_PROTOCOL_ERROR 0x1
#define KINO_H2_INTERNAL_ERROR 0x2
#define KINO_H2_FLOW_CONTROL_ERROR 0x3
#define KINO_H2_SETTINGS_TIMEOUT 0x4
#define KINO_H2_STREAM_CLOSED 0x5
#define KINO_H2_FRAME_SIZE_ERROR 0x6
#define KINO_H2_REFUSED_STREAM 0x7
#define KINO_H2_CANCEL 0x8
#define KINO_H2_COMPRESSION_ERROR 0x9
#define KINO_H2_CONNECT_ERROR 0xa
#define KINO_H2_ENHANCE_YOUR_CALM 0xb
#define KINO_H2_INADEQUATE_SECURITY 0xc
#define KINO_H2_HTTP_1_1_REQUIRED 0xd

/*
 * Limits of one connection. kino_h2_limits_default() fills sane values;
 * each guards against one known attack (doc/http2.md, "Limits").
 */
typedef struct kino_h2_limits {
    uint32_t max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS we send;
                                  a stream past it is refused */
    uint32_t stream_window;    /* receive window of each stream (bytes a
                                  stream may buffer unread) */
    uint32_t header_list;      /* decoded header list (names + values +
                                  32 per field, RFC 7541 4.1): 431 past it */
    uint32_t header_block;     /* encoded header block, all its frames */
    uint32_t continuations;    /* CONTINUATION frames per header block,
                                  empty ones included */
    uint32_t reset_burst;      /* streams the peer may reset before their
                                  response ended, at once ... */
    uint32_t reset_rate;       /* ... and then per second; past it new
                                  streams get REFUSED_STREAM */
    uint32_t glitch_burst;     /* frames that cost without serving: PING,
                                  SETTINGS, PRIORITY, empty or unknown
                                  frames, refused streams; at once ... */
    uint32_t glitch_rate;      /* ... and then per second; past it the
                                  connection ends with ENHANCE_YOUR_CALM */
    size_t output_max;         /* bytes of output queued; past it the
                                  peer does not read and the connection
                                  ends. Response DATA may fill half. */
} kino_h2_limits;

/*
 * The limits Kino uses. `slots` is the number of requests the server can
 * serve at once (workers x threads): MAX_CONCURRENT_STREAMS is twice
 * that, clamped to 16..128, so every slot has one stream being served and
 * one waiting, and a small pool still lets a browser load a page's assets
 * in parallel.
 */
void kino_h2_limits_default(kino_h2_limits *l, int slots);

/*
 * What the connection reports. `ctx` is the pointer given to
 * kino_h2_new; `stream` is the pointer `request` returned for it. From a
 * callback the caller may submit output (kino_h2_send_*, kino_h2_reset)
 * but not call kino_h2_feed or kino_h2_stream_done.
 */
typedef struct kino_h2_callbacks {
    /* A request head is complete and valid (RFC 9113 8.2, 8.3). h and
     * its spans are valid during the call only. Return the caller's
     * object for the stream, or NULL to refuse it (REFUSED_STREAM). With
     * end_stream the request has no body. */
    void *(*request)(void *ctx, uint32_t id, const kino_head *h,
                     int end_stream);
    /* Body bytes, then one call with end = 1 once the body is complete
     * (n may be 0 then). The bytes are valid during the call only; the
     * stream's window reopens as the caller reports them read with
     * kino_h2_consume. */
    void (*data)(void *ctx, void *stream, const char *p, size_t n, int end);
    /* The stream is gone: the peer reset it, or Kino did (a stream error
     * with `code`). No more calls for it; kino_h2_* calls with its id
     * fail from now on. */
    void (*reset)(void *ctx, void *stream, uint32_t code);
    /* Send windows opened (a WINDOW_UPDATE or SETTINGS arrived): stream
     * is NULL when the connection's window grew or every stream's did. */
    void (*writable)(void *ctx, void *stream);
} kino_h2_callbacks;

typedef struct kino_h2 kino_h2;

/* A connection that has not yet seen the client preface; it has queued
 * its SETTINGS and the connection WINDOW_UPDATE. NULL when out of memory.
 * The limits are copied. */
kino_h2 *kino_h2_new(const kino_h2_limits *l, const kino_h2_callbacks *cb,
                     void *ctx);
void kino_h2_free(kino_h2 *h);

/*
 * Take n bytes the peer sent (any split: a byte at a time works as well
 * as everything at once), now_ms being a coarse monotonic clock in ms
 * for the budgets. Consumes all of them. KINO_OK, or KINO_ERROR after a
 * connection error (GOAWAY queued; see kino_h2_error).
 */
int kino_h2_feed(kino_h2 *h, const char *p, size_t n, uint64_t now_ms);

/* Output: the bytes queued (*p, return value; 0 when none), and how many
 * of them were written. */
size_t kino_h2_output(kino_h2 *h, const char **p);
void kino_h2_output_sent(kino_h2 *h, size_t n);

/*
 * Responses. kino_h2_send_head frames :status and the fields as HEADERS
 * (+ CONTINUATION past the peer's MAX_FRAME_SIZE), lowercasing names and
 * dropping the fields HTTP/2 forbids (Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade). kino_h2_send_data takes
 * as many bytes as the stream's and connection's send windows and half
 * the output cap allow, in frames of at most the peer's MAX_FRAME_SIZE;
 * it returns that count (0: wait for `writable` or for the output to
 * drain), or KINO_ERROR for an unknown stream. END_STREAM goes out only
 * when `end` is set and every byte was taken (n may be 0).
 * kino_h2_send_trailers ends the stream with a trailing HEADERS frame.
 * Each returns KINO_ERROR for an unknown or finished stream, a status
 * outside 100..999, or an output queue past its cap.
 */
int kino_h2_send_head(kino_h2 *h, uint32_t id, int status,
                      const kino_header *f, size_t n, int end);
long kino_h2_send_data(kino_h2 *h, uint32_t id, const char *p, size_t n,
                       int end);
int kino_h2_send_trailers(kino_h2 *h, uint32_t id, const kino_header *f,
                          size_t n);

/* Bytes kino_h2_send_data would take now on stream id (0 when none, or
 * when the stream is unknown). */
size_t kino_h2_sendable(kino_h2 *h, uint32_t id);

/* The caller read n body bytes of stream id, or dropped them unread:
 * reopen its window (and the connection's) with WINDOW_UPDATE once half
 * of it is used. Also after the stream is gone (then only the
 * connection's window), so bytes buffered for a reset stream are not
 * lost to the connection. */
void kino_h2_consume(kino_h2 *h, uint32_t id, size_t n);

/* Reset stream id with code (RST_STREAM); no `reset` callback follows. */
void kino_h2_reset(kino_h2 *h, uint32_t id, uint32_t code);

/*
 * The caller is done with stream id. A response that did not end is
 * reset (INTERNAL_ERROR); a request body still arriving after a complete
 * response is declined with RST_STREAM NO_ERROR (RFC 9113 8.1). The id
 * is forgotten.
 */
void kino_h2_stream_done(kino_h2 *h, uint32_t id);

/*
 * Graceful shutdown (RFC 9113 6.8): the first call sends GOAWAY with
 * 2^31-1 and a PING; when the PING's ACK comes back (a round trip later)
 * or on a second call, GOAWAY with the last stream id that will be
 * served. Streams above it are ignored from then on.
 */
void kino_h2_shutdown(kino_h2 *h);

/* 0 before kino_h2_shutdown, 1 after the first GOAWAY, 2 after the
 * final one. */
int kino_h2_shutdown_phase(const kino_h2 *h);

/* Nonzero when the connection can be closed: after a connection error,
 * or once both sides said GOAWAY (or the final one was sent) and no
 * stream is left. Flush the output first. */
int kino_h2_finished(const kino_h2 *h);

/* Streams open now (the ones counted against MAX_CONCURRENT_STREAMS). */
int kino_h2_streams(const kino_h2 *h);

/* The connection error (KINO_H2_*; 0 while none) and a short reason. */
uint32_t kino_h2_error(const kino_h2 *h);
const char *kino_h2_why(const kino_h2 *h);

/* The name of an error code ("PROTOCOL_ERROR"), "UNKNOWN" past 0xd. */
const char *kino_h2_code_name(uint32_t code);

#endif /* KINO_H2_H */
