/* What the encoder's parts share: the per-process and per-thread state, the
 * fixed interned names, interning by text, and the one function that turns
 * an event into a TracePacket. encoder.c owns sessions, processes, threads
 * and loop slices; tasks.c owns task tracks; intern.c owns interning. */
#ifndef ASTRACE_ENCODER_INTERNAL_H
#define ASTRACE_ENCODER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "writer/encoder.h"

/* Event names interned on every process sequence at its start. */
enum {
    IID_LOOP = 1,
    IID_SELECT,
    IID_CALLBACK,
    IID_PROCESS_INFO,
    IID_PROCESS_END,
    IID_RUN,
    IID_SCHEDULED,
    IID_GC,
    IID_SLOW_CALLBACK,
    IID_TASKS_FIXED_END,
    ENC_IID_FIRST_DYNAMIC = 32, /* names interned by text start here */
};

/* Debug-annotation names, fixed on every process sequence. */
enum {
    ANN_TIMEOUT_MS = 1,
    ANN_READY_EVENTS,
    ANN_RAISED,
    ANN_UNFINISHED,
    ANN_TASK_NAME,
    ANN_CORO,
    ANN_CREATED_AT,
    ANN_PARENT,
    ANN_OUTCOME,
    ANN_EXCEPTION,
    ANN_RUNNING_MS,
    ANN_WAITING_MS,
    ANN_STEPS,
    ANN_AWAITED_AT,
    ANN_AWAIT_CHAIN,
    ANN_AWAITED_TASK,
    ANN_GATHER_CHILDREN,
    ANN_STATE,
    ANN_DISCOVERED,
    ANN_TASK,
    ANN_LANE_FROM_NS,
    ANN_RENAMED_TO,
    ANN_EAGER,
    ANN_LAG_MS,
    ANN_SLOW,
    ANN_GENERATION,
    ANN_COLLECTED,
    ANN_DUR_MS,
    ANN_CALLBACK,
    ANN_COUNT
};
extern const char *const enc_fixed_names[IID_TASKS_FIXED_END];
extern const char *const enc_ann_names[ANN_COUNT];

#define STACK_MAX 8

/* Task steps open at once on a thread: one, plus eager tasks' first steps
 * run inside create_task. */
#define RUNNING_MAX 16

struct enc_thread {
    uint32_t generation; /* ring generation this track belongs to; 0 = unseen */
    uint64_t uuid;
    int64_t tid;
    char name[ASTRACE_THREAD_NAME_MAX];
    int described;
    int stack[STACK_MAX];
    uint64_t stack_ts[STACK_MAX];       /* when each open slice began */
    uint64_t stack_name[STACK_MAX];     /* its name iid */
    uint32_t stack_name_gen[STACK_MAX]; /* interning generation of that iid */
    int depth;
    uint64_t last_ts;
    uint64_t tasks_group; /* uuid of this thread's "Tasks" group track, 0 until needed */
    uint64_t *end_flows;  /* flows to put on the END of the innermost open slice */
    size_t nend_flows, capend_flows;
    struct loop_health *health; /* loop_health.c, NULL until the thread runs a loop */
    uint64_t live_tasks;        /* tasks created on this thread and not finished */
    uint64_t tasks_created;
    uint64_t running[RUNNING_MAX]; /* tasks whose step runs now, innermost last (tasks.c) */
    int nrunning;
};

struct intern_map;
struct task_table;
struct sample_state;

/* Interned entries waiting for the next packet of the sequence. */
struct intern_batch {
    Astrace__Pb__EventName names[8];
    Astrace__Pb__EventName *name_ptrs[8];
    Astrace__Pb__InternedString strs[8];
    Astrace__Pb__InternedString *str_ptrs[8];
    size_t nnames, nstrs;
};

/* Process state lives in encoder.h's struct enc_process; these hang off it. */
struct enc_process_ext {
    struct intern_map *interned;
    struct intern_batch batch;
    struct task_table *tasks;
    uint32_t intern_generation;   /* bumped each time interning is reset */
    struct sample_state *samples; /* samples.c, NULL until the first sample */
};

/* One event on a track; fields left 0 are omitted. */
struct enc_event {
    const uint64_t *counter_tracks; /* extra counter values riding on the event */
    const int64_t *counter_values;
    size_t ncounters;
    int has_counter_value; /* a COUNTER event's value */
    int64_t counter_value;
    uint64_t track;
    uint64_t ts;
    int type; /* ASTRACE__PB__TRACK_EVENT__TYPE__* */
    uint64_t name_iid;
    Astrace__Pb__DebugAnnotation **anns;
    size_t nanns;
    const uint64_t *flows;
    size_t nflows;
    const uint64_t *terminating_flows;
    size_t nterminating;
};

void enc_emit(struct enc_process *p, const struct enc_event *ev);
void enc_write_track(struct enc_process *p, Astrace__Pb__TrackDescriptor *td, uint64_t ts);
uint64_t enc_new_uuid(struct enc_process *p);
uint64_t enc_new_flow(struct enc_process *p);

/* intern.c: iids for event names and debug-annotation string values by text;
 * a new entry joins the batch that goes out with the next packet. */
uint64_t enc_name_iid(struct enc_process *p, const char *text);
uint64_t enc_str_iid(struct enc_process *p, const char *text);
/* The same for a string of the process's segment (by its id; `fallback`
 * when it cannot be read), cached by id. */
uint64_t enc_seg_name_iid(struct enc_process *p, uint32_t seg_id, const char *fallback);
uint64_t enc_seg_str_iid(struct enc_process *p, uint32_t seg_id, const char *fallback);
/* The text of an event-name iid (fixed or interned), "" if unknown. */
const char *enc_name_text(struct enc_process *p, uint64_t name_iid);
/* Interning spaces of stack samples, keyed by text like the others; iids
 * start at 1 in each. *is_new says the caller must define the entry in the
 * packet that uses it. Reset together with the rest (intern_generation). */
enum intern_space {
    INTERN_FUNCTION_NAME,
    INTERN_MAPPING_PATH,
    INTERN_MAPPING,
    INTERN_FRAME,
    INTERN_CALLSTACK,
    INTERN_SPACES
};
uint64_t enc_intern(struct enc_process *p, enum intern_space space, const char *text, int *is_new);
void intern_map_free(struct intern_map *m);
/* Forgets every text (a new interning generation), keeping the memory. */
void intern_map_clear(struct intern_map *m);
size_t intern_map_size(const struct intern_map *m); /* texts interned, 0 for NULL */

/* samples.c: one ASTRACE_REC_SAMPLE of thread t becomes a PerfSample. */
void enc_sample(struct enc_process *p, struct enc_thread *t, const struct astrace_rec_hdr *rec);
void samples_free(struct sample_state *s);
uint64_t samples_count(const struct sample_state *s); /* 0 for NULL */

/* Debug annotations by fixed name iid. */
static inline Astrace__Pb__DebugAnnotation *enc_ann(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid) {
    /* Only the fields enc_emit()'s encoder reads are set (the whole message
     * init costs more than the rest of an event's encoding): these
     * annotations are for enc_emit(), never for protobuf-c's packer. */
    a->name = NULL;
    a->string_value = NULL;
    a->has_bool_value = a->has_uint_value = a->has_int_value = a->has_double_value = 0;
    a->has_string_value_iid = 0;
    a->has_name_iid = 1;
    a->name_iid = name_iid;
    return a;
}
static inline void ann_uint(Astrace__Pb__DebugAnnotation *a, uint64_t n, uint64_t v) {
    enc_ann(a, n)->uint_value = v;
    a->has_uint_value = 1;
}
static inline void ann_int(Astrace__Pb__DebugAnnotation *a, uint64_t n, int64_t v) {
    enc_ann(a, n)->int_value = v;
    a->has_int_value = 1;
}
static inline void ann_double(Astrace__Pb__DebugAnnotation *a, uint64_t n, double v) {
    enc_ann(a, n)->double_value = v;
    a->has_double_value = 1;
}
static inline void ann_bool(Astrace__Pb__DebugAnnotation *a, uint64_t n, int v) {
    enc_ann(a, n)->bool_value = v != 0;
    a->has_bool_value = 1;
}
/* String value, interned on the sequence (repeated locations cost little). */
static inline void ann_str(struct enc_process *p, Astrace__Pb__DebugAnnotation *a, uint64_t n, const char *v) {
    enc_ann(a, n)->string_value_iid = enc_str_iid(p, v);
    a->has_string_value_iid = 1;
}

/* String value that is a segment string (a location, an await chain). */
static inline void ann_seg_str(struct enc_process *p, Astrace__Pb__DebugAnnotation *a, uint64_t n, uint32_t seg_id) {
    enc_ann(a, n)->string_value_iid = enc_seg_str_iid(p, seg_id, "");
    a->has_string_value_iid = 1;
}

/* String value carried inline: for texts that are unique (a task's name),
 * where interning would only add an entry. `v` must outlive the emit. */
static inline void ann_inline_str(Astrace__Pb__DebugAnnotation *a, uint64_t n, const char *v) {
    enc_ann(a, n)->string_value = (char *)v;
}

/* loop_health.c: counters per loop thread and per process. */
void health_loop_begin(struct enc_process *p, struct enc_thread *th, uint64_t ts, int64_t ready_len);
uint64_t health_ready_track(const struct enc_thread *th); /* after health_loop_begin */
/* Counter values and args for the iteration's END; returns how many counters. */
size_t health_loop_end(struct enc_process *p, struct enc_thread *th, uint64_t ts, uint64_t *tracks, int64_t *values,
                       int *slow);
void health_select(struct enc_thread *th, uint64_t begin_ts, uint64_t end_ts);
void health_callback(struct enc_thread *th, int64_t lag_ns);
/* Marks a slow callback (dur >= the threshold): instant and count. */
int health_slow_callback(struct enc_process *p, struct enc_thread *th, uint64_t begin_ts, uint64_t dur,
                         uint64_t name_iid);
void health_rss(struct enc_process *p, uint64_t ts, uint64_t bytes);
void health_free(struct enc_thread *th);
uint64_t enc_counter_track(struct enc_process *p, uint64_t parent, const char *name, int unit, const char *unit_name,
                           uint64_t ts);

/* tasks.c */
struct task_table *tasks_new(void);
void tasks_free(struct task_table *t);
/* Called for task records and for task-step callbacks (encoder.c routes them). */
void tasks_on_create(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_create *rec);
void tasks_on_rename(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_create *rec);
/* Returns the event-name iid for the loop thread's callback slice ("step Task-7 fetch"). */
uint64_t tasks_on_step_begin(struct enc_process *p, struct enc_thread *th, uint64_t task, uint64_t ts, int64_t lag_ns);
void tasks_on_step_end(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_step_end *rec);
/* The thread is past any task step (a callback begins or ends): steps still
 * open there lost their end records; closes them at ts. */
void tasks_close_lost_steps(struct enc_process *p, struct enc_thread *th, uint64_t ts);
/* Ends every task still alive (state=pending) at the process's last timestamp. */
void tasks_end_all(struct enc_process *p);
/* Adds a flow to the innermost open slice of a thread (its END carries it). */
void enc_thread_add_end_flow(struct enc_thread *th, uint64_t flow);

#endif
