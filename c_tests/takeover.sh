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
MIN_ADOPTED=16
# shellcheck source=c_tests/callgrind_setup.sh
. "$here/callgrind_setup.sh" takeover -pthread -ldl
export MEMALLOC_STATS=1
native "" "heap consistent" 100000 4
if [ -f "$out/native.log" ] && grep -q "^ok takeover" "$out/native.log"; then
    # (the largest count: `timeout`, preloaded too, prints its own statistics)
    n=$(sed -n 's/^ *zones adopted *[0-9]* by a malloc, \([0-9]*\) by a free.*/\1/p' "$out/native.log" |
        sort -n | tail -n 1)
    if [ -n "$n" ] && [ "$n" -ge $MIN_ADOPTED ]; then
        echo "PASS takeover: $n zones adopted by a free (at least $MIN_ADOPTED)"
        passed=$((passed + 1))
    else
        echo "FAIL takeover: ${n:-no} zones adopted by a free (at least $MIN_ADOPTED)"
        failed=$((failed + 1))
    fi
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
