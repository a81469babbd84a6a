/* Trace reader: a Perfetto protobuf trace (plain, zstd or zlib bundles) into
 * an in-memory model of tracks, slices, instants and counters.
 *
 * It is the one decoder of the project: `astrace dump`, the tests, and the
 * commands that compare traces all read through it. It is written for
 * hostile input (it is fuzzed): every length is checked, decompression is
 * bounded, and any defect ends the read with a message saying where.
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
    /* open slices (indices into model.slices), for BEGIN/END matching */
    size_t *open;
    size_t nopen, capopen;
};

/* Flow ids bound to a slice or instant: `out` start or continue a flow,
 * `in` terminate one (TrackEvent.flow_ids / terminating_flow_ids). */
struct trace_flows {
    uint64_t *out, *in;
    size_t nout, nin;
};

struct trace_slice {
    size_t track; /* index into model.tracks */
    struct trace_flows flows;
    uint64_t ts;
    int64_t dur; /* -1 while unterminated */
    char *name;
    uint32_t depth;
    struct trace_args args;
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

/* A callstack sample (PerfSample); frames are not resolved here yet. */
struct trace_sample {
    uint64_t ts;
    uint32_t pid, tid;
    uint64_t callstack_iid;
};

struct trace_model {
    struct trace_track *tracks;
    size_t ntracks, captracks;
    struct trace_slice *slices;
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
    uint64_t unknown_iids;   /* names that referred to undefined interned ids */
    uint64_t first_ts, last_ts;
    struct iid_map *iids;
};

/* Reads `path` into `m`. Returns 0, or -1 with a message in err. */
int trace_read_file(const char *path, struct trace_model *m, char *err, size_t errlen);
/* Same, from memory (the fuzz target's entry). */
int trace_read_buffer(const uint8_t *data, size_t len, struct trace_model *m, char *err, size_t errlen);
void trace_model_free(struct trace_model *m);

/* Helpers for callers. */
const struct trace_arg *trace_args_get(const struct trace_args *a, const char *name);
size_t trace_find_track(const struct trace_model *m, uint64_t uuid); /* (size_t)-1 if absent */

#endif
