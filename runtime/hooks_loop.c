/* Event-loop hooks: wrappers around BaseEventLoop._run_once, the selectors'
 * select() and Handle._run that write loop-iteration, poll and callback
 * records, then call the original with the same arguments and return what it
 * returned (or let its exception through unchanged).
 *
 * A wrapper is an instance of MethodHook, a small callable type that behaves
 * like a function stored on a class: it carries the method-descriptor flag,
 * so `obj.method()` calls it as method(obj) without building a bound method,
 * and its __get__ binds like a function's for every other use.
 */
#include "pyhead.h"

#include <math.h>
#include <structmember.h>

#include "emit.h"
#include "hooks.h"

#ifndef Py_TPFLAGS_METHOD_DESCRIPTOR
#define Py_TPFLAGS_METHOD_DESCRIPTOR (1UL << 17)
#endif

typedef struct {
    PyObject_HEAD PyObject *wrapped;
    int kind;
} MethodHook;

static PyObject *method_type; /* types.MethodType */

static PyObject *call_run_once(MethodHook *self, PyObject *args, PyObject *kwargs) {
    rt_emit(ASTRACE_REC_LOOP_BEGIN, 0, rt_now_ns(), 0);
    rt_tls.loop_depth++;
    PyObject *res = PyObject_Call(self->wrapped, args, kwargs);
    rt_tls.loop_depth--;
    rt_emit(ASTRACE_REC_LOOP_END, 0, rt_now_ns(), res == NULL);
    return res;
}

/* select(self, timeout=None): the timeout in ns, or -1 for "block". */
static int64_t timeout_ns(PyObject *args, PyObject *kwargs) {
    PyObject *t = NULL;
    if (PyTuple_Size(args) >= 2)
        t = PyTuple_GetItem(args, 1);
    else if (kwargs)
        t = PyDict_GetItemString(kwargs, "timeout");
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

static PyObject *call_select(MethodHook *self, PyObject *args, PyObject *kwargs) {
    /* Only the selector call made by a loop iteration is the loop's poll. */
    if (rt_tls.loop_depth <= 0) return PyObject_Call(self->wrapped, args, kwargs);
    rt_emit(ASTRACE_REC_POLL_BEGIN, 0, rt_now_ns(), timeout_ns(args, kwargs));
    PyObject *res = PyObject_Call(self->wrapped, args, kwargs);
    int64_t n = -1;
    if (res && PyList_Check(res)) n = PyList_Size(res);
    rt_emit(ASTRACE_REC_POLL_END, 0, rt_now_ns(), n);
    return res;
}

static PyObject *str_callback;

/* One callback. A task step also marks the task as the thread's current
 * one (the parent of tasks it creates) and reports how the step ended. */
static PyObject *call_handle_run(MethodHook *self, PyObject *args, PyObject *kwargs) {
    PyObject *task = NULL;
    void *previous_task = rt_tls.current_task;
    /* Ready first: in a fork child that makes the segment the name goes in. */
    if (rt_ready()) {
        uint32_t name = 0;
        int kind = RT_CB_PLAIN;
        PyObject *cb = PyTuple_Size(args) >= 1 ? PyObject_GetAttr(PyTuple_GetItem(args, 0), str_callback) : NULL;
        if (cb) {
            name = rt_callback_name_id(cb, &kind);
            if (kind == RT_CB_TASK_STEP) task = rt_task_step_begin(cb);
            Py_DECREF(cb);
        } else {
            PyErr_Clear();
        }
        rt_write(ASTRACE_REC_CALLBACK_BEGIN, name, rt_now_ns(), (int64_t)(uintptr_t)task);
        if (task) rt_tls.current_task = task;
    }
    PyObject *res = PyObject_Call(self->wrapped, args, kwargs);
    if (task) rt_task_step_end(task, previous_task); /* restores current_task */
    rt_emit(ASTRACE_REC_CALLBACK_END, 0, rt_now_ns(), res == NULL);
    return res;
}

/* BaseEventLoop.create_task: report the task it returns. */
static PyObject *call_create_task(MethodHook *self, PyObject *args, PyObject *kwargs) {
    uint64_t start = rt_now_ns(); /* an eager task's first step starts in here */
    PyObject *res = PyObject_Call(self->wrapped, args, kwargs);
    if (res) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        rt_task_created(res, PyTuple_Size(args) >= 2 ? PyTuple_GetItem(args, 1) : NULL, start);
        PyErr_Restore(type, value, tb);
    }
    return res;
}

static PyObject *hook_call(PyObject *op, PyObject *args, PyObject *kwargs) {
    MethodHook *self = (MethodHook *)op;
    switch (self->kind) {
    case HOOK_RUN_ONCE: return call_run_once(self, args, kwargs);
    case HOOK_SELECT: return call_select(self, args, kwargs);
    case HOOK_HANDLE_RUN: return call_handle_run(self, args, kwargs);
    case HOOK_CREATE_TASK: return call_create_task(self, args, kwargs);
    default: return PyObject_Call(self->wrapped, args, kwargs);
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
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot hook_slots[] = {
    {Py_tp_call, hook_call},       {Py_tp_descr_get, hook_get},   {Py_tp_getattro, hook_getattr},
    {Py_tp_dealloc, hook_dealloc}, {Py_tp_members, hook_members}, {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "_astrace.MethodHook",
    .basicsize = sizeof(MethodHook),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = hook_slots,
};

static PyObject *hook_type;

int hooks_init(void) {
    if (hook_type) return 0;
    hook_type = PyType_FromSpec(&hook_spec);
    if (!hook_type) return -1;
    str_callback = PyUnicode_InternFromString("_callback");
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
    return (PyObject *)h;
}

int hook_is(PyObject *obj) {
    return hook_type && PyObject_TypeCheck(obj, (PyTypeObject *)hook_type);
}
