/* Event-loop hooks: wrappers around BaseEventLoop._run_once, the selectors'
 * select() and Handle._run that write loop-iteration, poll and callback
 * records, then call the original with the same arguments and return what it
 * returned (or let its exception through unchanged). The same mechanism
 * names each threading.Thread in the trace and samples it while it runs.
 *
 * A wrapper is an instance of MethodHook, a small callable type that behaves
 * like a function stored on a class: it carries the method-descriptor flag,
 * so `obj.method()` calls it as method(obj) without building a bound method,
 * and its __get__ binds like a function's for every other use. It is called
 * through vectorcall, and calls the original the same way, so a hooked call
 * allocates no argument tuple: tuples are garbage-collected objects, and one
 * per call would make the collector run noticeably more often. The type is
 * immutable, which CPython requires of a descriptor before it specializes a
 * method load (`handle._run()`): otherwise every hooked call would look the
 * method up the generic way (30 -> 15 ns per call on pyenv's 3.11.7).
 */
#include "pyhead.h"

#include <math.h>
#include <structmember.h>

#include "emit.h"
#include "exc_guard.h"
#include "fast_attr.h"
#include "hooks.h"
#include "ready_queue.h"

#ifndef Py_TPFLAGS_METHOD_DESCRIPTOR
#define Py_TPFLAGS_METHOD_DESCRIPTOR (1UL << 17)
#endif

typedef struct {
    PyObject_HEAD PyObject *wrapped;
    int kind;
    vectorcallfunc vectorcall;
} MethodHook;

/* One call's arguments, as vectorcall passes them. */
struct call {
    PyObject *const *args;
    size_t nargsf;
    Py_ssize_t nargs; /* positional */
    PyObject *kwnames;
};

static PyObject *arg(const struct call *c, Py_ssize_t i) {
    return i < c->nargs ? c->args[i] : NULL;
}

static PyObject *call_original(MethodHook *self, const struct call *c) {
    return PyObject_Vectorcall(self->wrapped, c->args, c->nargsf, c->kwnames);
}

static PyObject *method_type; /* types.MethodType */
static PyTypeObject *timer_handle_type;
static int counters_on;

int hooks_init_loop(PyObject *timer_type, PyObject *deque) {
    Py_XDECREF((PyObject *)timer_handle_type);
    Py_INCREF(timer_type);
    timer_handle_type = (PyTypeObject *)timer_type;
    counters_on = deque != Py_None;
    if (ready_queue_init(deque) != 0) return -1;
    return 0;
}

/* len(loop._ready): callbacks waiting at the start of this iteration. */
static int64_t ready_length(const struct call *c) {
    if (!counters_on || !arg(c, 0)) return -1;
    PyObject *ready = ready_queue_of(arg(c, 0));
    Py_ssize_t n = ready ? PyObject_Size(ready) : -1;
    Py_XDECREF(ready);
    if (n < 0) PyErr_Clear();
    return n;
}

static PyObject *call_run_once(MethodHook *self, const struct call *c) {
    if (rt_ready()) {
        struct rt_guard g;
        rt_guard_enter(&g);
        rt_write(ASTRACE_REC_LOOP_BEGIN, 0, rt_now(), ready_length(c));
        rt_guard_leave(&g);
    }
    rt_tls.loop_depth++;
    PyObject *res = call_original(self, c);
    rt_tls.loop_depth--;
    rt_emit(ASTRACE_REC_LOOP_END, 0, rt_now(), res == NULL);
    return res;
}

/* select(self, timeout=None): the timeout in ns, or -1 for "block". */
static int64_t timeout_ns(const struct call *c) {
    PyObject *t = arg(c, 1);
    Py_ssize_t nkw = c->kwnames ? PyTuple_Size(c->kwnames) : 0;
    for (Py_ssize_t i = 0; !t && i < nkw; i++)
        if (PyUnicode_CompareWithASCIIString(PyTuple_GetItem(c->kwnames, i), "timeout") == 0) t = c->args[c->nargs + i];
    if (!t || t == Py_None) return -1;
    double secs = PyFloat_AsDouble(t);
    if (secs == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (!(secs > 0)) return 0;
    if (secs > 9e9) return -1;
    return (int64_t)llround(secs * 1e9);
}

static PyObject *call_select(MethodHook *self, const struct call *c) {
    /* Only the selector call made by a loop iteration is the loop's poll. */
    if (rt_tls.loop_depth <= 0) return call_original(self, c);
    struct rt_guard g;
    rt_guard_enter(&g);
    rt_emit(ASTRACE_REC_POLL_BEGIN, 0, rt_now(), timeout_ns(c));
    rt_guard_leave(&g);
    PyObject *res = call_original(self, c);
    int64_t n = -1;
    if (res && PyList_Check(res)) n = PyList_Size(res);
    rt_emit(ASTRACE_REC_POLL_END, 0, rt_now(), n);
    return res;
}

static struct rt_attr a_callback = RT_ATTR("_callback"), a_when = RT_ATTR("_when");

/* How late the loop runs this handle: since it was queued (call_soon and
 * friends, ready_queue.h), or, for a timer, since it fell due. -1 when
 * unknown. */
static int64_t handle_lag(PyObject *handle, uint64_t now, int *is_timer) {
    *is_timer = 0;
    if (!counters_on) return -1;
    uint64_t made = ready_queue_take(handle);
    if (timer_handle_type && PyObject_TypeCheck(handle, timer_handle_type)) {
        PyObject *when = rt_attr_get(&a_when, handle);
        double due = when ? PyFloat_AsDouble(when) : -1.0;
        Py_XDECREF(when);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        int64_t lag = (int64_t)rt_clock_ns(CLOCK_MONOTONIC) - (int64_t)(due * 1e9);
        *is_timer = 1;
        return lag > 0 ? lag : 0; /* asyncio runs timers up to a clock tick early */
    }
    return made && now >= made ? rt_clock_to_ns((int64_t)(now - made), now) : -1;
}

static void write_callback_begin(uint32_t name, uint64_t ts, PyObject *task, int64_t lag) {
    uint64_t next;
    struct astrace_rec_callback *rec = astrace_ring_reserve(&rt_tls.ring, sizeof *rec, &next);
    if (!rec) return;
    rec->h.type = ASTRACE_REC_CALLBACK_BEGIN;
    rec->h.size = sizeof *rec;
    rec->h.str0 = name;
    rec->h.ts = ts;
    rec->task = (int64_t)(uintptr_t)task;
    rec->lag_ns = lag;
    astrace_ring_commit(&rt_tls.ring, next);
}

/* One callback. A task step also marks the task as the thread's current
 * one (the parent of tasks it creates) and reports how the step ended. */
static PyObject *call_handle_run(MethodHook *self, const struct call *c) {
    PyObject *task = NULL;
    void *previous_task = rt_tls.current_task;
    struct rt_guard g;
    /* Ready first: in a fork child that makes the segment the name goes in. */
    if (rt_ready()) {
        rt_guard_enter(&g);
        uint32_t name = 0;
        int kind = RT_CB_PLAIN;
        PyObject *cb = arg(c, 0) ? rt_attr_get(&a_callback, arg(c, 0)) : NULL;
        if (cb) {
            name = rt_callback_name_id(cb, &kind);
            if (kind == RT_CB_TASK_STEP) task = rt_task_step_begin(cb);
            Py_DECREF(cb);
        }
        uint64_t now = rt_now();
        int is_timer = 0;
        int64_t lag = arg(c, 0) ? handle_lag(arg(c, 0), now, &is_timer) : -1;
        write_callback_begin(name, now, task, lag);
        if (task) rt_tls.current_task = task;
        /* Handles a late timer schedules (the wakeup of a task whose sleep
         * ended) were ready when the timer fell due: they inherit its lag. */
        rt_tls.current_lag = is_timer && lag > 0 ? lag : 0;
        rt_guard_leave(&g);
    }
    PyObject *res = call_original(self, c);
    rt_tls.current_lag = 0;
    if (task) { /* one record ends the step and its callback; restores current_task */
        rt_guard_enter(&g); /* the step's exception, if it raised, is the program's */
        rt_task_step_end(task, previous_task, res ? 1 : 2);
        rt_guard_leave(&g);
    } else {
        rt_emit(ASTRACE_REC_CALLBACK_END, 0, rt_now(), res == NULL);
    }
    return res;
}

/* BaseEventLoop.create_task: report the task it returns. */
static PyObject *call_create_task(MethodHook *self, const struct call *c) {
    uint64_t start = rt_now(); /* an eager task's first step starts in here */
    PyObject *res = call_original(self, c);
    if (res) {
        struct rt_guard g;
        rt_guard_enter(&g);
        rt_task_created(res, arg(c, 1), start);
        rt_guard_leave(&g);
    }
    return res;
}

/* BaseEventLoop.__init__: loop lag needs the new loop's ready queue to note
 * when each callback became ready (ready_queue.h). Done as the loop is made,
 * before another thread can hold it: a thread that had already read
 * loop._ready would append to the old deque. */
static PyObject *call_loop_init(MethodHook *self, const struct call *c) {
    PyObject *res = call_original(self, c);
    if (res && arg(c, 0)) {
        struct rt_guard g;
        rt_guard_enter(&g);
        ready_queue_adopt(arg(c, 0));
        rt_guard_leave(&g);
    }
    return res;
}

/* threading.Thread._bootstrap_inner(self): the thread's whole life. It
 * gets a ring named after the Thread, and is sampled until its run() is
 * done (its thread state is still alive then). A C hook adds no frame to
 * the thread's Python stack. */
static struct rt_attr a_name = RT_ATTR("name");

static PyObject *call_thread_run(MethodHook *self, const struct call *c) {
    if (arg(c, 0)) {
        struct rt_guard g;
        rt_guard_enter(&g);
        PyObject *name = rt_attr_get(&a_name, arg(c, 0));
        const char *text = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, NULL) : NULL;
        rt_thread_begin(text ? text : "");
        Py_XDECREF(name);
        rt_guard_leave(&g);
    }
    PyObject *res = call_original(self, c);
    rt_thread_end();
    return res;
}

static PyObject *hook_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    MethodHook *self = (MethodHook *)op;
    struct call c = {args, nargsf, (Py_ssize_t)(nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET), kwnames};
    switch (self->kind) {
    case HOOK_RUN_ONCE: return call_run_once(self, &c);
    case HOOK_SELECT: return call_select(self, &c);
    case HOOK_HANDLE_RUN: return call_handle_run(self, &c);
    case HOOK_CREATE_TASK: return call_create_task(self, &c);
    case HOOK_LOOP_INIT: return call_loop_init(self, &c);
    case HOOK_THREAD_RUN: return call_thread_run(self, &c);
    default: return call_original(self, &c);
    }
}

static PyObject *hook_get(PyObject *self, PyObject *obj, PyObject *type) {
    (void)type;
    if (!obj || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyObject_CallFunctionObjArgs(method_type, self, obj, NULL);
}

static PyObject *hook_getattr(PyObject *op, PyObject *name) {
    /* __name__, __qualname__, __doc__ ... come from the wrapped function. */
    PyObject *res = PyObject_GenericGetAttr(op, name);
    if (res || !PyErr_ExceptionMatches(PyExc_AttributeError)) return res;
    PyErr_Clear();
    return PyObject_GetAttr(((MethodHook *)op)->wrapped, name);
}

static void hook_dealloc(PyObject *op) {
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(((MethodHook *)op)->wrapped);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(op);
    Py_DECREF(tp);
}

static PyMemberDef hook_members[] = {
    {"__wrapped__", T_OBJECT_EX, offsetof(MethodHook, wrapped), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MethodHook, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot hook_slots[] = {
    {Py_tp_call, PyVectorcall_Call}, {Py_tp_descr_get, hook_get},   {Py_tp_getattro, hook_getattr},
    {Py_tp_dealloc, hook_dealloc},   {Py_tp_members, hook_members}, {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "_astrace.MethodHook",
    .basicsize = sizeof(MethodHook),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = hook_slots,
};

static PyObject *hook_type;

int hooks_init(void) {
    if (hook_type) return 0;
    hook_type = PyType_FromSpec(&hook_spec);
    if (!hook_type) return -1;
    PyObject *types = PyImport_ImportModule("types");
    if (!types) return -1;
    method_type = PyObject_GetAttrString(types, "MethodType");
    Py_DECREF(types);
    return method_type ? 0 : -1;
}

PyObject *hook_new(PyObject *wrapped, int kind) {
    if (hooks_init() != 0) return NULL;
    MethodHook *h = PyObject_New(MethodHook, (PyTypeObject *)hook_type);
    if (!h) return NULL;
    Py_INCREF(wrapped);
    h->wrapped = wrapped;
    h->kind = kind;
    h->vectorcall = hook_vectorcall;
    return (PyObject *)h;
}

int hook_is(PyObject *obj) {
    return hook_type && PyObject_TypeCheck(obj, (PyTypeObject *)hook_type);
}
