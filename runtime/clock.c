/* Implementation of clock.h: the TSC choice and the per-thread calibration
 * of TSC ticks against BOOTTIME ns for durations. */
#include "clock.h"

#include <stdlib.h>
#include <string.h>

int rt_clock_tsc;

/* The pair of readings every thread's rate is measured from. */
static uint64_t start_tsc, start_ns;

int rt_clock_init(void) {
    const char *want = getenv("ASTRACE_CLOCK");
    rt_clock_tsc = RT_HAVE_TSC && want && !strcmp(want, "tsc");
#if RT_HAVE_TSC
    if (rt_clock_tsc && !start_tsc) {
        start_ns = rt_boottime_ns();
        start_tsc = __rdtsc();
    }
#endif
    return rt_clock_tsc;
}

/* A thread's rate: ns per tick from the start pair to the thread's latest
 * pair, read again once that is REFRESH_TICKS old, or older than the span it
 * closed (so a duration is never converted by a rate measured over a much
 * shorter span than its own: at most twice the reading jitter of error). */
#define REFRESH_TICKS (1ull << 22) /* ~1-2 ms at 2-4 GHz */

static _Thread_local struct {
    uint64_t tsc;
    double ns_per_tick;
} cal;

static double ns_per_tick(void) {
#if RT_HAVE_TSC
    uint64_t age = __rdtsc() - cal.tsc;
    if (!cal.ns_per_tick || age >= REFRESH_TICKS || age > cal.tsc - start_tsc) {
        uint64_t ns = rt_boottime_ns();
        uint64_t tsc = __rdtsc();
        if (tsc > start_tsc && ns > start_ns) {
            cal.tsc = tsc;
            cal.ns_per_tick = (double)(ns - start_ns) / (double)(tsc - start_tsc);
        }
    }
    return cal.ns_per_tick;
#else
    return 1.0;
#endif
}

int64_t rt_clock_to_ns(int64_t ticks) {
    if (!rt_clock_tsc) return ticks;
    double r = ns_per_tick();
    return r > 0 ? (int64_t)((double)ticks * r) : -1;
}

int64_t rt_ns_to_clock(int64_t ns) {
    if (!rt_clock_tsc) return ns;
    double r = ns_per_tick();
    return r > 0 ? (int64_t)((double)ns / r) : 0;
}
