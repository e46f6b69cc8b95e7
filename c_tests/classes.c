/* c_tests/classes.c - small requests of random classes: one thread replaces
 * random blocks of a live set with blocks of random small sizes, most of
 * them of the smallest classes (as bench/mthreads' 1/size^2 sizes). Run by
 * c_tests/classes.sh under callgrind's branch simulation: a malloc whose
 * class's bin has nothing to pop leaves the fast path on a branch that no
 * predictor learns when classes vary, so how often that happens shows as
 * mispredicted branches per pair.
 *
 *   classes [PAIRS=100000]
 *
 * The loop has no data-dependent branch of its own (the slot and the size
 * come from table lookups), so the mispredictions are the allocator's.
 * Checks that each block keeps its tag until its free. */
#include "check.h"
#include <stdint.h>

enum { LIVE = 1024, SIZES = 64 };

static uint64_t rng = 0x9e3779b97f4a7c15u;

static inline uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 100000;
    /* 1/size^2 over 1..256 B, quantised: half the requests of 1 byte,
     * 15 of 16 up to 16 bytes, the rest up to 256 */
    size_t size[SIZES];
    for (int i = 0; i < SIZES; i++) {
        double u = (i + 0.5) / SIZES;
        size[i] = (size_t)(1.0 / (1.0 - u * (1.0 - 1.0 / 256)));
    }
    unsigned char *p[LIVE];
    for (int k = 0; k < LIVE; k++) {
        p[k] = malloc(size[k % SIZES]);
        CHECK(p[k] != NULL);
        p[k][0] = (unsigned char)k;
    }
    unsigned bad = 0;
    for (long i = 0; i < pairs; i++) {
        uint64_t r = next();
        unsigned k = (unsigned)(r & (LIVE - 1));
        bad |= p[k][0] ^ (unsigned char)k;
        free(p[k]);
        p[k] = malloc(size[(r >> 10) & (SIZES - 1)]);
        p[k][0] = (unsigned char)k;
    }
    CHECKF(bad == 0, "a block lost its tag before its free");
    for (int k = 0; k < LIVE; k++)
        free(p[k]);
    check_done("classes");
    return 0;
}
