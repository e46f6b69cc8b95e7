"""bench/py_workload.py -- a dict/list/string workload for the `python` benchmark.

usage: python3 py_workload.py [ROUNDS=8] [N=40000]

Each round builds a dict of N string keys mapping to small lists, updates and
deletes half of it, joins and splits strings, sorts a list of tuples and
builds a word count: the allocation pattern of everyday Python code (many
small objects through pymalloc, dict tables and long strings through malloc).
Deterministic; prints one line with its figure like the C workloads.
"""
import sys
import time


def one_round(n, seed):
    d = {}
    for i in range(n):
        k = "key-%d-%d" % (i * 2654435761 % 1000003, seed)
        d[k] = [i, str(i), (i, seed)]
    for i, k in enumerate(list(d)):
        if i & 1:
            del d[k]
        else:
            d[k].append(k.upper())
    text = " ".join(k for k in d)
    words = text.split(" ")
    counts = {}
    for w in words:
        h = w[-3:]
        counts[h] = counts.get(h, 0) + 1
    rows = sorted((len(w), w[::-1], i) for i, w in enumerate(words))
    parts = []
    for j in range(0, len(rows), 100):
        parts.append("|".join(r[1] for r in rows[j:j + 100]))
    blob = "\n".join(parts)
    return len(d) + len(counts) + len(blob) % 9973


def main():
    rounds = int(float(sys.argv[1])) if len(sys.argv) > 1 else 8
    n = int(float(sys.argv[2])) if len(sys.argv) > 2 else 40000
    t0 = time.perf_counter()
    check = 0
    for r in range(rounds):
        check += one_round(n, r)
    dt = time.perf_counter() - t0
    print("python: %.4g rounds/s rounds=%d n=%d check=%d" % (rounds / dt, rounds, n, check))


if __name__ == "__main__":
    main()
