/* bench/larson.c — larson-style server: threads replace random slots and
 * hand their slot arrays on, so most frees happen on another thread.
 *
 * usage: larson [THREADS=8] [SLOTS=2000] [EPOCHS=40] [OPS=40000] [MIN=16] [MAX=1024]
 *
 * There are THREADS slot arrays of SLOTS blocks each. The run is EPOCHS
 * epochs; in each, THREADS fresh threads start, thread t works on array
 * (t + epoch) % THREADS for OPS rounds (each round frees the block in a
 * random slot and allocates a new random-size block in MIN..MAX there), then
 * exits. Array (t + epoch) % THREADS was worked on by thread t + 1 of the
 * previous epoch, so every block a thread frees was allocated by another
 * thread, one that has exited (as in larson, where a server thread's objects
 * outlive it), and every epoch tears down THREADS thread caches.
 * Fixed op count: time is the figure.
 * Figure: rounds (one free + one malloc) per second, all threads (M/s).
 */
#include "common.h"
#include <pthread.h>

typedef struct { unsigned char *p; size_t size; } slot_t;

static size_t g_slots, g_ops, g_min, g_max;
static slot_t **g_arrays;

typedef struct { slot_t *arr; uint64_t seed; } job_t;

static void *worker(void *arg)
{
    job_t *job = arg;
    rng_t r;
    rng_seed(&r, job->seed);
    slot_t *arr = job->arr;
    for (size_t i = 0; i < g_ops; i++) {
        slot_t *s = &arr[rng_next(&r) % g_slots];
        check_block("larson", s->p, s->size);
        free(s->p);
        size_t size = rng_range(&r, g_min, g_max);
        s->p = xmalloc("larson", size);
        s->size = size;
        tag_block(s->p, size);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = arg_size(argc, argv, 1, 8);
    g_slots = arg_size(argc, argv, 2, 2000);
    size_t epochs = arg_size(argc, argv, 3, 40);
    g_ops = arg_size(argc, argv, 4, 40000);
    g_min = arg_size(argc, argv, 5, 16);
    g_max = arg_size(argc, argv, 6, 1024);
    if (threads == 0 || g_slots == 0 || g_min == 0 || g_max < g_min) {
        fprintf(stderr, "larson: bad arguments\n");
        return EXIT_USAGE;
    }
    g_arrays = xmalloc("larson", threads * sizeof *g_arrays);
    pthread_t *tid = xmalloc("larson", threads * sizeof *tid);
    job_t *jobs = xmalloc("larson", threads * sizeof *jobs);

    double t0 = now_s();
    rng_t r;
    rng_seed(&r, 42);
    for (size_t t = 0; t < threads; t++) {
        g_arrays[t] = xmalloc("larson", g_slots * sizeof(slot_t));
        for (size_t i = 0; i < g_slots; i++) {
            size_t size = rng_range(&r, g_min, g_max);
            g_arrays[t][i].p = xmalloc("larson", size);
            g_arrays[t][i].size = size;
            tag_block(g_arrays[t][i].p, size);
        }
    }
    for (size_t e = 0; e < epochs; e++) {
        for (size_t t = 0; t < threads; t++) {
            jobs[t].arr = g_arrays[(t + e) % threads];
            jobs[t].seed = e * threads + t + 1;
            if (pthread_create(&tid[t], NULL, worker, &jobs[t]) != 0) {
                fprintf(stderr, "larson: pthread_create failed\n");
                return 1;
            }
        }
        for (size_t t = 0; t < threads; t++)
            pthread_join(tid[t], NULL);
    }
    for (size_t t = 0; t < threads; t++) {
        for (size_t i = 0; i < g_slots; i++) {
            check_block("larson", g_arrays[t][i].p, g_arrays[t][i].size);
            free(g_arrays[t][i].p);
        }
        free(g_arrays[t]);
    }
    double dt = now_s() - t0;
    double rounds = (double)threads * (double)epochs * (double)g_ops;
    bench_report("larson", rounds / dt / 1e6, "Mrounds/s", "threads=%zu slots=%zu epochs=%zu ops=%zu",
                 threads, g_slots, epochs, g_ops);
    free(g_arrays);
    free(tid);
    free(jobs);
    return 0;
}
