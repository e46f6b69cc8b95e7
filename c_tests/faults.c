/*
 * faults.c - out of memory, thread churn and re-entry: the allocator must
 * survive each fault and stay consistent.  One program, one mode per run
 * (c_tests/faults.sh runs each, linked and preloaded):
 *
 *   faults inject [seed]     run under MEMALLOC_FAIL_AFTER=N (and optionally
 *                            MEMALLOC_FAIL_COUNT=K): allocates a mix (small,
 *                            medium 5-100 KiB, large 1-8 MiB, calloc, realloc
 *                            growth, posix_memalign) until at least 5 calls
 *                            failed; every failure must be NULL + ENOMEM
 *                            (posix_memalign: returns ENOMEM with errno ENOMEM,
 *                            as glibc; errno untouched on success;
 *                            realloc: the old block intact; if the mix ends
 *                            without a failure, large blocks are held until
 *                            one fails), every successful
 *                            block keeps its pattern, memalloc_check() == 0
 *                            after each failure; everything is freed; with
 *                            FAIL_COUNT=K, allocation must work again after at
 *                            most K more failed calls.
 *   faults inject-threads [seed [n]]   the same operations on n (default 8)
 *                            threads at once (a failure in one thread's
 *                            zone refill while others allocate); the heap is
 *                            checked after they finish.
 *   faults rlimit-as         lowers RLIMIT_AS (RLIMIT_DATA) to current usage +
 *   faults rlimit-data       64 MiB, allocates large blocks until one fails
 *                            (NULL + ENOMEM), frees half of them, small
 *                            blocks until one fails, frees a quarter, medium
 *                            blocks until one fails; checks calloc, realloc
 *                            and posix_memalign fail cleanly, checks the
 *                            heap, frees half, checks that allocations
 *                            succeed again, raises the limit back and
 *                            allocates 256 MiB.
 *   faults quarantine        under MEMALLOC_DEBUG=1 and MEMALLOC_FAIL_AFTER:
 *                            frees a block and mallocs its size again; says
 *                            "reused" if it got the block back (the debug
 *                            quarantine could not be mapped).
 *   faults threads [n]       n (default 10000) threads in waves of 50; each
 *                            fills its cache (a few hundred blocks over every
 *                            small size class, some medium and large), frees
 *                            most, swaps some with other running threads
 *                            (cross-thread frees), leaves some to the next
 *                            wave, exits.  RSS (/proc/self/statm) and
 *                            memalloc_get_stats are printed after 1000, 5000
 *                            and 10000 threads and must stay bounded: after
 *                            the last wave, compared with after the 1000th
 *                            thread: RSS within +32 MiB, in_use and the heap
 *                            bytes in used chunks within +16 MiB, the heap
 *                            within +64 MiB; everything freed at the end
 *                            brings in_use back to within 1 MiB of the start
 *                            and the used heap bytes within 8 MiB.
 *   faults reentry LIB.so    allocation from places that run outside main's
 *                            control: a constructor of this program that
 *                            allocates and starts a thread that allocates
 *                            (before main), dlopen of LIB.so (built from
 *                            c_tests/reentry_lib.c: its constructor allocates
 *                            and runs a thread, its functions allocate), and
 *                            getaddrinfo("localhost") from 4 threads at once.
 *                            Built with -DREENTRY_NEEDED and linked with
 *                            libreentry_needed.so (the same library): its
 *                            constructor also allocates at load time.
 *
 * Fork while threads allocate is c_tests/fork.c (the runner gives it 1000).
 * memalloc's extensions are looked up at run time (memalloc_sym), so the
 * program also runs under other allocators, where those checks are skipped.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memalloc.h"
#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static size_t (*check_heap)(void);
static void (*get_stats)(struct memalloc_stats *);

static void heap_ok(const char *when)
{
    if (check_heap != NULL) {
        size_t broken = check_heap();
        CHECKF(broken == 0, "memalloc_check() = %zu %s", broken, when);
    }
}

/* ---- sparse patterns ------------------------------------------------------
 * Large blocks are not filled whole (that would dominate the run time): the
 * pattern covers the first and last 4 KiB and 64 bytes of every 64 KiB.
 * Blocks up to 8 KiB are covered whole.  Byte i of the pattern of key k is
 * pattern_byte(k, 0, i); the key is the block's address when it was filled. */

static inline int sparse_at(size_t i, size_t n)
{
    return i < 4096 || i + 4096 >= n || (i & 0xffff) < 64;
}

/* Runs body for every covered index i < n (skipping the gaps). */
#define FOR_SPARSE(n, i, body)                                               \
    do {                                                                     \
        size_t n_ = (n);                                                     \
        for (size_t i = 0; i < n_;) {                                        \
            if (sparse_at(i, n_)) {                                          \
                body;                                                        \
                i++;                                                         \
            } else {                                                         \
                size_t next_ = (i | 0xffff) + 1;                             \
                if (next_ + 4096 > n_)                                       \
                    next_ = n_ - 4096;                                       \
                i = next_ > i ? next_ : i + 1;                               \
            }                                                                \
        }                                                                    \
    } while (0)

static void sparse_fill(void *p, size_t n, uintptr_t key)
{
    unsigned char *b = p;
    FOR_SPARSE(n, i, b[i] = pattern_byte(key, 0, i));
}

/* Index of the first covered byte of p[0..n) that is not the pattern of key,
 * or (size_t)-1. */
static size_t sparse_bad(const void *p, size_t n, size_t cover_n, uintptr_t key)
{
    const unsigned char *b = p;
    size_t bad = (size_t)-1;
    /* the covered set depends on the size the block was filled with */
    FOR_SPARSE(cover_n, i, if (i < n && bad == (size_t)-1 && b[i] != pattern_byte(key, 0, i)) bad = i);
    return bad;
}

static size_t sparse_nonzero(const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t bad = (size_t)-1;
    FOR_SPARSE(n, i, if (bad == (size_t)-1 && b[i] != 0) bad = i);
    return bad;
}

struct blk {
    void *p;
    size_t n;
    uintptr_t key;
};

static void blk_fill(struct blk *b)
{
    b->key = (uintptr_t)b->p;
    sparse_fill(b->p, b->n, b->key);
}

static void blk_check(const struct blk *b)
{
    size_t bad = sparse_bad(b->p, b->n, b->n, b->key);
    CHECKF(bad == (size_t)-1, "block %p of %zu bytes corrupt at offset %zu", b->p, b->n, bad);
}

static void blk_free(struct blk *b)
{
    if (b->p == NULL)
        return;
    blk_check(b);
    free(b->p);
    b->p = NULL;
}

static size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? (size_t)strtoull(v, NULL, 0) : dflt;
}

/* ---- (a) fault injection ------------------------------------------------- */

enum { LIVE = 64, MIN_FAILURES = 5, MIN_OPS = 300, MAX_OPS = 5000 };

static size_t small_size(uint64_t r) { return 1 + (size_t)(r % 4096); }
static size_t medium_size(uint64_t r) { return 5 * KiB + (size_t)(r % (95 * KiB)); }
static size_t large_size(uint64_t r) { return 1 * MiB + (size_t)(r % (7 * MiB)); }

static size_t any_size(uint64_t r)
{
    switch (r % 3) {
    case 0: return small_size(r >> 2);
    case 1: return medium_size(r >> 2);
    default: return large_size(r >> 2);
    }
}

struct inject_counts {
    unsigned long ops, ok, failed;
    unsigned long failed_by[6];
};

static const char *const kind_name[6] = {"malloc", "calloc", "realloc", "posix_memalign",
                                         "aligned_alloc", "recovery"};

/* One failed call: what must hold after it. */
static int inject_threaded; /* other threads allocate: no heap walk per failure */

static void after_failure(struct inject_counts *c, int kind, struct blk *live)
{
    c->failed++;
    c->failed_by[kind]++;
    if (!inject_threaded)
        heap_ok("after an allocation failed");
    /* the failure must not have touched a block */
    if (c->failed % 4 == 1)
        for (int i = 0; i < LIVE; i++)
            if (live[i].p != NULL)
                blk_check(&live[i]);
}

/* The operations of `faults inject` on one thread: until at least MIN_OPS
 * operations and MIN_FAILURES failed calls (at most max_ops operations). */
static void inject_ops(uint64_t seed, struct blk *live, struct inject_counts *c,
                       unsigned long min_ops, unsigned long max_ops)
{
    while (c->ops < max_ops && (c->ops < min_ops || c->failed < MIN_FAILURES)) {
        c->ops++;
        uint64_t r = rng_next(&seed);
        int slot = (int)((r >> 40) % LIVE);
        struct blk *b = &live[slot];
        int op = (int)(r % 10);
        if (b->p != NULL && op != 7) {
            blk_free(b);
            if (op == 9)
                continue;
        }
        size_t n;
        void *p;
        switch (op) {
        case 0: case 1: case 2: case 3: case 4: case 5: case 9:
            n = op <= 3 ? small_size(r >> 8) : op == 4 ? medium_size(r >> 8)
                : op == 5 ? large_size(r >> 8) : any_size(r >> 8);
            errno = 0;
            p = malloc(n);
            if (p == NULL) {
                CHECKF(errno == ENOMEM, "malloc(%zu) = NULL with errno %d", n, errno);
                after_failure(c, 0, live);
                continue;
            }
            break;
        case 6:
            n = any_size(r >> 8);
            errno = 0;
            p = calloc(1, n);
            if (p == NULL) {
                CHECKF(errno == ENOMEM, "calloc(1, %zu) = NULL with errno %d", n, errno);
                after_failure(c, 1, live);
                continue;
            }
            {
                size_t bad = sparse_nonzero(p, n);
                CHECKF(bad == (size_t)-1, "calloc(1, %zu) = %p not zero at %zu", n, p, bad);
            }
            break;
        case 7:
            if (b->p == NULL) {
                /* realloc(NULL, n) is malloc */
                n = any_size(r >> 8);
                errno = 0;
                p = realloc(NULL, n);
                if (p == NULL) {
                    CHECKF(errno == ENOMEM, "realloc(NULL, %zu): errno %d", n, errno);
                    after_failure(c, 2, live);
                    continue;
                }
                break;
            }
            /* growth: x1.5 to x3, to at most 16 MiB */
            n = b->n + b->n / 2 + (size_t)((r >> 8) % (b->n + b->n / 2 + 1));
            if (n > 16 * MiB)
                n = 16 * MiB;
            if (n <= b->n)
                n = b->n + 1;
            errno = 0;
            p = realloc(b->p, n);
            if (p == NULL) {
                CHECKF(errno == ENOMEM, "realloc(%p, %zu) = NULL with errno %d", b->p, n, errno);
                blk_check(b);  /* the old block is intact */
                after_failure(c, 2, live);
                continue;
            }
            {
                size_t bad = sparse_bad(p, b->n, b->n, b->key);
                CHECKF(bad == (size_t)-1, "realloc(%p, %zu -> %zu) = %p lost data at %zu", b->p,
                       b->n, n, p, bad);
            }
            break;
        default: { /* 8: posix_memalign and aligned_alloc */
            size_t align = (size_t)64 << ((r >> 8) % 11); /* 64 .. 64 KiB */
            n = any_size(r >> 16);
            if ((r >> 60) % 2 == 0) {
                errno = EDOM; /* a sentinel: untouched on success, ENOMEM on failure */
                p = NULL;
                int e = posix_memalign(&p, align, n);
                if (e != 0) {
                    CHECKF(e == ENOMEM, "posix_memalign(%zu, %zu) = %d", align, n, e);
                    CHECKF(errno == ENOMEM, "posix_memalign failed with errno %d, not ENOMEM", errno);
                    after_failure(c, 3, live);
                    continue;
                }
                CHECK(errno == EDOM);
            } else {
                n = (n + align - 1) / align * align;
                errno = 0;
                p = aligned_alloc(align, n);
                if (p == NULL) {
                    CHECKF(errno == ENOMEM, "aligned_alloc(%zu, %zu): errno %d", align, n, errno);
                    after_failure(c, 4, live);
                    continue;
                }
            }
            CHECKF(((uintptr_t)p & (align - 1)) == 0, "%p not aligned to %zu", p, align);
            break;
        }
        }
        c->ok++;
        b->p = p;
        b->n = n;
        blk_fill(b);
    }
}

struct inject_job {
    uint64_t seed;
    struct inject_counts c;
};

static void *inject_thread(void *arg)
{
    struct inject_job *j = arg;
    struct blk live[LIVE];
    memset(live, 0, sizeof live);
    inject_ops(j->seed, live, &j->c, MIN_OPS, MAX_OPS / 2);
    for (int i = 0; i < LIVE; i++)
        blk_free(&live[i]);
    check_flush();
    return NULL;
}

/* `faults inject` with nthreads = 0; `faults inject-threads` runs the
 * operations on nthreads threads at once instead (the heap is walked after
 * they finish, not after every failure). */
static int fault_inject(uint64_t seed, int nthreads)
{
    size_t fail_after = env_size("MEMALLOC_FAIL_AFTER", (size_t)-1);
    size_t fail_count = env_size("MEMALLOC_FAIL_COUNT", (size_t)-1);
    struct inject_counts c;
    memset(&c, 0, sizeof c);
    seed ^= 0x9E3779B97F4A7C15ULL * (fail_after + 1) + fail_count;

    if (nthreads == 0) {
        struct blk live[LIVE];
        memset(live, 0, sizeof live);
        inject_ops(seed, live, &c, MIN_OPS, MAX_OPS);
        heap_ok("after the failures");
        for (int i = 0; i < LIVE; i++)
            blk_free(&live[i]);
    } else {
        enum { MAXT = 64 };
        static struct inject_job jobs[MAXT];
        pthread_t tid[MAXT];
        CHECK(nthreads <= MAXT);
        inject_threaded = 1;
        int started[MAXT], inline_runs = 0;
        for (int i = 0; i < nthreads; i++) {
            jobs[i].seed = seed * (uint64_t)(i + 1) + (uint64_t)i;
            /* glibc's pthread_create allocates (the thread's TLS vector) and
             * fails with EAGAIN when malloc does: then the job runs here */
            int e = pthread_create(&tid[i], NULL, inject_thread, &jobs[i]);
            CHECKF(e == 0 || e == EAGAIN, "pthread_create: %d", e);
            started[i] = e == 0;
        }
        for (int i = 0; i < nthreads; i++) {
            if (!started[i]) {
                inject_thread(&jobs[i]);
                inline_runs++;
            }
        }
        if (inline_runs > 0)
            printf("inject-threads: pthread_create failed (EAGAIN) %d times: those jobs ran "
                   "on the main thread\n", inline_runs);
        for (int i = 0; i < nthreads; i++) {
            if (started[i])
                CHECK(pthread_join(tid[i], NULL) == 0);
            c.ops += jobs[i].c.ops;
            c.ok += jobs[i].c.ok;
            c.failed += jobs[i].c.failed;
            for (int k = 0; k < 6; k++)
                c.failed_by[k] += jobs[i].c.failed_by[k];
        }
    }
    heap_ok("with every block freed");

    /* Few system calls so far (the heap reuses what was freed, and the
     * dynamic mmap threshold serves large blocks from it too)?  Then hold
     * large blocks until the heap must grow past the injected failure. */
    if (fail_after != (size_t)-1 && c.failed == 0) {
        enum { HOLD = 512 };
        static struct blk hold[HOLD];
        int held = 0;
        while (held < HOLD) {
            struct blk *b = &hold[held];
            b->n = large_size(rng_next(&seed));
            errno = 0;
            b->p = malloc(b->n);
            if (b->p == NULL) {
                CHECKF(errno == ENOMEM, "malloc(%zu) = NULL with errno %d", b->n, errno);
                c.failed++;
                c.failed_by[0]++;
                heap_ok("after an allocation failed");
                break;
            }
            blk_fill(b);
            held++;
            c.ops++;
            c.ok++;
        }
        for (int i = 0; i < held; i++)
            blk_free(&hold[i]);
        heap_ok("with every held block freed");
    }

    /* (with FAIL_COUNT=K, the K failures may all have been used up before
     * main, or by one malloc trying the break, then a mapping) */
    if (fail_after != (size_t)-1 && fail_count == (size_t)-1)
        CHECKF(c.failed > 0, "no allocation failed with MEMALLOC_FAIL_AFTER=%zu in %lu ops",
               fail_after, c.ops);

    /* Memory is back after FAIL_COUNT failed system calls: every kind of
     * request succeeds again, after at most that many failed attempts in
     * all (each failed call used up at least one injected failure). */
    unsigned long recovery_failures = 0;
    if (fail_count != (size_t)-1) {
        static const size_t sizes[] = {24, 3000, 40 * KiB, 100 * KiB, 3 * MiB, 8 * MiB};
        struct blk got[16];
        int k = 0;
        for (int i = 0; i < 6; i++) {
            for (int kind = 0; kind < 2; kind++) {
                void *p = NULL;
                for (;;) {
                    errno = 0;
                    p = kind == 0 ? malloc(sizes[i]) : calloc(sizes[i], 1);
                    if (p != NULL)
                        break;
                    CHECK(errno == ENOMEM);
                    recovery_failures++;
                    CHECKF(recovery_failures <= fail_count,
                           "%lu allocations failed after the %zu injected failures", recovery_failures,
                           fail_count);
                }
                got[k].p = p;
                got[k].n = sizes[i];
                blk_fill(&got[k]);
                k++;
            }
        }
        /* realloc growth from small to large, and an aligned block */
        for (;;) {
            errno = 0;
            void *q = realloc(got[0].p, 6 * MiB);
            if (q != NULL) {
                CHECK(sparse_bad(q, got[0].n, got[0].n, got[0].key) == (size_t)-1);
                got[0].p = q;
                got[0].n = 6 * MiB;
                blk_fill(&got[0]);
                break;
            }
            CHECK(errno == ENOMEM);
            blk_check(&got[0]);
            recovery_failures++;
            CHECK(recovery_failures <= fail_count);
        }
        for (;;) {
            void *p = NULL;
            int e = posix_memalign(&p, 4096, 200 * KiB);
            if (e == 0) {
                got[k].p = p;
                got[k].n = 200 * KiB;
                blk_fill(&got[k]);
                k++;
                break;
            }
            CHECK(e == ENOMEM);
            recovery_failures++;
            CHECK(recovery_failures <= fail_count);
        }
        heap_ok("after recovery");
        for (int i = 0; i < k; i++)
            blk_free(&got[i]);
        heap_ok("after recovery, every block freed");
    }

    printf("inject%s: FAIL_AFTER=%s FAIL_COUNT=%s: %lu ops, %lu ok, %lu failed (",
           nthreads ? "-threads" : "",
           getenv("MEMALLOC_FAIL_AFTER") ? getenv("MEMALLOC_FAIL_AFTER") : "-",
           getenv("MEMALLOC_FAIL_COUNT") ? getenv("MEMALLOC_FAIL_COUNT") : "-", c.ops, c.ok,
           c.failed);
    for (int i = 0, first = 1; i < 5; i++) {
        if (c.failed_by[i] != 0) {
            printf("%s%s %lu", first ? "" : ", ", kind_name[i], c.failed_by[i]);
            first = 0;
        }
    }
    printf(")");
    if (fail_count != (size_t)-1)
        printf("; recovered after %lu more failed calls", recovery_failures);
    printf("\n");
    check_done(nthreads ? "faults inject-threads" : "faults inject");
    return 0;
}

/* ---- (b) RLIMIT_AS / RLIMIT_DATA ----------------------------------------- */

/* A field of /proc/self/status in bytes ("VmSize", "VmData"); read without
 * stdio so that it works under a low limit. */
static size_t proc_status_kb(const char *field)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECK(n > 0);
    buf[n] = '\0';
    size_t len = strlen(field);
    for (char *s = buf; s != NULL && *s != '\0'; s = strchr(s, '\n'), s = s ? s + 1 : s)
        if (strncmp(s, field, len) == 0 && s[len] == ':')
            return (size_t)strtoull(s + len + 1, NULL, 10) * KiB;
    CHECKF(0, "no %s in /proc/self/status", field);
    return 0;
}

struct blist {
    struct blk *b;
    size_t n, cap;
};

/* Allocates blocks of size(r) until one fails (or the list is full);
 * returns how many were allocated. */
static size_t fill_until_enomem(struct blist *l, size_t (*size)(uint64_t), uint64_t *seed,
                                const char *what)
{
    size_t got = 0;
    while (l->n < l->cap) {
        size_t n = size(rng_next(seed));
        errno = 0;
        void *p = malloc(n);
        if (p == NULL) {
            CHECKF(errno == ENOMEM, "%s malloc(%zu) = NULL with errno %d", what, n, errno);
            return got;
        }
        l->b[l->n].p = p;
        l->b[l->n].n = n;
        blk_fill(&l->b[l->n]);
        l->n++;
        got++;
    }
    CHECKF(0, "%s: %zu blocks and still no failure", what, l->cap);
    return got;
}

static size_t small_size16(uint64_t r) { return 16 + (size_t)(r % 4081); }

static int fault_rlimit(int resource)
{
    const char *rname = resource == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_DATA";
    const char *field = resource == RLIMIT_AS ? "VmSize" : "VmData";
    struct blist l;
    l.cap = 1u << 20;
    /* the list itself is mapped before the limit is measured and set */
    l.b = mmap(NULL, l.cap * sizeof *l.b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    CHECK(l.b != MAP_FAILED);
    l.n = 0;
    uint64_t seed = 12345;

    /* warm up: the thread cache, stdio */
    printf("rlimit: %s\n", rname);
    fflush(stdout);
    free(malloc(100));

    struct rlimit old, low;
    CHECK(getrlimit(resource, &old) == 0);
    size_t usage = proc_status_kb(field);
    low = old;
    low.rlim_cur = usage + 64 * MiB;
    CHECK(setrlimit(resource, &low) == 0);

    /* large blocks until one fails; half of them back (unmapped), then small
     * blocks until one fails; a quarter of those back, then medium ones */
    size_t nl = fill_until_enomem(&l, large_size, &seed, "large");
    for (size_t i = 0; i < l.n; i += 2)
        blk_free(&l.b[i]);
    size_t from = l.n;
    size_t ns = fill_until_enomem(&l, small_size16, &seed, "small");
    for (size_t i = from; i < l.n; i += 4)
        blk_free(&l.b[i]);
    size_t nm = fill_until_enomem(&l, medium_size, &seed, "medium");
    /* compact the list */
    size_t w = 0;
    for (size_t i = 0; i < l.n; i++)
        if (l.b[i].p != NULL)
            l.b[w++] = l.b[i];
    l.n = w;
    size_t at_limit = proc_status_kb(field);
    /* the other entry points fail cleanly too */
    errno = 0;
    CHECK(calloc(1, 2 * MiB) == NULL && errno == ENOMEM);
    void *p = NULL;
    CHECK(posix_memalign(&p, 4096, 2 * MiB) == ENOMEM);
    struct blk *last = &l.b[l.n - 1];
    errno = 0;
    CHECK(realloc(last->p, 4 * MiB) == NULL && errno == ENOMEM);
    blk_check(last);
    heap_ok("at the limit");
    for (size_t i = 0; i < l.n; i++)
        blk_check(&l.b[i]);

    /* free every other block: allocations of each kind succeed again */
    for (size_t i = 0; i < l.n; i += 2)
        blk_free(&l.b[i]);
    heap_ok("at the limit, half freed");
    struct blk again[64];
    int k = 0;
    for (int i = 0; i < 40; i++, k++) {
        again[k].n = small_size16(rng_next(&seed));
        again[k].p = malloc(again[k].n);
        CHECKF(again[k].p != NULL, "small malloc(%zu) after freeing half", again[k].n);
        blk_fill(&again[k]);
    }
    for (int i = 0; i < 8; i++, k++) {
        again[k].n = 5 * KiB + (size_t)i * 1000;
        again[k].p = malloc(again[k].n);
        CHECKF(again[k].p != NULL, "medium malloc(%zu) after freeing half", again[k].n);
        blk_fill(&again[k]);
    }
    again[k].n = 1 * MiB;
    again[k].p = malloc(again[k].n);
    CHECK(again[k].p != NULL);
    blk_fill(&again[k]);
    k++;
    heap_ok("after allocating again");

    /* the limit raised back: a big block */
    CHECK(setrlimit(resource, &old) == 0);
    size_t big = 256 * MiB;
    unsigned char *bp = malloc(big);
    CHECK(bp != NULL);
    memset(bp, 0x5a, big);
    free(bp);

    for (int i = 0; i < k; i++)
        blk_free(&again[i]);
    for (size_t i = 0; i < l.n; i++)
        blk_free(&l.b[i]);
    heap_ok("with every block freed");
    printf("rlimit: %s = %zu MiB (%s was %zu MiB): %zu large, %zu small, %zu medium blocks "
           "before ENOMEM (%s then %zu MiB), %zu in use; half freed, allocations succeeded again; "
           "256 MiB after raising the limit\n",
           rname, (usage + 64 * MiB) >> 20, field, usage >> 20, nl, ns, nm, field,
           at_limit >> 20, l.n);
    munmap(l.b, l.cap * sizeof *l.b);
    check_done(resource == RLIMIT_AS ? "faults rlimit-as" : "faults rlimit-data");
    return 0;
}

/* ---- (c2) debug mode without its quarantine ------------------------------ */

/* Run under MEMALLOC_DEBUG=1 and MEMALLOC_FAIL_AFTER=N: debug mode maps its
 * quarantine at its first free, and if that mapping fails the block goes
 * back to the heap at once (checked for writes after free as it leaves).
 * Prints "quarantine: reused" when the next malloc of the size got the
 * freed block back, which the quarantine, had it been mapped, would have
 * prevented. */
static int fault_quarantine(void)
{
    unsigned char *p = malloc(100);
    if (p != NULL) {
        memset(p, 0x11, 100);
        free(p);
        unsigned char *q = malloc(100);
        if (q == p)
            printf("quarantine: reused\n");
        if (q != NULL) {
            memset(q, 0x22, 100);
            free(q);
        }
    } else {
        CHECK(errno == ENOMEM);
    }
    heap_ok("after the frees");
    check_done("faults quarantine");
    return 0;
}

/* Run under MEMALLOC_FAIL_AFTER=N MEMALLOC_FAIL_COUNT=1: a mapped block of
 * 64 MiB grows to 5 GiB by realloc (mremap). Spanning two or more 4 GiB
 * windows of the address map, the grown block needs a leaf of the map
 * that does not exist yet, so for some N the failing call is the leaf's
 * mapping after the block has already moved: realloc must then give NULL
 * with the old block intact (not abort), as when mremap itself fails.
 * Prints "remap: refused" when realloc returned NULL. */
static int fault_remap(void)
{
    const size_t old = 64 * MiB, grown = (size_t)5 << 30;
    unsigned char *p = malloc(old);
    if (p == NULL) {
        CHECK(errno == ENOMEM);
        check_done("faults remap");
        return 0;
    }
    memset(p, 0x5a, 4096);
    memset(p + old - 4096, 0xa5, 4096);
    unsigned char *q = realloc(p, grown);
    unsigned char *b = q != NULL ? q : p;
    if (q == NULL) {
        CHECK(errno == ENOMEM);
        printf("remap: refused\n");
    }
    for (size_t i = 0; i < 4096; i++) {
        CHECKF(b[i] == 0x5a && b[old - 4096 + i] == 0xa5, "byte %zu of the block lost after realloc", i);
        if (b[i] != 0x5a || b[old - 4096 + i] != 0xa5)
            break;
    }
    if (q != NULL) {
        q[grown - 1] = 1; /* the grown tail is ours */
        CHECK(malloc_usable_size(q) >= grown);
    }
    heap_ok("after the realloc");
    free(b);
    heap_ok("after the free");
    check_done("faults remap");
    return 0;
}

/* ---- (d) 10,000 threads --------------------------------------------------- */

enum { WAVE = 50, PER_THREAD = 320, KEEP = 8, SWAP = 256 };

static struct blk handoff[2][WAVE][KEEP]; /* left by wave w for wave w + 1 */
static struct blk *swap_slots[SWAP];      /* exchanged between running threads */

struct tjob {
    int index, wave;
};

static size_t class_size(uint64_t r)
{
    /* every small size class (16 apart to 128, then 4 per power of two to
     * 4 KiB), some medium, rarely large */
    unsigned v = (unsigned)(r % 1000);
    if (v < 6)
        return 128 * KiB + (size_t)((r >> 10) % (256 * KiB));
    if (v < 60)
        return 4 * KiB + 1 + (size_t)((r >> 10) % (60 * KiB));
    unsigned k = (unsigned)((r >> 10) % 28);
    if (k < 8)
        return 16 * (k + 1);
    unsigned base = 128u << ((k - 8) / 4);
    return base + base / 4 * ((k - 8) % 4 + 1) - (size_t)((r >> 20) % 8);
}

static void *churn_thread(void *arg)
{
    struct tjob *j = arg;
    uint64_t seed = 0xD6E8FEB86659FD93ULL * (uint64_t)(j->index + 1);
    /* blocks the same thread slot of the previous wave left: their owner
     * thread has exited */
    struct blk *prev = handoff[(j->wave + 1) % 2][j->index % WAVE];
    for (int k = 0; k < KEEP; k++)
        blk_free(&prev[k]);

    struct blk b[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        b[i].n = class_size(rng_next(&seed));
        b[i].p = malloc(b[i].n);
        CHECK(b[i].p != NULL);
        blk_fill(&b[i]);
    }
    struct blk *mine = handoff[j->wave % 2][j->index % WAVE];
    int kept = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t r = rng_next(&seed);
        if (kept < KEEP && r % 32 == 0) {
            mine[kept++] = b[i];
        } else if (r % 32 == 1) {
            /* swap with a running thread: it (or a later one) frees ours */
            struct blk *box = malloc(sizeof *box);
            CHECK(box != NULL);
            *box = b[i];
            struct blk *got = __atomic_exchange_n(&swap_slots[(r >> 8) % SWAP], box,
                                                  __ATOMIC_ACQ_REL);
            if (got != NULL) {
                blk_free(got);
                free(got);
            }
        } else {
            blk_free(&b[i]);
        }
    }
    for (; kept < KEEP; kept++)
        mine[kept].p = NULL;
    check_flush();
    return NULL;
}

struct point {
    int threads;
    size_t rss;
    struct memalloc_stats s;
};

static void measure(struct point *pt, int threads)
{
    pt->threads = threads;
    pt->rss = rss_bytes();
    memset(&pt->s, 0, sizeof pt->s);
    if (get_stats != NULL)
        get_stats(&pt->s);
    printf("  after %5d threads: RSS %6.1f MiB", threads, pt->rss / (double)MiB);
    if (get_stats != NULL)
        printf(", in_use %6.2f MiB, heap %6.1f MiB (free %6.1f MiB in %zu blocks), large %5.1f MiB",
               pt->s.in_use / (double)MiB, pt->s.heap_bytes / (double)MiB,
               pt->s.free_bytes / (double)MiB, pt->s.free_blocks, pt->s.large_bytes / (double)MiB);
    printf("\n");
    fflush(stdout);
}

static int fault_threads(int total)
{
    CHECK(total >= WAVE);
    printf("threads: %d threads in waves of %d, %d blocks each\n", total, WAVE, PER_THREAD);
    struct point p0, pts[3];
    int marks[3] = {total / 10, total / 2, total};
    int m = 0;
    measure(&p0, 0);
    static struct tjob jobs[WAVE];
    pthread_t tid[WAVE];
    int done = 0;
    for (int wave = 0; done < total; wave++) {
        int n = total - done < WAVE ? total - done : WAVE;
        for (int i = 0; i < n; i++) {
            jobs[i].index = done + i;
            jobs[i].wave = wave;
            int e = pthread_create(&tid[i], NULL, churn_thread, &jobs[i]);
            CHECKF(e == 0, "pthread_create: %d", e);
        }
        for (int i = 0; i < n; i++)
            CHECK(pthread_join(tid[i], NULL) == 0);
        /* slots a short last wave did not reach */
        for (int i = n; i < WAVE; i++)
            for (int k = 0; k < KEEP; k++)
                blk_free(&handoff[(wave + 1) % 2][i][k]);
        done += n;
        while (m < 3 && done >= marks[m]) {
            heap_ok("during the thread churn");
            measure(&pts[m], done);
            m++;
        }
    }
    /* free what is left: the last wave's blocks and the swap slots */
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < WAVE; i++)
            for (int k = 0; k < KEEP; k++)
                blk_free(&handoff[w][i][k]);
    for (int i = 0; i < SWAP; i++) {
        if (swap_slots[i] != NULL) {
            blk_free(swap_slots[i]);
            free(swap_slots[i]);
            swap_slots[i] = NULL;
        }
    }
    heap_ok("after the thread churn");
    struct point end;
    printf("  everything freed:\n");
    measure(&end, total);

    /* Bounded: no growth proportional to the number of threads.  The heap's
     * size is set by the busiest moment of 50 concurrent threads (each with
     * its own zones), not by how many threads came and went: a leak of one
     * 64 KiB zone per exited thread would add 560 MiB over the last 9000
     * threads.  "held" is what the heap holds in used chunks (zones
     * included): heap bytes minus its free bytes. */
    CHECKF(pts[2].rss <= pts[0].rss + 32 * MiB, "RSS %zu MiB after %d threads, %zu after %d",
           pts[2].rss >> 20, pts[2].threads, pts[0].rss >> 20, pts[0].threads);
    if (get_stats != NULL) {
        size_t held1 = pts[0].s.heap_bytes - pts[0].s.free_bytes;
        size_t held3 = pts[2].s.heap_bytes - pts[2].s.free_bytes;
        size_t held_end = end.s.heap_bytes - end.s.free_bytes;
        size_t held0 = p0.s.heap_bytes - p0.s.free_bytes;
        CHECKF(pts[2].s.in_use <= pts[0].s.in_use + 16 * MiB,
               "in_use %zu after %d threads, %zu after %d", pts[2].s.in_use, pts[2].threads,
               pts[0].s.in_use, pts[0].threads);
        CHECKF(held3 <= held1 + 16 * MiB, "heap bytes in used chunks %zu after %d threads, %zu after %d",
               held3, pts[2].threads, held1, pts[0].threads);
        CHECKF(pts[2].s.heap_bytes <= pts[0].s.heap_bytes + 64 * MiB,
               "heap %zu after %d threads, %zu after %d", pts[2].s.heap_bytes, pts[2].threads,
               pts[0].s.heap_bytes, pts[0].threads);
        /* nothing leaked */
        CHECKF(end.s.in_use <= p0.s.in_use + 1 * MiB, "in_use %zu at the start, %zu at the end",
               p0.s.in_use, end.s.in_use);
        CHECKF(held_end <= held0 + 8 * MiB, "heap bytes in used chunks %zu at the start, %zu at the end",
               held0, held_end);
        CHECKF(end.s.large_bytes <= p0.s.large_bytes, "large blocks %zu at the start, %zu at the end",
               p0.s.large_bytes, end.s.large_bytes);
    }
    check_done("faults threads");
    return 0;
}

/* ---- (e) re-entry ---------------------------------------------------------- */

enum { CTOR_BLOCKS = 64 };
static struct blk ctor_blocks[CTOR_BLOCKS];  /* from the constructor's thread */
static struct blk ctor_own[4];               /* from the constructor itself */
static pthread_t ctor_tid;
static int ctor_started;

static void *ctor_thread(void *arg)
{
    (void)arg;
    uint64_t seed = 99;
    struct blk tmp[256];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 256; i++) {
            tmp[i].n = class_size(rng_next(&seed));
            tmp[i].p = malloc(tmp[i].n);
            if (tmp[i].p == NULL)
                abort();
            blk_fill(&tmp[i]);
        }
        for (int i = 0; i < 256; i++)
            blk_free(&tmp[i]);
    }
    for (int i = 0; i < CTOR_BLOCKS; i++) {
        ctor_blocks[i].n = class_size(rng_next(&seed));
        ctor_blocks[i].p = malloc(ctor_blocks[i].n);
        if (ctor_blocks[i].p == NULL)
            abort();
        blk_fill(&ctor_blocks[i]);
    }
    check_flush();
    return NULL;
}

/* Runs before main in every mode; only the reentry mode looks at what it did. */
__attribute__((constructor)) static void early(void)
{
    static const size_t sizes[4] = {10, 1000, 50 * KiB, 300 * KiB};
    for (int i = 0; i < 4; i++) {
        ctor_own[i].n = sizes[i];
        ctor_own[i].p = malloc(sizes[i]);
        if (ctor_own[i].p != NULL)
            blk_fill(&ctor_own[i]);
    }
    const char *mode = getenv("FAULTS_CTOR_THREAD");
    if (mode != NULL && mode[0] == '1')
        ctor_started = pthread_create(&ctor_tid, NULL, ctor_thread, NULL) == 0;
}

static void *resolve_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < 50; i++) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = (i + id) % 2 ? SOCK_STREAM : 0;
        int e = getaddrinfo("localhost", i % 3 == 0 ? "80" : NULL, &hints, &res);
        CHECKF(e == 0, "getaddrinfo(localhost): %s", gai_strerror(e));
        int n = 0;
        for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
            n++;
        CHECK(n > 0);
        freeaddrinfo(res);
        char host[NI_MAXHOST];
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(0x7f000001);
        e = getnameinfo((struct sockaddr *)sin, sizeof *sin, host, sizeof host, NULL, 0, 0);
        CHECKF(e == 0, "getnameinfo(127.0.0.1): %s", gai_strerror(e));
    }
    check_flush();
    return NULL;
}

#ifdef REENTRY_NEEDED
/* from libreentry_needed.so (c_tests/reentry_lib.c), linked to this binary */
int reentry_needed_ctor_ok(void);
void *reentry_needed_alloc(size_t n);
void reentry_needed_free(void *p);
#endif

static int fault_reentry(const char *lib)
{
#ifdef REENTRY_NEEDED
    /* a library loaded with the program: its constructor allocated and ran
     * a thread at load time */
    CHECKF(reentry_needed_ctor_ok() == 1, "libreentry_needed's constructor failed");
    for (int i = 0; i < 100; i++) {
        void *p = reentry_needed_alloc((size_t)i * 100 + 1);
        CHECK(p != NULL);
        free(p);
        reentry_needed_free(malloc((size_t)i * 50 + 1));
    }
    printf("reentry: a library loaded with the program allocated and ran a thread in its constructor\n");
#endif
    /* before main: the constructor allocated, and its thread did */
    CHECKF(ctor_started, "the constructor did not start its thread (FAULTS_CTOR_THREAD=1?)");
    CHECK(pthread_join(ctor_tid, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        CHECK(ctor_own[i].p != NULL);
        blk_free(&ctor_own[i]);
    }
    for (int i = 0; i < CTOR_BLOCKS; i++)
        blk_free(&ctor_blocks[i]);
    printf("reentry: a constructor allocated, and its thread allocated 5184 blocks before main\n");

    /* dlopen: the library's constructor allocates and runs a thread */
    for (int round = 0; round < 20; round++) {
        void *h = dlopen(lib, RTLD_NOW | (round % 2 ? RTLD_GLOBAL : RTLD_LOCAL));
        CHECKF(h != NULL, "dlopen(%s): %s", lib, dlerror());
        int (*ctor_ok)(void) = (int (*)(void))dlsym(h, "reentry_lib_ctor_ok");
        void *(*lib_alloc)(size_t) = (void *(*)(size_t))dlsym(h, "reentry_lib_alloc");
        void (*lib_free)(void *) = (void (*)(void *))dlsym(h, "reentry_lib_free");
        CHECK(ctor_ok != NULL && lib_alloc != NULL && lib_free != NULL);
        CHECKF(ctor_ok() == 1, "reentry_lib's constructor failed");
        /* blocks allocated inside the library, freed here, and the reverse */
        for (int i = 0; i < 100; i++) {
            size_t n = class_size((uint64_t)i * 7919 + (uint64_t)round);
            struct blk b = {lib_alloc(n), n, 0};
            CHECK(b.p != NULL);
            blk_fill(&b);
            blk_check(&b);
            if (i % 2)
                free(b.p);
            else
                lib_free(b.p);
            void *q = malloc(n);
            CHECK(q != NULL);
            lib_free(q);
        }
        CHECK(dlclose(h) == 0);
    }
    printf("reentry: dlopen/dlclose x20 of %s (constructor allocating and joining a thread)\n", lib);

    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, resolve_thread, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    printf("reentry: getaddrinfo(localhost) + getnameinfo x50 in 4 threads at once\n");
    heap_ok("after the re-entry tests");
    check_done("faults reentry");
    return 0;
}

int main(int argc, char **argv)
{
    check_begin();
    check_heap = (size_t (*)(void))memalloc_sym("memalloc_check");
    get_stats = (void (*)(struct memalloc_stats *))memalloc_sym("memalloc_get_stats");
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "inject") == 0)
        return fault_inject(argc > 2 ? strtoull(argv[2], NULL, 0) : 1, 0);
    if (strcmp(mode, "inject-threads") == 0)
        return fault_inject(argc > 2 ? strtoull(argv[2], NULL, 0) : 1,
                            argc > 3 ? atoi(argv[3]) : 8);
    if (strcmp(mode, "rlimit-as") == 0)
        return fault_rlimit(RLIMIT_AS);
    if (strcmp(mode, "rlimit-data") == 0)
        return fault_rlimit(RLIMIT_DATA);
    if (strcmp(mode, "threads") == 0)
        return fault_threads(argc > 2 ? atoi(argv[2]) : 10000);
    if (strcmp(mode, "quarantine") == 0)
        return fault_quarantine();
    if (strcmp(mode, "remap") == 0)
        return fault_remap();
    if (strcmp(mode, "reentry") == 0 && argc > 2)
        return fault_reentry(argv[2]);
    fprintf(stderr, "usage: faults inject [seed] | inject-threads [seed [threads]] | rlimit-as | "
                    "rlimit-data | quarantine | remap | threads [n] | reentry LIB.so\n");
    return 2;
}
