/* Attribute reads and method calls on the hooks' hot path, without the
 * generic lookup.
 *
 * PyObject_GetAttr searches the type's MRO for the name on every call. The
 * attributes the hooks read (Task._state, coroutine.cr_await,
 * Handle._callback, ...) are data descriptors (getset or member) of a few
 * well-known types, which an instance's __dict__ cannot shadow. So each is
 * looked up once per type (for the first RT_ATTR_TYPES types it is read on),
 * and later reads on objects of exactly that type call the descriptor's
 * __get__ directly: the value is the one PyObject_GetAttr would give. Any
 * other type, or a name that is not a data descriptor, takes the generic
 * path.
 *
 * Methods (Task.get_name) work the same way: the method descriptor found on
 * the type is called with the object as its first argument. Unlike a normal
 * call, this ignores a function stored in the instance's own __dict__ under
 * the method's name, which asyncio's task types never have.
 */
#ifndef ASTRACE_FAST_ATTR_H
#define ASTRACE_FAST_ATTR_H

#include "pyhead.h"

#define RT_ATTR_TYPES 2

struct rt_attr {
    const char *text;
    PyObject *name; /* interned on first use */
    int learned;    /* types looked up so far */
    struct {
        PyTypeObject *type; /* strong */
        PyObject *descr;    /* strong; NULL: this type takes the generic path */
        descrgetfunc get;   /* attributes: the descriptor's __get__ */
    } types[RT_ATTR_TYPES];
};

#define RT_ATTR(text_literal)                                                                                          \
    { .text = text_literal }

/* obj.<name>: a new reference, or NULL (with no exception set) if it failed. */
PyObject *rt_attr_get(struct rt_attr *a, PyObject *obj);
/* obj.<name>(): a new reference, or NULL (with no exception set) if it failed. */
PyObject *rt_method_call0(struct rt_attr *m, PyObject *obj);

#endif
