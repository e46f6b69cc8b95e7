/*
 * check.h - the tiny assertion layer of the C API tests.
 *
 *   CHECK(cond)            counts one check; on failure prints
 *                          "file:line: CHECK failed: cond" to stderr and exits 1.
 *   CHECKF(cond, fmt, ...) the same, with a printf-style detail appended.
 *   check_begin()          first line of every main(): under MEMALLOC_EXPECT=1 it
 *                          checks that memalloc really is the allocator in use.
 *   check_flush()          last line of every thread that checks: adds its count.
 *   check_done(name)       last line of every main(): prints "ok <name>: N checks".
 *
 * With CHECK_KEEP_GOING=1 in the environment a failed check is printed and
 * counted instead of ending the process, and check_done exits 1 if any failed:
 * a diagnostic mode for listing every failing check at once (a later check may
 * then crash on the consequences of an earlier one).
 * The failure path allocates nothing and takes no stdio lock (it formats into a
 * stack buffer and write(2)s it), so it is usable from threads, from a forked
 * child and with a broken heap.  A test that runs its checks in a forked child
 * sets check_in_child so the failure path does not flush the parent's stdout.
 */
#ifndef CHECK_H
#define CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long check_count;             /* flushed from the threads' counts */
static __thread unsigned long check_tls_count;  /* this thread's checks, not yet flushed */
static unsigned long check_failures;
static int check_in_child;

static void check_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), unused));

static void check_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s:%d: CHECK failed: %s", file, line, expr);
    if (n < 0 || n >= (int)sizeof buf)
        n = (int)sizeof buf - 1;
    if (fmt != NULL && n < (int)sizeof buf - 8) {
        va_list ap;
        va_start(ap, fmt);
        n += snprintf(buf + n, sizeof buf - (size_t)n, " (");
        int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
        if (n > (int)sizeof buf - 3)
            n = (int)sizeof buf - 3;
        buf[n++] = ')';
    }
    buf[n++] = '\n';
    if (!check_in_child)
        fflush(stdout);
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
    const char *k = getenv("CHECK_KEEP_GOING");
    if (k != NULL && k[0] == '1') {
        __atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED);
        return;
    }
    _exit(1);
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        check_tls_count++;                                                   \
        if (!(cond))                                                         \
            check_fail(__FILE__, __LINE__, #cond, NULL);                     \
    } while (0)

#define CHECKF(cond, ...)                                                    \
    do {                                                                     \
        check_tls_count++;                                                   \
        if (!(cond))                                                         \
            check_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);              \
    } while (0)

/* Hides a value from the optimiser so that malloc/free pairs, constant
 * overflowing sizes and dead stores are not folded away. */
static inline size_t opaque(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

static inline void *opaque_ptr(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

/* While one thread has a cache and the heap is small, memalloc serves that
 * thread's first COLD_ALLOCS allocations of each size class from its TLSF
 * heap, and only the later ones from the class's zones (src/small/cache/slow.rs,
 * COLD_ALLOCS; brk.c's cold_classes checks the number). A test about zones
 * first makes this many allocations of its size in the thread that
 * allocates: warm_class. (They count whether or not they are freed.) */
#define COLD_ALLOCS 8
static __attribute__((unused)) void warm_class(size_t n)
{
    for (int i = 0; i < COLD_ALLOCS; i++)
        free(opaque_ptr(malloc(n)));
}

static int memalloc_expected(void)
{
    const char *e = getenv("MEMALLOC_EXPECT");
    return e != NULL && strcmp(e, "1") == 0;
}

/* The shared object that provides the malloc this process uses. */
static void *allocator_base(void)
{
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (m == NULL || dladdr(m, &info) == 0)
        return NULL;
    return info.dli_fbase;
}

/*
 * Returns 1 if fn (the resolved address of the function called name) lives in
 * the same shared object as malloc, i.e. belongs to the allocator under test.
 * Under MEMALLOC_EXPECT=1 anything else is a failure (a symbol memalloc does
 * not export falls through to glibc, which then owns a second heap).  Without
 * it, a function that comes from another object (glibc's mallinfo under
 * jemalloc, say) is reported as skipped and 0 is returned.
 */
static __attribute__((unused)) int from_allocator(const void *fn, const char *name)
{
    Dl_info info;
    int same = fn != NULL && dladdr(fn, &info) != 0 && info.dli_fbase == allocator_base();
    if (memalloc_expected())
        CHECKF(same, "%s must come from libmemalloc (resolved to %p)", name, fn);
    else if (!same)
        printf("skip %s: not provided by the allocator under test\n", name);
    return same;
}

/* A memalloc extension looked up at run time, so that the threaded tests also
 * run under other allocators; NULL there. */
static __attribute__((unused)) void *memalloc_sym(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    if (memalloc_expected())
        CHECKF(f != NULL, "memalloc extension %s must be present", name);
    return f;
}

static __attribute__((unused)) void check_begin(void)
{
    if (!memalloc_expected())
        return;
    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    CHECK(dlsym(RTLD_DEFAULT, "memalloc_check") != NULL);
    CHECK(m != NULL && dladdr(m, &info) != 0 && info.dli_fname != NULL);
    CHECKF(strstr(info.dli_fname, "memalloc") != NULL,
           "malloc resolves to %s, not libmemalloc", info.dli_fname);
}

/* Adds this thread's count of checks to the total: the last thing a thread
 * that makes checks does (check_done does it for the main thread). */
static __attribute__((unused)) void check_flush(void)
{
    __atomic_fetch_add(&check_count, check_tls_count, __ATOMIC_RELAXED);
    check_tls_count = 0;
}

static __attribute__((unused)) void check_done(const char *name)
{
    check_flush();
    unsigned long failed = __atomic_load_n(&check_failures, __ATOMIC_RELAXED);
    unsigned long total = __atomic_load_n(&check_count, __ATOMIC_RELAXED);
    if (failed != 0) {
        printf("FAILED %s: %lu of %lu checks failed\n", name, failed, total);
        fflush(stdout);
        _exit(1);
    }
    printf("ok %s: %lu checks\n", name, total);
    fflush(stdout);
}

/* The alignment every block of n bytes must have.  memalloc follows glibc:
 * 16 for every size, malloc(0) included.  Other allocators, run only to
 * validate the threaded tests, are held to the C rule instead (a block of
 * n < 16 bytes need only be aligned for the objects that fit in it), so that
 * jemalloc's 8-byte classes do not hide what those tests are about. */
static __attribute__((unused)) size_t required_alignment(size_t n)
{
    static int strict_cache = -1;
    int strict = __atomic_load_n(&strict_cache, __ATOMIC_RELAXED);
    if (strict < 0) {
        strict = memalloc_expected() || dlsym(RTLD_DEFAULT, "memalloc_check") != NULL;
        __atomic_store_n(&strict_cache, strict, __ATOMIC_RELAXED);
    }
    if (strict || n >= 16)
        return 16;
    size_t a = 1;
    while (a * 2 <= n)
        a *= 2;
    return a;
}

/* Deterministic per-thread random numbers (xorshift64*). */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The fill pattern of a block: byte i of the block at addr of size n. */
static inline unsigned char pattern_byte(uintptr_t addr, size_t n, size_t i)
{
    return (unsigned char)((addr >> 4) + n * 7 + i);
}

static inline void pattern_fill(void *p, size_t n)
{
    unsigned char *b = (unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte((uintptr_t)p, n, i);
}

/* Index of the first byte that differs from the pattern of (addr, n) in the
 * first len bytes of p, or (size_t)-1 if none. */
static inline size_t pattern_find_bad(const void *p, uintptr_t addr, size_t n, size_t len)
{
    const unsigned char *b = (const unsigned char *)p;
    unsigned char want = pattern_byte(addr, n, 0);
    for (size_t i = 0; i < len; i++, want++)
        if (b[i] != want)
            return i;
    return (size_t)-1;
}

#define CHECK_PATTERN(p, n)                                                  \
    do {                                                                     \
        size_t bad_ = pattern_find_bad((p), (uintptr_t)(p), (n), (n));       \
        CHECKF(bad_ == (size_t)-1, "block %p of %zu bytes corrupt at offset %zu", \
               (void *)(p), (size_t)(n), bad_);                             \
    } while (0)

/* The process's resident set size in bytes (/proc/self/statm). */
static size_t rss_bytes(void) __attribute__((unused));
static size_t rss_bytes(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECK(n > 0);
    buf[n] = '\0';
    unsigned long size = 0, resident = 0;
    CHECK(sscanf(buf, "%lu %lu", &size, &resident) == 2);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

#endif /* CHECK_H */
