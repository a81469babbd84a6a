/* The runtime's hot path: append one record to the calling thread's ring.
 * No allocation, no locks, no Python API, no I/O; a full ring drops the
 * record (counted in the ring header) and returns. */
#ifndef ASTRACE_EMIT_H
#define ASTRACE_EMIT_H

#include "runtime.h"

/* A thread claims a ring on its first record of each generation; if none
 * is free, its records are dropped and counted for the rest of it. */
static inline int rt_ready(void) {
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_acquire);
    if (gen == 0) return 0;
    if (rt_tls.generation != gen) rt_thread_claim();
    if (!rt_tls.has_ring) {
        rt_count_no_ring_drop();
        return 0;
    }
    return 1;
}

/* Writes a record; call only after rt_ready() returned 1 on this thread. */
static inline void rt_write(uint16_t type, uint32_t str0, uint64_t ts, int64_t a0) {
    uint64_t next;
    struct astrace_rec_arg *rec = (struct astrace_rec_arg *)astrace_ring_reserve(&rt_tls.ring, sizeof *rec, &next);
    if (!rec) return;
    rec->h.type = type;
    rec->h.size = sizeof *rec;
    rec->h.str0 = str0;
    rec->h.ts = ts;
    rec->a0 = a0;
    astrace_ring_commit(&rt_tls.ring, next);
}

static inline void rt_emit(uint16_t type, uint32_t str0, uint64_t ts, int64_t a0) {
    if (rt_ready()) rt_write(type, str0, ts, a0);
}

#endif
