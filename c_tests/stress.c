/*
 * stress.c - 32 threads of random allocator calls, for a given time.
 *
 *   stress [seconds] [threads]     default: 5 s, 32 threads
 *
 * Each thread keeps LOCAL blocks and picks one at random per step:
 *   empty slot:  malloc, calloc (checked zero), posix_memalign (16 B .. 64 KiB
 *                alignment) or realloc(NULL, n);
 *   live block:  free, realloc (any new size; realloc(p, 0) frees), exchange
 *                with a slot of the shared array (the thread takes over
 *                whatever block another thread left there), or only a check.
 * Sizes: 0 .. 64 KiB, mostly small (75% <= 256 B, 20% <= 4 KiB, 4.7% <=
 * 64 KiB), 0.3% large (256 KiB .. 2 MiB).  Every block holds the pattern of
 * its address and size (check.h), checked in full before every free, realloc
 * and hand-over; after realloc the kept bytes must hold the old block's
 * pattern, and the new block gets its own.  The shared array has SLOTS
 * entries under striped mutexes; blocks therefore move between threads and
 * are freed by threads that did not allocate them.
 *
 * The main thread samples RSS (/proc/self/statm) every 20 ms.  At the end
 * every thread frees what it holds, the main thread frees the slots, and
 * the program prints the counts and five RSS figures: at the start, at the
 * peak, right after freeing everything, after a 0.3 s pause and 2000 more
 * malloc/free pairs of 64 KiB (memalloc purges free pages at most every
 * 250 ms, from a free on, at most 128 KiB per call), and after
 * malloc_trim(0).  It checks memalloc_check() == 0 (under
 * memalloc), that in_use is back to the start (within 1 MiB), and that RSS
 * after the pause, WITHOUT malloc_trim, is within max(16 MiB, 20% of the
 * growth to the peak) of the start, and after malloc_trim(0) too.  Right
 * after the last free it need not be: memalloc does not purge on every free
 * (measured on 2 cores: 15-144 MiB of a 155-169 MiB peak right after the last
 * free, 4-5 MiB after the pause, 2.5 MiB after malloc_trim).  Under
 * MEMALLOC_DEBUG=1, in_use may be 16 MiB higher (the quarantine of freed
 * blocks holds up to 16 MiB) and RSS 32 MiB (measured: 30-36 MiB after
 * the pause, with 8 MiB in quarantine).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "memalloc.h"
#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

enum { MAX_THREADS = 256, LOCAL = 256, SLOTS = 4096, STRIPES = 64 };

struct blk {
    void *p;
    size_t n;
};

static struct blk slots[SLOTS];
static pthread_mutex_t stripe[STRIPES];
static int stop;

enum { OP_MALLOC, OP_CALLOC, OP_MEMALIGN, OP_REALLOC_NULL, OP_FREE, OP_REALLOC, OP_REALLOC0,
       OP_EXCHANGE, OP_CHECK, NOPS };
static const char *const op_name[NOPS] = {"malloc", "calloc", "posix_memalign", "realloc(NULL)",
                                          "free", "realloc", "realloc(p,0)", "exchange", "check"};

struct tstate {
    int id;
    unsigned long ops[NOPS];
    unsigned long bytes;       /* bytes allocated (sum of sizes) */
    unsigned long foreign;     /* blocks received from the shared slots */
};

static size_t random_size(uint64_t r)
{
    unsigned v = (unsigned)(r % 1000);
    r >>= 10;
    if (v < 3)
        return 256 * KiB + (size_t)(r % (1792 * KiB + 1));
    if (v < 750)
        return (size_t)(r % 257);
    if (v < 950)
        return 257 + (size_t)(r % (4096 - 257 + 1));
    return 4097 + (size_t)(r % (64 * KiB - 4097 + 1));
}

static void check_blk(const struct blk *b)
{
    if (b->n != 0)
        CHECK_PATTERN(b->p, b->n);
}

static void check_aligned(const void *p, size_t n, size_t align)
{
    size_t a = required_alignment(n);
    if (align > a)
        a = align;
    CHECKF(((uintptr_t)p & (a - 1)) == 0, "%p (%zu bytes) not aligned to %zu", p, n, a);
}

static void *worker(void *arg)
{
    struct tstate *t = arg;
    uint64_t seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(t->id + 1) ^ (uint64_t)time(NULL);
    struct blk local[LOCAL];
    memset(local, 0, sizeof local);
    unsigned long step = 0;

    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED) || step == 0) {
        step++;
        uint64_t r = rng_next(&seed);
        struct blk *b = &local[(r >> 32) % LOCAL];
        unsigned pick = (unsigned)(r % 100);
        if (b->p == NULL) {
            size_t n = random_size(rng_next(&seed));
            void *p;
            size_t align = 0;
            int op;
            if (pick < 55) {
                op = OP_MALLOC;
                p = malloc(n);
            } else if (pick < 75) {
                op = OP_CALLOC;
                size_t m = 1 + (r >> 8) % 8;
                n = (n + m - 1) / m * m;
                p = calloc(m, n / m);
                if (p != NULL) {
                    const unsigned char *z = p;
                    for (size_t i = 0; i < n; i++)
                        if (z[i] != 0) {
                            CHECKF(0, "calloc(%zu, %zu) = %p not zero at %zu", m, n / m, p, i);
                            break;
                        }
                }
            } else if (pick < 90) {
                op = OP_MEMALIGN;
                unsigned k = (unsigned)((r >> 8) % 100);
                align = k < 90 ? (size_t)16 << (k % 5) : k < 98 ? 4096 : 64 * KiB;
                p = NULL;
                int e = posix_memalign(&p, align, n);
                CHECKF(e == 0, "posix_memalign(%zu, %zu) = %d", align, n, e);
            } else {
                op = OP_REALLOC_NULL;
                p = realloc(NULL, n);
            }
            CHECKF(p != NULL, "%s(%zu) = NULL", op_name[op], n);
            check_aligned(p, n, align);
            pattern_fill(p, n);
            b->p = p;
            b->n = n;
            t->ops[op]++;
            t->bytes += n;
            continue;
        }
        if (pick < 40) {
            check_blk(b);
            free(b->p);
            b->p = NULL;
            t->ops[OP_FREE]++;
        } else if (pick < 65) {
            check_blk(b);
            if (pick == 64 && (r >> 8) % 4 == 0) {
                /* glibc's rule, which memalloc follows: realloc(p, 0) frees */
                void *q = realloc(b->p, 0);
                CHECK(q == NULL);
                b->p = NULL;
                t->ops[OP_REALLOC0]++;
                continue;
            }
            size_t n = random_size(rng_next(&seed));
            if (n == 0)
                n = 1;
            uintptr_t old = (uintptr_t)b->p;
            void *q = realloc(b->p, n);
            CHECKF(q != NULL, "realloc(%p, %zu) = NULL", b->p, n);
            check_aligned(q, n, 0);
            size_t keep = b->n < n ? b->n : n;
            size_t bad = pattern_find_bad(q, old, b->n, keep);
            CHECKF(bad == (size_t)-1, "realloc(%p, %zu -> %zu) = %p lost byte %zu", (void *)old,
                   b->n, n, q, bad);
            pattern_fill(q, n);
            b->p = q;
            b->n = n;
            t->ops[OP_REALLOC]++;
            t->bytes += n;
        } else if (pick < 80) {
            check_blk(b);
            size_t s = (size_t)((r >> 8) % SLOTS);
            pthread_mutex_t *m = &stripe[s % STRIPES];
            pthread_mutex_lock(m);
            struct blk got = slots[s];
            slots[s] = *b;
            pthread_mutex_unlock(m);
            *b = got;
            if (got.p != NULL) {
                check_blk(&got);
                t->foreign++;
            }
            t->ops[OP_EXCHANGE]++;
        } else {
            check_blk(b);
            t->ops[OP_CHECK]++;
        }
    }
    for (int i = 0; i < LOCAL; i++) {
        if (local[i].p != NULL) {
            check_blk(&local[i]);
            free(local[i].p);
        }
    }
    check_flush();
    return NULL;
}

static double mib(size_t b)
{
    return b / (double)MiB;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    check_begin();
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    int nthreads = argc > 2 ? atoi(argv[2]) : 32;
    CHECK(seconds > 0 && nthreads > 0 && nthreads <= MAX_THREADS);
    size_t (*check_heap)(void) = (size_t (*)(void))memalloc_sym("memalloc_check");
    void (*get_stats)(struct memalloc_stats *) =
        (void (*)(struct memalloc_stats *))memalloc_sym("memalloc_get_stats");
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripe[i], NULL);
    printf("stress: %d threads for %.0f s\n", nthreads, seconds);
    fflush(stdout);

    struct memalloc_stats s0, s1;
    memset(&s0, 0, sizeof s0);
    memset(&s1, 0, sizeof s1);
    if (get_stats != NULL)
        get_stats(&s0);
    size_t rss_start = rss_bytes(), rss_peak = rss_start;

    static struct tstate ts[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    double t0 = now();
    for (int i = 0; i < nthreads; i++) {
        ts[i].id = i;
        CHECK(pthread_create(&tid[i], NULL, worker, &ts[i]) == 0);
    }
    while (now() - t0 < seconds) {
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
        size_t r = rss_bytes();
        if (r > rss_peak)
            rss_peak = r;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < nthreads; i++)
        CHECK(pthread_join(tid[i], NULL) == 0);
    double elapsed = now() - t0;
    size_t in_slots = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].p != NULL) {
            check_blk(&slots[i]);
            free(slots[i].p);
            slots[i].p = NULL;
            in_slots++;
        }
    }
    size_t r = rss_bytes();
    if (r > rss_peak)
        rss_peak = r;

    /* counts */
    unsigned long total[NOPS] = {0}, all = 0, bytes = 0, foreign = 0, min_t = (unsigned long)-1,
                  max_t = 0;
    for (int i = 0; i < nthreads; i++) {
        unsigned long mine = 0;
        for (int k = 0; k < NOPS; k++) {
            total[k] += ts[i].ops[k];
            mine += ts[i].ops[k];
        }
        all += mine;
        bytes += ts[i].bytes;
        foreign += ts[i].foreign;
        if (mine < min_t)
            min_t = mine;
        if (mine > max_t)
            max_t = mine;
    }
    printf("%lu operations in %.1f s (%.2f M/s; per thread %lu .. %lu), %.1f GiB allocated\n", all,
           elapsed, all / elapsed / 1e6, min_t, max_t, bytes / (double)(1u << 30));
    for (int k = 0; k < NOPS; k++)
        printf("  %-15s %lu\n", op_name[k], total[k]);
    printf("  %lu blocks taken over from other threads; %zu left in the slots at the end\n",
           foreign, in_slots);

    if (check_heap != NULL) {
        size_t broken = check_heap();
        CHECKF(broken == 0, "memalloc_check() = %zu after the stress", broken);
    }
    size_t rss_freed = rss_bytes();
    /* MEMALLOC_DEBUG=1 holds up to 16 MiB of freed blocks in its quarantine */
    const char *dbg = getenv("MEMALLOC_DEBUG");
    size_t quarantine = dbg != NULL && dbg[0] == '1' ? 16 * MiB : 0;
    if (get_stats != NULL)
        get_stats(&s1);
    /* memalloc purges free pages at most every 250 ms, from a free on, and
     * at most 128 KiB per call: the same after a pause and the frees that
     * take (2000 of 64 KiB: 250 MiB, more than the heap ever holds here) */
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    for (int i = 0; i < 2000; i++)
        free(opaque_ptr(malloc(opaque(64 * KiB))));
    size_t rss_idle = rss_bytes();
    malloc_trim(0);
    size_t rss_trimmed = rss_bytes();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("RSS: start %.1f MiB, peak %.1f MiB (sampled every 20 ms; ru_maxrss %.1f MiB), "
           "after freeing everything %.1f MiB, after 0.3 s and 2000 more frees %.1f MiB, "
           "after malloc_trim(0) %.1f MiB\n",
           mib(rss_start), mib(rss_peak), ru.ru_maxrss / 1024.0, mib(rss_freed), mib(rss_idle),
           mib(rss_trimmed));
    if (get_stats != NULL) {
        printf("memalloc: in_use %.2f -> %.2f MiB (peak %.1f MiB), heap %.1f MiB (free %.1f MiB), "
               "large %.1f MiB, released %.1f MiB\n",
               mib(s0.in_use), mib(s1.in_use), mib(s1.peak_in_use), mib(s1.heap_bytes),
               mib(s1.free_bytes), mib(s1.large_bytes), mib(s1.released_bytes));
        CHECKF(s1.in_use <= s0.in_use + 1 * MiB + quarantine,
               "in_use %zu at the start, %zu with everything freed", s0.in_use, s1.in_use);
    }
    /* Memory goes back without malloc_trim: after the pause and one more
     * free, RSS is within max(16 MiB, 20% of the growth to the peak) of the
     * start; after malloc_trim(0) too.  (Right after the last free it may
     * not be yet: see the top of this file.) */
    size_t grown = rss_peak > rss_start ? rss_peak - rss_start : 0;
    /* (debug mode: the quarantine's blocks and what their fills touched) */
    size_t slack = (grown / 5 > 16 * MiB ? grown / 5 : 16 * MiB) + 2 * quarantine;
    CHECKF(rss_idle <= rss_start + slack,
           "RSS %.1f MiB after freeing everything and a pause: more than %.1f MiB above the "
           "start (%.1f MiB)",
           mib(rss_idle), mib(slack), mib(rss_start));
    CHECKF(rss_trimmed <= rss_start + slack,
           "RSS %.1f MiB after malloc_trim(0): more than %.1f MiB above the start (%.1f MiB)",
           mib(rss_trimmed), mib(slack), mib(rss_start));
    check_done("stress");
    return 0;
}
