/*
 * test_server.c -- the engine used from plain C, as kino.h documents:
 * start a server, answer with worker threads through kino_take and the
 * response writer, and talk to it over real sockets.
 */
#include <netinet/in.h>
#include <sys/time.h>

static kino_server *srv;

/* The test app: echoes method, path and body. */
static void *srv_worker(void *arg) {
    kino_waiter *w = kino_waiter_new(srv, 0);
    kino_conn *c;
    (void)arg;
    while ((c = kino_take(srv, w, 1)) != NULL) {
        do {
            const kino_head *h = kino_conn_head(c);
            char body[70000];
            int n = snprintf(body, sizeof body, "%.*s %.*s ", (int)h->method.n, h->method.p,
                             (int)h->path.n, h->path.p);
            size_t len = (size_t)n;
            for (;;) {
                long r = kino_body_read(c, w, body + len, sizeof body - len);
                if (r > 0) len += (size_t)r;
                else if (r == KINO_AGAIN && kino_wait(c, w, KINO_WAIT_READ) == KINO_OK) continue;
                else break;
            }
            if (kino_conn_refused(c)) kino_resp_error(c, w, 500);
            else kino_respond_simple(c, w, 200, "text/plain", body, len);
        } while ((c = kino_next(c, w)) != NULL);
    }
    kino_waiter_free(w);
    return NULL;
}

static int srv_connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {5, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int srv_connect(void) { return srv_connect_port(kino_server_port(srv)); }

static void srv_send(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void srv_sends(int fd, const char *s) { srv_send(fd, s, strlen(s)); }

/* How many complete responses (head, then a Content-Length body or none)
 * the first len bytes of buf hold. Also test_tls.c's (run.c includes this
 * file first). */
static int srv_complete(const char *buf, size_t len) {
    int complete = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *he = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!he) break;
        const char *cl = memmem(p, (size_t)(he - p), "Content-Length: ", 16);
        size_t body = cl ? (size_t)strtoul(cl + 16, NULL, 10) : 0;
        if ((size_t)(end - (he + 4)) < body) break;
        complete++;
        p = he + 4 + body;
    }
    return complete;
}

/* Read until `responses` complete Content-Length responses arrived, or
 * EOF, or the 5 s timeout. Returns the bytes read; *eof says whether the
 * server closed. */
static size_t srv_read(int fd, char *buf, size_t cap, int responses, int *eof) {
    size_t len = 0;
    *eof = 0;
    for (;;) {
        if (srv_complete(buf, len) >= responses) return len;
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            *eof = n == 0;
            return len;
        }
        len += (size_t)n;
        buf[len] = 0;
    }
}

static int srv_closed(int fd) {
    char c;
    return recv(fd, &c, 1, 0) == 0;
}

static int count(const char *hay, size_t len, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = memmem(p, (size_t)(hay + len - p), needle, strlen(needle))); p++) n++;
    return n;
}

/* Each scenario below opens its own connections to srv, checks what
 * comes back, and returns early when it cannot connect (one failed CHECK,
 * not a cascade of them). They run in order against one server. */

/* A GET, a keep-alive reuse of the same connection, and three pipelined
 * requests in one write answered in order. */
static void server_keepalive_and_pipelining(char *buf, size_t cap) {
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    srv_sends(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = srv_read(fd, buf, cap, 1, &eof);
    CHECKF(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(buf, "GET /one ") &&
               strstr(buf, "\r\nDate: ") && strstr(buf, "\r\nServer: Kino\r\n") &&
               strstr(buf, "Content-Length: 9\r\n"),
           "first response: %.*s", (int)n, buf);
    srv_sends(fd, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    n = srv_read(fd, buf, cap, 1, &eof);
    CHECK(n > 0 && strstr(buf, "GET /two "));

    const char *pipe3 = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n"
                        "Content-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    srv_send(fd, pipe3, strlen(pipe3));
    n = srv_read(fd, buf, cap, 3, &eof);
    char *a = strstr(buf, "GET /a "), *b = strstr(buf, "POST /b hello"), *c = strstr(buf, "GET /c ");
    CHECKF(a && b && c && a < b && b < c, "pipelined order: %.*s", (int)n, buf);
    close(fd);
}

/* HTTP/1.0: answered, then closed. */
static void server_http10_closes(char *buf, size_t cap) {
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    srv_sends(fd, "GET /old HTTP/1.0\r\n\r\n");
    srv_read(fd, buf, cap, 1, &eof);
    CHECK(strstr(buf, "GET /old ") && strstr(buf, "Connection: close"));
    CHECK(srv_closed(fd));
    close(fd);
}

/* A chunked upload is decoded for the worker. */
static void server_chunked_upload(char *buf, size_t cap) {
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    const char *chunked = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n";
    srv_send(fd, chunked, strlen(chunked));
    size_t n = srv_read(fd, buf, cap, 1, &eof);
    CHECKF(strstr(buf, "POST /up abcdefg"), "chunked upload: %.*s", (int)n, buf);
    close(fd);
}

/* A large body arriving in pieces. */
static void server_large_body(char *buf, size_t cap) {
    static char big[60000];
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    memset(big, 'z', sizeof big);
    snprintf(buf, cap, "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", sizeof big);
    srv_send(fd, buf, strlen(buf));
    for (size_t off = 0; off < sizeof big; off += 7000)
        srv_send(fd, big + off, sizeof big - off < 7000 ? sizeof big - off : 7000);
    srv_read(fd, buf, cap, 1, &eof);
    CHECKF(strstr(buf, "Content-Length: 60009\r\n") != NULL, "big body: %.60s", buf);
    close(fd);
}

/* Malformed: 400, then the connection closes (no resynchronising on
 * what follows the bad head). */
static void server_malformed_closes(char *buf, size_t cap) {
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    srv_sends(fd, "GET / HTTP/1.1\r\nHost : x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = srv_read(fd, buf, cap, 2, &eof);
    CHECKF(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "400: %.*s", (int)n, buf);
    CHECK(count(buf, n, "HTTP/1.1") == 1 && eof);
    close(fd);
}

/* An unsupported version: 505. */
static void server_version_505(char *buf, size_t cap) {
    int eof, fd = srv_connect();
    CHECK(fd >= 0);
    if (fd < 0) return;
    srv_sends(fd, "GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    srv_read(fd, buf, cap, 1, &eof);
    CHECK(strncmp(buf, "HTTP/1.1 505 ", 13) == 0);
    close(fd);
}

/* The counters once the scenarios above are done. A worker counts a
 * response after the client may already have read it, so wait for it. */
static void server_stats(uint64_t served, uint64_t accepted) {
    kino_stats st;
    kino_server_stats(srv, &st);
    for (int i = 0; i < 500 && st.served < served; i++) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
        kino_server_stats(srv, &st);
    }
    CHECKF(st.served == served && st.accepted == accepted, "stats: served %llu accepted %llu",
           (unsigned long long)st.served, (unsigned long long)st.accepted);
}

/* Shutdown: drain closes the listener and idle connections at once. */
static void server_drain(char *buf, size_t cap) {
    int eof, fd = srv_connect(); /* an idle keep-alive connection */
    CHECK(fd >= 0);
    if (fd < 0) return;
    srv_sends(fd, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    srv_read(fd, buf, cap, 1, &eof);
    kino_server_drain(srv);
    CHECK(srv_connect() < 0);
    CHECK(srv_closed(fd));
    close(fd);
    for (int i = 0; i < 100 && kino_server_outstanding(srv) > 0; i++) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    CHECK(kino_server_outstanding(srv) == 0);
}

static void test_server(void) {
    static char buf[1 << 17];
    char err[256];
    kino_options o;
    pthread_t workers[2];

    kino_options_init(&o);
    o.port = 0;
    srv = kino_server_new(&o, err, sizeof err);
    CHECKF(srv != NULL, "server_new: %s", err);
    if (!srv) return;
    CHECKF(kino_server_start(srv, err, sizeof err) == KINO_OK, "start: %s", err);
    CHECK(kino_server_port(srv) > 0);
    for (int i = 0; i < 2; i++) pthread_create(&workers[i], NULL, srv_worker, NULL);

    server_keepalive_and_pipelining(buf, sizeof buf);
    server_http10_closes(buf, sizeof buf);
    server_chunked_upload(buf, sizeof buf);
    server_large_body(buf, sizeof buf);
    server_malformed_closes(buf, sizeof buf);
    server_version_505(buf, sizeof buf);
    server_stats(8, 6);
    server_drain(buf, sizeof buf);

    kino_server_stop(srv);
    for (int i = 0; i < 2; i++) pthread_join(workers[i], NULL);
    kino_server_free(srv);
}

/* Connect to the unix socket at path (5 s receive timeout). */
static int unix_connect(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {5, 0};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Start srv on the given listeners with two workers; 0 on success. */
static int listeners_start(kino_listen *ls, int n, pthread_t *workers) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    o.listen = ls;
    o.nlisten = n;
    srv = kino_server_new(&o, err, sizeof err);
    CHECKF(srv != NULL, "server_new: %s", err);
    if (!srv) return -1;
    CHECKF(kino_server_start(srv, err, sizeof err) == KINO_OK, "start: %s", err);
    for (int i = 0; i < 2; i++) pthread_create(&workers[i], NULL, srv_worker, NULL);
    return 0;
}

static void listeners_stop(pthread_t *workers) {
    kino_server_drain(srv);
    kino_server_stop(srv);
    for (int i = 0; i < 2; i++) pthread_join(workers[i], NULL);
    kino_server_free(srv);
    srv = NULL;
}

/* Several listeners (TCP adopted from an fd we opened, and unix), then a
 * hand-over: a server that keeps its listeners leaves them open and the
 * socket file in place, and a second server adopting the same fds
 * answers the connection that waited in the backlog meanwhile. */
static void test_listeners(void) {
    char dir[] = "/tmp/kino-test-XXXXXX", path[128], buf[4096];
    pthread_t workers[2];
    int eof;
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/s.sock", dir);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 16) == 0);

    kino_listen ls[2] = {{.fd = lfd}, {.path = path, .fd = -1, .flags = KINO_LISTEN_PROXY}};
    if (listeners_start(ls, 2, workers) < 0) return;
    kino_listener_info li;
    CHECK(kino_server_listener_count(srv) == 2);
    CHECK(kino_server_listener(srv, 0, &li) == KINO_OK && li.fd == lfd && li.kind == KINO_TCP && li.port > 0);
    CHECK(li.port == kino_server_port(srv));
    CHECK(kino_server_listener(srv, 1, &li) == KINO_OK && li.kind == KINO_UNIX && li.port == 0 &&
          li.flags == KINO_LISTEN_PROXY);
    int ufd = li.fd;
    CHECK(kino_server_listener(srv, 2, &li) == KINO_ERROR);

    int fd = srv_connect();
    srv_sends(fd, "GET /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    srv_read(fd, buf, sizeof buf, 1, &eof);
    CHECKF(strstr(buf, "GET /tcp ") != NULL, "adopted listener: %.80s", buf);
    close(fd);
    fd = unix_connect(path);
    srv_sends(fd, "PROXY TCP4 192.0.2.1 127.0.0.1 5 80\r\nGET /unix HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\n\r\n");
    srv_read(fd, buf, sizeof buf, 1, &eof);
    CHECKF(strstr(buf, "GET /unix ") != NULL, "unix listener: %.80s", buf);
    close(fd);

    /* hand over: the listeners outlive the server */
    int port = kino_server_port(srv);
    kino_server_keep_listeners(srv);
    listeners_stop(workers);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    int waiting = srv_connect_port(port); /* in the backlog, nobody accepting */
    CHECK(waiting >= 0);
    srv_sends(waiting, "GET /waited HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

    kino_listen again[1] = {{.fd = lfd}};
    if (listeners_start(again, 1, workers) < 0) return;
    srv_read(waiting, buf, sizeof buf, 1, &eof);
    CHECKF(strstr(buf, "GET /waited ") != NULL, "backlog served after hand-over: %.80s", buf);
    close(waiting);
    listeners_stop(workers); /* this one closes lfd */
    CHECK(fcntl(lfd, F_GETFD) < 0);
    CHECK(fcntl(ufd, F_GETFD) >= 0); /* kept: still ours to close */
    close(ufd);

    /* the unix socket file is now stale: a new server reclaims it, and
     * removes it when freed */
    kino_listen un[1] = {{.path = path, .fd = -1}};
    if (listeners_start(un, 1, workers) < 0) return;
    fd = unix_connect(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    listeners_stop(workers);
    CHECK(stat(path, &st) < 0);
    rmdir(dir);
}

/* ------------------------------------------------------------------ */
/* Workers handing connections back after kino_server_stop            */
/* ------------------------------------------------------------------ */

#define GONE_WORKERS 4

static pthread_barrier_t gone_taken, gone_stopped;

/* Takes one request, waits until the server is stopped, then answers
 * and hands the connection back: with the I/O threads gone, kino_next
 * closes it on this thread, at the same moment as the other workers. */
static void *gone_worker(void *arg) {
    kino_server *s = arg;
    kino_waiter *w = kino_waiter_new(s, 0);
    kino_conn *c = kino_take(s, w, 1);
    pthread_barrier_wait(&gone_taken);
    pthread_barrier_wait(&gone_stopped);
    if (c) {
        kino_respond_simple(c, w, 200, "text/plain", "late\n", 5);
        while ((c = kino_next(c, w)) != NULL) {
        }
    }
    kino_waiter_free(w);
    return NULL;
}

/* Connections on one I/O thread's timer list, handed back by several
 * workers at once after the I/O threads have ended: each close unlinks
 * the connection from that list, so the closes must not race (make tsan
 * reports it when they do), and every connection must be freed. */
static void test_release_after_stop(void) {
    char err[256];
    kino_options o;
    pthread_t workers[GONE_WORKERS];
    int fds[GONE_WORKERS];
    kino_options_init(&o);
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server_new: %s", err);
    if (!s) return;
    CHECKF(kino_server_start(s, err, sizeof err) == KINO_OK, "start: %s", err);
    pthread_barrier_init(&gone_taken, NULL, GONE_WORKERS + 1);
    pthread_barrier_init(&gone_stopped, NULL, GONE_WORKERS + 1);
    for (int i = 0; i < GONE_WORKERS; i++) pthread_create(&workers[i], NULL, gone_worker, s);
    srv = s;
    for (int i = 0; i < GONE_WORKERS; i++) {
        fds[i] = srv_connect();
        CHECK(fds[i] >= 0);
        if (fds[i] >= 0) srv_sends(fds[i], "GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pthread_barrier_wait(&gone_taken); /* every worker holds a request */
    kino_server_stop(s);
    CHECK(atomic_load(&s->io_gone));
    pthread_barrier_wait(&gone_stopped);
    for (int i = 0; i < GONE_WORKERS; i++) pthread_join(workers[i], NULL);
    CHECKF(atomic_load(&s->conns) == 0, "connections left open: %llu",
           (unsigned long long)atomic_load(&s->conns));
    for (int i = 0; i < GONE_WORKERS; i++) {
        if (fds[i] < 0) continue;
        char buf[512];
        int eof;
        size_t n = srv_read(fds[i], buf, sizeof buf, 1, &eof);
        CHECKF(n > 0 && strstr(buf, "late\n"), "late answer: %.*s", (int)n, buf);
        close(fds[i]);
    }
    pthread_barrier_destroy(&gone_taken);
    pthread_barrier_destroy(&gone_stopped);
    kino_server_free(s);
}

/* A thread that cannot start is reported with the error pthread_create
 * returned (it does not set errno), and the server is left stopped. */
static void test_thread_start_failure(void) {
    char err[256] = "";
    kino_options o;
    kino_options_init(&o);
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server_new: %s", err);
    if (!s) return;
    fail_thread_create = 1;
    int r = kino_server_start(s, err, sizeof err);
    fail_thread_create = 0;
    CHECK(r == KINO_ERROR);
    CHECKF(strstr(err, strerror(EAGAIN)) != NULL, "message: %s", err);
    CHECK(kino_server_stopped(s));
    kino_server_free(s);
}

/* An I/O thread whose poller fails (here: its epoll or kqueue descriptor
 * replaced by /dev/null) ends with a message instead of spinning on the
 * error, and gives the listener up. */
static void test_poller_failure(void) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server_new: %s", err);
    if (!s) return;
    CHECKF(kino_server_start(s, err, sizeof err) == KINO_OK, "start: %s", err);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(null >= 0 && dup2(null, s->io[0].p.fd) == s->io[0].p.fd);
    close(null);
    for (int i = 0; i < 500 && !atomic_load(&s->io[0].failed); i++) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    CHECKF(atomic_load(&s->io[0].failed) != 0, "the I/O thread did not notice its poller failed");
    CHECK(atomic_load(&s->listeners) == 0);
    kino_server_stop(s);
    kino_server_free(s);
}

/* The server keeps no pointer into the caller's strings: they may change
 * or go away once kino_server_new returns. */
static void test_options_copied(void) {
    char err[256], *bind = strdup("127.0.0.1");
    kino_options o;
    kino_options_init(&o);
    o.bind = bind;
    kino_server *s = kino_server_new(&o, err, sizeof err);
    memset(bind, 'x', strlen(bind));
    free(bind);
    CHECKF(s != NULL, "server_new: %s", err);
    if (!s) return;
    CHECKF(s->o.bind == NULL || strcmp(s->o.bind, "127.0.0.1") == 0, "bind: %.16s", s->o.bind);
    kino_server_free(s);
}

/* kino_server_workers counts every live waiter, even past the rows it
 * was given room for, so a caller can ask again with enough. */
static void test_worker_rows(void) {
    enum { N = 300 };
    static kino_waiter *ws[N];
    static kino_worker_stats rows[N];
    char err[256];
    kino_options o;
    kino_options_init(&o);
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server_new: %s", err);
    if (!s) return;
    for (int i = 0; i < N; i++) ws[i] = kino_waiter_new(s, i);
    CHECK(kino_server_workers(s, rows, 4) == N);
    CHECK(kino_server_workers(s, rows, N) == N);
    int seen = 0;
    for (int i = 0; i < N; i++) seen += rows[i].worker == i;
    CHECKF(seen == N, "rows in order: %d of %d", seen, N);
    for (int i = 0; i < N; i++) kino_waiter_free(ws[i]);
    CHECK(kino_server_workers(s, rows, N) == 0);
    kino_server_free(s);
}

/* At the connection cap a new client takes the place of an idle
 * keep-alive connection (conn_victim). When the listener's event and that
 * idle connection's event come in the same batch from the poller, the
 * I/O thread closes the connection while handling the first and must not
 * touch it for the second (a use-after-free, which SANITIZE=1, valgrind
 * and tsan report). kqueue makes such batches all the time: a socket
 * readable and writable is two events. Here the batch is made by holding
 * the server's mutex: a third connection's complete request stops the I/O
 * thread in ready_push while the new client connects and then the idle
 * one sends its next request (the pauses only give the I/O thread time
 * to get there). The new client and the third are served either way. */
static void test_victim_in_the_same_batch(void) {
    char err[256], buf[4096];
    pthread_t worker;
    kino_options o;
    int eof;
    kino_options_init(&o);
    o.max_connections = 2;
    srv = kino_server_new(&o, err, sizeof err);
    CHECKF(srv != NULL, "server_new: %s", err);
    if (!srv) return;
    CHECKF(kino_server_start(srv, err, sizeof err) == KINO_OK, "start: %s", err);
    pthread_create(&worker, NULL, srv_worker, NULL);
    int idle = srv_connect(), third = srv_connect(), late = -1;
    CHECK(idle >= 0 && third >= 0);
    if (idle >= 0 && third >= 0) {
        srv_sends(idle, "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(srv_read(idle, buf, sizeof buf, 1, &eof) > 0 && strstr(buf, "GET /idle "));
        pthread_mutex_lock(&srv->mu);
        srv_sends(third, "GET /third HTTP/1.1\r\nHost: x\r\n\r\n");
        usleep(200 * 1000); /* the I/O thread reads it and waits for the mutex */
        late = srv_connect();
        srv_sends(idle, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
        usleep(100 * 1000);
        pthread_mutex_unlock(&srv->mu);
        CHECK(srv_read(third, buf, sizeof buf, 1, &eof) > 0 && strstr(buf, "GET /third "));
        CHECK(late >= 0);
        if (late >= 0) {
            srv_sends(late, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
            CHECK(srv_read(late, buf, sizeof buf, 1, &eof) > 0 && strstr(buf, "GET /late "));
        }
        /* closed to make way when the listener's event came first (epoll
         * keeps that order), else answered (kqueue may report it first) */
        size_t n = srv_read(idle, buf, sizeof buf, 1, &eof);
        CHECKF(n == 0 || strstr(buf, "GET /again "), "the idle connection: %.*s", (int)n, buf);
    }
    if (idle >= 0) close(idle);
    if (third >= 0) close(third);
    if (late >= 0) close(late);
    kino_server_stop(srv);
    pthread_join(worker, NULL);
    kino_server_free(srv);
    srv = NULL;
}
