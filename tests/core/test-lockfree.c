/* tlbd: the core helpers under the pool and the I/O thread: TLBD_ASSERT
 * aborts even under NDEBUG, the lock-free stack keeps push order through
 * take-all and reverse and refuses pushes once closed, and a gate counts
 * the threads inside until it is closed.
 */
#define NDEBUG 1 /* as in CMake's Release and RelWithDebInfo */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gate.h"
#include "lfstack.h"
#include "util.h"

static void
test_assert_under_ndebug(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int zero = 0;
        close(STDERR_FILENO); /* the message is expected */
        TLBD_ASSERT(zero == 1);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    TLBD_ASSERT(pid != 0); /* and a true one does nothing */
}

static void
test_lfstack(void **state)
{
    (void)state;
    LfStack s;
    LfNode nodes[3];
    unsigned n = 0;

    lfstack_init(&s);
    assert_true(lfstack_is_empty(&s));
    assert_null(lfstack_take_all(&s));
    /* Not first unless allowed: nothing pushed. */
    assert_int_equal(lfstack_push(&s, &nodes[0], false), -1);
    assert_int_equal(lfstack_push(&s, &nodes[0], true), 1);
    assert_int_equal(lfstack_push(&s, &nodes[1], false), 0);
    assert_int_equal(lfstack_push(&s, &nodes[2], true), 0);
    LfNode *list = lfstack_reverse(lfstack_take_all(&s), &n);
    assert_int_equal(n, 3);
    assert_true(lfstack_is_empty(&s));
    for (int i = 0; i < 3; i++, list = list->next) {
        assert_ptr_equal(list, &nodes[i]);
    }
    assert_null(list);

    assert_int_equal(lfstack_push(&s, &nodes[0], true), 1);
    assert_ptr_equal(lfstack_close(&s), &nodes[0]);
    assert_null(nodes[0].next);
    assert_true(lfstack_is_empty(&s));
    assert_int_equal(lfstack_push(&s, &nodes[1], true), -1);
    assert_null(lfstack_take_all(&s)); /* and it stays closed */
    assert_int_equal(lfstack_push(&s, &nodes[1], true), -1);
}

static void
test_gate(void **state)
{
    (void)state;
    TlbdGate zeroed = { 0 };
    TlbdGate g;

    assert_false(tlbd_gate_enter(&zeroed));
    assert_false(tlbd_gate_close(&zeroed));
    tlbd_gate_init(&g);
    assert_true(tlbd_gate_enter(&g));
    assert_true(tlbd_gate_enter(&g));
    tlbd_gate_leave(&g);
    tlbd_gate_leave(&g);
    assert_true(tlbd_gate_close(&g));
    assert_false(tlbd_gate_enter(&g));
    assert_false(tlbd_gate_close(&g));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assert_under_ndebug),
        cmocka_unit_test(test_lfstack),
        cmocka_unit_test(test_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
