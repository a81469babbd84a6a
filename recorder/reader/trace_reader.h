/* Trace reader: a Perfetto protobuf trace (plain, zstd or zlib bundles),
 * delivered as a stream of events to a visitor, or read whole into an
 * in-memory model of tracks, slices, instants, counters and samples.
 *
 * It is the one decoder of the project: `astrace dump`, `astrace diff`, the
 * tests and the fuzz target all read through it. It is written for hostile
 * input (it is fuzzed): every length is checked, decompression is bounded,
 * and any defect ends the read with a message saying where.
 *
 * Streaming (trace_read_stream): the reader keeps only what it must to decode
 * what comes next: the tracks, each track's stack of open slices, each
 * sequence's interned data (names, frames, callstacks, mappings) and one
 * compressed bundle at a time. A slice is delivered when its END is seen (with
 * the args of BEGIN and END), so a consumer that aggregates needs memory for
 * its aggregates only. The model reader (trace_read_file) is a visitor that
 * keeps everything.
 */
#ifndef ASTRACE_TRACE_READER_H
#define ASTRACE_TRACE_READER_H

#include <stddef.h>
#include <stdint.h>

enum arg_type { ARG_INT, ARG_UINT, ARG_DOUBLE, ARG_BOOL, ARG_STRING };

struct trace_arg {
    char *name;
    enum arg_type type;
    union {
        int64_t i;
        uint64_t u;
        double d;
        char *s;
    } v;
};

struct trace_args {
    struct trace_arg *items;
    size_t n;
};

enum track_kind { TRACK_PLAIN, TRACK_PROCESS, TRACK_THREAD, TRACK_COUNTER };

struct trace_track {
    uint64_t uuid;
    uint64_t parent_uuid;
    enum track_kind kind;
    char *name;
    int32_t pid;
    int64_t tid;
    char **cmdline;
    size_t ncmdline;
};

/* Flow ids bound to a slice or instant: `out` start or continue a flow,
 * `in` terminate one (TrackEvent.flow_ids / terminating_flow_ids). */
struct trace_flows {
    uint64_t *out, *in;
    size_t nout, nin;
};

struct trace_slice {
    size_t track; /* index of its track (model.tracks, or the reader's table while streaming) */
    struct trace_flows flows;
    uint64_t ts;
    int64_t dur; /* -1 while unterminated */
    char *name;
    uint32_t depth;
    struct trace_args args;
    uint64_t ordinal; /* BEGIN order: the n-th slice begun in the trace (model.slices[ordinal]) */
};

struct trace_instant {
    size_t track;
    struct trace_flows flows;
    uint64_t ts;
    char *name;
    struct trace_args args;
};

struct trace_counter {
    size_t track;
    uint64_t ts;
    double value;
};

/* One frame of a resolved callstack: the function name and, when the frame
 * has a mapping with a path, that path (else NULL). */
struct trace_frame {
    char *function;
    char *mapping;
};

/* A callstack sample (PerfSample) with its frames resolved through the
 * sequence's interned callstacks, frames, function names and mappings,
 * outermost frame first. An undefined callstack iid leaves nframes 0 and
 * `resolved` 0 (and counts as an unknown iid); an undefined frame or function
 * name within a known callstack gives a frame named "?". */
struct trace_sample {
    uint64_t ts;
    uint32_t pid, tid;
    uint64_t callstack_iid;
    struct trace_frame *frames;
    size_t nframes;
    int resolved;
};

/* Counts about the read (every field is also in the model). */
struct trace_stats {
    uint64_t packets; /* all packets, inner ones included */
    uint64_t bundles_zstd, bundles_zlib;
    uint64_t bytes; /* file size */
    uint64_t clock_snapshots;
    uint64_t unmatched_ends; /* END events with nothing open */
    uint64_t unknown_iids;   /* references to undefined interned ids (names, callstacks, frames) */
    uint64_t unterminated;   /* slices still open at the end (delivered with dur -1) */
    uint64_t first_ts, last_ts;
};

/* ---- streaming ------------------------------------------------------------------
 *
 * Every callback is optional. Pointers handed to a callback (names, args,
 * tracks, frames, the open ancestors) belong to the reader and are valid only
 * during the call; copy what you keep.
 *
 * track:   a track was created (first reference by uuid) or its descriptor
 *          seen or updated; `index` is the track's stable index.
 * slice:   a slice ended (or, at the end of the trace, was still open: dur
 *          -1, innermost first). `open[0..nopen)` are the slices still open
 *          on the same track around it, outermost first (open[nopen-1] is its
 *          parent; nopen == s->depth).
 * instant, counter, sample: as they come.
 * The `track` argument is the event's track. */
struct trace_visitor {
    void (*track)(void *ctx, size_t index, const struct trace_track *t);
    void (*slice)(void *ctx, const struct trace_slice *s, const struct trace_track *track,
                  const struct trace_slice *open, size_t nopen);
    void (*instant)(void *ctx, const struct trace_instant *in, const struct trace_track *track);
    void (*counter)(void *ctx, const struct trace_counter *c, const struct trace_track *track);
    void (*sample)(void *ctx, const struct trace_sample *s);
};

/* Streams `path` through `v`. Reads the file sequentially (it is not mapped
 * or loaded whole). Returns 0, or -1 with a message in err (callbacks may
 * have run for what came before the defect). `stats` may be NULL. */
int trace_read_stream(const char *path, const struct trace_visitor *v, void *ctx, struct trace_stats *stats, char *err,
                      size_t errlen);
/* Same, from memory. */
int trace_read_stream_buffer(const uint8_t *data, size_t len, const struct trace_visitor *v, void *ctx,
                             struct trace_stats *stats, char *err, size_t errlen);

/* ---- model ------------------------------------------------------------------------ */

struct trace_model {
    struct trace_track *tracks;
    size_t ntracks, captracks;
    struct trace_slice *slices; /* in BEGIN order */
    size_t nslices, capslices;
    struct trace_instant *instants;
    size_t ninstants, capinstants;
    struct trace_counter *counters;
    size_t ncounters, capcounters;
    struct trace_sample *samples;
    size_t nsamples, capsamples;
    uint64_t packets; /* all packets, inner ones included */
    uint64_t bundles_zstd, bundles_zlib;
    uint64_t bytes; /* file size */
    uint64_t clock_snapshots;
    uint64_t unmatched_ends; /* END events with nothing open */
    uint64_t unknown_iids;   /* references to undefined interned ids */
    uint64_t first_ts, last_ts;
    struct trace_model_index *index; /* track uuid -> index */
};

/* Reads `path` into `m`. Returns 0, or -1 with a message in err; either way
 * `m` is to be released with trace_model_free. */
int trace_read_file(const char *path, struct trace_model *m, char *err, size_t errlen);
/* Same, from memory (the fuzz target's entry). */
int trace_read_buffer(const uint8_t *data, size_t len, struct trace_model *m, char *err, size_t errlen);
void trace_model_free(struct trace_model *m);

/* Helpers for callers. */
const struct trace_arg *trace_args_get(const struct trace_args *a, const char *name);
size_t trace_find_track(const struct trace_model *m, uint64_t uuid); /* (size_t)-1 if absent */

#endif
