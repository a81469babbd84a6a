/* Implementation of trace_reader.h. */
#include "trace_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "astrace_perfetto.pb-c.h"
#include "common/u64map.h"
#include "common/util.h"

/* Largest expansion accepted for one compressed bundle. Perfetto keeps
 * bundle input far below this; anything bigger is corrupt or hostile. */
#define MAX_BUNDLE_EXPANSION (64u << 20)
/* Bounds on what one sample resolves to: the innermost frames of a deeper
 * callstack, the first components of a longer mapping path. */
#define MAX_CALLSTACK_FRAMES 4096
#define MAX_MAPPING_COMPONENTS 256
#define MAX_MAPPING_PATH 4096
/* Compact the interned table when this many entries belong to cleared
 * generations (and they are at least half of it). */
#define STALE_COMPACT_MIN 4096

/* ---- u64 -> index maps (common/u64map.h, indices stored + 1) --------------- */

static size_t index_get(const struct u64map *m, uint64_t key) {
    void *v = u64map_get(m, key);
    return v ? (size_t)(uintptr_t)v - 1 : (size_t)-1;
}

static void index_put(struct u64map *m, uint64_t key, size_t index) {
    u64map_put(m, key, (void *)(uintptr_t)(index + 1));
}

/* ---- sequences ------------------------------------------------------------- */

/* Per trusted_packet_sequence_id: the generation of its incremental state
 * (bumped by SEQ_INCREMENTAL_STATE_CLEARED), its default track, and how many
 * interned entries its current generation holds. */
struct seq_state {
    uint32_t seq, gen;
    uint64_t default_track;
    size_t live;
};

/* ---- interned data: (sequence, generation, field, iid) -> bytes ------------ */

enum {
    F_EVENT_NAME = 1,
    F_ANN_NAME,
    F_ANN_STRING,
    F_FUNCTION_NAME,
    F_MAPPING_PATH,
    F_FRAME,     /* u64[3]: function_name_id (0 = none), mapping_id, has_mapping */
    F_CALLSTACK, /* u64[n]: frame ids, outermost first */
    F_MAPPING,   /* u64[n]: path string ids */
};

/* Texts and blobs live in an arena of chunks (they never move, and cost no
 * malloc each), as [uint32 length][bytes][NUL]. The table's slots are 24
 * bytes: a trace of 500k tasks interns about a million names. */
struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    uint8_t data[];
};
#define ARENA_CHUNK (256u << 10)

static const uint8_t *arena_put(struct arena_chunk **head, const void *data, size_t len) {
    size_t need = 4 + len + 1;
    struct arena_chunk *c = *head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        c = xmalloc(sizeof *c + cap);
        c->used = 0;
        c->cap = cap;
        c->next = *head;
        *head = c;
    }
    uint8_t *e = c->data + c->used;
    uint32_t l32 = (uint32_t)len;
    memcpy(e, &l32, 4);
    if (len) memcpy(e + 4, data, len);
    e[4 + len] = 0;
    c->used += need;
    return e;
}

static void arena_free(struct arena_chunk *c) {
    while (c) {
        struct arena_chunk *n = c->next;
        free(c);
        c = n;
    }
}

/* A value read back: bytes and their length (data NULL if undefined). */
struct blob {
    const uint8_t *data;
    size_t len;
};

#define GEN_MASK 0x0fffffffu
struct iid_slot {
    uint64_t iid;
    uint32_t seq;
    uint32_t genf;        /* generation (28 bits) << 4 | field */
    const uint8_t *entry; /* in the arena; NULL = empty slot */
};
struct interned {
    struct iid_slot *slots;
    size_t cap, used, stale;
    struct arena_chunk *arena;
};

static uint64_t key_hash(uint32_t seq, uint32_t genf, uint64_t iid) {
    return hash_u64(iid ^ hash_u64(((uint64_t)seq << 32) ^ genf));
}

static uint32_t genf_of(const struct seq_state *ss, uint32_t field) {
    return (ss->gen & GEN_MASK) << 4 | field;
}

/* Grows the table, or (seqs given) rebuilds it without the entries of
 * cleared generations, copying the live ones to a new arena. */
static void interned_rehash(struct interned *in, size_t ncap, const struct u64map *seqidx,
                            const struct seq_state *seqs) {
    struct iid_slot *ns = xcalloc(ncap, sizeof *ns);
    struct arena_chunk *narena = NULL;
    size_t used = 0;
    for (size_t i = 0; i < in->cap; i++) {
        struct iid_slot s = in->slots[i];
        if (!s.entry) continue;
        if (seqs) {
            size_t si = index_get(seqidx, s.seq);
            if (si == (size_t)-1 || (seqs[si].gen & GEN_MASK) != s.genf >> 4) continue;
            uint32_t len;
            memcpy(&len, s.entry, 4);
            s.entry = arena_put(&narena, s.entry + 4, len);
        }
        size_t j = key_hash(s.seq, s.genf, s.iid) & (ncap - 1);
        while (ns[j].entry) j = (j + 1) & (ncap - 1);
        ns[j] = s;
        used++;
    }
    free(in->slots);
    in->slots = ns;
    in->cap = ncap;
    in->used = used;
    if (seqs) {
        arena_free(in->arena);
        in->arena = narena;
        in->stale = 0;
    }
}

static struct iid_slot *interned_find(const struct interned *in, uint32_t seq, uint32_t genf, uint64_t iid) {
    if (!in->cap) return NULL;
    size_t j = key_hash(seq, genf, iid) & (in->cap - 1);
    while (in->slots[j].entry) {
        const struct iid_slot *s = &in->slots[j];
        if (s->iid == iid && s->seq == seq && s->genf == genf) return &in->slots[j];
        j = (j + 1) & (in->cap - 1);
    }
    return NULL;
}

/* Binds (seq, field, iid) in the sequence's current generation to a copy of
 * `len` bytes (plus a NUL). Rebinding: the last one wins. */
static void interned_put(struct interned *in, struct seq_state *ss, uint32_t field, uint64_t iid, const void *data,
                         size_t len) {
    if ((in->used + 1) * 10 > in->cap * 7) interned_rehash(in, in->cap ? in->cap * 2 : 1024, NULL, NULL);
    uint32_t genf = genf_of(ss, field);
    struct iid_slot *s = interned_find(in, ss->seq, genf, iid);
    if (!s) {
        size_t j = key_hash(ss->seq, genf, iid) & (in->cap - 1);
        while (in->slots[j].entry) j = (j + 1) & (in->cap - 1);
        s = &in->slots[j];
        s->iid = iid;
        s->seq = ss->seq;
        s->genf = genf;
        in->used++;
        ss->live++;
    }
    s->entry = arena_put(&in->arena, data, len);
}

static struct blob interned_get(const struct interned *in, const struct seq_state *ss, uint32_t field, uint64_t iid) {
    struct blob b = {NULL, 0};
    const struct iid_slot *s = interned_find(in, ss->seq, genf_of(ss, field), iid);
    if (s) {
        uint32_t len;
        memcpy(&len, s->entry, 4);
        b.data = s->entry + 4;
        b.len = len;
    }
    return b;
}

static const char *interned_text(const struct interned *in, const struct seq_state *ss, uint32_t field, uint64_t iid) {
    return (const char *)interned_get(in, ss, field, iid).data;
}

static void interned_free(struct interned *in) {
    free(in->slots);
    arena_free(in->arena);
    memset(in, 0, sizeof *in);
}

/* protobuf-c's allocations for one packet come from a bump arena that is
 * reset after the packet (one per nesting level: a bundle's packets are
 * unpacked while the bundle is). Saves a malloc and a free per field. */
struct pb_arena {
    struct arena_chunk *chunks; /* head = the chunk being filled */
};

static void *pb_alloc(void *data, size_t size) {
    struct pb_arena *a = data;
    size = (size + 15) & ~(size_t)15;
    struct arena_chunk *c = a->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        c = xmalloc(sizeof *c + cap + 16);
        c->used = (16 - ((uintptr_t)c->data & 15)) & 15; /* 16-aligned allocations */
        c->cap = cap + c->used;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

static void pb_free(void *data, void *pointer) {
    (void)data, (void)pointer; /* all at once, in pb_reset */
}

/* Keeps one ordinary chunk for the next packet, frees the rest. */
static void pb_reset(struct pb_arena *a) {
    struct arena_chunk *keep = NULL, *c = a->chunks;
    while (c) {
        struct arena_chunk *n = c->next;
        if (!keep && c->cap <= ARENA_CHUNK + 16) {
            keep = c;
            keep->next = NULL;
            keep->used = (16 - ((uintptr_t)keep->data & 15)) & 15;
        } else {
            free(c);
        }
        c = n;
    }
    a->chunks = keep;
}

/* ---- reader state ------------------------------------------------------------ */

struct rtrack {
    struct trace_track t;
    struct trace_slice *open; /* open slices, outermost first */
    size_t nopen, capopen;
};

struct reader {
    const struct trace_visitor *v;
    void *ctx;
    int handoff; /* the visitor keeps slices' and instants' memory (the model) */
    struct trace_stats st;
    struct interned in;
    struct seq_state *seqs;
    size_t nseqs, capseqs;
    struct u64map seqidx;
    struct rtrack *tracks;
    size_t ntracks, captracks;
    struct u64map trackidx;
    uint64_t next_ordinal;
    struct buf bundle; /* the compressed bundle being read, expanded */
    struct trace_frame *frames;
    size_t capframes;
    struct buf paths;      /* mapping paths of the sample being resolved */
    struct pb_arena pb[2]; /* per nesting depth */
    char *err;
    size_t errlen;
    int depth;
};

static void seterr(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
}

static struct seq_state *seq_of(struct reader *r, uint32_t seq) {
    size_t i = index_get(&r->seqidx, seq);
    if (i != (size_t)-1) return &r->seqs[i];
    if (r->nseqs == r->capseqs) {
        r->capseqs = r->capseqs ? r->capseqs * 2 : 16;
        r->seqs = xrealloc(r->seqs, r->capseqs * sizeof *r->seqs);
    }
    struct seq_state *ss = &r->seqs[r->nseqs];
    memset(ss, 0, sizeof *ss);
    ss->seq = seq;
    index_put(&r->seqidx, seq, r->nseqs);
    return &r->seqs[r->nseqs++];
}

static void clear_incremental_state(struct reader *r, struct seq_state *ss) {
    ss->gen++;
    ss->default_track = 0;
    r->in.stale += ss->live;
    ss->live = 0;
    if (r->in.stale >= STALE_COMPACT_MIN && r->in.stale * 2 >= r->in.used) {
        size_t cap = 1024;
        while (cap < (r->in.used - r->in.stale + 1) * 2) cap *= 2;
        interned_rehash(&r->in, cap, &r->seqidx, r->seqs);
    }
}

/* ---- tracks ------------------------------------------------------------------ */

static size_t get_track(struct reader *r, uint64_t uuid) {
    size_t idx = index_get(&r->trackidx, uuid);
    if (idx != (size_t)-1) return idx;
    if (r->ntracks == r->captracks) {
        r->captracks = r->captracks ? r->captracks * 2 : 64;
        r->tracks = xrealloc(r->tracks, r->captracks * sizeof *r->tracks);
    }
    struct rtrack *t = &r->tracks[r->ntracks];
    memset(t, 0, sizeof *t);
    t->t.uuid = uuid;
    index_put(&r->trackidx, uuid, r->ntracks);
    idx = r->ntracks++;
    if (r->v->track) r->v->track(r->ctx, idx, &t->t);
    return idx;
}

static void set_str(char **dst, const char *src) {
    if (!src) return;
    free(*dst);
    *dst = xstrdup(src);
}

static void on_track_descriptor(struct reader *r, const Astrace__Pb__TrackDescriptor *td) {
    if (!td->has_uuid) return;
    size_t ti = get_track(r, td->uuid); /* may move r->tracks */
    struct trace_track *t = &r->tracks[ti].t;
    if (td->has_parent_uuid) t->parent_uuid = td->parent_uuid;
    if (td->name) set_str(&t->name, td->name);
    if (td->process) {
        t->kind = TRACK_PROCESS;
        if (td->process->has_pid) t->pid = td->process->pid;
        if (td->process->process_name) set_str(&t->name, td->process->process_name);
        if (td->process->n_cmdline) {
            for (size_t i = 0; i < t->ncmdline; i++) free(t->cmdline[i]);
            free(t->cmdline);
            t->cmdline = xcalloc(td->process->n_cmdline, sizeof *t->cmdline);
            for (size_t i = 0; i < td->process->n_cmdline; i++) t->cmdline[i] = xstrdup(td->process->cmdline[i]);
            t->ncmdline = td->process->n_cmdline;
        }
    }
    if (td->thread) {
        t->kind = TRACK_THREAD;
        if (td->thread->has_pid) t->pid = td->thread->pid;
        if (td->thread->has_tid) t->tid = td->thread->tid;
        if (td->thread->thread_name) set_str(&t->name, td->thread->thread_name);
    }
    if (td->counter) t->kind = TRACK_COUNTER;
    if (r->v->track) r->v->track(r->ctx, ti, t);
}

static void free_track(struct trace_track *t) {
    free(t->name);
    for (size_t j = 0; j < t->ncmdline; j++) free(t->cmdline[j]);
    free(t->cmdline);
}

/* ---- events ------------------------------------------------------------------ */

static void convert_args(struct reader *r, const struct seq_state *ss, Astrace__Pb__DebugAnnotation **in, size_t n,
                         struct trace_args *out) {
    if (!n) return;
    out->items = xrealloc(out->items, (out->n + n) * sizeof *out->items);
    for (size_t i = 0; i < n; i++) {
        const Astrace__Pb__DebugAnnotation *a = in[i];
        const char *name = a->name;
        if (!name && a->has_name_iid) name = interned_text(&r->in, ss, F_ANN_NAME, a->name_iid);
        if (!name) {
            r->st.unknown_iids += a->has_name_iid;
            name = "?";
        }
        struct trace_arg *o = &out->items[out->n++];
        o->name = xstrdup(name);
        if (a->has_bool_value) {
            o->type = ARG_BOOL;
            o->v.i = a->bool_value;
        } else if (a->has_uint_value) {
            o->type = ARG_UINT;
            o->v.u = a->uint_value;
        } else if (a->has_int_value) {
            o->type = ARG_INT;
            o->v.i = a->int_value;
        } else if (a->has_double_value) {
            o->type = ARG_DOUBLE;
            o->v.d = a->double_value;
        } else {
            const char *s = a->string_value;
            if (!s && a->has_string_value_iid) s = interned_text(&r->in, ss, F_ANN_STRING, a->string_value_iid);
            o->type = ARG_STRING;
            o->v.s = xstrdup(s ? s : "");
        }
    }
}

static void free_args(struct trace_args *a) {
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].name);
        if (a->items[i].type == ARG_STRING) free(a->items[i].v.s);
    }
    free(a->items);
    a->items = NULL;
    a->n = 0;
}

static void add_flows(struct trace_flows *f, const Astrace__Pb__TrackEvent *ev) {
    if (ev->n_flow_ids) {
        f->out = xrealloc(f->out, (f->nout + ev->n_flow_ids) * sizeof *f->out);
        memcpy(f->out + f->nout, ev->flow_ids, ev->n_flow_ids * sizeof *f->out);
        f->nout += ev->n_flow_ids;
    }
    if (ev->n_terminating_flow_ids) {
        f->in = xrealloc(f->in, (f->nin + ev->n_terminating_flow_ids) * sizeof *f->in);
        memcpy(f->in + f->nin, ev->terminating_flow_ids, ev->n_terminating_flow_ids * sizeof *f->in);
        f->nin += ev->n_terminating_flow_ids;
    }
}

static void free_flows(struct trace_flows *f) {
    free(f->out);
    free(f->in);
    memset(f, 0, sizeof *f);
}

static void free_slice(struct trace_slice *s) {
    free(s->name);
    free_args(&s->args);
    free_flows(&s->flows);
}

static void emit_counter(struct reader *r, size_t track, uint64_t ts, double value) {
    if (!r->v->counter) return;
    struct trace_counter c = {track, ts, value};
    r->v->counter(r->ctx, &c, &r->tracks[track].t);
}

/* Pops the innermost open slice of track `ti` and hands it to the visitor. */
static void deliver_top(struct reader *r, size_t ti) {
    struct rtrack *t = &r->tracks[ti];
    struct trace_slice s = t->open[--t->nopen];
    if (r->v->slice) r->v->slice(r->ctx, &s, &t->t, t->open, t->nopen);
    if (!r->handoff || !r->v->slice) free_slice(&s);
}

static void on_track_event(struct reader *r, const struct seq_state *ss, uint64_t ts,
                           const Astrace__Pb__TrackEvent *ev) {
    /* Counter values riding on any event (TrackEvent.extra_counter_*). */
    size_t nextra = ev->n_extra_counter_track_uuids < ev->n_extra_counter_values ? ev->n_extra_counter_track_uuids
                                                                                 : ev->n_extra_counter_values;
    for (size_t i = 0; i < nextra; i++)
        emit_counter(r, get_track(r, ev->extra_counter_track_uuids[i]), ts, (double)ev->extra_counter_values[i]);
    uint64_t uuid = ev->has_track_uuid ? ev->track_uuid : ss->default_track;
    size_t ti = get_track(r, uuid);
    const char *name = ev->name;
    if (!name && ev->has_name_iid) {
        name = interned_text(&r->in, ss, F_EVENT_NAME, ev->name_iid);
        if (!name) r->st.unknown_iids++;
    }
    int type = ev->has_type ? ev->type : 0;
    if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN) {
        struct rtrack *t = &r->tracks[ti];
        if (t->nopen == t->capopen) {
            t->capopen = t->capopen ? t->capopen * 2 : 8;
            t->open = xrealloc(t->open, t->capopen * sizeof *t->open);
        }
        struct trace_slice *s = &t->open[t->nopen];
        memset(s, 0, sizeof *s);
        s->track = ti;
        s->ts = ts;
        s->dur = -1;
        s->name = xstrdup(name ? name : "");
        s->depth = (uint32_t)t->nopen;
        s->ordinal = r->next_ordinal++;
        convert_args(r, ss, ev->debug_annotations, ev->n_debug_annotations, &s->args);
        add_flows(&s->flows, ev);
        t->nopen++;
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END) {
        struct rtrack *t = &r->tracks[ti];
        if (!t->nopen) {
            r->st.unmatched_ends++;
            return;
        }
        struct trace_slice *s = &t->open[t->nopen - 1];
        s->dur = ts >= s->ts ? (int64_t)(ts - s->ts) : 0;
        convert_args(r, ss, ev->debug_annotations, ev->n_debug_annotations, &s->args);
        add_flows(&s->flows, ev);
        deliver_top(r, ti);
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_COUNTER) {
        if (!ev->has_counter_value && !ev->has_double_counter_value) return;
        emit_counter(r, ti, ts, ev->has_double_counter_value ? ev->double_counter_value : (double)ev->counter_value);
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT) {
        struct trace_instant in;
        memset(&in, 0, sizeof in);
        in.track = ti;
        in.ts = ts;
        in.name = xstrdup(name ? name : "");
        convert_args(r, ss, ev->debug_annotations, ev->n_debug_annotations, &in.args);
        add_flows(&in.flows, ev);
        if (r->v->instant) r->v->instant(r->ctx, &in, &r->tracks[ti].t);
        if (!r->handoff || !r->v->instant) {
            free(in.name);
            free_args(&in.args);
            free_flows(&in.flows);
        }
    }
}

/* ---- samples ------------------------------------------------------------------- */

static void on_interned_data(struct reader *r, struct seq_state *ss, const Astrace__Pb__InternedData *id) {
    for (size_t i = 0; i < id->n_event_names; i++)
        if (id->event_names[i]->name)
            interned_put(&r->in, ss, F_EVENT_NAME, id->event_names[i]->iid, id->event_names[i]->name,
                         strlen(id->event_names[i]->name));
    for (size_t i = 0; i < id->n_debug_annotation_names; i++)
        if (id->debug_annotation_names[i]->name)
            interned_put(&r->in, ss, F_ANN_NAME, id->debug_annotation_names[i]->iid,
                         id->debug_annotation_names[i]->name, strlen(id->debug_annotation_names[i]->name));
    for (size_t i = 0; i < id->n_debug_annotation_string_values; i++)
        interned_put(&r->in, ss, F_ANN_STRING, id->debug_annotation_string_values[i]->iid,
                     id->debug_annotation_string_values[i]->str.data, id->debug_annotation_string_values[i]->str.len);
    for (size_t i = 0; i < id->n_function_names; i++)
        interned_put(&r->in, ss, F_FUNCTION_NAME, id->function_names[i]->iid, id->function_names[i]->str.data,
                     id->function_names[i]->str.len);
    for (size_t i = 0; i < id->n_mapping_paths; i++)
        interned_put(&r->in, ss, F_MAPPING_PATH, id->mapping_paths[i]->iid, id->mapping_paths[i]->str.data,
                     id->mapping_paths[i]->str.len);
    for (size_t i = 0; i < id->n_frames; i++) {
        const Astrace__Pb__Frame *f = id->frames[i];
        uint64_t v[3] = {f->has_function_name_id ? f->function_name_id : 0, f->mapping_id, f->has_mapping_id};
        interned_put(&r->in, ss, F_FRAME, f->iid, v, sizeof v);
    }
    for (size_t i = 0; i < id->n_callstacks; i++) {
        const Astrace__Pb__Callstack *c = id->callstacks[i];
        size_t n = c->n_frame_ids, skip = n > MAX_CALLSTACK_FRAMES ? n - MAX_CALLSTACK_FRAMES : 0;
        interned_put(&r->in, ss, F_CALLSTACK, c->iid, n ? c->frame_ids + skip : NULL, (n - skip) * sizeof(uint64_t));
    }
    for (size_t i = 0; i < id->n_mappings; i++) {
        const Astrace__Pb__Mapping *mp = id->mappings[i];
        size_t n = mp->n_path_string_ids < MAX_MAPPING_COMPONENTS ? mp->n_path_string_ids : MAX_MAPPING_COMPONENTS;
        interned_put(&r->in, ss, F_MAPPING, mp->iid, mp->path_string_ids, n * sizeof(uint64_t));
    }
}

/* Appends the mapping's path to r->paths (Perfetto's rule: "/" before each
 * component, except for one component that is already absolute). Returns
 * the offset of the NUL-terminated path, or (size_t)-1 if the mapping is
 * undefined. */
static size_t mapping_path(struct reader *r, const struct seq_state *ss, uint64_t mapping_iid) {
    struct blob mp = interned_get(&r->in, ss, F_MAPPING, mapping_iid);
    if (!mp.data) {
        r->st.unknown_iids++;
        return (size_t)-1;
    }
    size_t n = mp.len / sizeof(uint64_t), start = r->paths.len;
    for (size_t i = 0; i < n; i++) {
        uint64_t sid;
        memcpy(&sid, mp.data + i * sizeof sid, sizeof sid);
        struct blob s = interned_get(&r->in, ss, F_MAPPING_PATH, sid);
        if (!s.data) { /* as Perfetto: the path stops at an undefined component */
            r->st.unknown_iids++;
            break;
        }
        size_t len = strlen((const char *)s.data);
        if (r->paths.len - start + len + 1 > MAX_MAPPING_PATH) break;
        if (!(n == 1 && s.data[0] == '/')) buf_append(&r->paths, "/", 1);
        buf_append(&r->paths, s.data, len);
    }
    buf_append(&r->paths, "", 1);
    return start;
}

static void on_perf_sample(struct reader *r, const struct seq_state *ss, uint64_t ts,
                           const Astrace__Pb__PerfSample *ps) {
    struct trace_sample smp;
    memset(&smp, 0, sizeof smp);
    smp.ts = ts;
    smp.pid = ps->pid;
    smp.tid = ps->tid;
    smp.callstack_iid = ps->callstack_iid;
    struct blob cs = {NULL, 0};
    if (ps->has_callstack_iid) cs = interned_get(&r->in, ss, F_CALLSTACK, ps->callstack_iid);
    if (ps->has_callstack_iid && !cs.data) r->st.unknown_iids++;
    if (!cs.data) {
        if (r->v->sample) r->v->sample(r->ctx, &smp);
        return;
    }
    size_t n = cs.len / sizeof(uint64_t);
    if (n > r->capframes) {
        r->capframes = n;
        r->frames = xrealloc(r->frames, r->capframes * sizeof *r->frames);
    }
    r->paths.len = 0;
    size_t *path_at = n ? xmalloc(n * sizeof *path_at) : NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t fid;
        memcpy(&fid, cs.data + i * sizeof fid, sizeof fid);
        struct blob fr = interned_get(&r->in, ss, F_FRAME, fid);
        const char *fn = NULL;
        path_at[i] = (size_t)-1;
        if (fr.len != 3 * sizeof(uint64_t)) {
            r->st.unknown_iids++;
        } else {
            uint64_t v[3];
            memcpy(v, fr.data, sizeof v);
            if (v[0]) {
                fn = interned_text(&r->in, ss, F_FUNCTION_NAME, v[0]);
                if (!fn) r->st.unknown_iids++;
            }
            if (v[2]) path_at[i] = mapping_path(r, ss, v[1]);
        }
        r->frames[i].function = (char *)(fn ? fn : "?");
        r->frames[i].mapping = NULL;
    }
    for (size_t i = 0; i < n; i++) /* r->paths is complete: it moves no more */
        if (path_at[i] != (size_t)-1 && r->paths.data[path_at[i]])
            r->frames[i].mapping = (char *)r->paths.data + path_at[i];
    free(path_at);
    smp.frames = r->frames;
    smp.nframes = n;
    smp.resolved = 1;
    if (r->v->sample) r->v->sample(r->ctx, &smp);
}

/* ---- packets ------------------------------------------------------------------- */

static int read_packets(struct reader *r, const uint8_t *data, size_t len, uint64_t base_offset);

static int expand_bundle(struct reader *r, const uint8_t *p, size_t n, int zstd, uint64_t off) {
    if (r->depth > 0) {
        seterr(r, "compressed bundle inside a compressed bundle at offset %llu", (unsigned long long)off);
        return -1;
    }
    struct buf *out = &r->bundle;
    out->len = 0;
    if (zstd) {
        ZSTD_DStream *ds = ZSTD_createDStream();
        ZSTD_initDStream(ds);
        ZSTD_inBuffer in = {p, n, 0};
        size_t rc = 1;
        while (in.pos < in.size || rc != 0) {
            buf_reserve(out, 1 << 17);
            ZSTD_outBuffer ob = {out->data + out->len, out->cap - out->len, 0};
            rc = ZSTD_decompressStream(ds, &ob, &in);
            out->len += ob.pos;
            if (ZSTD_isError(rc)) {
                seterr(r, "corrupt zstd bundle at offset %llu: %s", (unsigned long long)off, ZSTD_getErrorName(rc));
                ZSTD_freeDStream(ds);
                return -1;
            }
            if (out->len > MAX_BUNDLE_EXPANSION) {
                seterr(r, "zstd bundle at offset %llu expands beyond %u MiB", (unsigned long long)off,
                       MAX_BUNDLE_EXPANSION >> 20);
                ZSTD_freeDStream(ds);
                return -1;
            }
            if (in.pos == in.size && ob.pos == 0 && rc != 0) {
                seterr(r, "truncated zstd bundle at offset %llu", (unsigned long long)off);
                ZSTD_freeDStream(ds);
                return -1;
            }
        }
        ZSTD_freeDStream(ds);
        r->st.bundles_zstd++;
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit(&zs) != Z_OK) {
            seterr(r, "zlib init failed");
            return -1;
        }
        zs.next_in = (Bytef *)p;
        zs.avail_in = (uInt)n;
        int rc;
        do {
            buf_reserve(out, 1 << 17);
            zs.next_out = out->data + out->len;
            zs.avail_out = (uInt)(out->cap - out->len);
            rc = inflate(&zs, Z_NO_FLUSH);
            out->len = out->cap - zs.avail_out;
            if (rc != Z_OK && rc != Z_STREAM_END) {
                seterr(r, "corrupt deflate bundle at offset %llu%s", (unsigned long long)off,
                       rc == Z_BUF_ERROR ? " (truncated)" : "");
                inflateEnd(&zs);
                return -1;
            }
            if (out->len > MAX_BUNDLE_EXPANSION) {
                seterr(r, "deflate bundle at offset %llu expands beyond %u MiB", (unsigned long long)off,
                       MAX_BUNDLE_EXPANSION >> 20);
                inflateEnd(&zs);
                return -1;
            }
        } while (rc != Z_STREAM_END);
        inflateEnd(&zs);
        r->st.bundles_zlib++;
    }
    r->depth++;
    int rc = read_packets(r, out->data, out->len, off);
    r->depth--;
    return rc;
}

static int on_packet(struct reader *r, const Astrace__Pb__TracePacket *pk, uint64_t off) {
    r->st.packets++;
    if (pk->data_case == ASTRACE__PB__TRACE_PACKET__DATA_ZSTD_COMPRESSED_PACKETS)
        return expand_bundle(r, pk->zstd_compressed_packets.data, pk->zstd_compressed_packets.len, 1, off);
    if (pk->data_case == ASTRACE__PB__TRACE_PACKET__DATA_COMPRESSED_PACKETS)
        return expand_bundle(r, pk->compressed_packets.data, pk->compressed_packets.len, 0, off);
    struct seq_state *ss = seq_of(r, pk->has_trusted_packet_sequence_id ? pk->trusted_packet_sequence_id : 0);
    if (pk->has_sequence_flags && (pk->sequence_flags & ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED))
        clear_incremental_state(r, ss);
    if (pk->trace_packet_defaults && pk->trace_packet_defaults->track_event_defaults &&
        pk->trace_packet_defaults->track_event_defaults->has_track_uuid)
        ss->default_track = pk->trace_packet_defaults->track_event_defaults->track_uuid;
    if (pk->interned_data) on_interned_data(r, ss, pk->interned_data);
    uint64_t ts = pk->has_timestamp ? pk->timestamp : 0;
    if (pk->has_timestamp && pk->data_case != ASTRACE__PB__TRACE_PACKET__DATA_CLOCK_SNAPSHOT) {
        if (!r->st.first_ts || ts < r->st.first_ts) r->st.first_ts = ts;
        if (ts > r->st.last_ts) r->st.last_ts = ts;
    }
    switch (pk->data_case) {
    case ASTRACE__PB__TRACE_PACKET__DATA_CLOCK_SNAPSHOT: r->st.clock_snapshots++; break;
    case ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR: on_track_descriptor(r, pk->track_descriptor); break;
    case ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT: on_track_event(r, ss, ts, pk->track_event); break;
    case ASTRACE__PB__TRACE_PACKET__DATA_PERF_SAMPLE: on_perf_sample(r, ss, ts, pk->perf_sample); break;
    default: break;
    }
    return 0;
}

/* Under AddressSanitizer, plain malloc: each field its own allocation, so
 * that an overflow shows (the fuzz build). */
#if defined(__SANITIZE_ADDRESS__)
#define PB_ARENA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PB_ARENA 0
#endif
#endif
#ifndef PB_ARENA
#define PB_ARENA 1
#endif

static int unpack_packet(struct reader *r, const uint8_t *p, size_t len, uint64_t off) {
    struct pb_arena *arena = &r->pb[r->depth ? 1 : 0];
    ProtobufCAllocator alloc = {pb_alloc, pb_free, arena};
    Astrace__Pb__TracePacket *pk = astrace__pb__trace_packet__unpack(PB_ARENA ? &alloc : NULL, len, p);
    int rc;
    if (!pk) {
        seterr(r, "malformed packet at offset %llu%s", (unsigned long long)off,
               r->depth ? " inside a compressed bundle" : "");
        rc = -1;
    } else {
        rc = on_packet(r, pk, off);
    }
    if (PB_ARENA)
        pb_reset(arena); /* frees pk */
    else if (pk)
        astrace__pb__trace_packet__free_unpacked(pk, NULL);
    return rc;
}

/* Reads the framing of one `packet = 1` record at data[0..avail): returns the
 * header length (tag + varint) and the payload length in *plen, or 0 after
 * setting the error. `remain` is how many bytes follow the record's start in
 * the whole stream (avail may be less when reading a file in chunks). */
static size_t packet_header(struct reader *r, const uint8_t *data, size_t avail, uint64_t remain, uint64_t off,
                            uint64_t *plen) {
    if (data[0] != 0x0A) {
        seterr(r, "not a Perfetto protobuf trace: unexpected byte 0x%02x at offset %llu%s", data[0],
               (unsigned long long)off, r->depth ? " inside a compressed bundle" : "");
        return 0;
    }
    size_t vl = varint_get(data + 1, avail - 1, plen);
    if (!vl) {
        seterr(r, "truncated trace: packet length cut off at offset %llu", (unsigned long long)off);
        return 0;
    }
    if (*plen > remain - 1 - vl) {
        seterr(r, "truncated trace: packet at offset %llu needs %llu bytes, %llu remain%s", (unsigned long long)off,
               (unsigned long long)*plen, (unsigned long long)(remain - 1 - vl), r->depth ? " in its bundle" : "");
        return 0;
    }
    return 1 + vl;
}

/* A stream in memory is a serialized Trace: repeated `packet = 1` records. */
static int read_packets(struct reader *r, const uint8_t *data, size_t len, uint64_t base_offset) {
    size_t pos = 0;
    while (pos < len) {
        uint64_t off = base_offset + (r->depth ? 0 : pos), plen;
        size_t hl = packet_header(r, data + pos, len - pos, len - pos, off, &plen);
        if (!hl) return -1;
        if (unpack_packet(r, data + pos + hl, (size_t)plen, off)) return -1;
        pos += hl + (size_t)plen;
    }
    return 0;
}

/* The same from a file, read sequentially in chunks: memory holds one
 * top-level packet (a bundle) at a time, never the whole file. */
struct file_in {
    int fd;
    const char *path;
    uint64_t size, off; /* file size; file offset of data[start] */
    struct buf b;       /* b.data[start..b.len): read, not yet consumed */
    size_t start;
};

/* Makes at least n unconsumed bytes available (n never exceeds what the file
 * holds past `off`). */
static int file_fill(struct reader *r, struct file_in *f, size_t n) {
    if (f->b.len - f->start >= n) return 0;
    if (f->start) { /* slide the unread bytes to the front */
        memmove(f->b.data, f->b.data + f->start, f->b.len - f->start);
        f->b.len -= f->start;
        f->start = 0;
    }
    buf_reserve(&f->b, n - f->b.len > (1u << 20) ? n - f->b.len : (1u << 20));
    while (f->b.len < n) {
        size_t room = f->b.cap - f->b.len;
        uint64_t left = f->size - f->off - f->b.len;
        ssize_t got = read(f->fd, f->b.data + f->b.len, room < left ? room : (size_t)left);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            seterr(r, "cannot read %s: %s", f->path, strerror(errno));
            return -1;
        }
        if (got == 0) {
            seterr(r, "%s shrank while being read (at offset %llu)", f->path, (unsigned long long)(f->off + f->b.len));
            return -1;
        }
        f->b.len += (size_t)got;
    }
    return 0;
}

static int read_packets_fd(struct reader *r, int fd, uint64_t size, const char *path) {
    struct file_in f = {.fd = fd, .path = path, .size = size};
    int rc = 0;
    while (f.off < size) {
        uint64_t remain = size - f.off, plen;
        if (file_fill(r, &f, remain < 11 ? (size_t)remain : 11)) {
            rc = -1;
            break;
        }
        size_t hl = packet_header(r, f.b.data + f.start, f.b.len - f.start, remain, f.off, &plen);
        /* plen <= remain: a packet is never bigger than the file */
        if (!hl || file_fill(r, &f, hl + (size_t)plen) ||
            unpack_packet(r, f.b.data + f.start + hl, (size_t)plen, f.off)) {
            rc = -1;
            break;
        }
        f.start += hl + (size_t)plen;
        f.off += hl + plen;
        if (f.b.cap > (8u << 20) && f.b.len - f.start <= (1u << 20)) { /* a big packet passed: give memory back */
            memmove(f.b.data, f.b.data + f.start, f.b.len - f.start);
            f.b.len -= f.start;
            f.start = 0;
            f.b.data = xrealloc(f.b.data, 1u << 20);
            f.b.cap = 1u << 20;
        }
    }
    buf_free(&f.b);
    return rc;
}

/* ---- stream entry points ------------------------------------------------------- */

static void reader_init(struct reader *r, const struct trace_visitor *v, void *ctx, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->v = v;
    r->ctx = ctx;
    r->err = err;
    r->errlen = errlen;
    if (errlen) err[0] = 0;
}

/* Ends the read: slices still open are delivered (innermost first) if the
 * read succeeded, else dropped. */
static int reader_finish(struct reader *r, int rc, struct trace_stats *stats) {
    if (rc == 0 && r->st.packets == 0) {
        seterr(r, "no packets: not a trace");
        rc = -1;
    }
    for (size_t ti = 0; ti < r->ntracks; ti++) {
        struct rtrack *t = &r->tracks[ti];
        while (t->nopen) {
            if (rc == 0) {
                r->st.unterminated++;
                deliver_top(r, ti);
            } else {
                free_slice(&t->open[--t->nopen]);
            }
        }
        free(t->open);
        free_track(&t->t);
    }
    free(r->tracks);
    u64map_free(&r->trackidx, NULL);
    u64map_free(&r->seqidx, NULL);
    free(r->seqs);
    interned_free(&r->in);
    buf_free(&r->bundle);
    buf_free(&r->paths);
    free(r->frames);
    arena_free(r->pb[0].chunks);
    arena_free(r->pb[1].chunks);
    if (stats) *stats = r->st;
    return rc;
}

int trace_read_stream_buffer(const uint8_t *data, size_t len, const struct trace_visitor *v, void *ctx,
                             struct trace_stats *stats, char *err, size_t errlen) {
    struct reader r;
    reader_init(&r, v, ctx, err, errlen);
    r.st.bytes = len;
    if (len == 0) {
        seterr(&r, "empty file: not a trace");
        if (stats) *stats = r.st;
        return -1;
    }
    return reader_finish(&r, read_packets(&r, data, len, 0), stats);
}

static int stream_file(const char *path, const struct trace_visitor *v, void *ctx, int handoff,
                       struct trace_stats *stats, char *err, size_t errlen) {
    if (stats) memset(stats, 0, sizeof *stats);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s is not a regular file", path);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        snprintf(err, errlen, "%s is empty: not a trace", path);
        return -1;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    struct reader r;
    reader_init(&r, v, ctx, err, errlen);
    r.handoff = handoff;
    r.st.bytes = (uint64_t)st.st_size;
    int rc = read_packets_fd(&r, fd, (uint64_t)st.st_size, path);
    close(fd);
    return reader_finish(&r, rc, stats);
}

int trace_read_stream(const char *path, const struct trace_visitor *v, void *ctx, struct trace_stats *stats, char *err,
                      size_t errlen) {
    return stream_file(path, v, ctx, 0, stats, err, errlen);
}

/* ---- the model: a visitor that keeps everything --------------------------------- */

struct trace_model_index {
    struct u64map uuids;
};

size_t trace_find_track(const struct trace_model *m, uint64_t uuid) {
    return m->index ? index_get(&m->index->uuids, uuid) : (size_t)-1;
}

static void model_track(void *ctx, size_t index, const struct trace_track *src) {
    struct trace_model *m = ctx;
    while (m->ntracks <= index) {
        if (m->ntracks == m->captracks) {
            m->captracks = m->captracks ? m->captracks * 2 : 64;
            m->tracks = xrealloc(m->tracks, m->captracks * sizeof *m->tracks);
        }
        memset(&m->tracks[m->ntracks++], 0, sizeof *m->tracks);
    }
    struct trace_track *t = &m->tracks[index];
    free_track(t);
    *t = *src;
    t->name = src->name ? xstrdup(src->name) : NULL;
    t->cmdline = src->ncmdline ? xcalloc(src->ncmdline, sizeof *t->cmdline) : NULL;
    for (size_t i = 0; i < src->ncmdline; i++) t->cmdline[i] = xstrdup(src->cmdline[i]);
    index_put(&m->index->uuids, src->uuid, index);
}

/* Slices land at their BEGIN ordinal (each is delivered once, at its END or
 * at the end of the trace), so the model lists them in BEGIN order. The
 * reader hands their memory over (handoff). */
static void model_slice(void *ctx, const struct trace_slice *s, const struct trace_track *t,
                        const struct trace_slice *open, size_t nopen) {
    (void)t, (void)open, (void)nopen;
    struct trace_model *m = ctx;
    if (s->ordinal >= m->capslices) {
        size_t cap = m->capslices ? m->capslices : 1024;
        while (cap <= s->ordinal) cap *= 2;
        m->slices = xrealloc(m->slices, cap * sizeof *m->slices);
        memset(m->slices + m->capslices, 0, (cap - m->capslices) * sizeof *m->slices);
        m->capslices = cap;
    }
    m->slices[s->ordinal] = *s;
    if (s->ordinal >= m->nslices) m->nslices = (size_t)s->ordinal + 1;
}

static void model_instant(void *ctx, const struct trace_instant *in, const struct trace_track *t) {
    (void)t;
    struct trace_model *m = ctx;
    if (m->ninstants == m->capinstants) {
        m->capinstants = m->capinstants ? m->capinstants * 2 : 64;
        m->instants = xrealloc(m->instants, m->capinstants * sizeof *m->instants);
    }
    m->instants[m->ninstants++] = *in;
}

static void model_counter(void *ctx, const struct trace_counter *c, const struct trace_track *t) {
    (void)t;
    struct trace_model *m = ctx;
    if (m->ncounters == m->capcounters) {
        m->capcounters = m->capcounters ? m->capcounters * 2 : 256;
        m->counters = xrealloc(m->counters, m->capcounters * sizeof *m->counters);
    }
    m->counters[m->ncounters++] = *c;
}

static void model_sample(void *ctx, const struct trace_sample *s) {
    struct trace_model *m = ctx;
    if (m->nsamples == m->capsamples) {
        m->capsamples = m->capsamples ? m->capsamples * 2 : 256;
        m->samples = xrealloc(m->samples, m->capsamples * sizeof *m->samples);
    }
    struct trace_sample *d = &m->samples[m->nsamples++];
    *d = *s;
    d->frames = s->nframes ? xcalloc(s->nframes, sizeof *d->frames) : NULL;
    for (size_t i = 0; i < s->nframes; i++) {
        d->frames[i].function = xstrdup(s->frames[i].function);
        d->frames[i].mapping = s->frames[i].mapping ? xstrdup(s->frames[i].mapping) : NULL;
    }
}

static const struct trace_visitor model_visitor = {model_track, model_slice, model_instant, model_counter,
                                                   model_sample};

static void model_begin(struct trace_model *m) {
    memset(m, 0, sizeof *m);
    m->index = xcalloc(1, sizeof *m->index);
}

static int model_end(struct trace_model *m, int rc, const struct trace_stats *st) {
    m->packets = st->packets;
    m->bundles_zstd = st->bundles_zstd;
    m->bundles_zlib = st->bundles_zlib;
    m->bytes = st->bytes;
    m->clock_snapshots = st->clock_snapshots;
    m->unmatched_ends = st->unmatched_ends;
    m->unknown_iids = st->unknown_iids;
    m->first_ts = st->first_ts;
    m->last_ts = st->last_ts;
    if (rc) { /* slices open at the defect were never delivered: close the gaps */
        size_t n = 0;
        for (size_t i = 0; i < m->nslices; i++)
            if (m->slices[i].name) m->slices[n++] = m->slices[i];
        m->nslices = n;
    }
    return rc;
}

int trace_read_buffer(const uint8_t *data, size_t len, struct trace_model *m, char *err, size_t errlen) {
    model_begin(m);
    struct trace_stats st;
    struct reader r;
    reader_init(&r, &model_visitor, m, err, errlen);
    r.handoff = 1;
    r.st.bytes = len;
    int rc;
    if (len == 0) {
        seterr(&r, "empty file: not a trace");
        st = r.st;
        rc = -1;
    } else {
        rc = reader_finish(&r, read_packets(&r, data, len, 0), &st);
    }
    return model_end(m, rc, &st);
}

int trace_read_file(const char *path, struct trace_model *m, char *err, size_t errlen) {
    model_begin(m);
    struct trace_stats st;
    int rc = stream_file(path, &model_visitor, m, 1, &st, err, errlen);
    return model_end(m, rc, &st);
}

void trace_model_free(struct trace_model *m) {
    for (size_t i = 0; i < m->ntracks; i++) free_track(&m->tracks[i]);
    free(m->tracks);
    for (size_t i = 0; i < m->nslices; i++) free_slice(&m->slices[i]);
    free(m->slices);
    for (size_t i = 0; i < m->ninstants; i++) {
        free(m->instants[i].name);
        free_args(&m->instants[i].args);
        free_flows(&m->instants[i].flows);
    }
    free(m->instants);
    free(m->counters);
    for (size_t i = 0; i < m->nsamples; i++) {
        for (size_t j = 0; j < m->samples[i].nframes; j++) {
            free(m->samples[i].frames[j].function);
            free(m->samples[i].frames[j].mapping);
        }
        free(m->samples[i].frames);
    }
    free(m->samples);
    if (m->index) {
        u64map_free(&m->index->uuids, NULL);
        free(m->index);
    }
    memset(m, 0, sizeof *m);
}

const struct trace_arg *trace_args_get(const struct trace_args *a, const char *name) {
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->items[i].name, name)) return &a->items[i];
    return NULL;
}
