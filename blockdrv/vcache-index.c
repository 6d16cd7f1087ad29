/* tlbd: treaps that index the volatile cache's extents (vcache.c): one by
 * completion order, to find the extent a seeded destage picks by its
 * position; one by offset, augmented with the largest end, to find the
 * extents a range overlaps.  O(log extents) expected per operation.
 * They only find extents: the cache's list stays the order of record.
 * The caller holds Vcache.lock and sets the keys and PRIO (random) of a
 * node before vcix_insert.
 */
#include <stdbool.h>

#include "vcache-index.h"

static bool
less(const VcNode *a, const VcNode *b)
{
    return a->k1 < b->k1 || (a->k1 == b->k1 && a->k2 < b->k2);
}

static void
update(VcNode *n)
{
    n->size = 1;
    n->maxend = n->end;
    if (n->l) {
        n->size += n->l->size;
        n->maxend = n->l->maxend > n->maxend ? n->l->maxend : n->maxend;
    }
    if (n->r) {
        n->size += n->r->size;
        n->maxend = n->r->maxend > n->maxend ? n->r->maxend : n->maxend;
    }
}

/* Split T into the nodes less than N (*L) and the others (*R). */
static void
split(VcNode *t, const VcNode *n, VcNode **l, VcNode **r)
{
    if (!t) {
        *l = *r = NULL;
    } else if (less(t, n)) {
        split(t->r, n, &t->r, r);
        update(t);
        *l = t;
    } else {
        split(t->l, n, l, &t->l);
        update(t);
        *r = t;
    }
}

static VcNode *
merge(VcNode *l, VcNode *r)
{
    if (!l || !r) {
        return l ? l : r;
    }
    if (l->prio > r->prio) {
        l->r = merge(l->r, r);
        update(l);
        return l;
    }
    r->l = merge(l, r->l);
    update(r);
    return r;
}

void
vcix_insert(VcNode **root, VcNode *n)
{
    VcNode *t = *root;

    if (!t || n->prio > t->prio) {
        split(t, n, &n->l, &n->r);
        update(n);
        *root = n;
        return;
    }
    vcix_insert(less(n, t) ? &t->l : &t->r, n);
    update(t);
}

void
vcix_remove(VcNode **root, VcNode *n)
{
    VcNode *t = *root;

    if (!t) {
        return;
    }
    if (t == n) {
        *root = merge(t->l, t->r);
        n->l = n->r = NULL;
        return;
    }
    vcix_remove(less(n, t) ? &t->l : &t->r, n);
    update(t);
}

VcNode *
vcix_nth(VcNode *t, uint64_t i)
{
    while (t) {
        uint64_t left = t->l ? t->l->size : 0;

        if (i < left) {
            t = t->l;
        } else if (i == left) {
            return t;
        } else {
            i -= left + 1;
            t = t->r;
        }
    }
    return NULL;
}

size_t
vcix_overlaps(VcNode *t, uint64_t offset, uint64_t end, VcNode **out,
              size_t max)
{
    size_t n = 0;

    while (t && t->maxend > offset) {
        size_t k = vcix_overlaps(t->l, offset, end, out, max);

        n += k;
        if (out) {
            out = k < max ? out + k : NULL;
            max = k < max ? max - k : 0;
        }
        if (t->k1 >= end) {
            break;
        }
        if (t->end > offset) {
            if (out && max > 0) {
                *out++ = t;
                max--;
            }
            n++;
        }
        t = t->r;
    }
    return n;
}
