/* Small helpers shared by every recorder part: growable byte buffers,
 * checked allocation and error reporting. */
#ifndef ASTRACE_UTIL_H
#define ASTRACE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Copies src into dst[cap] (cap > 0), cut to fit and terminated; returns
 * the length copied. For the per-event paths, where snprintf("%s") costs
 * several times more. */
static inline size_t text_copy(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
    return n;
}

/* Appends src to the text of length len in dst[cap] (len < cap), cut to
 * fit; returns the new length. */
static inline size_t text_cat(char *dst, size_t cap, size_t len, const char *src) {
    return len + text_copy(dst + len, cap - len, src);
}

/* Writes v in decimal at dst (room for 20 digits), unterminated; returns the
 * number of digits. For the per-event paths, like text_copy. */
static inline size_t text_u64(char *dst, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof digits);
    for (size_t i = 0; i < n; i++) dst[i] = digits[n - 1 - i];
    return n;
}

/* The recorder's hash of texts, never 0: eight bytes per multiply (texts
 * are hashed once per event that names one), with a final avalanche so the
 * low bits that pick a slot depend on every byte. */
static inline uint64_t hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ len;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0; /* byte by byte: no partial store then wide load */
    for (size_t i = 0; i < len; i++) tail |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tail) * 0x94d049bb133111ebULL;
    h ^= h >> 32;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

uint64_t now_boottime_ns(void);
uint64_t now_monotonic_ns(void);
uint64_t now_realtime_ns(void);

#endif
