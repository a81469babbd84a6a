/* Implementation of tsc_map.h. */
#include "tsc_map.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

int tsc_map_usable(void) {
    if (!HAVE_TSC) return 0;
    /* The kernel only keeps time with a TSC it found invariant and in step
     * across CPUs; it switches away from one that misbehaves. */
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (!f) return 0;
    char name[32] = {0};
    int ok = fgets(name, sizeof name, f) && !strcmp(name, "tsc\n");
    fclose(f);
    return ok;
}

void tsc_map_init(struct tsc_map *m) {
    memset(m, 0, sizeof *m);
    tsc_map_mark(m);
}

void tsc_map_add(struct tsc_map *m, uint64_t tsc, uint64_t ns) {
    if (m->count) { /* keep time moving forward, whatever the readings say */
        const struct tsc_pair *last = &m->pairs[(m->first + m->count - 1) % TSC_MAP_PAIRS];
        if (tsc <= last->tsc || ns < last->ns) return;
    }
    if (m->count == TSC_MAP_PAIRS) {
        m->first = (m->first + 1) % TSC_MAP_PAIRS;
        m->count--;
    }
    m->pairs[(m->first + m->count) % TSC_MAP_PAIRS] = (struct tsc_pair){tsc, ns};
    m->count++;
}

void tsc_map_mark(struct tsc_map *m) {
#if HAVE_TSC
    /* The ns reading lies between the two tick readings: pair it with their
     * middle. */
    uint64_t before = __rdtsc();
    uint64_t ns = now_boottime_ns();
    uint64_t after = __rdtsc();
    tsc_map_add(m, before + (after - before) / 2, ns);
#else
    (void)m;
#endif
}

/* The time at `tsc` on the line through `from` at the rate between a and b. */
static uint64_t along(const struct tsc_pair *a, const struct tsc_pair *b, const struct tsc_pair *from, uint64_t tsc) {
    double rate = (double)(b->ns - a->ns) / (double)(b->tsc - a->tsc);
    if (tsc >= from->tsc) return from->ns + (uint64_t)((double)(tsc - from->tsc) * rate);
    uint64_t back = (uint64_t)((double)(from->tsc - tsc) * rate);
    return back < from->ns ? from->ns - back : 0;
}

uint64_t tsc_map_ns(const struct tsc_map *m, uint64_t tsc) {
    if (!m->count) return 0;
    const struct tsc_pair *oldest = &m->pairs[m->first];
    const struct tsc_pair *newest = &m->pairs[(m->first + m->count - 1) % TSC_MAP_PAIRS];
    if (m->count == 1) return tsc >= oldest->tsc ? oldest->ns : 0; /* no rate yet: cannot happen after a drain's mark */
    /* Outside the pairs, the rate over all of them (the longest span, so the
     * least jitter); between two pairs, the line between them. */
    if (tsc <= oldest->tsc) return along(oldest, newest, oldest, tsc);
    if (tsc >= newest->tsc) return along(oldest, newest, newest, tsc);
    /* Newest piece first: almost every record falls in one of the last few. */
    for (unsigned i = m->count - 1; i >= 1; i--) {
        const struct tsc_pair *a = &m->pairs[(m->first + i - 1) % TSC_MAP_PAIRS];
        const struct tsc_pair *b = &m->pairs[(m->first + i) % TSC_MAP_PAIRS];
        if (tsc >= a->tsc) return along(a, b, a, tsc);
    }
    return oldest->ns;
}
