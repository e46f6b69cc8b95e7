/* c_tests/prof_batch.c — the profiler's small path, counted by the thread
 * cache's own counters (cache::prof_tick; c_tests/prof.sh).
 *
 * Four call sites in one loop, each block freed soon after, so that bins
 * refilled by frees serve most mallocs:
 *   site_pair   40 bytes (class 48: a class's size is counted, the estimate
 *               must still be of the bytes requested), malloc + free;
 *   site_burst  48 bytes (the same class), 100 at once every 64th turn, then
 *               freed: the bin runs dry and the zone path serves the rest,
 *               so both of the class's counters fire;
 *   site_big    3000 bytes (class 3072: about 6 allocations per sample at
 *               16k) every 7th turn;
 *   site_medium 6000 bytes (counted outside the caches) every 100th turn.
 * Prints "truth SITE BYTES" per site and "class48 COUNT", the mallocs of
 * class 48 (MEMALLOC_STATS must show them all, profiling or not).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, noipa))
static NOINLINE void *site_pair(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_burst(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_big(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
static NOINLINE void *site_medium(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }

int main(int argc, char **argv)
{
    size_t turns = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    size_t pair = 0, burst = 0, big = 0, medium = 0, n48 = 0;
    static void *held[100];
    void *volatile keep;
    for (size_t i = 0; i < turns; i++) {
        keep = site_pair(40);
        if (!keep)
            return 1;
        free(keep);
        pair += 40;
        n48++;
        if (i % 64 == 0) {
            for (int k = 0; k < 100; k++)
                if (!(held[k] = site_burst(48)))
                    return 1;
            for (int k = 0; k < 100; k++)
                free(held[k]);
            burst += 100 * 48;
            n48 += 100;
        }
        if (i % 7 == 0) {
            if (!(keep = site_big(3000)))
                return 1;
            free(keep);
            big += 3000;
        }
        if (i % 100 == 0) {
            if (!(keep = site_medium(6000)))
                return 1;
            free(keep);
            medium += 6000;
        }
    }
    printf("truth site_pair %zu\ntruth site_burst %zu\ntruth site_big %zu\ntruth site_medium %zu\n",
           pair, burst, big, medium);
    printf("class48 %zu\n", n48);
    return 0;
}
