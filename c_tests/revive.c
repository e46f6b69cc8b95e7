/*
 * revive.c - zones that got blocks back are reused before new zones are made.
 *
 * Fills N blocks of 64 bytes (N / 1000 zones of the class), frees every
 * other block of the newest half (no zone empties: each keeps half its
 * blocks), then allocates N / 4 blocks again, which fit in the blocks freed.
 * Checked: the resident set grows by less than MAX_GROWTH over the second
 * allocation (the blocks freed are reused) and
 * every block keeps its contents.
 *
 * A spill that gives a block to a zone that ran dry leaves it on its full
 * list, to write no list links of other zones' headers (`free_local_slow`).
 * Found there only by `find_zone`'s scan of the four oldest full zones, the
 * half-emptied zones, the newest, were reached after hundreds of new zones
 * had been made: the resident set grew by 1.0 MB (1.9 MB with N = 4M). On
 * the revived list (`Cache::revived`), taken first as the avail list's
 * front was before: 0.1 MB, as before either.
 *
 * memalloc only (the growth bound is memalloc's policy).
 */
#include "check.h"
#include <string.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 2000000
#define SIZE 64
#define MAX_GROWTH (256 << 10)

/* Resident bytes of the process. */
static size_t resident(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL && fscanf(f, "%ld %ld", &pages, &rss) == 2);
    if (f)
        fclose(f);
    return (size_t)rss * 4096;
}

int main(void)
{
    check_begin();
    uint64_t **p = malloc(N * sizeof *p);
    uint64_t **q = malloc(N / 4 * sizeof *q);
    CHECK(p != NULL && q != NULL);
    memset(q, 0, N / 4 * sizeof *q); /* resident before the count */
    for (size_t i = 0; i < N; i++) {
        p[i] = malloc(SIZE);
        CHECK(p[i] != NULL);
        p[i][0] = i;
    }
    for (size_t i = N / 2; i < N; i += 2) {
        free(p[i]);
        p[i] = NULL;
    }
    size_t before = resident();
    for (size_t i = 0; i < N / 4; i++) {
        q[i] = malloc(SIZE);
        CHECK(q[i] != NULL);
        q[i][0] = ~(uint64_t)i;
    }
    size_t grew = resident() - before;
    printf("revive: the resident set grew by %zu bytes over %d allocations\n", grew, N / 4);
    CHECKF(grew < MAX_GROWTH, "the resident set grew by %zu bytes (at most %d): freed blocks not reused", grew,
           MAX_GROWTH);
    size_t bad = 0;
    for (size_t i = 0; i < N; i++)
        if (p[i] != NULL && p[i][0] != i)
            bad++;
    for (size_t i = 0; i < N / 4; i++)
        if (q[i][0] != ~(uint64_t)i)
            bad++;
    CHECKF(bad == 0, "%zu blocks lost their contents", bad);
    for (size_t i = 0; i < N; i++)
        free(p[i]);
    for (size_t i = 0; i < N / 4; i++)
        free(q[i]);
    free(p);
    free(q);
    check_done("revive");
    return 0;
}
