/* Comparison of two profiles: per dimension (event loop, coroutines, awaits,
 * functions) a list of groups (one per coroutine, await site, function; one
 * for the event loop), each with metrics before and after, whether each
 * changed beyond noise, and whether it is a regression.
 *
 * Changed beyond noise: |delta| >= the metric's floor (0.1 ms for per-item
 * times and percentiles, 1 ms for totals, 1 for counts, 2 percentage points
 * for shares, 0.1 for ratios, none for rates) and |delta| / |before| >= the
 * noise threshold (default 10%). A count and its per-second rate change only
 * together: a change the length of the trace alone explains (same count in a
 * shorter run, or twice the count in a run twice as long) is no change. A
 * group present on one side only ("new", "gone") counts as changed.
 *
 * Regression: a metric in the chosen set (compare_default_regression_metrics
 * unless given), where higher is worse, present on both sides with before >
 * 0, that rose by more than the threshold percentage and by at least its
 * regression floor (1 ms for times, so that sub-millisecond jitter never
 * fails a CI run; the display floor otherwise).
 */
#ifndef ASTRACE_COMPARE_H
#define ASTRACE_COMPARE_H

#include <stddef.h>

#include "analysis/profile.h"

enum metric_unit {
    U_MS,       /* a duration per item (mean, percentile, max), ms */
    U_MS_TOTAL, /* a sum of durations, ms */
    U_COUNT,
    U_RATE,  /* per second of loop wall time */
    U_SHARE, /* 0..1, shown as % */
    U_RATIO, /* a plain number (per iteration, per task) */
};

struct metric_def {
    const char *id;    /* "loop.slowest_iteration": for --fail-on-regression and JSON */
    const char *label; /* "slowest iteration (busy)" */
    enum metric_unit unit;
    int higher_is_worse;
    int rate_of_previous; /* a per-second rate of the count listed just before it */
};

enum dim_id { DIM_LOOP, DIM_COROUTINES, DIM_AWAITS, DIM_FUNCTIONS, DIM_COUNT };

struct cmp_metric {
    const struct metric_def *def;
    double before, after; /* NAN = no data */
    int changed, regression;
};

enum group_status { G_BOTH, G_NEW, G_GONE };

struct cmp_group {
    char *key;
    enum group_status status;
    struct cmp_metric *metrics;
    size_t nmetrics;
    double weight; /* ranking: the size of its change */
    int changed;
};

struct cmp_dim {
    enum dim_id id;
    const char *name;          /* "coroutines" */
    const char *normalization; /* how the rates and per-item values are normalized */
    char note[1024];           /* "no samples in a.pftrace", ... ("" if none) */
    int no_data;               /* neither trace has data for it */
    int one_sided;             /* one trace has none: nothing compares */
    struct cmp_group *groups;  /* ranked: changed first, biggest change first */
    size_t ngroups, nchanged;
};

struct cmp_options {
    double noise_pct;        /* default 10 */
    double fail_pct;         /* < 0: no regression check */
    const char *regressions; /* comma-separated metric ids, NULL = defaults */
    unsigned dims;           /* bit per enum dim_id */
};

struct cmp_result {
    struct cmp_dim dims[DIM_COUNT];
    size_t ndims;
    size_t nregressions;
};

extern const char *const compare_default_regression_metrics;

/* Checks a comma-separated list of metric ids; returns NULL, or the first
 * unknown id (in a static buffer). */
const char *compare_check_metric_ids(const char *list);
/* Prints every metric id with its label, unit and direction. */
void compare_list_metrics(void *file);

void compare_profiles(const struct profile *a, const struct profile *b, const struct cmp_options *o,
                      struct cmp_result *r);
void compare_free(struct cmp_result *r);

/* Floors of a unit (see above). */
double compare_floor(enum metric_unit u);
double compare_regression_floor(enum metric_unit u);

#endif
