/* tlbd: bad input to blockdev_open and blockdev_parse_option.  Each case
 * must give -errno and one message naming the path or option and the
 * reason, and leave the image byte-identical; inotify checks that a
 * refused option never got the image opened at all, and that no case
 * opened it for writing.  A read-only bind mount (in a private mount
 * namespace, unmounted in teardown) gives a truly read-only file even for
 * root; a child dropped to uid 65534 sees a file it may not read.
 */
#include "blockdrv-test.h"

#include <sys/inotify.h>
#include <sys/wait.h>

typedef struct Fixture {
    char *dir;
    char *img;
    char *ro_dir; /* read-only bind mount of dir */
    int ino;      /* inotify on img */
    uint8_t *orig;
    size_t orig_len;
} Fixture;

static int
setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    f->dir = bt_tmpdir();
    f->img = bt_path(f->dir, "disk.img");
    bt_make_file(f->img, 65536, 17);
    f->orig = bt_read_file(f->img, &f->orig_len);
    f->ro_dir = bt_path(f->dir, "ro");
    assert_int_equal(mkdir(f->ro_dir, 0755), 0);
    assert_int_equal(mount(f->dir, f->ro_dir, NULL, MS_BIND, NULL), 0);
    assert_int_equal(
        mount(NULL, f->ro_dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL),
        0);
    f->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    assert_true(f->ino >= 0);
    assert_true(inotify_add_watch(f->ino, f->img, IN_ALL_EVENTS) >= 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    Fixture *f = *state;
    close(f->ino);
    umount2(f->ro_dir, MNT_DETACH);
    bt_rmdir(f->dir);
    free(f->orig);
    free(f->ro_dir);
    free(f->img);
    free(f->dir);
    free(f);
    return 0;
}

/* The inotify events on the image since the last call. */
static uint32_t
events(Fixture *f)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    uint32_t mask = 0;
    ssize_t n;

    while ((n = read(f->ino, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            mask |= ev->mask;
            p += sizeof(*ev) + ev->len;
        }
    }
    return mask;
}

static void
image_untouched(Fixture *f)
{
    size_t len;
    uint8_t *now = bt_read_file(f->img, &len);
    assert_int_equal(len, f->orig_len);
    assert_memory_equal(now, f->orig, len);
    free(now);
    events(f); /* forget our own read */
}

/* blockdev_open must fail with ERR and exactly MSG. */
static void
expect_fail(const char *path, const BlockDevOptions *opts, int err,
            const char *msg)
{
    BlockDev *bd = (BlockDev *)1;
    char *got = NULL;

    assert_int_equal(blockdev_open(path, opts, &bd, &got), err);
    assert_null(bd);
    assert_non_null(got);
    assert_string_equal(got, msg);
    assert_null(strchr(got, '\n'));
    free(got);
}

static char *
fmt(const char *f, const char *a)
{
    char *s = NULL;
    assert_true(asprintf(&s, f, a) > 0);
    return s;
}

static void
test_paths(void **state)
{
    Fixture *f = *state;
    BlockDevOptions opts;
    char *p, *m;

    blockdev_options_init(&opts);
    expect_fail(NULL, &opts, -EINVAL, "no image path given");
    expect_fail("", &opts, -EINVAL, "no image path given");

    p = bt_path(f->dir, "missing.img");
    m = fmt("cannot open '%s': No such file or directory", p);
    expect_fail(p, &opts, -ENOENT, m);
    free(m);
    free(p);

    /* A directory, read-write and read-only. */
    m = fmt("'%s': is a directory", f->dir);
    expect_fail(f->dir, &opts, -EISDIR, m);
    opts.readonly = true;
    expect_fail(f->dir, &opts, -EISDIR, m);
    opts.readonly = false;
    free(m);

    /* A path through a file. */
    p = bt_path(f->img, "x");
    m = fmt("cannot open '%s': Not a directory", p);
    expect_fail(p, &opts, -ENOTDIR, m);
    free(m);
    free(p);

    /* Neither a file nor a block device. */
    expect_fail("/dev/null", &opts, -EINVAL,
                "'/dev/null': not a regular file or block device");

    /* An empty image: refused unless it may grow. */
    p = bt_path(f->dir, "empty.img");
    bt_make_file(p, 0, 0);
    m = fmt("'%s': image is empty (0 bytes)", p);
    expect_fail(p, &opts, -EINVAL, m);
    free(m);
    BlockDev *bd = NULL;
    opts.growable = true;
    assert_int_equal(blockdev_open(p, &opts, &bd, NULL), 0);
    assert_int_equal(blockdev_size(bd), 0);
    blockdev_close(bd);
    free(p);
    image_untouched(f);
}

static void
test_readonly_filesystem(void **state)
{
    Fixture *f = *state;
    char *p = bt_path(f->ro_dir, "disk.img");
    char *m = fmt("cannot open '%s' for writing: Read-only file system "
                  "(readonly=true opens it read-only)",
                  p);
    BlockDevOptions opts;
    BlockDev *bd = NULL;
    uint8_t buf[512];

    blockdev_options_init(&opts);
    expect_fail(p, &opts, -EROFS, m);
    opts.cache = BLOCKDEV_CACHE_NONE;
    expect_fail(p, &opts, -EROFS, m);
    assert_int_equal(events(f) & (IN_CLOSE_WRITE | IN_MODIFY), 0);

    /* Read-only is fine, and its writes fail cleanly. */
    opts.readonly = true;
    opts.cache = BLOCKDEV_CACHE_WRITEBACK;
    assert_int_equal(blockdev_open(p, &opts, &bd, NULL), 0);
    assert_int_equal(blockdev_pread(bd, buf, sizeof(buf), 0), 512);
    assert_memory_equal(buf, f->orig, sizeof(buf));
    assert_int_equal(blockdev_pwrite(bd, buf, sizeof(buf), 0, 0), -EROFS);
    blockdev_close(bd);
    assert_int_equal(events(f) & (IN_CLOSE_WRITE | IN_MODIFY), 0);
    image_untouched(f);
    free(m);
    free(p);
}

static void
test_bad_options(void **state)
{
    Fixture *f = *state;
    BlockDevOptions opts;
    char *msg = NULL;
    static const struct {
        const char *key, *value, *msg;
    } bad[] = {
        { "cache", "fast", "cache: 'fast' is not one of writeback, none" },
        { "cache", "", "cache: '' is not one of writeback, none" },
        { "discard", "trim", "discard: 'trim' is not one of unmap, ignore" },
        { "readonly", "maybe",
          "readonly: 'maybe' is not a boolean (true, "
          "false, on, off, yes, no, 1, 0)" },
        { "growable", "2",
          "growable: '2' is not a boolean (true, false, on, "
          "off, yes, no, 1, 0)" },
        { "inject", "write:eoi",
          "inject: 'write:eoi': unknown error 'eoi' at column 7" },
        { "inline-max", "64x",
          "inline-max: '64x' is not a size of at most 32M" },
        { "inline-max", "1G", "inline-max: '1G' is not a size of at most 32M" },
        { "offload", "sometimes",
          "offload: 'sometimes' is not one of blocking, never, always" },
        { "offload", "", "offload: '' is not one of blocking, never, always" },
    };

    blockdev_options_init(&opts);
    for (size_t i = 0; i < TLBD_ARRAY_SIZE(bad); i++) {
        assert_int_equal(
            blockdev_parse_option(&opts, bad[i].key, bad[i].value, &msg),
            -EINVAL);
        assert_string_equal(msg, bad[i].msg);
        free(msg);
        msg = NULL;
    }
    assert_int_equal(blockdev_parse_option(&opts, "file", "x", &msg), -ENOENT);
    assert_null(msg);
    /* Nothing was set by the failures. */
    assert_false(opts.readonly);
    assert_int_equal(opts.cache, BLOCKDEV_CACHE_WRITEBACK);
    assert_null(opts.inject);
    assert_int_equal(opts.inline_max, BLOCKDEV_INLINE_MAX_DEFAULT);
    assert_int_equal(opts.offload, BLOCKDEV_OFFLOAD_BLOCKING);
    /* Good values are set. */
    assert_int_equal(blockdev_parse_option(&opts, "offload", "never", NULL), 0);
    assert_int_equal(opts.offload, BLOCKDEV_OFFLOAD_NEVER);
    assert_int_equal(blockdev_parse_option(&opts, "offload", "always", NULL),
                     0);
    assert_int_equal(opts.offload, BLOCKDEV_OFFLOAD_ALWAYS);
    assert_int_equal(blockdev_parse_option(&opts, "inline-max", "4k", NULL), 0);
    assert_int_equal(opts.inline_max, 4096);
    assert_int_equal(blockdev_parse_option(&opts, "cache", "none", NULL), 0);
    assert_int_equal(blockdev_parse_option(&opts, "discard", "ignore", NULL),
                     0);
    assert_int_equal(blockdev_parse_option(&opts, "readonly", "on", NULL), 0);
    assert_int_equal(blockdev_parse_option(&opts, "growable", "Yes", NULL), 0);
    assert_int_equal(
        blockdev_parse_option(&opts, "inject", "read:delay=1ms", NULL), 0);
    assert_int_equal(opts.cache, BLOCKDEV_CACHE_NONE);
    assert_int_equal(opts.discard, BLOCKDEV_DISCARD_IGNORE);
    assert_true(opts.readonly && opts.growable);
    assert_string_equal(opts.inject, "read:delay=1ms");

    /* Bad options given straight to blockdev_open: refused before the image
     * is even opened.
     */
    events(f);
    blockdev_options_init(&opts);
    opts.cache = (BlockDevCache)7;
    expect_fail(f->img, &opts, -EINVAL,
                "cache: 7 is not one of writeback, none");
    blockdev_options_init(&opts);
    opts.discard = (BlockDevDiscard)-1;
    expect_fail(f->img, &opts, -EINVAL,
                "discard: -1 is not one of unmap, ignore");
    blockdev_options_init(&opts);
    opts.inject = "flush:eio:after=x";
    expect_fail(f->img, &opts, -EINVAL,
                "inject: 'flush:eio:after=x': bad number 'x' for 'after' at "
                "column 17");
    assert_int_equal(events(f), 0);
    image_untouched(f);
}

/* A user who may not read the image: a child process as uid 65534. */
static void
test_unreadable(void **state)
{
    Fixture *f = *state;
    pid_t pid;
    int status;

    assert_int_equal(chmod(f->dir, 0755), 0);
    assert_int_equal(chmod(f->img, 0600), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        BlockDevOptions opts;
        BlockDev *bd = NULL;
        char *msg = NULL;
        char *want = NULL;
        int ok;

        if (setresgid(65534, 65534, 65534) < 0 ||
            setresuid(65534, 65534, 65534) < 0) {
            _exit(2);
        }
        blockdev_options_init(&opts);
        opts.readonly = true;
        ok = blockdev_open(f->img, &opts, &bd, &msg) == -EACCES &&
             asprintf(&want, "cannot open '%s': Permission denied", f->img) >
                 0 &&
             strcmp(msg, want) == 0;
        free(msg);
        opts.readonly = false;
        ok = ok && blockdev_open(f->img, &opts, &bd, &msg) == -EACCES &&
             strstr(msg, "for writing: Permission denied") != NULL;
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    image_untouched(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_filesystem, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
    };
    if (!bt_private_mounts()) {
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
