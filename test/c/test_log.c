/*
 * test_log.c -- the log sink (kino_log.c): every line from many threads
 * arrives whole and once (a write refused by a full ring is counted as a
 * drop, and retried here), records longer than a slot and
 * than a record, a plain fork(2) whose child logs through its own
 * flusher, reopen after a rename, close, the note rate limit, and the
 * access line formats.
 */
#include <sys/wait.h>

static char log_dir[] = "/tmp/kino-test-log-XXXXXX";

static char *log_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

#define L_THREADS 4
#define L_LINES 5000
static int l_sink;
static _Atomic uint64_t l_refused; /* writes refused because the ring was full */

/* Line i of thread t: "t<t> <i> " then a body whose length depends on i
 * (one slot, several slots), ending in a checksum letter. */
static size_t l_line(char *buf, int t, int i) {
    size_t n = (size_t)sprintf(buf, "t%d %d ", t, i);
    size_t body = (size_t)(i % 7 == 0 ? 700 : i % 3 == 0 ? 250 : 20);
    for (size_t k = 0; k < body; k++) buf[n++] = (char)('a' + (i + (int)k) % 26);
    buf[n++] = (char)('A' + (t * 31 + i) % 26);
    return n;
}

static void *l_writer(void *arg) {
    int t = (int)(intptr_t)arg;
    char buf[1024];
    for (int i = 0; i < L_LINES; i++) {
        size_t n = l_line(buf, t, i);
        while (kino_log_write(l_sink, buf, n) < 0) { /* full: counted as a drop; retry */
            struct timespec ts = {0, 100000}; /* let the flusher run (valgrind serializes threads) */
            atomic_fetch_add(&l_refused, 1);
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void test_log_stress(void) {
    char path[256], want[1024];
    snprintf(path, sizeof path, "%s/stress.log", log_dir);
    char err[128] = "";
    l_sink = kino_log_open(path, err, sizeof err);
    CHECKF(l_sink > 0, "open: %s", err);
    uint64_t dropped0 = kino_log_dropped();
    pthread_t th[L_THREADS];
    for (int t = 0; t < L_THREADS; t++) pthread_create(&th[t], NULL, l_writer, (void *)(intptr_t)t);
    for (int t = 0; t < L_THREADS; t++) pthread_join(th[t], NULL);
    CHECK(kino_log_flush(10.0) == 0);
    size_t len;
    char *data = log_read(path, &len);
    CHECK(data != NULL);
    if (!data) return;
    static unsigned char seen[L_THREADS][L_LINES];
    memset(seen, 0, sizeof seen);
    long lines = 0, bad = 0, dup = 0;
    for (char *p = data, *nl; p < data + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(data + len - p));
        if (!nl) {
            bad++;
            break;
        }
        int t, i;
        lines++;
        if (sscanf(p, "t%d %d ", &t, &i) != 2 || t < 0 || t >= L_THREADS || i < 0 || i >= L_LINES) {
            bad++;
            continue;
        }
        size_t n = l_line(want, t, i);
        if ((size_t)(nl - p) != n || memcmp(p, want, n) != 0) bad++;
        else if (seen[t][i]++) dup++;
    }
    uint64_t dropped = kino_log_dropped() - dropped0;
    CHECKF(bad == 0, "%ld torn or foreign lines", bad);
    CHECKF(dup == 0, "%ld lines written twice", dup);
    CHECKF(lines == L_THREADS * L_LINES, "%ld lines of %d", lines, L_THREADS * L_LINES);
    CHECKF(dropped == atomic_load(&l_refused), "%llu drops counted for %llu refused writes",
           (unsigned long long)dropped, (unsigned long long)atomic_load(&l_refused));
    free(data);
    kino_log_close(l_sink);
    CHECK(kino_log_write(l_sink, "late\n", 5) == -1); /* closed: ignored */
}

/* A record longer than KINO_LOG_MAX_RECORD arrives cut at line ends; a
 * single longer line is broken, nothing is lost. */
static void test_log_long(void) {
    char path[256], err[128];
    snprintf(path, sizeof path, "%s/long.log", log_dir);
    int sink = kino_log_open(path, err, sizeof err);
    size_t n = KINO_LOG_MAX_RECORD * 2 + 100;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    for (size_t i = 99; i < n; i += 100) big[i] = '\n'; /* 100-byte lines */
    CHECK(kino_log_write(sink, big, n) == 0);
    char *one = malloc(KINO_LOG_MAX_RECORD + 10);
    memset(one, 'x', KINO_LOG_MAX_RECORD + 10);
    CHECK(kino_log_write(sink, one, KINO_LOG_MAX_RECORD + 10) == 0);
    CHECK(kino_log_flush(5.0) == 0);
    size_t len;
    char *data = log_read(path, &len);
    CHECK(data && len == n + 1 + KINO_LOG_MAX_RECORD + 10 + 2);
    CHECK(data && memcmp(data, big, n) == 0);
    size_t xs = 0;
    for (size_t i = n; data && i < len; i++) xs += data[i] == 'x';
    CHECK(xs == KINO_LOG_MAX_RECORD + 10);
    free(data);
    free(big);
    free(one);
    kino_log_close(sink);
}

/* A plain fork: the child's lines arrive through the child's own flusher;
 * lines queued before the fork are written once (by the parent). */
static void test_log_fork(void) {
    char path[256], err[128];
    snprintf(path, sizeof path, "%s/fork.log", log_dir);
    int sink = kino_log_open(path, err, sizeof err);
    for (int i = 0; i < 100; i++) {
        char line[32];
        kino_log_write(sink, line, (size_t)sprintf(line, "parent %d", i));
    }
    /* the child's verdict comes through a pipe, not its exit status, which
     * a leak checker running the child too may set */
    int verdict[2];
    CHECK(pipe(verdict) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 100; i++) {
            char line[32];
            kino_log_write(sink, line, (size_t)sprintf(line, "child %d", i));
        }
        int ok = kino_log_flush(60.0) == 0, pid_ok = kino_log_pid() == (int)getpid();
        char v = ok && pid_ok ? 'y' : ok ? 'p' : 't';
        ssize_t w = write(verdict[1], &v, 1);
        (void)w;
        _exit(0);
    }
    close(verdict[1]);
    char v = 0;
    ssize_t got = read(verdict[0], &v, 1);
    close(verdict[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECKF(got == 1 && v == 'y', "child: '%c' (p: wrong pid, t: flush timed out)", v ? v : '-');
    CHECK(kino_log_flush(5.0) == 0);
    size_t len;
    char *data = log_read(path, &len);
    int parent = 0, child = 0;
    for (char *p = data; p && (p = strstr(p, "parent ")); p++) parent++;
    for (char *p = data; p && (p = strstr(p, "child ")); p++) child++;
    CHECKF(parent == 100, "%d parent lines", parent);
    CHECKF(child == 100, "%d child lines", child);
    free(data);
    kino_log_close(sink);
}

/* logrotate: rename the file, reopen, the next lines go to a new file. */
static void test_log_reopen(void) {
    char path[256], moved[256], err[128];
    snprintf(path, sizeof path, "%s/app.log", log_dir);
    snprintf(moved, sizeof moved, "%s/app.log.1", log_dir);
    int sink = kino_log_open(path, err, sizeof err);
    kino_log_write(sink, "before\n", 7);
    kino_log_flush(5.0);
    CHECK(rename(path, moved) == 0);
    CHECK(kino_log_reopen_all() >= 1);
    kino_log_write(sink, "after\n", 6);
    kino_log_flush(5.0);
    size_t a, b;
    char *old = log_read(moved, &a), *cur = log_read(path, &b);
    CHECK(old && strcmp(old, "before\n") == 0);
    CHECK(cur && strcmp(cur, "after\n") == 0);
    free(old);
    free(cur);
    kino_log_close(sink);
}

static void test_log_notes(void) {
    uint64_t held = 99;
    CHECK(kino_log_note_due(3, &held) == 1 && held == 0);
    CHECK(kino_log_note_due(3, &held) == 0);
    CHECK(kino_log_note_due(3, &held) == 0);
    CHECK(kino_log_note_due(4, &held) == 1); /* kinds are independent */
    struct timespec ts = {1, 100000000};
    nanosleep(&ts, NULL);
    CHECK(kino_log_note_due(3, &held) == 1 && held == 2);
}

static void test_log_format(void) {
    char buf[4096];
    kino_log_request r = {.peer = "127.0.0.1", .method = "GET", .method_n = 3,
                          .target = "/a\"b?q=1", .target_n = 8, .minor = 1, .status = 200,
                          .bytes = 13, .duration_us = 1234};
    size_t n = kino_log_format_request(buf, sizeof buf, KINO_LOG_TEXT, &r);
    buf[n] = 0;
    CHECKF(strncmp(buf, "127.0.0.1 [", 11) == 0, "%s", buf);
    CHECKF(strstr(buf, " GMT] \"GET /a\\x22b?q=1 HTTP/1.1\" 200 13 1.2ms\n") != NULL, "%s", buf);
    r.request_id = "id-\x01";
    r.request_id_n = 4;
    n = kino_log_format_request(buf, sizeof buf, KINO_LOG_JSON, &r);
    buf[n] = 0;
    CHECKF(strstr(buf, "\"remote_addr\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/a\\\"b\",\"query\":\"q=1\","
                       "\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":13,\"duration_ms\":1.234,"
                       "\"request_id\":\"id-\\u0001\"}\n") != NULL, "%s", buf);
    CHECKF(strncmp(buf, "{\"time\":\"20", 11) == 0 && buf[19] == 'T' && buf[32] == 'Z', "%s", buf);
    r.status = 503;
    n = kino_log_format_request(buf, sizeof buf, KINO_LOG_TEXT_COLOR, &r);
    buf[n] = 0;
    CHECKF(strncmp(buf, "\033[91m127.0.0.1", 14) == 0 && strstr(buf, "ms\033[0m\n"), "%s", buf);
    kino_log_request none = {.peer = "::1", .minor = -1, .status = 400, .bytes = 5};
    n = kino_log_format_request(buf, sizeof buf, KINO_LOG_TEXT, &none);
    buf[n] = 0;
    CHECKF(strstr(buf, "] \"- - -\" 400 5 0.0ms\n") != NULL, "%s", buf);
    struct timespec epoch = {951782400 + 86399, 5000000}; /* 2000-02-29 23:59:59.005 */
    civil c = civil_of(&epoch);
    CHECK(c.year == 2000 && c.month == 2 && c.day == 29 && c.hour == 23 && c.sec == 59 && c.ms == 5 &&
          c.wday == 2);
}

static void test_log(void) {
    CHECK(mkdtemp(log_dir) != NULL);
    CHECK(kino_log_start() == 0);
    test_log_format();
    test_log_notes();
    test_log_stress();
    test_log_long();
    test_log_fork();
    test_log_reopen();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", log_dir);
    CHECK(system(cmd) == 0);
    kino_log_stop(); /* every thread joined: nothing for a leak checker */
}
