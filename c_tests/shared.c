/*
 * shared.c - the medium caches' shared lists hold up to 32 MiB before they
 * go back to the heap (src/small/mcache.rs, `CENTRAL_CAP`;
 * docs/performance.md, "(tail17e)"), on the real library.
 *
 * One thread takes 1800 blocks of 16 KiB (28 MiB of chunks) and writes the
 * first byte of each (the medium latency workload's blocks), then frees
 * them: the thread's cache keeps up to its cap (4 MiB), the rest goes to
 * the shared lists. Then:
 *   - the caches hold at least 24 MiB (memalloc_get_stats' medium_cached;
 *     with the 16 MiB of before, drains took the lists down to 8 MiB each
 *     time they passed 16: 12.2 MiB were held) and at most 32 MiB and the
 *     thread's cap, 37 MiB (the cap holds);
 *   - the same blocks taken again, first byte written, take fewer than 100
 *     page faults: they come back from the lists with their first pages
 *     resident (0 faults; with a 16 MiB cap, the drained chunks were cut
 *     again from the heap, each new header in a page nobody touched: 819).
 * malloc_trim(0) then empties the lists: medium_cached under 1 MiB.
 */
#include "check.h"

#include <malloc.h>
#include <sys/resource.h>

#include "memalloc.h"

#pragma weak memalloc_get_stats

#define MiB (1024.0 * 1024.0)
enum { N = 1800, SIZE = 16 * 1024 };
static unsigned char *blk[N];

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static size_t cached(void)
{
    struct memalloc_stats s;
    memalloc_get_stats(&s);
    return s.medium_cached;
}

int main(void)
{
    check_begin();
    CHECK(memalloc_get_stats != NULL);
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SIZE);
        CHECK(blk[i] != NULL);
        blk[i][0] = (unsigned char)i;
    }
    for (int i = 0; i < N; i++)
        free(blk[i]);
    size_t held = cached();
    long f0 = faults();
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SIZE);
        CHECK(blk[i] != NULL);
        blk[i][0] = (unsigned char)i;
    }
    long again = faults() - f0;
    printf("shared lists: %.1f MiB held after freeing %.1f MiB; taking them again faulted %ld "
           "pages in\n",
           held / MiB, N * (double)SIZE / MiB, again);
    CHECKF(held >= 24 * MiB, "only %.1f MiB held", held / MiB);
    CHECKF(held <= 37 * MiB, "%.1f MiB held, past the caps", held / MiB);
    CHECKF(again < 100, "taking the blocks again faulted %ld pages in", again);
    for (int i = 0; i < N; i++) {
        CHECK(blk[i][0] == (unsigned char)i);
        free(blk[i]);
    }
    malloc_trim(0);
    CHECKF(cached() < 1 * MiB, "%.1f MiB held after malloc_trim", cached() / MiB);
    check_done("shared");
    return 0;
}
