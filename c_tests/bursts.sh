#!/usr/bin/env bash
# c_tests/bursts.sh - bursts of frees and mallocs larger than a thread
# cache's bins cost about what small ones do (c_tests/bursts.c).
#
#   c_tests/bursts.sh        (needs `cargo build --release` first)
#
# Runs bursts.c under LD_PRELOAD=target/release/libmemalloc.so: natively (its
# own checks: contents kept, no block handed out twice), then under
# valgrind --tool=callgrind with bursts of 16 blocks a size (they fit the
# bins) and of 80 (a bin holds 32), each at two round counts, and takes the
# instructions per malloc+free pair as the difference of the counts over the
# difference of the pairs (start-up and exit cancel out). Passes if a pair
# of the large bursts costs at most MAX_EXTRA (20) instructions more than one
# of the small: a full bin gives its older half back to the zones a run of
# one zone's blocks at a time (the library before gave each block back on
# its own: 27 more). Installs gcc and valgrind if missing. Ends with the
# line "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_EXTRA=20
. "$here/callgrind_setup.sh" bursts

native "" "2000 rounds of 80 a size" 2000 80

# ir ROUNDS BURST: the instructions of one run under callgrind
ir() {
    callgrind '$2' -- "$1" "$2"
}
# per_pair BURST: instructions per malloc+free pair (5 sizes a round)
per_pair() {
    local r1=$((40000 / $1)) r2=$((80000 / $1)) a b
    a=$(ir "$r1" "$1") && b=$(ir "$r2" "$1") || return 1
    awk -v a="$a" -v b="$b" -v p=$(((r2 - r1) * 5 * $1)) 'BEGIN { printf "%.1f", (b - a) / p }'
}
if small=$(per_pair 16) && large=$(per_pair 80); then
    extra=$(awk -v s="$small" -v l="$large" 'BEGIN { printf "%.1f", l - s }')
    msg="instructions per pair: $small with bursts of 16 a size, $large with bursts of 80 (+$extra; at most +$MAX_EXTRA)"
    if awk -v e="$extra" -v m="$MAX_EXTRA" 'BEGIN { exit !(e <= m) }'; then
        echo "PASS bursts (callgrind): $msg"
        passed=$((passed + 1))
    else
        echo "FAIL bursts (callgrind): $msg"
        failed=$((failed + 1))
    fi
else
    echo "FAIL bursts (callgrind): a run failed; logs in $out"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
