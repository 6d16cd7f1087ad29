/* tlbd: the control channel of a BlockDev (control=PATH), private to
 * blockdrv: blockdev.c opens and closes it, blockdev_serve starts its
 * thread.  The socket and the protocol are in ctl.c, the commands in
 * ctl-cmd.c.
 */
#ifndef TLBD_CTL_H
#define TLBD_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "blockdev.h"

/* The longest socket path (sockaddr_un.sun_path, less its NUL). */
#define CTL_PATH_MAX 107

/* The format= line of `stats-raw`: raised when a key changes meaning. */
#define CTL_STATS_RAW_FORMAT 1

typedef struct Ctl Ctl;

/* True when PATH can name a Unix socket: 1 to CTL_PATH_MAX bytes. */
bool ctl_path_ok(const char *path);

/* Create the socket PATH for BD and listen; no thread yet.  A PATH that
 * exists is refused, unless it is a socket of ours nobody listens on,
 * which is replaced.  Returns 0, or -errno with *ERRMSG ("control: ...").
 */
int ctl_open(BlockDev *bd, const char *path, Ctl **out, char **errmsg);

/* Start the thread "ctl" in this process (after any fork).  0 or -errno;
 * 0 when it runs already.
 */
int ctl_start(Ctl *c);

/* Run the command LINE ("COMMAND ARGS...", without its newline; it is
 * cut into words in place) on BD: its output lines on OUT.  Returns 0,
 * or -errno with *ERRMSG, the message of the "error: " line.  ctl-cmd.c.
 */
int ctl_run_line(BlockDev *bd, char *line, FILE *out, char **errmsg);

/* Stop the thread (a command running finishes first), close the socket
 * and remove its file.  NULL is fine.
 */
void ctl_close(Ctl *c);

#endif /* TLBD_CTL_H */
