#!/usr/bin/env bash
# c_tests/faults.sh - out of memory, fork, thread churn and re-entry under
# memalloc (c_tests/faults.c, c_tests/fork.c, c_tests/reentry_lib.c).
#
#   c_tests/faults.sh [--long]       (needs `cargo build --release` first)
#
# Every test runs twice: linked with -lmemalloc, and plain with
# LD_PRELOAD=target/release/libmemalloc.so; always with MEMALLOC_EXPECT=1.
#   inject        faults inject under MEMALLOC_FAIL_AFTER=N for N = 0..40
#                 (0..150 with --long), one run each, reported as one test
#   inject-count  the same with MEMALLOC_FAIL_COUNT=K for a set of (N, K):
#                 allocation must work again once the K failures are used up
#   inject-debug  a few of both under MEMALLOC_DEBUG=1
#   inject-threads  faults inject-threads (8 threads at once) under a set of
#                 FAIL_AFTER / FAIL_COUNT values
#   rlimit-as, rlimit-data   RLIMIT_AS / RLIMIT_DATA lowered in the program
#   remap         a mapped block grown to 5 GiB by realloc while one memory
#                 call fails (MEMALLOC_FAIL_AFTER=0..12): NULL, block intact
#   quarantine    debug mode when its quarantine cannot be mapped (the frees
#                 go straight back), under MEMALLOC_FAIL_AFTER=0..12
#   fork          c_tests/fork.c with 1000 forks while 8 threads allocate
#                 (3000 with --long)
#   threads       10,000 threads in waves (30,000 with --long); RSS bounded
#   reentry       allocation from a constructor's thread before main, inside
#                 dlopen, from a library constructor at load time, and in
#                 getaddrinfo (binary faults-reentry, linked to
#                 libreentry_needed.so)
# Binaries and logs go to target/c_tests/hardening.  Environment:
# FAULTS_ONLY=regex runs only the matching tests.
# Ends with the line "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

long=0
for a in "$@"; do
    case $a in
    --long) long=1 ;;
    *) echo "faults.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

out=$root/target/c_tests/hardening
lib_dir=$root/target/release
lib=$lib_dir/libmemalloc.so
cflags=(-O2 -g -Wall -Wextra -fno-builtin -pthread -I "$root/include")
only=${FAULTS_ONLY:-}
if [ ! -f "$lib" ]; then
    echo "faults.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
mkdir -p "$out/linked" "$out/plain" "$out/logs"
ulimit -c 0

passed=0
failed=0
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
pass() { echo "PASS $1"; passed=$((passed + 1)); }

# ---- build ----------------------------------------------------------------
build() { # NAME LOG gcc-args...
    local name=$1 log=$2
    shift 2
    if ! gcc "$@" >"$log" 2>&1; then
        fail "$name: build failed"
        sed 's/^/    /' "$log" | head -30
        return 1
    fi
    if [ -s "$log" ]; then
        echo "warnings building $name:"
        sed 's/^/    /' "$log" | head -20
    fi
}
ok=1
build libreentry.so "$out/logs/libreentry.build.log" -O2 -g -Wall -Wextra -shared -fPIC -pthread \
    c_tests/reentry_lib.c -o "$out/libreentry.so" || ok=0
build libreentry_needed.so "$out/logs/libreentry_needed.build.log" -O2 -g -Wall -Wextra -shared \
    -fPIC -pthread -DREENTRY_NEEDED c_tests/reentry_lib.c -o "$out/libreentry_needed.so" || ok=0
link_memalloc=(-L "$lib_dir" -lmemalloc -Wl,-rpath,"$lib_dir")
link_needed=(-L "$out" -lreentry_needed -Wl,-rpath,"$out")
for v in linked plain; do
    extra=()
    [ $v = linked ] && extra=("${link_memalloc[@]}")
    build "faults ($v)" "$out/logs/faults.$v.build.log" "${cflags[@]}" c_tests/faults.c \
        -o "$out/$v/faults" "${extra[@]}" -ldl || ok=0
    build "faults-reentry ($v)" "$out/logs/faults-reentry.$v.build.log" "${cflags[@]}" \
        -DREENTRY_NEEDED c_tests/faults.c -o "$out/$v/faults-reentry" "${extra[@]}" \
        "${link_needed[@]}" -ldl || ok=0
    build "fork ($v)" "$out/logs/fork.$v.build.log" "${cflags[@]}" c_tests/fork.c \
        -o "$out/$v/fork" "${extra[@]}" -ldl || ok=0
done
if [ $ok -ne 1 ]; then
    echo "$passed passed, $failed failed"
    exit 1
fi

# ---- run ------------------------------------------------------------------
# run_one VARIANT LOG TIMEOUT ENV... -- ARGS...: runs a binary of VARIANT,
# sets $rc and $secs.
run_one() {
    local v=$1 log=$2 t=$3
    shift 3
    local envs=(MEMALLOC_EXPECT=1)
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        envs+=("$1")
        shift
    done
    shift
    [ $v = plain ] && envs+=(LD_PRELOAD="$lib")
    local bin=$out/$v/$1
    shift
    local start
    start=$(date +%s.%N)
    {
        timeout --kill-after=5 "$t" env "${envs[@]}" "$bin" "$@" >"$log" 2>&1
        rc=$?
    } 2>/dev/null
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
}

why_rc() {
    case $1 in
    124 | 137) echo "timed out" ;;
    0) echo "exited 0 without its ok line" ;;
    *) if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"; else echo "exit status $1"; fi ;;
    esac
}

vlabel() { [ "$1" = plain ] && echo "LD_PRELOAD" || echo "linked"; }

selected() { [ -z "$only" ] || [[ "$1" =~ $only ]]; }

# one test made of many runs of `faults MODE` (inject or inject-threads):
# NAME VARIANT MODE then lines of "ENV..." (each line one run)
inject_group() {
    local name=$1 v=$2 mode=$3 runs=$4
    selected "$name" || return 0
    local n=0 bad=0 total_fail=0 first_bad= t0=$SECONDS line log
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        n=$((n + 1))
        log=$out/logs/$name.$v.$n.log
        # shellcheck disable=SC2086
        run_one "$v" "$log" 60 $line -- faults "$mode" "$n"
        if [ $rc -eq 0 ] && grep -q "^ok faults $mode: " "$log"; then
            local f
            f=$(sed -n 's/.* ok, \([0-9]*\) failed.*/\1/p' "$log" | head -n 1)
            total_fail=$((total_fail + ${f:-0}))
            rm -f "$log"
        else
            bad=$((bad + 1))
            if [ -z "$first_bad" ]; then
                first_bad="$line: $(why_rc $rc)"
                echo "  failing run ($line), log $log:"
                grep -v '^inject' "$log" | tail -8 | sed 's/^/    /'
            fi
        fi
    done <<<"$runs"
    local label="$name ($(vlabel "$v")) [$((SECONDS - t0))s]"
    if [ $bad -eq 0 ]; then
        pass "$label: $n runs, $total_fail failed allocations, every one NULL + ENOMEM, heap consistent"
    else
        fail "$label: $bad of $n runs failed; first: $first_bad"
    fi
}

# `faults MODE` under MEMALLOC_FAIL_AFTER=0..12 (one failure each), with
# ENV... added: every run must end clean, and in at least one the failure must
# have hit the path under test, which the run tells by printing "MODE: WORD".
# VARIANT MODE WORD WHAT-IT-MEANS ENV...
failing_runs() {
    local v=$1 name=$2 word=$3 meaning=$4
    shift 4
    selected "$name" || return 0
    local n bad=0 hit=0 first_bad= t0=$SECONDS log
    for n in $(seq 0 12); do
        log=$out/logs/$name.$v.$n.log
        run_one "$v" "$log" 60 "$@" MEMALLOC_FAIL_AFTER=$n MEMALLOC_FAIL_COUNT=1 -- faults "$name"
        if [ $rc -eq 0 ] && grep -q "^ok faults $name: " "$log"; then
            grep -q "^$name: $word" "$log" && hit=$((hit + 1))
        else
            bad=$((bad + 1))
            [ -n "$first_bad" ] ||
                first_bad="MEMALLOC_FAIL_AFTER=$n: $(why_rc $rc): $(grep -v "^$name" "$log" | tail -1) (log $log)"
        fi
    done
    local label="$name ($(vlabel "$v")) [$((SECONDS - t0))s]"
    if [ $bad -ne 0 ]; then
        fail "$label: $bad of 13 runs failed; first: $first_bad"
    elif [ $hit -eq 0 ]; then
        fail "$label: in no run did the failure reach the path under test ($meaning)"
    else
        pass "$label: 13 runs clean; in $hit of them $meaning"
    fi
}

# debug mode whose quarantine cannot be mapped (`faults quarantine` under
# MEMALLOC_DEBUG=1): the freed block comes back at once ("reused").
quarantine_runs() {
    failing_runs "$1" quarantine reused \
        "the quarantine could not be mapped and frees went straight back" MEMALLOC_DEBUG=1
}

# a mapped block grown by realloc to 5 GiB (`faults remap`): whichever call
# fails (the mremap, or the address map's leaf for the moved block), realloc
# gives NULL with the block intact ("refused"), or succeeds.
remap_runs() {
    failing_runs "$1" remap refused "realloc gave NULL with the block intact"
}

# a single run expecting "ok NAME: ..." : TEST VARIANT OKNAME TIMEOUT ENV... -- BIN ARGS...
single() {
    local test=$1 v=$2 okname=$3 t=$4
    shift 4
    selected "$test" || return 0
    local log=$out/logs/$test.$v.log
    run_one "$v" "$log" "$t" "$@"
    local label="$test ($(vlabel "$v")) [${secs}s]"
    if [ $rc -eq 0 ] && grep -q "^ok $okname: " "$log"; then
        pass "$label"
        grep -v -E "^ok $okname: " "$log" | head -12 | sed 's/^/    /'
    else
        fail "$label: $(why_rc $rc)"
        tail -15 "$log" | sed 's/^/    /'
    fi
}

if [ $long -eq 1 ]; then
    max_n=150 forks=3000 threads=30000
else
    max_n=40 forks=1000 threads=10000
fi
plain_runs=$(for ((n = 0; n <= max_n; n++)); do echo "MEMALLOC_FAIL_AFTER=$n"; done)
count_runs=$(for nk in 0:1 0:20 3:2 5:1000 10:5 15:1 20:200 30:100 40:50 60:3; do
    echo "MEMALLOC_FAIL_AFTER=${nk%:*} MEMALLOC_FAIL_COUNT=${nk#*:}"
done)
thread_runs=$(for r in 0 5 10 20 40 80 5:3 10:50 20:500 40:20; do
    if [[ $r == *:* ]]; then
        echo "MEMALLOC_FAIL_AFTER=${r%:*} MEMALLOC_FAIL_COUNT=${r#*:}"
    else
        echo "MEMALLOC_FAIL_AFTER=$r"
    fi
done)
debug_runs=$(for r in 0 7 30 7:3 20:200; do
    if [[ $r == *:* ]]; then
        echo "MEMALLOC_DEBUG=1 MEMALLOC_FAIL_AFTER=${r%:*} MEMALLOC_FAIL_COUNT=${r#*:}"
    else
        echo "MEMALLOC_DEBUG=1 MEMALLOC_FAIL_AFTER=$r"
    fi
done)

for v in linked plain; do
    inject_group inject "$v" inject "$plain_runs"
    inject_group inject-count "$v" inject "$count_runs"
    inject_group inject-debug "$v" inject "$debug_runs"
    inject_group inject-threads "$v" inject-threads "$thread_runs"
    single rlimit-as "$v" "faults rlimit-as" 60 -- faults rlimit-as
    single rlimit-data "$v" "faults rlimit-data" 60 -- faults rlimit-data
    quarantine_runs "$v"
    remap_runs "$v"
    single reentry "$v" "faults reentry" 60 FAULTS_CTOR_THREAD=1 -- \
        faults-reentry reentry "$out/libreentry.so"
    single threads "$v" "faults threads" 300 -- faults threads "$threads"
    single fork "$v" fork 600 -- fork "$forks"
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
