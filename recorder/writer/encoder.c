/* Implementation of encoder.h: sequences, tracks, interning and the
 * records-to-slices rules. */
#include "encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Event-name iids below ENC_IID_STRINGS are fixed names; a segment string's
 * iid is its id + ENC_IID_STRINGS. */
enum {
    IID_LOOP = 1,
    IID_SELECT,
    IID_CALLBACK,
    IID_PROCESS_INFO,
    IID_PROCESS_END,
    ENC_IID_STRINGS = 16,
};
static const char *const fixed_names[] = {
    [IID_LOOP] = "loop iteration",
    [IID_SELECT] = "select",
    [IID_CALLBACK] = "callback",
    [IID_PROCESS_INFO] = "astrace: process",
    [IID_PROCESS_END] = "astrace: process end",
};

/* Debug-annotation name iids, fixed on every process sequence. */
enum { ANN_TIMEOUT_MS = 1, ANN_READY_EVENTS, ANN_RAISED, ANN_UNFINISHED, ANN_COUNT };
static const char *const ann_names[] = {
    [ANN_TIMEOUT_MS] = "timeout_ms",
    [ANN_READY_EVENTS] = "ready_events",
    [ANN_RAISED] = "raised",
    [ANN_UNFINISHED] = "unfinished",
};

/* Slice kinds and their nesting level on a thread track. */
enum slice_kind { SK_LOOP = 1, SK_SELECT, SK_CALLBACK };
static int level_of(int kind) {
    return kind == SK_LOOP ? 0 : 1;
}

#define STACK_MAX 8

struct enc_thread {
    uint32_t generation; /* ring generation this track belongs to; 0 = unseen */
    uint64_t uuid;
    int64_t tid;
    char name[ASTRACE_THREAD_NAME_MAX];
    int described;
    int stack[STACK_MAX];
    int depth;
    uint64_t last_ts;
};

struct enc_pid {
    int32_t pid;
    uint64_t uuid;
};

#define SESSION_SEQ 1

void encoder_init(struct encoder *e, struct trace_file *tf) {
    memset(e, 0, sizeof *e);
    e->tf = tf;
    e->next_uuid = 1;
    e->next_seq = SESSION_SEQ + 1;
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

/* ---- packet helpers ---------------------------------------------------- */

/* A debug annotation named by an interned iid (process sequences) or, when
 * `name` is given, inline (the session sequence, which interns nothing). */
static Astrace__Pb__DebugAnnotation *ann(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid, const char *name) {
    astrace__pb__debug_annotation__init(a);
    a->name = (char *)name;
    a->has_name_iid = name == NULL;
    a->name_iid = name_iid;
    return a;
}

static void ann_uint(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid, uint64_t v) {
    ann(a, name_iid, NULL)->uint_value = v;
    a->has_uint_value = 1;
}

static void ann_int(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid, int64_t v) {
    ann(a, name_iid, NULL)->int_value = v;
    a->has_int_value = 1;
}

static void ann_double(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid, double v) {
    ann(a, name_iid, NULL)->double_value = v;
    a->has_double_value = 1;
}

static void ann_bool(Astrace__Pb__DebugAnnotation *a, uint64_t name_iid, int v) {
    ann(a, name_iid, NULL)->bool_value = v != 0;
    a->has_bool_value = 1;
}

static void ann_named_str(Astrace__Pb__DebugAnnotation *a, const char *name, const char *v) {
    ann(a, 0, name)->string_value = (char *)v;
}

static void ann_named_uint(Astrace__Pb__DebugAnnotation *a, const char *name, uint64_t v) {
    ann(a, 0, name)->uint_value = v;
    a->has_uint_value = 1;
}

static void packet_init(Astrace__Pb__TracePacket *p, uint32_t seq, uint64_t ts) {
    astrace__pb__trace_packet__init(p);
    p->has_trusted_packet_sequence_id = 1;
    p->trusted_packet_sequence_id = seq;
    p->has_timestamp = 1;
    p->timestamp = ts;
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
    Astrace__Pb__DebugAnnotation a[7];
    Astrace__Pb__DebugAnnotation *ap[7];
    ann_named_str(&a[0], "astrace_version", ASTRACE_VERSION);
    ann_named_str(&a[1], "command", (char *)cmd.data);
    ann_named_str(&a[2], "compression", info->compression);
    ann_named_uint(&a[3], "start_realtime_ns", info->start_realtime_ns);
    ann_named_str(&a[4], "sampler", "off");
    ann_named_uint(&a[5], "ring_size_bytes", info->ring_size);
    ann_named_str(&a[6], "clock", "BOOTTIME");
    for (int i = 0; i < 7; i++) ap[i] = &a[i];
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = e->session_track_uuid;
    ev.name = "astrace: session";
    ev.n_debug_annotations = 7;
    ev.debug_annotations = ap;
    packet_init(&p, SESSION_SEQ, info->start_boottime_ns ? info->start_boottime_ns : vals[0]);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    p.track_event = &ev;
    trace_file_write_plain(e->tf, &p);
    buf_free(&cmd);
}

void encoder_end_session(struct encoder *e, uint64_t dropped_total, uint32_t processes, const char *notes) {
    Astrace__Pb__DebugAnnotation a[4];
    Astrace__Pb__DebugAnnotation *ap[4];
    ann_named_uint(&a[0], "events", e->events);
    ann_named_uint(&a[1], "events_dropped", dropped_total);
    ann_named_uint(&a[2], "processes", processes);
    ann_named_str(&a[3], "notes", notes && *notes ? notes : "");
    for (int i = 0; i < 4; i++) ap[i] = &a[i];
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = e->session_track_uuid;
    ev.name = "astrace: summary";
    ev.n_debug_annotations = notes && *notes ? 4 : 3;
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

static uint64_t pid_uuid(struct encoder *e, int32_t pid, int *is_new) {
    for (size_t i = 0; i < e->npids; i++)
        if (e->pids[i].pid == pid) {
            *is_new = 0;
            return e->pids[i].uuid;
        }
    if (e->npids == e->cap_pids) {
        e->cap_pids = e->cap_pids ? e->cap_pids * 2 : 16;
        e->pids = xrealloc(e->pids, e->cap_pids * sizeof *e->pids);
    }
    e->pids[e->npids].pid = pid;
    e->pids[e->npids].uuid = e->next_uuid++;
    *is_new = 1;
    return e->pids[e->npids++].uuid;
}

struct enc_process *encoder_add_process(struct encoder *e, const struct astrace_seg_header *seg) {
    struct enc_process *p = xcalloc(1, sizeof *p);
    p->enc = e;
    p->seq_id = e->next_seq++;
    p->pid = seg->pid;
    p->seg = seg;
    p->nthreads = seg->ring_count;
    p->threads = xcalloc(p->nthreads, sizeof *p->threads);
    p->interned_bits = seg->strings_capacity / 4 + 1;
    p->interned = xcalloc(p->interned_bits / 8 + 1, 1);
    int is_new;
    p->process_uuid = pid_uuid(e, seg->pid, &is_new);
    uint64_t ts = seg->start_boottime_ns;

    /* First packet: clears incremental state and interns the fixed names. */
    Astrace__Pb__EventName names[sizeof fixed_names / sizeof *fixed_names];
    Astrace__Pb__EventName *name_ptrs[sizeof fixed_names / sizeof *fixed_names];
    size_t nn = 0;
    for (size_t i = 1; i < sizeof fixed_names / sizeof *fixed_names; i++) {
        astrace__pb__event_name__init(&names[nn]);
        names[nn].has_iid = 1;
        names[nn].iid = i;
        names[nn].name = (char *)fixed_names[i];
        name_ptrs[nn] = &names[nn];
        nn++;
    }
    Astrace__Pb__DebugAnnotationName anns[ANN_COUNT];
    Astrace__Pb__DebugAnnotationName *ann_ptrs[ANN_COUNT];
    size_t na = 0;
    for (size_t i = 1; i < ANN_COUNT; i++) {
        astrace__pb__debug_annotation_name__init(&anns[na]);
        anns[na].has_iid = 1;
        anns[na].iid = i;
        anns[na].name = (char *)ann_names[i];
        ann_ptrs[na] = &anns[na];
        na++;
    }
    Astrace__Pb__InternedData idata;
    astrace__pb__interned_data__init(&idata);
    idata.n_event_names = nn;
    idata.event_names = name_ptrs;
    idata.n_debug_annotation_names = na;
    idata.debug_annotation_names = ann_ptrs;

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
    Astrace__Pb__ProcessDescriptor pd;
    astrace__pb__process_descriptor__init(&pd);
    pd.has_pid = 1;
    pd.pid = seg->pid;
    pd.n_cmdline = argc;
    pd.cmdline = argv_store;
    char pname[256];
    const char *base = argc ? strrchr(argv_store[0], '/') : NULL;
    snprintf(pname, sizeof pname, "%s", argc ? (base ? base + 1 : argv_store[0]) : "python");
    /* Name a `python app.py` process after its script, as users think of it. */
    for (size_t i = 1; i < argc; i++) {
        if (argv_store[i][0] == '-') {
            if (!strcmp(argv_store[i], "-m") && i + 1 < argc) {
                snprintf(pname, sizeof pname, "python -m %s", argv_store[i + 1]);
                break;
            }
            if (!strcmp(argv_store[i], "-c")) break;
            continue;
        }
        const char *sb = strrchr(argv_store[i], '/');
        snprintf(pname, sizeof pname, "%s", sb ? sb + 1 : argv_store[i]);
        break;
    }
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
    Astrace__Pb__DebugAnnotation *ap[4];
    char hex[16];
    snprintf(hex, sizeof hex, "0x%08x", (unsigned)seg->python_hexversion);
    char pyver[sizeof seg->python_version + 1], exe[sizeof seg->executable + 1];
    snprintf(pyver, sizeof pyver, "%.*s", (int)sizeof seg->python_version, seg->python_version);
    snprintf(exe, sizeof exe, "%.*s", (int)sizeof seg->executable, seg->executable);
    ann_named_str(&a[0], "python_version", pyver);
    ann_named_str(&a[1], "python_hexversion", hex);
    ann_named_str(&a[2], "executable", exe);
    ann_named_uint(&a[3], "ppid", (uint64_t)seg->ppid);
    for (int i = 0; i < 4; i++) ap[i] = &a[i];
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = p->process_uuid;
    ev.has_name_iid = 1;
    ev.name_iid = IID_PROCESS_INFO;
    ev.n_debug_annotations = 4;
    ev.debug_annotations = ap;
    packet_init(&pk, p->seq_id, ts);
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    pk.track_event = &ev;
    trace_file_write(e->tf, &pk);
    if (ts > e->last_ts) e->last_ts = ts;
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
    Astrace__Pb__TracePacket pk;
    packet_init(&pk, p->seq_id, ts);
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    pk.track_descriptor = &td;
    trace_file_write(p->enc->tf, &pk);
    t->described = 1;
}

/* Emits one TrackEvent on a thread track. */
static void emit_event(struct enc_process *p, struct enc_thread *t, uint64_t ts, int type, uint64_t name_iid,
                       Astrace__Pb__DebugAnnotation **anns, size_t nanns, Astrace__Pb__InternedData *idata) {
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = (Astrace__Pb__TrackEvent__Type)type;
    ev.has_track_uuid = 1;
    ev.track_uuid = t->uuid;
    if (name_iid) {
        ev.has_name_iid = 1;
        ev.name_iid = name_iid;
    }
    ev.n_debug_annotations = nanns;
    ev.debug_annotations = anns;
    Astrace__Pb__TracePacket pk;
    packet_init(&pk, p->seq_id, ts);
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.interned_data = idata;
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    pk.track_event = &ev;
    trace_file_write(p->enc->tf, &pk);
    p->enc->events++;
}

static void end_top(struct enc_process *p, struct enc_thread *t, uint64_t ts, int unfinished) {
    Astrace__Pb__DebugAnnotation a;
    Astrace__Pb__DebugAnnotation *ap = &a;
    if (unfinished) ann_bool(&a, ANN_UNFINISHED, 1);
    emit_event(p, t, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, unfinished ? &ap : NULL, unfinished ? 1 : 0,
               NULL);
    t->depth--;
}

static void begin_slice(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind, uint64_t name_iid,
                        Astrace__Pb__DebugAnnotation **anns, size_t nanns, Astrace__Pb__InternedData *idata) {
    while (t->depth > 0 && level_of(t->stack[t->depth - 1]) >= level_of(kind)) end_top(p, t, ts, 1);
    if (t->depth == STACK_MAX) return;
    emit_event(p, t, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN, name_iid, anns, nanns, idata);
    t->stack[t->depth++] = kind;
}

static void end_slice(struct enc_process *p, struct enc_thread *t, uint64_t ts, int kind,
                      Astrace__Pb__DebugAnnotation **anns, size_t nanns) {
    int at = -1;
    for (int i = t->depth - 1; i >= 0; i--)
        if (t->stack[i] == kind) {
            at = i;
            break;
        }
    if (at < 0) return; /* its BEGIN was dropped */
    while (t->depth > at + 1) end_top(p, t, ts, 1);
    emit_event(p, t, ts, ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END, 0, anns, nanns, NULL);
    t->depth--;
}

/* Interns a segment string as an event name unless done already; fills
 * `idata` (and the entry) when it must go out with this packet. */
static uint64_t intern_name(struct enc_process *p, uint32_t id, Astrace__Pb__InternedData *idata,
                            Astrace__Pb__EventName *entry, Astrace__Pb__EventName **entry_ptr, int *used) {
    *used = 0;
    const char *s;
    int len = seg_string(p->seg, id, &s);
    if (len < 0) return IID_CALLBACK;
    uint64_t bit = ((uint64_t)id - 1) / 4;
    if (bit >= p->interned_bits) return IID_CALLBACK;
    uint64_t iid = (uint64_t)id + ENC_IID_STRINGS;
    if (p->interned[bit / 8] & (1u << (bit % 8))) return iid;
    static char text[4097];
    memcpy(text, s, (size_t)len);
    text[len] = 0;
    astrace__pb__interned_data__init(idata);
    astrace__pb__event_name__init(entry);
    entry->has_iid = 1;
    entry->iid = iid;
    entry->name = text;
    *entry_ptr = entry;
    idata->n_event_names = 1;
    idata->event_names = entry_ptr;
    p->interned[bit / 8] |= (uint8_t)(1u << (bit % 8));
    *used = 1;
    return iid;
}

void encoder_record(struct enc_process *p, uint32_t ring_index, uint32_t gen, int64_t tid, const char *thread_name,
                    const struct astrace_rec_hdr *rec) {
    if (ring_index >= p->nthreads) return;
    struct enc_thread *t = &p->threads[ring_index];
    struct encoder *e = p->enc;
    uint64_t ts = rec->ts;
    if (t->generation != gen) {
        /* A new thread took this ring: close the old one's track first. */
        while (t->depth > 0) end_top(p, t, t->last_ts, 1);
        memset(t, 0, sizeof *t);
        t->generation = gen;
        t->tid = tid;
        t->uuid = e->next_uuid++;
        snprintf(t->name, sizeof t->name, "%s", thread_name ? thread_name : "");
    }
    p->records++;
    if (ts > t->last_ts) t->last_ts = ts;
    if (ts > p->last_ts) p->last_ts = ts;
    if (ts > e->last_ts) e->last_ts = ts;
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
    int has_arg = rec->size >= sizeof *ra;
    int64_t a0 = has_arg ? ra->a0 : 0;
    Astrace__Pb__DebugAnnotation a[2];
    Astrace__Pb__DebugAnnotation *ap[2] = {&a[0], &a[1]};
    switch (rec->type) {
    case ASTRACE_REC_LOOP_BEGIN: begin_slice(p, t, ts, SK_LOOP, IID_LOOP, NULL, 0, NULL); break;
    case ASTRACE_REC_LOOP_END:
        if (a0) ann_bool(&a[0], ANN_RAISED, 1);
        end_slice(p, t, ts, SK_LOOP, a0 ? ap : NULL, a0 ? 1 : 0);
        break;
    case ASTRACE_REC_POLL_BEGIN:
        if (a0 >= 0)
            ann_double(&a[0], ANN_TIMEOUT_MS, (double)a0 / 1e6);
        else
            ann_int(&a[0], ANN_TIMEOUT_MS, -1);
        begin_slice(p, t, ts, SK_SELECT, IID_SELECT, ap, 1, NULL);
        break;
    case ASTRACE_REC_POLL_END:
        if (a0 >= 0)
            ann_uint(&a[0], ANN_READY_EVENTS, (uint64_t)a0);
        else
            ann_bool(&a[0], ANN_RAISED, 1);
        end_slice(p, t, ts, SK_SELECT, ap, 1);
        break;
    case ASTRACE_REC_CALLBACK_BEGIN: {
        Astrace__Pb__InternedData idata;
        Astrace__Pb__EventName entry, *entry_ptr;
        int used;
        uint64_t iid = intern_name(p, rec->str0, &idata, &entry, &entry_ptr, &used);
        begin_slice(p, t, ts, SK_CALLBACK, iid, NULL, 0, used ? &idata : NULL);
        break;
    }
    case ASTRACE_REC_CALLBACK_END:
        if (a0) ann_bool(&a[0], ANN_RAISED, 1);
        end_slice(p, t, ts, SK_CALLBACK, a0 ? ap : NULL, a0 ? 1 : 0);
        break;
    default: break; /* a newer runtime's record: skipped */
    }
}

void encoder_end_process(struct enc_process *p, const char *how_ended, uint64_t dropped_records) {
    for (uint32_t i = 0; i < p->nthreads; i++) {
        struct enc_thread *t = &p->threads[i];
        while (t->depth > 0) end_top(p, t, t->last_ts, 1);
    }
    Astrace__Pb__DebugAnnotation a[3];
    Astrace__Pb__DebugAnnotation *ap[3] = {&a[0], &a[1], &a[2]};
    ann_named_str(&a[0], "ended", how_ended);
    ann_named_uint(&a[1], "events", p->records);
    ann_named_uint(&a[2], "events_dropped", dropped_records);
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT;
    ev.has_track_uuid = 1;
    ev.track_uuid = p->process_uuid;
    ev.has_name_iid = 1;
    ev.name_iid = IID_PROCESS_END;
    ev.n_debug_annotations = 3;
    ev.debug_annotations = ap;
    Astrace__Pb__TracePacket pk;
    packet_init(&pk, p->seq_id, p->last_ts);
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    pk.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    pk.track_event = &ev;
    trace_file_write(p->enc->tf, &pk);
    free(p->threads);
    free(p->interned);
    free(p);
}
