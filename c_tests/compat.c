/*
 * compat.c - glibc compatibility cases found by running glibc's own malloc
 * tests under the preload (issue 16). Each case runs in a fresh process (this
 * binary re-executed with the case's name), under a watchdog: a case that
 * does not finish in time is a hang, and fails.
 *
 *   fork_signal     a single-threaded program whose SIGUSR1 handler forks
 *                   while the interrupted code is inside malloc or free
 *   fork_stdio      threads using stdio and threads allocating while another
 *                   thread forks, children using stdio and malloc
 *   mallopt         every parameter glibc's mallopt knows: glibc's return
 *                   values, M_MMAP_MAX 0 and M_PERTURB applied
 *   perturb_env     MALLOC_PERTURB_ in the environment, as M_PERTURB
 *   memalign_enomem posix_memalign and the other aligned allocators under
 *                   RLIMIT_AS, from several threads: NULL/ENOMEM with errno
 *                   ENOMEM, or a usable aligned block
 *   trim_small      100,000 blocks of 100 bytes freed, then malloc_trim(0):
 *                   the break comes back; the same after the allocating
 *                   thread exits
 *
 *   compat            every case
 *   compat CASE       one case, in this process
 *
 * Every case also passes under glibc (c_tests/run.sh glibc).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static int quick(void)
{
    const char *q = getenv("MEMALLOC_TEST_QUICK");
    return q != NULL && q[0] == '1';
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- 1. fork from a signal handler, single-threaded ------------------- */

static volatile sig_atomic_t handler_forks;
/* handler runs, in memory shared with the signal sender */
static long *handled;

static void fork_in_handler(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t c = fork();
    if (c == 0)
        _exit(0);
    if (c > 0) {
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        handler_forks++;
    }
    __atomic_fetch_add(handled, 1, __ATOMIC_RELEASE);
    errno = saved;
}

static void case_fork_signal(void)
{
    enum { LIVE = 1000 };
    const int iters = 10000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fork_in_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    handled = mmap(NULL, sizeof *handled, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(handled != MAP_FAILED);
    pid_t me = getpid();
    pid_t sender = fork();
    CHECK(sender >= 0);
    if (sender == 0) {
        /* until the parent is gone: a signal, then wait for its handler to
         * have forked and reaped its child, then at most 200 us before the
         * next. As fast as the handler goes, so that thousands of signals
         * land inside malloc and free, yet the loop always goes on between
         * two (signals sent back to back starved it: each fork takes longer
         * than the gap between two) */
        uint64_t r = 0x2545F4914F6CDD1DULL;
        for (;;) {
            long seen = __atomic_load_n(handled, __ATOMIC_ACQUIRE);
            if (kill(me, SIGUSR1) != 0)
                _exit(0);
            while (__atomic_load_n(handled, __ATOMIC_ACQUIRE) == seen) {
                if (getppid() != me)
                    _exit(0);
                sched_yield();
            }
            usleep((useconds_t)(rng_next(&r) % 200));
        }
    }
    static void *live[LIVE];
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < iters; i++) {
        /* several calls per iteration, so that signals land inside them */
        for (int k = 0; k < 64; k++) {
            uint64_t r = rng_next(&seed);
            int j = (int)(r % LIVE);
            free(live[j]);
            size_t n = 1 + (size_t)((r >> 16) % (70 * 1000));
            live[j] = malloc(n);
            CHECK(live[j] != NULL);
            ((unsigned char *)live[j])[0] = (unsigned char)i;
            ((unsigned char *)live[j])[n - 1] = (unsigned char)i;
        }
    }
    kill(sender, SIGKILL);
    int st;
    waitpid(sender, &st, 0);
    signal(SIGUSR1, SIG_IGN);
    for (int j = 0; j < LIVE; j++)
        free(live[j]);
    CHECKF(handler_forks > 0, "no fork happened in a handler");
    printf("fork_signal: %d iterations, %d forks from the handler\n", iters, (int)handler_forks);
}

/* ---- 2. fork against stdio ------------------------------------------- */

static int stdio_stop;
static char stdio_path[64];

static void *stdio_thread(void *arg)
{
    (void)arg;
    char line[256];
    unsigned long n = 0;
    while (!__atomic_load_n(&stdio_stop, __ATOMIC_RELAXED)) {
        FILE *f = fopen(stdio_path, "r");
        CHECK(f != NULL);
        while (fgets(line, sizeof line, f) != NULL) {
        }
        /* a new stream with no buffer yet: flushing it allocates one while
         * glibc holds its stream list lock */
        FILE *w = fopen("/dev/null", "w");
        CHECK(w != NULL);
        fprintf(w, "%lu\n", n);
        fflush(NULL);
        fclose(w);
        fclose(f);
        n++;
    }
    check_flush();
    return NULL;
}

static void *alloc_thread(void *arg)
{
    uint64_t seed = 0xD1B54A32D192ED03ULL * (uint64_t)((intptr_t)arg + 1);
    void *ring[64] = {0};
    while (!__atomic_load_n(&stdio_stop, __ATOMIC_RELAXED)) {
        uint64_t r = rng_next(&seed);
        int j = (int)(r % 64);
        free(ring[j]);
        size_t n = (r >> 8) % 16 == 0 ? 1 + (size_t)((r >> 12) % (200 * KiB)) : 1 + (size_t)((r >> 12) % 2000);
        ring[j] = malloc(n);
        CHECK(ring[j] != NULL);
        memset(ring[j], 1, n < 64 ? n : 64);
    }
    for (int j = 0; j < 64; j++)
        free(ring[j]);
    check_flush();
    return NULL;
}

static void case_fork_stdio(void)
{
    const int forks = quick() ? 300 : 1000;
    snprintf(stdio_path, sizeof stdio_path, "/tmp/memalloc-compat-%d.txt", (int)getpid());
    FILE *f = fopen(stdio_path, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 200; i++)
        fprintf(f, "line %d of the file the stdio threads read\n", i);
    fclose(f);

    pthread_t t[8];
    for (intptr_t i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, stdio_thread, (void *)i) == 0);
    for (intptr_t i = 4; i < 8; i++)
        CHECK(pthread_create(&t[i], NULL, alloc_thread, (void *)i) == 0);
    /* On a loaded machine a fork with 8 busy threads can take 0.1 s: past 60 s
     * (and 100 forks) the case stops early rather than reaching the hang
     * timeout; a deadlock still shows as a fork that never returns. */
    double t0 = now();
    int done = 0;
    for (int i = 0; i < forks && (i < 100 || now() - t0 < 60); i++, done++) {
        pid_t c = fork();
        CHECK(c >= 0);
        if (c == 0) {
            /* the child uses stdio and malloc, then leaves */
            FILE *g = fopen(stdio_path, "r");
            char line[128];
            if (g == NULL || fgets(line, sizeof line, g) == NULL)
                _exit(3);
            fclose(g);
            char *p = malloc(100 + (size_t)i);
            char *q = malloc(300 * KiB);
            if (p == NULL || q == NULL)
                _exit(4);
            snprintf(p, 100, "%s", line);
            q[0] = p[0];
            free(q);
            free(p);
            FILE *w = fopen("/dev/null", "w");
            if (w == NULL)
                _exit(5);
            fprintf(w, "child %d\n", i);
            fclose(w);
            _exit(0);
        }
        int st;
        CHECK(waitpid(c, &st, 0) == c);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", i, st);
    }
    __atomic_store_n(&stdio_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 8; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    unlink(stdio_path);
    printf("fork_stdio: %d forks with 4 stdio and 4 allocating threads in %.1f s\n", done, now() - t0);
}

/* ---- 3. mallopt ------------------------------------------------------ */

/* What glibc 2.36's mallopt returns (malloc/malloc.c, __libc_mallopt and
 * its do_set_* helpers), as measured on Debian 12's glibc: 1 for every
 * parameter and value, except M_MXFAST above 160 bytes (the value is taken
 * as a size_t, so -1 is SIZE_MAX). A threshold of -1 is SIZE_MAX: never. */
struct mallopt_case {
    const char *name;
    int param, value, want;
};

static const struct mallopt_case mallopt_cases[] = {
    {"M_MXFAST 0", M_MXFAST, 0, 1},
    {"M_MXFAST 64", M_MXFAST, 64, 1},
    {"M_MXFAST 160", M_MXFAST, 160, 1},
    {"M_MXFAST 161", M_MXFAST, 161, 0},
    {"M_MXFAST -1", M_MXFAST, -1, 0},
    {"M_TRIM_THRESHOLD 0", M_TRIM_THRESHOLD, 0, 1},
    {"M_TRIM_THRESHOLD -1", M_TRIM_THRESHOLD, -1, 1},
    {"M_TRIM_THRESHOLD 128k", M_TRIM_THRESHOLD, 128 * 1024, 1},
    {"M_TOP_PAD 0", M_TOP_PAD, 0, 1},
    {"M_TOP_PAD -1", M_TOP_PAD, -1, 1},
    {"M_TOP_PAD 128k", M_TOP_PAD, 128 * 1024, 1},
    {"M_MMAP_THRESHOLD 0", M_MMAP_THRESHOLD, 0, 1},
    {"M_MMAP_THRESHOLD 32M", M_MMAP_THRESHOLD, 32 << 20, 1},
    {"M_MMAP_THRESHOLD 32M+1", M_MMAP_THRESHOLD, (32 << 20) + 1, 1},
    {"M_MMAP_THRESHOLD -1", M_MMAP_THRESHOLD, -1, 1},
    {"M_MMAP_THRESHOLD 128k", M_MMAP_THRESHOLD, 128 * 1024, 1},
    {"M_MMAP_MAX 0", M_MMAP_MAX, 0, 1},
    {"M_MMAP_MAX -1", M_MMAP_MAX, -1, 1},
    {"M_MMAP_MAX 65536", M_MMAP_MAX, 65536, 1},
    {"M_CHECK_ACTION 0", M_CHECK_ACTION, 0, 1},
    {"M_CHECK_ACTION 3", M_CHECK_ACTION, 3, 1},
    {"M_CHECK_ACTION -1", M_CHECK_ACTION, -1, 1},
    {"M_PERTURB 0", M_PERTURB, 0, 1},
    {"M_PERTURB -1", M_PERTURB, -1, 1},
    {"M_ARENA_TEST 0", M_ARENA_TEST, 0, 1},
    {"M_ARENA_TEST -1", M_ARENA_TEST, -1, 1},
    {"M_ARENA_TEST 8", M_ARENA_TEST, 8, 1},
    {"M_ARENA_MAX 0", M_ARENA_MAX, 0, 1},
    {"M_ARENA_MAX -1", M_ARENA_MAX, -1, 1},
    {"M_ARENA_MAX 4", M_ARENA_MAX, 4, 1},
    /* a parameter glibc does not know: its switch has no default case */
    {"unknown 12345", 12345, 1, 1},
    {"unknown -100", -100, 1, 1},
};

/* Whether p lies in the break's heap, between where it started and where
 * it is now, rather than in a mapping of its own. */
static int in_brk_heap(const void *p, uintptr_t start)
{
    uintptr_t a = (uintptr_t)p;
    return a >= start && a < (uintptr_t)sbrk(0);
}

static void case_mallopt(void)
{
    uintptr_t start = (uintptr_t)sbrk(0);
    for (size_t i = 0; i < sizeof mallopt_cases / sizeof mallopt_cases[0]; i++) {
        const struct mallopt_case *c = &mallopt_cases[i];
        int got = mallopt(c->param, c->value);
        CHECKF(got == c->want, "mallopt(%s) returned %d, glibc returns %d", c->name, got, c->want);
    }
    /* back to sane settings, as a program would have them */
    CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
    CHECK(mallopt(M_TOP_PAD, 0) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);

    /* M_TRIM_THRESHOLD -1: never trim. A freed tail of 8 MiB stays. */
    CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);
    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    char *big = malloc(8 * MiB);
    CHECK(big != NULL);
    /* M_MMAP_MAX 0: never a mapping of its own, whatever the size */
    CHECKF(in_brk_heap(big, start), "8 MiB block %p not in the break's heap with M_MMAP_MAX 0", (void *)big);
    memset(big, 7, 8 * MiB);
    uintptr_t top = (uintptr_t)sbrk(0);
    free(big);
    CHECKF((uintptr_t)sbrk(0) == top, "the break moved from %#lx to %#lx with M_TRIM_THRESHOLD -1",
           (unsigned long)top, (unsigned long)(uintptr_t)sbrk(0));
    void *aligned = NULL;
    CHECK(posix_memalign(&aligned, 2 * MiB, 3 * MiB) == 0);
    CHECKF(in_brk_heap(aligned, start), "2 MiB-aligned block %p not in the break's heap", aligned);
    CHECK(((uintptr_t)aligned & (2 * MiB - 1)) == 0);
    free(aligned);
    /* M_MMAP_THRESHOLD -1: no size is large enough for a mapping */
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, -1) == 1);
    big = malloc(16 * MiB);
    CHECK(big != NULL);
    CHECKF(in_brk_heap(big, start), "16 MiB block %p not in the break's heap with M_MMAP_THRESHOLD -1", (void *)big);
    free(big);
    CHECK(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
    /* trimming works again once the threshold is back */
    CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);
    malloc_trim(0);
    CHECKF((uintptr_t)sbrk(0) < top - 4 * MiB, "malloc_trim did not give back the freed 8 MiB");

    /* M_PERTURB: new blocks are filled with the byte's complement, calloc
     * still zeroes (glibc: alloc_perturb, perturb_byte ^ 0xff). Sizes no
     * earlier call of this process has used, so that no cache holds them. */
    CHECK(mallopt(M_PERTURB, 0xA5) == 1);
    static const size_t sizes[] = {24, 200, 1000, 3000, 5000, 20000, 100000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        size_t bad = (size_t)-1;
        for (size_t k = 0; k < n && bad == (size_t)-1; k++)
            if (p[k] != 0x5A)
                bad = k;
        CHECKF(bad == (size_t)-1, "malloc(%zu) under M_PERTURB 0xA5: byte %zu is %#x, not 0x5a", n, bad,
               bad == (size_t)-1 ? 0 : p[bad]);
        unsigned char *z = calloc(1, n);
        CHECK(z != NULL);
        for (size_t k = 0; k < n; k++)
            if (z[k] != 0) {
                CHECKF(0, "calloc(1, %zu) under M_PERTURB: byte %zu is %#x", n, k, z[k]);
                break;
            }
        free(z);
        free(p);
    }
    /* and freed heap blocks with the byte itself (glibc: free_perturb); the
     * first and last bytes may hold the free lists' links */
    unsigned char *p = malloc(5000), *q = malloc(5000);
    CHECK(p != NULL && q != NULL);
    free(p);
    for (size_t k = 64; k < 4900; k++)
        if (p[k] != 0xA5) {
            CHECKF(0, "a freed block of 5000 bytes under M_PERTURB 0xA5: byte %zu is %#x", k, p[k]);
            break;
        }
    free(q);
    CHECK(mallopt(M_PERTURB, 0) == 1);
    printf("mallopt: %zu parameter/value pairs, M_MMAP_MAX 0, M_TRIM_THRESHOLD -1, M_PERTURB\n",
           sizeof mallopt_cases / sizeof mallopt_cases[0]);
}

/* MALLOC_PERTURB_ in the environment does what M_PERTURB does. */
static void case_perturb_env(void)
{
    if (getenv("MALLOC_PERTURB_") == NULL) {
        CHECK(setenv("MALLOC_PERTURB_", "165", 1) == 0);
        execl("/proc/self/exe", "compat", "perturb_env", (char *)NULL);
        CHECKF(0, "exec: %s", strerror(errno));
    }
    for (size_t n = 40; n <= 40000; n *= 10) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        for (size_t k = 0; k < n; k++)
            if (p[k] != 0x5A) {
                CHECKF(0, "malloc(%zu) with MALLOC_PERTURB_=165: byte %zu is %#x", n, k, p[k]);
                break;
            }
        free(p);
    }
    printf("perturb_env: MALLOC_PERTURB_=165 fills new blocks with 0x5a\n");
}

/* ---- 4. aligned allocators out of memory ----------------------------- */

enum { MEMALIGN_THREADS = 4 };
static pthread_barrier_t memalign_barrier;

static void *memalign_thread(void *arg)
{
    intptr_t id = (intptr_t)arg;
    pthread_barrier_wait(&memalign_barrier);
    void *kept[64];
    int nkept = 0, fails = 0;
    for (int round = 0; round < 200; round++) {
        size_t align = (size_t)16 << ((round + id) % 10); /* 16 B .. 8 KiB */
        size_t n = (round % 3 == 0) ? (size_t)1 << 40 : (64 * MiB) + (size_t)round * 4096;
        void *p = NULL;
        const char *fn;
        errno = 0;
        int kind = (round + (int)id) % 5;
        if (kind == 0) {
            fn = "posix_memalign";
            int rc = posix_memalign(&p, align, n);
            CHECKF(rc == 0 || rc == ENOMEM, "posix_memalign returned %d", rc);
            if (rc == ENOMEM) {
                CHECKF(errno == ENOMEM, "posix_memalign returned ENOMEM with errno %d", errno);
                p = NULL;
            } else {
                CHECK(p != NULL);
            }
        } else if (kind == 1) {
            fn = "aligned_alloc";
            p = aligned_alloc(align, n);
        } else if (kind == 2) {
            fn = "memalign";
            p = memalign(align, n);
        } else if (kind == 3) {
            fn = "valloc";
            align = (size_t)sysconf(_SC_PAGESIZE);
            p = valloc(n);
        } else {
            fn = "pvalloc";
            align = (size_t)sysconf(_SC_PAGESIZE);
            p = pvalloc(n);
        }
        if (p == NULL) {
            CHECKF(errno == ENOMEM, "%s(%zu, %zu) failed with errno %d, not ENOMEM", fn, align, n, errno);
            fails++;
            if (nkept > 0)
                free(kept[--nkept]);
            continue;
        }
        CHECKF(((uintptr_t)p & (align - 1)) == 0, "%s: %p not aligned to %zu", fn, p, align);
        /* usable: the first and last page written */
        ((char *)p)[0] = 1;
        ((char *)p)[n - 1] = 2;
        if (nkept < 64)
            kept[nkept++] = p;
        else
            free(p);
    }
    while (nkept > 0)
        free(kept[--nkept]);
    CHECKF(fails > 0, "thread %d: no allocation failed under RLIMIT_AS", (int)id);
    check_flush();
    return NULL;
}

static void case_memalign_enomem(void)
{
    struct rlimit rl = {512 * MiB, 512 * MiB};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    CHECK(pthread_barrier_init(&memalign_barrier, NULL, MEMALIGN_THREADS) == 0);
    pthread_t t[MEMALIGN_THREADS];
    for (intptr_t i = 0; i < MEMALIGN_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, memalign_thread, (void *)i) == 0);
    for (int i = 0; i < MEMALIGN_THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    /* EINVAL leaves errno alone */
    void *p = NULL;
    errno = 1234;
    CHECK(posix_memalign(&p, 24, 100) == EINVAL);
    CHECKF(errno == 1234, "posix_memalign(EINVAL) changed errno to %d", errno);
    errno = 1234;
    CHECK(posix_memalign(&p, 64, 100) == 0);
    CHECKF(errno == 1234, "a successful posix_memalign changed errno to %d", errno);
    free(p);
    printf("memalign_enomem: %d threads under RLIMIT_AS 512 MiB\n", MEMALIGN_THREADS);
}

/* ---- 5. malloc_trim after many small blocks -------------------------- */

enum { TRIM_BLOCKS = 100000 };
static void *trim_blocks[TRIM_BLOCKS];

static void alloc_small_blocks(void)
{
    for (int i = 0; i < TRIM_BLOCKS; i++) {
        trim_blocks[i] = malloc(100);
        CHECK(trim_blocks[i] != NULL);
        memset(trim_blocks[i], 0x33, 100);
    }
}

static void free_small_blocks(void)
{
    for (int i = 0; i < TRIM_BLOCKS; i++)
        free(trim_blocks[i]);
}

static void *trim_thread(void *arg)
{
    (void)arg;
    alloc_small_blocks();
    free_small_blocks();
    check_flush();
    return NULL;
}

/* After malloc_trim(0) the break is back within `slack` of `start`. */
static void check_trimmed(uintptr_t start, const char *what)
{
    uintptr_t before = (uintptr_t)sbrk(0);
    malloc_trim(0);
    uintptr_t after = (uintptr_t)sbrk(0);
    long page = sysconf(_SC_PAGESIZE);
    CHECKF(after <= start + (uintptr_t)page,
           "%s: the break is %ld KiB above where it started after malloc_trim(0) (%ld KiB before)", what,
           (long)(after - start) / 1024, (long)(before - start) / 1024);
}

static void case_trim_small(void)
{
    /* settle what stdio and the test's own first calls need */
    free(malloc(100));
    printf("trim_small: starting\n");
    fflush(stdout);
    malloc_trim(0);
    uintptr_t start = (uintptr_t)sbrk(0);

    alloc_small_blocks();
    CHECKF((uintptr_t)sbrk(0) > start + 8 * MiB, "100,000 blocks of 100 bytes did not grow the break");
    free_small_blocks();
    check_trimmed(start, "after freeing in the same thread");

    /* the heap still works, and fills the same way again */
    alloc_small_blocks();
    for (int i = 0; i < TRIM_BLOCKS; i += 997)
        CHECK(((unsigned char *)trim_blocks[i])[99] == 0x33);
    free_small_blocks();
    check_trimmed(start, "after a second round");

    /* a thread that allocated and freed them, then exited */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, trim_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    check_trimmed(start, "after a thread that allocated them exited");

    /* and the program goes on */
    alloc_small_blocks();
    free_small_blocks();
    void *p = malloc(1000);
    CHECK(p != NULL);
    free(p);
    printf("trim_small: the break back within a page after malloc_trim(0), three times\n");
}

/* ---- driver ---------------------------------------------------------- */

struct test_case {
    const char *name;
    void (*run)(void);
    int timeout;
};

static const struct test_case cases[] = {
    {"fork_signal", case_fork_signal, 60},
    {"fork_stdio", case_fork_stdio, 120},
    {"mallopt", case_mallopt, 30},
    {"perturb_env", case_perturb_env, 30},
    {"memalign_enomem", case_memalign_enomem, 60},
    {"trim_small", case_trim_small, 60},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* Runs one case in a fresh process (this binary, re-executed), killing it
 * after its timeout: 0 if it passed. */
static int run_case(const char *self, const struct test_case *c)
{
    double t0 = now();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl(self, self, c->name, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        CHECK(w >= 0);
        if (w == pid)
            break;
        if (now() - t0 > c->timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "compat %s: HANG: not finished after %d s (killed)\n", c->name, c->timeout);
            return 1;
        }
        usleep(20000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "compat %s: failed (status %#x)\n", c->name, st);
        return 1;
    }
    printf("case %s passed in %.1f s\n", c->name, now() - t0);
    return 0;
}

int main(int argc, char **argv)
{
    check_begin();
    if (argc == 2) {
        for (size_t i = 0; i < NCASES; i++)
            if (strcmp(argv[1], cases[i].name) == 0) {
                cases[i].run();
                check_done(cases[i].name);
                return 0;
            }
        fprintf(stderr, "compat: no case %s\n", argv[1]);
        return 2;
    }
    int failed = 0;
    for (size_t i = 0; i < NCASES; i++) {
        fflush(stdout);
        failed += run_case("/proc/self/exe", &cases[i]);
    }
    CHECKF(failed == 0, "%d of %zu cases failed", failed, NCASES);
    check_done("compat");
    return 0;
}
