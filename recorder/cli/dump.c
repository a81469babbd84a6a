/* astrace dump: prints what a trace holds. The text form is a summary for
 * people (per process and thread: slice counts and times by name, metadata,
 * drops); --json prints every track, slice and instant for scripts and tests.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/json.h"
#include "common/util.h"
#include "reader/trace_reader.h"

static void json_args(FILE *o, const struct trace_args *a) {
    fputc('{', o);
    for (size_t i = 0; i < a->n; i++) {
        const struct trace_arg *x = &a->items[i];
        if (i) fputc(',', o);
        json_str(o, x->name);
        fputc(':', o);
        switch (x->type) {
        case ARG_INT: fprintf(o, "%" PRId64, x->v.i); break;
        case ARG_UINT: fprintf(o, "%" PRIu64, x->v.u); break;
        case ARG_DOUBLE: fprintf(o, "%.17g", x->v.d); break;
        case ARG_BOOL: fputs(x->v.i ? "true" : "false", o); break;
        case ARG_STRING: json_str(o, x->v.s); break;
        }
    }
    fputc('}', o);
}

static void json_flows(FILE *o, const struct trace_flows *f) {
    if (f->nout) {
        fputs(",\"flow_out\":[", o);
        for (size_t i = 0; i < f->nout; i++) fprintf(o, "%s%" PRIu64, i ? "," : "", f->out[i]);
        fputc(']', o);
    }
    if (f->nin) {
        fputs(",\"flow_in\":[", o);
        for (size_t i = 0; i < f->nin; i++) fprintf(o, "%s%" PRIu64, i ? "," : "", f->in[i]);
        fputc(']', o);
    }
}

static void print_arg_value(FILE *o, const struct trace_arg *x) {
    switch (x->type) {
    case ARG_INT: fprintf(o, "%" PRId64, x->v.i); break;
    case ARG_UINT: fprintf(o, "%" PRIu64, x->v.u); break;
    case ARG_DOUBLE: fprintf(o, "%g", x->v.d); break;
    case ARG_BOOL: fputs(x->v.i ? "true" : "false", o); break;
    case ARG_STRING: fputs(x->v.s, o); break;
    }
}

static void dump_json(FILE *o, const char *path, const struct trace_model *m) {
    fputs("{\"file\":", o);
    json_str(o, path);
    fprintf(o,
            ",\"bytes\":%" PRIu64 ",\"packets\":%" PRIu64 ",\"zstd_bundles\":%" PRIu64 ",\"deflate_bundles\":%" PRIu64
            ",\"clock_snapshots\":%" PRIu64 ",\"unmatched_ends\":%" PRIu64 ",\"unknown_iids\":%" PRIu64
            ",\"first_ts\":%" PRIu64 ",\"last_ts\":%" PRIu64,
            m->bytes, m->packets, m->bundles_zstd, m->bundles_zlib, m->clock_snapshots, m->unmatched_ends,
            m->unknown_iids, m->first_ts, m->last_ts);
    fputs(",\"tracks\":[", o);
    for (size_t i = 0; i < m->ntracks; i++) {
        const struct trace_track *t = &m->tracks[i];
        static const char *kinds[] = {"track", "process", "thread", "counter"};
        fprintf(o, "%s{\"uuid\":%" PRIu64 ",\"parent\":%" PRIu64 ",\"kind\":\"%s\",\"name\":", i ? "," : "", t->uuid,
                t->parent_uuid, kinds[t->kind]);
        json_str(o, t->name ? t->name : "");
        if (t->kind == TRACK_PROCESS || t->kind == TRACK_THREAD) fprintf(o, ",\"pid\":%d", t->pid);
        if (t->kind == TRACK_THREAD) fprintf(o, ",\"tid\":%" PRId64, t->tid);
        if (t->ncmdline) {
            fputs(",\"cmdline\":[", o);
            for (size_t j = 0; j < t->ncmdline; j++) {
                if (j) fputc(',', o);
                json_str(o, t->cmdline[j]);
            }
            fputc(']', o);
        }
        fputc('}', o);
    }
    fputs("],\"slices\":[", o);
    for (size_t i = 0; i < m->nslices; i++) {
        const struct trace_slice *s = &m->slices[i];
        fprintf(o,
                "%s{\"track\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"dur\":%" PRId64 ",\"depth\":%u,\"name\":", i ? "," : "",
                m->tracks[s->track].uuid, s->ts, s->dur, s->depth);
        json_str(o, s->name);
        fputs(",\"args\":", o);
        json_args(o, &s->args);
        json_flows(o, &s->flows);
        fputc('}', o);
    }
    fputs("],\"instants\":[", o);
    for (size_t i = 0; i < m->ninstants; i++) {
        const struct trace_instant *s = &m->instants[i];
        fprintf(o, "%s{\"track\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"name\":", i ? "," : "", m->tracks[s->track].uuid,
                s->ts);
        json_str(o, s->name);
        fputs(",\"args\":", o);
        json_args(o, &s->args);
        json_flows(o, &s->flows);
        fputc('}', o);
    }
    fputs("],\"counters\":[", o);
    for (size_t i = 0; i < m->ncounters; i++) {
        const struct trace_counter *c = &m->counters[i];
        fprintf(o, "%s{\"track\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"value\":%.17g}", i ? "," : "",
                m->tracks[c->track].uuid, c->ts, c->value);
    }
    fputs("],\"samples\":[", o);
    for (size_t i = 0; i < m->nsamples; i++) {
        const struct trace_sample *s = &m->samples[i];
        fprintf(o, "%s{\"ts\":%" PRIu64 ",\"pid\":%u,\"tid\":%u,\"callstack_iid\":%" PRIu64, i ? "," : "", s->ts,
                s->pid, s->tid, s->callstack_iid);
        if (!s->resolved) fputs(",\"unresolved\":true", o);
        /* frames: function names, outermost first; mappings alongside when any frame has one */
        fputs(",\"frames\":[", o);
        int any_mapping = 0;
        for (size_t j = 0; j < s->nframes; j++) {
            if (j) fputc(',', o);
            json_str(o, s->frames[j].function);
            any_mapping |= s->frames[j].mapping != NULL;
        }
        fputc(']', o);
        if (any_mapping) {
            fputs(",\"mappings\":[", o);
            for (size_t j = 0; j < s->nframes; j++) {
                if (j) fputc(',', o);
                if (s->frames[j].mapping)
                    json_str(o, s->frames[j].mapping);
                else
                    fputs("null", o);
            }
            fputc(']', o);
        }
        fputc('}', o);
    }
    fputs("]}\n", o);
}

/* Text form: per track, slice names with count, total and max, in one pass
 * over the slices (a hash table keyed by track, depth and name), showing a
 * track's MAX_NAMES busiest names (task lanes have one name per task). */
#define MAX_NAMES 15

struct name_stat {
    size_t track;
    uint32_t depth;
    const char *name;
    uint64_t hash;
    uint64_t count, total, max, unfinished;
};

static uint64_t stat_hash(size_t track, uint32_t depth, const char *name) {
    uint64_t h = 1469598103934665603ULL ^ ((uint64_t)track << 20) ^ depth;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1;
}

static int by_track_then_total(const void *a, const void *b) {
    const struct name_stat *x = *(struct name_stat *const *)a, *y = *(struct name_stat *const *)b;
    if (x->track != y->track) return x->track < y->track ? -1 : 1;
    if (x->total != y->total) return x->total > y->total ? -1 : 1;
    return x->depth < y->depth ? -1 : x->depth > y->depth;
}

static void print_track_header(FILE *o, const struct trace_track *t, size_t nnames) {
    if (t->kind == TRACK_THREAD)
        fprintf(o, "  thread %" PRId64 " %s (pid %d): ", t->tid, t->name ? t->name : "", t->pid);
    else
        fprintf(o, "  track %s: ", t->name ? t->name : "");
    fprintf(o, "%zu slice name%s\n", nnames, nnames == 1 ? "" : "s");
}

static void dump_text(FILE *o, const char *path, const struct trace_model *m) {
    fprintf(o, "%s: %" PRIu64 " bytes, %" PRIu64 " packets", path, m->bytes, m->packets);
    if (m->bundles_zstd) fprintf(o, ", %" PRIu64 " zstd bundles", m->bundles_zstd);
    if (m->bundles_zlib) fprintf(o, ", %" PRIu64 " deflate bundles", m->bundles_zlib);
    if (m->last_ts > m->first_ts) fprintf(o, ", %.3f s", (double)(m->last_ts - m->first_ts) / 1e9);
    fputc('\n', o);
    for (size_t i = 0; i < m->ninstants; i++) {
        const struct trace_instant *in = &m->instants[i];
        if (strncmp(in->name, "astrace: ", 9) != 0) continue;
        const struct trace_track *t = &m->tracks[in->track];
        fprintf(o, "%s", in->name + 9);
        if (t->kind == TRACK_PROCESS) fprintf(o, " (pid %d)", t->pid);
        fputs(":", o);
        for (size_t j = 0; j < in->args.n; j++) {
            fprintf(o, " %s=", in->args.items[j].name);
            print_arg_value(o, &in->args.items[j]);
            fputc(j + 1 < in->args.n ? ',' : ' ', o);
        }
        fputc('\n', o);
    }
    /* Aggregate every slice once. */
    size_t cap = 1024;
    while (cap < m->nslices * 2) cap *= 2;
    struct name_stat *table = xcalloc(cap, sizeof *table);
    size_t used = 0;
    for (size_t i = 0; i < m->nslices; i++) {
        const struct trace_slice *s = &m->slices[i];
        uint64_t h = stat_hash(s->track, s->depth, s->name);
        size_t j = h & (cap - 1);
        while (table[j].hash && !(table[j].hash == h && table[j].track == s->track && table[j].depth == s->depth &&
                                  !strcmp(table[j].name, s->name)))
            j = (j + 1) & (cap - 1);
        struct name_stat *st = &table[j];
        if (!st->hash) {
            st->hash = h;
            st->track = s->track;
            st->depth = s->depth;
            st->name = s->name;
            used++;
        }
        st->count++;
        if (s->dur < 0) {
            st->unfinished++;
            continue;
        }
        st->total += (uint64_t)s->dur;
        if ((uint64_t)s->dur > st->max) st->max = (uint64_t)s->dur;
    }
    struct name_stat **sorted = xcalloc(used ? used : 1, sizeof *sorted);
    size_t n = 0;
    for (size_t j = 0; j < cap; j++)
        if (table[j].hash) sorted[n++] = &table[j];
    qsort(sorted, n, sizeof *sorted, by_track_then_total);
    /* Counters per track. */
    uint64_t *ccount = xcalloc(m->ntracks ? m->ntracks : 1, sizeof *ccount);
    double *cmin = xcalloc(m->ntracks ? m->ntracks : 1, sizeof *cmin);
    double *cmax = xcalloc(m->ntracks ? m->ntracks : 1, sizeof *cmax);
    for (size_t i = 0; i < m->ncounters; i++) {
        size_t t = m->counters[i].track;
        double v = m->counters[i].value;
        if (!ccount[t]++ || v < cmin[t]) cmin[t] = v;
        if (ccount[t] == 1 || v > cmax[t]) cmax[t] = v;
    }
    size_t k = 0;
    for (size_t ti = 0; ti < m->ntracks; ti++) {
        const struct trace_track *t = &m->tracks[ti];
        size_t first = k;
        while (k < n && sorted[k]->track == ti) k++;
        size_t nnames = k - first;
        if (t->kind == TRACK_PROCESS) {
            fprintf(o, "process %d %s:", t->pid, t->name ? t->name : "");
            for (size_t j = 0; j < t->ncmdline; j++) fprintf(o, " %s", t->cmdline[j]);
            fputc('\n', o);
            continue;
        }
        if (t->kind == TRACK_COUNTER) {
            fprintf(o, "  counter %s: %" PRIu64 " values, min %g, max %g\n", t->name ? t->name : "", ccount[ti],
                    cmin[ti], cmax[ti]);
            continue;
        }
        if (nnames == 0 && t->kind != TRACK_THREAD) continue;
        print_track_header(o, t, nnames);
        for (size_t j = first; j < k && j < first + MAX_NAMES; j++) {
            const struct name_stat *st = sorted[j];
            fprintf(o, "    %*s%-40s %8" PRIu64 " x  total %10.3f ms  max %9.3f ms", (int)st->depth * 2, "", st->name,
                    st->count, st->total / 1e6, st->max / 1e6);
            if (st->unfinished) fprintf(o, "  (%" PRIu64 " unfinished)", st->unfinished);
            fputc('\n', o);
        }
        if (nnames > MAX_NAMES) fprintf(o, "    ... and %zu more names\n", nnames - MAX_NAMES);
    }
    free(sorted);
    free(table);
    free(ccount);
    free(cmin);
    free(cmax);
    if (m->nsamples) fprintf(o, "stack samples: %zu\n", m->nsamples);
    if (m->unmatched_ends || m->unknown_iids)
        fprintf(o, "problems: %" PRIu64 " END events with no open slice, %" PRIu64 " unknown interned ids\n",
                m->unmatched_ends, m->unknown_iids);
}

int cmd_dump(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h':
            puts("usage: astrace dump [--json] TRACE\n\n"
                 "Prints what a trace holds: session and process metadata, drop counts, and per\n"
                 "thread the slices by name (count, total, max). --json prints every track,\n"
                 "slice and instant as one JSON object, for scripts and tests.");
            return 0;
        default: return 2;
        }
    }
    if (optind != argc - 1) {
        warnx_("dump: give exactly one trace file");
        return 2;
    }
    const char *path = argv[optind];
    struct trace_model m;
    char err[512];
    if (trace_read_file(path, &m, err, sizeof err) != 0) {
        warnx_("%s: %s", path, err);
        trace_model_free(&m);
        return 1;
    }
    if (json)
        dump_json(stdout, path, &m);
    else
        dump_text(stdout, path, &m);
    trace_model_free(&m);
    return 0;
}
