/*
 * test_queue.c -- the intrusive list and the bounded ready queue between
 * I/O threads and workers: FIFO order, the bound, every item taken
 * exactly once under many producers and consumers, interrupts that wake
 * exactly the waiter they name, and stop waking everyone.
 */

static void test_klist(void) {
    klist head, a, b, c;
    klist_init(&head);
    klist_init(&a);
    klist_init(&b);
    klist_init(&c);
    CHECK(klist_empty(&head));
    klist_push(&head, &a);
    klist_push(&head, &b);
    klist_push(&head, &c);
    CHECK(head.next == &a && a.next == &b && b.next == &c && c.next == &head);
    klist_remove(&b);
    CHECK(a.next == &c && c.prev == &a && b.next == &b);
    klist_remove(&b); /* a detached node may be removed again */
    CHECK(a.next == &c);
    klist_remove(&a);
    klist_remove(&c);
    CHECK(klist_empty(&head));
}

#define Q_PRODUCERS 4
#define Q_CONSUMERS 4
#define Q_ITEMS 20000

static kino_server *q_server;
static kino_conn *q_conns;
static _Atomic int q_taken_total;
static _Atomic unsigned char q_seen[Q_PRODUCERS * Q_ITEMS];

static void *q_producer(void *arg) {
    int base = (int)(intptr_t)arg * Q_ITEMS;
    for (int i = 0; i < Q_ITEMS; i++) {
        kino_conn *c = &q_conns[base + i];
        while (ready_push(q_server, c) < 0) sched_yield(); /* full: retry */
    }
    return NULL;
}

static void *q_consumer(void *arg) {
    kino_waiter *w = kino_waiter_new(q_server, 0);
    kino_conn *c;
    (void)arg;
    while ((c = kino_take(q_server, w, 1)) != NULL) {
        atomic_fetch_add(&q_seen[c - q_conns], 1);
        if (atomic_fetch_add(&q_taken_total, 1) + 1 == Q_PRODUCERS * Q_ITEMS) kino_server_stop(q_server);
    }
    kino_waiter_free(w);
    return NULL;
}

static void *q_sleeper(void *arg) {
    kino_waiter *w = arg;
    return kino_take(q_server, w, 1);
}

static void test_ready_queue(void) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    o.queue_depth = 8;
    q_server = kino_server_new(&o, err, sizeof err);
    CHECKF(q_server != NULL, "server: %s", err);
    if (!q_server) return;
    q_conns = calloc(Q_PRODUCERS * Q_ITEMS, sizeof *q_conns);
    for (int i = 0; i < Q_PRODUCERS * Q_ITEMS; i++) klist_init(&q_conns[i].qlink);

    /* FIFO and bounded */
    kino_waiter *w = kino_waiter_new(q_server, 0);
    for (int i = 0; i < 8; i++) CHECK(ready_push(q_server, &q_conns[i]) == 0);
    CHECK(ready_push(q_server, &q_conns[8]) < 0);
    int fifo = 1;
    for (int i = 0; i < 8; i++) fifo &= kino_take(q_server, w, 0) == &q_conns[i];
    CHECK(fifo);
    CHECK(kino_take(q_server, w, 0) == NULL);

    /* an interrupt wakes exactly the waiter it names */
    kino_waiter *w1 = kino_waiter_new(q_server, 0), *w2 = kino_waiter_new(q_server, 0);
    pthread_t t1, t2;
    void *r1 = (void *)1, *r2 = (void *)1;
    pthread_create(&t1, NULL, q_sleeper, w1);
    pthread_create(&t2, NULL, q_sleeper, w2);
    struct timespec ms50 = {0, 50000000};
    nanosleep(&ms50, NULL);
    kino_waiter_interrupt(w1);
    pthread_join(t1, &r1);
    CHECK(r1 == NULL);
    CHECK(ready_push(q_server, &q_conns[9]) == 0); /* w2 is still waiting */
    pthread_join(t2, &r2);
    CHECK(r2 == &q_conns[9]);
    /* an interrupt sent before the wait makes the wait return at once */
    CHECK(kino_take(q_server, w1, 1) == NULL);
    kino_waiter_reset(w1);
    CHECK(!kino_waiter_interrupted(w1));
    kino_waiter_free(w1);
    kino_waiter_free(w2);
    kino_waiter_free(w);

    /* stress: every item taken exactly once */
    pthread_t prod[Q_PRODUCERS], cons[Q_CONSUMERS];
    for (int i = 0; i < Q_CONSUMERS; i++) pthread_create(&cons[i], NULL, q_consumer, NULL);
    for (int i = 0; i < Q_PRODUCERS; i++) pthread_create(&prod[i], NULL, q_producer, (void *)(intptr_t)i);
    for (int i = 0; i < Q_PRODUCERS; i++) pthread_join(prod[i], NULL);
    for (int i = 0; i < Q_CONSUMERS; i++) pthread_join(cons[i], NULL);
    int once = 1;
    for (int i = 0; i < Q_PRODUCERS * Q_ITEMS; i++) once &= atomic_load(&q_seen[i]) == 1;
    CHECKF(once && atomic_load(&q_taken_total) == Q_PRODUCERS * Q_ITEMS,
           "queue stress: %d taken", atomic_load(&q_taken_total));
    CHECK(kino_server_stopped(q_server));
    kino_server_free(q_server);
    free(q_conns);
}

static void test_queue(void) {
    test_klist();
    test_ready_queue();
}
