/*
 * test/hpack_nghttp2.c -- kino_hpack.c against nghttp2's HPACK, the one
 * curl, nghttp and h2load use (make test-hpack-nghttp2; libnghttp2-dev).
 *
 *   1. nghttp2's encoder -> Kino's decoder: request header lists of
 *      random fields (names from a pool, so the encoder indexes and
 *      refers back; values of any byte; some fields marked never-indexed,
 *      some too large for the table), on one connection, with the table
 *      size changed now and then as a SETTINGS frame would (nghttp2 then
 *      opens its next block with a size update). Kino must decode every
 *      block to the list nghttp2 was given, never-indexed flags included.
 *
 *   2. Kino's encoder -> nghttp2's decoder: response lists of random
 *      fields (mixed-case names, any byte in values), with the peer's
 *      table size changed now and then on both sides, as a SETTINGS
 *      frame from the client would. nghttp2 must decode every block (it
 *      refuses a block that misses an owed size update) to the list Kino
 *      was given, names lowercased.
 *
 * Prints how many blocks and fields went each way; exits 1 on the first
 * difference, saying where.
 */
#define _POSIX_C_SOURCE 200809L
#include "kino_hpack.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define BLOCKS 3000
#define MAX_FIELDS 24

static unsigned seed = 20261207;
static unsigned rnd(unsigned n) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) % n;
}

typedef struct fld {
    char name[64], value[400];
    size_t nlen, vlen;
    int never;
} fld;

static const char *pool[] = {
    ":method", ":path", ":scheme", ":authority", "user-agent", "accept", "accept-encoding", "cookie",
    "x-request-id", "x-forwarded-for", "authorization", "content-type", "content-length", "referer",
    "cache-control", "x-custom-header", "if-none-match", "te",
};

static void random_field(fld *f, int mixed_case) {
    if (rnd(5) == 0) { /* a fresh name */
        f->nlen = 1 + rnd(30);
        for (size_t i = 0; i < f->nlen; i++) f->name[i] = (char)("abcdefghijklmnopqrstuvwxyz-0123456789"[rnd(37)]);
    } else {
        const char *p = pool[rnd(sizeof pool / sizeof pool[0])];
        f->nlen = strlen(p);
        memcpy(f->name, p, f->nlen);
    }
    if (mixed_case)
        for (size_t i = 0; i < f->nlen; i++)
            if (f->name[i] >= 'a' && f->name[i] <= 'z' && rnd(3) == 0) f->name[i] = (char)(f->name[i] - 32);
    unsigned kind = rnd(10);
    f->vlen = kind == 0 ? 0 : kind < 7 ? rnd(40) : kind < 9 ? rnd(120) : 200 + rnd(200);
    int binary = rnd(4) == 0;
    for (size_t i = 0; i < f->vlen; i++)
        f->value[i] = binary ? (char)rnd(256) : (char)(' ' + rnd(95));
    if (rnd(3) == 0 && f->vlen > 8) memcpy(f->value, "repeated", 8); /* values that recur */
    f->never = rnd(8) == 0;
}

static int failures;

static void mismatch(const char *what, int block, int field) {
    fprintf(stderr, "hpack_nghttp2: %s (block %d, field %d)\n", what, block, field);
    failures++;
}

/* Kino's decoder collects into this. */
typedef struct got {
    fld f[MAX_FIELDS + 1];
    int n;
} got;

static int collect(void *ud, const kino_hpack_field *k) {
    got *g = ud;
    if (g->n > MAX_FIELDS || k->name_len >= sizeof g->f[0].name || k->value_len > sizeof g->f[0].value) {
        g->n = MAX_FIELDS + 1;
        return 1;
    }
    fld *f = &g->f[g->n++];
    memcpy(f->name, k->name, k->name_len);
    memcpy(f->value, k->value, k->value_len);
    f->nlen = k->name_len;
    f->vlen = k->value_len;
    f->never = (k->flags & KINO_HPACK_NEVER_INDEXED) != 0;
    return 0;
}

static long nghttp2_to_kino(void) {
    nghttp2_hd_deflater *def;
    if (nghttp2_hd_deflate_new(&def, 4096) != 0) abort();
    kino_hpack_decoder dec;
    if (kino_hpack_decoder_init(&dec, 4096, 1 << 20, NULL, 0) != 0) abort();
    static uint8_t buf[65536];
    long fields = 0;
    for (int b = 0; b < BLOCKS && !failures; b++) {
        if (rnd(40) == 0) { /* SETTINGS_HEADER_TABLE_SIZE from Kino, as if changed */
            static const size_t sizes[] = {0, 64, 256, 1024, 4096};
            if (nghttp2_hd_deflate_change_table_size(def, sizes[rnd(5)]) != 0) abort();
        }
        fld want[MAX_FIELDS];
        nghttp2_nv nva[MAX_FIELDS];
        int n = 1 + (int)rnd(MAX_FIELDS);
        for (int i = 0; i < n; i++) {
            random_field(&want[i], 0);
            nva[i] = (nghttp2_nv){(uint8_t *)want[i].name, (uint8_t *)want[i].value, want[i].nlen, want[i].vlen,
                                  want[i].never ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE};
        }
        ssize_t len = nghttp2_hd_deflate_hd(def, buf, sizeof buf, nva, (size_t)n);
        if (len < 0) {
            mismatch("nghttp2 could not encode", b, 0);
            break;
        }
        got g = {.n = 0};
        int rc = kino_hpack_decode(&dec, buf, (size_t)len, collect, &g);
        if (rc != KINO_HPACK_OK) {
            fprintf(stderr, "hpack_nghttp2: Kino: %s\n", dec.error ? dec.error : "too large");
            mismatch("Kino refused nghttp2's block", b, 0);
            break;
        }
        if (g.n != n) mismatch("field count", b, g.n);
        for (int i = 0; i < n && i < g.n; i++) {
            fld *w = &want[i], *k = &g.f[i];
            if (w->nlen != k->nlen || memcmp(w->name, k->name, w->nlen) || w->vlen != k->vlen ||
                memcmp(w->value, k->value, w->vlen))
                mismatch("a field differs", b, i);
            if (w->never && !k->never) mismatch("a never-indexed field lost its flag", b, i);
        }
        fields += n;
    }
    nghttp2_hd_deflate_del(def);
    kino_hpack_decoder_free(&dec);
    return fields;
}

static long kino_to_nghttp2(void) {
    nghttp2_hd_inflater *inf;
    if (nghttp2_hd_inflate_new(&inf) != 0) abort();
    kino_hpack_encoder enc;
    kino_hpack_encoder_init(&enc);
    static uint8_t buf[65536];
    long fields = 0;
    for (int b = 0; b < BLOCKS && !failures; b++) {
        if (rnd(30) == 0) { /* a SETTINGS_HEADER_TABLE_SIZE from the client */
            static const uint32_t sizes[] = {0, 100, 256, 4096, 8192, 65536};
            uint32_t size = sizes[rnd(6)];
            if (nghttp2_hd_inflate_change_table_size(inf, size) != 0) abort();
            kino_hpack_encoder_set_peer_table_size(&enc, size);
        }
        fld want[MAX_FIELDS];
        int n = (int)rnd(MAX_FIELDS);
        int status = 100 + (int)rnd(500);
        size_t len = kino_hpack_encoder_begin(&enc, buf, sizeof buf);
        len += kino_hpack_encode_status(buf + len, sizeof buf - len, status);
        for (int i = 0; i < n; i++) {
            random_field(&want[i], 1);
            size_t k = kino_hpack_encode_field(buf + len, sizeof buf - len, want[i].name, want[i].nlen, want[i].value,
                                               want[i].vlen, want[i].never ? KINO_HPACK_NEVER_INDEXED : 0);
            if (k == 0) abort();
            len += k;
        }
        const uint8_t *in = buf;
        size_t left = len;
        int i = -1; /* the :status first */
        for (;;) {
            nghttp2_nv nv;
            int flags = 0;
            ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, 1);
            if (r < 0) {
                fprintf(stderr, "hpack_nghttp2: nghttp2: %s\n", nghttp2_strerror((int)r));
                mismatch("nghttp2 refused Kino's block", b, i);
                return fields;
            }
            in += r;
            left -= (size_t)r;
            if (flags & NGHTTP2_HD_INFLATE_EMIT) {
                if (i == -1) {
                    char digits[4];
                    snprintf(digits, sizeof digits, "%d", status);
                    if (nv.namelen != 7 || memcmp(nv.name, ":status", 7) || nv.valuelen != 3 ||
                        memcmp(nv.value, digits, 3))
                        mismatch(":status differs", b, i);
                } else if (i >= n) {
                    mismatch("more fields than sent", b, i);
                } else {
                    fld *w = &want[i];
                    int same = nv.namelen == w->nlen && nv.valuelen == w->vlen && !memcmp(nv.value, w->value, w->vlen);
                    for (size_t c = 0; same && c < w->nlen; c++) {
                        char lc = w->name[c] >= 'A' && w->name[c] <= 'Z' ? (char)(w->name[c] + 32) : w->name[c];
                        same = nv.name[c] == (uint8_t)lc;
                    }
                    if (!same) mismatch("a field differs", b, i);
                    if (w->never != ((nv.flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0))
                        mismatch("the never-indexed flag differs", b, i);
                }
                i++;
            }
            if (flags & NGHTTP2_HD_INFLATE_FINAL) {
                nghttp2_hd_inflate_end_headers(inf);
                break;
            }
            if (r == 0 && left == 0) break;
        }
        if (i != n) mismatch("fewer fields than sent", b, i);
        fields += n + 1;
    }
    nghttp2_hd_inflate_del(inf);
    return fields;
}

int main(void) {
    long a = nghttp2_to_kino();
    long b = failures ? 0 : kino_to_nghttp2();
    if (failures) {
        fprintf(stderr, "hpack_nghttp2: FAILED\n");
        return 1;
    }
    printf("hpack_nghttp2: nghttp2 %s -> Kino: %d blocks, %ld fields; Kino -> nghttp2: %d blocks, %ld fields; "
           "all equal\n",
           NGHTTP2_VERSION, BLOCKS, a, BLOCKS, b);
    return 0;
}
