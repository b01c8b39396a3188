/*
 * kino_tls.h -- the engine's TLS layer (kino_tls.c), as the engine sees it.
 *
 * Not part of the public API (kino.h has what programs use: the
 * kino_tls_options they fill, kino_tls_library, kino_conn_tls). The engine
 * calls these only inside `#ifdef KINO_TLS`: a build without OpenSSL
 * (make TLS=0) compiles none of it.
 *
 * Ownership. A kino_tls belongs to its connection and follows it: the I/O
 * thread runs the handshake, then whichever thread owns the connection
 * (the I/O thread, or the worker that took the request) reads and writes
 * through it. The hand-off between them is a happens-before edge (the
 * ready queue's mutex, the hand-back stack's atomics), and OpenSSL asks no
 * more than that of one SSL object. The error queue is per thread: every
 * call here clears it first and reads SSL_get_error at once.
 *
 * Every read and write call keeps the shape of recv(2)/send(2): a count,
 * 0 at the end of the stream (reads), or -1 with errno set -- EAGAIN when
 * OpenSSL needs the socket to be readable or writable (kino_tls_want says
 * which), another errno when the connection is lost.
 */
#ifndef KINO_TLS_H
#define KINO_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kino.h"

typedef struct kino_tls_ctx kino_tls_ctx; /* one per TLS listener */
typedef struct kino_tls kino_tls;         /* one per TLS connection */

/* A context from the options; NULL with a message naming TLS and the
 * file or option at fault in err. */
kino_tls_ctx *kino_tls_ctx_new(const kino_tls_options *o, int h2, char *err, size_t errlen);
void kino_tls_ctx_free(kino_tls_ctx *x);

/* Does the first byte a client sent start a TLS record (a handshake,
 * 0x16, or an SSLv2-style hello with the high bit set)? Plain HTTP starts
 * with a method letter. */
int kino_tls_first_byte(unsigned char b);

/* A connection's TLS state over socket fd, not yet handshaken; NULL when
 * out of memory. kino_tls_free releases it (and nothing else: the fd is
 * the caller's). */
kino_tls *kino_tls_new(kino_tls_ctx *x, int fd);
void kino_tls_free(kino_tls *t);

/* Advance the handshake: KINO_OK once done, KINO_AGAIN to call again on
 * the next readiness event, KINO_ERROR when the client failed it. */
int kino_tls_handshake(kino_tls *t);

/* After the handshake: did ALPN pick "h2"? (Offered first, and only,
 * when the context was made with h2 on.) */
int kino_tls_alpn_h2(const kino_tls *t);

ssize_t kino_tls_read(kino_tls *t, void *buf, size_t n);
ssize_t kino_tls_write(kino_tls *t, const void *buf, size_t n);

/* After a -1/EAGAIN: KINO_WAIT_READ or KINO_WAIT_WRITE, what OpenSSL
 * waits for (a read may need to write, and a write to read); 0 when the
 * last call did not wait. */
int kino_tls_want(const kino_tls *t);

/* May input be waiting that no readiness event will announce: decrypted
 * bytes or raw records OpenSSL holds, or a socket its last read did not
 * prove empty? The TLS form of "the last recv filled the buffer". */
int kino_tls_more(const kino_tls *t);

/* Send n bytes of file fd from *off: SSL_sendfile when the kernel does
 * the encryption (kTLS), else pread into buf[0..cap) and kino_tls_write.
 * Advances *off by what went out; returns that count or -1 as above.
 * A retry after EAGAIN must come with the same *off (it does: *off only
 * moves by what went out), so OpenSSL sees the same bytes again. */
ssize_t kino_tls_sendfile(kino_tls *t, int fd, uint64_t *off, size_t n, char *buf, size_t cap);

/* Does this connection send through kTLS? */
int kino_tls_ktls(const kino_tls *t);

/* Send close_notify once, without waiting (a polite close). */
void kino_tls_close(kino_tls *t);

/* The client's certificate as PEM (malloc'd, *len bytes, NUL-terminated),
 * or NULL when it sent none. */
char *kino_tls_peer_cert(kino_tls *t, size_t *len);

#endif /* KINO_TLS_H */
