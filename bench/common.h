/* bench/common.h — helpers shared by the benchmark workloads.
 *
 * Every workload is one small C program: it takes its parameters from argv
 * (positional, each with a default), runs for a fixed amount of work (not a
 * fixed time, so that wall time is the figure the harness measures), and
 * prints exactly one line on stdout:
 *
 *     <workload>: <figure> <unit> [key=value ...] alloc=<library that serves malloc>
 *
 * `alloc=` names the shared object whose `malloc` the program actually calls
 * (found with dlsym + dladdr), so the harness can check that LD_PRELOAD took
 * effect. Blocks carry a small tag written after allocation and checked
 * before free: a corrupting allocator makes the workload exit with status 3
 * instead of printing a plausible figure. Out of memory exits with status 2.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses that the harness reports by name. */
enum { EXIT_OOM = 2, EXIT_CORRUPT = 3, EXIT_USAGE = 64 };

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: fast, deterministic, one state per thread. */
typedef struct { uint64_t s; } rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    /* splitmix64 step so that small seeds give unrelated streams */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    r->s = (z ^ (z >> 31)) | 1;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [lo, hi] (hi - lo small compared to 2^64; the bias is negligible). */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Sizes "skewed small": log-uniform over 8..2048 (each power-of-two band
 * equally likely), and with probability big_permille/1000 uniform in
 * 2 KiB..big_max. The shape of cfrac/espresso-like programs. */
static inline size_t rng_small_size(rng_t *r, unsigned big_permille, size_t big_max)
{
    uint64_t x = rng_next(r);
    if (big_permille && (x % 1000) < big_permille)
        return 2048 + (size_t)((x >> 10) % (uint64_t)(big_max - 2048 + 1));
    unsigned band = (unsigned)((x >> 10) % 8);          /* 8<<0 .. 8<<7 = 1024 */
    size_t base = (size_t)8 << band;
    return base + (size_t)((x >> 16) % base);           /* [base, 2*base) */
}

/* Tag written into the first (and last) bytes of a block, checked on free. */
static inline unsigned char tag_of(size_t size) { return (unsigned char)(0xA5 ^ size ^ (size >> 8)); }

static inline void tag_block(void *p, size_t size)
{
    unsigned char *c = (unsigned char *)p;
    c[0] = tag_of(size);
    c[size - 1] = tag_of(size);
}

__attribute__((unused)) static void bench_corrupt(const char *where, void *p, size_t size)
{
    fprintf(stderr, "bench: %s: block %p of %zu bytes lost its tag (heap corruption)\n",
            where, p, size);
    exit(EXIT_CORRUPT);
}

static inline void check_block(const char *where, void *p, size_t size)
{
    const unsigned char *c = (const unsigned char *)p;
    if (c[0] != tag_of(size) || c[size - 1] != tag_of(size))
        bench_corrupt(where, p, size);
}

__attribute__((unused)) static void bench_oom(const char *where, size_t size)
{
    fprintf(stderr, "bench: %s: allocation of %zu bytes returned NULL\n", where, size);
    exit(EXIT_OOM);
}

static inline void *xmalloc(const char *where, size_t size)
{
    void *p = malloc(size);
    if (__builtin_expect(p == NULL, 0))
        bench_oom(where, size);
    return p;
}

/* Basename of the object that defines the `malloc` this process calls. */
__attribute__((unused)) static const char *bench_allocator(void)
{
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    if (sym && dladdr(sym, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        return slash ? slash + 1 : info.dli_fname;
    }
    return "unknown";
}

/* Parse argv[i] as an unsigned number (accepts 1e6, 64k, 32M), or use def. */
__attribute__((unused)) static size_t arg_size(int argc, char **argv, int i, size_t def)
{
    if (i >= argc || argv[i][0] == '\0' || strcmp(argv[i], "-") == 0)
        return def;
    char *end;
    double v = strtod(argv[i], &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (end == argv[i] || *end != '\0' || v < 0) {
        fprintf(stderr, "bench: argument %d: not a number: '%s'\n", i, argv[i]);
        exit(EXIT_USAGE);
    }
    return (size_t)v;
}

/* The one output line: "<name>: <value> <unit> <extra> alloc=<lib>". */
__attribute__((unused)) static void bench_report(const char *name, double value, const char *unit, const char *extra_fmt, ...)
{
    char extra[256] = "";
    if (extra_fmt) {
        va_list ap;
        va_start(ap, extra_fmt);
        vsnprintf(extra, sizeof extra, extra_fmt, ap);
        va_end(ap);
    }
    printf("%s: %.4g %s%s%s alloc=%s\n", name, value, unit, extra[0] ? " " : "", extra,
           bench_allocator());
    fflush(stdout);
}

/* A sink the optimiser cannot see through. */
static volatile uint64_t bench_sink;

#endif /* BENCH_COMMON_H */
