/* Finds where this interpreter keeps what the recorder needs to name a
 * sampled frame, by probing real objects instead of trusting a table per
 * CPython version: the recorder reads code objects, their strings and line
 * tables out of the process (process_vm_readv) at these offsets.
 *
 * The probe code object is made by the bootstrap with a first line of
 * 12345 and a qualname that differs from its name; the probe strings are
 * one ASCII, one Latin-1, one UCS-2 and one UCS-4 string whose characters
 * spell "astrace" around one wider character. A field is accepted only if
 * exactly one place in the object holds it.
 */
#include "pyhead.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime.h"

#define PROBE_FIRSTLINE 12345

/* Offset of the one pointer-sized field of `obj` (within `size` bytes)
 * that holds `value`, or 0 if none or several do. */
static uint32_t find_pointer(const void *obj, size_t size, const void *value) {
    uint32_t found = 0;
    int count = 0;
    for (size_t off = sizeof(PyObject); off + sizeof(void *) <= size; off += sizeof(void *)) {
        const void *v;
        memcpy(&v, (const char *)obj + off, sizeof v);
        if (v == value) found = (uint32_t)off, count++;
    }
    return count == 1 ? found : 0;
}

static uint32_t find_int(const void *obj, size_t size, int value) {
    uint32_t found = 0;
    int count = 0;
    for (size_t off = sizeof(PyObject); off + sizeof(int) <= size; off += sizeof(int)) {
        int v;
        memcpy(&v, (const char *)obj + off, sizeof v);
        if (v == value) found = (uint32_t)off, count++;
    }
    return count == 1 ? found : 0;
}

static uint32_t find_bytes(const void *obj, size_t size, const void *pattern, size_t len) {
    for (size_t off = sizeof(PyObject); off + len <= size; off++)
        if (!memcmp((const char *)obj + off, pattern, len)) return (uint32_t)off;
    return 0;
}

static int attr_object(PyObject *code, const char *name, PyObject **out) {
    *out = PyObject_GetAttrString(code, name);
    if (!*out) return -1;
    Py_DECREF(*out); /* the code object keeps it alive */
    return 0;
}

int rt_py_layout_probe(struct astrace_py_layout *out, void *probe_code, void *probe_strings, void *call_ops_obj,
                       char *err, size_t errlen) {
    PyObject *code = probe_code, *strs = probe_strings, *call_ops = call_ops_obj;
    memset(out, 0, sizeof *out);
    PyObject *filename, *qualname, *linetable, *name;
    if (attr_object(code, "co_filename", &filename) || attr_object(code, "co_qualname", &qualname) ||
        attr_object(code, "co_linetable", &linetable) || attr_object(code, "co_name", &name))
        return -1;
    PyObject *basicsize = PyObject_GetAttrString((PyObject *)Py_TYPE(code), "__basicsize__");
    if (!basicsize) return -1;
    Py_ssize_t code_size = PyLong_AsSsize_t(basicsize);
    Py_DECREF(basicsize);
    if (code_size <= 0 || !PyBytes_Check(linetable) || name == qualname) {
        snprintf(err, errlen, "unexpected probe code object");
        return -1;
    }
    out->code_type = (uint64_t)(uintptr_t)Py_TYPE(code);
    out->code_filename = find_pointer(code, (size_t)code_size, filename);
    out->code_qualname = find_pointer(code, (size_t)code_size, qualname);
    out->code_linetable = find_pointer(code, (size_t)code_size, linetable);
    out->code_firstlineno = find_int(code, (size_t)code_size, PROBE_FIRSTLINE);
    out->code_instructions = (uint32_t)code_size;
    out->code_size_field = (uint32_t)sizeof(PyObject); /* PyVarObject.ob_size: code units */
    out->bytes_data = (uint32_t)(PyBytes_AsString(linetable) - (char *)linetable);

    /* Strings: ASCII data is where the UTF-8 form of an ASCII string is. */
    if (!PyTuple_Check(strs) || PyTuple_Size(strs) != 4) {
        snprintf(err, errlen, "probe strings missing");
        return -1;
    }
    PyObject *ascii = PyTuple_GetItem(strs, 0);
    Py_ssize_t alen;
    const char *adata = PyUnicode_AsUTF8AndSize(ascii, &alen);
    if (!adata) return -1;
    out->str_ascii_data = (uint32_t)(adata - (const char *)ascii);
    Py_ssize_t stored_len;
    memcpy(&stored_len, (const char *)ascii + 2 * sizeof(void *), sizeof stored_len);
    out->str_length = stored_len == alen ? (uint32_t)(2 * sizeof(void *)) : 0;
    /* Latin-1: find its one-byte-per-character data. */
    static const unsigned char latin1[] = {'a', 's', 't', 0xe9, 'r', 'a', 'c', 'e'};
    out->str_compact_data = find_bytes(PyTuple_GetItem(strs, 1), 128, latin1, sizeof latin1);
    /* The state bit field follows the hash; its kind bits must read 1, 1,
     * 2, 4 for the four probes, and the ASCII bit only for the first. */
    uint32_t state_off = (uint32_t)(4 * sizeof(void *));
    const int kinds[4] = {1, 1, 2, 4};
    int ok = out->str_length && out->str_compact_data > state_off;
    for (int i = 0; i < 4 && ok; i++) {
        unsigned char st = *((const unsigned char *)PyTuple_GetItem(strs, i) + state_off);
        int kind = (st >> 2) & 7, compact = (st >> 5) & 1, is_ascii = (st >> 6) & 1;
        ok = kind == kinds[i] && compact && is_ascii == (i == 0);
    }
    out->str_state = ok ? state_off : 0;

    if (!PyBytes_Check(call_ops) || PyBytes_Size(call_ops) != (Py_ssize_t)sizeof out->call_ops) {
        snprintf(err, errlen, "call opcode bitmap must be %zu bytes", sizeof out->call_ops);
        return -1;
    }
    memcpy(out->call_ops, PyBytes_AsString(call_ops), sizeof out->call_ops);
    if (!out->code_filename || !out->code_qualname || !out->code_linetable || !out->code_firstlineno ||
        !out->str_state || !out->bytes_data) {
        snprintf(err, errlen,
                 "this Python's code objects are laid out in a way astrace does not recognize "
                 "(filename %u, qualname %u, linetable %u, firstlineno %u, strings %u)",
                 out->code_filename, out->code_qualname, out->code_linetable, out->code_firstlineno, out->str_state);
        return -1;
    }
    return 0;
}
