/* The sampler: stack samples of every recording thread.
 *
 * Each thread that holds a ring gets a POSIX timer of its own (timer_create
 * with SIGEV_THREAD_ID) on CLOCK_MONOTONIC. In wall mode every tick is a
 * sample, whether the thread runs or blocks. In cpu mode a tick is a sample
 * only once the thread has used another interval's worth of CPU time since
 * the last one, so samples count CPU time at the full rate (a timer on the
 * thread's CPU clock would fire at most once per kernel tick, 250 Hz on
 * common kernels). The timer's signal (SIGPROF unless configured otherwise) runs
 * on_sample() on that very thread, which reads the thread's Python frames
 * (pyframes_sample) and, with native sampling on, its return addresses
 * (libunwind, from the interrupted context), and appends one
 * ASTRACE_REC_SAMPLE to the thread's sample ring. Code objects are named
 * later, by the recorder, outside the process.
 *
 * Everything on_sample() does is async-signal-safe: plain loads, the
 * lock-free ring, clock_gettime, sigaction. Its reads of interpreter memory
 * run under a fault guard: a SIGSEGV/SIGBUS while a sample is being read
 * jumps back and the sample is counted as unreadable.
 *
 * The guard's handler is installed only while some thread is reading a
 * sample (the first one in installs it, the last one out puts back exactly
 * what was there), not for the whole run. A handler that stayed would sit
 * below any the program installs later: faulthandler, which CPython's test
 * runner enables, would then take a guarded fault for a crash, print "Fatal
 * Python error" into the program's stderr and disable itself. A fault that
 * is not a sample's, inside that window, puts the program's handler back and
 * happens again there.
 *
 * The handler is installed with SA_RESTART, so restartable system calls
 * resume after it; calls that always fail with EINTR (sleep, select, poll)
 * are retried by CPython itself (PEP 475).
 */
#define UNW_LOCAL_ONLY
#include <errno.h>
#include <libunwind.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pyframes.h"
#include "runtime.h"

#define MAX_TIMERS 4096

static struct {
    int on;
    int signo;
    int cpu;
    int native;
    long interval_ns;
} sampler;

/* Timer of the thread owning ring i, stored as timer id + 1 (0 = none): a
 * thread's exit and stop() may race to delete it; the exchange decides. */
static _Atomic intptr_t timer_of_ring[MAX_TIMERS];
/* The fault guard's window: threads inside guarded reads, under a spin
 * lock (held only around the sigaction calls, by signal handlers of
 * different threads), and the program's handlers it set aside. */
static int threads_sampling;
static atomic_flag guard_lock = ATOMIC_FLAG_INIT;
static struct sigaction guard_action, previous_segv, previous_bus;

static void guard_locked(void) {
    while (atomic_flag_test_and_set_explicit(&guard_lock, memory_order_acquire)) {
    }
}

static void guard_unlock(void) {
    atomic_flag_clear_explicit(&guard_lock, memory_order_release);
}

static void fault_guard_enter(void) {
    guard_locked();
    if (threads_sampling++ == 0) {
        sigaction(SIGSEGV, &guard_action, &previous_segv);
        sigaction(SIGBUS, &guard_action, &previous_bus);
    }
    guard_unlock();
}

static void fault_guard_leave(void) {
    guard_locked();
    if (--threads_sampling == 0) {
        sigaction(SIGSEGV, &previous_segv, NULL);
        sigaction(SIGBUS, &previous_bus, NULL);
    }
    guard_unlock();
}

static void count_unreadable(void) {
    if (rt_seg) atomic_fetch_add_explicit(&rt_seg->samples_unreadable, 1, memory_order_relaxed);
}

static int native_stack(void *ucontext, uint64_t *ips, int max) {
    unw_cursor_t cursor;
    if (unw_init_local2(&cursor, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME) < 0) return 0;
    int n = 0;
    do {
        unw_word_t ip;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
        ips[n++] = ip;
    } while (n < max && unw_step(&cursor) > 0);
    return n;
}

/* Adds each code object's identity tag to its code word (record.h), read
 * at the offsets the runtime found for the recorder (rt_seg->py). Inside
 * the fault guard. */
static void tag_codes(uint64_t *codes, int n) {
    const struct astrace_py_layout *l = &rt_seg->py;
    for (int i = 0; i < n; i++) {
        const char *code = (const char *)(uintptr_t)codes[i];
        uint64_t qualname;
        int32_t firstlineno;
        memcpy(&qualname, code + l->code_qualname, sizeof qualname);
        memcpy(&firstlineno, code + l->code_firstlineno, sizeof firstlineno);
        codes[i] = astrace_code_word(codes[i], astrace_code_tag(qualname, firstlineno));
    }
}

static void take_sample(struct rt_thread *t, void *ucontext, int missed) {
    uint64_t codes[ASTRACE_SAMPLE_MAX_PY], ips[ASTRACE_SAMPLE_MAX_NATIVE];
    uint32_t offsets[ASTRACE_SAMPLE_MAX_PY];
    uint64_t entry = 0;
    int truncated = 0;
    volatile int npy = -1, nnative = 0;
    uint64_t ts = rt_now();

    fault_guard_enter();
    t->in_sample = 1;
    if (sigsetjmp(t->fault_jump, 0) == 0) {
        npy = pyframes_sample(t->tstate, codes, offsets, ASTRACE_SAMPLE_MAX_PY, &entry, &truncated);
        tag_codes(codes, npy);
        if (sampler.native && npy >= 0) nnative = native_stack(ucontext, ips, ASTRACE_SAMPLE_MAX_NATIVE);
    } else {
        npy = -1; /* a read faulted */
    }
    t->in_sample = 0;
    fault_guard_leave();
    if (npy < 0) {
        count_unreadable();
        return;
    }

    uint32_t offsets_bytes = ((uint32_t)npy * 4 + 7) & ~7u;
    uint32_t size =
        (uint32_t)sizeof(struct astrace_rec_sample) + (uint32_t)npy * 8 + offsets_bytes + (uint32_t)nnative * 8;
    uint64_t next;
    uint8_t *at = astrace_ring_reserve(&t->samples, size, &next);
    if (!at) return; /* counted by the ring */
    struct astrace_rec_sample *rec = (struct astrace_rec_sample *)at;
    rec->h.type = ASTRACE_REC_SAMPLE;
    rec->h.size = (uint16_t)size;
    rec->h.str0 = 0;
    rec->h.ts = ts;
    rec->py_depth = (uint16_t)npy;
    rec->native_depth = (uint16_t)nnative;
    rec->flags = truncated ? ASTRACE_SAMPLE_TRUNCATED : 0;
    rec->missed = (uint16_t)(missed < 0 ? 0 : missed > 65535 ? 65535 : missed);
    rec->entry = entry;
    at += sizeof *rec;
    memcpy(at, codes, (size_t)npy * 8);
    at += (size_t)npy * 8;
    memcpy(at, offsets, (size_t)npy * 4);
    if (offsets_bytes > (uint32_t)npy * 4) memset(at + npy * 4, 0, offsets_bytes - (uint32_t)npy * 4);
    at += offsets_bytes;
    memcpy(at, ips, (size_t)nnative * 8);
    astrace_ring_commit(&t->samples, next);
}

/* cpu mode: whether the thread has used an interval of CPU time since the
 * last sample (credit carries over, at most one interval's worth). */
static int used_cpu(struct rt_thread *t) {
    uint64_t now = rt_clock_ns(CLOCK_THREAD_CPUTIME_ID), interval = (uint64_t)sampler.interval_ns;
    if (now - t->cpu_mark < interval) return 0;
    t->cpu_mark += interval;
    if (now - t->cpu_mark > interval) t->cpu_mark = now - interval;
    return 1;
}

/* A sample can take longer than the interval (deep native stacks at 10 kHz
 * on a slow machine): ticks would then follow each other with no time for
 * the thread's own work in between. So a tick less than half an interval
 * after the thread's last sample ended is skipped; in wall mode the next
 * sample counts it as missed, so samples still weigh the time they stand for. */
static int too_soon(struct rt_thread *t, int overrun) {
    uint64_t now = rt_clock_ns(CLOCK_MONOTONIC);
    if (now - t->sample_end_ns >= (uint64_t)sampler.interval_ns / 2) return 0;
    t->ticks_skipped += 1 + (uint32_t)(overrun > 0 ? overrun : 0);
    return 1;
}

static void on_sample(int signo, siginfo_t *info, void *ucontext) {
    (void)signo;
    int saved_errno = errno;
    struct rt_thread *t = &rt_tls;
    /* Only our timers' signals; a kill() of the signal is ignored. */
    if (info->si_code == SI_TIMER && t->has_samples && !t->in_sample &&
        t->generation == atomic_load_explicit(&rt_generation, memory_order_relaxed) &&
        !too_soon(t, info->si_overrun) && (!sampler.cpu || used_cpu(t))) {
        int missed = sampler.cpu ? 0 : info->si_overrun + (int)t->ticks_skipped;
        take_sample(t, ucontext, missed);
        t->ticks_skipped = 0;
        t->sample_end_ns = rt_clock_ns(CLOCK_MONOTONIC);
    }
    errno = saved_errno;
}

static void on_fault(int signo, siginfo_t *info, void *ucontext) {
    (void)ucontext;
    if (rt_tls.in_sample) siglongjmp(rt_tls.fault_jump, 1);
    /* Not a sample's: put the program's disposition back. A real fault
     * happens again on return, now to it; a signal sent by kill() or raise()
     * is sent again. */
    sigaction(signo, signo == SIGSEGV ? &previous_segv : &previous_bus, NULL);
    if (info->si_code <= 0) raise(signo);
}

int rt_sampler_start(int rate_hz, int cpu, int native, int signo, char *err, size_t errlen) {
    if (sampler.on) return 0;
    if (rate_hz < 1 || rate_hz > 10000) {
        snprintf(err, errlen, "sampling rate %d Hz is outside 1-10000", rate_hz);
        return -1;
    }
    if (signo < 1 || signo >= SIGRTMAX || signo == SIGSEGV || signo == SIGBUS || signo == SIGKILL || signo == SIGSTOP) {
        snprintf(err, errlen, "signal %d cannot be used for sampling", signo);
        return -1;
    }
    struct sigaction current;
    if (sigaction(signo, NULL, &current) != 0) {
        snprintf(err, errlen, "signal %d: %s", signo, strerror(errno));
        return -1;
    }
    if ((current.sa_flags & SA_SIGINFO) || (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN)) {
        snprintf(err, errlen,
                 "signal %d already has a handler in this process; sampling is off (choose another with "
                 "astrace record --signal)",
                 signo);
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sample;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) != 0) {
        snprintf(err, errlen, "signal %d: %s", signo, strerror(errno));
        return -1;
    }
    /* The fault guard, installed around each sample's reads: SA_NODEFER so
     * that jumping out of it leaves SIGSEGV unblocked. */
    guard_action = sa;
    guard_action.sa_sigaction = on_fault;
    guard_action.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    if (native) unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    sampler.signo = signo;
    sampler.cpu = cpu;
    sampler.native = native;
    sampler.interval_ns = 1000000000L / rate_hz;
    sampler.on = 1;
    return 0;
}

int rt_sampler_native(void) {
    return sampler.native;
}

void rt_sampler_thread_start(uint32_t ring_index, void *tstate) {
    struct rt_thread *t = &rt_tls;
    if (!sampler.on || !t->has_samples || ring_index >= MAX_TIMERS || !tstate) return;
    t->tstate = tstate;
    t->cpu_mark = rt_clock_ns(CLOCK_THREAD_CPUTIME_ID);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = sampler.signo;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        count_unreadable();
        return;
    }
    intptr_t old = atomic_exchange(&timer_of_ring[ring_index], (intptr_t)timer + 1);
    if (old) timer_delete((timer_t)(old - 1));
    struct itimerspec its;
    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = sampler.interval_ns;
    its.it_value = its.it_interval;
    timer_settime(timer, 0, &its, NULL);
}

void rt_sampler_thread_stop(uint32_t ring_index) {
    if (ring_index >= MAX_TIMERS) return;
    intptr_t old = atomic_exchange(&timer_of_ring[ring_index], 0);
    if (old) timer_delete((timer_t)(old - 1));
}

void rt_sampler_stop(void) {
    for (uint32_t i = 0; i < MAX_TIMERS; i++) rt_sampler_thread_stop(i);
}

void rt_sampler_after_fork(void) {
    /* Timers are not inherited: forget the parent's ids without deleting. */
    for (uint32_t i = 0; i < MAX_TIMERS; i++) atomic_store(&timer_of_ring[i], 0);
}
