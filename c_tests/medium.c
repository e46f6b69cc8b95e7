/*
 * medium.c - medium blocks (4 KiB-1 MiB) and the per-thread medium caches
 * (src/mcache.rs), on the real library.
 *
 *   1. 32 threads allocate medium blocks with a cookie, hand half of them
 *      to the next thread, which checks and frees them (cross-thread frees
 *      into the freeing thread's cache); every cookie checked before free.
 *   2. A thread's cache goes back to the heap when it exits: bytes in use
 *      (memalloc_get_stats) return to where they were before the thread.
 *   3. malloc_trim after medium churn brings the break back down.
 *   4. The cap: the test runs itself with MEMALLOC_MEDIUM_CACHE=256k and
 *      MEMALLOC_STATS=1; the summary's "one thread's most" is at most the cap.
 *   5. Requests the dynamic mmap threshold leaves below it, though their
 *      class rounds past it (200000 B after a freed mapping of 200000 B
 *      set the threshold to its size), and of 700000 B likewise (a big
 *      class, above 256 KiB): the test runs itself with MEMALLOC_STATS=1,
 *      and of 2 x 2000 malloc+free pairs the caches serve all but the
 *      first few (the summary's "medium (cached)").
 *   6. The big classes' share of a thread's cache: a thread frees twelve
 *      blocks of 600000 B (7.9 MiB of chunks). With 24 other threads holding
 *      a cache (16 until short17i raised mcache.rs's BIG_BUDGET), it keeps one, the others go to the shared lists: "one
 *      thread's most" is at most 1 MiB (the biggest class's chunk). Alone,
 *      it keeps more than one and at most 6 MiB (mcache.rs's
 *      BIG_SHARE_MAX: a lone thread's big classes get more room).
 *   7. A flush's work is bounded: one thread frees 400 blocks of 5-65 KiB
 *      (about 14 MiB, past the 4 MiB cap) in random order and allocates
 *      them again, 20 times: the test runs itself with MEMALLOC_STATS=1,
 *      and the summary's "at most N chunks in one" flush is at most 20
 *      (mcache/slow.rs's FLUSH_MOVES, 16, and what bringing the cache under
 *      its cap takes: under a chunk of 64 KiB past it, and each chunk moved
 *      is at least 5 KiB). Unbounded, one flush moved up to 51 here.
 *   8. 64 threads fill their caches at once (256 blocks of 4-64 KiB each,
 *      about 8.5 MiB a thread, their refills cutting the threads'
 *      reserves), check every block's cookie, free them and exit (the
 *      child exits 0 only if every check passed); the refills from the
 *      heap and the contended acquisitions are printed, not bounded: both
 *      swing several-fold between runs (0.8k-9.9k refills from the heap,
 *      6.6k-15.3k before the reserves; the contended count is the
 *      scheduler's: each time a holder of the heap's lock is preempted, up
 *      to 63 threads find it held).
 *   9. Chunks of no class's size (aligned blocks: the heap cuts them to the
 *      request) are cached at their class's size exactly: 100 blocks of
 *      20000 B aligned to 4 KiB freed into the main thread's cache leave
 *      `in_use` within 16 KiB of where it was (counted at their class's
 *      size, 16 KiB, each was 3.5 KiB short: 350 KiB).
 *  10. A big class the thread does not hold is served by a chunk of a
 *      bigger class it does (less than twice the request: mcache/slow.rs's
 *      bigger_own): with 24 other threads holding a cache (so the thread's
 *      big classes hold 1 MiB together), the thread frees a block of
 *      1000000 B (its cache keeps the chunk; a freed mapping of 2 MiB
 *      raised the mmap threshold first), then makes 2000 malloc+free
 *      pairs of 600000 B: the child runs with MEMALLOC_STATS=1, and its
 *      summary counts at most 28 refills and 28 flushes (the holders' own
 *      take 24 and 24; 20 each while they were 16). (Before, each
 *      pair's malloc refilled from the class's shared list and its free
 *      flushed the chunk back there, the 1 MiB share being full: 2000 of
 *      each; the grid's short 64 KiB-1 MiB at 16 threads made 120k of each
 *      in 400k pairs.)
 *  11. With 4 threads holding a cache, a thread's big classes keep one chunk
 *      of each of the 8 (4.9 MiB; mcache.rs's BIG_BUDGET, 24 MiB, gives each
 *      of 4 threads 6 MiB): 2000 malloc+free pairs of the 8 classes in turn
 *      make at most 40 refills and 40 flushes (11 and 3; 260 and 253 with
 *      the 16 MiB budget before short17i, 4 MiB each).
 * (A double free of a cached medium block is c_tests/misuse.c's
 * double-free-medium and double-free-medium-cached-other-thread.)
 */
#include "check.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "memalloc.h"

#pragma weak memalloc_get_stats
#pragma weak memalloc_check

#define THREADS 32
#define PER 200

typedef struct { uint64_t *p; size_t n; } blk_t;
static blk_t handoff[THREADS][PER];
static pthread_barrier_t bar;

static size_t rnd(uint64_t *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return (size_t)*s;
}

static uint64_t cookie(const void *p, size_t n) { return ((uintptr_t)p * 0x9e3779b97f4a7c15ull) ^ n; }

static void *put(size_t n)
{
    uint64_t *p = malloc(n);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 15) == 0);
    CHECK(malloc_usable_size(p) >= n);
    p[0] = cookie(p, n);
    p[n / 8 - 1] = ~cookie(p, n);
    return p;
}

static void take(uint64_t *p, size_t n)
{
    CHECKF(p[0] == cookie(p, n) && p[n / 8 - 1] == ~cookie(p, n), "block %p of %zu lost its cookie", (void *)p, n);
    free(p);
}

static void *worker(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    uint64_t s = 0x1234567 + t;
    for (int round = 0; round < 20; round++) {
        blk_t mine[PER];
        for (int i = 0; i < PER; i++) {
            size_t n = 4097 + rnd(&s) % (256 * 1024 - 4097);
            mine[i].n = n & ~(size_t)7;
            mine[i].p = put(mine[i].n);
        }
        for (int i = 0; i < PER; i += 2)
            handoff[t][i] = mine[i];
        pthread_barrier_wait(&bar);
        size_t o = (t + 1) % THREADS;
        for (int i = 0; i < PER; i += 2)
            take(handoff[o][i].p, handoff[o][i].n);
        for (int i = 1; i < PER; i += 2)
            take(mine[i].p, mine[i].n);
        pthread_barrier_wait(&bar);
    }
    check_flush();
    return NULL;
}

static void *churn_and_exit(void *arg)
{
    (void)arg;
    void *p[64];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 64; i++)
            p[i] = put(8192 + 1024 * (size_t)i);
        for (int i = 0; i < 64; i++)
            take(p[i], 8192 + 1024 * (size_t)i);
    }
    check_flush();
    return NULL;
}

static size_t in_use(void)
{
    struct memalloc_stats st;
    memalloc_get_stats(&st);
    return st.in_use;
}

/* Runs this program as "medium MODE" with the statistics on (and the
 * medium cache's cap, if cap is not NULL); its summary goes to buf. */
static void run_child(const char *self, const char *mode, const char *cap, char *buf, size_t size)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (cap)
            setenv("MEMALLOC_MEDIUM_CACHE", cap, 1);
        setenv("MEMALLOC_STATS", "1", 1);
        execl(self, self, mode, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t k;
    while (len < size - 1 && (k = read(fds[0], buf + len, size - 1 - len)) > 0)
        len += (size_t)k;
    buf[len] = 0;
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* 4: the cap is respected. */
static void cap_respected(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "cap", "256k", buf, sizeof buf);
    const char *m = strstr(buf, "one thread's most ");
    CHECKF(m != NULL, "no medium cache line in: %s", buf);
    unsigned long most = 0, cap = 0;
    CHECK(sscanf(m, "one thread's most %lu (cap %lu)", &most, &cap) == 2);
    CHECKF(cap == 256 * 1024, "cap %lu", cap);
    CHECKF(most > 0 && most <= cap, "a thread held %lu bytes over a cap of %lu", most, cap);
}

/* The child of classes_cached: after a mapping of 200000 B is freed (the
 * dynamic threshold rises to its size), 2000 pairs of 200000 B, then 2000
 * of 700000 B (after one of that size is freed too). */
static void pairs(void)
{
    static const size_t sizes[2] = {200000, 700000};
    for (int s = 0; s < 2; s++) {
        void *m = malloc(sizes[s]);
        if (m == NULL)
            abort(); /* (the parent sees the child fail) */
        free(m);
        for (int i = 0; i < 2000; i++) {
            unsigned char *volatile q = malloc(sizes[s]);
            if (q == NULL)
                abort();
            q[0] = (unsigned char)i;
            q[sizes[s] - 1] = (unsigned char)i;
            free(q);
        }
    }
}

/* 5: the pairs of `pairs` come from the caches. */
static void classes_cached(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "pairs", NULL, buf, sizeof buf);
    const char *m = strstr(buf, "medium (cached)");
    CHECKF(m != NULL, "no medium (cached) line in: %s", buf);
    unsigned long cached = 0;
    CHECK(m && sscanf(m, "medium (cached) %lu", &cached) == 1);
    CHECKF(cached >= 3990, "of 4000 pairs of 200000 and 700000 B, %lu served by the caches", cached);
}

/* The child of big_share: BIG_N blocks of 600000 B freed (into the caches:
 * the dynamic threshold rose to that size at the first free), then a
 * request of another class, whose refill records what the cache holds. With
 * "big16", BIG_THREADS other threads hold a medium cache meanwhile. */
enum { BIG_N = 12, BIG_THREADS = 24 };
static pthread_barrier_t big_ready, big_done;

static void *hold_cache(void *arg)
{
    (void)arg;
    free(malloc(5000)); /* a medium block: the thread has a cache */
    pthread_barrier_wait(&big_ready);
    pthread_barrier_wait(&big_done);
    return NULL;
}

/* Starts n threads that hold a medium cache until holders_end_n. */
static void holders_start_n(pthread_t *t, int n)
{
    pthread_barrier_init(&big_ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&big_done, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, hold_cache, NULL) != 0)
            abort();
    pthread_barrier_wait(&big_ready);
}

static void holders_end_n(pthread_t *t, int n)
{
    pthread_barrier_wait(&big_done);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* BIG_THREADS of them. */
static void holders_start(pthread_t *t)
{
    holders_start_n(t, BIG_THREADS);
}

static void holders_end(pthread_t *t)
{
    holders_end_n(t, BIG_THREADS);
}

static void big(int with_threads)
{
    pthread_t t[BIG_THREADS];
    if (with_threads)
        holders_start(t);
    void *m = malloc(600000);
    if (m == NULL)
        abort();
    free(m);
    void *p[BIG_N];
    for (int i = 0; i < BIG_N; i++) {
        p[i] = malloc(600000);
        if (p[i] == NULL)
            abort();
        memset(p[i], i, 600000);
    }
    for (int i = 0; i < BIG_N; i++)
        free(p[i]);
    unsigned char *volatile q = malloc(300000);
    if (q == NULL)
        abort();
    q[0] = 1;
    free(q);
    if (with_threads)
        holders_end(t);
}

/* The child of flush_bounded: 400 blocks of 5-65 KiB freed in random order
 * and allocated again, 20 times. */
static void flush_churn(void)
{
    static unsigned char *p[400];
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 400; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            p[i] = malloc(5120 + r % (60 * 1024));
            if (p[i] == NULL)
                abort();
            p[i][0] = (unsigned char)i;
        }
        for (int i = 399; i > 0; i--) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            int j = (int)(r % (uint64_t)(i + 1));
            unsigned char *t = p[i];
            p[i] = p[j], p[j] = t;
        }
        for (int i = 0; i < 400; i++)
            free(p[i]);
    }
}

/* 7: a flush moves a bounded number of chunks. */
static void flush_bounded(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "flush", NULL, buf, sizeof buf);
    const char *m = strstr(buf, "(cap ");
    CHECKF(m != NULL, "no medium cache line in: %s", buf);
    unsigned long cap = 0, refills = 0, heap_refills = 0, flushes = 0, heap_flushes = 0, most = 0;
    CHECKF(m && sscanf(m, "(cap %lu); %lu refills (%lu from the heap), %lu flushes (%lu to the heap), at most %lu chunks in one",
                       &cap, &refills, &heap_refills, &flushes, &heap_flushes, &most) == 6,
           "no flush figures in: %.300s", m ? m : buf);
    CHECKF(flushes >= 20, "%lu flushes: the cache never passed its cap?", flushes);
    CHECKF(most > 0 && most <= 20, "one flush moved %lu chunks (at most 20)", most);
}

/* The child of fill_at_64: 64 threads fill 256 blocks each at once, then
 * 4000 pairs each. */
#define FILL_THREADS 64
#define FILL_PAIRS 0
static pthread_barrier_t fill_bar;
static void *fill_worker(void *arg)
{
    uint64_t s = 0x9876543 + (uintptr_t)arg;
    static __thread void *p[256];
    static __thread size_t n[256];
    pthread_barrier_wait(&fill_bar);
    for (int i = 0; i < 256; i++) {
        n[i] = 4096 + rnd(&s) % (60 * 1024);
        p[i] = put(n[i]);
    }
    for (int i = 0; i < FILL_PAIRS; i++) {
        size_t k = rnd(&s) % 256;
        take(p[k], n[k]);
        n[k] = 4096 + rnd(&s) % (60 * 1024);
        p[k] = put(n[k]);
    }
    for (int i = 0; i < 256; i++)
        take(p[i], n[i]);
    check_flush();
    return NULL;
}

static void fill(void)
{
    pthread_t t[FILL_THREADS];
    pthread_barrier_init(&fill_bar, NULL, FILL_THREADS);
    for (int i = 0; i < FILL_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, fill_worker, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < FILL_THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
}

/* 8: 64 threads' first fills take the heap's lock a few times each. */
static void fill_at_64(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "fill", NULL, buf, sizeof buf);
    const char *m = strstr(buf, "(cap ");
    CHECKF(m != NULL, "no medium cache line in: %s", buf);
    unsigned long cap = 0, refills = 0, heap_refills = 0;
    CHECKF(m && sscanf(m, "(cap %lu); %lu refills (%lu from the heap)", &cap, &refills, &heap_refills) == 3,
           "no refill figures in: %.300s", m ? m : buf);
    const char *c = strstr(buf, "contended locks");
    unsigned long all = 0, per_m = 0, heap_per_m = 0;
    CHECKF(c && sscanf(c, "contended locks %lu (%lu per million allocations, the heap's %lu", &all, &per_m,
                       &heap_per_m) == 3,
           "no contended locks line in: %.300s", buf);
    printf("64 threads' fills: %lu refills, %lu from the heap; contended locks %lu (%lu per million "
           "allocations, the heap's %lu)\n", refills, heap_refills, all, per_m, heap_per_m);
    CHECKF(refills > 0 && heap_refills <= refills, "%lu refills, %lu from the heap", refills, heap_refills);
}

/* 9: chunks of no class's size are counted at their size. */
static void odd_sizes(void)
{
    enum { N = 100 };
    static void *q[N];
    size_t before = in_use();
    for (int i = 0; i < N; i++) {
        CHECK(posix_memalign(&q[i], 4096, 20000) == 0);
        memset(q[i], 0x5a, 64);
    }
    for (int i = 0; i < N; i++)
        free(q[i]);
    size_t after = in_use();
    printf("in_use %zu -> %zu after %d aligned blocks of 20000 B were freed\n", before, after, N);
    CHECKF(after <= before + 16 * 1024, "in_use %zu -> %zu after %d aligned blocks of 20000 B were freed",
           before, after, N);
    CHECK(memalloc_check() == 0);
}

/* The child of big_own (part 10): a 1 MiB chunk kept, then pairs of a
 * smaller big class, with BIG_THREADS other threads holding a cache. */
static void big_own_pairs(void)
{
    pthread_t t[BIG_THREADS];
    holders_start(t);
    /* a freed mapping of 2 MiB raises the mmap threshold past 1000000 B */
    unsigned char *volatile m = malloc(2 << 20);
    if (m == NULL)
        abort();
    m[0] = 1;
    free(m);
    m = malloc(1000000);
    if (m == NULL)
        abort();
    m[999999] = 1;
    free(m);
    for (int i = 0; i < 2000; i++) {
        unsigned char *volatile q = malloc(600000);
        if (q == NULL)
            abort();
        q[0] = (unsigned char)i;
        q[599999] = (unsigned char)i;
        free(q);
    }
    holders_end(t);
}

/* Runs the child MODE with MEMALLOC_STATS=1; its summary's refills and
 * flushes. */
static void child_trips(const char *self, const char *mode, unsigned long *refills,
                        unsigned long *flushes)
{
    static char buf[1 << 16];
    run_child(self, mode, NULL, buf, sizeof buf);
    const char *m = strstr(buf, "(cap ");
    unsigned long cap = 0, heap_refills = 0;
    *refills = *flushes = 0;
    CHECKF(m && sscanf(m, "(cap %lu); %lu refills (%lu from the heap), %lu flushes", &cap, refills,
                       &heap_refills, flushes) == 4,
           "no medium cache line in: %s", buf);
}

/* 10: a big request served by the thread's own bigger chunk. */
static void big_own(const char *self)
{
    unsigned long refills, flushes;
    child_trips(self, "bigown", &refills, &flushes);
    /* (each holder's own block: one refill, and one flush at its exit) */
    CHECKF(refills <= BIG_THREADS + 4 && flushes <= BIG_THREADS + 4,
           "2000 pairs of 600000 B with a 1 MiB chunk cached: %lu refills, %lu flushes (at most %d each)",
           refills, flushes, BIG_THREADS + 4);
}

/* 2000 pairs of each big class in turn (a freed mapping of 2 MiB first
 * raises the mmap threshold past 1 MiB). */
static void big_pairs(void)
{
    unsigned char *volatile m = malloc(2 << 20);
    if (m == NULL)
        abort();
    m[0] = 1;
    free(m);
    for (int i = 0; i < 2000; i++) {
        int k = i % 8; /* class 24 + k: (5 + k % 4) << (16 + k / 4) bytes */
        size_t n = ((size_t)(5 + k % 4) << (16 + k / 4)) - 4096;
        unsigned char *volatile q = malloc(n);
        if (q == NULL)
            abort();
        q[0] = (unsigned char)i;
        q[n - 1] = (unsigned char)i;
        free(q);
    }
}

/* Pairs of each big class in turn (one block of each of the 8 classes
 * above 256 KiB, 4.9 MiB of chunks), with `holders` other threads holding
 * a cache: the child of big_four (part 11: 3) and of big_many (part 12:
 * BIG_THREADS, the thread's big classes then hold 1 MiB together:
 * `mcache::big_cap`). The heap is checked after the pairs. */
static void big_class_pairs(int holders)
{
    pthread_t t[BIG_THREADS];
    holders_start_n(t, holders);
    big_pairs();
    if (memalloc_check() != 0)
        abort();
    holders_end_n(t, holders);
}

enum { BIG_WORKERS = 4 };
static atomic_int big_workers_done;

/* A worker of big_workers: ARG rounds of big_pairs. */
static void *big_pairs_thread(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++)
        big_pairs();
    atomic_fetch_add(&big_workers_done, 1);
    return NULL;
}

/* BIG_WORKERS threads make `rounds` rounds of big_pairs while BIG_THREADS
 * others hold a cache, and exit; this thread calls `meanwhile` (if not
 * NULL) over and over until they are done. */
static void big_workers(int rounds, void (*meanwhile)(void))
{
    pthread_t h[BIG_THREADS], w[BIG_WORKERS];
    atomic_store(&big_workers_done, 0);
    holders_start(h);
    for (int i = 0; i < BIG_WORKERS; i++)
        if (pthread_create(&w[i], NULL, big_pairs_thread, (void *)(intptr_t)rounds) != 0)
            abort();
    while (meanwhile != NULL && atomic_load(&big_workers_done) < BIG_WORKERS)
        meanwhile();
    for (int i = 0; i < BIG_WORKERS; i++)
        pthread_join(w[i], NULL);
    holders_end(h);
}

/* The child of big_reserves_exit (part 13): 4 threads make the pairs of
 * part 12 while BIG_THREADS others hold a cache, and exit; then
 * malloc_trim. */
static void big_exit_child(void)
{
    big_workers(1, NULL);
    malloc_trim(0);
}

/* 13: the big reserves go back to the heap at their threads' exit: after
 * part 12's pairs in 4 threads (each cuts its big requests from its big
 * reserve, 1 MiB) that exit, and malloc_trim, the break shrinks to
 * 430 KB (reserves that outlived their threads held it at 6.1-6.3 MB). */
static void big_reserves_exit(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "bigexit", NULL, buf, sizeof buf);
    const char *m = strstr(buf, "heap (break)");
    unsigned long brk_bytes = 0;
    CHECKF(m && sscanf(m, "heap (break) %lu", &brk_bytes) == 1, "no heap (break) line in: %.300s", buf);
    printf("the break after 4 threads' big pairs, their exit and malloc_trim: %lu bytes\n", brk_bytes);
    CHECKF(brk_bytes < 1024 * 1024, "the break after 4 threads' big pairs, their exit and malloc_trim: %lu bytes",
           brk_bytes);
}

/* The child of big_check_concurrent (part 14): part 13's threads make
 * their pairs 400 times (each cuts its big requests from its big reserve
 * and takes them back when they are freed, `heap::reserve_merge`) while
 * this thread walks the heap with memalloc_check; prints how many walks
 * there were and how many found a broken invariant. */
static int big_walks, big_bad;

static void big_walk(void)
{
    big_walks++;
    if (memalloc_check() != 0)
        big_bad++;
}

static void big_check_child(void)
{
    big_workers(400, big_walk);
    big_walk();
    fprintf(stderr, "walks %d bad %d\n", big_walks, big_bad);
}

/* 14: memalloc_check while other threads take freed big chunks back into
 * their reserves finds the heap consistent: a walk holds the reserves
 * (`heap::hold_reserves`), and a chunk freed meanwhile goes to the heap
 * under its lock. (Before, a walk that had synced a reserve's size could
 * step onto the chunk just taken back, marked FREE and in no list, and
 * count it broken: in 5 of 8 runs, 1 to 1989 of 10-16k walks; with the
 * walks in a tighter loop, 6 of 6 runs, 2.9k-15.5k of 12-37k walks.) */
static void big_check_concurrent(const char *self)
{
    static char buf[1 << 16];
    run_child(self, "bigcheck", NULL, buf, sizeof buf);
    int walks = 0, bad = -1;
    const char *m = strstr(buf, "walks ");
    CHECKF(m && sscanf(m, "walks %d bad %d", &walks, &bad) == 2, "no walks line in: %.300s", buf);
    printf("memalloc_check during 4 threads' big pairs: %d of %d walks found the heap broken\n", bad, walks);
    CHECKF(bad == 0, "memalloc_check during 4 threads' big pairs: %d of %d walks found the heap broken", bad,
           walks);
}

/* 12: a thread whose big classes hold 1 MiB (24 other threads with a
 * cache), its big requests of a different class each time, cuts them
 * from its big reserve and takes each back into it when it is freed
 * (`mcache::big_cut`, `heap::reserve_merge`), with no trip through the
 * shared lists: 26 refills and 26 flushes (the holders' own blocks and
 * exits; 1526 and 1527 before, a refill and a flush for most pairs). */
static void big_many(const char *self)
{
    unsigned long refills, flushes;
    child_trips(self, "bigmany", &refills, &flushes);
    printf("2000 pairs of the 8 big classes in turn, %d threads with a cache: %lu refills, %lu flushes\n",
           BIG_THREADS, refills, flushes);
    CHECKF(refills <= BIG_THREADS + 40 && flushes <= BIG_THREADS + 40,
           "2000 pairs of the 8 big classes in turn, %d threads with a cache: %lu refills, %lu flushes "
           "(at most %d each)",
           BIG_THREADS, refills, flushes, BIG_THREADS + 40);
}

/* 11: with 4 threads holding a cache, a thread's big classes keep one
 * chunk of each (6 MiB: `mcache::BIG_BUDGET`, 24 MiB shared out, 11
 * refills and 3 flushes; with 16 MiB, 4 MiB each: 260 and 253). */
static void big_four(const char *self)
{
    unsigned long refills, flushes;
    child_trips(self, "bigfour", &refills, &flushes);
    CHECKF(refills <= 40 && flushes <= 40,
           "2000 pairs of the 8 big classes in turn, 4 threads with a cache: %lu refills, %lu flushes (at most 40 each)",
           refills, flushes);
}

/* 6: the big classes' share of the cache. */
static void big_share(const char *self)
{
    static char buf[1 << 16];
    for (int with = 0; with < 2; with++) {
        run_child(self, with ? "big16" : "big", NULL, buf, sizeof buf);
        const char *m = strstr(buf, "one thread's most ");
        CHECKF(m != NULL, "no medium cache line in: %s", buf);
        unsigned long most = 0, cap = 0;
        CHECK(m && sscanf(m, "one thread's most %lu (cap %lu)", &most, &cap) == 2);
        CHECKF(cap >= 4 * 1024 * 1024, "cap %lu", cap);
        if (with)
            CHECKF(most > 0 && most <= 1024 * 1024 + 16,
                   "a thread that freed %d blocks of 600000 B, with %d other threads, held %lu bytes of them",
                   BIG_N, BIG_THREADS, most);
        else
            CHECKF(most > 1024 * 1024 + 16 && most <= 6 * 1024 * 1024,
                   "a lone thread that freed %d blocks of 600000 B held %lu bytes of them (1-6 MiB)",
                   BIG_N, most);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "pairs") == 0) {
        pairs();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "flush") == 0) {
        flush_churn();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "fill") == 0) {
        fill();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "big") == 0) {
        big(0);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigown") == 0) {
        big_own_pairs();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigfour") == 0) {
        big_class_pairs(3);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigexit") == 0) {
        big_exit_child();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigcheck") == 0) {
        big_check_child();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigmany") == 0) {
        big_class_pairs(BIG_THREADS);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "big16") == 0) {
        big(1);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "cap") == 0) {
        /* the child of cap_respected: churn enough to pass the cap */
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, churn_and_exit, NULL);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        return 0;
    }
    check_begin();
    CHECKF(memalloc_get_stats != NULL && memalloc_check != NULL, "%s",
           "memalloc's API is missing: is libmemalloc.so loaded?");
    if (memalloc_get_stats == NULL || memalloc_check == NULL)
        return check_done("medium"), 1;

    /* 3: the main thread's cache holds freed medium blocks at the top of
     * the heap until malloc_trim gives them back */
    char *brk0 = sbrk(0);
    void *p[400];
    for (int i = 0; i < 400; i++)
        p[i] = put(4096 + 160 * (size_t)i);
    char *brk1 = sbrk(0);
    CHECKF(brk1 > brk0 + 8 * 1024 * 1024, "break %p -> %p", (void *)brk0, (void *)brk1);
    for (int i = 0; i < 400; i++)
        take(p[i], 4096 + 160 * (size_t)i);
    malloc_trim(0);
    char *brk2 = sbrk(0);
    CHECKF(brk2 < brk0 + 1024 * 1024, "break %p, %p at the peak, %p after malloc_trim",
           (void *)brk0, (void *)brk1, (void *)brk2);

    /* 1 */
    pthread_barrier_init(&bar, NULL, THREADS);
    pthread_t tid[THREADS];
    for (size_t t = 0; t < THREADS; t++)
        CHECK(pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)t) == 0);
    for (size_t t = 0; t < THREADS; t++)
        CHECK(pthread_join(tid[t], NULL) == 0);
    CHECK(memalloc_check() == 0);

    /* 2: the thread frees 64 blocks of 8-71 KiB (2.5 MiB, under the cap)
     * into its cache; at its exit they go back */
    malloc_trim(0);
    size_t before = in_use();
    pthread_t one;
    CHECK(pthread_create(&one, NULL, churn_and_exit, NULL) == 0);
    CHECK(pthread_join(one, NULL) == 0);
    size_t after = in_use();
    CHECKF(after < before + 256 * 1024, "in use %zu before the thread, %zu after it exited", before, after);
    CHECK(memalloc_check() == 0);

    /* 4 */
    cap_respected(argv[0]);
    /* 5 */
    classes_cached(argv[0]);
    /* 6 */
    big_share(argv[0]);
    /* 7 */
    flush_bounded(argv[0]);
    /* 8 */
    fill_at_64(argv[0]);
    /* 9 */
    odd_sizes();
    /* 10 */
    big_own(argv[0]);
    /* 11 */
    big_four(argv[0]);
    /* 12 */
    big_many(argv[0]);
    /* 13 */
    big_reserves_exit(argv[0]);
    /* 14 */
    big_check_concurrent(argv[0]);
    check_done("medium");
    return 0;
}
