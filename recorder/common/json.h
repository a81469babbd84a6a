/* Writing JSON by hand: the one string escaper `dump --json` and `diff
 * --format json` share. */
#ifndef ASTRACE_JSON_H
#define ASTRACE_JSON_H

#include <stdio.h>

/* Writes s as a JSON string, quotes included (NULL writes ""). */
void json_str(FILE *o, const char *s);

#endif
