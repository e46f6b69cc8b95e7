/*
 * fork.c - fork while other threads allocate.
 *
 * 8 threads keep allocating, checking and freeing, and one more frees blocks
 * into zones abandoned by exited threads; the main thread forks 200 times.
 * Each child allocates small, medium and large blocks, reallocs, callocs,
 * frees a block the parent allocated before the fork and the abandoned
 * blocks not yet freed, sometimes starts a thread that allocates, checks its
 * patterns and the heap (memalloc_check, looked up at run time), and
 * _exit(0)s.  A child that does not finish within 30 s is a deadlock (an
 * allocator lock held across fork): the test kills it and fails.
 *
 *   fork [forks]      default: 200
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
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

enum { NTHREADS = 8, RING = 64, CHILD_TIMEOUT = 30 };

static int stop;
static size_t (*check_heap)(void);
static volatile pid_t current_child;
static volatile int current_fork;

static size_t random_size(uint64_t r)
{
    if (r % 256 == 0)
        return 128 * KiB + (size_t)((r >> 8) % (256 * KiB));
    return 1 + (size_t)((r >> 8) % 3000);
}

static void *background(void *arg)
{
    uint64_t seed = 0xD1B54A32D192ED03ULL * (uint64_t)((intptr_t)arg + 1);
    struct { void *p; size_t n; } ring[RING];
    memset(ring, 0, sizeof ring);
    unsigned long ops = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        /* bursts with short pauses: 8 busy threads on 2 cores would starve
         * the forking thread and its children; bursts still keep allocator
         * locks taken at random moments of every fork */
        if (ops % 32 == 31)
            usleep(200);
        uint64_t r = rng_next(&seed);
        int j = (int)(r % RING);
        if (ring[j].p != NULL) {
            CHECK_PATTERN(ring[j].p, ring[j].n);
            if ((r >> 32) % 4 == 0) {
                size_t n = random_size(rng_next(&seed));
                uintptr_t old = (uintptr_t)ring[j].p;
                void *q = realloc(ring[j].p, n);
                CHECK(q != NULL);
                size_t keep = ring[j].n < n ? ring[j].n : n;
                CHECK(pattern_find_bad(q, old, ring[j].n, keep) == (size_t)-1);
                pattern_fill(q, n);
                ring[j].p = q;
                ring[j].n = n;
                ops++;
                continue;
            }
            free(ring[j].p);
        }
        size_t n = random_size(rng_next(&seed));
        ring[j].p = malloc(n);
        CHECK(ring[j].p != NULL);
        pattern_fill(ring[j].p, n);
        ring[j].n = n;
        ops++;
    }
    for (int j = 0; j < RING; j++) {
        if (ring[j].p != NULL) {
            CHECK_PATTERN(ring[j].p, ring[j].n);
            free(ring[j].p);
        }
    }
    check_flush();
    return (void *)(uintptr_t)ops;
}

/* ---- frees into abandoned zones around the forks ---------------------------
 * A short-lived thread allocates HAND small blocks and exits: its zones are
 * abandoned with the blocks live. The handoff thread then frees them one by
 * one, each free taking the abandoned zone's own lock, while the main thread
 * forks. A child frees the blocks not yet freed: were a zone lock held by
 * the handoff thread at the fork still held in the child, it would hang. */
enum { HAND = 512, HAND_SIZE = 48 };
static void *hand[HAND];
static int hand_next = HAND; /* blocks below it are freed (or being freed) */
static pthread_mutex_t hand_mu = PTHREAD_MUTEX_INITIALIZER;

static void *hand_alloc(void *arg)
{
    (void)arg;
    for (int i = 0; i < HAND; i++) {
        hand[i] = malloc(HAND_SIZE);
        CHECK(hand[i] != NULL);
        pattern_fill(hand[i], HAND_SIZE);
    }
    return NULL;
}

static void *handoff(void *arg)
{
    (void)arg;
    unsigned long rounds = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, hand_alloc, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        __atomic_store_n(&hand_next, 0, __ATOMIC_RELEASE);
        for (;;) {
            /* the mutex is taken around each free (not the fork: the child
             * never takes it), so a child sees hand_next exact */
            pthread_mutex_lock(&hand_mu);
            int i = hand_next;
            if (i == HAND) {
                pthread_mutex_unlock(&hand_mu);
                break;
            }
            CHECK_PATTERN(hand[i], HAND_SIZE);
            free(hand[i]);
            hand_next = i + 1;
            pthread_mutex_unlock(&hand_mu);
            if (i % 64 == 63)
                usleep(100);
        }
        rounds++;
    }
    check_flush();
    return (void *)(uintptr_t)rounds;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        size_t n = 1 + (size_t)i * 37;
        void *p = malloc(n);
        CHECK(p != NULL);
        pattern_fill(p, n);
        CHECK_PATTERN(p, n);
        free(p);
    }
    return NULL;
}

/* What a child does; never returns. */
static void child(int k, void *inherited, size_t inherited_n)
{
    check_in_child = 1;
    uint64_t seed = 0x5851F42D4C957F2DULL * (uint64_t)(k + 1);

    /* a block from before the fork is intact and freeable here */
    CHECK_PATTERN(inherited, inherited_n);
    free(inherited);

    /* the handoff blocks not yet freed: into abandoned zones (a free the
     * parent's handoff thread was making at the fork may be half done: the
     * block at hand_next is skipped) */
    for (int i = hand_next + 1; i < HAND; i++) {
        CHECK_PATTERN(hand[i], HAND_SIZE);
        free(hand[i]);
    }
    malloc_trim(0); /* frees of other threads' blocks are batched: push them now */

    enum { NB = 40 };
    void *p[NB];
    size_t n[NB];
    for (int i = 0; i < NB; i++) {
        n[i] = random_size(rng_next(&seed));
        p[i] = malloc(n[i]);
        CHECK(p[i] != NULL);
        pattern_fill(p[i], n[i]);
    }
    /* a large block, mapped on its own */
    size_t big = 4 * MiB + (size_t)k;
    unsigned char *b = malloc(big);
    CHECK(b != NULL);
    pattern_fill(b, big);

    unsigned char *z = calloc(1, 300 * KiB);
    CHECK(z != NULL);
    for (size_t i = 0; i < 300 * KiB; i += 4096)
        CHECK(z[i] == 0);
    void *a = NULL;
    CHECK(posix_memalign(&a, 4096, 10000) == 0);
    CHECK(((uintptr_t)a & 4095) == 0);
    memset(a, 0x3c, 10000);

    for (int i = 0; i < NB; i += 2) {
        uintptr_t old = (uintptr_t)p[i];
        size_t m = n[i] * 3 + 1;
        void *q = realloc(p[i], m);
        CHECK(q != NULL);
        CHECK(pattern_find_bad(q, old, n[i], n[i]) == (size_t)-1);
        p[i] = q;
        n[i] = m;
        pattern_fill(q, m);
    }
    if (k % 10 == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    CHECK_PATTERN(b, big);
    for (int i = 0; i < NB; i++) {
        CHECK_PATTERN(p[i], n[i]);
        free(p[i]);
    }
    free(b);
    free(z);
    free(a);
    if (check_heap != NULL)
        CHECK(check_heap() == 0);
    _exit(check_failures != 0 ? 1 : 0);
}

static void on_alarm(int sig)
{
    (void)sig;
    char buf[160];
    int len = snprintf(buf, sizeof buf,
                       "fork.c: fork %d: child %d did not finish within %d s (deadlock?)\n",
                       current_fork, (int)current_child, CHILD_TIMEOUT);
    ssize_t w = write(2, buf, (size_t)len);
    (void)w;
    if (current_child > 0)
        kill(current_child, SIGKILL);
    _exit(1);
}

int main(int argc, char **argv)
{
    check_begin();
    int forks = argc > 1 ? atoi(argv[1]) : 200;
    CHECK(forks > 0);
    check_heap = (size_t (*)(void))memalloc_sym("memalloc_check");
    printf("fork: %d forks with %d threads allocating\n", forks, NTHREADS);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);

    pthread_t tid[NTHREADS], hand_tid;
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&tid[i], NULL, background, (void *)(intptr_t)i) == 0);
    CHECK(pthread_create(&hand_tid, NULL, handoff, NULL) == 0);

    uint64_t seed = 42;
    for (int k = 0; k < forks; k++) {
        size_t in = random_size(rng_next(&seed));
        void *inherited = malloc(in);
        CHECK(inherited != NULL);
        pattern_fill(inherited, in);

        current_fork = k;
        alarm(CHILD_TIMEOUT);  /* covers fork() itself and the child */
        pid_t pid = fork();
        CHECKF(pid >= 0, "fork: errno %d", errno);
        if (pid == 0)
            child(k, inherited, in);
        current_child = pid;
        int status = 0;
        pid_t w;
        do
            w = waitpid(pid, &status, 0);
        while (w < 0 && errno == EINTR);
        alarm(0);
        current_child = 0;
        CHECKF(w == pid, "waitpid: errno %d", errno);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "fork %d: child %s %d", k, WIFEXITED(status) ? "exited with" : "killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        /* the parent's copy is untouched by the child's free */
        CHECK_PATTERN(inherited, in);
        free(inherited);
    }

    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    unsigned long ops = 0;
    for (int i = 0; i < NTHREADS; i++) {
        void *r = NULL;
        CHECK(pthread_join(tid[i], &r) == 0);
        ops += (unsigned long)(uintptr_t)r;
    }
    void *hr = NULL;
    CHECK(pthread_join(hand_tid, &hr) == 0);
    printf("%d children exited 0; background threads made %lu operations; %lu handoff rounds\n",
           forks, ops, (unsigned long)(uintptr_t)hr);
    if (check_heap != NULL)
        CHECK(check_heap() == 0);
    check_done("fork");
    return 0;
}
