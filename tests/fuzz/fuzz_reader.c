/* Fuzz target for the trace reader: any byte string must be read or refused
 * with a message, never crash, hang or leak. Built for libFuzzer with
 * -DASTRACE_FUZZ=ON (clang), and as a corpus replay driver everywhere.
 * Each input goes through the model reader, then through the streaming
 * reader into `astrace diff`'s profile, compared with itself and rendered in
 * every format (to /dev/null). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "analysis/report.h"
#include "reader/trace_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct trace_model m;
    char err[256];
    trace_read_buffer(data, size, &m, err, sizeof err);
    trace_model_free(&m);

    static FILE *null_out;
    if (!null_out) null_out = fopen("/dev/null", "w");
    struct profile p;
    if (profile_read_buffer(data, size, &p, err, sizeof err) == 0 && null_out) {
        struct cmp_options co = {.noise_pct = 10, .fail_pct = 5, .regressions = NULL, .dims = (1u << DIM_COUNT) - 1};
        struct cmp_result r;
        compare_profiles(&p, &p, &co, &r);
        for (int f = FMT_TEXT; f <= FMT_JSON; f++) {
            struct report_options ro = {.format = (enum report_format)f, .all = 1, .top = 0, .cmp = &co};
            report_write(null_out, &p, &p, &r, &ro);
        }
        compare_free(&r);
    }
    profile_free(&p);
    return 0;
}
