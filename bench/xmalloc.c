/* bench/xmalloc.c — producer/consumer (xmalloc-test-like): blocks are
 * allocated by producer threads and freed by consumer threads.
 *
 * usage: xmalloc [PRODUCERS=4] [CONSUMERS=4] [BLOCKS=8e6] [BATCH=64] [QUEUE=32] [MIN=16] [MAX=512]
 *
 * Producers allocate BLOCKS blocks in all (sizes uniform in MIN..MAX, tagged)
 * and pass them in batches of BATCH pointers through a bounded queue of
 * QUEUE batches (a mutex and two condition variables; one lock operation per
 * batch, so the allocator, not the queue, is what is measured). Consumers
 * check each tag and free the block: every free is a cross-thread free. The
 * batch records themselves are malloc'd by producers and freed by consumers.
 * Figure: blocks allocated and freed per second (M/s).
 */
#include "common.h"
#include <pthread.h>

typedef struct {
    size_t n;
    void *p[];
} batch_t;

static size_t g_batch, g_min, g_max;
static batch_t **g_queue;
static size_t g_qcap, g_qhead, g_qlen;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_not_full = PTHREAD_COND_INITIALIZER;

static void push(batch_t *b)
{
    pthread_mutex_lock(&g_lock);
    while (g_qlen == g_qcap)
        pthread_cond_wait(&g_not_full, &g_lock);
    g_queue[(g_qhead + g_qlen) % g_qcap] = b;
    g_qlen++;
    pthread_cond_signal(&g_not_empty);
    pthread_mutex_unlock(&g_lock);
}

static batch_t *pop(void)
{
    pthread_mutex_lock(&g_lock);
    while (g_qlen == 0)
        pthread_cond_wait(&g_not_empty, &g_lock);
    batch_t *b = g_queue[g_qhead];
    g_qhead = (g_qhead + 1) % g_qcap;
    g_qlen--;
    pthread_cond_signal(&g_not_full);
    pthread_mutex_unlock(&g_lock);
    return b;
}

typedef struct { size_t blocks; uint64_t seed; } prod_t;

static void *producer(void *arg)
{
    prod_t *job = arg;
    rng_t r;
    rng_seed(&r, job->seed);
    batch_t *b = NULL;
    for (size_t i = 0; i < job->blocks; i++) {
        if (!b) {
            b = xmalloc("xmalloc", sizeof *b + g_batch * sizeof(void *));
            b->n = 0;
        }
        size_t size = rng_range(&r, g_min, g_max);
        unsigned char *p = xmalloc("xmalloc", size);
        tag_block(p, size);
        /* the size travels in bytes 1..2 (MIN >= 4 keeps them clear of the
         * tags) so that the consumer can check the tags */
        uint16_t size16 = (uint16_t)size;
        memcpy(p + 1, &size16, sizeof size16);
        b->p[b->n++] = p;
        if (b->n == g_batch) {
            push(b);
            b = NULL;
        }
    }
    if (b)
        push(b);
    return NULL;
}

static void *consumer(void *arg)
{
    size_t *freed = arg;
    for (;;) {
        batch_t *b = pop();
        if (!b)
            return NULL;
        for (size_t i = 0; i < b->n; i++) {
            unsigned char *p = b->p[i];
            uint16_t size;
            memcpy(&size, p + 1, sizeof size);
            check_block("xmalloc", p, size);
            free(p);
        }
        *freed += b->n;
        free(b);
    }
}

int main(int argc, char **argv)
{
    size_t np = arg_size(argc, argv, 1, 4);
    size_t nc = arg_size(argc, argv, 2, 4);
    size_t blocks = arg_size(argc, argv, 3, 8000000);
    g_batch = arg_size(argc, argv, 4, 64);
    g_qcap = arg_size(argc, argv, 5, 32);
    g_min = arg_size(argc, argv, 6, 16);
    g_max = arg_size(argc, argv, 7, 512);
    if (np == 0 || nc == 0 || g_batch == 0 || g_qcap == 0 || g_min < 4 || g_max < g_min || g_max > 65535) {
        fprintf(stderr, "xmalloc: bad arguments (MIN >= 4, MAX <= 65535)\n");
        return EXIT_USAGE;
    }
    g_queue = xmalloc("xmalloc", g_qcap * sizeof *g_queue);
    pthread_t *pt = xmalloc("xmalloc", np * sizeof *pt), *ct = xmalloc("xmalloc", nc * sizeof *ct);
    prod_t *jobs = xmalloc("xmalloc", np * sizeof *jobs);
    size_t *freed = calloc(nc, 64); /* one cache line each */
    if (!freed)
        bench_oom("xmalloc", nc * 64);

    double t0 = now_s();
    for (size_t c = 0; c < nc; c++)
        if (pthread_create(&ct[c], NULL, consumer, &freed[c * 8]) != 0)
            return fprintf(stderr, "xmalloc: pthread_create failed\n"), 1;
    for (size_t p = 0; p < np; p++) {
        jobs[p].blocks = blocks / np + (p < blocks % np);
        jobs[p].seed = p + 1;
        if (pthread_create(&pt[p], NULL, producer, &jobs[p]) != 0)
            return fprintf(stderr, "xmalloc: pthread_create failed\n"), 1;
    }
    for (size_t p = 0; p < np; p++)
        pthread_join(pt[p], NULL);
    for (size_t c = 0; c < nc; c++)
        push(NULL);
    size_t total = 0;
    for (size_t c = 0; c < nc; c++) {
        pthread_join(ct[c], NULL);
        total += freed[c * 8];
    }
    double dt = now_s() - t0;
    if (total != blocks) {
        fprintf(stderr, "xmalloc: freed %zu blocks of %zu\n", total, blocks);
        return EXIT_CORRUPT;
    }
    bench_report("xmalloc", (double)blocks / dt / 1e6, "Mblocks/s", "producers=%zu consumers=%zu blocks=%zu",
                 np, nc, blocks);
    return 0;
}
