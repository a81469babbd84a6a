/* A minimal protobuf wire encoder for the packets the recorder writes by the
 * million (TrackEvent slices): tags, varints, fixed64s and length-delimited
 * fields written straight into memory, a fraction of the cost of building
 * protobuf-c structs and packing them. Field numbers are the ones in
 * proto/astrace_perfetto.proto; everything written here is decoded by the
 * protobuf-c reader in the tests, so a mistake shows up as a failing test.
 *
 * The writer is a bare cursor: the caller reserves room for the whole packet
 * once (an upper bound: PB_TAG_MAX + PB_VARINT_MAX per scalar field, plus
 * PB_NEST_SLACK per nested message), then each call writes at the cursor and
 * returns the advanced one. Keeping the cursor in a local variable, instead
 * of a length field behind a pointer that every byte store may alias, is what
 * makes this fast. */
#ifndef ASTRACE_PB_ENCODE_H
#define ASTRACE_PB_ENCODE_H

#include <stdint.h>
#include <string.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2 };

#define PB_VARINT_MAX 10
#define PB_TAG_MAX 5 /* field numbers below 2^28 */
/* A nested message's length is reserved as one byte; a body of 128 bytes or
 * more moves right by up to this many to make room for a longer one. */
#define PB_NEST_SLACK 9

static inline uint8_t *pb_varint(uint8_t *w, uint64_t v) {
    while (v >= 0x80) {
        *w++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w++ = (uint8_t)v;
    return w;
}

static inline uint8_t *pb_tag(uint8_t *w, uint32_t field, int wire) {
    return pb_varint(w, ((uint64_t)field << 3) | (uint64_t)wire);
}

static inline uint8_t *pb_uint(uint8_t *w, uint32_t field, uint64_t v) {
    return pb_varint(pb_tag(w, field, PB_VARINT), v);
}

static inline uint8_t *pb_fixed64(uint8_t *w, uint32_t field, uint64_t v) {
    w = pb_tag(w, field, PB_FIXED64);
    for (int i = 0; i < 8; i++) *w++ = (uint8_t)(v >> (8 * i));
    return w;
}

static inline uint8_t *pb_double(uint8_t *w, uint32_t field, double d) {
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    return pb_fixed64(w, field, v);
}

static inline uint8_t *pb_bytes(uint8_t *w, uint32_t field, const void *p, size_t n) {
    w = pb_varint(pb_tag(w, field, PB_LEN), n);
    memcpy(w, p, n);
    return w + n;
}

/* Nested messages: pb_open() writes the tag and a one-byte length and
 * returns where the body starts; pb_close(body, end) sets the length and
 * returns the end of the message (moved when the length needs more bytes). */
static inline uint8_t *pb_open(uint8_t *w, uint32_t field) {
    w = pb_tag(w, field, PB_LEN);
    *w++ = 0;
    return w;
}

static inline uint8_t *pb_close(uint8_t *body, uint8_t *end) {
    size_t n = (size_t)(end - body);
    if (n < 0x80) {
        body[-1] = (uint8_t)n;
        return end;
    }
    uint8_t len[PB_VARINT_MAX];
    size_t ll = (size_t)(pb_varint(len, n) - len);
    memmove(body + ll - 1, body, n);
    memcpy(body - 1, len, ll);
    return end + ll - 1;
}

#endif
