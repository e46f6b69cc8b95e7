/* bench/pair.c — N malloc+free pairs of one size, for instruction counting
 * under callgrind (scripts/bench.sh --callgrind).
 *
 * usage: pair [N=1e6] [SIZE=32] [WARMUP=1000]
 *
 * WARMUP pairs first (so that one-time set-up, thread-cache creation and the
 * first page faults are out of the way), then N pairs. The harness runs two
 * values of N and divides the difference of the instruction counts by the
 * difference of N: start-up, warm-up and exit costs cancel out, leaving the
 * cost of one malloc + free on the allocator's fast path.
 */
#include "common.h"

int main(int argc, char **argv)
{
    size_t n = arg_size(argc, argv, 1, 1000000);
    size_t size = arg_size(argc, argv, 2, 32);
    size_t warm = arg_size(argc, argv, 3, 1000);
    void *volatile keep;
    for (size_t i = 0; i < warm + n; i++) {
        void *p = malloc(size);
        if (!p)
            bench_oom("pair", size);
        keep = p;              /* a volatile store: the pair cannot be elided */
        free(keep);
    }
    printf("pair: n=%zu size=%zu alloc=%s\n", n, size, bench_allocator());
    return 0;
}
