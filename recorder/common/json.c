/* Implementation of json.h. */
#include "common/json.h"

/* Length of the valid UTF-8 sequence starting at p (1-4), or 0. */
static int utf8_sequence(const unsigned char *p) {
    int n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && p[0] < 0xc2) return 0;                  /* overlong */
    if (n == 3 && p[0] == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
    if (n == 3 && p[0] == 0xed && p[1] >= 0xa0) return 0; /* surrogate */
    if (n == 4 && (p[0] > 0xf4 || (p[0] == 0xf4 && p[1] >= 0x90) || (p[0] == 0xf0 && p[1] < 0x90))) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

void json_str(FILE *o, const char *s) {
    fputc('"', o);
    for (const unsigned char *p = (const unsigned char *)s; p && *p;) {
        switch (*p) {
        case '"': fputs("\\\"", o); break;
        case '\\': fputs("\\\\", o); break;
        case '\n': fputs("\\n", o); break;
        case '\r': fputs("\\r", o); break;
        case '\t': fputs("\\t", o); break;
        default:
            if (*p < 0x20) {
                fprintf(o, "\\u%04x", *p);
            } else if (*p >= 0x80) {
                /* Text from a trace may be any bytes: invalid UTF-8 becomes U+FFFD. */
                int n = utf8_sequence(p);
                if (n == 0) {
                    fputs("\\ufffd", o);
                    n = 1;
                } else {
                    fwrite(p, 1, (size_t)n, o);
                }
                p += n;
                continue;
            } else {
                fputc(*p, o);
            }
        }
        p++;
    }
    fputc('"', o);
}
