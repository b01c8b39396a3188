/*
 * kino_control.c -- the control plane: health probes, statistics and
 * Prometheus metrics on a listener of their own, answered by one C thread.
 *
 * The thread never touches Ruby and shares no lock with the workers: it
 * reads the engine's atomic counters (kino_server_stats), so it answers
 * while every worker is stuck in the application, holding the GVL. In a
 * host that gathers the numbers itself (the :cluster master, whose
 * workers are other processes) it shows the snapshots the host publishes
 * instead, asking for a fresh one per answer and waiting a bounded time
 * for it: a host whose workers are all stuck still gets an answer, the
 * last snapshot with its age. It is also a small attack surface, so it is
 * bounded everywhere: at most KINO_CONTROL_CONNS connections at once (the
 * rest wait in the backlog), a request head of at most KINO_CONTROL_HEAD
 * bytes, and KINO_CONTROL_MS for the whole exchange; every answer closes
 * the connection. A forked child closes every descriptor of it (section
 * 5): a worker process never holds the master's control socket.
 *
 *    1. platform    clocks, the listener, the wake pipe
 *    2. answers     /live, /ready, /stats (JSON), /metrics (Prometheus 0.0.4)
 *    3. requests    reading, limits, routing, the bearer token
 *    4. snapshots   what a host publishes; questions for a fresh one
 *    5. fork        the child closes what it inherited
 *    6. thread      the poll loop; new, start, free
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "kino.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef KINO_CONTROL_CONNS
#define KINO_CONTROL_CONNS 16     /* connections served at once */
#endif
#ifndef KINO_CONTROL_HEAD
#define KINO_CONTROL_HEAD 4096    /* longest request head */
#endif
#ifndef KINO_CONTROL_MS
#define KINO_CONTROL_MS 5000      /* longest exchange, read to last byte */
#endif
#ifndef KINO_CONTROL_HANDOVER_MS
#define KINO_CONTROL_HANDOVER_MS 1000 /* a hot restart: longest wait for the
                                         requests of accepted connections */
#endif
#ifndef KINO_CONTROL_WAIT_MS
#define KINO_CONTROL_WAIT_MS 1500 /* longest wait for a fresh snapshot */
#endif
#define CONTROL_ROWS KINO_CONTROL_ROWS /* rows read for per_worker */

/* How the thread is started: pthread_create, unless a test build puts
 * one in front of it that can fail on demand (test/c/run.c). */
#ifndef KINO_THREAD_CREATE
#define KINO_THREAD_CREATE pthread_create
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

typedef struct cconn {
    int fd;
    int64_t deadline;
    int64_t wait_until;           /* > 0: waiting for a snapshot */
    uint64_t want;                /* ... that answers this question */
    int metrics, head_only;       /* ... for this answer */
    short revents;                /* what the last poll saw on fd */
    size_t len;
    char in[KINO_CONTROL_HEAD];
    char *out;                    /* the whole answer, once known */
    size_t out_len, out_off;
} cconn;

struct kino_control {
    kino_server *s;
    int lfd, port;
    char *path;                   /* unix socket file we created */
    dev_t dev;
    ino_t ino;
    char *token;                  /* NULL: no token asked */
    size_t token_len;
    char mode[32];
    int workers, threads, io_threads;
    int lanes;                    /* /stats shows lane_depths */
    _Atomic int state;            /* KINO_STATE_* */
    int wake[2];
    pthread_t thread;
    int running;
    _Atomic int stopping;         /* 1: stop now; 2: hand the listener over
                                     (finish the accepted until hand_until) */
    int64_t hand_until;
    cconn conns[KINO_CONTROL_CONNS];
    int nconns;
    kino_worker_stats *rows;      /* CONTROL_ROWS, read from the engine */
    kino_control_row *shown;      /* CONTROL_ROWS, what an answer shows */
    int *lane_depths, nlanes;     /* CONTROL_ROWS: each thread's lane */
    /* published snapshots (section 4) */
    int published;
    int question[2];              /* pipe: one byte per question */
    uint64_t asked;               /* questions written (control thread) */
    pthread_mutex_t snap_lock;    /* guards the snap_* fields */
    kino_stats snap;
    kino_control_row *snap_rows;  /* CONTROL_ROWS */
    int snap_n, snap_workers;
    uint64_t snap_answered;       /* the last question it answers */
    int64_t snap_at;              /* when published; 0: never */
    /* fork (section 5) */
    pthread_mutex_t conns_lock;   /* held by each round of the thread, and
                                     across fork(2) */
    pid_t owner;                  /* the process that made it */
    int kept;                     /* the listener is handed over (hot
                                     restart): free leaves it open */
    kino_control *next;           /* in ctl_all */
};

/* ================================================================== */
/* 1. Platform                                                        */
/* ================================================================== */

static int64_t ctl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ctl_nonblock(int fd) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Listen on TCP host:port (the first address that binds). */
static int ctl_listen_tcp(kino_control *c, const char *host, int port, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ports[16];
    int fd = -1, e = 0, one = 1;
    snprintf(ports, sizeof ports, "%d", port);
    int gai = getaddrinfo(host && *host ? host : NULL, ports, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "control_bind: cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        ctl_nonblock(fd);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "control_bind: cannot listen on %s:%d: %s", host, port, strerror(e));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        c->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Listen on a unix socket ("@name": abstract). A stale file is replaced;
 * a live one is an error, as for the server's own listeners. */
static int ctl_listen_unix(kino_control *c, const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path) {
        snprintf(err, errlen, "control_bind: unix socket path %s is empty or too long", path);
        return -1;
    }
    memcpy(sa.sun_path, path, n);
    int abstract = path[0] == '@';
    if (abstract) sa.sun_path[0] = 0;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + !abstract);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) break;
        ctl_nonblock(fd);
        if (bind(fd, (struct sockaddr *)&sa, len) == 0 && listen(fd, 64) == 0) {
            struct stat st;
            if (!abstract && stat(path, &st) == 0) {
                c->path = strdup(path);
                c->dev = st.st_dev;
                c->ino = st.st_ino;
            }
            return fd;
        }
        int e = errno;
        close(fd);
        struct stat st;
        int probe = -1, live = 0;
        if (e == EADDRINUSE && !abstract && attempt == 0 && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            probe = socket(AF_UNIX, SOCK_STREAM, 0);
            live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, len) == 0;
            if (probe >= 0) close(probe);
            if (!live) {
                unlink(path);
                continue;
            }
        }
        snprintf(err, errlen, "control_bind: cannot listen on unix socket %s: %s", path,
                 e == EADDRINUSE ? "in use by a live server" : strerror(e));
        return -1;
    }
    snprintf(err, errlen, "control_bind: cannot listen on unix socket %s: %s", path, strerror(errno));
    return -1;
}

/* Serve fd, a listening socket this process inherited from the program
 * it replaced (hot restart), instead of binding one: the address stays
 * the same and the connections that waited in its backlog meanwhile are
 * answered now. A unix socket file at path is this process's to remove
 * from now on. */
static int ctl_adopt(kino_control *c, int fd, const char *path, char *err, size_t errlen) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
        snprintf(err, errlen, "control_bind: inherited descriptor %d is not a listening socket", fd);
        return -1;
    }
    ctl_nonblock(fd);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
        c->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    struct stat st;
    if (path && path[0] != '@' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        c->path = strdup(path);
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    return fd;
}

static void ctl_wake(kino_control *c) {
    char b = 1;
    ssize_t r = write(c->wake[1], &b, 1);
    (void)r;
}

/* ================================================================== */
/* 2. Answers                                                         */
/* ================================================================== */

/* A growing text buffer; on allocation failure it stays short and the
 * answer becomes a 500. */
typedef struct ctl_text {
    char *p;
    size_t len, cap;
    int failed;
} ctl_text;

static void ctl_put(ctl_text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = t->failed ? 0 : vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0 || t->failed) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *np = realloc(t->p, cap);
        if (!np) {
            t->failed = 1;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

/* The state the probes and the numbers say. RUNNING means a worker
 * takes requests: a host that publishes (the :cluster master) sets it
 * itself once a worker process serves; for the engine of this process
 * it also needs a serve loop on it (a live waiter: each worker makes
 * its own after its boot hook), so /ready waits for the workers' boot
 * -- in :ractor mode the ractors' -- and says "booting" again while
 * none serves (every worker crashed and being replaced). */
static int ctl_state(const kino_control *c) {
    int state = atomic_load(&c->state);
    if (state == KINO_STATE_RUNNING && !c->published && c->s && kino_server_waiters(c->s) == 0)
        return KINO_STATE_BOOTING;
    return state;
}

static const char *ctl_state_name(int state) {
    switch (state) {
    case KINO_STATE_RUNNING: return "running";
    case KINO_STATE_DRAINING: return "draining";
    case KINO_STATE_STOPPED: return "stopped";
    default: return "booting";
    }
}

/* Per-thread rows summed per worker number, sorted by it (what
 * Kino::Server#stats calls per_worker). Each thread's lane depth goes to
 * lanes[] first, in the engine's order (Kino::Server#stats' lane_depths),
 * *nlanes of them. Returns the row count. */
static int ctl_worker_rows(kino_server *s, kino_worker_stats *rows, int max, int *lanes, int *nlanes) {
    int n = kino_server_workers(s, rows, max), m = 0;
    if (n > max) n = max;
    for (int i = 0; i < n; i++) lanes[i] = rows[i].lane;
    *nlanes = n;
    for (int i = 0; i < n; i++) { /* insertion sort by worker, merging */
        int j = 0;
        while (j < m && rows[j].worker < rows[i].worker) j++;
        if (j < m && rows[j].worker == rows[i].worker) {
            rows[j].served += rows[i].served;
            rows[j].busy_ms += rows[i].busy_ms;
            rows[j].in_flight += rows[i].in_flight;
            rows[j].lane += rows[i].lane;
            continue;
        }
        kino_worker_stats r = rows[i];
        memmove(&rows[j + 1], &rows[j], (size_t)(m - j) * sizeof *rows);
        rows[j] = r;
        m++;
    }
    return m;
}

/* The numbers one answer shows: the engine's, or the last published
 * snapshot's (with its age in ms; -1 when it is the engine's, or when
 * nothing was published yet). */
typedef struct ctl_numbers {
    kino_stats st;
    int n, workers;
    int64_t age_ms;
} ctl_numbers;

static void ctl_snapshot_read(kino_control *c, ctl_numbers *out);

static void ctl_numbers_read(kino_control *c, ctl_numbers *out) {
    if (c->published) {
        ctl_snapshot_read(c, out);
        return;
    }
    kino_server_stats(c->s, &out->st);
    out->n = ctl_worker_rows(c->s, c->rows, CONTROL_ROWS, c->lane_depths, &c->nlanes);
    out->workers = c->workers;
    out->age_ms = -1;
    for (int i = 0; i < out->n; i++)
        c->shown[i] = (kino_control_row){.worker = c->rows[i].worker, .in_flight = c->rows[i].in_flight,
                                         .lane = c->rows[i].lane, .served = c->rows[i].served,
                                         .busy_ms = c->rows[i].busy_ms};
}

static const char *ctl_row_state(int state) {
    switch (state) {
    case KINO_ROW_BOOTING: return "booting";
    case KINO_ROW_UNRESPONSIVE: return "unresponsive";
    default: return "serving";
    }
}

/* The pool's numbers (kino_pool_stats) as JSON members, each followed
 * by a comma: the names Kino::Server#stats gives them. */
static void ctl_put_pool(ctl_text *t, const kino_pool_stats *p) {
    ctl_put(t, "\"active_workers\":%llu,\"max_workers\":%llu,\"quarantined\":%llu,\"quarantines\":%llu,"
           "\"scale_ups\":%llu,\"scale_downs\":%llu,\"queue_wait_ms\":{",
        (unsigned long long)p->active_workers, (unsigned long long)p->max_workers,
        (unsigned long long)p->quarantined, (unsigned long long)p->quarantines,
        (unsigned long long)p->scale_ups, (unsigned long long)p->scale_downs);
}

/* GET /stats: the vocabulary of Kino::Server#stats, plus state and
 * version (and stats_age_ms for a published snapshot). queue_wait_ms
 * maps each bucket's upper bound to its count; lane (per worker) and
 * lane_depths (per thread, with lanes, not in a published snapshot)
 * count the requests waiting in lanes. */
static void ctl_answer_stats(kino_control *c, ctl_text *t) {
    ctl_numbers nb;
    ctl_numbers_read(c, &nb);
    kino_stats st = nb.st;
    ctl_put(t, "{\"state\":\"%s\",\"version\":\"%s\",\"mode\":\"%s\",\"workers\":%d,\"threads\":%d,"
           "\"io_threads\":%d,", ctl_state_name(ctl_state(c)), KINO_VERSION, c->mode, nb.workers,
           c->threads, c->io_threads);
    if (c->published) ctl_put(t, "\"stats_age_ms\":%lld,", (long long)nb.age_ms);
    ctl_put(t, "\"respawns\":%llu,\"accepted\":%llu,\"connections\":%llu,"
           "\"served\":%llu,\"queued\":%llu,\"in_flight\":%llu,\"rejected\":%llu,"
           "\"timeouts\":%llu,\"errors\":%llu,\"hijacked\":%llu,",
        (unsigned long long)st.respawns, (unsigned long long)st.accepted,
        (unsigned long long)st.connections, (unsigned long long)st.served,
        (unsigned long long)st.queued, (unsigned long long)st.in_flight,
        (unsigned long long)st.rejected, (unsigned long long)st.timeouts,
        (unsigned long long)st.errors, (unsigned long long)st.hijacked);
    ctl_put_pool(t, &st.pool);
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) {
        int64_t b = kino_wait_bucket_ms(i);
        if (b < 0) ctl_put(t, "%s\"Infinity\":%llu", i ? "," : "", (unsigned long long)st.queue_wait[i]);
        else ctl_put(t, "%s\"%lld\":%llu", i ? "," : "", (long long)b, (unsigned long long)st.queue_wait[i]);
    }
    ctl_put(t, "},");
    if (c->lanes && !c->published) {
        ctl_put(t, "\"lane_depths\":[");
        for (int i = 0; i < c->nlanes; i++) ctl_put(t, "%s%d", i ? "," : "", c->lane_depths[i]);
        ctl_put(t, "],");
    }
    ctl_put(t, "\"per_worker\":[");
    for (int i = 0; i < nb.n; i++) {
        const kino_control_row *r = &c->shown[i];
        ctl_put(t, "%s{\"worker\":%d,", i ? "," : "", r->worker);
        if (c->published) ctl_put(t, "\"pid\":%d,\"state\":\"%s\",", r->pid, ctl_row_state(r->state));
        ctl_put(t, "\"served\":%llu,\"in_flight\":%d,\"busy_ms\":%llu,\"lane\":%d", (unsigned long long)r->served,
            r->in_flight, (unsigned long long)r->busy_ms, r->lane);
        if (c->published)
            ctl_put(t, ",\"accepted\":%llu,\"connections\":%llu,\"respawns\":%llu",
                (unsigned long long)r->accepted, (unsigned long long)r->connections,
                (unsigned long long)r->respawns);
        ctl_put(t, "}");
    }
    ctl_put(t, "]}\n");
}

static void ctl_metric(ctl_text *t, const char *name, const char *type, const char *help) {
    ctl_put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* GET /metrics: Prometheus text format 0.0.4. Counters end in _total,
 * times are in seconds, and every family has HELP and TYPE, so that
 * `promtool check metrics` finds nothing to say. */
static void ctl_answer_metrics(kino_control *c, ctl_text *t) {
    ctl_numbers nb;
    ctl_numbers_read(c, &nb);
    kino_stats st = nb.st;
    const kino_control_row *rows = c->shown;
    int state = ctl_state(c), n = nb.n;
    ctl_metric(t, "kino_info", "gauge", "Kino version and concurrency mode (always 1).");
    ctl_put(t, "kino_info{version=\"%s\",mode=\"%s\"} 1\n", KINO_VERSION, c->mode);
    ctl_metric(t, "kino_ready", "gauge", "1 while serving, 0 while booting or draining.");
    ctl_put(t, "kino_ready %d\n", state == KINO_STATE_RUNNING);
    ctl_metric(t, "kino_workers", "gauge", "Configured workers.");
    ctl_put(t, "kino_workers %d\n", nb.workers);
    ctl_metric(t, "kino_worker_threads", "gauge", "Configured threads per worker.");
    ctl_put(t, "kino_worker_threads %d\n", c->threads);
    if (c->published && nb.age_ms >= 0) {
        ctl_metric(t, "kino_stats_age_seconds", "gauge", "Age of the worker statistics shown.");
        ctl_put(t, "kino_stats_age_seconds %.3f\n", (double)nb.age_ms / 1000.0);
    }
#define COUNTER(name, help, v) \
    ctl_metric(t, name, "counter", help); \
    ctl_put(t, name " %llu\n", (unsigned long long)(v))
#define GAUGE(name, help, v) \
    ctl_metric(t, name, "gauge", help); \
    ctl_put(t, name " %llu\n", (unsigned long long)(v))
    COUNTER("kino_connections_accepted_total", "Connections accepted.", st.accepted);
    GAUGE("kino_connections", "Connections open now.", st.connections);
    COUNTER("kino_requests_served_total", "Responses completed by workers.", st.served);
    COUNTER("kino_requests_rejected_total", "Requests answered 503 after queue_timeout.", st.rejected);
    COUNTER("kino_request_timeouts_total", "Requests answered 504 after request_timeout.", st.timeouts);
    COUNTER("kino_engine_errors_total", "Canned 4xx and 5xx answers the app never saw.", st.errors);
    COUNTER("kino_connections_hijacked_total", "Connections the app took over (Rack hijack).", st.hijacked);
    COUNTER("kino_worker_respawns_total", "Workers started again after dying.", st.respawns);
    GAUGE("kino_queue_depth", "Requests waiting for a worker.", st.queued);
    GAUGE("kino_requests_in_flight", "Requests being served by workers.", st.in_flight);
    GAUGE("kino_active_workers", "Workers serving (not in quarantine).", st.pool.active_workers);
    GAUGE("kino_max_workers", "Workers the pool may grow to.", st.pool.max_workers);
    GAUGE("kino_quarantined_workers", "Workers in quarantine now (stuck on one request).", st.pool.quarantined);
    COUNTER("kino_quarantines_total", "Workers quarantined.", st.pool.quarantines);
    COUNTER("kino_scale_ups_total", "Workers the elastic pool added.", st.pool.scale_ups);
    COUNTER("kino_scale_downs_total", "Workers the elastic pool took away.", st.pool.scale_downs);
#undef COUNTER
#undef GAUGE
    ctl_metric(t, "kino_queue_wait_seconds", "histogram", "Time requests waited in the queue for a worker.");
    uint64_t cum = 0;
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) {
        int64_t b = kino_wait_bucket_ms(i);
        cum += st.queue_wait[i];
        if (b < 0) ctl_put(t, "kino_queue_wait_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        else ctl_put(t, "kino_queue_wait_seconds_bucket{le=\"%g\"} %llu\n", (double)b / 1000.0, (unsigned long long)cum);
    }
    ctl_put(t, "kino_queue_wait_seconds_sum %.3f\n", (double)st.queue_wait_sum_ms / 1000.0);
    ctl_put(t, "kino_queue_wait_seconds_count %llu\n", (unsigned long long)cum);
    ctl_metric(t, "kino_worker_requests_served_total", "counter", "Responses completed, per worker.");
    for (int i = 0; i < n; i++)
        ctl_put(t, "kino_worker_requests_served_total{worker=\"%d\"} %llu\n", rows[i].worker,
            (unsigned long long)rows[i].served);
    ctl_metric(t, "kino_worker_busy_seconds_total", "counter", "Time spent serving requests, per worker.");
    for (int i = 0; i < n; i++)
        ctl_put(t, "kino_worker_busy_seconds_total{worker=\"%d\"} %.3f\n", rows[i].worker,
            (double)rows[i].busy_ms / 1000.0);
    ctl_metric(t, "kino_worker_requests_in_flight", "gauge", "Requests being served, per worker.");
    for (int i = 0; i < n; i++)
        ctl_put(t, "kino_worker_requests_in_flight{worker=\"%d\"} %d\n", rows[i].worker, rows[i].in_flight);
    ctl_metric(t, "kino_worker_lane_depth", "gauge", "Requests waiting in the worker's lanes (lanes), per worker.");
    for (int i = 0; i < n; i++)
        ctl_put(t, "kino_worker_lane_depth{worker=\"%d\"} %d\n", rows[i].worker, rows[i].lane);
    if (c->published) {
        ctl_metric(t, "kino_worker_serving", "gauge", "1 while the worker process serves, 0 while it boots or does not answer.");
        for (int i = 0; i < n; i++)
            ctl_put(t, "kino_worker_serving{worker=\"%d\"} %d\n", rows[i].worker, rows[i].state == KINO_ROW_SERVING);
    }
}

/* The whole answer for one status and body into conn->out. */
static void ctl_respond(cconn *k, int status, const char *type, const char *extra, const char *body,
                    size_t blen, int head_only) {
    ctl_text t = {0};
    ctl_put(&t, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n%s\r\n",
        status, kino_reason(status), type, blen, extra ? extra : "");
    if (!head_only && blen) {
        if (!t.failed && t.len + blen + 1 > t.cap) {
            char *np = realloc(t.p, t.len + blen + 1);
            if (np) {
                t.p = np;
                t.cap = t.len + blen + 1;
            } else {
                t.failed = 1;
            }
        }
        if (!t.failed) {
            memcpy(t.p + t.len, body, blen);
            t.len += blen;
        }
    }
    if (t.failed) {
        free(t.p);
        static const char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        k->out = strdup(oom);
        k->out_len = k->out ? sizeof oom - 1 : 0;
    } else {
        k->out = t.p;
        k->out_len = t.len;
    }
    k->out_off = 0;
}

static void ctl_respond_text(cconn *k, int status, const char *body, const char *extra, int head_only) {
    ctl_respond(k, status, "text/plain; charset=utf-8", extra, body, strlen(body), head_only);
}

/* ================================================================== */
/* 3. Requests                                                        */
/* ================================================================== */

/* Equal without an early exit: the time taken does not depend on where
 * the first difference is, nor (beyond its length) on the secret. */
static int ctl_token_equal(const char *secret, size_t slen, const char *given, size_t glen) {
    unsigned char d = slen != glen;
    for (size_t i = 0; i < slen; i++) d |= (unsigned char)(secret[i] ^ (i < glen ? given[i] : 0));
    return d == 0;
}

static int ctl_span_is(kino_span s, const char *lit) {
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static int ctl_span_ieq(kino_span s, const char *lit) {
    size_t n = strlen(lit);
    if (s.n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        char a = s.p[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (a != lit[i]) return 0;
    }
    return 1;
}

/* Whether the request carries "Authorization: Bearer <the token>". */
static int ctl_authorized(kino_control *c, const kino_head *h) {
    if (!c->token) return 1;
    for (size_t i = 0; i < h->nheaders; i++) {
        const kino_header *f = &h->headers[i];
        if (!ctl_span_ieq(f->name, "authorization") || f->value.n < 7) continue;
        kino_span scheme = {f->value.p, 7};
        if (!ctl_span_ieq(scheme, "bearer ")) continue;
        const char *v = f->value.p + 7;
        size_t n = f->value.n - 7;
        while (n && *v == ' ') v++, n--;
        if (ctl_token_equal(c->token, c->token_len, v, n)) return 1;
    }
    return 0;
}

/* The /stats or /metrics answer k asked for, from the numbers now. */
static void ctl_answer_numbers(kino_control *c, cconn *k) {
    ctl_text t = {0};
    if (k->metrics) ctl_answer_metrics(c, &t);
    else ctl_answer_stats(c, &t);
    if (t.failed) ctl_respond_text(k, 500, "out of memory\n", NULL, k->head_only);
    else ctl_respond(k, 200, k->metrics ? "text/plain; version=0.0.4; charset=utf-8" : "application/json", NULL,
                 t.p, t.len, k->head_only);
    free(t.p);
}

static void ctl_ask(kino_control *c, cconn *k);

/* Route a complete request head to its answer. */
static void ctl_route(kino_control *c, cconn *k, const kino_head *h) {
    int head_only = h->is_head;
    if (!ctl_span_is(h->method, "GET") && !head_only) {
        ctl_respond_text(k, 405, "only GET and HEAD\n", "Allow: GET, HEAD\r\n", 0);
        return;
    }
    if (ctl_span_is(h->path, "/live")) {
        ctl_respond_text(k, 200, "live\n", NULL, head_only);
    } else if (ctl_span_is(h->path, "/ready")) {
        int state = ctl_state(c);
        char body[32];
        snprintf(body, sizeof body, "%s\n", state == KINO_STATE_RUNNING ? "ready" : ctl_state_name(state));
        ctl_respond_text(k, state == KINO_STATE_RUNNING ? 200 : 503, body, NULL, head_only);
    } else if (ctl_span_is(h->path, "/stats") || ctl_span_is(h->path, "/metrics")) {
        if (!ctl_authorized(c, h)) {
            ctl_respond_text(k, 401, "a bearer token is required\n", "WWW-Authenticate: Bearer\r\n", head_only);
            return;
        }
        k->metrics = ctl_span_is(h->path, "/metrics");
        k->head_only = head_only;
        if (c->published) ctl_ask(c, k); /* answered once a snapshot comes */
        else ctl_answer_numbers(c, k);
    } else {
        ctl_respond_text(k, 404, "not found: try /live, /ready, /stats or /metrics\n", NULL, head_only);
    }
}

/* Read what arrived; once the head is complete (or bad, or too long),
 * prepare the answer. Returns -1 when the connection should close now. */
static int ctl_read(kino_control *c, cconn *k) {
    for (;;) {
        if (k->len == sizeof k->in) {
            ctl_respond_text(k, 431, "request head too large\n", NULL, 0);
            return 0;
        }
        ssize_t n = recv(k->fd, k->in + k->len, sizeof k->in - k->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n <= 0) return -1;
        k->len += (size_t)n;
        kino_head h;
        kino_header hdrs[32];
        long r = kino_parse_request(k->in, k->len, &h, hdrs, 32);
        if (r == KINO_INCOMPLETE) continue;
        if (r < 0) ctl_respond_text(k, h.status ? h.status : 400, "bad request\n", NULL, 0);
        else ctl_route(c, k, &h);
        return 0;
    }
}

/* Send what is left of the answer. Returns 1 when all went out. */
static int ctl_write(cconn *k) {
    while (k->out_off < k->out_len) {
        ssize_t n = send(k->fd, k->out + k->out_off, k->out_len - k->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n <= 0) return 1; /* gone: nothing more to do */
        k->out_off += (size_t)n;
    }
    return 1;
}

/* Close connection i: the last one takes its slot. With conns_lock
 * held, or once the thread has ended. */
static void ctl_close(kino_control *c, int i) {
    cconn *k = &c->conns[i];
    free(k->out);
    if (k->fd >= 0) close(k->fd);
    c->conns[i] = c->conns[--c->nconns];
}

/* ================================================================== */
/* 4. Snapshots                                                       */
/* ================================================================== */

/* Copy the last published snapshot into out and c->shown. */
static void ctl_snapshot_read(kino_control *c, ctl_numbers *out) {
    pthread_mutex_lock(&c->snap_lock);
    out->st = c->snap;
    out->n = c->snap_n;
    out->workers = c->snap_at ? c->snap_workers : c->workers;
    out->age_ms = c->snap_at ? ctl_now_ms() - c->snap_at : -1;
    memcpy(c->shown, c->snap_rows, (size_t)c->snap_n * sizeof *c->shown);
    pthread_mutex_unlock(&c->snap_lock);
}

static uint64_t ctl_snapshot_answered(kino_control *c) {
    pthread_mutex_lock(&c->snap_lock);
    uint64_t answered = c->snap_answered;
    pthread_mutex_unlock(&c->snap_lock);
    return answered;
}

/* Ask the host for a fresh snapshot for k: one byte on the question pipe
 * (question number ++asked), and k waits for a snapshot that answers it,
 * for at most KINO_CONTROL_WAIT_MS. When the pipe is full, questions are
 * already waiting to be read: k waits for the last one written. */
static void ctl_ask(kino_control *c, cconn *k) {
    char b = '?';
    if (write(c->question[1], &b, 1) == 1) c->asked++;
    k->want = c->asked;
    k->wait_until = ctl_now_ms() + KINO_CONTROL_WAIT_MS;
    if (k->wait_until > k->deadline) k->wait_until = k->deadline;
}

/* Answer every waiting connection whose snapshot came, or whose wait is
 * over (with the last snapshot, whatever its age). */
static void ctl_answer_waiting(kino_control *c, int64_t now) {
    uint64_t answered = 0;
    int read = 0;
    for (int i = 0; i < c->nconns; i++) {
        cconn *k = &c->conns[i];
        if (!k->wait_until) continue;
        if (!read) answered = ctl_snapshot_answered(c), read = 1;
        if (answered < k->want && now < k->wait_until) continue;
        k->wait_until = 0;
        ctl_answer_numbers(c, k);
    }
}

int kino_control_publish(kino_control *c, const kino_stats *total, int workers, const kino_control_row *rows,
                         int nrows, uint64_t answered) {
    if (!c->published || nrows < 0 || nrows > CONTROL_ROWS) return KINO_ERROR;
    pthread_mutex_lock(&c->snap_lock);
    c->snap = *total;
    c->snap_workers = workers;
    memcpy(c->snap_rows, rows, (size_t)nrows * sizeof *rows);
    c->snap_n = nrows;
    if (answered > c->snap_answered) c->snap_answered = answered;
    c->snap_at = ctl_now_ms();
    pthread_mutex_unlock(&c->snap_lock);
    ctl_wake(c);
    return KINO_OK;
}

int kino_control_question_fd(const kino_control *c) { return c->published ? c->question[0] : -1; }

/* ================================================================== */
/* 5. Fork                                                            */
/* ================================================================== */

/* Every control plane of this process, for the fork handler. */
static pthread_mutex_t ctl_all_lock = PTHREAD_MUTEX_INITIALIZER;
static kino_control *ctl_all;
static pthread_once_t ctl_fork_once = PTHREAD_ONCE_INIT;

/* Around fork(2) the list and every control plane's connection table
 * are locked, so the child sees each table between two rounds of its
 * thread (ctl_serve). */
static void ctl_fork_prepare(void) {
    pthread_mutex_lock(&ctl_all_lock);
    for (kino_control *c = ctl_all; c; c = c->next) pthread_mutex_lock(&c->conns_lock);
}

static void ctl_fork_parent(void) {
    for (kino_control *c = ctl_all; c; c = c->next) pthread_mutex_unlock(&c->conns_lock);
    pthread_mutex_unlock(&ctl_all_lock);
}

static void ctl_close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* In a forked child (a :cluster worker process) the control planes are
 * the parent's: the child closes their listener, pipes and connections,
 * so that it never holds the master's control socket open (a master
 * that died would leave its port accepting into a backlog nobody reads)
 * nor answers on it. Their thread does not exist here; kino_control_free
 * in the child only frees memory. */
static void ctl_fork_child(void) {
    for (kino_control *c = ctl_all; c; c = c->next) {
        ctl_close_fd(&c->lfd);
        for (int i = 0; i < 2; i++) {
            ctl_close_fd(&c->wake[i]);
            ctl_close_fd(&c->question[i]);
        }
        for (int i = 0; i < c->nconns; i++) ctl_close_fd(&c->conns[i].fd);
        c->nconns = 0;
        pthread_mutex_unlock(&c->conns_lock);
    }
    pthread_mutex_unlock(&ctl_all_lock);
}

static void ctl_fork_init(void) { pthread_atfork(ctl_fork_prepare, ctl_fork_parent, ctl_fork_child); }

static void ctl_list_add(kino_control *c) {
    pthread_once(&ctl_fork_once, ctl_fork_init);
    pthread_mutex_lock(&ctl_all_lock);
    c->next = ctl_all;
    ctl_all = c;
    pthread_mutex_unlock(&ctl_all_lock);
}

static void ctl_list_remove(kino_control *c) {
    pthread_mutex_lock(&ctl_all_lock);
    for (kino_control **p = &ctl_all; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&ctl_all_lock);
}

/* ================================================================== */
/* 6. Thread                                                          */
/* ================================================================== */

/* As the thread has stopped: answer the connections still waiting for
 * a snapshot with the last one, and send what fits of every answer not
 * yet sent, so that an exchange in progress is not cut short when the
 * control plane is freed (a stop, or a hot restart handing the listener
 * over). A request not yet read is closed unanswered. */
static void ctl_finish(kino_control *c) {
    for (int i = 0; i < c->nconns; i++) {
        cconn *k = &c->conns[i];
        if (k->wait_until) {
            k->wait_until = 0;
            ctl_answer_numbers(c, k);
        }
        if (k->out) ctl_write(k);
    }
}

/* Accept newcomers up to the cap (in a round: conns_lock held). */
static void ctl_accept(kino_control *c, int64_t now) {
    while (c->nconns < KINO_CONTROL_CONNS) {
        int fd = accept(c->lfd, NULL, NULL);
        if (fd < 0) break;
        ctl_nonblock(fd);
        cconn *k = &c->conns[c->nconns];
        memset(k, 0, offsetof(cconn, in));
        k->fd = fd;
        k->out = NULL;
        k->out_len = k->out_off = 0;
        k->deadline = now + KINO_CONTROL_MS;
        c->nconns++;
    }
}

/* One round after poll(2) returned n with p (the wake pipe, the
 * listener, then connection i at p[2 + i]): read, answer, write, close,
 * accept. Each connection first takes what poll saw on it into its own
 * entry: closing one moves the last into its slot, after which p[2 + i]
 * describes another connection. The caller holds conns_lock, which
 * fork(2) takes too (section 5), so a process forked meanwhile sees the
 * table between two rounds: no connection accepted and not yet in it
 * (the child would hold the client's socket open after the master
 * answered), and no allocation of this thread in progress (an allocator
 * that does not guard fork, such as AddressSanitizer's, would leave the
 * child a lock held for good). */
static void ctl_serve(kino_control *c, const struct pollfd *p, int n, int64_t now) {
    if (n > 0 && p[0].revents) {
        char junk[16];
        while (read(c->wake[0], junk, sizeof junk) > 0) {
        }
    }
    for (int i = 0; i < c->nconns; i++) c->conns[i].revents = n > 0 ? p[2 + i].revents : 0;
    for (int i = c->nconns - 1; i >= 0; i--) {
        cconn *k = &c->conns[i];
        int done = 0;
        if (now >= k->deadline) done = 1;
        else if (k->wait_until) done = (k->revents & (POLLHUP | POLLERR)) != 0; /* gone while waiting */
        else if (k->revents && !k->out && ctl_read(c, k) < 0) done = 1;
        if (done) ctl_close(c, i);
    }
    ctl_answer_waiting(c, now);
    for (int i = c->nconns - 1; i >= 0; i--) { /* send what is ready, first bytes at once */
        cconn *k = &c->conns[i];
        if (k->out && !k->wait_until && (k->revents || !k->out_off) && ctl_write(k)) ctl_close(c, i);
    }
    if (n > 0 && (p[1].revents & POLLIN)) ctl_accept(c, now);
}

/* The loop: poll the wake pipe, the listener (below the connection cap)
 * and every connection (a waiting one only for hang-ups), until the
 * earliest deadline or wait; then serve one round (ctl_serve). */
static void *ctl_main(void *arg) {
    kino_control *c = arg;
    struct pollfd p[KINO_CONTROL_CONNS + 2];
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the host's */
    for (;;) {
        int stopping = atomic_load(&c->stopping);
        int64_t now = ctl_now_ms(), timeout = -1;
        if (stopping == 1 || (stopping == 2 && (c->nconns == 0 || now >= c->hand_until))) break;
        if (stopping == 2) timeout = c->hand_until - now;
        int np = 0;
        p[np++] = (struct pollfd){.fd = c->wake[0], .events = POLLIN};
        /* at the cap the listener is not polled: newcomers wait in the
         * backlog (as they do for the next program once it is handed over) */
        p[np++] = (struct pollfd){.fd = !stopping && c->nconns < KINO_CONTROL_CONNS ? c->lfd : -1, .events = POLLIN};
        for (int i = 0; i < c->nconns; i++) {
            cconn *k = &c->conns[i];
            short events = k->wait_until ? 0 : k->out ? POLLOUT : POLLIN;
            p[np++] = (struct pollfd){.fd = k->fd, .events = events};
            int64_t left = (k->wait_until ? k->wait_until : k->deadline) - now;
            if (timeout < 0 || left < timeout) timeout = left < 0 ? 0 : left;
        }
        int n = poll(p, (nfds_t)np, (int)timeout);
        if (n < 0 && errno != EINTR) break;
        pthread_mutex_lock(&c->conns_lock);
        ctl_serve(c, p, n, ctl_now_ms());
        pthread_mutex_unlock(&c->conns_lock);
    }
    return NULL;
}

kino_control *kino_control_new(kino_server *s, const kino_control_options *o, char *err, size_t errlen) {
    kino_control *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->s = s;
    c->wake[0] = c->wake[1] = c->question[0] = c->question[1] = -1;
    c->lfd = -1;
    c->owner = getpid();
    pthread_mutex_init(&c->snap_lock, NULL);
    pthread_mutex_init(&c->conns_lock, NULL);
    c->rows = calloc(CONTROL_ROWS, sizeof *c->rows);
    c->shown = calloc(CONTROL_ROWS, sizeof *c->shown);
    c->snap_rows = calloc(CONTROL_ROWS, sizeof *c->snap_rows);
    c->lane_depths = calloc(CONTROL_ROWS, sizeof *c->lane_depths);
    if (!c->rows || !c->shown || !c->snap_rows || !c->lane_depths) {
        snprintf(err, errlen, "out of memory");
        kino_control_free(c);
        return NULL;
    }
    snprintf(c->mode, sizeof c->mode, "%s", o->mode ? o->mode : "");
    c->workers = o->workers;
    c->threads = o->threads;
    c->io_threads = o->io_threads;
    c->lanes = o->lanes != 0;
    c->published = o->published != 0;
    atomic_store(&c->state, KINO_STATE_BOOTING);
    if (o->token && *o->token) {
        c->token = strdup(o->token);
        c->token_len = strlen(o->token);
    }
    if (o->adopt) c->lfd = ctl_adopt(c, o->fd, o->path, err, errlen);
    else c->lfd = o->path ? ctl_listen_unix(c, o->path, err, errlen) : ctl_listen_tcp(c, o->host, o->port, err, errlen);
    if (c->lfd < 0) {
        kino_control_free(c);
        return NULL;
    }
    if (pipe(c->wake) < 0 || (c->published && pipe(c->question) < 0)) {
        snprintf(err, errlen, "control plane: %s", strerror(errno));
        kino_control_free(c);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        ctl_nonblock(c->wake[i]);
        if (c->question[i] >= 0) ctl_nonblock(c->question[i]);
    }
    ctl_list_add(c);
    return c;
}

/* pthread_create returns its error (errno is not set): the message says
 * that one. */
int kino_control_start(kino_control *c, char *err, size_t errlen) {
    if (c->running) return KINO_OK;
    int e = KINO_THREAD_CREATE(&c->thread, NULL, ctl_main, c);
    if (e != 0) {
        snprintf(err, errlen, "cannot start the control thread: %s", strerror(e));
        return KINO_ERROR;
    }
    c->running = 1;
    return KINO_OK;
}

int kino_control_port(const kino_control *c) { return c->port; }

void kino_control_set_state(kino_control *c, int state) {
    atomic_store(&c->state, state);
}

int kino_control_keep_listener(kino_control *c) {
    c->kept = 1;
    return c->lfd;
}

/* In the process that made it: stop the thread, close everything,
 * remove the unix socket file it made. A listener handed over
 * (kino_control_keep_listener) stays open, its file in place: the thread
 * first stops accepting -- newcomers wait in the backlog for the next
 * program -- and gives the connections it accepted up to
 * KINO_CONTROL_HANDOVER_MS to be answered, so a probe that connected just
 * before is answered, not cut. In a forked child (whose copy
 * section 5 already closed, and whose thread does not exist): free the
 * memory only -- the socket file is the parent's. */
void kino_control_free(kino_control *c) {
    if (!c) return;
    ctl_list_remove(c);
    int own = c->owner == getpid();
    if (own && c->running) {
        c->hand_until = ctl_now_ms() + KINO_CONTROL_HANDOVER_MS;
        atomic_store(&c->stopping, c->kept ? 2 : 1);
        ctl_wake(c);
        pthread_join(c->thread, NULL);
    }
    if (own) ctl_finish(c);
    while (c->nconns > 0) ctl_close(c, c->nconns - 1);
    if (own && c->kept) c->lfd = -1; /* the next program's now */
    ctl_close_fd(&c->lfd);
    struct stat st;
    if (own && !c->kept && c->path && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    for (int i = 0; i < 2; i++) {
        ctl_close_fd(&c->wake[i]);
        ctl_close_fd(&c->question[i]);
    }
    pthread_mutex_destroy(&c->snap_lock);
    pthread_mutex_destroy(&c->conns_lock);
    free(c->path);
    free(c->token);
    free(c->rows);
    free(c->shown);
    free(c->lane_depths);
    free(c->snap_rows);
    free(c);
}
