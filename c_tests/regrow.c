/* c_tests/regrow.c - two single-thread patterns that were slower than the
 * peers, for instruction counting under callgrind (c_tests/regrow.sh).
 *
 *   regrow strings ROUNDS   a block of 16 KiB grown by realloc, 16 bytes at a
 *                           time, to 64 KiB (3072 reallocs a round), each step's
 *                           bytes written, a sample of them (every 61st and the
 *                           last) checked at the end of each round; then freed
 *   regrow big PAIRS        malloc of a size drawn log-uniform in 64 KiB-1 MiB
 *                           (a fixed xorshift sequence), its first and last
 *                           bytes written and checked, then free (the grid's
 *                           *short* 64k-1M cell, bench/grid.c)
 *   regrow bigshared PAIRS  the same, its system calls not bounded: for a run
 *                           whose big classes hold 1 MiB (regrow.sh's big1m),
 *                           where chunks go through the shared lists, which
 *                           drain to the heap, whose purge follows the clock
 *
 * Prints "ok regrow: ..." with the memory system calls the library made
 * (memalloc_get_stats), and fails if a block lost its contents, or if the
 * `big` pattern made more than 1 system call per 1000 pairs once warm (its
 * blocks are reused: no trim, purge or mapping per pair).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memalloc.h"

#pragma weak memalloc_get_stats

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t syscalls(void)
{
    struct memalloc_stats st;
    if (memalloc_get_stats == NULL)
        return 0;
    memalloc_get_stats(&st);
    return st.syscalls;
}

static int strings(long rounds)
{
    enum { FROM = 16 << 10, TO = 64 << 10, STEP = 16 };
    for (long r = 0; r < rounds; r++) {
        unsigned char *p = malloc(FROM);
        if (!p) {
            printf("FAIL regrow: malloc(%d) failed\n", FROM);
            return 1;
        }
        memset(p, (int)(r & 0xff), FROM);
        for (size_t len = FROM + STEP; len <= TO; len += STEP) {
            unsigned char *q = realloc(p, len);
            if (!q) {
                printf("FAIL regrow: realloc(%zu) failed\n", len);
                return 1;
            }
            p = q;
            for (size_t i = len - STEP; i < len; i++)
                p[i] = (unsigned char)((r + len) & 0xff);
        }
        /* (every 61st byte and the last: a moved block copied whole, in place
         * or not; the count stays the reallocs') */
        for (size_t i = 0; i < TO; i = i + 61 < TO || i == TO - 1 ? i + 61 : TO - 1) {
            unsigned char want = i < FROM ? (unsigned char)(r & 0xff)
                                          : (unsigned char)((r + (i / STEP + 1) * STEP) & 0xff);
            if (p[i] != want) {
                printf("FAIL regrow: byte %zu of a grown block is %u, not %u\n", i, p[i], want);
                return 1;
            }
        }
        free(p);
    }
    printf("ok regrow: %ld rounds of %d reallocs, %zu memory system calls\n", rounds,
           (TO - FROM) / STEP, syscalls());
    return 0;
}

static int big(long pairs, int bounded)
{
    size_t warm = 0;
    for (long i = 0; i < pairs; i++) {
        /* log-uniform: a power of two from 64 KiB to 512 KiB, times 1-2 */
        size_t base = (size_t)64 << 10 << (next() % 4);
        size_t n = base + (size_t)(next() % base);
        unsigned char *p = malloc(n);
        if (!p) {
            printf("FAIL regrow: malloc(%zu) failed\n", n);
            return 1;
        }
        unsigned char v = (unsigned char)(i | 1);
        p[0] = v;
        p[n - 1] = v;
        if (p[0] != v || p[n - 1] != v) {
            printf("FAIL regrow: block %p of %zu bytes lost its contents\n", (void *)p, n);
            return 1;
        }
        free(p);
        if (i == 999)
            warm = syscalls();
    }
    size_t made = syscalls() - warm;
    if (bounded && pairs > 1000 && made * 1000 > (size_t)(pairs - 1000)) {
        printf("FAIL regrow: %zu memory system calls in %ld pairs of 64 KiB-1 MiB (at most 1 per 1000)\n",
               made, pairs - 1000);
        return 1;
    }
    printf("ok regrow: %ld pairs of 64 KiB-1 MiB, %zu memory system calls after the first 1000\n",
           pairs, made);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 2 ? atol(argv[2]) : 0;
    if (argc < 3 || n < 1) {
        fprintf(stderr, "usage: regrow strings ROUNDS | regrow big|bigshared PAIRS\n");
        return 64;
    }
    if (strcmp(argv[1], "strings") == 0)
        return strings(n);
    if (strcmp(argv[1], "big") == 0)
        return big(n, 1);
    if (strcmp(argv[1], "bigshared") == 0)
        return big(n, 0);
    fprintf(stderr, "regrow: unknown pattern %s\n", argv[1]);
    return 64;
}
