/* c_tests/classes.c - small requests of random classes: one thread replaces
 * random blocks of a live set with blocks of random small sizes, most of
 * them of the smallest classes (as bench/mthreads' 1/size^2 sizes). Run by
 * c_tests/classes.sh under callgrind's branch simulation: a malloc whose
 * class's bin has nothing to pop leaves the fast path on a branch that no
 * predictor learns when classes vary, so how often that happens shows as
 * mispredicted branches per pair.
 *
 *   classes [PAIRS=100000] [MODE=s]
 *
 * MODE s: sizes 1/size^2 over 1-256 B, a random block replaced (as above);
 * MODE band: sizes log-uniform over 16-128 B (bench/grid's smallest band,
 * eight classes), a random block replaced (the grid's "long");
 * MODE fifo: the same sizes, the blocks replaced in the order they were
 * allocated (the grid's "cross" in one thread: each block freed 1024
 * allocations after its malloc, so the frees of a class come in runs);
 * MODE short: sizes log-uniform over 128-4096 B (20 classes), each block
 * freed right after its malloc and the writes of its first and last bytes
 * (the grid's "short" 128 B-4 KiB);
 * MODE sparse: a second thread (so a sparse one, whose requests of up to
 * 256 B all take the 256-byte class: cache::SPARSE_USED) keeps 16 blocks of
 * 16-256 B in a ring and replaces the oldest (bench/threads32's loop);
 * MODE burst: a sparse thread too, in bursts: it allocates 16 blocks of
 * 16-128 B (the band's sizes), then frees them in the order it allocated
 * them (the grid's "cross" 16-128 B in one thread, whose ring is drained
 * every 16 allocations).
 * The loop has no data-dependent branch of its own (the slot and the size
 * come from table lookups), so the mispredictions are the allocator's.
 * Checks that each block keeps its tag until its free. */
#include "check.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>

enum { LIVE = 1024, SIZES = 64 };

static uint64_t rng = 0x9e3779b97f4a7c15u;

static inline uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum { RING = 16 };

static long g_pairs;
static size_t g_size[SIZES];

/* MODE burst's loop, on a thread of its own: bursts of RING mallocs, then
 * their frees in the same order. */
static void *burst_loop(void *arg)
{
    (void)arg;
    unsigned char *p[RING];
    unsigned bad = 0;
    for (long i = 0; i < g_pairs / RING; i++) {
        for (int k = 0; k < RING; k++) {
            p[k] = malloc(g_size[next() & (SIZES - 1)]);
            p[k][0] = (unsigned char)k;
        }
        for (int k = 0; k < RING; k++) {
            bad |= p[k][0] ^ (unsigned char)k;
            free(p[k]);
        }
    }
    CHECKF(bad == 0, "a block lost its tag before its free");
    return NULL;
}

/* MODE sparse's loop, on a thread of its own. */
static void *sparse_loop(void *arg)
{
    (void)arg;
    unsigned char *p[RING];
    for (int k = 0; k < RING; k++) {
        p[k] = malloc(g_size[k]);
        CHECK(p[k] != NULL);
        p[k][0] = (unsigned char)k;
    }
    unsigned bad = 0;
    for (long i = 0; i < g_pairs; i++) {
        unsigned k = (unsigned)(i & (RING - 1));
        bad |= p[k][0] ^ (unsigned char)k;
        free(p[k]);
        p[k] = malloc(g_size[next() & (SIZES - 1)]);
        p[k][0] = (unsigned char)k;
    }
    CHECKF(bad == 0, "a block lost its tag before its free");
    for (int k = 0; k < RING; k++)
        free(p[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 100000;
    const char *mode = argc > 2 ? argv[2] : "s";
    int band = strcmp(mode, "band") == 0, fifo = strcmp(mode, "fifo") == 0;
    int shrt = strcmp(mode, "short") == 0;
    int burst = strcmp(mode, "burst") == 0;
    if (strcmp(mode, "sparse") == 0 || burst) {
        /* sparse: 16..256 B, uniform; burst: 16..128 B, log-uniform (the
         * band's sizes, below) */
        double f = 16.0 * 1.0161964;
        for (int i = 0; i < SIZES; i++, f *= 1.0330240)
            g_size[i] = burst ? (size_t)f : 16 + (size_t)i * 240 / (SIZES - 1);
        g_pairs = pairs;
        void *mine = malloc(16); /* this thread has a cache: the next starts sparse */
        CHECK(mine != NULL);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, burst ? burst_loop : sparse_loop, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        free(mine);
        check_done("classes");
        return 0;
    }
    CHECKF(band || fifo || shrt || strcmp(mode, "s") == 0, "unknown mode %s", mode);
    /* s: 1/size^2 over 1..256 B, quantised: half the requests of 1 byte,
     * 15 of 16 up to 16 bytes, the rest up to 256; band, fifo: log-uniform
     * over 16..128 B; short: log-uniform over 128..4096 B */
    size_t size[SIZES];
    double f = 16.0 * 1.0161964; /* 16 * 8^(0.5/64), then a factor 8^(1/64) a step */
    double g = 128.0 * 1.0274461; /* 128 * 32^(0.5/64), then 32^(1/64) a step */
    for (int i = 0; i < SIZES; i++, f *= 1.0330240, g *= 1.0556454) {
        double u = (i + 0.5) / SIZES;
        if (shrt)
            size[i] = (size_t)g;
        else if (band || fifo)
            size[i] = (size_t)f;
        else
            size[i] = (size_t)(1.0 / (1.0 - u * (1.0 - 1.0 / 256)));
    }
    unsigned char *p[LIVE];
    for (int k = 0; k < LIVE; k++) {
        p[k] = malloc(size[k % SIZES]);
        CHECK(p[k] != NULL);
        p[k][0] = (unsigned char)k;
    }
    unsigned bad = 0;
    for (long i = 0; shrt && i < pairs; i++) {
        size_t n = size[next() & (SIZES - 1)];
        unsigned char *q = malloc(n);
        q[0] = (unsigned char)i;
        q[n - 1] = (unsigned char)i;
        bad |= (q[0] ^ q[n - 1]) | (unsigned)(((uintptr_t)q & 15) != 0);
        free(q);
    }
    for (long i = 0; !shrt && i < pairs; i++) {
        uint64_t r = next();
        unsigned k = fifo ? (unsigned)(i & (LIVE - 1)) : (unsigned)(r & (LIVE - 1));
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
