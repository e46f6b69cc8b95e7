#!/usr/bin/env bash
# c_tests/takeover.sh - a thread that frees the blocks of a thread that
# exited, while it allocates their class, takes over their zones
# (cache::adopt_freed; c_tests/takeover.c, larson's pattern).
#
#   c_tests/takeover.sh       (needs `cargo build --release` first)
#
# Runs takeover.c under LD_PRELOAD=target/release/libmemalloc.so with
# MEMALLOC_STATS=1: four threads in turn replace random blocks of 320-1024
# B among 4096, each freeing what the ones before it allocated. Passes if
# the run ends well (every block's tag intact, memalloc_check() 0) and the
# statistics count at least MIN_ADOPTED zones adopted by a free (129 at
# 100000 pairs a thread; 0 before frees adopted zones: the zones of the
# exited threads stayed abandoned, and every free of their blocks took the
# other thread's path). Ends with "N passed, M failed"; exits 1 if any
# failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
lib=$root/target/release/libmemalloc.so
out=$root/target/c_tests/takeover
MIN_ADOPTED=16
if [ ! -f "$lib" ]; then
    echo "takeover.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
bash "$root/scripts/ensure_tools.sh" gcc=gcc || exit 2
mkdir -p "$out"
if ! gcc -O2 -g -Wall -Wextra -fno-builtin -pthread -o "$out/takeover" "$here/takeover.c" -ldl 2>"$out/build.log"; then
    echo "FAIL takeover: build failed"
    sed 's/^/    /' "$out/build.log" | head -20
    echo "0 passed, 1 failed"
    exit 1
fi
passed=0
failed=0
log=$out/run.log
if timeout 120 env MEMALLOC_STATS=1 LD_PRELOAD="$lib" "$out/takeover" 100000 4 >"$log" 2>&1 &&
    grep -q "^ok takeover" "$log"; then
    n=$(sed -n 's/^ *zones adopted *[0-9]* by a malloc, \([0-9]*\) by a free.*/\1/p' "$log")
    if [ -n "$n" ] && [ "$n" -ge $MIN_ADOPTED ]; then
        echo "PASS takeover: $n zones adopted by a free (at least $MIN_ADOPTED), heap consistent"
        passed=$((passed + 1))
    else
        echo "FAIL takeover: ${n:-no} zones adopted by a free (at least $MIN_ADOPTED)"
        failed=$((failed + 1))
    fi
else
    echo "FAIL takeover: the run failed"
    tail -5 "$log" | sed 's/^/    /'
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
