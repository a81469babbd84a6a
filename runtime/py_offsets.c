/* Implementation of py_offsets.h. */
#include "py_offsets.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- 3.11 and 3.12: from their headers (Include/cpython/pystate.h,
 * Include/internal/pycore_frame.h, Include/cpython/genobject.h), read with
 * offsetof() against each version:
 *
 *                                3.11   3.12
 *   PyThreadState -> frame       cframe(56)->current_frame(8)
 *                                       cframe(56)->current_frame(0)
 *   frame.previous                 48      8
 *   frame code object              32      0   (f_code)
 *   frame instruction pointer      56     56   (prev_instr)
 *   frame owner (char)             69     70   (3 = C-stack shim, 3.12)
 *   frame.is_entry (bool)          68      -
 *   frame.stacktop (int)           64      -   (read for 3.11 only)
 *   frame.localsplus               72     72
 *   coroutine's frame state (i8)   75      -   (3.11: -1 is suspended)
 *   RESUME / RESUME_QUICK opcode  151/150  -
 */
static const struct py_frame_layout tables[] = {
    {.minor = 11, .tstate_cframe = 56, .current_frame = 8, .previous = 48, .code = 32, .instr = 56, .owner = 69,
     .code_mask = ~(uintptr_t)0, .shim_owner = 0, .is_entry = 68, .coro_state = 75, .stacktop = 64,
     .localsplus = 72, .resume_op = 151, .resume_quick_op = 150},
    {.minor = 12, .tstate_cframe = 56, .current_frame = 0, .previous = 8, .code = 0, .instr = 56, .owner = 70,
     .code_mask = ~(uintptr_t)0, .shim_owner = 3, .is_entry = -1, .coro_state = -1, .stacktop = -1,
     .localsplus = 72, .resume_op = -1, .resume_quick_op = -1},
};

/* ---- 3.13+: _Py_DebugOffsets, at the start of _PyRuntime ----------------
 *
 * The struct is all uint64_t after an 8-byte cookie; these are the indexes
 * (in 8-byte words) of the fields used, per revision, counted from each
 * version's Include/internal/pycore_debug_offsets.h (pycore_runtime.h in
 * 3.13). Word 1 is the version, word 2 says free-threaded. */
struct debug_revision {
    int minor;
    int tstate_size, tstate_current_frame;
    int frame_size, frame_previous, frame_executable, frame_instr_ptr, frame_localsplus, frame_owner;
    int code_size, code_adaptive;
};

static const struct debug_revision revisions[] = {
    {13, 19, 23, 28, 29, 30, 31, 32, 33, 34, 43},
    {14, 22, 26, 31, 32, 33, 34, 35, 36, 39, 48},
    {15, 22, 26, 39, 40, 41, 42, 43, 44, 47, 56},
};

static Py_ssize_t basicsize(PyObject *type) {
    PyObject *bs = PyObject_GetAttrString(type, "__basicsize__");
    Py_ssize_t n = bs ? PyLong_AsSsize_t(bs) : -1;
    Py_XDECREF(bs);
    if (n < 0) PyErr_Clear();
    return n;
}

static int from_debug_offsets(int minor, PyObject *coro_type, struct py_frame_layout *out, char *why,
                              size_t whylen) {
    const char *mode = getenv("ASTRACE_PY_OFFSETS");
    if (mode && !strcmp(mode, "table-only")) {
        snprintf(why, whylen, "published offsets ignored (ASTRACE_PY_OFFSETS=table-only)");
        return 0;
    }
    const uint64_t *d = dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (!d || memcmp(d, "xdebugpy", 8) != 0) {
        snprintf(why, whylen, "this Python publishes no struct offsets (_PyRuntime.debug_offsets)");
        return 0;
    }
    if ((int)((d[1] >> 16) & 0xff) != minor || (d[1] >> 24) != 3) {
        snprintf(why, whylen, "the published offsets are for another version (0x%llx)", (unsigned long long)d[1]);
        return 0;
    }
    if (d[2]) {
        snprintf(why, whylen, "free-threaded builds are not supported");
        return 0;
    }
    /* This version's revision, or the newest one for a newer CPython (the
     * check of the frames below decides whether it still fits). */
    const struct debug_revision *r = NULL;
    for (size_t i = 0; i < sizeof revisions / sizeof *revisions; i++)
        if (revisions[i].minor <= minor) r = &revisions[i];
    if (!r) return 0;
    uint64_t frame_size = d[r->frame_size], tstate_size = d[r->tstate_size], code_size = d[r->code_size];
    uint64_t fields[] = {d[r->frame_previous], d[r->frame_executable], d[r->frame_instr_ptr], d[r->frame_owner],
                         d[r->frame_localsplus]};
    int sane = frame_size > 0 && frame_size < 1024 && tstate_size > 0 && tstate_size < 65536 &&
               d[r->tstate_current_frame] + 8 <= tstate_size && code_size > 0 && code_size < 4096 &&
               d[r->code_adaptive] < code_size;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) sane &= fields[i] < frame_size;
    Py_ssize_t coro_base = basicsize(coro_type);
    if (!sane || coro_base <= (Py_ssize_t)d[r->frame_localsplus]) {
        snprintf(why, whylen, "the published offsets do not look like a frame layout");
        return 0;
    }
    memset(out, 0, sizeof *out);
    out->minor = minor;
    out->tstate_cframe = -1;
    out->current_frame = (ptrdiff_t)d[r->tstate_current_frame];
    out->previous = (ptrdiff_t)d[r->frame_previous];
    out->code = (ptrdiff_t)d[r->frame_executable];
    out->instr = (ptrdiff_t)d[r->frame_instr_ptr];
    out->owner = (ptrdiff_t)d[r->frame_owner];
    /* 3.14+: f_executable is a stack reference whose low bits are tags. */
    out->code_mask = minor >= 14 ? ~(uintptr_t)3 : ~(uintptr_t)0;
    /* C-stack shims: owner 3 (3.12, 3.13), 3 and 4 (3.14+: interpreter, C stack). */
    out->shim_owner = 3;
    out->is_entry = -1;
    /* A coroutine's frame is its last member: the type's basicsize is
     * where the frame's localsplus starts (genobject.c). */
    out->coro_frame = coro_base - (ptrdiff_t)d[r->frame_localsplus];
    out->code_base = (Py_ssize_t)d[r->code_adaptive];
    out->coro_state = out->stacktop = out->localsplus = -1;
    out->resume_op = out->resume_quick_op = -1;
    return 1;
}

int py_offsets_find(long hexversion, PyObject *code_type, PyObject *coro_type, struct py_frame_layout *out,
                    char *why, size_t whylen) {
    int major = (int)((hexversion >> 24) & 0xff), minor = (int)((hexversion >> 16) & 0xff);
    if (major != 3 || minor < 11) {
        snprintf(why, whylen, "Python %d.%d is not supported", major, minor);
        return 0;
    }
    if (minor >= 13) return from_debug_offsets(minor, coro_type, out, why, whylen);
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        if (tables[i].minor != minor) continue;
        *out = tables[i];
        out->code_base = basicsize(code_type);
        out->coro_frame = basicsize(coro_type) - out->localsplus;
        if (out->code_base <= 0 || out->coro_frame <= 0) break;
        return 1;
    }
    snprintf(why, whylen, "no frame layout is known for Python %d.%d", major, minor);
    return 0;
}
