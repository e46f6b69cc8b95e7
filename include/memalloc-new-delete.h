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
 * with it, new is one call into memalloc instead of two, and sized delete
 * passes its size on (free_sized, free_aligned_sized), which memalloc's
 * debug mode (MEMALLOC_DEBUG=1) checks: a delete whose size is not the
 * size the block was allocated with is reported and aborts.
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

/* memalloc's functions, under names of their own (the asm labels are the
 * symbols), so that the declarations can say noplt without redeclaring
 * the C library's. */
extern "C" {
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

/* The slow path of new, after the first try failed: the new_handler loop. */
__attribute__((noinline, cold)) static void *new_slow(std::size_t n, std::size_t align)
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
__attribute__((noinline, cold)) static void *new_slow_nothrow(std::size_t n,
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

/* new's fast path: one call into memalloc. */
static inline void *new_(std::size_t n, std::size_t align)
{
    void *p = try_alloc(n, align);
    if (__builtin_expect(p != nullptr, 1))
        return p;
    return new_slow(n, align);
}

static inline void *new_nothrow(std::size_t n, std::size_t align) noexcept
{
    void *p = try_alloc(n, align);
    if (__builtin_expect(p != nullptr, 1))
        return p;
    return new_slow_nothrow(n, align);
}

} // namespace memalloc_new_delete

/* ---- new ------------------------------------------------------------------ */
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n)
{
    return memalloc_new_delete::new_(n, 0);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n)
{
    return memalloc_new_delete::new_(n, 0);
}
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::new_nothrow(n, 0);
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::new_nothrow(n, 0);
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
    return memalloc_new_delete::new_(n, static_cast<std::size_t>(a));
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a)
{
    return memalloc_new_delete::new_(n, static_cast<std::size_t>(a));
}
MEMALLOC_CXX_EXPORT void *operator new(std::size_t n, std::align_val_t a,
                                       const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::new_nothrow(n, static_cast<std::size_t>(a));
}
MEMALLOC_CXX_EXPORT void *operator new[](std::size_t n, std::align_val_t a,
                                         const std::nothrow_t &) noexcept
{
    return memalloc_new_delete::new_nothrow(n, static_cast<std::size_t>(a));
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
