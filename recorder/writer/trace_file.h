/* Trace file output: frames TracePackets as `Trace.packet` records and, per
 * the chosen compression, gathers them into zstd or zlib bundles
 * (TracePacket.zstd_compressed_packets / compressed_packets) of at most
 * TRACE_BUNDLE_INPUT bytes of input, so every bundle stays well under
 * Perfetto's 512 KB packet guideline. The file is valid at every bundle
 * boundary: a recorder killed between two flushes leaves a readable trace.
 */
#ifndef ASTRACE_TRACE_FILE_H
#define ASTRACE_TRACE_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "astrace_perfetto.pb-c.h"
#include "common/util.h"

enum trace_compression { TRACE_COMPRESS_ZSTD, TRACE_COMPRESS_DEFLATE, TRACE_COMPRESS_NONE };

#define TRACE_BUNDLE_INPUT (256 * 1024)

struct trace_file {
    FILE *out;
    char *path;
    enum trace_compression compression;
    int zstd_level;
    void *zstd_ctx;     /* ZSTD_CCtx, kept across bundles (made on first use) */
    struct buf pending; /* framed packets not yet written */
    struct buf scratch; /* packing / compression output */
    uint64_t packets;   /* inner packets written */
    uint64_t bytes_in;  /* framed, uncompressed */
    uint64_t bytes_out; /* bytes in the file */
    uint64_t bundles;
    int failed; /* a write failed; errno text in error */
    char error[256];
};

/* Parses "zstd", "deflate" or "none"; returns -1 otherwise. */
int trace_compression_parse(const char *s, enum trace_compression *out);
const char *trace_compression_name(enum trace_compression c);

/* Opens `path` for writing. Refuses an existing file unless `force`. */
int trace_file_open(struct trace_file *tf, const char *path, enum trace_compression c, int force, char *err,
                    size_t errlen);
/* Writes a packet outside any bundle (clock snapshot, metadata). Flushes
 * pending bundled packets first so file order is kept. */
void trace_file_write_plain(struct trace_file *tf, const Astrace__Pb__TracePacket *p);
/* Adds a packet to the current bundle. */
void trace_file_write(struct trace_file *tf, const Astrace__Pb__TracePacket *p);
/* A hand-encoded packet, written in place (pb_encode.h): reserve room for the
 * whole framed packet, write it at the cursor trace_file_packet_room()
 * returns (Trace.packet's tag and length included), then hand back the end
 * and the packet's own length. No copy, no separate framing. */
static inline uint8_t *trace_file_packet_room(struct trace_file *tf, size_t bound) {
    buf_reserve(&tf->pending, bound);
    return tf->pending.data + tf->pending.len;
}
void trace_file_packet_done(struct trace_file *tf, uint8_t *end, size_t packet_len);
void trace_file_flush(struct trace_file *tf);
/* Flushes and closes; returns 0, or -1 if any write failed. */
int trace_file_close(struct trace_file *tf);

#endif
