/* tlbd: image locking through blockdev_open.  OFD locks of two open files
 * conflict even inside one process, so every rule of the table in
 * paio(3) ("IMAGE LOCKING") can be checked here: writer next to writer,
 * reader next to writer both ways, readers side by side, force-share, the
 * message, and the locks going with blockdev_close.
 */
#include "blockdrv-test.h"

typedef BtFixture Fixture;

static int
setup(void **state)
{
    *state = bt_fixture_new("lock.img", 1 << 20, 5);
    return 0;
}

/* blockdev_open PATH read-only or not, with FORCE; *MSG gets the message. */
static int
try_open(Fixture *f, bool readonly, bool force, BlockDev **bd, char **msg)
{
    BlockDevOptions opts;

    blockdev_options_init(&opts);
    opts.readonly = readonly;
    opts.force_share = force;
    opts.iothread = f->io;
    return blockdev_open(f->path, &opts, bd, msg);
}

static BlockDev *
open_ok(Fixture *f, bool readonly, bool force)
{
    BlockDev *bd = NULL;
    char *msg = NULL;

    assert_int_equal(try_open(f, readonly, force, &bd, &msg), 0);
    assert_null(msg);
    return bd;
}

/* Expect a refusal naming WHAT. */
static void
open_refused(Fixture *f, bool readonly, const char *what)
{
    BlockDev *bd = NULL;
    char *msg = NULL;
    char *want = NULL;

    assert_int_equal(try_open(f, readonly, false, &bd, &msg), -EBUSY);
    assert_null(bd);
    assert_true(asprintf(&want,
                         "'%s' is in use by %s (locks held by another "
                         "process; use --force-share or force-share=on to "
                         "override)",
                         f->path, what) > 0);
    assert_string_equal(msg, want);
    free(want);
    free(msg);
}

static void
test_writers(void **state)
{
    Fixture *f = *state;
    BlockDev *first = open_ok(f, false, false);
    BlockDev *forced;

    open_refused(f, false, "another writer");
    open_refused(f, true, "another writer");
    /* The override starts next to it, and holds write itself. */
    forced = open_ok(f, false, true);
    blockdev_close(first);
    open_refused(f, false, "another writer");
    blockdev_close(forced);
    /* Gone with the last close. */
    blockdev_close(open_ok(f, false, false));
}

static void
test_readers(void **state)
{
    Fixture *f = *state;
    BlockDev *a = open_ok(f, true, false);
    BlockDev *b = open_ok(f, true, false);

    open_refused(f, false, "another process that does not share write");
    blockdev_close(a);
    open_refused(f, false, "another process that does not share write");
    blockdev_close(b);
    blockdev_close(open_ok(f, false, false));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writers, setup, bt_teardown),
        cmocka_unit_test_setup_teardown(test_readers, setup, bt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
