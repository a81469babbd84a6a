/* A trace's profile: what `astrace diff` compares, aggregated in one pass
 * over the streaming reader. Memory holds the aggregates (one entry per
 * coroutine, await site and function, a fixed-size histogram for each
 * percentile) plus the reader's decoding state, never the slices.
 *
 * Where the numbers come from (see README "What is in a trace"):
 *  - event loop: `loop iteration` slices on thread tracks; their `select`
 *    children (idle time) and other children (callbacks, `garbage
 *    collection` excepted); the `loop lag` counter tracks (ns);
 *  - tasks: any slice with both `coroutine` and `outcome` args is one
 *    finished (or still pending at the end) task with its totals
 *    (`running_ms`, `waiting_ms`): a lane's lifetime slice, or the last run of
 *    a task that had no lane (on a "<coroutine> (more tasks)" track);
 *  - steps: the loop thread's callback slices named `step <task> <coroutine>`
 *    (the coroutine is the last word), which exist for every task;
 *  - awaits: slices named `await ...` on task lanes, by name and `awaited_at`
 *    (tasks without a lane have no await slices);
 *  - functions: PerfSample callstacks (leaf = self; anywhere = total).
 */
#ifndef ASTRACE_PROFILE_H
#define ASTRACE_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/hist.h"
#include "reader/trace_reader.h"

struct coro_stats {
    char *name;
    uint64_t tasks;
    double run_ms, wait_ms; /* sums of the tasks' running_ms / waiting_ms */
    uint64_t steps;
    struct hist step_ns;
};

struct await_stats {
    char *what;  /* "await asyncio.sleep()" */
    char *where; /* awaited_at, "" if absent */
    uint64_t count;
    double total_ns;
    struct hist ns;
};

struct fn_stats {
    char *name;
    uint64_t self, total; /* samples with it as leaf / anywhere */
    uint64_t last_sample; /* to count it once per sample */
};

struct group_index; /* string key -> index */

struct profile {
    char *path;
    char *command;   /* from the session metadata, NULL if absent */
    int tasks_off;   /* the session says tasks=off (--no-tasks) */
    int sampler_off; /* the session says sampler=off */
    struct trace_stats st;
    uint64_t processes, loop_threads, events_dropped;
    /* event loop */
    uint64_t iterations, callbacks;
    double iter_ns, select_ns;
    uint64_t loop_first_ns, loop_last_ns; /* first iteration start, last iteration end */
    uint64_t slowest_busy_ns;
    struct hist busy_ns; /* per iteration: its duration minus its select */
    struct hist lag_ns;  /* loop lag counter values */
    /* tasks */
    uint64_t tasks, tasks_without_lane; /* the latter: no lane for some or all of their steps */
    struct coro_stats *coros;
    size_t ncoros, capcoros;
    struct await_stats *awaits;
    size_t nawaits, capawaits;
    /* samples */
    uint64_t samples, samples_unresolved;
    struct fn_stats *fns;
    size_t nfns, capfns;
    /* internal */
    struct group_index *coro_index, *await_index, *fn_index;
    struct loop_track *loop_tracks; /* per track index */
    size_t nloop_tracks;
    uint8_t *track_kinds; /* per track index: 1 + enum track_kind */
    size_t ntrack_kinds;
};

/* Reads `path` into `p`. Returns 0, or -1 with a message in err; `p` is to be
 * released with profile_free either way. */
int profile_read(const char *path, struct profile *p, char *err, size_t errlen);
/* Same from memory (the fuzz target's). */
int profile_read_buffer(const uint8_t *data, size_t len, struct profile *p, char *err, size_t errlen);
void profile_free(struct profile *p);

/* Lookups by key; NULL if absent. */
const struct coro_stats *profile_coro(const struct profile *p, const char *name);
const struct await_stats *profile_await(const struct profile *p, const char *what, const char *where);
const struct fn_stats *profile_fn(const struct profile *p, const char *name);

/* Loop wall time in ns (first iteration start to last iteration end), 0 if
 * the trace has no loop iterations. */
uint64_t profile_loop_wall_ns(const struct profile *p);

#endif
