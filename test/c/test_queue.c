/*
 * test_queue.c -- the intrusive list and the bounded ready queue between
 * I/O threads and workers: FIFO order, the bound, every item taken
 * exactly once under many producers and consumers (with and without
 * lanes and batches), interrupts that wake exactly the waiter they name,
 * and stop waking everyone; lanes (filled while their waiter keeps
 * taking, stolen from, given back when it stalls) and batches (taken in
 * one visit, given back when their waiter goes).
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
        while (ready_push(q_server, c, mono_ms()) < 0) sched_yield(); /* full: retry */
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

/* kino_take on the waiter's own server, blocking. */
static void *q_own_sleeper(void *arg) {
    kino_waiter *w = arg;
    return kino_take(w->s, w, 1);
}

static void test_ready_queue(int lanes, int batch) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    o.queue_depth = 8;
    o.lanes = lanes;
    o.batch = batch;
    memset(q_seen, 0, sizeof q_seen);
    atomic_store(&q_taken_total, 0);
    q_server = kino_server_new(&o, err, sizeof err);
    CHECKF(q_server != NULL, "server: %s", err);
    if (!q_server) return;
    q_conns = calloc(Q_PRODUCERS * Q_ITEMS, sizeof *q_conns);
    for (int i = 0; i < Q_PRODUCERS * Q_ITEMS; i++) klist_init(&q_conns[i].qlink);

    /* FIFO and bounded (nobody took anything yet: no lane is used) */
    kino_waiter *w = kino_waiter_new(q_server, 0);
    for (int i = 0; i < 8; i++) CHECK(ready_push(q_server, &q_conns[i], mono_ms()) == 0);
    CHECK(ready_push(q_server, &q_conns[8], mono_ms()) < 0);
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
    /* (w took a moment ago; with lanes, long after that: no lane then) */
    CHECK(ready_push(q_server, &q_conns[9], mono_ms() + 1000) == 0); /* w2 is still waiting */
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
           "queue stress (lanes %d, batch %d): %d taken", lanes, batch, atomic_load(&q_taken_total));
    CHECK(kino_server_stopped(q_server));
    kino_server_free(q_server);
    free(q_conns);
}

/* The lane of w, as kino_server_workers reports it. */
static int q_lane(kino_server *s, kino_waiter *w) {
    kino_worker_stats rows[8];
    int n = kino_server_workers(s, rows, 8);
    pthread_mutex_lock(&s->mu);
    int i = 0;
    for (klist *k = s->waiters.next; k != &s->waiters && KLIST_ENTRY(k, kino_waiter, all) != w; k = k->next) i++;
    pthread_mutex_unlock(&s->mu);
    return i < n ? rows[i].lane : -1;
}

static void test_lanes(void) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    o.queue_depth = 8;
    o.lanes = 1;
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server: %s", err);
    if (!s) return;
    kino_conn c[20];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 20; i++) klist_init(&c[i].qlink);
    kino_waiter *w1 = kino_waiter_new(s, 0), *w2 = kino_waiter_new(s, 1);
    int64_t now = mono_ms();

    /* nobody has taken anything: the shared queue; once w1 takes, its lane */
    CHECK(ready_push(s, &c[0], now) == 0 && s->nready == 1);
    CHECK(kino_take(s, w1, 0) == &c[0]);
    CHECK(ready_push(s, &c[1], now) == 0);
    CHECK(s->nready == 0 && q_lane(s, w1) == 1);
    /* an idle waiter steals it */
    CHECK(kino_take(s, w2, 0) == &c[1]);
    CHECK(q_lane(s, w1) == 0 && s->laned == 0);

    /* lanes fill in turn, up to their depth, then the shared queue */
    for (int i = 2; i < 2 + 2 * KINO_LANE_DEPTH; i++) CHECK(ready_push(s, &c[i], now) == 0);
    CHECK(q_lane(s, w1) == KINO_LANE_DEPTH && q_lane(s, w2) == KINO_LANE_DEPTH && s->nready == 0);
    CHECK(ready_push(s, &c[10], now) == 0 && s->nready == 1);
    /* its own lane first, in order (c[2], c[4], ... went to one lane) */
    kino_conn *a = kino_take(s, w1, 0), *b = kino_take(s, w1, 0);
    CHECK(a && b && b - a == 2);
    CHECK(q_lane(s, w1) == KINO_LANE_DEPTH - 2);

    /* stalled lanes go back to the front of the shared queue, each in
     * order, before what was queued there; not before they stall */
    kino_io io;
    memset(&io, 0, sizeof io);
    io.s = s;
    io.now = now;
    io_lanes(&io);
    CHECK(s->laned == 2 * KINO_LANE_DEPTH - 2 && s->nready == 1);
    io.now = mono_ms() + KINO_LANE_STALL_MS + 1;
    io_lanes(&io);
    CHECK(q_lane(s, w1) == 0 && q_lane(s, w2) == 0 && s->laned == 0 && s->nready == 7);
    int taken = 0;
    kino_conn *t, *last = NULL;
    while ((t = kino_take(s, w2, 0)) != NULL) {
        taken++;
        last = t;
    }
    CHECK(taken == 7 && last == &c[10]);

    /* stopped: nothing is taken, whatever is laned */
    CHECK(kino_take(s, w1, 0) == NULL);
    kino_waiter_free(w1);
    kino_waiter_free(w2);
    kino_server_free(s);
}

static void test_batch(void) {
    char err[256];
    kino_options o;
    kino_options_init(&o);
    o.queue_depth = 8;
    o.batch = 4;
    kino_server *s = kino_server_new(&o, err, sizeof err);
    CHECKF(s != NULL, "server: %s", err);
    if (!s) return;
    kino_conn c[8];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 8; i++) klist_init(&c[i].qlink);
    for (int i = 0; i < 6; i++) CHECK(ready_push(s, &c[i], 0) == 0);
    atomic_store(&s->queued, 6);
    kino_waiter *w = kino_waiter_new(s, 0);
    /* one visit takes four: they are in flight, two stay queued */
    CHECK(kino_take(s, w, 0) == &c[0]);
    CHECK(s->nready == 2 && atomic_load(&s->in_flight) == 4 && atomic_load(&s->queued) == 2);
    CHECK(kino_take(s, w, 0) == &c[1]);
    /* a waiter that goes gives back what it had not started, first in line */
    kino_waiter_free(w);
    CHECK(s->nready == 4 && atomic_load(&s->in_flight) == 2 && atomic_load(&s->queued) == 4);
    w = kino_waiter_new(s, 0);
    int order = 1;
    for (int i = 2; i < 6; i++) order &= kino_take(s, w, 0) == &c[i];
    CHECK(order);
    CHECK(kino_take(s, w, 0) == NULL);
    kino_waiter_free(w);
    /* a waiter with nothing to do takes from another's batch what that
     * one has not begun (it may be stuck), oldest first; none is begun
     * twice, and sleepers are woken for a batch */
    kino_waiter *a = kino_waiter_new(s, 0), *b = kino_waiter_new(s, 1);
    uint64_t flying = atomic_load(&s->in_flight);
    for (int i = 0; i < 4; i++) CHECK(ready_push(s, &c[i], 0) == 0);
    CHECK(kino_take(s, a, 0) == &c[0]); /* a's batch: c[0] begun, c[1..3] not */
    CHECK(atomic_load(&s->batched) == 3 && atomic_load(&s->in_flight) == flying + 4 && s->nready == 0);
    CHECK(kino_wait_ready(s, b) == 1);
    CHECK(kino_take(s, b, 0) == &c[1]);
    CHECK(kino_take(s, a, 0) == &c[2]);
    CHECK(kino_take(s, b, 0) == &c[3]);
    CHECK(kino_take(s, a, 0) == NULL && kino_take(s, b, 0) == NULL);
    CHECK(atomic_load(&s->batched) == 0 && atomic_load(&s->in_flight) == flying + 4);
    pthread_t t;
    void *got = NULL;
    pthread_create(&t, NULL, q_own_sleeper, b); /* b sleeps in kino_take */
    for (int asleep = 0; !asleep; sched_yield()) {
        pthread_mutex_lock(&s->mu);
        asleep = b->sleeping;
        pthread_mutex_unlock(&s->mu);
    }
    /* three queued without waking anyone (as lanes place them), taken by
     * a under the same lock: taking them must wake b */
    pthread_mutex_lock(&s->mu);
    for (int i = 4; i < 7; i++) {
        klist_push(&s->ready, &c[i].qlink);
        s->nready++;
    }
    int freed = 0, taken = 0;
    kino_conn *first = take_some(s, a, &freed, &taken);
    pthread_mutex_unlock(&s->mu);
    CHECK(first == &c[4] && taken == 3);
    pthread_join(t, &got);
    CHECK(got == &c[5]); /* b, woken, stole the oldest not begun */
    CHECK(kino_take(s, a, 0) == &c[6]);
    kino_waiter_free(a);
    kino_waiter_free(b);
    /* the bound */
    o.batch = KINO_BATCH_MAX + 1;
    CHECK(kino_server_new(&o, err, sizeof err) == NULL && strstr(err, "batch"));
    kino_server_free(s);
}

static void test_queue(void) {
    test_klist();
    for (int lanes = 0; lanes < 2; lanes++)
        for (int batch = 1; batch <= 4; batch += 3) test_ready_queue(lanes, batch);
    test_lanes();
    test_batch();
}
