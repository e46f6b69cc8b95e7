/* bench/fixed.c — fixed-size malloc/free loop, one thread.
 *
 * usage: fixed [SIZE=64] [PAIRS=40e6] [WINDOW=64]
 *
 * Keeps the last WINDOW blocks live (a ring): each step frees the oldest
 * block and allocates a new one of SIZE bytes, writing its first and last
 * byte. This is the allocator's fast path and nothing else; the ring keeps
 * the compiler from pairing malloc with free and eliding both.
 * Figure: malloc+free pairs per second (M/s).
 */
#include "common.h"

int main(int argc, char **argv)
{
    size_t size = arg_size(argc, argv, 1, 64);
    size_t pairs = arg_size(argc, argv, 2, 40000000);
    size_t window = arg_size(argc, argv, 3, 64);
    if (size == 0 || window == 0 || (window & (window - 1))) {
        fprintf(stderr, "fixed: SIZE must be > 0 and WINDOW a power of two\n");
        return EXIT_USAGE;
    }
    void **ring = calloc(window, sizeof *ring);
    if (!ring)
        bench_oom("fixed", window * sizeof *ring);

    double t0 = now_s();
    for (size_t i = 0; i < pairs; i++) {
        size_t k = i & (window - 1);
        if (ring[k]) {
            check_block("fixed", ring[k], size);
            free(ring[k]);
        }
        ring[k] = xmalloc("fixed", size);
        tag_block(ring[k], size);
    }
    for (size_t k = 0; k < window; k++)
        free(ring[k]);
    double dt = now_s() - t0;
    free(ring);

    char name[32];
    snprintf(name, sizeof name, "fixed-%zu", size);
    bench_report(name, (double)pairs / dt / 1e6, "Mpairs/s", "pairs=%zu window=%zu", pairs, window);
    return 0;
}
