/* tlbd: the volatile cache's indexes of its extents (vcache-index.c). */
#ifndef TLBD_VCACHE_INDEX_H
#define TLBD_VCACHE_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* A node of a treap ordered by (k1, k2), unique per tree.  SIZE counts
 * the subtree's nodes (for vcix_nth); MAXEND is the largest END in it
 * (for vcix_overlaps, where k1 is an offset and END its end).
 */
typedef struct VcNode {
    struct VcNode *l, *r;
    uint64_t k1, k2;
    uint64_t end, maxend;
    uint64_t size;
    uint64_t prio;
} VcNode;

void vcix_insert(VcNode **root, VcNode *n);
void vcix_remove(VcNode **root, VcNode *n);
/* The node at position I (from 0) in key order. */
VcNode *vcix_nth(VcNode *root, uint64_t i);
/* Nodes whose [k1, end) overlaps [OFFSET, END), in key order: the first
 * MAX go to OUT (can be NULL); returns how many there are.
 */
size_t vcix_overlaps(VcNode *root, uint64_t offset, uint64_t end, VcNode **out,
                     size_t max);

#endif
