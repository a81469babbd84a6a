/* TSC ticks to BOOTTIME ns, for segments whose records carry TSC timestamps
 * (ASTRACE_SEG_TSC; runtime/clock.h says why the runtime writes them).
 *
 * The map is the line through (ticks, ns) pairs the recorder reads as it
 * goes: one when the session starts, and one each time it is about to read a
 * ring, after loading the ring's head. Every record up to that head was
 * written before the pair was read, so it falls between two pairs already
 * known and converts the same way whenever it is read: times stay in order.
 * A time outside the pairs kept follows the rate over all of them. Each
 * pair's error is about half a clock read (tens of ns); the rate between
 * pairs is the TSC's, measured. */
#ifndef ASTRACE_TSC_MAP_H
#define ASTRACE_TSC_MAP_H

#include <stdint.h>

#define TSC_MAP_PAIRS 64

struct tsc_pair {
    uint64_t tsc, ns;
};

struct tsc_map {
    struct tsc_pair pairs[TSC_MAP_PAIRS]; /* a ring, oldest first from `first` */
    unsigned count, first;
};

/* Usable: the platform has a TSC and the kernel keeps time with it. */
int tsc_map_usable(void);
void tsc_map_init(struct tsc_map *m);
/* Reads a pair now (after loading the heads of the rings about to be read:
 * one pair per segment and drain). */
void tsc_map_mark(struct tsc_map *m);
/* Adds a pair read elsewhere (tests); pairs must come in time order. */
void tsc_map_add(struct tsc_map *m, uint64_t tsc, uint64_t ns);
uint64_t tsc_map_ns(const struct tsc_map *m, uint64_t tsc);

#endif
