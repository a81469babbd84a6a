/* A traced process's shared-memory segment, faked in ordinary memory, for
 * unit tests that feed records straight to the encoder. */
#ifndef ASTRACE_FAKE_SEGMENT_H
#define ASTRACE_FAKE_SEGMENT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "astrace/shm_format.h"

/* A segment in ordinary memory: header, ring headers (unused), strings. */
static inline struct astrace_seg_header *fake_segment(void) {
    uint64_t total = astrace_seg_total_size(4, 4096, 65536);
    struct astrace_seg_header *h = calloc(1, total);
    h->magic = ASTRACE_SHM_MAGIC;
    h->version = ASTRACE_SHM_VERSION;
    h->header_size = sizeof *h;
    h->pid = 4242;
    h->ppid = 1;
    h->ring_count = 4;
    h->ring_size = 4096;
    h->rings_offset = (sizeof *h + 4095) & ~4095ULL;
    h->ring_data_offset = h->rings_offset + 4096;
    h->strings_offset = h->ring_data_offset + 4 * 4096;
    h->strings_capacity = 65536;
    h->start_boottime_ns = 1000000000ull;
    snprintf(h->python_version, sizeof h->python_version, "3.11.7 (test)");
    snprintf(h->executable, sizeof h->executable, "/usr/bin/python3");
    const char argv[] = "python3\0app.py\0--flag";
    memcpy(h->cmdline, argv, sizeof argv);
    h->cmdline_len = sizeof argv;
    return h;
}

static inline uint32_t add_string(struct astrace_seg_header *h, const char *s) {
    uint64_t used = atomic_load(&h->strings_used);
    uint32_t len = (uint32_t)strlen(s);
    uint8_t *at = (uint8_t *)h + h->strings_offset + used;
    memcpy(at, &len, 4);
    memcpy(at + 4, s, len);
    atomic_store(&h->strings_used, used + ((4 + len + 3) & ~3u));
    return (uint32_t)used + 1;
}

#endif
