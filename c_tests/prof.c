/* c_tests/prof.c — the heap profiler's accuracy test (run by c_tests/prof.sh).
 *
 * usage: prof MODE SCALE     MODE: plain | threads | fork; SCALE: MiB per site
 *
 * Three call sites allocate known amounts with a spread of sizes (small
 * zone blocks, medium heap chunks, blocks mapped on their own):
 *   site_steady  SCALE MiB, live at the peak, freed before exit
 *   site_leak    SCALE MiB, never freed (the leak)
 *   site_peak    2 x SCALE MiB, all live at once (the peak), then freed
 * and a fourth, site_churn, allocates and frees SCALE MiB of small blocks
 * one at a time (in the totals, never live at the peak in any quantity).
 * It prints the truth, one line per site: `truth SITE allocated peak leak`
 * (bytes requested), which prof.sh compares with the profile.
 *
 * threads: four threads share the work of each site; the main thread frees
 * what they allocated (frees by another thread). fork: the parent allocates
 * site_parent (kept live) and forks; the child runs the three sites and
 * exits normally, writing a profile of its own, in which site_parent must
 * not appear; the parent prints `child PID`.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* noipa: at -O2 gcc would fold the identical site functions into one. */
#define NOINLINE __attribute__((noinline, noipa))

static size_t scale;
static const char *mode;

/* Deterministic sizes: a small LCG per caller. */
static size_t next_size(uint64_t *s, size_t lo, size_t hi)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (size_t)((*s >> 33) % (hi - lo + 1));
}

/* A block list, kept in memory from mmap-free arrays of the program's own:
 * the pointers live in a static array so that the list itself is not a
 * fourth site. */
#define MAXB (1 << 20)
struct list { void *p[MAXB]; size_t n; size_t bytes; };
static struct list steady, leak, peak, parent;

/* Each site returns through a named frame, so the profile names it. */
static NOINLINE void *site_steady(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_leak(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_peak(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_churn(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_parent(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void add(struct list *l, void *p, size_t n)
{
    if (!p) {
        fprintf(stderr, "prof: out of memory\n");
        exit(2);
    }
    memset(p, 1, n < 64 ? n : 64);
    pthread_mutex_lock(&mu);
    if (l->n == MAXB) {
        fprintf(stderr, "prof: too many blocks\n");
        exit(2);
    }
    l->p[l->n++] = p;
    l->bytes += n;
    pthread_mutex_unlock(&mu);
}

static size_t churned;

/* One share (1/parts) of every site's work. */
static void work(int part, int parts)
{
    uint64_t s = 12345 + (uint64_t)part * 7919;
    size_t target = (scale << 20) / parts, done;
    /* steady: small and medium */
    for (done = 0; done < target;) {
        size_t n = next_size(&s, 16, 3000);
        add(&steady, site_steady(n), n);
        done += n;
    }
    /* leak: small blocks */
    for (done = 0; done < target;) {
        size_t n = next_size(&s, 24, 1000);
        add(&leak, site_leak(n), n);
        done += n;
    }
    /* peak: medium chunks and some own mappings */
    for (done = 0; done < 2 * target;) {
        size_t n = (next_size(&s, 0, 9) == 0) ? next_size(&s, 200000, 400000)
                                               : next_size(&s, 5000, 60000);
        add(&peak, site_peak(n), n);
        done += n;
    }
    /* churn: one small block at a time */
    size_t c = 0;
    for (done = 0; done < target;) {
        size_t n = next_size(&s, 16, 512);
        void *p = site_churn(n);
        if (!p)
            exit(2);
        memset(p, 2, n < 32 ? n : 32);
        free(p);
        done += n;
        c += n;
    }
    pthread_mutex_lock(&mu);
    churned += c;
    pthread_mutex_unlock(&mu);
}

static void *thread_main(void *arg)
{
    work((int)(intptr_t)arg, 4);
    return NULL;
}

static void free_all(struct list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->p[i]);
}

static void run_sites(int threads)
{
    if (threads) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i) != 0)
                exit(2);
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
    } else {
        work(0, 1);
    }
    /* The peak is now: steady + leak + peak live. */
    size_t peak_bytes = peak.bytes;
    free_all(&peak);
    free_all(&steady);
    printf("truth site_steady %zu %zu 0\n", steady.bytes, steady.bytes);
    printf("truth site_leak %zu %zu %zu\n", leak.bytes, leak.bytes, leak.bytes);
    printf("truth site_peak %zu %zu 0\n", peak_bytes, peak_bytes);
    printf("truth site_churn %zu 0 0\n", churned);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: prof plain|threads|fork SCALE_MIB\n");
        return 64;
    }
    mode = argv[1];
    scale = strtoul(argv[2], NULL, 10);
    if (strcmp(mode, "plain") == 0) {
        run_sites(0);
    } else if (strcmp(mode, "threads") == 0) {
        run_sites(1);
    } else if (strcmp(mode, "fork") == 0) {
        uint64_t s = 99;
        for (size_t done = 0; done < (scale << 20);) {
            size_t n = next_size(&s, 100, 20000);
            add(&parent, site_parent(n), n);
            done += n;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return 2;
        if (pid == 0) {
            run_sites(0);
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        printf("child %d\n", (int)pid);
        printf("truth site_parent %zu %zu %zu\n", parent.bytes, parent.bytes, parent.bytes);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    } else {
        return 64;
    }
    return 0;
}
