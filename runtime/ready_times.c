/* Implementation of ready_times.h. */
#include "ready_times.h"
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#define CAP_MAX (1u << 20)

struct slot {
    uintptr_t key; /* 0 empty */
    uint64_t ts;
};

static struct slot *slots;
static uint32_t cap, used;

static uint32_t hash(uintptr_t k) {
    return rt_hash(k);
}

static void rehash(uint32_t ncap) {
    struct slot *n = calloc(ncap, sizeof *n);
    if (!n) return;
    for (uint32_t i = 0; i < cap; i++) {
        if (!slots[i].key) continue;
        uint32_t j = hash(slots[i].key) & (ncap - 1);
        while (n[j].key) j = (j + 1) & (ncap - 1);
        n[j] = slots[i];
    }
    free(slots);
    slots = n;
    cap = ncap;
}

void ready_times_put(const void *handle, uint64_t ts) {
    uintptr_t k = (uintptr_t)handle;
    if (used * 2 >= cap) {
        if (cap >= CAP_MAX) { /* full of stale entries: start over */
            memset(slots, 0, cap * sizeof *slots);
            used = 0;
        } else {
            rehash(cap ? cap * 2 : 1024);
            if (!slots) return;
        }
    }
    uint32_t i = hash(k) & (cap - 1);
    while (slots[i].key && slots[i].key != k) i = (i + 1) & (cap - 1);
    if (!slots[i].key) used++;
    slots[i].key = k;
    slots[i].ts = ts;
}

uint64_t ready_times_take(const void *handle) {
    if (!slots) return 0;
    uintptr_t k = (uintptr_t)handle;
    uint32_t mask = cap - 1;
    uint32_t i = hash(k) & mask;
    while (slots[i].key && slots[i].key != k) i = (i + 1) & mask;
    if (!slots[i].key) return 0;
    uint64_t ts = slots[i].ts;
    /* Remove with backward shift so later probes still find their keys. */
    slots[i].key = 0;
    used--;
    for (uint32_t j = (i + 1) & mask; slots[j].key; j = (j + 1) & mask) {
        uint32_t home = hash(slots[j].key) & mask;
        int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            slots[i] = slots[j];
            slots[j].key = 0;
            i = j;
        }
    }
    return ts;
}
