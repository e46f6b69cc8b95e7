#!/usr/bin/env bash
# c_tests/cxx.sh - C++ on memalloc: c_tests/cxx_new_delete.cc built with g++
# through pkg-config, with and without include/memalloc-new-delete.h.
#
#   c_tests/cxx.sh        (needs `cargo build --release` first)
#
# Installs the library into target/c_tests/cxx/prefix (scripts/install.sh),
# builds the test with `g++ $(pkg-config --cflags --libs memalloc)` and runs:
#   header            linked with -lmemalloc, the header included
#   preload           plain g++ build (libstdc++'s operators), run with
#                     LD_PRELOAD=libmemalloc.so
# each both as is and with MEMALLOC_DEBUG=1, with MEMALLOC_EXPECT=1. What the
# test checks is at the top of c_tests/cxx_new_delete.cc. Installs g++ and
# pkg-config if missing. Logs in target/c_tests/cxx. Ends with the line
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

pc() { pkg-config "$@" memalloc; }
if build header g++ "${cxxflags[@]}" -DWITH_HEADER "$src" -o "$out/header" \
    $(pc --cflags --libs) -Wl,-rpath,"$prefix/lib" -ldl; then
    run header "$out/header"
fi
if build preload g++ "${cxxflags[@]}" "$src" -o "$out/preload" -ldl; then
    run preload "$out/preload" LD_PRELOAD="$lib"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
