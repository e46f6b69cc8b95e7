/*
 * cxx_new_delete.cc - C++ operator new and delete on memalloc.
 *
 * Built by c_tests/cxx.sh with g++ through pkg-config, in two ways:
 *   - with -DWITH_HEADER: includes <memalloc-new-delete.h> and links
 *     $(pkg-config --libs memalloc): every replaceable operator must be the
 *     header's, in the program and for libstdc++ (checked with dlsym);
 *   - plain, run with LD_PRELOAD=libmemalloc.so: libstdc++'s operators,
 *     over memalloc's malloc.
 * Either way, and with MEMALLOC_DEBUG=1 too, it checks:
 *   - every overload (plain, array, nothrow, aligned, sized, and their
 *     combinations) at sizes from 0 to 1 MiB: the block is memalloc's
 *     (malloc_usable_size of a foreign pointer aborts; a large one shows in
 *     memalloc_get_stats), writable, aligned as asked; memalloc_check() is 0;
 *   - STL containers (map, string, vector of unique_ptr to an over-aligned
 *     type), whose sized deletes debug mode checks against the sizes
 *     allocated;
 *   - under RLIMIT_AS (in a child): new throws std::bad_alloc, the nothrow
 *     forms return nullptr, a new_handler that frees a reserve is called
 *     and the allocation then succeeds, one that throws makes nothrow new
 *     return nullptr;
 *   - with the header: a sized delete with a wrong size (a derived object
 *     deleted through a base without a virtual destructor; explicit calls
 *     of each sized form) is reported in debug mode: a child run with
 *     MEMALLOC_DEBUG=1 dies by SIGABRT after the single stderr line
 *     "memalloc: ... wrong size (...) at <the block's address>".
 * Prints "ok cxx_new_delete: N checks" (check.h).
 */
#include <dlfcn.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#ifdef WITH_HEADER
#include <memalloc-new-delete.h>
#endif
#include "check.h"

static const char *self_path;

/* ---- helpers --------------------------------------------------------------- */

struct stats_t {
    size_t in_use, peak_in_use, heap_bytes, brk_bytes, mmap_region_bytes, large_bytes,
        large_count, free_bytes, free_blocks, released_bytes, syscalls;
};

static size_t in_use(void)
{
    static void (*get)(stats_t *) = (void (*)(stats_t *))memalloc_sym("memalloc_get_stats");
    stats_t s;
    get(&s);
    return s.in_use;
}

static size_t heap_check(void)
{
    static size_t (*f)(void) = (size_t(*)(void))memalloc_sym("memalloc_check");
    return f();
}

/* A block from an operator: memalloc's (malloc_usable_size aborts on a
 * pointer memalloc does not own), non-null, aligned, writable. */
static void check_block(void *p, size_t n, size_t align, const char *what)
{
    CHECKF(p != nullptr, "%s(%zu) returned null", what, n);
    CHECKF((uintptr_t)p % align == 0, "%s(%zu, align %zu) returned %p", what, n, align, p);
    CHECKF(malloc_usable_size(p) >= n, "%s(%zu): usable size %zu", what, n,
           malloc_usable_size(p));
    memset(p, 0x5a, n);
}

static const size_t sizes[] = {0, 1, 24, 100, 1000, 20000, 300000, 1 << 20};
static const size_t aligns[] = {16, 32, 64, 256, 4096, 65536, 1 << 21};

/* ---- every overload --------------------------------------------------------- */

static void overloads(void)
{
    for (size_t n : sizes) {
        void *p = opaque_ptr(::operator new(n));
        check_block(p, n, 16, "new");
        ::operator delete(p);
        p = opaque_ptr(::operator new(n));
        check_block(p, n, 16, "new");
        ::operator delete(p, n);
        p = opaque_ptr(::operator new[](n));
        check_block(p, n, 16, "new[]");
        ::operator delete[](p);
        p = opaque_ptr(::operator new[](n));
        check_block(p, n, 16, "new[]");
        ::operator delete[](p, n);
        p = opaque_ptr(::operator new(n, std::nothrow));
        check_block(p, n, 16, "new nothrow");
        ::operator delete(p, std::nothrow);
        p = opaque_ptr(::operator new[](n, std::nothrow));
        check_block(p, n, 16, "new[] nothrow");
        ::operator delete[](p, std::nothrow);
        for (size_t a : aligns) {
            std::align_val_t al{a};
            p = opaque_ptr(::operator new(n, al));
            check_block(p, n, a, "new aligned");
            ::operator delete(p, al);
            p = opaque_ptr(::operator new(n, al));
            check_block(p, n, a, "new aligned");
            ::operator delete(p, n, al);
            p = opaque_ptr(::operator new[](n, al));
            check_block(p, n, a, "new[] aligned");
            ::operator delete[](p, al);
            p = opaque_ptr(::operator new[](n, al));
            check_block(p, n, a, "new[] aligned");
            ::operator delete[](p, n, al);
            p = opaque_ptr(::operator new(n, al, std::nothrow));
            check_block(p, n, a, "new aligned nothrow");
            ::operator delete(p, al, std::nothrow);
            p = opaque_ptr(::operator new[](n, al, std::nothrow));
            check_block(p, n, a, "new[] aligned nothrow");
            ::operator delete[](p, al, std::nothrow);
        }
    }
    /* A large block shows in memalloc's statistics: new's memory is memalloc's. */
    size_t before = in_use();
    void *p = opaque_ptr(::operator new(4 << 20));
    CHECKF(in_use() >= before + (4 << 20), "in_use %zu -> %zu after new of 4 MiB", before,
           in_use());
    ::operator delete(p, (size_t)4 << 20);
    p = opaque_ptr(::operator new[](4 << 20, std::align_val_t{4096}));
    CHECKF(in_use() >= before + (4 << 20), "in_use %zu -> %zu after aligned new[] of 4 MiB",
           before, in_use());
    ::operator delete[](p, (size_t)4 << 20, std::align_val_t{4096});
    CHECK(heap_check() == 0);
}

/* ---- new-expressions and containers ----------------------------------------- */

struct alignas(64) Cell {
    unsigned char bytes[96];
    explicit Cell(int i) { memset(bytes, i, sizeof bytes); }
};

struct Counted {
    std::string name;
    ~Counted() {} /* non-trivial: new[] stores a count, sized delete[] includes it */
};

static void containers(void)
{
    std::map<int, std::string> m;
    for (int i = 0; i < 20000; i++)
        m[i * 7 % 20011] = std::string(i % 200, (char)('a' + i % 26));
    for (int i = 0; i < 20000; i += 2)
        m.erase(i * 7 % 20011);
    CHECK(m.size() == 10000);
    std::vector<std::unique_ptr<Cell>> v;
    for (int i = 0; i < 10000; i++) {
        v.push_back(std::make_unique<Cell>(i));
        CHECKF((uintptr_t)v.back().get() % 64 == 0, "new Cell at %p", (void *)v.back().get());
        if (i % 3 == 0)
            v[(size_t)i / 2].reset(new Cell(-i));
    }
    for (size_t i = 0; i < v.size(); i += 2)
        v[i].reset();
    v.clear();
    Counted *c = new Counted[37];
    c[36].name.assign(1000, 'x');
    delete[] static_cast<Counted *>(opaque_ptr(c));
    Cell *cells = static_cast<Cell *>(opaque_ptr(new Cell[5]{Cell(1), Cell(2), Cell(3), Cell(4), Cell(5)}));
    CHECK((uintptr_t)cells % 64 == 0);
    delete[] cells;
    std::string s;
    for (int i = 0; i < 100000; i++)
        s.push_back((char)i);
    CHECK(s.size() == 100000);
    CHECK(heap_check() == 0);
}

/* ---- every operator is the header's ---------------------------------------- */

static const char *const mangled[] = {
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZdlPv", "_ZdaPv",
    "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t", "_ZdlPvm", "_ZdaPvm",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
    "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
};

/* With the header, each of the 20 operators the standard lets a program
 * replace resolves (for libstdc++ too: dlsym follows the same order) to the
 * program itself; without it, to libstdc++. */
static void resolution(bool header)
{
    Dl_info self, info;
    CHECK(dladdr((void *)&resolution, &self) != 0);
    int ours = 0;
    for (const char *name : mangled) {
        void *f = dlsym(RTLD_DEFAULT, name);
        CHECKF(f != nullptr && dladdr(f, &info) != 0, "%s not found", name);
        bool in_self = info.dli_fbase == self.dli_fbase;
        if (header)
            CHECKF(in_self, "%s resolves to %s, not to the program's", name, info.dli_fname);
        ours += in_self;
    }
    if (!header)
        CHECKF(ours == 0, "%d operators come from the program, built without the header", ours);
}

/* ---- out of memory (in a child each: the limit stays there) ----------------- */

static size_t vm_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    CHECK(f != nullptr && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Limits the address space to what is mapped now plus `headroom`. */
static void limit_as(size_t headroom)
{
    struct rlimit r;
    r.rlim_cur = r.rlim_max = vm_bytes() + headroom;
    CHECK(setrlimit(RLIMIT_AS, &r) == 0);
}

static const size_t MiB = 1 << 20;

static void oom_bad_alloc(void)
{
    limit_as(64 * MiB);
    std::set_new_handler(nullptr);
    int thrown = 0;
    try {
        opaque_ptr(::operator new(opaque(512 * MiB)));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        opaque_ptr(new char[opaque(512 * MiB)]);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        opaque_ptr(::operator new(opaque(512 * MiB), std::align_val_t{4096}));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        opaque_ptr(::operator new[](opaque(512 * MiB), std::align_val_t{1 << 21}));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        std::vector<char> v(opaque(512 * MiB));
        /* (the data escapes: clang may elide an allocation nobody reads) */
        CHECK(opaque_ptr(v.data()) == nullptr); /* not reached */
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        std::string s(opaque(512 * MiB), 'x');
        CHECK(s.size() == 0);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    CHECKF(thrown == 6, "%d of 6 allocations threw std::bad_alloc", thrown);
    CHECK(opaque_ptr(::operator new(opaque(512 * MiB), std::nothrow)) == nullptr);
    CHECK(opaque_ptr(::operator new[](opaque(512 * MiB), std::nothrow)) == nullptr);
    CHECK(opaque_ptr(::operator new(opaque(512 * MiB), std::align_val_t{64}, std::nothrow)) == nullptr);
    CHECK(opaque_ptr(::operator new[](opaque(512 * MiB), std::align_val_t{64}, std::nothrow)) == nullptr);
    CHECK(opaque_ptr(new (std::nothrow) char[opaque(512 * MiB)]) == nullptr);
    /* and smaller blocks still come */
    void *p = ::operator new(opaque(1000));
    check_block(p, 1000, 16, "new after bad_alloc");
    ::operator delete(p, 1000);
}

static char *reserve;
static size_t reserve_size;
static int handler_calls;

/* Gives the reserve back; the second time, there is none: uninstalls
 * itself, so that new throws. */
static void free_reserve(void)
{
    handler_calls++;
    if (reserve != nullptr) {
        ::operator delete[](reserve, reserve_size);
        reserve = nullptr;
    } else {
        std::set_new_handler(nullptr);
    }
}

/* A reserve of `rsize` bytes; the address space limited to `headroom`
 * more; an allocation of `want` bytes (more than the headroom, less than it
 * with the reserve) succeeds after the handler freed the reserve. */
static void oom_handler_reserve(size_t rsize, size_t headroom, size_t want, bool nothrow)
{
    reserve_size = rsize;
    reserve = static_cast<char *>(opaque_ptr(::operator new[](rsize)));
    memset(reserve, 1, rsize);
    handler_calls = 0;
    limit_as(headroom);
    std::set_new_handler(free_reserve);
    char *p = static_cast<char *>(
        nothrow ? ::operator new(opaque(want), std::nothrow) : ::operator new(opaque(want)));
    CHECKF(p != nullptr, "new of %zu MiB with a reserve of %zu MiB and %zu MiB of headroom "
           "failed (handler called %d times)", want / MiB, rsize / MiB, headroom / MiB,
           handler_calls);
    CHECKF(handler_calls == 1, "handler called %d times", handler_calls);
    CHECK(reserve == nullptr);
    memset(p, 2, want);
    check_block(p, want, 16, "new after the handler");
    /* without a reserve: the handler uninstalls itself, new throws */
    handler_calls = 0;
    std::set_new_handler(free_reserve);
    bool thrown = false;
    try {
        opaque_ptr(::operator new(opaque(headroom + rsize + 64 * MiB)));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 1);
    ::operator delete(p, want);
}

[[noreturn]] static void throwing_handler(void)
{
    handler_calls++;
    throw std::bad_alloc();
}

/* A handler that throws: nothrow new returns nullptr, new throws. */
static void oom_handler_throws(void)
{
    limit_as(64 * MiB);
    handler_calls = 0;
    std::set_new_handler(throwing_handler);
    CHECK(opaque_ptr(::operator new(opaque(512 * MiB), std::nothrow)) == nullptr);
    CHECK(opaque_ptr(::operator new[](opaque(512 * MiB), std::align_val_t{256}, std::nothrow)) == nullptr);
    CHECK(handler_calls == 2);
    bool thrown = false;
    try {
        opaque_ptr(::operator new(opaque(512 * MiB), std::align_val_t{256}));
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 3);
}

/* Runs fn in a forked child (its checks are its own); the child must exit 0. */
static void in_child(void (*fn)(void), const char *what)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        check_in_child = 1;
        fn();
        _exit(0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: child status %#x", what, st);
}

static void oom_reserve_unmapped(void) { oom_handler_reserve(160 * MiB, 64 * MiB, 192 * MiB, false); }
static void oom_reserve_kept(void) { oom_handler_reserve(16 * MiB, 4 * MiB, 12 * MiB, false); }
static void oom_reserve_nothrow(void) { oom_handler_reserve(160 * MiB, 64 * MiB, 192 * MiB, true); }

/* ---- sized delete with a wrong size: reported in debug mode ------------------ */

struct Base {
    long id;
};
struct Derived : Base {
    char more[56];
};

static void report_at(const void *p)
{
    printf("report-address %p\n", p);
    fflush(stdout);
}

/* The misuses, run in a child started with MEMALLOC_DEBUG=1. */
static int misuse(const char *name)
{
    if (strcmp(name, "delete-through-base") == 0) {
        Base *b = static_cast<Base *>(opaque_ptr(new Derived()));
        report_at(b);
        delete b; /* no virtual destructor: sized delete of sizeof(Base) */
    } else if (strcmp(name, "sized-delete") == 0) {
        void *p = opaque_ptr(::operator new(100));
        report_at(p);
        ::operator delete(p, opaque(64));
    } else if (strcmp(name, "sized-delete-array") == 0) {
        void *p = opaque_ptr(::operator new[](5000));
        report_at(p);
        ::operator delete[](p, opaque(5008));
    } else if (strcmp(name, "sized-delete-aligned") == 0) {
        void *p = opaque_ptr(::operator new(200, std::align_val_t{64}));
        report_at(p);
        ::operator delete(p, opaque(199), std::align_val_t{64});
    } else if (strcmp(name, "sized-delete-aligned-array") == 0) {
        void *p = opaque_ptr(::operator new[](300000, std::align_val_t{4096}));
        report_at(p);
        ::operator delete[](p, opaque(300000 - 4096), std::align_val_t{4096});
    } else {
        fprintf(stderr, "cxx_new_delete: unknown misuse %s\n", name);
        return 2;
    }
    printf("survived %s\n", name);
    return 0;
}

/* Runs misuse `name` in a child under MEMALLOC_DEBUG=1: it must die by
 * SIGABRT after one stderr line naming the error and the block. */
static void expect_reported(const char *name, const char *words)
{
    int out[2], err[2];
    CHECK(pipe(out) == 0 && pipe(err) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(out[1], 1);
        dup2(err[1], 2);
        setenv("MEMALLOC_DEBUG", "1", 1);
        execl(self_path, self_path, "--misuse", name, (char *)nullptr);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    std::string so, se;
    char buf[512];
    ssize_t k;
    while ((k = read(out[0], buf, sizeof buf)) > 0)
        so.append(buf, (size_t)k);
    while ((k = read(err[0], buf, sizeof buf)) > 0)
        se.append(buf, (size_t)k);
    close(out[0]);
    close(err[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
           "%s: expected SIGABRT, status %#x; stdout: %s stderr: %s", name, st, so.c_str(),
           se.c_str());
    void *want = nullptr;
    size_t at = so.find("report-address ");
    CHECKF(at != std::string::npos && sscanf(so.c_str() + at, "report-address %p", &want) == 1,
           "%s: no report-address in %s", name, so.c_str());
    char line[256];
    snprintf(line, sizeof line, "memalloc: %s at %p\n", words, want);
    CHECKF(se == line, "%s: stderr is \"%s\", expected \"%s\"", name, se.c_str(), line);
    printf("reported %s: %s", name, se.c_str());
}

static void misuses(void)
{
    expect_reported("delete-through-base",
                    "free_sized or sized delete with a wrong size (8 for a block of 64)");
    expect_reported("sized-delete",
                    "free_sized or sized delete with a wrong size (64 for a block of 100)");
    expect_reported("sized-delete-array",
                    "free_sized or sized delete with a wrong size (5008 for a block of 5000)");
    expect_reported("sized-delete-aligned",
                    "free_sized or sized delete with a wrong size (199 for a block of 200)");
    expect_reported("sized-delete-aligned-array",
                    "free_sized or sized delete with a wrong size (295904 for a block of 300000)");
}

#ifdef WITH_HEADER
extern "C" void *memalloc_new_aligned(size_t n, size_t align, void *(*fail)(size_t, size_t));

/* The header's entry point, called as a program might call it: an
 * alignment of 0 (none) or 1-16 still gives n bytes (0 was rounded to a
 * request of 0 bytes: a 16-byte block for any size). */
static void entry_points(void)
{
    for (size_t align : {0, 1, 16, 64}) {
        for (size_t n : {1, 100, 1000, 4096}) {
            void *p = memalloc_new_aligned(n, align, nullptr);
            CHECKF(p != nullptr && malloc_usable_size(p) >= n,
                   "memalloc_new_aligned(%zu, %zu): %p of %zu bytes", n, align, p,
                   p ? malloc_usable_size(p) : 0);
            CHECKF(align == 0 || (uintptr_t)p % align == 0,
                   "memalloc_new_aligned(%zu, %zu): %p", n, align, p);
            memset(p, 0xa5, n);
            free(p);
        }
    }
}
#endif

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 3 && strcmp(argv[1], "--misuse") == 0)
        return misuse(argv[2]);
    check_begin();
#ifdef WITH_HEADER
    const bool header = true;
#else
    const bool header = false;
#endif
    resolution(header);
    /* first, while the heap is small: no free space in it serves the
     * allocations that must fail until the reserve is freed */
    in_child(oom_bad_alloc, "bad_alloc under RLIMIT_AS");
    in_child(oom_reserve_unmapped, "new_handler freeing a 160 MiB reserve");
    in_child(oom_reserve_kept, "new_handler freeing a 16 MiB reserve");
    in_child(oom_reserve_nothrow, "nothrow new, new_handler freeing a reserve");
    in_child(oom_handler_throws, "a new_handler that throws");
    overloads();
    containers();
#ifdef WITH_HEADER
    entry_points();
#endif
    if (header)
        misuses();
    else
        printf("skip the wrong-size misuses: libstdc++'s sized delete ignores the size\n");
    check_done("cxx_new_delete");
    return 0;
}
