/* bench/cache-scratch.c — passive false sharing (Hoard's cache-scratch).
 *
 * usage: cache-scratch [THREADS=nproc] [ITERATIONS=1000] [OBJSIZE=8] [REPS=100000]
 *
 * The main thread allocates THREADS small objects one after the other (so an
 * allocator packs them into the same cache lines) and hands one to each
 * thread. Each thread frees the object it was given, then ITERATIONS times
 * allocates an object of OBJSIZE bytes, writes each of its bytes REPS times,
 * and frees it. An allocator that gives a thread back the block it just
 * freed, next to the blocks of the other threads, makes the cores fight over
 * one cache line; one with per-thread memory does not.
 * Figure: object writes per second, all threads (G/s).
 */
#include "common.h"
#include <pthread.h>

static size_t g_iters, g_size, g_reps;

static void *worker(void *arg)
{
    free(arg);                      /* passive false sharing starts here */
    for (size_t i = 0; i < g_iters; i++) {
        volatile unsigned char *obj = xmalloc("cache-scratch", g_size);
        for (size_t r = 0; r < g_reps; r++)
            for (size_t k = 0; k < g_size; k++)
                obj[k] = (unsigned char)(obj[k] + 1);
        bench_sink += obj[0];
        free((void *)obj);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t threads = arg_size(argc, argv, 1, cpus > 0 ? (size_t)cpus : 2);
    g_iters = arg_size(argc, argv, 2, 1000);
    g_size = arg_size(argc, argv, 3, 8);
    g_reps = arg_size(argc, argv, 4, 100000);
    if (threads == 0 || g_size == 0) {
        fprintf(stderr, "cache-scratch: bad arguments\n");
        return EXIT_USAGE;
    }
    pthread_t *tid = xmalloc("cache-scratch", threads * sizeof *tid);
    void **objs = xmalloc("cache-scratch", threads * sizeof *objs);
    for (size_t t = 0; t < threads; t++)
        objs[t] = xmalloc("cache-scratch", g_size);

    double t0 = now_s();
    for (size_t t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, objs[t]) != 0)
            return fprintf(stderr, "cache-scratch: pthread_create failed\n"), 1;
    for (size_t t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double dt = now_s() - t0;
    double writes = (double)threads * (double)g_iters * (double)g_reps * (double)g_size;
    bench_report("cache-scratch", writes / dt / 1e9, "Gwrites/s", "threads=%zu iterations=%zu objsize=%zu reps=%zu",
                 threads, g_iters, g_size, g_reps);
    free(objs);
    free(tid);
    return 0;
}
