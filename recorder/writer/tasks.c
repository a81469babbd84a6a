/* Task tracks: turns task records into the Tasks group of a loop thread.
 *
 * Layout (per loop thread):  thread track
 *                              └ "Tasks" group (chronological)
 *                                  ├ lane: lifetime slice ⊃ scheduled / run / await slices
 *                                  └ "<coroutine> (more tasks)": run slices only
 *
 * Lanes. A program may hold 100k tasks at once (gather of a huge list); one
 * track per task would make the UI crawl, and Perfetto cannot stack
 * overlapping lifetimes on one track. So tasks get lanes: each coroutine has
 * up to LANES_PER_CORO lanes per thread (LANES_PER_THREAD in all), a lane
 * hosts one task at a time, and a task takes a free lane when it is created
 * or, if none was free then, at any later step when one is. While a task has
 * no lane its runs go on its coroutine's "(more tasks)" track: runs of one
 * thread never overlap, so they need no lanes. A lane that only ever hosted
 * one task is named after it ("Task-7 fetch_page"); once reused it is named
 * after the coroutine ("fetch_page lane 3"). Every slice carries the task's
 * name, and the totals of the whole task (running, waiting, steps) are on its
 * last slice, lane or not.
 *
 * Flows: creation (the creating step, or callback, to the task's first run)
 * and completion (a finishing task's last run to the run of each task that
 * awaited it).
 *
 * Lost records. A full ring drops records, and a lane must stay balanced
 * whatever was lost. Each thread keeps the tasks whose step runs now
 * (th->running). A step whose end record was lost is found when the thread
 * shows it is past that step: its callback ends, a callback begins, or an
 * outer task's step ends. Its run is then closed there with
 * `unfinished=true`, and the lane shows an "unknown (events lost)" wait
 * until the task's next step. A step end without its begin still ends the
 * wait (and, if the task finished, the task).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "writer/encoder_internal.h"

#define LANES_PER_CORO 64
#define LANES_PER_THREAD 1024

enum task_state { T_SCHEDULED, T_RUNNING, T_SUSPENDED };

struct enc_task;

struct lane {
    uint64_t uuid;
    struct enc_task *task; /* occupant, NULL when free */
    uint32_t hosted;       /* tasks hosted so far */
    uint32_t index;
};

struct lane_pool {
    char *coro;
    uint32_t ring;
    struct lane **lanes; /* each allocated once: tasks point at them */
    size_t nlanes, cap;
    uint32_t *free; /* stack of free lane indices */
    size_t nfree;
    uint64_t overflow_uuid;
};

struct enc_task {
    uint64_t addr;
    uint32_t ring;
    char name[128];
    char coro[128];
    char label[260];      /* "Task-7 fetch_page" */
    char created_at[128]; /* "app.py:20" */
    char parent[260];     /* label of the creating task */
    int discovered;
    int state;
    int lane_pending;             /* holds a lane whose first slices are not written yet */
    int eager;                    /* ran its first step inside create_task */
    int waiting_open;             /* a scheduled or await slice is open on its lane */
    char renamed[128];            /* name given after creation, if any */
    uint64_t label_iid, step_iid; /* interned "<label>" and "step <label>", 0 until needed */
    uint32_t iid_generation;      /* interning generation they belong to */
    struct lane_pool *pool;
    struct lane *lane; /* NULL while it has none */
    uint64_t created_ts, since_ts;
    uint64_t run_ns, wait_ns, steps;
    uint64_t resume_flow; /* terminates at the next run's BEGIN */
    uint64_t *run_flows;  /* go on the current run's END */
    size_t nrun_flows, caprun_flows;
    uint64_t target; /* task awaited, 0 if none */
    uint64_t *waiters;
    size_t nwaiters, capwaiters;
};

struct task_table {
    struct enc_task **slots; /* open addressing by address; NULL empty */
    size_t cap, used;
    struct lane_pool **pools;
    size_t npools, cappools;
    uint32_t lanes_per_ring[4096];
};

/* ---- tables ---------------------------------------------------------------- */

struct task_table *tasks_new(void) {
    return xcalloc(1, sizeof(struct task_table));
}

static struct enc_task **slot_of(struct task_table *t, uint64_t addr) {
    size_t mask = t->cap - 1;
    size_t i = hash_u64(addr) & mask;
    while (t->slots[i] && t->slots[i]->addr != addr) i = (i + 1) & mask;
    return &t->slots[i];
}

static struct enc_task *find_task(struct task_table *t, uint64_t addr) {
    if (!t->cap) return NULL;
    return *slot_of(t, addr);
}

static void insert_task(struct task_table *t, struct enc_task *task) {
    if (t->used * 2 >= t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        struct enc_task **old = t->slots;
        size_t ocap = t->cap;
        t->slots = xcalloc(ncap, sizeof *t->slots);
        t->cap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i]) *slot_of(t, old[i]->addr) = old[i];
        free(old);
    }
    *slot_of(t, task->addr) = task;
    t->used++;
}

static void remove_task(struct task_table *t, struct enc_task *task) {
    size_t mask = t->cap - 1;
    size_t i = hash_u64(task->addr) & mask;
    while (t->slots[i] != task) i = (i + 1) & mask;
    t->slots[i] = NULL;
    t->used--;
    /* Re-insert the rest of the cluster so lookups stay correct. */
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        struct enc_task *moved = t->slots[j];
        t->slots[j] = NULL;
        *slot_of(t, moved->addr) = moved;
    }
}

static void free_task(struct enc_task *task) {
    free(task->run_flows);
    free(task->waiters);
    free(task);
}

static void push_u64(uint64_t **arr, size_t *n, size_t *cap, uint64_t v) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *arr = xrealloc(*arr, *cap * sizeof **arr);
    }
    (*arr)[(*n)++] = v;
}

static struct lane_pool *pool_of(struct task_table *t, uint32_t ring, const char *coro) {
    for (size_t i = 0; i < t->npools; i++)
        if (t->pools[i]->ring == ring && !strcmp(t->pools[i]->coro, coro)) return t->pools[i];
    if (t->npools == t->cappools) {
        t->cappools = t->cappools ? t->cappools * 2 : 16;
        t->pools = xrealloc(t->pools, t->cappools * sizeof *t->pools);
    }
    struct lane_pool *p = xcalloc(1, sizeof *p);
    p->coro = xstrdup(coro);
    p->ring = ring;
    t->pools[t->npools++] = p;
    return p;
}

void tasks_free(struct task_table *t) {
    if (!t) return;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i]) free_task(t->slots[i]);
    free(t->slots);
    for (size_t i = 0; i < t->npools; i++) {
        free(t->pools[i]->coro);
        for (size_t j = 0; j < t->pools[i]->nlanes; j++) free(t->pools[i]->lanes[j]);
        free(t->pools[i]->lanes);
        free(t->pools[i]->free);
        free(t->pools[i]);
    }
    free(t->pools);
    free(t);
}

/* The task's interned names, made once per name (and interning reset). */
static void check_iid_generation(struct enc_process *p, struct enc_task *task) {
    if (task->iid_generation == p->ext->intern_generation) return;
    task->iid_generation = p->ext->intern_generation;
    task->label_iid = task->step_iid = 0;
}

static uint64_t label_iid(struct enc_process *p, struct enc_task *task) {
    check_iid_generation(p, task);
    if (!task->label_iid) task->label_iid = enc_name_iid(p, task->label);
    return task->label_iid;
}

static uint64_t step_iid(struct enc_process *p, struct enc_task *task) {
    check_iid_generation(p, task);
    if (!task->step_iid) {
        char step[300];
        memcpy(step, "step ", 5);
        text_copy(step + 5, sizeof step - 5, task->label);
        task->step_iid = enc_name_iid(p, step);
    }
    return task->step_iid;
}

/* ---- tracks ------------------------------------------------------------------ */

static uint64_t tasks_group(struct enc_process *p, struct enc_thread *th, uint64_t ts) {
    if (th->tasks_group) return th->tasks_group;
    th->tasks_group = enc_new_uuid(p);
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = th->tasks_group;
    td.has_parent_uuid = 1;
    td.parent_uuid = th->uuid;
    td.name = "Tasks";
    td.description = "asyncio tasks of this thread's event loop: each lane holds one task at a time "
                     "(lifetime, then scheduled/run/await slices); tasks beyond the lane limit show "
                     "their runs on the coroutine's \"(more tasks)\" track.";
    td.has_child_ordering = 1;
    td.child_ordering = ASTRACE__PB__TRACK_DESCRIPTOR__CHILD_TRACKS_ORDERING__CHRONOLOGICAL;
    td.has_sibling_merge_behavior = 1;
    td.sibling_merge_behavior = ASTRACE__PB__TRACK_DESCRIPTOR__SIBLING_MERGE_BEHAVIOR__SIBLING_MERGE_BEHAVIOR_NONE;
    enc_write_track(p, &td, ts);
    return th->tasks_group;
}

static void write_task_track(struct enc_process *p, struct enc_thread *th, uint64_t uuid, const char *name,
                             uint64_t ts) {
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = uuid;
    td.has_parent_uuid = 1;
    td.parent_uuid = tasks_group(p, th, ts);
    td.name = (char *)name;
    td.has_sibling_merge_behavior = 1;
    td.sibling_merge_behavior = ASTRACE__PB__TRACK_DESCRIPTOR__SIBLING_MERGE_BEHAVIOR__SIBLING_MERGE_BEHAVIOR_NONE;
    enc_write_track(p, &td, ts);
}

static uint64_t overflow_track(struct enc_process *p, struct enc_thread *th, struct lane_pool *pool, uint64_t ts) {
    if (!pool->overflow_uuid) {
        char name[300];
        snprintf(name, sizeof name, "%s (more tasks)", pool->coro);
        pool->overflow_uuid = enc_new_uuid(p);
        write_task_track(p, th, pool->overflow_uuid, name, ts);
    }
    return pool->overflow_uuid;
}

/* Reserves a lane for the task if one is free (or may be made). Its slices
 * start with lane_begin(): at creation that waits for the task's first step,
 * by when create_task(name=...) has named it. */
static int take_lane(struct enc_process *p, struct enc_task *task) {
    struct task_table *t = p->ext->tasks;
    struct lane_pool *pool = task->pool;
    struct lane *lane = NULL;
    if (pool->nfree) {
        lane = pool->lanes[pool->free[--pool->nfree]];
    } else if (pool->nlanes < LANES_PER_CORO && t->lanes_per_ring[task->ring % 4096] < LANES_PER_THREAD) {
        if (pool->nlanes == pool->cap) {
            pool->cap = pool->cap ? pool->cap * 2 : 8;
            pool->lanes = xrealloc(pool->lanes, pool->cap * sizeof *pool->lanes);
            pool->free = xrealloc(pool->free, pool->cap * sizeof *pool->free);
        }
        lane = xcalloc(1, sizeof *lane);
        pool->lanes[pool->nlanes] = lane;
        lane->index = (uint32_t)pool->nlanes++;
        lane->uuid = enc_new_uuid(p);
        t->lanes_per_ring[task->ring % 4096]++;
    } else {
        return 0;
    }
    lane->task = task;
    lane->hosted++;
    task->lane = lane;
    task->lane_pending = 1;
    return 1;
}

static void name_lane(struct enc_process *p, struct enc_thread *th, struct enc_task *task, uint64_t ts) {
    struct lane *lane = task->lane;
    char name[300];
    if (lane->hosted == 1)
        text_copy(name, sizeof name, task->label);
    else
        snprintf(name, sizeof name, "%s lane %u", task->pool->coro, lane->index + 1);
    write_task_track(p, th, lane->uuid, name, ts);
}

/* Writes the lane's name (while it says something new), the lifetime slice
 * from `ts`, and, when the lane was had from creation, the scheduled slice. */
static void lane_begin(struct enc_process *p, struct enc_thread *th, struct enc_task *task, uint64_t ts) {
    struct lane *lane = task->lane;
    task->lane_pending = 0;
    if (lane->hosted <= 2) name_lane(p, th, task, ts);
    Astrace__Pb__DebugAnnotation a[8];
    Astrace__Pb__DebugAnnotation *ap[8];
    size_t n = 0;
    ann_inline_str(&a[n], ANN_TASK_NAME, task->name), ap[n] = &a[n], n++;
    ann_str(p, &a[n], ANN_CORO, task->coro), ap[n] = &a[n], n++;
    if (task->created_at[0]) ann_str(p, &a[n], ANN_CREATED_AT, task->created_at), ap[n] = &a[n], n++;
    if (task->parent[0]) ann_str(p, &a[n], ANN_PARENT, task->parent), ap[n] = &a[n], n++;
    if (task->discovered) ann_bool(&a[n], ANN_DISCOVERED, 1), ap[n] = &a[n], n++;
    if (task->eager) ann_bool(&a[n], ANN_EAGER, 1), ap[n] = &a[n], n++;
    if (ts > task->created_ts) ann_uint(&a[n], ANN_LANE_FROM_NS, ts - task->created_ts), ap[n] = &a[n], n++;
    enc_emit(p, &(struct enc_event){.track = lane->uuid,
                                    .ts = ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN,
                                    .name_iid = label_iid(p, task),
                                    .anns = ap,
                                    .nanns = n});
    if (ts == task->created_ts && task->state == T_SCHEDULED && !task->eager) {
        enc_emit(p, &(struct enc_event){.track = lane->uuid,
                                        .ts = ts,
                                        .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN,
                                        .name_iid = IID_SCHEDULED});
        task->waiting_open = 1;
    }
}

static void release_lane(struct enc_task *task) {
    struct lane *lane = task->lane;
    if (!lane) return;
    lane->task = NULL;
    task->pool->free[task->pool->nfree++] = lane->index;
    task->lane = NULL;
}

/* ---- events -------------------------------------------------------------------- */

static void slice(struct enc_process *p, uint64_t track, uint64_t ts, int type, uint64_t name_iid,
                  Astrace__Pb__DebugAnnotation **anns, size_t nanns, const uint64_t *flows, size_t nflows,
                  const uint64_t *term, size_t nterm) {
    enc_emit(p, &(struct enc_event){.track = track,
                                    .ts = ts,
                                    .type = type,
                                    .name_iid = name_iid,
                                    .anns = anns,
                                    .nanns = nanns,
                                    .flows = flows,
                                    .nflows = nflows,
                                    .terminating_flows = term,
                                    .nterminating = nterm});
}

/* Totals of the task so far, as args (on its last slice). */
static size_t totals(struct enc_process *p, struct enc_task *task, const char *outcome, const char *exception,
                     Astrace__Pb__DebugAnnotation *a, Astrace__Pb__DebugAnnotation **ap) {
    size_t n = 0;
    ann_str(p, &a[n], ANN_OUTCOME, outcome), ap[n] = &a[n], n++;
    if (exception && *exception) ann_inline_str(&a[n], ANN_EXCEPTION, exception), ap[n] = &a[n], n++;
    ann_double(&a[n], ANN_RUNNING_MS, task->run_ns / 1e6), ap[n] = &a[n], n++;
    ann_double(&a[n], ANN_WAITING_MS, task->wait_ns / 1e6), ap[n] = &a[n], n++;
    ann_uint(&a[n], ANN_STEPS, task->steps), ap[n] = &a[n], n++;
    /* A task without a lane has no lifetime slice to carry its identity. */
    if (!task->lane) ann_str(p, &a[n], ANN_CORO, task->coro), ap[n] = &a[n], n++;
    if (!task->lane) ann_inline_str(&a[n], ANN_TASK_NAME, task->name), ap[n] = &a[n], n++;
    if (task->renamed[0]) ann_inline_str(&a[n], ANN_RENAMED_TO, task->renamed), ap[n] = &a[n], n++;
    return n;
}

/* Takes `addr` off the thread's running stack, if there. */
static void forget_running(struct enc_thread *th, uint64_t addr) {
    for (int i = th->nrunning - 1; i >= 0; i--)
        if (th->running[i] == addr) {
            memmove(&th->running[i], &th->running[i + 1], (size_t)(th->nrunning - i - 1) * sizeof th->running[0]);
            th->nrunning--;
            return;
        }
}

static void end_task(struct enc_process *p, struct enc_task *task, uint64_t ts, const char *outcome,
                     const char *exception) {
    forget_running(&p->threads[task->ring], task->addr);
    if (task->lane) {
        if (task->lane_pending) { /* never ran: its lane's slices start now */
            lane_begin(p, &p->threads[task->ring], task, task->created_ts);
            if (task->waiting_open)
                slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, NULL, 0, NULL, 0,
                      NULL, 0);
        }
        Astrace__Pb__DebugAnnotation a[8];
        Astrace__Pb__DebugAnnotation *ap[8];
        size_t n = totals(p, task, outcome, exception, a, ap);
        slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, ap, n, NULL, 0, NULL, 0);
        release_lane(task);
    }
    if (p->threads[task->ring].live_tasks) p->threads[task->ring].live_tasks--;
    remove_task(p->ext->tasks, task);
    free_task(task);
}

static void set_task_name(struct enc_task *task, const struct astrace_rec_task_create *rec) {
    if (rec->default_number >= 0) { /* "Task-N" */
        memcpy(task->name, "Task-", 5);
        task->name[5 + text_u64(task->name + 5, (uint64_t)rec->default_number)] = 0;
    } else {
        size_t len = rec->name_len;
        if (len > rec->h.size - sizeof *rec) len = rec->h.size - sizeof *rec;
        if (len > sizeof task->name - 1) len = sizeof task->name - 1;
        memcpy(task->name, (const char *)(rec + 1), len);
        task->name[len] = 0;
    }
    size_t len = text_copy(task->label, sizeof task->label, task->name); /* "Task-7 fetch_page" */
    if (len + 1 < sizeof task->label) {
        task->label[len] = ' ';
        text_copy(task->label + len + 1, sizeof task->label - len - 1, task->coro);
    }
    task->label_iid = task->step_iid = 0;
}

void tasks_on_create(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_create *rec) {
    struct task_table *t = p->ext->tasks;
    uint64_t ts = rec->h.ts;
    struct enc_task *old = find_task(t, rec->task);
    if (old) { /* the address was reused: its previous task was destroyed while pending */
        if (old->lane && !old->lane_pending && (old->waiting_open || old->state == T_RUNNING))
            slice(p, old->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, NULL, 0, NULL, 0, NULL, 0);
        end_task(p, old, ts, "destroyed while pending", NULL);
    }
    struct enc_task *task = xcalloc(1, sizeof *task);
    task->addr = rec->task;
    task->ring = (uint32_t)(th - p->threads);
    task->discovered = rec->flags & ASTRACE_TASK_DISCOVERED;
    task->eager = (rec->flags & ASTRACE_TASK_EAGER) != 0;
    task->created_ts = task->since_ts = ts;
    task->state = T_SCHEDULED;
    task->iid_generation = p->ext->intern_generation;
    text_copy(task->coro, sizeof task->coro, enc_seg_text(p, rec->h.str0, "?"));
    set_task_name(task, rec);
    if (rec->location) text_copy(task->created_at, sizeof task->created_at, enc_seg_text(p, rec->location, ""));
    task->pool = pool_of(t, task->ring, task->coro);
    insert_task(t, task);
    th->live_tasks++;
    th->tasks_created++;

    /* Creation flow: from the creating task's run (or the thread's current
     * slice) to this task's first run. */
    struct enc_task *parent = rec->parent ? find_task(t, rec->parent) : NULL;
    if (parent) text_copy(task->parent, sizeof task->parent, parent->label);
    if (!task->discovered) {
        task->resume_flow = enc_new_flow(p);
        if (parent && parent->state == T_RUNNING) {
            push_u64(&parent->run_flows, &parent->nrun_flows, &parent->caprun_flows, task->resume_flow);
        } else if (th->depth > 0) {
            enc_thread_add_end_flow(th, task->resume_flow);
        } else {
            slice(p, th->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT, enc_name_iid(p, "create_task"), NULL,
                  0, &task->resume_flow, 1, NULL, 0);
        }
    }
    take_lane(p, task);
    if (task->eager) tasks_on_step_begin(p, th, task->addr, ts, 0); /* its first step ran at creation */
}

void tasks_on_rename(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_create *rec) {
    struct enc_task *task = find_task(p->ext->tasks, rec->task);
    if (!task) return;
    set_task_name(task, rec);
    text_copy(task->renamed, sizeof task->renamed, task->name);
    /* A lane that has shown only this task takes the new name. */
    if (task->lane && !task->lane_pending && task->lane->hosted == 1) name_lane(p, th, task, rec->h.ts);
}

/* The running step of `task` is over by `ts` but its end record was lost:
 * close the run there, marked unfinished, and show the time until the
 * task's next step as a wait on something unknown. */
static void lose_step_end(struct enc_process *p, struct enc_task *task, uint64_t ts) {
    struct enc_thread *th = &p->threads[task->ring];
    forget_running(th, task->addr);
    if (task->state != T_RUNNING) return;
    task->run_ns += ts > task->since_ts ? ts - task->since_ts : 0;
    task->steps++;
    task->since_ts = ts;
    task->state = T_SUSPENDED;
    task->target = 0;
    Astrace__Pb__DebugAnnotation a;
    Astrace__Pb__DebugAnnotation *ap = &a;
    ann_bool(&a, ANN_UNFINISHED, 1);
    uint64_t track = task->lane ? task->lane->uuid : overflow_track(p, th, task->pool, ts);
    slice(p, track, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, &ap, 1, task->run_flows, task->nrun_flows,
          NULL, 0);
    task->nrun_flows = 0;
    if (!task->lane) return;
    slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN,
          enc_name_iid(p, "unknown (events lost)"), NULL, 0, NULL, 0, NULL, 0);
    task->waiting_open = 1;
}

/* Closes the steps on the thread's running stack above `depth`. */
static void lose_steps_above(struct enc_process *p, struct enc_thread *th, int depth, uint64_t ts) {
    while (th->nrunning > depth) {
        struct enc_task *task = find_task(p->ext->tasks, th->running[--th->nrunning]);
        if (task) lose_step_end(p, task, ts);
    }
}

void tasks_close_lost_steps(struct enc_process *p, struct enc_thread *th, uint64_t ts) {
    if (th->nrunning) lose_steps_above(p, th, 0, ts);
}

uint64_t tasks_on_step_begin(struct enc_process *p, struct enc_thread *th, uint64_t addr, uint64_t ts, int64_t lag_ns) {
    struct enc_task *task = find_task(p->ext->tasks, addr);
    if (!task) return 0;
    if (task->state == T_RUNNING) lose_step_end(p, task, ts); /* not on the stack: it was full */
    if (th->nrunning < RUNNING_MAX) th->running[th->nrunning++] = addr;
    task->wait_ns += ts > task->since_ts ? ts - task->since_ts : 0;
    uint64_t *term = task->resume_flow ? &task->resume_flow : NULL;
    uint64_t track;
    if (task->lane) {
        if (task->lane_pending) lane_begin(p, th, task, task->created_ts);
        /* End the scheduled/await slice. */
        if (task->waiting_open)
            slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, NULL, 0, NULL, 0, NULL,
                  0);
        task->waiting_open = 0;
        track = task->lane->uuid;
    } else if (take_lane(p, task)) {
        lane_begin(p, th, task, ts);
        track = task->lane->uuid;
    } else {
        track = overflow_track(p, th, task->pool, ts);
    }
    /* How late the loop ran this wakeup. */
    Astrace__Pb__DebugAnnotation lag;
    Astrace__Pb__DebugAnnotation *lagp = &lag;
    if (lag_ns >= 0) ann_double(&lag, ANN_LAG_MS, lag_ns / 1e6);
    slice(p, track, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN, task->lane ? IID_RUN : label_iid(p, task),
          lag_ns >= 0 ? &lagp : NULL, lag_ns >= 0 ? 1 : 0, NULL, 0, term, term ? 1 : 0);
    task->resume_flow = 0;
    task->state = T_RUNNING;
    task->since_ts = ts;
    task->target = 0;
    return step_iid(p, task);
}

/* The await slice's name: what the task waits on, in the user's words. The
 * runtime's label is the name, except when it names a task (the target's
 * name is added) or a gather (its children are counted). */
static uint64_t await_name_iid(struct enc_process *p, const struct astrace_rec_task_step_end *rec) {
    if (!rec->target && !rec->count) return enc_seg_name_iid(p, rec->h.str0, "await");
    const char *what = enc_seg_text(p, rec->h.str0, "await");
    char name[300];
    if (rec->target && !strcmp(what, "await task")) {
        struct enc_task *target = find_task(p->ext->tasks, rec->target);
        if (!target) return enc_name_iid(p, "await Task");
        size_t len = text_copy(name, sizeof name, "await "); /* "await Task-12 (fetch_page)" */
        len = text_cat(name, sizeof name, len, target->name);
        len = text_cat(name, sizeof name, len, " (");
        len = text_cat(name, sizeof name, len, target->coro);
        text_cat(name, sizeof name, len, ")");
        return enc_name_iid(p, name);
    }
    if (!strcmp(what, "await gather()")) {
        snprintf(name, sizeof name, "await gather(%u task%s)", rec->count, rec->count == 1 ? "" : "s");
        return enc_name_iid(p, name);
    }
    return enc_name_iid(p, what);
}

void tasks_on_step_end(struct enc_process *p, struct enc_thread *th, const struct astrace_rec_task_step_end *rec) {
    struct task_table *t = p->ext->tasks;
    struct enc_task *task = find_task(t, rec->task);
    if (!task) return;
    uint64_t ts = rec->h.ts;
    int done = rec->outcome != ASTRACE_STEP_SUSPENDED;
    char exception[260] = "";
    if (rec->outcome == ASTRACE_STEP_EXCEPTION) {
        size_t len = rec->text_len;
        if (len > rec->h.size - sizeof *rec) len = rec->h.size - sizeof *rec;
        if (len > sizeof exception - 1) len = sizeof exception - 1;
        memcpy(exception, (const char *)(rec + 1), len);
        exception[len] = 0;
    }
    static const char *const outcomes[] = {"pending", "result", "exception", "cancelled"};
    const char *outcome = rec->outcome < 4 ? outcomes[rec->outcome] : "?";

    /* Steps that ran inside this one (eager tasks) and lost their ends. */
    for (int i = th->nrunning - 1; i >= 0; i--)
        if (th->running[i] == task->addr) {
            lose_steps_above(p, th, i + 1, ts);
            th->nrunning = i;
            break;
        }
    if (task->state != T_RUNNING) {
        /* Its step's begin was lost. If it finished, it ends here; if it
         * waits again, the wait shown goes on until its next step. */
        if (done) {
            if (task->lane && !task->lane_pending && task->waiting_open) {
                slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, NULL, 0, NULL, 0,
                      NULL, 0);
                task->waiting_open = 0;
            }
            task->wait_ns += ts > task->since_ts ? ts - task->since_ts : 0;
            end_task(p, task, ts, outcome, exception);
        }
        return;
    }
    task->run_ns += ts > task->since_ts ? ts - task->since_ts : 0;
    task->steps++;
    task->since_ts = ts;

    /* Completion flows to the tasks that await this one. */
    if (done) {
        for (size_t i = 0; i < task->nwaiters; i++) {
            struct enc_task *w = find_task(t, task->waiters[i]);
            if (!w || w->state != T_SUSPENDED || w->target != task->addr || w->resume_flow) continue;
            w->resume_flow = enc_new_flow(p);
            push_u64(&task->run_flows, &task->nrun_flows, &task->caprun_flows, w->resume_flow);
        }
    }

    /* End the run; a task without a lane carries its totals on its last run. */
    Astrace__Pb__DebugAnnotation a[10];
    Astrace__Pb__DebugAnnotation *ap[10];
    size_t n = 0;
    uint64_t track = task->lane ? task->lane->uuid : overflow_track(p, th, task->pool, ts);
    if (!task->lane && done) n = totals(p, task, outcome, exception, a, ap);
    slice(p, track, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, ap, n, task->run_flows, task->nrun_flows,
          NULL, 0);
    task->nrun_flows = 0;

    if (done) {
        end_task(p, task, ts, outcome, exception);
        return;
    }
    task->state = T_SUSPENDED;
    task->target = rec->target;
    if (rec->target) {
        struct enc_task *target = find_task(t, rec->target);
        if (target) push_u64(&target->waiters, &target->nwaiters, &target->capwaiters, task->addr);
    }
    if (!task->lane) return;
    uint64_t name_iid = await_name_iid(p, rec);
    n = 0;
    if (rec->location) ann_seg_str(p, &a[n], ANN_AWAITED_AT, rec->location), ap[n] = &a[n], n++;
    if (rec->chain) ann_seg_str(p, &a[n], ANN_AWAIT_CHAIN, rec->chain), ap[n] = &a[n], n++;
    if (rec->count) ann_uint(&a[n], ANN_GATHER_CHILDREN, rec->count), ap[n] = &a[n], n++;
    slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN, name_iid, ap, n, NULL, 0, NULL, 0);
    task->waiting_open = 1;
}

void tasks_end_all(struct enc_process *p) {
    struct task_table *t = p->ext->tasks;
    if (!t) return;
    uint64_t ts = p->last_ts;
    for (size_t i = 0; i < t->cap;) {
        struct enc_task *task = t->slots[i];
        if (!task) {
            i++;
            continue;
        }
        if (task->state == T_RUNNING)
            task->run_ns += ts > task->since_ts ? ts - task->since_ts : 0;
        else
            task->wait_ns += ts > task->since_ts ? ts - task->since_ts : 0;
        Astrace__Pb__DebugAnnotation a[11];
        Astrace__Pb__DebugAnnotation *ap[11];
        size_t n = totals(p, task, "pending", NULL, a, ap);
        ann_str(p, &a[n], ANN_STATE, "pending"), ap[n] = &a[n], n++;
        if (task->lane && task->lane_pending) lane_begin(p, &p->threads[task->ring], task, task->created_ts);
        if (task->lane) {
            /* The open scheduled/run/await slice, then the lifetime. */
            if (task->waiting_open || task->state == T_RUNNING)
                slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, NULL, 0, NULL, 0,
                      NULL, 0);
            slice(p, task->lane->uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, ap, n, NULL, 0, NULL, 0);
            release_lane(task);
        } else if (task->state == T_RUNNING) {
            slice(p, task->pool->overflow_uuid, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, ap, n, NULL, 0,
                  NULL, 0);
        }
        remove_task(t, task); /* shifts the cluster: look at slot i again */
        free_task(task);
    }
}
