/* Python.h under the limited API: the runtime targets the stable ABI of
 * CPython 3.11 so one build loads in every CPython 3.11 and later. */
#ifndef ASTRACE_PYHEAD_H
#define ASTRACE_PYHEAD_H
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif
