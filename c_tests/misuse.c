/*
 * misuse.c - one heap bug per run, to check that it is caught and reported.
 *
 *   misuse CASE       commits the misuse CASE, then prints "survived CASE"
 *                     and exits 0 if the allocator let it pass
 *   misuse --list     prints the case names, one per line
 *
 * Before the misuse a case prints "report-address 0x..." on stdout: the
 * address a report must name.  c_tests/misuse.sh runs every case under
 * memalloc (linked and preloaded) and expects death by SIGABRT with one
 * stderr line "memalloc: <error> at 0x<that address>" (SIGSEGV and nothing
 * on stderr for debug-guard-page-overflow);
 * scripts/misuse_table.sh runs the basic cases under other allocators too and
 * records what each does.  The program never checks anything itself: what
 * happens to it is the result.
 *
 * Sizes: "small" blocks (64 bytes) come from memalloc's zones (main takes
 * the first few of the class, which come from the heap), "medium"
 * blocks (20000 bytes) are TLSF heap chunks with headers, "large" blocks
 * (1 MiB) are mapped on their own.  Medium blocks are allocated between two
 * others that stay in use, so that a free never coalesces them or moves the
 * break, and every case is deterministic.  The pointers pass through
 * opaque_ptr so that the compiler sees neither the double free nor the
 * out-of-bounds write (it would warn, or drop the dead stores).
 *
 * The debug-* cases are meant for MEMALLOC_DEBUG=1 (fill patterns, canaries,
 * guard pages, quarantine).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

enum { SMALL = 64, MEDIUM = 20000 };

static _Alignas(64) char global_buf[256] = "a global buffer, never returned by malloc";

/* Prints the address the report must name ("report-address 0x..."), for the
 * runner to compare with the address in the stderr line. */
static void expect_report_at(const void *p)
{
    printf("report-address %p\n", p);
}

/* A medium block between two blocks that stay in use (never freed: the
 * process dies or exits right after the misuse). */
static unsigned char *fenced_medium(void)
{
    void *before = opaque_ptr(malloc(MEDIUM));
    unsigned char *p = opaque_ptr(malloc(MEDIUM));
    void *after = opaque_ptr(malloc(MEDIUM));
    if (before == NULL || p == NULL || after == NULL) {
        fprintf(stderr, "misuse: setup malloc failed\n");
        exit(2);
    }
    memset(p, 0, MEDIUM);
    return p;
}

static void double_free_small(void)
{
    void *p = opaque_ptr(malloc(SMALL));
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

static void double_free_medium(void)
{
    unsigned char *p = fenced_medium();
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

static void *free_in_thread(void *p)
{
    free(p);
    return NULL;
}

/* A medium block freed by another thread, which keeps it in its medium
 * cache (src/mcache.rs) while it lives, then freed again here. */
static void double_free_medium_cached_other_thread(void)
{
    void *p = opaque_ptr(malloc(20000));
    memset(p, 1, 20000);
    expect_report_at(p);
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, p);
    pthread_join(t, NULL);
    free(opaque_ptr(p));
}

/* A medium block that waits in this thread's medium cache, freed again. */
static void double_free_medium_cached(void)
{
    void *p = opaque_ptr(malloc(40000));
    memset(p, 1, 40000);
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

/* Blocks of a big medium class (above 256 KiB, src/mcache.rs): a freed
 * mapping of BIG bytes raises the dynamic mmap threshold past them (as
 * glibc's), so that the next ones come from the heap and, freed, wait in
 * the medium caches. */
#define BIG 700000
static unsigned char *big_block(void)
{
    free(opaque_ptr(malloc(opaque(BIG))));
    unsigned char *p = opaque_ptr(malloc(BIG));
    if (p == NULL) {
        fprintf(stderr, "misuse: setup malloc failed\n");
        exit(2);
    }
    memset(p, 1, BIG);
    return p;
}

/* A big block that waits in this thread's medium cache, freed again. */
static void double_free_big_cached(void)
{
    unsigned char *p = big_block();
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

/* A big block that went to its class's shared list (the thread keeps one
 * big chunk: the second and third go there), freed again. */
static void double_free_big_shared(void)
{
    unsigned char *a = big_block();
    unsigned char *b = opaque_ptr(malloc(BIG));
    unsigned char *p = opaque_ptr(malloc(BIG));
    if (b == NULL || p == NULL)
        exit(2);
    expect_report_at(p);
    free(a);
    free(b);
    free(p);
    free(opaque_ptr(p));
}

/* A big block cut from the thread's big reserve and taken back into it
 * when freed (src/small/mcache/slow.rs, `big_cut`: the thread's big
 * classes hold their share, 5 chunks of 1 MiB and 2 of 384 KiB, so that
 * a request of another big class is cut from the reserve), freed again:
 * by this thread (`other` 0) or by another. */
static void big_merged(int other)
{
    enum { N1 = 8, N2 = 3 };
    unsigned char *a[N1], *b[N2];
    free(opaque_ptr(malloc(opaque(2 * MiB))));
    for (int i = 0; i < N1; i++)
        a[i] = opaque_ptr(malloc(1000000));
    for (int i = 0; i < N2; i++)
        b[i] = opaque_ptr(malloc(330000));
    for (int i = 0; i < N1; i++) {
        if (a[i] == NULL)
            exit(2);
        free(a[i]);
    }
    for (int i = 0; i < N2; i++) {
        if (b[i] == NULL)
            exit(2);
        free(b[i]);
    }
    unsigned char *p = opaque_ptr(malloc(BIG));
    if (p == NULL)
        exit(2);
    memset(p, 1, BIG);
    expect_report_at(p);
    free(p);
    if (other) {
        pthread_t t;
        pthread_create(&t, NULL, free_in_thread, p);
        pthread_join(t, NULL);
    } else {
        free(opaque_ptr(p));
    }
}

static void double_free_big_merged(void)
{
    big_merged(0);
}

static void double_free_big_merged_other_thread(void)
{
    big_merged(1);
}

/* 4 KiB into a big block. */
static void free_interior_big(void)
{
    unsigned char *p = big_block();
    expect_report_at(p + 4096);
    free(opaque_ptr(p + 4096));
}

static void double_free_large(void)
{
    void *p = opaque_ptr(malloc(1 * MiB));
    memset(p, 1, 4096);
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

static __attribute__((noinline)) void free_stack(void)
{
    _Alignas(64) char buf[256];
    snprintf(buf, sizeof buf, "%s", "a local buffer on the stack, never returned by malloc");
    expect_report_at(buf + 64);
    free(opaque_ptr(buf + 64));
    /* keep buf live past the free */
    opaque_ptr(buf);
}

static void free_global(void)
{
    expect_report_at(global_buf + 64);
    free(opaque_ptr(global_buf + 64));
}

static void free_interior_small(void)
{
    unsigned char *p = opaque_ptr(malloc(SMALL));
    memset(p, 0, SMALL);
    expect_report_at(p + 32);
    free(opaque_ptr(p + 32));
}

static void free_interior_medium(void)
{
    unsigned char *p = fenced_medium();
    expect_report_at(p + 4096);
    free(opaque_ptr(p + 4096));
}

/* The first byte of a 64 KiB granule inside a medium block: its "header"
 * lies in the granule before (free looks the granule of p - 16 up). */
static void free_interior_granule(void)
{
    unsigned char *p = opaque_ptr(malloc(200000));
    if (p == NULL) {
        fprintf(stderr, "misuse: setup malloc failed\n");
        exit(2);
    }
    memset(p, 0, 200000);
    unsigned char *q = (unsigned char *)(((uintptr_t)p + 16 + 0xffff) & ~(uintptr_t)0xffff);
    expect_report_at(q);
    free(opaque_ptr(q));
}

/* 1 MiB into a block of its own mapping: past the granule that holds its
 * headers, which is all of it the zone map counts. */
static void free_interior_large(void)
{
    unsigned char *p = opaque_ptr(malloc(4 * MiB));
    memset(p, 0, 2 * MiB);
    expect_report_at(p + MiB);
    free(opaque_ptr(p + MiB));
}

static void free_misaligned(void)
{
    unsigned char *p = opaque_ptr(malloc(SMALL));
    memset(p, 0, SMALL);
    expect_report_at(p + 8);
    free(opaque_ptr(p + 8));
}

static void realloc_freed(void)
{
    void *p = opaque_ptr(malloc(SMALL));
    expect_report_at(p);
    free(p);
    void *q = realloc(opaque_ptr(p), 2 * SMALL);
    opaque_ptr(q);
}

static void usable_size_freed(void)
{
    void *p = opaque_ptr(malloc(SMALL));
    expect_report_at(p);
    free(p);
    size_t n = malloc_usable_size(opaque_ptr(p));
    printf("malloc_usable_size of a freed block: %zu\n", n);
}

/* Writes 16 bytes past the end of a medium block: over the next chunk's
 * header (memalloc, glibc: the size word sits right before the next block),
 * then frees the block that overflowed and trims. */
static void overflow_into_next_header(void)
{
    unsigned char *p = fenced_medium();
    unsigned char *q = opaque_ptr(malloc(MEDIUM));
    (void)q;
    size_t n = malloc_usable_size(p);
    expect_report_at(p);
    memset(opaque_ptr(p), 'A', n + 16);
    free(opaque_ptr(p));
    /* A medium block's neighbours are checked when it leaves the thread's
     * cache for the heap (malloc_trim, a flush, the thread's exit); in
     * debug mode, at the free (the canary). */
    malloc_trim(0);
}

/* The same overflow, then the block whose header was overwritten is freed. */
static void overflow_free_next(void)
{
    void *before = opaque_ptr(malloc(MEDIUM));
    unsigned char *p = opaque_ptr(malloc(MEDIUM));
    unsigned char *q = opaque_ptr(malloc(MEDIUM));
    void *after = opaque_ptr(malloc(MEDIUM));
    (void)before;
    (void)after;
    size_t n = malloc_usable_size(p);
    if ((uintptr_t)p == (uintptr_t)q + n + 8) {
        /* (A thread's reserve is cut downwards: the block handed out next
         * may lie just below.) The lower block overflows into the upper. */
        unsigned char *t = p;
        p = q;
        q = t;
    }
    if ((uintptr_t)q != (uintptr_t)p + n + 8)
        printf("note: blocks not adjacent (%p, %p)\n", (void *)p, (void *)q);
    expect_report_at(q);
    memset(opaque_ptr(p), 'A', n + 16);
    free(opaque_ptr(q));
}

/* Writes the 16 bytes before a medium block (its own header), then frees it. */
static void underflow(void)
{
    unsigned char *p = fenced_medium();
    expect_report_at(p);
    memset(opaque_ptr(p - 16), 'U', 16);
    free(opaque_ptr(p));
}

/* Use after free: the first word of a freed small block (where a zone's free
 * list keeps its link) is overwritten with an address the attacker chose,
 * then the same size is allocated until the block would come back (a malloc
 * would return that address if the link were trusted). The block is freed
 * before 63 others, so that it has left the thread's bin (an array, with no
 * link in the block) for its zone's free list by the time it is written. */
/* A use after free of a medium block in its thread's cache: its first 16
 * bytes (the cache's link and its mark) rewritten, then a malloc of its
 * class takes it from the list. q's free pushes p from the pending slot
 * onto the list (mcache: the push waits for the next free). */
static void uaf_medium_cached(void)
{
    void *p = opaque_ptr(malloc(40000));
    void *q = opaque_ptr(malloc(40000));
    expect_report_at(p);
    free(p);
    free(q);
    memset(opaque_ptr(p), 0x41, 16);
    void *a = opaque_ptr(malloc(40000));
    printf("after the use after free: malloc returned %p\n", a);
}

static void uaf_freelist(void)
{
    enum { OTHERS = 63, TRIES = 256 };
    void *others[OTHERS];
    for (int i = 0; i < OTHERS; i++)
        others[i] = opaque_ptr(malloc(SMALL));
    uintptr_t *p = opaque_ptr(malloc(SMALL));
    expect_report_at(p);
    free(p);
    for (int i = 0; i < OTHERS; i++)
        free(others[i]);
    *(uintptr_t *)opaque_ptr(p) = (uintptr_t)global_buf;
    for (int i = 0; i < TRIES; i++) {
        void *a = opaque_ptr(malloc(SMALL));
        if (a == (void *)global_buf) {
            printf("hijacked: malloc returned the planted address %p\n", a);
            return;
        }
    }
    printf("after the use after free: %d mallocs, none returned global_buf (%p)\n", TRIES,
           (void *)global_buf);
}

/* ---- debug mode (MEMALLOC_DEBUG=1) ---------------------------------------- */

/* One byte past the requested size (inside the block's slack, where no
 * header lies: only a canary can see it). */
static void debug_canary_overflow(void)
{
    unsigned char *p = opaque_ptr(malloc(100));
    expect_report_at(p);
    p[100] = 0;
    opaque_ptr(p);
    free(p);
}

/* Writes one byte into a freed block, then frees enough other blocks to push
 * it out of the quarantine, where it is checked. */
static void debug_write_after_free(void)
{
    unsigned char *p = opaque_ptr(malloc(100));
    expect_report_at(p + 10);
    free(p);
    ((unsigned char *)opaque_ptr(p))[10] = 0x42;
    for (int i = 0; i < 3000; i++)
        free(opaque_ptr(malloc(100)));
}

/* Writes past the end of a large block, up to a page, into its guard page. */
static void debug_guard_page_overflow(void)
{
    size_t n = 1 * MiB;
    volatile unsigned char *p = opaque_ptr(malloc(n));
    for (size_t i = n; i < n + 2 * 4096; i++)
        p[i] = 0x47;
}

static void debug_double_free_quarantine(void)
{
    void *p = opaque_ptr(malloc(100));
    expect_report_at(p);
    free(p);
    free(opaque_ptr(p));
}

/* C23 free_sized and free_aligned_sized, looked up at run time (glibc
 * before 2.39 has neither, and the plain build links no memalloc). */
static void call_free_sized(void *p, size_t size)
{
    void (*f)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    if (f == NULL) {
        printf("no free_sized in this process\n");
        exit(0);
    }
    f(p, size);
}

/* free_sized with a size other than the one requested (4 bytes short, as a
 * sized delete of the wrong type would pass). */
static void debug_free_sized_wrong(void)
{
    void *p = opaque_ptr(malloc(100));
    expect_report_at(p);
    call_free_sized(p, opaque(96));
}

static void debug_free_sized_wrong_large(void)
{
    void *p = opaque_ptr(malloc(1 * MiB));
    expect_report_at(p);
    call_free_sized(p, opaque(1 * MiB + 16));
}

/* free_aligned_sized with the right size and an alignment the block does
 * not have (twice the largest power of two dividing its address). */
static void debug_free_aligned_sized_wrong(void)
{
    void (*f)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    void *p = opaque_ptr(aligned_alloc(64, 256));
    if (f == NULL || p == NULL) {
        printf("no free_aligned_sized in this process\n");
        exit(0);
    }
    expect_report_at(p);
    uintptr_t a = (uintptr_t)p;
    f(p, opaque((size_t)((a & -a) << 1)), opaque(256));
}

static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {
    {"double-free-small", double_free_small},
    {"double-free-medium", double_free_medium},
    {"double-free-medium-cached", double_free_medium_cached},
    {"double-free-medium-cached-other-thread", double_free_medium_cached_other_thread},
    {"double-free-big-cached", double_free_big_cached},
    {"double-free-big-shared", double_free_big_shared},
    {"double-free-big-merged", double_free_big_merged},
    {"double-free-big-merged-other-thread", double_free_big_merged_other_thread},
    {"double-free-large", double_free_large},
    {"free-stack", free_stack},
    {"free-global", free_global},
    {"free-interior-small", free_interior_small},
    {"free-interior-medium", free_interior_medium},
    {"free-interior-big", free_interior_big},
    {"free-interior-granule", free_interior_granule},
    {"free-interior-large", free_interior_large},
    {"free-misaligned", free_misaligned},
    {"realloc-freed", realloc_freed},
    {"usable-size-freed", usable_size_freed},
    {"overflow-into-next-header", overflow_into_next_header},
    {"overflow-free-next", overflow_free_next},
    {"underflow", underflow},
    {"uaf-freelist", uaf_freelist},
    {"uaf-medium-cached", uaf_medium_cached},
    {"debug-canary-overflow", debug_canary_overflow},
    {"debug-write-after-free", debug_write_after_free},
    {"debug-guard-page-overflow", debug_guard_page_overflow},
    {"debug-double-free-quarantine", debug_double_free_quarantine},
    {"debug-free-sized-wrong", debug_free_sized_wrong},
    {"debug-free-sized-wrong-large", debug_free_sized_wrong_large},
    {"debug-free-aligned-sized-wrong", debug_free_aligned_sized_wrong},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: misuse CASE | --list\n");
        return 2;
    }
    size_t ncases = sizeof cases / sizeof cases[0];
    if (strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < ncases; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    for (size_t i = 0; i < ncases; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            /* stdout unbuffered: what was printed before a crash is seen */
            setvbuf(stdout, NULL, _IONBF, 0);
            /* so that small blocks come from memalloc's zones (check.h) */
            warm_class(SMALL);
            warm_class(2 * SMALL);
            cases[i].run();
            printf("survived %s\n", cases[i].name);
            return 0;
        }
    }
    fprintf(stderr, "misuse: unknown case %s (try --list)\n", argv[1]);
    return 2;
}
