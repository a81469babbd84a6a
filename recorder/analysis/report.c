/* Implementation of report.h. */
#include "analysis/report.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

/* ---- formatting values ------------------------------------------------------- */

static void fmt_ms(char *out, size_t cap, double v, int sign) {
    const char *sg = sign && v > 0 ? "+" : "";
    double a = fabs(v);
    if (a >= 1000)
        snprintf(out, cap, "%s%.2f s", sg, v / 1000);
    else if (a >= 100)
        snprintf(out, cap, "%s%.0f ms", sg, v);
    else if (a >= 10)
        snprintf(out, cap, "%s%.1f ms", sg, v);
    else if (a >= 1)
        snprintf(out, cap, "%s%.2f ms", sg, v);
    else
        snprintf(out, cap, "%s%.3f ms", sg, v);
}

static void fmt_value(char *out, size_t cap, enum metric_unit u, double v, int sign) {
    if (isnan(v)) {
        snprintf(out, cap, "-");
        return;
    }
    const char *sg = sign && v > 0 ? "+" : "";
    switch (u) {
    case U_MS:
    case U_MS_TOTAL: fmt_ms(out, cap, v, sign); break;
    case U_COUNT: snprintf(out, cap, "%s%.0f", sg, v); break;
    case U_RATE: snprintf(out, cap, fabs(v) >= 100 ? "%s%.0f/s" : "%s%.1f/s", sg, v); break;
    case U_SHARE: snprintf(out, cap, sign ? "%s%.1f pp" : "%s%.1f%%", sg, v * 100); break;
    case U_RATIO: snprintf(out, cap, "%s%.2f", sg, v); break;
    }
}

static double delta_of(const struct cmp_metric *m) {
    return isnan(m->before) || isnan(m->after) ? NAN : m->after - m->before;
}

static double relative_of(const struct cmp_metric *m) {
    if (isnan(m->before) || isnan(m->after) || m->before == 0) return NAN;
    return (m->after - m->before) / fabs(m->before);
}

static void fmt_relative(char *out, size_t cap, const struct cmp_metric *m, enum group_status st) {
    if (st == G_NEW) {
        snprintf(out, cap, "new");
        return;
    }
    if (st == G_GONE) {
        snprintf(out, cap, "gone");
        return;
    }
    if (isnan(m->before) || isnan(m->after)) {
        snprintf(out, cap, "%s", "");
        return;
    }
    if (m->before == 0) {
        snprintf(out, cap, "%s", m->after == 0 ? "0%" : "new");
        return;
    }
    double r = relative_of(m), f = m->before != 0 && m->after != 0 ? m->after / m->before : 0;
    if (f >= 2)
        snprintf(out, cap, "%+.0f%% (x%.1f)", r * 100, f);
    else if (f > 0 && f <= 0.5)
        snprintf(out, cap, "%+.1f%% (/%.1f)", r * 100, 1 / f);
    else
        snprintf(out, cap, "%+.1f%%", r * 100);
}

/* Whether a metric row shows: changed, or --all, or the present side of a
 * new or gone group has something to say. */
static int metric_shown(const struct cmp_group *g, const struct cmp_metric *m, int all) {
    if (all) return 1;
    if (g->status == G_NEW) return !isnan(m->after) && m->after != 0 && m->def->unit != U_RATE;
    if (g->status == G_GONE) return !isnan(m->before) && m->before != 0 && m->def->unit != U_RATE;
    return m->changed;
}

static size_t groups_shown(const struct cmp_dim *d, const struct report_options *ro) {
    size_t n = ro->all ? d->ngroups : d->nchanged;
    return ro->top && n > ro->top ? ro->top : n;
}

static const char *side_command(const struct profile *p) {
    return p->command ? p->command : "(no session metadata)";
}

/* ---- text ------------------------------------------------------------------------- */

struct row {
    char label[512], before[64], after[64], delta[64], rel[64];
    int regression;
};

static void make_row(struct row *r, const char *label, const struct cmp_group *g, const struct cmp_metric *m) {
    snprintf(r->label, sizeof r->label, "%s", label);
    fmt_value(r->before, sizeof r->before, m->def->unit, m->before, 0);
    fmt_value(r->after, sizeof r->after, m->def->unit, m->after, 0);
    fmt_value(r->delta, sizeof r->delta, m->def->unit, delta_of(m), 1);
    if (isnan(delta_of(m))) snprintf(r->delta, sizeof r->delta, "%s", "");
    fmt_relative(r->rel, sizeof r->rel, m, g->status);
    r->regression = m->regression;
}

static const char *group_title(const struct cmp_dim *d) {
    switch (d->id) {
    case DIM_COROUTINES: return "coroutine";
    case DIM_AWAITS: return "awaited @ where";
    case DIM_FUNCTIONS: return "function";
    default: return "metric";
    }
}

static void text_dim(FILE *o, const struct cmp_dim *d, const struct report_options *ro) {
    fprintf(o, "\n%s (%s)\n", d->name, d->normalization);
    if (d->note[0]) fprintf(o, "  note: %s\n", d->note);
    if (d->no_data) return;
    size_t ng = groups_shown(d, ro);
    /* Rows first, to size the columns. */
    size_t nrows = 0, cap = 16;
    struct row *rows = xcalloc(cap, sizeof *rows);
    int grouped = d->id != DIM_LOOP;
    for (size_t gi = 0; gi < ng; gi++) {
        const struct cmp_group *g = &d->groups[gi];
        if (grouped) {
            if (nrows == cap) rows = xrealloc(rows, (cap *= 2) * sizeof *rows);
            memset(&rows[nrows], 0, sizeof *rows);
            snprintf(rows[nrows].label, sizeof rows[nrows].label, "%s%s", g->key,
                     g->status == G_NEW    ? " (new)"
                     : g->status == G_GONE ? " (gone)"
                                           : "");
            rows[nrows].before[0] = 1; /* marks a group header */
            nrows++;
        }
        for (size_t mi = 0; mi < g->nmetrics; mi++) {
            if (!metric_shown(g, &g->metrics[mi], ro->all)) continue;
            if (nrows == cap) rows = xrealloc(rows, (cap *= 2) * sizeof *rows);
            char label[300];
            snprintf(label, sizeof label, "%s%s", grouped ? "  " : "", g->metrics[mi].def->label);
            make_row(&rows[nrows++], label, g, &g->metrics[mi]);
        }
    }
    int wl = (int)strlen(group_title(d)) + (grouped ? 9 : 0), wb = 6, wa = 5, wd = 5;
    for (size_t i = 0; i < nrows; i++) {
        int l = (int)strlen(rows[i].label);
        if (rows[i].before[0] == 1) continue;
        if (l > wl) wl = l;
        if ((int)strlen(rows[i].before) > wb) wb = (int)strlen(rows[i].before);
        if ((int)strlen(rows[i].after) > wa) wa = (int)strlen(rows[i].after);
        if ((int)strlen(rows[i].delta) > wd) wd = (int)strlen(rows[i].delta);
    }
    if (nrows) {
        char title[64];
        snprintf(title, sizeof title, "%s%s", group_title(d), grouped ? " / metric" : "");
        fprintf(o, "  %-*s  %*s  %*s  %*s  relative\n", wl, title, wb, "before", wa, "after", wd, "delta");
    }
    for (size_t i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        if (r->before[0] == 1) {
            fprintf(o, "  %s\n", r->label);
            continue;
        }
        fprintf(o, "  %-*s  %*s  %*s  %*s  %s%s\n", wl, r->label, wb, r->before, wa, r->after, wd, r->delta, r->rel,
                r->regression ? "  << regression" : "");
    }
    free(rows);
    size_t shown = ng, more = (ro->all ? d->ngroups : d->nchanged) - ng;
    if (more) fprintf(o, "  (%zu more %s; --top shows more)\n", more, d->nchanged > shown ? "changed" : "");
    if (!ro->all) {
        if (d->id == DIM_LOOP) {
            size_t unchanged = 0;
            for (size_t gi = 0; gi < d->ngroups; gi++)
                for (size_t mi = 0; mi < d->groups[gi].nmetrics; mi++) unchanged += !d->groups[gi].metrics[mi].changed;
            if (d->ngroups && d->nchanged == 0)
                fprintf(o, "  no change beyond noise\n");
            else if (unchanged)
                fprintf(o, "  (%zu metrics unchanged beyond noise; --all shows them)\n", unchanged);
        } else if (d->nchanged == 0 && d->one_sided) {
            fprintf(o, "  nothing to compare: one trace has no data here\n");
        } else if (d->nchanged == 0) {
            fprintf(o, "  no change beyond noise (%zu compared)\n", d->ngroups);
        } else if (d->ngroups > d->nchanged) {
            fprintf(o, "  (%zu unchanged beyond noise; --all shows them)\n", d->ngroups - d->nchanged);
        }
    }
}

static void text_side(FILE *o, const char *which, const struct profile *p) {
    char wall[64];
    uint64_t w = profile_loop_wall_ns(p);
    if (w)
        fmt_ms(wall, sizeof wall, w / 1e6, 0);
    else
        snprintf(wall, sizeof wall, "-");
    fprintf(o, "  %s %s: %s; loop wall %s, %llu iterations, %llu tasks, %llu samples, %llu process%s\n", which, p->path,
            side_command(p), wall, (unsigned long long)p->iterations, (unsigned long long)p->tasks,
            (unsigned long long)p->samples, (unsigned long long)p->processes, p->processes == 1 ? "" : "es");
    if (p->events_dropped)
        fprintf(o, "    warning: %llu events were dropped while recording %s: its counts and totals are low\n",
                (unsigned long long)p->events_dropped, p->path);
    if (p->st.unknown_iids || p->st.unmatched_ends)
        fprintf(o, "    warning: %s has %llu undefined interned ids and %llu unmatched slice ends\n", p->path,
                (unsigned long long)p->st.unknown_iids, (unsigned long long)p->st.unmatched_ends);
}

static void regressions_text(FILE *o, const struct cmp_result *r, const struct report_options *ro, int md) {
    const struct cmp_options *c = ro->cmp;
    if (c->fail_pct < 0) return;
    const char *ids = c->regressions ? c->regressions : compare_default_regression_metrics;
    if (md)
        fprintf(o,
                "\n### Regression check\n\n%zu regression%s: a checked metric worse by more than %g%% (and by 1 ms "
                "for times); checked: `%s`\n\n",
                r->nregressions, r->nregressions == 1 ? "" : "s", c->fail_pct, ids);
    else
        fprintf(o,
                "\nregression check: %zu regression%s (a checked metric worse by more than %g%%, and by 1 ms for "
                "times; checked: %s)\n",
                r->nregressions, r->nregressions == 1 ? "" : "s", c->fail_pct, ids);
    for (size_t d = 0; d < r->ndims; d++)
        for (size_t gi = 0; gi < r->dims[d].ngroups; gi++) {
            const struct cmp_group *g = &r->dims[d].groups[gi];
            for (size_t mi = 0; mi < g->nmetrics; mi++) {
                const struct cmp_metric *m = &g->metrics[mi];
                if (!m->regression) continue;
                char b[64], a[64], rel[64];
                fmt_value(b, sizeof b, m->def->unit, m->before, 0);
                fmt_value(a, sizeof a, m->def->unit, m->after, 0);
                fmt_relative(rel, sizeof rel, m, g->status);
                const char *tick = md && g->key[0] ? "`" : "";
                fprintf(o, "%s%s%s%s%s%s: %s (%s) %s -> %s, %s\n", md ? "- " : "  ", r->dims[d].name,
                        g->key[0] ? " " : "", tick, g->key, tick, m->def->label, m->def->id, b, a, rel);
            }
        }
}

static void write_text(FILE *o, const struct profile *a, const struct profile *b, const struct cmp_result *r,
                       const struct report_options *ro) {
    fprintf(o, "astrace diff\n");
    text_side(o, "before", a);
    text_side(o, "after ", b);
    fprintf(o,
            "  a row shows when |relative| >= %g%% and |delta| >= its floor (0.1 ms per-item times, 1 ms totals, "
            "1 for counts, 2 pp shares)\n",
            ro->cmp->noise_pct);
    for (size_t d = 0; d < r->ndims; d++) text_dim(o, &r->dims[d], ro);
    regressions_text(o, r, ro, 0);
}

/* ---- markdown ---------------------------------------------------------------------------- */

static void md_cell(FILE *o, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", o);
        else if (*s == '\n')
            fputc(' ', o);
        else
            fputc(*s, o);
    }
}

static void write_markdown(FILE *o, const struct profile *a, const struct profile *b, const struct cmp_result *r,
                           const struct report_options *ro) {
    fprintf(o, "## astrace diff\n\n| | trace | command | loop wall | iterations | tasks | samples |\n"
               "|---|---|---|--:|--:|--:|--:|\n");
    const struct profile *sides[2] = {a, b};
    for (int s = 0; s < 2; s++) {
        char wall[64];
        uint64_t w = profile_loop_wall_ns(sides[s]);
        if (w)
            fmt_ms(wall, sizeof wall, w / 1e6, 0);
        else
            snprintf(wall, sizeof wall, "-");
        fprintf(o, "| %s | `", s ? "after" : "before");
        md_cell(o, sides[s]->path);
        fputs("` | ", o);
        md_cell(o, side_command(sides[s]));
        fprintf(o, " | %s | %llu | %llu | %llu |\n", wall, (unsigned long long)sides[s]->iterations,
                (unsigned long long)sides[s]->tasks, (unsigned long long)sides[s]->samples);
    }
    for (int s = 0; s < 2; s++)
        if (sides[s]->events_dropped)
            fprintf(o, "\n**Warning:** %llu events were dropped while recording `%s`: its counts and totals are low.\n",
                    (unsigned long long)sides[s]->events_dropped, sides[s]->path);
    fprintf(o, "\nRows show when |relative| >= %g%% and |delta| >= the metric's floor.\n", ro->cmp->noise_pct);
    for (size_t di = 0; di < r->ndims; di++) {
        const struct cmp_dim *d = &r->dims[di];
        fprintf(o, "\n### %s\n\n_%s_\n", d->name, d->normalization);
        if (d->note[0]) {
            fputs("\nNote: ", o);
            md_cell(o, d->note);
            fputc('\n', o);
        }
        if (d->no_data) continue;
        size_t ng = groups_shown(d, ro), nrows = 0;
        int grouped = d->id != DIM_LOOP;
        for (size_t gi = 0; gi < ng; gi++) {
            const struct cmp_group *g = &d->groups[gi];
            int first = 1;
            for (size_t mi = 0; mi < g->nmetrics; mi++) {
                const struct cmp_metric *m = &g->metrics[mi];
                if (!metric_shown(g, m, ro->all)) continue;
                if (!nrows++) {
                    if (grouped)
                        fprintf(o, "\n| %s | metric | before | after | delta | relative |\n|---|---|--:|--:|--:|--:|\n",
                                group_title(d));
                    else
                        fputs("\n| metric | before | after | delta | relative |\n|---|--:|--:|--:|--:|\n", o);
                }
                struct row rw;
                make_row(&rw, m->def->label, g, m);
                fputs("| ", o);
                if (grouped) {
                    if (first) {
                        fputc('`', o);
                        md_cell(o, g->key);
                        fputc('`', o);
                        if (g->status != G_BOTH) fprintf(o, " (%s)", g->status == G_NEW ? "new" : "gone");
                    }
                    fputs(" | ", o);
                }
                first = 0;
                fprintf(o, "%s | %s | %s | %s | %s%s |\n", rw.label, rw.before, rw.after, rw.delta, rw.rel,
                        rw.regression ? " **regression**" : "");
            }
        }
        if (!nrows && d->one_sided)
            fprintf(o, "\nNothing to compare: one trace has no data here.\n");
        else if (!nrows)
            fprintf(o, "\nNo change beyond noise (%zu compared).\n", d->ngroups);
        size_t more = (ro->all ? d->ngroups : d->nchanged) - ng;
        if (more) fprintf(o, "\n%zu more (`--top`).\n", more);
    }
    regressions_text(o, r, ro, 1);
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static void json_num(FILE *o, double v) {
    if (isnan(v) || isinf(v))
        fputs("null", o);
    else
        fprintf(o, "%.10g", v);
}

static void json_side(FILE *o, const struct profile *p) {
    fputs("{\"file\":", o);
    json_str(o, p->path);
    fputs(",\"command\":", o);
    if (p->command)
        json_str(o, p->command);
    else
        fputs("null", o);
    uint64_t w = profile_loop_wall_ns(p);
    fputs(",\"loop_wall_ms\":", o);
    json_num(o, w ? w / 1e6 : NAN);
    fprintf(o,
            ",\"trace_ms\":%.6f,\"bytes\":%llu,\"processes\":%llu,\"loop_threads\":%llu,\"iterations\":%llu,"
            "\"tasks\":%llu,\"tasks_without_lane\":%llu,\"samples\":%llu,\"samples_unresolved\":%llu,"
            "\"events_dropped\":%llu,\"unknown_iids\":%llu}",
            p->st.last_ts > p->st.first_ts ? (p->st.last_ts - p->st.first_ts) / 1e6 : 0.0,
            (unsigned long long)p->st.bytes, (unsigned long long)p->processes, (unsigned long long)p->loop_threads,
            (unsigned long long)p->iterations, (unsigned long long)p->tasks, (unsigned long long)p->tasks_without_lane,
            (unsigned long long)p->samples, (unsigned long long)p->samples_unresolved,
            (unsigned long long)p->events_dropped, (unsigned long long)p->st.unknown_iids);
}

static const char *unit_name(enum metric_unit u) {
    static const char *const names[] = {"ms", "ms", "count", "per_s", "share", "ratio"};
    return names[u];
}

static void write_json(FILE *o, const struct profile *a, const struct profile *b, const struct cmp_result *r,
                       const struct report_options *ro) {
    static const char *const ids[] = {"loop", "coroutines", "awaits", "functions"};
    static const char *const statuses[] = {"both", "new", "gone"};
    fputs("{\"before\":", o);
    json_side(o, a);
    fputs(",\"after\":", o);
    json_side(o, b);
    fprintf(o, ",\"noise_pct\":%g,\"dimensions\":[", ro->cmp->noise_pct);
    for (size_t di = 0; di < r->ndims; di++) {
        const struct cmp_dim *d = &r->dims[di];
        fprintf(o, "%s{\"id\":\"%s\",\"name\":", di ? "," : "", ids[d->id]);
        json_str(o, d->name);
        fputs(",\"normalization\":", o);
        json_str(o, d->normalization);
        fputs(",\"note\":", o);
        json_str(o, d->note);
        fprintf(o, ",\"no_data\":%s,\"one_sided\":%s,\"compared\":%zu,\"changed\":%zu,\"groups\":[",
                d->no_data ? "true" : "false", d->one_sided ? "true" : "false", d->ngroups, d->nchanged);
        size_t ng = groups_shown(d, ro);
        for (size_t gi = 0; gi < ng; gi++) {
            const struct cmp_group *g = &d->groups[gi];
            fprintf(o, "%s{\"key\":", gi ? "," : "");
            json_str(o, g->key);
            fprintf(o, ",\"status\":\"%s\",\"changed\":%s,\"metrics\":[", statuses[g->status],
                    g->changed ? "true" : "false");
            for (size_t mi = 0; mi < g->nmetrics; mi++) {
                const struct cmp_metric *m = &g->metrics[mi];
                fprintf(o, "%s{\"id\":\"%s\",\"label\":", mi ? "," : "", m->def->id);
                json_str(o, m->def->label);
                fprintf(o, ",\"unit\":\"%s\",\"before\":", unit_name(m->def->unit));
                json_num(o, m->before);
                fputs(",\"after\":", o);
                json_num(o, m->after);
                fputs(",\"delta\":", o);
                json_num(o, delta_of(m));
                fputs(",\"relative\":", o);
                json_num(o, relative_of(m));
                fprintf(o, ",\"changed\":%s,\"regression\":%s}", m->changed ? "true" : "false",
                        m->regression ? "true" : "false");
            }
            fputs("]}", o);
        }
        fputs("]}", o);
    }
    fputs("],\"regression_check\":", o);
    if (ro->cmp->fail_pct < 0) {
        fputs("null", o);
    } else {
        fprintf(o, "{\"threshold_pct\":%g,\"metrics\":", ro->cmp->fail_pct);
        json_str(o, ro->cmp->regressions ? ro->cmp->regressions : compare_default_regression_metrics);
        fprintf(o, ",\"count\":%zu,\"regressions\":[", r->nregressions);
        size_t n = 0;
        for (size_t di = 0; di < r->ndims; di++)
            for (size_t gi = 0; gi < r->dims[di].ngroups; gi++) {
                const struct cmp_group *g = &r->dims[di].groups[gi];
                for (size_t mi = 0; mi < g->nmetrics; mi++) {
                    const struct cmp_metric *m = &g->metrics[mi];
                    if (!m->regression) continue;
                    fprintf(o, "%s{\"dimension\":\"%s\",\"key\":", n++ ? "," : "", ids[r->dims[di].id]);
                    json_str(o, g->key);
                    fprintf(o, ",\"id\":\"%s\",\"before\":", m->def->id);
                    json_num(o, m->before);
                    fputs(",\"after\":", o);
                    json_num(o, m->after);
                    fputs(",\"relative\":", o);
                    json_num(o, relative_of(m));
                    fputc('}', o);
                }
            }
        fputs("]}", o);
    }
    fputs("}\n", o);
}

void report_write(FILE *o, const struct profile *a, const struct profile *b, const struct cmp_result *r,
                  const struct report_options *ro) {
    switch (ro->format) {
    case FMT_TEXT: write_text(o, a, b, r, ro); break;
    case FMT_MARKDOWN: write_markdown(o, a, b, r, ro); break;
    case FMT_JSON: write_json(o, a, b, r, ro); break;
    }
}
