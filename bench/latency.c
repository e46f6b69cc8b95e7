/* bench/latency.c — worst-case and tail latency of single malloc and free
 * calls (scripts/bench.sh --latency).
 *
 * usage: latency [OPS=1e7] [LIVE=100000] [SEED=1] [DIST=small]
 *
 * DIST `medium` (issue 17's tails): sizes log-uniform over 16 B..64 KiB,
 * and only the first byte of each block written and checked (a program that
 * fills part of a buffer): an allocator that writes into pages the program
 * never touched pays the page faults inside its calls.
 *
 * Fills a working set of LIVE blocks, then runs OPS random operations: a
 * malloc of a size skewed small (log-uniform 8..2048, 1% up to 64 KiB) or a
 * free of a random live block, keeping the live count between LIVE/2 and
 * 3*LIVE/2. Each call alone is timed with the time-stamp counter fenced by
 * lfence (rdtsc elsewhere than x86-64: clock_gettime, in ns). The timings go
 * into a log-linear histogram (exact below 4096 cycles, then 64 buckets per
 * power of two: under 1.6% error), so that recording them costs no memory
 * traffic. Blocks are written and checked outside the timed region.
 * Output: one line of key=value figures in cycles: p50, p99, p99.99 and max
 * of malloc and of free, the timer's own cost, the TSC rate, and rt=1 when
 * it ran under a real-time scheduling policy. Two counts are less at the
 * mercy of one unlucky event than the maximum: malloc_slow and free_slow,
 * the calls that took more than SLOW = 100000 ticks each (~38 µs at
 * 2.6 GHz; counted exactly, not from the histogram), and faults, the minor
 * page faults (getrusage ru_minflt) of the whole loop of random operations,
 * timed calls and the untimed writes and checks of blocks alike.
 */
#include "common.h"
#include <sched.h>
#include <sys/resource.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t tick(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}
#define TICK_UNIT "cycles"
#else
static inline uint64_t tick(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
#define TICK_UNIT "ns"
#endif

#define EXACT 4096u                 /* values below are their own bucket */
#define SUB 64u                     /* buckets per power of two above */
#define NBUCKETS (EXACT + (64u - 12u) * SUB)
#define SLOW 100000u                /* a call above this many ticks is slow */

typedef struct { uint64_t count[NBUCKETS]; uint64_t n, max, slow; } hist_t;

static inline unsigned bucket_of(uint64_t v)
{
    if (v < EXACT)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);            /* >= 12 */
    unsigned sub = (unsigned)(v >> (e - 6)) & (SUB - 1);
    return EXACT + (e - 12u) * SUB + sub;
}

static inline uint64_t bucket_top(unsigned b)
{
    if (b < EXACT)
        return b;
    unsigned e = (b - EXACT) / SUB + 12u, sub = (b - EXACT) % SUB;
    return ((uint64_t)(SUB + sub + 1) << (e - 6)) - 1;
}

static inline void hist_add(hist_t *h, uint64_t v)
{
    h->count[bucket_of(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
    if (v > SLOW)
        h->slow++;
}

/* Smallest value v such that at least q of the samples are <= v (bucket top). */
static uint64_t hist_quantile(const hist_t *h, double q)
{
    uint64_t want = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += h->count[b];
        if (seen >= want)
            return bucket_top(b) < h->max ? bucket_top(b) : h->max;
    }
    return h->max;
}

typedef struct { unsigned char *p; size_t size; } blk_t;

static int medium;

/* The size of the next malloc (see DIST). */
static size_t next_size(rng_t *r)
{
    if (!medium)
        return rng_small_size(r, 10, 64 * 1024);
    unsigned band = (unsigned)(rng_next(r) % 12);   /* 16 << 0 .. 16 << 11 = 32 KiB */
    size_t base = (size_t)16 << band;
    return base + (size_t)(rng_next(r) % base);       /* [base, 2 base) */
}

static void put_tag(unsigned char *p, size_t size)
{
    if (medium)
        p[0] = tag_of(size);
    else
        tag_block(p, size);
}

static void get_tag(unsigned char *p, size_t size)
{
    if (medium ? p[0] != tag_of(size) : 0)
        bench_corrupt("latency", p, size);
    if (!medium)
        check_block("latency", p, size);
}

static hist_t h_malloc, h_free;

static long minor_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ru.ru_minflt;
}

int main(int argc, char **argv)
{
    size_t ops = arg_size(argc, argv, 1, 10000000);
    size_t live_target = arg_size(argc, argv, 2, 100000);
    size_t seed = arg_size(argc, argv, 3, 1);
    medium = argc > 4 && strcmp(argv[4], "medium") == 0;
    if (live_target < 4) {
        fprintf(stderr, "latency: LIVE must be >= 4\n");
        return EXIT_USAGE;
    }
    size_t cap = live_target * 3 / 2 + 1;
    blk_t *blk = calloc(cap, sizeof *blk);
    if (!blk)
        bench_oom("latency", cap * sizeof *blk);
    rng_t r;
    rng_seed(&r, seed);

    /* the timer's own cost: an empty timed region */
    hist_t *h_timer = calloc(1, sizeof *h_timer);
    if (!h_timer)
        bench_oom("latency", sizeof *h_timer);
    for (int i = 0; i < 100000; i++) {
        uint64_t t0 = tick();
        uint64_t t1 = tick();
        hist_add(h_timer, t1 - t0);
    }
    uint64_t timer = hist_quantile(h_timer, 0.5);
    free(h_timer);

    /* rate of the counter, against CLOCK_MONOTONIC over ~50 ms */
    double w0 = now_s();
    uint64_t c0 = tick();
    while (now_s() - w0 < 0.05)
        ;
    double rate = (double)(tick() - c0) / (now_s() - w0) / 1e9;

    size_t live = 0;
    for (; live < live_target; live++) {
        size_t size = next_size(&r);
        blk[live].p = xmalloc("latency", size);
        blk[live].size = size;
        put_tag(blk[live].p, size);
    }
    /* Under a real-time policy (scripts/bench.sh runs this under chrt -f 1),
     * the kernel throttles RT tasks that run more than sched_rt_runtime_us
     * (950 ms) per sched_rt_period_us (1 s), which stops us for 50 ms: a
     * "worst case" that is the scheduler's. Sleeping 10 ms every 100 ms of
     * running, outside the timed calls, keeps below the limit. */
    int rt = sched_getscheduler(0) == SCHED_FIFO || sched_getscheduler(0) == SCHED_RR;
    double next_pause = now_s() + 0.1;
    long faults0 = minor_faults();
    for (size_t i = 0; i < ops; i++) {
        if (rt && (i & 4095) == 0 && now_s() > next_pause) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            next_pause = now_s() + 0.1;
        }
        uint64_t x = rng_next(&r);
        int do_malloc = live < live_target / 2 ? 1 : live >= cap - 1 ? 0 : (int)(x & 1);
        if (do_malloc) {
            size_t size = next_size(&r);
            uint64_t t0 = tick();
            void *p = malloc(size);
            uint64_t t1 = tick();
            if (!p)
                bench_oom("latency", size);
            hist_add(&h_malloc, t1 - t0);
            blk[live].p = p;
            blk[live].size = size;
            put_tag(p, size);
            live++;
        } else {
            size_t k = (size_t)((x >> 1) % live);
            void *p = blk[k].p;
            get_tag(p, blk[k].size);
            uint64_t t0 = tick();
            free(p);
            uint64_t t1 = tick();
            hist_add(&h_free, t1 - t0);
            blk[k] = blk[--live];
        }
    }
    long faults = minor_faults() - faults0;
    for (size_t k = 0; k < live; k++)
        free(blk[k].p);
    free(blk);

    printf("latency: unit=%s dist=%s ops=%zu live=%zu"
           " malloc_n=%llu malloc_p50=%llu malloc_p99=%llu malloc_p999=%llu malloc_p9999=%llu malloc_max=%llu"
           " free_n=%llu free_p50=%llu free_p99=%llu free_p999=%llu free_p9999=%llu free_max=%llu"
           " malloc_slow=%llu free_slow=%llu faults=%ld"
           " timer=%llu tsc_ghz=%.3f rt=%d alloc=%s\n",
           TICK_UNIT, medium ? "medium" : "small", ops, live_target,
           (unsigned long long)h_malloc.n, (unsigned long long)hist_quantile(&h_malloc, 0.5),
           (unsigned long long)hist_quantile(&h_malloc, 0.99),
           (unsigned long long)hist_quantile(&h_malloc, 0.999),
           (unsigned long long)hist_quantile(&h_malloc, 0.9999), (unsigned long long)h_malloc.max,
           (unsigned long long)h_free.n, (unsigned long long)hist_quantile(&h_free, 0.5),
           (unsigned long long)hist_quantile(&h_free, 0.99),
           (unsigned long long)hist_quantile(&h_free, 0.999),
           (unsigned long long)hist_quantile(&h_free, 0.9999), (unsigned long long)h_free.max,
           (unsigned long long)h_malloc.slow, (unsigned long long)h_free.slow, faults,
           (unsigned long long)timer, rate, rt, bench_allocator());
    return 0;
}
