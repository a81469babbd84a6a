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
    ASTRACE_REC_LOOP_BEGIN,     /* one BaseEventLoop._run_once starts; a0 = ready queue length, -1 unknown */
    ASTRACE_REC_LOOP_END,       /* ... ends; a0 = 1 if it raised */
    ASTRACE_REC_POLL_BEGIN,     /* selector.select(timeout): a0 = timeout ns, -1 = block */
    ASTRACE_REC_POLL_END,       /* a0 = number of ready events, -1 if it raised */
    ASTRACE_REC_CALLBACK_BEGIN, /* struct astrace_rec_callback: Handle._run starts; str0 = callback name */
    ASTRACE_REC_CALLBACK_END,   /* a0 = 1 if the callback raised */
    /* Coroutine lifecycle (issue 3). */
    ASTRACE_REC_TASK_CREATE,   /* struct astrace_rec_task_create */
    ASTRACE_REC_TASK_STEP_END, /* struct astrace_rec_task_step_end */
    ASTRACE_REC_TASK_RENAME,   /* struct astrace_rec_task_create: task, name (set_name, create_task(name=)) */
    /* Loop health (issue 5). */
    ASTRACE_REC_GC_BEGIN, /* a0 = generation */
    ASTRACE_REC_GC_END,   /* a0 = objects collected */
    /* Sampler (issue 4), only in sample rings. */
    ASTRACE_REC_SAMPLE, /* struct astrace_rec_sample */
    ASTRACE_REC_TYPE_COUNT
};

struct astrace_rec_hdr {
    uint16_t type; /* enum astrace_rec_type */
    uint16_t size; /* bytes, including this header; multiple of 8 */
    uint32_t str0; /* string-table id, 0 = none */
    uint64_t ts;   /* CLOCK_BOOTTIME ns, or TSC ticks in a segment flagged ASTRACE_SEG_TSC */
};

/* Records with one 64-bit argument. */
struct astrace_rec_arg {
    struct astrace_rec_hdr h;
    int64_t a0;
};

/* A callback starts. Older runtimes wrote only `task` (24 bytes). */
struct astrace_rec_callback {
    struct astrace_rec_hdr h;
    int64_t task;   /* the task whose step this is, 0 if none */
    int64_t lag_ns; /* since it became ready (scheduled, or its timer due), -1 unknown */
};

/* A task came to be: created through a hooked create_task, or first seen at
 * a step. Tasks are identified by their address while alive; a create record
 * for a live address means the old task was destroyed while pending.
 * str0 = coroutine qualname. The task's name follows inline unless it is a
 * default "Task-N" name, sent as default_number = N. */
struct astrace_rec_task_create {
    struct astrace_rec_hdr h;
    uint64_t task;
    uint64_t parent;        /* task whose step created it, 0 if none */
    uint32_t location;      /* string id of "file:line" of the creating user code, 0 if unknown */
    uint16_t name_len;      /* bytes of inline name after this struct */
    uint16_t flags;         /* ASTRACE_TASK_DISCOVERED: seen first at a step, not at creation */
    int64_t default_number; /* N of a default "Task-N" name, -1 if the name is inline */
    /* char name[name_len], then padding to 8 */
};

enum astrace_task_flags {
    ASTRACE_TASK_DISCOVERED = 1, /* first seen at a step (or awaited), not at creation */
    ASTRACE_TASK_EAGER = 2,      /* its first step ran inside create_task (3.12+ eager
                                  * tasks): running since the record's time; the
                                  * step's end follows */
};

/* How a step ended. */
enum astrace_step_outcome {
    ASTRACE_STEP_SUSPENDED = 0, /* the task now awaits something */
    ASTRACE_STEP_RESULT,        /* done with a result */
    ASTRACE_STEP_EXCEPTION,     /* done with an exception (text inline: "Type: message") */
    ASTRACE_STEP_CANCELLED,     /* done, cancelled */
};

/* What else a step-end record says. A task step runs as one callback, and
 * the callback ends right after the step: one record says both. */
enum astrace_step_flags {
    ASTRACE_STEP_ENDS_CALLBACK = 1,   /* the step's callback ended too (no CALLBACK_END follows) */
    ASTRACE_STEP_CALLBACK_RAISED = 2, /* ... by raising */
};

/* A task step ended. str0 = what it now awaits ("await asyncio.sleep()"),
 * 0 unless suspended. */
struct astrace_rec_task_step_end {
    struct astrace_rec_hdr h;
    uint64_t task;
    uint64_t target;   /* the task it awaits, if it awaits a task; 0 otherwise */
    uint32_t location; /* string id of "file:line" of the user code that awaits */
    uint32_t chain;    /* string id of the await chain, outermost first */
    uint8_t outcome;   /* enum astrace_step_outcome */
    uint8_t flags;     /* enum astrace_step_flags */
    uint16_t text_len; /* bytes of inline text after this struct (exception) */
    uint32_t count;    /* gather: number of children */
    /* char text[text_len], then padding to 8 */
};

/* One stack sample, taken by the sampler's signal handler on the sampled
 * thread. Follows: uint64_t code[py_depth] (code words, innermost first:
 * see astrace_code_word), uint32_t offset[py_depth] (byte offset of the instruction each
 * frame is at, -1 unknown) padded to 8, then uint64_t ip[native_depth]
 * (return addresses, innermost first; the first is the interrupted pc).
 * Bit i of `entry` (i < 64) marks Python frame i as the outermost frame of
 * one C-level call of the eval loop: the native frames of the eval loop are
 * replaced, outermost last, by these groups when the stacks are merged. */
struct astrace_rec_sample {
    struct astrace_rec_hdr h; /* ts: when the signal was handled */
    uint16_t py_depth;
    uint16_t native_depth;
    uint16_t flags;  /* ASTRACE_SAMPLE_TRUNCATED: the Python stack was deeper */
    uint16_t missed; /* wall mode: earlier ticks the kernel merged into this one
                      * (timer overrun). The thread did not return to user
                      * space meanwhile, so they had this same stack. */
    uint64_t entry;
};

/* A sampled frame's code word: the code object's address in the low 48
 * bits, and in the top 16 a tag of the object's identity (its qualname
 * object's address and first line). Code objects die (a module's body once
 * it is imported) and others take their address: the recorder, which names
 * code objects later and caches the names, tells them apart by the tag. */
#define ASTRACE_CODE_ADDR_MASK ((1ull << 48) - 1)
static inline uint64_t astrace_code_tag(uint64_t qualname, int32_t firstlineno) {
    uint64_t h = (qualname >> 3) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)firstlineno * 0xC2B2AE3D27D4EB4Full;
    return h >> 48;
}
static inline uint64_t astrace_code_word(uint64_t code, uint64_t tag) {
    return (code & ASTRACE_CODE_ADDR_MASK) | tag << 48;
}

enum astrace_sample_rec_flags {
    ASTRACE_SAMPLE_TRUNCATED = 1,
};

#define ASTRACE_SAMPLE_MAX_PY 128
#define ASTRACE_SAMPLE_MAX_NATIVE 128

_Static_assert(sizeof(struct astrace_rec_sample) == 32, "record layout");
_Static_assert(sizeof(struct astrace_rec_hdr) == 16, "record header layout");
_Static_assert(sizeof(struct astrace_rec_task_create) == 48, "record layout");
_Static_assert(sizeof(struct astrace_rec_callback) == 32, "record layout");
_Static_assert(sizeof(struct astrace_rec_task_step_end) == 48, "record layout");
_Static_assert(sizeof(struct astrace_rec_arg) == 24, "record layout");

#endif
