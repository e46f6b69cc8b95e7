/*
 * reentry_lib.c - a shared library for `faults reentry` (c_tests/faults.c):
 * its constructor allocates, and starts and joins a thread that allocates,
 * all from inside dlopen(); its functions allocate and free for the caller;
 * its destructor frees what the constructor kept.  The runner builds it with
 * -shared -fPIC; it links against no allocator, so its malloc is whichever
 * the process uses.
 *
 * Built a second time with -DREENTRY_NEEDED as libreentry_needed.so, which
 * the `faults-reentry` binary links (DT_NEEDED): its constructor then runs
 * before main, at load time, next to memalloc's own.  Its exported names
 * get a different prefix so that the two copies never interpose.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef REENTRY_NEEDED
#define EXPORT(name) reentry_needed_##name
#else
#define EXPORT(name) reentry_lib_##name
#endif

enum { KEPT = 32 };
static void *kept[KEPT];
static size_t kept_n[KEPT];
static int ctor_ok;

static void fill(void *p, size_t n, unsigned char seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + i);
}

static int intact(const void *p, size_t n, unsigned char seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i))
            return 0;
    return 1;
}

static void *lib_thread(void *arg)
{
    (void)arg;
    int ok = 1;
    for (int i = 0; i < 500; i++) {
        size_t n = 1 + (size_t)(i * 131) % 20000;
        void *p = malloc(n);
        if (p == NULL)
            return NULL;
        fill(p, n, (unsigned char)i);
        char *s = strdup("allocated in a thread started by a constructor inside dlopen");
        ok &= s != NULL && intact(p, n, (unsigned char)i);
        free(s);
        free(p);
    }
    return ok ? (void *)1 : NULL;
}

__attribute__((constructor)) static void lib_init(void)
{
    int ok = 1;
    for (int i = 0; i < KEPT; i++) {
        kept_n[i] = 8 + (size_t)i * 997 + (i % 8 == 7 ? 200000 : 0);
        kept[i] = i % 3 == 0 ? calloc(1, kept_n[i]) : malloc(kept_n[i]);
        if (kept[i] == NULL) {
            ok = 0;
            continue;
        }
        if (i % 3 == 0) {
            const unsigned char *b = kept[i];
            for (size_t k = 0; k < kept_n[i]; k++)
                ok &= b[k] == 0;
        }
        fill(kept[i], kept_n[i], (unsigned char)i);
    }
    void *p = realloc(kept[1], kept_n[1] * 40);
    if (p != NULL) {
        ok &= intact(p, kept_n[1], 1);
        kept[1] = p;
        kept_n[1] *= 40;
        fill(p, kept_n[1], 1);
    } else {
        ok = 0;
    }
    pthread_t t;
    void *r = NULL;
    ok &= pthread_create(&t, NULL, lib_thread, NULL) == 0 && pthread_join(t, &r) == 0 && r != NULL;
    ctor_ok = ok;
}

__attribute__((destructor)) static void lib_fini(void)
{
    for (int i = 0; i < KEPT; i++) {
        if (kept[i] != NULL && !intact(kept[i], kept_n[i], (unsigned char)i))
            abort();
        free(kept[i]);
        kept[i] = NULL;
    }
}

/* 1 if the constructor's allocations all succeeded and are intact. */
int EXPORT(ctor_ok)(void)
{
    for (int i = 0; i < KEPT; i++)
        if (kept[i] == NULL || !intact(kept[i], kept_n[i], (unsigned char)i))
            return 0;
    return ctor_ok;
}

void *EXPORT(alloc)(size_t n)
{
    return malloc(n);
}

void EXPORT(free)(void *p)
{
    free(p);
}
