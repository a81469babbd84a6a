/* Implementation of fast_attr.h. */
#include "fast_attr.h"

/* Finds what `a` names on type `tp` and keeps it if it can be used directly:
 * a data descriptor for attributes, a method descriptor for methods. */
static void learn(struct rt_attr *a, PyTypeObject *tp, int method) {
    int i = a->learned++;
    Py_INCREF((PyObject *)tp);
    a->types[i].type = tp;
    a->types[i].descr = NULL;
    /* Through the type's own attribute lookup, the descriptor itself comes
     * back (its __get__ with no instance returns it) unless the metatype has
     * the name too, which a plain `type` subclass does not. */
    if (Py_TYPE((PyObject *)tp) != &PyType_Type) return;
    PyObject *descr = PyObject_GetAttr((PyObject *)tp, a->name);
    if (!descr) {
        PyErr_Clear();
        return;
    }
    PyTypeObject *dt = Py_TYPE(descr);
    descrgetfunc get = (descrgetfunc)PyType_GetSlot(dt, Py_tp_descr_get);
    int data = PyType_GetSlot(dt, Py_tp_descr_set) != NULL;
    int callable = PyCallable_Check(descr);
    if (method ? (get && !data && callable) : (get && data)) {
        a->types[i].descr = descr;
        a->types[i].get = get;
    } else {
        Py_DECREF(descr);
    }
}

/* The slot for obj's type: known, newly learned, or NULL (generic path). */
static int slot_for(struct rt_attr *a, PyTypeObject *tp, int method) {
    for (int i = 0; i < a->learned; i++)
        if (a->types[i].type == tp) return a->types[i].descr ? i : -1;
    if (!a->name) {
        a->name = PyUnicode_InternFromString(a->text);
        if (!a->name) {
            PyErr_Clear();
            return -1;
        }
    }
    if (a->learned == RT_ATTR_TYPES) return -1;
    learn(a, tp, method);
    return a->types[a->learned - 1].descr ? a->learned - 1 : -1;
}

PyObject *rt_attr_get(struct rt_attr *a, PyObject *obj) {
    PyTypeObject *tp = Py_TYPE(obj);
    PyObject *v;
    if (a->learned && a->types[0].type == tp && a->types[0].descr) /* the common case */
        v = a->types[0].get(a->types[0].descr, obj, (PyObject *)tp);
    else {
        int i = slot_for(a, tp, 0);
        v = i >= 0 ? a->types[i].get(a->types[i].descr, obj, (PyObject *)tp)
                   : (a->name ? PyObject_GetAttr(obj, a->name) : NULL);
    }
    if (!v) PyErr_Clear();
    return v;
}

PyObject *rt_method_call0(struct rt_attr *m, PyObject *obj) {
    int i = slot_for(m, Py_TYPE(obj), 1);
    PyObject *v;
    if (i >= 0)
        v = PyObject_Vectorcall(m->types[i].descr, &obj, 1, NULL);
    else
        v = m->name ? PyObject_CallMethodObjArgs(obj, m->name, NULL) : NULL;
    if (!v) PyErr_Clear();
    return v;
}
