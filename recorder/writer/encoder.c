/* Implementation of encoder.h: sessions, processes, thread tracks, interning
 * hand-off and the loop-iteration slices. Task tracks are in tasks.c. */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "writer/encoder_internal.h"
#include "writer/pb_encode.h"

const char *const enc_fixed_names[IID_TASKS_FIXED_END] = {
    [IID_LOOP] = "loop iteration",
    [IID_SELECT] = "select",
    [IID_CALLBACK] = "callback",
    [IID_PROCESS_INFO] = "astrace: process",
    [IID_PROCESS_END] = "astrace: process end",
    [IID_RUN] = "run",
    [IID_SCHEDULED] = "scheduled",
    [IID_GC] = "garbage collection",
    [IID_SLOW_CALLBACK] = "slow callback",
};

const char *const enc_ann_names[ANN_COUNT] = {
    [ANN_TIMEOUT_MS] = "timeout_ms",
    [ANN_READY_EVENTS] = "ready_events",
    [ANN_RAISED] = "raised",
    [ANN_UNFINISHED] = "unfinished",
    [ANN_TASK_NAME] = "task_name",
    [ANN_CORO] = "coroutine",
    [ANN_CREATED_AT] = "created_at",
    [ANN_PARENT] = "parent",
    [ANN_OUTCOME] = "outcome",
    [ANN_EXCEPTION] = "exception",
    [ANN_RUNNING_MS] = "running_ms",
    [ANN_WAITING_MS] = "waiting_ms",
    [ANN_STEPS] = "steps",
    [ANN_AWAITED_AT] = "awaited_at",
    [ANN_AWAIT_CHAIN] = "await_chain",
    [ANN_AWAITED_TASK] = "awaited_task",
    [ANN_GATHER_CHILDREN] = "gather_children",
    [ANN_STATE] = "state",
    [ANN_DISCOVERED] = "discovered",
    [ANN_TASK] = "task",
    [ANN_LANE_FROM_NS] = "on_lane_since_ns",
    [ANN_RENAMED_TO] = "renamed_to",
    [ANN_EAGER] = "eager",
    [ANN_LAG_MS] = "lag_ms",
    [ANN_SLOW] = "slow",
    [ANN_GENERATION] = "generation",
    [ANN_COLLECTED] = "collected",
    [ANN_DUR_MS] = "dur_ms",
    [ANN_CALLBACK] = "callback",
};

/* Slice kinds and their nesting level on a thread track. */
/* A garbage collection can happen anywhere, so it nests deepest. */
enum slice_kind { SK_LOOP = 1, SK_SELECT, SK_CALLBACK, SK_GC };
static int level_of(int kind) {
    return kind == SK_LOOP ? 0 : kind == SK_GC ? 9 : 1;
}

struct enc_pid {
    int32_t pid;
    uint64_t uuid;
};

#define SESSION_SEQ 1

void encoder_init(struct encoder *e, struct trace_file *tf) {
    memset(e, 0, sizeof *e);
    e->tf = tf;
    e->next_uuid = 1;
    e->next_flow = 1;
    e->next_seq = SESSION_SEQ + 1;
    e->counters = 1;
    e->slow_ns = 100000000ull;
}

int seg_string(const struct astrace_seg_header *seg, uint32_t id, const char **out) {
    if (id == 0) return -1;
    uint64_t off = (uint64_t)id - 1;
    uint64_t used = atomic_load_explicit(&((struct astrace_seg_header *)seg)->strings_used, memory_order_acquire);
    if (used > seg->strings_capacity || off + 4 > used) return -1;
    const uint8_t *base = (const uint8_t *)seg + seg->strings_offset;
    uint32_t len;
    memcpy(&len, base + off, 4);
    if (len > used - off - 4) return -1;
    *out = (const char *)base + off + 4;
    return (int)len;
}

/* A segment string as a C string (valid until the next call). */
static const char *seg_text(const struct astrace_seg_header *seg, uint32_t id, const char *fallback) {
    static char text[4097];
    const char *s;
    int len = seg_string(seg, id, &s);
    if (len < 0) return fallback;
    memcpy(text, s, (size_t)len);
    text[len] = 0;
    return text;
}

const char *enc_seg_text(struct enc_process *p, uint32_t id, const char *fallback) {
    return seg_text(p->seg, id, fallback);
}

/* ---- packet helpers ---------------------------------------------------- */

/* Annotations on the session sequence carry their names inline. */
static void named_str(Astrace__Pb__DebugAnnotation *a, const char *name, const char *v) {
    astrace__pb__debug_annotation__init(a);
    a->name = (char *)name;
    a->string_value = (char *)v;
}

static void named_uint(Astrace__Pb__DebugAnnotation *a, const char *name, uint64_t v) {
    astrace__pb__debug_annotation__init(a);
    a->name = (char *)name;
    a->has_uint_value = 1;
    a->uint_value = v;
}

static void packet_init(Astrace__Pb__TracePacket *p, uint32_t seq, uint64_t ts) {
    astrace__pb__trace_packet__init(p);
    p->has_trusted_packet_sequence_id = 1;
    p->trusted_packet_sequence_id = seq;
    p->has_timestamp = 1;
    p->timestamp = ts;
}

uint64_t enc_new_uuid(struct enc_process *p) {
    return p->enc->next_uuid++;
}

uint64_t enc_new_flow(struct enc_process *p) {
    return p->enc->next_flow++;
}

/* Takes the pending interned entries for the packet being built. */
static Astrace__Pb__InternedData *take_batch(struct enc_process *p, Astrace__Pb__InternedData *idata) {
    struct intern_batch *b = &p->ext->batch;
    if (!b->nnames && !b->nstrs) return NULL;
    astrace__pb__interned_data__init(idata);
    idata->n_event_names = b->nnames;
    idata->event_names = b->name_ptrs;
    idata->n_debug_annotation_string_values = b->nstrs;
    idata->debug_annotation_string_values = b->str_ptrs;
    return idata;
}

static void clear_batch(struct enc_process *p) {
    p->ext->batch.nnames = p->ext->batch.nstrs = 0;
}

/* TracePacket and TrackEvent field numbers used below. */
enum {
    F_PKT_TIMESTAMP = 8,
    F_PKT_SEQ_ID = 10,
    F_PKT_TRACK_EVENT = 11,
    F_PKT_INTERNED = 12,
    F_PKT_SEQ_FLAGS = 13,
    F_INTERNED_EVENT_NAMES = 2, /* InternedData */
    F_INTERNED_STRINGS = 29,
    F_INTERNED_ENTRY_IID = 1, /* EventName, InternedString */
    F_INTERNED_ENTRY_TEXT = 2,
    F_EV_ANNOTATIONS = 4,
    F_EV_TYPE = 9,
    F_EV_NAME_IID = 10,
    F_EV_TRACK_UUID = 11,
    F_EV_FLOW_IDS = 47,
    F_EV_TERMINATING_FLOW_IDS = 48,
    F_EV_COUNTER_VALUE = 30,
    F_EV_EXTRA_COUNTER_TRACKS = 31,
    F_EV_EXTRA_COUNTER_VALUES = 12,
    F_ANN_NAME_IID = 1,
    F_ANN_BOOL = 2,
    F_ANN_UINT = 3,
    F_ANN_INT = 4,
    F_ANN_DOUBLE = 5,
    F_ANN_STRING = 6,
    F_ANN_NAME = 10,
    F_ANN_STRING_IID = 17,
};

/* Room an annotation can take (pb_encode.h's bound): each of the eight
 * fields encode_annotation() may write, plus the texts. */
static size_t annotation_bound(const Astrace__Pb__DebugAnnotation *a) {
    size_t n = PB_TAG_MAX + PB_NEST_SLACK + 1 + 8 * (PB_TAG_MAX + PB_VARINT_MAX);
    if (a->name) n += strlen(a->name);
    if (a->string_value) n += strlen(a->string_value);
    return n;
}

static uint8_t *encode_annotation(uint8_t *w, const Astrace__Pb__DebugAnnotation *a) {
    uint8_t *body = pb_open(w, F_EV_ANNOTATIONS);
    w = body;
    if (a->has_name_iid) w = pb_uint(w, F_ANN_NAME_IID, a->name_iid);
    if (a->name) w = pb_bytes(w, F_ANN_NAME, a->name, strlen(a->name));
    if (a->has_bool_value) w = pb_uint(w, F_ANN_BOOL, a->bool_value);
    if (a->has_uint_value) w = pb_uint(w, F_ANN_UINT, a->uint_value);
    if (a->has_int_value) w = pb_uint(w, F_ANN_INT, (uint64_t)a->int_value);
    if (a->has_double_value) w = pb_double(w, F_ANN_DOUBLE, a->double_value);
    if (a->string_value) w = pb_bytes(w, F_ANN_STRING, a->string_value, strlen(a->string_value));
    if (a->has_string_value_iid) w = pb_uint(w, F_ANN_STRING_IID, a->string_value_iid);
    return pb_close(body, w);
}

/* Room the packet of `e` can take, framing included: a bound, so the packet
 * is then written with no further checks. */
static size_t event_bound(const struct intern_batch *batch, const struct enc_event *e) {
    enum { FIELD = PB_TAG_MAX + PB_VARINT_MAX, NEST = PB_TAG_MAX + 1 + PB_NEST_SLACK };
    size_t n = 2 * NEST + 6 * FIELD; /* Trace.packet, track_event, the scalars */
    if (batch->nnames || batch->nstrs) n += NEST;
    for (size_t i = 0; i < batch->nnames; i++) n += NEST + 2 * FIELD + strlen(batch->names[i].name);
    for (size_t i = 0; i < batch->nstrs; i++) n += NEST + 2 * FIELD + batch->strs[i].str.len;
    for (size_t i = 0; i < e->nanns; i++) n += annotation_bound(e->anns[i]);
    n += (e->nflows + e->nterminating) * (PB_TAG_MAX + 8);
    n += (2 * e->ncounters + 1) * FIELD;
    return n;
}

/* Writes one TrackEvent packet, encoded by hand (pb_encode.h): this is the
 * recorder's hottest path. Pending interned entries ride along. */
void enc_emit(struct enc_process *p, const struct enc_event *e) {
    struct intern_batch *batch = &p->ext->batch;
    struct trace_file *tf = p->enc->tf;
    uint8_t *packet = pb_open(trace_file_packet_room(tf, event_bound(batch, e)), 1); /* Trace.packet */
    uint8_t *w = pb_uint(packet, F_PKT_TIMESTAMP, e->ts);
    w = pb_uint(w, F_PKT_SEQ_ID, p->seq_id);
    w = pb_uint(w, F_PKT_SEQ_FLAGS, ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE);
    if (batch->nnames || batch->nstrs) { /* InternedData: event_names, debug_annotation_string_values */
        uint8_t *idata = pb_open(w, F_PKT_INTERNED);
        w = idata;
        for (size_t i = 0; i < batch->nnames; i++) {
            uint8_t *en = pb_open(w, F_INTERNED_EVENT_NAMES);
            w = pb_uint(en, F_INTERNED_ENTRY_IID, batch->names[i].iid);
            w = pb_bytes(w, F_INTERNED_ENTRY_TEXT, batch->names[i].name, strlen(batch->names[i].name));
            w = pb_close(en, w);
        }
        for (size_t i = 0; i < batch->nstrs; i++) {
            uint8_t *is = pb_open(w, F_INTERNED_STRINGS);
            w = pb_uint(is, F_INTERNED_ENTRY_IID, batch->strs[i].iid);
            w = pb_bytes(w, F_INTERNED_ENTRY_TEXT, batch->strs[i].str.data, batch->strs[i].str.len);
            w = pb_close(is, w);
        }
        w = pb_close(idata, w);
        clear_batch(p);
    }
    uint8_t *ev = pb_open(w, F_PKT_TRACK_EVENT);
    w = pb_uint(ev, F_EV_TYPE, (uint64_t)e->type);
    w = pb_uint(w, F_EV_TRACK_UUID, e->track);
    if (e->name_iid) w = pb_uint(w, F_EV_NAME_IID, e->name_iid);
    for (size_t i = 0; i < e->nanns; i++) w = encode_annotation(w, e->anns[i]);
    for (size_t i = 0; i < e->nflows; i++) w = pb_fixed64(w, F_EV_FLOW_IDS, e->flows[i]);
    for (size_t i = 0; i < e->nterminating; i++) w = pb_fixed64(w, F_EV_TERMINATING_FLOW_IDS, e->terminating_flows[i]);
    if (e->has_counter_value) w = pb_uint(w, F_EV_COUNTER_VALUE, (uint64_t)e->counter_value);
    for (size_t i = 0; i < e->ncounters; i++) w = pb_uint(w, F_EV_EXTRA_COUNTER_TRACKS, e->counter_tracks[i]);
    for (size_t i = 0; i < e->ncounters; i++) w = pb_uint(w, F_EV_EXTRA_COUNTER_VALUES, (uint64_t)e->counter_values[i]);
    w = pb_close(ev, w);
    size_t packet_len = (size_t)(w - packet);
    trace_file_packet_done(tf, pb_close(packet, w), packet_len);
    p->enc->events++;
    if (e->ts > p->last_ts) p->last_ts = e->ts;
    if (e->ts > p->enc->last_ts) p->enc->last_ts = e->ts;
}

void enc_write_track(struct enc_process *p, Astrace__Pb__TrackDescriptor *td, uint64_t ts) {
    Astrace__Pb__TracePacket pk;
    Astrace__Pb__InternedData idata;
    packet_init(&pk, p->seq_id, ts);
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.interned_data = take_batch(p, &idata);
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    pk.track_descriptor = td;
    trace_file_write(p->enc->tf, &pk);
    clear_batch(p);
}

/* ---- session ----------------------------------------------------------- */

void encoder_begin_session(struct encoder *e, const struct enc_session_info *info) {
    /* Clock snapshot: BOOTTIME (the trace clock), MONOTONIC and REALTIME read
     * back to back, uncompressed at the start of the file. */
    Astrace__Pb__ClockSnapshot__Clock clocks[3];
    Astrace__Pb__ClockSnapshot__Clock *clock_ptrs[3];
    uint32_t ids[3] = {6, 3, 1};
    uint64_t vals[3];
    vals[0] = now_boottime_ns();
    vals[1] = now_monotonic_ns();
    vals[2] = now_realtime_ns();
    for (int i = 0; i < 3; i++) {
        astrace__pb__clock_snapshot__clock__init(&clocks[i]);
        clocks[i].has_clock_id = 1;
        clocks[i].clock_id = ids[i];
        clocks[i].has_timestamp = 1;
        clocks[i].timestamp = vals[i];
        clock_ptrs[i] = &clocks[i];
    }
    Astrace__Pb__ClockSnapshot cs;
    astrace__pb__clock_snapshot__init(&cs);
    cs.n_clocks = 3;
    cs.clocks = clock_ptrs;
    cs.has_primary_trace_clock = 1;
    cs.primary_trace_clock = 6;
    Astrace__Pb__TracePacket p;
    packet_init(&p, SESSION_SEQ, vals[0]);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_CLOCK_SNAPSHOT;
    p.clock_snapshot = &cs;
    p.has_first_packet_on_sequence = 1;
    p.first_packet_on_sequence = 1;
    p.has_sequence_flags = 1;
    p.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED;
    trace_file_write_plain(e->tf, &p);
    e->last_ts = vals[0];

    /* The session track and its metadata instant. */
    e->session_track_uuid = e->next_uuid++;
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = e->session_track_uuid;
    td.name = "astrace";
    td.description = "Recording session: astrace version, command, settings and end-of-run totals.";
    packet_init(&p, SESSION_SEQ, vals[0]);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    p.track_descriptor = &td;
    trace_file_write_plain(e->tf, &p);

    struct buf cmd = {0};
    for (int i = 0; i < info->argc; i++) {
        if (i) buf_append(&cmd, " ", 1);
        buf_append(&cmd, info->argv[i], strlen(info->argv[i]));
    }
    buf_append(&cmd, "", 1);
    char realtime[32], ring[32];
    snprintf(realtime, sizeof realtime, "%llu", (unsigned long long)info->start_realtime_ns);
    snprintf(ring, sizeof ring, "%llu", (unsigned long long)info->ring_size);
    Astrace__Pb__DebugAnnotation a[11];
    Astrace__Pb__DebugAnnotation *ap[11];
    named_str(&a[0], "astrace_version", ASTRACE_VERSION);
    named_str(&a[1], "command", (char *)cmd.data);
    named_str(&a[2], "compression", info->compression);
    named_uint(&a[3], "start_realtime_ns", info->start_realtime_ns);
    named_str(&a[4], "sampler", info->sampler ? info->sampler : "off");
    named_uint(&a[5], "ring_size_bytes", info->ring_size);
    named_str(&a[6], "clock", "BOOTTIME");
    named_str(&a[7], "tasks", info->tasks ? "on" : "off");
    named_str(&a[8], "counters", e->counters ? "on" : "off");
    named_uint(&a[9], "slow_callback_ns", e->slow_ns);
    named_str(&a[10], "record_clock", info->record_clock ? info->record_clock : "boottime");
    for (int i = 0; i < 11; i++) ap[i] = &a[i];
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = e->session_track_uuid;
    ev.name = "astrace: session";
    ev.n_debug_annotations = 11;
    ev.debug_annotations = ap;
    packet_init(&p, SESSION_SEQ, info->start_boottime_ns ? info->start_boottime_ns : vals[0]);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    p.track_event = &ev;
    trace_file_write_plain(e->tf, &p);
    buf_free(&cmd);
}

void encoder_end_session(struct encoder *e, uint64_t dropped_total, uint32_t processes, const char *notes) {
    Astrace__Pb__DebugAnnotation a[8];
    Astrace__Pb__DebugAnnotation *ap[8];
    named_uint(&a[0], "events", e->events);
    named_uint(&a[1], "events_dropped", dropped_total);
    named_uint(&a[2], "processes", processes);
    named_uint(&a[3], "slow_callbacks", e->slow_callbacks);
    named_uint(&a[4], "samples", e->samples);
    named_uint(&a[5], "samples_dropped", e->samples_dropped);
    named_uint(&a[6], "samples_unreadable", e->samples_unreadable);
    named_str(&a[7], "notes", notes && *notes ? notes : "");
    for (int i = 0; i < 8; i++) ap[i] = &a[i];
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = e->session_track_uuid;
    ev.name = "astrace: summary";
    ev.n_debug_annotations = notes && *notes ? 8 : 7;
    ev.debug_annotations = ap;
    Astrace__Pb__TracePacket p;
    packet_init(&p, SESSION_SEQ, e->last_ts);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    p.track_event = &ev;
    trace_file_write(e->tf, &p);
}

void encoder_free(struct encoder *e) {
    free(e->pids);
    e->pids = NULL;
}

/* ---- processes ----------------------------------------------------------- */

static uint64_t pid_uuid(struct encoder *e, int32_t pid) {
    for (size_t i = 0; i < e->npids; i++)
        if (e->pids[i].pid == pid) return e->pids[i].uuid;
    if (e->npids == e->cap_pids) {
        e->cap_pids = e->cap_pids ? e->cap_pids * 2 : 16;
        e->pids = xrealloc(e->pids, e->cap_pids * sizeof *e->pids);
    }
    e->pids[e->npids].pid = pid;
    e->pids[e->npids].uuid = e->next_uuid++;
    return e->pids[e->npids++].uuid;
}

/* `python app.py` is named after its script, `python -m pkg` after pkg. */
static void process_name(char *const *argv, size_t argc, char *out, size_t cap) {
    const char *base = argc ? strrchr(argv[0], '/') : NULL;
    snprintf(out, cap, "%s", argc ? (base ? base + 1 : argv[0]) : "python");
    for (size_t i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (!strcmp(argv[i], "-m") && i + 1 < argc) {
                snprintf(out, cap, "python -m %s", argv[i + 1]);
                return;
            }
            if (!strcmp(argv[i], "-c")) return;
            continue;
        }
        const char *sb = strrchr(argv[i], '/');
        snprintf(out, cap, "%s", sb ? sb + 1 : argv[i]);
        return;
    }
}

/* The names interned on every process sequence after each CLEARED. */
struct fixed_interned {
    Astrace__Pb__EventName names[IID_TASKS_FIXED_END];
    Astrace__Pb__EventName *name_ptrs[IID_TASKS_FIXED_END];
    Astrace__Pb__DebugAnnotationName anns[ANN_COUNT];
    Astrace__Pb__DebugAnnotationName *ann_ptrs[ANN_COUNT];
};

static void fixed_interned_fill(struct fixed_interned *f, Astrace__Pb__InternedData *idata) {
    size_t nn = 0, na = 0;
    for (size_t i = 1; i < IID_TASKS_FIXED_END; i++) {
        astrace__pb__event_name__init(&f->names[nn]);
        f->names[nn].has_iid = 1;
        f->names[nn].iid = i;
        f->names[nn].name = (char *)enc_fixed_names[i];
        f->name_ptrs[nn] = &f->names[nn];
        nn++;
    }
    for (size_t i = 1; i < ANN_COUNT; i++) {
        astrace__pb__debug_annotation_name__init(&f->anns[na]);
        f->anns[na].has_iid = 1;
        f->anns[na].iid = i;
        f->anns[na].name = (char *)enc_ann_names[i];
        f->ann_ptrs[na] = &f->anns[na];
        na++;
    }
    astrace__pb__interned_data__init(idata);
    idata->n_event_names = nn;
    idata->event_names = f->name_ptrs;
    idata->n_debug_annotation_names = na;
    idata->debug_annotation_names = f->ann_ptrs;
}

/* Every task interns its own names, so a long recording would grow the
 * interning tables (here and in every reader) without bound. Past
 * INTERN_RESET_AT texts the sequence's incremental state is cleared and the
 * fixed names re-sent; texts are interned again on their next use. Called
 * only between records, so no packet under construction holds an old iid. */
#define INTERN_RESET_AT (1u << 16)

static void maybe_reset_interning(struct enc_process *p, uint64_t ts) {
    if (intern_map_size(p->ext->interned) < INTERN_RESET_AT) return;
    struct fixed_interned fixed;
    Astrace__Pb__InternedData idata;
    fixed_interned_fill(&fixed, &idata);
    Astrace__Pb__TracePacket pk;
    packet_init(&pk, p->seq_id, ts);
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED |
                        ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.interned_data = &idata;
    trace_file_write(p->enc->tf, &pk);
    intern_map_clear(p->ext->interned);
    clear_batch(p);
    p->ext->intern_generation++;
}

struct enc_process *encoder_add_process(struct encoder *e, const struct astrace_seg_header *seg) {
    struct enc_process *p = xcalloc(1, sizeof *p);
    p->enc = e;
    p->seq_id = e->next_seq++;
    p->pid = seg->pid;
    p->seg = seg;
    p->nthreads = seg->ring_count;
    p->threads = xcalloc(p->nthreads, sizeof *p->threads);
    p->ext = xcalloc(1, sizeof *p->ext);
    p->ext->tasks = tasks_new();
    p->process_uuid = pid_uuid(e, seg->pid);
    uint64_t ts = seg->start_boottime_ns;

    /* First packet: clears incremental state and interns the fixed names. */
    struct fixed_interned fixed;
    Astrace__Pb__InternedData idata;
    fixed_interned_fill(&fixed, &idata);

    /* Process track, with the command line split back into argv. */
    char *argv_store[64];
    size_t argc = 0;
    uint32_t cl = seg->cmdline_len < sizeof seg->cmdline ? seg->cmdline_len : sizeof seg->cmdline;
    char cmdline[sizeof seg->cmdline + 1];
    memcpy(cmdline, seg->cmdline, cl);
    cmdline[cl] = 0;
    for (uint32_t i = 0; i < cl && argc < 64;) {
        argv_store[argc++] = cmdline + i;
        i += (uint32_t)strlen(cmdline + i) + 1;
    }
    char pname[256];
    process_name(argv_store, argc, pname, sizeof pname);
    Astrace__Pb__ProcessDescriptor pd;
    astrace__pb__process_descriptor__init(&pd);
    pd.has_pid = 1;
    pd.pid = seg->pid;
    pd.n_cmdline = argc;
    pd.cmdline = argv_store;
    pd.process_name = pname;
    pd.has_start_timestamp_ns = 1;
    pd.start_timestamp_ns = (int64_t)ts;
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = p->process_uuid;
    td.process = &pd;

    Astrace__Pb__TracePacket pk;
    packet_init(&pk, p->seq_id, ts);
    pk.has_first_packet_on_sequence = 1;
    pk.first_packet_on_sequence = 1;
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED |
                        ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.interned_data = &idata;
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    pk.track_descriptor = &td;
    trace_file_write(e->tf, &pk);

    /* Process metadata instant on the process track. */
    Astrace__Pb__DebugAnnotation a[4];
    Astrace__Pb__DebugAnnotation *ap[4] = {&a[0], &a[1], &a[2], &a[3]};
    char hex[16];
    snprintf(hex, sizeof hex, "0x%08x", (unsigned)seg->python_hexversion);
    char pyver[sizeof seg->python_version + 1], exe[sizeof seg->executable + 1];
    snprintf(pyver, sizeof pyver, "%.*s", (int)sizeof seg->python_version, seg->python_version);
    snprintf(exe, sizeof exe, "%.*s", (int)sizeof seg->executable, seg->executable);
    named_str(&a[0], "python_version", pyver);
    named_str(&a[1], "python_hexversion", hex);
    named_str(&a[2], "executable", exe);
    named_uint(&a[3], "ppid", (uint64_t)seg->ppid);
    enc_emit(p, &(struct enc_event){.track = p->process_uuid,
                                    .ts = ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT,
                                    .name_iid = IID_PROCESS_INFO,
                                    .anns = ap,
                                    .nanns = 4});
    p->last_ts = ts;
    return p;
}

static void describe_thread(struct enc_process *p, struct enc_thread *t, uint64_t ts) {
    Astrace__Pb__ThreadDescriptor thd;
    astrace__pb__thread_descriptor__init(&thd);
    thd.has_pid = 1;
    thd.pid = p->pid;
    thd.has_tid = 1;
    thd.tid = t->tid;
    thd.thread_name = t->name[0] ? t->name : NULL;
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = t->uuid;
    td.has_parent_uuid = 1;
    td.parent_uuid = p->process_uuid;
    td.thread = &thd;
    td.has_disallow_merging_with_system_tracks = 1;
    td.disallow_merging_with_system_tracks = 1;
    enc_write_track(p, &td, ts);
    t->described = 1;
}

void enc_thread_add_end_flow(struct enc_thread *th, uint64_t flow) {
    if (th->nend_flows == th->capend_flows) {
        th->capend_flows = th->capend_flows ? th->capend_flows * 2 : 8;
        th->end_flows = xrealloc(th->end_flows, th->capend_flows * sizeof *th->end_flows);
    }
    th->end_flows[th->nend_flows++] = flow;
}

/* ---- loop slices on the thread track --------------------------------------- */

/* Ends the innermost open slice; `extra` carries counters for its END. */
static void end_top_with(struct enc_process *p, struct enc_thread *t, uint64_t ts, int unfinished,
                         Astrace__Pb__DebugAnnotation **anns, size_t nanns, const struct enc_event *extra) {
    Astrace__Pb__DebugAnnotation a;
    Astrace__Pb__DebugAnnotation *ap = &a;
    if (unfinished) {
        ann_bool(&a, ANN_UNFINISHED, 1);
        anns = &ap;
        nanns = 1;
    }
    struct enc_event ev = {.track = t->uuid,
                           .ts = ts,
                           .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END,
                           .anns = anns,
                           .nanns = nanns,
                           .flows = t->end_flows,
                           .nflows = t->nend_flows};
    if (extra) {
        ev.counter_tracks = extra->counter_tracks;
        ev.counter_values = extra->counter_values;
        ev.ncounters = extra->ncounters;
    }
    enc_emit(p, &ev);
    t->nend_flows = 0;
    t->depth--;
}

static void end_top(struct enc_process *p, struct enc_thread *t, uint64_t ts, int unfinished,
                    Astrace__Pb__DebugAnnotation **anns, size_t nanns) {
    end_top_with(p, t, ts, unfinished, anns, nanns, NULL);
}

static void begin_slice_with(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind, uint64_t name_iid,
                             Astrace__Pb__DebugAnnotation **anns, size_t nanns, const uint64_t *ctracks,
                             const int64_t *cvalues, size_t ncounters) {
    while (t->depth > 0 && level_of(t->stack[t->depth - 1]) >= level_of(kind)) end_top(p, t, ts, 1, NULL, 0);
    if (t->depth == STACK_MAX) return;
    enc_emit(p, &(struct enc_event){.track = t->uuid,
                                    .ts = ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN,
                                    .name_iid = name_iid,
                                    .anns = anns,
                                    .nanns = nanns,
                                    .counter_tracks = ctracks,
                                    .counter_values = cvalues,
                                    .ncounters = ncounters});
    t->stack[t->depth] = kind;
    t->stack_ts[t->depth] = ts;
    /* The name's iid only while interning is not reset (then: fixed names only). */
    t->stack_name[t->depth] = name_iid;
    t->stack_name_gen[t->depth] = p->ext->intern_generation;
    t->depth++;
}

static void begin_slice(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind, uint64_t name_iid,
                        Astrace__Pb__DebugAnnotation **anns, size_t nanns) {
    begin_slice_with(p, t, ts, kind, name_iid, anns, nanns, NULL, NULL, 0);
}

/* The open slice of `kind`, as a stack index, or -1. */
static int find_open(const struct enc_thread *t, int kind) {
    for (int i = t->depth - 1; i >= 0; i--)
        if (t->stack[i] == kind) return i;
    return -1;
}

static void end_slice_with(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind,
                           Astrace__Pb__DebugAnnotation **anns, size_t nanns, const struct enc_event *extra) {
    int at = find_open(t, kind);
    if (at < 0) return; /* its BEGIN was dropped */
    while (t->depth > at + 1) end_top(p, t, ts, 1, NULL, 0);
    end_top_with(p, t, ts, 0, anns, nanns, extra);
}

static void end_slice(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind,
                      Astrace__Pb__DebugAnnotation **anns, size_t nanns) {
    end_slice_with(p, t, ts, kind, anns, nanns, NULL);
}

/* ---- records ------------------------------------------------------------------ */

/* The callback slice ends (a CALLBACK_END, or a task step's end record that
 * ends its callback too): marked if it raised or ran long. */
static void callback_end(struct enc_process *p, struct enc_thread *t, uint64_t ts, int raised) {
    tasks_close_lost_steps(p, t, ts);
    int at = find_open(t, SK_CALLBACK);
    Astrace__Pb__DebugAnnotation a[2];
    Astrace__Pb__DebugAnnotation *ap[2] = {&a[0], &a[1]};
    size_t na = 0;
    if (raised) ann_bool(&a[na], ANN_RAISED, 1), na++;
    uint64_t name = at >= 0 && t->stack_name_gen[at] == p->ext->intern_generation ? t->stack_name[at] : 0;
    if (at >= 0 && health_slow_callback(p, t, t->stack_ts[at], ts - t->stack_ts[at], name))
        ann_bool(&a[na], ANN_SLOW, 1), na++;
    end_slice(p, t, ts, SK_CALLBACK, na ? ap : NULL, na);
}

void encoder_record(struct enc_process *p, uint32_t ring_index, uint32_t gen, int64_t tid, const char *thread_name,
                    const struct astrace_rec_hdr *rec) {
    if (ring_index >= p->nthreads) return;
    struct enc_thread *t = &p->threads[ring_index];
    uint64_t ts = rec->ts;
    if (t->generation != gen) {
        /* A new thread took this ring: close the old one's track first. */
        while (t->depth > 0) end_top(p, t, t->last_ts, 1, NULL, 0);
        free(t->end_flows);
        health_free(t);
        memset(t, 0, sizeof *t);
        t->generation = gen;
        t->tid = tid;
        t->uuid = enc_new_uuid(p);
        snprintf(t->name, sizeof t->name, "%s", thread_name ? thread_name : "");
    }
    p->records++;
    maybe_reset_interning(p, ts);
    if (ts > t->last_ts) t->last_ts = ts;
    if (rec->type == ASTRACE_REC_THREAD_NAME) {
        const char *s;
        int len = seg_string(p->seg, rec->str0, &s);
        if (len >= 0) {
            snprintf(t->name, sizeof t->name, "%.*s", len, s);
            describe_thread(p, t, ts);
        }
        return;
    }
    if (!t->described) describe_thread(p, t, ts);
    const struct astrace_rec_arg *ra = (const struct astrace_rec_arg *)rec;
    int64_t a0 = rec->size >= sizeof *ra ? ra->a0 : 0;
    Astrace__Pb__DebugAnnotation a[2];
    Astrace__Pb__DebugAnnotation *ap[2] = {&a[0], &a[1]};
    struct encoder *e = p->enc;
    switch (rec->type) {
    case ASTRACE_REC_SAMPLE: enc_sample(p, t, rec); break;
    case ASTRACE_REC_LOOP_BEGIN: {
        health_loop_begin(p, t, ts, a0);
        uint64_t track = health_ready_track(t);
        int with_ready = e->counters && a0 >= 0;
        begin_slice_with(p, t, ts, SK_LOOP, IID_LOOP, NULL, 0, with_ready ? &track : NULL, with_ready ? &a0 : NULL,
                         with_ready ? 1 : 0);
        break;
    }
    case ASTRACE_REC_LOOP_END: {
        uint64_t tracks[8];
        int64_t values[8];
        int slow = 0;
        size_t nc = find_open(t, SK_LOOP) >= 0 ? health_loop_end(p, t, ts, tracks, values, &slow) : 0;
        size_t na = 0;
        if (a0) ann_bool(&a[na], ANN_RAISED, 1), na++;
        if (slow) ann_bool(&a[na], ANN_SLOW, 1), na++;
        end_slice_with(p, t, ts, SK_LOOP, na ? ap : NULL, na,
                       &(struct enc_event){.counter_tracks = tracks, .counter_values = values, .ncounters = nc});
        break;
    }
    case ASTRACE_REC_POLL_BEGIN:
        if (a0 >= 0)
            ann_double(&a[0], ANN_TIMEOUT_MS, (double)a0 / 1e6);
        else
            ann_int(&a[0], ANN_TIMEOUT_MS, -1);
        begin_slice(p, t, ts, SK_SELECT, IID_SELECT, ap, 1);
        break;
    case ASTRACE_REC_POLL_END: {
        int at = find_open(t, SK_SELECT);
        if (at >= 0) health_select(t, t->stack_ts[at], ts);
        if (a0 >= 0)
            ann_uint(&a[0], ANN_READY_EVENTS, (uint64_t)a0);
        else
            ann_bool(&a[0], ANN_RAISED, 1);
        end_slice(p, t, ts, SK_SELECT, ap, 1);
        break;
    }
    case ASTRACE_REC_CALLBACK_BEGIN: {
        const struct astrace_rec_callback *cb = (const struct astrace_rec_callback *)rec;
        int64_t lag = rec->size >= sizeof *cb ? cb->lag_ns : -1;
        health_callback(t, lag);
        tasks_close_lost_steps(p, t, ts);
        uint64_t iid = a0 ? tasks_on_step_begin(p, t, (uint64_t)a0, ts, lag) : 0;
        if (!iid) iid = enc_seg_name_iid(p, rec->str0, "callback");
        /* A lag worth reading goes on the slice; every lag feeds the counter. */
        int with_lag = lag >= 1000000;
        if (with_lag) ann_double(&a[0], ANN_LAG_MS, lag / 1e6);
        begin_slice(p, t, ts, SK_CALLBACK, iid, with_lag ? ap : NULL, with_lag ? 1 : 0);
        break;
    }
    case ASTRACE_REC_CALLBACK_END: callback_end(p, t, ts, a0 != 0); break;
    case ASTRACE_REC_GC_BEGIN:
        ann_int(&a[0], ANN_GENERATION, a0);
        begin_slice(p, t, ts, SK_GC, IID_GC, ap, 1);
        break;
    case ASTRACE_REC_GC_END:
        if (a0 >= 0) ann_int(&a[0], ANN_COLLECTED, a0);
        end_slice(p, t, ts, SK_GC, a0 >= 0 ? ap : NULL, a0 >= 0 ? 1 : 0);
        break;
    case ASTRACE_REC_TASK_CREATE:
        if (rec->size >= sizeof(struct astrace_rec_task_create))
            tasks_on_create(p, t, (const struct astrace_rec_task_create *)rec);
        break;
    case ASTRACE_REC_TASK_RENAME:
        if (rec->size >= sizeof(struct astrace_rec_task_create))
            tasks_on_rename(p, t, (const struct astrace_rec_task_create *)rec);
        break;
    case ASTRACE_REC_TASK_STEP_END:
        if (rec->size >= sizeof(struct astrace_rec_task_step_end)) {
            const struct astrace_rec_task_step_end *se = (const struct astrace_rec_task_step_end *)rec;
            tasks_on_step_end(p, t, se);
            if (se->flags & ASTRACE_STEP_ENDS_CALLBACK)
                callback_end(p, t, ts, (se->flags & ASTRACE_STEP_CALLBACK_RAISED) != 0);
        }
        break;
    default: break; /* a newer runtime's record: skipped */
    }
}

void encoder_rss(struct enc_process *p, uint64_t ts, uint64_t bytes) {
    health_rss(p, ts, bytes);
}

void encoder_sample_losses(struct enc_process *p, uint64_t dropped, uint64_t unreadable) {
    p->samples_dropped = dropped;
    p->samples_unreadable = unreadable;
    p->enc->samples_dropped += dropped;
    p->enc->samples_unreadable += unreadable;
}

void encoder_end_process(struct enc_process *p, const char *how_ended, uint64_t dropped_records) {
    tasks_end_all(p);
    for (uint32_t i = 0; i < p->nthreads; i++) {
        struct enc_thread *t = &p->threads[i];
        while (t->depth > 0) end_top(p, t, t->last_ts, 1, NULL, 0);
        free(t->end_flows);
        health_free(t);
    }
    Astrace__Pb__DebugAnnotation a[6];
    Astrace__Pb__DebugAnnotation *ap[6] = {&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]};
    named_str(&a[0], "ended", how_ended);
    named_uint(&a[1], "events", p->records);
    named_uint(&a[2], "events_dropped", dropped_records);
    named_uint(&a[3], "samples", samples_count(p->ext->samples));
    named_uint(&a[4], "samples_dropped", p->samples_dropped);
    named_uint(&a[5], "samples_unreadable", p->samples_unreadable);
    enc_emit(p, &(struct enc_event){.track = p->process_uuid,
                                    .ts = p->last_ts,
                                    .type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT,
                                    .name_iid = IID_PROCESS_END,
                                    .anns = ap,
                                    .nanns = p->seg->sample_ring_size ? 6 : 3});
    samples_free(p->ext->samples);
    tasks_free(p->ext->tasks);
    intern_map_free(p->ext->interned);
    free(p->ext);
    free(p->threads);
    free(p);
}
