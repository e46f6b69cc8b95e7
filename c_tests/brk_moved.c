/*
 * brk_moved.c - the heap goes on in mmap'd regions when the break cannot
 * grow: here because the program itself moved the break with sbrk.
 *
 * Allocates (starting the break region), moves the break from outside the
 * allocator, then allocates 16 MiB more in 2000-byte blocks (below the mmap
 * threshold): every block must be writable and intact, the new memory must
 * come from mmap'd regions (stats), the break must stay where the program
 * put it, and the heap must be consistent.
 */
#include "check.h"
#include "memalloc.h"

/* Weak: the plain build resolves them from the preloaded library. */
#pragma weak memalloc_check
#pragma weak memalloc_get_stats

#define MiB (1024 * 1024)

int main(void)
{
    check_begin();
    CHECK(memalloc_check != NULL && memalloc_get_stats != NULL);
    enum { N = 8192, SZ = 2000 };
    static unsigned char *blk[N];
    struct memalloc_stats s0, s1;

    void *warm = malloc(100);
    CHECK(warm != NULL);
    memalloc_get_stats(&s0);

    char *foreign = sbrk(4096);              /* the program moves the break */
    CHECK(foreign != (void *)-1);
    memset(foreign, 0x5a, 4096);
    char *top = sbrk(0);

    for (int i = 0; i < N; i++) {
        blk[i] = malloc(SZ);
        CHECK(blk[i] != NULL);
        memset(blk[i], i & 0xff, SZ);
    }
    memalloc_get_stats(&s1);
    CHECKF(s1.mmap_region_bytes >= s0.mmap_region_bytes + 8 * MiB,
           "mmap'd regions %zu -> %zu bytes after 16 MiB with the break taken",
           s0.mmap_region_bytes, s1.mmap_region_bytes);
    CHECKF((char *)sbrk(0) == top, "the break moved from %p to %p", (void *)top, sbrk(0));
    for (int i = 0; i < 4096; i++)
        CHECK(foreign[i] == 0x5a);
    CHECK(memalloc_check() == 0);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < SZ; k += 97)
            CHECK(blk[i][k] == (i & 0xff));
        free(blk[i]);
    }
    free(warm);
    CHECK(memalloc_check() == 0);
    printf("brk_moved: mmap'd regions %zu -> %zu bytes; break left at %p\n",
           s0.mmap_region_bytes, s1.mmap_region_bytes, (void *)top);
    check_done("brk_moved");
    return 0;
}
