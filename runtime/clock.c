/* Implementation of clock.h: the TSC choice and the calibration of TSC
 * ticks against BOOTTIME ns for durations. */
#include "clock.h"

#include <stdatomic.h>
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
        start_ns = rt_clock_ns(CLOCK_BOOTTIME);
        start_tsc = __rdtsc();
    }
#endif
    return rt_clock_tsc;
}

/* ns per tick (32.32 fixed point), from the start pair to the latest pair,
 * which is read again once it is REFRESH_TICKS old, or older than the span
 * it closed (so a duration is never converted by a rate measured over a much
 * shorter span than its own: at most twice the reading jitter of error).
 * The TSC runs at one rate for every thread, so the rate is shared; a thread
 * that reads it while another refreshes it gets the old or the new one. */
#define REFRESH_TICKS (1ull << 22) /* ~1-2 ms at 2-4 GHz */

static _Atomic uint64_t rate_tsc, rate_fixed; /* when it was measured; the rate */

static uint64_t ns_per_tick_fixed(uint64_t now) {
#if RT_HAVE_TSC
    uint64_t at = atomic_load_explicit(&rate_tsc, memory_order_relaxed);
    uint64_t rate = atomic_load_explicit(&rate_fixed, memory_order_relaxed);
    if (!rate || now - at >= REFRESH_TICKS || now - at > at - start_tsc) {
        uint64_t ns = rt_clock_ns(CLOCK_BOOTTIME);
        uint64_t tsc = __rdtsc();
        if (tsc > start_tsc && ns > start_ns) {
            rate = (uint64_t)((double)(ns - start_ns) / (double)(tsc - start_tsc) * 4294967296.0);
            atomic_store_explicit(&rate_fixed, rate, memory_order_relaxed);
            atomic_store_explicit(&rate_tsc, tsc, memory_order_relaxed);
        }
    }
    return rate;
#else
    (void)now;
    return 1ull << 32;
#endif
}

int64_t rt_clock_to_ns(int64_t ticks, uint64_t now) {
    if (!rt_clock_tsc) return ticks;
    uint64_t r = ns_per_tick_fixed(now);
    return r ? (int64_t)(((__int128)ticks * r) >> 32) : -1;
}

int64_t rt_ns_to_clock(int64_t ns, uint64_t now) {
    if (!rt_clock_tsc) return ns;
    uint64_t r = ns_per_tick_fixed(now);
    return r ? (int64_t)((__int128)ns * ((__int128)1 << 32) / r) : 0;
}
