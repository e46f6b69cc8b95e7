/* bench/large.c — large blocks: 256 KiB to 32 MiB.
 *
 * usage: large [OPS=600] [LIVE=4] [MIN=256k] [MAX=32M]
 *
 * LIVE slots hold large blocks. Each op frees the block in a random slot and
 * allocates a new one, of a size log-uniform in MIN..MAX, writing one byte in
 * every 4 KiB page (so that the pages are really faulted in); one op in four
 * instead grows the slot's block by realloc to 1.25..2 times its size (up to
 * MAX) and writes the new pages. The contents are checked (one byte per
 * page) before each free and realloc.
 * Figure: ops per second (k/s).
 */
#include "common.h"
#include <math.h>

#define PAGE 4096

typedef struct { unsigned char *p; size_t size; } slot_t;

static void touch(unsigned char *p, size_t from, size_t to)
{
    for (size_t off = from; off < to; off += PAGE)
        p[off] = (unsigned char)(off / PAGE);
    p[to - 1] = 0x5a;
}

static void check(const slot_t *s)
{
    for (size_t off = 0; off + 1 < s->size; off += PAGE)
        if (s->p[off] != (unsigned char)(off / PAGE))
            goto bad;
    if (s->p[s->size - 1] == 0x5a)
        return;
bad:
    fprintf(stderr, "bench: large: block %p of %zu bytes lost its contents (heap corruption)\n",
            (void *)s->p, s->size);
    exit(EXIT_CORRUPT);
}

int main(int argc, char **argv)
{
    size_t ops = arg_size(argc, argv, 1, 600);
    size_t live = arg_size(argc, argv, 2, 4);
    size_t min = arg_size(argc, argv, 3, 256 * 1024);
    size_t max = arg_size(argc, argv, 4, 32 * 1024 * 1024);
    if (live == 0 || min < PAGE || max < min) {
        fprintf(stderr, "large: bad arguments\n");
        return EXIT_USAGE;
    }
    rng_t r;
    rng_seed(&r, 3);
    slot_t *slots = calloc(live, sizeof *slots);
    if (!slots)
        bench_oom("large", live * sizeof *slots);
    double lmin = log((double)min), lmax = log((double)max);
    size_t reallocs = 0;

    double t0 = now_s();
    for (size_t i = 0; i < ops; i++) {
        slot_t *s = &slots[rng_next(&r) % live];
        if (s->p && (rng_next(&r) & 3) == 0 && s->size < max) {
            double f = 1.25 + (double)(rng_next(&r) % 1000) / 1332.0;   /* 1.25 .. 2 */
            size_t nsize = (size_t)((double)s->size * f);
            if (nsize > max)
                nsize = max;
            check(s);
            unsigned char *np = realloc(s->p, nsize);
            if (!np)
                bench_oom("large", nsize);
            s->p = np;
            /* rewrite the old last byte's page marker, then the new pages */
            s->p[(s->size - 1) / PAGE * PAGE] = (unsigned char)((s->size - 1) / PAGE);
            touch(s->p, (s->size + PAGE - 1) / PAGE * PAGE, nsize);
            s->size = nsize;
            reallocs++;
            continue;
        }
        if (s->p) {
            check(s);
            free(s->p);
        }
        double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0;
        s->size = (size_t)exp(lmin + u * (lmax - lmin));
        s->p = xmalloc("large", s->size);
        touch(s->p, 0, s->size);
    }
    for (size_t k = 0; k < live; k++)
        if (slots[k].p) {
            check(&slots[k]);
            free(slots[k].p);
        }
    double dt = now_s() - t0;
    free(slots);
    bench_report("large", (double)ops / dt / 1e3, "kops/s", "ops=%zu reallocs=%zu live=%zu", ops, reallocs, live);
    return 0;
}
