/* c_tests/prof_realloc.c — reallocs that need not move, profiling or not
 * (c_tests/prof.sh).
 *
 *   prof_realloc stay N   N reallocs of one block between two sizes its
 *                         chunk holds (it stays): the caller counts the
 *                         instructions (callgrind), profiling and not.
 *   prof_realloc grow     4 vectors doubled from 64 bytes to 4 MiB, 12
 *                         times over (the later doublings served by kept
 *                         mappings, where a block that still fits stays):
 *                         prints how many reallocs moved their block, and
 *                         how many there were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "stay") == 0) {
        long n = atol(argv[2]);
        char *volatile p = malloc(1000);
        for (long i = 0; i < n; i++)
            p = realloc(p, 1000 - (i & 1) * 16);
        free(p);
        return p ? 0 : 1;
    }
    if (argc > 1 && strcmp(argv[1], "grow") == 0) {
        size_t moves = 0, reallocs = 0;
        for (int rep = 0; rep < 12; rep++) {
            char *v[4] = {0};
            size_t cap[4] = {0};
            for (size_t c = 64; c <= (4u << 20); c *= 2) {
                for (int k = 0; k < 4; k++) {
                    char *q = realloc(v[k], c);
                    if (!q)
                        return 2;
                    moves += v[k] && q != v[k];
                    reallocs++;
                    memset(q + cap[k], 1, c - cap[k]);
                    v[k] = q;
                    cap[k] = c;
                }
            }
            for (int k = 0; k < 4; k++)
                free(v[k]);
        }
        printf("%zu %zu\n", moves, reallocs);
        return 0;
    }
    fprintf(stderr, "usage: prof_realloc stay N | grow\n");
    return 2;
}
