/* A minimal protobuf wire encoder for the packets the recorder writes by the
 * million (TrackEvent slices): appending tags, varints, fixed64s and
 * length-delimited fields straight into a buffer costs a fraction of
 * building protobuf-c structs and packing them. Field numbers are the ones in
 * proto/astrace_perfetto.proto; everything written here is decoded by the
 * protobuf-c reader in the tests, so a mistake shows up as a failing test. */
#ifndef ASTRACE_PB_ENCODE_H
#define ASTRACE_PB_ENCODE_H

#include <stdint.h>
#include <string.h>

#include "common/util.h"

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2 };

static inline void pb_reserve(struct buf *b, size_t n) {
    if (b->len + n > b->cap) buf_reserve(b, n);
}

static inline void pb_varint(struct buf *b, uint64_t v) {
    pb_reserve(b, 10);
    uint8_t *out = b->data + b->len;
    while (v >= 0x80) {
        *out++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *out++ = (uint8_t)v;
    b->len = (size_t)(out - b->data);
}

static inline void pb_tag(struct buf *b, uint32_t field, int wire) {
    pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

static inline void pb_uint(struct buf *b, uint32_t field, uint64_t v) {
    pb_tag(b, field, PB_VARINT);
    pb_varint(b, v);
}

static inline void pb_fixed64(struct buf *b, uint32_t field, uint64_t v) {
    pb_tag(b, field, PB_FIXED64);
    pb_reserve(b, 8);
    for (int i = 0; i < 8; i++) b->data[b->len++] = (uint8_t)(v >> (8 * i));
}

static inline void pb_double(struct buf *b, uint32_t field, double d) {
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    pb_fixed64(b, field, v);
}

static inline void pb_bytes(struct buf *b, uint32_t field, const void *p, size_t n) {
    pb_tag(b, field, PB_LEN);
    pb_varint(b, n);
    buf_append(b, p, n);
}

/* Nested messages: reserve a one-byte length, fill the body, then fix the
 * length up (moving the body when it needs more bytes). */
static inline size_t pb_begin(struct buf *b, uint32_t field) {
    pb_tag(b, field, PB_LEN);
    pb_reserve(b, 1);
    b->data[b->len++] = 0;
    return b->len;
}

static inline void pb_end(struct buf *b, size_t start) {
    size_t n = b->len - start;
    uint8_t len[10];
    size_t ll = varint_put(len, n);
    if (ll > 1) {
        buf_reserve(b, ll - 1);
        memmove(b->data + start + ll - 1, b->data + start, n);
        b->len += ll - 1;
    }
    memcpy(b->data + start - 1, len, ll);
}

#endif
