#!/usr/bin/env bash
# scripts/syscalls.sh — system calls and futex waits per million malloc+free
# pairs, for issue 17's workloads, under each allocator.
#
#   scripts/syscalls.sh [--no-build] [--out FILE] [--strace]
#
# Runs every workload of bench/ that issue 17 added (mchurn, medium-T,
# prodcons, bulkfree, invsq-T; the --quick sizes) and the suite's big-block
# one (large-8) under each allocator, and splits the calls counted into:
# memory calls that grow or shrink memory (brk, mmap, munmap, mremap,
# madvise), futex calls (waits and wakes: a lock that had to sleep), and all
# others. Process start-up (the dynamic loader, thread creation) makes the
# same calls under every allocator: the same program's calls under glibc are
# the floor. Figures are calls per million malloc+free pairs. Writes
# results/syscalls.md.
# Counted by the kernel's syscall tracepoints (`perf stat -e
# raw_syscalls:sys_enter,syscalls:sys_enter_<name>`; the median of REPS
# runs) where perf may read them, else (or with --strace) by `strace -f -c`,
# once. strace stops the process at every system call: a thread that makes
# one while it holds a lock holds it some 100 times longer, and the others
# wait for it in futex calls that do not happen otherwise (invsq-8 under
# memalloc: 78-133 futex calls under strace, 11-15 counted by perf, glibc's
# 12-15; medium-8 under tcmalloc: 703 and 15).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="$ROOT/target/bench"
out="$ROOT/results/syscalls.md"
build=1
REPS=3
tool=perf
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --strace) tool=strace ;;
        --out) out="$2"; shift ;;
        *) echo "syscalls.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
MEMEV="brk mmap munmap mremap madvise"
PERF_EV="raw_syscalls:sys_enter,syscalls:sys_enter_futex"
for e in $MEMEV; do PERF_EV="$PERF_EV,syscalls:sys_enter_$e"; done
if [[ $tool == perf ]] && ! perf stat -x, -e "$PERF_EV" -- true >/dev/null 2>&1; then
    echo "syscalls.sh: perf cannot read the syscall tracepoints here; counting with strace" >&2
    tool=strace
fi
[[ $tool == perf ]] || command -v strace >/dev/null || { echo "syscalls.sh: strace is missing" >&2; exit 2; }
mkdir -p "$BIN"
if [[ $build == 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
for p in mchurn mthreads xmalloc bulkfree; do
    gcc -O2 -g -pthread -Wall -Wextra -o "$BIN/$p" "$ROOT/bench/$p.c" -lm
done
declare -A LIB=(
    [glibc]=""
    [jemalloc]=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
    [tcmalloc]=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
    [mimalloc]=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
    [memalloc]="$ROOT/target/release/libmemalloc.so"
)
ALLOCS=(glibc jemalloc tcmalloc mimalloc memalloc)
# name|pairs|command
W=(
    "mchurn|5000000|mchurn 5e6 10000 50 256k"
    "medium-1|2000000|mthreads 1 2e6 256 4k 64k u"
    "medium-2|2000000|mthreads 2 2e6 256 4k 64k u"
    "medium-8|2000000|mthreads 8 2e6 256 4k 64k u"
    "medium-32|2000000|mthreads 32 2e6 256 4k 64k u"
    "prodcons|1000000|xmalloc 4 4 1e6 64 32 64 32k"
    "bulkfree|800000|bulkfree 4 100 2000 16 16k"
    "invsq-1|5000000|mthreads 1 5e6 1000 1 32k s"
    "invsq-8|5000000|mthreads 8 5e6 1000 1 32k s"
    "large-8|200000|mthreads 8 2e5 16 256k 64M s"
)
TMP="$(mktemp -d)"
med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
trap 'rm -rf "$TMP"' EXIT
{
    echo "# memalloc: system calls per million malloc+free pairs (issue 17's workloads)"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); memalloc commit $(git -C "$ROOT" rev-parse --short HEAD)"
    if [[ $tool == perf ]]; then
        echo "- \`scripts/syscalls.sh\`: each workload $REPS times per allocator, counted by the kernel's syscall"
        echo "  tracepoints (\`perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_...\`), medians"
    else
        echo "- \`scripts/syscalls.sh --strace\`: each workload once per allocator under \`strace -f -c\` (which"
        echo "  makes a lock held across a system call wait some 100 times longer: futex counts run high)"
    fi
    echo "  (\`--quick\` sizes of \`scripts/bench.sh\`). *mem*: brk, mmap, munmap, mremap, madvise (memory"
    echo "  growing or shrinking); *futex*: waits and wakes; *other*: every other call, start-up included"
    echo "  (the dynamic loader, thread creation: about the same under every allocator, see glibc)."
    echo
    echo "| workload | $(IFS='|'; echo "${ALLOCS[*]}" | sed 's/|/ | /g') |"
    echo "|---|$(printf -- '---:|%.0s' "${ALLOCS[@]}")"
    for w in "${W[@]}"; do
        IFS='|' read -r name pairs cmd <<<"$w"
        row="| $name |"
        for a in "${ALLOCS[@]}"; do
            f="$TMP/$name.$a"
            if [[ $tool == perf ]]; then
                mm=() fx=() ot=()
                for _ in $(seq "$REPS"); do
                    perf stat -x, -o "$f" -e "$PERF_EV" -- env ${LIB[$a]:+LD_PRELOAD=${LIB[$a]}} \
                        $BIN/$cmd >/dev/null 2>&1 || true
                    read -r m x o < <(awk -F, -v mem=" $MEMEV " '
                        $3 ~ /^raw_syscalls:sys_enter$/ { all = $1 }
                        $3 ~ /^syscalls:sys_enter_/ { n = substr($3, 20)
                            if (n == "futex") fx = $1; else if (index(mem, " " n " ")) m += $1 }
                        END { print m + 0, fx + 0, all - m - fx }' "$f")
                    mm+=("$m") fx+=("$x") ot+=("$o")
                done
                cell=$(awk -v pairs="$pairs" -v m="$(med <<<"${mm[*]}")" -v x="$(med <<<"${fx[*]}")" \
                    -v o="$(med <<<"${ot[*]}")" 'BEGIN { printf "mem %.0f, futex %.0f, other %.0f",
                        m * 1e6 / pairs, x * 1e6 / pairs, o * 1e6 / pairs }')
                row="$row $cell |"
                continue
            fi
            if [[ -n "${LIB[$a]}" ]]; then
                strace -f -c -o "$f" env LD_PRELOAD="${LIB[$a]}" $BIN/$cmd >/dev/null 2>&1 || true
            else
                strace -f -c -o "$f" $BIN/$cmd >/dev/null 2>&1 || true
            fi
            cell=$(awk -v pairs="$pairs" '
                /^-/ || /^%/ || /total/ { next }
                NF >= 5 { calls = ($4 ~ /^[0-9]+$/ && NF >= 6) ? $4 : $4; name = $NF
                          if (name ~ /^(brk|mmap|munmap|mremap|madvise)$/) mem += calls
                          else if (name == "futex") fx += calls
                          else other += calls }
                END { printf "mem %.0f, futex %.0f, other %.0f", mem * 1e6 / pairs, fx * 1e6 / pairs, other * 1e6 / pairs }' "$f")
            row="$row $cell |"
        done
        echo "$row"
    done
    echo
    echo "## memalloc: contended lock acquisitions (MEMALLOC_STATS)"
    echo
    echo "\`mthreads T 2e6 256 4k 64k u\` (medium blocks per thread) at 1-64 threads: acquisitions of any"
    echo "memalloc lock that found it held (of them the heap's lock), and memalloc's own system calls"
    echo "(all kinds), per million allocations, as \`MEMALLOC_STATS=1\` prints them at exit; the"
    echo "medium caches' refills (of them from the heap) and flushes (of them to the heap). A run"
    echo "counts its threads' first fills and their exits too; *steady* is the contended acquisitions"
    echo "per million pairs of the difference between that run and one of 8e6 pairs. Each figure is"
    echo "the median of $REPS pairs of runs (one run's figures swing several-fold at 16-64 threads)."
    echo
    echo "| threads | contended locks | per million allocations | the heap's | steady, per million pairs | system calls per million | refills (heap) / flushes (heap) |"
    echo "|---:|---:|---:|---:|---:|---:|---|"
    pat='s/^ *contended locks *\([0-9]*\) (\([0-9]*\) per million allocations, the heap.s \([0-9]*\),.* system calls \([0-9]*\) per million.*/'
    rpat='s/.*; \([0-9]*\) refills (\([0-9]*\) from the heap), \([0-9]*\) flushes (\([0-9]*\) to the heap).*/'
    for t in 1 2 4 8 16 32 64; do
        c=() a=() hp=() y=() sd=() r1=() r2=() r3=() r4=()
        for _ in $(seq "$REPS"); do
            st=$(MEMALLOC_STATS=1 LD_PRELOAD="${LIB[memalloc]}" "$BIN/mthreads" "$t" 2e6 256 4k 64k u 2>&1 >/dev/null)
            st8=$(MEMALLOC_STATS=1 LD_PRELOAD="${LIB[memalloc]}" "$BIN/mthreads" "$t" 8e6 256 4k 64k u 2>&1 >/dev/null)
            n2=$(sed -n "${pat}\1/p" <<<"$st")
            n8=$(sed -n "${pat}\1/p" <<<"$st8")
            c+=("${n2:-0}")
            a+=("$(sed -n "${pat}\2/p" <<<"$st")")
            hp+=("$(sed -n "${pat}\3/p" <<<"$st")")
            y+=("$(sed -n "${pat}\4/p" <<<"$st")")
            sd+=("$(awk -v a="${n2:-0}" -v b="${n8:-0}" 'BEGIN { v = (b - a) / 6; if (v > -0.5 && v < 0.5) v = 0; printf "%.0f", v }')")
            r1+=("$(sed -n "${rpat}\1/p" <<<"$st")") r2+=("$(sed -n "${rpat}\2/p" <<<"$st")")
            r3+=("$(sed -n "${rpat}\3/p" <<<"$st")") r4+=("$(sed -n "${rpat}\4/p" <<<"$st")")
        done
        echo "| $t | $(med <<<"${c[*]}") | $(med <<<"${a[*]}") | $(med <<<"${hp[*]}") | $(med <<<"${sd[*]}") | $(med <<<"${y[*]}") | $(med <<<"${r1[*]}") ($(med <<<"${r2[*]}")) / $(med <<<"${r3[*]}") ($(med <<<"${r4[*]}")) |"
    done
    echo
} >"$out"
echo "syscalls.sh: wrote $out" >&2
