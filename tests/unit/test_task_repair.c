/* Task lanes after lost records: whichever task records a full ring drops,
 * every task track stays balanced (no slice left open, no END without its
 * BEGIN), a step whose end was lost is closed where the thread shows it is
 * over, and a task whose last step's begin was lost still ends with its
 * outcome. Records go straight into the encoder; the trace is read back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fake_segment.h"
#include "reader/trace_reader.h"
#include "writer/encoder.h"
#include "writer/trace_file.h"

static struct enc_process *proc;
static uint32_t coro_main, coro_child, coro_worker, cb_name;

static void feed(uint32_t ring, const void *rec) {
    encoder_record(proc, ring, 1, 100 + ring, "MainThread", rec);
}

static void create(uint32_t ring, uint64_t ts, uint64_t task, uint32_t coro, int64_t number, uint16_t flags) {
    struct astrace_rec_task_create r = {
        .h = {ASTRACE_REC_TASK_CREATE, sizeof r, coro, ts}, .task = task, .flags = flags, .default_number = number};
    feed(ring, &r);
}

static void callback_begin(uint32_t ring, uint64_t ts, uint64_t task) {
    struct astrace_rec_callback r = {
        .h = {ASTRACE_REC_CALLBACK_BEGIN, sizeof r, cb_name, ts}, .task = (int64_t)task, .lag_ns = -1};
    feed(ring, &r);
}

static void callback_end(uint32_t ring, uint64_t ts) {
    struct astrace_rec_arg r = {{ASTRACE_REC_CALLBACK_END, sizeof r, 0, ts}, 0};
    feed(ring, &r);
}

static void step_end_flags(uint32_t ring, uint64_t ts, uint64_t task, uint8_t outcome, uint8_t flags) {
    struct astrace_rec_task_step_end r = {
        .h = {ASTRACE_REC_TASK_STEP_END, sizeof r, 0, ts}, .task = task, .outcome = outcome, .flags = flags};
    feed(ring, &r);
}

static void step_end(uint32_t ring, uint64_t ts, uint64_t task, uint8_t outcome) {
    step_end_flags(ring, ts, task, outcome, 0);
}

/* One whole step: callback, task step, its end. */
static void step(uint32_t ring, uint64_t begin, uint64_t end, uint64_t task, uint16_t outcome) {
    callback_begin(ring, begin, task);
    step_end(ring, end, task, outcome);
    callback_end(ring, end + 1);
}

#define MS 1000000ull

static void write_trace(const char *path) {
    struct trace_file tf;
    char err[256];
    CHECK(trace_file_open(&tf, path, TRACE_COMPRESS_NONE, 1, err, sizeof err) == 0);
    struct encoder e;
    encoder_init(&e, &tf);
    const char *argv[] = {"python3", "app.py"};
    struct enc_session_info info = {argv, 2, "none", 123, 1000000000ull, 4096, 1, "off"};
    encoder_begin_session(&e, &info);
    struct astrace_seg_header *seg = fake_segment();
    coro_main = add_string(seg, "main");
    coro_child = add_string(seg, "child");
    coro_worker = add_string(seg, "worker");
    cb_name = add_string(seg, "Task.__step");
    proc = encoder_add_process(&e, seg);
    uint64_t t = 2000 * MS;

    /* Ring 0. Task-1: its first step's end is lost; the callback's end shows
     * the step is over. Its second step loses both ends: the next callback
     * shows it. Its third step finishes it. */
    create(0, t, 0x1000, coro_main, 1, 0);
    callback_begin(0, t + 1 * MS, 0x1000);
    callback_end(0, t + 2 * MS); /* step end lost */
    callback_begin(0, t + 4 * MS, 0x1000);
    callback_begin(0, t + 6 * MS, 0); /* step end and callback end lost */
    callback_end(0, t + 7 * MS);
    step(0, t + 8 * MS, t + 9 * MS, 0x1000, ASTRACE_STEP_RESULT);

    /* Ring 1. Task-2 waits (one record ends its step and the step's
     * callback, as the runtime writes them); its last step's begin (the
     * callback's) is lost, its end says it finished with an exception. */
    create(1, t, 0x2000, coro_main, 2, 0);
    callback_begin(1, t + 1 * MS, 0x2000);
    step_end_flags(1, t + 2 * MS, 0x2000, ASTRACE_STEP_SUSPENDED, ASTRACE_STEP_ENDS_CALLBACK);
    step_end(1, t + 5 * MS, 0x2000, ASTRACE_STEP_EXCEPTION); /* begin lost */
    callback_end(1, t + 5 * MS);

    /* Ring 2. Task-3's step creates eager Task-4, whose step's end is lost:
     * Task-3's own step end closes it. */
    create(2, t, 0x3000, coro_main, 3, 0);
    callback_begin(2, t + 1 * MS, 0x3000);
    create(2, t + 2 * MS, 0x4000, coro_child, 4, ASTRACE_TASK_EAGER);
    step_end(2, t + 4 * MS, 0x3000, ASTRACE_STEP_RESULT); /* Task-4's end lost before it */
    callback_end(2, t + 4 * MS);
    step(2, t + 6 * MS, t + 7 * MS, 0x4000, ASTRACE_STEP_RESULT);

    /* Ring 3. More tasks of one coroutine than it has lanes: the last ones
     * run on the shared "(more tasks)" track, where a lost step end must not
     * nest the next task's run inside it. */
    for (uint64_t i = 0; i < 70; i++) create(3, t, 0x10000 + i * 0x100, coro_worker, 100 + (int64_t)i, 0);
    uint64_t ts = t + MS;
    for (uint64_t i = 0; i < 70; i++, ts += MS) {
        callback_begin(3, ts, 0x10000 + i * 0x100);
        if (i % 7 != 3) step_end(3, ts + MS / 2, 0x10000 + i * 0x100, ASTRACE_STEP_SUSPENDED);
        if (i % 7 != 5) callback_end(3, ts + MS / 2 + 1);
    }

    encoder_end_process(proc, "exited with status 0", 0);
    encoder_end_session(&e, 0, 1, "");
    CHECK(trace_file_close(&tf) == 0);
    encoder_free(&e);
    free(seg);
}

static size_t track_named(const struct trace_model *m, const char *name) {
    for (size_t i = 0; i < m->ntracks; i++)
        if (m->tracks[i].name && !strcmp(m->tracks[i].name, name)) return i;
    fprintf(stderr, "no track named %s\n", name);
    return (size_t)-1;
}

/* The n-th slice named `name` on a track, in the order they began. */
static const struct trace_slice *slice_on(const struct trace_model *m, size_t track, const char *name, size_t nth) {
    for (size_t i = 0; i < m->nslices; i++)
        if (m->slices[i].track == track && !strcmp(m->slices[i].name, name) && nth-- == 0) return &m->slices[i];
    return NULL;
}

static int has_bool(const struct trace_slice *s, const char *key) {
    const struct trace_arg *a = s ? trace_args_get(&s->args, key) : NULL;
    return a && a->type == ARG_BOOL && a->v.i;
}

static const char *str_arg(const struct trace_slice *s, const char *key) {
    const struct trace_arg *a = s ? trace_args_get(&s->args, key) : NULL;
    return a && a->type == ARG_STRING ? a->v.s : "";
}

int main(void) {
    char path[] = "/tmp/astrace-unit-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_trace(path);
    struct trace_model m;
    char err[256];
    int rc = trace_read_file(path, &m, err, sizeof err);
    if (rc) fprintf(stderr, "read: %s\n", err);
    CHECK(rc == 0);
    unlink(path);
    if (rc) return check_done("test_task_repair");

    /* Balanced everywhere. */
    CHECK_EQ_U(m.unmatched_ends, 0);
    for (size_t i = 0; i < m.nslices; i++) {
        if (m.slices[i].dur < 0) fprintf(stderr, "open slice: %s\n", m.slices[i].name);
        CHECK(m.slices[i].dur >= 0);
    }
    uint64_t t = 2000 * MS;

    /* Task-1: lifetime from creation to its last step's end, result. */
    size_t lane = track_named(&m, "Task-1 main");
    const struct trace_slice *life = slice_on(&m, lane, "Task-1 main", 0);
    CHECK(life && life->ts == t && life->dur == (int64_t)(9 * MS) && life->depth == 0);
    CHECK(!strcmp(str_arg(life, "outcome"), "result"));
    const struct trace_slice *run1 = slice_on(&m, lane, "run", 0);
    CHECK(run1 && run1->ts == t + MS && run1->dur == (int64_t)MS && run1->depth == 1 && has_bool(run1, "unfinished"));
    const struct trace_slice *lost1 = slice_on(&m, lane, "unknown (events lost)", 0);
    CHECK(lost1 && lost1->ts == t + 2 * MS && lost1->dur == (int64_t)(2 * MS) && lost1->depth == 1);
    const struct trace_slice *run2 = slice_on(&m, lane, "run", 1);
    CHECK(run2 && run2->ts == t + 4 * MS && run2->dur == (int64_t)(2 * MS) && has_bool(run2, "unfinished"));
    const struct trace_slice *run3 = slice_on(&m, lane, "run", 2);
    CHECK(run3 && run3->ts == t + 8 * MS && run3->dur == (int64_t)MS && run3->depth == 1 &&
          !has_bool(run3, "unfinished"));

    /* Task-2: its wait ends where the step it lost ended; exception. */
    lane = track_named(&m, "Task-2 main");
    life = slice_on(&m, lane, "Task-2 main", 0);
    CHECK(life && life->dur == (int64_t)(5 * MS) && !strcmp(str_arg(life, "outcome"), "exception"));
    CHECK(slice_on(&m, lane, "run", 1) == NULL);
    const struct trace_slice *cb = NULL;
    for (size_t i = 0; i < m.nslices && !cb; i++)
        if (!strcmp(m.slices[i].name, "step Task-2 main")) cb = &m.slices[i];
    CHECK(cb && cb->ts == t + MS && cb->dur == (int64_t)MS && !has_bool(cb, "unfinished"));

    /* Task-4 (eager): its first run closed by Task-3's step end; then it
     * finishes normally. */
    lane = track_named(&m, "Task-4 child");
    const struct trace_slice *eager_run = slice_on(&m, lane, "run", 0);
    CHECK(eager_run && eager_run->ts == t + 2 * MS && eager_run->dur == (int64_t)(2 * MS) &&
          has_bool(eager_run, "unfinished"));
    life = slice_on(&m, lane, "Task-4 child", 0);
    CHECK(life && life->dur == (int64_t)(5 * MS) && !strcmp(str_arg(life, "outcome"), "result"));
    life = slice_on(&m, track_named(&m, "Task-3 main"), "Task-3 main", 0);
    CHECK(life && life->dur == (int64_t)(4 * MS));

    /* The shared track: one run per task beyond the lanes, none nested. */
    size_t more = track_named(&m, "worker (more tasks)");
    size_t runs = 0;
    for (size_t i = 0; i < m.nslices; i++)
        if (m.slices[i].track == more) {
            runs++;
            CHECK(m.slices[i].depth == 0);
        }
    CHECK_EQ_U(runs, 70 - 64);
    trace_model_free(&m);
    return check_done("test_task_repair");
}
