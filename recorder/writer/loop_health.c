/* Loop health: counter tracks next to each loop thread and each process.
 *
 * Per loop thread (counter tracks under the thread's track), one value per
 * loop iteration, carried by the iteration's own BEGIN/END events as extra
 * counter values (no extra packets):
 *   ready queue     callbacks waiting when the iteration starts (len(_ready))
 *   loop lag        the worst delay, in this iteration, between a callback
 *                   becoming ready (call_soon, a timer falling due) and
 *                   starting to run
 *   callbacks       callbacks run in the iteration
 *   live tasks      tasks created on this thread and not finished (exact)
 *   tasks created/s over the last 100 ms or more
 * A handle scheduled by a late timer callback inherits the timer's lag
 * (runtime): a task woken by a sleep that ended late is that late.
 * Per process: RSS, read by the recorder from /proc, so it costs the target
 * nothing. Iterations whose busy time (duration minus select) reaches the
 * slow threshold get `slow=true`; so do such callbacks, each also marked by
 * a "slow callback" instant and counted for the end-of-run summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "writer/encoder_internal.h"

enum { C_READY, C_LAG, C_CALLBACKS, C_LIVE, C_RATE, C_COUNT };

struct loop_health {
    uint64_t tracks[C_COUNT];
    uint64_t iter_begin, select_ns;
    int64_t max_lag;
    uint64_t callbacks;
    uint64_t rate_since_ts, rate_since_created;
    int64_t rate;
};

uint64_t enc_counter_track(struct enc_process *p, uint64_t parent, const char *name, int unit, const char *unit_name,
                           uint64_t ts) {
    uint64_t uuid = enc_new_uuid(p);
    Astrace__Pb__CounterDescriptor cd;
    astrace__pb__counter_descriptor__init(&cd);
    if (unit) {
        cd.has_unit = 1;
        cd.unit = (Astrace__Pb__CounterDescriptor__Unit)unit;
    }
    cd.unit_name = (char *)unit_name;
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = uuid;
    td.has_parent_uuid = 1;
    td.parent_uuid = parent;
    td.name = (char *)name;
    td.counter = &cd;
    enc_write_track(p, &td, ts);
    return uuid;
}

static struct loop_health *health_of(struct enc_process *p, struct enc_thread *th, uint64_t ts) {
    if (th->health) return th->health;
    struct loop_health *h = th->health = xcalloc(1, sizeof *h);
    char name[ASTRACE_THREAD_NAME_MAX + 48];
    static const struct {
        const char *what;
        int unit;
        const char *unit_name;
    } defs[C_COUNT] = {
        [C_READY] = {"ready queue", ASTRACE__PB__COUNTER_DESCRIPTOR__UNIT__UNIT_COUNT, "callbacks"},
        [C_LAG] = {"loop lag", ASTRACE__PB__COUNTER_DESCRIPTOR__UNIT__UNIT_TIME_NS, NULL},
        [C_CALLBACKS] = {"callbacks per iteration", ASTRACE__PB__COUNTER_DESCRIPTOR__UNIT__UNIT_COUNT, "callbacks"},
        [C_LIVE] = {"live tasks", ASTRACE__PB__COUNTER_DESCRIPTOR__UNIT__UNIT_COUNT, "tasks"},
        [C_RATE] = {"tasks created/s", 0, "tasks/s"},
    };
    for (int i = 0; i < C_COUNT && p->enc->counters; i++) {
        snprintf(name, sizeof name, "%s", defs[i].what);
        h->tracks[i] = enc_counter_track(p, th->uuid, name, defs[i].unit, defs[i].unit_name, ts);
    }
    h->rate_since_ts = ts;
    h->rate_since_created = th->tasks_created;
    return h;
}

void health_loop_begin(struct enc_process *p, struct enc_thread *th, uint64_t ts, int64_t ready_len) {
    (void)ready_len;
    struct loop_health *h = health_of(p, th, ts);
    h->iter_begin = ts;
    h->select_ns = 0;
    h->max_lag = -1;
    h->callbacks = 0;
}

uint64_t health_ready_track(const struct enc_thread *th) {
    return th->health ? th->health->tracks[C_READY] : 0;
}

void health_select(struct enc_thread *th, uint64_t begin_ts, uint64_t end_ts) {
    if (th->health && end_ts > begin_ts) th->health->select_ns += end_ts - begin_ts;
}

void health_callback(struct enc_thread *th, int64_t lag_ns) {
    struct loop_health *h = th->health;
    if (!h) return;
    h->callbacks++;
    if (lag_ns > h->max_lag) h->max_lag = lag_ns;
}

size_t health_loop_end(struct enc_process *p, struct enc_thread *th, uint64_t ts, uint64_t *tracks, int64_t *values,
                       int *slow) {
    struct loop_health *h = health_of(p, th, ts);
    size_t n = 0;
    uint64_t dur = ts > h->iter_begin ? ts - h->iter_begin : 0;
    *slow = p->enc->slow_ns && dur - (h->select_ns < dur ? h->select_ns : dur) >= p->enc->slow_ns;
    if (!p->enc->counters) return 0;
    tracks[n] = h->tracks[C_LAG], values[n++] = h->max_lag > 0 ? h->max_lag : 0;
    tracks[n] = h->tracks[C_CALLBACKS], values[n++] = (int64_t)h->callbacks;
    tracks[n] = h->tracks[C_LIVE], values[n++] = (int64_t)th->live_tasks;
    if (ts - h->rate_since_ts >= 100000000ull) {
        h->rate =
            (int64_t)((double)(th->tasks_created - h->rate_since_created) * 1e9 / (double)(ts - h->rate_since_ts));
        h->rate_since_ts = ts;
        h->rate_since_created = th->tasks_created;
        tracks[n] = h->tracks[C_RATE], values[n++] = h->rate;
    }
    return n;
}

int health_slow_callback(struct enc_process *p, struct enc_thread *th, uint64_t begin_ts, uint64_t dur,
                         uint64_t name_iid) {
    struct encoder *e = p->enc;
    if (!e->slow_ns || dur < e->slow_ns) return 0;
    e->slow_callbacks++;
    Astrace__Pb__DebugAnnotation a;
    Astrace__Pb__DebugAnnotation *ap = &a;
    ann_double(&a, ANN_DUR_MS, dur / 1e6);
    enc_emit(p, &(struct enc_event){.track = th->uuid,
                                    .ts = begin_ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT,
                                    .name_iid = IID_SLOW_CALLBACK,
                                    .anns = &ap,
                                    .nanns = 1});
    if (dur > e->slowest_ns) {
        e->slowest_ns = dur;
        snprintf(e->slowest_name, sizeof e->slowest_name, "%s", enc_name_text(p, name_iid));
    }
    return 1;
}

void health_rss(struct enc_process *p, uint64_t ts, uint64_t bytes) {
    if (!p->enc->counters) return;
    if (!p->rss_track)
        p->rss_track = enc_counter_track(p, p->process_uuid, "RSS",
                                         ASTRACE__PB__COUNTER_DESCRIPTOR__UNIT__UNIT_SIZE_BYTES, NULL, ts);
    enc_emit(p, &(struct enc_event){.track = p->rss_track,
                                    .ts = ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_COUNTER,
                                    .has_counter_value = 1,
                                    .counter_value = (int64_t)bytes});
}

void health_free(struct enc_thread *th) {
    free(th->health);
    th->health = NULL;
}
