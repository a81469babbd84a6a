/* The runtime's timestamps.
 *
 * Every record carries the time it was written, and the hooks take about 15
 * per HTTP request. Reading CLOCK_BOOTTIME through the vDSO costs ~20 ns in a
 * tight loop and more inside the interpreter, where the fence before its TSC
 * read waits for the interpreter's outstanding loads: measured on aiohttp
 * under wrk, it was 1.4% of the traced server's cycles, a fifth of all that
 * tracing added.
 *
 * So where the kernel itself keeps time with the TSC (clocksource "tsc":
 * invariant and the same on every CPU), the recorder asks for TSC timestamps
 * (ASTRACE_CLOCK=tsc): records then carry raw ticks, the segment says so
 * (ASTRACE_SEG_TSC), and the recorder converts them to BOOTTIME ns
 * (recorder/transport/tsc_map.h). Anywhere else, or with ASTRACE_CLOCK unset,
 * timestamps are BOOTTIME ns as before.
 *
 * Durations the runtime computes itself (loop lag: now minus when a callback
 * became ready) are converted here, by a rate calibrated against BOOTTIME as
 * the program runs (a clock read every couple of milliseconds at most).
 */
#ifndef ASTRACE_RT_CLOCK_H
#define ASTRACE_RT_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define RT_HAVE_TSC 1
#else
#define RT_HAVE_TSC 0
#endif

extern int rt_clock_tsc; /* 1: timestamps are TSC ticks */

/* Reads ASTRACE_CLOCK; returns 1 if timestamps are TSC ticks from now on. */
int rt_clock_init(void);

/* A clock's reading in ns (CLOCK_BOOTTIME, CLOCK_MONOTONIC, ...). */
static inline uint64_t rt_clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Now, in the segment's clock: TSC ticks or BOOTTIME ns. Async-signal-safe. */
static inline uint64_t rt_now(void) {
#if RT_HAVE_TSC
    if (rt_clock_tsc) return __rdtsc();
#endif
    return rt_clock_ns(CLOCK_BOOTTIME);
}

/* A duration between two rt_now() values, in ns; and back. `now` is a
 * recent rt_now() value (the calibration's age is told by it). */
int64_t rt_clock_to_ns(int64_t ticks, uint64_t now);
int64_t rt_ns_to_clock(int64_t ns, uint64_t now);

#endif
