/* The floor under every stack sample: what one timer signal with an empty
 * handler costs on this machine.
 *
 * sampler_bench.py runs this next to bench/apps/sample_cost.py, so the
 * per-sample cost it prints splits into the kernel's part (timer interrupt,
 * signal frame, sigreturn; on a virtual machine each timer tick can also exit
 * to the hypervisor) and astrace's part (the stack walk and the ring write).
 *
 * Same method as sample_cost.py: the thread's own POSIX timer
 * (SIGEV_THREAD_ID, CLOCK_MONOTONIC) at RATE Hz, and pairs of equal chunks of
 * work, one with the signal blocked, one with it delivered; the extra time of
 * the delivered chunks over the signals they got.
 *
 *     build/bench_signal_cost [RATE] [PAIRS]      (default 10000 200)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t signals_seen;
static volatile double work_sink;

static void on_signal(int signo, siginfo_t *info, void *ucontext) {
    (void)signo;
    (void)info;
    (void)ucontext;
    signals_seen++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double timed_work(long iterations) {
    double start = now_s(), x = 0;
    for (long i = 0; i < iterations; i++) x += (double)i * 0.5;
    work_sink = x;
    return now_s() - start;
}

int main(int argc, char **argv) {
    long rate = argc > 1 ? atol(argv[1]) : 10000, pairs = argc > 2 ? atol(argv[2]) : 200;
    if (rate < 1 || rate > 100000 || pairs < 1) {
        fprintf(stderr, "usage: %s [RATE 1-100000] [PAIRS]\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    if (sigaction(SIGPROF, &sa, NULL) != 0 || timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        perror("signal_cost: timer setup");
        return 1;
    }
    long interval_ns = 1000000000L / rate;
    struct itimerspec its = {{interval_ns / 1000000000L, interval_ns % 1000000000L},
                             {interval_ns / 1000000000L, interval_ns % 1000000000L}};
    timer_settime(timer, 0, &its, NULL);

    sigset_t just_ours;
    sigemptyset(&just_ours);
    sigaddset(&just_ours, SIGPROF);
    const long chunk = 5000000; /* a few ms of work */
    double blocked = 0, delivered = 0;
    long signals = 0;
    for (long p = 0; p < pairs; p++) {
        sigprocmask(SIG_BLOCK, &just_ours, NULL);
        blocked += timed_work(chunk);
        sigprocmask(SIG_UNBLOCK, &just_ours, NULL); /* the pending one fires here, untimed */
        long before = signals_seen;
        delivered += timed_work(chunk);
        signals += signals_seen - before;
    }
    if (signals == 0) {
        fprintf(stderr, "signal_cost: no signal arrived\n");
        return 1;
    }
    printf("timer signal: %.0f ns per signal, empty handler (%ld signals at %ld Hz)\n",
           (delivered - blocked) / (double)signals * 1e9, signals, rate);
    return 0;
}
