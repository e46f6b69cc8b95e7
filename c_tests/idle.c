/*
 * idle.c - an idle thread's medium cache goes back (src/small/mcache.rs,
 * "Idle threads"; docs/medium.md), on the real library.
 *
 *   idle     (MEMALLOC_IDLE_MS=200) 8 threads each keep 8 live blocks and
 *            free 120 blocks of 20000 B into their medium cache (2.4 MiB
 *            each), then block on a condition variable.  The main thread
 *            allocates and frees medium blocks (its refills and flushes are
 *            the slow paths that look for idle caches) until memalloc's
 *            statistics count 8 caches taken back, or 10 s pass.  Then:
 *            in_use (which counts cached chunks a thread holds unpublished
 *            as in use) is back within the live blocks of where it was, and
 *            malloc_trim(0) shrinks the heap back to about its size when
 *            only the live blocks were allocated (the threads allocated
 *            those first, so the cached blocks lay above them).  The threads wake, check their live blocks,
 *            each allocates 120 blocks with a pattern; the main thread
 *            checks that no two of the 8 x 128 blocks overlap (no double
 *            hand-out); the threads check the patterns and free.
 *   bigidle  (MEMALLOC_IDLE_MS=200) 4 threads make 2000 pairs of the 8
 *            big classes in turn while 24 others hold a cache (the big
 *            classes' share then 1 MiB: each request cut from the thread's
 *            big reserve, src/small/mcache/slow.rs, `big_cut`), and all
 *            block; the main thread's churn takes the 28 caches back, and
 *            malloc_trim(0) shrinks the heap to within 1 MiB of its size
 *            once the caches were set up (the big reserves go back too).
 *   stress   (MEMALLOC_IDLE_MS=20) 32 threads alternate bursts of medium
 *            mallocs and frees (some handed to other threads to free) with
 *            sleeps of 0-60 ms, so that caches are taken back while their
 *            threads sleep, wake, and hold live blocks; every block's
 *            pattern is checked before it is freed; at the end the caches
 *            were taken back at least 16 times and memalloc_check() is 0.
 *   race     (MEMALLOC_IDLE_MS=1, MEMALLOC_MEDIUM_CACHE=64m) 2 threads
 *            allocate blocks and hand them to 2 threads that only free:
 *            the freeing threads' caches grow by fast-path pushes alone, so
 *            they look idle and are taken back while they push (the
 *            handshake's race); every block is checked before it is freed,
 *            and at the end memalloc_check() is 0 and, after malloc_trim,
 *            under 1 MiB is in use (no chunk lost or handed out twice).
 * Each part runs in a child process with its own MEMALLOC_IDLE_MS.
 * Without the reclaim (MEMALLOC_IDLE_MS=0 in "idle"), the in_use and trim
 * checks fail.
 */
#include "check.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

#include "memalloc.h"

#pragma weak memalloc_get_stats
#pragma weak memalloc_check

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct memalloc_stats stats(void)
{
    struct memalloc_stats st;
    memset(&st, 0, sizeof st);
    memalloc_get_stats(&st);
    return st;
}

/* Blocks carry the pattern of check.h over their first and last 256 bytes
 * (all of it would make the test slow under the watchdog). */
static void mark(void *p, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i < 256; i++)
        b[i] = pattern_byte((uintptr_t)p, n, i);
    for (size_t i = n - 256; i < n; i++)
        b[i] = pattern_byte((uintptr_t)p, n, i);
}

static void check_mark(void *p, size_t n)
{
    size_t bad = pattern_find_bad(p, (uintptr_t)p, n, 256);
    CHECKF(bad == (size_t)-1, "block %p of %zu bytes corrupt at offset %zu", p, n, bad);
    unsigned char *b = p;
    for (size_t i = n - 256; i < n; i++)
        if (b[i] != pattern_byte((uintptr_t)p, n, i)) {
            CHECKF(0, "block %p of %zu bytes corrupt at offset %zu", p, n, i);
            break;
        }
}

static void *put(size_t n)
{
    void *p = malloc(n);
    CHECK(p != NULL);
    mark(p, n);
    return p;
}

static void take(void *p, size_t n)
{
    check_mark(p, n);
    free(p);
}

/* ---- idle ------------------------------------------------------------- */

#define N 8
#define K 120
#define LIVE 8
#define BS 20000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, go;
static pthread_barrier_t bar;
static void *blocks[N][K + LIVE];

static void *idle_worker(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    void **mine = blocks[t];
    for (int i = 0; i < LIVE; i++)
        mine[K + i] = put(BS);
    /* (every thread's live blocks first: the cached ones lie above them) */
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < K; i++)
        mine[i] = put(BS);
    for (int i = 0; i < K; i++)
        take(mine[i], BS); /* into this thread's cache */
    pthread_mutex_lock(&mu);
    ready++;
    pthread_cond_broadcast(&cv);
    while (!go)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* awake: the live blocks are intact, and new blocks are new */
    for (int i = 0; i < LIVE; i++)
        check_mark(mine[K + i], BS);
    for (int i = 0; i < K; i++)
        mine[i] = put(BS);
    pthread_barrier_wait(&bar); /* the main thread checks the addresses */
    pthread_barrier_wait(&bar);
    for (int i = 0; i < K + LIVE; i++)
        take(mine[i], BS);
    check_flush();
    return NULL;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* The main thread allocates and frees medium blocks (its slow paths look
 * for idle caches) until the statistics count `want` caches taken back,
 * or 10 s pass; the statistics then, and the rounds made. */
static struct memalloc_stats drive(size_t want, size_t *rounds)
{
    double t0 = now_s();
    struct memalloc_stats s;
    for (;;) {
        static void *p[300];
        for (int i = 0; i < 300; i++)
            p[i] = put(BS + (size_t)(i % 7) * 1024);
        for (int i = 0; i < 300; i++)
            take(p[i], BS + (size_t)(i % 7) * 1024);
        ++*rounds;
        s = stats();
        if (s.medium_reclaims >= want || now_s() - t0 > 10)
            return s;
        usleep(2000);
    }
}

static void idle_part(void)
{
    /* (the main thread's cache, set up by its first medium block, lies low
     * in the heap too: at its top it would hold the break up) */
    take(put(BS), BS);
    malloc_trim(0);
    struct memalloc_stats s0 = stats();
    pthread_barrier_init(&bar, NULL, N + 1);
    pthread_t tid[N];
    for (size_t t = 0; t < N; t++)
        CHECK(pthread_create(&tid[t], NULL, idle_worker, (void *)(uintptr_t)t) == 0);
    pthread_barrier_wait(&bar);
    struct memalloc_stats sa = stats(); /* the live blocks only */
    pthread_barrier_wait(&bar);
    pthread_mutex_lock(&mu);
    while (ready < N)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    struct memalloc_stats s1 = stats();
    size_t live = (size_t)N * LIVE * (BS + 512);
    size_t cached = (size_t)N * K * BS;
    fprintf(stderr, "idle: in use %zu before the threads, %zu with their caches full "
            "(%zu reclaims so far)\n", s0.in_use, s1.in_use, s1.medium_reclaims);

    double t0 = now_s();
    size_t rounds = 0;
    struct memalloc_stats s2 = drive(N, &rounds);
    double took = now_s() - t0;
    fprintf(stderr, "idle: %zu caches taken back after %.2f s (%zu rounds); in use %zu\n",
            s2.medium_reclaims, took, rounds, s2.in_use);
    CHECKF(s2.medium_reclaims >= N, "%zu of %d idle caches taken back in %.1f s",
           s2.medium_reclaims, N, took);
    CHECKF(s2.in_use <= s0.in_use + live + 512 * 1024,
           "in use %zu before the threads, %zu after the reclaim (their live blocks: %zu)",
           s0.in_use, s2.in_use, live);
    malloc_trim(0);
    struct memalloc_stats s3 = stats();
    fprintf(stderr, "idle: heap %zu bytes with the live blocks, %zu after the reclaim, "
            "%zu after malloc_trim\n", sa.heap_bytes, s2.heap_bytes, s3.heap_bytes);
    CHECKF(s3.heap_bytes <= sa.heap_bytes + 1024 * 1024,
           "heap %zu bytes with the live blocks only, %zu after malloc_trim (%zu cached by the "
           "idle threads)", sa.heap_bytes, s3.heap_bytes, cached);
    CHECK(memalloc_check() == 0);

    /* wake them: nothing lost, nothing handed out twice */
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_barrier_wait(&bar);
    static void *all[N * (K + LIVE)];
    memcpy(all, blocks, sizeof all);
    qsort(all, N * (K + LIVE), sizeof all[0], by_address);
    for (size_t i = 0; i + 1 < N * (K + LIVE); i++)
        CHECKF((uintptr_t)all[i] + BS <= (uintptr_t)all[i + 1], "blocks %p and %p overlap",
               all[i], all[i + 1]);
    pthread_barrier_wait(&bar);
    for (size_t t = 0; t < N; t++)
        CHECK(pthread_join(tid[t], NULL) == 0);
    CHECK(memalloc_check() == 0);
}

/* ---- bigidle ---------------------------------------------------------- */

#define BW 4  /* threads that make big pairs */
#define BH 24 /* threads that only hold a cache (the share is then 1 MiB) */

static pthread_barrier_t bbar;

/* A thread with a medium cache; with arg, it then makes 2000 pairs of the
 * 8 big classes in turn (the share full: each cut from its big reserve).
 * Then it blocks until the end. */
static void *big_idle_worker(void *arg)
{
    take(put(BS), BS);
    pthread_barrier_wait(&bbar);
    for (int i = 0; arg != NULL && i < 2000; i++) {
        int k = i % 8; /* class 24 + k: (5 + k % 4) << (16 + k / 4) bytes */
        size_t n = ((size_t)(5 + k % 4) << (16 + k / 4)) - 4096;
        take(put(n), n);
    }
    pthread_barrier_wait(&bbar);
    pthread_barrier_wait(&bbar);
    return NULL;
}

static void bigidle_part(void)
{
    take(put(BS), BS);
    void *volatile m = malloc(2 << 20); /* the mmap threshold past 1 MiB */
    free(m);
    malloc_trim(0);
    pthread_barrier_init(&bbar, NULL, BW + BH + 1);
    pthread_t tid[BW + BH];
    for (size_t t = 0; t < BW + BH; t++)
        CHECK(pthread_create(&tid[t], NULL, big_idle_worker, t < BW ? (void *)1 : NULL) == 0);
    pthread_barrier_wait(&bbar);
    struct memalloc_stats sa = stats(); /* every thread's cache set up */
    pthread_barrier_wait(&bbar);
    size_t rounds = 0;
    struct memalloc_stats s2 = drive(BW + BH, &rounds);
    malloc_trim(0);
    struct memalloc_stats s3 = stats();
    fprintf(stderr, "bigidle: %zu caches taken back; heap %zu bytes with the caches set up, %zu after "
            "malloc_trim\n", s2.medium_reclaims, sa.heap_bytes, s3.heap_bytes);
    CHECKF(s2.medium_reclaims >= BW + BH, "%zu of %d idle caches taken back", s2.medium_reclaims, BW + BH);
    CHECKF(s3.heap_bytes <= sa.heap_bytes + 1024 * 1024,
           "heap %zu bytes with the caches set up, %zu after the idle caches' reclaim and malloc_trim "
           "(%d threads' big reserves of 1 MiB)", sa.heap_bytes, s3.heap_bytes, BW);
    CHECK(memalloc_check() == 0);
    pthread_barrier_wait(&bbar);
    for (size_t t = 0; t < BW + BH; t++)
        CHECK(pthread_join(tid[t], NULL) == 0);
}

/* ---- stress ----------------------------------------------------------- */

#define SN 32
#define SLOTS 48
#define MAILBOX 64

static struct { void *p; size_t n; } mailbox[MAILBOX];
static pthread_mutex_t mailbox_mu = PTHREAD_MUTEX_INITIALIZER;
static double deadline;

static size_t stress_size(uint64_t *s)
{
    uint64_t r = rng_next(s);
    if (r % 4 == 0)
        return 20000;
    return 4097 + (size_t)(r >> 8) % (200 * 1024);
}

static void *stress_worker(void *arg)
{
    uint64_t s = 0x9e3779b9u + (uintptr_t)arg;
    void *p[SLOTS] = {0};
    size_t n[SLOTS] = {0};
    while (now_s() < deadline) {
        int ops = 50 + (int)(rng_next(&s) % 200);
        for (int op = 0; op < ops; op++) {
            int i = (int)(rng_next(&s) % SLOTS);
            if (p[i] == NULL) {
                n[i] = stress_size(&s);
                p[i] = put(n[i]);
            } else if (op % 8 == 0) {
                /* hand it to whoever takes this mailbox slot next */
                int m = (int)(rng_next(&s) % MAILBOX);
                pthread_mutex_lock(&mailbox_mu);
                void *q = mailbox[m].p;
                size_t qn = mailbox[m].n;
                mailbox[m].p = p[i];
                mailbox[m].n = n[i];
                pthread_mutex_unlock(&mailbox_mu);
                p[i] = NULL;
                if (q != NULL)
                    take(q, qn);
            } else {
                take(p[i], n[i]);
                p[i] = NULL;
            }
        }
        for (int i = 0; i < SLOTS; i++)
            if (p[i] != NULL)
                check_mark(p[i], n[i]);
        usleep((useconds_t)(rng_next(&s) % 60000));
        for (int i = 0; i < SLOTS; i++)
            if (p[i] != NULL)
                check_mark(p[i], n[i]);
    }
    for (int i = 0; i < SLOTS; i++)
        if (p[i] != NULL)
            take(p[i], n[i]);
    check_flush();
    return NULL;
}

static void stress_part(void)
{
    deadline = now_s() + 4;
    pthread_t tid[SN];
    for (size_t t = 0; t < SN; t++)
        CHECK(pthread_create(&tid[t], NULL, stress_worker, (void *)(uintptr_t)t) == 0);
    for (size_t t = 0; t < SN; t++)
        CHECK(pthread_join(tid[t], NULL) == 0);
    for (int m = 0; m < MAILBOX; m++)
        if (mailbox[m].p != NULL)
            take(mailbox[m].p, mailbox[m].n);
    struct memalloc_stats st = stats();
    fprintf(stderr, "stress: %zu caches taken back\n", st.medium_reclaims);
    CHECKF(st.medium_reclaims >= 16, "only %zu idle caches taken back", st.medium_reclaims);
    CHECK(memalloc_check() == 0);
}

/* ---- race ------------------------------------------------------------- */

/* Producers allocate, consumers only free: a consumer's frees are fast-path
 * pushes (its cap is large), so it looks idle to the reclaimer, which the
 * producers' refills run every scan, while it is busy in its fast path. */
#define RP 2
#define RC 2
#define RING 1024

static struct { void *p; size_t n; } ring[RC][RING];
static unsigned ring_head[RC], ring_tail[RC]; /* producer / consumer indices */
static pthread_mutex_t ring_mu[RC] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static int producers_done, race_stop;

static void *producer(void *arg)
{
    uint64_t s = 0x51ed27u + (uintptr_t)arg;
    while (now_s() < deadline && !__atomic_load_n(&race_stop, __ATOMIC_RELAXED)) {
        int c = (int)(rng_next(&s) % RC);
        size_t n = 5000 + (size_t)(rng_next(&s) % 30000);
        void *p = put(n);
        pthread_mutex_lock(&ring_mu[c]);
        if (ring_head[c] - ring_tail[c] < RING) {
            ring[c][ring_head[c] % RING].p = p;
            ring[c][ring_head[c] % RING].n = n;
            ring_head[c]++;
            p = NULL;
        }
        pthread_mutex_unlock(&ring_mu[c]);
        if (p != NULL)
            take(p, n);
    }
    check_flush();
    return NULL;
}

static void *consumer(void *arg)
{
    int c = (int)(uintptr_t)arg;
    static __thread struct { void *p; size_t n; } got[64];
    for (;;) {
        pthread_mutex_lock(&ring_mu[c]);
        int done = __atomic_load_n(&producers_done, __ATOMIC_ACQUIRE);
        int k = 0;
        while (k < 64 && ring_head[c] != ring_tail[c]) {
            got[k].p = ring[c][ring_tail[c] % RING].p;
            got[k].n = ring[c][ring_tail[c] % RING].n;
            ring_tail[c]++;
            k++;
        }
        pthread_mutex_unlock(&ring_mu[c]);
        for (int i = 0; i < k; i++)
            check_mark(got[i].p, got[i].n);
        for (int i = 0; i < k; i++)
            free(got[i].p); /* back to back: the pushes the reclaim races */
        if (k == 0 && done)
            break;
    }
    check_flush();
    return NULL;
}

static void race_part(void)
{
    /* 3 s, and on a loaded machine (where fewer scans fall in 3 s) longer,
     * until 10 caches were taken back, at most 30 s */
    double t0 = now_s();
    deadline = t0 + 30;
    pthread_t p[RP], c[RC];
    for (size_t i = 0; i < RC; i++)
        CHECK(pthread_create(&c[i], NULL, consumer, (void *)(uintptr_t)i) == 0);
    for (size_t i = 0; i < RP; i++)
        CHECK(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i) == 0);
    while (now_s() < deadline && !(now_s() >= t0 + 3 && stats().medium_reclaims >= 10))
        usleep(50 * 1000);
    __atomic_store_n(&race_stop, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < RP; i++)
        CHECK(pthread_join(p[i], NULL) == 0);
    __atomic_store_n(&producers_done, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < RC; i++)
        CHECK(pthread_join(c[i], NULL) == 0);
    struct memalloc_stats st = stats();
    fprintf(stderr, "race: %zu caches taken back in %.1f s\n", st.medium_reclaims, now_s() - t0);
    CHECKF(st.medium_reclaims >= 10, "only %zu caches taken back", st.medium_reclaims);
    CHECK(memalloc_check() == 0);
    /* every block is freed: nothing is in use but what the caches hold */
    malloc_trim(0);
    st = stats();
    CHECKF(st.in_use < 1024 * 1024, "%zu bytes still in use after all blocks were freed", st.in_use);
}

/* Runs this program as `self part` with MEMALLOC_IDLE_MS=ms; its checks
 * end its process (exit 1) on failure. */
static void run_part(const char *self, const char *part, const char *ms)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("MEMALLOC_IDLE_MS", ms, 1);
        execl(self, self, part, (char *)NULL);
        _exit(127);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "part %s: status %#x", part, status);
}

int main(int argc, char **argv)
{
    check_begin();
    CHECKF(memalloc_get_stats != NULL && memalloc_check != NULL, "%s",
           "memalloc's API is missing: is libmemalloc.so loaded?");
    if (memalloc_get_stats == NULL || memalloc_check == NULL)
        return check_done("idle"), 1;
    if (argc > 1 && strcmp(argv[1], "idle") == 0) {
        idle_part();
        check_done("idle-part");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "bigidle") == 0) {
        bigidle_part();
        check_done("bigidle-part");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "race") == 0) {
        race_part();
        check_done("race-part");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "stress") == 0) {
        stress_part();
        check_done("stress-part");
        return 0;
    }
    run_part(argv[0], "idle", getenv("MEMALLOC_TEST_IDLE_MS") ? getenv("MEMALLOC_TEST_IDLE_MS") : "200");
    run_part(argv[0], "bigidle", "200");
    run_part(argv[0], "stress", "20");
    setenv("MEMALLOC_MEDIUM_CACHE", "64m", 1);
    run_part(argv[0], "race", "1");
    check_done("idle");
    return 0;
}
