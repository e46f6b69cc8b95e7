/* bench/cycles.c — mthreads' loop in one thread, timed in cycles by chunks.
 *
 * usage: cycles [OPS=4e6] [LIVE=1000] [MIN=1] [MAX=32k] [DIST=s] [CHUNK=50000]
 *
 * The worker loop of mthreads.c (`mthreads 1 OPS LIVE MIN MAX DIST`: replace a
 * random block of LIVE per pair, sizes uniform or 1/size^2, the first byte
 * tagged and checked), run in one thread of its own as mthreads runs it, with
 * the OPS pairs cut into chunks of CHUNK pairs, each timed with rdtsc (the
 * TSC: a fixed rate, not the core's clock). Figure: the 10th percentile of
 * the chunks' cycles per pair; also their median and minimum.
 * (Built from mthreads.c, included: its draw and globals.)
 *
 * Why: on a shared machine a run's CPU time moves by 10-30% with the other
 * tenants (docs/performance.md, "invsq again (inv17j)"); a chunk that was
 * preempted or shared its core is slow and falls above the 10th percentile,
 * so the figure moves about 1% between runs where CPU time moved 10%.
 * Compare libraries with bench/cycles_ab.py (alternating runs).
 */
/* mthreads.c itself, for its draw of the sizes and its globals (its main
 * renamed, unused): the loop below is its worker's, and the sizes come from
 * the same code. */
#define main mthreads_main
#include "mthreads.c"
#undef main
#include <x86intrin.h>

static size_t g_chunk;
static double g_p10, g_med, g_min_c;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *timed_worker(void *arg)
{
    (void)arg;
    rng_t r;
    rng_seed(&r, 1);
    unsigned char **p = calloc(g_live, sizeof *p);
    size_t *sz = calloc(g_live, sizeof *sz);
    size_t nch = g_ops / g_chunk;
    double *c = calloc(nch, sizeof *c);
    if (!p || !sz || !c)
        bench_oom("cycles", g_live * sizeof *p);
    for (size_t k = 0; k < g_live; k++) {
        sz[k] = draw(&r);
        p[k] = xmalloc("cycles", sz[k]);
        p[k][0] = tag_of(sz[k]);
    }
    for (size_t j = 0; j < nch; j++) {
        unsigned long long t0 = __rdtsc();
        for (size_t i = 0; i < g_chunk; i++) {
            size_t k = (size_t)(rng_next(&r) % g_live);
            if (p[k][0] != tag_of(sz[k]))
                bench_corrupt("cycles", p[k], sz[k]);
            free(p[k]);
            sz[k] = draw(&r);
            p[k] = xmalloc("cycles", sz[k]);
            p[k][0] = tag_of(sz[k]);
        }
        c[j] = (double)(__rdtsc() - t0) / (double)g_chunk;
    }
    qsort(c, nch, sizeof *c, cmp_double);
    g_p10 = c[nch / 10];
    g_med = c[nch / 2];
    g_min_c = c[0];
    for (size_t k = 0; k < g_live; k++)
        free(p[k]);
    free(p);
    free(sz);
    free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    g_ops = arg_size(argc, argv, 1, 4000000);
    g_live = arg_size(argc, argv, 2, 1000);
    g_min = arg_size(argc, argv, 3, 1);
    g_max = arg_size(argc, argv, 4, 32768);
    g_inv = !(argc > 5 && argv[5][0] == 'u');
    g_chunk = arg_size(argc, argv, 6, 50000);
    if (g_live == 0 || g_min == 0 || g_max < g_min || g_chunk == 0 || g_ops < 10 * g_chunk) {
        fprintf(stderr, "cycles: bad arguments (OPS must be at least 10 chunks)\n");
        return EXIT_USAGE;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, timed_worker, NULL) != 0)
        return fprintf(stderr, "cycles: pthread_create failed\n"), 1;
    pthread_join(t, NULL);
    bench_report("cycles", g_p10, "rdtsc/pair", "median=%.2f min=%.2f chunks=%zu live=%zu sizes=%zu..%zu dist=%s",
                 g_med, g_min_c, g_ops / g_chunk, g_live, g_min, g_max, g_inv ? "1/s^2" : "uniform");
    return 0;
}
