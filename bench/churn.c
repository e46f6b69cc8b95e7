/* bench/churn.c — random-size churn over a live working set (cfrac/espresso-like).
 *
 * usage: churn [OPS=6e6] [LIVE=30000] [SEED=1]
 *
 * LIVE slots hold blocks; each op frees the block in a random slot and puts a
 * new one there. Sizes are skewed small: log-uniform over 8..2048, and 0.5%
 * uniform up to 64 KiB. Every new block is written once per 64-byte line
 * (the program uses its memory) and its tag is checked before free. Every
 * 256k ops a phase change frees a random tenth of the slots in a row and
 * refills them, which is what fragments a heap in real programs.
 * Figure: ops per second (M/s).
 */
#include "common.h"

typedef struct { unsigned char *p; size_t size; } slot_t;

static inline void fill(slot_t *s, rng_t *r)
{
    size_t size = rng_small_size(r, 5, 64 * 1024);
    unsigned char *p = xmalloc("churn", size);
    for (size_t off = 0; off < size; off += 64)
        p[off] = (unsigned char)off;
    tag_block(p, size);
    s->p = p;
    s->size = size;
}

static inline void drop(slot_t *s)
{
    check_block("churn", s->p, s->size);
    bench_sink += s->p[s->size / 2];
    free(s->p);
    s->p = NULL;
}

int main(int argc, char **argv)
{
    size_t ops = arg_size(argc, argv, 1, 6000000);
    size_t live = arg_size(argc, argv, 2, 30000);
    size_t seed = arg_size(argc, argv, 3, 1);
    if (live < 16) {
        fprintf(stderr, "churn: LIVE must be >= 16\n");
        return EXIT_USAGE;
    }
    rng_t r;
    rng_seed(&r, seed);
    slot_t *slots = calloc(live, sizeof *slots);
    if (!slots)
        bench_oom("churn", live * sizeof *slots);

    double t0 = now_s();
    for (size_t i = 0; i < live; i++)
        fill(&slots[i], &r);
    for (size_t i = 0; i < ops; i++) {
        if ((i & ((1u << 18) - 1)) == 0 && i) {
            /* phase change: drop a run of a tenth of the slots, then refill */
            size_t n = live / 10, start = rng_range(&r, 0, live - 1);
            for (size_t j = 0; j < n; j++)
                drop(&slots[(start + j) % live]);
            for (size_t j = 0; j < n; j++)
                fill(&slots[(start + j) % live], &r);
        }
        slot_t *s = &slots[rng_next(&r) % live];
        drop(s);
        fill(s, &r);
    }
    for (size_t i = 0; i < live; i++)
        drop(&slots[i]);
    double dt = now_s() - t0;
    free(slots);
    bench_report("churn", (double)ops / dt / 1e6, "Mops/s", "ops=%zu live=%zu", ops, live);
    return 0;
}
