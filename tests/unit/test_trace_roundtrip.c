/* Round trip: records from a synthetic segment go through the encoder and
 * the trace file writer (each compression mode), and the reader must give
 * back exactly the slices, names, args and metadata that went in. Also: the
 * encoder's nesting repair after lost records, and the reader's refusal of
 * truncated, empty and foreign files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fake_segment.h"
#include "reader/trace_reader.h"
#include "writer/encoder.h"
#include "writer/trace_file.h"

static void rec(struct enc_process *p, uint32_t ring, int type, uint32_t str, uint64_t ts, int64_t a0) {
    struct astrace_rec_arg r = {{(uint16_t)type, sizeof r, str, ts}, a0};
    encoder_record(p, ring, 1, 4242 + ring, ring ? "worker" : "MainThread", &r.h);
}

static const struct trace_slice *find_slice(const struct trace_model *m, const char *name, size_t nth) {
    for (size_t i = 0; i < m->nslices; i++)
        if (!strcmp(m->slices[i].name, name) && nth-- == 0) return &m->slices[i];
    return NULL;
}

static void write_sample_trace(const char *path, enum trace_compression comp, int nloops) {
    struct trace_file tf;
    char err[256];
    CHECK(trace_file_open(&tf, path, comp, 1, err, sizeof err) == 0);
    struct encoder e;
    encoder_init(&e, &tf);
    const char *argv[] = {"python3", "app.py"};
    struct enc_session_info info = {argv, 2, trace_compression_name(comp), 123, 1000000000ull, 4096, 1};
    encoder_begin_session(&e, &info);
    struct astrace_seg_header *seg = fake_segment();
    uint32_t cb = add_string(seg, "fetch_page");
    uint32_t cb2 = add_string(seg, "Task.__step");
    struct enc_process *p = encoder_add_process(&e, seg);
    uint64_t t = 2000000000ull;
    for (int i = 0; i < nloops; i++) {
        rec(p, 0, ASTRACE_REC_LOOP_BEGIN, 0, t, 0);
        rec(p, 0, ASTRACE_REC_POLL_BEGIN, 0, t + 10, i == 0 ? 200000000 : -1);
        rec(p, 0, ASTRACE_REC_POLL_END, 0, t + 200000010, 3);
        rec(p, 0, ASTRACE_REC_CALLBACK_BEGIN, i % 2 ? cb2 : cb, t + 200000020, 0);
        rec(p, 0, ASTRACE_REC_CALLBACK_END, 0, t + 200000520, i == 1);
        rec(p, 0, ASTRACE_REC_LOOP_END, 0, t + 200000600, 0);
        t += 300000000ull;
    }
    /* A lost CALLBACK_BEGIN: its END must not close the loop slice. */
    rec(p, 1, ASTRACE_REC_LOOP_BEGIN, 0, t, 0);
    rec(p, 1, ASTRACE_REC_CALLBACK_END, 0, t + 5, 0);
    rec(p, 1, ASTRACE_REC_LOOP_END, 0, t + 10, 0);
    /* A lost LOOP_END: the next LOOP_BEGIN closes the open one first. */
    rec(p, 1, ASTRACE_REC_LOOP_BEGIN, 0, t + 20, 0);
    rec(p, 1, ASTRACE_REC_CALLBACK_BEGIN, cb, t + 21, 0);
    rec(p, 1, ASTRACE_REC_LOOP_BEGIN, 0, t + 30, 0);
    /* ...and the process ends with it open. */
    encoder_end_process(p, "exited with status 0", 7);
    encoder_end_session(&e, 7, 1, "");
    CHECK(trace_file_close(&tf) == 0);
    encoder_free(&e);
    free(seg);
}

static void test_roundtrip(enum trace_compression comp) {
    char path[] = "/tmp/astrace-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_sample_trace(path, comp, 50);
    struct trace_model m;
    char err[256];
    int rc = trace_read_file(path, &m, err, sizeof err);
    if (rc) fprintf(stderr, "read: %s\n", err);
    CHECK(rc == 0);
    CHECK_EQ_U(m.clock_snapshots, 1);
    CHECK_EQ_U(m.unmatched_ends, 0);
    CHECK_EQ_U(m.unknown_iids, 0);
    if (comp == TRACE_COMPRESS_ZSTD) CHECK(m.bundles_zstd >= 1 && m.bundles_zlib == 0);
    if (comp == TRACE_COMPRESS_DEFLATE) CHECK(m.bundles_zlib >= 1 && m.bundles_zstd == 0);
    if (comp == TRACE_COMPRESS_NONE) CHECK(m.bundles_zlib == 0 && m.bundles_zstd == 0);
    /* 50 loops on the main thread + 3 on the worker. */
    size_t loops = 0, selects = 0, fetch = 0, step = 0;
    for (size_t i = 0; i < m.nslices; i++) {
        const struct trace_slice *s = &m.slices[i];
        loops += !strcmp(s->name, "loop iteration");
        selects += !strcmp(s->name, "select");
        fetch += !strcmp(s->name, "fetch_page");
        step += !strcmp(s->name, "Task.__step");
        CHECK(s->dur >= 0); /* everything was closed */
    }
    CHECK_EQ_U(loops, 53);
    CHECK_EQ_U(selects, 50);
    CHECK_EQ_U(fetch, 26);
    CHECK_EQ_U(step, 25);
    const struct trace_slice *sel = find_slice(&m, "select", 0);
    CHECK(sel && sel->dur == 200000000 && sel->depth == 1);
    const struct trace_arg *a = sel ? trace_args_get(&sel->args, "timeout_ms") : NULL;
    CHECK(a && a->type == ARG_DOUBLE && a->v.d == 200.0);
    a = sel ? trace_args_get(&sel->args, "ready_events") : NULL;
    CHECK(a && a->type == ARG_UINT && a->v.u == 3);
    const struct trace_slice *cb = find_slice(&m, "Task.__step", 0);
    CHECK(cb && cb->dur == 500 && cb->depth == 1);
    CHECK(cb && trace_args_get(&cb->args, "raised") && trace_args_get(&cb->args, "raised")->v.i == 1);
    const struct trace_slice *loop = find_slice(&m, "loop iteration", 0);
    CHECK(loop && loop->dur == 200000600 && loop->depth == 0);
    /* The worker's repaired loop slices. */
    const struct trace_slice *w1 = find_slice(&m, "loop iteration", 50);
    CHECK(w1 && w1->dur == 10 && w1->depth == 0);
    const struct trace_slice *w2 = find_slice(&m, "loop iteration", 51);
    CHECK(w2 && w2->dur == 10 && trace_args_get(&w2->args, "unfinished"));
    const struct trace_slice *w3 = find_slice(&m, "loop iteration", 52);
    CHECK(w3 && w3->dur == 0 && trace_args_get(&w3->args, "unfinished"));
    /* Tracks: process with argv, two threads with names. */
    int proc = 0, threads = 0;
    for (size_t i = 0; i < m.ntracks; i++) {
        const struct trace_track *t = &m.tracks[i];
        if (t->kind == TRACK_PROCESS) {
            proc++;
            CHECK(t->pid == 4242 && t->ncmdline == 3 && !strcmp(t->name, "app.py"));
        }
        if (t->kind == TRACK_THREAD) {
            threads++;
            CHECK(t->pid == 4242);
            CHECK(!strcmp(t->name, t->tid == 4242 ? "MainThread" : "worker"));
        }
    }
    CHECK_EQ_U(proc, 1);
    CHECK_EQ_U(threads, 2);
    /* Metadata instants. */
    int saw_session = 0, saw_summary = 0, saw_end = 0;
    for (size_t i = 0; i < m.ninstants; i++) {
        const struct trace_instant *in = &m.instants[i];
        if (!strcmp(in->name, "astrace: session")) {
            saw_session = 1;
            const struct trace_arg *c = trace_args_get(&in->args, "command");
            CHECK(c && !strcmp(c->v.s, "python3 app.py"));
        }
        if (!strcmp(in->name, "astrace: summary")) {
            saw_summary = 1;
            CHECK(trace_args_get(&in->args, "events_dropped")->v.u == 7);
        }
        if (!strcmp(in->name, "astrace: process end")) {
            saw_end = 1;
            CHECK(!strcmp(trace_args_get(&in->args, "ended")->v.s, "exited with status 0"));
        }
    }
    CHECK(saw_session && saw_summary && saw_end);
    trace_model_free(&m);

    /* Every truncation of the file is refused with a message, never a crash
     * (a cut exactly at a packet boundary is a valid shorter trace). */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)n);
    CHECK(fread(data, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    int refused = 0, accepted = 0;
    for (long cut = 0; cut < n; cut += (n / 97) + 1) {
        rc = trace_read_buffer(data, (size_t)cut, &m, err, sizeof err);
        if (rc) {
            refused++;
            CHECK(err[0] != 0);
        } else {
            accepted++;
        }
        trace_model_free(&m);
    }
    CHECK(refused > accepted);
    free(data);
    unlink(path);
}

static void test_bad_inputs(void) {
    struct trace_model m;
    char err[256];
    CHECK(trace_read_buffer((const uint8_t *)"", 0, &m, err, sizeof err) == -1);
    CHECK(strstr(err, "empty") != NULL);
    trace_model_free(&m);
    const char *text = "#!/usr/bin/env python3\nprint('hello')\n";
    CHECK(trace_read_buffer((const uint8_t *)text, strlen(text), &m, err, sizeof err) == -1);
    CHECK(strstr(err, "not a Perfetto") != NULL);
    trace_model_free(&m);
    /* A packet whose zstd bundle is garbage. */
    uint8_t bad[] = {0x0A, 0x07, 0xAA, 0x08, 0x04, 'j', 'u', 'n', 'k'};
    CHECK(trace_read_buffer(bad, sizeof bad, &m, err, sizeof err) == -1);
    CHECK(strstr(err, "zstd") != NULL);
    trace_model_free(&m);
    CHECK(trace_read_file("/nonexistent/trace.pftrace", &m, err, sizeof err) == -1);
    CHECK(strstr(err, "cannot open") != NULL);
    trace_model_free(&m);
}

static void test_bundles_stay_small(void) {
    char path[] = "/tmp/astrace-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_sample_trace(path, TRACE_COMPRESS_ZSTD, 40000);
    FILE *f = fopen(path, "rb");
    uint8_t hdr[16];
    size_t bundles = 0, biggest = 0;
    long off = 0;
    for (;;) {
        fseek(f, off, SEEK_SET);
        size_t got = fread(hdr, 1, sizeof hdr, f);
        if (got < 2) break;
        uint64_t len;
        size_t vl = varint_get(hdr + 1, got - 1, &len);
        CHECK(vl > 0);
        if (!vl) break;
        if (len > biggest) biggest = len;
        bundles++;
        off += 1 + (long)vl + (long)len;
    }
    fclose(f);
    CHECK(bundles > 3);
    CHECK(biggest < 512 * 1024);
    unlink(path);
}

/* Counter events and perf samples (what later producers add) read back. */
static void test_counters_and_samples(void) {
    char path[] = "/tmp/astrace-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    struct trace_file tf;
    char err[256];
    CHECK(trace_file_open(&tf, path, TRACE_COMPRESS_ZSTD, 1, err, sizeof err) == 0);
    Astrace__Pb__CounterDescriptor cd;
    astrace__pb__counter_descriptor__init(&cd);
    Astrace__Pb__TrackDescriptor td;
    astrace__pb__track_descriptor__init(&td);
    td.has_uuid = 1;
    td.uuid = 77;
    td.name = "ready queue";
    td.counter = &cd;
    Astrace__Pb__TracePacket p;
    astrace__pb__trace_packet__init(&p);
    p.has_trusted_packet_sequence_id = 1;
    p.trusted_packet_sequence_id = 5;
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR;
    p.track_descriptor = &td;
    trace_file_write(&tf, &p);
    for (int i = 0; i < 10; i++) {
        Astrace__Pb__TrackEvent ev;
        astrace__pb__track_event__init(&ev);
        ev.has_type = 1;
        ev.type = ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_COUNTER;
        ev.has_track_uuid = 1;
        ev.track_uuid = 77;
        ev.has_counter_value = 1;
        ev.counter_value = i * i;
        astrace__pb__trace_packet__init(&p);
        p.has_timestamp = 1;
        p.timestamp = 1000 + (uint64_t)i;
        p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT;
        p.track_event = &ev;
        trace_file_write(&tf, &p);
    }
    Astrace__Pb__PerfSample ps;
    astrace__pb__perf_sample__init(&ps);
    ps.has_pid = ps.has_tid = ps.has_callstack_iid = 1;
    ps.pid = 10;
    ps.tid = 11;
    ps.callstack_iid = 3;
    astrace__pb__trace_packet__init(&p);
    p.has_timestamp = 1;
    p.timestamp = 2000;
    p.data_case = ASTRACE__PB__TRACE_PACKET__DATA_PERF_SAMPLE;
    p.perf_sample = &ps;
    trace_file_write(&tf, &p);
    CHECK(trace_file_close(&tf) == 0);
    struct trace_model m;
    CHECK(trace_read_file(path, &m, err, sizeof err) == 0);
    CHECK_EQ_U(m.ncounters, 10);
    CHECK(m.ncounters == 10 && m.counters[9].value == 81.0 && m.counters[9].ts == 1009);
    CHECK(m.ntracks == 1 && m.tracks[0].kind == TRACK_COUNTER);
    CHECK_EQ_U(m.nsamples, 1);
    CHECK(m.nsamples == 1 && m.samples[0].tid == 11 && m.samples[0].callstack_iid == 3);
    trace_model_free(&m);
    unlink(path);
}

int main(void) {
    test_counters_and_samples();
    test_roundtrip(TRACE_COMPRESS_ZSTD);
    test_roundtrip(TRACE_COMPRESS_DEFLATE);
    test_roundtrip(TRACE_COMPRESS_NONE);
    test_bad_inputs();
    test_bundles_stay_small();
    return check_done("test_trace_roundtrip");
}
