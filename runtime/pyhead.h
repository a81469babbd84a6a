/* Python.h under the limited API: the runtime targets the stable ABI of
 * CPython 3.11 so one build loads in every CPython 3.11 and later. */
#ifndef ASTRACE_PYHEAD_H
#define ASTRACE_PYHEAD_H
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Vectorcall: in CPython's ABI since 3.9 (PEP 590), in the limited API's
 * headers only from 3.12, so declared here. PyType_FromSpec sets a type's
 * vectorcall offset from its __vectorcalloffset__ member. */
#ifndef Py_TPFLAGS_HAVE_VECTORCALL
#define Py_TPFLAGS_HAVE_VECTORCALL (1UL << 11)
typedef PyObject *(*vectorcallfunc)(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);
PyAPI_FUNC(PyObject *) PyObject_Vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);
PyAPI_FUNC(PyObject *) PyVectorcall_Call(PyObject *callable, PyObject *tuple, PyObject *dict);
#define PY_VECTORCALL_ARGUMENTS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1))
#endif

/* An immortal object (3.12+): never freed, and possibly in read-only memory
 * (3.13's _Py_InitCleanup, the code of the frame that finishes a Python
 * __init__). The 3.11 limited API's Py_INCREF would write to it: skip that.
 * Every CPython since 3.12 keeps bit 31 of the refcount's low half set on
 * immortal objects; a mortal one never holds 2^31 references. */
static inline int rt_immortal(PyObject *o) {
    return ((uint32_t)Py_REFCNT(o) & 0x80000000u) != 0;
}
#endif
