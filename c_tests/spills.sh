#!/usr/bin/env bash
# c_tests/spills.sh - a bin's spill to many zones finds their headers in
# cache (c_tests/spills.c).
#
#   c_tests/spills.sh        (needs `cargo build --release` first)
#
# Runs spills.c under LD_PRELOAD=target/release/libmemalloc.so: natively (its
# own checks), then under valgrind --tool=callgrind with its cache model
# (D1 32 KiB 8-way, LL 512 KiB 8-way: a core's L2), collecting only inside
# `spill_bin` and what it calls, at two round counts; the misses per free
# are the difference of the counts over the difference of the frees
# (start-up cancels out). 64000 blocks of 512 bytes over about 500 zones,
# freed at random: a spill gives its 15 blocks back to as many zones.
# Passes if the spills miss the LL at most MAX_LL_MISSES (0.25) times a
# free. With the zone headers in the zones (before 2026-12-07), each in
# its own page and all 64 KiB apart (16 colours of cache sets), they took
# 2.3 LL misses a free; in the zone map's rooms, about 0. Passes too if
# they miss the D1 on a write at most MAX_D1_WRITE_MISSES (0.25) times a
# free: the zones a spill gives blocks back to are full ones here (every
# block was allocated again after the burst before), and one that moved
# from its owner's full list to the avail list wrote the list links of
# its neighbours' headers, lines no free had read (1.04 write misses a
# free); a full zone that gets blocks back now stays in the full list and
# joins the revived list (`free_local_slow`, sfree17h): about 0. Installs gcc and
# valgrind if missing. Ends with the line "N passed, M failed"; exits 1 if
# any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_LL_MISSES=0.25
MAX_D1_WRITE_MISSES=0.25
. "$here/callgrind_setup.sh" spills

native "" "2000 rounds of 64 frees" 2000

# counts ROUNDS: "Ir LL-misses D1-write-misses" of spill_bin in one run
# under callgrind
counts() {
    callgrind '$2, $9 + $10, $7' --cache-sim=yes --D1=32768,8,64 --I1=32768,8,64 \
        --LL=524288,8,64 '--toggle-collect=*spill_bin*' -- "$1"
}
# judge TAG VALUE MAX MSG: PASS or FAIL "spills (callgrind[, TAG])" as
# VALUE is at most MAX, with MSG, counted.
judge() {
    local verdict=FAIL
    if awk -v x="$2" -v m="$3" 'BEGIN { exit !(x <= m) }'; then
        verdict=PASS
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    echo "$verdict spills (callgrind${1:+, $1}): $4"
}
# per_free A B: (B - A) / frees, to 3 decimals
per_free() {
    awk -v a="$1" -v b="$2" -v n="$frees" 'BEGIN { printf "%.3f", (b - a) / n }'
}
r1=300
r2=600
frees=$(((r2 - r1) * 64))
if a=$(counts $r1) && b=$(counts $r2); then
    read -r ir1 ll1 w1 <<<"$a"
    read -r ir2 ll2 w2 <<<"$b"
    ll=$(per_free "$ll1" "$ll2")
    w=$(per_free "$w1" "$w2")
    ir=$(per_free "$ir1" "$ir2")
    judge "" "$ll" "$MAX_LL_MISSES" \
        "spills' LL misses per free: $ll (at most $MAX_LL_MISSES); their instructions per free: $ir"
    judge "full zones" "$w" "$MAX_D1_WRITE_MISSES" \
        "spills' D1 write misses per free: $w (at most $MAX_D1_WRITE_MISSES)"
else
    echo "FAIL spills (callgrind): a run failed; logs in $out"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
