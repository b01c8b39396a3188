/*
 * run.c -- the C test runner. A unity build: it includes kino.c itself so
 * tests can reach the engine's static helpers (the ready queue, lists).
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "../../kino.c"
#include "../../kino_tls.c"
#include "../../kino_control.c"
#include "check.h"

#include "test_parser.c"
#include "test_chunked.c"
#include "test_queue.c"
#include "test_server.c"
#include "test_proxy.c"
#include "test_tls.c"
#include "test_hijack.c"

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_parser();
    test_chunked();
    test_queue();
    test_server();
    test_proxy();
    test_listeners();
    test_tls();
    test_hijack();

    test_release_after_stop();
    printf("%d passed, %d failed\n", checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}
