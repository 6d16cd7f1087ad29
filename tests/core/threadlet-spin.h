/* tlbd: what the threadlet tests share to run a test again with the pool's
 * spinning on (tests/core/test-threadlet*.c).  Test thread only.
 */
#ifndef TLBD_TESTS_THREADLET_SPIN_H
#define TLBD_TESTS_THREADLET_SPIN_H

#include "threadlet.h"

/* The spin window a test runs with: 0 for plain cmocka_unit_test, else
 * from cmocka_unit_test_prestate.
 */
static unsigned spin_max = THREADLET_MAX_SPIN_NS;

static inline unsigned
spin_of(void **state)
{
    return *state ? *(unsigned *)*state : 0;
}

/* TEST again with spinning on, under its own name. */
#define WITH_SPIN(test)                                                        \
    {                                                                          \
#test "_spinning", test, NULL, NULL, &spin_max                         \
    }

#endif /* TLBD_TESTS_THREADLET_SPIN_H */
