/*
 * kino_engine.h -- what the engine's files share: never installed, never
 * included by the Ruby binding. kino.h is the API; this is the inside.
 * Everything here is a type, a macro or a `static inline` helper, so a
 * hot helper (a send, a span compare, the Date copy) inlines into every
 * file that calls it exactly as it did when the engine was one file.
 * Functions one file defines and another calls are declared at the end
 * (hidden: not exported from the shared object). It reads top to bottom:
 *
 *    1. tunables      buffer sizes, limits and rates (-D to override)
 *    2. platform      poller (epoll | kqueue), wake fds, accept, sendfile,
 *                     clocks: the only place that tests the platform
 *    3. lists         the intrusive circular list (the "ring queue")
 *    4. bytes         byte classes, spans, header-value helpers and the
 *                     chunked decoder's states: the parser's (kino_http.c),
 *                     shared with the I/O thread and the response writer
 *    5. structures    server, I/O thread, connection, waiter
 *    6. transport     a connection's bytes: plain, or through kino_tls.c
 *    7. across files  the Date copy, waking an I/O thread, and the
 *                     functions one engine file calls in another
 *
 * The files: kino.c (the I/O side and the server), kino_http.c (the
 * parser: pure functions), kino_worker.c (the worker side), kino_log.c
 * (the log sink), kino_tls.c (HTTPS), kino_control.c (/stats, /metrics).
 * doc/architecture.md section "Layers" says why the cut is there.
 */
#ifndef KINO_ENGINE_H
#define KINO_ENGINE_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "kino.h"
#include "kino_tls.h"
#include "kino_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Functions shared between engine files, not exported from the .so. */
#if defined(__GNUC__) || defined(__clang__)
#define KINO_HIDDEN __attribute__((visibility("hidden")))
#else
#define KINO_HIDDEN
#endif

/* ================================================================== */
/* 1. Tunables                                                        */
/* ================================================================== */

#ifndef KINO_BUF_SIZE
#define KINO_BUF_SIZE 16384       /* input buffer of a busy connection */
#endif
#ifndef KINO_HANDOFF_MAX
#define KINO_HANDOFF_MAX (1 << 20) /* unsent response bytes the I/O thread
                                     finishes for a worker */
#endif
#ifndef KINO_BODY_RATE
#define KINO_BODY_RATE 240        /* bytes/s a streamed body must keep up, */
#endif
#define KINO_BODY_WINDOW_MS 5000  /* ... in every window of this much
                                     waiting for it */
#ifndef KINO_DRAIN_MAX
#define KINO_DRAIN_MAX 65536      /* unread request body skipped to keep a
                                     connection alive */
#endif
#ifndef KINO_HANDOFF_BUDGET
#define KINO_HANDOFF_BUDGET (64u << 20) /* unsent bytes the I/O threads hold
                                          for workers in all; past it a
                                          response over KINO_HANDOFF_MAX is
                                          finished by its worker */
#endif
#define KINO_EVENTS 256           /* events taken per poller wait */
#define KINO_ACCEPTS 64           /* accepts per listener event */
#define KINO_SHARED_PAUSE_MS 2    /* shared listener, no idle worker: look again */
#define KINO_SEGS 64              /* response segments before copying */
#define KINO_LINGER_MS 2000       /* drain time after an error response */
#define KINO_LINGER_BYTES (1 << 20)
#define KINO_POOL_BUFS 128        /* spare input buffers per I/O thread */
#define KINO_LANE_STALL_MS 2      /* lanes: a waiter that took nothing for this
                                     long gets no more, and its lane goes back
                                     to the shared queue */
#define KINO_CARRY_MAX 16384      /* response bytes held back for pipelined
                                     requests (out_carry) */

/* ================================================================== */
/* 2. Platform                                                        */
/* ================================================================== */

#define EV_IN 1
#define EV_OUT 2
#define EV_HUP 4 /* the peer closed (at least) its writing side */

/* The poller backend: epoll on Linux, kqueue on the BSDs and macOS.
 * What is checked where: the epoll backend runs every test here. The
 * kqueue backend is compiled on every `make test` (make check-kqueue:
 * -fsyntax-only against test/compat's BSD declarations) and runs under
 * `make test-kqueue`: the C tests built with -DKINO_USE_KQUEUE against
 * libkqueue (kqueue over epoll; Debian experimental, so in
 * tools/newer-ruby's chroot), under ASan and UBSan, with
 * test/c/libkqueue.h fixing the two places where libkqueue 2.3.1 is not a
 * kernel kqueue (one socket watched for read and write; close removing
 * its knotes). `make test-ruby RUBY=ruby3.4 KQUEUE=1` there runs the Ruby
 * suites on it too. Those runs found the wake trigger dropping its udata
 * (fixed in poller_wake) and a connection freed while its second event of
 * the batch was still to come (io->dead). No BSD or macOS kernel runs
 * here: their sendfile shapes and accept without accept4 are compiled,
 * never run. */
#if !defined(KINO_USE_EPOLL) && !defined(KINO_USE_KQUEUE)
#if defined(__linux__)
#define KINO_USE_EPOLL 1
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__)
#define KINO_USE_KQUEUE 1
#endif
#endif

/* The other platform features, decided here and only here: the engine
 * tests these macros, never an OS name. Each may be preset (-D),
 * to build what another platform would (make check-kqueue does). */
/* accept4(2): non-blocking and close-on-exec in one call */
#if !defined(KINO_HAVE_ACCEPT4) && (defined(__linux__) || defined(__FreeBSD__) || \
    defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__))
#define KINO_HAVE_ACCEPT4 1
#endif
/* sendfile(2), in one of its three shapes (none: pread and send) */
#if !defined(KINO_HAVE_LINUX_SENDFILE) && !defined(KINO_HAVE_BSD_SENDFILE) && \
    !defined(KINO_HAVE_MACOS_SENDFILE)
#if defined(__linux__)
#define KINO_HAVE_LINUX_SENDFILE 1 /* sendfile(out, in, &off, n) */
#elif defined(__FreeBSD__) || defined(__DragonFly__)
#define KINO_HAVE_BSD_SENDFILE 1   /* sendfile(in, out, off, n, hdtr, &sent, flags) */
#elif defined(__APPLE__)
#define KINO_HAVE_MACOS_SENDFILE 1 /* sendfile(in, out, off, &len, hdtr, flags) */
#endif
#endif
/* SO_NOSIGPIPE (the BSDs, macOS) where send() has no MSG_NOSIGNAL */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

#if defined(KINO_USE_EPOLL)
#include <sys/epoll.h>
#include <sys/eventfd.h>

typedef struct poller {
    int fd;
    int wakefd;
    struct epoll_event ev[KINO_EVENTS];
    int shared;   /* the listener is shared with other processes */
} poller;

/* Open the poller and its wake channel; data identifies wake events. */
static inline int poller_open(poller *p, void *data) {
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = data};
    p->fd = epoll_create1(EPOLL_CLOEXEC);
    if (p->fd < 0) return -1;
    p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wakefd < 0 || epoll_ctl(p->fd, EPOLL_CTL_ADD, p->wakefd, &e) < 0) {
        if (p->wakefd >= 0) close(p->wakefd);
        close(p->fd);
        p->fd = -1;
        return -1;
    }
    return 0;
}

static inline void poller_close(poller *p) {
    close(p->wakefd);
    close(p->fd);
}

/* Watch a connection for input and output, edge-triggered, for its whole
 * life: no epoll_ctl per request. Closing the fd removes it. */
static inline int poller_watch(poller *p, int fd, void *data) {
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                            .data.ptr = data};
    return epoll_ctl(p->fd, EPOLL_CTL_ADD, fd, &e);
}

/* Stop watching a connection that stays open (a hijack). Safe from any
 * thread; a wait already under way may still report it once. */
static inline int poller_unwatch(poller *p, int fd) {
    struct epoll_event e = {0}; /* kernels before 2.6.9 want one */
    return epoll_ctl(p->fd, EPOLL_CTL_DEL, fd, &e);
}

/* Start (on) or stop watching a listener, level-triggered. Several I/O
 * threads share one listener; EPOLLEXCLUSIVE wakes only one of them --
 * always the same one while it keeps up, so a listener shared with other
 * processes (p->shared) wakes them all instead: each takes what its idle
 * workers can serve (io_accept). */
static inline int poller_listen(poller *p, int fd, void *data, int on) {
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = data};
#ifdef EPOLLEXCLUSIVE
    if (!p->shared) e.events |= EPOLLEXCLUSIVE;
#endif
    return epoll_ctl(p->fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &e);
}

/* Wait up to timeout_ms (-1: forever) for events. Returns their count,
 * 0 on timeout or a signal, -1 with errno when the poller itself failed
 * (EBADF, EINVAL...): retrying would only fail again, at full speed. */
static inline int poller_wait(poller *p, int timeout_ms) {
    int n = epoll_wait(p->fd, p->ev, KINO_EVENTS, timeout_ms);
    return n < 0 && errno == EINTR ? 0 : n;
}

/* The i-th event of the last wait: its data, and EV_IN/EV_OUT. Errors and
 * hang-ups count as both, so the next read or write finds them. */
static inline void *poller_event(poller *p, int i, int *mask) {
    uint32_t e = p->ev[i].events;
    *mask = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) *mask |= EV_IN;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) *mask |= EV_OUT;
    if (e & (EPOLLRDHUP | EPOLLHUP)) *mask |= EV_HUP;
    return p->ev[i].data.ptr;
}

static inline void poller_wake(poller *p) {
    uint64_t one = 1;
    ssize_t r = write(p->wakefd, &one, sizeof one);
    (void)r;
}

static inline void poller_wake_ack(poller *p) {
    uint64_t n;
    ssize_t r = read(p->wakefd, &n, sizeof n);
    (void)r;
}

/* A waiter's private wake channel for poll(2): one eventfd. */
static inline int wakefd_open(int fds[2]) {
    fds[0] = fds[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fds[0] < 0 ? -1 : 0;
}

static inline void wakefd_close(int fds[2]) { close(fds[0]); }

static inline void wakefd_signal(int fds[2]) {
    uint64_t one = 1;
    ssize_t r = write(fds[1], &one, sizeof one);
    (void)r;
}

/* Reset the channel: one read empties an eventfd's counter. */
static inline void wakefd_drain(int fds[2]) {
    uint64_t n;
    ssize_t r = read(fds[0], &n, sizeof n);
    (void)r;
}

#elif defined(KINO_USE_KQUEUE)
#include <sys/event.h>

typedef struct poller {
    int fd;
    void *wake_data;         /* udata of the EVFILT_USER wake event */
    struct kevent ev[KINO_EVENTS];
    int shared;   /* the listener is shared with other processes */
} poller;

static inline int poller_open(poller *p, void *data) {
    struct kevent ch;
    p->fd = kqueue();
    if (p->fd < 0) return -1;
    fcntl(p->fd, F_SETFD, FD_CLOEXEC);
    p->wake_data = data;
    EV_SET(&ch, 0, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, data);
    if (kevent(p->fd, &ch, 1, NULL, 0, NULL) < 0) {
        close(p->fd);
        p->fd = -1;
        return -1;
    }
    return 0;
}

static inline void poller_close(poller *p) { close(p->fd); }

static inline int poller_watch(poller *p, int fd, void *data) {
    struct kevent ch[2];
    EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, data);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, data);
    return kevent(p->fd, ch, 2, NULL, 0, NULL);
}

static inline int poller_unwatch(poller *p, int fd) {
    struct kevent ch[2];
    EV_SET(&ch[0], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    return kevent(p->fd, ch, 2, NULL, 0, NULL);
}

static inline int poller_listen(poller *p, int fd, void *data, int on) {
    struct kevent ch;
    EV_SET(&ch, fd, EVFILT_READ, on ? EV_ADD : EV_DELETE, 0, 0, data);
    return kevent(p->fd, &ch, 1, NULL, 0, NULL);
}

static inline int poller_wait(poller *p, int timeout_ms) {
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    int n = kevent(p->fd, NULL, 0, p->ev, KINO_EVENTS, timeout_ms < 0 ? NULL : &ts);
    return n < 0 && errno == EINTR ? 0 : n;
}

static inline void *poller_event(poller *p, int i, int *mask) {
    struct kevent *e = &p->ev[i];
    *mask = e->filter == EVFILT_WRITE ? EV_OUT : EV_IN;
    if (e->flags & (EV_EOF | EV_ERROR)) *mask = EV_IN | EV_OUT | EV_HUP;
    return (void *)e->udata;
}

/* Every change to a kevent stores its udata: the trigger must repeat it,
 * or the wake event comes back without the data that identifies it. */
static inline void poller_wake(poller *p) {
    struct kevent ch;
    EV_SET(&ch, 0, EVFILT_USER, 0, NOTE_TRIGGER, 0, p->wake_data);
    kevent(p->fd, &ch, 1, NULL, 0, NULL);
}

static inline void poller_wake_ack(poller *p) { (void)p; /* EV_CLEAR resets it */ }

/* A waiter's private wake channel for poll(2): a pipe. */
static inline int wakefd_open(int fds[2]) {
    if (pipe(fds) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static inline void wakefd_close(int fds[2]) {
    close(fds[0]);
    close(fds[1]);
}

static inline void wakefd_signal(int fds[2]) {
    char one = 1;
    ssize_t r = write(fds[1], &one, 1);
    (void)r;
}

/* Reset the channel: read the pipe empty (several signals may be in it). */
static inline void wakefd_drain(int fds[2]) {
    char junk[64];
    while (read(fds[0], junk, sizeof junk) > 0) {
    }
}

#else
#error "Kino needs epoll (Linux) or kqueue (BSD, macOS)"
#endif

#if defined(KINO_HAVE_LINUX_SENDFILE)
#include <sys/sendfile.h>
#elif defined(KINO_HAVE_BSD_SENDFILE) || defined(KINO_HAVE_MACOS_SENDFILE)
#include <sys/types.h>
#endif

/* Send up to n bytes of file fd at *off to socket s, through the kernel
 * where it can (sendfile), else through a buffer; advances *off by what
 * went out. Returns that count, or -1 with errno (EAGAIN: socket full).
 * Linux's sendfile raises SIGPIPE on a closed socket: hosts ignore it. */
static inline ssize_t send_file(int s, int fd, uint64_t *off, size_t n) {
#if defined(KINO_HAVE_LINUX_SENDFILE)
    off_t o = (off_t)*off;
    ssize_t r = sendfile(s, fd, &o, n);
    if (r > 0) *off = (uint64_t)o;
    return r;
#elif defined(KINO_HAVE_BSD_SENDFILE) || defined(KINO_HAVE_MACOS_SENDFILE)
    off_t sent = 0;
#if defined(KINO_HAVE_MACOS_SENDFILE)
    sent = (off_t)n;
    int r = sendfile(fd, s, (off_t)*off, &sent, NULL, 0);
#else
    int r = sendfile(fd, s, (off_t)*off, n, NULL, &sent, 0);
#endif
    if (sent > 0) { /* may come with EAGAIN: count what went out */
        *off += (uint64_t)sent;
        return (ssize_t)sent;
    }
    return r < 0 ? -1 : 0;
#else
    char buf[65536];
    ssize_t got = pread(fd, buf, n < sizeof buf ? n : sizeof buf, (off_t)*off);
    if (got <= 0) return got;
    ssize_t sent = send(s, buf, (size_t)got, MSG_NOSIGNAL);
    if (sent > 0) *off += (uint64_t)sent;
    return sent;
#endif
}

/* Accept one connection, nonblocking and close-on-exec, without the two
 * extra fcntl calls where accept4 exists. */
static inline int accept_nb(int lfd, struct sockaddr_storage *ss) {
    socklen_t len = sizeof *ss;
#if defined(KINO_HAVE_ACCEPT4)
    return accept4(lfd, (struct sockaddr *)ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(lfd, (struct sockaddr *)ss, &len);
    if (fd >= 0) {
        int one = 1;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
#ifdef SO_NOSIGPIPE
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        (void)one;
    }
    return fd;
#endif
}

/* Bytes waiting in a socket's receive queue (FIONREAD: Linux, the BSDs,
 * macOS), or -1. */
static inline long socket_queued(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

/* Milliseconds on a monotonic clock. The coarse clock (Linux) is read
 * from the vDSO without a syscall and is precise to a few ms: plenty for
 * timeouts and statistics. */
#ifdef CLOCK_MONOTONIC_COARSE
#define KINO_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define KINO_CLOCK CLOCK_MONOTONIC
#endif

static inline int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(KINO_CLOCK, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How the engine starts its threads: pthread_create, unless a test build
 * (test/c/run.c) puts one in front of it that can fail on demand. */
#ifndef KINO_THREAD_CREATE
#define KINO_THREAD_CREATE pthread_create
#endif

/* Block every signal in the calling (engine) thread: signals belong to
 * the host program's threads, Ruby's in particular. */
static inline void block_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

/* ================================================================== */
/* 3. Lists                                                           */
/* ================================================================== */

/* Intrusive circular doubly linked list with a sentinel head. A detached
 * node points to itself, so removing twice is harmless. */
typedef struct klist {
    struct klist *next, *prev;
} klist;

#define KLIST_ENTRY(ptr, type, field) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, field)))

static inline void klist_init(klist *h) { h->next = h->prev = h; }
static inline int klist_empty(const klist *h) { return h->next == h; }

static inline void klist_push(klist *h, klist *n) {
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void klist_remove(klist *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* ================================================================== */
/* 4. Bytes                                                           */
/* ================================================================== */

/* Byte classes: 1 tchar (RFC 9110 token), 2 allowed in a field value
 * (VCHAR, obs-text, SP, HTAB), 4 allowed in a request-target, 8 allowed
 * in a Host name (reg-name without ','). */
extern const unsigned char kino_ctab[256] KINO_HIDDEN; /* kino_http.c */

#define IS_TCHAR(c) (kino_ctab[(unsigned char)(c)] & 1)
#define IS_VALUE(c) (kino_ctab[(unsigned char)(c)] & 2)
#define IS_TARGET(c) (kino_ctab[(unsigned char)(c)] & 4)
#define IS_HOST(c) (kino_ctab[(unsigned char)(c)] & 8)
#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)


static inline kino_span span(const char *a, const char *b) {
    kino_span s = {a, (size_t)(b - a)};
    return s;
}

/* Case-insensitive comparison of a span with a lowercase literal. */
static inline int span_is(kino_span s, const char *lit) {
    size_t n = strlen(lit);
    if (s.n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != (unsigned char)lit[i]) return 0;
    }
    return 1;
}

/* Content-Length = 1*DIGIT, exactly one: a list ("5, 5") is refused,
 * as nginx refuses it, although RFC 9110 8.6 would let a recipient
 * fold equal values (doc/security.md). Returns 0 and *out, or -1. */
static inline int parse_length(kino_span v, int64_t *out) {
    const char *p = v.p, *e = v.p + v.n;
    int64_t n = 0;
    if (p == e) return -1;
    for (; p < e; p++) {
        if (!IS_DIGIT(*p) || p - v.p >= 18) return -1; /* > 10^18: not a length we accept */
        n = n * 10 + (*p - '0');
    }
    *out = n;
    return 0;
}

/* Does a comma-separated header value hold the token lit? */
static inline int has_token(kino_span v, const char *lit) {
    const char *p = v.p, *e = v.p + v.n;
    while (p < e) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *t = p;
        while (p < e && *p != ',') p++;
        const char *te = p;
        while (te > t && (te[-1] == ' ' || te[-1] == '\t')) te--;
        if (span_is(span(t, te), lit)) return 1;
    }
    return 0;
}

/* Chunked decoder states. */
enum {
    CH_SIZE, CH_SIZE_WS, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
    CH_TRAILER_START, CH_TRAILER, CH_TRAILER_LF, CH_END_LF, CH_DONE
};

/* ================================================================== */
/* 5. Structures                                                      */
/* ================================================================== */

/* A connection's input buffer, with room for the header spans of the
 * request it holds. Only connections with bytes in flight have one. */
typedef struct kino_buf {
    struct kino_buf *next; /* pool link */
    size_t cap;
    kino_header hdrs[KINO_MAX_HEADERS];
    char data[];
} kino_buf;

/* The I/O thread's view of a connection: who owns it, and the timer list
 * that holds it (kino.c section 4). Only the I/O thread writes state. */
enum {
    C_IDLE,      /* I/O thread; t_idle: keep-alive, no request begun, no buffer */
    C_READING,   /* I/O thread; t_header: a head is arriving (from accept or its first byte) */
    C_BODY,      /* I/O thread; t_body: head parsed, gathering its body (body_buffered) */
    C_PARKED,    /* I/O thread; t_parked: a complete request waiting for queue room (503 at the deadline) */
    C_AWAY,      /* a worker (queued or taken); t_away with request_timeout, else t_held */
    C_FLUSH,     /* I/O thread; t_flush: finishing a response a worker handed off */
    C_LINGER,    /* I/O thread; t_linger: closing, reading and dropping what the client still sends */
    C_HANDSHAKE, /* I/O thread; t_header: a TLS handshake (kino_tls.c) before the head */
    C_H2,        /* I/O thread: an HTTP/2 connection (kino_stream.c); t_header until
                    its first stream, t_held while one is open, t_idle between */
    C_CLOSED,    /* I/O thread; dead: closed during a batch of events, freed after it */
};
/* What the I/O thread does with a connection handed back by a worker;
 * NEXT_HIJACKED: free the struct, never touch the fd (kino_hijack). */
enum { NEXT_KEEP, NEXT_CLOSE, NEXT_ABORT, NEXT_HIJACKED };
/* Who answers the current request: first compare-and-swap wins.
 * ANS_HIJACK: the app took the socket, nobody else may write to it. */
enum { ANS_OPEN, ANS_APP, ANS_TIMEOUT, ANS_SHUTDOWN, ANS_HIJACK };
/* Request body framing and progress. */
enum { B_NONE, B_LENGTH, B_CHUNKED, B_DONE };
/* Response framing. */
enum { R_LENGTH, R_CHUNKED, R_RAW, R_NOBODY };

typedef struct kino_io kino_io;

typedef struct kino_h2conn kino_h2conn;
typedef struct kino_stream kino_stream;

struct kino_conn {
    klist qlink;             /* ready queue (under the server mutex) */
    klist tlink;             /* timer list (I/O thread only) */
    kino_conn *rnext;        /* hand-back stack */
    kino_io *io;             /* owning I/O thread */
    int fd;
    kino_tls *tls;           /* HTTPS: its TLS state, from the first byte */
    /* Separate bytes, not bit-fields: the I/O thread writes state and
     * missed while a worker writes the rest of the struct. */
    unsigned char state;      /* C_*: the I/O thread's view */
    unsigned char missed;     /* I/O thread: readiness arrived while away */
    unsigned char next;       /* NEXT_*: set by the worker at hand-back */
    unsigned char maybe_more; /* owner: the socket may hold unread bytes */
    int64_t deadline;         /* ms, for the timer list the conn is on */
    int64_t queued_at;        /* ms: dispatched to the ready queue */
    int64_t t_start;          /* us: head complete (only with an access log) */

    /* input: buf->data[off..len) is unconsumed; the current request's
     * head is [off, off + head_len); request-body bytes start at bpos */
    kino_buf *buf;
    size_t off, len, scanned, head_len, bpos;
    kino_head head;
    const char *head_at;     /* where head was parsed: its spans point there */

    /* request body */
    int body;                /* B_* */
    uint64_t body_left;      /* B_LENGTH: bytes not yet delivered */
    uint64_t body_total;     /* bytes delivered so far */
    kino_chunked chunk;
    kino_chunked ahead;      /* C_BODY, chunked: the I/O thread's look-ahead */
    size_t ahead_pos;        /* ... raw bytes it has looked at, from off */
    uint64_t ahead_total;    /* ... body bytes they hold */
    unsigned body_full : 1;  /* C_BODY: the buffer is full, stream the rest */
    int64_t body_waited;     /* ms a worker waited for body bytes, */
    int64_t win_at;          /* ... when the current rate window began, */
    uint64_t win_bytes;      /* ... and body_total then */
    int refused;             /* status owed for a body we refused (400, 408,
                                413): whatever the app answers, the client
                                gets this instead */
    unsigned continue_sent : 1;

    /* response */
    _Atomic int answer;      /* ANS_* */
    int status;
    int framing;             /* R_* */
    unsigned r_close : 1;    /* close after this response */
    unsigned hinted : 1;     /* an informational (1xx) response went out */
    unsigned final : 1;      /* the final response has begun */
    unsigned r_done : 1;     /* response complete (maybe in c->out) */
    unsigned trailing : 1;   /* chunked: the last chunk and trailers began */
    unsigned broken : 1;     /* unusable: client gone or framing lost */
    unsigned seen_date : 1, seen_server : 1, seen_length : 1;
    unsigned seen_te : 2;    /* app-set Transfer-Encoding: 1 chunked, 2 other */
    uint64_t r_length;       /* app-set or computed Content-Length */
    uint64_t r_left;         /* body bytes still owed for R_LENGTH */
    uint64_t sent;           /* response bytes handed to the kernel */
    char *out;               /* unsent bytes left for the I/O thread */
    size_t out_len, out_off;

    const char *error;
    const struct kino_lsock *ls; /* the listener that accepted it */
    unsigned char proxy;     /* a PROXY header is still owed */
    unsigned char fresh;     /* no request yet: an HTTP/2 preface may come */
    kino_h2conn *h2;         /* an HTTP/2 connection: its side (kino_stream.c) */
    kino_stream *st;         /* a stream's request object: the stream */
    int peer_port;
    char peer[INET6_ADDRSTRLEN];
};

/* A response segment: bytes in the waiter's buffer (ref == NULL, at
 * off) or caller memory (ref). */
typedef struct seg {
    const char *ref;
    size_t off, len;
} seg;

struct kino_waiter {
    klist link;              /* on the sleepers list (server mutex) */
    klist all;               /* on the server's list of waiters (mutex) */
    klist lane_link;         /* lanes: on the server's lane ring (mutex) */
    klist lane;              /* lanes: requests queued for it (mutex) */
    int nlane;
    int64_t took;            /* lanes: ms of its last visit that took (mutex) */
    /* batch: requests taken and not yet begun are batch[batch_next ..
     * batch_end). The waiter fills it under the server mutex once it is
     * empty; each one is then claimed with a compare-and-swap on
     * batch_next, by the waiter or by another waiter that steals it
     * (under the mutex), so none waits behind a stuck request while a
     * worker is free (doc/dispatch.md section 3). */
    kino_conn *batch[KINO_BATCH_MAX];
    int batch_end;           /* written by the waiter, with the mutex */
    _Atomic int batch_next;
    kino_server *s;
    int worker;              /* worker number, for per-worker stats */
    _Atomic int64_t taken_at; /* ms: the current request was taken (stored
                                 before in_flight, read after it) */
    _Atomic uint64_t served, busy_ms;
    _Atomic int in_flight;
    _Atomic int retiring;     /* kino_server_retire: take nothing more */
    int quarantined;          /* ... because it was stuck (server mutex) */
    pthread_cond_t cond;
    int sleeping;            /* on the sleepers list (server mutex) */
    _Atomic int interrupted;
    int wake[2];             /* wakes poll() in kino_wait */
    char *out;               /* response bytes being assembled */
    size_t out_len, out_cap;
    seg segs[KINO_SEGS];
    int nseg, seg_i;         /* segments, and the first one unsent */
    size_t seg_off;          /* bytes of segs[seg_i] already sent */
    size_t unsent;           /* bytes in segments not yet sent */
    size_t carry;            /* the first of them: complete responses to
                                earlier pipelined requests, held back to
                                go out with this one (out_carry) */
    char scratch[4096];      /* discarded request-body bytes */
    char *tls_buf;           /* HTTPS: segments gathered into one write */
    /* access log: the request line and X-Request-Id copied at take (the
     * head's spans die at the first body read); only with an access log */
    char *lg;
    size_t lg_method, lg_target, lg_rid;
    int lg_minor, lg_has_rid;
};

struct kino_io {
    kino_server *s;
    int index;
    pthread_t thread;
    int running;
    poller p;
    _Atomic(kino_conn *) returns; /* connections handed back by workers */
    _Atomic int sleeping;         /* in poller_wait */
    _Atomic int wake_sent;        /* a wake was sent and not yet seen */
    /* Timer lists. t_held has no deadline: requests away with a worker
     * when request_timeout is off, or already answered by a timeout. */
    klist t_header, t_body, t_idle, t_parked, t_away, t_held, t_flush, t_linger;
    /* Connections closed while a batch of poller events is handled
     * (dispatching): their structs wait here until the batch is done, as
     * a later event of the same batch may still name them. */
    klist dead;
    int dispatching;
    _Atomic int parked;           /* t_parked is not empty */
    _Atomic int missed_away;      /* away conns whose missed is set */
    klist h2conns;                /* HTTP/2 connections (kino_stream.c) */
    klist t_streams;              /* HTTP/2 streams under request_timeout,
                                     by their request objects (kino_stream.c) */
    klist h2flush;                /* HTTP/2 connections whose returned streams
                                     wait to be written (kino_stream.c) */
    kino_buf *pool;
    int npool;
    int listening;
    int paused;                   /* not accepting: connection cap */
    int64_t resume_at;            /* accept paused until (EMFILE) */
    int deferred;                 /* shared listener: last accept left to others */
    int64_t now;
    int drained, aborted;
    int64_t lane_check;           /* lanes: next look for stalled lanes (ms) */
    _Atomic int failed;           /* errno of a poller failure: thread ended */
};

/* A listening socket. path is the unix socket file this server created
 * (removed at the end if it is still the one bound: same dev and ino). */
typedef struct kino_lsock {
    int fd, kind, port;
    unsigned flags;
    char *path;
    dev_t dev;
    ino_t ino;
} kino_lsock;

#define POOL_FIELDS (sizeof(kino_pool_stats) / sizeof(uint64_t))

struct kino_server {
    kino_options o;
    kino_lsock *ls;
    int nls, port;
    int keep_listeners;           /* hot restart: never close listeners */
    kino_tls_ctx *tls;            /* shared by the TLS listeners (or NULL) */
    int nio;
    kino_io *io;
    int started;
    uint64_t max_conns;
    int64_t header_ms, keepalive_ms, body_ms, queue_ms, request_ms;

    /* the ready queue: the shared FIFO, and with lanes each waiter's own */
    pthread_mutex_t mu;
    klist ready;
    long nready;
    klist sleepers;
    klist lanes;                  /* waiters by lane_link: a ring, rotated
                                     so that lanes are filled in turn */
    _Atomic long laned;           /* requests in all lanes (written under mu) */
    int stopped;

    _Atomic int draining, aborting, stopping, io_gone;
    /* Once io_gone is set no thread owns the timer lists: workers closing
     * the connections they hand back, and kino_server_stop closing what
     * the I/O threads held, unlink them under this lock instead. */
    pthread_mutex_t gone_mu;
    _Atomic int listeners;        /* I/O threads still holding the listener */
    pthread_cond_t unlistened;    /* (with mu) listeners reached 0 */
    _Atomic int paused;           /* I/O threads not accepting (cap) */
    _Atomic int nwaiters;         /* live waiters: the workers */

    _Atomic uint64_t accepted, conns, served, queued, in_flight, rejected,
        timeouts, errors, hijacked;
    _Atomic uint64_t queue_wait[KINO_WAIT_BUCKETS];
    _Atomic uint64_t queue_wait_sum_ms, respawns;
    _Atomic uint64_t pool[POOL_FIELDS]; /* kino_pool_stats, field by field */
    _Atomic uint64_t handed;      /* bytes in c->out of every connection */
    _Atomic int batched;          /* requests taken in batches, not begun:
                                     raised under mu, lowered by claims */
    klist waiters;                /* every live waiter (mutex) */
};

/* ================================================================== */
/* 6. Transport                                                       */
/* ================================================================== */

/* Every byte of a connection goes through these, so TLS is one branch
 * here and nowhere else: plain sockets, or kino_tls.c when the
 * connection is HTTPS (compiled only with KINO_TLS). They keep the shape
 * of recv/send: a count, or -1 with errno (EAGAIN: try again once the
 * socket is ready for conn_wants()). */

#define KINO_TLS_GATHER 16384 /* one TLS record of plaintext */

static inline int conn_tls(const kino_conn *c) {
#ifdef KINO_TLS
    return c->tls != NULL;
#else
    (void)c;
    return 0;
#endif
}

static inline ssize_t conn_recv(kino_conn *c, void *buf, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_read(c->tls, buf, n);
#endif
    return recv(c->fd, buf, n, 0);
}

static inline ssize_t conn_send(kino_conn *c, const void *buf, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_write(c->tls, buf, n);
#endif
    return send(c->fd, buf, n, MSG_NOSIGNAL);
}

/* After a read that returned got of the n bytes asked: may more input
 * be waiting that no edge-triggered event will announce? */
static inline int conn_more(kino_conn *c, ssize_t got, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_more(c->tls);
#endif
    return (size_t)got == n;
}

/* The KINO_WAIT_* events a retry needs after -1/EAGAIN: those asked
 * for, except that TLS may need the other direction (a read that must
 * write, or a write that must read). */
static inline int conn_wants(kino_conn *c, int events) {
#ifdef KINO_TLS
    if (c->tls) return events | kino_tls_want(c->tls);
#endif
    return events;
}

/* Send iov[0..n): one sendmsg, or for TLS one write of up to a record's
 * worth gathered into gather[0..KINO_TLS_GATHER) (a lone large segment
 * goes as it is). A retry after EAGAIN passes the same bytes from the
 * same start (the caller only advances by what went out), as OpenSSL
 * requires. */
static inline ssize_t conn_sendv(kino_conn *c, struct iovec *iov, int n, char *gather) {
#ifdef KINO_TLS
    if (c->tls) {
        if (n <= 0) return 0;
        if (n == 1 || iov[0].iov_len >= KINO_TLS_GATHER)
            return kino_tls_write(c->tls, iov[0].iov_base, iov[0].iov_len);
        size_t at = 0;
        for (int i = 0; i < n && at < KINO_TLS_GATHER; i++) {
            size_t k = iov[i].iov_len < KINO_TLS_GATHER - at ? iov[i].iov_len : KINO_TLS_GATHER - at;
            memcpy(gather + at, iov[i].iov_base, k);
            at += k;
        }
        return kino_tls_write(c->tls, gather, at);
    }
#endif
    (void)gather;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    return sendmsg(c->fd, &msg, MSG_NOSIGNAL);
}

/* Up to n bytes of file fd from *off (advanced by what went out):
 * sendfile(2), or over TLS kTLS's sendfile or a read into buf and a
 * write. */
static inline ssize_t conn_sendfile(kino_conn *c, int fd, uint64_t *off, size_t n, char *buf) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_sendfile(c->tls, fd, off, n, buf, KINO_TLS_GATHER);
#endif
    (void)buf;
    return send_file(c->fd, fd, off, n);
}

/* The connection is closing: over TLS, say so (close_notify) first. */
static inline void conn_close_notify(kino_conn *c) {
#ifdef KINO_TLS
    if (c->tls) kino_tls_close(c->tls);
#endif
    (void)c;
}

static inline void conn_tls_free(kino_conn *c) {
#ifdef KINO_TLS
    kino_tls_free(c->tls);
    c->tls = NULL;
#endif
    (void)c;
}

/* ================================================================== */
/* 7. Across files                                                    */
/* ================================================================== */

/* The Date line (kino.c section "date" writes it once a second; the
 * response writers copy it). */
#define DATE_LINE_LEN 37
#define DATE_WORDS 5 /* 40 bytes: the line and its NUL */
extern _Atomic uint64_t kino_date_slots[4][DATE_WORDS] KINO_HIDDEN;
extern _Atomic unsigned kino_date_cur KINO_HIDDEN;

/* Copy the current Date line (DATE_LINE_LEN bytes and a NUL) into buf. */
static inline void date_copy(char buf[DATE_WORDS * 8]) {
    unsigned cur = atomic_load_explicit(&kino_date_cur, memory_order_acquire);
    for (int i = 0; i < DATE_WORDS; i++) {
        uint64_t word = atomic_load_explicit(&kino_date_slots[cur][i], memory_order_relaxed);
        memcpy(buf + 8 * i, &word, 8);
    }
}

/* Wake an I/O thread blocked in its poller, at most one syscall per
 * sleep however many threads ask. */
static inline void wake_io(kino_io *io) {
    if (atomic_load(&io->sleeping) && !atomic_exchange(&io->wake_sent, 1))
        poller_wake(&io->p);
}

/* The worker is done with its request. */
static inline void waiter_end(kino_waiter *w, int served) {
    int64_t now = mono_ms();
    int64_t taken = atomic_load_explicit(&w->taken_at, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->busy_ms, (uint64_t)(now - taken), memory_order_relaxed);
    if (served) atomic_fetch_add_explicit(&w->served, 1, memory_order_relaxed);
    atomic_store_explicit(&w->taken_at, now, memory_order_relaxed); /* a pipelined next one starts */
}

/* kino.c */
void kino_conn_destroy(kino_server *s, kino_io *io, kino_conn *c) KINO_HIDDEN;
int kino_conn_prepare(kino_server *s, kino_conn *c) KINO_HIDDEN;
size_t kino_canned(char *buf, size_t cap, int status) KINO_HIDDEN;
void kino_access_capture(kino_waiter *w, kino_conn *c) KINO_HIDDEN;
void kino_access_taken(kino_conn *c, kino_waiter *w) KINO_HIDDEN;
int kino_ready_push(kino_server *s, kino_conn *c) KINO_HIDDEN;
kino_buf *kino_buf_get(kino_io *io) KINO_HIDDEN;
void kino_buf_put(kino_io *io, kino_buf *b) KINO_HIDDEN;
int64_t kino_now_us(void) KINO_HIDDEN;
/* kino_stream.c: HTTP/2 on the I/O thread ... */
int kino_h2conn_start(kino_io *io, kino_conn *c) KINO_HIDDEN;
void kino_h2conn_event(kino_io *io, kino_conn *c, int mask) KINO_HIDDEN;
void kino_h2conn_returned(kino_io *io, kino_conn *c) KINO_HIDDEN;
void kino_h2conn_destroyed(kino_conn *c) KINO_HIDDEN;
void kino_h2conn_dropped(kino_conn *c) KINO_HIDDEN;
void kino_h2conn_drain(kino_io *io) KINO_HIDDEN;
int kino_h2conn_timeout(kino_io *io, kino_conn *c) KINO_HIDDEN;
void kino_h2conn_flush_returned(kino_io *io) KINO_HIDDEN;
/* ... and the worker API on a stream (c->st set) */
int kino_stream_wait(kino_conn *c, kino_waiter *w, int events) KINO_HIDDEN;
long kino_stream_body_read(kino_conn *c, kino_waiter *w, char *buf, size_t n) KINO_HIDDEN;
int kino_stream_resp_begin(kino_conn *c, kino_waiter *w, int status) KINO_HIDDEN;
int kino_stream_resp_header(kino_conn *c, kino_waiter *w, const char *name, size_t nlen,
                            const char *val, size_t vlen) KINO_HIDDEN;
int kino_stream_resp_end_head(kino_conn *c, kino_waiter *w, int body, uint64_t length) KINO_HIDDEN;
int kino_stream_resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n) KINO_HIDDEN;
int kino_stream_resp_flush(kino_conn *c, kino_waiter *w) KINO_HIDDEN;
int kino_stream_resp_end(kino_conn *c, kino_waiter *w) KINO_HIDDEN;
int kino_stream_resp_sendfile(kino_conn *c, kino_waiter *w, int fd, uint64_t *offset,
                              uint64_t *left) KINO_HIDDEN;
int kino_stream_resp_error(kino_conn *c, kino_waiter *w, int status) KINO_HIDDEN;
int kino_stream_info_begin(kino_conn *c, kino_waiter *w, int status) KINO_HIDDEN;
int kino_stream_info_end(kino_conn *c, kino_waiter *w) KINO_HIDDEN;
kino_conn *kino_stream_next(kino_conn *c, kino_waiter *w) KINO_HIDDEN;
int kino_stream_tls(kino_conn *c) KINO_HIDDEN;
char *kino_stream_peer_cert(kino_conn *c, size_t *len) KINO_HIDDEN;
int kino_stream_resp_trailer(kino_conn *c, kino_waiter *w, const char *name, size_t nlen,
                             const char *val, size_t vlen) KINO_HIDDEN;
/* kino_worker.c */
void kino_release(kino_conn *c, int next) KINO_HIDDEN;
int kino_send_continue(kino_conn *c) KINO_HIDDEN;

#endif
