/*
 * test_hpack.c -- HPACK (kino_hpack.c): the RFC 7541 Appendix C examples
 * (fields, then the dynamic table and its size after each block), the
 * integer and Huffman primitives at their edges, every malformation the
 * decoder must refuse, the header-list cap against a block that refers
 * to one large entry many times, a dynamic table checked against a
 * model through thousands of insertions, and encode -> decode round
 * trips. Each table case carries a note that a failure prints.
 */
#include "kino_hpack.h"

/* hex text (spaces allowed) to bytes; returns the length */
static size_t hp_unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    for (const char *p = hex; *p;) {
        if (*p == ' ') {
            p++;
            continue;
        }
        unsigned v;
        if (n >= cap || sscanf(p, "%2x", &v) != 1) return n;
        out[n++] = (uint8_t)v;
        p += 2;
    }
    return n;
}

static void hp_tohex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = 0;
}

/* Collects the fields a decode passes on as "name: value\n" lines ("!"
 * before the name when never indexed), and stops after `stop_after`. */
typedef struct hp_list {
    char text[16384];
    size_t len;
    int n, stop_after;
} hp_list;

static int hp_collect(void *ud, const kino_hpack_field *f) {
    hp_list *l = ud;
    int w = snprintf(l->text + l->len, sizeof l->text - l->len, "%s%.*s: %.*s\n",
                     f->flags & KINO_HPACK_NEVER_INDEXED ? "!" : "", (int)f->name_len, f->name,
                     (int)f->value_len, f->value);
    if (w > 0 && (size_t)w < sizeof l->text - l->len) l->len += (size_t)w;
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

/* Sets +dec+ up with table limit +limit+ and list cap +cap+, decodes
 * +block+ into a cleared +got+ and returns kino_hpack_decode's result;
 * +dec+ is left as the decode left it, for the caller's checks and
 * kino_hpack_decoder_free. */
static int hp_decode_fresh(kino_hpack_decoder *dec, uint32_t limit, uint32_t cap, const uint8_t *block, size_t n,
                           hp_list *got) {
    CHECK(kino_hpack_decoder_init(dec, limit, cap, NULL, 0) == 0);
    memset(got, 0, sizeof *got);
    return kino_hpack_decode(dec, block, n, hp_collect, got);
}

/* The dynamic table as "name: value\n" lines, newest first. */
static void hp_table_text(const kino_hpack_decoder *dec, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    kino_hpack_field f;
    for (uint32_t i = 1; kino_hpack_decoder_entry(dec, i, &f) == 0; i++) {
        int w = snprintf(out + len, cap - len, "%.*s: %.*s\n", (int)f.name_len, f.name,
                         (int)f.value_len, f.value);
        if (w > 0 && (size_t)w < cap - len) len += (size_t)w;
    }
}

/* ---------------------------------------------------------------- */
/* Appendix C: each story is decoded on one decoder, block after block */

typedef struct hp_step {
    const char *hex, *fields, *table;
    uint32_t size;
} hp_step;

typedef struct hp_story {
    const char *note;
    uint32_t limit;
    hp_step steps[3];
} hp_story;

#define C5_DATE1 "Mon, 21 Oct 2013 20:13:21 GMT"
#define C5_DATE2 "Mon, 21 Oct 2013 20:13:22 GMT"
#define C5_COOKIE "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
#define C3_1 ":method: GET\n:scheme: http\n:path: /\n:authority: www.example.com\n"
#define C3_2 C3_1 "cache-control: no-cache\n"
#define C3_3 ":method: GET\n:scheme: https\n:path: /index.html\n:authority: www.example.com\ncustom-key: custom-value\n"
#define C5_1 ":status: 302\ncache-control: private\ndate: " C5_DATE1 "\nlocation: https://www.example.com\n"
#define C5_2 ":status: 307\ncache-control: private\ndate: " C5_DATE1 "\nlocation: https://www.example.com\n"
#define C5_3 ":status: 200\ncache-control: private\ndate: " C5_DATE2 "\nlocation: https://www.example.com\ncontent-encoding: gzip\nset-cookie: " C5_COOKIE "\n"
#define T5_1 "location: https://www.example.com\ndate: " C5_DATE1 "\ncache-control: private\n:status: 302\n"
#define T5_2 ":status: 307\nlocation: https://www.example.com\ndate: " C5_DATE1 "\ncache-control: private\n"
#define T5_3 "set-cookie: " C5_COOKIE "\ncontent-encoding: gzip\ndate: " C5_DATE2 "\n"
#define T3_3 "custom-key: custom-value\ncache-control: no-cache\n:authority: www.example.com\n"

static const hp_story hp_stories[] = {
    {"C.2.1 literal with indexing", 4096,
     {{"400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572", "custom-key: custom-header\n",
       "custom-key: custom-header\n", 55}}},
    {"C.2.2 literal without indexing", 4096,
     {{"040c 2f73 616d 706c 652f 7061 7468", ":path: /sample/path\n", "", 0}}},
    {"C.2.3 literal never indexed", 4096,
     {{"1008 7061 7373 776f 7264 0673 6563 7265 74", "!password: secret\n", "", 0}}},
    {"C.2.4 indexed field", 4096, {{"82", ":method: GET\n", "", 0}}},
    {"C.3 requests without Huffman", 4096,
     {{"8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", C3_1, ":authority: www.example.com\n", 57},
      {"8286 84be 5808 6e6f 2d63 6163 6865", C3_2,
       "cache-control: no-cache\n:authority: www.example.com\n", 110},
      {"8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", C3_3, T3_3, 164}}},
    {"C.4 requests with Huffman", 4096,
     {{"8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", C3_1, ":authority: www.example.com\n", 57},
      {"8286 84be 5886 a8eb 1064 9cbf", C3_2, "cache-control: no-cache\n:authority: www.example.com\n", 110},
      {"8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", C3_3, T3_3, 164}}},
    {"C.5 responses without Huffman, table 256 (evictions)", 256,
     {{"4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a"
       "3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
       C5_1, T5_1, 222},
      {"4803 3330 37c1 c0bf", C5_2, T5_2, 222},
      {"88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0"
       "5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851"
       "5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
       C5_3, T5_3, 215}}},
    {"C.6 responses with Huffman, table 256 (evictions)", 256,
     {{"4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b"
       "ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
       C5_1, T5_1, 222},
      {"4883 640e ffc1 c0bf", C5_2, T5_2, 222},
      {"88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad"
       "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160"
       "65c0 03ed 4ee5 b106 3d50 07",
       C5_3, T5_3, 215}}},
};

/* Re-encode a decoded list ("name: value\n" lines) with the response
 * encoder and decode it on a fresh decoder: the same list must come
 * back. Returns the encoded length, or 0 on a failure. */
static size_t hp_reencode(const char *text, const char *note) {
    uint8_t out[8192];
    size_t n = 0;
    char line[4096];
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t ll = (size_t)(nl - p);
        memcpy(line, p, ll);
        line[ll] = 0;
        p = nl + 1;
        unsigned flags = 0;
        char *name = line;
        if (*name == '!') {
            flags = KINO_HPACK_NEVER_INDEXED;
            name++;
        }
        char *colon = strstr(name + 1, ": "); /* a name may start with ':' */
        size_t k = kino_hpack_encode_field(out + n, sizeof out - n, name, (size_t)(colon - name),
                                           colon + 2, strlen(colon + 2), flags);
        CHECKF(k > 0 && k <= kino_hpack_field_bound((size_t)(colon - name), strlen(colon + 2)),
               "%s: re-encode %s (%zu)", note, name, k);
        n += k;
    }
    kino_hpack_decoder dec;
    hp_list got;
    int rc = hp_decode_fresh(&dec, 4096, 65536, out, n, &got);
    CHECKF(rc == KINO_HPACK_OK, "%s: re-encoded block decodes (%s)", note, dec.error ? dec.error : "");
    CHECKF(strcmp(got.text, text) == 0, "%s: round trip\n got: %s\nwant: %s", note, got.text, text);
    CHECKF(dec.count == 0, "%s: the encoder never inserts", note);
    kino_hpack_decoder_free(&dec);
    return n;
}

static void test_hpack_appendix_c(void) {
    for (size_t s = 0; s < sizeof hp_stories / sizeof hp_stories[0]; s++) {
        const hp_story *st = &hp_stories[s];
        kino_hpack_decoder dec;
        CHECKF(kino_hpack_decoder_init(&dec, st->limit, 65536, NULL, 0) == 0, "%s: init", st->note);
        for (int i = 0; i < 3 && st->steps[i].hex; i++) {
            const hp_step *step = &st->steps[i];
            uint8_t block[512];
            size_t n = hp_unhex(step->hex, block, sizeof block);
            hp_list got = {.len = 0};
            int rc = kino_hpack_decode(&dec, block, n, hp_collect, &got);
            CHECKF(rc == KINO_HPACK_OK, "%s #%d: rc %d (%s)", st->note, i + 1, rc, dec.error ? dec.error : "");
            CHECKF(strcmp(got.text, step->fields) == 0, "%s #%d fields:\n%s", st->note, i + 1, got.text);
            char table[2048];
            hp_table_text(&dec, table, sizeof table);
            CHECKF(strcmp(table, step->table) == 0, "%s #%d table:\n%s", st->note, i + 1, table);
            CHECKF(dec.size == step->size, "%s #%d table size %u, want %u", st->note, i + 1, dec.size, step->size);
            hp_reencode(got.text, st->note);

            /* one byte short: an error, or fewer fields, never a crash;
             * on a copy of the table state, so the story goes on */
            kino_hpack_decoder cut;
            CHECK(kino_hpack_decoder_init(&cut, st->limit, 65536, NULL, 0) == 0);
            for (int j = 0; j < i; j++) {
                uint8_t b2[512];
                size_t n2 = hp_unhex(st->steps[j].hex, b2, sizeof b2);
                kino_hpack_decode(&cut, b2, n2, NULL, NULL);
            }
            hp_list part = {.len = 0};
            rc = kino_hpack_decode(&cut, block, n - 1, hp_collect, &part);
            CHECKF(rc == KINO_HPACK_ERROR || part.n < got.n || strcmp(part.text, got.text) != 0,
                   "%s #%d: a block cut short decodes as the whole", st->note, i + 1);
            kino_hpack_decoder_free(&cut);
        }
        kino_hpack_decoder_free(&dec);
    }
}

/* ---------------------------------------------------------------- */
/* Integers (§5.1, C.1)                                                */

static void test_hpack_integers(void) {
    static const struct {
        const char *note;
        uint32_t v;
        int prefix;
        const char *hex;
    } enc[] = {
        {"C.1.1 10, 5-bit prefix", 10, 5, "0a"},
        {"C.1.2 1337, 5-bit prefix", 1337, 5, "1f9a0a"},
        {"C.1.3 42, 8-bit prefix", 42, 8, "2a"},
        {"prefix minus one fits the prefix", 30, 5, "1e"},
        {"prefix value itself takes a zero byte", 31, 5, "1f00"},
        {"prefix + 127: one continuation byte", 31 + 127, 5, "1f7f"},
        {"prefix + 128: two", 31 + 128, 5, "1f8001"},
        {"1-bit prefix", 1, 1, "0100"},
        {"2^32 - 1, 5-bit prefix", UINT32_MAX, 5, "1fe0ffffff0f"},
        {"2^32 - 1, 8-bit prefix", UINT32_MAX, 8, "ff80feffff0f"},
    };
    for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
        uint8_t out[16], want[16];
        char hex[40];
        size_t wn = hp_unhex(enc[i].hex, want, sizeof want);
        size_t n = kino_hpack_encode_int(out, sizeof out, enc[i].v, enc[i].prefix, 0);
        hp_tohex(out, n, hex);
        CHECKF(n == wn && memcmp(out, want, n) == 0, "%s: encoded %s", enc[i].note, hex);
        CHECKF(kino_hpack_encode_int(out, wn - 1, enc[i].v, enc[i].prefix, 0) == 0, "%s: no room", enc[i].note);
        const uint8_t *p = want;
        uint32_t v = 0;
        CHECKF(kino_hpack_decode_int(&p, want + wn, enc[i].prefix, &v) == 0 && v == enc[i].v && p == want + wn,
               "%s: decoded %u", enc[i].note, v);
        p = want;
        CHECKF(wn == 1 || kino_hpack_decode_int(&p, want + wn - 1, enc[i].prefix, &v) == -1,
               "%s: truncated", enc[i].note);
    }
    /* the bits above the prefix are kept on encode and ignored on decode */
    uint8_t b[8];
    CHECK(kino_hpack_encode_int(b, sizeof b, 3, 5, 0xe0) == 1 && b[0] == 0xe3);
    static const struct {
        const char *note;
        int prefix, rc;
        const char *hex;
    } dec[] = {
        {"2^32: over 32 bits", 5, -2, "1fe1ffffff0f"},
        {"a sixth continuation byte, even zero", 5, -2, "1f808080808000"},
        {"five zero continuation bytes are still 31", 5, 0, "1f8080808000"},
        {"huge fifth group", 5, -2, "1fffffffff7f"},
        {"empty input", 5, -1, ""},
        {"continuation bit set on the last byte", 5, -1, "1f80"},
    };
    for (size_t i = 0; i < sizeof dec / sizeof dec[0]; i++) {
        uint8_t in[16];
        size_t n = hp_unhex(dec[i].hex, in, sizeof in);
        const uint8_t *p = in;
        uint32_t v;
        int rc = kino_hpack_decode_int(&p, in + n, dec[i].prefix, &v);
        CHECKF(rc == dec[i].rc, "%s: rc %d", dec[i].note, rc);
    }
    /* every value around each power of two, every prefix: round trip */
    for (int prefix = 1; prefix <= 8; prefix++) {
        for (int bit = 0; bit < 32; bit++) {
            for (int d = -1; d <= 1; d++) {
                uint32_t v = (uint32_t)((1ull << bit) + (uint64_t)(int64_t)d);
                uint8_t out[8];
                size_t n = kino_hpack_encode_int(out, sizeof out, v, prefix, 0);
                const uint8_t *p = out;
                uint32_t back = 0;
                if (n == 0 || kino_hpack_decode_int(&p, out + n, prefix, &back) != 0 || back != v || p != out + n) {
                    CHECKF(0, "integer %u with a %d-bit prefix: round trip gave %u", v, prefix, back);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- */
/* Huffman (Appendix B)                                               */

/* The canonical decoding tables, derived again from the code table. */
static void test_hpack_huffman_tables(void) {
    int count[31] = {0}, ok = 1;
    for (int s = 0; s < 257; s++) count[hp_huff_codes[s].len]++;
    uint32_t code = 0;
    int idx = 0;
    for (int l = 1; l <= 30; l++) {
        ok &= hp_huff_first[l] == code && hp_huff_base[l] == idx;
        ok &= hp_huff_limit[l] == ((uint64_t)(code + (uint32_t)count[l]) << (32 - l));
        /* canonical: the codes of this length, in symbol order, from `code` */
        uint32_t c = code;
        for (int s = 0; s < 257; s++) {
            if (hp_huff_codes[s].len != l) continue;
            ok &= hp_huff_codes[s].code == c++;
            ok &= hp_huff_sorted[idx++] == s;
        }
        code = (code + (uint32_t)count[l]) << 1;
    }
    CHECKF(ok, "the Huffman decoding tables follow from the code table");
    for (int b = 0; b < 256; b++) {
        unsigned want = 0;
        for (int s = 0; s < 257 && !want; s++) {
            int l = hp_huff_codes[s].len;
            if (l <= 8 && (uint32_t)(b >> (8 - l)) == hp_huff_codes[s].code) want = (unsigned)(s << 4 | l);
        }
        if (hp_huff_fast[b] != want) CHECKF(0, "hp_huff_fast[%d] is %#x, want %#x", b, hp_huff_fast[b], want);
    }
    CHECKF(code == (1u << 31), "the code is complete (Kraft sum 1)");
    CHECKF(hp_huff_codes[256].len == 30 && hp_huff_codes[256].code == 0x3fffffff, "EOS is 30 ones");
}

static void test_hpack_huffman(void) {
    static const struct {
        const char *text, *hex;
    } known[] = {
        /* strings of Appendix C.4 and C.6 */
        {"www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"},
        {"no-cache", "a8eb10649cbf"},
        {"custom-key", "25a849e95ba97d7f"},
        {"custom-value", "25a849e95bb8e8b4bf"},
        {"302", "6402"},
        {"307", "640eff"},
        {"private", "aec3771a4b"},
        {C5_DATE1, "d07abe941054d444a8200595040b8166e082a62d1bff"},
        {"https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"},
        {"gzip", "9bd9ab"},
        {C5_COOKIE, "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint8_t out[128], want[128], back[128];
        char hex[260];
        size_t len = strlen(known[i].text), wn = hp_unhex(known[i].hex, want, sizeof want);
        size_t n = kino_hpack_huffman_len(known[i].text, len, 0);
        CHECKF(n == wn, "%s: Huffman length %zu", known[i].text, n);
        n = kino_hpack_huffman_encode(out, known[i].text, len, 0);
        hp_tohex(out, n, hex);
        CHECKF(n == wn && memcmp(out, want, n) == 0, "%s: encoded %s", known[i].text, hex);
        const char *why = NULL;
        long d = kino_hpack_huffman_decode(back, sizeof back, want, wn, &why);
        CHECKF(d == (long)len && memcmp(back, known[i].text, len) == 0, "%s: decoded (%s)", known[i].text, why);
        CHECKF(kino_hpack_huffman_decode(NULL, 0, want, wn, &why) == (long)len, "%s: measured", known[i].text);
        CHECKF(len == 0 || kino_hpack_huffman_decode(back, len - 1, want, wn, &why) == -2, "%s: no room", known[i].text);
    }
    /* lowercasing while encoding */
    uint8_t a[64], b[64];
    size_t na = kino_hpack_huffman_encode(a, "Content-Type", 12, 1);
    size_t nb = kino_hpack_huffman_encode(b, "content-type", 12, 0);
    CHECK(na == nb && memcmp(a, b, na) == 0);

    /* every byte value, alone and all together, both ways */
    uint8_t all[256], enc[1024], dec[256];
    for (int c = 0; c < 256; c++) {
        all[c] = (uint8_t)c;
        size_t n = kino_hpack_huffman_encode(enc, (const char *)&all[c], 1, 0);
        long d = kino_hpack_huffman_decode(dec, 1, enc, n, NULL);
        if (!(n == kino_hpack_huffman_len((const char *)&all[c], 1, 0) && d == 1 && dec[0] == c))
            CHECKF(0, "byte %d: Huffman round trip", c);
    }
    size_t n = kino_hpack_huffman_encode(enc, (const char *)all, 256, 0);
    CHECK(kino_hpack_huffman_decode(dec, sizeof dec, enc, n, NULL) == 256 && memcmp(dec, all, 256) == 0);

    static const struct {
        const char *note, *hex;
        long rc;
        const char *why;
    } bad[] = {
        {"'a' then 3 one bits of padding", "1f", 1, NULL},
        {"'0' '0' ':' then 7 one bits of padding", "002e7f", 3, NULL},
        {"'a' then 3 zero bits of padding", "18", -1, "Huffman padding not all ones"},
        {"'a' then 011 padding", "1b", -1, "Huffman padding not all ones"},
        {"'a' then 11 one bits: padding longer than 7 bits", "1fff", -1, "Huffman padding longer than 7 bits"},
        {"a lone byte of ones: 8 bits of padding", "ff", -1, "Huffman padding longer than 7 bits"},
        {"24 one bits: a cut code, not padding", "ffffff", -1, "Huffman padding longer than 7 bits"},
        {"EOS (30 ones) and 2 ones of padding", "ffffffff", -1, "EOS in a Huffman string"},
        {"'a', EOS, padding", "1fffffffff", -1, "EOS in a Huffman string"},
        {"29 ones and 3 zeros: symbol 22, then zero padding", "fffffff8", -1, "Huffman padding not all ones"},
        {"sym 10 (30 bits) and 2 ones", "fffffff3", 1, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[16];
        size_t len = hp_unhex(bad[i].hex, in, sizeof in);
        const char *why = NULL;
        long rc = kino_hpack_huffman_decode(dec, sizeof dec, in, len, &why);
        CHECKF(rc == bad[i].rc && (!bad[i].why || (why && strcmp(why, bad[i].why) == 0)), "%s: rc %ld (%s)",
               bad[i].note, rc, why ? why : "");
    }
}

/* ---------------------------------------------------------------- */
/* The decoder's refusals: each is a COMPRESSION_ERROR with a reason */

static void test_hpack_malformed(void) {
    static const struct {
        const char *note, *hex, *why;
    } bad[] = {
        {"index 0", "80", "index 0"},
        {"index 62 with an empty dynamic table", "be", "index past the dynamic table"},
        {"index 63 after one insertion", "40 0161 0162 bf", "index past the dynamic table"},
        {"literal name by index 0 is a new name, then the block ends", "40", "block ends before a string"},
        {"literal name index 62, table empty", "7e0161", "index past the dynamic table"},
        {"never-indexed literal, name index 70", "1f370161", "index past the dynamic table"},
        {"index over 32 bits", "ffffffffff0f", "integer over 32 bits"},
        {"index integer cut short", "ff80", "integer runs past the block"},
        {"string length cut short", "00ff", "integer runs past the block"},
        {"index 127 in five zero-padded bytes: past the table", "ff808080800082", "index past the dynamic table"},
        {"string longer than the block", "000561", "string runs past the block"},
        {"value missing", "000161", "block ends before a string"},
        {"string length over 32 bits", "007fffffffff0f", "integer over 32 bits"},
        {"size update above the limit (4097)", "3fe21f", "table size update above the limit"},
        {"size update after a field", "8220", "table size update after a field"},
        {"size update after a field, then more", "82203fe11f", "table size update after a field"},
        {"Huffman name with zero padding", "00811801 61", "Huffman padding not all ones"},
        {"Huffman value with 8 bits of padding", "000161 81ff", "Huffman padding longer than 7 bits"},
        {"Huffman value holding EOS", "000161 84ffffffff", "EOS in a Huffman string"},
        {"Huffman string longer than the block", "000161 85ff", "string runs past the block"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[64];
        size_t len = hp_unhex(bad[i].hex, in, sizeof in);
        kino_hpack_decoder dec;
        hp_list got;
        int rc = hp_decode_fresh(&dec, 4096, 65536, in, len, &got);
        CHECKF(rc == KINO_HPACK_ERROR && dec.error && strcmp(dec.error, bad[i].why) == 0, "%s: rc %d (%s)",
               bad[i].note, rc, dec.error ? dec.error : "no error");
        /* the decoder stays failed: a good block is refused too */
        uint8_t ok[] = {0x82};
        CHECKF(kino_hpack_decode(&dec, ok, 1, NULL, NULL) == KINO_HPACK_ERROR, "%s: stays failed", bad[i].note);
        kino_hpack_decoder_free(&dec);
    }

    static const struct {
        const char *note, *hex;
        uint32_t limit, max_after;
        const char *fields;
        uint32_t count, size; /* the table after */
    } good[] = {
        {"size update to 0 then a field", "20 82", 4096, 0, ":method: GET\n", 0, 0},
        {"two size updates at the start", "20 3fe11f 82", 4096, 4096, ":method: GET\n", 0, 0},
        {"size update to exactly the limit", "3fe11f", 4096, 4096, "", 0, 0},
        {"size update, no field", "3f45", 4096, 100, "", 0, 0},
        {"empty block", "", 4096, 4096, "", 0, 0},
        {"limit 0: a size update to 0", "20", 0, 0, "", 0, 0},
        {"empty name and value", "000000", 4096, 4096, ": \n", 0, 0},
        {"limit 0: an incremental literal is passed on, not stored", "40 0161 0162 82", 0, 0,
         "a: b\n:method: GET\n", 0, 0},
        {"an entry of exactly the table's size is stored (1 + 31 + 32 = 64)",
         "20 3f21 400161 1f 61616161616161616161616161616161616161616161616161616161616161", 4096, 64,
         "a: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 1, 64},
        {"one byte more empties the table (1 + 32 + 32 = 65)",
         "20 3f21 400161 0161 400161 20 6161616161616161616161616161616161616161616161616161616161616161", 4096, 64,
         "a: a\na: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 0, 0},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t in[128];
        size_t len = hp_unhex(good[i].hex, in, sizeof in);
        kino_hpack_decoder dec;
        hp_list got;
        int rc = hp_decode_fresh(&dec, good[i].limit, 65536, in, len, &got);
        CHECKF(rc == KINO_HPACK_OK && !dec.error && dec.max == good[i].max_after &&
                   strcmp(got.text, good[i].fields) == 0,
               "%s: rc %d max %u (%s) fields %s", good[i].note, rc, dec.max, dec.error ? dec.error : "", got.text);
        CHECKF(dec.count == good[i].count && dec.size == good[i].size, "%s: table %u entries, %u bytes", good[i].note,
               dec.count, dec.size);
        kino_hpack_decoder_free(&dec);
    }

    /* a limit under the default: an update to 4096 is now too large */
    kino_hpack_decoder dec;
    CHECK(kino_hpack_decoder_init(&dec, 1024, 65536, NULL, 0) == 0);
    uint8_t up[] = {0x3f, 0xe1, 0x1f};
    CHECK(kino_hpack_decode(&dec, up, sizeof up, NULL, NULL) == KINO_HPACK_ERROR);
    kino_hpack_decoder_free(&dec);

    /* init refuses what it cannot honour */
    uint8_t small[16];
    CHECK(kino_hpack_decoder_init(&dec, 4096, 65536, small, sizeof small) == -1);
    CHECK(kino_hpack_decoder_init(&dec, KINO_HPACK_MAX_LIMIT + 1, 65536, NULL, 0) == -1);
    CHECK(kino_hpack_decoder_init(&dec, 4096, 0, NULL, 0) == -1);
    uint8_t one[] = {0x82};
    CHECK(kino_hpack_decode(&dec, one, 1, NULL, NULL) == KINO_HPACK_ERROR && dec.error); /* not set up */
    kino_hpack_decoder_free(&dec); /* after a failed init: harmless */
    CHECK(kino_hpack_decode(&dec, one, 1, NULL, NULL) == KINO_HPACK_ERROR); /* freed */
    CHECK(kino_hpack_scratch_size(4096, 65536) == 65536 && kino_hpack_scratch_size(8192, 100) == 8192);
}

/* ---------------------------------------------------------------- */
/* The header-list cap (RFC 9113 §6.5.2 accounting) and the HPACK bomb */

/* A literal with incremental indexing, new name, raw strings. */
static size_t hp_put_literal(uint8_t *out, uint8_t first, const char *name, const char *value, size_t vlen) {
    size_t n = 0, nl = strlen(name);
    out[n++] = first;
    n += kino_hpack_encode_int(out + n, 16, (uint32_t)nl, 7, 0);
    memcpy(out + n, name, nl);
    n += nl;
    n += kino_hpack_encode_int(out + n, 16, (uint32_t)vlen, 7, 0);
    memcpy(out + n, value, vlen);
    return n + vlen;
}

static void test_hpack_list_cap(void) {
    /* the bomb: one 4000-byte entry, then 2000 one-byte references to it:
     * a 6 KB block that would expand to 8 MB of header fields */
    static uint8_t block[8192];
    static char big[4000];
    memset(big, 'a', sizeof big);
    size_t n = hp_put_literal(block, 0x40, "x", big, sizeof big);
    for (int i = 0; i < 2000; i++) block[n++] = 0xbe;
    block[n++] = 0x82; /* one more field after the references */
    kino_hpack_decoder dec;
    hp_list got;
    int rc = hp_decode_fresh(&dec, 4096, 16384, block, n, &got);
    /* each field costs 1 + 4000 + 32 = 4033: four fit in 16384, not five */
    CHECKF(rc == KINO_HPACK_TOO_LARGE, "bomb: rc %d (%s)", rc, dec.error ? dec.error : "");
    CHECKF(got.n == 4, "bomb: %d fields passed on, want 4", got.n);
    CHECKF(dec.count == 1 && dec.size == 4033, "bomb: the table is in step (%u entries, %u)", dec.count, dec.size);
    /* the connection lives: the next block refers to the entry */
    uint8_t next[] = {0xbe, 0x82};
    hp_list after = {.len = 0};
    CHECK(kino_hpack_decode(&dec, next, sizeof next, hp_collect, &after) == KINO_HPACK_OK && after.n == 2);
    kino_hpack_decoder_free(&dec);

    /* exactly at the cap is fine, one byte over is not */
    static const struct {
        const char *note;
        uint32_t cap;
        int rc, passed;
    } edge[] = {
        {"list exactly at the cap", 42 + 42, KINO_HPACK_OK, 2},   /* :method GET = 7+3+32 */
        {"list one byte over the cap", 42 + 41, KINO_HPACK_TOO_LARGE, 1},
        {"first field already over the cap", 41, KINO_HPACK_TOO_LARGE, 0},
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        uint8_t two[] = {0x82, 0x82};
        hp_list l;
        rc = hp_decode_fresh(&dec, 4096, edge[i].cap, two, sizeof two, &l);
        CHECKF(rc == edge[i].rc && l.n == edge[i].passed, "%s: rc %d, %d passed", edge[i].note, rc, l.n);
        kino_hpack_decoder_free(&dec);
    }

    /* a Huffman string longer than the scratch: not passed on, not
     * stored (it cannot fit the table either), the block still decodes */
    CHECK(kino_hpack_decoder_init(&dec, 64, 64, NULL, 0) == 0);
    static char text[300];
    memset(text, 'e', sizeof text);
    uint8_t *p = block;
    *p++ = 0x40;
    p += kino_hpack_encode_string(p, 64, "n", 1, 0);
    p += kino_hpack_encode_string(p, 512, text, sizeof text, 0);
    *p++ = 0x82;
    CHECK(block[3] & 0x80); /* the value is Huffman-coded */
    hp_list l = {.len = 0};
    rc = kino_hpack_decode(&dec, block, (size_t)(p - block), hp_collect, &l);
    CHECKF(rc == KINO_HPACK_TOO_LARGE && l.n == 0 && dec.count == 0, "oversize Huffman value: rc %d, %d passed, %u entries",
           rc, l.n, dec.count);
    kino_hpack_decoder_free(&dec);

    /* the callback's stop: later fields are not passed on, but the
     * table still follows the block (C.3.3 after C.3.1, C.3.2) */
    CHECK(kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0) == 0);
    const hp_story *c3 = &hp_stories[4];
    for (int i = 0; i < 3; i++) {
        n = hp_unhex(c3->steps[i].hex, block, sizeof block);
        hp_list s = {.len = 0, .stop_after = 1};
        rc = kino_hpack_decode(&dec, block, n, hp_collect, &s);
        CHECKF(rc == KINO_HPACK_OK && s.n == 1, "stop after one field, block %d: rc %d, %d passed", i + 1, rc, s.n);
    }
    CHECKF(dec.size == 164, "stopped early, the table is still 164 bytes (%u)", dec.size);
    kino_hpack_decoder_free(&dec);

    /* a shared scratch buffer, for two decoders */
    static uint8_t shared[65536];
    kino_hpack_decoder d1, d2;
    CHECK(kino_hpack_decoder_init(&d1, 4096, 65536, shared, sizeof shared) == 0);
    CHECK(kino_hpack_decoder_init(&d2, 4096, 65536, shared, sizeof shared) == 0);
    const hp_story *c4 = &hp_stories[5];
    for (int i = 0; i < 3; i++) {
        n = hp_unhex(c4->steps[i].hex, block, sizeof block);
        hp_list l1 = {.len = 0}, l2 = {.len = 0};
        CHECK(kino_hpack_decode(&d1, block, n, hp_collect, &l1) == KINO_HPACK_OK);
        CHECK(kino_hpack_decode(&d2, block, n, hp_collect, &l2) == KINO_HPACK_OK);
        CHECKF(strcmp(l1.text, c4->steps[i].fields) == 0 && strcmp(l2.text, l1.text) == 0,
               "shared scratch, block %d", i + 1);
    }
    kino_hpack_decoder_free(&d1);
    kino_hpack_decoder_free(&d2);
}

/* ---------------------------------------------------------------- */
/* The dynamic table against a model                                  */

typedef struct hp_model_entry {
    char name[80], value[200];
} hp_model_entry;

static void test_hpack_table_model(void) {
    /* §4.4: an insertion whose name is the entry it evicts keeps the name */
    kino_hpack_decoder dec;
    CHECK(kino_hpack_decoder_init(&dec, 100, 65536, NULL, 0) == 0);
    uint8_t block[1024];
    size_t n = hp_put_literal(block, 0x40, "abcdefghijklmnopqrst", "1", 1); /* 20 + 1 + 32 = 53 */
    block[n++] = 0x7e; /* incremental, name = index 62 (the entry above) */
    n += kino_hpack_encode_int(block + n, 8, 30, 7, 0);
    memset(block + n, 'v', 30);
    n += 30; /* 20 + 30 + 32 = 82: evicts the first */
    hp_list l = {.len = 0};
    CHECK(kino_hpack_decode(&dec, block, n, hp_collect, &l) == KINO_HPACK_OK);
    char table[1024];
    hp_table_text(&dec, table, sizeof table);
    CHECKF(strcmp(table, "abcdefghijklmnopqrst: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\n") == 0 && dec.size == 82,
           "§4.4 name of an evicted entry: %s", table);
    kino_hpack_decoder_free(&dec);

    /* thousands of insertions of varied sizes, size updates now and
     * then, some literals without indexing, references to random
     * entries: after each block the table equals a plain model */
    static hp_model_entry model[64];
    int count = 0;
    uint32_t size = 0, max = 512;
    CHECK(kino_hpack_decoder_init(&dec, 512, 65536, NULL, 0) == 0);
    unsigned seed = 12345;
#define HP_RAND() (seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff)
    int bad = 0;
    for (int round = 0; round < 3000 && !bad; round++) {
        n = 0;
        hp_list want = {.len = 0};
        if (HP_RAND() % 10 == 0) { /* a size update */
            uint32_t to = HP_RAND() % 513;
            n += kino_hpack_encode_int(block + n, 8, to, 5, 0x20);
            max = to;
            while (size > max) {
                count--;
                size -= (uint32_t)(strlen(model[count].name) + strlen(model[count].value) + 32);
            }
        }
        int fields = 1 + HP_RAND() % 3;
        for (int f = 0; f < fields; f++) {
            int kind = HP_RAND() % 4;
            if (kind == 0 && count > 0) { /* reference */
                int i = HP_RAND() % count;
                n += kino_hpack_encode_int(block + n, 8, (uint32_t)(62 + i), 7, 0x80);
                want.len += (size_t)sprintf(want.text + want.len, "%s: %s\n", model[i].name, model[i].value);
                continue;
            }
            hp_model_entry e;
            int nl = 1 + HP_RAND() % 40, vl = HP_RAND() % 150;
            for (int k = 0; k < nl; k++) e.name[k] = (char)('a' + (round + k) % 26);
            for (int k = 0; k < vl; k++) e.value[k] = (char)('A' + (round * 7 + k) % 26);
            e.name[nl] = e.value[vl] = 0;
            int add = kind != 1;
            block[n++] = add ? 0x40 : 0x00;
            n += kino_hpack_encode_string(block + n, 64, e.name, (size_t)nl, 0);
            n += kino_hpack_encode_string(block + n, 256, e.value, (size_t)vl, 0);
            want.len += (size_t)sprintf(want.text + want.len, "%s: %s\n", e.name, e.value);
            if (!add) continue;
            uint32_t es = (uint32_t)(nl + vl + 32);
            while (count > 0 && size + es > max) {
                count--;
                size -= (uint32_t)(strlen(model[count].name) + strlen(model[count].value) + 32);
            }
            if (es <= max) {
                memmove(&model[1], &model[0], sizeof model[0] * (size_t)count);
                model[0] = e;
                count++;
                size += es;
            }
        }
        hp_list got = {.len = 0};
        int rc = kino_hpack_decode(&dec, block, n, hp_collect, &got);
        if (rc != KINO_HPACK_OK || strcmp(got.text, want.text) != 0 || dec.size != size || dec.count != (uint32_t)count) {
            CHECKF(0, "model round %d: rc %d (%s), size %u/%u, count %u/%d", round, rc, dec.error ? dec.error : "",
                   dec.size, size, dec.count, count);
            bad = 1;
        }
        for (int i = 0; i < count && !bad; i++) {
            kino_hpack_field f;
            if (kino_hpack_decoder_entry(&dec, (uint32_t)i + 1, &f) != 0 || f.name_len != strlen(model[i].name) ||
                memcmp(f.name, model[i].name, f.name_len) != 0 || f.value_len != strlen(model[i].value) ||
                memcmp(f.value, model[i].value, f.value_len) != 0) {
                CHECKF(0, "model round %d: entry %d differs", round, i + 1);
                bad = 1;
            }
        }
    }
#undef HP_RAND
    CHECK(!bad);
    kino_hpack_decoder_free(&dec);
}

/* ---------------------------------------------------------------- */
/* The encoder                                                        */

static void test_hpack_encoder(void) {
    static const struct {
        const char *note;
        int status;
        const char *hex;
    } st[] = {
        {"200 is static index 8", 200, "88"}, {"204", 204, "89"}, {"206", 206, "8a"},
        {"304", 304, "8b"}, {"400", 400, "8c"}, {"404", 404, "8d"}, {"500", 500, "8e"},
        {"302: literal, Huffman (as in C.6.1)", 302, "08826402"},
        {"307: Huffman is no shorter, raw (C.6.2 codes it anyway)", 307, "0803333037"},
        {"101", 101, "08820803"},
        {"999: Huffman is not shorter, raw", 999, "0803393939"},
        {"99 is refused", 99, ""},
        {"1000 is refused", 1000, ""},
    };
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        uint8_t out[16], want[16];
        char hex[40];
        size_t wn = hp_unhex(st[i].hex, want, sizeof want);
        size_t n = kino_hpack_encode_status(out, sizeof out, st[i].status);
        hp_tohex(out, n, hex);
        CHECKF(n == wn && memcmp(out, want, n) == 0, "%s: %s", st[i].note, hex);
        CHECKF(wn == 0 || kino_hpack_encode_status(out, wn - 1, st[i].status) == 0, "%s: no room", st[i].note);
    }

    static const struct {
        const char *note, *name, *value;
        unsigned flags;
        const char *hex;
    } fields[] = {
        {"static name (index 24), Huffman value", "cache-control", "private", 0, "0f0985aec3771a4b"},
        {"uppercase name is lowercased, static index 31", "Content-Type", "text/plain", 0,
         "0f10 87497ca58ae819aa"},
        {"name and value match a static entry: indexed", ":method", "GET", 0, "82"},
        {"accept-encoding: gzip, deflate is index 16", "accept-encoding", "gzip, deflate", 0, "90"},
        {"second entry of a name (:path /index.html)", ":path", "/index.html", 0, "85"},
        {"new name, Huffman", "custom-key", "custom-value", 0, "0088 25a849e95ba97d7f 89 25a849e95bb8e8b4bf"},
        {"new uppercase name lowercased", "X-Y", "1", 0, "0003 782d79 0131"},
        {"never indexed, static name (index 23)", "authorization", "secret", KINO_HPACK_NEVER_INDEXED,
         "1f08 8441496153"},
        {"never indexed, static full match stays a literal", ":method", "GET", KINO_HPACK_NEVER_INDEXED,
         "12 03474554"},
        {"empty value", "server", "", 0, "0f27 00"},
        {"value Huffman would lengthen stays raw", "x", "\x01\x02", 0, "0001 78 020102"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        uint8_t out[128], want[128];
        char hex[260];
        size_t nl = strlen(fields[i].name), vl = strlen(fields[i].value);
        size_t wn = hp_unhex(fields[i].hex, want, sizeof want);
        size_t n = kino_hpack_encode_field(out, sizeof out, fields[i].name, nl, fields[i].value, vl, fields[i].flags);
        hp_tohex(out, n, hex);
        CHECKF(n == wn && memcmp(out, want, n) == 0, "%s: %s", fields[i].note, hex);
        CHECKF(n <= kino_hpack_field_bound(nl, vl), "%s: within the bound", fields[i].note);
        /* every smaller room: 0, and nothing written past the room */
        for (size_t cap = 0; cap < wn; cap++) {
            uint8_t guard[140];
            memset(guard, 0xa5, sizeof guard);
            size_t k = kino_hpack_encode_field(guard, cap, fields[i].name, nl, fields[i].value, vl, fields[i].flags);
            int clean = 1;
            for (size_t j = cap; j < sizeof guard; j++) clean &= guard[j] == 0xa5;
            if (k != 0 || !clean) CHECKF(0, "%s: room %zu gave %zu (clean %d)", fields[i].note, cap, k, clean);
        }
    }

    /* an empty name and value, given as NULL */
    uint8_t empty[8];
    size_t e = kino_hpack_encode_field(empty, sizeof empty, NULL, 0, NULL, 0, 0);
    CHECKF(e == 3 && empty[0] == 0 && empty[1] == 0 && empty[2] == 0, "NULL, 0 name and value: %zu bytes", e);

    /* table size updates owed to the peer (§4.2) */
    kino_hpack_encoder enc;
    uint8_t out[16];
    kino_hpack_encoder_init(&enc);
    CHECKF(kino_hpack_encoder_begin(&enc, out, sizeof out) == 0, "no update at first");
    kino_hpack_encoder_set_peer_table_size(&enc, 8192);
    CHECKF(kino_hpack_encoder_begin(&enc, out, sizeof out) == 0, "a larger setting needs no update");
    kino_hpack_encoder_set_peer_table_size(&enc, 100);
    CHECKF(kino_hpack_encoder_begin(&enc, out, 1) == 0 && enc.pending, "no room: the update stays owed");
    size_t n = kino_hpack_encoder_begin(&enc, out, sizeof out);
    CHECKF(n == 2 && out[0] == 0x3f && out[1] == 0x45, "update to 100: %zu bytes", n);
    CHECKF(kino_hpack_encoder_begin(&enc, out, sizeof out) == 0, "only once");
    kino_hpack_encoder_set_peer_table_size(&enc, 0);
    kino_hpack_encoder_set_peer_table_size(&enc, 4096);
    n = kino_hpack_encoder_begin(&enc, out, sizeof out);
    CHECKF(n == 1 && out[0] == 0x20, "down to 0 and back up: the smallest is signalled");
    kino_hpack_encoder_set_peer_table_size(&enc, 50);
    CHECKF(kino_hpack_encoder_begin(&enc, out, sizeof out) == 0, "above what was signalled: nothing owed");
    kino_hpack_encoder_init(&enc);
    kino_hpack_encoder_set_peer_table_size(&enc, UINT32_MAX);
    kino_hpack_encoder_set_peer_table_size(&enc, 4095);
    n = kino_hpack_encoder_begin(&enc, out, sizeof out);
    CHECKF(n == 3 && n <= KINO_HPACK_BEGIN_MAX, "update to 4095: %zu bytes", n);

    /* a whole response block, decoded by our own decoder */
    uint8_t block[4096];
    static char value[1000];
    for (size_t i = 0; i < sizeof value - 1; i++) value[i] = (char)(1 + (i * 37) % 255);
    kino_hpack_encoder_init(&enc);
    kino_hpack_encoder_set_peer_table_size(&enc, 0);
    n = kino_hpack_encoder_begin(&enc, block, KINO_HPACK_BEGIN_MAX);
    n += kino_hpack_encode_status(block + n, sizeof block - n, 418);
    n += kino_hpack_encode_field(block + n, sizeof block - n, "Content-Type", 12, "text/html; charset=utf-8", 24, 0);
    n += kino_hpack_encode_field(block + n, sizeof block - n, "content-length", 14, "13", 2, 0);
    n += kino_hpack_encode_field(block + n, sizeof block - n, "set-cookie", 10, "a=b", 3, KINO_HPACK_NEVER_INDEXED);
    n += kino_hpack_encode_field(block + n, sizeof block - n, "x-binary", 8, value, sizeof value - 1, 0);
    kino_hpack_decoder dec;
    static hp_list got;
    int rc = hp_decode_fresh(&dec, 4096, 65536, block, n, &got);
    char want[1400];
    snprintf(want, sizeof want,
             ":status: 418\ncontent-type: text/html; charset=utf-8\ncontent-length: 13\n!set-cookie: a=b\nx-binary: %s\n",
             value);
    CHECKF(rc == KINO_HPACK_OK && strcmp(got.text, want) == 0 && dec.max == 0, "a response block round trip: %s",
           got.text);
    kino_hpack_decoder_free(&dec);
}

static void test_hpack(void) {
    test_hpack_huffman_tables();
    test_hpack_integers();
    test_hpack_huffman();
    test_hpack_appendix_c();
    test_hpack_malformed();
    test_hpack_list_cap();
    test_hpack_table_model();
    test_hpack_encoder();
}
