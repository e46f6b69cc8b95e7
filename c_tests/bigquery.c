/*
 * bigquery.c - a program that churns big blocks makes few system calls that
 * neither grow nor shrink memory: the sparse purge and the watch of the big
 * blocks' ends ask the kernel about resident pages (`mincore`) seldom, and
 * never read /proc (issue 17: at most tcmalloc's figure of such calls).
 *
 * The churn is bench/mthreads' `large-8` (`mthreads 8 2e5 16 256k 64M s`):
 * 8 threads, each keeps 16 blocks of 256 KiB-64 MiB (density 1/size^2),
 * replaces a random one per step and writes its first byte; 25000 steps a
 * thread, about 49k blocks of 1 MiB or more. This program defines mincore,
 * open, open64 and openat itself (built with -rdynamic, so that they
 * interpose libmemalloc's calls) and counts the calls memalloc makes.
 *
 * Until sys17j a check read /proc/self/statm (open, read, close) every 256
 * big frees, a pass sampled each big free chunk with 4 `mincore` calls, and
 * the end watch made one `mincore` per 256 big blocks: 197 checks and about
 * 300 `mincore` calls in this churn, against tcmalloc's 200 system calls in
 * all (start-up included). Now a check is one `mincore` of the break region,
 * made once the pages big blocks are reckoned to have made resident fill the
 * room left under the slack, and the watch samples 1 block in 1024-32768
 * once settled: 13-28 calls. Checked: no open of /proc/self/statm, at least
 * one `mincore` (the watch's first samples: the interposition works), and
 * at most 60.
 *
 * memalloc only (these are memalloc's policies).
 */
/* run.sh cflags: -rdynamic */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

static atomic_long n_mincore, n_statm;

int mincore(void *addr, size_t len, unsigned char *vec)
{
    atomic_fetch_add(&n_mincore, 1);
    return (int)syscall(SYS_mincore, addr, len, vec);
}

static int count_open(int dirfd, const char *path, int flags, va_list ap)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE))
        mode = (mode_t)va_arg(ap, int);
    if (path != NULL && strstr(path, "statm") != NULL)
        atomic_fetch_add(&n_statm, 1);
    return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int r = count_open(AT_FDCWD, path, flags, ap);
    va_end(ap);
    return r;
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int r = count_open(dirfd, path, flags, ap);
    va_end(ap);
    return r;
}

enum { THREADS = 8, LIVE = 16, STEPS = 25000 };
#define MIN_SIZE ((double)(256 << 10))
#define MAX_SIZE ((double)(64 << 20))

static uint64_t step(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* 1/size^2 between MIN_SIZE and MAX_SIZE (bench/mthreads' `s`). */
static size_t draw(uint64_t *s)
{
    double u = (double)(step(s) >> 11) / 9007199254740992.0;
    return (size_t)(1.0 / (1.0 / MIN_SIZE - u * (1.0 / MIN_SIZE - 1.0 / MAX_SIZE)));
}

static void *churn(void *arg)
{
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)((uintptr_t)arg + 1);
    unsigned char *p[LIVE];
    for (int k = 0; k < LIVE; k++) {
        p[k] = malloc(draw(&s));
        if (p[k] != NULL)
            p[k][0] = 1;
    }
    for (int i = 0; i < STEPS; i++) {
        int k = (int)(step(&s) % LIVE);
        free(p[k]);
        p[k] = malloc(draw(&s));
        if (p[k] != NULL)
            p[k][0] = 1;
    }
    for (int k = 0; k < LIVE; k++)
        free(p[k]);
    return NULL;
}

int main(void)
{
    check_begin();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    long m = atomic_load(&n_mincore), o = atomic_load(&n_statm);
    printf("%d big-block steps: %ld mincore calls, %ld opens of /proc/self/statm\n",
           THREADS * STEPS, m, o);
    CHECKF(o == 0, "%ld opens of /proc/self/statm", o);
    CHECKF(m >= 1, "%s", "no mincore call seen: the interposition does not work");
    CHECKF(m <= 60, "%ld mincore calls", m);
    check_done("bigquery");
    return 0;
}
