/* Implementation of py_remote.h. */
#include "writer/py_remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/u64map.h"
#include "common/util.h"

#define MAX_TEXT 4096
#define MAX_LINETABLE (1 << 20)
#define MAX_SOURCE (8 << 20)

struct code_entry {
    char *qualname, *file;
    uint8_t *linetable;
    size_t linetable_len;
    int firstlineno;
    uint64_t units; /* instructions, in 2-byte code units */
    uint64_t tag;   /* the identity tag of the object read (record.h: astrace_code_tag) */
    int readable;
};

struct source_file {
    char *text; /* NULL: could not be read */
    size_t len;
    size_t *line_starts; /* line_starts[i] = offset of line i+1 */
    size_t nlines;
};

struct py_remote {
    int pid;
    struct astrace_py_layout layout;
    struct u64map codes;   /* code address -> struct code_entry */
    struct u64map sources; /* hash of file name -> struct source_file */
    char cwd[4096];
    char scratch[64];
    char callee[128];
};

struct py_remote *py_remote_new(int pid, const struct astrace_py_layout *layout) {
    struct py_remote *r = xcalloc(1, sizeof *r);
    r->pid = pid;
    memcpy(&r->layout, layout, sizeof r->layout);
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/cwd", pid);
    ssize_t n = readlink(link, r->cwd, sizeof r->cwd - 1);
    r->cwd[n > 0 ? n : 0] = 0;
    return r;
}

static void free_code(void *v) {
    struct code_entry *c = v;
    free(c->qualname);
    free(c->file);
    free(c->linetable);
    free(c);
}

static void free_source(void *v) {
    struct source_file *f = v;
    free(f->text);
    free(f->line_starts);
    free(f);
}

void py_remote_free(struct py_remote *r) {
    if (!r) return;
    u64map_free(&r->codes, free_code);
    u64map_free(&r->sources, free_source);
    free(r);
}

/* ---- reading the process --------------------------------------------------- */

static int read_mem(struct py_remote *r, uint64_t addr, void *out, size_t len) {
    if (!addr) return -1;
    struct iovec local = {out, len}, remote = {(void *)(uintptr_t)addr, len};
    return process_vm_readv(r->pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

static int read_u64(struct py_remote *r, uint64_t addr, uint64_t *out) {
    return read_mem(r, addr, out, sizeof *out);
}

/* A str object as UTF-8 (compact strings only: code objects hold no other
 * kind). Returns a malloc'ed string or NULL. */
static char *read_str(struct py_remote *r, uint64_t obj) {
    const struct astrace_py_layout *l = &r->layout;
    uint64_t length;
    uint8_t state;
    if (read_u64(r, obj + l->str_length, &length) || read_mem(r, obj + l->str_state, &state, 1)) return NULL;
    int kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (!compact || length > MAX_TEXT || (kind != 1 && kind != 2 && kind != 4)) return NULL;
    uint8_t raw[MAX_TEXT * 4];
    if (read_mem(r, obj + (ascii ? l->str_ascii_data : l->str_compact_data), raw, length * (size_t)kind)) return NULL;
    if (ascii)
        for (uint64_t i = 0; i < length; i++)
            if (raw[i] >= 0x80 || raw[i] == 0) return NULL; /* not what an ASCII str holds: a stale object */
    char *out = xmalloc(length * 4 + 1), *o = out;
    for (uint64_t i = 0; i < length; i++) {
        uint32_t cp = kind == 1 ? raw[i] : kind == 2 ? (uint32_t)(raw[2 * i] | raw[2 * i + 1] << 8) : 0;
        if (kind == 4) memcpy(&cp, raw + 4 * i, 4);
        if (cp == 0 || (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff) { /* not text: a stale object */
            free(out);
            return NULL;
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xc0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 63));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | cp >> 12);
            *o++ = (char)(0x80 | ((cp >> 6) & 63));
            *o++ = (char)(0x80 | (cp & 63));
        } else {
            *o++ = (char)(0xf0 | cp >> 18);
            *o++ = (char)(0x80 | ((cp >> 12) & 63));
            *o++ = (char)(0x80 | ((cp >> 6) & 63));
            *o++ = (char)(0x80 | (cp & 63));
        }
    }
    *o = 0;
    return out;
}

/* The code object at `code` whose identity tag is `tag`: cached, or read
 * now. An entry for an earlier object at that address is replaced. */
static struct code_entry *code_entry(struct py_remote *r, uint64_t code, uint64_t tag) {
    struct code_entry *c = u64map_get(&r->codes, code);
    if (c && c->tag == tag) return c;
    if (c) free_code(c);
    c = xcalloc(1, sizeof *c);
    u64map_put(&r->codes, code, c);
    const struct astrace_py_layout *l = &r->layout;
    uint64_t type, filename, qualname, linetable, lt_len;
    int32_t firstlineno;
    if (read_u64(r, code + 8, &type) || type != l->code_type || read_u64(r, code + l->code_size_field, &c->units) ||
        read_u64(r, code + l->code_filename, &filename) || read_u64(r, code + l->code_qualname, &qualname) ||
        read_u64(r, code + l->code_linetable, &linetable) ||
        read_mem(r, code + l->code_firstlineno, &firstlineno, sizeof firstlineno))
        return c;
    c->tag = astrace_code_tag(qualname, firstlineno);
    if (c->tag != tag) return c; /* the sampled object is gone: another lives there now */
    c->qualname = read_str(r, qualname);
    c->file = read_str(r, filename);
    c->firstlineno = firstlineno;
    if (!read_u64(r, linetable + l->code_size_field, &lt_len) && lt_len <= MAX_LINETABLE) {
        c->linetable = xmalloc(lt_len ? lt_len : 1);
        if (read_mem(r, linetable + l->bytes_data, c->linetable, lt_len) == 0) c->linetable_len = lt_len;
    }
    c->readable = c->qualname && c->file;
    return c;
}

/* ---- location table (Objects/locations.md in CPython 3.11+) --------------- */

static uint64_t lt_varint(const uint8_t *t, size_t len, size_t *i) {
    uint64_t v = 0;
    int shift = 0;
    while (*i < len && shift < 60) {
        uint8_t b = t[(*i)++];
        v |= (uint64_t)(b & 63) << shift;
        shift += 6;
        if (!(b & 64)) break;
    }
    return v;
}

static int64_t lt_svarint(const uint8_t *t, size_t len, size_t *i) {
    uint64_t v = lt_varint(t, len, i);
    return (v & 1) ? -(int64_t)(v >> 1) : (int64_t)(v >> 1);
}

/* Any varint this large means the table is not a location table (a stale
 * object read after it was freed): lines and columns stay far below it. */
#define LT_MAX_VALUE (1 << 24)

int py_linetable_find(const uint8_t *t, size_t len, int firstlineno, uint32_t unit, int *line, int *end_line, int *col,
                      int *end_col) {
    uint64_t addr = 0;
    int64_t computed = firstlineno;
    size_t i = 0;
    while (i < len) {
        uint8_t first = t[i++];
        if (!(first & 0x80)) return -1; /* not an entry start: corrupt */
        int code = (first >> 3) & 15;
        uint64_t length = (uint64_t)(first & 7) + 1;
        int64_t l = -1, el = -1, c = -1, ec = -1;
        if (code == 15) {        /* no location */
        } else if (code == 14) { /* long form */
            int64_t delta = lt_svarint(t, len, &i);
            uint64_t dl = lt_varint(t, len, &i), c1 = lt_varint(t, len, &i), ec1 = lt_varint(t, len, &i);
            if (delta > LT_MAX_VALUE || delta < -LT_MAX_VALUE || dl > LT_MAX_VALUE || c1 > LT_MAX_VALUE ||
                ec1 > LT_MAX_VALUE)
                return -1;
            computed += delta;
            l = computed;
            el = l + (int64_t)dl;
            c = (int64_t)c1 - 1;
            ec = (int64_t)ec1 - 1;
        } else if (code == 13) { /* no columns */
            int64_t delta = lt_svarint(t, len, &i);
            if (delta > LT_MAX_VALUE || delta < -LT_MAX_VALUE) return -1;
            computed += delta;
            l = el = computed;
        } else if (code >= 10) { /* one line: delta 0, 1 or 2, then columns */
            computed += code - 10;
            l = el = computed;
            if (i + 2 > len) return -1;
            c = t[i];
            ec = t[i + 1];
            i += 2;
        } else { /* short form: same line, one byte of columns */
            l = el = computed;
            if (i + 1 > len) return -1;
            c = code * 8 + ((t[i] >> 4) & 7);
            ec = c + (t[i] & 15);
            i++;
        }
        if (computed > LT_MAX_VALUE * 16LL || computed < -LT_MAX_VALUE * 16LL) return -1;
        if (unit >= addr && unit < addr + length) {
            *line = (int)l;
            *end_line = (int)el;
            *col = (int)c;
            *end_col = (int)ec;
            return 0;
        }
        addr += length;
    }
    return -1;
}

/* ---- the called expression ------------------------------------------------ */

int py_callee_from_source(const char *text, int col, int end_col, char *out, size_t cap) {
    size_t n = strlen(text);
    if (col < 0 || (size_t)col >= n) return -1;
    size_t end = end_col < 0 || (size_t)end_col > n ? n : (size_t)end_col;
    if (end <= (size_t)col) return -1;
    const char *s = text + col;
    size_t len = end - (size_t)col;
    /* The callee ends at the '(' that opens the outermost argument list:
     * the one matching the final ')' when the call ends on this line, else
     * the last '(' at depth 0. */
    size_t open = len;
    if (s[len - 1] == ')') {
        int depth = 0;
        for (size_t k = len; k-- > 0;) {
            if (s[k] == ')' || s[k] == ']') depth++;
            if (s[k] == '(' || s[k] == '[') depth--;
            if (depth == 0) {
                open = k;
                break;
            }
        }
        if (open == len || s[open] != '(') return -1;
    } else {
        int depth = 0;
        for (size_t k = 0; k < len; k++) {
            if (s[k] == '(' && depth == 0) open = k;
            if (s[k] == '(' || s[k] == '[') depth++;
            if (s[k] == ')' || s[k] == ']') depth--;
        }
        if (open == len) return -1;
    }
    size_t o = 0;
    for (size_t k = 0; k < open && o + 4 < cap; k++) {
        char ch = s[k];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') continue;
        out[o++] = ch;
    }
    if (o == 0) return -1;
    if (o + 4 >= cap) memcpy(out + o - 3, "...", 3);
    out[o] = 0;
    return 0;
}

static struct source_file *source_of(struct py_remote *r, const char *file) {
    uint64_t h = hash_bytes(file, strlen(file));
    struct source_file *f = u64map_get(&r->sources, h);
    if (f) return f;
    f = xcalloc(1, sizeof *f);
    u64map_put(&r->sources, h, f);
    if (file[0] == '<') return f; /* <string>, <stdin>: no file */
    char path[8192];
    if (file[0] != '/' && r->cwd[0])
        snprintf(path, sizeof path, "%s/%s", r->cwd, file);
    else
        snprintf(path, sizeof path, "%s", file);
    FILE *in = fopen(path, "rb");
    if (!in) return f;
    struct buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, in)) > 0 && b.len < MAX_SOURCE) buf_append(&b, chunk, got);
    fclose(in);
    buf_append(&b, "", 1);
    f->text = (char *)b.data;
    f->len = b.len - 1;
    size_t cap = 256;
    f->line_starts = xmalloc(cap * sizeof *f->line_starts);
    f->line_starts[f->nlines++] = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->text[i] != '\n') continue;
        f->text[i] = 0;
        if (f->nlines == cap) f->line_starts = xrealloc(f->line_starts, (cap *= 2) * sizeof *f->line_starts);
        f->line_starts[f->nlines++] = i + 1;
    }
    return f;
}

static const char *callee_at(struct py_remote *r, struct code_entry *c, int line, int end_line, int col, int end_col) {
    if (line <= 0 || col < 0) return NULL;
    struct source_file *f = source_of(r, c->file);
    if (!f->text || (size_t)line > f->nlines) return NULL;
    const char *text = f->text + f->line_starts[line - 1];
    if (py_callee_from_source(text, col, end_line == line ? end_col : -1, r->callee, sizeof r->callee) != 0)
        return NULL;
    return r->callee;
}

/* ---- frames ------------------------------------------------------------------ */

int py_remote_describe(struct py_remote *r, uint64_t code_word, uint32_t offset, struct py_frame_desc *out) {
    uint64_t code = code_word & ASTRACE_CODE_ADDR_MASK;
    struct code_entry *c = code_entry(r, code, code_word >> 48);
    out->callee = NULL;
    if (!c->readable) {
        snprintf(r->scratch, sizeof r->scratch, "<code 0x%llx>", (unsigned long long)code);
        out->qualname = r->scratch;
        out->file = "";
        out->line = 0;
        return -1;
    }
    out->qualname = c->qualname;
    out->file = c->file;
    out->line = 0;
    if (offset == UINT32_MAX || offset / 2 >= c->units) return 0;
    int line, end_line, col, end_col;
    if (py_linetable_find(c->linetable, c->linetable_len, c->firstlineno, offset / 2, &line, &end_line, &col,
                          &end_col) != 0)
        return 0;
    out->line = line > 0 ? line : 0;
    uint8_t op;
    const struct astrace_py_layout *l = &r->layout;
    if (read_mem(r, code + l->code_instructions + offset, &op, 1) == 0 && (l->call_ops[op >> 3] >> (op & 7)) & 1)
        out->callee = callee_at(r, c, line, end_line, col, end_col);
    return 0;
}
