/* Rendering of a comparison: text (for people), markdown (for PR comments),
 * JSON (for scripts). */
#ifndef ASTRACE_REPORT_H
#define ASTRACE_REPORT_H

#include <stdio.h>

#include "analysis/compare.h"

enum report_format { FMT_TEXT, FMT_MARKDOWN, FMT_JSON };

struct report_options {
    enum report_format format;
    int all;    /* show groups and metrics that did not change */
    size_t top; /* at most this many groups per dimension, 0 = no limit */
    const struct cmp_options *cmp;
};

void report_write(FILE *o, const struct profile *a, const struct profile *b, const struct cmp_result *r,
                  const struct report_options *ro);

#endif
