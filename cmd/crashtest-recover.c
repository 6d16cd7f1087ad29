/* tlbd: `tlbd crashtest`, the recovery and checks of one crash state
 * (see crashtest.h).
 *
 * The state is attached to a loop device and mounted read-write: the
 * kernel replays the journal and processes orphans, the recovery a real
 * machine performs at boot.  A mount that fails is damage.  After the
 * unmount, the file system's full check runs read-only (`e2fsck -fn`,
 * `xfs_repair -n`, `btrfs check --readonly`) and must find nothing.  Only
 * a check that repairs nothing sees the damage: `e2fsck -fy` repairs it
 * first (so a `-fn` after it is always clean), `e2fsck -fp` repairs what
 * it deems safe, and `e2fsck -fn` alone skips the journal and checks a
 * state no machine would mount.  Then --check CMD runs with the file
 * system mounted read-only.
 *
 * Threads: the main thread only.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crashtest.h"

/* Mount DEV on DIR (read-only if RO); 0 or a shell status. */
static int
mount_state(const CtArgs *a, const char *dev, const char *dir, bool ro,
            int out_fd)
{
    char *argv[] = { "mount",          "-t",        (char *)a->fs->name, "-o",
                     ro ? "ro" : "rw", (char *)dev, (char *)dir,         NULL };
    CtRunOpts o = { .out_fd = out_fd };
    int st = ct_run(argv, &o);

    if (st == 0) {
        ct_cleanup_mount(dir);
    }
    return st;
}

/* Run --check in MNT, the read-only file system. */
static int
run_check(const CtArgs *a, const char *mnt, const char *token, uint64_t limit,
          const char *marks, int out_fd)
{
    char *env[4] = {
        ct_asprintf("TLBD_STATE=%s", token),
        ct_asprintf("TLBD_MARKS=%s", marks),
        ct_asprintf("TLBD_LIMIT=%" PRIu64, limit),
        NULL,
    };
    char *argv[] = { "sh", "-c", (char *)a->check, NULL };
    CtRunOpts o = { .cwd = mnt, .out_fd = out_fd, .env_add = env };
    int st = ct_run(argv, &o);

    for (int i = 0; i < 3; i++) {
        free(env[i]);
    }
    return st;
}

CtResult
ct_recover(const CtArgs *a, const char *img, const char *mnt, const char *token,
           uint64_t limit, const char *marks, char *verdict, size_t len,
           int out_fd)
{
    size_t nfsck = 0;
    char *dev = ct_loop_attach(img, false, out_fd);
    CtResult ret;
    int st;

    if (!dev) {
        snprintf(verdict, len, "setup: losetup failed");
        return CT_STATE_FAILED;
    }
    st = mount_state(a, dev, mnt, false, out_fd);
    if (st != 0) {
        snprintf(verdict, len, "damaged: recovery mount failed");
        goto fail;
    }
    if (ct_umount(mnt, out_fd) < 0) {
        snprintf(verdict, len, "setup: umount failed");
        goto fail;
    }
    while (a->fs->check[nfsck]) {
        nfsck++;
    }
    char *fsck[8] = { NULL };
    memcpy(fsck, a->fs->check, nfsck * sizeof(*fsck));
    fsck[nfsck] = dev;
    CtRunOpts o = { .out_fd = out_fd };
    st = ct_run(fsck, &o);
    if (st != 0) {
        snprintf(verdict, len, "damaged: %s exit %d", a->fs->check[0], st);
        goto fail;
    }
    if (a->check) {
        st = mount_state(a, dev, mnt, true, out_fd);
        if (st != 0) {
            snprintf(verdict, len, "damaged: read-only mount failed");
            goto fail;
        }
        st = run_check(a, mnt, token, limit, marks, out_fd);
        if (ct_umount(mnt, out_fd) < 0 && st == 0) {
            snprintf(verdict, len, "setup: umount failed");
            goto fail;
        }
        if (st != 0) {
            snprintf(verdict, len, "check: exit %d", st);
            goto fail;
        }
    }
    snprintf(verdict, len, "clean");
    ret = CT_STATE_CLEAN;
    goto out;
fail:
    ret = CT_STATE_FAILED;
out:
    /* Whatever the verdict, it holds only if the device served our image
     * all along (see ct_loop_detach). */
    if (!ct_loop_owned(dev)) {
        snprintf(verdict, len, "setup: %s was detached by someone else", dev);
        ret = CT_STATE_RETRY;
    }
    ct_loop_detach(dev, out_fd);
    free(dev);
    return ret;
}
