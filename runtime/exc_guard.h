/* The program's exception, set aside while astrace's own code runs.
 *
 * A hook does astrace's work before and after the program's own call. After
 * it, the call's exception may be in flight: any BaseException, including
 * KeyboardInterrupt, SystemExit and CancelledError. A C-API call made with it
 * set can fail for that reason alone, and the runtime's own error handling
 * (PyErr_Clear after a failed attribute read) would then throw the program's
 * exception away, and the hook would return NULL with none set.
 *
 * So every stretch of astrace work that runs Python C-API calls is
 * bracketed: rt_guard_enter() takes the program's exception (if any) out of
 * the thread state, rt_guard_leave() discards whatever astrace's own work
 * left behind, counting it in the segment (runtime_errors, reported by the
 * recorder), and puts the program's exception back exactly as it was: same
 * object, same traceback. Nothing here touches the exception being handled
 * (sys.exc_info()), which lives in the program's frames.
 */
#ifndef ASTRACE_EXC_GUARD_H
#define ASTRACE_EXC_GUARD_H

#include "pyhead.h"

#include "runtime.h"

struct rt_guard {
    PyObject *type, *value, *traceback; /* the program's exception, or NULLs */
};

static inline void rt_guard_enter(struct rt_guard *g) {
    g->type = g->value = g->traceback = NULL;
    if (PyErr_Occurred()) PyErr_Fetch(&g->type, &g->value, &g->traceback);
}

static inline void rt_guard_leave(struct rt_guard *g) {
    if (PyErr_Occurred()) {
        rt_count_runtime_error();
        PyErr_Clear();
    }
    if (g->type) PyErr_Restore(g->type, g->value, g->traceback);
}

#endif
