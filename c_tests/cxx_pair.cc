/*
 * cxx_pair.cc - new + delete pairs of one form, for instruction counting
 * under callgrind (c_tests/cxx.sh, "pairs").
 *
 *   cxx_pair N FORM SIZE [ALIGN=64]
 *
 * FORM: plain (new(n), delete(p)), sized (new(n), delete(p, n)), aligned
 * (new(n, align), delete(p, align)), aligned-sized (new(n, align),
 * delete(p, n, align)), c-aligned (C's aligned_alloc(align, n), free(p)).
 * A ring of 64 live blocks: each step deletes the
 * block of its slot and puts a new one there (1000 steps first, so that
 * the class's first allocations, which come from the heap, are over).
 * Built in two translation units, as a program uses the header: this one
 * calls the operators, c_tests/cxx.sh compiles the header in another, so
 * that no operator is inlined here. Prints "ok cxx_pair".
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

int main(int argc, char **argv)
{
    if (argc < 4)
        return 64;
    long n = atol(argv[1]);
    const char *form = argv[2];
    size_t size = strtoul(argv[3], nullptr, 0);
    std::align_val_t al{argc > 4 ? strtoul(argv[4], nullptr, 0) : 64};
    int f = !strcmp(form, "plain")           ? 0
            : !strcmp(form, "sized")         ? 1
            : !strcmp(form, "aligned")       ? 2
            : !strcmp(form, "aligned-sized") ? 3
            : !strcmp(form, "c-aligned")     ? 4
                                             : -1;
    if (f < 0)
        return 64;
    static void *ring[64];
    void *volatile keep;
    for (long i = 0; i < 1000 + n; i++) {
        void *&slot = ring[i & 63];
        if (slot) {
            switch (f) {
            case 0: ::operator delete(slot); break;
            case 1: ::operator delete(slot, size); break;
            case 2: ::operator delete(slot, al); break;
            case 3: ::operator delete(slot, size, al); break;
            default: free(slot); break;
            }
        }
        slot = f < 2 ? ::operator new(size)
               : f < 4 ? ::operator new(size, al)
                       : aligned_alloc(static_cast<size_t>(al), size);
        if (!slot)
            return 1;
        keep = slot;
        if ((uintptr_t)keep % (f < 2 ? 16 : (size_t)al) != 0) {
            fprintf(stderr, "cxx_pair: %p not aligned\n", keep);
            return 1;
        }
    }
    printf("ok cxx_pair\n");
    return 0;
}
