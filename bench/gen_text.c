/* bench/gen_text.c — write a deterministic text file for the `sort` workload.
 *
 * usage: gen_text BYTES OUTPUT [SEED=1]
 *
 * Lines of 1..12 pseudo-words (2..9 letters from a small syllable set, so
 * that many lines share prefixes, as real text does), some with a number,
 * until BYTES bytes have been written. Same arguments, same bytes.
 */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gen_text BYTES OUTPUT [SEED]\n");
        return EXIT_USAGE;
    }
    size_t bytes = arg_size(argc, argv, 1, 0);
    FILE *f = fopen(argv[2], "w");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    rng_t r;
    rng_seed(&r, arg_size(argc, argv, 3, 1));
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "an", "el",
                                "is", "or", "un", "bra", "che", "dro", "fli", "gra", "pho", "stu"};
    const size_t nsyl = sizeof syl / sizeof *syl;
    char line[512];
    size_t written = 0;
    while (written < bytes) {
        size_t len = 0, words = rng_range(&r, 1, 12);
        for (size_t w = 0; w < words; w++) {
            if (w)
                line[len++] = ' ';
            if (rng_next(&r) % 10 == 0) {
                len += (size_t)sprintf(line + len, "%u", (unsigned)(rng_next(&r) % 100000));
                continue;
            }
            size_t parts = rng_range(&r, 1, 4);
            for (size_t s = 0; s < parts; s++) {
                const char *x = syl[rng_next(&r) % nsyl];
                size_t n = strlen(x);
                memcpy(line + len, x, n);
                len += n;
            }
        }
        line[len++] = '\n';
        fwrite(line, 1, len, f);
        written += len;
    }
    if (fclose(f) != 0) {
        perror(argv[2]);
        return 1;
    }
    return 0;
}
