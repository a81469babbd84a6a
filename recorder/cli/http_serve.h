/* A one-shot HTTP/1.1 file server on loopback, for `astrace open`.
 *
 * It listens on 127.0.0.1 only and hands one file to a browser the way
 * Perfetto's own tools do: GET /<name> gets the bytes with CORS headers for
 * the UI's origin, OPTIONS preflights get the CORS headers, anything else
 * gets a 404 (the UI probes the same port for a trace processor) and the
 * server keeps going. It returns once one client has received the whole
 * file, when `stop_fd` becomes readable (a signal's self-pipe), or when the
 * overall timeout passes. Plain POSIX sockets, non-blocking, several clients
 * at once, partial writes and slow clients handled; SIGPIPE must be ignored
 * by the caller (sends also use MSG_NOSIGNAL).
 */
#ifndef ASTRACE_HTTP_SERVE_H
#define ASTRACE_HTTP_SERVE_H

#include <stddef.h>
#include <stdint.h>

struct http_file {
    int fd;                   /* readable; served with pread, never moved */
    uint64_t size;            /* bytes to serve */
    const char *name;         /* served at "/" + name (the request path is percent-decoded) */
    const char *allow_origin; /* Access-Control-Allow-Origin value */
};

enum http_result { HTTP_SERVED, HTTP_TIMEOUT, HTTP_INTERRUPTED, HTTP_ERROR };

/* Binds 127.0.0.1:port (0: any free port) and listens. Returns the socket
 * (non-blocking, close-on-exec) and the port actually bound in *bound, or -1
 * with errno set and a message in err. */
int http_listen_loopback(uint16_t port, uint16_t *bound, char *err, size_t errlen);

/* Serves `f` on `listen_fd` until one client has received all of it.
 * timeout_ms <= 0 waits without limit. On HTTP_ERROR, err says why. */
enum http_result http_serve_once(int listen_fd, const struct http_file *f, int stop_fd, int64_t timeout_ms, char *err,
                                 size_t errlen);

/* Percent-encodes `s` for a URL: every byte but A-Z a-z 0-9 - _ . ~ and
 * those in `keep` becomes %XX. Returns a malloc'd string. */
char *http_percent_encode(const char *s, const char *keep);

#endif
