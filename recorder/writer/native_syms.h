/* Names for the native frames of stack samples (astrace record --native).
 *
 * A native frame is an address in the traced process. Here it becomes a
 * mapping (the file mapped there, from /proc/PID/maps, read again when an
 * address falls outside every known mapping) and a function: the ELF symbol
 * (.symtab if the file has one, else .dynsym) that contains it. Files are
 * read from disk once per path and kept.
 */
#ifndef ASTRACE_NATIVE_SYMS_H
#define ASTRACE_NATIVE_SYMS_H

#include <stdint.h>

struct native_syms;

struct native_loc {
    const char *path;   /* mapped file, or "[anon]" */
    uint64_t map_start; /* the mapping's address range and file offset */
    uint64_t map_end;
    uint64_t map_offset;
    const char *function; /* symbol name, NULL if none covers the address */
    uint64_t rel_pc;      /* the function's start (or the address) relative to the mapping, as a file offset */
};

struct native_syms *native_syms_new(int pid);
void native_syms_free(struct native_syms *ns);
/* Describes address pc. Returns 0, or -1 when no mapping holds it. */
int native_syms_lookup(struct native_syms *ns, uint64_t pc, struct native_loc *out);

#endif
