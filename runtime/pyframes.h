/* Reading CPython's own interpreter frames, without creating frame objects.
 *
 * The public ways to learn where code is (PyEval_GetFrame, cr_frame) make
 * CPython create a frame object for each frame asked about, which the
 * garbage collector must then track: with 100k live tasks that costs more
 * than the rest of the tracing together. So for the versions whose layout is
 * known (pyframes.c), the runtime reads the interpreter's frames directly;
 * every read is checked, and anything unexpected makes the caller fall back
 * to the public, slower way. The sampler will walk the same frames. */
#ifndef ASTRACE_PYFRAMES_H
#define ASTRACE_PYFRAMES_H

#include <stdint.h>

#include "pyhead.h"

/* hexversion: sys.hexversion; code_type: types.CodeType. Returns 1 if
 * this interpreter's frames can be read (py_offsets.h); call with the GIL,
 * from Python code. Else pyframes_unavailable() says why (NULL once they
 * can be read). */
int pyframes_init(long hexversion, PyObject *code_type);
const char *pyframes_unavailable(void);

/* Instruction offset (in bytes) the suspended coroutine or generator `obj`
 * whose code is `code` (code_bytes long) is paused at, or -1 when it cannot
 * be read this way. pyframes_line() turns an offset into a line. */
int pyframes_coro_offset(PyObject *obj, PyObject *code, Py_ssize_t code_bytes);
int pyframes_line(PyObject *code, int offset);

/* For a suspended coroutine or generator `obj`: its code object, the
 * instruction offset it is paused at, and the object it awaits (its
 * cr_await / gi_yieldfrom; NULL when it awaits nothing), all borrowed.
 * Returns 1 when read from its frame, 0 when it cannot be read this way
 * (other versions, or not suspended): ask the public way then. */
int pyframes_coro_suspended(PyObject *obj, PyObject **code, int *offset, PyObject **awaiting);

/* The code object of coroutine or generator `obj`, read from its embedded
 * frame (borrowed), or NULL when it cannot be read this way. */
PyObject *pyframes_coro_code(PyObject *obj);

/* Walks the calling thread's frames, innermost first, calling fn(code,
 * offset, arg) until it returns non-zero; returns that value, 0 at the end of
 * the stack, or -1 when the frames cannot be read this way. */
typedef int (*pyframes_visit)(PyObject *code, int offset, void *arg);
int pyframes_walk_current(pyframes_visit fn, void *arg);

/* For the sampler's signal handler (async-signal-safe, no Python API):
 * the frames of thread state `ts`, innermost first, into codes[] (code
 * object addresses) and offsets[] (instruction byte offsets, UINT32_MAX
 * unknown), at most `max`. Bit i of *entry marks frame i as the
 * outermost Python frame of one C-level call of the eval loop. Returns the depth, or -1 when
 * the frames cannot be read. */
int pyframes_sample(const void *ts, uint64_t *codes, uint32_t *offsets, int max, uint64_t *entry, int *truncated);

#endif
