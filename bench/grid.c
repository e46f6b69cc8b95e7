/* bench/grid.c — one cell of the size × threads × free-pattern grid.
 *
 * usage: grid THREADS OPS MIN MAX PATTERN [LIVE=256]
 *
 * THREADS threads share OPS allocations (OPS/THREADS each) of sizes drawn
 * log-uniform in MIN..MAX (every power-of-two band equally likely). The
 * first and last bytes of every block are written (a tag, checked before its
 * free), the rest is not touched: the cell measures the allocator, not the
 * page faults of a program that fills its blocks. PATTERN says who frees what,
 * and when:
 *   short  each thread frees its block right after writing it (short-lived);
 *   long   each thread keeps LIVE blocks and replaces a random one (long-lived);
 *   cross  thread t hands every block to thread t+1 (a ring), through a queue
 *          of LIVE slots; thread t+1 frees it (every free is a cross-thread
 *          free; with 1 thread the queue is the thread's own FIFO);
 *   bulk   in rounds: each thread allocates LIVE blocks, then (after a
 *          barrier) frees, all at once, the LIVE blocks thread t+1 allocated.
 * All threads start together (a barrier, once their live sets are filled). Figure: allocations (each with its
 * free) per second, all threads (M/s).
 *
 * scripts/bench.sh --grid runs the grid's cells under every allocator
 * (bench/bench.py's grid_cells).
 */
#include "common.h"
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum pattern { SHORT, LONG, CROSS, BULK };

static size_t g_threads, g_ops, g_min, g_max, g_live;
static enum pattern g_pattern;
static pthread_barrier_t g_ready, g_start; /* set up; go (with the main thread) */

/* cross: one single-producer single-consumer ring per thread, written by
 * thread t - 1. head and tail live on their own cache lines. */
typedef struct {
    _Alignas(64) _Atomic size_t head; /* next slot the consumer reads */
    _Alignas(64) _Atomic size_t tail; /* next slot the producer writes */
    _Alignas(64) _Atomic int done;    /* the producer has pushed all it will */
    unsigned char **slot;
    size_t *size;
} ring_t;
static ring_t *g_rings;

/* bulk: each thread's batch, freed by thread t - 1 */
static unsigned char ***g_batch;
static size_t **g_bsize;

/* Sizes come from a table of NSIZES drawn once per thread (log and exp per
 * allocation would cost more than a small malloc itself). */
#define NSIZES 8192
typedef struct {
    rng_t r;
    size_t next;
    size_t size[NSIZES];
} sizes_t;

static void sizes_init(sizes_t *z, uint64_t seed)
{
    rng_seed(&z->r, seed);
    z->next = 0;
    double lo = log((double)g_min), hi = log((double)g_max);
    for (size_t i = 0; i < NSIZES; i++) {
        double u = (double)(rng_next(&z->r) >> 11) * (1.0 / 9007199254740992.0);
        size_t s = (size_t)exp(lo + u * (hi - lo));
        z->size[i] = s < g_min ? g_min : s > g_max ? g_max : s;
    }
}

static unsigned char *get(sizes_t *z, size_t *size)
{
    size_t s = z->size[z->next++ % NSIZES];
    unsigned char *p = xmalloc("grid", s);
    tag_block(p, s);
    *size = s;
    return p;
}

static void put(unsigned char *p, size_t s)
{
    check_block("grid", p, s);
    free(p);
}

/* Frees what waits in ring `in`; returns how many. */
static size_t drain(ring_t *in)
{
    size_t h = atomic_load_explicit(&in->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&in->tail, memory_order_acquire);
    for (size_t i = h; i != t; i++)
        put(in->slot[i % g_live], in->size[i % g_live]);
    atomic_store_explicit(&in->head, t, memory_order_release);
    return t - h;
}

static void run_cross(size_t t, size_t n, sizes_t *r)
{
    ring_t *out = &g_rings[(t + 1) % g_threads], *in = &g_rings[t];
    for (size_t i = 0; i < n; i++) {
        size_t s;
        unsigned char *p = get(r, &s);
        size_t tail = atomic_load_explicit(&out->tail, memory_order_relaxed);
        while (tail - atomic_load_explicit(&out->head, memory_order_acquire) == g_live) {
            /* the next thread is behind: free what waits for us, then let it run */
            if (drain(in) == 0)
                sched_yield();
        }
        out->slot[tail % g_live] = p;
        out->size[tail % g_live] = s;
        atomic_store_explicit(&out->tail, tail + 1, memory_order_release);
        if ((i & 15) == 15)
            drain(in);
    }
    atomic_store_explicit(&out->done, 1, memory_order_release);
    /* free the rest of what thread t - 1 hands us, until it is done */
    for (;;) {
        int done = atomic_load_explicit(&in->done, memory_order_acquire);
        if (drain(in) == 0) {
            if (done)
                break;
            sched_yield();
        }
    }
}

static void run_bulk(size_t t, size_t n, sizes_t *r)
{
    size_t rounds = (n + g_live - 1) / g_live, o = (t + 1) % g_threads;
    for (size_t k = 0; k < rounds; k++) {
        for (size_t i = 0; i < g_live; i++)
            g_batch[t][i] = get(r, &g_bsize[t][i]);
        pthread_barrier_wait(&g_start);
        for (size_t i = 0; i < g_live; i++)
            put(g_batch[o][i], g_bsize[o][i]);
        pthread_barrier_wait(&g_start);
    }
}

static void *worker(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg, n = g_ops / g_threads;
    sizes_t *z = xmalloc("grid", sizeof *z);
    sizes_init(z, t + 1);
    unsigned char **p = NULL;
    size_t *sz = NULL;
    if (g_pattern == LONG) {
        p = xmalloc("grid", g_live * sizeof *p);
        sz = xmalloc("grid", g_live * sizeof *sz);
        for (size_t k = 0; k < g_live; k++)
            p[k] = get(z, &sz[k]);
    }
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_start);
    switch (g_pattern) {
    case SHORT:
        for (size_t i = 0; i < n; i++) {
            size_t s;
            unsigned char *b = get(z, &s);
            put(b, s);
        }
        break;
    case LONG:
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)(rng_next(&z->r) % g_live);
            put(p[k], sz[k]);
            p[k] = get(z, &sz[k]);
        }
        for (size_t k = 0; k < g_live; k++)
            put(p[k], sz[k]);
        free(p);
        free(sz);
        break;
    case CROSS:
        run_cross(t, n, z);
        break;
    case BULK:
        run_bulk(t, n, z);
        break;
    }
    free(z);
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *names[] = {"short", "long", "cross", "bulk"};
    g_threads = arg_size(argc, argv, 1, 1);
    g_ops = arg_size(argc, argv, 2, 1000000);
    g_min = arg_size(argc, argv, 3, 16);
    g_max = arg_size(argc, argv, 4, 4096);
    const char *pat = argc > 5 ? argv[5] : "short";
    g_live = arg_size(argc, argv, 6, 256);
    int found = 0;
    for (int k = 0; k < 4; k++)
        if (strcmp(pat, names[k]) == 0)
            g_pattern = (enum pattern)k, found = 1;
    if (!found || g_threads == 0 || g_live == 0 || g_min == 0 || g_max < g_min ||
        g_ops < g_threads) {
        fprintf(stderr, "usage: grid THREADS OPS MIN MAX short|long|cross|bulk [LIVE]\n");
        return EXIT_USAGE;
    }
    if (g_pattern == CROSS) {
        g_rings = aligned_alloc(64, g_threads * sizeof *g_rings);
        if (!g_rings)
            bench_oom("grid", g_threads * sizeof *g_rings);
        for (size_t t = 0; t < g_threads; t++) {
            atomic_init(&g_rings[t].head, 0);
            atomic_init(&g_rings[t].tail, 0);
            atomic_init(&g_rings[t].done, 0);
            g_rings[t].slot = xmalloc("grid", g_live * sizeof *g_rings[t].slot);
            g_rings[t].size = xmalloc("grid", g_live * sizeof *g_rings[t].size);
        }
    }
    if (g_pattern == BULK) {
        g_batch = xmalloc("grid", g_threads * sizeof *g_batch);
        g_bsize = xmalloc("grid", g_threads * sizeof *g_bsize);
        for (size_t t = 0; t < g_threads; t++) {
            g_batch[t] = xmalloc("grid", g_live * sizeof **g_batch);
            g_bsize[t] = xmalloc("grid", g_live * sizeof **g_bsize);
        }
    }
    pthread_barrier_init(&g_ready, NULL, (unsigned)g_threads + 1);
    pthread_barrier_init(&g_start, NULL, (unsigned)g_threads + 1);
    pthread_t *tid = xmalloc("grid", g_threads * sizeof *tid);
    for (size_t t = 0; t < g_threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t) != 0)
            return fprintf(stderr, "grid: pthread_create failed\n"), 1;
    pthread_barrier_wait(&g_ready); /* every worker has filled its live set */
    double t0 = now_s();
    pthread_barrier_wait(&g_start);
    if (g_pattern == BULK) {
        /* the main thread passes the rounds' barriers with the workers */
        size_t rounds = (g_ops / g_threads + g_live - 1) / g_live;
        for (size_t k = 0; k < 2 * rounds; k++)
            pthread_barrier_wait(&g_start);
    }
    for (size_t t = 0; t < g_threads; t++)
        pthread_join(tid[t], NULL);
    double dt = now_s() - t0;
    size_t done = g_pattern == BULK ? g_threads * ((g_ops / g_threads + g_live - 1) / g_live) * g_live
                                    : g_threads * (g_ops / g_threads);
    bench_report("grid", (double)done / dt / 1e6, "Mops/s", "threads=%zu pattern=%s min=%zu max=%zu live=%zu",
                 g_threads, pat, g_min, g_max, g_live);
    return 0;
}
