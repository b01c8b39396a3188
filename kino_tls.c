/*
 * kino_tls.c -- HTTPS for the Kino engine, through OpenSSL. kino_tls.h
 * says how the engine uses it and who owns what; doc/tls.md says why.
 * No Ruby in here. Everything below is compiled only with -DKINO_TLS
 * (the Makefile sets it when `pkg-config openssl` finds OpenSSL; make
 * TLS=0 leaves it out), except kino_tls_library, which then says "none".
 *
 *    1. library       version, and what the build has
 *    2. loading       certificates and keys from a file or PEM text
 *    3. context       one SSL_CTX per TLS listener: versions, ciphers, ALPN
 *    4. connections   handshake, read, write, and the "more input" test
 *    5. files         to_path bodies: kTLS sendfile, or read + write
 *    6. peer          the client certificate as PEM
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "kino.h"

#ifndef KINO_TLS

const char *kino_tls_library(void) { return NULL; }

#else /* KINO_TLS */

#include "kino_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "Kino's TLS needs OpenSSL 1.1.1 or later (TLS 1.3); build with make TLS=0 without it"
#endif

/* SSL_MODE_RELEASE_BUFFERS: an idle connection gives its record buffers
 * back (doc/tls.md has the measurement behind the default). */
#ifndef KINO_TLS_RELEASE_BUFFERS
#define KINO_TLS_RELEASE_BUFFERS 1
#endif

/* ================================================================== */
/* 1. Library                                                         */
/* ================================================================== */

/* "OpenSSL 3.0.19 27 Jan 2026": the library this process runs with. */
const char *kino_tls_library(void) { return OpenSSL_version(OPENSSL_VERSION); }

/* The innermost OpenSSL error of this thread as text ("" when none),
 * and the queue cleared. */
static const char *ssl_reason(char *buf, size_t cap) {
    unsigned long e = ERR_peek_last_error();
    buf[0] = 0;
    if (e) ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* ================================================================== */
/* 2. Loading                                                         */
/* ================================================================== */

/* A value is PEM text when it holds a PEM header; otherwise a path. */
static int is_pem(const char *v) { return strstr(v, "-----BEGIN ") != NULL; }

/* What to call a value in messages: its path, or "(inline PEM)". */
static const char *name_of(const char *v) { return is_pem(v) ? "(inline PEM)" : v; }

/* A BIO over the value: the file it names, or the PEM text itself.
 * NULL with a message in err (a missing or unreadable file). */
static BIO *open_value(const char *what, const char *v, char *err, size_t errlen) {
    BIO *b;
    if (is_pem(v)) {
        b = BIO_new_mem_buf(v, -1);
        if (!b) snprintf(err, errlen, "TLS: out of memory reading the %s", what);
        return b;
    }
    errno = 0;
    b = BIO_new_file(v, "r");
    if (!b) {
        snprintf(err, errlen, "TLS: cannot read the %s file %s: %s", what, v,
                 errno ? strerror(errno) : "cannot open");
        ERR_clear_error();
    }
    return b;
}

/* End of a PEM stream after the last object: OpenSSL reports it as "no
 * start line", which is no error. */
static int pem_eof(void) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return 1;
    }
    return e == 0;
}

/* The certificate and the chain after it (leaf first, as servers send
 * them) into the context. */
static int load_cert(SSL_CTX *ctx, const char *v, char *err, size_t errlen) {
    char why[256];
    BIO *b = open_value("certificate", v, err, errlen);
    if (!b) return -1;
    X509 *leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
        snprintf(err, errlen, "TLS: no usable PEM certificate in %s (%s)", name_of(v),
                 ssl_reason(why, sizeof why));
        X509_free(leaf);
        BIO_free(b);
        return -1;
    }
    X509_free(leaf);
    X509 *ca;
    while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) { /* takes ca on success */
            X509_free(ca);
            snprintf(err, errlen, "TLS: bad chain certificate in %s (%s)", name_of(v),
                     ssl_reason(why, sizeof why));
            BIO_free(b);
            return -1;
        }
    }
    BIO_free(b);
    if (!pem_eof()) {
        snprintf(err, errlen, "TLS: bad PEM after the certificate in %s (%s)", name_of(v),
                 ssl_reason(why, sizeof why));
        return -1;
    }
    return 0;
}

/* The private key, checked against the certificate. */
static int load_key(SSL_CTX *ctx, const char *v, const char *cert, char *err, size_t errlen) {
    char why[256];
    BIO *b = open_value("key", v, err, errlen);
    if (!b) return -1;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!k) {
        snprintf(err, errlen, "TLS: no usable PEM private key in %s (%s)", name_of(v),
                 ssl_reason(why, sizeof why));
        return -1;
    }
    int used = SSL_CTX_use_PrivateKey(ctx, k) == 1; /* fails on a mismatch, too */
    EVP_PKEY_free(k);
    if (!used || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS: the key in %s does not match the certificate in %s (%s)",
                 name_of(v), name_of(cert), ssl_reason(why, sizeof why));
        return -1;
    }
    return 0;
}

/* The CAs that sign client certificates: trusted for verification and
 * named to clients in the CertificateRequest. */
static int load_ca(SSL_CTX *ctx, const char *v, char *err, size_t errlen) {
    char why[256];
    BIO *b = open_value("CA", v, err, errlen);
    if (!b) return -1;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509 *ca;
    int n = 0;
    while (names && (ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(ca));
        int ok = X509_STORE_add_cert(store, ca) == 1 && name && sk_X509_NAME_push(names, name) > 0;
        X509_free(ca);
        if (!ok) {
            X509_NAME_free(name);
            break;
        }
        n++;
    }
    BIO_free(b);
    if (!names || !pem_eof() || n == 0) {
        snprintf(err, errlen, "TLS: no usable PEM CA certificate in %s (%s)", name_of(v),
                 n == 0 && !ERR_peek_last_error() ? "no certificate found" : ssl_reason(why, sizeof why));
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
    return 0;
}

/* ================================================================== */
/* 3. Context                                                         */
/* ================================================================== */

struct kino_tls_ctx {
    SSL_CTX *ctx;
};

/* The protocols ALPN may pick, in the server's order of preference, in
 * the wire format (length-prefixed): h2 first when HTTP/2 is on.
 * Static storage: OpenSSL's answer points into it. */
static const unsigned char alpn_h2[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_h1[] = "\x08http/1.1";

/* Pick the first protocol of ours the client offers. An empty client
 * list is refused before SSL_select_next_proto sees it (CVE-2024-5535:
 * it reads past an empty list). No overlap is a fatal alert, as RFC 7301
 * section 3.2 requires: a client that cannot speak HTTP/1.1 cannot be
 * served. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    unsigned char *chosen = NULL;
    const unsigned char *ours = arg ? alpn_h2 : alpn_h1;
    unsigned int len = arg ? sizeof alpn_h2 - 1 : sizeof alpn_h1 - 1;
    (void)ssl;
    if (inlen == 0) return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&chosen, outlen, ours, len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* Ciphers for TLS 1.2 when none are given: forward-secret AEAD only
 * (TLS 1.3's suites are all of that kind and stay OpenSSL's). */
#define KINO_TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"

kino_tls_ctx *kino_tls_ctx_new(const kino_tls_options *o, int h2, char *err, size_t errlen) {
    char why[256];
    if (!o->cert || !*o->cert || !o->key || !*o->key) {
        snprintf(err, errlen, "TLS needs both a certificate (cert) and a private key (key)");
        return NULL;
    }
    if (o->verify == KINO_TLS_VERIFY_PEER && (!o->ca || !*o->ca)) {
        snprintf(err, errlen, "TLS: verify :peer needs ca, the CA certificates that sign client certificates");
        return NULL;
    }
    kino_tls_ctx *x = calloc(1, sizeof *x);
    SSL_CTX *ctx = x ? SSL_CTX_new(TLS_server_method()) : NULL;
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot create a context (%s)", ssl_reason(why, sizeof why));
        free(x);
        return NULL;
    }
    x->ctx = ctx;
    int min = o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (o->min_version != 0 && o->min_version != 12 && o->min_version != 13) {
        snprintf(err, errlen, "TLS: min_version must be TLS 1.2 or 1.3");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, min);
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_NO_RENEGOTIATION
    opts |= SSL_OP_NO_RENEGOTIATION;
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    opts |= SSL_OP_IGNORE_UNEXPECTED_EOF; /* a client that just closes has not attacked us */
#endif
#ifdef SSL_OP_ENABLE_KTLS
    opts |= SSL_OP_ENABLE_KTLS; /* used when the kernel and cipher allow it */
#endif
    SSL_CTX_set_options(ctx, opts);
    /* Writes may complete in part (one record at a time) and be retried
     * from another address: the engine retries with the same bytes, from
     * wherever they then are (a worker's buffer, or the copy the I/O
     * thread finishes). Read-ahead takes whole socket reads, not a
     * header and then a record: one recv per burst, as without TLS. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              (KINO_TLS_RELEASE_BUFFERS ? SSL_MODE_RELEASE_BUFFERS : 0));
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kino", 4);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, h2 ? (void *)alpn_h2 : NULL);
    const char *ciphers = o->ciphers && *o->ciphers ? o->ciphers : KINO_TLS12_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        snprintf(err, errlen, "TLS: no usable cipher in ciphers \"%s\" (%s)", ciphers,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    if (load_cert(ctx, o->cert, err, errlen) < 0 || load_key(ctx, o->key, o->cert, err, errlen) < 0)
        goto fail;
    if (o->verify == KINO_TLS_VERIFY_PEER) {
        if (load_ca(ctx, o->ca, err, errlen) < 0) goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    ERR_clear_error();
    return x;
fail:
    kino_tls_ctx_free(x);
    ERR_clear_error();
    return NULL;
}

void kino_tls_ctx_free(kino_tls_ctx *x) {
    if (!x) return;
    SSL_CTX_free(x->ctx);
    free(x);
}

/* ================================================================== */
/* 4. Connections                                                     */
/* ================================================================== */

struct kino_tls {
    SSL *ssl;
    unsigned char want;    /* KINO_WAIT_*: what the last -1/EAGAIN waits for */
    unsigned char drained; /* the last socket read came back short or empty */
    unsigned char failed;  /* a fatal error: no close_notify may follow */
    unsigned char closed;  /* close_notify sent */
};

int kino_tls_first_byte(unsigned char b) { return b == 0x16 || (b & 0x80); }

/* Watches the socket BIO's reads: a read that returns less than it asked
 * for (or nothing yet) proves the socket empty, exactly as a short recv
 * does without TLS; a full one does not. kino_tls_more builds on it, so
 * edge-triggered readiness is never lost behind OpenSSL's read-ahead. */
static long bio_watch(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                      size_t *processed) {
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        kino_tls *t = (kino_tls *)BIO_get_callback_arg(b);
        t->drained = ret <= 0 || (processed && *processed < len);
    }
    return ret;
}

kino_tls *kino_tls_new(kino_tls_ctx *x, int fd) {
    kino_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ssl = SSL_new(x->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO *rb = SSL_get_rbio(t->ssl);
    BIO_set_callback_arg(rb, (char *)t);
    BIO_set_callback_ex(rb, bio_watch);
    SSL_set_accept_state(t->ssl);
    return t;
}

void kino_tls_free(kino_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);
    free(t);
}

/* Turn a failed OpenSSL call into -1 and errno, noting what it waits for. */
static int failed(kino_tls *t, int r) {
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        t->want = KINO_WAIT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->want = KINO_WAIT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify: the end of the stream */
        return 0;
    case SSL_ERROR_SYSCALL:
        t->failed = 1;
        if (errno == 0 || errno == EAGAIN) errno = ECONNRESET;
        ERR_clear_error();
        return -1;
    default: /* a protocol error: bad record, failed handshake */
        t->failed = 1;
        errno = EPROTO;
        ERR_clear_error();
        return -1;
    }
}

int kino_tls_handshake(kino_tls *t) {
    t->want = 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) return KINO_OK;
    return failed(t, r) < 0 && errno == EAGAIN ? KINO_AGAIN : KINO_ERROR;
}

int kino_tls_alpn_h2(const kino_tls *t) {
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}

ssize_t kino_tls_read(kino_tls *t, void *buf, size_t n) {
    size_t got = 0;
    t->want = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(t->ssl, buf, n, &got);
    return r == 1 ? (ssize_t)got : failed(t, 0);
}

ssize_t kino_tls_write(kino_tls *t, const void *buf, size_t n) {
    size_t put = 0;
    if (n == 0) return 0;
    t->want = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(t->ssl, buf, n, &put);
    if (r == 1) return (ssize_t)put;
    r = failed(t, 0);
    if (r == 0) errno = EPIPE; /* the client closed: nothing more is sent */
    return -1;
}

int kino_tls_want(const kino_tls *t) { return t->want; }

int kino_tls_more(const kino_tls *t) { return !t->drained || SSL_has_pending(t->ssl); }

void kino_tls_close(kino_tls *t) {
    if (t->failed || t->closed || !SSL_is_init_finished(t->ssl)) return;
    t->closed = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* sends close_notify; the answer is not awaited */
    ERR_clear_error();
}

/* ================================================================== */
/* 5. Files                                                           */
/* ================================================================== */

int kino_tls_ktls(const kino_tls *t) {
#if !defined(OPENSSL_NO_KTLS) && defined(BIO_get_ktls_send)
    return BIO_get_ktls_send(SSL_get_wbio(t->ssl)) != 0;
#else
    (void)t;
    return 0;
#endif
}

ssize_t kino_tls_sendfile(kino_tls *t, int fd, uint64_t *off, size_t n, char *buf, size_t cap) {
#if !defined(OPENSSL_NO_KTLS) && defined(BIO_get_ktls_send)
    if (kino_tls_ktls(t)) { /* the kernel encrypts: zero copies through here */
        ERR_clear_error();
        errno = 0;
        ossl_ssize_t r = SSL_sendfile(t->ssl, fd, (off_t)*off, n, 0);
        if (r > 0) {
            *off += (uint64_t)r;
            return (ssize_t)r;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            t->want = KINO_WAIT_WRITE;
            ERR_clear_error();
            return -1;
        }
        return failed(t, (int)r) < 0 ? -1 : (errno = EPIPE, -1);
    }
#endif
    ssize_t got = pread(fd, buf, n < cap ? n : cap, (off_t)*off);
    if (got <= 0) return got;
    ssize_t sent = kino_tls_write(t, buf, (size_t)got);
    if (sent > 0) *off += (uint64_t)sent;
    return sent;
}

/* ================================================================== */
/* 6. Peer                                                            */
/* ================================================================== */

char *kino_tls_peer_cert(kino_tls *t, size_t *len) {
    char *pem = NULL;
#if OPENSSL_VERSION_MAJOR >= 3
    X509 *peer = SSL_get1_peer_certificate(t->ssl);
#else
    X509 *peer = SSL_get_peer_certificate(t->ssl);
#endif
    if (!peer) return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && PEM_write_bio_X509(b, peer) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && (pem = malloc((size_t)n + 1))) {
            memcpy(pem, data, (size_t)n);
            pem[n] = 0;
            *len = (size_t)n;
        }
    }
    BIO_free(b);
    X509_free(peer);
    ERR_clear_error();
    return pem;
}

#endif /* KINO_TLS */
