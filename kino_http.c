/*
 * kino_http.c -- HTTP/1.1 request parsing for the Kino engine: pure
 * functions over bytes, no sockets, no threads, no allocation (their API
 * is in kino.h; the fuzz harnesses in fuzz/ link this file alone). It
 * reads top to bottom:
 *
 *    1. request head    request line, header fields, framing rules
 *    2. chunked         the chunked transfer-coding decoder
 *    3. PROXY header    PROXY protocol v1 and v2
 *
 * Byte classes and the span helpers it shares with the response writer
 * are in kino_engine.h, section 4.
 */
#include "kino_engine.h"

/* ================================================================== */
/* 1. Request head                                                    */
/* ================================================================== */

/* Byte classes: 1 tchar (RFC 9110 token), 2 allowed in a field value
 * (VCHAR, obs-text, SP, HTAB), 4 allowed in a request-target, 8 allowed
 * in a Host name (reg-name without ','). */
const unsigned char kino_ctab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 15, 6, 3, 15, 15, 15, 15, 14, 14, 15, 15, 6, 15, 15, 6,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 14, 6, 14, 6, 6,
    6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 7, 15,
    7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 7, 6, 15, 0,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
};


#define KINO_MAX_LEADING_CRLF 8 /* empty lines allowed before a request */

/* Length of the run of "\r\n" pairs that may precede a request line. */
static size_t leading_crlf(const char *buf, size_t len) {
    size_t i = 0;
    while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n') i += 2;
    return i;
}

/* Whatever way the bytes of a head are cut into reads, kino_head_end gives
 * the same verdict: it looks only at bytes inside the current limit window
 * (the request line's until its LF, then the whole head's), reports the
 * first bare CR or LF in position order, and reports a limit only once the
 * window is full without the line or head ending in it. So a bare CR past
 * the 64 KiB mark is a 431, never a 400, however the head arrives; the
 * fuzz_head harness checks exactly this. */
long kino_head_end(const char *buf, size_t len, size_t *scanned, int *status) {
    size_t lead = leading_crlf(buf, len > 2 * KINO_MAX_LEADING_CRLF + 2
                                        ? 2 * KINO_MAX_LEADING_CRLF + 2 : len);
    size_t i = *scanned > lead ? *scanned : lead;
    size_t line_stop = lead + KINO_MAX_REQUEST_LINE + 2; /* the request line's LF comes before */
    if (lead > 2 * KINO_MAX_LEADING_CRLF) {
        *status = 400;
        return KINO_ERROR;
    }
    int in_line = i < line_stop && !memchr(buf + lead, '\n', i - lead);
    for (;;) {
        size_t stop = in_line && line_stop < KINO_MAX_HEAD ? line_stop : KINO_MAX_HEAD;
        size_t end = len < stop ? len : stop;
        const char *hit = i < end ? memchr(buf + i, '\n', end - i) : NULL;
        size_t upto = hit ? (size_t)(hit - buf) : end;
        const char *cr = i < upto ? memchr(buf + i, '\r', upto - i) : NULL;
        if (cr && (size_t)(cr - buf) + 1 < upto) {
            *status = 400; /* bare CR: the next byte is not LF */
            return KINO_ERROR;
        }
        if (!hit) {
            if (len >= stop) { /* the window is full: the line or head is too long */
                *status = in_line && stop == line_stop ? 414 : 431;
                return KINO_ERROR;
            }
            *scanned = cr ? (size_t)(cr - buf) : len; /* keep a trailing CR for the next call */
            return 0;
        }
        i = (size_t)(hit - buf);
        if (i == 0 || buf[i - 1] != '\r') {
            *status = 400; /* bare LF */
            return KINO_ERROR;
        }
        if (i >= lead + 3 && buf[i - 2] == '\n') { /* "\r\n\r\n", i + 1 <= KINO_MAX_HEAD */
            *scanned = i + 1;
            return (long)(i + 1);
        }
        in_line = 0;
        i++;
    }
}

static int fail(kino_head *h, int status) {
    h->status = status;
    return KINO_ERROR;
}

/* "HTTP/" has been matched; read DIGIT "." DIGIT. Major versions other
 * than 1 are well-formed but unsupported (505); the rest is 400. */
static int parse_version(const char **pp, const char *end, kino_head *h) {
    const char *p = *pp, *d = p;
    while (p < end && IS_DIGIT(*p)) p++;
    if (p == d) return fail(h, 400);
    if (p - d != 1 || *d != '1') return fail(h, *d == '0' && p - d > 1 ? 400 : 505);
    if (p + 2 > end || p[0] != '.' || !IS_DIGIT(p[1])) return fail(h, 400);
    if (p + 2 < end && IS_DIGIT(p[2])) return fail(h, 400);
    h->minor = p[1] == '0' ? 0 : 1; /* HTTP/1.2+ is treated as 1.1 */
    *pp = p + 2;
    return KINO_OK;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), with a non-empty
 * uri-host: an http URI has one (RFC 9110 4.2.1), so "" and ":80" are
 * refused, as nginx refuses them (doc/security.md). */
static int valid_host(kino_span v) {
    const char *p = v.p, *e = v.p + v.n;
    if (p == e || *p == ':') return 0;
    if (*p == '[') {
        const char *q = memchr(p, ']', v.n);
        if (!q || q == p + 1) return 0;
        for (const char *r = p + 1; r < q; r++)
            if (!(IS_DIGIT(*r) || (unsigned)((*r | 32) - 'a') < 6u || *r == ':' || *r == '.')) return 0;
        p = q + 1;
    } else {
        while (p < e && *p != ':') {
            if (!IS_HOST(*p)) return 0;
            p++;
        }
    }
    if (p == e) return 1;
    if (*p++ != ':' || e - p > 5) return 0;
    for (; p < e; p++)
        if (!IS_DIGIT(*p)) return 0;
    return 1;
}

/* Transfer-Encoding: the only coding accepted is a single "chunked".
 * Returns 0 when chunked is final and alone, else the status to send:
 * 501 for an unknown coding, 400 for a malformed or unframeable list. */
static int parse_te(kino_span v, int *chunked) {
    const char *p = v.p, *e = v.p + v.n;
    int unknown = 0, any = 0;
    while (p < e) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        const char *t = p;
        while (p < e && IS_TCHAR(*p)) p++;
        if (p == t) {
            if (p < e) return 400;
            break;
        }
        kino_span tok = span(t, p);
        while (p < e && (*p == ' ' || *p == '\t')) p++;
        if (p < e && *p != ',') return 400; /* parameters, or junk */
        any = 1;
        if (*chunked) return 400; /* something after chunked */
        if (span_is(tok, "chunked")) *chunked = 1;
        else unknown = 1;
    }
    if (!any) return 400;
    if (unknown) return *chunked ? 501 : 400;
    return 0;
}

/* Split the request-target into path and query, accepting origin-form,
 * absolute-form (http/https, whose authority becomes the host) and
 * OPTIONS *. CONNECT's authority-form is not served (501). */
static int parse_target(kino_head *h) {
    const char *p = h->target.p, *e = p + h->target.n;
    if (h->method.n == 7 && memcmp(h->method.p, "CONNECT", 7) == 0) return fail(h, 501);
    if (*p == '*' && h->target.n == 1) {
        if (!(h->method.n == 7 && memcmp(h->method.p, "OPTIONS", 7) == 0)) return fail(h, 400);
        h->path = h->target;
        return KINO_OK;
    }
    if (*p != '/') {
        size_t skip = 0;
        if (h->target.n > 7 && span_is(span(p, p + 7), "http://")) skip = 7;
        else if (h->target.n > 8 && span_is(span(p, p + 8), "https://")) skip = 8;
        if (!skip) return fail(h, 400);
        const char *a = p + skip, *q = a;
        while (q < e && *q != '/' && *q != '?') q++;
        kino_span auth = span(a, q);
        if (auth.n == 0 || memchr(a, '@', auth.n) || !valid_host(auth)) return fail(h, 400);
        h->host = auth;
        p = q;
        if (p == e || *p == '?') {
            static const char slash[] = "/";
            h->path = span(slash, slash + 1);
            if (p < e) h->query = span(p + 1, e);
            return KINO_OK;
        }
    }
    const char *q = memchr(p, '?', (size_t)(e - p));
    h->path = span(p, q ? q : e);
    if (q) h->query = span(q + 1, e);
    return KINO_OK;
}

/* The semantic rules of RFC 9112 over the parsed fields: Host, framing,
 * persistence, expectations. */
static int analyse(kino_head *h) {
    int hosts = 0, cl_seen = 0, te_seen = 0, chunked = 0, close = 0, keep = 0;
    kino_span host = {0};
    int64_t cl = -1;
    for (size_t i = 0; i < h->nheaders; i++) {
        kino_span n = h->headers[i].name, v = h->headers[i].value;
        switch (n.n) {
        case 4:
            if (span_is(n, "host")) {
                hosts++;
                host = v;
            }
            break;
        case 6:
            if (span_is(n, "expect") && span_is(v, "100-continue") && h->minor == 1)
                h->expect_continue = 1;
            break;
        case 10:
            if (span_is(n, "connection")) {
                if (has_token(v, "close")) close = 1;
                if (has_token(v, "keep-alive")) keep = 1;
            }
            break;
        case 14:
            if (span_is(n, "content-length")) {
                /* a second field is refused even when equal (nginx) */
                if (cl_seen++ || parse_length(v, &cl) < 0) return fail(h, 400);
            }
            break;
        case 17:
            if (span_is(n, "transfer-encoding")) {
                int st;
                te_seen = 1;
                if ((st = parse_te(v, &chunked)) != 0) return fail(h, st);
            }
            break;
        }
    }
    if (hosts > 1 || (hosts == 0 && h->minor == 1)) return fail(h, 400);
    if (hosts == 1 && !valid_host(host)) return fail(h, 400);
    if (te_seen && (cl_seen || h->minor == 0)) return fail(h, 400);
    h->host = host;
    if (parse_target(h) != KINO_OK) return KINO_ERROR;
    h->chunked = (unsigned)chunked;
    h->content_length = cl;
    h->keep_alive = h->minor == 1 ? !close : (keep && !close);
    h->is_head = h->method.n == 4 && memcmp(h->method.p, "HEAD", 4) == 0;
    if (!h->chunked && cl <= 0) h->expect_continue = 0;
    return KINO_OK;
}

int kino_parse_head(const char *buf, size_t len, kino_head *h, kino_header *hdrs,
                    size_t max) {
    const char *p = buf, *end = buf + len, *line, *t;
    memset(h, 0, sizeof *h);
    h->content_length = -1;
    h->headers = hdrs;
    p += leading_crlf(buf, len);
    line = p;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    while (p < end && IS_TCHAR(*p)) p++;
    if (p == line || p >= end || *p != ' ') return fail(h, 400);
    h->method = span(line, p++);
    t = p;
    while (p < end && IS_TARGET(*p)) p++;
    if (p == t || p >= end || *p != ' ') return fail(h, 400);
    h->target = span(t, p++);
    if (end - p < 5 || memcmp(p, "HTTP/", 5) != 0) return fail(h, 400);
    p += 5;
    if (parse_version(&p, end, h) != KINO_OK) return KINO_ERROR;
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return fail(h, 400);
    if (p - line > KINO_MAX_REQUEST_LINE) return fail(h, 414);
    p += 2;

    /* field-line = field-name ":" OWS field-value OWS CRLF */
    for (;;) {
        const char *n, *v, *ve;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') break;
        if (p >= end || *p == ' ' || *p == '\t') return fail(h, 400); /* obs-fold */
        n = p;
        while (p < end && IS_TCHAR(*p)) p++;
        if (p == n || p >= end || *p != ':') return fail(h, 400);
        kino_span name = span(n, p++);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        v = p;
        while (p < end && IS_VALUE(*p)) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return fail(h, 400);
        ve = p;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (h->nheaders == max) return fail(h, 431);
        hdrs[h->nheaders].name = name;
        hdrs[h->nheaders].value = span(v, ve);
        h->nheaders++;
        p += 2;
    }
    if (len > KINO_MAX_HEAD) return fail(h, 431);
    return analyse(h);
}

long kino_parse_request(const char *buf, size_t len, kino_head *h, kino_header *hdrs,
                        size_t max) {
    size_t scanned = 0;
    int status = 0;
    long n = kino_head_end(buf, len, &scanned, &status);
    if (n < 0) {
        memset(h, 0, sizeof *h);
        h->status = status;
        return KINO_ERROR;
    }
    if (n == 0) return KINO_INCOMPLETE;
    if (kino_parse_head(buf, (size_t)n, h, hdrs, max) != KINO_OK) return KINO_ERROR;
    return n;
}

/* ================================================================== */
/* 2. Chunked                                                         */
/* ================================================================== */

static int hexval(unsigned char c) {
    if (IS_DIGIT(c)) return c - '0';
    c |= 32;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

int kino_chunked_step(kino_chunked *d, const char *src, size_t srclen, size_t *used,
                      char *dst, size_t dstcap, size_t *out) {
    size_t i = 0, o = 0;
    int r = KINO_CHUNK_MORE;
    while (i < srclen && d->state != CH_DONE) {
        unsigned char c = (unsigned char)src[i];
        switch (d->state) {
        case CH_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                /* a chunk of 2^63 bytes or more is no body anyone sends: 400 */
                if (d->left > ((uint64_t)INT64_MAX >> 4) || ++d->line > KINO_MAX_CHUNK_EXT) goto bad;
                d->left = d->left * 16 + (uint64_t)v;
                i++;
            } else if (d->line == 0) {
                goto bad; /* chunk-size needs a digit */
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = c == ';' ? CH_EXT : CH_SIZE_WS;
                i++;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
                i++;
            } else {
                goto bad;
            }
            break;
        }
        case CH_SIZE_WS: /* BWS is allowed only before ';' */
            if (c == ';') d->state = CH_EXT;
            else if (c != ' ' && c != '\t') goto bad;
            if (++d->line > KINO_MAX_CHUNK_EXT) goto bad;
            i++;
            break;
        case CH_EXT: /* chunk extensions are ignored, but bounded */
            if (c == '\r') d->state = CH_SIZE_LF;
            else if (!IS_VALUE(c) || ++d->line > KINO_MAX_CHUNK_EXT) goto bad;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') goto bad;
            d->line = 0;
            d->state = d->left ? CH_DATA : CH_TRAILER_START;
            i++;
            break;
        case CH_DATA: {
            size_t n = srclen - i;
            if (o == dstcap) {
                r = KINO_CHUNK_FULL;
                goto done;
            }
            if (n > dstcap - o) n = dstcap - o;
            if (n > d->left) n = (size_t)d->left;
            if (dst) memmove(dst + o, src + i, n);
            o += n;
            i += n;
            d->left -= n;
            if (!d->left) d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r') goto bad;
            d->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n') goto bad;
            d->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER_START:
            if (c == '\r') {
                d->state = CH_END_LF;
                i++;
            } else {
                d->state = CH_TRAILER; /* a trailer field: discarded */
            }
            break;
        case CH_TRAILER:
            if (c == '\r') d->state = CH_TRAILER_LF;
            else if ((!IS_VALUE(c) && c != ':') || ++d->trailer > KINO_MAX_TRAILER) goto bad;
            i++;
            break;
        case CH_TRAILER_LF:
        case CH_END_LF:
            if (c != '\n') goto bad;
            d->state = d->state == CH_END_LF ? CH_DONE : CH_TRAILER_START;
            i++;
            break;
        }
    }
done:
    *used = i;
    *out = o;
    return d->state == CH_DONE ? KINO_CHUNK_DONE : r;
bad:
    *used = i;
    *out = o;
    return KINO_ERROR;
}

/* ================================================================== */
/* 3. PROXY header                                                    */
/* ================================================================== */

/* PROXY protocol header. A v1 header is one text line, a v2 header a
 * binary block; either is parsed only once complete, so a header split
 * across reads gives the same verdict as one read at once. Bytes that
 * cannot start a header are refused as soon as they arrive. */
static const char proxy_v2_sig[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n',
                                      'Q', 'U', 'I', 'T', '\n'};

/* A decimal port: 1 to 5 digits, no leading zero, at most 65535. */
static int proxy_port(const char *p, size_t n) {
    int v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0')) return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v > 65535 ? -1 : v;
}

/* The next space-delimited field of line[*i..n): its span, *i past the
 * single space that ends it (the last field ends the line). */
static kino_span proxy_field(const char *line, size_t n, size_t *i, int last) {
    kino_span f = {line + *i, 0};
    while (*i < n && line[*i] != ' ') (*i)++, f.n++;
    if (!last) {
        if (*i >= n) f.n = 0; /* a missing field */
        else (*i)++;
    } else if (*i != n) {
        f.n = 0; /* more after the last field */
    }
    return f;
}

/* An address of the family (AF_INET, AF_INET6), in canonical text. */
static int proxy_addr(kino_span a, int family, char *out, size_t cap) {
    char tmp[64];
    unsigned char bin[16];
    if (a.n == 0 || a.n >= sizeof tmp) return -1;
    memcpy(tmp, a.p, a.n);
    tmp[a.n] = 0;
    if (inet_pton(family, tmp, bin) != 1) return -1;
    return inet_ntop(family, bin, out, (socklen_t)cap) ? 0 : -1;
}

/* v1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN...\r\n",
 * at most 107 bytes. */
static long proxy_v1(const char *buf, size_t len, kino_proxy *out) {
    size_t max = len < 107 ? len : 107, end = 0;
    for (size_t i = 0; i < max; i++) {
        if (buf[i] == '\n') return KINO_ERROR; /* LF without CR */
        if (buf[i] == '\r') {
            if (i + 1 >= 107) return KINO_ERROR; /* no room for the LF */
            if (i + 1 == len) return 0;
            if (buf[i + 1] != '\n') return KINO_ERROR;
            end = i;
            break;
        }
    }
    if (!end) return len >= 107 ? KINO_ERROR : 0;
    size_t i = 6; /* past "PROXY " */
    kino_span proto = proxy_field(buf, end, &i, 0);
    if (proto.n == 0 && end >= 13 && memcmp(buf + 6, "UNKNOWN", 7) == 0 &&
        (end == 13 || buf[13] == ' ')) {
        out->local = 1; /* whatever follows UNKNOWN is ignored */
        return (long)end + 2;
    }
    int family;
    if (proto.n == 4 && memcmp(proto.p, "TCP4", 4) == 0) family = AF_INET;
    else if (proto.n == 4 && memcmp(proto.p, "TCP6", 4) == 0) family = AF_INET6;
    else if (proto.n == 7 && memcmp(proto.p, "UNKNOWN", 7) == 0) {
        out->local = 1;
        return (long)end + 2;
    } else return KINO_ERROR;
    kino_span src = proxy_field(buf, end, &i, 0), dst = proxy_field(buf, end, &i, 0);
    kino_span sport = proxy_field(buf, end, &i, 0), dport = proxy_field(buf, end, &i, 1);
    char dtext[48];
    int port = proxy_port(sport.p, sport.n);
    if (port < 0 || proxy_port(dport.p, dport.n) < 0 ||
        proxy_addr(src, family, out->addr, sizeof out->addr) < 0 ||
        proxy_addr(dst, family, dtext, sizeof dtext) < 0)
        return KINO_ERROR;
    out->local = 0;
    out->port = port;
    return (long)end + 2;
}

/* v2: the signature, version 2 with command LOCAL or PROXY, a family and
 * transport, a big-endian length, addresses, then TLVs (skipped). */
static long proxy_v2(const unsigned char *b, size_t len, kino_proxy *out) {
    if (len < 16) return 0;
    if ((b[12] >> 4) != 2 || (b[12] & 15) > 1) return KINO_ERROR;
    size_t body = (size_t)b[14] << 8 | b[15], total = 16 + body;
    unsigned fam = b[13];
    if (total > KINO_PROXY_MAX) return KINO_ERROR;
    /* families: UNSPEC, TCP and UDP over IPv4 / IPv6, unix stream / dgram */
    static const unsigned char known[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
    if (!memchr(known, (int)fam, sizeof known)) return KINO_ERROR;
    size_t need = (fam >> 4) == 1 ? 12 : (fam >> 4) == 2 ? 36 : (fam >> 4) == 3 ? 216 : 0;
    if (body < need) return KINO_ERROR;
    if (len < total) return 0;
    if ((b[12] & 15) == 0 || fam == 0x00 || (fam >> 4) == 3) { /* LOCAL, UNSPEC, unix */
        out->local = 1;
        return (long)total;
    }
    if ((fam & 15) != 1) return KINO_ERROR; /* a datagram source on a stream */
    const unsigned char *a = b + 16;
    int v4 = (fam >> 4) == 1;
    if (!inet_ntop(v4 ? AF_INET : AF_INET6, a, out->addr, sizeof out->addr)) return KINO_ERROR;
    const unsigned char *ports = a + (v4 ? 8 : 32);
    out->port = ports[0] << 8 | ports[1];
    out->local = 0;
    return (long)total;
}

long kino_proxy_parse(const char *buf, size_t len, kino_proxy *out) {
    size_t n = len < 12 ? len : 12;
    if (len == 0) return 0;
    if (buf[0] == '\r') {
        if (memcmp(buf, proxy_v2_sig, n) != 0) return KINO_ERROR;
        return len < 12 ? 0 : proxy_v2((const unsigned char *)buf, len, out);
    }
    n = len < 6 ? len : 6;
    if (memcmp(buf, "PROXY ", n) != 0) return KINO_ERROR;
    return len < 6 ? 0 : proxy_v1(buf, len, out);
}
