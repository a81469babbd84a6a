/* astrace: entry point; dispatches to the subcommands in this folder. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"

static void usage(FILE *out) {
    fputs("astrace " ASTRACE_VERSION " - timeline profiler for Python asyncio programs\n"
          "\n"
          "usage: astrace <command> [options]\n"
          "\n"
          "commands:\n"
          "  record [options] -- CMD [ARGS...]   run CMD and record every Python process it starts\n"
          "  dump [--json] TRACE                 print what a trace holds (tracks, slices, metadata)\n"
          "  open [--no-browser] TRACE           serve TRACE once and open it in ui.perfetto.dev\n"
          "  diff [options] BEFORE AFTER         what changed between two recordings (loop, tasks, awaits)\n"
          "\n"
          "Run 'astrace <command> --help' for a command's options.\n"
          "Open a trace at https://ui.perfetto.dev (Open trace file).\n",
          out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "record")) return cmd_record(argc - 1, argv + 1);
    if (!strcmp(cmd, "dump")) return cmd_dump(argc - 1, argv + 1);
    if (!strcmp(cmd, "open")) return cmd_open(argc - 1, argv + 1);
    if (!strcmp(cmd, "diff")) return cmd_diff(argc - 1, argv + 1);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        puts("astrace " ASTRACE_VERSION);
        return 0;
    }
    warnx_("unknown command '%s'", cmd);
    usage(stderr);
    return 2;
}
