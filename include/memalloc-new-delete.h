/*
 * memalloc-new-delete.h - C++ operator new and delete on memalloc.
 *
 * Include it in exactly ONE translation unit of a program linked with
 * memalloc, and every replaceable global operator new and delete of C++17
 * comes from memalloc, in the program and in the libraries it loads
 * (libstdc++'s own std::string and containers included):
 *
 *   // main.cpp
 *   #include <memalloc-new-delete.h>
 *
 *   g++ main.cpp $(pkg-config --cflags --libs memalloc)
 *
 * Without it, a C++ program on memalloc (linked or preloaded) still gets
 * memalloc's blocks, through libstdc++'s operator new, which calls malloc;
 * with it, new is a jump into memalloc (memalloc_new, below) instead of
 * two calls, and sized delete passes its size on (free_sized,
 * free_aligned_sized), which memalloc's debug mode (MEMALLOC_DEBUG=1)
 * checks: a delete whose size is not the size the block was allocated
 * with is reported and aborts.
 *
 * What the standard asks of these operators ([new.delete]):
 *   - new never returns null: when memory runs out it calls the installed
 *     std::new_handler, and tries again, until the allocation succeeds or
 *     there is no handler; then it throws std::bad_alloc (or, built with
 *     -fno-exceptions, aborts);
 *   - the nothrow forms do the same but return nullptr instead of
 *     throwing (also when a handler throws std::bad_alloc);
 *   - the std::align_val_t forms return blocks aligned as asked;
 *   - new of 0 bytes returns a unique pointer.
 *
 * The operators are defined, not declared inline (the standard forbids
 * inline replacements), with default visibility so that shared libraries
 * bind to them even under -fvisibility=hidden: hence one translation unit.
 * Details: docs/cxx.md.
 */
#ifndef MEMALLOC_NEW_DELETE_H
#define MEMALLOC_NEW_DELETE_H

#if defined(__cplusplus)

#include <cstddef>
#include <cstdlib>
#include <new>

#include "memalloc.h"

#define MEMALLOC_CXX_EXPORT __attribute__((visibility("default")))

/* GCC's noplt: in position-independent code (a PIE program, a shared
 * library) the calls below go through the GOT, `call *malloc@GOTPCREL`,
 * rather than through a PLT stub, one jump more a new and a delete
 * (bench/cxx_stl uptr at scale 0.1: 62.29M -> 61.49M instructions, 2 a
 * step of about 150). */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__PIC__) || defined(__PIE__))
#define MEMALLOC_CXX_NOPLT __attribute__((noplt))
#else
#define MEMALLOC_CXX_NOPLT
#endif

namespace memalloc_new_delete {

/* The failure path that memalloc_new calls (below). */
typedef void *(*new_fail_t)(std::size_t n, std::size_t align);

/* memalloc's functions, under names of their own (the asm labels are the
 * symbols), so that the declarations can say noplt without redeclaring
 * the C library's.
 *
 * memalloc_new(n, fail) is malloc(n), memalloc_new_aligned(n, align, fail)
 * aligned_alloc(align, n), but when there is no block they return
 * fail(n, align) by a jump (align 0 for memalloc_new): no frame of
 * memalloc's lies under fail when it throws, and operator new is a jump
 * to them, with no frame of its own to keep n for its failure path. They
 * throw what fail throws; declared noexcept (the _nt names) for the
 * nothrow forms, whose fail does not throw. */
extern "C" {
void *memalloc_new_(std::size_t n, new_fail_t fail) __asm__("memalloc_new") MEMALLOC_CXX_NOPLT;
void *memalloc_new_aligned_(std::size_t n, std::size_t align, new_fail_t fail)
    __asm__("memalloc_new_aligned") MEMALLOC_CXX_NOPLT;
void *memalloc_new_nt_(std::size_t n, new_fail_t fail) noexcept
    __asm__("memalloc_new") MEMALLOC_CXX_NOPLT;
void *memalloc_new_aligned_nt_(std::size_t n, std::size_t align, new_fail_t fail) noexcept
    __asm__("memalloc_new_aligned") MEMALLOC_CXX_NOPLT;
void *malloc_(std::size_t n) noexcept __asm__("malloc") MEMALLOC_CXX_NOPLT;
void *aligned_alloc_(std::size_t align, std::size_t n) noexcept
    __asm__("aligned_alloc") MEMALLOC_CXX_NOPLT;
void free_(void *p) noexcept __asm__("free") MEMALLOC_CXX_NOPLT;
void free_sized_(void *p, std::size_t n) noexcept __asm__("free_sized") MEMALLOC_CXX_NOPLT;
void free_aligned_sized_(void *p, std::size_t align, std::size_t n) noexcept
    __asm__("free_aligned_sized") MEMALLOC_CXX_NOPLT;
}

/* The block, from malloc (align 0) or aligned_alloc. */
static inline void *try_alloc(std::size_t n, std::size_t align) noexcept
{
    return align == 0 ? malloc_(n) : aligned_alloc_(align, n);
}

[[noreturn]] static void throw_bad_alloc()
{
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    throw std::bad_alloc();
#else
    std::abort();
#endif
}

/* new's failure path, which memalloc_new calls when memalloc has no block
 * (a jump: no frame of memalloc's under it): the new_handler loop. */
__attribute__((noinline, cold)) static void *new_fail(std::size_t n, std::size_t align)
{
    for (;;) {
        std::new_handler h = std::get_new_handler();
        if (h == nullptr)
            throw_bad_alloc();
        h();
        void *p = try_alloc(n, align);
        if (p != nullptr)
            return p;
    }
}

/* The same for the nothrow forms: nullptr where new would throw. */
__attribute__((noinline, cold)) static void *new_fail_nothrow(std::size_t n,
                                                              std::size_t align) noexcept
{
    for (;;) {
        std::new_handler h = std::get_new_handler();
        if (h == nullptr)
            return nullptr;
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
        try {
            h();
        } catch (const std::bad_alloc &) {
            return nullptr;
        }
#else
        h();
#endif
        void *p = try_alloc(n, align);
        if (p != nullptr)
            return p;
    }
}

} // namespace memalloc_new_delete

/* ---- new ------------------------------------------------------------------ */
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n)
{
    return memalloc_new_delete::memalloc_new_(n, memalloc_new_delete::new_fail);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n)
{
    return memalloc_new_delete::memalloc_new_(n, memalloc_new_delete::new_fail);
}
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::memalloc_new_nt_(n, memalloc_new_delete::new_fail_nothrow);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::memalloc_new_nt_(n, memalloc_new_delete::new_fail_nothrow);
}

/* ---- delete: the size, when the compiler knows it, goes to free_sized ----- */
MEMALLOC_CXX_EXPORT void operator delete(void *p) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete(void *p, std::size_t n) noexcept
{
    memalloc_new_delete::free_sized_(p, n);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p, std::size_t n) noexcept
{
    memalloc_new_delete::free_sized_(p, n);
}

/* ---- the aligned forms (C++17) ------------------------------------------- */
#if defined(__cpp_aligned_new)
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t a)
{
    return memalloc_new_delete::memalloc_new_aligned_(n, static_cast<std::size_t>(a),
                                                      memalloc_new_delete::new_fail);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a)
{
    return memalloc_new_delete::memalloc_new_aligned_(n, static_cast<std::size_t>(a),
                                                      memalloc_new_delete::new_fail);
}
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t a,
                                       const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::memalloc_new_aligned_nt_(
        n, static_cast<std::size_t>(a), memalloc_new_delete::new_fail_nothrow);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a,
                                         const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::memalloc_new_aligned_nt_(
        n, static_cast<std::size_t>(a), memalloc_new_delete::new_fail_nothrow);
}
MEMALLOC_CXX_EXPORT void operator delete(void *p, std::align_val_t) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p, std::align_val_t) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p, std::align_val_t,
                                           const std::nothrow_t &) noexcept
{
    memalloc_new_delete::free_(p);
}
MEMALLOC_CXX_EXPORT void operator delete(void *p, std::size_t n, std::align_val_t a) noexcept
{
    memalloc_new_delete::free_aligned_sized_(p, static_cast<std::size_t>(a), n);
}
MEMALLOC_CXX_EXPORT void operator delete[](void *p, std::size_t n, std::align_val_t a) noexcept
{
    memalloc_new_delete::free_aligned_sized_(p, static_cast<std::size_t>(a), n);
}
#endif /* __cpp_aligned_new */

#undef MEMALLOC_CXX_EXPORT
#undef MEMALLOC_CXX_NOPLT

#endif /* __cplusplus */
#endif /* MEMALLOC_NEW_DELETE_H */
