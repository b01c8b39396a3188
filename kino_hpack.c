/*
 * kino_hpack.c -- HPACK (RFC 7541): the header compression of HTTP/2.
 * kino_hpack.h describes the API and how the HTTP/2 layer uses it;
 * doc/http2.md ("HPACK") the decisions and the figures. No Ruby, no
 * other engine file, no allocation after kino_hpack_decoder_init.
 * Sections:
 *
 *    1. tables       the static table (Appendix A), the Huffman code
 *                    (Appendix B) and its canonical decoding tables
 *    2. integers     prefix-coded integers (§5.1)
 *    3. Huffman      encoding and decoding (§5.2, Appendix B)
 *    4. strings      string literals (§5.2)
 *    5. dynamic table  entries, eviction, size (§2.3.2, §4)
 *    6. decoder      header blocks to fields (§3, §6), the list cap
 *    7. encoder      response fields to header blocks (§6.1, §6.2.2, §6.3)
 *
 * Errors. Whatever a block holds, the decoder either returns
 * KINO_HPACK_ERROR (COMPRESSION_ERROR in HTTP/2: the connection is lost,
 * and so is the decoder) or leaves its dynamic table exactly as the
 * peer's encoder has it. Every read is bounded by the block's end, every
 * integer by 32 bits, every copy by the table or scratch size fixed at
 * init.
 */
#include "kino_hpack.h"

#include <stdlib.h>
#include <string.h>

/* ================================================================== */
/* 1. Tables                                                          */
/* ================================================================== */

typedef struct hp_static_entry {
    const char *name, *value;
    uint8_t name_len, value_len;
} hp_static_entry;

#define HP_SE(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}

/* Appendix A: index 1..61 (index 0 unused). */
static const hp_static_entry hp_static[62] = {
    {NULL, NULL, 0, 0},
    HP_SE(":authority", ""),          HP_SE(":method", "GET"),
    HP_SE(":method", "POST"),         HP_SE(":path", "/"),
    HP_SE(":path", "/index.html"),    HP_SE(":scheme", "http"),
    HP_SE(":scheme", "https"),        HP_SE(":status", "200"),
    HP_SE(":status", "204"),          HP_SE(":status", "206"),
    HP_SE(":status", "304"),          HP_SE(":status", "400"),
    HP_SE(":status", "404"),          HP_SE(":status", "500"),
    HP_SE("accept-charset", ""),      HP_SE("accept-encoding", "gzip, deflate"),
    HP_SE("accept-language", ""),     HP_SE("accept-ranges", ""),
    HP_SE("accept", ""),              HP_SE("access-control-allow-origin", ""),
    HP_SE("age", ""),                 HP_SE("allow", ""),
    HP_SE("authorization", ""),       HP_SE("cache-control", ""),
    HP_SE("content-disposition", ""), HP_SE("content-encoding", ""),
    HP_SE("content-language", ""),    HP_SE("content-length", ""),
    HP_SE("content-location", ""),    HP_SE("content-range", ""),
    HP_SE("content-type", ""),        HP_SE("cookie", ""),
    HP_SE("date", ""),                HP_SE("etag", ""),
    HP_SE("expect", ""),              HP_SE("expires", ""),
    HP_SE("from", ""),                HP_SE("host", ""),
    HP_SE("if-match", ""),            HP_SE("if-modified-since", ""),
    HP_SE("if-none-match", ""),       HP_SE("if-range", ""),
    HP_SE("if-unmodified-since", ""), HP_SE("last-modified", ""),
    HP_SE("link", ""),                HP_SE("location", ""),
    HP_SE("max-forwards", ""),        HP_SE("proxy-authenticate", ""),
    HP_SE("proxy-authorization", ""), HP_SE("range", ""),
    HP_SE("referer", ""),             HP_SE("refresh", ""),
    HP_SE("retry-after", ""),         HP_SE("server", ""),
    HP_SE("set-cookie", ""),          HP_SE("strict-transport-security", ""),
    HP_SE("transfer-encoding", ""),   HP_SE("user-agent", ""),
    HP_SE("vary", ""),                HP_SE("via", ""),
    HP_SE("www-authenticate", ""),
};
#define HP_STATIC_COUNT 61
#define HP_LAST_VALUED 16 /* entries 2..16 have values, the others none */

/* The encoder's name lookup: for each name length, the first static
 * index of every distinct name that long (0 ends a row). */
#define HP_NAME_MAX 27
static const uint8_t hp_static_by_len[HP_NAME_MAX + 1][7] = {
    [3] = {21, 60},  [4] = {33, 34, 37, 38, 45, 59}, [5] = {4, 22, 50},
    [6] = {19, 32, 35, 54}, [7] = {2, 6, 8, 36, 51, 52}, [8] = {39, 42, 46},
    [10] = {1, 55, 58}, [11] = {53}, [12] = {31, 47},
    [13] = {18, 23, 24, 30, 41, 44}, [14] = {15, 28}, [15] = {16, 17},
    [16] = {26, 27, 29, 61}, [17] = {40, 57}, [18] = {48},
    [19] = {25, 43, 49}, [25] = {56}, [27] = {20},
};

/* Appendix B: the code of each symbol (0..255, and 256, EOS), right-
 * aligned, and its length in bits. The code is canonical: codes of one
 * length are consecutive and ordered by symbol, and each length's first
 * code follows the last of the shorter ones. */
static const struct hp_huff_code { uint32_t code; uint8_t len; } hp_huff_codes[257] = {
    {0x1ff8, 13}, {0x7fffd8, 23}, {0xfffffe2, 28}, {0xfffffe3, 28}, /* 0..3 */
    {0xfffffe4, 28}, {0xfffffe5, 28}, {0xfffffe6, 28}, {0xfffffe7, 28}, /* 4..7 */
    {0xfffffe8, 28}, {0xffffea, 24}, {0x3ffffffc, 30}, {0xfffffe9, 28}, /* 8..11 */
    {0xfffffea, 28}, {0x3ffffffd, 30}, {0xfffffeb, 28}, {0xfffffec, 28}, /* 12..15 */
    {0xfffffed, 28}, {0xfffffee, 28}, {0xfffffef, 28}, {0xffffff0, 28}, /* 16..19 */
    {0xffffff1, 28}, {0xffffff2, 28}, {0x3ffffffe, 30}, {0xffffff3, 28}, /* 20..23 */
    {0xffffff4, 28}, {0xffffff5, 28}, {0xffffff6, 28}, {0xffffff7, 28}, /* 24..27 */
    {0xffffff8, 28}, {0xffffff9, 28}, {0xffffffa, 28}, {0xffffffb, 28}, /* 28..31 */
    {0x14, 6}, {0x3f8, 10}, {0x3f9, 10}, {0xffa, 12}, /* 32..35 */
    {0x1ff9, 13}, {0x15, 6}, {0xf8, 8}, {0x7fa, 11}, /* 36..39 */
    {0x3fa, 10}, {0x3fb, 10}, {0xf9, 8}, {0x7fb, 11}, /* 40..43 */
    {0xfa, 8}, {0x16, 6}, {0x17, 6}, {0x18, 6}, /* 44..47 */
    {0x0, 5}, {0x1, 5}, {0x2, 5}, {0x19, 6}, /* 48..51 */
    {0x1a, 6}, {0x1b, 6}, {0x1c, 6}, {0x1d, 6}, /* 52..55 */
    {0x1e, 6}, {0x1f, 6}, {0x5c, 7}, {0xfb, 8}, /* 56..59 */
    {0x7ffc, 15}, {0x20, 6}, {0xffb, 12}, {0x3fc, 10}, /* 60..63 */
    {0x1ffa, 13}, {0x21, 6}, {0x5d, 7}, {0x5e, 7}, /* 64..67 */
    {0x5f, 7}, {0x60, 7}, {0x61, 7}, {0x62, 7}, /* 68..71 */
    {0x63, 7}, {0x64, 7}, {0x65, 7}, {0x66, 7}, /* 72..75 */
    {0x67, 7}, {0x68, 7}, {0x69, 7}, {0x6a, 7}, /* 76..79 */
    {0x6b, 7}, {0x6c, 7}, {0x6d, 7}, {0x6e, 7}, /* 80..83 */
    {0x6f, 7}, {0x70, 7}, {0x71, 7}, {0x72, 7}, /* 84..87 */
    {0xfc, 8}, {0x73, 7}, {0xfd, 8}, {0x1ffb, 13}, /* 88..91 */
    {0x7fff0, 19}, {0x1ffc, 13}, {0x3ffc, 14}, {0x22, 6}, /* 92..95 */
    {0x7ffd, 15}, {0x3, 5}, {0x23, 6}, {0x4, 5}, /* 96..99 */
    {0x24, 6}, {0x5, 5}, {0x25, 6}, {0x26, 6}, /* 100..103 */
    {0x27, 6}, {0x6, 5}, {0x74, 7}, {0x75, 7}, /* 104..107 */
    {0x28, 6}, {0x29, 6}, {0x2a, 6}, {0x7, 5}, /* 108..111 */
    {0x2b, 6}, {0x76, 7}, {0x2c, 6}, {0x8, 5}, /* 112..115 */
    {0x9, 5}, {0x2d, 6}, {0x77, 7}, {0x78, 7}, /* 116..119 */
    {0x79, 7}, {0x7a, 7}, {0x7b, 7}, {0x7ffe, 15}, /* 120..123 */
    {0x7fc, 11}, {0x3ffd, 14}, {0x1ffd, 13}, {0xffffffc, 28}, /* 124..127 */
    {0xfffe6, 20}, {0x3fffd2, 22}, {0xfffe7, 20}, {0xfffe8, 20}, /* 128..131 */
    {0x3fffd3, 22}, {0x3fffd4, 22}, {0x3fffd5, 22}, {0x7fffd9, 23}, /* 132..135 */
    {0x3fffd6, 22}, {0x7fffda, 23}, {0x7fffdb, 23}, {0x7fffdc, 23}, /* 136..139 */
    {0x7fffdd, 23}, {0x7fffde, 23}, {0xffffeb, 24}, {0x7fffdf, 23}, /* 140..143 */
    {0xffffec, 24}, {0xffffed, 24}, {0x3fffd7, 22}, {0x7fffe0, 23}, /* 144..147 */
    {0xffffee, 24}, {0x7fffe1, 23}, {0x7fffe2, 23}, {0x7fffe3, 23}, /* 148..151 */
    {0x7fffe4, 23}, {0x1fffdc, 21}, {0x3fffd8, 22}, {0x7fffe5, 23}, /* 152..155 */
    {0x3fffd9, 22}, {0x7fffe6, 23}, {0x7fffe7, 23}, {0xffffef, 24}, /* 156..159 */
    {0x3fffda, 22}, {0x1fffdd, 21}, {0xfffe9, 20}, {0x3fffdb, 22}, /* 160..163 */
    {0x3fffdc, 22}, {0x7fffe8, 23}, {0x7fffe9, 23}, {0x1fffde, 21}, /* 164..167 */
    {0x7fffea, 23}, {0x3fffdd, 22}, {0x3fffde, 22}, {0xfffff0, 24}, /* 168..171 */
    {0x1fffdf, 21}, {0x3fffdf, 22}, {0x7fffeb, 23}, {0x7fffec, 23}, /* 172..175 */
    {0x1fffe0, 21}, {0x1fffe1, 21}, {0x3fffe0, 22}, {0x1fffe2, 21}, /* 176..179 */
    {0x7fffed, 23}, {0x3fffe1, 22}, {0x7fffee, 23}, {0x7fffef, 23}, /* 180..183 */
    {0xfffea, 20}, {0x3fffe2, 22}, {0x3fffe3, 22}, {0x3fffe4, 22}, /* 184..187 */
    {0x7ffff0, 23}, {0x3fffe5, 22}, {0x3fffe6, 22}, {0x7ffff1, 23}, /* 188..191 */
    {0x3ffffe0, 26}, {0x3ffffe1, 26}, {0xfffeb, 20}, {0x7fff1, 19}, /* 192..195 */
    {0x3fffe7, 22}, {0x7ffff2, 23}, {0x3fffe8, 22}, {0x1ffffec, 25}, /* 196..199 */
    {0x3ffffe2, 26}, {0x3ffffe3, 26}, {0x3ffffe4, 26}, {0x7ffffde, 27}, /* 200..203 */
    {0x7ffffdf, 27}, {0x3ffffe5, 26}, {0xfffff1, 24}, {0x1ffffed, 25}, /* 204..207 */
    {0x7fff2, 19}, {0x1fffe3, 21}, {0x3ffffe6, 26}, {0x7ffffe0, 27}, /* 208..211 */
    {0x7ffffe1, 27}, {0x3ffffe7, 26}, {0x7ffffe2, 27}, {0xfffff2, 24}, /* 212..215 */
    {0x1fffe4, 21}, {0x1fffe5, 21}, {0x3ffffe8, 26}, {0x3ffffe9, 26}, /* 216..219 */
    {0xffffffd, 28}, {0x7ffffe3, 27}, {0x7ffffe4, 27}, {0x7ffffe5, 27}, /* 220..223 */
    {0xfffec, 20}, {0xfffff3, 24}, {0xfffed, 20}, {0x1fffe6, 21}, /* 224..227 */
    {0x3fffe9, 22}, {0x1fffe7, 21}, {0x1fffe8, 21}, {0x7ffff3, 23}, /* 228..231 */
    {0x3fffea, 22}, {0x3fffeb, 22}, {0x1ffffee, 25}, {0x1ffffef, 25}, /* 232..235 */
    {0xfffff4, 24}, {0xfffff5, 24}, {0x3ffffea, 26}, {0x7ffff4, 23}, /* 236..239 */
    {0x3ffffeb, 26}, {0x7ffffe6, 27}, {0x3ffffec, 26}, {0x3ffffed, 26}, /* 240..243 */
    {0x7ffffe7, 27}, {0x7ffffe8, 27}, {0x7ffffe9, 27}, {0x7ffffea, 27}, /* 244..247 */
    {0x7ffffeb, 27}, {0xffffffe, 28}, {0x7ffffec, 27}, {0x7ffffed, 27}, /* 248..251 */
    {0x7ffffee, 27}, {0x7ffffef, 27}, {0x7fffff0, 27}, {0x3ffffee, 26}, /* 252..255 */
    {0x3fffffff, 30}, /* 256..256 */
};


/* Canonical decoding, derived from hp_huff_codes (test_hpack.c derives
 * them again and compares): the symbols in code order (by length, then
 * code); per length L, the first code, the position of its symbol in
 * hp_huff_sorted, and hp_huff_limit[L], the end of the codes of length L as a
 * 32-bit left-aligned value. A left-aligned 32-bit window w starts with
 * a code of length L for the smallest L with w < hp_huff_limit[L]. */
static const uint16_t hp_huff_sorted[257] = {
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51,
    52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104, 108, 109,
    110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76,
    77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118,
    119, 120, 121, 122, 38, 42, 44, 59, 88, 90, 33, 34, 40, 41, 63, 39,
    43, 124, 35, 62, 0, 36, 64, 91, 93, 126, 94, 125, 60, 96, 123, 92,
    195, 208, 128, 130, 131, 162, 184, 194, 224, 226, 153, 161, 167, 172, 176, 177,
    179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154, 156, 160,
    163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232,
    233, 1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157,
    158, 165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142,
    144, 145, 148, 159, 171, 206, 215, 225, 236, 237, 199, 207, 234, 235, 192, 193,
    200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255, 203, 204, 211,
    212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254,
    2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20,
    21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220, 249, 10, 13, 22,
    256,
};
static const uint32_t hp_huff_first[31] = {
    0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x14, 0x5c, 0xf8, 0x1fc, 0x3f8, 0x7fa, 0xffa, 0x1ff8, 0x3ffc, 0x7ffc,
    0xfffe, 0x1fffc, 0x3fff8, 0x7fff0, 0xfffe6, 0x1fffdc, 0x3fffd2, 0x7fffd8, 0xffffea, 0x1ffffec, 0x3ffffe0, 0x7ffffde, 0xfffffe2, 0x1ffffffe, 0x3ffffffc,
};
static const uint16_t hp_huff_base[31] = {
    0, 0, 0, 0, 0, 0, 10, 36, 68, 74, 74, 79, 82, 84, 90, 92, 95, 95, 95, 95, 98, 106, 119, 145, 174, 186, 190, 205, 224, 253, 253,
};
static const uint64_t hp_huff_limit[31] = {
    0x0, 0x0, 0x0, 0x0, 0x0, 0x50000000,
    0xb8000000, 0xf8000000, 0xfe000000, 0xfe000000, 0xff400000, 0xffa00000,
    0xffc00000, 0xfff00000, 0xfff80000, 0xfffe0000, 0xfffe0000, 0xfffe0000,
    0xfffe0000, 0xfffe6000, 0xfffee000, 0xffff4800, 0xffffb000, 0xffffea00,
    0xfffff600, 0xfffff800, 0xfffffbc0, 0xfffffe20, 0xfffffff0, 0xfffffff0,
    0x100000000,
};

/* The first byte of a window, for the codes of 8 bits or less (the 74
 * most frequent symbols): symbol << 4 | length, or 0 when the window
 * starts with a longer code (derived too, and checked by the tests). */
static const uint16_t hp_huff_fast[256] = {
    0x305, 0x305, 0x305, 0x305, 0x305, 0x305, 0x305, 0x305, 0x315, 0x315, 0x315, 0x315,
    0x315, 0x315, 0x315, 0x315, 0x325, 0x325, 0x325, 0x325, 0x325, 0x325, 0x325, 0x325,
    0x615, 0x615, 0x615, 0x615, 0x615, 0x615, 0x615, 0x615, 0x635, 0x635, 0x635, 0x635,
    0x635, 0x635, 0x635, 0x635, 0x655, 0x655, 0x655, 0x655, 0x655, 0x655, 0x655, 0x655,
    0x695, 0x695, 0x695, 0x695, 0x695, 0x695, 0x695, 0x695, 0x6f5, 0x6f5, 0x6f5, 0x6f5,
    0x6f5, 0x6f5, 0x6f5, 0x6f5, 0x735, 0x735, 0x735, 0x735, 0x735, 0x735, 0x735, 0x735,
    0x745, 0x745, 0x745, 0x745, 0x745, 0x745, 0x745, 0x745, 0x206, 0x206, 0x206, 0x206,
    0x256, 0x256, 0x256, 0x256, 0x2d6, 0x2d6, 0x2d6, 0x2d6, 0x2e6, 0x2e6, 0x2e6, 0x2e6,
    0x2f6, 0x2f6, 0x2f6, 0x2f6, 0x336, 0x336, 0x336, 0x336, 0x346, 0x346, 0x346, 0x346,
    0x356, 0x356, 0x356, 0x356, 0x366, 0x366, 0x366, 0x366, 0x376, 0x376, 0x376, 0x376,
    0x386, 0x386, 0x386, 0x386, 0x396, 0x396, 0x396, 0x396, 0x3d6, 0x3d6, 0x3d6, 0x3d6,
    0x416, 0x416, 0x416, 0x416, 0x5f6, 0x5f6, 0x5f6, 0x5f6, 0x626, 0x626, 0x626, 0x626,
    0x646, 0x646, 0x646, 0x646, 0x666, 0x666, 0x666, 0x666, 0x676, 0x676, 0x676, 0x676,
    0x686, 0x686, 0x686, 0x686, 0x6c6, 0x6c6, 0x6c6, 0x6c6, 0x6d6, 0x6d6, 0x6d6, 0x6d6,
    0x6e6, 0x6e6, 0x6e6, 0x6e6, 0x706, 0x706, 0x706, 0x706, 0x726, 0x726, 0x726, 0x726,
    0x756, 0x756, 0x756, 0x756, 0x3a7, 0x3a7, 0x427, 0x427, 0x437, 0x437, 0x447, 0x447,
    0x457, 0x457, 0x467, 0x467, 0x477, 0x477, 0x487, 0x487, 0x497, 0x497, 0x4a7, 0x4a7,
    0x4b7, 0x4b7, 0x4c7, 0x4c7, 0x4d7, 0x4d7, 0x4e7, 0x4e7, 0x4f7, 0x4f7, 0x507, 0x507,
    0x517, 0x517, 0x527, 0x527, 0x537, 0x537, 0x547, 0x547, 0x557, 0x557, 0x567, 0x567,
    0x577, 0x577, 0x597, 0x597, 0x6a7, 0x6a7, 0x6b7, 0x6b7, 0x717, 0x717, 0x767, 0x767,
    0x777, 0x777, 0x787, 0x787, 0x797, 0x797, 0x7a7, 0x7a7, 0x268, 0x2a8, 0x2c8, 0x3b8,
    0x588, 0x5a8, 0x0, 0x0,
};

/* ================================================================== */
/* 2. Integers (§5.1)                                                 */
/* ================================================================== */

/* The bytes kino_hpack_encode_int needs for v with this prefix. */
static size_t hp_int_len(uint32_t v, int prefix) {
    uint32_t mask = (1u << prefix) - 1;
    if (v < mask) return 1;
    size_t n = 2;
    for (v -= mask; v >= 128; v >>= 7) n++;
    return n;
}

/* Writes exactly int_len(v, prefix) bytes, or nothing when they do not
 * fit. The first byte keeps the bits of `first` above the prefix. */
size_t kino_hpack_encode_int(uint8_t *out, size_t cap, uint32_t v, int prefix, uint8_t first) {
    uint32_t mask = (1u << prefix) - 1;
    size_t n = hp_int_len(v, prefix);
    if (prefix < 1 || prefix > 8 || cap < n) return 0;
    first = (uint8_t)(first & ~mask);
    if (v < mask) {
        out[0] = (uint8_t)(first | v);
        return 1;
    }
    out[0] = (uint8_t)(first | mask);
    size_t i = 1;
    for (v -= mask; v >= 128; v >>= 7) out[i++] = (uint8_t)(0x80 | (v & 0x7f));
    out[i++] = (uint8_t)v;
    return i;
}

/* Reads at most 1 + 5 bytes: five 7-bit continuation groups hold any
 * 32-bit value, so a sixth (even a zero one) is refused, as is a value
 * of 2^32 or more. Never reads at or past end. */
int kino_hpack_decode_int(const uint8_t **pp, const uint8_t *end, int prefix, uint32_t *v) {
    const uint8_t *p = *pp;
    if (p >= end) return -1;
    uint32_t mask = (1u << prefix) - 1;
    uint32_t x = *p++ & mask;
    if (x < mask) {
        *v = x;
        *pp = p;
        return 0;
    }
    uint64_t acc = mask;
    for (int shift = 0;; shift += 7) {
        if (shift > 28) return -2;
        if (p >= end) return -1;
        uint8_t b = *p++;
        acc += (uint64_t)(b & 0x7f) << shift;
        if (acc > UINT32_MAX) return -2;
        if (!(b & 0x80)) break;
    }
    *v = (uint32_t)acc;
    *pp = p;
    return 0;
}

/* ================================================================== */
/* 3. Huffman (Appendix B)                                            */
/* ================================================================== */

static inline uint8_t hp_lower(uint8_t c) {
    return (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

size_t kino_hpack_huffman_len(const char *s, size_t len, int lower) {
    const uint8_t *p = (const uint8_t *)s;
    uint64_t bits = 0;
    if (lower) {
        for (size_t i = 0; i < len; i++) bits += hp_huff_codes[hp_lower(p[i])].len;
    } else {
        for (size_t i = 0; i < len; i++) bits += hp_huff_codes[p[i]].len;
    }
    return (size_t)((bits + 7) / 8);
}

/* Codes are shifted into a 64-bit accumulator that holds at most 31 + 30
 * bits; 32 bits leave it at a time once they are complete. The last byte
 * is padded with the high bits of EOS (ones), as §5.2 requires. Stops
 * and returns 0 as soon as the coding reaches `limit` bytes (it may have
 * written up to limit + 3 by then); otherwise returns its length. */
static size_t hp_huffman(uint8_t *out, const char *s, size_t len, int lower, size_t limit) {
    const uint8_t *p = (const uint8_t *)s;
    uint64_t acc = 0;
    int nbits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        const struct hp_huff_code *h = &hp_huff_codes[lower ? hp_lower(p[i]) : p[i]];
        acc = (acc << h->len) | h->code;
        nbits += h->len;
        if (nbits >= 32) {
            nbits -= 32;
            uint32_t w = (uint32_t)(acc >> nbits);
            out[n] = (uint8_t)(w >> 24);
            out[n + 1] = (uint8_t)(w >> 16);
            out[n + 2] = (uint8_t)(w >> 8);
            out[n + 3] = (uint8_t)w;
            n += 4;
            if (n >= limit) return 0;
        }
    }
    while (nbits >= 8) {
        nbits -= 8;
        out[n++] = (uint8_t)(acc >> nbits);
    }
    if (nbits > 0) out[n++] = (uint8_t)((acc << (8 - nbits)) | (0xffu >> nbits));
    return n >= limit ? 0 : n;
}

/* Writes exactly kino_hpack_huffman_len bytes. */
size_t kino_hpack_huffman_encode(uint8_t *out, const char *s, size_t len, int lower) {
    return hp_huffman(out, s, len, lower, SIZE_MAX);
}

/* Canonical decoding over a 64-bit left-aligned bit buffer, refilled
 * (4 bytes at a time, then the last ones) when it holds less than the
 * longest code: a code of 8 bits or less is looked
 * up by the window's first byte; otherwise its length is the first L
 * whose limit the 32-bit window is below, and its symbol is found by its offset from that length's first
 * code. When fewer bits are left than the next code needs, they are the
 * padding: at most 7 bits (§5.2: "padding strictly longer than 7 bits
 * MUST be treated as a decoding error"), all ones (the EOS prefix).
 * EOS itself is an error wherever it appears. */
long kino_hpack_huffman_decode(uint8_t *out, size_t room, const uint8_t *in, size_t len,
                               const char **why) {
    uint64_t acc = 0;
    int nbits = 0;
    size_t i = 0, n = 0;
    for (;;) {
        if (nbits < 32) { /* a code is at most 30 bits: refill below 32 */
            if (len - i >= 4) {
                uint32_t v = (uint32_t)in[i] << 24 | (uint32_t)in[i + 1] << 16 | (uint32_t)in[i + 2] << 8 | in[i + 3];
                acc |= (uint64_t)v << (32 - nbits);
                nbits += 32;
                i += 4;
            } else {
                while (nbits <= 56 && i < len) {
                    acc |= (uint64_t)in[i++] << (56 - nbits);
                    nbits += 8;
                }
            }
        }
        if (nbits == 0) break;
        uint64_t w = acc >> 32;
        unsigned fast = hp_huff_fast[w >> 24], sym;
        int l;
        if (fast && (int)(fast & 15) <= nbits) { /* a short code, whole */
            l = (int)(fast & 15);
            sym = fast >> 4;
        } else {
            l = 5;
            while (w >= hp_huff_limit[l]) l++; /* hp_huff_limit[30] is 2^32: stops there */
            if (l > nbits) {
                if (nbits > 7) {
                    if (why) *why = "Huffman padding longer than 7 bits";
                    return -1;
                }
                if ((acc >> (64 - nbits)) != (1u << nbits) - 1) {
                    if (why) *why = "Huffman padding not all ones";
                    return -1;
                }
                break;
            }
            sym = hp_huff_sorted[hp_huff_base[l] + (uint32_t)(w >> (32 - l)) - hp_huff_first[l]];
            if (sym == 256) {
                if (why) *why = "EOS in a Huffman string";
                return -1;
            }
        }
        if (out) {
            if (n >= room) return -2;
            out[n] = (uint8_t)sym;
        }
        n++;
        acc <<= l;
        nbits -= l;
    }
    return (long)n;
}

/* ================================================================== */
/* 4. Strings (§5.2)                                                  */
/* ================================================================== */

/* The literal's length prefix, then its bytes: Huffman-coded when that
 * is strictly shorter, raw otherwise. Nothing is written when it does
 * not fit. */
size_t kino_hpack_encode_string(uint8_t *out, size_t cap, const char *s, size_t len, int lower) {
    if (len > UINT32_MAX) return 0;
    if (len < 127 && cap >= len + 5) {
        /* the usual case, in one pass: a one-byte length, and room for
         * the Huffman coding until it proves no shorter than len */
        size_t hl = hp_huffman(out + 1, s, len, lower, len);
        if (hl) {
            out[0] = (uint8_t)(0x80 | hl);
            return 1 + hl;
        }
        out[0] = (uint8_t)len;
        if (lower) {
            for (size_t i = 0; i < len; i++) out[1 + i] = hp_lower((uint8_t)s[i]);
        } else if (len) {
            memcpy(out + 1, s, len);
        }
        return 1 + len;
    }
    size_t hl = kino_hpack_huffman_len(s, len, lower);
    int huff = hl < len;
    size_t body = huff ? hl : len;
    size_t n = hp_int_len((uint32_t)body, 7);
    if (cap < n + body) return 0;
    kino_hpack_encode_int(out, cap, (uint32_t)body, 7, huff ? 0x80 : 0);
    if (huff) {
        kino_hpack_huffman_encode(out + n, s, len, lower);
    } else if (lower) {
        for (size_t i = 0; i < len; i++) out[n + i] = hp_lower((uint8_t)s[i]);
    } else if (len) {
        memcpy(out + n, s, len);
    }
    return n + body;
}

/* ================================================================== */
/* 5. Dynamic table (§2.3.2, §4)                                      */
/* ================================================================== */

/* One entry: its name then its value at buf[off]. */
struct kino_hpack_slot {
    uint32_t off, name_len, value_len;
};

/* The strings live in buf, oldest first, in [lo, hi): an entry is
 * appended at hi and evicted from lo. When hi reaches the end of buf
 * the live strings are moved to its start. Live strings never exceed
 * the limit (each entry costs 32 bytes more than its strings), and buf
 * is twice the limit, so after a move at least `limit` bytes are free:
 * room for any entry that fits the table, and a move costs at most one
 * copy of the limit per `limit` bytes appended. The records are a ring
 * of limit / 32 + 1 slots, enough for a table of 32-byte entries. */

static struct kino_hpack_slot *hp_slot_at(const kino_hpack_decoder *dec, uint32_t i) {
    /* i: 1 = newest .. count = oldest */
    uint32_t k = dec->slot_first + dec->count - i;
    if (k >= dec->nslots) k -= dec->nslots;
    return &dec->slots[k];
}

static uint32_t hp_slot_size(const struct kino_hpack_slot *s) {
    return s->name_len + s->value_len + KINO_HPACK_ENTRY_OVERHEAD;
}

static void hp_evict_oldest(kino_hpack_decoder *dec) {
    struct kino_hpack_slot *s = &dec->slots[dec->slot_first];
    dec->size -= hp_slot_size(s);
    dec->count--;
    if (++dec->slot_first == dec->nslots) dec->slot_first = 0;
    if (dec->count == 0) {
        dec->lo = dec->hi = 0;
        dec->slot_first = 0;
    } else {
        dec->lo = dec->slots[dec->slot_first].off;
    }
}

/* Evict the oldest entries until the table's size is at most `to`. */
static void hp_shrink(kino_hpack_decoder *dec, uint32_t to) {
    while (dec->size > to) hp_evict_oldest(dec);
}

/* §4.4: make room for an entry of this size by evicting, then add it;
 * an entry larger than the maximum empties the table and is not added.
 * name and value must not point into buf (the caller copies a name it
 * takes from the table first: eviction or the move may overwrite it). */
static void hp_add(kino_hpack_decoder *dec, const char *name, uint32_t nlen, const char *value,
                      uint32_t vlen) {
    uint64_t esize = (uint64_t)nlen + vlen + KINO_HPACK_ENTRY_OVERHEAD;
    if (esize > dec->max) {
        hp_shrink(dec, 0);
        return;
    }
    hp_shrink(dec, dec->max - (uint32_t)esize);
    uint32_t need = nlen + vlen;
    if (dec->buflen - dec->hi < need) {
        uint32_t live = dec->hi - dec->lo;
        memmove(dec->buf, dec->buf + dec->lo, live);
        for (uint32_t i = 1; i <= dec->count; i++) hp_slot_at(dec, i)->off -= dec->lo;
        dec->lo = 0;
        dec->hi = live;
    }
    uint32_t k = dec->slot_first + dec->count;
    if (k >= dec->nslots) k -= dec->nslots;
    struct kino_hpack_slot *s = &dec->slots[k];
    s->off = dec->hi;
    s->name_len = nlen;
    s->value_len = vlen;
    if (nlen) memcpy(dec->buf + dec->hi, name, nlen);
    if (vlen) memcpy(dec->buf + dec->hi + nlen, value, vlen);
    dec->hi += need;
    dec->count++;
    dec->size += (uint32_t)esize;
}

int kino_hpack_decoder_entry(const kino_hpack_decoder *dec, uint32_t i, kino_hpack_field *f) {
    if (i < 1 || i > dec->count) return -1;
    const struct kino_hpack_slot *s = hp_slot_at(dec, i);
    f->name = (const char *)dec->buf + s->off;
    f->name_len = s->name_len;
    f->value = (const char *)dec->buf + s->off + s->name_len;
    f->value_len = s->value_len;
    f->flags = 0;
    return 0;
}

size_t kino_hpack_scratch_size(uint32_t limit, uint32_t max_list) {
    return limit > max_list ? limit : max_list;
}

int kino_hpack_decoder_init(kino_hpack_decoder *dec, uint32_t limit, uint32_t max_list,
                            uint8_t *scratch, size_t scratch_len) {
    memset(dec, 0, sizeof *dec);
    dec->dead = 1; /* until it is set up: a decode of a failed init fails */
    dec->error = "decoder not set up";
    if (limit > KINO_HPACK_MAX_LIMIT || max_list < 1 || max_list > KINO_HPACK_MAX_LIMIT) return -1;
    size_t need = kino_hpack_scratch_size(limit, max_list);
    if (scratch && scratch_len < need) return -1;
    dec->limit = dec->max = limit;
    dec->max_list = max_list;
    dec->buflen = 2 * limit;
    dec->nslots = limit / KINO_HPACK_ENTRY_OVERHEAD + 1;
    dec->buf = malloc(dec->buflen ? dec->buflen : 1);
    dec->slots = malloc(dec->nslots * sizeof *dec->slots);
    if (scratch) {
        dec->scratch = scratch;
        dec->scratch_len = scratch_len;
    } else {
        dec->scratch = malloc(need);
        dec->scratch_len = need;
        dec->own_scratch = 1;
    }
    if (!dec->buf || !dec->slots || !dec->scratch) {
        kino_hpack_decoder_free(dec);
        return -1;
    }
    dec->dead = 0;
    dec->error = NULL;
    return 0;
}

void kino_hpack_decoder_free(kino_hpack_decoder *dec) {
    free(dec->buf);
    free(dec->slots);
    if (dec->own_scratch) free(dec->scratch);
    dec->buf = NULL;
    dec->slots = NULL;
    dec->scratch = NULL;
    dec->own_scratch = 0;
    dec->count = dec->size = 0;
    dec->dead = 1;
}

/* ================================================================== */
/* 6. Decoder (§3, §6)                                                */
/* ================================================================== */

/* The state of one kino_hpack_decode call. */
typedef struct hp_block {
    kino_hpack_decoder *dec;
    const uint8_t *p, *end;
    size_t used;        /* scratch bytes taken by the current field */
    uint64_t list;      /* §6.5.2 size of the fields so far */
    int over;           /* the list passed the cap */
    int passing;        /* fields still go to the callback */
    kino_hpack_field_cb *cb;
    void *ud;
} hp_block;

static int hp_fail(hp_block *b, const char *why) {
    b->dec->error = why;
    b->dec->dead = 1;
    return KINO_HPACK_ERROR;
}

/* An integer of the block, with the reason of a failure. */
static int hp_read_int(hp_block *b, int prefix, uint32_t *v) {
    int rc = kino_hpack_decode_int(&b->p, b->end, prefix, v);
    if (rc == -1) return hp_fail(b, "integer runs past the block");
    if (rc < 0) return hp_fail(b, "integer over 32 bits");
    return 0;
}

/* A string literal: raw bytes point into the block, Huffman-coded ones
 * are decoded into the scratch space after the field's earlier string.
 * When a decoded string does not fit there, *s is NULL and *len its
 * decoded length: the field is then longer than the scratch, so longer
 * than the list cap (it will not be passed on) and than the table limit
 * (it will not be stored), and its bytes are never needed. */
static int hp_read_string(hp_block *b, const char **s, uint32_t *len) {
    if (b->p >= b->end) return hp_fail(b, "block ends before a string");
    int huff = *b->p & 0x80;
    uint32_t n;
    if (hp_read_int(b, 7, &n) < 0) return KINO_HPACK_ERROR;
    if (n > (size_t)(b->end - b->p)) return hp_fail(b, "string runs past the block");
    if (!huff) {
        *s = (const char *)b->p;
        *len = n;
        b->p += n;
        return 0;
    }
    kino_hpack_decoder *dec = b->dec;
    const char *why = NULL;
    uint8_t *out = dec->scratch + b->used;
    long r = kino_hpack_huffman_decode(out, dec->scratch_len - b->used, b->p, n, &why);
    if (r == -2) {
        r = kino_hpack_huffman_decode(NULL, 0, b->p, n, &why);
        out = NULL;
    }
    if (r < 0) return hp_fail(b, why);
    if (r > (long)UINT32_MAX) return hp_fail(b, "string over 2^32 - 1 bytes"); /* a block over 2.6 GB */
    b->p += n;
    *s = (const char *)out;
    *len = (uint32_t)r;
    if (out) b->used += (size_t)r;
    return 0;
}

/* Entry `index` of the static and dynamic tables (§2.3.3). */
static int hp_lookup(hp_block *b, uint32_t index, const char **name, uint32_t *nlen, const char **value,
                  uint32_t *vlen) {
    if (index == 0) return hp_fail(b, "index 0");
    if (index <= HP_STATIC_COUNT) {
        const hp_static_entry *e = &hp_static[index];
        *name = e->name;
        *nlen = e->name_len;
        *value = e->value;
        *vlen = e->value_len;
        return 0;
    }
    if (index - HP_STATIC_COUNT > b->dec->count) return hp_fail(b, "index past the dynamic table");
    kino_hpack_field f;
    kino_hpack_decoder_entry(b->dec, index - HP_STATIC_COUNT, &f);
    *name = f.name;
    *nlen = (uint32_t)f.name_len;
    *value = f.value;
    *vlen = (uint32_t)f.value_len;
    return 0;
}

/* Count a field against the list cap (§6.5.2: name + value + 32) and
 * pass it on while the list is under the cap and the callback has not
 * said stop. Past the cap, no later field is passed either. */
static void hp_emit(hp_block *b, const char *name, uint32_t nlen, const char *value, uint32_t vlen,
                 unsigned flags) {
    b->list += (uint64_t)nlen + vlen + KINO_HPACK_ENTRY_OVERHEAD;
    if (b->list > b->dec->max_list) b->over = 1;
    if (b->over || !b->passing || !name || !value) return;
    kino_hpack_field f = {name, nlen, value, vlen, flags};
    if (b->cb && b->cb(b->ud, &f)) b->passing = 0;
}

/* A literal field (§6.2): the name by index (the prefix-bit integer,
 * when not 0) or as a string, then the value; `add` for incremental
 * indexing (§6.2.1), which stores it in the dynamic table after it has
 * been passed on. */
static int hp_literal(hp_block *b, int prefix, int add, unsigned flags) {
    uint32_t index, nlen, vlen, unused;
    const char *name, *value, *unused_value;
    int name_in_table = 0;
    if (hp_read_int(b, prefix, &index) < 0) return KINO_HPACK_ERROR;
    if (index) {
        if (hp_lookup(b, index, &name, &nlen, &unused_value, &unused) < 0) return KINO_HPACK_ERROR;
        name_in_table = index > HP_STATIC_COUNT;
    } else if (hp_read_string(b, &name, &nlen) < 0) {
        return KINO_HPACK_ERROR;
    }
    if (hp_read_string(b, &value, &vlen) < 0) return KINO_HPACK_ERROR;
    hp_emit(b, name, nlen, value, vlen, flags);
    if (!add) return 0;
    kino_hpack_decoder *dec = b->dec;
    uint64_t esize = (uint64_t)nlen + vlen + KINO_HPACK_ENTRY_OVERHEAD;
    if (esize <= dec->max) {
        /* it fits the table, so its strings fit the scratch (>= limit) */
        if (!name || !value) return hp_fail(b, "internal: string not kept"); /* unreachable */
        if (name_in_table) {
            if (b->used + nlen > dec->scratch_len) return hp_fail(b, "internal: scratch"); /* unreachable */
            memcpy(dec->scratch + b->used, name, nlen);
            name = (const char *)dec->scratch + b->used;
        }
    }
    hp_add(dec, name, nlen, value, vlen);
    return 0;
}

/* One header block, representation by representation (§6): the first
 * bits of each byte say which. Dynamic table size updates (§6.3) are
 * only accepted before the first field (§4.2) and up to the limit we
 * advertise. */
int kino_hpack_decode(kino_hpack_decoder *dec, const uint8_t *data, size_t len,
                      kino_hpack_field_cb *cb, void *ud) {
    if (dec->dead) {
        if (!dec->error) dec->error = "decoder failed before";
        return KINO_HPACK_ERROR;
    }
    dec->error = NULL;
    hp_block b = {dec, data, data + len, 0, 0, 0, 1, cb, ud};
    int fields = 0;
    while (b.p < b.end) {
        uint8_t c = *b.p;
        b.used = 0;
        if (c & 0x80) { /* indexed field (§6.1) */
            uint32_t index, nlen, vlen;
            const char *name, *value;
            if (hp_read_int(&b, 7, &index) < 0) return KINO_HPACK_ERROR;
            if (hp_lookup(&b, index, &name, &nlen, &value, &vlen) < 0) return KINO_HPACK_ERROR;
            hp_emit(&b, name, nlen, value, vlen, 0);
        } else if (c & 0x40) { /* literal, incremental indexing (§6.2.1) */
            if (hp_literal(&b, 6, 1, 0) < 0) return KINO_HPACK_ERROR;
        } else if (c & 0x20) { /* dynamic table size update (§6.3) */
            uint32_t size;
            if (fields) return hp_fail(&b, "table size update after a field");
            if (hp_read_int(&b, 5, &size) < 0) return KINO_HPACK_ERROR;
            if (size > dec->limit) return hp_fail(&b, "table size update above the limit");
            dec->max = size;
            hp_shrink(dec, size);
            continue;
        } else { /* literal, without indexing (§6.2.2) or never indexed (§6.2.3) */
            if (hp_literal(&b, 4, 0, c & 0x10 ? KINO_HPACK_NEVER_INDEXED : 0) < 0) return KINO_HPACK_ERROR;
        }
        fields++;
    }
    return b.over ? KINO_HPACK_TOO_LARGE : KINO_HPACK_OK;
}

/* ================================================================== */
/* 7. Encoder (§6.1, §6.2.2, §6.2.3, §6.3)                            */
/* ================================================================== */

/* Responses are encoded as literals that are never added to the
 * dynamic table (doc/http2.md says why): the only state is the peer's
 * table size, which the encoder must still follow (§4.2). */

void kino_hpack_encoder_init(kino_hpack_encoder *enc) {
    enc->table_size = enc->low = KINO_HPACK_TABLE_SIZE;
    enc->pending = 0;
}

/* A smaller size than the one the peer's decoder has must be signalled
 * at the start of the next block, and when the setting changed more
 * than once, the smallest of them (§4.2). A larger one need not be:
 * the decoder keeps the size last signalled until told otherwise, and
 * an encoder that never inserts never needs more. */
void kino_hpack_encoder_set_peer_table_size(kino_hpack_encoder *enc, uint32_t size) {
    if (size < enc->low) enc->low = size;
    enc->pending = enc->low < enc->table_size;
}

size_t kino_hpack_encoder_begin(kino_hpack_encoder *enc, uint8_t *out, size_t cap) {
    if (!enc->pending) return 0;
    size_t n = kino_hpack_encode_int(out, cap, enc->low, 5, 0x20);
    if (n == 0) return 0;
    enc->table_size = enc->low;
    enc->pending = 0;
    return n;
}

size_t kino_hpack_encode_status(uint8_t *out, size_t cap, int status) {
    if (status < 100 || status > 999 || cap < 1) return 0;
    static const struct { int status; uint8_t index; } known[] = {
        {200, 8}, {204, 9}, {206, 10}, {304, 11}, {400, 12}, {404, 13}, {500, 14},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (known[i].status == status) {
            out[0] = (uint8_t)(0x80 | known[i].index);
            return 1;
        }
    }
    char digits[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                      (char)('0' + status % 10)};
    out[0] = 0x08; /* literal without indexing, name :status (index 8) */
    size_t n = kino_hpack_encode_string(out + 1, cap - 1, digits, 3, 0);
    return n ? n + 1 : 0;
}

/* Does name (compared ASCII-case-insensitively: static names are
 * lowercase) equal the static name s? */
static int hp_same_name(const char *name, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (hp_lower((uint8_t)name[i]) != (uint8_t)s[i]) return 0;
    return 1;
}

/* The first static index with this name, or 0. */
static unsigned hp_static_name(const char *name, size_t len) {
    if (len > HP_NAME_MAX) return 0;
    const uint8_t *row = hp_static_by_len[len];
    for (int i = 0; i < 7 && row[i]; i++)
        if (hp_same_name(name, hp_static[row[i]].name, len)) return row[i];
    return 0;
}

size_t kino_hpack_field_bound(size_t name_len, size_t value_len) {
    /* a prefix byte, then two literals of at most 5 + 1 + length bytes
     * (the raw form is chosen when Huffman is not shorter) */
    return 1 + (6 + name_len) + (6 + value_len);
}

size_t kino_hpack_encode_field(uint8_t *out, size_t cap, const char *name, size_t name_len,
                               const char *value, size_t value_len, unsigned flags) {
    unsigned index = hp_static_name(name, name_len);
    if (index >= 2 && index <= HP_LAST_VALUED && !(flags & KINO_HPACK_NEVER_INDEXED)) {
        /* a static entry with this very value: one indexed byte (§6.1);
         * the entries of one name are consecutive */
        for (unsigned i = index; i <= HP_LAST_VALUED && hp_static[i].name_len == name_len &&
                                 !memcmp(hp_static[i].name, hp_static[index].name, name_len);
             i++) {
            const hp_static_entry *e = &hp_static[i];
            if (e->value_len == value_len && !memcmp(e->value, value, value_len)) {
                if (cap < 1) return 0;
                out[0] = (uint8_t)(0x80 | i);
                return 1;
            }
        }
    }
    uint8_t first = flags & KINO_HPACK_NEVER_INDEXED ? 0x10 : 0x00;
    size_t n = kino_hpack_encode_int(out, cap, index, 4, first);
    if (n == 0) return 0;
    if (!index) {
        size_t k = kino_hpack_encode_string(out + n, cap - n, name, name_len, 1);
        if (k == 0) return 0;
        n += k;
    }
    size_t k = kino_hpack_encode_string(out + n, cap - n, value, value_len, 0);
    return k ? n + k : 0;
}
