#!/usr/bin/env python3
"""bench/bench.py -- the runner and reporter behind scripts/bench.sh.

scripts/bench.sh installs the peers, builds the library and the programs,
then calls this with everything resolved:

    bench.py MODE --bin DIR --results DIR --tmp DIR --alloc NAME=PATH ...
             [--reps N] [--quick] [--only W,..] [--timeout S] [--python PY]
             [--sort SORT] [--pair-sizes N,..] [--rt] [--command TEXT]
             [--lib-info TEXT] [--strict]

MODE is `bench` (the workload suite), `callgrind` (instructions per
malloc+free pair) or `latency` (tail latency of single calls). `--alloc
glibc=` (empty path) means no preload; every other allocator is run with
LD_PRELOAD=PATH, set in the measured process only.

Measurement: each run goes through bench/runner.c (fork, exec, wait4), which
reports wall time (CLOCK_MONOTONIC), CPU time and peak RSS (ru_maxrss, KiB).
Not done from here because ru_maxrss survives execve: a child of this
~25 MB Python process would start with that as its peak.
A run fails (and is recorded as FAIL, never retried or hidden) on a non-zero
exit, a signal, a timeout, a missing result line, or when the program
reports that its malloc is not the allocator we preloaded.
Allocators alternate within each repetition, and the order rotates from one
repetition to the next, so that a slow phase of this shared machine does not
land on one allocator.
"""
import argparse
import csv
import datetime
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape

PEERS = ("glibc", "jemalloc", "tcmalloc", "mimalloc")
# Thread counts of the medium-T workloads (bench/mthreads.c): the scaling table.
MEDIUM_THREADS = (1, 2, 4, 8, 16, 32, 64)
SUBJECT = "memalloc"
RUN_BIN = [""]   # where runner lives (set by main)
RUN_TMP = [None]
EXIT_NAMES = {2: "out of memory (malloc returned NULL)", 3: "heap corruption detected",
              64: "usage error"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- workloads

def workloads(args):
    """(name, argv, extra env) for every workload, in report order."""
    q = args.quick
    b = lambda prog: os.path.join(args.bin, prog)
    data = args.sort_data
    w = []
    for size in (16, 64, 256, 1024, 4096):
        w.append(("fixed-%d" % size, [b("fixed"), str(size), "20e6" if q else "40e6"], {}))
    w += [
        ("churn", [b("churn"), "3e6" if q else "6e6", "30000"], {}),
        ("larson", [b("larson"), "8", "2000", "20" if q else "40", "40000"], {}),
        ("xmalloc", [b("xmalloc"), "4", "4", "4e6" if q else "8e6"], {}),
        ("threads32", [b("threads32"), "32", "7e5" if q else "1.5e6"], {}),
        ("cache-scratch", [b("cache-scratch"), "-", "1000", "8", "50000" if q else "100000"], {}),
        ("realloc", [b("realloc"), "800" if q else "1600", "64", "64k", "24" if q else "48"], {}),
        ("large", [b("large"), "300" if q else "600"], {}),
        ("sort", [args.sort, "-o", "/dev/null", data], {"LC_ALL": "C", "TMPDIR": args.tmp}),
        ("python", [args.python, os.path.join(args.bench_dir, "py_workload.py"),
                    "4" if q else "8", "40000"], {}),
        # issue 17: the whole size range, and medium blocks with threads
        ("mchurn", [b("mchurn"), "5e6" if q else "10e6", "10000", "50", "256k"], {}),
    ]
    for t in MEDIUM_THREADS:
        w.append(("medium-%d" % t, [b("mthreads"), str(t), "2e6" if q else "4e6", "256", "4k", "64k", "u"], {}))
    w += [
        ("prodcons", [b("xmalloc"), "4", "4", "1e6" if q else "2e6", "64", "32", "64", "32k"], {}),
        ("bulkfree", [b("bulkfree"), "4", "100" if q else "200", "2000", "16", "16k"], {}),
    ]
    for t in (1, 2, 4, 8):
        w.append(("invsq-%d" % t, [b("mthreads"), str(t), "5e6" if q else "10e6", "1000", "1", "32k", "s"], {}))
    # the grid's upper rows: 64 KiB-1 MiB blocks with threads (the top of the
    # medium classes and the mmap threshold's range), and 256 KiB-64 MiB
    # blocks with threads (1/size^2: most near 256 KiB, some of 64 MiB)
    w += [
        ("mlarge-16", [b("mthreads"), "16", "5e5" if q else "1e6", "64", "64k", "1M", "u"], {}),
        ("large-8", [b("mthreads"), "8", "2e5" if q else "4e5", "16", "256k", "64M", "s"], {}),
    ]
    if args.only:
        want = args.only.split(",")
        known = {n for n, _, _ in w}
        for x in want:
            if x not in known and not any(n.startswith(x + "-") for n in known):
                sys.exit("bench.py: --only: unknown workload %r (known: %s)" % (x, ", ".join(sorted(known))))
        w = [t for t in w if t[0] in want or any(t[0].startswith(x + "-") for x in want)]
    return w


def result_line(wname):
    """The name that starts the result line of workload `wname` (the program's)."""
    if wname.startswith(("medium-", "invsq-", "mlarge-")) or wname == "large-8":
        return "mthreads"
    if wname == "prodcons":
        return "xmalloc"
    if wname.startswith("grid-"):
        return "grid"
    return wname


def prepare_data(args, names):
    """Generate the sort input once, deterministically."""
    size = "25M" if args.quick else "50M"
    args.sort_data = os.path.join(args.tmp, "sort-%s.txt" % size)
    if "sort" in names and not os.path.exists(args.sort_data):
        log("bench: generating %s of text for sort" % size)
        subprocess.run([os.path.join(args.bin, "gen_text"), size, args.sort_data, "1"], check=True)


# --------------------------------------------------------------------- runs

class Run:
    __slots__ = ("ok", "time", "cpu", "rss", "nivcsw", "status", "stdout", "stderr", "figure", "unit", "fields")


def expected_soname(path):
    return os.path.basename(path) if path else "libc.so.6"


def run_once(argv, alloc_path, extra_env, timeout, check_line=None):
    """Run argv once under the allocator (through bench/runner.c, which does
    the fork, the timing and the wait4); return a Run, never raise."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(extra_env)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    fd, resfile = tempfile.mkstemp(prefix="run.", dir=RUN_TMP[0])
    os.close(fd)
    r = Run()
    r.ok, r.time, r.cpu, r.rss, r.figure, r.unit, r.fields = False, 0.0, 0.0, 0, None, "", {}
    r.nivcsw = 0
    r.stdout = r.stderr = ""
    proc = None
    runner = [os.path.join(RUN_BIN[0], "runner"), resfile, "%g" % timeout, alloc_path or "", "--"]
    try:
        proc = subprocess.Popen(runner + argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            proc.wait(timeout + 60)    # backstop only: the runner kills at `timeout`
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        r.stdout = out.read().decode(errors="replace")
        r.stderr = err.read().decode(errors="replace")
        with open(resfile) as f:
            res = dict(kv.split("=", 1) for kv in f.read().split())
        rc_exit, sig = int(res["exit"]), int(res["signal"])
        r.time, r.cpu, r.rss = float(res["time"]), float(res["cpu"]), int(res["maxrss"])
        r.nivcsw = int(res.get("nivcsw", 0))
    except (OSError, ValueError, KeyError) as e:
        r.status = "harness could not run it: %s (runner exit status %s)" % (
            e, proc.returncode if proc else "?")
        return r
    finally:
        out.close()
        err.close()
        try:
            os.unlink(resfile)
        except OSError:
            pass

    timed_out = res.get("timeout") == "1"
    rc = -sig if sig else rc_exit
    if timed_out:
        r.status = "timeout after %g s (killed)" % timeout
    elif rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "signal %d" % -rc
        r.status = "killed by %s (exit status %d)" % (name, 128 - rc)
    elif rc == 127 and "runner: exec" in r.stderr:
        r.status = "could not start: " + r.stderr.strip().splitlines()[-1]
    elif rc != 0:
        r.status = "exit status %d%s" % (rc, " (%s)" % EXIT_NAMES[rc] if rc in EXIT_NAMES else "")
    elif "cannot be preloaded" in r.stderr:
        r.status = "LD_PRELOAD failed: " + r.stderr.strip().splitlines()[-1]
    else:
        r.status = "ok"
    if r.status == "ok" and check_line:
        line = next((l for l in r.stdout.splitlines() if l.startswith(check_line + ":")), None)
        if line is None:
            r.status = "no result line '%s: ...' on stdout" % check_line
        else:
            m = re.match(r"[^:]+:\s+([0-9.eE+-]+)\s+(\S+)", line)
            if m:
                try:
                    r.figure, r.unit = float(m.group(1)), m.group(2)
                except ValueError:
                    pass
            r.fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            got = r.fields.get("alloc")
            if got is not None and got != expected_soname(alloc_path):
                r.status = "preload not in effect: malloc is served by %s, not %s" % (
                    got, expected_soname(alloc_path))
    r.ok = r.status == "ok"
    return r


def command_text(argv, alloc_path, extra_env):
    env = dict(extra_env)
    if alloc_path:
        env["LD_PRELOAD"] = alloc_path
    prefix = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in env.items())
    return (prefix + " " if prefix else "") + " ".join(shlex.quote(a) for a in argv)


def tail(text, lines=15, chars=2000):
    t = "\n".join(text.rstrip().splitlines()[-lines:])
    return t[-chars:] if t else "(empty)"


# ---------------------------------------------------------------- machine

def machine_info(args):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "arch": platform.machine(),
        "cpu": cpu,
        "nproc": str(os.cpu_count() or "?"),
        "kernel": platform.release(),
        "load": read_loadavg(),
    }


def read_loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def header_lines(args, info, what):
    lines = [
        "- Date: %s" % info["date"],
        "- Machine: `%s`, %s, nproc = %s, Linux %s" % (info["arch"], info["cpu"], info["nproc"], info["kernel"]),
        "- %s" % what,
        "- Command: `%s`" % args.command if args.command else None,
    ]
    if args.lib_info:
        lines.append("- memalloc: %s" % args.lib_info)
    for name, path in args.allocs:
        if name != SUBJECT:
            lines.append("- %s: %s" % (name, args.versions.get(name) or path or "system C library"))
    return [l for l in lines if l]


def peer_versions(args):
    """Package versions of the peers (dpkg), for the report header."""
    pkgs = {"glibc": "libc6", "jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4",
            "mimalloc": "libmimalloc2.0"}
    out = {}
    for name, path in args.allocs:
        pkg = pkgs.get(name)
        if not pkg:
            continue
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            v = ""
        if v:
            out[name] = "%s %s%s" % (pkg, v, " (`%s`)" % path if path else "")
    return out


# ------------------------------------------------------------ statistics

def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt_time(s):
    return "%.3f" % s if s < 10 else "%.2f" % s if s < 100 else "%.1f" % s


def fmt_mib(kb):
    mib = kb / 1024.0
    return "%.1f" % mib if mib < 100 else "%.0f" % mib


def fmt_ratio(r):
    return "%.2f" % r if r is not None else "–"


# ----------------------------------------------------------------- bench

def mode_bench(args):
    info = machine_info(args)
    names = [n for n, _ in args.allocs]
    wl = workloads(args)
    prepare_data(args, {n for n, _, _ in wl})
    wl = workloads(args)  # now with the data path filled in
    results, failures = run_all(args, wl, names)
    write_bench_reports(args, info, wl, names, results, failures)
    return failures


def run_all(args, wl, names, what="bench"):
    """Every workload of wl under every allocator, args.reps times, the
    allocators alternating within a repetition in an order that rotates
    between repetitions. Returns ({(workload, allocator): [Run]}, failures)."""
    results = {(w, a): [] for w, _, _ in wl for a in names}
    failures = []
    total = len(wl) * len(names) * args.reps
    done = 0
    start = time.perf_counter()
    log("%s: %d workloads x %d allocators x %d reps = %d runs%s" % (
        what, len(wl), len(names), args.reps, total, " (quick)" if args.quick else ""))
    for rep in range(args.reps):
        k = rep % len(args.allocs)
        order = args.allocs[k:] + args.allocs[:k]
        for wname, argv, env in wl:
            line = None if wname in ("sort",) else result_line(wname)
            for aname, apath in order:
                r = run_once(argv, apath, env, args.timeout, check_line=line)
                if wname == "sort" and r.ok:
                    r.figure, r.unit = os.path.getsize(args.sort_data) / r.time / 1e6, "MB/s"
                results[(wname, aname)].append(r)
                done += 1
                el = time.perf_counter() - start
                eta = el / done * (total - done)
                log("[%d/%d rep %d] %-14s %-9s %s  (elapsed %dm%02ds, eta %dm%02ds)" % (
                    done, total, rep + 1, wname, aname,
                    "%7.3f s %8.1f MiB" % (r.time, r.rss / 1024.0) if r.ok else "FAIL: " + r.status,
                    el // 60, el % 60, eta // 60, eta % 60))
                if not r.ok:
                    failures.append((wname, aname, rep + 1, command_text(argv, apath, env), r))
    return results, failures


def summarise(runs):
    ok = [r for r in runs if r.ok]
    if not runs:
        return None
    s = {"n": len(runs), "failed": len(runs) - len(ok), "times": [r.time for r in runs],
         "cpus": [r.cpu for r in runs],
         "rss": [r.rss for r in runs], "status": "ok" if len(ok) == len(runs) else "FAIL"}
    if ok:
        s["time"] = statistics.median(r.time for r in ok)
        s["cpu"] = statistics.median(r.cpu for r in ok)
        s["rss_kb"] = statistics.median(r.rss for r in ok)
        figs = [r.figure for r in ok if r.figure is not None]
        s["figure"] = statistics.median(figs) if figs else None
        s["unit"] = next((r.unit for r in ok if r.unit), "")
        s["spread"] = (max(r.time for r in ok) - min(r.time for r in ok)) / s["time"] if s["time"] else 0
    return s


METRICS = (  # key in the summary, table title, cell format, word for the best peer
    ("time", "Wall time (seconds, median)", fmt_time, "fastest"),
    ("cpu", "CPU time (user + system, seconds, median)", fmt_time, "fastest"),
    ("rss_kb", "Peak RSS (MiB, median of ru_maxrss)", fmt_mib, "leanest"),
)


def write_bench_reports(args, info, wl, names, results, failures):
    os.makedirs(args.results, exist_ok=True)
    summ = {key: summarise(runs) for key, runs in results.items()}
    peers = [a for a in names if a in PEERS]
    has_subject = SUBJECT in names
    ratios = bool(has_subject and peers)

    # rows[metric] = [{"w", "best": (value, peer) or None, "ratio", "subject_fail"}]
    rows = {}
    for key, _, _, _ in METRICS:
        rows[key] = []
        for wname, _, _ in wl:
            okpeers = [(summ[(wname, p)][key], p) for p in peers if summ[(wname, p)]["status"] == "ok"]
            sub = summ[(wname, SUBJECT)] if has_subject else None
            row = {"w": wname, "best": min(okpeers) if okpeers else None, "ratio": None,
                   "subject_fail": bool(sub and sub["status"] != "ok")}
            if sub and sub["status"] == "ok" and row["best"] and row["best"][0] > 0:
                row["ratio"] = sub[key] / row["best"][0]
            rows[key].append(row)
    gms = {key: geomean([r["ratio"] for r in rows[key]]) for key in rows}
    spread = {}
    for wname, _, _ in wl:
        sp = [summ[(wname, a)]["spread"] for a in names if "spread" in summ[(wname, a)]]
        spread[wname] = max(sp) if sp else None

    def cell(w, a, key, fmt):
        s = summ[(w, a)]
        if s["status"] != "ok":
            return "**FAIL** (%d/%d)" % (s["failed"], s["n"])
        return fmt(s[key])

    def cell_fig(w, a):
        s = summ[(w, a)]
        if s["status"] != "ok":
            return "**FAIL**"
        return "%.4g" % s["figure"] if s.get("figure") is not None else "–"

    mode = "quick" if args.quick else "full"
    md = ["# memalloc benchmarks", ""]
    md += header_lines(args, info, "Repetitions: %d (%s mode); allocators alternate within each repetition, "
                       "in an order that rotates between repetitions" % (args.reps, mode))
    md.append("- Load average (1 min) at start / end: %s / %s" % (info["load"], read_loadavg()))
    md += ["", "Peers: %s. Subject: %s. Each figure is the median over the repetitions; a cell is **FAIL** "
           "when any repetition failed (failed/total), and the failures are listed at the end." % (
               ", ".join(peers) or "none", SUBJECT if has_subject else "not run"), ""]
    if ratios:
        nfail = sum(1 for r in rows["time"] if r["subject_fail"])
        md += ["**Summary** — memalloc ÷ best peer, geometric mean over the workloads: wall time **%s**, "
               "CPU time **%s**, peak RSS **%s**; memalloc failed on %d of %d workloads." % (
                   fmt_ratio(gms["time"]), fmt_ratio(gms["cpu"]), fmt_ratio(gms["rss_kb"]), nfail,
                   len(wl)), ""]

    for key, title, fmt, word in METRICS:
        md += ["## " + title, ""]
        hdr = ["workload"] + names + (["%s peer" % word, "memalloc ÷ %s" % word] if ratios else [])
        if key == "time":
            hdr.append("spread")
        md.append("| " + " | ".join(hdr) + " |")
        md.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
        for row in rows[key]:
            w = row["w"]
            cells = [w] + [cell(w, a, key, fmt) for a in names]
            if ratios:
                cells.append(row["best"][1] if row["best"] else "–")
                cells.append("**FAIL**" if row["subject_fail"] else fmt_ratio(row["ratio"]))
            if key == "time":
                cells.append("%.0f%%" % (100 * spread[w]) if spread[w] is not None else "–")
            md.append("| " + " | ".join(cells) + " |")
        if ratios:
            md.append("| **geometric mean** | " + " | ".join([""] * len(names)) + " | | **%s** |%s" % (
                fmt_ratio(gms[key]), " |" if key == "time" else ""))
        md.append("")
        if key == "time":
            md += ["*spread*: the largest (max − min) ÷ median of the run times of one allocator on that "
                   "workload: a difference smaller than this is within the noise of this shared machine.", ""]
        if key == "cpu":
            md += ["CPU time is less disturbed than wall time by other load on the machine, but counts "
                   "spinning and misses blocking: read the two together.", ""]

    md += ["## Each program's own figure (median)", ""]
    hdr = ["workload", "unit"] + names
    md.append("| " + " | ".join(hdr) + " |")
    md.append("|" + "|".join(["---", "---"] + ["---:"] * len(names)) + "|")
    for w, _, _ in wl:
        unit = next((summ[(w, a)].get("unit") for a in names if summ[(w, a)].get("unit")), "")
        md.append("| " + " | ".join([w, unit] + [cell_fig(w, a) for a in names]) + " |")
    md += ["", "Higher is better here (rates); the program times only its own work, the wall time above "
           "also counts start-up and exit.", ""]

    scal = [("medium-%d" % t, t) for t in MEDIUM_THREADS if ("medium-%d" % t, names[0]) in summ]
    if scal:
        md += ["## Scaling: medium blocks per thread (bench/mthreads.c), million malloc+free pairs per second", "",
               "Each thread keeps 256 live blocks of 4-64 KiB and replaces a random one per pair; all "
               "threads together do the same number of pairs. On this %s-CPU machine, more threads than "
               "CPUs measure what waiting costs, not parallel speed-up." % info["nproc"], ""]
        md.append("| threads | " + " | ".join(names) + " |")
        md.append("|---:|" + "|".join(["---:"] * len(names)) + "|")
        for w, t in scal:
            md.append("| %d | " % t + " | ".join(cell_fig(w, a) for a in names) + " |")
        md.append("")

    md += ["## Workloads", ""]
    for wname, argv, env in wl:
        md.append("- `%s`: `%s`" % (wname, command_text([os.path.basename(argv[0])] + argv[1:], "", env)))
    md += ["", "Programs in `bench/` (see the comment at the top of each), built with `gcc -O2 -pthread`. "
           "`sort` sorts a generated text file (`bench/gen_text.c`, seed 1); `python` runs "
           "`bench/py_workload.py` with the system `python3`.", ""]

    md += ["## Failures", ""]
    if not failures:
        md += ["None.", ""]
    for wname, aname, rep, cmd, r in failures:
        md += ["### %s under %s (repetition %d)" % (wname, aname, rep), "",
               "- command: `%s`" % cmd,
               "- status: %s, after %.2f s" % (r.status, r.time),
               "- stderr (tail):", "", "```", tail(r.stderr), "```", ""]
    with open(os.path.join(args.results, "bench.md"), "w") as f:
        f.write("\n".join(md))

    with open(os.path.join(args.results, "bench.csv"), "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["workload", "allocator", "median_s", "median_rss_kb", "times_s", "rss_kb",
                     "median_cpu_s", "cpu_s", "status", "failed_runs", "figure", "unit"])
        for wname, _, _ in wl:
            for a in names:
                s = summ[(wname, a)]
                cw.writerow([wname, a,
                             "%.4f" % s["time"] if "time" in s else "",
                             "%d" % s["rss_kb"] if "rss_kb" in s else "",
                             " ".join("%.4f" % t for t in s["times"]),
                             " ".join("%d" % x for x in s["rss"]),
                             "%.4f" % s["cpu"] if "cpu" in s else "",
                             " ".join("%.4f" % t for t in s["cpus"]),
                             s["status"], s["failed"],
                             "%.6g" % s["figure"] if s.get("figure") is not None else "",
                             s.get("unit", "")])

    svg_path = os.path.join(args.results, "bench.svg")
    if not ratios and os.path.exists(svg_path):
        os.unlink(svg_path)    # a chart from an earlier run would be read as this run's
    if ratios:
        svg = ratio_svg(rows["time"], gms["time"], info, args, peers)
        with open(svg_path, "w") as f:
            f.write(svg)
    log("bench: wrote %s" % ", ".join(os.path.join(args.results, x) for x in
                                      (["bench.md", "bench.csv"] + (["bench.svg"] if ratios else []))))
    if ratios:
        log("bench: memalloc / best peer, geometric mean: wall time %s, CPU time %s, peak RSS %s" % (
            fmt_ratio(gms["time"]), fmt_ratio(gms["cpu"]), fmt_ratio(gms["rss_kb"])))


def ratio_svg(rows, gm, info, args, peers):
    """A horizontal bar chart of memalloc's time ratio, log scale, bars from 1.0."""
    vals = [r["ratio"] for r in rows if r["ratio"]] + ([gm] if gm else [])
    lo = min([0.5] + [2 ** math.floor(math.log2(v)) for v in vals])
    hi = max([2.0] + [2 ** math.ceil(math.log2(v)) for v in vals])
    W, left, right, top, rowh = 980, 150, 190, 86, 28
    n = len(rows) + (1 if gm else 0)
    plot_w = W - left - right
    H = top + n * rowh + 24 + 72
    x = lambda v: left + (math.log2(v) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * plot_w
    o = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="28" font-size="18" font-weight="bold">memalloc wall time ÷ fastest peer '
         '(lower is better)</text>' % 16,
         '<text x="16" y="50" fill="#444">%s</text>' % escape(
             "median of %d run%s%s · peers: %s · %s" % (args.reps, "s" if args.reps != 1 else "",
                                                       " (quick mode)" if args.quick else "",
                                                       ", ".join(peers), info["date"])),
         '<text x="16" y="68" fill="#444">%s</text>' % escape(
             "%s, %s CPUs (%s) · bars start at 1.0; left of the line memalloc is faster" % (
                 info["cpu"], info["nproc"], info["arch"]))]
    # grid and ticks (powers of two)
    y0, y1 = top - 6, top + n * rowh + 4
    t = lo
    while t <= hi * 1.0001:
        xx = x(t)
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (xx, y0, xx, y1))
        lab = ("%g" % t) if t >= 1 else ("1/%d" % round(1 / t))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s×</text>' % (xx, y1 + 18, lab))
        t *= 2
    o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">time ratio (log scale)</text>'
             % (left + plot_w / 2, y1 + 40))
    lx = 20
    for color, label in (("#2e8b57", "≤ 1 (memalloc as fast or faster)"), ("#e69500", "≤ 1.5"),
                         ("#c8102e", "> 1.5")):
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, y1 + 46, color))
        o.append('<text x="%d" y="%d" fill="#444">%s</text>' % (lx + 17, y1 + 57, escape(label)))
        lx += 17 + 7 * len(label) + 28
    one = x(1.0)

    def bar(i, label, ratio, fail, ref, bold=False):
        y = top + i * rowh
        weight = ' font-weight="bold"' if bold else ""
        o.append('<text x="%d" y="%d" text-anchor="end"%s>%s</text>' % (left - 10, y + 18, weight, escape(label)))
        if fail:
            o.append('<text x="%.1f" y="%d" fill="#c00000" font-weight="bold">FAIL (memalloc)</text>'
                     % (one + 8, y + 18))
            return
        if ratio is None:
            o.append('<text x="%.1f" y="%d" fill="#888">no peer result</text>' % (one + 8, y + 18))
            return
        xr = x(ratio)
        color = "#2e8b57" if ratio <= 1.0 else "#e69500" if ratio <= 1.5 else "#c8102e"
        x_a, x_b = min(one, xr), max(one, xr)
        o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"%s/>' % (
            x_a, y + 5, max(x_b - x_a, 1.5), rowh - 10, color, ' stroke="#333"' if bold else ""))
        txt = "%.2f×%s" % (ratio, " vs %s" % ref if ref else "")
        o.append('<text x="%.1f" y="%d"%s>%s</text>' % (x_b + 6, y + 18, weight, escape(txt)))

    for i, r in enumerate(rows):
        bar(i, r["w"], r["ratio"], r["subject_fail"], r["best"][1] if r["best"] else "")
    if gm:
        yy = top + len(rows) * rowh
        o.append('<line x1="20" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (yy + 1, W - 20, yy + 1))
        bar(len(rows), "geometric mean", gm, False, "", bold=True)
    o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000" stroke-width="2" stroke-dasharray="6,3"/>'
             % (one, y0, one, y1))
    o.append('</svg>')
    return "\n".join(o) + "\n"


# -------------------------------------------------------------- callgrind

# ------------------------------------------------------------------ grid

# The grid's rows: (label, MIN, MAX, OPS of a full run, LIVE) per size band.
# OPS falls with the sizes so that each cell takes ~0.1-0.5 s under the
# peers; LIVE (blocks kept per thread, queue length, batch) too, so that the
# live memory stays within a few GiB of address space at 64 threads (only
# the first and last bytes of a block are written: little of it is resident).
GRID_BANDS = (
    ("16-128", 16, 128, 2e7, 1000),
    ("128-4k", 128, 4096, 1.5e7, 500),
    ("4k-64k", 4096, 65536, 4e6, 256),
    ("64k-1M", 65536, 1 << 20, 4e5, 32),
    ("1M-64M", 1 << 20, 64 << 20, 4e4, 4),
)
GRID_THREADS = (1, 4, 16, 64)
GRID_PATTERNS = (("short", "freed by its thread right after its malloc"),
                 ("long", "each thread replaces a random one of its live blocks"),
                 ("cross", "handed to the next thread, which frees it"),
                 ("bulk", "a batch freed all at once by the next thread"))
GRID_OPS = {"short": 1, "long": 1, "cross": 0.2, "bulk": 0.2}  # the threads' handshakes cost more a block


def grid_cells(args):
    """(name, argv, env) for every cell of the grid, and {name: (pattern, band, threads)}."""
    cells, where = [], {}
    for pat, _ in GRID_PATTERNS:
        for band, lo, hi, ops, live in GRID_BANDS:
            for t in GRID_THREADS:
                name = "grid-%s-%s-%d" % (pat, band, t)
                n = ops * GRID_OPS[pat] / (2 if args.quick else 1)
                cells.append((name, [os.path.join(args.bin, "grid"), str(t), "%g" % n, str(lo), str(hi),
                                     pat, str(live)], {}))
                where[name] = (pat, band, t)
    if args.only:
        want = args.only.split(",")
        cells = [c for c in cells if any(x in c[0].split("-")[1:2] + [c[0]] for x in want)]
        if not cells:
            sys.exit("bench.py: --only: no grid cell matches %r (patterns: %s)" % (
                args.only, ", ".join(p for p, _ in GRID_PATTERNS)))
    return cells, where


def grid_svg(ratio_of, info, args):
    """A heat map of memalloc's wall time ÷ the fastest peer's: one block of
    size bands × thread counts per pattern, the same colours as bench.svg."""
    cw, ch, left, top, gap = 96, 30, 86, 96, 26
    nb, nt = len(GRID_BANDS), len(GRID_THREADS)
    bw = left + nt * cw
    W = 2 * bw + 40
    H = top + 2 * (nb * ch + 40 + gap) + 40
    o = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="16" y="28" font-size="18" font-weight="bold">memalloc wall time ÷ fastest peer, '
         'by size, threads and who frees (lower is better)</text>',
         '<text x="16" y="50" fill="#444">%s</text>' % escape(
             "bench/grid.c · median of %d run%s%s · %s, %s CPUs · %s" % (
                 args.reps, "s" if args.reps != 1 else "", " (quick mode)" if args.quick else "",
                 info["cpu"], info["nproc"], info["date"])),
         '<text x="16" y="68" fill="#444">green ≤ 1 (memalloc as fast or faster), orange ≤ 1.5, '
         'red &gt; 1.5; the letter names the fastest peer (g glibc, j jemalloc, t tcmalloc, m mimalloc)</text>']
    initial = {"glibc": "g", "jemalloc": "j", "tcmalloc": "t", "mimalloc": "m"}
    for i, (pat, what) in enumerate(GRID_PATTERNS):
        x0 = 16 + (i % 2) * (bw + 20)
        y0 = top + (i // 2) * (nb * ch + 40 + gap)
        o.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (x0, y0 - 8, escape(pat)))
        o.append('<text x="%d" y="%d" fill="#444" font-size="11">%s</text>' % (
            x0 + 8 * len(pat) + 10, y0 - 8, escape(what)))
        for j, t in enumerate(GRID_THREADS):
            o.append('<text x="%d" y="%d" text-anchor="middle" fill="#444">%d thr.</text>' % (
                x0 + left + j * cw + cw // 2, y0 + 12, t))
        for b, (band, _, _, _, _) in enumerate(GRID_BANDS):
            y = y0 + 20 + b * ch
            o.append('<text x="%d" y="%d" text-anchor="end" fill="#444">%s</text>' % (
                x0 + left - 8, y + 20, escape(band)))
            for j, t in enumerate(GRID_THREADS):
                r, who = ratio_of("grid-%s-%s-%d" % (pat, band, t), "time")
                color = ("#dddddd" if r is None else "#2e8b57" if r <= 1.0 else
                         "#e69500" if r <= 1.5 else "#c8102e")
                xx = x0 + left + j * cw
                o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="white"/>' % (
                    xx, y, cw, ch, color))
                txt = who if r is None else "%.2f %s" % (r, initial.get(who, ""))
                o.append('<text x="%d" y="%d" text-anchor="middle" fill="white">%s</text>' % (
                    xx + cw // 2, y + 20, escape(txt)))
    o.append('<text x="16" y="%d" fill="#444">sizes in bytes, log-uniform within each band; '
             'first and last bytes of each block written</text>' % (H - 16))
    o.append('</svg>')
    return "\n".join(o) + "\n"


def mode_grid(args):
    info = machine_info(args)
    names = [n for n, _ in args.allocs]
    cells, where = grid_cells(args)
    results, failures = run_all(args, cells, names, "grid")
    os.makedirs(args.results, exist_ok=True)
    summ = {key: summarise(runs) for key, runs in results.items()}
    peers = [a for a in names if a in PEERS]
    initial = {"glibc": "g", "jemalloc": "j", "tcmalloc": "t", "mimalloc": "m"}

    def ratio(cell, key):
        """(memalloc ÷ best peer, best peer) or (None, why)."""
        sub = summ.get((cell, SUBJECT))
        ok = [(summ[(cell, p)][key], p) for p in peers
              if (cell, p) in summ and summ[(cell, p)]["status"] == "ok"]
        if sub is None or not ok:
            return None, "–"
        if sub["status"] != "ok":
            return None, "FAIL"
        best = min(ok)
        return (sub[key] / best[0] if best[0] > 0 else None), best[1]

    with open(os.path.join(args.results, "grid.csv"), "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["pattern", "sizes", "threads", "allocator", "runs", "failed", "wall_s", "cpu_s",
                     "peak_rss_kib", "mops_per_s"])
        for cell, _, _ in cells:
            pat, band, t = where[cell]
            for a in names:
                s = summ[(cell, a)]
                ok = s["status"] == "ok"
                cw.writerow([pat, band, t, a, s["n"], s["failed"],
                             "%.4f" % s["time"] if ok else "", "%.4f" % s["cpu"] if ok else "",
                             "%d" % s["rss_kb"] if ok else "",
                             "%.4g" % s["figure"] if ok and s.get("figure") is not None else ""])

    md = ["# memalloc on the grid: sizes × threads × who frees", ""]
    md += header_lines(args, info, "Repetitions: %d (%s mode); allocators alternate within each repetition, "
                       "in an order that rotates between repetitions" % (args.reps,
                                                                        "quick" if args.quick else "full"))
    md.append("- Load average (1 min) at start / end: %s / %s" % (info["load"], read_loadavg()))
    md += ["", "Each cell is one run of `bench/grid THREADS OPS MIN MAX PATTERN LIVE` per allocator and "
           "repetition: THREADS threads share OPS allocations of sizes log-uniform in MIN..MAX, the first and "
           "last bytes of each block written. Patterns: " + "; ".join(
               "*%s*: %s" % p for p in GRID_PATTERNS) + ". Bands (OPS of short and long, LIVE): " + ", ".join(
               "%s (%g, %d)" % (b, o / 2 if args.quick else o, l) for b, _, _, o, l in GRID_BANDS) +
           "; cross and bulk do %g times those OPS" % GRID_OPS["cross"] +
           ". Figures are medians of the process's wall time, CPU time and peak RSS (bench/runner.c); "
           "per-allocator values are in `grid.csv`.", ""]
    # every allocator against the fastest of all (memalloc included), as the
    # suite's "of the five" figure
    of_all = {}
    for a in names:
        rs = []
        for cell, _, _ in cells:
            ok = [summ[(cell, b)]["time"] for b in names if summ[(cell, b)]["status"] == "ok"]
            if summ[(cell, a)]["status"] == "ok" and ok and min(ok) > 0:
                rs.append(summ[(cell, a)]["time"] / min(ok))
        of_all[a] = (geomean(rs), len(rs))
    md += ["**Of all %d allocators**: wall time ÷ the fastest of them, geometric mean over the cells "
           "each finished: %s." % (len(names), ", ".join(
               "%s **%s** (%d cells)" % (a, fmt_ratio(g), n) for a, (g, n) in of_all.items())), ""]
    if SUBJECT in names and peers:
        for key, title, word in (("time", "Wall time", "fastest"), ("cpu", "CPU time", "fastest"),
                                 ("rss_kb", "Peak RSS", "leanest")):
            rs = [ratio(c, key)[0] for c, _, _ in cells]
            got = [r for r in rs if r is not None]
            gm = geomean(got)
            md += ["## %s: memalloc ÷ the %s peer" % (title, word), "",
                   "Geometric mean over %d cells: **%s**; at or under 1.00 in %d of them, above 1.25 in %d. "
                   "The letter names the %s peer (g glibc, j jemalloc, t tcmalloc, m mimalloc)." % (
                       len(got), fmt_ratio(gm), sum(1 for r in got if r <= 1.0),
                       sum(1 for r in got if r > 1.25), word), ""]
            md.append("| pattern | sizes | " + " | ".join("%d thread%s" % (t, "" if t == 1 else "s")
                                                      for t in GRID_THREADS) + " |")
            md.append("|---|---|" + "---:|" * len(GRID_THREADS))
            for pat, _ in GRID_PATTERNS:
                for band, _, _, _, _ in GRID_BANDS:
                    row = []
                    for t in GRID_THREADS:
                        c = "grid-%s-%s-%d" % (pat, band, t)
                        if c not in where or (c, names[0]) not in summ:
                            row.append("")
                            continue
                        r, who = ratio(c, key)
                        row.append(("**%s**" % fmt_ratio(r) if r > 1.25 else fmt_ratio(r)) + " " +
                                   initial.get(who, "") if r is not None else who)
                    if any(row):
                        md.append("| %s | %s | %s |" % (pat, band, " | ".join(row)))
            md.append("")
    if failures:
        md += ["## Failures", ""]
        for what, aname, rep, cmd, r in failures:
            md += ["- %s under %s (repetition %d): %s. Command: `%s`" % (what, aname, rep, r.status, cmd)]
        md.append("")
    written = ["grid.md", "grid.csv"]
    if SUBJECT in names and peers:
        with open(os.path.join(args.results, "grid.svg"), "w") as f:
            f.write(grid_svg(ratio, info, args))
        written.append("grid.svg")
    with open(os.path.join(args.results, "grid.md"), "w") as f:
        f.write("\n".join(md))
    log("grid: wrote %s" % ", ".join(os.path.join(args.results, x) for x in written))
    return failures


def callgrind_ir(outfile):
    with open(outfile) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise ValueError("no summary line in %s" % outfile)


def mode_callgrind(args):
    info = machine_info(args)
    sizes = [int(s) for s in args.pair_sizes.split(",")]
    n1, n2 = (200000, 400000) if args.quick else (1000000, 2000000)
    warm = 1000
    rows, failures = [], []
    for aname, apath in args.allocs:
        row = {"a": aname}
        for size in sizes:
            irs = []
            for n in (n1, n2):
                out = os.path.join(args.tmp, "callgrind.%s.%d.%d.out" % (aname, size, n))
                argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                        os.path.join(args.bin, "pair"), str(n), str(size), str(warm)]
                log("callgrind: %-9s size %-5d N=%d" % (aname, size, n))
                r = run_once(argv, apath, {}, args.timeout, check_line="pair")
                if r.ok:
                    try:
                        irs.append(callgrind_ir(out))
                    except (OSError, ValueError) as e:
                        r.ok, r.status = False, "callgrind output unreadable: %s" % e
                if not r.ok:
                    failures.append(("pair size %d N=%d" % (size, n), aname, 1, command_text(argv, apath, {}), r))
                    break
            if len(irs) == 2:
                row[size] = ((irs[1] - irs[0]) / (n2 - n1), irs[0] - (irs[1] - irs[0]) / (n2 - n1) * n1)
            else:
                row[size] = None
        rows.append(row)

    md = ["# memalloc: instructions per malloc + free (callgrind)", ""]
    md += header_lines(args, info, "valgrind --tool=callgrind on `bench/pair.c` (%d warm-up pairs, then N "
                       "malloc+free pairs); the allocator under test is preloaded (callgrind, unlike "
                       "memcheck, does not replace malloc)" % warm)
    md += ["", "Instructions per pair = (Ir(N=%d) − Ir(N=%d)) ÷ %d: start-up, warm-up and exit cancel out. "
           "*Fixed cost* is what remains of Ir(N=%d): process start-up and exit, dynamic linking, the "
           "allocator's initialisation." % (n2, n1, n2 - n1, n1), ""]
    hdr = ["allocator"] + ["instr/pair (%d B)" % s for s in sizes] + ["fixed cost, M instr (%d B)" % sizes[0]]
    md.append("| " + " | ".join(hdr) + " |")
    md.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
    for row in rows:
        cells = [row["a"]] + ["%.1f" % row[s][0] if row[s] else "**FAIL**" for s in sizes]
        cells.append("%.2f" % (row[sizes[0]][1] / 1e6) if row[sizes[0]] else "–")
        md.append("| " + " | ".join(cells) + " |")
    md.append("")
    md += ["## Failures", ""] + (["None.", ""] if not failures else [])
    for what, aname, _, cmd, r in failures:
        md += ["### %s under %s" % (what, aname), "", "- command: `%s`" % cmd, "- status: %s" % r.status,
               "- stderr (tail):", "", "```", tail(r.stderr), "```", ""]
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "callgrind.md"), "w") as f:
        f.write("\n".join(md))
    log("callgrind: wrote %s" % os.path.join(args.results, "callgrind.md"))
    for row in rows:
        log("callgrind: %-9s %s" % (row["a"], "  ".join(
            "%d B: %s instr/pair" % (s, "%.1f" % row[s][0] if row[s] else "FAIL") for s in sizes)))
    return failures


# ---------------------------------------------------------------- latency

LAT_KEYS = ("malloc_p50", "malloc_p99", "malloc_p999", "malloc_p9999", "malloc_max",
            "free_p50", "free_p99", "free_p999", "free_p9999", "free_max")


def mode_latency(args):
    info = machine_info(args)
    ops = "1e6" if args.quick else "1e7"
    mops = "5e5" if args.quick else "2e6"
    # SCHED_FIFO (when allowed) keeps ordinary tasks from preempting the
    # measured thread, so that the worst case is the allocator's and not the
    # scheduler's; the kernel's RT throttling still leaves 5% to others.
    rt = ["chrt", "-f", "1"] if args.rt else []
    lat = os.path.join(args.bin, "latency")
    runs = [("small", rt + [lat, ops, "100000"],
             "%s random operations (malloc of 8 B..64 KiB, mostly small, or free of a random live block) "
             "over a working set of ~100k blocks" % ops),
            ("medium", rt + [lat, mops, "50000", "1", "medium"],
             "%s random operations (malloc of 16 B..64 KiB, log-uniform, only the first byte written; or "
             "free of a random live block) over ~50k live blocks (issue 17)" % mops)]
    per = {(w, a): [] for w, _, _ in runs for a, _ in args.allocs}
    failures = []
    for rep in range(args.reps):
        k = rep % len(args.allocs)
        for wname, argv, _ in runs:
            for aname, apath in args.allocs[k:] + args.allocs[:k]:
                r = run_once(argv, apath, {}, args.timeout, check_line="latency")
                if r.ok and not all(key in r.fields for key in LAT_KEYS):
                    r.ok, r.status = False, "incomplete result line"
                log("latency %s [rep %d/%d] %-9s %s" % (wname, rep + 1, args.reps, aname,
                    "malloc p99.9 %s p99.99 %s max %s, free p99.9 %s p99.99 %s max %s %s (%.2f s)" % (
                        r.fields["malloc_p999"], r.fields["malloc_p9999"], r.fields["malloc_max"],
                        r.fields["free_p999"], r.fields["free_p9999"],
                        r.fields["free_max"], r.fields.get("unit", ""), r.time) if r.ok else "FAIL: " + r.status))
                if r.ok:
                    per[(wname, aname)].append(r)
                else:
                    failures.append(("latency " + wname, aname, rep + 1, command_text(argv, apath, {}), r))
    allr = [r for rs in per.values() for r in rs]
    unit = next((r.fields.get("unit") for r in allr), "cycles")
    ghz = statistics.median([float(r.fields["tsc_ghz"]) for r in allr] or [0])
    timer = statistics.median([int(r.fields["timer"]) for r in allr] or [0])

    md = ["# memalloc: latency of single malloc and free calls", ""]
    md += header_lines(args, info, "`bench/latency.c`, two workloads, %d run%s per allocator each, "
                       "alternating: %s" % (args.reps, "s" if args.reps != 1 else "",
                                            "; ".join("*%s*: %s" % (w, d) for w, _, d in runs)))
    md += ["", "Each call is timed alone with `rdtsc` between `lfence`s, in %s (TSC ≈ %.2f GHz; the empty "
           "timed region itself costs ≈ %d %s, included in every figure). Percentiles come from a "
           "log-linear histogram (exact below 4096, else within 1.6%%). Each cell is the median over the "
           "runs; *worst* is the maximum over all runs. The worst case on a shared machine includes "
           "interrupts and preemption, not only the allocator: read it next to p99.99. *malloc >100k* "
           "and *free >100k* count the calls that took more than 100000 %s each, and *faults* the minor "
           "page faults of the timed phase (calls and the untimed writes to blocks alike); these counts "
           "are less at the mercy of one unlucky event than the maximum. A minor page fault on this VM "
           "occasionally costs 100-300 µs (a malloc that took one fault was timed at 207 µs), so the "
           "number of faults taken in the timed phase bounds how often an allocator's calls can be hit. "
           "Scheduling: %s; "
           "*preemptions* is the median count of involuntary context switches per run." % (
               unit, ghz, timer, unit, unit,
               "SCHED_FIFO priority 1 (`chrt -f 1`), so ordinary tasks cannot preempt the run (it sleeps "
               "10 ms, untimed, every 100 ms so that the kernel's RT throttling never stops it)"
               if args.rt else "normal (SCHED_OTHER): other tasks on this machine can preempt the run"), ""]
    for wname, _, desc in runs:
        md += ["## %s" % wname, "", desc + ".", ""]
        hdr = ["allocator", "runs", "malloc p50", "malloc p99", "malloc p99.9", "malloc p99.99", "malloc max",
               "malloc worst", "free p50", "free p99", "free p99.9", "free p99.99", "free max", "free worst",
               "worst (µs)", "malloc >100k", "free >100k", "faults", "preemptions"]
        md.append("| " + " | ".join(hdr) + " |")
        md.append("|" + "|".join(["---"] + ["---:"] * (len(hdr) - 1)) + "|")
        for aname, _ in args.allocs:
            rs = per[(wname, aname)]
            nfail = sum(1 for f in failures if f[1] == aname and f[0] == "latency " + wname)
            if not rs:
                md.append("| %s | 0 | " % aname + " | ".join(["**FAIL**"] * (len(hdr) - 2)) + " |")
                continue
            med = {k: statistics.median(int(r.fields[k]) for r in rs) for k in LAT_KEYS}
            wm = max(int(r.fields["malloc_max"]) for r in rs)
            wf = max(int(r.fields["free_max"]) for r in rs)
            cells = [aname, "%d%s" % (len(rs), " (**%d FAIL**)" % nfail if nfail else "")]
            cells += ["%.0f" % med[k] for k in LAT_KEYS[:5]] + ["%d" % wm]
            cells += ["%.0f" % med[k] for k in LAT_KEYS[5:]] + ["%d" % wf]
            cells.append("%.1f" % (max(wm, wf) / (ghz * 1e3)) if ghz and unit == "cycles" else "–")
            for k in ("malloc_slow", "free_slow", "faults"):
                vs = [int(r.fields[k]) for r in rs if k in r.fields]    # absent from older latency builds
                cells.append("%.0f" % statistics.median(vs) if vs else "–")
            cells.append("%.0f" % statistics.median(r.nivcsw for r in rs))
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
    md += ["## Failures", ""] + (["None.", ""] if not failures else [])
    for what, aname, rep, cmd, r in failures:
        md += ["### %s under %s (run %d)" % (what, aname, rep), "", "- command: `%s`" % cmd,
               "- status: %s, after %.2f s" % (r.status, r.time), "- stderr (tail):", "", "```",
               tail(r.stderr), "```", ""]
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "latency.md"), "w") as f:
        f.write("\n".join(md))
    log("latency: wrote %s" % os.path.join(args.results, "latency.md"))
    return failures


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("bench", "callgrind", "latency", "grid"))
    ap.add_argument("--bin", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--alloc", action="append", required=True, help="NAME=PATH (empty PATH: no preload)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--sort", default="sort")
    ap.add_argument("--pair-sizes", default="32")
    ap.add_argument("--command", default="")
    ap.add_argument("--lib-info", default="")
    ap.add_argument("--rt", action="store_true", help="latency: run under chrt -f 1")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any run failed")
    args = ap.parse_args()
    args.allocs = []
    for spec in args.alloc:
        name, _, path = spec.partition("=")
        args.allocs.append((name, path))
    if args.reps < 1:
        sys.exit("bench.py: --reps must be >= 1")
    RUN_BIN[0], RUN_TMP[0] = args.bin, args.tmp
    args.bench_dir = os.path.dirname(os.path.abspath(__file__))
    args.sort_data = ""
    args.versions = peer_versions(args)
    failures = {"bench": mode_bench, "callgrind": mode_callgrind, "latency": mode_latency,
                "grid": mode_grid}[args.mode](args)
    if failures:
        log("%s: %d run(s) FAILED:" % (args.mode, len(failures)))
        for what, aname, rep, cmd, r in failures:
            log("  %s under %s (rep %d): %s\n    command: %s\n    stderr tail: %s" % (
                what, aname, rep, r.status, cmd, tail(r.stderr, 5, 600).replace("\n", "\n      ")))
    return 1 if failures and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
