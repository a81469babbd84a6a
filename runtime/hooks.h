/* The wrapper type that installs a C hook in place of a Python method. */
#ifndef ASTRACE_HOOKS_H
#define ASTRACE_HOOKS_H

#include "pyhead.h"

enum hook_kind {
    HOOK_RUN_ONCE = 1, /* BaseEventLoop._run_once */
    HOOK_SELECT,       /* selectors.*Selector.select */
    HOOK_HANDLE_RUN,   /* asyncio.events.Handle._run */
    HOOK_CREATE_TASK,  /* BaseEventLoop.create_task */
    HOOK_LOOP_INIT,    /* BaseEventLoop.__init__: the new loop's ready queue is adopted */
    HOOK_THREAD_RUN,   /* threading.Thread._bootstrap_inner: the thread's ring, name and sampling */
};

/* init_loop(): the TimerHandle class (its _when is its due time) and
 * collections.deque when the loop-health measurements (lag, ready queue) are
 * on, None when they are off. */
int hooks_init_loop(PyObject *timer_handle_type, PyObject *deque);

int hooks_init(void);
PyObject *hook_new(PyObject *wrapped, int kind); /* new reference */
int hook_is(PyObject *obj);

#endif
