#!/usr/bin/env python3
"""scripts/noise_band.py -- is memalloc behind, or is it the noise of the run?

usage: scripts/noise_band.py [--metric cpu|wall] [--subject NAME] [--draws N]
                             [--seed S] [BENCH_CSV=results/bench.csv]
       scripts/noise_band.py [--metric cpu|wall] [--subject NAME]
                             (--across CSV... | --history N [BENCH_CSV])

`results/bench.md` divides memalloc's median time by the smallest of the
peers' medians. With 5 runs per allocator and a spread of 40-70% on this
shared machine, that ratio is biased upwards: the smallest of four noisy
medians is below their typical value, so an allocator as fast as the
fastest peer reads 1.1-1.2 (docs/performance.md, st17f: `sort`, where the
allocator does 12 allocations, read 0.99-1.15 over 12 full runs).

This reads the runs that `bench/bench.py` wrote into BENCH_CSV (one row per
workload and allocator, its runs in `cpu_s` and `times_s`) and asks, per
workload: how often would the ratio be at least the one measured if the
subject's runs were drawn from the fastest peer's runs? Each draw resamples
every allocator's runs with replacement (as many as it has), the subject's
from the fastest peer's, and takes the subject's median ÷ the smallest peer
median, as bench.md does. `p` is the share of draws at or above the measured
ratio; `band` is the draws' 90th percentile. A ratio above 1 with p < 0.05
is marked `behind`; above 1 with a larger p, `noise`.

Prints a markdown table, one row per workload where the subject and at least
one peer have runs: workload | ratio | band | p | verdict.

`--across CSV...` (or `--history N`: the last N versions of BENCH_CSV in git)
asks the same across full runs instead of within one, every allocator alike:
per run, each allocator's median ÷ the smallest median of the others (what
bench.md shows for the subject), then per workload the median of those
ratios over the runs for each allocator, and a sign test of the subject
against the peer with the lowest such median (the *rival*): in how many of
the runs both ran was the subject the slower of the two. A subject as fast
as the rival is the slower in half of them. With the subject's median ratio
above the rival's: `behind` when the one-sided binomial p of that count is
under 0.05, else `noise`. The runs may come from different
libraries (a full run after each merge): it asks whether a gap persists,
not what one build does (wl17i: `python` reads 1.05-1.07 for all five).
Prints: workload | runs | the median ratio of each allocator (wins) | rival
| subject slower in k of n | p | verdict.
"""
import argparse
import csv
import io
import math
import random
import statistics
import subprocess
import sys


def runs(row, metric):
    field = "cpu_s" if metric == "cpu" else "times_s"
    return [float(x) for x in (row.get(field) or "").split()]


def ratio(subject, peers):
    return statistics.median(subject) / min(statistics.median(p) for p in peers)


def load(text, metric):
    """{workload: {allocator: [runs]}} of one bench.csv's text (runs that failed left out)."""
    table = {}
    for r in csv.DictReader(io.StringIO(text)):
        if r.get("status", "ok") == "ok":
            xs = runs(r, metric)
            if xs:
                table.setdefault(r["workload"], {})[r["allocator"]] = xs
    return table


def history(path, n):
    """The texts of the last n versions of `path` committed to git, newest first."""
    try:
        out = subprocess.run(["git", "log", "--format=%H", "-n", str(n), "--", path],
                             capture_output=True, text=True, check=True).stdout.split()
        return [subprocess.run(["git", "show", "%s:./%s" % (c, path)], capture_output=True,
                               text=True, check=True).stdout for c in out]
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("noise_band: git: %s" % e)


def sign_p(k, n):
    """One-sided binomial p: at least k of n at one half each."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def across(tables, subject):
    """The table of `--across`: each allocator ÷ the fastest of the others, per run."""
    names = []
    for t in tables:
        for w in t:
            if w not in names:
                names.append(w)
    allocs = []
    for t in tables:
        for d in t.values():
            allocs += [a for a in d if a not in allocs]
    peers = [a for a in allocs if a != subject]
    print("| workload | runs | %s | rival | %s slower in | p | verdict |"
          % (" | ".join(allocs), subject))
    print("|---|---:|%s---|---:|---:|---|" % ("---:|" * len(allocs)))
    shown = 0
    for w in names:
        rat = {a: [] for a in allocs}
        wins = {a: 0 for a in allocs}
        meds = []
        for t in tables:
            d = t.get(w, {})
            if subject not in d or not any(a in d for a in peers):
                continue
            m = {a: statistics.median(xs) for a, xs in d.items()}
            meds.append(m)
            wins[min(m, key=m.get)] += 1
            for a in m:
                others = [m[b] for b in m if b != a]
                if others:
                    rat[a].append(m[a] / min(others))
        if not meds:
            continue
        med = {a: statistics.median(rat[a]) for a in allocs if rat[a]}
        rival = min((a for a in med if a != subject), key=med.get)
        both = [m for m in meds if rival in m]
        k = sum(m[subject] > m[rival] for m in both)
        p = sign_p(k, len(both))
        verdict = "" if med[subject] <= med[rival] else ("behind" if p < 0.05 else "noise")
        cells = " | ".join("%.2f (%d)" % (med[a], wins[a]) if a in med else "" for a in allocs)
        print("| %s | %d | %s | %s | %d of %d | %.3f | %s |"
              % (w, len(meds), cells, rival, k, len(both), p, verdict))
        shown += 1
    if shown == 0:
        sys.exit("noise_band: no workload has runs of %s and a peer" % subject)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="?", default="results/bench.csv")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--subject", default="memalloc")
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--across", nargs="+", metavar="CSV", help="several full runs' bench.csv")
    ap.add_argument("--history", type=int, metavar="N", help="the last N committed versions of CSV")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    if args.across or args.history:
        if args.history:
            texts = history(args.csv, args.history)
        else:
            texts = []
            for path in args.across:
                try:
                    with open(path, newline="") as f:
                        texts.append(f.read())
                except OSError as e:
                    sys.exit("noise_band: %s" % e)
        return across([load(t, args.metric) for t in texts], args.subject)
    try:
        with open(args.csv, newline="") as f:
            table = load(f.read(), args.metric)
    except OSError as e:
        sys.exit("noise_band: %s" % e)
    print("| workload | %s ÷ fastest peer (%s) | band (90%%) | p | verdict |" % (args.subject, args.metric))
    print("|---|---:|---:|---:|---|")
    shown = 0
    for w, d in table.items():
        subj = d.get(args.subject)
        peers = {a: xs for a, xs in d.items() if a != args.subject}
        if not subj or not peers:
            continue
        r = ratio(subj, list(peers.values()))
        best = min(peers, key=lambda a: statistics.median(peers[a]))
        draws = []
        for _ in range(args.draws):
            s = rng.choices(peers[best], k=len(subj))
            ps = [rng.choices(xs, k=len(xs)) for xs in peers.values()]
            draws.append(ratio(s, ps))
        draws.sort()
        band = draws[int(0.9 * (len(draws) - 1))]
        p = sum(x >= r for x in draws) / len(draws)
        verdict = "" if r <= 1.0 else ("behind" if p < 0.05 else "noise")
        print("| %s | %.2f | %.2f | %.3f | %s |" % (w, r, band, p, verdict))
        shown += 1
    if shown == 0:
        sys.exit("noise_band: no workload in %s has runs of %s and a peer" % (args.csv, args.subject))
    return 0


if __name__ == "__main__":
    sys.exit(main())
