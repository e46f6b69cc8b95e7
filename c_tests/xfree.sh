#!/usr/bin/env bash
# c_tests/xfree.sh - a free of a block another thread allocated costs about
# what a free of one's own does (c_tests/xfree.c).
#
#   c_tests/xfree.sh        (needs `cargo build --release` first)
#
# Runs xfree.c under LD_PRELOAD=target/release/libmemalloc.so: natively in
# its three modes (its own checks: tags kept, no block handed out twice),
# then under valgrind --tool=callgrind, each mode at two round counts, and
# takes the instructions per malloc+free pair as the difference of the
# counts over the difference of the pairs (start-up and exit cancel out).
# Mode l frees each batch in the thread that allocated it (the reference);
# mode c has another thread free it (a consumer that allocates nothing);
# mode t has two threads free each other's batches. Passes if a pair of
# modes c and t costs at most MAX_EXTRA (20) instructions more than one of
# mode l. (Before the consumer's frees went to their owners in batches,
# with the owner taking a batch whole: 81 and 57 more; mimalloc: 56 and 62.)
# Installs gcc and valgrind if missing. Ends with the line
# "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_EXTRA=20
BATCH=256
. "$here/callgrind_setup.sh" xfree -pthread

for mode in l c t; do
    native "mode $mode" "20000 rounds of $BATCH blocks" 20000 "$BATCH" "$mode"
done

# ir ROUNDS MODE: the instructions of one run under callgrind
ir() {
    callgrind '$2' -- "$1" "$BATCH" "$2"
}
# per_pair MODE: instructions per malloc+free pair
per_pair() {
    local r1=200 r2=400 a b
    a=$(ir "$r1" "$1") && b=$(ir "$r2" "$1") || return 1
    awk -v a="$a" -v b="$b" -v p=$(((r2 - r1) * BATCH)) 'BEGIN { printf "%.1f", (b - a) / p }'
}
if own=$(per_pair l) && cons=$(per_pair c) && two=$(per_pair t); then
    msg="instructions per pair: $own freed by the thread that allocated, $cons by a consumer, $two by two threads freeing each other's (at most +$MAX_EXTRA)"
    if awk -v o="$own" -v c="$cons" -v t="$two" -v m="$MAX_EXTRA" 'BEGIN { exit !(c - o <= m && t - o <= m) }'; then
        echo "PASS xfree (callgrind): $msg"
        passed=$((passed + 1))
    else
        echo "FAIL xfree (callgrind): $msg"
        failed=$((failed + 1))
    fi
else
    echo "FAIL xfree (callgrind): a run failed; logs in $out"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
