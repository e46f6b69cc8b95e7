#!/usr/bin/env bash
# scripts/checks_cost.sh - what memalloc's default integrity checks cost.
#
#   scripts/checks_cost.sh [--reps N] [--quick] [--no-build] [--out FILE]
#
# Builds the library twice from the same source:
#   checked     cargo build --release                        (the default build)
#   unchecked   cargo build --release --features unchecked --target-dir target/unchecked
#               (the same code with the default checks compiled out:
#               guard::CHECKS = false)
# and copies both into target/checks_cost/ (a rebuild during the run changes
# nothing).  A sanity run first: a double free must be reported by the
# checked library and pass unnoticed under the unchecked one (otherwise the
# feature did not compile the checks out and the comparison means nothing).
#
# Then, with programs built from bench/*.c (gcc -O2 -pthread -Ibench -lm):
#   1. time: every workload below under both libraries (LD_PRELOAD, through
#      bench/runner.c: wall time and user+system CPU time of the process),
#      --reps times (default 15; 3 with --quick), the two libraries
#      alternating and their order swapping from one repetition to the next;
#      medians and minimums per library, ratio checked / unchecked per
#      workload, and the geometric mean of the ratios.  Each run takes about
#      0.5 s (--quick: half that).
#   2. instructions: bench/pair.c under valgrind --tool=callgrind (N = 1e5
#      and 2e5 malloc+free pairs; the difference divided by 1e5 is one pair,
#      start-up cancelled out) for a small, a 4 KiB, a medium (TLSF) and a
#      large (mmap, with MEMALLOC_MMAP_THRESHOLD=128k so that the dynamic
#      threshold does not move it to the heap) size.  Deterministic, unlike
#      time on a shared machine.
# Writes results/checks_cost.md (--out FILE elsewhere) and the raw runs to
# target/checks_cost/runs.csv.  Takes about 7 minutes (--quick: 1).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT" || exit 2
reps=15 quick=0 build=1 out_md="$ROOT/results/checks_cost.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) reps="$2"; shift ;;
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --out) out_md="$2"; shift ;;
        -h | --help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "checks_cost.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $quick == 1 && $reps == 15 ]] && reps=3
say() { echo "checks_cost.sh: $*" >&2; }
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

W=$ROOT/target/checks_cost
BIN=$W/bin
mkdir -p "$BIN" "$(dirname "$out_md")"
if [[ $build == 1 ]]; then
    say "building the checked library"
    cargo build --release >&2 || exit 2
    say "building the unchecked library"
    cargo build --release --features unchecked --target-dir target/unchecked >&2 || exit 2
fi
CHECKED=$W/libmemalloc-checked.so
UNCHECKED=$W/libmemalloc-unchecked.so
cp target/release/libmemalloc.so "$CHECKED" || exit 2
cp target/unchecked/release/libmemalloc.so "$UNCHECKED" || exit 2
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$(git status --porcelain -- src Cargo.toml 2>/dev/null | wc -l)

for p in fixed churn larson xmalloc threads32 realloc large pair runner mchurn mthreads; do
    gcc -O2 -pthread -Wall -I bench "bench/$p.c" -o "$BIN/$p" -lm || exit 2
done
gcc -O2 -g -fno-builtin -pthread -I include c_tests/misuse.c -o "$BIN/misuse" -ldl || exit 2

# ---- sanity: the feature really removes the checks --------------------------
ulimit -c 0
{ LD_PRELOAD=$CHECKED "$BIN/misuse" double-free-small >/dev/null 2>"$W/sanity.err"; rc_c=$?; } 2>/dev/null
{ LD_PRELOAD=$UNCHECKED "$BIN/misuse" double-free-small >/dev/null 2>&1; rc_u=$?; } 2>/dev/null
if [[ $rc_c != 134 || $rc_u != 0 ]]; then
    say "sanity check failed: double free gave status $rc_c (checked, want 134) and $rc_u (unchecked, want 0)"
    exit 1
fi
say "sanity: double free -> $(head -c 60 "$W/sanity.err")... (checked), unnoticed (unchecked)"

# ---- workloads ----------------------------------------------------------------
if [[ $quick == 1 ]]; then f=4; else f=2; fi
div() { awk -v a="$1" -v f="$f" 'BEGIN { printf "%g", a / f }'; }
# shellcheck source=checks_workloads.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks_workloads.sh"

csv=$W/runs.csv
echo "workload,lib,rep,wall,cpu" >"$csv"
total=$((${#workloads[@]} * 2 * reps))
k=0
say "timing ${#workloads[@]} workloads x 2 libraries x $reps repetitions ($total runs)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$SECONDS
for ((rep = 1; rep <= reps; rep++)); do
    for wl in "${workloads[@]}"; do
        name=${wl%%|*}
        read -r -a argv <<<"${wl#*|}"
        if ((rep % 2)); then order=(checked unchecked); else order=(unchecked checked); fi
        for lib in "${order[@]}"; do
            k=$((k + 1))
            path=$CHECKED
            [[ $lib == unchecked ]] && path=$UNCHECKED
            "$BIN/runner" "$W/result" 300 "$path" -- "$BIN/${argv[0]}" "${argv[@]:1}" \
                >"$W/stdout" 2>"$W/stderr"
            line=$(cat "$W/result" 2>/dev/null)
            if [[ $line != exit=0\ signal=0\ timeout=0* ]] || ! grep -q "alloc=libmemalloc-$lib.so" "$W/stdout"; then
                say "run failed: $name under $lib: $line"
                sed 's/^/    /' "$W/stdout" "$W/stderr" | tail -5 >&2
                exit 1
            fi
            wall=$(sed 's/.* time=\([0-9.]*\).*/\1/' <<<"$line")
            cpu=$(sed 's/.* cpu=\([0-9.]*\).*/\1/' <<<"$line")
            echo "$name,$lib,$rep,$wall,$cpu" >>"$csv"
        done
        printf '\r  %d/%d runs' "$k" "$total" >&2
    done
done
echo >&2
t_runs=$((SECONDS - t_start))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- instructions per malloc+free (callgrind) -----------------------------
cg=$W/callgrind.csv
echo "size,lib,ir_per_pair" >"$cg"
if command -v valgrind >/dev/null 2>&1; then
    for size in 32 4096 20000 300000; do
        for lib in checked unchecked; do
            path=$CHECKED
            [[ $lib == unchecked ]] && path=$UNCHECKED
            irs=()
            for n in 100000 200000; do
                o=$W/callgrind.$lib.$size.$n.out
                thr=()
                [[ $size -ge 131072 ]] && thr=(MEMALLOC_MMAP_THRESHOLD=128k)
                env "${thr[@]}" LD_PRELOAD="$path" valgrind --tool=callgrind --callgrind-out-file="$o" \
                    "$BIN/pair" "$n" "$size" 1000 >/dev/null 2>"$W/callgrind.err" || {
                    say "callgrind failed: $(tail -3 "$W/callgrind.err")"
                    exit 1
                }
                irs+=("$(awk '/^(summary|totals):/ { print $2; exit }' "$o")")
            done
            echo "$size,$lib,$(awk -v a="${irs[0]}" -v b="${irs[1]}" 'BEGIN { printf "%.1f", (b - a) / 100000 }')" >>"$cg"
        done
    done
else
    say "valgrind not found: no instruction counts"
fi

# ---- report -------------------------------------------------------------------
python3 - "$csv" "$cg" "$out_md" <<PY
import csv, math, statistics, sys, datetime, platform, os
runs, cg, out = sys.argv[1:4]
wl_order, data = [], {}
for r in csv.DictReader(open(runs)):
    if r["workload"] not in wl_order:
        wl_order.append(r["workload"])
    d = data.setdefault(r["workload"], {}).setdefault(r["lib"], {"wall": [], "cpu": []})
    d["wall"].append(float(r["wall"])); d["cpu"].append(float(r["cpu"]))
def spread(xs):
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m * 100 if m else 0.0
rows, gw, gc, gm = [], [], [], []
for w in wl_order:
    c, u = data[w]["checked"], data[w]["unchecked"]
    mw_c, mw_u = statistics.median(c["wall"]), statistics.median(u["wall"])
    mc_c, mc_u = statistics.median(c["cpu"]), statistics.median(u["cpu"])
    rw, rc = mw_c / mw_u, mc_c / mc_u
    gw.append(math.log(rw)); gc.append(math.log(rc))
    rm = min(c["cpu"]) / min(u["cpu"])
    gm.append(math.log(rm))
    rows.append("| %s | %.3f | %.3f | %+.1f%% | %.3f | %.3f | **%+.1f%%** | %+.1f%% | %.0f%% / %.0f%% |" % (
        w, mw_c, mw_u, (rw - 1) * 100, mc_c, mc_u, (rc - 1) * 100, (rm - 1) * 100,
        max(spread(c["wall"]), spread(u["wall"])), max(spread(c["cpu"]), spread(u["cpu"]))))
geo_w = math.exp(sum(gw) / len(gw)); geo_c = math.exp(sum(gc) / len(gc)); geo_m = math.exp(sum(gm) / len(gm))
cgrows = []
cgd = {}
for r in csv.DictReader(open(cg)):
    cgd.setdefault(int(r["size"]), {})[r["lib"]] = float(r["ir_per_pair"])
names = {32: "small (zone, thread cache)", 4096: "small, largest class", 20000: "medium (TLSF heap)",
         300000: "large (mmap + munmap; MEMALLOC_MMAP_THRESHOLD=128k)"}
for s in sorted(cgd):
    c, u = cgd[s].get("checked"), cgd[s].get("unchecked")
    if c is None or u is None:
        continue
    cgrows.append("| %d B, %s | %.1f | %.1f | %+.1f | %+.1f%% |" % (s, names.get(s, ""), c, u, c - u, (c / u - 1) * 100))
reps = len(next(iter(data.values()))["checked"]["wall"])
md = []
md.append("# The cost of memalloc's default checks")
md.append("")
md.append("Measured by \`scripts/checks_cost.sh\` on %s, %s, %d cores; source at commit %s%s." % (
    datetime.date.today().isoformat(), platform.machine(), os.cpu_count(), "$rev",
    " with uncommitted changes in src/" if int("$dirty") else ""))
md.append("")
md.append("**Geometric mean over %d workloads: CPU time %+.1f%% (medians), %+.1f%% (minimums); wall time "
          "%+.1f%%** (checked vs unchecked; the issue's budget is 3%%)." % (
              len(wl_order), (geo_c - 1) * 100, (geo_m - 1) * 100, (geo_w - 1) * 100))
md.append("")
md.append("## Method")
md.append("")
md.append("- *checked*: \`cargo build --release\` (the default build). *unchecked*: \`cargo build --release "
          "--features unchecked --target-dir target/unchecked\`, the same source with the default checks "
          "compiled out (\`guard::CHECKS = false\`): keyed header tags and the validation of every pointer "
          "passed to free/realloc/malloc_usable_size, the double-free mark and range check of zone blocks, "
          "encoded free-list links, neighbour checks and safe unlinking in the TLSF heap. A sanity run "
          "checks that a double free aborts under *checked* and passes unnoticed under *unchecked*.")
md.append("- Workloads: the programs of \`bench/\` (built with \`gcc -O2 -pthread\`), preloaded, each run "
          "through \`bench/runner.c\` (wall time from fork to reaping, and user+system CPU time from wait4). "
          "%d repetitions; in each, the two libraries run back to back per workload, their order swapping "
          "from one repetition to the next. Figures are medians; cost = checked / unchecked - 1 "
          "(positive = the checks cost time), also from the minimums (the least disturbed run of each). "
          "*spread* = (max - min) / median of the noisier library." % reps)
md.append("- The machine is shared (2 cores; load average %s before the %d s of runs, %s after): other "
          "jobs ran during the measurement, so wall time is noisy; CPU time, which does not count time "
          "spent preempted, is the steadier figure. The instruction counts below do not depend on load." % (
              "$load_before", $t_runs, "$load_after"))
md.append("")
md.append("## Time per workload")
md.append("")
md.append("| workload | wall checked (s) | wall unchecked (s) | wall cost | CPU checked (s) | CPU unchecked (s) | CPU cost (medians) | CPU cost (minimums) | spread wall / CPU |")
md.append("|---|---|---|---|---|---|---|---|---|")
md += rows
md.append("| **geometric mean** | | | %+.1f%% | | | **%+.1f%%** | %+.1f%% | |" % ((geo_w - 1) * 100, (geo_c - 1) * 100, (geo_m - 1) * 100))
md.append("")
md.append("Workloads (arguments in \`scripts/checks_cost.sh\`): \`fixed-N\`: one size, malloc/free with 64 "
          "live (the fast path: zones up to 4 KiB, the TLSF heap for 20000 and 100000 bytes); \`churn\`: "
          "random sizes over 30k live blocks; \`larson\`: 8 threads, cross-thread frees, thread exits; "
          "\`xmalloc\`: 4 producers, 4 consumers; \`threads32\`: 32 threads on 2 cores; \`realloc\`: "
          "growing strings and vectors; \`large\`: 256 KiB-32 MiB blocks (mmap).")
md.append("")
if cgrows:
    md.append("## Instructions per malloc + free (callgrind)")
    md.append("")
    md.append("\`valgrind --tool=callgrind bench/pair N SIZE 1000\` for N = 100000 and 200000; (Ir(200000) - "
              "Ir(100000)) / 100000 = the instructions of one malloc+free pair, start-up and warm-up cancelled out.")
    md.append("")
    md.append("| size | checked | unchecked | difference | cost |")
    md.append("|---|---|---|---|---|")
    md += cgrows
    md.append("")
md.append("Raw runs: \`target/checks_cost/runs.csv\`, \`target/checks_cost/callgrind.csv\`.")
open(out, "w").write("\n".join(md) + "\n")
print("geometric mean: wall %+.1f%%, cpu %+.1f%% (medians), %+.1f%% (minimums)" % ((geo_w - 1) * 100, (geo_c - 1) * 100, (geo_m - 1) * 100))
for r in rows: print(r)
for r in cgrows: print(r)
PY
say "wrote $out_md"
