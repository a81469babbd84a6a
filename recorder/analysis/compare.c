/* Implementation of compare.h. */
#include "analysis/compare.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const struct metric_def LOOP_METRICS[] = {
    {"loop.wall", "loop wall time", U_MS_TOTAL, 1},
    {"loop.tasks", "tasks", U_COUNT, 0},
    {"loop.tasks_per_s", "tasks/s", U_RATE, 0, 1},
    {"loop.iterations", "iterations", U_COUNT, 0},
    {"loop.iterations_per_s", "iterations/s", U_RATE, 0, 1},
    {"loop.idle_share", "idle (select) share", U_SHARE, 0},
    {"loop.busy", "busy time (total)", U_MS_TOTAL, 1},
    {"loop.callbacks_per_iteration", "callbacks/iteration", U_RATIO, 0},
    {"loop.slowest_iteration", "slowest iteration (busy)", U_MS, 1},
    {"loop.busy_p99", "iteration busy p99", U_MS, 1},
    {"loop.lag_p50", "loop lag p50", U_MS, 1},
    {"loop.lag_p99", "loop lag p99", U_MS, 1},
};
enum {
    L_WALL,
    L_TASKS,
    L_TASKS_S,
    L_ITER,
    L_ITER_S,
    L_IDLE,
    L_BUSY,
    L_CB_ITER,
    L_SLOWEST,
    L_BUSY_P99,
    L_LAG_P50,
    L_LAG_P99,
    L_N
};

static const struct metric_def CORO_METRICS[] = {
    {"coro.tasks", "tasks", U_COUNT, 0},
    {"coro.tasks_per_s", "tasks/s", U_RATE, 0, 1},
    {"coro.run_total", "run time (total)", U_MS_TOTAL, 0},
    {"coro.wait_total", "wait time (total)", U_MS_TOTAL, 0},
    {"coro.run_per_task", "run time/task", U_MS, 1},
    {"coro.wait_per_task", "wait time/task", U_MS, 1},
    {"coro.steps_per_task", "steps/task", U_RATIO, 0},
    {"coro.step_p50", "step p50", U_MS, 1},
    {"coro.step_p99", "step p99", U_MS, 1},
};
enum { C_TASKS, C_TASKS_S, C_RUN, C_WAIT, C_RUN_TASK, C_WAIT_TASK, C_STEPS_TASK, C_P50, C_P99, C_N };

static const struct metric_def AWAIT_METRICS[] = {
    {"await.count", "count", U_COUNT, 0},    {"await.per_s", "count/s", U_RATE, 0, 1},
    {"await.total", "total", U_MS_TOTAL, 0}, {"await.mean", "mean", U_MS, 1},
    {"await.p99", "p99", U_MS, 1},
};
enum { A_COUNT, A_PER_S, A_TOTAL, A_MEAN, A_P99, A_N };

static const struct metric_def FN_METRICS[] = {
    {"fn.self", "self share", U_SHARE, 1},
    {"fn.total", "total share", U_SHARE, 1},
};
enum { F_SELF, F_TOTAL, F_N };

const char *const compare_default_regression_metrics =
    "loop.slowest_iteration,loop.busy_p99,loop.lag_p99,coro.run_per_task,coro.step_p99,await.p99";

static const struct {
    const struct metric_def *defs;
    size_t n;
} ALL_METRICS[DIM_COUNT] = {
    {LOOP_METRICS, L_N},
    {CORO_METRICS, C_N},
    {AWAIT_METRICS, A_N},
    {FN_METRICS, F_N},
};

double compare_floor(enum metric_unit u) {
    switch (u) {
    case U_MS: return 0.1;
    case U_MS_TOTAL: return 1.0;
    case U_COUNT: return 1.0;
    case U_RATE: return 0.0;
    case U_SHARE: return 0.02;
    case U_RATIO: return 0.1;
    }
    return 0;
}

double compare_regression_floor(enum metric_unit u) {
    return u == U_MS || u == U_MS_TOTAL ? 1.0 : compare_floor(u);
}

/* Is `id` one of the comma-separated ids in `list`? */
static int in_list(const char *list, const char *id) {
    size_t n = strlen(id);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, id, n)) return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

const char *compare_check_metric_ids(const char *list) {
    static char bad[128];
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = 0;
        for (int d = 0; d < DIM_COUNT && !found; d++)
            for (size_t i = 0; i < ALL_METRICS[d].n; i++)
                if (strlen(ALL_METRICS[d].defs[i].id) == len && !memcmp(ALL_METRICS[d].defs[i].id, p, len)) found = 1;
        if (!found) {
            snprintf(bad, sizeof bad, "%.*s", (int)(len < 100 ? len : 100), p);
            return bad;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

void compare_list_metrics(void *file) {
    FILE *o = file;
    static const char *units[] = {"ms", "ms (total)", "count", "per second", "share", "ratio"};
    for (int d = 0; d < DIM_COUNT; d++)
        for (size_t i = 0; i < ALL_METRICS[d].n; i++) {
            const struct metric_def *m = &ALL_METRICS[d].defs[i];
            fprintf(o, "  %-30s %-26s %-11s%s%s\n", m->id, m->label, units[m->unit],
                    m->higher_is_worse ? "  higher is worse" : "",
                    in_list(compare_default_regression_metrics, m->id) ? " (checked by default)" : "");
        }
}

/* ---- values of one side ------------------------------------------------------------ */

static double ms(double ns) {
    return ns / 1e6;
}

static double per_s(double n, const struct profile *p) {
    uint64_t wall = profile_loop_wall_ns(p);
    return wall ? n / (wall / 1e9) : NAN;
}

static double quantile_ms(const struct hist *h, double q) {
    return h->n ? ms(hist_quantile(h, q)) : NAN;
}

static void loop_values(const struct profile *p, double *v) {
    int loop = p->iterations > 0;
    v[L_WALL] = loop ? ms((double)profile_loop_wall_ns(p)) : NAN;
    v[L_TASKS] = p->tasks_off ? NAN : (double)p->tasks;
    v[L_TASKS_S] = p->tasks_off ? NAN : per_s((double)p->tasks, p);
    v[L_ITER] = loop ? (double)p->iterations : NAN;
    v[L_ITER_S] = loop ? per_s((double)p->iterations, p) : NAN;
    v[L_IDLE] = loop && p->iter_ns > 0 ? p->select_ns / p->iter_ns : NAN;
    v[L_BUSY] = loop ? ms(p->iter_ns - p->select_ns) : NAN;
    v[L_CB_ITER] = loop ? (double)p->callbacks / (double)p->iterations : NAN;
    v[L_SLOWEST] = loop ? ms((double)p->slowest_busy_ns) : NAN;
    v[L_BUSY_P99] = quantile_ms(&p->busy_ns, 0.99);
    v[L_LAG_P50] = quantile_ms(&p->lag_ns, 0.50);
    v[L_LAG_P99] = quantile_ms(&p->lag_ns, 0.99);
}

static int has_task_data(const struct profile *p) {
    return p->tasks > 0 || p->ncoros > 0;
}

static void coro_values(const struct profile *p, const struct coro_stats *c, double *v) {
    for (int i = 0; i < C_N; i++) v[i] = NAN;
    if (!has_task_data(p)) return;
    v[C_TASKS] = c ? (double)c->tasks : 0;
    v[C_TASKS_S] = per_s(v[C_TASKS], p);
    v[C_RUN] = c ? c->run_ms : 0;
    v[C_WAIT] = c ? c->wait_ms : 0;
    if (!c) return;
    if (c->tasks) {
        v[C_RUN_TASK] = c->run_ms / (double)c->tasks;
        v[C_WAIT_TASK] = c->wait_ms / (double)c->tasks;
        v[C_STEPS_TASK] = (double)c->steps / (double)c->tasks;
    }
    v[C_P50] = quantile_ms(&c->step_ns, 0.50);
    v[C_P99] = quantile_ms(&c->step_ns, 0.99);
}

static void await_values(const struct profile *p, const struct await_stats *a, double *v) {
    for (int i = 0; i < A_N; i++) v[i] = NAN;
    if (!p->nawaits) return;
    v[A_COUNT] = a ? (double)a->count : 0;
    v[A_PER_S] = per_s(v[A_COUNT], p);
    v[A_TOTAL] = a ? ms(a->total_ns) : 0;
    if (!a || !a->count) return;
    v[A_MEAN] = ms(a->total_ns / (double)a->count);
    v[A_P99] = quantile_ms(&a->ns, 0.99);
}

static void fn_values(const struct profile *p, const struct fn_stats *f, double *v) {
    if (!p->samples) {
        v[F_SELF] = v[F_TOTAL] = NAN;
        return;
    }
    v[F_SELF] = f ? (double)f->self / (double)p->samples : 0;
    v[F_TOTAL] = f ? (double)f->total / (double)p->samples : 0;
}

/* ---- groups --------------------------------------------------------------------------- */

struct build {
    const struct cmp_options *o;
    struct cmp_dim *dim;
    size_t cap;
    size_t *nregressions;
};

static int changed(const struct metric_def *d, double before, double after, double noise_pct) {
    if (isnan(before) || isnan(after)) return 0;
    double delta = fabs(after - before);
    if (delta < compare_floor(d->unit) || delta == 0) return 0;
    return before == 0 || delta / fabs(before) * 100.0 >= noise_pct;
}

static int regression(const struct cmp_options *o, const struct metric_def *d, double before, double after) {
    if (o->fail_pct < 0 || !d->higher_is_worse) return 0;
    if (!in_list(o->regressions ? o->regressions : compare_default_regression_metrics, d->id)) return 0;
    if (isnan(before) || isnan(after) || !(before > 0) || after <= before) return 0;
    if (after - before < compare_regression_floor(d->unit)) return 0;
    return (after - before) / before * 100.0 > o->fail_pct;
}

static void add_group(struct build *b, const char *key, enum group_status status, const struct metric_def *defs,
                      size_t n, const double *before, const double *after) {
    struct cmp_dim *dim = b->dim;
    if (dim->ngroups == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        dim->groups = xrealloc(dim->groups, b->cap * sizeof *dim->groups);
    }
    struct cmp_group *g = &dim->groups[dim->ngroups++];
    memset(g, 0, sizeof *g);
    g->key = xstrdup(key);
    g->status = status;
    g->metrics = xcalloc(n, sizeof *g->metrics);
    g->nmetrics = n;
    g->changed = status != G_BOTH;
    for (size_t i = 0; i < n; i++) {
        struct cmp_metric *m = &g->metrics[i];
        m->def = &defs[i];
        m->before = before[i];
        m->after = after[i];
        m->changed = changed(m->def, before[i], after[i], b->o->noise_pct);
        m->regression = regression(b->o, m->def, before[i], after[i]);
        *b->nregressions += (size_t)m->regression;
    }
    for (size_t i = 1; i < n; i++)
        if (defs[i].rate_of_previous && !(g->metrics[i].changed && g->metrics[i - 1].changed))
            g->metrics[i].changed = g->metrics[i - 1].changed = 0;
    for (size_t i = 0; i < n; i++) g->changed |= g->metrics[i].changed;
}

static double absdiff(double a, double b) {
    double x = (isnan(b) ? 0 : b) - (isnan(a) ? 0 : a);
    return fabs(x);
}

static int by_rank(const void *x, const void *y) {
    const struct cmp_group *a = x, *b = y;
    if (a->changed != b->changed) return a->changed ? -1 : 1;
    if (a->weight != b->weight) return a->weight > b->weight ? -1 : 1;
    return strcmp(a->key, b->key);
}

static void finish_dim(struct cmp_dim *dim, int weight_a, int weight_b, int max_not_sum) {
    for (size_t i = 0; i < dim->ngroups; i++) {
        struct cmp_group *g = &dim->groups[i];
        double wa = absdiff(g->metrics[weight_a].before, g->metrics[weight_a].after);
        double wb = weight_b >= 0 ? absdiff(g->metrics[weight_b].before, g->metrics[weight_b].after) : 0;
        g->weight = max_not_sum ? (wa > wb ? wa : wb) : wa + wb;
        dim->nchanged += (size_t)g->changed;
    }
    qsort(dim->groups, dim->ngroups, sizeof *dim->groups, by_rank);
}

static void note(struct cmp_dim *dim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct cmp_dim *dim, const char *fmt, ...) {
    size_t len = strlen(dim->note);
    if (len + 3 >= sizeof dim->note) return;
    if (len) {
        memcpy(dim->note + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dim->note + len, sizeof dim->note - len, fmt, ap);
    va_end(ap);
}

/* Which side lacks data, in words: "a.pftrace", "a.pftrace or b.pftrace". */
static void note_missing(struct cmp_dim *dim, const char *what, int miss_a, int miss_b, const struct profile *a,
                         const struct profile *b) {
    if (miss_a && miss_b && !strcmp(a->path, b->path))
        note(dim, "no %s in %s", what, a->path);
    else if (miss_a && miss_b)
        note(dim, "no %s in %s or %s", what, a->path, b->path);
    else if (miss_a || miss_b)
        note(dim, "no %s in %s", what, miss_a ? a->path : b->path);
    if (miss_a && miss_b) dim->no_data = 1;
    if (miss_a != miss_b) dim->one_sided = 1;
}

static void dim_loop(struct build *b, const struct profile *pa, const struct profile *pb) {
    struct cmp_dim *dim = b->dim;
    dim->name = "event loop";
    dim->normalization = "all loop threads together; busy = an iteration's duration minus its select; "
                         "/s = per second of loop wall time (first iteration start to last iteration end); "
                         "percentiles from log-bucket histograms (within 1.6%)";
    note_missing(dim, "event-loop iterations", !pa->iterations, !pb->iterations, pa, pb);
    if (pa->iterations && pb->iterations && (!pa->lag_ns.n || !pb->lag_ns.n))
        note(dim, "no loop lag counter in %s (recorded with --no-counters?)",
             !pa->lag_ns.n && !pb->lag_ns.n ? "either trace"
             : !pa->lag_ns.n                ? pa->path
                                            : pb->path);
    if (dim->no_data) return;
    double va[L_N], vb[L_N];
    loop_values(pa, va);
    loop_values(pb, vb);
    add_group(b, "", G_BOTH, LOOP_METRICS, L_N, va, vb);
    finish_dim(dim, L_WALL, -1, 0);
}

static void dim_coroutines(struct build *b, const struct profile *pa, const struct profile *pb) {
    struct cmp_dim *dim = b->dim;
    dim->name = "coroutines";
    dim->normalization = "by coroutine qualname; /task = per task of that coroutine; "
                         "/s = per second of loop wall time; steps = the loop's `step` callbacks; "
                         "ranked by |delta run + wait time|";
    note_missing(dim, "tasks", !has_task_data(pa), !has_task_data(pb), pa, pb);
    if (pa->tasks_off || pb->tasks_off)
        note(dim, "tasks were not recorded (--no-tasks) in %s",
             pa->tasks_off && pb->tasks_off ? "either trace"
             : pa->tasks_off                ? pa->path
                                            : pb->path);
    if (dim->no_data) return;
    double va[C_N], vb[C_N];
    for (size_t i = 0; i < pa->ncoros; i++) {
        const struct coro_stats *ca = &pa->coros[i], *cb = profile_coro(pb, ca->name);
        coro_values(pa, ca, va);
        coro_values(pb, cb, vb);
        add_group(b, ca->name, cb || !has_task_data(pb) ? G_BOTH : G_GONE, CORO_METRICS, C_N, va, vb);
    }
    for (size_t j = 0; j < pb->ncoros; j++) {
        if (profile_coro(pa, pb->coros[j].name)) continue;
        coro_values(pa, NULL, va);
        coro_values(pb, &pb->coros[j], vb);
        add_group(b, pb->coros[j].name, has_task_data(pa) ? G_NEW : G_BOTH, CORO_METRICS, C_N, va, vb);
    }
    finish_dim(dim, C_RUN, C_WAIT, 0);
}

static void await_key(const struct await_stats *a, char *out, size_t cap) {
    if (a->where[0])
        snprintf(out, cap, "%s @ %s", a->what, a->where);
    else
        snprintf(out, cap, "%s", a->what);
}

static void dim_awaits(struct build *b, const struct profile *pa, const struct profile *pb) {
    struct cmp_dim *dim = b->dim;
    dim->name = "awaits";
    dim->normalization = "by what was awaited @ user-code line (awaited_at); /s = per second of loop wall "
                         "time; ranked by |delta total|";
    note_missing(dim, "await slices", !pa->nawaits, !pb->nawaits, pa, pb);
    if (pa->tasks_off || pb->tasks_off)
        note(dim, "tasks were not recorded (--no-tasks) in %s",
             pa->tasks_off && pb->tasks_off ? "either trace"
             : pa->tasks_off                ? pa->path
                                            : pb->path);
    const struct profile *sides[2] = {pa, pb};
    for (int s = 0; s < 2; s++)
        if (sides[s]->tasks_without_lane)
            note(dim, "%s: %llu tasks had no lane for some or all of their life, and no await slices then",
                 sides[s]->path, (unsigned long long)sides[s]->tasks_without_lane);
    if (dim->no_data) return;
    double va[A_N], vb[A_N];
    char key[2048];
    for (size_t i = 0; i < pa->nawaits; i++) {
        const struct await_stats *aa = &pa->awaits[i], *ab = profile_await(pb, aa->what, aa->where);
        await_values(pa, aa, va);
        await_values(pb, ab, vb);
        await_key(aa, key, sizeof key);
        add_group(b, key, ab || !pb->nawaits ? G_BOTH : G_GONE, AWAIT_METRICS, A_N, va, vb);
    }
    for (size_t j = 0; j < pb->nawaits; j++) {
        if (profile_await(pa, pb->awaits[j].what, pb->awaits[j].where)) continue;
        await_values(pa, NULL, va);
        await_values(pb, &pb->awaits[j], vb);
        await_key(&pb->awaits[j], key, sizeof key);
        add_group(b, key, pa->nawaits ? G_NEW : G_BOTH, AWAIT_METRICS, A_N, va, vb);
    }
    finish_dim(dim, A_TOTAL, -1, 0);
}

static void dim_functions(struct build *b, const struct profile *pa, const struct profile *pb) {
    struct cmp_dim *dim = b->dim;
    dim->name = "functions";
    dim->normalization = "share of stack samples: self = innermost frame, total = anywhere in the stack; "
                         "ranked by the larger |delta|";
    note_missing(dim, "samples", !pa->samples, !pb->samples, pa, pb);
    if ((!pa->samples && pa->sampler_off) || (!pb->samples && pb->sampler_off))
        note(dim, "the stack sampler was off while recording %s",
             !pa->samples && pa->sampler_off && !pb->samples && pb->sampler_off ? "either trace"
             : !pa->samples && pa->sampler_off                                  ? pa->path
                                                                                : pb->path);
    const struct profile *sides[2] = {pa, pb};
    for (int s = 0; s < 2; s++)
        if (sides[s]->samples_unresolved)
            note(dim, "%s: %llu samples without a resolvable callstack", sides[s]->path,
                 (unsigned long long)sides[s]->samples_unresolved);
    if (dim->no_data) return;
    double va[F_N], vb[F_N];
    for (size_t i = 0; i < pa->nfns; i++) {
        const struct fn_stats *fa = &pa->fns[i], *fb = profile_fn(pb, fa->name);
        fn_values(pa, fa, va);
        fn_values(pb, fb, vb);
        add_group(b, fa->name, fb || !pb->samples ? G_BOTH : G_GONE, FN_METRICS, F_N, va, vb);
    }
    for (size_t j = 0; j < pb->nfns; j++) {
        if (profile_fn(pa, pb->fns[j].name)) continue;
        fn_values(pa, NULL, va);
        fn_values(pb, &pb->fns[j], vb);
        add_group(b, pb->fns[j].name, pa->samples ? G_NEW : G_BOTH, FN_METRICS, F_N, va, vb);
    }
    finish_dim(dim, F_SELF, F_TOTAL, 1);
}

void compare_profiles(const struct profile *a, const struct profile *b, const struct cmp_options *o,
                      struct cmp_result *r) {
    memset(r, 0, sizeof *r);
    static void (*const builders[DIM_COUNT])(struct build *, const struct profile *, const struct profile *) = {
        dim_loop, dim_coroutines, dim_awaits, dim_functions};
    for (int d = 0; d < DIM_COUNT; d++) {
        if (!(o->dims & (1u << d))) continue;
        struct cmp_dim *dim = &r->dims[r->ndims++];
        dim->id = (enum dim_id)d;
        struct build bd = {o, dim, 0, &r->nregressions};
        builders[d](&bd, a, b);
    }
}

void compare_free(struct cmp_result *r) {
    for (size_t d = 0; d < r->ndims; d++) {
        for (size_t i = 0; i < r->dims[d].ngroups; i++) {
            free(r->dims[d].groups[i].key);
            free(r->dims[d].groups[i].metrics);
        }
        free(r->dims[d].groups);
    }
    memset(r, 0, sizeof *r);
}
