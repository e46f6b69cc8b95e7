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

#include "check.h"
#include "vecbatch.h"

int main(void)
{
    check_begin();
    vec_batch();

    struct mallinfo2 before = mallinfo2();
    char *p = malloc(3 << 20);
    CHECK(p != NULL);
    struct mallinfo2 during = mallinfo2();
    CHECKF(during.hblks == before.hblks, "malloc(3 MiB) mapped after the threshold rose (hblks %zu -> %zu)",
           before.hblks, during.hblks);
    memset(p, 0x5a, 3 << 20);
    CHECK(p[(3 << 20) - 1] == 0x5a);
    free(p);

    long f0 = vec_faults();
    for (int b = 0; b < 3; b++)
        vec_batch();
    long f = vec_faults() - f0;
    printf("vecgrow: %ld page faults in batches 2-4\n", f);
    CHECKF(f < 4096, "%ld page faults in batches 2-4 (one batch has 4096 pages)", f);

    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    size_t most = vec_batch();
    CHECKF(most == 0, "%zu blocks mapped with M_MMAP_MAX 0", most);
    check_done("vecgrow");
    return 0;
}
