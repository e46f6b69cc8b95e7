/* c_tests/spills.c - a thread frees small blocks of one class at random
 * over many zones, in bursts larger than its bin: each bin spill gives its
 * blocks back to as many zones (c_tests/spills.sh counts, under callgrind's
 * cache model, the misses of those spills).
 *
 * usage: spills ROUNDS [LIVE=64000] [SIZE=512] [BURST=64]
 *
 * Keeps LIVE blocks of SIZE bytes (64000 of 512: about 500 zones of 127
 * blocks); each round frees BURST of them chosen at random and allocates
 * BURST again. Each block carries its index in its first word, checked
 * before its free (no block handed out twice). Prints "ok spills" and the
 * figures. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: spills ROUNDS [LIVE] [SIZE] [BURST]\n");
        return 2;
    }
    long rounds = atol(argv[1]);
    size_t live = argc > 2 ? (size_t)atol(argv[2]) : 64000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 512;
    size_t burst = argc > 4 ? (size_t)atol(argv[4]) : 64;
    if (live < burst || size < sizeof(size_t) || burst == 0) {
        fprintf(stderr, "spills: bad arguments\n");
        return 2;
    }
    size_t **blk = calloc(live, sizeof *blk);
    size_t *idx = calloc(burst, sizeof *idx);
    if (!blk || !idx)
        return 1;
    for (size_t i = 0; i < live; i++) {
        blk[i] = malloc(size);
        if (!blk[i])
            return 1;
        blk[i][0] = i;
    }
    for (long r = 0; r < rounds; r++) {
        for (size_t k = 0; k < burst; k++) {
            size_t i = (size_t)(next_rand() % live);
            while (!blk[i])
                i = (i + 1) % live;
            if (blk[i][0] != i) {
                fprintf(stderr, "spills: block %zu holds %zu\n", i, blk[i][0]);
                return 1;
            }
            free(blk[i]);
            blk[i] = NULL;
            idx[k] = i;
        }
        for (size_t k = 0; k < burst; k++) {
            size_t i = idx[k];
            blk[i] = malloc(size);
            if (!blk[i])
                return 1;
            blk[i][0] = i;
        }
    }
    for (size_t i = 0; i < live; i++)
        free(blk[i]);
    free(blk);
    free(idx);
    printf("ok spills (%ld rounds of %zu frees over %zu blocks of %zu bytes)\n", rounds, burst, live, size);
    return 0;
}
