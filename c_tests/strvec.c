/*
 * strvec.c - strings built by realloc, then vectors grown by doubling
 * (bench/realloc's two parts, one after the other): the vectors reuse the
 * memory the strings freed, which the medium caches hold, instead of growing
 * the break with fresh pages.
 *
 * 1. 64 strings at once, each grown by realloc in steps of 16-256 bytes to
 *    64 KiB, then freed and started again, 400 in all; then all freed. Their
 *    chunks (classes of 5-80 KiB) stay in the thread's medium lists and the
 *    shared lists, about 15 MiB, all the break holds.
 * 2. Batch 1 of 4 vectors of 32-bit ints, interleaved, each doubled from 1
 *    element to 1M (4 MiB): mapped from 128 KiB on, grown by mremap, freed
 *    (the frees raise the dynamic mmap threshold past 4 MiB).
 * 3. Batch 2: its 128 KiB-2 MiB steps now come from the heap, which is
 *    short of them; the caches' unused chunks go back to it first
 *    (`mcache::room_for`), and a vector at the break's tail grows into a
 *    free chunk below rather than grow the break (`Heap::resize_in_place`).
 * Checked: batch 2 takes fewer than 1024 page faults (getrusage; 190 here,
 * 2690 before realloc17j, 1165 with the caches' chunks given back but the
 * tail grown in place, 2691 with the reverse) and grows the break by less
 * than 2 MiB (0 here, 10176 KiB before); every string and vector keeps its
 * contents.
 *
 * memalloc only (the fault bound is memalloc's policy).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "vecbatch.h"

#define LIVE 64
#define STRINGS 400
#define MAXLEN (64 << 10)

typedef struct { unsigned char *p; size_t len; unsigned char c; } str_t;

static void str_new(str_t *s)
{
    s->len = 16;
    s->c = (unsigned char)('a' + (size_t)random() % 26);
    s->p = malloc(s->len);
    CHECK(s->p != NULL);
    memset(s->p, s->c, s->len);
}

static void str_free(str_t *s)
{
    size_t bad = 0;
    for (size_t i = 0; i < s->len; i += 97)
        bad += s->p[i] != s->c;
    bad += s->p[s->len - 1] != s->c;
    CHECKF(bad == 0, "string of %zu bytes lost %zu bytes", s->len, bad);
    free(s->p);
}

static void strings(void)
{
    static str_t set[LIVE];
    for (int i = 0; i < LIVE; i++)
        str_new(&set[i]);
    int done = 0;
    while (done < STRINGS) {
        str_t *s = &set[(size_t)random() % LIVE];
        size_t chunk = 16 + (size_t)random() % 241;
        unsigned char *np = realloc(s->p, s->len + chunk);
        CHECK(np != NULL);
        memset(np + s->len, s->c, chunk);
        s->p = np;
        s->len += chunk;
        if (s->len >= MAXLEN) {
            str_free(s);
            str_new(s);
            done++;
        }
    }
    for (int i = 0; i < LIVE; i++)
        str_free(&set[i]);
}

int main(void)
{
    check_begin();
    strings();
    vec_batch();
    char *b0 = sbrk(0);
    long f0 = vec_faults();
    vec_batch();
    long f = vec_faults() - f0;
    long grew = (long)((char *)sbrk(0) - b0);
    printf("strvec: batch 2 took %ld page faults, the break grew by %ld KiB\n", f, grew >> 10);
    CHECKF(f < 1024, "%ld page faults in batch 2 (one batch has 4096 pages)", f);
    CHECKF(grew < (2l << 20), "the break grew by %ld KiB in batch 2", grew >> 10);
    check_done("strvec");
    return 0;
}
