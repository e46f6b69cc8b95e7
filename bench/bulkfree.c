/* bench/bulkfree.c — threads free in bulk what other threads allocated.
 *
 * usage: bulkfree [THREADS=4] [ROUNDS=400] [BATCH=2000] [MIN=16] [MAX=16k]
 *
 * In each round every thread allocates BATCH blocks (sizes log-uniform in
 * MIN..MAX, first byte tagged) into its slot of a shared array; after a
 * barrier, thread t frees, all at once, the batch thread t+1 allocated
 * (checking tags), then the next round starts. Every free is a cross-thread
 * free, and each thread's frees come in bursts of BATCH.
 * Figure: blocks allocated and freed per second, all threads (M/s).
 */
#include "common.h"
#include <math.h>
#include <pthread.h>

static size_t g_threads, g_rounds, g_batch, g_min, g_max;
static unsigned char ***g_slots;
static size_t **g_sizes;
static pthread_barrier_t g_bar;

static size_t draw(rng_t *r)
{
    double lo = log((double)g_min), hi = log((double)g_max);
    double u = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    size_t s = (size_t)exp(lo + u * (hi - lo));
    return s < g_min ? g_min : s > g_max ? g_max : s;
}

static void *worker(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    rng_t r;
    rng_seed(&r, t + 1);
    for (size_t round = 0; round < g_rounds; round++) {
        for (size_t i = 0; i < g_batch; i++) {
            size_t s = draw(&r);
            unsigned char *p = xmalloc("bulkfree", s);
            p[0] = tag_of(s);
            g_slots[t][i] = p;
            g_sizes[t][i] = s;
        }
        pthread_barrier_wait(&g_bar);
        size_t o = (t + 1) % g_threads;
        for (size_t i = 0; i < g_batch; i++) {
            unsigned char *p = g_slots[o][i];
            if (p[0] != tag_of(g_sizes[o][i]))
                bench_corrupt("bulkfree", p, g_sizes[o][i]);
            free(p);
        }
        pthread_barrier_wait(&g_bar);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    g_threads = arg_size(argc, argv, 1, 4);
    g_rounds = arg_size(argc, argv, 2, 400);
    g_batch = arg_size(argc, argv, 3, 2000);
    g_min = arg_size(argc, argv, 4, 16);
    g_max = arg_size(argc, argv, 5, 16384);
    if (g_threads < 2 || g_batch == 0 || g_min == 0 || g_max < g_min) {
        fprintf(stderr, "bulkfree: bad arguments (THREADS >= 2)\n");
        return EXIT_USAGE;
    }
    g_slots = xmalloc("bulkfree", g_threads * sizeof *g_slots);
    g_sizes = xmalloc("bulkfree", g_threads * sizeof *g_sizes);
    for (size_t t = 0; t < g_threads; t++) {
        g_slots[t] = xmalloc("bulkfree", g_batch * sizeof **g_slots);
        g_sizes[t] = xmalloc("bulkfree", g_batch * sizeof **g_sizes);
    }
    pthread_barrier_init(&g_bar, NULL, (unsigned)g_threads);
    pthread_t *tid = xmalloc("bulkfree", g_threads * sizeof *tid);
    double t0 = now_s();
    for (size_t t = 0; t < g_threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t) != 0)
            return fprintf(stderr, "bulkfree: pthread_create failed\n"), 1;
    for (size_t t = 0; t < g_threads; t++)
        pthread_join(tid[t], NULL);
    double dt = now_s() - t0;
    bench_report("bulkfree", (double)(g_threads * g_rounds * g_batch) / dt / 1e6, "Mblocks/s",
                 "threads=%zu rounds=%zu batch=%zu", g_threads, g_rounds, g_batch);
    return 0;
}
