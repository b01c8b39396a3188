/*
 * test_control.c -- the control plane (kino_control.c) over real sockets:
 * its thread failing to start, published snapshots (a question per
 * answer, the answer once the snapshot comes, the last snapshot with its
 * age once the wait is over), a forked child closing what it
 * inherited, one round of the poll loop in which a connection closes
 * before another is written, and the listener handed over (hot restart).
 */
#include <sys/wait.h>

/* One request, the whole answer into buf (the control plane closes
 * after it). Returns the bytes read. */
static size_t ctl_exchange(int port, const char *request, char *buf, size_t cap) {
    int fd = srv_connect_port(port), eof = 0;
    CHECKF(fd >= 0, "cannot connect to the control plane: %s", strerror(errno));
    if (fd < 0) return 0;
    srv_sends(fd, request);
    size_t n = srv_read(fd, buf, cap, 1, &eof);
    close(fd);
    return n;
}

static kino_control *ctl_test_new(int published) {
    char err[256] = "";
    kino_control_options o = {.host = "127.0.0.1", .mode = "cluster", .workers = 2, .threads = 3,
                              .io_threads = 1, .published = published};
    kino_control *c = kino_control_new(NULL, &o, err, sizeof err);
    CHECKF(c != NULL, "control_new: %s", err);
    return c;
}

/* pthread_create returns its error and need not set errno: the message
 * names the returned error (EAGAIN), not whatever errno held (ENOENT). */
static void control_thread_start_failure(void) {
    char err[256] = "";
    kino_control *c = ctl_test_new(0);
    if (!c) return;
    fail_thread_create = 1;
    int r = kino_control_start(c, err, sizeof err);
    fail_thread_create = 0;
    CHECK(r == KINO_ERROR);
    CHECKF(strstr(err, strerror(EAGAIN)) != NULL && strstr(err, strerror(ENOENT)) == NULL, "message: %s", err);
    kino_control_free(c);
}

/* Wait for the control thread's question; returns how many bytes (one
 * per question) were read. */
static int ctl_questions(kino_control *c) {
    struct pollfd p = {.fd = kino_control_question_fd(c), .events = POLLIN};
    char b[16];
    if (poll(&p, 1, 5000) != 1) return 0;
    ssize_t n = read(p.fd, b, sizeof b);
    return n > 0 ? (int)n : 0;
}

static void control_published_snapshots(void) {
    char buf[8192], err[256] = "";
    kino_control *c = ctl_test_new(1);
    if (!c) return;
    CHECKF(kino_control_start(c, err, sizeof err) == KINO_OK, "start: %s", err);
    int port = kino_control_port(c);
    kino_stats st = {.served = 42, .accepted = 7, .queue_wait = {40, 2}, .respawns = 1,
                     .pool = {.active_workers = 2, .max_workers = 4, .quarantined = 1, .quarantines = 3,
                              .scale_ups = 5, .scale_downs = 6}};
    kino_control_row rows[2] = {
        {.worker = 0, .pid = 101, .state = KINO_ROW_SERVING, .served = 30, .busy_ms = 1500, .accepted = 4},
        {.worker = 1, .pid = 102, .state = KINO_ROW_UNRESPONSIVE, .served = 12, .in_flight = 1, .lane = 3},
    };
    CHECK(kino_control_publish(c, &st, 2, rows, KINO_CONTROL_ROWS + 1, 0) == KINO_ERROR);

    /* the answer waits for the snapshot that answers its question */
    int fd = srv_connect_port(port), eof = 0;
    srv_sends(fd, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    int asked = ctl_questions(c);
    CHECKF(asked == 1, "questions read: %d", asked);
    CHECK(kino_control_publish(c, &st, 2, rows, 2, (uint64_t)asked) == KINO_OK);
    size_t n = srv_read(fd, buf, sizeof buf, 1, &eof);
    close(fd);
    buf[n] = 0;
    CHECKF(strstr(buf, "HTTP/1.1 200") && strstr(buf, "\"served\":42,") && strstr(buf, "\"respawns\":1,") &&
               strstr(buf, "\"stats_age_ms\":") &&
               strstr(buf, "\"active_workers\":2,\"max_workers\":4,\"quarantined\":1,\"quarantines\":3,"
                           "\"scale_ups\":5,\"scale_downs\":6,") &&
               !strstr(buf, "lane_depths") && strstr(buf, "\"busy_ms\":0,\"lane\":3,") &&
               strstr(buf, "{\"worker\":0,\"pid\":101,\"state\":\"serving\",\"served\":30,\"in_flight\":0,"
                           "\"busy_ms\":1500,\"lane\":0,\"accepted\":4,") &&
               strstr(buf, "\"worker\":1,\"pid\":102,\"state\":\"unresponsive\",\"served\":12,\"in_flight\":1"),
           "stats: %s", buf);

    /* no answer to the question: the last snapshot, with its age, once
     * KINO_CONTROL_WAIT_MS is over */
    fd = srv_connect_port(port);
    srv_sends(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(ctl_questions(c) == 1);
    n = srv_read(fd, buf, sizeof buf, 1, &eof);
    close(fd);
    buf[n] = 0;
    CHECKF(strstr(buf, "HTTP/1.1 200") && strstr(buf, "\nkino_requests_served_total 42\n") &&
               strstr(buf, "\nkino_stats_age_seconds 0.") &&
               strstr(buf, "\nkino_worker_requests_served_total{worker=\"1\"} 12\n") &&
               strstr(buf, "\nkino_worker_serving{worker=\"1\"} 0\n") &&
               strstr(buf, "\nkino_worker_lane_depth{worker=\"1\"} 3\n") &&
               strstr(buf, "\nkino_active_workers 2\n") && strstr(buf, "\nkino_max_workers 4\n") &&
               strstr(buf, "\nkino_quarantined_workers 1\n") && strstr(buf, "\nkino_quarantines_total 3\n") &&
               strstr(buf, "\nkino_scale_ups_total 5\n") && strstr(buf, "\nkino_scale_downs_total 6\n") &&
               strstr(buf, "\nkino_queue_wait_seconds_count 42\n"),
           "metrics: %s", buf);

    /* the probes never wait */
    n = ctl_exchange(port, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof buf);
    buf[n] = 0;
    CHECKF(strstr(buf, "HTTP/1.1 200"), "live: %s", buf);
    kino_control_free(c);
}

/* A forked child finds the control plane's listener and pipes closed
 * (a worker process must not hold the master's control socket), and
 * freeing its copy leaves the parent's unix socket file; the parent
 * still answers. */
static void control_closed_in_a_forked_child(void) {
    char buf[4096], err[256] = "", dir[] = "/tmp/kino-control-XXXXXX", path[256];
    if (!mkdtemp(dir)) {
        CHECKF(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(path, sizeof path, "%s/control.sock", dir);
    kino_control_options o = {.path = path, .mode = "cluster", .published = 1};
    kino_control *c = kino_control_new(NULL, &o, err, sizeof err);
    CHECKF(c != NULL, "control_new: %s", err);
    if (!c) return;
    CHECKF(kino_control_start(c, err, sizeof err) == KINO_OK, "start: %s", err);
    int fds[5] = {c->lfd, c->wake[0], c->wake[1], c->question[0], c->question[1]};
    pid_t pid = fork();
    if (pid == 0) {
        int open_fds = 0;
        for (int i = 0; i < 5; i++) open_fds += fcntl(fds[i], F_GETFD) != -1;
        kino_control_free(c);
        _exit(open_fds == 0 ? 0 : 10 + open_fds);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child kept %d of the control plane's fds",
           WEXITSTATUS(status) - 10);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    int fd = unix_connect(path), eof = 0;
    CHECK(fd >= 0);
    srv_sends(fd, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = srv_read(fd, buf, sizeof buf, 1, &eof);
    buf[n] = 0;
    close(fd);
    CHECKF(strstr(buf, "HTTP/1.1 503") && strstr(buf, "booting"), "ready: %s", buf);
    kino_control_free(c);
    CHECK(stat(path, &st) != 0);
    rmdir(dir);
}

/* One round of the poll loop (ctl_serve) where the first connection
 * closes (its deadline passed), which moves the last one into its slot:
 * the last one, which poll saw writable, still gets the rest of its
 * answer in that round, by what poll saw on it, not on the slot's
 * former occupant. */
static void control_round_after_a_close(void) {
    kino_control *c = ctl_test_new(0);
    if (!c) return;
    int peer[3];
    int64_t now = ctl_now_ms();
    for (int i = 0; i < 3; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        ctl_nonblock(sv[0]);
        ctl_nonblock(sv[1]); /* a failed check reads nothing rather than hang */
        cconn *k = &c->conns[c->nconns++];
        memset(k, 0, offsetof(cconn, in));
        k->fd = sv[0];
        k->deadline = i == 0 ? now - 1 : now + KINO_CONTROL_MS; /* the first one's time is up */
        peer[i] = sv[1];
    }
    cconn *last = &c->conns[2]; /* half its answer already sent */
    last->out = strdup("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
    last->out_len = strlen(last->out);
    last->out_off = 9;
    struct pollfd p[5] = {{.fd = c->wake[0]}, {.fd = c->lfd}, {.fd = c->conns[0].fd, .events = POLLIN},
                          {.fd = c->conns[1].fd, .events = POLLIN},
                          {.fd = last->fd, .events = POLLOUT, .revents = POLLOUT}};
    ctl_serve(c, p, 1, now);
    CHECKF(c->nconns == 1, "%d connections left, want 1 (the idle one)", c->nconns);
    char buf[256];
    ssize_t n = read(peer[2], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    CHECKF(n > 0 && strcmp(buf, "200 OK\r\ncontent-length: 3\r\n\r\nok\n") == 0, "the rest of the answer: %s", buf);
    CHECK(read(peer[0], buf, sizeof buf) == 0); /* the first one was closed */
    for (int i = 0; i < 3; i++) close(peer[i]);
    kino_control_free(c);
}

/* A hot restart hands the listener over: freeing a control plane whose
 * listener is kept leaves it open, a client that connects meanwhile waits
 * in the backlog, and the control plane that adopts the descriptor (the
 * next program's) serves the same port and answers that client. A
 * descriptor that is not a listening socket is refused. */
static void control_listener_handed_over(void) {
    char buf[4096], err[256] = "";
    kino_control *c = ctl_test_new(0);
    if (!c) return;
    CHECKF(kino_control_start(c, err, sizeof err) == KINO_OK, "start: %s", err);
    int port = kino_control_port(c), fd = kino_control_keep_listener(c);
    kino_control_free(c);
    CHECKF(fcntl(fd, F_GETFD) != -1, "the kept listener %d was closed", fd);
    int early = srv_connect_port(port), eof = 0; /* nobody accepts now: the backlog holds it */
    CHECKF(early >= 0, "connect while handed over: %s", strerror(errno));
    if (early < 0) return;
    srv_sends(early, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n");
    kino_control_options o = {.host = "127.0.0.1", .mode = "threaded", .adopt = 1, .fd = fd};
    kino_control *next = kino_control_new(NULL, &o, err, sizeof err);
    CHECKF(next != NULL, "adopt: %s", err);
    if (!next) return;
    CHECK(kino_control_port(next) == port);
    CHECKF(kino_control_start(next, err, sizeof err) == KINO_OK, "start: %s", err);
    size_t n = srv_read(early, buf, sizeof buf - 1, 1, &eof);
    buf[n] = 0;
    close(early);
    CHECKF(strstr(buf, "HTTP/1.1 200") && strstr(buf, "live"), "the waiting client: %s", buf);
    kino_control_free(next);
    CHECK(fcntl(fd, F_GETFD) == -1); /* not kept this time: closed */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    kino_control_options bad = {.host = "127.0.0.1", .mode = "threaded", .adopt = 1, .fd = pipefd[0]};
    CHECK(kino_control_new(NULL, &bad, err, sizeof err) == NULL);
    CHECKF(strstr(err, "not a listening socket") != NULL, "message: %s", err);
    close(pipefd[0]);
    close(pipefd[1]);
}

static void test_control(void) {
    control_thread_start_failure();
    control_published_snapshots();
    control_closed_in_a_forked_child();
    control_round_after_a_close();
    control_listener_handed_over();
}
