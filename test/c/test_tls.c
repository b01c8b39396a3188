/*
 * test_tls.c -- the engine over HTTPS, from plain C: a key and a
 * self-signed certificate made in memory, a server given them as PEM
 * text, and OpenSSL clients on real sockets. Run under `make valgrind`
 * and `make test-c SANITIZE=1` too, so the TLS paths (handshake on the
 * I/O thread, reads and writes from workers, the hand-off of unsent
 * bytes, the file fallback) are checked for leaks and bad accesses.
 */
#ifdef KINO_TLS
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static kino_server *tsrv;
static char tls_file[64];
static const size_t tls_file_size = 300000;

/* The app: "/file" sends tls_file with kino_resp_sendfile; anything
 * else echoes method, path and body length, and says whether the
 * connection is HTTPS. */
static void *tls_worker(void *arg) {
    kino_waiter *w = kino_waiter_new(tsrv, 0);
    kino_conn *c;
    (void)arg;
    while ((c = kino_take(tsrv, w, 1)) != NULL) {
        do {
            const kino_head *h = kino_conn_head(c);
            char body[256], sink[8192];
            size_t total = 0;
            int file = h->path.n == 5 && memcmp(h->path.p, "/file", 5) == 0;
            int n = snprintf(body, sizeof body, "%.*s %.*s tls=%d ", (int)h->method.n, h->method.p,
                             (int)h->path.n, h->path.p, kino_conn_tls(c));
            for (;;) {
                long r = kino_body_read(c, w, sink, sizeof sink);
                if (r > 0) total += (size_t)r;
                else if (r == KINO_AGAIN && kino_wait(c, w, KINO_WAIT_READ) == KINO_OK) continue;
                else break;
            }
            if (file) {
                int fd = open(tls_file, O_RDONLY);
                uint64_t off = 0, left = tls_file_size;
                int r = kino_resp_begin(c, w, 200);
                if (r == KINO_OK) r = kino_resp_end_head(c, w, KINO_BODY_LENGTH, left);
                while (r == KINO_OK || r == KINO_AGAIN) {
                    r = kino_resp_sendfile(c, w, fd, &off, &left);
                    if (r == KINO_OK) break;
                    if (r == KINO_AGAIN && kino_wait(c, w, KINO_WAIT_WRITE) != KINO_OK) break;
                }
                if (r == KINO_OK) r = kino_resp_end(c, w);
                while (r == KINO_AGAIN && kino_wait(c, w, KINO_WAIT_WRITE) == KINO_OK) r = kino_resp_flush(c, w);
                close(fd);
            } else {
                n += snprintf(body + n, sizeof body - (size_t)n, "%zu", total);
                kino_respond_simple(c, w, 200, "text/plain", body, (size_t)n);
            }
        } while ((c = kino_next(c, w)) != NULL);
    }
    kino_waiter_free(w);
    return NULL;
}

/* A P-256 key and a self-signed certificate for localhost, as PEM. */
static int make_cert(char **cert, char **key) {
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    int ok = 0;
    if (pk && x && cb && kb) {
        X509_NAME *name = X509_get_subject_name(x);
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, pk);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
        X509_set_issuer_name(x, name);
        ok = X509_sign(x, pk, EVP_sha256()) > 0 && PEM_write_bio_X509(cb, x) == 1 &&
             PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) == 1;
    }
    if (ok) {
        char *p;
        long n = BIO_get_mem_data(cb, &p);
        *cert = strndup(p, (size_t)n);
        n = BIO_get_mem_data(kb, &p);
        *key = strndup(p, (size_t)n);
    }
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok;
}

static SSL *tls_connect(SSL_CTX *ctx) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kino_server_port(tsrv))};
    struct timeval tv = {10, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void tls_disconnect(SSL *ssl) {
    if (!ssl) return;
    int fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

static void tls_send(SSL *ssl, const char *s, size_t n) {
    while (n > 0) {
        int w = SSL_write(ssl, s, (int)(n > INT_MAX ? INT_MAX : n));
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void tls_sends(SSL *ssl, const char *s) { tls_send(ssl, s, strlen(s)); }

/* Read until `responses` Content-Length responses are complete, EOF or
 * the 5 s timeout; returns the bytes read. */
static size_t tls_read(SSL *ssl, char *buf, size_t cap, int responses) {
    size_t len = 0;
    for (;;) {
        if (srv_complete(buf, len) >= responses || len + 1 >= cap) return len;
        int n = SSL_read(ssl, buf + len, (int)(cap - len - 1));
        if (n <= 0) return len;
        len += (size_t)n;
        buf[len] = 0;
    }
}

static void test_tls_settings(const char *cert, const char *key) {
    char err[512];
    kino_tls_options t = {.cert = cert, .key = key};
    kino_tls_ctx *x = kino_tls_ctx_new(&t, 0, err, sizeof err);
    CHECK(x != NULL);
    kino_tls_ctx_free(x);

    t.cert = "/nonexistent/cert.pem";
    CHECK(kino_tls_ctx_new(&t, 0, err, sizeof err) == NULL && strstr(err, "TLS: cannot read the certificate file /nonexistent/cert.pem"));
    t.cert = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    CHECK(kino_tls_ctx_new(&t, 0, err, sizeof err) == NULL && strstr(err, "no usable PEM certificate in (inline PEM)"));
    char *other_cert = NULL, *other_key = NULL;
    CHECK(make_cert(&other_cert, &other_key));
    t.cert = cert;
    t.key = other_key;
    CHECKF(kino_tls_ctx_new(&t, 0, err, sizeof err) == NULL && strstr(err, "does not match the certificate"), "%s", err);
    t.key = key;
    t.ciphers = "NOPE";
    CHECK(kino_tls_ctx_new(&t, 0, err, sizeof err) == NULL && strstr(err, "ciphers \"NOPE\""));
    t.ciphers = NULL;
    t.verify = KINO_TLS_VERIFY_PEER;
    CHECK(kino_tls_ctx_new(&t, 0, err, sizeof err) == NULL && strstr(err, "verify :peer needs ca"));
    free(other_cert);
    free(other_key);
}

static void test_tls(void) {
    char err[512];
    static char buf[1 << 19];
    char *cert = NULL, *key = NULL;
    kino_options o;
    pthread_t workers[2];
    size_t n;

    CHECK(kino_tls_library() != NULL);
    CHECK(make_cert(&cert, &key));
    if (!cert) return;
    test_tls_settings(cert, key);

    snprintf(tls_file, sizeof tls_file, "/tmp/kino-tls-test-XXXXXX");
    int ffd = mkstemp(tls_file);
    for (size_t i = 0; i < tls_file_size; i++) buf[i] = (char)('a' + i % 26);
    CHECK(ffd >= 0 && write(ffd, buf, tls_file_size) == (ssize_t)tls_file_size);
    close(ffd);

    kino_tls_options t = {.cert = cert, .key = key};
    kino_options_init(&o);
    o.tls = &t;
    o.header_timeout = 3; /* a handshake under valgrind on a loaded machine
                             can take over a second */
    o.http2 = 0; /* ALPN then offers http/1.1 alone, even to an h2 client */
    tsrv = kino_server_new(&o, err, sizeof err);
    CHECKF(tsrv != NULL, "server_new: %s", err);
    if (!tsrv) return;
    CHECK(kino_server_start(tsrv, err, sizeof err) == KINO_OK);
    for (int i = 0; i < 2; i++) pthread_create(&workers[i], NULL, tls_worker, NULL);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);

    /* a GET, then keep-alive: a POST with a body on the same connection */
    SSL *ssl = tls_connect(ctx);
    CHECK(ssl != NULL);
    if (ssl) {
        const unsigned char *proto;
        unsigned int plen;
        SSL_get0_alpn_selected(ssl, &proto, &plen);
        CHECK(plen == 8 && memcmp(proto, "http/1.1", 8) == 0);
        tls_sends(ssl, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
        n = tls_read(ssl, buf, sizeof buf, 1);
        CHECKF(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(buf, "GET /one tls=1 0"), "%.*s", (int)n, buf);
        static char big[200000];
        memset(big, 'b', sizeof big);
        snprintf(buf, sizeof buf, "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", sizeof big);
        tls_send(ssl, buf, strlen(buf));
        tls_send(ssl, big, sizeof big);
        n = tls_read(ssl, buf, sizeof buf, 1);
        CHECKF(strstr(buf, "POST /two tls=1 200000"), "%.*s", (int)n, buf);

        /* pipelined, with a chunked body in between */
        const char *pipe3 = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        tls_send(ssl, pipe3, strlen(pipe3));
        n = tls_read(ssl, buf, sizeof buf, 3);
        char *a = strstr(buf, "GET /a "), *b = strstr(buf, "POST /b tls=1 5"), *c = strstr(buf, "GET /c ");
        CHECKF(a && b && c && a < b && b < c, "pipelined: %.*s", (int)n, buf);

        /* a file body: read + SSL_write (no kTLS on this kernel), larger
         * than the socket buffer, so part of it waits for the client */
        tls_sends(ssl, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n");
        struct timespec pause = {0, 100000000};
        nanosleep(&pause, NULL);
        n = tls_read(ssl, buf, sizeof buf, 1);
        char *body = strstr(buf, "\r\n\r\n");
        CHECKF(body && n - (size_t)(body + 4 - buf) == tls_file_size && body[4] == 'a' &&
                   buf[n - 1] == (char)('a' + (tls_file_size - 1) % 26),
               "file: %zu bytes", n);
        tls_disconnect(ssl);
    }

    /* plain HTTP on the TLS port: a plain 400 and a close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)kino_server_port(tsrv))};
    struct timeval tv = {10, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, MSG_NOSIGNAL);
    ssize_t got = recv(fd, buf, sizeof buf - 1, MSG_WAITALL);
    CHECKF(got > 0 && strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "plain: %zd", got);
    close(fd);

    /* garbage after a record header: the handshake fails, the connection
     * closes; a partial ClientHello waits for header_timeout (3 s) */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    send(fd, "\x16\x03\x01\x00\x10garbagegarbage!!", 21, MSG_NOSIGNAL);
    while ((got = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    CHECK(got == 0 || errno == ECONNRESET);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    send(fd, "\x16\x03\x01\x02\x00\x01", 6, MSG_NOSIGNAL);
    int64_t t0 = mono_ms();
    while ((got = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    CHECKF(got == 0 && mono_ms() - t0 < 9000, "partial hello closed after %lld ms", (long long)(mono_ms() - t0));
    close(fd);

    /* the server still serves, and every connection is gone */
    ssl = tls_connect(ctx);
    CHECK(ssl != NULL);
    if (ssl) {
        tls_sends(ssl, "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        n = tls_read(ssl, buf, sizeof buf, 1);
        CHECK(strstr(buf, "GET /last tls=1") != NULL);
        tls_disconnect(ssl);
    }
    for (int i = 0; i < 200 && kino_server_outstanding(tsrv) > 0; i++) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    CHECK(kino_server_outstanding(tsrv) == 0);

    SSL_CTX_free(ctx);
    kino_server_drain(tsrv);
    kino_server_stop(tsrv);
    for (int i = 0; i < 2; i++) pthread_join(workers[i], NULL);
    kino_server_free(tsrv);
    unlink(tls_file);
    free(cert);
    free(key);
}
#else
static void test_tls(void) {
    char err[256];
    kino_tls_options t = {.cert = "c.pem", .key = "k.pem"};
    kino_options o;
    kino_options_init(&o);
    o.tls = &t;
    CHECK(kino_tls_library() == NULL);
    CHECK(kino_server_new(&o, err, sizeof err) == NULL && strstr(err, "built without it"));
}
#endif
