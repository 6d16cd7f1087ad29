/* tlbd: fault and latency injection rules for paio.
 *
 * A spec such as "seed=7,write:eio:rate=0.001,flush:eio:after=50,
 * read:delay=2ms" is parsed once into a PaioInject; paio's workers ask it,
 * for each request, whether to sleep and whether to fail, before the
 * request's handler runs.  The grammar is in paio(3).
 *
 * Threads: parsing and freeing touch nothing shared.  paio_inject_decide
 * changes the rules' counters and the random state, so the caller holds
 * the lock that guards the PaioInject (PaioDev.inject_lock).
 */
#ifndef TLBD_PAIO_INJECT_H
#define TLBD_PAIO_INJECT_H

#include <stdint.h>

#include "paio.h"

/* Parse SPEC.  NULL or "" gives *OUT = NULL (no rules).  Returns 0, or
 * -EINVAL with *ERRMSG (malloc'd, if ERRMSG is not NULL) such as
 * "inject: 'write:eoi': unknown error 'eoi' at column 7", or -ENOMEM.
 */
int paio_inject_parse(const char *spec, PaioInject **out, char **errmsg);

void paio_inject_free(PaioInject *inj);

/* Decide for one request of TYPE: returns 0 or the -errno to fail it with,
 * and adds to *DELAY_NS the time to sleep first.  Caller holds the lock.
 */
int paio_inject_decide_locked(PaioInject *inj, PaioType type,
                              uint64_t *delay_ns);

#endif /* TLBD_PAIO_INJECT_H */
