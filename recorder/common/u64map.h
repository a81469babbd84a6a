/* An open-addressing map from 64-bit keys to non-NULL pointers: the
 * recorder's caches keyed by addresses (code objects, program counters) and
 * the reader's uuid and sequence indexes (indices stored + 1). */
#ifndef ASTRACE_U64MAP_H
#define ASTRACE_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map {
    uint64_t *keys;
    void **values; /* NULL = empty slot */
    size_t cap, used;
};

/* The value stored for key, or NULL. */
void *u64map_get(const struct u64map *m, uint64_t key);
/* Stores value (non-NULL; NULL stores nothing) for key, replacing any
 * previous one. */
void u64map_put(struct u64map *m, uint64_t key, void *value);
/* Calls free_value (if given) on every value, then frees the table. */
void u64map_free(struct u64map *m, void (*free_value)(void *));

#endif
