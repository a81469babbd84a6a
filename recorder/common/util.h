/* Small helpers shared by every recorder part: growable byte buffers,
 * checked allocation and error reporting. */
#ifndef ASTRACE_UTIL_H
#define ASTRACE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ASTRACE_VERSION "0.1.0"

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Prints "astrace: <message>" to stderr. */
void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct buf {
    uint8_t *data;
    size_t len, cap;
};
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_free(struct buf *b);

/* Protobuf varint helpers used for the outer `Trace.packet` framing. */
size_t varint_put(uint8_t *out, uint64_t v);
/* Returns bytes consumed, or 0 if the varint is truncated or longer than 10 bytes. */
size_t varint_get(const uint8_t *p, size_t n, uint64_t *v);

/* 64-bit finalizer mix: the hash of the recorder's open-addressing tables. */
static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* FNV-1a of a byte string, never 0: the recorder's hash of texts. */
static inline uint64_t hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h ? h : 1;
}

uint64_t now_boottime_ns(void);
uint64_t now_monotonic_ns(void);
uint64_t now_realtime_ns(void);

#endif
