#!/usr/bin/env python3
"""bench/prof_overhead.py -- what the heap profiler costs (scripts/prof_overhead.sh).

    prof_overhead.py --bin DIR --lib LIB.so --results DIR --tmp DIR [--reps N] [--quick]
                     [--only W,..] [--python PY] [--command TEXT]

Runs bench.py's workload suite under the same library twice per repetition,
with MEMALLOC_PROF unset and with MEMALLOC_PROF=1 (default rate, 512 KiB),
alternating (the order flips every repetition), and reports the medians of
wall time and of CPU time (user + system), their ratios per workload, the
ratio of the least CPU time of each mode (the load of a shared machine only
adds to it) and the geometric means -> results/prof_overhead.md and
results/prof_overhead.csv. Also the instructions per malloc+free pair
under callgrind (bench/pair, 32 bytes) off and on, when valgrind is there.
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def pair_instructions(args, env_extra):
    if not shutil.which("valgrind"):
        return None
    counts = []
    for n in (1000000, 2000000):
        out = os.path.join(args.tmp, "cg.%d" % n)
        env = dict(os.environ, LD_PRELOAD=args.lib, **env_extra)
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                        os.path.join(args.bin, "pair"), str(n), "32"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        with open(out) as f:
            total = next(int(l.split()[1]) for l in f if l.startswith("summary:"))
        counts.append(total)
        os.unlink(out)
    return (counts[1] - counts[0]) / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--sort", default="sort")
    ap.add_argument("--command", default="")
    ap.add_argument("--lib-info", default="")
    args = ap.parse_args()
    args.bench_dir = os.path.dirname(os.path.abspath(__file__))
    bench.RUN_BIN[0] = args.bin
    bench.RUN_TMP[0] = args.tmp
    prof_out = os.path.join(args.tmp, "prof")
    os.makedirs(prof_out, exist_ok=True)
    args.sort_data = None
    wl = bench.workloads(args)
    bench.prepare_data(args, {n for n, _, _ in wl})
    wl = bench.workloads(args)
    modes = [("off", {}), ("on", {"MEMALLOC_PROF": "1", "MEMALLOC_PROF_OUT": os.path.join(prof_out, "p")})]
    times = {(w, m): [] for w, _, _ in wl for m, _ in modes}
    cpus = {(w, m): [] for w, _, _ in wl for m, _ in modes}
    fails = []
    for rep in range(args.reps):
        order = modes if rep % 2 == 0 else modes[::-1]
        for name, argv, env in wl:
            for m, extra in order:
                e = dict(env, **extra)
                r = bench.run_once(argv, args.lib, e, 120.0)
                if r.ok:
                    times[(name, m)].append(r.time)
                    cpus[(name, m)].append(r.cpu)
                else:
                    fails.append("%s (%s): %s" % (name, m, r.status))
                for f in os.listdir(prof_out):
                    os.unlink(os.path.join(prof_out, f))
            bench.log("prof_overhead: rep %d %s off %.3f on %.3f (CPU %.3f %.3f)" % (
                rep + 1, name, times[(name, "off")][-1] if times[(name, "off")] else 0,
                times[(name, "on")][-1] if times[(name, "on")] else 0,
                cpus[(name, "off")][-1] if cpus[(name, "off")] else 0,
                cpus[(name, "on")][-1] if cpus[(name, "on")] else 0))
    rows = []
    for name, _, _ in wl:
        off, on = times[(name, "off")], times[(name, "on")]
        coff, con = cpus[(name, "off")], cpus[(name, "on")]
        if off and on:
            mo, mn = statistics.median(off), statistics.median(on)
            spread = (max(off) - min(off)) / mo
            co, cn = statistics.median(coff), statistics.median(con)
            cspread = (max(coff) - min(coff)) / co if co > 0 else 0.0
            # The least CPU time of each mode: what the load adds (other
            # processes' cache and memory traffic, a busier core) only adds.
            best = min(con) / min(coff) if min(coff) > 0 else float("nan")
            rows.append((name, mo, mn, mn / mo, spread, co, cn, cn / co if co > 0 else float("nan"), cspread,
                         best))
    gm = bench.geomean([r[3] for r in rows]) if rows else float("nan")
    cgm = bench.geomean([r[7] for r in rows]) if rows else float("nan")
    bgm = bench.geomean([r[9] for r in rows]) if rows else float("nan")
    pair_off = pair_instructions(args, {})
    pair_on = pair_instructions(args, {"MEMALLOC_PROF": "1", "MEMALLOC_PROF_OUT": os.path.join(prof_out, "p")})
    os.makedirs(args.results, exist_ok=True)
    md = ["# memalloc: the heap profiler's cost", ""]
    md.append("- Date: %s UTC" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"))
    if args.command:
        md.append("- Command: `%s`" % args.command)
    if args.lib_info:
        md.append("- memalloc: %s" % args.lib_info)
    md.append("- Repetitions: %d%s; off and on alternate within each repetition, the order flips between "
              "repetitions; figures are medians of wall time and of CPU time (user + system, all threads), "
              "in seconds" % (args.reps, " (quick mode)" if args.quick else ""))
    md.append("- Load average at the start: %s (the machine is shared; wall time waits for the processors, "
              "CPU time does not)" % " ".join("%.1f" % x for x in os.getloadavg()))
    md.append("- on: `MEMALLOC_PROF=1` at the default rate (one sample per 512 KiB allocated, on average); "
              "off: the same library without it")
    md.append("")
    md.append("| workload | wall off | wall on | on ÷ off | spread (off) | CPU off | CPU on | on ÷ off | spread (off) "
              "| least CPU on ÷ least off |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mo, mn, ratio, spread, co, cn, cratio, cspread, best in rows:
        md.append("| %s | %.3f | %.3f | %.2f | %.0f%% | %.3f | %.3f | %.2f | %.0f%% | %.2f |" % (
            name, mo, mn, ratio, 100 * spread, co, cn, cratio, 100 * cspread, best))
    md.append("| **geometric mean** | | | **%.2f** | | | | **%.2f** | | **%.2f** |" % (gm, cgm, bgm))
    md.append("")
    if pair_off is not None:
        md.append("Instructions per malloc + free pair (bench/pair, 32 bytes, callgrind): "
                  "off **%.1f**, on **%.1f**." % (pair_off, pair_on))
        md.append("")
    md.append("*spread*: (max − min) ÷ median of the off runs: differences below it are noise of this shared machine.")
    md.append("The instructions, which the load does not change: `results/prof_callgrind.md` (`scripts/prof_callgrind.sh`).")
    if fails:
        md.append("")
        md.append("Failed runs: " + "; ".join(fails))
    with open(os.path.join(args.results, "prof_overhead.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(args.results, "prof_overhead.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "mode", "rep", "seconds", "cpu_seconds"])
        for name, _, _ in wl:
            for m, _ in modes:
                for i, t in enumerate(times[(name, m)]):
                    w.writerow([name, m, i + 1, "%.4f" % t, "%.4f" % cpus[(name, m)][i]])
        if pair_off is not None:
            w.writerow(["pair-instructions", "off", "", "%.1f" % pair_off])
            w.writerow(["pair-instructions", "on", "", "%.1f" % pair_on])
    print("\n".join(md))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
