/* astrace open: hands a trace to ui.perfetto.dev the way Perfetto's own
 * tools/open_trace_in_ui does. It checks the file is a trace, serves it once
 * from http://127.0.0.1:9001/<name> (the only port the UI's Content Security
 * Policy allows), prints the https://ui.perfetto.dev/#!/?url=... link with
 * startup commands that pin and expand the asyncio loop threads and show
 * the slowest loop iterations, opens it in a browser if one is available,
 * and exits once the UI has fetched the file (or on Ctrl-C, or timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/http_serve.h"
#include "common/util.h"
#include "reader/trace_reader.h"

#define UI_ORIGIN "https://ui.perfetto.dev"
#define UI_PORT 9001

/* The startup commands: the same JSON as viewer-config/startup_commands.json
 * (tests/e2e/test_open.py checks they are equal). Track names in the UI are
 * "<process> <pid>" for process groups and "<thread> <tid>" for thread
 * tracks, so: expand the process groups, pin each thread track (a track
 * under a process group, not the process's own track), expand and pin the
 * "Tasks" groups, and list the slowest loop iterations. */
static const char startup_commands_json[] =
    "["
    "{\"id\":\"dev.perfetto.ExpandTracksByRegex\",\"args\":[\"^[^>]+ [0-9]+$\",\"path\"]},"
    "{\"id\":\"dev.perfetto.PinTracksByRegex\",\"args\":[\"^([^>]+ [0-9]+) > (?!\\\\1$)[^>]+ [0-9]+$\",\"path\"]},"
    "{\"id\":\"dev.perfetto.ExpandTracksByRegex\",\"args\":[\"^Tasks$\",\"name\"]},"
    "{\"id\":\"dev.perfetto.PinTracksByRegex\",\"args\":[\"^Tasks$\",\"name\"]},"
    "{\"id\":\"dev.perfetto.RunQueryAndShowTab\",\"args\":["
    "\"select it.id, it.ts, it.dur, it.track_id, round(it.dur / 1e6, 3) as dur_ms, "
    "round(ifnull((select sum(s.dur) from slice s where s.parent_id = it.id and s.name = 'select'), 0) / 1e6, 3) "
    "as select_ms, "
    "(select group_concat(c.name || ' ' || printf('%.3f', c.dur / 1e6) || ' ms', ', ') "
    "from (select name, dur from slice where parent_id = it.id and name != 'select' order by dur desc) c) "
    "as callbacks, "
    "t.name as thread, t.tid, p.pid, p.name as process "
    "from slice it join thread_track tt on tt.id = it.track_id join thread t on t.utid = tt.utid "
    "left join process p on p.upid = t.upid "
    "where it.name = 'loop iteration' order by it.dur desc limit 20\"]}"
    "]";

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig) {
    int e = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(stop_pipe[1], &b, 1);
    (void)r;
    errno = e;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max) return -1;
    *out = v;
    return 0;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void human_size(uint64_t n, char *out, size_t len) {
    if (n >= (1u << 20))
        snprintf(out, len, "%.1f MiB", (double)n / (1u << 20));
    else if (n >= 1024)
        snprintf(out, len, "%.1f KiB", (double)n / 1024);
    else
        snprintf(out, len, "%llu bytes", (unsigned long long)n);
}

/* Starts $BROWSER (a ':'-separated list, as Python's webbrowser reads it)
 * or, in a graphical session, xdg-open, detached (double fork: no zombie,
 * no controlling output). Returns 1 if something was started. Failures of
 * the browser itself are ignored: the URL is on stdout. */
static int launch_browser(const char *url) {
    const char *browser = getenv("BROWSER");
    int gui = getenv("DISPLAY") || getenv("WAYLAND_DISPLAY");
    if ((!browser || !*browser) && !gui) return 0;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        if (fork() != 0) _exit(0);
        setsid();
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        signal(SIGPIPE, SIG_DFL);
        if (browser && *browser) {
            char *list = strdup(browser);
            for (char *save = NULL, *b = list ? strtok_r(list, ":", &save) : NULL; b; b = strtok_r(NULL, ":", &save))
                execlp(b, b, url, (char *)NULL);
        }
        if (gui) execlp("xdg-open", "xdg-open", url, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return 1;
}

static void usage(FILE *o) {
    fputs("usage: astrace open [--no-browser] [--port PORT] [--timeout SECONDS] TRACE\n"
          "\n"
          "Serves TRACE once from http://127.0.0.1:9001/<name> and prints (and opens, if a\n"
          "browser is available) the ui.perfetto.dev link that loads it, with startup commands\n"
          "that pin the asyncio loop threads and list the slowest loop iterations. Exits once\n"
          "the UI has fetched the file, on Ctrl-C, or after the timeout. Only 127.0.0.1 is used.\n"
          "\n"
          "  --no-browser       print the link only\n"
          "  --port PORT        listen on PORT (default 9001, the only port ui.perfetto.dev\n"
          "                     accepts; 0 picks a free port, for scripts and tests)\n"
          "  --timeout SECONDS  give up if nobody has fetched the trace by then (default 300;\n"
          "                     0: never); a download under way may finish\n"
          "\n"
          "The startup commands are also in viewer-config/ (startup_commands.json, macros.json,\n"
          "queries/*.sql) for traces opened by hand.\n",
          o);
}

int cmd_open(int argc, char **argv) {
    static const struct option opts[] = {
        {"no-browser", no_argument, 0, 'n'},
        {"port", required_argument, 0, 'p'},
        {"timeout", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int browser = 1, c;
    unsigned long port = UI_PORT, timeout_s = 300;
    optind = 1;
    while ((c = getopt_long(argc, argv, "np:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': browser = 0; break;
        case 'p':
            if (parse_uint(optarg, 65535, &port) != 0) {
                warnx_("open: --port wants a number from 0 to 65535, not '%s'", optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_uint(optarg, 1000000000ul, &timeout_s) != 0) {
                warnx_("open: --timeout wants a number of seconds (0: no limit), not '%s'", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        warnx_("open: give exactly one trace file");
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];

    /* Is it a trace? The reader says what is wrong if not. */
    struct trace_model m;
    char err[512];
    if (trace_read_file(path, &m, err, sizeof err) != 0) {
        warnx_("open: %s: %s", path, err);
        trace_model_free(&m);
        return 1;
    }
    trace_model_free(&m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        warnx_("open: %s: cannot open: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0) close(fd);
        return 1;
    }
    const char *name = base_name(path);

    /* Ctrl-C / SIGTERM end the wait through a self-pipe; SIGPIPE is ignored
     * (a browser closing a connection must not kill us). */
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        warnx_("open: pipe: %s", strerror(errno));
        close(fd);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    uint16_t bound = 0;
    int lfd = http_listen_loopback((uint16_t)port, &bound, err, sizeof err);
    if (lfd < 0) {
        if (errno == EADDRINUSE)
            warnx_("open: port %lu on 127.0.0.1 is in use (another 'astrace open', or 'trace_processor server'?); "
                   "stop it and try again%s",
                   port, port == UI_PORT ? "" : ", or pick another --port");
        else
            warnx_("open: %s", err);
        close(fd);
        return 1;
    }
    if (bound != UI_PORT)
        warnx_("open: serving on port %u: ui.perfetto.dev only loads traces from 127.0.0.1:%d (its Content "
               "Security Policy), so the UI will refuse this link; use it from your own tools",
               (unsigned)bound, UI_PORT);

    char *enc_name = http_percent_encode(name, NULL);
    char file_url[1024];
    snprintf(file_url, sizeof file_url, "http://127.0.0.1:%u/%s", (unsigned)bound, enc_name);
    /* Inside the UI's #!/? query, values are percent-decoded once: keep ':'
     * and '/' readable, escape the rest (a '%' of the path becomes %25). */
    char *enc_url = http_percent_encode(file_url, ":/");
    char *enc_cmds = http_percent_encode(startup_commands_json, NULL);
    size_t ulen = strlen(UI_ORIGIN) + strlen(enc_url) + strlen(enc_cmds) + 64;
    char *ui_url = xmalloc(ulen);
    snprintf(ui_url, ulen, "%s/#!/?url=%s&referrer=astrace&startupCommands=%s", UI_ORIGIN, enc_url, enc_cmds);
    puts(ui_url);
    fflush(stdout);
    free(enc_url);
    free(enc_cmds);
    free(enc_name);

    char size[32];
    human_size((uint64_t)st.st_size, size, sizeof size);
    fprintf(stderr, "astrace: serving %s (%s) at %s until the UI fetches it", name, size, file_url);
    if (timeout_s)
        fprintf(stderr, " (Ctrl-C to stop; gives up after %lu s)\n", timeout_s);
    else
        fputs(" (Ctrl-C to stop)\n", stderr);
    if (browser && launch_browser(ui_url))
        fputs("astrace: opening it in your browser\n", stderr);
    else
        fputs("astrace: open the link above in a browser\n", stderr);
    free(ui_url);

    struct http_file f = {.fd = fd, .size = (uint64_t)st.st_size, .name = name, .allow_origin = UI_ORIGIN};
    enum http_result r = http_serve_once(lfd, &f, stop_pipe[0], (int64_t)timeout_s * 1000, err, sizeof err);
    close(lfd);
    close(fd);
    int rc = 1;
    switch (r) {
    case HTTP_SERVED:
        fprintf(stderr, "astrace: the UI fetched %s; done\n", name);
        rc = 0;
        break;
    case HTTP_TIMEOUT:
        warnx_("open: nobody fetched %s within %lu s; giving up (open the link sooner, or use --timeout)", name,
               timeout_s);
        break;
    case HTTP_INTERRUPTED: {
        unsigned char sig = SIGINT;
        if (read(stop_pipe[0], &sig, 1) != 1) sig = SIGINT;
        warnx_("open: stopped by %s before the trace was fetched", strsignal(sig));
        rc = 128 + sig;
        break;
    }
    case HTTP_ERROR: warnx_("open: %s", err); break;
    }
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    return rc;
}
