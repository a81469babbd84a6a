/* Coroutine lifecycle: what the runtime records about asyncio tasks.
 *
 *   create_task hook  -> TASK_CREATE (name, coroutine, creating user code line,
 *                        the task whose step created it)
 *   step begins       -> CALLBACK_BEGIN carries the task (hooks_loop.c); a task
 *                        never seen before (made by asyncio.Task() directly, or
 *                        before the hooks) gets a TASK_CREATE marked discovered
 *   step ends         -> TASK_STEP_END: done (result / exception / cancelled) or
 *                        what the task now awaits and at which user-code line
 *
 * A task is identified by its address while alive. The runtime keeps the set
 * of addresses it has reported and forgets one when its task finishes.
 *
 * What a suspended task awaits is read from its coroutine's await chain
 * (cr_await / gi_yieldfrom): the innermost user-code frame gives the line,
 * the first asyncio/stdlib coroutine under it names the await
 * ("await Event.wait()"); when the user code awaits a future directly, the
 * task's _fut_waiter does (another task, a gather, a Future). Only attributes
 * without side effects are read (_state, _exception, _fut_waiter), so the
 * program behaves exactly as untraced (e.g. "exception was never retrieved"
 * warnings still appear).
 */
#include "pyhead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "code_info.h"
#include "fast_attr.h"
#include "pyframes.h"
#include "emit.h"

/* Exported by every CPython since 3.9, outside the limited API's headers. */
PyAPI_FUNC(PyFrameObject *) PyFrame_GetBack(PyFrameObject *frame);

static PyObject *task_types; /* tuple, holding the classes below */
#define TASK_CLASSES_MAX 4
static PyTypeObject *task_classes[TASK_CLASSES_MAX]; /* the types in task_types, for rt_is_task */
static int ntask_classes;
static int python_minor; /* 11 for 3.11 ... */
static PyObject *getattr_or_null(PyObject *o, PyObject *name);
static PyObject *s_qualname, *s_pending, *s_cancelled, *s_finished;
/* Attributes and methods read per step (fast_attr.h). */
static struct rt_attr a_self = RT_ATTR("__self__"), a_state = RT_ATTR("_state"), a_exception = RT_ATTR("_exception"),
                      a_fut_waiter = RT_ATTR("_fut_waiter"), a_cr_await = RT_ATTR("cr_await"),
                      a_gi_yieldfrom = RT_ATTR("gi_yieldfrom"), a_cr_code = RT_ATTR("cr_code"),
                      a_gi_code = RT_ATTR("gi_code"), a_cr_frame = RT_ATTR("cr_frame"),
                      a_gi_frame = RT_ATTR("gi_frame"), a_cr_suspended = RT_ATTR("cr_suspended"),
                      a_children = RT_ATTR("_children"), a_coro = RT_ATTR("_coro"),
                      m_get_name = RT_ATTR("get_name");
static PyTypeObject *coroutine_type, *generator_type, *gathering_type;

/* ---- reported tasks: address -> the name object last reported ------------ */

struct known_task {
    uintptr_t addr;      /* 0 = empty */
    Py_hash_t name_hash; /* of the name last reported: no reference is held,
                            so the program's objects keep their refcounts */
    /* The task's coroutine as first seen, NULL if unknown: an identity tag.
     * A task destroyed while pending is never seen to finish, so its entry
     * stays, and a new task may come to live at its address: each step
     * compares this with the task's live _coro (rt_task_step_begin), and
     * only a coroutine so matched, in a step that holds the task, is read. */
    PyObject *coro;
    uint32_t steps; /* steps begun */
};
static struct known_task *known;
static uint32_t known_cap, known_used;

static uint32_t hash_addr(uintptr_t a) {
    return rt_hash(a);
}

static struct known_task *known_find(uintptr_t a) {
    if (!known) return NULL;
    uint32_t mask = known_cap - 1;
    for (uint32_t i = hash_addr(a) & mask; known[i].addr; i = (i + 1) & mask)
        if (known[i].addr == a) return &known[i];
    return NULL;
}

/* `created`: the task's creation (its coroutine, possibly NULL, is set and
 * its steps restart), else a rename. */
static void known_put(uintptr_t a, Py_hash_t name_hash, PyObject *coro, int created) {
    if (known_used * 2 >= known_cap) {
        uint32_t ncap = known_cap ? known_cap * 2 : 4096;
        struct known_task *n = PyMem_Calloc(ncap, sizeof *n);
        if (!n) return; /* the task stays unknown: it is reported again, as discovered */
        for (uint32_t i = 0; i < known_cap; i++) {
            if (!known[i].addr) continue;
            uint32_t j = hash_addr(known[i].addr) & (ncap - 1);
            while (n[j].addr) j = (j + 1) & (ncap - 1);
            n[j] = known[i];
        }
        PyMem_Free(known);
        known = n;
        known_cap = ncap;
    }
    uint32_t mask = known_cap - 1;
    uint32_t i = hash_addr(a) & mask;
    while (known[i].addr && known[i].addr != a) i = (i + 1) & mask;
    if (!known[i].addr) known_used++;
    if (known[i].addr != a || created) {
        known[i].coro = coro;
        known[i].steps = 0;
    }
    known[i].addr = a;
    known[i].name_hash = name_hash;
}

/* Linear-probing removal with backward shift, so lookups stay correct. */
static void known_remove(uintptr_t a) {
    struct known_task *k = known_find(a);
    if (!k) return;
    uint32_t mask = known_cap - 1;
    uint32_t i = (uint32_t)(k - known);
    known[i].addr = 0;
    known[i].coro = NULL;
    known_used--;
    for (uint32_t j = (i + 1) & mask; known[j].addr; j = (j + 1) & mask) {
        uint32_t home = hash_addr(known[j].addr) & mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            known[i] = known[j];
            known[j].addr = 0;
            known[j].coro = NULL;
            i = j;
        }
    }
}

/* After fork the child reports its tasks anew into its own segment. */
static uint32_t known_generation;
static void known_check_generation(void) {
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (gen == known_generation) return;
    known_generation = gen;
    if (known) memset(known, 0, known_cap * sizeof *known);
    known_used = 0;
}

/* ---- setup ------------------------------------------------------------------- */

static PyObject *intern(const char *s) {
    return PyUnicode_InternFromString(s);
}

int rt_tasks_init(void *types, void *prefixes, long hexversion, void *code_type) {
    pyframes_init(hexversion, code_type);
    if (!PyTuple_Check((PyObject *)types)) {
        PyErr_SetString(PyExc_TypeError, "task types must be a tuple");
        return -1;
    }
    Py_XDECREF(task_types);
    task_types = types;
    Py_INCREF(task_types);
    ntask_classes = 0;
    for (Py_ssize_t i = 0; i < PyTuple_Size(task_types) && ntask_classes < TASK_CLASSES_MAX; i++) {
        PyObject *t = PyTuple_GetItem(task_types, i);
        if (PyType_Check(t)) task_classes[ntask_classes++] = (PyTypeObject *)t;
    }
    if (code_info_init(prefixes) != 0) return -1;
    s_qualname = intern("__qualname__");
    python_minor = (int)((hexversion >> 16) & 0xff);
    s_pending = intern("PENDING");
    s_cancelled = intern("CANCELLED");
    s_finished = intern("FINISHED");
    PyObject *types_mod = PyImport_ImportModule("types");
    PyObject *tasks_mod = PyImport_ImportModule("asyncio.tasks");
    if (!types_mod || !tasks_mod) {
        Py_XDECREF(types_mod);
        Py_XDECREF(tasks_mod);
        return -1;
    }
    coroutine_type = (PyTypeObject *)PyObject_GetAttrString(types_mod, "CoroutineType");
    generator_type = (PyTypeObject *)PyObject_GetAttrString(types_mod, "GeneratorType");
    gathering_type = (PyTypeObject *)PyObject_GetAttrString(tasks_mod, "_GatheringFuture");
    if (!gathering_type) PyErr_Clear();
    Py_DECREF(types_mod);
    Py_DECREF(tasks_mod);
    return coroutine_type && generator_type ? 0 : -1;
}

int rt_is_task(void *obj) {
    PyTypeObject *tp = Py_TYPE((PyObject *)obj);
    /* The task classes themselves first, then subclasses. (Task classes are
     * plain classes, so a subtype check is isinstance() without its
     * __instancecheck__ lookup.) */
    for (int i = 0; i < ntask_classes; i++)
        if (tp == task_classes[i]) return 1;
    for (int i = 0; i < ntask_classes; i++)
        if (PyType_IsSubtype(tp, task_classes[i])) return 1;
    return 0;
}

/* ---- interned texts that are not code-object facts ----------------------------- */

/* Fixed strings ("await task") by their literal's address. */
static uint32_t rt_static_string(const char *text) {
    static struct {
        const char *text;
        uint32_t id, generation;
    } cache[16];
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    for (int i = 0; i < 16; i++) {
        if (cache[i].text == text && cache[i].generation == gen) return cache[i].id;
        if (!cache[i].text || cache[i].text == text) {
            cache[i].text = text;
            cache[i].generation = gen;
            cache[i].id = rt_string_add(text, strlen(text));
            return cache[i].id;
        }
    }
    return rt_string_add(text, strlen(text));
}

/* Await chains by a hash of their (code, line) pairs; direct-mapped, so a
 * collision just rebuilds the text. */
#define CHAINS_MAX (1u << 16)
static struct chain_slot {
    uint64_t hash;
    uint32_t id, generation;
} * chains;

struct chain_level;
static uint32_t chain_text_id(uint64_t hash, const struct chain_level *levels, int n);

static uint32_t rt_chain_lookup(uint64_t hash, const struct chain_level *levels, int n) {
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (!chains) chains = PyMem_Calloc(CHAINS_MAX, sizeof *chains);
    if (!hash) hash = 1;
    struct chain_slot *slot = chains ? &chains[hash_addr((uintptr_t)hash) & (CHAINS_MAX - 1)] : NULL;
    if (slot && slot->hash == hash && slot->generation == gen) return slot->id;
    uint32_t id = chain_text_id(hash, levels, n);
    if (slot) {
        slot->hash = hash;
        slot->generation = gen;
        slot->id = id;
    }
    return id;
}

/* "await Future", or the future's own type for subclasses. */
static uint32_t rt_type_await_label(PyTypeObject *type) {
    static PyTypeObject *last_type;
    static uint32_t last_id, last_gen;
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    if (type == last_type && gen == last_gen) return last_id;
    char text[160];
    PyObject *q = getattr_or_null((PyObject *)type, s_qualname);
    Py_ssize_t ql = 0;
    const char *qs = q && PyUnicode_Check(q) ? PyUnicode_AsUTF8AndSize(q, &ql) : NULL;
    if (!qs) PyErr_Clear();
    int n = snprintf(text, sizeof text, "await %s", qs ? qs : "Future");
    Py_XDECREF(q);
    last_type = type;
    last_gen = gen;
    last_id = rt_string_add(text, (size_t)(n < (int)sizeof text ? n : (int)sizeof text - 1));
    return last_id;
}

/* "ValueError: bad value" */
static size_t rt_describe_exception(PyObject *exc, char *out, size_t cap) {
    PyObject *q = getattr_or_null((PyObject *)Py_TYPE(exc), s_qualname);
    PyObject *msg = PyObject_Str(exc);
    if (!msg) PyErr_Clear();
    Py_ssize_t ql = 0, ml = 0;
    const char *qs = q && PyUnicode_Check(q) ? PyUnicode_AsUTF8AndSize(q, &ql) : NULL;
    const char *ms = msg ? PyUnicode_AsUTF8AndSize(msg, &ml) : NULL;
    if (!qs || !ms) PyErr_Clear();
    int n = snprintf(out, cap, "%s%s%s", qs ? qs : "Exception", ms && ml ? ": " : "", ms && ml ? ms : "");
    Py_XDECREF(q);
    Py_XDECREF(msg);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- records ----------------------------------------------------------------- */

/* Writes a fixed struct followed by inline text, padded to 8 bytes. */
static void write_var(void *fixed, size_t fixed_len, const char *text, size_t text_len) {
    uint32_t len = (uint32_t)((fixed_len + text_len + 7) & ~7u);
    uint64_t next;
    uint8_t *at = astrace_ring_reserve(&rt_tls.ring, len, &next);
    if (!at) return;
    memcpy(at, fixed, fixed_len);
    /* The size goes into the copy: set in `fixed` just before, it would stall
     * the copy's wide loads (a load cannot take a narrower store's data). */
    ((struct astrace_rec_hdr *)at)->size = (uint16_t)len;
    memcpy(at + fixed_len, text, text_len);
    memset(at + fixed_len + text_len, 0, len - fixed_len - text_len);
    astrace_ring_commit(&rt_tls.ring, next);
}

enum future_state { FUT_UNKNOWN, FUT_PENDING, FUT_CANCELLED, FUT_FINISHED };

/* A future's _state. asyncio's futures hold the interned state names, so
 * identity decides; anything else is compared by value. */
static enum future_state future_state(PyObject *state) {
    if (state == s_pending) return FUT_PENDING;
    if (state == s_finished) return FUT_FINISHED;
    if (state == s_cancelled) return FUT_CANCELLED;
    if (!state || !PyUnicode_Check(state)) return FUT_UNKNOWN;
    enum future_state r = PyUnicode_Compare(state, s_pending) == 0     ? FUT_PENDING
                          : PyUnicode_Compare(state, s_finished) == 0  ? FUT_FINISHED
                          : PyUnicode_Compare(state, s_cancelled) == 0 ? FUT_CANCELLED
                                                                       : FUT_UNKNOWN;
    if (PyErr_Occurred()) PyErr_Clear();
    return r;
}

static PyObject *getattr_or_null(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) PyErr_Clear();
    return v;
}

static PyObject *code_of(PyObject *awaitable) {
    int coro = PyObject_TypeCheck(awaitable, coroutine_type);
    if (coro || PyObject_TypeCheck(awaitable, generator_type)) {
        PyObject *code = pyframes_coro_code(awaitable); /* without an attribute lookup */
        if (code) {
            Py_INCREF(code);
            return code;
        }
    }
    if (coro) return rt_attr_get(&a_cr_code, awaitable);
    if (PyObject_TypeCheck(awaitable, generator_type)) return rt_attr_get(&a_gi_code, awaitable);
    return NULL;
}

static int visit_for_location(PyObject *code, int offset, void *arg) {
    const struct code_info *ci = code_info_get(code);
    if (!ci || !ci->is_user) return 0;
    *(uint32_t *)arg = code_location_at(code, ci, offset);
    return 1;
}

/* The innermost user-code frame of the calling Python code. */
static uint32_t caller_location(void) {
    uint32_t id = 0;
    if (pyframes_walk_current(visit_for_location, &id) >= 0) return id;
    /* Unknown layout: the public way, which creates frame objects. */
    PyFrameObject *f = PyEval_GetFrame();
    if (!f) return 0;
    Py_INCREF((PyObject *)f);
    for (int depth = 0; f && depth < 64; depth++) {
        PyObject *code = (PyObject *)PyFrame_GetCode(f);
        const struct code_info *ci = code ? code_info_get(code) : NULL;
        if (ci && ci->is_user) {
            id = code_location_id(code, ci, PyFrame_GetLineNumber(f));
            Py_DECREF(code);
            Py_DECREF((PyObject *)f);
            return id;
        }
        Py_XDECREF(code);
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF((PyObject *)f);
        f = back;
    }
    Py_XDECREF((PyObject *)f);
    return 0;
}

/* Fills the name part of a create/rename record: "Task-N" travels as N. */
static const char *set_name_fields(struct astrace_rec_task_create *rec, PyObject *pyname, Py_ssize_t *name_len) {
    const char *name = NULL;
    *name_len = 0;
    if (pyname && PyUnicode_Check(pyname)) name = PyUnicode_AsUTF8AndSize(pyname, name_len);
    if (!name) {
        PyErr_Clear();
        name = "";
        *name_len = 0;
    }
    rec->default_number = -1;
    if (*name_len > 5 && *name_len < 24 && !memcmp(name, "Task-", 5) && (name[5] != '0' || *name_len == 6)) {
        int64_t n = 0;
        Py_ssize_t i = 5;
        while (i < *name_len && name[i] >= '0' && name[i] <= '9') n = n * 10 + (name[i++] - '0');
        if (i == *name_len) rec->default_number = n;
    }
    if (rec->default_number >= 0) *name_len = 0;
    if (*name_len > 200) *name_len = 200;
    rec->name_len = (uint16_t)*name_len;
    return name;
}

/* True while the task has not finished. */
static int task_pending(PyObject *task) {
    PyObject *state = rt_attr_get(&a_state, task);
    int pending = future_state(state) == FUT_PENDING;
    if (PyErr_Occurred()) PyErr_Clear();
    Py_XDECREF(state);
    return pending;
}

/* The task's coroutine (new reference), or NULL. Read as _coro, which
 * every task type has (a C getter, or the Python task's attribute): unlike
 * Task.get_coro(), it is safe on a finished eager task of CPython
 * 3.12.0/3.12.1 (None there). */
static PyObject *task_coro(PyObject *task) {
    PyObject *coro = rt_attr_get(&a_coro, task);
    if (coro == Py_None) Py_CLEAR(coro);
    return coro;
}

/* A task name's hash (a str caches its own), 0 if it has none. */
static Py_hash_t name_hash(PyObject *name) {
    Py_hash_t h = name ? PyObject_Hash(name) : 0;
    if (h == -1) {
        PyErr_Clear();
        h = 0;
    }
    return h;
}

/* `k` (found by the task's address) if it is this very task, NULL if it
 * belongs to another task that lived at that address and was destroyed
 * while pending (never seen to finish). */
static struct known_task *known_same_task(PyObject *task, struct known_task *k) {
    if (!k) return NULL;
    PyObject *coro = task_coro(task);
    Py_XDECREF(coro);
    return coro == k->coro ? k : NULL;
}

/* `coro`: the coroutine given to create_task, or NULL to ask the task. */
static void emit_create_at(PyObject *task, PyObject *coro, uint32_t location, uint16_t flags, uint64_t ts) {
    struct astrace_rec_task_create rec;
    memset(&rec, 0, sizeof rec);
    rec.h.type = ASTRACE_REC_TASK_CREATE;
    rec.h.ts = ts;
    rec.task = (uint64_t)(uintptr_t)task;
    rec.parent = flags & ASTRACE_TASK_DISCOVERED ? 0 : (uint64_t)(uintptr_t)rt_tls.current_task;
    rec.location = location;
    rec.flags = flags;
    /* Coroutine qualname: of the coroutine given to create_task if any (a
     * finished eager task no longer holds it), else the task's. The task's
     * own is its identity tag (known_same_task). */
    PyObject *tag = task_coro(task);
    if (!coro) coro = tag;
    Py_XINCREF(coro);
    PyObject *code = coro ? code_of(coro) : NULL;
    if (code) {
        const struct code_info *ci = code_info_get(code);
        if (ci) rec.h.str0 = ci->qualname;
        Py_DECREF(code);
    }
    PyObject *pyname = rt_method_call0(&m_get_name, task);
    Py_ssize_t name_len;
    const char *name = set_name_fields(&rec, pyname, &name_len);
    write_var(&rec, sizeof rec, name, (size_t)name_len);
    known_put((uintptr_t)task, name_hash(pyname), tag, 1);
    Py_XDECREF(pyname);
    Py_XDECREF(coro);
    Py_XDECREF(tag);
}

static void emit_create(PyObject *task, uint32_t location, int discovered) {
    emit_create_at(task, NULL, location, discovered ? ASTRACE_TASK_DISCOVERED : 0, rt_now());
}

/* A name set after creation (asyncio.create_task(name=...) in 3.11 does
 * that, and so does Task.set_name) is reported at the task's next step. */
static void check_rename(PyObject *task, struct known_task *k) {
    PyObject *pyname = rt_method_call0(&m_get_name, task);
    if (!pyname) {
        PyErr_Clear();
        return;
    }
    Py_hash_t hash = name_hash(pyname);
    if (hash != k->name_hash) {
        struct astrace_rec_task_create rec;
        memset(&rec, 0, sizeof rec);
        rec.h.type = ASTRACE_REC_TASK_RENAME;
        rec.h.ts = rt_now();
        rec.task = (uint64_t)(uintptr_t)task;
        Py_ssize_t name_len;
        const char *name = set_name_fields(&rec, pyname, &name_len);
        write_var(&rec, sizeof rec, name, (size_t)name_len);
        known_put((uintptr_t)task, hash, NULL, 0);
    }
    Py_DECREF(pyname);
}

/* True if an eager task (3.12+ eager_task_factory) already ran its first
 * step inside create_task. */
static int ran_eagerly(PyObject *task, PyObject *coro) {
    if (python_minor < 12) return 0;
    if (!task_pending(task)) return 1;
    PyObject *suspended = coro ? rt_attr_get(&a_cr_suspended, coro) : NULL;
    int started = suspended == Py_True;
    Py_XDECREF(suspended);
    return started;
}

void rt_task_created(void *task, void *coro_arg, uint64_t call_start) {
    PyObject *coro = coro_arg;
    if (!task || !rt_ready() || !rt_is_task(task)) return;
    known_check_generation();
    if (ran_eagerly(task, coro)) {
        /* Its first step ran inside create_task: report it as created at the
         * call and running since, then the step's end like any other. */
        emit_create_at(task, coro, caller_location(), ASTRACE_TASK_EAGER, call_start);
        Py_INCREF((PyObject *)task);
        rt_task_step_end(task, rt_tls.current_task, 0);
        return;
    }
    emit_create_at(task, coro, caller_location(), 0, rt_now());
}

void *rt_task_step_begin(void *callback) {
    PyObject *task = rt_attr_get(&a_self, callback);
    if (!task) return NULL;
    if (!rt_is_task(task)) {
        Py_DECREF(task);
        return NULL;
    }
    known_check_generation();
    struct known_task *k = known_find((uintptr_t)task);
    k = known_same_task(task, k);
    if (!k) {
        emit_create(task, 0, 1);
        k = known_find((uintptr_t)task);
    } else if (k->steps == 0 || (k->steps & 15) == 0) {
        /* A name given after creation shows at the first step; a later
         * set_name within 16 steps, or at the task's end. */
        check_rename(task, k);
    }
    if (k) k->steps++;
    return task;
}

/* Where a suspended coroutine (or generator) is paused: its instruction
 * offset (>= 0), or -(line + 1) when only the slower public way could tell. */
static int suspended_at(PyObject *obj, PyObject *code, const struct code_info *ci) {
    int offset = pyframes_coro_offset(obj, code, ci->code_bytes);
    if (offset >= 0) return offset;
    PyObject *frame = rt_attr_get(PyObject_TypeCheck(obj, coroutine_type) ? &a_cr_frame : &a_gi_frame, obj);
    int line = frame && frame != Py_None ? PyFrame_GetLineNumber((PyFrameObject *)frame) : 0;
    Py_XDECREF(frame);
    return -(line < 0 ? 0 : line) - 1;
}

struct chain_level {
    PyObject *code; /* borrowed, alive in the code_info cache */
    const struct code_info *ci;
    int at; /* suspended_at() for user code, 0 otherwise */
};

/* The await chain as text, outermost first: "main (app.py:9) -> fetch (app.py:3) -> sleep". */
static uint32_t chain_text_id(uint64_t hash, const struct chain_level *levels, int n) {
    char chain[512];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof chain - 1; i++) {
        const struct code_info *ci = levels[i].ci;
        int at = levels[i].at;
        int line = at >= 0 ? pyframes_line(levels[i].code, at) : -at - 1;
        int w = ci->is_user ? snprintf(chain + len, sizeof chain - len, "%s%s (%s:%d)", i ? " -> " : "",
                                       ci->qualname_text, ci->basename, line)
                            : snprintf(chain + len, sizeof chain - len, "%s%s", i ? " -> " : "", ci->qualname_text);
        if (w < 0) break;
        len = len + (size_t)w < sizeof chain ? len + (size_t)w : sizeof chain - 1;
    }
    (void)hash;
    return rt_string_add(chain, len);
}

/* An await chain's hash (FNV-1a over its levels' code objects and
 * offsets): chain_hash_add(CHAIN_HASH_START, ...) for the first level. */
#define CHAIN_HASH_START 1469598103934665603ULL
static uint64_t chain_hash_add(uint64_t hash, PyObject *code, int at) {
    hash = (hash ^ (uintptr_t)code) * 1099511628211ULL;
    return (hash ^ (uint64_t)(uint32_t)at) * 1099511628211ULL;
}

/* What an await chain reads as, by a hash of its levels' (code, offset)
 * pairs: direct-mapped, filled by describe_chain() the first time a chain is
 * seen. A chain's text, label and location follow from those pairs alone. */
#define CHAIN_MEMO_MAX (1u << 14)
static struct chain_memo {
    uint64_t hash;
    uint32_t generation;
    uint32_t chain, label, location;
} * chain_memo;

/* Walks the await chain the slow way: attribute reads, code facts, line
 * lookups. Sets what the chain reads as; returns 0 if any level's facts
 * came from outside the code_info cache (the memo must not keep them). */
static int describe_chain(PyObject *obj, uint32_t *chain, uint32_t *label_out, uint32_t *location_out) {
    uint32_t label = 0, user_location = 0;
    int label_is_dunder = 0, n = 0, cacheable = 1;
    struct chain_level levels[32];
    uint64_t hash = CHAIN_HASH_START;
    Py_XINCREF(obj);
    /* code_info pointers stay valid during the walk: nothing else runs. */
    while (obj && n < 32) {
        PyObject *code = code_of(obj);
        const struct code_info *ci = code ? code_info_get(code) : NULL;
        if (!ci) {
            Py_XDECREF(code);
            break;
        }
        cacheable &= code_info_is_cached(ci);
        int at = 0;
        if (ci->is_user) {
            at = suspended_at(obj, code, ci);
            user_location = at >= 0 ? code_location_at(code, ci, at) : code_location_id(code, ci, -at - 1);
            label = 0;
            label_is_dunder = 0;
        } else if ((!label || label_is_dunder) && !(label && (ci->is_dunder || ci->is_private))) {
            /* The first stdlib coroutine under the user code names the await,
             * looking through __aenter__-style wrappers to the public method
             * they call (Lock.__aenter__ -> Lock.acquire), not to a private
             * helper (3.14's TaskGroup.__aexit__ -> _aexit). */
            label = ci->await_label;
            label_is_dunder = ci->is_dunder;
        }
        hash = chain_hash_add(hash, code, at);
        levels[n].code = code;
        levels[n].ci = ci;
        levels[n].at = at;
        n++;
        Py_DECREF(code);
        PyObject *next = rt_attr_get(PyObject_TypeCheck(obj, coroutine_type) ? &a_cr_await : &a_gi_yieldfrom, obj);
        Py_DECREF(obj);
        obj = next;
        if (obj == Py_None) {
            Py_DECREF(obj);
            obj = NULL;
        }
    }
    Py_XDECREF(obj);
    *chain = n ? rt_chain_lookup(hash, levels, n) : 0;
    *label_out = label;
    *location_out = user_location;
    return cacheable;
}

/* The memo's key for the chain from `obj` down, read from the frames alone
 * (no attribute reads, no Python code run); 0 when some level cannot be
 * read that way. */
static uint64_t chain_key(PyObject *obj) {
    uint64_t hash = CHAIN_HASH_START;
    for (int n = 0; obj && n < 32; n++) {
        if (!PyObject_TypeCheck(obj, coroutine_type) && !PyObject_TypeCheck(obj, generator_type)) break;
        PyObject *code, *next;
        int offset;
        if (!pyframes_coro_suspended(obj, &code, &offset, &next)) return 0;
        hash = chain_hash_add(hash, code, offset);
        obj = next;
    }
    return hash ? hash : 1;
}

/* Fills rec with what a suspended task awaits. Where the frames can be read
 * directly (chain_key), a chain seen before costs one walk over them and one
 * memo lookup; otherwise (and the first time) describe_chain() works it out
 * from cached code facts, building a chain's text only once. */
static void describe_await(PyObject *task, struct astrace_rec_task_step_end *rec) {
    struct known_task *k = known_find((uintptr_t)task);
    /* k->coro was matched against the task's own at this step's start. */
    PyObject *obj = k && k->coro ? (Py_INCREF(k->coro), k->coro) : task_coro(task);
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_relaxed);
    uint64_t key = obj ? chain_key(obj) : 0;
    if (key && !chain_memo) chain_memo = PyMem_Calloc(CHAIN_MEMO_MAX, sizeof *chain_memo);
    struct chain_memo *memo = key && chain_memo ? &chain_memo[hash_addr((uintptr_t)key) & (CHAIN_MEMO_MAX - 1)] : NULL;
    uint32_t label;
    if (memo && memo->hash == key && memo->generation == gen) {
        rec->chain = memo->chain;
        rec->location = memo->location;
        label = memo->label;
    } else {
        int cacheable = describe_chain(obj, &rec->chain, &label, &rec->location);
        if (memo && cacheable) {
            memo->hash = key;
            memo->generation = gen;
            memo->chain = rec->chain;
            memo->label = label;
            memo->location = rec->location;
        }
    }
    Py_XDECREF(obj);
    if (label) {
        rec->h.str0 = label;
        return;
    }
    /* The user code awaits a future itself: what kind of future. */
    PyObject *waiter = rt_attr_get(&a_fut_waiter, task);
    if (!waiter || waiter == Py_None) {
        rec->h.str0 = rt_static_string("await (bare yield)");
    } else if (rt_is_task(waiter)) {
        rec->h.str0 = rt_static_string("await task");
        rec->target = (uint64_t)(uintptr_t)waiter;
        /* Make sure the awaited task is known by its current name (made with
         * asyncio.Task(), or named after create_task, and not run yet). */
        struct known_task *awaited = known_same_task(waiter, known_find((uintptr_t)waiter));
        if (!awaited)
            emit_create(waiter, 0, 1);
        else
            check_rename(waiter, awaited);
    } else if (gathering_type && PyObject_TypeCheck(waiter, gathering_type)) {
        rec->h.str0 = rt_static_string("await gather()");
        PyObject *children = rt_attr_get(&a_children, waiter);
        Py_ssize_t count = children ? PySequence_Size(children) : -1;
        if (count < 0) PyErr_Clear();
        rec->count = count > 0 ? (uint32_t)count : 0;
        Py_XDECREF(children);
    } else {
        rec->h.str0 = rt_type_await_label(Py_TYPE(waiter));
    }
    Py_XDECREF(waiter);
}

void rt_task_step_end(void *task_obj, void *previous_task, int callback_end) {
    PyObject *task = task_obj;
    uint64_t ts = rt_now(); /* the step's end, before describing it */
    rt_tls.current_task = previous_task;
    if (!rt_ready()) {
        Py_DECREF(task);
        return;
    }
    struct astrace_rec_task_step_end rec;
    memset(&rec, 0, sizeof rec);
    rec.h.type = ASTRACE_REC_TASK_STEP_END;
    rec.h.ts = ts;
    rec.task = (uint64_t)(uintptr_t)task;
    if (callback_end) rec.flags = ASTRACE_STEP_ENDS_CALLBACK | (callback_end == 2 ? ASTRACE_STEP_CALLBACK_RAISED : 0);
    char text[256];
    size_t text_len = 0;
    PyObject *state = rt_attr_get(&a_state, task);
    enum future_state fs = future_state(state);
    Py_XDECREF(state);
    if (fs == FUT_PENDING) {
        rec.outcome = ASTRACE_STEP_SUSPENDED;
        describe_await(task, &rec);
    } else {
        if (fs == FUT_CANCELLED) {
            rec.outcome = ASTRACE_STEP_CANCELLED;
        } else {
            PyObject *exc = rt_attr_get(&a_exception, task);
            if (exc && exc != Py_None) {
                rec.outcome = ASTRACE_STEP_EXCEPTION;
                text_len = rt_describe_exception(exc, text, sizeof text);
                rec.text_len = (uint16_t)text_len;
            } else {
                rec.outcome = ASTRACE_STEP_RESULT;
            }
            Py_XDECREF(exc);
        }
        struct known_task *done = known_find((uintptr_t)task);
        if (done && done->steps > 1) check_rename(task, done); /* a set_name since the last check */
        known_remove((uintptr_t)task);
    }
    if (PyErr_Occurred()) PyErr_Clear();
    write_var(&rec, sizeof rec, text, text_len);
    Py_DECREF(task);
}
