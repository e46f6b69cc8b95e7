#!/usr/bin/env bash
# bench/rust/run.sh [--reps N] [--quick] [--no-build] [--no-callgrind] — Rust workloads under
# memalloc::MemAlloc and its peers (scripts/bench.sh --rust calls this).
#
# Builds one binary per global allocator (cargo features of this package:
# none = std::alloc::System, i.e. glibc's malloc; memalloc; mimalloc;
# jemalloc = tikv-jemallocator; snmalloc = snmalloc-rs) into
# target/rust-bench/, then runs every workload (hashmap, btree, pipeline,
# json; see src/main.rs) under each, alternating allocators within each
# repetition (the starting allocator rotates), and writes the medians, the
# ratios to the fastest and their geometric means to results/rust.md and
# results/rust.csv (report.py), with each run's instructions counted by
# callgrind (deterministic, unlike the times on a shared machine).
#
#   --reps N     repetitions (default 5; 3 with --quick)
#   --quick      workloads at half scale
#   --no-build   use the binaries already in target/rust-bench/
#   --no-callgrind  no instruction counts (they take 3-5 minutes)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$HERE/../.." && pwd -P)"
OUT="$ROOT/target/rust-bench"
ALLOCATORS=(system memalloc mimalloc jemalloc snmalloc)
reps="" scale=1 build=1 quick=0 callgrind=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) reps="$2"; shift ;;
        --quick) quick=1; scale=0.5 ;;
        --no-build) build=0 ;;
        --no-callgrind) callgrind=0 ;;
        -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$reps" ]] || reps=$([[ $quick == 1 ]] && echo 3 || echo 5)

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if [[ $build == 1 ]]; then
    # snmalloc-rs builds snmalloc's C++ with cmake; tikv-jemalloc-sys runs
    # jemalloc's configure and make.
    bash "$ROOT/scripts/ensure_tools.sh" cmake=cmake g++=g++ make=make
    mkdir -p "$OUT"
    for a in "${ALLOCATORS[@]}"; do
        features=()
        [[ $a == system ]] || features=(--features "$a")
        echo "run.sh: building the $a binary" >&2
        (cd "$HERE" && cargo build --release --quiet "${features[@]}" --target-dir "$ROOT/target/rust-bench/build") </dev/null
        cp "$ROOT/target/rust-bench/build/release/memalloc-rust-bench" "$OUT/bench-$a"
    done
    git -C "$ROOT" rev-parse --short HEAD >"$OUT/commit" 2>/dev/null || echo unknown >"$OUT/commit"
fi
# The report names the commit the binaries were built at (memalloc is linked
# into bench-memalloc), which --no-build may leave behind HEAD.
head=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
built=$(cat "$OUT/commit" 2>/dev/null || echo "unknown (built before run.sh recorded it)")
if [[ $built != "$head" ]]; then
    echo "run.sh: warning: the binaries in $OUT were built at $built, not at HEAD ($head): run without --no-build" >&2
    built="$built (binaries; HEAD $head)"
fi

args=()
for a in "${ALLOCATORS[@]}"; do args+=(--alloc "$a=$OUT/bench-$a"); done
if [[ $callgrind == 1 ]]; then
    bash "$ROOT/scripts/ensure_tools.sh" valgrind=valgrind
    args+=(--callgrind)
fi
exec python3 "$HERE/report.py" --reps "$reps" --scale "$scale" \
    --commit "$built" \
    --md "$ROOT/results/rust.md" --csv "$ROOT/results/rust.csv" "${args[@]}"
