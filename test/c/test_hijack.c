/*
 * test_hijack.c -- kino_hijack and the response-ownership rules, over
 * real sockets: after a hijack the engine neither writes (not even a
 * request_timeout 504) nor closes the fd, and the bytes it read ahead
 * reach the new owner; a kino_resp_error after a handed-off response
 * neither leaks it nor replaces it. Uses test_server.c's helpers.
 */

#define HJ_BIG (512 * 1024) /* a response the I/O thread finishes */

static char hj_body[HJ_BIG];
static _Atomic int hj_handed; /* /handoff: the worker has handed its response off */

static void hj_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void hj_write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            hj_sleep_ms(1);
            continue;
        }
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Serve one request by path; returns what kino_next returns. */
static kino_conn *hj_serve(kino_conn *c, kino_waiter *w) {
    const kino_head *h = kino_conn_head(c);
    const char *rest;
    size_t rest_len;
    char msg[256];

    if (span_is(h->path, "/full")) { /* full hijack, then outlive request_timeout */
        int r = kino_hijack(c, w, &rest, &rest_len);
        int fd = kino_conn_fd(c);
        CHECK(r == KINO_OK);
        CHECK(kino_resp_begin(c, w, 200) == KINO_ERROR); /* the engine is done with it */
        hj_sleep_ms(2500); /* past request_timeout, still on a timer list: no 504 */
        CHECK(kino_next(c, w) == NULL);
        hj_sleep_ms(100); /* the I/O thread frees the struct: no close */
        int n = snprintf(msg, sizeof msg, "raw:%.*s:end", (int)rest_len, rest ? rest : "");
        hj_write_all(fd, msg, (size_t)n);
        close(fd); /* ours: the engine never closes it */
        return NULL;
    }
    if (span_is(h->path, "/upgrade")) { /* a 101 head, then the socket */
        kino_resp_begin(c, w, 101);
        kino_resp_header(c, w, "Upgrade", 7, "x-test", 6);
        kino_resp_header(c, w, "Connection", 10, "Upgrade", 7);
        kino_resp_header(c, w, "Content-Length", 14, "5", 1); /* dropped on a 1xx */
        CHECK(kino_resp_end_head(c, w, KINO_BODY_HIJACK, 0) == KINO_OK);
        int r;
        while ((r = kino_resp_flush(c, w)) == KINO_AGAIN) kino_wait(c, w, KINO_WAIT_WRITE);
        CHECK(kino_hijack(c, w, &rest, &rest_len) == KINO_OK);
        int fd = kino_conn_fd(c);
        kino_next(c, w);
        int n = snprintf(msg, sizeof msg, "proto:%.*s", (int)rest_len, rest ? rest : "");
        hj_write_all(fd, msg, (size_t)n);
        close(fd);
        return NULL;
    }
    if (span_is(h->path, "/plain101")) { /* a 101 that nobody takes over */
        kino_resp_begin(c, w, 101);
        CHECK(kino_resp_end_head(c, w, KINO_BODY_NONE, 0) == KINO_ERROR);
        kino_resp_error(c, w, 500);
        return kino_next(c, w);
    }
    if (span_is(h->path, "/handoff")) { /* then an error once it is handed off */
        int small = 4096;
        setsockopt(kino_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        /* fill the socket first, so not one byte of the response goes
         * out (the client skips these 'f's) */
        while (send(kino_conn_fd(c), "ffffffff", 8, MSG_NOSIGNAL) > 0) {
        }
        kino_resp_begin(c, w, 200);
        kino_resp_end_head(c, w, KINO_BODY_LENGTH, HJ_BIG);
        kino_resp_write_ref(c, w, hj_body, HJ_BIG);
        CHECKF(kino_resp_end(c, w) == KINO_OK && c->out != NULL && kino_resp_sent(c) == 0,
               "response handed off unsent");
        CHECK(kino_resp_error(c, w, 500) == KINO_ERROR); /* the 200 stands */
        c = kino_next(c, w);
        atomic_store(&hj_handed, 1);
        return c;
    }
    kino_respond_simple(c, w, 200, "text/plain", "ok", 2);
    return kino_next(c, w);
}

static void *hj_worker(void *arg) {
    kino_waiter *w = kino_waiter_new(srv, 0);
    kino_conn *c;
    (void)arg;
    while ((c = kino_take(srv, w, 1)) != NULL)
        while (c) c = hj_serve(c, w);
    kino_waiter_free(w);
    return NULL;
}

/* Read until EOF or the 5 s receive timeout. */
static size_t hj_read_all(int fd, char *buf, size_t cap) {
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = recv(fd, buf + len, cap - 1 - len, 0)) > 0) len += (size_t)n;
    buf[len] = 0;
    return len;
}

static void test_hijack(void) {
    static char buf[HJ_BIG + 4096];
    char err[256];
    kino_options o;
    pthread_t worker;
    kino_stats st;
    int fd;
    size_t n;

    memset(hj_body, 'b', sizeof hj_body);
    kino_options_init(&o);
    o.request_timeout = 2.0; /* generous: a loaded machine must still take each request in time */
    srv = kino_server_new(&o, err, sizeof err);
    CHECKF(srv != NULL, "server_new: %s", err);
    if (!srv) return;
    CHECK(kino_server_start(srv, err, sizeof err) == KINO_OK);
    pthread_create(&worker, NULL, hj_worker, NULL);

    /* full hijack: the bytes after the head reach the owner, and the
     * engine writes nothing (no 504) and closes nothing */
    fd = srv_connect();
    CHECK(fd >= 0);
    srv_sends(fd, "GET /full HTTP/1.1\r\nHost: x\r\n\r\nEXTRA");
    n = hj_read_all(fd, buf, sizeof buf);
    CHECKF(n == 13 && strcmp(buf, "raw:EXTRA:end") == 0, "full hijack: %.*s", (int)n, buf);
    close(fd);

    /* a 101 head without framing, then raw bytes */
    fd = srv_connect();
    srv_sends(fd, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: x-test\r\nConnection: Upgrade\r\n\r\nhi");
    n = hj_read_all(fd, buf, sizeof buf);
    CHECKF(strncmp(buf, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0 &&
               strstr(buf, "\r\nConnection: Upgrade\r\n") && strstr(buf, "\r\nUpgrade: x-test\r\n") &&
               !strstr(buf, "Content-Length") && !strstr(buf, "Transfer-Encoding") &&
               !strstr(buf, "close") && strstr(buf, "\r\n\r\nproto:hi") &&
               strlen(strstr(buf, "\r\n\r\n")) == 12,
           "upgrade: %.*s", (int)n, buf);
    close(fd);

    /* a 101 that would leave the connection in limbo is a 500 instead */
    fd = srv_connect();
    srv_sends(fd, "GET /plain101 HTTP/1.1\r\nHost: x\r\n\r\n");
    n = hj_read_all(fd, buf, sizeof buf);
    CHECKF(strncmp(buf, "HTTP/1.1 500 ", 13) == 0 && count(buf, n, "HTTP/1.1") == 1, "plain 101: %.*s",
           (int)n, buf);
    close(fd);

    /* kino_resp_error after the I/O thread took over the unsent rest of
     * a complete response: the 200 arrives whole, nothing leaks (the
     * sanitizer build checks), and the connection closes after it */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kino_server_port(srv))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    srv_sends(fd, "GET /handoff HTTP/1.1\r\nHost: x\r\n\r\n");
    /* the client reads nothing until the worker has handed off (however
     * slow valgrind makes it), so the socket stays full meanwhile */
    for (int i = 0; i < 2000 && !atomic_load(&hj_handed); i++) hj_sleep_ms(10);
    n = hj_read_all(fd, buf, sizeof buf);
    const char *resp = buf, *body = strstr(buf, "\r\n\r\n");
    while (*resp == 'f') resp++;
    CHECKF(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0 && body &&
               (size_t)(buf + n - (body + 4)) == HJ_BIG && count(buf, n, "HTTP/1.1") == 1,
           "handed-off response: %zu bytes, %.40s", n, resp);
    close(fd);

    /* a plain request still works, and the hijacks are counted apart */
    fd = srv_connect();
    srv_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    n = hj_read_all(fd, buf, sizeof buf);
    CHECK(strstr(buf, "\r\n\r\nok") != NULL);
    close(fd);
    for (int i = 0; i < 200; i++) {
        kino_server_stats(srv, &st);
        if (st.connections == 0) break;
        hj_sleep_ms(10);
    }
    CHECKF(st.hijacked == 2 && st.connections == 0 && st.timeouts == 0,
           "stats: hijacked %llu connections %llu timeouts %llu", (unsigned long long)st.hijacked,
           (unsigned long long)st.connections, (unsigned long long)st.timeouts);

    kino_server_drain(srv);
    kino_server_stop(srv);
    pthread_join(worker, NULL);
    kino_server_free(srv);
    srv = NULL;
}
