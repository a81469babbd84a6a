/* Implementation of native_syms.h: /proc/PID/maps and ELF symbol tables. */
#include "writer/native_syms.h"

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

struct symbol {
    uint64_t start, end; /* virtual addresses as the ELF file has them */
    const char *name;    /* in the file's string table copy */
};

struct elf_file {
    char *path;
    int loaded;
    struct symbol *syms; /* sorted by start */
    size_t nsyms;
    char *strings;     /* copies of the symbol string tables */
    Elf64_Phdr *loads; /* PT_LOAD headers: file offset -> virtual address */
    size_t nloads;
};

struct mapping {
    uint64_t start, end, offset;
    struct elf_file *file; /* NULL: anonymous or not a file */
};

struct native_syms {
    int pid;
    struct mapping *maps;
    size_t nmaps;
    struct elf_file **files;
    size_t nfiles;
    uint64_t last_reload_ns;
};

struct native_syms *native_syms_new(int pid) {
    struct native_syms *ns = xcalloc(1, sizeof *ns);
    ns->pid = pid;
    return ns;
}

void native_syms_free(struct native_syms *ns) {
    if (!ns) return;
    for (size_t i = 0; i < ns->nfiles; i++) {
        free(ns->files[i]->path);
        free(ns->files[i]->syms);
        free(ns->files[i]->strings);
        free(ns->files[i]->loads);
        free(ns->files[i]);
    }
    free(ns->files);
    free(ns->maps);
    free(ns);
}

static int cmp_symbol(const void *a, const void *b) {
    const struct symbol *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Reads the function symbols and load segments of an ELF file. */
static void load_elf(struct elf_file *f) {
    f->loaded = 1;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return;
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > size ||
        eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size)
        goto out;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(m + eh->e_phoff);
    f->loads = xcalloc(eh->e_phnum ? eh->e_phnum : 1, sizeof *f->loads);
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) f->loads[f->nloads++] = ph[i];
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(m + eh->e_shoff);
    /* .symtab when present (unstripped), else .dynsym. */
    int want = SHT_SYMTAB;
    for (int pass = 0; pass < 2 && !f->nsyms; pass++, want = SHT_DYNSYM) {
        for (int i = 0; i < eh->e_shnum; i++) {
            if (sh[i].sh_type != (Elf64_Word)want || sh[i].sh_link >= eh->e_shnum) continue;
            const Elf64_Shdr *strsh = &sh[sh[i].sh_link];
            if (sh[i].sh_offset + sh[i].sh_size > size || strsh->sh_offset + strsh->sh_size > size) continue;
            size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
            const Elf64_Sym *syms = (const Elf64_Sym *)(m + sh[i].sh_offset);
            f->strings = xmalloc(strsh->sh_size + 1);
            memcpy(f->strings, m + strsh->sh_offset, strsh->sh_size);
            f->strings[strsh->sh_size] = 0;
            f->syms = xcalloc(n ? n : 1, sizeof *f->syms);
            for (size_t k = 0; k < n; k++) {
                if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || !syms[k].st_value || !syms[k].st_size ||
                    syms[k].st_name >= strsh->sh_size)
                    continue;
                f->syms[f->nsyms++] =
                    (struct symbol){syms[k].st_value, syms[k].st_value + syms[k].st_size, f->strings + syms[k].st_name};
            }
            break;
        }
        if (!f->nsyms) {
            free(f->syms);
            free(f->strings);
            f->syms = NULL;
            f->strings = NULL;
        }
    }
    qsort(f->syms, f->nsyms, sizeof *f->syms, cmp_symbol);
out:
    munmap((void *)m, size);
}

static struct elf_file *file_for(struct native_syms *ns, const char *path) {
    for (size_t i = 0; i < ns->nfiles; i++)
        if (!strcmp(ns->files[i]->path, path)) return ns->files[i];
    ns->files = xrealloc(ns->files, (ns->nfiles + 1) * sizeof *ns->files);
    struct elf_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    ns->files[ns->nfiles++] = f;
    return f;
}

static void read_maps(struct native_syms *ns) {
    char path[64], line[4608];
    snprintf(path, sizeof path, "/proc/%d/maps", ns->pid);
    FILE *in = fopen(path, "r");
    if (!in) return;
    size_t cap = 0;
    free(ns->maps);
    ns->maps = NULL;
    ns->nmaps = 0;
    while (fgets(line, sizeof line, in)) {
        unsigned long long start, end, offset;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &offset, &name_at) < 4) continue;
        if (perms[2] != 'x') continue; /* code only */
        char *name = line + name_at;
        name[strcspn(name, "\n")] = 0;
        if (ns->nmaps == cap) ns->maps = xrealloc(ns->maps, (cap = cap ? cap * 2 : 64) * sizeof *ns->maps);
        struct mapping *mp = &ns->maps[ns->nmaps++];
        mp->start = start;
        mp->end = end;
        mp->offset = offset;
        mp->file = name[0] == '/' && !strstr(name, " (deleted)") ? file_for(ns, name) : NULL;
    }
    fclose(in);
}

static struct mapping *mapping_of(struct native_syms *ns, uint64_t pc) {
    for (size_t i = 0; i < ns->nmaps; i++)
        if (pc >= ns->maps[i].start && pc < ns->maps[i].end) return &ns->maps[i];
    return NULL;
}

int native_syms_lookup(struct native_syms *ns, uint64_t pc, struct native_loc *out) {
    struct mapping *mp = mapping_of(ns, pc);
    if (!mp) {
        /* A library loaded since the last read: read the maps again (at most
         * every 100 ms, so a stray address costs little). */
        uint64_t now = now_monotonic_ns();
        if (now - ns->last_reload_ns > 100000000ull || !ns->nmaps) {
            ns->last_reload_ns = now;
            read_maps(ns);
            mp = mapping_of(ns, pc);
        }
        if (!mp) return -1;
    }
    out->path = mp->file ? mp->file->path : "[anon]";
    out->map_start = mp->start;
    out->map_end = mp->end;
    out->map_offset = mp->offset;
    out->function = NULL;
    uint64_t file_off = pc - mp->start + mp->offset;
    out->rel_pc = file_off;
    struct elf_file *f = mp->file;
    if (!f) return 0;
    if (!f->loaded) load_elf(f);
    uint64_t vaddr = 0;
    int found = 0;
    for (size_t i = 0; i < f->nloads; i++)
        if (file_off >= f->loads[i].p_offset && file_off < f->loads[i].p_offset + f->loads[i].p_filesz) {
            vaddr = file_off - f->loads[i].p_offset + f->loads[i].p_vaddr;
            found = 1;
            break;
        }
    if (!found || !f->nsyms) return 0;
    size_t lo = 0, hi = f->nsyms;
    while (lo < hi) { /* last symbol starting at or before vaddr */
        size_t mid = (lo + hi) / 2;
        if (f->syms[mid].start <= vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return 0;
    const struct symbol *s = &f->syms[lo - 1];
    if (vaddr >= s->end) return 0;
    out->function = s->name;
    out->rel_pc = file_off - (vaddr - s->start);
    return 0;
}
