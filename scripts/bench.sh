#!/usr/bin/env bash
# scripts/bench.sh — benchmark memalloc against glibc, jemalloc, tcmalloc and mimalloc.
#
# Installs what is missing (gcc, python3, the peer allocators from Debian's
# packages, valgrind for --callgrind), builds the release library and the
# programs in bench/ (into target/bench/), then runs every workload under each
# allocator (glibc without preload, the others with LD_PRELOAD), alternating
# allocators within each repetition. The measuring and reporting is done by
# bench/bench.py (wall time with perf_counter, peak RSS from wait4's
# ru_maxrss); see the comments there and at the top of each bench/*.c.
#
# The library is copied to target/bench/libmemalloc.so before the runs, so a
# rebuild by someone else during the run does not change what is measured.
#
# Modes (one or more; default: the workload suite):
#   (none)          the suite -> results/bench.md, results/bench.csv, results/bench.svg
#   --callgrind     instructions per malloc+free pair under callgrind -> results/callgrind.md
#   --latency       tail and worst latency of single calls (rdtsc) -> results/latency.md
#   --cxx           C++ STL workloads (bench/cxx_stl.cc): memalloc by its new/delete
#                   header and by preload, and the peers; times, then instructions per
#                   operation under callgrind -> results/cxx.md, results/cxx.csv (~3 min)
#   --grid          every cell of sizes (16 B-64 MiB, 5 bands) x threads (1, 4, 16, 64)
#                   x pattern (short-lived, long-lived, cross-thread, bulk frees), bench/grid.c
#                   -> results/grid.md, grid.csv, grid.svg (~5 min at 3 repetitions)
#   --all           the suite, --callgrind, --latency and --grid
#   --rust          the Rust workloads under memalloc::MemAlloc, System, and the
#                   mimalloc, tikv-jemallocator and snmalloc-rs crates
#                   (bench/rust/run.sh; honours --reps, --quick, --no-build)
#                   -> results/rust.md, results/rust.csv
# Options:
#   --quick               half-size workloads, 2 repetitions (latency: 1e6 ops; callgrind: N=2e5)
#   --reps N              repetitions (default 5, latency and grid 3; 2 with --quick; callgrind: 1)
#   --only W[,W..]        only these workloads (`fixed` selects every fixed-SIZE)
#   --allocators A[,A..]  among glibc,jemalloc,tcmalloc,mimalloc,memalloc (default: all)
#   --timeout S           kill a run after S seconds and mark it FAIL (default 120; 60 with --quick)
#   --pair-sizes S[,S..]  block sizes for --callgrind (default 32)
#   --no-rt               latency: do not run under SCHED_FIFO (chrt -f 1; used when permitted)
#   --no-build            do not run cargo build; use the existing target/release/libmemalloc.so
#   --strict              exit 1 if any run failed (default: failures are reported, exit 0)
#   -h, --help            this text
# Environment:
#   MEMALLOC_LIB=/path.so  benchmark that library as "memalloc" (no build)
#   BENCH_PYTHON=/path     the python3 that runs the `python` workload (default /usr/bin/python3)
#
# A failing run (crash, non-zero exit, timeout, wrong allocator) never stops the
# suite: it is marked FAIL in the tables and described (command, exit status,
# stderr tail) at the end of the report and on stderr.
# Time on this 2-core machine: the suite ~5 min (--quick ~1 min), --callgrind ~15 s,
# --latency ~1.5 min (--quick ~10 s); more when the machine is busy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
BIN="$ROOT/target/bench"
RESULTS="$ROOT/results"
ALL_ALLOCATORS="glibc,jemalloc,tcmalloc,mimalloc,memalloc"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench.sh: $*" >&2; exit 2; }
say() { echo "bench.sh: $*" >&2; }

quick=0 reps="" only="" allocators="$ALL_ALLOCATORS" timeout="" build=1 strict=0 rt=1 rust=0
pair_sizes=32
modes=()
orig_args="$*"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1 ;;
        --reps) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number"; reps="$2"; shift ;;
        --reps=*) reps="${1#*=}"; [[ "$reps" =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number" ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a list"; only="$2"; shift ;;
        --only=*) only="${1#*=}" ;;
        --allocators) [[ $# -ge 2 ]] || die "--allocators needs a list"; allocators="$2"; shift ;;
        --allocators=*) allocators="${1#*=}" ;;
        --timeout) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--timeout needs seconds"; timeout="$2"; shift ;;
        --timeout=*) timeout="${1#*=}"; [[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout needs seconds" ;;
        --pair-sizes) [[ $# -ge 2 && "$2" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--pair-sizes needs N[,N..]"; pair_sizes="$2"; shift ;;
        --callgrind) modes+=(callgrind) ;;
        --latency) modes+=(latency) ;;
        --cxx) modes+=(cxx) ;;
        --grid) modes+=(grid) ;;
        --all) modes=(bench callgrind latency grid) ;;
        --rust) rust=1 ;;
        --no-build) build=0 ;;
        --no-rt) rt=0 ;;
        --strict) strict=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
if [[ $rust == 1 ]]; then   # its own builds, peers and report
    rust_args=()
    [[ -n "$reps" ]] && rust_args+=(--reps "$reps")
    [[ $quick == 1 ]] && rust_args+=(--quick)
    [[ $build == 0 ]] && rust_args+=(--no-build)
    bash "$ROOT/bench/rust/run.sh" "${rust_args[@]}" || exit $?
    [[ ${#modes[@]} -gt 0 ]] || exit 0
fi
[[ ${#modes[@]} -gt 0 ]] || modes=(bench)
reps_given="$reps"
[[ -n "$timeout" ]] || timeout=$([[ $quick == 1 ]] && echo 60 || echo 120)

IFS=, read -r -a ALLOCS <<<"$allocators"
for a in "${ALLOCS[@]}"; do
    [[ ",$ALL_ALLOCATORS," == *",$a,"* ]] || die "unknown allocator '$a' (known: $ALL_ALLOCATORS)"
done

# ----------------------------------------------------------------- install
SUDO=()
[[ "$(id -u)" -eq 0 ]] || SUDO=(sudo -n)
apt_updated=0
apt_install() {   # apt_install PKG...: install Debian packages quietly
    say "installing $*"
    local log
    log="$(mktemp)"
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            -o DPkg::Lock::Timeout=600 "$@" </dev/null >"$log" 2>&1; then
        if [[ $apt_updated == 0 ]]; then
            apt_updated=1
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
                -o DPkg::Lock::Timeout=600 </dev/null >>"$log" 2>&1 || true
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                -o DPkg::Lock::Timeout=600 "$@" </dev/null >>"$log" 2>&1 || { tail -n 5 "$log" >&2; rm -f "$log"; return 1; }
        else
            tail -n 5 "$log" >&2; rm -f "$log"; return 1
        fi
    fi
    rm -f "$log"
}
need_cmd() {      # need_cmd CMD PKG: install PKG if CMD is absent
    command -v "$1" >/dev/null 2>&1 || apt_install "$2" || die "cannot install $2 (for $1)"
}
find_so() {       # find_so SONAME: print the path of an installed shared object
    local p
    p="$(ldconfig -p 2>/dev/null | awk -v so="$1" '$1 == so { print $NF; exit }')"
    if [[ -z "$p" ]]; then   # not in the cache yet: ask dpkg where it went
        p="$(dpkg -S "/$1" 2>/dev/null | awk '{ print $2; exit }' || true)"
    fi
    [[ -n "$p" ]] && echo "$p"
}
peer_lib() {      # peer_lib NAME: print the .so of a peer, installing its package if needed
    local soname pkg path
    case "$1" in
        jemalloc) soname=libjemalloc.so.2 pkg=libjemalloc2 ;;
        tcmalloc) soname=libtcmalloc_minimal.so.4 pkg=libtcmalloc-minimal4 ;;
        mimalloc) soname=libmimalloc.so.2 pkg=libmimalloc2.0 ;;
    esac
    path="$(find_so "$soname" || true)"
    if [[ -z "$path" ]]; then
        apt_install "$pkg" >&2 || true
        path="$(find_so "$soname" || true)"
    fi
    [[ -n "$path" && -f "$path" ]] || return 1
    echo "$path"
}

need_cmd gcc gcc
need_cmd python3 python3
need_cmd sort coreutils
[[ " ${modes[*]} " == *" callgrind "* ]] && need_cmd valgrind valgrind
[[ " ${modes[*]} " == *" cxx "* ]] && need_cmd g++ g++ && need_cmd valgrind valgrind

PY_WORK="${BENCH_PYTHON:-}"
if [[ -z "$PY_WORK" ]]; then
    if [[ -x /usr/bin/python3 ]]; then
        PY_WORK=/usr/bin/python3
    else
        # resolve through wrappers (pyenv shims are shell scripts: preloading
        # into them would measure bash too)
        PY_WORK="$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')"
    fi
fi
SORT="$(command -v sort)"

# ----------------------------------------------------------------- library
mkdir -p "$BIN" "$RESULTS"
lib_info=""
alloc_args=()
for a in "${ALLOCS[@]}"; do
    case "$a" in
        glibc) alloc_args+=(--alloc "glibc=") ;;
        memalloc)
            if [[ -n "${MEMALLOC_LIB:-}" ]]; then
                [[ -f "$MEMALLOC_LIB" ]] || die "MEMALLOC_LIB=$MEMALLOC_LIB: no such file"
                src="$MEMALLOC_LIB"
                lib_info="\`$MEMALLOC_LIB\` (MEMALLOC_LIB)"
            else
                src="$ROOT/target/release/libmemalloc.so"
                if [[ $build == 1 ]]; then
                    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
                        PATH="$HOME/.cargo/bin:$PATH"
                    fi
                    say "cargo build --release"
                    (cd "$ROOT" && cargo build --release --quiet </dev/null) ||
                        die "cargo build --release failed (use --no-build or MEMALLOC_LIB=... to benchmark an existing library)"
                fi
                [[ -f "$src" ]] || die "$src does not exist (build it, or set MEMALLOC_LIB)"
                commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
                dirty="$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -1 || true)"
                lib_info="commit $commit${dirty:+ with uncommitted changes in src/}"
            fi
            # snapshot: a rebuild during the run must not change what is measured
            cp -f "$src" "$BIN/libmemalloc.so.tmp" && mv -f "$BIN/libmemalloc.so.tmp" "$BIN/libmemalloc.so"
            lib_info="$lib_info, library built $(date -r "$src" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$BIN/libmemalloc.so" | cut -c1-12)"
            alloc_args+=(--alloc "memalloc=$BIN/libmemalloc.so") ;;
        *)
            if path="$(peer_lib "$a")"; then
                alloc_args+=(--alloc "$a=$path")
            else
                say "WARNING: $a is not installed and could not be installed: left out of this run"
            fi ;;
    esac
done
[[ ${#alloc_args[@]} -gt 0 ]] || die "no allocator to run"

# ----------------------------------------------------------------- programs
say "building bench programs into ${BIN#"$ROOT"/}/"
for prog in runner fixed churn larson xmalloc threads32 cache-scratch realloc large gen_text pair latency \
        mchurn mthreads bulkfree grid cycles; do
    gcc -O2 -g -pthread -Wall -Wextra -o "$BIN/$prog" "$ROOT/bench/$prog.c" -lm ||
        die "could not compile bench/$prog.c"
done

if [[ " ${modes[*]} " == *" cxx "* ]]; then
    # plain (run under each preload) and with the new/delete header, linked
    # with the snapshot of the library
    g++ -std=c++17 -O2 -g -Wall -Wextra -o "$BIN/cxx_stl" "$ROOT/bench/cxx_stl.cc" -ldl ||
        die "could not compile bench/cxx_stl.cc"
    if [[ -f "$BIN/libmemalloc.so" && ",$allocators," == *",memalloc,"* ]]; then
        g++ -std=c++17 -O2 -g -Wall -Wextra -DWITH_HEADER -I "$ROOT/include" -o "$BIN/cxx_stl_header" \
            "$ROOT/bench/cxx_stl.cc" -L "$BIN" -lmemalloc -Wl,-rpath,"$BIN" -ldl ||
            die "could not compile bench/cxx_stl.cc with the header"
    fi
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/memalloc-bench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

common=(--bin "$BIN" --results "$RESULTS" --tmp "$TMP" "${alloc_args[@]}"
        --timeout "$timeout" --python "$PY_WORK" --sort "$SORT" --pair-sizes "$pair_sizes"
        --command "scripts/bench.sh${orig_args:+ $orig_args}" --lib-info "$lib_info")
[[ $quick == 1 ]] && common+=(--quick)
[[ -n "$only" ]] && common+=(--only "$only")
[[ $strict == 1 ]] && common+=(--strict)
if [[ $rt == 1 && " ${modes[*]} " == *" latency "* ]]; then
    if command -v chrt >/dev/null 2>&1 && chrt -f 1 true 2>/dev/null; then
        common+=(--rt)
    else
        say "note: chrt -f 1 not permitted here: latency runs at normal priority"
    fi
fi

status=0
for mode in "${modes[@]}"; do
    say "mode $mode"
    # repetitions: --reps, else 5 for the suite and 3 for latency and the grid (2 with --quick)
    reps="$reps_given"
    [[ -n "$reps" ]] || reps=$([[ $quick == 1 ]] && echo 2 || { [[ $mode == latency || $mode == grid ]] && echo 3 || echo 5; })
    if [[ $mode == cxx ]]; then
        python3 "$ROOT/bench/cxx_bench.py" "${common[@]}" --reps "$reps" || status=$?
        continue
    fi
    python3 "$ROOT/bench/bench.py" "$mode" "${common[@]}" --reps "$reps" || status=$?
done
exit "$status"
