#!/usr/bin/env bash
# c_tests/run.sh - builds and runs the C API tests against libmemalloc.so.
#
#   c_tests/run.sh            every test twice: linked with -lmemalloc, and
#                             plain with LD_PRELOAD=target/release/libmemalloc.so
#                             (needs `cargo build --release` first)
#   c_tests/run.sh LIB        validates the suite itself under another allocator:
#                             plain builds only, LD_PRELOAD=LIB (e.g.
#                             /usr/lib/x86_64-linux-gnu/libjemalloc.so.2);
#                             memalloc-only tests are skipped
#   c_tests/run.sh glibc      the same with no preload at all
#
# Under memalloc every test runs with MEMALLOC_EXPECT=1, which makes it check
# that malloc really resolves to libmemalloc.  Binaries and logs go to
# target/c_tests.  Environment: C_TESTS_TIMEOUT (seconds per run, default 120),
# CHECK_KEEP_GOING=1 (report every failing check, not only the first).
# Ends with the line "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

tests=(api extensions brk brk_moved purge threads fork churn compat medium idle bigreuse bigsparse bigquery vecgrow strvec shared zonereuse revive)
memalloc_only=" extensions brk brk_moved purge medium idle bigreuse bigsparse bigquery vecgrow strvec shared zonereuse revive "
cflags=(-O2 -g -Wall -Wextra -fno-builtin -pthread -I "$root/include")
timeout_s=${C_TESTS_TIMEOUT:-120}
out=$root/target/c_tests
lib_dir=$root/target/release
lib=$lib_dir/libmemalloc.so

alt=${1:-}
if [ -n "$alt" ]; then
    if [ "$alt" = glibc ]; then
        preload=
    elif [ -f "$alt" ]; then
        preload=$(cd "$(dirname "$alt")" && pwd)/$(basename "$alt")
    else
        echo "run.sh: $alt: no such library" >&2
        exit 2
    fi
    variants=(plain)
    expect=
else
    if [ ! -f "$lib" ]; then
        echo "run.sh: $lib not found: run 'cargo build --release' first" >&2
        exit 2
    fi
    preload=$lib
    variants=(linked plain)
    expect=1
fi

mkdir -p "$out/linked" "$out/plain" "$out/logs"
passed=0
failed=0
skipped=0
declare -A built

# ---- build ----------------------------------------------------------------
for t in "${tests[@]}"; do
    for v in "${variants[@]}"; do
        bin=$out/$v/$t
        log=$out/logs/$t.$v.build.log
        # a test's own flags: a line "/* run.sh cflags: ... */" in it
        read -ra extra <<<"$(sed -n 's|^/\* run.sh cflags: \(.*\) \*/$|\1|p' "c_tests/$t.c")"
        if [ "$v" = linked ]; then
            gcc "${cflags[@]}" "${extra[@]}" "c_tests/$t.c" -o "$bin" \
                -L "$lib_dir" -lmemalloc -Wl,-rpath,"$lib_dir" -ldl >"$log" 2>&1
        else
            gcc "${cflags[@]}" "${extra[@]}" "c_tests/$t.c" -o "$bin" -ldl >"$log" 2>&1
        fi
        if [ $? -eq 0 ]; then
            built[$t.$v]=1
            # warnings are worth seeing, but do not fail the build
            if [ -s "$log" ]; then
                echo "warnings building $t ($v):"
                sed 's/^/    /' "$log" | head -20
            fi
        else
            built[$t.$v]=0
        fi
    done
done

# ---- run ------------------------------------------------------------------
for t in "${tests[@]}"; do
    for v in "${variants[@]}"; do
        label="$t ($v)"
        if [ "$v" = plain ] && [ -n "$preload" ]; then
            label="$t (LD_PRELOAD=$(basename "$preload"))"
        elif [ "$v" = plain ]; then
            label="$t (no preload)"
        fi
        if [ -z "$expect" ] && [[ "$memalloc_only" == *" $t "* ]]; then
            echo "SKIP $label: memalloc only"
            skipped=$((skipped + 1))
            continue
        fi
        if [ "${built[$t.$v]}" != 1 ]; then
            echo "FAIL $label: build failed"
            sed 's/^/    /' "$out/logs/$t.$v.build.log" | head -30
            failed=$((failed + 1))
            continue
        fi
        log=$out/logs/$t.$v.log
        envs=()
        [ -n "$expect" ] && envs+=(MEMALLOC_EXPECT=1)
        [ "$v" = plain ] && [ -n "$preload" ] && envs+=(LD_PRELOAD="$preload")
        start=$(date +%s.%N)
        timeout --kill-after=5 "$timeout_s" env "${envs[@]}" "$out/$v/$t" >"$log" 2>&1
        rc=$?
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        if [ $rc -eq 0 ] && grep -q "^ok $t: " "$log"; then
            echo "PASS $label [${secs}s] $(grep "^ok $t: " "$log" | sed "s/^ok $t: //")"
            passed=$((passed + 1))
        else
            case $rc in
            124 | 137) why="timed out after ${timeout_s}s" ;;
            0) why="exited 0 without its ok line" ;;
            *) if [ $rc -gt 128 ]; then why="killed by signal $((rc - 128))"; else why="exit status $rc"; fi ;;
            esac
            echo "FAIL $label: $why [${secs}s]"
            grep -v -E '^(Arena|system bytes|in use bytes|Total|max mmap)' "$log" | tail -15 | sed 's/^/    /'
            failed=$((failed + 1))
        fi
    done
done

[ $skipped -gt 0 ] && echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
