/* astrace record: runs a command with the astrace bootstrap on PYTHONPATH,
 * drains the shared-memory rings of every Python process it starts into a
 * Perfetto trace, and exits with the command's own status.
 *
 * Signals: SIGINT/SIGQUIT typed at the terminal already reach the command
 * (it shares our process group), so only copies sent to astrace itself
 * (kill, a supervisor) are forwarded; SIGTERM and SIGHUP are always
 * forwarded. Either way astrace keeps draining until the command exits, then
 * finalizes the trace. A third interrupt kills the command and finalizes at
 * once. astrace is a child subreaper, so orphaned grandchildren are reaped
 * here and their exit status lands in the trace.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"
#include "transport/session.h"
#include "writer/encoder.h"
#include "writer/trace_file.h"

#define DEFAULT_RING_SIZE (16u << 20)

static void record_usage(FILE *out) {
    fputs("usage: astrace record [options] -- CMD [ARGS...]\n"
          "\n"
          "Runs CMD exactly as it would run on its own (same stdin/stdout/stderr, exit\n"
          "status and signals) and records every CPython 3.11+ process it starts, its\n"
          "children and grandchildren included, into one Perfetto trace.\n"
          "\n"
          "options:\n"
          "  -o, --output PATH      trace file to write (default: astrace-YYYYmmdd-HHMMSS.pftrace)\n"
          "  -f, --force            overwrite PATH if it exists (default: refuse)\n"
          "      --compression ALG  zstd (default; Perfetto v58+, ui.perfetto.dev),\n"
          "                         deflate (any trace processor since 2019) or none\n"
          "      --buffer-size SIZE per-thread ring size, power of two, e.g. 4M (default 16M);\n"
          "                         a full ring drops events and counts them\n"
          "      --no-tasks         record loop iterations and callbacks only, no task tracks\n"
          "      --no-counters      no loop lag, ready queue, live tasks, RSS or GC counters/slices\n"
          "\n"
          "stack sampler (every thread of every traced process, timers delivering a signal):\n"
          "      --rate HZ          samples per second per thread, 1-10000 (default 1000)\n"
          "      --mode MODE        wall (default): every thread, running or blocked, so time\n"
          "                         in time.sleep or select shows; cpu: threads on CPU only\n"
          "      --native           add native frames (C extensions, libpython, libc) through\n"
          "                         libunwind, merged with the Python frames\n"
          "      --no-sampler       no stack samples\n"
          "      --signal SIG       signal the sampler uses (default SIGPROF; a number or name,\n"
          "                         e.g. SIGRTMIN+3); pick another if the program uses SIGPROF.\n"
          "                         If it installs a handler for it anyway, sampling stops\n"
          "                         in that process and a note says so\n"
          "\n"
          "      --slow-callback-ms N  mark callbacks and loop iterations busy this long (default\n"
          "                         100, like asyncio's debug mode; 0 = off)\n"
          "  -q, --quiet            no progress, notes or summary lines on stderr (progress:\n"
          "                         every 10 s when stderr is a terminal; notes are kept in\n"
          "                         the trace's summary either way)\n"
          "      --stats-json PATH  write the run's numbers (events, bytes, drops, recorder CPU\n"
          "                         time) as JSON to PATH, for benchmarks and scripts\n"
          "  -h, --help             this text\n"
          "\n"
          "Ctrl-C reaches CMD as usual; astrace finalizes the trace when CMD exits. Press\n"
          "Ctrl-C three times to kill CMD and finalize at once. Python started with -I or -E\n"
          "ignores PYTHONPATH and cannot be traced.\n",
          out);
}

/* ---- reaped children ------------------------------------------------------ */

struct reaped {
    pid_t pid;
    int status;
};
static struct reaped reaped_list[1024];
static size_t nreaped;

static void describe_status(int status, char *out, size_t outlen) {
    if (WIFEXITED(status))
        snprintf(out, outlen, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, outlen, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, outlen, "ended (status 0x%x)", status);
}

/* The traced command's own process: its status decides astrace's exit code. */
static pid_t main_pid;
static int main_status, main_reaped;

/* Reaps every exited child (astrace is a subreaper, so that includes orphaned
 * descendants) into reaped_list; returns 1 once `main_pid` has been reaped. */
static int reap_children(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (nreaped == sizeof reaped_list / sizeof *reaped_list) {
            memmove(reaped_list, reaped_list + 1, (nreaped - 1) * sizeof *reaped_list);
            nreaped--;
        }
        reaped_list[nreaped].pid = pid;
        reaped_list[nreaped++].status = status;
        if (pid == main_pid) {
            main_status = status;
            main_reaped = 1;
        }
    }
    return main_reaped;
}

/* The session asks this when it finds a process gone. A process that has
 * just exited is a zombie until reaped, and may be found gone before the
 * SIGCHLD is handled: reaping here first gives its exact status either way. */
static int exit_status_of(pid_t pid, char *out, size_t outlen) {
    reap_children();
    for (size_t i = nreaped; i-- > 0;)
        if (reaped_list[i].pid == pid) {
            describe_status(reaped_list[i].status, out, outlen);
            return 0;
        }
    return -1;
}

/* ---- setup helpers ---------------------------------------------------------- */

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Finds the directory holding sitecustomize.py and _astrace: next to the
 * binary in a build tree, or ../lib/astrace/python when installed. */
static int find_python_dir(char *out, size_t outlen) {
    const char *env = getenv("ASTRACE_PYTHON_DIR");
    char probe[PATH_MAX + 64];
    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    char *dir = dirname(exe);
    const char *cands[2] = {"python", "../lib/astrace/python"};
    for (int i = 0; i < 2; i++) {
        snprintf(probe, sizeof probe, "%s/%s/sitecustomize.py", dir, cands[i]);
        if (file_exists(probe)) {
            snprintf(out, outlen, "%s/%s", dir, cands[i]);
            return 0;
        }
    }
    return -1;
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    else if (*end == 'g' || *end == 'G')
        v <<= 30, end++;
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return -1;
    *out = v;
    return 0;
}

/* Warns about interpreter flags that keep PYTHONPATH from being read. */
static void warn_unreachable_python(char **cmd) {
    const char *base = strrchr(cmd[0], '/');
    base = base ? base + 1 : cmd[0];
    if (strncmp(base, "python", 6) != 0) return;
    for (int i = 1; cmd[i] && cmd[i][0] == '-' && cmd[i][1] != '-'; i++) {
        if (!strcmp(cmd[i], "-c") || !strcmp(cmd[i], "-m")) break;
        if (strpbrk(cmd[i] + 1, "IE")) {
            warnx_("%s ignores PYTHONPATH (%s: %s), so astrace cannot load into it; it runs untraced", base, cmd[i],
                   strchr(cmd[i], 'I') ? "isolated mode" : "environment ignored");
            return;
        }
        if (strchr(cmd[i] + 1, 'S')) {
            warnx_("%s -S skips the site module, so astrace cannot load into it; it runs untraced", base);
            return;
        }
    }
}

/* A signal the sampler may use: a number, SIGNAME/NAME, or SIGRTMIN+N;
 * -1 for one that cannot be caught or is the recorder's own business. */
static int parse_signal(const char *text) {
    const char *name = strncmp(text, "SIG", 3) ? text : text + 3;
    char *end;
    int signo = -1;
    if (*name >= '0' && *name <= '9') {
        long v = strtol(name, &end, 10);
        signo = *end ? -1 : (int)v;
    } else if (!strncmp(name, "RTMIN", 5)) {
        long off = name[5] == '+' ? strtol(name + 6, &end, 10) : 0;
        if (name[5] && (name[5] != '+' || *end)) return -1;
        signo = SIGRTMIN + (int)off;
    } else {
        static const struct {
            const char *name;
            int signo;
        } names[] = {{"PROF", SIGPROF}, {"VTALRM", SIGVTALRM}, {"ALRM", SIGALRM}, {"USR1", SIGUSR1},
                     {"USR2", SIGUSR2}, {"PWR", SIGPWR},       {"URG", SIGURG}};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (!strcmp(name, names[i].name)) signo = names[i].signo;
    }
    if (signo <= 0 || signo > SIGRTMAX || signo == SIGKILL || signo == SIGSTOP || signo == SIGSEGV || signo == SIGBUS ||
        signo == SIGCHLD || signo == SIGINT || signo == SIGTERM || signo == SIGHUP)
        return -1;
    return signo;
}

/* Numbers for benchmarks: what was recorded and what recording cost here. */
static void write_stats(const char *path, const struct session *sess, const struct encoder *enc,
                        const struct trace_file *tf, uint64_t dropped, uint64_t wall_start) {
    FILE *f = fopen(path, "w");
    if (!f) {
        warnx_("cannot write --stats-json %s: %s", path, strerror(errno));
        return;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    fprintf(f,
            "{\"records\": %llu, \"trace_events\": %llu, \"events_dropped\": %llu, \"processes\": %u, "
            "\"trace_bytes\": %llu, \"uncompressed_bytes\": %llu, \"packets\": %llu, \"bundles\": %llu, "
            "\"samples\": %llu, \"samples_dropped\": %llu, \"samples_unreadable\": %llu, "
            "\"recorder_cpu_s\": %.6f, \"wall_s\": %.6f}\n",
            (unsigned long long)sess->records, (unsigned long long)enc->events, (unsigned long long)dropped,
            sess->processes, (unsigned long long)tf->bytes_out, (unsigned long long)tf->bytes_in,
            (unsigned long long)tf->packets, (unsigned long long)tf->bundles, (unsigned long long)enc->samples,
            (unsigned long long)enc->samples_dropped, (unsigned long long)enc->samples_unreadable, cpu,
            (now_monotonic_ns() - wall_start) / 1e9);
    fclose(f);
}

/* ---- main ------------------------------------------------------------------ */

int cmd_record(int argc, char **argv) {
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},
        {"compression", required_argument, 0, 'c'},
        {"buffer-size", required_argument, 0, 'b'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"stats-json", required_argument, 0, 's'},
        {"no-tasks", no_argument, 0, 'T'},
        {"no-counters", no_argument, 0, 'C'},
        {"slow-callback-ms", required_argument, 0, 'S'},
        {"rate", required_argument, 0, 'R'},
        {"mode", required_argument, 0, 'M'},
        {"native", no_argument, 0, 'N'},
        {"no-sampler", no_argument, 0, 'P'},
        {"signal", required_argument, 0, 'G'},
        {0, 0, 0, 0},
    };
    const char *output = NULL, *stats_path = NULL;
    int force = 0, quiet = 0, tasks = 1, counters = 1;
    int rate = 1000, cpu_mode = 0, native = 0, sample_signal = SIGPROF;
    double slow_ms = 100;
    enum trace_compression comp = TRACE_COMPRESS_ZSTD;
    uint64_t ring_size = DEFAULT_RING_SIZE;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+o:fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'c':
            if (trace_compression_parse(optarg, &comp) != 0) {
                warnx_("--compression must be zstd, deflate or none, not '%s'", optarg);
                return 2;
            }
            break;
        case 'b':
            if (parse_size(optarg, &ring_size) != 0 || ring_size < 4096 || ring_size > (1ull << 30) ||
                (ring_size & (ring_size - 1))) {
                warnx_("--buffer-size must be a power of two between 4K and 1G, not '%s'", optarg);
                return 2;
            }
            break;
        case 's': stats_path = optarg; break;
        case 'T': tasks = 0; break;
        case 'C': counters = 0; break;
        case 'S': {
            char *end;
            slow_ms = strtod(optarg, &end);
            if (*end || end == optarg || !(slow_ms >= 0) || slow_ms > 1e9) {
                warnx_("--slow-callback-ms must be a number of milliseconds, not '%s'", optarg);
                return 2;
            }
            break;
        }
        case 'R': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 10000) {
                warnx_("--rate must be a number of samples per second between 1 and 10000, not '%s'", optarg);
                return 2;
            }
            rate = (int)v;
            break;
        }
        case 'M':
            if (!strcmp(optarg, "wall") || !strcmp(optarg, "cpu")) {
                cpu_mode = !strcmp(optarg, "cpu");
            } else {
                warnx_("--mode must be wall or cpu, not '%s'", optarg);
                return 2;
            }
            break;
        case 'N': native = 1; break;
        case 'P': rate = 0; break;
        case 'G':
            if ((sample_signal = parse_signal(optarg)) <= 0) {
                warnx_("--signal must be a signal a program can catch (SIGPROF, SIGRTMIN+N, SIGUSR2, a "
                       "number), not '%s'",
                       optarg);
                return 2;
            }
            break;
        case 'h': record_usage(stdout); return 0;
        default: record_usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        warnx_("record: no command given");
        record_usage(stderr);
        return 2;
    }
    char **cmd = argv + optind;

    char default_out[64];
    if (!output) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(default_out, sizeof default_out, "astrace-%Y%m%d-%H%M%S.pftrace", &tm);
        output = default_out;
    }
    char pydir[PATH_MAX];
    if (find_python_dir(pydir, sizeof pydir) != 0) {
        warnx_("cannot find astrace's Python bootstrap (sitecustomize.py) next to the astrace binary; "
               "set ASTRACE_PYTHON_DIR");
        return 2;
    }

    char err[512];
    struct trace_file tf;
    if (trace_file_open(&tf, output, comp, force, err, sizeof err) != 0) {
        warnx_("%s", err);
        return 2;
    }
    struct session sess;
    if (session_create(&sess, err, sizeof err) != 0) {
        warnx_("%s", err);
        trace_file_close(&tf);
        unlink(output);
        return 2;
    }
    sess.exit_status_of = exit_status_of;
    sess.quiet_notes = quiet;
    warn_unreachable_python(cmd);

    char sampler_desc[64] = "off";
    if (rate)
        snprintf(sampler_desc, sizeof sampler_desc, "%d Hz %s%s, signal %d", rate, cpu_mode ? "cpu" : "wall",
                 native ? " native" : "", sample_signal);
    struct encoder enc;
    encoder_init(&enc, &tf);
    enc.counters = counters;
    enc.slow_ns = (uint64_t)(slow_ms * 1e6);
    struct enc_session_info info = {
        .argv = (const char *const *)cmd,
        .argc = argc - optind,
        .compression = trace_compression_name(comp),
        .start_realtime_ns = now_realtime_ns(),
        .start_boottime_ns = now_boottime_ns(),
        .ring_size = ring_size,
        .tasks = tasks,
        .sampler = sampler_desc,
    };
    /* Records carry TSC timestamps where the kernel keeps time with the TSC
     * (runtime/clock.h, transport/tsc_map.h); ASTRACE_CLOCK=boottime says
     * never. */
    const char *clock_wanted = getenv("ASTRACE_CLOCK");
    int tsc_clock = (!clock_wanted || !strcmp(clock_wanted, "tsc")) && tsc_map_usable();
    info.record_clock = tsc_clock ? "tsc" : "boottime";
    encoder_begin_session(&enc, &info);

    /* Environment for the command. */
    const char *old_pp = getenv("PYTHONPATH");
    struct buf pp = {0};
    buf_append(&pp, pydir, strlen(pydir));
    if (old_pp && *old_pp) {
        buf_append(&pp, ":", 1);
        buf_append(&pp, old_pp, strlen(old_pp));
    }
    buf_append(&pp, "", 1);
    setenv("PYTHONPATH", (char *)pp.data, 1);
    buf_free(&pp);
    setenv("ASTRACE_SESSION", sess.dir, 1);
    setenv("ASTRACE_CLOCK", info.record_clock, 1);
    char rs[32];
    snprintf(rs, sizeof rs, "%llu", (unsigned long long)ring_size);
    setenv("ASTRACE_RING_SIZE", rs, 1);
    setenv("ASTRACE_TASKS", tasks ? "1" : "0", 1);
    setenv("ASTRACE_COUNTERS", counters ? "1" : "0", 1);
    char num[32];
    snprintf(num, sizeof num, "%d", rate);
    setenv("ASTRACE_SAMPLE_RATE", num, 1);
    setenv("ASTRACE_SAMPLE_MODE", cpu_mode ? "cpu" : "wall", 1);
    setenv("ASTRACE_SAMPLE_NATIVE", native ? "1" : "0", 1);
    snprintf(num, sizeof num, "%d", sample_signal);
    setenv("ASTRACE_SAMPLE_SIGNAL", num, 1);

    sigset_t handled, old_mask;
    sigemptyset(&handled);
    int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaddset(&handled, sigs[i]);
    sigprocmask(SIG_BLOCK, &handled, &old_mask);
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    fflush(NULL);
    pid_t child = fork();
    if (child < 0) {
        warnx_("fork: %s", strerror(errno));
        return 2;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        execvp(cmd[0], cmd);
        int e = errno;
        fprintf(stderr, "astrace: cannot run '%s': %s\n", cmd[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    main_pid = child;

    /* The recorder is background work beside the program it records: as
     * SCHED_BATCH (same CPU share as now, but a waking recorder does not
     * preempt a running thread) it drains the rings between the program's
     * time slices instead of cutting into them. Measured on aiohttp under wrk
     * with both cores busy, 8 alternating triples: a median 0.935 of untraced
     * requests/s as SCHED_OTHER, 0.951 as SCHED_BATCH, no events dropped. Set
     * after fork(): the program keeps its own policy. */
    struct sched_param batch_param = {0};
    (void)sched_setscheduler(0, SCHED_BATCH, &batch_param); /* unprivileged; if refused, SCHED_OTHER is fine */
    uint64_t wall_start = now_monotonic_ns();
    int main_done = 0, interrupts = 0;
    uint64_t last_flush = now_monotonic_ns(), last_scan = 0, last_rss = 0, last_progress = last_flush;
    /* Progress on long runs: a line every 10 s, only when stderr is a terminal. */
    int progress = !quiet && isatty(STDERR_FILENO);
    uint64_t progress_every = 10000ull * 1000 * 1000;
    if (getenv("ASTRACE_PROGRESS_MS")) progress_every = strtoull(getenv("ASTRACE_PROGRESS_MS"), NULL, 10) * 1000000ull;
    while (!main_done) {
        struct timespec tmo = {0, 5 * 1000 * 1000};
        siginfo_t si;
        int sig = sigtimedwait(&handled, &si, &tmo);
        if (sig > 0) {
            if (sig == SIGCHLD) {
                main_done = reap_children();
            } else {
                int from_tty = si.si_code == SI_KERNEL && (sig == SIGINT || sig == SIGQUIT);
                if (sig == SIGINT && ++interrupts >= 3) {
                    warnx_("third interrupt: killing %s and finalizing the trace", cmd[0]);
                    kill(child, SIGKILL);
                } else if (!from_tty) {
                    kill(child, sig);
                }
            }
        }
        uint64_t now = now_monotonic_ns();
        if (now - last_scan > 20 * 1000 * 1000) {
            session_scan(&sess, &enc);
            session_reap(&sess, &enc, 0);
            last_scan = now;
        }
        session_drain(&sess, &enc);
        if (counters && now - last_rss >= 50ull * 1000 * 1000) { /* RSS at 20 Hz, read from outside */
            session_sample_rss(&sess);
            last_rss = now;
        }
        if (progress && progress_every && now - last_progress >= progress_every) {
            fprintf(
                stderr, "astrace: recording %.0f s: %llu events from %u process%s, %.1f MiB written, %llu dropped\n",
                (now - wall_start) / 1e9, (unsigned long long)sess.records, sess.processes,
                sess.processes == 1 ? "" : "es", tf.bytes_out / 1048576.0, (unsigned long long)session_dropped(&sess));
            last_progress = now;
        }
        if (now - last_flush > 1000ull * 1000 * 1000) {
            trace_file_flush(&tf);
            last_flush = now;
        }
        if (!main_done) main_done = reap_children();
    }

    /* The command is done: collect what its processes left, then finish. */
    reap_children();
    session_scan(&sess, &enc);
    session_drain(&sess, &enc);
    session_reap(&sess, &enc, 1);
    uint64_t dropped = session_dropped(&sess);
    const char *notes = sess.notes.len ? (const char *)sess.notes.data : "";
    encoder_end_session(&enc, dropped, sess.processes, notes);
    int write_failed = trace_file_close(&tf) != 0;
    if (write_failed) warnx_("the trace is incomplete: %s", tf.error);
    if (!quiet) {
        char how[128];
        describe_status(main_status, how, sizeof how);
        if (sess.processes == 0 && sess.notes.len)
            warnx_("no Python process was traced (see the reasons above)");
        else if (sess.processes == 0)
            warnx_("no Python process was traced: %s did not start a CPython 3.11+ that loaded astrace "
                   "(not a Python program, or Python run with -I/-E/-S)",
                   cmd[0]);
        uint64_t events = sess.records > enc.samples ? sess.records - enc.samples : 0;
        fprintf(stderr,
                "astrace: wrote %s (%.1f KiB, %llu events and %llu stack samples from %u process%s, %llu dropped); "
                "%s %s\n",
                output, tf.bytes_out / 1024.0, (unsigned long long)events, (unsigned long long)enc.samples,
                sess.processes, sess.processes == 1 ? "" : "es", (unsigned long long)dropped, cmd[0], how);
        if (enc.samples_dropped)
            warnx_("%llu stack samples were dropped because a sample ring was full (ASTRACE_SAMPLE_RING_SIZE, "
                   "default 1M per thread, or a lower --rate)",
                   (unsigned long long)enc.samples_dropped);
        if (enc.samples_unreadable)
            warnx_("%llu stack samples were skipped: the stack could not be read at that moment",
                   (unsigned long long)enc.samples_unreadable);
        if (dropped)
            warnx_("%llu events were dropped because a ring was full; try a larger --buffer-size",
                   (unsigned long long)dropped);
        if (enc.slow_callbacks)
            warnx_("%llu slow callback%s (>= %g ms); the slowest: %s, %.1f ms", (unsigned long long)enc.slow_callbacks,
                   enc.slow_callbacks == 1 ? "" : "s", slow_ms, enc.slowest_name, enc.slowest_ns / 1e6);
    }
    if (stats_path) write_stats(stats_path, &sess, &enc, &tf, dropped, wall_start);
    session_destroy(&sess);
    encoder_free(&enc);

    if (WIFSIGNALED(main_status)) {
        int sig = WTERMSIG(main_status);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        return 128 + sig;
    }
    if (write_failed) return WEXITSTATUS(main_status) ? WEXITSTATUS(main_status) : 1;
    return WEXITSTATUS(main_status);
}
