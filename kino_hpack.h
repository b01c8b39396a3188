/*
 * kino_hpack.h -- HPACK, the header compression of HTTP/2 (RFC 7541):
 * a decoder for request header blocks and an encoder for response
 * header blocks (kino_hpack.c; doc/http2.md, "HPACK").
 *
 * No Ruby, no dependency on the rest of the engine, no allocation per
 * header: a decoder allocates its dynamic table once (and, unless given
 * one, its scratch buffer) in kino_hpack_decoder_init; the encoder keeps
 * no table and allocates nothing.
 *
 * Usage from the HTTP/2 layer (kino_h2.c):
 *
 *   Per connection:
 *     kino_hpack_decoder dec;
 *     kino_hpack_decoder_init(&dec, 4096, 65536, NULL, 0)
 *         4096:  the SETTINGS_HEADER_TABLE_SIZE we advertise; size
 *                updates above it are a COMPRESSION_ERROR. Keep the
 *                default, KINO_HPACK_TABLE_SIZE: a peer may send blocks
 *                against 4096 before it has seen a smaller setting
 *         65536: the SETTINGS_MAX_HEADER_LIST_SIZE we advertise: the cap
 *                on a decoded list, name + value + 32 per field
 *         NULL, 0: the decoder allocates its own scratch buffer; or pass
 *                one of at least kino_hpack_scratch_size(4096, 65536)
 *                bytes shared by every decoder one thread runs (strings
 *                only live during one kino_hpack_decode call)
 *     kino_hpack_encoder enc; kino_hpack_encoder_init(&enc);
 *     ... kino_hpack_decoder_free(&dec) when the connection closes.
 *
 *   A request: gather HEADERS + CONTINUATION fragments into one buffer,
 *   then  rc = kino_hpack_decode(&dec, block, len, on_field, stream)
 *   on the thread that owns the connection (a decoder is used by one
 *   thread at a time; it takes no lock), in the order the blocks
 *   arrived (every block, also for a stream that was reset or refused:
 *   the table must stay in step with the peer's). on_field sees each
 *   field in order; copy what you keep, the pointers die when it
 *   returns. rc:
 *     KINO_HPACK_OK        every field was passed to on_field
 *     KINO_HPACK_TOO_LARGE the list passed the cap; fields after the
 *                          cap were not passed; the table is in step,
 *                          so the connection lives: refuse the stream
 *                          (431, or RST_STREAM)
 *     KINO_HPACK_ERROR     COMPRESSION_ERROR: close the connection
 *                          (GOAWAY); dec.error says why, for the log
 *   on_field returning non-zero means "no more fields for this block":
 *   the rest is still decoded (for the table), not passed on; the result
 *   is then KINO_HPACK_OK (or ERROR / TOO_LARGE as the block says).
 *   Names arrive as sent: checking them (lowercase, pseudo-fields first,
 *   no connection-specific fields) is the HTTP/2 layer's job (RFC 9113
 *   §8.2), as is counting fields against any other limit.
 *
 *   A response: on a SETTINGS frame from the peer with
 *   HEADER_TABLE_SIZE, call kino_hpack_encoder_set_peer_table_size.
 *   Each header block starts with kino_hpack_encoder_begin (it writes the
 *   pending table size update, often nothing), then
 *   kino_hpack_encode_status, then kino_hpack_encode_field per field
 *   (names are lowercased as they are written). The encode functions keep
 *   no state, so any thread may encode a block's fields; only _begin must
 *   run where header blocks are put on the wire in order (the first block
 *   sent after our SETTINGS ACK carries the update). Each returns the
 *   bytes written, or 0 when `cap` is too small (what it wrote then
 *   means nothing); kino_hpack_field_bound says how much room a field
 *   can take. Field bytes go out as given: refusing CR, LF or NUL in
 *   response fields is the caller's job.
 */
#ifndef KINO_HPACK_H
#define KINO_HPACK_H

#include <stddef.h>
#include <stdint.h>

/* The header table size both sides start with (RFC 9113 §6.5.2). */
#define KINO_HPACK_TABLE_SIZE 4096

/* What an entry, and a field in the list-size accounting, costs on top
 * of its name and value (RFC 7541 §4.1, RFC 9113 §6.5.2). */
#define KINO_HPACK_ENTRY_OVERHEAD 32

/* Largest table size (and list cap) the decoder accepts at init. */
#define KINO_HPACK_MAX_LIMIT (1u << 24)

/* Results of kino_hpack_decode. */
#define KINO_HPACK_OK 0
#define KINO_HPACK_TOO_LARGE 1  /* over the list cap; table in step */
#define KINO_HPACK_ERROR (-1)   /* COMPRESSION_ERROR; the decoder is dead */

/* kino_hpack_field.flags */
#define KINO_HPACK_NEVER_INDEXED 1u /* sent as "never indexed" (§6.2.3) */

/* One decoded field. name and value are not NUL-terminated and live
 * only until the callback returns. */
typedef struct kino_hpack_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    unsigned flags;
} kino_hpack_field;

/* Called once per field, in block order; non-zero: pass no more fields
 * of this block (decoding goes on for the table). */
typedef int kino_hpack_field_cb(void *ud, const kino_hpack_field *f);

/* The decoder. Treat the members as private, except `error`. */
typedef struct kino_hpack_decoder {
    const char *error;   /* why the last decode failed (static text), or NULL */
    /* dynamic table: entry strings in buf, entry records in a ring */
    uint8_t *buf;        /* 2 * limit bytes; live strings in [lo, hi) */
    uint32_t buflen, lo, hi;
    struct kino_hpack_slot *slots; /* ring, oldest at slot_first */
    uint32_t nslots, slot_first, count;
    uint32_t size;       /* sum of entry sizes (§4.1) */
    uint32_t max;        /* current maximum size (from size updates) */
    uint32_t limit;      /* SETTINGS_HEADER_TABLE_SIZE we advertise */
    uint32_t max_list;   /* cap on a decoded list (§6.5.2 accounting) */
    uint8_t *scratch;    /* Huffman-decoded strings of one field */
    size_t scratch_len;
    int own_scratch;
    int dead;            /* a decode failed: every later call fails */
} kino_hpack_decoder;

/* The scratch size a decoder with this table limit and list cap needs. */
size_t kino_hpack_scratch_size(uint32_t limit, uint32_t max_list);

/* Set up a decoder: table limit (1..KINO_HPACK_MAX_LIMIT, usually
 * KINO_HPACK_TABLE_SIZE; 0 is allowed and means "no dynamic table"),
 * list cap (>= KINO_HPACK_ENTRY_OVERHEAD, <= KINO_HPACK_MAX_LIMIT), and
 * an optional shared scratch buffer (NULL: allocate one). Returns 0, or
 * -1 on bad arguments, a scratch buffer smaller than
 * kino_hpack_scratch_size, or no memory (nothing to free then, and a
 * decode with it fails). */
int kino_hpack_decoder_init(kino_hpack_decoder *dec, uint32_t limit, uint32_t max_list,
                            uint8_t *scratch, size_t scratch_len);

/* Free what init allocated (not a caller's scratch). Idempotent. */
void kino_hpack_decoder_free(kino_hpack_decoder *dec);

/* Decode one complete header block (RFC 7541 §3, §6): see the usage
 * note above for the results. A dynamic table size update is accepted
 * only before the first field and only up to the limit. */
int kino_hpack_decode(kino_hpack_decoder *dec, const uint8_t *block, size_t len,
                      kino_hpack_field_cb *cb, void *ud);

/* The dynamic table as the decoder holds it (for tests and debugging):
 * entry i (1 = newest, as dynamic index 61 + i) or -1 when out of range. */
int kino_hpack_decoder_entry(const kino_hpack_decoder *dec, uint32_t i, kino_hpack_field *f);

/* The encoder: only the peer's table size, and whether it must be told. */
typedef struct kino_hpack_encoder {
    uint32_t table_size; /* the peer decoder's maximum: the default, or what we last signalled */
    uint32_t low;        /* smallest peer setting since the last block */
    int pending;         /* low < table_size: a size update is owed */
} kino_hpack_encoder;

void kino_hpack_encoder_init(kino_hpack_encoder *enc);

/* The peer sent SETTINGS_HEADER_TABLE_SIZE = size. */
void kino_hpack_encoder_set_peer_table_size(kino_hpack_encoder *enc, uint32_t size);

/* Start a header block: write the size update owed, if any (one update
 * to the smallest size the peer set since the last block: the encoder
 * never inserts, so it never needs a larger table). Returns the bytes
 * written: 0 when none is owed, or when cap < KINO_HPACK_BEGIN_MAX (the
 * update then stays owed; so always give KINO_HPACK_BEGIN_MAX bytes). */
#define KINO_HPACK_BEGIN_MAX 6
size_t kino_hpack_encoder_begin(kino_hpack_encoder *enc, uint8_t *out, size_t cap);

/* :status. 200, 204, 206, 304, 400, 404, 500 take one byte (static
 * table); any other 100..999 a literal with the static name. Returns
 * the bytes written, or 0 when cap is too small or status out of range. */
size_t kino_hpack_encode_status(uint8_t *out, size_t cap, int status);

/* One field as a literal that is not added to the dynamic table (or an
 * indexed static entry when name and value match one): the name by
 * static index where the table has it, strings Huffman-coded when that
 * is shorter, the name lowercased. flags: KINO_HPACK_NEVER_INDEXED for
 * values intermediaries must not index either (credentials). Bytes are
 * copied as given: checking them (no CR, LF, NUL) is the caller's job.
 * Returns the bytes written, or 0 when cap is too small (or a length is
 * over 2^32 - 1); what was written at out then means nothing. */
size_t kino_hpack_encode_field(uint8_t *out, size_t cap, const char *name, size_t name_len,
                               const char *value, size_t value_len, unsigned flags);

/* Most bytes kino_hpack_encode_field can write for these lengths. */
size_t kino_hpack_field_bound(size_t name_len, size_t value_len);

/* --- Primitives (RFC 7541 §5), for tests and the fuzz harness --- */

/* §5.1: write v with an N-bit prefix (1..8) into out, keeping the bits
 * of `first` above the prefix. Returns bytes written, 0 if cap is too
 * small. */
size_t kino_hpack_encode_int(uint8_t *out, size_t cap, uint32_t v, int prefix, uint8_t first);

/* §5.1: read an N-bit-prefix integer at *p (advanced past it). Returns
 * 0; -1 when it is truncated; -2 when it does not fit in 32 bits or
 * takes more than 5 continuation bytes (*p is then unspecified). */
int kino_hpack_decode_int(const uint8_t **p, const uint8_t *end, int prefix, uint32_t *v);

/* §5.2: write a string literal (length, then octets), Huffman-coded
 * when that is shorter; lower: lowercase ASCII letters as they are
 * written. Returns bytes written, 0 if cap is too small. */
size_t kino_hpack_encode_string(uint8_t *out, size_t cap, const char *s, size_t len, int lower);

/* Appendix B: the Huffman-coded length of s in bytes, and the coding of
 * s into out (exactly that many bytes, caller checks room). */
size_t kino_hpack_huffman_len(const char *s, size_t len, int lower);
size_t kino_hpack_huffman_encode(uint8_t *out, const char *s, size_t len, int lower);

/* Appendix B: decode len Huffman-coded bytes into out (room bytes).
 * Returns the decoded length; -1 when the coding is invalid (EOS
 * decoded, padding longer than 7 bits or not all ones; *why says
 * which); -2 when out is not NULL and the result does not fit in room.
 * With out NULL it only validates and measures. */
long kino_hpack_huffman_decode(uint8_t *out, size_t room, const uint8_t *in, size_t len,
                               const char **why);

#endif
