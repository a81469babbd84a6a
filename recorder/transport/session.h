/* Recording session: the directory traced processes create their segments
 * in, and the recorder's view of each segment (mapping, per-ring state).
 *
 * The recorder polls: session_scan() maps segments that appeared,
 * session_drain() moves every ring's records into the encoder, and
 * session_reap() finishes segments whose process has gone (after a last
 * drain, so nothing already in shared memory is lost).
 */
#ifndef ASTRACE_SESSION_H
#define ASTRACE_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/tsc_map.h"
#include "writer/encoder.h"

struct seg_view;

struct session {
    char dir[4096];
    struct seg_view *segs;
    size_t nsegs, cap;
    uint64_t records;                                           /* drained, all segments */
    uint64_t dropped;                                           /* records dropped, finished segments */
    uint64_t samples_dropped, samples_unreadable;               /* sample losses, finished segments */
    uint32_t processes;                                         /* segments seen */
    struct buf notes;                                           /* text of <pid>.note files, NUL-terminated */
    int quiet_notes;                                            /* keep notes for the trace only */
    struct buf notes_said; /* each note's text (after "pid N: ") once, NUL-separated */
    int (*exit_status_of)(pid_t pid, char *out, size_t outlen); /* how a reaped pid ended */
    struct tsc_map tsc;                                         /* for segments with TSC timestamps */
    union {                                                     /* a TSC-stamped record, converted */
        struct astrace_rec_hdr hdr;
        uint8_t bytes[1 << 16];
    } copy;
};

/* Creates a private session directory under $ASTRACE_SHM_DIR, /dev/shm or
 * $TMPDIR. */
int session_create(struct session *s, char *err, size_t errlen);
void session_scan(struct session *s, struct encoder *enc);
/* Drains every ring; returns the number of records moved. */
uint64_t session_drain(struct session *s, struct encoder *enc);
/* Finishes segments whose process is gone (or all, if `all`). */
void session_reap(struct session *s, struct encoder *enc, int all);
/* Reads each live traced process's resident memory from /proc into the trace. */
void session_sample_rss(struct session *s);
/* Sum of drops in live segments plus finished ones. */
uint64_t session_dropped(const struct session *s);
/* Stack samples lost so far: refused by full sample rings, or taken on a
 * stack that could not be read (both counted by the runtime). */
void session_sample_losses(const struct session *s, uint64_t *dropped, uint64_t *unreadable);
/* Unmaps everything and removes the directory. */
void session_destroy(struct session *s);

#endif
