#!/usr/bin/env bash
# scripts/prof_callgrind.sh LIB.so [LIB.so ...] — the heap profiler's cost in
# instructions (callgrind: immune to the load of a shared machine), each
# library with MEMALLOC_PROF off and on. Prints results/prof_callgrind.md
# (markdown) on stdout:
#   1. whole runs of the bench programs at reduced sizes: instructions off,
#      on, on ÷ off;
#   2. the malloc + free pair (bench/pair, 32 bytes, 8 KiB, 20,000 bytes):
#      instructions per pair, two N, difference ÷ difference of N;
#   3. where a sample's instructions go: the functions of the library that a
#      profiling run of the 20,000-byte pair calls about once per sample or
#      per sampled block's free (500 to 10,000 times in 100,000 pairs, one
#      sample per 26 pairs), with their inclusive instructions per call.
# Needs the bench programs in target/bench (built by scripts/prof_overhead.sh
# or scripts/bench.sh).
set -euo pipefail
ALL_LIBS=("$@")
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
B="$ROOT/target/bench"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-profcg.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
run() { # run LIB PROF OUT PROG ARGS... -> callgrind output file OUT
    local lib=$1 prof=$2 out=$3
    shift 3
    (cd "$TMP" && MEMALLOC_PROF=$prof MEMALLOC_PROF_OUT="$TMP/p" LD_PRELOAD="$lib" \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1)
}
count() { # count LIB PROF PROG ARGS... -> instructions
    local lib=$1 prof=$2
    shift 2
    run "$lib" "$prof" "$TMP/cg.out" "$@"
    awk '/^totals:/ { print $2 }' "$TMP/cg.out"
}
name() { echo "$(basename "$(dirname "$1")")/$(basename "$1")"; }

echo "# memalloc: the heap profiler's cost in instructions"
echo
echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- Command: \`scripts/prof_callgrind.sh$(for l in "$@"; do printf ' %s' "$(name "$l")"; done)\`"
for lib in "$@"; do
    echo "- $(name "$lib"): sha256 $(sha256sum "$lib" | cut -c1-12)"
done
echo "- on: \`MEMALLOC_PROF=1\` at the default rate (512 KiB); off: the same library without it. Each run" \
    "takes its own random sampling points, so the \"on\" counts vary by about 1-2% between runs; the" \
    "threaded rows' \"off\" counts vary too (scheduling under valgrind)."
echo
echo "## Whole runs of the bench programs"
echo
head="| workload |"
rule="|---|"
for lib in "$@"; do
    head="$head $(name "$lib") off | on | on ÷ off |"
    rule="$rule---:|---:|---:|"
done
echo "$head"
echo "$rule"
for w in "fixed 16 2e6" "fixed 64 2e6" "fixed 256 2e6" "fixed 1024 2e6" "fixed 4096 1e6" "churn 1e6 30000" \
    "larson 4 2000 4 40000" "xmalloc 2 2 5e5" "threads32 8 2e5" "mchurn 5e5 10000 50 256k" \
    "mthreads 1 2e5 256 4k 64k u" "mthreads 4 5e4 256 4k 64k u" "xmalloc 2 2 2e5 64 32 64 32k" \
    "bulkfree 2 20 2000 16 16k" "mthreads 1 1e6 1000 1 32k s" "realloc 100 64 64k 48" \
    "mthreads 4 5e4 64 64k 1M u" "mthreads 8 2e4 16 256k 64M s"; do
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

echo
echo "## The malloc + free pair (bench/pair SIZE: 100,000 and 200,000 pairs, difference ÷ 100,000)"
echo
head="| size |"
rule="|---|"
for lib in "${ALL_LIBS[@]}"; do
    head="$head $(name "$lib") off | on | on − off |"
    rule="$rule---:|---:|---:|"
done
echo "$head"
echo "$rule"
for size in 32 8192 20000; do
    echo -n "| $size |"
    for lib in "${ALL_LIBS[@]}"; do
        for prof in 0 1; do
            a=$(count "$lib" $prof "$B/pair" 100000 "$size")
            b=$(count "$lib" $prof "$B/pair" 200000 "$size")
            eval "v$prof=\$(python3 -c \"print('%.1f' % (($b - $a) / 100000))\")"
        done
        echo -n " $v0 | $v1 | $(python3 -c "print('%.1f' % ($v1 - $v0))") |"
    done
    echo
done

echo
echo "## Where a sample's instructions go"
echo
echo "A profiling run of \`bench/pair 100000 20000\` (about 3,900 samples): the functions of the library" \
    "(and libc's \`dl_iterate_phdr\`) called 500 to 10,000 times (about once per sample or per sampled block's free), inclusive" \
    "instructions per call (callgrind's counts, read from its output file). Nested functions are" \
    "counted in their callers too."
for lib in "${ALL_LIBS[@]}"; do
    run "$lib" 1 "$TMP/cg.pair" "$B/pair" 100000 20000
    echo
    echo "$(name "$lib"):"
    echo
    python3 - "$TMP/cg.pair" "$lib" <<'EOF'
import sys, collections, re
path, lib = sys.argv[1], sys.argv[2]
names = {}
def name(kind, rest):
    m = re.match(r"\((\d+)\)(?: (.*))?", rest)
    if not m:
        return rest
    key = (kind, m.group(1))
    if m.group(2) is not None:
        names[key] = m.group(2)
    return names.get(key, rest)
self_cost = collections.Counter()
call_cost = collections.Counter()
calls = collections.Counter()
obj_of = {}
ob = cob = fn = cfn = None
pending = False
for line in open(path):
    line = line.rstrip("\n")
    if not line:
        continue
    if line.startswith("ob="):
        ob = name("ob", line[3:])
    elif line.startswith("cob="):
        cob = name("ob", line[4:])
    elif line.startswith("fn="):
        fn = name("fn", line[3:])
        obj_of[fn] = ob
        cob = None
    elif line.startswith("cfn="):
        cfn = name("fn", line[4:])
        obj_of.setdefault(cfn, cob or ob)
    elif line.startswith("calls="):
        calls[cfn] += int(line[6:].split()[0])
        pending = True
    elif line[0].isdigit() or line[0] in "+-*":
        f = line.split()
        cost = int(f[1]) if len(f) > 1 else 0
        if pending:
            call_cost[fn] += cost
            pending = False
        else:
            self_cost[fn] += cost
rows = []
for f, n in calls.items():
    o = obj_of.get(f) or ""
    # (and the loader's count of unloads, which a walk may read)
    if o.endswith("/" + lib.rsplit("/", 1)[-1]) or o == lib or f == "dl_iterate_phdr":
        if 500 <= n <= 10000:
            rows.append(((self_cost[f] + call_cost[f]) / n, n, f))
print("| function | calls | instructions per call (inclusive) |")
print("|---|---:|---:|")
for per, n, f in sorted(rows, reverse=True):
    print("| `%s` | %d | %.0f |" % (f, n, per))
EOF
done
