/* c_tests/xfree.c - frees of blocks another thread allocated, for
 * instruction counting under callgrind (c_tests/xfree.sh).
 *
 *   xfree ROUNDS [BATCH=256] [MODE=c]
 *
 * Two threads hand batches of BATCH small blocks to each other (sizes 24,
 * 56, 100 and 240 bytes in turn, as a Rust pipeline's boxes, vectors and
 * strings; each block tagged in its first and last bytes) through two
 * semaphores.
 *   MODE c (consumer): the main thread allocates every batch, the other
 *          thread checks and frees it and allocates nothing: every free is
 *          a cross-thread free, and the main thread's mallocs take back
 *          what the other thread freed.
 *   MODE t (two-way): each thread frees the batch the other allocated,
 *          then allocates the next batch for the other.
 *   MODE l (local, the reference): as c, but the main thread frees each
 *          batch itself once the other thread has looked at it.
 *   MODE r (random classes): as t, with sizes drawn log-uniform in 16-128
 *          bytes (the grid's cross 16-128 B), a different one per block
 *          and round, so that a free's class follows no pattern.
 * Each thread first allocates and frees 48 blocks of each size of its own.
 * A round is BATCH malloc + cross-thread free pairs. xfree.sh takes the
 * difference of the instruction counts of two runs over the difference of
 * their pairs (start-up, exit and the semaphores' cost per batch, small
 * next to BATCH pairs, mostly cancel). Checks every tag before its free and
 * that no block of a batch is handed out twice. Prints "ok xfree: ..." on
 * success.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_BATCH = 4096, NSIZES = 4 };
static const size_t sizes[NSIZES] = {24, 56, 100, 240};
static long rounds;
static int batch;
static char mode;
static unsigned char *slots[MAX_BATCH];
static sem_t to_worker, to_main;

/* Mode r's sizes, log-uniform in 16-128 bytes (a fixed generator). */
enum { NRAND = 4096 };
static size_t rsizes[NRAND];

static void rand_sizes(void)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < NRAND; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        /* 16 * 2^(3u), u uniform in [0, 1), from 24 bits in 1/2^24 steps:
         * 2^(3u) by its integer part's shift and a cubic for the rest. */
        double u = (double)(x >> 40) / (double)(1u << 24) * 3.0;
        int k = (int)u;
        double f = u - k, p = 1.0 + f * (0.6957 + f * (0.2262 + f * 0.0781));
        rsizes[i] = (size_t)(16.0 * (double)(1 << k) * p);
        if (rsizes[i] > 128)
            rsizes[i] = 128;
    }
}

static size_t size_in(long round, int i)
{
    if (mode == 'r')
        return rsizes[(size_t)(round * 257 + i) % NRAND];
    return sizes[i % NSIZES];
}

static size_t size_of(int i)
{
    return size_in(0, i);
}

static void fill(long round, int i)
{
    size_t n = size_in(round, i);
    unsigned char *p = malloc(n);
    if (!p) {
        fprintf(stderr, "xfree: malloc(%zu) failed\n", n);
        exit(1);
    }
    unsigned v = (unsigned)(round * 7919 + i);
    memcpy(p, &v, sizeof v);
    p[n - 1] = (unsigned char)v;
    slots[i] = p;
}

static void drain(long round)
{
    for (int i = 0; i < batch; i++) {
        unsigned char *p = slots[i];
        size_t n = size_in(round, i);
        unsigned v = (unsigned)(round * 7919 + i), w;
        memcpy(&w, p, sizeof w);
        if (w != v || p[n - 1] != (unsigned char)v) {
            fprintf(stderr, "xfree: block %p of round %ld corrupted\n", (void *)p, round);
            exit(1);
        }
        free(p);
    }
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* No block of the batch handed out twice (checked every 64th round). */
static void distinct(long round)
{
    static uintptr_t all[MAX_BATCH];
    if (round % 64 != 0)
        return;
    for (int i = 0; i < batch; i++)
        all[i] = (uintptr_t)slots[i];
    qsort(all, (size_t)batch, sizeof all[0], cmp_ptr);
    for (int i = 1; i < batch; i++)
        if (all[i] == all[i - 1]) {
            fprintf(stderr, "xfree: %p handed out twice in round %ld\n", (void *)all[i], round);
            exit(1);
        }
}

/* Each thread first allocates and frees blocks of every size of its own, as
 * a thread that did some work before it began to consume does (its cache
 * is set up, past its first blocks). */
static void warm_up(void)
{
    static __thread void *own[NSIZES * 48];
    for (int i = 0; i < NSIZES * 48; i++)
        if (!(own[i] = malloc(size_of(i)))) {
            fprintf(stderr, "xfree: malloc failed\n");
            exit(1);
        }
    for (int i = 0; i < NSIZES * 48; i++)
        free(own[i]);
}

static void *worker(void *arg)
{
    (void)arg;
    warm_up();
    for (long r = 0; r < rounds; r++) {
        sem_wait(&to_worker);
        if (mode == 'l') {
            sem_post(&to_main);
            continue;
        }
        drain(r);
        if ((mode == 't' || mode == 'r') && ++r < rounds) {
            for (int i = 0; i < batch; i++)
                fill(r, i);
            distinct(r);
        }
        sem_post(&to_main);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : 1000;
    batch = argc > 2 ? atoi(argv[2]) : 256;
    mode = argc > 3 ? argv[3][0] : 'c';
    if (rounds < 1 || batch < 1 || batch > MAX_BATCH ||
        (mode != 'c' && mode != 't' && mode != 'l' && mode != 'r')) {
        fprintf(stderr, "usage: xfree ROUNDS [BATCH<=%d] [c|t|l|r]\n", MAX_BATCH);
        return 64;
    }
    rand_sizes();
    warm_up();
    sem_init(&to_worker, 0, 0);
    sem_init(&to_main, 0, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
        fprintf(stderr, "xfree: pthread_create failed\n");
        return 1;
    }
    for (long r = 0; r < rounds; r++) {
        if ((mode == 't' || mode == 'r') && r % 2 == 1) {
            /* The worker allocated this round's batch: free it here. */
            sem_wait(&to_main);
            drain(r);
            continue;
        }
        for (int i = 0; i < batch; i++)
            fill(r, i);
        distinct(r);
        sem_post(&to_worker);
        if (mode == 'c')
            sem_wait(&to_main);
        if (mode == 'l') {
            sem_wait(&to_main);
            drain(r);
        }
    }
    if ((mode == 't' || mode == 'r') && rounds % 2 == 1)
        sem_wait(&to_main);
    pthread_join(t, NULL);
    printf("ok xfree: %ld rounds of %d blocks, mode %c\n", rounds, batch, mode);
    return 0;
}
