#!/usr/bin/env python3
"""bench/cycles_ab.py — alternating runs of bench/cycles under several libraries.

usage: cycles_ab.py [--reps N] NAME=PRELOAD [NAME=PRELOAD ...] -- CYCLES [ARGS...]

Runs the command CYCLES (bench/cycles, built by scripts/bench.sh into
target/bench/, or by hand: gcc -O2 -pthread bench/cycles.c -lm) once under each
PRELOAD (empty: glibc), the libraries alternating within a repetition and
their order rotating between repetitions, N times (default 11). Each run
prints its 10th percentile of cycles per pair (see bench/cycles.c); this
prints, per library, the median and the minimum of those figures over the
runs, the median of the runs' chunk medians, and each ÷ the first library's.
A run whose `alloc=` is not the preloaded library's file (libc.so.6 for
glibc), or that fails, stops the script with exit status 1.

The minimum over runs is the quiet machine's figure; the median, a loaded
one's. On the shared 2-core host a library's minimum moved 1-2% between
series of 15-21 runs (docs/performance.md, "invsq again (inv17j)").
"""
import os
import statistics
import subprocess
import sys


def usage(msg):
    sys.stderr.write("cycles_ab.py: %s\n%s" % (msg, __doc__.split("\n\n")[1] + "\n"))
    sys.exit(64)


def parse(argv):
    reps = 11
    if argv[:1] == ["--reps"]:
        if len(argv) < 2 or not argv[1].isdigit() or int(argv[1]) < 1:
            usage("--reps needs a positive number")
        reps, argv = int(argv[1]), argv[2:]
    if "--" not in argv:
        usage("no command after --")
    i = argv.index("--")
    libs = []
    for a in argv[:i]:
        if "=" not in a:
            usage("not NAME=PRELOAD: %r" % a)
        name, pre = a.split("=", 1)
        libs.append((name, pre))
    if not libs or not argv[i + 1:]:
        usage("no library or no command")
    return reps, libs, argv[i + 1:]


def run(cmd, pre):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if pre:
        env["LD_PRELOAD"] = pre
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    want = os.path.basename(pre) if pre else "libc.so.6"
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    if r.returncode != 0 or not line.startswith("cycles: ") or fields.get("alloc") != want:
        sys.stderr.write("cycles_ab.py: run under %r failed (status %d): %s%s\n"
                         % (pre or "glibc", r.returncode, line, r.stderr[-300:]))
        sys.exit(1)
    return float(line.split()[1]), float(fields["median"])


def main():
    reps, libs, cmd = parse(sys.argv[1:])
    res = {name: [] for name, _ in libs}
    for r in range(reps):
        k = r % len(libs)
        for name, pre in libs[k:] + libs[:k]:
            res[name].append(run(cmd, pre))
    print("%s: %d runs each, alternating; load average %s" %
          (" ".join(cmd), reps, open("/proc/loadavg").read().split()[0]))
    print("| library | p10 median | p10 min | chunk median | ÷ first (median, min, chunk) |")
    print("|---|---:|---:|---:|---|")
    base = None
    for name, _ in libs:
        p10 = [x[0] for x in res[name]]
        fig = (statistics.median(p10), min(p10), statistics.median(x[1] for x in res[name]))
        base = base or fig
        print("| %s | %.2f | %.2f | %.2f | %.3f %.3f %.3f |" %
              ((name,) + fig + tuple(f / b for f, b in zip(fig, base))))


if __name__ == "__main__":
    main()
