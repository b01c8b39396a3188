/*
 * kino_control.c -- the control plane: health probes, statistics and
 * Prometheus metrics on a listener of their own, answered by one C thread.
 *
 * The thread never touches Ruby and shares no lock with the workers: it
 * reads the engine's atomic counters (kino_server_stats), so it answers
 * while every worker is stuck in the application, holding the GVL. It is
 * also a small attack surface, so it is bounded everywhere: at most
 * KINO_CONTROL_CONNS connections at once (the rest wait in the backlog), a
 * request head of at most KINO_CONTROL_HEAD bytes, and KINO_CONTROL_MS for
 * the whole exchange; every answer closes the connection.
 *
 *    1. platform    clocks, the listener, the wake pipe
 *    2. answers     /live, /ready, /stats (JSON), /metrics (Prometheus 0.0.4)
 *    3. requests    reading, limits, routing, the bearer token
 *    4. thread      the poll loop; new, start, free
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
#define CONTROL_ROWS 1024         /* per-thread rows read for per_worker */

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

typedef struct cconn {
    int fd;
    int64_t deadline;
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
    _Atomic int state;            /* KINO_STATE_* */
    int wake[2];
    pthread_t thread;
    int running;
    _Atomic int stopping;
    cconn conns[KINO_CONTROL_CONNS];
    int nconns;
    kino_worker_stats *rows;      /* CONTROL_ROWS, for per-worker answers */
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

static const char *ctl_state_name(int state) {
    switch (state) {
    case KINO_STATE_RUNNING: return "running";
    case KINO_STATE_DRAINING: return "draining";
    case KINO_STATE_STOPPED: return "stopped";
    default: return "booting";
    }
}

/* Per-thread rows summed per worker number, sorted by it (what
 * Kino::Server#stats calls per_worker). Returns the row count. */
static int ctl_worker_rows(kino_server *s, kino_worker_stats *rows, int max) {
    int n = kino_server_workers(s, rows, max), m = 0;
    for (int i = 0; i < n; i++) { /* insertion sort by worker, merging */
        int j = 0;
        while (j < m && rows[j].worker < rows[i].worker) j++;
        if (j < m && rows[j].worker == rows[i].worker) {
            rows[j].served += rows[i].served;
            rows[j].busy_ms += rows[i].busy_ms;
            rows[j].in_flight += rows[i].in_flight;
            continue;
        }
        kino_worker_stats r = rows[i];
        memmove(&rows[j + 1], &rows[j], (size_t)(m - j) * sizeof *rows);
        rows[j] = r;
        m++;
    }
    return m;
}

/* GET /stats: the vocabulary of Kino::Server#stats, plus state and
 * version. queue_wait_ms maps each bucket's upper bound to its count. */
static void ctl_answer_stats(kino_control *c, ctl_text *t) {
    kino_worker_stats *rows = c->rows;
    kino_stats st;
    kino_server_stats(c->s, &st);
    ctl_put(t, "{\"state\":\"%s\",\"version\":\"%s\",\"mode\":\"%s\",\"workers\":%d,\"threads\":%d,"
           "\"io_threads\":%d,\"respawns\":%llu,\"accepted\":%llu,\"connections\":%llu,"
           "\"served\":%llu,\"queued\":%llu,\"in_flight\":%llu,\"rejected\":%llu,"
           "\"timeouts\":%llu,\"errors\":%llu,\"hijacked\":%llu,\"queue_wait_ms\":{",
        ctl_state_name(atomic_load(&c->state)), KINO_VERSION, c->mode, c->workers, c->threads,
        c->io_threads, (unsigned long long)st.respawns, (unsigned long long)st.accepted,
        (unsigned long long)st.connections, (unsigned long long)st.served,
        (unsigned long long)st.queued, (unsigned long long)st.in_flight,
        (unsigned long long)st.rejected, (unsigned long long)st.timeouts,
        (unsigned long long)st.errors, (unsigned long long)st.hijacked);
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) {
        int64_t b = kino_wait_bucket_ms(i);
        if (b < 0) ctl_put(t, "%s\"Infinity\":%llu", i ? "," : "", (unsigned long long)st.queue_wait[i]);
        else ctl_put(t, "%s\"%lld\":%llu", i ? "," : "", (long long)b, (unsigned long long)st.queue_wait[i]);
    }
    ctl_put(t, "},\"per_worker\":[");
    int n = ctl_worker_rows(c->s, rows, CONTROL_ROWS);
    for (int i = 0; i < n; i++)
        ctl_put(t, "%s{\"worker\":%d,\"served\":%llu,\"in_flight\":%d,\"busy_ms\":%llu}", i ? "," : "",
            rows[i].worker, (unsigned long long)rows[i].served, rows[i].in_flight,
            (unsigned long long)rows[i].busy_ms);
    ctl_put(t, "]}\n");
}

static void ctl_metric(ctl_text *t, const char *name, const char *type, const char *help) {
    ctl_put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* GET /metrics: Prometheus text format 0.0.4. Counters end in _total,
 * times are in seconds, and every family has HELP and TYPE, so that
 * `promtool check metrics` finds nothing to say. */
static void ctl_answer_metrics(kino_control *c, ctl_text *t) {
    kino_worker_stats *rows = c->rows;
    kino_stats st;
    kino_server_stats(c->s, &st);
    int state = atomic_load(&c->state);
    ctl_metric(t, "kino_info", "gauge", "Kino version and concurrency mode (always 1).");
    ctl_put(t, "kino_info{version=\"%s\",mode=\"%s\"} 1\n", KINO_VERSION, c->mode);
    ctl_metric(t, "kino_ready", "gauge", "1 while serving, 0 while booting or draining.");
    ctl_put(t, "kino_ready %d\n", state == KINO_STATE_RUNNING);
    ctl_metric(t, "kino_workers", "gauge", "Configured workers.");
    ctl_put(t, "kino_workers %d\n", c->workers);
    ctl_metric(t, "kino_worker_threads", "gauge", "Configured threads per worker.");
    ctl_put(t, "kino_worker_threads %d\n", c->threads);
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
    int n = ctl_worker_rows(c->s, rows, CONTROL_ROWS);
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
        int state = atomic_load(&c->state);
        char body[32];
        snprintf(body, sizeof body, "%s\n", state == KINO_STATE_RUNNING ? "ready" : ctl_state_name(state));
        ctl_respond_text(k, state == KINO_STATE_RUNNING ? 200 : 503, body, NULL, head_only);
    } else if (ctl_span_is(h->path, "/stats") || ctl_span_is(h->path, "/metrics")) {
        if (!ctl_authorized(c, h)) {
            ctl_respond_text(k, 401, "a bearer token is required\n", "WWW-Authenticate: Bearer\r\n", head_only);
            return;
        }
        ctl_text t = {0};
        int json = ctl_span_is(h->path, "/stats");
        if (json) ctl_answer_stats(c, &t);
        else ctl_answer_metrics(c, &t);
        if (t.failed) ctl_respond_text(k, 500, "out of memory\n", NULL, head_only);
        else ctl_respond(k, 200, json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8", NULL,
                     t.p, t.len, head_only);
        free(t.p);
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

static void ctl_close(kino_control *c, int i) {
    cconn *k = &c->conns[i];
    close(k->fd);
    free(k->out);
    c->conns[i] = c->conns[--c->nconns];
}

/* ================================================================== */
/* 4. Thread                                                          */
/* ================================================================== */

static void *ctl_main(void *arg) {
    kino_control *c = arg;
    struct pollfd p[KINO_CONTROL_CONNS + 2];
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the host's */
    while (!atomic_load(&c->stopping)) {
        int64_t now = ctl_now_ms(), timeout = -1;
        int np = 0;
        p[np++] = (struct pollfd){.fd = c->wake[0], .events = POLLIN};
        /* at the cap the listener is not polled: newcomers wait in the backlog */
        p[np++] = (struct pollfd){.fd = c->nconns < KINO_CONTROL_CONNS ? c->lfd : -1, .events = POLLIN};
        for (int i = 0; i < c->nconns; i++) {
            cconn *k = &c->conns[i];
            p[np++] = (struct pollfd){.fd = k->fd, .events = k->out ? POLLOUT : POLLIN};
            int64_t left = k->deadline - now;
            if (timeout < 0 || left < timeout) timeout = left < 0 ? 0 : left;
        }
        int n = poll(p, (nfds_t)np, (int)timeout);
        if (n < 0 && errno != EINTR) break;
        now = ctl_now_ms();
        if (p[0].revents) {
            char junk[16];
            while (read(c->wake[0], junk, sizeof junk) > 0) {
            }
        }
        /* existing connections first (indices shift as they close) */
        for (int i = c->nconns - 1; i >= 0; i--) {
            cconn *k = &c->conns[i];
            short rev = p[2 + i].revents;
            int done = 0;
            if (now >= k->deadline) done = 1;
            else if (rev && !k->out && ctl_read(c, k) < 0) done = 1;
            if (!done && k->out && (rev || !k->out_off)) done = ctl_write(k);
            if (done) ctl_close(c, i);
        }
        if (p[1].revents & POLLIN) {
            while (c->nconns < KINO_CONTROL_CONNS) {
                int fd = accept(c->lfd, NULL, NULL);
                if (fd < 0) break;
                ctl_nonblock(fd);
                cconn *k = &c->conns[c->nconns++];
                memset(k, 0, offsetof(cconn, in));
                k->fd = fd;
                k->out = NULL;
                k->out_len = k->out_off = 0;
                k->deadline = now + KINO_CONTROL_MS;
            }
        }
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
    c->wake[0] = c->wake[1] = -1;
    c->lfd = -1;
    c->rows = calloc(CONTROL_ROWS, sizeof *c->rows);
    if (!c->rows) {
        snprintf(err, errlen, "out of memory");
        kino_control_free(c);
        return NULL;
    }
    snprintf(c->mode, sizeof c->mode, "%s", o->mode ? o->mode : "");
    c->workers = o->workers;
    c->threads = o->threads;
    c->io_threads = o->io_threads;
    atomic_store(&c->state, KINO_STATE_BOOTING);
    if (o->token && *o->token) {
        c->token = strdup(o->token);
        c->token_len = strlen(o->token);
    }
    c->lfd = o->path ? ctl_listen_unix(c, o->path, err, errlen) : ctl_listen_tcp(c, o->host, o->port, err, errlen);
    if (c->lfd < 0 || pipe(c->wake) < 0) {
        if (c->lfd >= 0) snprintf(err, errlen, "control plane: %s", strerror(errno));
        kino_control_free(c);
        return NULL;
    }
    ctl_nonblock(c->wake[0]);
    ctl_nonblock(c->wake[1]);
    return c;
}

int kino_control_start(kino_control *c, char *err, size_t errlen) {
    if (c->running) return KINO_OK;
    if (pthread_create(&c->thread, NULL, ctl_main, c) != 0) {
        snprintf(err, errlen, "cannot start the control thread: %s", strerror(errno));
        return KINO_ERROR;
    }
    c->running = 1;
    return KINO_OK;
}

int kino_control_port(const kino_control *c) { return c->port; }

void kino_control_set_state(kino_control *c, int state) {
    atomic_store(&c->state, state);
}

void kino_control_free(kino_control *c) {
    if (!c) return;
    if (c->running) {
        atomic_store(&c->stopping, 1);
        ctl_wake(c);
        pthread_join(c->thread, NULL);
    }
    while (c->nconns > 0) ctl_close(c, c->nconns - 1);
    if (c->lfd >= 0) close(c->lfd);
    struct stat st;
    if (c->path && stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino) unlink(c->path);
    for (int i = 0; i < 2; i++)
        if (c->wake[i] >= 0) close(c->wake[i]);
    free(c->path);
    free(c->token);
    free(c->rows);
    free(c);
}
