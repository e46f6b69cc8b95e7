/*
 * memalloc.h - the C interface of libmemalloc.so.
 *
 * memalloc replaces the C allocator: link with -lmemalloc (or preload
 * libmemalloc.so) and the standard functions below come from it.  Their
 * behaviour follows glibc's manual pages.  The memalloc_* functions are
 * extensions: a heap dump, a consistency check, statistics, and pools over
 * memory the caller owns.
 *
 *   cc prog.c -Iinclude -Ltarget/release -lmemalloc -Wl,-rpath,$PWD/target/release
 */
#ifndef MEMALLOC_H
#define MEMALLOC_H

#include <stddef.h>
#include <stdint.h>

/* free_sized and free_aligned_sized throw nothing, declared so as glibc
 * declares its own functions (__THROW): a noexcept caller, such as C++'s
 * sized operator delete (memalloc-new-delete.h), then calls them with a
 * jump, not a call and a frame kept in case they throw. */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define MEMALLOC_NOTHROW noexcept(true)
#elif defined(__cplusplus)
#define MEMALLOC_NOTHROW throw()
#elif defined(__GNUC__)
#define MEMALLOC_NOTHROW __attribute__((__nothrow__))
#else
#define MEMALLOC_NOTHROW
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The standard allocator (glibc's family) ------------------------- */
void *malloc(size_t size);
void free(void *ptr);
void *calloc(size_t nmemb, size_t size);
void *realloc(void *ptr, size_t size);
void *reallocarray(void *ptr, size_t nmemb, size_t size);
int posix_memalign(void **memptr, size_t alignment, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size);
void *valloc(size_t size);
void *pvalloc(size_t size);
size_t malloc_usable_size(void *ptr);
void cfree(void *ptr);
void free_sized(void *ptr, size_t size) MEMALLOC_NOTHROW;
void free_aligned_sized(void *ptr, size_t alignment, size_t size) MEMALLOC_NOTHROW;
int malloc_trim(size_t pad);
int mallopt(int param, int value);
void malloc_stats(void);

/* ---- Extensions ------------------------------------------------------- */

/* Writes every region and block (address, size, used/free) and the TLSF
 * bitmaps to fd, without allocating. */
void memalloc_dump(int fd);

/* Walks the whole heap and returns the number of broken invariants
 * (0 means consistent). */
size_t memalloc_check(void);

/* With MEMALLOC_PROF=1 (the heap profiler, docs/profiler.md): writes the
 * sampled blocks live now to fd, one line per call stack in the collapsed
 * format ("frame;frame;... bytes", outermost first; each frame
 * "name [object+0xoffset]", which scripts/memprof symbolizes).  Writes
 * nothing when profiling is off. */
void memalloc_prof_dump(int fd);

/* Figures about the process heap, all in bytes unless named otherwise. */
struct memalloc_stats {
    size_t in_use;          /* bytes handed out to the program (usable sizes) */
    size_t peak_in_use;     /* highest in_use seen */
    size_t heap_bytes;      /* bytes the heap holds from the OS: break + mmap regions */
    size_t brk_bytes;       /* of which in the program break */
    size_t mmap_region_bytes; /* of which in mmap'd heap regions */
    size_t large_bytes;     /* bytes in blocks mapped on their own */
    size_t large_count;     /* number of such blocks */
    size_t free_bytes;      /* free bytes inside the heap regions */
    size_t free_blocks;     /* number of free blocks inside the heap regions */
    size_t released_bytes;  /* bytes given back to the OS so far (break shrunk, unmapped, madvised) */
    size_t syscalls;        /* sbrk/mmap/munmap/mremap/madvise/mincore calls made */
    size_t medium_cached;   /* bytes held in the medium caches (not in in_use) */
    size_t medium_reclaims; /* idle threads' medium caches taken back (MEMALLOC_IDLE_MS) */
};
void memalloc_get_stats(struct memalloc_stats *out);

/* Pools over caller memory: a TLSF heap on a region the caller owns, with no
 * system call, as on bare metal.  The pool's bookkeeping lives at the start
 * of mem.  memalloc_pool_create returns NULL if bytes is too small. */
typedef struct memalloc_pool memalloc_pool_t;
memalloc_pool_t *memalloc_pool_create(void *mem, size_t bytes);
int memalloc_pool_add_region(memalloc_pool_t *pool, void *mem, size_t bytes);
void *memalloc_pool_malloc(memalloc_pool_t *pool, size_t size);
void *memalloc_pool_memalign(memalloc_pool_t *pool, size_t alignment, size_t size);
void *memalloc_pool_realloc(memalloc_pool_t *pool, void *ptr, size_t size);
void memalloc_pool_free(memalloc_pool_t *pool, void *ptr);
size_t memalloc_pool_check(memalloc_pool_t *pool);
void memalloc_pool_destroy(memalloc_pool_t *pool);

#ifdef __cplusplus
}
#endif

#endif /* MEMALLOC_H */
