/*
 * libkqueue.h -- what makes Debian's libkqueue (2.3.1) behave like a BSD
 * kernel's kqueue for the tests of the kqueue backend (make test-kqueue).
 * Forced into the build with -include, so the engine's kevent() and
 * close() calls go through libkqueue.c; the engine itself is unchanged.
 * It fixes two libkqueue limitations (libkqueue's own issues 58 and 59), nothing
 * else:
 *
 *   - one epoll set per kqueue holds a descriptor once, so EVFILT_READ and
 *     EVFILT_WRITE on the same socket cannot both be registered (the
 *     second kevent() fails); a kernel kqueue takes both. The write
 *     filter is registered on a dup() of the socket instead.
 *   - closing a descriptor does not remove its knotes (a kernel kqueue
 *     does), so a later socket that gets the same number finds a stale
 *     one. close() deletes them first.
 */
#ifndef KINO_TEST_LIBKQUEUE_H
#define KINO_TEST_LIBKQUEUE_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* included first: the features kino.c asks for */
#endif
#include <sys/event.h>
#include <time.h>

int kino_libkqueue_kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events, int nevents,
                          const struct timespec *timeout);
int kino_libkqueue_close(int fd);

#define kevent(...) kino_libkqueue_kevent(__VA_ARGS__)
#define close(fd) kino_libkqueue_close(fd)

#endif
