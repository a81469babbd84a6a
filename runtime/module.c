/* _astrace: the extension module the bootstrap (python/astrace_bootstrap.py)
 * imports in every traced process. It exposes just what the bootstrap needs:
 *
 *   start(session_dir, python_version, hexversion, executable, argv,
 *         ring_size, ring_count, strings_capacity)  create the segment
 *   hook(cls, name, kind)    replace cls.name by a C hook of that kind
 *   init_tasks(types, stdlib_prefixes)  what a task is, which files are not user code
 *   init_loop(asyncio.events, collections.deque or None)  loop lag, ready queue
 *   gc_callback(phase, info)            for gc.callbacks: GC slices
 *   sampler_start(rate, cpu, native, signo, probe_code, probe_strings, call_ops)
 *                            arm the stack sampler (before thread_started)
 *   sampler_stop()           disarm it (the program wants the signal back)
 *   thread_started(name)     give the calling thread a ring and a name
 *   stop()                   stop recording (atexit)
 *   active()                 whether this process records
 */
#include "pyhead.h"

#include <string.h>

#include "emit.h"
#include "exc_guard.h"
#include "hooks.h"
#include "pyframes.h"
#include "ready_queue.h"
#include "runtime.h"

static PyObject *mod_start(PyObject *m, PyObject *args) {
    (void)m;
    const char *dir, *pyver, *exe;
    int hexversion;
    PyObject *argv;
    unsigned long long ring_size, strings_capacity, sample_ring_size = 0;
    unsigned int ring_count;
    if (!PyArg_ParseTuple(args, "ssisOKIK|K", &dir, &pyver, &hexversion, &exe, &argv, &ring_size, &ring_count,
                          &strings_capacity, &sample_ring_size))
        return NULL;
    if (sample_ring_size &&
        (sample_ring_size < 4096 || (sample_ring_size & (sample_ring_size - 1)) || sample_ring_size > (1ull << 32))) {
        PyErr_SetString(PyExc_ValueError, "sample_ring_size must be 0 or a power of two between 4 KiB and 4 GiB");
        return NULL;
    }
    strings_capacity = (strings_capacity + 4095) & ~4095ULL;
    if (ring_size < 4096 || (ring_size & (ring_size - 1)) || ring_size > (1ull << 32)) {
        PyErr_SetString(PyExc_ValueError, "ring_size must be a power of two between 4 KiB and 4 GiB");
        return NULL;
    }
    if (ring_count < 1 || ring_count > 4096) {
        PyErr_SetString(PyExc_ValueError, "ring_count must be between 1 and 4096");
        return NULL;
    }
    char cmdline[4 * ASTRACE_TEXT_MAX];
    uint32_t len = 0;
    Py_ssize_t n = PySequence_Size(argv);
    if (n < 0) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(argv, i);
        if (!item) return NULL;
        Py_ssize_t sl;
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &sl) : NULL;
        if (!s) {
            PyErr_Clear();
            s = "?";
            sl = 1;
        }
        if (len + (uint32_t)sl + 1 > sizeof cmdline) {
            Py_DECREF(item);
            break;
        }
        memcpy(cmdline + len, s, (size_t)sl);
        len += (uint32_t)sl;
        cmdline[len++] = 0;
        Py_DECREF(item);
    }
    struct rt_config cfg = {dir, ring_size, ring_count, strings_capacity, sample_ring_size};
    char err[512];
    if (rt_segment_start(&cfg, pyver, hexversion, exe, cmdline, len, err, sizeof err) != 0) {
        PyErr_Format(PyExc_OSError, "astrace: %s", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *mod_hook(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *cls, *name;
    int kind;
    if (!PyArg_ParseTuple(args, "OUi", &cls, &name, &kind)) return NULL;
    if (kind < HOOK_RUN_ONCE || kind > HOOK_THREAD_RUN) {
        PyErr_SetString(PyExc_ValueError, "unknown hook kind");
        return NULL;
    }
    PyObject *orig = PyObject_GetAttr(cls, name);
    if (!orig) return NULL;
    if (hook_is(orig)) { /* already hooked: keep one layer */
        Py_DECREF(orig);
        Py_RETURN_FALSE;
    }
    PyObject *h = hook_new(orig, kind);
    Py_DECREF(orig);
    if (!h) return NULL;
    int rc = PyObject_SetAttr(cls, name, h);
    Py_DECREF(h);
    if (rc != 0) return NULL;
    Py_RETURN_TRUE;
}

void *rt_python_thread_state(void) {
    return PyGILState_GetThisThreadState();
}

static PyObject *mod_sampler_start(PyObject *m, PyObject *args) {
    (void)m;
    int rate, cpu, native, signo;
    PyObject *probe_code, *probe_strings, *call_ops;
    if (!PyArg_ParseTuple(args, "ippiOOO", &rate, &cpu, &native, &signo, &probe_code, &probe_strings, &call_ops))
        return NULL;
    if (!rt_seg || !rt_seg->sample_ring_size) {
        PyErr_SetString(PyExc_RuntimeError, "astrace: start() was not given sample rings");
        return NULL;
    }
    char err[512];
    if (!pyframes_init(rt_seg->python_hexversion, (PyObject *)Py_TYPE(probe_code))) {
        PyErr_Format(PyExc_RuntimeError, "this Python's interpreter frames cannot be read: %s",
                     pyframes_unavailable());
        return NULL;
    }
    struct astrace_py_layout layout;
    if (rt_py_layout_probe(&layout, probe_code, probe_strings, call_ops, err, sizeof err) != 0) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_RuntimeError, "astrace: %s", err);
        return NULL;
    }
    if (rt_sampler_start(rate, cpu, native, signo, err, sizeof err) != 0) {
        PyErr_Format(PyExc_RuntimeError, "astrace: %s", err);
        return NULL;
    }
    /* Published before any thread is armed; `ready` last. */
    memcpy((char *)&rt_seg->py + sizeof layout.ready, (char *)&layout + sizeof layout.ready,
           sizeof layout - sizeof layout.ready);
    rt_seg->sample_rate_hz = (uint32_t)rate;
    rt_seg->sample_flags = (cpu ? ASTRACE_SAMPLE_CPU : 0) | (native ? ASTRACE_SAMPLE_NATIVE : 0);
    atomic_store_explicit(&rt_seg->py.ready, 1, memory_order_release);
    /* The calling thread may hold a ring already: arm it now. */
    if (rt_tls.has_ring && rt_tls.generation == atomic_load(&rt_generation))
        rt_sampler_thread_start(rt_tls.ring.hdr->index, PyGILState_GetThisThreadState());
    Py_RETURN_NONE;
}

static PyObject *mod_sampler_stop(PyObject *m, PyObject *args) {
    (void)m;
    (void)args;
    rt_sampler_stop();
    Py_RETURN_NONE;
}

/* The thread's Python code is done: stop sampling it now, while its thread
 * state still exists (the ring itself is released at thread exit). */
static PyObject *mod_thread_started(PyObject *m, PyObject *args) {
    (void)m;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    rt_thread_begin(name);
    Py_RETURN_NONE;
}

static PyObject *mod_init_tasks(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *types, *prefixes, *code_type;
    long hexversion;
    if (!PyArg_ParseTuple(args, "OOlO", &types, &prefixes, &hexversion, &code_type)) return NULL;
    if (rt_tasks_init(types, prefixes, hexversion, code_type) != 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *mod_init_loop(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *events, *deque;
    if (!PyArg_ParseTuple(args, "OO", &events, &deque)) return NULL;
    PyObject *timer_type = PyObject_GetAttrString(events, "TimerHandle");
    if (!timer_type) return NULL;
    int rc = hooks_init_loop(timer_type, deque) != 0;
    Py_DECREF(timer_type);
    if (rc) return NULL;
    Py_RETURN_NONE;
}

/* gc.callbacks entry: a GC slice on the thread that collects. */
static PyObject *mod_gc_callback(PyObject *m, PyObject *args) {
    (void)m;
    static PyObject *s_start, *s_generation, *s_collected;
    if (!s_start) {
        s_start = PyUnicode_InternFromString("start");
        s_generation = PyUnicode_InternFromString("generation");
        s_collected = PyUnicode_InternFromString("collected");
        if (!s_start || !s_generation || !s_collected) return NULL;
    }
    if (PyTuple_Size(args) != 2 || !rt_ready()) Py_RETURN_NONE;
    PyObject *phase = PyTuple_GetItem(args, 0), *info = PyTuple_GetItem(args, 1);
    struct rt_guard g;
    rt_guard_enter(&g);
    int start = phase == s_start || PyUnicode_Compare(phase, s_start) == 0;
    PyObject *v = PyDict_Check(info) ? PyDict_GetItem(info, start ? s_generation : s_collected) : NULL;
    long long n = v ? PyLong_AsLongLong(v) : -1;
    if (n == -1 && PyErr_Occurred()) PyErr_Clear();
    rt_guard_leave(&g);
    rt_write(start ? ASTRACE_REC_GC_BEGIN : ASTRACE_REC_GC_END, 0, rt_now(), n);
    Py_RETURN_NONE;
}

static PyObject *mod_stop(PyObject *m, PyObject *args) {
    (void)m;
    (void)args;
    rt_segment_stop();
    Py_RETURN_NONE;
}

static PyObject *mod_active(PyObject *m, PyObject *args) {
    (void)m;
    (void)args;
    return PyBool_FromLong(atomic_load(&rt_generation) != 0);
}

/* suspended_at(coro): (code, offset, awaited or None) as read straight from
 * a suspended coroutine's or generator's frame (pyframes.h), or None when it
 * cannot be read that way. For the tests, which check it against the
 * public cr_code / cr_await. */
static PyObject *mod_suspended_at(PyObject *m, PyObject *obj) {
    (void)m;
    PyObject *types = PyImport_ImportModule("types");
    if (!types) return NULL;
    PyObject *coro_type = PyObject_GetAttrString(types, "CoroutineType");
    PyObject *gen_type = PyObject_GetAttrString(types, "GeneratorType");
    Py_DECREF(types);
    int ok = coro_type && gen_type &&
             (Py_TYPE(obj) == (PyTypeObject *)coro_type || Py_TYPE(obj) == (PyTypeObject *)gen_type);
    Py_XDECREF(coro_type);
    Py_XDECREF(gen_type);
    if (PyErr_Occurred()) return NULL;
    PyObject *code, *awaiting;
    int offset;
    if (!ok || !pyframes_coro_suspended(obj, &code, &offset, &awaiting)) Py_RETURN_NONE;
    return Py_BuildValue("(OiO)", code, offset, awaiting ? awaiting : Py_None);
}

static PyMethodDef methods[] = {
    {"start", mod_start, METH_VARARGS, "Create this process's segment and start recording."},
    {"hook", mod_hook, METH_VARARGS, "hook(cls, name, kind): wrap cls.name with a C hook."},
    {"init_tasks", mod_init_tasks, METH_VARARGS,
     "init_tasks(task_types, stdlib_prefixes, hexversion, CodeType): what a task is, what\n"
     "user code is not, and where coroutine frames keep their line."},
    {"init_loop", mod_init_loop, METH_VARARGS,
     "init_loop(asyncio.events, counters): Handle/TimerHandle classes; loop lag and ready queue on/off."},
    {"gc_callback", mod_gc_callback, METH_VARARGS, "For gc.callbacks: records garbage collections."},
    {"sampler_start", mod_sampler_start, METH_VARARGS,
     "sampler_start(rate_hz, cpu, native, signo, probe_code, probe_strings, call_ops): arm the sampler."},
    {"sampler_stop", mod_sampler_stop, METH_NOARGS, "Stop sampling (every thread's timer is deleted)."},
    {"thread_started", mod_thread_started, METH_VARARGS, "Name the calling thread in the trace."},
    {"stop", mod_stop, METH_NOARGS, "Stop recording in this process."},
    {"active", mod_active, METH_NOARGS, "True while this process records."},
    {"suspended_at", mod_suspended_at, METH_O,
     "suspended_at(coro): (code, offset, awaited) read from a suspended coroutine's frame, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    "_astrace",
    "astrace in-process runtime (hooks and shared-memory rings).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__astrace(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (hooks_init() != 0 || PyModule_AddIntConstant(m, "HOOK_RUN_ONCE", HOOK_RUN_ONCE) ||
        PyModule_AddIntConstant(m, "HOOK_SELECT", HOOK_SELECT) ||
        PyModule_AddIntConstant(m, "HOOK_HANDLE_RUN", HOOK_HANDLE_RUN) ||
        PyModule_AddIntConstant(m, "HOOK_CREATE_TASK", HOOK_CREATE_TASK) ||
        PyModule_AddIntConstant(m, "HOOK_LOOP_INIT", HOOK_LOOP_INIT) ||
        PyModule_AddIntConstant(m, "HOOK_THREAD_RUN", HOOK_THREAD_RUN) ||

        PyModule_AddIntConstant(m, "SHM_VERSION", ASTRACE_SHM_VERSION)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
