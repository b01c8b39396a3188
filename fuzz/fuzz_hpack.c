/*
 * fuzz_hpack.c -- libFuzzer harness for the HPACK decoder and encoder
 * (kino_hpack.c).
 *
 * What it checks, and why:
 *
 *   1. Kino against a reference decoder written here from RFC 7541 in the
 *      plainest way: Huffman by walking a binary tree built from the
 *      Appendix B code table bit by bit (Kino decodes canonically, by
 *      length ranges), the dynamic table as an array of separately
 *      allocated entries shifted on every insertion (Kino keeps one
 *      buffer, a ring of records and moves strings when it wraps). Over a
 *      sequence of blocks on one connection the two must agree on every
 *      result (OK, TOO_LARGE, ERROR), on every field passed on (name,
 *      value, never-indexed flag), on the fields left out past the list
 *      cap or after the callback's stop, and on the whole dynamic table
 *      (entries and size) after each block. Kino's policy choices are
 *      modelled, not guessed: integers over 32 bits or with a sixth
 *      continuation byte are errors, any number of size updates may open
 *      a block.
 *
 *   2. Round trip: every list that decodes is encoded again with the
 *      response encoder (after a table size update and a :status the
 *      input decides) and decoded by a fresh decoder: the same status
 *      and list must come back,
 *      within kino_hpack_field_bound, without touching the table.
 *
 * Every block is decoded from an exact-size heap copy, so AddressSanitizer
 * reports any read past its end.
 *
 * Input layout: byte 0 picks the table limit (bits 0-1: 0, 64, 256,
 * 4096), the list cap (bits 2-3: 64, 512, 4096, 65536) and after how
 * many fields the callback says stop (bits 4-7, 0: never). Then blocks,
 * each a 2-byte big-endian length (cut to what remains) and its bytes.
 */
#define FUZZ_NAME "fuzz_hpack"
#include "fuzz.h"

#include "../kino_hpack.c"

/* ------------------------------------------------------------------ */
/* Reference Huffman decoder: a binary tree, one bit at a time          */
/* ------------------------------------------------------------------ */

static int16_t tree[2 * 257][2]; /* child per bit: > 0 node, < 0 -(symbol + 1), 0 none */
static int tree_nodes = 1;

static void tree_build(void) {
    for (int s = 0; s < 257; s++) {
        int node = 0, len = hp_huff_codes[s].len;
        for (int i = len - 1; i >= 0; i--) {
            int bit = (hp_huff_codes[s].code >> i) & 1;
            if (i == 0) {
                if (tree[node][bit]) fail("Huffman table: a code is a prefix of another");
                tree[node][bit] = (int16_t)-(s + 1);
            } else {
                if (tree[node][bit] < 0) fail("Huffman table: a code is a prefix of another");
                if (!tree[node][bit]) tree[node][bit] = (int16_t)tree_nodes++;
                node = tree[node][bit];
            }
        }
    }
}

/* Decoded length, or -1 on a bad coding (EOS, padding > 7 bits or not
 * all ones). out may be NULL. */
static long ref_huffman(const uint8_t *in, size_t len, uint8_t *out) {
    int node = 0, depth = 0, ones = 1;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        for (int b = 7; b >= 0; b--) {
            int bit = (in[i] >> b) & 1;
            int next = tree[node][bit];
            ones &= bit;
            depth++;
            if (next < 0) {
                if (-next - 1 == 256) return -1;
                if (out) out[n] = (uint8_t)(-next - 1);
                n++;
                node = depth = 0;
                ones = 1;
            } else {
                node = next;
            }
        }
    }
    if (depth > 7 || !ones) return -1;
    return n;
}

/* ------------------------------------------------------------------ */
/* Reference decoder                                                   */
/* ------------------------------------------------------------------ */

typedef struct ref_str {
    uint8_t *p;
    size_t n;
} ref_str;

typedef struct ref_entry {
    ref_str name, value;
} ref_entry;

typedef struct ref_dec {
    ref_entry *e; /* newest first */
    size_t count, cap;
    uint64_t size, max, limit, max_list;
    int dead;
} ref_dec;

/* A decoded field, as both decoders report them. */
typedef struct field {
    ref_str name, value;
    unsigned flags;
} field;

typedef struct list {
    field f[4096];
    int n, stop_after;
} list;

static ref_str str_dup(const uint8_t *p, size_t n) {
    ref_str s = {malloc(n ? n : 1), n};
    if (!s.p) abort();
    if (n) memcpy(s.p, p, n);
    return s;
}

static void list_add(list *l, const uint8_t *name, size_t nn, const uint8_t *value, size_t vn, unsigned flags) {
    if (l->n >= (int)(sizeof l->f / sizeof l->f[0])) fail("more fields than the harness keeps");
    l->f[l->n].name = str_dup(name, nn);
    l->f[l->n].value = str_dup(value, vn);
    l->f[l->n].flags = flags;
    l->n++;
}

static void list_clear(list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->f[i].name.p);
        free(l->f[i].value.p);
    }
    l->n = 0;
}

static void ref_evict(ref_dec *d, uint64_t to) {
    while (d->size > to) {
        ref_entry *e = &d->e[--d->count];
        d->size -= e->name.n + e->value.n + 32;
        free(e->name.p);
        free(e->value.p);
    }
}

/* Integer, as Kino's policy: at most 5 continuation bytes, < 2^32. */
static int ref_int(const uint8_t **p, const uint8_t *end, int prefix, uint64_t *v) {
    if (*p >= end) return -1;
    uint64_t mask = (1u << prefix) - 1, x = **p & mask;
    (*p)++;
    if (x < mask) {
        *v = x;
        return 0;
    }
    for (int k = 0;; k++) {
        if (k == 5 || *p >= end) return -1;
        uint8_t b = *(*p)++;
        x += (uint64_t)(b & 0x7f) << (7 * k);
        if (x > UINT32_MAX) return -1;
        if (!(b & 0x80)) break;
    }
    *v = x;
    return 0;
}

static int ref_string(const uint8_t **p, const uint8_t *end, ref_str *s) {
    if (*p >= end) return -1;
    int huff = **p & 0x80;
    uint64_t n;
    if (ref_int(p, end, 7, &n) < 0 || n > (uint64_t)(end - *p)) return -1;
    if (!huff) {
        *s = str_dup(*p, n);
    } else {
        long m = ref_huffman(*p, n, NULL);
        if (m < 0) return -1;
        s->p = malloc(m ? (size_t)m : 1);
        if (!s->p) abort();
        s->n = (size_t)m;
        ref_huffman(*p, n, s->p);
    }
    *p += n;
    return 0;
}

static int ref_entry_at(ref_dec *d, uint64_t index, ref_str *name, ref_str *value) {
    if (index == 0) return -1;
    if (index <= 61) {
        const hp_static_entry *e = &hp_static[index];
        name->p = (uint8_t *)e->name;
        name->n = e->name_len;
        value->p = (uint8_t *)e->value;
        value->n = e->value_len;
        return 0;
    }
    if (index - 61 > d->count) return -1;
    *name = d->e[index - 62].name;
    *value = d->e[index - 62].value;
    return 0;
}

/* Returns KINO_HPACK_OK, _TOO_LARGE or _ERROR, as Kino must. */
static int ref_decode(ref_dec *d, const uint8_t *p, size_t len, list *out) {
    const uint8_t *end = p + len;
    uint64_t total = 0;
    int fields = 0, over = 0, passing = 1;
    if (d->dead) return KINO_HPACK_ERROR;
    while (p < end) {
        uint8_t c = *p;
        ref_str name, value, nown = {0}, vown = {0};
        unsigned flags = 0;
        int add = 0;
        if (c & 0x80) {
            uint64_t i;
            if (ref_int(&p, end, 7, &i) < 0 || ref_entry_at(d, i, &name, &value) < 0) goto bad;
        } else if ((c & 0xe0) == 0x20) {
            uint64_t size;
            if (fields || ref_int(&p, end, 5, &size) < 0 || size > d->limit) goto bad;
            d->max = size;
            ref_evict(d, size);
            continue;
        } else {
            int prefix = c & 0x40 ? 6 : 4;
            uint64_t i;
            add = c & 0x40;
            if (!add && (c & 0x10)) flags = KINO_HPACK_NEVER_INDEXED;
            if (ref_int(&p, end, prefix, &i) < 0) goto bad;
            if (i) {
                ref_str unused;
                if (ref_entry_at(d, i, &name, &unused) < 0) goto bad;
                nown = str_dup(name.p, name.n); /* eviction below may free it */
            } else if (ref_string(&p, end, &nown) < 0) {
                goto bad;
            }
            name = nown;
            if (ref_string(&p, end, &vown) < 0) {
                free(nown.p);
                goto bad;
            }
            value = vown;
        }
        fields++;
        total += name.n + value.n + 32;
        if (total > d->max_list) over = 1;
        if (!over && passing) {
            list_add(out, name.p, name.n, value.p, value.n, flags);
            if (out->stop_after && out->n >= out->stop_after) passing = 0;
        }
        if (add) {
            uint64_t es = name.n + value.n + 32;
            if (es > d->max) {
                ref_evict(d, 0);
            } else {
                ref_evict(d, d->max - es);
                if (d->count == d->cap) {
                    d->cap = d->cap ? 2 * d->cap : 16;
                    d->e = realloc(d->e, d->cap * sizeof *d->e);
                    if (!d->e) abort();
                }
                memmove(&d->e[1], &d->e[0], d->count * sizeof *d->e);
                d->e[0].name = nown;
                d->e[0].value = vown;
                nown.p = vown.p = NULL;
                d->count++;
                d->size += es;
            }
        }
        free(nown.p);
        free(vown.p);
    }
    return over ? KINO_HPACK_TOO_LARGE : KINO_HPACK_OK;
bad:
    d->dead = 1;
    return KINO_HPACK_ERROR;
}

static void ref_free(ref_dec *d) {
    ref_evict(d, 0);
    free(d->e);
}

/* ------------------------------------------------------------------ */
/* Kino                                                                */
/* ------------------------------------------------------------------ */

static int collect(void *ud, const kino_hpack_field *f) {
    list *l = ud;
    list_add(l, (const uint8_t *)f->name, f->name_len, (const uint8_t *)f->value, f->value_len, f->flags);
    return l->stop_after && l->n >= l->stop_after;
}

static int same_str(ref_str a, const void *p, size_t n) {
    return a.n == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

static void same_lists(const list *a, const list *b, const char *what) {
    if (a->n != b->n) {
        fprintf(stderr, FUZZ_NAME ": %s: %d fields against %d\n", what, a->n, b->n);
        fail("field counts differ");
    }
    for (int i = 0; i < a->n; i++) {
        if (!same_str(a->f[i].name, b->f[i].name.p, b->f[i].name.n) ||
            !same_str(a->f[i].value, b->f[i].value.p, b->f[i].value.n) || a->f[i].flags != b->f[i].flags) {
            fprintf(stderr, FUZZ_NAME ": %s: field %d differs\n", what, i);
            fail("fields differ");
        }
    }
}

/* Encode :status and the list as a response block, decode it afresh:
 * the same status and list. */
static void round_trip(const list *l, uint32_t peer_size, int status) {
    size_t cap = KINO_HPACK_BEGIN_MAX + 5;
    for (int i = 0; i < l->n; i++) cap += kino_hpack_field_bound(l->f[i].name.n, l->f[i].value.n);
    uint8_t *buf = malloc(cap);
    if (!buf) abort();
    kino_hpack_encoder enc;
    kino_hpack_encoder_init(&enc);
    kino_hpack_encoder_set_peer_table_size(&enc, peer_size);
    size_t n = kino_hpack_encoder_begin(&enc, buf, cap);
    if ((peer_size < KINO_HPACK_TABLE_SIZE) != (n > 0)) fail("encoder: size update owed but not written, or the reverse");
    size_t k = kino_hpack_encode_status(buf + n, cap - n, status);
    if (k == 0 || k > 5) fail("encoder: :status");
    n += k;
    for (int i = 0; i < l->n; i++) {
        const field *f = &l->f[i];
        k = kino_hpack_encode_field(buf + n, cap - n, (const char *)f->name.p, f->name.n,
                                    (const char *)f->value.p, f->value.n, f->flags);
        if (k == 0 || k > kino_hpack_field_bound(f->name.n, f->value.n)) fail("encoder: field over its bound");
        n += k;
    }
    kino_hpack_decoder dec;
    if (kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0) != 0) abort(); /* the list passed a cap <= 65536 */
    uint8_t *exact = (uint8_t *)copy_of(buf, n);
    static list back;
    int rc = kino_hpack_decode(&dec, exact, n, collect, &back);
    if (rc != KINO_HPACK_OK) {
        fprintf(stderr, FUZZ_NAME ": round trip: %s\n", dec.error ? dec.error : "too large");
        fail("a re-encoded list does not decode");
    }
    char digits[4];
    snprintf(digits, sizeof digits, "%d", status);
    if (back.n != l->n + 1 || !same_str(back.f[0].name, ":status", 7) || !same_str(back.f[0].value, digits, 3))
        fail("round trip: :status");
    /* names are lowercased on the way: compare with the original lowercased */
    for (int i = 0; i < l->n; i++) {
        const field *f = &l->f[i], *g = &back.f[i + 1];
        int ok = g->name.n == f->name.n && same_str(g->value, f->value.p, f->value.n) && g->flags == f->flags;
        for (size_t k = 0; ok && k < f->name.n; k++) ok = g->name.p[k] == hp_lower(f->name.p[k]);
        if (!ok) fail("round trip: a field came back different");
    }
    if (dec.count != 0) fail("round trip: the encoder inserted into the table");
    list_clear(&back);
    kino_hpack_decoder_free(&dec);
    free(exact);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int built;
    if (!built) {
        tree_build();
        built = 1;
    }
    if (size < 1) return 0;
    static const uint32_t limits[] = {0, 64, 256, 4096}, caps[] = {64, 512, 4096, 65536};
    uint32_t limit = limits[data[0] & 3], cap = caps[(data[0] >> 2) & 3];
    int stop_after = data[0] >> 4;
    kino_hpack_decoder dec;
    if (kino_hpack_decoder_init(&dec, limit, cap, NULL, 0) != 0) fail("init failed");
    ref_dec ref = {0};
    ref.max = ref.limit = limit;
    ref.max_list = cap;
    static list got, want;
    got.stop_after = want.stop_after = stop_after;
    size_t pos = 1;
    while (pos < size) {
        size_t len = pos + 2 <= size ? ((size_t)data[pos] << 8 | data[pos + 1]) : 0;
        pos = pos + 2 <= size ? pos + 2 : size;
        if (len > size - pos) len = size - pos;
        uint8_t *block = (uint8_t *)copy_of(data + pos, len);
        int rc = kino_hpack_decode(&dec, block, len, collect, &got);
        int rrc = ref_decode(&ref, data + pos, len, &want);
        pos += len;
        if (rc != rrc) {
            fprintf(stderr, FUZZ_NAME ": Kino %d (%s), reference %d\n", rc, dec.error ? dec.error : "", rrc);
            fail("results differ");
        }
        if (rc == KINO_HPACK_ERROR && !dec.error) fail("an error without a reason");
        if (rc != KINO_HPACK_ERROR) {
            same_lists(&got, &want, "passed fields");
            if (dec.count != ref.count || dec.size != ref.size) fail("dynamic tables differ in size");
            for (uint32_t i = 1; i <= dec.count; i++) {
                kino_hpack_field f;
                if (kino_hpack_decoder_entry(&dec, i, &f) != 0) fail("entry missing");
                if (!same_str(ref.e[i - 1].name, f.name, f.name_len) ||
                    !same_str(ref.e[i - 1].value, f.value, f.value_len))
                    fail("dynamic tables differ");
            }
            if (dec.size > dec.max || dec.max > dec.limit) fail("table over its maximum");
            if (rc == KINO_HPACK_OK && !stop_after) round_trip(&got, (uint32_t)len * 31u, 100 + (int)(len * 7 % 900));
        }
        list_clear(&got);
        list_clear(&want);
        free(block);
        if (rc == KINO_HPACK_ERROR) break;
    }
    kino_hpack_decoder_free(&dec);
    ref_free(&ref);
    return 0;
}
