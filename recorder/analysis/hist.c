/* Implementation of hist.h. */
#include "analysis/hist.h"

#include <math.h>
#include <stdlib.h>

#include "common/util.h"

static unsigned bucket_of(uint64_t v) {
    if (v < (1u << HIST_SUB_BITS)) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    if (e > HIST_MAX_EXP) return HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1);
    return ((e - HIST_SUB_BITS + 1) << HIST_SUB_BITS) + sub;
}

/* Midpoint of a bucket's range of values. */
static double bucket_mid(unsigned b) {
    if (b < (1u << HIST_SUB_BITS)) return b;
    unsigned e = (b >> HIST_SUB_BITS) + HIST_SUB_BITS - 1, sub = b & ((1u << HIST_SUB_BITS) - 1);
    double width = ldexp(1.0, (int)(e - HIST_SUB_BITS));
    return ldexp(1.0, (int)e) + sub * width + width / 2;
}

void hist_add(struct hist *h, uint64_t v) {
    if (!h->buckets) h->buckets = xcalloc(HIST_BUCKETS, sizeof *h->buckets);
    unsigned b = bucket_of(v);
    if (h->buckets[b] != UINT32_MAX) h->buckets[b]++;
    if (!h->n || v < h->min) h->min = v;
    if (!h->n || v > h->max) h->max = v;
    h->n++;
    h->sum += (double)v;
}

double hist_quantile(const struct hist *h, double q) {
    if (!h->n) return NAN;
    uint64_t total = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) total += h->buckets[b];
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    double v = (double)h->max;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            v = bucket_mid(b);
            break;
        }
    }
    if (v < (double)h->min) v = (double)h->min;
    if (v > (double)h->max) v = (double)h->max;
    return v;
}

void hist_free(struct hist *h) {
    free(h->buckets);
    h->buckets = NULL;
    h->n = 0;
}
