/*
 * test_retire.c -- kino_server_retire and the rows quarantine reads: a
 * retired worker's idle waiters wake and take nothing more, its busy
 * ones finish what they hold and then take nothing, other workers and
 * later waiters of the same number are untouched, what a retired waiter
 * took in a batch goes back to the queue, and request_ms says how long
 * the current request has held a waiter.
 */

static kino_server *r_server;

static void *r_taker(void *arg) {
    return kino_take(r_server, arg, 1);
}

/* The row of waiter number `worker` that is (or is not) retiring. */
static int r_row(kino_worker_stats *rows, int n, int worker, int retiring) {
    for (int i = 0; i < n; i++)
        if (rows[i].worker == worker && rows[i].retiring == retiring) return i;
    return -1;
}

static void test_retire(void) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    r_server = kino_server_new(&o, err, sizeof err);
    CHECKF(r_server != NULL, "server: %s", err);
    if (!r_server) return;
    kino_conn *conns = calloc(4, sizeof *conns);
    for (int i = 0; i < 4; i++) klist_init(&conns[i].qlink);
    kino_worker_stats rows[8];

    /* the host's pool numbers come back from kino_server_stats */
    kino_stats st;
    kino_server_stats(r_server, &st);
    CHECK(st.pool.active_workers == 0 && st.pool.max_workers == 0 && st.pool.scale_downs == 0);
    kino_server_set_pool(r_server, &(kino_pool_stats){.active_workers = 2, .max_workers = 3, .quarantined = 1,
                                                      .quarantines = 4, .scale_ups = 5, .scale_downs = 6});
    kino_server_stats(r_server, &st);
    CHECK(st.pool.active_workers == 2 && st.pool.max_workers == 3 && st.pool.quarantined == 1 &&
          st.pool.quarantines == 4 && st.pool.scale_ups == 5 && st.pool.scale_downs == 6);

    /* an idle waiter of the retired worker wakes with nothing */
    kino_waiter *idle = kino_waiter_new(r_server, 1), *other = kino_waiter_new(r_server, 2);
    pthread_t t;
    void *got = (void *)1;
    pthread_create(&t, NULL, r_taker, idle);
    struct timespec ms50 = {0, 50000000};
    nanosleep(&ms50, NULL);
    CHECK(kino_server_retire(r_server, 1, 0) == 1);
    pthread_join(t, &got);
    CHECK(got == NULL);
    CHECK(kino_waiter_retiring(idle) && !kino_waiter_retiring(other));
    CHECK(kino_wait_ready(r_server, idle) == 0); /* returns at once */
    CHECK(kino_server_retire(r_server, 1, 0) == 0); /* already retiring */

    /* a busy waiter keeps its request; rows say how long it has held it */
    kino_waiter *busy = kino_waiter_new(r_server, 3);
    CHECK(ready_push(r_server, &conns[0], 0) == 0);
    CHECK(kino_take(r_server, busy, 0) == &conns[0]);
    nanosleep(&ms50, NULL);
    int n = kino_server_workers(r_server, rows, 8), i = r_row(rows, n, 3, 0);
    CHECKF(i >= 0 && rows[i].in_flight == 1 && rows[i].request_ms >= 20,
           "request_ms %llu", i >= 0 ? (unsigned long long)rows[i].request_ms : 0ULL);
    i = r_row(rows, n, 2, 0);
    CHECK(i >= 0 && rows[i].request_ms == 0 && !rows[i].quarantined); /* idle: 0 */
    CHECK(kino_server_retire(r_server, 3, 1) == 1);
    n = kino_server_workers(r_server, rows, 8);
    i = r_row(rows, n, 3, 1);
    CHECK(i >= 0 && rows[i].quarantined && rows[i].in_flight == 1);

    /* ... then takes nothing, though requests wait; others take them */
    CHECK(ready_push(r_server, &conns[1], 0) == 0);
    CHECK(kino_take(r_server, busy, 1) == NULL);
    CHECK(kino_take(r_server, other, 0) == &conns[1]);

    /* a waiter made later with the retired number serves */
    kino_waiter *fresh = kino_waiter_new(r_server, 3);
    CHECK(!kino_waiter_retiring(fresh));
    CHECK(ready_push(r_server, &conns[2], 0) == 0);
    CHECK(kino_take(r_server, fresh, 0) == &conns[2]);
    n = kino_server_workers(r_server, rows, 8);
    CHECK(r_row(rows, n, 3, 0) >= 0 && r_row(rows, n, 3, 1) >= 0);

    kino_waiter_free(idle);
    kino_waiter_free(other);
    kino_waiter_free(busy);
    kino_waiter_free(fresh);
    kino_server_stop(r_server);
    kino_server_free(r_server);

    /* batch: what a retired waiter took with its request goes back */
    o.batch = 2;
    r_server = kino_server_new(&o, err, sizeof err);
    CHECKF(r_server != NULL, "server: %s", err);
    if (!r_server) return;
    kino_waiter *batcher = kino_waiter_new(r_server, 5), *helper = kino_waiter_new(r_server, 6);
    for (int k = 0; k < 2; k++) klist_init(&conns[k].qlink);
    CHECK(ready_push(r_server, &conns[0], 0) == 0 && ready_push(r_server, &conns[1], 0) == 0);
    CHECK(kino_take(r_server, batcher, 0) == &conns[0]); /* conns[1] taken with it */
    CHECK(r_server->nready == 0 && atomic_load(&r_server->batched) == 1);
    CHECK(kino_server_retire(r_server, 5, 1) == 1); /* gives conns[1] back, at once */
    CHECK(r_server->nready == 1 && atomic_load(&r_server->batched) == 0);
    CHECK(kino_take(r_server, batcher, 0) == NULL);
    CHECK(kino_take(r_server, helper, 0) == &conns[1]);
    kino_waiter_free(batcher);
    kino_waiter_free(helper);
    kino_server_stop(r_server);
    kino_server_free(r_server);
    free(conns);
}
