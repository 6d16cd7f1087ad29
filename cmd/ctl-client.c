/* tlbd: the client side of the control channel (see ctl-client.h): connect
 * to the socket, send one command line, read the reply up to the server's
 * close, and check that it ends as a tlbd reply does.  Main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl-client.h"
#include "options.h"

#define REPLY_MAX (1024 * 1024) /* more is not a tlbd reply */

/* Print "PROGRAM: 'PATH': WHAT" and exit TLBD_EXIT_USAGE. */
#define cannot(path, fmt, ...)                                                 \
    tlbd_exit(TLBD_EXIT_USAGE, "'%s': " fmt, path, ##__VA_ARGS__)

const char *
tlbd_ctl_path(const char *arg)
{
    const char *path = arg;

    if (strcmp(arg, "-") == 0) {
        path = getenv("TLBD_CONTROL");
        if (!path || !*path) {
            tlbd_exit(TLBD_EXIT_USAGE,
                      "PATH is '-' but TLBD_CONTROL is not set");
        }
    }
    return path;
}

/* Connect to PATH or exit saying why. */
static int
connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        cannot(path, "path too long for a Unix socket");
    }
    if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        cannot(path, "not a tlbd control socket (not a socket)");
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cannot(path, "socket: %s", strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        cannot(path, "%s%s", strerror(err),
               err == ECONNREFUSED ? " (export stopped?)"
               : err == EPROTOTYPE ? " (not a tlbd control socket)"
                                   : "");
    }
    return fd;
}

/* Read the whole reply (the server closes after it) into a string. */
static char *
read_reply(const char *path, int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);

    for (;;) {
        ssize_t n;
        if (!buf) {
            cannot(path, "reading the reply: %s", strerror(ENOMEM));
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            cannot(path, "reading the reply: %s", strerror(errno));
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len == cap) {
            if (cap >= REPLY_MAX) {
                cannot(path, "not a tlbd control socket (endless reply)");
            }
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    buf[len] = '\0';
    return buf;
}

char *
tlbd_ctl_call(const char *path, const char *line, const char **last)
{
    size_t len = strlen(line);
    char *reply;
    char *nl;
    int fd;

    fd = connect_to(path);
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            break; /* the server answered early (a refused peer) */
        }
        if (n < 0) {
            cannot(path, "sending the command: %s", strerror(errno));
        }
        off += (size_t)n;
    }
    reply = read_reply(path, fd);
    close(fd);

    /* The last line decides; the others are the output. */
    len = strlen(reply);
    if (len == 0 || reply[len - 1] != '\n') {
        cannot(path, "not a tlbd control socket (unexpected reply)");
    }
    reply[--len] = '\0';
    nl = strrchr(reply, '\n');
    *last = nl ? nl + 1 : reply;
    if (strcmp(*last, "ok") != 0 && strncmp(*last, "error: ", 7) != 0) {
        cannot(path, "not a tlbd control socket (unexpected reply)");
    }
    if (nl) {
        /* Keep the output's last newline; the last line moves behind. */
        memmove(nl + 2, nl + 1, strlen(nl + 1) + 1);
        nl[1] = '\0';
        *last = nl + 2;
    } else {
        memmove(reply + 1, reply, len + 1);
        reply[0] = '\0';
        *last = reply + 1;
    }
    return reply;
}
