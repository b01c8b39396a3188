/*
 * kino.c -- the Kino engine. kino.h describes the API and the threading
 * model. This file has no Ruby in it and reads top to bottom:
 *
 *    1. platform      poller (epoll | kqueue), wake fds, accept, clocks
 *    2. lists         the intrusive circular list (the "ring queue")
 *    3. parser        request head, framing rules, chunked decoder,
 *                     PROXY protocol header
 *    4. structures    server, I/O thread, connection, waiter
 *    5. transport     a connection's bytes: plain, or through kino_tls.c
 *    6. buffers       per-connection input buffers and their pool
 *    7. date          the cached Date header
 *    8. ready queue   bounded hand-off from I/O threads to workers
 *    9. timers        per-I/O-thread deadline lists
 *   10. connections   the I/O thread's side of a connection
 *   11. I/O thread    the event loop
 *   12. workers       request body, response writer, hand-back
 *   13. server        create, start, drain, abort, stop, stats
 *   14. access log    one line per request, and notes on canned answers
 *
 * Logging itself (the ring, the flusher) is kino_log.c.
 */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

/* ================================================================== */
/* 1. Platform                                                        */
/* ================================================================== */

#define EV_IN 1
#define EV_OUT 2
#define EV_HUP 4 /* the peer closed (at least) its writing side */

/* The poller backend: epoll on Linux, kqueue on the BSDs and macOS.
 * What is checked where: the epoll backend runs every test here. The
 * kqueue backend is compiled on every `make test` (make check-kqueue:
 * -fsyntax-only with -DKINO_USE_KQUEUE, against test/compat's BSD
 * declarations), which proves it builds, not that it works. Running it
 * on Linux through libkqueue (Debian's libkqueue-dev 2.3.1, in sid and
 * experimental only) does not get that far: libkqueue there cannot
 * watch one socket for both EVFILT_READ and EVFILT_WRITE (the second
 * registration fails), which poller_watch needs. That run did find the
 * wake trigger dropping its udata (fixed in poller_wake). */
#if !defined(KINO_USE_EPOLL) && !defined(KINO_USE_KQUEUE)
#if defined(__linux__)
#define KINO_USE_EPOLL 1
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || \
    defined(__OpenBSD__) || defined(__DragonFly__)
#define KINO_USE_KQUEUE 1
#endif
#endif

/* The other platform features, decided here and only here: the code
 * below tests these macros, never an OS name. Each may be preset (-D),
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
static int poller_open(poller *p, void *data) {
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

static void poller_close(poller *p) {
    close(p->wakefd);
    close(p->fd);
}

/* Watch a connection for input and output, edge-triggered, for its whole
 * life: no epoll_ctl per request. Closing the fd removes it. */
static int poller_watch(poller *p, int fd, void *data) {
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                            .data.ptr = data};
    return epoll_ctl(p->fd, EPOLL_CTL_ADD, fd, &e);
}

/* Stop watching a connection that stays open (a hijack). Safe from any
 * thread; a wait already under way may still report it once. */
static int poller_unwatch(poller *p, int fd) {
    struct epoll_event e = {0}; /* kernels before 2.6.9 want one */
    return epoll_ctl(p->fd, EPOLL_CTL_DEL, fd, &e);
}

/* Start (on) or stop watching a listener, level-triggered. Several I/O
 * threads share one listener; EPOLLEXCLUSIVE wakes only one of them --
 * always the same one while it keeps up, so a listener shared with other
 * processes (p->shared) wakes them all instead: each takes what its idle
 * workers can serve (io_accept). */
static int poller_listen(poller *p, int fd, void *data, int on) {
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = data};
#ifdef EPOLLEXCLUSIVE
    if (!p->shared) e.events |= EPOLLEXCLUSIVE;
#endif
    return epoll_ctl(p->fd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &e);
}

/* Wait up to timeout_ms (-1: forever) for events. Returns their count,
 * 0 on timeout or a signal, -1 with errno when the poller itself failed
 * (EBADF, EINVAL...): retrying would only fail again, at full speed. */
static int poller_wait(poller *p, int timeout_ms) {
    int n = epoll_wait(p->fd, p->ev, KINO_EVENTS, timeout_ms);
    return n < 0 && errno == EINTR ? 0 : n;
}

/* The i-th event of the last wait: its data, and EV_IN/EV_OUT. Errors and
 * hang-ups count as both, so the next read or write finds them. */
static void *poller_event(poller *p, int i, int *mask) {
    uint32_t e = p->ev[i].events;
    *mask = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) *mask |= EV_IN;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) *mask |= EV_OUT;
    if (e & (EPOLLRDHUP | EPOLLHUP)) *mask |= EV_HUP;
    return p->ev[i].data.ptr;
}

static void poller_wake(poller *p) {
    uint64_t one = 1;
    ssize_t r = write(p->wakefd, &one, sizeof one);
    (void)r;
}

static void poller_wake_ack(poller *p) {
    uint64_t n;
    ssize_t r = read(p->wakefd, &n, sizeof n);
    (void)r;
}

/* A waiter's private wake channel for poll(2): one eventfd. */
static int wakefd_open(int fds[2]) {
    fds[0] = fds[1] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fds[0] < 0 ? -1 : 0;
}

static void wakefd_close(int fds[2]) { close(fds[0]); }

static void wakefd_signal(int fds[2]) {
    uint64_t one = 1;
    ssize_t r = write(fds[1], &one, sizeof one);
    (void)r;
}

/* Reset the channel: one read empties an eventfd's counter. */
static void wakefd_drain(int fds[2]) {
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

static int poller_open(poller *p, void *data) {
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

static void poller_close(poller *p) { close(p->fd); }

static int poller_watch(poller *p, int fd, void *data) {
    struct kevent ch[2];
    EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, data);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, data);
    return kevent(p->fd, ch, 2, NULL, 0, NULL);
}

static int poller_unwatch(poller *p, int fd) {
    struct kevent ch[2];
    EV_SET(&ch[0], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    EV_SET(&ch[1], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    return kevent(p->fd, ch, 2, NULL, 0, NULL);
}

static int poller_listen(poller *p, int fd, void *data, int on) {
    struct kevent ch;
    EV_SET(&ch, fd, EVFILT_READ, on ? EV_ADD : EV_DELETE, 0, 0, data);
    return kevent(p->fd, &ch, 1, NULL, 0, NULL);
}

static int poller_wait(poller *p, int timeout_ms) {
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
    int n = kevent(p->fd, NULL, 0, p->ev, KINO_EVENTS, timeout_ms < 0 ? NULL : &ts);
    return n < 0 && errno == EINTR ? 0 : n;
}

static void *poller_event(poller *p, int i, int *mask) {
    struct kevent *e = &p->ev[i];
    *mask = e->filter == EVFILT_WRITE ? EV_OUT : EV_IN;
    if (e->flags & (EV_EOF | EV_ERROR)) *mask = EV_IN | EV_OUT | EV_HUP;
    return (void *)e->udata;
}

/* Every change to a kevent stores its udata: the trigger must repeat it,
 * or the wake event comes back without the data that identifies it. */
static void poller_wake(poller *p) {
    struct kevent ch;
    EV_SET(&ch, 0, EVFILT_USER, 0, NOTE_TRIGGER, 0, p->wake_data);
    kevent(p->fd, &ch, 1, NULL, 0, NULL);
}

static void poller_wake_ack(poller *p) { (void)p; /* EV_CLEAR resets it */ }

/* A waiter's private wake channel for poll(2): a pipe. */
static int wakefd_open(int fds[2]) {
    if (pipe(fds) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static void wakefd_close(int fds[2]) {
    close(fds[0]);
    close(fds[1]);
}

static void wakefd_signal(int fds[2]) {
    char one = 1;
    ssize_t r = write(fds[1], &one, 1);
    (void)r;
}

/* Reset the channel: read the pipe empty (several signals may be in it). */
static void wakefd_drain(int fds[2]) {
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
static ssize_t send_file(int s, int fd, uint64_t *off, size_t n) {
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
static int accept_nb(int lfd, struct sockaddr_storage *ss) {
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

/* Milliseconds on a monotonic clock. The coarse clock (Linux) is read
 * from the vDSO without a syscall and is precise to a few ms: plenty for
 * timeouts and statistics. */
#ifdef CLOCK_MONOTONIC_COARSE
#define KINO_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define KINO_CLOCK CLOCK_MONOTONIC
#endif

static int64_t mono_ms(void) {
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
static void block_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

/* ================================================================== */
/* 2. Lists                                                           */
/* ================================================================== */

/* Intrusive circular doubly linked list with a sentinel head. A detached
 * node points to itself, so removing twice is harmless. */
typedef struct klist {
    struct klist *next, *prev;
} klist;

#define KLIST_ENTRY(ptr, type, field) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, field)))

static void klist_init(klist *h) { h->next = h->prev = h; }
static int klist_empty(const klist *h) { return h->next == h; }

static void klist_push(klist *h, klist *n) {
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void klist_remove(klist *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* ================================================================== */
/* 3. Parser                                                          */
/* ================================================================== */

/* Byte classes: 1 tchar (RFC 9110 token), 2 allowed in a field value
 * (VCHAR, obs-text, SP, HTAB), 4 allowed in a request-target, 8 allowed
 * in a Host name (reg-name without ','). */
static const unsigned char ctab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 15, 6, 3, 15, 15, 15, 15, 14, 14, 15, 15, 6, 15, 15, 6,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 14, 6, 14, 6, 6,
    6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 7, 15,
    7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 7, 6, 15, 0,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
};

#define IS_TCHAR(c) (ctab[(unsigned char)(c)] & 1)
#define IS_VALUE(c) (ctab[(unsigned char)(c)] & 2)
#define IS_TARGET(c) (ctab[(unsigned char)(c)] & 4)
#define IS_HOST(c) (ctab[(unsigned char)(c)] & 8)
#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)

#define KINO_MAX_LEADING_CRLF 8 /* empty lines allowed before a request */

static kino_span span(const char *a, const char *b) {
    kino_span s = {a, (size_t)(b - a)};
    return s;
}

/* Case-insensitive comparison of a span with a lowercase literal. */
static int span_is(kino_span s, const char *lit) {
    size_t n = strlen(lit);
    if (s.n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != (unsigned char)lit[i]) return 0;
    }
    return 1;
}

/* Length of the run of "\r\n" pairs that may precede a request line. */
static size_t leading_crlf(const char *buf, size_t len) {
    size_t i = 0;
    while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') i += 2;
    return i;
}

/* Whatever way the bytes of a head are cut into reads, kino_head_end gives
 * the same verdict: it looks only at bytes inside the current limit window
 * (the request line's until its LF, then the whole head's), reports the
 * first bare CR or LF in position order, and reports a limit only once the
 * window is full without the line or head ending in it. So a bare CR past
 * the 64 KiB mark is a 431, never a 400, however the head arrives; the
 * fuzz_head harness checks exactly this. */
long kino_head_end(const char *buf, size_t len, size_t *scanned, int *status) {
    size_t lead = leading_crlf(buf, len > 2 * KINO_MAX_LEADING_CRLF + 2
                                        ? 2 * KINO_MAX_LEADING_CRLF + 2 : len);
    size_t i = *scanned > lead ? *scanned : lead;
    size_t line_stop = lead + KINO_MAX_REQUEST_LINE + 2; /* the request line's LF comes before */
    if (lead > 2 * KINO_MAX_LEADING_CRLF) {
        *status = 400;
        return KINO_ERROR;
    }
    int in_line = i < line_stop && !memchr(buf + lead, '\n', i - lead);
    for (;;) {
        size_t stop = in_line && line_stop < KINO_MAX_HEAD ? line_stop : KINO_MAX_HEAD;
        size_t end = len < stop ? len : stop;
        const char *hit = i < end ? memchr(buf + i, '\n', end - i) : NULL;
        size_t upto = hit ? (size_t)(hit - buf) : end;
        const char *cr = i < upto ? memchr(buf + i, '\r', upto - i) : NULL;
        if (cr && (size_t)(cr - buf) + 1 < upto) {
            *status = 400; /* bare CR: the next byte is not LF */
            return KINO_ERROR;
        }
        if (!hit) {
            if (len >= stop) { /* the window is full: the line or head is too long */
                *status = in_line && stop == line_stop ? 414 : 431;
                return KINO_ERROR;
            }
            *scanned = cr ? (size_t)(cr - buf) : len; /* keep a trailing CR for the next call */
            return 0;
        }
        i = (size_t)(hit - buf);
        if (i == 0 || buf[i - 1] != '\r') {
            *status = 400; /* bare LF */
            return KINO_ERROR;
        }
        if (i >= lead + 3 && buf[i - 2] == '\n') { /* "\r\n\r\n", i + 1 <= KINO_MAX_HEAD */
            *scanned = i + 1;
            return (long)(i + 1);
        }
        in_line = 0;
        i++;
    }
}

static int fail(kino_head *h, int status) {
    h->status = status;
    return KINO_ERROR;
}

/* "HTTP/" has been matched; read DIGIT "." DIGIT. Major versions other
 * than 1 are well-formed but unsupported (505); the rest is 400. */
static int parse_version(const char **pp, const char *end, kino_head *h) {
    const char *p = *pp, *d = p;
    while (p < end && IS_DIGIT(*p)) p++;
    if (p == d) return fail(h, 400);
    if (p - d != 1 || *d != '1') return fail(h, *d == '0' && p - d > 1 ? 400 : 505);
    if (p + 2 > end || p[0] != '.' || !IS_DIGIT(p[1])) return fail(h, 400);
    if (p + 2 < end && IS_DIGIT(p[2])) return fail(h, 400);
    h->minor = p[1] == '0' ? 0 : 1; /* HTTP/1.2+ is treated as 1.1 */
    *pp = p + 2;
    return KINO_OK;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), with a non-empty
 * uri-host: an http URI has one (RFC 9110 4.2.1), so "" and ":80" are
 * refused, as nginx refuses them (doc/security.md). */
static int valid_host(kino_span v) {
    const char *p = v.p, *e = v.p + v.n;
    if (p == e || *p == ':') return 0;
    if (*p == '[') {
        const char *q = memchr(p, ']', v.n);
        if (!q || q == p + 1) return 0;
        for (const char *r = p + 1; r < q; r++)
            if (!(IS_DIGIT(*r) || (unsigned)((*r | 32) - 'a') < 6u || *r == ':' || *r == '.')) return 0;
        p = q + 1;
    } else {
        while (p < e && *p != ':') {
            if (!IS_HOST(*p)) return 0;
            p++;
        }
    }
    if (p == e) return 1;
    if (*p++ != ':' || e - p > 5) return 0;
    for (; p < e; p++)
        if (!IS_DIGIT(*p)) return 0;
    return 1;
}

/* Content-Length = 1*DIGIT, exactly one: a list ("5, 5") is refused,
 * as nginx refuses it, although RFC 9110 8.6 would let a recipient
 * fold equal values (doc/security.md). Returns 0 and *out, or -1. */
static int parse_length(kino_span v, int64_t *out) {
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

/* Transfer-Encoding: the only coding accepted is a single "chunked".
 * Returns 0 when chunked is final and alone, else the status to send:
 * 501 for an unknown coding, 400 for a malformed or unframeable list. */
static int parse_te(kino_span v, int *chunked) {
    const char *p = v.p, *e = v.p + v.n;
    int unknown = 0, any = 0;
    while (p < e) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *t = p;
        while (p < e && IS_TCHAR(*p)) p++;
        if (p == t) {
            if (p < e) return 400;
            break;
        }
        kino_span tok = span(t, p);
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        if (p < e && *p != ',') return 400; /* parameters, or junk */
        any = 1;
        if (*chunked) return 400; /* something after chunked */
        if (span_is(tok, "chunked")) *chunked = 1;
        else unknown = 1;
    }
    if (!any) return 400;
    if (unknown) return *chunked ? 501 : 400;
    return 0;
}

/* Does a comma-separated header value hold the token lit? */
static int has_token(kino_span v, const char *lit) {
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

/* Split the request-target into path and query, accepting origin-form,
 * absolute-form (http/https, whose authority becomes the host) and
 * OPTIONS *. CONNECT's authority-form is not served (501). */
static int parse_target(kino_head *h) {
    const char *p = h->target.p, *e = p + h->target.n;
    if (h->method.n == 7 && memcmp(h->method.p, "CONNECT", 7) == 0) return fail(h, 501);
    if (*p == '*' && h->target.n == 1) {
        if (!(h->method.n == 7 && memcmp(h->method.p, "OPTIONS", 7) == 0)) return fail(h, 400);
        h->path = h->target;
        return KINO_OK;
    }
    if (*p != '/') {
        size_t skip = 0;
        if (h->target.n > 7 && span_is(span(p, p + 7), "http://")) skip = 7;
        else if (h->target.n > 8 && span_is(span(p, p + 8), "https://")) skip = 8;
        if (!skip) return fail(h, 400);
        const char *a = p + skip, *q = a;
        while (q < e && *q != '/' && *q != '?') q++;
        kino_span auth = span(a, q);
        if (auth.n == 0 || memchr(a, '@', auth.n) || !valid_host(auth)) return fail(h, 400);
        h->host = auth;
        p = q;
        if (p == e || *p == '?') {
            static const char slash[] = "/";
            h->path = span(slash, slash + 1);
            if (p < e) h->query = span(p + 1, e);
            return KINO_OK;
        }
    }
    const char *q = memchr(p, '?', (size_t)(e - p));
    h->path = span(p, q ? q : e);
    if (q) h->query = span(q + 1, e);
    return KINO_OK;
}

/* The semantic rules of RFC 9112 over the parsed fields: Host, framing,
 * persistence, expectations. */
static int analyse(kino_head *h) {
    int hosts = 0, cl_seen = 0, te_seen = 0, chunked = 0, close = 0, keep = 0;
    kino_span host = {0};
    int64_t cl = -1;
    for (size_t i = 0; i < h->nheaders; i++) {
        kino_span n = h->headers[i].name, v = h->headers[i].value;
        switch (n.n) {
        case 4:
            if (span_is(n, "host")) {
                hosts++;
                host = v;
            }
            break;
        case 6:
            if (span_is(n, "expect") && span_is(v, "100-continue") && h->minor == 1)
                h->expect_continue = 1;
            break;
        case 10:
            if (span_is(n, "connection")) {
                if (has_token(v, "close")) close = 1;
                if (has_token(v, "keep-alive")) keep = 1;
            }
            break;
        case 14:
            if (span_is(n, "content-length")) {
                /* a second field is refused even when equal (nginx) */
                if (cl_seen++ || parse_length(v, &cl) < 0) return fail(h, 400);
            }
            break;
        case 17:
            if (span_is(n, "transfer-encoding")) {
                int st;
                te_seen = 1;
                if ((st = parse_te(v, &chunked)) != 0) return fail(h, st);
            }
            break;
        }
    }
    if (hosts > 1 || (hosts == 0 && h->minor == 1)) return fail(h, 400);
    if (hosts == 1 && !valid_host(host)) return fail(h, 400);
    if (te_seen && (cl_seen || h->minor == 0)) return fail(h, 400);
    h->host = host;
    if (parse_target(h) != KINO_OK) return KINO_ERROR;
    h->chunked = (unsigned)chunked;
    h->content_length = cl;
    h->keep_alive = h->minor == 1 ? !close : (keep && !close);
    h->is_head = h->method.n == 4 && memcmp(h->method.p, "HEAD", 4) == 0;
    if (!h->chunked && cl <= 0) h->expect_continue = 0;
    return KINO_OK;
}

int kino_parse_head(const char *buf, size_t len, kino_head *h, kino_header *hdrs,
                    size_t max) {
    const char *p = buf, *end = buf + len, *line, *t;
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    h->headers = hdrs;
    p += leading_crlf(buf, len);
    line = p;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    while (p < end && IS_TCHAR(*p)) p++;
    if (p == line || p >= end || *p != ' ') return fail(h, 400);
    h->method = span(line, p++);
    t = p;
    while (p < end && IS_TARGET(*p)) p++;
    if (p == t || p >= end || *p != ' ') return fail(h, 400);
    h->target = span(t, p++);
    if (end - p < 5 || memcmp(p, "HTTP/", 5) != 0) return fail(h, 400);
    p += 5;
    if (parse_version(&p, end, h) != KINO_OK) return KINO_ERROR;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return fail(h, 400);
    if (p - line > KINO_MAX_REQUEST_LINE) return fail(h, 414);
    p += 2;

    /* field-line = field-name ":" OWS field-value OWS CRLF */
    for (;;) {
        const char *n, *v, *ve;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') break;
        if (p >= end || *p == ' ' || *p == '\t') return fail(h, 400); /* obs-fold */
        n = p;
        while (p < end && IS_TCHAR(*p)) p++;
        if (p == n || p >= end || *p != ':') return fail(h, 400);
        kino_span name = span(n, p++);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        v = p;
        while (p < end && IS_VALUE(*p)) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return fail(h, 400);
        ve = p;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (h->nheaders == max) return fail(h, 431);
        hdrs[h->nheaders].name = name;
        hdrs[h->nheaders].value = span(v, ve);
        h->nheaders++;
        p += 2;
    }
    if (len > KINO_MAX_HEAD) return fail(h, 431);
    return analyse(h);
}

long kino_parse_request(const char *buf, size_t len, kino_head *h, kino_header *hdrs,
                        size_t max) {
    size_t scanned = 0;
    int status = 0;
    long n = kino_head_end(buf, len, &scanned, &status);
    if (n < 0) {
        memset(h, 0, sizeof *h);
        h->status = status;
        return KINO_ERROR;
    }
    if (n == 0) return KINO_INCOMPLETE;
    if (kino_parse_head(buf, (size_t)n, h, hdrs, max) != KINO_OK) return KINO_ERROR;
    return n;
}

/* Chunked decoder states. */
enum {
    CH_SIZE, CH_SIZE_WS, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
    CH_TRAILER_START, CH_TRAILER, CH_TRAILER_LF, CH_END_LF, CH_DONE
};

static int hexval(unsigned char c) {
    if (IS_DIGIT(c)) return c - '0';
    c |= 32;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

int kino_chunked_step(kino_chunked *d, const char *src, size_t srclen, size_t *used,
                      char *dst, size_t dstcap, size_t *out) {
    size_t i = 0, o = 0;
    int r = KINO_CHUNK_MORE;
    while (i < srclen && d->state != CH_DONE) {
        unsigned char c = (unsigned char)src[i];
        switch (d->state) {
        case CH_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                /* a chunk of 2^63 bytes or more is no body anyone sends: 400 */
                if (d->left > ((uint64_t)INT64_MAX >> 4) || ++d->line > KINO_MAX_CHUNK_EXT) goto bad;
                d->left = d->left * 16 + (uint64_t)v;
                i++;
            } else if (d->line == 0) {
                goto bad; /* chunk-size needs a digit */
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = c == ';' ? CH_EXT : CH_SIZE_WS;
                i++;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
                i++;
            } else {
                goto bad;
            }
            break;
        }
        case CH_SIZE_WS: /* BWS is allowed only before ';' */
            if (c == ';') d->state = CH_EXT;
            else if (c != ' ' && c != '\t') goto bad;
            if (++d->line > KINO_MAX_CHUNK_EXT) goto bad;
            i++;
            break;
        case CH_EXT: /* chunk extensions are ignored, but bounded */
            if (c == '\r') d->state = CH_SIZE_LF;
            else if (!IS_VALUE(c) || ++d->line > KINO_MAX_CHUNK_EXT) goto bad;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') goto bad;
            d->line = 0;
            d->state = d->left ? CH_DATA : CH_TRAILER_START;
            i++;
            break;
        case CH_DATA: {
            size_t n = srclen - i;
            if (o == dstcap) {
                r = KINO_CHUNK_FULL;
                goto done;
            }
            if (n > dstcap - o) n = dstcap - o;
            if (n > d->left) n = (size_t)d->left;
            if (dst) memmove(dst + o, src + i, n);
            o += n;
            i += n;
            d->left -= n;
            if (!d->left) d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r') goto bad;
            d->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n') goto bad;
            d->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                d->state = CH_END_LF;
                i++;
            } else {
                d->state = CH_TRAILER; /* a trailer field: discarded */
            }
            break;
        case CH_TRAILER:
            if (c == '\r') d->state = CH_TRAILER_LF;
            else if ((!IS_VALUE(c) && c != ':') || ++d->trailer > KINO_MAX_TRAILER) goto bad;
            i++;
            break;
        case CH_TRAILER_LF:
        case CH_END_LF:
            if (c != '\n') goto bad;
            d->state = d->state == CH_END_LF ? CH_DONE : CH_TRAILER_START;
            i++;
            break;
        }
    }
done:
    *used = i;
    *out = o;
    return d->state == CH_DONE ? KINO_CHUNK_DONE : r;
bad:
    *used = i;
    *out = o;
    return KINO_ERROR;
}

/* PROXY protocol header. A v1 header is one text line, a v2 header a
 * binary block; either is parsed only once complete, so a header split
 * across reads gives the same verdict as one read at once. Bytes that
 * cannot start a header are refused as soon as they arrive. */
static const char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n',
                                      'Q', 'U', 'I', 'T', '\n'};

/* A decimal port: 1 to 5 digits, no leading zero, at most 65535. */
static int proxy_port(const char *p, size_t n) {
    int v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0')) return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v > 65535 ? -1 : v;
}

/* The next space-delimited field of line[*i..n): its span, *i past the
 * single space that ends it (the last field ends the line). */
static kino_span proxy_field(const char *line, size_t n, size_t *i, int last) {
    kino_span f = {line + *i, 0};
    while (*i < n && line[*i] != ' ') (*i)++, f.n++;
    if (!last) {
        if (*i >= n) f.n = 0; /* a missing field */
        else (*i)++;
    } else if (*i != n) {
        f.n = 0; /* more after the last field */
    }
    return f;
}

/* An address of the family (AF_INET, AF_INET6), in canonical text. */
static int proxy_addr(kino_span a, int family, char *out, size_t cap) {
    char tmp[64];
    unsigned char bin[16];
    if (a.n == 0 || a.n >= sizeof tmp) return -1;
    memcpy(tmp, a.p, a.n);
    tmp[a.n] = 0;
    if (inet_pton(family, tmp, bin) != 1) return -1;
    return inet_ntop(family, bin, out, (socklen_t)cap) ? 0 : -1;
}

/* v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN...\r\n",
 * at most 107 bytes. */
static long proxy_v1(const char *buf, size_t len, kino_proxy *out) {
    size_t max = len < 107 ? len : 107, end = 0;
    for (size_t i = 0; i < max; i++) {
        if (buf[i] == '\n') return KINO_ERROR; /* LF without CR */
        if (buf[i] == '\r') {
            if (i + 1 >= 107) return KINO_ERROR; /* no room for the LF */
            if (i + 1 == len) return 0;
            if (buf[i + 1] != '\n') return KINO_ERROR;
            end = i;
            break;
        }
    }
    if (!end) return len >= 107 ? KINO_ERROR : 0;
    size_t i = 6; /* past "PROXY " */
    kino_span proto = proxy_field(buf, end, &i, 0);
    if (proto.n == 0 && end >= 13 && memcmp(buf + 6, "UNKNOWN", 7) == 0 &&
        (end == 13 || buf[13] == ' ')) {
        out->local = 1; /* whatever follows UNKNOWN is ignored */
        return (long)end + 2;
    }
    int family;
    if (proto.n == 4 && memcmp(proto.p, "TCP4", 4) == 0) family = AF_INET;
    else if (proto.n == 4 && memcmp(proto.p, "TCP6", 4) == 0) family = AF_INET6;
    else if (proto.n == 7 && memcmp(proto.p, "UNKNOWN", 7) == 0) {
        out->local = 1;
        return (long)end + 2;
    } else return KINO_ERROR;
    kino_span src = proxy_field(buf, end, &i, 0), dst = proxy_field(buf, end, &i, 0);
    kino_span sport = proxy_field(buf, end, &i, 0), dport = proxy_field(buf, end, &i, 1);
    char dtext[48];
    int port = proxy_port(sport.p, sport.n);
    if (port < 0 || proxy_port(dport.p, dport.n) < 0 ||
        proxy_addr(src, family, out->addr, sizeof out->addr) < 0 ||
        proxy_addr(dst, family, dtext, sizeof dtext) < 0)
        return KINO_ERROR;
    out->local = 0;
    out->port = port;
    return (long)end + 2;
}

/* v2: the signature, version 2 with command LOCAL or PROXY, a family and
 * transport, a big-endian length, addresses, then TLVs (skipped). */
static long proxy_v2(const unsigned char *b, size_t len, kino_proxy *out) {
    if (len < 16) return 0;
    if ((b[12] >> 4) != 2 || (b[12] & 15) > 1) return KINO_ERROR;
    size_t body = (size_t)b[14] << 8 | b[15], total = 16 + body;
    unsigned fam = b[13];
    if (total > KINO_PROXY_MAX) return KINO_ERROR;
    /* families: UNSPEC, TCP and UDP over IPv4 / IPv6, unix stream / dgram */
    static const unsigned char known[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
    if (!memchr(known, (int)fam, sizeof known)) return KINO_ERROR;
    size_t need = (fam >> 4) == 1 ? 12 : (fam >> 4) == 2 ? 36 : (fam >> 4) == 3 ? 216 : 0;
    if (body < need) return KINO_ERROR;
    if (len < total) return 0;
    if ((b[12] & 15) == 0 || fam == 0x00 || (fam >> 4) == 3) { /* LOCAL, UNSPEC, unix */
        out->local = 1;
        return (long)total;
    }
    if ((fam & 15) != 1) return KINO_ERROR; /* a datagram source on a stream */
    const unsigned char *a = b + 16;
    int v4 = (fam >> 4) == 1;
    if (!inet_ntop(v4 ? AF_INET : AF_INET6, a, out->addr, sizeof out->addr)) return KINO_ERROR;
    const unsigned char *ports = a + (v4 ? 8 : 32);
    out->port = ports[0] << 8 | ports[1];
    out->local = 0;
    return (long)total;
}

long kino_proxy_parse(const char *buf, size_t len, kino_proxy *out) {
    size_t n = len < 12 ? len : 12;
    if (len == 0) return 0;
    if (buf[0] == '\r') {
        if (memcmp(buf, proxy_v2_sig, n) != 0) return KINO_ERROR;
        return len < 12 ? 0 : proxy_v2((const unsigned char *)buf, len, out);
    }
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) != 0) return KINO_ERROR;
    return len < 6 ? 0 : proxy_v1(buf, len, out);
}

/* ================================================================== */
/* 4. Structures                                                      */
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
 * that holds it (section 9). Only the I/O thread writes state. */
enum {
    C_IDLE,      /* I/O thread; t_idle: keep-alive, no request begun, no buffer */
    C_READING,   /* I/O thread; t_header: a head is arriving (from accept or its first byte) */
    C_BODY,      /* I/O thread; t_body: head parsed, gathering its body (body_buffered) */
    C_OVERFLOW,  /* I/O thread; t_queue: a complete request waiting for queue room (503 at the deadline) */
    C_AWAY,      /* a worker (queued or taken); t_away with request_timeout, else t_held */
    C_FLUSH,     /* I/O thread; t_flush: finishing a response a worker handed off */
    C_LINGER,    /* I/O thread; t_linger: closing, reading and dropping what the client still sends */
    C_HANDSHAKE, /* I/O thread; t_header: a TLS handshake (kino_tls.c) before the head */
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

struct kino_conn {
    klist qlink;             /* ready queue (under the server mutex) */
    klist tlink;             /* timer list (I/O thread only) */
    kino_conn *rnext;        /* hand-back stack */
    kino_io *io;             /* owning I/O thread */
    int fd;
    kino_tls *tls;           /* HTTPS: its TLS state, from the first byte */
    /* Separate bytes, not bit-fields: the I/O thread writes state and
     * io_pending while a worker writes the rest of the struct. */
    unsigned char state;      /* C_*: the I/O thread's view */
    unsigned char io_pending; /* I/O thread: readiness arrived while away */
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
    int reject;              /* status owed for a body we refused (400, 408,
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
    kino_server *s;
    int worker;              /* worker number, for per-worker stats */
    int64_t taken_at;        /* ms: the current request was taken */
    _Atomic uint64_t served, busy_ms;
    _Atomic int in_flight;
    pthread_cond_t cond;
    int sleeping;            /* on the sleepers list (server mutex) */
    _Atomic int interrupted;
    int wake[2];             /* wakes poll() in kino_wait */
    char *out;               /* response bytes being assembled */
    size_t out_len, out_cap;
    seg segs[KINO_SEGS];
    int nseg, seg_i;         /* segments, and the first one unsent */
    size_t seg_off;          /* bytes of segs[seg_i] already sent */
    size_t pending;          /* bytes in segments not yet sent */
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
    _Atomic int wake_pending;     /* a wake was sent and not yet seen */
    /* Timer lists. t_held has no deadline: requests away with a worker
     * when request_timeout is off, or already answered by a timeout. */
    klist t_header, t_body, t_idle, t_queue, t_away, t_held, t_flush, t_linger;
    _Atomic int parked;           /* t_queue is not empty */
    _Atomic int pending_away;     /* away conns whose io_pending is set */
    kino_buf *pool;
    int npool;
    int listening;
    int paused;                   /* not accepting: connection cap */
    int64_t resume_at;            /* accept paused until (EMFILE) */
    int deferred;                 /* shared listener: last accept left to others */
    int64_t now;
    int drained, aborted;
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

    /* the ready queue */
    pthread_mutex_t mu;
    klist ready;
    long nready;
    klist sleepers;
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
    _Atomic uint64_t handed;      /* bytes in c->out of every connection */
    klist waiters;                /* every live waiter (mutex) */
};

static void wake_io(kino_io *io);
static void listeners_close(kino_server *s);
/* section 14 */
static int64_t now_us(void);
static void log_capture(kino_waiter *w, kino_conn *c);
static void log_taken(kino_conn *c, kino_waiter *w);
static void log_canned(kino_server *s, int io_index, kino_conn *c, int status, size_t bytes);

/* ================================================================== */
/* 5. Transport                                                       */
/* ================================================================== */

/* Every byte of a connection goes through these, so TLS is one branch
 * here and nowhere else: plain sockets, or kino_tls.c when the
 * connection is HTTPS (compiled only with KINO_TLS). They keep the shape
 * of recv/send: a count, or -1 with errno (EAGAIN: try again once the
 * socket is ready for conn_wants()). */

#define KINO_TLS_GATHER 16384 /* one TLS record of plaintext */

static int conn_tls(const kino_conn *c) {
#ifdef KINO_TLS
    return c->tls != NULL;
#else
    (void)c;
    return 0;
#endif
}

static ssize_t conn_recv(kino_conn *c, void *buf, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_read(c->tls, buf, n);
#endif
    return recv(c->fd, buf, n, 0);
}

static ssize_t conn_send(kino_conn *c, const void *buf, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_write(c->tls, buf, n);
#endif
    return send(c->fd, buf, n, MSG_NOSIGNAL);
}

/* After a read that returned got of the n bytes asked: may more input
 * be waiting that no edge-triggered event will announce? */
static int conn_more(kino_conn *c, ssize_t got, size_t n) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_more(c->tls);
#endif
    return (size_t)got == n;
}

/* The KINO_WAIT_* events a retry needs after -1/EAGAIN: those asked
 * for, except that TLS may need the other direction (a read that must
 * write, or a write that must read). */
static int conn_wants(kino_conn *c, int events) {
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
static ssize_t conn_sendv(kino_conn *c, struct iovec *iov, int n, char *gather) {
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
static ssize_t conn_sendfile(kino_conn *c, int fd, uint64_t *off, size_t n, char *buf) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_sendfile(c->tls, fd, off, n, buf, KINO_TLS_GATHER);
#endif
    (void)buf;
    return send_file(c->fd, fd, off, n);
}

/* The connection is closing: over TLS, say so (close_notify) first. */
static void conn_close_notify(kino_conn *c) {
#ifdef KINO_TLS
    if (c->tls) kino_tls_close(c->tls);
#endif
    (void)c;
}

static void conn_tls_free(kino_conn *c) {
#ifdef KINO_TLS
    kino_tls_free(c->tls);
    c->tls = NULL;
#endif
    (void)c;
}

int kino_conn_tls(kino_conn *c) { return conn_tls(c); }

char *kino_conn_peer_cert(kino_conn *c, size_t *len) {
#ifdef KINO_TLS
    if (c->tls) return kino_tls_peer_cert(c->tls, len);
#endif
    (void)c;
    *len = 0;
    return NULL;
}

/* ================================================================== */
/* 6. Buffers                                                         */
/* ================================================================== */

static kino_buf *buf_alloc(size_t cap) {
    kino_buf *b = malloc(sizeof *b + cap);
    if (b) {
        b->next = NULL;
        b->cap = cap;
    }
    return b;
}

/* An input buffer from the I/O thread's pool (or the heap). */
static kino_buf *buf_get(kino_io *io) {
    kino_buf *b = io->pool;
    if (b) {
        io->pool = b->next;
        io->npool--;
        return b;
    }
    return buf_alloc(KINO_BUF_SIZE);
}

/* Give a buffer back to the pool; oversized or surplus ones are freed. */
static void buf_put(kino_io *io, kino_buf *b) {
    if (!b) return;
    if (io && b->cap == KINO_BUF_SIZE && io->npool < KINO_POOL_BUFS) {
        b->next = io->pool;
        io->pool = b;
        io->npool++;
    } else {
        free(b);
    }
}

/* How large the input buffer may grow, counted from c->off: what the
 * largest allowed head needs, or, while the I/O thread gathers a request
 * body (C_BODY), the head plus the whole Content-Length body, or plus
 * o.body_buffer raw bytes of a chunked one. */
static size_t conn_want(const kino_conn *c) {
    size_t head = KINO_MAX_HEAD + 1024;
    if (c->state != C_BODY) return head;
    size_t body = c->body == B_LENGTH ? (size_t)c->body_left : (size_t)c->io->s->o.body_buffer;
    size_t want = c->bpos - c->off + body;
    return want > head ? want : head;
}

/* Make room for more input: slide unconsumed bytes to the front, then
 * grow by doubling, up to conn_want(). Returns free bytes. Growing moves
 * the buffer: the head's spans are stale until it is parsed again. */
static size_t conn_room(kino_conn *c) {
    kino_buf *b = c->buf;
    if (c->len < b->cap) return b->cap - c->len;
    if (c->off > 0) {
        memmove(b->data, b->data + c->off, c->len - c->off);
        c->len -= c->off;
        if (c->bpos >= c->off) c->bpos -= c->off;
        c->off = 0;
        return b->cap - c->len;
    }
    size_t want = conn_want(c);
    if (b->cap < want) {
        /* a Content-Length body's size is known: one step to it */
        size_t cap = b->cap * 2 > want || (c->state == C_BODY && c->body == B_LENGTH) ? want : b->cap * 2;
        kino_buf *nb = realloc(b, sizeof *b + cap);
        if (nb) {
            nb->cap = cap;
            c->buf = nb;
            return cap - c->len;
        }
    }
    return 0;
}

/* ================================================================== */
/* 7. Date                                                            */
/* ================================================================== */

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" is formatted once a second
 * by whichever I/O thread notices the second change (the compare-and-swap
 * on date_sec elects one), into the next of four slots, then published
 * through date_cur; readers copy the published slot (date_copy).
 *
 * Race-free without a lock: every byte of a slot is written and read
 * through relaxed atomic words, ordered by date_cur's release/acquire.
 * A reader could copy a mix of two lines only if it stalled for three
 * whole seconds between loading date_cur and copying 40 bytes, while the
 * writer went round all four slots; even then it copies a well-formed
 * line of printable bytes. So nothing is hidden from ThreadSanitizer. */
#define DATE_LINE_LEN 37
#define DATE_WORDS 5 /* 40 bytes: the line and its NUL */
static _Atomic uint64_t date_slots[4][DATE_WORDS];
static _Atomic unsigned date_cur;
static _Atomic int64_t date_sec = -1;

static void date_refresh(void) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t old = atomic_load(&date_sec);
    if (ts.tv_sec == old || !atomic_compare_exchange_strong(&date_sec, &old, (int64_t)ts.tv_sec))
        return;
    time_t t = ts.tv_sec;
    gmtime_r(&t, &tm);
    unsigned next = (atomic_load(&date_cur) + 1) & 3;
    char line[DATE_WORDS * 8] = "";
    snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    for (int i = 0; i < DATE_WORDS; i++) {
        uint64_t word;
        memcpy(&word, line + 8 * i, 8);
        atomic_store_explicit(&date_slots[next][i], word, memory_order_relaxed);
    }
    atomic_store_explicit(&date_cur, next, memory_order_release);
}

/* Copy the current Date line (DATE_LINE_LEN bytes and a NUL) into buf. */
static void date_copy(char buf[DATE_WORDS * 8]) {
    unsigned cur = atomic_load_explicit(&date_cur, memory_order_acquire);
    for (int i = 0; i < DATE_WORDS; i++) {
        uint64_t word = atomic_load_explicit(&date_slots[cur][i], memory_order_relaxed);
        memcpy(buf + 8 * i, &word, 8);
    }
}

/* ================================================================== */
/* 8. Ready queue                                                     */
/* ================================================================== */

/* Queue a complete request for the workers and wake one sleeping worker
 * (the one that slept last: its cache is warmest). Returns 0, or -1 when
 * the queue is full or stopped. The wake happens under the mutex so the
 * waiter cannot vanish in between. */
static int ready_push(kino_server *s, kino_conn *c) {
    pthread_mutex_lock(&s->mu);
    if (s->stopped || s->nready >= s->o.queue_depth) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    klist_push(&s->ready, &c->qlink);
    s->nready++;
    if (!klist_empty(&s->sleepers)) {
        kino_waiter *w = KLIST_ENTRY(s->sleepers.prev, kino_waiter, link);
        klist_remove(&w->link);
        w->sleeping = 0;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Upper bounds (ms) of the queue-wait histogram buckets; the last
 * bucket takes everything above the previous bound. */
static const int64_t wait_bounds[KINO_WAIT_BUCKETS - 1] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};

/* A worker starts on request c: per-worker and queue-wait statistics. */
static void waiter_begin(kino_waiter *w, kino_conn *c) {
    int64_t now = mono_ms(), waited = now - c->queued_at;
    int b = 0;
    while (b < KINO_WAIT_BUCKETS - 1 && waited > wait_bounds[b]) b++;
    atomic_fetch_add_explicit(&w->s->queue_wait[b], 1, memory_order_relaxed);
    if (waited > 0) /* rare under normal load: most requests wait under 1 ms */
        atomic_fetch_add_explicit(&w->s->queue_wait_sum_ms, (uint64_t)waited, memory_order_relaxed);
    atomic_store_explicit(&w->in_flight, 1, memory_order_relaxed);
    w->taken_at = now;
}

/* The worker is done with its request. */
static void waiter_end(kino_waiter *w, int served) {
    int64_t now = mono_ms();
    atomic_fetch_add_explicit(&w->busy_ms, (uint64_t)(now - w->taken_at), memory_order_relaxed);
    if (served) atomic_fetch_add_explicit(&w->served, 1, memory_order_relaxed);
    w->taken_at = now;
}

/* Sleep on w's condition variable, listed among the sleepers so that
 * ready_push wakes it (the sleeper that came last is woken first). Called
 * and returns with s->mu held. On return w is off the list, whoever woke
 * it: ready_push takes it off, an interrupt or a spurious wake-up does not. */
static void sleep_until_woken(kino_server *s, kino_waiter *w) {
    klist_push(&s->sleepers, &w->link);
    w->sleeping = 1;
    pthread_cond_wait(&w->cond, &s->mu);
    if (w->sleeping) {
        klist_remove(&w->link);
        w->sleeping = 0;
    }
}

kino_conn *kino_take(kino_server *s, kino_waiter *w, int block) {
    kino_conn *c = NULL;
    int freed_space = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!klist_empty(&s->ready) && !s->stopped) {
            c = KLIST_ENTRY(s->ready.next, kino_conn, qlink);
            klist_remove(&c->qlink);
            freed_space = s->nready-- == s->o.queue_depth;
            break;
        }
        if (s->stopped || !block || atomic_load(&w->interrupted)) break;
        sleep_until_woken(s, w);
    }
    pthread_mutex_unlock(&s->mu);
    if (c) {
        atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
        waiter_begin(w, c);
        if (s->o.log_sink) log_capture(w, c);
        if (freed_space) /* I/O threads may hold requests waiting for room */
            for (int i = 0; i < s->nio; i++)
                if (atomic_load(&s->io[i].parked)) wake_io(&s->io[i]);
    }
    return c;
}

int kino_wait_ready(kino_server *s, kino_waiter *w) {
    int ready;
    pthread_mutex_lock(&s->mu);
    while (klist_empty(&s->ready) && !s->stopped && !atomic_load(&w->interrupted))
        sleep_until_woken(s, w);
    ready = !klist_empty(&s->ready) && !s->stopped;
    pthread_mutex_unlock(&s->mu);
    return ready;
}

kino_waiter *kino_waiter_new(kino_server *s, int worker) {
    kino_waiter *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (wakefd_open(w->wake) < 0) {
        free(w);
        return NULL;
    }
    pthread_cond_init(&w->cond, NULL);
    klist_init(&w->link);
    w->s = s;
    w->worker = worker;
    pthread_mutex_lock(&s->mu);
    klist_push(&s->waiters, &w->all);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->nwaiters, 1);
    return w;
}

void kino_waiter_free(kino_waiter *w) {
    if (!w) return;
    pthread_mutex_lock(&w->s->mu);
    klist_remove(&w->all);
    pthread_mutex_unlock(&w->s->mu);
    atomic_fetch_sub(&w->s->nwaiters, 1);
    pthread_cond_destroy(&w->cond);
    wakefd_close(w->wake);
    free(w->out);
    free(w->tls_buf);
    free(w->lg);
    free(w);
}

void kino_waiter_interrupt(kino_waiter *w) {
    kino_server *s = w->s;
    atomic_store(&w->interrupted, 1);
    pthread_mutex_lock(&s->mu);
    if (w->sleeping) pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&s->mu);
    wakefd_signal(w->wake);
}

void kino_waiter_reset(kino_waiter *w) {
    if (atomic_exchange(&w->interrupted, 0)) wakefd_drain(w->wake);
}

int kino_waiter_interrupted(kino_waiter *w) { return atomic_load(&w->interrupted); }

/* ================================================================== */
/* 9. Timers                                                          */
/* ================================================================== */

/* Each list holds connections waiting on one kind of deadline, all with
 * the same timeout, so appending keeps every list sorted and a sweep
 * only looks at heads. Only the I/O thread touches these. */
static void timer_set(kino_conn *c, klist *list, int64_t deadline) {
    klist_remove(&c->tlink);
    c->deadline = deadline;
    klist_push(list, &c->tlink);
}

static int64_t after(kino_io *io, int64_t ms) {
    return ms > 0 ? io->now + ms : INT64_MAX;
}

/* ================================================================== */
/* 10. Connections (I/O thread side)                                  */
/* ================================================================== */

static void conn_flush(kino_io *io, kino_conn *c);
static int send_continue(kino_conn *c);

/* io_pending is set only while a worker holds the connection, and
 * counted in io->pending_away so that a worker handing a connection back
 * knows the I/O thread has missed readiness for one (see release()). */
static void pending_set(kino_io *io, kino_conn *c) {
    if (!c->io_pending) {
        c->io_pending = 1;
        atomic_fetch_add(&io->pending_away, 1);
    }
}

static void pending_clear(kino_io *io, kino_conn *c) {
    if (c->io_pending) {
        c->io_pending = 0;
        atomic_fetch_sub(&io->pending_away, 1);
    }
}

/* Wake an I/O thread blocked in its poller, at most one syscall per
 * sleep however many threads ask. */
static void wake_io(kino_io *io) {
    if (atomic_load(&io->sleeping) && !atomic_exchange(&io->wake_pending, 1))
        poller_wake(&io->p);
}

/* "::ffff:1.2.3.4" is 1.2.3.4 to applications. */
static void peer_unmap(char *peer) {
    if (strncmp(peer, "::ffff:", 7) == 0 && strchr(peer, '.'))
        memmove(peer, peer + 7, strlen(peer + 7) + 1);
}

static kino_conn *conn_new(kino_io *io, const kino_lsock *ls, int fd,
                           struct sockaddr_storage *ss) {
    kino_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    klist_init(&c->qlink);
    klist_init(&c->tlink);
    c->io = io;
    c->ls = ls;
    c->fd = fd;
    c->proxy = (ls->flags & KINO_LISTEN_PROXY) != 0;
    c->head.content_length = -1;
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((struct sockaddr_in *)ss)->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
    } else {
        strcpy(c->peer, "127.0.0.1"); /* a unix socket: this machine */
    }
    peer_unmap(c->peer);
    return c;
}

/* Take the PROXY header owed at the start of the input. Returns 1 when
 * it is done (c->off moves past it; REMOTE_ADDR and REMOTE_PORT now come
 * from it), 0 when more bytes are needed, -1 when it is missing or
 * malformed: the connection must close. */
static void conn_proxy_apply(kino_conn *c, const kino_proxy *px) {
    c->proxy = 0;
    if (!px->local) {
        size_t n = strnlen(px->addr, sizeof c->peer - 1); /* inet_ntop text fits */
        memcpy(c->peer, px->addr, n);
        c->peer[n] = 0;
        peer_unmap(c->peer);
        c->peer_port = px->port;
    }
}

static int conn_proxy(kino_conn *c) {
    kino_proxy px;
    long n = kino_proxy_parse(c->buf->data + c->off, c->len - c->off, &px);
    if (n <= 0) return n == 0 ? 0 : -1;
    c->off += (size_t)n;
    conn_proxy_apply(c, &px);
    return 1;
}

/* Release the unsent bytes a connection held for its I/O thread. */
static void out_free(kino_server *s, kino_conn *c) {
    if (c->out) atomic_fetch_sub_explicit(&s->handed, c->out_len, memory_order_relaxed);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
}

/* Free a connection; io is NULL once the I/O threads are gone. The fd
 * of a hijacked connection is the app's: it stays open. */
static void conn_destroy(kino_server *s, kino_io *io, kino_conn *c) {
    if (c->io_pending) atomic_fetch_sub(&c->io->pending_away, 1);
    klist_remove(&c->tlink);
    conn_tls_free(c);
    if (c->next != NEXT_HIJACKED) close(c->fd);
    buf_put(io, c->buf);
    out_free(s, c);
    free(c);
    uint64_t left = atomic_fetch_sub(&s->conns, 1) - 1;
    if (atomic_load(&s->paused) && left < s->max_conns)
        for (int i = 0; i < s->nio; i++) wake_io(&s->io[i]);
}

static void conn_close(kino_io *io, kino_conn *c) { conn_destroy(io->s, io, c); }

/* Format a canned response (text/plain reason phrase, Connection: close)
 * into buf; returns its length. */
static size_t canned(char *buf, size_t cap, int status) {
    const char *reason = kino_reason(status);
    char date[DATE_WORDS * 8];
    date_copy(date);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%sServer: Kino\r\n%s\r\n%s\n",
                     status, reason, strlen(reason) + 1, date,
                     status == 503 ? "Retry-After: 5\r\n" : "", reason);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Start closing a connection politely: stop writing (FIN after what was
 * sent), then read and discard for a while, so the client reads our
 * answer instead of a reset caused by its own unread bytes. */
static void conn_linger(kino_io *io, kino_conn *c) {
    conn_close_notify(c);
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->body_total = 0; /* now counts the bytes discarded */
    timer_set(c, &io->t_linger, io->now + KINO_LINGER_MS);
    /* the first read happens on the next readiness event */
}

/* Answer from the I/O thread with a canned error and close in stages. */
static void conn_reject(kino_io *io, kino_conn *c, int status) {
    char msg[512];
    size_t n = canned(msg, sizeof msg, status);
    ssize_t w = conn_send(c, msg, n);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) w = 0;
    log_canned(io->s, io->index, c, status, n);
    if (status == 503) atomic_fetch_add_explicit(&io->s->rejected, 1, memory_order_relaxed);
    else if (status == 504) atomic_fetch_add_explicit(&io->s->timeouts, 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&io->s->errors, 1, memory_order_relaxed);
    if (w >= 0 && (size_t)w < n && (c->out = malloc(n - (size_t)w))) {
        memcpy(c->out, msg + w, n - (size_t)w);
        c->out_len = n - (size_t)w;
        atomic_fetch_add_explicit(&io->s->handed, c->out_len, memory_order_relaxed);
        c->out_off = 0;
        c->next = NEXT_CLOSE;
        c->state = C_FLUSH;
        timer_set(c, &io->t_flush, after(io, io->s->body_ms));
        return;
    }
    if (w < 0) {
        conn_close(io, c);
        return;
    }
    conn_linger(io, c);
}

/* Set up body framing for the head just parsed. */
static void conn_body_init(kino_conn *c) {
    c->bpos = c->off + c->head_len;
    c->body_total = 0;
    c->body_waited = c->win_at = 0;
    c->win_bytes = 0;
    c->continue_sent = 0;
    memset(&c->chunk, 0, sizeof c->chunk);
    if (c->head.chunked) {
        c->body = B_CHUNKED;
    } else if (c->head.content_length > 0) {
        c->body = B_LENGTH;
        c->body_left = (uint64_t)c->head.content_length;
    } else {
        c->body = B_NONE;
    }
}

/* Try to make the next request out of buffered bytes. Returns 1 when a
 * valid head is ready, 0 when more bytes are needed, or the status to
 * answer with. Used by the I/O thread and by workers (pipelining). */
static int conn_prepare(kino_server *s, kino_conn *c) {
    int status = 0;
    const char *p = c->buf->data + c->off;
    long n = kino_head_end(p, c->len - c->off, &c->scanned, &status);
    if (n == 0) return 0;
    if (n < 0) {
        memset(&c->head, 0, sizeof c->head); /* nothing of it is known */
        c->head.minor = -1;
        return status;
    }
    /* from here the answer is final; a caller that cannot act on it (a
     * worker) leaves it to the I/O thread, which must find the head again */
    c->scanned = 0;
    if (kino_parse_head(p, (size_t)n, &c->head, c->buf->hdrs, KINO_MAX_HEADERS) != KINO_OK)
        return c->head.status;
    if (s->o.max_body_size && c->head.content_length > 0 &&
        (uint64_t)c->head.content_length > s->o.max_body_size)
        return 413;
    c->head_len = (size_t)n;
    conn_body_init(c);
    if (s->o.log_sink) c->t_start = now_us();
    atomic_store_explicit(&c->answer, ANS_OPEN, memory_order_relaxed);
    c->r_done = 0;
    c->r_close = 0;
    c->hinted = 0;
    c->final = 0;
    c->reject = 0;
    c->sent = 0;
    c->error = NULL;
    return 1;
}

/* Hand a complete request to the workers, or park it until the queue has
 * room (503 after queue_timeout). */
static void conn_dispatch(kino_io *io, kino_conn *c) {
    kino_server *s = io->s;
    atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed);
    c->queued_at = io->now;
    c->state = C_AWAY;
    pending_clear(io, c);
    klist_remove(&c->tlink);
    if (klist_empty(&io->t_queue) && ready_push(s, c) == 0) {
        /* From here a worker may own c: only I/O-thread fields change. */
        if (s->request_ms) timer_set(c, &io->t_away, io->now + s->request_ms);
        else klist_push(&io->t_held, &c->tlink);
    } else {
        c->state = C_OVERFLOW;
        timer_set(c, &io->t_queue, after(io, s->queue_ms));
        atomic_store(&io->parked, 1);
    }
}

/* Move parked requests into the queue while it has room, oldest first.
 * state and tlink belong to the I/O thread, so they may change after the
 * push has given the request to a worker. */
static void io_admit(kino_io *io) {
    kino_server *s = io->s;
    while (!klist_empty(&io->t_queue)) {
        kino_conn *c = KLIST_ENTRY(io->t_queue.next, kino_conn, tlink);
        if (ready_push(s, c) < 0) return;
        c->state = C_AWAY;
        klist_remove(&c->tlink);
        if (s->request_ms) timer_set(c, &io->t_away, io->now + s->request_ms);
        else klist_push(&io->t_held, &c->tlink);
    }
    atomic_store(&io->parked, 0);
}

/* Is the body of the request just prepared all in the buffer? The I/O
 * thread gathers bodies up to o.body_buffer bytes before a worker sees the
 * request, so a client that sends its body slowly holds a connection,
 * never a worker. Returns 1 to dispatch now (no body, all of it here, or
 * too large to gather: a worker streams it), 0 to keep reading, or the
 * status to answer with: 400 for bad chunked framing, 413 once a chunked
 * body -- with the chunk just announced -- passes max_body_size. Chunked
 * bodies are looked at once, incrementally, without copying (fresh: a new
 * request, start over). */
static int body_buffered(kino_server *s, kino_conn *c, int fresh) {
    uint64_t limit = s->o.body_buffer;
    if (c->body == B_NONE || c->body_full) return 1;
    if (c->body == B_LENGTH) return c->len - c->bpos >= c->body_left || c->body_left > limit;
    if (!limit) return 1;
    if (fresh) {
        memset(&c->ahead, 0, sizeof c->ahead);
        c->ahead_pos = c->bpos - c->off;
        c->ahead_total = 0;
    }
    uint64_t max = s->o.max_body_size;
    size_t pos = c->off + c->ahead_pos;
    while (pos < c->len) {
        /* stop one byte past the limit, so the verdict does not depend on
         * how the bytes were cut into reads */
        size_t used = 0, out = 0, cap = max ? (size_t)(max - c->ahead_total + 1) : (size_t)-1;
        int r = kino_chunked_step(&c->ahead, c->buf->data + pos, c->len - pos, &used, NULL, cap,
                                  &out);
        pos += used;
        c->ahead_total += out;
        if (r == KINO_ERROR) return 400;
        if (max && c->ahead_total > max) return 413;
        if (r == KINO_CHUNK_DONE) return 1;
    }
    c->ahead_pos = pos - c->off;
    if (max && c->ahead.state == CH_DATA && c->ahead_total + c->ahead.left > max) return 413;
    return pos - c->bpos >= limit;
}

/* Act on buffered input: dispatch a complete request, reject a bad one,
 * or wait for more bytes -- of the head under the header deadline, of the
 * body under the body deadline (each pause). Returns 1 when c still
 * waits for input; 0 when it was dispatched, rejected or closed (then c
 * must not be touched: a worker may own it, or it is freed). more says
 * the socket may hold bytes not yet read. The head is parsed again on
 * every call: growing the buffer for a body moves it. */
static int conn_advance(kino_io *io, kino_conn *c, int more) {
    int fresh = c->state != C_BODY, continued = !fresh && c->continue_sent, gathering = 0;
    int r = conn_prepare(io->s, c);
    if (r == 1) {
        c->continue_sent = (unsigned)continued;
        r = body_buffered(io->s, c, fresh);
        gathering = r == 0;
    }
    /* a client that asked to be invited gets "100 Continue" now, as it
     * would from nginx or Puma; if that cannot go out, the worker asks */
    if (gathering && c->head.expect_continue && !c->continue_sent && send_continue(c) != KINO_OK) {
        gathering = 0;
        r = 1;
    }
    if (r == 1) {
        c->maybe_more = (unsigned char)more;
        c->body_full = 0;
        conn_dispatch(io, c);
        return 0;
    }
    if (r != 0) {
        conn_reject(io, c, r);
        return 0;
    }
    if (gathering) { /* progress on the body: the pause clock restarts */
        c->state = C_BODY;
        timer_set(c, &io->t_body, after(io, io->s->body_ms));
    } else if (c->state != C_READING) {
        c->state = C_READING; /* the first byte starts the clock */
        timer_set(c, &io->t_header, after(io, io->s->header_ms));
    }
    return 1;
}

/* Read what the socket holds and act on it. Edge-triggered: keep reading
 * until a short read proves the socket empty. */
static void conn_read(kino_io *io, kino_conn *c, int hup) {
    pending_clear(io, c);
    c->maybe_more = 0;
    if (!c->buf) {
        c->buf = buf_get(io);
        c->off = c->len = c->scanned = 0;
        if (!c->buf) {
            conn_close(io, c);
            return;
        }
    }
    for (;;) {
        size_t room = conn_room(c);
        if (room == 0 && c->state == C_BODY) { /* as much body as we gather */
            c->body_full = 1;
            conn_advance(io, c, 1);
            return;
        }
        if (room == 0) { /* a head larger than we allow */
            memset(&c->head, 0, sizeof c->head);
            c->head.minor = -1;
            conn_reject(io, c, 431);
            return;
        }
        ssize_t n = conn_recv(c, c->buf->data + c->len, room);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c->len == c->off) { /* nothing buffered: no buffer */
                    buf_put(io, c->buf);
                    c->buf = NULL;
                    c->off = c->len = 0;
                }
                return;
            }
            conn_close(io, c);
            return;
        }
        if (n == 0) {
            conn_close(io, c);
            return;
        }
        c->len += (size_t)n;
        if (c->proxy) { /* only before the first request */
            int r = conn_proxy(c);
            if (r < 0) {
                conn_close(io, c);
                return;
            }
            if (r == 0) {
                if ((size_t)n < room && !hup) return;
                continue;
            }
        }
        int more = conn_more(c, n, room);
        /* after a hang-up the socket still holds the EOF: read it when
         * the connection comes back, so a half-closed client is closed */
        if (!conn_advance(io, c, more || hup)) return;
        if (!more && !hup) return; /* drained (edge-triggered) */
    }
}

/* An idle keep-alive connection, or the start of its next request. */
static void conn_keep(kino_io *io, kino_conn *c) {
    if (atomic_load(&io->s->draining)) {
        conn_close(io, c);
        return;
    }
    c->state = C_IDLE;
    if (c->buf && c->len > c->off) {
        /* pipelined bytes are already here */
        if (!conn_advance(io, c, c->io_pending || c->maybe_more)) return;
    } else {
        buf_put(io, c->buf);
        c->buf = NULL;
        timer_set(c, &io->t_idle, after(io, io->s->keepalive_ms));
    }
    if (c->io_pending || c->maybe_more) conn_read(io, c, 0);
}

/* Write out what a worker left unsent; then keep or close. */
static void conn_flush(kino_io *io, kino_conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                timer_set(c, &io->t_flush, after(io, io->s->body_ms));
                return;
            }
            conn_close(io, c);
            return;
        }
        c->out_off += (size_t)n;
    }
    out_free(io->s, c);
    if (c->next == NEXT_KEEP) conn_keep(io, c);
    else conn_linger(io, c);
}

/* Read and drop input of a closing connection until EOF or limits. */
static void conn_drop_input(kino_io *io, kino_conn *c) {
    char junk[4096];
    for (;;) {
        ssize_t n = recv(c->fd, junk, sizeof junk, 0);
        if (n > 0) {
            c->body_total += (uint64_t)n;
            if (c->body_total > KINO_LINGER_BYTES) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        break;
    }
    conn_close(io, c);
}

/* Abort one request that a worker may still be serving: answer it with
 * `status` unless the app already began, then shut the socket so the
 * worker's next read or write fails fast. The worker still hands the
 * connection back, and it is closed then. Over TLS the answer is written
 * only when the I/O thread owns the connection (owned): a worker may be
 * inside OpenSSL with it, so the client sees the close alone. A hijacked
 * connection is left alone: the claim of a begun response is a second
 * compare-and-swap (ANS_APP to claim), so a hijack racing with it either
 * wins (and the socket is not touched) or fails. */
static void conn_preempt(kino_io *io, kino_conn *c, int status, int claim, int owned) {
    int cur = ANS_OPEN;
    if (atomic_compare_exchange_strong(&c->answer, &cur, claim)) {
        char msg[512];
        size_t n = canned(msg, sizeof msg, status);
        ssize_t w = owned || !conn_tls(c) ? conn_send(c, msg, n) : 0;
        (void)w;
        if (status == 504) atomic_fetch_add_explicit(&io->s->timeouts, 1, memory_order_relaxed);
        /* the worker still owns c and writes its access line; the note
         * (why the client got this) is the I/O thread's */
        if (c->next != NEXT_ABORT) log_canned(io->s, io->index, NULL, status, n);
    } else if (claim == ANS_TIMEOUT) {
        return; /* the response has begun: a stream is not cut */
    } else if (cur != ANS_APP || !atomic_compare_exchange_strong(&c->answer, &cur, claim)) {
        return; /* hijacked (or already claimed): not ours to shut */
    }
    shutdown(c->fd, SHUT_RDWR);
}

/* A connection handed back by a worker. */
static void conn_returned(kino_io *io, kino_conn *c) {
    int ans = atomic_load(&c->answer);
    klist_remove(&c->tlink);
    if (c->next == NEXT_HIJACKED) { /* the fd is the app's now */
        conn_close(io, c);
        return;
    }
    if (c->next == NEXT_ABORT || ans == ANS_TIMEOUT || ans == ANS_SHUTDOWN) {
        if (c->next == NEXT_ABORT) conn_preempt(io, c, 500, ANS_SHUTDOWN, 1);
        conn_close(io, c);
        return;
    }
    if (c->out) {
        c->state = C_FLUSH;
        timer_set(c, &io->t_flush, after(io, io->s->body_ms));
        conn_flush(io, c);
    } else if (c->next == NEXT_KEEP) {
        conn_keep(io, c);
    } else {
        conn_linger(io, c);
    }
}

/* The PROXY header of a TLS connection, which precedes the handshake:
 * peeked, so not a byte of the TLS stream is taken with it, then
 * consumed exactly. Returns as conn_proxy does. More bytes come with a
 * new edge-triggered event, peeked bytes or not. */
#ifdef KINO_TLS
static int conn_proxy_peeked(kino_conn *c) {
    char head[KINO_PROXY_MAX];
    kino_proxy px;
    ssize_t n = recv(c->fd, head, sizeof head, MSG_PEEK);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (n == 0) return -1;
    long used = kino_proxy_parse(head, (size_t)n, &px);
    if (used <= 0) return used == 0 && (size_t)n < sizeof head ? 0 : -1;
    if (recv(c->fd, head, (size_t)used, 0) != used) return -1;
    conn_proxy_apply(c, &px);
    return 1;
}
#endif

/* A new HTTPS connection with bytes to read. The first one says what the
 * client speaks (peeked, not consumed): plain HTTP gets a plain 400 and a
 * close, as nginx does, and costs no TLS state; a TLS record starts the
 * handshake, which then advances on every readiness event (the poller
 * watches both directions for the connection's life, so OpenSSL's
 * WANT_READ and WANT_WRITE need no re-arming). header_timeout, counted
 * from accept, bounds it all: a stalled, silent or trickling client is
 * closed by the sweep like any slow head. */
static void conn_handshake(kino_io *io, kino_conn *c) {
#ifdef KINO_TLS
    if (c->proxy) { /* a PROXY header comes first, in the clear */
        int r = conn_proxy_peeked(c);
        if (r == 0) return;
        if (r < 0) {
            conn_close(io, c);
            return;
        }
    }
    if (!c->tls) {
        unsigned char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) {
            conn_close(io, c);
            return;
        }
        if (!kino_tls_first_byte(b)) {
            c->state = C_READING;
            conn_reject(io, c, 400);
            return;
        }
        c->tls = kino_tls_new(io->s->tls, c->fd);
        if (!c->tls) {
            conn_close(io, c);
            return;
        }
    }
    int r = kino_tls_handshake(c->tls);
    if (r == KINO_AGAIN) return;
    if (r != KINO_OK) {
        conn_close(io, c);
        return;
    }
    c->state = C_READING; /* the header deadline still counts from accept */
    conn_read(io, c, 0);  /* the request may have come with the handshake */
#else
    conn_close(io, c);
#endif
}

/* ================================================================== */
/* 11. I/O thread                                                     */
/* ================================================================== */

/* Watch (on) or stop watching every listener. Returns 0 when all
 * changed, -1 when one could not be watched. */
static int io_listen_all(kino_io *io, int on) {
    kino_server *s = io->s;
    int r = 0;
    for (int i = 0; i < s->nls; i++)
        if (s->ls[i].fd >= 0 && poller_listen(&io->p, s->ls[i].fd, &s->ls[i], on) < 0 &&
            errno != (on ? EEXIST : ENOENT))
            r = -1;
    return r;
}

/* The listener an event's data names, or NULL (a connection or a wake). */
static kino_lsock *io_listener(kino_io *io, void *data) {
    kino_server *s = io->s;
    kino_lsock *l = data;
    return l >= s->ls && l < s->ls + s->nls ? l : NULL;
}

/* Workers free to take a request now: the workers, less the requests
 * they hold and those queued for them. */
static int idle_workers(kino_server *s) {
    int64_t n = (int64_t)atomic_load_explicit(&s->nwaiters, memory_order_relaxed) -
                (int64_t)atomic_load_explicit(&s->in_flight, memory_order_relaxed) -
                (int64_t)atomic_load_explicit(&s->queued, memory_order_relaxed);
    return n < 0 ? 0 : n > KINO_ACCEPTS ? KINO_ACCEPTS : (int)n;
}

/* The connection that costs least to lose when a new client needs room:
 * this thread's oldest idle keep-alive connection, else its oldest one
 * that has not sent a byte since it was accepted (among the first
 * KINO_EVICT_SCAN of those), else NULL. Without evicting them, clients
 * that merely hold connections open would keep every new client out
 * until their timeouts. */
#define KINO_EVICT_SCAN 64
static kino_conn *conn_victim(kino_io *io) {
    klist *h = &io->t_header, *n = h->next;
    if (!klist_empty(&io->t_idle)) return KLIST_ENTRY(io->t_idle.next, kino_conn, tlink);
    for (int i = 0; n != h && i < KINO_EVICT_SCAN; n = n->next, i++) {
        kino_conn *c = KLIST_ENTRY(n, kino_conn, tlink);
        if (!c->buf || c->len == c->off) return c;
    }
    return NULL;
}

/* Accept a batch of connections from one listener. At the connection
 * cap a new client takes the place of conn_victim(); out of file
 * descriptors too. With no victim, accepting pauses (the listeners are
 * unwatched) until a connection closes or becomes a victim, or, on
 * EMFILE, backs off for 100 ms instead of spinning. Listeners shared
 * with other processes are a balance: take one connection per idle
 * worker, and with none idle stop watching them for KINO_SHARED_PAUSE_MS,
 * leaving the connection to a process that has one. A connection still
 * waiting after that pause is taken (one per pause), so that when every
 * process is busy the backlog still drains, evenly, and none starves. */
static void io_accept(kino_io *io, kino_lsock *l) {
    kino_server *s = io->s;
    int batch = KINO_ACCEPTS;
    if (s->o.shared_listener) {
        batch = idle_workers(s);
        if (batch == 0 && !io->deferred) {
            io_listen_all(io, 0);
            io->listening = 0;
            io->resume_at = io->now + KINO_SHARED_PAUSE_MS;
            io->deferred = 1;
            return;
        }
        if (batch == 0) batch = 1;
        io->deferred = 0;
    }
    for (int i = 0; i < batch; i++) {
        int full = atomic_load(&s->conns) >= s->max_conns;
        if (full && !conn_victim(io)) {
            if (io->listening) {
                io_listen_all(io, 0);
                io->listening = 0;
                io->paused = 1;
                atomic_fetch_add(&s->paused, 1);
            }
            return;
        }
        struct sockaddr_storage ss;
        int fd = accept_nb(l->fd, &ss);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            kino_conn *victim = errno == EMFILE || errno == ENFILE ? conn_victim(io) : NULL;
            if (victim) {
                conn_close(io, victim);
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                io_listen_all(io, 0);
                io->listening = 0;
                io->resume_at = io->now + 100;
            }
            return;
        }
        kino_conn *c = conn_new(io, l, fd, &ss);
        if (!c || poller_watch(&io->p, fd, c) < 0) {
            free(c);
            close(fd);
            continue;
        }
        kino_conn *victim = full ? conn_victim(io) : NULL;
        if (victim) conn_close(io, victim); /* c takes its place */
        atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
        atomic_fetch_add(&s->conns, 1);
        /* header_timeout runs from accept (over TLS: the handshake too) */
        c->state = (l->flags & KINO_LISTEN_TLS) ? C_HANDSHAKE : C_READING;
        timer_set(c, &io->t_header, after(io, s->header_ms));
    }
}

/* Resume accepting once below the cap -- or at it, with a connection
 * to make way (conn_victim) -- and past any back-off. */
static void io_resume_accept(kino_io *io) {
    kino_server *s = io->s;
    if (io->listening || io->drained || io->now < io->resume_at ||
        (atomic_load(&s->conns) >= s->max_conns && !conn_victim(io)))
        return;
    if (io_listen_all(io, 1) == 0) {
        if (io->paused) atomic_fetch_sub(&s->paused, 1);
        io->paused = 0;
        io->listening = 1;
        io->resume_at = 0;
    }
}

/* One readiness event (EV_IN/EV_OUT/EV_HUP in mask) for connection c,
 * dispatched on its state. Edge-triggered: whatever a handler does not
 * consume now is remembered (maybe_more, io_pending), never re-reported.
 * For a connection away with a worker the I/O thread only notes the event
 * (pending_set); the worker's hand-back makes the thread look again. */
static void on_event(kino_io *io, kino_conn *c, int mask) {
    switch (c->state) {
    case C_IDLE:
    case C_READING: /* (a TLS read may wait to write: a key update) */
    case C_BODY:
        if ((mask & EV_IN) || ((mask & EV_OUT) && (conn_wants(c, 0) & KINO_WAIT_WRITE)))
            conn_read(io, c, mask & EV_HUP);
        break;
    case C_FLUSH: /* input waits until the response is out: note it */
        if (mask & EV_IN) c->maybe_more = 1;
        conn_flush(io, c);
        break;
    case C_LINGER:
        if (mask & EV_IN) conn_drop_input(io, c);
        break;
    case C_HANDSHAKE:
        conn_handshake(io, c);
        break;
    default: /* away with a worker: look again when it comes back */
        pending_set(io, c);
    }
}

/* Connections handed back by workers: a lock-free stack, taken whole. */
static void io_returns(kino_io *io) {
    kino_conn *c = atomic_exchange(&io->returns, NULL), *rev = NULL;
    while (c) { /* restore hand-back order */
        kino_conn *n = c->rnext;
        c->rnext = rev;
        rev = c;
        c = n;
    }
    while (rev) {
        kino_conn *n = rev->rnext;
        conn_returned(io, rev);
        rev = n;
    }
}

/* Expire the heads of the timer lists. */
static void io_sweep(kino_io *io) {
    kino_conn *c;
#define EXPIRED(list) \
    (!klist_empty(list) && (c = KLIST_ENTRY((list)->next, kino_conn, tlink))->deadline <= io->now)
    while (EXPIRED(&io->t_header)) {
        if (c->len > c->off && !c->proxy) {
            memset(&c->head, 0, sizeof c->head); /* the head never completed */
            c->head.minor = -1;
            conn_reject(io, c, 408);
        }
        else conn_close(io, c); /* never sent a byte: nothing to answer */
    }
    while (EXPIRED(&io->t_body)) conn_reject(io, c, 408);
    while (EXPIRED(&io->t_idle)) conn_close(io, c);
    while (EXPIRED(&io->t_queue)) {
        atomic_fetch_sub_explicit(&io->s->queued, 1, memory_order_relaxed);
        conn_reject(io, c, 503);
    }
    if (klist_empty(&io->t_queue)) atomic_store(&io->parked, 0);
    while (EXPIRED(&io->t_away)) {
        klist_remove(&c->tlink); /* the worker still owns it */
        klist_push(&io->t_held, &c->tlink);
        conn_preempt(io, c, 504, ANS_TIMEOUT, 0);
    }
    while (EXPIRED(&io->t_flush)) conn_close(io, c);
    while (EXPIRED(&io->t_linger)) conn_close(io, c);
#undef EXPIRED
}

/* Milliseconds until the earliest deadline or the next Date second. */
static int io_timeout(kino_io *io) {
    klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_queue,
                      &io->t_away, &io->t_flush, &io->t_linger};
    struct timespec ts; /* t_held has no deadline */
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = 1000 - ts.tv_nsec / 1000000;
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        if (klist_empty(lists[i])) continue;
        int64_t d = KLIST_ENTRY(lists[i]->next, kino_conn, tlink)->deadline - io->now;
        if (d < t) t = d < 0 ? 0 : d;
    }
    if (io->resume_at && io->resume_at - io->now < t) t = io->resume_at - io->now;
    return t < 0 ? 0 : (int)t;
}

static void close_list(kino_io *io, klist *list) {
    while (!klist_empty(list)) conn_close(io, KLIST_ENTRY(list->next, kino_conn, tlink));
}

/* This I/O thread lets go of the listener, once: the last one to do so
 * closes it and wakes kino_server_drain, which waits for that. */
static void io_release_listener(kino_io *io) {
    kino_server *s = io->s;
    if (io->drained) return;
    io->drained = 1;
    if (io->listening) io_listen_all(io, 0);
    io->listening = 0;
    if (atomic_fetch_sub(&s->listeners, 1) == 1) {
        listeners_close(s);
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->unlistened);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Shutdown steps, each done once by each I/O thread. */
static void io_shutdown_steps(kino_io *io) {
    kino_server *s = io->s;
    if (atomic_load(&s->draining) && !io->drained) {
        io_release_listener(io);
        close_list(io, &io->t_idle);
        /* connections that never sent a byte are idle too -- except in
         * a hand-over (hot restart), where a client that just connected
         * is about to send its request: it is answered (with
         * Connection: close) or times out, never refused */
        klist *h = &io->t_header;
        for (klist *n = h->next, *nx; n != h && !s->keep_listeners; n = nx) {
            nx = n->next;
            kino_conn *c = KLIST_ENTRY(n, kino_conn, tlink);
            if (c->len == c->off) conn_close(io, c);
        }
    }
    if (atomic_load(&s->aborting) && !io->aborted) {
        io->aborted = 1;
        while (!klist_empty(&io->t_queue)) {
            kino_conn *c = KLIST_ENTRY(io->t_queue.next, kino_conn, tlink);
            atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
            conn_reject(io, c, 500);
        }
        klist *away[] = {&io->t_away, &io->t_held};
        for (int k = 0; k < 2; k++)
            for (klist *n = away[k]->next; n != away[k]; n = n->next)
                conn_preempt(io, KLIST_ENTRY(n, kino_conn, tlink), 500, ANS_SHUTDOWN, 0);
        atomic_store(&io->parked, 0);
        close_list(io, &io->t_header);
        close_list(io, &io->t_body);
        close_list(io, &io->t_flush);
        close_list(io, &io->t_linger);
    }
}

/* The poller failed (errno e): this thread can no longer see its sockets,
 * so it says so once on stderr and ends instead of spinning. It gives up
 * its hold on the listener as a drain would (the last holder closes it:
 * clients are refused rather than left waiting); its connections are
 * closed by kino_server_stop. */
static void io_fail(kino_io *io, int e) {
    fprintf(stderr, "kino: I/O thread %d stopped: its poller failed: %s\n", io->index, strerror(e));
    atomic_store(&io->failed, e);
    io_release_listener(io);
}

/*
 * The event loop of one I/O thread. One pass, in order:
 *
 *   1. sleep in the poller until an event, a wake (eventfd / EVFILT_USER)
 *      or the nearest deadline (io_timeout: a timer list head, or the next
 *      second for the Date line); not at all when connections were handed
 *      back meanwhile;
 *   2. read the clock once (io->now, for every deadline this pass sets)
 *      and refresh the Date line;
 *   3. handle each event: a listener accepts (io_accept), the wake is
 *      acknowledged, a connection acts on its state (on_event);
 *   4. take the connections workers handed back (io_returns);
 *   5. move parked requests into the ready queue while it has room
 *      (io_admit);
 *   6. apply drain and abort, once each (io_shutdown_steps);
 *   7. expire the heads of the timer lists (io_sweep);
 *   8. resume accepting when below the connection cap (io_resume_accept).
 *
 * It ends when kino_server_stop sets stopping, or when the poller itself
 * fails (io_fail). Nothing here blocks but step 1; the one lock taken on
 * the way is the ready queue's (ready_push), when a request is complete.
 */
static void *io_main(void *arg) {
    kino_io *io = arg;
    kino_server *s = io->s;
    block_signals();
    while (!atomic_load(&s->stopping)) {
        atomic_store(&io->sleeping, 1);
        int timeout = atomic_load(&io->returns) ? 0 : io_timeout(io);
        int n = poller_wait(&io->p, timeout);
        atomic_store(&io->sleeping, 0);
        if (n < 0) {
            io_fail(io, errno);
            break;
        }
        io->now = mono_ms();
        date_refresh();
        for (int i = 0; i < n; i++) {
            int mask;
            void *data = poller_event(&io->p, i, &mask);
            kino_lsock *l = io_listener(io, data);
            if (l) io_accept(io, l);
            else if (data == io) {
                poller_wake_ack(&io->p);
                atomic_store(&io->wake_pending, 0);
            } else on_event(io, data, mask);
        }
        io_returns(io);
        io_admit(io);
        io_shutdown_steps(io);
        io_sweep(io);
        io_resume_accept(io);
    }
    return NULL;
}

/* ================================================================== */
/* 12. Workers                                                        */
/* ================================================================== */

const kino_head *kino_conn_head(kino_conn *c) { return &c->head; }
const char *kino_conn_peer(kino_conn *c) { return c->peer; }
int kino_conn_peer_port(kino_conn *c) { return c->peer_port; }
int kino_conn_local_port(kino_conn *c) { return c->ls->port; }
unsigned kino_conn_flags(kino_conn *c) { return c->ls->flags; }
int kino_conn_fd(kino_conn *c) { return c->fd; }
const char *kino_conn_error(kino_conn *c) { return c->error ? c->error : "no error"; }
int kino_conn_reject(kino_conn *c) { return c->reject; }
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
    c->reject = status;
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
static int send_continue(kino_conn *c) {
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
    (void)w;
    if (c->broken || c->reject) return KINO_ERROR;
    if (c->body == B_NONE || c->body == B_DONE || n == 0) return 0;
    if (c->head.expect_continue && !c->continue_sent) {
        int r = send_continue(c);
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
    if (c->broken || c->reject || (c->head.expect_continue && !c->continue_sent)) return 0;
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
    if (c->broken || c->reject || (c->head.expect_continue && !c->continue_sent)) return 0;
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
    w->pending += n;
    return KINO_OK;
}

static int out_str(kino_waiter *w, const char *s) { return out_put(w, s, strlen(s)); }

/* The cached "Date: ...\r\n" line (section 6). */
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
    w->pending += n;
    return KINO_OK;
}

static void out_reset(kino_waiter *w) {
    w->out_len = 0;
    w->nseg = w->seg_i = 0;
    w->seg_off = 0;
    w->pending = 0;
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
    if (c->broken) return KINO_ERROR;
    char *gather = tls_gather(c, w);
    if (conn_tls(c) && !gather) return conn_fail(c, "out of memory");
    while (w->pending) {
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
        c->sent += (uint64_t)sent;
        w->pending -= (size_t)sent;
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
    char *o = malloc(w->pending);
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
    int open = ANS_OPEN;
    if (c->reject) return KINO_ERROR; /* answer with kino_resp_error */
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
    if (w->pending < 65536 && w->nseg < KINO_SEGS - 4) return KINO_OK;
    int r = kino_resp_flush(c, w);
    return r == KINO_AGAIN ? KINO_OK : r;
}

/* Body bytes p[0..n), in a chunk when the response is chunked: copied
 * into the output (ref == 0), or referenced where they are until the
 * next flush (ref == 1, for large bodies the caller keeps alive). */
static int resp_write(kino_conn *c, kino_waiter *w, const char *p, size_t n, int ref) {
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
    return resp_write(c, w, p, n, 0);
}

int kino_resp_write_ref(kino_conn *c, kino_waiter *w, const char *p, size_t n) {
    return resp_write(c, w, p, n, 1);
}

int kino_resp_end(kino_conn *c, kino_waiter *w) {
    if (c->broken) return KINO_ERROR;
    if (!c->r_done) {
        if (c->framing == R_CHUNKED && out_str(w, "0\r\n\r\n")) return KINO_ERROR;
        if (c->framing == R_LENGTH && c->r_left > 0) {
            c->r_close = 1; /* the client will see a short body and a close */
            c->error = "response body shorter than its Content-Length";
        }
        if (c->framing == R_RAW) c->r_close |= c->head.minor == 0 || !c->seen_te;
        /* skip what the app left of the request body; end_head promised
         * keep-alive only when that was possible (else close after it) */
        if (!c->r_close && !body_skip(c, w)) c->r_close = 1;
        c->r_done = 1;
    }
    int r = kino_resp_flush(c, w);
    if (r == KINO_AGAIN && handoff_fits(c->io->s, w->pending)) return handoff(c, w);
    return r;
}

int kino_resp_info_begin(kino_conn *c, kino_waiter *w, int status) {
    int open = ANS_OPEN;
    if (c->head.minor == 0 || c->final || c->broken || c->reject || status < 100 || status > 199)
        return KINO_ERROR;
    if (!atomic_compare_exchange_strong(&c->answer, &open, ANS_APP) && !(open == ANS_APP && c->hinted))
        return KINO_ERROR; /* a timeout answered, or the final response began */
    c->hinted = 1;
    c->status = status; /* for kino_resp_header's rules */
    out_reset(w);
    return out_status(w, status);
}

int kino_resp_info_end(kino_conn *c, kino_waiter *w) {
    if (out_put(w, "\r\n", 2)) return KINO_ERROR;
    return kino_resp_flush(c, w);
}

int kino_resp_sendfile(kino_conn *c, kino_waiter *w, int fd, uint64_t *offset, uint64_t *left) {
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
    if (c->reject) status = c->reject;
    out_reset(w);
    c->framing = R_RAW;
    c->r_close = 1;
    c->r_done = 1;
    c->final = 1;
    c->sent = 0;
    c->status = status;
    if (out_put(w, msg, canned(msg, sizeof msg, status))) return KINO_ERROR;
    atomic_fetch_add_explicit(&c->io->s->errors, 1, memory_order_relaxed);
    int r = kino_resp_flush(c, w);
    return r == KINO_AGAIN ? handoff(c, w) : r;
}

int kino_hijack(kino_conn *c, kino_waiter *w, const char **rest, size_t *rest_len) {
    int cur = atomic_load(&c->answer);
    if (conn_tls(c)) {
        c->error = "cannot hijack: an HTTPS connection's TLS session stays in Kino";
        return KINO_ERROR;
    }
    if (c->broken || w->pending || c->out) {
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
 * thread counted that in io->pending_away before its next pass over the
 * hand-back stack; the push and the load of that count are sequentially
 * consistent, so either that pass sees the connection or this load sees
 * the count and wakes the thread. */
static void release(kino_conn *c, int next) {
    kino_io *io = c->io;
    kino_server *s = io->s;
    /* over TLS, OpenSSL may hold bytes that no readiness event announces */
    int urgent = next != NEXT_KEEP || c->out || c->len > c->off || c->maybe_more ||
                 (conn_tls(c) && conn_more(c, 0, 1));
    c->next = (unsigned char)next;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    if (atomic_load(&s->io_gone)) { /* nobody to hand it to: close it here */
        pthread_mutex_lock(&s->gone_mu);
        conn_destroy(s, NULL, c);
        pthread_mutex_unlock(&s->gone_mu);
        return;
    }
    kino_conn *top = atomic_load(&io->returns);
    do c->rnext = top;
    while (!atomic_compare_exchange_weak(&io->returns, &top, c));
    /* c may be gone from here on: only io and s are read */
    if (urgent || atomic_load(&io->pending_away) || atomic_load(&s->draining)) wake_io(io);
}

kino_conn *kino_next(kino_conn *c, kino_waiter *w) {
    kino_server *s = c->io->s;
    int served = c->r_done && !c->broken;
    if (s->o.log_sink) log_taken(c, w); /* every request a worker took, hijacked ones too */
    if (atomic_load_explicit(&c->answer, memory_order_relaxed) == ANS_HIJACK) {
        out_reset(w);
        waiter_end(w, 0);
        release(c, NEXT_HIJACKED);
        atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
        return NULL;
    }
    out_reset(w);
    waiter_end(w, served);
    if (served) atomic_fetch_add_explicit(&s->served, 1, memory_order_relaxed);
    if (!c->r_done && !c->broken) { /* nobody answered: 500, then close */
        release(c, NEXT_ABORT);
        atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
        return NULL;
    }
    if (c->broken || c->r_close || (c->body != B_DONE && c->body != B_NONE)) {
        release(c, NEXT_CLOSE);
        atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
        return NULL;
    }
    /* the current request is consumed: the next one starts at bpos */
    c->off = c->bpos;
    c->scanned = 0;
    c->head_len = 0;
    if (!c->out && !s->request_ms && c->len > c->off && !atomic_load(&s->draining) &&
        conn_prepare(s, c) == 1 &&
        (c->body == B_NONE || (c->body == B_LENGTH && c->len - c->bpos >= c->body_left))) {
        if (s->o.log_sink) log_capture(w, c);
        return c; /* pipelined, body and all: serve it now, in order */
    }
    release(c, NEXT_KEEP);
    atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
    return NULL;
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

/* ================================================================== */
/* 13. Server                                                         */
/* ================================================================== */

void kino_options_init(kino_options *o) {
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->port = 0;
    o->io_threads = 1;
    o->queue_depth = 1024;
    o->backlog = 1024;
    o->max_connections = 0;
    o->queue_timeout = 5.0;
    o->request_timeout = 0;
    o->header_timeout = 15.0;
    o->keepalive_timeout = 65.0;
    o->body_timeout = 30.0;
    o->max_body_size = 50u << 20;
    o->body_buffer = 1u << 20;
}

static int64_t to_ms(double s) { return s > 0 ? (int64_t)(s * 1000.0 + 0.5) : 0; }

/* Options every listening socket gets: non-blocking, close-on-exec. */
static void listener_setup(int fd) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Bind and listen on TCP host:port. Returns the fd, or -1 with a message
 * in err. */
static int listen_tcp(const char *bind_host, int portno, int backlog, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char port[16];
    int fd = -1, e = 0, one = 1;
    const char *host = bind_host && *bind_host ? bind_host : NULL;
    char stripped[256];
    if (host && host[0] == '[') { /* "[::1]" */
        snprintf(stripped, sizeof stripped, "%s", host + 1);
        char *b = strchr(stripped, ']');
        if (b) *b = 0;
        host = stripped;
    }
    snprintf(port, sizeof port, "%d", portno);
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve bind address %s: %s", bind_host, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        listener_setup(fd);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited */
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) snprintf(err, errlen, "cannot listen on %s:%d: %s", bind_host, portno, strerror(e));
    return fd;
}

/* The sockaddr of unix socket path ("@name": abstract, Linux). Returns
 * its length, or 0 when the path does not fit. */
static socklen_t unix_addr(const char *path, struct sockaddr_un *sa) {
    size_t n = strlen(path);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof sa->sun_path) return 0;
    memcpy(sa->sun_path, path, n);
    if (path[0] == '@') sa->sun_path[0] = 0; /* abstract: no file */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
}

/* Bind and listen on a unix socket. When the path is taken, a socket
 * file nobody accepts on (a crashed server's) is removed and bound
 * again; a live one is an error, as is any other file. The created file
 * is recorded in l, to be removed at the end. Returns the fd or -1. */
static int listen_unix(kino_lsock *l, const char *path, int backlog, char *err, size_t errlen) {
    struct sockaddr_un sa;
    struct stat st;
    socklen_t len = unix_addr(path, &sa);
    if (!len) {
        snprintf(err, errlen, "unix socket path %s is empty or longer than %zu bytes", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) break;
        listener_setup(fd);
        if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
            if (listen(fd, backlog) < 0) {
                int e = errno;
                close(fd);
                snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(e));
                return -1;
            }
            if (path[0] != '@' && stat(path, &st) == 0) {
                l->path = strdup(path);
                l->dev = st.st_dev;
                l->ino = st.st_ino;
            }
            return fd;
        }
        int e = errno;
        close(fd);
        if (e != EADDRINUSE || path[0] == '@' || attempt > 0) {
            snprintf(err, errlen, "cannot listen on unix socket %s: %s", path,
                     e == EADDRINUSE ? "in use by a live server" : strerror(e));
            return -1;
        }
        if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "cannot listen on unix socket %s: the path exists and is not a socket", path);
            return -1;
        }
        /* is anyone accepting on it? */
        int probe = socket(AF_UNIX, SOCK_STREAM, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, len) == 0;
        int probe_errno = errno;
        if (probe >= 0) close(probe);
        if (live || (probe_errno != ECONNREFUSED && probe_errno != ENOENT)) {
            snprintf(err, errlen, "cannot listen on unix socket %s: in use by a live server", path);
            return -1;
        }
        unlink(path); /* stale: reclaim it */
    }
    snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(errno));
    return -1;
}

/* Take over an inherited listening socket. It must be a listening stream
 * socket; its kind and port are read from it. path, for a unix socket,
 * is its file, which this server now owns (removed at the end). */
static int listen_adopt(kino_lsock *l, int fd, const char *path, char *err, size_t errlen) {
    int type = 0, acc = 0;
    socklen_t tl = sizeof type, al = sizeof acc;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(err, errlen, "inherited fd %d is not a stream socket", fd);
        return -1;
    }
#ifdef SO_ACCEPTCONN
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && !acc) {
        snprintf(err, errlen, "inherited fd %d is not listening", fd);
        return -1;
    }
#endif
    (void)acc;
    (void)al;
    listener_setup(fd);
    l->kind = ss.ss_family == AF_UNIX ? KINO_UNIX : KINO_TCP;
    struct stat st;
    if (l->kind == KINO_UNIX && path && path[0] != '@' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        l->path = strdup(path);
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    return fd;
}

static int local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Open every listener the options name, into s->ls. On failure closes
 * those opened and returns -1 with a message in err. */
static int listeners_open(kino_server *s, const kino_options *o, char *err, size_t errlen) {
    kino_listen one = {.host = o->bind, .port = o->port, .fd = -1};
    const kino_listen *spec = o->nlisten > 0 ? o->listen : &one;
    int n = o->nlisten > 0 ? o->nlisten : 1;
    int backlog = o->backlog > 0 ? o->backlog : 1024;
    s->ls = calloc((size_t)n, sizeof *s->ls);
    if (!s->ls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->port = 0;
    for (int i = 0; i < n; i++) {
        kino_lsock *l = &s->ls[i];
        const kino_listen *w = &spec[i];
        l->flags = w->flags;
        l->kind = w->path ? KINO_UNIX : KINO_TCP;
        if (w->fd >= 0) l->fd = listen_adopt(l, w->fd, w->path, err, errlen);
        else if (w->path) l->fd = listen_unix(l, w->path, backlog, err, errlen);
        else l->fd = listen_tcp(w->host, w->port, backlog, err, errlen);
        s->nls = i + 1;
        if (l->fd < 0) {
            listeners_close(s);
            return -1;
        }
        l->port = l->kind == KINO_TCP ? local_port(l->fd) : 0;
        if (l->kind == KINO_TCP && !s->port) s->port = l->port;
    }
    return 0;
}

/* Close every listener and remove the unix socket files this server
 * made -- unless they are handed on (kino_server_keep_listeners). A file
 * is removed only while it is still the socket bound here. */
static void listeners_close(kino_server *s) {
    for (int i = 0; i < s->nls; i++) {
        kino_lsock *l = &s->ls[i];
        struct stat st;
        if (s->keep_listeners) continue;
        if (l->fd >= 0) close(l->fd);
        l->fd = -1;
        if (l->path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        free(l->path);
        l->path = NULL;
    }
}

/* 80% of the open-file limit, at least 64, when not given. */
static uint64_t default_max_conns(int given) {
    struct rlimit rl;
    if (given > 0) return (uint64_t)given;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 65536;
    uint64_t n = (uint64_t)rl.rlim_cur * 8 / 10;
    return n < 64 ? 64 : n;
}

static void server_tls_free(kino_server *s) {
#ifdef KINO_TLS
    kino_tls_ctx_free(s->tls);
    s->tls = NULL;
#endif
    (void)s;
}

/* The TLS context the listeners flagged KINO_LISTEN_TLS share, from
 * o->tls (which also makes the one bind:port listener TLS when no list
 * is given). Fails, with a message, when a TLS listener has no settings,
 * the settings are wrong (kino_tls_ctx_new names the file), or this
 * build has no TLS. */
static int server_tls_open(kino_server *s, const kino_options *o, char *err, size_t errlen) {
    int want = 0;
    if (o->nlisten == 0 && o->tls) s->ls[0].flags |= KINO_LISTEN_TLS;
    for (int i = 0; i < s->nls; i++) want |= (s->ls[i].flags & KINO_LISTEN_TLS) != 0;
    if (!want) return 0;
#ifdef KINO_TLS
    if (!o->tls) {
        snprintf(err, errlen, "TLS: a TLS listener needs a certificate and a key (the tls settings)");
        return -1;
    }
    s->tls = kino_tls_ctx_new(o->tls, err, errlen);
    return s->tls ? 0 : -1;
#else
    snprintf(err, errlen, "TLS was asked for, but this Kino was built without it "
                          "(OpenSSL's headers were not found at build time, or make TLS=0)");
    return -1;
#endif
}

kino_server *kino_server_new(const kino_options *o, char *err, size_t errlen) {
    if (o->io_threads < 1 || o->queue_depth < 1) {
        snprintf(err, errlen, "io_threads and queue_depth must be at least 1");
        return NULL;
    }
    kino_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->o.listen = NULL; /* the caller's array is not kept */
    s->o.nlisten = 0;
    s->o.tls = NULL;    /* nor its TLS settings: they are read here */
    s->o.bind = NULL;   /* nor its bind string (the Ruby binding passes a
                           Ruby String's bytes, which the GC may move) */
    if (listeners_open(s, o, err, errlen) < 0) {
        free(s->ls);
        free(s);
        return NULL;
    }
    if (server_tls_open(s, o, err, errlen) < 0) {
        listeners_close(s);
        free(s->ls);
        free(s);
        return NULL;
    }
    s->max_conns = default_max_conns(o->max_connections);
    s->header_ms = to_ms(o->header_timeout);
    s->keepalive_ms = to_ms(o->keepalive_timeout);
    s->body_ms = to_ms(o->body_timeout);
    s->queue_ms = to_ms(o->queue_timeout);
    s->request_ms = to_ms(o->request_timeout);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->gone_mu, NULL);
    pthread_cond_init(&s->unlistened, NULL);
    klist_init(&s->ready);
    klist_init(&s->sleepers);
    klist_init(&s->waiters);
    s->nio = o->io_threads;
    s->io = calloc((size_t)s->nio, sizeof *s->io);
    if (!s->io) {
        listeners_close(s);
        free(s->ls);
        server_tls_free(s);
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io->s = s;
        io->index = i;
        io->p.fd = -1;
        klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_queue, &io->t_away,
                          &io->t_held, &io->t_flush, &io->t_linger};
        for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) klist_init(lists[k]);
    }
    date_refresh();
    kino_log_start(); /* once per process: canned answers leave notes */
    return s;
}

int kino_server_start(kino_server *s, char *err, size_t errlen) {
    if (s->started) return KINO_OK;
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io->now = mono_ms();
        io->p.shared = s->o.shared_listener;
        if (poller_open(&io->p, io) < 0 || io_listen_all(io, 1) < 0) {
            snprintf(err, errlen, "cannot create the poller: %s", strerror(errno));
            kino_server_stop(s);
            return KINO_ERROR;
        }
        io->listening = 1;
        atomic_fetch_add(&s->listeners, 1);
    }
    for (int i = 0; i < s->nio; i++) {
        /* pthread_create returns its error; it leaves errno alone */
        int e = KINO_THREAD_CREATE(&s->io[i].thread, NULL, io_main, &s->io[i]);
        if (e != 0) {
            snprintf(err, errlen, "cannot start an I/O thread: %s", strerror(e));
            kino_server_stop(s);
            return KINO_ERROR;
        }
        s->io[i].running = 1;
    }
    s->started = 1;
    return KINO_OK;
}

int kino_server_port(const kino_server *s) { return s->port; }

int kino_server_listener_count(const kino_server *s) { return s->nls; }

int kino_server_listener(const kino_server *s, int i, kino_listener_info *out) {
    if (i < 0 || i >= s->nls) return KINO_ERROR;
    out->fd = s->ls[i].fd;
    out->kind = s->ls[i].kind;
    out->port = s->ls[i].port;
    out->flags = s->ls[i].flags;
    return KINO_OK;
}

void kino_server_keep_listeners(kino_server *s) { s->keep_listeners = 1; }

int kino_server_stopped(kino_server *s) {
    pthread_mutex_lock(&s->mu);
    int stopped = s->stopped;
    pthread_mutex_unlock(&s->mu);
    return stopped;
}

/* Wake every I/O thread, unconditionally. */
static void wake_all(kino_server *s) {
    for (int i = 0; i < s->nio; i++)
        if (s->io[i].running) poller_wake(&s->io[i].p);
}

void kino_server_drain(kino_server *s) {
    if (atomic_exchange(&s->draining, 1)) return;
    if (!s->started) {
        listeners_close(s);
        return;
    }
    wake_all(s);
    /* until the last I/O thread has closed the listeners (io_release_listener
     * says so at once), or 2 s: an I/O thread stuck on something else must
     * not hold the caller forever */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    pthread_mutex_lock(&s->mu);
    while (atomic_load(&s->listeners) > 0)
        if (pthread_cond_timedwait(&s->unlistened, &s->mu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&s->mu);
}

long kino_server_pending(kino_server *s) {
    return (long)atomic_load(&s->conns) + (long)atomic_load(&s->in_flight);
}

void kino_server_abort(kino_server *s) {
    klist stolen;
    kino_server_drain(s);
    if (atomic_exchange(&s->aborting, 1)) return;
    /* queued requests go back to their I/O threads to be answered */
    klist_init(&stolen);
    pthread_mutex_lock(&s->mu);
    while (!klist_empty(&s->ready)) {
        klist *n = s->ready.next;
        klist_remove(n);
        klist_push(&stolen, n);
        s->nready--;
    }
    pthread_mutex_unlock(&s->mu);
    while (!klist_empty(&stolen)) {
        kino_conn *c = KLIST_ENTRY(stolen.next, kino_conn, qlink);
        klist_remove(&c->qlink);
        atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
        log_canned(s, -1, c, 500, 0); /* no worker saw it: its line is written here */
        release(c, NEXT_ABORT);
    }
    wake_all(s);
}

void kino_server_stop(kino_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopped = 1;
    for (klist *n = s->sleepers.next; n != &s->sleepers; n = n->next)
        pthread_cond_signal(&KLIST_ENTRY(n, kino_waiter, link)->cond);
    pthread_mutex_unlock(&s->mu);
    if (atomic_exchange(&s->stopping, 1)) return;
    wake_all(s);
    for (int i = 0; i < s->nio; i++) {
        if (s->io[i].running) pthread_join(s->io[i].thread, NULL);
        s->io[i].running = 0;
    }
    atomic_store(&s->io_gone, 1);
    /* everything the I/O threads still held is closed now; connections
     * that workers hold are closed when they are handed back (release),
     * perhaps at this very moment: the timer lists are shared with them */
    pthread_mutex_lock(&s->gone_mu);
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io_returns(io);
        klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_queue, &io->t_flush,
                          &io->t_linger};
        for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) close_list(io, lists[k]);
    }
    pthread_mutex_lock(&s->mu);
    while (!klist_empty(&s->ready)) {
        kino_conn *c = KLIST_ENTRY(s->ready.next, kino_conn, qlink);
        klist_remove(&c->qlink);
        s->nready--;
        conn_destroy(s, c->io, c);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->gone_mu);
    listeners_close(s);
}

void kino_server_free(kino_server *s) {
    if (!s) return;
    kino_server_stop(s);
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        kino_conn *c = atomic_exchange(&io->returns, NULL);
        while (c) {
            kino_conn *n = c->rnext;
            conn_destroy(s, NULL, c);
            c = n;
        }
        /* requests still away were abandoned by their workers */
        while (!klist_empty(&io->t_away))
            conn_destroy(s, NULL, KLIST_ENTRY(io->t_away.next, kino_conn, tlink));
        while (!klist_empty(&io->t_held))
            conn_destroy(s, NULL, KLIST_ENTRY(io->t_held.next, kino_conn, tlink));
        while (io->pool) {
            kino_buf *b = io->pool;
            io->pool = b->next;
            free(b);
        }
        if (io->p.fd >= 0) poller_close(&io->p);
    }
    pthread_mutex_destroy(&s->mu);
    for (int i = 0; i < s->nls; i++) free(s->ls[i].path);
    free(s->ls);
    server_tls_free(s);

    pthread_mutex_destroy(&s->gone_mu);
    pthread_cond_destroy(&s->unlistened);
    free(s->io);
    free(s);
}

void kino_server_stats(kino_server *s, kino_stats *out) {
#define LOAD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
    out->accepted = LOAD(accepted);
    out->connections = LOAD(conns);
    out->served = LOAD(served);
    out->queued = LOAD(queued);
    out->in_flight = LOAD(in_flight);
    out->rejected = LOAD(rejected);
    out->timeouts = LOAD(timeouts);
    out->errors = LOAD(errors);
    out->hijacked = LOAD(hijacked);
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) out->queue_wait[i] = LOAD(queue_wait[i]);
    out->queue_wait_sum_ms = LOAD(queue_wait_sum_ms);
    out->respawns = LOAD(respawns);
#undef LOAD
}

void kino_server_note_respawn(kino_server *s) {
    atomic_fetch_add_explicit(&s->respawns, 1, memory_order_relaxed);
}

int64_t kino_wait_bucket_ms(int i) {
    return i >= 0 && i < KINO_WAIT_BUCKETS - 1 ? wait_bounds[i] : -1;
}

int kino_server_workers(kino_server *s, kino_worker_stats *out, int max) {
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->waiters.next; k != &s->waiters; k = k->next, n++) {
        kino_waiter *w = KLIST_ENTRY(k, kino_waiter, all);
        if (n >= max) continue; /* counted, not copied */
        out[n].worker = w->worker;
        out[n].served = atomic_load_explicit(&w->served, memory_order_relaxed);
        out[n].busy_ms = atomic_load_explicit(&w->busy_ms, memory_order_relaxed);
        out[n].in_flight = atomic_load_explicit(&w->in_flight, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ================================================================== */
/* 14. Access log                                                     */
/* ================================================================== */

/* Every request leaves exactly one access line (when the server has an
 * access log): a worker writes it in kino_next for every request it
 * took, whatever became of it; the I/O thread writes it where it answers
 * a request no worker ever took (conn_reject, and kino_server_abort for
 * queued ones). Independently of the access log, every canned answer the
 * app never saw leaves a note on stderr saying why and what to change,
 * at most one per kind per second (kino_log_note_due). */

#define LG_METHOD 32
#define LG_TARGET 2048
#define LG_RID 256

/* Microseconds on the precise monotonic clock (vDSO: no syscall). */
static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The X-Request-Id value of h, or a NULL span. */
static kino_span request_id(const kino_head *h) {
    kino_span none = {NULL, 0};
    for (size_t i = 0; h->headers && i < h->nheaders; i++)
        if (h->headers[i].name.n == 12 && span_is(h->headers[i].name, "x-request-id"))
            return h->headers[i].value;
    return none;
}

/* Copy what the line needs from c's head into the waiter, which owns the
 * request until kino_next: the head's spans die at the first body read. */
static void log_capture(kino_waiter *w, kino_conn *c) {
    const kino_head *h = &c->head;
    if (!w->lg && !(w->lg = malloc(LG_METHOD + LG_TARGET + LG_RID))) return;
    kino_span rid = request_id(h);
    w->lg_method = h->method.n < LG_METHOD ? h->method.n : LG_METHOD;
    w->lg_target = h->target.n < LG_TARGET ? h->target.n : LG_TARGET;
    w->lg_rid = rid.n < LG_RID ? rid.n : LG_RID;
    w->lg_has_rid = rid.p != NULL;
    w->lg_minor = h->minor;
    if (w->lg_method) memcpy(w->lg, h->method.p, w->lg_method);
    if (w->lg_target) memcpy(w->lg + LG_METHOD, h->target.p, w->lg_target);
    if (w->lg_rid) memcpy(w->lg + LG_METHOD + LG_TARGET, rid.p, w->lg_rid);
}

/* The access line of a request a worker took: the status the client
 * got (504 or 500 when a timeout or shutdown answered instead of the
 * app, 500 when nobody answered, 499 when the client left first, 0 for
 * a full hijack, whose response the app wrote itself). */
static void log_taken(kino_conn *c, kino_waiter *w) {
    kino_server *s = c->io->s;
    int ans = atomic_load(&c->answer), status;
    uint64_t bytes = c->sent + (c->out ? c->out_len - c->out_off : 0);
    char msg[512];
    if (!w->lg) return;
    if (ans == ANS_TIMEOUT || ans == ANS_SHUTDOWN) {
        status = ans == ANS_TIMEOUT ? 504 : 500;
        bytes = canned(msg, sizeof msg, status);
    } else if (ans == ANS_HIJACK && !c->final) {
        status = 0; /* a full hijack: the app answered on the socket itself */
    } else if (c->final) {
        status = c->status;
    } else if (c->broken) {
        status = 499;
    } else {
        status = 500;
        bytes = canned(msg, sizeof msg, status);
    }
    kino_log_request r = {
        .peer = c->peer, .method = w->lg, .method_n = w->lg_method,
        .target = w->lg + LG_METHOD, .target_n = w->lg_target, .minor = w->lg_minor,
        .status = status, .bytes = bytes, .duration_us = now_us() - c->t_start,
        .request_id = w->lg_has_rid ? w->lg + LG_METHOD + LG_TARGET : NULL,
        .request_id_n = w->lg_rid,
    };
    kino_log_request_line(s->o.log_sink, s->o.log_format, &r);
}

/* Why a canned answer was sent, and the setting that changes it. */
static void canned_why(kino_server *s, kino_conn *c, int status, char *buf, size_t cap) {
    const kino_options *o = &s->o;
    switch (status) {
    case 400:
        snprintf(buf, cap, "malformed request (request line, header fields or framing; RFC 9112); "
                           "a client or proxy bug, no setting changes this");
        break;
    case 408:
        if (c && c->state == C_BODY)
            snprintf(buf, cap, "the request body paused longer than body_timeout (%gs); raise "
                               "body_timeout for slow clients", o->body_timeout);
        else
            snprintf(buf, cap, "the request head did not arrive within header_timeout (%gs); raise "
                               "header_timeout for slow clients", o->header_timeout);
        break;
    case 413:
        if (c && c->head.content_length < 0)
            snprintf(buf, cap, "chunked body announced or sent more than max_body_size (%llu bytes); "
                               "raise max_body_size to accept it", (unsigned long long)o->max_body_size);
        else
            snprintf(buf, cap, "declared body of %lld bytes is over max_body_size (%llu bytes); raise "
                               "max_body_size to accept it", c ? (long long)c->head.content_length : -1LL,
                     (unsigned long long)o->max_body_size);
        break;
    case 414:
        snprintf(buf, cap, "request line longer than %d bytes (the build-time limit "
                           "KINO_MAX_REQUEST_LINE)", KINO_MAX_REQUEST_LINE);
        break;
    case 431:
        snprintf(buf, cap, "request head over %d bytes or %d header fields (the build-time limits "
                           "KINO_MAX_HEAD, KINO_MAX_HEADERS)", KINO_MAX_HEAD, KINO_MAX_HEADERS);
        break;
    case 501:
        snprintf(buf, cap, "a transfer coding or method (CONNECT) Kino does not implement");
        break;
    case 505:
        snprintf(buf, cap, "an HTTP version other than 1.x");
        break;
    case 503:
        snprintf(buf, cap, "no worker was free within queue_timeout (%gs) with queue_depth (%d) "
                           "requests queued; add workers or threads, or raise queue_depth or "
                           "queue_timeout", o->queue_timeout, o->queue_depth);
        break;
    case 504:
        snprintf(buf, cap, "the app took longer than request_timeout (%gs); raise request_timeout "
                           "or make the endpoint faster", o->request_timeout);
        break;
    default:
        snprintf(buf, cap, "unanswered when the shutdown_timeout ran out (a forced stop); raise "
                           "shutdown_timeout to let long requests finish");
    }
}

/* Note kinds for the rate limit: one per canned status. */
static int note_kind(int status) {
    static const int kinds[] = {400, 408, 413, 414, 431, 501, 505, 503, 504, 500};
    for (int i = 0; i < (int)(sizeof kinds / sizeof *kinds); i++)
        if (kinds[i] == status) return i;
    return KINO_LOG_NOTE_KINDS - 1;
}

/* A canned answer the app never saw: its access line (when c is given
 * and the server has an access log) and the rate-limited note. c's head
 * is either this request's (maybe partly parsed) or zeroed. */
static void log_canned(kino_server *s, int io_index, kino_conn *c, int status, size_t bytes) {
    const kino_head *h = c ? &c->head : NULL;
    if (c && s->o.log_sink) {
        kino_span rid = request_id(h);
        kino_log_request r = {
            .peer = c->peer, .method = h->method.p, .method_n = h->method.n,
            .target = h->target.p, .target_n = h->target.n < LG_TARGET ? h->target.n : LG_TARGET,
            .minor = h->method.p ? h->minor : -1, .status = status, .bytes = bytes,
            .duration_us = c->t_start && h->method.p ? now_us() - c->t_start : 0,
            .request_id = rid.p, .request_id_n = rid.n < LG_RID ? rid.n : LG_RID,
        };
        kino_log_request_line(s->o.log_sink, s->o.log_format, &r);
    }
    uint64_t held = 0;
    if (!kino_log_note_due(note_kind(status), &held)) return;
    char why[320], source[16], more[80] = "";
    if (io_index >= 0) snprintf(source, sizeof source, "io-%d", io_index);
    else snprintf(source, sizeof source, "main");
    if (held) snprintf(more, sizeof more, " (+%llu more since the last such note)", (unsigned long long)held);
    canned_why(s, c, status, why, sizeof why);
    if (h && h->method.p)
        kino_log_messagef(KINO_LOG_WARN, source, "%d for %.*s %.*s from %s: %s%s", status,
                          (int)h->method.n, h->method.p, (int)(h->target.n > 200 ? 200 : h->target.n),
                          h->target.p ? h->target.p : "", c->peer, why, more);
    else
        kino_log_messagef(KINO_LOG_WARN, source, "%d%s%s: %s%s", status, c ? " from " : "",
                          c ? c->peer : "", why, more);
}
