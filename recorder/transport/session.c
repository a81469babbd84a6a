/* Implementation of session.h. */
#include "session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "astrace/ring.h"

struct ring_view {
    uint32_t generation;
    int64_t tid;
    char name[ASTRACE_THREAD_NAME_MAX];
    int broken;                 /* held a malformed record: no longer read */
    uint32_t state;             /* as this drain found it */
    uint64_t head, sample_head; /* what this drain reads up to */
};

struct seg_view {
    char name[256];
    struct astrace_seg_header *hdr;
    size_t len;
    struct enc_process *proc;
    struct ring_view *rings;
    int done;
};

int session_create(struct session *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    tsc_map_init(&s->tsc);
    const char *bases[3] = {getenv("ASTRACE_SHM_DIR"), "/dev/shm", getenv("TMPDIR")};
    for (int i = 0; i < 4; i++) {
        const char *base = i < 3 ? bases[i] : "/tmp";
        if (!base || !*base) continue;
        snprintf(s->dir, sizeof s->dir, "%s/astrace-%d-XXXXXX", base, (int)getpid());
        if (mkdtemp(s->dir)) return 0;
    }
    snprintf(err, errlen, "cannot create a session directory in /dev/shm or /tmp: %s", strerror(errno));
    return -1;
}

static int valid_header(const struct astrace_seg_header *h, size_t len) {
    if (len < sizeof *h || h->magic != ASTRACE_SHM_MAGIC || h->version != ASTRACE_SHM_VERSION) return 0;
    if (h->header_size != sizeof *h || h->ring_count == 0 || h->ring_count > 4096) return 0;
    if (h->ring_size < 4096 || (h->ring_size & (h->ring_size - 1))) return 0;
    uint64_t base = astrace_seg_total_size(h->ring_count, h->ring_size, h->strings_capacity);
    if (h->sample_ring_size) {
        if (h->sample_ring_size < 4096 || (h->sample_ring_size & (h->sample_ring_size - 1))) return 0;
        if (h->sample_rings_offset != base ||
            h->sample_data_offset < base + (uint64_t)h->ring_count * sizeof(struct astrace_ring_header))
            return 0;
        if (h->sample_data_offset + (uint64_t)h->ring_count * h->sample_ring_size != len) return 0;
    } else if (base != len) {
        return 0;
    }
    if (h->strings_offset + h->strings_capacity > len) return 0;
    if (h->rings_offset + (uint64_t)h->ring_count * sizeof(struct astrace_ring_header) > h->ring_data_offset) return 0;
    return 1;
}

/* A note's text after its "pid N: " prefix: the same note from many
 * processes (every worker of a pool) is said once. */
static const char *note_text(const char *line) {
    const char *p = line;
    if (strncmp(p, "pid ", 4) != 0) return line;
    for (p += 4; *p >= '0' && *p <= '9'; p++) {
    }
    return strncmp(p, ": ", 2) == 0 ? p + 2 : line;
}

/* Whether the note was said already (by any process); remembers it. */
static int note_said(struct session *s, const char *line) {
    const char *text = note_text(line);
    for (size_t at = 0; at < s->notes_said.len; at += strlen((const char *)s->notes_said.data + at) + 1)
        if (!strcmp((const char *)s->notes_said.data + at, text)) return 1;
    buf_append(&s->notes_said, text, strlen(text) + 1);
    return 0;
}

/* A note for the user: printed now (the runtime never writes to the
 * program's stderr, so the recorder says it) and kept for the trace's
 * summary, where notes are joined with "; " into one NUL-terminated string. */
static void add_note(struct session *s, const char *line) {
    if (note_said(s, line)) return;
    if (!s->quiet_notes) warnx_("%s", line);
    if (s->notes.len && s->notes.data[s->notes.len - 1] == 0) {
        s->notes.len--;
        buf_append(&s->notes, "; ", 2);
    }
    buf_append(&s->notes, line, strlen(line));
    buf_append(&s->notes, "", 1);
}

static void read_note(struct session *s, const char *name) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0]) add_note(s, line);
    }
    fclose(f);
    unlink(path);
}

/* Thread i's event ring: its header, and the ring over its data. */
static struct astrace_ring_header *event_ring_header(const struct astrace_seg_header *h, uint32_t i) {
    return (struct astrace_ring_header *)((uint8_t *)h + h->rings_offset) + i;
}

static struct astrace_ring event_ring(const struct astrace_seg_header *h, uint32_t i,
                                      struct astrace_ring_header *header) {
    return (struct astrace_ring){header, (uint8_t *)h + h->ring_data_offset + (uint64_t)i * h->ring_size, h->ring_size};
}

/* Thread i's sample ring, or NULL when the segment has none. */
static struct astrace_ring_header *sample_ring_header(const struct astrace_seg_header *h, uint32_t i) {
    if (!h->sample_ring_size) return NULL;
    return (struct astrace_ring_header *)((uint8_t *)h + h->sample_rings_offset) + i;
}

/* The process of a segment enters the trace. A fork child's segment waits
 * for recorded_something(): the sampler gives every fork child a ring at
 * once (it may never reach a hook), so a child that only execs
 * (subprocess's preexec_fn path) would otherwise show up as an empty
 * process named like its parent. */
static void add_process(struct session *s, struct encoder *enc, struct seg_view *v) {
    v->proc = encoder_add_process(enc, v->hdr);
    s->processes++;
}

static void note_record(void *ctx, const struct astrace_rec_hdr *rec) {
    if (rec->type != ASTRACE_REC_THREAD_NAME) *(int *)ctx = 1;
}

/* Whether any thread of the segment has recorded more than its name, had a
 * record dropped, or has a stack sample. Reads the rings without taking
 * anything from them. */
static int recorded_something(const struct astrace_seg_header *h) {
    if (atomic_load(&((struct astrace_seg_header *)h)->dropped_no_ring)) return 1;
    for (uint32_t i = 0; i < h->ring_count; i++) {
        struct astrace_ring_header *rh = event_ring_header(h, i);
        struct astrace_ring_header *sh = sample_ring_header(h, i);
        if (atomic_load(&rh->dropped_records)) return 1;
        if (sh && (atomic_load(&sh->head) != atomic_load(&sh->tail) || atomic_load(&sh->dropped_records))) return 1;
        /* A copy of the header: draining it moves only the copy's tail. */
        struct astrace_ring_header copy;
        memcpy(&copy, rh, sizeof copy);
        atomic_store(&copy.head, atomic_load_explicit(&rh->head, memory_order_acquire));
        atomic_store(&copy.tail, atomic_load(&rh->tail));
        struct astrace_ring ring = event_ring(h, i, &copy);
        int found = 0;
        if (astrace_ring_drain(&ring, note_record, &found, 1L << 30) < 0 || found) return 1;
    }
    return 0;
}

/* Unmaps a segment the trace is done with and removes its file. */
static void forget_segment(struct session *s, struct seg_view *v) {
    munmap(v->hdr, v->len);
    v->hdr = NULL;
    free(v->rings);
    v->rings = NULL;
    v->done = 1;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", s->dir, v->name);
    unlink(path);
}

void session_scan(struct session *s, struct encoder *enc) {
    DIR *d = opendir(s->dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        size_t nl = strlen(n);
        if (nl > 5 && !strcmp(n + nl - 5, ".note")) {
            read_note(s, n);
            continue;
        }
        if (nl < 5 || strcmp(n + nl - 4, ".seg") || nl >= sizeof s->segs[0].name) continue;
        int known = 0;
        for (size_t i = 0; i < s->nsegs; i++)
            if (!strcmp(s->segs[i].name, n)) known = 1;
        if (known) continue;
        if (s->nsegs == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->segs = xrealloc(s->segs, s->cap * sizeof *s->segs);
        }
        struct seg_view *v = &s->segs[s->nsegs];
        memset(v, 0, sizeof *v);
        snprintf(v->name, sizeof v->name, "%s", n);
        s->nsegs++;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", s->dir, n);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            if (fd >= 0) close(fd);
            v->done = 1;
            continue;
        }
        void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (mem == MAP_FAILED || !valid_header(mem, (size_t)st.st_size)) {
            if (mem != MAP_FAILED) munmap(mem, (size_t)st.st_size);
            warnx_("ignoring %s: not a segment this astrace understands", n);
            v->done = 1;
            continue;
        }
        v->hdr = mem;
        v->len = (size_t)st.st_size;
        v->rings = xcalloc(v->hdr->ring_count, sizeof *v->rings);
        if (!(v->hdr->flags & ASTRACE_SEG_FORKED)) add_process(s, enc, v);
    }
    closedir(d);
}

struct drain_ctx {
    struct enc_process *proc;
    uint32_t ring;
    struct ring_view *rv;
    struct session *tsc_session; /* the segment's times are TSC ticks: convert by its map */
};

static void on_record(void *ctx, const struct astrace_rec_hdr *rec) {
    struct drain_ctx *c = ctx;
    if (c->tsc_session) { /* the encoder gets the record with its time in BOOTTIME ns */
        struct astrace_rec_hdr *copy = &c->tsc_session->copy.hdr;
        memcpy(copy, rec, rec->size);
        copy->ts = tsc_map_ns(&c->tsc_session->tsc, rec->ts);
        rec = copy;
    }
    encoder_record(c->proc, c->ring, c->rv->generation, c->rv->tid, c->rv->name, rec);
}

static uint64_t drain_segment(struct session *s, struct encoder *enc, struct seg_view *v) {
    struct astrace_seg_header *h = v->hdr;
    uint64_t moved = 0;
    if (!v->proc) {
        if (!recorded_something(h)) return 0;
        add_process(s, enc, v);
    }
    /* Heads first, of every ring: records up to a ring's head belong to the
     * generation read after it, and were all written before a clock pair
     * read after it (tsc_map.h). */
    for (uint32_t i = 0; i < h->ring_count; i++) {
        struct astrace_ring_header *rh = event_ring_header(h, i);
        struct ring_view *rv = &v->rings[i];
        rv->state = atomic_load_explicit(&rh->state, memory_order_acquire);
        if (rv->state == ASTRACE_RING_FREE || rv->broken) continue;
        rv->head = atomic_load_explicit(&rh->head, memory_order_acquire);
        struct astrace_ring_header *sh = sample_ring_header(h, i);
        rv->sample_head = sh ? atomic_load_explicit(&sh->head, memory_order_acquire) : 0;
    }
    int tsc = (h->flags & ASTRACE_SEG_TSC) != 0;
    if (tsc) tsc_map_mark(&s->tsc);
    for (uint32_t i = 0; i < h->ring_count; i++) {
        struct astrace_ring_header *rh = event_ring_header(h, i);
        struct ring_view *rv = &v->rings[i];
        uint32_t state = rv->state;
        if (state == ASTRACE_RING_FREE || rv->broken) continue;
        uint32_t gen = atomic_load_explicit(&rh->generation, memory_order_acquire);
        if (gen != rv->generation) {
            rv->generation = gen;
            rv->tid = atomic_load(&rh->tid);
            memcpy(rv->name, rh->thread_name, sizeof rv->name);
            rv->name[sizeof rv->name - 1] = 0;
        }
        struct astrace_ring ring = event_ring(h, i, rh);
        struct drain_ctx ctx = {v->proc, i, rv, tsc ? s : NULL};
        long n = astrace_ring_drain_to(&ring, rv->head, on_record, &ctx, 1L << 30);
        /* Then the same thread's stack samples. */
        struct astrace_ring_header *sh = sample_ring_header(h, i);
        long ns = 0;
        if (sh && n >= 0) {
            struct astrace_ring samples = {sh, (uint8_t *)h + h->sample_data_offset + (uint64_t)i * h->sample_ring_size,
                                           h->sample_ring_size};
            ns = astrace_ring_drain_to(&samples, rv->sample_head, on_record, &ctx, 1L << 30);
        }
        if (n < 0 || ns < 0) {
            warnx_("pid %d thread %lld: malformed record in shared memory; the rest of that thread is lost", h->pid,
                   (long long)rv->tid);
            rv->broken = 1;
            continue;
        }
        moved += (uint64_t)n + (uint64_t)ns;
        if (state == ASTRACE_RING_RETIRED && atomic_load(&rh->head) == atomic_load(&rh->tail) &&
            (!sh || atomic_load(&sh->head) == atomic_load(&sh->tail))) {
            uint32_t retired = ASTRACE_RING_RETIRED;
            atomic_compare_exchange_strong(&rh->state, &retired, ASTRACE_RING_FREE);
        }
    }
    s->records += moved;
    return moved;
}

uint64_t session_drain(struct session *s, struct encoder *enc) {
    uint64_t moved = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        if (!s->segs[i].done) moved += drain_segment(s, enc, &s->segs[i]);
    return moved;
}

static uint64_t seg_dropped(const struct astrace_seg_header *h) {
    uint64_t d = atomic_load(&((struct astrace_seg_header *)h)->dropped_no_ring);
    for (uint32_t i = 0; i < h->ring_count; i++) {
        struct astrace_ring_header *rh = event_ring_header(h, i);
        d += atomic_load(&rh->dropped_records);
    }
    return d;
}

/* Samples refused by full sample rings, and samples whose stack could not
 * be read, in one segment. */
static void seg_sample_losses(const struct astrace_seg_header *h, uint64_t *dropped, uint64_t *unreadable) {
    *unreadable += atomic_load(&((struct astrace_seg_header *)h)->samples_unreadable);
    for (uint32_t i = 0; h->sample_ring_size && i < h->ring_count; i++)
        *dropped += atomic_load(&sample_ring_header(h, i)->dropped_records);
}

void session_sample_losses(const struct session *s, uint64_t *dropped, uint64_t *unreadable) {
    *dropped = s->samples_dropped;
    *unreadable = s->samples_unreadable;
    for (size_t i = 0; i < s->nsegs; i++)
        if (!s->segs[i].done && s->segs[i].hdr) seg_sample_losses(s->segs[i].hdr, dropped, unreadable);
}

uint64_t session_dropped(const struct session *s) {
    uint64_t d = s->dropped;
    for (size_t i = 0; i < s->nsegs; i++)
        if (!s->segs[i].done && s->segs[i].hdr) d += seg_dropped(s->segs[i].hdr);
    return d;
}

void session_sample_rss(struct session *s) {
    static long page = 0;
    if (!page) page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < s->nsegs; i++) {
        struct seg_view *v = &s->segs[i];
        if (v->done || !v->hdr || !v->proc) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/statm", (int)v->hdr->pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long long size, resident;
        int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
        fclose(f);
        if (ok) encoder_rss(v->proc, now_boottime_ns(), resident * (unsigned long long)page);
    }
}

/* A process is gone when /proc has no entry for it or it is a zombie. */
static int pid_gone(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

void session_reap(struct session *s, struct encoder *enc, int all) {
    for (size_t i = 0; i < s->nsegs; i++) {
        struct seg_view *v = &s->segs[i];
        if (v->done || !v->hdr) continue;
        int finished = atomic_load(&v->hdr->state) == ASTRACE_SEG_FINISHED;
        int gone = pid_gone(v->hdr->pid);
        if (!all && !gone) continue;
        drain_segment(s, enc, v);
        if (!v->proc) { /* a fork child that recorded nothing (it only exec'd): not in the trace */
            forget_segment(s, v);
            continue;
        }
        char how[128];
        if (gone && s->exit_status_of && s->exit_status_of(v->hdr->pid, how, sizeof how) == 0) {
            /* exact status known: we reaped it */
        } else if (finished) {
            snprintf(how, sizeof how, "exited");
        } else if (gone) {
            snprintf(how, sizeof how, "ended without shutting astrace down (crash, os._exit or signal)");
        } else {
            snprintf(how, sizeof how, "still running when recording stopped");
        }
        uint64_t dropped = seg_dropped(v->hdr), samples_dropped = 0, samples_unreadable = 0;
        seg_sample_losses(v->hdr, &samples_dropped, &samples_unreadable);
        s->dropped += dropped;
        s->samples_dropped += samples_dropped;
        s->samples_unreadable += samples_unreadable;
        encoder_sample_losses(v->proc, samples_dropped, samples_unreadable);
        uint64_t runtime_errors = atomic_load(&v->hdr->runtime_errors);
        if (runtime_errors) {
            char note[160];
            snprintf(note, sizeof note,
                     "pid %d: %llu of astrace's own reads inside the program failed and were skipped "
                     "(the program was not affected)",
                     (int)v->hdr->pid, (unsigned long long)runtime_errors);
            add_note(s, note);
        }
        encoder_end_process(v->proc, how, dropped);
        v->proc = NULL;
        forget_segment(s, v);
    }
}

void session_destroy(struct session *s) {
    for (size_t i = 0; i < s->nsegs; i++) {
        if (s->segs[i].hdr) munmap(s->segs[i].hdr, s->segs[i].len);
        free(s->segs[i].rings);
    }
    free(s->segs);
    s->segs = NULL;
    s->nsegs = 0;
    DIR *d = opendir(s->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", s->dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(s->dir);
    buf_free(&s->notes);
    buf_free(&s->notes_said);
}
