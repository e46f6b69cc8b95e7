#!/usr/bin/env python3
"""Runs the Rust workloads under each allocator's binary, alternating, and
writes the table (bench/rust/run.sh builds the binaries and calls this).

Each run prints the workload's own wall time, a checksum and its peak RSS
(VmHWM); the CPU time (user + system) comes from wait4. Every allocator must
give the same checksum for a workload (the same work was done). Per
workload: the median over the repetitions, and the ratio to the fastest
allocator's median; per allocator: the geometric mean of its ratios. Both
wall and CPU time are reported: on a shared machine the CPU time is the
steadier of the two, but only wall time shows what threads wait for.

With --callgrind, each workload also runs under `valgrind --tool=callgrind`
at two small scales; the difference of the two instruction counts, scaled
to a whole run, leaves start-up and exit out. It counts the program's own
work too (the same for every allocator), and it is deterministic: on a
machine shared with other jobs, the times above move by 10-30% from run to
run, the instruction counts do not. An allocator that does not start under
valgrind (snmalloc-rs: it fails to initialise there) gets no figure.
"""
import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time

WORKLOADS = ["hashmap", "btree", "pipeline", "json"]
# The two scales of the callgrind runs.
CG_SCALES = (0.05, 0.15)


def instructions(path, workload, scale):
    """callgrind's total for one run, or None if the run fails."""
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                        path, workload, str(scale)], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    for line in p.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    return None


def instructions_per_run(path, workload):
    """Instructions of a whole run (scale 1) without start-up and exit:
    the difference between the two CG_SCALES, scaled; None if either fails."""
    lo, hi = (instructions(path, workload, s) for s in CG_SCALES)
    if lo is None or hi is None:
        return None
    return (hi - lo) / (CG_SCALES[1] - CG_SCALES[0])


def run(path, workload, scale):
    t0 = time.perf_counter()
    p = subprocess.Popen([path, workload, str(scale)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    out = p.stdout.read().decode()
    err = p.stderr.read().decode()
    p.stdout.close()
    p.stderr.close()
    if status != 0:
        sys.exit(f"report.py: {path} {workload} failed (status {status}): {err[-500:]}")
    secs, check, hwm_kb = out.split()
    return float(secs), check, int(hwm_kb) / 1024.0, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alloc", action="append", required=True, help="NAME=BINARY")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--md", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (callgrind)")
    a = ap.parse_args()
    allocs = [x.split("=", 1) for x in a.alloc]
    names = [n for n, _ in allocs]
    times = {(w, n): [] for w in WORKLOADS for n in names}
    cpus = {(w, n): [] for w in WORKLOADS for n in names}
    rss = {(w, n): [] for w in WORKLOADS for n in names}
    checks = {}
    for rep in range(a.reps):
        for wi, w in enumerate(WORKLOADS):
            k = (rep + wi) % len(allocs)
            for n, path in allocs[k:] + allocs[:k]:  # rotate who goes first
                secs, check, mib, cpu = run(path, w, a.scale)
                if checks.setdefault(w, check) != check:
                    sys.exit(f"report.py: {n} {w}: checksum {check}, others {checks[w]}")
                times[(w, n)].append(secs)
                cpus[(w, n)].append(cpu)
                rss[(w, n)].append(mib)
                print(f"rep {rep + 1}/{a.reps} {w:9} {n:9} {secs:7.3f} s {cpu:7.3f} cpu-s {mib:8.1f} MiB",
                      file=sys.stderr)
    instr = {}
    if a.callgrind:
        for w in WORKLOADS:
            for n, path in allocs:
                instr[(w, n)] = instructions_per_run(path, w)
                got = instr[(w, n)]
                print(f"callgrind {w:9} {n:9} " + (f"{got / 1e6:9.1f} M instructions" if got else "no figure"),
                      file=sys.stderr)

    def summarise(samples):
        med = {key: statistics.median(v) for key, v in samples.items()}
        ratio = {}
        for w in WORKLOADS:
            best = min(med[(w, n)] for n in names)
            for n in names:
                ratio[(w, n)] = med[(w, n)] / best
        geo = {n: math.exp(sum(math.log(ratio[(w, n)]) for w in WORKLOADS) / len(WORKLOADS)) for n in names}
        return med, ratio, geo

    med, ratio, geo = summarise(times)
    cmed, cratio, cgeo = summarise(cpus)
    mrss = {key: statistics.median(v) for key, v in rss.items()}
    with open(a.csv, "w") as f:
        f.write("workload,allocator,median_wall_s,wall_ratio,median_cpu_s,cpu_ratio,median_peak_rss_mib,wall_runs_s,"
                "cpu_runs_s,minstr_per_run\n")
        for w in WORKLOADS:
            for n in names:
                runs = " ".join(f"{x:.4f}" for x in times[(w, n)])
                cruns = " ".join(f"{x:.4f}" for x in cpus[(w, n)])
                f.write(f"{w},{n},{med[(w, n)]:.4f},{ratio[(w, n)]:.3f},{cmed[(w, n)]:.4f},{cratio[(w, n)]:.3f},"
                        f"{mrss[(w, n)]:.1f},{runs},{cruns},"
                        + (f"{instr[(w, n)] / 1e6:.1f}" if instr.get((w, n)) else "") + "\n")
    lines = [
        "# Rust workloads: memalloc::MemAlloc against its peers",
        "",
        f"Generated by `scripts/bench.sh --rust` (bench/rust/run.sh) at commit {a.commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on {os.cpu_count()} CPUs "
        f"({platform.machine()}, Linux {platform.release()}), a machine shared with other jobs. "
        f"{a.reps} repetitions, allocators alternating (the first one rotating), scale {a.scale}.",
        "One binary per global allocator: `system` is `std::alloc::System` (glibc's malloc); "
        "`mimalloc`, `tikv-jemallocator` (jemalloc) and `snmalloc-rs` are the crates.io crates.",
        "",
    ]

    def table(title, m, r, g):
        out = [title, "", "| workload | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for w in WORKLOADS:
            out.append(f"| {w} | " + " | ".join(f"{m[(w, n)]:.3f} ({r[(w, n)]:.2f}x)" for n in names) + " |")
        out.append("| **geometric mean** | " + " | ".join(f"**{g[n]:.2f}x**" for n in names) + " |")
        return out + [""]

    lines += table("Median CPU time (user + system) of the whole run in seconds (ratio to the fastest):",
                   cmed, cratio, cgeo)
    lines += table("Median wall time of the workload in seconds (ratio to the fastest):", med, ratio, geo)
    lines += ["Median peak RSS (VmHWM) in MiB:", "", "| workload | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for w in WORKLOADS:
        lines.append(f"| {w} | " + " | ".join(f"{mrss[(w, n)]:.1f}" for n in names) + " |")
    if "memalloc" in geo:
        def vs_peers(m):
            logs = [math.log(m[(w, "memalloc")] / min(m[(w, n)] for n in names if n != "memalloc"))
                    for w in WORKLOADS]
            return math.exp(sum(logs) / len(logs))

        def verdict(m, g, what):
            best = min((g[n], n) for n in names if n != "memalloc")
            v = vs_peers(m)
            return (f"{what}: memalloc {g['memalloc']:.2f}x the fastest per workload (geometric mean), "
                    f"the best peer ({best[1]}) {best[0]:.2f}x. Against the fastest peer of each workload, "
                    f"memalloc takes {v:.2f}x (geometric mean): the target, at most 1.00x, is "
                    + ("met." if round(v, 2) <= 1.0 else "not met."))
        lines += ["", verdict(cmed, cgeo, "CPU time"), "", verdict(med, geo, "Wall time")]
    counted = [n for n in names if all(instr.get((w, n)) for w in WORKLOADS)]
    if counted:
        lines += ["", "Instructions of a whole run, in millions (callgrind: the runs at scales "
                  f"{CG_SCALES[0]} and {CG_SCALES[1]}, their difference scaled to 1, so start-up and exit "
                  "cancel out; the program's own work included; ratio to the fewest). Deterministic, "
                  "unlike the times above." + (" No figure for " + ", ".join(n for n in names if n not in counted)
                                               + ": it does not start under valgrind." if len(counted) < len(names)
                                               else ""),
                  "", "| workload | " + " | ".join(counted) + " |", "|---|" + "---|" * len(counted)]
        ig = {}
        for w in WORKLOADS:
            fewest = min(instr[(w, n)] for n in counted)
            lines.append(f"| {w} | " + " | ".join(f"{instr[(w, n)] / 1e6:.0f} ({instr[(w, n)] / fewest:.2f}x)"
                                                  for n in counted) + " |")
        for n in counted:
            ig[n] = math.exp(sum(math.log(instr[(w, n)] / min(instr[(w, m)] for m in counted))
                                 for w in WORKLOADS) / len(WORKLOADS))
        lines.append("| **geometric mean** | " + " | ".join(f"**{ig[n]:.2f}x**" for n in counted) + " |")
    lines += ["", "Workloads (bench/rust/src/main.rs): " + "; ".join([
        "`hashmap` a HashMap<String, Vec<u8>> of 1M entries built, read and dropped",
        "`btree` a BTreeMap<u64, String> of 200k entries churned by 1M random inserts/removes",
        "`pipeline` 1.5M Boxed messages through three threads over channels (cross-thread frees)",
        "`json` 800 JSON-like trees of depth 6 built, serialised and dropped",
    ]) + ". Per-run times are in results/rust.csv.", ""]
    with open(a.md, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
