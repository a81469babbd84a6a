/* Callback names: turns the callable a Handle runs into a string-table id.
 *
 * Looking a name up must cost little on every callback, so names are cached
 * in an open-addressing table keyed by the object that identifies the code
 * that will run, found with cheap attribute reads:
 *   - a Python function (or bound method of one): its code object;
 *   - a builtin method: its PyMethodDef (m_ml, the first field after the
 *     object header in every CPython since 3.0), stable for the process;
 *   - anything else: its type.
 * Ids belong to one segment: after fork() the child's table starts empty,
 * so each slot remembers the segment generation its id was made in.
 * Keys are held with a strong reference, so an address is never reused for
 * another object while cached. Code objects and types are bounded by the
 * program's size, so the table stays small.
 */
#include "pyhead.h"

#include <stdio.h>
#include <string.h>

#include "fast_attr.h"
#include "runtime.h"

struct name_slot {
    void *key;
    PyObject *ref; /* keeps `key` alive when it is an object; NULL for PyMethodDef keys */
    uint32_t id;
    uint32_t generation; /* segment generation the id belongs to (ids restart after fork) */
    int kind;            /* enum rt_callback_kind */
};

#define NAME_TABLE_MAX (1u << 16)
static struct name_slot *table;
static uint32_t table_cap, table_used;
static PyObject *str_qualname, *str_self, *str_module;
static struct rt_attr a_func = RT_ATTR("__func__"), a_code = RT_ATTR("__code__");
static PyTypeObject *type_method, *type_function, *type_builtin;

static int names_init(void) {
    if (str_qualname) return 0;
    str_qualname = PyUnicode_InternFromString("__qualname__");
    str_self = PyUnicode_InternFromString("__self__");
    str_module = PyUnicode_InternFromString("__module__");
    PyObject *types = PyImport_ImportModule("types");
    if (!types) return -1;
    type_method = (PyTypeObject *)PyObject_GetAttrString(types, "MethodType");
    type_function = (PyTypeObject *)PyObject_GetAttrString(types, "FunctionType");
    type_builtin = (PyTypeObject *)PyObject_GetAttrString(types, "BuiltinMethodType");
    Py_DECREF(types);
    if (!type_method || !type_function || !type_builtin) return -1;
    return 0;
}

static uint32_t hash_ptr(void *p) {
    return rt_hash((uint64_t)(uintptr_t)p);
}

static struct name_slot *find(void *key) {
    if (!table) return NULL;
    uint32_t mask = table_cap - 1;
    for (uint32_t i = hash_ptr(key) & mask;; i = (i + 1) & mask) {
        if (table[i].key == key) return &table[i];
        if (!table[i].key) return NULL;
    }
}

static void insert(void *key, PyObject *ref, uint32_t id, int kind) {
    if (table_used * 2 >= table_cap) {
        if (table_cap >= NAME_TABLE_MAX) return; /* full: names still work, uncached */
        uint32_t ncap = table_cap ? table_cap * 2 : 256;
        struct name_slot *n = PyMem_Calloc(ncap, sizeof *n);
        if (!n) return;
        struct name_slot *old = table;
        uint32_t ocap = table_cap;
        table = n;
        table_cap = ncap;
        for (uint32_t i = 0; i < ocap; i++) {
            if (!old[i].key) continue;
            uint32_t j = hash_ptr(old[i].key) & (ncap - 1);
            while (table[j].key) j = (j + 1) & (ncap - 1);
            table[j] = old[i];
        }
        PyMem_Free(old);
    }
    uint32_t mask = table_cap - 1;
    uint32_t i = hash_ptr(key) & mask;
    while (table[i].key) i = (i + 1) & mask;
    table[i].key = key;
    table[i].ref = ref;
    Py_XINCREF(ref);
    table[i].id = id;
    table[i].generation = atomic_load(&rt_generation);
    table[i].kind = kind;
    table_used++;
}

/* Appends the text of `obj` (a str) to buf; returns the new length. */
static size_t append_str(char *buf, size_t len, size_t cap, PyObject *obj) {
    if (!obj || !PyUnicode_Check(obj)) return len;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
    if (!s) {
        PyErr_Clear();
        return len;
    }
    if ((size_t)n > cap - len - 1) n = (Py_ssize_t)(cap - len - 1);
    memcpy(buf + len, s, (size_t)n);
    return len + (size_t)n;
}

static PyObject *attr(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) PyErr_Clear();
    return v;
}

/* Builds the display name of a callback (slow path, once per key). */
static uint32_t make_name(PyObject *cb, PyObject *func) {
    char buf[512];
    size_t len = 0;
    PyObject *type = (PyObject *)Py_TYPE(cb);
    PyObject *tname = attr(type, str_qualname);
    Py_ssize_t tlen;
    const char *tn = tname && PyUnicode_Check(tname) ? PyUnicode_AsUTF8AndSize(tname, &tlen) : NULL;
    if (!tn) PyErr_Clear();
    if (tn && strcmp(tn, "TaskStepMethWrapper") == 0) {
        len = (size_t)snprintf(buf, sizeof buf, "Task.__step");
    } else if (func || Py_TYPE(cb) == type_builtin) {
        PyObject *target = func ? func : cb;
        PyObject *q = attr(target, str_qualname);
        PyObject *m = func ? attr(target, str_module) : NULL;
        if (m && PyUnicode_Check(m) && PyUnicode_CompareWithASCIIString(m, "__main__") != 0) {
            len = append_str(buf, len, sizeof buf, m);
            buf[len++] = '.';
        }
        len = append_str(buf, len, sizeof buf, q);
        Py_XDECREF(q);
        Py_XDECREF(m);
    } else {
        len = append_str(buf, len, sizeof buf, tname);
    }
    Py_XDECREF(tname);
    if (len == 0) len = (size_t)snprintf(buf, sizeof buf, "<callback>");
    return rt_string_add(buf, len);
}

/* A callback is a task step when it is bound to a task: the C Task's
 * TaskStepMethWrapper and task_wakeup, or the pure-Python Task's methods. */
static int classify(PyObject *cb) {
    PyObject *self = attr(cb, str_self);
    int kind = self && rt_is_task(self) ? RT_CB_TASK_STEP : RT_CB_PLAIN;
    Py_XDECREF(self);
    return kind;
}

uint32_t rt_callback_name_id(void *callback, int *kind) {
    PyObject *cb = callback;
    *kind = RT_CB_PLAIN;
    if (!cb || names_init() != 0) {
        PyErr_Clear();
        return 0;
    }
    PyObject *func = NULL, *code = NULL;
    void *key;
    PyObject *keyref;
    if (Py_TYPE(cb) == type_method) {
        func = rt_attr_get(&a_func, cb);
    } else if (Py_TYPE(cb) == type_function) {
        func = cb;
        Py_INCREF(func);
    }
    if (func && Py_TYPE(func) == type_function) code = rt_attr_get(&a_code, func);
    if (code) {
        key = code;
        keyref = code;
    } else if (Py_TYPE(cb) == type_builtin) {
        /* PyCFunctionObject: PyObject_HEAD, then PyMethodDef *m_ml. */
        key = *(void **)((char *)cb + sizeof(PyObject));
        keyref = NULL;
    } else {
        key = Py_TYPE(cb);
        keyref = (PyObject *)Py_TYPE(cb);
    }
    struct name_slot *slot = find(key);
    uint32_t id;
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (slot && slot->generation == gen) {
        id = slot->id;
        *kind = slot->kind;
    } else if (slot) {
        id = slot->id = make_name(cb, func);
        slot->generation = gen;
        *kind = slot->kind;
    } else {
        id = make_name(cb, func);
        *kind = classify(cb);
        if (id) insert(key, keyref, id, *kind);
    }
    Py_XDECREF(code);
    Py_XDECREF(func);
    return id;
}

void rt_names_clear(void) {
    for (uint32_t i = 0; i < table_cap; i++) Py_XDECREF(table[i].ref);
    PyMem_Free(table);
    table = NULL;
    table_cap = table_used = 0;
}
