/* Fuzz target for the trace reader: any byte string must be read or refused
 * with a message, never crash, hang or leak. Built for libFuzzer with
 * -DASTRACE_FUZZ=ON (clang), and as a corpus replay driver everywhere. */
#include <stddef.h>
#include <stdint.h>

#include "reader/trace_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct trace_model m;
    char err[256];
    trace_read_buffer(data, size, &m, err, sizeof err);
    trace_model_free(&m);
    return 0;
}
