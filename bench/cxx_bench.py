#!/usr/bin/env python3
"""bench/cxx_bench.py -- the C++ workloads (bench/cxx_stl.cc), for scripts/bench.sh --cxx.

    cxx_bench.py --bin DIR --results DIR --tmp DIR --alloc NAME=PATH ... [--reps N] [--quick]

Runs each workload of bench/cxx_stl.cc (map, string, uptr) under:
  - every allocator given with --alloc, by LD_PRELOAD (glibc: none) of the
    plain build DIR/cxx_stl, whose operator new is libstdc++'s (it calls
    malloc); memalloc so is "memalloc (preload)";
  - "memalloc (header)": DIR/cxx_stl_header, built with
    include/memalloc-new-delete.h and linked with -lmemalloc, no preload.
Every run must report the malloc it used (the preloaded library, or
libmemalloc.so for the header build) and, for the header build, an operator
new from the program itself; otherwise it counts as failed. The variants
alternate within each repetition in a rotating order; the figures are
medians of wall time and peak RSS (bench/runner.c). Writes
results/cxx.md and results/cxx.csv.
"""
import argparse
import csv
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the runner, statistics and report helpers)

WORKLOADS = (  # name, scale (full; --quick halves none: they are short)
    ("map", "1"),
    ("string", "2"),
    ("uptr", "4"),
)
HEADER = "memalloc (header)"
PRELOAD = "memalloc (preload)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--alloc", action="append", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--command", default="")
    ap.add_argument("--lib-info", default="")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--strict", action="store_true")
    args, _ = ap.parse_known_args()
    bench.RUN_BIN[0], bench.RUN_TMP[0] = args.bin, args.tmp
    args.allocs = [tuple(s.partition("=")[::2]) for s in args.alloc]
    args.versions = bench.peer_versions(args)
    plain = os.path.join(args.bin, "cxx_stl")
    header = os.path.join(args.bin, "cxx_stl_header")
    # (label, binary, preload, expected malloc object, expected new object or None)
    variants = []
    for name, path in args.allocs:
        label = PRELOAD if name == bench.SUBJECT else name
        # (jemalloc, tcmalloc and mimalloc export operator new themselves)
        news = ("libstdc++.so.6", os.path.basename(path)) if path else ("libstdc++.so.6",)
        variants.append((label, plain, path, bench.expected_soname(path), news))
        if name == bench.SUBJECT:
            variants.append((HEADER, header, "", "libmemalloc.so", ("cxx_stl_header",)))
    labels = [v[0] for v in variants]
    info = bench.machine_info(args)
    results = {(w, l): [] for w, _ in WORKLOADS for l in labels}
    failures = []
    start = time.perf_counter()
    for rep in range(args.reps):
        k = rep % len(variants)
        for wname, scale in WORKLOADS:
            for label, binary, preload, want_malloc, want_new in variants[k:] + variants[:k]:
                argv = [binary, wname, scale]
                r = bench.run_once(argv, preload, {}, args.timeout, check_line=wname)
                if r.ok and r.fields.get("malloc") != want_malloc:
                    r.ok, r.status = False, "malloc is %s, not %s" % (r.fields.get("malloc"), want_malloc)
                if r.ok and r.fields.get("new") not in want_new:
                    r.ok, r.status = False, "operator new is %s's, not %s" % (
                        r.fields.get("new"), " or ".join(want_new))
                results[(wname, label)].append(r)
                bench.log("[rep %d] %-7s %-19s %s (%ds)" % (
                    rep + 1, wname, label, "%.3f s %.1f MiB" % (r.time, r.rss / 1024) if r.ok else
                    "FAIL: " + r.status, time.perf_counter() - start))
                if not r.ok:
                    failures.append((wname, label, rep + 1, bench.command_text(argv, preload, {}), r))
    irs = callgrind(args, variants, failures) if shutil.which("valgrind") else None
    write(args, info, labels, results, failures, irs)
    for what, label, rep, cmd, r in failures:
        bench.log("  %s under %s (rep %d): %s\n    command: %s\n    stderr: %s" % (
            what, label, rep, r.status, cmd, bench.tail(r.stderr, 5, 600)))
    return 1 if failures and args.strict else 0


CG_SCALES = ("0.1", "0.3")


def callgrind(args, variants, failures):
    """Instructions per operation of each workload under each variant:
    (Ir at scale 0.3 - Ir at 0.1) / (ops at 0.3 - ops at 0.1), so that
    start-up and exit cancel out. {(workload, label): instr/op or None}."""
    irs = {}
    for wname, _ in WORKLOADS:
        for label, binary, preload, want_malloc, want_new in variants:
            pts = []
            for scale in CG_SCALES:
                out = os.path.join(args.tmp, "cg.%s.%s.%s" % (wname, label.replace(" ", "_"), scale))
                argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary, wname, scale]
                r = bench.run_once(argv, preload, {}, args.timeout * 4, check_line=wname)
                if r.ok and (r.fields.get("malloc") != want_malloc or r.fields.get("new") not in want_new):
                    r.ok, r.status = False, "malloc %s, new %s" % (r.fields.get("malloc"), r.fields.get("new"))
                if r.ok:
                    try:
                        pts.append((bench.callgrind_ir(out), int(r.fields["ops"])))
                    except (OSError, ValueError, KeyError) as e:
                        r.ok, r.status = False, "callgrind output unreadable: %s" % e
                if not r.ok:
                    failures.append((wname + " (callgrind)", label, 1, bench.command_text(argv, preload, {}), r))
                    break
            irs[(wname, label)] = ((pts[1][0] - pts[0][0]) / (pts[1][1] - pts[0][1])
                                   if len(pts) == 2 and pts[1][1] > pts[0][1] else None)
            bench.log("callgrind: %-7s %-19s %s instr/op" % (wname, label, "%.1f" % irs[(wname, label)]
                                                             if irs[(wname, label)] else "FAIL"))
    return irs


def write(args, info, labels, results, failures, irs=None):
    summ = {key: bench.summarise(runs) for key, runs in results.items()}
    peers = [l for l in labels if l in bench.PEERS]
    os.makedirs(args.results, exist_ok=True)
    md = ["# memalloc from C++: STL workloads", ""]
    md += bench.header_lines(args, info, "Repetitions: %d; the variants alternate within each repetition, "
                             "in an order that rotates between repetitions" % args.reps)
    md.append("- Load average (1 min) at start / end: %s / %s" % (info["load"], bench.read_loadavg()))
    md += ["", "Workloads: `bench/cxx_stl.cc` (see its top comment). **%s**: the program built with "
           "`include/memalloc-new-delete.h`, linked with `-lmemalloc`. **%s** and the peers: the plain build "
           "(libstdc++'s operator new over malloc, unless the preloaded library exports its own) under "
           "`LD_PRELOAD` (glibc: none). Medians; ratio = the variant ÷ the fastest peer. The machine is shared: CPU time is the steadier "
           "figure." % (HEADER, PRELOAD), ""]
    rows = []
    for w, _ in WORKLOADS:
        rows.append((w, {l: summ[(w, l)] for l in labels if summ[(w, l)]["status"] == "ok"}))
    for key, title in (("time", "Wall time (seconds, median)"),
                       ("cpu", "CPU time (user + system, seconds, median)")):
        md += ["## " + title, ""]
        ratios = {l: [] for l in labels}
        md.append("| workload | " + " | ".join(labels) + " | fastest peer | header ÷ fastest"
                  " | preload ÷ fastest | header ÷ preload |")
        md.append("|---|" + "---:|" * (len(labels) + 4))
        hps = []
        for w, ok in rows:
            best = min(((ok[p][key], p) for p in peers if p in ok), default=None)
            cells = [bench.fmt_time(ok[l][key]) if l in ok else "**FAIL**" for l in labels]
            rel = {}
            for l in labels:
                if best and l in ok:
                    rel[l] = ok[l][key] / best[0]
                    ratios[l].append(rel[l])
            hp = ok[HEADER][key] / ok[PRELOAD][key] if HEADER in ok and PRELOAD in ok else None
            if hp:
                hps.append(hp)
            md.append("| %s | %s | %s | %s | %s | %s |" % (
                w, " | ".join(cells), best[1] if best else "–", bench.fmt_ratio(rel.get(HEADER)),
                bench.fmt_ratio(rel.get(PRELOAD)), bench.fmt_ratio(hp)))
        gm = {l: bench.geomean(ratios[l]) for l in labels}
        md.append("| **geometric mean of ÷ fastest** | %s | | **%s** | **%s** | **%s** |" % (
            " | ".join(bench.fmt_ratio(gm[l]) for l in labels), bench.fmt_ratio(gm.get(HEADER)),
            bench.fmt_ratio(gm.get(PRELOAD)), bench.fmt_ratio(bench.geomean(hps))))
        md.append("")
    md += ["(The geometric-mean row under each variant: its figure ÷ the fastest peer's.)", ""]
    if irs:
        peers_cg = [l for l in labels if l in bench.PEERS]
        md += ["## Instructions per operation (callgrind)", "",
               "`valgrind --tool=callgrind` on each workload at scales %s: (Ir − Ir) ÷ (ops − ops), so "
               "start-up and exit cancel out. An operation is one map step, one string built, one vector "
               "step (see `bench/cxx_stl.cc`); it includes the program's own work, not only the "
               "allocator's. Deterministic, unlike the times above." % " and ".join(CG_SCALES), "",
               "| workload | " + " | ".join(labels) + " | fewest (peer) | header ÷ fewest | preload ÷ fewest"
               " | header ÷ preload |", "|---|" + "---:|" * (len(labels) + 4)]
        cg = {l: [] for l in ("h", "p", "hp")}
        for w, _ in WORKLOADS:
            vals = {l: irs.get((w, l)) for l in labels}
            okp = [(vals[p], p) for p in peers_cg if vals[p]]
            best = min(okp) if okp else None
            h, pr = vals.get(HEADER), vals.get(PRELOAD)
            rh = h / best[0] if h and best else None
            rp = pr / best[0] if pr and best else None
            hp = h / pr if h and pr else None
            for k, v in (("h", rh), ("p", rp), ("hp", hp)):
                if v:
                    cg[k].append(v)
            md.append("| %s | %s | %s | %s | %s | %s |" % (
                w, " | ".join("%.1f" % vals[l] if vals[l] else "**FAIL**" for l in labels),
                best[1] if best else "–", bench.fmt_ratio(rh), bench.fmt_ratio(rp), bench.fmt_ratio(hp)))
        md.append("| **geometric mean** | %s | | **%s** | **%s** | **%s** |" % (
            " | ".join([""] * len(labels)), bench.fmt_ratio(bench.geomean(cg["h"])),
            bench.fmt_ratio(bench.geomean(cg["p"])), bench.fmt_ratio(bench.geomean(cg["hp"]))))
        md.append("")
    md += ["## Peak RSS (MiB, median)", "", "| workload | " + " | ".join(labels) + " |",
           "|---|" + "---:|" * len(labels)]
    for w, ok in rows:
        md.append("| %s | %s |" % (w, " | ".join(bench.fmt_mib(ok[l]["rss_kb"]) if l in ok else "**FAIL**"
                                                 for l in labels)))
    md += ["", "## Where operator new came from (dlsym + dladdr in the program)", "",
           "| " + " | ".join(labels) + " |", "|" + "---|" * len(labels),
           "| " + " | ".join(", ".join(sorted({r.fields.get("new", "?") for w, _ in WORKLOADS
                                                for r in results[(w, l)] if r.ok})) or "–"
                              for l in labels) + " |"]
    md += ["", "## Spread (max − min over the repetitions, ÷ median)", "", "| workload | " +
           " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for w, ok in rows:
        md.append("| %s | %s |" % (w, " | ".join("%.0f%%" % (100 * ok[l]["spread"]) if l in ok else "–"
                                                 for l in labels)))
    if failures:
        md += ["", "## Failures", ""]
        for what, label, rep, cmd, r in failures:
            md.append("- %s under %s (rep %d): %s; `%s`" % (what, label, rep, r.status, cmd))
    md.append("")
    with open(os.path.join(args.results, "cxx.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(args.results, "cxx.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "variant", "rep", "ok", "time_s", "cpu_s", "maxrss_kb", "mops_per_s",
                     "instr_per_op"])
        for (w, l), runs in results.items():
            for i, r in enumerate(runs):
                wr.writerow([w, l, i + 1, int(r.ok), "%.4f" % r.time, "%.4f" % r.cpu, r.rss,
                             "%.4f" % r.figure if r.figure is not None else "", ""])
        for (w, l), v in (irs or {}).items():
            wr.writerow([w, l, "callgrind", int(v is not None), "", "", "", "", "%.1f" % v if v else ""])
    bench.log("cxx: wrote %s and cxx.csv" % os.path.join(args.results, "cxx.md"))


if __name__ == "__main__":
    sys.exit(main())
