/* tlbd: the block format of `tlbd bench` and its verification.
 *
 * Every block (Bench.unit bytes, 512 to 4096) that the bench writes starts
 * with a header naming the block's own offset, the run and a generation (a
 * per-vcpu counter, so a block's generations only grow), followed by
 * pseudo-random bytes derived from those three, and a checksum over the
 * whole block.  A read then tells apart:
 *  - a good block: right offset, run and generation, checksum matches;
 *  - a stale block: an older generation (a lost write);
 *  - a misplaced block: a good block stamped for another offset;
 *  - a corrupted block: the checksum does not match;
 *  - anything else: zeros, or data not written by tlbd.
 * Blocks this run never wrote must read as zeros when the run created the
 * image; otherwise their first read is remembered (a hash) and every later
 * read must match it, and a tlbd block left by an earlier run must still be
 * whole and in place.
 *
 * Called on the vcpu threads (bench_fill, on the request's own buffer) and
 * on the I/O thread (bench_check, which owns the block table).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

typedef struct BenchHeader {
    uint32_t magic;
    uint32_t unit;   /* block size */
    uint64_t offset; /* where the block belongs */
    uint64_t run;
    uint32_t gen;
    uint32_t reserved;
    uint64_t checksum; /* over the block with this field zero */
} BenchHeader;

#define K1 0x9e3779b97f4a7c15ull
#define K2 0xbf58476d1ce4e5b9ull
#define K3 0x94d049bb133111ebull

/* A 64-bit hash of LEN bytes (a multiple of 8). */
static uint64_t
hash_words(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        h = (h ^ bench_mix64(w + K1)) * K2;
        h ^= h >> 29;
    }
    return bench_mix64(h ^ len);
}

/* The checksum of a block: the header with a zero checksum, then the rest. */
static uint64_t
block_checksum(const void *block, uint64_t unit)
{
    BenchHeader h;
    memcpy(&h, block, sizeof(h));
    h.checksum = 0;
    uint64_t sum = hash_words(K1, &h, sizeof(h));
    return hash_words(sum, (const char *)block + sizeof(h), unit - sizeof(h));
}

void
bench_fill(const Bench *b, void *buf, uint64_t offset, uint64_t len,
           uint32_t gen)
{
    for (uint64_t done = 0; done < len; done += b->unit) {
        char *block = (char *)buf + done;
        BenchHeader h = {
            .magic = BENCH_MAGIC,
            .unit = (uint32_t)b->unit,
            .offset = offset + done,
            .run = b->run_id,
            .gen = gen,
        };
        uint64_t x = bench_mix64(b->run_id ^ bench_mix64(h.offset) ^ gen) | 1;

        memcpy(block, &h, sizeof(h));
        for (uint64_t i = sizeof(h); i < b->unit; i += 8) {
            /* xorshift64 */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(block + i, &x, sizeof(x));
        }
        h.checksum = block_checksum(block, b->unit);
        memcpy(block, &h, sizeof(h));
    }
}

static bool
is_zero(const void *block, uint64_t len)
{
    const unsigned char *p = block;
    for (uint64_t i = 0; i < len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        if (w) {
            return false;
        }
    }
    return true;
}

static uint32_t
block_hash32(const void *block, uint64_t unit)
{
    return (uint32_t)hash_words(K3, block, unit) | 1;
}

/* Describe what BLOCK holds, for a failure message. */
static void
describe(const Bench *b, const void *block, uint64_t offset, char *out,
         size_t size)
{
    BenchHeader h;
    memcpy(&h, block, sizeof(h));

    if (is_zero(block, b->unit)) {
        snprintf(out, size, "zeros");
    } else if (h.magic != BENCH_MAGIC || h.unit != b->unit) {
        const unsigned char *p = block;
        snprintf(out, size,
                 "data not written by tlbd bench (bytes %02x %02x %02x %02x"
                 " %02x %02x %02x %02x)",
                 p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);
    } else {
        char run[40];
        uint64_t sum = block_checksum(block, b->unit);
        if (h.run == b->run_id) {
            snprintf(run, sizeof(run), "this run");
        } else {
            snprintf(run, sizeof(run), "run %016" PRIx64, h.run);
        }
        snprintf(out, size,
                 "generation %" PRIu32 " of %s for offset %" PRIu64 "%s%s",
                 h.gen, run, h.offset,
                 h.offset != offset ? " (a misplaced block)" : "",
                 sum != h.checksum ? " with a bad checksum (corrupted)" : "");
    }
}

/* True when a later run with a smaller block size wrote part of BLOCK: one
 * of its 512-byte-aligned pieces is a whole block of that size.  Such a
 * block of earlier runs is only checked for staying as first read.
 */
static bool
holds_smaller_blocks(const Bench *b, const void *block, uint64_t offset)
{
    for (uint64_t at = 512; at < b->unit; at += 512) {
        const char *p = (const char *)block + at;
        BenchHeader h;
        memcpy(&h, p, sizeof(h));
        if (h.magic == BENCH_MAGIC && h.unit >= 512 && h.unit < b->unit &&
            at % h.unit == 0 && h.offset == offset + at &&
            block_checksum(p, h.unit) == h.checksum) {
            return true;
        }
    }
    return false;
}

uint32_t
bench_zero_hash(const Bench *b)
{
    static const char zeros[4096];
    return block_hash32(zeros, b->unit);
}

bool
bench_check(Bench *b, const void *block, uint64_t offset)
{
    BenchBlock *st = &b->blocks[offset / b->unit];
    char found[160];
    BenchHeader h;

    memcpy(&h, block, sizeof(h));
    bool stamped = h.magic == BENCH_MAGIC && h.unit == b->unit;

    if (st->gen) {
        if (stamped && h.offset == offset && h.run == b->run_id &&
            h.gen == st->gen && block_checksum(block, b->unit) == h.checksum) {
            return true;
        }
        describe(b, block, offset, found, sizeof(found));
        bench_fail(b,
                   "verification failed at offset %" PRIu64 ": expected "
                   "generation %" PRIu32 " of this run, found %s%s",
                   offset, st->gen, found,
                   stamped && h.run == b->run_id && h.gen < st->gen &&
                           h.offset == offset
                       ? " (stale: a write was lost)"
                       : "");
        return false;
    }
    if (st->hash) {
        uint32_t now = block_hash32(block, b->unit);
        if (now == st->hash) {
            return true;
        }
        describe(b, block, offset, found, sizeof(found));
        bench_fail(b,
                   "verification failed at offset %" PRIu64 ": expected "
                   "the data first read there (hash %08" PRIx32 "), found "
                   "%s (hash %08" PRIx32 ")",
                   offset, st->hash, found, now);
        return false;
    }
    if (b->known_zero) {
        if (is_zero(block, b->unit)) {
            return true;
        }
        describe(b, block, offset, found, sizeof(found));
        bench_fail(b,
                   "verification failed at offset %" PRIu64 ": expected "
                   "zeros (never written), found %s",
                   offset, found);
        return false;
    }
    /* First sight of a block this run did not write. */
    if (stamped &&
        (h.offset != offset || block_checksum(block, b->unit) != h.checksum) &&
        !holds_smaller_blocks(b, block, offset)) {
        describe(b, block, offset, found, sizeof(found));
        bench_fail(b,
                   "verification failed at offset %" PRIu64 ": expected "
                   "a whole block for offset %" PRIu64 " (left by an earlier "
                   "run), found %s",
                   offset, offset, found);
        return false;
    }
    st->hash = block_hash32(block, b->unit);
    return true;
}
