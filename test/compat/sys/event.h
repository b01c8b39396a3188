/*
 * test/compat/sys/event.h -- just enough of the BSD kqueue declarations
 * (kqueue(2), kevent(2)) to compile the engine's kqueue backend (kino_engine.h) on Linux:
 * `make check-kqueue` builds it with -DKINO_USE_KQUEUE -fsyntax-only, so
 * both poller backends are compiled on every test run. Not for linking.
 */
#ifndef KINO_COMPAT_SYS_EVENT_H
#define KINO_COMPAT_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;       /* identifier for this event (an fd) */
    short filter;          /* EVFILT_* */
    unsigned short flags;  /* EV_* */
    unsigned int fflags;   /* filter-specific flags (NOTE_*) */
    intptr_t data;         /* filter-specific data */
    void *udata;           /* opaque user data */
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_CLEAR 0x0020
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define NOTE_TRIGGER 0x01000000

#define EV_SET(kevp, a, b, c, d, e, f)  \
    do {                                \
        (kevp)->ident = (a);            \
        (kevp)->filter = (b);           \
        (kevp)->flags = (c);            \
        (kevp)->fflags = (d);           \
        (kevp)->data = (e);             \
        (kevp)->udata = (f);            \
    } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#endif
