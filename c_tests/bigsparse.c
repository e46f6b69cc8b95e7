/*
 * bigsparse.c - big blocks (1-64 MiB) that the program writes only in part
 * do not leave their touched pages resident in the free space, and a
 * program that allocates and frees big blocks in rounds does not move the
 * break at every round.
 *
 * 1. Sparse churn (bench/grid's `long` cell of 1-64 MiB): one thread keeps
 *    4 blocks of 1-64 MiB (about log-uniform), replacing a random one per
 *    step and writing its first and last bytes, 40000 steps. Every new block
 *    is cut at other offsets than the freed ones, so without a purge the
 *    free space collects a page or two per step (peak RSS 63 MB here; the
 *    grid's cell: 112 MB, jemalloc 19 MB, tcmalloc 63 MB). The sparse purge
 *    (`heap::purge_sparse`) discards the free chunks that are not dense
 *    once the resident set grew 4 MiB past where it last left it: 16-18 MB
 *    (26-31 MB when it waited for 8 MiB). Checked: peak RSS under 24 MiB,
 *    and memory was given back (memalloc_get_stats' released_bytes grew).
 *    (c_tests/bigreuse.c checks the other side: a program that reuses its
 *    freed big blocks at their address is not purged into page faults.)
 * 2. Rounds (bench/grid's `bulk` cell): 40 rounds of 24 blocks of 1-64 MiB
 *    allocated (first and last bytes written), then all freed. The free tail
 *    of the break a round leaves is the next round's memory: a trim at each
 *    round, and a growth of the break at each malloc of the next, made about
 *    one system call per block (7249 `brk` calls for 8000 blocks with 16
 *    threads), each under the heap's lock. Checked: fewer than one system
 *    call (memalloc_get_stats' count) per 4 blocks over the last 30 rounds.
 * 3. Rounds with 64 threads (bench/grid's `bulk` cell at 64 threads): each
 *    thread allocates 4 blocks of 1-64 MiB, then (after a barrier) frees
 *    the 4 of the next thread; 40 rounds of 256 blocks, about 4 GiB, more
 *    than the free tail a trim keeps while a program cycles (1 GiB): the
 *    trim at each round was followed by a growth of the break at each
 *    malloc of the next (1.5 system calls per block, under the heap's lock,
 *    with 63 threads queued on it). Checked: fewer than one system call
 *    per 4 blocks over the last 30 rounds.
 * 4. Page faults (bench/grid's `bulk` and `cross` cells at 4-16 threads): the
 *    same rounds with 16 threads, 100 of them. A block cut from a bigger free
 *    chunk at its size class ended up to an eighth before the next header,
 *    so writing its last byte faulted in a page of its own besides the page
 *    of the header cut past it: 2.2 faults a block (glibc 1.1). Now, once
 *    the heap saw that the program writes the ends of its big blocks (a
 *    sample of them, `Heap::alloc_big`), a block is cut to its request and
 *    ends in the page of that header.
 *    Checked: under 1.25 minor faults a block over the last 80 rounds (1.6-1.7
 *    before).
 *
 * memalloc only (these are memalloc's policies and counters).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "check.h"
#include "memalloc.h"

/* weak: the plain build resolves it from the preloaded library */
#pragma weak memalloc_get_stats

#define MiB ((size_t)1 << 20)

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* about log-uniform in [lo, hi) (hi / lo a power of two): an octave drawn
   uniformly, then a size uniformly in it (bench/grid draws log-uniform) */
static size_t draw(size_t lo, size_t hi)
{
    int octaves = 0;
    while ((lo << octaves) < hi)
        octaves++;
    size_t base = lo << (next() % (uint64_t)octaves);
    return base + (size_t)(next() % base);
}

static long peak_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static unsigned char *get(size_t s)
{
    unsigned char *p = malloc(s);
    CHECK(p != NULL);
    p[0] = (unsigned char)s;
    p[s - 1] = (unsigned char)(s >> 8);
    return p;
}

static void put(unsigned char *p, size_t s)
{
    CHECK(p[0] == (unsigned char)s && p[s - 1] == (unsigned char)(s >> 8));
    free(p);
}

enum { LIVE = 4, STEPS = 40000 };

static void sparse_churn(void)
{
    unsigned char *p[LIVE];
    size_t sz[LIVE];
    struct memalloc_stats st;
    memalloc_get_stats(&st);
    size_t released0 = st.released_bytes;
    for (int k = 0; k < LIVE; k++)
        p[k] = get(sz[k] = draw(MiB, 64 * MiB));
    for (int i = 0; i < STEPS; i++) {
        int k = (int)(next() % LIVE);
        put(p[k], sz[k]);
        p[k] = get(sz[k] = draw(MiB, 64 * MiB));
    }
    long peak = peak_kib();
    memalloc_get_stats(&st);
    printf("sparse churn: peak RSS %ld KiB, %zu MiB given back\n", peak,
           (st.released_bytes - released0) >> 20);
    CHECKF(peak < 24 * 1024, "peak RSS %ld KiB", peak);
    CHECK(st.released_bytes > released0);
    for (int k = 0; k < LIVE; k++)
        put(p[k], sz[k]);
}

enum { ROUNDS = 40, WARM = 10, BATCH = 24 };

static void rounds(void)
{
    unsigned char *p[BATCH];
    size_t sz[BATCH];
    struct memalloc_stats st;
    size_t calls0 = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (r == WARM) {
            memalloc_get_stats(&st);
            calls0 = st.syscalls;
        }
        for (int k = 0; k < BATCH; k++)
            p[k] = get(sz[k] = draw(MiB, 64 * MiB));
        for (int k = 0; k < BATCH; k++) {
            int j = k + (int)(next() % (uint64_t)(BATCH - k));
            unsigned char *t = p[k];
            size_t ts = sz[k];
            p[k] = p[j], sz[k] = sz[j];
            p[j] = t, sz[j] = ts;
            put(p[k], sz[k]);
        }
    }
    memalloc_get_stats(&st);
    size_t calls = st.syscalls - calls0, blocks = (size_t)(ROUNDS - WARM) * BATCH;
    printf("rounds: %zu system calls for %zu blocks\n", calls, blocks);
    CHECKF(calls * 4 < blocks, "%zu system calls for %zu blocks", calls, blocks);
}

enum { THREADS = 64, TBATCH = 4 };

static int g_threads = THREADS, g_rounds = ROUNDS, g_warm = WARM;
static long g_faults0;
static pthread_barrier_t g_round;
static unsigned char *g_blk[THREADS][TBATCH];
static size_t g_sz[THREADS][TBATCH];
static size_t g_calls0;

static void *rounds_thread(void *arg)
{
    int t = (int)(intptr_t)arg, o = (t + 1) % g_threads;
    uint64_t r = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
    for (int k = 0; k < g_rounds; k++) {
        if (k == g_warm && t == 0) {
            struct memalloc_stats st;
            memalloc_get_stats(&st);
            g_calls0 = st.syscalls;
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            g_faults0 = ru.ru_minflt;
        }
        for (int i = 0; i < TBATCH; i++) {
            /* draw()'s distribution, from a generator of the thread's own */
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            size_t base = MiB << (r % 6);
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            g_sz[t][i] = base + (size_t)(r % base);
            g_blk[t][i] = get(g_sz[t][i]);
        }
        pthread_barrier_wait(&g_round);
        for (int i = 0; i < TBATCH; i++)
            put(g_blk[o][i], g_sz[o][i]);
        pthread_barrier_wait(&g_round);
    }
    return NULL;
}

static void threaded_rounds(void)
{
    pthread_t th[THREADS];
    CHECK(pthread_barrier_init(&g_round, NULL, THREADS) == 0);
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, rounds_thread, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&g_round);
    struct memalloc_stats st;
    memalloc_get_stats(&st);
    size_t calls = st.syscalls - g_calls0, blocks = (size_t)(ROUNDS - WARM) * THREADS * TBATCH;
    printf("rounds with %d threads: %zu system calls for %zu blocks\n", THREADS, calls, blocks);
    CHECKF(calls * 4 < blocks, "%zu system calls for %zu blocks", calls, blocks);
}

/* part 4: page faults a block in rounds of 16 threads */
static void fault_rounds(void)
{
    enum { T = 16 };
    pthread_t th[T];
    g_threads = T, g_rounds = 100, g_warm = 20;
    CHECK(pthread_barrier_init(&g_round, NULL, T) == 0);
    for (int t = 0; t < T; t++)
        CHECK(pthread_create(&th[t], NULL, rounds_thread, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&g_round);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long faults = ru.ru_minflt - g_faults0, blocks = (long)(g_rounds - g_warm) * T * TBATCH;
    printf("rounds with %d threads: %ld page faults for %ld blocks\n", T, faults, blocks);
    CHECKF(faults * 4 < blocks * 5, "%ld page faults for %ld blocks", faults, blocks);
}

int main(void)
{
    check_begin();
    CHECKF(memalloc_get_stats != NULL, "%s", "memalloc_get_stats not found (memalloc not loaded?)");
    if (memalloc_get_stats == NULL)
        return check_done("bigsparse"), 1;
    sparse_churn();
    rounds();
    threaded_rounds();
    fault_rounds();
    check_done("bigsparse");
    return 0;
}
