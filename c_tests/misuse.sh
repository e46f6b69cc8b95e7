#!/usr/bin/env bash
# c_tests/misuse.sh - every misuse class must be caught and reported.
#
#   c_tests/misuse.sh          (needs `cargo build --release` first)
#
# Builds c_tests/misuse.c twice (linked with -lmemalloc; plain, run with
# LD_PRELOAD=target/release/libmemalloc.so) and runs each case of the table
# below in both.  A case passes only if the process
#   - dies by the expected signal (SIGABRT: exit status 134; SIGSEGV: 139),
#   - wrote exactly one line on stderr, matching
#     ^memalloc: <expected error words> at 0x[0-9a-f]+$
#     (for SIGSEGV cases: nothing at all on stderr),
#   - and that address is the one the program announced on stdout
#     ("report-address 0x...") before the misuse.
# So a case fails if detection stops working, if the message changes, or if
# it names the wrong address.  Mode "debug" runs with MEMALLOC_DEBUG=1.
# Binaries and logs go to target/c_tests/hardening (logs/misuse.*).  Core dumps are
# disabled.  Environment: MISUSE_ONLY=regex runs only the matching cases.
# Ends with the line "N passed, M failed"; exits 1 if any failed.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 2

out=$root/target/c_tests/hardening
lib_dir=$root/target/release
lib=$lib_dir/libmemalloc.so
cflags=(-O2 -g -Wall -Wextra -fno-builtin -pthread -I "$root/include")
only=${MISUSE_ONLY:-}

if [ ! -f "$lib" ]; then
    echo "misuse.sh: $lib not found: run 'cargo build --release' first" >&2
    exit 2
fi

# case | mode | signal | expected error words (an ERE; the runner anchors it)
cases=$(cat <<'EOF'
double-free-small            |default|ABRT|double free
double-free-medium           |default|ABRT|double free
double-free-medium-cached    |default|ABRT|double free
double-free-medium-cached-other-thread|default|ABRT|double free
double-free-big-cached       |default|ABRT|double free
double-free-big-shared       |default|ABRT|double free
double-free-big-merged       |default|ABRT|double free
double-free-big-merged-other-thread|default|ABRT|double free
double-free-large            |default|ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-stack                   |default|ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-global                  |default|ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-interior-small          |default|ABRT|invalid pointer \(not the start of a block\)
free-interior-medium         |default|ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
free-interior-big            |default|ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
free-interior-granule        |default|ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
free-interior-large          |default|ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-misaligned              |default|ABRT|invalid pointer \(not the start of a block\)
realloc-freed                |default|ABRT|realloc of a freed block
usable-size-freed            |default|ABRT|malloc_usable_size of a freed block
overflow-into-next-header    |default|ABRT|heap overflow \(the next block's header was overwritten\)
overflow-free-next           |default|ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
underflow                    |default|ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
uaf-freelist                 |default|ABRT|heap corruption \(free list link overwritten, use after free\?\)
uaf-medium-cached            |default|ABRT|heap corruption \(a freed medium block was written: use after free\?\)
debug-canary-overflow        |debug  |ABRT|heap overflow \(the canary after the block was overwritten\)
debug-write-after-free       |debug  |ABRT|write after free \(a freed block was modified\)
debug-guard-page-overflow    |debug  |SEGV|
debug-double-free-quarantine |debug  |ABRT|double free \(block in quarantine\)
debug-free-sized-wrong       |debug  |ABRT|free_sized or sized delete with a wrong size \(96 for a block of 100\)
debug-free-sized-wrong-large |debug  |ABRT|free_sized or sized delete with a wrong size \(1048592 for a block of 1048576\)
debug-free-aligned-sized-wrong|debug |ABRT|free_aligned_sized or aligned delete with a wrong alignment \([0-9]+\)
double-free-small            |debug  |ABRT|double free \(block in quarantine\)
double-free-medium           |debug  |ABRT|double free \(block in quarantine\)
double-free-large            |debug  |ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-stack                   |debug  |ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-global                  |debug  |ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-interior-small          |debug  |ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
free-interior-medium         |debug  |ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
free-interior-large          |debug  |ABRT|invalid pointer \(not from memalloc, or already freed and unmapped\)
free-misaligned              |debug  |ABRT|invalid pointer \(misaligned, not from malloc\)
realloc-freed                |debug  |ABRT|realloc of a freed block( \([^)]*\))?
usable-size-freed            |debug  |ABRT|malloc_usable_size of a freed block( \([^)]*\))?
overflow-into-next-header    |debug  |ABRT|heap overflow \(the canary after the block was overwritten\)
underflow                    |debug  |ABRT|corrupted block header \(heap overflow\?\) or invalid pointer
uaf-freelist                 |debug  |ABRT|write after free \(a freed block was modified\)
EOF
)

mkdir -p "$out/linked" "$out/plain" "$out/logs"
ulimit -c 0

# ---- build ----------------------------------------------------------------
build_ok=1
for v in linked plain; do
    log=$out/logs/misuse.$v.build.log
    if [ "$v" = linked ]; then
        gcc "${cflags[@]}" c_tests/misuse.c -o "$out/linked/misuse" \
            -L "$lib_dir" -lmemalloc -Wl,-rpath,"$lib_dir" -ldl >"$log" 2>&1
    else
        gcc "${cflags[@]}" c_tests/misuse.c -o "$out/plain/misuse" -ldl >"$log" 2>&1
    fi
    if [ $? -ne 0 ]; then
        echo "FAIL misuse ($v): build failed"
        sed 's/^/    /' "$log" | head -30
        build_ok=0
    elif [ -s "$log" ]; then
        echo "warnings building misuse ($v):"
        sed 's/^/    /' "$log" | head -20
    fi
done
if [ $build_ok -ne 1 ]; then
    echo "0 passed, 1 failed"
    exit 1
fi

# ---- run ------------------------------------------------------------------
passed=0
failed=0
while IFS='|' read -r name mode sig words; do
    name=${name// /}
    mode=${mode// /}
    [ -n "$name" ] || continue
    if [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then
        continue
    fi
    case $sig in
    ABRT) want_rc=134 ;;
    SEGV) want_rc=139 ;;
    *) echo "misuse.sh: bad signal $sig for $name" >&2; exit 2 ;;
    esac
    for v in linked plain; do
        envs=()
        [ "$mode" = debug ] && envs+=(MEMALLOC_DEBUG=1)
        [ "$v" = plain ] && envs+=(LD_PRELOAD="$lib")
        label="$name${mode/default/} ($v)"
        [ "$mode" = debug ] && label="$name [MEMALLOC_DEBUG=1] ($v)"
        [ "$v" = plain ] && label=${label/(plain)/(LD_PRELOAD)}
        tag=$name.$mode.$v
        so=$out/logs/misuse.$tag.out
        se=$out/logs/misuse.$tag.err
        # a death by signal is status 128+N; timeout's own 124 means the case
        # hung.  The group's 2>/dev/null silences bash's "Aborted" notice.
        {
            timeout --kill-after=5 30 env "${envs[@]}" "$out/$v/misuse" "$name" >"$so" 2>"$se"
            rc=$?
        } 2>/dev/null
        why=
        lines=$(wc -l <"$se")
        line=$(head -n 1 "$se")
        if [ $rc -ne $want_rc ]; then
            case $rc in
            0) why="exited 0: the misuse went unnoticed" ;;
            124) why="timed out" ;;
            *) if [ $rc -gt 128 ]; then why="killed by signal $((rc - 128)), expected SIG$sig"
               else why="exit status $rc, expected SIG$sig"; fi ;;
            esac
        elif [ -z "$words" ]; then
            [ -s "$se" ] && why="expected no stderr output, got: $line"
        elif [ "$lines" -ne 1 ]; then
            why="expected exactly one stderr line, got $lines"
        elif ! [[ "$line" =~ ^memalloc:\ ($words)\ at\ 0x([0-9a-f]+)$ ]]; then
            why="stderr line does not match '^memalloc: $words at 0x[0-9a-f]+\$'"
        else
            got=${BASH_REMATCH[${#BASH_REMATCH[@]} - 1]}
            want=$(sed -n 's/^report-address 0x\([0-9a-f]*\)$/\1/p' "$so" | head -n 1)
            if [ -z "$want" ]; then
                why="the program printed no report-address line"
            elif [ $((16#$got)) -ne $((16#$want)) ]; then
                why="reported address 0x$got, expected 0x$want"
            fi
        fi
        if [ -z "$why" ]; then
            if [ -n "$words" ]; then
                echo "PASS $label: $line"
            else
                echo "PASS $label: SIG$sig, nothing on stderr"
            fi
            passed=$((passed + 1))
        else
            echo "FAIL $label: $why"
            sed 's/^/    stdout: /' "$so" | head -5
            sed 's/^/    stderr: /' "$se" | head -5
            failed=$((failed + 1))
        fi
    done
done <<<"$cases"

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
