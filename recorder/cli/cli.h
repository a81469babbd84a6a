/* The astrace command line: one function per subcommand. */
#ifndef ASTRACE_CLI_H
#define ASTRACE_CLI_H

int cmd_record(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_open(int argc, char **argv);
int cmd_diff(int argc, char **argv);

#endif
