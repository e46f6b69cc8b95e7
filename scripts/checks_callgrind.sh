#!/usr/bin/env bash
# scripts/checks_callgrind.sh - what memalloc's default integrity checks cost,
# in instructions, cache misses and mispredicted branches (load-independent).
#
#   scripts/checks_callgrind.sh [--no-build] [--scale F] [--base DIR] [--out FILE]
#
# The same two builds as scripts/checks_cost.sh (checked: cargo build
# --release; unchecked: --features unchecked --target-dir target/unchecked),
# and the same workloads, each run once per library under
#   valgrind --tool=callgrind --fair-sched=yes --cache-sim=yes --branch-sim=yes
# with its operation counts divided by F (default 40: a twentieth of
# checks_cost.sh's runs; F scales every figure alike, not the ratios).
# Per workload: instructions (Ir), D1 misses (reads + writes), last-level
# misses, mispredicted branches (conditional + indirect), checked vs
# unchecked, and the checks' cost in instructions; the geometric mean of the
# Ir ratios. Deterministic for the one-thread workloads; the threaded ones
# vary by a few tenths of a percent with valgrind's scheduling.
#
# What it cannot see: valgrind runs one thread at a time on one simulated
# cache, so a line that moves between cores (a remote free's header read) is
# no miss here. Where checked and unchecked touch the same lines (the same
# misses, a read counted where the other build's first access is a write)
# the checks cost instructions only.
#
# --base DIR: also the two builds of the worktree DIR (another commit; built
# there unless --no-build), and the cost there next to this one's.
# Writes results/checks_callgrind.md (--out FILE elsewhere); raw figures in
# target/checks_callgrind/. Takes about 10 minutes (20 with --base).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT" || exit 2
build=1 scale=40 base="" out_md="$ROOT/results/checks_callgrind.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --scale) scale="$2"; shift ;;
        --base) base="$(cd "$2" && pwd -P)" || exit 2; shift ;;
        --out) out_md="$2"; shift ;;
        -h | --help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "checks_callgrind.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
say() { echo "checks_callgrind.sh: $*" >&2; }
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v valgrind >/dev/null 2>&1 || { say "valgrind not found"; exit 2; }

W=$ROOT/target/checks_callgrind
BIN=$W/bin
mkdir -p "$BIN" "$W/out" "$(dirname "$out_md")"
trees=("$ROOT")
[[ -n $base ]] && trees+=("$base")
labels=()
for t in "${trees[@]}"; do
    tag=head
    [[ $t != "$ROOT" ]] && tag=base
    if [[ $build == 1 ]]; then
        say "building $t (checked, unchecked)"
        (cd "$t" && cargo build --release >&2 && cargo build --release --features unchecked --target-dir target/unchecked >&2) || exit 2
    fi
    cp "$t/target/release/libmemalloc.so" "$W/lib-$tag-checked.so" || exit 2
    cp "$t/target/unchecked/release/libmemalloc.so" "$W/lib-$tag-unchecked.so" || exit 2
    echo "$tag $(git -C "$t" rev-parse --short HEAD) $(git -C "$t" status --porcelain -- src Cargo.toml | wc -l)" >"$W/rev-$tag"
    labels+=("$tag-checked" "$tag-unchecked")
done

for p in fixed churn larson xmalloc threads32 realloc large mthreads mchurn; do
    gcc -O2 -g -pthread -Wall -I bench "bench/$p.c" -o "$BIN/$p" -lm || exit 2
done

div() { awk -v a="$1" -v f="$scale" 'BEGIN { n = a / f; printf "%d", n < 1 ? 1 : n }'; }
# (checks_cost.sh's list and counts; that script divides them by 2.)
# shellcheck source=checks_workloads.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks_workloads.sh"

csv=$W/callgrind.csv
echo "workload,lib,Ir,D1mr,D1mw,DLmr,DLmw,Bcm,Bim" >"$csv"
total=$((${#workloads[@]} * ${#labels[@]}))
k=0
for wl in "${workloads[@]}"; do
    name=${wl%%|*}
    read -r -a argv <<<"${wl#*|}"
    for lab in "${labels[@]}"; do
        k=$((k + 1))
        printf '\r  %d/%d %-14s %-16s' "$k" "$total" "$name" "$lab" >&2
        o=$W/out/$name.$lab.cg
        LD_PRELOAD=$W/lib-$lab.so valgrind --tool=callgrind --fair-sched=yes --cache-sim=yes \
            --branch-sim=yes --callgrind-out-file="$o" "$BIN/${argv[0]}" "${argv[@]:1}" \
            >/dev/null 2>"$W/out/$name.$lab.err" || {
            echo >&2
            say "$name under $lab failed: $(tail -3 "$W/out/$name.$lab.err")"
            exit 1
        }
        python3 - "$o" "$name" "$lab" >>"$csv" <<'PY'
import sys
f, name, lab = sys.argv[1:4]
ev = tot = None
for line in open(f):
    if line.startswith("events:"):
        ev = line.split()[1:]
    elif line.startswith(("summary:", "totals:")) and tot is None:
        tot = [int(x) for x in line.split()[1:]]
d = dict(zip(ev, tot))
print(",".join([name, lab] + [str(d.get(e, 0)) for e in ("Ir", "D1mr", "D1mw", "DLmr", "DLmw", "Bcm", "Bim")]))
PY
    done
done
echo >&2

python3 - "$csv" "$out_md" "$W" "$scale" <<'PY'
import csv, math, sys, datetime, os
runs, out, w, scale = sys.argv[1:5]
d, order = {}, []
for r in csv.DictReader(open(runs)):
    if r["workload"] not in order:
        order.append(r["workload"])
    d[(r["workload"], r["lib"])] = {k: int(v) for k, v in r.items() if k not in ("workload", "lib")}
revs = {}
for tag in ("head", "base"):
    p = os.path.join(w, "rev-" + tag)
    if os.path.exists(p):
        t, rev, dirty = open(p).read().split()
        revs[tag] = rev + (" (with uncommitted changes in src/)" if int(dirty) else "")
def m(x):
    return "%.2fM" % (x / 1e6)
def pct(a, b):
    return (a / b - 1) * 100 if b else 0.0
md = ["# The default checks in instructions and misses (callgrind)", ""]
md.append("Measured by `scripts/checks_callgrind.sh` on %s; source at commit %s%s. Counts divided by %s "
          "(each workload runs a %s of its `scripts/checks_cost.sh` size)." % (
              datetime.date.today().isoformat(), revs.get("head", "?"),
              ("; *base*: commit %s" % revs["base"]) if "base" in revs else "", scale,
              "1/%g" % (float(scale) / 2)))
md.append("")
md.append("Per workload, the checked library against the unchecked one (`--features unchecked`): "
          "instructions (Ir), D1 misses (reads + writes), last-level misses, mispredicted branches "
          "(conditional + indirect), from one run of each under `valgrind --tool=callgrind "
          "--fair-sched=yes --cache-sim=yes --branch-sim=yes`. *cost* = checked / unchecked - 1. "
          "Valgrind runs one thread at a time on one simulated cache: a line moving between cores "
          "is not seen.")
md.append("")
tags = ["head"] + (["base"] if "base" in revs else [])
hdr = "| workload | Ir checked | Ir unchecked | Ir cost | D1 misses c / u | LL misses c / u | mispredicts c / u |"
sep = "|---|---|---|---|---|---|---|"
if "base" in revs:
    hdr += " Ir cost at base | D1 misses c / u at base |"
    sep += "---|---|"
md += [hdr, sep]
logs = {t: [] for t in tags}
for wl in order:
    row = []
    for t in tags:
        c, u = d.get((wl, t + "-checked")), d.get((wl, t + "-unchecked"))
        if not c or not u:
            row.append(None)
            continue
        logs[t].append(math.log(c["Ir"] / u["Ir"]))
        row.append((c, u))
    if row[0] is None:
        continue
    c, u = row[0]
    line = "| %s | %s | %s | **%+.1f%%** | %d / %d | %d / %d | %d / %d |" % (
        wl, m(c["Ir"]), m(u["Ir"]), pct(c["Ir"], u["Ir"]), c["D1mr"] + c["D1mw"], u["D1mr"] + u["D1mw"],
        c["DLmr"] + c["DLmw"], u["DLmr"] + u["DLmw"], c["Bcm"] + c["Bim"], u["Bcm"] + u["Bim"])
    if "base" in revs:
        if row[1] is None:
            line += " | |"
        else:
            bc, bu = row[1]
            line += " %+.1f%% | %d / %d |" % (pct(bc["Ir"], bu["Ir"]), bc["D1mr"] + bc["D1mw"], bu["D1mr"] + bu["D1mw"])
    md.append(line)
geo = {t: (math.exp(sum(v) / len(v)) - 1) * 100 for t, v in logs.items() if v}
line = "| **geometric mean** | | | **%+.1f%%** | | | |" % geo["head"]
if "base" in revs:
    line += " %+.1f%% | |" % geo.get("base", 0.0)
md.append(line)
md.append("")
md.append("Raw figures: `target/checks_callgrind/callgrind.csv`; callgrind's files in "
          "`target/checks_callgrind/out/` (`callgrind_annotate` per function and line).")
open(out, "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
say "wrote $out_md"
