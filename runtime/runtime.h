/* Internal interface of the _astrace runtime (the extension module loaded
 * into every traced Python process).
 *
 *   segment.c  creates this process's shared-memory segment, hands each
 *              thread a ring, owns the string table, survives fork().
 *   emit.h     the hot path: write one record into the calling thread's ring.
 *   clock.c    the records' timestamps: TSC ticks or BOOTTIME ns.
 *   hooks_loop.c  wraps asyncio's loop iteration, selector and Handle._run.
 *   names.c    turns a callback object into a cached string-table id.
 *   tasks.c    task creation, steps and what a suspended task awaits.
 *   pyframes.c reads CPython's interpreter frames (per-version layout).
 *   code_info.c  per-code-object facts (qualname, user code or stdlib) and
 *              "file:line" strings, cached.
 *   sampler.c  per-thread timers and the signal handler that takes stack
 *              samples into each thread's sample ring.
 *   py_layout.c  finds where code objects and strings keep what the
 *              recorder reads to name sampled frames.
 *   module.c   the Python-facing module: start(), stop(), thread_started().
 *
 * The runtime is built against CPython's limited API (3.11), so one binary
 * loads in every CPython 3.11+.
 */
#ifndef ASTRACE_RUNTIME_H
#define ASTRACE_RUNTIME_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <signal.h>

#include "astrace/ring.h"
#include "clock.h"

struct rt_config {
    const char *session_dir;
    uint64_t ring_size;
    uint32_t ring_count;
    uint64_t strings_capacity;
    uint64_t sample_ring_size; /* 0: no sample rings */
};

/* Per-thread producer state. `generation` is compared with the segment
 * generation so a thread notices a fork (or a restart) and claims anew. */
struct rt_thread {
    uint32_t generation;
    int has_ring;
    struct astrace_ring ring;
    int loop_depth;      /* >0 while inside BaseEventLoop._run_once */
    void *current_task;  /* the task whose step runs on this thread, or NULL */
    int64_t current_lag; /* lag of the callback running on this thread, 0 if none */
    void *ready_queue;   /* ready_queue.c: the ready queue of the loop running here, */
    void *ready_ring;    /* and the times of its items */
    /* Sampler (sampler.c): this thread's sample ring and Python thread state. */
    int has_samples;
    struct astrace_ring samples;
    void *tstate; /* PyThreadState* */
    volatile sig_atomic_t in_sample;
    uint64_t cpu_mark; /* cpu mode: thread CPU time sampled up to */
    uint64_t sample_end_ns; /* CLOCK_MONOTONIC when this thread's last sample ended */
    uint32_t ticks_skipped; /* since then, for want of time (sampler.c) */
    sigjmp_buf fault_jump;
};

extern _Thread_local struct rt_thread rt_tls;
extern _Atomic uint32_t rt_generation;    /* 0 = not recording */
extern struct astrace_seg_header *rt_seg; /* this process's segment, NULL if none */
/* After fork(), until the child's first record makes its own segment. */
#define RT_GENERATION_FORK_PENDING UINT32_MAX

/* segment.c */
int rt_segment_start(const struct rt_config *cfg, const char *python_version, int32_t hexversion,
                     const char *executable, const char *cmdline, uint32_t cmdline_len, char *err, size_t errlen);
void rt_segment_stop(void);
int rt_thread_claim(void);                         /* 0 on success, -1 if no ring or not recording */
void rt_thread_set_name(const char *name);         /* sets the name on this thread's ring */
void rt_thread_begin(const char *name);            /* a Python thread starts (or is named): its ring and name */
void rt_thread_end(void);                          /* its Python code is done: stop sampling it */
uint32_t rt_string_add(const char *s, size_t len); /* 0 if it could not be stored */
void rt_count_no_ring_drop(void);
void rt_count_runtime_error(void); /* exc_guard.h: astrace's own work failed */
/* A note for the user: appended to <session>/<pid>.note, which the recorder
 * prints and keeps in the trace. Never written to the program's stderr. */
void rt_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* sampler.c */
int rt_sampler_start(int rate_hz, int cpu, int native, int signo, char *err, size_t errlen);
int rt_sampler_native(void);
/* Arms the calling thread's timer; call with the thread's PyThreadState. */
void rt_sampler_thread_start(uint32_t ring_index, void *tstate);
void rt_sampler_thread_stop(uint32_t ring_index);
void rt_sampler_stop(void);
void rt_sampler_after_fork(void);
void *rt_python_thread_state(void); /* module.c: the calling thread's PyThreadState, or NULL */

/* py_layout.c (PyObject* arguments) */
int rt_py_layout_probe(struct astrace_py_layout *out, void *probe_code, void *probe_strings, void *call_ops, char *err,
                       size_t errlen);

/* names.c */
enum rt_callback_kind { RT_CB_PLAIN = 0, RT_CB_TASK_STEP = 1 };
uint32_t rt_callback_name_id(void *callback /* PyObject* */, int *kind);
void rt_names_clear(void);

/* tasks.c: coroutine lifecycle (PyObject* arguments) */
int rt_tasks_init(void *task_types /* tuple of task classes */, void *stdlib_prefixes /* list of str */,
                  long hexversion, void *code_type /* types.CodeType */);
int rt_is_task(void *obj);
/* After create_task(coro, ...) returned `task`; coro may be NULL. */
void rt_task_created(void *task, void *coro, uint64_t call_start /* rt_now() */);
void *rt_task_step_begin(void *callback); /* the task a step callback runs, new ref; NULL if none */
/* Consumes the task reference. `callback_end`: the step's callback ended
 * with it (1, or 2 if it raised): the record says so, and the caller writes
 * no CALLBACK_END. 0 for a step that ran outside a callback (eager). */
void rt_task_step_end(void *task, void *previous_task, int callback_end);

/* The hash of the runtime's open-addressing tables (keys are addresses). */
static inline uint32_t rt_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

#endif
