/*
 * run.c -- the C test runner. A unity build: it includes the engine's files
 * (kino.c, kino_http.c, kino_worker.c...) so tests can reach their
 * static helpers (the ready queue, lists).
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* as kino_engine.h sets it, before any system header */
#endif
#include <errno.h>
#include <pthread.h>

/* pthread_create, or (while fail_thread_create is set) a failure with
 * EAGAIN that leaves errno set to something else, as a real failure may. */
static int fail_thread_create;
static int test_thread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg) {
    if (fail_thread_create) {
        errno = ENOENT;
        return EAGAIN;
    }
    return pthread_create(t, a, f, arg);
}
#define KINO_THREAD_CREATE test_thread_create
#define KINO_CONTROL_WAIT_MS 200 /* test_control waits out one */

#include "../../kino.c"
#include "../../kino_http.c"
#include "../../kino_worker.c"
#include "../../kino_stream.c"
#include "../../kino_tls.c"
#include "../../kino_control.c"
#include "../../kino_log.c"
#include "../../kino_hpack.c"
#include "../../kino_h2.c"
#include "check.h"

#include "test_parser.c"
#include "test_chunked.c"
#include "test_queue.c"
#include "test_retire.c"
#include "test_server.c"
#include "test_proxy.c"
#include "test_tls.c"
#include "test_hijack.c"
#include "test_log.c"
#include "test_control.c"
#include "test_hpack.c"
#include "test_h2.c"

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_parser();
    test_chunked();
    test_queue();
    test_retire();
    test_server();
    test_proxy();
    test_listeners();
    test_tls();
    test_hijack();

    test_release_after_stop();
    test_thread_start_failure();
    test_poller_failure();
    test_options_copied();
    test_worker_rows();
    test_victim_in_the_same_batch();
    test_log();
    test_control();
    test_hpack();
    test_h2();
    /* Servers started after test_log started the log flusher again: end it,
     * so no thread is left running for valgrind to count its stack as
     * possibly lost. */
    kino_log_stop();
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}
