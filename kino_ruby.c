/*
 * kino_ruby.c -- the Ruby binding of the Kino engine.
 *
 * The only file that includes ruby.h. It turns engine requests into Rack
 * env Hashes, calls the app, and writes the app's response through the
 * engine's response writer. Sections:
 *
 *   1. strings      frozen env keys and common values, built once
 *   2. servers      the table that lets workers in any ractor find a server
 *   3. waiting      every blocking call, made without the GVL
 *   4. rack.input   the streaming request-body reader
 *   5. env          building the Rack env from a parsed head
 *   6. response     status, headers and body through the engine writer
 *   7. worker       the serve loop shared by threads and ractors
 *   8. Kino.sleep   and the rest of Kino::Native
 *   9. log          the log sink (kino_log.c) for Kino::Log and Kino::Logger
 *
 * GVL rules (doc/architecture.md, section 5, says why): a worker takes a queued request, reads
 * buffered body bytes and writes to the socket with the GVL held (every
 * engine call it makes that way is non-blocking); it releases the GVL
 * only to wait -- for a request, for body bytes, for room in the socket
 * -- and every such wait has an unblocking function, so Thread#kill,
 * shutdown and process exit never hang on it.
 *
 * Every VALUE kept in a C global is frozen and shareable, made in the
 * main ractor at Init_kino, so worker ractors may use them all.
 */
#include <ruby.h>
#include <ruby/encoding.h>
#include <ruby/ractor.h>
#include <ruby/thread.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kino.h"
#include "kino_log.h"

static VALUE mKino, mNative, cInput, cNullInput, cWorker, cStream, cEarlyHints, cHijack;
static VALUE eError, eClientDisconnected, eInputError, eResponseError;
static VALUE null_input;
static ID id_trailers, id_call, id_each, id_to_ary, id_close, id_report, id_to_i, id_to_path, id_read, id_to_str,
    id_socket;

/* ================================================================== */
/* 1. Strings                                                         */
/* ================================================================== */

/* Env keys and values that never change: frozen, interned, shareable. */
static VALUE K_REQUEST_METHOD, K_SCRIPT_NAME, K_PATH_INFO, K_QUERY_STRING, K_SERVER_NAME,
    K_SERVER_PORT, K_SERVER_PROTOCOL, K_REMOTE_ADDR, K_REMOTE_PORT, K_CONTENT_TYPE, K_CONTENT_LENGTH,
    K_SERVER_SOFTWARE, K_RACK_INPUT, K_RACK_ERRORS, K_RACK_URL_SCHEME, K_RACK_MULTITHREAD,
    K_RACK_MULTIPROCESS, K_RACK_RUN_ONCE, K_RACK_RESPONSE_FINISHED, K_RACK_HIJACKP,
    K_RACK_HIJACK, K_RACK_HIJACK_IO, K_RACK_EARLY_HINTS, K_HTTPS, K_SSL_CLIENT_CERT;
static VALUE S_EMPTY, S_HTTP, S_HTTP10, S_HTTP11, S_HTTP2, S_PORT80, S_SOFTWARE, S_HTTPS, S_ON, S_PORT443;

/* Methods and request headers common enough to deserve a prebuilt
 * string; everything else is built per request. */
static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE",
                                      "PATCH", "OPTIONS", "TRACE", NULL};
static VALUE method_strs[8];

static const char *const common_headers[] = {
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "accept-charset",
    "connection", "cookie", "referer", "cache-control", "pragma", "origin", "authorization",
    "if-none-match", "if-modified-since", "if-match", "range", "upgrade",
    "upgrade-insecure-requests", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-real-ip", "x-request-id", "x-requested-with", "x-csrf-token", "dnt", "te", "via",
    "forwarded", "keep-alive", "expect", "priority", "sec-fetch-dest", "sec-fetch-mode",
    "sec-fetch-site", "sec-fetch-user", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
    NULL};
#define N_COMMON (sizeof common_headers / sizeof *common_headers - 1)
static VALUE common_keys[N_COMMON];
static size_t common_len[N_COMMON];
_Static_assert(N_COMMON <= 64, "build_env keeps one bit per common header");

static VALUE frozen(const char *s) {
    VALUE v = rb_interned_str_cstr(s);
    rb_gc_register_mark_object(v);
    return v;
}

/* "accept-encoding" -> "HTTP_ACCEPT_ENCODING" into out (room for n+5). */
static void header_key_bytes(const char *name, size_t n, char *out) {
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        out[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : (char)c;
    }
}

static void init_strings(void) {
    K_REQUEST_METHOD = frozen("REQUEST_METHOD");
    K_SCRIPT_NAME = frozen("SCRIPT_NAME");
    K_PATH_INFO = frozen("PATH_INFO");
    K_QUERY_STRING = frozen("QUERY_STRING");
    K_SERVER_NAME = frozen("SERVER_NAME");
    K_SERVER_PORT = frozen("SERVER_PORT");
    K_SERVER_PROTOCOL = frozen("SERVER_PROTOCOL");
    K_REMOTE_ADDR = frozen("REMOTE_ADDR");
    K_REMOTE_PORT = frozen("REMOTE_PORT");
    K_CONTENT_TYPE = frozen("CONTENT_TYPE");
    K_CONTENT_LENGTH = frozen("CONTENT_LENGTH");
    K_SERVER_SOFTWARE = frozen("SERVER_SOFTWARE");
    K_RACK_INPUT = frozen("rack.input");
    K_RACK_ERRORS = frozen("rack.errors");
    K_RACK_URL_SCHEME = frozen("rack.url_scheme");
    K_RACK_MULTITHREAD = frozen("rack.multithread");
    K_RACK_MULTIPROCESS = frozen("rack.multiprocess");
    K_RACK_RUN_ONCE = frozen("rack.run_once");
    K_RACK_RESPONSE_FINISHED = frozen("rack.response_finished");
    K_RACK_HIJACKP = frozen("rack.hijack?");
    K_RACK_HIJACK = frozen("rack.hijack");
    K_RACK_HIJACK_IO = frozen("rack.hijack_io");
    K_RACK_EARLY_HINTS = frozen("rack.early_hints");
    S_EMPTY = frozen("");
    S_HTTP = frozen("http");
    S_HTTP10 = frozen("HTTP/1.0");
    S_HTTP11 = frozen("HTTP/1.1");
    S_HTTP2 = frozen("HTTP/2");
    S_PORT80 = frozen("80");
    K_HTTPS = frozen("HTTPS");
    K_SSL_CLIENT_CERT = frozen("SSL_CLIENT_CERT");
    S_HTTPS = frozen("https");
    S_ON = frozen("on");
    S_PORT443 = frozen("443");
    S_SOFTWARE = frozen("Kino/" KINO_VERSION);
    for (int i = 0; methods[i]; i++) method_strs[i] = frozen(methods[i]);
    for (size_t i = 0; i < N_COMMON; i++) {
        char key[64];
        size_t n = common_len[i] = strlen(common_headers[i]);
        header_key_bytes(common_headers[i], n, key);
        key[n + 5] = 0;
        common_keys[i] = frozen(key);
    }
}

/* ================================================================== */
/* 2. Servers                                                         */
/* ================================================================== */

/* Workers in any ractor reach a server by its small integer id: only
 * integers cross ractor boundaries. A slot stays valid while workers
 * are inside it (refs) and until it is freed. */
#define MAX_SERVERS 1024
static struct slot {
    kino_server *s;
    int refs;
    char server_name[64]; /* SERVER_NAME for requests without a Host */
} servers[MAX_SERVERS];
static pthread_mutex_t servers_mu = PTHREAD_MUTEX_INITIALIZER;

static int slot_of(VALUE id) {
    long i = NUM2LONG(id);
    if (i < 1 || i >= MAX_SERVERS) rb_raise(rb_eArgError, "bad Kino server id %ld", i);
    return (int)i;
}

/* The live server with this id (raises when there is none). */
static kino_server *server_of(VALUE id) {
    int i = slot_of(id);
    pthread_mutex_lock(&servers_mu);
    kino_server *s = servers[i].s;
    pthread_mutex_unlock(&servers_mu);
    if (!s) rb_raise(eError, "Kino server %d is not running", i);
    return s;
}

/* ================================================================== */
/* 3. Waiting                                                         */
/* ================================================================== */

/* A frozen string remembered by its bytes. Requests on keep-alive
 * connections repeat the same peer and Host, so those env values are
 * reused instead of allocated each time. */
typedef struct memo {
    char bytes[64];
    size_t len;
    VALUE str;
} memo;

/* The workers that share one GVL: the threads of one ractor (all of
 * them in :threaded mode, which runs in the main ractor). busy counts
 * those holding a request; only the thread holding the GVL touches it. */
typedef struct gvl_share {
    int busy;
} gvl_share;

static rb_ractor_local_key_t gvl_share_key;
static void gvl_share_free(void *p) { free(p); }
static const struct rb_ractor_local_storage_type gvl_share_type = {NULL, gvl_share_free};

/* This ractor's gvl_share, made on first use. */
static gvl_share *gvl_share_here(void) {
    gvl_share *g = rb_ractor_local_storage_ptr(gvl_share_key);
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g) rb_memerror();
        rb_ractor_local_storage_ptr_set(gvl_share_key, g);
    }
    return g;
}

typedef struct worker {
    kino_server *s;
    int sid;
    kino_waiter *w;
    gvl_share *share;    /* this worker's ractor */
    int busy;            /* counted in share->busy */
    kino_conn *c;        /* the request being served, or NULL */
    uint64_t gen;        /* counts requests: stale rack.input detection */
    VALUE self, app, handler, server_name;
    VALUE thread;        /* the thread running this worker's loop */
    VALUE hijack_io;     /* the socket the app took over, or nil */
    VALUE env, status, headers; /* of the current request, for reports and
                                   rack.response_finished */
    VALUE input;         /* the current request's rack.input (unwrapped) */
    VALUE template;      /* env_template(), made in this worker's ractor */
    VALUE t_peer, t_host, t_name, t_port; /* the values the template holds */
    memo peer, host, name, port; /* REMOTE_ADDR, HTTP_HOST, SERVER_NAME, SERVER_PORT */
    int rport;           /* the client port rport_str spells */
    VALUE rport_str;     /* REMOTE_PORT of the worker's last request */
} worker;

static void ubf_waiter(void *w) { kino_waiter_interrupt(w); }

struct ready_args {
    kino_server *s;
    kino_waiter *w;
};

static void *ready_nogvl(void *p) {
    struct ready_args *a = p;
    kino_wait_ready(a->s, a->w);
    return NULL;
}

/* The next request, or NULL when the server stops. Requests are taken
 * only with the GVL held: a worker that finds the queue empty waits for
 * work without the GVL, then tries again once it holds the GVL, so a
 * request never waits in a thread that is itself waiting for the GVL
 * while another thread could serve it (FIFO under CPU-bound load). Raises
 * only while no request is taken (Thread#kill, Thread#raise, ractor exit). */
static kino_conn *take_next(worker *wk) {
    for (;;) {
        kino_conn *c = kino_take(wk->s, wk->w, 0);
        if (c) return c;
        if (kino_server_stopped(wk->s) || kino_waiter_retiring(wk->w)) return NULL;
        struct ready_args a = {wk->s, wk->w};
        kino_waiter_reset(wk->w);
        rb_thread_call_without_gvl(ready_nogvl, &a, ubf_waiter, wk->w);
    }
}

struct wait_args {
    kino_conn *c;
    kino_waiter *w;
    int events, result;
};

static void *wait_nogvl(void *p) {
    struct wait_args *a = p;
    a->result = kino_wait(a->c, a->w, a->events);
    return NULL;
}

static void raise_conn_error(worker *wk);

/* Wait until the connection can make progress, without the GVL. Raises
 * when the client is gone, on timeout, or on an interrupt (which Ruby
 * then processes: Thread#kill, Thread#raise). */
static void wait_io(worker *wk, int events) {
    struct wait_args a = {wk->c, wk->w, events, KINO_OK};
    kino_waiter_reset(wk->w);
    rb_thread_call_without_gvl(wait_nogvl, &a, ubf_waiter, wk->w);
    if (a.result != KINO_OK) {
        rb_thread_check_ints();
        raise_conn_error(wk);
    }
}

static void raise_conn_error(worker *wk) {
    const char *why = kino_conn_error(wk->c);
    if (kino_conn_refused(wk->c)) rb_raise(eInputError, "%s", why);
    rb_raise(eClientDisconnected, "%s", why);
}

/* Flush the response writer, waiting for the socket as needed. */
static void flush_all(worker *wk) {
    int r;
    while ((r = kino_resp_flush(wk->c, wk->w)) == KINO_AGAIN) wait_io(wk, KINO_WAIT_WRITE);
    if (r != KINO_OK) raise_conn_error(wk);
}

/* ================================================================== */
/* 4. rack.input                                                      */
/* ================================================================== */

/* A forward-only reader over the request body, fed from the socket as
 * the app reads; nothing is buffered beyond what `gets` needs. One per
 * request with a body; bodyless requests share the frozen null input. */
typedef struct input {
    VALUE worker;        /* keeps the worker struct alive */
    worker *wk;
    uint64_t gen;        /* valid while equal to wk->gen */
    char *pend;          /* bytes read ahead by gets */
    size_t pend_off, pend_len, pend_cap;
    int closed, eof;
} input;

static void input_mark(void *p) { rb_gc_mark(((input *)p)->worker); }
static void input_free(void *p) {
    free(((input *)p)->pend);
    xfree(p);
}
static size_t input_size(const void *p) {
    return sizeof(input) + ((const input *)p)->pend_cap;
}
static const rb_data_type_t input_type = {
    .wrap_struct_name = "Kino::Input",
    .function = {.dmark = input_mark, .dfree = input_free, .dsize = input_size},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY | RUBY_TYPED_WB_PROTECTED,
};

static input *input_get(VALUE self) {
    input *in = rb_check_typeddata(self, &input_type);
    if (in->closed) rb_raise(rb_eIOError, "rack.input is closed");
    if (!in->wk || in->wk->gen != in->gen || !in->wk->c)
        rb_raise(rb_eIOError, "rack.input read after its request ended");
    return in;
}

/* Up to n body bytes into dst without waiting: bytes already read first,
 * then the socket. Returns the count, 0 at the end of the body, or
 * KINO_AGAIN when none has arrived yet: the caller waits (wait_io, which
 * releases the GVL) and tries again. Raises when the client is gone. */
static long input_try(input *in, char *dst, size_t n) {
    worker *wk = in->wk;
    if (in->pend_len > in->pend_off) {
        size_t k = in->pend_len - in->pend_off;
        if (k > n) k = n;
        memcpy(dst, in->pend + in->pend_off, k);
        in->pend_off += k;
        return (long)k;
    }
    if (in->eof) return 0;
    long r = kino_body_read(wk->c, wk->w, dst, n);
    if (r == 0) in->eof = 1;
    if (r < 0 && r != KINO_AGAIN) raise_conn_error(wk);
    return r;
}

/* Read up to n body bytes into dst (memory Ruby never moves), waiting
 * without the GVL. Returns 0 only at the end of the body. */
static size_t input_fill(input *in, char *dst, size_t n) {
    long r;
    while ((r = input_try(in, dst, n)) == KINO_AGAIN) wait_io(in->wk, KINO_WAIT_READ);
    return (size_t)r;
}

/* Append up to want body bytes to str, received straight into its
 * buffer (no copy through a bounce buffer), which grows by doubling but
 * never past what is wanted. Its address is taken anew after every wait:
 * Ruby may move an embedded string while the GVL is released. */
static size_t input_append(input *in, VALUE str, size_t want) {
    size_t total = 0;
    while (total < want) {
        size_t need = want - total, len = (size_t)RSTRING_LEN(str);
        size_t room = rb_str_capacity(str) - len;
        if (room < need && room < 16384) {
            size_t grow = len > 16384 ? len : 16384;
            rb_str_modify_expand(str, (long)(grow < need ? grow : need));
            room = rb_str_capacity(str) - len;
        } else {
            rb_str_modify(str);
        }
        long r = input_try(in, RSTRING_PTR(str) + len, need < room ? need : room);
        if (r == KINO_AGAIN) {
            wait_io(in->wk, KINO_WAIT_READ);
            continue;
        }
        if (r == 0) break;
        rb_str_set_len(str, (long)(len + (size_t)r));
        total += (size_t)r;
    }
    return total;
}

/* rack.input.read(length = nil, buffer = nil): Rack 3 semantics. */
static VALUE input_read(int argc, VALUE *argv, VALUE self) {
    VALUE vlen = Qnil, buf = Qnil;
    input *in = input_get(self);
    rb_scan_args(argc, argv, "02", &vlen, &buf);
    size_t want = SIZE_MAX;
    if (!NIL_P(vlen)) {
        long l = NUM2LONG(vlen);
        if (l < 0) rb_raise(rb_eArgError, "negative length %ld given", l);
        want = (size_t)l;
    }
    if (NIL_P(buf)) {
        buf = rb_str_buf_new(want != SIZE_MAX && want < 65536 ? (long)want : 0);
    } else {
        StringValue(buf);
        rb_str_modify(buf);
        rb_str_set_len(buf, 0);
    }
    rb_enc_associate(buf, rb_ascii8bit_encoding());
    if (want == 0) return buf;
    size_t got = input_append(in, buf, want);
    if (got == 0 && want != SIZE_MAX) return Qnil;
    return buf;
}

/* rack.input.gets: the next line including "\n", or nil at the end. */
static VALUE input_gets(VALUE self) {
    input *in = input_get(self);
    VALUE line = rb_str_buf_new(0);
    rb_enc_associate(line, rb_ascii8bit_encoding());
    for (;;) {
        if (in->pend_off < in->pend_len) {
            char *start = in->pend + in->pend_off;
            size_t avail = in->pend_len - in->pend_off;
            char *nl = memchr(start, '\n', avail);
            size_t k = nl ? (size_t)(nl - start) + 1 : avail;
            rb_str_cat(line, start, (long)k);
            in->pend_off += k;
            if (nl) return line;
        }
        if (in->eof) break;
        if (!in->pend) {
            in->pend_cap = 16384;
            in->pend = malloc(in->pend_cap);
            if (!in->pend) rb_raise(rb_eNoMemError, "rack.input buffer");
        }
        in->pend_off = in->pend_len = 0;
        in->pend_len = input_fill(in, in->pend, in->pend_cap);
        if (!in->pend_len) break;
    }
    return RSTRING_LEN(line) ? line : Qnil;
}

static VALUE input_each(VALUE self) {
    VALUE line;
    RETURN_ENUMERATOR(self, 0, 0);
    while (!NIL_P(line = input_gets(self))) rb_yield(line);
    return self;
}

static VALUE input_close(VALUE self) {
    input *in = rb_check_typeddata(self, &input_type);
    in->closed = 1;
    return Qnil;
}

static VALUE input_new(worker *wk) {
    input *in;
    VALUE obj = TypedData_Make_Struct(cInput, input, &input_type, in);
    RB_OBJ_WRITE(obj, &in->worker, wk->self);
    in->wk = wk;
    in->gen = wk->gen;
    return obj;
}

/* The shared input of bodyless requests: frozen, so shareable. */
static VALUE null_read(int argc, VALUE *argv, VALUE self) {
    VALUE vlen = Qnil, buf = Qnil;
    (void)self;
    rb_scan_args(argc, argv, "02", &vlen, &buf);
    if (!NIL_P(vlen) && NUM2LONG(vlen) < 0) rb_raise(rb_eArgError, "negative length");
    if (!NIL_P(buf)) {
        StringValue(buf);
        rb_str_modify(buf);
        rb_str_set_len(buf, 0);
    }
    if (!NIL_P(vlen) && NUM2LONG(vlen) > 0) return Qnil;
    if (NIL_P(buf)) buf = rb_str_new(0, 0);
    return buf;
}
static VALUE null_gets(VALUE self) { (void)self; return Qnil; }
static VALUE null_each(VALUE self) {
    RETURN_ENUMERATOR(self, 0, 0);
    return self;
}
static VALUE null_close(VALUE self) { (void)self; return Qnil; }

/* A handle on the request being served: rack.early_hints and the Rack 3
 * stream are valid only while their request is (a stale one does
 * nothing, or raises IOError). */
typedef struct handle {
    VALUE worker;
    worker *wk;
    uint64_t gen;
    int read_closed, write_closed; /* streams only */
} handle;

static void handle_mark(void *p) { rb_gc_mark(((handle *)p)->worker); }
static const rb_data_type_t handle_type = {
    .wrap_struct_name = "Kino::Handle",
    .function = {.dmark = handle_mark, .dfree = RUBY_TYPED_DEFAULT_FREE},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY | RUBY_TYPED_WB_PROTECTED,
};

static VALUE handle_new(VALUE klass, worker *wk) {
    handle *hd;
    VALUE obj = TypedData_Make_Struct(klass, handle, &handle_type, hd);
    RB_OBJ_WRITE(obj, &hd->worker, wk->self);
    hd->wk = wk;
    hd->gen = wk->gen;
    return obj;
}

/* The handle's worker while its request is current, else NULL. */
static worker *handle_live(VALUE self) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    return hd->wk && hd->wk->c && hd->wk->gen == hd->gen ? hd->wk : NULL;
}

static VALUE hints_new(worker *wk) { return handle_new(cEarlyHints, wk); }

static void add_header(worker *wk, VALUE name, VALUE val);
static int header_i(VALUE key, VALUE val, VALUE arg);
static int add_field(worker *wk, VALUE name, VALUE val);
static void flush_all(worker *wk);

static VALUE flush_all_v(VALUE wk) {
    flush_all((worker *)wk);
    return Qnil;
}

/* env["rack.early_hints"].call(headers): send "103 Early Hints" now, with
 * the headers checked like a response's. Ignored on HTTP/1.0, once the
 * response has begun, after the request, and when the client is gone. */
static VALUE hints_call(VALUE self, VALUE headers) {
    worker *wk = handle_live(self);
    if (!wk || kino_resp_info_begin(wk->c, wk->w, 103) != KINO_OK) return Qnil;
    VALUE h = rb_check_hash_type(headers);
    if (NIL_P(h)) rb_raise(rb_eTypeError, "early hints must be a Hash of headers");
    rb_hash_foreach(h, header_i, (VALUE)wk);
    int r = kino_resp_info_end(wk->c, wk->w);
    if (r == KINO_AGAIN) {
        int state = 0;
        rb_protect(flush_all_v, (VALUE)wk, &state);
        if (state) {
            VALUE err = rb_errinfo();
            if (!rb_obj_is_kind_of(err, eClientDisconnected)) rb_jump_tag(state);
            rb_set_errinfo(Qnil); /* the client is gone: ignored */
        }
    }
    return Qnil;
}

static void write_string(worker *wk, VALUE s);
static void finish(worker *wk);

/* The stream a Rack 3 streaming body's call receives: read from the
 * request body, write the response body (each write reaches the client
 * before write returns, so full-duplex exchanges work). */
static handle *stream_get(VALUE self, worker **wk) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    *wk = handle_live(self);
    if (!*wk) rb_raise(rb_eIOError, "stream used after its request ended");
    return hd;
}

static VALUE stream_read(int argc, VALUE *argv, VALUE self) {
    worker *wk;
    handle *hd = stream_get(self, &wk);
    if (hd->read_closed) rb_raise(rb_eIOError, "stream closed for reading");
    return rb_funcallv(wk->input, id_read, argc, argv);
}

static VALUE stream_write(VALUE self, VALUE data) {
    worker *wk;
    handle *hd = stream_get(self, &wk);
    if (hd->write_closed) rb_raise(rb_eIOError, "stream closed for writing");
    VALUE str = rb_obj_as_string(data);
    if (RSTRING_LEN(str) > 0) {
        write_string(wk, str);
        flush_all(wk);
    }
    return LONG2NUM(RSTRING_LEN(str));
}

static VALUE stream_append(VALUE self, VALUE data) {
    stream_write(self, data);
    return self;
}

static VALUE stream_flush(VALUE self) { return self; }

static VALUE stream_close_read(VALUE self) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    hd->read_closed = 1;
    return Qnil;
}

/* Ends the response body (the final chunk); idempotent. */
static VALUE stream_close_write(VALUE self) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    worker *wk = handle_live(self);
    if (hd->write_closed) return Qnil;
    hd->write_closed = 1;
    if (wk) finish(wk);
    return Qnil;
}

static VALUE stream_close(VALUE self) {
    stream_close_read(self);
    return stream_close_write(self);
}

static VALUE stream_closed_p(VALUE self) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    return hd->read_closed && hd->write_closed ? Qtrue : Qfalse;
}

/* Rack hijack. env["rack.hijack"] is one object per worker, made with
 * its env template (no allocation per request); it acts only for the
 * request its worker's thread is serving. Taking the connection
 * (kino_hijack) removes the fd from the engine for good, so the Ruby
 * socket made for it is the only owner: when making it fails, the fd is
 * closed here. */
static VALUE hijack_new(worker *wk) { return handle_new(cHijack, wk); }

struct socket_args {
    int fd, unix_domain;
    const char *rest;
    size_t rest_len;
};

static VALUE hijack_socket(VALUE arg) {
    struct socket_args *a = (struct socket_args *)arg;
    VALUE rest = a->rest ? rb_str_new(a->rest, (long)a->rest_len) : Qnil;
    return rb_funcall(cHijack, id_socket, 3, INT2NUM(a->fd), a->unix_domain ? Qtrue : Qfalse, rest);
}

/* Take the current request's connection: a Ruby socket (Kino::Hijack
 * .socket, lib/kino/hijack.rb) whose reads return the bytes the engine
 * had read ahead first. Raises IOError when a timeout or shutdown has
 * answered the request already. */
static VALUE hijack_take(worker *wk) {
    struct socket_args a = {kino_conn_fd(wk->c), 0, NULL, 0};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int state = 0;
    if (kino_hijack(wk->c, wk->w, &a.rest, &a.rest_len) != KINO_OK)
        rb_raise(rb_eIOError, "%s", kino_conn_error(wk->c));
    if (getsockname(a.fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX) a.unix_domain = 1;
    VALUE io = rb_protect(hijack_socket, (VALUE)&a, &state);
    if (state) {
        close(a.fd);
        rb_jump_tag(state);
    }
    RB_OBJ_WRITE(wk->self, &wk->hijack_io, io);
    return io;
}

/* env["rack.hijack"].call: the connection as a socket (the same one on
 * every call), also put in env["rack.hijack_io"]. The response the app
 * then returns is ignored. */
static VALUE hijack_call(VALUE self) {
    handle *hd = rb_check_typeddata(self, &handle_type);
    worker *wk = hd->wk;
    if (!wk || !wk->c || wk->thread != rb_thread_current())
        rb_raise(rb_eIOError, "rack.hijack called outside the request it belongs to");
    if (NIL_P(wk->hijack_io)) {
        VALUE io = hijack_take(wk);
        if (RB_TYPE_P(wk->env, T_HASH) && !RB_OBJ_FROZEN(wk->env)) rb_hash_aset(wk->env, K_RACK_HIJACK_IO, io);
    }
    return wk->hijack_io;
}

/* ================================================================== */
/* 5. Env                                                             */
/* ================================================================== */

static VALUE str_span(kino_span s) { return rb_str_new(s.p, (long)s.n); }

static VALUE method_str(kino_span m) {
    for (int i = 0; methods[i]; i++)
        if (strlen(methods[i]) == m.n && memcmp(methods[i], m.p, m.n) == 0) return method_strs[i];
    return str_span(m);
}

static int ieq(const char *a, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)lower[i]) return 0;
    }
    return 1;
}

/* The env key of a request header: a prebuilt frozen string for common
 * names (*common gets its index, else -1), or a new frozen "HTTP_..."
 * string (frozen, so Hash#[]= keeps it instead of copying). Qnil for
 * names Kino drops: those holding '_' would collide with '-' names once
 * upcased (spoofing). */
static VALUE header_key(kino_span n, int *common) {
    char buf[256];
    *common = -1;
    if (memchr(n.p, '_', n.n)) return Qnil;
    if (n.n == 12 && ieq(n.p, "content-type", 12)) return K_CONTENT_TYPE;
    if (n.n == 14 && ieq(n.p, "content-length", 14)) return K_CONTENT_LENGTH;
    for (size_t i = 0; i < N_COMMON; i++)
        if (common_len[i] == n.n && ieq(n.p, common_headers[i], n.n)) {
            *common = (int)i;
            return common_keys[i];
        }
    if (n.n + 5 <= sizeof buf) {
        header_key_bytes(n.p, n.n, buf);
        return rb_obj_freeze(rb_str_new(buf, (long)n.n + 5));
    }
    VALUE k = rb_str_new(NULL, (long)n.n + 5);
    header_key_bytes(n.p, n.n, RSTRING_PTR(k));
    return rb_obj_freeze(k);
}

/* The frozen string for p[0..n): m's when the bytes match, else a new one
 * that m remembers (when it fits). */
static VALUE memo_str(worker *wk, memo *m, const char *p, size_t n) {
    if (!NIL_P(m->str) && n == m->len && memcmp(p, m->bytes, n) == 0) return m->str;
    VALUE str = rb_obj_freeze(rb_str_new(p, (long)n));
    if (n <= sizeof m->bytes) {
        memcpy(m->bytes, p, n);
        m->len = n;
        RB_OBJ_WRITE(wk->self, &m->str, str);
    }
    return str;
}

/* SERVER_NAME and SERVER_PORT from the Host value ("name", "name:port",
 * "[v6]:port"); from the listener when there is no Host. */
static void server_name_port(worker *wk, kino_conn *c, int tls, kino_span host, VALUE *name, VALUE *port) {
    const char *p = host.p, *e = host.p + host.n, *colon = NULL;
    if (host.n == 0) {
        char num[16];
        int lport = kino_conn_local_port(c);
        int n = snprintf(num, sizeof num, "%d", lport ? lport : 80); /* unix: 80 */
        *name = wk->server_name;
        *port = memo_str(wk, &wk->port, num, (size_t)n);
        return;
    }
    if (*p == '[') {
        const char *b = memchr(p, ']', host.n);
        if (b && b + 1 < e && b[1] == ':') colon = b + 1;
    } else {
        colon = memchr(p, ':', host.n);
    }
    *name = memo_str(wk, &wk->name, p, (size_t)((colon ? colon : e) - p));
    *port = colon && colon + 1 < e ? memo_str(wk, &wk->port, colon + 1, (size_t)(e - colon - 1))
                                   : tls ? S_PORT443 : S_PORT80;
}

/* The env every request starts from, one per worker (so per ractor),
 * frozen: the constant entries, the common values (GET, HTTP/1.1, no
 * query, no body), and the peer and Host of the worker's last request.
 * Dup'ing it copies the whole table at once -- no per-key hashing, no
 * growing -- so a keep-alive request only sets PATH_INFO, its
 * response_finished list and its early-hints handle. */
static VALUE hijack_new(worker *wk);

static VALUE env_template(worker *wk, int number) {
    VALUE t = rb_hash_new();
    /* rack.errors: Kino::ErrorStream, lines "kino[pid] worker-N: ..." */
    VALUE errors = rb_funcall(rb_const_get(mKino, rb_intern("ErrorStream")), rb_intern("for_worker"), 1,
                              INT2NUM(number));
    VALUE pairs[] = {
        K_REQUEST_METHOD, method_strs[0], K_SCRIPT_NAME, S_EMPTY, K_PATH_INFO, Qnil,
        K_QUERY_STRING, S_EMPTY, K_SERVER_NAME, Qnil, K_SERVER_PORT, Qnil,
        K_SERVER_PROTOCOL, S_HTTP11, K_REMOTE_ADDR, Qnil, common_keys[0] /* HTTP_HOST */, Qnil,
        K_SERVER_SOFTWARE, S_SOFTWARE, K_RACK_URL_SCHEME, S_HTTP, K_RACK_INPUT, null_input,
        K_RACK_ERRORS, errors, K_RACK_MULTITHREAD, Qtrue,
        K_RACK_MULTIPROCESS, Qfalse, K_RACK_RUN_ONCE, Qfalse, K_RACK_HIJACKP, Qtrue,
        K_RACK_HIJACK, hijack_new(wk),
        K_RACK_RESPONSE_FINISHED, Qnil, K_RACK_EARLY_HINTS, Qnil,
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i += 2) rb_hash_aset(t, pairs[i], pairs[i + 1]);
    return rb_obj_freeze(t);
}

/* Put this request's peer and Host values into the template when they
 * differ from those it holds (the values are memoized, so the same bytes
 * give the same VALUE and identity is enough). */
static void template_update(worker *wk, VALUE peer, VALUE host, VALUE name, VALUE port) {
    VALUE vals[4] = {peer, host, name, port}, *held[4] = {&wk->t_peer, &wk->t_host, &wk->t_name, &wk->t_port};
    VALUE keys[4] = {K_REMOTE_ADDR, common_keys[0], K_SERVER_NAME, K_SERVER_PORT};
    VALUE t = Qnil;
    for (int i = 0; i < 4; i++) {
        if (vals[i] == Qundef || vals[i] == *held[i]) continue;
        if (NIL_P(t)) t = rb_hash_dup(wk->template);
        rb_hash_aset(t, keys[i], vals[i]);
        RB_OBJ_WRITE(wk->self, held[i], vals[i]);
    }
    if (!NIL_P(t)) RB_OBJ_WRITE(wk->self, &wk->template, rb_obj_freeze(t));
}

/*
 * The Rack env of c's current request. Called by the worker that took c,
 * in its own ractor, with the GVL held; never blocks.
 *
 * It guarantees: every key Rack 3 requires (REQUEST_METHOD, SCRIPT_NAME
 * "", PATH_INFO, QUERY_STRING, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL,
 * rack.*), plus REMOTE_ADDR and REMOTE_PORT; one HTTP_* key per header
 * field name, repeated fields joined with ", " ("; " for Cookie), except
 * names holding '_' (dropped: upcased they would alias a '-' name) and
 * Content-Length, which is CONTENT_LENGTH as the engine parsed it;
 * HTTP_HOST only when the request has a Host (or an absolute-form
 * authority); https, HTTPS=on and no hijack on a TLS connection;
 * rack.input reading c's body (the shared null input when there is none);
 * rack.early_hints on HTTP/1.1 and HTTP/2 (not HTTP/1.0).
 *
 * Cost: a copy of the worker's frozen template (which already holds the
 * constant entries and the last request's peer and Host) and a String per
 * value that differs; nothing is interned. It reads c's head spans, valid
 * until the first body read, so it runs before the app does.
 */
static VALUE build_env(worker *wk, kino_conn *c) {
    const kino_head *h = kino_conn_head(c);
    const char *peer = kino_conn_peer(c);
    VALUE name, port, host = h->host.p ? memo_str(wk, &wk->host, h->host.p, h->host.n) : Qundef;
    uint64_t seen = 1; /* common header keys set so far, a bit per index; HTTP_HOST is
                          h->host: the Host field, or an absolute-form target's
                          authority (RFC 9112 3.2.2) */
    int tls = kino_conn_tls(c);
    server_name_port(wk, c, tls, h->host, &name, &port);
    template_update(wk, memo_str(wk, &wk->peer, peer, strlen(peer)), host, name, port);
    VALUE env = rb_hash_dup(wk->template);
    int rport = kino_conn_peer_port(c);
    if (rport != wk->rport || NIL_P(wk->rport_str)) { /* keep-alive: the same one */
        char num[8], *e = num + sizeof num, *d = e;
        unsigned v = (unsigned)rport;
        do *--d = (char)('0' + v % 10); while (v /= 10);
        RB_OBJ_WRITE(wk->self, &wk->rport_str, rb_obj_freeze(rb_str_new(d, e - d)));
        wk->rport = rport;
    }
    rb_hash_aset(env, K_REMOTE_PORT, wk->rport_str);
    VALUE method = method_str(h->method);
    if (method != method_strs[0]) rb_hash_aset(env, K_REQUEST_METHOD, method);
    rb_hash_aset(env, K_PATH_INFO, str_span(h->path));
    if (h->query.n) rb_hash_aset(env, K_QUERY_STRING, str_span(h->query));
    int h2 = kino_conn_http2(c);
    if (!h->minor) rb_hash_aset(env, K_SERVER_PROTOCOL, S_HTTP10);
    if (h2) {
        rb_hash_aset(env, K_SERVER_PROTOCOL, S_HTTP2);
        /* a stream shares its connection: no socket to hand over */
        rb_hash_aset(env, K_RACK_HIJACKP, Qfalse);
        rb_hash_delete(env, K_RACK_HIJACK);
    }
    if (host == Qundef) rb_hash_delete(env, common_keys[0]); /* no Host: no HTTP_HOST */
    if (tls) {
        size_t n = 0;
        char *pem = kino_conn_peer_cert(c, &n);
        rb_hash_aset(env, K_RACK_URL_SCHEME, S_HTTPS);
        rb_hash_aset(env, K_HTTPS, S_ON);
        if (pem) {
            VALUE cert = rb_str_new(pem, (long)n);
            free(pem);
            rb_hash_aset(env, K_SSL_CLIENT_CERT, cert);
        }
        /* the TLS session lives in the engine: no raw socket to hand over */
        rb_hash_aset(env, K_RACK_HIJACKP, Qfalse);
        rb_hash_delete(env, K_RACK_HIJACK);
    }
    /* the parsed Content-Length (the engine refuses lists and repeats) */
    if (h->content_length >= 0) {
        char len[24];
        snprintf(len, sizeof len, "%lld", (long long)h->content_length);
        rb_hash_aset(env, K_CONTENT_LENGTH, rb_str_new_cstr(len));
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        const kino_header *f = &h->headers[i];
        int common;
        VALUE key = header_key(f->name, &common), prev = Qundef;
        if (NIL_P(key) || key == K_CONTENT_LENGTH || common == 0) continue;
        /* a common key is known to be unset unless its bit is; others are looked up */
        if (common < 0 ? (prev = rb_hash_lookup2(env, key, Qundef)) == Qundef : !(seen >> common & 1)) {
            if (common >= 0) seen |= (uint64_t)1 << common;
            rb_hash_aset(env, key, str_span(f->value));
        } else { /* repeated field: one value, as RFC 9110 5.3 allows */
            if (prev == Qundef) prev = rb_hash_aref(env, key);
            int cookie = f->name.n == 6 && ieq(f->name.p, "cookie", 6);
            VALUE v = rb_str_dup(prev);
            rb_str_cat(v, cookie ? "; " : ", ", 2);
            rb_str_cat(v, f->value.p, (long)f->value.n);
            rb_hash_aset(env, key, v);
        }
    }
    VALUE input = h->chunked || h->content_length > 0 ? input_new(wk) : null_input;
    RB_OBJ_WRITE(wk->self, &wk->input, input);
    if (input != null_input) rb_hash_aset(env, K_RACK_INPUT, input);
    rb_hash_aset(env, K_RACK_RESPONSE_FINISHED, rb_ary_new());
    if (h->minor || h2) rb_hash_aset(env, K_RACK_EARLY_HINTS, hints_new(wk));
    else rb_hash_delete(env, K_RACK_EARLY_HINTS); /* no 1xx for HTTP/1.0 (nor, yet, HTTP/2) */
    return env;
}

/* ================================================================== */
/* 6. Response                                                        */
/* ================================================================== */

struct response {
    worker *wk;
    VALUE status, headers, body;
    int code;         /* the status as a number */
    int close_body;   /* body.close still owed */
    int bare;         /* a hijacked response: framing fields are not sent */
};

/* Add one header line; a value with "\n" becomes one line per part. */
static void add_header(worker *wk, VALUE name, VALUE val) {
    const char *v = RSTRING_PTR(val), *e = v + RSTRING_LEN(val);
    do {
        const char *nl = memchr(v, '\n', (size_t)(e - v));
        const char *end = nl ? nl : e;
        if (kino_resp_header(wk->c, wk->w, RSTRING_PTR(name), (size_t)RSTRING_LEN(name), v,
                             (size_t)(end - v)) != KINO_OK)
            rb_raise(eResponseError, "invalid response header %+" PRIsVALUE ": %+" PRIsVALUE
                     " (header names must be tokens; values must not hold CR, LF or NUL)",
                     name, val);
        v = nl ? nl + 1 : e;
    } while (v < e);
}

/* One field; an Array value gives one line per element. */
static int add_field(worker *wk, VALUE name, VALUE val) {
    if (RB_TYPE_P(val, T_ARRAY)) {
        for (long i = 0; i < RARRAY_LEN(val); i++) {
            VALUE v = rb_ary_entry(val, i);
            add_header(wk, name, RB_TYPE_P(v, T_STRING) ? v : rb_obj_as_string(v));
        }
    } else if (!NIL_P(val)) {
        add_header(wk, name, RB_TYPE_P(val, T_STRING) ? val : rb_obj_as_string(val));
    }
    return ST_CONTINUE;
}

static int header_i(VALUE key, VALUE val, VALUE arg) {
    worker *wk = (worker *)arg;
    VALUE name = RB_TYPE_P(key, T_STRING) ? key : rb_obj_as_string(key);
    if (RSTRING_LEN(name) > 5 && memcmp(RSTRING_PTR(name), "rack.", 5) == 0)
        return ST_CONTINUE; /* Rack's server-directed headers are not sent */
    return add_field(wk, name, val);
}

/* header_i for a response whose connection is taken over: no framing. */
static int bare_header_i(VALUE key, VALUE val, VALUE arg) {
    VALUE name = RB_TYPE_P(key, T_STRING) ? key : rb_obj_as_string(key);
    long n = RSTRING_LEN(name);
    const char *p = RSTRING_PTR(name);
    if ((n == 14 && !strncasecmp(p, "content-length", 14)) ||
        (n == 17 && !strncasecmp(p, "transfer-encoding", 17)))
        return ST_CONTINUE;
    return header_i(key, val, arg);
}

/* The status as a number: an Integer, or a String of three digits, from
 * 100 to 999 (RFC 9110 15); anything else is a malformed response. */
static int status_code(VALUE status) {
    if (FIXNUM_P(status)) {
        long v = FIX2LONG(status);
        if (v >= 100 && v <= 999) return (int)v;
    } else if (RB_TYPE_P(status, T_STRING) && RSTRING_LEN(status) == 3) {
        const char *p = RSTRING_PTR(status);
        if (p[0] >= '1' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9')
            return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    }
    rb_raise(eResponseError, "malformed response: status %+" PRIsVALUE " is not an Integer from 100 to 999",
             status);
    return 0;
}

/* Status line and headers. Returns 0 when the response must be dropped
 * (someone else answered) after sending any owed error response. */
static int write_head(worker *wk, struct response *r, int body, uint64_t length) {
    if (kino_resp_begin(wk->c, wk->w, r->code) != KINO_OK) {
        if (kino_conn_refused(wk->c)) kino_resp_error(wk->c, wk->w, 500);
        return 0;
    }
    rb_hash_foreach(r->headers, r->bare ? bare_header_i : header_i, (VALUE)wk);
    if (kino_resp_end_head(wk->c, wk->w, body, length) != KINO_OK) {
        const char *why = kino_conn_error(wk->c);
        if (strcmp(why, "no error") == 0) rb_raise(rb_eNoMemError, "response head too large");
        rb_raise(eResponseError, "malformed response: %s", why);
    }
    return 1;
}

struct head_args {
    worker *wk;
    struct response *r;
    uint64_t length;
};

static VALUE write_head_length(VALUE arg) {
    struct head_args *a = (struct head_args *)arg;
    return write_head(a->wk, a->r, KINO_BODY_LENGTH, a->length) ? Qtrue : Qfalse;
}

/* write_head for a known length, catching exceptions into *state. */
static int write_head_protected(worker *wk, struct response *r, uint64_t length, int *state) {
    struct head_args a = {wk, r, length};
    return RTEST(rb_protect(write_head_length, (VALUE)&a, state));
}

/* Bodies at least this large are written from the String itself. */
#define REF_MIN 4096

static void write_string(worker *wk, VALUE s) {
    int r = RSTRING_LEN(s) >= REF_MIN
                ? kino_resp_write_ref(wk->c, wk->w, RSTRING_PTR(s), (size_t)RSTRING_LEN(s))
                : kino_resp_write(wk->c, wk->w, RSTRING_PTR(s), (size_t)RSTRING_LEN(s));
    if (r != KINO_OK) raise_conn_error(wk);
}

static void finish(worker *wk) {
    int r = kino_resp_end(wk->c, wk->w);
    if (r == KINO_AGAIN) {
        flush_all(wk);
        return;
    }
    if (r != KINO_OK) raise_conn_error(wk);
}

/* Rack 3 trailers (body#trailers, called after each): a Hash of
 * lowercase names to String values, sent after the body -- as a trailing
 * HEADERS frame over HTTP/2, in the chunked trailer section over
 * HTTP/1.1. A response that cannot carry them (HTTP/1.0) drops them. */
static int trailer_i(VALUE name, VALUE value, VALUE arg) {
    worker *wk = (worker *)arg;
    if (!RB_TYPE_P(name, T_STRING) || !RB_TYPE_P(value, T_STRING))
        rb_raise(eResponseError, "malformed response: trailers must map Strings to Strings");
    if (kino_resp_trailer(wk->c, wk->w, RSTRING_PTR(name), (size_t)RSTRING_LEN(name), RSTRING_PTR(value),
                          (size_t)RSTRING_LEN(value)) != KINO_OK)
        rb_raise(eResponseError, "malformed response: trailer %" PRIsVALUE " is not a valid field", name);
    return ST_CONTINUE;
}

static void write_trailers(worker *wk, VALUE trailers) {
    if (NIL_P(trailers)) return;
    VALUE h = rb_check_hash_type(trailers);
    if (NIL_P(h)) rb_raise(eResponseError, "malformed response: body.trailers is not a Hash");
    rb_hash_foreach(h, trailer_i, (VALUE)wk);
}

/* Array bodies: one Content-Length response, usually one send(2). */
static void write_array(worker *wk, struct response *r, VALUE ary) {
    uint64_t total = 0;
    long n = RARRAY_LEN(ary);
    for (long i = 0; i < n; i++) {
        VALUE s = RARRAY_AREF(ary, i);
        if (!RB_TYPE_P(s, T_STRING))
            rb_raise(rb_eTypeError, "response body yielded %" PRIsVALUE ", not a String",
                     rb_obj_class(s));
        total += (uint64_t)RSTRING_LEN(s);
    }
    if (!write_head(wk, r, KINO_BODY_LENGTH, total)) return;
    for (long i = 0; i < n && i < RARRAY_LEN(ary); i++) write_string(wk, RARRAY_AREF(ary, i));
    finish(wk);
}

static VALUE each_chunk(RB_BLOCK_CALL_FUNC_ARGLIST(chunk, arg)) {
    worker *wk = (worker *)arg;
    if (!RB_TYPE_P(chunk, T_STRING))
        rb_raise(rb_eTypeError, "response body yielded %" PRIsVALUE ", not a String",
                 rb_obj_class(chunk));
    if (RSTRING_LEN(chunk) == 0) return Qnil;
    write_string(wk, chunk);
    flush_all(wk); /* each chunk reaches the client as it is yielded */
    return Qnil;
}

struct file_send {
    worker *wk;
    int fd;
    uint64_t offset, left;
};

static VALUE file_send(VALUE arg) {
    struct file_send *f = (struct file_send *)arg;
    int r;
    while ((r = kino_resp_sendfile(f->wk->c, f->wk->w, f->fd, &f->offset, &f->left)) == KINO_AGAIN)
        wait_io(f->wk, KINO_WAIT_WRITE);
    if (r != KINO_OK) raise_conn_error(f->wk);
    finish(f->wk);
    return Qnil;
}

static VALUE file_close(VALUE arg) {
    close(((struct file_send *)arg)->fd);
    return Qnil;
}

/* A body whose to_path names a regular file: Content-Length from the
 * file, bytes with sendfile(2). Returns 0 (nothing written) when to_path
 * gives no readable regular file: the caller then uses each. */
static int write_file(worker *wk, struct response *r) {
    VALUE path = rb_funcall(r->body, id_to_path, 0);
    struct stat st;
    /* a Pathname (Rails' send_file), or anything else with to_path/to_str */
    if (!RB_TYPE_P(path, T_STRING)) {
        if (!rb_respond_to(path, id_to_path) && !rb_respond_to(path, id_to_str)) return 0;
        path = rb_get_path(path);
    }
    int fd = open(StringValueCStr(path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    struct file_send f = {wk, fd, 0, (uint64_t)st.st_size};
    int state = 0;
    int sent = write_head_protected(wk, r, (uint64_t)st.st_size, &state);
    if (state) {
        close(fd);
        rb_jump_tag(state);
    }
    if (sent) rb_ensure(file_send, (VALUE)&f, file_close, (VALUE)&f);
    else close(fd);
    return 1;
}

/* A response whose connection changes hands once its head is out: a
 * partial hijack (the rack.hijack response header) or a 101 with a
 * callable body. The head goes out without framing, then `taker` gets
 * the socket; the engine never reads or writes it again. */
static void write_hijacked(worker *wk, struct response *r, VALUE taker) {
    r->bare = 1;
    if (!write_head(wk, r, KINO_BODY_HIJACK, 0)) return;
    flush_all(wk);
    rb_funcall(taker, id_call, 1, hijack_take(wk));
}

/* Writes the whole response; body.close is the caller's (ensure). */
static VALUE write_response(VALUE arg) {
    struct response *r = (struct response *)arg;
    worker *wk = r->wk;
    VALUE body = r->body;
    VALUE taker = rb_hash_lookup2(r->headers, K_RACK_HIJACK, Qnil);
    if (!NIL_P(taker)) {
        if (!rb_respond_to(taker, id_call))
            rb_raise(eResponseError, "malformed response: the rack.hijack header is not callable");
        write_hijacked(wk, r, taker);
    } else if (r->code == 101 && !RB_TYPE_P(body, T_ARRAY) && !rb_respond_to(body, id_each) &&
               rb_respond_to(body, id_call)) { /* a Streaming Body (Rack 3: each wins) */
        write_hijacked(wk, r, body); /* the new protocol on the raw socket */
    } else if (RB_TYPE_P(body, T_ARRAY)) {
        write_array(wk, r, body);
    } else if (rb_respond_to(body, id_to_ary)) {
        r->close_body = 0; /* to_ary closes the body (Rack 3 SPEC) */
        VALUE ary = rb_check_array_type(body);
        if (NIL_P(ary)) rb_raise(eResponseError, "malformed response: the body's to_ary returned nil");
        write_array(wk, r, ary);
    } else if (rb_respond_to(body, id_to_path) && write_file(wk, r)) {
        /* sent with sendfile */
    } else if (rb_respond_to(body, id_each)) {
        if (!write_head(wk, r, KINO_BODY_STREAM, 0)) return Qnil;
        rb_block_call(body, id_each, 0, NULL, each_chunk, (VALUE)wk);
        if (rb_respond_to(body, id_trailers)) write_trailers(wk, rb_funcall(body, id_trailers, 0));
        finish(wk);
    } else if (rb_respond_to(body, id_call)) { /* Rack 3 streaming body */
        if (!write_head(wk, r, KINO_BODY_STREAM, 0)) return Qnil;
        VALUE stream = handle_new(cStream, wk);
        rb_funcall(body, id_call, 1, stream);
        stream_close_write(stream); /* the body's call is the whole response */
    } else {
        rb_raise(eResponseError,
                 "malformed response: the body must respond to each, to_ary or call (got %" PRIsVALUE ")",
                 rb_obj_class(body));
    }
    return Qnil;
}

static VALUE close_body(VALUE arg) {
    struct response *r = (struct response *)arg;
    if (r->close_body && rb_respond_to(r->body, id_close)) rb_funcall(r->body, id_close, 0);
    return Qnil;
}

/* Write the app's response. A malformed one (not [status, headers,
 * body], a bad status, headers that are not a Hash, a body with neither
 * each, to_ary nor call) raises Kino::ResponseError, saying what is
 * wrong: the worker answers 500 and reports it. After a full hijack the
 * response is ignored: nothing is checked or written, and only the
 * body's close is called (middleware releases resources there). */
static void respond(worker *wk, VALUE result) {
    struct response r = {wk, Qnil, Qnil, Qnil, 0, 1, 0};
    VALUE ary = rb_check_array_type(result);
    if (!NIL_P(wk->hijack_io)) {
        if (!NIL_P(ary) && RARRAY_LEN(ary) == 3 && !RB_TYPE_P(RARRAY_AREF(ary, 2), T_ARRAY)) {
            r.body = RARRAY_AREF(ary, 2);
            close_body((VALUE)&r);
        }
        return;
    }
    if (NIL_P(ary) || RARRAY_LEN(ary) != 3)
        rb_raise(eResponseError, "malformed response: the app returned %" PRIsVALUE
                 ", not [status, headers, body]", NIL_P(ary) ? rb_obj_class(result) : rb_inspect(result));
    r.status = RARRAY_AREF(ary, 0);
    r.headers = RARRAY_AREF(ary, 1);
    r.body = RARRAY_AREF(ary, 2);
    RB_OBJ_WRITE(wk->self, &wk->status, r.status);
    RB_OBJ_WRITE(wk->self, &wk->headers, r.headers);
    r.code = status_code(r.status);
    if (!RB_TYPE_P(r.headers, T_HASH)) {
        VALUE h = rb_check_hash_type(r.headers);
        if (NIL_P(h))
            rb_raise(eResponseError, "malformed response: headers are a %" PRIsVALUE ", not a Hash",
                     rb_obj_class(r.headers));
        r.headers = h;
    }
    rb_ensure(write_response, (VALUE)&r, close_body, (VALUE)&r);
}

/* ================================================================== */
/* 7. Worker                                                          */
/* ================================================================== */

static void worker_mark(void *p) {
    worker *wk = p;
    rb_gc_mark(wk->app);
    rb_gc_mark(wk->handler);
    rb_gc_mark(wk->env);
    rb_gc_mark(wk->input);
    rb_gc_mark(wk->template);
    rb_gc_mark(wk->t_peer);
    rb_gc_mark(wk->t_host);
    rb_gc_mark(wk->t_name);
    rb_gc_mark(wk->t_port);
    rb_gc_mark(wk->peer.str);
    rb_gc_mark(wk->host.str);
    rb_gc_mark(wk->name.str);
    rb_gc_mark(wk->port.str);
    rb_gc_mark(wk->rport_str);
    rb_gc_mark(wk->status);
    rb_gc_mark(wk->headers);
    rb_gc_mark(wk->server_name);
    rb_gc_mark(wk->thread);
    rb_gc_mark(wk->hijack_io);
}
static void worker_free(void *p) {
    worker *wk = p;
    kino_waiter_free(wk->w);
    xfree(wk);
}
static const rb_data_type_t worker_type = {
    .wrap_struct_name = "Kino::Worker",
    .function = {.dmark = worker_mark, .dfree = worker_free},
    .flags = RUBY_TYPED_FREE_IMMEDIATELY | RUBY_TYPED_WB_PROTECTED,
};

static VALUE handle_request(VALUE arg) {
    worker *wk = (worker *)arg;
    VALUE env = build_env(wk, wk->c);
    RB_OBJ_WRITE(wk->self, &wk->env, env);
    respond(wk, rb_funcall(wk->app, id_call, 1, env)); /* ignored after a full hijack */
    return Qnil;
}

struct report_args {
    worker *wk;
    VALUE err;
};

static VALUE report_error(VALUE arg) {
    struct report_args *a = (struct report_args *)arg;
    return rb_funcall(a->wk->handler, id_report, 2, a->err, a->wk->env);
}

/* Report err through the handler; a failing report is dropped. */
static void report(worker *wk, VALUE err) {
    struct report_args a = {wk, err};
    int state = 0;
    rb_protect(report_error, (VALUE)&a, &state);
    if (state) rb_set_errinfo(Qnil);
}

struct finished_args {
    VALUE callback, env, status, headers, error;
};

static VALUE call_finished(VALUE arg) {
    struct finished_args *a = (struct finished_args *)arg;
    return rb_funcall(a->callback, id_call, 4, a->env, a->status, a->headers, a->error);
}

/* Run env["rack.response_finished"] in reverse order with (env, status,
 * headers, error) once the response is written and its body closed. A
 * callback that raises is reported and the others still run. */
static void response_finished(worker *wk, VALUE error) {
    if (NIL_P(wk->env)) return;
    VALUE list = rb_hash_lookup2(wk->env, K_RACK_RESPONSE_FINISHED, Qnil);
    if (!RB_TYPE_P(list, T_ARRAY)) return;
    /* status and headers are nil when the app never returned */
    for (long i = RARRAY_LEN(list) - 1; i >= 0; i--) {
        struct finished_args a = {RARRAY_AREF(list, i), wk->env, wk->status, wk->headers, error};
        int state = 0;
        rb_protect(call_finished, (VALUE)&a, &state);
        if (state) {
            VALUE err = rb_errinfo();
            rb_set_errinfo(Qnil);
            if (rb_obj_is_kind_of(err, rb_eStandardError)) report(wk, err);
        }
        if (i > RARRAY_LEN(list)) i = RARRAY_LEN(list); /* a callback shrank it */
    }
}

/* Forget the request: nothing of it stays reachable from the worker. */
static void request_done(worker *wk) {
    wk->c = NULL;
    wk->gen++;
    RB_OBJ_WRITE(wk->self, &wk->env, Qnil);
    RB_OBJ_WRITE(wk->self, &wk->status, Qnil);
    RB_OBJ_WRITE(wk->self, &wk->headers, Qnil);
    RB_OBJ_WRITE(wk->self, &wk->input, Qnil);
    RB_OBJ_WRITE(wk->self, &wk->hijack_io, Qnil);
}

/* Serve the taken request c. Any StandardError from the app (or from
 * writing its response) becomes a 500 and a report; the worker goes on.
 * Anything else (Exception, Thread#kill, throw) answers 500 too when it
 * still can, gives the connection back, and is re-raised: the worker
 * ends and its supervisor replaces it. Returns the next pipelined
 * request on the same connection, or NULL. */
static kino_conn *serve_request(worker *wk, kino_conn *c) {
    int state = 0;
    wk->c = c;
    wk->gen++;
    rb_protect(handle_request, (VALUE)wk, &state);
    if (state) {
        VALUE err = rb_errinfo();
        rb_set_errinfo(Qnil);
        int fatal = NIL_P(err) || !rb_obj_is_kind_of(err, rb_eStandardError);
        int gone = !fatal && rb_obj_is_kind_of(err, eClientDisconnected);
        /* the client's fault (bad or oversized body): answered with the
         * status owed, not reported as an app error */
        int client = !fatal && kino_conn_refused(c) && rb_obj_is_kind_of(err, eInputError);
        if (!gone) {
            kino_resp_error(c, wk->w, 500);
            /* report app errors, and Exceptions that end the worker;
             * not Thread#kill or throw (err is not an Exception then) */
            if (!client && rb_obj_is_kind_of(err, rb_eException)) report(wk, err);
        }
        response_finished(wk, rb_obj_is_kind_of(err, rb_eException) ? err : Qnil);
        if (fatal) {
            request_done(wk);
            kino_next(c, wk->w); /* closes: the response is an error */
            if (!NIL_P(err)) rb_exc_raise(err);
            rb_jump_tag(state);
        }
    } else {
        response_finished(wk, Qnil);
    }
    request_done(wk);
    return kino_next(c, wk->w);
}

static void set_busy(worker *wk, int busy) {
    wk->share->busy += busy - wk->busy;
    wk->busy = busy;
}

/* Serve until the server stops. Between requests the GVL is kept (no
 * flip per request) unless another thread sharing it holds a request:
 * that thread lost the GVL mid-request (Ruby's 100 ms time slice) or
 * waits on I/O, and without a yield here it could wait for every other
 * thread's whole time slice -- 500 ms behind five threads under CPU-bound
 * load (doc/benchmarks.md). With one thread per ractor there is never
 * anyone to yield to. */
static VALUE worker_loop(VALUE arg) {
    worker *wk = (worker *)arg;
    kino_conn *c;
    while ((c = take_next(wk)) != NULL) {
        set_busy(wk, 1);
        do c = serve_request(wk, c);
        while (c);
        set_busy(wk, 0);
        if (wk->share->busy) rb_thread_schedule(); /* may raise: no request is held */
    }
    return Qnil;
}

static VALUE worker_done(VALUE arg) {
    worker *wk = (worker *)arg;
    set_busy(wk, 0);
    kino_waiter_free(wk->w);
    wk->w = NULL;
    pthread_mutex_lock(&servers_mu);
    servers[wk->sid].refs--;
    pthread_mutex_unlock(&servers_mu);
    return Qnil;
}

/* Kino::Native.serve(server_id, app, handler, worker): the worker loop.
 * Takes requests until the server stops, then returns nil.
 * handler.report(exception, env) is called for app errors; number is the
 * worker this loop belongs to in the per-worker stats. Works the same in a plain thread and
 * in a worker ractor (app and handler must be shareable there). */
static VALUE native_serve(VALUE mod, VALUE id, VALUE app, VALUE handler, VALUE number) {
    worker *wk;
    int i = slot_of(id), n = NUM2INT(number);
    (void)mod;
    VALUE obj = TypedData_Make_Struct(cWorker, worker, &worker_type, wk);
    wk->self = obj;
    wk->sid = i;
    wk->share = gvl_share_here();
    wk->app = wk->handler = wk->env = wk->status = wk->headers = wk->server_name = wk->input = Qnil;
    wk->peer.str = wk->host.str = wk->name.str = wk->port.str = wk->rport_str = Qnil;
    wk->template = wk->t_peer = wk->t_host = wk->t_name = wk->t_port = Qnil;
    wk->thread = wk->hijack_io = Qnil;
    RB_OBJ_WRITE(obj, &wk->thread, rb_thread_current());
    RB_OBJ_WRITE(obj, &wk->template, env_template(wk, n));
    RB_OBJ_WRITE(obj, &wk->app, app);
    RB_OBJ_WRITE(obj, &wk->handler, handler);
    pthread_mutex_lock(&servers_mu);
    wk->s = servers[i].s;
    if (wk->s) servers[i].refs++;
    char name[sizeof servers[i].server_name];
    memcpy(name, servers[i].server_name, sizeof name);
    pthread_mutex_unlock(&servers_mu);
    if (!wk->s) rb_raise(eError, "Kino server %d is not running", i);
    /* each worker (and so each ractor) makes its own frozen copy */
    RB_OBJ_WRITE(obj, &wk->server_name, rb_obj_freeze(rb_str_new_cstr(name)));
    wk->w = kino_waiter_new(wk->s, n);
    if (!wk->w) {
        worker_done((VALUE)wk);
        rb_raise(eError, "cannot create a worker waiter: %s", strerror(errno));
    }
    rb_ensure(worker_loop, (VALUE)wk, worker_done, (VALUE)wk);
    RB_GC_GUARD(obj);
    return Qnil;
}

/* ================================================================== */
/* 8. Kino.sleep and the rest of Kino::Native                         */
/* ================================================================== */

struct sleep_args {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct timespec until; /* CLOCK_MONOTONIC */
    int interrupted;
};

static void *sleep_nogvl(void *p) {
    struct sleep_args *a = p;
    pthread_mutex_lock(&a->mu);
    while (!a->interrupted) {
        if (pthread_cond_timedwait(&a->cond, &a->mu, &a->until) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void ubf_sleep(void *p) {
    struct sleep_args *a = p;
    pthread_mutex_lock(&a->mu);
    a->interrupted = 1;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Kino.sleep(seconds): sleep on the OS clock with the GVL released, in
 * any ractor; Thread#kill and signals interrupt it at once. */
static VALUE native_sleep(VALUE mod, VALUE secs) {
    (void)mod;
    if (!rb_obj_is_kind_of(secs, rb_cNumeric))
        rb_raise(rb_eArgError, "Kino.sleep needs a number of seconds, got %" PRIsVALUE,
                 rb_obj_class(secs));
    double d = NUM2DBL(secs);
    if (!(d >= 0)) rb_raise(rb_eArgError, "Kino.sleep needs a non-negative duration");
    struct sleep_args a;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&a.cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&a.mu, NULL);
    clock_gettime(CLOCK_MONOTONIC, &a.until);
    a.until.tv_sec += (time_t)d;
    a.until.tv_nsec += (long)((d - (double)(time_t)d) * 1e9);
    if (a.until.tv_nsec >= 1000000000L) {
        a.until.tv_sec++;
        a.until.tv_nsec -= 1000000000L;
    }
    for (;;) {
        struct timespec now;
        a.interrupted = 0;
        rb_thread_call_without_gvl(sleep_nogvl, &a, ubf_sleep, &a);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!ts_before(&now, &a.until)) break;
        /* interrupted early: Ruby ran (or raised for) the interrupt;
         * sleep the rest */
    }
    pthread_cond_destroy(&a.cond);
    pthread_mutex_destroy(&a.mu);
    return Qnil;
}

static double opt_double(VALUE h, const char *k, double def) {
    VALUE v = rb_hash_lookup2(h, ID2SYM(rb_intern(k)), Qundef);
    return v == Qundef || NIL_P(v) ? def : NUM2DBL(v);
}

static long opt_long(VALUE h, const char *k, long def) {
    VALUE v = rb_hash_lookup2(h, ID2SYM(rb_intern(k)), Qundef);
    return v == Qundef || NIL_P(v) ? def : NUM2LONG(v);
}

#define MAX_LISTEN 64

/* The :listen option, an Array of Hashes (host:, port: | path: | fd:,
 * tls:, proxy_protocol:), into spec; returns the count. The Strings stay
 * referenced by opts while the server is made. */
static int listen_specs(VALUE opts, kino_listen *spec) {
    VALUE list = rb_hash_lookup2(opts, ID2SYM(rb_intern("listen")), Qnil);
    if (NIL_P(list)) return 0;
    Check_Type(list, T_ARRAY);
    long n = RARRAY_LEN(list);
    if (n > MAX_LISTEN) rb_raise(eError, "too many listeners (%ld; at most %d)", n, MAX_LISTEN);
    for (long i = 0; i < n; i++) {
        VALUE h = rb_ary_entry(list, i);
        Check_Type(h, T_HASH);
        VALUE host = rb_hash_lookup2(h, ID2SYM(rb_intern("host")), Qnil);
        VALUE path = rb_hash_lookup2(h, ID2SYM(rb_intern("path")), Qnil);
        kino_listen *l = &spec[i];
        memset(l, 0, sizeof *l);
        l->host = NIL_P(host) ? NULL : StringValueCStr(host);
        l->path = NIL_P(path) ? NULL : StringValueCStr(path);
        l->port = (int)opt_long(h, "port", 0);
        l->fd = (int)opt_long(h, "fd", -1);
        if (RTEST(rb_hash_lookup2(h, ID2SYM(rb_intern("tls")), Qfalse))) l->flags |= KINO_LISTEN_TLS;
        if (RTEST(rb_hash_lookup2(h, ID2SYM(rb_intern("proxy_protocol")), Qfalse)))
            l->flags |= KINO_LISTEN_PROXY;
    }
    return (int)n;
}

static const char *opt_str(VALUE h, const char *k) {
    VALUE v = rb_hash_lookup2(h, ID2SYM(rb_intern(k)), Qnil);
    return NIL_P(v) ? NULL : StringValueCStr(v);
}

/* Kino::Native.server_new(options_hash) -> id: binds and listens. The
 * options are validated by Kino::Server; unknown keys are ignored. */
static VALUE native_server_new(VALUE mod, VALUE opts) {
    kino_options o;
    kino_listen spec[MAX_LISTEN];
    char err[1024] = "";
    (void)mod;
    Check_Type(opts, T_HASH);
    kino_options_init(&o);
    o.nlisten = listen_specs(opts, spec);
    o.listen = spec;
    VALUE bind = rb_hash_lookup2(opts, ID2SYM(rb_intern("bind")), Qnil);
    if (!NIL_P(bind)) o.bind = StringValueCStr(bind);
    o.port = (int)opt_long(opts, "port", o.port);
    o.io_threads = (int)opt_long(opts, "io_threads", o.io_threads);
    o.queue_depth = (int)opt_long(opts, "queue_depth", o.queue_depth);
    o.max_connections = (int)opt_long(opts, "max_connections", o.max_connections);
    o.queue_timeout = opt_double(opts, "queue_timeout", o.queue_timeout);
    o.request_timeout = opt_double(opts, "request_timeout", o.request_timeout);
    o.header_timeout = opt_double(opts, "header_timeout", o.header_timeout);
    o.keepalive_timeout = opt_double(opts, "keepalive_timeout", o.keepalive_timeout);
    o.body_timeout = opt_double(opts, "body_timeout", o.body_timeout);
    o.max_body_size = (uint64_t)opt_long(opts, "max_body_size", (long)o.max_body_size);
    /* tls: {cert:, key:, ca:, verify: 0|1, min_version: 12|13, ciphers:},
     * as Kino::Options.native spells it; the strings live in opts */
    kino_tls_options tls = {0};
    VALUE t = rb_hash_lookup2(opts, ID2SYM(rb_intern("tls")), Qnil);
    if (!NIL_P(t)) {
        Check_Type(t, T_HASH);
        tls.cert = opt_str(t, "cert");
        tls.key = opt_str(t, "key");
        tls.ca = opt_str(t, "ca");
        tls.ciphers = opt_str(t, "ciphers");
        tls.verify = (int)opt_long(t, "verify", KINO_TLS_VERIFY_NONE);
        tls.min_version = (int)opt_long(t, "min_version", 12);
        o.tls = &tls;
    }
    o.shared_listener = RTEST(rb_hash_lookup2(opts, ID2SYM(rb_intern("shared_listener")), Qfalse));
    o.http2 = RTEST(rb_hash_lookup2(opts, ID2SYM(rb_intern("http2")), o.http2 ? Qtrue : Qfalse));
    o.log_sink = (int)opt_long(opts, "log_sink", o.log_sink);
    o.log_format = (int)opt_long(opts, "log_format", o.log_format);
    o.body_buffer = (uint64_t)opt_long(opts, "body_buffer", (long)o.body_buffer);
    o.lanes = RTEST(rb_hash_lookup(opts, ID2SYM(rb_intern("lanes"))));
    o.batch = (int)opt_long(opts, "batch", o.batch);

    kino_server *s = kino_server_new(&o, err, sizeof err);
    RB_GC_GUARD(opts);
    if (!s) rb_raise(eError, "%s", err);
    /* SERVER_NAME for requests without Host: the bind address */
    char name[64];
    if (strcmp(o.bind, "0.0.0.0") == 0 || strcmp(o.bind, "::") == 0 || !*o.bind)
        snprintf(name, sizeof name, "localhost");
    else if (strchr(o.bind, ':') && o.bind[0] != '[') snprintf(name, sizeof name, "[%s]", o.bind);
    else snprintf(name, sizeof name, "%s", o.bind);
    pthread_mutex_lock(&servers_mu);
    int i;
    for (i = 1; i < MAX_SERVERS && (servers[i].s || servers[i].refs); i++) {
    }
    if (i < MAX_SERVERS) {
        servers[i].s = s;
        memcpy(servers[i].server_name, name, sizeof name);
    }
    pthread_mutex_unlock(&servers_mu);
    if (i == MAX_SERVERS) {
        kino_server_free(s);
        rb_raise(eError, "too many Kino servers in one process");
    }
    return INT2NUM(i);
}

/* Kino::Native.tls_available?: was this build compiled with TLS? */
static VALUE native_tls_available_p(VALUE mod) {
    (void)mod;
    return kino_tls_library() ? Qtrue : Qfalse;
}

/* Kino::Native.defaults -> Hash: kino_options_init's values, under the
 * names Options.native uses (nil where Ruby spells "off" as nil), so a
 * test can hold them to Kino::Options::DEFAULTS. */
static VALUE native_defaults(VALUE mod) {
    kino_options o;
    VALUE h = rb_hash_new();
    (void)mod;
    kino_options_init(&o);
#define SET(k, v) rb_hash_aset(h, ID2SYM(rb_intern(k)), v)
    SET("bind", rb_str_new_cstr(o.bind));
    SET("port", INT2NUM(o.port));
    SET("io_threads", INT2NUM(o.io_threads));
    SET("queue_depth", INT2NUM(o.queue_depth));
    SET("backlog", INT2NUM(o.backlog));
    SET("max_connections", o.max_connections ? INT2NUM(o.max_connections) : Qnil);
    SET("queue_timeout", DBL2NUM(o.queue_timeout));
    SET("request_timeout", o.request_timeout > 0 ? DBL2NUM(o.request_timeout) : Qnil);
    SET("header_timeout", DBL2NUM(o.header_timeout));
    SET("keepalive_timeout", DBL2NUM(o.keepalive_timeout));
    SET("body_timeout", DBL2NUM(o.body_timeout));
    SET("max_body_size", ULL2NUM(o.max_body_size));
    SET("body_buffer", ULL2NUM(o.body_buffer));
    SET("lanes", o.lanes ? Qtrue : Qfalse);
    SET("batch", INT2NUM(o.batch));
    SET("listen", o.nlisten ? INT2NUM(o.nlisten) : Qnil); /* none: bind and port */
    SET("tls", o.tls ? Qtrue : Qnil);                    /* none: plain HTTP */
    SET("shared_listener", o.shared_listener ? Qtrue : Qfalse); /* mode :cluster sets it */
    SET("http2", o.http2 ? Qtrue : Qfalse);
#undef SET
    return h;
}

static VALUE native_server_start(VALUE mod, VALUE id) {
    char err[256] = "";
    (void)mod;
    if (kino_server_start(server_of(id), err, sizeof err) != KINO_OK) rb_raise(eError, "%s", err);
    return Qnil;
}

static VALUE native_server_port(VALUE mod, VALUE id) {
    (void)mod;
    return INT2NUM(kino_server_port(server_of(id)));
}

/* Kino::Native.server_listeners(id) -> [{fd:, kind: :tcp | :unix, port:,
 * tls:, proxy_protocol:}], in the order they were given. */
static VALUE native_server_listeners(VALUE mod, VALUE id) {
    kino_server *s = server_of(id);
    kino_listener_info li;
    VALUE list = rb_ary_new();
    (void)mod;
    for (int i = 0; kino_server_listener(s, i, &li) == KINO_OK; i++) {
        VALUE h = rb_hash_new();
        rb_hash_aset(h, ID2SYM(rb_intern("fd")), INT2NUM(li.fd));
        rb_hash_aset(h, ID2SYM(rb_intern("kind")), ID2SYM(rb_intern(li.kind == KINO_UNIX ? "unix" : "tcp")));
        rb_hash_aset(h, ID2SYM(rb_intern("port")), INT2NUM(li.port));
        rb_hash_aset(h, ID2SYM(rb_intern("tls")), (li.flags & KINO_LISTEN_TLS) ? Qtrue : Qfalse);
        rb_hash_aset(h, ID2SYM(rb_intern("proxy_protocol")), (li.flags & KINO_LISTEN_PROXY) ? Qtrue : Qfalse);
        rb_ary_push(list, h);
    }
    return list;
}

/* Kino::Native.server_keep_listeners(id): the listening sockets outlive
 * the server (hot restart hands them to the next process). */
static VALUE native_server_keep_listeners(VALUE mod, VALUE id) {
    (void)mod;
    kino_server_keep_listeners(server_of(id));
    return Qnil;
}

static void *drain_nogvl(void *s) {
    kino_server_drain(s);
    return NULL;
}

static VALUE native_server_drain(VALUE mod, VALUE id) {
    (void)mod;
    rb_thread_call_without_gvl(drain_nogvl, server_of(id), RUBY_UBF_IO, NULL);
    return Qnil;
}

static VALUE native_server_outstanding(VALUE mod, VALUE id) {
    (void)mod;
    return LONG2NUM(kino_server_outstanding(server_of(id)));
}

static void *abort_nogvl(void *s) {
    kino_server_abort(s);
    return NULL;
}

/* Without the GVL: abort begins with a drain, which waits for the I/O
 * threads to let go of the listener. */
static VALUE native_server_abort(VALUE mod, VALUE id) {
    (void)mod;
    rb_thread_call_without_gvl(abort_nogvl, server_of(id), RUBY_UBF_IO, NULL);
    return Qnil;
}

static void *stop_nogvl(void *s) {
    kino_server_stop(s);
    return NULL;
}

static VALUE native_server_stop(VALUE mod, VALUE id) {
    (void)mod;
    rb_thread_call_without_gvl(stop_nogvl, server_of(id), RUBY_UBF_IO, NULL);
    return Qnil;
}

/* Free a stopped server once no worker is inside it. Returns false (and
 * frees nothing) while workers remain. */
static VALUE native_server_free(VALUE mod, VALUE id) {
    int i = slot_of(id);
    (void)mod;
    pthread_mutex_lock(&servers_mu);
    kino_server *s = servers[i].s;
    if (!s || servers[i].refs > 0) {
        pthread_mutex_unlock(&servers_mu);
        return s ? Qfalse : Qtrue;
    }
    servers[i].s = NULL;
    pthread_mutex_unlock(&servers_mu);
    kino_server_free(s);
    return Qtrue;
}

/* Kino::Native.server_retire(id, worker, quarantine) -> Integer: worker
 * number `worker` takes no more requests; each of its serve loops returns
 * once its current request is done (kino_server_retire). */
static VALUE native_server_retire(VALUE mod, VALUE id, VALUE worker, VALUE quarantine) {
    (void)mod;
    return INT2NUM(kino_server_retire(server_of(id), NUM2INT(worker), RTEST(quarantine)));
}

/* Kino::Native.server_note_respawn(id): a worker was started again. */
static VALUE native_server_note_respawn(VALUE mod, VALUE id) {
    (void)mod;
    kino_server_note_respawn(server_of(id));
    return Qnil;
}

/* The control plane (kino_control.c) as a Ruby object, Kino::Native::Control:
 * made by control_new, freed by control_free (or by the GC). */
static void control_dfree(void *p) { kino_control_free(p); }
static const rb_data_type_t control_type = {
    "Kino::Native::Control", {NULL, control_dfree, NULL}, NULL, NULL, RUBY_TYPED_FREE_IMMEDIATELY};
static VALUE cControl;

static kino_control *control_of(VALUE obj) {
    kino_control *c = rb_check_typeddata(obj, &control_type);
    if (!c) rb_raise(eError, "the control plane is stopped");
    return c;
}

static const char *opt_cstr(VALUE h, const char *k) {
    VALUE v = rb_hash_lookup2(h, ID2SYM(rb_intern(k)), Qnil);
    return NIL_P(v) ? NULL : StringValueCStr(v);
}

/* Kino::Native.control_new(server_id, {host:, port:, path:, token:, mode:,
 * workers:, threads:, io_threads:, published:, fd:}) -> Control, listening,
 * not started. fd: an inherited listening socket to serve (hot restart). */
static VALUE native_control_new(VALUE mod, VALUE id, VALUE opts) {
    kino_control_options o = {0};
    char err[256] = "";
    (void)mod;
    Check_Type(opts, T_HASH);
    kino_server *s = server_of(id);
    o.host = opt_cstr(opts, "host");
    o.path = opt_cstr(opts, "path");
    o.token = opt_cstr(opts, "token");
    o.mode = opt_cstr(opts, "mode");
    o.port = (int)opt_long(opts, "port", 0);
    o.workers = (int)opt_long(opts, "workers", 0);
    o.threads = (int)opt_long(opts, "threads", 0);
    o.io_threads = (int)opt_long(opts, "io_threads", 0);
    o.lanes = RTEST(rb_hash_lookup2(opts, ID2SYM(rb_intern("lanes")), Qfalse));
    o.published = RTEST(rb_hash_lookup2(opts, ID2SYM(rb_intern("published")), Qfalse));
    VALUE fd = rb_hash_lookup2(opts, ID2SYM(rb_intern("fd")), Qnil);
    if (!NIL_P(fd)) o.adopt = 1, o.fd = NUM2INT(fd);
    kino_control *c = kino_control_new(s, &o, err, sizeof err);
    RB_GC_GUARD(opts);
    if (!c) rb_raise(eError, "%s", err);
    return TypedData_Wrap_Struct(cControl, &control_type, c);
}

static VALUE native_control_start(VALUE mod, VALUE obj) {
    char err[256] = "";
    (void)mod;
    if (kino_control_start(control_of(obj), err, sizeof err) != KINO_OK) rb_raise(eError, "%s", err);
    return Qnil;
}

static VALUE native_control_port(VALUE mod, VALUE obj) {
    (void)mod;
    return INT2NUM(kino_control_port(control_of(obj)));
}

/* Kino::Native.control_state(control, :booting | :running | :draining | :stopped) */
static VALUE native_control_state(VALUE mod, VALUE obj, VALUE state) {
    static const char *const names[] = {"booting", "running", "draining", "stopped"};
    (void)mod;
    ID want = SYM2ID(state);
    for (int i = 0; i < 4; i++)
        if (want == rb_intern(names[i])) {
            kino_control_set_state(control_of(obj), i);
            return Qnil;
        }
    rb_raise(rb_eArgError, "unknown control state");
}

/* The kino_stats counters Kino::Server#stats names as they are (its
 * respawns come from the pool; queue_wait is the queue_wait_ms Hash). */
#define STATS_COUNTERS(X) \
    X(accepted) X(connections) X(served) X(queued) X(in_flight) X(rejected) X(timeouts) X(errors) \
    X(hijacked) X(queue_wait_sum_ms)

/* The kino_pool_stats fields, by the names Pool#tally gives them. */
#define POOL_STATS(X) X(active_workers) X(max_workers) X(quarantined) X(quarantines) X(scale_ups) X(scale_downs)

/* A counter of a stats Hash: 0 when absent. */
static uint64_t stat_u64(VALUE h, const char *k) {
    VALUE v = rb_hash_lookup2(h, ID2SYM(rb_intern(k)), Qnil);
    return NIL_P(v) ? 0 : NUM2ULL(v);
}

/* Kino::Native.control_publish(control, stats, answered): show +stats+
 * (Kino::Server#stats' Hash, as the :cluster master gathers it) on
 * /stats and /metrics; +answered+ is the number of questions read from
 * control_question_fd so far. */
static VALUE native_control_publish(VALUE mod, VALUE obj, VALUE stats, VALUE answered) {
    (void)mod;
    Check_Type(stats, T_HASH);
    kino_control *c = control_of(obj);
    kino_stats st = {0};
#define STAT(k) st.k = stat_u64(stats, #k);
    STATS_COUNTERS(STAT)
    STAT(respawns)
#undef STAT
#define STAT(k) st.pool.k = stat_u64(stats, #k);
    POOL_STATS(STAT)
#undef STAT
    VALUE waits = rb_hash_lookup2(stats, ID2SYM(rb_intern("queue_wait_ms")), Qnil);
    for (int i = 0; i < KINO_WAIT_BUCKETS && RB_TYPE_P(waits, T_HASH); i++) {
        int64_t bound = kino_wait_bucket_ms(i);
        VALUE n = rb_hash_lookup2(waits, bound < 0 ? DBL2NUM(HUGE_VAL) : LL2NUM(bound), Qnil);
        st.queue_wait[i] = NIL_P(n) ? 0 : NUM2ULL(n);
    }
    VALUE list = rb_hash_lookup2(stats, ID2SYM(rb_intern("per_worker")), Qnil);
    long n = RB_TYPE_P(list, T_ARRAY) ? RARRAY_LEN(list) : 0;
    if (n > KINO_CONTROL_ROWS) rb_raise(rb_eArgError, "more than %d per_worker rows", KINO_CONTROL_ROWS);
    VALUE heap = 0;
    kino_control_row *rows = RB_ALLOCV_N(kino_control_row, heap, n ? n : 1);
    static const char *const states[] = {"serving", "booting", "unresponsive"};
    for (long i = 0; i < n; i++) {
        VALUE r = rb_ary_entry(list, i);
        Check_Type(r, T_HASH);
        VALUE state = rb_hash_lookup2(r, ID2SYM(rb_intern("state")), Qnil);
        rows[i] = (kino_control_row){.worker = (int)opt_long(r, "worker", 0), .pid = (int)opt_long(r, "pid", 0),
                                     .in_flight = (int)opt_long(r, "in_flight", 0),
                                     .lane = (int)opt_long(r, "lane", 0),
                                     .served = stat_u64(r, "served"), .busy_ms = stat_u64(r, "busy_ms"),
                                     .accepted = stat_u64(r, "accepted"), .connections = stat_u64(r, "connections"),
                                     .respawns = stat_u64(r, "respawns")};
        for (int j = 0; j < 3 && SYMBOL_P(state); j++)
            if (SYM2ID(state) == rb_intern(states[j])) rows[i].state = j;
    }
    int workers = (int)opt_long(stats, "workers", 0);
    int r = kino_control_publish(c, &st, workers, rows, (int)n, NUM2ULL(answered));
    RB_ALLOCV_END(heap);
    if (r != KINO_OK) rb_raise(eError, "this control plane shows the server's own numbers");
    return Qnil;
}

/* Kino::Native.server_set_pool(id, tally): the pool's numbers (Pool#tally,
 * with max_workers) for the control plane, which cannot ask Ruby. */
static VALUE native_server_set_pool(VALUE mod, VALUE id, VALUE tally) {
    (void)mod;
    Check_Type(tally, T_HASH);
    kino_pool_stats p = {0};
#define STAT(k) p.k = stat_u64(tally, #k);
    POOL_STATS(STAT)
#undef STAT
    kino_server_set_pool(server_of(id), &p);
    return Qnil;
}

/* Kino::Native.control_question_fd(control): the pipe the control thread
 * writes a byte to per question (control_publish answers). */
static VALUE native_control_question_fd(VALUE mod, VALUE obj) {
    (void)mod;
    return INT2NUM(kino_control_question_fd(control_of(obj)));
}

/* Kino::Native.control_keep_listener(control) -> fd: handed over to the
 * program a hot restart executes; control_free leaves it open. */
static VALUE native_control_keep_listener(VALUE mod, VALUE obj) {
    (void)mod;
    return INT2NUM(kino_control_keep_listener(control_of(obj)));
}

static void *control_free_nogvl(void *c) {
    kino_control_free(c);
    return NULL;
}

/* Kino::Native.control_free(control): stop answering and free (idempotent). */
static VALUE native_control_free(VALUE mod, VALUE obj) {
    kino_control *c = rb_check_typeddata(obj, &control_type);
    (void)mod;
    if (!c) return Qnil;
    DATA_PTR(obj) = NULL;
    rb_thread_call_without_gvl(control_free_nogvl, c, RUBY_UBF_IO, NULL);
    return Qnil;
}

static VALUE native_server_stats(VALUE mod, VALUE id) {
    kino_stats st;
    VALUE h = rb_hash_new();
    (void)mod;
    kino_server_stats(server_of(id), &st);
#define STAT(k) rb_hash_aset(h, ID2SYM(rb_intern(#k)), ULL2NUM(st.k));
    STATS_COUNTERS(STAT)
#undef STAT
    VALUE waits = rb_hash_new(); /* upper bound in ms (or Infinity) => requests */
    for (int i = 0; i < KINO_WAIT_BUCKETS; i++) {
        int64_t bound = kino_wait_bucket_ms(i);
        rb_hash_aset(waits, bound < 0 ? DBL2NUM(HUGE_VAL) : LL2NUM(bound), ULL2NUM(st.queue_wait[i]));
    }
    rb_hash_aset(h, ID2SYM(rb_intern("queue_wait_ms")), waits);
    /* room for every live waiter: start with 256 rows, and ask again with
     * as many as there are when there are more (waiters may come and go) */
    kino_worker_stats stack_rows[256], *rows = stack_rows;
    VALUE heap = 0;
    int cap = 256, n;
    while ((n = kino_server_workers(server_of(id), rows, cap)) > cap) {
        if (heap) RB_ALLOCV_END(heap);
        cap = n + 16;
        rows = RB_ALLOCV_N(kino_worker_stats, heap, cap);
    }
    VALUE list = rb_ary_new_capa(n);
    for (int i = 0; i < n; i++) {
        VALUE row = rb_hash_new();
        rb_hash_aset(row, ID2SYM(rb_intern("worker")), INT2NUM(rows[i].worker));
        rb_hash_aset(row, ID2SYM(rb_intern("served")), ULL2NUM(rows[i].served));
        rb_hash_aset(row, ID2SYM(rb_intern("in_flight")), INT2NUM(rows[i].in_flight));
        rb_hash_aset(row, ID2SYM(rb_intern("busy_ms")), ULL2NUM(rows[i].busy_ms));
        rb_hash_aset(row, ID2SYM(rb_intern("lane")), INT2NUM(rows[i].lane));
        rb_hash_aset(row, ID2SYM(rb_intern("request_ms")), ULL2NUM(rows[i].request_ms));
        rb_hash_aset(row, ID2SYM(rb_intern("retiring")), rows[i].retiring ? Qtrue : Qfalse);
        rb_hash_aset(row, ID2SYM(rb_intern("quarantined")), rows[i].quarantined ? Qtrue : Qfalse);
        rb_ary_push(list, row);
    }
    if (heap) RB_ALLOCV_END(heap);
    rb_hash_aset(h, ID2SYM(rb_intern("threads_detail")), list);
    return h;
}

/* ================================================================== */
/* 9. Log                                                             */
/* ================================================================== */

/* Kino::Native.log_open(path or nil) -> sink id (nil: stdout). */
static VALUE native_log_open(VALUE mod, VALUE path) {
    char err[256] = "";
    (void)mod;
    int id = kino_log_open(NIL_P(path) ? NULL : StringValueCStr(path), err, sizeof err);
    if (id < 0) rb_raise(eError, "%s", err);
    return INT2NUM(id);
}

/* Kino::Native.log_write(sink, string) -> true, or false when the line
 * was dropped (ring full) or the sink is closed. No lock, no syscall. */
static VALUE native_log_write(VALUE mod, VALUE sink, VALUE str) {
    (void)mod;
    StringValue(str);
    int r = kino_log_write(NUM2INT(sink), RSTRING_PTR(str), (size_t)RSTRING_LEN(str));
    RB_GC_GUARD(str);
    return r == 0 ? Qtrue : Qfalse;
}

/* Kino::Native.log_message(level, source, message): Kino's own lines. */
static VALUE native_log_message(VALUE mod, VALUE level, VALUE source, VALUE msg) {
    (void)mod;
    StringValue(msg);
    int r = kino_log_message(NUM2INT(level), StringValueCStr(source), RSTRING_PTR(msg),
                             (size_t)RSTRING_LEN(msg));
    RB_GC_GUARD(msg);
    return r == 0 ? Qtrue : Qfalse;
}

static VALUE native_log_close(VALUE mod, VALUE sink) {
    (void)mod;
    kino_log_close(NUM2INT(sink));
    return Qnil;
}

static VALUE native_log_reopen(VALUE mod, VALUE sink) {
    (void)mod;
    if (kino_log_reopen(NUM2INT(sink)) < 0) rb_sys_fail("reopening a log");
    return Qnil;
}

static VALUE native_log_reopen_all(VALUE mod) {
    (void)mod;
    return INT2NUM(kino_log_reopen_all());
}

struct flush_args {
    double timeout;
    int result;
};

static void *log_flush_nogvl(void *p) {
    struct flush_args *a = p;
    a->result = kino_log_flush(a->timeout);
    return NULL;
}

/* Kino::Native.log_flush(timeout) -> true when everything queued before
 * the call is written. Waits without the GVL. */
static VALUE native_log_flush(VALUE mod, VALUE timeout) {
    struct flush_args a = {NUM2DBL(timeout), -1};
    (void)mod;
    rb_thread_call_without_gvl(log_flush_nogvl, &a, RUBY_UBF_IO, NULL);
    return a.result == 0 ? Qtrue : Qfalse;
}

static VALUE native_log_dropped(VALUE mod) {
    (void)mod;
    return ULL2NUM(kino_log_dropped());
}

static VALUE native_log_route(VALUE mod, VALUE out, VALUE err) {
    (void)mod;
    kino_log_route(NUM2INT(out), NUM2INT(err));
    return Qnil;
}

static void init_log(void) {
    kino_log_start();
    rb_define_const(mNative, "LOG_STDOUT", INT2NUM(KINO_LOG_STDOUT));
    rb_define_const(mNative, "LOG_STDERR", INT2NUM(KINO_LOG_STDERR));
    rb_define_const(mNative, "LOG_TEXT", INT2NUM(KINO_LOG_TEXT));
    rb_define_const(mNative, "LOG_TEXT_COLOR", INT2NUM(KINO_LOG_TEXT_COLOR));
    rb_define_const(mNative, "LOG_JSON", INT2NUM(KINO_LOG_JSON));
    rb_define_const(mNative, "LOG_MAX_RECORD", INT2NUM(KINO_LOG_MAX_RECORD));
    rb_define_module_function(mNative, "log_open", native_log_open, 1);
    rb_define_module_function(mNative, "log_write", native_log_write, 2);
    rb_define_module_function(mNative, "log_message", native_log_message, 3);
    rb_define_module_function(mNative, "log_close", native_log_close, 1);
    rb_define_module_function(mNative, "log_reopen", native_log_reopen, 1);
    rb_define_module_function(mNative, "log_reopen_all", native_log_reopen_all, 0);
    rb_define_module_function(mNative, "log_flush", native_log_flush, 1);
    rb_define_module_function(mNative, "log_dropped", native_log_dropped, 0);
    rb_define_module_function(mNative, "log_route", native_log_route, 2);
}

void Init_kino(void) {
#ifdef HAVE_RB_EXT_RACTOR_SAFE
    rb_ext_ractor_safe(true); /* before any method is defined */
#endif
    gvl_share_key = rb_ractor_local_storage_ptr_newkey(&gvl_share_type);
    id_call = rb_intern("call");
    id_each = rb_intern("each");
    id_to_ary = rb_intern("to_ary");
    id_close = rb_intern("close");
    id_report = rb_intern("report");
    id_to_i = rb_intern("to_i");
    id_to_path = rb_intern("to_path");
    id_trailers = rb_intern("trailers");
    id_read = rb_intern("read");
    id_to_str = rb_intern("to_str");
    id_socket = rb_intern("socket");
    init_strings();

    mKino = rb_define_module("Kino");
    mNative = rb_define_module_under(mKino, "Native");
    eError = rb_define_class_under(mKino, "Error", rb_eStandardError);
    eClientDisconnected = rb_define_class_under(mKino, "ClientDisconnected", rb_eIOError);
    eInputError = rb_define_class_under(mKino, "InputError", rb_eIOError);
    eResponseError = rb_define_class_under(mKino, "ResponseError", eError);
    rb_define_const(mNative, "VERSION", rb_obj_freeze(rb_str_new_cstr(KINO_VERSION)));
    /* the TLS library compiled in ("OpenSSL 3.0.19 ..."), or nil */
    const char *tls_lib = kino_tls_library();
    rb_define_const(mNative, "TLS", tls_lib ? rb_obj_freeze(rb_str_new_cstr(tls_lib)) : Qnil);

    cWorker = rb_define_class_under(mNative, "Worker", rb_cObject);
    rb_undef_alloc_func(cWorker);

    cInput = rb_define_class_under(mKino, "Input", rb_cObject);
    rb_undef_alloc_func(cInput);
    rb_define_method(cInput, "read", input_read, -1);
    rb_define_method(cInput, "gets", input_gets, 0);
    rb_define_method(cInput, "each", input_each, 0);
    rb_define_method(cInput, "close", input_close, 0);

    cStream = rb_define_class_under(mKino, "Stream", rb_cObject);
    rb_undef_alloc_func(cStream);
    rb_define_method(cStream, "read", stream_read, -1);
    rb_define_method(cStream, "write", stream_write, 1);
    rb_define_method(cStream, "<<", stream_append, 1);
    rb_define_method(cStream, "flush", stream_flush, 0);
    rb_define_method(cStream, "close_read", stream_close_read, 0);
    rb_define_method(cStream, "close_write", stream_close_write, 0);
    rb_define_method(cStream, "close", stream_close, 0);
    rb_define_method(cStream, "closed?", stream_closed_p, 0);

    cEarlyHints = rb_define_class_under(mKino, "EarlyHints", rb_cObject);
    rb_undef_alloc_func(cEarlyHints);
    rb_define_method(cEarlyHints, "call", hints_call, 1);

    cHijack = rb_define_class_under(mKino, "Hijack", rb_cObject);
    rb_undef_alloc_func(cHijack);
    rb_define_method(cHijack, "call", hijack_call, 0);

    cNullInput = rb_define_class_under(mKino, "NullInput", rb_cObject);
    rb_define_method(cNullInput, "read", null_read, -1);
    rb_define_method(cNullInput, "gets", null_gets, 0);
    rb_define_method(cNullInput, "each", null_each, 0);
    rb_define_method(cNullInput, "close", null_close, 0);
    null_input = rb_obj_freeze(rb_obj_alloc(cNullInput));
    rb_gc_register_mark_object(null_input);
    rb_define_const(mKino, "NULL_INPUT", null_input);

    rb_define_module_function(mNative, "serve", native_serve, 4);
    rb_define_module_function(mNative, "server_new", native_server_new, 1);
    rb_define_module_function(mNative, "tls_available?", native_tls_available_p, 0);
    rb_define_module_function(mNative, "server_start", native_server_start, 1);
    rb_define_module_function(mNative, "server_port", native_server_port, 1);
    rb_define_module_function(mNative, "server_listeners", native_server_listeners, 1);
    rb_define_module_function(mNative, "server_keep_listeners", native_server_keep_listeners, 1);
    rb_define_module_function(mNative, "server_drain", native_server_drain, 1);
    rb_define_module_function(mNative, "server_outstanding", native_server_outstanding, 1);
    rb_define_module_function(mNative, "server_abort", native_server_abort, 1);
    rb_define_module_function(mNative, "server_stop", native_server_stop, 1);
    rb_define_module_function(mNative, "server_free", native_server_free, 1);
    rb_define_module_function(mNative, "server_stats", native_server_stats, 1);
    rb_define_module_function(mNative, "server_note_respawn", native_server_note_respawn, 1);
    rb_define_module_function(mNative, "server_set_pool", native_server_set_pool, 2);
    rb_define_module_function(mNative, "server_retire", native_server_retire, 3);
    cControl = rb_define_class_under(mNative, "Control", rb_cObject);
    rb_undef_alloc_func(cControl);
    rb_define_module_function(mNative, "control_new", native_control_new, 2);
    rb_define_module_function(mNative, "control_start", native_control_start, 1);
    rb_define_module_function(mNative, "control_port", native_control_port, 1);
    rb_define_module_function(mNative, "control_state", native_control_state, 2);
    rb_define_module_function(mNative, "control_free", native_control_free, 1);
    rb_define_module_function(mNative, "control_keep_listener", native_control_keep_listener, 1);
    rb_define_module_function(mNative, "control_publish", native_control_publish, 3);
    rb_define_module_function(mNative, "control_question_fd", native_control_question_fd, 1);
    rb_define_module_function(mNative, "defaults", native_defaults, 0);
    rb_define_module_function(mNative, "sleep", native_sleep, 1);
    init_log();
}
