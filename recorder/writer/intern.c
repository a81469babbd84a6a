/* Interning by text for one packet sequence: event names and debug
 * annotation string values each get their own iid space (Perfetto scopes
 * iids per sequence and per InternedData field). A text seen for the first
 * time is added to the process's batch, which enc_emit() attaches to the
 * next packet, so every iid is defined in or before the packet that uses it.
 * The same texts also key the sample spaces (function names, frames,
 * callstacks, mappings), whose entries samples.c defines itself. */
#include <stdlib.h>
#include <string.h>

#include "common/u64map.h"
#include "writer/encoder_internal.h"

struct intern_entry {
    char *text;
    uint64_t name_iid, str_iid;   /* 0 = not yet interned in that space */
    uint64_t iids[INTERN_SPACES]; /* the sample spaces (enc_intern) */
};

/* The probed table holds only hashes and entry numbers, 16 bytes a slot, so
 * a lookup touches little memory; the entries sit in insertion order. */
struct intern_slot {
    uint64_t hash; /* 0 = empty (hash_bytes is never 0) */
    uint64_t entry;
};

/* Texts live in 1 MiB arena chunks, freed together with the map. */
struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
};

struct intern_map {
    struct intern_slot *slots;
    size_t cap, used;
    struct intern_entry *entries; /* `used` of them */
    size_t cap_entries;
    uint64_t next_name_iid, next_str_iid;
    uint64_t next_iid[INTERN_SPACES];
    struct arena_chunk *chunks;
    const char **names_by_iid; /* event-name text by iid - ENC_IID_FIRST_DYNAMIC */
    size_t cap_names;
    /* Segment string id -> iid, so a text the runtime already interned (a
     * callback name, an await chain) is not copied, hashed and compared on
     * every event that names it. */
    struct u64map seg_names, seg_strs;
};

static char *arena_copy(struct intern_map *m, const char *text, size_t len) {
    struct arena_chunk *c = m->chunks;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > (1u << 20) ? len + 1 : (1u << 20);
        c = xmalloc(sizeof *c + cap);
        c->next = m->chunks;
        c->used = 0;
        c->cap = cap;
        m->chunks = c;
    }
    char *out = c->data + c->used;
    memcpy(out, text, len + 1);
    c->used += len + 1;
    return out;
}

/* The entry for `text`, made if new; valid until the next lookup (entries
 * move when their array grows; the text itself never moves). */
static struct intern_entry *lookup(struct intern_map *m, const char *text) {
    /* Grow at half full: probes stay short. */
    if (m->used * 2 >= m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        struct intern_slot *n = xcalloc(ncap, sizeof *n);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].hash) continue;
            size_t j = m->slots[i].hash & (ncap - 1);
            while (n[j].hash) j = (j + 1) & (ncap - 1);
            n[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = n;
        m->cap = ncap;
    }
    size_t len = strlen(text);
    uint64_t h = hash_bytes(text, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].hash) {
        struct intern_entry *e = &m->entries[m->slots[j].entry];
        if (m->slots[j].hash == h && !strcmp(e->text, text)) return e;
        j = (j + 1) & (m->cap - 1);
    }
    if (m->used == m->cap_entries) {
        m->cap_entries = m->cap_entries ? m->cap_entries * 2 : 1024;
        m->entries = xrealloc(m->entries, m->cap_entries * sizeof *m->entries);
    }
    struct intern_entry *e = &m->entries[m->used];
    memset(e, 0, sizeof *e);
    e->text = arena_copy(m, text, len);
    m->slots[j].hash = h;
    m->slots[j].entry = m->used++;
    return e;
}

static struct intern_map *map_of(struct enc_process *p) {
    if (!p->ext->interned) {
        p->ext->interned = xcalloc(1, sizeof *p->ext->interned);
        p->ext->interned->next_name_iid = ENC_IID_FIRST_DYNAMIC;
        p->ext->interned->next_str_iid = 1;
    }
    return p->ext->interned;
}

/* A batch holds 8 entries of each kind; a full one goes out on its own
 * packet first. */
static void make_room(struct enc_process *p, int names) {
    struct intern_batch *b = &p->ext->batch;
    if ((names ? b->nnames : b->nstrs) < 8) return;
    Astrace__Pb__TracePacket pk;
    astrace__pb__trace_packet__init(&pk);
    pk.has_trusted_packet_sequence_id = 1;
    pk.trusted_packet_sequence_id = p->seq_id;
    pk.has_sequence_flags = 1;
    pk.sequence_flags = ASTRACE__PB__SEQUENCE_FLAGS__SEQ_NEEDS_INCREMENTAL_STATE;
    Astrace__Pb__InternedData idata;
    astrace__pb__interned_data__init(&idata);
    idata.n_event_names = b->nnames;
    idata.event_names = b->name_ptrs;
    idata.n_debug_annotation_string_values = b->nstrs;
    idata.debug_annotation_string_values = b->str_ptrs;
    pk.interned_data = &idata;
    trace_file_write(p->enc->tf, &pk);
    b->nnames = b->nstrs = 0;
}

uint64_t enc_name_iid(struct enc_process *p, const char *text) {
    struct intern_entry *e = lookup(map_of(p), text);
    if (e->name_iid) return e->name_iid;
    make_room(p, 1);
    struct intern_batch *b = &p->ext->batch;
    struct intern_map *m = p->ext->interned;
    e->name_iid = m->next_name_iid++;
    size_t slot = e->name_iid - ENC_IID_FIRST_DYNAMIC;
    if (slot >= m->cap_names) {
        m->cap_names = m->cap_names ? m->cap_names * 2 : 1024;
        m->names_by_iid = xrealloc(m->names_by_iid, m->cap_names * sizeof *m->names_by_iid);
    }
    m->names_by_iid[slot] = e->text;
    Astrace__Pb__EventName *n = &b->names[b->nnames];
    astrace__pb__event_name__init(n);
    n->has_iid = 1;
    n->iid = e->name_iid;
    n->name = e->text;
    b->name_ptrs[b->nnames++] = n;
    return e->name_iid;
}

uint64_t enc_str_iid(struct enc_process *p, const char *text) {
    struct intern_entry *e = lookup(map_of(p), text);
    if (e->str_iid) return e->str_iid;
    make_room(p, 0);
    struct intern_batch *b = &p->ext->batch;
    e->str_iid = p->ext->interned->next_str_iid++;
    Astrace__Pb__InternedString *s = &b->strs[b->nstrs];
    astrace__pb__interned_string__init(s);
    s->has_iid = 1;
    s->iid = e->str_iid;
    s->has_str = 1;
    s->str.data = (uint8_t *)e->text;
    s->str.len = strlen(e->text);
    b->str_ptrs[b->nstrs++] = s;
    return e->str_iid;
}

/* iid of segment string `seg_id` in one space, through its cache. */
static uint64_t seg_iid(struct enc_process *p, uint32_t seg_id, const char *fallback, int names) {
    struct intern_map *m = map_of(p);
    struct u64map *cache = names ? &m->seg_names : &m->seg_strs;
    uint64_t iid = seg_id ? (uint64_t)(uintptr_t)u64map_get(cache, seg_id) : 0;
    if (iid) return iid;
    const char *text = enc_seg_text(p, seg_id, fallback);
    iid = names ? enc_name_iid(p, text) : enc_str_iid(p, text);
    if (seg_id && text != fallback) u64map_put(cache, seg_id, (void *)(uintptr_t)iid);
    return iid;
}

uint64_t enc_seg_name_iid(struct enc_process *p, uint32_t seg_id, const char *fallback) {
    return seg_iid(p, seg_id, fallback, 1);
}

uint64_t enc_seg_str_iid(struct enc_process *p, uint32_t seg_id, const char *fallback) {
    return seg_iid(p, seg_id, fallback, 0);
}

uint64_t enc_intern(struct enc_process *p, enum intern_space space, const char *text, int *is_new) {
    struct intern_map *m = map_of(p);
    struct intern_entry *e = lookup(m, text);
    *is_new = e->iids[space] == 0;
    if (*is_new) e->iids[space] = ++m->next_iid[space];
    return e->iids[space];
}

size_t intern_map_size(const struct intern_map *m) {
    return m ? m->used : 0;
}

const char *enc_name_text(struct enc_process *p, uint64_t iid) {
    if (iid > 0 && iid < IID_TASKS_FIXED_END) return enc_fixed_names[iid];
    struct intern_map *m = p->ext->interned;
    if (!m || iid < ENC_IID_FIRST_DYNAMIC || iid >= m->next_name_iid) return "";
    return m->names_by_iid[iid - ENC_IID_FIRST_DYNAMIC];
}

void intern_map_clear(struct intern_map *m) {
    if (!m) return;
    /* Keep the table at its size and one text chunk: the next generation
     * fills them again without regrowing (and re-faulting) them. */
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->used = 0; /* the entries array is kept too */
    m->next_name_iid = ENC_IID_FIRST_DYNAMIC;
    m->next_str_iid = 1;
    memset(m->next_iid, 0, sizeof m->next_iid);
    u64map_free(&m->seg_names, NULL);
    u64map_free(&m->seg_strs, NULL);
    struct arena_chunk *keep = m->chunks;
    if (keep) {
        for (struct arena_chunk *c = keep->next, *next; c; c = next) {
            next = c->next;
            free(c);
        }
        keep->next = NULL;
        keep->used = 0;
    }
}

void intern_map_free(struct intern_map *m) {
    if (!m) return;
    free(m->names_by_iid);
    for (struct arena_chunk *c = m->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(m->slots);
    free(m->entries);
    u64map_free(&m->seg_names, NULL);
    u64map_free(&m->seg_strs, NULL);
    free(m);
}
