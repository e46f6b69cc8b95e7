/* bench/mthreads.c — each thread replaces random blocks of its own live set:
 * scaling with threads, medium sizes or a 1/size^2 size density.
 *
 * usage: mthreads [THREADS=1] [OPS=4e6] [LIVE=256] [MIN=4k] [MAX=64k] [DIST=u]
 *
 * THREADS threads share OPS malloc+free pairs (OPS/THREADS each). Each keeps
 * LIVE blocks and replaces a random one per pair. DIST `u`: sizes uniform in
 * MIN..MAX; DIST `s`: density proportional to 1/size^2 over MIN..MAX (small
 * sizes common, large rare; inverse transform of the CDF). Only the first
 * byte of a block is written (a tag, checked before free). All threads start
 * together (a barrier). Figure: pairs per second, all threads (M/s).
 */
#include "common.h"
#include <pthread.h>

static size_t g_ops, g_live, g_min, g_max;
static int g_inv;
static pthread_barrier_t g_start;

static size_t draw(rng_t *r)
{
    if (!g_inv)
        return rng_range(r, g_min, g_max);
    /* F(s) = (1/min - 1/s) / (1/min - 1/max): s = 1 / (1/min - u (1/min - 1/max)) */
    double u = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double a = 1.0 / (double)g_min, b = 1.0 / (double)g_max;
    size_t s = (size_t)(1.0 / (a - u * (a - b)));
    return s < g_min ? g_min : s > g_max ? g_max : s;
}

static void *worker(void *arg)
{
    rng_t r;
    rng_seed(&r, (uint64_t)(uintptr_t)arg);
    unsigned char **p = calloc(g_live, sizeof *p);
    size_t *sz = calloc(g_live, sizeof *sz);
    if (!p || !sz)
        bench_oom("mthreads", g_live * sizeof *p);
    for (size_t k = 0; k < g_live; k++) {
        sz[k] = draw(&r);
        p[k] = xmalloc("mthreads", sz[k]);
        p[k][0] = tag_of(sz[k]);
    }
    pthread_barrier_wait(&g_start);
    for (size_t i = 0; i < g_ops; i++) {
        size_t k = (size_t)(rng_next(&r) % g_live);
        if (p[k][0] != tag_of(sz[k]))
            bench_corrupt("mthreads", p[k], sz[k]);
        free(p[k]);
        sz[k] = draw(&r);
        p[k] = xmalloc("mthreads", sz[k]);
        p[k][0] = tag_of(sz[k]);
    }
    for (size_t k = 0; k < g_live; k++)
        free(p[k]);
    free(p);
    free(sz);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = arg_size(argc, argv, 1, 1);
    size_t ops = arg_size(argc, argv, 2, 4000000);
    g_live = arg_size(argc, argv, 3, 256);
    g_min = arg_size(argc, argv, 4, 4096);
    g_max = arg_size(argc, argv, 5, 65536);
    g_inv = argc > 6 && argv[6][0] == 's';
    if (threads == 0 || g_live == 0 || g_min == 0 || g_max < g_min) {
        fprintf(stderr, "mthreads: bad arguments\n");
        return EXIT_USAGE;
    }
    g_ops = ops / threads;
    pthread_t *tid = xmalloc("mthreads", threads * sizeof *tid);
    pthread_barrier_init(&g_start, NULL, (unsigned)threads + 1);
    for (size_t t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)(t + 1)) != 0)
            return fprintf(stderr, "mthreads: pthread_create failed\n"), 1;
    pthread_barrier_wait(&g_start);
    double t0 = now_s();
    for (size_t t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double dt = now_s() - t0;
    bench_report("mthreads", (double)threads * (double)g_ops / dt / 1e6, "Mpairs/s",
                 "threads=%zu ops=%zu live=%zu sizes=%zu..%zu dist=%s", threads, g_ops * threads,
                 g_live, g_min, g_max, g_inv ? "1/s^2" : "uniform");
    free(tid);
    return 0;
}
