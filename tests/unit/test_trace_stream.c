/* The reader's streaming API and callstack resolution, on traces built here
 * packet by packet with protobuf-c (no writer involved):
 *  - PerfSample callstacks resolve through InternedData function_names,
 *    frames, callstacks, mappings and mapping_paths of their sequence, to
 *    names outermost first; SEQ_INCREMENTAL_STATE_CLEARED forgets them;
 *    undefined iids are counted, never crash;
 *  - slices are streamed at their END with their open ancestors, those still
 *    open at the end come last with dur -1, and the model lists them in BEGIN
 *    order;
 *  - the file reader (chunked) and the buffer reader agree, on big packets,
 *    truncations and refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "astrace_perfetto.pb-c.h"
#include "check.h"
#include "common/util.h"
#include "reader/trace_reader.h"

/* ---- building traces ------------------------------------------------------- */

static void put_packet(struct buf *out, const Astrace__Pb__TracePacket *p) {
    size_t n = astrace__pb__trace_packet__get_packed_size(p);
    uint8_t hdr[11];
    hdr[0] = 0x0A;
    size_t hl = 1 + varint_put(hdr + 1, n);
    buf_append(out, hdr, hl);
    buf_reserve(out, n);
    astrace__pb__trace_packet__pack(p, out->data + out->len);
    out->len += n;
}

static Astrace__Pb__InternedString *istr(Astrace__Pb__InternedString *s, uint64_t iid, const char *text) {
    astrace__pb__interned_string__init(s);
    s->has_iid = s->has_str = 1;
    s->iid = iid;
    s->str.data = (uint8_t *)text;
    s->str.len = strlen(text);
    return s;
}

static void sample(struct buf *out, uint32_t seq, uint64_t ts, uint32_t tid, uint64_t callstack) {
    Astrace__Pb__PerfSample ps;
    astrace__pb__perf_sample__init(&ps);
    ps.has_pid = ps.has_tid = ps.has_callstack_iid = 1;
    ps.pid = 100;
    ps.tid = tid;
    ps.callstack_iid = callstack;
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.has_trusted_packet_sequence_id = 1;
    p.trusted_packet_sequence_id = seq;
    p.has_timestamp = 1;
    p.timestamp = ts;
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_PERF_SAMPLE;
    p.perf_sample = &ps;
    put_packet(out, &p);
}

/* Interned data on `seq` (clearing its state first if `clear`):
 *   functions 1 main, 2 fetch, 3 parse; paths 1 usr, 2 lib, 3 app.py
 *   mapping 1 = /usr/lib, mapping 2 = app.py (one absolute component: kept)
 *   frames 1 main@map1, 2 fetch (no mapping), 3 parse@map2, 4 function 99 (undefined)
 *   callstacks 1 = main>fetch>parse, 2 = main>fetch, 3 = main>frame 77 (undefined)>fetch, 4 = frame 4 */
static void interned_stacks(struct buf *out, uint32_t seq, int clear) {
    Astrace__Pb__InternedString fn[3], paths[4], *fnp[3], *pathp[4];
    fnp[0] = istr(&fn[0], 1, "main");
    fnp[1] = istr(&fn[1], 2, "fetch");
    fnp[2] = istr(&fn[2], 3, "parse");
    pathp[0] = istr(&paths[0], 1, "usr");
    pathp[1] = istr(&paths[1], 2, "lib");
    pathp[2] = istr(&paths[2], 3, "/srv/app.py");
    Astrace__Pb__Mapping maps[2], *mapp[2];
    uint64_t m1paths[] = {1, 2}, m2paths[] = {3};
    for (int i = 0; i < 2; i++) {
        astrace__pb__mapping__init(&maps[i]);
        maps[i].has_iid = 1;
        maps[i].iid = (uint64_t)i + 1;
        mapp[i] = &maps[i];
    }
    maps[0].path_string_ids = m1paths;
    maps[0].n_path_string_ids = 2;
    maps[1].path_string_ids = m2paths;
    maps[1].n_path_string_ids = 1;
    Astrace__Pb__Frame frames[4], *framep[4];
    uint64_t fnid[] = {1, 2, 3, 99}, mapid[] = {1, 0, 2, 0};
    for (int i = 0; i < 4; i++) {
        astrace__pb__frame__init(&frames[i]);
        frames[i].has_iid = frames[i].has_function_name_id = 1;
        frames[i].iid = (uint64_t)i + 1;
        frames[i].function_name_id = fnid[i];
        if (mapid[i]) {
            frames[i].has_mapping_id = 1;
            frames[i].mapping_id = mapid[i];
        }
        framep[i] = &frames[i];
    }
    Astrace__Pb__Callstack cs[4], *csp[4];
    uint64_t cs1[] = {1, 2, 3}, cs2[] = {1, 2}, cs3[] = {1, 77, 2}, cs4[] = {4};
    uint64_t *csf[] = {cs1, cs2, cs3, cs4};
    size_t csn[] = {3, 2, 3, 1};
    for (int i = 0; i < 4; i++) {
        astrace__pb__callstack__init(&cs[i]);
        cs[i].has_iid = 1;
        cs[i].iid = (uint64_t)i + 1;
        cs[i].frame_ids = csf[i];
        cs[i].n_frame_ids = csn[i];
        csp[i] = &cs[i];
    }
    Astrace__Pb__InternedData id;
    astrace__pb__interned_data__init(&id);
    id.function_names = fnp;
    id.n_function_names = 3;
    id.mapping_paths = pathp;
    id.n_mapping_paths = 3;
    id.mappings = mapp;
    id.n_mappings = 2;
    id.frames = framep;
    id.n_frames = 4;
    id.callstacks = csp;
    id.n_callstacks = 4;
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.has_trusted_packet_sequence_id = 1;
    p.trusted_packet_sequence_id = seq;
    if (clear) {
        p.has_sequence_flags = 1;
        p.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED;
    }
    p.interned_data = &id;
    put_packet(out, &p);
}

static void clear_state(struct buf *out, uint32_t seq) {
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.has_trusted_packet_sequence_id = 1;
    p.trusted_packet_sequence_id = seq;
    p.has_sequence_flags = 1;
    p.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED;
    put_packet(out, &p);
}

static void event(struct buf *out, uint64_t track, uint64_t ts, int type, const char *name, const char *arg,
                  int64_t value) {
    Astrace__Pb__DebugAnnotation a, *ap = &a;
    astrace__pb__debug_annotation__init(&a);
    a.name = (char *)arg;
    a.has_int_value = 1;
    a.int_value = value;
    Astrace__Pb__TrackEvent ev;
    astrace__pb__track_event__init(&ev);
    ev.has_type = 1;
    ev.type = type;
    ev.has_track_uuid = 1;
    ev.track_uuid = track;
    ev.name = (char *)name;
    if (arg) {
        ev.debug_annotations = &ap;
        ev.n_debug_annotations = 1;
    }
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.has_trusted_packet_sequence_id = 1;
    p.trusted_packet_sequence_id = 1;
    p.has_timestamp = 1;
    p.timestamp = ts;
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
    p.track_event = &ev;
    put_packet(out, &p);
}

static void track(struct buf *out, uint64_t uuid, const char *name) {
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = uuid;
    td.name = (char *)name;
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    p.track_descriptor = &td;
    put_packet(out, &p);
}

static int frames_are(const struct trace_sample *s, const char *const *names, size_t n) {
    if (s->nframes != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->frames[i].function, names[i])) return 0;
    return 1;
}

static const char *write_temp(const struct buf *b, char *path) {
    strcpy(path, "/tmp/astrace-unit-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, b->data, b->len) == (ssize_t)b->len);
    close(fd);
    return path;
}

/* ---- callstacks -------------------------------------------------------------- */

static void test_callstacks(void) {
    struct buf t = {0};
    interned_stacks(&t, 1, 1);
    sample(&t, 1, 1000, 7, 1);  /* main > fetch > parse */
    sample(&t, 1, 1001, 7, 2);  /* main > fetch */
    sample(&t, 1, 1002, 7, 3);  /* main > ? (undefined frame) > fetch */
    sample(&t, 1, 1003, 7, 4);  /* ? (undefined function) */
    sample(&t, 1, 1004, 7, 42); /* undefined callstack */
    sample(&t, 2, 1005, 8, 1);  /* sequence 2 has no interned data */
    clear_state(&t, 1);
    sample(&t, 1, 1006, 7, 1); /* cleared: undefined now */
    interned_stacks(&t, 1, 0); /* defined again in the new generation */
    sample(&t, 1, 1007, 7, 2);
    struct trace_model m;
    char err[256];
    int rc = trace_read_buffer(t.data, t.len, &m, err, sizeof err);
    if (rc) fprintf(stderr, "read: %s\n", err);
    CHECK(rc == 0);
    CHECK_EQ_U(m.nsamples, 8);
    if (m.nsamples == 8) {
        static const char *const s0[] = {"main", "fetch", "parse"}, *const s1[] = {"main", "fetch"},
                                 *const s2[] = {"main", "?", "fetch"}, *const s3[] = {"?"};
        const struct trace_sample *s = m.samples;
        CHECK(s[0].resolved && frames_are(&s[0], s0, 3) && s[0].ts == 1000 && s[0].pid == 100 && s[0].tid == 7);
        CHECK(s[0].nframes == 3 && s[0].frames[0].mapping && !strcmp(s[0].frames[0].mapping, "/usr/lib"));
        CHECK(s[0].nframes == 3 && s[0].frames[1].mapping == NULL);
        CHECK(s[0].nframes == 3 && s[0].frames[2].mapping && !strcmp(s[0].frames[2].mapping, "/srv/app.py"));
        CHECK(s[1].resolved && frames_are(&s[1], s1, 2));
        CHECK(s[2].resolved && frames_are(&s[2], s2, 3));
        CHECK(s[3].resolved && frames_are(&s[3], s3, 1));
        CHECK(!s[4].resolved && s[4].nframes == 0 && s[4].callstack_iid == 42);
        CHECK(!s[5].resolved && s[5].nframes == 0 && s[5].tid == 8);
        CHECK(!s[6].resolved && s[6].nframes == 0);
        CHECK(s[7].resolved && frames_are(&s[7], s1, 2));
    }
    /* undefined: frame 77, function 99, callstacks 42, 1 (seq 2), 1 (cleared) */
    CHECK_EQ_U(m.unknown_iids, 5);
    trace_model_free(&m);

    /* Every truncation: refused with a message or read, never a crash. */
    for (size_t cut = 1; cut < t.len; cut++) {
        rc = trace_read_buffer(t.data, cut, &m, err, sizeof err);
        CHECK(rc == 0 || err[0]);
        trace_model_free(&m);
    }
    buf_free(&t);
}

/* ---- streaming ------------------------------------------------------------------ */

struct seen {
    char log[4096];
    size_t slices, tracks, counters, instants, unterminated;
};

static void on_slice(void *ctx, const struct trace_slice *s, const struct trace_track *t,
                     const struct trace_slice *open, size_t nopen) {
    struct seen *w = ctx;
    w->slices++;
    CHECK(nopen == s->depth);
    if (s->dur < 0) w->unterminated++;
    const struct trace_arg *a = trace_args_get(&s->args, "n");
    size_t len = strlen(w->log);
    snprintf(w->log + len, sizeof w->log - len, "%s%s/%s:%lld:%lld:%s", len ? " " : "", t->name ? t->name : "", s->name,
             (long long)s->dur, a ? (long long)a->v.i : -1LL, nopen ? open[nopen - 1].name : "-");
}

static void on_track(void *ctx, size_t index, const struct trace_track *t) {
    struct seen *w = ctx;
    (void)t;
    if (index + 1 > w->tracks) w->tracks = index + 1;
}

static void on_counter(void *ctx, const struct trace_counter *c, const struct trace_track *t) {
    (void)c, (void)t;
    ((struct seen *)ctx)->counters++;
}

static void test_streaming(void) {
    struct buf t = {0};
    track(&t, 1, "A");
    track(&t, 2, "B");
    enum { B = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN, E = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END };
    event(&t, 1, 100, B, "outer", "n", 1);
    event(&t, 1, 110, B, "inner", NULL, 0);
    event(&t, 2, 115, B, "other", NULL, 0);
    event(&t, 1, 120, E, NULL, "n", 2); /* END args join BEGIN's */
    event(&t, 2, 125, E, NULL, NULL, 0);
    event(&t, 1, 130, B, "second", NULL, 0);
    event(&t, 1, 140, E, NULL, NULL, 0);
    event(&t, 1, 200, E, NULL, NULL, 0);
    event(&t, 1, 210, E, NULL, NULL, 0); /* nothing open */
    event(&t, 2, 300, B, "open1", NULL, 0);
    event(&t, 2, 310, B, "open2", NULL, 0); /* still open at the end */
    struct trace_visitor v = {.track = on_track, .slice = on_slice, .counter = on_counter};
    struct seen w;
    memset(&w, 0, sizeof w);
    struct trace_stats st;
    char err[256];
    CHECK(trace_read_stream_buffer(t.data, t.len, &v, &w, &st, err, sizeof err) == 0);
    CHECK(!strcmp(w.log, "A/inner:10:2:outer B/other:10:-1:- A/second:10:-1:outer A/outer:100:1:- B/open2:-1:-1:open1 "
                         "B/open1:-1:-1:-"));
    if (strcmp(w.log, "A/inner:10:2:outer B/other:10:-1:- A/second:10:-1:outer A/outer:100:1:- B/open2:-1:-1:open1 "
                      "B/open1:-1:-1:-"))
        fprintf(stderr, "log: %s\n", w.log);
    CHECK_EQ_U(st.unterminated, 2);
    CHECK_EQ_U(st.unmatched_ends, 1);
    CHECK_EQ_U(w.tracks, 2);

    /* The model: BEGIN order, the same durations. */
    struct trace_model m;
    CHECK(trace_read_buffer(t.data, t.len, &m, err, sizeof err) == 0);
    static const char *const order[] = {"outer", "inner", "other", "second", "open1", "open2"};
    static const int64_t durs[] = {100, 10, 10, 10, -1, -1};
    CHECK_EQ_U(m.nslices, 6);
    for (size_t i = 0; i < m.nslices && i < 6; i++) {
        CHECK(!strcmp(m.slices[i].name, order[i]));
        CHECK(m.slices[i].dur == durs[i]);
        CHECK(m.slices[i].ordinal == i);
    }
    CHECK(m.nslices == 6 && m.slices[0].args.n == 1 && trace_args_get(&m.slices[0].args, "n")->v.i == 1);
    CHECK(m.nslices == 6 && m.slices[1].args.n == 1 && trace_args_get(&m.slices[1].args, "n")->v.i == 2);
    CHECK(trace_find_track(&m, 2) == 1 && trace_find_track(&m, 3) == (size_t)-1);
    trace_model_free(&m);

    /* The same through a file; then a file whose first packet exceeds the
     * reader's chunk (an uncompressed 3 MB packet) and every kind of cut. */
    char path[64];
    memset(&w, 0, sizeof w);
    CHECK(trace_read_stream(write_temp(&t, path), &v, &w, &st, err, sizeof err) == 0);
    CHECK(w.slices == 6 && w.unterminated == 2 && st.bytes == t.len);
    unlink(path);

    struct buf big = {0};
    char *name = xmalloc(3u << 20);
    memset(name, 'x', (3u << 20) - 1);
    name[(3u << 20) - 1] = 0;
    track(&big, 9, name);
    free(name);
    buf_append(&big, t.data, t.len);
    write_temp(&big, path);
    memset(&w, 0, sizeof w);
    CHECK(trace_read_stream(path, &v, &w, &st, err, sizeof err) == 0);
    CHECK(w.slices == 6 && w.tracks == 3);
    CHECK(trace_read_file(path, &m, err, sizeof err) == 0);
    CHECK(m.ntracks == 3 && strlen(m.tracks[0].name) == (3u << 20) - 1);
    trace_model_free(&m);
    unlink(path);
    size_t cuts[] = {1, 2, 5, 1000, (2u << 20), big.len - 3, big.len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        struct buf cut = {0};
        buf_append(&cut, big.data, cuts[i]);
        write_temp(&cut, path);
        buf_free(&cut);
        memset(&w, 0, sizeof w);
        int rc_file = trace_read_stream(path, &v, &w, &st, err, sizeof err);
        CHECK(rc_file == -1 && strstr(err, "truncated"));
        char err2[256];
        int rc_buf = trace_read_stream_buffer(big.data, cuts[i], &v, &w, &st, err2, sizeof err2);
        CHECK(rc_buf == -1 && !strcmp(err, err2)); /* same message from both readers */
        unlink(path);
    }
    buf_free(&big);

    /* Refusals. */
    CHECK(trace_read_stream("/nonexistent/x.pftrace", &v, &w, &st, err, sizeof err) == -1 &&
          strstr(err, "cannot open"));
    CHECK(trace_read_stream("/tmp", &v, &w, &st, err, sizeof err) == -1 && strstr(err, "not a regular file"));
    struct buf text = {0};
    buf_append(&text, "hello, world\n", 13);
    CHECK(trace_read_stream(write_temp(&text, path), &v, &w, &st, err, sizeof err) == -1 &&
          strstr(err, "not a Perfetto"));
    unlink(path);
    buf_free(&text);
    buf_free(&t);
}

/* Many incremental-state clears: the interned table keeps the live
 * generation only (this would hold 200k entries otherwise). */
static void test_cleared_state_is_dropped(void) {
    struct buf t = {0};
    for (int i = 0; i < 20000; i++) {
        interned_stacks(&t, 3, 1);
        sample(&t, 3, (uint64_t)i, 1, 1);
    }
    struct trace_model m;
    char err[256];
    CHECK(trace_read_buffer(t.data, t.len, &m, err, sizeof err) == 0);
    CHECK_EQ_U(m.nsamples, 20000);
    CHECK_EQ_U(m.unknown_iids, 0);
    CHECK(m.nsamples == 20000 && m.samples[19999].nframes == 3 &&
          !strcmp(m.samples[19999].frames[2].function, "parse"));
    trace_model_free(&m);
    buf_free(&t);
}

/* `test_trace_stream --corpus DIR` writes the traces built here as fuzz seeds. */
static void write_corpus(const char *dir) {
    struct buf t = {0};
    interned_stacks(&t, 1, 1);
    sample(&t, 1, 1000, 7, 1);
    sample(&t, 1, 1001, 7, 3);
    sample(&t, 1, 1002, 7, 42);
    clear_state(&t, 1);
    sample(&t, 1, 1003, 7, 1);
    enum { B = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN, E = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END };
    track(&t, 1, "A");
    event(&t, 1, 100, B, "outer", "n", 1);
    event(&t, 1, 110, B, "inner", NULL, 0);
    event(&t, 1, 120, E, NULL, "n", 2);
    event(&t, 1, 130, B, "open", NULL, 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/samples_and_nesting", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(t.data, 1, t.len, f) == t.len);
    if (f) fclose(f);
    buf_free(&t);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--corpus")) {
        write_corpus(argv[2]);
        return check_done("test_trace_stream --corpus");
    }
    test_callstacks();
    test_streaming();
    test_cleared_state_is_dropped();
    return check_done("test_trace_stream");
}
