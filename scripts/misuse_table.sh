#!/usr/bin/env bash
# scripts/misuse_table.sh - what glibc, jemalloc, mimalloc, tcmalloc and memalloc
# do with a heap bug, measured; writes results/misuse.md.
#
#   scripts/misuse_table.sh [--reps N] [--out FILE]
#
# Runs each case of c_tests/misuse.c (one heap bug per run; see the comment
# at its top) under every allocator: glibc with no preload, the others with
# LD_PRELOAD, memalloc also with MEMALLOC_DEBUG=1.  Installs the peer
# allocators from Debian's packages if missing, and builds the release
# library if target/release/libmemalloc.so does not exist (MEMALLOC_LIB=path
# measures another build).  Each run is classified:
#   detected: MSG           killed by SIGABRT after writing a message on stderr
#                           that names the bug (see names_bug)
#   aborted, misnamed: MSG  the same, but the message names another problem
#   reported, went on: MSG  wrote a message on stderr but exited 0
#   abort, no message       SIGABRT with nothing on stderr
#   crash (SIGSEGV)         killed by another signal: the bug was not diagnosed
#   silent                  exited 0 with nothing on stderr
#   hang                    still running after 20 s
# Addresses in messages are shown as 0x….  Every case runs --reps times
# (default 3); if the runs disagree (ASLR can change what a wild pointer
# reads), every outcome seen is listed with its count.
# Counts of "detected" are given for the 10 basic cases of issue 4.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT" || exit 2
OUT_MD="$ROOT/results/misuse.md"
reps=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) reps="$2"; shift ;;
        --out) OUT_MD="$2"; shift ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "misuse_table.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

LIBDIR=/usr/lib/x86_64-linux-gnu
need=()
[[ -f $LIBDIR/libjemalloc.so.2 ]] || need+=(libjemalloc2)
[[ -f $LIBDIR/libtcmalloc_minimal.so.4 ]] || need+=(libtcmalloc-minimal4)
[[ -f $LIBDIR/libmimalloc.so.2 ]] || need+=(libmimalloc2.0)
if [[ ${#need[@]} -gt 0 ]]; then
    echo "misuse_table.sh: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 || exit 2
fi

LIB=${MEMALLOC_LIB:-$ROOT/target/release/libmemalloc.so}
if [[ ! -f "$LIB" ]]; then
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    cargo build --release >&2 || exit 2
fi
WORK=$ROOT/target/misuse_table
mkdir -p "$WORK" "$(dirname "$OUT_MD")"
# a private copy: a rebuild during the run does not change what is measured
cp "$LIB" "$WORK/libmemalloc.so"
gcc -O2 -g -Wall -Wextra -fno-builtin -pthread -I "$ROOT/include" c_tests/misuse.c \
    -o "$WORK/misuse" -ldl || exit 2
ulimit -c 0

# column name | preload | extra environment
allocators=(
    "glibc||"
    "jemalloc|$LIBDIR/libjemalloc.so.2|"
    "mimalloc|$LIBDIR/libmimalloc.so.2|"
    "tcmalloc|$LIBDIR/libtcmalloc_minimal.so.4|"
    "memalloc|$WORK/libmemalloc.so|"
    "memalloc DEBUG=1|$WORK/libmemalloc.so|MEMALLOC_DEBUG=1"
)
basic=(
    "double-free-small|double free, small block (64 B)"
    "double-free-medium|double free, medium block (20000 B)"
    "double-free-large|double free, mmap'd block (1 MiB)"
    "free-stack|free of a stack address"
    "free-global|free of a global"
    "free-interior-small|free of an interior pointer (64 B block + 32)"
    "free-misaligned|free of a misaligned pointer (block + 8)"
    "realloc-freed|realloc of a freed block"
    "usable-size-freed|malloc_usable_size of a freed block"
    "overflow-into-next-header|header overwritten: 16 B past a 20000 B block, then free it"
)
extra=(
    "free-interior-medium|free of an interior pointer (20000 B block + 4096)"
    "overflow-free-next|header overwritten: overflow, then free the next block"
    "underflow|header overwritten: the 16 B before a block, then free it"
    "uaf-freelist|use after free: free-list link of a 64 B block overwritten (freed before 63 others), then malloc up to 256 times"
    "debug-canary-overflow|1 byte past a 100 B block (in its slack), then free"
    "debug-write-after-free|1 byte written into a freed 100 B block, 3000 frees later"
    "debug-double-free-quarantine|double free, 100 B block, right away"
    "debug-guard-page-overflow|writes running past a 1 MiB block, up to 8 KiB"
)

sig_name() { kill -l "$1" 2>/dev/null || echo "$1"; }

# Words a message must contain (case-insensitive ERE) to name the bug of a
# case; a message without them is "aborted, misnamed", not "detected".
names_bug() {
    local words
    case $1 in
    *double-free*) words='double free|already freed' ;;
    free-*) words='invalid pointer|not the start|misaligned' ;;
    realloc-freed) words='freed|double free' ;;
    usable-size-freed) words='freed' ;;
    overflow-* | underflow) words='overflow|corrupt|invalid next size|header' ;;
    uaf-freelist) words='corrupt|use after free|write after free|free list' ;;
    debug-canary-overflow) words='overflow|canary|corrupt' ;;
    debug-write-after-free) words='after free|modified|corrupt' ;;
    *) words='.' ;;
    esac
    grep -qiE "$words" <<<"$2"
}

# classify PRELOAD ENV CASE -> one outcome line on stdout
run_once() {
    local pre=$1 extra_env=$2 name=$3 rc msg
    local envs=()
    [[ -n "$pre" ]] && envs+=(LD_PRELOAD="$pre")
    [[ -n "$extra_env" ]] && envs+=("$extra_env")
    {
        timeout --kill-after=5 20 env "${envs[@]}" "$WORK/misuse" "$name" \
            >"$WORK/out" 2>"$WORK/err"
        rc=$?
    } 2>/dev/null
    # first stderr line, addresses and source line numbers normalised, pipes
    # escaped for markdown
    msg=$(head -n 1 "$WORK/err" | sed -E 's/0x[0-9a-fA-F]+/0x…/g; s/[[:space:]]+$//; s/\|/\\|/g' | cut -c1-110)
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "hang"
    elif [[ $rc -eq 0 && -s "$WORK/err" ]]; then
        echo "reported, went on: \`$msg\`"
    elif [[ $rc -eq 0 ]] && grep -q '^hijacked' "$WORK/out"; then
        echo "silent; malloc returned the planted address"
    elif [[ $rc -eq 0 ]]; then
        echo "silent"
    elif [[ $rc -eq 134 && -n "$msg" ]] && names_bug "$name" "$msg"; then
        echo "detected: \`$msg\`"
    elif [[ $rc -eq 134 && -n "$msg" ]]; then
        echo "aborted, misnamed: \`$msg\`"
    elif [[ $rc -eq 134 ]]; then
        echo "abort, no message"
    elif [[ $rc -gt 128 ]]; then
        echo "crash (SIG$(sig_name $((rc - 128))))"
    else
        echo "exit status $rc"
    fi
}

# outcome of a case under an allocator, over $reps runs
outcome() {
    local pre=$1 extra_env=$2 name=$3 i
    for ((i = 0; i < reps; i++)); do
        run_once "$pre" "$extra_env" "$name"
    done | sort | uniq -c | sort -rn | awk -v reps="$reps" '
        { n = $1; sub(/^ *[0-9]+ /, ""); out[++k] = $0; cnt[k] = n }
        END {
            if (k == 1) { print out[1]; exit }
            s = ""
            for (i = 1; i <= k; i++) s = s (i > 1 ? "; " : "") out[i] " (" cnt[i] "/" reps ")"
            print "varies: " s
        }'
}

declare -A detected
table_rows() {
    local -n rows=$1
    local count=$2 row name desc a col pre env cell line
    for row in "${rows[@]}"; do
        name=${row%%|*}
        desc=${row#*|}
        line="| \`$name\` | $desc |"
        for a in "${allocators[@]}"; do
            IFS='|' read -r col pre env <<<"$a"
            cell=$(outcome "$pre" "$env" "$name")
            echo "  $name / $col: $cell" >&2
            if [[ $count == 1 && $cell == detected:* ]]; then
                detected[$col]=$((${detected[$col]:-0} + 1))
            fi
            line+=" $cell |"
        done
        echo "$line"
    done
}

header() {
    local a col line="| case | what the program does |" sep="|---|---|"
    for a in "${allocators[@]}"; do
        col=${a%%|*}
        line+=" $col |"
        sep+="---|"
    done
    echo "$line"
    echo "$sep"
}

ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

echo "misuse_table.sh: running ${#basic[@]} + ${#extra[@]} cases x ${#allocators[@]} allocators x $reps" >&2
# not in $(...): the counts in `detected` must survive
table_rows basic 1 >"$WORK/basic_rows"
table_rows extra 0 >"$WORK/extra_rows"

{
    echo "# Heap misuse: what each allocator does"
    echo
    echo "Measured by \`scripts/misuse_table.sh\` on $(date -u +%Y-%m-%d) ($(uname -m), $(nproc) cores):"
    echo "glibc $(ver libc6) (no preload), jemalloc $(ver libjemalloc2), mimalloc $(ver libmimalloc2.0),"
    echo "tcmalloc-minimal $(ver libtcmalloc-minimal4) (Debian packages, default settings, \`LD_PRELOAD\`),"
    echo "memalloc (\`target/release/libmemalloc.so\`, \`LD_PRELOAD\`; the last column with \`MEMALLOC_DEBUG=1\`)."
    echo "Each case is one run of \`c_tests/misuse.c CASE\` (one heap bug, then exit 0), repeated $reps times."
    echo
    echo "- **detected**: killed by SIGABRT after a message on stderr that names the bug"
    echo "  (shown, addresses as 0x…)."
    echo "- **aborted, misnamed**: the same, but the message names another problem (not counted)."
    echo "- **crash (SIGSEGV)**: the process died, but nothing named the bug."
    echo "- **silent**: exit 0, nothing reported: the heap may now be corrupt."
    echo "- **reported, went on**: a message, but the program continued."
    echo
    echo "## The 10 basic cases of issue 4"
    echo
    header
    cat "$WORK/basic_rows"
    line="| **detected** | |"
    for a in "${allocators[@]}"; do
        col=${a%%|*}
        line+=" **${detected[$col]:-0} / ${#basic[@]}** |"
    done
    echo "$line"
    echo
    echo "## More cases"
    echo
    echo "The \`debug-*\` cases are bugs that only memalloc's debug mode (\`MEMALLOC_DEBUG=1\`:"
    echo "canaries, guard pages, quarantine, fill patterns) is meant to see; they are listed"
    echo "for every allocator for comparison. In \`uaf-freelist\`, the first word of a freed"
    echo "block is overwritten with the address of a global: an allocator that trusts"
    echo "its free-list link hands that address out (the program prints what malloc returned)."
    echo
    header
    cat "$WORK/extra_rows"
    echo
    echo "\`c_tests/misuse.sh\` checks memalloc's side of this table on every test run: each"
    echo "case must die by SIGABRT (SIGSEGV for the guard page) with exactly one line"
    echo "\`memalloc: <error> at 0x<address>\`, naming the block the program announced."
} >"$OUT_MD"

echo "misuse_table.sh: wrote $OUT_MD" >&2
for a in "${allocators[@]}"; do
    col=${a%%|*}
    echo "  $col: ${detected[$col]:-0} of ${#basic[@]} basic cases detected" >&2
done
