/* tlbd: `tlbd crashtest`, shared by its files.
 *
 *   crashtest.c         options, the file-system table, main: record, then
 *                       check the states, then keep the first failure
 *   crashtest-run.c     child processes (own process group, interruptible
 *                       wait), the cleanup list (mounts, loop devices, the
 *                       FUSE daemon, the work directory), signals
 *   crashtest-record.c  the recording: `tlbd fuse` with the cache, the log
 *                       and the control socket, a direct-I/O loop device,
 *                       mkfs, mount, the workload, teardown
 *   crashtest-states.c  the log's entries (`tlbd replay --list`), the crash
 *                       states and their sampling, building each state from
 *                       a base image that only moves forward, the table
 *   crashtest-recover.c the recovery and checks of one state
 *   crashtest-copy.c    the copy of an image (FICLONE or its data extents)
 *
 * Threads: the main thread only.  SIGINT, SIGTERM and SIGHUP are blocked
 * except while a child is waited for (ct_run), so an interruption is seen
 * there or between steps (ct_interrupted).
 */
#ifndef TLBD_CRASHTEST_H
#define TLBD_CRASHTEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Exit statuses. */
#define CT_EXIT_CLEAN       0
#define CT_EXIT_FAILED      1 /* some state failed */
#define CT_EXIT_SETUP       2 /* usage or setup error */
#define CT_EXIT_INTERRUPTED 130

/* How a file system is made and checked after the kernel's recovery. */
typedef struct CtFs {
    const char *name;         /* --fs NAME, mount -t NAME */
    const char *mkfs;         /* program */
    const char *mkfs_force;   /* its "overwrite" flag */
    const char *const *check; /* read-only full check, DEVICE appended */
    uint64_t min_size;        /* the smallest --size mkfs accepts */
    const char *package;      /* Debian package of mkfs and check */
} CtFs;

/* The cuts of an epoch's volatile set, as `tlbd replay --cut` names them;
 * bit 1 << i of CtArgs.cuts enables ct_cut_modes[i].
 */
#define CT_NCUTS 3
extern const char *const ct_cut_modes[CT_NCUTS];

typedef struct CtArgs {
    const CtFs *fs;
    uint64_t size;
    uint64_t states;
    uint64_t seed;
    uint64_t cache;      /* volatile-cache SIZE of the recording export */
    unsigned cuts;       /* --cuts: a mask over ct_cut_modes */
    char **mkfs_options; /* split at blanks; NULL-terminated */
    char *mkfs_buf;      /* the words of mkfs_options */
    const char *mount_options;
    const char *check; /* --check CMD (sh -c) or NULL */
    const char *keep;  /* --keep DIR or NULL */
    char **workload;   /* NULL-terminated */
    char *self;        /* this tlbd program, absolute */
} CtArgs;

/* One entry of the write log, as `tlbd replay --list` prints it. */
typedef struct CtEntry {
    uint64_t sector;
    uint64_t nr_sectors;
    unsigned flags; /* CT_FLUSH, ... */
    char *mark;     /* MARK entries: the name; else NULL */
} CtEntry;

#define CT_FLUSH   1u
#define CT_FUA     2u
#define CT_DISCARD 4u
#define CT_MARK    8u

/* The work directory and what the recording left in it. */
typedef struct CtWork {
    char *dir; /* the work directory, absolute */
    char *log; /* DIR/log: the write log */
    char *out; /* DIR/out: children's output, appended */
    uint64_t nentries;
    CtEntry *entries;
    uint64_t start; /* first entry after the mark "mkfs" */
} CtWork;

/* crashtest-run.c */

/* The options of one child. */
typedef struct CtRunOpts {
    const char *cwd;      /* NULL: ours */
    int out_fd;           /* stdout and stderr; -1: ours */
    int stdout_fd;        /* stdout alone; 0: as out_fd */
    bool stdout_to_err;   /* with out_fd -1: stdout to our stderr */
    char *const *env_add; /* "KEY=VALUE" to add; NULL-terminated or NULL */
} CtRunOpts;

/* Install the signal handlers and block the signals (see above). */
void ct_signals_init(void);

/* True once SIGINT, SIGTERM or SIGHUP arrived. */
bool ct_interrupted(void);

/* Start ARGV (argv[0] looked up in PATH) in its own process group, stdin
 * from /dev/null, with OPTS.  Returns the pid or -errno.
 */
pid_t ct_spawn(char *const *argv, const CtRunOpts *opts);

/* Wait for PID; on an interruption first kill its process group (SIGTERM).
 * Returns its status as a shell would (0..255, 128+signal), or -EINTR when
 * interrupted, or -errno.
 */
int ct_wait(pid_t pid);

/* ct_spawn, then ct_wait. */
int ct_run(char *const *argv, const CtRunOpts *opts);

/* asprintf, or abort when out of memory. */
char *ct_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "tlbd crashtest: MESSAGE" on stderr. */
void ct_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ct_vmsg(const char *fmt, va_list ap);

/* The cleanup list.  Everything registered is undone by ct_cleanup, last
 * first: mounts are unmounted, loop devices detached, the FUSE daemon
 * stopped (SIGTERM, then SIGKILL and a lazy unmount), the work directory
 * removed unless ct_keep_dir was called.  ct_forget_* drops an entry once
 * the caller undid it itself.
 */
void ct_cleanup_mount(const char *dir);
void ct_forget_mount(const char *dir);
void ct_cleanup_daemon(pid_t pid, const char *mountpoint);
void ct_forget_daemon(void);

/* Stop the registered FUSE daemon (SIGTERM: it flushes, unmounts and
 * exits) and forget it.  Its shell status, or -errno.
 */
int ct_stop_daemon(void);
void ct_cleanup_dir(const char *dir);
void ct_keep_dir(void);
void ct_cleanup(void);

/* Unmount DIR (umount; on EBUSY a lazy one).  0 or -1. */
int ct_umount(const char *dir, int out_fd);

/* Attach FILE to a free loop device, with direct I/O if DIRECT_IO (and
 * check that the kernel uses it).  Returns the device ("/dev/loopN",
 * malloc'd, registered for cleanup) or NULL.
 */
char *ct_loop_attach(const char *file, bool direct_io, int out_fd);

/* Detach DEV if it still serves the file ct_loop_attach attached (loop
 * devices are shared by the machine), and forget it in any case.  0, also
 * when it serves our file no more; -1 if detaching failed.
 */
int ct_loop_detach(const char *dev, int out_fd);

/* Does DEV still serve the file ct_loop_attach attached? */
bool ct_loop_owned(const char *dev);

/* crashtest-copy.c */

/* Copy the image SRC to DST (created or truncated): FICLONE where the file
 * system can, else the data extents (SEEK_DATA/SEEK_HOLE and
 * copy_file_range), DST being sparse elsewhere.  0 or -errno.
 */
int ct_copy_image(const char *src, const char *dst);

/* crashtest-record.c: run the workload on a fresh file system and leave
 * the write log in W->log.  CT_EXIT_CLEAN or the exit status to give.
 */
int ct_record(const CtArgs *a, CtWork *w);

typedef enum CtResult {
    CT_STATE_CLEAN,
    CT_STATE_FAILED,
    CT_STATE_RETRY, /* the loop device was taken away: check it again */
} CtResult;

/* crashtest-recover.c: recover the crash state IMG (a loop device, a
 * read-write mount and unmount, the file system's read-only check), then
 * run --check on it mounted read-only on MNT, with TOKEN, LIMIT and MARKS
 * (the names of the marks before it) in the environment.  Writes the
 * verdict to VERDICT (LEN bytes).
 */
CtResult ct_recover(const CtArgs *a, const char *img, const char *mnt,
                    const char *token, uint64_t limit, const char *marks,
                    char *verdict, size_t len, int out_fd);

/* crashtest-states.c: list the log, pick the states, check each, print
 * the table, keep the first failing one.  The exit status.
 */
int ct_check_states(const CtArgs *a, CtWork *w);

#endif /* TLBD_CRASHTEST_H */
