# c_tests/callgrind_setup.sh - the set-up shared by the callgrind tests
# (bursts.sh, classes.sh, xfree.sh) and by takeover.sh, sourced after `here` is set:
#
#   . "$here/callgrind_setup.sh" NAME [extra gcc flags...]
#
# sets root, lib (target/release/libmemalloc.so, which must exist), out
# (target/c_tests/NAME), passed=0 and failed=0; installs gcc and valgrind if
# missing; builds c_tests/NAME.c into $out/NAME, or reports the build's
# failure and exits 1. Defines `native`, `callgrind` and `verdict` (below).
name=$1
shift
root=$(cd "$here/.." && pwd)
lib=$root/target/release/libmemalloc.so
out=$root/target/c_tests/$name
if [ ! -f "$lib" ]; then
    echo "$name.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
bash "$root/scripts/ensure_tools.sh" gcc=gcc valgrind=valgrind || exit 2
mkdir -p "$out"
passed=0
failed=0
if ! gcc -O2 -g -Wall -Wextra -fno-builtin "$@" -o "$out/$name" "$here/$name.c" 2>"$out/build.log"; then
    echo "FAIL $name: build failed"
    sed 's/^/    /' "$out/build.log" | head -20
    echo "0 passed, 1 failed"
    exit 1
fi

# native TAG WHAT ARGS...: runs $out/NAME ARGS under the library, natively;
# PASS or FAIL "NAME (native[, TAG])" (WHAT said on a pass), counted.
native() {
    local tag=$1 what=$2 log="$out/native${1:+.$1}.log"
    shift 2
    if LD_PRELOAD=$lib MEMALLOC_EXPECT=1 timeout 120 "$out/$name" "$@" >"$log" 2>&1 &&
        grep -q "^ok $name" "$log"; then
        echo "PASS $name (native${tag:+, $tag}, $what)"
        passed=$((passed + 1))
    else
        echo "FAIL $name (native${tag:+, $tag})"
        tail -5 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

# callgrind FIELDS [valgrind options...] -- ARGS...: runs $out/NAME ARGS
# under callgrind and prints the totals line's fields FIELDS (awk's, e.g.
# '$2' for Ir); fails if the run did not end with "ok NAME".
callgrind() {
    local fields=$1 opts=()
    shift
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    local f="$out/callgrind.$(IFS=.; echo "$*").out"
    LD_PRELOAD=$lib timeout 300 valgrind --tool=callgrind "${opts[@]}" --callgrind-out-file="$f" \
        "$out/$name" "$@" >"${f%.out}.log" 2>&1 || return 1
    grep -q "^ok $name" "${f%.out}.log" || return 1
    awk "/^(summary|totals):/ { print $fields; exit }" "$f"
}

# verdict TEST STATUS MSG: "PASS TEST: MSG" if STATUS is 0, else
# "FAIL TEST: MSG"; counted.
verdict() {
    if [ "$2" -eq 0 ]; then
        echo "PASS $1: $3"
        passed=$((passed + 1))
    else
        echo "FAIL $1: $3"
        failed=$((failed + 1))
    fi
}
