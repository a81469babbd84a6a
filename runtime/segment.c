/* This process's shared-memory segment: creation in the session directory,
 * per-thread ring claims, the string table, and re-creation after fork().
 *
 * The segment file is written under a temporary name and renamed into place
 * once its header is complete, so the recorder never maps a half-made one.
 * A thread's ring is released (marked RETIRED) by a pthread key destructor
 * when the thread exits; the recorder frees it after draining it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime.h"

_Thread_local struct rt_thread rt_tls;
_Atomic uint32_t rt_generation;

struct astrace_seg_header *rt_seg;
static size_t seg_len;
static struct rt_config cfg;
static char session_dir[4096];
static uint32_t last_generation;
static pthread_key_t ring_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static atomic_flag strings_lock = ATOMIC_FLAG_INIT;
static _Atomic uint32_t segment_serial;

static struct astrace_ring_header *ring_header(uint32_t i) {
    return (struct astrace_ring_header *)((uint8_t *)rt_seg + rt_seg->rings_offset) + i;
}

static void release_ring(void *value) {
    struct astrace_ring_header *rh = value;
    /* Only release rings of the live segment; a stale pointer after fork or
     * stop belongs to a mapping that may be gone. */
    if (!rt_seg || rt_tls.generation != atomic_load(&rt_generation)) return;
    rt_sampler_thread_stop(rh->index);
    rt_tls.has_samples = 0;
    uint32_t owned = ASTRACE_RING_OWNED;
    atomic_compare_exchange_strong(&rh->state, &owned, ASTRACE_RING_RETIRED);
}

static void make_key(void) {
    pthread_key_create(&ring_key, release_ring);
}

/* Creates and publishes a segment; the header text fields are copied from
 * `like` when given (the parent's segment, after fork). */
static int create_segment(const struct astrace_seg_header *like, const char *pyver, int32_t hexversion, const char *exe,
                          const char *cmdline, uint32_t cmdline_len, char *err, size_t errlen) {
    uint64_t base = astrace_seg_total_size(cfg.ring_count, cfg.ring_size, cfg.strings_capacity);
    uint64_t total = base + astrace_seg_sample_size(cfg.ring_count, cfg.sample_ring_size);
    char tmp[4200], final[4200];
    uint32_t serial = atomic_fetch_add(&segment_serial, 1);
    int pid = getpid();
    snprintf(tmp, sizeof tmp, "%s/.%d-%u.tmp", session_dir, pid, serial);
    snprintf(final, sizeof final, "%s/%d-%u.seg", session_dir, pid, serial);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (ftruncate(fd, (off_t)total) != 0) {
        snprintf(err, errlen, "cannot size %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    void *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mem == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    struct astrace_seg_header *h = mem;
    h->magic = ASTRACE_SHM_MAGIC;
    h->version = ASTRACE_SHM_VERSION;
    h->header_size = sizeof *h;
    h->pid = pid;
    h->ppid = getppid();
    h->ring_count = cfg.ring_count;
    h->ring_size = cfg.ring_size;
    h->rings_offset = (sizeof *h + 4095) & ~4095ULL;
    h->ring_data_offset =
        h->rings_offset + (((uint64_t)cfg.ring_count * sizeof(struct astrace_ring_header) + 4095) & ~4095ULL);
    h->strings_offset = h->ring_data_offset + (uint64_t)cfg.ring_count * cfg.ring_size;
    h->strings_capacity = cfg.strings_capacity;
    if (cfg.sample_ring_size) {
        h->sample_ring_size = cfg.sample_ring_size;
        h->sample_rings_offset = base;
        h->sample_data_offset =
            base + (((uint64_t)cfg.ring_count * sizeof(struct astrace_ring_header) + 4095) & ~4095ULL);
    }
    h->start_boottime_ns = rt_clock_ns(CLOCK_BOOTTIME);
    h->start_realtime_ns = rt_clock_ns(CLOCK_REALTIME);
    if (rt_clock_tsc) h->flags |= ASTRACE_SEG_TSC;
    if (like) {
        h->flags |= ASTRACE_SEG_FORKED;
        h->python_hexversion = like->python_hexversion;
        memcpy(h->python_version, like->python_version, sizeof h->python_version);
        memcpy(h->executable, like->executable, sizeof h->executable);
        h->cmdline_len = like->cmdline_len;
        memcpy(h->cmdline, like->cmdline, sizeof h->cmdline);
        h->sample_rate_hz = like->sample_rate_hz;
        h->sample_flags = like->sample_flags;
        memcpy(&h->py, &like->py, sizeof h->py);
    } else {
        h->python_hexversion = hexversion;
        snprintf(h->python_version, sizeof h->python_version, "%s", pyver);
        snprintf(h->executable, sizeof h->executable, "%s", exe);
        if (cmdline_len > sizeof h->cmdline) cmdline_len = sizeof h->cmdline;
        memcpy(h->cmdline, cmdline, cmdline_len);
        h->cmdline_len = cmdline_len;
    }
    for (uint32_t i = 0; i < cfg.ring_count; i++) {
        struct astrace_ring_header *rh = (struct astrace_ring_header *)((uint8_t *)h + h->rings_offset) + i;
        rh->index = i;
        if (cfg.sample_ring_size) {
            rh = (struct astrace_ring_header *)((uint8_t *)h + h->sample_rings_offset) + i;
            rh->index = i;
        }
    }
    atomic_store(&h->state, ASTRACE_SEG_ACTIVE);
    if (rename(tmp, final) != 0) {
        snprintf(err, errlen, "cannot publish %s: %s", final, strerror(errno));
        munmap(mem, total);
        unlink(tmp);
        return -1;
    }
    rt_seg = h;
    seg_len = total;
    /* Generation 0 means "off" and the top value "fork pending"; skip both. */
    uint32_t gen = last_generation + 1;
    if (gen == 0 || gen == RT_GENERATION_FORK_PENDING) gen = 1;
    last_generation = gen;
    atomic_store_explicit(&rt_generation, gen, memory_order_release);
    return 0;
}

/* In a fork child the parent's segment is still mapped but is not ours to
 * write. The child gets its own segment, made lazily by the first thread
 * that records: a child that only execs (subprocess, posix_spawn fallbacks)
 * never runs a hook and so never shows up as an empty process. */
static struct astrace_seg_header *fork_template;
static size_t fork_template_len;

static void after_fork_child(void) {
    rt_sampler_after_fork();
    rt_tls.has_samples = 0;
    if (!rt_seg) return;
    if (fork_template) munmap(fork_template, fork_template_len); /* fork of a fork that never recorded */
    fork_template = rt_seg;
    fork_template_len = seg_len;
    rt_seg = NULL;
    atomic_store(&rt_generation, RT_GENERATION_FORK_PENDING);
}

static void create_forked_segment(void) {
    char err[256];
    struct astrace_seg_header *parent = fork_template;
    fork_template = NULL;
    atomic_store(&rt_generation, 0);
    if (create_segment(parent, NULL, 0, NULL, NULL, 0, err, sizeof err) != 0)
        rt_note("pid %d (forked) is not traced: %s", (int)getpid(), err);
    munmap(parent, fork_template_len);
}

int rt_segment_start(const struct rt_config *c, const char *python_version, int32_t hexversion, const char *executable,
                     const char *cmdline, uint32_t cmdline_len, char *err, size_t errlen) {
    static int atfork_done;
    if (rt_seg) {
        snprintf(err, errlen, "already recording");
        return -1;
    }
    cfg = *c;
    rt_clock_init();
    snprintf(session_dir, sizeof session_dir, "%s", c->session_dir);
    cfg.session_dir = session_dir;
    pthread_once(&key_once, make_key);
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atfork_done = 1;
    }
    return create_segment(NULL, python_version, hexversion, executable, cmdline, cmdline_len, err, errlen);
}

void rt_segment_stop(void) {
    if (atomic_load(&rt_generation) == RT_GENERATION_FORK_PENDING) atomic_store(&rt_generation, 0);
    if (!rt_seg) return;
    atomic_store(&rt_generation, 0);
    rt_sampler_stop();
    atomic_store(&rt_seg->state, ASTRACE_SEG_FINISHED);
    /* The mapping stays: a thread may still be inside a hook. The recorder
     * drains and unlinks the file. */
}

int rt_thread_claim(void) {
    /* The forking thread keeps its name in the child's segment. */
    char inherited_name[ASTRACE_THREAD_NAME_MAX] = "";
    if (atomic_load(&rt_generation) == RT_GENERATION_FORK_PENDING) {
        if (rt_tls.has_ring) memcpy(inherited_name, rt_tls.ring.hdr->thread_name, sizeof inherited_name);
        inherited_name[sizeof inherited_name - 1] = 0;
        create_forked_segment();
    }
    uint32_t gen = atomic_load_explicit(&rt_generation, memory_order_acquire);
    rt_tls.generation = gen;
    rt_tls.has_ring = 0;
    rt_tls.has_samples = 0;
    rt_tls.loop_depth = 0;
    if (gen == 0 || !rt_seg) return -1;
    for (uint32_t i = 0; i < rt_seg->ring_count; i++) {
        struct astrace_ring_header *rh = ring_header(i);
        uint32_t expect = ASTRACE_RING_FREE;
        if (!atomic_compare_exchange_strong(&rh->state, &expect, ASTRACE_RING_OWNED)) continue;
        atomic_store(&rh->tid, (int64_t)syscall(SYS_gettid));
        memcpy(rh->thread_name, inherited_name, sizeof rh->thread_name);
        atomic_fetch_add_explicit(&rh->generation, 1, memory_order_release);
        rt_tls.ring.hdr = rh;
        rt_tls.ring.data = (uint8_t *)rt_seg + rt_seg->ring_data_offset + (uint64_t)i * rt_seg->ring_size;
        rt_tls.ring.size = rt_seg->ring_size;
        rt_tls.has_ring = 1;
        if (rt_seg->sample_ring_size) {
            rt_tls.samples.hdr = (struct astrace_ring_header *)((uint8_t *)rt_seg + rt_seg->sample_rings_offset) + i;
            rt_tls.samples.data =
                (uint8_t *)rt_seg + rt_seg->sample_data_offset + (uint64_t)i * rt_seg->sample_ring_size;
            rt_tls.samples.size = rt_seg->sample_ring_size;
            rt_tls.has_samples = 1;
        }
        pthread_setspecific(ring_key, rh);
        rt_sampler_thread_start(i, rt_python_thread_state());
        return 0;
    }
    return -1;
}

void rt_thread_begin(const char *name) {
    uint32_t gen = atomic_load(&rt_generation);
    if (gen && rt_tls.generation != gen) rt_thread_claim();
    rt_thread_set_name(name);
}

/* Sampling stops while the thread state still exists; the ring itself is
 * released at thread exit (release_ring). */
void rt_thread_end(void) {
    if (rt_tls.has_ring && rt_tls.generation == atomic_load(&rt_generation)) {
        rt_tls.has_samples = 0;
        rt_sampler_thread_stop(rt_tls.ring.hdr->index);
    }
}

void rt_thread_set_name(const char *name) {
    if (!rt_tls.has_ring || rt_tls.generation != atomic_load(&rt_generation)) return;
    /* Kept in the ring header too, so a fork child can inherit it. */
    snprintf(rt_tls.ring.hdr->thread_name, sizeof rt_tls.ring.hdr->thread_name, "%s", name);
    uint32_t id = rt_string_add(name, strlen(name));
    uint64_t next;
    struct astrace_rec_hdr *rec = astrace_ring_reserve(&rt_tls.ring, sizeof *rec, &next);
    if (!rec) return;
    rec->type = ASTRACE_REC_THREAD_NAME;
    rec->size = sizeof *rec;
    rec->str0 = id;
    rec->ts = rt_now();
    astrace_ring_commit(&rt_tls.ring, next);
}

uint32_t rt_string_add(const char *s, size_t len) {
    if (!rt_seg) return 0;
    if (len > 4096) len = 4096;
    uint64_t need = (4 + len + 3) & ~3ULL;
    while (atomic_flag_test_and_set_explicit(&strings_lock, memory_order_acquire)) {
    }
    uint64_t used = atomic_load_explicit(&rt_seg->strings_used, memory_order_relaxed);
    uint32_t id = 0;
    if (used + need <= rt_seg->strings_capacity && used + 1 < UINT32_MAX) {
        uint8_t *at = (uint8_t *)rt_seg + rt_seg->strings_offset + used;
        uint32_t l32 = (uint32_t)len;
        memcpy(at, &l32, 4);
        memcpy(at + 4, s, len);
        atomic_store_explicit(&rt_seg->strings_used, used + need, memory_order_release);
        id = (uint32_t)used + 1;
    } else {
        atomic_fetch_add_explicit(&rt_seg->strings_dropped, 1, memory_order_relaxed);
    }
    atomic_flag_clear_explicit(&strings_lock, memory_order_release);
    return id;
}

void rt_count_runtime_error(void) {
    if (rt_seg) atomic_fetch_add_explicit(&rt_seg->runtime_errors, 1, memory_order_relaxed);
}

void rt_note(const char *fmt, ...) {
    char path[4200], text[1024];
    if (!session_dir[0]) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof text - 2) n = (int)sizeof text - 2;
    text[n++] = '\n';
    snprintf(path, sizeof path, "%s/%d.note", session_dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    ssize_t w = write(fd, text, (size_t)n);
    (void)w;
    close(fd);
}

void rt_count_no_ring_drop(void) {
    if (rt_seg) atomic_fetch_add_explicit(&rt_seg->dropped_no_ring, 1, memory_order_relaxed);
}
