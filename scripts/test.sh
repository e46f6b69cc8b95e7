#!/usr/bin/env bash
# scripts/test.sh [--quick] — memalloc's whole test run, stage by stage.
#
#   a  tools      install what the tests need, only if missing
#   b  build      cargo build --release
#   c  unit       cargo test --release -p memalloc (and --features override);
#                 tests/rustdoc_test.sh (the rustdoc shows the API only)
#   d  symbols    every C ABI symbol is exported by libmemalloc.so; the heap
#                 state lies in .bss
#   e  c_tests    bash c_tests/run.sh, bash c_tests/cxx.sh (C++, new/delete),
#                 bash c_tests/bursts.sh (bursts past the bins, under callgrind),
#                 c_tests/classes.sh (random classes), c_tests/xfree.sh (xthread frees),
#                 c_tests/takeover.sh (zones of exited threads taken over by a free),
#                 c_tests/regrow.sh (realloc growth, 64 KiB-1 MiB pairs),
#                 c_tests/spills.sh (a bin's spill finds the zone headers in cache)
#   f  hardening  bash c_tests/hardening.sh (misuse, faults, 32-thread stress)
#   g  install    bash tests/install_test.sh (install.sh, pkg-config, C builds)
#   h  scripts    bash tests/scripts_test.sh (heapmap, plot_trace, run.sh options,
#                 check_layers.py)
#   i  real       bash scripts/real_programs.sh
#   j  lint       cargo clippy --all-targets -- -D warnings (each package); cargo fmt --check
#   k  layers     python3 scripts/check_layers.py: no module uses a layer above
#   l  profiler   bash c_tests/prof.sh (heap profiler: accuracy, threads, fork,
#                 memalloc_prof_dump, run.sh --profile)
#
# Stops at the first failing stage, naming it. The last line is always
# `N passed, M failed` (with `, K skipped` when a failure stopped the run),
# counting stages. Exit status 0 only if every stage passed.
#
#   --quick   run every stage, but shorter: exports MEMALLOC_TEST_QUICK=1,
#             which the sub-scripts honour (smaller data, less churn)
set -uo pipefail

usage() {
    sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "test.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$SCRIPTS/.." && pwd -P)"
LIB="$ROOT/target/release/libmemalloc.so"
cd "$ROOT" || exit 1

if [[ $QUICK -eq 1 ]]; then
    export MEMALLOC_TEST_QUICK=1
fi
# Every stage tests this repository's library, whatever a caller exported
# to validate the scripts against another allocator.
unset MEMALLOC_LIB
# cargo may be installed for the user but not on a non-login PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

STAGES=(a b c d e f g h i j k l)
PASSED=0
FAILED=0
START=$SECONDS

summary() {
    local skipped=$((${#STAGES[@]} - PASSED - FAILED))
    echo
    echo "test.sh: total time $((SECONDS - START))s"
    if [[ $skipped -gt 0 ]]; then
        echo "$PASSED passed, $FAILED failed, $skipped skipped"
    else
        echo "$PASSED passed, $FAILED failed"
    fi
}

# run_stage ID DESCRIPTION COMMAND... — run one stage; stop everything if it fails.
run_stage() {
    local id="$1" desc="$2" t0=$SECONDS rc
    shift 2
    echo
    echo "=== stage $id: $desc ==="
    "$@"
    rc=$?
    if [[ $rc -eq 0 ]]; then
        echo "=== stage $id: $desc: PASS ($((SECONDS - t0))s) ==="
        PASSED=$((PASSED + 1))
        return 0
    fi
    [[ $rc -eq 124 ]] && echo "test.sh: stage $id timed out"
    echo "=== stage $id: $desc: FAILED (exit $rc, $((SECONDS - t0))s) ==="
    FAILED=$((FAILED + 1))
    echo
    if [[ "$id" == "${STAGES[-1]}" ]]; then
        echo "test.sh: FAILED at stage $id ($desc)"
    else
        echo "test.sh: STOPPED at stage $id ($desc); the later stages were not run"
    fi
    summary
    exit 1
}

# with_timeout SECONDS COMMAND... — a stuck stage fails instead of hanging CI.
with_timeout() {
    local secs="$1"
    shift
    timeout -k 30 "$secs" "$@" </dev/null
}

# --------------------------------------------------------------- stages ---
stage_tools() {
    bash "$SCRIPTS/ensure_tools.sh" \
        gcc=gcc cc=gcc make=make python3=python3 perl=perl git=git xz=xz-utils \
        nm=binutils timeout=coreutils diff=diffutils awk=mawk addr2line=binutils \
        inferno-flamegraph=cargo:inferno || return 1
    if ! command -v cargo >/dev/null 2>&1; then
        echo "test.sh: cargo not found (a Rust toolchain is needed; see rustup)" >&2
        return 1
    fi
    # Stage j's linters: rustup components, added if the toolchain lacks them.
    local comp
    for comp in clippy rustfmt; do
        if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if ! command -v rustup >/dev/null 2>&1 || ! rustup component add "$comp"; then
                echo "test.sh: cannot install the $comp component (rustup component add $comp)" >&2
                return 1
            fi
        fi
    done
    echo "tools: $(cargo --version), $(cargo clippy --version), $(gcc --version | head -n 1), python3 $(python3 -c 'import platform; print(platform.python_version())')"
}

stage_build() {
    with_timeout 900 cargo build --release || return $?
    if [[ ! -f "$LIB" ]]; then
        echo "test.sh: cargo build succeeded but $LIB does not exist" >&2
        return 1
    fi
}

stage_unit() {
    # The memalloc crate (the C library is its capi/ member): unit tests and
    # tests/*.rs under MemAlloc as global allocator; the doctests (in the dev
    # profile: 12 s, against 55 s for 14 fat-LTO links); then the global
    # allocator test again with the C names exported (override).
    with_timeout 900 cargo test --release -p memalloc --lib --tests || return $?
    with_timeout 900 cargo test -p memalloc --doc || return $?
    with_timeout 900 cargo test --release -p memalloc --features override --test global_alloc || return $?
    with_timeout 600 bash "$ROOT/tests/rustdoc_test.sh"
}

ABI_SYMBOLS=(
    malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign
    valloc pvalloc malloc_usable_size cfree free_sized free_aligned_sized malloc_trim
    mallinfo mallinfo2 mallopt malloc_stats malloc_info
    __libc_malloc __libc_free __libc_calloc __libc_realloc __libc_memalign
    __libc_valloc __libc_pvalloc __posix_memalign
    memalloc_dump memalloc_check memalloc_get_stats memalloc_prof_dump
    memalloc_pool_create memalloc_pool_malloc memalloc_pool_free memalloc_pool_realloc
    memalloc_pool_memalign memalloc_pool_add_region memalloc_pool_destroy memalloc_pool_check
    memalloc_new memalloc_new_aligned
)

stage_symbols() {
    local defined missing=() wrong=() sym type
    if [[ ! -f "$LIB" ]]; then
        echo "test.sh: $LIB does not exist" >&2
        return 1
    fi
    # "ADDRESS TYPE NAME[@VERSION]" -> "NAME TYPE"
    defined="$(nm -D --defined-only "$LIB" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3, $2 }')" || return 1
    for sym in "${ABI_SYMBOLS[@]}"; do
        type="$(awk -v s="$sym" '$1 == s { print $2; exit }' <<<"$defined")"
        if [[ -z "$type" ]]; then
            missing+=("$sym")
        elif [[ "$type" != [TtWi] ]]; then
            wrong+=("$sym($type)")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "missing from the dynamic symbol table (${#missing[@]}): ${missing[*]}"
    fi
    if [[ ${#wrong[@]} -gt 0 ]]; then
        echo "exported but not as functions: ${wrong[*]}"
    fi
    if [[ ${#missing[@]} -gt 0 || ${#wrong[@]} -gt 0 ]]; then
        return 1
    fi
    echo "all ${#ABI_SYMBOLS[@]} ABI symbols are exported"
    # The heap's state starts all zero, so it lies in .bss. A non-zero
    # initialiser moves its 10 KiB to .data, whose pages the first read of
    # any static maps at once (RSS of every program).
    type="$(nm -C "$LIB" | awk '$3 == "memalloc::heap::HEAP" { print $2; exit }')"
    if [[ "$type" != [bB] ]]; then
        echo "memalloc::heap::HEAP is not in .bss (nm type '${type:-none}'): give it a zero initialiser"
        return 1
    fi
    echo "the heap's state is in .bss"
}

stage_c_tests() {
    if [[ ! -f "$ROOT/c_tests/run.sh" ]]; then
        echo "test.sh: c_tests/run.sh not found" >&2
        return 1
    fi
    with_timeout 900 bash "$ROOT/c_tests/run.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/cxx.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/bursts.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/classes.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/xfree.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/takeover.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/regrow.sh" || return $?
    with_timeout 600 bash "$ROOT/c_tests/spills.sh"
}

stage_hardening() {
    with_timeout 900 bash "$ROOT/c_tests/hardening.sh"
}

stage_install() {
    with_timeout 600 bash "$ROOT/tests/install_test.sh"
}

stage_scripts() {
    with_timeout 600 bash "$ROOT/tests/scripts_test.sh"
}

stage_lint() {
    # Clippy over the library, its unit tests and both measurement features,
    # with every warning an error; then the formatting.
    # Each package on its own (built together, cargo would unify the crate's
    # features: std and override at once): capi/, the C library, as built,
    # and the crate with and without its C names exported.
    local features
    for features in "" "--features unchecked" "--features gd-tls"; do
        echo "cargo clippy -p memalloc-capi --all-targets ${features}"
        # shellcheck disable=SC2086 # the features are two words, or none
        with_timeout 900 cargo clippy -p memalloc-capi --all-targets $features -- -D warnings || return $?
    done
    for features in "" "--features override"; do
        echo "cargo clippy -p memalloc --all-targets ${features}"
        # shellcheck disable=SC2086
        with_timeout 900 cargo clippy -p memalloc --all-targets $features -- -D warnings || return $?
    done
    cargo fmt --all --check || { echo "test.sh: run cargo fmt --all" >&2; return 1; }
}

stage_layers() {
    python3 "$SCRIPTS/check_layers.py" "$ROOT"
}

stage_prof() {
    with_timeout 900 bash "$ROOT/c_tests/prof.sh"
}

stage_real() {
    # The library built in stage b, as is: no rebuild here.
    MEMALLOC_LIB="$LIB" with_timeout 900 bash "$SCRIPTS/real_programs.sh"
}

run_stage a "install missing tools" stage_tools
run_stage b "cargo build --release" stage_build
run_stage c "cargo test --release (unit tests)" stage_unit
run_stage d "exported ABI symbols, heap state in .bss (nm)" stage_symbols
run_stage e "C and C++ tests (c_tests/run.sh, cxx.sh)" stage_c_tests
run_stage f "misuse, faults and load (c_tests/hardening.sh)" stage_hardening
run_stage g "installation (tests/install_test.sh)" stage_install
run_stage h "heap map, trace plot, run.sh options (tests/scripts_test.sh)" stage_scripts
run_stage i "real programs (scripts/real_programs.sh)" stage_real
run_stage j "cargo clippy -D warnings, cargo fmt --check" stage_lint
run_stage k "layers point down (scripts/check_layers.py)" stage_layers
run_stage l "heap profiler (c_tests/prof.sh)" stage_prof

echo
echo "test.sh: all stages passed"
summary
exit 0
