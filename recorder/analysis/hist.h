/* Log-bucket histogram of non-negative durations (ns) for percentiles in
 * bounded memory: exact below 32 ns, then 32 buckets per power of two, so a
 * percentile is the midpoint of a bucket 1/32 wide (within 1.6% of the true
 * sample value), clamped to the exact min and max seen. Values from 2^40 ns
 * (18 minutes) up share the last bucket. 4.7 KB per histogram, whatever the
 * number of values. */
#ifndef ASTRACE_HIST_H
#define ASTRACE_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_MAX_EXP 40
#define HIST_BUCKETS (((HIST_MAX_EXP - HIST_SUB_BITS) + 2) << HIST_SUB_BITS)

struct hist {
    uint32_t *buckets; /* allocated at the first value */
    uint64_t n;
    uint64_t min, max;
    double sum;
};

void hist_add(struct hist *h, uint64_t v);
/* The q-quantile (0 < q <= 1, nearest rank) in ns; NAN if the histogram is empty. */
double hist_quantile(const struct hist *h, double q);
void hist_free(struct hist *h);

#endif
