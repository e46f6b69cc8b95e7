#!/usr/bin/env bash
# c_tests/cxx.sh - C++ on memalloc: c_tests/cxx_new_delete.cc built with g++
# (and clang++) through pkg-config, with and without
# include/memalloc-new-delete.h.
#
#   c_tests/cxx.sh        (needs `cargo build --release` first)
#
# Installs the library into target/c_tests/cxx/prefix (scripts/install.sh),
# builds the test with `g++ $(pkg-config --cflags --libs memalloc)` and runs:
#   header            linked with -lmemalloc, the header included
#   preload           plain g++ build (libstdc++'s operators), run with
#                     LD_PRELOAD=libmemalloc.so
#   clang-header      the header build again with clang++ (Debian's clang)
#   clang-preload     the plain build with clang++
# each both as is and with MEMALLOC_DEBUG=1, with MEMALLOC_EXPECT=1, and
# checks that the header builds' sized deletes jump to memalloc. What the
# test checks is at the top of c_tests/cxx_new_delete.cc. Installs g++,
# pkg-config and clang (scripts/ensure_tools.sh) if missing; if clang cannot
# be installed, its builds are skipped and the last line says so. Logs in target/c_tests/cxx. Ends with the line
# "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

lib=$root/target/release/libmemalloc.so
out=$root/target/c_tests/cxx
timeout_s=${C_TESTS_TIMEOUT:-120}
if [ ! -f "$lib" ]; then
    echo "cxx.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
bash "$root/scripts/ensure_tools.sh" g++=g++ pkg-config=pkg-config || exit 2
# clang++ too, but a machine without it still runs the g++ builds.
clang=clang++
bash "$root/scripts/ensure_tools.sh" clang++=clang || clang=

rm -rf "$out"
mkdir -p "$out"
prefix=$out/prefix
if ! bash scripts/install.sh "$prefix" >"$out/install.log" 2>&1; then
    echo "FAIL install.sh $prefix"
    sed 's/^/    /' "$out/install.log" | tail -20
    echo "0 passed, 1 failed"
    exit 1
fi
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cxxflags=(-std=c++17 -O2 -g -Wall -Wextra -I "$root/c_tests")
src=c_tests/cxx_new_delete.cc
passed=0
failed=0

# build NAME COMMAND...
build() {
    local name=$1
    shift
    if "$@" >"$out/$name.build.log" 2>&1; then
        [ -s "$out/$name.build.log" ] && sed 's/^/    /' "$out/$name.build.log" | head -20
        return 0
    fi
    echo "FAIL $name: build failed: $*"
    sed 's/^/    /' "$out/$name.build.log" | head -30
    failed=$((failed + 2))
    return 1
}

# run NAME BINARY [ENV...]: as is and with MEMALLOC_DEBUG=1
run() {
    local name=$1 bin=$2 mode label log rc
    shift 2
    for mode in default debug; do
        label="$name"
        envs=(MEMALLOC_EXPECT=1 "$@")
        if [ $mode = debug ]; then
            envs+=(MEMALLOC_DEBUG=1)
            label="$name [MEMALLOC_DEBUG=1]"
        fi
        log=$out/$name.$mode.log
        timeout --kill-after=5 "$timeout_s" env "${envs[@]}" "$bin" >"$log" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && grep -q '^ok cxx_new_delete: ' "$log"; then
            echo "PASS cxx_new_delete ($label): $(grep '^ok cxx_new_delete: ' "$log" | sed 's/^ok cxx_new_delete: //')"
            passed=$((passed + 1))
        else
            echo "FAIL cxx_new_delete ($label): exit status $rc"
            tail -15 "$log" | sed 's/^/    /'
            failed=$((failed + 1))
        fi
    done
}

# jumps NAME BINARY: the header's sized deletes reach memalloc with a jump,
# not a call in a frame kept in case it throws (memalloc.h declares
# free_sized and free_aligned_sized noexcept; without it, bench/cxx_stl
# uptr took 3 instructions an operation more, 164.7 against 161.7): g++'s
# through the GOT (the header's noplt: `jmp *...(%rip) # <free_sized@Base>`),
# clang's through the PLT.
jumps() {
    local name=$1 bin=$2 sym target body ok=1
    for sym in "operator delete(void*, unsigned long)=free_sized" \
        "operator delete(void*, unsigned long, std::align_val_t)=free_aligned_sized"; do
        target=${sym#*=}
        sym=${sym%=*}
        body=$(objdump -d --no-show-raw-insn -C "$bin" |
            awk -v s="<$sym>:" 'index($0, s) { on = 1; next } on && /^$/ { exit } on')
        if ! grep -Eq "jmp.*<$target@(plt|Base)>" <<<"$body" || grep -q "call" <<<"$body"; then
            echo "FAIL $name: $sym does not jump to $target:"
            sed 's/^/    /' <<<"$body" | head -12
            ok=0
        fi
    done
    if [ $ok = 1 ]; then
        echo "PASS $name: the sized deletes jump to free_sized and free_aligned_sized"
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
}

# noplt NAME BINARY: g++'s header build calls memalloc through the GOT, not
# a PLT stub (the header declares its calls noplt): operator new's call of
# malloc is `call *...(%rip) # <malloc@Base>` (bench/cxx_stl uptr at scale
# 0.1: 62.29M -> 61.49M instructions, 2 a step fewer).
noplt() {
    local name=$1 bin=$2 body
    body=$(objdump -d --no-show-raw-insn -C "$bin" |
        awk -v s="<operator new(unsigned long)>:" 'index($0, s) { on = 1; next } on && /^$/ { exit } on')
    if grep -Eq 'call +\*.*<malloc@Base>' <<<"$body" && ! grep -q '@plt' <<<"$body"; then
        echo "PASS $name: operator new calls malloc through the GOT"
        passed=$((passed + 1))
    else
        echo "FAIL $name: operator new does not call malloc through the GOT:"
        sed 's/^/    /' <<<"$body" | head -12
        failed=$((failed + 1))
    fi
}

pc() { pkg-config "$@" memalloc; }
if build header g++ "${cxxflags[@]}" -DWITH_HEADER "$src" -o "$out/header" \
    $(pc --cflags --libs) -Wl,-rpath,"$prefix/lib" -ldl; then
    run header "$out/header"
    jumps header "$out/header"
    noplt header "$out/header"
fi
if build preload g++ "${cxxflags[@]}" "$src" -o "$out/preload" -ldl; then
    run preload "$out/preload" LD_PRELOAD="$lib"
fi
skipped=0
# clang before 19 calls the sized forms of delete only with
# -fsized-deallocation (g++ does from C++14 on): docs/cxx.md says so.
clangflags=("${cxxflags[@]}" -fsized-deallocation)
if [ -n "$clang" ]; then
    if build clang-header "$clang" "${clangflags[@]}" -DWITH_HEADER "$src" -o "$out/clang-header" \
        $(pc --cflags --libs) -Wl,-rpath,"$prefix/lib" -ldl; then
        run clang-header "$out/clang-header"
        jumps clang-header "$out/clang-header"
    fi
    if build clang-preload "$clang" "${clangflags[@]}" "$src" -o "$out/clang-preload" -ldl; then
        run clang-preload "$out/clang-preload" LD_PRELOAD="$lib"
    fi
else
    echo "SKIP clang builds: clang++ is not installed and could not be"
    skipped=5
fi

if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
