/*
 * bigreuse.c - a freed big heap block is reused whole, at its address, by
 * the next request of its size class, so that a program churning big blocks
 * (writing only their first bytes) does not fault in a fresh page per malloc
 * and keep it resident in the free space.
 *
 * Requests above the medium classes (1 MiB) that the heap serves are
 * rounded to one of 8 sizes per power of two (`heap::big_size`).
 *
 * 1. Same address (the mmap threshold raised to 2 MiB first): a block of
 *    1200000 bytes freed between two blocks in use is where malloc(1190000)
 *    and malloc(1300000) put theirs (one class, above the medium classes'
 *    1 MiB); its usable size is its class's (1.25 MiB less the header).
 * 2. Page faults: one thread keeps 64 blocks of 256 KiB-64 MiB (density
 *    1/size^2, as bench/mthreads' `s`), replacing a random one per step and
 *    writing its first byte; over 60000 steps after a warm-up of 20000 it
 *    takes under one page fault per 20 steps (getrusage), and the process's
 *    peak RSS stays under 96 MiB. (Unrounded: one fault per 5 steps, and a
 *    peak of 150 MiB; rounded, 0.04 faults a step and 30 MiB.)
 *
 * memalloc only (the sizes and addresses are memalloc's policy).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* density 1/s^2 over [lo, hi] (inverse transform of the CDF) */
static size_t draw(size_t lo, size_t hi)
{
    double u = (double)(next() >> 11) * (1.0 / 9007199254740992.0);
    double a = 1.0 / (double)lo, b = 1.0 / (double)hi;
    size_t s = (size_t)(1.0 / (a - u * (a - b)));
    return s < lo ? lo : s > hi ? hi : s;
}

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void same_address(void)
{
    /* Freeing a block mapped on its own raises the mmap threshold past its
       size (glibc's dynamic threshold): blocks of 1200000 come from the
       heap. */
    free(malloc(2 * MiB));
    unsigned char *lo = malloc(1200000), *a = malloc(1200000), *hi = malloc(1200000);
    CHECK(lo && a && hi);
    size_t us = malloc_usable_size(a);
    CHECKF(us > 1280 * KiB - 32 && us <= 1280 * KiB, "usable %zu", us);
    a[0] = 1;
    free(a);
    unsigned char *b = malloc(1190000);
    CHECKF(b == a, "freed %p, got %p", (void *)a, (void *)b);
    free(b);
    unsigned char *c = malloc(1300000);
    CHECKF(c == a, "freed %p, got %p", (void *)a, (void *)c);
    free(c);
    free(lo);
    free(hi);
}

enum { LIVE = 64, WARM = 20000, STEPS = 60000 };

static void churn(void)
{
    static unsigned char *p[LIVE];
    static size_t sz[LIVE];
    for (int k = 0; k < LIVE; k++) {
        sz[k] = draw(256 * KiB, 64 * MiB);
        p[k] = malloc(sz[k]);
        CHECK(p[k] != NULL);
        p[k][0] = (unsigned char)sz[k];
    }
    long f0 = 0;
    for (int i = 0; i < WARM + STEPS; i++) {
        if (i == WARM)
            f0 = faults();
        int k = (int)(next() % LIVE);
        CHECK(p[k][0] == (unsigned char)sz[k]);
        free(p[k]);
        sz[k] = draw(256 * KiB, 64 * MiB);
        p[k] = malloc(sz[k]);
        CHECK(p[k] != NULL);
        p[k][0] = (unsigned char)sz[k];
    }
    long f = faults() - f0;
    long peak = peak_kib();
    printf("churn: %ld page faults in %d steps, peak RSS %ld KiB\n", f, STEPS, peak);
    CHECKF(f * 20 < STEPS, "%ld page faults in %d steps", f, STEPS);
    CHECKF(peak < (long)(96 * 1024), "peak RSS %ld KiB", peak);
    for (int k = 0; k < LIVE; k++)
        free(p[k]);
}

int main(void)
{
    check_begin();
    same_address();
    churn();
    check_done("bigreuse");
    return 0;
}
