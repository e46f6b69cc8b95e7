#!/usr/bin/env bash
# scripts/prof_callgrind.sh LIB.so [LIB.so ...] — the heap profiler's cost in
# instructions (callgrind: immune to the load of a shared machine), on the
# bench programs at reduced sizes, each library with
# MEMALLOC_PROF off and on. Prints a markdown table: instructions off, on,
# on ÷ off, per library. Needs the bench programs in target/bench (built by
# scripts/prof_overhead.sh or scripts/bench.sh).
set -euo pipefail
ALL_LIBS=("$@")
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
B="$ROOT/target/bench"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-profcg.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
count() { # count LIB PROF PROG ARGS... -> instructions
    local lib=$1 prof=$2
    shift 2
    (cd "$TMP" && MEMALLOC_PROF=$prof MEMALLOC_PROF_OUT="$TMP/p" LD_PRELOAD="$lib" \
        valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$@" >/dev/null 2>&1)
    awk '/^totals:/ { print $2 }' "$TMP/cg.out"
}
head="| workload |"
rule="|---|"
for lib in "$@"; do
    head="$head $(basename "$(dirname "$lib")")/$(basename "$lib") off | on | on ÷ off |"
    rule="$rule---:|---:|---:|"
done
echo "$head"
echo "$rule"
for w in "fixed 16 2e6" "fixed 64 2e6" "fixed 256 2e6" "fixed 1024 2e6" "fixed 4096 1e6" "churn 1e6 30000" \
    "larson 4 2000 4 40000" "xmalloc 2 2 5e5" "threads32 8 2e5" "mchurn 5e5 10000 50 256k" \
    "mthreads 1 2e5 256 4k 64k u" "mthreads 4 5e4 256 4k 64k u" "xmalloc 2 2 2e5 64 32 64 32k" \
    "bulkfree 2 20 2000 16 16k" "mthreads 1 1e6 1000 1 32k s"; do
    set -- $w
    prog=$1
    shift
    row="| $prog $* |"
    echo -n "$row"
    for lib in "${ALL_LIBS[@]}"; do
        off=$(count "$lib" 0 "$B/$prog" "$@")
        on=$(count "$lib" 1 "$B/$prog" "$@")
        echo -n " $off | $on | $(python3 -c "print('%.2f' % ($on / $off))") |"
    done
    echo
done
