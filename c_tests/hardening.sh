#!/usr/bin/env bash
# c_tests/hardening.sh - issue 4's tests: misuse detection, faults, and load.
#
#   c_tests/hardening.sh [--long]     (needs `cargo build --release` first)
#
#   misuse   c_tests/misuse.sh: every misuse class must abort with its exact
#            "memalloc: <error> at 0x<address>" line (default and debug mode)
#   faults   c_tests/faults.sh: fault injection (MEMALLOC_FAIL_AFTER/COUNT),
#            RLIMIT_AS/RLIMIT_DATA, fork x1000 while 8 threads allocate,
#            10,000 threads, re-entry (constructor thread, dlopen,
#            getaddrinfo)
#   stress   c_tests/stress.c: 32 threads of random calls with patterns and
#            hand-overs for 5 s (120 s with --long), linked and preloaded;
#            then 3 s (30 s) preloaded under MEMALLOC_DEBUG=1
# --long also makes faults.sh longer (see there).  Takes 2-2.5 minutes on
# 2 cores (--long: about 12).  Every test runs linked with -lmemalloc and
# under LD_PRELOAD.  Logs go to target/c_tests/hardening/logs.
# Ends with the line "N passed, M failed" over all of them; exits 1 if any
# failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

long=0
for a in "$@"; do
    case $a in
    --long) long=1 ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hardening.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

lib_dir=$root/target/release
lib=$lib_dir/libmemalloc.so
if [ ! -f "$lib" ]; then
    echo "hardening.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi
out=$root/target/c_tests/hardening
mkdir -p "$out/linked" "$out/plain" "$out/logs"
ulimit -c 0
start_all=$SECONDS
passed=0
failed=0

# runs a sub-runner, shows its output, adds its "N passed, M failed"
sub() {
    local name=$1
    shift
    echo "=== $name ==="
    local log=$out/logs/$name.runner.log
    bash "$@" 2>&1 | tee "$log"
    local last
    last=$(tail -n 1 "$log")
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        echo "FAIL $name: the runner ended without its summary line"
        failed=$((failed + 1))
    fi
}

sub misuse c_tests/misuse.sh
if [ $long -eq 1 ]; then
    sub faults c_tests/faults.sh --long
    secs=120 debug_secs=30
else
    sub faults c_tests/faults.sh
    secs=5 debug_secs=3
fi

echo "=== stress ==="
cflags=(-O2 -g -Wall -Wextra -fno-builtin -pthread -I "$root/include")
ok=1
for v in linked plain; do
    extra=()
    [ $v = linked ] && extra=(-L "$lib_dir" -lmemalloc -Wl,-rpath,"$lib_dir")
    if ! gcc "${cflags[@]}" c_tests/stress.c -o "$out/$v/stress" "${extra[@]}" -ldl \
        >"$out/logs/stress.$v.build.log" 2>&1; then
        echo "FAIL stress ($v): build failed"
        sed 's/^/    /' "$out/logs/stress.$v.build.log" | head -30
        failed=$((failed + 1))
        ok=0
    fi
done
if [ $ok -eq 1 ]; then
    for run in "linked|$secs|" "plain|$secs|" "plain|$debug_secs|MEMALLOC_DEBUG=1"; do
        IFS='|' read -r v s dbg <<<"$run"
        envs=(MEMALLOC_EXPECT=1)
        [ -n "$dbg" ] && envs+=("$dbg")
        label="stress ${s}s"
        [ $v = plain ] && envs+=(LD_PRELOAD="$lib") && label+=" (LD_PRELOAD)" || label+=" (linked)"
        [ -n "$dbg" ] && label+=" [$dbg]"
        log=$out/logs/stress.$v${dbg:+.debug}.log
        t0=$SECONDS
        {
            timeout --kill-after=5 $((s + 120)) env "${envs[@]}" "$out/$v/stress" "$s" >"$log" 2>&1
            rc=$?
        } 2>/dev/null
        if [ $rc -eq 0 ] && grep -q '^ok stress: ' "$log"; then
            echo "PASS $label [$((SECONDS - t0))s]"
            grep -E '^(stress:|[0-9]+ operations|RSS:|memalloc:)' "$log" | sed 's/^/    /'
            passed=$((passed + 1))
        else
            if [ $rc -gt 128 ] && [ $rc -ne 137 ]; then why="killed by signal $((rc - 128))"
            elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="timed out"
            else why="exit status $rc"; fi
            echo "FAIL $label: $why [$((SECONDS - t0))s]"
            tail -15 "$log" | sed 's/^/    /'
            failed=$((failed + 1))
        fi
    done
fi

echo
echo "hardening.sh: total time $((SECONDS - start_all))s"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
