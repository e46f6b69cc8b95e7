#!/usr/bin/env bash
# c_tests/classes.sh - with small requests of random classes, malloc finds
# a block to pop in its class's bin nearly every time (c_tests/classes.c).
#
#   c_tests/classes.sh       (needs `cargo build --release` first)
#
# Runs classes.c under LD_PRELOAD=target/release/libmemalloc.so: natively
# (its own checks), then under valgrind --tool=callgrind --branch-sim=yes
# at two pair counts, and takes the mispredicted conditional branches per
# malloc+free pair as the difference of the counts over the difference of
# the pairs. The program's loop has no data-dependent branch, so these are
# the allocator's; the one that matters is malloc's leaving its pop when
# its class's alloc half is empty, taken in no pattern when classes vary.
# Passes at MAX_MISS (0.15) or fewer a pair: an alloc half filled from the
# zone when the free half holds few blocks (cache::bin_refill) gives 0.11;
# the halves swapped whenever the free one had a block gave 0.21.
# Installs gcc and valgrind if missing. Ends with the line
# "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_MISS=0.15
. "$here/callgrind_setup.sh" classes

if LD_PRELOAD=$lib MEMALLOC_EXPECT=1 timeout 120 "$out/classes" 1000000 >"$out/native.log" 2>&1 &&
    grep -q '^ok classes' "$out/native.log"; then
    echo "PASS classes (native, 1000000 pairs)"
    passed=$((passed + 1))
else
    echo "FAIL classes (native)"
    tail -5 "$out/native.log" | sed 's/^/    /'
    failed=$((failed + 1))
fi

# miss PAIRS: "instructions mispredictions" of one run under callgrind
miss() {
    local f="$out/callgrind.$1.out"
    LD_PRELOAD=$lib timeout 300 valgrind --tool=callgrind --branch-sim=yes \
        --callgrind-out-file="$f" "$out/classes" "$1" >"$out/callgrind.$1.log" 2>&1 || return 1
    grep -q '^ok classes' "$out/callgrind.$1.log" || return 1
    # events: Ir Bc Bcm Bi Bim
    awk '/^(summary|totals):/ { print $2, $4; exit }' "$f"
}
if a=$(miss 100000) && b=$(miss 200000); then
    per=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "%.3f %.1f", (y[2] - x[2]) / 100000, (y[1] - x[1]) / 100000 }')
    read -r m i <<<"$per"
    msg="mispredicted branches per pair: $m (at most $MAX_MISS); instructions per pair: $i"
    if awk -v m="$m" -v x="$MAX_MISS" 'BEGIN { exit !(m <= x) }'; then
        echo "PASS classes (callgrind): $msg"
        passed=$((passed + 1))
    else
        echo "FAIL classes (callgrind): $msg"
        failed=$((failed + 1))
    fi
else
    echo "FAIL classes (callgrind): a run failed; logs in $out"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
