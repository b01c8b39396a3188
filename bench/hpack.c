/*
 * bench/hpack.c -- HPACK throughput: kino_hpack.c decoding request and
 * response header blocks and encoding responses, in ns per header field,
 * and (built with -DWITH_NGHTTP2, as `make bench-hpack` does when
 * libnghttp2's headers are there) nghttp2's HPACK on the same blocks in
 * the same run.
 *
 *   make bench-hpack                 # build/bench_hpack, 5 repeats, medians
 *   build/bench_hpack [ITER] [REPEAT]
 *
 * Decoding: each workload is a sequence of header blocks decoded again
 * and again on one decoder, so the dynamic table is in its steady state
 * (insertions, evictions, references): the RFC 7541 Appendix C.4
 * requests (Huffman, table 4096), the C.6 responses (Huffman, table 256,
 * evicting on every block), and a browser-like first request of 12
 * fields with no table reference (every string Huffman-coded, as
 * browsers send them). Encoding: a small response (:status 200,
 * content-type, content-length, date, server) and a larger one (eight
 * fields, a cookie and a 60-byte cache-control among them).
 */
#define _POSIX_C_SOURCE 200809L
#include "kino_hpack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#ifdef WITH_NGHTTP2
#include <nghttp2/nghttp2.h>
#endif

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static size_t unhex(const char *hex, uint8_t *out) {
    size_t n = 0;
    for (const char *p = hex; p[0] && p[1]; p += 2) {
        unsigned v;
        sscanf(p, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

typedef struct workload {
    const char *name;
    uint32_t table;
    const char *hex[3];
    uint8_t block[3][512];
    size_t len[3];
    int nblocks, fields; /* fields per pass over the blocks */
} workload;

static workload loads[] = {
    {"C.4 requests (Huffman, table 4096)", 4096,
     {"828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"}},
    {"C.6 responses (Huffman, table 256)", 256,
     {"488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
      "4883640effc1c0bf",
      "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"}},
    {"browser first request (12 fields, no table)", 4096, {NULL}},
};

static const char *browser[][2] = {
    {":method", "GET"},
    {":scheme", "https"},
    {":authority", "www.example.com"},
    {":path", "/assets/application-5f2c1a.css?v=3"},
    {"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
    {"accept", "text/css,*/*;q=0.1"},
    {"accept-language", "en-US,en;q=0.5"},
    {"accept-encoding", "gzip, deflate, br, zstd"},
    {"referer", "https://www.example.com/"},
    {"cookie", "session=3f9c2a7b1e5d4c88a1b2c3d4e5f60718; theme=dark"},
    {"sec-fetch-dest", "style"},
    {"sec-fetch-mode", "no-cors"},
};

static const char *small_resp[][2] = {
    {"content-type", "text/plain"},
    {"content-length", "13"},
    {"date", "Mon, 07 Dec 2026 02:40:00 GMT"},
    {"server", "kino"},
};
static const char *large_resp[][2] = {
    {"content-type", "text/html; charset=utf-8"},
    {"content-length", "10432"},
    {"date", "Mon, 07 Dec 2026 02:40:00 GMT"},
    {"cache-control", "private, max-age=0, must-revalidate, no-transform, stale-if=60"},
    {"etag", "W/\"5f2c1a9b3e7d\""},
    {"set-cookie", "session=3f9c2a7b1e5d4c88a1b2c3d4e5f60718; path=/; secure; HttpOnly"},
    {"x-request-id", "0d6a1c4e-8b7f-4e2a-9c3d-5a6b7c8d9e0f"},
    {"vary", "accept-encoding"},
};

static long sink;

static int count_field(void *ud, const kino_hpack_field *f) {
    sink += (long)(f->name_len + f->value_len);
    (*(int *)ud)++;
    return 0;
}

static void setup(void) {
    for (size_t w = 0; w < 2; w++) {
        workload *l = &loads[w];
        for (int b = 0; b < 3; b++) l->len[b] = unhex(l->hex[b], l->block[b]);
        l->nblocks = 3;
    }
    workload *l = &loads[2];
    size_t n = 0;
    for (size_t i = 0; i < sizeof browser / sizeof browser[0]; i++) {
        /* literal without indexing; the encoder writes static names by index */
        n += kino_hpack_encode_field(l->block[0] + n, sizeof l->block[0] - n, browser[i][0], strlen(browser[i][0]),
                                     browser[i][1], strlen(browser[i][1]), 0);
    }
    l->len[0] = n;
    l->nblocks = 1;
    for (size_t w = 0; w < 3; w++) {
        kino_hpack_decoder dec;
        kino_hpack_decoder_init(&dec, loads[w].table, 65536, NULL, 0);
        int fields = 0;
        for (int b = 0; b < loads[w].nblocks; b++)
            if (kino_hpack_decode(&dec, loads[w].block[b], loads[w].len[b], count_field, &fields) != KINO_HPACK_OK) {
                fprintf(stderr, "bench_hpack: %s does not decode: %s\n", loads[w].name, dec.error);
                exit(1);
            }
        loads[w].fields = fields;
        kino_hpack_decoder_free(&dec);
    }
}

__attribute__((noinline)) static double kino_decode(workload *l, long iter) {
    kino_hpack_decoder dec;
    kino_hpack_decoder_init(&dec, l->table, 65536, NULL, 0);
    int fields = 0;
    double t0 = now_ns();
    for (long i = 0; i < iter; i++)
        for (int b = 0; b < l->nblocks; b++)
            if (kino_hpack_decode(&dec, l->block[b], l->len[b], count_field, &fields) != KINO_HPACK_OK) abort();
    double t = now_ns() - t0;
    kino_hpack_decoder_free(&dec);
    return t / ((double)iter * l->fields);
}

__attribute__((noinline)) static double kino_encode(const char *(*f)[2], size_t n, long iter, size_t *bytes) {
    uint8_t out[1024];
    size_t nl[16], vl[16]; /* lengths known beforehand, as nghttp2's nv arrays have them */
    for (size_t j = 0; j < n; j++) {
        nl[j] = strlen(f[j][0]);
        vl[j] = strlen(f[j][1]);
    }
    double t0 = now_ns();
    for (long i = 0; i < iter; i++) {
        size_t k = kino_hpack_encode_status(out, sizeof out, 200);
        for (size_t j = 0; j < n; j++)
            k += kino_hpack_encode_field(out + k, sizeof out - k, f[j][0], nl[j], f[j][1], vl[j], 0);
        sink += (long)k;
        *bytes = k;
    }
    return (now_ns() - t0) / ((double)iter * (double)(n + 1));
}

#ifdef WITH_NGHTTP2
__attribute__((noinline)) static double ng_decode(workload *l, long iter) {
    nghttp2_hd_inflater *inf;
    if (nghttp2_hd_inflate_new(&inf) != 0) abort();
    if (l->table != 4096) { /* as after SETTINGS: the next block opens with the size update */
        uint8_t update[8];
        size_t n = kino_hpack_encode_int(update, sizeof update, l->table, 5, 0x20);
        nghttp2_nv nv;
        int flags = 0;
        if (nghttp2_hd_inflate_change_table_size(inf, l->table) != 0 ||
            nghttp2_hd_inflate_hd2(inf, &nv, &flags, update, n, 1) != (ssize_t)n)
            abort();
        nghttp2_hd_inflate_end_headers(inf);
    }
    double t0 = now_ns();
    for (long i = 0; i < iter; i++) {
        for (int b = 0; b < l->nblocks; b++) {
            const uint8_t *in = l->block[b];
            size_t left = l->len[b];
            for (;;) {
                nghttp2_nv nv;
                int flags = 0;
                ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, 1);
                if (r < 0) abort();
                in += r;
                left -= (size_t)r;
                if (flags & NGHTTP2_HD_INFLATE_EMIT) sink += (long)(nv.namelen + nv.valuelen);
                if (flags & NGHTTP2_HD_INFLATE_FINAL) {
                    nghttp2_hd_inflate_end_headers(inf);
                    break;
                }
                if (r == 0 && left == 0) break;
            }
        }
    }
    double t = now_ns() - t0;
    nghttp2_hd_inflate_del(inf);
    return t / ((double)iter * l->fields);
}

__attribute__((noinline)) static double ng_encode(const char *(*f)[2], size_t n, long iter, size_t *bytes) {
    nghttp2_hd_deflater *def;
    if (nghttp2_hd_deflate_new(&def, 4096) != 0) abort();
    nghttp2_nv nva[16];
    nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t j = 0; j < n; j++)
        nva[j + 1] = (nghttp2_nv){(uint8_t *)f[j][0], (uint8_t *)f[j][1], strlen(f[j][0]), strlen(f[j][1]),
                                  NGHTTP2_NV_FLAG_NONE};
    uint8_t out[1024];
    double t0 = now_ns();
    for (long i = 0; i < iter; i++) {
        ssize_t k = nghttp2_hd_deflate_hd(def, out, sizeof out, nva, n + 1);
        if (k < 0) abort();
        sink += (long)k;
        *bytes = (size_t)k;
    }
    double t = now_ns() - t0;
    nghttp2_hd_deflate_del(def);
    return t / ((double)iter * (double)(n + 1));
}
#endif

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_REPEAT 31

int main(int argc, char **argv) {
    long iter = argc > 1 ? atol(argv[1]) : 200000;
    int repeat = argc > 2 ? atoi(argv[2]) : 5;
    if (iter < 1 || repeat < 1 || repeat > MAX_REPEAT) {
        fprintf(stderr, "usage: bench_hpack [ITER] [REPEAT <= %d]\n", MAX_REPEAT);
        return 2;
    }
    setup();
    printf("HPACK, ns per header field, median of %d runs of %ld passes\n", repeat, iter);
#ifdef WITH_NGHTTP2
    printf("%-51s %8s %9s %7s\n", "", "kino", "nghttp2", "ratio");
#else
    printf("%-51s %8s\n", "", "kino");
#endif
    for (size_t w = 0; w < 3; w++) {
        double k[MAX_REPEAT], g[MAX_REPEAT];
        for (int r = 0; r < repeat; r++) {
            k[r] = kino_decode(&loads[w], iter);
#ifdef WITH_NGHTTP2
            g[r] = ng_decode(&loads[w], iter);
#endif
        }
        double km = median(k, repeat);
#ifdef WITH_NGHTTP2
        double gm = median(g, repeat);
        printf("decode %-44s %8.1f %9.1f %6.2fx\n", loads[w].name, km, gm, gm / km);
#else
        (void)g;
        printf("decode %-44s %8.1f\n", loads[w].name, km);
#endif
    }
    struct {
        const char *name;
        const char *(*f)[2];
        size_t n;
    } enc[] = {
        {"small response (5 fields)", small_resp, sizeof small_resp / sizeof small_resp[0]},
        {"larger response (9 fields)", large_resp, sizeof large_resp / sizeof large_resp[0]},
    };
    for (size_t e = 0; e < 2; e++) {
        double k[MAX_REPEAT], g[MAX_REPEAT];
        size_t kb = 0, gb = 0;
        for (int r = 0; r < repeat; r++) {
            k[r] = kino_encode(enc[e].f, enc[e].n, iter, &kb);
#ifdef WITH_NGHTTP2
            g[r] = ng_encode(enc[e].f, enc[e].n, iter, &gb);
#endif
        }
        double km = median(k, repeat);
#ifdef WITH_NGHTTP2
        double gm = median(g, repeat);
        printf("encode %-44s %8.1f %9.1f %6.2fx   (block: kino %zu B, nghttp2 %zu B after the first)\n",
               enc[e].name, km, gm, gm / km, kb, gb);
#else
        (void)g;
        (void)gb;
        printf("encode %-44s %8.1f   (block: %zu B)\n", enc[e].name, km, kb);
#endif
    }
    return sink == 42; /* keep the work */
}
