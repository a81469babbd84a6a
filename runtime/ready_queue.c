/* Implementation of ready_queue.h. */
#include "ready_queue.h"

#include <string.h>

#include "runtime.h"

struct ready_entry {
    uintptr_t item; /* identity only: the deque holds the reference */
    uint64_t ts;
};

/* The times of one queue's items, oldest first: a ring of `cap` (a power of
 * two) entries from `head`. */
struct ready_ring {
    PyObject *queue; /* strong */
    struct ready_entry *buf;
    uint32_t cap, head, count;
};

#define RINGS_MAX 8                 /* queues (loops) followed at once */
#define RING_ENTRIES_MAX (1u << 22) /* past that, times restart (lags unknown) */

static struct ready_ring rings[RINGS_MAX];
static int nrings, next_evicted;
static PyObject *queue_type, *deque_type, *deque_append, *deque_popleft, *str_ready;
static PyCFunction deque_append_c, deque_popleft_c; /* their C functions, when found */

static struct ready_ring *ring_of(PyObject *queue, int create) {
    for (int i = 0; i < nrings; i++)
        if (rings[i].queue == queue) return &rings[i];
    if (!create) return NULL;
    struct ready_ring *r;
    if (nrings < RINGS_MAX) {
        r = &rings[nrings++];
    } else { /* a loop long gone, most likely */
        r = &rings[next_evicted++ % RINGS_MAX];
        PyMem_Free(r->buf);
        Py_DECREF(r->queue);
    }
    memset(r, 0, sizeof *r);
    Py_INCREF(queue);
    r->queue = queue;
    return r;
}

void ready_queue_adopt(PyObject *loop) {
    if (!queue_type) return;
    PyObject *ready = PyObject_GetAttr(loop, str_ready);
    if (ready && (PyObject *)Py_TYPE(ready) == deque_type) {
        /* Same items, same order; those already in it have no time. */
        PyObject *mine = PyObject_CallFunctionObjArgs(queue_type, ready, NULL);
        if (!mine || PyObject_SetAttr(loop, str_ready, mine) != 0) PyErr_Clear();
        Py_XDECREF(mine);
    }
    if (!ready) PyErr_Clear();
    Py_XDECREF(ready);
}

PyObject *ready_queue_of(PyObject *loop) {
    if (!str_ready) return NULL;
    PyObject *ready = PyObject_GetAttr(loop, str_ready);
    if (!ready) {
        PyErr_Clear();
        return NULL;
    }
    /* Handle._run on this thread finds the times here (ready_queue_take). */
    rt_tls.ready_queue = ready;
    rt_tls.ready_ring = (PyObject *)Py_TYPE(ready) == queue_type ? ring_of(ready, 1) : NULL;
    return ready;
}

static void ready_queue_appended(PyObject *queue, PyObject *item, uint64_t ts) {
    struct ready_ring *r = ring_of(queue, 1);
    if (r->count == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 256;
        struct ready_entry *n = ncap <= RING_ENTRIES_MAX ? PyMem_Malloc(ncap * sizeof *n) : NULL;
        if (!n) { /* too many waiting: start over */
            r->count = 0;
            if (!r->cap) return;
        } else {
            for (uint32_t i = 0; i < r->count; i++) n[i] = r->buf[(r->head + i) & (r->cap - 1)];
            PyMem_Free(r->buf);
            r->buf = n;
            r->cap = ncap;
            r->head = 0;
        }
    }
    struct ready_entry *e = &r->buf[(r->head + r->count++) & (r->cap - 1)];
    e->item = (uintptr_t)item;
    e->ts = ts;
}

uint64_t ready_queue_take(PyObject *handle) {
    struct ready_ring *r = rt_tls.ready_ring;
    if (!r || r->queue != rt_tls.ready_queue || !r->count) return 0;
    Py_ssize_t waiting = PyObject_Size(r->queue);
    if (waiting < 0) {
        PyErr_Clear();
        return 0;
    }
    /* The newest `waiting` times belong to the items still queued; the one
     * before them to the item popped last, this handle if it has one; older
     * ones to items popped and not run (cancelled handles). */
    if (r->count <= (uint64_t)waiting) return 0;
    uint32_t skip = r->count - (uint32_t)waiting - 1;
    r->head = (r->head + skip + 1) & (r->cap - 1);
    r->count -= skip + 1;
    struct ready_entry e = r->buf[(r->head - 1) & (r->cap - 1)];
    if (e.item == (uintptr_t)handle) return e.ts;
    r->count = 0; /* out of step (the deque changed another way): forget, never guess */
    return 0;
}

/* ---- the ReadyQueue type ----------------------------------------------------- */

/* ReadyQueue.append(item): deque.append, then the time. */
static PyObject *queue_append(PyObject *self, PyObject *item) {
    PyObject *res;
    if (deque_append_c) {
        res = deque_append_c(self, item);
    } else {
        PyObject *args[2] = {self, item};
        res = PyObject_Vectorcall(deque_append, args, 2, NULL);
    }
    if (res) {
        /* Queued by a late timer's callback: ready since the timer fell due. */
        uint64_t made = rt_now();
        if (rt_tls.current_lag) made -= (uint64_t)rt_ns_to_clock(rt_tls.current_lag, made);
        ready_queue_appended(self, item, made);
    }
    return res;
}

/* ReadyQueue.popleft(): deque.popleft, defined here only so that the
 * interpreter's call of it on a ReadyQueue stays specialized (an inherited
 * method called on a subclass takes the generic path). */
static PyObject *queue_popleft(PyObject *self, PyObject *unused) {
    if (deque_popleft_c) return deque_popleft_c(self, unused);
    return PyObject_Vectorcall(deque_popleft, &self, 1, NULL);
}

static PyMethodDef queue_methods[] = {
    {"append", queue_append, METH_O, "Add an element to the right side of the deque (and note when)."},
    {"popleft", queue_popleft, METH_NOARGS, "Remove and return the leftmost element."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot queue_slots[] = {{Py_tp_methods, queue_methods}, {0, NULL}};

static PyType_Spec queue_spec = {
    .name = "_astrace.ReadyQueue",
    .basicsize = 0, /* the deque's */
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = queue_slots,
};

/* The C function behind a method descriptor of a C type: its PyMethodDef
 * follows the descriptor's common head (object head, d_type, d_name,
 * d_qualname), as in every CPython since 3.3. Used only if that PyMethodDef
 * names the method and has the expected calling convention (`flags`). */
static PyCFunction method_function(PyObject *descr, const char *name, int flags) {
    PyObject *list_append = PyObject_GetAttrString((PyObject *)&PyList_Type, "append");
    if (!list_append) {
        PyErr_Clear();
        return NULL;
    }
    PyTypeObject *method_descr_type = Py_TYPE(list_append);
    Py_DECREF(list_append);
    if (Py_TYPE(descr) != method_descr_type) return NULL;
    const PyMethodDef *def = *(PyMethodDef *const *)((const char *)descr + sizeof(PyObject) + 3 * sizeof(void *));
    if (!def || !def->ml_name || strcmp(def->ml_name, name) != 0 || def->ml_flags != flags) return NULL;
    return def->ml_meth;
}

int ready_queue_init(PyObject *deque) {
    if (!deque || deque == Py_None || queue_type) return 0;
    str_ready = PyUnicode_InternFromString("_ready");
    deque_append = str_ready ? PyObject_GetAttrString(deque, "append") : NULL;
    deque_popleft = deque_append ? PyObject_GetAttrString(deque, "popleft") : NULL;
    if (!deque_popleft) return -1;
    deque_append_c = method_function(deque_append, "append", METH_O);
    deque_popleft_c = method_function(deque_popleft, "popleft", METH_NOARGS);
    PyObject *bases = PyTuple_Pack(1, deque);
    queue_type = bases ? PyType_FromSpecWithBases(&queue_spec, bases) : NULL;
    Py_XDECREF(bases);
    if (!queue_type) return -1;
    Py_INCREF(deque);
    deque_type = deque;
    return 0;
}
