/* Stack samples: one ASTRACE_REC_SAMPLE record becomes one PerfSample
 * packet on the process's sequence, with its callstack interned.
 *
 * Python frames are named "qualname (file:line)" on a synthetic "[python]"
 * mapping (Perfetto drops a callstack whose frame has no mapping). A Python
 * frame stopped on a call instruction gets a child frame naming the called
 * expression ("time.sleep") on "[native call]": the sample was taken inside
 * native code it called. Native frames (--native) are named by their ELF
 * symbol on the real mapping, and merged with the Python frames the way
 * py-spy and Austin do: each native frame of the eval loop
 * (_PyEval_EvalFrameDefault) is replaced by the Python frames it was running,
 * which the runtime marks group by group (astrace_rec_sample.entry).
 *
 * Names are resolved once per (code object, instruction) and per native
 * address, and cached for the whole process; iids live in the sequence's
 * interning spaces (intern.c), so they are defined again after a reset. Each
 * cached name also keeps its frame's iid for the current interning
 * generation: a frame seen before costs no text work at all.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/u64map.h"
#include "common/util.h"
#include "writer/encoder_internal.h"
#include "writer/native_syms.h"
#include "writer/py_remote.h"

#define MAX_FRAMES (2 * ASTRACE_SAMPLE_MAX_PY + ASTRACE_SAMPLE_MAX_NATIVE + 2)
#define PY_MAPPING "[python]"
#define CALL_MAPPING "[native call]"

/* A frame's iid, valid while the sequence's interning generation is the
 * one noted (stored + 1, so that 0 means none). */
struct frame_iid_cache {
    uint64_t iid;
    uint32_t generation;
};

struct py_frame_names {
    char *function; /* "qualname (file:line)" */
    char *callee;   /* called expression, or NULL */
    struct frame_iid_cache function_iid, callee_iid;
    uint64_t tag; /* identity tag of the code object named (record.h) */
};

struct native_frame_names {
    char *function; /* symbol, or "lib.so+0x1234" */
    char *mapping_key;
    char *path;
    uint64_t start, end, offset, rel_pc;
    int is_eval;       /* the eval loop: replaced by Python frames */
    int is_code_entry; /* PyEval_EvalCode: where a module's code starts running */
    struct frame_iid_cache iid;
};

struct sample_state {
    struct py_remote *py;
    struct native_syms *native;
    struct u64map py_frames;     /* (code, offset) key -> struct py_frame_names */
    struct u64map native_frames; /* pc -> struct native_frame_names */
    uint64_t samples;
};

static void free_py_frame(void *v) {
    struct py_frame_names *f = v;
    free(f->function);
    free(f->callee);
    free(f);
}

static void free_native_frame(void *v) {
    struct native_frame_names *f = v;
    free(f->function);
    free(f->mapping_key);
    free(f->path);
    free(f);
}

void samples_free(struct sample_state *s) {
    if (!s) return;
    py_remote_free(s->py);
    native_syms_free(s->native);
    u64map_free(&s->py_frames, free_py_frame);
    u64map_free(&s->native_frames, free_native_frame);
    free(s);
}

uint64_t samples_count(const struct sample_state *s) {
    return s ? s->samples : 0;
}

/* "dir/__init__.py" for packages, else the file's base name. */
static const char *short_file(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    if (!base) return path;
    if (strcmp(base + 1, "__init__.py") != 0) return base + 1;
    const char *dir = base;
    while (dir > path && dir[-1] != '/') dir--;
    snprintf(out, cap, "%s", dir);
    return out;
}

/* The one name of all code addresses no code object can have. Shared by every
 * process, so it keeps no iid (those are per process sequence). */
static struct py_frame_names impossible_code = {"<code at an impossible address>", NULL, {0, 0}, {0, 0}, 0};

static struct py_frame_names *py_names(struct sample_state *s, uint64_t code_word, uint32_t offset) {
    /* The cache key packs both: code objects are 8-aligned below 2^47;
     * offsets past 2^20 bytes (never seen in real code) count as unknown.
     * An entry names one code object: its identity tag must match. */
    uint64_t code = code_word & ASTRACE_CODE_ADDR_MASK, tag = code_word >> 48;
    if (offset >= (1u << 20) - 1) offset = UINT32_MAX;
    uint64_t key = (code >> 3) | (uint64_t)(offset == UINT32_MAX ? (1u << 20) - 1 : offset) << 44;
    if (code >= (1ull << 47) || !key) key = 0;
    struct py_frame_names *f = key ? u64map_get(&s->py_frames, key) : NULL;
    if (f && f->tag == tag) return f;
    struct py_frame_names *earlier = f; /* another code object that lived at this address */
    struct py_frame_desc d;
    py_remote_describe(s->py, code_word, offset, &d); /* an unreadable one is named after its address */
    char text[1024], shortbuf[512];
    if (d.line > 0)
        snprintf(text, sizeof text, "%s (%s:%d)", d.qualname, short_file(d.file, shortbuf, sizeof shortbuf), d.line);
    else if (d.file[0])
        snprintf(text, sizeof text, "%s (%s)", d.qualname, short_file(d.file, shortbuf, sizeof shortbuf));
    else
        snprintf(text, sizeof text, "%s", d.qualname);
    f = xcalloc(1, sizeof *f);
    f->function = xstrdup(text);
    f->callee = d.callee ? xstrdup(d.callee) : NULL;
    f->tag = tag;
    if (key) {
        u64map_put(&s->py_frames, key, f);
        if (earlier) free_py_frame(earlier);
    } else { /* an address no code object has: keep one name for all of them */
        free_py_frame(f);
        return &impossible_code;
    }
    return f;
}

static struct native_frame_names *native_names(struct sample_state *s, uint64_t pc) {
    struct native_frame_names *f = u64map_get(&s->native_frames, pc);
    if (f) return f;
    f = xcalloc(1, sizeof *f);
    struct native_loc loc;
    char text[512];
    if (native_syms_lookup(s->native, pc, &loc) == 0) {
        const char *base = strrchr(loc.path, '/');
        base = base ? base + 1 : loc.path;
        if (loc.function)
            snprintf(text, sizeof text, "%s", loc.function);
        else
            snprintf(text, sizeof text, "%s+0x%" PRIx64, base, loc.rel_pc);
        f->function = xstrdup(text);
        f->path = xstrdup(loc.path);
        snprintf(text, sizeof text, "%s@%" PRIx64, loc.path, loc.map_start);
        f->mapping_key = xstrdup(text);
        f->start = loc.map_start;
        f->end = loc.map_end;
        f->offset = loc.map_offset;
        f->rel_pc = loc.rel_pc;
        f->is_eval = loc.function && !strcmp(loc.function, "_PyEval_EvalFrameDefault");
        f->is_code_entry = loc.function && !strcmp(loc.function, "PyEval_EvalCode");
    } else {
        snprintf(text, sizeof text, "0x%" PRIx64, pc);
        f->function = xstrdup(text);
        f->path = xstrdup("[unknown]");
        f->mapping_key = xstrdup("[unknown]");
        f->rel_pc = pc;
    }
    u64map_put(&s->native_frames, pc, f);
    return f;
}

/* ---- interning one sample's entries ---------------------------------------- */

/* New interned entries of the packet being built. */
struct sample_packet {
    Astrace__Pb__InternedString fn[MAX_FRAMES], paths[MAX_FRAMES];
    Astrace__Pb__InternedString *fn_ptrs[MAX_FRAMES], *path_ptrs[MAX_FRAMES];
    Astrace__Pb__Mapping maps[MAX_FRAMES];
    Astrace__Pb__Mapping *map_ptrs[MAX_FRAMES];
    uint64_t map_path_ids[MAX_FRAMES];
    Astrace__Pb__Frame frames[MAX_FRAMES];
    Astrace__Pb__Frame *frame_ptrs[MAX_FRAMES];
    Astrace__Pb__Callstack callstack;
    Astrace__Pb__Callstack *callstack_ptr;
    size_t nfn, npaths, nmaps, nframes;
};

/* A frame to intern: its name, and its mapping (path, range). */
struct frame_ref {
    const char *function;
    const char *mapping_key; /* identity of the mapping */
    const char *path;
    uint64_t start, end, offset, rel_pc; /* rel_pc 0: use the function name's iid */
    struct frame_iid_cache *cache;       /* where the frame's iid is kept, or NULL */
};

/* Appends a new interned string (a function name or a mapping path) to one
 * of the packet's lists. */
static void add_string(Astrace__Pb__InternedString *strings, Astrace__Pb__InternedString **ptrs, size_t *n,
                       uint64_t iid, const char *text) {
    Astrace__Pb__InternedString *st = &strings[*n];
    astrace__pb__interned_string__init(st);
    st->has_iid = st->has_str = 1;
    st->iid = iid;
    st->str.data = (uint8_t *)text;
    st->str.len = strlen(text);
    ptrs[(*n)++] = st;
}

static uint64_t intern_mapping(struct enc_process *p, struct sample_packet *pk, const struct frame_ref *r) {
    int is_new;
    uint64_t iid = enc_intern(p, INTERN_MAPPING, r->mapping_key, &is_new);
    if (!is_new) return iid;
    uint64_t path_iid = enc_intern(p, INTERN_MAPPING_PATH, r->path, &is_new);
    if (is_new) add_string(pk->paths, pk->path_ptrs, &pk->npaths, path_iid, r->path);
    Astrace__Pb__Mapping *m = &pk->maps[pk->nmaps];
    astrace__pb__mapping__init(m);
    m->has_iid = 1;
    m->iid = iid;
    m->has_start = m->has_end = m->has_start_offset = 1;
    m->start = r->start;
    m->end = r->end ? r->end : r->start + 1;
    m->start_offset = r->offset;
    pk->map_path_ids[pk->nmaps] = path_iid;
    m->n_path_string_ids = 1;
    m->path_string_ids = &pk->map_path_ids[pk->nmaps];
    pk->map_ptrs[pk->nmaps++] = m;
    return iid;
}

static uint64_t intern_frame(struct enc_process *p, struct sample_packet *pk, const struct frame_ref *r) {
    uint32_t generation = p->ext->intern_generation + 1;
    if (r->cache && r->cache->generation == generation) return r->cache->iid;
    int is_new;
    uint64_t fn = enc_intern(p, INTERN_FUNCTION_NAME, r->function, &is_new);
    if (is_new) add_string(pk->fn, pk->fn_ptrs, &pk->nfn, fn, r->function);
    uint64_t map = intern_mapping(p, pk, r);
    uint64_t rel_pc = r->rel_pc ? r->rel_pc : fn;
    char key[72]; /* "map/rel_pc/fn" */
    size_t len = text_u64(key, map);
    key[len++] = '/';
    len += text_u64(key + len, rel_pc);
    key[len++] = '/';
    len += text_u64(key + len, fn);
    key[len] = 0;
    uint64_t iid = enc_intern(p, INTERN_FRAME, key, &is_new);
    if (is_new) {
        Astrace__Pb__Frame *f = &pk->frames[pk->nframes];
        astrace__pb__frame__init(f);
        f->has_iid = f->has_function_name_id = f->has_mapping_id = f->has_rel_pc = 1;
        f->iid = iid;
        f->function_name_id = fn;
        f->mapping_id = map;
        f->rel_pc = rel_pc;
        pk->frame_ptrs[pk->nframes++] = f;
    }
    if (r->cache) {
        r->cache->iid = iid;
        r->cache->generation = generation;
    }
    return iid;
}

/* ---- merging ------------------------------------------------------------------ */

static struct frame_ref py_ref(const char *function, const char *mapping, struct frame_iid_cache *cache) {
    return (struct frame_ref){
        .function = function, .mapping_key = mapping, .path = mapping, .start = 0, .end = 1, .cache = cache};
}

/* Appends Python frames [from, to) and the callee of the innermost one. */
static size_t put_python(struct sample_state *s, struct frame_ref *out, size_t n, const uint64_t *codes,
                         const uint32_t *offsets, size_t from, size_t to) {
    for (size_t i = from; i < to && n < MAX_FRAMES; i++) {
        struct py_frame_names *f = py_names(s, codes[i], offsets[i]);
        int cached = f != &impossible_code;
        if (i == 0 && f->callee) out[n++] = py_ref(f->callee, CALL_MAPPING, cached ? &f->callee_iid : NULL);
        if (n < MAX_FRAMES) out[n++] = py_ref(f->function, PY_MAPPING, cached ? &f->function_iid : NULL);
    }
    return n;
}

void enc_sample(struct enc_process *p, struct enc_thread *t, const struct astrace_rec_hdr *rec) {
    const struct astrace_rec_sample *r = (const struct astrace_rec_sample *)rec;
    if (rec->size < sizeof *r) return;
    size_t npy = r->py_depth, nnative = r->native_depth;
    size_t offsets_bytes = (npy * 4 + 7) & ~(size_t)7;
    if (npy > ASTRACE_SAMPLE_MAX_PY || nnative > ASTRACE_SAMPLE_MAX_NATIVE ||
        sizeof *r + npy * 8 + offsets_bytes + nnative * 8 > rec->size)
        return;
    const struct astrace_py_layout *layout = &p->seg->py;
    if (!atomic_load_explicit(&((struct astrace_py_layout *)layout)->ready, memory_order_acquire)) return;
    struct sample_state *s = p->ext->samples;
    if (!s) {
        s = p->ext->samples = xcalloc(1, sizeof *s);
        s->py = py_remote_new(p->pid, layout);
        s->native = native_syms_new(p->pid);
    }
    const uint8_t *body = (const uint8_t *)(r + 1);
    uint64_t codes[ASTRACE_SAMPLE_MAX_PY], ips[ASTRACE_SAMPLE_MAX_NATIVE];
    uint32_t offsets[ASTRACE_SAMPLE_MAX_PY];
    memcpy(codes, body, npy * 8);
    memcpy(offsets, body + npy * 8, npy * 4);
    memcpy(ips, body + npy * 8 + offsets_bytes, nnative * 8);

    /* Innermost first: native frames, each eval-loop frame replaced by the
     * next group of Python frames (a group ends at a frame marked in
     * `entry`; past bit 63 the rest is one group). */
    struct frame_ref refs[MAX_FRAMES];
    size_t n = 0, next_py = 0, code_entry = SIZE_MAX;
    for (size_t i = 0; i < nnative && n < MAX_FRAMES; i++) {
        struct native_frame_names *f = native_names(s, i == 0 ? ips[i] : ips[i] - 1);
        if (f->is_code_entry && code_entry == SIZE_MAX) code_entry = n;
        if (f->is_eval && next_py < npy) {
            size_t end = next_py;
            while (end < npy && !(end < 64 && (r->entry >> end) & 1)) end++;
            end = end < npy ? end + 1 : npy;
            n = put_python(s, refs, n, codes, offsets, next_py, end);
            next_py = end;
            continue;
        }
        refs[n++] = (struct frame_ref){.function = f->function,
                                       .mapping_key = f->mapping_key,
                                       .path = f->path,
                                       .start = f->start,
                                       .end = f->end,
                                       .offset = f->offset,
                                       .rel_pc = f->rel_pc ? f->rel_pc : 1,
                                       .cache = &f->iid};
    }
    /* No eval-loop frame at all, as in an interpreter whose eval loop has
     * no symbol (stripped, or a tail-calling build where opcode handlers
     * stand in for it): the Python frames go right inside the innermost
     * PyEval_EvalCode (exported by every CPython), the native frames of
     * the interpreter's innards inside them. */
    if (next_py == 0 && npy > 0 && code_entry != SIZE_MAX) {
        struct frame_ref outer[MAX_FRAMES];
        size_t nouter = n - code_entry;
        memcpy(outer, refs + code_entry, nouter * sizeof *outer);
        n = put_python(s, refs, code_entry, codes, offsets, 0, npy);
        next_py = npy;
        for (size_t i = 0; i < nouter && n < MAX_FRAMES; i++) refs[n++] = outer[i];
    }
    /* Python frames not matched to an eval-loop frame (Python-only samples,
     * or an unwind that stopped early) go outermost. */
    n = put_python(s, refs, n, codes, offsets, next_py, npy);
    if ((r->flags & ASTRACE_SAMPLE_TRUNCATED) && n < MAX_FRAMES)
        refs[n++] = py_ref("(deeper frames not read)", PY_MAPPING, NULL);
    if (n == 0) refs[n++] = py_ref("(no Python frames)", PY_MAPPING, NULL);

    static struct sample_packet pk; /* large; the recorder is single-threaded */
    pk.nfn = pk.npaths = pk.nmaps = pk.nframes = 0;
    uint64_t frame_iids[MAX_FRAMES];
    char key[MAX_FRAMES * 21 + 1]; /* "iid,iid,...," */
    size_t key_len = 0;
    for (size_t i = 0; i < n; i++) { /* outermost first */
        frame_iids[i] = intern_frame(p, &pk, &refs[n - 1 - i]);
        key_len += text_u64(key + key_len, frame_iids[i]);
        key[key_len++] = ',';
    }
    key[key_len] = 0;
    int is_new;
    uint64_t callstack = enc_intern(p, INTERN_CALLSTACK, key, &is_new);

    Astrace__Pb__InternedData idata;
    astrace__pb__interned_data__init(&idata);
    idata.n_function_names = pk.nfn;
    idata.function_names = pk.fn_ptrs;
    idata.n_mapping_paths = pk.npaths;
    idata.mapping_paths = pk.path_ptrs;
    idata.n_mappings = pk.nmaps;
    idata.mappings = pk.map_ptrs;
    idata.n_frames = pk.nframes;
    idata.frames = pk.frame_ptrs;
    if (is_new) {
        astrace__pb__callstack__init(&pk.callstack);
        pk.callstack.has_iid = 1;
        pk.callstack.iid = callstack;
        pk.callstack.n_frame_ids = n;
        pk.callstack.frame_ids = frame_iids;
        pk.callstack_ptr = &pk.callstack;
        idata.n_callstacks = 1;
        idata.callstacks = &pk.callstack_ptr;
    }
    Astrace__Pb__PerfSample ps;
    astrace__pb__perf_sample__init(&ps);
    ps.has_cpu = ps.has_pid = ps.has_tid = ps.has_callstack_iid = 1;
    ps.cpu = 0;
    ps.pid = (uint32_t)p->pid;
    ps.tid = (uint32_t)t->tid;
    ps.callstack_iid = callstack;
    /* Ticks the kernel merged into this one had this same stack: one sample
     * each, at their own times, oldest first; the interned data rides on the
     * first. */
    uint64_t interval = p->seg->sample_rate_hz ? 1000000000ull / p->seg->sample_rate_hz : 0;
    uint32_t ticks = 1 + (interval ? r->missed : 0);
    for (uint32_t k = ticks; k-- > 0;) {
        Astrace__Pb__TracePacket pkt;
        astrace__pb__trace_packet__init(&pkt);
        pkt.has_timestamp = pkt.has_trusted_packet_sequence_id = pkt.has_sequence_flags = 1;
        pkt.timestamp = rec->ts - k * interval;
        pkt.trusted_packet_sequence_id = p->seq_id;
        pkt.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
        if (k == ticks - 1 && (idata.n_function_names || idata.n_frames || idata.n_callstacks || idata.n_mappings))
            pkt.interned_data = &idata;
        pkt.data_case = ASTRACE__PB__TRACE_PACKET__DATA_PERF_SAMPLE;
        pkt.perf_sample = &ps;
        trace_file_write(p->enc->tf, &pkt);
        s->samples++;
        p->enc->samples++;
    }
    if (rec->ts > p->last_ts) p->last_ts = rec->ts;
    if (rec->ts > p->enc->last_ts) p->enc->last_ts = rec->ts;
}
