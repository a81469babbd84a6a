/* Facts about code objects the task hooks need on every suspended step,
 * computed once per code object and cached: its qualified name, whether it
 * is user code or asyncio/standard library, and how an await inside it
 * reads ("await asyncio.sleep()"). Also "file:line" location strings. */
#ifndef ASTRACE_CODE_INFO_H
#define ASTRACE_CODE_INFO_H

#include "pyhead.h"

#include <stdint.h>

struct code_info {
    uint32_t qualname;     /* string id: "fetch_page", "Event.wait" */
    uint32_t await_label;  /* string id: "await asyncio.sleep()" (stdlib code only) */
    uint8_t is_user;       /* not asyncio and not the standard library */
    uint8_t is_dunder;     /* __aenter__ and friends: look one level deeper for the label */
    uint8_t is_private;    /* _aexit and friends: never the label under a dunder */
    Py_ssize_t code_bytes; /* len(co_code): bounds for instruction offsets */
    char qualname_text[96];
    char basename[64];
};

int code_info_init(PyObject *stdlib_prefixes);
/* Borrowed pointer into the cache, valid until the next call; NULL on error. */
const struct code_info *code_info_get(PyObject *code);
/* True if ci is kept in the cache, which then holds its code object, so
 * that the code object's address names it for as long as the process runs. */
int code_info_is_cached(const struct code_info *ci);
/* String id of "basename:line" for the instruction at byte `offset` of code
 * (the line is only looked up the first time), or for a known line. */
uint32_t code_location_at(PyObject *code, const struct code_info *ci, int offset);
uint32_t code_location_id(PyObject *code, const struct code_info *ci, int line);

#endif
