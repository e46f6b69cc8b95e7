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

static size_t size_of(int i)
{
    return sizes[i % NSIZES];
}

static void fill(long round, int i)
{
    size_t n = size_of(i);
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
        size_t n = size_of(i);
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
        if (mode == 't' && ++r < rounds) {
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
    if (rounds < 1 || batch < 1 || batch > MAX_BATCH || (mode != 'c' && mode != 't' && mode != 'l')) {
        fprintf(stderr, "usage: xfree ROUNDS [BATCH<=%d] [c|t|l]\n", MAX_BATCH);
        return 64;
    }
    warm_up();
    sem_init(&to_worker, 0, 0);
    sem_init(&to_main, 0, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
        fprintf(stderr, "xfree: pthread_create failed\n");
        return 1;
    }
    for (long r = 0; r < rounds; r++) {
        if (mode == 't' && r % 2 == 1) {
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
    if (mode == 't' && rounds % 2 == 1)
        sem_wait(&to_main);
    pthread_join(t, NULL);
    printf("ok xfree: %ld rounds of %d blocks, mode %c\n", rounds, batch, mode);
    return 0;
}
