/*
 * libkqueue.c -- kevent() and close() as a BSD kernel's kqueue has them,
 * over Debian's libkqueue 2.3.1, for the C tests of the kqueue backend
 * (libkqueue.h says which two limitations and why; make test-kqueue).
 *
 * A table remembers, per kqueue and descriptor, whether EVFILT_READ is
 * registered and which dup() carries EVFILT_WRITE. Changes go to libkqueue
 * one by one under a lock, the write filter's ident replaced by its dup;
 * events come back with the original ident. close() of a descriptor
 * deletes its knotes and its dup first; close() of a kqueue forgets its
 * rows. Waits (no changes) take no lock.
 */
#define _GNU_SOURCE /* F_DUPFD_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/event.h>
#include <unistd.h>

typedef struct row {
    int kq, fd;
    int read;  /* EVFILT_READ registered on fd */
    int wdup;  /* the dup EVFILT_WRITE is registered on, or -1 */
} row;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static row *rows;
static size_t nrows, caprows;

static row *find(int kq, int fd, int create) {
    for (size_t i = 0; i < nrows; i++)
        if (rows[i].kq == kq && rows[i].fd == fd) return &rows[i];
    if (!create) return NULL;
    if (nrows == caprows) {
        size_t cap = caprows ? caprows * 2 : 64;
        row *r = realloc(rows, cap * sizeof *r);
        if (!r) return NULL;
        rows = r;
        caprows = cap;
    }
    rows[nrows] = (row){.kq = kq, .fd = fd, .read = 0, .wdup = -1};
    return &rows[nrows++];
}

static void drop(row *r) {
    if (!r->read && r->wdup < 0) *r = rows[--nrows];
}

/* One change, translated. Returns libkqueue's kevent() result. */
static int change(int kq, const struct kevent *c) {
    struct kevent ch = *c;
    int fd = (int)c->ident;
    if (c->filter == EVFILT_READ) {
        int r = kevent(kq, &ch, 1, NULL, 0, NULL);
        row *w = find(kq, fd, (c->flags & EV_ADD) != 0);
        if (w) {
            if (r == 0) w->read = (c->flags & EV_DELETE) == 0;
            drop(w);
        }
        return r;
    }
    if (c->filter != EVFILT_WRITE) return kevent(kq, &ch, 1, NULL, 0, NULL);
    row *w = find(kq, fd, (c->flags & EV_ADD) != 0);
    if (!w) {
        errno = c->flags & EV_ADD ? ENOMEM : ENOENT;
        return -1;
    }
    if (w->wdup < 0 && (w->wdup = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        drop(w);
        return -1;
    }
    ch.ident = (uintptr_t)w->wdup;
    int r = kevent(kq, &ch, 1, NULL, 0, NULL);
    if ((c->flags & EV_DELETE) || (r < 0 && (c->flags & EV_ADD))) {
        close(w->wdup);
        w->wdup = -1;
        drop(w);
    }
    return r;
}

int kino_libkqueue_kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events, int nevents,
                          const struct timespec *timeout) {
    if (nchanges > 0) {
        int failed = 0, e = 0;
        pthread_mutex_lock(&mu);
        for (int i = 0; i < nchanges; i++)
            if (change(kq, &changes[i]) < 0 && !failed) failed = 1, e = errno;
        pthread_mutex_unlock(&mu);
        if (failed) {
            errno = e;
            return -1;
        }
        if (nevents == 0) return 0;
    }
    int n = kevent(kq, NULL, 0, events, nevents, timeout);
    if (n <= 0) return n;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++) {
        if (events[i].filter != EVFILT_WRITE) continue;
        for (size_t j = 0; j < nrows; j++)
            if (rows[j].kq == kq && rows[j].wdup == (int)events[i].ident) events[i].ident = (uintptr_t)rows[j].fd;
    }
    pthread_mutex_unlock(&mu);
    return n;
}

int kino_libkqueue_close(int fd) {
    pthread_mutex_lock(&mu);
    for (size_t i = nrows; i-- > 0;) {
        row *r = &rows[i];
        if (r->kq == fd) { /* the kqueue itself: its knotes go with it */
            if (r->wdup >= 0) close(r->wdup);
            *r = rows[--nrows];
        } else if (r->fd == fd) {
            struct kevent ch;
            if (r->read) {
                EV_SET(&ch, fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
                kevent(r->kq, &ch, 1, NULL, 0, NULL);
            }
            if (r->wdup >= 0) {
                EV_SET(&ch, r->wdup, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
                kevent(r->kq, &ch, 1, NULL, 0, NULL);
                close(r->wdup);
            }
            *r = rows[--nrows];
        }
    }
    pthread_mutex_unlock(&mu);
    return close(fd);
}
