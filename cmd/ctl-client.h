/* tlbd: the client side of an export's control channel (control=PATH;
 * the server and the protocol are in blockdrv/ctl.c), shared by
 * `tlbd ctl` and `tlbd stat`.  Main thread only.
 */
#ifndef TLBD_CTL_CLIENT_H
#define TLBD_CTL_CLIENT_H

/* The exit status of a usage error, or of a control socket that cannot be
 * reached or is not a tlbd one.
 */
#define TLBD_EXIT_USAGE 2

/* ARG as a control socket path: "-" stands for $TLBD_CONTROL (exits
 * TLBD_EXIT_USAGE with a message when it is not set).
 */
const char *tlbd_ctl_path(const char *arg);

/* Send the command LINE (one line, its newline included) to the control
 * socket PATH and read the whole reply.  Returns the reply, malloc'd, cut
 * after its output lines (each with its newline); *LAST points at its last
 * line, without the newline: "ok" or "error: MESSAGE".  When PATH cannot
 * be reached, or what answers is not a tlbd control socket, prints
 * "PROGRAM: 'PATH': REASON" and exits TLBD_EXIT_USAGE.
 */
char *tlbd_ctl_call(const char *path, const char *line, const char **last);

#endif /* TLBD_CTL_CLIENT_H */
