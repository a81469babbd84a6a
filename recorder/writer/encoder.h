/* Encoder: turns the records drained from a traced process's rings into
 * Perfetto TracePackets and hands them to the trace file.
 *
 * Each traced process (one shared-memory segment) is one packet sequence:
 * its strings are interned on that sequence (an event name's iid is the
 * segment's string id), its threads are thread tracks under its process
 * track. The recorder's own metadata goes on sequence 1, on a global
 * "astrace" track.
 *
 * Slices are kept well nested per thread whatever the rings delivered: a
 * BEGIN closes anything open at its own level or deeper, and an END whose
 * BEGIN was dropped is discarded, so a full ring can lose events but never
 * produce a mis-nested track. Every slice still open when a process goes
 * away is closed at that thread's last timestamp, with `unfinished=true`.
 */
#ifndef ASTRACE_ENCODER_H
#define ASTRACE_ENCODER_H

#include <stdint.h>

#include "astrace/record.h"
#include "astrace/shm_format.h"
#include "writer/trace_file.h"

struct enc_thread;
struct enc_process;

struct encoder {
    struct trace_file *tf;
    uint64_t next_uuid;
    uint64_t next_flow;
    uint32_t next_seq;
    uint64_t session_track_uuid;
    uint64_t events;  /* records turned into trace events */
    uint64_t last_ts; /* newest timestamp seen */
    int counters;     /* loop-health counters on */
    uint64_t slow_ns; /* callbacks and iterations this long are marked slow */
    uint64_t slow_callbacks;
    uint64_t slowest_ns;
    char slowest_name[200];
    uint64_t samples;                             /* stack samples written */
    uint64_t samples_dropped, samples_unreadable; /* lost, as counted by the runtimes */
    struct enc_pid *pids;                         /* pid -> process track uuid (one track per pid) */
    size_t npids, cap_pids;
};

struct enc_process {
    struct encoder *enc;
    uint32_t seq_id;
    int32_t pid;
    uint64_t process_uuid;
    const struct astrace_seg_header *seg; /* mapped segment (strings, header text) */
    struct enc_process_ext *ext;          /* interning and tasks (encoder_internal.h) */
    struct enc_thread *threads;           /* indexed by ring index */
    uint32_t nthreads;
    uint64_t records;
    uint64_t last_ts;
    uint64_t rss_track; /* process RSS counter, 0 until sampled */
    uint64_t samples_dropped, samples_unreadable;
};

struct enc_session_info {
    const char *const *argv;
    int argc;
    const char *compression;
    uint64_t start_realtime_ns;
    uint64_t start_boottime_ns;
    uint64_t ring_size;
    int tasks;                /* task tracks recorded */
    const char *sampler;      /* "1000 Hz wall", "off", ... */
    const char *record_clock; /* what the runtime stamps records with: "tsc" or "boottime" */
};

void encoder_init(struct encoder *e, struct trace_file *tf);
/* Clock snapshot and the session's metadata; call once, first. */
void encoder_begin_session(struct encoder *e, const struct enc_session_info *info);
/* Starts a sequence for a newly found segment. */
struct enc_process *encoder_add_process(struct encoder *e, const struct astrace_seg_header *seg);
/* One record from ring `ring_index` (generation `gen`, owner tid). */
void encoder_record(struct enc_process *p, uint32_t ring_index, uint32_t gen, int64_t tid, const char *thread_name,
                    const struct astrace_rec_hdr *rec);
/* Stack samples the process lost (full sample rings, unreadable stacks);
 * call before encoder_end_process, which reports them. */
void encoder_sample_losses(struct enc_process *p, uint64_t dropped, uint64_t unreadable);
/* Closes what is open and writes the process summary; frees p. */
void encoder_end_process(struct enc_process *p, const char *how_ended, uint64_t dropped_records);
/* A resident-memory reading of the process, taken by the recorder. */
void encoder_rss(struct enc_process *p, uint64_t ts, uint64_t bytes);
/* Writes the session summary; call last. */
void encoder_end_session(struct encoder *e, uint64_t dropped_total, uint32_t processes, const char *notes);
void encoder_free(struct encoder *e);

/* A segment string as text (valid until the next call), or fallback. */
const char *enc_seg_text(struct enc_process *p, uint32_t id, const char *fallback);
/* Looks up a string in a segment's table; returns its length or -1. */
int seg_string(const struct astrace_seg_header *seg, uint32_t id, const char **out);

#endif
