/* c_tests/prof_xfree.c — samples freed by threads other than the one that
 * took them (run by c_tests/prof.sh, MEMALLOC_PROF=1).
 *
 * usage: prof_xfree PRODUCERS MIB
 *
 * PRODUCERS threads each allocate MIB MiB from each of three call sites
 * (sizes from 24 bytes to 60 KiB: small and medium blocks):
 *   site_pass    handed at once to one of two consumer threads, which free
 *                them while the producers go on sampling (another live
 *                thread's frees: the sample is in the producer's shard);
 *   site_orphan  kept by the producer, which then exits; the main thread
 *                frees them after (the sampling thread is gone);
 *   site_keep    kept, never freed (live at exit: the leak).
 * The consumers and the main thread sample too (site_own, freed by the
 * thread that made it), so that each has a shard of its own, where the
 * samples of the blocks it frees are not.
 * It prints `truth SITE allocated live_at_exit` per site. A sample whose
 * free is not found stays live (site_pass or site_orphan in the leak
 * report); one counted twice skews the totals.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, noipa))

static NOINLINE void *site_pass(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_orphan(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_keep(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_own(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }

#define QCAP 4096
static void *queue[QCAP];
static size_t qhead, qtail;
static int producing;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nonempty = PTHREAD_COND_INITIALIZER, nonfull = PTHREAD_COND_INITIALIZER;

static size_t mib;
#define MAXB (1 << 14)
/* Blocks of site_orphan and site_keep, per producer (static: the lists are
 * no call site of their own). */
static void *orphans[16][MAXB], *kept[16][MAXB];
static size_t norphans[16], nkept[16];
static size_t bytes_pass[16], bytes_orphan[16], bytes_keep[16];
static size_t bytes_own;

/* n bytes' worth of medium blocks from site_own, each freed at once. */
static void own(size_t n)
{
    size_t done = 0;
    while (done < n) {
        void *p = site_own(20000);
        if (!p)
            exit(2);
        memset(p, 4, 64);
        free(p);
        done += 20000;
    }
    pthread_mutex_lock(&mu);
    bytes_own += done;
    pthread_mutex_unlock(&mu);
}

static size_t next_size(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    size_t r = (size_t)(*s >> 33);
    return r % 3 == 0 ? 24 + r / 3 % 1000 : 5000 + r / 3 % 55000;
}

static void push(void *p)
{
    pthread_mutex_lock(&mu);
    while (qtail - qhead == QCAP)
        pthread_cond_wait(&nonfull, &mu);
    queue[qtail++ % QCAP] = p;
    pthread_cond_signal(&nonempty);
    pthread_mutex_unlock(&mu);
}

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (qtail == qhead && producing)
            pthread_cond_wait(&nonempty, &mu);
        if (qtail == qhead) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        void *p = queue[qhead++ % QCAP];
        pthread_cond_signal(&nonfull);
        pthread_mutex_unlock(&mu);
        free(p);
        own(20000);
    }
}

static void *producer(void *arg)
{
    int k = (int)(intptr_t)arg;
    uint64_t s = 777 + (uint64_t)k * 104729;
    size_t target = mib << 20;
    /* Interleaved, so that passes, orphans and kept blocks share the
     * producer's shard all along. */
    while (bytes_pass[k] < target || bytes_orphan[k] < target || bytes_keep[k] < target) {
        size_t n = next_size(&s);
        void *p;
        if (bytes_pass[k] < target) {
            if (!(p = site_pass(n)))
                exit(2);
            memset(p, 1, n < 64 ? n : 64);
            bytes_pass[k] += n;
            push(p);
        }
        n = next_size(&s);
        if (bytes_orphan[k] < target && norphans[k] < MAXB) {
            if (!(p = site_orphan(n)))
                exit(2);
            memset(p, 2, n < 64 ? n : 64);
            orphans[k][norphans[k]++] = p;
            bytes_orphan[k] += n;
        }
        n = next_size(&s);
        if (bytes_keep[k] < target && nkept[k] < MAXB) {
            if (!(p = site_keep(n)))
                exit(2);
            memset(p, 3, n < 64 ? n : 64);
            kept[k][nkept[k]++] = p;
            bytes_keep[k] += n;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: prof_xfree PRODUCERS MIB\n");
        return 64;
    }
    int np = atoi(argv[1]);
    mib = strtoul(argv[2], NULL, 10);
    if (np < 1 || np > 16 || mib == 0)
        return 64;
    pthread_t prod[16], cons[2];
    producing = 1;
    own(1 << 20);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&cons[i], NULL, consumer, NULL) != 0)
            return 2;
    for (int i = 0; i < np; i++)
        if (pthread_create(&prod[i], NULL, producer, (void *)(intptr_t)i) != 0)
            return 2;
    for (int i = 0; i < np; i++)
        pthread_join(prod[i], NULL);
    pthread_mutex_lock(&mu);
    producing = 0;
    pthread_cond_broadcast(&nonempty);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 2; i++)
        pthread_join(cons[i], NULL);
    /* Every producer has exited: their orphans are freed here. */
    size_t pass = 0, orphan = 0, keep = 0;
    for (int k = 0; k < np; k++) {
        for (size_t i = 0; i < norphans[k]; i++)
            free(orphans[k][i]);
        pass += bytes_pass[k];
        orphan += bytes_orphan[k];
        keep += bytes_keep[k];
    }
    printf("truth site_pass %zu 0\n", pass);
    printf("truth site_orphan %zu 0\n", orphan);
    printf("truth site_keep %zu %zu\n", keep, keep);
    printf("truth site_own %zu 0\n", bytes_own);
    return 0;
}
