/*
 * bench/cxx_stl.cc - C++ workloads: STL containers over operator new/delete.
 *
 *   cxx_stl WORKLOAD [SCALE]
 *     map     std::map<int, std::string> churn: inserts, lookups and erases
 *             of keys in a window, values of 0-120 chars (SSO and heap)
 *     string  string building: appends, to_string, substr, a vector of
 *             strings sorted and cleared
 *     uptr    std::vector<std::unique_ptr<Shape>> churn: objects of 5
 *             types from 24 to 280 bytes (virtual destructors: sized
 *             delete), replaced at random, the vector grown and shrunk
 *   SCALE multiplies the work (default 1; may be a fraction).
 *
 * Built twice by scripts/bench.sh --cxx: plain (run under each allocator by
 * LD_PRELOAD, libstdc++'s operator new calling malloc) and with
 * include/memalloc-new-delete.h, linked with -lmemalloc. Prints
 *   <workload>: <Mops/s> Mops/s checksum=<n> malloc=<lib> new=<object>
 * where malloc and new name the objects whose malloc and operator new the
 * program calls (dlsym + dladdr), which bench/cxx_bench.py checks.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#ifdef WITH_HEADER
#include <memalloc-new-delete.h>
#endif

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *object_of(const char *sym)
{
    Dl_info info;
    void *p = dlsym(RTLD_DEFAULT, sym);
    if (p && dladdr(p, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        return slash ? slash + 1 : info.dli_fname;
    }
    return "unknown";
}

/* ---- map ----------------------------------------------------------------- */
static uint64_t w_map(double scale, long *ops)
{
    const long n = (long)(1500000 * scale);
    const int window = 50000;
    std::map<int, std::string> m;
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        int k = (int)(rnd() % window);
        uint32_t r = rnd();
        switch (r % 4) {
        case 0:
        case 1:
            m[k] = std::string(r % 121, (char)('a' + k % 26));
            break;
        case 2: {
            auto it = m.find(k);
            if (it != m.end())
                sum += it->second.size();
            break;
        }
        default:
            m.erase(k);
        }
    }
    sum += m.size();
    *ops = n;
    return sum;
}

/* ---- string -------------------------------------------------------------- */
static uint64_t w_string(double scale, long *ops)
{
    const long rounds = (long)(400 * scale);
    uint64_t sum = 0;
    std::vector<std::string> v;
    long count = 0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 2000; i++) {
            std::string s = "item-";
            s += std::to_string(rnd());
            for (uint32_t j = rnd() % 8; j > 0; j--)
                s += s.substr(0, s.size() / 2 + 1);
            v.push_back(std::move(s));
            count++;
        }
        std::sort(v.begin(), v.end());
        sum += v.front().size() + v.back().size();
        v.clear();
        if (r % 16 == 0)
            v.shrink_to_fit();
    }
    *ops = count;
    return sum;
}

/* ---- vector<unique_ptr> -------------------------------------------------- */
struct Shape {
    uint64_t id;
    explicit Shape(uint64_t i) : id(i) {}
    virtual ~Shape() {}
    virtual uint64_t weight() const { return id; }
};
template <size_t N> struct Sized : Shape {
    unsigned char payload[N];
    explicit Sized(uint64_t i) : Shape(i) { payload[0] = (unsigned char)i; }
    uint64_t weight() const override { return id + payload[0] + N; }
};

static std::unique_ptr<Shape> make_shape(uint32_t r)
{
    switch (r % 5) {
    case 0: return std::make_unique<Sized<8>>(r);
    case 1: return std::make_unique<Sized<40>>(r);
    case 2: return std::make_unique<Sized<100>>(r);
    case 3: return std::make_unique<Sized<180>>(r);
    default: return std::make_unique<Sized<264>>(r);
    }
}

static uint64_t w_uptr(double scale, long *ops)
{
    const long n = (long)(4000000 * scale);
    std::vector<std::unique_ptr<Shape>> v;
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        uint32_t r = rnd();
        if (v.size() < 1000 || (r & 7) == 0) {
            v.push_back(make_shape(r));
        } else if ((r & 7) == 1 || v.size() > 100000) {
            size_t drop = std::min<size_t>(v.size() / 2, (r >> 8) % 5000);
            v.resize(v.size() - drop);
        } else {
            auto &slot = v[(r >> 4) % v.size()];
            sum += slot->weight();
            slot = make_shape(r >> 3);
        }
    }
    *ops = n;
    return sum + v.size();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: cxx_stl map|string|uptr [SCALE]\n");
        return 64;
    }
    double scale = argc > 2 ? atof(argv[2]) : 1;
    if (!(scale > 0))
        scale = 1;
    uint64_t (*fn)(double, long *) = nullptr;
    if (strcmp(argv[1], "map") == 0)
        fn = w_map;
    else if (strcmp(argv[1], "string") == 0)
        fn = w_string;
    else if (strcmp(argv[1], "uptr") == 0)
        fn = w_uptr;
    else {
        fprintf(stderr, "cxx_stl: unknown workload %s\n", argv[1]);
        return 64;
    }
    long ops = 0;
    double t0 = now();
    uint64_t sum = fn(scale, &ops);
    double dt = now() - t0;
    printf("%s: %.3f Mops/s ops=%ld checksum=%llu malloc=%s new=%s\n", argv[1],
           (double)ops / dt / 1e6, ops, (unsigned long long)sum, object_of("malloc"),
           object_of("_Znwm"));
    return 0;
}
