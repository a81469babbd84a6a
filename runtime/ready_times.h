/* When each asyncio Handle became ready, so the callback's start can say how
 * late the loop ran it (loop lag). Handle.__init__ records the time; the run
 * takes it out. Timers need no entry: their due time is TimerHandle._when.
 *
 * An open-addressing table keyed by the handle's address. A handle that is
 * cancelled never runs and leaves its entry behind until a new handle at the
 * same address overwrites it; if the table ever fills it is simply cleared
 * (the lags of the handles then pending read as unknown). */
#ifndef ASTRACE_READY_TIMES_H
#define ASTRACE_READY_TIMES_H

#include <stdint.h>

void ready_times_put(const void *handle, uint64_t ts);
/* The recorded time, removed; 0 if none. */
uint64_t ready_times_take(const void *handle);

#endif
