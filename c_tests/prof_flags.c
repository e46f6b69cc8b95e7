/* c_tests/prof_flags.c — a sampled heap chunk's head word is written by two
 * parties at once, and neither write may be lost:
 *   - the profiler marks a block it sampled (chunk::SAMPLED) after the block
 *     is made, and clears the mark when it is freed, with no heap lock;
 *   - the heap, under its lock, sets and clears PREV_FREE in the head word of
 *     the chunk after one it frees, coalesces or splits, and that chunk may
 *     be in use, e.g. being marked.
 * Both go through chunk::update_head's compare-and-swap while profiling. A
 * plain store in either drops the other's bit: a lost PREV_FREE breaks the
 * heap (an abort on "heap corruption", or memalloc_check() counts it), a
 * lost SAMPLED leaves a freed block's sample live (its free does not see the
 * mark), a resurrected one marks a block nobody sampled.
 *
 * THREADS threads replace random blocks of one shared table (so most frees
 * are of another thread's block, next to blocks being marked), sizes
 * 1-100 KiB (heap chunks: below the mmap threshold), with the medium cache
 * off (MEMALLOC_MEDIUM_CACHE=0: every free goes to the TLSF heap and writes
 * its neighbour's PREV_FREE). Run with MEMALLOC_PROF=1 and a small
 * MEMALLOC_PROF_RATE (every block or most sampled). At the end every block is
 * freed: the profile must hold no live byte of the site, and memalloc_check()
 * no error. (Built with -rdynamic: the profile names the site.)
 *
 * usage: prof_flags THREADS OPS_PER_THREAD SLOTS  (prints "live BYTES check N")
 */
#define _GNU_SOURCE
#include <memalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS_MAX 4096

static _Atomic(unsigned char *) slots[SLOTS_MAX];
static long ops;
static atomic_int running;
static unsigned nslots;

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A block's size in its first 8 bytes and its last byte a cookie: a block
 * handed out twice, or written over by the heap, fails the test. */
static void fill(unsigned char *p, size_t n)
{
    memcpy(p, &n, sizeof n);
    p[n - 1] = (unsigned char)(n * 131);
}

static void drop(unsigned char *p)
{
    size_t n;
    memcpy(&n, p, sizeof n);
    if (n < 1024 || n > 100 << 10 || p[n - 1] != (unsigned char)(n * 131)) {
        fprintf(stderr, "prof_flags: block %p damaged\n", (void *)p);
        abort();
    }
    free(p);
}

/* The test's one allocation site (exported: -rdynamic names it in the
 * profile's stacks). */
__attribute__((noinline)) unsigned char *flags_site(size_t n)
{
    unsigned char *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

static void *worker(void *arg)
{
    uint64_t s = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (long i = 0; i < ops; i++) {
        size_t n = 1024 + next(&s) % ((100 << 10) - 1024);
        unsigned char *p = flags_site(n);
        if (!p) {
            fprintf(stderr, "prof_flags: out of memory\n");
            abort();
        }
        fill(p, n);
        unsigned char *old = atomic_exchange(&slots[next(&s) % nslots], p);
        if (old)
            drop(old);
    }
    atomic_fetch_sub(&running, 1);
    return NULL;
}

/* The live bytes of the site's stacks in a collapsed-stack dump. */
static long long live_bytes(void)
{
    char path[] = "/tmp/prof_flags.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    memalloc_prof_dump(fd);
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "r");
    static char line[1 << 16];
    long long sum = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strrchr(line, ' ');
        if (sp && strstr(line, "flags_site"))
            sum += atoll(sp + 1);
    }
    fclose(f);
    return sum;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    ops = argc > 2 ? atol(argv[2]) : 100000;
    nslots = argc > 3 ? (unsigned)atoi(argv[3]) : 64;
    pthread_t t[64];
    if (threads < 1 || threads > 64 || nslots < 1 || nslots > SLOTS_MAX)
        return 2;
    /* Meanwhile, the heap checked every millisecond: a free chunk that kept
     * SAMPLED (a clear lost) may be seen before the chunk is reused. (Not
     * more often: a check holds the heap's lock, and the threads would
     * then rarely write a header at the same time.) */
    atomic_store(&running, threads);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    size_t bad = 0, checks = 0;
    while (atomic_load(&running) > 0) {
        usleep(1000);
        bad += memalloc_check();
        checks++;
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < nslots; i++) {
        unsigned char *p = atomic_exchange(&slots[i], NULL);
        if (p)
            drop(p);
    }
    long long live = live_bytes();
    bad += memalloc_check();
    printf("live %lld check %zu (%zu checks)\n", live, bad, checks + 1);
    return live == 0 && bad == 0 ? 0 : 1;
}
