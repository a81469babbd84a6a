/* Implementation of pyframes.h.
 *
 * The layout comes from py_offsets.h (the interpreter's published offsets,
 * or the 3.11/3.12 table) and is used only once it has read the calling
 * thread's own frames right (check_layout). Checks on every read: a frame's
 * code must be a code object, an instruction offset must fall inside its
 * code, a coroutine's frame must hold the coroutine's own code, and a walk
 * stops after MAX_DEPTH frames.
 */
#include "pyframes.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "py_offsets.h"

/* Exported by every CPython 3.x, outside the limited API's headers. */
PyAPI_FUNC(int) PyCode_Addr2Line(PyCodeObject *, int);

#define MAX_DEPTH 256

static struct py_frame_layout layout_store;
static const struct py_frame_layout *layout;
static PyTypeObject *code_type_obj;
static char unavailable[200] = "not initialized";

static void *read_ptr(const void *base, ptrdiff_t off) {
    void *v;
    memcpy(&v, (const char *)base + off, sizeof v);
    return v;
}

/* A frame's code object (its f_executable, untagged), or NULL if the frame
 * holds something else. */
static PyObject *frame_code(const char *frame) {
    PyObject *code = (PyObject *)((uintptr_t)read_ptr(frame, layout->code) & layout->code_mask);
    return code && Py_TYPE(code) == code_type_obj ? code : NULL;
}

/* A C-stack shim frame (3.12+): no Python code, it marks where one C-level
 * call of the eval loop entered. */
static int is_shim(const char *frame) {
    return layout->shim_owner && *(const char *)(frame + layout->owner) >= layout->shim_owner;
}

/* Length in bytes of a code object's instructions (its ob_size counts
 * 2-byte code units). */
static Py_ssize_t code_bytes_of(PyObject *code) {
    Py_ssize_t units;
    memcpy(&units, (const char *)code + sizeof(PyObject), sizeof units);
    return units * 2;
}

/* Byte offset of the instruction `instr` in `code`, or -1 if it is not
 * inside it (code_bytes <= 0: no upper bound known). */
static int offset_of(PyObject *code, const char *instr, Py_ssize_t code_bytes) {
    ptrdiff_t offset = instr - ((const char *)code + layout->code_base);
    if (offset < 0 || offset > INT32_MAX || (code_bytes > 0 && offset >= code_bytes)) return -1;
    return (int)offset;
}

int pyframes_line(PyObject *code, int offset) {
    return offset < 0 ? 0 : PyCode_Addr2Line((PyCodeObject *)code, offset);
}

int pyframes_coro_offset(PyObject *obj, PyObject *code, Py_ssize_t code_bytes) {
    if (!layout || code_bytes <= 0) return -1;
    const char *frame = (const char *)obj + layout->coro_frame;
    if (frame_code(frame) != code) return -1;
    return offset_of(code, read_ptr(frame, layout->instr), code_bytes);
}

/* A coroutine paused inside an await (or a generator inside a yield from)
 * sits just before a RESUME whose argument is 2 or more, with the object it
 * awaits on top of its value stack: what its cr_await getter returns. */
int pyframes_coro_suspended(PyObject *obj, PyObject **code, int *offset, PyObject **awaiting) {
    if (!layout || layout->coro_state < 0) return 0;
    if (*(const int8_t *)((const char *)obj + layout->coro_state) != -1) return 0; /* not suspended */
    const char *frame = (const char *)obj + layout->coro_frame;
    PyObject *c = frame_code(frame);
    if (!c) return 0;
    Py_ssize_t code_bytes = code_bytes_of(c);
    const char *instr = read_ptr(frame, layout->instr);
    int at = offset_of(c, instr, code_bytes);
    if (at < 0 || (Py_ssize_t)at + 4 > code_bytes) return 0;
    uint8_t next_op = (uint8_t)instr[2], next_arg = (uint8_t)instr[3];
    *awaiting = NULL;
    if ((next_op == layout->resume_op || next_op == layout->resume_quick_op) && next_arg >= 2) {
        int top;
        memcpy(&top, frame + layout->stacktop, sizeof top);
        if (top < 1 || top > (1 << 20)) return 0;
        *awaiting = read_ptr(frame, layout->localsplus + (ptrdiff_t)(top - 1) * (ptrdiff_t)sizeof(PyObject *));
        if (!*awaiting) return 0;
    }
    *code = c;
    *offset = at;
    return 1;
}

PyObject *pyframes_coro_code(PyObject *obj) {
    if (!layout) return NULL;
    return frame_code((const char *)obj + layout->coro_frame);
}

/* The innermost interpreter frame of thread state `ts` (NULL: none), read
 * the way this version keeps it; -1 if the layout is unknown or unreadable. */
static int top_frame(const void *ts, const char **frame) {
    if (!layout) return -1;
    const void *holder = layout->tstate_cframe >= 0 ? read_ptr(ts, layout->tstate_cframe) : ts;
    if (!holder) return -1;
    *frame = read_ptr(holder, layout->current_frame);
    return 0;
}

/* Signal-safe: plain loads only. The frames of a thread interrupted by a
 * signal are consistent except in the few instructions that push or pop
 * one; the checks below catch most of that, and the sampler runs this under
 * a fault guard for the rest. */
int pyframes_sample(const void *ts, uint64_t *codes, uint32_t *offsets, int max, uint64_t *entry, int *truncated) {
    *entry = 0;
    *truncated = 0;
    const char *frame;
    if (!ts || top_frame(ts, &frame) != 0) return -1;
    int n = 0;
    for (int depth = 0; frame && depth < MAX_DEPTH; depth++) {
        if (is_shim(frame)) {
            if (n > 0 && n <= 64) *entry |= 1ull << (n - 1);
        } else {
            if (n == max) {
                *truncated = 1;
                return n;
            }
            PyObject *code = frame_code(frame);
            if (!code) return -1;
            codes[n] = (uint64_t)(uintptr_t)code;
            offsets[n] = (uint32_t)offset_of(code, read_ptr(frame, layout->instr), code_bytes_of(code));
            if (layout->is_entry >= 0 && *(const char *)(frame + layout->is_entry) && n < 64) *entry |= 1ull << n;
            n++;
        }
        frame = read_ptr(frame, layout->previous);
    }
    return n;
}

int pyframes_walk_current(pyframes_visit fn, void *arg) {
    const char *frame;
    if (top_frame(PyThreadState_Get(), &frame) != 0) return -1;
    for (int depth = 0; frame && depth < MAX_DEPTH; depth++) {
        if (!is_shim(frame)) {
            PyObject *code = frame_code(frame);
            if (!code) return -1;
            int r = fn(code, offset_of(code, read_ptr(frame, layout->instr), 0), arg);
            if (r) return r;
        }
        frame = read_ptr(frame, layout->previous);
    }
    return 0;
}

/* ---- setup -------------------------------------------------------------------- */

struct frames_seen {
    int count, bad_offset;
    PyObject *innermost;
};

static int see_frame(PyObject *code, int offset, void *arg) {
    struct frames_seen *seen = arg;
    if (seen->count++ == 0) seen->innermost = code;
    if (offset < 0 || offset >= code_bytes_of(code)) seen->bad_offset = 1;
    return 0;
}

/* A candidate layout is used only if it reads the calling thread's frames
 * the way the interpreter itself reports them: the innermost code object is
 * PyEval_GetFrame()'s, every frame (of the innermost MAX_DEPTH) holds a
 * code object with its instruction inside it, and the chain ends. */
static int check_layout(void) {
    struct frames_seen seen = {0, 0, NULL};
    const char *frame;
    if (top_frame(PyThreadState_Get(), &frame) != 0) return 0;
    int depth = 0; /* the chain must end (a misread `previous` would cycle or wander) */
    while (frame && depth <= 100000) {
        frame = read_ptr(frame, layout->previous);
        depth++;
    }
    if (depth > 100000) return 0;
    if (pyframes_walk_current(see_frame, &seen) != 0 || !seen.count || seen.bad_offset) return 0;
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed */
    PyObject *code = f ? (PyObject *)PyFrame_GetCode(f) : NULL;
    int same = code && code == seen.innermost;
    Py_XDECREF(code);
    return same;
}

int pyframes_init(long hexversion, PyObject *code_type) {
    if (layout && code_type_obj == (PyTypeObject *)code_type) return 1; /* tasks and sampler both ask */
    layout = NULL;
    PyObject *types = PyImport_ImportModule("types");
    PyObject *coro_type = types ? PyObject_GetAttrString(types, "CoroutineType") : NULL;
    Py_XDECREF(types);
    if (!coro_type) {
        PyErr_Clear();
        snprintf(unavailable, sizeof unavailable, "types.CoroutineType not found");
        return 0;
    }
    int found = py_offsets_find(hexversion, code_type, coro_type, &layout_store, unavailable, sizeof unavailable);
    Py_DECREF(coro_type);
    if (!found) return 0;
    Py_INCREF(code_type);
    Py_XDECREF((PyObject *)code_type_obj);
    code_type_obj = (PyTypeObject *)code_type;
    layout = &layout_store;
    if (!check_layout()) {
        layout = NULL;
        snprintf(unavailable, sizeof unavailable,
                 "this Python's frames do not read as its %s offsets say (Python 3.%d)",
                 layout_store.minor >= 13 ? "published" : "known", layout_store.minor);
        return 0;
    }
    return 1;
}

const char *pyframes_unavailable(void) {
    return layout ? NULL : unavailable;
}
