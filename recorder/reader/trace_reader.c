/* Implementation of trace_reader.h. */
#include "trace_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "astrace_perfetto.pb-c.h"
#include "common/util.h"

/* Largest expansion accepted for one compressed bundle. Perfetto keeps
 * bundle input far below this; anything bigger is corrupt or hostile. */
#define MAX_BUNDLE_EXPANSION (64u << 20)

/* ---- interned strings: (sequence, generation, field, iid) -> text -------- */

struct iid_key {
    uint32_t seq, gen, field, zero; /* no implicit padding: keys are compared with memcmp */
    uint64_t iid;
};
struct iid_slot {
    struct iid_key k;
    char *text; /* NULL = empty slot */
};
struct seq_gen {
    uint32_t seq, gen;
};
struct iid_map {
    struct iid_slot *slots;
    size_t cap, used;
    struct seq_gen *seqs;
    size_t nseqs, capseqs;
    /* track uuid -> index */
    uint64_t *tkeys;
    size_t *tvals;
    size_t tcap, tused;
};

enum { F_EVENT_NAME = 1, F_ANN_NAME, F_ANN_STRING };

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t key_hash(const struct iid_key *k) {
    return mix(k->iid ^ mix(((uint64_t)k->seq << 32) ^ ((uint64_t)k->gen << 4) ^ k->field));
}

static uint32_t *seq_gen_of(struct iid_map *m, uint32_t seq) {
    for (size_t i = 0; i < m->nseqs; i++)
        if (m->seqs[i].seq == seq) return &m->seqs[i].gen;
    if (m->nseqs == m->capseqs) {
        m->capseqs = m->capseqs ? m->capseqs * 2 : 16;
        m->seqs = xrealloc(m->seqs, m->capseqs * sizeof *m->seqs);
    }
    m->seqs[m->nseqs].seq = seq;
    m->seqs[m->nseqs].gen = 0;
    return &m->seqs[m->nseqs++].gen;
}

static void iid_put(struct iid_map *m, uint32_t seq, uint32_t field, uint64_t iid, const char *text, size_t len) {
    if (m->used * 2 >= m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        struct iid_slot *ns = xcalloc(ncap, sizeof *ns);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].text) continue;
            size_t j = key_hash(&m->slots[i].k) & (ncap - 1);
            while (ns[j].text) j = (j + 1) & (ncap - 1);
            ns[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    struct iid_key k = {seq, *seq_gen_of(m, seq), field, 0, iid};
    size_t j = key_hash(&k) & (m->cap - 1);
    while (m->slots[j].text) {
        if (!memcmp(&m->slots[j].k, &k, sizeof k)) { /* rebinding: last one wins */
            free(m->slots[j].text);
            break;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (!m->slots[j].text) m->used++;
    m->slots[j].k = k;
    m->slots[j].text = xmalloc(len + 1);
    memcpy(m->slots[j].text, text, len);
    m->slots[j].text[len] = 0;
}

static const char *iid_get(struct iid_map *m, uint32_t seq, uint32_t field, uint64_t iid) {
    if (!m->cap) return NULL;
    struct iid_key k;
    memset(&k, 0, sizeof k);
    k.seq = seq;
    k.gen = *seq_gen_of(m, seq);
    k.field = field;
    k.iid = iid;
    size_t j = key_hash(&k) & (m->cap - 1);
    while (m->slots[j].text) {
        if (!memcmp(&m->slots[j].k, &k, sizeof k)) return m->slots[j].text;
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

/* ---- tracks ----------------------------------------------------------------- */

size_t trace_find_track(const struct trace_model *m, uint64_t uuid) {
    struct iid_map *im = m->iids;
    if (!im || !im->tcap) return (size_t)-1;
    size_t j = mix(uuid) & (im->tcap - 1);
    while (im->tvals[j] != (size_t)-1) {
        if (im->tkeys[j] == uuid) return im->tvals[j];
        j = (j + 1) & (im->tcap - 1);
    }
    return (size_t)-1;
}

static void track_index_put(struct iid_map *im, uint64_t uuid, size_t idx) {
    if (im->tused * 2 >= im->tcap) {
        size_t ncap = im->tcap ? im->tcap * 2 : 256;
        uint64_t *nk = xcalloc(ncap, sizeof *nk);
        size_t *nv = xmalloc(ncap * sizeof *nv);
        for (size_t i = 0; i < ncap; i++) nv[i] = (size_t)-1;
        for (size_t i = 0; i < im->tcap; i++) {
            if (im->tvals[i] == (size_t)-1) continue;
            size_t j = mix(im->tkeys[i]) & (ncap - 1);
            while (nv[j] != (size_t)-1) j = (j + 1) & (ncap - 1);
            nk[j] = im->tkeys[i];
            nv[j] = im->tvals[i];
        }
        free(im->tkeys);
        free(im->tvals);
        im->tkeys = nk;
        im->tvals = nv;
        im->tcap = ncap;
    }
    size_t j = mix(uuid) & (im->tcap - 1);
    while (im->tvals[j] != (size_t)-1) j = (j + 1) & (im->tcap - 1);
    im->tkeys[j] = uuid;
    im->tvals[j] = idx;
    im->tused++;
}

static size_t get_track(struct trace_model *m, uint64_t uuid) {
    size_t idx = trace_find_track(m, uuid);
    if (idx != (size_t)-1) return idx;
    if (m->ntracks == m->captracks) {
        m->captracks = m->captracks ? m->captracks * 2 : 64;
        m->tracks = xrealloc(m->tracks, m->captracks * sizeof *m->tracks);
    }
    struct trace_track *t = &m->tracks[m->ntracks];
    memset(t, 0, sizeof *t);
    t->uuid = uuid;
    track_index_put(m->iids, uuid, m->ntracks);
    return m->ntracks++;
}

static void set_str(char **dst, const char *src) {
    if (!src) return;
    free(*dst);
    *dst = xstrdup(src);
}

static void on_track_descriptor(struct trace_model *m, const Astrace__Pb__TrackDescriptor *td) {
    if (!td->has_uuid) return;
    size_t ti = get_track(m, td->uuid); /* may move m->tracks */
    struct trace_track *t = &m->tracks[ti];
    if (td->has_parent_uuid) t->parent_uuid = td->parent_uuid;
    if (td->name) set_str(&t->name, td->name);
    if (td->process) {
        t->kind = TRACK_PROCESS;
        if (td->process->has_pid) t->pid = td->process->pid;
        if (td->process->process_name) set_str(&t->name, td->process->process_name);
        if (td->process->n_cmdline) {
            for (size_t i = 0; i < t->ncmdline; i++) free(t->cmdline[i]);
            free(t->cmdline);
            t->cmdline = xcalloc(td->process->n_cmdline, sizeof *t->cmdline);
            for (size_t i = 0; i < td->process->n_cmdline; i++) t->cmdline[i] = xstrdup(td->process->cmdline[i]);
            t->ncmdline = td->process->n_cmdline;
        }
    }
    if (td->thread) {
        t->kind = TRACK_THREAD;
        if (td->thread->has_pid) t->pid = td->thread->pid;
        if (td->thread->has_tid) t->tid = td->thread->tid;
        if (td->thread->thread_name) set_str(&t->name, td->thread->thread_name);
    }
    if (td->counter) t->kind = TRACK_COUNTER;
}

/* ---- events ----------------------------------------------------------------- */

static void convert_args(struct trace_model *m, uint32_t seq, Astrace__Pb__DebugAnnotation **in, size_t n,
                         struct trace_args *out) {
    if (!n) return;
    out->items = xrealloc(out->items, (out->n + n) * sizeof *out->items);
    for (size_t i = 0; i < n; i++) {
        const Astrace__Pb__DebugAnnotation *a = in[i];
        const char *name = a->name;
        if (!name && a->has_name_iid) name = iid_get(m->iids, seq, F_ANN_NAME, a->name_iid);
        if (!name) {
            m->unknown_iids += a->has_name_iid;
            name = "?";
        }
        struct trace_arg *o = &out->items[out->n++];
        o->name = xstrdup(name);
        if (a->has_bool_value) {
            o->type = ARG_BOOL;
            o->v.i = a->bool_value;
        } else if (a->has_uint_value) {
            o->type = ARG_UINT;
            o->v.u = a->uint_value;
        } else if (a->has_int_value) {
            o->type = ARG_INT;
            o->v.i = a->int_value;
        } else if (a->has_double_value) {
            o->type = ARG_DOUBLE;
            o->v.d = a->double_value;
        } else {
            const char *s = a->string_value;
            if (!s && a->has_string_value_iid) s = iid_get(m->iids, seq, F_ANN_STRING, a->string_value_iid);
            o->type = ARG_STRING;
            o->v.s = xstrdup(s ? s : "");
        }
    }
}

static void add_flows(struct trace_flows *f, const Astrace__Pb__TrackEvent *ev) {
    if (ev->n_flow_ids) {
        f->out = xrealloc(f->out, (f->nout + ev->n_flow_ids) * sizeof *f->out);
        memcpy(f->out + f->nout, ev->flow_ids, ev->n_flow_ids * sizeof *f->out);
        f->nout += ev->n_flow_ids;
    }
    if (ev->n_terminating_flow_ids) {
        f->in = xrealloc(f->in, (f->nin + ev->n_terminating_flow_ids) * sizeof *f->in);
        memcpy(f->in + f->nin, ev->terminating_flow_ids, ev->n_terminating_flow_ids * sizeof *f->in);
        f->nin += ev->n_terminating_flow_ids;
    }
}

static void add_counter(struct trace_model *m, size_t track, uint64_t ts, double value) {
    if (m->ncounters == m->capcounters) {
        m->capcounters = m->capcounters ? m->capcounters * 2 : 256;
        m->counters = xrealloc(m->counters, m->capcounters * sizeof *m->counters);
    }
    struct trace_counter *c = &m->counters[m->ncounters++];
    c->track = track;
    c->ts = ts;
    c->value = value;
}

static void on_track_event(struct trace_model *m, uint32_t seq, uint64_t ts, uint64_t default_track,
                           const Astrace__Pb__TrackEvent *ev) {
    /* Counter values riding on any event (TrackEvent.extra_counter_*). */
    size_t nextra = ev->n_extra_counter_track_uuids < ev->n_extra_counter_values ? ev->n_extra_counter_track_uuids
                                                                                  : ev->n_extra_counter_values;
    for (size_t i = 0; i < nextra; i++)
        add_counter(m, get_track(m, ev->extra_counter_track_uuids[i]), ts, (double)ev->extra_counter_values[i]);
    uint64_t uuid = ev->has_track_uuid ? ev->track_uuid : default_track;
    size_t ti = get_track(m, uuid);
    const char *name = ev->name;
    if (!name && ev->has_name_iid) {
        name = iid_get(m->iids, seq, F_EVENT_NAME, ev->name_iid);
        if (!name) m->unknown_iids++;
    }
    int type = ev->has_type ? ev->type : 0;
    if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_BEGIN) {
        if (m->nslices == m->capslices) {
            m->capslices = m->capslices ? m->capslices * 2 : 1024;
            m->slices = xrealloc(m->slices, m->capslices * sizeof *m->slices);
        }
        struct trace_slice *s = &m->slices[m->nslices];
        memset(s, 0, sizeof *s);
        s->track = ti;
        s->ts = ts;
        s->dur = -1;
        s->name = xstrdup(name ? name : "");
        struct trace_track *t = &m->tracks[ti];
        s->depth = (uint32_t)t->nopen;
        convert_args(m, seq, ev->debug_annotations, ev->n_debug_annotations, &s->args);
        add_flows(&s->flows, ev);
        if (t->nopen == t->capopen) {
            t->capopen = t->capopen ? t->capopen * 2 : 8;
            t->open = xrealloc(t->open, t->capopen * sizeof *t->open);
        }
        t->open[t->nopen++] = m->nslices++;
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_SLICE_END) {
        struct trace_track *t = &m->tracks[ti];
        if (!t->nopen) {
            m->unmatched_ends++;
            return;
        }
        struct trace_slice *s = &m->slices[t->open[--t->nopen]];
        s->dur = ts >= s->ts ? (int64_t)(ts - s->ts) : 0;
        convert_args(m, seq, ev->debug_annotations, ev->n_debug_annotations, &s->args);
        add_flows(&s->flows, ev);
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_COUNTER) {
        if (!ev->has_counter_value && !ev->has_double_counter_value) return;
        add_counter(m, ti, ts, ev->has_double_counter_value ? ev->double_counter_value : (double)ev->counter_value);
    } else if (type == ASTRACE__PB__TRACK_EVENT__TYPE__TYPE_INSTANT) {
        if (m->ninstants == m->capinstants) {
            m->capinstants = m->capinstants ? m->capinstants * 2 : 64;
            m->instants = xrealloc(m->instants, m->capinstants * sizeof *m->instants);
        }
        struct trace_instant *in = &m->instants[m->ninstants++];
        memset(in, 0, sizeof *in);
        in->track = ti;
        in->ts = ts;
        in->name = xstrdup(name ? name : "");
        convert_args(m, seq, ev->debug_annotations, ev->n_debug_annotations, &in->args);
        add_flows(&in->flows, ev);
    }
}

/* Per-sequence defaults (track_uuid) set by trace_packet_defaults. */
struct seq_default {
    uint32_t seq;
    uint64_t track_uuid;
};

struct read_state {
    struct trace_model *m;
    struct seq_default *defaults;
    size_t ndefaults, capdefaults;
    char *err;
    size_t errlen;
    int depth;
};

static uint64_t *default_track_of(struct read_state *rs, uint32_t seq) {
    for (size_t i = 0; i < rs->ndefaults; i++)
        if (rs->defaults[i].seq == seq) return &rs->defaults[i].track_uuid;
    if (rs->ndefaults == rs->capdefaults) {
        rs->capdefaults = rs->capdefaults ? rs->capdefaults * 2 : 16;
        rs->defaults = xrealloc(rs->defaults, rs->capdefaults * sizeof *rs->defaults);
    }
    rs->defaults[rs->ndefaults].seq = seq;
    rs->defaults[rs->ndefaults].track_uuid = 0;
    return &rs->defaults[rs->ndefaults++].track_uuid;
}

static int read_stream(struct read_state *rs, const uint8_t *data, size_t len, uint64_t base_offset);

static void seterr(struct read_state *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct read_state *rs, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->err, rs->errlen, fmt, ap);
    va_end(ap);
}

static int expand_bundle(struct read_state *rs, const uint8_t *p, size_t n, int zstd, uint64_t off) {
    if (rs->depth > 0) {
        seterr(rs, "compressed bundle inside a compressed bundle at offset %llu", (unsigned long long)off);
        return -1;
    }
    struct buf out = {0};
    if (zstd) {
        ZSTD_DStream *ds = ZSTD_createDStream();
        ZSTD_initDStream(ds);
        ZSTD_inBuffer in = {p, n, 0};
        size_t r = 1;
        while (in.pos < in.size || r != 0) {
            buf_reserve(&out, 1 << 17);
            ZSTD_outBuffer ob = {out.data + out.len, out.cap - out.len, 0};
            r = ZSTD_decompressStream(ds, &ob, &in);
            out.len += ob.pos;
            if (ZSTD_isError(r)) {
                seterr(rs, "corrupt zstd bundle at offset %llu: %s", (unsigned long long)off, ZSTD_getErrorName(r));
                ZSTD_freeDStream(ds);
                buf_free(&out);
                return -1;
            }
            if (out.len > MAX_BUNDLE_EXPANSION) {
                seterr(rs, "zstd bundle at offset %llu expands beyond %u MiB", (unsigned long long)off,
                       MAX_BUNDLE_EXPANSION >> 20);
                ZSTD_freeDStream(ds);
                buf_free(&out);
                return -1;
            }
            if (in.pos == in.size && ob.pos == 0 && r != 0) {
                seterr(rs, "truncated zstd bundle at offset %llu", (unsigned long long)off);
                ZSTD_freeDStream(ds);
                buf_free(&out);
                return -1;
            }
        }
        ZSTD_freeDStream(ds);
        rs->m->bundles_zstd++;
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit(&zs) != Z_OK) {
            seterr(rs, "zlib init failed");
            return -1;
        }
        zs.next_in = (Bytef *)p;
        zs.avail_in = (uInt)n;
        int r;
        do {
            buf_reserve(&out, 1 << 17);
            zs.next_out = out.data + out.len;
            zs.avail_out = (uInt)(out.cap - out.len);
            r = inflate(&zs, Z_NO_FLUSH);
            out.len = out.cap - zs.avail_out;
            if (r != Z_OK && r != Z_STREAM_END) {
                seterr(rs, "corrupt deflate bundle at offset %llu%s", (unsigned long long)off,
                       r == Z_BUF_ERROR ? " (truncated)" : "");
                inflateEnd(&zs);
                buf_free(&out);
                return -1;
            }
            if (out.len > MAX_BUNDLE_EXPANSION) {
                seterr(rs, "deflate bundle at offset %llu expands beyond %u MiB", (unsigned long long)off,
                       MAX_BUNDLE_EXPANSION >> 20);
                inflateEnd(&zs);
                buf_free(&out);
                return -1;
            }
        } while (r != Z_STREAM_END);
        inflateEnd(&zs);
        rs->m->bundles_zlib++;
    }
    rs->depth++;
    int rc = read_stream(rs, out.data, out.len, off);
    rs->depth--;
    buf_free(&out);
    return rc;
}

static int on_packet(struct read_state *rs, const Astrace__Pb__TracePacket *pk, uint64_t off) {
    struct trace_model *m = rs->m;
    m->packets++;
    uint32_t seq = pk->has_trusted_packet_sequence_id ? pk->trusted_packet_sequence_id : 0;
    if (pk->data_case == ASTRACE__PB__TRACE_PACKET__DATA_ZSTD_COMPRESSED_PACKETS)
        return expand_bundle(rs, pk->zstd_compressed_packets.data, pk->zstd_compressed_packets.len, 1, off);
    if (pk->data_case == ASTRACE__PB__TRACE_PACKET__DATA_COMPRESSED_PACKETS)
        return expand_bundle(rs, pk->compressed_packets.data, pk->compressed_packets.len, 0, off);
    if (pk->has_sequence_flags && (pk->sequence_flags & ASTRACE__PB__SEQUENCE_FLAGS__SEQ_INCREMENTAL_STATE_CLEARED)) {
        (*seq_gen_of(m->iids, seq))++;
        *default_track_of(rs, seq) = 0;
    }
    if (pk->trace_packet_defaults && pk->trace_packet_defaults->track_event_defaults &&
        pk->trace_packet_defaults->track_event_defaults->has_track_uuid)
        *default_track_of(rs, seq) = pk->trace_packet_defaults->track_event_defaults->track_uuid;
    if (pk->interned_data) {
        const Astrace__Pb__InternedData *id = pk->interned_data;
        for (size_t i = 0; i < id->n_event_names; i++)
            if (id->event_names[i]->name)
                iid_put(m->iids, seq, F_EVENT_NAME, id->event_names[i]->iid, id->event_names[i]->name,
                        strlen(id->event_names[i]->name));
        for (size_t i = 0; i < id->n_debug_annotation_names; i++)
            if (id->debug_annotation_names[i]->name)
                iid_put(m->iids, seq, F_ANN_NAME, id->debug_annotation_names[i]->iid,
                        id->debug_annotation_names[i]->name, strlen(id->debug_annotation_names[i]->name));
        for (size_t i = 0; i < id->n_debug_annotation_string_values; i++)
            iid_put(m->iids, seq, F_ANN_STRING, id->debug_annotation_string_values[i]->iid,
                    (const char *)id->debug_annotation_string_values[i]->str.data,
                    id->debug_annotation_string_values[i]->str.len);
    }
    uint64_t ts = pk->has_timestamp ? pk->timestamp : 0;
    if (pk->has_timestamp && pk->data_case != ASTRACE__PB__TRACE_PACKET__DATA_CLOCK_SNAPSHOT) {
        if (!m->first_ts || ts < m->first_ts) m->first_ts = ts;
        if (ts > m->last_ts) m->last_ts = ts;
    }
    switch (pk->data_case) {
    case ASTRACE__PB__TRACE_PACKET__DATA_CLOCK_SNAPSHOT: m->clock_snapshots++; break;
    case ASTRACE__PB__TRACE_PACKET__DATA_TRACK_DESCRIPTOR: on_track_descriptor(m, pk->track_descriptor); break;
    case ASTRACE__PB__TRACE_PACKET__DATA_TRACK_EVENT:
        on_track_event(m, seq, ts, *default_track_of(rs, seq), pk->track_event);
        break;
    case ASTRACE__PB__TRACE_PACKET__DATA_PERF_SAMPLE: {
        if (m->nsamples == m->capsamples) {
            m->capsamples = m->capsamples ? m->capsamples * 2 : 256;
            m->samples = xrealloc(m->samples, m->capsamples * sizeof *m->samples);
        }
        struct trace_sample *smp = &m->samples[m->nsamples++];
        smp->ts = ts;
        smp->pid = pk->perf_sample->pid;
        smp->tid = pk->perf_sample->tid;
        smp->callstack_iid = pk->perf_sample->callstack_iid;
        break;
    }
    default: break;
    }
    return 0;
}

/* A stream is a serialized Trace: repeated `packet = 1` records. */
static int read_stream(struct read_state *rs, const uint8_t *data, size_t len, uint64_t base_offset) {
    size_t pos = 0;
    while (pos < len) {
        uint64_t off = base_offset + (rs->depth ? 0 : pos);
        if (data[pos] != 0x0A) {
            seterr(rs, "not a Perfetto protobuf trace: unexpected byte 0x%02x at offset %llu%s", data[pos],
                   (unsigned long long)off, rs->depth ? " inside a compressed bundle" : "");
            return -1;
        }
        uint64_t plen;
        size_t vl = varint_get(data + pos + 1, len - pos - 1, &plen);
        if (!vl) {
            seterr(rs, "truncated trace: packet length cut off at offset %llu", (unsigned long long)off);
            return -1;
        }
        size_t start = pos + 1 + vl;
        if (plen > len - start) {
            seterr(rs, "truncated trace: packet at offset %llu needs %llu bytes, %llu remain%s",
                   (unsigned long long)off, (unsigned long long)plen, (unsigned long long)(len - start),
                   rs->depth ? " in its bundle" : "");
            return -1;
        }
        Astrace__Pb__TracePacket *pk = astrace__pb__trace_packet__unpack(NULL, (size_t)plen, data + start);
        if (!pk) {
            seterr(rs, "malformed packet at offset %llu%s", (unsigned long long)off,
                   rs->depth ? " inside a compressed bundle" : "");
            return -1;
        }
        int rc = on_packet(rs, pk, off);
        astrace__pb__trace_packet__free_unpacked(pk, NULL);
        if (rc) return rc;
        pos = start + (size_t)plen;
    }
    return 0;
}

int trace_read_buffer(const uint8_t *data, size_t len, struct trace_model *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->iids = xcalloc(1, sizeof *m->iids);
    m->bytes = len;
    if (len == 0) {
        snprintf(err, errlen, "empty file: not a trace");
        return -1;
    }
    struct read_state rs = {.m = m, .err = err, .errlen = errlen};
    int rc = read_stream(&rs, data, len, 0);
    free(rs.defaults);
    if (rc == 0 && m->packets == 0) {
        snprintf(err, errlen, "no packets: not a trace");
        rc = -1;
    }
    return rc;
}

int trace_read_file(const char *path, struct trace_model *m, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        memset(m, 0, sizeof *m);
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        memset(m, 0, sizeof *m);
        snprintf(err, errlen, "%s is not a regular file", path);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        memset(m, 0, sizeof *m);
        snprintf(err, errlen, "%s is empty: not a trace", path);
        return -1;
    }
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (mem == MAP_FAILED) {
        memset(m, 0, sizeof *m);
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = trace_read_buffer(mem, (size_t)st.st_size, m, err, errlen);
    munmap(mem, (size_t)st.st_size);
    return rc;
}

static void free_args(struct trace_args *a) {
    for (size_t i = 0; i < a->n; i++) {
        free(a->items[i].name);
        if (a->items[i].type == ARG_STRING) free(a->items[i].v.s);
    }
    free(a->items);
}

void trace_model_free(struct trace_model *m) {
    for (size_t i = 0; i < m->ntracks; i++) {
        free(m->tracks[i].name);
        for (size_t j = 0; j < m->tracks[i].ncmdline; j++) free(m->tracks[i].cmdline[j]);
        free(m->tracks[i].cmdline);
        free(m->tracks[i].open);
    }
    free(m->tracks);
    for (size_t i = 0; i < m->nslices; i++) {
        free(m->slices[i].name);
        free_args(&m->slices[i].args);
        free(m->slices[i].flows.out);
        free(m->slices[i].flows.in);
    }
    free(m->slices);
    for (size_t i = 0; i < m->ninstants; i++) {
        free(m->instants[i].name);
        free_args(&m->instants[i].args);
        free(m->instants[i].flows.out);
        free(m->instants[i].flows.in);
    }
    free(m->instants);
    free(m->counters);
    free(m->samples);
    if (m->iids) {
        for (size_t i = 0; i < m->iids->cap; i++) free(m->iids->slots[i].text);
        free(m->iids->slots);
        free(m->iids->seqs);
        free(m->iids->tkeys);
        free(m->iids->tvals);
        free(m->iids);
    }
    memset(m, 0, sizeof *m);
}

const struct trace_arg *trace_args_get(const struct trace_args *a, const char *name) {
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->items[i].name, name)) return &a->items[i];
    return NULL;
}
