/* Implementation of profile.h: a trace_visitor that aggregates. */
#include "analysis/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ---- string key -> index ---------------------------------------------------- */

struct group_index {
    char **keys; /* owned; NULL = empty */
    uint64_t *hashes;
    size_t *vals;
    size_t cap, n;
};

/* Index of `key` (len bytes); if absent, binds it to `next` and sets *added. */
static size_t gi_lookup(struct group_index **gip, const char *key, size_t len, size_t next, int *added) {
    if (!*gip) *gip = xcalloc(1, sizeof **gip);
    struct group_index *gi = *gip;
    if ((gi->n + 1) * 2 > gi->cap) {
        size_t ncap = gi->cap ? gi->cap * 2 : 64;
        char **nk = xcalloc(ncap, sizeof *nk);
        uint64_t *nh = xcalloc(ncap, sizeof *nh);
        size_t *nv = xcalloc(ncap, sizeof *nv);
        for (size_t i = 0; i < gi->cap; i++) {
            if (!gi->keys[i]) continue;
            size_t j = gi->hashes[i] & (ncap - 1);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = gi->keys[i];
            nh[j] = gi->hashes[i];
            nv[j] = gi->vals[i];
        }
        free(gi->keys);
        free(gi->hashes);
        free(gi->vals);
        gi->keys = nk;
        gi->hashes = nh;
        gi->vals = nv;
        gi->cap = ncap;
    }
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (gi->cap - 1);
    while (gi->keys[j]) {
        if (gi->hashes[j] == h && !memcmp(gi->keys[j], key, len) && gi->keys[j][len] == 0) {
            *added = 0;
            return gi->vals[j];
        }
        j = (j + 1) & (gi->cap - 1);
    }
    gi->keys[j] = xmalloc(len + 1);
    memcpy(gi->keys[j], key, len);
    gi->keys[j][len] = 0;
    gi->hashes[j] = h;
    gi->vals[j] = next;
    gi->n++;
    *added = 1;
    return next;
}

static size_t gi_find(const struct group_index *gi, const char *key, size_t len) {
    if (!gi || !gi->cap) return (size_t)-1;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (gi->cap - 1);
    while (gi->keys[j]) {
        if (gi->hashes[j] == h && !memcmp(gi->keys[j], key, len) && gi->keys[j][len] == 0) return gi->vals[j];
        j = (j + 1) & (gi->cap - 1);
    }
    return (size_t)-1;
}

static void gi_free(struct group_index *gi) {
    if (!gi) return;
    for (size_t i = 0; i < gi->cap; i++) free(gi->keys[i]);
    free(gi->keys);
    free(gi->hashes);
    free(gi->vals);
    free(gi);
}

static char *xstrndup_(const char *s, size_t len) {
    char *d = xmalloc(len + 1);
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static struct coro_stats *coro_of(struct profile *p, const char *name, size_t len) {
    int added;
    size_t i = gi_lookup(&p->coro_index, name, len, p->ncoros, &added);
    if (added) {
        if (p->ncoros == p->capcoros) {
            p->capcoros = p->capcoros ? p->capcoros * 2 : 16;
            p->coros = xrealloc(p->coros, p->capcoros * sizeof *p->coros);
        }
        memset(&p->coros[i], 0, sizeof *p->coros);
        p->coros[i].name = xstrndup_(name, len);
        p->ncoros++;
    }
    return &p->coros[i];
}

/* The await index's key: what, a separator no name or location holds, where. */
static char *await_key(const char *what, const char *where, size_t *len) {
    size_t lw = strlen(what), ll = strlen(where);
    char *key = xmalloc(lw + ll + 2);
    memcpy(key, what, lw);
    key[lw] = '\x1f';
    memcpy(key + lw + 1, where, ll + 1);
    *len = lw + ll + 1;
    return key;
}

static struct await_stats *await_of(struct profile *p, const char *what, const char *where) {
    size_t klen;
    char *key = await_key(what, where, &klen);
    int added;
    size_t i = gi_lookup(&p->await_index, key, klen, p->nawaits, &added);
    free(key);
    if (added) {
        if (p->nawaits == p->capawaits) {
            p->capawaits = p->capawaits ? p->capawaits * 2 : 16;
            p->awaits = xrealloc(p->awaits, p->capawaits * sizeof *p->awaits);
        }
        memset(&p->awaits[i], 0, sizeof *p->awaits);
        p->awaits[i].what = xstrdup(what);
        p->awaits[i].where = xstrdup(where);
        p->nawaits++;
    }
    return &p->awaits[i];
}

static struct fn_stats *fn_of(struct profile *p, const char *name) {
    int added;
    size_t i = gi_lookup(&p->fn_index, name, strlen(name), p->nfns, &added);
    if (added) {
        if (p->nfns == p->capfns) {
            p->capfns = p->capfns ? p->capfns * 2 : 64;
            p->fns = xrealloc(p->fns, p->capfns * sizeof *p->fns);
        }
        memset(&p->fns[i], 0, sizeof *p->fns);
        p->fns[i].name = xstrdup(name);
        p->nfns++;
    }
    return &p->fns[i];
}

/* ---- per-track state ------------------------------------------------------------ */

/* The loop iteration being filled on a thread track (children are delivered
 * before their parent): its select time and callbacks so far. */
struct loop_track {
    uint64_t iteration; /* ordinal of the iteration the sums belong to, +1 (0 = none) */
    uint64_t select_ns;
    uint64_t callbacks;
    int is_loop;
};

static struct loop_track *loop_track_of(struct profile *p, size_t ti) {
    if (ti >= p->nloop_tracks) {
        size_t n = p->nloop_tracks ? p->nloop_tracks : 16;
        while (n <= ti) n *= 2;
        p->loop_tracks = xrealloc(p->loop_tracks, n * sizeof *p->loop_tracks);
        memset(p->loop_tracks + p->nloop_tracks, 0, (n - p->nloop_tracks) * sizeof *p->loop_tracks);
        p->nloop_tracks = n;
    }
    return &p->loop_tracks[ti];
}

static void on_track(void *ctx, size_t index, const struct trace_track *t) {
    struct profile *p = ctx;
    if (index >= p->ntrack_kinds) {
        size_t n = p->ntrack_kinds ? p->ntrack_kinds : 64;
        while (n <= index) n *= 2;
        p->track_kinds = xrealloc(p->track_kinds, n);
        memset(p->track_kinds + p->ntrack_kinds, 0, n - p->ntrack_kinds);
        p->ntrack_kinds = n;
    }
    p->track_kinds[index] = (uint8_t)(1 + t->kind);
}

/* ---- slices ---------------------------------------------------------------------- */

static double arg_number(const struct trace_args *a, const char *name) {
    const struct trace_arg *x = trace_args_get(a, name);
    if (!x) return NAN;
    switch (x->type) {
    case ARG_INT: return (double)x->v.i;
    case ARG_UINT: return (double)x->v.u;
    case ARG_DOUBLE: return x->v.d;
    case ARG_BOOL: return (double)x->v.i;
    case ARG_STRING: return NAN;
    }
    return NAN;
}

static const char *arg_string(const struct trace_args *a, const char *name) {
    const struct trace_arg *x = trace_args_get(a, name);
    return x && x->type == ARG_STRING ? x->v.s : NULL;
}

/* A sane, finite, non-negative number of milliseconds, else 0. */
static double ms_or_zero(double v) {
    return isfinite(v) && v > 0 && v < 1e12 ? v : 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && !memcmp(s + ls - lx, suffix, lx);
}

static void on_iteration(struct profile *p, const struct trace_slice *s, size_t ti) {
    struct loop_track *lt = loop_track_of(p, ti);
    lt->is_loop = 1;
    uint64_t dur = (uint64_t)s->dur, sel = 0, cbs = 0;
    if (lt->iteration == s->ordinal + 1) {
        sel = lt->select_ns < dur ? lt->select_ns : dur;
        cbs = lt->callbacks;
    }
    lt->iteration = 0;
    p->iterations++;
    p->callbacks += cbs;
    p->iter_ns += (double)dur;
    p->select_ns += (double)sel;
    uint64_t busy = dur - sel;
    hist_add(&p->busy_ns, busy);
    if (busy > p->slowest_busy_ns) p->slowest_busy_ns = busy;
    if (!p->loop_first_ns || s->ts < p->loop_first_ns) p->loop_first_ns = s->ts;
    if (s->ts + dur > p->loop_last_ns) p->loop_last_ns = s->ts + dur;
}

static void on_slice(void *ctx, const struct trace_slice *s, const struct trace_track *t,
                     const struct trace_slice *open, size_t nopen) {
    struct profile *p = ctx;
    /* Tasks: totals on a lifetime slice, or on the last run of a lane-less task. */
    const char *coro = arg_string(&s->args, "coroutine");
    if (coro && trace_args_get(&s->args, "outcome")) {
        struct coro_stats *c = coro_of(p, coro, strlen(coro));
        c->tasks++;
        c->run_ms += ms_or_zero(arg_number(&s->args, "running_ms"));
        c->wait_ms += ms_or_zero(arg_number(&s->args, "waiting_ms"));
        p->tasks++;
        if ((t->name && ends_with(t->name, " (more tasks)")) || trace_args_get(&s->args, "on_lane_since_ns"))
            p->tasks_without_lane++; /* no lane throughout, or for its first steps */
    }
    if (s->dur < 0) return; /* still open at the end: no duration */
    uint64_t dur = (uint64_t)s->dur;
    if (t->kind == TRACK_THREAD) {
        if (nopen && !strcmp(open[nopen - 1].name, "loop iteration")) {
            struct loop_track *lt = loop_track_of(p, s->track);
            if (lt->iteration != open[nopen - 1].ordinal + 1) {
                lt->iteration = open[nopen - 1].ordinal + 1;
                lt->select_ns = lt->callbacks = 0;
            }
            if (!strcmp(s->name, "select"))
                lt->select_ns += dur;
            else if (strcmp(s->name, "garbage collection"))
                lt->callbacks++;
        }
        if (!strcmp(s->name, "loop iteration")) {
            on_iteration(p, s, s->track);
        } else if (!strncmp(s->name, "step ", 5)) {
            const char *last = strrchr(s->name, ' ') + 1;
            if (*last) {
                struct coro_stats *c = coro_of(p, last, strlen(last));
                c->steps++;
                hist_add(&c->step_ns, dur);
            }
        }
    } else if (!strncmp(s->name, "await ", 6)) {
        /* "await gather(3 tasks)": one site whatever the number of tasks */
        const char *what =
            !strncmp(s->name, "await gather(", 13) && ends_with(s->name, ")") ? "await gather()" : s->name;
        const char *where = arg_string(&s->args, "awaited_at");
        struct await_stats *a = await_of(p, what, where ? where : "");
        a->count++;
        a->total_ns += (double)dur;
        hist_add(&a->ns, dur);
    }
}

static void on_counter(void *ctx, const struct trace_counter *c, const struct trace_track *t) {
    struct profile *p = ctx;
    if (!t->name || strcmp(t->name, "loop lag")) return;
    double v = c->value;
    if (!isfinite(v) || v < 0) v = 0;
    if (v > 1e18) v = 1e18;
    hist_add(&p->lag_ns, (uint64_t)v);
}

static void on_instant(void *ctx, const struct trace_instant *in, const struct trace_track *t) {
    (void)t;
    struct profile *p = ctx;
    if (!strcmp(in->name, "astrace: session")) {
        const char *cmd = arg_string(&in->args, "command");
        if (cmd) {
            free(p->command);
            p->command = xstrdup(cmd);
        }
        const char *tasks = arg_string(&in->args, "tasks"), *sampler = arg_string(&in->args, "sampler");
        p->tasks_off = tasks && !strcmp(tasks, "off");
        p->sampler_off = sampler && !strcmp(sampler, "off");
    } else if (!strcmp(in->name, "astrace: summary")) {
        double d = arg_number(&in->args, "events_dropped");
        if (isfinite(d) && d > 0 && d < 1e19) p->events_dropped += (uint64_t)d;
    }
}

/* A function's identity across traces: astrace names Python frames
 * "qualname (file:line)"; the line is dropped so that a function is one row
 * whichever of its lines the samples landed on. */
static const char *function_key(const char *frame, char *out, size_t cap) {
    size_t n = strlen(frame);
    if (n < 4 || frame[n - 1] != ')' || n >= cap) return frame;
    size_t digits = n - 1;
    while (digits > 0 && frame[digits - 1] >= '0' && frame[digits - 1] <= '9') digits--;
    if (digits == n - 1 || digits == 0 || frame[digits - 1] != ':' || !strstr(frame, " (")) return frame;
    memcpy(out, frame, digits - 1);
    out[digits - 1] = ')';
    out[digits] = 0;
    return out;
}

static void on_sample(void *ctx, const struct trace_sample *s) {
    struct profile *p = ctx;
    if (!s->nframes) {
        p->samples_unresolved++;
        return;
    }
    p->samples++;
    char key[1024];
    fn_of(p, function_key(s->frames[s->nframes - 1].function, key, sizeof key))->self++;
    for (size_t i = 0; i < s->nframes; i++) {
        struct fn_stats *f = fn_of(p, function_key(s->frames[i].function, key, sizeof key));
        if (f->last_sample == p->samples) continue; /* recursion: once per sample */
        f->last_sample = p->samples;
        f->total++;
    }
}

static const struct trace_visitor profile_visitor = {on_track, on_slice, on_instant, on_counter, on_sample};

static void finish(struct profile *p) {
    for (size_t i = 0; i < p->nloop_tracks; i++) p->loop_threads += p->loop_tracks[i].is_loop;
    for (size_t i = 0; i < p->ntrack_kinds; i++) p->processes += p->track_kinds[i] == 1 + TRACK_PROCESS;
}

int profile_read(const char *path, struct profile *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->path = xstrdup(path);
    int rc = trace_read_stream(path, &profile_visitor, p, &p->st, err, errlen);
    finish(p);
    return rc;
}

int profile_read_buffer(const uint8_t *data, size_t len, struct profile *p, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->path = xstrdup("(buffer)");
    int rc = trace_read_stream_buffer(data, len, &profile_visitor, p, &p->st, err, errlen);
    finish(p);
    return rc;
}

const struct coro_stats *profile_coro(const struct profile *p, const char *name) {
    size_t i = gi_find(p->coro_index, name, strlen(name));
    return i == (size_t)-1 ? NULL : &p->coros[i];
}

const struct await_stats *profile_await(const struct profile *p, const char *what, const char *where) {
    size_t klen;
    char *key = await_key(what, where, &klen);
    size_t i = gi_find(p->await_index, key, klen);
    free(key);
    return i == (size_t)-1 ? NULL : &p->awaits[i];
}

const struct fn_stats *profile_fn(const struct profile *p, const char *name) {
    size_t i = gi_find(p->fn_index, name, strlen(name));
    return i == (size_t)-1 ? NULL : &p->fns[i];
}

uint64_t profile_loop_wall_ns(const struct profile *p) {
    return p->iterations && p->loop_last_ns > p->loop_first_ns ? p->loop_last_ns - p->loop_first_ns : 0;
}

void profile_free(struct profile *p) {
    free(p->path);
    free(p->command);
    hist_free(&p->busy_ns);
    hist_free(&p->lag_ns);
    for (size_t i = 0; i < p->ncoros; i++) {
        free(p->coros[i].name);
        hist_free(&p->coros[i].step_ns);
    }
    free(p->coros);
    for (size_t i = 0; i < p->nawaits; i++) {
        free(p->awaits[i].what);
        free(p->awaits[i].where);
        hist_free(&p->awaits[i].ns);
    }
    free(p->awaits);
    for (size_t i = 0; i < p->nfns; i++) free(p->fns[i].name);
    free(p->fns);
    gi_free(p->coro_index);
    gi_free(p->await_index);
    gi_free(p->fn_index);
    free(p->loop_tracks);
    free(p->track_kinds);
    memset(p, 0, sizeof *p);
}
