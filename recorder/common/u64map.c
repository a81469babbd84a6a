/* Implementation of u64map.h: linear probing, grown at half full. */
#include "common/u64map.h"

#include <stdlib.h>

#include "common/util.h"

void *u64map_get(const struct u64map *m, uint64_t key) {
    if (!m->cap) return NULL;
    for (size_t i = hash_u64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->values[i]) return NULL;
        if (m->keys[i] == key) return m->values[i];
    }
}

static void grow(struct u64map *m) {
    size_t ncap = m->cap ? m->cap * 2 : 256;
    uint64_t *keys = xcalloc(ncap, sizeof *keys);
    void **values = xcalloc(ncap, sizeof *values);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->values[i]) continue;
        size_t j = hash_u64(m->keys[i]) & (ncap - 1);
        while (values[j]) j = (j + 1) & (ncap - 1);
        keys[j] = m->keys[i];
        values[j] = m->values[i];
    }
    free(m->keys);
    free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = ncap;
}

void u64map_put(struct u64map *m, uint64_t key, void *value) {
    if (!value) return;
    if ((m->used + 1) * 2 > m->cap) grow(m);
    size_t i = hash_u64(key) & (m->cap - 1);
    while (m->values[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (!m->values[i]) m->used++;
    m->keys[i] = key;
    m->values[i] = value;
}

void u64map_free(struct u64map *m, void (*free_value)(void *)) {
    for (size_t i = 0; free_value && i < m->cap; i++)
        if (m->values[i]) free_value(m->values[i]);
    free(m->keys);
    free(m->values);
    m->keys = NULL;
    m->values = NULL;
    m->cap = m->used = 0;
}
