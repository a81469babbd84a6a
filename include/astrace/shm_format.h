/* The shared-memory contract between a traced process and the recorder.
 *
 * Each traced Python process creates one segment file in the session
 * directory (ASTRACE_SESSION) and maps it; the recorder maps the same file
 * and drains it. A segment holds a header, a string table, and a fixed array
 * of per-thread rings. Every ring has exactly one producer (the thread that
 * claimed it) and one consumer (the recorder), so a ring needs no lock:
 * `head` is written only by the producer, `tail` only by the consumer.
 *
 * Records (see record.h) are 8-byte aligned and never straddle the end of a
 * ring: a producer that would cross it writes an ASTRACE_REC_PAD record (or,
 * if fewer than 8 bytes remain, nothing: readers skip such a tail) and wraps.
 * A producer that finds too little free space drops the record and counts it
 * in `dropped_records`; it never waits.
 *
 * Strings (callback names, thread names) live in an append-only table: a
 * string's id is its byte offset in the table plus one, so id 0 means "none".
 * Entries are published with a release store of `strings_used`; a consumer
 * that reads a record naming string id N (after an acquire load of the ring
 * head) is guaranteed to see the entry, because the producer published it
 * before writing the record.
 *
 * This header is shared by the runtime (_astrace) and the recorder and must
 * stay plain C11 with fixed-size fields. Bump ASTRACE_SHM_VERSION on any change.
 */
#ifndef ASTRACE_SHM_FORMAT_H
#define ASTRACE_SHM_FORMAT_H

#include <stdatomic.h>
#include <stdint.h>

#define ASTRACE_SHM_MAGIC 0x3147455354534141ULL /* "AASTSEG1" little-endian */
#define ASTRACE_SHM_VERSION 5u

#define ASTRACE_THREAD_NAME_MAX 64
#define ASTRACE_TEXT_MAX 1024

/* Segment life states, written by the producer. */
enum astrace_seg_state {
    ASTRACE_SEG_ACTIVE = 1,   /* process is recording */
    ASTRACE_SEG_FINISHED = 2, /* process shut astrace down cleanly (atexit) */
};

/* Ring ownership states. */
enum astrace_ring_state {
    ASTRACE_RING_FREE = 0,    /* never claimed, or released and fully drained */
    ASTRACE_RING_OWNED = 1,   /* a live thread writes here */
    ASTRACE_RING_RETIRED = 2, /* its thread exited; the recorder drains, then frees */
};

struct astrace_ring_header {
    _Atomic uint32_t state;      /* enum astrace_ring_state */
    uint32_t index;              /* position in the segment's ring array */
    _Atomic int64_t tid;         /* kernel thread id of the owner */
    _Atomic uint32_t generation; /* bumped each time the ring is claimed anew */
    uint32_t reserved0;
    char thread_name[ASTRACE_THREAD_NAME_MAX]; /* NUL-terminated, set at claim */
    uint8_t pad0[40];                          /* header line(s) end at 128 bytes */
    /* Producer cache line. */
    _Atomic uint64_t head;            /* total bytes ever written */
    _Atomic uint64_t dropped_records; /* records refused because the ring was full */
    uint8_t pad1[48];
    /* Consumer cache line. */
    _Atomic uint64_t tail; /* total bytes ever consumed */
    uint8_t pad2[56];
};

/* Sampler settings in the segment header. */
enum astrace_sample_flags {
    ASTRACE_SAMPLE_CPU = 1,    /* CPU-time timers: only threads on CPU are sampled */
    ASTRACE_SAMPLE_NATIVE = 2, /* samples carry native return addresses too */
};

/* Where CPython keeps what the recorder needs to name a sampled frame, found
 * by the runtime at start by probing real objects (so no per-version table
 * is needed here). The recorder reads the objects with process_vm_readv.
 * Offsets are in bytes from the object's start; 0 = unknown. */
struct astrace_py_layout {
    _Atomic uint32_t ready; /* 1 once the fields below are filled */
    uint32_t reserved0;
    uint64_t code_type;     /* address of types.CodeType */
    uint32_t code_filename; /* PyCodeObject fields holding object pointers */
    uint32_t code_qualname;
    uint32_t code_linetable;    /* bytes, 3.11+ location table */
    uint32_t code_firstlineno;  /* int field */
    uint32_t code_instructions; /* where the instructions start (CodeType.__basicsize__) */
    uint32_t code_size_field;   /* Py_SIZE: number of 2-byte code units */
    uint32_t bytes_data;        /* PyBytesObject: ob_sval */
    uint32_t str_length;        /* PyASCIIObject: length */
    uint32_t str_state;         /* PyASCIIObject: state bitfield (first byte) */
    uint32_t str_ascii_data;    /* compact ASCII data */
    uint32_t str_compact_data;  /* compact non-ASCII data (kind 1/2/4 bytes per char) */
    uint32_t reserved1;
    uint8_t call_ops[32]; /* bitmap of opcodes (specialized too) that call */
};

/* astrace_seg_header.flags */
#define ASTRACE_SEG_FORKED 1u /* made in a fork child of a traced process */
#define ASTRACE_SEG_TSC 2u    /* record timestamps are TSC ticks, not BOOTTIME ns (version 4) */

struct astrace_seg_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size; /* sizeof(struct astrace_seg_header) */
    int32_t pid;
    int32_t ppid;
    _Atomic uint32_t state; /* enum astrace_seg_state */
    uint32_t ring_count;
    uint64_t ring_size;               /* bytes of data per ring (power of two) */
    uint64_t rings_offset;            /* offset of the ring header array */
    uint64_t ring_data_offset;        /* offset of ring 0's data; ring i at +i*ring_size */
    uint64_t strings_offset;          /* offset of the string table */
    uint64_t strings_capacity;        /* bytes */
    _Atomic uint64_t strings_used;    /* bytes published */
    _Atomic uint64_t strings_dropped; /* strings refused: table full */
    _Atomic uint64_t dropped_no_ring; /* records refused: no free ring for the thread */
    uint64_t start_boottime_ns;       /* when the runtime attached */
    uint64_t start_realtime_ns;
    int32_t python_hexversion;
    uint32_t flags;                    /* ASTRACE_SEG_* */
    char python_version[64];           /* sys.version, first line */
    char executable[ASTRACE_TEXT_MAX]; /* sys.executable */
    /* NUL-separated argv (sys.orig_argv when available), length in cmdline_len */
    uint32_t cmdline_len;
    char cmdline[4 * ASTRACE_TEXT_MAX];
    /* Stack samples (version 2). Thread i's samples go to sample ring i,
     * whose header and data follow the string table; the sampler's signal
     * handler is its only producer. Its state field is unused: the sample
     * ring lives and dies with event ring i (the recorder frees ring i only
     * once both are drained). sample_ring_size 0 = no sampler. */
    uint64_t sample_ring_size;           /* bytes of data per sample ring (power of two) */
    uint64_t sample_rings_offset;        /* offset of the sample ring header array */
    uint64_t sample_data_offset;         /* offset of sample ring 0's data */
    uint32_t sample_rate_hz;             /* as configured; 0 = sampler off */
    uint32_t sample_flags;               /* ASTRACE_SAMPLE_* */
    _Atomic uint64_t samples_unreadable; /* signals whose Python stack could not be read */
    struct astrace_py_layout py;         /* how the recorder reads code objects (valid once py.ready) */
    /* Version 5: failures of astrace's own work inside the program (a hook
     * whose attribute read or call failed); the program never sees them. */
    _Atomic uint64_t runtime_errors;
};

_Static_assert(sizeof(struct astrace_ring_header) == 256, "ring header layout");

/* A string-table entry: u32 length, then the bytes (no NUL), padded to 4. */
struct astrace_string_entry {
    uint32_t len;
    char bytes[];
};

/* Bytes of a segment up to the end of its string table. */
static inline uint64_t astrace_seg_total_size(uint32_t ring_count, uint64_t ring_size, uint64_t strings_capacity) {
    uint64_t hdr = (sizeof(struct astrace_seg_header) + 4095) & ~4095ULL;
    uint64_t rings = ((uint64_t)ring_count * sizeof(struct astrace_ring_header) + 4095) & ~4095ULL;
    return hdr + rings + (uint64_t)ring_count * ring_size + strings_capacity;
}

/* Bytes the sample rings add after the string table (strings_capacity is
 * kept a multiple of 4096). */
static inline uint64_t astrace_seg_sample_size(uint32_t ring_count, uint64_t sample_ring_size) {
    if (!sample_ring_size) return 0;
    uint64_t rings = ((uint64_t)ring_count * sizeof(struct astrace_ring_header) + 4095) & ~4095ULL;
    return rings + (uint64_t)ring_count * sample_ring_size;
}

#endif
