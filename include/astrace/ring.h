/* Single-producer/single-consumer byte ring over shared memory.
 *
 * Both halves are here so the runtime (producer), the recorder (consumer)
 * and the unit tests share one implementation of the wrap and drop rules
 * described in shm_format.h. Everything is static inline and free of
 * allocation, locks and system calls, so the producer half may run inside a
 * signal handler.
 */
#ifndef ASTRACE_RING_H
#define ASTRACE_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "astrace/record.h"
#include "astrace/shm_format.h"

struct astrace_ring {
    struct astrace_ring_header *hdr;
    uint8_t *data;
    uint64_t size; /* power of two */
};

/* Reserves `len` bytes (a multiple of 8, at least 16) for one record.
 * Returns where to write it, or NULL if the ring is full (the drop is
 * counted). Publish the record with astrace_ring_commit(). */
static inline void *astrace_ring_reserve(struct astrace_ring *r, uint32_t len, uint64_t *next_head) {
    uint64_t head = atomic_load_explicit(&r->hdr->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    uint64_t pos = head & (r->size - 1);
    uint64_t contig = r->size - pos;
    uint64_t need = contig < len ? contig + len : len;
    if (head - tail + need > r->size) {
        atomic_fetch_add_explicit(&r->hdr->dropped_records, 1, memory_order_relaxed);
        return NULL;
    }
    if (contig < len) {
        if (contig >= sizeof(struct astrace_rec_hdr)) {
            struct astrace_rec_hdr *pad = (struct astrace_rec_hdr *)(r->data + pos);
            pad->type = ASTRACE_REC_PAD;
            pad->size = 0;
        }
        head += contig;
        pos = 0;
    }
    *next_head = head + len;
    return r->data + pos;
}

static inline void astrace_ring_commit(struct astrace_ring *r, uint64_t next_head) {
    atomic_store_explicit(&r->hdr->head, next_head, memory_order_release);
}

/* Consumer: calls fn(ctx, record) for each complete record, in order, then
 * releases the space. Returns the number of records read, or -1 if the ring
 * holds something that is not a well-formed record (the ring is then left as
 * it was at the bad record; the caller should stop reading it). */
typedef void (*astrace_record_fn)(void *ctx, const struct astrace_rec_hdr *rec);

/* The same, up to a head the caller loaded (with acquire) beforehand. */
static inline long astrace_ring_drain_to(struct astrace_ring *r, uint64_t head, astrace_record_fn fn, void *ctx,
                                         long max_records) {
    uint64_t tail = atomic_load_explicit(&r->hdr->tail, memory_order_relaxed);
    long n = 0;
    if (head - tail > r->size) return -1;
    while (tail < head && n < max_records) {
        uint64_t pos = tail & (r->size - 1);
        uint64_t contig = r->size - pos;
        if (contig < sizeof(struct astrace_rec_hdr)) {
            tail += contig;
            continue;
        }
        const struct astrace_rec_hdr *rec = (const struct astrace_rec_hdr *)(r->data + pos);
        if (rec->type == ASTRACE_REC_PAD) {
            tail += contig;
            continue;
        }
        uint32_t size = rec->size;
        if (size < sizeof(struct astrace_rec_hdr) || (size & 7) || size > contig || size > head - tail) {
            atomic_store_explicit(&r->hdr->tail, tail, memory_order_release);
            return -1;
        }
        fn(ctx, rec);
        tail += size;
        n++;
    }
    atomic_store_explicit(&r->hdr->tail, tail, memory_order_release);
    return n;
}

static inline long astrace_ring_drain(struct astrace_ring *r, astrace_record_fn fn, void *ctx, long max_records) {
    return astrace_ring_drain_to(r, atomic_load_explicit(&r->hdr->head, memory_order_acquire), fn, ctx, max_records);
}

#endif
