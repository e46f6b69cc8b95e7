/*
 * api.c - every exported function of the C allocator API with its edge cases,
 * checked against glibc's documented behaviour (malloc(3), posix_memalign(3),
 * malloc_usable_size(3), mallinfo(3), mallopt(3), malloc_info(3),
 * malloc_trim(3)).
 *
 * Runs under any allocator; a function that the allocator under test does not
 * provide itself (e.g. glibc's mallinfo2 under jemalloc) is skipped, except
 * under MEMALLOC_EXPECT=1, where it must come from libmemalloc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memalloc.h"
#include "check.h"

/* Not in glibc 2.36's headers (cfree is a compat symbol only, free_sized and
 * free_aligned_sized came with C23): weak, so that the plain build links and
 * the preloaded library provides them at run time. */
#pragma weak cfree
#pragma weak free_sized
#pragma weak free_aligned_sized

/* glibc's internal aliases; a replacement malloc must export them too. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern int __posix_memalign(void **, size_t, size_t);
#pragma weak __libc_malloc
#pragma weak __libc_free
#pragma weak __libc_calloc
#pragma weak __libc_realloc
#pragma weak __libc_memalign
#pragma weak __libc_valloc
#pragma weak __libc_pvalloc
#pragma weak __posix_memalign

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static size_t page;

static int aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* Index of the first non-zero byte of p[0..n), or (size_t)-1. */
static size_t first_nonzero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return i;
    return (size_t)-1;
}

static size_t first_not(const void *p, size_t n, unsigned char v)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return i;
    return (size_t)-1;
}

#define CHECK_BYTES(p, n, v)                                                  \
    do {                                                                      \
        size_t bad_ = first_not((p), (n), (unsigned char)(v));                \
        CHECKF(bad_ == (size_t)-1, "%p[%zu] != 0x%02x (size %zu)", (void *)(p), bad_, \
               (unsigned)(unsigned char)(v), (size_t)(n));                   \
    } while (0)

#define CHECK_ZERO(p, n)                                                      \
    do {                                                                      \
        size_t bad_ = first_nonzero((p), (n));                                \
        CHECKF(bad_ == (size_t)-1, "calloc'd %p of %zu bytes non-zero at %zu", \
               (void *)(p), (size_t)(n), bad_);                              \
    } while (0)

/* A pointer returned by an allocation call that must fail: NULL + ENOMEM. */
#define CHECK_ENOMEM(expr, what)                                              \
    do {                                                                      \
        errno = 0;                                                            \
        void *r_ = (expr);                                                    \
        int e_ = errno;                                                       \
        CHECKF(r_ == NULL, "%s returned %p", what, r_);                       \
        CHECKF(e_ == ENOMEM, "%s: errno %d, want ENOMEM", what, e_);          \
    } while (0)

/* ---- the export table ---------------------------------------------------- */

/* Under memalloc, every member of the family must come from libmemalloc: one
 * left to glibc means two heaps in one process (DESIGN.md, "C ABI surface"). */
static void test_exports(void)
{
    static const char *const names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size", "cfree",
        "free_sized", "free_aligned_sized", "malloc_trim", "mallinfo", "mallinfo2", "mallopt",
        "malloc_stats", "malloc_info", "__libc_malloc", "__libc_free", "__libc_calloc",
        "__libc_realloc", "__libc_memalign", "__libc_valloc", "__libc_pvalloc",
        "__posix_memalign",
    };
    if (!memalloc_expected())
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        from_allocator(dlsym(RTLD_DEFAULT, names[i]), names[i]);
}

/* ---- malloc / free ---------------------------------------------------- */

static void test_malloc_zero(void)
{
    void *p = malloc(opaque(0));
    void *q = malloc(opaque(0));
    CHECK(p != NULL);
    CHECK(q != NULL);
    CHECK(p != q);
    CHECK(aligned(p, 16) && aligned(q, 16));
    free(p);
    free(q);
}

static void test_alignment_and_overlap(void)
{
    enum { N = 5001 };
    static void *blk[N];
    for (size_t n = 0; n < N; n++) {
        blk[n] = malloc(opaque(n));
        CHECKF(blk[n] != NULL, "malloc(%zu)", n);
        CHECKF(aligned(blk[n], 16), "malloc(%zu) = %p", n, blk[n]);
        pattern_fill(blk[n], n);
    }
    /* All live at once: any overlap shows as a broken pattern. */
    for (size_t n = 0; n < N; n++)
        CHECK_PATTERN(blk[n], n);
    for (size_t n = 0; n < N; n++)
        free(blk[n]);

    static const size_t large[] = {
        128 * KiB - 1, 128 * KiB, 128 * KiB + 1, 200 * KiB, 1 * MiB, 1 * MiB + 1,
        10 * MiB + 5,  33 * MiB,  100 * MiB + 3,
    };
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        size_t n = opaque(large[i]);
        unsigned char *p = malloc(n);
        CHECKF(p != NULL, "malloc(%zu)", n);
        CHECKF(aligned(p, 16), "malloc(%zu) = %p", n, (void *)p);
        p[0] = 1;
        p[n / 2] = 2;
        p[n - 1] = 3;
        CHECK(p[0] == 1 && p[n / 2] == 2 && p[n - 1] == 3);
        CHECKF(malloc_usable_size(p) >= n, "usable %zu < %zu", malloc_usable_size(p), n);
        free(p);
    }
}

static void test_free(void)
{
    free(NULL);
    free(opaque_ptr(NULL));

    static const size_t sizes[] = {0, 1, 100, 5000, 100 * KiB, 1 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(opaque(sizes[i]));
        CHECK(p != NULL);
        errno = 1234;
        free(p);
        CHECKF(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
    void *p = NULL;
    CHECK(posix_memalign(&p, 4096, opaque(3000)) == 0);
    errno = 1234;
    free(p);
    CHECK(errno == 1234);
    errno = 1234;
    free(NULL);
    CHECK(errno == 1234);

    /* frees that give memory back (heap trimmed, pages released) too */
    enum { NB = 2048 };
    static void *blk[NB];
    for (int i = 0; i < NB; i++) {
        blk[i] = malloc(opaque(2000));
        CHECK(blk[i] != NULL);
    }
    errno = 1234;
    for (int i = NB - 1; i >= 0; i--)
        free(blk[i]);
    CHECKF(errno == 1234, "freeing 4 MiB of small blocks changed errno to %d", errno);
}

static void test_huge_malloc(void)
{
    CHECK_ENOMEM(malloc(opaque(SIZE_MAX)), "malloc(SIZE_MAX)");
    CHECK_ENOMEM(malloc(opaque(SIZE_MAX - 15)), "malloc(SIZE_MAX-15)");
    CHECK_ENOMEM(malloc(opaque(SIZE_MAX - 4096)), "malloc(SIZE_MAX-4096)");
    CHECK_ENOMEM(malloc(opaque(PTRDIFF_MAX)), "malloc(PTRDIFF_MAX)");
    CHECK_ENOMEM(malloc(opaque((size_t)PTRDIFF_MAX + 1)), "malloc(PTRDIFF_MAX+1)");
    CHECK_ENOMEM(malloc(opaque(SIZE_MAX / 2)), "malloc(SIZE_MAX/2)");
    /* The heap still works afterwards. */
    void *p = malloc(opaque(100));
    CHECK(p != NULL);
    free(p);
}

/* ---- realloc ------------------------------------------------------------ */

/* realloc p (n bytes, holding pattern_fill(p, n)) to m bytes; checks that the
 * first min(n, m) bytes moved with it and refills the new block. */
static void *realloc_checked(void *p, size_t n, size_t m)
{
    uintptr_t old = (uintptr_t)p;
    unsigned char *q = realloc(p, opaque(m));
    CHECKF(q != NULL, "realloc(%zu -> %zu)", n, m);
    CHECKF(aligned(q, 16), "realloc(%zu -> %zu) = %p", n, m, (void *)q);
    size_t keep = n < m ? n : m;
    size_t bad = pattern_find_bad(q, old, n, keep);
    CHECKF(bad == (size_t)-1, "realloc %zu -> %zu lost contents at offset %zu", n, m, bad);
    CHECKF(malloc_usable_size(q) >= m, "usable %zu < %zu", malloc_usable_size(q), m);
    pattern_fill(q, m);
    return q;
}

static void test_realloc(void)
{
    /* realloc(NULL, n) is malloc(n). */
    void *p = realloc(NULL, opaque(100));
    CHECK(p != NULL && aligned(p, 16));
    pattern_fill(p, 100);
    CHECK_PATTERN(p, 100);
    free(p);
    p = realloc(NULL, opaque(0));
    CHECK(p != NULL);
    free(p);

    /* realloc(p, 0) frees p and returns NULL (glibc; see realloc(3)). */
    p = malloc(opaque(100));
    CHECK(p != NULL);
    CHECK(realloc(p, opaque(0)) == NULL);
    p = malloc(opaque(1 * MiB));
    CHECK(p != NULL);
    CHECK(realloc(p, opaque(0)) == NULL);

    /* The named transitions. */
    static const size_t steps[][2] = {
        {100, 200},              /* small -> small (grow) */
        {200, 50},               /* small -> small (shrink) */
        {16, 17},                /* across a size class */
        {1000, 256 * KiB},       /* small -> large (mmap) */
        {256 * KiB, 4 * MiB},    /* large -> larger */
        {4 * MiB, 4 * MiB + 1},  /* large -> slightly larger */
        {4 * MiB, 3 * MiB},      /* large -> smaller large */
        {4 * MiB, 100},          /* large -> small */
        {128 * KiB, 64 * KiB},   /* around the mmap threshold */
        {64 * KiB, 128 * KiB},
        {5000, 5000},            /* same size */
        {0, 10},
        {10, 1},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i][0], m = steps[i][1];
        /* a neighbour, so that growing in place is not always possible */
        void *before = malloc(opaque(n));
        CHECK(before != NULL);
        pattern_fill(before, n);
        p = malloc(opaque(n));
        void *after = malloc(opaque(n));
        CHECK(p != NULL && after != NULL);
        pattern_fill(p, n);
        pattern_fill(after, n);
        p = realloc_checked(p, n, m);
        CHECK_PATTERN(before, n);
        CHECK_PATTERN(after, n);
        free(before);
        free(after);
        CHECK_PATTERN(p, m);
        free(p);
    }

    /* A long growth and shrink sequence, contents checked at each step. */
    size_t n = 1;
    p = malloc(opaque(n));
    CHECK(p != NULL);
    pattern_fill(p, n);
    while (n < 3 * MiB) {
        size_t m = n + n / 4 + 7;
        p = realloc_checked(p, n, m);
        n = m;
    }
    while (n > 8) {
        size_t m = n - n / 5 - 1;
        p = realloc_checked(p, n, m);
        n = m;
    }
    free(p);

    /* Blocks from the aligned family reallocate like any other (realloc
     * need not keep the alignment beyond 16, but must keep the contents). */
    static const size_t al[][3] = {
        /* alignment, size, new size */
        {4096, 1000, 100000},
        {4096, 100000, 500},
        {64 * KiB, 300 * KiB, 2 * MiB},
        {2 * MiB, 300 * KiB, 64},
        {2 * MiB, 1 * MiB, 3 * MiB},
    };
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        void *q = NULL;
        CHECK(posix_memalign(&q, al[i][0], opaque(al[i][1])) == 0);
        CHECK(aligned(q, al[i][0]));
        pattern_fill(q, al[i][1]);
        q = realloc_checked(q, al[i][1], al[i][2]);
        free(q);
    }

    /* A failed realloc returns NULL with ENOMEM and leaves the block intact. */
    static const size_t olds[] = {100, 5000, 300 * KiB};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        size_t o = olds[i];
        p = malloc(opaque(o));
        CHECK(p != NULL);
        pattern_fill(p, o);
        CHECK_ENOMEM(realloc(opaque_ptr(p), opaque(SIZE_MAX / 2)), "realloc(p, SIZE_MAX/2)");
        CHECK_ENOMEM(realloc(opaque_ptr(p), opaque(SIZE_MAX - 10)), "realloc(p, SIZE_MAX-10)");
        CHECK_PATTERN(p, o);
        p = realloc_checked(p, o, o + 1000);
        free(p);
    }
    CHECK_ENOMEM(realloc(NULL, opaque(SIZE_MAX / 2)), "realloc(NULL, SIZE_MAX/2)");
}

static void test_reallocarray(void)
{
    if (!from_allocator((void *)reallocarray, "reallocarray"))
        return;
    unsigned char *p = reallocarray(NULL, opaque(4), opaque(8));
    CHECK(p != NULL);
    pattern_fill(p, 32);
    uintptr_t old = (uintptr_t)p;
    p = reallocarray(p, opaque(10), opaque(20));
    CHECK(p != NULL);
    CHECK(pattern_find_bad(p, old, 32, 32) == (size_t)-1);
    /* a failing reallocarray leaves the block as it was */
    unsigned char copy[32];
    memcpy(copy, p, 32);
    errno = 0;
    void *r = reallocarray(opaque_ptr(p), opaque(SIZE_MAX / 2), opaque(3));
    CHECK(r == NULL);
    CHECK(errno == ENOMEM);
    CHECK(memcmp(copy, p, 32) == 0);
    errno = 0;
    r = reallocarray(opaque_ptr(p), opaque((size_t)1 << 33), opaque((size_t)1 << 33));
    CHECK(r == NULL && errno == ENOMEM);
    CHECK(memcmp(copy, p, 32) == 0);
    memset(p + 32, 0x5a, 200 - 32);
    CHECK_BYTES(p + 32, 200 - 32, 0x5a);
    free(p);

    /* contents preserved by a growing reallocarray */
    p = malloc(opaque(64));
    CHECK(p != NULL);
    for (int i = 0; i < 64; i++)
        p[i] = (unsigned char)(i * 3);
    p = reallocarray(p, opaque(1000), opaque(300));
    CHECK(p != NULL);
    for (int i = 0; i < 64; i++)
        CHECK(p[i] == (unsigned char)(i * 3));
    free(p);
}

/* ---- calloc ------------------------------------------------------------- */

static void test_calloc(void)
{
    static const size_t sizes[] = {1, 24, 100, 1000, 4000, 70000, 200 * KiB, 1 * MiB, 64 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        int reps = n >= 64 * MiB ? 2 : 6;
        for (int r = 0; r < reps; r++) {
            /* dirty a block of the same size, free it, then calloc: the
             * recycled block must come back zeroed */
            unsigned char *d = malloc(opaque(n));
            CHECK(d != NULL);
            memset(d, 0xA5, n);
            free(opaque_ptr(d));
            unsigned char *p = (r & 1) ? calloc(opaque(n), opaque(1)) : calloc(opaque(1), opaque(n));
            CHECKF(p != NULL, "calloc(%zu)", n);
            CHECKF(aligned(p, 16), "calloc(%zu) = %p", n, (void *)p);
            CHECK_ZERO(p, n);
            memset(p, 0x5A, n);
            free(p);
        }
    }
    /* nmemb * size with neither factor 1 */
    unsigned char *p = calloc(opaque(1000), opaque(33));
    CHECK(p != NULL);
    CHECK_ZERO(p, 33000);
    free(p);
    p = calloc(opaque(0), opaque(0));
    CHECK(p != NULL);
    free(p);
    p = calloc(opaque(0), opaque(100));
    CHECK(p != NULL);
    free(p);

    /* many small callocs among dirty frees */
    void *keep[200];
    for (int i = 0; i < 200; i++) {
        size_t n = 16 + (size_t)i * 8;
        void *d = malloc(opaque(n));
        CHECK(d != NULL);
        memset(d, 0xFF, n);
        free(opaque_ptr(d));
        keep[i] = calloc(opaque(1), opaque(n));
        CHECK(keep[i] != NULL);
        CHECK_ZERO(keep[i], n);
    }
    for (int i = 0; i < 200; i++)
        free(keep[i]);

    CHECK_ENOMEM(calloc(opaque(SIZE_MAX / 2), opaque(3)), "calloc(SIZE_MAX/2, 3)");
    CHECK_ENOMEM(calloc(opaque(3), opaque(SIZE_MAX / 2)), "calloc(3, SIZE_MAX/2)");
    CHECK_ENOMEM(calloc(opaque(SIZE_MAX), opaque(SIZE_MAX)), "calloc(SIZE_MAX, SIZE_MAX)");
    CHECK_ENOMEM(calloc(opaque((size_t)1 << 32), opaque((size_t)1 << 32)), "calloc(2^32, 2^32)");
    CHECK_ENOMEM(calloc(opaque(1), opaque(SIZE_MAX - 8)), "calloc(1, SIZE_MAX-8)");
}

/* ---- aligned allocation ------------------------------------------------- */

static void test_posix_memalign(void)
{
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 48, 96, 4097};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = (void *)0x1234;
        errno = 777;
        int rc = posix_memalign(&p, opaque(bad[i]), opaque(100));
        CHECKF(rc == EINVAL, "posix_memalign(alignment %zu) = %d, want EINVAL", bad[i], rc);
        CHECKF(errno == 777, "posix_memalign(alignment %zu) changed errno to %d", bad[i], errno);
        CHECKF(p == (void *)0x1234, "posix_memalign failure wrote memptr (%p)", p);
    }

    static const size_t sizes[] = {1, 100, 5000, 200000};
    for (size_t a = sizeof(void *); a <= 4 * MiB; a *= 2) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            void *p = NULL;
            errno = 777;
            int rc = posix_memalign(&p, opaque(a), opaque(n));
            CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", a, n, rc);
            CHECKF(errno == 777, "posix_memalign(%zu, %zu) changed errno to %d", a, n, errno);
            CHECKF(p != NULL && aligned(p, a), "posix_memalign(%zu, %zu) = %p", a, n, p);
            CHECKF(malloc_usable_size(p) >= n, "usable %zu < %zu", malloc_usable_size(p), n);
            pattern_fill(p, n);
            CHECK_PATTERN(p, n);
            free(p);
        }
    }
    /* several live aligned blocks next to each other do not overlap */
    void *blk[64];
    for (int i = 0; i < 64; i++) {
        size_t a = (size_t)16 << (i % 10), n = 24 + (size_t)i * 40;
        CHECK(posix_memalign(&blk[i], a, opaque(n)) == 0);
        CHECKF(aligned(blk[i], a), "posix_memalign(%zu, %zu) = %p", a, n, blk[i]);
        pattern_fill(blk[i], n);
    }
    for (int i = 0; i < 64; i++) {
        CHECK_PATTERN(blk[i], 24 + (size_t)i * 40);
        free(blk[i]);
    }

    /* huge sizes: ENOMEM returned, memptr untouched */
    void *p = (void *)0x1234;
    int rc = posix_memalign(&p, 64, opaque(SIZE_MAX - 100));
    CHECKF(rc == ENOMEM, "posix_memalign(64, SIZE_MAX-100) = %d", rc);
    CHECK(p == (void *)0x1234);
    rc = posix_memalign(&p, opaque((size_t)1 << 62), opaque(1));
    CHECKF(rc == ENOMEM, "posix_memalign(2^62, 1) = %d", rc);
    CHECK(p == (void *)0x1234);
}

static void test_aligned_alloc_memalign(void)
{
    static const size_t sizes[] = {1, 64, 100, 5000, 200000};
    for (size_t a = 16; a <= 1 * MiB; a *= 4) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            void *p = aligned_alloc(opaque(a), opaque(n));
            CHECKF(p != NULL && aligned(p, a), "aligned_alloc(%zu, %zu) = %p", a, n, p);
            pattern_fill(p, n);
            CHECK_PATTERN(p, n);
            free(p);
            p = memalign(opaque(a), opaque(n));
            CHECKF(p != NULL && aligned(p, a), "memalign(%zu, %zu) = %p", a, n, p);
            CHECKF(malloc_usable_size(p) >= n, "usable %zu < %zu", malloc_usable_size(p), n);
            pattern_fill(p, n);
            CHECK_PATTERN(p, n);
            free(p);
        }
    }
    /* small alignments still give malloc's 16 */
    void *p = memalign(opaque(1), opaque(10));
    CHECK(p != NULL && aligned(p, 16));
    free(p);
    p = memalign(opaque(8), opaque(10));
    CHECK(p != NULL && aligned(p, 16));
    free(p);

    CHECK_ENOMEM(aligned_alloc(opaque(64), opaque(SIZE_MAX - 100)), "aligned_alloc(64, SIZE_MAX-100)");
    CHECK_ENOMEM(memalign(opaque(4096), opaque(SIZE_MAX / 2)), "memalign(4096, SIZE_MAX/2)");
}

static void test_valloc_pvalloc(void)
{
    static const size_t sizes[] = {1, 100, 4096, 5000, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p = valloc(opaque(n));
        CHECKF(p != NULL && aligned(p, page), "valloc(%zu) = %p", n, p);
        CHECK(malloc_usable_size(p) >= n);
        pattern_fill(p, n);
        CHECK_PATTERN(p, n);
        free(p);
    }
    if (from_allocator((void *)pvalloc, "pvalloc")) {
        static const size_t psizes[] = {1, 4095, 4096, 4097, 200000};
        for (size_t i = 0; i < sizeof psizes / sizeof psizes[0]; i++) {
            size_t n = psizes[i], rounded = (n + page - 1) / page * page;
            void *p = pvalloc(opaque(n));
            CHECKF(p != NULL && aligned(p, page), "pvalloc(%zu) = %p", n, p);
            CHECKF(malloc_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", n,
                   malloc_usable_size(p), rounded);
            pattern_fill(p, rounded);
            CHECK_PATTERN(p, rounded);
            free(p);
        }
        CHECK_ENOMEM(pvalloc(opaque(SIZE_MAX - 100)), "pvalloc(SIZE_MAX-100)");
    }
    CHECK_ENOMEM(valloc(opaque(SIZE_MAX - 100)), "valloc(SIZE_MAX-100)");
}

/* ---- malloc_usable_size ------------------------------------------------- */

static void test_usable_size(void)
{
    CHECK(malloc_usable_size(NULL) == 0);
    CHECK(malloc_usable_size(opaque_ptr(NULL)) == 0);

    for (size_t n = 0; n < 2100 + 16 * KiB; n += (n < 2100 ? 1 : 509)) {
        size_t sz = opaque(n);
        unsigned char *a = malloc(sz), *b = malloc(sz), *c = malloc(sz);
        CHECK(a != NULL && b != NULL && c != NULL);
        size_t ua = malloc_usable_size(a), ub = malloc_usable_size(b), uc = malloc_usable_size(c);
        CHECKF(ua >= n && ub >= n && uc >= n, "usable sizes %zu %zu %zu < %zu", ua, ub, uc, n);
        memset(a, 0x11, ua);
        memset(c, 0x33, uc);
        memset(b, 0x22, ub);  /* the whole usable size of b */
        CHECK_BYTES(a, ua, 0x11);
        CHECK_BYTES(c, uc, 0x33);
        CHECK_BYTES(b, ub, 0x22);
        free(b);
        CHECK_BYTES(a, ua, 0x11);
        CHECK_BYTES(c, uc, 0x33);
        free(a);
        free(c);
    }
    static const size_t large[] = {64 * KiB, 128 * KiB - 8, 128 * KiB, 140 * KiB, 1 * MiB + 3};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        size_t n = opaque(large[i]);
        unsigned char *a = malloc(n), *b = malloc(n);
        CHECK(a != NULL && b != NULL);
        size_t ua = malloc_usable_size(a), ub = malloc_usable_size(b);
        CHECK(ua >= n && ub >= n);
        memset(a, 0x44, ua);
        memset(b, 0x55, ub);
        CHECK_BYTES(a, ua, 0x44);
        CHECK_BYTES(b, ub, 0x55);
        free(a);
        free(b);
    }
}

/* ---- the rest of the family ---------------------------------------------- */

static void test_sized_frees(void)
{
    if (from_allocator((void *)cfree, "cfree")) {
        void *p = malloc(opaque(100));
        CHECK(p != NULL);
        errno = 1234;
        cfree(p);
        CHECK(errno == 1234);
        cfree(NULL);
    }
    if (from_allocator((void *)free_sized, "free_sized")) {
        static const size_t sizes[] = {0, 1, 100, 5000, 300 * KiB};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = malloc(opaque(sizes[i]));
            CHECK(p != NULL);
            free_sized(p, sizes[i]);
        }
        void *p = calloc(opaque(10), opaque(10));
        CHECK(p != NULL);
        free_sized(p, 100);
        free_sized(NULL, 0);
    }
    if (from_allocator((void *)free_aligned_sized, "free_aligned_sized")) {
        for (size_t a = 16; a <= 64 * KiB; a *= 4) {
            void *p = aligned_alloc(opaque(a), opaque(3 * a));
            CHECK(p != NULL && aligned(p, a));
            free_aligned_sized(p, a, 3 * a);
        }
        free_aligned_sized(NULL, 64, 0);
    }
    /* the heap is still sane */
    void *p = malloc(opaque(100));
    CHECK(p != NULL);
    free(p);
}

static void test_trim_mallopt(void)
{
    if (from_allocator((void *)malloc_trim, "malloc_trim")) {
        void *blk[100];
        for (int i = 0; i < 100; i++)
            blk[i] = malloc(opaque(10000));
        for (int i = 0; i < 100; i++)
            free(blk[i]);
        int r = malloc_trim(0);
        CHECKF(r == 0 || r == 1, "malloc_trim(0) = %d", r);
        r = malloc_trim(opaque(1 * MiB));
        CHECKF(r == 0 || r == 1, "malloc_trim(1 MiB) = %d", r);
    }
    if (from_allocator((void *)mallopt, "mallopt")) {
        CHECK(mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1);
        CHECK(mallopt(M_TRIM_THRESHOLD, 256 * 1024) == 1);
        CHECK(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
        CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
    }
    /* allocation around the threshold still works */
    void *p = malloc(opaque(200 * KiB));
    CHECK(p != NULL);
    memset(p, 1, 200 * KiB);
    free(p);
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void test_mallinfo(void)
{
    if (from_allocator((void *)mallinfo2, "mallinfo2")) {
        enum { NB = 1024 };
        static void *blk[NB];
        struct mallinfo2 m0 = mallinfo2();
        for (int i = 0; i < NB; i++) {
            blk[i] = malloc(opaque(1024));
            CHECK(blk[i] != NULL);
            memset(blk[i], 0x77, 1024);
        }
        struct mallinfo2 m1 = mallinfo2();
        CHECKF(m1.uordblks >= m0.uordblks + 1 * MiB, "uordblks %zu -> %zu after 1 MiB", m0.uordblks,
               m1.uordblks);
        CHECKF(m1.arena > 0, "arena %zu", m1.arena);
        CHECKF(m1.uordblks <= m1.arena + m1.hblkhd, "uordblks %zu > arena %zu + hblkhd %zu",
               m1.uordblks, m1.arena, m1.hblkhd);

        /* 64 MiB is above every dynamic mmap threshold: mapped on its own */
        size_t big = opaque(64 * MiB);
        unsigned char *b = malloc(big);
        CHECK(b != NULL);
        b[0] = b[big - 1] = 1;
        struct mallinfo2 m2 = mallinfo2();
        CHECKF(m2.hblkhd >= m1.hblkhd + big, "hblkhd %zu -> %zu after a 64 MiB block", m1.hblkhd,
               m2.hblkhd);
        CHECKF(m2.hblks >= m1.hblks + 1, "hblks %zu -> %zu", m1.hblks, m2.hblks);
        free(b);
        struct mallinfo2 m3 = mallinfo2();
        CHECKF(m3.hblkhd + big <= m2.hblkhd, "hblkhd %zu -> %zu after freeing 64 MiB", m2.hblkhd,
               m3.hblkhd);
        for (int i = 0; i < NB; i++)
            free(blk[i]);
    }
    if (from_allocator((void *)mallinfo, "mallinfo")) {
        void *p = malloc(opaque(100 * 1000));
        CHECK(p != NULL);
        struct mallinfo m = mallinfo();
        CHECKF(m.arena > 0 || m.hblkhd > 0, "mallinfo arena %d hblkhd %d", m.arena, m.hblkhd);
        CHECKF(m.uordblks > 0 || m.hblkhd > 0, "mallinfo uordblks %d", m.uordblks);
        free(p);
    }
}
#pragma GCC diagnostic pop

static void test_stats_info(void)
{
    if (from_allocator((void *)malloc_stats, "malloc_stats"))
        malloc_stats();  /* to stderr; must not crash */

    if (!from_allocator((void *)malloc_info, "malloc_info"))
        return;
    void *p = malloc(opaque(3000));
    FILE *f = tmpfile();
    CHECK(f != NULL);
    CHECK(malloc_info(0, f) == 0);
    CHECK(fflush(f) == 0);
    long len = ftell(f);
    CHECKF(len >= 8, "malloc_info wrote %ld bytes", len);
    rewind(f);
    char head[16] = {0};
    CHECK(fread(head, 1, 7, f) == 7);
    CHECKF(strncmp(head, "<malloc", 7) == 0, "malloc_info output starts with \"%s\"", head);
    /* options must be 0 */
    CHECK(malloc_info(1, f) != 0);
    fclose(f);
    free(p);
}

static void test_libc_aliases(void)
{
    if (from_allocator((void *)__libc_malloc, "__libc_malloc") &&
        from_allocator((void *)__libc_free, "__libc_free")) {
        unsigned char *p = __libc_malloc(opaque(100));
        CHECK(p != NULL && aligned(p, 16));
        pattern_fill(p, 100);
        CHECK_PATTERN(p, 100);
        free(p);  /* __libc_malloc memory freed by free */
        p = malloc(opaque(300 * KiB));
        CHECK(p != NULL);
        __libc_free(p);  /* and the other way round */
        p = __libc_malloc(opaque(1 * MiB));
        CHECK(p != NULL);
        p[1 * MiB - 1] = 1;
        __libc_free(p);
        __libc_free(NULL);
    }
    if (from_allocator((void *)__libc_calloc, "__libc_calloc")) {
        unsigned char *d = malloc(opaque(512));
        memset(d, 0xEE, 512);
        free(opaque_ptr(d));
        void *p = __libc_calloc(opaque(16), opaque(32));
        CHECK(p != NULL);
        CHECK_ZERO(p, 512);
        free(p);
        CHECK_ENOMEM(__libc_calloc(opaque(SIZE_MAX / 2), opaque(3)), "__libc_calloc overflow");
    }
    if (from_allocator((void *)__libc_realloc, "__libc_realloc")) {
        void *p = malloc(opaque(100));
        CHECK(p != NULL);
        pattern_fill(p, 100);
        uintptr_t old = (uintptr_t)p;
        p = __libc_realloc(p, opaque(200 * KiB));
        CHECK(p != NULL);
        CHECK(pattern_find_bad(p, old, 100, 100) == (size_t)-1);
        free(p);
    }
    if (from_allocator((void *)__libc_memalign, "__libc_memalign")) {
        void *p = __libc_memalign(opaque(256), opaque(1000));
        CHECK(p != NULL && aligned(p, 256));
        memset(p, 1, 1000);
        free(p);
    }
    if (from_allocator((void *)__libc_valloc, "__libc_valloc")) {
        void *p = __libc_valloc(opaque(1000));
        CHECK(p != NULL && aligned(p, page));
        memset(p, 1, 1000);
        free(p);
    }
    if (from_allocator((void *)__libc_pvalloc, "__libc_pvalloc")) {
        void *p = __libc_pvalloc(opaque(1000));
        CHECK(p != NULL && aligned(p, page));
        CHECK(malloc_usable_size(p) >= page);
        memset(p, 1, page);
        free(p);
    }
    /* glibc exports no __posix_memalign; memalloc (like tcmalloc) does. */
    if (memalloc_expected() || __posix_memalign != NULL) {
        if (from_allocator((void *)__posix_memalign, "__posix_memalign")) {
            void *p = NULL;
            errno = 777;
            CHECK(__posix_memalign(&p, opaque(128), opaque(1000)) == 0);
            CHECK(errno == 777);
            CHECK(p != NULL && aligned(p, 128));
            memset(p, 1, 1000);
            free(p);
            CHECK(__posix_memalign(&p, opaque(24), opaque(10)) == EINVAL);
        }
    }
}

int main(void)
{
    check_begin();
    page = (size_t)sysconf(_SC_PAGESIZE);
    CHECK(page >= 4096);

    test_exports();
    test_mallinfo();  /* first: before large frees move glibc's mmap threshold */
    test_malloc_zero();
    test_alignment_and_overlap();
    test_free();
    test_huge_malloc();
    test_realloc();
    test_reallocarray();
    test_calloc();
    test_posix_memalign();
    test_aligned_alloc_memalign();
    test_valloc_pvalloc();
    test_usable_size();
    test_sized_frees();
    test_trim_mallopt();
    test_stats_info();
    test_libc_aliases();

    check_done("api");
    return 0;
}
