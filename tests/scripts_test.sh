#!/usr/bin/env bash
# tests/scripts_test.sh — scripts/heapmap, scripts/plot_trace and the
# options of scripts/run.sh, end to end.
#
#   * a small C program allocating a mix of sizes (zones, heap blocks with
#     holes, large blocks) runs under
#     `scripts/run.sh --heapmap X.svg --trace T --stats`: it exits 0 with its
#     own output intact, the statistics summary is on stderr, T has >= 2
#     lines of 4 integers with increasing timestamps, and both SVGs parse
#     as XML (python3 xml.etree) with rects for used, free and zone blocks
#     and a line per trace series;
#   * run.sh: exit status propagated (with and without --trace/--heapmap,
#     killed by a signal), the trace emptied first and written where CMD
#     started even when CMD changes directory, the variables given to CMD
#     only, bad options refused;
#   * heapmap on synthetic dumps (tests/gen_dump.py): the zone variant of
#     the format, 110,000 blocks (time and size bounded), several dumps in
#     one file, --scale log, --min-width, stdin/stdout, an empty or foreign
#     file refused; and on a real dump, one block counted per block line;
#   * plot_trace on synthetic traces: long ones reduced, restarted clocks
#     split into runs, bad lines reported, an empty file refused;
#   * scripts/check_layers.py: passes on the repository, and fails on copies
#     of src/ given an import from a higher layer (a use line, an inline path,
#     a use group, a macro's $crate path; also in a submodule's file), a
#     module its table does not list, or a module in another layer's folder;
#     not on a comment;
#   * scripts/noise_band.py on synthetic bench.csv files: noise, behind, ahead,
#     and a missing subject or file refused; across runs (--across, --history).
#
# Builds the library through run.sh if needed. Keeps the temp dir with
# MEMALLOC_KEEP_TMP=1. Ends with `N passed, M failed`; exit 1 on a failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)"
SCRIPTS="$ROOT/scripts"
RUN="$SCRIPTS/run.sh"
HEAPMAP="$SCRIPTS/heapmap"
PLOT="$SCRIPTS/plot_trace"
SVGCHECK="$HERE/svgcheck.py"
GEN="$HERE/gen_dump.py"

bash "$SCRIPTS/ensure_tools.sh" python3=python3 cc=gcc || {
    echo "scripts_test: the tools it needs could not be installed"
    echo "0 passed, 1 failed"
    exit 1
}

# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"
# count SVG QUERY — the number of QUERY (tag or tag.class) in SVG, or -1.
count() {
    local out
    out="$(python3 "$SVGCHECK" "$1" "$2" 2>/dev/null)" || { echo -1; return; }
    echo "${out#*=}"
}
# at_least N SVG QUERY — SVG has at least N QUERY.
at_least() { [[ "$(count "$2" "$3")" -ge "$1" ]]; }
svg_text() { python3 "$SVGCHECK" "$1" --text 2>/dev/null; }
show() { sed 's/^/    /' "$1" | tail -n "${2:-15}"; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-scripts.XXXXXX")"
if [[ "${MEMALLOC_KEEP_TMP:-0}" == 1 ]]; then
    echo "scripts_test: keeping $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
fi
cd "$TMP" || exit 1

if ! LIB="$("$RUN" --build)"; then
    echo "scripts_test: could not build the library"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "scripts_test: library $LIB"

# ------------------------------------------------------- the program ---
cat >mix.c <<'EOF'
/* A mix of sizes: small (zones), medium (heap blocks, every third freed so
 * that free blocks stay between used ones), large (own mappings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    enum { N = 3000 };
    static char *p[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 16) % 100;
        size_t n = r < 60 ? 16 + (seed >> 8) % 256
                 : r < 95 ? 4096 + (seed >> 4) % 30000
                 : 200000 + (seed >> 4) % 300000;
        p[i] = malloc(n);
        if (!p[i]) return 1;
        memset(p[i], 0x5a, n < 256 ? n : 256);
    }
    for (int i = 0; i < N; i += 3) free(p[i]);
    printf("mix done\n");
    return 0;
}
EOF
if cc -O1 -o mix mix.c >cc.log 2>&1; then
    ok "built the test program"
else
    fail "building the test program"
    show cc.log
fi

# ------------------------------------------- run.sh, all options at once ---
"$RUN" --heapmap heap.svg --trace trace.txt --stats ./mix >out.txt 2>err.txt
rc=$?
check "run.sh --heapmap --trace --stats ./mix exits 0 (got $rc)" test $rc -eq 0
check "CMD's stdout is intact" test "$(cat out.txt)" = "mix done"
if grep -q "memalloc statistics" err.txt && grep -q "in use" err.txt; then
    ok "the statistics summary is on stderr"
else
    fail "no statistics summary on stderr:"
    show err.txt
fi
check "run.sh reports the pictures it drew" \
    bash -c 'grep -q "heapmap: wrote .*heap.svg" err.txt && grep -q "plot_trace: wrote .*trace.txt.svg" err.txt'

# The trace: a `# pid N` line, then >= 2 lines of 4 integers, timestamps
# increasing.
if python3 - trace.txt >trace_check.txt 2>&1 <<'EOF'
import sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines and lines[0].startswith("# pid "), "no '# pid' line first"
rows = [l.split() for l in lines if not l.startswith("#")]
assert len(rows) >= 2, "%d lines" % len(rows)
for r in rows:
    assert len(r) == 4 and all(x.isdigit() for x in r), "bad line %r" % (r,)
ts = [int(r[0]) for r in rows]
assert all(b >= a for a, b in zip(ts, ts[1:])), "timestamps go back"
assert ts[-1] > ts[0], "time does not advance"
assert any(int(r[1]) > 0 for r in rows), "heap_bytes always 0"
assert any(int(r[2]) > 0 for r in rows), "large_bytes always 0 (the program maps large blocks)"
assert any(int(r[3]) > 0 for r in rows), "in_use always 0"
print("%d lines over %d ns" % (len(rows), ts[-1] - ts[0]))
EOF
then
    ok "the trace: $(cat trace_check.txt)"
else
    fail "the trace:"
    show trace_check.txt
    show trace.txt 5
fi

if [[ "$(count heap.svg svg)" == 1 ]]; then
    ok "heap.svg parses as XML with an svg root"
else
    fail "heap.svg does not parse (or is missing)"
fi
check "heap.svg has rects for used blocks ($(count heap.svg rect.used))" at_least 1 heap.svg rect.used
check "heap.svg has rects for free blocks ($(count heap.svg rect.free))" at_least 1 heap.svg rect.free
check "heap.svg has rects for zones ($(count heap.svg rect.zone))" at_least 1 heap.svg rect.zone
check "heap.svg has rects for large blocks ($(count heap.svg rect.large))" at_least 1 heap.svg rect.large
check "heap.svg labels a brk region band, the large band and the legend" \
    bash -c 't="$(python3 "$1" heap.svg --text)"; grep -q "^brk region 0x" <<<"$t" && grep -q "^large blocks" <<<"$t" && grep -q "^free block$" <<<"$t"' _ "$SVGCHECK"
check "heap.svg is titled with the command" bash -c 'python3 "$1" heap.svg --text | grep -q "heap map .* ./mix"' _ "$SVGCHECK"

if [[ "$(count trace.txt.svg svg)" == 1 ]]; then
    ok "trace.txt.svg parses as XML with an svg root"
else
    fail "trace.txt.svg does not parse (or is missing)"
fi
for s in heap large in_use; do
    check "trace.txt.svg draws $s" at_least 1 trace.txt.svg "polyline.$s"
done

# A real dump, kept: heapmap draws one block per block line.
MEMALLOC_DUMP="$TMP/real.dump" LD_PRELOAD="$LIB" ./mix >/dev/null 2>&1
if [[ -s real.dump ]]; then
    nblocks="$(grep -c '^  block ' real.dump)"
    nlarge="$(grep -c '^large block ' real.dump)"
    "$HEAPMAP" real.dump real.svg 2>hm.txt
    rc=$?
    check "heapmap real.dump exits 0" test $rc -eq 0
    check "heapmap counts the $nblocks blocks and $nlarge large blocks of the dump" \
        grep -q ", $nblocks blocks, $nlarge large blocks)" hm.txt
    if grep -q "warning" hm.txt; then
        fail "heapmap found the library's dump inconsistent:"
        show hm.txt
    else
        ok "the library's dump is self-consistent (blocks adjacent, tlsf totals match)"
    fi
else
    fail "MEMALLOC_DUMP=FILE wrote no dump"
fi

# ----------------------------------------------------- run.sh behaviour ---
"$RUN" --trace t2.txt sh -c 'exit 7' >/dev/null 2>&1
check "run.sh --trace propagates CMD's exit status (7, got $?)" test $? -eq 7
"$RUN" --heapmap h2.svg sh -c 'exit 3' >/dev/null 2>&1
rc=$?
check "run.sh --heapmap propagates CMD's exit status (3, got $rc)" test $rc -eq 3
"$RUN" sh -c 'exit 5' >/dev/null 2>&1
rc=$?
check "run.sh without options propagates CMD's exit status (5, got $rc)" test $rc -eq 5
"$RUN" --heapmap h3.svg sh -c 'kill -TERM $$' >/dev/null 2>h3.err
rc=$?
check "run.sh --heapmap: CMD killed by SIGTERM gives 143 (got $rc)" test $rc -eq 143
check "run.sh --heapmap: says why there is no heap map" grep -q "no heap dump was written" h3.err
check "run.sh --stats alone (exec'd) prints the summary" \
    bash -c '"$1" --stats true 2>&1 >/dev/null | grep -q "memalloc statistics"' _ "$RUN"
# coreutils close stdout and stderr in an atexit handler that runs before the
# library's: the summary goes to the copy of stderr the library kept.
check "run.sh --stats ls: the summary survives ls closing its stderr" \
    bash -c '"$1" --stats ls / 2>&1 >/dev/null | grep -q "memalloc statistics"' _ "$RUN"

printf 'stale line\n1 2 3 4\n' >t3.txt
env_out="$("$RUN" --trace t3.txt sh -c 'echo "$LD_PRELOAD|$MEMALLOC_TRACE"' 2>/dev/null)"
check "CMD gets LD_PRELOAD and MEMALLOC_TRACE ($env_out)" \
    test "$env_out" = "$LIB${LD_PRELOAD:+:$LD_PRELOAD}|$TMP/t3.txt"
check "run.sh empties the trace file first" bash -c '! grep -q "stale line" t3.txt && [[ -s t3.txt ]]'
check "one process: the trace's clock never goes back" \
    awk 'NR > 1 && $1 < p { exit 1 } { p = $1 }' t3.txt

mkdir -p sub
(cd sub && "$RUN" --trace rel.txt sh -c 'cd / && ls >/dev/null' >/dev/null 2>&1)
check "a relative --trace path is where run.sh started, though CMD changes directory" \
    test -s sub/rel.txt -a -s sub/rel.txt.svg
"$RUN" --bogus true >/dev/null 2>&1
check "run.sh refuses an unknown option (exit 2)" test $? -eq 2
"$RUN" --trace >/dev/null 2>&1
check "run.sh refuses --trace without a file (exit 2)" test $? -eq 2
check "run.sh --help names the new options" \
    bash -c '"$1" --help 2>&1 | grep -q -- "--heapmap OUT.svg" && "$1" --help 2>&1 | grep -q -- "--trace FILE" && "$1" --help 2>&1 | grep -q -- "--stats"' _ "$RUN"
check "run.sh -- CMD: -- ends the options" bash -c '"$1" -- sh -c "exit 0"' _ "$RUN"

# ------------------------------------------------ heapmap, synthetic ---
python3 "$GEN" 300 >syn.txt
"$HEAPMAP" syn.txt 2>syn.err
check "heapmap DUMP writes DUMP.svg" test -s syn.txt.svg
check "heapmap: the zone variant gives zone rects ($(count syn.txt.svg rect.zone))" at_least 10 syn.txt.svg rect.zone
check "heapmap: both regions, the zone classes and the TLSF bitmaps are labelled" \
    bash -c 't="$(python3 "$1" syn.txt.svg --text)"; grep -q "^brk region" <<<"$t" && grep -q "^mmap region" <<<"$t" && grep -q "^zones by size class" <<<"$t" && grep -q "^TLSF index" <<<"$t"' _ "$SVGCHECK"
check "heapmap: no warning on a consistent dump" bash -c '! grep -q warning syn.err'

"$HEAPMAP" --scale log syn.txt log.svg 2>/dev/null
check "heapmap --scale log gives a valid SVG" at_least 1 log.svg rect.used
"$HEAPMAP" --min-width 2 syn.txt mw.svg 2>/dev/null
blocks=$(grep -c '^  block' syn.txt)
drawn=$(($(count mw.svg rect.used) + $(count mw.svg rect.free) + $(count mw.svg rect.zone)))
check "heapmap --min-width 2 draws every one of the $blocks blocks (rects: $drawn)" test "$drawn" -ge "$blocks"
"$HEAPMAP" - - <syn.txt >stdout.svg 2>/dev/null
check "heapmap - - reads stdin, writes stdout" at_least 1 stdout.svg rect.free

{ python3 "$GEN" 20 1; python3 "$GEN" 20 2 | sed 's/0x55d0c/0x66d0c/'; } >two.txt
"$HEAPMAP" two.txt two.svg 2>two.err
check "heapmap: of several dumps in a file, draws the last" \
    bash -c 'python3 "$1" two.svg --text | grep -q "region 0x66d0c" && grep -q "holds 2 dumps" two.err' _ "$SVGCHECK"
"$HEAPMAP" --index 1 two.txt one.svg 2>/dev/null
check "heapmap --index 1 draws the first" bash -c 'python3 "$1" one.svg --text | grep -q "region 0x55d0c"' _ "$SVGCHECK"

sed 's/size 4112 free/size 4096 free/' syn.txt >bad.txt
"$HEAPMAP" bad.txt bad.svg 2>bad.err
check "heapmap warns when blocks are not adjacent or tlsf totals disagree" grep -q "warning" bad.err

: >empty.txt
"$HEAPMAP" empty.txt 2>/dev/null
check "heapmap refuses an empty file (exit 1)" test $? -eq 1
printf 'hello\nworld\n' >foreign.txt
"$HEAPMAP" foreign.txt 2>/dev/null
check "heapmap refuses a file with no dump (exit 1)" test $? -eq 1

python3 "$GEN" 100000 >big.txt
t0=$(date +%s.%N)
timeout 120 "$HEAPMAP" big.txt big.svg 2>/dev/null
rc=$?
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
size=$(stat -c %s big.svg 2>/dev/null || echo 0)
check "heapmap: 110,000 blocks in ${secs}s (exit $rc)" test $rc -eq 0
check "heapmap: 110,000 blocks give a reasonable SVG ($((size / 1024)) KiB < 8 MiB)" \
    test "$size" -gt 0 -a "$size" -lt $((8 << 20))
check "heapmap: 110,000 blocks still parse, with merged columns ($(count big.svg rect) rects)" \
    bash -c 'n=$(python3 "$1" big.svg rect | cut -d= -f2); [[ $n -gt 1000 && $n -lt 200000 ]]' _ "$SVGCHECK"

# -------------------------------------------- plot_trace, synthetic ---
python3 - >long.txt <<'EOF'
import math
for i in range(200000):
    h = 1 << 20 + (i // 20000)
    print(i * 1000, h, (i % 5000) * 4096, int(h * 0.6 + 100000 * math.sin(i / 500.0)))
EOF
"$PLOT" long.txt 2>long.err
check "plot_trace TRACE writes TRACE.svg" test -s long.txt.svg
check "plot_trace reduces 200,000 samples to at most ~4 points a pixel column" \
    bash -c 'python3 - <<"PY"
import xml.etree.ElementTree as ET
r = ET.parse("long.txt.svg").getroot()
ns = "{http://www.w3.org/2000/svg}"
w = float(r.get("width"))
for p in r.iter(ns + "polyline"):
    n = len(p.get("points").split())
    assert 2 <= n <= 4 * 2 * w, n
PY'
printf '100 10 0 5\n200 20 0 6\n50 10 0 5\n150 30 0 7\n' >runs.txt
"$PLOT" runs.txt 2>runs.err
check "plot_trace: a clock that goes back starts a second run" \
    bash -c 'grep -q "2 runs" runs.err && [[ $(python3 "$1" runs.txt.svg polyline.heap | cut -d= -f2) -eq 2 ]]' _ "$SVGCHECK"
printf '# comment\n100 10 0 5\nnot a sample\n200 20 0 6\n' >badt.txt
"$PLOT" badt.txt 2>badt.err
check "plot_trace: skips comments, reports bad lines" \
    bash -c 'grep -q "1 line is not" badt.err && [[ -s badt.txt.svg ]]'
printf '100 10 0 5\n' >one.txt
"$PLOT" one.txt 2>/dev/null
check "plot_trace: one sample still gives a picture" at_least 1 one.txt.svg circle
"$PLOT" empty.txt 2>/dev/null
check "plot_trace refuses an empty file (exit 1)" test $? -eq 1

# ------------------------------------------------------- check_layers ---
LAYERS="$SCRIPTS/check_layers.py"
python3 "$LAYERS" "$ROOT" >layers.out 2>&1
check "check_layers: every module of the repository uses only lower layers" test $? -eq 0
# layer_case DESC MODULE LINE EXPECT — on a fresh copy of src/, append LINE to
# MODULE's file; check_layers must exit EXPECT (0 or 1), and on a failure name
# the module.
layer_case() {
    local desc="$1" module="$2" line="$3" expect="$4" path rc
    rm -rf lc && mkdir lc && cp -r "$ROOT/src" lc/ || return 1
    # The module's file: its #[path] in lib.rs, else src/MODULE.rs.
    path="$(grep -B1 -E "^pub mod $module;" lc/src/lib.rs | sed -n 's/.*path *= *"\([^"]*\)".*/\1/p')"
    printf '\n%s\n' "$line" >>"lc/src/${path:-$module.rs}"
    python3 "$LAYERS" lc >lc.out 2>&1
    rc=$?
    if [[ $rc -eq $expect ]] && { [[ $expect -eq 0 ]] || grep -q "\`$module\` uses" lc.out; }; then
        ok "check_layers: $desc (exit $rc)"
    else
        fail "check_layers: $desc (exit $rc, expected $expect)"
        show lc.out
    fi
}
layer_case "the heap importing the small layer fails" heap 'use crate::cache::SMALL_MAX;' 1
layer_case "os calling the heap by an inline path fails" os 'pub fn bad() -> usize { crate::heap::in_use_hint() }' 1
layer_case "tlsf importing large (later in its layer) in a use group fails" tlsf 'use crate::{chunk::ALIGN, large::alloc};' 1
layer_case "events reaching stats from a macro fails" events 'macro_rules! bad { () => { $crate::stats::stats() }; }' 1
layer_case "a use in a comment is no use" os '// use crate::export::alloc;' 0
rm -rf lc && mkdir lc && cp -r "$ROOT/src" lc/
printf '\nuse crate::stats::stats;\n' >>lc/src/small/cache/slow.rs
python3 "$LAYERS" lc >lc.out 2>&1
check "check_layers: a submodule's file (src/small/cache/slow.rs) using a higher layer fails" \
    bash -c '[[ $1 -eq 1 ]] && grep -q "src/small/cache/slow.rs:[0-9]*: .cache. uses .stats." lc.out' _ $?
rm -rf lc && mkdir lc && cp -r "$ROOT/src" lc/
printf 'pub mod extra;\n' >>lc/src/lib.rs
: >lc/src/extra.rs
python3 "$LAYERS" lc >lc.out 2>&1
check "check_layers: a module its table does not list fails" \
    bash -c '[[ $1 -eq 1 ]] && grep -q "module .extra., which LAYERS" lc.out' _ $?
rm -rf lc && mkdir lc && cp -r "$ROOT/src" lc/
mv lc/src/sys/events.rs lc/src/heap/events.rs
sed -i 's|"sys/events.rs"|"heap/events.rs"|' lc/src/lib.rs
python3 "$LAYERS" lc >lc.out 2>&1
check "check_layers: a module in another layer's folder fails" \
    bash -c '[[ $1 -eq 1 ]] && grep -q "module .events. of layer .sys. belongs in src/sys/events.rs" lc.out' _ $?

# ------------------------------------------------------- noise_band ---
# Synthetic bench.csv files: the allocators alike (memalloc slowest by the
# medians, by chance), memalloc 1.5 times the fastest with a tight spread,
# and memalloc the fastest.
NB="$SCRIPTS/noise_band.py"
nb_csv() { # FILE MEMALLOC_RUNS — glibc and tcmalloc runs fixed, memalloc given
    {
        echo "workload,allocator,median_s,median_rss_kb,times_s,rss_kb,median_cpu_s,cpu_s,status,failed_runs,figure,unit"
        echo "w,glibc,0.30,1,0.25 0.38 0.30 0.34 0.27,1 1 1 1 1,0.30,0.25 0.38 0.30 0.34 0.27,ok,0,1,x"
        echo "w,tcmalloc,0.29,1,0.36 0.26 0.29 0.24 0.33,1 1 1 1 1,0.29,0.36 0.26 0.29 0.24 0.33,ok,0,1,x"
        echo "w,memalloc,0,1,$2,1 1 1 1 1,0,$2,ok,0,1,x"
    } >"$1"
}
nb_csv alike.csv "0.27 0.31 0.37 0.26 0.32"
python3 "$NB" alike.csv >alike.out 2>&1
check "noise_band: allocators alike, memalloc slowest by 1.07: noise" \
    grep -q '^| w | 1.07 | .* | noise |$' alike.out
nb_csv behind.csv "0.44 0.43 0.45 0.44 0.43"
python3 "$NB" behind.csv >behind.out 2>&1
check "noise_band: memalloc 1.5 times the fastest, tight: behind (p 0)" \
    grep -q '^| w | 1.52 | .* | 0.000 | behind |$' behind.out
nb_csv ahead.csv "0.20 0.21 0.19 0.20 0.22"
python3 "$NB" --metric wall ahead.csv >ahead.out 2>&1
check "noise_band: memalloc ahead: no verdict" grep -q '^| w | 0.69 | .* |  |$' ahead.out
python3 "$NB" --subject jemalloc alike.csv >/dev/null 2>&1
check "noise_band: a subject with no runs is refused (exit 1)" test $? -eq 1
python3 "$NB" "$TMP/none.csv" >/dev/null 2>&1
check "noise_band: a missing file is refused (exit 1)" test $? -eq 1
# --across: six full runs of one repetition each. Workload w: memalloc 1.1
# times tcmalloc in every run (behind: 6 of 6, p 1/64); v: slower in 4 of
# 6 (noise: p 22/64); u: memalloc the fastest (no verdict).
nb_run() { # FILE V_MEMALLOC
    {
        echo "workload,allocator,median_s,median_rss_kb,times_s,rss_kb,median_cpu_s,cpu_s,status,failed_runs,figure,unit"
        for w in w v u; do
            m=0.33
            [[ $w == v ]] && m=$2
            [[ $w == u ]] && m=0.20
            echo "$w,glibc,0.40,1,0.40,1,0.40,0.40,ok,0,1,x"
            echo "$w,tcmalloc,0.30,1,0.30,1,0.30,0.30,ok,0,1,x"
            echo "$w,memalloc,$m,1,$m,1,$m,$m,ok,0,1,x"
        done
    } >"$1"
}
for i in 1 2 3 4 5 6; do nb_run "run$i.csv" "$([[ $i -le 4 ]] && echo 0.33 || echo 0.27)"; done
python3 "$NB" --across run1.csv run2.csv run3.csv run4.csv run5.csv run6.csv >across.out 2>&1
check "noise_band --across: slower in every run: behind" \
    grep -q '^| w | 6 | 1.33 (0) | 0.91 (6) | 1.10 (0) | tcmalloc | 6 of 6 | 0.016 | behind |$' across.out
check "noise_band --across: slower in 4 runs of 6: noise" \
    grep -q '^| v | 6 | .* | tcmalloc | 4 of 6 | 0.344 | noise |$' across.out
check "noise_band --across: the fastest: no verdict" \
    grep -q '^| u | 6 | .* | 0.67 (6) | tcmalloc | 0 of 6 | 1.000 |  |$' across.out
# --history: three of the runs (each differs from the one before) as commits of
# one file in a scratch repository
mkdir -p nbgit && (
    cd nbgit && git init -q . && for i in 1 5 2; do
        cp "../run$i.csv" bench.csv && git add bench.csv &&
            git -c user.name=t -c user.email=t@t commit -q -m "run $i"
    done
) && (cd nbgit && python3 "$NB" --history 3 bench.csv) >history.out 2>&1
check "noise_band --history: the last 3 committed versions" \
    grep -q '^| w | 3 | .* | tcmalloc | 3 of 3 | 0.125 | noise |$' history.out

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
