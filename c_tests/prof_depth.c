/* c_tests/prof_depth.c — samples whose stacks the walks' memo cannot replay
 * (c_tests/prof.sh: the cost of a walk under callgrind).
 *
 * usage: prof_depth DEPTH SPREAD PAIRS SIZE
 *
 * PAIRS malloc + free pairs of SIZE bytes, each made DEPTH + 3 (i % SPREAD)
 * frames of `leaf` below main. SPREAD 1: every sample starts its walk from
 * the same place, which the memo replays; SPREAD 8: eight places in turn,
 * more than a thread's four memos hold, so that about half the samples
 * walk their stack frame by frame.
 */
#include <stdio.h>
#include <stdlib.h>

static volatile size_t g_size;

__attribute__((noinline)) static void *leaf(int d)
{
    if (d > 0) {
        void *p = leaf(d - 1);
        /* (No tail call: each level keeps its frame.) */
        __asm__ volatile("" ::: "memory");
        return p;
    }
    return malloc(g_size);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: prof_depth DEPTH SPREAD PAIRS SIZE\n");
        return 2;
    }
    int depth = atoi(argv[1]), spread = atoi(argv[2]);
    long n = atol(argv[3]);
    g_size = (size_t)atol(argv[4]);
    if (spread < 1)
        spread = 1;
    for (long i = 0; i < n; i++) {
        void *p = leaf(depth + (int)(i % spread) * 3);
        if (!p)
            return 1;
        free(p);
    }
    return 0;
}
