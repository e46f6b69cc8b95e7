/* c_tests/takeover.c - threads take over the blocks of threads that
 * exited (larson's servers), run by c_tests/takeover.sh.
 *
 *   takeover PAIRS [GENERATIONS=4]
 *
 * SLOTS blocks of 320-1024 B live in one array. GENERATIONS threads, one
 * after another, each replace PAIRS random slots (check the block's tag,
 * free it, malloc a new block of a random size there, tag it) and exit, so
 * that each thread frees what the threads before it allocated, from zones
 * whose owner exited. The main thread allocates the first blocks. At the
 * end memalloc_check() (when the allocator has it) must find the heap
 * consistent. Prints "ok takeover: ..." on success. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SLOTS = 4096 };
static unsigned char *slot[SLOTS];
static size_t len[SLOTS];
static long pairs;
static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void put(unsigned k)
{
    size_t n = 320 + (size_t)(next() % 705);
    unsigned char *p = malloc(n);
    if (!p) {
        fprintf(stderr, "takeover: malloc(%zu) failed\n", n);
        exit(1);
    }
    p[0] = (unsigned char)k;
    p[n - 1] = (unsigned char)(k >> 3);
    slot[k] = p;
    len[k] = n;
}

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < pairs; i++) {
        unsigned k = (unsigned)(next() % SLOTS);
        unsigned char *p = slot[k];
        if (p[0] != (unsigned char)k || p[len[k] - 1] != (unsigned char)(k >> 3)) {
            fprintf(stderr, "takeover: block %p of slot %u corrupted\n", (void *)p, k);
            exit(1);
        }
        free(p);
        put(k);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pairs = argc > 1 ? atol(argv[1]) : 100000;
    int gens = argc > 2 ? atoi(argv[2]) : 4;
    if (pairs < 1 || gens < 1) {
        fprintf(stderr, "usage: takeover PAIRS [GENERATIONS]\n");
        return 64;
    }
    for (unsigned k = 0; k < SLOTS; k++)
        put(k);
    for (int g = 0; g < gens; g++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) {
            fprintf(stderr, "takeover: thread failed\n");
            return 1;
        }
    }
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "memalloc_check");
    if (check && check() != 0) {
        fprintf(stderr, "takeover: memalloc_check found %d broken invariants\n", check());
        return 1;
    }
    for (unsigned k = 0; k < SLOTS; k++)
        free(slot[k]);
    printf("ok takeover: %d generations of %ld pairs\n", gens, pairs);
    return 0;
}
