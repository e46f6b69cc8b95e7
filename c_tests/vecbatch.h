/*
 * vecbatch.h - one batch of bench/realloc's vectors, for vecgrow.c and
 * strvec.c: 4 vectors of 32-bit ints, interleaved, each grown by push_back
 * from 1 element to 1M (4 MiB), doubling its capacity by realloc when full;
 * then each is checked and freed. Needs check.h first.
 */
#ifndef VECBATCH_H
#define VECBATCH_H

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>

#define VEC_AT_ONCE 4
#define VEC_LEN ((size_t)1 << 20)

/* The process's minor page faults so far. */
static long vec_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* One batch; returns the most blocks mapped (mallinfo2's hblks) after a
 * realloc. */
static size_t vec_batch(void)
{
    size_t most = 0;
    uint32_t *v[VEC_AT_ONCE] = {0};
    size_t cap[VEC_AT_ONCE] = {0};
    for (size_t i = 0; i < VEC_LEN; i++) {
        for (int k = 0; k < VEC_AT_ONCE; k++) {
            if (i == cap[k]) {
                size_t nc = cap[k] ? cap[k] * 2 : 1;
                uint32_t *nv = realloc(v[k], nc * sizeof *nv);
                CHECK(nv != NULL);
                if (nv == NULL)
                    exit(1);
                v[k] = nv;
                cap[k] = nc;
                size_t h = mallinfo2().hblks;
                most = h > most ? h : most;
            }
            v[k][i] = (uint32_t)(i ^ (uint32_t)k);
        }
    }
    for (int k = 0; k < VEC_AT_ONCE; k++) {
        size_t bad = 0;
        for (size_t i = 0; i < VEC_LEN; i += 4093)
            bad += v[k][i] != (uint32_t)(i ^ (uint32_t)k);
        bad += v[k][VEC_LEN - 1] != (uint32_t)((VEC_LEN - 1) ^ (uint32_t)k);
        CHECKF(bad == 0, "vector %d lost %zu values", k, bad);
        free(v[k]);
    }
    return most;
}

#endif
