/* Binary event records: what the runtime writes into a ring and the recorder
 * reads back. Every record starts with struct astrace_rec_hdr; `size` is the
 * whole record in bytes, a multiple of 8. Timestamps are CLOCK_BOOTTIME
 * nanoseconds, Perfetto's default trace clock.
 *
 * Kinds are grouped by the issue that introduced them; new kinds are added at
 * the end and unknown kinds are skipped by the recorder (size says how far),
 * so an older recorder can read a newer runtime's ring.
 */
#ifndef ASTRACE_RECORD_H
#define ASTRACE_RECORD_H

#include <stdint.h>

enum astrace_rec_type {
    ASTRACE_REC_PAD = 0,        /* filler to the end of the ring; skip */
    ASTRACE_REC_THREAD_NAME,    /* str0 = new thread name */
    ASTRACE_REC_LOOP_BEGIN,     /* one BaseEventLoop._run_once starts */
    ASTRACE_REC_LOOP_END,       /* ... ends; a0 = 1 if it raised */
    ASTRACE_REC_POLL_BEGIN,     /* selector.select(timeout): a0 = timeout ns, -1 = block */
    ASTRACE_REC_POLL_END,       /* a0 = number of ready events, -1 if it raised */
    ASTRACE_REC_CALLBACK_BEGIN, /* Handle._run starts; str0 = callback name */
    ASTRACE_REC_CALLBACK_END,   /* a0 = 1 if the callback raised */
    ASTRACE_REC_TYPE_COUNT
};

struct astrace_rec_hdr {
    uint16_t type; /* enum astrace_rec_type */
    uint16_t size; /* bytes, including this header; multiple of 8 */
    uint32_t str0; /* string-table id, 0 = none */
    uint64_t ts;   /* CLOCK_BOOTTIME ns */
};

/* Records with one 64-bit argument. */
struct astrace_rec_arg {
    struct astrace_rec_hdr h;
    int64_t a0;
};

_Static_assert(sizeof(struct astrace_rec_hdr) == 16, "record header layout");
_Static_assert(sizeof(struct astrace_rec_arg) == 24, "record layout");

#endif
