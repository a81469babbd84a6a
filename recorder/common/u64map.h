/* An open-addressing map from non-zero 64-bit keys to pointers, for the
 * recorder's caches keyed by addresses (code objects, program counters). */
#ifndef ASTRACE_U64MAP_H
#define ASTRACE_U64MAP_H

#include <stddef.h>
#include <stdint.h>

struct u64map {
    uint64_t *keys; /* 0 = empty slot */
    void **values;
    size_t cap, used;
};

/* The value stored for key (non-zero), or NULL. */
void *u64map_get(const struct u64map *m, uint64_t key);
/* Stores value for key, replacing any previous one. */
void u64map_put(struct u64map *m, uint64_t key, void *value);
/* Calls free_value (if given) on every value, then frees the table. */
void u64map_free(struct u64map *m, void (*free_value)(void *));

#endif
