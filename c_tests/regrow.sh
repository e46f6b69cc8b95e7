#!/usr/bin/env bash
# c_tests/regrow.sh - two single-thread patterns that were slower than the
# peers cost at most a bound of instructions (c_tests/regrow.c).
#
#   c_tests/regrow.sh        (needs `cargo build --release` first)
#
# Runs regrow.c under LD_PRELOAD=target/release/libmemalloc.so: natively (its
# own checks: contents kept; the 64 KiB-1 MiB pairs make at most 1 memory
# system call per 1000 once warm), then under valgrind --tool=callgrind at
# two counts each, and takes the instructions per operation as the
# difference of the counts over the difference of the operations (start-up
# and exit cancel out), the program's own work included:
#   strings  a realloc growing a block of 16-64 KiB by 16 bytes, which its
#            headroom holds: at most MAX_REALLOC (215). Through the heap's
#            lock it cost 256 (glibc 224, tcmalloc 201; 164 without it). Since
#            the medium caches' chunks are their class's exact size and cut
#            side by side from a thread's reserve (m64), a block that
#            outgrows its class moves (a copy) instead of growing into the
#            heap's free neighbour: 203.
#   big      a malloc+free pair of 64 KiB-1 MiB at random: at most MAX_BIG
#            (240). With a thread's big classes held to 1 MiB it cost 402,
#            most pairs going through the shared lists (glibc 341, tcmalloc
#            708; 225 with the room `mcache::big_extra` gives a lone thread).
#            246.9 while each big free computed that room anew (two
#            divisions); 232.0 with it cached per thread count
#            (`MCache::room`, grid17h).
#   big1m    the same pairs (`regrow bigshared`: its system calls not
#            bounded, the shared lists' drains and the heap's purges following
#            the clock) with the thread's big classes held to 1 MiB
#            (MEMALLOC_MEDIUM_CACHE=4194560, not the default: no extra room),
#            the room each thread has from 24 threads on: a quarter of the
#            pairs refill from the shared lists, most finding their class's
#            empty. Counted inside `mcache::central::from_central` only
#            (callgrind's --toggle-collect: the heap's purges, by the clock,
#            move the whole pair's count by up to 25 from run to run): at
#            most MAX_BIG1M (65). 93.2 while a refill looked at the count of
#            every shard of its class and the next four (40 lines; the whole
#            pair 455-488); 51.1 with each class's mask of shards that hold
#            chunks (`mcache::AVAIL`, short17i; the whole pair 434-460).
# Installs gcc and valgrind if missing. Ends with the line "N passed, M
# failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_REALLOC=215
MAX_BIG=240
MAX_BIG1M=65
. "$here/callgrind_setup.sh" regrow -I "$here/../include"

native strings "reallocs in place, contents kept" strings 200
native big "64 KiB-1 MiB pairs, no system call per pair" big 100000

# per_op PATTERN N1 N2 OPS_PER_N [valgrind options...]: instructions per
# operation
per_op() {
    local a b
    a=$(callgrind '$2' "${@:5}" -- "$1" "$2") && b=$(callgrind '$2' "${@:5}" -- "$1" "$3") || return 1
    awk -v a="$a" -v b="$b" -v p=$((($3 - $2) * $4)) 'BEGIN { printf "%.1f", (b - a) / p }'
}

# bound NAME VALUE MAX WHAT
bound() {
    if awk -v v="$2" -v m="$3" 'BEGIN { exit !(v <= m) }'; then
        echo "PASS regrow (callgrind, $1): $4 $2 instructions (at most $3)"
        passed=$((passed + 1))
    else
        echo "FAIL regrow (callgrind, $1): $4 $2 instructions (at most $3)"
        failed=$((failed + 1))
    fi
}

if v=$(per_op strings 10 20 3072); then
    bound strings "$v" $MAX_REALLOC "a realloc growing a 16-64 KiB block in its headroom:"
else
    echo "FAIL regrow (callgrind, strings): a run failed; logs in $out"
    failed=$((failed + 1))
fi
if v=$(per_op big 20000 40000 1); then
    bound big "$v" $MAX_BIG "a malloc+free pair of 64 KiB-1 MiB:"
else
    echo "FAIL regrow (callgrind, big): a run failed; logs in $out"
    failed=$((failed + 1))
fi

if v=$(MEMALLOC_MEDIUM_CACHE=4194560 per_op bigshared 20000 40000 1 \
    --toggle-collect='*mcache::central::from_central'); then
    bound big1m "$v" $MAX_BIG1M "a malloc+free pair of 64 KiB-1 MiB, big classes held to 1 MiB, in the shared lists' look (from_central):"
else
    echo "FAIL regrow (callgrind, big1m): a run failed; logs in $out"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
