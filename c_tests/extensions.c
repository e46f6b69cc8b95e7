/*
 * extensions.c - memalloc's own API (include/memalloc.h): the heap dump, the
 * consistency check, statistics, and pools over caller memory.
 *
 * memalloc only: under another allocator these symbols do not exist (they are
 * declared weak so that the plain build links; the first check says so).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <malloc.h>
#include <unistd.h>

#include "memalloc.h"
#include "check.h"

#pragma weak memalloc_dump
#pragma weak memalloc_check
#pragma weak memalloc_get_stats
#pragma weak memalloc_pool_create
#pragma weak memalloc_pool_add_region
#pragma weak memalloc_pool_malloc
#pragma weak memalloc_pool_memalign
#pragma weak memalloc_pool_realloc
#pragma weak memalloc_pool_free
#pragma weak memalloc_pool_check
#pragma weak memalloc_pool_destroy

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static void test_present(void)
{
    CHECK(memalloc_dump != NULL);
    CHECK(memalloc_check != NULL);
    CHECK(memalloc_get_stats != NULL);
    CHECK(memalloc_pool_create != NULL);
    CHECK(memalloc_pool_add_region != NULL);
    CHECK(memalloc_pool_malloc != NULL);
    CHECK(memalloc_pool_memalign != NULL);
    CHECK(memalloc_pool_realloc != NULL);
    CHECK(memalloc_pool_free != NULL);
    CHECK(memalloc_pool_check != NULL);
    CHECK(memalloc_pool_destroy != NULL);
}

/* ---- memalloc_dump -------------------------------------------------------- */

/* Runs memalloc_dump into an anonymous file and returns its text
 * (NUL-terminated, malloc'd after the dump so it cannot appear in it). */
static char *dump_to_string(size_t *len)
{
    int fd = memfd_create("memalloc_dump", 0);
    CHECK(fd >= 0);
    memalloc_dump(fd);
    off_t end = lseek(fd, 0, SEEK_END);
    CHECK(end >= 0);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    char *s = malloc((size_t)end + 1);
    CHECK(s != NULL);
    size_t got = 0;
    while (got < (size_t)end) {
        ssize_t r = read(fd, s + got, (size_t)end - got);
        CHECK(r > 0);
        got += (size_t)r;
    }
    s[got] = 0;
    close(fd);
    *len = got;
    return s;
}

/* Whether text mentions address p: its hexadecimal digits as %p prints them
 * ("0x55d4c3a2b010" -> "55d4c3a2b010"), case-insensitively, so that a dump
 * printing "0x000055D4C3A2B010" also counts. */
static int mentions(const char *text, const void *p)
{
    char hex[32];
    snprintf(hex, sizeof hex, "%p", p);
    const char *digits = strncmp(hex, "0x", 2) == 0 ? hex + 2 : hex;
    size_t n = strlen(digits);
    for (const char *t = text; *t; t++)
        if (strncasecmp(t, digits, n) == 0)
            return 1;
    return 0;
}

static void test_dump(void)
{
    /* a small, a medium and a large block, all live during the dump */
    void *small = malloc(opaque(40));
    void *medium = malloc(opaque(40000));
    void *large = malloc(opaque(2 * MiB));
    CHECK(small != NULL && medium != NULL && large != NULL);
    memset(medium, 1, 40000);

    size_t len = 0;
    char *text = dump_to_string(&len);
    CHECKF(len > 0, "memalloc_dump wrote %zu bytes", len);
    CHECKF(strlen(text) == len, "dump contains NUL bytes (strlen %zu, length %zu)", strlen(text), len);
    CHECKF(mentions(text, medium), "dump (%zu bytes) does not mention the 40000-byte block %p", len,
           medium);
    CHECKF(mentions(text, large), "dump (%zu bytes) does not mention the 2 MiB block %p", len, large);
    free(text);

    /* a dump to a closed descriptor must not crash */
    memalloc_dump(-1);

    /* after free, a later dump still works and the heap is consistent */
    free(medium);
    free(large);
    free(small);
    text = dump_to_string(&len);
    CHECK(len > 0);
    free(text);
    CHECK(memalloc_check() == 0);
}

/* ---- memalloc_check ------------------------------------------------------- */

static void test_check(void)
{
    CHECK(memalloc_check() == 0);
    enum { N = 512 };
    static void *blk[N];
    static size_t sz[N];
    uint64_t seed = 12345;
    for (int round = 0; round < 40; round++) {
        for (int k = 0; k < 1000; k++) {
            uint64_t r = rng_next(&seed);
            int i = (int)(r % N);
            if (blk[i] != NULL) {
                CHECK_PATTERN(blk[i], sz[i]);
                if ((r >> 20) % 4 == 0) {
                    size_t n = (size_t)((r >> 24) % 20000);
                    uintptr_t old = (uintptr_t)blk[i];
                    void *q = realloc(blk[i], n == 0 ? 1 : n);
                    CHECK(q != NULL);
                    size_t keep = sz[i] < n ? sz[i] : n;
                    CHECK(pattern_find_bad(q, old, sz[i], keep) == (size_t)-1);
                    blk[i] = q;
                    sz[i] = n == 0 ? 1 : n;
                    pattern_fill(q, sz[i]);
                } else {
                    free(blk[i]);
                    blk[i] = NULL;
                }
                continue;
            }
            size_t n;
            switch ((r >> 20) % 8) {
            case 0: n = (size_t)((r >> 24) % 300000); break;   /* up to large */
            case 1: n = (size_t)((r >> 24) % 64); break;
            default: n = (size_t)((r >> 24) % 4000); break;
            }
            if ((r >> 40) % 5 == 0) {
                void *p = NULL;
                CHECK(posix_memalign(&p, (size_t)64 << ((r >> 44) % 8), n) == 0);
                blk[i] = p;
            } else if ((r >> 40) % 5 == 1) {
                blk[i] = calloc(1, n);
            } else {
                blk[i] = malloc(n);
            }
            CHECK(blk[i] != NULL);
            sz[i] = n;
            pattern_fill(blk[i], n);
        }
        size_t broken = memalloc_check();
        CHECKF(broken == 0, "memalloc_check() = %zu after round %d", broken, round);
    }
    for (int i = 0; i < N; i++) {
        if (blk[i] != NULL) {
            CHECK_PATTERN(blk[i], sz[i]);
            free(blk[i]);
            blk[i] = NULL;
        }
    }
    CHECK(memalloc_check() == 0);

    /* and it sees corruption: a medium block's header tag (bits 48-63 of
     * the word before the block), then a zone chunk's (the 16-byte chunk
     * header at the zone's 64 KiB boundary, whose second word is the head;
     * the zone header itself lies in the zone map, out of the program's
     * reach), each written over and put back */
    unsigned char *m = malloc(opaque(20000));
    CHECK(m != NULL);
    uint64_t *head = opaque_ptr((void *)((uintptr_t)m - 8));
    uint64_t saved = *head;
    *head ^= (uint64_t)1 << 60;
    size_t broken = memalloc_check();
    *head = saved;
    CHECKF(broken >= 1, "memalloc_check() = %zu with a medium header's tag broken", broken);
    CHECK(memalloc_check() == 0);
    free(m);

    unsigned char *small = malloc(opaque(64));
    CHECK(small != NULL);
    uintptr_t granule = (uintptr_t)small & ~(uintptr_t)0xffff;
    uint64_t *zhead = opaque_ptr((void *)(granule + 8));
    saved = *zhead;
    *zhead ^= (uint64_t)1 << 60;
    broken = memalloc_check();
    *zhead = saved;
    CHECKF(broken >= 1, "memalloc_check() = %zu with a zone chunk's header tag broken", broken);
    CHECK(memalloc_check() == 0);
    free(small);
}

/* ---- memalloc_get_stats --------------------------------------------------- */

static void check_stats_sane(const struct memalloc_stats *s)
{
    CHECKF(s->peak_in_use >= s->in_use, "peak %zu < in_use %zu", s->peak_in_use, s->in_use);
    CHECKF(s->heap_bytes >= s->brk_bytes + s->mmap_region_bytes,
           "heap_bytes %zu < brk %zu + mmap regions %zu", s->heap_bytes, s->brk_bytes,
           s->mmap_region_bytes);
    CHECKF(s->free_bytes <= s->heap_bytes, "free_bytes %zu > heap_bytes %zu", s->free_bytes,
           s->heap_bytes);
    CHECKF(s->large_count == 0 || s->large_bytes >= s->large_count * 4096,
           "large_bytes %zu for %zu blocks", s->large_bytes, s->large_count);
}

static void test_stats(void)
{
    struct memalloc_stats s0, s1, s2, s3, s4;
    memset(&s0, 0xff, sizeof s0);
    memalloc_get_stats(&s0);
    check_stats_sane(&s0);
    CHECK(s0.heap_bytes > 0 && s0.heap_bytes != (size_t)-1);
    CHECK(s0.syscalls > 0);

    /* N bytes in small blocks */
    enum { NB = 1000, SZ = 1000 };
    static void *blk[NB];
    size_t total = (size_t)NB * SZ;
    for (int i = 0; i < NB; i++) {
        blk[i] = malloc(opaque(SZ));
        CHECK(blk[i] != NULL);
    }
    memalloc_get_stats(&s1);
    check_stats_sane(&s1);
    CHECKF(s1.in_use >= s0.in_use + total, "in_use %zu -> %zu after allocating %zu bytes", s0.in_use,
           s1.in_use, total);
    CHECKF(s1.peak_in_use >= s1.in_use, "peak %zu", s1.peak_in_use);
    for (int i = 0; i < NB; i++)
        free(blk[i]);
    memalloc_get_stats(&s2);
    check_stats_sane(&s2);
    CHECKF(s2.in_use + total / 2 <= s1.in_use, "in_use %zu -> %zu after freeing %zu bytes",
           s1.in_use, s2.in_use, total);
    CHECKF(s2.peak_in_use >= s1.in_use, "peak %zu forgot in_use %zu", s2.peak_in_use, s1.in_use);

    /* one large block, mapped on its own */
    size_t big = opaque(4 * MiB);
    unsigned char *b = malloc(big);
    CHECK(b != NULL);
    b[0] = b[big - 1] = 1;
    memalloc_get_stats(&s3);
    check_stats_sane(&s3);
    CHECKF(s3.in_use >= s2.in_use + big, "in_use %zu -> %zu after a 4 MiB block", s2.in_use,
           s3.in_use);
    CHECKF(s3.large_count == s2.large_count + 1, "large_count %zu -> %zu", s2.large_count,
           s3.large_count);
    CHECKF(s3.large_bytes >= s2.large_bytes + big, "large_bytes %zu -> %zu", s2.large_bytes,
           s3.large_bytes);
    free(b);
    memalloc_get_stats(&s4);
    check_stats_sane(&s4);
    CHECKF(s4.large_count == s2.large_count, "large_count %zu after free, was %zu", s4.large_count,
           s2.large_count);
    CHECKF(s4.in_use + big <= s3.in_use, "in_use %zu -> %zu after freeing 4 MiB", s3.in_use,
           s4.in_use);
    /* the freed mapping is kept for reuse until malloc_trim (or a second) */
    CHECK(malloc_trim(0) == 1);
    memalloc_get_stats(&s4);
    check_stats_sane(&s4);
    CHECKF(s4.released_bytes >= s3.released_bytes + big,
           "released_bytes %zu -> %zu after unmapping 4 MiB", s3.released_bytes, s4.released_bytes);
    CHECKF(s4.syscalls > s2.syscalls, "syscalls %zu -> %zu across a mmap + munmap", s2.syscalls,
           s4.syscalls);
}

/* ---- pools over caller memory --------------------------------------------- */

static _Alignas(4096) unsigned char buf1[1 * MiB];
static _Alignas(4096) unsigned char buf2[1 * MiB];

static int inside(const void *p, size_t n, const unsigned char *buf, size_t len)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)buf, hi = lo + len;
    return a >= lo && a + n <= hi;
}

#define CHECK_POOL(pool)                                                      \
    do {                                                                      \
        size_t broken_ = memalloc_pool_check(pool);                           \
        CHECKF(broken_ == 0, "memalloc_pool_check() = %zu", broken_);         \
    } while (0)

/* Allocates blocks of n bytes until the pool says NULL; every block is
 * checked to lie in buf1 or buf2 and filled; returns how many. */
static size_t exhaust(memalloc_pool_t *pool, void **blk, size_t max, size_t n, size_t *in2)
{
    size_t count = 0;
    *in2 = 0;
    for (;;) {
        void *p = memalloc_pool_malloc(pool, n);
        if (p == NULL)
            break;
        CHECKF(count < max, "pool handed out more than %zu blocks of %zu bytes", max, n);
        CHECKF(inside(p, n, buf1, sizeof buf1) || inside(p, n, buf2, sizeof buf2),
               "pool block %p outside the pool's buffers", p);
        CHECK(((uintptr_t)p & 15) == 0);
        if (inside(p, n, buf2, sizeof buf2))
            (*in2)++;
        pattern_fill(p, n);
        blk[count++] = p;
    }
    for (size_t i = 0; i < count; i++)
        CHECK_PATTERN(blk[i], n);
    return count;
}

static void test_pools(void)
{
    /* too small to hold the pool's bookkeeping */
    static _Alignas(16) unsigned char tiny[16];
    CHECK(memalloc_pool_create(tiny, sizeof tiny) == NULL);
    CHECK(memalloc_pool_create(buf1, 0) == NULL);

    struct memalloc_stats h0, h1;
    memalloc_get_stats(&h0);

    memalloc_pool_t *pool = memalloc_pool_create(buf1, sizeof buf1);
    CHECK(pool != NULL);
    CHECK_POOL(pool);

    /* malloc / free inside the buffer */
    unsigned char *p = memalloc_pool_malloc(pool, 100);
    CHECK(p != NULL && inside(p, 100, buf1, sizeof buf1));
    CHECK(((uintptr_t)p & 15) == 0);
    pattern_fill(p, 100);
    unsigned char *q = memalloc_pool_malloc(pool, 5000);
    CHECK(q != NULL && inside(q, 5000, buf1, sizeof buf1));
    pattern_fill(q, 5000);
    CHECK_PATTERN(p, 100);
    CHECK_POOL(pool);
    memalloc_pool_free(pool, p);
    CHECK_POOL(pool);
    memalloc_pool_free(pool, NULL);
    CHECK_POOL(pool);

    /* realloc keeps contents and stays inside */
    uintptr_t old = (uintptr_t)q;
    q = memalloc_pool_realloc(pool, q, 60000);
    CHECK(q != NULL && inside(q, 60000, buf1, sizeof buf1));
    CHECK(pattern_find_bad(q, old, 5000, 5000) == (size_t)-1);
    pattern_fill(q, 60000);
    CHECK_POOL(pool);
    old = (uintptr_t)q;
    q = memalloc_pool_realloc(pool, q, 300);
    CHECK(q != NULL && inside(q, 300, buf1, sizeof buf1));
    CHECK(pattern_find_bad(q, old, 60000, 300) == (size_t)-1);
    CHECK_POOL(pool);
    /* a realloc the pool cannot satisfy returns NULL and keeps the block */
    pattern_fill(q, 300);
    CHECK(memalloc_pool_realloc(pool, q, 4 * MiB) == NULL);
    CHECK_PATTERN(q, 300);
    CHECK_POOL(pool);
    memalloc_pool_free(pool, q);
    CHECK_POOL(pool);

    /* memalign */
    for (size_t a = 16; a <= 64 * KiB; a *= 4) {
        void *m = memalloc_pool_memalign(pool, a, 1000);
        CHECKF(m != NULL && ((uintptr_t)m & (a - 1)) == 0, "pool memalign(%zu) = %p", a, m);
        CHECK(inside(m, 1000, buf1, sizeof buf1));
        memset(m, 0x3c, 1000);
        CHECK_POOL(pool);
        memalloc_pool_free(pool, m);
        CHECK_POOL(pool);
    }

    /* exhaustion: a pool never grows by itself */
    CHECK(memalloc_pool_malloc(pool, 2 * MiB) == NULL);
    CHECK(memalloc_pool_malloc(pool, sizeof buf1) == NULL);
    enum { MAXB = 4096 };
    static void *blk[MAXB];
    size_t in2 = 0;
    size_t n1 = exhaust(pool, blk, MAXB, 1000, &in2);
    CHECK_POOL(pool);
    printf("pool of 1 MiB: %zu blocks of 1000 bytes\n", n1);
    CHECKF(n1 >= 800, "a 1 MiB pool held only %zu blocks of 1000 bytes", n1);
    CHECK(in2 == 0);
    CHECK(memalloc_pool_malloc(pool, 1000) == NULL);
    for (size_t i = 0; i < n1; i++)
        memalloc_pool_free(pool, blk[i]);
    CHECK_POOL(pool);

    /* everything free again: the blocks coalesced into one big one */
    void *whole = memalloc_pool_malloc(pool, 900 * KiB);
    CHECK(whole != NULL && inside(whole, 900 * KiB, buf1, sizeof buf1));
    memset(whole, 0x42, 900 * KiB);
    CHECK_POOL(pool);
    memalloc_pool_free(pool, whole);
    CHECK_POOL(pool);

    /* a second region extends the capacity */
    int rc = memalloc_pool_add_region(pool, buf2, sizeof buf2);
    printf("memalloc_pool_add_region returned %d\n", rc);
    CHECK_POOL(pool);
    size_t n2 = exhaust(pool, blk, MAXB, 1000, &in2);
    CHECK_POOL(pool);
    printf("pool of 2 x 1 MiB: %zu blocks of 1000 bytes, %zu in the second buffer\n", n2, in2);
    CHECKF(n2 >= n1 + 800, "adding 1 MiB raised capacity only from %zu to %zu blocks", n1, n2);
    CHECKF(in2 >= 800, "only %zu blocks came from the added region", in2);
    for (size_t i = 0; i < n2; i += 2)
        memalloc_pool_free(pool, blk[i]);
    CHECK_POOL(pool);
    for (size_t i = 1; i < n2; i += 2)
        CHECK_PATTERN(blk[i], 1000);
    for (size_t i = 1; i < n2; i += 2)
        memalloc_pool_free(pool, blk[i]);
    CHECK_POOL(pool);
    /* a big block fits in the added region as well */
    whole = memalloc_pool_malloc(pool, 900 * KiB);
    CHECK(whole != NULL);
    void *whole2 = memalloc_pool_malloc(pool, 900 * KiB);
    CHECK(whole2 != NULL);
    CHECK((inside(whole, 900 * KiB, buf1, sizeof buf1) && inside(whole2, 900 * KiB, buf2, sizeof buf2)) ||
          (inside(whole, 900 * KiB, buf2, sizeof buf2) && inside(whole2, 900 * KiB, buf1, sizeof buf1)));
    CHECK_POOL(pool);
    memalloc_pool_free(pool, whole);
    memalloc_pool_free(pool, whole2);
    CHECK_POOL(pool);

    /* the pool never touched the process heap */
    memalloc_get_stats(&h1);
    CHECKF(h1.in_use <= h0.in_use + 64 * KiB, "process in_use %zu -> %zu while using a pool",
           h0.in_use, h1.in_use);

    memalloc_pool_destroy(pool);

    /* the buffer can host a fresh pool afterwards */
    pool = memalloc_pool_create(buf1, sizeof buf1);
    CHECK(pool != NULL);
    p = memalloc_pool_malloc(pool, 500 * KiB);
    CHECK(p != NULL && inside(p, 500 * KiB, buf1, sizeof buf1));
    memalloc_pool_free(pool, p);
    CHECK_POOL(pool);
    memalloc_pool_destroy(pool);

    CHECK(memalloc_check() == 0);
}

/* ---- a sparse block costs the pages touched ------------------------------- */

/* A block of its own mapping costs the pages the program touches, whatever
 * its size: malloc(1 GiB) with its first and last page written, then grown
 * to 1.5 GiB (mremap) with its new last page written, raises RSS by a few
 * pages. The zone map used to count every 64 KiB granule of the block, 32
 * bytes each: 512 KiB resident for 1 GiB, 768 KiB for 1.5 GiB (and 1.6 MiB
 * for the 3.4 GB that `sort` of a 50 MB file mallocs). */
static void test_sparse_large(void)
{
    const size_t GiB = (size_t)1 << 30;
    /* First the code paths, the map's leaf (a new one would cost a page or
     * two) and rss_bytes itself (sscanf's first call faults in libc pages). */
    free(opaque_ptr(malloc(opaque(64 << 20))));
    rss_bytes();
    size_t before = rss_bytes();
    unsigned char *p = malloc(opaque(GiB));
    CHECKF(p != NULL, "malloc(1 GiB) failed (errno %d)", errno);
    p[0] = 1;
    p[GiB - 1] = 2;
    size_t mapped = rss_bytes();
    CHECKF(mapped < before + 32 * 1024, "RSS %zu -> %zu KiB for a 1 GiB block with 2 pages written",
           before >> 10, mapped >> 10);
    unsigned char *q = realloc(opaque_ptr(p), opaque(GiB + GiB / 2));
    CHECKF(q != NULL, "realloc to 1.5 GiB failed (errno %d)", errno);
    CHECK(q[0] == 1 && q[GiB - 1] == 2);
    q[GiB + GiB / 2 - 1] = 3;
    size_t grown = rss_bytes();
    CHECKF(grown < before + 48 * 1024, "RSS %zu -> %zu KiB for a 1.5 GiB block with 3 pages written",
           before >> 10, grown >> 10);
    CHECK(malloc_usable_size(q) >= GiB + GiB / 2);
    free(opaque_ptr(q));
    CHECK(memalloc_check() == 0);
}

/* ---- freed large mappings kept for reuse ---------------------------------- */

/* Maps KEPT_BLOCKS blocks of 4 MiB and writes them: RSS after, in bytes. */
enum { KEPT_BLOCKS = 8, KEPT_BIG = 4 << 20 };
static size_t map_big_blocks(void **b)
{
    for (int i = 0; i < KEPT_BLOCKS; i++) {
        b[i] = malloc(opaque(KEPT_BIG));
        CHECK(b[i] != NULL);
        memset(b[i], i + 1, KEPT_BIG);
    }
    return rss_bytes();
}

/* Frees them (the mappings are kept): RSS after, in bytes. */
static size_t free_big_blocks(void **b)
{
    for (int i = 0; i < KEPT_BLOCKS; i++)
        free(b[i]);
    return rss_bytes();
}

/* A freed block of its own mapping is kept (up to MEMALLOC_LARGE_CACHE bytes,
 * for up to a second) and serves the next large request of about its size;
 * calloc clears it; a second free of it is still a double free (misuse.sh);
 * malloc_trim gives the memory back, and so does the next large operation or
 * free of a heap block a second later. */
static void test_large_cache(void)
{
    CHECK(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1); /* fixed: no heap blocks this big */
    const size_t n = 1 << 20;
    unsigned char *p = malloc(opaque(n));
    CHECK(p != NULL);
    memset(p, 0xA5, n);
    free(opaque_ptr(p));
    unsigned char *q = calloc(opaque(1), opaque(n - 4096));
    CHECKF(q == p, "calloc after free of a mapping: %p, expected the kept %p", (void *)q, (void *)p);
    for (size_t i = 0; i < n - 4096; i++)
        if (q[i] != 0) {
            CHECKF(0, "calloc'd reused mapping non-zero at %zu", i);
            break;
        }
    free(q);

    /* 8 x 4 MiB touched and freed: 32 MiB stays resident, kept */
    void *b[KEPT_BLOCKS];
    size_t before = map_big_blocks(b);
    size_t kept = free_big_blocks(b);
    CHECKF(kept + 8 * MiB > before, "rss %zu -> %zu: freed mappings were not kept", before, kept);
    CHECK(malloc_trim(0) == 1);
    size_t trimmed = rss_bytes();
    CHECKF(trimmed + 24 * MiB < kept, "rss %zu -> %zu after malloc_trim: kept mappings stayed",
           kept, trimmed);

    /* kept mappings older than a second go at the next large operation */
    map_big_blocks(b);
    kept = free_big_blocks(b);
    usleep(1200 * 1000);
    void *x = malloc(opaque(300 * 1024)); /* no kept mapping fits: a new one, after ageing */
    CHECK(x != NULL);
    size_t aged = rss_bytes();
    CHECKF(aged + 24 * MiB < kept, "rss %zu -> %zu a second after the frees: kept mappings stayed",
           kept, aged);
    free(x);

    /* or at the next free of a heap block: a program may make no large
     * operation again (its blocks of that size now come from the heap) */
    map_big_blocks(b);
    kept = free_big_blocks(b);
    unsigned char *h = malloc(opaque(20000)); /* below the threshold: a heap block */
    CHECK(h != NULL);
    memset(h, 0x11, 20000);
    usleep(1200 * 1000);
    free(opaque_ptr(h));
    aged = rss_bytes();
    CHECKF(aged + 24 * MiB < kept,
           "rss %zu -> %zu after a heap free a second later: kept mappings stayed", kept, aged);
    CHECK(memalloc_check() == 0);
}

/* Minor page faults of the process so far. */
static long minflt(void)
{
    struct rusage u;
    CHECK(getrusage(RUSAGE_SELF, &u) == 0);
    return u.ru_minflt;
}

/* A kept mapping much smaller than a request grows into its block (mremap):
 * its resident pages serve the block's first bytes. A table that doubles
 * frees the old block after mapping the new one, so the block kept from the
 * growth before is a quarter of the next request (bench/rust's `hashmap`).
 * calloc clears only the grown block's old pages: the new ones are fresh. */
static void test_large_cache_grows(void)
{
    enum { SMALL = 8 << 20, BIG = 32 << 20, PAGES = (BIG - SMALL) / 4096 };
    malloc_trim(0); /* nothing kept */
    for (int zero = 0; zero < 2; zero++) {
        unsigned char *a = malloc(opaque(SMALL));
        CHECK(a != NULL);
        memset(a, 0x5A, SMALL);
        free(opaque_ptr(a)); /* kept */
        long f0 = minflt();
        unsigned char *b = zero ? calloc(1, opaque(BIG)) : malloc(opaque(BIG));
        CHECK(b != NULL);
        long f1 = minflt();
        memset(b, 0x33, BIG);
        long f2 = minflt();
        /* fresh: BIG / 4096 = 8192 faults writing it; grown: 6144 */
        CHECKF(f2 - f0 < PAGES + PAGES / 8,
               "%s of 32 MiB after an 8 MiB block was freed: %ld page faults, expected about %d",
               zero ? "calloc" : "malloc", f2 - f0, PAGES);
        if (zero)
            CHECKF(f1 - f0 < 64, "calloc of a grown kept mapping faulted %ld pages (cleared it all?)",
                   f1 - f0);
        free(opaque_ptr(b));
        malloc_trim(0);
    }
    /* and calloc's block is zero where the small one was written */
    unsigned char *a = malloc(opaque(SMALL));
    CHECK(a != NULL);
    memset(a, 0x5A, SMALL);
    free(opaque_ptr(a));
    unsigned char *c = calloc(1, opaque(BIG));
    CHECK(c != NULL);
    for (size_t i = 0; i < BIG; i += 64)
        if (c[i] != 0 || c[i + 63] != 0) {
            CHECKF(0, "calloc'd grown mapping non-zero at %zu", i);
            break;
        }
    free(opaque_ptr(c));
    CHECK(memalloc_check() == 0);
}

int main(void)
{
    check_begin();
    test_present();
    CHECK(memalloc_check() == 0);
    test_dump();
    test_check();
    test_stats();
    test_pools();
    test_sparse_large();
    test_large_cache(); /* it fixes the mmap threshold */
    test_large_cache_grows();
    check_done("extensions");
    return 0;
}
