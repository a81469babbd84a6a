/* astrace diff: what changed between two recordings, from the traces alone.
 * Both traces are streamed (in parallel, one thread each) into profiles of
 * bounded size (analysis/profile.h), compared (analysis/compare.h) and
 * printed (analysis/report.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/compare.h"
#include "analysis/report.h"
#include "cli/cli.h"
#include "common/util.h"

static void usage(FILE *o) {
    fputs("usage: astrace diff [options] BEFORE.pftrace AFTER.pftrace\n"
          "\n"
          "Compares two recordings and prints what changed, per dimension, biggest change first:\n"
          "  loop        event loop: loop wall time, tasks, iterations (and per second), idle (select)\n"
          "              share, busy time, callbacks per iteration, slowest iteration and iteration\n"
          "              p99 (busy: an iteration's duration minus its select), loop lag p50/p99\n"
          "  coroutines  per coroutine qualname: tasks, run and wait time (total and per task),\n"
          "              steps per task, step duration p50/p99\n"
          "  awaits      per awaited thing @ user-code line: count, total, mean and p99 wait\n"
          "  functions   per function, from stack samples: self and total share of samples\n"
          "Columns: before, after, delta, relative change. Rates are per second of loop wall time\n"
          "(first loop iteration start to last iteration end), so traces of different lengths\n"
          "compare; per-task values divide by that coroutine's tasks. Percentiles come from\n"
          "log-bucket histograms (32 buckets per power of two: within 1.6%).\n"
          "\n"
          "options:\n"
          "  --by LIST                  dimensions to show, comma-separated (default: all four)\n"
          "  --format text|markdown|json   output format (default text)\n"
          "  --all                      also show rows that did not change beyond noise\n"
          "  --top N                    at most N groups per dimension (default 25; 0 = all)\n"
          "  --noise PCT                a row changed if |relative| >= PCT (default 10) and |delta| is at\n"
          "                             least its floor: 0.1 ms per-item times, 1 ms totals, 1 for counts,\n"
          "                             2 percentage points for shares, 0.1 for ratios\n"
          "  --fail-on-regression PCT   exit 1 if a checked metric (higher is worse) rose by more than\n"
          "                             PCT percent and beyond its floor, on both sides' data\n"
          "  --regression-metrics LIST  the metrics checked (default: loop.slowest_iteration,\n"
          "                             loop.busy_p99, loop.lag_p99, coro.run_per_task, coro.step_p99,\n"
          "                             await.p99); --list-metrics shows them all\n"
          "  --list-metrics             print every metric id and exit\n"
          "\n"
          "Exit status: 0 compared; 1 a regression beyond --fail-on-regression; 2 bad usage, or a\n"
          "file that is missing, not a trace, truncated, or holds no data for the chosen dimensions.\n",
          o);
}

struct job {
    const char *path;
    struct profile p;
    char err[512];
    int rc;
};

static void *read_job(void *arg) {
    struct job *j = arg;
    j->rc = profile_read(j->path, &j->p, j->err, sizeof j->err);
    return NULL;
}

static int parse_dims(const char *list, unsigned *dims) {
    static const struct {
        const char *name;
        enum dim_id id;
    } names[] = {
        {"loop", DIM_LOOP},     {"event-loop", DIM_LOOP}, {"coroutines", DIM_COROUTINES}, {"coroutine", DIM_COROUTINES},
        {"awaits", DIM_AWAITS}, {"await", DIM_AWAITS},    {"functions", DIM_FUNCTIONS},   {"function", DIM_FUNCTIONS},
    };
    *dims = 0;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t i;
        for (i = 0; i < sizeof names / sizeof *names; i++)
            if (strlen(names[i].name) == len && !strncmp(names[i].name, p, len)) break;
        if (i == sizeof names / sizeof *names) {
            warnx_("diff: unknown dimension '%.*s' (loop, coroutines, awaits, functions)", (int)len, p);
            return -1;
        }
        *dims |= 1u << names[i].id;
        if (!end) break;
        p = end + 1;
    }
    return *dims ? 0 : -1;
}

static int parse_pct(const char *s, const char *opt, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0) {
        warnx_("diff: %s wants a non-negative percentage, not '%s'", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Does the profile hold data for any chosen dimension? */
static int has_data(const struct profile *p, unsigned dims) {
    if ((dims & (1u << DIM_LOOP)) && p->iterations) return 1;
    if ((dims & (1u << DIM_COROUTINES)) && (p->tasks || p->ncoros)) return 1;
    if ((dims & (1u << DIM_AWAITS)) && p->nawaits) return 1;
    if ((dims & (1u << DIM_FUNCTIONS)) && p->samples) return 1;
    return 0;
}

int cmd_diff(int argc, char **argv) {
    enum { O_BY = 256, O_FORMAT, O_ALL, O_TOP, O_NOISE, O_FAIL, O_METRICS, O_LIST };
    static const struct option opts[] = {
        {"by", required_argument, 0, O_BY},
        {"format", required_argument, 0, O_FORMAT},
        {"all", no_argument, 0, O_ALL},
        {"top", required_argument, 0, O_TOP},
        {"noise", required_argument, 0, O_NOISE},
        {"fail-on-regression", required_argument, 0, O_FAIL},
        {"regression-metrics", required_argument, 0, O_METRICS},
        {"list-metrics", no_argument, 0, O_LIST},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct cmp_options co = {.noise_pct = 10, .fail_pct = -1, .regressions = NULL, .dims = (1u << DIM_COUNT) - 1};
    struct report_options ro = {.format = FMT_TEXT, .all = 0, .top = 25, .cmp = &co};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_BY:
            if (parse_dims(optarg, &co.dims)) return 2;
            break;
        case O_FORMAT:
            if (!strcmp(optarg, "text"))
                ro.format = FMT_TEXT;
            else if (!strcmp(optarg, "markdown") || !strcmp(optarg, "md"))
                ro.format = FMT_MARKDOWN;
            else if (!strcmp(optarg, "json"))
                ro.format = FMT_JSON;
            else {
                warnx_("diff: --format is text, markdown or json, not '%s'", optarg);
                return 2;
            }
            break;
        case O_ALL: ro.all = 1; break;
        case O_TOP: {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 0) {
                warnx_("diff: --top wants a count, not '%s'", optarg);
                return 2;
            }
            ro.top = (size_t)n;
            break;
        }
        case O_NOISE:
            if (parse_pct(optarg, "--noise", &co.noise_pct)) return 2;
            break;
        case O_FAIL:
            if (parse_pct(optarg, "--fail-on-regression", &co.fail_pct)) return 2;
            break;
        case O_METRICS: {
            const char *bad = compare_check_metric_ids(optarg);
            if (bad || !*optarg) {
                warnx_("diff: unknown metric '%s' (--list-metrics shows them)", bad ? bad : "");
                return 2;
            }
            co.regressions = optarg;
            break;
        }
        case O_LIST:
            puts("metric ids (for --regression-metrics; in --format json):");
            compare_list_metrics(stdout);
            return 0;
        case 'h': usage(stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc - 2) {
        warnx_("diff: give two trace files (before, after); see 'astrace diff --help'");
        return 2;
    }
    if (co.regressions && co.fail_pct < 0)
        warnx_("diff: --regression-metrics has no effect without --fail-on-regression");

    struct job jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].path = argv[optind];
    jobs[1].path = argv[optind + 1];
    pthread_t th;
    int threaded = pthread_create(&th, NULL, read_job, &jobs[1]) == 0;
    read_job(&jobs[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        read_job(&jobs[1]);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (jobs[i].rc) {
            warnx_("diff: %s: %s", jobs[i].path, jobs[i].err);
            rc = 2;
        } else if (!has_data(&jobs[i].p, co.dims)) {
            if (i == 1 && !jobs[0].rc && !strcmp(jobs[0].path, jobs[1].path)) continue; /* said once */
            static const char *const missing[DIM_COUNT] = {"event-loop iterations", "tasks", "await slices",
                                                           "stack samples"};
            char what[256] = "";
            for (int d = 0; d < DIM_COUNT; d++)
                if (co.dims & (1u << d))
                    snprintf(what + strlen(what), sizeof what - strlen(what), "%s%s", what[0] ? ", " : "", missing[d]);
            warnx_("diff: %s holds no data for the chosen dimensions (no %s)%s", jobs[i].path, what,
                   co.dims & ((1u << DIM_LOOP) | (1u << DIM_COROUTINES)) ? ": was it recorded from an asyncio program?"
                                                                         : "");
            rc = 2;
        }
    }
    if (rc == 0) {
        struct cmp_result r;
        compare_profiles(&jobs[0].p, &jobs[1].p, &co, &r);
        report_write(stdout, &jobs[0].p, &jobs[1].p, &r, &ro);
        fflush(stdout);
        if (co.fail_pct >= 0 && r.nregressions) rc = 1;
        compare_free(&r);
    }
    profile_free(&jobs[0].p);
    profile_free(&jobs[1].p);
    return rc;
}
