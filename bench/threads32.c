/* bench/threads32.c — many threads (default 32, on however few cores) each
 * running a small malloc/free loop with a small live set: contention and
 * scalability when threads far outnumber cores.
 *
 * usage: threads32 [THREADS=32] [OPS=1.5e6] [LIVE=16] [MIN=16] [MAX=256]
 *
 * Each thread keeps LIVE blocks in a ring and, OPS times, frees the oldest and
 * allocates a new block of random size in MIN..MAX (tagged, checked before
 * free). All threads start together (a barrier) so they really overlap.
 * Figure: malloc+free pairs per second, all threads (M/s).
 */
#include "common.h"
#include <pthread.h>

static size_t g_ops, g_live, g_min, g_max;
static pthread_barrier_t g_start;

typedef struct { unsigned char *p; size_t size; } slot_t;

static void *worker(void *arg)
{
    rng_t r;
    rng_seed(&r, (uint64_t)(uintptr_t)arg);
    slot_t ring[256] = {{0}};
    pthread_barrier_wait(&g_start);
    for (size_t i = 0; i < g_ops; i++) {
        slot_t *s = &ring[i % g_live];
        if (s->p) {
            check_block("threads32", s->p, s->size);
            free(s->p);
        }
        s->size = rng_range(&r, g_min, g_max);
        s->p = xmalloc("threads32", s->size);
        tag_block(s->p, s->size);
    }
    for (size_t k = 0; k < g_live; k++)
        free(ring[k].p);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = arg_size(argc, argv, 1, 32);
    g_ops = arg_size(argc, argv, 2, 1500000);
    g_live = arg_size(argc, argv, 3, 16);
    g_min = arg_size(argc, argv, 4, 16);
    g_max = arg_size(argc, argv, 5, 256);
    if (threads == 0 || g_live == 0 || g_live > 256 || g_min == 0 || g_max < g_min) {
        fprintf(stderr, "threads32: bad arguments (LIVE <= 256)\n");
        return EXIT_USAGE;
    }
    pthread_t *tid = xmalloc("threads32", threads * sizeof *tid);
    pthread_barrier_init(&g_start, NULL, (unsigned)threads + 1);
    for (size_t t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)(t + 1)) != 0)
            return fprintf(stderr, "threads32: pthread_create failed\n"), 1;
    double t0 = now_s();
    pthread_barrier_wait(&g_start);
    for (size_t t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    double dt = now_s() - t0;
    bench_report("threads32", (double)threads * (double)g_ops / dt / 1e6, "Mpairs/s",
                 "threads=%zu ops=%zu live=%zu", threads, g_ops, g_live);
    free(tid);
    return 0;
}
