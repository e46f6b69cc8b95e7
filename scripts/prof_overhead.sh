#!/usr/bin/env bash
# scripts/prof_overhead.sh [--reps N] [--quick] [--only W,..] — what the heap
# profiler costs: the bench suite (bench/bench.py's workloads) under the same
# library with MEMALLOC_PROF off and on, alternating (wall and CPU time), and the instructions per
# malloc+free pair under callgrind, off and on -> results/prof_overhead.md and
# results/prof_overhead.csv (bench/prof_overhead.py).
# Builds the release library and the bench programs first (as bench.sh does).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="$ROOT/target/bench"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
(cd "$ROOT" && cargo build --release --quiet </dev/null)
mkdir -p "$BIN"
cp -f "$ROOT/target/release/libmemalloc.so" "$BIN/libmemalloc.so"
for prog in runner fixed churn larson xmalloc threads32 cache-scratch realloc large gen_text pair mchurn mthreads bulkfree; do
    gcc -O2 -g -pthread -Wall -Wextra -o "$BIN/$prog" "$ROOT/bench/$prog.c" -lm
done
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY="$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-profcost.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 "$ROOT/bench/prof_overhead.py" --bin "$BIN" --lib "$BIN/libmemalloc.so" --results "$ROOT/results" \
    --tmp "$TMP" --python "$PY" --sort "$(command -v sort)" --command "scripts/prof_overhead.sh $*" \
    --lib-info "commit $commit, sha256 $(sha256sum "$BIN/libmemalloc.so" | cut -c1-12)" "$@"
