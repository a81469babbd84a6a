/* Implementation of pyframes.h.
 *
 * Layout facts per CPython minor version, from its headers
 * (Include/cpython/pystate.h, Include/internal/pycore_frame.h,
 * Include/cpython/genobject.h), read with offsetof() against each version:
 *
 *                                3.11   3.12   3.13
 *   PyThreadState -> frame       cframe(56)->current_frame(8)
 *                                       cframe(56)->current_frame(0)
 *                                              current_frame(72)
 *   frame.previous                 48      8      8
 *   frame code object              32      0      0   (f_code / f_executable)
 *   frame instruction pointer      56     56     56   (prev_instr / instr_ptr)
 *   frame owner (char)             69     70     70   (3 = C-stack shim, 3.12+)
 *   coroutine's embedded frame     80     72     72
 *   frame.is_entry (bool)          68      -      -   (3.12+: a C-stack shim
 *                                                      frame precedes an entry)
 *   frame.stacktop (int)           64                  (read for 3.11 only)
 *   frame.localsplus               72                  (read for 3.11 only)
 *   coroutine's frame state (i8)   75                  (read for 3.11 only;
 *                                                      -1: suspended)
 *   RESUME / RESUME_QUICK opcode  151/150              (read for 3.11 only)
 *   instructions in a code object  types.CodeType.__basicsize__
 *
 * Checks on every read: a frame's code must be a code object, an instruction
 * offset must fall inside its code, a coroutine's frame must hold the
 * coroutine's own code, and a walk stops after MAX_DEPTH frames.
 */
#include "pyframes.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Exported by every CPython 3.x, outside the limited API's headers. */
PyAPI_FUNC(int) PyCode_Addr2Line(PyCodeObject *, int);

#define MAX_DEPTH 256
#define OWNER_CSTACK 3

struct layout {
    int minor;
    ptrdiff_t tstate_cframe; /* -1: the thread state holds the frame itself */
    ptrdiff_t current_frame; /* in the cframe, or in the thread state */
    ptrdiff_t previous, code, instr, owner;
    ptrdiff_t coro_frame;
    ptrdiff_t is_entry; /* -1: entries are marked by shim frames */
    /* What a suspended coroutine awaits (-1: not read this way here). */
    ptrdiff_t coro_state, stacktop, localsplus;
    int resume_op, resume_quick_op;
};

static const struct layout layouts[] = {
    {11, 56, 8, 48, 32, 56, 69, 80, 68, 75, 64, 72, 151, 150},
    {12, 56, 0, 8, 0, 56, 70, 72, -1, -1, -1, -1, -1, -1},
    {13, -1, 72, 8, 0, 56, 70, 72, -1, -1, -1, -1, -1, -1},
};

static const struct layout *layout;
static Py_ssize_t code_base;
static PyTypeObject *code_type_obj;

int pyframes_init(long hexversion, PyObject *code_type) {
    int major = (int)((hexversion >> 24) & 0xff), minor = (int)((hexversion >> 16) & 0xff);
    if (layout && code_type_obj == (PyTypeObject *)code_type) return 1; /* tasks and sampler both ask */
    layout = NULL;
    code_type_obj = NULL;
    PyObject *bs = PyObject_GetAttrString(code_type, "__basicsize__");
    code_base = bs ? PyLong_AsSsize_t(bs) : -1;
    Py_XDECREF(bs);
    if (PyErr_Occurred()) PyErr_Clear();
    if (major != 3 || code_base <= 0) return 0;
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (layouts[i].minor == minor) layout = &layouts[i];
    if (layout) {
        Py_INCREF(code_type);
        code_type_obj = (PyTypeObject *)code_type;
    }
    return layout != NULL;
}

static void *read_ptr(const void *base, ptrdiff_t off) {
    void *v;
    memcpy(&v, (const char *)base + off, sizeof v);
    return v;
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
    ptrdiff_t offset = instr - ((const char *)code + code_base);
    if (offset < 0 || offset > INT32_MAX || (code_bytes > 0 && offset >= code_bytes)) return -1;
    return (int)offset;
}

int pyframes_line(PyObject *code, int offset) {
    return offset < 0 ? 0 : PyCode_Addr2Line((PyCodeObject *)code, offset);
}

int pyframes_coro_offset(PyObject *obj, PyObject *code, Py_ssize_t code_bytes) {
    if (!layout || code_bytes <= 0) return -1;
    const char *frame = (const char *)obj + layout->coro_frame;
    if (read_ptr(frame, layout->code) != code) return -1;
    return offset_of(code, read_ptr(frame, layout->instr), code_bytes);
}

/* A coroutine paused inside an await (or a generator inside a yield from)
 * sits just before a RESUME whose argument is 2 or more, with the object it
 * awaits on top of its value stack: what its cr_await getter returns. */
int pyframes_coro_suspended(PyObject *obj, PyObject **code, int *offset, PyObject **awaiting) {
    if (!layout || layout->coro_state < 0) return 0;
    if (*(const int8_t *)((const char *)obj + layout->coro_state) != -1) return 0; /* not suspended */
    const char *frame = (const char *)obj + layout->coro_frame;
    PyObject *c = read_ptr(frame, layout->code);
    if (!c || Py_TYPE(c) != code_type_obj) return 0;
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
    PyObject *code = read_ptr((const char *)obj + layout->coro_frame, layout->code);
    return code && Py_TYPE(code) == code_type_obj ? code : NULL;
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
        if (layout->minor >= 12 && *(const char *)(frame + layout->owner) == OWNER_CSTACK) {
            if (n > 0 && n <= 64) *entry |= 1ull << (n - 1);
        } else {
            if (n == max) {
                *truncated = 1;
                return n;
            }
            PyObject *code = read_ptr(frame, layout->code);
            if (!code || Py_TYPE(code) != code_type_obj) return -1;
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
        if (*(const char *)(frame + layout->owner) != OWNER_CSTACK || layout->minor < 12) {
            PyObject *code = read_ptr(frame, layout->code);
            if (!code || Py_TYPE(code) != code_type_obj) return -1;
            int r = fn(code, offset_of(code, read_ptr(frame, layout->instr), 0), arg);
            if (r) return r;
        }
        frame = read_ptr(frame, layout->previous);
    }
    return 0;
}
