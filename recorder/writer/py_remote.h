/* Names for the Python frames of stack samples, read out of the traced
 * process.
 *
 * A sample carries code-object addresses and instruction offsets. Here they
 * become "qualname", "file" and a line: the code object, its strings and
 * its line table are read from the live process with process_vm_readv, at
 * the offsets the runtime found by probing (astrace_py_layout), and cached
 * per code object. When the frame sits on a call instruction (so the sample
 * was taken inside a call into native code such as time.sleep), the called
 * expression is read from the source line, using the instruction's columns.
 *
 * Code objects die (a module's body once it is imported) and others take
 * their address: a sample's code word carries a tag of the object's
 * identity (record.h), and an entry whose tag differs is read anew.
 */
#ifndef ASTRACE_PY_REMOTE_H
#define ASTRACE_PY_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "astrace/record.h"
#include "astrace/shm_format.h"

struct py_remote;

struct py_frame_desc {
    const char *qualname; /* never NULL */
    const char *file;     /* as the code object has it; "" when unknown */
    int line;             /* 0 when unknown */
    const char *callee;   /* the called expression when the frame is inside a call, else NULL */
};

struct py_remote *py_remote_new(int pid, const struct astrace_py_layout *layout);
void py_remote_free(struct py_remote *r);
/* Describes the frame of `code_word` (a sample's: address and identity
 * tag, astrace_code_word) at byte offset `offset` (UINT32_MAX: unknown).
 * Returns 0, or -1 when the code object cannot be read or is no longer the
 * one sampled (the description then names the address). Strings live
 * until the next call for the same address. */
int py_remote_describe(struct py_remote *r, uint64_t code_word, uint32_t offset, struct py_frame_desc *out);

/* Location-table decoding (CPython 3.11+ format), exposed for the tests:
 * the line and columns of the instruction at code unit `unit`; -1 where
 * unknown. Returns 0 if found. */
int py_linetable_find(const uint8_t *table, size_t len, int firstlineno, uint32_t unit, int *line, int *end_line,
                      int *col, int *end_col);
/* The called expression of a call spanning text[col, end_col) (end_col -1:
 * to the end): "time.sleep" for "time.sleep(0.3)". Writes at most cap bytes;
 * returns 0, or -1 if the text does not look like a call. */
int py_callee_from_source(const char *text, int col, int end_col, char *out, size_t cap);

#endif
