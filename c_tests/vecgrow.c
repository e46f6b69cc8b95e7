/*
 * vecgrow.c - vectors grown by doubling realloc, in batches (bench/realloc's
 * second part): the pages of the first batch serve the next ones.
 *
 * Batch 1 of 4 vectors of 32-bit ints, interleaved, each doubled from 1
 * element to 1M (4 MiB), is mapped from 128 KiB, grown by mremap, and freed:
 * the frees raise the dynamic mmap threshold past 4 MiB (glibc's rule), so
 * that later blocks of those sizes come from the heap. A mapping that grew
 * by realloc is kept when freed (`large::free`), and a realloc growing a heap
 * block below the threshold moves it into a kept mapping of at most twice
 * its size (`large::alloc_kept`), whose pages are resident. Checked:
 * 1. after batch 1, malloc(3 MiB) is not mapped (mallinfo2's hblks: the
 *    threshold rose) and its memory is usable;
 * 2. batches 2-4 (48 MiB of vectors) take fewer page faults than one batch
 *    has pages (4096; getrusage): 6.8k before mappings that grew were kept
 *    (batch 2 grew the break with fresh pages), 2.1k with them;
 * 3. every vector keeps its contents;
 * 4. after mallopt(M_MMAP_MAX, 0), a batch maps no block (hblks stays 0)
 *    though mappings are kept.
 *
 * memalloc only (the fault bound is memalloc's policy).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "check.h"

#define AT_ONCE 4
#define VECLEN ((size_t)1 << 20)

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* One batch; returns the most blocks mapped (mallinfo2's hblks) after a
 * realloc. */
static size_t batch(void)
{
    size_t most = 0;
    uint32_t *v[AT_ONCE] = {0};
    size_t cap[AT_ONCE] = {0};
    for (size_t i = 0; i < VECLEN; i++) {
        for (int k = 0; k < AT_ONCE; k++) {
            if (i == cap[k]) {
                size_t nc = cap[k] ? cap[k] * 2 : 1;
                uint32_t *nv = realloc(v[k], nc * sizeof *nv);
                CHECK(nv != NULL);
                if (nv == NULL)
                    exit(1);
                v[k] = nv;
                cap[k] = nc;
                size_t h = mallinfo2().hblks;
                most = h > most ? h : most;
            }
            v[k][i] = (uint32_t)(i ^ (uint32_t)k);
        }
    }
    for (int k = 0; k < AT_ONCE; k++) {
        size_t bad = 0;
        for (size_t i = 0; i < VECLEN; i += 4093)
            bad += v[k][i] != (uint32_t)(i ^ (uint32_t)k);
        bad += v[k][VECLEN - 1] != (uint32_t)((VECLEN - 1) ^ (uint32_t)k);
        CHECKF(bad == 0, "vector %d lost %zu values", k, bad);
        free(v[k]);
    }
    return most;
}

int main(void)
{
    check_begin();
    batch();

    struct mallinfo2 before = mallinfo2();
    char *p = malloc(3 << 20);
    CHECK(p != NULL);
    struct mallinfo2 during = mallinfo2();
    CHECKF(during.hblks == before.hblks, "malloc(3 MiB) mapped after the threshold rose (hblks %zu -> %zu)",
           before.hblks, during.hblks);
    memset(p, 0x5a, 3 << 20);
    CHECK(p[(3 << 20) - 1] == 0x5a);
    free(p);

    long f0 = faults();
    for (int b = 0; b < 3; b++)
        batch();
    long f = faults() - f0;
    printf("vecgrow: %ld page faults in batches 2-4\n", f);
    CHECKF(f < 4096, "%ld page faults in batches 2-4 (one batch has 4096 pages)", f);

    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    size_t most = batch();
    CHECKF(most == 0, "%zu blocks mapped with M_MMAP_MAX 0", most);
    check_done("vecgrow");
    return 0;
}
