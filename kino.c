/*
 * kino.c -- the Kino engine's I/O side and server. kino.h describes the
 * API and the threading model; kino_engine.h holds the structures and
 * the helpers the engine files share (platform, lists, transport). This
 * file has no Ruby in it and reads top to bottom:
 *
 *    1. buffers       per-connection input buffers and their pool
 *    2. date          the cached Date header
 *    3. ready queue   bounded hand-off from I/O threads to workers: the
 *                     shared FIFO, lanes, batches (doc/dispatch.md)
 *    4. timers        per-I/O-thread deadline lists
 *    5. connections   the I/O thread's side of a connection
 *    6. I/O thread    the event loop
 *    7. server        create, start, drain, abort, stop, stats
 *    8. access log    one line per request, and notes on canned answers
 *
 * The parser is kino_http.c, the worker side (request body, response
 * writer, hand-back) kino_worker.c, logging itself (the ring, the
 * flusher) kino_log.c.
 */
#include "kino_engine.h"
#include "kino_h2.h"

static void listeners_close(kino_server *s);
/* section 8 */
static int64_t now_us(void);
static void log_canned(kino_server *s, int io_index, kino_conn *c, int status, size_t bytes);

/* ================================================================== */
/* 1. Buffers                                                         */
/* ================================================================== */

static kino_buf *buf_alloc(size_t cap) {
    kino_buf *b = malloc(sizeof *b + cap);
    if (b) {
        b->next = NULL;
        b->cap = cap;
    }
    return b;
}

/* An input buffer from the I/O thread's pool (or the heap). */
static kino_buf *buf_get(kino_io *io) {
    kino_buf *b = io->pool;
    if (b) {
        io->pool = b->next;
        io->npool--;
        return b;
    }
    return buf_alloc(KINO_BUF_SIZE);
}

/* Give a buffer back to the pool; oversized or surplus ones are freed. */
static void buf_put(kino_io *io, kino_buf *b) {
    if (!b) return;
    if (io && b->cap == KINO_BUF_SIZE && io->npool < KINO_POOL_BUFS) {
        b->next = io->pool;
        io->pool = b;
        io->npool++;
    } else {
        free(b);
    }
}

/* How large the input buffer may grow, counted from c->off: what the
 * largest allowed head needs, or, while the I/O thread gathers a request
 * body (C_BODY), the head plus the whole Content-Length body, or plus
 * o.body_buffer raw bytes of a chunked one. */
static size_t conn_want(const kino_conn *c) {
    size_t head = KINO_MAX_HEAD + 1024;
    if (c->state != C_BODY) return head;
    size_t body = c->body == B_LENGTH ? (size_t)c->body_left : (size_t)c->io->s->o.body_buffer;
    size_t want = c->bpos - c->off + body;
    return want > head ? want : head;
}

/* Make room for more input: slide unconsumed bytes to the front, then
 * grow by doubling, up to conn_want(). Returns free bytes. Growing moves
 * the buffer: the head's spans are stale until it is parsed again. */
static size_t conn_room(kino_conn *c) {
    kino_buf *b = c->buf;
    if (c->len < b->cap) return b->cap - c->len;
    if (c->off > 0) {
        memmove(b->data, b->data + c->off, c->len - c->off);
        c->len -= c->off;
        if (c->bpos >= c->off) c->bpos -= c->off;
        c->off = 0;
        return b->cap - c->len;
    }
    size_t want = conn_want(c);
    if (b->cap < want) {
        /* a Content-Length body's size is known: one step to it */
        size_t cap = b->cap * 2 > want || (c->state == C_BODY && c->body == B_LENGTH) ? want : b->cap * 2;
        kino_buf *nb = realloc(b, sizeof *b + cap);
        if (nb) {
            nb->cap = cap;
            c->buf = nb;
            return cap - c->len;
        }
    }
    return 0;
}

/* ================================================================== */
/* 2. Date                                                            */
/* ================================================================== */

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" is formatted once a second
 * by whichever I/O thread notices the second change (the compare-and-swap
 * on date_sec elects one), into the next of four slots, then published
 * through kino_date_cur; readers copy the published slot (date_copy).
 *
 * Race-free without a lock: every byte of a slot is written and read
 * through relaxed atomic words, ordered by kino_date_cur's release/acquire.
 * A reader could copy a mix of two lines only if it stalled for three
 * whole seconds between loading kino_date_cur and copying 40 bytes, while the
 * writer went round all four slots; even then it copies a well-formed
 * line of printable bytes. So nothing is hidden from ThreadSanitizer. */
_Atomic uint64_t kino_date_slots[4][DATE_WORDS];
_Atomic unsigned kino_date_cur;
static _Atomic int64_t date_sec = -1;

static void date_refresh(void) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t old = atomic_load(&date_sec);
    if (ts.tv_sec == old || !atomic_compare_exchange_strong(&date_sec, &old, (int64_t)ts.tv_sec))
        return;
    time_t t = ts.tv_sec;
    gmtime_r(&t, &tm);
    unsigned next = (atomic_load(&kino_date_cur) + 1) & 3;
    char line[DATE_WORDS * 8] = "";
    snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    for (int i = 0; i < DATE_WORDS; i++) {
        uint64_t word;
        memcpy(&word, line + 8 * i, 8);
        atomic_store_explicit(&kino_date_slots[next][i], word, memory_order_relaxed);
    }
    atomic_store_explicit(&kino_date_cur, next, memory_order_release);
}

/* ================================================================== */
/* 3. Ready queue                                                     */
/* ================================================================== */

/* Wake the sleeper that slept last (its cache is warmest), if any.
 * With s->mu held; the wake happens under it so the waiter cannot vanish
 * in between. */
static void wake_one(kino_server *s) {
    if (klist_empty(&s->sleepers)) return;
    kino_waiter *w = KLIST_ENTRY(s->sleepers.prev, kino_waiter, link);
    klist_remove(&w->link);
    w->sleeping = 0;
    pthread_cond_signal(&w->cond);
}

/* Lanes: put c in the lane of an awake waiter that keeps taking requests
 * (it took one within KINO_LANE_STALL_MS) and has room, the first such
 * after the last one filled; nobody is woken, as that waiter comes back
 * for it. Only while the shared queue is empty, so that it stays first
 * come, first served. Returns 0 when no lane will do. With s->mu held. */
static int lane_push(kino_server *s, kino_conn *c, int64_t now) {
    if (s->nready) return 0;
    for (klist *k = s->lanes.next; k != &s->lanes; k = k->next) {
        kino_waiter *w = KLIST_ENTRY(k, kino_waiter, lane_link);
        if (w->sleeping || w->nlane >= KINO_LANE_DEPTH || now - w->took > KINO_LANE_STALL_MS ||
            atomic_load_explicit(&w->retiring, memory_order_relaxed))
            continue;
        klist_push(&w->lane, &c->qlink);
        w->nlane++;
        atomic_store_explicit(&s->laned, s->laned + 1, memory_order_relaxed);
        /* rotate the ring: the next search starts after w */
        klist_remove(&s->lanes);
        klist_push(w->lane_link.next, &s->lanes);
        return 1;
    }
    return 0;
}

/* Move the requests in w's lane to the front of the shared queue, in
 * order (they came before anything queued there), and wake as many
 * sleepers. They were admitted already: queue_depth does not apply. With
 * s->mu held. */
static void lane_return(kino_server *s, kino_waiter *w) {
    klist *front = s->ready.next;
    while (!klist_empty(&w->lane)) {
        klist *n = w->lane.next;
        klist_remove(n);
        klist_push(front, n); /* before the old front: keeps their order */
        s->nready++;
        w->nlane--;
        atomic_store_explicit(&s->laned, s->laned - 1, memory_order_relaxed);
        wake_one(s);
    }
}

/* Queue a complete request for the workers: in an awake waiter's lane
 * (lanes), else in the shared queue, waking one sleeping worker. now is
 * the I/O thread's clock. Returns 0, or -1 when the queue is full or
 * stopped. */
static int ready_push(kino_server *s, kino_conn *c, int64_t now) {
    int r = 0;
    pthread_mutex_lock(&s->mu);
    if (s->stopped) r = -1;
    else if (s->o.lanes && lane_push(s, c, now)) r = 0;
    else if (s->nready >= s->o.queue_depth) r = -1;
    else {
        klist_push(&s->ready, &c->qlink);
        s->nready++;
        wake_one(s);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* Lanes: look for lanes whose waiter stopped taking requests (a long
 * request, a stuck handler) and give their requests back to the shared
 * queue, where an idle worker takes them; at most every
 * KINO_LANE_STALL_MS, and only while some lane holds a request. So a
 * request waits in a lane at most about twice that longer than in the
 * shared queue. I/O thread. */
static void io_lanes(kino_io *io) {
    kino_server *s = io->s;
    if (!atomic_load_explicit(&s->laned, memory_order_relaxed) || io->now < io->lane_check) return;
    io->lane_check = io->now + KINO_LANE_STALL_MS;
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->lanes.next; k != &s->lanes; k = k->next) {
        kino_waiter *w = KLIST_ENTRY(k, kino_waiter, lane_link);
        if (w->nlane && io->now - w->took > KINO_LANE_STALL_MS) lane_return(s, w);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Upper bounds (ms) of the queue-wait histogram buckets; the last
 * bucket takes everything above the previous bound. */
static const int64_t wait_bounds[KINO_WAIT_BUCKETS - 1] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};

/* A worker starts on request c: per-worker and queue-wait statistics. */
static void waiter_begin(kino_waiter *w, kino_conn *c) {
    int64_t now = mono_ms(), waited = now - c->queued_at;
    int b = 0;
    while (b < KINO_WAIT_BUCKETS - 1 && waited > wait_bounds[b]) b++;
    atomic_fetch_add_explicit(&w->s->queue_wait[b], 1, memory_order_relaxed);
    if (waited > 0) /* rare under normal load: most requests wait under 1 ms */
        atomic_fetch_add_explicit(&w->s->queue_wait_sum_ms, (uint64_t)waited, memory_order_relaxed);
    atomic_store_explicit(&w->taken_at, now, memory_order_relaxed);
    atomic_store_explicit(&w->in_flight, 1, memory_order_release); /* after taken_at */
}

/* Is there a request w could take? Its own lane, the shared queue, or
 * another's lane or batch to steal from. With s->mu held. */
static int work_for(kino_server *s, kino_waiter *w) {
    return !s->stopped && (s->nready || w->nlane || atomic_load_explicit(&s->laned, memory_order_relaxed) ||
                           atomic_load_explicit(&s->batched, memory_order_relaxed));
}

/* Take one request from the lane of another waiter, the fullest one:
 * that waiter is busy, or it would have taken it. With s->mu held. */
static kino_conn *lane_steal(kino_server *s, kino_waiter *w) {
    kino_waiter *from = NULL;
    for (klist *k = s->lanes.next; k != &s->lanes; k = k->next) {
        kino_waiter *o = KLIST_ENTRY(k, kino_waiter, lane_link);
        if (o != w && o->nlane && (!from || o->nlane > from->nlane)) from = o;
    }
    if (!from) return NULL;
    from->nlane--;
    atomic_store_explicit(&s->laned, s->laned - 1, memory_order_relaxed);
    kino_conn *c = KLIST_ENTRY(from->lane.next, kino_conn, qlink);
    klist_remove(&c->qlink);
    return c;
}

/* The next request of w's batch, or NULL when none is left: one
 * compare-and-swap on batch_next decides between w and a waiter stealing
 * it (batch_steal) or a give-back (batch_return), so each request is
 * begun exactly once. batch[] and batch_end change only while the batch
 * is empty, under s->mu, so what the winner reads is settled. Any thread
 * that may claim: w's own without the mutex, others with it. */
static kino_conn *batch_claim(kino_server *s, kino_waiter *w) {
    int i = atomic_load_explicit(&w->batch_next, memory_order_acquire);
    while (i < w->batch_end)
        if (atomic_compare_exchange_weak_explicit(&w->batch_next, &i, i + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            atomic_fetch_sub_explicit(&s->batched, 1, memory_order_relaxed);
            return w->batch[i];
        }
    return NULL;
}

/* Take one request from the batch of another waiter: it took more than
 * it has begun, and this waiter has nothing to do. It stays counted in
 * flight (it was taken). With s->mu held. */
static kino_conn *batch_steal(kino_server *s, kino_waiter *w) {
    if (!atomic_load_explicit(&s->batched, memory_order_relaxed)) return NULL;
    for (klist *k = s->waiters.next; k != &s->waiters; k = k->next) {
        kino_waiter *o = KLIST_ENTRY(k, kino_waiter, all);
        kino_conn *c = o != w ? batch_claim(s, o) : NULL;
        if (c) return c;
    }
    return NULL;
}

/* Take up to o.batch requests: its own lane first, then the shared
 * queue; failing both, one stolen from another lane or another batch.
 * The first is returned, the rest become w's batch, and for each of
 * those a sleeper (if any) is woken: it steals from the batch rather
 * than sleep while w is busy (lane pushes wake nobody). *taken is how
 * many left the queue or a lane (what kino_take moves from queued to
 * in flight); *freed is set when the shared queue had been full. With
 * s->mu held; w's batch is empty. */
static kino_conn *take_some(kino_server *s, kino_waiter *w, int *freed, int *taken) {
    int n = 0;
    while (n < s->o.batch && w->nlane) {
        klist *q = w->lane.next;
        klist_remove(q);
        w->batch[n++] = KLIST_ENTRY(q, kino_conn, qlink);
        w->nlane--;
        atomic_store_explicit(&s->laned, s->laned - 1, memory_order_relaxed);
    }
    while (n < s->o.batch && s->nready) {
        klist *q = s->ready.next;
        klist_remove(q);
        w->batch[n++] = KLIST_ENTRY(q, kino_conn, qlink);
        if (s->nready-- == s->o.queue_depth) *freed = 1;
    }
    *taken = n;
    if (n > 1) {
        w->batch_end = n;
        atomic_store_explicit(&w->batch_next, 1, memory_order_release);
        atomic_fetch_add_explicit(&s->batched, n - 1, memory_order_relaxed);
        for (int i = 1; i < n; i++) wake_one(s);
    }
    if (n) return w->batch[0];
    kino_conn *c = s->o.lanes ? lane_steal(s, w) : NULL;
    if (c) *taken = 1; /* was queued: counted as taken, like the rest */
    else c = batch_steal(s, w); /* counted already, by its batch's owner */
    return c;
}

/* Give back what w took in a batch and has not begun (a retiring or
 * departing waiter): to the front of the shared queue, in order, waking
 * as many sleepers (as lane_return does). Claimed like the rest, so a
 * thief and the give-back never both get one. With s->mu held. */
static void batch_return(kino_server *s, kino_waiter *w) {
    kino_conn *c, *back[KINO_BATCH_MAX];
    int n = 0;
    while ((c = batch_claim(s, w)) != NULL) back[n++] = c;
    klist *front = s->ready.next;
    for (int i = 0; i < n; i++) {
        klist_push(front, &back[i]->qlink); /* before the old front: keeps their order */
        s->nready++;
        wake_one(s);
    }
    atomic_fetch_sub_explicit(&s->in_flight, (uint64_t)n, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->queued, (uint64_t)n, memory_order_relaxed);
}

/* Whether w's batch has requests it has not begun. */
static int batch_left(kino_waiter *w) {
    return atomic_load_explicit(&w->batch_next, memory_order_acquire) < w->batch_end;
}

/* Sleep on w's condition variable, listed among the sleepers so that
 * ready_push wakes it (the sleeper that came last is woken first). Called
 * and returns with s->mu held. On return w is off the list, whoever woke
 * it: ready_push takes it off, an interrupt or a spurious wake-up does not. */
static void sleep_until_woken(kino_server *s, kino_waiter *w) {
    klist_push(&s->sleepers, &w->link);
    w->sleeping = 1;
    pthread_cond_wait(&w->cond, &s->mu);
    if (w->sleeping) {
        klist_remove(&w->link);
        w->sleeping = 0;
    }
}

kino_conn *kino_take(kino_server *s, kino_waiter *w, int block) {
    int freed_space = 0, n = 0;
    if (atomic_load_explicit(&w->retiring, memory_order_relaxed)) {
        if (batch_left(w)) {
            pthread_mutex_lock(&s->mu);
            batch_return(s, w);
            pthread_mutex_unlock(&s->mu);
        }
        return NULL;
    }
    kino_conn *c = batch_left(w) ? batch_claim(s, w) : NULL; /* taken already, in a batch */
    if (!c) {
        int64_t now = s->o.lanes ? mono_ms() : 0;
        pthread_mutex_lock(&s->mu);
        for (;;) {
            if (atomic_load_explicit(&w->retiring, memory_order_relaxed)) break;
            if (!s->stopped && (c = take_some(s, w, &freed_space, &n)) != NULL) break;
            if (s->stopped || !block || atomic_load(&w->interrupted)) break;
            sleep_until_woken(s, w);
            if (s->o.lanes) now = mono_ms();
        }
        if (c) w->took = now;
        pthread_mutex_unlock(&s->mu);
        if (!c) return NULL;
        atomic_fetch_sub_explicit(&s->queued, (uint64_t)n, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->in_flight, (uint64_t)n, memory_order_relaxed);
        if (freed_space) /* I/O threads may hold requests waiting for room */
            for (int i = 0; i < s->nio; i++)
                if (atomic_load(&s->io[i].parked)) wake_io(&s->io[i]);
    }
    waiter_begin(w, c);
    if (s->o.log_sink) kino_access_capture(w, c);
    return c;
}

int kino_wait_ready(kino_server *s, kino_waiter *w) {
    int ready;
    if (batch_left(w)) return 1;
    pthread_mutex_lock(&s->mu);
    while (!work_for(s, w) && !s->stopped && !atomic_load(&w->interrupted) &&
           !atomic_load(&w->retiring))
        sleep_until_woken(s, w);
    ready = work_for(s, w) && !atomic_load(&w->retiring);
    pthread_mutex_unlock(&s->mu);
    return ready;
}

kino_waiter *kino_waiter_new(kino_server *s, int worker) {
    kino_waiter *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (wakefd_open(w->wake) < 0) {
        free(w);
        return NULL;
    }
    pthread_cond_init(&w->cond, NULL);
    klist_init(&w->link);
    klist_init(&w->lane);
    w->s = s;
    w->worker = worker;
    pthread_mutex_lock(&s->mu);
    klist_push(&s->waiters, &w->all);
    klist_push(&s->lanes, &w->lane_link);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->nwaiters, 1);
    return w;
}

void kino_waiter_free(kino_waiter *w) {
    if (!w) return;
    kino_server *s = w->s;
    /* its lane, and the requests it took in a batch and never started, go
     * back to the front of the queue; once the server stops, the batch
     * goes to its I/O threads (answered 500, closed) */
    pthread_mutex_lock(&s->mu);
    klist_remove(&w->all);
    klist_remove(&w->lane_link);
    lane_return(s, w);
    if (!s->stopped) batch_return(s, w);
    kino_conn *left[KINO_BATCH_MAX], *c;
    int nleft = 0;
    while ((c = batch_claim(s, w)) != NULL) left[nleft++] = c;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < nleft; i++) {
        log_canned(s, -1, left[i], 500, 0); /* no worker started it */
        kino_release(left[i], NEXT_ABORT);
    }
    atomic_fetch_sub(&w->s->nwaiters, 1);
    pthread_cond_destroy(&w->cond);
    wakefd_close(w->wake);
    free(w->out);
    free(w->tls_buf);
    free(w->lg);
    free(w);
}

void kino_waiter_interrupt(kino_waiter *w) {
    kino_server *s = w->s;
    atomic_store(&w->interrupted, 1);
    pthread_mutex_lock(&s->mu);
    if (w->sleeping) pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&s->mu);
    wakefd_signal(w->wake);
}

void kino_waiter_reset(kino_waiter *w) {
    if (atomic_exchange(&w->interrupted, 0)) wakefd_drain(w->wake);
}

int kino_waiter_interrupted(kino_waiter *w) { return atomic_load(&w->interrupted); }

int kino_waiter_retiring(kino_waiter *w) { return atomic_load(&w->retiring); }

/* Mark every waiter of `worker` that is not retiring yet, give back
 * what waits in its lane and what it took in a batch and has not begun,
 * and wake the ones asleep in kino_take/kino_wait_ready so they see it.
 * A waiter busy on a request is left alone: it sees the mark at its next
 * take. */
int kino_server_retire(kino_server *s, int worker, int quarantine) {
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->waiters.next; k != &s->waiters; k = k->next) {
        kino_waiter *w = KLIST_ENTRY(k, kino_waiter, all);
        if (w->worker != worker || atomic_load(&w->retiring)) continue;
        atomic_store(&w->retiring, 1);
        w->quarantined = quarantine != 0;
        if (w->nlane) lane_return(s, w); /* its lane goes back to the shared queue */
        batch_return(s, w);              /* and its batch */
        if (w->sleeping) pthread_cond_signal(&w->cond);
        n++;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ================================================================== */
/* 4. Timers                                                          */
/* ================================================================== */

/* Each list holds connections waiting on one kind of deadline, all with
 * the same timeout, so appending keeps every list sorted and a sweep
 * only looks at heads. Only the I/O thread touches these. */
static void timer_set(kino_conn *c, klist *list, int64_t deadline) {
    klist_remove(&c->tlink);
    c->deadline = deadline;
    klist_push(list, &c->tlink);
}

static int64_t after(kino_io *io, int64_t ms) {
    return ms > 0 ? io->now + ms : INT64_MAX;
}

/* ================================================================== */
/* 5. Connections (I/O thread side)                                   */
/* ================================================================== */

static void conn_flush(kino_io *io, kino_conn *c);

/* missed is set only while a worker holds the connection, and
 * counted in io->missed_away so that a worker handing a connection back
 * knows the I/O thread has missed readiness for one (see kino_release()). */
static void missed_set(kino_io *io, kino_conn *c) {
    if (!c->missed) {
        c->missed = 1;
        atomic_fetch_add(&io->missed_away, 1);
    }
}

static void missed_clear(kino_io *io, kino_conn *c) {
    if (c->missed) {
        c->missed = 0;
        atomic_fetch_sub(&io->missed_away, 1);
    }
}

/* "::ffff:1.2.3.4" is 1.2.3.4 to applications. */
static void peer_unmap(char *peer) {
    if (strncmp(peer, "::ffff:", 7) == 0 && strchr(peer, '.'))
        memmove(peer, peer + 7, strlen(peer + 7) + 1);
}

static kino_conn *conn_new(kino_io *io, const kino_lsock *ls, int fd,
                           struct sockaddr_storage *ss) {
    kino_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    klist_init(&c->qlink);
    klist_init(&c->tlink);
    c->io = io;
    c->ls = ls;
    c->fd = fd;
    c->proxy = (ls->flags & KINO_LISTEN_PROXY) != 0;
    c->head.content_length = -1;
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((struct sockaddr_in *)ss)->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, c->peer, sizeof c->peer);
        c->peer_port = ntohs(((struct sockaddr_in6 *)ss)->sin6_port);
    } else {
        strcpy(c->peer, "127.0.0.1"); /* a unix socket: this machine */
    }
    peer_unmap(c->peer);
    return c;
}

/* Take the PROXY header owed at the start of the input. Returns 1 when
 * it is done (c->off moves past it; REMOTE_ADDR and REMOTE_PORT now come
 * from it), 0 when more bytes are needed, -1 when it is missing or
 * malformed: the connection must close. */
static void conn_proxy_apply(kino_conn *c, const kino_proxy *px) {
    c->proxy = 0;
    if (!px->local) {
        size_t n = strnlen(px->addr, sizeof c->peer - 1); /* inet_ntop text fits */
        memcpy(c->peer, px->addr, n);
        c->peer[n] = 0;
        peer_unmap(c->peer);
        c->peer_port = px->port;
    }
}

static int conn_proxy(kino_conn *c) {
    kino_proxy px;
    long n = kino_proxy_parse(c->buf->data + c->off, c->len - c->off, &px);
    if (n <= 0) return n == 0 ? 0 : -1;
    c->off += (size_t)n;
    conn_proxy_apply(c, &px);
    return 1;
}

/* Release the unsent bytes a connection held for its I/O thread. */
static void out_free(kino_server *s, kino_conn *c) {
    if (c->out) atomic_fetch_sub_explicit(&s->handed, c->out_len, memory_order_relaxed);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
}

/* Free a connection; io is NULL once the I/O threads are gone. The fd
 * of a hijacked connection is the app's: it stays open. While its I/O
 * thread handles a batch of events the struct is only marked C_CLOSED
 * and kept on io->dead until the batch is done (io_main): a later event
 * of the batch may name it (kqueue reports a readable and writable
 * socket twice; a connection closed to make way at the cap may have an
 * event of its own further on). */
void kino_conn_destroy(kino_server *s, kino_io *io, kino_conn *c) {
    if (c->st) { /* an HTTP/2 stream's request: its connection frees it */
        kino_h2conn_dropped(c);
        return;
    }
    if (c->h2) kino_h2conn_destroyed(c); /* its streams first */
    if (c->missed) atomic_fetch_sub(&c->io->missed_away, 1);
    klist_remove(&c->tlink);
    conn_tls_free(c);
    if (c->next != NEXT_HIJACKED) close(c->fd);
    buf_put(io, c->buf);
    c->buf = NULL;
    out_free(s, c);
    if (io && io->dispatching) {
        c->state = C_CLOSED;
        klist_push(&io->dead, &c->tlink);
    } else {
        free(c);
    }
    uint64_t left = atomic_fetch_sub(&s->conns, 1) - 1;
    if (atomic_load(&s->paused) && left < s->max_conns)
        for (int i = 0; i < s->nio; i++) wake_io(&s->io[i]);
}

static void conn_close(kino_io *io, kino_conn *c) { kino_conn_destroy(io->s, io, c); }

/* Format a canned response (text/plain reason phrase, Connection: close)
 * into buf; returns its length. */
size_t kino_canned(char *buf, size_t cap, int status) {
    const char *reason = kino_reason(status);
    char date[DATE_WORDS * 8];
    date_copy(date);
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%sServer: Kino\r\n%s\r\n%s\n",
                     status, reason, strlen(reason) + 1, date,
                     status == 503 ? "Retry-After: 5\r\n" : "", reason);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Start closing a connection politely: stop writing (FIN after what was
 * sent), then read and discard for a while, so the client reads our
 * answer instead of a reset caused by its own unread bytes. */
static void conn_linger(kino_io *io, kino_conn *c) {
    conn_close_notify(c);
    shutdown(c->fd, SHUT_WR);
    c->state = C_LINGER;
    c->body_total = 0; /* now counts the bytes discarded */
    timer_set(c, &io->t_linger, io->now + KINO_LINGER_MS);
    /* the first read happens on the next readiness event */
}

/* Answer from the I/O thread with a canned error and close in stages. */
static void conn_canned(kino_io *io, kino_conn *c, int status) {
    char msg[512];
    size_t n = kino_canned(msg, sizeof msg, status);
    ssize_t w = conn_send(c, msg, n);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) w = 0;
    log_canned(io->s, io->index, c, status, n);
    if (status == 503) atomic_fetch_add_explicit(&io->s->rejected, 1, memory_order_relaxed);
    else if (status == 504) atomic_fetch_add_explicit(&io->s->timeouts, 1, memory_order_relaxed);
    else atomic_fetch_add_explicit(&io->s->errors, 1, memory_order_relaxed);
    if (w >= 0 && (size_t)w < n && (c->out = malloc(n - (size_t)w))) {
        memcpy(c->out, msg + w, n - (size_t)w);
        c->out_len = n - (size_t)w;
        atomic_fetch_add_explicit(&io->s->handed, c->out_len, memory_order_relaxed);
        c->out_off = 0;
        c->next = NEXT_CLOSE;
        c->state = C_FLUSH;
        timer_set(c, &io->t_flush, after(io, io->s->body_ms));
        return;
    }
    if (w < 0) {
        conn_close(io, c);
        return;
    }
    conn_linger(io, c);
}

/* Set up body framing for the head just parsed. */
static void conn_body_init(kino_conn *c) {
    c->bpos = c->off + c->head_len;
    c->body_total = 0;
    c->body_waited = c->win_at = 0;
    c->win_bytes = 0;
    c->continue_sent = 0;
    memset(&c->chunk, 0, sizeof c->chunk);
    if (c->head.chunked) {
        c->body = B_CHUNKED;
    } else if (c->head.content_length > 0) {
        c->body = B_LENGTH;
        c->body_left = (uint64_t)c->head.content_length;
    } else {
        c->body = B_NONE;
    }
}

/* Try to make the next request out of buffered bytes. Returns 1 when a
 * valid head is ready, 0 when more bytes are needed, or the status to
 * answer with. Used by the I/O thread and by workers (pipelining). */
int kino_conn_prepare(kino_server *s, kino_conn *c) {
    int status = 0;
    const char *p = c->buf->data + c->off;
    long n = kino_head_end(p, c->len - c->off, &c->scanned, &status);
    if (n == 0) return 0;
    if (n < 0) {
        memset(&c->head, 0, sizeof c->head); /* nothing of it is known */
        c->head.minor = -1;
        return status;
    }
    /* from here the answer is final; a caller that cannot act on it (a
     * worker) leaves it to the I/O thread, which must find the head again */
    c->scanned = 0;
    if (kino_parse_head(p, (size_t)n, &c->head, c->buf->hdrs, KINO_MAX_HEADERS) != KINO_OK)
        return c->head.status;
    if (s->o.max_body_size && c->head.content_length > 0 &&
        (uint64_t)c->head.content_length > s->o.max_body_size)
        return 413;
    c->head_len = (size_t)n;
    c->head_at = p;
    conn_body_init(c);
    if (s->o.log_sink) c->t_start = now_us();
    atomic_store_explicit(&c->answer, ANS_OPEN, memory_order_relaxed);
    c->r_done = 0;
    c->trailing = 0;
    c->r_close = 0;
    c->hinted = 0;
    c->final = 0;
    c->refused = 0;
    c->sent = 0;
    c->error = NULL;
    return 1;
}

/* Hand a complete request to the workers, or park it until the queue has
 * room (503 after queue_timeout). */
static void conn_dispatch(kino_io *io, kino_conn *c) {
    kino_server *s = io->s;
    atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed);
    c->queued_at = io->now;
    c->state = C_AWAY;
    missed_clear(io, c);
    klist_remove(&c->tlink);
    if (klist_empty(&io->t_parked) && ready_push(s, c, io->now) == 0) {
        /* From here a worker may own c: only I/O-thread fields change. */
        if (s->request_ms) timer_set(c, &io->t_away, io->now + s->request_ms);
        else klist_push(&io->t_held, &c->tlink);
    } else {
        c->state = C_PARKED;
        timer_set(c, &io->t_parked, after(io, s->queue_ms));
        atomic_store(&io->parked, 1);
    }
}

/* Move parked requests into the queue while it has room, oldest first.
 * state and tlink belong to the I/O thread, so they may change after the
 * push has given the request to a worker. */
static void io_admit(kino_io *io) {
    kino_server *s = io->s;
    while (!klist_empty(&io->t_parked)) {
        kino_conn *c = KLIST_ENTRY(io->t_parked.next, kino_conn, tlink);
        if (ready_push(s, c, io->now) < 0) return;
        c->state = C_AWAY;
        klist_remove(&c->tlink);
        if (s->request_ms) timer_set(c, &io->t_away, io->now + s->request_ms);
        else klist_push(&io->t_held, &c->tlink);
    }
    atomic_store(&io->parked, 0);
}

/* Is the body of the request just prepared all here? The I/O thread
 * gathers bodies up to o.body_buffer bytes before a worker sees the
 * request, so a client that sends its body slowly holds a connection,
 * never a worker. Returns 1 to dispatch now (no body, all of it here, or
 * too large to gather: a worker streams it), 0 to keep reading, or the
 * status to answer with: 400 for bad chunked framing, 413 once a chunked
 * body -- with the chunk just announced -- passes max_body_size. Chunked
 * bodies are looked at once, incrementally, without copying (fresh: a new
 * request, start over).
 *
 * "Here" includes the socket: when the last read filled the buffer (more)
 * and the rest of a Content-Length body already waits in the kernel's
 * receive queue, the request goes to a worker at once, which reads that
 * rest straight into the app's buffer without waiting -- one copy of the
 * body fewer than gathering it here first, and no buffer growth. A short
 * read proves the socket empty, so a client that trickles its body costs
 * no extra syscall. Plain sockets only: over TLS the queue holds records. */
static int body_buffered(kino_server *s, kino_conn *c, int fresh, int more) {
    uint64_t limit = s->o.body_buffer;
    if (c->body == B_NONE || c->body_full) return 1;
    if (c->body == B_LENGTH) {
        uint64_t have = c->len - c->bpos;
        if (have >= c->body_left || c->body_left > limit) return 1;
        if (more && !conn_tls(c)) {
            long queued = socket_queued(c->fd);
            if (queued > 0 && have + (uint64_t)queued >= c->body_left) return 1;
        }
        return 0;
    }
    if (!limit) return 1;
    if (fresh) {
        memset(&c->ahead, 0, sizeof c->ahead);
        c->ahead_pos = c->bpos - c->off;
        c->ahead_total = 0;
    }
    uint64_t max = s->o.max_body_size;
    size_t pos = c->off + c->ahead_pos;
    while (pos < c->len) {
        /* stop one byte past the limit, so the verdict does not depend on
         * how the bytes were cut into reads */
        size_t used = 0, out = 0, cap = max ? (size_t)(max - c->ahead_total + 1) : (size_t)-1;
        int r = kino_chunked_step(&c->ahead, c->buf->data + pos, c->len - pos, &used, NULL, cap,
                                  &out);
        pos += used;
        c->ahead_total += out;
        if (r == KINO_ERROR) return 400;
        if (max && c->ahead_total > max) return 413;
        if (r == KINO_CHUNK_DONE) return 1;
    }
    c->ahead_pos = pos - c->off;
    if (max && c->ahead.state == CH_DATA && c->ahead_total + c->ahead.left > max) return 413;
    return pos - c->bpos >= limit;
}

/* Act on buffered input: dispatch a complete request, answer a bad one,
 * or wait for more bytes -- of the head under the header deadline, of the
 * body under the body deadline (each pause). Returns 1 when c still
 * waits for input; 0 when it was dispatched, answered or closed (then c
 * must not be touched: a worker may own it, or it is freed). more says
 * the socket may hold bytes not yet read. While a body is gathered the
 * head is parsed again only when the buffer moved (grown elsewhere, or
 * slid to its start): its spans point into it. */
static int conn_advance(kino_io *io, kino_conn *c, int more) {
    int fresh = c->state != C_BODY, continued = !fresh && c->continue_sent, gathering = 0;
    int r = !fresh && c->head_at == c->buf->data + c->off ? 1 : kino_conn_prepare(io->s, c);
    if (r == 1) {
        c->continue_sent = (unsigned)continued;
        r = body_buffered(io->s, c, fresh, more);
        gathering = r == 0;
    }
    /* a client that asked to be invited gets "100 Continue" now, as it
     * would from nginx or Puma; if that cannot go out, the worker asks */
    if (gathering && c->head.expect_continue && !c->continue_sent && kino_send_continue(c) != KINO_OK) {
        gathering = 0;
        r = 1;
    }
    if (r == 1) {
        c->maybe_more = (unsigned char)more;
        c->body_full = 0;
        conn_dispatch(io, c);
        return 0;
    }
    if (r != 0) {
        conn_canned(io, c, r);
        return 0;
    }
    if (gathering) { /* progress on the body: the pause clock restarts */
        c->state = C_BODY;
        timer_set(c, &io->t_body, after(io, io->s->body_ms));
    } else if (c->state != C_READING) {
        c->state = C_READING; /* the first byte starts the clock */
        timer_set(c, &io->t_header, after(io, io->s->header_ms));
    }
    return 1;
}

/* The first bytes of a connection (cleartext, or TLS without ALPN h2,
 * after any PROXY header): 1 when they are HTTP/2's client preface (RFC
 * 9113 3.3, prior knowledge), 0 while they could still be, -1 when they
 * are not: HTTP/1.1 from then on (with http2 off, always: "PRI *
 * HTTP/2.0" then gets the parser's 505). One memcmp per read, on the
 * first request of a connection only. */
static int preface_sniff(kino_server *s, kino_conn *c) {
    size_t n = c->len - c->off;
    if (n > KINO_H2_PREFACE_LEN) n = KINO_H2_PREFACE_LEN;
    if (!s->o.http2 || memcmp(c->buf->data + c->off, KINO_H2_PREFACE, n) != 0) {
        c->fresh = 0;
        return -1;
    }
    return n == KINO_H2_PREFACE_LEN ? 1 : 0;
}

#ifdef KINO_TLS
/* After a TLS handshake: did ALPN pick h2? Then the connection is
 * HTTP/2's from its first byte (1); else 0. */
static int h2_by_alpn(kino_io *io, kino_conn *c) {
    if (io->s->o.http2 && kino_tls_alpn_h2(c->tls)) {
        if (kino_h2conn_start(io, c) < 0) conn_close(io, c);
        return 1;
    }
    return 0;
}
#endif

/* Read what the socket holds and act on it. Edge-triggered: keep reading
 * until a short read proves the socket empty. */
static void conn_read(kino_io *io, kino_conn *c, int hup) {
    missed_clear(io, c);
    c->maybe_more = 0;
    if (!c->buf) {
        c->buf = buf_get(io);
        c->off = c->len = c->scanned = 0;
        if (!c->buf) {
            conn_close(io, c);
            return;
        }
    }
    for (;;) {
        size_t room = conn_room(c);
        if (room == 0 && c->state == C_BODY) { /* as much body as we gather */
            c->body_full = 1;
            conn_advance(io, c, 1);
            return;
        }
        if (room == 0) { /* a head larger than we allow */
            memset(&c->head, 0, sizeof c->head);
            c->head.minor = -1;
            conn_canned(io, c, 431);
            return;
        }
        ssize_t n = conn_recv(c, c->buf->data + c->len, room);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c->len == c->off) { /* nothing buffered: no buffer */
                    buf_put(io, c->buf);
                    c->buf = NULL;
                    c->off = c->len = 0;
                }
                return;
            }
            conn_close(io, c);
            return;
        }
        if (n == 0) {
            conn_close(io, c);
            return;
        }
        c->len += (size_t)n;
        if (c->proxy) { /* only before the first request */
            int r = conn_proxy(c);
            if (r < 0) {
                conn_close(io, c);
                return;
            }
            if (r == 0) {
                if ((size_t)n < room && !hup) return;
                continue;
            }
        }
        if (c->fresh) { /* HTTP/2 with prior knowledge? */
            int r = preface_sniff(io->s, c);
            if (r == 0) {
                if ((size_t)n < room && !hup) return;
                continue;
            }
            if (r == 1) {
                if (kino_h2conn_start(io, c) < 0) conn_close(io, c);
                return;
            }
        }
        int more = conn_more(c, n, room);
        /* after a hang-up the socket still holds the EOF: read it when
         * the connection comes back, so a half-closed client is closed */
        if (!conn_advance(io, c, more || hup)) return;
        if (!more && !hup) return; /* drained (edge-triggered) */
    }
}

/* An idle keep-alive connection, or the start of its next request. */
static void conn_keep(kino_io *io, kino_conn *c) {
    if (atomic_load(&io->s->draining)) {
        conn_close(io, c);
        return;
    }
    c->state = C_IDLE;
    if (c->buf && c->len > c->off) {
        /* pipelined bytes are already here */
        if (!conn_advance(io, c, c->missed || c->maybe_more)) return;
    } else {
        buf_put(io, c->buf);
        c->buf = NULL;
        timer_set(c, &io->t_idle, after(io, io->s->keepalive_ms));
    }
    if (c->missed || c->maybe_more) conn_read(io, c, 0);
}

/* Write out what a worker left unsent; then keep or close. */
static void conn_flush(kino_io *io, kino_conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                timer_set(c, &io->t_flush, after(io, io->s->body_ms));
                return;
            }
            conn_close(io, c);
            return;
        }
        c->out_off += (size_t)n;
    }
    out_free(io->s, c);
    if (c->next == NEXT_KEEP) conn_keep(io, c);
    else conn_linger(io, c);
}

/* Read and drop input of a closing connection until EOF or limits. */
static void conn_drop_input(kino_io *io, kino_conn *c) {
    char junk[4096];
    for (;;) {
        ssize_t n = recv(c->fd, junk, sizeof junk, 0);
        if (n > 0) {
            c->body_total += (uint64_t)n;
            if (c->body_total > KINO_LINGER_BYTES) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        break;
    }
    conn_close(io, c);
}

/* Abort one request that a worker may still be serving: answer it with
 * `status` unless the app already began, then shut the socket so the
 * worker's next read or write fails fast. The worker still hands the
 * connection back, and it is closed then. Over TLS the answer is written
 * only when the I/O thread owns the connection (owned): a worker may be
 * inside OpenSSL with it, so the client sees the close alone. A hijacked
 * connection is left alone: the claim of a begun response is a second
 * compare-and-swap (ANS_APP to claim), so a hijack racing with it either
 * wins (and the socket is not touched) or fails. */
static void conn_preempt(kino_io *io, kino_conn *c, int status, int claim, int owned) {
    int cur = ANS_OPEN;
    if (atomic_compare_exchange_strong(&c->answer, &cur, claim)) {
        char msg[512];
        size_t n = kino_canned(msg, sizeof msg, status);
        ssize_t w = owned || !conn_tls(c) ? conn_send(c, msg, n) : 0;
        (void)w;
        if (status == 504) atomic_fetch_add_explicit(&io->s->timeouts, 1, memory_order_relaxed);
        /* the worker still owns c and writes its access line; the note
         * (why the client got this) is the I/O thread's */
        if (c->next != NEXT_ABORT) log_canned(io->s, io->index, NULL, status, n);
    } else if (claim == ANS_TIMEOUT) {
        return; /* the response has begun: a stream is not cut */
    } else if (cur != ANS_APP || !atomic_compare_exchange_strong(&c->answer, &cur, claim)) {
        return; /* hijacked (or already claimed): not ours to shut */
    }
    shutdown(c->fd, SHUT_RDWR);
}

/* A connection handed back by a worker. */
static void conn_returned(kino_io *io, kino_conn *c) {
    if (c->st) { /* an HTTP/2 stream with news, not a connection */
        kino_h2conn_returned(io, c);
        return;
    }
    int ans = atomic_load(&c->answer);
    klist_remove(&c->tlink);
    if (c->next == NEXT_HIJACKED) { /* the fd is the app's now */
        conn_close(io, c);
        return;
    }
    if (c->next == NEXT_ABORT || ans == ANS_TIMEOUT || ans == ANS_SHUTDOWN) {
        if (c->next == NEXT_ABORT) conn_preempt(io, c, 500, ANS_SHUTDOWN, 1);
        conn_close(io, c);
        return;
    }
    if (c->out) {
        c->state = C_FLUSH;
        timer_set(c, &io->t_flush, after(io, io->s->body_ms));
        conn_flush(io, c);
    } else if (c->next == NEXT_KEEP) {
        conn_keep(io, c);
    } else {
        conn_linger(io, c);
    }
}

/* The PROXY header of a TLS connection, which precedes the handshake:
 * peeked, so not a byte of the TLS stream is taken with it, then
 * consumed exactly. Returns as conn_proxy does. More bytes come with a
 * new edge-triggered event, peeked bytes or not. */
#ifdef KINO_TLS
static int conn_proxy_peeked(kino_conn *c) {
    char head[KINO_PROXY_MAX];
    kino_proxy px;
    ssize_t n = recv(c->fd, head, sizeof head, MSG_PEEK);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    if (n == 0) return -1;
    long used = kino_proxy_parse(head, (size_t)n, &px);
    if (used <= 0) return used == 0 && (size_t)n < sizeof head ? 0 : -1;
    if (recv(c->fd, head, (size_t)used, 0) != used) return -1;
    conn_proxy_apply(c, &px);
    return 1;
}
#endif

/* A new HTTPS connection with bytes to read. The first one says what the
 * client speaks (peeked, not consumed): plain HTTP gets a plain 400 and a
 * close, as nginx does, and costs no TLS state; a TLS record starts the
 * handshake, which then advances on every readiness event (the poller
 * watches both directions for the connection's life, so OpenSSL's
 * WANT_READ and WANT_WRITE need no re-arming). header_timeout, counted
 * from accept, bounds it all: a stalled, silent or trickling client is
 * closed by the sweep like any slow head. */
static void conn_handshake(kino_io *io, kino_conn *c) {
#ifdef KINO_TLS
    if (c->proxy) { /* a PROXY header comes first, in the clear */
        int r = conn_proxy_peeked(c);
        if (r == 0) return;
        if (r < 0) {
            conn_close(io, c);
            return;
        }
    }
    if (!c->tls) {
        unsigned char b;
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) {
            conn_close(io, c);
            return;
        }
        if (!kino_tls_first_byte(b)) {
            c->state = C_READING;
            conn_canned(io, c, 400);
            return;
        }
        c->tls = kino_tls_new(io->s->tls, c->fd);
        if (!c->tls) {
            conn_close(io, c);
            return;
        }
    }
    int r = kino_tls_handshake(c->tls);
    if (r == KINO_AGAIN) return;
    if (r != KINO_OK) {
        conn_close(io, c);
        return;
    }
    c->state = C_READING; /* the header deadline still counts from accept */
    if (h2_by_alpn(io, c)) return;
    conn_read(io, c, 0);  /* the request may have come with the handshake */
#else
    conn_close(io, c);
#endif
}

/* ================================================================== */
/* 6. I/O thread                                                      */
/* ================================================================== */

/* Watch (on) or stop watching every listener. Returns 0 when all
 * changed, -1 when one could not be watched. */
static int io_listen_all(kino_io *io, int on) {
    kino_server *s = io->s;
    int r = 0;
    for (int i = 0; i < s->nls; i++)
        if (s->ls[i].fd >= 0 && poller_listen(&io->p, s->ls[i].fd, &s->ls[i], on) < 0 &&
            errno != (on ? EEXIST : ENOENT))
            r = -1;
    return r;
}

/* The listener an event's data names, or NULL (a connection or a wake). */
static kino_lsock *io_listener(kino_io *io, void *data) {
    kino_server *s = io->s;
    kino_lsock *l = data;
    return l >= s->ls && l < s->ls + s->nls ? l : NULL;
}

/* Workers free to take a request now: the workers, less the requests
 * they hold and those queued for them. */
static int idle_workers(kino_server *s) {
    int64_t n = (int64_t)atomic_load_explicit(&s->nwaiters, memory_order_relaxed) -
                (int64_t)atomic_load_explicit(&s->in_flight, memory_order_relaxed) -
                (int64_t)atomic_load_explicit(&s->queued, memory_order_relaxed);
    return n < 0 ? 0 : n > KINO_ACCEPTS ? KINO_ACCEPTS : (int)n;
}

/* The connection that costs least to lose when a new client needs room:
 * this thread's oldest idle keep-alive connection, else its oldest one
 * that has not sent a byte since it was accepted (among the first
 * KINO_EVICT_SCAN of those), else NULL. Without evicting them, clients
 * that merely hold connections open would keep every new client out
 * until their timeouts. */
#define KINO_EVICT_SCAN 64
static kino_conn *conn_victim(kino_io *io) {
    klist *h = &io->t_header, *n = h->next;
    if (!klist_empty(&io->t_idle)) return KLIST_ENTRY(io->t_idle.next, kino_conn, tlink);
    for (int i = 0; n != h && i < KINO_EVICT_SCAN; n = n->next, i++) {
        kino_conn *c = KLIST_ENTRY(n, kino_conn, tlink);
        if (!c->buf || c->len == c->off) return c;
    }
    return NULL;
}

/* Accept a batch of connections from one listener. At the connection
 * cap a new client takes the place of conn_victim(); out of file
 * descriptors too. With no victim, accepting pauses (the listeners are
 * unwatched) until a connection closes or becomes a victim, or, on
 * EMFILE, backs off for 100 ms instead of spinning. Listeners shared
 * with other processes are a balance: take one connection per idle
 * worker, and with none idle stop watching them for KINO_SHARED_PAUSE_MS,
 * leaving the connection to a process that has one. A connection still
 * waiting after that pause is taken (one per pause), so that when every
 * process is busy the backlog still drains, evenly, and none starves. */
static void io_accept(kino_io *io, kino_lsock *l) {
    kino_server *s = io->s;
    int batch = KINO_ACCEPTS;
    if (s->o.shared_listener) {
        batch = idle_workers(s);
        if (batch == 0 && !io->deferred) {
            io_listen_all(io, 0);
            io->listening = 0;
            io->resume_at = io->now + KINO_SHARED_PAUSE_MS;
            io->deferred = 1;
            return;
        }
        if (batch == 0) batch = 1;
        io->deferred = 0;
    }
    for (int i = 0; i < batch; i++) {
        int full = atomic_load(&s->conns) >= s->max_conns;
        if (full && !conn_victim(io)) {
            if (io->listening) {
                io_listen_all(io, 0);
                io->listening = 0;
                io->paused = 1;
                atomic_fetch_add(&s->paused, 1);
            }
            return;
        }
        struct sockaddr_storage ss;
        int fd = accept_nb(l->fd, &ss);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            kino_conn *victim = errno == EMFILE || errno == ENFILE ? conn_victim(io) : NULL;
            if (victim) {
                conn_close(io, victim);
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                io_listen_all(io, 0);
                io->listening = 0;
                io->resume_at = io->now + 100;
            }
            return;
        }
        kino_conn *c = conn_new(io, l, fd, &ss);
        if (!c || poller_watch(&io->p, fd, c) < 0) {
            free(c);
            close(fd);
            continue;
        }
        kino_conn *victim = full ? conn_victim(io) : NULL;
        if (victim) conn_close(io, victim); /* c takes its place */
        atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
        atomic_fetch_add(&s->conns, 1);
        /* header_timeout runs from accept (over TLS: the handshake too) */
        c->state = (l->flags & KINO_LISTEN_TLS) ? C_HANDSHAKE : C_READING;
        c->fresh = 1;
        timer_set(c, &io->t_header, after(io, s->header_ms));
    }
}

/* Resume accepting once below the cap -- or at it, with a connection
 * to make way (conn_victim) -- and past any back-off. */
static void io_resume_accept(kino_io *io) {
    kino_server *s = io->s;
    if (io->listening || io->drained || io->now < io->resume_at ||
        (atomic_load(&s->conns) >= s->max_conns && !conn_victim(io)))
        return;
    if (io_listen_all(io, 1) == 0) {
        if (io->paused) atomic_fetch_sub(&s->paused, 1);
        io->paused = 0;
        io->listening = 1;
        io->resume_at = 0;
    }
}

/* One readiness event (EV_IN/EV_OUT/EV_HUP in mask) for connection c,
 * dispatched on its state. Edge-triggered: whatever a handler does not
 * consume now is remembered (maybe_more, missed), never re-reported.
 * For a connection away with a worker the I/O thread only notes the event
 * (missed_set); the worker's hand-back makes the thread look again. */
static void on_event(kino_io *io, kino_conn *c, int mask) {
    switch (c->state) {
    case C_IDLE:
    case C_READING: /* (a TLS read may wait to write: a key update) */
    case C_BODY:
        if ((mask & EV_IN) || ((mask & EV_OUT) && (conn_wants(c, 0) & KINO_WAIT_WRITE)))
            conn_read(io, c, mask & EV_HUP);
        break;
    case C_FLUSH: /* input waits until the response is out: note it */
        if (mask & EV_IN) c->maybe_more = 1;
        conn_flush(io, c);
        break;
    case C_LINGER:
        if (mask & EV_IN) conn_drop_input(io, c);
        break;
    case C_HANDSHAKE:
        conn_handshake(io, c);
        break;
    case C_H2:
        kino_h2conn_event(io, c, mask);
        break;
    case C_CLOSED: /* closed earlier in this batch */
        break;
    default: /* away with a worker: look again when it comes back */
        missed_set(io, c);
    }
}

/* Connections handed back by workers: a lock-free stack, taken whole. */
static void io_returns(kino_io *io) {
    kino_conn *c = atomic_exchange(&io->returns, NULL), *rev = NULL;
    while (c) { /* restore hand-back order */
        kino_conn *n = c->rnext;
        c->rnext = rev;
        rev = c;
        c = n;
    }
    while (rev) {
        kino_conn *n = rev->rnext;
        conn_returned(io, rev);
        rev = n;
    }
    kino_h2conn_flush_returned(io); /* one write per HTTP/2 connection */
}

/* Expire the heads of the timer lists. */
static void io_sweep(kino_io *io) {
    kino_conn *c;
#define EXPIRED(list) \
    (!klist_empty(list) && (c = KLIST_ENTRY((list)->next, kino_conn, tlink))->deadline <= io->now)
    while (EXPIRED(&io->t_header)) {
        if (c->len > c->off && !c->proxy) {
            memset(&c->head, 0, sizeof c->head); /* the head never completed */
            c->head.minor = -1;
            conn_canned(io, c, 408);
        }
        else conn_close(io, c); /* never sent a byte: nothing to answer */
    }
    while (EXPIRED(&io->t_body)) conn_canned(io, c, 408);
    while (EXPIRED(&io->t_idle)) conn_close(io, c);
    while (EXPIRED(&io->t_parked)) {
        atomic_fetch_sub_explicit(&io->s->queued, 1, memory_order_relaxed);
        conn_canned(io, c, 503);
    }
    if (klist_empty(&io->t_parked)) atomic_store(&io->parked, 0);
    while (EXPIRED(&io->t_away)) {
        klist_remove(&c->tlink); /* the worker still owns it */
        klist_push(&io->t_held, &c->tlink);
        conn_preempt(io, c, 504, ANS_TIMEOUT, 0);
    }
    while (EXPIRED(&io->t_streams)) { /* an HTTP/2 stream: 504 on it alone */
        klist_remove(&c->tlink);
        if (kino_h2conn_timeout(io, c)) log_canned(io->s, io->index, NULL, 504, 0);
    }
    while (EXPIRED(&io->t_flush)) conn_close(io, c);
    while (EXPIRED(&io->t_linger)) conn_close(io, c);
#undef EXPIRED
}

/* Milliseconds until the earliest deadline or the next Date second. */
static int io_timeout(kino_io *io) {
    klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_parked,
                      &io->t_away, &io->t_flush, &io->t_linger, &io->t_streams};
    struct timespec ts; /* t_held has no deadline */
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = 1000 - ts.tv_nsec / 1000000;
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        if (klist_empty(lists[i])) continue;
        int64_t d = KLIST_ENTRY(lists[i]->next, kino_conn, tlink)->deadline - io->now;
        if (d < t) t = d < 0 ? 0 : d;
    }
    if (io->resume_at && io->resume_at - io->now < t) t = io->resume_at - io->now;
    if (atomic_load_explicit(&io->s->laned, memory_order_relaxed) && io->lane_check - io->now < t)
        t = io->lane_check - io->now;
    return t < 0 ? 0 : (int)t;
}

static void close_list(kino_io *io, klist *list) {
    while (!klist_empty(list)) conn_close(io, KLIST_ENTRY(list->next, kino_conn, tlink));
}

/* This I/O thread lets go of the listener, once: the last one to do so
 * closes it and wakes kino_server_drain, which waits for that. */
static void io_release_listener(kino_io *io) {
    kino_server *s = io->s;
    if (io->drained) return;
    io->drained = 1;
    if (io->listening) io_listen_all(io, 0);
    io->listening = 0;
    if (atomic_fetch_sub(&s->listeners, 1) == 1) {
        listeners_close(s);
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->unlistened);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Shutdown steps, each done once by each I/O thread. */
static void io_shutdown_steps(kino_io *io) {
    kino_server *s = io->s;
    if (atomic_load(&s->draining) && !io->drained) {
        io_release_listener(io);
        kino_h2conn_drain(io); /* GOAWAY: no new streams */
        close_list(io, &io->t_idle);
        /* connections that never sent a byte are idle too -- except in
         * a hand-over (hot restart), where a client that just connected
         * is about to send its request: it is answered (with
         * Connection: close) or times out, never refused */
        klist *h = &io->t_header;
        for (klist *n = h->next, *nx; n != h && !s->keep_listeners; n = nx) {
            nx = n->next;
            kino_conn *c = KLIST_ENTRY(n, kino_conn, tlink);
            if (c->len == c->off) conn_close(io, c);
        }
    }
    if (atomic_load(&s->aborting) && !io->aborted) {
        io->aborted = 1;
        while (!klist_empty(&io->t_parked)) {
            kino_conn *c = KLIST_ENTRY(io->t_parked.next, kino_conn, tlink);
            atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
            conn_canned(io, c, 500);
        }
        klist *away[] = {&io->t_away, &io->t_held};
        for (int k = 0; k < 2; k++)
            for (klist *n = away[k]->next, *nx; n != away[k]; n = nx) {
                nx = n->next;
                kino_conn *c = KLIST_ENTRY(n, kino_conn, tlink);
                if (c->h2) conn_close(io, c); /* its streams' workers then fail */
                else conn_preempt(io, c, 500, ANS_SHUTDOWN, 0);
            }
        atomic_store(&io->parked, 0);
        close_list(io, &io->t_header);
        close_list(io, &io->t_body);
        close_list(io, &io->t_flush);
        close_list(io, &io->t_linger);
    }
}

/* The poller failed (errno e): this thread can no longer see its sockets,
 * so it says so once on stderr and ends instead of spinning. It gives up
 * its hold on the listener as a drain would (the last holder closes it:
 * clients are refused rather than left waiting); its connections are
 * closed by kino_server_stop. */
static void io_fail(kino_io *io, int e) {
    fprintf(stderr, "kino: I/O thread %d stopped: its poller failed: %s\n", io->index, strerror(e));
    atomic_store(&io->failed, e);
    io_release_listener(io);
}

/*
 * The event loop of one I/O thread. One pass, in order:
 *
 *   1. sleep in the poller until an event, a wake (eventfd / EVFILT_USER)
 *      or the nearest deadline (io_timeout: a timer list head, or the next
 *      second for the Date line); not at all when connections were handed
 *      back meanwhile;
 *   2. read the clock once (io->now, for every deadline this pass sets)
 *      and refresh the Date line;
 *   3. handle each event: a listener accepts (io_accept), the wake is
 *      acknowledged, a connection acts on its state (on_event); the
 *      connections closed meanwhile are freed after the last event
 *      (io->dead: an event later in the batch may name one);
 *   4. take the connections workers handed back (io_returns);
 *   5. move parked requests into the ready queue while it has room
 *      (io_admit), and (lanes) the requests of stalled lanes back to it
 *      (io_lanes);
 *   6. apply drain and abort, once each (io_shutdown_steps);
 *   7. expire the heads of the timer lists (io_sweep);
 *   8. resume accepting when below the connection cap (io_resume_accept).
 *
 * It ends when kino_server_stop sets stopping, or when the poller itself
 * fails (io_fail). Nothing here blocks but step 1; the one lock taken on
 * the way is the ready queue's (ready_push), when a request is complete.
 */
static void *io_main(void *arg) {
    kino_io *io = arg;
    kino_server *s = io->s;
    block_signals();
    while (!atomic_load(&s->stopping)) {
        atomic_store(&io->sleeping, 1);
        int timeout = atomic_load(&io->returns) ? 0 : io_timeout(io);
        int n = poller_wait(&io->p, timeout);
        atomic_store(&io->sleeping, 0);
        if (n < 0) {
            io_fail(io, errno);
            break;
        }
        io->now = mono_ms();
        date_refresh();
        io->dispatching = 1;
        for (int i = 0; i < n; i++) {
            int mask;
            void *data = poller_event(&io->p, i, &mask);
            kino_lsock *l = io_listener(io, data);
            if (l) io_accept(io, l);
            else if (data == io) {
                poller_wake_ack(&io->p);
                atomic_store(&io->wake_sent, 0);
            } else on_event(io, data, mask);
        }
        io->dispatching = 0;
        while (!klist_empty(&io->dead)) {
            klist *d = io->dead.next;
            klist_remove(d);
            free(KLIST_ENTRY(d, kino_conn, tlink));
        }
        io_returns(io);
        io_admit(io);
        if (s->o.lanes) io_lanes(io);
        io_shutdown_steps(io);
        io_sweep(io);
        io_resume_accept(io);
    }
    return NULL;
}


/* ================================================================== */
/* 7. Server                                                          */
/* ================================================================== */

void kino_options_init(kino_options *o) {
    memset(o, 0, sizeof *o);
    o->bind = "127.0.0.1";
    o->port = 0;
    o->io_threads = 1;
    o->queue_depth = 1024;
    o->backlog = 1024;
    o->max_connections = 0;
    o->queue_timeout = 5.0;
    o->request_timeout = 0;
    o->header_timeout = 15.0;
    o->keepalive_timeout = 65.0;
    o->body_timeout = 30.0;
    o->max_body_size = 50u << 20;
    o->body_buffer = 1u << 20;
    o->lanes = 0;
    o->batch = 1;
    o->http2 = 1;
}

static int64_t to_ms(double s) { return s > 0 ? (int64_t)(s * 1000.0 + 0.5) : 0; }

/* Options every listening socket gets: non-blocking, close-on-exec. */
static void listener_setup(int fd) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Bind and listen on TCP host:port. Returns the fd, or -1 with a message
 * in err. */
static int listen_tcp(const char *bind_host, int portno, int backlog, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char port[16];
    int fd = -1, e = 0, one = 1;
    const char *host = bind_host && *bind_host ? bind_host : NULL;
    char stripped[256];
    if (host && host[0] == '[') { /* "[::1]" */
        snprintf(stripped, sizeof stripped, "%s", host + 1);
        char *b = strchr(stripped, ']');
        if (b) *b = 0;
        host = stripped;
    }
    snprintf(port, sizeof port, "%d", portno);
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve bind address %s: %s", bind_host, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        listener_setup(fd);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited */
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) snprintf(err, errlen, "cannot listen on %s:%d: %s", bind_host, portno, strerror(e));
    return fd;
}

/* The sockaddr of unix socket path ("@name": abstract, Linux). Returns
 * its length, or 0 when the path does not fit. */
static socklen_t unix_addr(const char *path, struct sockaddr_un *sa) {
    size_t n = strlen(path);
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof sa->sun_path) return 0;
    memcpy(sa->sun_path, path, n);
    if (path[0] == '@') sa->sun_path[0] = 0; /* abstract: no file */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
}

/* Bind and listen on a unix socket. When the path is taken, a socket
 * file nobody accepts on (a crashed server's) is removed and bound
 * again; a live one is an error, as is any other file. The created file
 * is recorded in l, to be removed at the end. Returns the fd or -1. */
static int listen_unix(kino_lsock *l, const char *path, int backlog, char *err, size_t errlen) {
    struct sockaddr_un sa;
    struct stat st;
    socklen_t len = unix_addr(path, &sa);
    if (!len) {
        snprintf(err, errlen, "unix socket path %s is empty or longer than %zu bytes", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) break;
        listener_setup(fd);
        if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
            if (listen(fd, backlog) < 0) {
                int e = errno;
                close(fd);
                snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(e));
                return -1;
            }
            if (path[0] != '@' && stat(path, &st) == 0) {
                l->path = strdup(path);
                l->dev = st.st_dev;
                l->ino = st.st_ino;
            }
            return fd;
        }
        int e = errno;
        close(fd);
        if (e != EADDRINUSE || path[0] == '@' || attempt > 0) {
            snprintf(err, errlen, "cannot listen on unix socket %s: %s", path,
                     e == EADDRINUSE ? "in use by a live server" : strerror(e));
            return -1;
        }
        if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "cannot listen on unix socket %s: the path exists and is not a socket", path);
            return -1;
        }
        /* is anyone accepting on it? */
        int probe = socket(AF_UNIX, SOCK_STREAM, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, len) == 0;
        int probe_errno = errno;
        if (probe >= 0) close(probe);
        if (live || (probe_errno != ECONNREFUSED && probe_errno != ENOENT)) {
            snprintf(err, errlen, "cannot listen on unix socket %s: in use by a live server", path);
            return -1;
        }
        unlink(path); /* stale: reclaim it */
    }
    snprintf(err, errlen, "cannot listen on unix socket %s: %s", path, strerror(errno));
    return -1;
}

/* Take over an inherited listening socket. It must be a listening stream
 * socket; its kind and port are read from it. path, for a unix socket,
 * is its file, which this server now owns (removed at the end). */
static int listen_adopt(kino_lsock *l, int fd, const char *path, char *err, size_t errlen) {
    int type = 0, acc = 0;
    socklen_t tl = sizeof type, al = sizeof acc;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(err, errlen, "inherited fd %d is not a stream socket", fd);
        return -1;
    }
#ifdef SO_ACCEPTCONN
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && !acc) {
        snprintf(err, errlen, "inherited fd %d is not listening", fd);
        return -1;
    }
#endif
    (void)acc;
    (void)al;
    listener_setup(fd);
    l->kind = ss.ss_family == AF_UNIX ? KINO_UNIX : KINO_TCP;
    struct stat st;
    if (l->kind == KINO_UNIX && path && path[0] != '@' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        l->path = strdup(path);
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    return fd;
}

static int local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* Open every listener the options name, into s->ls. On failure closes
 * those opened and returns -1 with a message in err. */
static int listeners_open(kino_server *s, const kino_options *o, char *err, size_t errlen) {
    kino_listen one = {.host = o->bind, .port = o->port, .fd = -1};
    const kino_listen *spec = o->nlisten > 0 ? o->listen : &one;
    int n = o->nlisten > 0 ? o->nlisten : 1;
    int backlog = o->backlog > 0 ? o->backlog : 1024;
    s->ls = calloc((size_t)n, sizeof *s->ls);
    if (!s->ls) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->port = 0;
    for (int i = 0; i < n; i++) {
        kino_lsock *l = &s->ls[i];
        const kino_listen *w = &spec[i];
        l->flags = w->flags;
        l->kind = w->path ? KINO_UNIX : KINO_TCP;
        if (w->fd >= 0) l->fd = listen_adopt(l, w->fd, w->path, err, errlen);
        else if (w->path) l->fd = listen_unix(l, w->path, backlog, err, errlen);
        else l->fd = listen_tcp(w->host, w->port, backlog, err, errlen);
        s->nls = i + 1;
        if (l->fd < 0) {
            listeners_close(s);
            return -1;
        }
        l->port = l->kind == KINO_TCP ? local_port(l->fd) : 0;
        if (l->kind == KINO_TCP && !s->port) s->port = l->port;
    }
    return 0;
}

/* Close every listener and remove the unix socket files this server
 * made -- unless they are handed on (kino_server_keep_listeners). A file
 * is removed only while it is still the socket bound here. */
static void listeners_close(kino_server *s) {
    for (int i = 0; i < s->nls; i++) {
        kino_lsock *l = &s->ls[i];
        struct stat st;
        if (s->keep_listeners) continue;
        if (l->fd >= 0) close(l->fd);
        l->fd = -1;
        if (l->path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        free(l->path);
        l->path = NULL;
    }
}

/* 80% of the open-file limit, at least 64, when not given. */
static uint64_t default_max_conns(int given) {
    struct rlimit rl;
    if (given > 0) return (uint64_t)given;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return 65536;
    uint64_t n = (uint64_t)rl.rlim_cur * 8 / 10;
    return n < 64 ? 64 : n;
}

static void server_tls_free(kino_server *s) {
#ifdef KINO_TLS
    kino_tls_ctx_free(s->tls);
    s->tls = NULL;
#endif
    (void)s;
}

/* The TLS context the listeners flagged KINO_LISTEN_TLS share, from
 * o->tls (which also makes the one bind:port listener TLS when no list
 * is given). Fails, with a message, when a TLS listener has no settings,
 * the settings are wrong (kino_tls_ctx_new names the file), or this
 * build has no TLS. */
static int server_tls_open(kino_server *s, const kino_options *o, char *err, size_t errlen) {
    int want = 0;
    if (o->nlisten == 0 && o->tls) s->ls[0].flags |= KINO_LISTEN_TLS;
    for (int i = 0; i < s->nls; i++) want |= (s->ls[i].flags & KINO_LISTEN_TLS) != 0;
    if (!want) return 0;
#ifdef KINO_TLS
    if (!o->tls) {
        snprintf(err, errlen, "TLS: a TLS listener needs a certificate and a key (the tls settings)");
        return -1;
    }
    s->tls = kino_tls_ctx_new(o->tls, o->http2, err, errlen);
    return s->tls ? 0 : -1;
#else
    snprintf(err, errlen, "TLS was asked for, but this Kino was built without it "
                          "(OpenSSL's headers were not found at build time, or make TLS=0)");
    return -1;
#endif
}

kino_server *kino_server_new(const kino_options *o, char *err, size_t errlen) {
    if (o->io_threads < 1 || o->queue_depth < 1) {
        snprintf(err, errlen, "io_threads and queue_depth must be at least 1");
        return NULL;
    }
    if (o->batch < 1 || o->batch > KINO_BATCH_MAX) {
        snprintf(err, errlen, "batch must be from 1 to %d", KINO_BATCH_MAX);
        return NULL;
    }
    kino_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->o.listen = NULL; /* the caller's array is not kept */
    s->o.nlisten = 0;
    s->o.tls = NULL;    /* nor its TLS settings: they are read here */
    s->o.bind = NULL;   /* nor its bind string (the Ruby binding passes a
                           Ruby String's bytes, which the GC may move) */
    if (listeners_open(s, o, err, errlen) < 0) {
        free(s->ls);
        free(s);
        return NULL;
    }
    if (server_tls_open(s, o, err, errlen) < 0) {
        listeners_close(s);
        free(s->ls);
        free(s);
        return NULL;
    }
    s->max_conns = default_max_conns(o->max_connections);
    s->header_ms = to_ms(o->header_timeout);
    s->keepalive_ms = to_ms(o->keepalive_timeout);
    s->body_ms = to_ms(o->body_timeout);
    s->queue_ms = to_ms(o->queue_timeout);
    s->request_ms = to_ms(o->request_timeout);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->gone_mu, NULL);
    pthread_cond_init(&s->unlistened, NULL);
    klist_init(&s->ready);
    klist_init(&s->sleepers);
    klist_init(&s->lanes);
    klist_init(&s->waiters);
    s->nio = o->io_threads;
    s->io = calloc((size_t)s->nio, sizeof *s->io);
    if (!s->io) {
        listeners_close(s);
        free(s->ls);
        server_tls_free(s);
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io->s = s;
        io->index = i;
        io->p.fd = -1;
        klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_parked, &io->t_away,
                          &io->t_held, &io->t_flush, &io->t_linger, &io->dead};
        for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) klist_init(lists[k]);
        klist_init(&s->io[i].h2conns);
        klist_init(&s->io[i].t_streams);
        klist_init(&s->io[i].h2flush);
    }
    date_refresh();
    kino_log_start(); /* once per process: canned answers leave notes */
    return s;
}

int kino_server_start(kino_server *s, char *err, size_t errlen) {
    if (s->started) return KINO_OK;
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io->now = mono_ms();
        io->p.shared = s->o.shared_listener;
        if (poller_open(&io->p, io) < 0 || io_listen_all(io, 1) < 0) {
            snprintf(err, errlen, "cannot create the poller: %s", strerror(errno));
            kino_server_stop(s);
            return KINO_ERROR;
        }
        io->listening = 1;
        atomic_fetch_add(&s->listeners, 1);
    }
    for (int i = 0; i < s->nio; i++) {
        /* pthread_create returns its error; it leaves errno alone */
        int e = KINO_THREAD_CREATE(&s->io[i].thread, NULL, io_main, &s->io[i]);
        if (e != 0) {
            snprintf(err, errlen, "cannot start an I/O thread: %s", strerror(e));
            kino_server_stop(s);
            return KINO_ERROR;
        }
        s->io[i].running = 1;
    }
    s->started = 1;
    return KINO_OK;
}

int kino_server_port(const kino_server *s) { return s->port; }

int kino_server_listener_count(const kino_server *s) { return s->nls; }

int kino_server_listener(const kino_server *s, int i, kino_listener_info *out) {
    if (i < 0 || i >= s->nls) return KINO_ERROR;
    out->fd = s->ls[i].fd;
    out->kind = s->ls[i].kind;
    out->port = s->ls[i].port;
    out->flags = s->ls[i].flags;
    return KINO_OK;
}

void kino_server_keep_listeners(kino_server *s) { s->keep_listeners = 1; }

int kino_server_stopped(kino_server *s) {
    pthread_mutex_lock(&s->mu);
    int stopped = s->stopped;
    pthread_mutex_unlock(&s->mu);
    return stopped;
}

/* Wake every I/O thread, unconditionally. */
static void wake_all(kino_server *s) {
    for (int i = 0; i < s->nio; i++)
        if (s->io[i].running) poller_wake(&s->io[i].p);
}

void kino_server_drain(kino_server *s) {
    if (atomic_exchange(&s->draining, 1)) return;
    if (!s->started) {
        listeners_close(s);
        return;
    }
    wake_all(s);
    /* until the last I/O thread has closed the listeners (io_release_listener
     * says so at once), or 2 s: an I/O thread stuck on something else must
     * not hold the caller forever */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    pthread_mutex_lock(&s->mu);
    while (atomic_load(&s->listeners) > 0)
        if (pthread_cond_timedwait(&s->unlistened, &s->mu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&s->mu);
}

long kino_server_outstanding(kino_server *s) {
    return (long)atomic_load(&s->conns) + (long)atomic_load(&s->in_flight);
}

void kino_server_abort(kino_server *s) {
    klist stolen;
    kino_server_drain(s);
    if (atomic_exchange(&s->aborting, 1)) return;
    /* queued requests go back to their I/O threads to be answered */
    klist_init(&stolen);
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->lanes.next; k != &s->lanes; k = k->next)
        lane_return(s, KLIST_ENTRY(k, kino_waiter, lane_link));
    while (!klist_empty(&s->ready)) {
        klist *n = s->ready.next;
        klist_remove(n);
        klist_push(&stolen, n);
        s->nready--;
    }
    pthread_mutex_unlock(&s->mu);
    while (!klist_empty(&stolen)) {
        kino_conn *c = KLIST_ENTRY(stolen.next, kino_conn, qlink);
        klist_remove(&c->qlink);
        atomic_fetch_sub_explicit(&s->queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
        log_canned(s, -1, c, 500, 0); /* no worker saw it: its line is written here */
        kino_release(c, NEXT_ABORT);
    }
    wake_all(s);
}

void kino_server_stop(kino_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopped = 1;
    for (klist *n = s->sleepers.next; n != &s->sleepers; n = n->next)
        pthread_cond_signal(&KLIST_ENTRY(n, kino_waiter, link)->cond);
    pthread_mutex_unlock(&s->mu);
    if (atomic_exchange(&s->stopping, 1)) return;
    wake_all(s);
    for (int i = 0; i < s->nio; i++) {
        if (s->io[i].running) pthread_join(s->io[i].thread, NULL);
        s->io[i].running = 0;
    }
    atomic_store(&s->io_gone, 1);
    /* everything the I/O threads still held is closed now; connections
     * that workers hold are closed when they are handed back (release),
     * perhaps at this very moment: the timer lists are shared with them */
    pthread_mutex_lock(&s->gone_mu);
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        io_returns(io);
        klist *lists[] = {&io->t_header, &io->t_body, &io->t_idle, &io->t_parked, &io->t_flush,
                          &io->t_linger};
        for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) close_list(io, lists[k]);
    }
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->lanes.next; k != &s->lanes; k = k->next)
        lane_return(s, KLIST_ENTRY(k, kino_waiter, lane_link));
    while (!klist_empty(&s->ready)) {
        kino_conn *c = KLIST_ENTRY(s->ready.next, kino_conn, qlink);
        klist_remove(&c->qlink);
        s->nready--;
        kino_conn_destroy(s, c->io, c);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->gone_mu);
    listeners_close(s);
}

void kino_server_free(kino_server *s) {
    if (!s) return;
    kino_server_stop(s);
    for (int i = 0; i < s->nio; i++) {
        kino_io *io = &s->io[i];
        kino_conn *c = atomic_exchange(&io->returns, NULL);
        while (c) {
            kino_conn *n = c->rnext;
            kino_conn_destroy(s, NULL, c);
            c = n;
        }
        /* requests still away were abandoned by their workers */
        while (!klist_empty(&io->t_away))
            kino_conn_destroy(s, NULL, KLIST_ENTRY(io->t_away.next, kino_conn, tlink));
        while (!klist_empty(&io->t_held))
            kino_conn_destroy(s, NULL, KLIST_ENTRY(io->t_held.next, kino_conn, tlink));
        while (io->pool) {
            kino_buf *b = io->pool;
            io->pool = b->next;
            free(b);
        }
        if (io->p.fd >= 0) poller_close(&io->p);
    }
    pthread_mutex_destroy(&s->mu);
    for (int i = 0; i < s->nls; i++) free(s->ls[i].path);
    free(s->ls);
    server_tls_free(s);

    pthread_mutex_destroy(&s->gone_mu);
    pthread_cond_destroy(&s->unlistened);
    free(s->io);
    free(s);
}

void kino_server_stats(kino_server *s, kino_stats *out) {
#define LOAD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
    out->accepted = LOAD(accepted);
    out->connections = LOAD(conns);
    out->served = LOAD(served);
    out->queued = LOAD(queued);
    out->in_flight = LOAD(in_flight);
    out->rejected = LOAD(rejected);
    out->timeouts = LOAD(timeouts);
    out->errors = LOAD(errors);
    out->hijacked = LOAD(hijacked);
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) out->queue_wait[i] = LOAD(queue_wait[i]);
    out->queue_wait_sum_ms = LOAD(queue_wait_sum_ms);
    out->respawns = LOAD(respawns);
    uint64_t pool[POOL_FIELDS];
    for (size_t i = 0; i < POOL_FIELDS; i++) pool[i] = LOAD(pool[i]);
#undef LOAD
    memcpy(&out->pool, pool, sizeof out->pool);
}

/* The fields one by one: a reader may see some of a change before the
 * rest, which for a few gauges and counters read by humans and scrapers
 * is fine, and it takes no lock. */
_Static_assert(sizeof(kino_pool_stats) == POOL_FIELDS * sizeof(uint64_t), "kino_pool_stats: uint64_t fields only");
void kino_server_set_pool(kino_server *s, const kino_pool_stats *p) {
    uint64_t pool[POOL_FIELDS];
    memcpy(pool, p, sizeof pool);
    for (size_t i = 0; i < POOL_FIELDS; i++) atomic_store_explicit(&s->pool[i], pool[i], memory_order_relaxed);
}

void kino_server_note_respawn(kino_server *s) {
    atomic_fetch_add_explicit(&s->respawns, 1, memory_order_relaxed);
}

int64_t kino_wait_bucket_ms(int i) {
    return i >= 0 && i < KINO_WAIT_BUCKETS - 1 ? wait_bounds[i] : -1;
}

int kino_server_waiters(kino_server *s) {
    return atomic_load_explicit(&s->nwaiters, memory_order_relaxed);
}

int kino_server_workers(kino_server *s, kino_worker_stats *out, int max) {
    int n = 0;
    int64_t now = mono_ms();
    pthread_mutex_lock(&s->mu);
    for (klist *k = s->waiters.next; k != &s->waiters; k = k->next, n++) {
        kino_waiter *w = KLIST_ENTRY(k, kino_waiter, all);
        if (n >= max) continue; /* counted, not copied */
        out[n].worker = w->worker;
        out[n].served = atomic_load_explicit(&w->served, memory_order_relaxed);
        out[n].busy_ms = atomic_load_explicit(&w->busy_ms, memory_order_relaxed);
        out[n].in_flight = atomic_load_explicit(&w->in_flight, memory_order_acquire);
        out[n].lane = w->nlane;
        int64_t held = now - atomic_load_explicit(&w->taken_at, memory_order_relaxed);
        out[n].request_ms = out[n].in_flight && held > 0 ? (uint64_t)held : 0;
        out[n].retiring = atomic_load(&w->retiring);
        out[n].quarantined = w->quarantined;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ================================================================== */
/* 8. Access log                                                      */
/* ================================================================== */

/* Every request leaves exactly one access line (when the server has an
 * access log): a worker writes it in kino_next for every request it
 * took, whatever became of it; the I/O thread writes it where it answers
 * a request no worker ever took (conn_canned, and kino_server_abort for
 * queued ones). Independently of the access log, every canned answer the
 * app never saw leaves a note on stderr saying why and what to change,
 * at most one per kind per second (kino_log_note_due). */

#define LG_METHOD 32
#define LG_TARGET 2048
#define LG_RID 256

/* Microseconds on the precise monotonic clock (vDSO: no syscall). */
static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The X-Request-Id value of h, or a NULL span. */
static kino_span request_id(const kino_head *h) {
    kino_span none = {NULL, 0};
    for (size_t i = 0; h->headers && i < h->nheaders; i++)
        if (h->headers[i].name.n == 12 && span_is(h->headers[i].name, "x-request-id"))
            return h->headers[i].value;
    return none;
}

/* Copy what the line needs from c's head into the waiter, which owns the
 * request until kino_next: the head's spans die at the first body read. */
void kino_access_capture(kino_waiter *w, kino_conn *c) {
    const kino_head *h = &c->head;
    if (!w->lg && !(w->lg = malloc(LG_METHOD + LG_TARGET + LG_RID))) return;
    kino_span rid = request_id(h);
    w->lg_method = h->method.n < LG_METHOD ? h->method.n : LG_METHOD;
    w->lg_target = h->target.n < LG_TARGET ? h->target.n : LG_TARGET;
    w->lg_rid = rid.n < LG_RID ? rid.n : LG_RID;
    w->lg_has_rid = rid.p != NULL;
    w->lg_minor = h->minor;
    if (w->lg_method) memcpy(w->lg, h->method.p, w->lg_method);
    if (w->lg_target) memcpy(w->lg + LG_METHOD, h->target.p, w->lg_target);
    if (w->lg_rid) memcpy(w->lg + LG_METHOD + LG_TARGET, rid.p, w->lg_rid);
}

/* The access line of a request a worker took: the status the client
 * got (504 or 500 when a timeout or shutdown answered instead of the
 * app, 500 when nobody answered, 499 when the client left first, 0 for
 * a full hijack, whose response the app wrote itself). */
void kino_access_taken(kino_conn *c, kino_waiter *w) {
    kino_server *s = c->io->s;
    int ans = atomic_load(&c->answer), status;
    uint64_t bytes = c->sent + (c->out ? c->out_len - c->out_off : 0);
    char msg[512];
    if (!w->lg) return;
    if (ans == ANS_TIMEOUT || ans == ANS_SHUTDOWN) {
        status = ans == ANS_TIMEOUT ? 504 : 500;
        bytes = kino_canned(msg, sizeof msg, status);
    } else if (ans == ANS_HIJACK && !c->final) {
        status = 0; /* a full hijack: the app answered on the socket itself */
    } else if (c->final) {
        status = c->status;
    } else if (c->broken) {
        status = 499;
    } else {
        status = 500;
        bytes = kino_canned(msg, sizeof msg, status);
    }
    kino_log_request r = {
        .peer = c->peer, .method = w->lg, .method_n = w->lg_method,
        .target = w->lg + LG_METHOD, .target_n = w->lg_target, .minor = w->lg_minor,
        .status = status, .bytes = bytes, .duration_us = now_us() - c->t_start,
        .request_id = w->lg_has_rid ? w->lg + LG_METHOD + LG_TARGET : NULL,
        .request_id_n = w->lg_rid,
    };
    kino_log_request_line(s->o.log_sink, s->o.log_format, &r);
}

/* Why a canned answer was sent, and the setting that changes it. */
static void canned_why(kino_server *s, kino_conn *c, int status, char *buf, size_t cap) {
    const kino_options *o = &s->o;
    switch (status) {
    case 400:
        snprintf(buf, cap, "malformed request (request line, header fields or framing; RFC 9112); "
                           "a client or proxy bug, no setting changes this");
        break;
    case 408:
        if (c && c->state == C_BODY)
            snprintf(buf, cap, "the request body paused longer than body_timeout (%gs); raise "
                               "body_timeout for slow clients", o->body_timeout);
        else
            snprintf(buf, cap, "the request head did not arrive within header_timeout (%gs); raise "
                               "header_timeout for slow clients", o->header_timeout);
        break;
    case 413:
        if (c && c->head.content_length < 0)
            snprintf(buf, cap, "chunked body announced or sent more than max_body_size (%llu bytes); "
                               "raise max_body_size to accept it", (unsigned long long)o->max_body_size);
        else
            snprintf(buf, cap, "declared body of %lld bytes is over max_body_size (%llu bytes); raise "
                               "max_body_size to accept it", c ? (long long)c->head.content_length : -1LL,
                     (unsigned long long)o->max_body_size);
        break;
    case 414:
        snprintf(buf, cap, "request line longer than %d bytes (the build-time limit "
                           "KINO_MAX_REQUEST_LINE)", KINO_MAX_REQUEST_LINE);
        break;
    case 431:
        snprintf(buf, cap, "request head over %d bytes or %d header fields (the build-time limits "
                           "KINO_MAX_HEAD, KINO_MAX_HEADERS)", KINO_MAX_HEAD, KINO_MAX_HEADERS);
        break;
    case 501:
        snprintf(buf, cap, "a transfer coding or method (CONNECT) Kino does not implement");
        break;
    case 505:
        snprintf(buf, cap, "an HTTP version other than 1.x");
        break;
    case 503:
        snprintf(buf, cap, "no worker was free within queue_timeout (%gs) with queue_depth (%d) "
                           "requests queued; add workers or threads, or raise queue_depth or "
                           "queue_timeout", o->queue_timeout, o->queue_depth);
        break;
    case 504:
        snprintf(buf, cap, "the app took longer than request_timeout (%gs); raise request_timeout "
                           "or make the endpoint faster", o->request_timeout);
        break;
    default:
        snprintf(buf, cap, "unanswered when the shutdown_timeout ran out (a forced stop); raise "
                           "shutdown_timeout to let long requests finish");
    }
}

/* Note kinds for the rate limit: one per canned status. */
static int note_kind(int status) {
    static const int kinds[] = {400, 408, 413, 414, 431, 501, 505, 503, 504, 500};
    for (int i = 0; i < (int)(sizeof kinds / sizeof *kinds); i++)
        if (kinds[i] == status) return i;
    return KINO_LOG_NOTE_KINDS - 1;
}

/* A canned answer the app never saw: its access line (when c is given
 * and the server has an access log) and the rate-limited note. c's head
 * is either this request's (maybe partly parsed) or zeroed. */
static void log_canned(kino_server *s, int io_index, kino_conn *c, int status, size_t bytes) {
    const kino_head *h = c ? &c->head : NULL;
    if (c && s->o.log_sink) {
        kino_span rid = request_id(h);
        kino_log_request r = {
            .peer = c->peer, .method = h->method.p, .method_n = h->method.n,
            .target = h->target.p, .target_n = h->target.n < LG_TARGET ? h->target.n : LG_TARGET,
            .minor = h->method.p ? h->minor : -1, .status = status, .bytes = bytes,
            .duration_us = c->t_start && h->method.p ? now_us() - c->t_start : 0,
            .request_id = rid.p, .request_id_n = rid.n < LG_RID ? rid.n : LG_RID,
        };
        kino_log_request_line(s->o.log_sink, s->o.log_format, &r);
    }
    uint64_t held = 0;
    if (!kino_log_note_due(note_kind(status), &held)) return;
    char why[320], source[16], more[80] = "";
    if (io_index >= 0) snprintf(source, sizeof source, "io-%d", io_index);
    else snprintf(source, sizeof source, "main");
    if (held) snprintf(more, sizeof more, " (+%llu more since the last such note)", (unsigned long long)held);
    canned_why(s, c, status, why, sizeof why);
    if (h && h->method.p)
        kino_log_messagef(KINO_LOG_WARN, source, "%d for %.*s %.*s from %s: %s%s", status,
                          (int)h->method.n, h->method.p, (int)(h->target.n > 200 ? 200 : h->target.n),
                          h->target.p ? h->target.p : "", c->peer, why, more);
    else
        kino_log_messagef(KINO_LOG_WARN, source, "%d%s%s: %s%s", status, c ? " from " : "",
                          c ? c->peer : "", why, more);
}

/* ================================================================== */
/* Shared with kino_stream.c                                          */
/* ================================================================== */

int kino_ready_push(kino_server *s, kino_conn *c) { return ready_push(s, c, c->io->now); }
kino_buf *kino_buf_get(kino_io *io) { return buf_get(io); }
void kino_buf_put(kino_io *io, kino_buf *b) { buf_put(io, b); }
int64_t kino_now_us(void) { return now_us(); }
