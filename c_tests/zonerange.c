/*
 * zonerange.c - small zones come from one reserved range, each class at a
 * slot of its own in every 2 MiB row, so that free finds a block's class
 * and zone-map entry from its address with no load of the map
 * (src/heap/zonemap.rs, "The zone range"; docs/performance.md, "A small
 * free without the map (zone17i)"), on the real library.
 *
 *   - blocks of every class, past the class's first allocations (which may
 *     come from the heap: cold classes), lie in one 4 GiB-aligned range,
 *     at granule (address bits 16-20) equal to their class's index;
 *   - a class's zones given back (every block freed, then blocks of
 *     another class) are taken again for it, and memalloc_check finds the
 *     heap and the range consistent throughout;
 *   - the dump lists the range as a region of kind "zones";
 *   - zones given back go back to the kernel: 10 MB of 100-byte blocks
 *     freed, then malloc_trim, and the resident set is down by at least
 *     8 MB (the classes' few kept zones discarded by the trim, the others
 *     as they are given back);
 *   - frees of pointers into the range that are no block (a slot of no
 *     class, a zone's header room) are reported as invalid, in a child
 *     each, never a crash.
 */
#include "check.h"

#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define ZONE ((uintptr_t)64 << 10)
#define RANGE ((uintptr_t)1 << 32)

static const size_t class_size[] = {
    16,   32,   48,   64,   80,   96,   112,  128,  160,  192,  224,  256,  320,  384,
    448,  512,  640,  768,  896,  1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096,
};
enum { NCLASS = sizeof class_size / sizeof class_size[0], PER = 64 };

static void *blk[NCLASS][PER];

enum { MANY = 100000 };
static void *many[MANY];

/* The resident set in bytes (/proc/self/statm's second field). */
static long resident(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

/* Frees p in a child, which must die of SIGABRT with a report naming
 * an invalid pointer on stderr. */
static void expect_invalid(const char *what, void *p)
{
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        free(p);
        _exit(0);
    }
    close(fd[1]);
    char buf[512];
    ssize_t n, got = 0;
    while (got < (ssize_t)sizeof buf - 1 && (n = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += n;
    buf[got] = 0;
    close(fd[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: status %#x, stderr '%s'", what, st,
           buf);
    CHECKF(strstr(buf, "memalloc: invalid pointer") != NULL, "%s: stderr '%s'", what, buf);
}

int main(void)
{
    check_begin();
    size_t (*check_heap)(void) = (size_t(*)(void))memalloc_sym("memalloc_check");
    CHECK(check_heap != NULL);
    uintptr_t base = 0;
    for (int c = 0; c < NCLASS; c++) {
        for (int i = 0; i < PER; i++) {
            blk[c][i] = malloc(class_size[c]);
            CHECK(blk[c][i] != NULL);
            memset(blk[c][i], 0x5a, class_size[c]);
        }
        /* The last block is past the cold allocations: a zone's. */
        uintptr_t p = (uintptr_t)blk[c][PER - 1];
        if (base == 0)
            base = p & ~(RANGE - 1);
        CHECKF((p & ~(RANGE - 1)) == base, "class %d: %#lx not in the range at %#lx", c,
               (unsigned long)p, (unsigned long)base);
        CHECKF(((p >> 16) & 31) == (uintptr_t)c, "class %d: %#lx in slot %lu", c,
               (unsigned long)p, (unsigned long)((p >> 16) & 31));
    }
    CHECK(check_heap() == 0);

    /* The dump names the range. */
    static char text[1 << 20];
    dump_text(text, sizeof text);
    char want[64];
    snprintf(want, sizeof want, "region %#lx-", (unsigned long)base);
    CHECKF(strstr(text, want) != NULL && strstr(text, " zones ") != NULL,
           "the dump has no region '%s... zones'", want);

    /* Bad frees into the range: a slot no class has (30), the header room
     * of a zone (the first 192 bytes of its granule). */
    uintptr_t z64 = (uintptr_t)blk[3][PER - 1] & ~(ZONE - 1);
    expect_invalid("slot 30", (void *)((z64 & ~(32 * ZONE - 1)) + 30 * ZONE + 256));
    expect_invalid("zone header room", (void *)(z64 + 64));

    /* Every block of the 4096-byte class freed: its zones but the current
     * one go back (kept or discarded); blocks of it again come from the
     * range, in its slot, and the heap stays consistent. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < PER; i++)
            free(blk[NCLASS - 1][i]);
        CHECK(check_heap() == 0);
        malloc_trim(0);
        CHECK(check_heap() == 0);
        for (int i = 0; i < PER; i++) {
            blk[NCLASS - 1][i] = malloc(4096);
            CHECK(blk[NCLASS - 1][i] != NULL);
            memset(blk[NCLASS - 1][i], round, 4096);
        }
        uintptr_t p = (uintptr_t)blk[NCLASS - 1][PER - 1];
        CHECK((p & ~(RANGE - 1)) == base && ((p >> 16) & 31) == NCLASS - 1);
        CHECK(check_heap() == 0);
    }
    for (int c = 0; c < NCLASS; c++)
        for (int i = 0; i < PER; i++)
            free(blk[c][i]);
    CHECK(check_heap() == 0);

    /* Zones back to the kernel. */
    long r0 = resident();
    for (int i = 0; i < MANY; i++) {
        many[i] = malloc(100);
        CHECK(many[i] != NULL);
        memset(many[i], 0x33, 100);
    }
    long r1 = resident();
    for (int i = 0; i < MANY; i++)
        free(many[i]);
    CHECK(check_heap() == 0);
    malloc_trim(0);
    long r2 = resident();
    printf("resident: %ld KiB, %ld KiB with %d blocks of 100 bytes, %ld KiB after their frees "
           "and malloc_trim\n",
           r0 >> 10, r1 >> 10, MANY, r2 >> 10);
    CHECKF(r1 - r2 >= 8L << 20, "resident %ld -> %ld -> %ld KiB", r0 >> 10, r1 >> 10, r2 >> 10);
    check_done("zonerange");
    return 0;
}
