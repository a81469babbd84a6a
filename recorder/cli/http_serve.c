/* The one-shot loopback HTTP file server behind `astrace open`; see
 * http_serve.h. One poll() loop over the listening socket, a stop fd and up
 * to MAX_CONNS clients, each a small state machine:
 *   READ  the request head (bounded size and time),
 *   WRITE the response head, then the file in chunks (partial sends resume),
 *   DRAIN after shutdown(SHUT_WR): read and discard until the client closes,
 *         so close() never resets a connection that still has unread input.
 * The file counts as served when its last byte was sent and the client then
 * closed (or the short drain wait ended).
 */
#include "cli/http_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"

#define MAX_CONNS 32
#define REQ_MAX 16384          /* request head limit */
#define CHUNK (256 * 1024)     /* file bytes per pread */
#define IO_IDLE_MS 30000       /* a client making no progress this long is dropped */
#define DRAIN_MS 5000          /* wait for the client to close after the response */
#define SEND_BUDGET (4u << 20) /* bytes per connection per loop turn, for fairness */

enum conn_state { C_FREE, C_READ, C_WRITE, C_DRAIN };

struct conn {
    int fd;
    enum conn_state st;
    char req[REQ_MAX];
    size_t reqlen;
    char head[1024];
    size_t headlen, headoff;
    int has_body;       /* GET of the file: the body follows the head */
    uint64_t body_off;  /* next file offset to read */
    uint64_t body_sent; /* file bytes sent */
    uint8_t *buf;       /* CHUNK bytes, allocated on first use */
    size_t buflen, bufoff;
    int served;          /* the whole file went out on this connection */
    int64_t deadline_ms; /* idle or drain deadline (monotonic) */
};

static int64_t mono_ms(void) {
    return (int64_t)(now_monotonic_ns() / 1000000u);
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int http_listen_loopback(uint16_t port, uint16_t *bound, char *err, size_t errlen) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        seterr(err, errlen, "socket: %s", strerror(e));
        errno = e;
        return -1;
    }
    /* Lets a restart bind while old connections sit in TIME_WAIT; on Linux it
     * does not allow two listeners on one port, so "in use" is still caught. */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        seterr(err, errlen, "cannot listen on 127.0.0.1:%u: %s", (unsigned)port, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int e = errno;
        seterr(err, errlen, "getsockname: %s", strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

char *http_percent_encode(const char *s, const char *keep) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = xmalloc(n * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~' || (keep && strchr(keep, c))) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = 0;
    return out;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes %XX in place; -1 on a malformed escape or an encoded NUL. */
static int percent_decode(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int h = hexval((unsigned char)p[1]), l = h < 0 ? -1 : hexval((unsigned char)p[2]);
        if (h < 0 || l < 0 || (h == 0 && l == 0)) return -1;
        *o++ = (char)(h * 16 + l);
        p += 2;
    }
    *o = 0;
    return 0;
}

/* Finds header `name` in the request head; copies its trimmed value. */
static int find_header(const char *head, const char *name, char *out, size_t outlen) {
    size_t nlen = strlen(name);
    const char *line = strchr(head, '\n');
    while (line && line[1]) {
        line++;
        if (!strncasecmp(line, name, nlen) && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t k = 0;
            while (v[k] && v[k] != '\r' && v[k] != '\n') k++;
            while (k && (v[k - 1] == ' ' || v[k - 1] == '\t')) k--;
            if (k >= outlen) k = outlen - 1;
            memcpy(out, v, k);
            out[k] = 0;
            return 1;
        }
        line = strchr(line, '\n');
    }
    return 0;
}

/* Only visible ASCII and spaces go back into a response header. */
static int header_safe(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
    return 1;
}

static void respond(struct conn *c, const struct http_file *f, int status, const char *reason, const char *extra,
                    uint64_t length, int has_body) {
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: astrace/" ASTRACE_VERSION "\r\n"
                     "Access-Control-Allow-Origin: %s\r\n"
                     "Cache-Control: no-cache\r\n"
                     "%s"
                     "Content-Length: %llu\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     status, reason, f->allow_origin, extra ? extra : "", (unsigned long long)length);
    if (n < 0 || (size_t)n >= sizeof c->head) n = 0; /* cannot happen: every part is bounded */
    c->headlen = (size_t)n;
    c->headoff = 0;
    c->has_body = has_body;
    c->st = C_WRITE;
    c->deadline_ms = mono_ms() + IO_IDLE_MS;
}

/* A short text body for errors, sent after the head (it fits in `head`). */
static void respond_text(struct conn *c, const struct http_file *f, int status, const char *reason, const char *extra) {
    char body[128];
    int blen = snprintf(body, sizeof body, "%d %s\n", status, reason);
    respond(c, f, status, reason, extra, (uint64_t)blen, 0);
    if (c->headlen + (size_t)blen < sizeof c->head) {
        memcpy(c->head + c->headlen, body, (size_t)blen);
        c->headlen += (size_t)blen;
    }
}

static void handle_request(struct conn *c, const struct http_file *f) {
    /* Request line: METHOD SP TARGET SP VERSION */
    char method[16], target[4096];
    const char *eol = strchr(c->req, '\n'); /* the head is complete: there is one */
    const char *sp1 = eol ? memchr(c->req, ' ', (size_t)(eol - c->req)) : NULL;
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - c->req) >= sizeof method || (size_t)(sp2 - sp1 - 1) >= sizeof target ||
        strncmp(sp2 + 1, "HTTP/", 5) != 0) {
        respond_text(c, f, 400, "Bad Request", NULL);
        return;
    }
    memcpy(method, c->req, (size_t)(sp1 - c->req));
    method[sp1 - c->req] = 0;
    memcpy(target, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    target[sp2 - sp1 - 1] = 0;
    char *q = strpbrk(target, "?#");
    if (q) *q = 0;
    int is_file = target[0] == '/' && percent_decode(target) == 0 && !strcmp(target + 1, f->name);

    if (!strcmp(method, "OPTIONS")) {
        /* CORS preflight: allow what the UI may ask for; Chrome's Private
         * Network Access asks before a public page may reach loopback. */
        char extra[512], hdrs[256], pna[16];
        int n = snprintf(extra, sizeof extra,
                         "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
                         "Access-Control-Max-Age: 600\r\n");
        if (find_header(c->req, "Access-Control-Request-Headers", hdrs, sizeof hdrs) && header_safe(hdrs) && hdrs[0])
            n += snprintf(extra + n, sizeof extra - (size_t)n, "Access-Control-Allow-Headers: %s\r\n", hdrs);
        if (find_header(c->req, "Access-Control-Request-Private-Network", pna, sizeof pna))
            snprintf(extra + n, sizeof extra - (size_t)n, "Access-Control-Allow-Private-Network: true\r\n");
        respond(c, f, 204, "No Content", extra, 0, 0);
        return;
    }
    int get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD");
    if (is_file && (get || head)) {
        respond(c, f, 200, "OK", "Content-Type: application/octet-stream\r\n", f->size, get);
        return;
    }
    if (is_file) {
        respond_text(c, f, 405, "Method Not Allowed", "Allow: GET, HEAD, OPTIONS\r\n");
        return;
    }
    if (head)
        respond(c, f, 404, "Not Found", NULL, 0, 0);
    else
        respond_text(c, f, 404, "Not Found", "Content-Type: text/plain\r\n");
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->st = C_FREE;
}

static void start_drain(struct conn *c) {
    shutdown(c->fd, SHUT_WR);
    c->st = C_DRAIN;
    c->deadline_ms = mono_ms() + DRAIN_MS;
}

/* Reads the request head. Returns -1 if the connection is done. */
static int on_readable(struct conn *c, const struct http_file *f) {
    for (;;) {
        ssize_t n = recv(c->fd, c->req + c->reqlen, REQ_MAX - 1 - c->reqlen, 0);
        if (n > 0) {
            c->reqlen += (size_t)n;
            c->req[c->reqlen] = 0;
            c->deadline_ms = mono_ms() + IO_IDLE_MS;
            if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
                handle_request(c, f);
                return 0;
            }
            if (c->reqlen == REQ_MAX - 1) {
                respond_text(c, f, 431, "Request Header Fields Too Large", NULL);
                return 0;
            }
            continue;
        }
        if (n == 0) return -1; /* closed before a full request */
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
}

/* Sends what it can. Returns -1 on a dead connection or a file error. */
static int on_writable(struct conn *c, const struct http_file *f, char *err, size_t errlen) {
    size_t budget = SEND_BUDGET;
    while (budget) {
        const uint8_t *p;
        size_t len;
        if (c->headoff < c->headlen) {
            p = (const uint8_t *)c->head + c->headoff;
            len = c->headlen - c->headoff;
        } else if (c->has_body && c->body_sent < f->size) {
            if (c->bufoff == c->buflen) {
                if (!c->buf) c->buf = xmalloc(CHUNK);
                uint64_t want = f->size - c->body_off;
                if (want > CHUNK) want = CHUNK;
                ssize_t r = pread(f->fd, c->buf, (size_t)want, (off_t)c->body_off);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    seterr(err, errlen, "reading the trace at offset %llu: %s", (unsigned long long)c->body_off,
                           r < 0 ? strerror(errno) : "file shrank while being served");
                    return -1;
                }
                c->body_off += (uint64_t)r;
                c->buflen = (size_t)r;
                c->bufoff = 0;
            }
            p = c->buf + c->bufoff;
            len = c->buflen - c->bufoff;
        } else {
            c->served = c->has_body;
            start_drain(c);
            return 0;
        }
        if (len > budget) len = budget;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1; /* EPIPE, ECONNRESET: the client went away */
        }
        budget -= (size_t)n;
        c->deadline_ms = mono_ms() + IO_IDLE_MS;
        if (c->headoff < c->headlen) {
            c->headoff += (size_t)n;
        } else {
            c->bufoff += (size_t)n;
            c->body_sent += (uint64_t)n;
        }
    }
    return 0;
}

/* Discards input after the response. Returns -1 once the client closed. */
static int on_drain(struct conn *c) {
    char sink[4096];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) continue;
        if (n == 0) return -1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
}

enum http_result http_serve_once(int listen_fd, const struct http_file *f, int stop_fd, int64_t timeout_ms, char *err,
                                 size_t errlen) {
    static struct conn conns[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) {
        memset(&conns[i], 0, sizeof conns[i]);
        conns[i].fd = -1;
    }
    int64_t end_ms = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
    enum http_result result = HTTP_ERROR;
    int done = 0; /* the file went out whole; waiting for that client to close */

    for (;;) {
        struct pollfd pfd[MAX_CONNS + 2];
        int idx[MAX_CONNS + 2];
        nfds_t n = 0;
        int nconn = 0;
        int64_t now = mono_ms();
        /* The timeout is for nobody fetching the file: a download under way
         * may finish (a stalled one is dropped by the idle timeout). */
        int transferring = 0;
        for (int i = 0; i < MAX_CONNS; i++)
            if (conns[i].st == C_WRITE && conns[i].has_body) transferring = 1;
        int64_t wake = done || transferring ? 0 : end_ms;
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->st == C_FREE) continue;
            nconn++;
            if (!wake || c->deadline_ms < wake) wake = c->deadline_ms;
            pfd[n].fd = c->fd;
            pfd[n].events = c->st == C_WRITE ? POLLOUT : POLLIN;
            idx[n++] = i;
        }
        if (end_ms && now >= end_ms && !done && !transferring) {
            result = HTTP_TIMEOUT;
            break;
        }
        int listen_at = -1;
        if (!done && nconn < MAX_CONNS) { /* once served, take no new clients */
            pfd[n].fd = listen_fd;
            pfd[n].events = POLLIN;
            listen_at = (int)n;
            idx[n++] = -1;
        }
        pfd[n].fd = stop_fd;
        pfd[n].events = POLLIN;
        int stop_at = (int)n;
        idx[n++] = -1;

        int wait = -1;
        if (wake) {
            int64_t d = wake - now;
            wait = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
        }
        int r = poll(pfd, n, wait);
        if (r < 0) {
            if (errno == EINTR) continue; /* a signal: its byte is in stop_fd */
            seterr(err, errlen, "poll: %s", strerror(errno));
            break;
        }
        if (pfd[stop_at].revents) {
            result = HTTP_INTERRUPTED;
            break;
        }
        if (listen_at >= 0 && (pfd[listen_at].revents & POLLIN)) {
            for (int i = 0; i < MAX_CONNS; i++) {
                if (conns[i].st != C_FREE) continue;
                int cfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) break; /* EAGAIN, or a client that left already */
                conns[i].fd = cfd;
                conns[i].st = C_READ;
                conns[i].deadline_ms = mono_ms() + IO_IDLE_MS;
            }
        }
        int failed = 0, finished = 0;
        for (nfds_t k = 0; k < n; k++) {
            if (idx[k] < 0) continue;
            struct conn *c = &conns[idx[k]];
            short ev = pfd[k].revents;
            int gone = 0;
            if (c->st == C_READ && (ev & (POLLIN | POLLHUP | POLLERR))) gone = on_readable(c, f) < 0;
            if (!gone && c->st == C_WRITE && (ev & (POLLOUT | POLLHUP | POLLERR))) {
                err[0] = 0;
                gone = on_writable(c, f, err, errlen) < 0;
                if (gone && err[0]) failed = 1;
            }
            if (!gone && c->st == C_DRAIN && (ev & (POLLIN | POLLHUP | POLLERR))) gone = on_drain(c) < 0;
            if (!gone && mono_ms() >= c->deadline_ms) gone = 1; /* idle client, or drain wait over */
            if (c->served) done = 1;
            if (gone && c->served) finished = 1;
            if (gone) conn_close(c);
        }
        if (finished) {
            result = HTTP_SERVED;
            break;
        }
        if (failed) break;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].st != C_FREE) conn_close(&conns[i]);
    return result;
}
