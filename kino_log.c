/*
 * kino_log.c -- the log sink: a bounded lock-free ring of log lines from
 * any thread, written out by one flusher thread per process. kino_log.h
 * describes the API; doc/logging.md the design and its measurements.
 * No Ruby in here. Sections:
 *
 *    1. platform     clocks, calendar arithmetic, file kinds
 *    2. ring         the multi-producer ring of fixed-size slots
 *    3. sinks        destinations: stdout, stderr, files; open, close, reopen
 *    4. flusher      the thread that batches lines and writes them
 *    5. fork, exit   a forked child gets an empty ring and its own flusher
 *    6. messages     Kino's own lines ("kino[pid] source: ..."), rate limits
 *    7. access log   one line per request, text or JSON
 *
 * Threads. Producers (I/O threads, workers, Ruby code) only touch the
 * ring and read sink ids. The flusher owns the batch buffers and does
 * every write(2); it holds `mu` while it drains and writes, and sleeps
 * on a condition variable with a timeout between passes (producers never
 * wake it: that would be a syscall). Opening, closing and reopening
 * take `mu` too, so they never race with a write.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "kino_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef KINO_LOG_SLOTS
#define KINO_LOG_SLOTS 8192       /* ring slots, a power of two */
#endif
#define KINO_LOG_SLOT 256         /* bytes per slot, header included */
#define KINO_LOG_SINKS 64         /* sinks at once, stdout and stderr included */
#define KINO_LOG_BATCH 65536      /* batch buffer per sink */
#define KINO_LOG_PIPE_WAIT_MS 50  /* how long a full pipe may hold a batch */
#define KINO_LOG_IDLE_MS 50       /* longest flusher sleep */

_Static_assert((KINO_LOG_SLOTS & (KINO_LOG_SLOTS - 1)) == 0, "KINO_LOG_SLOTS must be a power of two");
_Static_assert(KINO_LOG_BATCH > KINO_LOG_MAX_RECORD + 1, "a record must fit a batch");

/* ================================================================== */
/* 1. Platform                                                        */
/* ================================================================== */

#ifdef CLOCK_REALTIME_COARSE
#define LOG_WALL CLOCK_REALTIME_COARSE /* vDSO on Linux: no syscall */
#else
#define LOG_WALL CLOCK_REALTIME
#endif
#ifdef CLOCK_MONOTONIC_COARSE
#define LOG_MONO CLOCK_MONOTONIC_COARSE
#else
#define LOG_MONO CLOCK_MONOTONIC
#endif

/* A UTC calendar date and time, computed without gmtime_r (which takes
 * glibc's time zone lock). days: since 1970-01-01 (H. Hinnant's
 * civil_from_days). */
typedef struct civil {
    int year, month, day, hour, min, sec, wday, ms;
} civil;

static civil civil_of(const struct timespec *ts) {
    civil c;
    int64_t t = (int64_t)ts->tv_sec, days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days * 86400;
    c.hour = (int)(secs / 3600);
    c.min = (int)(secs / 60 % 60);
    c.sec = (int)(secs % 60);
    c.ms = (int)(ts->tv_nsec / 1000000);
    c.wday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    c.day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c.month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c.year = (int)((int64_t)yoe + era * 400 + (c.month <= 2));
    return c;
}

static int64_t mono_s(void) {
    struct timespec ts;
    clock_gettime(LOG_MONO, &ts);
    return (int64_t)ts.tv_sec;
}

/* Does fd need pipe treatment (writes of at most PIPE_BUF, a bounded
 * wait for room)? Everything that is not a regular file does. */
static int fd_is_pipe(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? !S_ISREG(st.st_mode) : 1;
}

static int open_append(const char *path) {
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* ================================================================== */
/* 2. Ring                                                            */
/* ================================================================== */

/* A bounded multi-producer queue after D. Vyukov's: each slot carries a
 * sequence number saying whose turn it is, and a producer claims slots
 * with one compare-and-swap on the enqueue position. A record longer
 * than one slot claims several consecutive positions at once: the one
 * consumer (the flusher) frees slots in position order, so when the last
 * slot of a range is free, all of it is. The producer publishes the
 * record's later slots first and its head last; the consumer looks at
 * heads only.
 *
 * The sequence is stored minus the slot's index, so the zeroed ring (in
 * BSS, pages touched only when used) is a valid empty ring: slot i
 * expects position i. */
#define SLOT_DATA (KINO_LOG_SLOT - 16)
#define MASK (KINO_LOG_SLOTS - 1)
#define MAX_SLOTS ((KINO_LOG_MAX_RECORD + 1 + SLOT_DATA - 1) / SLOT_DATA)
_Static_assert(MAX_SLOTS <= KINO_LOG_SLOTS / 4, "the ring must hold several longest records");

typedef struct lslot {
    _Atomic size_t seq;  /* position whose turn it is, minus the index */
    uint32_t sink;       /* head: the sink id */
    uint16_t len;        /* bytes of data in this slot */
    uint16_t n;          /* head: slots in the record */
    char data[SLOT_DATA];
} lslot;
_Static_assert(sizeof(lslot) == KINO_LOG_SLOT, "a slot is KINO_LOG_SLOT bytes");

static lslot ring[KINO_LOG_SLOTS];
static _Atomic size_t enq;     /* next position to claim */
static size_t deq;             /* next position to take (flusher, under mu) */
static _Atomic size_t written; /* every record before it is written or dropped */
static _Atomic uint64_t dropped;

static size_t seq_load(size_t pos) {
    size_t i = pos & MASK;
    return atomic_load_explicit(&ring[i].seq, memory_order_acquire) + i;
}

static void seq_store(size_t pos, size_t seq) {
    size_t i = pos & MASK;
    atomic_store_explicit(&ring[i].seq, seq - i, memory_order_release);
}

/* Queue p[0..n) (plus a newline when nl) for sink as one record. Lock-
 * free and wait-free but for CAS retries; -1 when the ring is full. */
static int ring_put(uint32_t sink, const char *p, size_t n, int nl) {
    size_t total = n + (size_t)nl, k = total ? (total + SLOT_DATA - 1) / SLOT_DATA : 1;
    size_t pos = atomic_load_explicit(&enq, memory_order_relaxed);
    for (;;) {
        size_t last = pos + k - 1;
        intptr_t dif = (intptr_t)(seq_load(last) - last);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&enq, &pos, pos + k, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
            return -1; /* the flusher is a lap behind: full */
        } else {
            pos = atomic_load_explicit(&enq, memory_order_relaxed);
        }
    }
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        lslot *s = &ring[(pos + i) & MASK];
        size_t m = total - off < SLOT_DATA ? total - off : SLOT_DATA;
        size_t from_p = off < n ? (n - off < m ? n - off : m) : 0;
        memcpy(s->data, p + off, from_p);
        if (from_p < m) s->data[from_p] = '\n'; /* the added newline */
        s->len = (uint16_t)m;
        s->sink = sink;
        s->n = (uint16_t)k;
        off += m;
    }
    for (size_t i = k; i-- > 0;) seq_store(pos + i, pos + i + 1);
    return 0;
}

/* ================================================================== */
/* 3. Sinks                                                           */
/* ================================================================== */

/* A sink id is (generation << 8) | index, so a closed sink's id never
 * names the next sink in its slot. Stdout and stderr are ids 1 and 2. */
typedef struct sink {
    _Atomic uint32_t id;  /* 0: free */
    int fd;
    int owned;            /* opened here: closed by kino_log_close */
    char *path;           /* for reopen; NULL for stdout and stderr */
    char *buf;            /* the flusher's batch */
    size_t len;
    int stalled;          /* a pipe that stayed full last time */
    int listed;           /* in order[] for this pass */
    uint32_t gen;
} sink;

static sink sinks[KINO_LOG_SINKS];
static int order[KINO_LOG_SINKS], norder; /* sinks with a batch, first come first (flusher) */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick, done; /* wake the flusher; a pass ended */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_t flusher;
static int running;               /* the flusher thread exists (under mu) */
static int stopping;              /* kino_log_stop asked it to end (under mu) */
static _Atomic int route_out = KINO_LOG_STDOUT, route_err = KINO_LOG_STDERR;
static _Atomic int log_pid;

/* The sink an id names, or NULL (free, closed, or a stale id). */
static sink *sink_of(uint32_t id) {
    sink *k = &sinks[id & 0xff];
    return id && atomic_load_explicit(&k->id, memory_order_acquire) == id ? k : NULL;
}

static void init_std(int idx, int fd) {
    sinks[idx].fd = fd;
    sinks[idx].buf = malloc(KINO_LOG_BATCH);
    if (sinks[idx].buf) atomic_store(&sinks[idx].id, (uint32_t)idx);
}

int kino_log_open(const char *path, char *err, size_t errlen) {
    kino_log_start(); /* lines queue even if no thread could start */
    int fd = path ? open_append(path) : STDOUT_FILENO;
    if (fd < 0) {
        if (err) snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *copy = path ? strdup(path) : NULL;
    char *buf = malloc(KINO_LOG_BATCH);
    pthread_mutex_lock(&mu);
    int idx = 3;
    while (idx < KINO_LOG_SINKS && atomic_load(&sinks[idx].id)) idx++;
    if (idx == KINO_LOG_SINKS || !buf || (path && !copy)) {
        pthread_mutex_unlock(&mu);
        if (path) close(fd);
        free(copy);
        free(buf);
        if (err) snprintf(err, errlen, idx == KINO_LOG_SINKS ? "too many open logs (%d)" : "out of memory",
                          KINO_LOG_SINKS - 3);
        return -1;
    }
    sink *k = &sinks[idx];
    k->fd = fd;
    k->owned = path != NULL;
    k->path = copy;
    k->buf = buf;
    k->len = 0;
    k->stalled = 0;
    k->gen = (k->gen + 1) & 0xffffff;
    if (!k->gen) k->gen = 1;
    uint32_t id = k->gen << 8 | (uint32_t)idx;
    atomic_store_explicit(&k->id, id, memory_order_release);
    pthread_mutex_unlock(&mu);
    return (int)id;
}

void kino_log_close(int id) {
    if (id <= KINO_LOG_STDERR) return;
    kino_log_flush(2.0);
    pthread_mutex_lock(&mu);
    sink *k = sink_of((uint32_t)id);
    if (k) {
        atomic_store(&k->id, 0);
        if (k->owned) close(k->fd);
        free(k->path);
        free(k->buf);
        k->path = k->buf = NULL;
        k->len = 0;
    }
    pthread_mutex_unlock(&mu);
}

/* Reopen k at its path over its own fd number; under mu. */
static int sink_reopen(sink *k) {
    if (!k->path) return 0;
    int fd = open_append(k->path);
    if (fd < 0) return -1;
    int r = dup2(fd, k->fd);
    int e = errno;
    close(fd);
    if (r < 0) {
        errno = e;
        return -1;
    }
    fcntl(k->fd, F_SETFD, FD_CLOEXEC);
    return 1;
}

int kino_log_reopen(int id) {
    pthread_mutex_lock(&mu);
    sink *k = sink_of((uint32_t)id);
    int r = k ? sink_reopen(k) : -1;
    pthread_mutex_unlock(&mu);
    return r < 0 ? -1 : 0;
}

int kino_log_reopen_all(void) {
    int n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 3; i < KINO_LOG_SINKS; i++) {
        sink *k = &sinks[i];
        if (atomic_load(&k->id) && k->path && sink_reopen(k) > 0) n++;
    }
    pthread_mutex_unlock(&mu);
    return n;
}

int kino_log_write(int id, const char *p, size_t n) {
    if (!sink_of((uint32_t)id)) return -1;
    int r = 0;
    while (n > KINO_LOG_MAX_RECORD) { /* cut at the last line end that fits */
        size_t cut = KINO_LOG_MAX_RECORD;
        while (cut > 0 && p[cut - 1] != '\n') cut--;
        if (cut == 0) cut = KINO_LOG_MAX_RECORD; /* one very long line: broken */
        r |= ring_put((uint32_t)id, p, cut, p[cut - 1] != '\n');
        p += cut;
        n -= cut;
    }
    if (n == 0) return r;
    return ring_put((uint32_t)id, p, n, p[n - 1] != '\n') | r;
}

/* ================================================================== */
/* 4. Flusher                                                         */
/* ================================================================== */

static uint64_t count_lines(const char *p, size_t n) {
    uint64_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) lines++;
    return lines;
}

/* Write k's batch. A file gets one write(2) per batch (retried when
 * short). A pipe, terminal or socket gets writes of whole lines of at
 * most PIPE_BUF bytes (atomic, so other processes' lines never land
 * inside ours; a longer line goes alone), each after poll says there is
 * room: a pipe that stays full for KINO_LOG_PIPE_WAIT_MS (0 while it
 * stays full) loses the batch, counted as dropped lines. */
static void sink_flush(sink *k) {
    const char *p = k->buf, *e = k->buf + k->len;
    int pipe = fd_is_pipe(k->fd);
    while (p < e) {
        size_t n = (size_t)(e - p);
        if (pipe && n > PIPE_BUF) {
            const char *cut = p + PIPE_BUF;
            while (cut > p && cut[-1] != '\n') cut--;
            if (cut == p) cut = memchr(p, '\n', n) ? (const char *)memchr(p, '\n', n) + 1 : e;
            n = (size_t)(cut - p);
        }
        if (pipe) {
            struct pollfd pf = {.fd = k->fd, .events = POLLOUT};
            if (poll(&pf, 1, k->stalled ? 0 : KINO_LOG_PIPE_WAIT_MS) <= 0 || !(pf.revents & POLLOUT)) {
                k->stalled = 1;
                break;
            }
            k->stalled = 0;
        }
        ssize_t w = write(k->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
    }
    if (p < e) atomic_fetch_add_explicit(&dropped, count_lines(p, (size_t)(e - p)), memory_order_relaxed);
    k->len = 0;
}

/* Take every published record into its sink's batch, writing a batch
 * out first when it is full. Returns the records taken. Under mu. */
static size_t drain(void) {
    size_t taken = 0;
    while (seq_load(deq) == deq + 1) {
        lslot *h = &ring[deq & MASK];
        size_t k = h->n ? h->n : 1;
        sink *s = sink_of(h->sink);
        size_t total = 0;
        for (size_t i = 0; i < k; i++) total += ring[(deq + i) & MASK].len;
        if (s && s->len + total > KINO_LOG_BATCH) sink_flush(s);
        if (s && !s->listed) {
            s->listed = 1;
            order[norder++] = (int)(s - sinks);
        }
        for (size_t i = 0; i < k; i++) {
            lslot *sl = &ring[(deq + i) & MASK];
            if (s) {
                memcpy(s->buf + s->len, sl->data, sl->len);
                s->len += sl->len;
            }
        }
        for (size_t i = 0; i < k; i++) seq_store(deq + i, deq + i + KINO_LOG_SLOTS);
        deq += k;
        taken++;
    }
    return taken;
}

/* One pass: drain, write every batch in the order its first line came
 * (a warning on stderr queued before the banner on stdout is written
 * before it), publish progress. Under mu. */
static size_t pass(void) {
    size_t taken = drain();
    for (int i = 0; i < norder; i++) {
        sink *k = &sinks[order[i]];
        if (k->len && atomic_load(&k->id)) sink_flush(k);
        k->len = 0;
        k->listed = 0;
    }
    norder = 0;
    atomic_store(&written, deq);
    pthread_cond_broadcast(&done);
    return taken;
}

static void deadline_in(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The flusher: a pass, then a nap. After a busy pass it naps 1 ms, so
 * lines arriving meanwhile share the next write; when idle the nap
 * doubles up to KINO_LOG_IDLE_MS, the longest a lone line waits.
 * kino_log_flush cuts a nap short. Signals stay with the host's threads. */
static void *flusher_main(void *arg) {
    sigset_t all;
    long nap = 1;
    (void)arg;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&mu);
    while (!stopping) {
        nap = pass() ? 1 : (nap * 2 > KINO_LOG_IDLE_MS ? KINO_LOG_IDLE_MS : nap * 2);
        struct timespec ts;
        deadline_in(&ts, nap);
        pthread_cond_timedwait(&kick, &mu, &ts);
    }
    pass();
    pthread_mutex_unlock(&mu);
    return NULL;
}

static int start_thread(void) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&kick, &ca);
    pthread_cond_init(&done, &ca);
    pthread_condattr_destroy(&ca);
    stopping = 0;
    running = pthread_create(&flusher, NULL, flusher_main, NULL) == 0;
    return running ? 0 : -1;
}

int kino_log_flush(double timeout) {
    size_t target = atomic_load(&enq);
    struct timespec ts;
    deadline_in(&ts, (long)(timeout * 1000));
    pthread_mutex_lock(&mu);
    if (!running) pass(); /* no flusher (yet, or it failed): write here */
    pthread_cond_signal(&kick);
    int r = 0;
    while (atomic_load(&written) < target) {
        if (!running) {
            if (!pass()) break; /* a producer has not published yet */
            continue;
        }
        if (pthread_cond_timedwait(&done, &mu, &ts) == ETIMEDOUT) break;
    }
    if (atomic_load(&written) < target) r = -1;
    pthread_mutex_unlock(&mu);
    return r;
}

uint64_t kino_log_dropped(void) { return atomic_load_explicit(&dropped, memory_order_relaxed); }

/* ================================================================== */
/* 5. Fork and exit                                                   */
/* ================================================================== */

/* Around fork(2) `mu` is held, so the child's copy of the sinks and the
 * consumer side of the ring is between passes. The parent writes what
 * was queued before the fork; the child marks those positions consumed
 * (slots claimed by threads that do not exist in the child are never
 * published, and must not stall it) and starts its own flusher. */
static void fork_prepare(void) { pthread_mutex_lock(&mu); }
static void fork_parent(void) { pthread_mutex_unlock(&mu); }

static void fork_child(void) {
    size_t end = atomic_load(&enq);
    for (size_t p = deq; p < end; p++) seq_store(p, p + KINO_LOG_SLOTS);
    deq = end;
    atomic_store(&written, end);
    for (int i = 0; i < KINO_LOG_SINKS; i++) sinks[i].len = sinks[i].listed = 0;
    norder = 0;
    atomic_store(&log_pid, (int)getpid());
    int was = running;
    running = 0;
    pthread_mutex_unlock(&mu);
    if (was) {
        pthread_mutex_lock(&mu);
        start_thread();
        pthread_mutex_unlock(&mu);
    }
}

/* At exit, write what is queued (bounded: a full pipe does not hold
 * the exit up for more than a moment). */
static void exit_drain(void) { kino_log_flush(2.0); }

static void init_once(void) {
    atomic_store(&log_pid, (int)getpid());
    init_std(KINO_LOG_STDOUT, STDOUT_FILENO);
    init_std(KINO_LOG_STDERR, STDERR_FILENO);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    atexit(exit_drain);
    pthread_mutex_lock(&mu);
    start_thread();
    pthread_mutex_unlock(&mu);
}

int kino_log_start(void) {
    pthread_once(&once, init_once);
    pthread_mutex_lock(&mu);
    int r = running ? 0 : start_thread();
    pthread_mutex_unlock(&mu);
    return r;
}

void kino_log_stop(void) {
    kino_log_flush(2.0);
    pthread_mutex_lock(&mu);
    int was = running;
    stopping = 1;
    pthread_cond_signal(&kick);
    pthread_mutex_unlock(&mu);
    if (was) pthread_join(flusher, NULL);
    pthread_mutex_lock(&mu);
    running = 0;
    pthread_mutex_unlock(&mu);
}

int kino_log_pid(void) { return atomic_load_explicit(&log_pid, memory_order_relaxed); }

/* ================================================================== */
/* 6. Messages                                                        */
/* ================================================================== */

/* A small appender over a fixed buffer: writes what fits, never more. */
typedef struct out {
    char *p;
    size_t n, cap;
} out;

static void put(out *o, const char *s, size_t n) {
    if (n > o->cap - o->n) n = o->cap - o->n;
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void put_s(out *o, const char *s) { put(o, s, strlen(s)); }

static void put_c(out *o, char c) {
    if (o->n < o->cap) o->p[o->n++] = c;
}

static void put_u(out *o, uint64_t v, int width) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width) tmp[n++] = '0';
    while (n) put_c(o, tmp[--n]);
}

void kino_log_route(int o, int e) {
    atomic_store(&route_out, o ? o : KINO_LOG_STDOUT);
    atomic_store(&route_err, e ? e : KINO_LOG_STDERR);
}

int kino_log_message(int level, const char *source, const char *msg, size_t n) {
    char buf[KINO_LOG_MAX_RECORD];
    char prefix[96];
    out pre = {prefix, 0, sizeof prefix};
    put_s(&pre, "kino[");
    put_u(&pre, (uint64_t)kino_log_pid(), 0);
    put_s(&pre, "] ");
    put_s(&pre, source && *source ? source : "main");
    put_s(&pre, ": ");
    int id = level == KINO_LOG_INFO ? atomic_load(&route_out) : atomic_load(&route_err), r = 0;
    out o = {buf, 0, sizeof buf};
    const char *p = msg, *e = msg + n;
    if (n && e[-1] == '\n') e--; /* a final newline ends the last line */
    do {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *end = nl ? nl : e;
        if (o.n && o.n + pre.n + (size_t)(end - p) + 1 > o.cap) { /* full: send what we have */
            r |= kino_log_write(id, o.p, o.n);
            o.n = 0;
        }
        put(&o, prefix, pre.n);
        put(&o, p, (size_t)(end - p));
        put_c(&o, '\n');
        p = nl ? nl + 1 : e;
    } while (p < e);
    return kino_log_write(id, o.p, o.n) | r;
}

int kino_log_messagef(int level, const char *source, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    return kino_log_message(level, source, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Per kind: the second (monotonic, plus one so 0 means never) of the
 * last note written, and how many were held back since. */
static struct {
    _Atomic int64_t last;
    _Atomic uint64_t held;
} notes[KINO_LOG_NOTE_KINDS];

int kino_log_note_due(int key, uint64_t *held) {
    if (key < 0 || key >= KINO_LOG_NOTE_KINDS) return 0;
    int64_t now = mono_s() + 1, last = atomic_load(&notes[key].last);
    if (last == now || !atomic_compare_exchange_strong(&notes[key].last, &last, now)) {
        atomic_fetch_add_explicit(&notes[key].held, 1, memory_order_relaxed);
        return 0;
    }
    *held = atomic_exchange(&notes[key].held, 0);
    return 1;
}

/* ================================================================== */
/* 7. Access log                                                      */
/* ================================================================== */

static const char hexd[] = "0123456789abcdef";

/* Field bytes for a text line: quotes, backslashes, controls and
 * non-ASCII bytes escaped as \xHH (the way nginx does). */
static void put_text(out *o, const char *p, size_t n, size_t max) {
    if (!p || !n) {
        put_c(o, '-');
        return;
    }
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            char esc[4] = {'\\', 'x', hexd[c >> 4], hexd[c & 15]};
            put(o, esc, 4);
        } else {
            put_c(o, (char)c);
        }
    }
}

/* A JSON string: controls as \u00XX, and bytes past ASCII as the code
 * point of the same number, so the line stays valid JSON whatever the
 * client sent. */
static void put_json(out *o, const char *p, size_t n, size_t max) {
    if (n > max) n = max;
    put_c(o, '"');
    for (size_t i = 0; p && i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            put_c(o, '\\');
            put_c(o, (char)c);
        } else if (c < 0x20 || c >= 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
            put(o, esc, 6);
        } else {
            put_c(o, (char)c);
        }
    }
    put_c(o, '"');
}

/* "12.3" for 12345 us with one decimal (text), "12.345" with three (JSON). */
static void put_ms(out *o, int64_t us, int decimals) {
    if (us < 0) us = 0;
    put_u(o, (uint64_t)(us / 1000), 0);
    put_c(o, '.');
    if (decimals == 1) put_u(o, (uint64_t)(us % 1000 / 100), 1);
    else put_u(o, (uint64_t)(us % 1000), 3);
}

/* Longest target kept in a line (longer ones are cut), and the buffer
 * that holds the longest line even with every byte escaped (6 bytes in
 * JSON): two target halves, a request id, the rest. */
#define FIELD_MAX 2048
#define RID_MAX 256
#define LINE_MAX_BYTES (2 * FIELD_MAX * 6 + RID_MAX * 6 + 1024)
_Static_assert(LINE_MAX_BYTES <= KINO_LOG_MAX_RECORD, "an access line is one record");

size_t kino_log_format_request(char *buf, size_t cap, int format, const kino_log_request *r) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timespec ts;
    clock_gettime(LOG_WALL, &ts);
    civil t = civil_of(&ts);
    out o = {buf, 0, cap ? cap - 1 : 0}; /* room for the newline */
    const char *proto = r->minor == 0 ? "HTTP/1.0" : r->minor == 1 ? "HTTP/1.1" : "-";
    if (format == KINO_LOG_JSON) {
        size_t path_n = r->target_n;
        const char *q = r->target ? memchr(r->target, '?', r->target_n) : NULL;
        if (q) path_n = (size_t)(q - r->target);
        put_s(&o, "{\"time\":\"");
        put_u(&o, (uint64_t)t.year, 4);
        put_c(&o, '-');
        put_u(&o, (uint64_t)t.month, 2);
        put_c(&o, '-');
        put_u(&o, (uint64_t)t.day, 2);
        put_c(&o, 'T');
        put_u(&o, (uint64_t)t.hour, 2);
        put_c(&o, ':');
        put_u(&o, (uint64_t)t.min, 2);
        put_c(&o, ':');
        put_u(&o, (uint64_t)t.sec, 2);
        put_c(&o, '.');
        put_u(&o, (uint64_t)t.ms, 3);
        put_s(&o, "Z\",\"remote_addr\":");
        put_json(&o, r->peer, r->peer ? strlen(r->peer) : 0, 64);
        put_s(&o, ",\"method\":");
        put_json(&o, r->method, r->method_n, 64);
        put_s(&o, ",\"path\":");
        put_json(&o, r->target, path_n, FIELD_MAX);
        put_s(&o, ",\"query\":");
        put_json(&o, q ? q + 1 : NULL, q ? r->target_n - path_n - 1 : 0, FIELD_MAX);
        put_s(&o, ",\"protocol\":");
        put_json(&o, proto, strlen(proto), 16);
        put_s(&o, ",\"status\":");
        if (r->status > 0) put_u(&o, (uint64_t)r->status, 0);
        else put_s(&o, "null"); /* unknown: a full hijack */
        put_s(&o, ",\"bytes\":");
        put_u(&o, r->bytes, 0);
        put_s(&o, ",\"duration_ms\":");
        put_ms(&o, r->duration_us, 3);
        if (r->request_id) {
            put_s(&o, ",\"request_id\":");
            put_json(&o, r->request_id, r->request_id_n, RID_MAX);
        }
        put_c(&o, '}');
    } else {
        static const char *const tint[6] = {"", "", "\033[32m", "\033[33m", "\033[31m", "\033[91m"};
        int cls = r->status / 100 >= 1 && r->status / 100 <= 5 ? r->status / 100 : 0;
        int color = format == KINO_LOG_TEXT_COLOR && cls >= 2;
        if (color) put_s(&o, tint[cls]);
        put_s(&o, r->peer && *r->peer ? r->peer : "-");
        put_s(&o, " [");
        put_s(&o, days[t.wday]);
        put_s(&o, ", ");
        put_u(&o, (uint64_t)t.day, 2);
        put_c(&o, ' ');
        put_s(&o, months[t.month - 1]);
        put_c(&o, ' ');
        put_u(&o, (uint64_t)t.year, 4);
        put_c(&o, ' ');
        put_u(&o, (uint64_t)t.hour, 2);
        put_c(&o, ':');
        put_u(&o, (uint64_t)t.min, 2);
        put_c(&o, ':');
        put_u(&o, (uint64_t)t.sec, 2);
        put_s(&o, " GMT] \"");
        put_text(&o, r->method, r->method_n, 64);
        put_c(&o, ' ');
        put_text(&o, r->target, r->target_n, FIELD_MAX);
        put_c(&o, ' ');
        put_s(&o, proto);
        put_s(&o, "\" ");
        if (r->status > 0) put_u(&o, (uint64_t)r->status, 0);
        else put_c(&o, '-');
        put_c(&o, ' ');
        put_u(&o, r->bytes, 0);
        put_c(&o, ' ');
        put_ms(&o, r->duration_us, 1);
        put_s(&o, "ms");
        if (color) put_s(&o, "\033[0m");
    }
    if (cap) buf[o.n++] = '\n';
    return o.n;
}

int kino_log_request_line(int sink, int format, const kino_log_request *r) {
    char buf[LINE_MAX_BYTES];
    return kino_log_write(sink, buf, kino_log_format_request(buf, sizeof buf, format, r));
}
