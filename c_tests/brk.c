/*
 * brk.c - the program break follows the heap: it grows while small blocks are
 * allocated and falls back when the free tail passes the trim threshold
 * (128 KiB), without a malloc_trim call; a large block is mapped on its own
 * and leaves the break alone. A program that takes the space back at once
 * (within 250 ms of the trim) is cycling: its next trims keep a free tail of
 * up to twice what it took, so that every cycle does not fault the pages in
 * again; a second later the break falls back fully again. Blocks mapped on
 * their own, freed and taken again from the heap (whose threshold their free
 * raised) are such a cycle too. A block cut from a hole whose pages the
 * program never touched takes no page fault (its rest starts on a resident
 * page); with a second thread that has a cache, or under a seccomp filter
 * that forbids asking the kernel, it is cut at its size. The heap starts at a
 * 64 KiB granule; a program's first blocks of each size class share the
 * heap's pages, and only later ones come from zones. Under RLIMIT_AS, a pad
 * that does not fit leaves the break growing by the request alone.
 *
 * memalloc only (glibc keeps freed blocks in its tcache, so its top chunk
 * does not always reach the tail; other allocators do not use brk at all).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define KiB ((long)1024)
#define MiB (1024 * KiB)

enum { BLOCK = 1000, NBLK = 4200 };  /* ~4 MiB, far below the mmap threshold */
static void *blk[NBLK];

static long brk_delta(const void *from)
{
    return (long)((uintptr_t)sbrk(0) - (uintptr_t)from);
}

/* One round; returns how far above its start the break stayed. */
static long grow_and_shrink(int round)
{
    void *start = sbrk(0);
    for (int i = 0; i < NBLK; i++) {
        blk[i] = malloc(opaque(BLOCK));
        CHECK(blk[i] != NULL);
        pattern_fill(blk[i], BLOCK);
    }
    long grown = brk_delta(start);
    for (int i = NBLK - 1; i >= 0; i--) {
        CHECK_PATTERN(blk[i], BLOCK);
        free(blk[i]);
    }
    long left = brk_delta(start);
    printf("round %d: break %p, +%ld KiB after %d x %d bytes, %+ld KiB after freeing them\n",
           round, start, grown / KiB, NBLK, BLOCK, left / KiB);
    CHECKF(grown >= 3 * MiB, "the break grew by only %ld KiB for %d KiB of small blocks",
           grown / KiB, NBLK * BLOCK / 1024);
    return left;
}

static void check_shrunk(long left)
{
    CHECKF(left <= 256 * KiB, "the break stayed %ld KiB above its start after freeing the tail",
           left / KiB);
}

static void large_block(void)
{
    void *start = sbrk(0);
    size_t n = opaque(1 * MiB);
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    long moved = brk_delta(start);
    memset(p, 0x6b, n);
    printf("1 MiB block at %p: break moved %+ld KiB\n", (void *)p, moved / KiB);
    CHECKF(moved <= 256 * KiB && moved >= -256 * KiB, "a 1 MiB block moved the break by %ld KiB",
           moved / KiB);
    CHECK(p[0] == 0x6b && p[n - 1] == 0x6b);
    free(p);
    long after = brk_delta(start);
    CHECKF(after <= 256 * KiB && after >= -256 * KiB, "freeing the 1 MiB block moved the break by %ld KiB",
           after / KiB);
}

/* String building: 64 strings grown by appends of 16-256 bytes, each realloc
 * to the exact length, until they pass 64 KiB; then a new one starts, 4000
 * times. The string at the break's tail grows by moving the break; the others
 * move into the free holes. The tail string must move into a hole too where
 * one can take it: else the break climbs with every string while the holes
 * below grow (a 44 MiB break for 4 MiB of strings before the fix; glibc
 * stays at 3.4 MiB). Returns nothing: checks the break and the contents. */
enum { NSTR = 64, STR_MAX = 64 * 1024 };
static void string_building(void)
{
    static struct { char *p; size_t len; unsigned char c; } s[NSTR];
    void *start = sbrk(0);
    uint64_t x = 88172645463325252ull;
    long most = 0;
    for (int i = 0; i < NSTR; i++) {
        s[i].len = 16;
        s[i].c = (unsigned char)('a' + i % 26);
        s[i].p = malloc(opaque(16));
        CHECK(s[i].p != NULL);
        memset(s[i].p, s[i].c, 16);
    }
    for (int done = 0; done < 4000;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % NSTR);
        size_t add = 16 + (size_t)(x >> 32) % 241;
        char *np = realloc(s[k].p, opaque(s[k].len + add));
        CHECK(np != NULL);
        memset(np + s[k].len, s[k].c, add);
        s[k].p = np;
        s[k].len += add;
        if (s[k].len >= STR_MAX) {
            int ok = 1;
            for (size_t i = 0; i < s[k].len; i++)
                ok &= s[k].p[i] == (char)s[k].c;
            CHECKF(ok, "string %d of %zu bytes lost its contents", k, s[k].len);
            free(s[k].p);
            s[k].len = 16;
            s[k].p = malloc(opaque(16));
            CHECK(s[k].p != NULL);
            memset(s[k].p, s[k].c, 16);
            done++;
            if (brk_delta(start) > most)
                most = brk_delta(start);
        }
    }
    printf("string building: 4000 strings of 64 KiB, 64 at once: the break rose by at most %ld KiB\n",
           most / KiB);
    CHECKF(most <= 16 * MiB, "the break rose by %ld KiB for %d strings of at most %d KiB",
           most / KiB, NSTR, STR_MAX / 1024);
    for (int i = 0; i < NSTR; i++)
        free(s[i].p);
}

static long minor_faults(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    return ru.ru_minflt;
}

/* 16 blocks of 1 MiB from the heap, written; returns the page faults taken. */
enum { MIB_BLOCKS = 16 };
static long fill_mib_blocks(unsigned char **p, unsigned char c)
{
    long f0 = minor_faults();
    for (int i = 0; i < MIB_BLOCKS; i++) {
        p[i] = malloc(opaque(1 * MiB));
        CHECK(p[i] != NULL);
        memset(p[i], c, 1 * MiB);
    }
    return minor_faults() - f0;
}

static void free_mib_blocks(unsigned char **p, unsigned char c)
{
    for (int i = MIB_BLOCKS - 1; i >= 0; i--) {
        CHECK(p[i][0] == c && p[i][1 * MiB - 1] == c);
        free(p[i]);
    }
}

/* Blocks mapped on their own and freed raise the mmap threshold: blocks of
 * their size come from the heap from then on. A program that frees 16 MiB of
 * 4 MiB mappings and at once takes as much from the heap, in 1 MiB blocks, is
 * cycling as surely as one whose break was trimmed: when it frees them, the
 * trim keeps the tail, and taking them again faults nothing in (it faulted
 * all 4096 pages in again before). A second later, the break falls back. */
static void mapped_then_heap(void)
{
    unsigned char *m[4], *p[MIB_BLOCKS];
    for (int i = 0; i < 4; i++) {
        m[i] = malloc(opaque(4 * MiB));
        CHECK(m[i] != NULL);
        memset(m[i], 0x3c, 4 * MiB);
    }
    void *start = sbrk(0);
    for (int i = 0; i < 4; i++)
        free(m[i]);
    long first = fill_mib_blocks(p, 0x11);
    void *top = sbrk(0);
    long grown = brk_delta(start);
    CHECKF(grown >= MIB_BLOCKS / 2 * MiB,
           "%d blocks of 1 MiB after 4 MiB ones grew the break by only %ld KiB", MIB_BLOCKS,
           grown / KiB);
    free_mib_blocks(p, 0x11);
    long cut = -brk_delta(top);
    long again = fill_mib_blocks(p, 0x22);
    free_mib_blocks(p, 0x22);
    if (again > 256) {
        /* The heap's purge discards free pages a moment after a free; on
         * a loaded machine that moment can fall between the free and the
         * next fill (481 pages, seen at a load average of 18; 0 in every
         * run alone). The cycle once more, at once: it must not fault. */
        printf("mapped then heap: the refill faulted %ld pages in (a purge in between?); once more\n",
               again);
        again = fill_mib_blocks(p, 0x22);
        free_mib_blocks(p, 0x22);
    }
    printf("mapped then heap: 16 MiB of blocks grew the break by %ld KiB and faulted %ld pages in; "
           "freeing them cut %ld KiB; taken again, they faulted %ld\n",
           grown / KiB, first, cut / KiB, again);
    CHECKF(cut <= 256 * KiB, "the trim after unmapping and regrowing cut %ld KiB", cut / KiB);
    CHECKF(again <= 256, "taking 16 MiB again faulted %ld pages in", again);
    struct timespec pause = {1, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    fill_mib_blocks(p, 0x33);
    free_mib_blocks(p, 0x33);
    check_shrunk(brk_delta(start));
}

/* A new zone touches one page, the one holding its header and first blocks:
 * the break's sentinel, written below each new break, must not leave another
 * resident page in the middle of a later zone's granule, and the zone's first
 * batch of blocks must not reach into its second page (which 8 blocks of
 * 384-512 bytes do). Each size here is served by a zone of 64 KiB of its
 * class, new to the program. */
static void zone_pages(void)
{
    enum { ZONE = 64 * 1024, PAGES = ZONE / 4096, N = 20 };
    static const size_t size[N] = {16,  32,  48,  64,  80,  96,  112, 128, 144, 160,
                                   176, 192, 208, 224, 240, 256, 320, 384, 448, 512};
    void *p[N];
    for (int i = 0; i < N; i++) {
        size_t n = size[i];
        warm_class(n);
        p[i] = malloc(n);
        CHECK(p[i] != NULL);
        memset(p[i], 0x5a, n);
    }
    for (int i = 0; i < N; i++) {
        char *g = (char *)((uintptr_t)p[i] & ~(uintptr_t)(ZONE - 1));
        unsigned char v[PAGES];
        CHECK(mincore(g, ZONE, v) == 0);
        char map[PAGES + 1];
        for (int k = 0; k < PAGES; k++)
            map[k] = (v[k] & 1) ? '1' : '0';
        map[PAGES] = 0;
        CHECKF(strcmp(map, "1000000000000000") == 0,
               "the zone of a %zu-byte block at %p has resident pages %s", size[i], p[i], map);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
}

/* The heap starts at a 64 KiB granule wherever the kernel put the break
 * (page-aligned, at random), so that its layout is the same in every run:
 * the region that memalloc_dump reports for the break starts at one. */
static void heap_starts_at_granule(void)
{
    void (*dump)(int) = (void (*)(int))memalloc_sym("memalloc_dump");
    CHECK(dump != NULL);
    int fd = memfd_create("memalloc_dump", 0);
    CHECK(fd >= 0);
    dump(fd);
    static char text[1 << 16];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    CHECK(n > 0);
    text[n] = 0;
    char *line = strstr(text, "\nregion ");
    unsigned long start = 0, end = 0;
    char kind[16] = "";
    CHECK(line != NULL && sscanf(line, "\nregion %lx-%lx %15s", &start, &end, kind) == 3);
    printf("heap start: the break's region is %#lx-%#lx (%s)\n", start, end, kind);
    CHECKF(strcmp(kind, "brk") == 0, "the first region is %s, not the break's", kind);
    CHECKF(start % (64 * 1024) == 0, "the heap starts at %#lx, not at a 64 KiB granule", start);
}

/* A thread's first allocations of a class come from the heap, where blocks
 * of all sizes share pages: one block of each of the 28 classes (16 bytes to
 * 4 KiB, 26 KiB in all) spans at most 12 pages, where a zone each would have
 * made 28 resident (and two for each block of 2 KiB and up). From its
 * COLD_ALLOCS-th allocation of a class on, the thread takes blocks of that
 * class from a zone, one after the other, under a zone header that names the
 * class's block size. This holds only while one thread has a cache: a second
 * thread takes its blocks from zones from the first (heap blocks of two
 * threads could share a cache line). Run in a new process (the test program
 * again, with the argument "cold"), whose only thread has allocated nothing. */
enum { NCOLD = 28, NQ = 2 * COLD_ALLOCS };

/* Allocates NQ blocks of req bytes into q; returns the index of the first of
 * the run of blocks n bytes apart that ends the list (-1 if none). */
static int zone_run(unsigned char **q, size_t req, size_t n)
{
    for (int i = 0; i < NQ; i++) {
        q[i] = malloc(opaque(req));
        CHECK(q[i] != NULL);
    }
    int from = -1;
    for (int i = NQ - 1; i > 0 && q[i] - q[i - 1] == (ptrdiff_t)n; i--)
        from = i - 1;
    if (from >= 0) {
        /* a zone block's usable size is its zone's block size (the zone
         * header, which says so, lies in the zone map, out of reach) */
        size_t bs = malloc_usable_size(q[from]);
        CHECKF(bs == n, "usable size %zu of a block of a run of %zu-byte blocks", bs, n);
    }
    return from;
}

static void *second_thread(void *arg)
{
    unsigned char *q[NQ];
    /* (a second thread is sparse: its requests of up to 256 bytes take
     * 256-byte blocks, as threads.c checks) */
    *(int *)arg = zone_run(q, 80, 256);
    for (int i = 0; i < NQ; i++)
        free(q[i]);
    check_flush();
    return NULL;
}

static int cold_main(void)
{
    enum { PAGE = 4096, MAXPAGES = 12 };
    static const size_t size[NCOLD] = {16,   32,   48,   64,   80,   96,   112,  128,
                                       160,  192,  224,  256,  320,  384,  448,  512,
                                       640,  768,  896,  1024, 1280, 1536, 1792, 2048,
                                       2560, 3072, 3584, 4096};
    unsigned char *p[NCOLD];
    uintptr_t pages[NCOLD * 2];
    int npages = 0;
    for (int i = 0; i < NCOLD; i++) {
        p[i] = malloc(opaque(size[i]));
        CHECK(p[i] != NULL);
        pattern_fill(p[i], size[i]);
        for (uintptr_t pg = (uintptr_t)p[i] / PAGE; pg <= ((uintptr_t)p[i] + size[i] - 1) / PAGE;
             pg++) {
            int seen = 0;
            for (int k = 0; k < npages; k++)
                seen |= pages[k] == pg;
            if (!seen && npages < NCOLD * 2)
                pages[npages++] = pg;
        }
    }
    /* one 48-byte block was taken above: the class's allocations
     * 2..COLD_ALLOCS come from the heap (64 bytes apart, with their headers),
     * the later ones from the class's new zone */
    unsigned char *q[NQ];
    int from = zone_run(q, 48, 48);
    pthread_t t;
    int second = -2;
    CHECK(pthread_create(&t, NULL, second_thread, &second) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("cold classes: one block of each of %d classes spans %d pages; the thread's 48-byte "
           "blocks come from a zone from its allocation %d of the class on, a second thread's "
           "80-byte requests from its allocation %d on\n",
           NCOLD, npages, from + 2, second + 1);
    CHECKF(npages <= MAXPAGES, "one block of each of %d classes spans %d pages", NCOLD, npages);
    CHECKF(from == COLD_ALLOCS - 1,
           "the thread's 48-byte blocks are 48 bytes apart (a zone's) from its allocation %d of "
           "the class on, not %d",
           from + 2, COLD_ALLOCS + 1);
    CHECKF(second == 0, "a second thread's 80-byte blocks come from a zone from its allocation "
           "%d on, not its first", second + 1);
    for (int i = 0; i < NQ; i++)
        free(q[i]);
    for (int i = 0; i < NCOLD; i++) {
        CHECK_PATTERN(p[i], size[i]);
        free(p[i]);
    }
    check_done("brk cold");
    return 0;
}

static void cold_classes(void)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "brk", "cold", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the cold-classes process ended with status %#x", status);
}

/* A block cut from a free hole whose pages the program never touched (it
 * wrote only parts of the buffer that was there) must not write a header in
 * one of them: a page fault inside malloc, and a resident page the program
 * never uses. The heap cuts a block from the back of a hole (the rest keeps
 * the hole's header), so the only page malloc may touch is the block's own
 * first one; and no system call is made to find out (issue 17: mincore is
 * gone).
 * (The sizes are above a zone's 64 KiB, so that no gap the zones left fits:
 * the hole and the fence after it come from the top, in that order.) */
/* How hole_split runs: alone, under a filter that forbids mincore, or with
 * a second thread holding a cache. */
enum hole_mode { ALONE, FORBIDDEN, THREADED };

static void hole_split(enum hole_mode mode)
{
    enum { PAGE = 4096 };
    size_t n = 120 * KiB, want = 72 * KiB, touched = 100 * KiB, nf = 66 * KiB;
    unsigned char *a = malloc(opaque(n));
    unsigned char *fence = malloc(opaque(nf));
    CHECK(a != NULL && fence != NULL);
    CHECKF(fence > a, "the fence at %p lies below the hole at %p", (void *)fence, (void *)a);
    memset(fence, 0x77, nf);
    /* the free tail of the break taken too, so that the hole is the only
     * free block that fits */
    void *fill[8];
    int nfill = 0;
    for (size_t k; nfill < 8 && (k = mallinfo2().keepcost) >= want;) {
        fill[nfill] = malloc(k < n ? k - 64 : n);
        CHECK(fill[nfill] != NULL);
        nfill++;
    }
    CHECKF(mallinfo2().keepcost < want, "the tail of the break still has %zu bytes free",
           mallinfo2().keepcost);
    a[0] = 1;
    a[touched] = 1;
    /* the pages between are untouched: the test's premise */
    char *from = (char *)(((uintptr_t)a + want) & ~(uintptr_t)(PAGE - 1));
    char *to = (char *)(((uintptr_t)a + touched) & ~(uintptr_t)(PAGE - 1));
    unsigned char v[16];
    CHECK(to - from <= 16 * PAGE);
    if (mode == FORBIDDEN) {
        CHECK(mincore(from, (size_t)(to - from), v) == -1 && errno == EPERM);
    } else {
        CHECK(mincore(from, (size_t)(to - from), v) == 0);
        for (long k = 0; k < (to - from) / PAGE; k++)
            CHECKF(!(v[k] & 1), "page %p of a fresh %zu KiB block is resident before the test",
                   (void *)(from + k * PAGE), n / 1024);
    }
    free(a);
    long f0 = minor_faults();
    unsigned char *b = malloc(opaque(want));
    long faults = minor_faults() - f0;
    CHECK(b != NULL);
    size_t usable = malloc_usable_size(b);
    printf("untouched hole%s: malloc(%zu) at %p (hole %p) took %ld page faults; usable %zu\n",
           mode == FORBIDDEN  ? ", mincore forbidden"
           : mode == THREADED ? ", two threads"
                              : "",
           want, (void *)b, (void *)a, faults, usable);
    if (mode != FORBIDDEN) {
        CHECK(mincore(from, (size_t)(to - from), v) == 0);
        for (long k = 0; k < (to - from) / PAGE; k++)
            CHECKF(!(v[k] & 1), "malloc(%zu) made page %p of the untouched hole resident",
                   want, (void *)(from + k * PAGE));
    }
    /* at most the block's own first page (its header's) */
    CHECKF(mode != ALONE || faults <= 1, "malloc(%zu) from an untouched hole took %ld page faults", want, faults);
    /* medium requests are rounded to a class, four per power of two */
    CHECKF(usable >= want && usable <= want + want / 4 + 64, "usable size %zu for %zu bytes",
           usable, want);
    memset(b, 0x42, want);
    CHECK(b[0] == 0x42 && b[want - 1] == 0x42 && fence[nf - 1] == 0x77);
    free(b);
    free(fence);
    while (nfill > 0)
        free(fill[--nfill]);
}

static void untouched_hole(void)
{
    hole_split(ALONE);
}

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int idle_state; /* 1: the thread has its cache; 2: it may exit */

static void *idle_thread(void *arg)
{
    (void)arg;
    free(malloc(opaque(32))); /* a small block: the thread gets a cache */
    pthread_mutex_lock(&idle_mu);
    idle_state = 1;
    pthread_cond_broadcast(&idle_cv);
    while (idle_state != 2)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    return NULL;
}

/* With a second thread that has a cache, the heap does not ask the kernel
 * while it holds its lock: a thread waiting for the lock would sleep. */
static void untouched_hole_threaded(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0);
    pthread_mutex_lock(&idle_mu);
    while (idle_state != 1)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    hole_split(THREADED);
    pthread_mutex_lock(&idle_mu);
    idle_state = 2;
    pthread_cond_broadcast(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
    CHECK(pthread_join(t, NULL) == 0);
}

/* A pad that does not fit under RLIMIT_AS: the break still grows by the
 * request alone (it is not given up for mapped regions). A new_handler that
 * frees its reserve leaves room for the request, not for the slack a
 * cycling program's growth adds. Run in a child: the limit stays there. */
static void pad_over_limit(void)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        check_in_child = 1;
        CHECK(mallopt(M_MMAP_THRESHOLD, (int)MiB) == 1);
        CHECK(mallopt(M_TOP_PAD, (int)(1024 * MiB)) == 1);
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        CHECK(f != NULL && fscanf(f, "%ld", &pages) == 1);
        fclose(f);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)(pages * sysconf(_SC_PAGESIZE) + 64 * MiB);
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        char *base = sbrk(0);
        enum { N = 100, SIZE = 100 * 1024 };
        static char *b[N];
        for (int i = 0; i < N; i++) {
            b[i] = malloc(opaque(SIZE));
            CHECKF(b[i] != NULL, "malloc(%d) number %d failed under RLIMIT_AS", SIZE, i);
            memset(b[i], i, SIZE);
        }
        long grown = (char *)sbrk(0) - base;
        printf("pad over the limit: the break grew %ld KiB for %d blocks of %d KiB\n",
               grown / KiB, N, SIZE / 1024);
        CHECKF(grown >= (long)N * SIZE, "the break grew %ld KiB for %ld KiB of blocks: "
               "given up for mapped regions", grown / KiB, (long)N * SIZE / KiB);
        for (int i = 0; i < N; i++)
            free(b[i]);
        fflush(stdout);
        _exit(__atomic_load_n(&check_failures, __ATOMIC_RELAXED) != 0 ? 1 : 0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pad_over_limit: child status %#x", st);
}

/* A program whose seccomp filter forbids mincore (failing it with EPERM)
 * still gets every block: the cut stays at the block's size, and memalloc
 * stops asking. The filter cannot be lifted, so this comes last. */
static void mincore_forbidden(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mincore, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
    for (int i = 0; i < 3; i++)
        hole_split(FORBIDDEN);
    size_t (*check_heap)(void) = (size_t(*)(void))memalloc_sym("memalloc_check");
    if (check_heap)
        CHECKF(check_heap() == 0, "memalloc_check() = %zu under the filter", check_heap());
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "cold") == 0)
        return cold_main(); /* before anything else allocates */
    /* The break's behaviours are the heap's: the test runs in a process
     * without medium caches (MEMALLOC_MEDIUM_CACHE=0), where a freed block
     * goes back to the heap at once rather than wait in the thread's cache
     * for a request of its class (c_tests/medium.c tests the break with
     * the caches: malloc_trim and thread exits give them back). */
    if (getenv("MEMALLOC_MEDIUM_CACHE") == NULL) {
        setenv("MEMALLOC_MEDIUM_CACHE", "0", 1);
        execv("/proc/self/exe", argv);
        perror("brk: execv");
        return 1;
    }
    check_begin();
    /* stdio's buffer first, so that it is not the last block of the heap */
    printf("brk test: %d blocks of %d bytes\n", NBLK, BLOCK);
    fflush(stdout);
    heap_starts_at_granule();
    cold_classes();
    zone_pages();
    untouched_hole();
    untouched_hole_threaded();
    /* quiet for over a second, so that the rounds below are not a cycle */
    struct timespec quiet = {1, 200 * 1000 * 1000};
    nanosleep(&quiet, NULL);
    void *base = sbrk(0);
    check_shrunk(grow_and_shrink(1));
    /* at once again: a cycle; the kept tail is bounded by what was taken */
    long kept = grow_and_shrink(2);
    CHECKF(kept <= 2 * NBLK * BLOCK + 256 * KiB, "a cycling program kept %ld KiB of free tail",
           kept / KiB);
    /* quiet for over a second: the next trim keeps no extra tail */
    struct timespec pause = {1, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    grow_and_shrink(3);
    check_shrunk(brk_delta(base)); /* what round 2 kept is gone too */
    large_block();
    string_building();
    mapped_then_heap();
    pad_over_limit();
    mincore_forbidden();
    check_done("brk");
    return 0;
}
