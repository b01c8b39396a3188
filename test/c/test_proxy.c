/*
 * test_proxy.c -- the PROXY protocol header parser: valid v1 and v2
 * headers with the addresses they carry, malformed ones refused, every
 * proper prefix of a valid header reported incomplete (0) and every
 * header parsed right before an unreadable page, so an over-read crashes.
 */
#include <sys/mman.h>

/* Parse n bytes placed so that the byte after them is unreadable. */
static long proxy_at_edge(const char *p, size_t n, kino_proxy *out) {
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -99;
    mprotect(m + page, (size_t)page, PROT_NONE);
    char *at = m + page - n;
    memcpy(at, p, n);
    long r = kino_proxy_parse(at, n, out);
    munmap(m, (size_t)page * 2);
    return r;
}

typedef struct proxy_case {
    const char *in;
    size_t n;          /* 0: strlen */
    long want;         /* header length, 0 or KINO_ERROR */
    int local;
    const char *addr;
    int port;
} proxy_case;

#define V2SIG "\r\n\r\n\0\r\nQUIT\n"

static const proxy_case proxy_cases[] = {
    {"PROXY TCP4 192.0.2.1 198.51.100.2 55042 80\r\nGET", 0, 44, 0, "192.0.2.1", 55042},
    {"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", 0, 44, 0, "2001:db8::1", 1},
    {"PROXY TCP6 ::ffff:10.0.0.1 ::1 443 80\r\n", 0, 39, 0, "::ffff:10.0.0.1", 443},
    {"PROXY UNKNOWN\r\n", 0, 15, 1, NULL, 0},
    {"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 0, 35, 1, NULL, 0},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", 0, 32, 0, "1.2.3.4", 0},
    /* malformed v1 */
    {"PROXY TCP4 1.2.3.4 5.6.7.8 01 80\r\n", 0, KINO_ERROR, 0, NULL, 0},   /* leading zero */
    {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", 0, KINO_ERROR, 0, NULL, 0},
    {"PROXY TCP4 1.2.3.4  5.6.7.8 1 80\r\n", 0, KINO_ERROR, 0, NULL, 0},   /* two spaces */
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 80 \r\n", 0, KINO_ERROR, 0, NULL, 0},   /* trailing space */
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, KINO_ERROR, 0, NULL, 0},       /* missing field */
    {"PROXY TCP4 ::1 ::2 1 2\r\n", 0, KINO_ERROR, 0, NULL, 0},             /* wrong family */
    {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 0, KINO_ERROR, 0, NULL, 0},
    {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 0, KINO_ERROR, 0, NULL, 0},
    {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, KINO_ERROR, 0, NULL, 0},
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, KINO_ERROR, 0, NULL, 0},       /* LF alone */
    {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 0, KINO_ERROR, 0, NULL, 0},      /* CR alone */
    {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, KINO_ERROR, 0, NULL, 0},
    {"GET / HTTP/1.1\r\n", 0, KINO_ERROR, 0, NULL, 0},                     /* no header */
    {"PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
     0, KINO_ERROR, 0, NULL, 0},                                           /* past 107 bytes */
    {"PROXY TCP4 1.2.3.4", 0, 0, 0, NULL, 0},                              /* incomplete */
    {"\r\n\r\n", 0, 0, 0, NULL, 0},
    /* v2: PROXY TCP4 192.0.2.1:1234 -> 198.51.100.2:80 */
    {V2SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x01" "\xc6\x33\x64\x02" "\x04\xd2\x00\x50", 28, 28, 0, "192.0.2.1", 1234},
    /* v2 with a TLV after the addresses (skipped) */
    {V2SIG "\x21\x11\x00\x11" "\x0a\x00\x00\x01" "\x0a\x00\x00\x02" "\x00\x50\x01\xbb" "\x02\x00\x02hi", 33, 33, 0,
     "10.0.0.1", 80},
    /* v2 TCP6 */
    {V2SIG "\x21\x21\x00\x24" "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
           "\x30\x39\x00\x50", 52, 52, 0, "2001:db8::7", 12345},
    /* v2 LOCAL (health checks): the socket's addresses stay */
    {V2SIG "\x20\x00\x00\x00", 16, 16, 1, NULL, 0},
    {V2SIG "\x20\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, 28, 1, NULL, 0},
    /* v2 UNSPEC with PROXY: unknown origin, socket addresses */
    {V2SIG "\x21\x00\x00\x00", 16, 16, 1, NULL, 0},
    /* malformed v2 */
    {V2SIG "\x11\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, KINO_ERROR, 0, NULL, 0}, /* v1 */
    {V2SIG "\x22\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, KINO_ERROR, 0, NULL, 0}, /* cmd */
    {V2SIG "\x21\x41\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, KINO_ERROR, 0, NULL, 0}, /* fam */
    {V2SIG "\x21\x11\x00\x08" "\x01\x02\x03\x04\x05\x06\x07\x08", 24, KINO_ERROR, 0, NULL, 0}, /* short */
    {V2SIG "\x21\x12\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02", 28, KINO_ERROR, 0, NULL, 0}, /* UDP */
    {V2SIG "\x21\x11\xff\xff", 16, KINO_ERROR, 0, NULL, 0},                                 /* too long */
    {"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00", 16, KINO_ERROR, 0, NULL, 0},                  /* signature */
    {V2SIG "\x21\x11\x00\x0c" "\x01\x02", 18, 0, 0, NULL, 0},                               /* incomplete */
};

static void test_proxy(void) {
    for (size_t i = 0; i < sizeof proxy_cases / sizeof *proxy_cases; i++) {
        const proxy_case *t = &proxy_cases[i];
        size_t n = t->n ? t->n : strlen(t->in);
        kino_proxy px;
        memset(&px, 0x55, sizeof px);
        long r = proxy_at_edge(t->in, n, &px);
        CHECKF(r == t->want, "proxy case %zu: got %ld, want %ld", i, r, t->want);
        if (r <= 0 || r != t->want) continue;
        CHECKF(px.local == t->local, "proxy case %zu: local %d", i, px.local);
        if (!t->local) {
            CHECKF(strcmp(px.addr, t->addr) == 0, "proxy case %zu: addr %s", i, px.addr);
            CHECKF(px.port == t->port, "proxy case %zu: port %d", i, px.port);
        }
        /* every proper prefix is incomplete, never an error */
        for (size_t k = 0; k < (size_t)r; k++) {
            long p = proxy_at_edge(t->in, k, &px);
            CHECKF(p == 0, "proxy case %zu: prefix %zu gave %ld", i, k, p);
        }
    }
}
