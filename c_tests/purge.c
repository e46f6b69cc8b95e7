/*
 * purge.c - free pages in the middle of the heap go back to the OS without a
 * malloc_trim call, a bounded amount per call.
 *
 * memalloc discards the whole pages of big free chunks (MADV_DONTNEED) that
 * stayed free for a purge interval (250 ms), starting at a free past the
 * interval. Discarding costs about 55 us per resident MiB, so one free that
 * discarded a whole heap's worth could take milliseconds: a purge discards
 * at most 128 KiB per call and goes on at the next frees. malloc_trim(0)
 * still discards everything at once.
 *
 * The test frees 16 MiB of blocks below a block that stays in use (so that
 * the break cannot fall), waits 0.3 s, and checks: the next free discards
 * some but at most 128 KiB; the frees after it discard the rest (under 5% of
 * the freed pages stay resident; each free also cuts a 64 KiB block from the
 * free space and gives it back, as a program would); the blocks
 * kept in use among the freed ones keep their bytes; and the freed pages are
 * no longer resident (mincore). Then the same burst again, given back by one
 * malloc_trim(0).
 *
 * memalloc only (released_bytes is memalloc's statistic). Runs itself again
 * with MEMALLOC_MEDIUM_CACHE=0: the heap below the medium caches is tested.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memalloc.h"
#include "check.h"

#pragma weak memalloc_get_stats
#pragma weak memalloc_check

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

enum { NBLK = 164, KEEP_EVERY = 41 };
#define BLOCK (100 * KiB) /* below the mmap threshold: heap chunks */
#define BUDGET (128 * KiB)

static unsigned char *blk[NBLK];

static size_t released(void)
{
    struct memalloc_stats s;
    memalloc_get_stats(&s);
    return s.released_bytes;
}

static void pause_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&t, NULL);
}

/* The free tail of the break, taken after the pin (see burst). */
static void *tail[512];
static int ntail;

/* Allocates the blocks and a pin above them, and takes most of what the
 * break has free past the pin (a growing heap grows by an eighth of itself,
 * so the tail can hold megabytes: its trim, by the first free that reaches
 * it, is not the purge this test is about); frees all but every
 * KEEP_EVERY-th.
 * Returns the pin. */
static void *burst(void)
{
    for (int i = 0; i < NBLK; i++) {
        blk[i] = malloc(opaque(BLOCK));
        CHECK(blk[i] != NULL);
        pattern_fill(blk[i], BLOCK);
    }
    void *pin = malloc(opaque(BLOCK));
    CHECK(pin != NULL);
    ntail = 0;
    /* (down to 96 KiB: under the trim threshold, 128 KiB, and room for the
     * 64 KiB blocks the test cuts, as the tail had when the heap grew by
     * 64 KiB over the request; in blocks under the mmap threshold) */
    for (size_t k; ntail < 512 && (k = mallinfo2().keepcost) >= 128 * KiB; ntail++) {
        tail[ntail] = malloc(k - 96 * KiB < BLOCK ? k - 96 * KiB : BLOCK);
        CHECK(tail[ntail] != NULL);
    }
    CHECKF(mallinfo2().keepcost < 128 * KiB, "the break still has %zu bytes free at its tail",
           mallinfo2().keepcost);
    for (int i = 0; i < NBLK; i++)
        if (i % KEEP_EVERY != KEEP_EVERY - 1)
            free(blk[i]);
    return pin;
}

/* Resident pages among the freed blocks' whole pages, but the first page of
 * each run of freed blocks (where a free chunk keeps its header). */
static size_t resident_freed(size_t *total)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t res = 0;
    *total = 0;
    for (int i = 0; i < NBLK; i++) {
        if (i % KEEP_EVERY == KEEP_EVERY - 1 || i % KEEP_EVERY == 0)
            continue;
        uintptr_t lo = ((uintptr_t)blk[i] + page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t hi = ((uintptr_t)blk[i] + BLOCK) & ~(uintptr_t)(page - 1);
        unsigned char v[64];
        size_t n = (hi - lo) / page;
        CHECK(n <= sizeof v);
        CHECK(mincore((void *)lo, hi - lo, v) == 0);
        for (size_t k = 0; k < n; k++)
            res += v[k] & 1;
        *total += n;
    }
    return res;
}

static void check_kept(void)
{
    for (int i = KEEP_EVERY - 1; i < NBLK; i += KEEP_EVERY)
        CHECK_PATTERN(blk[i], BLOCK);
}

static void free_kept(void)
{
    for (int i = KEEP_EVERY - 1; i < NBLK; i += KEEP_EVERY)
        free(blk[i]);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* The purge is the heap's: freed 100 KiB blocks would otherwise wait in
     * the thread's medium cache (src/mcache.rs) and never reach it. */
    if (getenv("MEMALLOC_MEDIUM_CACHE") == NULL) {
        setenv("MEMALLOC_MEDIUM_CACHE", "0", 1);
        execv("/proc/self/exe", argv);
        perror("purge: execv");
        return 1;
    }
    check_begin();
    CHECKF(memalloc_get_stats != NULL && memalloc_check != NULL, "%s",
           "memalloc's API is missing: is libmemalloc.so loaded?");
    if (memalloc_get_stats == NULL || memalloc_check == NULL)
        return check_done("purge"), 1;
    printf("purge test: %d blocks of %zu KiB\n", NBLK, BLOCK / KiB);
    fflush(stdout);

    /* 1. a purge, a bounded amount per call */
    void *pin = burst();
    size_t total, res = resident_freed(&total);
    printf("freed: %zu of %zu pages resident\n", res, total);
    CHECKF(res * 2 > total, "only %zu of %zu freed pages were resident before the pause", res,
           total);
    pause_ms(300);
    size_t r0 = released();
    free(opaque_ptr(malloc(opaque(64 * KiB))));
    size_t first = released() - r0;
    printf("the first free after the pause discarded %zu KiB\n", first / KiB);
    CHECKF(first > 0, "no page discarded by the first free %s", "after a 0.3 s pause");
    CHECKF(first <= BUDGET, "the first free after the pause discarded %zu KiB, over %zu KiB",
           first / KiB, BUDGET / KiB);
    /* until the purge ends: ten frees in a row discard nothing */
    size_t most = 0;
    int frees = 1;
    for (int idle = 0; frees < 400 && idle < 10; frees++) {
        size_t before = released();
        free(opaque_ptr(malloc(opaque(64 * KiB))));
        size_t d = released() - before;
        idle = d == 0 ? idle + 1 : 0;
        if (d > most)
            most = d;
    }
    size_t all = released() - r0;
    res = resident_freed(&total);
    printf("%d frees discarded %zu KiB (at most %zu KiB each); %zu of %zu freed pages resident\n",
           frees, all / KiB, most / KiB, res, total);
    CHECKF(most <= BUDGET, "a free discarded %zu KiB, over %zu KiB", most / KiB, BUDGET / KiB);
    CHECKF(all >= 15 * MiB, "%d frees discarded only %zu KiB of about 16 MiB", frees, all / KiB);
    CHECKF(res * 20 < total, "%zu of %zu freed pages still resident", res, total);
    check_kept();
    CHECK(memalloc_check() == 0);
    free_kept();
    free(pin);
    for (int i = 0; i < ntail; i++)
        free(tail[i]);

    /* 2. malloc_trim discards everything at once. (Counted from before the
     * burst: on a loaded machine a purge can come due during the burst's
     * own frees and discard part of it first; that the trim left next to
     * nothing resident is the residency check below.) */
    r0 = released();
    pin = burst();
    pause_ms(300);
    CHECK(malloc_trim(0) == 1);
    all = released() - r0;
    res = resident_freed(&total);
    printf("the burst and malloc_trim(0) discarded %zu KiB; %zu of %zu freed pages resident\n", all / KiB, res,
           total);
    CHECKF(all >= 14 * MiB, "the burst and malloc_trim(0) discarded only %zu KiB of about 16 MiB", all / KiB);
    CHECKF(res * 10 < total, "%zu of %zu freed pages still resident after malloc_trim", res,
           total);
    check_kept();
    CHECK(memalloc_check() == 0);
    free_kept();
    free(pin);
    for (int i = 0; i < ntail; i++)
        free(tail[i]);
    check_done("purge");
    return 0;
}
