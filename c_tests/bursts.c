/* c_tests/bursts.c - bursts of frees and mallocs larger than a thread
 * cache's bins, for instruction counting under callgrind (c_tests/bursts.sh).
 *
 *   bursts ROUNDS [BURST=100]
 *
 * Holds BURST (at most MAX_BURST) blocks of each of five sizes (16 to 320
 * bytes, as the objects of a C++ vector<unique_ptr<...>>), each marked
 * with a value of its own in its first and last bytes.
 * Each round frees them all, interleaving the sizes, then allocates them all
 * again, checking every pattern before its free and that no block is handed
 * out twice in a round. A round is 5 * BURST malloc+free pairs, and each
 * burst is far more blocks of a class than a bin holds, so what the pairs
 * cost beyond the fast paths is how blocks leave a full bin for their zones
 * and come back.
 * bursts.sh divides the difference of the instruction counts of two runs
 * by the difference of their pairs, and compares it with bursts small
 * enough for the bins (BURST=16). Prints "ok bursts: ..." on success.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_BURST = 1000, NSIZES = 5 };
static int BURST = 100;
static const size_t sizes[NSIZES] = {16, 48, 112, 192, 320};
static unsigned char *blocks[NSIZES][MAX_BURST];

static void fill(unsigned char *p, size_t n, unsigned v)
{
    memcpy(p, &v, sizeof v);
    p[n - 1] = (unsigned char)(v & 0xff);
}

static int check(const unsigned char *p, size_t n, unsigned v)
{
    unsigned w;
    memcpy(&w, p, sizeof w);
    return w == v && p[n - 1] == (unsigned char)(v & 0xff);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 100;
    BURST = argc > 2 ? atoi(argv[2]) : 100;
    if (rounds < 1 || BURST < 1 || BURST > MAX_BURST) {
        fprintf(stderr, "usage: bursts ROUNDS [BURST<=%d]\n", MAX_BURST);
        return 64;
    }
    static uintptr_t all[NSIZES * MAX_BURST];
    for (int k = 0; k < NSIZES; k++)
        for (int i = 0; i < BURST; i++) {
            blocks[k][i] = malloc(sizes[k]);
            if (!blocks[k][i]) {
                printf("FAIL bursts: malloc(%zu) failed\n", sizes[k]);
                return 1;
            }
            fill(blocks[k][i], sizes[k], (unsigned)(k * BURST + i));
        }
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BURST; i++)
            for (int k = 0; k < NSIZES; k++) {
                unsigned v = (unsigned)(r * NSIZES * BURST + k * BURST + i);
                if (!check(blocks[k][i], sizes[k], v)) {
                    printf("FAIL bursts: block %p of %zu bytes lost its contents\n",
                           (void *)blocks[k][i], sizes[k]);
                    return 1;
                }
                free(blocks[k][i]);
            }
        for (int i = 0; i < BURST; i++)
            for (int k = 0; k < NSIZES; k++) {
                unsigned char *p = malloc(sizes[k]);
                if (!p) {
                    printf("FAIL bursts: malloc(%zu) failed\n", sizes[k]);
                    return 1;
                }
                fill(p, sizes[k], (unsigned)((r + 1) * NSIZES * BURST + k * BURST + i));
                blocks[k][i] = p;
                all[i * NSIZES + k] = (uintptr_t)p;
            }
        if (r == 0 || r == rounds - 1) {
            qsort(all, NSIZES * BURST, sizeof all[0], cmp_ptr);
            for (int j = 1; j < NSIZES * BURST; j++)
                if (all[j] == all[j - 1]) {
                    printf("FAIL bursts: %p handed out twice in one round\n", (void *)all[j]);
                    return 1;
                }
        }
    }
    for (int k = 0; k < NSIZES; k++)
        for (int i = 0; i < BURST; i++)
            free(blocks[k][i]);
    printf("ok bursts: %ld rounds of %d pairs\n", rounds, NSIZES * BURST);
    return 0;
}
