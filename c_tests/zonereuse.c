/*
 * zonereuse.c - a class whose current zone runs dry takes the free blocks
 * of its other zones before it carves new pages of the current one
 * (src/small/cache/slow.rs, `refill` and `avail_ready`; docs/performance.md,
 * "Medium malloc tails (mtail17h)"), on the real library.
 *
 * One thread takes blocks of 2000 bytes (the 2048-byte class: 32 to a
 * 64 KiB zone, two to a page) until one lands in a zone it had not used
 * (the class's current zone now, most of it not carved yet), then frees
 * every other block of the zones before it: their blocks go back to those
 * zones (through the bin's spills), which come to the class's avail list.
 * Then it takes NEW more blocks, writing the first byte of each as a
 * program would:
 *   - at most SLACK of them lie in the current zone (a carve writes a link
 *     into each block of a fresh page: with the current zone carved first,
 *     as before, 22 of the 40 came from it);
 *   - they take at most SLACK page faults (the freed blocks' pages are
 *     resident; before, 11 faults, one a page carved).
 * A class whose current zone is carved and whose avail list is empty still
 * carves (the blocks taken first here, and every other test).
 */
#include "check.h"

#include <sys/resource.h>

enum { SIZE = 2000, MAXB = 4096, NEW = 40, SLACK = 4 };
#define ZONE_SIZE ((uintptr_t)64 << 10)

static unsigned char *blk[MAXB];

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static uintptr_t zone_of(const void *p)
{
    return (uintptr_t)p & ~(ZONE_SIZE - 1);
}

/* Was zone z used by one of the first n blocks? */
static int seen(uintptr_t z, int n)
{
    for (int i = 0; i < n; i++)
        if (zone_of(blk[i]) == z)
            return 1;
    return 0;
}

int main(void)
{
    check_begin();
    /* Past the class's first blocks (which come from the heap while the
     * class is cold) and four zones' worth, then until a block starts a
     * zone not seen before. */
    int n = 0;
    uintptr_t cur = 0;
    for (; n < MAXB; n++) {
        blk[n] = malloc(SIZE);
        CHECK(blk[n] != NULL);
        blk[n][0] = (unsigned char)n;
        if (n >= 160 && !seen(zone_of(blk[n]), n)) {
            cur = zone_of(blk[n]);
            n++;
            break;
        }
    }
    CHECKF(cur != 0, "no new zone in %d blocks", n);
    /* Every other block of the zones before the current one. */
    int freed = 0;
    for (int i = 0; i < n; i++) {
        if ((i & 1) == 0 && zone_of(blk[i]) != cur) {
            free(blk[i]);
            blk[i] = NULL;
            freed++;
        }
    }
    CHECK(freed >= 64);
    unsigned char *more[NEW];
    long f0 = faults();
    for (int i = 0; i < NEW; i++) {
        more[i] = malloc(SIZE);
        CHECK(more[i] != NULL);
        more[i][0] = (unsigned char)i;
    }
    long f1 = faults();
    int in_cur = 0;
    for (int i = 0; i < NEW; i++)
        in_cur += zone_of(more[i]) == cur;
    CHECKF(in_cur <= SLACK, "%d of %d new blocks from the current zone, %d freed elsewhere", in_cur,
           NEW, freed);
    CHECKF(f1 - f0 <= SLACK, "%ld page faults for %d blocks, %d freed elsewhere", f1 - f0, NEW, freed);
    for (int i = 0; i < NEW; i++) {
        CHECK(more[i][0] == (unsigned char)i);
        free(more[i]);
    }
    for (int i = 0; i < n; i++)
        free(blk[i]);
    check_done("zonereuse");
    return 0;
}
