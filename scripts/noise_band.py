#!/usr/bin/env python3
"""scripts/noise_band.py -- is memalloc behind, or is it the noise of the run?

usage: scripts/noise_band.py [--metric cpu|wall] [--subject NAME] [--draws N]
                             [--seed S] [BENCH_CSV=results/bench.csv]

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
"""
import argparse
import csv
import random
import statistics
import sys


def runs(row, metric):
    field = "cpu_s" if metric == "cpu" else "times_s"
    return [float(x) for x in (row.get(field) or "").split()]


def ratio(subject, peers):
    return statistics.median(subject) / min(statistics.median(p) for p in peers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="?", default="results/bench.csv")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--subject", default="memalloc")
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    try:
        with open(args.csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit("noise_band: %s" % e)
    table = {}
    for r in rows:
        if r.get("status", "ok") == "ok":
            xs = runs(r, args.metric)
            if xs:
                table.setdefault(r["workload"], {})[r["allocator"]] = xs
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
