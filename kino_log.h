/*
 * kino_log.h -- the log sink: whole lines from any thread, written by one
 * flusher thread per process (kino_log.c; doc/logging.md).
 *
 * A producer copies its line into a bounded lock-free ring and returns:
 * no lock, no syscall, no allocation. When the ring is full the line is
 * dropped and counted (kino_log_dropped). The flusher thread takes lines
 * in order, batches them per destination and writes each batch with one
 * write(2) of whole lines, so lines never interleave mid-line, even
 * between processes appending to one file (O_APPEND) or one pipe (a
 * pipe gets writes of at most PIPE_BUF bytes).
 *
 * Destinations ("sinks") are small integers: KINO_LOG_STDOUT and
 * KINO_LOG_STDERR always exist; kino_log_open adds files. The flusher
 * survives fork(2): the child gets an empty ring and its own flusher.
 *
 * The engine never includes ruby.h; neither does this file.
 */
#ifndef KINO_LOG_H
#define KINO_LOG_H

#include <stddef.h>
#include <stdint.h>

#define KINO_LOG_OFF 0     /* no sink: the access log is off */
#define KINO_LOG_STDOUT 1  /* fd 1 */
#define KINO_LOG_STDERR 2  /* fd 2 */

/* Longest record kept whole; a longer write is cut at line ends (a
 * single longer line is broken into several lines). */
#ifndef KINO_LOG_MAX_RECORD
#define KINO_LOG_MAX_RECORD 32768
#endif

/* Levels of Kino's own messages: info goes to stdout, the rest to stderr. */
#define KINO_LOG_INFO 0
#define KINO_LOG_WARN 1
#define KINO_LOG_ERROR 2

/* Access log formats. */
#define KINO_LOG_TEXT 0
#define KINO_LOG_TEXT_COLOR 1  /* text, tinted by status class (a terminal) */
#define KINO_LOG_JSON 2

/* Start the flusher thread (idempotent, thread-safe). Also registers the
 * fork handlers and an atexit drain. Returns 0, or -1 when no thread
 * could be started (lines are then queued until the ring is full). */
int kino_log_start(void);

/* Write what is queued, then end the flusher thread (kino_log_start
 * starts it again). For programs that want every thread joined at exit
 * (leak checkers); a process may just exit instead. */
void kino_log_stop(void);

/* Open (create, append to) the file at path, or stdout when path is NULL,
 * as a new sink. Returns its id (> 0), or -1 with a message in err. Every
 * call makes a new sink, even for the same path: each can be closed on
 * its own. */
int kino_log_open(const char *path, char *err, size_t errlen);

/* Write what is queued for sink, then close it: later writes to it are
 * ignored (and not counted as drops). Stdout and stderr themselves
 * cannot be closed. */
void kino_log_close(int sink);

/* Reopen a file sink by its path (logrotate moved the file away): lines
 * from now on go to a new file at that path. The fd number stays the
 * same (dup2), so nothing races with the flusher. 0 or -1 (errno). */
int kino_log_reopen(int sink);

/* Reopen every open file sink; returns how many were reopened. */
int kino_log_reopen_all(void);

/* Queue n bytes for sink as one record; a newline is added when the
 * bytes do not end with one. Never blocks, locks or calls the kernel.
 * Returns 0, or -1 when the line was dropped (ring full: counted) or the
 * sink is closed or unknown (not counted). */
int kino_log_write(int sink, const char *p, size_t n);

/* One of Kino's own messages: every line of msg[0..n) becomes
 * "kino[pid] source: line", info on stdout, warn and error on stderr
 * (see kino_log_route). Same guarantees as kino_log_write. */
int kino_log_message(int level, const char *source, const char *msg, size_t n);

/* printf-style kino_log_message (formats into a stack buffer). */
int kino_log_messagef(int level, const char *source, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Send Kino's own messages to other sinks: info to out, warn and error to
 * err (KINO_LOG_STDOUT and KINO_LOG_STDERR by default). Tests use it to
 * capture them in a file. */
void kino_log_route(int out, int err);

/* Rate limit for repeated notes: returns 1 when a note of kind key
 * (0 .. KINO_LOG_NOTE_KINDS-1) may be written now (at most one per kind
 * per second), with *held set to the notes of that kind held back since
 * the last one written; 0 (and the note counts as held) otherwise. */
#define KINO_LOG_NOTE_KINDS 16
int kino_log_note_due(int key, uint64_t *held);

/* Wait until every line queued before the call is written (or dropped),
 * at most timeout seconds. Returns 0 when all were, -1 on timeout. */
int kino_log_flush(double timeout);

/* Lines dropped because the ring was full, or because their destination
 * failed (a write error, a pipe that stayed full). */
uint64_t kino_log_dropped(void);

/* The pid in message prefixes (cached: no syscall per line). */
int kino_log_pid(void);

/* One access log line's facts. Spans need not be NUL-terminated. */
typedef struct kino_log_request {
    const char *peer;          /* client address, NUL-terminated */
    const char *method;        /* NULL or n == 0: "-" */
    size_t method_n;
    const char *target;        /* request-target as sent; NULL: "-" */
    size_t target_n;
    int minor;                 /* HTTP/1.<minor>; -1 when unknown */
    int status;                /* 0: unknown (a full hijack), "-" or null */
    uint64_t bytes;            /* response bytes sent */
    int64_t duration_us;       /* head complete to response done */
    const char *request_id;    /* X-Request-Id, or NULL */
    size_t request_id_n;
} kino_log_request;

/* Format one access log line (with its newline) into buf; returns its
 * length (at most cap; long fields are cut to fit). */
size_t kino_log_format_request(char *buf, size_t cap, int format, const kino_log_request *r);

/* Format and queue one access log line for sink. */
int kino_log_request_line(int sink, int format, const kino_log_request *r);

#endif /* KINO_LOG_H */
