/* bench/mchurn.c — churn across the whole size range in one thread: mostly
 * small blocks, some medium ones (issue 17's first row).
 *
 * usage: mchurn [OPS=10e6] [LIVE=10000] [BIG_PERMILLE=50] [BIG_MAX=256k]
 *
 * Keeps LIVE blocks; OPS times, frees a random one and allocates a new one
 * in its slot: with probability BIG_PERMILLE/1000 uniform in 1 KiB..BIG_MAX,
 * else uniform in 8..1024 bytes. Only the first byte of each block is
 * written (a tag, checked before free), as a program that fills part of a
 * buffer does: pages an allocator writes headers into are its own cost.
 * Figure: malloc+free pairs per second (M/s).
 */
#include "common.h"

int main(int argc, char **argv)
{
    size_t ops = arg_size(argc, argv, 1, 10000000);
    size_t live = arg_size(argc, argv, 2, 10000);
    size_t big = arg_size(argc, argv, 3, 50);
    size_t big_max = arg_size(argc, argv, 4, 256 * 1024);
    if (live == 0 || big > 1000 || big_max < 1024) {
        fprintf(stderr, "mchurn: bad arguments\n");
        return EXIT_USAGE;
    }
    unsigned char **p = calloc(live, sizeof *p);
    size_t *sz = calloc(live, sizeof *sz);
    if (!p || !sz)
        bench_oom("mchurn", live * sizeof *p);
    rng_t r;
    rng_seed(&r, 17);
    double t0 = now_s();
    for (size_t i = 0; i < ops + live; i++) {
        uint64_t x = rng_next(&r);
        size_t k = i < live ? i : (size_t)(x % live);
        if (p[k]) {
            if (p[k][0] != tag_of(sz[k]))
                bench_corrupt("mchurn", p[k], sz[k]);
            free(p[k]);
        }
        size_t s = (rng_next(&r) % 1000) < big ? rng_range(&r, 1024, big_max) : rng_range(&r, 8, 1024);
        p[k] = xmalloc("mchurn", s);
        p[k][0] = tag_of(s);
        sz[k] = s;
    }
    double dt = now_s() - t0;
    for (size_t k = 0; k < live; k++)
        free(p[k]);
    bench_report("mchurn", (double)ops / dt / 1e6, "Mpairs/s", "ops=%zu live=%zu", ops, live);
    free(p);
    free(sz);
    return 0;
}
