/* bench/realloc.c — realloc growth: string building and vector doubling.
 *
 * usage: realloc [STRINGS=1600] [LIVE=64] [MAXLEN=64k] [VECTORS=48] [VECLEN=1M]
 *
 * Part 1, strings: LIVE strings are built at once; each step appends a chunk
 * of 16..256 bytes to a random one, growing it by realloc to exactly the new
 * length (the naive C idiom), from 16 bytes until it passes MAXLEN; then its
 * contents are checked and it is freed and a new one started, STRINGS times
 * in all. Interleaving the strings keeps the growth from always being in
 * place at the top of the heap.
 * Part 2, vectors: VECTORS vectors of 32-bit ints, 4 at a time, each grown by
 * push_back to VECLEN elements, doubling its capacity by realloc when full.
 * Figure: reallocs per second over both parts (M/s).
 */
#include "common.h"

typedef struct { unsigned char *p; size_t len; uint64_t sum; } str_t;

static size_t g_reallocs;

static void str_new(str_t *s)
{
    s->len = 16;
    s->p = xmalloc("realloc", s->len);
    memset(s->p, 'a', s->len);
    s->sum = 'a' * 16;
}

static void str_check_free(str_t *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->len; i++)
        sum += s->p[i];
    if (sum != s->sum) {
        fprintf(stderr, "bench: realloc: string %p of %zu bytes lost its contents (heap corruption)\n",
                (void *)s->p, s->len);
        exit(EXIT_CORRUPT);
    }
    free(s->p);
}

static void part_strings(size_t strings, size_t live, size_t maxlen, rng_t *r)
{
    str_t *set = xmalloc("realloc", live * sizeof *set);
    for (size_t i = 0; i < live; i++)
        str_new(&set[i]);
    size_t done = 0;
    while (done < strings) {
        str_t *s = &set[rng_next(r) % live];
        size_t chunk = rng_range(r, 16, 256);
        unsigned char c = (unsigned char)('a' + chunk % 26);
        unsigned char *np = realloc(s->p, s->len + chunk);
        if (!np)
            bench_oom("realloc", s->len + chunk);
        g_reallocs++;
        memset(np + s->len, c, chunk);
        s->p = np;
        s->len += chunk;
        s->sum += (uint64_t)c * chunk;
        if (s->len >= maxlen) {
            str_check_free(s);
            str_new(s);
            done++;
        }
    }
    for (size_t i = 0; i < live; i++)
        str_check_free(&set[i]);
    free(set);
}

typedef struct { uint32_t *v; size_t len, cap; } vec_t;

static void part_vectors(size_t vectors, size_t veclen)
{
    enum { AT_ONCE = 4 };
    for (size_t done = 0; done < vectors; done += AT_ONCE) {
        vec_t vs[AT_ONCE] = {{0}};
        for (size_t i = 0; i < veclen; i++) {
            for (size_t k = 0; k < AT_ONCE; k++) {
                vec_t *v = &vs[k];
                if (v->len == v->cap) {
                    size_t cap = v->cap ? v->cap * 2 : 1;
                    uint32_t *nv = realloc(v->v, cap * sizeof *nv);
                    if (!nv)
                        bench_oom("realloc", cap * sizeof *nv);
                    g_reallocs++;
                    v->v = nv;
                    v->cap = cap;
                }
                v->v[v->len++] = (uint32_t)i;
            }
        }
        for (size_t k = 0; k < AT_ONCE; k++) {
            vec_t *v = &vs[k];
            if (v->v[veclen / 2] != veclen / 2 || v->v[veclen - 1] != veclen - 1) {
                fprintf(stderr, "bench: realloc: vector lost its contents (heap corruption)\n");
                exit(EXIT_CORRUPT);
            }
            free(v->v);
        }
    }
}

int main(int argc, char **argv)
{
    size_t strings = arg_size(argc, argv, 1, 1600);
    size_t live = arg_size(argc, argv, 2, 64);
    size_t maxlen = arg_size(argc, argv, 3, 64 * 1024);
    size_t vectors = arg_size(argc, argv, 4, 48);
    size_t veclen = arg_size(argc, argv, 5, 1024 * 1024);
    if (live == 0 || maxlen < 32 || veclen == 0) {
        fprintf(stderr, "realloc: bad arguments\n");
        return EXIT_USAGE;
    }
    rng_t r;
    rng_seed(&r, 7);
    double t0 = now_s();
    part_strings(strings, live, maxlen, &r);
    double t1 = now_s();
    part_vectors(vectors, veclen);
    double t2 = now_s();
    bench_report("realloc", (double)g_reallocs / (t2 - t0) / 1e6, "Mreallocs/s",
                 "strings_s=%.3f vectors_s=%.3f reallocs=%zu", t1 - t0, t2 - t1, g_reallocs);
    return 0;
}
