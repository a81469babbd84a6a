/* Where this interpreter keeps its frames: the one place in the runtime
 * that knows CPython's internal layouts.
 *
 * CPython 3.13 and later publish their own struct offsets: _PyRuntime
 * starts with a _Py_DebugOffsets ("xdebugpy" cookie, then the version, then
 * offsets of thread state, interpreter frame and code object fields), kept
 * for out-of-process debuggers and profilers. The layout is read from there.
 * Only the position of each offset inside that struct is known here, per
 * revision of the struct (3.13, 3.14, 3.15); a newer CPython is tried with
 * the newest revision. 3.11 and 3.12 publish nothing: their offsets are a
 * table here, from their headers.
 *
 * Whatever the source, a layout is used only after it has read the calling
 * thread's own frames correctly: every frame's code is a code object, the
 * innermost one is the code PyEval_GetFrame() reports, and the chain ends.
 * Otherwise there is no layout: the runtime says so in a note, and records
 * everything that does not need one (no stack samples; await lines the
 * slower public way).
 */
#ifndef ASTRACE_PY_OFFSETS_H
#define ASTRACE_PY_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "pyhead.h"

struct py_frame_layout {
    int minor;                  /* 11 for 3.11 ... */
    ptrdiff_t tstate_cframe;    /* -1: the thread state holds the frame itself */
    ptrdiff_t current_frame;    /* in the cframe, or in the thread state */
    ptrdiff_t previous, code, instr, owner;
    uintptr_t code_mask;        /* f_executable is a tagged stack reference (3.14+) */
    int shim_owner;             /* owner values >= this mark C-stack shim frames; 0: none (3.11) */
    ptrdiff_t is_entry;         /* 3.11's entry flag in the frame; -1 where shims mark entries */
    ptrdiff_t coro_frame;       /* a coroutine's embedded frame */
    Py_ssize_t code_base;       /* where a code object's instructions start */
    /* What a suspended coroutine awaits, read from its frame (3.11 only;
     * -1: not read this way). */
    ptrdiff_t coro_state, stacktop, localsplus;
    int resume_op, resume_quick_op;
};

/* Fills *out with the candidate layout for this interpreter (sys.hexversion,
 * types.CodeType, types.CoroutineType); pyframes_init() then checks it
 * against the calling thread's frames. Returns 1, or 0 with the reason in
 * `why`. Call with the GIL held. ASTRACE_PY_OFFSETS=table-only (for tests)
 * ignores the published offsets, as on an interpreter that has none. */
int py_offsets_find(long hexversion, PyObject *code_type, PyObject *coro_type, struct py_frame_layout *out,
                    char *why, size_t whylen);

#endif
