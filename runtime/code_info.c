/* Implementation of code_info.h: two open-addressing caches (code object ->
 * facts, (code, line) -> location string id). Code objects are held with a
 * strong reference so an address is never reused while cached; entries
 * remember the segment generation because string ids restart after fork. */
#include "code_info.h"

#include <stdio.h>
#include <string.h>

#include "pyframes.h"
#include "runtime.h"

struct code_slot {
    PyObject *code;
    uint32_t generation;
    struct code_info info;
};

struct loc_slot {
    PyObject *code; /* borrowed: the code slot holds the reference */
    int line;       /* key: instruction offset, or -(line + 1) for a known line */
    uint32_t generation;
    uint32_t id;
};

#define CACHE_MAX (1u << 18)
static struct code_slot *codes;
static uint32_t codes_cap, codes_used;
static struct loc_slot *locs;
static uint32_t locs_cap, locs_used;
static char stdlib_prefix[8][512];
static int nprefixes;

static uint32_t hash_ptr(const void *p, uint32_t extra) {
    return rt_hash((uint64_t)(uintptr_t)p ^ ((uint64_t)extra << 40));
}

int code_info_init(PyObject *prefixes) {
    nprefixes = 0;
    Py_ssize_t n = PySequence_Size(prefixes);
    for (Py_ssize_t i = 0; i < n && nprefixes < 8; i++) {
        PyObject *item = PySequence_GetItem(prefixes, i);
        if (!item) return -1;
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(item, &len);
        if (s && len > 0 && (size_t)len < sizeof stdlib_prefix[0])
            snprintf(stdlib_prefix[nprefixes++], sizeof stdlib_prefix[0], "%s", s);
        Py_DECREF(item);
        if (!s) return -1;
    }
    return 0;
}

static int is_stdlib_file(const char *file) {
    if (file[0] == '<') return 1; /* <frozen ...>, <string> of the runtime */
    if (strstr(file, "/site-packages/") || strstr(file, "/dist-packages/")) return 0;
    for (int i = 0; i < nprefixes; i++) {
        size_t l = strlen(stdlib_prefix[i]);
        if (!strncmp(file, stdlib_prefix[i], l) && file[l] == '/') return 1;
    }
    return 0;
}

static void text_of(PyObject *obj, const char *attr_name, char *out, size_t cap) {
    out[0] = 0;
    PyObject *v = PyObject_GetAttrString(obj, attr_name);
    if (!v) {
        PyErr_Clear();
        return;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_Check(v) ? PyUnicode_AsUTF8AndSize(v, &len) : NULL;
    if (s)
        snprintf(out, cap, "%s", s);
    else
        PyErr_Clear();
    Py_DECREF(v);
}

static void fill(struct code_info *ci, PyObject *code) {
    char file[1024];
    memset(ci, 0, sizeof *ci);
    text_of(code, "co_filename", file, sizeof file);
    text_of(code, "co_qualname", ci->qualname_text, sizeof ci->qualname_text);
    if (!ci->qualname_text[0]) text_of(code, "co_name", ci->qualname_text, sizeof ci->qualname_text);
    const char *base = strrchr(file, '/');
    snprintf(ci->basename, sizeof ci->basename, "%.63s", base ? base + 1 : file);
    ci->is_user = !is_stdlib_file(file);
    ci->code_bytes = -1;
    PyObject *bytecode = PyObject_GetAttrString(code, "co_code");
    if (bytecode && PyBytes_Check(bytecode)) ci->code_bytes = PyBytes_Size(bytecode);
    if (!bytecode) PyErr_Clear();
    Py_XDECREF(bytecode);
    const char *last = strrchr(ci->qualname_text, '.');
    const char *fname = last ? last + 1 : ci->qualname_text;
    ci->is_dunder = !strncmp(fname, "__", 2);
    ci->is_private = fname[0] == '_' && !ci->is_dunder;
    ci->qualname = rt_string_add(ci->qualname_text, strlen(ci->qualname_text));
    if (!ci->is_user) {
        /* Module-level asyncio functions read "asyncio.sleep()", methods
         * "Event.wait()", the way users wrote the await. */
        char label[160];
        int in_asyncio = strstr(file, "/asyncio/") != NULL;
        int n = snprintf(label, sizeof label, "await %s%s()", !last && in_asyncio ? "asyncio." : "", ci->qualname_text);
        ci->await_label = rt_string_add(label, (size_t)(n < (int)sizeof label ? n : (int)sizeof label - 1));
    }
}

static void grow_codes(void) {
    uint32_t ncap = codes_cap ? codes_cap * 2 : 1024;
    struct code_slot *n = PyMem_Calloc(ncap, sizeof *n);
    if (!n) return;
    for (uint32_t i = 0; i < codes_cap; i++) {
        if (!codes[i].code) continue;
        uint32_t j = hash_ptr(codes[i].code, 0) & (ncap - 1);
        while (n[j].code) j = (j + 1) & (ncap - 1);
        n[j] = codes[i];
    }
    PyMem_Free(codes);
    codes = n;
    codes_cap = ncap;
}

static struct code_info scratch; /* facts of a code object the full cache cannot keep */

int code_info_is_cached(const struct code_info *ci) {
    return ci != &scratch;
}

const struct code_info *code_info_get(PyObject *code) {
    /* An immortal code object is the interpreter's own, never user code,
     * and may be one not even CPython's attribute getters can read (3.13+'s
     * _Py_InitCleanup lives in read-only memory, and co_code would write
     * to it). */
    if (rt_immortal(code)) return NULL;
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (codes_used * 2 >= codes_cap && codes_cap < CACHE_MAX) grow_codes();
    if (!codes) {
        fill(&scratch, code);
        return &scratch;
    }
    uint32_t mask = codes_cap - 1;
    uint32_t i = hash_ptr(code, 0) & mask;
    while (codes[i].code && codes[i].code != code) i = (i + 1) & mask;
    if (codes[i].code == code) {
        if (codes[i].generation != gen) {
            fill(&codes[i].info, code);
            codes[i].generation = gen;
        }
        return &codes[i].info;
    }
    if (codes_used * 2 >= codes_cap) { /* full at CACHE_MAX: compute, do not keep */
        fill(&scratch, code);
        return &scratch;
    }
    Py_INCREF(code); /* kept alive: its address stays its own */
    codes[i].code = code;
    codes[i].generation = gen;
    fill(&codes[i].info, code);
    codes_used++;
    return &codes[i].info;
}

static uint32_t make_location(const struct code_info *ci, int line) {
    char text[96];
    int n = snprintf(text, sizeof text, "%s:%d", ci->basename, line);
    return rt_string_add(text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1));
}

static uint32_t location(PyObject *code, const struct code_info *ci, int key);

uint32_t code_location_at(PyObject *code, const struct code_info *ci, int offset) {
    return location(code, ci, offset < 0 ? -1 : offset);
}

uint32_t code_location_id(PyObject *code, const struct code_info *ci, int line) {
    return location(code, ci, -(line < 0 ? 0 : line) - 1);
}

static int line_of_key(PyObject *code, int key) {
    return key < 0 ? -key - 1 : pyframes_line(code, key);
}

static uint32_t location(PyObject *code, const struct code_info *ci, int key) {
    int line = key; /* the slot's key; the line itself only on a miss */
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (codes_used * 2 >= codes_cap) return make_location(ci, line_of_key(code, key)); /* code not held */
    if (locs_used * 2 >= locs_cap && locs_cap < CACHE_MAX) {
        uint32_t ncap = locs_cap ? locs_cap * 2 : 1024;
        struct loc_slot *n = PyMem_Calloc(ncap, sizeof *n);
        if (n) {
            for (uint32_t i = 0; i < locs_cap; i++) {
                if (!locs[i].code) continue;
                uint32_t j = hash_ptr(locs[i].code, (uint32_t)locs[i].line) & (ncap - 1);
                while (n[j].code) j = (j + 1) & (ncap - 1);
                n[j] = locs[i];
            }
            PyMem_Free(locs);
            locs = n;
            locs_cap = ncap;
        }
    }
    if (!locs || locs_used * 2 >= locs_cap) return make_location(ci, line_of_key(code, key));
    uint32_t mask = locs_cap - 1;
    uint32_t i = hash_ptr(code, (uint32_t)line) & mask;
    while (locs[i].code && !(locs[i].code == code && locs[i].line == line)) i = (i + 1) & mask;
    if (locs[i].code) {
        if (locs[i].generation != gen) {
            locs[i].id = make_location(ci, line_of_key(code, key));
            locs[i].generation = gen;
        }
        return locs[i].id;
    }
    /* Only cache locations of cached code objects (they own the reference). */
    locs[i].code = code;
    locs[i].line = line;
    locs[i].generation = gen;
    locs[i].id = make_location(ci, line_of_key(code, key));
    locs_used++;
    return locs[i].id;
}
